//! `ironclaw chat`: the agent from a terminal, a peer of the page over the
//! same WebSocket protocol and REST routes (DESIGN.md §2, §3, §7).
//!
//! - [`login`]: the saved per-server login and the password prompt.
//! - [`api`]: REST (sessions, files with progress, undo).
//! - [`link`]: the socket, reconnecting with backoff.
//! - [`view`]: events as terminal text, and what a replay adds.
//! - [`term`]: the line editor, one-key approvals, the terminal's state.
//!
//! This file holds the two ways to run: the interactive loop and `--once`.

pub mod api;
pub mod link;
pub mod login;
pub mod term;
pub mod view;

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use self::api::Api;
use self::link::{Link, LinkCmd, LinkEvent};
use self::term::{Input, Reader, Screen};
use self::view::{short, Paint, Seen, View};
use crate::protocol::{
    ApprovalId, ApprovalMode, CallId, ClientMessage, ClientMessageId, Decision, ServerEvent,
    SessionId, TurnEndReason, TurnId, UpdateSession,
};
use std::collections::VecDeque;

/// Two Ctrl-C within this long quit.
const DOUBLE_INTERRUPT: Duration = Duration::from_secs(2);

/// What `--approve` says to do with an approval request in `--once`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Approve {
    /// Ask on the terminal (fails without one).
    Ask,
    Deny,
    Yes,
}

/// The command line of `ironclaw chat`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChatArgs {
    /// The server (default http://127.0.0.1:<server.port>).
    #[arg(long)]
    pub server: Option<String>,
    /// Log in as this user (default: the saved login's, else asked).
    #[arg(long)]
    pub user: Option<String>,
    /// Open this session (default: the most recent one).
    #[arg(long, conflicts_with = "new")]
    pub session: Option<String>,
    /// Start a new session.
    #[arg(long)]
    pub new: bool,
    /// Run one turn with this message, print the final answer on stdout and
    /// exit (nonzero if the turn ends in error).
    #[arg(long, value_name = "MESSAGE")]
    pub once: Option<String>,
    /// With --once: what to do when a command needs approval.
    #[arg(long, value_enum, default_value = "ask")]
    pub approve: Approve,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
}

/// The server URL from `--server` or the configured port.
pub fn server_url(given: Option<&str>, port: u16) -> String {
    let url = given.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_string);
    let url = if url.contains("://") {
        url
    } else {
        format!("http://{url}")
    };
    url.trim_end_matches('/').to_string()
}

/// Run `ironclaw chat`; the process's exit status.
pub fn run(args: ChatArgs, port: u16) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ironclaw chat: {e}");
            return 1;
        }
    };
    let restore = term::Restore::save();
    let status = runtime.block_on(async move {
        match start(args, port).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("ironclaw chat: {e:#}");
                1
            }
        }
    });
    runtime.shutdown_timeout(Duration::from_millis(200));
    drop(restore);
    status
}

/// `ironclaw logout`: revoke the saved login on the server and forget it.
pub fn logout(server: Option<&str>, port: u16) -> anyhow::Result<()> {
    let url = server_url(server, port);
    let Some(saved) = login::forget(&url)? else {
        println!("not logged in to {url}");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let api = Api::new(&url, &saved.token, &saved.user)?;
    match runtime.block_on(api.logout()) {
        Ok(()) => println!("logged out of {url}"),
        Err(e) => println!("forgot the login for {url} (the server was not told: {e})"),
    }
    Ok(())
}

async fn start(args: ChatArgs, port: u16) -> anyhow::Result<i32> {
    let url = server_url(args.server.as_deref(), port);
    let from = if args.password_stdin {
        login::PasswordFrom::Stdin
    } else {
        login::PasswordFrom::EnvOrPrompt
    };
    let api = login::logged_in(&url, args.user.as_deref(), from).await?;
    let session = if args.new {
        Some(api.new_session().await?.id)
    } else {
        args.session.map(SessionId::from)
    };
    let link = link::start(api.clone(), session);
    match args.once {
        Some(text) => once(link, text, args.approve).await,
        None => Interactive::new(api, link)?.run().await,
    }
}

fn paint_for(tty: bool) -> Paint {
    Paint {
        color: tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    }
}

/// The session as the `session` frame describes it.
#[derive(Debug, Clone)]
struct Current {
    id: SessionId,
    title: String,
    model: String,
    mode: ApprovalMode,
}

/// An approval waiting for an answer.
#[derive(Debug, Clone)]
struct Pending {
    id: ApprovalId,
}

/// The one-key approval prompt on the screen.
struct KeyPrompt {
    id: ApprovalId,
    stop: Arc<AtomicBool>,
}

/// The approval a key was pressed for, and the key (`None`: none came).
type KeyAnswer = (ApprovalId, Option<char>);

const APPROVAL_KEYS: [char; 3] = ['y', 'n', 'a'];
const APPROVAL_PROMPT: &str = "  [y]es / [n]o / [a]lways for this session › ";

struct Interactive {
    api: Api,
    link: Link,
    view: View,
    seen: Seen,
    screen: Screen,
    reader: Reader,
    current: Option<Current>,
    /// The next `history` is of a session not shown yet.
    fresh: bool,
    /// A prompt is on the screen (the line editor has the terminal).
    reading: bool,
    /// The turn this terminal started, until its `turn_done`; before its
    /// echo arrives, the `client_id` it was sent with.
    mine: Option<Mine>,
    cancel_sent: bool,
    pending: Vec<Pending>,
    key_prompt: Option<KeyPrompt>,
    /// Answers from the one-key prompt's thread.
    keys: (
        mpsc::UnboundedSender<KeyAnswer>,
        mpsc::UnboundedReceiver<KeyAnswer>,
    ),
    /// The list `/sessions` last showed, for `/switch N`.
    listed: Vec<SessionId>,
    last_interrupt: Option<Instant>,
    down: bool,
    /// Whole lines typed while the agent worked, to send in turn.
    typed: VecDeque<String>,
}

#[derive(Debug, Clone)]
enum Mine {
    Sent(ClientMessageId),
    Turn(TurnId),
}

impl Interactive {
    fn new(api: Api, link: Link) -> anyhow::Result<Self> {
        let history = login::store_path()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("history")));
        if let Some(dir) = history.as_ref().and_then(|p| p.parent()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let (reader, screen) = term::start(history)?;
        let view = View::new(paint_for(screen.tty));
        Ok(Interactive {
            api,
            link,
            view,
            seen: Seen::default(),
            screen,
            reader,
            current: None,
            fresh: true,
            reading: false,
            mine: None,
            cancel_sent: false,
            pending: Vec::new(),
            key_prompt: None,
            keys: mpsc::unbounded_channel(),
            listed: Vec::new(),
            last_interrupt: None,
            down: false,
            typed: VecDeque::new(),
        })
    }

    fn out(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        if self.key_prompt.is_some() {
            // Keep the one-key prompt last on the screen.
            self.screen.write("\r\x1b[2K", false);
            self.screen.write(text, false);
            self.screen.write(APPROVAL_PROMPT, false);
        } else {
            self.screen.write(text, self.reading);
        }
    }

    fn note(&mut self, s: &str) {
        let t = self.view.note(s);
        self.out(&t);
    }

    fn error(&mut self, s: &str) {
        let t = self.view.error_line(s);
        self.out(&t);
    }

    fn busy(&self) -> bool {
        self.mine.is_some()
    }

    fn state(&self) -> &'static str {
        if self.down {
            "reconnecting"
        } else if !self.pending.is_empty() {
            "waiting for approval"
        } else if self.busy() {
            "working"
        } else {
            "idle"
        }
    }

    /// The status: model, approval mode and turn state, in the prompt and
    /// the terminal's title.
    fn status(&mut self) {
        let text = match &self.current {
            Some(c) => format!(
                "ironclaw · {} · {} · {}",
                c.model,
                c.mode.as_str(),
                self.state()
            ),
            None => format!("ironclaw · {}", self.state()),
        };
        self.screen.title(&text);
    }

    fn prompt_text(&self) -> String {
        match &self.current {
            Some(c) => format!("[{} · {}] › ", c.model, c.mode.as_str()),
            None => "› ".into(),
        }
    }

    /// Whether the prompt can go up: nothing else has the terminal.
    fn can_prompt(&self) -> bool {
        !self.reading && !self.busy() && self.key_prompt.is_none() && self.current.is_some()
    }

    /// Put the prompt up, with what was typed ahead while the agent worked:
    /// whole lines are taken in turn, a started one is put in the editor.
    fn prompt(&mut self) -> Option<String> {
        let ahead = if self.screen.tty {
            term::take_typed_ahead()
        } else {
            String::new()
        };
        let mut rest = ahead.as_str();
        while let Some(i) = rest.find('\n') {
            let line = rest[..i].trim_end_matches('\r');
            if !line.trim().is_empty() {
                self.typed.push_back(line.to_string());
            }
            rest = &rest[i + 1..];
        }
        if let Some(line) = self.typed.pop_front() {
            let shown = format!("{}{line}\n", self.prompt_text());
            self.screen.write(&shown, false);
            return Some(line);
        }
        self.reading = true;
        self.status();
        let prompt = self.prompt_text();
        self.screen.prompting(&prompt, rest);
        self.reader.prompt(prompt, rest.to_string());
        None
    }

    async fn run(mut self) -> anyhow::Result<i32> {
        let mut interrupts = signal(SignalKind::interrupt())?;
        loop {
            if self.can_prompt() {
                if let Some(line) = self.prompt() {
                    if let Some(code) = self.on_input(Input::Line(line)).await {
                        return Ok(code);
                    }
                    continue;
                }
            }
            tokio::select! {
                ev = self.link.events.recv() => {
                    let Some(ev) = ev else { return Ok(1) };
                    if let Some(code) = self.on_link(ev) {
                        return Ok(code);
                    }
                }
                input = self.reader.lines.recv(), if self.reading => {
                    self.reading = false;
                    let Some(input) = input else { return Ok(0) };
                    if let Some(code) = self.on_input(input).await {
                        return Ok(code);
                    }
                }
                key = self.keys.1.recv() => {
                    if let Some((id, key)) = key {
                        self.on_key(id, key);
                    }
                }
                _ = interrupts.recv() => {
                    if let Some(code) = self.on_interrupt() {
                        return Ok(code);
                    }
                }
            }
        }
    }

    fn on_interrupt(&mut self) -> Option<i32> {
        let again = self
            .last_interrupt
            .is_some_and(|t| t.elapsed() < DOUBLE_INTERRUPT);
        self.last_interrupt = Some(Instant::now());
        if self.busy() && !self.cancel_sent {
            self.cancel_sent = true;
            let _ = self.link.cmds.send(LinkCmd::Send(ClientMessage::Cancel));
            self.note("cancelling… (Ctrl-C again to quit)");
            return None;
        }
        if again || self.cancel_sent {
            self.stop_key_prompt();
            self.out("\n");
            return Some(130);
        }
        self.note("(Ctrl-C again to quit)");
        None
    }

    fn on_link(&mut self, ev: LinkEvent) -> Option<i32> {
        match ev {
            LinkEvent::Up => {
                if self.down {
                    self.note("reconnected");
                }
                self.down = false;
            }
            LinkEvent::Down { reason, retry_in } => {
                if !self.down {
                    self.view.reset();
                }
                self.down = true;
                self.note(&format!(
                    "connection lost ({reason}); reconnecting in {:.1} s…",
                    retry_in.as_secs_f64()
                ));
                self.status();
            }
            LinkEvent::Fatal(message) => {
                self.stop_key_prompt();
                self.error(&message);
                return Some(1);
            }
            LinkEvent::Event(ev) => self.on_event(*ev),
        }
        None
    }

    fn on_event(&mut self, ev: ServerEvent) {
        match &ev {
            ServerEvent::Session {
                session_id,
                title,
                model,
                approval_mode,
                ..
            } => {
                let same = self.current.as_ref().is_some_and(|c| &c.id == session_id);
                if !same {
                    self.fresh = true;
                    self.seen = Seen::default();
                    self.view.reset();
                    self.pending.clear();
                    self.stop_key_prompt();
                    self.note(&format!(
                        "session “{title}” · {model} · approvals: {}",
                        approval_mode.as_str()
                    ));
                } else if self.current.as_ref().is_some_and(|c| {
                    c.model != *model || c.mode != *approval_mode || c.title != *title
                }) {
                    self.note(&format!(
                        "session now: {model} · approvals: {}",
                        approval_mode.as_str()
                    ));
                }
                self.current = Some(Current {
                    id: session_id.clone(),
                    title: title.clone(),
                    model: model.clone(),
                    mode: *approval_mode,
                });
                self.status();
            }
            ServerEvent::History { events, more, .. } => {
                let shown: Vec<ServerEvent> = if self.fresh {
                    if *more {
                        self.note("… older messages are not shown");
                    }
                    events.clone()
                } else {
                    let missed = self.seen.missed(events);
                    if !missed.is_empty() {
                        self.note("── what happened while disconnected ──");
                    }
                    missed
                };
                self.fresh = false;
                // Which approvals are still open, and whether our turn ended.
                for e in &shown {
                    self.show(e);
                }
                self.view.attached();
                self.pending.retain(|p| {
                    !events.iter().any(|e| matches!(e, ServerEvent::ApprovalResolved { approval_id, .. } if *approval_id == p.id))
                });
                self.next_key_prompt();
                self.status();
            }
            _ => self.show(&ev),
        }
    }

    /// Show one event and follow what it means for the turn state.
    fn show(&mut self, ev: &ServerEvent) {
        let text = self.view.event(ev);
        self.out(&text);
        if ev.is_stored() {
            self.seen.shown(ev);
        }
        match ev {
            ServerEvent::UserMessage {
                turn_id, client_id, ..
            } => {
                if let (Some(Mine::Sent(sent)), Some(got)) = (&self.mine, client_id) {
                    if sent == got {
                        self.mine = Some(Mine::Turn(turn_id.clone()));
                    }
                }
            }
            ServerEvent::ApprovalRequest {
                approval_id,
                expires_at,
                ..
            } => {
                let expired = chrono::DateTime::parse_from_rfc3339(expires_at)
                    .is_ok_and(|at| at < chrono::Utc::now());
                if !expired && !self.pending.iter().any(|p| &p.id == approval_id) {
                    self.pending.push(Pending {
                        id: approval_id.clone(),
                    });
                    if self.reading {
                        self.note("answer with y, n or a (always for this session) and Enter");
                    }
                    self.next_key_prompt();
                }
                self.status();
            }
            ServerEvent::ApprovalResolved { approval_id, .. } => {
                self.pending.retain(|p| &p.id != approval_id);
                if self
                    .key_prompt
                    .as_ref()
                    .is_some_and(|k| &k.id == approval_id)
                {
                    self.stop_key_prompt();
                }
                self.next_key_prompt();
                self.status();
            }
            ServerEvent::TurnDone { turn_id, .. } => {
                if matches!(&self.mine, Some(Mine::Turn(t)) if t == turn_id) {
                    self.mine = None;
                    self.cancel_sent = false;
                    // A Ctrl-C that cancelled the turn does not count
                    // towards quitting at the prompt.
                    self.last_interrupt = None;
                    self.stop_key_prompt();
                    self.pending.clear();
                    self.status();
                }
            }
            _ => {}
        }
    }

    /// Ask for the oldest open approval with one key, when the line editor
    /// does not have the terminal.
    fn next_key_prompt(&mut self) {
        if self.key_prompt.is_some() || self.reading || !self.screen.tty {
            return;
        }
        let Some(first) = self.pending.first().cloned() else {
            return;
        };
        let stop = Arc::new(AtomicBool::new(false));
        self.key_prompt = Some(KeyPrompt {
            id: first.id.clone(),
            stop: stop.clone(),
        });
        self.screen.write(APPROVAL_PROMPT, false);
        let tx = self.keys.0.clone();
        tokio::task::spawn_blocking(move || {
            let key = term::read_key(&APPROVAL_KEYS, stop);
            let _ = tx.send((first.id, key));
        });
    }

    /// Take the one-key prompt off the screen.
    fn stop_key_prompt(&mut self) {
        if let Some(k) = self.key_prompt.take() {
            k.stop.store(true, Ordering::SeqCst);
            self.screen.write("\r\x1b[2K", false);
        }
    }

    fn on_key(&mut self, id: ApprovalId, key: Option<char>) {
        let current = self.key_prompt.as_ref().is_some_and(|k| k.id == id);
        if !current {
            return;
        }
        self.key_prompt = None;
        let Some(key) = key else {
            self.screen.write("\n", false);
            return;
        };
        let word = match key {
            'y' => "yes",
            'a' => "always",
            _ => "no",
        };
        self.screen.write(&format!("{word}\n"), false);
        self.answer(&id, key);
    }

    fn answer(&mut self, id: &ApprovalId, key: char) {
        let (decision, remember) = match key {
            'y' => (Decision::Approve, false),
            'a' => (Decision::Approve, true),
            _ => (Decision::Deny, false),
        };
        self.view.answered_here(id);
        let _ = self
            .link
            .cmds
            .send(LinkCmd::Send(ClientMessage::ApprovalDecision {
                approval_id: id.clone(),
                decision,
                remember,
            }));
    }

    async fn on_input(&mut self, input: Input) -> Option<i32> {
        let line = match input {
            Input::Eof => return Some(0),
            Input::Interrupted => {
                if self
                    .last_interrupt
                    .is_some_and(|t| t.elapsed() < DOUBLE_INTERRUPT)
                {
                    return Some(0);
                }
                self.last_interrupt = Some(Instant::now());
                self.note("(Ctrl-C again, or Ctrl-D, to quit)");
                return None;
            }
            Input::Line(line) => line,
        };
        let text = line.trim();
        if text.is_empty() {
            return None;
        }
        if let Some(command) = text.strip_prefix('/') {
            return match self.command(command).await {
                Ok(quit) => quit,
                Err(e) => {
                    self.error(&format!("{e:#}"));
                    None
                }
            };
        }
        if let Some(first) = self.pending.first().cloned() {
            let key = match text.to_ascii_lowercase().as_str() {
                "y" | "yes" => Some('y'),
                "n" | "no" => Some('n'),
                "a" | "always" => Some('a'),
                _ => None,
            };
            if let Some(key) = key {
                self.answer(&first.id, key);
                return None;
            }
        }
        let client_id = ClientMessageId::random();
        self.mine = Some(Mine::Sent(client_id.clone()));
        self.cancel_sent = false;
        let _ = self
            .link
            .cmds
            .send(LinkCmd::Send(ClientMessage::UserMessage {
                text: line.clone(),
                client_id: Some(client_id),
            }));
        if let Some(c) = &self.current {
            let s = format!("● {} working… (Ctrl-C cancels)", c.model);
            self.note(&s);
        }
        self.status();
        None
    }

    fn session_id(&self) -> anyhow::Result<SessionId> {
        self.current
            .as_ref()
            .map(|c| c.id.clone())
            .ok_or_else(|| anyhow!("not connected to a session yet"))
    }

    /// A slash command; `Some(status)` to quit.
    async fn command(&mut self, line: &str) -> anyhow::Result<Option<i32>> {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or("");
        let args: Vec<&str> = words.collect();
        match (name, args.as_slice()) {
            ("help" | "?", _) => {
                let t = self.view.lines(HELP);
                self.out(&t);
            }
            ("quit" | "exit", _) => return Ok(Some(0)),
            ("sessions", []) => {
                let list = self.api.sessions().await?;
                let current = self.current.as_ref().map(|c| c.id.clone());
                let mut lines = String::new();
                for (i, s) in list.iter().enumerate() {
                    let mark = if Some(&s.id) == current.as_ref() {
                        "*"
                    } else {
                        " "
                    };
                    lines.push_str(&format!(
                        "{mark}{:>3}. {}  ({} · {} · {})\n",
                        i + 1,
                        s.title,
                        s.model,
                        s.approval_mode.as_str(),
                        s.updated_at
                            .get(..16)
                            .unwrap_or(&s.updated_at)
                            .replace('T', " ")
                    ));
                }
                if list.is_empty() {
                    lines.push_str("no sessions\n");
                }
                self.listed = list.into_iter().map(|s| s.id).collect();
                let t = self.view.lines(&format!("{lines}/switch N opens one"));
                self.out(&t);
            }
            ("switch", [which]) => {
                let id = match which.parse::<usize>() {
                    Ok(n) if n >= 1 && n <= self.listed.len() => self.listed[n - 1].clone(),
                    Ok(_) => bail!("no session {which} in the last /sessions list"),
                    Err(_) => {
                        let all = self.api.sessions().await?;
                        let hits: Vec<_> = all.iter().filter(|s| s.id.starts_with(which)).collect();
                        match hits.as_slice() {
                            [one] => one.id.clone(),
                            [] => bail!("no session starts with {which}"),
                            _ => bail!("{which} names more than one session"),
                        }
                    }
                };
                self.switch(Some(id));
            }
            ("new", []) => {
                let s = self.api.new_session().await?;
                self.switch(Some(s.id));
            }
            ("mode", [mode]) => {
                let mode = ApprovalMode::parse(mode)
                    .ok_or_else(|| anyhow!("the modes are always, risky and never"))?;
                self.change(UpdateSession {
                    approval_mode: Some(mode),
                    ..UpdateSession::default()
                })
                .await?;
            }
            ("model", [model]) => {
                self.change(UpdateSession {
                    model: Some((*model).to_string()),
                    ..UpdateSession::default()
                })
                .await?;
            }
            ("files", [] | [_]) => {
                let id = self.session_id()?;
                let dir = args.first().copied().unwrap_or("");
                let list = self.api.files(&id, dir.trim_matches('/')).await?;
                let mut lines = String::new();
                for f in &list {
                    let kind = if f.kind == crate::protocol::FileKind::Dir {
                        "/"
                    } else {
                        ""
                    };
                    lines.push_str(&format!("{:>10}  {}{}\n", human(f.size), f.path, kind));
                }
                if list.is_empty() {
                    lines.push_str("(empty)\n");
                }
                let t = self.view.lines(&lines);
                self.out(&t);
            }
            ("upload", [local] | [local, _]) => {
                let id = self.session_id()?;
                let local = expand(local);
                let name = local
                    .file_name()
                    .ok_or_else(|| anyhow!("{} is not a file", local.display()))?
                    .to_string_lossy()
                    .to_string();
                let remote = match args.get(1) {
                    Some(dir) => format!("{}/{name}", dir.trim_matches('/')),
                    None => name,
                };
                let remote = remote.trim_start_matches('/').to_string();
                let size = self.api.upload(&id, &local, &remote).await?;
                self.note(&format!(
                    "uploaded {} → /workspace/{remote} ({})",
                    local.display(),
                    human(size)
                ));
            }
            ("download", [remote] | [remote, _]) => {
                let id = self.session_id()?;
                let remote = remote
                    .trim_start_matches("/workspace/")
                    .trim_start_matches('/');
                let local = match args.get(1) {
                    Some(l) => {
                        let l = expand(l);
                        if l.is_dir() {
                            l.join(Path::new(remote).file_name().unwrap_or_default())
                        } else {
                            l
                        }
                    }
                    None => PathBuf::from(Path::new(remote).file_name().unwrap_or_default()),
                };
                if args.get(1).is_none() && local.exists() {
                    bail!(
                        "{} exists here; give a local path to write to: /download {remote} LOCAL",
                        local.display()
                    );
                }
                let size = self.api.download(&id, remote, &local).await?;
                self.note(&format!(
                    "downloaded /workspace/{remote} → {} ({})",
                    local.display(),
                    human(size)
                ));
            }
            ("undo", [call]) => {
                let id = self.session_id()?;
                let call = call.trim_start_matches('#');
                let points = self.api.checkpoints(&id).await?;
                let hits: Vec<_> = points
                    .iter()
                    .filter(|p| !p.dropped && view::names(call, &p.call_id))
                    .collect();
                let target: CallId = match hits.as_slice() {
                    [one] => one.call_id.clone(),
                    [] => {
                        let can: Vec<String> = points
                            .iter()
                            .filter(|p| !p.dropped)
                            .map(|p| format!("#{}", short(&p.call_id)))
                            .collect();
                        if can.is_empty() {
                            bail!("no command #{call} can be undone: nothing in this session can");
                        }
                        bail!(
                            "no command #{call} can be undone; these can: {}",
                            can.join(" ")
                        )
                    }
                    _ => bail!("#{call} names more than one command; give more of its id"),
                };
                let done = self.api.revert(&id, &target).await?;
                self.note(&format!(
                    "put back {} path{} as before #{}",
                    done.paths.len(),
                    if done.paths.len() == 1 { "" } else { "s" },
                    short(&target)
                ));
            }
            _ => bail!("unknown command /{line}; /help lists them"),
        }
        Ok(None)
    }

    /// Change the session's settings; the status shows them at once.
    async fn change(&mut self, change: UpdateSession) -> anyhow::Result<()> {
        let id = self.session_id()?;
        let updated = self.api.update_session(&id, &change).await?;
        self.updated(updated);
        Ok(())
    }

    /// The session as a REST answer has it now (its `session` frame may
    /// come after the next prompt).
    fn updated(&mut self, s: crate::protocol::SessionSummary) {
        if let Some(c) = self.current.as_mut().filter(|c| c.id == s.id) {
            c.model = s.model;
            c.mode = s.approval_mode;
            c.title = s.title;
            let line = format!("session now: {} · approvals: {}", c.model, c.mode.as_str());
            self.note(&line);
        }
    }

    fn switch(&mut self, id: Option<SessionId>) {
        self.stop_key_prompt();
        self.pending.clear();
        self.mine = None;
        let _ = self.link.cmds.send(LinkCmd::Switch(id));
    }
}

const HELP: &str = "\
Type a message and press Enter to talk to the agent.
  Ctrl-C            cancel the running turn (twice: quit)
  Ctrl-D            quit (at an empty prompt)
  /sessions         list your sessions
  /switch N         open session N of that list (or an id)
  /new              start a new session
  /mode MODE        approvals: always, risky or never
  /model NAME       switch this session's model
  /files [DIR]      list workspace files
  /upload LOCAL [DIR]     upload a file into the workspace
  /download PATH [LOCAL]  download a workspace file
  /undo CALL        put the workspace back as it was before command #CALL
  /quit             quit";

fn expand(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1024.0 && unit < UNITS.len() - 1 {
        size /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", UNITS[unit])
    }
}

/// `--once`: one turn, the final answer on stdout, everything else on
/// stderr. Exit status: 0 when the turn completed, 1 when it ended in
/// error (or the connection could not be kept), 2 when an approval had to
/// be asked without a terminal, 130 when cancelled.
async fn once(mut link: Link, text: String, approve: Approve) -> anyhow::Result<i32> {
    let tty = std::io::stderr().is_terminal();
    let mut view = View::new(paint_for(tty));
    view.stream_assistant = false;
    let mut seen = Seen::default();
    let mut attached = false;
    let client_id = ClientMessageId::random();
    let mut turn: Option<TurnId> = None;
    // Calls of our turn, so only its approvals are answered.
    let mut calls: HashMap<CallId, ()> = HashMap::new();
    let mut answer: Option<String> = None;
    let mut interrupts = signal(SignalKind::interrupt())?;
    let mut cancelled = false;
    let err = |s: &str| {
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(s.as_bytes());
        let _ = e.flush();
    };
    loop {
        let ev = tokio::select! {
            ev = link.events.recv() => ev,
            _ = interrupts.recv() => {
                if cancelled {
                    return Ok(130);
                }
                cancelled = true;
                let _ = link.cmds.send(LinkCmd::Send(ClientMessage::Cancel));
                err(&view.note("cancelling… (Ctrl-C again to quit)"));
                continue;
            }
        };
        let events = match ev {
            None => return Ok(1),
            Some(LinkEvent::Up) => continue,
            Some(LinkEvent::Down { reason, retry_in }) => {
                err(&view.note(&format!(
                    "connection lost ({reason}); reconnecting in {:.1} s…",
                    retry_in.as_secs_f64()
                )));
                continue;
            }
            Some(LinkEvent::Fatal(message)) => {
                err(&view.error_line(&message));
                return Ok(1);
            }
            Some(LinkEvent::Event(ev)) => match *ev {
                ServerEvent::Session { .. } => continue,
                ServerEvent::History { events, .. } => {
                    if !attached {
                        // What came before this turn is not part of it.
                        for e in &events {
                            seen.shown(e);
                        }
                        attached = true;
                        let _ = link.cmds.send(LinkCmd::Send(ClientMessage::UserMessage {
                            text: text.clone(),
                            client_id: Some(client_id.clone()),
                        }));
                        continue;
                    }
                    view.attached();
                    seen.missed(&events)
                }
                other => vec![other],
            },
        };
        for ev in events {
            if ev.is_stored() {
                seen.shown(&ev);
            }
            match &ev {
                ServerEvent::UserMessage {
                    turn_id,
                    client_id: Some(c),
                    ..
                } if *c == client_id => {
                    turn = Some(turn_id.clone());
                }
                ServerEvent::ToolCall {
                    turn_id, call_id, ..
                } if turn.as_ref() == Some(turn_id) => {
                    calls.insert(call_id.clone(), ());
                    // The text before a call was not the final answer.
                    if let Some(a) = answer.take() {
                        err(&view.lines(&a));
                    }
                }
                ServerEvent::AssistantMessage { turn_id, text }
                    if turn.as_ref() == Some(turn_id) =>
                {
                    if let Some(a) = answer.replace(text.clone()) {
                        err(&view.lines(&a));
                    }
                }
                _ => {}
            }
            err(&view.event(&ev));
            match &ev {
                ServerEvent::ApprovalRequest {
                    approval_id,
                    call_id,
                    ..
                } if calls.contains_key(call_id) => {
                    let key = match approve {
                        Approve::Yes => 'y',
                        Approve::Deny => 'n',
                        Approve::Ask => {
                            if !std::io::stdin().is_terminal() {
                                err(&view.error_line(
                                    "this command needs approval and there is no terminal to ask on: run with --approve=yes or --approve=deny",
                                ));
                                let _ = link.cmds.send(LinkCmd::Send(ClientMessage::Cancel));
                                tokio::time::sleep(Duration::from_millis(300)).await;
                                return Ok(2);
                            }
                            err(APPROVAL_PROMPT);
                            let stop = Arc::new(AtomicBool::new(false));
                            let key = tokio::task::spawn_blocking(move || {
                                term::read_key(&APPROVAL_KEYS, stop)
                            })
                            .await
                            .ok()
                            .flatten()
                            .unwrap_or('n');
                            err("\n");
                            key
                        }
                    };
                    view.answered_here(approval_id);
                    let _ = link
                        .cmds
                        .send(LinkCmd::Send(ClientMessage::ApprovalDecision {
                            approval_id: approval_id.clone(),
                            decision: if key == 'n' {
                                Decision::Deny
                            } else {
                                Decision::Approve
                            },
                            remember: key == 'a',
                        }));
                }
                ServerEvent::TurnDone { turn_id, reason } if turn.as_ref() == Some(turn_id) => {
                    return Ok(match reason {
                        TurnEndReason::Completed => {
                            if let Some(a) = answer {
                                let mut out = std::io::stdout().lock();
                                let _ = writeln!(out, "{}", a.trim_end_matches('\n'));
                                let _ = out.flush();
                            }
                            0
                        }
                        TurnEndReason::Cancelled => 130,
                        TurnEndReason::Error => 1,
                    });
                }
                _ => {}
            }
        }
    }
}
