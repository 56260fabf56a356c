//! How the terminal shows a session: each protocol event as text (color on
//! a terminal, plain when piped or under `NO_COLOR`), and which events of a
//! `history` replayed after a reconnect were already on the screen.
//!
//! Nothing here touches the terminal: [`View`] turns events into strings
//! and [`Seen`] decides what a replay adds, so both are tested as plain
//! functions.

use std::collections::{HashMap, HashSet};

use crate::protocol::{
    ApprovalId, ChangeKind, DecidedBy, LogLevel, OutputStream, Resolution, Risk, RiskLevel,
    ServerEvent, Tool, TurnEndReason, TurnId,
};

/// ANSI styling, or none.
#[derive(Debug, Clone, Copy)]
pub struct Paint {
    pub color: bool,
}

impl Paint {
    fn wrap(self, code: &str, s: &str) -> String {
        if self.color && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    pub fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    pub fn dim(self, s: &str) -> String {
        self.wrap("2", s)
    }

    pub fn red(self, s: &str) -> String {
        self.wrap("31", s)
    }

    pub fn green(self, s: &str) -> String {
        self.wrap("32", s)
    }

    pub fn yellow(self, s: &str) -> String {
        self.wrap("33", s)
    }

    pub fn cyan(self, s: &str) -> String {
        self.wrap("36", s)
    }
}

/// The short form of a call id shown to the person (`/undo` takes it
/// back): eight characters after its `call_` / `restore_` prefix.
pub fn short(id: &str) -> &str {
    let bare = id
        .strip_prefix("call_")
        .or_else(|| id.strip_prefix("restore_"))
        .unwrap_or(id);
    bare.get(..8).unwrap_or(bare)
}

/// Whether `given` (as typed after `/undo`, with or without `#`) names
/// the call `id`.
pub fn names(given: &str, id: &str) -> bool {
    let given = given.trim_start_matches('#');
    !given.is_empty()
        && (id.starts_with(given) || short(id).starts_with(given) || {
            let bare = id.split_once('_').map_or(id, |(_, b)| b);
            bare.starts_with(given)
        })
}

/// Turns events into terminal text, keeping track of the line the cursor
/// is on and of the reply being streamed.
pub struct View {
    pub paint: Paint,
    /// The last text written ended a line.
    line_start: bool,
    /// The reply being streamed: its turn and the text shown so far.
    streaming: Option<(TurnId, String)>,
    /// The next delta is the whole partial reply so far (sent to a socket
    /// that has just attached), not a fragment to append.
    catching_up: bool,
    /// Stream assistant text as it comes (off for `--once`, which prints
    /// the final answer on its own).
    pub stream_assistant: bool,
    /// Approvals this terminal answered, to tell them from ones answered
    /// elsewhere.
    answered_here: HashSet<ApprovalId>,
}

impl View {
    pub fn new(paint: Paint) -> Self {
        View {
            paint,
            line_start: true,
            streaming: None,
            catching_up: false,
            stream_assistant: true,
            answered_here: HashSet::new(),
        }
    }

    /// A `history` has just been shown: the next delta, if any, is the
    /// reply so far.
    pub fn attached(&mut self) {
        self.catching_up = true;
    }

    /// Forget the reply being streamed (another session is shown).
    pub fn reset(&mut self) {
        self.streaming = None;
        self.catching_up = false;
    }

    pub fn answered_here(&mut self, id: &ApprovalId) {
        self.answered_here.insert(id.clone());
    }

    /// Whether the cursor is at the start of a line.
    pub fn at_line_start(&self) -> bool {
        self.line_start
    }

    /// Text that continues the current line.
    fn raw(&mut self, s: String) -> String {
        if !s.is_empty() {
            self.line_start = s.ends_with('\n');
        }
        s
    }

    /// Text on lines of its own.
    fn block(&mut self, s: &str) -> String {
        let mut out = String::new();
        if !self.line_start {
            out.push('\n');
        }
        out.push_str(s);
        if !s.ends_with('\n') {
            out.push('\n');
        }
        self.line_start = true;
        out
    }

    /// A line from the client itself (connection state, command answers).
    pub fn note(&mut self, s: &str) -> String {
        let text = self.paint.dim(s);
        self.block(&text)
    }

    /// A line that needs the person's attention.
    pub fn warn(&mut self, s: &str) -> String {
        let text = self.paint.yellow(s);
        self.block(&text)
    }

    /// An error the client met.
    pub fn error_line(&mut self, s: &str) -> String {
        let text = self.paint.red(s);
        self.block(&text)
    }

    /// Plain lines (a listing).
    pub fn lines(&mut self, s: &str) -> String {
        self.block(s)
    }

    fn end_stream(&mut self) -> String {
        match self.streaming.take() {
            Some(_) if !self.line_start => self.raw("\n".into()),
            _ => String::new(),
        }
    }

    /// The text for one event.
    pub fn event(&mut self, ev: &ServerEvent) -> String {
        let p = self.paint;
        let catching_up = std::mem::take(&mut self.catching_up);
        match ev {
            ServerEvent::Session { .. } | ServerEvent::History { .. } => String::new(),
            ServerEvent::AssistantDelta { turn_id, text } => {
                if !self.stream_assistant {
                    return String::new();
                }
                let mut out = String::new();
                let same = matches!(&self.streaming, Some((t, _)) if t == turn_id);
                if !same {
                    out.push_str(&self.end_stream());
                    if !self.line_start {
                        out.push_str(&self.raw("\n".into()));
                    }
                    self.streaming = Some((turn_id.clone(), String::new()));
                }
                let Some((_, shown)) = self.streaming.as_mut() else {
                    return out;
                };
                // A catch-up delta repeats what is already on the screen.
                let new = if catching_up && text.starts_with(shown.as_str()) {
                    text[shown.len()..].to_string()
                } else if catching_up && same {
                    // The screen and the server disagree: start the reply again.
                    shown.clear();
                    format!("\n{text}")
                } else {
                    text.clone()
                };
                if catching_up {
                    *shown = text.clone();
                } else {
                    shown.push_str(text);
                }
                out.push_str(&self.raw(new));
                out
            }
            ServerEvent::AssistantMessage { turn_id, text } => {
                if !self.stream_assistant {
                    return String::new();
                }
                match self.streaming.take() {
                    Some((t, shown)) if &t == turn_id && text.starts_with(shown.as_str()) => {
                        let rest = text[shown.len()..].to_string();
                        let mut out = self.raw(rest);
                        if !self.line_start {
                            out.push_str(&self.raw("\n".into()));
                        }
                        out
                    }
                    other => {
                        let mut out = String::new();
                        if other.is_some() && !self.line_start {
                            out.push_str(&self.raw("\n".into()));
                        }
                        out.push_str(&self.block(text));
                        out
                    }
                }
            }
            ServerEvent::UserMessage { text, .. } => {
                let mut out = self.end_stream();
                let mut lines = text.lines();
                let first = lines.next().unwrap_or("");
                let mut s = format!("{} {}", p.cyan(&p.bold("you ›")), p.bold(first));
                for line in lines {
                    s.push_str(&format!("\n      {}", p.bold(line)));
                }
                out.push_str(&self.block(&format!("\n{s}")));
                out
            }
            ServerEvent::ToolCall {
                call_id,
                tool,
                code,
                risk,
                ..
            } => {
                let mut out = self.end_stream();
                let head = format!(
                    "{} {} {}",
                    p.bold(tool_name(*tool)),
                    risk_label(p, risk),
                    p.dim(&format!("#{}", short(call_id)))
                );
                out.push_str(&self.block(&format!("{head}\n{}", code_lines(p, *tool, code))));
                out
            }
            ServerEvent::ApprovalRequest {
                approval_id: _,
                tool,
                code,
                risk,
                expires_at,
                ..
            } => {
                let mut out = self.end_stream();
                let mut s = format!(
                    "{} {} {}",
                    p.yellow(&p.bold("⚠ approval needed:")),
                    p.bold(tool_name(*tool)),
                    risk_label(p, risk)
                );
                for reason in &risk.reasons {
                    s.push_str(&format!("\n  • {reason}"));
                }
                s.push('\n');
                s.push_str(&code_lines(p, *tool, code));
                s.push_str(&format!("\n  {}", p.dim(&expiry(expires_at))));
                out.push_str(&self.block(&s));
                out
            }
            ServerEvent::ApprovalResolved {
                approval_id,
                decision,
                by,
                ..
            } => {
                let here = self.answered_here.contains(approval_id);
                let who = match by {
                    DecidedBy::Policy => " by policy",
                    DecidedBy::User if here => "",
                    DecidedBy::User => " in another window",
                };
                let s = match decision {
                    Resolution::Approved => p.green(&format!("✓ approved{who}")),
                    Resolution::Denied => p.red(&format!("✗ denied{who}")),
                    Resolution::TimedOut => p.red("⌛ approval timed out: not run"),
                };
                self.block(&s)
            }
            ServerEvent::ExecOutput { stream, data, .. } => {
                let mut out = self.end_stream();
                let text = match stream {
                    OutputStream::Stdout => data.clone(),
                    OutputStream::Stderr => p.red(data),
                };
                out.push_str(&self.raw(text));
                if data.ends_with('\n') {
                    self.line_start = true;
                }
                out
            }
            ServerEvent::ExecDone {
                exit_code,
                timed_out,
                duration_ms,
                ..
            } => {
                let secs = *duration_ms as f64 / 1000.0;
                let s = match (exit_code, timed_out) {
                    (_, true) => p.red(&format!("[timed out after {secs:.1} s]")),
                    (Some(0), _) => p.dim(&format!("[exit 0 · {secs:.1} s]")),
                    (Some(code), _) => p.red(&format!("[exit {code} · {secs:.1} s]")),
                    (None, _) => p.red(&format!("[killed · {secs:.1} s]")),
                };
                self.block(&s)
            }
            ServerEvent::FilesChanged {
                paths,
                uploaded,
                changes,
                ..
            } => {
                let list = if changes.is_empty() {
                    paths.join(", ")
                } else {
                    changes
                        .iter()
                        .map(|c| {
                            let mark = match c.change {
                                ChangeKind::Created => "+",
                                ChangeKind::Modified => "~",
                                ChangeKind::Deleted => "-",
                            };
                            format!("{mark}{}", c.path)
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let what = if *uploaded { "uploaded" } else { "files" };
                let s = p.dim(&format!("{what}: {}", clip(&list, 300)));
                let mut out = self.end_stream();
                out.push_str(&self.block(&s));
                out
            }
            ServerEvent::WorkspaceRestored {
                call_id,
                paths,
                restore_id,
            } => {
                let s = format!(
                    "↺ workspace put back to before #{} ({} path{}: {}); /undo {} undoes this",
                    short(call_id),
                    paths.len(),
                    if paths.len() == 1 { "" } else { "s" },
                    clip(&paths.join(", "), 200),
                    short(restore_id)
                );
                let text = p.yellow(&s);
                self.block(&text)
            }
            ServerEvent::Log {
                level,
                source,
                message,
            } => {
                let source = serde_json::to_value(source)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let s = format!("[{source}] {message}");
                let text = match level {
                    LogLevel::Info => p.dim(&s),
                    LogLevel::Warn => p.yellow(&s),
                    LogLevel::Error => p.red(&s),
                };
                let mut out = self.end_stream();
                out.push_str(&self.block(&text));
                out
            }
            ServerEvent::TurnDone { reason, .. } => {
                let mut out = self.end_stream();
                match reason {
                    TurnEndReason::Completed => {}
                    TurnEndReason::Cancelled => out.push_str(&self.block(&p.yellow("⏹ cancelled"))),
                    TurnEndReason::Error => {
                        out.push_str(&self.block(&p.red("✗ the turn ended in an error")))
                    }
                }
                out
            }
            ServerEvent::Error { code, message } => {
                let code = serde_json::to_value(code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let mut out = self.end_stream();
                out.push_str(&self.block(&p.red(&format!("error ({code}): {message}"))));
                out
            }
        }
    }
}

fn tool_name(tool: Tool) -> &'static str {
    match tool {
        Tool::Shell => "shell",
        Tool::Python => "python",
    }
}

fn risk_label(p: Paint, risk: &Risk) -> String {
    match risk.level {
        RiskLevel::Low => p.green("risk low"),
        RiskLevel::Medium => p.yellow("risk medium"),
        RiskLevel::High => p.red("risk high"),
    }
}

/// The code of a call, each line behind its tool's prompt.
fn code_lines(p: Paint, tool: Tool, code: &str) -> String {
    let (first, more) = match tool {
        Tool::Shell => ("  $ ", "    "),
        Tool::Python => ("  >>> ", "  ... "),
    };
    code.lines()
        .enumerate()
        .map(|(i, line)| format!("{}{}", p.dim(if i == 0 { first } else { more }), line))
        .collect::<Vec<_>>()
        .join("\n")
}

/// "expires in 4m 59s (at 16:05:12)".
pub fn expiry(expires_at: &str) -> String {
    let Ok(at) = chrono::DateTime::parse_from_rfc3339(expires_at) else {
        return format!("expires at {expires_at}");
    };
    let left = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    let local = at.with_timezone(&chrono::Local).format("%H:%M:%S");
    let secs = left.num_seconds();
    if secs <= 0 {
        return format!("expired at {local}");
    }
    let span = if secs >= 60 {
        format!("{}m {:02}s", secs / 60, secs % 60)
    } else {
        format!("{secs}s")
    };
    format!("expires in {span} (at {local})")
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// Which stored events are already on the screen, so that a `history`
/// replayed after a reconnect shows only what was missed.
///
/// Stored events carry no sequence number, so each is known by its ids:
/// a user message by its turn, a call, an approval, an exit and a turn's
/// end by theirs. The last event of the replay with such an id that was
/// shown anchors it: what comes after it is new, except the id-less events
/// (logs, replies, file changes) seen after the anchor, counted by content.
/// Output is counted in bytes per call and stream, because the server may
/// store a call's chunks merged.
#[derive(Default)]
pub struct Seen {
    keys: Vec<String>,
    unique: HashMap<String, usize>,
    output: HashMap<(String, bool), usize>,
}

fn key(ev: &ServerEvent) -> Option<(String, bool)> {
    let k = match ev {
        ServerEvent::UserMessage { turn_id, .. } => (format!("u:{turn_id}"), true),
        ServerEvent::ToolCall { call_id, .. } => (format!("t:{call_id}"), true),
        ServerEvent::ApprovalRequest { approval_id, .. } => (format!("r:{approval_id}"), true),
        ServerEvent::ApprovalResolved { approval_id, .. } => (format!("d:{approval_id}"), true),
        ServerEvent::ExecDone { call_id, .. } => (format!("x:{call_id}"), true),
        ServerEvent::TurnDone { turn_id, .. } => (format!("e:{turn_id}"), true),
        ServerEvent::WorkspaceRestored { restore_id, .. } => (format!("w:{restore_id}"), true),
        ServerEvent::AssistantMessage { .. }
        | ServerEvent::FilesChanged { .. }
        | ServerEvent::Log { .. }
        | ServerEvent::Error { .. } => (serde_json::to_string(ev).ok()?, false),
        ServerEvent::ExecOutput { .. }
        | ServerEvent::AssistantDelta { .. }
        | ServerEvent::Session { .. }
        | ServerEvent::History { .. } => return None,
    };
    Some(k)
}

fn output_key(ev: &ServerEvent) -> Option<((String, bool), &str)> {
    match ev {
        ServerEvent::ExecOutput {
            call_id,
            stream,
            data,
        } => Some((
            (call_id.to_string(), *stream == OutputStream::Stderr),
            data.as_str(),
        )),
        _ => None,
    }
}

impl Seen {
    /// Nothing has been shown yet.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.output.is_empty()
    }

    /// `ev` is on the screen.
    pub fn shown(&mut self, ev: &ServerEvent) {
        if let Some((k, data)) = output_key(ev) {
            *self.output.entry(k).or_default() += data.len();
            return;
        }
        if let Some((k, unique)) = key(ev) {
            if unique {
                self.unique.insert(k.clone(), self.keys.len());
            }
            self.keys.push(k);
        }
    }

    /// The events of `replay` (the latest stored events, in order) that
    /// are not on the screen yet, output trimmed to the part not shown.
    pub fn missed(&self, replay: &[ServerEvent]) -> Vec<ServerEvent> {
        let anchor = replay.iter().enumerate().rev().find_map(|(i, ev)| {
            let (k, unique) = key(ev)?;
            let at = *self.unique.get(&k).filter(|_| unique)?;
            Some((i, at))
        });
        // The id-less events shown after the anchor (or at all, when
        // nothing anchors the replay).
        let mut pending: HashMap<&str, usize> = HashMap::new();
        let after = anchor.map_or(0, |(_, at)| at + 1);
        for k in &self.keys[after.min(self.keys.len())..] {
            if !self.unique.contains_key(k) {
                *pending.entry(k.as_str()).or_default() += 1;
            }
        }
        let start = anchor.map_or(0, |(i, _)| i + 1);
        let mut out_bytes: HashMap<(String, bool), usize> = HashMap::new();
        let mut missed = Vec::new();
        for (i, ev) in replay.iter().enumerate() {
            if let Some((k, data)) = output_key(ev) {
                let seen = self.output.get(&k).copied().unwrap_or(0);
                let before = out_bytes.get(&k).copied().unwrap_or(0);
                out_bytes.insert(k, before + data.len());
                if before + data.len() <= seen {
                    continue;
                }
                let skip = seen.saturating_sub(before);
                let Some(rest) = data.get(skip..) else {
                    continue;
                };
                if let ServerEvent::ExecOutput {
                    call_id, stream, ..
                } = ev
                {
                    missed.push(ServerEvent::ExecOutput {
                        call_id: call_id.clone(),
                        stream: *stream,
                        data: rest.to_string(),
                    });
                }
                continue;
            }
            if i < start {
                continue;
            }
            let Some((k, unique)) = key(ev) else {
                continue;
            };
            if unique {
                if !self.unique.contains_key(&k) {
                    missed.push(ev.clone());
                }
            } else if let Some(n) = pending.get_mut(k.as_str()).filter(|n| **n > 0) {
                *n -= 1;
            } else {
                missed.push(ev.clone());
            }
        }
        missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{CallId, LogSource};

    fn user(turn: &str, text: &str) -> ServerEvent {
        ServerEvent::UserMessage {
            turn_id: turn.into(),
            text: text.into(),
            client_id: None,
        }
    }

    fn reply(turn: &str, text: &str) -> ServerEvent {
        ServerEvent::AssistantMessage {
            turn_id: turn.into(),
            text: text.into(),
        }
    }

    fn out(call: &str, data: &str) -> ServerEvent {
        ServerEvent::ExecOutput {
            call_id: CallId::from(call),
            stream: OutputStream::Stdout,
            data: data.into(),
        }
    }

    fn done(turn: &str) -> ServerEvent {
        ServerEvent::TurnDone {
            turn_id: turn.into(),
            reason: TurnEndReason::Completed,
        }
    }

    fn log(msg: &str) -> ServerEvent {
        ServerEvent::log(LogLevel::Info, LogSource::System, msg)
    }

    fn seen(events: &[ServerEvent]) -> Seen {
        let mut s = Seen::default();
        for e in events {
            s.shown(e);
        }
        s
    }

    #[test]
    fn a_replay_adds_only_what_came_after_the_last_event_shown() {
        let shown = [user("t1", "hi"), reply("t1", "hello"), done("t1")];
        let replay = [
            user("t1", "hi"),
            reply("t1", "hello"),
            done("t1"),
            user("t2", "again"),
            reply("t2", "hello"),
            done("t2"),
        ];
        let missed = seen(&shown).missed(&replay);
        assert_eq!(missed, replay[3..].to_vec());
    }

    #[test]
    fn identical_logs_after_the_anchor_count_once_each() {
        let shown = [user("t1", "hi"), log("sandbox started")];
        let replay = [
            user("t1", "hi"),
            log("sandbox started"),
            log("sandbox started"),
            done("t1"),
        ];
        let missed = seen(&shown).missed(&replay);
        assert_eq!(missed, vec![log("sandbox started"), done("t1")]);
    }

    #[test]
    fn output_merged_in_storage_shows_only_the_bytes_not_yet_shown() {
        let shown = [user("t1", "go"), out("c1", "line1\n"), out("c1", "line2\n")];
        let replay = [
            user("t1", "go"),
            out("c1", "line1\nline2\nline3\n"),
            done("t1"),
        ];
        let missed = seen(&shown).missed(&replay);
        assert_eq!(missed, vec![out("c1", "line3\n"), done("t1")]);
    }

    #[test]
    fn a_first_replay_is_shown_whole_and_a_second_adds_nothing() {
        let replay = [user("t1", "hi"), reply("t1", "hello"), done("t1")];
        let empty = Seen::default();
        assert!(empty.is_empty());
        assert_eq!(empty.missed(&replay), replay.to_vec());
        assert!(seen(&replay).missed(&replay).is_empty());
    }

    #[test]
    fn a_window_that_no_longer_holds_the_anchor_is_all_new() {
        let shown = [user("t1", "hi"), done("t1")];
        let replay = [user("t2", "later"), reply("t2", "ok"), done("t2")];
        assert_eq!(seen(&shown).missed(&replay), replay.to_vec());
    }

    fn view() -> View {
        View::new(Paint { color: false })
    }

    #[test]
    fn a_streamed_reply_is_not_printed_again_when_it_completes() {
        let mut v = view();
        let mut screen = String::new();
        for d in ["Hel", "lo"] {
            screen.push_str(&v.event(&ServerEvent::AssistantDelta {
                turn_id: "t1".into(),
                text: d.into(),
            }));
        }
        screen.push_str(&v.event(&reply("t1", "Hello world")));
        assert_eq!(screen, "Hello world\n");
    }

    #[test]
    fn a_catch_up_delta_after_a_reconnect_prints_only_the_new_part() {
        let mut v = view();
        let mut screen = v.event(&ServerEvent::AssistantDelta {
            turn_id: "t1".into(),
            text: "Hello".into(),
        });
        v.attached();
        screen.push_str(&v.event(&ServerEvent::AssistantDelta {
            turn_id: "t1".into(),
            text: "Hello wor".into(),
        }));
        screen.push_str(&v.event(&ServerEvent::AssistantDelta {
            turn_id: "t1".into(),
            text: "ld".into(),
        }));
        screen.push_str(&v.event(&reply("t1", "Hello world")));
        assert_eq!(screen, "Hello world\n");
    }

    #[test]
    fn stderr_is_red_only_with_color() {
        let ev = ServerEvent::ExecOutput {
            call_id: CallId::from("c"),
            stream: OutputStream::Stderr,
            data: "oops\n".into(),
        };
        assert_eq!(view().event(&ev), "oops\n");
        let mut colored = View::new(Paint { color: true });
        assert_eq!(colored.event(&ev), "\x1b[31moops\n\x1b[0m");
    }

    #[test]
    fn output_without_a_newline_is_ended_before_the_next_block() {
        let mut v = view();
        let mut screen = v.event(&out("c1", "no newline"));
        screen.push_str(&v.event(&ServerEvent::ExecDone {
            call_id: CallId::from("c1"),
            exit_code: Some(0),
            timed_out: false,
            duration_ms: 1200,
        }));
        assert_eq!(screen, "no newline\n[exit 0 · 1.2 s]\n");
    }
}
