//! The container's lifecycle: connecting to the Docker engine and checking
//! it ([`Engine`]), creating a session's container with every hardening
//! option and its labels, starting, stopping at idle, restarting as the
//! last resort for a wedged exec, removing it, and the reaper that removes
//! this installation's leftovers at start-up (DESIGN.md §4).
//!
//! Everything else in IronClaw reaches Docker through [`Engine`] or the
//! [`SandboxActor`](super::SandboxActor); `bollard` stays inside this module
//! tree.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, RemoveContainerOptions, RenameContainerOptions,
    RestartContainerOptions, StopContainerOptions,
};
use bollard::Docker;

use super::channel::{Channel, AGENT_PROTOCOL};
use super::pool::{remove_pooled, TakePooled};
use super::{SandboxError, SandboxNotice};
use crate::config::SandboxSettings;
use crate::protocol::LogLevel;
use crate::quota::WorkspaceVolume;

/// The image's unprivileged user (`sandbox`). Fixed by `make sandbox-image`;
/// the workspace on the host must be writable by it.
pub const SANDBOX_UID: u32 = 1000;

/// Where the session's workspace appears inside the container (DESIGN.md §4).
pub const WORKSPACE_MOUNT: &str = "/workspace";

/// Label carrying the session id on every sandbox container.
pub const LABEL_SESSION: &str = "ironclaw.session";

/// Label carrying the server installation's id; the reaper removes by it.
pub const LABEL_INSTANCE: &str = "ironclaw.instance";

/// Image label with the exec agent's wire protocol version.
const LABEL_AGENT: &str = "ironclaw.agent";

/// The only capabilities a sandbox container keeps, and only its exec
/// agent (uid 0 inside) holds them: to start each call as uid 1000
/// (SETUID, SETGID) and to kill what the call leaves (KILL). Everything the
/// calls run has none (see `sandbox-agent/README.md`).
const AGENT_CAPS: [&str; 3] = ["SETUID", "SETGID", "KILL"];

/// Seconds `docker stop` waits after SIGTERM before SIGKILL at idle stop.
/// The container's only long-lived process is `sleep`, so no grace is
/// needed beyond letting init pass the signal on.
const STOP_GRACE_SECS: i32 = 2;

/// How long a stop, restart or removal waits for the exec agent to exit
/// after its channel is closed (a frozen one never does; it is killed with
/// the container).
const CHANNEL_CLOSE_WAIT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Engine errors
// ---------------------------------------------------------------------------

/// Whether a bollard error means the engine itself could not be reached.
pub(super) fn is_unreachable(e: &DockerError) -> bool {
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
pub(super) fn status_of(e: &DockerError) -> Option<u16> {
    match e {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(super) fn container_error(name: &str, e: DockerError) -> SandboxError {
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

// ---------------------------------------------------------------------------
// The engine: connection, health, reaper, removal by name
// ---------------------------------------------------------------------------

/// A connection to the Docker engine. The rest of IronClaw holds this
/// opaque handle (the supervisor, to start sandboxes and remove containers;
/// start-up, to check and reap) and never the Docker client itself.
#[derive(Clone)]
pub struct Engine {
    pub(super) docker: Docker,
    /// Container creations and starts in flight, bounded: in a burst the
    /// engine serves a few at full speed rather than all of them slowly,
    /// and the gate is fair, so sessions get their containers in the order
    /// they asked (see [`StartGate`]).
    pub(super) starts: StartGate,
}

/// The bound on container starts in flight, shared by every sandbox and the
/// warm pool. `tokio`'s semaphore queues waiters first come, first served.
#[derive(Clone)]
pub(super) struct StartGate {
    permits: Arc<tokio::sync::Semaphore>,
    /// Sandboxes waiting for a permit now, to tell a person how many are
    /// ahead of them.
    waiting: Arc<AtomicUsize>,
}

impl StartGate {
    fn new(concurrency: usize) -> Self {
        StartGate {
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many are waiting for a start now.
    pub(super) fn queued(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Waits for a turn to create and start a container.
    pub(super) async fn enter(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = self.permits.clone().acquire_owned().await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        // The semaphore is never closed.
        #[allow(clippy::expect_used)]
        permit.expect("the start gate is never closed")
    }

    /// Whether a start would have to wait.
    pub(super) fn busy(&self) -> bool {
        self.permits.available_permits() == 0
    }
}

/// Container starts in flight at once unless configured
/// (`sandbox.start_concurrency`); see `make bench` for how it was chosen.
pub const DEFAULT_START_CONCURRENCY: usize = 4;

/// What the health route and `ironclaw check` tell about Docker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineState {
    /// The engine answered a ping.
    pub reachable: bool,
    /// The sandbox image is there.
    pub image_present: bool,
    /// `ok`, or what is wrong and what to do about it.
    pub summary: String,
}

impl EngineState {
    /// Ready to run sandboxes.
    pub fn is_ok(&self) -> bool {
        self.reachable && self.image_present
    }
}

impl From<Docker> for Engine {
    fn from(docker: Docker) -> Self {
        Engine {
            docker,
            starts: StartGate::new(DEFAULT_START_CONCURRENCY),
        }
    }
}

impl Engine {
    /// Connect to the local engine and settle on an API version; an error
    /// when the engine is not reachable now (see [`connect_docker`]).
    pub async fn connect() -> Result<Engine, SandboxError> {
        connect_docker().await.map(Engine::from)
    }

    /// Like [`Engine::connect`], but an engine that is down now is not an
    /// error: the client is kept with the default API version, so sandboxes
    /// work as soon as the engine is up, and chat works meanwhile. Fails
    /// only when no client can be made at all (e.g. a malformed
    /// `DOCKER_HOST`).
    pub async fn connect_or_wait() -> Result<Engine, SandboxError> {
        match connect_docker().await {
            Ok(docker) => Ok(Engine::from(docker)),
            Err(e) => {
                log::warn!("{e}");
                Docker::connect_with_local_defaults()
                    .map(Engine::from)
                    .map_err(|e| SandboxError::DockerUnavailable {
                        detail: e.to_string(),
                    })
            }
        }
    }

    /// At most `n` container starts in flight at once.
    pub fn with_start_concurrency(mut self, n: usize) -> Self {
        self.starts = StartGate::new(n);
        self
    }

    /// Whether the engine answers and has `image`.
    pub async fn status(&self, image: &str) -> EngineState {
        let (reachable, image_present, summary) = docker_status(&self.docker, image).await;
        EngineState {
            reachable,
            image_present,
            summary,
        }
    }

    /// Remove this installation's leftover containers but `spare`; see
    /// [`reap_orphans`].
    pub async fn reap_orphans(
        &self,
        instance_id: &str,
        spare: &Spare,
    ) -> Result<usize, SandboxError> {
        reap_orphans(&self.docker, instance_id, spare).await
    }

    /// Remove a session's container by name, whether it runs or not, when
    /// no sandbox actor of the session is live to do it. A container that
    /// is already gone is not an error.
    pub async fn remove_session_container(
        &self,
        instance_id: &str,
        session_id: &str,
    ) -> Result<(), SandboxError> {
        let name = container_name(instance_id, session_id);
        remove_by_name(&self.docker, &name).await.map(|_| ())
    }
}

impl Engine {
    /// Start a container by name.
    pub(super) async fn start(&self, name: &str) -> Result<(), SandboxError> {
        match self.docker.start_container(name, None).await {
            Ok(()) => Ok(()),
            // 304: already running.
            Err(e) if status_of(&e) == Some(304) => Ok(()),
            Err(e) => Err(container_error(name, e)),
        }
    }

    /// Force-remove a container; `Ok(false)` when there was none.
    pub(super) async fn remove_by_name(&self, name: &str) -> Result<bool, SandboxError> {
        remove_by_name(&self.docker, name).await
    }
}

/// Force-remove a container; `Ok(false)` when there was none.
async fn remove_by_name(docker: &Docker, name: &str) -> Result<bool, SandboxError> {
    let removed = docker
        .remove_container(
            name,
            Some(RemoveContainerOptions {
                force: true,
                ..Default::default()
            }),
        )
        .await;
    match removed {
        Ok(()) => Ok(true),
        Err(e) if status_of(&e) == Some(404) => Ok(false),
        Err(e) => Err(container_error(name, e)),
    }
}

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
        Ok(info) => {
            let agent = info
                .config
                .and_then(|c| c.labels)
                .and_then(|l| l.get(LABEL_AGENT).cloned());
            if agent.as_deref() == Some(AGENT_PROTOCOL.to_string().as_str()) {
                (true, true, "ok".to_string())
            } else {
                let err = SandboxError::ImageOutdated {
                    image: image.to_string(),
                };
                (true, false, err.to_string())
            }
        }
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

/// Containers a starting node must leave alone: other live nodes' (when
/// nodes share an engine).
#[derive(Debug, Clone, Default)]
pub struct Spare {
    /// Sessions whose lease another live node holds.
    pub sessions: std::collections::HashSet<String>,
    /// Another node is alive: its warm pool is its own.
    pub pool: bool,
}

/// Remove every container labelled ironclaw.instance=<instance_id> (left over
/// from a previous run of this installation) but those `spare` names.
/// Returns how many.
pub async fn reap_orphans(
    docker: &Docker,
    instance_id: &str,
    spare: &Spare,
) -> Result<usize, SandboxError> {
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
        let labels = c.labels.clone().unwrap_or_default();
        let spared = labels
            .get(LABEL_SESSION)
            .is_some_and(|s| spare.sessions.contains(s))
            || (spare.pool && labels.contains_key(super::pool::LABEL_POOL));
        if spared {
            continue;
        }
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

/// Create the session's workspace if needed (its own quota filesystem,
/// mounted `nosuid,nodev`, when the server runs as root: see
/// [`crate::quota`]), make it writable for the sandbox user, and return its
/// absolute path (Docker binds need one).
///
/// When the directory belongs to someone else, it is handed to
/// [`SANDBOX_UID`] (possible when IronClaw runs as root); failing that it is
/// opened to everyone (mode 0777) so the sandbox can still write to it.
pub async fn prepare_workspace(volume: &WorkspaceVolume) -> Result<PathBuf, SandboxError> {
    let volume = volume.clone();
    let result = tokio::task::spawn_blocking(move || -> Result<PathBuf, SandboxError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let path = volume.root().to_path_buf();
        let io = |source: std::io::Error| {
            log::warn!("workspace {} cannot be used: {source}", path.display());
            SandboxError::Workspace {
                path: path.clone(),
                source,
            }
        };
        volume.prepare().map_err(io)?;
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

/// Create a container with every hardening option (DESIGN.md §4): the one
/// definition of a sandbox, for sessions' containers and the warm pool's
/// alike. `workspace` is bind-mounted at `/workspace`.
pub(super) async fn create_hardened(
    docker: &Docker,
    settings: &SandboxSettings,
    name: &str,
    labels: HashMap<String, String>,
    workspace: &std::path::Path,
) -> Result<String, SandboxError> {
    let s = settings;
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
        cap_add: Some(AGENT_CAPS.iter().map(|c| c.to_string()).collect()),
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
        // Root inside, holding only AGENT_CAPS: the engine gives an exec
        // the container's capabilities only when the container's user is
        // root, and the exec agent needs them to start each call as
        // SANDBOX_UID. Nothing a call runs is root or has a capability, and
        // uid 1000 cannot signal this `sleep` (so a call cannot stop its
        // own container) nor the agent.
        user: Some("0:0".to_string()),
        working_dir: Some(WORKSPACE_MOUNT.to_string()),
        hostname: Some("sandbox".to_string()),
        // UTF-8 output, and Python output streamed as printed rather
        // than when its buffer fills.
        env: Some(vec![
            "HOME=/home/sandbox".to_string(),
            "LANG=C.UTF-8".to_string(),
            "PYTHONUNBUFFERED=1".to_string(),
        ]),
        labels: Some(labels),
        host_config: Some(host_config),
        ..Default::default()
    };
    let options = CreateContainerOptions {
        name: Some(name.to_string()),
        ..Default::default()
    };
    match docker.create_container(Some(options), body).await {
        Ok(created) => {
            for w in created.warnings {
                log::warn!("container {name}: docker: {w}");
            }
            Ok(created.id)
        }
        Err(e) if status_of(&e) == Some(404) => Err(SandboxError::ImageMissing {
            image: s.image.clone(),
        }),
        Err(e) => Err(container_error(name, e)),
    }
}

// ---------------------------------------------------------------------------
// One session's container
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

/// One session's container, as its sandbox actor and that actor's exec
/// futures see it (all on the actor's thread).
pub(super) struct Container {
    engine: Engine,
    /// Where to take a ready container from, if anywhere.
    pub(super) pool: Option<Recipient<TakePooled>>,
    /// The Docker id of the pooled container this session adopted: it
    /// carries no session label, and is ours by this id.
    adopted: RefCell<Option<String>>,
    settings: SandboxSettings,
    pub(super) session_id: String,
    instance_id: String,
    /// The session's workspace on the host, bind-mounted at `/workspace`.
    pub(super) workspace: WorkspaceVolume,
    /// Container name, from [`container_name`].
    pub(super) name: String,
    /// Lifecycle lines for the person's log panel.
    notices: Recipient<SandboxNotice>,
    state: tokio::sync::Mutex<ContainerState>,
    /// The channel to the running container's exec agent, once opened.
    channel: RefCell<Option<Arc<Channel>>>,
    /// Counts the channels opened, so a call that lost one can tell whether
    /// someone has already recovered.
    generation: Cell<u64>,
    /// A warm start is under way: routine notices are not sent.
    quiet: Cell<bool>,
}

impl Container {
    pub(super) fn new(
        engine: Engine,
        settings: SandboxSettings,
        session_id: String,
        instance_id: String,
        workspace: WorkspaceVolume,
        notices: Recipient<SandboxNotice>,
    ) -> Self {
        let name = container_name(&instance_id, &session_id);
        Container {
            engine,
            pool: None,
            adopted: RefCell::new(None),
            settings,
            session_id,
            instance_id,
            workspace,
            name,
            notices,
            state: tokio::sync::Mutex::new(ContainerState::default()),
            channel: RefCell::new(None),
            generation: Cell::new(0),
            quiet: Cell::new(false),
        }
    }

    /// The open channel, unless it was lost.
    fn live_channel(&self) -> Option<Arc<Channel>> {
        self.channel.borrow().clone().filter(|c| !c.is_lost())
    }

    /// Whether a channel was opened and has since been lost while the
    /// container was believed running (the agent died or went silent).
    pub(super) fn channel_lost(&self) -> bool {
        self.channel.borrow().as_ref().is_some_and(|c| c.is_lost())
    }

    /// Closes the channel before the container is stopped, restarted or
    /// removed: the agent sees its stdin end and exits (see
    /// [`Channel::close`]).
    async fn close_channel(&self) {
        let channel = self.channel.borrow_mut().take();
        if let Some(channel) = channel {
            channel.close(CHANNEL_CLOSE_WAIT).await;
        }
    }

    async fn connect(&self) -> Result<Arc<Channel>, SandboxError> {
        let channel = Channel::open(&self.engine.docker, &self.name, &self.settings.image).await?;
        log::debug!(
            "sandbox {}: exec agent ready (pid {} in the container)",
            self.session_id,
            channel.agent_pid
        );
        Ok(self.install(channel))
    }

    /// Makes `channel` this container's current one.
    fn install(&self, channel: Arc<Channel>) -> Arc<Channel> {
        let generation = self.generation.get() + 1;
        self.generation.set(generation);
        channel.set_generation(generation);
        *self.channel.borrow_mut() = Some(channel.clone());
        channel
    }

    /// After a call lost channel `generation`: restart the container (the
    /// host's watchdog; it ends every process in it) and open a new channel,
    /// unless another call has already done so. A container that is gone or
    /// stopped is recreated or started instead.
    pub(super) async fn recover(&self, generation: u64) {
        if self.generation.get() != generation || !self.channel_lost() {
            return;
        }
        if let Err(e) = self.ensure(true).await {
            log::warn!(
                "sandbox {}: recovering the container failed: {e}",
                self.session_id
            );
        }
    }

    /// The host's watchdog between calls: a channel lost while no call ran
    /// (the agent was killed, or went silent) gets the container restarted
    /// now rather than at the next call.
    pub(super) async fn recover_lost(&self) {
        self.recover(self.generation.get()).await
    }

    /// A lifecycle line for the person (and the server's log); routine
    /// ones are left out during a warm start.
    pub(super) fn notice(&self, level: LogLevel, message: impl Into<String>) {
        let message = message.into();
        if level == LogLevel::Info && self.quiet.get() {
            log::info!("sandbox {}: {message}", self.session_id);
            return;
        }
        self.tell(level, message);
    }

    /// A line the person always gets.
    fn tell(&self, level: LogLevel, message: String) {
        log::info!("sandbox {}: {message}", self.session_id);
        self.notices.do_send(SandboxNotice { level, message });
    }

    /// Starts the container ahead of the first command (a tab opened): as
    /// [`Container::ensure`], but the routine lines ("container created")
    /// stay in the server's log; the person hears only of trouble.
    pub(super) async fn warm(&self) -> Result<(), SandboxError> {
        self.quiet.set(true);
        let ready = self.ensure(false).await;
        self.quiet.set(false);
        ready.map(|_| ())
    }

    /// Make sure the container exists and runs, with its exec agent
    /// answering; the channel to the agent. `suspect` forces a fresh look
    /// even when it is believed running (an exec just failed on it).
    pub(super) async fn ensure(&self, suspect: bool) -> Result<Arc<Channel>, SandboxError> {
        let mut state = self.state.lock().await;
        if state.running && !suspect {
            if let Some(channel) = self.live_channel() {
                return Ok(channel);
            }
            if self.channel.borrow().is_none() {
                // Running without a channel yet (just restarted).
                return self.connect().await;
            }
        }
        let lost = self.channel_lost();
        self.close_channel().await;
        let was_believed_running = state.running;
        state.running = false;
        match self.engine.docker.inspect_container(&self.name, None).await {
            Ok(info) => {
                let labels = info
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.clone())
                    .unwrap_or_default();
                let adopted = info.id.is_some() && *self.adopted.borrow() == info.id;
                if (labels.get(LABEL_SESSION) != Some(&self.session_id) && !adopted)
                    || labels.get(LABEL_INSTANCE) != Some(&self.instance_id)
                {
                    return Err(SandboxError::NameConflict {
                        name: self.name.clone(),
                    });
                }
                let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
                if !running {
                    let _turn = self.start_turn().await;
                    self.start().await?;
                    if was_believed_running {
                        self.notice(LogLevel::Warn, "container had stopped; started it again");
                    } else {
                        self.notice(LogLevel::Info, "container started");
                    }
                } else if was_believed_running && lost {
                    // Running, but its agent died or went silent: only a
                    // restart surely ends whatever it was running.
                    self.restart_container().await?;
                    self.notice(
                        LogLevel::Warn,
                        "the sandbox's exec agent stopped answering; the container was restarted",
                    );
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
                if !state.seen && self.adopt_pooled().await {
                    self.notice(LogLevel::Info, "container ready (from the warm pool)");
                } else {
                    let _turn = self.start_turn().await;
                    self.create().await?;
                    self.start().await?;
                }
                if state.seen {
                    self.notice(LogLevel::Warn, "container was gone; recreated");
                } else if self.adopted.borrow().is_none() {
                    self.notice(LogLevel::Info, format!("container {} created", self.name));
                }
            }
            Err(e) => return Err(container_error(&self.name, e)),
        }
        state.running = true;
        state.seen = true;
        match self.live_channel() {
            // Came with the pooled container.
            Some(channel) => Ok(channel),
            None => self.connect().await,
        }
    }

    async fn create(&self) -> Result<(), SandboxError> {
        let workspace = prepare_workspace(&self.workspace).await?;
        let labels = HashMap::from([
            (LABEL_SESSION.to_string(), self.session_id.clone()),
            (LABEL_INSTANCE.to_string(), self.instance_id.clone()),
        ]);
        create_hardened(
            &self.engine.docker,
            &self.settings,
            &self.name,
            labels,
            &workspace,
        )
        .await
        .map(|_| ())
    }

    async fn start(&self) -> Result<(), SandboxError> {
        // The bind mount fails to start if the workspace vanished meanwhile.
        prepare_workspace(&self.workspace).await?;
        self.engine.start(&self.name).await
    }

    /// Waits for a turn at the engine (see [`StartGate`]), telling the
    /// person when there is a queue.
    async fn start_turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        let gate = &self.engine.starts;
        if gate.busy() {
            let ahead = gate.queued();
            self.tell(
                LogLevel::Info,
                if ahead > 0 {
                    format!("starting your sandbox… ({ahead} ahead of you)")
                } else {
                    "starting your sandbox…".to_string()
                },
            );
        }
        gate.enter().await
    }

    /// Takes a container from the warm pool when this session's workspace
    /// was never used: its fresh workspace moves into the session's place
    /// and the container is renamed to the session's name. `false` when
    /// there is no pool, nothing in it, or the workspace is in use (then
    /// the caller creates a container as usual).
    async fn adopt_pooled(&self) -> bool {
        let Some(pool) = &self.pool else {
            return false;
        };
        let workspace = self.workspace.clone();
        if !tokio::task::spawn_blocking(move || workspace.is_fresh())
            .await
            .unwrap_or(false)
        {
            return false;
        }
        let Ok(Some(pooled)) = pool.send(TakePooled).await else {
            return false;
        };
        let (from, to) = (pooled.workspace.clone(), self.workspace.clone());
        let moved = tokio::task::spawn_blocking(move || from.move_to(&to)).await;
        let renamed = match moved {
            Ok(Ok(())) => self
                .engine
                .docker
                .rename_container(
                    &pooled.name,
                    RenameContainerOptions {
                        name: self.name.clone(),
                    },
                )
                .await
                .map_err(|e| e.to_string()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = renamed {
            log::info!(
                "sandbox {}: not adopting {} ({e})",
                self.session_id,
                pooled.name
            );
            actix::spawn(remove_pooled(self.engine.clone(), pooled));
            return false;
        }
        *self.adopted.borrow_mut() = Some(pooled.id);
        if let Some(channel) = pooled.channel.filter(|c| !c.is_lost()) {
            self.install(channel);
        }
        true
    }

    /// Remove the container, killing anything running in it.
    pub(super) async fn remove(&self) -> Result<(), SandboxError> {
        let mut state = self.state.lock().await;
        state.running = false;
        self.close_channel().await;
        if remove_by_name(&self.engine.docker, &self.name).await? {
            self.notice(LogLevel::Info, "container removed");
        }
        Ok(())
    }

    /// Restart the container, which ends every process in it: the last
    /// resort when its exec agent died, went silent, or could not end a
    /// call.
    async fn restart_container(&self) -> Result<(), SandboxError> {
        self.close_channel().await;
        self.engine
            .docker
            .restart_container(
                &self.name,
                Some(RestartContainerOptions {
                    t: Some(0),
                    ..Default::default()
                }),
            )
            .await
            .map_err(|e| container_error(&self.name, e))
    }

    /// Whether the container is surely not running (cheap: no wait for the
    /// lock, so "don't know" answers `false`).
    pub(super) fn surely_stopped(&self) -> bool {
        self.state.try_lock().is_ok_and(|state| !state.running)
    }

    /// Stop the container after `idle_for` without use, if `still_idle`
    /// holds once the lifecycle lock is taken (an exec may have started
    /// while waiting for it). The next exec starts it again.
    pub(super) async fn stop_idle(&self, idle_for: Duration, still_idle: impl Fn() -> bool) {
        let mut state = self.state.lock().await;
        if !state.running || !still_idle() {
            return;
        }
        state.running = false;
        self.close_channel().await;
        let stopped = self
            .engine
            .docker
            .stop_container(
                &self.name,
                Some(StopContainerOptions {
                    t: Some(STOP_GRACE_SECS),
                    ..Default::default()
                }),
            )
            .await;
        match stopped {
            Ok(()) => self.notice(
                LogLevel::Info,
                format!("container stopped after {} idle", human_duration(idle_for)),
            ),
            // Already stopped or gone: the next exec sorts it out.
            Err(e) if matches!(status_of(&e), Some(304) | Some(404)) => {}
            Err(e) => self.notice(
                LogLevel::Warn,
                format!("could not stop the idle container: {e}"),
            ),
        }
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

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
}
