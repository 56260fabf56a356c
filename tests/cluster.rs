//! Two nodes on one database and one data dir (DESIGN.md §7): a session's
//! actors run on the node holding its lease; another node answers that the
//! session is served elsewhere while that node lives, and takes the
//! session over once the holder is SIGKILLed and its lease has run out,
//! with the history whole and the old container adopted. Node A is a real
//! `ironclaw serve` process (so it can be killed), node B the in-process
//! server. Runs on SQLite by default and on PostgreSQL under `make
//! test-postgres`.
//!
//! Its own test binary, run after the main suite and one test at a time:
//! the forty-people test loads the machine (two nodes, forty sandboxes,
//! PostgreSQL, HAProxy) and would starve the suite's browser tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "it/fake_llm.rs"]
mod fake_llm;
#[path = "it/support.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

const LEASE_SECS: u64 = 2;

/// Kills these server processes when dropped, so a failing test leaves no
/// node running behind it.
struct Reap(Vec<u32>);

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in &self.0 {
            // SAFETY: signals a child process this test started.
            unsafe {
                libc::kill(*pid as i32, libc::SIGKILL);
            }
        }
    }
}

/// This binary's tests take turns (see the module docs).
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

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
    let _turn = one_at_a_time().await;
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
    let (mut a, a_url, _, _) = serve_with(
        root.path(),
        &[
            ("IRONCLAW_DATABASE__URL", &database_url),
            ("IRONCLAW_CLUSTER__NODE_ID", "node-a"),
            ("IRONCLAW_CLUSTER__LEASE_SECS", &lease),
            ("IRONCLAW_PROVIDER__KIND", "openai"),
            ("IRONCLAW_PROVIDER__BASE_URL", &llm.base_url),
        ],
    );
    let _reap = Reap(vec![a.id()]);
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
        let health: Value = via_a.get("/api/health").json_body().await;
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
        let tab = alice.via(&b).connect(Some(&id)).await;
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
    let health: Value = alice.get("/api/health").json_body().await;
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
    let check = ironclaw(root.path())
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
    let _turn = one_at_a_time().await;
    let pg = Postgres::get();
    let llm = FakeLlm::start().await;
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let url = pg.database_for(&data);
    let (a, b) = two_nodes(&llm.base_url, &data, &url, |s| {
        s.cluster.lease_secs = LEASE_SECS
    })
    .await;
    let alice = a.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    // One tab on A (which takes the session), one on B (relayed to A).
    let mut tab_a = alice.connect(Some(&id)).await;
    let via_b = alice.via(&b);
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

// ------------------------------------------------------------ behind HAProxy

/// The README's HAProxy config (the block after its `haproxy.cfg` marker),
/// with the README's ports replaced by this run's.
fn haproxy_config(front: u16, a: u16, b: u16) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let at = readme
        .find("<!-- haproxy.cfg")
        .expect("the README has its HAProxy config");
    let block = &readme[at..];
    let open = block.find("```\n").expect("a fenced block") + 4;
    let close = block[open..].find("```").expect("the block ends") + open;
    let config = block[open..close]
        .replace("127.0.0.1:8000", &format!("127.0.0.1:{front}"))
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{a}"))
        .replace("127.0.0.1:8081", &format!("127.0.0.1:{b}"));
    assert!(config.contains(&format!(":{a}")) && config.contains(&format!(":{b}")));
    config
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// HAProxy in the foreground; killed when dropped.
struct Haproxy(std::process::Child);

impl Haproxy {
    fn start(config: &str, dir: &std::path::Path) -> Haproxy {
        let file = dir.join("haproxy.cfg");
        std::fs::write(&file, config).unwrap();
        let bin = ["/usr/sbin/haproxy", "/usr/local/sbin/haproxy", "haproxy"]
            .into_iter()
            .find(|b| !b.starts_with('/') || std::path::Path::new(b).exists())
            .unwrap();
        let check = std::process::Command::new(bin)
            .args(["-c", "-f"])
            .arg(&file)
            .output()
            .expect("haproxy is installed (make test-deps installs it)");
        assert!(
            check.status.success(),
            "the README's HAProxy config does not check: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let log = std::fs::File::create(dir.join("haproxy.log")).unwrap();
        let child = std::process::Command::new(bin)
            .args(["-db", "-f"])
            .arg(&file)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start haproxy");
        Haproxy(child)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One tab: its socket, the node it landed on, what it has seen since it
/// last attached (history, then live frames).
struct Tab {
    stream: Option<WsStream>,
    node: String,
    history: Vec<Value>,
    live: Vec<Value>,
}

impl Tab {
    /// Open a tab through the load balancer, on a node other than `avoid`
    /// when both are up (a few tries; round-robin alternates).
    async fn open(lb_ws: &str, cookie: &str, session: &str, avoid: Option<&str>) -> Tab {
        let mut last = String::new();
        for attempt in 0..80 {
            let mut req = format!("{lb_ws}/ws?session={session}")
                .into_client_request()
                .unwrap();
            req.headers_mut().insert("cookie", cookie.parse().unwrap());
            let (mut stream, resp) = match tokio_tungstenite::connect_async(req).await {
                Ok(ok) => ok,
                Err(e) => {
                    last = match &e {
                        tokio_tungstenite::tungstenite::Error::Http(r) => format!(
                            "{} {}",
                            r.status(),
                            String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
                        ),
                        other => other.to_string(),
                    };
                    eprintln!("tab could not connect: {last}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            let node = resp
                .headers()
                .get("x-ironclaw-node")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if avoid == Some(node.as_str()) && attempt < 50 {
                // Round-robin alternates between everyone's connections;
                // a node briefly out of rotation (a slow health check
                // under this load) comes back.
                drop(stream);
                tokio::time::sleep(Duration::from_millis(100 + 20 * attempt)).await;
                continue;
            }
            let mut first = Vec::new();
            while first.len() < 2 {
                match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
                    Ok(Some(Ok(Message::Text(t)))) => {
                        first.push(serde_json::from_str::<Value>(&t).unwrap())
                    }
                    Ok(Some(Ok(_))) => {}
                    _ => break,
                }
            }
            if first.len() == 2 && first[0]["type"] == "session" && first[1]["type"] == "history" {
                return Tab {
                    stream: Some(stream),
                    node,
                    history: first[1]["events"].as_array().cloned().unwrap_or_default(),
                    live: Vec::new(),
                };
            }
            last = format!("{first:?}");
            eprintln!("tab on {node:?} did not attach: {last}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("no tab could open on session {session}: {last}");
    }

    /// The next frame, or `None` once the socket has closed.
    async fn next(&mut self) -> Option<Value> {
        let stream = self.stream.as_mut()?;
        loop {
            match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    self.live.push(v.clone());
                    return Some(v);
                }
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                    self.stream = None;
                    return None;
                }
                Ok(Some(Ok(_))) => {}
                Err(_) => panic!(
                    "a tab heard nothing for {EVENT_TIMEOUT:?}: {:#?}",
                    self.live
                ),
            }
        }
    }

    async fn send(&mut self, v: Value) -> bool {
        use futures_util::SinkExt;
        match self.stream.as_mut() {
            Some(s) => s.send(Message::Text(v.to_string())).await.is_ok(),
            None => false,
        }
    }

    /// Everything this tab shows: its history and what came after.
    fn shown(&self) -> Vec<Value> {
        self.history
            .iter()
            .chain(self.live.iter())
            .cloned()
            .collect()
    }
}

/// What one person saw.
struct Outcome {
    user: usize,
    tabs: [Tab; 2],
    /// Texts of the turns that had completed when the node was killed.
    done_before_kill: Vec<String>,
    turns_done: usize,
}

/// One person: two tabs on different nodes, five turns, every other one
/// running a command; a turn cut off by the kill is asked again.
async fn person(
    user: usize,
    lb: String,
    killed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    finished: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ready: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> Outcome {
    use std::sync::atomic::Ordering;
    // A fresh connection per request: the balancer closes idle ones.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let name = format!("user{user:02}");
    // Forty at once can find every password check busy (503 with
    // Retry-After): wait as told, as the page does.
    let mut tries = 0;
    let login = loop {
        tries += 1;
        let r = match http
            .post(format!("{lb}/api/login"))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
        {
            Ok(r) => r,
            Err(_) if tries < 30 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            Err(e) => panic!("{name}: login: {e}"),
        };
        if r.status() == 503 && tries < 30 {
            let wait = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            tokio::time::sleep(Duration::from_millis(wait * 1000 / 2 + 100)).await;
            continue;
        }
        break r;
    };
    assert_eq!(login.status(), 200, "login {name}");
    let cookie = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("ironclaw_login="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut tries = 0;
    let (status, body) = loop {
        tries += 1;
        let sent = http
            .post(format!("{lb}/api/sessions"))
            .header("cookie", &cookie)
            .json(&json!({}))
            .send()
            .await;
        match sent {
            Ok(r) if r.status() != 503 || tries >= 30 => {
                let status = r.status();
                break (status, r.text().await.unwrap_or_default());
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    let session: Value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("{name}: creating a session answered {status}: {body}"));
    let id = session["id"].as_str().unwrap().to_string();
    let lb_ws = lb.replacen("http://", "ws://", 1);
    let first = Tab::open(&lb_ws, &cookie, &id, None).await;
    let second = Tab::open(&lb_ws, &cookie, &id, Some(&first.node)).await;
    assert_ne!(first.node, second.node, "{name}'s tabs landed on one node");
    ready.fetch_add(1, Ordering::SeqCst);
    let mut tabs = [first, second];
    let mut done_before_kill = Vec::new();
    let mut turns_done = 0;
    for turn in 0..5 {
        let text = if turn % 2 == 1 {
            format!("run: echo {name}-turn-{turn}")
        } else {
            format!("{name} says hello {turn}")
        };
        let mut attempts = 0;
        'attempt: loop {
            attempts += 1;
            assert!(attempts < 6, "{name}: turn {turn} never completed");
            for i in 0..2 {
                if tabs[i].stream.is_none() {
                    let other = tabs[1 - i].node.clone();
                    tabs[i] = Tab::open(&lb_ws, &cookie, &id, Some(&other)).await;
                }
            }
            let client_id = uuid::Uuid::new_v4().to_string();
            let sender = turn % 2;
            if !tabs[sender]
                .send(json!({"type": "user_message", "text": text, "client_id": client_id}))
                .await
            {
                tabs[sender].stream = None;
                continue;
            }
            let mut turn_id: Option<String> = None;
            // Until the sender's tab has the turn's end.
            loop {
                let Some(e) = tabs[sender].next().await else {
                    // The node went: reopen and look at what was stored.
                    tabs[sender] = Tab::open(&lb_ws, &cookie, &id, None).await;
                    let stored = tabs[sender].history.clone();
                    let ours = stored.iter().find_map(|e| {
                        (e["type"] == "user_message" && e["client_id"] == client_id.as_str())
                            .then(|| e["turn_id"].as_str().unwrap().to_string())
                    });
                    let completed = ours.as_ref().is_some_and(|t| {
                        stored.iter().any(|e| {
                            e["type"] == "turn_done"
                                && e["turn_id"] == t.as_str()
                                && e["reason"] == "completed"
                        })
                    });
                    if completed {
                        break;
                    }
                    continue 'attempt;
                };
                if e["type"] == "user_message" && e["client_id"] == client_id.as_str() {
                    turn_id = e["turn_id"].as_str().map(str::to_string);
                }
                if e["type"] == "turn_done"
                    && turn_id.is_some()
                    && e["turn_id"] == turn_id.as_deref().unwrap()
                {
                    if e["reason"] != "completed" {
                        continue 'attempt;
                    }
                    break;
                }
            }
            if !killed.load(Ordering::SeqCst) {
                done_before_kill.push(text.clone());
            }
            turns_done += 1;
            finished.fetch_add(1, Ordering::SeqCst);
            break;
        }
        // The other tab catches up to the same point (or is reopened).
        let other = 1 - turn % 2;
        let target = tabs[turn % 2]
            .shown()
            .iter()
            .rev()
            .find(|e| e["type"] == "turn_done")
            .cloned();
        loop {
            if tabs[other]
                .shown()
                .iter()
                .any(|e| Some(e) == target.as_ref())
            {
                break;
            }
            if tabs[other].next().await.is_none() {
                let avoid = tabs[turn % 2].node.clone();
                tabs[other] = Tab::open(&lb_ws, &cookie, &id, Some(&avoid)).await;
            }
        }
    }
    Outcome {
        user,
        tabs,
        done_before_kill,
        turns_done,
    }
}

/// Ids that make an event unique, for "no event twice".
fn identity(e: &Value) -> Option<String> {
    let t = e["type"].as_str()?;
    let id = match t {
        "user_message" | "turn_done" => e["turn_id"].as_str()?.to_string(),
        "tool_call" | "exec_done" => e["call_id"].as_str()?.to_string(),
        "approval_request" | "approval_resolved" => e["approval_id"].as_str()?.to_string(),
        "assistant_message" => format!("{}/{}", e["turn_id"], e["text"]),
        _ => return None,
    };
    Some(format!("{t}:{id}"))
}

/// Not in `make test` yet: it passes on a quiet machine (23 s), but in a
/// run right after a cold build HAProxy sometimes keeps one node out of
/// rotation for over half a minute while forty people log in, and their
/// second tabs cannot reach it. `make test-cluster` runs it.
#[actix_rt::test]
#[ignore = "heavy and not yet steady on a loaded machine: make test-cluster"]
async fn forty_people_on_two_nodes_behind_haproxy_lose_nothing_when_a_node_is_killed() {
    let _turn = one_at_a_time().await;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let pg = Postgres::get();
    let llm = FakeLlm::start().await;
    llm.set_scripted_runs(true);
    let root = tempfile::tempdir().unwrap();
    let url = pg.database_for(&root.path().join("data"));
    {
        // The people, made once in the shared database.
        let mut c = ironclaw::db::connect(ironclaw::db::Database::Postgres(url.clone())).unwrap();
        ironclaw::db::migrate(&mut c).unwrap();
        let hash = ironclaw::auth::hash_password(PASSWORD).unwrap();
        for u in 0..40 {
            ironclaw::db::queries::create_user(
                &mut c,
                &format!("user{u:02}"),
                &hash,
                ironclaw::protocol::ApprovalMode::Never,
            )
            .unwrap();
        }
    }
    let front = free_port();
    let lb = format!("http://127.0.0.1:{front}");
    // Forty sessions, two nodes, PostgreSQL and Docker on a small machine:
    // a lease long enough not to lapse under that load.
    let lease = "6".to_string();
    let node = |id: &'static str| {
        serve_with(
            root.path(),
            &[
                ("IRONCLAW_DATABASE__URL", &url),
                ("IRONCLAW_CLUSTER__NODE_ID", id),
                ("IRONCLAW_CLUSTER__LEASE_SECS", &lease),
                ("IRONCLAW_PROVIDER__KIND", "openai"),
                ("IRONCLAW_PROVIDER__BASE_URL", &llm.base_url),
                ("IRONCLAW_SERVER__ALLOWED_ORIGINS", &lb),
            ],
        )
    };
    let (mut a, a_url, _, a_log) = node("node-a");
    let (mut b, b_url, _, b_log) = node("node-b");
    let _reap = Reap(vec![a.id(), b.id()]);
    std::thread::spawn(move || {
        for l in a_log {
            if l.contains("WARN") || l.contains("ERROR") || l.contains("panic") {
                eprintln!("A| {l}");
            }
        }
    });
    std::thread::spawn(move || {
        for l in b_log {
            if l.contains("WARN") || l.contains("ERROR") || l.contains("panic") {
                eprintln!("B| {l}");
            }
        }
    });
    let port = |u: &str| {
        u.trim_end_matches('/')
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    };
    let _haproxy = Haproxy::start(
        &haproxy_config(front, port(&a_url), port(&b_url)),
        root.path(),
    );
    // Both nodes are in rotation.
    let http = reqwest::Client::new();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{lb}/api/health")).send().await {
            if let Some(n) = r
                .headers()
                .get("x-ironclaw-node")
                .and_then(|v| v.to_str().ok())
            {
                seen.insert(n.to_string());
            }
        }
        if seen.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen.len(), 2, "HAProxy does not reach both nodes: {seen:?}");

    let killed = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicUsize::new(0));
    let ready = Arc::new(AtomicUsize::new(0));
    let people: Vec<_> = (0..40)
        .map(|u| {
            tokio::task::spawn_local(person(
                u,
                lb.clone(),
                killed.clone(),
                finished.clone(),
                ready.clone(),
            ))
        })
        .collect();
    // Once everyone has both tabs open and 80 of the 200 turns are done,
    // node A dies.
    let started = Instant::now();
    while finished.load(Ordering::SeqCst) < 80 || ready.load(Ordering::SeqCst) < 40 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        // A person whose run failed ends early: stop waiting for the rest.
        if people.iter().any(|p| p.is_finished()) || started.elapsed() > Duration::from_secs(300) {
            let direct = reqwest::Client::new()
                .get(format!("{}/api/health", a_url.trim_end_matches('/')))
                .timeout(Duration::from_secs(3))
                .send()
                .await
                .map(|r| r.status().to_string())
                .unwrap_or_else(|e| e.to_string());
            eprintln!("DEBUG node A: exited {:?}, health {direct}", a.try_wait());
            eprintln!(
                "HAPROXY {}",
                std::fs::read_to_string(root.path().join("haproxy.log")).unwrap_or_default()
            );
            break;
        }
    }
    killed.store(true, Ordering::SeqCst);
    a.kill().unwrap();
    a.wait().unwrap();
    let mut outcomes = Vec::new();
    for p in people {
        outcomes.push(p.await.expect("a person's run panicked"));
    }

    for o in &outcomes {
        // Every session went on to its fifth turn.
        assert_eq!(o.turns_done, 5, "user {} stopped early", o.user);
        for tab in &o.tabs {
            let shown = tab.shown();
            // Every turn completed before the kill is in every tab.
            for text in &o.done_before_kill {
                assert!(
                    shown
                        .iter()
                        .any(|e| e["type"] == "user_message" && e["text"] == text.as_str()),
                    "user {}: {text:?} is missing from a tab",
                    o.user
                );
            }
            // No event twice.
            let mut ids = std::collections::HashSet::new();
            for e in &shown {
                if let Some(id) = identity(e) {
                    assert!(ids.insert(id.clone()), "user {}: {id} shown twice", o.user);
                }
            }
        }
        // Both tabs saw the same events from where the later one attached.
        let (x, y) = (&o.tabs[0].live, &o.tabs[1].live);
        let (short, long) = if x.len() <= y.len() { (x, y) } else { (y, x) };
        let start = short.iter().position(|e| e["type"] == "user_message");
        if let Some(start) = start {
            let from = &short[start..];
            let at = long
                .iter()
                .position(|e| e == &from[0])
                .unwrap_or_else(|| panic!("user {}: the tabs diverged", o.user));
            assert_eq!(
                &long[at..],
                from,
                "user {}: the tabs saw different events",
                o.user
            );
        }
    }
    // B's own stop takes its containers; whatever A left is removed too.
    terminate(&b);
    let _ = b.wait();
    let instance = {
        let mut c = ironclaw::db::connect(ironclaw::db::Database::Postgres(url.clone())).unwrap();
        ironclaw::db::queries::instance_id(&mut c).unwrap()
    };
    let _ = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "docker ps -aq --filter label=ironclaw.instance={instance} | xargs -r docker rm -f"
        ))
        .output();
}

fn terminate(child: &std::process::Child) {
    // SAFETY: signals our own child process by its pid.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
}
