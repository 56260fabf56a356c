//! How one tool call runs in the session's container, streams its output,
//! and is stopped by timeout or cancel.
//!
//! # How a tool call runs
//!
//! Every running container has a resident exec agent (`sandbox-agent/`,
//! see its README) on one long-lived channel ([`super::channel`]). A call
//! is one RUN frame: the code, its tool, its time limit and the hashes of
//! the workspace files its approval read. The agent forks a *keeper* (uid
//! 0, a child subreaper) which starts the program as uid 1000 in a process
//! group of its own, with stdin from `/dev/null`; the output comes back as
//! frames while it is written, and an EXIT frame ends the call.
//!
//! # Nothing outlives its call
//!
//! Every process the program starts stays below its keeper: one that calls
//! `setsid` or double-forks is reparented to the keeper (the nearest
//! subreaper), not to the container's init. When the program ends, is
//! cancelled or times out, the keeper stops and kills its whole tree, round
//! after round, until it has no child left; only then does the agent send
//! EXIT. Other calls running at the same time have keepers of their own and
//! are untouched.
//!
//! # What is approved is what runs
//!
//! The approval judged the code and the workspace files it runs. The code
//! travels in the RUN frame itself; the files' SHA-256 hashes are checked
//! by the program's process, already uid 1000, immediately before it
//! starts: the last moment anyone can check. A mismatch refuses the call
//! (exit 126) with a message on stderr, which the person and the model both
//! see.
//!
//! # Time limits
//!
//! The timeout is enforced three times over: the agent sends SIGTERM to the
//! program's group at the limit and has the keeper kill everything
//! [`KILL_GRACE`] later; if no EXIT has come [`HOST_KILL_GRACE`] after
//! that, the host sends KILL itself; if even that brings no EXIT, or the
//! agent stops sending heartbeats, the container is restarted. A cancel
//! sends KILL at once.
//!
//! # Exit codes
//!
//! `exit_code` is the program's own status (128 + N when signal N ended
//! it), or 124 when a timeout stopped it with SIGTERM, 137 when it had to
//! be killed (timeout escalation, cancel, out-of-memory kill), 125 when the
//! code could not be staged in `/tmp`, 126 when a file it was approved on
//! changed since (it did not run), and `None` when the container had to be
//! restarted under it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::channel::{Event, Run};
use super::container::Container;
use super::output::OutputCollector;
use super::{Exec, ExecOutcome, SandboxError};
use crate::protocol::OutputStream;
use crate::risk::JudgedFile;

/// After the agent sends SIGTERM at the time limit, how long the program
/// gets to exit before everything of it is killed: enough to flush output
/// and remove temp files, short enough that a timeout still means "stopped
/// now".
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Extra time the host waits past the time limit and its kill grace before
/// it sends KILL itself.
const HOST_KILL_GRACE: Duration = Duration::from_secs(3);

/// How long the host waits for EXIT after its own KILL before it restarts
/// the whole container; the last resort for a wedged call.
const KILL_GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// Shortest time limit sent: a call always gets a moment to start.
const MIN_EXEC_TIMEOUT: Duration = Duration::from_millis(100);

/// Longest time limit honoured; keeps deadline arithmetic far from
/// overflow while being longer than any tool call anyone should wait for.
const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// A cancel request for one running exec.
#[derive(Default)]
pub(super) struct CancelSignal {
    requested: Cell<bool>,
    notify: Notify,
}

impl CancelSignal {
    pub(super) fn cancel(&self) {
        self.requested.set(true);
        self.notify.notify_one();
    }

    async fn cancelled(&self) {
        if self.requested.get() {
            return;
        }
        self.notify.notified().await;
    }
}

/// Why the host stopped waiting for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    None,
    Cancelled,
    TimedOut,
}

/// How the wait for EXIT ended.
enum Ended {
    Exit {
        code: i32,
        timed_out: bool,
        cancelled: bool,
    },
    /// The channel broke, or the agent never answered the host's KILL: the
    /// container is restarted.
    Lost,
}

/// Run one tool call in the container (see the module docs) and wait until
/// it has ended: exit, timeout or cancel.
pub(super) async fn run(
    container: &Container,
    msg: Exec,
    cancel: &CancelSignal,
) -> Result<ExecOutcome, SandboxError> {
    let Exec {
        call_id,
        tool,
        code,
        files,
        timeout,
        output,
        model_output_cap,
    } = msg;
    let mut channel = container.ensure(false).await?;
    if cancel.requested.get() {
        return Ok(ExecOutcome {
            exit_code: None,
            timed_out: false,
            cancelled: true,
            duration_ms: 0,
            output_for_model: String::new(),
        });
    }

    let timeout = timeout.clamp(MIN_EXEC_TIMEOUT, MAX_EXEC_TIMEOUT);
    // Short, so error messages and tracebacks that name the staged file
    // stay readable; unique enough for the few calls one container runs at
    // once.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let stem = &run_id[..8];
    let checks = checks(&files)?;
    let run = Run {
        tool,
        timeout,
        grace: KILL_GRACE,
        stem,
        checks: checks.iter().map(|(sha, p)| (*sha, p.as_str())).collect(),
        code: code.as_bytes(),
    };
    let started_at = Instant::now();
    let (mut call, mut events) = channel.run(&run);
    // Sent again once, on a fresh channel, if the channel was lost before
    // the agent said the call started (the container was removed or
    // stopped behind IronClaw's back since the last call): it surely never
    // ran.
    let mut may_retry = true;
    let mut started = false;

    let mut collector = OutputCollector::new(call_id.clone(), output, model_output_cap);
    let host_deadline =
        tokio::time::Instant::from_std(started_at + timeout + KILL_GRACE + HOST_KILL_GRACE);
    let mut interrupt = Interrupt::None;
    let mut give_up: Option<tokio::time::Instant> = None;
    let ended = loop {
        tokio::select! {
            // A program that ended as the cancel came in counts as ended.
            biased;
            event = events.recv() => match event {
                Some(Event::Started) => started = true,
                Some(Event::Lost) | None if !started && may_retry && give_up.is_none() => {
                    may_retry = false;
                    log::info!(
                        "sandbox {}: the channel was lost before {call_id} started; sending it again",
                        container.session_id
                    );
                    channel = container.ensure(true).await?;
                    (call, events) = channel.run(&run);
                }
                Some(Event::Stdout(bytes)) => collector.bytes(OutputStream::Stdout, &bytes),
                Some(Event::Stderr(bytes)) => collector.bytes(OutputStream::Stderr, &bytes),
                Some(Event::Exit { code, timed_out, cancelled }) => {
                    break Ended::Exit { code, timed_out, cancelled };
                }
                Some(Event::Refused(why)) => {
                    return Err(SandboxError::ExecFailed { detail: why });
                }
                Some(Event::Lost) | None => break Ended::Lost,
            },
            () = cancel.cancelled(), if give_up.is_none() => {
                interrupt = Interrupt::Cancelled;
                channel.kill(call);
                give_up = Some(tokio::time::Instant::now() + KILL_GIVE_UP_AFTER);
            }
            () = tokio::time::sleep_until(host_deadline), if give_up.is_none() => {
                interrupt = Interrupt::TimedOut;
                channel.kill(call);
                give_up = Some(tokio::time::Instant::now() + KILL_GIVE_UP_AFTER);
            }
            () = sleep_until_some(give_up) => {
                log::warn!(
                    "sandbox {}: no end of {call_id} after killing it",
                    container.session_id
                );
                channel.lose();
                break Ended::Lost;
            }
        }
    };
    let elapsed = started_at.elapsed();
    let (exit_code, timed_out, cancelled) = match ended {
        Ended::Exit {
            code,
            timed_out,
            cancelled,
        } => (
            Some(i64::from(code)),
            timed_out || interrupt == Interrupt::TimedOut,
            cancelled || interrupt == Interrupt::Cancelled,
        ),
        Ended::Lost => {
            container.recover(channel.generation()).await;
            (
                None,
                interrupt == Interrupt::TimedOut,
                interrupt == Interrupt::Cancelled,
            )
        }
    };
    let output_for_model = collector.finish();
    Ok(ExecOutcome {
        exit_code,
        timed_out,
        cancelled,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        output_for_model,
    })
}

/// The approved files' hashes as the agent wants them (raw bytes).
fn checks(files: &[JudgedFile]) -> Result<Vec<([u8; 32], String)>, SandboxError> {
    files
        .iter()
        .map(|f| {
            let mut sha = [0u8; 32];
            hex::decode_to_slice(&f.sha256, &mut sha).map_err(|_| SandboxError::ExecFailed {
                detail: format!("the approved hash of {} is not a SHA-256", f.path),
            })?;
            Ok((sha, f.path.clone()))
        })
        .collect()
}

/// Sleeps until `at`, or forever when there is no `at`.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
