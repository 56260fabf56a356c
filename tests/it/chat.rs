//! Login, sessions, and streaming chat over the real server and the fake
//! LLM, in both provider wire formats.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Fault, Reply, Split};
use crate::support::*;
use ironclaw::config::ProviderKind;

async fn app(llm: &FakeLlm, kind: ProviderKind) -> TestApp {
    TestApp::builder(kind, &llm.base_url).start().await
}

#[actix_rt::test]
async fn login_wrong_password_401_right_password_cookie_and_429_after_failures() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let http = app.http();
    let login = |user: &str, pw: &str| {
        http.post(format!("{}/api/login", app.base))
            .json(&json!({"username": user, "password": pw}))
            .send()
    };
    let resp = login("alice", "wrong password").await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_credentials");
    assert_eq!(login("nobody", "whatever").await.unwrap().status(), 401);

    let alice = app.login("alice").await;
    assert!(
        alice.raw_set_cookie.contains("HttpOnly"),
        "{}",
        alice.raw_set_cookie
    );
    assert!(
        alice.raw_set_cookie.contains("SameSite=Strict"),
        "{}",
        alice.raw_set_cookie
    );
    let me: Value = alice.get("/api/me").json_body().await;
    assert_eq!(me["username"], "alice");

    // Without the cookie: 401 on every protected route.
    for path in ["/api/me", "/api/sessions"] {
        let resp = http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{path}");
    }
    // Health needs no login.
    let resp = http
        .get(format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Repeated failures for bob: 429 even with the right password.
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(login("bob", "guess").await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..4], &[401, 401, 401, 401]);
    assert!(statuses[4..].contains(&429), "{statuses:?}");
    let resp = login("bob", PASSWORD).await.unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().get("retry-after").is_some());

    // Logout revokes the login server-side.
    assert_eq!(
        alice.post("/api/logout").send().await.unwrap().status(),
        204
    );
    assert_eq!(alice.get("/api/me").send().await.unwrap().status(), 401);
    app.stop().await;
}

#[actix_rt::test]
async fn websocket_without_a_valid_cookie_is_refused() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    assert_eq!(ws_refused_status(&app.ws_base, None).await, 401);
    assert_eq!(
        ws_refused_status(&app.ws_base, Some("ironclaw_login=forged")).await,
        401
    );
    app.stop().await;
}

/// A message streams deltas that add up to the final message, then
/// `turn_done`, and the stored history holds the whole exchange.
async fn streams_a_reply(kind: ProviderKind) {
    let llm = FakeLlm::start().await;
    let app = app(&llm, kind).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    assert_eq!(ws.session["user"], "alice");
    assert_eq!(ws.session["provider"], kind.as_str());
    let reply = "Hello! Grüße aus dem Käfig 🦀, here is a longer answer to stream.";
    llm.push(Reply::text(reply).split(Split::Bytes(3)));
    ws.say("hi there").await;
    let events = ws.turn().await;
    let echo = &of_type(&events, "user_message")[0];
    assert_eq!(echo["text"], "hi there");
    let deltas = of_type(&events, "assistant_delta");
    assert!(
        deltas.len() > 3,
        "streamed in several deltas: {}",
        deltas.len()
    );
    assert_eq!(delta_text(&events), reply);
    let message = &of_type(&events, "assistant_message")[0];
    assert_eq!(message["text"], reply);
    let done = events.last().unwrap();
    assert_eq!(done["reason"], "completed");
    assert_eq!(done["turn_id"], echo["turn_id"]);
    // The model got the system prompt and the user's message.
    let chats = llm.chat_requests();
    let messages = chats[0].body["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().unwrap()["content"], "hi there");
    assert_eq!(chats[0].body["stream"], true);

    // Reconnect: history has the exchange, without deltas.
    let ws2 = alice.connect(Some(&ws.session_id())).await;
    let kinds: Vec<&str> = ws2
        .history_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_string())
        .collect::<Vec<_>>()
        .iter()
        .map(|s| match s.as_str() {
            "user_message" => "user_message",
            "assistant_message" => "assistant_message",
            "turn_done" => "turn_done",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds, ["user_message", "assistant_message", "turn_done"]);
    assert_eq!(ws2.history_events()[1]["text"], reply);
    app.stop().await;
}

#[actix_rt::test]
async fn ollama_reply_streams_and_adds_up() {
    streams_a_reply(ProviderKind::Ollama).await;
}

#[actix_rt::test]
async fn openai_reply_streams_and_adds_up() {
    streams_a_reply(ProviderKind::Openai).await;
}

#[actix_rt::test]
async fn history_survives_a_server_restart() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Openai).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    let session = ws.session_id();
    llm.push(Reply::text("first answer"));
    ws.say("first question").await;
    ws.turn().await;
    drop(ws);
    let (dir, temp) = app.stop().await;

    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .data_dir(&dir)
        .start()
        .await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    assert_eq!(ws.session_id(), session, "reopens the most recent session");
    let texts: Vec<String> = ws
        .history_events()
        .iter()
        .filter_map(|e| e["text"].as_str().map(str::to_string))
        .collect();
    assert_eq!(texts, ["first question", "first answer"]);
    // The conversation goes on with the old context.
    llm.push(Reply::text("second answer"));
    ws.say("second question").await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "assistant_message")[0]["text"],
        "second answer"
    );
    let last = llm.chat_requests().last().unwrap().body.clone();
    let contents: Vec<&str> = last["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert!(contents.contains(&"first question") && contents.contains(&"first answer"));
    app.stop().await;
    drop(temp);
}

#[actix_rt::test]
async fn users_cannot_see_open_or_delete_each_others_sessions() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let bob = app.login("bob").await;
    let id = alice.new_session().await;

    let listed: Vec<Value> = bob.get("/api/sessions").json_body().await;
    assert!(listed.is_empty());
    assert_eq!(status(bob.get(&format!("/api/sessions/{id}"))).await, 404);
    assert_eq!(
        status(
            bob.patch(&format!("/api/sessions/{id}"))
                .json(&json!({"title": "mine"}))
        )
        .await,
        404
    );
    assert_eq!(
        status(bob.delete(&format!("/api/sessions/{id}"))).await,
        404
    );
    // The same answer as for a session that never existed.
    let unknown = bob
        .get("/api/sessions/00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    // WebSocket on alice's session as bob: refused like an unknown one.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("{}/ws?session={id}", app.ws_base),
    )
    .unwrap();
    req.headers_mut()
        .insert("cookie", bob.cookie.parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 404),
        other => panic!("bob opened alice's session: {:?}", other.map(|_| ())),
    }
    // Alice still has it, and can delete it.
    assert_eq!(status(alice.get(&format!("/api/sessions/{id}"))).await, 200);
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}"))).await,
        204
    );
    assert_eq!(status(alice.get(&format!("/api/sessions/{id}"))).await, 404);
    app.stop().await;
}

#[actix_rt::test]
async fn sessions_list_newest_first_and_take_their_title_from_the_first_message() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let first = alice.new_session().await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = alice.new_session().await;
    let listed: Vec<Value> = alice.get("/api/sessions").json_body().await;
    let ids: Vec<&str> = listed.iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);

    let mut ws = alice.connect(Some(&first)).await;
    llm.push(Reply::text("ok"));
    ws.say("Plot the sales data by region").await;
    ws.turn().await;
    let listed: Vec<Value> = alice.get("/api/sessions").json_body().await;
    assert_eq!(
        listed[0]["id"], first,
        "activity moves a session to the top"
    );
    assert_eq!(listed[0]["title"], "Plot the sales data by region");
    let detail: Value = alice
        .get(&format!("/api/sessions/{first}"))
        .json_body()
        .await;
    assert_eq!(detail["events"].as_array().unwrap().len(), 3);
    app.stop().await;
}

#[actix_rt::test]
async fn provider_unreachable_is_a_clear_error_and_the_next_message_works_once_it_is_back() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.set_offline(true);
    ws.say("are you there?").await;
    let events = ws.turn().await;
    let error = &of_type(&events, "error")[0];
    assert_eq!(error["code"], "provider_unreachable");
    let msg = error["message"].as_str().unwrap();
    assert!(
        msg.contains(&llm.base_url) && msg.contains("ollama serve"),
        "{msg}"
    );
    let log = &of_type(&events, "log")[0];
    assert_eq!(log["source"], "provider");
    assert_eq!(events.last().unwrap()["reason"], "error");
    // Health says so too (the details need a login).
    let health: Value = alice.get("/api/health").json_body().await;
    assert_eq!(health["provider"]["reachable"], false);

    llm.set_offline(false);
    llm.push(Reply::text("back again"));
    ws.say("now?").await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "assistant_message")[0]["text"],
        "back again"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn missing_model_says_how_to_pull_it() {
    let llm = FakeLlm::start().await;
    llm.set_models(&["qwen2.5:7b"]);
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let health: Value = alice.get("/api/health").json_body().await;
    assert_eq!(health["provider"]["reachable"], true);
    assert_eq!(health["provider"]["model_available"], false);
    let mut ws = alice.connect(None).await;
    ws.say("hello").await;
    let events = ws.turn().await;
    let error = &of_type(&events, "error")[0];
    assert_eq!(error["code"], "model_not_found", "{events:#?}");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("ollama pull llama3.2"));
    // The model appears: the next message works.
    llm.set_models(&["llama3.2:latest"]);
    llm.push(Reply::text("pulled"));
    ws.say("again").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "assistant_message")[0]["text"], "pulled");
    let health: Value = alice.get("/api/health").json_body().await;
    assert_eq!(health["provider"]["model"], "llama3.2:latest");
    assert_eq!(health["provider"]["model_available"], true);
    app.stop().await;
}

async fn cut_stream_keeps_partial_text(kind: ProviderKind) {
    let llm = FakeLlm::start().await;
    let app = app(&llm, kind).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.push(
        Reply::text("The first half of an answer")
            .then_text(" and the second half")
            .fault(Fault::CutAfter(1)),
    );
    ws.say("tell me").await;
    let events = ws.turn().await;
    let partial = delta_text(&events);
    assert!(partial.starts_with("The first"), "{partial:?}");
    let kept = &of_type(&events, "assistant_message")[0];
    assert_eq!(kept["text"], partial.as_str(), "the partial text is kept");
    assert_eq!(of_type(&events, "error")[0]["code"], "provider_stream_cut");
    assert_eq!(events.last().unwrap()["reason"], "error");
    // It is stored, and the next message works.
    let ws2 = alice.connect(Some(&ws.session_id())).await;
    assert!(ws2
        .history_events()
        .iter()
        .any(|e| e["type"] == "assistant_message" && e["text"] == partial.as_str()));
    llm.push(Reply::text("whole answer"));
    ws.say("again").await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "assistant_message")[0]["text"],
        "whole answer"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn ollama_stream_cut_midway_keeps_the_partial_text() {
    cut_stream_keeps_partial_text(ProviderKind::Ollama).await;
}

#[actix_rt::test]
async fn openai_stream_cut_midway_keeps_the_partial_text() {
    cut_stream_keeps_partial_text(ProviderKind::Openai).await;
}

#[actix_rt::test]
async fn mid_stream_error_is_reported_and_transient_429_is_retried() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Openai).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.push(
        Reply::text("partial answer here").fault(Fault::ErrorAfter(1, "upstream exploded".into())),
    );
    ws.say("one").await;
    let events = ws.turn().await;
    let error = &of_type(&events, "error")[0];
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("upstream exploded"),
        "{error}"
    );
    assert_eq!(events.last().unwrap()["reason"], "error");

    llm.push(Reply::status(429).retry_after(1));
    llm.push(Reply::text("after the retry"));
    ws.say("two").await;
    let events = ws.turn().await;
    assert!(of_type(&events, "error").is_empty(), "{events:#?}");
    assert_eq!(
        of_type(&events, "assistant_message")[0]["text"],
        "after the retry"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn cancel_ends_the_turn_at_once_and_closes_the_stream() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.push(
        Reply::text("I will think about this for a very long time").fault(Fault::HangAfter(1)),
    );
    ws.say("think").await;
    ws.until("assistant_delta").await;
    ws.send(json!({"type": "cancel"})).await;
    let events = ws.turn().await;
    assert_eq!(events.last().unwrap()["reason"], "cancelled");
    llm.wait_for_client_aborts(1).await;
    // The next message works.
    llm.push(Reply::text("fresh"));
    ws.say("again").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "assistant_message")[0]["text"], "fresh");
    app.stop().await;
}

#[actix_rt::test]
async fn bad_frames_answer_error_and_keep_the_socket_open_but_an_oversized_one_closes_it() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Ollama, &llm.base_url)
        .settings(|s| s.server.max_frame_bytes = 64 * 1024)
        .start()
        .await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;

    ws.send_raw("{not json".into()).await;
    assert_eq!(ws.until("error").await["code"], "malformed_json");
    ws.send(json!({"type": "launch_missiles"})).await;
    assert_eq!(ws.until("error").await["code"], "unknown_type");
    ws.send(json!({"type": "user_message"})).await;
    assert_eq!(ws.until("error").await["code"], "malformed_message");

    // Still open and working; unknown fields are ignored.
    llm.push(Reply::text("still here"));
    ws.send(json!({"type": "user_message", "text": "ping", "extra": [1, 2]}))
        .await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "assistant_message")[0]["text"],
        "still here"
    );

    // A frame over server.max_frame_bytes is refused by the codec from its
    // header (nothing that size is buffered): an error, then close 1009.
    ws.send(json!({"type": "user_message", "text": "x".repeat(100 * 1024)}))
        .await;
    let err = ws.until("error").await;
    assert_eq!(err["code"], "message_too_large");
    assert!(err["message"].as_str().unwrap().contains("65536"));
    assert!(ws.closed_within(Duration::from_secs(5)).await);
    app.stop().await;
}

#[actix_rt::test]
async fn two_tabs_on_one_session_both_see_the_turn_and_messages_queue() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Openai).await;
    let alice = app.login("alice").await;
    let mut a = alice.connect(None).await;
    let mut b = alice.connect(Some(&a.session_id())).await;
    llm.push(Reply::text("first reply").event_delay_ms(20));
    llm.push(Reply::text("second reply"));
    a.say("one").await;
    a.say("two").await; // queued behind the first turn
    let a1 = a.turn().await;
    let a2 = a.turn().await;
    let b1 = b.turn().await;
    let b2 = b.turn().await;
    for (events, want) in [
        (&a1, "first reply"),
        (&a2, "second reply"),
        (&b1, "first reply"),
        (&b2, "second reply"),
    ] {
        assert_eq!(of_type(events, "assistant_message")[0]["text"], want);
        assert_eq!(delta_text(events), want);
    }
    assert_eq!(of_type(&b2, "user_message")[0]["text"], "two");
    app.stop().await;
}

#[actix_rt::test]
async fn a_failed_agent_is_restarted_and_the_session_continues() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let mut ws = alice.connect(None).await;
    llm.push(Reply::text("before"));
    ws.say("remember this").await;
    ws.turn().await;

    let agent = app
        .supervisor
        .send(ironclaw::supervisor::Live {
            session_id: ws.session_id().into(),
        })
        .await
        .unwrap()
        .expect("live agent");
    agent.do_send(ironclaw::agent::InjectFailure);
    // The attached socket is brought up to date from the database.
    let history = ws.until("history").await;
    assert_eq!(history["events"].as_array().unwrap().len(), 3);
    llm.push(Reply::text("after"));
    ws.say("still there?").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "assistant_message")[0]["text"], "after");
    let last = llm.chat_requests().last().unwrap().body.clone();
    assert!(
        last["messages"].to_string().contains("remember this"),
        "context reloaded"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn static_page_is_served_with_a_strict_csp_and_index_needs_login() {
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let http = app.http();
    let resp = http.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/login");
    let resp = http
        .get(format!("{}/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"].to_str().unwrap();
    let scripts = format!("script-src {}/static/;", app.base);
    assert!(csp.contains(&scripts), "{csp}");
    let alice = app.login("alice").await;
    let resp = alice.get("/").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("composer"));
    app.stop().await;
}

/// Stands in for a browser tab that stopped reading: its first frame
/// blocks its thread, so its bounded queue fills.
struct StuckTab;

impl actix::Actor for StuckTab {
    type Context = actix::Context<Self>;
}

impl actix::Handler<ironclaw::ws::Outbound> for StuckTab {
    type Result = ();
    fn handle(&mut self, _: ironclaw::ws::Outbound, _: &mut actix::Context<Self>) {
        std::thread::sleep(std::time::Duration::from_secs(5));
    }
}

/// Records what the session tells a tab's control channel.
struct Control(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl actix::Actor for Control {
    type Context = actix::Context<Self>;
}

impl actix::Handler<ironclaw::ws::Disconnect> for Control {
    type Result = ();
    fn handle(&mut self, msg: ironclaw::ws::Disconnect, _: &mut actix::Context<Self>) {
        self.0.lock().unwrap().push(msg.code.to_string());
    }
}

#[actix_rt::test]
async fn a_tab_that_stops_reading_is_dropped_instead_of_buffered_for() {
    use actix::Actor;
    let llm = FakeLlm::start().await;
    let app = app(&llm, ProviderKind::Ollama).await;
    let alice = app.login("alice").await;
    let mut reader = alice.connect(None).await;
    let id = reader.session_id();
    let agent = app
        .supervisor
        .send(ironclaw::supervisor::Live {
            session_id: id.clone().into(),
        })
        .await
        .unwrap()
        .expect("live agent");
    // A tab whose queue holds 4 frames and which never drains it.
    let arbiter = actix::Arbiter::new();
    let stuck = StuckTab::start_in_arbiter(&arbiter.handle(), |ctx| {
        ctx.set_mailbox_capacity(4);
        StuckTab
    });
    let told = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let control = Control(told.clone()).start();
    agent.do_send(ironclaw::agent::Attach {
        socket_id: u64::MAX,
        username: "alice".into(),
        outbound: stuck.recipient(),
        control: control.recipient(),
    });
    // Many events: every rename is a `session` frame to each tab.
    for i in 0..20 {
        let resp = alice
            .patch(&format!("/api/sessions/{id}"))
            .json(&json!({ "title": format!("title {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    // The healthy tab got every one of them.
    for i in 0..20 {
        let frame = reader.until("session").await;
        assert_eq!(frame["title"], format!("title {i}"));
    }
    // The stuck one was dropped and told why, once.
    assert_eq!(*told.lock().unwrap(), ["slow_client"]);
    // And the session carries on.
    llm.push(Reply::text("still fine"));
    reader.say("hello").await;
    let events = reader.turn().await;
    assert_eq!(
        of_type(&events, "assistant_message")[0]["text"],
        "still fine"
    );
    arbiter.stop();
    app.stop().await;
}
