//! The exec wrapper: how one tool call runs in the session's container,
//! streams its output, and is stopped by timeout or cancel.
//!
//! # How a tool call runs
//!
//! Every exec starts the same small bash program, [`EXEC_WRAPPER`], in the
//! session's container. It reads the tool call's code from stdin into a file
//! on the `/tmp` tmpfs (so a 1 MiB program never meets the kernel's 128 KiB
//! limit on one argument), then runs the interpreter on that file under
//! coreutils `timeout`, with stdin from `/dev/null`. `timeout` makes itself
//! the leader of a new process group, so the program and everything it starts
//! in the background share that group. The group id goes to a file next to
//! the code, and when the program ends (exit, timeout, cancel) the wrapper
//! kills whatever is left of the group.
//!
//! # Nothing outlives its exec
//!
//! A process can leave that group (`setsid`, a double fork into a new
//! session), so after the group kill the wrapper sweeps the whole container:
//! every process of the sandbox user is killed except the wrapper itself,
//! session 1, and the sessions of other live `docker exec`s. Session 1 holds
//! exactly the container's init and its main process (`sleep infinity`).
//! Every `docker exec` enters the container as the leader of a session of
//! its own whose parent is outside the container (parent pid 0 inside it);
//! no process in the container can create such a process or join another
//! session, so a call's leftovers cannot hide in a spared session. (The
//! agent runs one call at a time; sparing other execs keeps the sandbox's
//! own promise that two execs at once both complete.) The sweep runs as the
//! sandbox user, which is what lets it signal the sandbox user's processes
//! in a container that drops every capability.
//!
//! # What is approved is what runs
//!
//! The approval judged the code and the workspace files it runs; the exec
//! carries their SHA-256 hashes. The wrapper checks them inside the
//! container after staging the code and immediately before starting it:
//! that is the last moment anyone can check, later than any host-side look,
//! and with the sweep no process of an earlier call is left to swap a file
//! in between. A mismatch refuses the call (exit 126) with a message on
//! stderr, which the person and the model both see.
//!
//! The timeout is enforced three times over: `timeout` inside the container
//! sends SIGTERM and then SIGKILL; if the exec has still not ended some
//! seconds later, the host kills the process group through a second
//! `docker exec`; if even that does not end it, the container is restarted.
//! A cancel takes the host path at once.
//!
//! # Exit codes
//!
//! `exit_code` is the wrapper's exit status: the program's own, or 124 when
//! a timeout stopped it with SIGTERM, 137 when SIGKILL was needed (timeout
//! escalation, cancel, out-of-memory kill), 125 when the code could not be
//! staged in `/tmp`, 126 when a file it was approved on changed since (it
//! did not run), and `None` when the container had to be restarted
//! under it.

use std::cell::Cell;
use std::time::{Duration, Instant};

use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use super::container::{is_unreachable, status_of, Container, SANDBOX_UID, WORKSPACE_MOUNT};
use super::output::OutputCollector;
use super::{Exec, ExecOutcome, SandboxError};
use crate::protocol::{OutputStream, Tool};
use crate::risk::{sha256_hex, JudgedFile};

/// After the in-container `timeout` sends SIGTERM, how long the program gets
/// to exit before SIGKILL: enough to flush output and remove temp files,
/// short enough that a timeout still means "stopped now".
const IN_CONTAINER_KILL_AFTER: Duration = Duration::from_secs(2);

/// Extra time the host waits past the in-container timeout and its kill
/// grace before killing the process group itself. Covers a slow `docker exec`
/// start and clock skew without letting a stuck command run on noticeably.
const HOST_KILL_GRACE: Duration = Duration::from_secs(3);

/// How often the host repeats the process-group kill while the exec's output
/// stream stays open (the first kill may race with the group being set up).
const KILL_RETRY_EVERY: Duration = Duration::from_millis(500);

/// How long the host keeps killing before it gives up on the process group
/// and restarts the whole container; the last resort for a wedged exec.
const KILL_GIVE_UP_AFTER: Duration = Duration::from_secs(5);

/// Shortest timeout passed to `timeout` (which reads 0 as "never"): an
/// exec always gets a moment to start.
const MIN_EXEC_TIMEOUT: Duration = Duration::from_millis(100);

/// Longest timeout honoured; keeps deadline arithmetic far from overflow
/// while being longer than any tool call anyone should wait for.
const MAX_EXEC_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

/// How long to wait for the exec's output stream to close once the container
/// was restarted under it.
const STREAM_CLOSE_AFTER_RESTART: Duration = Duration::from_secs(5);

/// How long to poll `docker exec inspect` for the exit code after the output
/// stream ended; the engine records it a moment after the stream closes.
const EXIT_CODE_WAIT: Duration = Duration::from_secs(2);

/// Pause between those polls.
const EXIT_CODE_POLL: Duration = Duration::from_millis(20);

/// How many times the end-of-exec sweep walks the process table. Each
/// round stops every leftover process, then kills them; a stopped process
/// cannot fork, so a fork bomb is gone after a round or two. The extra
/// round costs one walk of a near-empty `/proc`.
const SWEEP_ROUNDS: u32 = 3;

/// Where the wrapper keeps each run's code, pid and process-group files: on
/// the `/tmp` tmpfs, so nothing lands in the workspace and a container
/// restart wipes it.
const RUN_DIR: &str = "/tmp/.ironclaw";

/// The program every exec runs (see the module docs). It reaches bash
/// through the environment (`IRONCLAW_EXEC`, with the Python launcher in
/// `IRONCLAW_PY`) and unsets both, so `ps` in the sandbox shows a short
/// command line and the program never sees them. Arguments: `$1` file stem
/// under [`RUN_DIR`], `$2` tool (`shell`/`python`), `$3` timeout in seconds,
/// `$4` kill-after grace in seconds, `$5` sweep rounds. The approved hashes
/// come in `IRONCLAW_CODE_SHA` (the code) and `IRONCLAW_CHECKS` (one
/// `<sha256> <workspace-relative path>` per line).
/// The wrapper's own stderr goes to /dev/null once the program starts (fd 3
/// keeps the real one for the program), so bash's "Killed" job notices
/// never mix into the program's output. The sweep after the program uses
/// only builtins, so a fork bomb that exhausts the pids limit cannot stop it.
const EXEC_WRAPPER: &str = r#"py=$IRONCLAW_PY; ck=$IRONCLAW_CHECKS; cs=$IRONCLAW_CODE_SHA
unset IRONCLAW_EXEC IRONCLAW_PY IRONCLAW_CHECKS IRONCLAW_CODE_SHA
s=$1
if [ "$2" = python ]; then f=$s.py; else f=$s.sh; fi
[ -d /tmp/.ironclaw ] || mkdir -p /tmp/.ironclaw 2>/dev/null
if ! { echo "$$" > "$s.pid" && cat > "$f"; } 2>/dev/null; then
  echo "ironclaw: could not stage the program in /tmp (is it full?)" >&2
  exit 125
fi
t=$3; k=$4; rounds=$5
bad=
got=$(sha256sum 2>/dev/null < "$f")
[ "${got%% *}" = "$cs" ] || bad="its code"
while [ -z "$bad" ] && IFS= read -r line; do
  [ -n "$line" ] || continue
  want=${line%% *}; p=${line#* }
  got=$(sha256sum 2>/dev/null < "/workspace/$p")
  [ "${got%% *}" = "$want" ] || bad=$p
done <<< "$ck"
if [ -n "$bad" ]; then
  echo "ironclaw: not run: $bad changed after the command was approved, so it is not what was approved. Review the file and run the command again." >&2
  rm -f "$f" "$s.pid"
  exit 126
fi
if [ "$2" = python ]; then
  set -- python3 -c "$py" "$f"
else
  set -- bash --noprofile --norc "$f"
fi
exec 3>&2 2>/dev/null
timeout -k "$k" "$t" bash --noprofile --norc -c 'echo "$PPID" > "$0"; exec "$@"' "$s.pgid" "$@" </dev/null 2>&3 3>&-
rc=$?
if read -r pg < "$s.pgid"; then kill -KILL -- "-$pg"; fi
read -r st < /proc/$$/stat; set -- ${st##*) }; me=$4
r=0
while [ "$r" -lt "$rounds" ]; do
  r=$((r + 1)); left=
  for sig in STOP KILL; do
    for d in /proc/[0-9]*; do
      p=${d#/proc/}
      [ "$p" = "$$" ] && continue
      read -r st < "$d/stat" || continue
      set -- ${st##*) }
      sid=$4
      [ "$sid" = 1 ] && continue
      if [ "$sid" != "$me" ] && read -r st < "/proc/$sid/stat"; then
        set -- ${st##*) }
        [ "$2" = 0 ] && continue
      fi
      kill "-$sig" "$p" && left=1
    done
  done
  [ -n "$left" ] || break
done
rm -f "$f" "$s.pid" "$s.pgid"
exit "$rc"
"#;

/// Runs the staged Python file like `python3 -c <code>` would: `sys.path[0]`
/// is the working directory, `sys.argv` is `['-c']` and the launcher leaves
/// no names behind, while tracebacks still show source lines because the
/// code has a real file name.
const PYTHON_LAUNCHER: &str = r#"import sys as _s; _p = _s.argv.pop(1); _s.argv[0] = "-c"; del _s; exec(compile(open(_p, "rb").read(), globals().pop("_p"), "exec"))"#;

/// Run by the host to kill a run's process group (or, before the group
/// exists, its wrapper). `$1` is the run's file stem.
const KILL_SCRIPT: &str = r#"if read -r pg 2>/dev/null < "$1.pgid"; then kill -KILL -- "-$pg" 2>/dev/null
elif read -r p 2>/dev/null < "$1.pid"; then kill -KILL "$p" 2>/dev/null; fi
exit 0
"#;

fn exec_error(e: DockerError) -> SandboxError {
    if is_unreachable(&e) {
        SandboxError::DockerUnavailable {
            detail: e.to_string(),
        }
    } else {
        SandboxError::ExecFailed {
            detail: e.to_string(),
        }
    }
}

/// The hashes the wrapper checks before it starts the program.
pub(super) struct RunChecks {
    code_sha256: String,
    files: Vec<JudgedFile>,
}

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

/// How an exec's wait for its output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    None,
    Cancelled,
    TimedOut,
}

impl Container {
    /// Create and start the wrapper exec. An error with a status tells the
    /// caller whether the container was the problem.
    async fn start_wrapper(
        &self,
        stem: &str,
        tool: Tool,
        timeout: Duration,
        checks: &RunChecks,
    ) -> Result<(String, StartExecResults), DockerError> {
        let timeout_arg = format!("{:.3}", timeout.as_secs_f64());
        let kill_after = format!("{}", IN_CONTAINER_KILL_AFTER.as_secs());
        let rounds = SWEEP_ROUNDS.to_string();
        let cmd = vec![
            "bash",
            "--noprofile",
            "--norc",
            "-c",
            r#"eval "$IRONCLAW_EXEC""#,
            "ironclaw-exec",
            stem,
            tool.as_str(),
            &timeout_arg,
            &kill_after,
            &rounds,
        ];
        let listed: String = checks
            .files
            .iter()
            .map(|f| format!("{} {}\n", f.sha256, f.path))
            .collect();
        let env = vec![
            format!("IRONCLAW_EXEC={EXEC_WRAPPER}"),
            format!("IRONCLAW_PY={PYTHON_LAUNCHER}"),
            format!("IRONCLAW_CODE_SHA={}", checks.code_sha256),
            format!("IRONCLAW_CHECKS={listed}"),
        ];
        let exec = self
            .docker
            .create_exec(
                &self.name,
                CreateExecOptions {
                    cmd: Some(cmd.into_iter().map(str::to_string).collect()),
                    env: Some(env),
                    attach_stdin: Some(true),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    tty: Some(false),
                    user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
                    working_dir: Some(WORKSPACE_MOUNT.to_string()),
                    ..Default::default()
                },
            )
            .await?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await?;
        Ok((exec.id, started))
    }

    /// Kill a run's process group from the host through a second exec.
    async fn kill_run(&self, stem: &str) {
        let exec = self
            .docker
            .create_exec(
                &self.name,
                CreateExecOptions {
                    cmd: Some(vec![
                        "bash",
                        "--noprofile",
                        "--norc",
                        "-c",
                        KILL_SCRIPT,
                        "ironclaw-kill",
                        stem,
                    ]),
                    user: Some("1000:1000"),
                    ..Default::default()
                },
            )
            .await;
        let result = match exec {
            Ok(exec) => self
                .docker
                .start_exec(
                    &exec.id,
                    Some(StartExecOptions {
                        detach: true,
                        ..Default::default()
                    }),
                )
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            log::warn!("sandbox {}: killing {stem} failed: {e}", self.session_id);
        }
    }

    async fn exit_code(&self, exec_id: &str) -> Option<i64> {
        let give_up = Instant::now() + EXIT_CODE_WAIT;
        loop {
            match self.docker.inspect_exec(exec_id).await {
                Ok(info) if info.running != Some(true) => return info.exit_code,
                Ok(_) if Instant::now() < give_up => tokio::time::sleep(EXIT_CODE_POLL).await,
                Ok(_) => return None,
                Err(e) => {
                    log::warn!("sandbox {}: inspecting exec failed: {e}", self.session_id);
                    return None;
                }
            }
        }
    }
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
    container.ensure(false).await?;
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
    let checks = RunChecks {
        code_sha256: sha256_hex(code.as_bytes()),
        files,
    };
    // Short, so error messages and tracebacks that name the file stay
    // readable; unique enough for the few execs one container runs at once.
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let stem = format!("{RUN_DIR}/{}", &run_id[..8]);
    let started_at = Instant::now();
    let started = match container.start_wrapper(&stem, tool, timeout, &checks).await {
        Ok(s) => s,
        // 404: the container was removed; 409: it is not running.
        Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => {
            log::info!(
                "sandbox {}: exec failed ({e}); checking the container",
                container.session_id
            );
            container.ensure(true).await?;
            container
                .start_wrapper(&stem, tool, timeout, &checks)
                .await
                .map_err(exec_error)?
        }
        Err(e) => return Err(exec_error(e)),
    };
    let (exec_id, started) = started;
    let (stream, mut input) = match started {
        StartExecResults::Attached { output, input } => (output, input),
        StartExecResults::Detached => {
            return Err(SandboxError::ExecFailed {
                detail: "the engine did not attach to the command".to_string(),
            })
        }
    };
    let writer = actix::spawn(async move {
        let written = input.write_all(code.as_bytes()).await;
        let closed = input.shutdown().await;
        written.and(closed)
    });

    let mut collector = OutputCollector::new(call_id.clone(), output, model_output_cap);
    let host_deadline = tokio::time::Instant::from_std(
        started_at + timeout + IN_CONTAINER_KILL_AFTER + HOST_KILL_GRACE,
    );
    let mut interrupt = Interrupt::None;
    let mut restarted = false;
    {
        let pump = pump(&mut collector, stream);
        tokio::pin!(pump);
        let ended = tokio::select! {
            // A program that ended as the cancel came in counts as ended.
            biased;
            () = &mut pump => true,
            () = cancel.cancelled() => { interrupt = Interrupt::Cancelled; false }
            () = tokio::time::sleep_until(host_deadline) => { interrupt = Interrupt::TimedOut; false }
        };
        if !ended {
            let give_up = Instant::now() + KILL_GIVE_UP_AFTER;
            let mut ended = false;
            while Instant::now() < give_up {
                container.kill_run(&stem).await;
                tokio::select! {
                    () = &mut pump => { ended = true; break; }
                    () = tokio::time::sleep(KILL_RETRY_EVERY) => {}
                }
            }
            if !ended {
                container.restart().await;
                restarted = true;
                if tokio::time::timeout(STREAM_CLOSE_AFTER_RESTART, &mut pump)
                    .await
                    .is_err()
                {
                    log::warn!(
                        "sandbox {}: output of {call_id} stayed open after restart",
                        container.session_id
                    );
                }
            }
        }
    }
    let elapsed = started_at.elapsed();
    // The wrapper reads all of the code before the program starts, so
    // the writer is done unless the run was killed while staging; then
    // nothing is waiting for the rest.
    if writer.is_finished() {
        if let Ok(Err(e)) = writer.await {
            log::debug!(
                "sandbox {}: writing code of {call_id}: {e}",
                container.session_id
            );
        }
    } else {
        writer.abort();
    }
    let exit_code = if restarted {
        None
    } else {
        container.exit_code(&exec_id).await
    };
    // The in-container timeout leaves 124 (SIGTERM sufficed) or 137
    // (SIGKILL needed); only at or past the deadline do they mean it.
    let timed_out = interrupt == Interrupt::TimedOut
        || (interrupt == Interrupt::None
            && elapsed >= timeout
            && matches!(exit_code, Some(124) | Some(137)));
    let output_for_model = collector.finish();
    Ok(ExecOutcome {
        exit_code,
        timed_out,
        cancelled: interrupt == Interrupt::Cancelled,
        duration_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        output_for_model,
    })
}

/// Read the exec's output until it closes.
async fn pump<S>(collector: &mut OutputCollector, mut stream: S)
where
    S: Stream<Item = Result<bollard::container::LogOutput, DockerError>> + Unpin,
{
    use bollard::container::LogOutput;
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                collector.bytes(OutputStream::Stdout, &message)
            }
            Ok(LogOutput::StdErr { message }) => collector.bytes(OutputStream::Stderr, &message),
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => {
                log::warn!("exec output stream of {} broke: {e}", collector.call_id());
                break;
            }
        }
    }
}
