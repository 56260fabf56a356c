//! The sandbox: one hardened Docker container per session and the tool calls run in it (DESIGN.md §4).
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
//! kills whatever is left of the group: nothing a tool call starts outlives
//! it. (A process that leaves the group on purpose with `setsid` or a
//! double fork into a new session escapes this sweep; it still dies with the
//! container at idle stop or removal.)
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
//! staged in `/tmp`, and `None` when the container had to be restarted
//! under it.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bollard::errors::Error as DockerError;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, RestartContainerOptions,
    StopContainerOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::sync::Notify;

use crate::config::SandboxSettings;
use crate::protocol::{LogLevel, OutputStream, Tool};

/// Largest program accepted for one tool call (DESIGN.md §4). Far above any
/// code a model writes by hand; anything bigger belongs in a workspace file.
pub const MAX_CODE_BYTES: usize = 1024 * 1024;

/// The image's unprivileged user (`sandbox`). Fixed by `make sandbox-image`;
/// the workspace on the host must be writable by it.
pub const SANDBOX_UID: u32 = 1000;

/// Where the session's workspace appears inside the container (DESIGN.md §4).
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// Label carrying the session id on every sandbox container.
pub const LABEL_SESSION: &str = "ironclaw.session";

/// Label carrying the server installation's id; the reaper removes by it.
pub const LABEL_INSTANCE: &str = "ironclaw.instance";

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

/// Seconds `docker stop` waits after SIGTERM before SIGKILL at idle stop.
/// The container's only long-lived process is `sleep`, so no grace is
/// needed beyond letting init pass the signal on.
const STOP_GRACE_SECS: i32 = 2;

/// Bounds for the idle check interval: often enough that a container stops
/// close to `idle_stop_secs`, rarely enough to cost nothing.
const IDLE_CHECK_MIN: Duration = Duration::from_secs(1);
const IDLE_CHECK_MAX: Duration = Duration::from_secs(30);

/// Room kept in `output_for_model` for the "[... N bytes omitted ...]"
/// marker, so the result stays within the cap; fits any `usize` N.
const OMISSION_MARKER_RESERVE: usize = 48;

/// Where the wrapper keeps each run's code, pid and process-group files: on
/// the `/tmp` tmpfs, so nothing lands in the workspace and a container
/// restart wipes it.
const RUN_DIR: &str = "/tmp/.ironclaw";

/// The program every exec runs (see the module docs). It reaches bash
/// through the environment (`IRONCLAW_EXEC`, with the Python launcher in
/// `IRONCLAW_PY`) and unsets both, so `ps` in the sandbox shows a short
/// command line and the program never sees them. Arguments: `$1` file stem
/// under [`RUN_DIR`], `$2` tool (`shell`/`python`), `$3` timeout in seconds,
/// `$4` kill-after grace in seconds.
/// The wrapper's own stderr goes to /dev/null once the program starts (fd 3
/// keeps the real one for the program), so bash's "Killed" job notices
/// never mix into the program's output. The sweep after the program uses
/// only builtins, so a fork bomb that exhausts the pids limit cannot stop it.
const EXEC_WRAPPER: &str = r#"py=$IRONCLAW_PY; unset IRONCLAW_EXEC IRONCLAW_PY
s=$1
if [ "$2" = python ]; then f=$s.py; else f=$s.sh; fi
[ -d /tmp/.ironclaw ] || mkdir -p /tmp/.ironclaw 2>/dev/null
if ! { echo "$$" > "$s.pid" && cat > "$f"; } 2>/dev/null; then
  echo "ironclaw: could not stage the program in /tmp (is it full?)" >&2
  exit 125
fi
t=$3; k=$4
if [ "$2" = python ]; then
  set -- python3 -c "$py" "$f"
else
  set -- bash --noprofile --norc "$f"
fi
exec 3>&2 2>/dev/null
timeout -k "$k" "$t" bash --noprofile --norc -c 'echo "$PPID" > "$0"; exec "$@"' "$s.pgid" "$@" </dev/null 2>&3 3>&-
rc=$?
if read -r pg < "$s.pgid"; then kill -KILL -- "-$pg"; fi
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

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A piece of live output.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ExecChunk {
    pub call_id: String,
    pub stream: OutputStream,
    /// UTF-8 (invalid bytes replaced); a multi-byte character is never split
    /// between chunks.
    pub data: String,
}

/// A lifecycle line for the person's log panel: "container created",
/// "container stopped after 15 min idle", "container was gone; recreated", ...
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct SandboxNotice {
    pub level: LogLevel,
    pub message: String,
}

/// Run one tool call. Resolves when the process has ended (exit, timeout, or
/// cancel).
#[derive(Message)]
#[rtype(result = "Result<ExecOutcome, SandboxError>")]
pub struct Exec {
    pub call_id: String,
    pub tool: Tool,
    pub code: String,
    pub timeout: Duration,
    /// Receives the live output as [`ExecChunk`]s.
    pub output: Recipient<ExecChunk>,
    /// Bytes of output kept for the model (head and tail).
    pub model_output_cap: usize,
}

/// How a tool call ended.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// See the module docs for 124/125/137 and `None`.
    pub exit_code: Option<i64>,
    pub timed_out: bool,
    pub cancelled: bool,
    pub duration_ms: u64,
    /// stdout+stderr interleaved as they came, capped to model_output_cap
    /// keeping head and tail with a "[... N bytes omitted ...]" marker
    pub output_for_model: String,
}

/// Kill the running exec's whole process group (no-op if that call is not
/// running).
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelExec {
    pub call_id: String,
}

/// Remove the container (session deleted). Also stops the actor afterwards.
#[derive(Message)]
#[rtype(result = "Result<(), SandboxError>")]
pub struct RemoveContainer;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can go wrong between IronClaw and the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "Docker is not reachable ({detail}). Start the Docker engine and make sure IronClaw may use its socket (usually /var/run/docker.sock, or set DOCKER_HOST)."
    )]
    DockerUnavailable { detail: String },
    #[error("The sandbox image {image} is missing: run `make sandbox-image`.")]
    ImageMissing { image: String },
    #[error(
        "The program is {size} bytes, more than the sandbox accepts ({limit} bytes). Write the data to a file in the workspace and run a shorter program that reads it."
    )]
    CodeTooLarge { size: usize, limit: usize },
    #[error(
        "The session workspace {} cannot be used ({source}). Check that the data directory exists and IronClaw may write to it.",
        path.display()
    )]
    Workspace {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "A container named {name} exists but does not belong to this session. Remove it with `docker rm -f {name}`."
    )]
    NameConflict { name: String },
    #[error(
        "The sandbox container {name} could not be prepared ({detail}). Check `docker ps -a` and the Docker engine's log."
    )]
    Container { name: String, detail: String },
    #[error("The command could not be run in the sandbox ({detail}). Try again; if it keeps failing, check the Docker engine.")]
    ExecFailed { detail: String },
}

impl SandboxError {
    /// Stable snake_case code for the wire (`error.code`).
    pub fn code(&self) -> crate::protocol::ErrorCode {
        match self {
            SandboxError::DockerUnavailable { .. } => crate::protocol::ErrorCode::DockerUnavailable,
            SandboxError::ImageMissing { .. } => crate::protocol::ErrorCode::ImageMissing,
            SandboxError::CodeTooLarge { .. } => crate::protocol::ErrorCode::CodeTooLarge,
            SandboxError::Workspace { .. } => crate::protocol::ErrorCode::WorkspaceUnavailable,
            SandboxError::NameConflict { .. } => crate::protocol::ErrorCode::ContainerConflict,
            SandboxError::Container { .. } => crate::protocol::ErrorCode::ContainerFailed,
            SandboxError::ExecFailed { .. } => crate::protocol::ErrorCode::ExecFailed,
        }
    }
}

/// Whether a bollard error means the engine itself could not be reached.
fn is_unreachable(e: &DockerError) -> bool {
    matches!(
        e,
        DockerError::IOError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::HyperLegacyError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
            | DockerError::HttpClientError { .. }
    )
}

/// The HTTP status of an error the engine answered with.
fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

fn container_error(name: &str, e: DockerError) -> SandboxError {
    if is_unreachable(&e) {
        SandboxError::DockerUnavailable {
            detail: e.to_string(),
        }
    } else {
        SandboxError::Container {
            name: name.to_string(),
            detail: e.to_string(),
        }
    }
}

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

// ---------------------------------------------------------------------------
// Free functions: connection, health, reaper, naming
// ---------------------------------------------------------------------------

/// Connect to the local engine (honours `DOCKER_HOST`) and settle on an API
/// version it speaks, so an older engine (e.g. 20.10, API 1.41) works.
pub async fn connect_docker() -> Result<Docker, SandboxError> {
    let docker =
        Docker::connect_with_local_defaults().map_err(|e| SandboxError::DockerUnavailable {
            detail: e.to_string(),
        })?;
    docker
        .negotiate_version()
        .await
        .map_err(|e| SandboxError::DockerUnavailable {
            detail: e.to_string(),
        })
}

/// "ok" / actionable message; used by the health route and `ironclaw check`.
/// Returns (docker ok, image present, detail).
pub async fn docker_status(docker: &Docker, image: &str) -> (bool, bool, String) {
    if let Err(e) = docker.ping().await {
        let err = SandboxError::DockerUnavailable {
            detail: e.to_string(),
        };
        return (false, false, err.to_string());
    }
    match docker.inspect_image(image).await {
        Ok(_) => (true, true, "ok".to_string()),
        Err(e) if status_of(&e) == Some(404) => (
            true,
            false,
            SandboxError::ImageMissing {
                image: image.to_string(),
            }
            .to_string(),
        ),
        Err(e) => (
            true,
            false,
            format!("Could not inspect the sandbox image {image} ({e}). Check the Docker engine."),
        ),
    }
}

/// Remove every container labelled ironclaw.instance=<instance_id> (left over
/// from a previous run of this installation). Returns how many.
pub async fn reap_orphans(docker: &Docker, instance_id: &str) -> Result<usize, SandboxError> {
    let filters = HashMap::from([(
        "label".to_string(),
        vec![format!("{LABEL_INSTANCE}={instance_id}")],
    )]);
    let containers = docker
        .list_containers(Some(ListContainersOptions {
            all: true,
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| container_error("(any)", e))?;
    let mut removed = 0;
    for c in containers {
        let Some(id) = c.id else { continue };
        match docker
            .remove_container(
                &id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => removed += 1,
            // Removed meanwhile (or already being removed): nothing left to do.
            Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => {}
            Err(e) => return Err(container_error(&id, e)),
        }
    }
    if removed > 0 {
        log::info!("removed {removed} leftover sandbox container(s) of instance {instance_id}");
    }
    Ok(removed)
}

/// The container's name: `ironclaw-<instance>-<session>`, with anything
/// Docker does not allow in a name replaced by `-`.
pub fn container_name(instance_id: &str, session_id: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    };
    format!("ironclaw-{}-{}", clean(instance_id), clean(session_id))
}

/// Create the session's workspace if needed, make it writable for the
/// sandbox user, and return its absolute path (Docker binds need one).
///
/// When the directory belongs to someone else, it is handed to
/// [`SANDBOX_UID`] (possible when IronClaw runs as root); failing that it is
/// opened to everyone (mode 0777) so the sandbox can still write to it.
pub async fn prepare_workspace(path: &Path) -> Result<PathBuf, SandboxError> {
    let path = path.to_path_buf();
    let result = tokio::task::spawn_blocking(move || -> Result<PathBuf, SandboxError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let io = |source| SandboxError::Workspace {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(io)?;
        let abs = std::fs::canonicalize(&path).map_err(io)?;
        let meta = std::fs::metadata(&abs).map_err(io)?;
        if meta.uid() != SANDBOX_UID
            && std::os::unix::fs::chown(&abs, Some(SANDBOX_UID), Some(SANDBOX_UID)).is_err()
            && meta.permissions().mode() & 0o777 != 0o777
        {
            std::fs::set_permissions(&abs, std::fs::Permissions::from_mode(0o777)).map_err(io)?;
        }
        Ok(abs)
    })
    .await;
    match result {
        Ok(r) => r,
        Err(join) => Err(SandboxError::Workspace {
            path: PathBuf::new(),
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

// ---------------------------------------------------------------------------
// Output handling (pure)
// ---------------------------------------------------------------------------

/// Turns a byte stream into UTF-8 text piece by piece, holding back an
/// incomplete multi-byte character until its remaining bytes arrive.
#[derive(Debug, Default)]
struct Utf8Decoder {
    /// At most 3 bytes: the start of a character cut by the last chunk.
    pending: Vec<u8>,
}

impl Utf8Decoder {
    /// Decode `bytes` after what was held back; invalid bytes become U+FFFD.
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let buf = std::mem::take(&mut self.pending);
        let mut out = String::with_capacity(buf.len());
        let mut at = 0;
        while at < buf.len() {
            match std::str::from_utf8(&buf[at..]) {
                Ok(s) => {
                    out.push_str(s);
                    at = buf.len();
                }
                Err(e) => {
                    let valid_end = at + e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&buf[at..valid_end]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            at = valid_end + bad;
                        }
                        None => {
                            self.pending = buf[valid_end..].to_vec();
                            at = buf.len();
                        }
                    }
                }
            }
        }
        out
    }

    /// Whatever is still held back at the end of the stream (a cut-off
    /// character), as U+FFFD.
    fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        String::from_utf8_lossy(&rest).into_owned()
    }
}

/// Largest index `<= at` that is a char boundary of `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// Smallest index `>= at` that is a char boundary of `s`.
fn ceil_boundary(s: &str, at: usize) -> usize {
    let mut at = at.min(s.len());
    while !s.is_char_boundary(at) {
        at += 1;
    }
    at
}

/// Output kept for the model: the first and the last bytes of everything,
/// in bounded memory however much the command prints.
#[derive(Debug)]
struct ModelOutput {
    cap: usize,
    head: String,
    /// Once something went past the head, the head takes nothing more, so
    /// output never gets reordered.
    head_closed: bool,
    /// The latest output; trimmed to `cap - cap / 2` bytes when it reaches
    /// twice that, so memory stays within about twice the cap.
    tail: String,
    total: usize,
}

impl ModelOutput {
    fn new(cap: usize) -> Self {
        ModelOutput {
            cap,
            head: String::new(),
            head_closed: false,
            tail: String::new(),
            total: 0,
        }
    }

    fn head_cap(&self) -> usize {
        self.cap / 2
    }

    fn tail_cap(&self) -> usize {
        self.cap - self.cap / 2
    }

    fn push(&mut self, mut s: &str) {
        self.total += s.len();
        if !self.head_closed {
            let room = self.head_cap() - self.head.len();
            let take = floor_boundary(s, room);
            self.head.push_str(&s[..take]);
            s = &s[take..];
            if !s.is_empty() {
                self.head_closed = true;
            }
        }
        if s.is_empty() {
            return;
        }
        self.tail.push_str(s);
        let tail_cap = self.tail_cap();
        if self.tail.len() > 2 * tail_cap.max(1024) {
            let cut = ceil_boundary(&self.tail, self.tail.len() - tail_cap);
            self.tail.drain(..cut);
        }
    }

    fn finish(mut self) -> String {
        if self.total <= self.cap {
            self.head.push_str(&self.tail);
            return self.head;
        }
        let keep_head = self.head_cap().saturating_sub(OMISSION_MARKER_RESERVE / 2);
        let keep_tail = self.tail_cap().saturating_sub(OMISSION_MARKER_RESERVE / 2);
        self.head.truncate(floor_boundary(&self.head, keep_head));
        let cut = ceil_boundary(&self.tail, self.tail.len().saturating_sub(keep_tail));
        let tail = &self.tail[cut..];
        let omitted = self.total - self.head.len() - tail.len();
        format!("{}\n[... {omitted} bytes omitted ...]\n{}", self.head, tail)
    }
}

/// Splits the exec's stream into live [`ExecChunk`]s and the model's copy.
struct OutputCollector {
    call_id: String,
    output: Recipient<ExecChunk>,
    stdout: Utf8Decoder,
    stderr: Utf8Decoder,
    model: ModelOutput,
}

impl OutputCollector {
    fn new(call_id: String, output: Recipient<ExecChunk>, cap: usize) -> Self {
        OutputCollector {
            call_id,
            output,
            stdout: Utf8Decoder::default(),
            stderr: Utf8Decoder::default(),
            model: ModelOutput::new(cap),
        }
    }

    fn bytes(&mut self, stream: OutputStream, bytes: &[u8]) {
        let text = match stream {
            OutputStream::Stdout => self.stdout.push(bytes),
            OutputStream::Stderr => self.stderr.push(bytes),
        };
        self.text(stream, text);
    }

    fn text(&mut self, stream: OutputStream, text: String) {
        if text.is_empty() {
            return;
        }
        self.model.push(&text);
        // Never waits on the receiver: the agent may be awaiting this very
        // exec, and the agent's handler only forwards to sockets that have
        // their own bounded queues.
        self.output.do_send(ExecChunk {
            call_id: self.call_id.clone(),
            stream,
            data: text,
        });
    }

    /// Read the exec's output until it closes.
    async fn pump<S>(&mut self, mut stream: S)
    where
        S: Stream<Item = Result<bollard::container::LogOutput, DockerError>> + Unpin,
    {
        use bollard::container::LogOutput;
        while let Some(item) = stream.next().await {
            match item {
                Ok(LogOutput::StdOut { message }) | Ok(LogOutput::Console { message }) => {
                    self.bytes(OutputStream::Stdout, &message)
                }
                Ok(LogOutput::StdErr { message }) => self.bytes(OutputStream::Stderr, &message),
                Ok(LogOutput::StdIn { .. }) => {}
                Err(e) => {
                    log::warn!("exec output stream of {} broke: {e}", self.call_id);
                    break;
                }
            }
        }
    }

    fn finish(mut self) -> String {
        let out = self.stdout.finish();
        self.text(OutputStream::Stdout, out);
        let err = self.stderr.finish();
        self.text(OutputStream::Stderr, err);
        self.model.finish()
    }
}

// ---------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------

/// What IronClaw believes about the container; guarded by a lock so creating,
/// starting, stopping and removing never interleave.
#[derive(Debug, Default)]
struct ContainerState {
    /// Believed to exist and run: execs go straight to `docker exec`.
    running: bool,
    /// This actor has had the container running before, so finding it gone
    /// or stopped is news for the person.
    seen: bool,
}

/// State shared by the actor and the futures it spawns (all on the actor's
/// thread, hence `Rc`/`Cell`).
struct Shared {
    docker: Docker,
    settings: SandboxSettings,
    session_id: String,
    instance_id: String,
    /// The session's workspace on the host, bind-mounted at `/workspace`.
    workspace: PathBuf,
    /// Container name, from [`container_name`].
    name: String,
    notices: Recipient<SandboxNotice>,
    container: tokio::sync::Mutex<ContainerState>,
    /// Execs in flight; the idle stop waits for zero.
    active: Cell<usize>,
    /// When the last exec started or ended.
    last_used: Cell<Instant>,
}

/// A cancel request for one running exec.
#[derive(Default)]
struct CancelSignal {
    requested: Cell<bool>,
    notify: Notify,
}

impl CancelSignal {
    fn cancel(&self) {
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

/// One session's sandbox: its container and the tool calls running in it.
pub struct SandboxActor {
    shared: Rc<Shared>,
    /// Running execs by sequence number, with their call id, for CancelExec.
    runs: HashMap<u64, (String, Rc<CancelSignal>)>,
    next_run: u64,
    /// An idle stop is under way; don't start a second.
    idle_stop_pending: bool,
}

impl SandboxActor {
    pub fn new(
        docker: Docker,
        settings: SandboxSettings,
        session_id: String,
        instance_id: String,
        workspace: PathBuf,
        notices: Recipient<SandboxNotice>,
    ) -> Self {
        let name = container_name(&instance_id, &session_id);
        SandboxActor {
            shared: Rc::new(Shared {
                docker,
                settings,
                session_id,
                instance_id,
                workspace,
                name,
                notices,
                container: tokio::sync::Mutex::new(ContainerState::default()),
                active: Cell::new(0),
                last_used: Cell::new(Instant::now()),
            }),
            runs: HashMap::new(),
            next_run: 0,
            idle_stop_pending: false,
        }
    }

    fn idle_limit(&self) -> Duration {
        Duration::from_secs(self.shared.settings.idle_stop_secs)
    }

    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let shared = &self.shared;
        if self.idle_stop_pending
            || shared.settings.idle_stop_secs == 0
            || shared.active.get() > 0
            || shared.last_used.get().elapsed() < self.idle_limit()
        {
            return;
        }
        // Cheap check first; the stop re-checks under the lock.
        if let Ok(state) = shared.container.try_lock() {
            if !state.running {
                return;
            }
        }
        self.idle_stop_pending = true;
        let shared = self.shared.clone();
        let limit = self.idle_limit();
        ctx.spawn(
            async move {
                let mut state = shared.container.lock().await;
                if !state.running
                    || shared.active.get() > 0
                    || shared.last_used.get().elapsed() < limit
                {
                    return;
                }
                state.running = false;
                let stopped = shared
                    .docker
                    .stop_container(
                        &shared.name,
                        Some(StopContainerOptions {
                            t: Some(STOP_GRACE_SECS),
                            ..Default::default()
                        }),
                    )
                    .await;
                match stopped {
                    Ok(()) => shared.notice(
                        LogLevel::Info,
                        format!("container stopped after {} idle", human_duration(limit)),
                    ),
                    // Already stopped or gone: the next exec sorts it out.
                    Err(e) if matches!(status_of(&e), Some(304) | Some(404)) => {}
                    Err(e) => shared.notice(
                        LogLevel::Warn,
                        format!("could not stop the idle container: {e}"),
                    ),
                }
            }
            .into_actor(self)
            .map(|(), act, _| act.idle_stop_pending = false),
        );
    }
}

fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

impl Actor for SandboxActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.idle_limit() / 2).clamp(IDLE_CHECK_MIN, IDLE_CHECK_MAX);
        ctx.run_interval(every, |act, ctx| act.check_idle(ctx));
    }

    // No `stopping`: the container stays for reuse until idle stop or
    // RemoveContainer; a restarted actor finds and adopts it.
}

impl Handler<Exec> for SandboxActor {
    type Result = ResponseActFuture<Self, Result<ExecOutcome, SandboxError>>;

    /// Runs the call as a future spawned into the actor's context, so the
    /// mailbox stays free for CancelExec while it runs.
    fn handle(&mut self, msg: Exec, _ctx: &mut Self::Context) -> Self::Result {
        if msg.code.len() > MAX_CODE_BYTES {
            let err = SandboxError::CodeTooLarge {
                size: msg.code.len(),
                limit: MAX_CODE_BYTES,
            };
            return Box::pin(fut::ready(Err(err)));
        }
        let run = self.next_run;
        self.next_run += 1;
        let cancel = Rc::new(CancelSignal::default());
        self.runs.insert(run, (msg.call_id.clone(), cancel.clone()));
        let shared = self.shared.clone();
        shared.active.set(shared.active.get() + 1);
        shared.last_used.set(Instant::now());
        Box::pin(
            async move { shared.run_exec(msg, &cancel).await }
                .into_actor(self)
                .map(move |result, act, _| {
                    act.runs.remove(&run);
                    let shared = &act.shared;
                    shared.active.set(shared.active.get().saturating_sub(1));
                    shared.last_used.set(Instant::now());
                    result
                }),
        )
    }
}

impl Handler<CancelExec> for SandboxActor {
    type Result = ();

    /// Signals the run; its own future kills the process group, so the kill
    /// and the outcome stay in one place.
    fn handle(&mut self, msg: CancelExec, _ctx: &mut Self::Context) {
        for (call_id, signal) in self.runs.values() {
            if *call_id == msg.call_id {
                signal.cancel();
            }
        }
    }
}

impl Handler<RemoveContainer> for SandboxActor {
    type Result = ResponseActFuture<Self, Result<(), SandboxError>>;

    /// Removes the container (killing anything running in it) and stops the
    /// actor, whether or not the removal worked: the session is going away.
    fn handle(&mut self, _msg: RemoveContainer, _ctx: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(
            async move { shared.remove().await }
                .into_actor(self)
                .map(|result, _act, ctx| {
                    ctx.stop();
                    result
                }),
        )
    }
}

/// How an exec's wait for its output ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Interrupt {
    None,
    Cancelled,
    TimedOut,
}

impl Shared {
    fn notice(&self, level: LogLevel, message: impl Into<String>) {
        let message = message.into();
        log::info!("sandbox {}: {message}", self.session_id);
        self.notices.do_send(SandboxNotice { level, message });
    }

    /// Make sure the container exists and runs. `suspect` forces a fresh
    /// look even when it is believed running (an exec just failed on it).
    async fn ensure_container(&self, suspect: bool) -> Result<(), SandboxError> {
        let mut state = self.container.lock().await;
        if state.running && !suspect {
            return Ok(());
        }
        let was_believed_running = state.running;
        state.running = false;
        match self.docker.inspect_container(&self.name, None).await {
            Ok(info) => {
                let labels = info
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default();
                if labels.get(LABEL_SESSION) != Some(&self.session_id)
                    || labels.get(LABEL_INSTANCE) != Some(&self.instance_id)
                {
                    return Err(SandboxError::NameConflict {
                        name: self.name.clone(),
                    });
                }
                let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                if !running {
                    self.start().await?;
                    if was_believed_running {
                        self.notice(LogLevel::Warn, "container had stopped; started it again");
                    } else {
                        self.notice(LogLevel::Info, "container started");
                    }
                } else if was_believed_running {
                    // Running after all: the failure was something else.
                } else {
                    log::info!(
                        "sandbox {}: reusing running container {}",
                        self.session_id,
                        self.name
                    );
                }
            }
            Err(e) if status_of(&e) == Some(404) => {
                self.create().await?;
                self.start().await?;
                if state.seen {
                    self.notice(LogLevel::Warn, "container was gone; recreated");
                } else {
                    self.notice(LogLevel::Info, format!("container {} created", self.name));
                }
            }
            Err(e) => return Err(container_error(&self.name, e)),
        }
        state.running = true;
        state.seen = true;
        Ok(())
    }

    async fn create(&self) -> Result<(), SandboxError> {
        let workspace = prepare_workspace(&self.workspace).await?;
        let s = &self.settings;
        let memory = i64::try_from(s.memory_mb.saturating_mul(1024 * 1024)).unwrap_or(i64::MAX);
        let tmpfs_mb = s.tmpfs_mb;
        let host_config = HostConfig {
            mounts: Some(vec![Mount {
                target: Some(WORKSPACE_MOUNT.to_string()),
                source: Some(workspace.to_string_lossy().into_owned()),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            }]),
            // `exec` on both: /workspace is executable anyway, so noexec
            // would only break tools (pip, build scripts) that run from them.
            tmpfs: Some(HashMap::from([
                (
                    "/tmp".to_string(),
                    format!("rw,exec,nosuid,nodev,size={tmpfs_mb}m,mode=1777"),
                ),
                (
                    "/home/sandbox".to_string(),
                    format!(
                        "rw,exec,nosuid,nodev,size={tmpfs_mb}m,mode=700,uid={SANDBOX_UID},gid={SANDBOX_UID}"
                    ),
                ),
            ])),
            network_mode: Some(s.network.clone()),
            cap_drop: Some(vec!["ALL".to_string()]),
            security_opt: Some(vec!["no-new-privileges".to_string()]),
            readonly_rootfs: Some(true),
            pids_limit: Some(s.pids),
            memory: Some(memory),
            memory_swap: Some(memory),
            // Non-positive means "no limit" rather than an engine error.
            nano_cpus: (s.cpus > 0.0).then_some((s.cpus * 1e9) as i64),
            init: Some(true),
            // No shared memory with other containers, whatever the daemon's
            // default.
            ipc_mode: Some("private".to_string()),
            ..Default::default()
        };
        let body = ContainerCreateBody {
            image: Some(s.image.clone()),
            cmd: Some(vec!["sleep".to_string(), "infinity".to_string()]),
            user: Some(format!("{SANDBOX_UID}:{SANDBOX_UID}")),
            working_dir: Some(WORKSPACE_MOUNT.to_string()),
            hostname: Some("sandbox".to_string()),
            // UTF-8 output, and Python output streamed as printed rather
            // than when its buffer fills.
            env: Some(vec![
                "HOME=/home/sandbox".to_string(),
                "LANG=C.UTF-8".to_string(),
                "PYTHONUNBUFFERED=1".to_string(),
            ]),
            labels: Some(HashMap::from([
                (LABEL_SESSION.to_string(), self.session_id.clone()),
                (LABEL_INSTANCE.to_string(), self.instance_id.clone()),
            ])),
            host_config: Some(host_config),
            ..Default::default()
        };
        let options = CreateContainerOptions {
            name: Some(self.name.clone()),
            ..Default::default()
        };
        match self.docker.create_container(Some(options), body).await {
            Ok(created) => {
                for w in created.warnings {
                    log::warn!("sandbox {}: docker: {w}", self.session_id);
                }
                Ok(())
            }
            Err(e) if status_of(&e) == Some(404) => Err(SandboxError::ImageMissing {
                image: s.image.clone(),
            }),
            Err(e) => Err(container_error(&self.name, e)),
        }
    }

    async fn start(&self) -> Result<(), SandboxError> {
        // The bind mount fails to start if the workspace vanished meanwhile.
        prepare_workspace(&self.workspace).await?;
        match self.docker.start_container(&self.name, None).await {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(container_error(&self.name, e)),
        }
    }

    async fn remove(&self) -> Result<(), SandboxError> {
        let mut state = self.container.lock().await;
        state.running = false;
        let removed = self
            .docker
            .remove_container(
                &self.name,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
        match removed {
            Ok(()) => {
                self.notice(LogLevel::Info, "container removed");
                Ok(())
            }
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(container_error(&self.name, e)),
        }
    }

    /// Last resort for an exec that survives kills: restart the container,
    /// which ends every process in it.
    async fn restart(&self) {
        let mut state = self.container.lock().await;
        let restarted = self
            .docker
            .restart_container(
                &self.name,
                Some(RestartContainerOptions {
                    t: Some(0),
                    ..Default::default()
                }),
            )
            .await;
        match restarted {
            Ok(()) => {
                state.running = true;
                self.notice(
                    LogLevel::Warn,
                    "a command did not stop when killed; the container was restarted",
                );
            }
            Err(e) => {
                state.running = false;
                self.notice(
                    LogLevel::Error,
                    format!("a command did not stop when killed and the container could not be restarted: {e}"),
                );
            }
        }
    }

    /// Create and start the wrapper exec. An error with a status tells the
    /// caller whether the container was the problem.
    async fn start_wrapper(
        &self,
        stem: &str,
        tool: Tool,
        timeout: Duration,
    ) -> Result<(String, StartExecResults), DockerError> {
        let timeout_arg = format!("{:.3}", timeout.as_secs_f64());
        let kill_after = format!("{}", IN_CONTAINER_KILL_AFTER.as_secs());
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
        ];
        let env = vec![
            format!("IRONCLAW_EXEC={EXEC_WRAPPER}"),
            format!("IRONCLAW_PY={PYTHON_LAUNCHER}"),
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

    async fn run_exec(
        &self,
        msg: Exec,
        cancel: &CancelSignal,
    ) -> Result<ExecOutcome, SandboxError> {
        let Exec {
            call_id,
            tool,
            code,
            timeout,
            output,
            model_output_cap,
        } = msg;
        self.ensure_container(false).await?;
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
        // Short, so error messages and tracebacks that name the file stay
        // readable; unique enough for the few execs one container runs at once.
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let stem = format!("{RUN_DIR}/{}", &run_id[..8]);
        let started_at = Instant::now();
        let started = match self.start_wrapper(&stem, tool, timeout).await {
            Ok(s) => s,
            // 404: the container was removed; 409: it is not running.
            Err(e) if matches!(status_of(&e), Some(404) | Some(409)) => {
                log::info!(
                    "sandbox {}: exec failed ({e}); checking the container",
                    self.session_id
                );
                self.ensure_container(true).await?;
                self.start_wrapper(&stem, tool, timeout)
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
            let pump = collector.pump(stream);
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
                    self.kill_run(&stem).await;
                    tokio::select! {
                        () = &mut pump => { ended = true; break; }
                        () = tokio::time::sleep(KILL_RETRY_EVERY) => {}
                    }
                }
                if !ended {
                    self.restart().await;
                    restarted = true;
                    if tokio::time::timeout(STREAM_CLOSE_AFTER_RESTART, &mut pump)
                        .await
                        .is_err()
                    {
                        log::warn!(
                            "sandbox {}: output of {call_id} stayed open after restart",
                            self.session_id
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
                    self.session_id
                );
            }
        } else {
            writer.abort();
        }
        let exit_code = if restarted {
            None
        } else {
            self.exit_code(&exec_id).await
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
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn utf8_decoder_never_splits_a_character() {
        /// Chunks in, text out per chunk, text at finish.
        type Case = (
            &'static [&'static [u8]],
            &'static [&'static str],
            &'static str,
        );
        let cases: &[Case] = &[
            (&[b"plain"], &["plain"], ""),
            (&[b"a\xc3", b"\xa9b"], &["a", "\u{e9}b"], ""),
            (&[b"\xe2", b"\x82", b"\xac!"], &["", "", "\u{20ac}!"], ""),
            (&[b"\xf0\x9f", b"\x98\x80"], &["", "\u{1f600}"], ""),
            (&[b"bad\xffbyte"], &["bad\u{fffd}byte"], ""),
            (&[b"x\xc3", b"y"], &["x", "\u{fffd}y"], ""),
            (&[b"cut\xe2\x82"], &["cut"], "\u{fffd}"),
            (&[b""], &[""], ""),
        ];
        for (chunks, want, want_end) in cases {
            let mut d = Utf8Decoder::default();
            let got: Vec<String> = chunks.iter().map(|c| d.push(c)).collect();
            assert_eq!(&got, want, "chunks {chunks:?}");
            assert_eq!(d.finish(), *want_end, "end of {chunks:?}");
        }
    }

    #[test]
    fn model_output_keeps_head_and_tail_within_the_cap() {
        // (cap, pushes, expected)
        let cases: &[(usize, &[&str], &str)] = &[
            (100, &["hello ", "world"], "hello world"),
            (11, &["hello ", "world"], "hello world"),
            (0, &[], ""),
        ];
        for (cap, pushes, want) in cases {
            let mut m = ModelOutput::new(*cap);
            for p in *pushes {
                m.push(p);
            }
            assert_eq!(m.finish(), *want);
        }

        let mut m = ModelOutput::new(200);
        let lines: Vec<String> = (0..1000).map(|i| format!("line {i}\n")).collect();
        let total: usize = lines.iter().map(String::len).sum();
        for l in &lines {
            m.push(l);
        }
        let out = m.finish();
        assert!(out.len() <= 200, "{} bytes", out.len());
        assert!(out.starts_with("line 0\nline 1\n"), "{out}");
        assert!(out.ends_with("line 999\n"), "{out}");
        let marker_start = out.find("\n[... ").unwrap();
        let marker_end = out.find(" ...]\n").unwrap() + " ...]\n".len();
        let omitted: usize = out[marker_start + 6..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(omitted, total - marker_start - (out.len() - marker_end));
    }

    #[test]
    fn model_output_cuts_on_character_boundaries_and_keeps_order() {
        // Cap 100: head and tail keep 50 - 24 = 26 bytes each.
        let mut m = ModelOutput::new(100);
        m.push(&"é".repeat(40));
        m.push(&"ü".repeat(500));
        m.push("END");
        let out = m.finish();
        assert!(out.len() <= 100, "{out}");
        assert!(out.starts_with(&"é".repeat(13)), "{out}");
        assert!(out.ends_with(&format!("{}END", "ü".repeat(11))), "{out}");

        // Head cap 5 holds "abcd"; "é" does not fit, so the head closes and
        // the "x" after it cannot jump ahead of it.
        let mut m = ModelOutput::new(10);
        m.push("abcd");
        m.push("é");
        m.push("x");
        assert_eq!(m.finish(), "abcdéx");
    }

    #[test]
    fn container_names_are_valid_for_docker() {
        let cases = [
            ("inst", "sess", "ironclaw-inst-sess"),
            ("a/b", "c d", "ironclaw-a-b-c-d"),
            ("i.1_x", "ses-2", "ironclaw-i.1_x-ses-2"),
            ("ü", "s", "ironclaw---s"),
        ];
        for (instance, session, want) in cases {
            assert_eq!(container_name(instance, session), want);
        }
    }

    #[test]
    fn idle_durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(900)), "15 min");
        assert_eq!(human_duration(Duration::from_secs(90)), "90 s");
        assert_eq!(human_duration(Duration::from_secs(1)), "1 s");
    }

    #[test]
    fn errors_have_stable_codes_and_say_what_to_do() {
        let missing = SandboxError::ImageMissing {
            image: "ironclaw-sandbox:latest".into(),
        };
        assert_eq!(missing.code(), "image_missing");
        assert_eq!(
            missing.to_string(),
            "The sandbox image ironclaw-sandbox:latest is missing: run `make sandbox-image`."
        );
        let too_large = SandboxError::CodeTooLarge { size: 2, limit: 1 };
        assert_eq!(too_large.code(), "code_too_large");
        assert_eq!(
            SandboxError::DockerUnavailable { detail: "x".into() }.code(),
            "docker_unavailable"
        );
        assert_eq!(
            SandboxError::ExecFailed { detail: "x".into() }.code(),
            "exec_failed"
        );
    }
}
