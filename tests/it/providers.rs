//! The three provider wire formats in depth, over the real server and the
//! fake LLM: a tool-calling turn through each kind, every stream quirk the
//! fake knows, failures (cut streams, mid-stream errors, 429, 529, refused
//! keys) as `error` events with stable codes, model listing and switching,
//! `ironclaw check`'s tool line, and a 200-turn conversation that stays
//! inside a small context budget. Tool-calling tests need Docker and the
//! sandbox image, like tests/it/tools.rs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Fault, Quirks, Reply, Split};
use crate::support::*;
use ironclaw::config::{ProviderKind, Settings};

/// The key the fake demands of OpenAI and Anthropic requests (Ollama never
/// checks one).
const KEY: &str = "sk-test-0123456789abcdef";

const KINDS: [ProviderKind; 3] = [
    ProviderKind::Ollama,
    ProviderKind::Openai,
    ProviderKind::Anthropic,
];

/// A server on the fake in `kind`'s wire format, with the right key.
async fn start(llm: &FakeLlm, kind: ProviderKind, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    llm.set_api_key(Some(KEY));
    TestApp::builder(kind, &llm.base_url)
        .settings(|s| {
            s.provider.api_key = KEY.into();
            tweak(s);
        })
        .start()
        .await
}

/// A socket on a new session of alice's whose commands run without asking.
async fn unattended(app: &TestApp) -> (Client, Socket) {
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    let ws = alice.connect(Some(&id)).await;
    (alice, ws)
}

/// The stdout of each tool call of a turn, in call order.
fn stdouts(events: &[Value]) -> Vec<String> {
    of_type(events, "tool_call")
        .iter()
        .map(|call| {
            events
                .iter()
                .filter(|e| {
                    e["type"] == "exec_output"
                        && e["call_id"] == call["call_id"]
                        && e["stream"] == "stdout"
                })
                .filter_map(|e| e["data"].as_str())
                .collect()
        })
        .collect()
}

fn messages(events: &[Value]) -> Vec<String> {
    of_type(events, "assistant_message")
        .iter()
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect()
}

fn error_of(events: &[Value]) -> Value {
    of_type(events, "error")
        .first()
        .map(|e| (*e).clone())
        .unwrap_or_else(|| panic!("no error event: {events:#?}"))
}

fn quirks(f: impl FnOnce(&mut Quirks)) -> Quirks {
    let mut q = Quirks::default();
    f(&mut q);
    q
}

// ───────────────────────────── tool calls ─────────────────────────────

/// Checks that the second request of a tool turn hands the result back in
/// the wire's own shape, paired with the call.
fn assert_result_sent_back(kind: ProviderKind, second: &crate::fake_llm::Recorded) {
    let body = &second.body;
    let msgs = body["messages"].as_array().unwrap();
    match kind {
        ProviderKind::Ollama => {
            let call = msgs.iter().find(|m| m["tool_calls"].is_array()).unwrap();
            assert_eq!(
                call["tool_calls"][0]["function"]["arguments"]["command"],
                "echo hi"
            );
            let result = msgs.iter().find(|m| m["role"] == "tool").unwrap();
            assert_eq!(result["tool_name"], "shell");
            assert!(result["content"].as_str().unwrap().contains("hi"));
        }
        ProviderKind::Openai => {
            let call = msgs.iter().find(|m| m["tool_calls"].is_array()).unwrap();
            let result = msgs.iter().find(|m| m["role"] == "tool").unwrap();
            assert_eq!(result["tool_call_id"], call["tool_calls"][0]["id"]);
            assert!(result["content"].as_str().unwrap().contains("hi"));
        }
        ProviderKind::Anthropic => {
            assert_eq!(second.header("x-api-key"), Some(KEY));
            assert_eq!(second.header("anthropic-version"), Some("2023-06-01"));
            assert!(second.header("authorization").is_none());
            assert!(body["max_tokens"].as_u64().unwrap() > 0);
            assert!(body["system"].as_str().unwrap().contains("IronClaw"));
            assert_eq!(body["tools"][0]["name"], "shell");
            assert!(body["tools"][0]["input_schema"].is_object());
            let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
            assert_eq!(roles, ["user", "assistant", "user"], "{body:#}");
            let tool_use = msgs[1]["content"]
                .as_array()
                .unwrap()
                .iter()
                .find(|b| b["type"] == "tool_use")
                .unwrap();
            assert_eq!(tool_use["input"], json!({"command": "echo hi"}));
            let result = &msgs[2]["content"][0];
            assert_eq!(result["type"], "tool_result");
            assert_eq!(result["tool_use_id"], tool_use["id"]);
            assert!(result["content"].as_str().unwrap().contains("hi"));
        }
    }
}

/// A scripted tool turn, then the kind's tool-call quirks, each a turn on
/// the same session (one sandbox container for all).
async fn tool_turns_through(kind: ProviderKind) {
    let llm = FakeLlm::start().await;
    let app = start(&llm, kind, |_| {}).await;
    let (_alice, mut ws) = unattended(&app).await;

    llm.push(Reply::text("Let me look.").then_tool("shell", json!({"command": "echo hi"})));
    llm.push(Reply::text("It printed hi."));
    ws.say("run echo hi").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "tool_call")[0]["code"], "echo hi");
    assert_eq!(stdouts(&events), ["hi\n"]);
    assert_eq!(messages(&events), ["Let me look.", "It printed hi."]);
    assert_eq!(events.last().unwrap()["reason"], "completed");
    let chats = llm.chat_requests();
    assert_eq!(chats.len(), 2);
    assert_result_sent_back(kind, &chats[1]);

    let two = || {
        Reply::tool("shell", json!({"command": "echo one"}))
            .then_tool("shell", json!({"command": "echo two"}))
    };
    let utf8 =
        || Reply::text("Grüße 🌍: ").then_tool("shell", json!({"command": "echo 'héllo 🦀'"}));
    let mut cases: Vec<(&str, Reply, Vec<&str>)> = vec![
        ("two calls in one reply", two(), vec!["one\n", "two\n"]),
        (
            "no finish reason",
            two().quirks(quirks(|q| q.no_finish_reason = true)),
            vec!["one\n", "two\n"],
        ),
        (
            "crlf, comments, pings, data without a space, no usage",
            two().quirks(quirks(|q| {
                q.crlf = true;
                q.sse_comments = true;
                q.pings = true;
                q.data_no_space = true;
                q.no_usage = true;
            })),
            vec!["one\n", "two\n"],
        ),
        (
            "split at every byte",
            utf8().split(Split::Bytes(1)),
            vec!["héllo 🦀\n"],
        ),
        (
            "split at odd sizes",
            utf8().split(Split::Sizes(vec![2, 3, 5, 7, 11])),
            vec!["héllo 🦀\n"],
        ),
        (
            "close-delimited body",
            two().quirks(quirks(|q| q.close_delimited = true)),
            vec!["one\n", "two\n"],
        ),
    ];
    if kind == ProviderKind::Openai {
        cases.push((
            "every call on index 0",
            two().quirks(quirks(|q| q.reuse_index = true)),
            vec!["one\n", "two\n"],
        ));
        cases.push((
            "no index at all",
            two().quirks(quirks(|q| q.omit_index = true)),
            vec!["one\n", "two\n"],
        ));
    }
    for (label, reply, expected) in cases {
        let before = llm.chat_requests().len();
        llm.push(reply);
        llm.push(Reply::text(format!("done: {label}")));
        ws.say(label).await;
        let events = ws.turn().await;
        assert!(of_type(&events, "error").is_empty(), "{label}: {events:#?}");
        assert_eq!(stdouts(&events), expected, "{label}");
        assert_eq!(
            messages(&events).last().map(String::as_str),
            Some(format!("done: {label}").as_str()),
            "{label}"
        );
        assert_eq!(events.last().unwrap()["reason"], "completed", "{label}");
        assert_eq!(llm.chat_requests().len(), before + 2, "{label}");
    }
    drop(ws);
    app.stop().await;
}

#[actix_rt::test]
async fn ollama_tool_turn_completes_with_whole_calls_and_every_quirk() {
    tool_turns_through(ProviderKind::Ollama).await;
}

#[actix_rt::test]
async fn openai_tool_turn_completes_with_fragmented_calls_and_every_quirk() {
    tool_turns_through(ProviderKind::Openai).await;
}

#[actix_rt::test]
async fn anthropic_tool_turn_completes_with_tool_use_blocks_and_every_quirk() {
    tool_turns_through(ProviderKind::Anthropic).await;
}

/// A model without native tools (Ollama refusing them with 400, or
/// `provider.tools = false`) still runs a command from a fenced block, and
/// the result goes back as text in a request the server accepts.
#[actix_rt::test]
async fn a_model_without_tools_completes_a_command_through_fenced_blocks() {
    for (kind, refused_by_server) in [
        (ProviderKind::Ollama, true),
        (ProviderKind::Anthropic, false),
    ] {
        let llm = FakeLlm::start().await;
        llm.no_tools(refused_by_server);
        let app = start(&llm, kind, |s| s.provider.tools = refused_by_server).await;
        let (_alice, mut ws) = unattended(&app).await;
        llm.push(Reply::text("Counting:\n```bash\necho $((40 + 2))\n```\n"));
        llm.push(Reply::text("It is 42."));
        ws.say("what is 40 + 2?").await;
        let events = ws.turn().await;
        assert!(
            of_type(&events, "error").is_empty(),
            "{kind:?}: {events:#?}"
        );
        assert_eq!(stdouts(&events), ["42\n"], "{kind:?}");
        assert_eq!(
            messages(&events).last().map(String::as_str),
            Some("It is 42."),
            "{kind:?}"
        );
        let chats = llm.chat_requests();
        let last = &chats.last().unwrap().body;
        assert!(last.get("tools").is_none(), "{kind:?}");
        assert!(last["messages"].to_string().contains("42"), "{kind:?}");
        if refused_by_server {
            assert!(
                chats[0].body.get("tools").is_some(),
                "tried with tools first"
            );
            assert!(
                of_type(&events, "log").iter().any(|l| l["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("does not support tool")),
                "{kind:?}: the person is told"
            );
        }
        drop(ws);
        app.stop().await;
    }
}

// ───────────────────────────── text quirks ─────────────────────────────

/// Every quirk and split on a text reply: the deltas add up to exactly the
/// text, with no error.
async fn text_quirks_through(kind: ProviderKind) {
    let llm = FakeLlm::start().await;
    let app = start(&llm, kind, |_| {}).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    let text = "Grüße aus dem Käfig 🦀 — 日本語も、ok.";
    let reply = || Reply::text(text);
    let mut cases: Vec<(String, Reply)> = vec![
        ("crlf".into(), reply().quirks(quirks(|q| q.crlf = true))),
        (
            "comments".into(),
            reply().quirks(quirks(|q| q.sse_comments = true)),
        ),
        ("pings".into(), reply().quirks(quirks(|q| q.pings = true))),
        (
            "data without a space".into(),
            reply().quirks(quirks(|q| q.data_no_space = true)),
        ),
        (
            "no usage".into(),
            reply().quirks(quirks(|q| q.no_usage = true)),
        ),
        (
            "no finish reason".into(),
            reply().quirks(quirks(|q| q.no_finish_reason = true)),
        ),
        (
            "close-delimited".into(),
            reply().quirks(quirks(|q| q.close_delimited = true)),
        ),
        ("coalesced".into(), reply().split(Split::Coalesced)),
        (
            "odd sizes".into(),
            reply().split(Split::Sizes(vec![1, 2, 3, 5, 8, 13])),
        ),
        (
            "everything at once, byte by byte".into(),
            reply().split(Split::Bytes(1)).quirks(Quirks {
                crlf: true,
                sse_comments: true,
                pings: true,
                no_usage: true,
                no_finish_reason: true,
                data_no_space: true,
                close_delimited: true,
                ..Quirks::default()
            }),
        ),
    ];
    for n in 1..=7 {
        cases.push((
            format!("split every {n} bytes"),
            reply().split(Split::Bytes(n)),
        ));
    }
    for (label, reply) in cases {
        llm.push(reply);
        ws.say(&label).await;
        let events = ws.turn().await;
        assert!(of_type(&events, "error").is_empty(), "{label}: {events:#?}");
        assert_eq!(delta_text(&events), text, "{label}");
        assert_eq!(messages(&events), [text], "{label}");
        assert_eq!(events.last().unwrap()["reason"], "completed", "{label}");
    }
    drop(ws);
    app.stop().await;
}

#[actix_rt::test]
async fn ollama_text_streams_exactly_through_every_quirk_and_split() {
    text_quirks_through(ProviderKind::Ollama).await;
}

#[actix_rt::test]
async fn openai_text_streams_exactly_through_every_quirk_and_split() {
    text_quirks_through(ProviderKind::Openai).await;
}

#[actix_rt::test]
async fn anthropic_text_streams_exactly_through_every_quirk_and_split() {
    text_quirks_through(ProviderKind::Anthropic).await;
}

// ───────────────────────────── failures ─────────────────────────────

#[actix_rt::test]
async fn a_stream_cut_after_the_first_token_keeps_the_partial_text_and_is_not_retried() {
    for kind in KINDS {
        for close_delimited in [false, true] {
            let label = format!("{kind:?}, close-delimited: {close_delimited}");
            let llm = FakeLlm::start().await;
            let app = start(&llm, kind, |_| {}).await;
            let alice = app.login("alice").await;
            let mut ws = alice.connect(None).await;
            llm.push(
                Reply::text("The first half of an answer")
                    .then_text(" and the second half")
                    .fault(Fault::CutAfter(1))
                    .quirks(quirks(|q| q.close_delimited = close_delimited)),
            );
            ws.say("tell me").await;
            let events = ws.turn().await;
            let partial = delta_text(&events);
            assert!(partial.starts_with("The first"), "{label}: {partial:?}");
            assert!(!partial.contains("second"), "{label}: {partial:?}");
            assert_eq!(messages(&events), [partial.as_str()], "{label}: kept");
            let error = error_of(&events);
            assert_eq!(error["code"], "provider_stream_cut", "{label}");
            assert!(
                error["message"]
                    .as_str()
                    .unwrap()
                    .contains("partial reply is kept"),
                "{label}: {error}"
            );
            assert_eq!(events.last().unwrap()["reason"], "error", "{label}");
            assert_eq!(llm.chat_requests().len(), 1, "{label}: no retry");
            drop(ws);
            app.stop().await;
        }
    }
}

#[actix_rt::test]
async fn mid_stream_errors_end_the_turn_with_the_servers_message() {
    for kind in KINDS {
        let llm = FakeLlm::start().await;
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        llm.push(
            Reply::text("Starting to")
                .then_text(" answer")
                .fault(Fault::ErrorAfter(1, "the model runner crashed".into())),
        );
        ws.say("go").await;
        let events = ws.turn().await;
        let error = error_of(&events);
        assert_eq!(error["code"], "provider_error", "{kind:?}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("the model runner crashed"),
            "{kind:?}: {error}"
        );
        assert_eq!(messages(&events), ["Starting to"], "{kind:?}: partial kept");
        assert_eq!(llm.chat_requests().len(), 1, "{kind:?}: no retry");
        drop(ws);
        app.stop().await;
    }
}

#[actix_rt::test]
async fn text_in_the_same_read_as_a_mid_stream_error_is_still_shown() {
    for kind in KINDS {
        let llm = FakeLlm::start().await;
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        llm.push(
            Reply::text("Starting to")
                .then_text(" answer")
                .fault(Fault::ErrorAfter(1, "the model runner crashed".into()))
                .split(Split::Coalesced),
        );
        ws.say("go").await;
        let events = ws.turn().await;
        assert_eq!(error_of(&events)["code"], "provider_error", "{kind:?}");
        assert_eq!(messages(&events), ["Starting to"], "{kind:?}: partial kept");
        assert_eq!(llm.chat_requests().len(), 1, "{kind:?}: no retry");
        drop(ws);
        app.stop().await;
    }
}

#[actix_rt::test]
async fn anthropic_overloaded_is_retried_before_output_and_reported_after() {
    let llm = FakeLlm::start().await;
    let app = start(&llm, ProviderKind::Anthropic, |s| {
        s.provider.max_retries = 2
    })
    .await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;

    // HTTP 529 before the stream: retried.
    llm.push(Reply::status(529));
    llm.push(Reply::text("after a 529"));
    ws.say("one").await;
    let events = ws.turn().await;
    assert!(of_type(&events, "error").is_empty(), "{events:#?}");
    assert_eq!(messages(&events), ["after a 529"]);
    assert_eq!(llm.chat_requests().len(), 2);

    // `overloaded_error` in the stream before any text: retried too.
    llm.clear_requests();
    llm.push(Reply::text("never shown").fault(Fault::ErrorAfter(0, "Overloaded".into())));
    llm.push(Reply::text("after a mid-stream overload"));
    ws.say("two").await;
    let events = ws.turn().await;
    assert!(of_type(&events, "error").is_empty(), "{events:#?}");
    assert_eq!(delta_text(&events), "after a mid-stream overload");
    assert_eq!(llm.chat_requests().len(), 2);

    // After text has been shown: reported, partial kept, not retried.
    llm.clear_requests();
    llm.push(
        Reply::text("Half an")
            .then_text(" answer")
            .fault(Fault::ErrorAfter(1, "Overloaded".into())),
    );
    ws.say("three").await;
    let events = ws.turn().await;
    let error = error_of(&events);
    assert_eq!(error["code"], "provider_busy");
    assert!(
        error["message"].as_str().unwrap().contains("Overloaded"),
        "{error}"
    );
    assert_eq!(messages(&events), ["Half an"]);
    assert_eq!(llm.chat_requests().len(), 1);

    // Overloaded on every attempt: the retries run out, with a clear message.
    llm.clear_requests();
    for _ in 0..3 {
        llm.push(Reply::status(529));
    }
    ws.say("four").await;
    let events = ws.turn().await;
    let error = error_of(&events);
    assert_eq!(error["code"], "provider_busy");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains("529") && message.contains("3 attempt") && message.contains("Try again"),
        "{message}"
    );
    assert_eq!(
        llm.chat_requests().len(),
        3,
        "max_retries = 2: three attempts"
    );
    drop(ws);
    app.stop().await;
}

#[actix_rt::test]
async fn rate_limits_wait_as_long_as_the_server_asks_then_succeed() {
    for kind in KINDS {
        let llm = FakeLlm::start().await;
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        llm.push(Reply::status(429).retry_after(1));
        llm.push(Reply::text("after the wait"));
        let began = Instant::now();
        ws.say("hello").await;
        let events = ws.turn().await;
        let took = began.elapsed();
        assert!(
            of_type(&events, "error").is_empty(),
            "{kind:?}: {events:#?}"
        );
        assert_eq!(messages(&events), ["after the wait"], "{kind:?}");
        assert!(
            took >= Duration::from_millis(950),
            "{kind:?}: retry-after 1 s honoured, took {took:?}"
        );
        assert_eq!(llm.chat_requests().len(), 2, "{kind:?}");
        drop(ws);
        app.stop().await;
    }
}

#[actix_rt::test]
async fn a_wait_longer_than_a_minute_is_reported_instead_of_waited() {
    let llm = FakeLlm::start().await;
    let app = start(&llm, ProviderKind::Openai, |_| {}).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.push(Reply::status(429).retry_after(3600));
    ws.say("hello").await;
    let events = ws.turn().await;
    let error = error_of(&events);
    assert_eq!(error["code"], "provider_busy");
    assert!(
        error["message"].as_str().unwrap().contains("3600 s"),
        "{error}"
    );
    assert_eq!(llm.chat_requests().len(), 1);
    drop(ws);
    app.stop().await;
}

#[actix_rt::test]
async fn a_refused_key_fails_at_once_and_names_the_variable_to_set() {
    for (kind, var) in [
        (ProviderKind::Openai, "OPENAI_API_KEY"),
        (ProviderKind::Anthropic, "ANTHROPIC_API_KEY"),
    ] {
        let llm = FakeLlm::start().await;
        llm.set_api_key(Some(KEY));
        let app = TestApp::builder(kind, &llm.base_url)
            .settings(|s| s.provider.api_key = "sk-wrong-key-000000".into())
            .start()
            .await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        ws.say("hello").await;
        let events = ws.turn().await;
        let error = error_of(&events);
        assert_eq!(error["code"], "provider_auth", "{kind:?}");
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(var) && message.contains("401"),
            "{kind:?}: {message}"
        );
        assert!(
            of_type(&events, "log")
                .iter()
                .any(|l| l["message"].as_str().unwrap_or_default().contains(var)),
            "{kind:?}: the log says it too"
        );
        assert_eq!(llm.chat_requests().len(), 1, "{kind:?}: no retry");
        drop(ws);
        app.stop().await;
    }
}

#[actix_rt::test]
async fn a_prompt_over_the_models_context_says_which_setting_to_lower() {
    for (kind, body) in [
        (
            ProviderKind::Anthropic,
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        ),
        (
            ProviderKind::Openai,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}"#,
        ),
    ] {
        let llm = FakeLlm::start().await;
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        llm.push(Reply::status(400).status_body(body));
        ws.say("hello").await;
        let events = ws.turn().await;
        let error = error_of(&events);
        assert_eq!(error["code"], "provider_context_too_long", "{kind:?}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("provider.context_tokens"),
            "{kind:?}: {error}"
        );
        assert_eq!(llm.chat_requests().len(), 1, "{kind:?}: no retry");
        drop(ws);
        app.stop().await;
    }
}

// ───────────────────────────── gateway errors ─────────────────────────────
//
// What a real gateway (the LiteLLM proxy) answers when things go wrong.

/// The first error event of one turn of `reply`, on a fresh server of
/// `kind`, and how many chat requests the fake saw.
async fn error_of_turn(kind: ProviderKind, reply: Reply) -> (Value, usize) {
    let llm = FakeLlm::start().await;
    let app = start(&llm, kind, |_| {}).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.push(reply);
    ws.say("hello").await;
    let events = ws.turn().await;
    let error = error_of(&events);
    let requests = llm.chat_requests().len();
    drop(ws);
    app.stop().await;
    (error, requests)
}

#[actix_rt::test]
async fn a_refused_key_reads_as_one_sentence_for_every_kind() {
    for (kind, expected) in [
        (
            ProviderKind::Ollama,
            "The Ollama server refused the API key (HTTP 401): request failed. Check provider.api_key (Ollama itself needs no key; a proxy in front of it may).",
        ),
        (
            ProviderKind::Openai,
            "The OpenAI-compatible server refused the API key (HTTP 401): Incorrect API key provided. Check the OPENAI_API_KEY environment variable or provider.api_key.",
        ),
        (
            ProviderKind::Anthropic,
            "The Anthropic server refused the API key (HTTP 401): invalid x-api-key. Check the ANTHROPIC_API_KEY environment variable or provider.api_key.",
        ),
    ] {
        let (error, _) = error_of_turn(kind, Reply::status(401)).await;
        assert_eq!(error["code"], "provider_auth", "{kind:?}");
        assert_eq!(error["message"], expected, "{kind:?}");
    }
}

#[actix_rt::test]
async fn health_says_a_server_that_refused_the_key_is_reachable() {
    for (kind, var) in [
        (ProviderKind::Openai, "OPENAI_API_KEY"),
        (ProviderKind::Anthropic, "ANTHROPIC_API_KEY"),
    ] {
        let llm = FakeLlm::start().await;
        llm.set_api_key(Some(KEY));
        let app = TestApp::builder(kind, &llm.base_url)
            .settings(|s| s.provider.api_key = "sk-wrong-key-000000".into())
            .start()
            .await;
        let health: Value = app
            .login("alice")
            .await
            .get("/api/health")
            .json_body()
            .await;
        let provider = &health["provider"];
        assert_eq!(provider["reachable"], true, "{kind:?}: {health}");
        assert_eq!(provider["model_available"], false, "{kind:?}: {health}");
        let hint = provider["hint"].as_str().unwrap();
        assert!(
            hint.contains("refused the API key") && hint.contains(var),
            "{kind:?}: {hint}"
        );
        app.stop().await;
    }

    // `ironclaw check` says the same: the server is there, the key is not.
    let llm = FakeLlm::start().await;
    llm.set_api_key(Some("sk-another-key-999999"));
    let out = run_check(&llm, ProviderKind::Openai).await;
    let line = |what: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {what}: ")))
            .unwrap_or_else(|| panic!("no {what} line in:\n{out}"))
            .to_string()
    };
    assert!(line("provider").starts_with("OK"), "{out}");
    assert!(
        line("model").contains("refused the API key") && line("model").contains("OPENAI_API_KEY"),
        "{out}"
    );
}

#[actix_rt::test]
async fn an_error_body_in_sse_json_or_plain_text_is_decoded_into_the_message() {
    let said = "litellm.BadRequestError: OpenAIException - temperature must be at most 2";
    let json_error =
        json!({"error": {"message": said, "type": "None", "param": "None", "code": "400"}});
    for (label, body) in [
        ("SSE", format!("data: {json_error}\n\n")),
        (
            "SSE with [DONE]",
            format!("data: {json_error}\r\n\r\ndata: [DONE]\r\n\r\n"),
        ),
        ("JSON", json_error.to_string()),
        ("plain text", format!("  {said}\n")),
    ] {
        let (error, requests) =
            error_of_turn(ProviderKind::Openai, Reply::status(400).status_body(body)).await;
        assert_eq!(error["code"], "provider_http", "{label}");
        assert_eq!(
            error["message"],
            format!("The model server answered HTTP 400: {said}"),
            "{label}"
        );
        assert_eq!(requests, 1, "{label}: no retry");
    }
}

#[actix_rt::test]
async fn an_invalid_model_name_from_the_gateway_is_a_missing_model() {
    let said = "/chat/completions: Invalid model name passed in model=llama3.2. Call `/v1/models` to view available models for your key.";
    let json_error =
        json!({"error": {"message": said, "type": "None", "param": "None", "code": "400"}});
    for (kind, body) in [
        (ProviderKind::Openai, json_error.to_string()),
        (ProviderKind::Openai, format!("data: {json_error}\n\n")),
        (ProviderKind::Anthropic, format!("data: {json_error}\n\n")),
    ] {
        let (error, requests) = error_of_turn(kind, Reply::status(400).status_body(body)).await;
        assert_eq!(error["code"], "model_not_found", "{kind:?}: {error}");
        assert_eq!(
            error["message"],
            format!(
                "The model `llama3.2` is not available on the {} server. Pick a model the server offers (provider.model).",
                if kind == ProviderKind::Openai { "OpenAI-compatible" } else { "Anthropic" }
            ),
            "{kind:?}"
        );
        assert_eq!(requests, 1, "{kind:?}: no retry");
    }
}

#[actix_rt::test]
async fn a_context_window_error_from_the_gateway_says_which_setting_to_lower() {
    let exceeded = "litellm.ContextWindowExceededError: VertexAIException - The input token count (1200000) exceeds the maximum number of tokens allowed (1048576)";
    let window = "Input is too long for the model's context window";
    let body = |message: &str| {
        json!({"error": {"message": message, "type": "None", "param": "None", "code": "400"}})
            .to_string()
    };
    for (label, kind, reply) in [
        (
            "400, JSON",
            ProviderKind::Openai,
            Reply::status(400).status_body(body(exceeded)),
        ),
        (
            "400, SSE",
            ProviderKind::Anthropic,
            Reply::status(400).status_body(format!("data: {}\n\n", body(window))),
        ),
        (
            "500, never retried",
            ProviderKind::Openai,
            Reply::status(500).status_body(body(exceeded)),
        ),
        (
            "mid-stream",
            ProviderKind::Openai,
            Reply::text("never shown").fault(Fault::GatewayErrorAfter(0, exceeded.into())),
        ),
        (
            "mid-stream, Anthropic",
            ProviderKind::Anthropic,
            Reply::text("never shown").fault(Fault::GatewayErrorAfter(0, window.into())),
        ),
    ] {
        let (error, requests) = error_of_turn(kind, reply).await;
        assert_eq!(
            error["code"], "provider_context_too_long",
            "{label}: {error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains("provider.context_tokens")
                && (message.contains(exceeded) || message.contains(window)),
            "{label}: {message}"
        );
        assert_eq!(requests, 1, "{label}: no retry");
    }
}

#[actix_rt::test]
async fn an_openai_style_error_line_inside_an_anthropic_stream_reports_the_servers_message() {
    let llm = FakeLlm::start().await;
    let app = start(&llm, ProviderKind::Anthropic, |_| {}).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    let said = "litellm.APIConnectionError: AnthropicException - upstream connection lost";
    for (shown, expected) in [(1, vec!["Starting to"]), (0, vec![])] {
        llm.clear_requests();
        llm.push(
            Reply::text("Starting to")
                .then_text(" answer")
                .fault(Fault::GatewayErrorAfter(shown, said.into())),
        );
        ws.say("go").await;
        let events = ws.turn().await;
        let error = error_of(&events);
        assert_eq!(error["code"], "provider_error", "after {shown}: {error}");
        assert_eq!(
            error["message"],
            format!("The model server reported an error: {said}"),
            "after {shown}"
        );
        assert_eq!(messages(&events), expected, "after {shown}: partial kept");
        assert_eq!(llm.chat_requests().len(), 1, "after {shown}: no retry");
    }
    drop(ws);
    app.stop().await;
}

#[actix_rt::test]
async fn a_connection_dropped_before_the_first_token_is_retried() {
    for kind in KINDS {
        let llm = FakeLlm::start().await;
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        for (label, first) in [
            (
                "cut before any text",
                Reply::text("lost").fault(Fault::CutAfter(0)),
            ),
            (
                "cut before any text, close-delimited",
                Reply::text("lost")
                    .fault(Fault::CutAfter(0))
                    .quirks(quirks(|q| q.close_delimited = true)),
            ),
            (
                "closed before the headers",
                Reply::text("lost").fault(Fault::Hangup),
            ),
        ] {
            llm.clear_requests();
            llm.push(first);
            llm.push(Reply::text("the second try"));
            ws.say("hello").await;
            let events = ws.turn().await;
            assert!(
                of_type(&events, "error").is_empty(),
                "{kind:?}, {label}: {events:#?}"
            );
            assert_eq!(messages(&events), ["the second try"], "{kind:?}, {label}");
            assert_eq!(llm.chat_requests().len(), 2, "{kind:?}, {label}");
        }
        drop(ws);
        app.stop().await;
    }

    // Within the retry budget: dropped every time, it is reported.
    let llm = FakeLlm::start().await;
    let app = start(&llm, ProviderKind::Openai, |s| s.provider.max_retries = 1).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    for _ in 0..3 {
        llm.push(Reply::text("lost").fault(Fault::Hangup));
    }
    ws.say("hello").await;
    let events = ws.turn().await;
    assert_eq!(error_of(&events)["code"], "provider_stream_cut");
    assert_eq!(
        llm.chat_requests().len(),
        2,
        "max_retries = 1: two attempts"
    );
    drop(ws);
    app.stop().await;
}

/// A gateway whose upstream died mid-reply may still end the stream the
/// normal way, only without a finish reason. IronClaw cannot tell that from
/// a server that never sends one (some do not), so the text so far is the
/// reply.
#[actix_rt::test]
async fn a_stream_that_ends_normally_after_its_upstream_died_is_the_reply_so_far() {
    for kind in KINDS {
        let llm = FakeLlm::start().await;
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let mut ws = alice.connect(None).await;
        llm.push(
            Reply::text("The first half")
                .then_text(" and the second half")
                .fault(Fault::EndAfter(1)),
        );
        ws.say("tell me").await;
        let events = ws.turn().await;
        assert!(
            of_type(&events, "error").is_empty(),
            "{kind:?}: {events:#?}"
        );
        assert_eq!(messages(&events), ["The first half"], "{kind:?}");
        assert_eq!(events.last().unwrap()["reason"], "completed", "{kind:?}");
        assert_eq!(llm.chat_requests().len(), 1, "{kind:?}");
        drop(ws);
        app.stop().await;
    }
}

// ───────────────────────────── model choice ─────────────────────────────

#[actix_rt::test]
async fn the_page_lists_the_providers_models_for_every_kind() {
    for kind in KINDS {
        let llm = FakeLlm::start().await;
        llm.set_models(&["llama3.2:latest", "qwen2.5:7b"]);
        let app = start(&llm, kind, |_| {}).await;
        let alice = app.login("alice").await;
        let resp = alice.get("/api/models").send().await.unwrap();
        assert_eq!(resp.status(), 200, "{kind:?}");
        let list: Value = resp.json().await.unwrap();
        assert_eq!(
            list["models"],
            json!(["llama3.2:latest", "qwen2.5:7b"]),
            "{kind:?}"
        );
        assert_eq!(list["current"], "llama3.2:latest", "{kind:?}");
        if kind == ProviderKind::Anthropic {
            let listing = llm
                .requests()
                .into_iter()
                .find(|r| r.path == "/v1/models")
                .unwrap();
            assert_eq!(listing.header("x-api-key"), Some(KEY));
            assert_eq!(listing.header("anthropic-version"), Some("2023-06-01"));
        }
        app.stop().await;
    }
}

#[actix_rt::test]
async fn a_switched_model_is_used_for_the_next_request_and_a_missing_one_says_how_to_get_it() {
    let llm = FakeLlm::start().await;
    llm.set_models(&["llama3.2:latest", "qwen2.5:7b"]);
    // The operator allows `mistral` although this server has not pulled it.
    let app = start(&llm, ProviderKind::Ollama, |s| {
        s.provider.models = vec!["mistral".into()]
    })
    .await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    let id = ws.session_id();

    ws.say("first").await;
    ws.turn().await;
    assert_eq!(llm.chat_requests()[0].body["model"], "llama3.2");

    let resp = alice
        .patch(&format!("/api/sessions/{id}"))
        .json(&json!({"model": "qwen2.5:7b"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let summary: Value = resp.json().await.unwrap();
    assert_eq!(summary["model"], "qwen2.5:7b");
    let frame = ws.until("session").await;
    assert_eq!(frame["model"], "qwen2.5:7b", "open tabs are told");

    ws.say("second").await;
    let events = ws.turn().await;
    assert_eq!(events.last().unwrap()["reason"], "completed");
    assert_eq!(llm.chat_requests()[1].body["model"], "qwen2.5:7b");

    // It sticks for the session across a reconnect.
    let mut again = alice.connect(Some(&id)).await;
    assert_eq!(again.session["model"], "qwen2.5:7b");
    again.say("third").await;
    again.turn().await;
    assert_eq!(llm.chat_requests()[2].body["model"], "qwen2.5:7b");

    // A name neither listed nor allowed is refused before it is stored.
    let resp = alice
        .patch(&format!("/api/sessions/{id}"))
        .json(&json!({"model": "made-up"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let resp = alice
        .patch(&format!("/api/sessions/{id}"))
        .json(&json!({"model": "mistral"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    again.until("session").await;
    again.say("fourth").await;
    let events = again.turn().await;
    let error = error_of(&events);
    assert_eq!(error["code"], "model_not_found");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("ollama pull mistral"),
        "{error}"
    );
    drop(ws);
    drop(again);
    app.stop().await;
}

// ───────────────────────────── ironclaw check ─────────────────────────────

fn provider_settings(kind: ProviderKind, base_url: &str) -> ironclaw::config::ProviderSettings {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ironclaw.toml");
    std::fs::write(&file, "# test\n").unwrap();
    let mut settings = Settings::load(Some(&file)).unwrap().provider;
    settings.kind = kind;
    settings.base_url = base_url.into();
    settings.api_key = KEY.into();
    settings
}

#[actix_rt::test]
async fn tool_support_is_asked_of_ollama_and_assumed_elsewhere() {
    use ironclaw::provider::{tool_support, ToolSupport};
    let llm = FakeLlm::start().await;
    let client = reqwest::Client::new();
    let ollama = provider_settings(ProviderKind::Ollama, &llm.base_url);
    assert_eq!(
        tool_support(&client, &ollama, "llama3.2:latest").await,
        ToolSupport::Native
    );
    let show = llm
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/show")
        .unwrap();
    assert_eq!(show.body["model"], "llama3.2:latest");
    llm.no_tools(true);
    assert_eq!(
        tool_support(&client, &ollama, "llama3.2:latest").await,
        ToolSupport::Unsupported
    );
    assert!(matches!(
        tool_support(&client, &ollama, "mistral").await,
        ToolSupport::Unknown(why) if why.contains("mistral")
    ));
    let mut off = ollama.clone();
    off.tools = false;
    assert_eq!(
        tool_support(&client, &off, "llama3.2:latest").await,
        ToolSupport::Disabled
    );
    for kind in [ProviderKind::Openai, ProviderKind::Anthropic] {
        let s = provider_settings(kind, &llm.base_url);
        assert_eq!(
            tool_support(&client, &s, "llama3.2").await,
            ToolSupport::Assumed
        );
    }
    llm.set_offline(true);
    assert!(matches!(
        tool_support(&client, &ollama, "llama3.2").await,
        ToolSupport::Unknown(why) if why.contains("not reachable")
    ));
}

/// `ironclaw check` against the fake, with `kind`; returns its stdout.
async fn run_check(llm: &FakeLlm, kind: ProviderKind) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ironclaw.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ndir = {:?}\n[provider]\nkind = {:?}\nbase_url = {:?}\napi_key = {KEY:?}\n",
            dir.path().join("data").display().to_string(),
            kind.as_str(),
            llm.base_url,
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ironclaw"))
        .arg("--config")
        .arg(&config)
        .arg("check")
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[actix_rt::test]
async fn ironclaw_check_reports_provider_model_and_tool_support() {
    let llm = FakeLlm::start().await;
    llm.set_api_key(Some(KEY));
    let out = run_check(&llm, ProviderKind::Ollama).await;
    let line = |what: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {what}: ")))
            .unwrap_or_else(|| panic!("no {what} line in:\n{out}"))
            .to_string()
    };
    assert!(line("provider").starts_with("OK") && line("provider").contains("ollama at"));
    assert!(line("model").contains("llama3.2:latest"), "{out}");
    assert!(line("tools").contains("native"), "{out}");

    llm.no_tools(true);
    let out = run_check(&llm, ProviderKind::Ollama).await;
    let tools = out.lines().find(|l| l.contains(" tools: ")).unwrap();
    assert!(tools.contains("fenced"), "{out}");

    let out = run_check(&llm, ProviderKind::Anthropic).await;
    let tools = out.lines().find(|l| l.contains(" tools: ")).unwrap();
    assert!(tools.contains("assumed"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.contains(" provider: anthropic at") && l.starts_with("OK")),
        "{out}"
    );
}

// ───────────────────────────── long conversations ─────────────────────────────

/// Context budget for the long conversation, in tokens of 4 bytes: small,
/// so a few turns already overflow it.
const SMALL_CONTEXT_TOKENS: usize = 2000;

/// What a request may carry beyond the budget: the tool schemas and the
/// JSON around each message, which the budget does not count.
const REQUEST_SLACK_BYTES: usize = 3000;

#[actix_rt::test]
async fn a_200_turn_conversation_stays_inside_the_context_budget_and_keeps_working() {
    let llm = FakeLlm::start().await;
    let app = start(&llm, ProviderKind::Anthropic, |s| {
        s.provider.context_tokens = SMALL_CONTEXT_TOKENS;
    })
    .await;
    let (_alice, mut ws) = unattended(&app).await;
    let limit = SMALL_CONTEXT_TOKENS * 4 + REQUEST_SLACK_BYTES;

    // A few commands with big outputs first: the oldest get trimmed.
    for n in 0..3 {
        llm.push(Reply::tool(
            "shell",
            json!({"command": format!("echo out{n}; head -c 3000 /dev/zero | tr '\\0' x")}),
        ));
        llm.push(Reply::text(format!("printed a lot ({n})")));
        ws.say(&format!("make output {n}")).await;
        let events = ws.turn().await;
        assert_eq!(events.last().unwrap()["reason"], "completed", "{events:#?}");
    }
    let trimmed = ws
        .seen
        .iter()
        .filter(|e| e["type"] == "log")
        .filter_map(|e| e["message"].as_str())
        .find(|m| m.contains("output(s) were shortened"))
        .map(str::to_string)
        .unwrap_or_else(|| panic!("the person is told: {:#?}", ws.seen));
    assert!(
        trimmed.contains("provider.context_tokens = 2000"),
        "{trimmed}"
    );
    assert!(!trimmed.contains(" 0 old command output(s)"), "{trimmed}");

    // Then plain turns with long messages and short answers (short, so the
    // test spends its time on turns rather than on streaming deltas).
    for n in 3..200 {
        let text = format!(
            "turn {n}: {}",
            "lorem ipsum dolor sit amet ".repeat(50).trim_end()
        );
        llm.push(Reply::text(format!("noted {n}")));
        ws.say(&text).await;
        let events = ws.turn().await;
        assert_eq!(
            events.last().unwrap()["reason"],
            "completed",
            "turn {n}: {events:#?}"
        );
        assert_eq!(messages(&events), [format!("noted {n}")], "turn {n}");
        let sent = llm.chat_requests().last().unwrap().body.clone();
        let latest = sent["messages"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(latest["content"][0]["text"], text.as_str(), "turn {n}");
        let notes: Vec<Value> = of_type(&events, "log")
            .into_iter()
            .filter(|l| {
                l["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("provider.context_tokens")
            })
            .cloned()
            .collect();
        assert!(notes.len() <= 1, "turn {n}: told once per turn: {notes:#?}");
        if n == 199 {
            assert_eq!(notes.len(), 1, "still told at the end");
            let note = notes[0]["message"].as_str().unwrap();
            assert!(note.contains("left out of what the model sees"), "{note}");
        }
    }

    let chats = llm.chat_requests();
    assert_eq!(chats.len(), 3 * 2 + 197);
    for (i, chat) in chats.iter().enumerate() {
        let size = chat.body.to_string().len();
        assert!(size <= limit, "request {i} is {size} bytes, over {limit}");
    }
    // The last request: the system prompt, the recent turns, the new message.
    let last = &chats.last().unwrap().body;
    assert!(last["system"].as_str().unwrap().contains("IronClaw"));
    let msgs = last["messages"].as_array().unwrap();
    let texts: Vec<String> = msgs
        .iter()
        .map(|m| {
            m["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert!(texts.last().unwrap().starts_with("turn 199:"), "{texts:?}");
    assert!(
        texts.iter().any(|t| t.starts_with("turn 198:")),
        "the previous turn is kept: {texts:?}"
    );
    assert!(
        !texts.iter().any(|t| t.starts_with("make output")),
        "the oldest turns are gone"
    );
    drop(ws);
    app.stop().await;
}

/// A text reply that stops at the model's output limit is kept, and the
/// person is told it may be cut short, on every wire.
#[actix_rt::test]
async fn a_reply_cut_at_the_length_limit_is_kept_and_the_person_is_told() {
    let llm = FakeLlm::start().await;
    for kind in KINDS {
        let app = start(&llm, kind, |_| {}).await;
        let (_alice, mut ws) = unattended(&app).await;
        llm.push(Reply::text("Once upon a time there").quirks(quirks(|q| q.length_limit = true)));
        ws.say("tell me a story").await;
        let events = ws.turn().await;
        assert_eq!(messages(&events), ["Once upon a time there"], "{kind:?}");
        let warned = of_type(&events, "log").iter().any(|l| {
            l["level"] == "warn" && l["message"].as_str().unwrap().contains("length limit")
        });
        assert!(warned, "{kind:?}: {events:#?}");
        assert_eq!(of_type(&events, "turn_done")[0]["reason"], "completed");
        app.stop().await;
    }
}

/// A provider that repeats its tool-call ids (every reply's first call is
/// `call_…1`) works for every user and every turn: IronClaw keys calls by
/// ids of its own.
#[actix_rt::test]
async fn repeated_provider_call_ids_do_not_collide() {
    let llm = FakeLlm::start().await;
    let app = start(&llm, ProviderKind::Openai, |_| {}).await;
    let repeat = || quirks(|q| q.repeat_tool_ids = true);
    let mut call_ids = Vec::new();
    for user in ["alice", "bob"] {
        let client = app.login(user).await;
        let id = client.new_session().await;
        client.set_mode(&id, "never").await;
        let mut ws = client.connect(Some(&id)).await;
        for turn in 0..2 {
            llm.push(
                Reply::tool("shell", json!({"command": format!("echo {user}{turn}")}))
                    .quirks(repeat()),
            );
            llm.push(Reply::text("done"));
            ws.say("go").await;
            let events = ws.turn().await;
            assert_eq!(stdouts(&events), [format!("{user}{turn}\n")], "{events:#?}");
            assert_eq!(of_type(&events, "turn_done")[0]["reason"], "completed");
            call_ids.push(of_type(&events, "tool_call")[0]["call_id"].clone());
        }
    }
    let requests = llm.chat_requests();
    assert!(requests.len() >= 8);
    let mut unique = call_ids.clone();
    unique.sort_by_key(|v| v.to_string());
    unique.dedup();
    assert_eq!(unique.len(), call_ids.len(), "{call_ids:?}");
    app.stop().await;
}
