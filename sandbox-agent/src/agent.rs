//! The agent's main loop: one thread, one `poll(2)` over stdin (frames from
//! the host), every call's pipes, and a signalfd for SIGCHLD; the poll
//! timeout is the nearest call deadline or heartbeat.
//!
//! Being single-threaded is what makes forking the keepers safe. Writes to
//! stdout block until the whole frame is out: a host that stops reading
//! stalls the loop, and with it the heartbeats its watchdog listens for.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use crate::call::{Call, Stream};
use crate::privileges;
use crate::proc_tree::{self, Pid};
use crate::protocol::{FrameBuffer, ProtocolError, Reply, Request, Run, MAX_OUTPUT_CHUNK, VERSION};
use crate::sys::{self, Reaped};

/// Heartbeat period. The host's watchdog restarts the container after a few
/// missed ones, so this bounds how long a wedged agent goes unnoticed.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// On shutdown, how long the agent waits for the keepers' sweeps before it
/// exits anyway (each keeper also sweeps on its own when the agent dies).
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// Environment variables with this prefix are the agent's own settings and
/// never reach a program.
const PRIVATE_ENV_PREFIX: &[u8] = b"IRONCLAW_";

/// Exit statuses of the agent.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FATAL: i32 = 1;
pub const EXIT_NOT_PRIVILEGED: i32 = 2;
pub const EXIT_PROTOCOL_ERROR: i32 = 3;

/// Why the loop stops.
enum Stop {
    /// stdin reached EOF or stdout broke: the host went away.
    HostGone(&'static str),
    Protocol(ProtocolError),
    /// A system call the loop cannot do without failed.
    Fatal(String),
}

/// The whole agent: what it owns for as long as it runs.
struct Agent {
    pid: Pid,
    /// Host frames read so far, up to the end of the last complete one.
    input: FrameBuffer,
    /// SIGCHLD (blocked) arrives here: time to reap.
    sigchld: OwnedFd,
    /// Calls in flight, in start order.
    calls: Vec<Call>,
    /// Every program's environment: the agent's own minus `IRONCLAW_*`.
    env: Vec<CString>,
    next_heartbeat: Instant,
    /// One pipe read: at most one output frame's worth.
    buf: Vec<u8>,
}

/// Runs the agent; returns its exit status.
pub fn main() -> i32 {
    if let Err(why) = privileges::check() {
        eprintln!("ironclaw-agent: {why}");
        return EXIT_NOT_PRIVILEGED;
    }
    let mut agent = match Agent::new() {
        Ok(agent) => agent,
        Err(why) => {
            eprintln!("ironclaw-agent: cannot start: {why}");
            return EXIT_FATAL;
        }
    };
    let stop = agent.run();
    agent.shutdown();
    match stop {
        Stop::HostGone(why) => {
            eprintln!("ironclaw-agent: {why}; exiting");
            EXIT_OK
        }
        Stop::Protocol(err) => {
            eprintln!("ironclaw-agent: protocol error: {err}");
            EXIT_PROTOCOL_ERROR
        }
        Stop::Fatal(why) => {
            eprintln!("ironclaw-agent: {why}");
            EXIT_FATAL
        }
    }
}

/// The programs' environment: ours without the agent's private settings.
fn program_env() -> Vec<CString> {
    std::env::vars_os()
        .filter(|(name, _)| !name.as_bytes().starts_with(PRIVATE_ENV_PREFIX))
        .filter_map(|(name, value)| {
            let mut var = name.as_bytes().to_vec();
            var.push(b'=');
            var.extend_from_slice(value.as_bytes());
            CString::new(var).ok()
        })
        .collect()
}

/// Makes sure fds 0-2 are open, so no pipe or file the agent makes can take
/// one of those numbers (a later `dup2` onto 1 or 2 would then clobber it),
/// and that stdout blocks: frames go out whole, never in part.
fn prepare_std_fds() -> Result<(), String> {
    for fd in 0..=2 {
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            // open returns the lowest free number: this one.
            let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
            if null != fd {
                return Err(format!(
                    "fd {fd} is closed and /dev/null cannot take its place"
                ));
            }
        }
    }
    let flags = unsafe { libc::fcntl(1, libc::F_GETFL) };
    if flags != -1 && flags & libc::O_NONBLOCK != 0 {
        unsafe { libc::fcntl(1, libc::F_SETFL, flags & !libc::O_NONBLOCK) };
    }
    Ok(())
}

impl Agent {
    fn new() -> Result<Agent, String> {
        prepare_std_fds()?;
        // Everything in a call's tree that gets orphaned reparents to its
        // keeper; anything else (a keeper's children if it died) to us.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong) };
        // A dead host shows up as EPIPE from write, not as a signal.
        sys::ignore_signal(libc::SIGPIPE).map_err(|err| format!("cannot ignore SIGPIPE: {err}"))?;
        // SIGCHLD is read from the signalfd. SIGUSR1 is blocked so that the
        // keepers inherit it blocked: the agent's SIGUSR1 can then never
        // kill a keeper before the keeper is ready to take it.
        sys::block_signals(&[libc::SIGCHLD, libc::SIGUSR1])
            .map_err(|err| format!("cannot block SIGCHLD: {err}"))?;
        let sigchld = sys::signalfd(&[libc::SIGCHLD])
            .map_err(|err| format!("cannot create a signalfd: {err}"))?;
        Ok(Agent {
            pid: std::process::id() as Pid,
            input: FrameBuffer::new(),
            sigchld,
            calls: Vec::new(),
            env: program_env(),
            next_heartbeat: Instant::now() + HEARTBEAT_EVERY,
            buf: vec![0; MAX_OUTPUT_CHUNK],
        })
    }

    fn send(&self, reply: &Reply) -> Result<(), Stop> {
        sys::write_all(1, &reply.encode()).map_err(|err| match err.raw_os_error() {
            Some(libc::EPIPE) => Stop::HostGone("stdout closed (EPIPE)"),
            _ => Stop::Fatal(format!("cannot write to stdout: {err}")),
        })
    }

    fn run(&mut self) -> Stop {
        let ready = Reply::Ready {
            version: VERSION,
            pid: self.pid as u32,
        };
        match self.send(&ready).and_then(|()| self.serve()) {
            Ok(never) => match never {},
            Err(stop) => stop,
        }
    }

    /// The loop; returns only to stop.
    fn serve(&mut self) -> Result<std::convert::Infallible, Stop> {
        loop {
            let now = Instant::now();
            if now >= self.next_heartbeat {
                self.send(&Reply::Heartbeat {
                    running: self.calls.len() as u32,
                })?;
                self.next_heartbeat += HEARTBEAT_EVERY;
                if self.next_heartbeat <= now {
                    // The loop was held up (a blocked write): no burst of
                    // catch-up heartbeats.
                    self.next_heartbeat = now + HEARTBEAT_EVERY;
                }
            }
            for call in &mut self.calls {
                call.on_time(now);
            }
            self.finish_calls(now)?;
            self.poll_once()?;
        }
    }

    /// Sends EXIT for every call that is over and forgets it.
    fn finish_calls(&mut self, now: Instant) -> Result<(), Stop> {
        let mut i = 0;
        while i < self.calls.len() {
            match self.calls[i].finish(now) {
                Some(exit) => {
                    self.calls.remove(i);
                    self.send(&Reply::Exit(exit))?;
                }
                None => i += 1,
            }
        }
        Ok(())
    }

    /// One poll and whatever it found ready.
    fn poll_once(&mut self) -> Result<(), Stop> {
        const STDIN: usize = 0;
        const SIGCHLD: usize = 1;
        let mut fds = vec![pollfd(0), pollfd(self.sigchld.as_raw_fd())];
        let mut streams = Vec::new();
        for (index, call) in self.calls.iter().enumerate() {
            for (stream, fd) in call.open_streams() {
                fds.push(pollfd(fd.as_raw_fd()));
                streams.push((index, stream));
            }
        }

        let deadline = self
            .calls
            .iter()
            .filter_map(Call::next_deadline)
            .fold(self.next_heartbeat, Instant::min);
        let wait = deadline.saturating_duration_since(Instant::now());
        // Rounded up: waking a hair early would only spin once more.
        let timeout_ms = i32::try_from(wait.as_nanos().div_ceil(1_000_000)).unwrap_or(i32::MAX);
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready == -1 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(Stop::Fatal(format!("poll failed: {err}")));
        }
        if ready == 0 {
            return Ok(());
        }

        if fds[SIGCHLD].revents != 0 {
            sys::drain_signalfd(&self.sigchld);
            self.reap();
        }
        for (fd, &(index, stream)) in fds[2..].iter().zip(&streams) {
            if fd.revents != 0 {
                self.forward(index, stream)?;
            }
        }
        if fds[STDIN].revents != 0 {
            self.read_requests()?;
        }
        Ok(())
    }

    /// Reaps every ended child: keepers are matched to their calls. A child
    /// that is not a keeper, or a keeper that did not exit on its own (say
    /// the OOM killer took it, so it could not sweep), means strays are
    /// below the agent: they are swept too. Their deaths bring another
    /// SIGCHLD, hence another round, until none are left.
    fn reap(&mut self) {
        let mut strays = false;
        while let Reaped::Child(pid, status) = sys::reap_one() {
            match self.calls.iter_mut().find(|call| call.keeper() == pid) {
                Some(call) => {
                    call.keeper_reaped(status);
                    strays |= !libc::WIFEXITED(status);
                }
                None => strays = true,
            }
        }
        if strays {
            let keepers: Vec<Pid> = self
                .calls
                .iter()
                .filter(|call| call.keeper_running())
                .map(Call::keeper)
                .collect();
            proc_tree::stop_and_kill(&proc_tree::strays(&proc_tree::scan(), self.pid, &keepers));
        }
    }

    /// One read from a call's pipe, forwarded as one STDOUT/STDERR frame.
    fn forward(&mut self, index: usize, stream: Stream) -> Result<(), Stop> {
        let call = &mut self.calls[index];
        let n = call.read(stream, &mut self.buf);
        if n == 0 {
            return Ok(());
        }
        let (call, bytes) = (call.id, self.buf[..n].to_vec());
        let reply = match stream {
            Stream::Stdout => Reply::Stdout { call, bytes },
            Stream::Stderr => Reply::Stderr { call, bytes },
            // Call::read never returns bytes from the info pipe.
            Stream::Info => return Ok(()),
        };
        self.send(&reply)
    }

    fn read_requests(&mut self) -> Result<(), Stop> {
        let n = match sys::read(0, &mut self.buf) {
            Ok(n) => n,
            // Only if something else shares a non-blocking stdin with us.
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(err) => return Err(Stop::Fatal(format!("cannot read stdin: {err}"))),
        };
        if n == 0 {
            if self.input.is_partial() {
                eprintln!("ironclaw-agent: stdin ended in the middle of a frame");
            }
            return Err(Stop::HostGone("stdin closed"));
        }
        self.input.extend(&self.buf[..n]);
        while let Some(frame) = self.input.next_frame().map_err(Stop::Protocol)? {
            match Request::decode(&frame).map_err(Stop::Protocol)? {
                Request::Run(run) => self.start(&run)?,
                Request::Kill { call } => {
                    if let Some(call) = self.calls.iter_mut().find(|c| c.id == call) {
                        call.cancel();
                    }
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, run: &Run) -> Result<(), Stop> {
        if self.calls.iter().any(|call| call.id == run.call) {
            let message = format!("call {} is already running", run.call);
            return self.send(&Reply::Refused {
                call: run.call,
                message,
            });
        }
        match Call::start(run, &self.env, self.pid) {
            Ok(call) => {
                self.calls.push(call);
                self.send(&Reply::Started { call: run.call })
            }
            Err(message) => self.send(&Reply::Refused {
                call: run.call,
                message,
            }),
        }
    }

    /// Kills every call and waits (a bounded time) for the keepers' sweeps.
    fn shutdown(&mut self) {
        for call in &mut self.calls {
            call.cancel();
        }
        let deadline = Instant::now() + SHUTDOWN_WAIT;
        loop {
            self.reap();
            self.calls.retain(Call::keeper_running);
            if self.calls.is_empty() {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                eprintln!(
                    "ironclaw-agent: {} keeper(s) still sweeping at exit",
                    self.calls.len()
                );
                return;
            }
            let mut fds = [pollfd(self.sigchld.as_raw_fd())];
            let timeout_ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout_ms) };
            sys::drain_signalfd(&self.sigchld);
        }
    }
}

fn pollfd(fd: std::os::fd::RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
