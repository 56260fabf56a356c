//! Start-up and shutdown of a whole IronClaw server: data directory,
//! database and migrations, the first-start `admin`, the provider check,
//! the SessionSupervisor and the HTTP server. `main` and the integration
//! tests both start the server through [`start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_web::{middleware, web, App, HttpServer};

use crate::auth::{self, LoginLimiter};
use crate::config::Settings;
use crate::db::{queries, Db};
use crate::http::{self, AppState};
use crate::protocol::ApprovalMode;
use crate::quota::{self, QuotaMode};
use crate::sandbox::{DrainPool, Engine, Spare, WarmPool};
use crate::supervisor::{NodeInfo, SessionSupervisor, StopAll};
use crate::ws::SocketCounts;

/// A running server.
pub struct Running {
    /// Where it listens (the real port when configured with port 0).
    pub addr: SocketAddr,
    pub server: actix_web::dev::ServerHandle,
    pub supervisor: Addr<SessionSupervisor>,
    /// Started containers waiting for new sessions.
    pub pool: Addr<WarmPool>,
    pub db: Db,
    /// Resolves when the server has stopped.
    pub done: actix_web::dev::Server,
}

/// Bytes of a JSON request body; bodies are small commands, never files.
const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// How many more failed logins one client address may make than one
/// username: an office behind one address is several people.
const IP_FAILURE_FACTOR: u32 = 4;

/// Start everything. Must run inside an actix system.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let settings = Arc::new(settings);
    // Owner only, and tightened if an older version left them open: the
    // workspaces and the database are nobody else's business on this host.
    quota::private_dir(&settings.data.dir)?;
    quota::private_dir(&settings.workspaces_dir())?;
    quota::private_dir(&settings.data.dir.join("snapshots"))?;
    report_quota_mode(&settings);
    let db = Db::start(settings.database()?)?;
    let env_password = std::env::var("IRONCLAW_ADMIN_PASSWORD").ok();
    ensure_admin(&db, settings.approval.mode, env_password).await?;

    // The hash unknown names are checked against, made now rather than in
    // the first login's request.
    web::block(|| {
        auth::dummy_hash();
    })
    .await?;
    let instance_id = db.run(queries::instance_id).await?;
    let http_client = crate::provider::http_client(&settings.provider);
    report_provider(&http_client, &settings).await;
    let node = node_info(&settings)?;
    let spare = {
        let (me, ttl) = (
            node.node_id.clone(),
            Duration::from_secs(settings.cluster.lease_secs.max(1)),
        );
        let (sessions, pool) = db
            .run(move |c| crate::db::cluster::held_elsewhere(c, &me, ttl))
            .await?;
        Spare {
            sessions: sessions.into_iter().collect(),
            pool,
        }
    };
    let engine = start_engine(&settings, &instance_id, &spare).await?;
    let pool = WarmPool::new(engine.clone(), settings.clone(), instance_id.clone()).start();

    log::info!("node {} ({})", node.node_id, settings.database()?.kind());
    let node_id = node.node_id.clone();
    // Heartbeats, lease renewals and the relay's liveness checks on a
    // connection of their own.
    let beat_db = Db::pool(settings.database()?, 1);
    let supervisor = SessionSupervisor::new(
        db.clone(),
        settings.clone(),
        http_client.clone(),
        engine,
        instance_id,
        node,
    )
    .with_pool(pool.clone())
    .with_heartbeat_db(beat_db.clone())
    .start();
    let relay = match settings.database()? {
        crate::db::Database::Postgres(url) => Some(
            crate::relay::Relay::new(
                node_id.clone(),
                url,
                beat_db.clone(),
                supervisor.clone(),
                Duration::from_secs(settings.cluster.lease_secs.max(1)),
                settings.server.outbound_queue,
            )
            .start(),
        ),
        crate::db::Database::Sqlite(_) => None,
    };
    let state = web::Data::new(AppState {
        settings: settings.clone(),
        db: db.clone(),
        supervisor: supervisor.clone(),
        login_limiter: LoginLimiter::new(
            settings.server.login_max_failures,
            IP_FAILURE_FACTOR,
            Duration::from_secs(settings.server.login_window_secs),
        ),
        login_slots: tokio::sync::Semaphore::new(auth::MAX_CONCURRENT_HASHES),
        sockets: Arc::new(SocketCounts::default()),
        http: http_client,
        node_id,
        relay,
    });
    let node_header = state.node_id.clone();
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(http::json_config(JSON_BODY_LIMIT))
            .wrap(middleware::from_fn(http::origin::guard))
            // Which node answered (behind a load balancer, for people and
            // tests alike); the node id is a name, not a secret.
            .wrap(middleware::DefaultHeaders::new().add(("x-ironclaw-node", node_header.clone())))
            .wrap(middleware::from_fn(http::head_as_get))
            .wrap(middleware::Logger::new("%a \"%r\" %s %b %Dms").exclude("/api/health"))
            .configure(http::routes)
    })
    .shutdown_timeout(5)
    // Streamed deltas are small writes; Nagle would hold each burst back
    // for a delayed ACK (about 40 ms).
    .tcp_nodelay(true);
    if settings.server.workers > 0 {
        server = server.workers(settings.server.workers);
    }
    let server = server.bind((settings.server.host.as_str(), settings.server.port))?;
    let addr = server
        .addrs()
        .first()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("the server did not bind"))?;
    let done = server.run();
    log::info!("IronClaw listening on http://{addr}");
    Ok(Running {
        addr,
        server: done.handle(),
        supervisor,
        pool,
        db,
        done,
    })
}

impl Running {
    /// After the HTTP server has stopped (SIGTERM, SIGINT or a stop
    /// call): stop every live session and remove its container, so none
    /// is left running until the next start's reaper.
    pub async fn stop_sessions(&self) {
        let (sessions, pooled) =
            futures_util::join!(self.supervisor.send(StopAll), self.pool.send(DrainPool));
        match sessions {
            Ok(n) if n > 0 => log::info!("stopped {n} session container(s)"),
            Ok(_) => {}
            Err(e) => log::warn!("could not stop the session containers: {e}"),
        }
        match pooled {
            Ok(n) if n > 0 => log::info!("removed {n} warm pool container(s)"),
            Ok(_) => {}
            Err(e) => log::warn!("could not drain the warm pool: {e}"),
        }
    }
}

/// The first-start admin's password: `IRONCLAW_ADMIN_PASSWORD` when set
/// (refused when shorter than [`auth::MIN_PASSWORD_LEN`], the rule every
/// other password follows), else a random one to print once.
pub fn admin_password(from_env: Option<String>) -> anyhow::Result<(String, bool)> {
    match from_env {
        Some(p) if !p.is_empty() => {
            if p.chars().count() < auth::MIN_PASSWORD_LEN {
                anyhow::bail!(
                    "IRONCLAW_ADMIN_PASSWORD is shorter than {} characters; set a longer one, or unset it to get a random password",
                    auth::MIN_PASSWORD_LEN
                );
            }
            Ok((p, false))
        }
        _ => Ok((auth::random_password(), true)),
    }
}

/// First start with no users: create `admin` with `IRONCLAW_ADMIN_PASSWORD`
/// or a random password printed once, and the configured `approval.mode`
/// (an operator who asks for `always` gets no weaker admin).
async fn ensure_admin(db: &Db, mode: ApprovalMode, from_env: Option<String>) -> anyhow::Result<()> {
    if db.run(queries::count_users).await? > 0 {
        return Ok(());
    }
    let (password, generated) = admin_password(from_env)?;
    let hash = web::block(move || auth::hash_password(&password).map(|h| (h, password))).await??;
    let (hash, password) = hash;
    db.run(move |c| queries::create_user(c, "admin", &hash, mode))
        .await?;
    if generated {
        log::warn!(
            "created user `admin` with password `{password}` (shown once; change it with `ironclaw user passwd admin`)"
        );
    } else {
        log::info!("created user `admin` with the password from IRONCLAW_ADMIN_PASSWORD");
    }
    Ok(())
}

/// Say how `files.quota_mb` is enforced; loudly when the agent's writes are
/// not limited (see [`crate::quota`]).
fn report_quota_mode(settings: &Settings) {
    match QuotaMode::of_process() {
        QuotaMode::Mounted => log::info!(
            "workspaces are quota filesystems of {} MiB each (nosuid,nodev)",
            settings.files.quota_mb
        ),
        QuotaMode::BestEffort => log::error!(
            "IronClaw is not running as root, so workspaces cannot be mounted as quota \
             filesystems: files.quota_mb ({} MiB) holds for uploads only, the agent can fill \
             the host's disk, and the workspace is not mounted nosuid. Run the server as root \
             for these guarantees.",
            settings.files.quota_mb
        ),
    }
}

/// Log whether the model server is usable, and what to do when it is not.
/// Never fatal: the server keeps serving and the page shows the problem.
async fn report_provider(client: &reqwest::Client, settings: &Settings) {
    let h = crate::provider::health(client, &settings.provider).await;
    if h.reachable && h.model_available {
        log::info!(
            "provider {} at {} is ready with model {}",
            h.kind,
            h.url,
            h.model
        );
    } else if let Some(hint) = h.hint {
        log::warn!("provider not ready: {hint}");
    }
}

/// Connect to Docker, check the sandbox image and remove this
/// installation's leftover containers. A missing engine or image is logged
/// with what to do, not fatal: chat works, commands report the problem.
/// This node: `cluster.node_id`, or one generated on first start and kept
/// in `<data.dir>/nodes/<host>-<port>.id` (nodes share `data.dir`, so the
/// file is per host and port).
fn node_info(settings: &Settings) -> anyhow::Result<NodeInfo> {
    let node_id = if settings.cluster.node_id.trim().is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| {
                !h.is_empty()
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            })
            .unwrap_or_else(|| "localhost".into());
        let dir = settings.data.dir.join("nodes");
        quota::private_dir(&dir)?;
        let file = dir.join(format!("{host}-{}.id", settings.server.port));
        match std::fs::read_to_string(&file) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                let id = format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
                std::fs::write(&file, format!("{id}\n"))?;
                id
            }
        }
    } else {
        settings.cluster.node_id.trim().to_string()
    };
    let advertise_url = if settings.cluster.advertise_url.trim().is_empty() {
        format!("http://{}:{}", settings.server.host, settings.server.port)
    } else {
        settings.cluster.advertise_url.trim().to_string()
    };
    Ok(NodeInfo {
        node_id,
        advertise_url,
        started_at: queries::now(),
    })
}

async fn start_engine(
    settings: &Settings,
    instance_id: &str,
    spare: &Spare,
) -> anyhow::Result<Engine> {
    let engine = Engine::connect_or_wait()
        .await?
        .with_start_concurrency(settings.sandbox.start_concurrency);
    let state = engine.status(&settings.sandbox.image).await;
    if state.is_ok() {
        match engine.reap_orphans(instance_id, spare).await {
            Ok(n) if n > 0 => log::info!("removed {n} leftover sandbox container(s)"),
            Ok(_) => {}
            Err(e) => log::warn!("could not remove leftover containers: {e}"),
        }
    } else {
        log::warn!("sandbox not ready: {}", state.summary);
    }
    Ok(engine)
}
