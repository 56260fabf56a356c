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

use diesel::sqlite::SqliteConnection;

use crate::approval::{ApprovalActor, Decide, Review, ReviewCall, Verdict, Withdraw};
use crate::config::Settings;
use crate::db::queries::{self, ChatSession, ToolCallRow};
use crate::db::{Db, DbError};
use crate::protocol::{
    ApprovalMode, ClientMessage, DecidedBy, LogLevel, LogSource, OutputStream, Resolution,
    ServerEvent, Tool, TurnEndReason,
};
use crate::provider::{
    CancelCompletion, ChatMessage, Complete, ProviderActor, ProviderError, ProviderEvent,
    ToolCallRequest,
};
use crate::sandbox::{
    CancelExec, Exec, ExecChunk, ExecOutcome, RemoveContainer, SandboxActor, SandboxError,
    SandboxNotice,
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

/// The person uploaded files into the workspace.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FilesUploaded {
    /// Workspace-relative.
    pub paths: Vec<String>,
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
    /// Tool calls of the current step still to run, in order.
    calls: VecDeque<ToolCallRequest>,
    /// What the turn is waiting for.
    stage: Stage,
    /// `cancel` arrived while a command was running: end the turn once
    /// the sandbox reports it stopped.
    cancelled: bool,
    /// Output of the running command, coalesced for storage.
    output: OutputLog,
    /// The person has been told this turn's context was trimmed.
    context_noted: bool,
}

/// The tool call being handled.
#[derive(Debug, Clone)]
struct CallInFlight {
    id: String,
    tool: Tool,
    code: String,
    risk: crate::protocol::Risk,
}

enum Stage {
    /// Waiting for the model.
    Model,
    /// Waiting for the ApprovalActor's policy answer.
    Reviewing(CallInFlight),
    /// Waiting for the person.
    Awaiting(CallInFlight, String),
    /// The command is running.
    Executing(CallInFlight),
}

/// A command's output kept for `history`: consecutive chunks of the same
/// stream merged, capped at `agent.stored_output_bytes` with a note.
#[derive(Default)]
struct OutputLog {
    segments: Vec<(OutputStream, String)>,
    kept: usize,
    dropped: usize,
}

impl OutputLog {
    fn push(&mut self, stream: OutputStream, data: &str, cap: usize) {
        if self.kept >= cap {
            self.dropped += data.len();
            return;
        }
        let room = cap - self.kept;
        let mut take = data.len().min(room);
        while !data.is_char_boundary(take) {
            take -= 1;
        }
        self.dropped += data.len() - take;
        self.kept += take;
        match self.segments.last_mut() {
            Some((s, text)) if *s == stream => text.push_str(&data[..take]),
            _ => self.segments.push((stream, data[..take].to_string())),
        }
    }

    fn into_events(self, call_id: &str) -> Vec<ServerEvent> {
        let mut events: Vec<ServerEvent> = self
            .segments
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(stream, data)| ServerEvent::ExecOutput {
                call_id: call_id.to_string(),
                stream,
                data,
            })
            .collect();
        if self.dropped > 0 {
            events.push(ServerEvent::ExecOutput {
                call_id: call_id.to_string(),
                stream: OutputStream::Stderr,
                data: format!(
                    "\n[IronClaw: {} more bytes of output were shown live but not kept in the history]\n",
                    self.dropped
                ),
            });
        }
        events
    }
}

/// Extra database work done in the same transaction as an event append.
type DbWork = Box<dyn FnOnce(&mut SqliteConnection) -> Result<(), DbError> + Send>;

pub struct AgentActor {
    session_id: String,
    db: Db,
    settings: Arc<Settings>,
    provider: Addr<ProviderActor>,
    approval: Addr<ApprovalActor>,
    sandbox: Addr<SandboxActor>,
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
    /// Uploads the model has not been told about yet.
    upload_notes: Vec<String>,
    /// The owner's name, for `session` frames (from the first socket).
    username: String,
}

impl AgentActor {
    pub fn new(
        session_id: String,
        db: Db,
        settings: Arc<Settings>,
        provider: Addr<ProviderActor>,
        approval: Addr<ApprovalActor>,
        sandbox: Addr<SandboxActor>,
    ) -> Self {
        let tools = settings.provider.tools;
        AgentActor {
            session_id,
            db,
            settings,
            provider,
            approval,
            sandbox,
            session: None,
            conversation: Vec::new(),
            sockets: Vec::new(),
            queue: VecDeque::new(),
            turn: None,
            next_request: 0,
            tools,
            shutting_down: false,
            upload_notes: Vec::new(),
            username: String::new(),
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

    /// Store the events that belong in history (and `work`, in the same
    /// transaction), then send all of them, in order; then run `then`. The
    /// actor handles nothing else meanwhile, so events never overtake each
    /// other and nothing is sent before it is stored.
    fn persist_then<F>(
        &mut self,
        ctx: &mut Context<Self>,
        events: Vec<ServerEvent>,
        work: Option<DbWork>,
        then: F,
    ) where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        let stored: Vec<ServerEvent> = events.iter().filter(|e| e.is_stored()).cloned().collect();
        if stored.is_empty() && work.is_none() {
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
                db.run(move |c| {
                    use diesel::Connection;
                    c.transaction(|c| {
                        if let Some(work) = work {
                            work(c)?;
                        }
                        queries::append_events(c, &session_id, &stored)
                    })
                })
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

    fn emit_then<F>(&mut self, ctx: &mut Context<Self>, events: Vec<ServerEvent>, then: F)
    where
        F: FnOnce(&mut Self, &mut Context<Self>) + 'static,
    {
        self.persist_then(ctx, events, None, then);
    }

    /// Send an event to the sockets in order with the stored ones, without
    /// storing it (live command output, kept coalesced at the end).
    fn send_live(&mut self, ctx: &mut Context<Self>, event: ServerEvent) {
        ctx.wait(fut::ready(()).map(move |_, act: &mut Self, _| act.broadcast(&event)));
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
            calls: VecDeque::new(),
            stage: Stage::Model,
            cancelled: false,
            output: OutputLog::default(),
            context_noted: false,
        });
        self.name_session_after(&text);
        let event = ServerEvent::UserMessage {
            turn_id,
            text: text.clone(),
        };
        let notes = std::mem::take(&mut self.upload_notes);
        self.emit_then(ctx, vec![event], move |act, ctx| {
            act.conversation
                .push(ChatMessage::User(with_notes(&notes, text)));
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
        turn.stage = Stage::Model;
        let window = context_window(
            &self.settings.agent.system_prompt,
            &self.conversation,
            self.settings.provider.context_tokens * BYTES_PER_TOKEN,
        );
        let messages = window.messages;
        if (window.trimmed_outputs > 0 || window.dropped_messages > 0) && !turn.context_noted {
            turn.context_noted = true;
            let note = format!(
                "The conversation is longer than the model's context (provider.context_tokens = {}): {} old command output(s) were shortened and {} old message(s) left out of what the model sees. Everything is still in the history.",
                self.settings.provider.context_tokens, window.trimmed_outputs, window.dropped_messages
            );
            ctx.notify(DeferredEvent(ServerEvent::log(
                LogLevel::Info,
                LogSource::Agent,
                note,
            )));
        }
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
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let stage = std::mem::replace(&mut turn.stage, Stage::Model);
        match stage {
            Stage::Model => {
                self.provider.do_send(CancelCompletion {
                    request: turn.request,
                });
                let events = self.keep_partial().into_iter().collect();
                self.end_turn(ctx, TurnEndReason::Cancelled, events);
            }
            Stage::Reviewing(call) => {
                // The review answer is ignored once the stage has moved on.
                self.skip_remaining(
                    call,
                    "The person cancelled the turn; the command was not run.",
                );
                self.end_turn(ctx, TurnEndReason::Cancelled, Vec::new());
            }
            Stage::Awaiting(call, approval_id) => {
                self.approval.do_send(Withdraw {
                    approval_id: approval_id.clone(),
                });
                let resolved = ServerEvent::ApprovalResolved {
                    approval_id,
                    call_id: call.id.clone(),
                    decision: Resolution::Denied,
                    by: DecidedBy::User,
                };
                let id = call.id.clone();
                let work: DbWork = Box::new(move |c| {
                    queries::record_decision(c, &id, Resolution::Denied, DecidedBy::User)
                });
                self.skip_remaining(
                    call,
                    "The person cancelled the turn; the command was not run.",
                );
                let Some(turn) = self.turn.take() else {
                    return;
                };
                let done = ServerEvent::TurnDone {
                    turn_id: turn.id,
                    reason: TurnEndReason::Cancelled,
                };
                self.persist_then(ctx, vec![resolved, done], Some(work), |act, ctx| {
                    act.start_next_turn(ctx)
                });
            }
            Stage::Executing(call) => {
                // The sandbox kills the process group; the turn ends when it
                // reports the command finished.
                self.sandbox.do_send(CancelExec {
                    call_id: call.id.clone(),
                });
                turn.stage = Stage::Executing(call);
                turn.cancelled = true;
            }
        }
    }

    /// Give `call` and every call still queued in this step a result, so
    /// the model sees each of its calls answered.
    fn skip_remaining(&mut self, call: CallInFlight, why: &str) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let mut results = vec![ChatMessage::ToolResult {
            call_id: call.id,
            name: call.tool.as_str().to_string(),
            content: why.to_string(),
        }];
        for c in turn.calls.drain(..) {
            results.push(ChatMessage::ToolResult {
                call_id: c.id,
                name: c.name,
                content: why.to_string(),
            });
        }
        self.conversation.extend(results);
    }

    fn on_finished(&mut self, ctx: &mut Context<Self>, mut tool_calls: Vec<ToolCallRequest>) {
        let tools = self.tools;
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let text = std::mem::take(&mut turn.partial);
        if tool_calls.is_empty() && !tools {
            // A model without native tools asks for commands in fenced code
            // blocks; they take the same approval and execution path.
            tool_calls = fenced_calls(&text);
        }
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
            return;
        }
        turn.calls = tool_calls.into();
        self.emit_then(ctx, events, |act, ctx| act.run_next_call(ctx));
    }

    /// Handle the next tool call of the step, or ask the model for the next
    /// step when all have run.
    fn run_next_call(&mut self, ctx: &mut Context<Self>) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let Some(call) = turn.calls.pop_front() else {
            self.request_completion(ctx);
            return;
        };
        let turn_id = turn.id.clone();
        let parsed = match call.name.as_str() {
            "shell" => call
                .arguments
                .get("command")
                .and_then(|v| v.as_str())
                .map(|c| (Tool::Shell, c.to_string())),
            "python" => call
                .arguments
                .get("code")
                .and_then(|v| v.as_str())
                .map(|c| (Tool::Python, c.to_string())),
            _ => None,
        };
        let Some((tool, code)) = parsed else {
            let message = format!(
                "The model called `{}` with arguments {}; only `shell {{command}}` and `python {{code}}` exist.",
                call.name, call.arguments
            );
            self.conversation.push(ChatMessage::ToolResult {
                call_id: call.id,
                name: call.name,
                content: format!("Error: {message}"),
            });
            let log = ServerEvent::log(LogLevel::Warn, LogSource::Agent, message);
            self.emit_then(ctx, vec![log], |act, ctx| act.run_next_call(ctx));
            return;
        };
        // Classifying a large program takes a while: off the actor thread.
        // `wait` keeps the order of everything that follows.
        let (c_tool, c_code) = (tool, code.clone());
        ctx.wait(
            async move {
                tokio::task::spawn_blocking(move || crate::risk::classify(c_tool, &c_code))
                    .await
                    .unwrap_or_else(|_| crate::protocol::Risk {
                        level: crate::protocol::RiskLevel::High,
                        reasons: vec!["the command could not be checked".into()],
                    })
            }
            .into_actor(self)
            .map(move |risk, act, ctx| act.review_call(ctx, turn_id, call.id, tool, code, risk)),
        );
    }

    /// Store and announce a classified tool call, then ask the approval
    /// actor about it.
    fn review_call(
        &mut self,
        ctx: &mut Context<Self>,
        turn_id: String,
        call_id: String,
        tool: Tool,
        code: String,
        risk: crate::protocol::Risk,
    ) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let mode = self
            .session
            .as_ref()
            .map(|s| s.mode())
            .unwrap_or(ApprovalMode::Risky);
        let row = ToolCallRow::new(
            &self.session_id,
            &turn_id,
            &call_id,
            tool,
            &code,
            &risk,
            mode,
        );
        let event = ServerEvent::ToolCall {
            turn_id,
            call_id: call_id.clone(),
            tool,
            code: code.clone(),
            risk: risk.clone(),
        };
        let flight = CallInFlight {
            id: call_id.clone(),
            tool,
            code: code.clone(),
            risk: risk.clone(),
        };
        turn.stage = Stage::Reviewing(flight.clone());
        let work: DbWork = Box::new(move |c| queries::insert_tool_call(c, &row));
        let review = ReviewCall {
            call_id,
            tool,
            code,
            risk,
            mode,
        };
        self.persist_then(ctx, vec![event], Some(work), move |act, ctx| {
            let approval = act.approval.clone();
            ctx.wait(
                async move { approval.send(review).await }
                    .into_actor(act)
                    .map(move |res, act, ctx| match res {
                        Ok(review) => act.on_review(ctx, flight, review),
                        // The approval actor is gone: nothing runs unapproved.
                        Err(_) => act.on_verdict(
                            ctx,
                            flight,
                            None,
                            Verdict {
                                resolution: Resolution::Denied,
                                by: DecidedBy::Policy,
                            },
                        ),
                    }),
            );
        });
    }

    fn stage_is(&self, call_id: &str) -> bool {
        match self.turn.as_ref().map(|t| &t.stage) {
            Some(Stage::Reviewing(c)) | Some(Stage::Awaiting(c, _)) | Some(Stage::Executing(c)) => {
                c.id == call_id
            }
            Some(Stage::Model) | None => false,
        }
    }

    fn on_review(&mut self, ctx: &mut Context<Self>, call: CallInFlight, review: Review) {
        if !self.stage_is(&call.id) {
            return;
        }
        match review {
            Review::Decided(verdict) => self.on_verdict(ctx, call, None, verdict),
            Review::Ask {
                approval_id,
                expires_at,
                verdict,
            } => {
                let Some(turn) = self.turn.as_mut() else {
                    return;
                };
                turn.stage = Stage::Awaiting(call.clone(), approval_id.clone());
                let risk = call.risk.clone();
                let event = ServerEvent::ApprovalRequest {
                    approval_id: approval_id.clone(),
                    call_id: call.id.clone(),
                    tool: call.tool,
                    code: call.code.clone(),
                    risk,
                    expires_at,
                };
                self.emit_then(ctx, vec![event], move |act, ctx| {
                    ctx.spawn(verdict.into_actor(act).map(move |res, act, ctx| {
                        // A dropped sender (approval actor restarted) denies.
                        let verdict = res.unwrap_or(Verdict {
                            resolution: Resolution::Denied,
                            by: DecidedBy::Policy,
                        });
                        act.on_verdict(ctx, call, Some(approval_id), verdict);
                    }));
                });
            }
        }
    }

    fn on_verdict(
        &mut self,
        ctx: &mut Context<Self>,
        call: CallInFlight,
        approval_id: Option<String>,
        verdict: Verdict,
    ) {
        if !self.stage_is(&call.id) {
            return;
        }
        let id = call.id.clone();
        let work: DbWork =
            Box::new(move |c| queries::record_decision(c, &id, verdict.resolution, verdict.by));
        let events: Vec<ServerEvent> = approval_id
            .map(|approval_id| ServerEvent::ApprovalResolved {
                approval_id,
                call_id: call.id.clone(),
                decision: verdict.resolution,
                by: verdict.by,
            })
            .into_iter()
            .collect();
        self.persist_then(ctx, events, Some(work), move |act, ctx| match verdict.resolution {
            Resolution::Approved => act.start_exec(ctx, call),
            Resolution::Denied | Resolution::TimedOut => {
                let why = if verdict.resolution == Resolution::TimedOut {
                    "The person did not answer the approval request in time, so the command was not run."
                } else {
                    "The person denied this command, so it was not run. Do not retry it; ask them or choose another way."
                };
                act.conversation.push(ChatMessage::ToolResult {
                    call_id: call.id.clone(),
                    name: call.tool.as_str().to_string(),
                    content: why.to_string(),
                });
                let work: DbWork = {
                    let id = call.id.clone();
                    Box::new(move |c| queries::record_result(c, &id, None, why))
                };
                act.persist_then(ctx, Vec::new(), Some(work), |act, ctx| act.run_next_call(ctx));
            }
        });
    }

    fn start_exec(&mut self, ctx: &mut Context<Self>, call: CallInFlight) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        turn.stage = Stage::Executing(call.clone());
        turn.output = OutputLog::default();
        let exec = Exec {
            call_id: call.id.clone(),
            tool: call.tool,
            code: call.code.clone(),
            timeout: std::time::Duration::from_secs(self.settings.sandbox.exec_timeout_secs),
            output: ctx.address().recipient(),
            model_output_cap: self.settings.agent.tool_output_for_model_bytes,
        };
        let sandbox = self.sandbox.clone();
        let root = self.settings.workspaces_dir().join(&self.session_id);
        ctx.spawn(
            async move {
                let before = snapshot(root.clone()).await;
                let res = sandbox.send(exec).await.unwrap_or_else(|_| {
                    Err(SandboxError::ExecFailed {
                        detail: "the sandbox actor stopped".into(),
                    })
                });
                let changed = match (before, snapshot(root).await) {
                    (Some(a), Some(b)) => crate::workspace::changed_paths(&a, &b),
                    _ => Vec::new(),
                };
                (res, changed)
            }
            .into_actor(self)
            .map(move |(res, changed), act, ctx| act.on_exec_done(ctx, call, res, changed)),
        );
    }

    fn on_exec_done(
        &mut self,
        ctx: &mut Context<Self>,
        call: CallInFlight,
        res: Result<ExecOutcome, SandboxError>,
        changed: Vec<String>,
    ) {
        if !self.stage_is(&call.id) {
            return;
        }
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let cancelled = turn.cancelled;
        let output = std::mem::take(&mut turn.output);
        turn.stage = Stage::Model;
        // The output went out live; it is stored coalesced, not sent again.
        let segments = output.into_events(&call.id);
        let mut events = Vec::new();
        let (exit_code, for_model, fatal) = match res {
            Ok(outcome) => {
                events.push(ServerEvent::ExecDone {
                    call_id: call.id.clone(),
                    exit_code: outcome.exit_code,
                    timed_out: outcome.timed_out,
                    duration_ms: outcome.duration_ms,
                });
                (
                    outcome.exit_code,
                    model_result(&outcome, self.settings.sandbox.exec_timeout_secs),
                    None,
                )
            }
            Err(e) => {
                let message = e.to_string();
                events.push(ServerEvent::ExecDone {
                    call_id: call.id.clone(),
                    exit_code: None,
                    timed_out: false,
                    duration_ms: 0,
                });
                events.push(ServerEvent::log(
                    LogLevel::Error,
                    LogSource::Sandbox,
                    message.clone(),
                ));
                let fatal = match e {
                    SandboxError::CodeTooLarge { .. } => None,
                    _ => Some(ServerEvent::error(e.code(), message.clone())),
                };
                (
                    None,
                    format!("The command could not be run: {message}"),
                    fatal,
                )
            }
        };
        if !changed.is_empty() {
            events.push(ServerEvent::FilesChanged {
                paths: changed,
                uploaded: false,
            });
        }
        let id = call.id.clone();
        let result_text = for_model.clone();
        let session_id = self.session_id.clone();
        let work: DbWork = Box::new(move |c| {
            queries::append_events(c, &session_id, &segments)?;
            queries::record_result(c, &id, exit_code, &result_text)
        });
        self.conversation.push(ChatMessage::ToolResult {
            call_id: call.id.clone(),
            name: call.tool.as_str().to_string(),
            content: for_model,
        });
        if cancelled || fatal.is_some() {
            let reason = if cancelled {
                TurnEndReason::Cancelled
            } else {
                TurnEndReason::Error
            };
            let why = if cancelled {
                "The person cancelled the turn; the command was not run."
            } else {
                "An earlier command failed; this one was not run."
            };
            self.skip_queued(why);
            events.extend(fatal);
            self.persist_then(ctx, Vec::new(), Some(work), move |act, ctx| {
                act.end_turn(ctx, reason, events)
            });
            return;
        }
        self.persist_then(ctx, events, Some(work), |act, ctx| act.run_next_call(ctx));
    }

    /// Answer the calls still queued in this step without running them.
    fn skip_queued(&mut self, why: &str) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let skipped: Vec<ChatMessage> = turn
            .calls
            .drain(..)
            .map(|c| ChatMessage::ToolResult {
                call_id: c.id,
                name: c.name,
                content: why.to_string(),
            })
            .collect();
        self.conversation.extend(skipped);
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

/// The workspace's state, to tell what a command changed. `None` when it
/// cannot be read (then no change is announced).
async fn snapshot(root: std::path::PathBuf) -> Option<crate::workspace::Snapshot> {
    tokio::task::spawn_blocking(move || {
        crate::workspace::Workspace::open(root)
            .and_then(|ws| ws.snapshot())
            .ok()
    })
    .await
    .ok()
    .flatten()
}

/// What the model is told, ahead of the person's next message, about files
/// they uploaded.
fn upload_note(paths: &[String]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("/workspace/{p}")).collect();
    format!("[The person uploaded: {}]", list.join(", "))
}

/// A user message with pending upload notes in front of it.
fn with_notes(notes: &[String], text: String) -> String {
    if notes.is_empty() {
        text
    } else {
        format!("{}\n\n{text}", notes.join("\n"))
    }
}

/// What the model is told about a finished command.
fn model_result(outcome: &ExecOutcome, timeout_secs: u64) -> String {
    let status = if outcome.cancelled {
        "[the person cancelled the command]".to_string()
    } else if outcome.timed_out {
        format!("[the command timed out after {timeout_secs} s and was killed]")
    } else {
        match outcome.exit_code {
            Some(code) => format!("[exit code {code}]"),
            None => "[the command was killed]".to_string(),
        }
    };
    if outcome.output_for_model.is_empty() {
        format!("{status}\n(no output)")
    } else {
        format!("{status}\n{}", outcome.output_for_model)
    }
}

/// Commands in fenced ```bash / ```sh / ```python blocks of a reply, for
/// models that cannot call tools natively.
pub fn fenced_calls(text: &str) -> Vec<ToolCallRequest> {
    let mut calls = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            continue;
        };
        let tool = match lang.trim().to_ascii_lowercase().as_str() {
            "bash" | "sh" | "shell" | "console" => Some(Tool::Shell),
            "python" | "python3" | "py" => Some(Tool::Python),
            _ => None,
        };
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.trim_start().starts_with("```") {
                break;
            }
            body.push(l);
        }
        let Some(tool) = tool else {
            continue;
        };
        let code = body.join("\n");
        if code.trim().is_empty() {
            continue;
        }
        let arguments = match tool {
            Tool::Shell => serde_json::json!({ "command": code }),
            Tool::Python => serde_json::json!({ "code": code }),
        };
        calls.push(ToolCallRequest {
            id: format!("call_{}", uuid::Uuid::new_v4().simple()),
            name: tool.as_str().to_string(),
            arguments,
        });
    }
    calls
}

/// Characters of the first message used as a session's title.
const TITLE_CHARS: usize = 60;

/// Rough bytes per token for the context budget; errs on the side of
/// trimming early.
const BYTES_PER_TOKEN: usize = 4;

/// What is sent to the model, and how much had to go to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct ContextWindow {
    pub messages: Vec<ChatMessage>,
    /// Old tool outputs replaced by a short note.
    pub trimmed_outputs: usize,
    /// Old messages left out entirely.
    pub dropped_messages: usize,
}

/// The messages to send: the system prompt, then as much of the
/// conversation as fits in `budget` bytes. The oldest tool outputs are cut
/// first; then the oldest exchanges are dropped. The latest message is
/// always kept.
pub fn context_window(system: &str, conversation: &[ChatMessage], budget: usize) -> ContextWindow {
    const TRIMMED: &str = "[output trimmed to fit the context window]";
    let mut msgs: Vec<ChatMessage> = conversation.to_vec();
    let mut total = msgs.iter().map(ChatMessage::weight).sum::<usize>() + system.len();
    let mut trimmed_outputs = 0;
    let mut i = 0;
    while total > budget && i + 1 < msgs.len() {
        if let ChatMessage::ToolResult { content, .. } = &mut msgs[i] {
            if content.len() > TRIMMED.len() {
                total -= content.len() - TRIMMED.len();
                *content = TRIMMED.to_string();
                trimmed_outputs += 1;
            }
        }
        i += 1;
    }
    // Drop whole leading exchanges, never splitting a tool call from its
    // result: cut at the next user message.
    let mut dropped_messages = 0;
    while total > budget {
        let next_user = msgs
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, m)| matches!(m, ChatMessage::User(_)))
            .map(|(i, _)| i);
        let Some(cut) = next_user else {
            break;
        };
        total -= msgs[..cut].iter().map(ChatMessage::weight).sum::<usize>();
        dropped_messages += cut;
        msgs.drain(..cut);
    }
    let mut messages = Vec::with_capacity(msgs.len() + 1);
    messages.push(ChatMessage::System(system.to_string()));
    messages.extend(msgs);
    ContextWindow {
        messages,
        trimmed_outputs,
        dropped_messages,
    }
}

/// Rebuild what the model sees from the stored events and the stored tool
/// results.
/// Returns the conversation and the upload notes not yet followed by a
/// message.
pub fn conversation_from_events(
    events: &[ServerEvent],
    results: &std::collections::HashMap<String, String>,
) -> (Vec<ChatMessage>, Vec<String>) {
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut pending: Vec<(String, String)> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
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
                out.push(ChatMessage::User(with_notes(&notes, text.clone())));
                notes.clear();
            }
            ServerEvent::FilesChanged {
                paths,
                uploaded: true,
            } => notes.push(upload_note(paths)),
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
    (out, notes)
}

/// Events that close what a previous run of the server left open: a turn
/// without `turn_done` and an approval without `approval_resolved` (the
/// process that was waiting for them is gone).
pub fn close_interrupted(events: &[ServerEvent]) -> Vec<ServerEvent> {
    let mut open_turn: Option<String> = None;
    let mut open_approvals: Vec<(String, String)> = Vec::new();
    for event in events {
        match event {
            ServerEvent::UserMessage { turn_id, .. } => open_turn = Some(turn_id.clone()),
            ServerEvent::TurnDone { .. } => open_turn = None,
            ServerEvent::ApprovalRequest {
                approval_id,
                call_id,
                ..
            } => open_approvals.push((approval_id.clone(), call_id.clone())),
            ServerEvent::ApprovalResolved { approval_id, .. } => {
                open_approvals.retain(|(a, _)| a != approval_id)
            }
            ServerEvent::Session { .. }
            | ServerEvent::History { .. }
            | ServerEvent::AssistantDelta { .. }
            | ServerEvent::AssistantMessage { .. }
            | ServerEvent::ToolCall { .. }
            | ServerEvent::ExecOutput { .. }
            | ServerEvent::ExecDone { .. }
            | ServerEvent::FilesChanged { .. }
            | ServerEvent::Log { .. }
            | ServerEvent::Error { .. } => {}
        }
    }
    let mut out: Vec<ServerEvent> = open_approvals
        .into_iter()
        .map(|(approval_id, call_id)| ServerEvent::ApprovalResolved {
            approval_id,
            call_id,
            decision: Resolution::Denied,
            by: DecidedBy::Policy,
        })
        .collect();
    if let Some(turn_id) = open_turn {
        out.push(ServerEvent::log(
            LogLevel::Warn,
            LogSource::System,
            "This turn was interrupted (the server stopped or the session restarted). Send a message to go on.",
        ));
        out.push(ServerEvent::TurnDone {
            turn_id,
            reason: TurnEndReason::Error,
        });
    }
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
                    let closing = close_interrupted(&events);
                    let (conversation, notes) = conversation_from_events(
                        &events.iter().chain(closing.iter()).cloned().collect::<Vec<_>>(),
                        &results,
                    );
                    act.conversation = conversation;
                    act.upload_notes = notes;
                    act.session = Some(session);
                    if !closing.is_empty() {
                        act.emit(ctx, closing);
                    }
                    // Sockets that stayed attached across a restart get a
                    // fresh picture.
                    let history = ServerEvent::History {
                        session_id: act.session_id.clone(),
                        events,
                    };
                    if !act.sockets.is_empty() {
                        let frame = act.session_frame(&act.username.clone());
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
            if let Stage::Executing(call) = turn.stage {
                self.sandbox.do_send(CancelExec { call_id: call.id });
            }
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
                    act.username = msg.username.clone();
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
            ClientMessage::ApprovalDecision {
                approval_id,
                decision,
                remember,
            } => {
                let socket_id = msg.socket_id;
                let decide = self.approval.send(Decide {
                    approval_id,
                    decision,
                    remember,
                });
                ctx.spawn(decide.into_actor(self).map(move |res, act, _| {
                    let message = match res {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "The approval could not be recorded; try again.".to_string(),
                    };
                    let err = ServerEvent::error("unknown_approval", message);
                    if let Some(s) = act.sockets.iter().find(|s| s.id == socket_id) {
                        if let Ok(text) = serde_json::to_string(&err) {
                            let _ = s.outbound.try_send(Outbound(text.into()));
                        }
                    }
                }));
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
                ..
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

impl Handler<ExecChunk> for AgentActor {
    type Result = ();

    /// Live command output: out to the sockets at once, kept coalesced for
    /// the history.
    fn handle(&mut self, msg: ExecChunk, ctx: &mut Context<Self>) {
        if !self.stage_is(&msg.call_id) {
            return;
        }
        let cap = self.settings.agent.stored_output_bytes;
        if let Some(turn) = self.turn.as_mut() {
            turn.output.push(msg.stream, &msg.data, cap);
        }
        self.send_live(
            ctx,
            ServerEvent::ExecOutput {
                call_id: msg.call_id,
                stream: msg.stream,
                data: msg.data,
            },
        );
    }
}

impl Handler<FilesUploaded> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: FilesUploaded, ctx: &mut Context<Self>) {
        self.upload_notes.push(upload_note(&msg.paths));
        self.emit(
            ctx,
            vec![ServerEvent::FilesChanged {
                paths: msg.paths,
                uploaded: true,
            }],
        );
    }
}

impl Handler<SandboxNotice> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SandboxNotice, ctx: &mut Context<Self>) {
        self.emit(
            ctx,
            vec![ServerEvent::log(msg.level, LogSource::Sandbox, msg.message)],
        );
    }
}

/// An event to store and send from a place that cannot wait for it.
#[derive(Message)]
#[rtype(result = "()")]
struct DeferredEvent(ServerEvent);

impl Handler<DeferredEvent> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: DeferredEvent, ctx: &mut Context<Self>) {
        self.emit(ctx, vec![msg.0]);
    }
}

impl Handler<SessionChanged> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SessionChanged, _: &mut Context<Self>) {
        self.session = Some(msg.session);
        let frame = self.session_frame(&self.username.clone());
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
            if let Stage::Executing(call) = turn.stage {
                self.sandbox.do_send(CancelExec { call_id: call.id });
            }
        }
        for s in self.sockets.drain(..) {
            s.control.do_send(Disconnect {
                code: "session_closed",
                message: msg.reason.clone(),
            });
        }
        // The workspace stays on the host; the container is made again on
        // the next command.
        self.sandbox.do_send(RemoveContainer);
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
        let (conv, _) = conversation_from_events(&events, &results);
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
        let budget = 3_000;
        let window = context_window("sys", &conv, budget);
        assert!(window.trimmed_outputs > 0 && window.dropped_messages > 0);
        let out = window.messages;
        assert!(matches!(&out[0], ChatMessage::System(s) if s == "sys"));
        assert!(out.iter().map(ChatMessage::weight).sum::<usize>() <= budget);
        assert_eq!(out.last(), conv.last(), "the latest message is kept whole");
        assert!(
            matches!(&out[1], ChatMessage::User(_)),
            "cut at an exchange boundary"
        );
        let small = context_window("sys", &conv[..3], 1_000_000);
        assert_eq!(small.messages.len(), 4);
        assert_eq!((small.trimmed_outputs, small.dropped_messages), (0, 0));
    }
}
