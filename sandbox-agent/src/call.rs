//! One call as the agent sees it: its keeper, its pipes, its deadlines, and
//! how its end is reported (the exit-code mapping).

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use crate::keeper::{self, Launch, KILLED_STATUS};
use crate::proc_tree::Pid;
use crate::protocol::{Exit, Run};
use crate::sys;

/// Reported when the timeout hit and the program ended on SIGTERM within
/// the grace period (as coreutils `timeout` reports it).
pub const TIMED_OUT_CODE: i32 = 124;

/// The code EXIT carries. `keeper_status` is the keeper's exit code (the
/// program's status, or 137 after a sweep on request).
pub fn reported_code(keeper_status: i32, timed_out: bool, escalated: bool, cancelled: bool) -> i32 {
    if cancelled || (timed_out && escalated) {
        KILLED_STATUS
    } else if timed_out {
        TIMED_OUT_CODE
    } else {
        keeper_status
    }
}

/// Which of a call's pipes became readable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
    /// The program's pid, from the keeper.
    Info,
}

/// A call from its RUN to its EXIT.
pub struct Call {
    /// The host's call id.
    pub id: u32,
    /// The keeper's pid (the agent's child); SIGUSR1 here kills the call.
    keeper: Pid,
    /// The program's pid = its process group id; learned from the info pipe.
    program_group: Option<Pid>,
    /// Read ends (non-blocking); None once at EOF.
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    info: Option<OwnedFd>,
    /// Fork of the keeper: the start of `duration_ms`.
    started: Instant,
    /// When SIGTERM goes to the program's group; None if the timeout is too
    /// far away to represent.
    timeout_at: Option<Instant>,
    grace: Duration,
    /// When the keeper gets SIGUSR1 after a timeout.
    escalate_at: Option<Instant>,
    timed_out: bool,
    escalated: bool,
    cancelled: bool,
    /// The keeper's exit code (or 128 + signal), once reaped.
    keeper_status: Option<i32>,
}

impl Call {
    /// Makes the pipes and forks the keeper. The error is the REFUSED
    /// message. Call only from the single-threaded agent.
    pub fn start(run: &Run, env: &[CString], agent_pid: Pid) -> Result<Call, String> {
        let pipes = || -> std::io::Result<_> {
            let (stdout_r, stdout_w) = sys::pipe()?;
            let (stderr_r, stderr_w) = sys::pipe()?;
            let (info_r, info_w) = sys::pipe()?;
            for read_end in [&stdout_r, &stderr_r, &info_r] {
                sys::set_nonblocking(read_end)?;
            }
            Ok(((stdout_r, stderr_r, info_r), (stdout_w, stderr_w, info_w)))
        };
        let (reads, writes) = pipes().map_err(|err| format!("could not create pipes: {err}"))?;
        let launch = Launch::new(
            agent_pid,
            run,
            env,
            (
                writes.0.as_raw_fd(),
                writes.1.as_raw_fd(),
                writes.2.as_raw_fd(),
            ),
        )?;
        let started = Instant::now();
        let keeper = match sys::fork() {
            Ok(sys::Forked::Child) => {
                // Never return into the agent's loop from here, even on a
                // panic (release builds abort on panic anyway).
                let _ = catch_unwind(AssertUnwindSafe(|| keeper::run_keeper(&launch)));
                sys::exit_now(keeper::SETUP_FAILED_STATUS);
            }
            Ok(sys::Forked::Parent(pid)) => pid,
            Err(err) => return Err(format!("could not start the call: fork failed: {err}")),
        };
        // `writes` drops here: the write ends now live only in the keeper's
        // tree, so EOF on the read ends means that tree is gone.
        drop(writes);
        Ok(Call {
            id: run.call,
            keeper,
            program_group: None,
            stdout: Some(reads.0),
            stderr: Some(reads.1),
            info: Some(reads.2),
            started,
            timeout_at: started.checked_add(Duration::from_millis(run.timeout_ms)),
            grace: Duration::from_millis(run.grace_ms),
            escalate_at: None,
            timed_out: false,
            escalated: false,
            cancelled: false,
            keeper_status: None,
        })
    }

    pub fn keeper(&self) -> Pid {
        self.keeper
    }

    pub fn keeper_running(&self) -> bool {
        self.keeper_status.is_none()
    }

    /// The open read ends, for poll.
    pub fn open_streams(&self) -> impl Iterator<Item = (Stream, &OwnedFd)> {
        [
            (Stream::Stdout, &self.stdout),
            (Stream::Stderr, &self.stderr),
            (Stream::Info, &self.info),
        ]
        .into_iter()
        .filter_map(|(stream, fd)| fd.as_ref().map(|fd| (stream, fd)))
    }

    /// Reads once from `stream`: the bytes read (empty at EOF or when there
    /// was nothing after all). At EOF or on an error the pipe is closed.
    pub fn read(&mut self, stream: Stream, buf: &mut [u8]) -> usize {
        let slot = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
            Stream::Info => &mut self.info,
        };
        let Some(fd) = slot else { return 0 };
        match sys::read(fd.as_raw_fd(), buf) {
            Ok(0) => {
                *slot = None;
                0
            }
            Ok(n) if stream == Stream::Info => {
                // The keeper writes the 4 bytes in one write (below
                // PIPE_BUF, so atomically) and then closes its end.
                if let Some(pid) = buf[..n].first_chunk::<4>() {
                    self.program_group = Some(u32::from_be_bytes(*pid) as Pid);
                }
                *slot = None;
                0
            }
            Ok(n) => n,
            Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                *slot = None;
                0
            }
        }
    }

    /// Records the keeper's end (raw wait status).
    pub fn keeper_reaped(&mut self, status: libc::c_int) {
        self.keeper_status = Some(sys::status_code(status));
    }

    fn signal_group(&mut self, signal: libc::c_int) {
        if self.program_group.is_none() {
            // The pid may be in the pipe already without poll having said so.
            let mut buf = [0u8; 8];
            self.read(Stream::Info, &mut buf);
        }
        if let Some(group) = self.program_group {
            let _ = sys::kill(-group, signal);
        }
    }

    /// KILL frame (or shutdown): the keeper sweeps at once, and the group
    /// gets SIGKILL right away too. A call whose keeper has already ended
    /// keeps its real result.
    pub fn cancel(&mut self) {
        if !self.keeper_running() {
            return;
        }
        self.cancelled = true;
        let _ = sys::kill(self.keeper, libc::SIGUSR1);
        self.signal_group(libc::SIGKILL);
    }

    /// Fires the timeout and the escalation when their time has come.
    pub fn on_time(&mut self, now: Instant) {
        if !self.keeper_running() || self.cancelled {
            return;
        }
        if !self.timed_out && self.timeout_at.is_some_and(|at| now >= at) {
            self.timed_out = true;
            self.escalate_at = now.checked_add(self.grace);
            self.signal_group(libc::SIGTERM);
        }
        if self.timed_out && !self.escalated && self.escalate_at.is_some_and(|at| now >= at) {
            self.escalated = true;
            let _ = sys::kill(self.keeper, libc::SIGUSR1);
        }
    }

    /// When [`Call::on_time`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.keeper_running() || self.cancelled {
            None
        } else if !self.timed_out {
            self.timeout_at
        } else if !self.escalated {
            self.escalate_at
        } else {
            None
        }
    }

    /// The EXIT to send if the call is over: the keeper was reaped and both
    /// output pipes are at EOF, so everything the call printed was sent.
    /// (Every holder of the write ends is in the keeper's tree, which the
    /// keeper swept before exiting.)
    pub fn finish(&self, now: Instant) -> Option<Exit> {
        let keeper_status = self.keeper_status?;
        if self.stdout.is_some() || self.stderr.is_some() {
            return None;
        }
        Some(Exit {
            call: self.id,
            code: reported_code(
                keeper_status,
                self.timed_out,
                self.escalated,
                self.cancelled,
            ),
            timed_out: self.timed_out,
            cancelled: self.cancelled,
            duration_ms: u64::try_from(now.duration_since(self.started).as_millis())
                .unwrap_or(u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_mapping() {
        // (keeper status, timed out, escalated, cancelled) -> reported
        let cases = [
            (0, false, false, false, 0),
            (3, false, false, false, 3),
            (126, false, false, false, 126),
            (130, false, false, false, 130),
            // Timed out, ended within the grace period, whatever its status.
            (143, true, false, false, 124),
            (0, true, false, false, 124),
            // Timed out and swept after the grace period.
            (137, true, true, false, 137),
            // Cancelled, however it ended.
            (137, false, false, true, 137),
            (0, false, false, true, 137),
            (143, true, false, true, 137),
        ];
        for (status, timed_out, escalated, cancelled, want) in cases {
            assert_eq!(
                reported_code(status, timed_out, escalated, cancelled),
                want,
                "status {status} timed_out {timed_out} escalated {escalated} cancelled {cancelled}"
            );
        }
    }

    #[test]
    fn wait_status_to_code() {
        // Raw wait statuses as the kernel encodes them.
        let exited = |code: i32| code << 8;
        let signaled = |signal: i32| signal;
        assert_eq!(sys::status_code(exited(0)), 0);
        assert_eq!(sys::status_code(exited(42)), 42);
        assert_eq!(sys::status_code(exited(255)), 255);
        assert_eq!(sys::status_code(signaled(libc::SIGKILL)), 137);
        assert_eq!(sys::status_code(signaled(libc::SIGTERM)), 143);
        // Core dumped: bit 7 set.
        assert_eq!(sys::status_code(signaled(libc::SIGSEGV) | 0x80), 139);
    }
}
