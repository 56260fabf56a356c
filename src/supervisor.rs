//! The SessionSupervisor: the registry `session id -> actor set`. It starts
//! a session's actors on first use (under `actix::Supervisor`, so an actor
//! that stops on an error is restarted with the same address and reloads
//! from the database), counts the sockets attached to each session, and
//! tears a set down once the last socket has been gone for a grace period,
//! or at once when the session is deleted.
//!
//! Messages: [`Join`], [`Leave`], [`Lookup`], [`EndSession`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::agent::{AgentActor, Peers, Shutdown};
use crate::approval::ApprovalActor;
use crate::config::Settings;
use crate::db::Db;
use crate::provider::ProviderActor;
use crate::sandbox::SandboxActor;

/// The actors serving one live session.
struct SessionSet {
    agent: Addr<AgentActor>,
    /// Sockets attached right now.
    sockets: usize,
    /// Scheduled teardown while no socket is attached.
    teardown: Option<SpawnHandle>,
}

pub struct SessionSupervisor {
    db: Db,
    settings: Arc<Settings>,
    http: reqwest::Client,
    docker: bollard::Docker,
    /// Labels this installation's containers.
    instance_id: String,
    sessions: HashMap<String, SessionSet>,
}

impl SessionSupervisor {
    pub fn new(
        db: Db,
        settings: Arc<Settings>,
        http: reqwest::Client,
        docker: bollard::Docker,
        instance_id: String,
    ) -> Self {
        SessionSupervisor {
            db,
            settings,
            http,
            docker,
            instance_id,
            sessions: HashMap::new(),
        }
    }

    /// The session's set, started if needed. The caller has checked that
    /// the session exists and belongs to the requesting user.
    fn ensure(&mut self, session_id: &str) -> &mut SessionSet {
        if !self.sessions.contains_key(session_id) {
            let provider_settings = self.settings.provider.clone();
            let http = self.http.clone();
            let provider = actix::Supervisor::start(move |_| {
                ProviderActor::new(http.clone(), provider_settings.clone())
            });
            let (id, db, settings) = (
                session_id.to_string(),
                self.db.clone(),
                self.settings.clone(),
            );
            let timeout = Duration::from_secs(self.settings.approval.timeout_secs);
            let approval = actix::Supervisor::start(move |_| ApprovalActor::new(timeout));
            let workspace = self.settings.workspaces_dir().join(session_id);
            let (docker, sandbox_settings, instance) = (
                self.docker.clone(),
                self.settings.sandbox.clone(),
                self.instance_id.clone(),
            );
            let agent = actix::Supervisor::start(move |ctx: &mut Context<AgentActor>| {
                let sandbox = SandboxActor::new(
                    docker.clone(),
                    sandbox_settings.clone(),
                    id.clone(),
                    instance.clone(),
                    workspace.clone(),
                    ctx.address().recipient(),
                )
                .start();
                let peers = Peers {
                    complete: provider.clone().recipient(),
                    cancel_completion: provider.clone().recipient(),
                    review: approval.clone().recipient(),
                    decide: approval.clone().recipient(),
                    withdraw: approval.clone().recipient(),
                    exec: sandbox.clone().recipient(),
                    cancel_exec: sandbox.clone().recipient(),
                    remove_container: sandbox.recipient(),
                };
                AgentActor::new(id.clone(), db.clone(), settings.clone(), peers)
            });
            log::info!("session {session_id}: actors started");
            self.sessions.insert(
                session_id.to_string(),
                SessionSet {
                    agent,
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
    fn schedule_idle_teardown(&mut self, session_id: &str, ctx: &mut Context<Self>) {
        let grace = Duration::from_secs(self.settings.server.session_grace_secs);
        let Some(set) = self.sessions.get_mut(session_id) else {
            return;
        };
        if set.sockets > 0 || set.teardown.is_some() {
            return;
        }
        let id = session_id.to_string();
        set.teardown = Some(ctx.run_later(grace, move |act, _| {
            if act.sessions.get(&id).is_some_and(|s| s.sockets == 0) {
                act.stop_set(&id, "The session was idle.");
            }
        }));
    }

    fn stop_set(&mut self, session_id: &str, reason: &str) {
        if let Some(set) = self.sessions.remove(session_id) {
            set.agent.do_send(Shutdown {
                reason: reason.to_string(),
            });
            log::info!("session {session_id}: actors stopped");
        }
    }
}

impl Supervised for SessionSupervisor {}

impl Actor for SessionSupervisor {
    type Context = Context<Self>;
}

/// A socket attaches to a session; answers the session's agent.
#[derive(Message)]
#[rtype(result = "Addr<AgentActor>")]
pub struct Join {
    pub session_id: String,
}

impl Handler<Join> for SessionSupervisor {
    type Result = MessageResult<Join>;

    fn handle(&mut self, msg: Join, ctx: &mut Context<Self>) -> Self::Result {
        let set = self.ensure(&msg.session_id);
        set.sockets += 1;
        if let Some(handle) = set.teardown.take() {
            ctx.cancel_future(handle);
        }
        MessageResult(set.agent.clone())
    }
}

/// A socket detached from a session.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    pub session_id: String,
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
/// the live session something).
#[derive(Message)]
#[rtype(result = "Addr<AgentActor>")]
pub struct Lookup {
    pub session_id: String,
}

impl Handler<Lookup> for SessionSupervisor {
    type Result = MessageResult<Lookup>;

    fn handle(&mut self, msg: Lookup, ctx: &mut Context<Self>) -> Self::Result {
        let agent = self.ensure(&msg.session_id).agent.clone();
        // A set started for REST alone is torn down like an idle one.
        self.schedule_idle_teardown(&msg.session_id, ctx);
        MessageResult(agent)
    }
}

/// The agent of a session if it is live, without starting it.
#[derive(Message)]
#[rtype(result = "Option<Addr<AgentActor>>")]
pub struct Live {
    pub session_id: String,
}

impl Handler<Live> for SessionSupervisor {
    type Result = MessageResult<Live>;

    fn handle(&mut self, msg: Live, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.sessions.get(&msg.session_id).map(|s| s.agent.clone()))
    }
}

/// The session was deleted: stop its actors now and close its sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct EndSession {
    pub session_id: String,
}

impl Handler<EndSession> for SessionSupervisor {
    type Result = ();

    fn handle(&mut self, msg: EndSession, _: &mut Context<Self>) {
        self.stop_set(&msg.session_id, "This session was deleted.");
    }
}
