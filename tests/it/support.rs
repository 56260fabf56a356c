//! The test harness: `TestApp` starts the real IronClaw server on
//! 127.0.0.1:0 with a temp data dir (in its own thread and actix system),
//! `Client` is a logged-in REST client, `Socket` a WebSocket client that
//! reads whole events.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest, Message};

use ironclaw::config::{ProviderKind, Settings};
use ironclaw::db::{self, queries};
use ironclaw::protocol::ApprovalMode;

/// How long a test waits for one expected event before failing.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

pub const PASSWORD: &str = "correct horse battery";

pub struct TestApp {
    pub base: String,
    pub ws_base: String,
    pub data_dir: PathBuf,
    /// SQLite in the data dir, or a PostgreSQL database of its own when
    /// `IRONCLAW_TEST_POSTGRES` names a server (`make test-postgres`).
    pub database: db::Database,
    /// Kept alive for the test; `None` when the caller owns the directory.
    _temp: Option<tempfile::TempDir>,
    pub supervisor: actix::Addr<ironclaw::supervisor::SessionSupervisor>,
    server: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub struct TestAppBuilder {
    settings: Settings,
    temp: Option<tempfile::TempDir>,
    users: Vec<String>,
}

impl TestApp {
    /// A server using the fake LLM at `llm_url` in the given wire format.
    pub fn builder(kind: ProviderKind, llm_url: &str) -> TestAppBuilder {
        let temp = tempfile::tempdir().expect("temp dir");
        let mut settings =
            Settings::load(Some(&write_empty_config(temp.path()))).expect("settings");
        settings.server.port = 0;
        settings.server.workers = 2;
        settings.server.session_grace_secs = 2;
        settings.data.dir = temp.path().join("data");
        settings.provider.kind = kind;
        settings.provider.base_url = llm_url.to_string();
        settings.provider.api_key = String::new();
        settings.provider.retry_base_ms = 20;
        settings.provider.stream_idle_secs = 20;
        // Most tests never look at the pool; the ones that do turn it on.
        settings.sandbox.warm_pool = 0;
        TestAppBuilder {
            settings,
            temp: Some(temp),
            users: vec!["alice".into(), "bob".into()],
        }
    }
}

/// An OpenAI-format server on the fake LLM at `llm_url`, alice logged in,
/// and a new session of hers.
pub async fn alice_with_session(
    llm_url: &str,
    tweak: impl FnOnce(&mut Settings),
) -> (TestApp, Client, String) {
    let app = TestApp::builder(ProviderKind::Openai, llm_url)
        .settings(tweak)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    (app, alice, id)
}

fn write_empty_config(dir: &Path) -> PathBuf {
    let p = dir.join("ironclaw.toml");
    std::fs::write(&p, "# test\n").expect("config");
    p
}

impl TestAppBuilder {
    pub fn settings(mut self, f: impl FnOnce(&mut Settings)) -> Self {
        f(&mut self.settings);
        self
    }

    /// Seed no users: the first start creates `admin` itself.
    pub fn no_users(mut self) -> Self {
        self.users.clear();
        self
    }

    /// Use an existing data directory (to restart on the same data).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.settings.data.dir = dir.to_path_buf();
        self
    }

    pub async fn start(self) -> TestApp {
        let mut settings = self.settings;
        if settings.database.url.is_empty() {
            if let Some(db::Database::Postgres(url)) = db::test_postgres(&settings.data.dir) {
                settings.database.url = url;
            }
        }
        let database = settings.database().expect("database url");
        seed_users(&settings, &self.users);
        let data_dir = settings.data.dir.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let sys = actix_rt::System::new();
            sys.block_on(async move {
                match ironclaw::app::start(settings).await {
                    Ok(mut running) => {
                        let _ = tx.send(Ok((
                            running.addr,
                            running.server.clone(),
                            running.supervisor.clone(),
                        )));
                        // As `ironclaw serve` stops: the containers
                        // go through their sandboxes (agents closed
                        // first), the warm pool is drained.
                        let _ = (&mut running.done).await;
                        running.stop_sessions().await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        });
        let (addr, server, supervisor) = tokio::task::spawn_blocking(move || rx.recv())
            .await
            .expect("join")
            .expect("server thread")
            .expect("server start");
        TestApp {
            base: format!("http://{addr}"),
            ws_base: format!("ws://{addr}"),
            data_dir,
            database,
            _temp: self.temp,
            supervisor,
            server,
            thread: Some(thread),
        }
    }
}

/// Create users with known passwords directly in the database, before the
/// server starts (so the first-start admin is not created).
fn seed_users(settings: &Settings, users: &[String]) {
    let mut conn = db::connect(settings.database().expect("database url")).expect("db");
    db::migrate(&mut conn).expect("migrate");
    for u in users {
        if queries::find_user(&mut conn, u).expect("find").is_none() {
            let hash = ironclaw::auth::hash_password(PASSWORD).expect("hash");
            queries::create_user(&mut conn, u, &hash, ApprovalMode::Risky).expect("user");
        }
    }
}

impl TestApp {
    /// Stop the server and wait for its thread; the data dir stays, the
    /// sandbox containers go.
    pub async fn stop(mut self) -> (PathBuf, Option<tempfile::TempDir>) {
        // Not graceful: open test sockets would hold a graceful stop for
        // the whole shutdown timeout.
        self.server.stop(false).await;
        if let Some(t) = self.thread.take() {
            tokio::task::spawn_blocking(move || t.join())
                .await
                .expect("join")
                .expect("server thread panicked");
        }
        // Whatever the server's own shutdown left (it removes its
        // sessions' containers and drains the pool before the thread ends).
        remove_containers(&self.database);
        (self.data_dir.clone(), self._temp.take())
    }

    /// This server's installation id (its containers' `ironclaw.instance`).
    pub fn instance_id(&self) -> String {
        let mut conn = db::connect(&self.database).expect("db");
        queries::instance_id(&mut conn).expect("instance id")
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A fresh connection per request: a pooled one can be closed by
            // the server's keep-alive timer just as a slow test reuses it.
            .pool_max_idle_per_host(0)
            .build()
            .expect("client")
    }

    /// A client whose connections come from `source` (any 127.x address:
    /// the server sees another client address).
    pub fn http_from(&self, source: std::net::IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .local_address(source)
            .build()
            .expect("client")
    }

    /// Log in as `user`; panics on failure.
    pub async fn login(&self, user: &str) -> Client {
        self.login_with(user, self.http()).await
    }

    /// Log in as `user` through `http`; panics on failure.
    pub async fn login_with(&self, user: &str, http: reqwest::Client) -> Client {
        let resp = http
            .post(format!("{}/api/login", self.base))
            .json(&json!({"username": user, "password": PASSWORD}))
            .send()
            .await
            .expect("login request");
        assert_eq!(resp.status(), 200, "login as {user}");
        let cookie = resp
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("ironclaw_login="))
            .expect("login cookie")
            .to_string();
        let pair = cookie.split(';').next().expect("cookie pair").to_string();
        Client {
            base: self.base.clone(),
            ws_base: self.ws_base.clone(),
            cookie: pair,
            raw_set_cookie: cookie,
            http,
        }
    }
}

/// Remove the containers of the installation whose database is `database`.
fn remove_containers(database: &db::Database) {
    let Ok(mut conn) = db::connect(database) else {
        return;
    };
    let Ok(instance) = queries::instance_id(&mut conn) else {
        return;
    };
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=ironclaw.instance={instance}"),
        ])
        .output();
    if let Ok(out) = out {
        let ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        if !ids.is_empty() {
            let _ = std::process::Command::new("docker")
                .arg("rm")
                .arg("-f")
                .args(&ids)
                .output();
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if self.thread.is_some() {
            remove_containers(&self.database);
        }
        // The workspaces' quota filesystems, so the temp dir can go (a
        // restart on the same data dir mounts them again, as after a boot).
        ironclaw::quota::detach_all(&self.data_dir.join("workspaces"));
        // A test that panicked before `stop`: don't leave the server thread
        // serving into the next test.
        let server = self.server.clone();
        std::mem::drop(server.stop(false));
    }
}

/// A logged-in user.
#[derive(Clone)]
pub struct Client {
    pub base: String,
    pub ws_base: String,
    /// `ironclaw_login=<token>`.
    pub cookie: String,
    /// The whole Set-Cookie header, to check its attributes.
    pub raw_set_cookie: String,
    pub http: reqwest::Client,
}

impl Client {
    /// The same login, through another node of a cluster.
    pub fn via(&self, node: &TestApp) -> Client {
        let mut c = self.clone();
        c.base = node.base.clone();
        c.ws_base = node.ws_base.clone();
        c
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .put(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .patch(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
    }

    /// Set a session's approval mode (`always`, `risky`, `never`).
    pub async fn set_mode(&self, id: &str, mode: &str) {
        let resp = self
            .patch(&format!("/api/sessions/{id}"))
            .json(&json!({ "approval_mode": mode }))
            .send()
            .await
            .expect("patch session");
        assert_eq!(resp.status(), 200, "set approval mode {mode}");
    }

    /// Create a session; returns its id.
    pub async fn new_session(&self) -> String {
        let resp = self
            .post("/api/sessions")
            .json(&json!({}))
            .send()
            .await
            .expect("create");
        assert_eq!(resp.status(), 201);
        let v: Value = resp.json().await.expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// Open a socket on `session` (or the default session) and read the
    /// `session` and `history` frames.
    pub async fn connect(&self, session: Option<&str>) -> Socket {
        let url = match session {
            Some(id) => format!("{}/ws?session={id}", self.ws_base),
            None => format!("{}/ws", self.ws_base),
        };
        let mut req = url.into_client_request().expect("request");
        req.headers_mut()
            .insert("cookie", self.cookie.parse().expect("cookie header"));
        let (stream, _) = tokio_tungstenite::connect_async(req)
            .await
            .expect("websocket connect");
        let mut socket = Socket {
            stream,
            seen: Vec::new(),
            session: Value::Null,
            history: Value::Null,
        };
        let session = socket.next().await;
        assert_eq!(session["type"], "session", "first frame: {session}");
        let history = socket.next().await;
        assert_eq!(history["type"], "history", "second frame: {history}");
        socket.session = session;
        socket.history = history;
        socket
    }
}

pub type WsStream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub struct Socket {
    pub stream: WsStream,
    /// Every event read so far, in order.
    pub seen: Vec<Value>,
    pub session: Value,
    pub history: Value,
}

impl Socket {
    pub fn session_id(&self) -> String {
        self.session["session_id"]
            .as_str()
            .expect("session id")
            .to_string()
    }

    pub fn history_events(&self) -> Vec<Value> {
        self.history["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn send(&mut self, v: Value) {
        self.stream
            .send(Message::Text(v.to_string()))
            .await
            .expect("send");
    }

    pub async fn send_raw(&mut self, text: String) {
        self.stream.send(Message::Text(text)).await.expect("send");
    }

    pub async fn say(&mut self, text: &str) {
        self.send(json!({"type": "user_message", "text": text}))
            .await;
    }

    /// The next event; panics after `EVENT_TIMEOUT` or if the socket closes.
    pub async fn next(&mut self) -> Value {
        loop {
            let next = tokio::time::timeout(EVENT_TIMEOUT, self.stream.next()).await;
            let msg = match next {
                Err(_) => panic!("no event within {EVENT_TIMEOUT:?}; seen: {:#?}", self.seen),
                Ok(None) => panic!("socket closed; seen: {:#?}", self.seen),
                Ok(Some(Err(e))) => panic!("websocket error {e}; seen: {:#?}", self.seen),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(&t).expect("event is JSON");
                    self.seen.push(v.clone());
                    return v;
                }
                Message::Close(c) => panic!("socket closed: {c:?}; seen: {:#?}", self.seen),
                _ => continue,
            }
        }
    }

    /// Read until an event of `kind` arrives; returns it.
    pub async fn until(&mut self, kind: &str) -> Value {
        loop {
            let v = self.next().await;
            if v["type"] == kind {
                return v;
            }
        }
    }

    /// Read until `turn_done`; returns every event of the turn, in order.
    pub async fn turn(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        loop {
            let v = self.next().await;
            let done = v["type"] == "turn_done";
            out.push(v);
            if done {
                return out;
            }
        }
    }

    /// Whether the server closes the socket within `wait`.
    pub async fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Text(t)))) => {
                    if let Ok(v) = serde_json::from_str(&t) {
                        self.seen.push(v);
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

/// Send a request and answer its HTTP status.
pub async fn status(req: reqwest::RequestBuilder) -> u16 {
    req.send().await.expect("request").status().as_u16()
}

/// Send a request and read its JSON body, whatever the status.
pub trait JsonBody {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T;
}

impl JsonBody for reqwest::RequestBuilder {
    async fn json_body<T: serde::de::DeserializeOwned>(self) -> T {
        self.send()
            .await
            .expect("request")
            .json()
            .await
            .expect("a JSON body")
    }
}

/// Events of `kind` among `events`.
pub fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The concatenated `assistant_delta` text of `events`.
pub fn delta_text(events: &[Value]) -> String {
    of_type(events, "assistant_delta")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect()
}

/// Whether an upgrade to `/ws` without credentials is refused; returns the
/// HTTP status of the refusal.
pub async fn ws_refused_status(ws_base: &str, cookie: Option<&str>) -> u16 {
    let mut req = format!("{ws_base}/ws")
        .into_client_request()
        .expect("request");
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", c.parse().expect("cookie"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("unexpected websocket error: {e}"),
        Ok(_) => 101,
    }
}

/// A PostgreSQL server for a test that needs one whatever the suite runs
/// on: the suite's own under `make test-postgres`, else one started here
/// (tests/postgres.sh) and stopped when dropped.
pub struct Postgres {
    admin: String,
    folder: Option<String>,
}

impl Postgres {
    pub fn get() -> Postgres {
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
    pub fn database_for(&self, dir: &std::path::Path) -> String {
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

/// Two in-process nodes, `node-a` and `node-b`, on one data dir and the
/// PostgreSQL database `url`; `tweak` adjusts both.
pub async fn two_nodes(
    llm_url: &str,
    data: &Path,
    url: &str,
    tweak: impl Fn(&mut Settings) + Clone + 'static,
) -> (TestApp, TestApp) {
    let node = |id: &'static str| {
        let (url, tweak) = (url.to_string(), tweak.clone());
        move |s: &mut Settings| {
            s.cluster.node_id = id.into();
            s.database.url = url;
            tweak(s);
        }
    };
    let a = TestApp::builder(ironclaw::config::ProviderKind::Openai, llm_url)
        .data_dir(data)
        .settings(node("node-a"))
        .start()
        .await;
    let b = TestApp::builder(ironclaw::config::ProviderKind::Openai, llm_url)
        .data_dir(data)
        .settings(node("node-b"))
        .start()
        .await;
    (a, b)
}

/// The server binary.
pub const BIN: &str = env!("CARGO_BIN_EXE_ironclaw");

/// The `ironclaw` binary run in `data` (its data dir `data/data`).
pub fn ironclaw(data: &std::path::Path) -> std::process::Command {
    let mut c = std::process::Command::new(BIN);
    c.current_dir(data)
        .env("IRONCLAW_DATA__DIR", data.join("data"))
        .env("RUST_LOG", "info")
        .env_remove("IRONCLAW_ADMIN_PASSWORD");
    c
}

/// `serve` with extra environment; also answers the rest of its output,
/// line by line.
#[allow(clippy::type_complexity)]
pub fn serve_with(
    data: &std::path::Path,
    env: &[(&str, &str)],
) -> (
    std::process::Child,
    String,
    Vec<String>,
    std::sync::mpsc::Receiver<String>,
) {
    use std::io::BufRead as _;
    let mut command = ironclaw(data);
    command
        .arg("serve")
        .env("IRONCLAW_SERVER__PORT", "0")
        // Nothing listens here: the model server is unreachable.
        .env("IRONCLAW_PROVIDER__BASE_URL", "http://127.0.0.1:9")
        // Most of these end with a kill, which leaves a warm pool behind;
        // the test of the pool asks for one.
        .env("IRONCLAW_SANDBOX__WARM_POOL", "0");
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run ironclaw serve");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) =
            rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
        else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ironclaw serve did not start: {lines:#?}");
        };
        lines.push(line.clone());
        if let Some(url) = line.strip_prefix("IronClaw is running: open ") {
            return (child, url.trim().to_string(), lines, rx);
        }
    }
}
