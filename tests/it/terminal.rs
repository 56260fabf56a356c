//! `ironclaw chat` as a person runs it: the real binary in a real terminal
//! (tmux, from Debian's package) against a real server, the real sandbox
//! and the fake model. The screen is read back with `capture-pane`; keys
//! go in with `send-keys`. `--once` runs without a terminal, its stdout and
//! stderr read apart.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_ironclaw");

static TERMS: AtomicUsize = AtomicUsize::new(0);

/// One tmux server (its own socket) running `ironclaw chat` in a 160×50
/// pane; killed when dropped.
struct Term {
    socket: String,
}

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Term {
    /// Run `ironclaw chat <args>` in `home` (config and working folder).
    fn start(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Term {
        let n = TERMS.fetch_add(1, Ordering::SeqCst);
        let socket = format!("ironclaw-test-{}-{n}", std::process::id());
        let mut cmd = format!(
            "cd {} && {} chat",
            sh_quote(&home.to_string_lossy()),
            sh_quote(BIN)
        );
        for a in args {
            cmd.push(' ');
            cmd.push_str(&sh_quote(a));
        }
        // Keep the pane after the client exits, with its exit status.
        cmd.push_str("; echo \"[exit $?]\"; sleep 600");
        let mut tmux = Command::new("tmux");
        tmux.args([
            "-L",
            &socket,
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "160",
            "-y",
            "50",
        ]);
        tmux.args([
            "-e",
            &format!("XDG_CONFIG_HOME={}", home.join("config").display()),
        ]);
        tmux.args(["-e", "RUST_LOG=warn"]);
        for (k, v) in env {
            tmux.args(["-e", &format!("{k}={v}")]);
        }
        tmux.arg(&cmd);
        let status = tmux
            .env_remove("TMUX")
            .env_remove("NO_COLOR")
            .env_remove("IRONCLAW_PASSWORD")
            .status()
            .expect("tmux is installed (make test-deps installs it)");
        assert!(status.success(), "tmux new-session failed");
        Term { socket }
    }

    /// `ironclaw chat` as alice on session `id` of `app`, the password
    /// from the environment.
    fn alice(home: &Path, app: &TestApp, id: &str) -> Term {
        Term::start(
            home,
            &["--server", &app.base, "--user", "alice", "--session", id],
            &[("IRONCLAW_PASSWORD", PASSWORD)],
        )
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The pane's text, scrollback included, wrapped lines joined.
    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-J", "-S", "-5000", "-t", "t"])
    }

    /// The same with colors as escape sequences.
    fn colored(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-e", "-J", "-S", "-5000", "-t", "t"])
    }

    /// Wait until the screen shows `text`; the screen.
    async fn wait_for(&self, text: &str) -> String {
        self.wait_until(text, |s| s.contains(text)).await
    }

    async fn wait_until(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            if Instant::now() > deadline {
                panic!("the terminal never showed {what:?}; it shows:\n{screen}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Type `text` and press Enter.
    fn line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text]);
        self.tmux(&["send-keys", "-t", "t", "Enter"]);
    }

    /// Press keys by tmux name (`C-c`, `y`, `Enter`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args);
    }

    /// Wait for the input prompt to be the last thing on the screen.
    async fn prompt(&self) -> String {
        self.wait_until("the prompt", |s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_end().ends_with("] ›"))
        })
        .await
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

fn count(screen: &str, text: &str) -> usize {
    screen.matches(text).count()
}

/// A folder for one client: its config (saved login) and working folder.
fn home() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("config")).expect("config dir");
    dir
}

/// A server and a new session of alice's in `mode`.
async fn alice_in(llm: &FakeLlm, mode: &str) -> (TestApp, Client, String) {
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, mode).await;
    (app, alice, id)
}

/// `keep.txt` ("precious\n") in the workspace, for tests that must not lose it.
async fn keep_a_file(alice: &Client, id: &str) {
    let put = alice
        .put(&format!("/api/sessions/{id}/files/keep.txt"))
        .body("precious\n")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success());
}

async fn workspace_file(alice: &Client, id: &str, path: &str) -> Option<Vec<u8>> {
    let resp = alice
        .get(&format!("/api/sessions/{id}/files/{path}"))
        .send()
        .await
        .expect("download");
    if resp.status() == 404 {
        return None;
    }
    assert_eq!(resp.status(), 200, "download {path}");
    Some(resp.bytes().await.expect("body").to_vec())
}

#[actix_rt::test]
async fn a_login_is_asked_once_and_saved_and_a_reply_streams_in() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let home = home();
    llm.push(Reply::text("The quick brown fox jumps over the lazy dog.").event_delay_ms(120));

    let term = Term::start(
        home.path(),
        &["--server", &app.base, "--user", "alice"],
        &[],
    );
    term.wait_for("Password:").await;
    term.line(PASSWORD);
    term.prompt().await;
    term.line("hello there");
    // Streamed: the start is on the screen before the end has arrived.
    let early = term.wait_for("The quick").await;
    assert!(
        !early.contains("lazy dog."),
        "the whole reply arrived at once:\n{early}"
    );
    let screen = term.wait_for("lazy dog.").await;
    assert_eq!(count(&screen, "The quick brown fox"), 1, "{screen}");
    assert!(screen.contains("you › hello there"), "{screen}");
    let screen = term.prompt().await;
    assert!(
        screen.contains("[llama3.2 · "),
        "the status shows the model:\n{screen}"
    );
    term.keys(&["C-d"]);
    term.wait_for("[exit 0]").await;
    drop(term);

    // The login is saved, for this server, readable by its owner only.
    let store = home.path().join("config/ironclaw/logins.json");
    let meta = std::fs::metadata(&store).expect("the login is saved");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let dir = std::fs::metadata(store.parent().unwrap()).unwrap();
    assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    let saved: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    let token = saved["logins"][&app.base]["token"]
        .as_str()
        .expect("token for this server")
        .to_string();
    assert!(!std::fs::read_to_string(&store).unwrap().contains(PASSWORD));

    // The next run asks nothing and shows the conversation.
    let term = Term::start(home.path(), &["--server", &app.base], &[]);
    let screen = term.prompt().await;
    assert!(!screen.contains("Password:"), "asked again:\n{screen}");
    assert!(
        screen.contains("you › hello there") && screen.contains("lazy dog."),
        "{screen}"
    );
    term.line("/quit");
    term.wait_for("[exit 0]").await;

    // `ironclaw logout` forgets it and ends it on the server.
    let out = Command::new(BIN)
        .args(["logout", "--server", &app.base])
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .current_dir(home.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    assert!(saved["logins"].get(&app.base).is_none(), "{saved}");
    let me = app
        .http()
        .get(format!("{}/api/me", app.base))
        .header("cookie", format!("ironclaw_login={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401, "the token still works after logout");
}

#[actix_rt::test]
async fn a_command_streams_its_output_live_with_stderr_in_red() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id) = alice_in(&llm, "never").await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "for i in 1 2 3; do echo line$i; sleep 1; done; echo oops >&2"}),
    ));
    llm.push(Reply::text("It counted to three."));
    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;
    term.line("count");
    let early = term.wait_for("line1").await;
    assert!(
        !early.contains("line3"),
        "output arrived only at the end:\n{early}"
    );
    let screen = term.wait_for("It counted to three.").await;
    assert!(screen.contains("$ for i in 1 2 3"), "{screen}");
    assert!(screen.contains("[exit 0 · "), "{screen}");
    let colored = term.colored();
    assert!(
        colored.contains("\x1b[31moops"),
        "stderr is not red:\n{colored:?}"
    );
    assert!(
        !colored.contains("\x1b[31mline1"),
        "stdout is red:\n{colored:?}"
    );
}

#[actix_rt::test]
async fn approvals_are_answered_with_y_and_n_in_the_terminal() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_in(&llm, "always").await;
    keep_a_file(&alice, &id).await;
    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;

    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo made > made.txt"}),
    ));
    llm.push(Reply::text("Made it."));
    term.line("make a file");
    let screen = term
        .wait_for("[y]es / [n]o / [a]lways for this session")
        .await;
    assert!(screen.contains("approval needed"), "{screen}");
    assert!(screen.contains("$ echo made > made.txt"), "{screen}");
    assert!(
        screen.contains("expires in "),
        "the expiry is not shown:\n{screen}"
    );
    term.keys(&["y"]);
    term.wait_for("✓ approved").await;
    term.wait_for("Made it.").await;
    term.prompt().await;
    assert_eq!(
        workspace_file(&alice, &id, "made.txt").await.as_deref(),
        Some(&b"made\n"[..])
    );

    llm.push(Reply::tool("shell", json!({"command": "rm keep.txt"})));
    llm.push(Reply::text("Left it."));
    term.line("remove it");
    term.wait_until("a second approval", |s| count(s, "approval needed") == 2)
        .await;
    term.keys(&["n"]);
    let screen = term.wait_for("✗ denied").await;
    assert!(screen.contains("risk high"), "{screen}");
    term.wait_for("Left it.").await;
    assert_eq!(
        workspace_file(&alice, &id, "keep.txt").await.as_deref(),
        Some(&b"precious\n"[..]),
        "a denied rm removed the file"
    );
}

#[actix_rt::test]
async fn ctrl_c_cancels_a_long_command_and_ctrl_d_quits() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id) = alice_in(&llm, "never").await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo started; sleep 120"}),
    ));
    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;
    term.line("wait a long time");
    term.wait_for("started").await;
    let pressed = Instant::now();
    term.keys(&["C-c"]);
    let screen = term.wait_for("⏹ cancelled").await;
    assert!(
        pressed.elapsed() < Duration::from_secs(20),
        "cancelling took {:?}",
        pressed.elapsed()
    );
    assert!(
        screen.contains("[killed") || screen.contains("[exit 137") || screen.contains("[exit 143"),
        "{screen}"
    );
    term.prompt().await;
    // At the prompt, one Ctrl-C says how to quit, a second quits.
    term.keys(&["C-c"]);
    term.wait_for("(Ctrl-C again, or Ctrl-D, to quit)").await;
    term.keys(&["C-c"]);
    term.wait_for("[exit 0]").await;
    drop(term);
    // Ctrl-D at an empty prompt quits too.
    let term = Term::start(home.path(), &["--server", &app.base, "--session", &id], &[]);
    term.prompt().await;
    term.keys(&["C-d"]);
    term.wait_for("[exit 0]").await;
}

#[actix_rt::test]
async fn a_session_started_on_the_websocket_goes_on_in_the_terminal() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_in(&llm, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::text("Answered on the page."));
    ws.say("asked on the page").await;
    ws.turn().await;

    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    let screen = term.prompt().await;
    assert!(screen.contains("you › asked on the page"), "{screen}");
    assert!(screen.contains("Answered on the page."), "{screen}");

    // Both peers see each other live.
    llm.push(Reply::text("Answered in the terminal."));
    term.line("asked in the terminal");
    let echo = ws.until("user_message").await;
    assert_eq!(echo["text"], "asked in the terminal");
    let reply = ws.until("assistant_message").await;
    assert_eq!(reply["text"], "Answered in the terminal.");
    term.wait_for("Answered in the terminal.").await;
    term.prompt().await;
    // The page's turn prints above a line half typed in the terminal,
    // which stays as it was.
    term.tmux(&["send-keys", "-t", "t", "-l", "half typ"]);
    term.wait_for("› half typ").await;
    llm.push(Reply::text("Answered on the page again."));
    ws.say("the page again").await;
    let screen = term.wait_for("Answered on the page again.").await;
    assert!(screen.contains("you › the page again"), "{screen}");
    assert_eq!(count(&screen, "Answered on the page."), 1, "{screen}");
    let screen = term
        .wait_until("the half-typed line below the page's turn", |s| {
            s.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.ends_with("› half typ"))
        })
        .await;
    assert!(
        screen.find("Answered on the page again.") < screen.rfind("› half typ"),
        "{screen}"
    );
    llm.push(Reply::text("Got the half-typed one."));
    term.line("ed");
    loop {
        let echo = ws.until("user_message").await;
        if echo["text"] != "the page again" {
            assert_eq!(echo["text"], "half typed");
            break;
        }
    }
    term.wait_for("Got the half-typed one.").await;
}

#[actix_rt::test]
async fn an_approval_answered_elsewhere_resolves_in_the_terminal() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_in(&llm, "always").await;
    let mut ws = alice.connect(Some(&id)).await;
    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo elsewhere > there.txt"}),
    ));
    llm.push(Reply::text("Done there."));
    term.line("ask the other window");
    term.wait_for("[y]es / [n]o / [a]lways").await;
    let request = ws.until("approval_request").await;
    ws.send(json!({"type": "approval_decision", "approval_id": request["approval_id"], "decision": "approve"}))
        .await;
    let screen = term.wait_for("✓ approved in another window").await;
    assert!(
        !screen.contains("[y]es / [n]o / [a]lways"),
        "the prompt stayed:\n{screen}"
    );
    term.wait_for("Done there.").await;
    assert_eq!(
        workspace_file(&alice, &id, "there.txt").await.as_deref(),
        Some(&b"elsewhere\n"[..])
    );
}

#[actix_rt::test]
async fn files_go_up_and_down_byte_exact() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_in(&llm, "never").await;
    let home = home();
    let bytes: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(home.path().join("big.bin"), &bytes).unwrap();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;
    term.line("/upload big.bin data");
    term.wait_for("uploaded big.bin → /workspace/data/big.bin (3.0 MiB)")
        .await;
    assert_eq!(
        workspace_file(&alice, &id, "data/big.bin").await.as_deref(),
        Some(&bytes[..])
    );
    term.prompt().await;
    term.line("/files data");
    term.wait_for("data/big.bin\n").await;
    term.prompt().await;
    term.line("/download data/big.bin copy.bin");
    term.wait_for("→ copy.bin (3.0 MiB)").await;
    assert_eq!(std::fs::read(home.path().join("copy.bin")).unwrap(), bytes);
    // A name that is taken is not overwritten without being asked.
    term.prompt().await;
    term.line("/download data/big.bin");
    term.wait_for("big.bin exists here").await;
    assert_eq!(std::fs::read(home.path().join("big.bin")).unwrap(), bytes);
    term.prompt().await;
    term.line("/download ../etc/passwd x");
    term.wait_for("cannot lead outside the workspace").await;
    assert!(!home.path().join("x").exists());
}

/// A TCP relay in front of the server that can cut every connection and
/// refuse new ones, as a dropped network would.
struct Relay {
    port: u16,
    upstream: Arc<Mutex<Option<std::net::SocketAddr>>>,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Relay {
    /// Listen now; relay to the address `forward_to` gives later.
    async fn start() -> Relay {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let upstream: Arc<Mutex<Option<std::net::SocketAddr>>> = Arc::default();
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let (u, o, c) = (upstream.clone(), open.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    return;
                };
                let to = *u.lock().unwrap();
                let (true, Some(to)) = (o.load(Ordering::SeqCst), to) else {
                    drop(down);
                    continue;
                };
                let task = tokio::spawn(async move {
                    if let Ok(mut up) = tokio::net::TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Relay {
            port,
            upstream,
            open,
            conns,
        }
    }

    fn forward_to(&self, to: std::net::SocketAddr) {
        *self.upstream.lock().unwrap() = Some(to);
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

#[actix_rt::test]
async fn a_dropped_connection_catches_up_without_repeating_anything() {
    let llm = FakeLlm::start().await;
    // The relay's address must pass the server's origin check.
    let relay = Relay::start().await;
    let server = format!("http://127.0.0.1:{}", relay.port);
    let origin = server.clone();
    let (app, alice, id) = alice_with_session(&llm.base_url, move |s| {
        s.server.allowed_origins = vec![origin]
    })
    .await;
    alice.set_mode(&id, "never").await;
    relay.forward_to(app.base.trim_start_matches("http://").parse().unwrap());
    let home = home();
    let term = Term::start(
        home.path(),
        &["--server", &server, "--user", "alice", "--session", &id],
        &[("IRONCLAW_PASSWORD", PASSWORD)],
    );
    term.prompt().await;
    llm.push(Reply::text("First answer."));
    term.line("first question");
    term.wait_for("First answer.").await;
    term.prompt().await;

    relay.cut();
    term.wait_for("connection lost").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo missed-output"}),
    ));
    llm.push(Reply::text("Missed answer."));
    ws.say("asked while you were away").await;
    ws.turn().await;
    relay.restore();

    let screen = term.wait_for("Missed answer.").await;
    assert!(
        screen.contains("what happened while disconnected"),
        "{screen}"
    );
    assert_eq!(
        count(&screen, "you › asked while you were away"),
        1,
        "{screen}"
    );
    assert_eq!(
        count(&screen, "missed-output"),
        2,
        "the call and its output, once each:\n{screen}"
    );
    assert_eq!(count(&screen, "you › first question"), 1, "{screen}");
    assert_eq!(count(&screen, "First answer."), 1, "{screen}");
    // And it is live again.
    llm.push(Reply::text("Live again."));
    ws.say("still there?").await;
    let screen = term.wait_for("Live again.").await;
    assert_eq!(count(&screen, "Missed answer."), 1, "{screen}");
}

/// `ironclaw chat --once` with stdin closed; (status, stdout, stderr).
async fn once(app: &TestApp, id: &str, args: &[&str]) -> (i32, String, String) {
    let home = home();
    let out = tokio::process::Command::new(BIN)
        .args([
            "chat",
            "--server",
            &app.base,
            "--user",
            "alice",
            "--session",
            id,
        ])
        .args(args)
        .env("IRONCLAW_PASSWORD", PASSWORD)
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env_remove("NO_COLOR")
        .current_dir(home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run ironclaw chat --once");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[actix_rt::test]
async fn once_prints_only_the_final_answer_on_stdout() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id) = alice_in(&llm, "never").await;
    llm.push(Reply::text("Let me look.").then_tool(
        "shell",
        json!({"command": "echo from-the-sandbox; echo warn >&2"}),
    ));
    llm.push(Reply::text("The answer is 42."));
    let (status, stdout, stderr) = once(&app, &id, &["--once", "what is it?"]).await;
    assert_eq!(status, 0, "stderr: {stderr}");
    assert_eq!(stdout, "The answer is 42.\n");
    assert!(stderr.contains("Let me look."), "{stderr}");
    assert!(stderr.contains("$ echo from-the-sandbox"), "{stderr}");
    assert!(stderr.contains("from-the-sandbox\n"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "escape codes in piped output: {stderr:?}"
    );
}

#[actix_rt::test]
async fn once_exits_nonzero_when_the_turn_ends_in_error() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id) = alice_in(&llm, "never").await;
    llm.push(Reply::status(400));
    let (status, stdout, stderr) = once(&app, &id, &["--once", "fail please"]).await;
    assert_eq!(status, 1, "stdout: {stdout} stderr: {stderr}");
    assert_eq!(stdout, "");
    assert!(stderr.contains("ended in an error"), "{stderr}");
    // A wrong password is an error too, said plainly.
    let out = tokio::process::Command::new(BIN)
        .args([
            "chat", "--server", &app.base, "--user", "alice", "--once", "hi",
        ])
        .env("IRONCLAW_PASSWORD", "wrong password here")
        .env("XDG_CONFIG_HOME", home().path().join("config"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .to_lowercase()
            .contains("password"),
        "{out:?}"
    );
    // So is a server that is not there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let out = tokio::process::Command::new(BIN)
        .args([
            "chat", "--server", &nowhere, "--user", "alice", "--once", "hi",
        ])
        .env("IRONCLAW_PASSWORD", PASSWORD)
        .env("XDG_CONFIG_HOME", home().path().join("config"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot reach IronClaw") && stderr.contains("is the server running?"),
        "{stderr}"
    );
    // So is a session that does not exist.
    let (status, _, stderr) = once(&app, "no-such-session", &["--once", "hi"]).await;
    assert_eq!(status, 1, "{stderr}");
    assert!(stderr.to_lowercase().contains("session"), "{stderr}");
}

#[actix_rt::test]
async fn once_follows_approve_deny_yes_and_ask_without_a_terminal() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_in(&llm, "always").await;
    keep_a_file(&alice, &id).await;

    llm.push(Reply::tool("shell", json!({"command": "rm keep.txt"})));
    llm.push(Reply::text("It was not allowed."));
    let (status, stdout, stderr) =
        once(&app, &id, &["--once", "remove it", "--approve=deny"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, "It was not allowed.\n");
    assert!(stderr.contains("denied"), "{stderr}");
    assert_eq!(
        workspace_file(&alice, &id, "keep.txt").await.as_deref(),
        Some(&b"precious\n"[..])
    );

    llm.push(Reply::tool("shell", json!({"command": "rm keep.txt"})));
    let (status, _, stderr) = once(&app, &id, &["--once", "remove it"]).await;
    assert_eq!(status, 2, "{stderr}");
    assert!(stderr.contains("--approve=yes"), "{stderr}");
    assert_eq!(
        workspace_file(&alice, &id, "keep.txt").await.as_deref(),
        Some(&b"precious\n"[..])
    );

    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo yes > yes.txt"}),
    ));
    llm.push(Reply::text("Written."));
    let (status, stdout, stderr) = once(&app, &id, &["--once", "write it", "--approve=yes"]).await;
    assert_eq!(status, 0, "{stderr}");
    assert_eq!(stdout, "Written.\n");
    assert_eq!(
        workspace_file(&alice, &id, "yes.txt").await.as_deref(),
        Some(&b"yes\n"[..])
    );
}

#[actix_rt::test]
async fn a_line_typed_while_the_agent_works_is_sent_after_its_turn() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id) = alice_in(&llm, "never").await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "sleep 2; echo slept"}),
    ));
    llm.push(Reply::text("First answer."));
    llm.push(Reply::text("Second answer."));
    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;
    term.line("one");
    term.wait_for("$ sleep 2").await;
    term.line("two");
    let screen = term.wait_for("Second answer.").await;
    assert_eq!(count(&screen, "you › two"), 1, "{screen}");
    assert!(
        screen.find("First answer.") < screen.find("you › two"),
        "{screen}"
    );
}

#[actix_rt::test]
async fn slash_commands_switch_sessions_modes_and_models_and_undo_a_command() {
    let llm = FakeLlm::start().await;
    llm.set_models(&["llama3.2", "qwen2.5"]);
    let (app, alice, id) = alice_in(&llm, "never").await;
    let home = home();
    let term = Term::alice(home.path(), &app, &id);
    term.prompt().await;
    term.line("/help");
    term.wait_for("/undo CALL").await;
    term.prompt().await;

    // A command, then undone by the id the terminal showed.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "echo v1 > notes.txt"}),
    ));
    llm.push(Reply::text("Wrote it."));
    term.line("write notes");
    let screen = term.wait_for("Wrote it.").await;
    term.prompt().await;
    let call = screen
        .lines()
        .find_map(|l| {
            l.split_once(" #")
                .filter(|_| l.starts_with("shell "))
                .map(|(_, id)| id.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no call id shown:\n{screen}"));
    assert_eq!(
        workspace_file(&alice, &id, "notes.txt").await.as_deref(),
        Some(&b"v1\n"[..])
    );
    term.line(&format!("/undo {call}"));
    term.wait_for(&format!("as before #{call}")).await;
    term.wait_for("↺ workspace put back").await;
    assert_eq!(
        workspace_file(&alice, &id, "notes.txt").await,
        None,
        "undo left the file"
    );
    term.prompt().await;

    // Mode and model change the session, and the status shows it.
    term.line("/mode always");
    term.wait_for("[llama3.2 · always] ›").await;
    term.line("/model qwen2.5");
    term.wait_for("[qwen2.5 · always] ›").await;
    let summary: Value = alice.get(&format!("/api/sessions/{id}")).json_body().await;
    assert_eq!(summary["model"], "qwen2.5");
    assert_eq!(summary["approval_mode"], "always");
    term.prompt().await;
    term.line("/model no-such-model");
    term.wait_for("no-such-model").await;
    term.prompt().await;

    // A new session, listed, and back to the first by its number.
    term.line("/new");
    term.wait_until("a second session header", |s| {
        count(s, "session “New chat”") == 2
    })
    .await;
    term.prompt().await;
    term.line("/sessions");
    let screen = term.wait_for("/switch N opens one").await;
    let first = screen
        .lines()
        .filter(|l| l.contains("(qwen2.5 · always"))
        .find_map(|l| {
            l.trim_start_matches('*')
                .trim()
                .split_once('.')
                .map(|(n, _)| n.trim().to_string())
        })
        .unwrap_or_else(|| panic!("the first session is not listed:\n{screen}"));
    term.prompt().await;
    term.line(&format!("/switch {first}"));
    let screen = term
        .wait_until("the first session again", |s| {
            count(s, "you › write notes") == 2
        })
        .await;
    assert!(
        screen.contains("[qwen2.5 · always] ›") || screen.contains("qwen2.5 · approvals: always"),
        "{screen}"
    );
}
