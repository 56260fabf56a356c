//! The sandbox: one hardened Docker container per session and the tool
//! calls run in it (DESIGN.md §4). This file is the [`SandboxActor`], its
//! messages and their handlers; the rest is split by concern:
//!
//! - `container`: the container's lifecycle (create with the hardening
//!   options and labels, start, idle stop, restart, remove), the reaper,
//!   and [`Engine`], the handle on Docker the rest of IronClaw holds.
//! - `channel`: the host's end of the channel to the container's resident
//!   exec agent (`sandbox-agent/`).
//! - `exec`: how a tool call runs over that channel, streams, times out
//!   (three layers) and is killed, and what its exit codes mean.
//! - `output`: pure decoders for the exec's output (UTF-8 across chunks,
//!   the model's head + tail copy).
//! - `pool`: the warm pool of started containers for new sessions.
//!
//! `bollard` is used nowhere outside this module tree.
//!
//! Messages: [`Exec`] (streams [`ExecChunk`]s, answers [`ExecOutcome`]),
//! [`CancelExec`], [`WarmContainer`], [`RemoveContainer`]; the actor
//! reports lifecycle lines as [`SandboxNotice`]s.

mod channel;
mod container;
mod exec;
mod output;
mod pool;

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::config::SandboxSettings;
use crate::protocol::{CallId, LogLevel, OutputStream, Tool};
use crate::quota::WorkspaceVolume;
use crate::risk::JudgedFile;

use container::Container;
use exec::CancelSignal;

pub use channel::AGENT_PATH;
pub use container::{
    connect_docker, container_name, docker_status, prepare_workspace, reap_orphans, Engine,
    EngineState, Spare, DEFAULT_START_CONCURRENCY, LABEL_INSTANCE, LABEL_SESSION, SANDBOX_UID,
    WORKSPACE_MOUNT,
};
pub use pool::{DrainPool, PoolState, PoolStatus, TakePooled, WarmPool, LABEL_POOL};

/// Largest program accepted for one tool call (DESIGN.md §4). Far above any
/// code a model writes by hand; anything bigger belongs in a workspace file.
pub const MAX_CODE_BYTES: usize = 1024 * 1024;

/// Bounds for the idle check interval: often enough that a container stops
/// close to `idle_stop_secs`, rarely enough to cost nothing.
const IDLE_CHECK_MIN: Duration = Duration::from_secs(1);
const IDLE_CHECK_MAX: Duration = Duration::from_secs(30);

/// How often the watchdog looks for a lost exec agent between calls.
const WATCHDOG_EVERY: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// A piece of live output.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ExecChunk {
    pub call_id: CallId,
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
    pub call_id: CallId,
    pub tool: Tool,
    pub code: String,
    /// Workspace files the approval judged, with the SHA-256 of what it
    /// read: the exec agent refuses to run the code if any of them changed.
    pub files: Vec<JudgedFile>,
    pub timeout: Duration,
    /// Receives the live output as [`ExecChunk`]s.
    pub output: Recipient<ExecChunk>,
    /// Bytes of output kept for the model (head and tail).
    pub model_output_cap: usize,
}

/// How a tool call ended.
#[derive(Debug, Clone)]
pub struct ExecOutcome {
    /// See the `exec` module docs for 124/125/137 and `None`.
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
    pub call_id: CallId,
}

/// Sent by a sandbox to its supervisor before it starts its container:
/// answers once there is room under the owner's `limits.containers`
/// (the owner's oldest idle container stopped if need be), or
/// [`SandboxError::LimitReached`] when every one of them is busy.
#[derive(Message)]
#[rtype(result = "Result<(), SandboxError>")]
pub struct ClaimContainer {
    pub session_id: crate::protocol::SessionId,
    /// Stop the owner's oldest idle container to make room (a command is
    /// waiting); `false` only takes room that is free (a warm start).
    pub evict: bool,
}

/// Start the container now, before any command, if there is room under
/// the owner's limit without stopping another of their containers: a tab
/// was opened on the session. Best effort; the first command reports what
/// went wrong, if anything.
#[derive(Message)]
#[rtype(result = "()")]
pub struct WarmContainer;

/// Whether this sandbox's container is running, and how busy: `None` when
/// it is surely stopped.
#[derive(Message)]
#[rtype(result = "Option<ContainerUsage>")]
pub struct ContainerUse;

/// A running container's use, to pick the oldest idle one.
#[derive(Debug, Clone, Copy)]
pub struct ContainerUsage {
    /// Execs running in it now.
    pub active: usize,
    /// When an exec last started or ended.
    pub last_used: Instant,
}

/// Stop the container now if no exec runs in it (the next exec starts it
/// again); answers whether it is stopped.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct StopIfIdle;

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
    #[error("The sandbox image {image} was built for an older IronClaw (its exec agent does not match): run `make sandbox-image`.")]
    ImageOutdated { image: String },
    #[error(
        "The program is {size} bytes, more than the sandbox accepts ({limit} bytes). Write the data to a file in the workspace and run a shorter program that reads it."
    )]
    CodeTooLarge { size: usize, limit: usize },
    /// The host path is kept for the server's log only: what reaches the
    /// page names no host path.
    #[error(
        "The session workspace cannot be used ({source}). Check that the data directory exists and IronClaw may write to it; the server's log names the folder."
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
    #[error("You already have {limit} sandbox containers running (limits.containers) and none of them is idle. Wait for a command in another session to finish, or delete a session you no longer need.")]
    LimitReached { limit: usize },
}

impl SandboxError {
    /// Stable snake_case code for the wire (`error.code`).
    pub fn code(&self) -> crate::protocol::ErrorCode {
        match self {
            SandboxError::DockerUnavailable { .. } => crate::protocol::ErrorCode::DockerUnavailable,
            SandboxError::ImageMissing { .. } | SandboxError::ImageOutdated { .. } => {
                crate::protocol::ErrorCode::ImageMissing
            }
            SandboxError::CodeTooLarge { .. } => crate::protocol::ErrorCode::CodeTooLarge,
            SandboxError::Workspace { .. } => crate::protocol::ErrorCode::WorkspaceUnavailable,
            SandboxError::NameConflict { .. } => crate::protocol::ErrorCode::ContainerConflict,
            SandboxError::Container { .. } => crate::protocol::ErrorCode::ContainerFailed,
            SandboxError::ExecFailed { .. } => crate::protocol::ErrorCode::ExecFailed,
            SandboxError::LimitReached { .. } => crate::protocol::ErrorCode::LimitReached,
        }
    }
}

// ---------------------------------------------------------------------------
// The actor
// ---------------------------------------------------------------------------

/// State shared by the actor and the futures it spawns (all on the actor's
/// thread, hence `Rc`/`Cell`).
struct Shared {
    container: Container,
    /// Execs in flight; the idle stop waits for zero.
    active: Cell<usize>,
    /// When the last exec started or ended.
    last_used: Cell<Instant>,
}

impl Shared {
    /// No exec running and none for `limit`.
    fn idle_for(&self, limit: Duration) -> bool {
        self.active.get() == 0 && self.last_used.get().elapsed() >= limit
    }
}

/// One session's sandbox: its container and the tool calls running in it.
pub struct SandboxActor {
    shared: Rc<Shared>,
    /// Running execs by sequence number, with their call id, for CancelExec.
    runs: HashMap<u64, (CallId, Rc<CancelSignal>)>,
    next_run: u64,
    /// Stop the container after this long without an exec; zero never does.
    idle_limit: Duration,
    /// An idle stop is under way; don't start a second.
    idle_stop_pending: bool,
    /// The watchdog is recovering the container.
    recovering: bool,
    /// A warm start is under way.
    warming: bool,
    /// Where to ask for room before starting the container (the
    /// supervisor, for `limits.containers`); `None` runs unlimited.
    claims: Option<Recipient<ClaimContainer>>,
    session_id: crate::protocol::SessionId,
}

impl SandboxActor {
    /// The sandbox of `session_id`. The container is created or adopted
    /// (by name) at the first exec. `engine` is an [`Engine`] or, in tests,
    /// the Docker client itself.
    pub fn new(
        engine: impl Into<Engine>,
        settings: SandboxSettings,
        session_id: String,
        instance_id: String,
        workspace: impl Into<WorkspaceVolume>,
        notices: Recipient<SandboxNotice>,
    ) -> Self {
        let idle_limit = Duration::from_secs(settings.idle_stop_secs);
        let id = crate::protocol::SessionId::from(session_id.as_str());
        let container = Container::new(
            engine.into(),
            settings,
            session_id,
            instance_id,
            workspace.into(),
            notices,
        );
        SandboxActor {
            shared: Rc::new(Shared {
                container,
                active: Cell::new(0),
                last_used: Cell::new(Instant::now()),
            }),
            runs: HashMap::new(),
            next_run: 0,
            idle_limit,
            idle_stop_pending: false,
            recovering: false,
            warming: false,
            claims: None,
            session_id: id,
        }
    }

    /// Take containers from `pool` when the session's workspace is new.
    pub fn with_pool(mut self, pool: Recipient<TakePooled>) -> Self {
        if let Some(shared) = Rc::get_mut(&mut self.shared) {
            shared.container.pool = Some(pool);
        }
        self
    }

    /// Ask `claims` for room before each container start.
    pub fn with_claims(mut self, claims: Recipient<ClaimContainer>) -> Self {
        self.claims = Some(claims);
        self
    }

    /// The watchdog between calls (a running call recovers by itself).
    fn check_agent(&mut self, ctx: &mut Context<Self>) {
        if self.recovering || self.shared.active.get() > 0 || !self.shared.container.channel_lost()
        {
            return;
        }
        self.recovering = true;
        let shared = self.shared.clone();
        ctx.spawn(
            async move { shared.container.recover_lost().await }
                .into_actor(self)
                .map(|(), act, _| act.recovering = false),
        );
    }

    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let limit = self.idle_limit;
        // Cheap checks first; the stop re-checks under the container's lock.
        if self.idle_stop_pending
            || limit.is_zero()
            || !self.shared.idle_for(limit)
            || self.shared.container.surely_stopped()
        {
            return;
        }
        self.idle_stop_pending = true;
        let shared = self.shared.clone();
        ctx.spawn(
            async move {
                shared
                    .container
                    .stop_idle(limit, || shared.idle_for(limit))
                    .await
            }
            .into_actor(self)
            .map(|(), act, _| act.idle_stop_pending = false),
        );
    }
}

impl Actor for SandboxActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let every = (self.idle_limit / 2).clamp(IDLE_CHECK_MIN, IDLE_CHECK_MAX);
        ctx.run_interval(every, |act, ctx| act.check_idle(ctx));
        ctx.run_interval(WATCHDOG_EVERY, |act, ctx| act.check_agent(ctx));
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
        let claim = match &self.claims {
            Some(claims) if shared.container.surely_stopped() => {
                Some(claims.send(ClaimContainer {
                    session_id: self.session_id.clone(),
                    evict: true,
                }))
            }
            _ => None,
        };
        shared.active.set(shared.active.get() + 1);
        shared.last_used.set(Instant::now());
        Box::pin(
            async move {
                if let Some(claim) = claim {
                    // A supervisor that is gone (shutting down) is no
                    // reason to refuse; its answer is.
                    if let Ok(Err(e)) = claim.await {
                        return Err(e);
                    }
                }
                exec::run(&shared.container, msg, &cancel).await
            }
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

impl Handler<WarmContainer> for SandboxActor {
    type Result = ();

    fn handle(&mut self, _: WarmContainer, ctx: &mut Self::Context) {
        let shared = self.shared.clone();
        if !shared.container.surely_stopped() || self.warming {
            return;
        }
        self.warming = true;
        let claim = self.claims.as_ref().map(|claims| {
            claims.send(ClaimContainer {
                session_id: self.session_id.clone(),
                evict: false,
            })
        });
        // The idle clock starts now: a tab opened and left is stopped like
        // a session left idle.
        shared.last_used.set(Instant::now());
        ctx.spawn(
            async move {
                if let Some(claim) = claim {
                    if !matches!(claim.await, Ok(Ok(()))) {
                        return;
                    }
                }
                if let Err(e) = shared.container.warm().await {
                    log::info!(
                        "sandbox {}: warm start failed: {e}",
                        shared.container.session_id
                    );
                }
            }
            .into_actor(self)
            .map(|(), act, _| act.warming = false),
        );
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

impl Handler<ContainerUse> for SandboxActor {
    type Result = Option<ContainerUsage>;

    fn handle(&mut self, _: ContainerUse, _: &mut Self::Context) -> Self::Result {
        if self.shared.container.surely_stopped() {
            return None;
        }
        Some(ContainerUsage {
            active: self.shared.active.get(),
            last_used: self.shared.last_used.get(),
        })
    }
}

impl Handler<StopIfIdle> for SandboxActor {
    type Result = ResponseActFuture<Self, bool>;

    /// Stops under the container's lifecycle lock, re-checking that no
    /// exec started meanwhile.
    fn handle(&mut self, _: StopIfIdle, _: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(
            async move {
                shared
                    .container
                    .stop_idle(Duration::ZERO, || shared.active.get() == 0)
                    .await;
                shared.container.surely_stopped()
            }
            .into_actor(self),
        )
    }
}

impl Handler<RemoveContainer> for SandboxActor {
    type Result = ResponseActFuture<Self, Result<(), SandboxError>>;

    /// Removes the container (killing anything running in it) and stops the
    /// actor, whether or not the removal worked: the session is going away.
    fn handle(&mut self, _msg: RemoveContainer, _ctx: &mut Self::Context) -> Self::Result {
        let shared = self.shared.clone();
        Box::pin(
            async move { shared.container.remove().await }
                .into_actor(self)
                .map(|result, _act, ctx| {
                    ctx.stop();
                    result
                }),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
