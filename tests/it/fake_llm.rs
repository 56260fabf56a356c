//! Fake LLM server for the integration tests: a real HTTP/1.1 server on
//! `127.0.0.1:<random port>` that speaks the three provider wire formats
//! IronClaw talks to, byte for byte, and plays replies the test scripted.
//!
//! It owns: the listener and its own thread and Tokio runtime (so it keeps
//! serving whatever runtime the test uses, and even while the test thread
//! blocks), the queue of scripted [`Reply`]s, the log of every request it got
//! ([`Recorded`]), and the knobs that make it misbehave (status faults, cut,
//! hung and errored streams, odd byte splits, provider quirks, offline).
//!
//! # Endpoints
//!
//! - Ollama: `POST /api/chat` (NDJSON stream, or one object with
//!   `"stream": false`), `GET /api/tags`, `GET /api/version`,
//!   `POST /api/show`, `GET /`.
//! - OpenAI-compatible: `POST /v1/chat/completions` (SSE with
//!   `"stream": true`, else one object), `GET /v1/models`,
//!   `GET /v1/models/{id}`.
//! - Anthropic: `POST /v1/messages` (SSE with `"stream": true`, else one
//!   object); `/v1/models` answers in Anthropic's shape when the request
//!   carries `anthropic-version` or `x-api-key`.
//!
//! Every response carries `Connection: close`; streams are
//! `Transfer-Encoding: chunked` unless [`Quirks::close_delimited`].
//!
//! # Usage
//!
//! ```ignore
//! let llm = FakeLlm::start().await;          // stops when `llm` is dropped
//! llm.push(Reply::text("Let me look.").then_tool("shell", json!({"command": "ls"})));
//! llm.push(Reply::status(429).retry_after(1)); // answered instead of the next stream
//! llm.push(Reply::text("Done.").split(Split::Bytes(3)));
//! // point the app at `llm.base_url` (`http://127.0.0.1:PORT`, no `/v1`)
//! let chats = llm.wait_for_chat_requests(2).await;
//! assert_eq!(chats[1].body["messages"][2]["role"], "tool");
//! ```
//!
//! Every chat request of any wire format takes the next queued reply; with
//! the queue empty it answers `echo: <text of the last user message>`.
//! Before a reply is taken the request is checked the way the real server
//! checks it (API key, `anthropic-version`, model name, request shape such
//! as tool results paired with tool calls, tool support); a request refused
//! there leaves the queue alone. [`FakeLlm::set_strict`] turns the shape
//! checks off.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};

/// Pause before each write of a body after the first: with Nagle off and
/// this gap the client's socket sees every write as its own read, which is
/// what [`Split`] is for. It is a blocking sleep on the server's own thread
/// (after a yield, so other connections still take turns): Tokio's timer
/// rounds up to whole milliseconds, which made a 1-byte split of an ordinary
/// stream take seconds.
const WRITE_GAP: Duration = Duration::from_micros(200);
/// Largest request head accepted; real clients send a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// Largest request body accepted; long conversations stay far below it.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long the `wait_for_*` helpers wait before failing the test.
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// How long `set_offline(false)` keeps trying to bind the old port again.
const REBIND_LIMIT: Duration = Duration::from_secs(5);
/// How long `set_offline` waits for the server thread to confirm.
const CONTROL_LIMIT: Duration = Duration::from_secs(5);
/// Model list of a fresh server: the app's default model, as Ollama names it.
const DEFAULT_MODEL: &str = "llama3.2:latest";
/// What `GET /api/version` reports.
const OLLAMA_VERSION: &str = "0.6.5";
/// Characters per text delta, cycled, so deltas split words at odd places.
const TEXT_PIECES: [usize; 5] = [3, 1, 4, 2, 5];
/// Characters per tool-argument fragment, cycled.
const ARG_PIECES: [usize; 3] = [7, 3, 5];

// ───────────────────────────── public API ─────────────────────────────

/// A running fake LLM server. Dropping it stops the server and closes every
/// open connection.
pub struct FakeLlm {
    /// `http://127.0.0.1:PORT`: no trailing slash and no `/v1`. The port
    /// stays the same across [`FakeLlm::set_offline`].
    pub base_url: String,
    /// Where the listener is bound, kept to bind the same port again.
    addr: SocketAddr,
    /// Queue, request log and knobs, shared with the server thread.
    state: Shared,
    /// Commands to the server thread; dropping it ends that thread.
    control: mpsc::UnboundedSender<Control>,
    /// Whether the listener is open, so `set_offline` is idempotent.
    online: Mutex<bool>,
}

/// The wire format of a chat request, from its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `POST /api/chat`
    Ollama,
    /// `POST /v1/chat/completions`
    OpenAi,
    /// `POST /v1/messages`
    Anthropic,
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path without the query string, e.g. `/api/chat`.
    pub path: String,
    /// Query string without `?`, empty when there was none.
    pub query: String,
    /// Header names lowercased; repeated headers joined with `, `.
    pub headers: BTreeMap<String, String>,
    /// The body parsed as JSON; `Null` when empty, a `String` when not JSON.
    pub body: Value,
    /// `Some` for the three chat endpoints.
    pub wire: Option<Wire>,
}

impl Recorded {
    /// A header's value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// One piece of a scripted answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Assistant text, streamed as deltas of 1 to 5 characters that cut
    /// through words (never through a character: byte-level cuts are
    /// [`Split`]'s job). Consecutive `Text` parts continue the same text
    /// (one Anthropic block), so a fault can fall in the middle of it.
    Text(String),
    /// A native tool call. Its arguments are streamed as JSON-text fragments
    /// on OpenAI and Anthropic and arrive whole on Ollama.
    ToolCall { name: String, arguments: Value },
}

/// How a reply goes wrong. Counts are in [`Part`]s, after the stream's
/// opening events (role chunk, `message_start`); they are clamped to the
/// number of parts.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Send N parts, then close the connection: no finish reason, no
    /// terminator (`[DONE]`, `message_stop`, `"done":true`), and with chunked
    /// framing no final zero-length chunk, so the HTTP body itself is cut.
    CutAfter(usize),
    /// Send N parts, then the wire's mid-stream error frame with this
    /// message, then end the body cleanly. On Anthropic the error type is
    /// `overloaded_error` when the message contains "verloaded", else
    /// `api_error`. On a non-streaming request: HTTP 500 (529 on Anthropic
    /// when overloaded) with that message.
    ErrorAfter(usize, String),
    /// Answer this HTTP status with the wire's error body instead of a
    /// stream. `body` replaces the JSON body verbatim (sent as
    /// `text/event-stream` when it is SSE, as LiteLLM labels the errors of
    /// streamed requests, and as plain text when it is not JSON);
    /// `retry_after` adds a `Retry-After: <seconds>` header.
    Status {
        code: u16,
        retry_after: Option<u64>,
        body: Option<String>,
    },
    /// Send N parts, then keep the connection open and silent until the
    /// client goes away (counted in [`FakeLlm::client_aborts`]).
    HangAfter(usize),
    /// Read the request and never answer, not even a status line, until the
    /// client goes away (counted in [`FakeLlm::client_aborts`]).
    NoResponse,
    /// Read the request, then close the connection without a status line:
    /// a gateway whose upstream connection died before it answered.
    Hangup,
    /// Send N parts, then LiteLLM's mid-stream failure on every wire: an
    /// OpenAI-style `data: {"error": {…}}` line with no `event:` name (an
    /// `{"error": …}` line on Ollama), Anthropic streams included, then end
    /// the body cleanly. On a non-streaming request: HTTP 500 with that
    /// message.
    GatewayErrorAfter(usize, String),
    /// Send N parts, then end the stream the normal way (`[DONE]`,
    /// `message_stop`, `"done":true`) with no finish reason: what a gateway
    /// sends when its upstream died mid-reply.
    EndAfter(usize),
}

/// How the response body is cut into socket writes. Every write is flushed
/// and followed by a short pause, so the client reads them separately.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Split {
    /// One write per event (SSE frame, NDJSON line): the common case.
    #[default]
    Whole,
    /// The whole body in one write: several events in one read.
    Coalesced,
    /// Every write exactly N bytes (the last one may be shorter), cutting
    /// across `data: ` prefixes, line ends, JSON and UTF-8 characters.
    Bytes(usize),
    /// Write sizes taken in turn from the list, cycling.
    Sizes(Vec<usize>),
}

/// Real-world deviations from the clean formats, each off by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    /// SSE lines end in `\r\n` instead of `\n`.
    pub crlf: bool,
    /// SSE comment lines (`: OPENROUTER PROCESSING`) before the stream and
    /// between parts.
    pub sse_comments: bool,
    /// Anthropic: an extra `ping` event after every delta.
    pub pings: bool,
    /// No token usage anywhere (OpenAI usage chunk even when requested,
    /// Anthropic `usage` objects, Ollama counters on the last line).
    pub no_usage: bool,
    /// OpenAI: send the usage chunk even when `stream_options.include_usage`
    /// was not requested.
    pub always_usage: bool,
    /// No finish reason: OpenAI skips the `finish_reason` chunk, Anthropic
    /// sends `stop_reason: null`, Ollama leaves out `done_reason`.
    pub no_finish_reason: bool,
    /// The reply stopped at the output limit: OpenAI `finish_reason:
    /// "length"`, Anthropic `stop_reason: "max_tokens"`, Ollama
    /// `done_reason: "length"` (streams).
    pub length_limit: bool,
    /// Tool-call ids count from 1 in every reply, as some servers do, so
    /// the same id comes back again and again.
    pub repeat_tool_ids: bool,
    /// OpenAI: tool-call deltas carry no `index`.
    pub omit_index: bool,
    /// OpenAI: every tool call uses `index` 0; a new call shows only by its
    /// new `id`.
    pub reuse_index: bool,
    /// SSE: `data:{json}` without the space after the colon.
    pub data_no_space: bool,
    /// Streams carry no `Transfer-Encoding: chunked`: the body ends when the
    /// connection closes, so a cut stream looks complete to HTTP.
    pub close_delimited: bool,
}

/// A scripted answer to one chat request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reply {
    pub parts: Vec<Part>,
    pub fault: Option<Fault>,
    pub split: Split,
    pub quirks: Quirks,
    /// Extra pause before every event after the first (each text delta,
    /// each argument fragment), for tests that watch a stream arrive.
    pub event_delay_ms: u64,
}

impl Reply {
    /// A reply of one text part.
    pub fn text(text: impl Into<String>) -> Reply {
        Reply::default().then_text(text)
    }

    /// A reply of one tool call.
    pub fn tool(name: impl Into<String>, arguments: Value) -> Reply {
        Reply::default().then_tool(name, arguments)
    }

    /// A reply of these parts.
    pub fn parts(parts: Vec<Part>) -> Reply {
        Reply {
            parts,
            ..Reply::default()
        }
    }

    /// An HTTP error answered instead of a stream, with the wire's usual
    /// error body for that status.
    pub fn status(code: u16) -> Reply {
        Reply::default().fault(Fault::Status {
            code,
            retry_after: None,
            body: None,
        })
    }

    pub fn then_text(mut self, text: impl Into<String>) -> Reply {
        self.parts.push(Part::Text(text.into()));
        self
    }

    pub fn then_tool(mut self, name: impl Into<String>, arguments: Value) -> Reply {
        self.parts.push(Part::ToolCall {
            name: name.into(),
            arguments,
        });
        self
    }

    pub fn fault(mut self, fault: Fault) -> Reply {
        self.fault = Some(fault);
        self
    }

    /// Adds `Retry-After: <seconds>` to a [`Fault::Status`] reply.
    pub fn retry_after(mut self, seconds: u64) -> Reply {
        if let Some(Fault::Status { retry_after, .. }) = &mut self.fault {
            *retry_after = Some(seconds);
        }
        self
    }

    /// Replaces the JSON body of a [`Fault::Status`] reply.
    pub fn status_body(mut self, raw: impl Into<String>) -> Reply {
        if let Some(Fault::Status { body, .. }) = &mut self.fault {
            *body = Some(raw.into());
        }
        self
    }

    pub fn split(mut self, split: Split) -> Reply {
        self.split = split;
        self
    }

    pub fn quirks(mut self, quirks: Quirks) -> Reply {
        self.quirks = quirks;
        self
    }

    pub fn event_delay_ms(mut self, ms: u64) -> Reply {
        self.event_delay_ms = ms;
        self
    }
}

impl FakeLlm {
    /// Starts a server on `127.0.0.1:0`. Async only for call-site symmetry:
    /// the server runs on its own thread; [`FakeLlm::spawn`] is the same.
    pub async fn start() -> FakeLlm {
        FakeLlm::spawn()
    }

    /// Starts a server on `127.0.0.1:0` from sync code.
    pub fn spawn() -> FakeLlm {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("fake LLM: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("fake LLM: local address");
        let state: Shared = Arc::new(Mutex::new(State::default()));
        let (control, commands) = mpsc::unbounded_channel();
        let server_state = state.clone();
        std::thread::Builder::new()
            .name(format!("fake-llm-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake LLM: runtime");
                runtime.block_on(control_loop(commands, listener, server_state));
            })
            .expect("fake LLM: thread");
        FakeLlm {
            base_url: format!("http://{addr}"),
            addr,
            state,
            control,
            online: Mutex::new(true),
        }
    }

    /// `base_url` + `path`, e.g. `llm.url("/v1")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply for the next chat request of any wire format.
    pub fn push(&self, reply: Reply) {
        lock(&self.state).queue.push_back(reply);
    }

    /// How many scripted replies are still waiting.
    pub fn queued(&self) -> usize {
        lock(&self.state).queue.len()
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// The chat requests so far (any wire format), in arrival order.
    pub fn chat_requests(&self) -> Vec<Recorded> {
        lock(&self.state)
            .requests
            .iter()
            .filter(|r| r.wire.is_some())
            .cloned()
            .collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// The models the server has (default `["llama3.2:latest"]`). A chat or
    /// show request for any other model is answered 404 in the wire's
    /// format. Names match as Ollama matches them: `llama3.2` is
    /// `llama3.2:latest`.
    pub fn set_models(&self, names: &[&str]) {
        lock(&self.state).models = names.iter().map(|n| (*n).to_string()).collect();
    }

    /// The API key OpenAI (`Authorization: Bearer`) and Anthropic
    /// (`x-api-key`) requests must carry; `None` (default) accepts any.
    /// Ollama endpoints never check it.
    pub fn set_api_key(&self, key: Option<&str>) {
        lock(&self.state).api_key = key.map(str::to_string);
    }

    /// When on, Ollama and OpenAI chat requests that offer tools get 400
    /// `registry.ollama.ai/library/<model> does not support tools`, and
    /// `/api/show` leaves `tools` out of the capabilities.
    pub fn no_tools(&self, yes: bool) {
        lock(&self.state).no_tools = yes;
    }

    /// Request-shape checks (on by default), e.g. every tool call answered
    /// by a tool result, OpenAI arguments as a string and Ollama's as an
    /// object, Anthropic `max_tokens`. Off, only key and model are checked.
    pub fn set_strict(&self, strict: bool) {
        lock(&self.state).strict = strict;
    }

    /// See `State::scripted_runs`.
    pub fn set_scripted_runs(&self, on: bool) {
        lock(&self.state).scripted_runs = on;
    }

    /// Offline closes the listener and every open connection, so connecting
    /// is refused as with a server that is down; back online binds the same
    /// port again. Returns once the change has taken effect.
    pub fn set_offline(&self, offline: bool) {
        let mut online = self.online.lock().unwrap_or_else(|e| e.into_inner());
        if *online != offline {
            return;
        }
        let (done, confirmed) = std::sync::mpsc::channel();
        let command = if offline {
            Control::Stop(done)
        } else {
            Control::Listen(bind_again(self.addr), done)
        };
        if self.control.send(command).is_ok() {
            confirmed
                .recv_timeout(CONTROL_LIMIT)
                .expect("fake LLM: server thread did not confirm");
        }
        *online = !offline;
    }

    /// How many responses the client walked away from: a write that failed,
    /// or a [`Fault::HangAfter`] / [`Fault::NoResponse`] connection that the
    /// client closed.
    pub fn client_aborts(&self) -> usize {
        lock(&self.state).client_aborts
    }

    /// Waits until at least `n` chat requests have arrived and returns them
    /// all; panics after 10 s.
    pub async fn wait_for_chat_requests(&self, n: usize) -> Vec<Recorded> {
        let deadline = Instant::now() + WAIT_LIMIT;
        loop {
            let seen = self.chat_requests();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                Instant::now() < deadline,
                "fake LLM: waited {WAIT_LIMIT:?} for {n} chat requests, got {}",
                seen.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the client has walked away from at least `n` responses;
    /// panics after 10 s.
    pub async fn wait_for_client_aborts(&self, n: usize) {
        let deadline = Instant::now() + WAIT_LIMIT;
        while self.client_aborts() < n {
            assert!(
                Instant::now() < deadline,
                "fake LLM: waited {WAIT_LIMIT:?} for {n} client aborts, got {}",
                self.client_aborts()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

// ───────────────────────────── server plumbing ─────────────────────────────

type Shared = Arc<Mutex<State>>;

struct State {
    /// Scripted replies, taken first-in first-out by chat requests.
    queue: VecDeque<Reply>,
    /// Every request, for the test to inspect.
    requests: Vec<Recorded>,
    /// Models that exist; others are 404.
    models: Vec<String>,
    /// Key that OpenAI and Anthropic requests must carry, when set.
    api_key: Option<String>,
    /// Whether tools in a request are refused as by a model without them.
    no_tools: bool,
    /// Whether request shapes are checked like the real servers check them.
    strict: bool,
    /// Responses the client walked away from.
    client_aborts: usize,
    /// Last tool-call id handed out, so ids are unique and predictable.
    tool_call_seq: u64,
    /// With the queue empty, `run: <command>` is answered with a shell
    /// call of that command and a tool result with `done` (for many
    /// concurrent sessions, where one queue cannot say whose reply is
    /// whose).
    scripted_runs: bool,
}

impl Default for State {
    fn default() -> State {
        State {
            queue: VecDeque::new(),
            requests: Vec::new(),
            models: vec![DEFAULT_MODEL.to_string()],
            api_key: None,
            no_tools: false,
            strict: true,
            client_aborts: 0,
            tool_call_seq: 0,
            scripted_runs: false,
        }
    }
}

/// A test thread that panicked while holding the lock must not take the
/// server down with it.
fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

enum Control {
    /// Close the listener and all connections, then confirm.
    Stop(std::sync::mpsc::Sender<()>),
    /// Serve on this (already bound) listener, then confirm.
    Listen(std::net::TcpListener, std::sync::mpsc::Sender<()>),
}

fn bind_again(addr: SocketAddr) -> std::net::TcpListener {
    let deadline = Instant::now() + REBIND_LIMIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(listener) => return listener,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("fake LLM: cannot bind {addr} again: {e}"),
        }
    }
}

async fn control_loop(
    mut commands: mpsc::UnboundedReceiver<Control>,
    listener: std::net::TcpListener,
    state: Shared,
) {
    let mut serving = Some(serve(listener, state.clone()));
    while let Some(command) = commands.recv().await {
        match command {
            Control::Stop(done) => {
                if let Some((stop, task)) = serving.take() {
                    let _ = stop.send(());
                    let _ = task.await;
                }
                let _ = done.send(());
            }
            Control::Listen(listener, done) => {
                if serving.is_none() {
                    serving = Some(serve(listener, state.clone()));
                }
                let _ = done.send(());
            }
        }
    }
}

/// Accepts connections until told to stop; stopping closes the listener
/// and waits until every connection is closed.
fn serve(listener: std::net::TcpListener, state: Shared) -> (oneshot::Sender<()>, JoinHandle<()>) {
    let (stop_tx, mut stop) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        listener
            .set_nonblocking(true)
            .expect("fake LLM: nonblocking listener");
        let listener = TcpListener::from_std(listener).expect("fake LLM: tokio listener");
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut stop => break,
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        connections.spawn(serve_connection(stream, state.clone()));
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        connections.shutdown().await;
    });
    (stop_tx, task)
}

/// One request, one response, then close (`Connection: close`).
async fn serve_connection(mut stream: TcpStream, state: Shared) {
    let _ = stream.set_nodelay(true);
    let request = match read_request(&mut stream).await {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(e) => {
            let _ = respond(&mut stream, 400, TEXT, &[], e.to_string().as_bytes()).await;
            return;
        }
    };
    if respond_to(&mut stream, request, &state).await.is_err() {
        lock(&state).client_aborts += 1;
    }
    let _ = stream.shutdown().await;
}

/// Holds a connection until the client closes it.
async fn wait_for_close(stream: &mut TcpStream) {
    let mut scratch = [0u8; 1024];
    while let Ok(n) = stream.read(&mut scratch).await {
        if n == 0 {
            break;
        }
    }
}

// ───────────────────────────── HTTP/1.1 ─────────────────────────────

struct Request {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Buffered reads over the socket, for the request head and body.
struct Incoming<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Incoming<'_> {
    /// Reads more bytes; `false` at end of stream.
    async fn more(&mut self) -> io::Result<bool> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    }

    /// The next CRLF-terminated line, without the CRLF.
    async fn line(&mut self, limit: usize) -> io::Result<Option<String>> {
        loop {
            if let Some(end) = find(&self.buf, b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                return String::from_utf8(line)
                    .map(Some)
                    .map_err(|_| invalid("request line is not UTF-8"));
            }
            if self.buf.len() > limit {
                return Err(invalid("request head too large"));
            }
            if !self.more().await? {
                return Ok(None);
            }
        }
    }

    async fn take(&mut self, n: usize) -> io::Result<Vec<u8>> {
        while self.buf.len() < n {
            if !self.more().await? {
                return Err(invalid("request body shorter than announced"));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_string())
}

/// Reads one request; `None` when the client closed before sending one.
async fn read_request(stream: &mut TcpStream) -> io::Result<Option<Request>> {
    let mut incoming = Incoming {
        stream,
        buf: Vec::new(),
    };
    let Some(request_line) = incoming.line(MAX_HEAD).await? else {
        return Ok(None);
    };
    let mut words = request_line.split(' ');
    let (Some(method), Some(target)) = (words.next(), words.next()) else {
        return Err(invalid("malformed request line"));
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    loop {
        let line = incoming
            .line(MAX_HEAD)
            .await?
            .ok_or_else(|| invalid("request head cut short"))?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed header"))?;
        let name = name.trim().to_ascii_lowercase();
        let value = value.trim().to_string();
        headers
            .entry(name)
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let size_line = incoming
                .line(MAX_HEAD)
                .await?
                .ok_or_else(|| invalid("chunked body cut short"))?;
            let size_hex = size_line.split(';').next().unwrap_or("").trim();
            let size =
                usize::from_str_radix(size_hex, 16).map_err(|_| invalid("bad chunk size"))?;
            if size == 0 {
                while incoming
                    .line(MAX_HEAD)
                    .await?
                    .is_some_and(|l| !l.is_empty())
                {}
                break;
            }
            if body.len() + size > MAX_BODY {
                return Err(invalid("request body too large"));
            }
            body.extend(incoming.take(size).await?);
            incoming.take(2).await?;
        }
        body
    } else {
        let length = match headers.get("content-length") {
            Some(v) => v.parse().map_err(|_| invalid("bad content-length"))?,
            None => 0,
        };
        if length > MAX_BODY {
            return Err(invalid("request body too large"));
        }
        incoming.take(length).await?
    };
    Ok(Some(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    }))
}

const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";
const OLLAMA_JSON: &str = "application/json; charset=utf-8";
const NDJSON: &str = "application/x-ndjson";
const SSE: &str = "text/event-stream; charset=utf-8";

fn reason(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

fn head(code: u16, content_type: &str, length: Option<usize>, extra: &[(&str, String)]) -> String {
    let mut head = format!(
        "HTTP/1.1 {code} {}\r\nContent-Type: {content_type}\r\n",
        reason(code)
    );
    if let Some(n) = length {
        head.push_str(&format!("Content-Length: {n}\r\n"));
    }
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    head
}

/// A whole response with `Content-Length`.
async fn respond(
    stream: &mut TcpStream,
    code: u16,
    content_type: &str,
    extra: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut out = head(code, content_type, Some(body.len()), extra).into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out).await?;
    stream.flush().await
}

/// Writes a body as the reply's [`Split`] asks, chunked or raw.
struct BodyWriter<'a> {
    stream: &'a mut TcpStream,
    /// `Transfer-Encoding: chunked` framing around every write.
    chunked: bool,
    split: Split,
    /// Extra pause between events.
    event_gap: Duration,
    /// Bytes not yet written (split modes write fixed sizes).
    pending: Vec<u8>,
    writes: usize,
    events: usize,
}

impl<'a> BodyWriter<'a> {
    fn new(stream: &'a mut TcpStream, chunked: bool, reply: &Reply) -> BodyWriter<'a> {
        BodyWriter {
            stream,
            chunked,
            split: reply.split.clone(),
            event_gap: Duration::from_millis(reply.event_delay_ms),
            pending: Vec::new(),
            writes: 0,
            events: 0,
        }
    }

    async fn event(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.events > 0 && !self.event_gap.is_zero() && self.split != Split::Coalesced {
            tokio::time::sleep(self.event_gap).await;
        }
        self.events += 1;
        match self.split {
            Split::Whole => self.write(bytes).await,
            Split::Coalesced => {
                self.pending.extend_from_slice(bytes);
                Ok(())
            }
            Split::Bytes(_) | Split::Sizes(_) => {
                self.pending.extend_from_slice(bytes);
                loop {
                    let size = self.next_size();
                    if self.pending.len() < size {
                        return Ok(());
                    }
                    let piece: Vec<u8> = self.pending.drain(..size).collect();
                    self.write(&piece).await?;
                }
            }
        }
    }

    fn next_size(&self) -> usize {
        let size = match &self.split {
            Split::Bytes(n) => *n,
            Split::Sizes(sizes) if !sizes.is_empty() => sizes[self.writes % sizes.len()],
            _ => 1,
        };
        size.max(1)
    }

    async fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        if self.writes > 0 {
            tokio::task::yield_now().await;
            std::thread::sleep(WRITE_GAP);
        }
        let mut out = Vec::with_capacity(bytes.len() + 12);
        if self.chunked {
            out.extend_from_slice(format!("{:x}\r\n", bytes.len()).as_bytes());
            out.extend_from_slice(bytes);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(bytes);
        }
        self.stream.write_all(&out).await?;
        self.stream.flush().await?;
        self.writes += 1;
        Ok(())
    }

    /// Writes whatever a split mode still holds back.
    async fn flush_pending(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.pending);
        self.write(&rest).await
    }

    /// Ends the body properly.
    async fn finish(&mut self) -> io::Result<()> {
        self.flush_pending().await?;
        if self.chunked {
            self.stream.write_all(b"0\r\n\r\n").await?;
            self.stream.flush().await?;
        }
        Ok(())
    }
}

// ───────────────────────────── routing ─────────────────────────────

fn chat_wire(method: &str, path: &str) -> Option<Wire> {
    match (method, path) {
        ("POST", "/api/chat") => Some(Wire::Ollama),
        ("POST", "/v1/chat/completions") => Some(Wire::OpenAi),
        ("POST", "/v1/messages") => Some(Wire::Anthropic),
        _ => None,
    }
}

async fn respond_to(stream: &mut TcpStream, request: Request, state: &Shared) -> io::Result<()> {
    let body = if request.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&request.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()))
    };
    let wire = chat_wire(&request.method, &request.path);
    lock(state).requests.push(Recorded {
        method: request.method.clone(),
        path: request.path.clone(),
        query: request.query.clone(),
        headers: request.headers.clone(),
        body: body.clone(),
        wire,
    });
    if let Some(wire) = wire {
        return chat(stream, wire, &request, body, state).await;
    }
    let models = lock(state).models.clone();
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/") => respond(stream, 200, TEXT, &[], b"Ollama is running").await,
        ("HEAD", "/") => {
            let out = head(200, TEXT, Some(17), &[]);
            stream.write_all(out.as_bytes()).await
        }
        ("GET", "/api/tags") => {
            let list = arr(models.iter().map(|name| ollama_tag(name)));
            let body = Obj::new().raw("models", list).end();
            respond(stream, 200, OLLAMA_JSON, &[], body.as_bytes()).await
        }
        ("GET", "/api/version") => {
            let body = Obj::new().f("version", OLLAMA_VERSION).end();
            respond(stream, 200, OLLAMA_JSON, &[], body.as_bytes()).await
        }
        ("POST", "/api/show") => {
            let asked = body
                .get("model")
                .or_else(|| body.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let no_tools = lock(state).no_tools;
            match resolve_model(&models, asked) {
                Some(name) => {
                    let body = ollama_show(&name, no_tools);
                    respond(stream, 200, OLLAMA_JSON, &[], body.as_bytes()).await
                }
                None => {
                    let body = Obj::new()
                        .f("error", format!("model '{asked}' not found"))
                        .end();
                    respond(stream, 404, OLLAMA_JSON, &[], body.as_bytes()).await
                }
            }
        }
        ("GET", path) if path == "/v1/models" || path.starts_with("/v1/models/") => {
            models_endpoint(stream, &request, &models, state).await
        }
        (
            _,
            "/api/chat"
            | "/v1/chat/completions"
            | "/v1/messages"
            | "/api/tags"
            | "/api/version"
            | "/api/show"
            | "/v1/models",
        ) => respond(stream, 405, TEXT, &[], b"405 method not allowed").await,
        _ => respond(stream, 404, TEXT, &[], b"404 page not found").await,
    }
}

async fn models_endpoint(
    stream: &mut TcpStream,
    request: &Request,
    models: &[String],
    state: &Shared,
) -> io::Result<()> {
    let anthropic =
        request.header("anthropic-version").is_some() || request.header("x-api-key").is_some();
    let wire = if anthropic {
        Wire::Anthropic
    } else {
        Wire::OpenAi
    };
    let key = lock(state).api_key.clone();
    if let Some(denied) = key.and_then(|key| key_error(wire, request, &key)) {
        return send_error(stream, wire, &denied, None).await;
    }
    let object = |name: &str| -> String {
        if anthropic {
            Obj::new()
                .f("type", "model")
                .f("id", name)
                .f("display_name", name)
                .f("created_at", "2025-02-19T00:00:00Z")
                .end()
        } else {
            Obj::new()
                .f("id", name)
                .f("object", "model")
                .f("created", 1_730_000_000u64)
                .f("owned_by", "library")
                .end()
        }
    };
    if let Some(id) = request.path.strip_prefix("/v1/models/") {
        return match models.iter().find(|m| m.as_str() == id) {
            Some(name) => respond(stream, 200, JSON, &[], object(name).as_bytes()).await,
            None => send_error(stream, wire, &model_missing(wire, id), None).await,
        };
    }
    let data = arr(models.iter().map(|m| object(m)));
    let body = if anthropic {
        Obj::new()
            .raw("data", data)
            .f("has_more", false)
            .f("first_id", models.first().map(String::as_str))
            .f("last_id", models.last().map(String::as_str))
            .end()
    } else {
        Obj::new().f("object", "list").raw("data", data).end()
    };
    respond(stream, 200, JSON, &[], body.as_bytes()).await
}

/// Ollama's name matching: a name without a tag means `:latest`.
fn resolve_model(models: &[String], asked: &str) -> Option<String> {
    fn full(name: &str) -> String {
        if name.contains(':') {
            name.to_string()
        } else {
            format!("{name}:latest")
        }
    }
    if asked.is_empty() {
        return None;
    }
    models.iter().find(|m| full(m) == full(asked)).cloned()
}

// ───────────────────────────── chat ─────────────────────────────

/// What the stream builders need to know about the request.
struct Ctx {
    /// The model as the request named it; echoed in every frame.
    model: String,
    /// OpenAI `stream_options.include_usage`.
    include_usage: bool,
    /// A stand-in token count of the prompt.
    prompt_tokens: u64,
    /// One id per tool-call part, in order (OpenAI `call_…`, Anthropic `toolu_…`).
    tool_ids: Vec<String>,
    /// Response id (`chatcmpl-…`, `msg_…`).
    id: String,
    /// Unix seconds, for OpenAI's `created`.
    created: u64,
}

async fn chat(
    stream: &mut TcpStream,
    wire: Wire,
    request: &Request,
    body: Value,
    state: &Shared,
) -> io::Result<()> {
    let (api_key, models, no_tools, strict) = {
        let st = lock(state);
        (
            st.api_key.clone(),
            st.models.clone(),
            st.no_tools,
            st.strict,
        )
    };
    if let Some(denied) = api_key.and_then(|key| key_error(wire, request, &key)) {
        return send_error(stream, wire, &denied, None).await;
    }
    if !body.is_object() {
        return send_error(stream, wire, &bad_json(wire), None).await;
    }
    if wire == Wire::Anthropic && request.header("anthropic-version").is_none() {
        let missing = ApiError::new(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        );
        return send_error(stream, wire, &missing, None).await;
    }
    if strict {
        let checked = match wire {
            Wire::Ollama => validate_ollama(&body),
            Wire::OpenAi => validate_openai(&body),
            Wire::Anthropic => validate_anthropic(&body),
        };
        if let Err(refused) = checked {
            return send_error(stream, wire, &refused, None).await;
        }
    }
    let asked = body.get("model").and_then(Value::as_str).unwrap_or("");
    let Some(resolved) = resolve_model(&models, asked) else {
        return send_error(stream, wire, &model_missing(wire, asked), None).await;
    };
    let offers_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    if no_tools && offers_tools && wire != Wire::Anthropic {
        let message = format!("registry.ollama.ai/library/{resolved} does not support tools");
        let refused = ApiError::new(400, "api_error", message);
        return send_error(stream, wire, &refused, None).await;
    }

    let (reply, tool_ids) = {
        let mut st = lock(state);
        let scripted = st.scripted_runs;
        let reply = st.queue.pop_front().unwrap_or_else(|| {
            let asked = last_user_text(&body);
            match asked.strip_prefix("run: ") {
                Some(_) if scripted && last_is_tool_result(&body) => Reply::text("done"),
                Some(command) if scripted => {
                    Reply::tool("shell", serde_json::json!({ "command": command }))
                }
                _ => Reply::text(format!("echo: {asked}")),
            }
        });
        let prefix = if wire == Wire::Anthropic {
            "toolu_"
        } else {
            "call_"
        };
        let mut ids = Vec::new();
        for part in &reply.parts {
            if matches!(part, Part::ToolCall { .. }) {
                st.tool_call_seq += 1;
                let n = if reply.quirks.repeat_tool_ids {
                    ids.len() + 1
                } else {
                    st.tool_call_seq as usize
                };
                ids.push(format!("{prefix}{n:024}"));
            }
        }
        (reply, ids)
    };

    match &reply.fault {
        Some(Fault::Status {
            code,
            retry_after,
            body: raw,
        }) => {
            let text = raw
                .clone()
                .unwrap_or_else(|| error_body(wire, &status_error(wire, *code)));
            let extra: Vec<(&str, String)> = retry_after
                .iter()
                .map(|s| ("Retry-After", s.to_string()))
                .collect();
            let content_type = match raw.as_deref().map(str::trim_start) {
                Some(raw) if raw.starts_with("data:") || raw.starts_with("event:") => SSE,
                Some(raw) if !raw.starts_with('{') => TEXT,
                _ if wire == Wire::Ollama => OLLAMA_JSON,
                _ => JSON,
            };
            return respond(stream, *code, content_type, &extra, text.as_bytes()).await;
        }
        Some(Fault::NoResponse) => {
            wait_for_close(stream).await;
            lock(state).client_aborts += 1;
            return Ok(());
        }
        Some(Fault::Hangup) => return Ok(()),
        _ => {}
    }

    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let ctx = Ctx {
        model: asked.to_string(),
        include_usage: body
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        prompt_tokens: body
            .get("messages")
            .map_or(0, |m| m.to_string().len() as u64)
            / 4
            + 1,
        tool_ids,
        id: match wire {
            Wire::Ollama => String::new(),
            Wire::OpenAi => format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            Wire::Anthropic => format!("msg_{}", uuid::Uuid::new_v4().simple()),
        },
        created,
    };
    let streaming = body
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(wire == Wire::Ollama);
    if streaming {
        // The upstream died before it could say why the reply ended.
        let mut scripted = reply.clone();
        if matches!(reply.fault, Some(Fault::EndAfter(_))) {
            scripted.quirks.no_finish_reason = true;
        }
        let script = match wire {
            Wire::Ollama => ollama_stream(&scripted, &ctx),
            Wire::OpenAi => openai_stream(&scripted, &ctx),
            Wire::Anthropic => anthropic_stream(&scripted, &ctx),
        };
        play_stream(stream, wire, script, &reply, state).await
    } else {
        let whole = match wire {
            Wire::Ollama => ollama_whole(&reply, &ctx),
            Wire::OpenAi => openai_whole(&reply, &ctx),
            Wire::Anthropic => anthropic_whole(&reply, &ctx),
        };
        play_whole(stream, wire, whole, &reply, state).await
    }
}

/// The text of the last user message that has any, for the echo reply.
/// Whether the conversation ends with a tool's result (any wire format).
fn last_is_tool_result(body: &Value) -> bool {
    let Some(last) = body
        .get("messages")
        .and_then(Value::as_array)
        .and_then(|m| m.last())
    else {
        return false;
    };
    last.get("role").and_then(Value::as_str) == Some("tool")
        || last
            .get("content")
            .and_then(Value::as_array)
            .is_some_and(|blocks| {
                blocks
                    .iter()
                    .any(|b| b.get("type").and_then(Value::as_str) == Some("tool_result"))
            })
}

fn last_user_text(body: &Value) -> String {
    let messages = body.get("messages").and_then(Value::as_array);
    for message in messages.into_iter().flatten().rev() {
        if message.get("role").and_then(Value::as_str) != Some("user") {
            continue;
        }
        let text = match message.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(blocks)) => blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect(),
            _ => String::new(),
        };
        if !text.is_empty() {
            return text;
        }
    }
    String::new()
}

/// A stream before it is written: the opening events, the events of each
/// part (where a fault's count cuts), and the closing events.
struct Script {
    head: Vec<Vec<u8>>,
    parts: Vec<Vec<Vec<u8>>>,
    tail: Vec<Vec<u8>>,
}

async fn play_stream(
    stream: &mut TcpStream,
    wire: Wire,
    script: Script,
    reply: &Reply,
    state: &Shared,
) -> io::Result<()> {
    let quirks = &reply.quirks;
    let chunked = !quirks.close_delimited;
    let mut extra = vec![("Cache-Control", "no-cache".to_string())];
    match wire {
        Wire::Ollama => {}
        Wire::OpenAi => extra.push((
            "x-request-id",
            format!("req_{}", uuid::Uuid::new_v4().simple()),
        )),
        Wire::Anthropic => extra.push((
            "request-id",
            format!("req_{}", uuid::Uuid::new_v4().simple()),
        )),
    }
    if chunked {
        extra.push(("Transfer-Encoding", "chunked".to_string()));
    }
    let content_type = if wire == Wire::Ollama { NDJSON } else { SSE };
    stream
        .write_all(head(200, content_type, None, &extra).as_bytes())
        .await?;
    stream.flush().await?;

    let shown = match &reply.fault {
        Some(
            Fault::CutAfter(n)
            | Fault::HangAfter(n)
            | Fault::ErrorAfter(n, _)
            | Fault::GatewayErrorAfter(n, _)
            | Fault::EndAfter(n),
        ) => (*n).min(script.parts.len()),
        _ => script.parts.len(),
    };
    let mut body = BodyWriter::new(stream, chunked, reply);
    for event in script
        .head
        .iter()
        .chain(script.parts[..shown].iter().flatten())
    {
        body.event(event).await?;
    }
    match &reply.fault {
        Some(Fault::CutAfter(_)) => body.flush_pending().await,
        Some(Fault::HangAfter(_)) => {
            body.flush_pending().await?;
            wait_for_close(stream).await;
            lock(state).client_aborts += 1;
            Ok(())
        }
        Some(Fault::ErrorAfter(_, message)) => {
            body.event(&error_frame(wire, message, quirks)).await?;
            body.finish().await
        }
        Some(Fault::GatewayErrorAfter(_, message)) => {
            body.event(&gateway_error_frame(wire, message, quirks))
                .await?;
            body.finish().await
        }
        _ => {
            for event in &script.tail {
                body.event(event).await?;
            }
            body.finish().await
        }
    }
}

async fn play_whole(
    stream: &mut TcpStream,
    wire: Wire,
    text: String,
    reply: &Reply,
    state: &Shared,
) -> io::Result<()> {
    let content_type = if wire == Wire::Ollama {
        OLLAMA_JSON
    } else {
        JSON
    };
    match &reply.fault {
        Some(Fault::ErrorAfter(_, message) | Fault::GatewayErrorAfter(_, message)) => {
            let overloaded = wire == Wire::Anthropic && message.contains("verloaded");
            let mut failed = status_error(wire, if overloaded { 529 } else { 500 });
            failed.message = message.clone();
            send_error(stream, wire, &failed, None).await
        }
        Some(Fault::CutAfter(_) | Fault::HangAfter(_)) => {
            let out = head(200, content_type, Some(text.len()), &[]);
            stream.write_all(out.as_bytes()).await?;
            stream.write_all(&text.as_bytes()[..text.len() / 2]).await?;
            stream.flush().await?;
            if matches!(reply.fault, Some(Fault::HangAfter(_))) {
                wait_for_close(stream).await;
                lock(state).client_aborts += 1;
            }
            Ok(())
        }
        _ => {
            let out = head(200, content_type, Some(text.len()), &[]);
            stream.write_all(out.as_bytes()).await?;
            stream.flush().await?;
            let mut body = BodyWriter::new(stream, false, reply);
            body.event(text.as_bytes()).await?;
            body.finish().await
        }
    }
}

/// `text` in pieces of `sizes[0]`, `sizes[1]`, … characters, cycling.
fn pieces(text: &str, sizes: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= chars.len() {
            break;
        }
        let end = (at + size).min(chars.len());
        out.push(chars[at..end].iter().collect());
        at = end;
    }
    out
}

/// All text parts joined, and the tool calls, of a reply.
fn collect(reply: &Reply) -> (String, Vec<(&str, &Value)>) {
    let mut text = String::new();
    let mut calls = Vec::new();
    for part in &reply.parts {
        match part {
            Part::Text(t) => text.push_str(t),
            Part::ToolCall { name, arguments } => calls.push((name.as_str(), arguments)),
        }
    }
    (text, calls)
}

// ───────────────────────────── errors ─────────────────────────────

/// An error answer, rendered in each wire's own shape by [`error_body`].
struct ApiError {
    status: u16,
    /// OpenAI `error.type` / Anthropic `error.type`; Ollama has none.
    kind: &'static str,
    message: String,
    /// OpenAI `error.code`.
    code: Option<&'static str>,
    /// OpenAI `error.param`.
    param: Option<String>,
}

impl ApiError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            code: None,
            param: None,
        }
    }

    fn code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    fn param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
    }
}

fn error_body(wire: Wire, e: &ApiError) -> String {
    match wire {
        Wire::Ollama => Obj::new().f("error", e.message.as_str()).end(),
        Wire::OpenAi => {
            let inner = Obj::new()
                .f("message", e.message.as_str())
                .f("type", e.kind)
                .f("param", e.param.as_deref())
                .f("code", e.code)
                .end();
            Obj::new().raw("error", inner).end()
        }
        Wire::Anthropic => {
            let inner = Obj::new()
                .f("type", e.kind)
                .f("message", e.message.as_str())
                .end();
            Obj::new().f("type", "error").raw("error", inner).end()
        }
    }
}

async fn send_error(
    stream: &mut TcpStream,
    wire: Wire,
    e: &ApiError,
    retry_after: Option<u64>,
) -> io::Result<()> {
    let extra: Vec<(&str, String)> = retry_after
        .iter()
        .map(|s| ("Retry-After", s.to_string()))
        .collect();
    let content_type = if wire == Wire::Ollama {
        OLLAMA_JSON
    } else {
        JSON
    };
    let body = error_body(wire, e);
    respond(stream, e.status, content_type, &extra, body.as_bytes()).await
}

/// The error a real server of this wire sends with this status.
fn status_error(wire: Wire, code: u16) -> ApiError {
    match wire {
        Wire::Ollama => {
            let message = match code {
                400 => "invalid request",
                404 => "model not found",
                429 => "too many requests",
                503 => "server busy, please try again.  maximum pending requests exceeded",
                500..=599 => "an error was encountered while running the model: unexpected EOF",
                _ => "request failed",
            };
            ApiError::new(code, "", message)
        }
        Wire::OpenAi => match code {
            400 => ApiError::new(code, "invalid_request_error", "Invalid request."),
            401 => ApiError::new(code, "invalid_request_error", "Incorrect API key provided.")
                .code("invalid_api_key"),
            403 => ApiError::new(
                code,
                "invalid_request_error",
                "You are not allowed to do this.",
            ),
            404 => ApiError::new(code, "invalid_request_error", "Not found."),
            429 => ApiError::new(
                code,
                "requests",
                "Rate limit reached for requests. Please try again later.",
            )
            .code("rate_limit_exceeded"),
            502..=504 => ApiError::new(
                code,
                "server_error",
                "The server is overloaded or not ready yet.",
            ),
            _ => ApiError::new(
                code,
                "server_error",
                "The server had an error while processing your request. Sorry about that!",
            ),
        },
        Wire::Anthropic => match code {
            400 => ApiError::new(code, "invalid_request_error", "Invalid request."),
            401 => ApiError::new(code, "authentication_error", "invalid x-api-key"),
            403 => ApiError::new(
                code,
                "permission_error",
                "Your API key does not have permission to use the specified resource.",
            ),
            404 => ApiError::new(code, "not_found_error", "Not found."),
            413 => ApiError::new(
                code,
                "request_too_large",
                "Request exceeds the maximum allowed number of bytes.",
            ),
            429 => ApiError::new(
                code,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit.",
            ),
            529 => ApiError::new(code, "overloaded_error", "Overloaded"),
            _ => ApiError::new(code, "api_error", "Internal server error"),
        },
    }
}

fn bad_json(wire: Wire) -> ApiError {
    match wire {
        Wire::Ollama => ApiError::new(400, "", "invalid character looking for beginning of value"),
        Wire::OpenAi => ApiError::new(
            400,
            "invalid_request_error",
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        ),
        Wire::Anthropic => ApiError::new(400, "invalid_request_error", "There was an issue with the JSON body of your request."),
    }
}

fn model_missing(wire: Wire, asked: &str) -> ApiError {
    match wire {
        Wire::Ollama => ApiError::new(
            404,
            "",
            format!("model \"{asked}\" not found, try pulling it first"),
        ),
        Wire::OpenAi => ApiError::new(
            404,
            "invalid_request_error",
            format!("The model `{asked}` does not exist or you do not have access to it."),
        )
        .code("model_not_found"),
        Wire::Anthropic => ApiError::new(404, "not_found_error", format!("model: {asked}")),
    }
}

/// Why the request's key is refused, if it is.
fn key_error(wire: Wire, request: &Request, key: &str) -> Option<ApiError> {
    match wire {
        Wire::Ollama => None,
        Wire::OpenAi => {
            let given = request
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match given {
                None => Some(ApiError::new(
                    401,
                    "invalid_request_error",
                    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                )),
                Some(given) if given != key => Some(
                    ApiError::new(
                        401,
                        "invalid_request_error",
                        format!("Incorrect API key provided: {}.", mask(given)),
                    )
                    .code("invalid_api_key"),
                ),
                Some(_) => None,
            }
        }
        Wire::Anthropic => match request.header("x-api-key") {
            None => Some(ApiError::new(
                401,
                "authentication_error",
                "x-api-key header is required",
            )),
            Some(given) if given != key => Some(ApiError::new(
                401,
                "authentication_error",
                "invalid x-api-key",
            )),
            Some(_) => None,
        },
    }
}

fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let start: String = chars[..3].iter().collect();
    let end: String = chars[chars.len() - 4..].iter().collect();
    format!("{start}{}{end}", "*".repeat(chars.len() - 7))
}

// ───────────────────────────── request checks ─────────────────────────────

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Ollama decodes into Go structs: wrong types fail, the rest is lax.
fn validate_ollama(body: &Value) -> Result<(), ApiError> {
    let refuse = |message: String| Err(ApiError::new(400, "", message));
    let go_type = |v: &Value| match v {
        Value::Array(_) => "array",
        Value::Object(_) => "object",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "bool",
        Value::Null => "null",
    };
    if !body.get("model").is_some_and(Value::is_string) {
        return refuse("model is required".into());
    }
    let Some(messages) = body.get("messages").filter(|m| !m.is_null()) else {
        return Ok(());
    };
    let Some(messages) = messages.as_array() else {
        return refuse(format!(
            "json: cannot unmarshal {} into Go struct field ChatRequest.messages of type []api.Message",
            go_type(messages)
        ));
    };
    for message in messages {
        if let Some(content) = message
            .get("content")
            .filter(|c| !c.is_null() && !c.is_string())
        {
            return refuse(format!(
                "json: cannot unmarshal {} into Go struct field Message.messages.content of type string",
                go_type(content)
            ));
        }
        let calls = message.get("tool_calls").and_then(Value::as_array);
        for call in calls.into_iter().flatten() {
            if let Some(arguments) = call
                .pointer("/function/arguments")
                .filter(|a| !a.is_null() && !a.is_object())
            {
                return refuse(format!(
                    "json: cannot unmarshal {} into Go struct field ToolCallFunction.messages.tool_calls.function.arguments of type api.ToolCallFunctionArguments",
                    go_type(arguments)
                ));
            }
        }
    }
    Ok(())
}

/// OpenAI's checks that a chat client most often trips over.
fn validate_openai(body: &Value) -> Result<(), ApiError> {
    let refuse = |message: String, param: String| {
        Err(ApiError::new(400, "invalid_request_error", message).param(param))
    };
    if !body.get("model").is_some_and(Value::is_string) {
        return refuse("you must provide a model parameter".into(), "model".into());
    }
    let Some(messages) = body.get("messages") else {
        return refuse(
            "Missing required parameter: 'messages'.".into(),
            "messages".into(),
        );
    };
    let Some(messages) = messages.as_array() else {
        return refuse(
            format!(
                "Invalid type for 'messages': expected an array, but got {} instead.",
                json_kind(messages)
            ),
            "messages".into(),
        );
    };
    if messages.is_empty() {
        return refuse(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.".into(),
            "messages".into(),
        );
    }
    let unanswered = |pending: &[String], at: usize| {
        refuse(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                pending.join(", ")
            ),
            format!("messages.[{at}].role"),
        )
    };
    // Ids of the last assistant message's tool calls, and those not yet answered.
    let mut answerable: Vec<String> = Vec::new();
    let mut pending: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let Some(role) = message.get("role").and_then(Value::as_str) else {
            return refuse(
                format!("Missing required parameter: 'messages[{i}].role'."),
                format!("messages[{i}].role"),
            );
        };
        if role != "tool" && !pending.is_empty() {
            return unanswered(&pending, i);
        }
        let content = message.get("content").filter(|c| !c.is_null());
        match role {
            "system" | "developer" | "user" => {
                answerable.clear();
                if content.is_none() {
                    return refuse(
                        format!("Missing required parameter: 'messages[{i}].content'."),
                        format!("messages[{i}].content"),
                    );
                }
            }
            "assistant" => {
                answerable.clear();
                let calls = message.get("tool_calls").filter(|c| !c.is_null());
                if let Some(calls) = calls {
                    let Some(calls) = calls.as_array() else {
                        return refuse(
                            format!(
                                "Invalid type for 'messages[{i}].tool_calls': expected an array, but got {} instead.",
                                json_kind(calls)
                            ),
                            format!("messages[{i}].tool_calls"),
                        );
                    };
                    for (j, call) in calls.iter().enumerate() {
                        let at = format!("messages[{i}].tool_calls[{j}]");
                        let Some(id) = call.get("id").and_then(Value::as_str) else {
                            return refuse(format!("Missing required parameter: '{at}.id'."), format!("{at}.id"));
                        };
                        match call.get("type").and_then(Value::as_str) {
                            Some("function") => {}
                            Some(other) => {
                                return refuse(
                                    format!("Invalid value: '{other}'. Supported values are: 'function'."),
                                    format!("{at}.type"),
                                )
                            }
                            None => {
                                return refuse(format!("Missing required parameter: '{at}.type'."), format!("{at}.type"))
                            }
                        }
                        if !call.pointer("/function/name").is_some_and(Value::is_string) {
                            return refuse(
                                format!("Missing required parameter: '{at}.function.name'."),
                                format!("{at}.function.name"),
                            );
                        }
                        match call.pointer("/function/arguments") {
                            Some(Value::String(_)) => {}
                            Some(other) => {
                                return refuse(
                                    format!(
                                        "Invalid type for '{at}.function.arguments': expected a string, but got {} instead.",
                                        json_kind(other)
                                    ),
                                    format!("{at}.function.arguments"),
                                )
                            }
                            None => {
                                return refuse(
                                    format!("Missing required parameter: '{at}.function.arguments'."),
                                    format!("{at}.function.arguments"),
                                )
                            }
                        }
                        answerable.push(id.to_string());
                        pending.push(id.to_string());
                    }
                }
                if content.is_none() && answerable.is_empty() {
                    return refuse(
                        "Invalid value for 'content': expected a string, got null.".into(),
                        format!("messages.[{i}].content"),
                    );
                }
            }
            "tool" => {
                let Some(id) = message.get("tool_call_id").and_then(Value::as_str) else {
                    return refuse(
                        format!("Missing required parameter: 'messages[{i}].tool_call_id'."),
                        format!("messages[{i}].tool_call_id"),
                    );
                };
                if !answerable.iter().any(|a| a == id) {
                    return refuse(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.".into(),
                        format!("messages.[{i}].role"),
                    );
                }
                pending.retain(|p| p != id);
                if content.is_none() {
                    return refuse(
                        format!("Missing required parameter: 'messages[{i}].content'."),
                        format!("messages[{i}].content"),
                    );
                }
            }
            "function" => answerable.clear(),
            other => {
                return refuse(
                    format!("Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."),
                    format!("messages[{i}].role"),
                )
            }
        }
    }
    if !pending.is_empty() {
        return unanswered(&pending, messages.len());
    }
    if let Some(tools) = body.get("tools").filter(|t| !t.is_null()) {
        let Some(tools) = tools.as_array() else {
            return refuse(
                format!(
                    "Invalid type for 'tools': expected an array, but got {} instead.",
                    json_kind(tools)
                ),
                "tools".into(),
            );
        };
        for (j, tool) in tools.iter().enumerate() {
            if tool.get("type").and_then(Value::as_str) != Some("function") {
                return refuse(
                    format!("Missing required parameter: 'tools[{j}].type'."),
                    format!("tools[{j}].type"),
                );
            }
            if !tool.pointer("/function/name").is_some_and(Value::is_string) {
                return refuse(
                    format!("Missing required parameter: 'tools[{j}].function.name'."),
                    format!("tools[{j}].function.name"),
                );
            }
        }
    }
    Ok(())
}

/// Anthropic's checks that a chat client most often trips over.
fn validate_anthropic(body: &Value) -> Result<(), ApiError> {
    let refuse = |message: String| Err(ApiError::new(400, "invalid_request_error", message));
    if !body.get("model").is_some_and(Value::is_string) {
        return refuse("model: Field required".into());
    }
    match body.get("max_tokens") {
        None | Some(Value::Null) => return refuse("max_tokens: Field required".into()),
        Some(v) if !v.is_u64() => {
            return refuse("max_tokens: Input should be a valid integer".into())
        }
        Some(_) => {}
    }
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return refuse("messages: Field required".into());
    };
    if messages.is_empty() {
        return refuse("messages: at least one message is required".into());
    }
    let last = messages.len() - 1;
    // Tool-use ids of the previous message, which this one must answer.
    let mut previous_uses: Vec<String> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "user" | "assistant" => {}
            "system" => {
                return refuse(
                    "messages: Unexpected role \"system\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role.".into(),
                )
            }
            _ => return refuse(format!("messages.{i}.role: Input should be 'user' or 'assistant'")),
        }
        let may_be_empty = i == last && role == "assistant";
        let mut uses = Vec::new();
        let mut results = Vec::new();
        match message.get("content") {
            Some(Value::String(text)) => {
                if text.is_empty() && !may_be_empty {
                    return refuse(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
            }
            Some(Value::Array(blocks)) => {
                if blocks.is_empty() && !may_be_empty {
                    return refuse(format!(
                        "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
                    ));
                }
                for (k, block) in blocks.iter().enumerate() {
                    match block.get("type").and_then(Value::as_str) {
                        Some("text") => match block.get("text").and_then(Value::as_str) {
                            None => {
                                return refuse(format!(
                                    "messages.{i}.content.{k}.text.text: Field required"
                                ))
                            }
                            Some("") => {
                                return refuse(
                                    "messages: text content blocks must be non-empty".into(),
                                )
                            }
                            Some(t) if t.trim().is_empty() => return refuse(
                                "messages: text content blocks must contain non-whitespace text"
                                    .into(),
                            ),
                            Some(_) => {}
                        },
                        Some("tool_use") => {
                            let Some(id) = block.get("id").and_then(Value::as_str) else {
                                return refuse(format!(
                                    "messages.{i}.content.{k}.tool_use.id: Field required"
                                ));
                            };
                            if !block.get("name").is_some_and(Value::is_string) {
                                return refuse(format!(
                                    "messages.{i}.content.{k}.tool_use.name: Field required"
                                ));
                            }
                            if !block.get("input").is_some_and(Value::is_object) {
                                return refuse(format!(
                                    "messages.{i}.content.{k}.tool_use.input: Input should be a valid dictionary"
                                ));
                            }
                            if role != "assistant" {
                                return refuse(format!(
                                    "messages.{i}.content.{k}: `tool_use` blocks can only be in `assistant` messages"
                                ));
                            }
                            uses.push(id.to_string());
                        }
                        Some("tool_result") => {
                            let Some(id) = block.get("tool_use_id").and_then(Value::as_str) else {
                                return refuse(format!(
                                    "messages.{i}.content.{k}.tool_result.tool_use_id: Field required"
                                ));
                            };
                            if !previous_uses.iter().any(|u| u == id) {
                                return refuse(format!(
                                    "messages.{i}.content.{k}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                                ));
                            }
                            results.push(id.to_string());
                        }
                        Some(_) => {}
                        None => {
                            return refuse(format!("messages.{i}.content.{k}.type: Field required"))
                        }
                    }
                }
            }
            Some(other) => {
                return refuse(format!(
                    "messages.{i}.content: Input should be a valid list or string, got {}",
                    json_kind(other)
                ))
            }
            None => return refuse(format!("messages.{i}.content: Field required")),
        }
        let unanswered: Vec<&String> = previous_uses
            .iter()
            .filter(|u| !results.contains(u))
            .collect();
        if !unanswered.is_empty() {
            return refuse(format!(
                "messages.{}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
                i - 1,
                unanswered.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        previous_uses = uses;
    }
    if !previous_uses.is_empty() {
        return refuse(format!(
            "messages.{last}: `tool_use` ids were found without `tool_result` blocks immediately after: {}. Each `tool_use` block must have a corresponding `tool_result` block in the next message.",
            previous_uses.join(", ")
        ));
    }
    if let Some(tools) = body.get("tools").and_then(Value::as_array) {
        for (j, tool) in tools.iter().enumerate() {
            let custom = tool
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "custom");
            if !custom {
                continue;
            }
            if !tool.get("name").is_some_and(Value::is_string) {
                return refuse(format!("tools.{j}.custom.name: Field required"));
            }
            if !tool.get("input_schema").is_some_and(Value::is_object) {
                return refuse(format!("tools.{j}.custom.input_schema: Field required"));
            }
        }
    }
    Ok(())
}

// ───────────────────────────── wire encoding ─────────────────────────────

/// A JSON object written in the field order the real servers use
/// (`serde_json`'s map would sort the keys).
struct Obj(String);

impl Obj {
    fn new() -> Obj {
        Obj(String::from("{"))
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&Value::from(key).to_string());
        self.0.push(':');
    }

    /// A field with a plain value.
    fn f(mut self, key: &str, value: impl Into<Value>) -> Obj {
        self.key(key);
        self.0.push_str(&value.into().to_string());
        self
    }

    /// A field whose value is already JSON text (a nested `Obj` or `arr`).
    fn raw(mut self, key: &str, json: impl AsRef<str>) -> Obj {
        self.key(key);
        self.0.push_str(json.as_ref());
        self
    }

    fn end(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// A JSON array of items that are already JSON text.
fn arr(items: impl IntoIterator<Item = String>) -> String {
    format!("[{}]", items.into_iter().collect::<Vec<_>>().join(","))
}

fn newline(quirks: &Quirks) -> &'static str {
    if quirks.crlf {
        "\r\n"
    } else {
        "\n"
    }
}

/// `data: <json>` frame.
fn sse_data(json: &str, quirks: &Quirks) -> Vec<u8> {
    let nl = newline(quirks);
    let space = if quirks.data_no_space { "" } else { " " };
    format!("data:{space}{json}{nl}{nl}").into_bytes()
}

/// `event: <name>` + `data: <json>` frame.
fn sse_event(name: &str, json: &str, quirks: &Quirks) -> Vec<u8> {
    let nl = newline(quirks);
    let space = if quirks.data_no_space { "" } else { " " };
    format!("event: {name}{nl}data:{space}{json}{nl}{nl}").into_bytes()
}

fn sse_comment(quirks: &Quirks) -> Vec<u8> {
    let nl = newline(quirks);
    format!(": OPENROUTER PROCESSING{nl}{nl}").into_bytes()
}

fn ndjson(json: String) -> Vec<u8> {
    let mut line = json.into_bytes();
    line.push(b'\n');
    line
}

fn error_frame(wire: Wire, message: &str, quirks: &Quirks) -> Vec<u8> {
    match wire {
        Wire::Ollama => ndjson(Obj::new().f("error", message).end()),
        Wire::OpenAi => {
            let e = ApiError::new(500, "server_error", message);
            sse_data(&error_body(wire, &e), quirks)
        }
        Wire::Anthropic => {
            let kind = if message.contains("verloaded") {
                "overloaded_error"
            } else {
                "api_error"
            };
            let e = ApiError::new(500, kind, message);
            sse_event("error", &error_body(wire, &e), quirks)
        }
    }
}

/// LiteLLM's mid-stream error line: OpenAI's error object, with the
/// Python `None`s it stringifies, as a bare `data:` line whatever the wire.
fn gateway_error_frame(wire: Wire, message: &str, quirks: &Quirks) -> Vec<u8> {
    match wire {
        Wire::Ollama => ndjson(Obj::new().f("error", message).end()),
        Wire::OpenAi | Wire::Anthropic => {
            let inner = Obj::new()
                .f("message", message)
                .f("type", "None")
                .f("param", "None")
                .f("code", "500")
                .end();
            sse_data(&Obj::new().raw("error", inner).end(), quirks)
        }
    }
}

// ── Ollama ──

/// Ollama's `created_at`: RFC 3339 in UTC with nanoseconds.
fn rfc3339_now() -> String {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's algorithm.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn ollama_message(content: &str, calls: &[(&str, &Value)]) -> String {
    let mut message = Obj::new().f("role", "assistant").f("content", content);
    if !calls.is_empty() {
        let calls = arr(calls.iter().map(|(name, arguments)| {
            let function = Obj::new()
                .f("name", *name)
                .f("arguments", (*arguments).clone())
                .end();
            Obj::new().raw("function", function).end()
        }));
        message = message.raw("tool_calls", calls);
    }
    message.end()
}

fn ollama_chunk(ctx: &Ctx, message: String) -> Vec<u8> {
    ndjson(
        Obj::new()
            .f("model", ctx.model.as_str())
            .f("created_at", rfc3339_now())
            .raw("message", message)
            .f("done", false)
            .end(),
    )
}

fn ollama_done(ctx: &Ctx, quirks: &Quirks, message: String, eval_count: u64) -> String {
    let mut done = Obj::new()
        .f("model", ctx.model.as_str())
        .f("created_at", rfc3339_now())
        .raw("message", message);
    if !quirks.no_finish_reason {
        done = done.f(
            "done_reason",
            if quirks.length_limit {
                "length"
            } else {
                "stop"
            },
        );
    }
    done = done.f("done", true);
    if !quirks.no_usage {
        done = done
            .f("total_duration", 1_234_567_890u64)
            .f("load_duration", 12_345_678u64)
            .f("prompt_eval_count", ctx.prompt_tokens)
            .f("prompt_eval_duration", 23_456_789u64)
            .f("eval_count", eval_count)
            .f("eval_duration", 987_654_321u64);
    }
    done.end()
}

fn ollama_stream(reply: &Reply, ctx: &Ctx) -> Script {
    let mut parts = Vec::new();
    let mut count = 0u64;
    for part in &reply.parts {
        let mut events = Vec::new();
        match part {
            Part::Text(text) => {
                for piece in pieces(text, &TEXT_PIECES) {
                    count += 1;
                    events.push(ollama_chunk(ctx, ollama_message(&piece, &[])));
                }
            }
            Part::ToolCall { name, arguments } => {
                count += 1;
                events.push(ollama_chunk(ctx, ollama_message("", &[(name, arguments)])));
            }
        }
        parts.push(events);
    }
    let done = ollama_done(ctx, &reply.quirks, ollama_message("", &[]), count.max(1));
    Script {
        head: Vec::new(),
        parts,
        tail: vec![ndjson(done)],
    }
}

fn ollama_whole(reply: &Reply, ctx: &Ctx) -> String {
    let (text, calls) = collect(reply);
    let count = pieces(&text, &TEXT_PIECES).len() + calls.len();
    ollama_done(
        ctx,
        &reply.quirks,
        ollama_message(&text, &calls),
        count.max(1) as u64,
    )
}

fn ollama_tag(name: &str) -> String {
    // A stable fake digest: FNV-1a of the name, four times over.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Obj::new()
        .f("name", name)
        .f("model", name)
        .f("modified_at", "2025-01-15T10:20:30.123456789Z")
        .f("size", 2_019_393_189u64)
        .f("digest", format!("{hash:016x}").repeat(4))
        .raw("details", ollama_details())
        .end()
}

fn ollama_details() -> String {
    Obj::new()
        .f("parent_model", "")
        .f("format", "gguf")
        .f("family", "llama")
        .raw("families", r#"["llama"]"#)
        .f("parameter_size", "3.2B")
        .f("quantization_level", "Q4_K_M")
        .end()
}

fn ollama_show(name: &str, no_tools: bool) -> String {
    let capabilities = if no_tools {
        r#"["completion"]"#
    } else {
        r#"["completion","tools"]"#
    };
    let info = Obj::new()
        .f("general.architecture", "llama")
        .f("general.parameter_count", 3_212_749_888u64)
        .f("llama.context_length", 131_072u64)
        .end();
    Obj::new()
        .f(
            "modelfile",
            format!("# Modelfile generated by \"ollama show\"\nFROM {name}\n"),
        )
        .f("parameters", "stop \"<|eot_id|>\"")
        .f("template", "{{ .Prompt }}")
        .raw("details", ollama_details())
        .raw("model_info", info)
        .raw("capabilities", capabilities)
        .f("modified_at", "2025-01-15T10:20:30.123456789Z")
        .end()
}

// ── OpenAI ──

fn openai_usage(ctx: &Ctx, completion: u64) -> String {
    Obj::new()
        .f("prompt_tokens", ctx.prompt_tokens)
        .f("completion_tokens", completion)
        .f("total_tokens", ctx.prompt_tokens + completion)
        .raw("prompt_tokens_details", r#"{"cached_tokens":0,"audio_tokens":0}"#)
        .raw(
            "completion_tokens_details",
            r#"{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}"#,
        )
        .end()
}

fn openai_chunk(ctx: &Ctx, quirks: &Quirks, choices: String, usage: Option<String>) -> Vec<u8> {
    let mut chunk = Obj::new()
        .f("id", ctx.id.as_str())
        .f("object", "chat.completion.chunk")
        .f("created", ctx.created)
        .f("model", ctx.model.as_str())
        .f("system_fingerprint", "fp_fake")
        .raw("choices", choices);
    if let Some(usage) = usage {
        chunk = chunk.raw("usage", usage);
    }
    sse_data(&chunk.end(), quirks)
}

fn openai_stream(reply: &Reply, ctx: &Ctx) -> Script {
    let quirks = &reply.quirks;
    // OpenAI puts `"usage":null` on every chunk once usage was asked for.
    let null_usage = || (ctx.include_usage && !quirks.no_usage).then(|| "null".to_string());
    let delta_chunk = |delta: String, finish: Option<&str>| {
        let choice = Obj::new()
            .f("index", 0)
            .raw("delta", delta)
            .f("logprobs", Value::Null)
            .f("finish_reason", finish)
            .end();
        openai_chunk(ctx, quirks, arr([choice]), null_usage())
    };
    let first_is_tool = matches!(reply.parts.first(), Some(Part::ToolCall { .. }));
    let mut head = Vec::new();
    if quirks.sse_comments {
        head.push(sse_comment(quirks));
    }
    if !first_is_tool {
        let role = Obj::new()
            .f("role", "assistant")
            .f("content", "")
            .f("refusal", Value::Null)
            .end();
        head.push(delta_chunk(role, None));
    }
    let mut parts = Vec::new();
    let mut completion = 0u64;
    let mut tool_count = 0usize;
    for (i, part) in reply.parts.iter().enumerate() {
        let mut events = Vec::new();
        if quirks.sse_comments && i > 0 {
            events.push(sse_comment(quirks));
        }
        match part {
            Part::Text(text) => {
                for piece in pieces(text, &TEXT_PIECES) {
                    completion += 1;
                    events.push(delta_chunk(Obj::new().f("content", piece).end(), None));
                }
            }
            Part::ToolCall { name, arguments } => {
                let index = if quirks.reuse_index { 0 } else { tool_count };
                // `index` first, then `id`/`type` on the opening delta only.
                let call = |opening: bool, function: String| {
                    let mut call = Obj::new();
                    if !quirks.omit_index {
                        call = call.f("index", index);
                    }
                    if opening {
                        call = call
                            .f("id", ctx.tool_ids[tool_count].as_str())
                            .f("type", "function");
                    }
                    call.raw("function", function).end()
                };
                let function = Obj::new().f("name", name.as_str()).f("arguments", "").end();
                let start = call(true, function);
                let mut delta = Obj::new();
                if i == 0 {
                    delta = delta.f("role", "assistant").f("content", Value::Null);
                }
                delta = delta.raw("tool_calls", arr([start]));
                if i == 0 {
                    delta = delta.f("refusal", Value::Null);
                }
                events.push(delta_chunk(delta.end(), None));
                for fragment in pieces(&arguments.to_string(), &ARG_PIECES) {
                    completion += 1;
                    let function = Obj::new().f("arguments", fragment).end();
                    let more = call(false, function);
                    let delta = Obj::new().raw("tool_calls", arr([more])).end();
                    events.push(delta_chunk(delta, None));
                }
                tool_count += 1;
            }
        }
        parts.push(events);
    }
    let mut tail = Vec::new();
    if !quirks.no_finish_reason {
        let finish = match (tool_count > 0, quirks.length_limit) {
            (_, true) => "length",
            (true, false) => "tool_calls",
            (false, false) => "stop",
        };
        tail.push(delta_chunk("{}".to_string(), Some(finish)));
    }
    if (ctx.include_usage || quirks.always_usage) && !quirks.no_usage {
        tail.push(openai_chunk(
            ctx,
            quirks,
            "[]".to_string(),
            Some(openai_usage(ctx, completion.max(1))),
        ));
    }
    tail.push(sse_data("[DONE]", quirks));
    Script { head, parts, tail }
}

fn openai_whole(reply: &Reply, ctx: &Ctx) -> String {
    let (text, calls) = collect(reply);
    let mut message = Obj::new().f("role", "assistant");
    message = if text.is_empty() && !calls.is_empty() {
        message.f("content", Value::Null)
    } else {
        message.f("content", text.as_str())
    };
    if !calls.is_empty() {
        let calls = arr(calls
            .iter()
            .zip(&ctx.tool_ids)
            .map(|((name, arguments), id)| {
                let function = Obj::new()
                    .f("name", *name)
                    .f("arguments", arguments.to_string())
                    .end();
                Obj::new()
                    .f("id", id.as_str())
                    .f("type", "function")
                    .raw("function", function)
                    .end()
            }));
        message = message.raw("tool_calls", calls);
    }
    let message = message
        .f("refusal", Value::Null)
        .raw("annotations", "[]")
        .end();
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let choice = Obj::new()
        .f("index", 0)
        .raw("message", message)
        .f("logprobs", Value::Null)
        .f(
            "finish_reason",
            (!reply.quirks.no_finish_reason).then_some(finish),
        )
        .end();
    let completion = (pieces(&text, &TEXT_PIECES).len() + calls.len()).max(1) as u64;
    let mut whole = Obj::new()
        .f("id", ctx.id.as_str())
        .f("object", "chat.completion")
        .f("created", ctx.created)
        .f("model", ctx.model.as_str())
        .raw("choices", arr([choice]));
    if !reply.quirks.no_usage {
        whole = whole.raw("usage", openai_usage(ctx, completion));
    }
    whole.f("system_fingerprint", "fp_fake").end()
}

// ── Anthropic ──

fn anthropic_usage(ctx: &Ctx, output: u64) -> String {
    Obj::new()
        .f("input_tokens", ctx.prompt_tokens)
        .f("cache_creation_input_tokens", 0)
        .f("cache_read_input_tokens", 0)
        .f("output_tokens", output)
        .end()
}

fn anthropic_stream(reply: &Reply, ctx: &Ctx) -> Script {
    let quirks = &reply.quirks;
    let event = |name: &str, data: String| sse_event(name, &data, quirks);
    let ping = || sse_event("ping", r#"{"type": "ping"}"#, quirks);
    let block_stop = |index: usize| {
        event(
            "content_block_stop",
            Obj::new()
                .f("type", "content_block_stop")
                .f("index", index)
                .end(),
        )
    };
    let block_start = |index: usize, block: String| {
        event(
            "content_block_start",
            Obj::new()
                .f("type", "content_block_start")
                .f("index", index)
                .raw("content_block", block)
                .end(),
        )
    };
    let block_delta = |index: usize, delta: String| {
        event(
            "content_block_delta",
            Obj::new()
                .f("type", "content_block_delta")
                .f("index", index)
                .raw("delta", delta)
                .end(),
        )
    };

    let mut head = Vec::new();
    if quirks.sse_comments {
        head.push(sse_comment(quirks));
    }
    let mut message = Obj::new()
        .f("id", ctx.id.as_str())
        .f("type", "message")
        .f("role", "assistant")
        .f("model", ctx.model.as_str())
        .raw("content", "[]")
        .f("stop_reason", Value::Null)
        .f("stop_sequence", Value::Null);
    if !quirks.no_usage {
        message = message.raw("usage", anthropic_usage(ctx, 1));
    }
    head.push(event(
        "message_start",
        Obj::new()
            .f("type", "message_start")
            .raw("message", message.end())
            .end(),
    ));

    // The block being streamed: its index and whether it is text.
    let mut open: Option<(usize, bool)> = None;
    let mut next_index = 0;
    let mut pinged = false;
    let mut output = 0u64;
    let mut tool_count = 0usize;
    let mut parts = Vec::new();
    for (i, part) in reply.parts.iter().enumerate() {
        let mut events = Vec::new();
        if quirks.sse_comments && i > 0 {
            events.push(sse_comment(quirks));
        }
        let continues_text = matches!(part, Part::Text(_)) && matches!(open, Some((_, true)));
        let index = if continues_text {
            next_index - 1
        } else {
            if let Some((index, _)) = open {
                events.push(block_stop(index));
            }
            let block = match part {
                Part::Text(_) => Obj::new().f("type", "text").f("text", "").end(),
                Part::ToolCall { name, .. } => Obj::new()
                    .f("type", "tool_use")
                    .f("id", ctx.tool_ids[tool_count].as_str())
                    .f("name", name.as_str())
                    .raw("input", "{}")
                    .end(),
            };
            events.push(block_start(next_index, block));
            if !pinged {
                events.push(ping());
                pinged = true;
            }
            open = Some((next_index, matches!(part, Part::Text(_))));
            next_index += 1;
            next_index - 1
        };
        match part {
            Part::Text(text) => {
                for piece in pieces(text, &TEXT_PIECES) {
                    output += 1;
                    let delta = Obj::new().f("type", "text_delta").f("text", piece).end();
                    events.push(block_delta(index, delta));
                    if quirks.pings {
                        events.push(ping());
                    }
                }
            }
            Part::ToolCall { arguments, .. } => {
                let fragments = std::iter::once(String::new())
                    .chain(pieces(&arguments.to_string(), &ARG_PIECES));
                for fragment in fragments {
                    output += 1;
                    let delta = Obj::new()
                        .f("type", "input_json_delta")
                        .f("partial_json", fragment)
                        .end();
                    events.push(block_delta(index, delta));
                    if quirks.pings {
                        events.push(ping());
                    }
                }
                tool_count += 1;
            }
        }
        parts.push(events);
    }

    let mut tail = Vec::new();
    if let Some((index, _)) = open {
        tail.push(block_stop(index));
    }
    if !pinged {
        tail.push(ping());
    }
    let stop_reason = if quirks.length_limit {
        "max_tokens"
    } else if tool_count > 0 {
        "tool_use"
    } else {
        "end_turn"
    };
    let delta = Obj::new()
        .f(
            "stop_reason",
            (!quirks.no_finish_reason).then_some(stop_reason),
        )
        .f("stop_sequence", Value::Null)
        .end();
    let mut message_delta = Obj::new().f("type", "message_delta").raw("delta", delta);
    if !quirks.no_usage {
        message_delta =
            message_delta.raw("usage", Obj::new().f("output_tokens", output.max(1)).end());
    }
    tail.push(event("message_delta", message_delta.end()));
    tail.push(event(
        "message_stop",
        Obj::new().f("type", "message_stop").end(),
    ));
    Script { head, parts, tail }
}

fn anthropic_whole(reply: &Reply, ctx: &Ctx) -> String {
    let mut blocks: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut tool_count = 0usize;
    let mut output = 0usize;
    for part in &reply.parts {
        match part {
            Part::Text(t) => {
                text.push_str(t);
                output += pieces(t, &TEXT_PIECES).len();
            }
            Part::ToolCall { name, arguments } => {
                if !text.is_empty() {
                    blocks.push(
                        Obj::new()
                            .f("type", "text")
                            .f("text", std::mem::take(&mut text))
                            .end(),
                    );
                }
                blocks.push(
                    Obj::new()
                        .f("type", "tool_use")
                        .f("id", ctx.tool_ids[tool_count].as_str())
                        .f("name", name.as_str())
                        .f("input", arguments.clone())
                        .end(),
                );
                tool_count += 1;
                output += 1;
            }
        }
    }
    if !text.is_empty() {
        blocks.push(Obj::new().f("type", "text").f("text", text).end());
    }
    let stop_reason = if tool_count > 0 {
        "tool_use"
    } else {
        "end_turn"
    };
    let mut whole = Obj::new()
        .f("id", ctx.id.as_str())
        .f("type", "message")
        .f("role", "assistant")
        .f("model", ctx.model.as_str())
        .raw("content", arr(blocks))
        .f(
            "stop_reason",
            (!reply.quirks.no_finish_reason).then_some(stop_reason),
        )
        .f("stop_sequence", Value::Null);
    if !reply.quirks.no_usage {
        whole = whole.raw("usage", anthropic_usage(ctx, output.max(1) as u64));
    }
    whole.end()
}
