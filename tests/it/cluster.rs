//! Two nodes on one database and one data dir (DESIGN.md §7): a session's
//! actors run on the node holding its lease; another node answers that the
//! session is served elsewhere while that node lives, and takes the
//! session over once the holder is SIGKILLed and its lease has run out,
//! with the history whole and the old container adopted. Node A is a real
//! `ironclaw serve` process (so it can be killed), node B the in-process
//! server. Runs on SQLite by default and on PostgreSQL under `make
//! test-postgres`.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

const LEASE_SECS: u64 = 2;

/// The first frame a socket to `session` on `ws_base` gets.
async fn first_frame(ws_base: &str, cookie: &str, session: &str) -> Value {
    let mut req = format!("{ws_base}/ws?session={session}")
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut stream, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("upgrade");
    loop {
        match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no first frame: {other:?}"),
        }
    }
}

fn container_id(name: &str) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(["inspect", "--format", "{{.Id}}", name])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[actix_rt::test]
async fn a_session_runs_on_one_node_and_another_takes_it_over_when_that_node_dies() {
    let llm = FakeLlm::start().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    // Node B first: it migrates the database and seeds the users.
    let b = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .data_dir(&data)
        .settings(|s| {
            s.cluster.node_id = "node-b".into();
            s.cluster.lease_secs = LEASE_SECS;
        })
        .start()
        .await;
    let database_url = match &b.database {
        ironclaw::db::Database::Postgres(url) => url.clone(),
        ironclaw::db::Database::Sqlite(path) => format!("sqlite://{}", path.display()),
    };
    let lease = LEASE_SECS.to_string();
    let (mut a, a_url, _, _) = crate::cli::serve_with(
        root.path(),
        &[
            ("IRONCLAW_DATABASE__URL", &database_url),
            ("IRONCLAW_CLUSTER__NODE_ID", "node-a"),
            ("IRONCLAW_CLUSTER__LEASE_SECS", &lease),
            ("IRONCLAW_PROVIDER__KIND", "openai"),
            ("IRONCLAW_PROVIDER__BASE_URL", &llm.base_url),
        ],
    );
    let a_base = a_url.trim_end_matches('/').to_string();
    let a_ws = a_base.replacen("http://", "ws://", 1);

    // alice logs in through B and works through A: one database.
    let alice = b.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    let mut on_a = {
        let mut via_a = alice.clone();
        via_a.base = a_base.clone();
        via_a.ws_base = a_ws.clone();
        let health: Value = via_a
            .get("/api/health")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["node_id"], "node-a");
        via_a.connect(Some(&id)).await
    };
    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo before > before.txt; echo ran-on-a"}),
    ));
    llm.push(Reply::text("Done on A."));
    on_a.say("first").await;
    let events = on_a.turn().await;
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "exec_output" && e["data"] == "ran-on-a\n"),
        "{events:#?}"
    );
    let name = ironclaw::sandbox::container_name(&b.instance_id(), &id);
    let container = container_id(&name).expect("A's container runs");

    // While A lives, B does not run the session too: it says who does.
    let refused = first_frame(&b.ws_base, &alice.cookie, &id).await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("node-a"),
        "{refused}"
    );
    let health: Value = alice
        .get("/api/health")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["node_id"], "node-b");

    // A dies without a word. Once its lease has run out, B takes over.
    a.kill().unwrap();
    a.wait().unwrap();
    drop(on_a);
    let killed = Instant::now();
    let mut on_b = loop {
        let frame = first_frame(&b.ws_base, &alice.cookie, &id).await;
        if frame["type"] == "session" {
            break alice.connect(Some(&id)).await;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(LEASE_SECS * 10 + 30),
            "B never took the session over: {frame}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The history is whole, and the session goes on, in the old container.
    let history = on_b.history_events();
    assert!(
        history
            .iter()
            .any(|e| e["type"] == "assistant_message" && e["text"] == "Done on A."),
        "{history:#?}"
    );
    llm.push(Reply::tool(
        "shell",
        json!({"command": "cat before.txt; echo ran-on-b"}),
    ));
    llm.push(Reply::text("Done on B."));
    on_b.say("second").await;
    let events = on_b.turn().await;
    let out: String = events
        .iter()
        .filter(|e| e["type"] == "exec_output")
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(out, "before\nran-on-b\n", "{events:#?}");
    assert_eq!(
        container_id(&name).as_deref(),
        Some(container.as_str()),
        "not the old container"
    );

    // `ironclaw check` lists both nodes, A as not running.
    let check = crate::cli::ironclaw(root.path())
        .arg("check")
        .env("IRONCLAW_DATABASE__URL", &database_url)
        .env("IRONCLAW_CLUSTER__LEASE_SECS", &lease)
        .env("IRONCLAW_PROVIDER__BASE_URL", &llm.base_url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    let kind = if database_url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    assert!(text.contains(&format!("database: {kind}")), "{text}");
    assert!(text.contains("node node-b at"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("node node-a at") && l.contains("(not running)")),
        "{text}"
    );
    b.stop().await;
}
