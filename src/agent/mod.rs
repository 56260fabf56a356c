//! The AgentActor: one per live session. It feeds what happens (the
//! person's frames, the model's stream, reviews, verdicts, command output)
//! to the session's [`TurnMachine`] and carries out the effects it answers
//! with: storing records, sending events to the tabs, and messages to its
//! peers. The turn logic itself lives in [`turn`]; what the model sees in
//! [`conversation`]; the tabs' fan-out in [`tabs`].
//!
//! Effects run strictly in order: a `Store` is awaited with `ctx.wait`, so
//! nothing is sent before it is stored and events never overtake each
//! other.
//!
//! The actor talks to the ProviderActor, ApprovalActor and SandboxActor
//! through [`Peers`], a set of `Recipient`s, so tests can stand in for any
//! of them. It runs under `actix::Supervisor`: if it stops on an error it
//! is restarted with the same address, reloads the conversation from the
//! database and re-sends `session` + `history` to the tabs still attached.
//!
//! Each command runs between two looks at the workspace by the session's
//! [`Undo`]: the checkpoint before it, and the scan after it that says
//! what it changed. A [`Revert`] is refused while a turn runs and, once
//! started, holds the actor (`ctx.wait`) until the restore is logged, so
//! no turn can start in the middle of it.
//!
//! Messages handled here: [`Attach`], [`Detach`], [`Inbound`],
//! [`SessionChanged`], [`FilesUploaded`], [`Revert`], [`Shutdown`],
//! [`InjectFailure`], and the peers' `ProviderEvent`, `ExecChunk` and
//! `SandboxNotice`.

pub mod conversation;
pub mod tabs;
pub mod turn;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::approval::{Decide, Review, ReviewCall, Reviewed, Verdict, Withdraw};
use crate::config::Settings;
use crate::db::checkpoints::{self, Retain};
use crate::db::journal::{self, Record};
use crate::db::queries::{self, ChatSession};
use crate::db::Db;
use crate::protocol::{
    ApprovalMode, CallId, ClientMessage, DecidedBy, ErrorCode, LogLevel, LogSource, Resolution,
    RevertOutcome, Risk, RiskLevel, ServerEvent, SessionId,
};
use crate::provider::{CancelCompletion, Complete, ProviderEvent, ToolCall};
use crate::risk::JudgedFile;
use crate::sandbox::{CancelExec, Exec, ExecChunk, SandboxError, SandboxNotice};
use crate::undo::{Undo, UndoError};
use crate::ws::{Disconnect, Outbound};
use tabs::Tabs;
use turn::{Effect, Input, Restore, ReviewOutcome, TurnConfig, TurnMachine};

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

/// Put the workspace back as it was just before a call (the revert
/// route). Refused while a turn runs.
#[derive(Message)]
#[rtype(result = "Result<RevertOutcome, UndoError>")]
pub struct Revert {
    pub call_id: CallId,
    /// Who asked, for the audit.
    pub by: String,
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

/// Where a [`Revert`]'s answer goes once its record is stored.
type RevertReply = tokio::sync::oneshot::Sender<Result<RevertOutcome, UndoError>>;

/// The agent's peers, as recipients so a test can stand in for any of them.
#[derive(Clone)]
pub struct Peers {
    pub complete: Recipient<Complete>,
    pub cancel_completion: Recipient<CancelCompletion>,
    pub review: Recipient<ReviewCall>,
    pub decide: Recipient<Decide>,
    pub withdraw: Recipient<Withdraw>,
    pub exec: Recipient<Exec>,
    pub cancel_exec: Recipient<CancelExec>,
}

pub struct AgentActor {
    session_id: SessionId,
    db: Db,
    settings: Arc<Settings>,
    peers: Peers,
    /// Loaded from the database in `started`.
    session: Option<ChatSession>,
    /// `None` until the session is loaded.
    machine: Option<TurnMachine>,
    /// Effects not yet carried out, in order.
    backlog: VecDeque<Effect>,
    /// A store is in flight; the backlog waits for it.
    storing: bool,
    tabs: Tabs,
    /// Set by `Shutdown` so the supervisor does not restart the actor.
    shutting_down: bool,
    /// The owner's name, for `session` frames (from the first socket).
    username: String,
    /// The session's checkpoints; shared with the blocking tasks that
    /// scan and restore.
    undo: Arc<Undo>,
    /// A revert waiting for its record to be stored before it answers.
    pending_revert: Option<(RevertReply, Result<RevertOutcome, UndoError>)>,
}

impl AgentActor {
    pub fn new(session_id: SessionId, db: Db, settings: Arc<Settings>, peers: Peers) -> Self {
        let undo = Arc::new(Undo::new(&settings, &session_id));
        AgentActor {
            undo,
            pending_revert: None,
            session_id,
            db,
            settings,
            peers,
            session: None,
            machine: None,
            backlog: VecDeque::new(),
            storing: false,
            tabs: Tabs::default(),
            shutting_down: false,
            username: String::new(),
        }
    }

    fn turn_config(&self) -> TurnConfig {
        let s = &self.settings;
        TurnConfig {
            system_prompt: s.agent.system_prompt.clone(),
            context_tokens: s.provider.context_tokens,
            max_steps: s.agent.max_steps,
            stored_output_bytes: s.agent.stored_output_bytes,
            exec_timeout_secs: s.sandbox.exec_timeout_secs,
            tools: s.provider.tools,
            undo: self.undo.keeps(),
        }
    }

    fn session_frame(&self) -> ServerEvent {
        let s = self.session.as_ref();
        ServerEvent::Session {
            session_id: self.session_id.clone(),
            title: s.map(|s| s.title.clone()).unwrap_or_default(),
            user: self.username.clone(),
            provider: self.settings.provider.kind.as_str().to_string(),
            model: self.model(),
            approval_mode: self.mode(),
        }
    }

    fn model(&self) -> String {
        self.session
            .as_ref()
            .map(|s| s.model.clone())
            .unwrap_or_else(|| self.settings.provider.model.clone())
    }

    fn mode(&self) -> ApprovalMode {
        self.session
            .as_ref()
            .map(|s| s.mode())
            .unwrap_or(ApprovalMode::Risky)
    }

    /// Feed one input to the machine and carry out what it answers.
    fn input(&mut self, ctx: &mut Context<Self>, input: Input) {
        let Some(machine) = self.machine.as_mut() else {
            return;
        };
        let effects = machine.step(input);
        self.backlog.extend(effects);
        self.carry_out(ctx);
    }

    /// Carry out the backlog in order, pausing at each store until it is
    /// written.
    fn carry_out(&mut self, ctx: &mut Context<Self>) {
        while !self.storing {
            let Some(effect) = self.backlog.pop_front() else {
                return;
            };
            match effect {
                Effect::Store(record) => self.store(ctx, record),
                Effect::Send(event) => self.tabs.broadcast(&event),
                Effect::Complete {
                    request,
                    messages,
                    tools,
                } => self.peers.complete.do_send(Complete {
                    request,
                    model: self.model(),
                    messages,
                    tools,
                    reply_to: ctx.address().recipient(),
                }),
                Effect::CancelCompletion { request } => self
                    .peers
                    .cancel_completion
                    .do_send(CancelCompletion { request }),
                Effect::Review(call) => self.review(ctx, call),
                Effect::Withdraw(approval_id) => {
                    self.peers.withdraw.do_send(Withdraw { approval_id })
                }
                Effect::Run(call, files) => self.run(ctx, call, files),
                Effect::CancelRun(call_id) => {
                    self.peers.cancel_exec.do_send(CancelExec { call_id })
                }
            }
        }
    }

    /// Write a record, then send its events and go on with the backlog.
    /// Nothing else is handled meanwhile.
    fn store(&mut self, ctx: &mut Context<Self>, record: Record) {
        self.storing = true;
        let write = self.db.write(self.session_id.clone(), record);
        ctx.wait(write.into_actor(self).map(|res, act, ctx| {
            act.storing = false;
            match res {
                Ok(record) => {
                    if let (Record::StartTurn { text, .. }, Some(session)) =
                        (&record, act.session.as_mut())
                    {
                        if session.title == queries::UNTITLED {
                            session.title = journal::title_from(text);
                        }
                    }
                    for event in record.events() {
                        act.tabs.broadcast(event);
                    }
                    if matches!(record, Record::Restore { .. }) {
                        if let Some((reply, outcome)) = act.pending_revert.take() {
                            let _ = reply.send(outcome);
                        }
                    }
                    if !record.checkpoints().is_empty() {
                        act.retain(ctx);
                    }
                    act.carry_out(ctx);
                }
                Err(e) => {
                    log::error!("session {}: could not store events: {e}", act.session_id);
                    if let Some((reply, _)) = act.pending_revert.take() {
                        let _ = reply.send(Err(UndoError::Storage(e)));
                    }
                    act.tabs.broadcast(&ServerEvent::error(
                        ErrorCode::StorageFailed,
                        "IronClaw could not save the conversation to its database, so the turn was stopped. Check the server's disk and log.",
                    ));
                    act.backlog.clear();
                    // A failing database is what a restart with a fresh
                    // reload is for.
                    ctx.stop();
                }
            }
        }));
    }

    /// Ask the ApprovalActor about a call; its answer, and later the
    /// person's verdict, come back as inputs.
    fn review(&mut self, ctx: &mut Context<Self>, call: ToolCall) {
        let call_id = call.id.clone();
        let mode = self.mode();
        let review = self.peers.review.send(ReviewCall { call, mode });
        ctx.spawn(review.into_actor(self).map(move |res, act, ctx| {
            let (risk, files, outcome) = match res {
                Ok(Reviewed {
                    risk,
                    files,
                    review,
                }) => match review {
                    Review::Decided(verdict) => (risk, files, ReviewOutcome::Decided(verdict)),
                    Review::Ask {
                        approval_id,
                        expires_at,
                        verdict,
                    } => {
                        let id = call_id.clone();
                        ctx.spawn(verdict.into_actor(act).map(move |res, act, ctx| {
                            // A dropped sender (approval actor restarted)
                            // denies: nothing runs unapproved.
                            let verdict = res.unwrap_or(Verdict {
                                resolution: Resolution::Denied,
                                by: DecidedBy::Policy,
                            });
                            act.input(
                                ctx,
                                Input::Verdict {
                                    call_id: id,
                                    verdict,
                                },
                            );
                        }));
                        (
                            risk,
                            files,
                            ReviewOutcome::Ask {
                                approval_id,
                                expires_at,
                            },
                        )
                    }
                },
                // The approval actor is gone: nothing runs unapproved.
                Err(_) => (
                    Risk {
                        level: RiskLevel::High,
                        reasons: vec!["the command could not be checked".into()],
                    },
                    Vec::new(),
                    ReviewOutcome::Decided(Verdict {
                        resolution: Resolution::Denied,
                        by: DecidedBy::Policy,
                    }),
                ),
            };
            act.input(
                ctx,
                Input::Reviewed {
                    call_id,
                    risk,
                    files,
                    mode,
                    outcome,
                },
            );
        }));
    }

    /// Run a call in the sandbox between two looks at the workspace: the
    /// checkpoint before it, and the scan after it that finds what it
    /// changed.
    fn run(&mut self, ctx: &mut Context<Self>, call: ToolCall, files: Vec<JudgedFile>) {
        let call_id = call.id.clone();
        let exec = Exec {
            call_id: call.id,
            tool: call.tool,
            code: call.code,
            files,
            timeout: Duration::from_secs(self.settings.sandbox.exec_timeout_secs),
            output: ctx.address().recipient(),
            model_output_cap: self.settings.agent.tool_output_for_model_bytes,
        };
        let sandbox = self.peers.exec.clone();
        let undo = self.undo.clone();
        let notices: Recipient<SandboxNotice> = ctx.address().recipient();
        ctx.spawn(
            async move {
                let outside = match blocking(undo.clone(), |u| u.before_exec()).await {
                    Ok(outside) => outside,
                    Err(e) => {
                        log::warn!("no checkpoint before a command: {e}");
                        notices.do_send(SandboxNotice {
                            level: LogLevel::Warn,
                            message: format!(
                                "No checkpoint could be taken before this command, so it cannot be undone: {e}"
                            ),
                        });
                        Vec::new()
                    }
                };
                let result = sandbox.send(exec).await.unwrap_or_else(|_| {
                    Err(SandboxError::ExecFailed {
                        detail: "the sandbox actor stopped".into(),
                    })
                });
                let changed = match blocking(undo, |u| u.after_exec()).await {
                    Ok(scanned) => {
                        if scanned.setid_cleared > 0 {
                            log::info!(
                                "cleared setuid/setgid bits on {} workspace file(s)",
                                scanned.setid_cleared
                            );
                        }
                        scanned.changes
                    }
                    Err(e) => {
                        log::warn!("could not tell what a command changed: {e}");
                        Vec::new()
                    }
                };
                (result, changed, outside)
            }
            .into_actor(self)
            .map(move |(result, changed, outside), act, ctx| {
                act.input(
                    ctx,
                    Input::ExecDone {
                        call_id,
                        result,
                        changed,
                        outside,
                    },
                )
            }),
        );
    }

    /// Drops the checkpoints past `undo.keep`, then past `undo.max_mb`,
    /// and the contents only they held; tells the tabs which calls can no
    /// longer be undone. Holds the actor, so no revert reads a checkpoint
    /// being dropped.
    fn retain(&mut self, ctx: &mut Context<Self>) {
        let db = self.db.clone();
        let undo = self.undo.clone();
        let session_id = self.session_id.clone();
        let keep = self.settings.undo.keep;
        let max_bytes = self.settings.undo.max_mb.saturating_mul(1024 * 1024);
        let work = async move {
            let mut gone = Vec::new();
            let mut retain = Retain::Newest(keep);
            loop {
                let sid = session_id.clone();
                let dropped = db
                    .run(move |c| checkpoints::drop_oldest(c, &sid, retain))
                    .await?;
                let nothing = dropped.calls.is_empty() && dropped.unreferenced.is_empty();
                gone.extend(dropped.calls);
                let unreferenced = dropped.unreferenced;
                let bytes = blocking(undo.clone(), move |u| Ok(u.collect(&unreferenced))).await?;
                if bytes <= max_bytes || (nothing && retain == Retain::DropOldest) {
                    break;
                }
                retain = Retain::DropOldest;
            }
            Ok::<_, UndoError>(gone)
        };
        ctx.wait(work.into_actor(self).map(|res, act, ctx| match res {
            Ok(gone) if gone.is_empty() => {}
            Ok(gone) => {
                let message = dropped_message(&gone, &act.settings);
                act.input(
                    ctx,
                    Input::Log(ServerEvent::log(LogLevel::Info, LogSource::System, message)),
                );
            }
            Err(e) => log::warn!(
                "session {}: checkpoint retention failed: {e}",
                act.session_id
            ),
        }));
    }

    /// Drop what is in flight (restart, shutdown): the stored log closes
    /// the turn on the next load.
    fn abandon(&mut self) {
        self.backlog.clear();
        let effects = self
            .machine
            .as_mut()
            .map(TurnMachine::abandon)
            .unwrap_or_default();
        for effect in effects {
            match effect {
                Effect::CancelCompletion { request } => self
                    .peers
                    .cancel_completion
                    .do_send(CancelCompletion { request }),
                Effect::CancelRun(call_id) => {
                    self.peers.cancel_exec.do_send(CancelExec { call_id })
                }
                Effect::Withdraw(approval_id) => {
                    self.peers.withdraw.do_send(Withdraw { approval_id })
                }
                Effect::Store(_)
                | Effect::Send(_)
                | Effect::Complete { .. }
                | Effect::Review(_)
                | Effect::Run(..) => {}
            }
        }
        self.machine = None;
    }
}

/// Runs undo's blocking work off the async threads.
async fn blocking<T: Send + 'static>(
    undo: Arc<Undo>,
    work: impl FnOnce(&Undo) -> Result<T, UndoError> + Send + 'static,
) -> Result<T, UndoError> {
    tokio::task::spawn_blocking(move || work(&undo))
        .await
        .map_err(|_| UndoError::Stopped)?
}

/// The log line when retention drops checkpoints.
fn dropped_message(gone: &[CallId], settings: &Settings) -> String {
    let shown: Vec<&str> = gone.iter().take(5).map(|c| c.as_str()).collect();
    let more = if gone.len() > shown.len() {
        format!(" and {} more", gone.len() - shown.len())
    } else {
        String::new()
    };
    format!(
        "Undo: the oldest checkpoints were dropped ({}{more}); those commands can no longer be undone. A session keeps {} checkpoints and {} MB (undo.keep, undo.max_mb).",
        shown.join(", "),
        settings.undo.keep,
        settings.undo.max_mb
    )
}

impl Actor for AgentActor {
    type Context = Context<Self>;

    /// Load the session and its log, rebuild the turn machine, and close
    /// what a previous run left open.
    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down {
            // Restarted by the supervisor after a deliberate stop because a
            // socket still held the address: stay idle until it lets go.
            return;
        }
        let load = self.db.load_agent_state(self.session_id.clone());
        ctx.wait(load.into_actor(self).map(|res, act, ctx| match res {
            Ok(journal::Stored {
                session: Some(session),
                events,
                results,
            }) => {
                act.session = Some(session);
                let (machine, effects) = TurnMachine::restore(act.turn_config(), &events, &results);
                act.machine = Some(machine);
                // Tabs that stayed attached across a restart get a fresh
                // picture.
                if !act.tabs.is_empty() {
                    let frame = act.session_frame();
                    act.tabs.broadcast(&frame);
                    act.tabs.broadcast(&history_frame(
                        act.session_id.clone(),
                        &events,
                        act.settings.server.history_events,
                    ));
                }
                act.backlog.extend(effects);
                act.carry_out(ctx);
            }
            Ok(journal::Stored { session: None, .. }) => {
                log::warn!("session {} no longer exists", act.session_id);
                act.shutting_down = true;
                ctx.stop();
            }
            Err(e) => {
                log::error!("session {}: cannot load: {e}", act.session_id);
                act.shutting_down = true;
                act.tabs.close_all(
                    ErrorCode::StorageFailed,
                    "IronClaw could not read this session from its database. Check the server's log.",
                );
                ctx.stop();
            }
        }));
    }
}

impl Supervised for AgentActor {
    /// Whatever was in flight is abandoned; the database has everything
    /// that was acknowledged, and `started` reloads it.
    fn restarting(&mut self, _: &mut Context<Self>) {
        log::warn!(
            "session {}: agent restarting; reloading from the database",
            self.session_id
        );
        self.abandon();
        self.storing = false;
        self.session = None;
    }
}

impl Handler<Attach> for AgentActor {
    type Result = ();

    /// Send `session` and `history`, then register the socket. Runs inside
    /// `ctx.wait`, so no live event can fall between the history and the
    /// registration.
    fn handle(&mut self, msg: Attach, ctx: &mut Context<Self>) {
        let history = self
            .db
            .latest_events(self.session_id.clone(), self.settings.server.history_events);
        ctx.wait(history.into_actor(self).map(move |res, act, _| {
            let page = match res {
                Ok(page) => page,
                Err(e) => {
                    log::error!("session {}: cannot load history: {e}", act.session_id);
                    msg.control.do_send(Disconnect {
                        code: ErrorCode::StorageFailed,
                        message: "IronClaw could not read this session from its database. Check the server's log.".into(),
                    });
                    return;
                }
            };
            act.username = msg.username.clone();
            let mut frames = vec![
                act.session_frame(),
                ServerEvent::History {
                    session_id: act.session_id.clone(),
                    events: page.events,
                    more: page.more,
                    before: page.before,
                },
            ];
            // A reply being streamed right now: catch the tab up.
            if let Some((turn_id, text)) = act.machine.as_ref().and_then(TurnMachine::partial) {
                frames.push(ServerEvent::AssistantDelta {
                    turn_id: turn_id.clone(),
                    text: text.to_string(),
                });
            }
            tabs::send_first_frames(&msg.outbound, &frames);
            act.tabs.attach(msg.socket_id, msg.outbound, msg.control);
        }));
    }
}

impl Handler<Detach> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Detach, _: &mut Context<Self>) {
        self.tabs.detach(msg.socket_id);
    }
}

impl Handler<Inbound> for AgentActor {
    type Result = ();

    /// A message or a cancel goes to the machine; an approval answer goes
    /// to the ApprovalActor, whose verdict reaches the machine from there.
    fn handle(&mut self, msg: Inbound, ctx: &mut Context<Self>) {
        match msg.message {
            ClientMessage::UserMessage { text, client_id } => {
                self.input(ctx, Input::UserMessage { text, client_id })
            }
            ClientMessage::Cancel => self.input(ctx, Input::Cancel),
            ClientMessage::ApprovalDecision {
                approval_id,
                decision,
                remember,
            } => {
                let socket_id = msg.socket_id;
                let decide = self.peers.decide.send(Decide {
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
                    act.tabs.send_to(
                        socket_id,
                        &ServerEvent::error(ErrorCode::UnknownApproval, message),
                    );
                }));
            }
        }
    }
}

impl Handler<ProviderEvent> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: ProviderEvent, ctx: &mut Context<Self>) {
        let input = match msg {
            ProviderEvent::Delta { request, text } => Input::Delta { request, text },
            ProviderEvent::Finished {
                request,
                tool_calls,
                length_limited,
            } => Input::Finished {
                request,
                tool_calls,
                length_limited,
            },
            ProviderEvent::Failed {
                request,
                error,
                output_started,
            } => Input::Failed {
                request,
                error,
                output_started,
            },
        };
        self.input(ctx, input);
    }
}

impl Handler<ExecChunk> for AgentActor {
    type Result = ();

    /// Live command output: out to the tabs at once, kept coalesced for
    /// the history.
    fn handle(&mut self, msg: ExecChunk, ctx: &mut Context<Self>) {
        self.input(
            ctx,
            Input::ExecChunk {
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
        self.input(ctx, Input::Uploaded(msg.paths));
    }
}

impl Handler<SandboxNotice> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SandboxNotice, ctx: &mut Context<Self>) {
        self.input(
            ctx,
            Input::Log(ServerEvent::log(msg.level, LogSource::Sandbox, msg.message)),
        );
    }
}

impl Handler<SessionChanged> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: SessionChanged, _: &mut Context<Self>) {
        self.session = Some(msg.session);
        let frame = self.session_frame();
        self.tabs.broadcast(&frame);
    }
}

impl Handler<Revert> for AgentActor {
    type Result = ResponseFuture<Result<RevertOutcome, UndoError>>;

    /// Looks up what changed since the call's checkpoint, restores it off
    /// the async threads, and logs the restore through the turn machine.
    /// The answer goes out once the restore is stored.
    fn handle(&mut self, msg: Revert, ctx: &mut Context<Self>) -> Self::Result {
        let idle = self.machine.as_ref().is_some_and(|m| !m.is_busy())
            && !self.storing
            && self.backlog.is_empty()
            && self.pending_revert.is_none();
        if !idle {
            return Box::pin(async { Err(UndoError::TurnRunning) });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let db = self.db.clone();
        let undo = self.undo.clone();
        let sid = self.session_id.clone();
        let call = msg.call_id.clone();
        let settings = self.settings.clone();
        let work = async move {
            let since = db
                .run(move |c| checkpoints::since(c, &sid, &call))
                .await?
                .map_err(|why| UndoError::missing(why, &settings))?;
            blocking(undo, move |u| u.revert(&since)).await
        };
        ctx.wait(work.into_actor(self).map(move |res, act, ctx| {
            let reverted = match res {
                Ok(reverted) => reverted,
                Err(e) => {
                    let _ = reply.send(Err(e));
                    return;
                }
            };
            let restore_id = CallId::fresh_restore();
            let outcome = RevertOutcome {
                call_id: msg.call_id.clone(),
                restore_id: restore_id.clone(),
                paths: reverted.applied.iter().map(|c| c.path.clone()).collect(),
            };
            if let Some(e) = &reverted.error {
                log::warn!("session {}: revert stopped part way: {e}", act.session_id);
            }
            let answer = match reverted.error {
                None => Ok(outcome),
                Some(e) => Err(e),
            };
            act.pending_revert = Some((reply, answer));
            act.input(
                ctx,
                Input::Restored(Restore {
                    call_id: msg.call_id,
                    restore_id,
                    by: msg.by,
                    outside: reverted.outside,
                    applied: reverted.applied,
                }),
            );
        }));
        Box::pin(async move { answer.await.unwrap_or(Err(UndoError::Stopped)) })
    }
}

impl Handler<Shutdown> for AgentActor {
    type Result = ();

    fn handle(&mut self, msg: Shutdown, ctx: &mut Context<Self>) {
        self.shutting_down = true;
        self.abandon();
        self.tabs.close_all(ErrorCode::SessionClosed, &msg.reason);
        // The supervisor removes the container; the workspace stays.
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

/// The `history` frame for tabs that stayed attached across a restart: the
/// latest `limit` of the events just loaded. Without sequence numbers at
/// hand it offers no cursor; the page can page back from its own oldest
/// event after a reload.
fn history_frame(session_id: SessionId, events: &[ServerEvent], limit: usize) -> ServerEvent {
    let start = events.len().saturating_sub(limit);
    ServerEvent::History {
        session_id,
        events: events[start..].to_vec(),
        more: start > 0,
        before: None,
    }
}

#[cfg(test)]
mod tests {
    //! The actor with stand-ins for its peers: a real SQLite file, but no
    //! model server, no approval logic and no Docker. What the tab sees is
    //! what a browser would.

    use std::sync::Mutex;

    use super::*;
    use crate::approval::{ApprovalError, Reviewed};
    use crate::protocol::{CallId, Risk, RiskLevel, Tool};
    use crate::sandbox::ExecOutcome;

    type Frames = Arc<Mutex<Vec<serde_json::Value>>>;

    /// Replies with a tool call first, then with text.
    struct Model {
        calls: usize,
    }
    impl Actor for Model {
        type Context = Context<Self>;
    }
    impl Handler<Complete> for Model {
        type Result = ();
        fn handle(&mut self, msg: Complete, _: &mut Context<Self>) {
            self.calls += 1;
            let (text, tool_calls) = if self.calls == 1 {
                let call = ToolCall {
                    id: CallId::fresh_call(),
                    tool: Tool::Shell,
                    code: "echo hi".into(),
                };
                ("Looking. ", vec![call])
            } else {
                ("It said hi.", vec![])
            };
            let request = msg.request;
            msg.reply_to.do_send(ProviderEvent::Delta {
                request,
                text: text.into(),
            });
            msg.reply_to.do_send(ProviderEvent::Finished {
                request,
                tool_calls,
                length_limited: false,
            });
        }
    }
    impl Handler<CancelCompletion> for Model {
        type Result = ();
        fn handle(&mut self, _: CancelCompletion, _: &mut Context<Self>) {}
    }

    /// Judges everything low and lets it run.
    struct Approver;
    impl Actor for Approver {
        type Context = Context<Self>;
    }
    impl Handler<ReviewCall> for Approver {
        type Result = MessageResult<ReviewCall>;
        fn handle(&mut self, _: ReviewCall, _: &mut Context<Self>) -> Self::Result {
            MessageResult(Reviewed {
                risk: Risk {
                    level: RiskLevel::Low,
                    reasons: vec!["reads only".into()],
                },
                files: vec![],
                review: Review::Decided(Verdict {
                    resolution: Resolution::Approved,
                    by: DecidedBy::Policy,
                }),
            })
        }
    }
    impl Handler<Decide> for Approver {
        type Result = Result<(), ApprovalError>;
        fn handle(&mut self, _: Decide, _: &mut Context<Self>) -> Self::Result {
            Err(ApprovalError::Unknown)
        }
    }
    impl Handler<Withdraw> for Approver {
        type Result = ();
        fn handle(&mut self, _: Withdraw, _: &mut Context<Self>) {}
    }

    /// Prints `hi` for any command.
    struct Sandbox;
    impl Actor for Sandbox {
        type Context = Context<Self>;
    }
    impl Handler<Exec> for Sandbox {
        type Result = Result<ExecOutcome, SandboxError>;
        fn handle(&mut self, msg: Exec, _: &mut Context<Self>) -> Self::Result {
            msg.output.do_send(ExecChunk {
                call_id: msg.call_id,
                stream: crate::protocol::OutputStream::Stdout,
                data: "hi\n".into(),
            });
            Ok(ExecOutcome {
                exit_code: Some(0),
                timed_out: false,
                cancelled: false,
                duration_ms: 1,
                output_for_model: "hi\n".into(),
            })
        }
    }
    impl Handler<CancelExec> for Sandbox {
        type Result = ();
        fn handle(&mut self, _: CancelExec, _: &mut Context<Self>) {}
    }

    /// A browser tab that keeps every frame.
    struct Tab(Frames);
    impl Actor for Tab {
        type Context = Context<Self>;
    }
    impl Handler<Outbound> for Tab {
        type Result = ();
        fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
            if let (Ok(v), Ok(mut frames)) = (serde_json::from_str(&msg.0), self.0.lock()) {
                frames.push(v);
            }
        }
    }
    impl Handler<Disconnect> for Tab {
        type Result = ();
        fn handle(&mut self, _: Disconnect, _: &mut Context<Self>) {}
    }

    #[actix_rt::test]
    async fn a_turn_runs_with_stand_ins_for_every_peer() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = Settings::load(None).unwrap();
        settings.data.dir = dir.path().to_path_buf();
        let db = Db::start(
            crate::db::test_postgres(dir.path()).unwrap_or_else(|| dir.path().join("t.db").into()),
        )
        .unwrap();
        let session = db
            .run(|c| {
                let user = queries::create_user(c, "alice", "h", ApprovalMode::Risky)?;
                queries::create_session(c, user.user_id(), None, "m", ApprovalMode::Risky)
            })
            .await
            .unwrap();
        let (model, approver, sandbox) = (
            Model { calls: 0 }.start(),
            Approver.start(),
            Sandbox.start(),
        );
        let peers = Peers {
            complete: model.clone().recipient(),
            cancel_completion: model.recipient(),
            review: approver.clone().recipient(),
            decide: approver.clone().recipient(),
            withdraw: approver.recipient(),
            exec: sandbox.clone().recipient(),
            cancel_exec: sandbox.recipient(),
        };
        let agent =
            AgentActor::new(session.id.clone(), db.clone(), Arc::new(settings), peers).start();
        let frames: Frames = Arc::default();
        let tab = Tab(frames.clone()).start();
        agent.do_send(Attach {
            socket_id: 1,
            username: "alice".into(),
            outbound: tab.clone().recipient(),
            control: tab.recipient(),
        });
        agent.do_send(Inbound {
            socket_id: 1,
            message: ClientMessage::UserMessage {
                text: "say hi".into(),
                client_id: None,
            },
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let kinds = loop {
            let kinds: Vec<String> = frames
                .lock()
                .unwrap()
                .iter()
                .map(|f| f["type"].as_str().unwrap_or_default().to_string())
                .collect();
            if kinds.last().map(String::as_str) == Some("turn_done")
                || std::time::Instant::now() > deadline
            {
                break kinds;
            }
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(
            kinds,
            [
                "session",
                "history",
                "user_message",
                "assistant_delta",
                "assistant_message",
                "tool_call",
                "exec_output",
                "exec_done",
                "assistant_delta",
                "assistant_message",
                "turn_done"
            ]
        );
        // Everything but the deltas and the live output is in the database,
        // in the order the tab saw it.
        let sid = session.id.clone();
        let stored = db
            .run(move |c| queries::list_events(c, &sid))
            .await
            .unwrap();
        let stored: Vec<&str> = stored.iter().map(ServerEvent::kind).collect();
        assert_eq!(
            stored,
            [
                "user_message",
                "assistant_message",
                "tool_call",
                "exec_output",
                "exec_done",
                "assistant_message",
                "turn_done"
            ]
        );
        let titled = db
            .run(move |c| queries::load_session(c, &session.id))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(titled.title, "say hi");
        // The command's snapshot mounted the workspace's quota filesystem.
        crate::quota::detach_all(&dir.path().join("workspaces"));
    }
}
