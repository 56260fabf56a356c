//! Keeping strangers out (issue 10): cross-site sockets and writes, login
//! floods, what health and errors reveal, and the per-user caps. Each test
//! failed against the server before these guarantees.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;
use ironclaw::config::ProviderKind;

/// The HTTP status of a WebSocket upgrade with `headers` (101 if opened).
async fn ws_status(ws_base: &str, headers: &[(&str, String)]) -> u16 {
    let mut req = format!("{ws_base}/ws")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        req.headers_mut().insert(
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected websocket error: {e}"),
        Ok(_) => 101,
    }
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    (
        status,
        body["error"]["code"].as_str().unwrap_or("").to_string(),
    )
}

#[actix_rt::test]
async fn sockets_and_writes_from_another_origin_are_refused_with_403() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;
    let cookie = ("cookie", alice.cookie.clone());
    let own = app.base.clone();
    // Another port on the same loopback address: same site, other origin.
    let other_port = "http://127.0.0.1:1".to_string();
    for (origin, want) in [
        (other_port.as_str(), 403),
        ("http://evil.example", 403),
        ("null", 403),
        (own.as_str(), 101),
    ] {
        let status = ws_status(&app.ws_base, &[cookie.clone(), ("origin", origin.into())]).await;
        assert_eq!(status, want, "socket with Origin {origin}");
    }
    // No Origin: a non-browser client (the CLI, scripts).
    assert_eq!(
        ws_status(&app.ws_base, std::slice::from_ref(&cookie)).await,
        101
    );
    // A DNS-rebound name is not this server, whatever the Origin says.
    let port = own.rsplit(':').next().unwrap();
    let rebound = format!("evil.example:{port}");
    let rebound_status = ws_status(
        &app.ws_base,
        &[
            cookie.clone(),
            ("host", rebound.clone()),
            ("origin", format!("http://{rebound}")),
        ],
    )
    .await;
    assert_eq!(rebound_status, 403);

    // REST writes: refused with the error body; reads are not affected.
    for origin in [other_port.as_str(), "http://evil.example", "null"] {
        let resp = alice
            .post("/api/sessions")
            .header("origin", origin)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(resp).await,
            (403, "origin_refused".to_string()),
            "{origin}"
        );
    }
    let id = alice.new_session().await;
    let resp = alice
        .delete(&format!("/api/sessions/{id}"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = alice
        .post("/api/sessions")
        .header("origin", own.as_str())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "the page's own origin");
    let read = status(
        alice
            .get("/api/sessions")
            .header("origin", "http://evil.example"),
    )
    .await;
    assert_eq!(read, 200, "reads are not state-changing");
    app.stop().await;
}

#[actix_rt::test]
async fn state_changing_bodies_must_be_json_or_multipart() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;
    for content_type in [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
    ] {
        let resp = alice
            .post("/api/sessions")
            .header("content-type", content_type)
            .body(r#"{"title":"cross-site"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(
            error_code(resp).await,
            (415, "unsupported_media_type".to_string()),
            "{content_type}"
        );
    }
    let list: Value = alice.get("/api/sessions").json_body().await;
    assert_eq!(list.as_array().unwrap().len(), 0, "nothing was created");
    // A body-less POST and a JSON one still work.
    assert_eq!(status(alice.post("/api/sessions")).await, 201);
    alice.new_session().await;
    app.stop().await;
}

#[actix_rt::test]
async fn parallel_wrong_passwords_are_counted_before_hashing() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let max = 5; // server.login_max_failures default
    let attempts = (0..40).map(|i| {
        let http = app.http();
        let url = format!("{}/api/login", app.base);
        async move {
            http.post(url)
                .json(&json!({"username": "alice", "password": format!("wrong {i}")}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    let checked = statuses.iter().filter(|s| **s == 401).count();
    assert!(
        checked <= max,
        "{checked} wrong passwords were checked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| [401, 429, 503].contains(s)),
        "{statuses:?}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_flood_of_logins_waits_for_a_few_hashing_slots() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .settings(|s| s.server.login_max_failures = 10_000)
        .start()
        .await;
    let attempts = (0..60).map(|i| {
        let http = app.http();
        let url = format!("{}/api/login", app.base);
        async move {
            let resp = http
                .post(url)
                .json(&json!({"username": format!("nobody{i}"), "password": "whatever"}))
                .send()
                .await
                .unwrap();
            let retry = resp.headers().get("retry-after").is_some();
            let (status, code) = error_code(resp).await;
            (status, code, retry)
        }
    });
    let answers = futures_util::future::join_all(attempts).await;
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        !busy.is_empty(),
        "no attempt waited for a slot: {answers:?}"
    );
    assert!(busy.iter().all(|a| a.1 == "login_busy" && a.2), "{busy:?}");
    assert!(
        answers.iter().all(|a| a.0 == 401 || a.0 == 503),
        "{answers:?}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn someone_hammering_a_name_does_not_lock_its_owner_out() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    // Alice logs in from her usual address.
    app.login("alice").await;
    // Someone else guesses her password from another address.
    let stranger = app.http_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let resp = stranger
            .post(format!("{}/api/login", app.base))
            .json(&json!({"username": "alice", "password": "guess"}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert!(
        statuses.contains(&429),
        "the stranger is stopped: {statuses:?}"
    );
    // Alice, from her usual address, still gets in.
    let alice = app.login("alice").await;
    assert_eq!(status(alice.get("/api/me")).await, 200);
    app.stop().await;
}

#[actix_rt::test]
async fn oversized_credentials_are_refused_before_anything_else() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let huge = "u".repeat(900 * 1024);
    let resp = app
        .http()
        .post(format!("{}/api/login", app.base))
        .json(&json!({"username": huge, "password": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await, (413, "too_large".to_string()));
    for (user, password) in [
        ("u".repeat(65), "x".to_string()),
        ("alice".into(), "p".repeat(1025)),
    ] {
        let resp = app
            .http()
            .post(format!("{}/api/login", app.base))
            .json(&json!({"username": user, "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(error_code(resp).await, (400, "bad_request".to_string()));
    }
    app.stop().await;
}

#[actix_rt::test]
async fn health_without_a_login_is_status_only_and_asks_nobody() {
    let llm = FakeLlm::start().await;
    let with_credentials = llm
        .base_url
        .replace("http://", "http://ironclaw:hunter2-secret@");
    let app = TestApp::builder(ProviderKind::Openai, &with_credentials)
        .start()
        .await;
    llm.clear_requests();
    let health: Value = app
        .http()
        .get(format!("{}/api/health", app.base))
        .json_body()
        .await;
    assert_eq!(health, json!({"status": "ok"}));
    assert!(llm.requests().is_empty(), "{:?}", llm.requests());

    let alice = app.login("alice").await;
    let text = alice
        .get("/api/health")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let details: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(details["provider"]["reachable"], true, "{details}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("***@127.0.0.1"), "{text}");
    app.stop().await;
}

#[actix_rt::test]
async fn per_user_session_and_socket_limits() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .settings(|s| {
            s.limits.sessions = 2;
            s.limits.sockets = 2;
        })
        .start()
        .await;
    let alice = app.login("alice").await;
    let first = alice.new_session().await;
    alice.new_session().await;
    let resp = alice
        .post("/api/sessions")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (code, name) = error_code(resp).await;
    assert_eq!((code, name.as_str()), (429, "limit_reached"));
    // Bob has his own allowance.
    app.login("bob").await.new_session().await;

    let a = alice.connect(Some(&first)).await;
    let _b = alice.connect(Some(&first)).await;
    let cookie = ("cookie", alice.cookie.clone());
    assert_eq!(
        ws_status(&app.ws_base, std::slice::from_ref(&cookie)).await,
        429
    );
    // Closing one frees its place.
    drop(a);
    let mut opened = false;
    for _ in 0..50 {
        if ws_status(&app.ws_base, std::slice::from_ref(&cookie)).await == 101 {
            opened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(opened, "a closed socket gives its place back");
    app.stop().await;
}

#[actix_rt::test]
async fn messages_queued_behind_a_pending_approval_are_bounded() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "always").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool("shell", json!({"command": "ls"})));
    ws.say("list the files").await;
    ws.until("approval_request").await;
    let max = ironclaw::agent::turn::MAX_QUEUED_MESSAGES;
    for i in 0..=max {
        ws.say(&format!("queued {i}")).await;
    }
    let err = ws.until("error").await;
    assert_eq!(err["code"], "queue_full", "{err}");
    assert!(err["message"].as_str().unwrap().contains(&max.to_string()));
    app.stop().await;
}

#[actix_rt::test]
async fn history_is_the_latest_events_and_older_ones_page_in_over_rest() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |s| s.server.history_events = 4).await;
    let mut ws = alice.connect(Some(&id)).await;
    for i in 0..3 {
        llm.push(Reply::text(format!("reply {i}")));
        ws.say(&format!("message {i}")).await;
        ws.turn().await;
    }
    drop(ws);
    let detail: Value = alice.get(&format!("/api/sessions/{id}")).json_body().await;
    let all = detail["events"].as_array().unwrap().clone();
    assert!(all.len() > 4, "{all:?}");

    let ws = alice.connect(Some(&id)).await;
    let history = ws.history.clone();
    let latest = ws.history_events();
    assert_eq!(latest.len(), 4, "{history}");
    assert_eq!(history["more"], true);
    assert_eq!(latest[..], all[all.len() - 4..]);

    let before = history["before"].as_i64().unwrap();
    let page: Value = alice
        .get(&format!(
            "/api/sessions/{id}/events?before={before}&limit=100"
        ))
        .json_body()
        .await;
    assert_eq!(page["more"], false, "{page}");
    let older = page["events"].as_array().unwrap();
    assert_eq!(older[..], all[..all.len() - 4]);
    // Another user's session pages like an unknown one.
    let bob = app.login("bob").await;
    assert_eq!(
        status(bob.get(&format!("/api/sessions/{id}/events"))).await,
        404
    );
    app.stop().await;
}

#[actix_rt::test]
async fn titles_are_short_and_models_are_ones_the_provider_offers_or_allowed() {
    let llm = FakeLlm::start().await;
    llm.set_models(&["llama3.2:latest", "qwen2.5:7b"]);
    let (app, alice, id) = alice_with_session(&llm.base_url, |s| {
        s.provider.models = vec!["gateway-alias".into()];
    })
    .await;
    let long = "t".repeat(201);
    let resp = alice
        .post("/api/sessions")
        .json(&json!({ "title": long }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await.0, 400);
    let resp = alice
        .patch(&format!("/api/sessions/{id}"))
        .json(&json!({ "title": long }))
        .send()
        .await
        .unwrap();
    assert_eq!(error_code(resp).await.0, 400);
    let ok = "t".repeat(200);
    assert_eq!(
        status(
            alice
                .patch(&format!("/api/sessions/{id}"))
                .json(&json!({ "title": ok }))
        )
        .await,
        200
    );

    let resp = alice
        .patch(&format!("/api/sessions/{id}"))
        .json(&json!({ "model": "made-up-model" }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_code(resp).await,
        (400, "model_not_allowed".to_string())
    );
    for model in ["qwen2.5:7b", "gateway-alias"] {
        let answer = status(
            alice
                .patch(&format!("/api/sessions/{id}"))
                .json(&json!({ "model": model })),
        )
        .await;
        assert_eq!(answer, 200, "{model}");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn the_first_start_admin_takes_the_configured_approval_mode() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .no_users()
        .settings(|s| s.approval.mode = ironclaw::protocol::ApprovalMode::Always)
        .start()
        .await;
    let mut conn = ironclaw::db::connect(&app.database).unwrap();
    let admin = ironclaw::db::queries::find_user(&mut conn, "admin")
        .unwrap()
        .expect("admin was created");
    assert_eq!(
        admin.default_mode(),
        ironclaw::protocol::ApprovalMode::Always
    );
    app.stop().await;
}

/// A tmpfs mounted for one test and unmounted when dropped.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> Option<SmallDisk> {
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| SmallDisk(dir.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[actix_rt::test]
async fn an_upload_to_a_full_disk_answers_507_disk_full() {
    let llm = FakeLlm::start().await;
    let temp = tempfile::tempdir().unwrap();
    let data = temp.path().join("small");
    let Some(_disk) = SmallDisk::mount(&data, "3m") else {
        panic!("this test mounts a tmpfs and needs root (CAP_SYS_ADMIN)");
    };
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .data_dir(&data)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/big.bin"))
        .body(vec![0u8; 6 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(code, 507, "{body}");
    assert_eq!(body["error"]["code"], "disk_full", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk is full"),
        "{body}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn errors_sent_to_the_page_name_no_host_path() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    // The session's workspace cannot be made: a file stands in its place.
    let workspace = app.data_dir.join("workspaces").join(&id);
    let _ = std::fs::remove_dir_all(&workspace);
    std::fs::write(&workspace, b"in the way").unwrap();
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool("shell", json!({"command": "ls"})));
    llm.push(Reply::text("done"));
    ws.say("list").await;
    let events = ws.turn().await;
    let text = serde_json::to_string(&events).unwrap();
    let host_path = app.data_dir.display().to_string();
    assert!(text.contains("workspace"), "{text}");
    assert!(
        !text.contains(&host_path),
        "a host path reached the page: {text}"
    );
    let requests = serde_json::to_string(
        &llm.chat_requests()
            .iter()
            .map(|r| r.body.clone())
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(
        !requests.contains(&host_path),
        "a host path reached the model: {requests}"
    );
    app.stop().await;
}

/// Whether the container of `session` is running, asked of Docker.
fn container_running(session: &str) -> bool {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-q",
            "--filter",
            &format!("label=ironclaw.session={session}"),
            "--filter",
            "status=running",
        ])
        .output()
        .expect("docker ps");
    !String::from_utf8_lossy(&out.stdout).trim().is_empty()
}

#[actix_rt::test]
async fn a_user_over_the_container_limit_stops_their_oldest_idle_container_first() {
    let llm = FakeLlm::start().await;
    let (app, alice, first) = alice_with_session(&llm.base_url, |s| s.limits.containers = 1).await;
    let second = alice.new_session().await;
    for id in [&first, &second] {
        alice.set_mode(id, "never").await;
    }
    let mut a = alice.connect(Some(&first)).await;
    let mut b = alice.connect(Some(&second)).await;

    llm.push(Reply::tool("shell", json!({"command": "true"})));
    llm.push(Reply::text("ran"));
    a.say("run true").await;
    assert_eq!(a.until("exec_done").await["exit_code"], 0);
    a.until("turn_done").await;
    assert!(container_running(&first));

    // The second session's first command: the first (idle) one stops.
    llm.push(Reply::tool("shell", json!({"command": "true"})));
    llm.push(Reply::text("ran"));
    b.say("run true").await;
    assert_eq!(b.until("exec_done").await["exit_code"], 0);
    b.until("turn_done").await;
    assert!(container_running(&second));
    assert!(!container_running(&first), "the idle container made room");

    // While a command runs in the first, the second cannot start again:
    // a clear error instead of a second container.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo started; sleep 4"}),
    ));
    a.say("sleep").await;
    let out = a.until("exec_output").await;
    assert!(out["data"].as_str().unwrap().contains("started"), "{out}");
    assert!(
        !container_running(&second),
        "the idle second one was stopped"
    );
    llm.push(Reply::tool("shell", json!({"command": "true"})));
    b.say("run true again").await;
    let events = b.turn().await;
    let errors = of_type(&events, "error");
    assert!(
        errors.iter().any(|e| e["code"] == "limit_reached"
            && e["message"].as_str().unwrap().contains("limits.containers")),
        "{events:#?}"
    );
    assert!(!container_running(&second));
    llm.push(Reply::text("slept"));
    assert_eq!(a.until("exec_done").await["exit_code"], 0);
    app.stop().await;
}
