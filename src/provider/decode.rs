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
    done: bool,
}

impl OllamaStream {
    pub fn on_line(&mut self, line: &Value) -> Result<Vec<StreamItem>, ProviderError> {
        if let Some(err) = line.get("error") {
            return Err(ProviderError::Remote(error_text(err)));
        }
        let mut out = Vec::new();
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
            return Err(ProviderError::Remote(error_text(err)));
        }
        let mut out = Vec::new();
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
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

    /// The tool calls, once the stream has ended; an error if it ended
    /// without `data: [DONE]`.
    pub fn finish(self) -> Result<Vec<ToolCallRequest>, ProviderError> {
        if !self.done {
            return Err(ProviderError::StreamCut);
        }
        self.calls
            .into_iter()
            .map(|c| {
                Ok(ToolCallRequest {
                    id: if c.id.is_empty() {
                        format!("call_{}", uuid::Uuid::new_v4().simple())
                    } else {
                        c.id
                    },
                    name: c.name,
                    arguments: parse_arguments(&c.arguments)?,
                })
            })
            .collect()
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
}
