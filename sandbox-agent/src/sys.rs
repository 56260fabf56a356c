//! Thin wrappers over the libc calls the agent and the keeper make: errors
//! become `io::Result`, `EINTR` is retried, every fd is created `CLOEXEC`.
//! Nothing here allocates, so all of it may run between `fork` and `exec`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use crate::proc_tree::Pid;

/// -1 becomes the thread's `errno`.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn retry_eintr(mut op: impl FnMut() -> libc::c_int) -> io::Result<libc::c_int> {
    loop {
        match check(op()) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// A pipe, both ends `CLOEXEC`: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 just returned these two fds, owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
    Ok(())
}

/// Opens `path` (NUL-terminated) with `O_CLOEXEC` added to `flags`.
pub fn open(path: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    debug_assert_eq!(path.last(), Some(&0));
    let fd = retry_eintr(|| unsafe {
        libc::open(
            path.as_ptr().cast(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: open just returned this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes all of `bytes` (a blocking fd; retries short writes and EINTR).
pub fn write_all(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

pub enum Forked {
    Child,
    Parent(Pid),
}

/// `fork(2)`. Only call it from a single-threaded process: the child may
/// then allocate and take locks, since no other thread held them.
pub fn fork() -> io::Result<Forked> {
    match check(unsafe { libc::fork() })? {
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(pid)),
    }
}

/// `_exit(2)`: no atexit handlers, no flushing of the parent's buffers.
pub fn exit_now(code: libc::c_int) -> ! {
    unsafe { libc::_exit(code) }
}

pub fn kill(pid: Pid, signal: libc::c_int) -> io::Result<()> {
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

pub fn sigset(signals: &[libc::c_int]) -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before anything reads it.
    let mut set = unsafe { std::mem::zeroed::<libc::sigset_t>() };
    unsafe { libc::sigemptyset(&mut set) };
    for &signal in signals {
        unsafe { libc::sigaddset(&mut set, signal) };
    }
    set
}

/// Blocks `signals` for the calling thread (the whole process here: it has
/// one thread). The mask is inherited across fork and exec.
pub fn block_signals(signals: &[libc::c_int]) -> io::Result<()> {
    let set = sigset(signals);
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// Sets `signal`'s disposition to ignore.
pub fn ignore_signal(signal: libc::c_int) -> io::Result<()> {
    if unsafe { libc::signal(signal, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// For a freshly forked program: every signal back to its default action
/// and nothing blocked. Ignored signals (SIGPIPE here) and the blocked mask
/// survive exec, and a program must not start with them.
pub fn reset_signals() -> io::Result<()> {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // Numbers glibc reserves for itself (32, 33) fail with EINVAL: fine,
        // nothing can have set them.
        unsafe { libc::signal(signal, libc::SIG_DFL) };
    }
    let empty = sigset(&[]);
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// A non-blocking `CLOEXEC` signalfd for `signals` (which must be blocked).
pub fn signalfd(signals: &[libc::c_int]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    let fd = check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: signalfd just returned this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Empties a non-blocking signalfd (the signals only say "look again").
pub fn drain_signalfd(fd: &OwnedFd) {
    let mut info = [0u8; std::mem::size_of::<libc::signalfd_siginfo>()];
    while matches!(read(fd.as_raw_fd(), &mut info), Ok(n) if n > 0) {}
}

/// Waits up to `timeout_ms` (None: forever) for one of the blocked
/// `signals`. Returns the signal number, or None on timeout.
pub fn wait_signal(signals: &[libc::c_int], timeout_ms: Option<u64>) -> Option<libc::c_int> {
    let set = sigset(signals);
    loop {
        let ret = match timeout_ms {
            None => unsafe { libc::sigwaitinfo(&set, std::ptr::null_mut()) },
            Some(ms) => {
                let timeout = libc::timespec {
                    tv_sec: (ms / 1000) as libc::time_t,
                    tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
                };
                unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) }
            }
        };
        if ret > 0 {
            return Some(ret);
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            _ => return None,
        }
    }
}

/// What `waitpid(-1, WNOHANG)` found.
pub enum Reaped {
    /// A child ended with this raw wait status.
    Child(Pid, libc::c_int),
    /// Children exist, none has ended yet.
    Running,
    /// No children left (ECHILD).
    None,
}

pub fn reap_one() -> Reaped {
    let mut status = 0;
    match retry_eintr(|| unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) }) {
        Ok(0) => Reaped::Running,
        Ok(pid) => Reaped::Child(pid, status),
        // ECHILD; EINVAL cannot happen with these arguments.
        Err(_) => Reaped::None,
    }
}

/// Blocks until `pid` ends; its raw wait status.
pub fn wait_for(pid: Pid) -> io::Result<libc::c_int> {
    let mut status = 0;
    retry_eintr(|| unsafe { libc::waitpid(pid, &mut status, 0) })?;
    Ok(status)
}

/// A raw wait status as a shell reports it: the exit code, or 128 + the
/// signal that killed the process.
pub fn status_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        // Stopped/continued are only reported with WUNTRACED/WCONTINUED,
        // which are never asked for.
        128
    }
}

/// Closes every fd except those in `keep`.
pub fn close_fds_except(keep: &[RawFd]) {
    let mut low: RawFd = 0;
    loop {
        let next_kept = keep.iter().copied().filter(|&fd| fd >= low).min();
        let high = next_kept.map_or(RawFd::MAX, |fd| fd - 1);
        if high >= low {
            close_range(low, high);
        }
        match next_kept {
            Some(fd) => low = fd + 1,
            None => return,
        }
    }
}

/// Closes fds `low..=high`: `close_range(2)`, or one `close` per possible
/// fd on kernels older than 5.9.
fn close_range(low: RawFd, high: RawFd) {
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            low as libc::c_uint,
            high as libc::c_uint,
            0,
        )
    };
    if ret == 0 {
        return;
    }
    let open_max = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let last = RawFd::try_from(open_max)
        .unwrap_or(RawFd::MAX)
        .saturating_sub(1)
        .min(high);
    for fd in low..=last {
        unsafe { libc::close(fd) };
    }
}
