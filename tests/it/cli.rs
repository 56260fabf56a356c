//! The `ironclaw` binary as a person runs it: first start creates `admin`
//! and says what to do about an unreachable model server; `user
//! add|list|passwd|remove` manage logins.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw");

fn ironclaw(data: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(data)
        .env("IRONCLAW_DATA__DIR", data.join("data"))
        .env("RUST_LOG", "info")
        .env_remove("IRONCLAW_ADMIN_PASSWORD");
    c
}

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

async fn login(base: &str, user: &str, password: &str) -> u16 {
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
    let mut child = ironclaw(data)
        .arg("serve")
        .env("IRONCLAW_SERVER__PORT", "0")
        // Nothing listens here: the model server is unreachable.
        .env("IRONCLAW_PROVIDER__BASE_URL", "http://127.0.0.1:9")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run ironclaw serve");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx.send(l)))
    });
    std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .for_each(|l| drop(tx2.send(l)))
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ironclaw serve did not start: {lines:#?}");
        };
        lines.push(line.clone());
        if let Some(url) = line.strip_prefix("IronClaw is running: open ") {
            return (child, url.trim().to_string(), lines);
        }
    }
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
    assert_eq!(login(&url, "admin", &password).await, 200);
    assert_eq!(login(&url, "admin", "wrong password").await, 401);
    let health: serde_json::Value = reqwest::get(format!("{url}/api/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
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
