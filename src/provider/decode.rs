//! Pure decoders for the providers' streaming wire formats: NDJSON framing
//! (Ollama), the SSE payloads of OpenAI-compatible servers and of Anthropic,
//! and the per-format accumulators that turn payloads into text fragments
//! and whole tool calls. No I/O here: the provider feeds bytes and payloads
//! in, and tests feed recorded and pathological streams.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{ProviderError, ToolCallRequest};

/// What one payload contributed to the reply.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamItem {
    /// A fragment of the reply text.
    Text(String),
}

// ------------------------------------------------------------------ NDJSON

/// Splits a byte stream into JSON lines. Bytes are buffered until a newline,
/// so a write split anywhere (inside a line, inside a UTF-8 character) is
/// harmless.
#[derive(Debug, Default)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
}

/// Longest line accepted; a server that never sends a newline cannot grow
/// memory without bound.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

impl NdjsonDecoder {
    /// Feed bytes; returns the complete lines' JSON values.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Value>, ProviderError> {
        self.buf.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=pos).collect();
            if let Some(v) = parse_line(&line)? {
                out.push(v);
            }
        }
        if self.buf.len() > MAX_LINE_BYTES {
            return Err(ProviderError::Decode(format!(
                "a stream line exceeded {MAX_LINE_BYTES} bytes"
            )));
        }
        Ok(out)
    }

    /// The last line, when the stream ended without a final newline.
    pub fn finish(&mut self) -> Result<Option<Value>, ProviderError> {
        let rest = std::mem::take(&mut self.buf);
        parse_line(&rest)
    }
}

fn parse_line(line: &[u8]) -> Result<Option<Value>, ProviderError> {
    let text = std::str::from_utf8(line)
        .map_err(|e| ProviderError::Decode(format!("a stream line is not UTF-8: {e}")))?
        .trim();
    if text.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text)
        .map(Some)
        .map_err(|e| ProviderError::Decode(format!("a stream line is not JSON ({e}): {text:.200}")))
}

// ------------------------------------------------------------------ Ollama

/// Accumulates Ollama `/api/chat` stream lines.
#[derive(Debug, Default)]
pub struct OllamaStream {
    calls: Vec<ToolCallRequest>,
    /// The last line's `done_reason` was `length`: the reply hit the
    /// model's output limit.
    length_limited: bool,
    done: bool,
}

impl OllamaStream {
    pub fn on_line(&mut self, line: &Value) -> Result<Vec<StreamItem>, ProviderError> {
        if let Some(err) = line.get("error") {
            return Err(remote_error(error_text(err)));
        }
        let mut out = Vec::new();
        if line.get("done_reason").and_then(Value::as_str) == Some("length") {
            self.length_limited = true;
        }
        if let Some(msg) = line.get("message") {
            if let Some(text) = msg.get("content").and_then(Value::as_str) {
                if !text.is_empty() {
                    out.push(StreamItem::Text(text.to_string()));
                }
            }
            if let Some(calls) = msg.get("tool_calls").and_then(Value::as_array) {
                for call in calls {
                    let f = call.get("function").unwrap_or(call);
                    let name = f
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string();
                    // Ollama sends arguments as an object; some proxies send
                    // the OpenAI-style string.
                    let arguments = match f.get("arguments") {
                        Some(Value::String(s)) => parse_arguments(s)?,
                        Some(v) => v.clone(),
                        None => Value::Object(Default::default()),
                    };
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("call_{}", uuid::Uuid::new_v4().simple()));
                    self.calls.push(ToolCallRequest {
                        id,
                        name,
                        arguments,
                    });
                }
            }
        }
        if line.get("done").and_then(Value::as_bool) == Some(true) {
            self.done = true;
        }
        Ok(out)
    }

    /// Whether the reply stopped at the model's output limit
    /// (`done_reason: "length"`) rather than where the model ended it.
    pub fn length_limited(&self) -> bool {
        self.length_limited
    }

    /// The tool calls, once the stream has ended; an error if it ended
    /// without its final `done: true` line.
    pub fn finish(self) -> Result<Vec<ToolCallRequest>, ProviderError> {
        if !self.done {
            return Err(ProviderError::StreamCut);
        }
        Ok(self.calls)
    }
}

// ------------------------------------------------------------------ OpenAI

#[derive(Debug, Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// Accumulates OpenAI-compatible `chat.completion.chunk` payloads. Tool
/// call fragments are gathered per `index`; a new `id` on a reused index
/// starts a new call; arguments are parsed only once the stream is done.
#[derive(Debug, Default)]
pub struct OpenAiStream {
    calls: Vec<PartialCall>,
    /// index -> position in `calls` of the call currently using it.
    by_index: BTreeMap<u64, usize>,
    /// A choice ended with `finish_reason: "length"`: broken arguments are
    /// then the reply limit's fault, which the person can fix.
    truncated: bool,
    done: bool,
}

impl OpenAiStream {
    /// Feed one SSE `data:` payload.
    pub fn on_data(&mut self, data: &str) -> Result<Vec<StreamItem>, ProviderError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(Vec::new());
        }
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Decode(format!("an event is not JSON ({e}): {data:.200}"))
        })?;
        if let Some(err) = chunk.get("error") {
            return Err(remote_error(error_text(err)));
        }
        let mut out = Vec::new();
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            if choice.get("finish_reason").and_then(Value::as_str) == Some("length") {
                self.truncated = true;
            }
            let Some(delta) = choice.get("delta").or_else(|| choice.get("message")) else {
                continue;
            };
            if let Some(text) = delta.get("content").and_then(Value::as_str) {
                if !text.is_empty() {
                    out.push(StreamItem::Text(text.to_string()));
                }
            }
            for (n, call) in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.on_tool_delta(n as u64, call);
            }
        }
        Ok(out)
    }

    fn on_tool_delta(&mut self, position: u64, call: &Value) {
        // Servers that omit `index` send one call per delta in order.
        let index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position);
        let id = call.get("id").and_then(Value::as_str).unwrap_or_default();
        let slot = match self.by_index.get(&index) {
            Some(&i) if id.is_empty() || self.calls[i].id == id || self.calls[i].id.is_empty() => {
                if self.calls[i].id.is_empty() {
                    self.calls[i].id = id.to_string();
                }
                i
            }
            _ => {
                self.calls.push(PartialCall {
                    id: id.to_string(),
                    ..Default::default()
                });
                let i = self.calls.len() - 1;
                self.by_index.insert(index, i);
                i
            }
        };
        if let Some(f) = call.get("function") {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                self.calls[slot].name.push_str(name);
            }
            if let Some(args) = f.get("arguments").and_then(Value::as_str) {
                self.calls[slot].arguments.push_str(args);
            }
        }
    }

    /// Whether the reply stopped at the model's output limit
    /// (`finish_reason: "length"`) rather than where the model ended it.
    pub fn length_limited(&self) -> bool {
        self.truncated
    }

    /// The tool calls, once the stream has ended; an error if it ended
    /// without `data: [DONE]`. A stream with `[DONE]` but no finish reason
    /// is complete: some servers never send one.
    pub fn finish(self) -> Result<Vec<ToolCallRequest>, ProviderError> {
        if !self.done {
            return Err(ProviderError::StreamCut);
        }
        let truncated = self.truncated;
        self.calls
            .into_iter()
            .map(|c| {
                let arguments = match parse_arguments(&c.arguments) {
                    Ok(v) => v,
                    Err(_) if truncated => return Err(ProviderError::Truncated),
                    Err(e) => return Err(e),
                };
                Ok(ToolCallRequest {
                    id: if c.id.is_empty() {
                        format!("call_{}", uuid::Uuid::new_v4().simple())
                    } else {
                        c.id
                    },
                    name: c.name,
                    arguments,
                })
            })
            .collect()
    }
}

// ------------------------------------------------------------------ Anthropic

/// One content block of an Anthropic message while it streams.
#[derive(Debug)]
enum AnthropicBlock {
    /// Text: its deltas go out as they come.
    Text,
    /// A tool call. Its input is built from the `partial_json` fragments
    /// only; the `input` of `content_block_start` (always `{}` from
    /// Anthropic) is used only when no fragment arrives at all.
    ToolUse {
        id: String,
        name: String,
        partial_json: String,
        start_input: Value,
    },
    /// Blocks IronClaw does not show or act on (`thinking`,
    /// `redacted_thinking`, server tools); their deltas are dropped.
    Other,
}

/// Accumulates an Anthropic Messages stream (`message_start`,
/// `content_block_start|delta|stop`, `ping`, `message_delta`,
/// `message_stop`, `error`). Text deltas stream out; tool inputs are parsed
/// once the stream is done, when `stop_reason` can say why one is broken.
#[derive(Debug, Default)]
pub struct AnthropicStream {
    /// Blocks by their `index`, so tool calls come out in the model's order.
    blocks: BTreeMap<u64, AnthropicBlock>,
    /// The block most recently started, for deltas that carry no `index`.
    last_index: Option<u64>,
    /// From `message_delta`: `end_turn`, `tool_use`, `max_tokens`, ...
    stop_reason: Option<String>,
    /// `message_stop` arrived: the only proof the reply is complete.
    done: bool,
}

/// The Anthropic error type that means "try again shortly".
const ANTHROPIC_OVERLOADED: &str = "overloaded_error";

impl AnthropicStream {
    /// Feed one SSE event: its `event:` name and its `data:` payload. The
    /// payload's own `type` wins over the name; the name is the fallback
    /// for servers that send bare `data: {}` pings.
    pub fn on_event(&mut self, event: &str, data: &str) -> Result<Vec<StreamItem>, ProviderError> {
        let data = data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let payload: Value = serde_json::from_str(data).map_err(|e| {
            ProviderError::Decode(format!("an event is not JSON ({e}): {data:.200}"))
        })?;
        // An `{"error": …}` payload without `type` is an OpenAI-style error
        // line: gateways (LiteLLM) put one in an Anthropic stream, with no
        // `event:` name either, when the upstream fails mid-reply.
        let untyped_error = payload.get("type").is_none() && payload.get("error").is_some();
        let kind = match payload.get("type").and_then(Value::as_str) {
            Some(kind) => kind,
            None if untyped_error => "error",
            None => event,
        }
        .to_string();
        let mut out = Vec::new();
        match kind.as_str() {
            "content_block_start" => {
                let index = self.index_of(&payload, true);
                let block = payload.get("content_block").unwrap_or(&Value::Null);
                let started = match block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        if let Some(text) = block.get("text").and_then(Value::as_str) {
                            if !text.is_empty() {
                                out.push(StreamItem::Text(text.to_string()));
                            }
                        }
                        AnthropicBlock::Text
                    }
                    Some("tool_use") => AnthropicBlock::ToolUse {
                        id: block
                            .get("id")
                            .and_then(Value::as_str)
                            .map(str::to_string)
                            .unwrap_or_else(|| format!("toolu_{}", uuid::Uuid::new_v4().simple())),
                        name: block
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_string(),
                        partial_json: String::new(),
                        start_input: block.get("input").cloned().unwrap_or(Value::Null),
                    },
                    _ => AnthropicBlock::Other,
                };
                self.blocks.insert(index, started);
                self.last_index = Some(index);
            }
            "content_block_delta" => {
                let index = self.index_of(&payload, false);
                let delta = payload.get("delta").unwrap_or(&Value::Null);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                        let shown =
                            matches!(self.blocks.get(&index), Some(AnthropicBlock::Text) | None);
                        if shown && !text.is_empty() {
                            out.push(StreamItem::Text(text.to_string()));
                        }
                    }
                    Some("input_json_delta") => {
                        let fragment = delta
                            .get("partial_json")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        match self.blocks.get_mut(&index) {
                            Some(AnthropicBlock::ToolUse { partial_json, .. }) => {
                                partial_json.push_str(fragment);
                            }
                            Some(AnthropicBlock::Other) => {}
                            Some(AnthropicBlock::Text) | None => {
                                return Err(ProviderError::Decode(format!(
                                    "tool input arrived for content block {index}, which is not a tool call"
                                )))
                            }
                        }
                    }
                    // thinking_delta, signature_delta, citations_delta and
                    // whatever comes next: nothing to show or run.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(reason) = payload
                    .pointer("/delta/stop_reason")
                    .and_then(Value::as_str)
                {
                    self.stop_reason = Some(reason.to_string());
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let err = payload.get("error").unwrap_or(&payload);
                let message = error_text(err);
                return Err(
                    if err.get("type").and_then(Value::as_str) == Some(ANTHROPIC_OVERLOADED) {
                        ProviderError::Overloaded(message)
                    } else {
                        remote_error(message)
                    },
                );
            }
            // message_start, content_block_stop, ping, and event types added
            // later: Anthropic asks clients to ignore what they don't know.
            _ => {}
        }
        Ok(out)
    }

    /// The block an event is about: its `index`, else (for a start) the
    /// next free one or (for a delta) the one most recently started.
    fn index_of(&self, payload: &Value, starting: bool) -> u64 {
        if let Some(i) = payload.get("index").and_then(Value::as_u64) {
            return i;
        }
        if starting {
            self.blocks.keys().next_back().map_or(0, |i| i + 1)
        } else {
            self.last_index.unwrap_or(0)
        }
    }

    /// Whether the reply stopped at the model's output limit
    /// (`stop_reason: "max_tokens"`) rather than where the model ended it.
    pub fn length_limited(&self) -> bool {
        self.stop_reason.as_deref() == Some("max_tokens")
    }

    /// The tool calls, once the stream has ended; an error if it ended
    /// without `message_stop`.
    pub fn finish(self) -> Result<Vec<ToolCallRequest>, ProviderError> {
        if !self.done {
            return Err(ProviderError::StreamCut);
        }
        let truncated = self.length_limited();
        let mut calls = Vec::new();
        for block in self.blocks.into_values() {
            let AnthropicBlock::ToolUse {
                id,
                name,
                partial_json,
                start_input,
            } = block
            else {
                continue;
            };
            let arguments = if partial_json.trim().is_empty() && start_input.is_object() {
                start_input
            } else {
                match parse_arguments(&partial_json) {
                    Ok(v) => v,
                    Err(_) if truncated => return Err(ProviderError::Truncated),
                    Err(e) => return Err(e),
                }
            };
            calls.push(ToolCallRequest {
                id,
                name,
                arguments,
            });
        }
        Ok(calls)
    }
}

/// Tool arguments as sent (a JSON object in a string). An empty string is
/// no arguments.
fn parse_arguments(s: &str) -> Result<Value, ProviderError> {
    if s.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(s).map_err(|e| {
        ProviderError::Decode(format!(
            "the model sent tool arguments that are not JSON ({e}): {s:.200}"
        ))
    })
}

/// A provider's error object as one readable line.
pub fn error_text(err: &Value) -> String {
    match err {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| err.to_string()),
        other => other.to_string(),
    }
}

// ------------------------------------------------------------------ errors

/// Longest part of an error body quoted when no message can be read out of
/// it (an HTML error page, say): enough to recognise it, short enough for
/// one line of the page.
pub const ERROR_QUOTE_CHARS: usize = 300;

/// The server's message in the body of a refused request, as one clause
/// (whitespace collapsed, no full stop: the templates punctuate). The body
/// may be a JSON error (`{"error": …}` of OpenAI, Anthropic and Ollama,
/// `{"message": …}` of vLLM, `{"detail": …}` of FastAPI servers), the same
/// in SSE `data:` lines (LiteLLM answers a streamed request's errors so),
/// or plain text.
pub fn error_body(body: &str) -> String {
    let body = body.trim();
    let message = match json_error(body) {
        Some(message) => message,
        None => {
            let events: Vec<String> = sse_payloads(body)
                .into_iter()
                .filter(|data| !data.is_empty() && data != "[DONE]")
                .map(|data| json_error(&data).unwrap_or(data))
                .collect();
            if events.is_empty() {
                body.to_string()
            } else {
                events.join(" ")
            }
        }
    };
    let line = message.split_whitespace().collect::<Vec<_>>().join(" ");
    let line = line.trim_end_matches('.');
    if line.chars().count() > ERROR_QUOTE_CHARS {
        let cut: String = line.chars().take(ERROR_QUOTE_CHARS).collect();
        format!("{cut}…")
    } else {
        line.to_string()
    }
}

/// The message of a JSON error body, if `text` is one.
fn json_error(text: &str) -> Option<String> {
    let v: Value = serde_json::from_str(text).ok()?;
    let found = ["error", "message", "detail"]
        .iter()
        .find_map(|key| v.get(key))
        .map(error_text);
    match (found, &v) {
        (Some(message), _) => Some(message),
        (None, Value::String(s)) => Some(s.clone()),
        (None, _) => None,
    }
}

/// The `data:` payload of each event of an SSE body: its `data:` lines
/// joined by newlines, as the SSE specification joins them.
fn sse_payloads(body: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut data: Option<String> = None;
    for line in body.lines() {
        if line.is_empty() {
            events.extend(data.take());
            continue;
        }
        if let Some(value) = line.strip_prefix("data:") {
            let value = value.strip_prefix(' ').unwrap_or(value);
            match data.as_mut() {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => data = Some(value.to_string()),
            }
        }
    }
    events.extend(data);
    events
}

/// What servers say when the prompt is over the model's context: Anthropic
/// (`prompt is too long`), OpenAI (`context_length_exceeded`, `maximum
/// context length`), vLLM and llama.cpp (`context length`, `context size`),
/// LiteLLM (`ContextWindowExceededError`, `context window`). Lowercase.
const CONTEXT_OVERFLOW: [&str; 7] = [
    "prompt is too long",
    "context_length_exceeded",
    "maximum context length",
    "context length",
    "exceeds the available context size",
    "contextwindowexceedederror",
    "context window",
];

/// Whether the server's message says the prompt is over the context.
pub fn is_context_overflow(message: &str) -> bool {
    let lower = message.to_lowercase();
    CONTEXT_OVERFLOW.iter().any(|t| lower.contains(t))
}

/// What servers say, with a 400, about a model they do not serve: LiteLLM
/// (`Invalid model name passed in model=…`) and OpenAI's `model_not_found`
/// code. Lowercase.
const UNKNOWN_MODEL: [&str; 2] = ["invalid model name", "model_not_found"];

/// Whether the server's message says it does not know the model.
pub fn is_unknown_model(message: &str) -> bool {
    let lower = message.to_lowercase();
    UNKNOWN_MODEL.iter().any(|t| lower.contains(t))
}

/// A mid-stream error reported by the server: a context overflow gets its
/// own actionable message, anything else is quoted.
pub fn remote_error(message: String) -> ProviderError {
    if is_context_overflow(&message) {
        ProviderError::ContextTooLong { detail: message }
    } else {
        ProviderError::Remote(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ndjson_in_pieces(bytes: &[u8], piece: usize) -> Vec<Value> {
        let mut d = NdjsonDecoder::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            out.extend(d.push(chunk).unwrap());
        }
        out.extend(d.finish().unwrap());
        out
    }

    const OLLAMA_RECORDED: &str = concat!(
        r#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"Grüße, "},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":"wörld 🌍"},"done":false}"#,
        "\n",
        r#"{"model":"llama3.2","created_at":"2024-01-01T00:00:00Z","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","total_duration":1,"eval_count":3}"#,
        "\n"
    );

    #[test]
    fn ndjson_survives_every_split_including_inside_utf8() {
        let whole = ndjson_in_pieces(OLLAMA_RECORDED.as_bytes(), usize::MAX);
        assert_eq!(whole.len(), 3);
        for piece in [1, 2, 3, 5, 7, 13] {
            assert_eq!(ndjson_in_pieces(OLLAMA_RECORDED.as_bytes(), piece), whole);
        }
    }

    #[test]
    fn ndjson_handles_crlf_blank_lines_and_a_missing_final_newline() {
        let got = ndjson_in_pieces(b"{\"a\":1}\r\n\r\n\n{\"a\":2}", 4);
        assert_eq!(got, vec![json!({"a":1}), json!({"a":2})]);
    }

    #[test]
    fn ndjson_rejects_garbage_and_runaway_lines() {
        let mut d = NdjsonDecoder::default();
        assert!(d.push(b"not json\n").is_err());
        let mut d = NdjsonDecoder::default();
        assert!(d.push(&vec![b'x'; MAX_LINE_BYTES + 1]).is_err());
    }

    fn ollama_text(lines: &[Value]) -> (String, Result<Vec<ToolCallRequest>, ProviderError>) {
        let mut s = OllamaStream::default();
        let mut text = String::new();
        for l in lines {
            for StreamItem::Text(t) in s.on_line(l).unwrap() {
                text.push_str(&t);
            }
        }
        (text, s.finish())
    }

    #[test]
    fn ollama_text_and_terminator() {
        let lines = ndjson_in_pieces(OLLAMA_RECORDED.as_bytes(), 3);
        let (text, calls) = ollama_text(&lines);
        assert_eq!(text, "Grüße, wörld 🌍");
        assert!(calls.unwrap().is_empty());
        let (_, cut) = ollama_text(&lines[..2]);
        assert!(matches!(cut, Err(ProviderError::StreamCut)));
    }

    #[test]
    fn ollama_tool_calls_arrive_whole_with_object_arguments() {
        let lines = vec![
            json!({"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"shell","arguments":{"command":"ls"}}}]},"done":false}),
            json!({"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}),
        ];
        let (_, calls) = ollama_text(&lines);
        let calls = calls.unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].name, "shell");
        assert_eq!(calls[0].arguments, json!({"command":"ls"}));
    }

    #[test]
    fn ollama_error_line_is_an_error() {
        let mut s = OllamaStream::default();
        let e = s
            .on_line(&json!({"error":"model ran out of memory"}))
            .unwrap_err();
        assert!(e.to_string().contains("out of memory"));
    }

    fn openai(payloads: &[&str]) -> (String, Result<Vec<ToolCallRequest>, ProviderError>) {
        let mut s = OpenAiStream::default();
        let mut text = String::new();
        for p in payloads {
            for StreamItem::Text(t) in s.on_data(p).unwrap() {
                text.push_str(&t);
            }
        }
        (text, s.finish())
    }

    #[test]
    fn openai_text_usage_chunk_and_done() {
        let (text, calls) = openai(&[
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"x","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}"#,
            r#"{"id":"x","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#,
            "[DONE]",
        ]);
        assert_eq!(text, "Hello");
        assert!(calls.unwrap().is_empty());
    }

    #[test]
    fn openai_without_done_is_cut() {
        let (_, calls) = openai(&[r#"{"choices":[{"index":0,"delta":{"content":"Hel"}}]}"#]);
        assert!(matches!(calls, Err(ProviderError::StreamCut)));
    }

    #[test]
    fn openai_tool_call_fragments_accumulate_per_index() {
        let (_, calls) = openai(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"shell","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"python","arguments":"{\"co"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"command\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"ls -la\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"de\":\"print(1)\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            "[DONE]",
        ]);
        let calls = calls.unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_a");
        assert_eq!(calls[0].arguments, json!({"command":"ls -la"}));
        assert_eq!(calls[1].name, "python");
        assert_eq!(calls[1].arguments, json!({"code":"print(1)"}));
    }

    #[test]
    fn openai_new_id_on_reused_index_starts_a_new_call() {
        let (_, calls) = openai(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"shell","arguments":"{\"command\":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"b","function":{"name":"shell","arguments":"{\"command\":\"pwd\"}"}}]}}]}"#,
            "[DONE]",
        ]);
        let calls = calls.unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[1].arguments, json!({"command":"pwd"}));
    }

    #[test]
    fn openai_bad_arguments_and_error_payloads_are_errors() {
        let (_, calls) = openai(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"shell","arguments":"{\"comm"}}]}}]}"#,
            "[DONE]",
        ]);
        assert!(calls.is_err());
        let mut s = OpenAiStream::default();
        let e = s
            .on_data(r#"{"error":{"message":"upstream overloaded","type":"server_error"}}"#)
            .unwrap_err();
        assert!(e.to_string().contains("upstream overloaded"));
    }

    // ---------------------------------------------------------- Anthropic

    /// A tool-using reply as Anthropic streams it (shape from the API
    /// reference), with non-ASCII text and input to split inside.
    const ANTHROPIC_RECORDED: &str = concat!(
        "event: message_start\n",
        r#"data: {"type":"message_start","message":{"id":"msg_014p7gG3wDgGV9EUtLvnow3U","type":"message","role":"assistant","model":"claude-sonnet-4-5","stop_sequence":null,"usage":{"input_tokens":472,"output_tokens":2},"content":[],"stop_reason":null}}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        "\n\n",
        "event: ping\n",
        r#"data: {"type": "ping"}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Okay, let me look"}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" — Grüße 🌍"}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":0}"#,
        "\n\n",
        "event: content_block_start\n",
        r#"data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"shell","input":{}}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"command\": \"ec"}}"#,
        "\n\n",
        "event: content_block_delta\n",
        r#"data: {"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"ho hé 🌍\"}"}}"#,
        "\n\n",
        "event: content_block_stop\n",
        r#"data: {"type":"content_block_stop","index":1}"#,
        "\n\n",
        "event: message_delta\n",
        r#"data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
        "\n\n",
        "event: message_stop\n",
        r#"data: {"type":"message_stop"}"#,
        "\n\n",
    );

    type Decoded = (String, Result<Vec<ToolCallRequest>, ProviderError>);

    /// Runs byte chunks through the real SSE parser and the accumulator,
    /// as the provider does. An error from an event ends the stream.
    async fn anthropic_sse(chunks: Vec<Vec<u8>>) -> Decoded {
        use eventsource_stream::Eventsource;
        use futures_util::StreamExt;
        let mut events = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        )
        .eventsource();
        let mut acc = AnthropicStream::default();
        let mut text = String::new();
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            match acc.on_event(&event.event, &event.data) {
                Ok(items) => {
                    for StreamItem::Text(t) in items {
                        text.push_str(&t);
                    }
                }
                Err(e) => return (text, Err(e)),
            }
        }
        (text, acc.finish())
    }

    fn anthropic(events: &[(&str, Value)]) -> Decoded {
        let mut acc = AnthropicStream::default();
        let mut text = String::new();
        for (name, data) in events {
            match acc.on_event(name, &data.to_string()) {
                Ok(items) => {
                    for StreamItem::Text(t) in items {
                        text.push_str(&t);
                    }
                }
                Err(e) => return (text, Err(e)),
            }
        }
        (text, acc.finish())
    }

    fn tool_start(index: u64, id: &str, input: Value) -> (&'static str, Value) {
        (
            "content_block_start",
            json!({"type":"content_block_start","index":index,
                   "content_block":{"type":"tool_use","id":id,"name":"shell","input":input}}),
        )
    }

    fn input_delta(index: u64, partial: &str) -> (&'static str, Value) {
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":index,
                   "delta":{"type":"input_json_delta","partial_json":partial}}),
        )
    }

    fn text_start(index: u64) -> (&'static str, Value) {
        (
            "content_block_start",
            json!({"type":"content_block_start","index":index,"content_block":{"type":"text","text":""}}),
        )
    }

    fn text_delta(index: u64, text: &str) -> (&'static str, Value) {
        (
            "content_block_delta",
            json!({"type":"content_block_delta","index":index,"delta":{"type":"text_delta","text":text}}),
        )
    }

    fn stop(index: u64) -> (&'static str, Value) {
        (
            "content_block_stop",
            json!({"type":"content_block_stop","index":index}),
        )
    }

    fn message_end(reason: &str) -> [(&'static str, Value); 2] {
        [
            (
                "message_delta",
                json!({"type":"message_delta","delta":{"stop_reason":reason,"stop_sequence":null},"usage":{"output_tokens":5}}),
            ),
            ("message_stop", json!({"type":"message_stop"})),
        ]
    }

    fn check_recorded((text, calls): &Decoded, how: &str) {
        assert_eq!(text, "Okay, let me look — Grüße 🌍", "{how}");
        let calls = calls.as_ref().unwrap_or_else(|e| panic!("{how}: {e}"));
        assert_eq!(calls.len(), 1, "{how}");
        assert_eq!(calls[0].id, "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "{how}");
        assert_eq!(calls[0].name, "shell", "{how}");
        assert_eq!(
            calls[0].arguments,
            json!({"command": "echo hé 🌍"}),
            "{how}"
        );
    }

    #[actix_rt::test]
    async fn anthropic_recorded_stream_survives_a_split_at_every_byte_offset() {
        for (label, recorded) in [
            ("LF", ANTHROPIC_RECORDED.to_string()),
            ("CRLF", ANTHROPIC_RECORDED.replace('\n', "\r\n")),
        ] {
            let bytes = recorded.as_bytes();
            check_recorded(&anthropic_sse(vec![bytes.to_vec()]).await, label);
            for at in 1..bytes.len() {
                let chunks = vec![bytes[..at].to_vec(), bytes[at..].to_vec()];
                check_recorded(
                    &anthropic_sse(chunks).await,
                    &format!("{label} split at {at}"),
                );
            }
            for piece in 1..=7 {
                let chunks = bytes.chunks(piece).map(<[u8]>::to_vec).collect();
                check_recorded(
                    &anthropic_sse(chunks).await,
                    &format!("{label} in {piece}-byte pieces"),
                );
            }
        }
    }

    #[actix_rt::test]
    async fn anthropic_comments_pings_and_data_without_a_space_are_harmless() {
        let noisy = ANTHROPIC_RECORDED.replace("data: ", "data:").replace(
            "event: content_block_stop\n",
            ": keep-alive\n\nevent: ping\ndata: {}\n\nevent: content_block_stop\n",
        );
        check_recorded(&anthropic_sse(vec![noisy.into_bytes()]).await, "noisy");
    }

    #[actix_rt::test]
    async fn anthropic_stream_without_message_stop_is_cut_at_every_event_boundary() {
        let frames: Vec<&str> = ANTHROPIC_RECORDED.split_inclusive("\n\n").collect();
        for end in 0..frames.len() {
            let (_, calls) = anthropic_sse(vec![frames[..end].concat().into_bytes()]).await;
            assert!(
                matches!(calls, Err(ProviderError::StreamCut)),
                "ended after {end} events: {calls:?}"
            );
        }
    }

    #[test]
    fn anthropic_mid_stream_errors_say_overloaded_or_what_failed() {
        let error = |kind: &str, message: &str| {
            (
                "error",
                json!({"type":"error","error":{"type":kind,"message":message}}),
            )
        };
        let (text, got) = anthropic(&[
            text_start(0),
            text_delta(0, "Half"),
            error("overloaded_error", "Overloaded"),
        ]);
        assert_eq!(text, "Half");
        let e = got.unwrap_err();
        assert!(matches!(e, ProviderError::Overloaded(_)), "{e:?}");
        assert_eq!(e.code(), "provider_busy");
        assert!(e.to_string().contains("Overloaded"));

        let (_, got) = anthropic(&[error("api_error", "Internal server error")]);
        let e = got.unwrap_err();
        assert_eq!(e.code(), "provider_error");
        assert!(e.to_string().contains("Internal server error"));
    }

    #[test]
    fn anthropic_input_comes_from_partial_json_only() {
        let mut events = vec![
            tool_start(0, "toolu_a", json!({"command": "not this"})),
            input_delta(0, "{\"command\":"),
            input_delta(0, " \"ls\"}"),
            stop(0),
            // No fragments at all: the (empty) start input stands.
            tool_start(1, "toolu_b", json!({})),
            stop(1),
        ];
        events.extend(message_end("tool_use"));
        let (text, calls) = anthropic(&events);
        assert_eq!(text, "");
        let calls = calls.unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].arguments, json!({"command": "ls"}));
        assert_eq!(calls[1].id, "toolu_b");
        assert_eq!(calls[1].arguments, json!({}));
    }

    #[test]
    fn anthropic_tool_calls_come_out_in_block_order_whatever_the_interleaving() {
        let mut events = vec![
            tool_start(2, "toolu_late", json!({})),
            tool_start(1, "toolu_early", json!({})),
            input_delta(2, "{\"command\":\"pwd\"}"),
            input_delta(1, "{\"command\":\"ls\"}"),
            stop(1),
            stop(2),
        ];
        events.extend(message_end("tool_use"));
        let calls = anthropic(&events).1.unwrap();
        let ids: Vec<&str> = calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["toolu_early", "toolu_late"]);
    }

    #[test]
    fn anthropic_broken_input_is_an_error_and_says_max_tokens_when_that_is_why() {
        let broken = [
            tool_start(0, "toolu_a", json!({})),
            input_delta(0, "{\"command\": \"ech"),
            stop(0),
        ];
        let mut events = broken.to_vec();
        events.extend(message_end("tool_use"));
        let e = anthropic(&events).1.unwrap_err();
        assert_eq!(e.code(), "provider_bad_response", "{e}");

        let mut events = broken.to_vec();
        events.extend(message_end("max_tokens"));
        let e = anthropic(&events).1.unwrap_err();
        assert_eq!(e.code(), "provider_max_tokens");
        assert!(e.to_string().contains("provider.max_tokens"));
    }

    #[test]
    fn anthropic_thinking_is_hidden_and_start_text_unknown_events_and_bare_pings_are_handled() {
        let mut events = vec![
            ("ping", json!({})),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"secret"}}),
            ),
            (
                "content_block_delta",
                json!({"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"abc"}}),
            ),
            stop(0),
            (
                "content_block_start",
                json!({"type":"content_block_start","index":1,"content_block":{"type":"text","text":"Hi"}}),
            ),
            text_delta(1, " there"),
            ("some_future_event", json!({"type":"some_future_event"})),
            stop(1),
        ];
        events.extend(message_end("end_turn"));
        let (text, calls) = anthropic(&events);
        assert_eq!(text, "Hi there");
        assert!(calls.unwrap().is_empty());
    }

    #[test]
    fn anthropic_garbage_is_a_decode_error() {
        let mut acc = AnthropicStream::default();
        let e = acc
            .on_event("content_block_delta", "{not json")
            .unwrap_err();
        assert_eq!(e.code(), "provider_bad_response");
        let e = anthropic(&[text_start(0), input_delta(0, "{}")])
            .1
            .unwrap_err();
        assert_eq!(e.code(), "provider_bad_response");
        // An empty payload (a keep-alive) is nothing.
        assert!(acc.on_event("ping", "").unwrap().is_empty());
    }

    #[test]
    fn openai_broken_arguments_after_length_say_max_tokens() {
        let (_, calls) = openai(&[
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"shell","arguments":"{\"comm"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            "[DONE]",
        ]);
        assert_eq!(calls.unwrap_err().code(), "provider_max_tokens");
    }

    #[test]
    fn openai_without_index_or_finish_reason_still_separates_calls() {
        let (_, calls) = openai(&[
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"a","type":"function","function":{"name":"shell","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"command\":\"ls\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"b","type":"function","function":{"name":"shell","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"{\"command\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"\"pwd\"}"}}]},"finish_reason":""}]}"#,
            "[DONE]",
        ]);
        let calls = calls.unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "a");
        assert_eq!(calls[0].arguments, json!({"command": "ls"}));
        assert_eq!(calls[1].id, "b");
        assert_eq!(calls[1].arguments, json!({"command": "pwd"}));
    }

    // ---------------------------------------------------------- length

    #[test]
    fn each_decoder_says_when_the_text_stopped_at_the_output_limit() {
        let ollama = |reason: &str| {
            let mut s = OllamaStream::default();
            s.on_line(&json!({"message":{"role":"assistant","content":"Half a sen"},"done":false}))
                .unwrap();
            s.on_line(&json!({"message":{"role":"assistant","content":""},"done":true,"done_reason":reason}))
                .unwrap();
            let limited = s.length_limited();
            assert!(s.finish().unwrap().is_empty());
            limited
        };
        assert!(ollama("length"));
        assert!(!ollama("stop"));

        let openai = |reason: &str| {
            let mut s = OpenAiStream::default();
            s.on_data(r#"{"choices":[{"index":0,"delta":{"content":"Half a sen"}}]}"#)
                .unwrap();
            s.on_data(&format!(
                r#"{{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{reason}"}}]}}"#
            ))
            .unwrap();
            s.on_data("[DONE]").unwrap();
            let limited = s.length_limited();
            assert!(s.finish().unwrap().is_empty());
            limited
        };
        assert!(openai("length"));
        assert!(!openai("stop"));

        let anthropic = |reason: &str| {
            let mut events = vec![text_start(0), text_delta(0, "Half a sen"), stop(0)];
            events.extend(message_end(reason));
            let mut acc = AnthropicStream::default();
            for (name, data) in &events {
                acc.on_event(name, &data.to_string()).unwrap();
            }
            let limited = acc.length_limited();
            assert!(acc.finish().unwrap().is_empty());
            limited
        };
        assert!(anthropic("max_tokens"));
        assert!(!anthropic("end_turn"));
    }

    // ---------------------------------------------------------- errors

    #[test]
    fn error_bodies_are_read_whatever_their_form() {
        let long = "x".repeat(ERROR_QUOTE_CHARS + 50);
        let cut = format!("{}…", "x".repeat(ERROR_QUOTE_CHARS));
        for (body, expected) in [
            // OpenAI, and LiteLLM's stringified Python `None`s.
            (
                r#"{"error":{"message":"Incorrect API key provided.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#,
                "Incorrect API key provided",
            ),
            // Anthropic.
            (
                r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"}}"#,
                "model: claude-x",
            ),
            // Ollama.
            (r#"{"error":"model \"x\" not found"}"#, r#"model "x" not found"#),
            // vLLM and FastAPI servers.
            (r#"{"object":"error","message":"bad temperature","code":400}"#, "bad temperature"),
            (r#"{"detail":"Not authenticated"}"#, "Not authenticated"),
            (r#"{"detail":[{"msg":"field required"}]}"#, r#"[{"msg":"field required"}]"#),
            // LiteLLM's answer to a streamed request: SSE, CRLF or not.
            (
                "data: {\"error\": {\"message\": \"Invalid model name passed in model=x.\", \"type\": \"None\"}}\n\n",
                "Invalid model name passed in model=x",
            ),
            (
                "event: error\r\ndata: {\"error\": \"boom\"}\r\n\r\ndata: [DONE]\r\n\r\n",
                "boom",
            ),
            ("data:not json\n\n", "not json"),
            // Plain text, one line, cut when long.
            ("upstream connect error\n  or disconnect/reset before headers.\n", "upstream connect error or disconnect/reset before headers"),
            (long.as_str(), cut.as_str()),
            ("", ""),
        ] {
            assert_eq!(error_body(body), expected, "{body:?}");
        }
    }

    #[test]
    fn context_overflow_and_unknown_model_are_recognised_in_servers_words() {
        for (message, overflow, unknown) in [
            (
                "prompt is too long: 210000 tokens > 200000 maximum",
                true,
                false,
            ),
            (
                "This model's maximum context length is 8192 tokens.",
                true,
                false,
            ),
            (
                "litellm.ContextWindowExceededError: VertexAIException - too many tokens",
                true,
                false,
            ),
            (
                "Input is too long for the model's context window",
                true,
                false,
            ),
            (
                "the request exceeds the available context size",
                true,
                false,
            ),
            (
                "/chat/completions: Invalid model name passed in model=gpt-9",
                false,
                true,
            ),
            ("NotFoundError: model_not_found", false, true),
            ("Incorrect API key provided", false, false),
            ("temperature must be at most 2", false, false),
        ] {
            assert_eq!(is_context_overflow(message), overflow, "{message}");
            assert_eq!(is_unknown_model(message), unknown, "{message}");
            let e = remote_error(message.to_string());
            assert_eq!(
                e.code(),
                if overflow {
                    "provider_context_too_long"
                } else {
                    "provider_error"
                },
                "{message}"
            );
        }
    }

    #[test]
    fn an_error_line_without_type_in_an_anthropic_stream_is_the_servers_message() {
        let mut acc = AnthropicStream::default();
        acc.on_event("content_block_start", &text_start(0).1.to_string())
            .unwrap();
        // LiteLLM: no `event:` name (so the SSE parser says `message`) and
        // no `type` in the payload.
        let e = acc
            .on_event(
                "message",
                r#"{"error": {"message": "upstream connection lost", "type": "None", "param": "None", "code": "500"}}"#,
            )
            .unwrap_err();
        assert_eq!(e.code(), "provider_error");
        assert!(e.to_string().contains("upstream connection lost"), "{e}");
        let e = AnthropicStream::default()
            .on_event(
                "message",
                r#"{"error": {"message": "Overloaded", "type": "overloaded_error"}}"#,
            )
            .unwrap_err();
        assert!(matches!(e, ProviderError::Overloaded(_)), "{e:?}");
        let e = AnthropicStream::default()
            .on_event(
                "message",
                r#"{"error": "litellm.ContextWindowExceededError: too long"}"#,
            )
            .unwrap_err();
        assert_eq!(e.code(), "provider_context_too_long");
    }
}
