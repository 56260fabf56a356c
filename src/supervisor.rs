//! The SessionSupervisor: the registry `session id -> actor set`. It starts
//! a session's actors on first use (under `actix::Supervisor`, so an actor
//! that stops on an error is restarted with the same address and reloads
//! from the database), counts the sockets attached to each session, and
//! tears a set down once the last socket has been gone for a grace period,
//! or at once when the session is deleted.
//!
//! It owns each set whole (agent, provider, approval, sandbox), so a
//! session's container is removed in one place: here, through the set's
//! sandbox actor, or by name when no set is live. It also answers for the
//! Docker engine ([`EngineStatus`]); nothing outside the sandbox module
//! holds a Docker client.
//!
//! A session's actors run on one node at a time: before starting a set the
//! supervisor takes the session's lease in the database (`db::cluster`),
//! renews its leases with the node's heartbeat, gives a lease back when its
//! set stops, and stops a set whose lease another node has taken over. A
//! session whose lease another live node holds is answered [`Elsewhere`].
//! On one machine the node is alone and every lease is its own.
//!
//! Messages: [`Join`], [`Leave`], [`Lookup`], [`Live`], [`EndSession`],
//! [`StopAll`], [`EngineStatus`]; and [`ClaimContainer`] from the
//! sandboxes, which keeps each user under `limits.containers`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::agent::{AgentActor, Peers, Shutdown};
use crate::approval::ApprovalActor;
use crate::config::Settings;
use crate::db::cluster::{self, Lease};
use crate::db::queries::UserId;
use crate::db::Db;
use crate::protocol::SessionId;
use crate::provider::ProviderActor;
use crate::quota::WorkspaceVolume;
use crate::sandbox::{
    ClaimContainer, ContainerUse, Engine, EngineState, RemoveContainer, SandboxActor, SandboxError,
    StopIfIdle, WarmContainer, WarmPool,
};

/// The actors serving one live session.
struct SessionSet {
    agent: Addr<AgentActor>,
    /// Held so the set lives as long as its registry entry, not only as
    /// long as the agent holds them.
    _provider: Addr<ProviderActor>,
    _approval: Addr<ApprovalActor>,
    /// The session's container; removed through this actor when the set
    /// stops.
    sandbox: Addr<SandboxActor>,
    /// The user the session belongs to, for their `limits.containers`.
    owner: UserId,
    /// Sockets attached right now.
    sockets: usize,
    /// Scheduled teardown while no socket is attached.
    teardown: Option<SpawnHandle>,
}

pub struct SessionSupervisor {
    db: Db,
    settings: Arc<Settings>,
    http: reqwest::Client,
    /// Docker, for the sandboxes and for removing containers by name.
    engine: Engine,
    /// Labels this installation's containers.
    instance_id: String,
    sessions: HashMap<SessionId, SessionSet>,
    /// Container claims being decided, per user: counted as running, so
    /// claims that arrive together cannot all pass `limits.containers`.
    claiming: HashMap<UserId, usize>,
    /// Where new sessions' sandboxes take ready containers from.
    pool: Option<Addr<WarmPool>>,
    node: NodeInfo,
    /// The heartbeat's own connection: beats are never queued behind the
    /// main pool's work.
    beat_db: Db,
}

/// This node, as the other nodes see it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node_id: String,
    pub advertise_url: String,
    /// RFC 3339.
    pub started_at: String,
}

/// The session's lease is held by another node, which runs its actors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this session is being served by node {node_id}")]
pub struct Elsewhere {
    pub node_id: String,
}

impl SessionSupervisor {
    pub fn new(
        db: Db,
        settings: Arc<Settings>,
        http: reqwest::Client,
        engine: Engine,
        instance_id: String,
        node: NodeInfo,
    ) -> Self {
        let beat_db = db.clone();
        SessionSupervisor {
            db,
            settings,
            http,
            engine,
            instance_id,
            sessions: HashMap::new(),
            claiming: HashMap::new(),
            pool: None,
            node,
            beat_db,
        }
    }

    /// Beat and renew over `db` (a pool of its own) instead of the main one.
    pub fn with_heartbeat_db(mut self, db: Db) -> Self {
        self.beat_db = db;
        self
    }

    fn lease_ttl(&self) -> Duration {
        Duration::from_secs(self.settings.cluster.lease_secs.max(1))
    }

    /// The session's set, started if needed once this node holds the
    /// session's lease; `Elsewhere` when another live node holds it.
    fn ensure_leased(
        &mut self,
        session_id: SessionId,
        owner: UserId,
    ) -> ResponseActFuture<Self, Result<Addr<AgentActor>, Elsewhere>> {
        if let Some(set) = self.sessions.get(&session_id) {
            return Box::pin(fut::ready(Ok(set.agent.clone())));
        }
        let db = self.db.clone();
        let node_id = self.node.node_id.clone();
        let ttl = self.lease_ttl();
        let id = session_id.to_string();
        let take = async move {
            db.run(move |c| cluster::acquire(c, &id, &node_id, ttl))
                .await
        };
        Box::pin(
            take.into_actor(self)
                .map(move |lease, act, ctx| match lease {
                    Ok(Lease::Held { node_id, .. }) => {
                        log::info!("session {session_id}: served by node {node_id}");
                        Err(Elsewhere { node_id })
                    }
                    Ok(Lease::Mine) => Ok(act.ensure(&session_id, owner, ctx).agent.clone()),
                    Err(e) => {
                        // Without the database the session cannot run anywhere;
                        // its actors report the storage error themselves.
                        log::error!("session {session_id}: cannot take its lease: {e}");
                        Ok(act.ensure(&session_id, owner, ctx).agent.clone())
                    }
                }),
        )
    }

    /// Beat this node's heartbeat and renew its sessions' leases; stop the
    /// sets whose lease another node has taken over meanwhile.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        let db = self.beat_db.clone();
        let node = self.node.clone();
        let ttl = self.lease_ttl();
        let live: Vec<String> = self.sessions.keys().map(|k| k.to_string()).collect();
        let work = async move {
            db.run(move |c| {
                cluster::heartbeat(c, &node.node_id, &node.advertise_url, &node.started_at)?;
                cluster::renew(c, &node.node_id, &live, ttl)
            })
            .await
        };
        ctx.spawn(work.into_actor(self).map(|lost, act, _| match lost {
            Ok(lost) => {
                for id in lost {
                    log::warn!(
                        "session {id}: its lease was taken over by another node; stopping here"
                    );
                    // The container stays for the new owner to adopt.
                    act.stop_set(
                        &SessionId::from(id),
                        "This session moved to another node; reconnect.",
                    );
                }
            }
            Err(e) => log::warn!("node {}: heartbeat failed: {e}", act.node.node_id),
        }));
    }

    /// New sessions' sandboxes take ready containers from `pool`.
    pub fn with_pool(mut self, pool: Addr<WarmPool>) -> Self {
        self.pool = Some(pool);
        self
    }

    /// The session's set, started if needed. The caller has checked that
    /// the session exists and belongs to the requesting user.
    fn ensure(
        &mut self,
        session_id: &SessionId,
        owner: UserId,
        ctx: &mut Context<Self>,
    ) -> &mut SessionSet {
        if !self.sessions.contains_key(session_id) {
            let provider_settings = self.settings.provider.clone();
            let http = self.http.clone();
            let provider = actix::Supervisor::start(move |_| {
                ProviderActor::new(http.clone(), provider_settings.clone())
            });
            let timeout = Duration::from_secs(self.settings.approval.timeout_secs);
            let workspace = self.settings.workspaces_dir().join(session_id);
            let approval =
                actix::Supervisor::start(move |_| ApprovalActor::new(timeout, workspace.clone()));
            // The agent sends tool calls to the sandbox and the sandbox
            // reports to the agent: the sandbox's context comes first so
            // each can be given the other's address. An agent restarted by
            // its supervisor keeps the same sandbox.
            let sandbox_ctx = Context::<SandboxActor>::new();
            let agent = {
                let (id, db, settings) =
                    (session_id.clone(), self.db.clone(), self.settings.clone());
                let (provider, approval, sandbox) =
                    (provider.clone(), approval.clone(), sandbox_ctx.address());
                let peers = Peers {
                    complete: provider.clone().recipient(),
                    cancel_completion: provider.recipient(),
                    review: approval.clone().recipient(),
                    decide: approval.clone().recipient(),
                    withdraw: approval.recipient(),
                    exec: sandbox.clone().recipient(),
                    cancel_exec: sandbox.recipient(),
                };
                actix::Supervisor::start(move |_| {
                    AgentActor::new(id.clone(), db.clone(), settings.clone(), peers.clone())
                })
            };
            let mut sandbox = SandboxActor::new(
                self.engine.clone(),
                self.settings.sandbox.clone(),
                session_id.to_string(),
                self.instance_id.clone(),
                WorkspaceVolume::of_session(&self.settings, session_id),
                agent.clone().recipient(),
            )
            .with_claims(ctx.address().recipient());
            if let Some(pool) = &self.pool {
                sandbox = sandbox.with_pool(pool.clone().recipient());
            }
            let sandbox = sandbox_ctx.run(sandbox);
            log::info!("session {session_id}: actors started");
            self.sessions.insert(
                session_id.clone(),
                SessionSet {
                    agent,
                    _provider: provider,
                    _approval: approval,
                    sandbox,
                    owner,
                    sockets: 0,
                    teardown: None,
                },
            );
        }
        // Just inserted if it was missing.
        #[allow(clippy::unwrap_used)]
        self.sessions.get_mut(session_id).unwrap()
    }

    /// With no socket attached, stop the session's set after the grace
    /// period unless a socket attaches meanwhile.
    fn schedule_idle_teardown(&mut self, session_id: &SessionId, ctx: &mut Context<Self>) {
        let grace = Duration::from_secs(self.settings.server.session_grace_secs);
        let Some(set) = self.sessions.get_mut(session_id) else {
            return;
        };
        if set.sockets > 0 || set.teardown.is_some() {
            return;
        }
        let id = session_id.clone();
        set.teardown = Some(ctx.run_later(grace, move |act, _| {
            if act.sessions.get(&id).is_some_and(|s| s.sockets == 0) {
                // The workspace stays; the next command makes a new container.
                if let Some(sandbox) = act.stop_set(&id, "The session was idle.") {
                    sandbox.do_send(RemoveContainer);
                }
            }
        }));
    }

    /// Take a live set out of the registry and shut its agent down (which
    /// closes the sockets). Answers the set's sandbox: the caller removes
    /// the container through it, waiting or not.
    fn stop_set(&mut self, session_id: &SessionId, reason: &str) -> Option<Addr<SandboxActor>> {
        let set = self.sessions.remove(session_id)?;
        set.agent.do_send(Shutdown {
            reason: reason.to_string(),
        });
        log::info!("session {session_id}: actors stopped");
        let (db, id, node) = (
            self.db.clone(),
            session_id.to_string(),
            self.node.node_id.clone(),
        );
        actix::spawn(async move {
            if let Err(e) = db.run(move |c| cluster::release(c, &id, &node)).await {
                log::warn!("cannot give back a session's lease: {e}");
            }
        });
        Some(set.sandbox)
    }
}

impl Supervised for SessionSupervisor {}

impl Actor for SessionSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.beat(ctx);
        // Three beats per lease: one lost beat does not lose a lease.
        let every = (self.lease_ttl() / 3).max(Duration::from_millis(300));
        ctx.run_interval(every, |act, ctx| act.beat(ctx));
    }
}

/// A socket attaches to a session; answers the session's agent, or that
/// another node serves it.
#[derive(Message)]
#[rtype(result = "Result<Addr<AgentActor>, Elsewhere>")]
pub struct Join {
    pub session_id: SessionId,
    /// The session's owner (the route checked it).
    pub owner: UserId,
}

impl Handler<Join> for SessionSupervisor {
    type Result = ResponseActFuture<Self, Result<Addr<AgentActor>, Elsewhere>>;

    fn handle(&mut self, msg: Join, _: &mut Context<Self>) -> Self::Result {
        let id = msg.session_id.clone();
        Box::pin(
            self.ensure_leased(msg.session_id, msg.owner)
                .map(move |res, act, ctx| {
                    let agent = res?;
                    if let Some(set) = act.sessions.get_mut(&id) {
                        set.sockets += 1;
                        if let Some(handle) = set.teardown.take() {
                            ctx.cancel_future(handle);
                        }
                        // Ready before the first command: the container
                        // starts while the person reads and types.
                        set.sandbox.do_send(WarmContainer);
                    }
                    Ok(agent)
                }),
        )
    }
}

/// A socket detached from a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session_id: SessionId,
}

impl Handler<Leave> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: Leave, ctx: &mut Context<Self>) {
        if let Some(set) = self.sessions.get_mut(&msg.session_id) {
            set.sockets = set.sockets.saturating_sub(1);
        }
        self.schedule_idle_teardown(&msg.session_id, ctx);
    }
}

/// The agent of a session, started if needed (REST routes that must tell
/// the live session something), or that another node serves it.
#[derive(Message)]
#[rtype(result = "Result<Addr<AgentActor>, Elsewhere>")]
pub struct Lookup {
    pub session_id: SessionId,
    /// The session's owner (the route checked it).
    pub owner: UserId,
}

impl Handler<Lookup> for SessionSupervisor {
    type Result = ResponseActFuture<Self, Result<Addr<AgentActor>, Elsewhere>>;

    fn handle(&mut self, msg: Lookup, _: &mut Context<Self>) -> Self::Result {
        let id = msg.session_id.clone();
        Box::pin(
            self.ensure_leased(msg.session_id, msg.owner)
                .map(move |res, act, ctx| {
                    // A set started for REST alone is torn down like an
                    // idle one.
                    act.schedule_idle_teardown(&id, ctx);
                    res
                }),
        )
    }
}

/// The agent of a session if it is live, without starting it.
#[derive(Message)]
#[rtype(result = "Option<Addr<AgentActor>>")]
pub struct Live {
    pub session_id: SessionId,
}

impl Handler<Live> for SessionSupervisor {
    type Result = MessageResult<Live>;

    fn handle(&mut self, msg: Live, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.sessions.get(&msg.session_id).map(|s| s.agent.clone()))
    }
}

/// The session was deleted: stop its actors now, close its sockets and
/// remove its container. Resolves once the container is gone.
#[derive(Message)]
#[rtype(result = "Result<(), SandboxError>")]
pub struct EndSession {
    pub session_id: SessionId,
}

impl Handler<EndSession> for SessionSupervisor {
    type Result = ResponseFuture<Result<(), SandboxError>>;

    /// The one place a deleted session's container is removed: through its
    /// sandbox actor when the set is live (that actor may be creating or
    /// using it), else by name (a container left behind by a crash).
    fn handle(&mut self, msg: EndSession, _: &mut Context<Self>) -> Self::Result {
        let sandbox = self.stop_set(&msg.session_id, "This session was deleted.");
        let engine = self.engine.clone();
        let instance_id = self.instance_id.clone();
        Box::pin(async move {
            if let Some(sandbox) = sandbox {
                match sandbox.send(RemoveContainer).await {
                    Ok(removed) => return removed,
                    // Stopped before it got the message: nothing was
                    // removed yet, so remove by name below.
                    Err(e) => log::warn!("session {}: sandbox gone ({e})", msg.session_id),
                }
            }
            engine
                .remove_session_container(&instance_id, &msg.session_id)
                .await
        })
    }
}

impl Handler<ClaimContainer> for SessionSupervisor {
    type Result = ResponseActFuture<Self, Result<(), SandboxError>>;

    /// Room for one more container of the session's owner: below
    /// `limits.containers` at once; at it, the owner's running containers
    /// with no exec in flight are stopped oldest-used first until there
    /// is; if none can be, the claim is refused with a clear error.
    fn handle(&mut self, msg: ClaimContainer, _: &mut Context<Self>) -> Self::Result {
        let limit = self.settings.limits.containers;
        let Some(owner) = self.sessions.get(&msg.session_id).map(|s| s.owner) else {
            return Box::pin(fut::ready(Ok(())));
        };
        let claiming = self.claiming.entry(owner).or_insert(0);
        let pending = *claiming;
        *claiming += 1;
        let others: Vec<(SessionId, Addr<SandboxActor>)> = self
            .sessions
            .iter()
            .filter(|(id, s)| s.owner == owner && **id != msg.session_id)
            .map(|(id, s)| (id.clone(), s.sandbox.clone()))
            .collect();
        let decide = async move {
            let mut running = Vec::new();
            for (id, sandbox) in others {
                if let Ok(Some(usage)) = sandbox.send(ContainerUse).await {
                    running.push((id, sandbox, usage));
                }
            }
            if running.len() + pending < limit {
                return Ok(());
            }
            if !msg.evict {
                return Err(SandboxError::LimitReached { limit });
            }
            running.sort_by_key(|(_, _, usage)| usage.last_used);
            let mut over = running.len() + pending + 1 - limit;
            for (id, sandbox, usage) in &running {
                if over == 0 {
                    break;
                }
                if usage.active == 0 && sandbox.send(StopIfIdle).await.unwrap_or(false) {
                    log::info!(
                        "session {id}: container stopped to make room for session {} (limits.containers = {limit})",
                        msg.session_id
                    );
                    over -= 1;
                }
            }
            if over == 0 {
                Ok(())
            } else {
                Err(SandboxError::LimitReached { limit })
            }
        };
        Box::pin(decide.into_actor(self).map(move |result, act, _| {
            if let Some(n) = act.claiming.get_mut(&owner) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    act.claiming.remove(&owner);
                }
            }
            result
        }))
    }
}

/// The server is shutting down: stop every live session and remove its
/// container. Answers how many sets were stopped, once their containers
/// are gone.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct StopAll;

impl Handler<StopAll> for SessionSupervisor {
    type Result = ResponseFuture<usize>;

    fn handle(&mut self, _: StopAll, _: &mut Context<Self>) -> Self::Result {
        let ids: Vec<SessionId> = self.sessions.keys().cloned().collect();
        let sandboxes: Vec<(SessionId, Addr<SandboxActor>)> = ids
            .into_iter()
            .filter_map(|id| {
                self.stop_set(&id, "The server is shutting down.")
                    .map(|s| (id, s))
            })
            .collect();
        let engine = self.engine.clone();
        let instance_id = self.instance_id.clone();
        Box::pin(async move {
            let n = sandboxes.len();
            let removals = sandboxes.into_iter().map(|(id, sandbox)| {
                let engine = engine.clone();
                let instance_id = instance_id.clone();
                async move {
                    let removed = match sandbox.send(RemoveContainer).await {
                        Ok(r) => r,
                        Err(_) => engine.remove_session_container(&instance_id, &id).await,
                    };
                    if let Err(e) = removed {
                        log::warn!("session {id}: container not removed at shutdown: {e}");
                    }
                }
            });
            futures_util::future::join_all(removals).await;
            n
        })
    }
}

/// Docker's state for the health route: whether the engine answers and has
/// the sandbox image.
#[derive(Message)]
#[rtype(result = "EngineState")]
pub struct EngineStatus;

impl Handler<EngineStatus> for SessionSupervisor {
    type Result = ResponseFuture<EngineState>;

    /// Asks the engine without blocking the registry.
    fn handle(&mut self, _: EngineStatus, _: &mut Context<Self>) -> Self::Result {
        let engine = self.engine.clone();
        let image = self.settings.sandbox.image.clone();
        Box::pin(async move { engine.status(&image).await })
    }
}
