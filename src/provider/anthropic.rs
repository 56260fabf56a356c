//! The Anthropic Messages API request (`POST /v1/messages`): the system
//! prompt as top-level `system`, the conversation as content blocks in
//! strictly alternating user/assistant messages, tool calls as `tool_use`
//! blocks answered by `tool_result` blocks in the next user message. The
//! API refuses a request that breaks any of these rules with a 400, and a
//! refused request would fail every later turn of the session too, so the
//! conversation is repaired here rather than sent as it is. The stream
//! that comes back is decoded by [`super::decode::AnthropicStream`].

use serde_json::{json, Value};

use super::{ChatMessage, ToolSpec, TOOLS};

/// The API version IronClaw speaks; sent as `anthropic-version` on every
/// request (the API refuses requests without it).
pub const API_VERSION: &str = "2023-06-01";

/// Stands in for a user turn the API needs but the conversation lacks: the
/// first message must be the user's, and the context window may have left
/// the real one out.
const EARLIER_LEFT_OUT: &str = "(Earlier messages were left out to fit the context window.)";

/// The tool result sent for a tool call whose result is missing; the API
/// refuses a `tool_use` block without its `tool_result`.
const NO_RESULT: &str = "[no result: the command did not run]";

/// What a tool result with no text at all is sent as, so the model can tell
/// "ran, printed nothing" from a missing block.
const EMPTY_RESULT: &str = "(no output)";

/// The request body for a streamed completion.
pub fn request_body(
    model: &str,
    max_tokens: u32,
    conversation: &[ChatMessage],
    tools: bool,
) -> Value {
    let system: Vec<&str> = conversation
        .iter()
        .filter_map(|m| match m {
            ChatMessage::System(t) if !t.trim().is_empty() => Some(t.as_str()),
            _ => None,
        })
        .collect();
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "messages": messages(conversation),
        "stream": true,
    });
    if !system.is_empty() {
        body["system"] = Value::String(system.join("\n\n"));
    }
    if tools {
        body["tools"] = tool_schemas();
    }
    body
}

/// The two tools in Anthropic's shape: `{name, description, input_schema}`.
pub fn tool_schemas() -> Value {
    TOOLS.iter().map(ToolSpec::anthropic).collect()
}

/// One message on its way to the wire.
struct Turn {
    assistant: bool,
    blocks: Vec<Value>,
}

fn text_block(text: &str) -> Option<Value> {
    // The API refuses empty and whitespace-only text blocks.
    (!text.trim().is_empty()).then(|| json!({"type": "text", "text": text}))
}

fn is_type(block: &Value, kind: &str) -> bool {
    block.get("type").and_then(Value::as_str) == Some(kind)
}

/// The conversation as alternating messages of content blocks, starting
/// with the user's, every `tool_use` answered in the very next message.
fn messages(conversation: &[ChatMessage]) -> Vec<Value> {
    let mut turns: Vec<Turn> = Vec::new();
    for m in conversation {
        let (assistant, blocks): (bool, Vec<Value>) = match m {
            ChatMessage::System(_) => continue,
            ChatMessage::User(t) => (false, text_block(t).into_iter().collect()),
            ChatMessage::Assistant { text, tool_calls } => {
                let mut blocks: Vec<Value> = text_block(text).into_iter().collect();
                for c in tool_calls {
                    blocks.push(json!({"type": "tool_use", "id": c.id, "name": c.name(), "input": c.arguments()}));
                }
                (true, blocks)
            }
            ChatMessage::ToolResult {
                call_id, content, ..
            } => {
                let content = if content.trim().is_empty() {
                    EMPTY_RESULT
                } else {
                    content.as_str()
                };
                (
                    false,
                    vec![
                        json!({"type": "tool_result", "tool_use_id": call_id, "content": content}),
                    ],
                )
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            // Consecutive messages of one role become one: the API
            // requires the roles to alternate.
            Some(last) if last.assistant == assistant => last.blocks.extend(blocks),
            _ => turns.push(Turn { assistant, blocks }),
        }
    }
    pair_tool_results(&mut turns);
    if turns.first().is_none_or(|t| t.assistant) {
        turns.insert(
            0,
            Turn {
                assistant: false,
                blocks: text_block(EARLIER_LEFT_OUT).into_iter().collect(),
            },
        );
    }
    turns
        .into_iter()
        .map(|t| {
            json!({
                "role": if t.assistant { "assistant" } else { "user" },
                "content": t.blocks,
            })
        })
        .collect()
}

/// Make every user message answer exactly the `tool_use` blocks of the
/// assistant message before it, with the `tool_result` blocks first (as the
/// API requires): a missing result is filled in, and a result for a call
/// that is not there becomes plain text.
fn pair_tool_results(turns: &mut Vec<Turn>) {
    let mut i = 0;
    while i < turns.len() {
        let uses: Vec<String> = if turns[i].assistant {
            turns[i]
                .blocks
                .iter()
                .filter(|b| is_type(b, "tool_use"))
                .filter_map(|b| b.get("id").and_then(Value::as_str).map(str::to_string))
                .collect()
        } else {
            Vec::new()
        };
        let answer_at = i + 1;
        if turns[i].assistant {
            if !uses.is_empty() && turns.get(answer_at).is_none_or(|t| t.assistant) {
                turns.insert(
                    answer_at,
                    Turn {
                        assistant: false,
                        blocks: Vec::new(),
                    },
                );
            }
        } else {
            // A user message not right after an assistant message answers
            // no calls (only the first message can be in this position).
            if i == 0 {
                settle_results(&mut turns[0], &[]);
            }
            i += 1;
            continue;
        }
        if let Some(answer) = turns.get_mut(answer_at) {
            settle_results(answer, &uses);
        }
        i += 1;
    }
}

/// Give `turn` (a user message) exactly one `tool_result` per id of
/// `uses`, first, followed by its other blocks.
fn settle_results(turn: &mut Turn, uses: &[String]) {
    let mut results: Vec<Value> = Vec::new();
    let mut rest: Vec<Value> = Vec::new();
    for block in std::mem::take(&mut turn.blocks) {
        if !is_type(&block, "tool_result") {
            rest.push(block);
            continue;
        }
        let id = block
            .get("tool_use_id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let answered = results
            .iter()
            .any(|r| r.get("tool_use_id").and_then(Value::as_str) == Some(id));
        if uses.iter().any(|u| u == id) && !answered {
            results.push(block);
        } else {
            let content = block
                .get("content")
                .and_then(Value::as_str)
                .unwrap_or_default();
            rest.extend(text_block(&format!(
                "Output of an earlier command:\n{content}"
            )));
        }
    }
    let mut ordered: Vec<Value> = Vec::with_capacity(uses.len() + rest.len());
    for id in uses {
        let found = results
            .iter()
            .position(|r| r.get("tool_use_id").and_then(Value::as_str) == Some(id.as_str()));
        ordered.push(match found {
            Some(at) => results.swap_remove(at),
            None => json!({"type": "tool_result", "tool_use_id": id, "content": NO_RESULT}),
        });
    }
    ordered.extend(rest);
    turn.blocks = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Tool;
    use crate::provider::ToolCall;

    fn call(id: &str, command: &str) -> ToolCall {
        ToolCall {
            id: id.into(),
            tool: Tool::Shell,
            code: command.into(),
        }
    }

    fn result(id: &str, content: &str) -> ChatMessage {
        ChatMessage::ToolResult {
            call_id: id.into(),
            name: "shell".into(),
            content: content.into(),
        }
    }

    fn roles(body: &Value) -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["role"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn system_is_top_level_and_a_tool_exchange_is_blocks() {
        let conv = vec![
            ChatMessage::System("be brief".into()),
            ChatMessage::User("list files".into()),
            ChatMessage::Assistant {
                text: "Looking.".into(),
                tool_calls: vec![call("toolu_1", "ls")],
            },
            result("toolu_1", "a.txt"),
        ];
        let body = request_body("claude-x", 1024, &conv, true);
        assert_eq!(body["system"], "be brief");
        assert_eq!(body["max_tokens"], 1024);
        assert_eq!(body["stream"], true);
        assert_eq!(roles(&body), ["user", "assistant", "user"]);
        let m = &body["messages"];
        assert_eq!(
            m[0]["content"][0],
            json!({"type": "text", "text": "list files"})
        );
        assert_eq!(m[1]["content"][0]["text"], "Looking.");
        assert_eq!(
            m[1]["content"][1],
            json!({"type": "tool_use", "id": "toolu_1", "name": "shell", "input": {"command": "ls"}})
        );
        assert_eq!(
            m[2]["content"][0],
            json!({"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"})
        );
        assert_eq!(body["tools"][0]["name"], "shell");
        assert_eq!(body["tools"][0]["input_schema"]["required"][0], "command");
        assert_eq!(body["tools"][1]["name"], "python");
        assert!(body["tools"][0].get("function").is_none());
    }

    #[test]
    fn same_role_messages_merge_and_empty_text_is_left_out() {
        let conv = vec![
            ChatMessage::System("s".into()),
            ChatMessage::User("one".into()),
            ChatMessage::Assistant {
                text: "   ".into(),
                tool_calls: vec![],
            },
            ChatMessage::User("two".into()),
            ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![call("a", "ls"), call("b", "pwd")],
            },
            result("a", "x"),
            result("b", ""),
            ChatMessage::User("three".into()),
            ChatMessage::Assistant {
                text: "first".into(),
                tool_calls: vec![],
            },
            ChatMessage::Assistant {
                text: "second".into(),
                tool_calls: vec![],
            },
            ChatMessage::User("four".into()),
        ];
        let body = request_body("m", 10, &conv, true);
        assert_eq!(
            roles(&body),
            ["user", "assistant", "user", "assistant", "user"]
        );
        let m = &body["messages"];
        assert_eq!(m[0]["content"].as_array().unwrap().len(), 2, "one + two");
        assert_eq!(
            m[1]["content"].as_array().unwrap().len(),
            2,
            "no empty text"
        );
        let answer = m[2]["content"].as_array().unwrap();
        assert_eq!(answer[0]["tool_use_id"], "a");
        assert_eq!(answer[1]["tool_use_id"], "b");
        assert_eq!(answer[1]["content"], EMPTY_RESULT);
        assert_eq!(answer[2]["text"], "three");
        assert_eq!(m[3]["content"][1]["text"], "second");
        for msg in m.as_array().unwrap() {
            for block in msg["content"].as_array().unwrap() {
                if block["type"] == "text" {
                    assert!(!block["text"].as_str().unwrap().trim().is_empty());
                }
            }
        }
    }

    #[test]
    fn missing_results_are_filled_in_and_strays_become_text() {
        let conv = vec![
            ChatMessage::User("go".into()),
            ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![call("a", "ls"), call("b", "pwd")],
            },
            result("b", "/workspace"),
            result("zzz", "from nowhere"),
            ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![call("c", "true")],
            },
        ];
        let body = request_body("m", 10, &conv, true);
        assert_eq!(
            roles(&body),
            ["user", "assistant", "user", "assistant", "user"]
        );
        let answer = body["messages"][2]["content"].as_array().unwrap();
        assert_eq!(answer[0]["tool_use_id"], "a");
        assert_eq!(answer[0]["content"], NO_RESULT);
        assert_eq!(answer[1]["tool_use_id"], "b");
        assert_eq!(answer[1]["content"], "/workspace");
        assert_eq!(answer[2]["type"], "text");
        assert!(answer[2]["text"].as_str().unwrap().contains("from nowhere"));
        assert_eq!(body["messages"][4]["content"][0]["tool_use_id"], "c");
    }

    #[test]
    fn the_first_message_is_always_the_users() {
        // What a context window that dropped the opening exchange leaves.
        let conv = vec![
            ChatMessage::System("s".into()),
            result("gone", "old output"),
            ChatMessage::Assistant {
                text: "Done.".into(),
                tool_calls: vec![],
            },
            ChatMessage::User("next".into()),
        ];
        let body = request_body("m", 10, &conv, false);
        assert_eq!(roles(&body), ["user", "assistant", "user"]);
        let first = body["messages"][0]["content"].as_array().unwrap();
        assert!(first.iter().all(|b| b["type"] == "text"), "{first:?}");
        assert!(body.get("tools").is_none());

        let only_assistant = vec![ChatMessage::Assistant {
            text: "hi".into(),
            tool_calls: vec![],
        }];
        let body = request_body("m", 10, &only_assistant, false);
        assert_eq!(roles(&body), ["user", "assistant"]);
        assert_eq!(body["messages"][0]["content"][0]["text"], EARLIER_LEFT_OUT);
        assert!(body.get("system").is_none());
    }
}
