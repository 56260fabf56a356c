//! The turn machine: the state of a session's conversation loop as data,
//! and [`TurnMachine::step`], which answers each [`Input`] with the
//! [`Effect`]s to carry out, in order. It does no I/O and holds no actor
//! address, so whole turns are driven in unit tests; the AgentActor
//! (`agent/mod.rs`) only feeds it inputs and carries out its effects.
//!
//! A turn: the person's message is stored and the model is asked. Its
//! reply streams as deltas. A reply with tool calls has them reviewed one
//! at a time (risk and policy, maybe the person), run if approved, and
//! answered; then the model is asked again. The turn ends when the model
//! answers in text, the step limit is hit, something fails, or the person
//! cancels. Messages sent meanwhile wait in a queue, each its own turn.
//!
//! Everything the model sees is stored first: the machine folds each
//! [`Record`] it emits into its [`Conversation`], the same fold a restart
//! runs over the stored log, so the two never differ.

use std::collections::VecDeque;

use crate::approval::Verdict;
use crate::db::checkpoints::{CheckpointKind, NewCheckpoint};
use crate::db::journal::{NewToolCall, Record};
use crate::protocol::{
    ApprovalId, ApprovalMode, CallId, ClientMessageId, DecidedBy, ErrorCode, LogLevel, LogSource,
    OutputStream, Resolution, Risk, RiskLevel, ServerEvent, TurnEndReason, TurnId,
};
use crate::provider::{ChatMessage, ProviderError, ToolCall};
use crate::risk::JudgedFile;
use crate::sandbox::{ExecOutcome, SandboxError};
use crate::undo::Change;

use super::conversation::{self, Conversation};

/// What a turn needs to know of the settings.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    pub system_prompt: String,
    /// `provider.context_tokens`: the model's context, in tokens.
    pub context_tokens: usize,
    /// `agent.max_steps`: model calls in one turn.
    pub max_steps: u32,
    /// `agent.stored_output_bytes`: a command's output kept in history.
    pub stored_output_bytes: usize,
    /// `sandbox.exec_timeout_secs`, to tell the model why a command died.
    pub exec_timeout_secs: u64,
    /// `provider.tools`: offer native tools (else fenced blocks).
    pub tools: bool,
    /// Undo keeps checkpoints (`undo.keep` > 0): log them with the
    /// commands.
    pub undo: bool,
}

/// Something that happened, for the machine to answer.
#[derive(Debug)]
pub enum Input {
    /// A message from the person, with the id its page gave it (echoed
    /// back so the page can match its optimistic copy).
    UserMessage {
        text: String,
        client_id: Option<ClientMessageId>,
    },
    /// The person uploaded files into the workspace.
    Uploaded(Vec<String>),
    /// A line for the log panel (sandbox lifecycle notices).
    Log(ServerEvent),
    /// A fragment of the model's reply.
    Delta { request: u64, text: String },
    /// The model's reply is complete.
    Finished {
        request: u64,
        tool_calls: Vec<ToolCall>,
        /// It stopped at the output limit, so its text may be cut short.
        length_limited: bool,
    },
    /// The model's request failed.
    Failed {
        request: u64,
        error: ProviderError,
        output_started: bool,
    },
    /// The ApprovalActor judged a call.
    Reviewed {
        call_id: CallId,
        risk: Risk,
        /// The workspace files the risk rests on, with their hashes.
        files: Vec<JudgedFile>,
        mode: ApprovalMode,
        outcome: ReviewOutcome,
    },
    /// A pending approval was answered (or expired).
    Verdict { call_id: CallId, verdict: Verdict },
    /// Live output of the running command.
    ExecChunk {
        call_id: CallId,
        stream: OutputStream,
        data: String,
    },
    /// The command ended. `changed` is what it did to the workspace;
    /// `outside`, what the look before it found changed since the last
    /// command (uploads, deletes through the file routes).
    ExecDone {
        call_id: CallId,
        result: Result<ExecOutcome, SandboxError>,
        changed: Vec<Change>,
        outside: Vec<Change>,
    },
    /// The person put the workspace back as it was before `call_id`.
    Restored(Restore),
    /// The person pressed stop.
    Cancel,
}

/// A revert that was carried out, for the log and the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Restore {
    /// The call (or restore) whose checkpoint the workspace went back to.
    pub call_id: CallId,
    /// The restore's own id.
    pub restore_id: CallId,
    /// The person who asked.
    pub by: String,
    /// Changes made between commands, found by the look before it.
    pub outside: Vec<Change>,
    /// What the restore changed.
    pub applied: Vec<Change>,
}

/// What a review decided.
#[derive(Debug, Clone, PartialEq)]
pub enum ReviewOutcome {
    /// Policy decided at once.
    Decided(Verdict),
    /// The person is asked; an [`Input::Verdict`] follows.
    Ask {
        approval_id: ApprovalId,
        expires_at: String,
    },
}

/// Something for the actor to do. Effects are carried out in order; a
/// `Store` finishes (and its events are sent) before the next begins.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Store the record, then send its events to every tab.
    Store(Record),
    /// Send to every tab without storing (deltas, live output).
    Send(ServerEvent),
    /// Ask the model for the next step.
    Complete {
        request: u64,
        messages: Vec<ChatMessage>,
        tools: bool,
    },
    /// Drop a running model request.
    CancelCompletion { request: u64 },
    /// Have the ApprovalActor judge a call; answers [`Input::Reviewed`].
    Review(ToolCall),
    /// Drop a pending approval nobody waits for any more.
    Withdraw(ApprovalId),
    /// Run the call in the sandbox, only while the judged files still have
    /// their hashes; answers chunks and [`Input::ExecDone`].
    Run(ToolCall, Vec<JudgedFile>),
    /// Kill the running call.
    CancelRun(CallId),
}

/// What the turn waits for.
#[derive(Debug, Clone, PartialEq)]
enum Stage {
    /// The model's reply.
    Model,
    /// The ApprovalActor's judgement of the call.
    Reviewing(ToolCall),
    /// The person's answer.
    Awaiting(ToolCall, ApprovalId),
    /// The command.
    Executing(ToolCall),
}

/// The turn in progress.
#[derive(Debug)]
struct Turn {
    id: TurnId,
    /// Model calls made so far.
    steps: u32,
    /// The model request whose events are current; others are stale.
    request: u64,
    /// Reply text of the current step so far.
    partial: String,
    /// Calls of the current step still to review, in order.
    calls: VecDeque<ToolCall>,
    stage: Stage,
    /// `cancel` came while a command ran: end once the sandbox says it
    /// stopped.
    cancelled: bool,
    /// The running command's output, coalesced for the history.
    output: OutputLog,
    /// The person has been told this turn's context was trimmed.
    context_noted: bool,
    /// The files the current call was judged on (what the approval covers).
    judged: Vec<JudgedFile>,
    /// The current call was judged more than read-only: it gets a
    /// checkpoint even if it changes nothing.
    may_change: bool,
}

/// Told to the person when a reply stopped at the model's output limit.
pub const CUT_SHORT: &str = "The model's reply stopped at its length limit, so it may end mid-sentence. Ask it to go on, or raise provider.max_tokens.";
/// Told to the model for a call that was not run because the turn was
/// cancelled.
pub const CANCELLED: &str = "The person cancelled the turn; the command was not run.";
/// Told to the model for a denied call.
pub const DENIED: &str = "The person denied this command, so it was not run. Do not retry it; ask them or choose another way.";
/// Told to the model for an approval nobody answered.
pub const TIMED_OUT: &str =
    "The person did not answer the approval request in time, so the command was not run.";

/// Messages that may wait behind the running turn. Each can be up to
/// `server.max_frame_bytes`; a person rarely queues more than a few, and a
/// turn stuck on an approval must not let a client pile up memory.
pub const MAX_QUEUED_MESSAGES: usize = 20;

/// A message waiting behind the running turn.
#[derive(Debug)]
struct Queued {
    /// Already trimmed, never blank.
    text: String,
    /// Goes out on the echo when its turn starts.
    client_id: Option<ClientMessageId>,
}

/// A session's conversation loop.
#[derive(Debug)]
pub struct TurnMachine {
    config: TurnConfig,
    conversation: Conversation,
    /// Messages waiting for the running turn to end.
    queue: VecDeque<Queued>,
    turn: Option<Turn>,
    next_request: u64,
    /// Cleared when the model turns out not to support native tools.
    tools: bool,
    /// Effects of the input being answered.
    out: Vec<Effect>,
}

impl TurnMachine {
    /// The machine of a session loaded from its stored log: the
    /// conversation folded from it, and the effects that close what a
    /// previous run left open (a turn without an end, an approval nobody
    /// will answer now).
    pub fn restore(
        config: TurnConfig,
        events: &[ServerEvent],
        results: &std::collections::HashMap<CallId, String>,
    ) -> (Self, Vec<Effect>) {
        let tools = config.tools;
        let mut machine = TurnMachine {
            config,
            conversation: Conversation::rebuild(events, results),
            queue: VecDeque::new(),
            turn: None,
            next_request: 0,
            tools,
            out: Vec::new(),
        };
        let closing = conversation::close_interrupted(events);
        if !closing.is_empty() {
            machine.store(Record::Events(closing));
        }
        let effects = std::mem::take(&mut machine.out);
        (machine, effects)
    }

    /// Answer one input.
    pub fn step(&mut self, input: Input) -> Vec<Effect> {
        match input {
            Input::UserMessage { text, client_id } => self.on_user_message(text, client_id),
            Input::Uploaded(paths) => self.store(Record::Events(vec![ServerEvent::FilesChanged {
                paths,
                uploaded: true,
                call_id: None,
                changes: Vec::new(),
            }])),
            Input::Log(event) => self.store(Record::Events(vec![event])),
            Input::Delta { request, text } => self.on_delta(request, text),
            Input::Finished {
                request,
                tool_calls,
                length_limited,
            } => self.on_finished(request, tool_calls, length_limited),
            Input::Failed {
                request,
                error,
                output_started,
            } => self.on_failed(request, error, output_started),
            Input::Reviewed {
                call_id,
                risk,
                files,
                mode,
                outcome,
            } => self.on_reviewed(call_id, risk, files, mode, outcome),
            Input::Verdict { call_id, verdict } => self.on_verdict(call_id, verdict),
            Input::ExecChunk {
                call_id,
                stream,
                data,
            } => self.on_chunk(call_id, stream, data),
            Input::ExecDone {
                call_id,
                result,
                changed,
                outside,
            } => self.on_exec_done(call_id, result, changed, outside),
            Input::Restored(restore) => self.on_restored(restore),
            Input::Cancel => self.cancel(),
        }
        std::mem::take(&mut self.out)
    }

    /// Drop whatever is in flight without storing anything (the actor is
    /// restarting or shutting down; the stored log closes the turn on the
    /// next load).
    pub fn abandon(&mut self) -> Vec<Effect> {
        let mut effects = Vec::new();
        if let Some(turn) = self.turn.take() {
            effects.push(Effect::CancelCompletion {
                request: turn.request,
            });
            match turn.stage {
                Stage::Executing(call) => effects.push(Effect::CancelRun(call.id)),
                Stage::Awaiting(_, approval_id) => effects.push(Effect::Withdraw(approval_id)),
                Stage::Model | Stage::Reviewing(_) => {}
            }
        }
        self.queue.clear();
        effects
    }

    /// The conversation as the model sees it now.
    pub fn conversation(&self) -> &Conversation {
        &self.conversation
    }

    /// Whether a turn is running.
    pub fn is_busy(&self) -> bool {
        self.turn.is_some()
    }

    /// The running turn's reply so far, to catch up a tab that attaches
    /// mid-stream.
    pub fn partial(&self) -> Option<(&TurnId, &str)> {
        self.turn
            .as_ref()
            .filter(|t| !t.partial.is_empty())
            .map(|t| (&t.id, t.partial.as_str()))
    }

    fn store(&mut self, record: Record) {
        self.conversation.record(&record);
        self.out.push(Effect::Store(record));
    }

    fn on_user_message(&mut self, text: String, client_id: Option<ClientMessageId>) {
        let text = text.trim().to_string();
        if text.is_empty() {
            return;
        }
        if self.turn.is_some() && self.queue.len() >= MAX_QUEUED_MESSAGES {
            self.out.push(Effect::Send(ServerEvent::error(
                ErrorCode::QueueFull,
                format!(
                    "{MAX_QUEUED_MESSAGES} messages already wait for the running turn, so this one was not taken. Wait for the turn to finish, or cancel it."
                ),
            )));
            return;
        }
        self.queue.push_back(Queued { text, client_id });
        self.start_next_turn();
    }

    fn start_next_turn(&mut self) {
        if self.turn.is_some() {
            return;
        }
        let Some(Queued { text, client_id }) = self.queue.pop_front() else {
            return;
        };
        let id = TurnId::random();
        self.turn = Some(Turn {
            id: id.clone(),
            steps: 0,
            request: 0,
            partial: String::new(),
            calls: VecDeque::new(),
            stage: Stage::Model,
            cancelled: false,
            output: OutputLog::default(),
            context_noted: false,
            judged: Vec::new(),
            may_change: false,
        });
        self.store(Record::StartTurn {
            message: ServerEvent::UserMessage {
                turn_id: id,
                text: text.clone(),
                client_id,
            },
            text,
        });
        self.request_completion();
    }

    /// Ask the model for the next step of the turn.
    fn request_completion(&mut self) {
        let max_steps = self.config.max_steps;
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        if turn.steps >= max_steps {
            let message = format!(
                "The turn was stopped after {max_steps} model steps (agent.max_steps). Send a message to continue."
            );
            self.end_turn(
                TurnEndReason::Error,
                vec![
                    ServerEvent::log(LogLevel::Warn, LogSource::Agent, message.clone()),
                    ServerEvent::error(ErrorCode::StepLimit, message),
                ],
            );
            return;
        }
        turn.steps += 1;
        self.next_request += 1;
        turn.request = self.next_request;
        turn.partial.clear();
        turn.stage = Stage::Model;
        let window = conversation::context_window(
            &self.config.system_prompt,
            &self.conversation.messages(),
            self.config.context_tokens * conversation::BYTES_PER_TOKEN,
        );
        let note =
            (window.trimmed_outputs > 0 || window.dropped_messages > 0) && !turn.context_noted;
        turn.context_noted |= note;
        if note {
            let note = format!(
                "The conversation is longer than the model's context (provider.context_tokens = {}): {} old command output(s) were shortened and {} old message(s) left out of what the model sees. Everything is still in the history.",
                self.config.context_tokens, window.trimmed_outputs, window.dropped_messages
            );
            self.store(Record::Events(vec![ServerEvent::log(
                LogLevel::Info,
                LogSource::Agent,
                note,
            )]));
        }
        self.out.push(Effect::Complete {
            request: self.next_request,
            messages: window.messages,
            tools: self.tools,
        });
    }

    /// End the running turn with `reason` after `events`, then start the
    /// next queued one.
    fn end_turn(&mut self, reason: TurnEndReason, mut events: Vec<ServerEvent>) {
        let Some(turn) = self.turn.take() else {
            return;
        };
        events.push(ServerEvent::TurnDone {
            turn_id: turn.id,
            reason,
        });
        self.store(Record::Events(events));
        self.start_next_turn();
    }

    /// The running turn, if `request` is its current model request.
    fn current(&mut self, request: u64) -> Option<&mut Turn> {
        self.turn
            .as_mut()
            .filter(|t| t.request == request && t.stage == Stage::Model)
    }

    /// The partial reply of a step that did not finish, as its stored
    /// `assistant_message`.
    fn take_partial(&mut self) -> Option<ServerEvent> {
        let turn = self.turn.as_mut()?;
        let text = std::mem::take(&mut turn.partial);
        (!text.is_empty()).then(|| ServerEvent::AssistantMessage {
            turn_id: turn.id.clone(),
            text,
        })
    }

    fn on_delta(&mut self, request: u64, text: String) {
        let Some(turn) = self.current(request) else {
            return;
        };
        turn.partial.push_str(&text);
        let event = ServerEvent::AssistantDelta {
            turn_id: turn.id.clone(),
            text,
        };
        self.out.push(Effect::Send(event));
    }

    fn on_finished(&mut self, request: u64, mut tool_calls: Vec<ToolCall>, length_limited: bool) {
        let tools = self.tools;
        let Some(turn) = self.current(request) else {
            return;
        };
        let text = std::mem::take(&mut turn.partial);
        if tool_calls.is_empty() && !tools {
            // A model without native tools asks for commands in fenced code
            // blocks; they take the same approval and execution path.
            tool_calls = conversation::fenced_calls(&text);
        }
        let mut events: Vec<ServerEvent> = (!text.is_empty())
            .then(|| ServerEvent::AssistantMessage {
                turn_id: turn.id.clone(),
                text,
            })
            .into_iter()
            .collect();
        if length_limited {
            events.push(ServerEvent::log(
                LogLevel::Warn,
                LogSource::Provider,
                CUT_SHORT,
            ));
        }
        if tool_calls.is_empty() {
            self.end_turn(TurnEndReason::Completed, events);
            return;
        }
        turn.calls = tool_calls.into();
        if !events.is_empty() {
            self.store(Record::Events(events));
        }
        self.next_call();
    }

    fn on_failed(&mut self, request: u64, error: ProviderError, output_started: bool) {
        let tools = self.tools;
        let Some(turn) = self.current(request) else {
            return;
        };
        if matches!(error, ProviderError::ToolsUnsupported) && tools && !output_started {
            // The model cannot call tools: carry on without them, in the
            // same step.
            turn.steps = turn.steps.saturating_sub(1);
            self.tools = false;
            self.store(Record::Events(vec![ServerEvent::log(
                LogLevel::Warn,
                LogSource::Provider,
                "The model does not support tool calling; continuing without tools: it can ask for commands in fenced code blocks.",
            )]));
            self.request_completion();
            return;
        }
        let message = error.to_string();
        let mut events: Vec<ServerEvent> = self.take_partial().into_iter().collect();
        events.push(ServerEvent::log(
            LogLevel::Error,
            LogSource::Provider,
            message.clone(),
        ));
        events.push(ServerEvent::error(error.code(), message));
        self.end_turn(TurnEndReason::Error, events);
    }

    /// Review the next call of the step, or ask the model for the next step
    /// when all have been answered.
    fn next_call(&mut self) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        match turn.calls.pop_front() {
            Some(call) => {
                turn.stage = Stage::Reviewing(call.clone());
                self.out.push(Effect::Review(call));
            }
            None => self.request_completion(),
        }
    }

    fn on_reviewed(
        &mut self,
        call_id: CallId,
        risk: Risk,
        files: Vec<JudgedFile>,
        mode: ApprovalMode,
        outcome: ReviewOutcome,
    ) {
        let current = self.turn.as_ref().and_then(|t| match &t.stage {
            Stage::Reviewing(c) if c.id == call_id => Some((t.id.clone(), c.clone())),
            Stage::Model | Stage::Reviewing(_) | Stage::Awaiting(..) | Stage::Executing(_) => None,
        });
        let Some((turn_id, call)) = current else {
            // The turn moved on (cancelled): nobody will answer a request
            // opened for it.
            if let ReviewOutcome::Ask { approval_id, .. } = outcome {
                self.out.push(Effect::Withdraw(approval_id));
            }
            return;
        };
        if let Some(turn) = self.turn.as_mut() {
            turn.judged = files;
            turn.may_change = risk.level != RiskLevel::Low;
        }
        let mut events = vec![ServerEvent::ToolCall {
            turn_id: turn_id.clone(),
            call_id: call.id.clone(),
            tool: call.tool,
            code: call.code.clone(),
            risk: risk.clone(),
            approval_mode: Some(mode),
        }];
        let new_call = NewToolCall {
            turn_id,
            call_id: call.id.clone(),
            tool: call.tool,
            code: call.code.clone(),
            risk: risk.clone(),
            mode,
        };
        match outcome {
            ReviewOutcome::Decided(verdict) => {
                self.store(Record::StartToolCall {
                    call: new_call,
                    events,
                });
                self.settle(call, None, verdict);
            }
            ReviewOutcome::Ask {
                approval_id,
                expires_at,
            } => {
                events.push(ServerEvent::ApprovalRequest {
                    approval_id: approval_id.clone(),
                    call_id: call.id.clone(),
                    tool: call.tool,
                    code: call.code.clone(),
                    risk,
                    expires_at,
                });
                if let Some(turn) = self.turn.as_mut() {
                    turn.stage = Stage::Awaiting(call, approval_id);
                }
                self.store(Record::StartToolCall {
                    call: new_call,
                    events,
                });
            }
        }
    }

    fn on_verdict(&mut self, call_id: CallId, verdict: Verdict) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let Stage::Awaiting(call, approval_id) = turn.stage.clone() else {
            return;
        };
        if call.id != call_id {
            return;
        }
        self.settle(call, Some(approval_id), verdict);
    }

    /// Store a call's decision; run it, or tell the model it was not run.
    fn settle(&mut self, call: ToolCall, approval_id: Option<ApprovalId>, verdict: Verdict) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        let events: Vec<ServerEvent> = approval_id
            .map(|approval_id| ServerEvent::ApprovalResolved {
                approval_id,
                call_id: call.id.clone(),
                decision: verdict.resolution,
                by: verdict.by,
            })
            .into_iter()
            .collect();
        let refusal = match verdict.resolution {
            Resolution::Approved => None,
            Resolution::Denied => Some(DENIED),
            Resolution::TimedOut => Some(TIMED_OUT),
        };
        let judged = std::mem::take(&mut turn.judged);
        if refusal.is_none() {
            turn.stage = Stage::Executing(call.clone());
            turn.output = OutputLog::default();
        }
        self.store(Record::SettleDecision {
            call_id: call.id.clone(),
            decision: verdict.resolution,
            by: verdict.by,
            result: refusal.map(str::to_string),
            events,
        });
        match refusal {
            None => self.out.push(Effect::Run(call, judged)),
            Some(_) => self.next_call(),
        }
    }

    fn on_chunk(&mut self, call_id: CallId, stream: OutputStream, data: String) {
        let cap = self.config.stored_output_bytes;
        let Some(turn) = self
            .turn
            .as_mut()
            .filter(|t| matches!(&t.stage, Stage::Executing(c) if c.id == call_id))
        else {
            return;
        };
        turn.output.push(stream, &data, cap);
        self.out.push(Effect::Send(ServerEvent::ExecOutput {
            call_id,
            stream,
            data,
        }));
    }

    fn on_exec_done(
        &mut self,
        call_id: CallId,
        result: Result<ExecOutcome, SandboxError>,
        changed: Vec<Change>,
        outside: Vec<Change>,
    ) {
        let timeout_secs = self.config.exec_timeout_secs;
        let Some(turn) = self
            .turn
            .as_mut()
            .filter(|t| matches!(&t.stage, Stage::Executing(c) if c.id == call_id))
        else {
            return;
        };
        let cancelled = turn.cancelled;
        let may_change = turn.may_change;
        let output = std::mem::take(&mut turn.output).into_events(&call_id);
        turn.stage = Stage::Model;
        let mut events = Vec::new();
        let (exit_code, result, fatal) = match result {
            Ok(outcome) => {
                events.push(ServerEvent::ExecDone {
                    call_id: call_id.clone(),
                    exit_code: outcome.exit_code,
                    timed_out: outcome.timed_out,
                    duration_ms: outcome.duration_ms,
                });
                (
                    outcome.exit_code,
                    model_result(&outcome, timeout_secs),
                    None,
                )
            }
            Err(e) => {
                let message = e.to_string();
                events.push(ServerEvent::ExecDone {
                    call_id: call_id.clone(),
                    exit_code: None,
                    timed_out: false,
                    duration_ms: 0,
                });
                events.push(ServerEvent::log(
                    LogLevel::Error,
                    LogSource::Sandbox,
                    message.clone(),
                ));
                // Code too large is the model's to fix; anything else is
                // the sandbox failing, which ends the turn.
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
                paths: changed.iter().map(|c| c.path.clone()).collect(),
                uploaded: false,
                call_id: Some(call_id.clone()),
                changes: changed.iter().map(Change::public).collect(),
            });
        }
        let mut checkpoints = Vec::new();
        if self.config.undo {
            if !outside.is_empty() {
                checkpoints.push(NewCheckpoint {
                    kind: CheckpointKind::Outside,
                    changes: outside,
                });
            }
            if may_change || !changed.is_empty() {
                checkpoints.push(NewCheckpoint {
                    kind: CheckpointKind::Exec(call_id.clone()),
                    changes: changed,
                });
            }
        }
        self.store(Record::FinishExec {
            call_id,
            exit_code,
            result,
            output,
            events,
            checkpoints,
        });
        if cancelled {
            self.end_turn(TurnEndReason::Cancelled, Vec::new());
        } else if let Some(fatal) = fatal {
            self.end_turn(TurnEndReason::Error, vec![fatal]);
        } else {
            self.next_call();
        }
    }

    /// Log a restore with its checkpoint (so it can be undone too) and
    /// tell every tab; the model hears of it with the next message.
    fn on_restored(&mut self, restore: Restore) {
        let Restore {
            call_id,
            restore_id,
            by,
            outside,
            applied,
        } = restore;
        let event = ServerEvent::WorkspaceRestored {
            call_id: call_id.clone(),
            paths: applied.iter().map(|c| c.path.clone()).collect(),
            restore_id: restore_id.clone(),
        };
        let mut checkpoints = Vec::new();
        if !outside.is_empty() {
            checkpoints.push(NewCheckpoint {
                kind: CheckpointKind::Outside,
                changes: outside,
            });
        }
        checkpoints.push(NewCheckpoint {
            kind: CheckpointKind::Restore {
                restore_id,
                reverted: call_id,
                by,
            },
            changes: applied,
        });
        self.store(Record::Restore {
            checkpoints,
            events: vec![event],
        });
    }

    fn cancel(&mut self) {
        let Some(turn) = self.turn.as_mut() else {
            return;
        };
        match turn.stage.clone() {
            Stage::Model => {
                self.out.push(Effect::CancelCompletion {
                    request: turn.request,
                });
                let events = self.take_partial().into_iter().collect();
                self.end_turn(TurnEndReason::Cancelled, events);
            }
            // The call is not stored yet; its review answer is dropped
            // when it comes.
            Stage::Reviewing(_) => self.end_turn(TurnEndReason::Cancelled, Vec::new()),
            Stage::Awaiting(call, approval_id) => {
                self.out.push(Effect::Withdraw(approval_id.clone()));
                self.store(Record::SettleDecision {
                    call_id: call.id.clone(),
                    decision: Resolution::Denied,
                    by: DecidedBy::User,
                    result: Some(CANCELLED.to_string()),
                    events: vec![ServerEvent::ApprovalResolved {
                        approval_id,
                        call_id: call.id,
                        decision: Resolution::Denied,
                        by: DecidedBy::User,
                    }],
                });
                self.end_turn(TurnEndReason::Cancelled, Vec::new());
            }
            Stage::Executing(call) => {
                // The sandbox kills the process group; the turn ends when
                // it reports the command finished.
                turn.cancelled = true;
                self.out.push(Effect::CancelRun(call.id));
            }
        }
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

/// A command's output kept for `history`: consecutive chunks of the same
/// stream merged, capped at `agent.stored_output_bytes` with a note.
#[derive(Debug, Default)]
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

    fn into_events(self, call_id: &CallId) -> Vec<ServerEvent> {
        let mut events: Vec<ServerEvent> = self
            .segments
            .into_iter()
            .filter(|(_, d)| !d.is_empty())
            .map(|(stream, data)| ServerEvent::ExecOutput {
                call_id: call_id.clone(),
                stream,
                data,
            })
            .collect();
        if self.dropped > 0 {
            events.push(ServerEvent::ExecOutput {
                call_id: call_id.clone(),
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

#[cfg(test)]
mod tests {
    //! Whole turns through the machine alone: no actors, no Docker, no
    //! network. A harness plays the actor: it keeps what each `Store`
    //! writes, as the database would, so every test can check that a
    //! restart would rebuild exactly the conversation the machine holds.

    use std::collections::HashMap;

    use super::*;
    use crate::protocol::{RiskLevel, Tool};

    fn config() -> TurnConfig {
        TurnConfig {
            system_prompt: "sys".into(),
            context_tokens: 100_000,
            max_steps: 5,
            stored_output_bytes: 1024,
            exec_timeout_secs: 120,
            tools: true,
            undo: true,
        }
    }

    /// A message sent without a client id (as older pages do).
    fn message(text: impl Into<String>) -> Input {
        Input::UserMessage {
            text: text.into(),
            client_id: None,
        }
    }

    fn shell(id: &str, code: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            tool: Tool::Shell,
            code: code.into(),
        }
    }

    fn risk(level: RiskLevel) -> Risk {
        Risk {
            level,
            reasons: vec!["because".into()],
        }
    }

    fn policy(resolution: Resolution) -> ReviewOutcome {
        ReviewOutcome::Decided(Verdict {
            resolution,
            by: DecidedBy::Policy,
        })
    }

    fn ok(exit: i64, output: &str) -> Result<ExecOutcome, SandboxError> {
        Ok(ExecOutcome {
            exit_code: Some(exit),
            timed_out: false,
            cancelled: false,
            duration_ms: 5,
            output_for_model: output.into(),
        })
    }

    /// The machine, and the database as its stores left it.
    struct Harness {
        machine: TurnMachine,
        events: Vec<ServerEvent>,
        results: HashMap<CallId, String>,
    }

    impl Harness {
        fn new() -> Self {
            Self::from_log(Vec::new(), HashMap::new())
        }

        fn from_log(events: Vec<ServerEvent>, results: HashMap<CallId, String>) -> Self {
            let (machine, effects) = TurnMachine::restore(config(), &events, &results);
            let mut h = Harness {
                machine,
                events,
                results,
            };
            h.keep(&effects);
            h
        }

        fn keep(&mut self, effects: &[Effect]) {
            for effect in effects {
                if let Effect::Store(record) = effect {
                    self.events.extend(record.stored_events().cloned());
                    if let Some((id, result)) = record.result() {
                        self.results.insert(id.clone(), result.to_string());
                    }
                }
            }
        }

        fn step(&mut self, input: Input) -> Vec<Effect> {
            let effects = self.machine.step(input);
            self.keep(&effects);
            self.assert_rebuilds();
            effects
        }

        /// What a restart would fold from the stored log is what the
        /// machine holds.
        fn assert_rebuilds(&self) {
            assert_eq!(
                &Conversation::rebuild(&self.events, &self.results),
                self.machine.conversation(),
                "the stored log rebuilds a different conversation"
            );
        }

        fn kinds(&self) -> Vec<&'static str> {
            self.events.iter().map(ServerEvent::kind).collect()
        }

        /// Start a turn; answers the model request's number.
        fn say(&mut self, text: &str) -> u64 {
            let effects = self.step(message(text));
            request_of(&effects).expect("the model is asked")
        }

        fn reply(&mut self, request: u64, text: &str, calls: Vec<ToolCall>) -> Vec<Effect> {
            if !text.is_empty() {
                let sent = self.step(Input::Delta {
                    request,
                    text: text.into(),
                });
                assert!(matches!(
                    &sent[..],
                    [Effect::Send(ServerEvent::AssistantDelta { .. })]
                ));
            }
            self.step(Input::Finished {
                request,
                tool_calls: calls,
                length_limited: false,
            })
        }

        fn review(&mut self, id: &str, level: RiskLevel, outcome: ReviewOutcome) -> Vec<Effect> {
            self.step(Input::Reviewed {
                files: Vec::new(),
                call_id: id.into(),
                risk: risk(level),
                mode: ApprovalMode::Risky,
                outcome,
            })
        }

        fn done(&mut self, id: &str, result: Result<ExecOutcome, SandboxError>) -> Vec<Effect> {
            self.step(Input::ExecDone {
                call_id: id.into(),
                result,
                changed: vec![],
                outside: vec![],
            })
        }
    }

    fn request_of(effects: &[Effect]) -> Option<u64> {
        effects.iter().find_map(|e| match e {
            Effect::Complete { request, .. } => Some(*request),
            _ => None,
        })
    }

    fn messages_of(effects: &[Effect]) -> Vec<ChatMessage> {
        effects
            .iter()
            .find_map(|e| match e {
                Effect::Complete { messages, .. } => Some(messages.clone()),
                _ => None,
            })
            .expect("a model request")
    }

    fn ask(id: &str) -> ReviewOutcome {
        ReviewOutcome::Ask {
            approval_id: id.into(),
            expires_at: "2026-12-01T00:05:00Z".into(),
        }
    }

    fn turn_end(h: &Harness) -> Option<TurnEndReason> {
        h.events.iter().rev().find_map(|e| match e {
            ServerEvent::TurnDone { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    #[test]
    fn a_two_call_turn_runs_each_call_and_hands_both_results_back() {
        let mut h = Harness::new();
        let r1 = h.say("what is here?");
        let effects = h.reply(
            r1,
            "Let me look.",
            vec![shell("c1", "ls"), shell("c2", "pwd")],
        );
        assert_eq!(effects.last(), Some(&Effect::Review(shell("c1", "ls"))));

        let effects = h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        assert_eq!(
            effects.last(),
            Some(&Effect::Run(shell("c1", "ls"), Vec::new()))
        );
        let live = h.step(Input::ExecChunk {
            call_id: "c1".into(),
            stream: OutputStream::Stdout,
            data: "a.txt\n".into(),
        });
        assert!(matches!(
            &live[..],
            [Effect::Send(ServerEvent::ExecOutput { .. })]
        ));
        let effects = h.done("c1", ok(0, "a.txt"));
        assert_eq!(effects.last(), Some(&Effect::Review(shell("c2", "pwd"))));

        h.review("c2", RiskLevel::Low, policy(Resolution::Approved));
        let effects = h.done("c2", ok(0, "/workspace"));
        let r2 = request_of(&effects).expect("asked again after the last call");
        let sent = messages_of(&effects);
        assert_eq!(sent.len(), 5, "{sent:#?}");
        assert!(
            matches!(&sent[2], ChatMessage::Assistant { text, tool_calls } if text == "Let me look." && tool_calls.len() == 2)
        );
        assert!(
            matches!(&sent[3], ChatMessage::ToolResult { content, .. } if content == "[exit code 0]\na.txt")
        );
        assert!(
            matches!(&sent[4], ChatMessage::ToolResult { content, .. } if content == "[exit code 0]\n/workspace")
        );

        h.reply(r2, "Two files.", vec![]);
        assert_eq!(turn_end(&h), Some(TurnEndReason::Completed));
        assert!(!h.machine.is_busy());
        assert_eq!(
            h.kinds(),
            [
                "user_message",
                "assistant_message",
                "tool_call",
                "exec_output",
                "exec_done",
                "tool_call",
                "exec_done",
                "assistant_message",
                "turn_done"
            ]
        );
    }

    /// A change as the scan reports it.
    fn created(path: &str) -> Change {
        Change {
            path: path.into(),
            before: None,
            after: Some(crate::undo::Entry {
                kind: crate::protocol::EntryKind::File,
                object: None,
                size: 3,
                mode: 0o644,
                mtime_ns: 0,
            }),
        }
    }

    fn checkpoints_of(effects: &[Effect]) -> Vec<CheckpointKind> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Store(record) => Some(record.checkpoints()),
                _ => None,
            })
            .flatten()
            .map(|c| c.kind.clone())
            .collect()
    }

    #[test]
    fn calls_that_may_change_files_are_checkpointed_and_their_changes_shown() {
        let mut h = Harness::new();
        let r1 = h.say("tidy up");
        h.reply(
            r1,
            "",
            vec![
                shell("c1", "ls"),
                shell("c2", "mkdir x"),
                shell("c3", "cat a"),
            ],
        );
        // Read-only and nothing changed: no checkpoint, no event.
        let effects = h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        // The call says which mode it was judged under (the page says why
        // it ran without asking).
        let judged = effects.iter().find_map(|e| match e {
            Effect::Store(r) => r.events().iter().find_map(|ev| match ev {
                ServerEvent::ToolCall { approval_mode, .. } => Some(*approval_mode),
                _ => None,
            }),
            _ => None,
        });
        assert_eq!(judged, Some(Some(ApprovalMode::Risky)));
        let effects = h.done("c1", ok(0, ""));
        assert!(checkpoints_of(&effects).is_empty());
        // May change files: a checkpoint even when nothing changed, and
        // the uploads found before it are logged first.
        h.review("c2", RiskLevel::Medium, policy(Resolution::Approved));
        let effects = h.step(Input::ExecDone {
            call_id: "c2".into(),
            result: ok(0, ""),
            changed: vec![created("x/new.txt")],
            outside: vec![created("uploaded.csv")],
        });
        assert_eq!(
            checkpoints_of(&effects),
            [CheckpointKind::Outside, CheckpointKind::Exec("c2".into())]
        );
        let shown = effects.iter().find_map(|e| match e {
            Effect::Store(r) => r.events().iter().find_map(|ev| match ev {
                ServerEvent::FilesChanged {
                    call_id, changes, ..
                } => Some((call_id.clone(), changes.clone())),
                _ => None,
            }),
            _ => None,
        });
        let (call_id, changes) = shown.expect("files_changed");
        assert_eq!(call_id, Some("c2".into()));
        assert_eq!(changes[0].path, "x/new.txt");
        assert_eq!(changes[0].change, crate::protocol::ChangeKind::Created);
        // Judged read-only but it did change something: checkpointed.
        h.review("c3", RiskLevel::Low, policy(Resolution::Approved));
        let effects = h.step(Input::ExecDone {
            call_id: "c3".into(),
            result: ok(0, ""),
            changed: vec![created("surprise")],
            outside: vec![],
        });
        assert_eq!(
            checkpoints_of(&effects),
            [CheckpointKind::Exec("c3".into())]
        );
    }

    #[test]
    fn a_restore_is_logged_as_a_checkpoint_and_told_to_the_model() {
        let mut h = Harness::new();
        let r1 = h.say("delete it");
        h.reply(r1, "", vec![shell("c1", "rm a.txt")]);
        h.review("c1", RiskLevel::High, policy(Resolution::Approved));
        h.done("c1", ok(0, ""));
        let r2 = request_of(&h.step(Input::Finished {
            request: r1 + 1,
            tool_calls: vec![],
            length_limited: false,
        }));
        assert!(r2.is_none());
        assert!(!h.machine.is_busy());
        let effects = h.step(Input::Restored(Restore {
            call_id: "c1".into(),
            restore_id: "r1".into(),
            by: "alice".into(),
            outside: vec![],
            applied: vec![created("a.txt")],
        }));
        assert_eq!(
            checkpoints_of(&effects),
            [CheckpointKind::Restore {
                restore_id: "r1".into(),
                reverted: "c1".into(),
                by: "alice".into()
            }]
        );
        assert_eq!(h.kinds().last(), Some(&"workspace_restored"));
        let r3 = h.say("and now?");
        let effects = h.step(Input::Delta {
            request: r3,
            text: String::new(),
        });
        let _ = effects;
        let sent = h.machine.conversation().messages();
        let ChatMessage::User(last) = sent.last().unwrap() else {
            panic!("{sent:?}")
        };
        assert!(
            last.starts_with("[The person restored the workspace to how it was before your command `rm a.txt`; these files changed: /workspace/a.txt]"),
            "{last}"
        );
    }

    #[test]
    fn a_denied_call_is_never_run_and_the_model_is_told() {
        let mut h = Harness::new();
        let r1 = h.say("clean up");
        h.reply(r1, "", vec![shell("c1", "rm -rf data")]);
        let effects = h.review("c1", RiskLevel::High, ask("a1"));
        assert!(
            matches!(&effects[..], [Effect::Store(Record::StartToolCall { events, .. })] if events.len() == 2)
        );
        let effects = h.step(Input::Verdict {
            call_id: "c1".into(),
            verdict: Verdict {
                resolution: Resolution::Denied,
                by: DecidedBy::User,
            },
        });
        assert!(!effects.iter().any(|e| matches!(e, Effect::Run(..))));
        let sent = messages_of(&effects);
        assert!(
            matches!(sent.last(), Some(ChatMessage::ToolResult { content, .. }) if content == DENIED)
        );
        assert_eq!(
            h.results.get(&CallId::from("c1")).map(String::as_str),
            Some(DENIED)
        );
        assert!(h.events.iter().any(|e| matches!(
            e,
            ServerEvent::ApprovalResolved {
                decision: Resolution::Denied,
                by: DecidedBy::User,
                ..
            }
        )));
    }

    #[test]
    fn cancel_while_the_model_streams_keeps_the_partial_reply() {
        let mut h = Harness::new();
        let r1 = h.say("write a poem");
        h.step(Input::Delta {
            request: r1,
            text: "Roses".into(),
        });
        let effects = h.step(Input::Cancel);
        assert_eq!(effects[0], Effect::CancelCompletion { request: r1 });
        assert_eq!(turn_end(&h), Some(TurnEndReason::Cancelled));
        assert!(h
            .events
            .iter()
            .any(|e| matches!(e, ServerEvent::AssistantMessage { text, .. } if text == "Roses")));
        // A late delta of the cancelled request is dropped.
        assert!(h
            .step(Input::Delta {
                request: r1,
                text: " are".into()
            })
            .is_empty());
        assert!(h.step(Input::Cancel).is_empty(), "nothing to cancel");
    }

    #[test]
    fn cancel_while_a_call_is_reviewed_drops_the_late_review() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "rm x"), shell("c2", "ls")]);
        h.step(Input::Cancel);
        assert_eq!(turn_end(&h), Some(TurnEndReason::Cancelled));
        let effects = h.review("c1", RiskLevel::High, ask("a1"));
        assert_eq!(effects, [Effect::Withdraw("a1".into())]);
        assert!(
            !h.kinds().contains(&"tool_call"),
            "an unreviewed call is not stored"
        );
    }

    #[test]
    fn cancel_while_waiting_for_the_person_denies_and_answers_the_call() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "rm x")]);
        h.review("c1", RiskLevel::High, ask("a1"));
        let effects = h.step(Input::Cancel);
        assert_eq!(effects[0], Effect::Withdraw("a1".into()));
        assert_eq!(turn_end(&h), Some(TurnEndReason::Cancelled));
        assert_eq!(
            h.results.get(&CallId::from("c1")).map(String::as_str),
            Some(CANCELLED)
        );
        // The person's answer, arriving late, does nothing.
        assert!(h
            .step(Input::Verdict {
                call_id: "c1".into(),
                verdict: Verdict {
                    resolution: Resolution::Approved,
                    by: DecidedBy::User
                }
            })
            .is_empty());
    }

    #[test]
    fn cancel_while_a_command_runs_ends_the_turn_when_it_stops() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "sleep 600"), shell("c2", "ls")]);
        h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        let effects = h.step(Input::Cancel);
        assert_eq!(effects, [Effect::CancelRun("c1".into())]);
        assert_eq!(turn_end(&h), None, "the turn waits for the command");
        let effects = h.done(
            "c1",
            Ok(ExecOutcome {
                exit_code: Some(137),
                timed_out: false,
                cancelled: true,
                duration_ms: 10,
                output_for_model: String::new(),
            }),
        );
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Review(_))),
            "c2 is not run"
        );
        assert_eq!(turn_end(&h), Some(TurnEndReason::Cancelled));
        assert!(h.results[&CallId::from("c1")].contains("cancelled"));
    }

    #[test]
    fn an_exec_that_fails_ends_the_turn_with_the_sandbox_error() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "ls"), shell("c2", "pwd")]);
        h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        h.done(
            "c1",
            Err(SandboxError::DockerUnavailable {
                detail: "gone".into(),
            }),
        );
        assert_eq!(turn_end(&h), Some(TurnEndReason::Error));
        assert!(h
            .events
            .iter()
            .any(|e| matches!(e, ServerEvent::Error { code, .. } if *code == ErrorCode::DockerUnavailable)));
        assert!(h.results[&CallId::from("c1")].starts_with("The command could not be run"));
    }

    #[test]
    fn code_too_large_is_told_to_the_model_and_the_turn_goes_on() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "huge")]);
        h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        let effects = h.done("c1", Err(SandboxError::CodeTooLarge { size: 2, limit: 1 }));
        assert!(request_of(&effects).is_some());
        assert_eq!(turn_end(&h), None);
    }

    #[test]
    fn a_provider_cut_keeps_the_partial_reply_and_reports_the_error() {
        let mut h = Harness::new();
        let r1 = h.say("tell me");
        h.step(Input::Delta {
            request: r1,
            text: "Half a".into(),
        });
        h.step(Input::Failed {
            request: r1,
            error: ProviderError::StreamCut,
            output_started: true,
        });
        assert_eq!(turn_end(&h), Some(TurnEndReason::Error));
        assert_eq!(
            &h.kinds()[1..],
            ["assistant_message", "log", "error", "turn_done"]
        );
        assert!(h.events.iter().any(
            |e| matches!(e, ServerEvent::Error { code, .. } if *code == ErrorCode::ProviderStreamCut)
        ));
    }

    #[test]
    fn a_model_without_tools_goes_on_with_fenced_blocks() {
        let mut h = Harness::new();
        let r1 = h.say("list");
        let effects = h.step(Input::Failed {
            request: r1,
            error: ProviderError::ToolsUnsupported,
            output_started: false,
        });
        let Some(Effect::Complete {
            request: r2,
            tools: false,
            ..
        }) = effects.last()
        else {
            panic!("not asked again without tools: {effects:?}")
        };
        let effects = h.reply(*r2, "Run:\n```bash\nls\n```", vec![]);
        assert!(matches!(effects.last(), Some(Effect::Review(call)) if call.code == "ls"));
    }

    #[test]
    fn the_step_limit_ends_a_looping_turn() {
        let mut h = Harness::new();
        let mut request = h.say("loop");
        for i in 0..5 {
            let id = format!("c{i}");
            h.reply(request, "", vec![shell(&id, "true")]);
            h.review(&id, RiskLevel::Low, policy(Resolution::Approved));
            match request_of(&h.done(&id, ok(0, ""))) {
                Some(next) => request = next,
                None => break,
            }
        }
        assert_eq!(turn_end(&h), Some(TurnEndReason::Error));
        assert!(h.events.iter().any(
            |e| matches!(e, ServerEvent::Error { code, .. } if *code == ErrorCode::StepLimit)
        ));
    }

    #[test]
    fn a_reply_cut_at_the_length_limit_tells_the_person() {
        let mut h = Harness::new();
        let r1 = h.say("write an essay");
        h.step(Input::Delta {
            request: r1,
            text: "Once upon a".into(),
        });
        h.step(Input::Finished {
            request: r1,
            tool_calls: vec![],
            length_limited: true,
        });
        assert_eq!(&h.kinds()[1..], ["assistant_message", "log", "turn_done"]);
        assert!(h.events.iter().any(
            |e| matches!(e, ServerEvent::Log { level: LogLevel::Warn, message, .. } if message == CUT_SHORT)
        ));
        assert_eq!(turn_end(&h), Some(TurnEndReason::Completed));
    }

    #[test]
    fn a_message_sent_during_a_turn_waits_for_it() {
        let mut h = Harness::new();
        let r1 = h.say("first");
        assert!(h.step(message("second")).is_empty());
        assert!(h.step(message("   ")).is_empty(), "blank is ignored");
        let effects = h.reply(r1, "One.", vec![]);
        let r2 = request_of(&effects).expect("the queued message starts its turn");
        assert!(r2 > r1);
        let sent = messages_of(&effects);
        assert!(matches!(sent.last(), Some(ChatMessage::User(t)) if t == "second"));
        assert_eq!(
            h.kinds(),
            [
                "user_message",
                "assistant_message",
                "turn_done",
                "user_message"
            ]
        );
    }

    /// The echo carries the page's id back, also for a message that waited
    /// in the queue, so the page matches its copy whatever the server did
    /// to the text (it trims it).
    #[test]
    fn the_echo_carries_the_client_id_also_for_a_queued_message() {
        let mut h = Harness::new();
        let sent = |text: &str, id: &str| Input::UserMessage {
            text: text.into(),
            client_id: Some(id.into()),
        };
        let effects = h.step(sent("  hi \n", "c-1"));
        let r1 = request_of(&effects).expect("the model is asked");
        assert!(h.step(sent(" next\n", "c-2")).is_empty(), "queued");
        h.reply(r1, "One.", vec![]);
        let echoes: Vec<(&str, Option<&str>)> = h
            .events
            .iter()
            .filter_map(|e| match e {
                ServerEvent::UserMessage {
                    text, client_id, ..
                } => Some((text.as_str(), client_id.as_deref())),
                _ => None,
            })
            .collect();
        assert_eq!(echoes, [("hi", Some("c-1")), ("next", Some("c-2"))]);
    }

    #[test]
    fn the_queue_behind_a_turn_is_bounded_and_says_so_when_full() {
        let mut h = Harness::new();
        let r1 = h.say("first");
        for i in 0..MAX_QUEUED_MESSAGES {
            assert!(h.step(message(format!("m{i}"))).is_empty());
        }
        let refused = h.step(message("one too many"));
        assert!(
            matches!(refused.as_slice(), [Effect::Send(ServerEvent::Error { code, .. })] if *code == ErrorCode::QueueFull),
            "{refused:?}"
        );
        // Nothing was stored for it; the queued ones still run in order.
        let effects = h.reply(r1, "One.", vec![]);
        let sent = messages_of(&effects);
        assert!(matches!(sent.last(), Some(ChatMessage::User(t)) if t == "m0"));
        assert!(!h
            .events
            .iter()
            .any(|e| matches!(e, ServerEvent::UserMessage { text, .. } if text == "one too many")));
    }

    #[test]
    fn a_restart_rebuilds_the_conversation_the_machine_held() {
        let mut h = Harness::new();
        h.step(Input::Uploaded(vec!["data.csv".into()]));
        let r1 = h.say("sum the csv");
        h.reply(
            r1,
            "Reading.",
            vec![shell("c1", "cat data.csv"), shell("c2", "rm data.csv")],
        );
        h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        h.done("c1", ok(0, "1,2"));
        h.review("c2", RiskLevel::High, ask("a2"));
        let effects = h.step(Input::Verdict {
            call_id: "c2".into(),
            verdict: Verdict {
                resolution: Resolution::TimedOut,
                by: DecidedBy::Policy,
            },
        });
        let r2 = request_of(&effects).expect("asked again");
        h.reply(r2, "", vec![shell("c3", "python3 -c 'print(3)'")]);
        h.review("c3", RiskLevel::Medium, policy(Resolution::Approved));
        h.done("c3", ok(0, "3"));
        let live = h.machine.conversation().clone();
        let before = live.messages();

        let restarted = Harness::from_log(h.events.clone(), h.results.clone());
        assert_eq!(restarted.machine.conversation(), &live);
        assert!(
            matches!(&before[0], ChatMessage::User(t) if t.starts_with("[The person uploaded: /workspace/data.csv]"))
        );
        assert!(before
            .iter()
            .any(|m| matches!(m, ChatMessage::ToolResult { content, .. } if content == TIMED_OUT)));

        // The open turn and nothing else is closed on restore, and the
        // machine takes a new message.
        let mut restarted = restarted;
        assert_eq!(turn_end(&restarted), Some(TurnEndReason::Error));
        assert!(restarted.say("again") > 0);
    }

    #[test]
    fn a_restart_denies_an_approval_left_open() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "rm x")]);
        h.review("c1", RiskLevel::High, ask("a1"));
        let restarted = Harness::from_log(h.events.clone(), h.results.clone());
        assert!(restarted.events.iter().any(|e| matches!(
            e,
            ServerEvent::ApprovalResolved {
                decision: Resolution::Denied,
                by: DecidedBy::Policy,
                ..
            }
        )));
        assert_eq!(turn_end(&restarted), Some(TurnEndReason::Error));
        let sent = restarted.machine.conversation().messages();
        assert!(
            matches!(sent.last(), Some(ChatMessage::ToolResult { content, .. }) if content == conversation::INTERRUPTED)
        );
    }

    #[test]
    fn abandon_cancels_what_is_in_flight_without_storing() {
        let mut h = Harness::new();
        let r1 = h.say("go");
        h.reply(r1, "", vec![shell("c1", "sleep 9")]);
        h.review("c1", RiskLevel::Low, policy(Resolution::Approved));
        let effects = h.machine.abandon();
        assert!(effects.contains(&Effect::CancelRun("c1".into())));
        assert!(!effects.iter().any(|e| matches!(e, Effect::Store(_))));
        assert!(!h.machine.is_busy());
    }
}
