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

/// Which node holds `session`'s lease now.
fn lease_holder(app: &TestApp, session: &str) -> Option<String> {
    use diesel::prelude::*;
    use ironclaw::db::schema::session_leases;
    let mut c = ironclaw::db::connect(&app.database).ok()?;
    session_leases::table
        .find(session)
        .select(session_leases::node_id)
        .first::<String>(&mut c)
        .ok()
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

    // While A lives, B does not run the session too. On PostgreSQL it
    // relays a socket to A; on SQLite (one node's database) it says who
    // runs the session.
    let relayed = matches!(b.database, ironclaw::db::Database::Postgres(_));
    let mut tab_b = None;
    if relayed {
        let mut via_b = alice.clone();
        via_b.base = b.base.clone();
        via_b.ws_base = b.ws_base.clone();
        let tab = via_b.connect(Some(&id)).await;
        assert!(
            tab.history_events()
                .iter()
                .any(|e| e["type"] == "assistant_message" && e["text"] == "Done on A."),
            "{:#?}",
            tab.history
        );
        tab_b = Some(tab);
    } else {
        let refused = first_frame(&b.ws_base, &alice.cookie, &id).await;
        assert_eq!(refused["type"], "error", "{refused}");
        assert!(
            refused["message"].as_str().unwrap().contains("node-a"),
            "{refused}"
        );
    }
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
    // A socket B relayed to A is told to reconnect once A's lease lapses.
    if let Some(mut tab) = tab_b {
        let bye = tab.until("error").await;
        assert!(
            bye["message"].as_str().unwrap().contains("reconnect"),
            "{bye}"
        );
        assert!(tab.closed_within(Duration::from_secs(10)).await);
    }
    let mut on_b = loop {
        let frame = first_frame(&b.ws_base, &alice.cookie, &id).await;
        // Relayed to A while its lease lasts: look at who holds it.
        let taken = !relayed || lease_holder(&b, &id).as_deref() == Some("node-b");
        if frame["type"] == "session" && taken {
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

/// A PostgreSQL server for a test that needs one whatever the suite runs
/// on: the suite's own under `make test-postgres`, else one started here
/// (tests/postgres.sh) and stopped when dropped.
struct Postgres {
    admin: String,
    folder: Option<String>,
}

impl Postgres {
    fn get() -> Postgres {
        if let Ok(admin) = std::env::var("IRONCLAW_TEST_POSTGRES") {
            return Postgres {
                admin,
                folder: None,
            };
        }
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/postgres.sh"))
            .arg("start")
            .output()
            .expect("tests/postgres.sh");
        assert!(
            out.status.success(),
            "PostgreSQL did not start (make test-deps installs it): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let folder = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let admin = std::fs::read_to_string(format!("{folder}/url"))
            .unwrap()
            .trim()
            .to_string();
        Postgres {
            admin,
            folder: Some(folder),
        }
    }

    /// A database of `dir`'s own on this server.
    fn database_for(&self, dir: &std::path::Path) -> String {
        // SAFETY of the environment: set only for this call's lookup.
        let name = {
            use sha2::Digest;
            let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
            format!("r_{}", hex::encode(&digest[..10]))
        };
        use diesel::{Connection, RunQueryDsl};
        let mut c = diesel::pg::PgConnection::establish(&self.admin).expect("admin connection");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut c)
            .expect("create database");
        let base = self.admin.rsplit_once('/').unwrap().0;
        format!("{base}/{name}")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(folder) = &self.folder {
            let _ = std::process::Command::new("bash")
                .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/postgres.sh"))
                .args(["stop", folder])
                .output();
        }
    }
}

/// Every event a socket reads until its turn's `turn_done`.
async fn until_done(ws: &mut Socket) -> Vec<Value> {
    let mut out = Vec::new();
    loop {
        let e = ws.next().await;
        let done = e["type"] == "turn_done";
        out.push(e);
        if done {
            return out;
        }
    }
}

#[actix_rt::test]
async fn tabs_on_two_nodes_see_the_same_events_in_the_same_order_deltas_included() {
    let pg = Postgres::get();
    let llm = FakeLlm::start().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let url = pg.database_for(&data);
    let node = |id: &'static str, url: String| {
        move |s: &mut ironclaw::config::Settings| {
            s.cluster.node_id = id.into();
            s.cluster.lease_secs = LEASE_SECS;
            s.database.url = url;
        }
    };
    let a = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .data_dir(&data)
        .settings(node("node-a", url.clone()))
        .start()
        .await;
    let b = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .data_dir(&data)
        .settings(node("node-b", url.clone()))
        .start()
        .await;
    let alice = a.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    // One tab on A (which takes the session), one on B (relayed to A).
    let mut tab_a = alice.connect(Some(&id)).await;
    let mut via_b = alice.clone();
    via_b.base = b.base.clone();
    via_b.ws_base = b.ws_base.clone();
    let mut tab_b = via_b.connect(Some(&id)).await;
    assert_eq!(tab_b.session["session_id"], id.as_str());

    // A turn asked from B: streamed slowly, with a command.
    llm.push(
        Reply::text("Counting now.")
            .then_tool(
                "shell",
                json!({"command": "for i in 1 2 3; do echo n$i; done; echo e >&2"}),
            )
            .event_delay_ms(20),
    );
    llm.push(Reply::text("Counted to three, one by one.").event_delay_ms(20));
    tab_b.say("count from the other node").await;
    let seen_b = until_done(&mut tab_b).await;
    let seen_a = until_done(&mut tab_a).await;
    assert_eq!(seen_a, seen_b, "the two tabs saw different events");
    let deltas = seen_b
        .iter()
        .filter(|e| e["type"] == "assistant_delta")
        .count();
    assert!(deltas > 5, "deltas were not relayed: {seen_b:#?}");
    let out: String = seen_b
        .iter()
        .filter(|e| e["type"] == "exec_output" && e["stream"] == "stdout")
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(out, "n1\nn2\nn3\n");
    let users: Vec<_> = seen_b
        .iter()
        .filter(|e| e["type"] == "user_message")
        .collect();
    assert_eq!(users.len(), 1, "an event twice: {seen_b:#?}");

    // And one asked from A reaches B the same way.
    llm.push(Reply::text("Back on the first node.").event_delay_ms(5));
    tab_a.say("and from here").await;
    let seen_a = until_done(&mut tab_a).await;
    let seen_b = until_done(&mut tab_b).await;
    assert_eq!(seen_a, seen_b);
    // A big event (history of a new tab on B) comes through in pieces.
    let big = "x".repeat(30_000);
    llm.push(Reply::text(big.clone()));
    tab_a.say("say a lot").await;
    until_done(&mut tab_a).await;
    until_done(&mut tab_b).await;
    let late = via_b.connect(Some(&id)).await;
    assert!(
        late.history_events()
            .iter()
            .any(|e| e["type"] == "assistant_message" && e["text"] == big.as_str()),
        "the history through the relay lost the big reply"
    );
    drop((tab_a, tab_b, late));
    b.stop().await;
    a.stop().await;
}
