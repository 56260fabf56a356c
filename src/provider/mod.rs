//! The ProviderActor: one per live session, it streams a completion from the
//! configured LLM server (Ollama's native `/api/chat` as NDJSON, any
//! OpenAI-compatible `/v1/chat/completions` as SSE, or Anthropic's
//! `/v1/messages` as SSE) and sends the reply back to the AgentActor as
//! typed `ProviderEvent`s. Also the start-up health check, model listing
//! and resolution, and the tool-support probe of `ironclaw check`.
//!
//! Messages: [`Complete`] starts a stream, [`CancelCompletion`] drops it at
//! once (closing the HTTP connection). Events go out through a bounded
//! mailbox (`Recipient::send`), so a slow consumer slows the stream instead
//! of growing memory.
//!
//! Transient failures (429, 5xx, Anthropic's 529 and mid-stream
//! `overloaded_error`, a connection dropped before the first token) are
//! retried with backoff, honouring `retry-after`,
//! but only before any reply text has been delivered: after that a retry
//! would repeat what the person already saw.

pub mod anthropic;
pub mod decode;

use std::time::Duration;

use actix::prelude::*;
use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::config::{ProviderKind, ProviderSettings};
use crate::protocol::{CallId, ErrorCode, ProviderHealth, Tool};
use decode::{AnthropicStream, NdjsonDecoder, OllamaStream, OpenAiStream, StreamItem};

/// A tool call as a wire decoder reads it: a name and whatever arguments
/// the model sent. It becomes a [`ToolCall`] (or an error) once, in
/// [`ToolCall::decode`], before it leaves this module.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallRequest {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// A tool call the model asked for, decoded: which tool and the code to
/// run. The rest of IronClaw sees only this shape.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolCall {
    pub id: CallId,
    pub tool: Tool,
    pub code: String,
}

impl ToolCall {
    /// Decode a raw call: `shell {command}` or `python {code}`, nothing
    /// else. Anything else is the model's mistake, reported as such.
    ///
    /// The call gets an id of IronClaw's own: providers' ids are not unique
    /// (some count from 0 in every reply), and the id keys the audit. The
    /// provider's id is not needed again: every request carries the whole
    /// conversation, and any id pairs a call with its result there.
    pub fn decode(raw: ToolCallRequest) -> Result<ToolCall, ProviderError> {
        let tool = match raw.name.as_str() {
            "shell" => Some(Tool::Shell),
            "python" => Some(Tool::Python),
            _ => None,
        };
        let code = tool.and_then(|t| raw.arguments.get(t.argument()).and_then(Value::as_str));
        match (tool, code) {
            (Some(tool), Some(code)) => Ok(ToolCall {
                id: CallId::fresh_call(),
                tool,
                code: code.to_string(),
            }),
            _ => {
                let mut args = raw.arguments.to_string();
                if args.len() > BAD_CALL_SHOWN {
                    let mut cut = BAD_CALL_SHOWN;
                    while !args.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    args.truncate(cut);
                    args.push('…');
                }
                Err(ProviderError::BadToolCall {
                    name: raw.name.chars().take(BAD_CALL_SHOWN).collect(),
                    arguments: args,
                })
            }
        }
    }

    /// The call's name on the wire.
    pub fn name(&self) -> &'static str {
        self.tool.as_str()
    }

    /// The call's arguments on the wire: `{"command": …}` or `{"code": …}`.
    pub fn arguments(&self) -> Value {
        json!({ self.tool.argument(): self.code })
    }
}

/// How much of a malformed tool call is quoted back in the error.
const BAD_CALL_SHOWN: usize = 200;

/// One message of the conversation as the model sees it, independent of
/// the provider's wire format.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatMessage {
    System(String),
    User(String),
    Assistant {
        text: String,
        tool_calls: Vec<ToolCall>,
    },
    ToolResult {
        call_id: CallId,
        name: String,
        content: String,
    },
}

impl ChatMessage {
    /// Rough size in bytes, for the context budget.
    pub fn weight(&self) -> usize {
        match self {
            ChatMessage::System(t) | ChatMessage::User(t) => t.len(),
            ChatMessage::Assistant { text, tool_calls } => {
                text.len()
                    + tool_calls
                        .iter()
                        .map(|c| c.code.len() + c.name().len())
                        .sum::<usize>()
            }
            ChatMessage::ToolResult { content, .. } => content.len(),
        }
    }
}

/// `kind` in the variants that name the server is [`kind_name`]'s word
/// for it ("Ollama", "OpenAI-compatible", "Anthropic"); the templates say
/// "the {kind} server" around it, so every kind reads as one phrase.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    #[error("The {kind} server is not reachable at {url} ({detail}). {hint}")]
    Unreachable {
        kind: String,
        url: String,
        detail: String,
        hint: String,
    },
    #[error("The model `{model}` is not available on the {kind} server. {hint}")]
    ModelNotFound {
        kind: String,
        model: String,
        hint: String,
    },
    #[error("The {kind} server refused the API key (HTTP {status}): {detail}. Check {hint}.")]
    Auth {
        kind: String,
        status: u16,
        detail: String,
        hint: String,
    },
    #[error("The model server is busy (HTTP {status}) and did not recover after {attempts} attempt(s): {detail}. Try again in a moment.")]
    Busy {
        status: u16,
        attempts: u32,
        detail: String,
    },
    #[error("The model server is rate-limiting IronClaw (HTTP {status}) and asks to wait {seconds} s: {detail}. Try again then, or check the plan and limits of the API key.")]
    RetryLater {
        status: u16,
        seconds: u64,
        detail: String,
    },
    #[error("The model server is overloaded and stopped the reply: {0}. Try again in a moment.")]
    Overloaded(String),
    #[error("The model reached its reply length limit in the middle of a tool call, so the call could not be read. Raise provider.max_tokens, or ask for a smaller step.")]
    Truncated,
    #[error("The model server answered HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("The conversation is longer than the model accepts ({detail}). Lower provider.context_tokens so IronClaw trims it sooner, or start a new session.")]
    ContextTooLong { detail: String },
    #[error("The model does not support tool calling.")]
    ToolsUnsupported,
    #[error("The model server stopped the reply before it was complete. The partial reply is kept; send your message again to retry.")]
    StreamCut,
    #[error("The model server went silent for {0} s in the middle of a reply. The partial reply is kept; send your message again to retry.")]
    Stalled(u64),
    #[error("The model server sent something IronClaw cannot read: {0}")]
    Decode(String),
    #[error("The model server reported an error: {0}")]
    Remote(String),
    #[error("The model called `{name}` with arguments {arguments}; only `shell {{command}}` and `python {{code}}` exist. Send a message to try again, or pick a model that calls tools reliably.")]
    BadToolCall { name: String, arguments: String },
}

impl ProviderError {
    /// Stable code for the `error` event.
    pub fn code(&self) -> ErrorCode {
        match self {
            ProviderError::Unreachable { .. } => ErrorCode::ProviderUnreachable,
            ProviderError::ModelNotFound { .. } => ErrorCode::ModelNotFound,
            ProviderError::Auth { .. } => ErrorCode::ProviderAuth,
            ProviderError::Busy { .. }
            | ProviderError::RetryLater { .. }
            | ProviderError::Overloaded(_) => ErrorCode::ProviderBusy,
            ProviderError::Truncated => ErrorCode::ProviderMaxTokens,
            ProviderError::Http { .. } => ErrorCode::ProviderHttp,
            ProviderError::ContextTooLong { .. } => ErrorCode::ProviderContextTooLong,
            ProviderError::ToolsUnsupported => ErrorCode::ToolsUnsupported,
            ProviderError::StreamCut => ErrorCode::ProviderStreamCut,
            ProviderError::Stalled(_) => ErrorCode::ProviderStalled,
            ProviderError::Decode(_) => ErrorCode::ProviderBadResponse,
            ProviderError::Remote(_) => ErrorCode::ProviderError,
            ProviderError::BadToolCall { .. } => ErrorCode::BadToolCall,
        }
    }
}

/// What the ProviderActor reports about one request.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub enum ProviderEvent {
    /// A fragment of reply text.
    Delta { request: u64, text: String },
    /// The reply is complete; the tool calls it asked for, if any.
    Finished {
        request: u64,
        tool_calls: Vec<ToolCall>,
        /// The model stopped at its output limit (`provider.max_tokens`,
        /// or the server's own), so the text may end mid-sentence and the
        /// person should be told.
        length_limited: bool,
    },
    /// The request failed. `output_started` says whether any text had been
    /// delivered (then no retry was attempted).
    Failed {
        request: u64,
        error: ProviderError,
        output_started: bool,
    },
}

/// Stream a completion over `messages`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Complete {
    /// Chosen by the caller; echoed in every event so late events of a
    /// cancelled request can be told apart.
    pub request: u64,
    pub model: String,
    pub messages: Vec<ChatMessage>,
    /// Offer the `shell` and `python` tools.
    pub tools: bool,
    pub reply_to: Recipient<ProviderEvent>,
}

/// Drop the running request, if it is `request`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CancelCompletion {
    pub request: u64,
}

pub struct ProviderActor {
    client: reqwest::Client,
    settings: ProviderSettings,
    running: Option<(u64, SpawnHandle)>,
}

impl ProviderActor {
    pub fn new(client: reqwest::Client, settings: ProviderSettings) -> Self {
        ProviderActor {
            client,
            settings,
            running: None,
        }
    }
}

impl Actor for ProviderActor {
    type Context = Context<Self>;
}

/// Restarted in place if it ever stops; it holds no state worth keeping.
impl Supervised for ProviderActor {}

impl Handler<Complete> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: Complete, ctx: &mut Context<Self>) {
        if let Some((_, handle)) = self.running.take() {
            ctx.cancel_future(handle);
        }
        let request = msg.request;
        let fut = stream_completion(self.client.clone(), self.settings.clone(), msg);
        let handle = ctx.spawn(fut.into_actor(self).map(move |_, act, _| {
            if act.running.as_ref().is_some_and(|(r, _)| *r == request) {
                act.running = None;
            }
        }));
        self.running = Some((request, handle));
    }
}

impl Handler<CancelCompletion> for ProviderActor {
    type Result = ();

    fn handle(&mut self, msg: CancelCompletion, ctx: &mut Context<Self>) {
        if self
            .running
            .as_ref()
            .is_some_and(|(r, _)| *r == msg.request)
        {
            if let Some((_, handle)) = self.running.take() {
                // Dropping the future drops the response body, which closes
                // the connection: the server stops generating.
                ctx.cancel_future(handle);
            }
        }
    }
}

/// Make an HTTP client for providers.
pub fn http_client(settings: &ProviderSettings) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(settings.connect_timeout_secs))
        .build()
        .unwrap_or_default()
}

/// The server's name as the error templates use it: "the {name} server".
fn kind_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Ollama => "Ollama",
        ProviderKind::Openai => "OpenAI-compatible",
        ProviderKind::Anthropic => "Anthropic",
    }
}

fn unreachable_hint(settings: &ProviderSettings) -> String {
    match settings.kind {
        ProviderKind::Ollama => "Start it with `ollama serve`, or set provider.base_url (or OLLAMA_HOST) to where it runs.".into(),
        ProviderKind::Openai | ProviderKind::Anthropic => {
            "Check that the server is running and provider.base_url is right.".into()
        }
    }
}

fn model_hint(settings: &ProviderSettings, model: &str) -> String {
    match settings.kind {
        ProviderKind::Ollama => format!("Run `ollama pull {model}`, or pick another model."),
        ProviderKind::Openai | ProviderKind::Anthropic => {
            "Pick a model the server offers (provider.model).".into()
        }
    }
}

/// Where the API key comes from, for the message of a refused key.
fn key_hint(settings: &ProviderSettings) -> String {
    let source = match settings.kind {
        ProviderKind::Anthropic => "the ANTHROPIC_API_KEY environment variable or provider.api_key",
        ProviderKind::Openai => "the OPENAI_API_KEY environment variable or provider.api_key",
        ProviderKind::Ollama => {
            "provider.api_key (Ollama itself needs no key; a proxy in front of it may)"
        }
    };
    if settings.resolved_api_key().is_some() {
        source.to_string()
    } else {
        format!("{source}: no key is set")
    }
}

fn unreachable(settings: &ProviderSettings, err: &reqwest::Error) -> ProviderError {
    let detail = if err.is_timeout() {
        "timed out".to_string()
    } else if err.is_connect() {
        "connection refused".to_string()
    } else {
        crate::config::redact_credentials(&err.to_string())
    };
    ProviderError::Unreachable {
        kind: kind_name(settings.kind).to_string(),
        url: settings.shown_base_url(),
        detail,
        hint: unreachable_hint(settings),
    }
}

/// The key and version headers the kind's API wants.
fn authorize(req: reqwest::RequestBuilder, settings: &ProviderSettings) -> reqwest::RequestBuilder {
    let key = settings.resolved_api_key();
    match settings.kind {
        ProviderKind::Anthropic => {
            let req = req.header("anthropic-version", anthropic::API_VERSION);
            match key {
                Some(k) => req.header("x-api-key", k),
                None => req,
            }
        }
        ProviderKind::Ollama | ProviderKind::Openai => match key {
            Some(k) => req.bearer_auth(k),
            None => req,
        },
    }
}

/// The conversation for a model without native tools: tool calls become
/// the fenced blocks they came from (or are rendered as such) and results
/// become user messages.
fn without_tools(messages: &[ChatMessage]) -> Vec<ChatMessage> {
    messages
        .iter()
        .map(|m| match m {
            ChatMessage::Assistant { text, tool_calls }
                if text.is_empty() && !tool_calls.is_empty() =>
            {
                let blocks: Vec<String> = tool_calls
                    .iter()
                    .map(|c| {
                        let lang = match c.tool {
                            Tool::Python => "python",
                            Tool::Shell => "bash",
                        };
                        format!("```{lang}\n{}\n```", c.code)
                    })
                    .collect();
                ChatMessage::Assistant {
                    text: blocks.join("\n"),
                    tool_calls: Vec::new(),
                }
            }
            ChatMessage::Assistant { text, .. } => ChatMessage::Assistant {
                text: text.clone(),
                tool_calls: Vec::new(),
            },
            ChatMessage::ToolResult { name, content, .. } => {
                ChatMessage::User(format!("Output of the {name} block you wrote:\n{content}"))
            }
            other => other.clone(),
        })
        .collect()
}

/// The request body and URL for one completion.
fn build_request(
    settings: &ProviderSettings,
    model: &str,
    messages: &[ChatMessage],
    tools: bool,
) -> (String, Value) {
    let base = settings.resolved_base_url();
    let plain;
    let conversation = if tools {
        messages
    } else {
        plain = without_tools(messages);
        &plain
    };
    match settings.kind {
        ProviderKind::Ollama => {
            let messages: Vec<Value> = conversation.iter().map(ollama_message).collect();
            let mut body = json!({"model": model, "messages": messages, "stream": true});
            if tools {
                body["tools"] = tool_schemas();
            }
            (format!("{base}/api/chat"), body)
        }
        ProviderKind::Openai => {
            let messages: Vec<Value> = conversation.iter().map(openai_message).collect();
            let mut body = json!({
                "model": model,
                "messages": messages,
                "stream": true,
                "stream_options": {"include_usage": true},
            });
            if tools {
                body["tools"] = tool_schemas();
            }
            (format!("{base}/v1/chat/completions"), body)
        }
        ProviderKind::Anthropic => (
            format!("{base}/v1/messages"),
            anthropic::request_body(model, settings.max_tokens, conversation, tools),
        ),
    }
}

/// One of the two tools, described once for every wire format.
pub(crate) struct ToolSpec {
    name: &'static str,
    description: &'static str,
    /// The one string argument: `command` or `code`.
    argument: &'static str,
    argument_description: &'static str,
}

/// The tools offered to a model that calls tools natively.
pub(crate) const TOOLS: [ToolSpec; 2] = [
    ToolSpec {
        name: "shell",
        description: "Run a bash command in the sandbox. The working directory is /workspace. Returns stdout, stderr and the exit code.",
        argument: "command",
        argument_description: "The bash command to run.",
    },
    ToolSpec {
        name: "python",
        description: "Run a Python 3 program in the sandbox. The working directory is /workspace. Returns stdout, stderr and the exit code.",
        argument: "code",
        argument_description: "The whole Python program.",
    },
];

impl ToolSpec {
    /// The JSON Schema of the arguments.
    fn parameters(&self) -> Value {
        json!({
            "type": "object",
            "properties": {self.argument: {"type": "string", "description": self.argument_description}},
            "required": [self.argument],
        })
    }

    /// OpenAI's (and Ollama's) `{type: function, function: {...}}`.
    fn function(&self) -> Value {
        json!({"type": "function", "function": {
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters(),
        }})
    }

    /// Anthropic's `{name, description, input_schema}`.
    pub(crate) fn anthropic(&self) -> Value {
        json!({
            "name": self.name,
            "description": self.description,
            "input_schema": self.parameters(),
        })
    }
}

/// The two tools, in the OpenAI/Ollama function schema.
fn tool_schemas() -> Value {
    TOOLS.iter().map(ToolSpec::function).collect()
}

fn ollama_message(m: &ChatMessage) -> Value {
    match m {
        ChatMessage::System(t) => json!({"role": "system", "content": t}),
        ChatMessage::User(t) => json!({"role": "user", "content": t}),
        ChatMessage::Assistant { text, tool_calls } => {
            let mut v = json!({"role": "assistant", "content": text});
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| json!({"function": {"name": c.name(), "arguments": c.arguments()}}))
                    .collect();
            }
            v
        }
        ChatMessage::ToolResult { name, content, .. } => {
            json!({"role": "tool", "content": content, "tool_name": name})
        }
    }
}

fn openai_message(m: &ChatMessage) -> Value {
    match m {
        ChatMessage::System(t) => json!({"role": "system", "content": t}),
        ChatMessage::User(t) => json!({"role": "user", "content": t}),
        ChatMessage::Assistant { text, tool_calls } => {
            let mut v = json!({"role": "assistant", "content": text});
            if !tool_calls.is_empty() {
                v["tool_calls"] = tool_calls
                    .iter()
                    .map(|c| {
                        json!({"id": c.id, "type": "function",
                               "function": {"name": c.name(), "arguments": c.arguments().to_string()}})
                    })
                    .collect();
            }
            v
        }
        ChatMessage::ToolResult {
            call_id, content, ..
        } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
    }
}

/// Seconds from a `retry-after` header, when it holds a number.
fn retry_after(resp: &reqwest::Response) -> Option<u64> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
}

/// Longest wait honoured from a `retry-after` header; a server asking for
/// more is treated as failed (saying when to try again) rather than
/// leaving the person looking at a silent page.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Largest doubling of the backoff, so a large `max_retries` cannot make
/// one wait absurd (500 ms << 6 = 32 s).
const MAX_BACKOFF_DOUBLINGS: u32 = 6;

/// What the server says when the model cannot take the `tools` field:
/// Ollama (`does not support tools`), vLLM started without
/// `--enable-auto-tool-choice`, llama.cpp's server without `--jinja`.
const TOOLS_REFUSED: [&str; 4] = [
    "does not support tools",
    "enable-auto-tool-choice",
    "tool choice requires",
    "tools param requires",
];

/// The attempts of one completion, shared by the HTTP-status retries and
/// the mid-stream `overloaded` retries so together they stay within
/// `provider.max_retries`.
struct Retries {
    /// Attempts made so far (the first one included).
    made: u32,
    max_retries: u32,
    base_ms: u64,
}

impl Retries {
    fn new(settings: &ProviderSettings) -> Self {
        Retries {
            made: 1,
            max_retries: settings.max_retries,
            base_ms: settings.retry_base_ms,
        }
    }

    /// The wait before one more attempt: what the server asked for, else
    /// exponential backoff. `None` when the retries are used up.
    fn next_wait(&mut self, asked: Option<u64>) -> Option<Duration> {
        if self.made > self.max_retries {
            return None;
        }
        let backoff = Duration::from_millis(
            self.base_ms
                .saturating_mul(1 << (self.made - 1).min(MAX_BACKOFF_DOUBLINGS)),
        );
        self.made += 1;
        Some(asked.map(Duration::from_secs).unwrap_or(backoff))
    }
}

/// Send the request, retrying transient failures (429, 5xx, 529) with
/// backoff; nothing has reached the person yet, so a retry is invisible.
/// A connection that fails before the response headers, once it was made,
/// is a [`ProviderError::StreamCut`] for the caller to retry; one that
/// cannot be made at all means the server is not there.
async fn open_stream(
    client: &reqwest::Client,
    settings: &ProviderSettings,
    url: &str,
    body: &Value,
    model: &str,
    retries: &mut Retries,
) -> Result<reqwest::Response, ProviderError> {
    loop {
        let req = authorize(client.post(url).json(body), settings);
        let resp = match req.send().await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() || e.is_timeout() => return Err(unreachable(settings, &e)),
            Err(e) => {
                log::warn!(
                    "provider closed the connection before answering: {}",
                    crate::config::redact_credentials(&e.to_string())
                );
                return Err(ProviderError::StreamCut);
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let asked = retry_after(&resp);
        let text = resp.text().await.unwrap_or_default();
        let detail = decode::error_body(&text);
        let code = status.as_u16();
        let lower = detail.to_lowercase();
        if body.get("tools").is_some() && TOOLS_REFUSED.iter().any(|t| lower.contains(t)) {
            return Err(ProviderError::ToolsUnsupported);
        }
        // Whatever the status: a gateway may wrap the upstream's 400 in a
        // 5xx, and retrying an overflow cannot help.
        if decode::is_context_overflow(&detail) {
            return Err(ProviderError::ContextTooLong { detail });
        }
        let transient = code == 429 || code == 529 || status.is_server_error();
        if transient {
            if let Some(seconds) = asked.filter(|s| Duration::from_secs(*s) > MAX_RETRY_AFTER) {
                return Err(ProviderError::RetryLater {
                    status: code,
                    seconds,
                    detail,
                });
            }
            let attempt = retries.made;
            if let Some(wait) = retries.next_wait(asked) {
                log::warn!(
                    "provider answered HTTP {code}; retrying in {wait:?} (attempt {attempt})"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
        }
        return Err(match code {
            401 | 403 => ProviderError::Auth {
                kind: kind_name(settings.kind).to_string(),
                status: code,
                detail,
                hint: key_hint(settings),
            },
            404 if lower.contains("model") => ProviderError::ModelNotFound {
                kind: kind_name(settings.kind).to_string(),
                model: model.to_string(),
                hint: model_hint(settings, model),
            },
            400 if decode::is_unknown_model(&detail) => ProviderError::ModelNotFound {
                kind: kind_name(settings.kind).to_string(),
                model: model.to_string(),
                hint: model_hint(settings, model),
            },
            _ if transient => ProviderError::Busy {
                status: code,
                attempts: retries.made,
                detail,
            },
            _ => ProviderError::Http {
                status: code,
                detail,
            },
        });
    }
}

/// Run one completion and report it to `msg.reply_to`.
async fn stream_completion(client: reqwest::Client, settings: ProviderSettings, msg: Complete) {
    let request = msg.request;
    let reply_to = msg.reply_to.clone();
    let mut started = false;
    let mut retries = Retries::new(&settings);
    let result = loop {
        match run_stream(&client, &settings, &msg, &mut started, &mut retries).await {
            // Overloaded, or the connection dropped, before any text: the
            // person has seen nothing, so this is as transient as a 529.
            Err(error @ (ProviderError::Overloaded(_) | ProviderError::StreamCut)) if !started => {
                let attempt = retries.made;
                match retries.next_wait(None) {
                    Some(wait) => {
                        log::warn!("provider failed before the first token ({error}); retrying in {wait:?} (attempt {attempt})");
                        tokio::time::sleep(wait).await;
                    }
                    None => break Err(error),
                }
            }
            other => break other,
        }
    };
    let decoded = result.and_then(|reply| {
        let calls = reply.tool_calls.into_iter().map(ToolCall::decode);
        Ok((calls.collect::<Result<Vec<_>, _>>()?, reply.length_limited))
    });
    let event = match decoded {
        Ok((tool_calls, length_limited)) => ProviderEvent::Finished {
            request,
            tool_calls,
            length_limited,
        },
        Err(error) => ProviderEvent::Failed {
            request,
            error,
            output_started: started,
        },
    };
    let _ = reply_to.send(event).await;
}

/// How a completed stream ended.
struct Reply {
    tool_calls: Vec<ToolCallRequest>,
    /// The model stopped at its output limit.
    length_limited: bool,
}

impl Reply {
    /// What is reported when the receiver went away mid-stream: nobody
    /// reads it.
    fn abandoned() -> Reply {
        Reply {
            tool_calls: Vec::new(),
            length_limited: false,
        }
    }
}

/// The SSE accumulator of the configured wire format.
enum SseStream {
    OpenAi(OpenAiStream),
    Anthropic(AnthropicStream),
}

impl SseStream {
    fn on_event(
        &mut self,
        event: &eventsource_stream::Event,
    ) -> Result<Vec<StreamItem>, ProviderError> {
        match self {
            SseStream::OpenAi(acc) => {
                // Not OpenAI's own, but some gateways (OpenRouter, LiteLLM)
                // send failures as a named `error` event.
                if event.event == "error" {
                    let message = serde_json::from_str::<Value>(&event.data)
                        .map(|v| decode::error_text(v.get("error").unwrap_or(&v)))
                        .unwrap_or_else(|_| event.data.clone());
                    return Err(decode::remote_error(message));
                }
                acc.on_data(&event.data)
            }
            SseStream::Anthropic(acc) => acc.on_event(&event.event, &event.data),
        }
    }

    fn finish(self) -> Result<Reply, ProviderError> {
        let length_limited = match &self {
            SseStream::OpenAi(acc) => acc.length_limited(),
            SseStream::Anthropic(acc) => acc.length_limited(),
        };
        let tool_calls = match self {
            SseStream::OpenAi(acc) => acc.finish()?,
            SseStream::Anthropic(acc) => acc.finish()?,
        };
        Ok(Reply {
            tool_calls,
            length_limited,
        })
    }
}

/// Most SSE events merged into one delta.
const EVENT_BATCH: usize = 1024;

async fn run_stream(
    client: &reqwest::Client,
    settings: &ProviderSettings,
    msg: &Complete,
    started: &mut bool,
    retries: &mut Retries,
) -> Result<Reply, ProviderError> {
    let (url, body) = build_request(settings, &msg.model, &msg.messages, msg.tools);
    let resp = open_stream(client, settings, &url, &body, &msg.model, retries).await?;
    let idle = Duration::from_secs(settings.stream_idle_secs);
    let deliver = |text: String| {
        let reply_to = msg.reply_to.clone();
        let request = msg.request;
        async move {
            reply_to
                .send(ProviderEvent::Delta { request, text })
                .await
                .is_ok()
        }
    };
    let mut sse = match settings.kind {
        ProviderKind::Ollama => {
            let mut bytes = resp.bytes_stream();
            let mut decoder = NdjsonDecoder::default();
            let mut acc = OllamaStream::default();
            loop {
                let next = tokio::time::timeout(idle, bytes.next())
                    .await
                    .map_err(|_| ProviderError::Stalled(idle.as_secs()))?;
                let lines = match next {
                    Some(Ok(chunk)) => decoder.push(&chunk)?,
                    Some(Err(_)) => return Err(ProviderError::StreamCut),
                    None => {
                        let tail = decoder.finish()?;
                        for line in tail.iter() {
                            for StreamItem::Text(t) in acc.on_line(line)? {
                                *started = true;
                                if !deliver(t).await {
                                    return Ok(Reply::abandoned());
                                }
                            }
                        }
                        let length_limited = acc.length_limited();
                        return Ok(Reply {
                            tool_calls: acc.finish()?,
                            length_limited,
                        });
                    }
                };
                // Everything one read brought is one delta: a burst from the
                // server becomes one event per socket, not thousands.
                let (text, failure) = gather(lines.iter().map(|line| acc.on_line(line)));
                if !text.is_empty() {
                    *started = true;
                    if !deliver(text).await {
                        return Ok(Reply::abandoned());
                    }
                }
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
        ProviderKind::Openai => SseStream::OpenAi(OpenAiStream::default()),
        ProviderKind::Anthropic => SseStream::Anthropic(AnthropicStream::default()),
    };
    use eventsource_stream::Eventsource;
    // Events already received are taken together and their text sent as one
    // delta: a burst from the server becomes one event per socket.
    let mut events = resp.bytes_stream().eventsource().ready_chunks(EVENT_BATCH);
    loop {
        let next = tokio::time::timeout(idle, events.next())
            .await
            .map_err(|_| ProviderError::Stalled(idle.as_secs()))?;
        let Some(batch) = next else {
            return sse.finish();
        };
        let (text, failure) = gather(batch.into_iter().map(|item| match item {
            Ok(event) => sse.on_event(&event),
            Err(eventsource_stream::EventStreamError::Utf8(e)) => Err(ProviderError::Decode(
                crate::config::redact_credentials(&e.to_string()),
            )),
            Err(eventsource_stream::EventStreamError::Parser(e)) => Err(ProviderError::Decode(
                crate::config::redact_credentials(&e.to_string()),
            )),
            Err(eventsource_stream::EventStreamError::Transport(_)) => {
                Err(ProviderError::StreamCut)
            }
        }));
        if !text.is_empty() {
            *started = true;
            if !deliver(text).await {
                return Ok(Reply::abandoned());
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
    }
}

/// The text of one read's decoded items, up to the first error (the text
/// before it is still shown, as it would be had it come in its own read),
/// and that error. Items after it are not decoded.
fn gather(
    items: impl Iterator<Item = Result<Vec<StreamItem>, ProviderError>>,
) -> (String, Option<ProviderError>) {
    let mut text = String::new();
    for item in items {
        match item {
            Ok(items) => {
                for StreamItem::Text(t) in items {
                    text.push_str(&t);
                }
            }
            Err(e) => return (text, Some(e)),
        }
    }
    (text, None)
}

// ------------------------------------------------------------------ health

/// Time allowed for the health check's model listing.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Models asked for per page of Anthropic's paginated `/v1/models` (its
/// maximum), so one request sees them all.
const ANTHROPIC_MODELS_PAGE: u32 = 1000;

/// The models the server offers.
pub async fn list_models(
    client: &reqwest::Client,
    settings: &ProviderSettings,
) -> Result<Vec<String>, ProviderError> {
    let base = settings.resolved_base_url();
    let (url, key) = match settings.kind {
        ProviderKind::Ollama => (format!("{base}/api/tags"), "models"),
        ProviderKind::Openai => (format!("{base}/v1/models"), "data"),
        ProviderKind::Anthropic => (
            format!("{base}/v1/models?limit={ANTHROPIC_MODELS_PAGE}"),
            "data",
        ),
    };
    let req = authorize(client.get(&url).timeout(HEALTH_TIMEOUT), settings);
    let resp = req.send().await.map_err(|e| unreachable(settings, &e))?;
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        let said = decode::error_body(&resp.text().await.unwrap_or_default());
        return Err(ProviderError::Auth {
            kind: kind_name(settings.kind).to_string(),
            status,
            detail: if said.is_empty() {
                "the model list was refused".into()
            } else {
                said
            },
            hint: key_hint(settings),
        });
    }
    if !resp.status().is_success() {
        return Err(ProviderError::Http {
            status,
            detail: format!(
                "listing models at {} failed",
                crate::config::redact_credentials(&url)
            ),
        });
    }
    let v: Value = resp
        .json()
        .await
        .map_err(|e| ProviderError::Decode(crate::config::redact_credentials(&e.to_string())))?;
    Ok(v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|m| {
            m.get("name")
                .or_else(|| m.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .collect())
}

/// The offered model `wanted` names: itself, or with Ollama's implicit
/// `:latest` tag (`llama3.2` matches `llama3.2:latest`).
pub fn resolve_model(wanted: &str, offered: &[String]) -> Option<String> {
    if let Some(m) = offered.iter().find(|m| *m == wanted) {
        return Some(m.clone());
    }
    if !wanted.contains(':') {
        let latest = format!("{wanted}:latest");
        if let Some(m) = offered.iter().find(|m| **m == latest) {
            return Some(m.clone());
        }
    }
    None
}

/// Whether Anthropic knows `model` by a name its list leaves out: aliases
/// such as `claude-sonnet-4-0` work for messages but the list shows only
/// dated ids, and `GET /v1/models/{id}` resolves both.
async fn anthropic_knows(
    client: &reqwest::Client,
    settings: &ProviderSettings,
    model: &str,
) -> bool {
    let url = format!("{}/v1/models/{model}", settings.resolved_base_url());
    let req = authorize(client.get(&url).timeout(HEALTH_TIMEOUT), settings);
    matches!(req.send().await, Ok(resp) if resp.status().is_success())
}

/// Reachability and model availability, for `/api/health`, the page's
/// status line and `ironclaw check`.
pub async fn health(client: &reqwest::Client, settings: &ProviderSettings) -> ProviderHealth {
    let mut h = ProviderHealth {
        kind: settings.kind.as_str().to_string(),
        url: settings.shown_base_url(),
        reachable: false,
        model: settings.model.clone(),
        model_available: false,
        hint: None,
    };
    match list_models(client, settings).await {
        Ok(models) => {
            h.reachable = true;
            let found = match resolve_model(&settings.model, &models) {
                Some(m) => Some(m),
                None if settings.kind == ProviderKind::Anthropic
                    && anthropic_knows(client, settings, &settings.model).await =>
                {
                    Some(settings.model.clone())
                }
                None => None,
            };
            match found {
                Some(m) => {
                    h.model = m;
                    h.model_available = true;
                }
                None => {
                    h.hint = Some(
                        ProviderError::ModelNotFound {
                            kind: kind_name(settings.kind).to_string(),
                            model: settings.model.clone(),
                            hint: model_hint(settings, &settings.model),
                        }
                        .to_string(),
                    )
                }
            }
        }
        Err(e) => {
            // Any answer, a refused key included, proves the server is there.
            h.reachable = !matches!(e, ProviderError::Unreachable { .. });
            h.hint = Some(e.to_string());
        }
    }
    h
}

/// Whether the model can call tools natively, as `ironclaw check` reports
/// it. Whatever it says, a model that refuses tools at chat time falls back
/// to fenced code blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolSupport {
    /// The server lists `tools` among the model's capabilities.
    Native,
    /// The server says the model cannot call tools.
    Unsupported,
    /// `provider.tools = false`.
    Disabled,
    /// The API has no way to ask (OpenAI-compatible servers, Anthropic).
    Assumed,
    /// The server could not say; why.
    Unknown(String),
}

impl std::fmt::Display for ToolSupport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolSupport::Native => write!(f, "native tool calls (the server lists `tools` for the model)"),
            ToolSupport::Unsupported => write!(f, "not supported by the model: IronClaw asks for fenced ```bash / ```python blocks instead (set provider.tools = false to skip the first try)"),
            ToolSupport::Disabled => write!(f, "off (provider.tools = false): fenced ```bash / ```python blocks"),
            ToolSupport::Assumed => write!(f, "assumed (this API cannot report it); a model that refuses tools falls back to fenced code blocks"),
            ToolSupport::Unknown(why) => write!(f, "unknown ({why}); IronClaw tries native tool calls and falls back to fenced code blocks"),
        }
    }
}

/// Ask the server whether `model` calls tools: Ollama's `POST /api/show`
/// lists `capabilities` (0.6 and later); other APIs cannot say.
pub async fn tool_support(
    client: &reqwest::Client,
    settings: &ProviderSettings,
    model: &str,
) -> ToolSupport {
    if !settings.tools {
        return ToolSupport::Disabled;
    }
    match settings.kind {
        ProviderKind::Openai | ProviderKind::Anthropic => ToolSupport::Assumed,
        ProviderKind::Ollama => {
            let url = format!("{}/api/show", settings.resolved_base_url());
            let req = client
                .post(&url)
                .timeout(HEALTH_TIMEOUT)
                .json(&json!({ "model": model }));
            let resp = match authorize(req, settings).send().await {
                Ok(resp) => resp,
                Err(e) => return ToolSupport::Unknown(unreachable(settings, &e).to_string()),
            };
            let status = resp.status().as_u16();
            if status == 404 {
                return ToolSupport::Unknown(format!("the model `{model}` is not on the server"));
            }
            if !resp.status().is_success() {
                let url = crate::config::redact_credentials(&url);
                return ToolSupport::Unknown(format!("{url} answered HTTP {status}"));
            }
            let Ok(info) = resp.json::<Value>().await else {
                let url = crate::config::redact_credentials(&url);
                return ToolSupport::Unknown(format!("{url} did not answer JSON"));
            };
            match info.get("capabilities").and_then(Value::as_array) {
                Some(caps) if caps.iter().any(|c| c.as_str() == Some("tools")) => {
                    ToolSupport::Native
                }
                Some(_) => ToolSupport::Unsupported,
                None => ToolSupport::Unknown(
                    "this Ollama does not report capabilities; 0.6 or later does".into(),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_resolution_matches_implicit_latest() {
        let offered = vec!["llama3.2:latest".to_string(), "qwen2.5:7b".to_string()];
        assert_eq!(
            resolve_model("llama3.2", &offered).as_deref(),
            Some("llama3.2:latest")
        );
        assert_eq!(
            resolve_model("qwen2.5:7b", &offered).as_deref(),
            Some("qwen2.5:7b")
        );
        assert_eq!(resolve_model("qwen2.5", &offered), None);
        assert_eq!(resolve_model("mistral", &offered), None);
    }

    async fn sse_payloads(chunks: Vec<Vec<u8>>) -> Vec<(String, String)> {
        use eventsource_stream::Eventsource;
        let stream = futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        );
        stream
            .eventsource()
            .map(|e| {
                let e = e.unwrap();
                (e.event, e.data)
            })
            .collect()
            .await
    }

    #[actix_rt::test]
    async fn sse_decoding_survives_splits_crlf_comments_and_utf8() {
        let recorded = "data: {\"choices\":[{\"delta\":{\"content\":\"Grüße 🌍\"}}]}\r\n\r\n: keep-alive comment\n\nevent: ping\ndata: {}\n\ndata: [DONE]\n\n";
        let whole = sse_payloads(vec![recorded.as_bytes().to_vec()]).await;
        assert_eq!(whole.len(), 3);
        assert_eq!(
            whole[0].1,
            "{\"choices\":[{\"delta\":{\"content\":\"Grüße 🌍\"}}]}"
        );
        assert_eq!(whole[1].0, "ping");
        assert_eq!(whole[2].1, "[DONE]");
        for piece in [1, 2, 3, 5, 7] {
            let chunks = recorded
                .as_bytes()
                .chunks(piece)
                .map(<[u8]>::to_vec)
                .collect();
            assert_eq!(
                sse_payloads(chunks).await,
                whole,
                "split every {piece} bytes"
            );
        }
    }

    #[test]
    fn requests_carry_tools_and_the_conversation_in_each_format() {
        let settings = crate::config::Settings::load(None).unwrap().provider;
        let msgs = [
            ChatMessage::System("s".into()),
            ChatMessage::User("u".into()),
            ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCall {
                    id: "c1".into(),
                    tool: Tool::Shell,
                    code: "ls".into(),
                }],
            },
            ChatMessage::ToolResult {
                call_id: "c1".into(),
                name: "shell".into(),
                content: "out".into(),
            },
        ];
        let o: Vec<Value> = msgs.iter().map(openai_message).collect();
        assert_eq!(
            o[2]["tool_calls"][0]["function"]["arguments"],
            "{\"command\":\"ls\"}"
        );
        assert_eq!(o[3]["tool_call_id"], "c1");
        let l: Vec<Value> = msgs.iter().map(ollama_message).collect();
        assert_eq!(
            l[2]["tool_calls"][0]["function"]["arguments"]["command"],
            "ls"
        );
        assert_eq!(l[3]["role"], "tool");
        assert_eq!(settings.kind, ProviderKind::Ollama);
    }

    #[test]
    fn retries_back_off_exponentially_honour_the_server_and_run_out() {
        let mut settings = crate::config::Settings::load(None).unwrap().provider;
        settings.max_retries = 3;
        settings.retry_base_ms = 100;
        let mut r = Retries::new(&settings);
        assert_eq!(r.next_wait(None), Some(Duration::from_millis(100)));
        assert_eq!(r.next_wait(Some(2)), Some(Duration::from_secs(2)));
        assert_eq!(r.next_wait(None), Some(Duration::from_millis(400)));
        assert_eq!(r.next_wait(None), None);
        assert_eq!(r.made, 4, "four attempts in all");
    }

    #[test]
    fn each_kind_sends_its_own_key_header() {
        let mut settings = crate::config::Settings::load(None).unwrap().provider;
        settings.api_key = "k-123".into();
        let client = reqwest::Client::new();
        let headers = |settings: &ProviderSettings| {
            authorize(client.get("http://127.0.0.1:1/"), settings)
                .build()
                .unwrap()
                .headers()
                .clone()
        };
        settings.kind = ProviderKind::Anthropic;
        let h = headers(&settings);
        assert_eq!(h["x-api-key"], "k-123");
        assert_eq!(h["anthropic-version"], anthropic::API_VERSION);
        assert!(h.get("authorization").is_none());
        settings.kind = ProviderKind::Openai;
        let h = headers(&settings);
        assert_eq!(h["authorization"], "Bearer k-123");
        assert!(h.get("x-api-key").is_none());
        // Anthropic wants its version header even before a key is set.
        settings.kind = ProviderKind::Anthropic;
        settings.api_key.clear();
        if settings.resolved_api_key().is_none() {
            assert_eq!(
                headers(&settings)["anthropic-version"],
                anthropic::API_VERSION
            );
        }
    }

    #[test]
    fn anthropic_requests_go_to_messages_with_max_tokens_and_no_openai_fields() {
        let mut settings = crate::config::Settings::load(None).unwrap().provider;
        settings.kind = ProviderKind::Anthropic;
        settings.base_url = "http://h/".into();
        settings.max_tokens = 777;
        let msgs = vec![
            ChatMessage::System("s".into()),
            ChatMessage::User("u".into()),
        ];
        let (url, body) = build_request(&settings, "claude-x", &msgs, true);
        assert_eq!(url, "http://h/v1/messages");
        assert_eq!(body["max_tokens"], 777);
        assert_eq!(body["system"], "s");
        assert_eq!(body["messages"][0]["role"], "user");
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["tools"][0]["input_schema"]["type"], "object");
        settings.kind = ProviderKind::Openai;
        let (url, body) = build_request(&settings, "gpt", &msgs, false);
        assert_eq!(url, "http://h/v1/chat/completions");
        assert!(body.get("tools").is_none());
        assert_eq!(body["messages"][0]["role"], "system");
    }

    #[test]
    fn errors_naming_the_server_read_as_one_phrase_for_every_kind() {
        let mut settings = crate::config::Settings::load(None).unwrap().provider;
        settings.api_key = "k".into();
        for (kind, name) in [
            (ProviderKind::Ollama, "Ollama"),
            (ProviderKind::Openai, "OpenAI-compatible"),
            (ProviderKind::Anthropic, "Anthropic"),
        ] {
            settings.kind = kind;
            let kind = kind_name(kind).to_string();
            let messages = [
                ProviderError::Unreachable {
                    kind: kind.clone(),
                    url: "http://h".into(),
                    detail: "connection refused".into(),
                    hint: "Start it.".into(),
                }
                .to_string(),
                ProviderError::ModelNotFound {
                    kind: kind.clone(),
                    model: "m".into(),
                    hint: "Pick another.".into(),
                }
                .to_string(),
                ProviderError::Auth {
                    kind: kind.clone(),
                    status: 401,
                    detail: "no".into(),
                    hint: key_hint(&settings),
                }
                .to_string(),
            ];
            assert_eq!(
                messages[0],
                format!("The {name} server is not reachable at http://h (connection refused). Start it.")
            );
            assert_eq!(
                messages[1],
                format!("The model `m` is not available on the {name} server. Pick another.")
            );
            assert!(
                messages[2].starts_with(&format!(
                    "The {name} server refused the API key (HTTP 401): no. Check "
                )),
                "{}",
                messages[2]
            );
            for m in &messages {
                assert!(
                    !m.contains("The The") && !m.contains("server server"),
                    "{m}"
                );
            }
        }
    }
}
