//! The WsSession actor: one per browser WebSocket. It parses frames into
//! `ClientMessage`s for the session's AgentActor and writes the agent's
//! events out. The only module that touches actix-web-actors, so it can be
//! swapped for actix-ws later.
//!
//! Registration follows actix's chat example: the socket joins its session
//! in `started()`, leaves in `stopping()`, and keeps a heartbeat from the
//! named constants below.

use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use crate::agent::{AgentActor, Attach, Detach, Inbound};
use crate::db::queries::UserId;
use crate::protocol::{ClientMessage, ErrorCode, ServerEvent, SessionId};
use crate::relay::{Forward, Gone, Open, Relay};
use crate::supervisor::{Join, Leave, SessionSupervisor};

/// How often the server pings an idle socket.
const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(10);
/// A socket silent (no pong, no frame) this long is considered gone.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);
/// Upgrade `req` to a WebSocket served by `socket`. The route has already
/// authenticated the user and resolved the session, so a refused socket
/// never opens. The codec's frame limit is `server.max_frame_bytes`
/// itself: a larger frame is refused from its header, before any of it is
/// buffered, and the socket closes with 1009 (message too big).
pub fn start_socket(
    req: &HttpRequest,
    stream: web::Payload,
    socket: WsSession,
) -> Result<HttpResponse, actix_web::Error> {
    let limit = socket.max_frame_bytes;
    ws::WsResponseBuilder::new(socket, req, stream)
        .frame_size(limit)
        .start()
}

/// Open sockets per user, for `limits.sockets`. Shared by every worker.
#[derive(Default)]
pub struct SocketCounts {
    open: std::sync::Mutex<std::collections::HashMap<i32, usize>>,
}

impl SocketCounts {
    /// A permit for one more socket of `user`, or `None` at `limit`.
    pub fn acquire(self: &std::sync::Arc<Self>, user: i32, limit: usize) -> Option<SocketPermit> {
        let mut open = self.open.lock().ok()?;
        let count = open.entry(user).or_insert(0);
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(SocketPermit {
            counts: self.clone(),
            user,
        })
    }
}

/// One open socket counted against its user; released when the socket's
/// actor is dropped, however it ended.
pub struct SocketPermit {
    counts: std::sync::Arc<SocketCounts>,
    user: i32,
}

impl Drop for SocketPermit {
    fn drop(&mut self) {
        if let Ok(mut open) = self.counts.open.lock() {
            if let Some(count) = open.get_mut(&self.user) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.remove(&self.user);
                }
            }
        }
    }
}

/// A serialised event for this socket. Serialised once by the agent and
/// shared by all of a session's tabs.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Outbound(pub std::sync::Arc<str>);

/// Close this socket, with the reason as a final `error` event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub code: ErrorCode,
    pub message: String,
}

/// Where a socket's frames go.
enum Route {
    /// The session runs on this node.
    Local(Addr<AgentActor>),
    /// It runs on another node: through the relay.
    Relayed(Addr<Relay>),
}

impl Route {
    fn send(&self, socket_id: u64, message: ClientMessage) {
        match self {
            Route::Local(agent) => agent.do_send(Inbound { socket_id, message }),
            Route::Relayed(relay) => relay.do_send(Forward { socket_id, message }),
        }
    }
}

pub struct WsSession {
    /// Unique per socket, for the agent's fan-out list.
    socket_id: u64,
    session_id: SessionId,
    username: String,
    /// The logged-in user's id (the session's owner).
    owner: UserId,
    supervisor: Addr<SessionSupervisor>,
    /// The node's relay, when there are several nodes (PostgreSQL).
    relay: Option<Addr<Relay>>,
    /// Set once the supervisor has answered `Join`: the session's agent,
    /// or the relay to the node that runs it.
    route: Option<Route>,
    /// Frames that arrived before `agent` was known.
    early: Vec<ClientMessage>,
    last_seen: Instant,
    max_frame_bytes: usize,
    outbound_queue: usize,
    /// A fragmented message being reassembled.
    continuation: Option<Vec<u8>>,
    /// The continuation is over the limit; drop fragments until its end.
    skipping: bool,
    /// Counts this socket against its user's `limits.sockets`.
    _permit: Option<SocketPermit>,
}

impl WsSession {
    pub fn new(
        session_id: SessionId,
        username: String,
        owner: UserId,
        supervisor: Addr<SessionSupervisor>,
        relay: Option<Addr<Relay>>,
        max_frame_bytes: usize,
        outbound_queue: usize,
    ) -> Self {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        WsSession {
            socket_id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            session_id,
            username,
            owner,
            supervisor,
            relay,
            route: None,
            early: Vec::new(),
            last_seen: Instant::now(),
            max_frame_bytes,
            outbound_queue,
            continuation: None,
            skipping: false,
            _permit: None,
        }
    }

    /// Count this socket against its user until it ends.
    pub fn with_permit(mut self, permit: SocketPermit) -> Self {
        self._permit = Some(permit);
        self
    }

    fn send_event(ctx: &mut ws::WebsocketContext<Self>, event: &ServerEvent) {
        if let Ok(text) = serde_json::to_string(event) {
            ctx.text(text);
        }
    }

    /// Tell the client its message was over the limit (`size` when known).
    fn too_large(&self, ctx: &mut ws::WebsocketContext<Self>, size: Option<usize>) {
        let what = match size {
            Some(size) => format!("That message is {size} bytes"),
            None => "That message is too large".to_string(),
        };
        Self::send_event(
            ctx,
            &ServerEvent::error(
                ErrorCode::MessageTooLarge,
                format!(
                    "{what}; the limit is {} bytes. Shorten it, or upload it as a file.",
                    self.max_frame_bytes
                ),
            ),
        );
    }

    fn on_text(&mut self, ctx: &mut ws::WebsocketContext<Self>, bytes: &[u8]) {
        if bytes.len() > self.max_frame_bytes {
            self.too_large(ctx, Some(bytes.len()));
            return;
        }
        let message = match serde_json::from_slice::<ClientMessage>(bytes) {
            Ok(m) => m,
            Err(e) => {
                let (code, message) = match serde_json::from_slice::<serde_json::Value>(bytes) {
                    Err(_) => (ErrorCode::MalformedJson, format!("That frame is not valid JSON: {e}.")),
                    Ok(v) => match v.get("type").and_then(|t| t.as_str()) {
                        Some(t) if !matches!(t, "user_message" | "approval_decision" | "cancel") => (
                            ErrorCode::UnknownType,
                            format!("Unknown message type `{t}`; expected user_message, approval_decision or cancel."),
                        ),
                        None => (ErrorCode::MalformedMessage, "Every frame needs a string `type` field.".to_string()),
                        Some(_) => (ErrorCode::MalformedMessage, format!("That message is missing a field or has a wrong one: {e}.")),
                    },
                };
                Self::send_event(ctx, &ServerEvent::error(code, message));
                return;
            }
        };
        match &self.route {
            Some(route) => route.send(self.socket_id, message),
            None => self.early.push(message),
        }
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // The bounded outbound queue: the agent `try_send`s into this
        // mailbox and drops the socket when it is full.
        ctx.set_mailbox_capacity(self.outbound_queue);
        ctx.run_interval(HEARTBEAT_INTERVAL, |act, ctx| {
            if Instant::now().duration_since(act.last_seen) > CLIENT_TIMEOUT {
                ctx.stop();
                return;
            }
            ctx.ping(b"");
        });
        let join = Join {
            session_id: self.session_id.clone(),
            owner: self.owner,
        };
        self.supervisor
            .send(join)
            .into_actor(self)
            .then(|res, act, ctx| {
                match res {
                    Ok(Err(elsewhere)) => match act.relay.clone() {
                        Some(relay) => {
                            relay.do_send(Open {
                                socket_id: act.socket_id,
                                session_id: act.session_id.clone(),
                                owner_node: elsewhere.node_id,
                                user: act.owner,
                                username: act.username.clone(),
                                outbound: ctx.address().recipient(),
                                control: ctx.address().recipient(),
                            });
                            let route = Route::Relayed(relay);
                            for message in act.early.drain(..) {
                                route.send(act.socket_id, message);
                            }
                            act.route = Some(route);
                        }
                        None => {
                            Self::send_event(
                                ctx,
                                &ServerEvent::error(
                                    ErrorCode::Unavailable,
                                    format!("This session is being served by another node ({}); reconnect in a moment.", elsewhere.node_id),
                                ),
                            );
                            ctx.stop();
                        }
                    },
                    Ok(Ok(agent)) => {
                        agent.do_send(Attach {
                            socket_id: act.socket_id,
                            username: act.username.clone(),
                            outbound: ctx.address().recipient(),
                            control: ctx.address().recipient(),
                        });
                        let route = Route::Local(agent);
                        for message in act.early.drain(..) {
                            route.send(act.socket_id, message);
                        }
                        act.route = Some(route);
                    }
                    Err(_) => {
                        Self::send_event(
                            ctx,
                            &ServerEvent::error(
                                ErrorCode::ServerStopping,
                                "The server is shutting down; reconnect in a moment.",
                            ),
                        );
                        ctx.stop();
                    }
                }
                fut::ready(())
            })
            .wait(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        match &self.route {
            Some(Route::Local(agent)) => {
                agent.do_send(Detach {
                    socket_id: self.socket_id,
                });
                self.supervisor.do_send(Leave {
                    session_id: self.session_id.clone(),
                });
            }
            Some(Route::Relayed(relay)) => relay.do_send(Gone {
                socket_id: self.socket_id,
            }),
            None => {}
        }
        Running::Stop
    }
}

impl Handler<Outbound> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Self::Context) {
        ctx.text(msg.0.to_string());
    }
}

impl Handler<Disconnect> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Disconnect, ctx: &mut Self::Context) {
        Self::send_event(ctx, &ServerEvent::error(msg.code, msg.message));
        ctx.close(Some(ws::CloseReason {
            code: ws::CloseCode::Away,
            description: Some(msg.code.to_string()),
        }));
        ctx.stop();
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for WsSession {
    fn handle(&mut self, msg: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        self.last_seen = Instant::now();
        let msg = match msg {
            Ok(m) => m,
            Err(ws::ProtocolError::Overflow) => {
                // The codec refused a frame over `max_frame_bytes` from its
                // header; the stream cannot be resynchronised after it.
                self.too_large(ctx, None);
                ctx.close(Some(ws::CloseReason {
                    code: ws::CloseCode::Size,
                    description: Some(ErrorCode::MessageTooLarge.to_string()),
                }));
                ctx.stop();
                return;
            }
            Err(e) => {
                log::info!("websocket protocol error: {e}");
                ctx.stop();
                return;
            }
        };
        match msg {
            ws::Message::Text(text) => self.on_text(ctx, text.as_bytes()),
            ws::Message::Binary(bin) => self.on_text(ctx, &bin),
            ws::Message::Continuation(item) => {
                let (first, data, last) = match item {
                    actix_http::ws::Item::FirstText(d) | actix_http::ws::Item::FirstBinary(d) => {
                        (true, d, false)
                    }
                    actix_http::ws::Item::Continue(d) => (false, d, false),
                    actix_http::ws::Item::Last(d) => (false, d, true),
                };
                if first {
                    self.continuation = Some(Vec::new());
                    self.skipping = false;
                }
                if !self.skipping {
                    let buf = self.continuation.get_or_insert_with(Vec::new);
                    buf.extend_from_slice(&data);
                    if buf.len() > self.max_frame_bytes {
                        let size = buf.len();
                        self.continuation = None;
                        self.skipping = true;
                        self.too_large(ctx, Some(size));
                    }
                }
                if last {
                    self.skipping = false;
                    if let Some(buf) = self.continuation.take() {
                        self.on_text(ctx, &buf);
                    }
                }
            }
            ws::Message::Ping(p) => ctx.pong(&p),
            ws::Message::Pong(_) => {}
            ws::Message::Close(reason) => {
                ctx.close(reason);
                ctx.stop();
            }
            ws::Message::Nop => {}
        }
    }
}
