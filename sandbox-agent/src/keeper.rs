//! The two processes behind every call, both forked from the agent and
//! never returning: the keeper (uid 0) and the program (uid 1000).
//!
//! The keeper is a child subreaper, so everything the program starts, however
//! it detaches (`setsid`, double fork, `nohup … &`), stays below it. When the
//! program ends, or the agent sends SIGUSR1, the keeper sweeps its whole
//! subtree and exits with the program's status (or 137). The keeper also
//! removes the staged code file, as uid 1000: the file lives in a 0700
//! folder of uid 1000, which root without CAP_DAC_OVERRIDE cannot write.

use std::ffi::{c_char, CStr, CString};
use std::os::fd::{AsRawFd, RawFd};

use sha2::{Digest, Sha256};

use crate::proc_tree::{self, Pid};
use crate::protocol::Tool;
use crate::sys::{self, Reaped};

/// The unprivileged user and group every program runs as (the image's
/// `sandbox` user; numbers, so no NSS lookup in a static binary).
pub const SANDBOX_UID: libc::uid_t = 1000;
pub const SANDBOX_GID: libc::gid_t = 1000;

/// Where programs run.
const WORKSPACE: &CStr = c"/workspace";
/// Folder of the staged code files, made by uid 1000 with mode 0700.
const STAGING_DIR: &CStr = c"/tmp/.ironclaw";

/// Runs a Python file as `python3 -c` would run code: `sys.argv[0]` is
/// `"-c"`, `__file__` is unset, the launcher's own names are gone from the
/// globals, and tracebacks name the staged file.
pub const PYTHON_LAUNCHER: &CStr = c"import sys as _s; _p = _s.argv.pop(1); _s.argv[0] = \"-c\"; del _s; exec(compile(open(_p, \"rb\").read(), globals().pop(\"_p\"), \"exec\"))";

/// Keeper exit status when the agent asked for the call to be killed
/// (SIGUSR1), like a shell reports a SIGKILLed command.
pub const KILLED_STATUS: i32 = 137;
/// The program could not be set up (privilege drop, staging, fork).
pub const SETUP_FAILED_STATUS: i32 = 125;
/// A checked file changed after approval.
pub const CHECK_FAILED_STATUS: i32 = 126;
/// The interpreter could not be executed.
pub const EXEC_FAILED_STATUS: i32 = 127;

/// How long a sweep round waits for killed processes to die before it looks
/// for stragglers again. Short: SIGKILL takes effect within microseconds
/// unless a process sits in an uninterruptible sleep.
const SWEEP_ROUND_MS: u64 = 10;

/// A checked file as the program child needs it.
pub struct PreparedCheck {
    pub sha256: [u8; 32],
    /// `/workspace/<path>`, NUL-terminated.
    pub full_path: CString,
    /// The path as the host sent it, for the message.
    pub shown: Vec<u8>,
}

/// Everything the keeper and the program need, prepared by the agent before
/// the fork (so the children do little but system calls).
pub struct Launch<'a> {
    /// The agent's pid: the keeper checks it is still its parent.
    pub agent_pid: Pid,
    pub tool: Tool,
    /// `/tmp/.ironclaw/<stem>.<sh|py>`.
    pub staged: CString,
    pub checks: Vec<PreparedCheck>,
    pub code: &'a [u8],
    /// `NAME=value` strings of the program's environment.
    pub env: &'a [CString],
    /// Write ends of the call's pipes.
    pub stdout: RawFd,
    pub stderr: RawFd,
    /// The keeper writes the program's pid here (4 bytes, big-endian).
    pub info: RawFd,
}

impl<'a> Launch<'a> {
    /// Checks and converts a RUN's paths. The error is the REFUSED message.
    pub fn new(
        agent_pid: Pid,
        run: &'a crate::protocol::Run,
        env: &'a [CString],
        (stdout, stderr, info): (RawFd, RawFd, RawFd),
    ) -> Result<Launch<'a>, String> {
        let dir = STAGING_DIR.to_string_lossy();
        let staged = CString::new(format!("{dir}/{}.{}", run.stem, run.tool.extension()))
            .map_err(|_| "the stem contains a NUL byte".to_string())?;
        let checks = run
            .checks
            .iter()
            .map(|check| {
                if check.path.is_empty() {
                    return Err("a checked path is empty".to_string());
                }
                let mut full = WORKSPACE.to_bytes().to_vec();
                full.push(b'/');
                full.extend_from_slice(&check.path);
                let full_path = CString::new(full).map_err(|_| {
                    format!(
                        "checked path {:?} contains a NUL byte",
                        String::from_utf8_lossy(&check.path)
                    )
                })?;
                Ok(PreparedCheck {
                    sha256: check.sha256,
                    full_path,
                    shown: check.path.clone(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Launch {
            agent_pid,
            tool: run.tool,
            staged,
            checks,
            code: &run.code,
            env,
            stdout,
            stderr,
            info,
        })
    }
}

/// The keeper: runs in the agent's fork child, as uid 0, and never returns.
pub fn run_keeper(launch: &Launch) -> ! {
    // Keep only stderr (diagnostics) and the call's three pipes. Stdin and
    // stdout are the host's channel: the keeper must neither read it nor
    // hold it open after the agent is gone.
    if let Ok(null) = sys::open(b"/dev/null\0", libc::O_RDWR, 0) {
        unsafe {
            libc::dup2(null.as_raw_fd(), 0);
            libc::dup2(null.as_raw_fd(), 1);
        }
    }
    sys::close_fds_except(&[2, launch.stdout, launch.stderr, launch.info]);

    // If the agent dies, SIGUSR1 makes the keeper sweep as on a KILL frame.
    // The agent may have died before this took effect: then the parent is
    // already someone else and nothing has started yet.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGUSR1 as libc::c_ulong) };
    if unsafe { libc::getppid() } != launch.agent_pid {
        sys::exit_now(KILLED_STATUS);
    }
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong);
        libc::setsid();
    }
    // Inherited from the agent already; the keeper depends on it, so it
    // does not rely on that.
    let _ = sys::block_signals(&[libc::SIGCHLD, libc::SIGUSR1]);

    let program = match sys::fork() {
        Ok(sys::Forked::Child) => run_program(launch),
        Ok(sys::Forked::Parent(pid)) => pid,
        Err(err) => {
            let message = format!("ironclaw: could not start the program (fork failed: {err})\n");
            let _ = sys::write_all(launch.stderr, message.as_bytes());
            sys::exit_now(SETUP_FAILED_STATUS);
        }
    };
    // The child does this too; whichever runs first wins, so the group exists
    // before the agent learns its id. Fails harmlessly once the child exec'd.
    unsafe { libc::setpgid(program, program) };
    let _ = sys::write_all(launch.info, &(program as u32).to_be_bytes());
    unsafe {
        libc::close(launch.info);
        libc::close(launch.stdout);
        libc::close(launch.stderr);
    }

    let status = wait_for_program(program);
    sweep(program);
    remove_staged(&launch.staged);
    sys::exit_now(status);
}

/// Waits until the program exits (its status) or the agent sends SIGUSR1
/// ([`KILLED_STATUS`]). Orphans that end meanwhile are reaped on the way.
fn wait_for_program(program: Pid) -> i32 {
    loop {
        if sys::wait_signal(&[libc::SIGCHLD, libc::SIGUSR1], None) == Some(libc::SIGUSR1) {
            return KILLED_STATUS;
        }
        // SIGCHLD does not queue: one signal may stand for several children.
        loop {
            match sys::reap_one() {
                Reaped::Child(pid, status) if pid == program => return sys::status_code(status),
                Reaped::Child(..) => continue,
                Reaped::Running | Reaped::None => break,
            }
        }
    }
}

/// Kills the program's group, then every process left below the keeper,
/// round after round, until the keeper has no children at all.
///
/// Each round freezes the whole subtree with SIGSTOP before killing it, so a
/// fork bomb cannot outrun the walk. A process forked just after the scan
/// (before its parent was stopped) becomes an orphan of the keeper (a
/// subreaper) and is found by the next round.
fn sweep(program_group: Pid) {
    let _ = sys::kill(-program_group, libc::SIGKILL);
    let keeper = unsafe { libc::getpid() };
    loop {
        proc_tree::stop_and_kill(&proc_tree::descendants(&proc_tree::scan(), keeper));
        loop {
            match sys::reap_one() {
                Reaped::Child(..) => continue,
                Reaped::Running => break,
                Reaped::None => return,
            }
        }
        sys::wait_signal(&[libc::SIGCHLD], Some(SWEEP_ROUND_MS));
    }
}

/// Unlinks the staged code file from a child running as uid 1000, the
/// owner of the file and its folder.
fn remove_staged(staged: &CString) {
    match sys::fork() {
        Ok(sys::Forked::Child) => {
            if drop_privileges().is_ok() {
                unsafe { libc::unlink(staged.as_ptr()) };
            }
            sys::exit_now(0);
        }
        Ok(sys::Forked::Parent(pid)) => {
            let _ = sys::wait_for(pid);
        }
        Err(err) => eprintln!("ironclaw-agent: keeper: could not fork to remove {staged:?}: {err}"),
    }
}

/// Supplementary groups cleared, then gid and uid 1000, each checked.
fn drop_privileges() -> Result<(), String> {
    let step = |ret: libc::c_int, what: &str| {
        sys::check(ret)
            .map(drop)
            .map_err(|err| format!("{what} failed: {err}"))
    };
    step(
        unsafe { libc::setgroups(0, std::ptr::null()) },
        "setgroups(0)",
    )?;
    step(unsafe { libc::setgid(SANDBOX_GID) }, "setgid(1000)")?;
    step(unsafe { libc::setuid(SANDBOX_UID) }, "setuid(1000)")?;
    Ok(())
}

/// Writes `message` to `fd` and exits with `status`.
fn fail(fd: RawFd, status: i32, message: &[u8]) -> ! {
    let _ = sys::write_all(fd, message);
    sys::exit_now(status);
}

/// The program child: sets itself up, drops to uid 1000, verifies the
/// checked files, stages the code and execs the interpreter.
fn run_program(launch: &Launch) -> ! {
    let err = launch.stderr;
    let setup = |ret: libc::c_int, what: &str| {
        if let Err(e) = sys::check(ret) {
            fail(
                err,
                SETUP_FAILED_STATUS,
                format!("ironclaw: could not start the program: {what} failed: {e}\n").as_bytes(),
            );
        }
    };
    if let Err(e) = sys::reset_signals() {
        fail(
            err,
            SETUP_FAILED_STATUS,
            format!("ironclaw: could not reset signals: {e}\n").as_bytes(),
        );
    }
    setup(unsafe { libc::setpgid(0, 0) }, "setpgid");
    if let Err(why) = drop_privileges() {
        fail(
            err,
            SETUP_FAILED_STATUS,
            format!("ironclaw: could not start the program: {why}\n").as_bytes(),
        );
    }
    setup(
        unsafe { libc::chdir(WORKSPACE.as_ptr()) },
        "chdir(/workspace)",
    );
    match sys::open(b"/dev/null\0", libc::O_RDONLY, 0) {
        // The keeper closed its own fd 0, so the open returns 0 itself:
        // keep it (not closed as `null` drops) and clear the close-on-exec
        // flag `sys::open` sets, which dup2 would otherwise have cleared.
        Ok(null) if null.as_raw_fd() == 0 => {
            std::mem::forget(null);
            setup(unsafe { libc::fcntl(0, libc::F_SETFD, 0) }, "fcntl(stdin)");
        }
        Ok(null) => setup(unsafe { libc::dup2(null.as_raw_fd(), 0) }, "dup2(stdin)"),
        Err(e) => fail(
            err,
            SETUP_FAILED_STATUS,
            format!("ironclaw: could not open /dev/null: {e}\n").as_bytes(),
        ),
    }
    setup(unsafe { libc::dup2(launch.stdout, 1) }, "dup2(stdout)");
    setup(unsafe { libc::dup2(launch.stderr, 2) }, "dup2(stderr)");
    sys::close_fds_except(&[0, 1, 2]);
    // From here on the program's stderr is fd 2.

    for check in &launch.checks {
        if file_sha256(&check.full_path).as_ref() != Some(&check.sha256) {
            let mut message = b"ironclaw: not run: ".to_vec();
            message.extend_from_slice(&check.shown);
            message.extend_from_slice(
                b" changed after the command was approved, so it is not what was approved. Review the file and run the command again.\n",
            );
            fail(2, CHECK_FAILED_STATUS, &message);
        }
    }

    if stage(&launch.staged, launch.code).is_err() {
        fail(
            2,
            SETUP_FAILED_STATUS,
            b"ironclaw: could not stage the program in /tmp (is it full?)\n",
        );
    }

    let staged = launch.staged.as_c_str();
    let argv = match launch.tool {
        Tool::Shell => [c"bash", c"--noprofile", c"--norc", staged],
        Tool::Python => [c"python3", c"-c", PYTHON_LAUNCHER, staged],
    };
    exec(&argv, launch.env)
}

/// `execvpe` (PATH lookup, explicit environment); on failure a message and
/// [`EXEC_FAILED_STATUS`].
fn exec(argv: &[&CStr], env: &[CString]) -> ! {
    let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|arg| arg.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<*const c_char> = env.iter().map(|var| var.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    unsafe { libc::execvpe(argv_ptrs[0], argv_ptrs.as_ptr(), env_ptrs.as_ptr()) };
    let error = std::io::Error::last_os_error();
    let message = format!(
        "ironclaw: could not run {}: {error}\n",
        argv[0].to_string_lossy()
    );
    fail(2, EXEC_FAILED_STATUS, message.as_bytes())
}

/// SHA-256 of a regular file's content; None if it cannot be opened or read
/// or is not a regular file (a FIFO would block the open or the read).
fn file_sha256(path: &CString) -> Option<[u8; 32]> {
    let fd = sys::open(
        path.as_bytes_with_nul(),
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .ok()?;
    let mut stat = unsafe { std::mem::zeroed::<libc::stat>() };
    sys::check(unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) }).ok()?;
    if stat.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match sys::read(fd.as_raw_fd(), &mut buf).ok()? {
            0 => return Some(hasher.finalize().into()),
            n => hasher.update(&buf[..n]),
        }
    }
}

/// Writes the code to a new file in [`STAGING_DIR`] (0700), refusing to
/// follow a link or reuse an existing file.
fn stage(staged: &CString, code: &[u8]) -> std::io::Result<()> {
    if let Err(err) = sys::check(unsafe { libc::mkdir(STAGING_DIR.as_ptr(), 0o700) }) {
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err);
        }
    }
    let file = sys::open(
        staged.as_bytes_with_nul(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
        0o600,
    )?;
    sys::write_all(file.as_raw_fd(), code)
}
