//! The AgentActor: one per live session. It owns the conversation loop: it
//! stores and echoes user messages, asks the ProviderActor for completions,
//! streams the reply to every attached socket, dispatches tool calls, and
//! ends turns. Every event that belongs in `history` is written to the
//! database before it is sent to anyone.
//!
//! Messages handled here: [`Attach`], [`Detach`], [`Inbound`],
//! [`SessionChanged`], [`Shutdown`], [`InjectFailure`] and the
//! ProviderActor's `ProviderEvent`.
//!
//! The actor runs under `actix::Supervisor`: if it stops on an error it is
//! restarted with the same address, reloads the conversation from the
//! database and re-sends `session` + `history` to the sockets still attached.

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;

use crate::config::Settings;
use crate::db::queries::{self, ChatSession};
use crate::db::Db;
use crate::protocol::{
    ApprovalMode, ClientMessage, LogLevel, LogSource, ServerEvent, TurnEndReason,
};
use crate::provider::{
    CancelCompletion, ChatMessage, Complete, ProviderActor, ProviderError, ProviderEvent,
    ToolCallRequest,
};

/// A serialised event for one socket. Serialised once, shared by all tabs.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct Outbound(pub Arc<str>);

/// Tell a socket to close, with the reason as a final `error` event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub code: &'static str,
    pub message: String,
}

/// A socket joins the session: it receives `session`, `history`, then every
/// live event.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Attach {
    pub socket_id: u64,
    pub username: String,
    pub outbound: Recipient<Outbound>,
    pub control: Recipient<Disconnect>,
}

/// A socket left.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    pub socket_id: u64,
}

/// A parsed frame from one of the session's sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Inbound {
    pub socket_id: u64,
    pub message: ClientMessage,
}

/// The session's row changed through REST (rename, model, approval mode).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionChanged {
    pub session: ChatSession,
}

/// Stop for good: cancel the running turn, close the sockets.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown {
    pub reason: String,
}

/// Make the actor fail as if an internal error had happened, so tests can
/// show that the supervisor restarts it without losing the conversation.
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectFailure;

struct Socket {
    id: u64,
    outbound: Recipient<Outbound>,
    control: Recipient<Disconnect>,
}

/// The turn in progress.
struct Turn {
    id: String,
    /// Model calls made so far in this turn.
    steps: u32,
    /// The provider request whose events are current; others are stale.
    request: u64,
    /// Reply text of the current step received so far.
    partial: String,
}

pub struct AgentActor {
    session_id: String,
    db: Db,
    settings: Arc<Settings>,
    provider: Addr<ProviderActor>,
    /// Loaded from the database in `started`.
    session: Option<ChatSession>,
    /// What the model sees, rebuilt from the event log on (re)start.
    conversation: Vec<ChatMessage>,
    sockets: Vec<Socket>,
    /// Messages sent while a turn was running; each starts its own turn.
    queue: VecDeque<String>,
    turn: Option<Turn>,
    next_request: u64,
    /// Cleared when the model turns out not to support native tools.
    tools: bool,
    /// Set by `Shutdown` so the supervisor does not restart the actor.
    shutting_down: bool,
}

impl AgentActor {
    pub fn new(
        session_id: String,
        db: Db,
        settings: Arc<Settings>,
        provider: Addr<ProviderActor>,
    ) -> Self {
        let tools = settings.provider.tools;
        AgentActor {
            session_id,
            db,
            settings,
            provider,
            session: None,
            conversation: Vec::new(),
            sockets: Vec::new(),
            queue: VecDeque::new(),
            turn: None,
            next_request: 0,
            tools,
            shutting_down: false,
        }
    }

    fn session_frame(&self, username: &str) -> ServerEvent {
        let s = self.session.as_ref();
        ServerEvent::Session {
            session_id: self.session_id.clone(),
            title: s.map(|s| s.title.clone()).unwrap_or_default(),
            user: username.to_string(),
            provider: self.settings.provider.kind.as_str().to_string(),
            model: s
                .map(|s| s.model.clone())
                .unwrap_or_else(|| self.settings.provider.model.clone()),
            approval_mode: s.map(|s| s.mode()).unwrap_or(ApprovalMode::Risky),
        }
    }

    fn model(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.model.clone())
            .unwrap_or_else(|| self.settings.provider.model.clone())
    }

    /// Send a serialised event to every socket. A socket whose queue is
    /// full is too slow: it is dropped and told to reconnect, and `history`
    /// will bring it up to date.
    fn broadcast(&mut self, event: &ServerEvent) {
        let Ok(text) = serde_json::to_string(event) else {
            return;
        };
        let text: Arc<str> = text.into();
        self.sockets.retain(|s| match s.outbound.try_send(Outbound(text.clone())) {
            Ok(()) => true,
            Err(SendError::Full(_)) => {
                log::warn!("socket {} is too slow; disconnecting it", s.id);
                s.control.do_send(Disconnect {
                    code: "slow_client",
                    message: "This tab fell too far behind and was disconnected; it reconnects and catches up.".into(),
                });
                false
            }
            Err(SendError::Closed(_)) => false,
        });
    }

    /// Store the events that belong in history, then send all of them, in
    /// order; then run `then`. The actor handles nothing else meanwhile, so
    /// events never overtake each other and nothing is sent before it is
    /// stored.
    fn emit_then<F>(&mut self, ctx: &mut Context<Self>, events: Vec<ServerEvent>, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        let stored: Vec<ServerEvent> = events.iter().filter(|e| e.is_stored()).cloned().collect();
        if stored.is_empty() {
            ctx.wait(fut::ready(()).map(move |_, act: &mut Self, ctx| {
                for e in &events {
                    act.broadcast(e);
                }
                then(act, ctx);
            }));
            return;
        }
        let db = self.db.clone();
        let session_id = self.session_id.clone();
        ctx.wait(
            async move {
                db.run(move |c| queries::append_events(c, &session_id, &stored))
                    .await
            }
            .into_actor(self)
            .map(move |res, act, ctx| match res {
                Ok(()) => {
                    for e in &events {
                        act.broadcast(e);
                    }
                    then(act, ctx);
                }
                Err(e) => {
                    log::error!("session {}: could not store events: {e}", act.session_id);
                    act.broadcast(&ServerEvent::error(
                        "storage_failed",
                        "IronClaw could not save the conversation to its database, so the turn was stopped. Check the server's disk and log.",
                    ));
                    // A failing database is the kind of error a restart with
                    // a fresh reload is for.
                    ctx.stop();
                }
            }),
        );
    }

    fn emit(&mut self, ctx: &mut Context<Self>, events: Vec<ServerEvent>) {
        self.emit_then(ctx, events, |_, _| {});
    }

    fn on_user_message(&mut self, ctx: &mut Context<Self>, text: String) {
        let text = text.trim().to_string();
        if text.is_empty() {
            return;
        }
        self.queue.push_back(text);
        self.start_next_turn(ctx);
    }

    fn start_next_turn(&mut self, ctx: &mut Context<Self>) {
        if self.turn.is_some() || self.session.is_none() {
            return;
        }
        let Some(text) = self.queue.pop_front() else {
            return;
        };
        let turn_id = uuid::Uuid::new_v4().to_string();
        self.turn = Some(Turn {
            id: turn_id.clone(),
            steps: 0,
            request: 0,
            partial: String::new(),
        });
        self.name_session_after(&text);
        let event = ServerEvent::UserMessage {
            turn_id,
            text: text.clone(),
        };
        self.emit_then(ctx, vec![event], move |act, ctx| {
            act.conversation.push(ChatMessage::User(text));
            act.request_completion(ctx);
        });
    }

    /// A new session takes its title from its first message.
    fn name_session_after(&mut self, text: &str) {
        let Some(session) = self.session.as_mut() else {
            return;
        };
        if session.title != queries::UNTITLED {
            return;
        }
        let title: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let title = if title.chars().count() > TITLE_CHARS {
            format!("{}…", title.chars().take(TITLE_CHARS).collect::<String>())
        } else {
            title
        };
        session.title = title.clone();
        let db = self.db.clone();
        let id = self.session_id.clone();
        actix::spawn(async move {
            let changes = queries::SessionChanges {
                title: Some(title),
                ..Default::default()
            };
            if let Err(e) = db
                .run(move |c| queries::update_session(c, &id, changes))
                .await
            {
                log::warn!("could not name session: {e}");
            }
        });
    }

    /// Ask the model for the next step of the turn.
    fn request_completion(&mut self, ctx: &mut Context<Self>) {
        let max_steps = self.settings.agent.max_steps;
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        if turn.steps >= max_steps {
            let message = format!(
                "The turn was stopped after {max_steps} model steps (agent.max_steps). Send a message to continue."
            );
            self.end_turn(
                ctx,
                TurnEndReason::Error,
                vec![
                    ServerEvent::log(LogLevel::Warn, LogSource::Agent, message.clone()),
                    ServerEvent::error("step_limit", message),
                ],
            );
            return;
        }
        turn.steps += 1;
        self.next_request += 1;
        turn.request = self.next_request;
        turn.partial.clear();
        let messages = context_window(
            &self.settings.agent.system_prompt,
            &self.conversation,
            self.settings.provider.context_tokens * BYTES_PER_TOKEN,
        );
        self.provider.do_send(Complete {
            request: self.next_request,
            model: self.model(),
            messages,
            tools: self.tools,
            reply_to: ctx.address().recipient(),
        });
    }

    /// End the running turn with `reason`, after storing `events`; then
    /// start the next queued one.
    fn end_turn(
        &mut self,
        ctx: &mut Context<Self>,
        reason: TurnEndReason,
        mut events: Vec<ServerEvent>,
    ) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        events.push(ServerEvent::TurnDone {
            turn_id: turn.id,
            reason,
        });
        self.emit_then(ctx, events, |act, ctx| act.start_next_turn(ctx));
    }

    /// Keep the partial reply of a step that did not finish: stored as the
    /// step's `assistant_message` and part of what the model sees next.
    fn keep_partial(&mut self) -> Option<ServerEvent> {
        let turn = self.turn.as_mut()?;
        let text = std::mem::take(&mut turn.partial);
        if text.is_empty() {
            return None;
        }
        self.conversation.push(ChatMessage::Assistant {
            text: text.clone(),
            tool_calls: Vec::new(),
        });
        Some(ServerEvent::AssistantMessage {
            turn_id: turn.id.clone(),
            text,
        })
    }

    fn cancel(&mut self, ctx: &mut Context<Self>) {
        let Some(turn) = self.turn.as_ref() else {
            return;
        };
        self.provider.do_send(CancelCompletion {
            request: turn.request,
        });
        let events = self.keep_partial().into_iter().collect();
        self.end_turn(ctx, TurnEndReason::Cancelled, events);
    }

    fn on_finished(&mut self, ctx: &mut Context<Self>, tool_calls: Vec<ToolCallRequest>) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let text = std::mem::take(&mut turn.partial);
        let mut events = Vec::new();
        if !text.is_empty() {
            events.push(ServerEvent::AssistantMessage {
                turn_id: turn.id.clone(),
                text: text.clone(),
            });
        }
        self.conversation.push(ChatMessage::Assistant {
            text,
            tool_calls: tool_calls.clone(),
        });
        if tool_calls.is_empty() {
            self.end_turn(ctx, TurnEndReason::Completed, events);
        } else {
            // Tool execution arrives with the sandbox; until a tool can run,
            // the model is told so and the turn ends cleanly.
            for call in &tool_calls {
                self.conversation.push(ChatMessage::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: "Tool calls are not available on this server.".into(),
                });
            }
            self.end_turn(ctx, TurnEndReason::Completed, events);
        }
    }

    fn on_failed(&mut self, ctx: &mut Context<Self>, error: ProviderError, output_started: bool) {
        if matches!(error, ProviderError::ToolsUnsupported) && self.tools && !output_started {
            // The model cannot call tools: carry on without them.
            self.tools = false;
            self.emit_then(
                ctx,
                vec![ServerEvent::log(
                    LogLevel::Warn,
                    LogSource::Provider,
                    format!(
                        "The model {} does not support tool calling; continuing without tools.",
                        self.model()
                    ),
                )],
                |act, ctx| {
                    if let Some(t) = act.turn.as_mut() {
                        t.steps = t.steps.saturating_sub(1);
                    }
                    act.request_completion(ctx);
                },
            );
            return;
        }
        let message = error.to_string();
        log::warn!("session {}: provider failed: {message}", self.session_id);
        let mut events: Vec<ServerEvent> = self.keep_partial().into_iter().collect();
        events.push(ServerEvent::log(
            LogLevel::Error,
            LogSource::Provider,
            message.clone(),
        ));
        events.push(ServerEvent::error(error.code(), message));
        self.end_turn(ctx, TurnEndReason::Error, events);
    }
}

/// Characters of the first message used as a session's title.
const TITLE_CHARS: usize = 60;

/// Rough bytes per token for the context budget; errs on the side of
/// trimming early.
const BYTES_PER_TOKEN: usize = 4;

/// The messages to send: the system prompt, then as much of the
/// conversation as fits in `budget` bytes. The oldest tool outputs are cut
/// first; then the oldest messages are dropped. The latest message is always
/// kept.
pub fn context_window(
    system: &str,
    conversation: &[ChatMessage],
    budget: usize,
) -> Vec<ChatMessage> {
    const TRIMMED: &str = "[output trimmed to fit the context window]";
    let mut msgs: Vec<ChatMessage> = conversation.to_vec();
    let total = |m: &[ChatMessage]| m.iter().map(ChatMessage::weight).sum::<usize>() + system.len();
    let mut i = 0;
    while total(&msgs) > budget && i + 1 < msgs.len() {
        if let ChatMessage::ToolResult { content, .. } = &mut msgs[i] {
            if content.len() > TRIMMED.len() {
                *content = TRIMMED.to_string();
            }
        }
        i += 1;
    }
    // Drop whole leading exchanges, never splitting a tool call from its
    // result: cut at the next user message.
    while total(&msgs) > budget {
        let next_user = msgs
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, m)| matches!(m, ChatMessage::User(_)))
            .map(|(i, _)| i);
        match next_user {
            Some(i) if i < msgs.len() => {
                msgs.drain(..i);
            }
            _ => break,
        }
    }
    let mut out = Vec::with_capacity(msgs.len() + 1);
    out.push(ChatMessage::System(system.to_string()));
    out.extend(msgs);
    out
}

/// Rebuild what the model sees from the stored events and the stored tool
/// results.
pub fn conversation_from_events(
    events: &[ServerEvent],
    results: &std::collections::HashMap<String, String>,
) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    let flush = |out: &mut Vec<ChatMessage>, pending: &mut Vec<(String, String)>| {
        for (call_id, name) in pending.drain(..) {
            let content = results
                .get(&call_id)
                .cloned()
                .unwrap_or_else(|| "The command did not finish: it was interrupted.".to_string());
            out.push(ChatMessage::ToolResult {
                call_id,
                name,
                content,
            });
        }
    };
    for event in events {
        match event {
            ServerEvent::UserMessage { text, .. } => {
                flush(&mut out, &mut pending);
                out.push(ChatMessage::User(text.clone()));
            }
            ServerEvent::AssistantMessage { text, .. } => {
                flush(&mut out, &mut pending);
                out.push(ChatMessage::Assistant {
                    text: text.clone(),
                    tool_calls: Vec::new(),
                });
            }
            ServerEvent::ToolCall {
                call_id,
                tool,
                code,
                ..
            } => {
                let arguments = match tool {
                    crate::protocol::Tool::Shell => serde_json::json!({ "command": code }),
                    crate::protocol::Tool::Python => serde_json::json!({ "code": code }),
                };
                let call = ToolCallRequest {
                    id: call_id.clone(),
                    name: tool.as_str().to_string(),
                    arguments,
                };
                match out.last_mut() {
                    Some(ChatMessage::Assistant { tool_calls, .. }) => tool_calls.push(call),
                    _ => out.push(ChatMessage::Assistant {
                        text: String::new(),
                        tool_calls: vec![call],
                    }),
                }
                pending.push((call_id.clone(), tool.as_str().to_string()));
            }
            ServerEvent::Session { .. }
            | ServerEvent::History { .. }
            | ServerEvent::AssistantDelta { .. }
            | ServerEvent::ApprovalRequest { .. }
            | ServerEvent::ApprovalResolved { .. }
            | ServerEvent::ExecOutput { .. }
            | ServerEvent::ExecDone { .. }
            | ServerEvent::FilesChanged { .. }
            | ServerEvent::Log { .. }
            | ServerEvent::TurnDone { .. }
            | ServerEvent::Error { .. } => {}
        }
    }
    flush(&mut out, &mut pending);
    out
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            // Restarted by the supervisor after a deliberate stop because a
            // socket still held the address: stay idle until it lets go.
            return;
        }
        let db = self.db.clone();
        let id = self.session_id.clone();
        ctx.wait(
            async move {
                db.run(move |c| {
                    let session = queries::load_session(c, &id)?;
                    let events = queries::list_events(c, &id)?;
                    let results = queries::tool_results(c, &id)?;
                    Ok((session, events, results))
                })
                .await
            }
            .into_actor(self)
            .map(|res, act, ctx| match res {
                Ok((Some(session), events, results)) => {
                    act.conversation = conversation_from_events(&events, &results);
                    act.session = Some(session);
                    // Sockets that stayed attached across a restart get a
                    // fresh picture.
                    let history = ServerEvent::History {
                        session_id: act.session_id.clone(),
                        events,
                    };
                    if !act.sockets.is_empty() {
                        let frame = act.session_frame("");
                        act.broadcast(&frame);
                        act.broadcast(&history);
                    }
                    act.start_next_turn(ctx);
                }
                Ok((None, _, _)) => {
                    log::warn!("session {} no longer exists", act.session_id);
                    act.shutting_down = true;
                    ctx.stop();
                }
                Err(e) => {
                    log::error!("session {}: cannot load: {e}", act.session_id);
                    act.shutting_down = true;
                    for s in act.sockets.drain(..) {
                        s.control.do_send(Disconnect {
                            code: "storage_failed",
                            message: "IronClaw could not read this session from its database. Check the server's log.".into(),
                        });
                    }
                    ctx.stop();
                }
            }),
        );
    }
}

impl Supervised for AgentActor {
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!(
            "session {}: agent restarting; reloading from the database",
            self.session_id
        );
        // Whatever was in flight is abandoned; the database has everything
        // that was acknowledged.
        if let Some(turn) = self.turn.take() {
            self.provider.do_send(CancelCompletion {
                request: turn.request,
            });
        }
        self.session = None;
        self.conversation.clear();
    }
}

impl Handler<Attach> for AgentActor {
    type Result = ();

    /// Send `session` and `history`, then register the socket. Runs inside
    /// `ctx.wait`, so no live event can fall between the history and the
    /// registration.
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let id = self.session_id.clone();
        ctx.wait(
            async move { db.run(move |c| queries::list_events(c, &id)).await }
                .into_actor(self)
                .map(move |res, act, _| {
                    let events = match res {
                        Ok(events) => events,
                        Err(e) => {
                            log::error!("session {}: cannot load history: {e}", act.session_id);
                            msg.control.do_send(Disconnect {
                                code: "storage_failed",
                                message: "IronClaw could not read this session from its database. Check the server's log.".into(),
                            });
                            return;
                        }
                    };
                    let mut frames = vec![
                        act.session_frame(&msg.username),
                        ServerEvent::History {
                            session_id: act.session_id.clone(),
                            events,
                        },
                    ];
                    // A reply being streamed right now: catch the tab up.
                    if let Some(turn) = act.turn.as_ref().filter(|t| !t.partial.is_empty()) {
                        frames.push(ServerEvent::AssistantDelta {
                            turn_id: turn.id.clone(),
                            text: turn.partial.clone(),
                        });
                    }
                    for f in &frames {
                        let Ok(text) = serde_json::to_string(f) else {
                            continue;
                        };
                        // The first frames may exceed a small queue; `do_send`
                        // is bounded by their count here.
                        msg.outbound.do_send(Outbound(text.into()));
                    }
                    act.sockets.push(Socket {
                        id: msg.socket_id,
                        outbound: msg.outbound,
                        control: msg.control,
                    });
                }),
        );
    }
}

impl Handler<Detach> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, _: &mut Context<Self>) {
        self.sockets.retain(|s| s.id != msg.socket_id);
    }
}

impl Handler<Inbound> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        match msg.message {
            ClientMessage::UserMessage { text } => self.on_user_message(ctx, text),
            ClientMessage::Cancel => self.cancel(ctx),
            ClientMessage::ApprovalDecision { .. } => {
                let err = ServerEvent::error(
                    "unknown_approval",
                    "There is no pending approval with that id; it may have been answered in another tab or expired.",
                );
                if let Some(s) = self.sockets.iter().find(|s| s.id == msg.socket_id) {
                    if let Ok(text) = serde_json::to_string(&err) {
                        let _ = s.outbound.try_send(Outbound(text.into()));
                    }
                }
            }
        }
    }
}

impl Handler<ProviderEvent> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: ProviderEvent, ctx: &mut Context<Self>) {
        let current = self.turn.as_ref().map(|t| t.request);
        match msg {
            ProviderEvent::Delta { request, text } if Some(request) == current => {
                let Some(turn) = self.turn.as_mut() else {
                    return;
                };
                turn.partial.push_str(&text);
                let event = ServerEvent::AssistantDelta {
                    turn_id: turn.id.clone(),
                    text,
                };
                self.emit(ctx, vec![event]);
            }
            ProviderEvent::Finished {
                request,
                tool_calls,
            } if Some(request) == current => self.on_finished(ctx, tool_calls),
            ProviderEvent::Failed {
                request,
                error,
                output_started,
            } if Some(request) == current => self.on_failed(ctx, error, output_started),
            // Late events of a cancelled or superseded request.
            ProviderEvent::Delta { .. }
            | ProviderEvent::Finished { .. }
            | ProviderEvent::Failed { .. } => {}
        }
    }
}

impl Handler<SessionChanged> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SessionChanged, _: &mut Context<Self>) {
        self.session = Some(msg.session);
        let frame = self.session_frame("");
        self.broadcast(&frame);
    }
}

impl Handler<Shutdown> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.shutting_down = true;
        if let Some(turn) = self.turn.take() {
            self.provider.do_send(CancelCompletion {
                request: turn.request,
            });
        }
        for s in self.sockets.drain(..) {
            s.control.do_send(Disconnect {
                code: "session_closed",
                message: msg.reason.clone(),
            });
        }
        ctx.stop();
    }
}

impl Handler<InjectFailure> for AgentActor {
    type Result = ();

    fn handle(&mut self, _: InjectFailure, ctx: &mut Context<Self>) {
        log::error!("session {}: injected failure", self.session_id);
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Risk, RiskLevel, Tool};
    use std::collections::HashMap;

    #[test]
    fn conversation_rebuild_pairs_tool_calls_with_results() {
        let risk = Risk {
            level: RiskLevel::Low,
            reasons: vec![],
        };
        let events = vec![
            ServerEvent::UserMessage {
                turn_id: "t".into(),
                text: "list".into(),
            },
            ServerEvent::AssistantMessage {
                turn_id: "t".into(),
                text: "Looking".into(),
            },
            ServerEvent::ToolCall {
                turn_id: "t".into(),
                call_id: "c1".into(),
                tool: Tool::Shell,
                code: "ls".into(),
                risk: risk.clone(),
            },
            ServerEvent::ToolCall {
                turn_id: "t".into(),
                call_id: "c2".into(),
                tool: Tool::Python,
                code: "print(1)".into(),
                risk,
            },
            ServerEvent::ExecDone {
                call_id: "c1".into(),
                exit_code: Some(0),
                timed_out: false,
                duration_ms: 1,
            },
            ServerEvent::AssistantMessage {
                turn_id: "t".into(),
                text: "Done".into(),
            },
            ServerEvent::TurnDone {
                turn_id: "t".into(),
                reason: TurnEndReason::Completed,
            },
        ];
        let results = HashMap::from([("c1".to_string(), "a.txt".to_string())]);
        let conv = conversation_from_events(&events, &results);
        assert_eq!(conv.len(), 5);
        assert!(
            matches!(&conv[1], ChatMessage::Assistant { text, tool_calls } if text == "Looking" && tool_calls.len() == 2)
        );
        assert!(matches!(&conv[2], ChatMessage::ToolResult { content, .. } if content == "a.txt"));
        assert!(
            matches!(&conv[3], ChatMessage::ToolResult { content, .. } if content.contains("interrupted"))
        );
        assert!(matches!(&conv[4], ChatMessage::Assistant { text, .. } if text == "Done"));
    }

    #[test]
    fn context_window_trims_old_tool_output_then_old_exchanges() {
        let mut conv = Vec::new();
        for i in 0..50 {
            conv.push(ChatMessage::User(format!("question {i}")));
            conv.push(ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCallRequest {
                    id: format!("c{i}"),
                    name: "shell".into(),
                    arguments: serde_json::json!({"command":"cat big"}),
                }],
            });
            conv.push(ChatMessage::ToolResult {
                call_id: format!("c{i}"),
                name: "shell".into(),
                content: "x".repeat(1000),
            });
        }
        let budget = 5_000;
        let out = context_window("sys", &conv, budget);
        assert!(matches!(&out[0], ChatMessage::System(s) if s == "sys"));
        assert!(out.iter().map(ChatMessage::weight).sum::<usize>() <= budget);
        assert_eq!(out.last(), conv.last(), "the latest message is kept whole");
        assert!(
            matches!(&out[1], ChatMessage::User(_)),
            "cut at an exchange boundary"
        );
        let small = context_window("sys", &conv[..3], 1_000_000);
        assert_eq!(small.len(), 4);
    }
}
