//! What the model sees, folded from the stored event log.
//!
//! There is one way to build a conversation: [`Conversation::apply`] each
//! stored event in order and [`Conversation::answer`] each tool call with
//! the result the model was told. The live agent folds the records it
//! stores; a restart folds the rows it loads. Both take the same steps, so
//! the conversation after a restart is the one the model saw before it.
//!
//! The log keeps no step boundary between tool calls: a step that asks
//! for calls without any text joins the calls of the step before it, so the
//! model may later see two steps' calls as one message with all their
//! results after it. Every call is still answered in order, and live and
//! restarted agents see exactly the same thing.
//!
//! Also here: the events that close what a crash left open, the context
//! window that trims a long conversation to the model's budget, the notes
//! that tell the model about uploads, and the fenced-block fallback for
//! models without native tools.

use std::collections::HashMap;

use crate::db::journal::Record;
use crate::protocol::{
    ApprovalId, CallId, DecidedBy, LogLevel, LogSource, Resolution, ServerEvent, Tool,
    TurnEndReason, TurnId,
};
use crate::provider::{ChatMessage, ToolCall};

/// What the model is told about a call that has no stored result: the
/// server stopped while it ran.
pub const INTERRUPTED: &str = "The command did not finish: it was interrupted.";

/// The conversation as the model sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Conversation {
    messages: Vec<ChatMessage>,
    /// Calls of the latest assistant message, in order, with their results
    /// once known. They become `ToolResult` messages when the next message
    /// starts (or when the model is asked), so the calls of one step stay
    /// in one assistant message.
    open_calls: Vec<(CallId, Tool, Option<String>)>,
    /// Upload notes not yet followed by a user message.
    notes: Vec<String>,
}

impl Conversation {
    /// Fold a stored log: its events, and the results its tool calls had.
    pub fn rebuild(events: &[ServerEvent], results: &HashMap<CallId, String>) -> Self {
        let mut conversation = Conversation::default();
        for event in events {
            conversation.apply(event);
            if let ServerEvent::ToolCall { call_id, .. } = event {
                if let Some(result) = results.get(call_id) {
                    conversation.answer(call_id, result);
                }
            }
        }
        conversation
    }

    /// Fold what a record stores: the same steps as [`Self::rebuild`].
    pub fn record(&mut self, record: &Record) {
        for event in record.stored_events() {
            self.apply(event);
        }
        if let Some((call_id, result)) = record.result() {
            self.answer(call_id, result);
        }
    }

    /// Fold one stored event.
    pub fn apply(&mut self, event: &ServerEvent) {
        match event {
            ServerEvent::UserMessage { text, .. } => {
                self.close_calls();
                let notes = std::mem::take(&mut self.notes);
                self.messages
                    .push(ChatMessage::User(with_notes(&notes, text.clone())));
            }
            ServerEvent::FilesChanged {
                paths,
                uploaded: true,
                ..
            } => self.notes.push(upload_note(paths)),
            ServerEvent::WorkspaceRestored { call_id, paths, .. } => {
                let note = restore_note(self.code_of(call_id), paths);
                self.notes.push(note);
            }
            ServerEvent::AssistantMessage { text, .. } => {
                self.close_calls();
                self.messages.push(ChatMessage::Assistant {
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
                let call = ToolCall {
                    id: call_id.clone(),
                    tool: *tool,
                    code: code.clone(),
                };
                // A call joins the assistant message of its step, unless a
                // step's results were already handed on.
                match self.messages.last_mut() {
                    Some(ChatMessage::Assistant { tool_calls, .. }) => tool_calls.push(call),
                    _ => self.messages.push(ChatMessage::Assistant {
                        text: String::new(),
                        tool_calls: vec![call],
                    }),
                }
                self.open_calls.push((call_id.clone(), *tool, None));
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

    /// The code of a call the model made, if it is in the conversation.
    fn code_of(&self, call_id: &CallId) -> Option<&str> {
        self.messages.iter().rev().find_map(|m| match m {
            ChatMessage::Assistant { tool_calls, .. } => tool_calls
                .iter()
                .find(|c| c.id == *call_id)
                .map(|c| c.code.as_str()),
            _ => None,
        })
    }

    /// Record what the model is told about `call_id`.
    pub fn answer(&mut self, call_id: &CallId, result: &str) {
        if let Some(open) = self.open_calls.iter_mut().find(|(id, ..)| id == call_id) {
            open.2 = Some(result.to_string());
        }
    }

    /// The messages to send the model: everything so far, every call
    /// answered (one without a result was interrupted).
    pub fn messages(&self) -> Vec<ChatMessage> {
        let mut out = self.messages.clone();
        out.extend(self.open_calls.iter().map(result_message));
        out
    }

    fn close_calls(&mut self) {
        let open = std::mem::take(&mut self.open_calls);
        self.messages.extend(open.iter().map(result_message));
    }
}

fn result_message((call_id, tool, result): &(CallId, Tool, Option<String>)) -> ChatMessage {
    ChatMessage::ToolResult {
        call_id: call_id.clone(),
        name: tool.as_str().to_string(),
        content: result.clone().unwrap_or_else(|| INTERRUPTED.to_string()),
    }
}

/// What the model is told, ahead of the person's next message, about files
/// they uploaded.
fn upload_note(paths: &[String]) -> String {
    let list: Vec<String> = paths.iter().map(|p| format!("/workspace/{p}")).collect();
    format!("[The person uploaded: {}]", list.join(", "))
}

/// Paths named in a restore note; past this, a count.
const NOTE_PATHS: usize = 50;

/// What the model is told, ahead of the person's next message, about a
/// restore: which command's checkpoint, and what changed.
fn restore_note(code: Option<&str>, paths: &[String]) -> String {
    let before = match code {
        Some(code) => {
            let first = code.lines().next().unwrap_or_default();
            let shown: String = first.chars().take(120).collect();
            let cut = if shown.len() < code.trim_end().len() {
                " …"
            } else {
                ""
            };
            format!("your command `{shown}{cut}`")
        }
        None => "an earlier undo".to_string(),
    };
    let mut list: Vec<String> = paths
        .iter()
        .take(NOTE_PATHS)
        .map(|p| format!("/workspace/{p}"))
        .collect();
    if paths.len() > NOTE_PATHS {
        list.push(format!("and {} more", paths.len() - NOTE_PATHS));
    }
    let changed = if list.is_empty() {
        "no files changed".to_string()
    } else {
        format!("these files changed: {}", list.join(", "))
    };
    format!("[The person restored the workspace to how it was before {before}; {changed}]")
}

/// A user message with pending upload notes in front of it.
fn with_notes(notes: &[String], text: String) -> String {
    if notes.is_empty() {
        text
    } else {
        format!("{}\n\n{text}", notes.join("\n"))
    }
}

/// Events that close what a previous run of the server left open: a turn
/// without `turn_done` and an approval without `approval_resolved` (the
/// process that was waiting for them is gone).
pub fn close_interrupted(events: &[ServerEvent]) -> Vec<ServerEvent> {
    let mut open_turn: Option<TurnId> = None;
    let mut open_approvals: Vec<(ApprovalId, CallId)> = Vec::new();
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
            | ServerEvent::WorkspaceRestored { .. }
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

/// Rough bytes per token for the context budget; errs on the side of
/// trimming early.
pub const BYTES_PER_TOKEN: usize = 4;

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

/// Commands in fenced ```bash / ```sh / ```python blocks of a reply, for
/// models that cannot call tools natively.
pub fn fenced_calls(text: &str) -> Vec<ToolCall> {
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
        calls.push(ToolCall {
            id: CallId::fresh_call(),
            tool,
            code,
        });
    }
    calls
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Risk, RiskLevel};

    fn tool_call(id: &str, tool: Tool, code: &str) -> ServerEvent {
        ServerEvent::ToolCall {
            turn_id: "t".into(),
            call_id: id.into(),
            tool,
            code: code.into(),
            risk: Risk {
                level: RiskLevel::Low,
                reasons: vec![],
            },
            approval_mode: None,
        }
    }

    #[test]
    fn rebuild_pairs_tool_calls_with_results() {
        let events = vec![
            ServerEvent::UserMessage {
                turn_id: "t".into(),
                text: "list".into(),
                client_id: None,
            },
            ServerEvent::AssistantMessage {
                turn_id: "t".into(),
                text: "Looking".into(),
            },
            tool_call("c1", Tool::Shell, "ls"),
            tool_call("c2", Tool::Python, "print(1)"),
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
        let results = HashMap::from([(CallId::from("c1"), "a.txt".to_string())]);
        let conv = Conversation::rebuild(&events, &results).messages();
        assert_eq!(conv.len(), 5);
        assert!(
            matches!(&conv[1], ChatMessage::Assistant { text, tool_calls } if text == "Looking" && tool_calls.len() == 2)
        );
        assert!(matches!(&conv[2], ChatMessage::ToolResult { content, .. } if content == "a.txt"));
        assert!(
            matches!(&conv[3], ChatMessage::ToolResult { content, .. } if content == INTERRUPTED)
        );
        assert!(matches!(&conv[4], ChatMessage::Assistant { text, .. } if text == "Done"));
    }

    #[test]
    fn uploads_become_a_note_on_the_next_message() {
        let events = vec![
            ServerEvent::FilesChanged {
                paths: vec!["a.csv".into()],
                uploaded: true,
                call_id: None,
                changes: vec![],
            },
            ServerEvent::FilesChanged {
                paths: vec!["made.txt".into()],
                uploaded: false,
                call_id: Some("c0".into()),
                changes: vec![],
            },
            ServerEvent::UserMessage {
                turn_id: "t".into(),
                text: "sum it".into(),
                client_id: None,
            },
        ];
        let conv = Conversation::rebuild(&events, &HashMap::new()).messages();
        assert_eq!(
            conv,
            [ChatMessage::User(
                "[The person uploaded: /workspace/a.csv]\n\nsum it".into()
            )]
        );
    }

    #[test]
    fn a_restore_is_told_to_the_model_with_the_next_message() {
        let events = vec![
            ServerEvent::UserMessage {
                turn_id: "t".into(),
                text: "clean up".into(),
                client_id: None,
            },
            tool_call("c1", Tool::Shell, "rm -rf /workspace/*\necho done"),
            ServerEvent::TurnDone {
                turn_id: "t".into(),
                reason: TurnEndReason::Completed,
            },
            ServerEvent::WorkspaceRestored {
                call_id: "c1".into(),
                paths: vec!["a.txt".into(), "d/b.txt".into()],
                restore_id: "r1".into(),
            },
            ServerEvent::WorkspaceRestored {
                call_id: "r1".into(),
                paths: vec![],
                restore_id: "r2".into(),
            },
            ServerEvent::UserMessage {
                turn_id: "t2".into(),
                text: "what now?".into(),
                client_id: None,
            },
        ];
        let mut results = HashMap::new();
        results.insert(CallId::from("c1"), "done".to_string());
        let conv = Conversation::rebuild(&events, &results).messages();
        let ChatMessage::User(last) = conv.last().unwrap() else {
            panic!("{conv:?}")
        };
        assert_eq!(
            last,
            "[The person restored the workspace to how it was before your command `rm -rf /workspace/* …`; these files changed: /workspace/a.txt, /workspace/d/b.txt]\n\
             [The person restored the workspace to how it was before an earlier undo; no files changed]\n\n\
             what now?"
        );
    }

    #[test]
    fn context_window_trims_old_tool_output_then_old_exchanges() {
        let mut conv = Vec::new();
        for i in 0..50 {
            conv.push(ChatMessage::User(format!("question {i}")));
            conv.push(ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: format!("c{i}").into(),
                    tool: Tool::Shell,
                    code: "cat big".into(),
                }],
            });
            conv.push(ChatMessage::ToolResult {
                call_id: format!("c{i}").into(),
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

    #[test]
    fn fenced_blocks_become_calls() {
        let calls = fenced_calls(
            "Try:\n```bash\nls -la\n```\nand\n```python\nprint(2)\n```\n```text\nno\n```",
        );
        let got: Vec<(Tool, &str)> = calls.iter().map(|c| (c.tool, c.code.as_str())).collect();
        assert_eq!(got, [(Tool::Shell, "ls -la"), (Tool::Python, "print(2)")]);
    }
}
