//! The `ironclaw` binary as a person runs it: first start creates `admin`
//! and says what to do about an unreachable model server; `user
//! add|list|passwd|remove` manage logins.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{ironclaw, serve_with, JsonBody};

fn user_cmd(data: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String) {
    let mut child = ironclaw(data)
        .arg("user")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ironclaw");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub(crate) async fn login(base: &str, user: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Start `ironclaw serve` and read its output until it says where it
/// listens; returns the process, the URL and everything it logged.
fn serve(data: &std::path::Path) -> (std::process::Child, String, Vec<String>) {
    let (child, url, lines, _) = serve_with(data, &[]);
    (child, url, lines)
}

#[actix_rt::test]
async fn first_start_creates_admin_and_explains_an_unreachable_model_server() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, lines) = serve(dir.path());
    let log = lines.join("\n");
    let password = lines
        .iter()
        .find_map(|l| l.split("created user `admin` with password `").nth(1))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no admin password in the log:\n{log}"))
        .to_string();
    assert!(
        log.contains("not reachable") && log.contains("ollama serve"),
        "{log}"
    );
    assert_eq!(login(&url, "admin", "wrong password").await, 401);
    let resp = reqwest::Client::new()
        .post(format!("{url}/api/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let health: serde_json::Value = reqwest::Client::new()
        .get(format!("{url}/api/health"))
        .header("cookie", cookie)
        .json_body()
        .await;
    assert_eq!(health["provider"]["reachable"], false);
    assert_eq!(health["database"], "ok");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(dir.path().join("data/ironclaw.db").exists());

    // A second start keeps the same admin and prints no new password.
    let (mut child, url, lines) = serve(dir.path());
    assert!(!lines.join("\n").contains("created user"));
    assert_eq!(login(&url, "admin", &password).await, 200);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[actix_rt::test]
async fn user_add_list_passwd_remove() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ok, out) = user_cmd(d, &["add", "carol", "--password-stdin"], "first password\n");
    assert!(ok, "{out}");
    let (ok, out) = user_cmd(d, &["add", "carol", "--password-stdin"], "first password\n");
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = user_cmd(d, &["add", "dave", "--password-stdin"], "short\n");
    assert!(!ok && out.contains("at least"), "{out}");
    let (ok, out) = user_cmd(d, &["list"], "");
    assert!(
        ok && out.contains("carol") && !out.contains("dave"),
        "{out}"
    );
    // The hash is argon2, never the password.
    let db = std::fs::read(d.join("data/ironclaw.db")).unwrap();
    let db = String::from_utf8_lossy(&db);
    assert!(db.contains("$argon2id$") && !db.contains("first password"));

    let (mut child, url, _) = serve(d);
    assert_eq!(login(&url, "carol", "first password").await, 200);
    let (ok, out) = user_cmd(
        d,
        &["passwd", "carol", "--password-stdin"],
        "second password\n",
    );
    assert!(ok, "{out}");
    assert_eq!(login(&url, "carol", "first password").await, 401);
    assert_eq!(login(&url, "carol", "second password").await, 200);
    let (ok, out) = user_cmd(d, &["remove", "carol"], "");
    assert!(ok, "{out}");
    assert_eq!(login(&url, "carol", "second password").await, 401);
    let (ok, out) = user_cmd(d, &["remove", "carol"], "");
    assert!(!ok && out.contains("no user"), "{out}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// The admin password a first start printed.
pub(crate) fn admin_password(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.split("created user `admin` with password `").nth(1))
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no admin password in the log:\n{}", lines.join("\n")))
        .to_string()
}

/// Log in and answer the `name=value` cookie pair.
pub(crate) async fn login_cookie(base: &str, user: &str, password: &str) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/api/login"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

/// Lines the process writes within `wait`.
fn lines_within(rx: &std::sync::mpsc::Receiver<String>, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut out = Vec::new();
    while let Ok(l) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        out.push(l);
    }
    out
}

#[actix_rt::test]
async fn credentials_in_the_provider_url_and_huge_usernames_stay_out_of_logs() {
    let dir = tempfile::tempdir().unwrap();
    let url_with_key = "http://ironclaw:hunter2-secret@127.0.0.1:9";
    let (mut child, url, lines, rx) = serve_with(
        dir.path(),
        &[
            ("IRONCLAW_PROVIDER__BASE_URL", url_with_key),
            (
                "IRONCLAW_SERVER__ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            ),
        ],
    );
    let log = lines.join("\n");
    assert!(log.contains("not reachable"), "{log}");
    assert!(!log.contains("hunter2"), "start-up log: {log}");
    // server.allowed_origins from the environment, as a comma-separated list.
    for (origin, want) in [
        ("https://b.example", 204),
        ("https://a.example", 204),
        ("https://c.example", 403),
    ] {
        let host = origin.trim_start_matches("https://");
        let status = reqwest::Client::new()
            .post(format!("{url}/api/logout"))
            .header("origin", origin)
            .header("host", host)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, want, "{origin}");
    }
    let password = admin_password(&lines);
    let cookie = login_cookie(&url, "admin", &password).await;
    let health = reqwest::Client::new()
        .get(format!("{url}/api/health"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(health.contains("***@127.0.0.1:9"), "{health}");
    assert!(!health.contains("hunter2"), "{health}");

    // A 900 KB username: refused, and no line of the log grows with it.
    let huge = "u".repeat(900 * 1024);
    let status = reqwest::Client::new()
        .post(format!("{url}/api/login"))
        .json(&json!({"username": huge, "password": "x"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 413);
    let later = lines_within(&rx, Duration::from_secs(2));
    let longest = later.iter().map(String::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
    assert!(!later.join("\n").contains("hunter2"));
    child.kill().unwrap();
    child.wait().unwrap();

    // `ironclaw check` shows the URL without its credentials.
    let out = ironclaw(dir.path())
        .arg("check")
        .env("IRONCLAW_PROVIDER__BASE_URL", url_with_key)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("provider"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[actix_rt::test]
async fn a_short_admin_password_from_the_environment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = ironclaw(dir.path())
        .arg("serve")
        .env("IRONCLAW_SERVER__PORT", "0")
        .env("IRONCLAW_PROVIDER__BASE_URL", "http://127.0.0.1:9")
        .env("IRONCLAW_ADMIN_PASSWORD", "short")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("IRONCLAW_ADMIN_PASSWORD is shorter than 8"),
        "{text}"
    );
}

#[actix_rt::test]
async fn sigterm_stops_the_session_containers_and_drains_the_warm_pool() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, Message};

    let llm = crate::fake_llm::FakeLlm::start().await;
    llm.push(crate::fake_llm::Reply::tool(
        "shell",
        json!({"command": "true"}),
    ));
    llm.push(crate::fake_llm::Reply::text("ran it"));
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, lines, _rx) = serve_with(
        dir.path(),
        &[
            ("IRONCLAW_PROVIDER__BASE_URL", llm.base_url.as_str()),
            ("IRONCLAW_PROVIDER__KIND", "openai"),
            ("IRONCLAW_APPROVAL__MODE", "never"),
            ("IRONCLAW_SANDBOX__WARM_POOL", "2"),
        ],
    );
    let password = admin_password(&lines);
    let cookie = login_cookie(&url, "admin", &password).await;
    let mut req = format!("{}/ws", url.replace("http://", "ws://"))
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("cookie", cookie.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"type": "user_message", "text": "run true"}).to_string(),
    ))
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "no exec_done");
        let Ok(Some(Ok(Message::Text(t)))) =
            tokio::time::timeout(Duration::from_secs(60), ws.next()).await
        else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "exec_done" {
            break;
        }
    }
    let mut conn = ironclaw::db::connect(dir.path().join("data/ironclaw.db")).unwrap();
    let instance = ironclaw::db::queries::instance_id(&mut conn).unwrap();
    // This server's containers, all of them or only the warm pool's.
    let ps = |only_pool: bool| {
        let mut filters = vec![format!("label=ironclaw.instance={instance}")];
        if only_pool {
            filters.push("label=ironclaw.pool=1".to_string());
        }
        let mut command = Command::new("docker");
        command.args(["ps", "-aq"]);
        for f in &filters {
            command.args(["--filter", f]);
        }
        let out = command.output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let containers = || ps(false);
    assert!(!containers().is_empty(), "the session has a container");
    // The warm pool (2 by default) refilled after the session took one.
    let pooled = || ps(true).lines().count();
    let deadline = Instant::now() + Duration::from_secs(60);
    while pooled() < 2 {
        assert!(Instant::now() < deadline, "the warm pool never filled");
        std::thread::sleep(Duration::from_millis(200));
    }

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = containers();
    if !left.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(left.split_whitespace())
            .output();
    }
    // The session's quota filesystem outlives the server by design (a
    // restart mounts it again); the temp dir is going, so it goes too.
    ironclaw::quota::detach_all(&dir.path().join("data/workspaces"));
    assert!(
        left.is_empty(),
        "containers left running after SIGTERM: {left}"
    );
    let pool_workspaces: Vec<_> = std::fs::read_dir(dir.path().join("data/workspaces"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".pool-"))
        .collect();
    assert!(
        pool_workspaces.is_empty(),
        "the warm pool's workspaces outlived the server: {pool_workspaces:?}"
    );
}
