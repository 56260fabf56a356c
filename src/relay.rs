//! The Relay actor: a session's sockets on a node that does not run the
//! session (DESIGN.md §7). Events and client frames go between nodes
//! through PostgreSQL (`pg_notify` / `LISTEN`), one channel per node; no
//! broker of our own.
//!
//! - On the node a socket is on (not the session's owner), the socket
//!   opens a relay route ([`Open`]): its frames go to the owner node
//!   ([`Forward`]), and what the owner sends that socket comes back to it.
//! - On the owner, each remote socket is a [`HostedTab`] attached to the
//!   session's agent like a local tab: every frame the agent sends it
//!   (first frames, history, each event, deltas included) goes to the
//!   socket's node in the agent's order, over one publishing connection.
//! - A REST route on a node that does not run the session tells the owner
//!   what it changed ([`TellOwner`]: the session's settings, an upload, a
//!   deletion), and a revert is asked of the owner and answered back
//!   ([`RevertElsewhere`]).
//! - A remote socket is closed with "reconnect" when its owner's lease
//!   lapses (the owner died; a reconnect lands where the session is taken
//!   over), and a hosted tab is detached when its node stops beating.
//!
//! The transport (channels, pieces, the listening thread) is `db::bus`.

use std::collections::HashMap;
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use actix::prelude::*;
use serde::{Deserialize, Serialize};

use crate::agent::{AgentActor, Attach, Detach, FilesUploaded, Inbound, Revert, SessionChanged};
use crate::db::bus::{self, channel};
use crate::db::cluster;
use crate::db::queries::UserId;
use crate::db::Db;
use crate::protocol::{CallId, ClientMessage, ErrorCode, RevertOutcome, SessionId};
use crate::supervisor::{EndSession, Join, Leave, Live, Lookup, SessionSupervisor};
use crate::undo::UndoError;
use crate::ws::{Disconnect, Outbound};

/// Socket ids of hosted tabs start here, apart from local sockets' ids.
const HOSTED_IDS: u64 = 1 << 48;

/// What goes between nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum Envelope {
    /// A socket on `from` attaches to `session` (to its owner).
    Attach {
        from: String,
        socket: u64,
        session: SessionId,
        user: i32,
        username: String,
    },
    /// A frame from that socket.
    Frame {
        from: String,
        socket: u64,
        message: ClientMessage,
    },
    /// That socket closed.
    Detach { from: String, socket: u64 },
    /// A frame for a socket on the receiving node, as the agent wrote it.
    Out { socket: u64, frame: String },
    /// Close that socket with a final error.
    Close {
        socket: u64,
        code: String,
        message: String,
    },
    /// A REST route on another node changed the session.
    Tell { session: SessionId, note: Note },
    /// Put the workspace back before `call_id` (a revert asked on `from`).
    Ask {
        from: String,
        req: u64,
        session: SessionId,
        user: i32,
        call_id: CallId,
        by: String,
    },
    /// The answer to an `Ask`: the outcome, or an error's code and message.
    Answer {
        req: u64,
        result: Result<RevertOutcome, (String, String)>,
    },
}

/// What a REST route on another node did to a session.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "n", rename_all = "snake_case")]
pub enum Note {
    /// Its row changed (title, model, approval mode).
    Changed,
    /// Files were uploaded into its workspace.
    Uploaded { paths: Vec<String> },
    /// It is being deleted: stop it and remove its container.
    End,
}

/// A socket of this node whose session runs on another node.
struct Remote {
    session: SessionId,
    owner_node: String,
    outbound: Recipient<Outbound>,
    control: Recipient<Disconnect>,
}

/// A socket of another node attached to a session this node runs.
struct Hosted {
    session: SessionId,
    agent: Addr<AgentActor>,
    local_id: u64,
    tab: Addr<HostedTab>,
}

pub struct Relay {
    node_id: String,
    db: Db,
    supervisor: Addr<SessionSupervisor>,
    url: String,
    lease: Duration,
    outbound_queue: usize,
    publish: Option<std_mpsc::Sender<(String, String)>>,
    remote: HashMap<u64, Remote>,
    hosted: HashMap<(String, u64), Hosted>,
    next_hosted: u64,
    /// Reverts asked of other nodes, by request id.
    asked: HashMap<u64, tokio::sync::oneshot::Sender<Result<RevertOutcome, UndoError>>>,
    next_ask: u64,
}

impl Relay {
    pub fn new(
        node_id: String,
        url: String,
        db: Db,
        supervisor: Addr<SessionSupervisor>,
        lease: Duration,
        outbound_queue: usize,
    ) -> Self {
        Relay {
            node_id,
            db,
            supervisor,
            url,
            lease,
            outbound_queue,
            publish: None,
            remote: HashMap::new(),
            hosted: HashMap::new(),
            next_hosted: HOSTED_IDS,
            asked: HashMap::new(),
            next_ask: 1,
        }
    }

    fn send(&self, to_node: &str, envelope: &Envelope) {
        let Some(publish) = &self.publish else {
            return;
        };
        let Ok(json) = serde_json::to_string(envelope) else {
            return;
        };
        let _ = publish.send((channel(to_node), json));
    }

    /// Keep the relay honest about who is alive: remote sockets whose
    /// owner's lease lapsed reconnect; hosted tabs of silent nodes go.
    fn check(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let lease = self.lease;
        let sessions: Vec<(u64, String, String)> = self
            .remote
            .iter()
            .map(|(id, r)| (*id, r.session.to_string(), r.owner_node.clone()))
            .collect();
        let nodes: Vec<String> = self.hosted.keys().map(|(n, _)| n.clone()).collect();
        let work = async move {
            db.run(move |c| {
                let now = chrono::Utc::now();
                let mut lapsed = Vec::new();
                for (socket, session, owner) in sessions {
                    let held = cluster::lease(c, &session)?;
                    let alive = held.is_some_and(|(node, until)| {
                        node == owner
                            && chrono::DateTime::parse_from_rfc3339(&until).is_ok_and(|t| t > now)
                    });
                    if !alive {
                        lapsed.push(socket);
                    }
                }
                let since = now - chrono::Duration::from_std(lease * 2).unwrap_or_default();
                let beating: Vec<String> = cluster::nodes(c)?
                    .into_iter()
                    .filter(|n| {
                        chrono::DateTime::parse_from_rfc3339(&n.heartbeat_at)
                            .is_ok_and(|t| t > since)
                    })
                    .map(|n| n.node_id)
                    .collect();
                let silent: Vec<String> =
                    nodes.into_iter().filter(|n| !beating.contains(n)).collect();
                Ok((lapsed, silent))
            })
            .await
        };
        ctx.spawn(work.into_actor(self).map(|res, act, _| {
            let Ok((lapsed, silent)) = res else { return };
            for socket in lapsed {
                if let Some(r) = act.remote.remove(&socket) {
                    log::info!(
                        "session {}: its node {} is gone; the socket reconnects",
                        r.session,
                        r.owner_node
                    );
                    r.control.do_send(Disconnect {
                        code: ErrorCode::ServerStopping,
                        message: "The node running this session stopped; reconnect to carry on."
                            .into(),
                    });
                }
            }
            let gone: Vec<(String, u64)> = act
                .hosted
                .keys()
                .filter(|(n, _)| silent.contains(n))
                .cloned()
                .collect();
            for key in gone {
                act.detach_hosted(&key);
            }
        }));
    }

    fn detach_hosted(&mut self, key: &(String, u64)) {
        if let Some(h) = self.hosted.remove(key) {
            h.agent.do_send(Detach {
                socket_id: h.local_id,
            });
            self.supervisor.do_send(Leave {
                session_id: h.session,
            });
            h.tab.do_send(StopTab);
        }
    }

    fn incoming(&mut self, envelope: Envelope, ctx: &mut Context<Self>) {
        match envelope {
            Envelope::Attach {
                from,
                socket,
                session,
                user,
                username,
            } => {
                log::info!("session {session}: socket {socket} of node {from} attaches here");
                let join = self.supervisor.send(Join {
                    session_id: session.clone(),
                    owner: UserId(user),
                });
                ctx.spawn(join.into_actor(self).map(move |res, act, ctx| {
                    let agent = match res {
                        Ok(Ok(agent)) => agent,
                        other => {
                            let message = match other {
                                Ok(Err(e)) => {
                                    format!("This session moved to node {}; reconnect.", e.node_id)
                                }
                                _ => "The server is shutting down; reconnect in a moment.".into(),
                            };
                            log::warn!("session {session}: socket {socket} of node {from} refused: {message}");
                            act.send(
                                &from,
                                &Envelope::Close {
                                    socket,
                                    code: ErrorCode::ServerStopping.as_str().into(),
                                    message,
                                },
                            );
                            return;
                        }
                    };
                    let local_id = act.next_hosted;
                    act.next_hosted += 1;
                    let tab = HostedTab {
                        node: from.clone(),
                        socket,
                        relay: ctx.address(),
                        capacity: act.outbound_queue,
                    }
                    .start();
                    agent.do_send(Attach {
                        socket_id: local_id,
                        username,
                        outbound: tab.clone().recipient(),
                        control: tab.clone().recipient(),
                    });
                    act.hosted.insert(
                        (from, socket),
                        Hosted {
                            session,
                            agent,
                            local_id,
                            tab,
                        },
                    );
                }));
            }
            Envelope::Frame {
                from,
                socket,
                message,
            } => {
                if let Some(h) = self.hosted.get(&(from, socket)) {
                    h.agent.do_send(Inbound {
                        socket_id: h.local_id,
                        message,
                    });
                }
            }
            Envelope::Detach { from, socket } => self.detach_hosted(&(from, socket)),
            Envelope::Out { socket, frame } => {
                if let Some(r) = self.remote.get(&socket) {
                    if r.outbound.try_send(Outbound(frame.into())).is_err() {
                        r.control.do_send(Disconnect {
                            code: ErrorCode::SlowClient,
                            message: "This tab fell too far behind and was disconnected; it reconnects and catches up.".into(),
                        });
                    }
                }
            }
            Envelope::Tell { session, note } => {
                let (supervisor, db) = (self.supervisor.clone(), self.db.clone());
                actix::spawn(async move {
                    match note {
                        Note::End => {
                            let _ = supervisor
                                .send(EndSession {
                                    session_id: session,
                                })
                                .await;
                        }
                        Note::Changed | Note::Uploaded { .. } => {
                            let Ok(Some(agent)) = supervisor
                                .send(Live {
                                    session_id: session.clone(),
                                })
                                .await
                            else {
                                return;
                            };
                            if let Note::Uploaded { paths } = note {
                                agent.do_send(FilesUploaded { paths });
                                return;
                            }
                            let id = session.to_string();
                            if let Ok(Some(row)) = db
                                .run(move |c| crate::db::queries::load_session(c, &id))
                                .await
                            {
                                agent.do_send(SessionChanged { session: row });
                            }
                        }
                    }
                });
            }
            Envelope::Ask {
                from,
                req,
                session,
                user,
                call_id,
                by,
            } => {
                let supervisor = self.supervisor.clone();
                let work = async move {
                    let agent = match supervisor
                        .send(Lookup {
                            session_id: session,
                            owner: UserId(user),
                        })
                        .await
                    {
                        Ok(Ok(agent)) => agent,
                        Ok(Err(e)) => return Err(UndoError::Elsewhere(e.node_id)),
                        Err(_) => return Err(UndoError::Stopped),
                    };
                    agent
                        .send(Revert { call_id, by })
                        .await
                        .map_err(|_| UndoError::Stopped)?
                };
                ctx.spawn(work.into_actor(self).map(move |result, act, _| {
                    let result = result.map_err(|e| (e.code().as_str().to_string(), e.to_string()));
                    act.send(&from, &Envelope::Answer { req, result });
                }));
            }
            Envelope::Answer { req, result } => {
                if let Some(reply) = self.asked.remove(&req) {
                    let _ = reply.send(result.map_err(|(code, message)| UndoError::Remote {
                        code: ErrorCode::parse(&code).unwrap_or(ErrorCode::Unavailable),
                        message,
                    }));
                }
            }
            Envelope::Close {
                socket,
                code,
                message,
            } => {
                log::info!("socket {socket}: closed by the session's node: {message}");
                if let Some(r) = self.remote.remove(&socket) {
                    r.control.do_send(Disconnect {
                        code: ErrorCode::parse(&code).unwrap_or(ErrorCode::ServerStopping),
                        message,
                    });
                }
            }
        }
    }
}

impl Actor for Relay {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.publish = Some(bus::publisher_for(self.url.clone()));
        let addr = ctx.address();
        bus::listen(self.url.clone(), channel(&self.node_id), move |json| {
            if !addr.connected() {
                return false;
            }
            match serde_json::from_str::<Envelope>(&json) {
                Ok(env) => addr.do_send(Incoming(env)),
                Err(e) => log::warn!("relay: a message this node does not understand: {e}"),
            }
            true
        });
        let every = (self.lease / 3).max(Duration::from_millis(300));
        ctx.run_interval(every, |act, ctx| act.check(ctx));
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Incoming(Envelope);

impl Handler<Incoming> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Incoming, ctx: &mut Context<Self>) {
        self.incoming(msg.0, ctx);
    }
}

/// A socket of this node attaches to a session served by `owner_node`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Open {
    pub socket_id: u64,
    pub session_id: SessionId,
    pub owner_node: String,
    pub user: UserId,
    pub username: String,
    pub outbound: Recipient<Outbound>,
    pub control: Recipient<Disconnect>,
}

impl Handler<Open> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Open, _: &mut Context<Self>) {
        log::info!(
            "session {}: socket {} relayed to node {}",
            msg.session_id,
            msg.socket_id,
            msg.owner_node
        );
        self.send(
            &msg.owner_node,
            &Envelope::Attach {
                from: self.node_id.clone(),
                socket: msg.socket_id,
                session: msg.session_id.clone(),
                user: msg.user.0,
                username: msg.username,
            },
        );
        self.remote.insert(
            msg.socket_id,
            Remote {
                session: msg.session_id,
                owner_node: msg.owner_node,
                outbound: msg.outbound,
                control: msg.control,
            },
        );
    }
}

/// A frame from a relayed socket of this node.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Forward {
    pub socket_id: u64,
    pub message: ClientMessage,
}

impl Handler<Forward> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Forward, _: &mut Context<Self>) {
        if let Some(r) = self.remote.get(&msg.socket_id) {
            let owner = r.owner_node.clone();
            self.send(
                &owner,
                &Envelope::Frame {
                    from: self.node_id.clone(),
                    socket: msg.socket_id,
                    message: msg.message,
                },
            );
        }
    }
}

/// A relayed socket of this node closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Gone {
    pub socket_id: u64,
}

impl Handler<Gone> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Gone, _: &mut Context<Self>) {
        if let Some(r) = self.remote.remove(&msg.socket_id) {
            self.send(
                &r.owner_node,
                &Envelope::Detach {
                    from: self.node_id.clone(),
                    socket: msg.socket_id,
                },
            );
        }
    }
}

/// A REST route changed a session that may run on another node: tell that
/// node (nothing when the session runs here or nowhere).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TellOwner {
    pub session_id: SessionId,
    pub note: Note,
}

impl Handler<TellOwner> for Relay {
    type Result = ();

    fn handle(&mut self, msg: TellOwner, ctx: &mut Context<Self>) {
        let (db, id) = (self.db.clone(), msg.session_id.to_string());
        let holder = async move { db.run(move |c| cluster::lease(c, &id)).await };
        ctx.spawn(holder.into_actor(self).map(move |held, act, _| {
            let now = chrono::Utc::now();
            let Ok(Some((node, until))) = held else {
                return;
            };
            let live = chrono::DateTime::parse_from_rfc3339(&until).is_ok_and(|t| t > now);
            if live && node != act.node_id {
                act.send(
                    &node,
                    &Envelope::Tell {
                        session: msg.session_id,
                        note: msg.note,
                    },
                );
            }
        }));
    }
}

/// Undo asked on this node for a session another node runs.
#[derive(Message)]
#[rtype(result = "Result<RevertOutcome, UndoError>")]
pub struct RevertElsewhere {
    pub owner_node: String,
    pub session_id: SessionId,
    pub user: UserId,
    pub call_id: CallId,
    pub by: String,
}

/// How long a revert asked of another node may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(120);

impl Handler<RevertElsewhere> for Relay {
    type Result = ResponseFuture<Result<RevertOutcome, UndoError>>;

    fn handle(&mut self, msg: RevertElsewhere, _: &mut Context<Self>) -> Self::Result {
        let req = self.next_ask;
        self.next_ask += 1;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.asked.insert(req, tx);
        self.send(
            &msg.owner_node,
            &Envelope::Ask {
                from: self.node_id.clone(),
                req,
                session: msg.session_id,
                user: msg.user.0,
                call_id: msg.call_id,
                by: msg.by,
            },
        );
        let owner = msg.owner_node;
        Box::pin(async move {
            match tokio::time::timeout(ASK_TIMEOUT, rx).await {
                Ok(Ok(result)) => result,
                _ => Err(UndoError::Elsewhere(owner)),
            }
        })
    }
}

/// One remote socket as the session's agent sees it: a tab whose frames
/// go to the socket's node, in order.
struct HostedTab {
    node: String,
    socket: u64,
    relay: Addr<Relay>,
    capacity: usize,
}

impl Actor for HostedTab {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The agent `try_send`s into this mailbox, like a socket's.
        ctx.set_mailbox_capacity(self.capacity);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Publish {
    node: String,
    envelope: Envelope,
}

impl Handler<Publish> for Relay {
    type Result = ();

    fn handle(&mut self, msg: Publish, _: &mut Context<Self>) {
        self.send(&msg.node, &msg.envelope);
    }
}

impl Handler<Outbound> for HostedTab {
    type Result = ();

    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        self.relay.do_send(Publish {
            node: self.node.clone(),
            envelope: Envelope::Out {
                socket: self.socket,
                frame: msg.0.to_string(),
            },
        });
    }
}

impl Handler<Disconnect> for HostedTab {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Context<Self>) {
        self.relay.do_send(Publish {
            node: self.node.clone(),
            envelope: Envelope::Close {
                socket: self.socket,
                code: msg.code.as_str().into(),
                message: msg.message,
            },
        });
        ctx.stop();
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct StopTab;

impl Handler<StopTab> for HostedTab {
    type Result = ();

    fn handle(&mut self, _: StopTab, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
