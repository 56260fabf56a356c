//! The terminal itself: the line editor (rustyline, in a thread of its
//! own, with events printed above its prompt meanwhile), a one-key answer
//! for approvals that can be called off when another window answers first,
//! and putting the terminal back as it was however the client ends.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustyline::error::ReadlineError;
use tokio::sync::mpsc;

/// What the line editor returned.
#[derive(Debug)]
pub enum Input {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    /// Ctrl-D at an empty prompt, or the end of piped input.
    Eof,
}

/// The line editor, running in its own thread.
pub struct Reader {
    ask: std::sync::mpsc::Sender<(String, String)>,
    pub lines: mpsc::UnboundedReceiver<Input>,
}

impl Reader {
    /// Show `prompt` with `initial` already typed and read a line; the
    /// answer comes on `lines`.
    pub fn prompt(&self, prompt: String, initial: String) {
        let _ = self.ask.send((prompt, initial));
    }
}

/// What the line editor shows: the line being typed and the cursor in it,
/// mirrored from its hinter (called on every redraw), so text printed
/// above the prompt can put the prompt back as it was.
#[derive(Default, Clone)]
struct Mirror {
    line: Arc<std::sync::Mutex<(String, usize)>>,
}

impl rustyline::hint::Hinter for Mirror {
    type Hint = String;

    fn hint(&self, line: &str, pos: usize, _: &rustyline::Context<'_>) -> Option<String> {
        if let Ok(mut m) = self.line.lock() {
            *m = (line.to_string(), pos);
        }
        None
    }
}

impl rustyline::completion::Completer for Mirror {
    type Candidate = String;
}
impl rustyline::highlight::Highlighter for Mirror {}
impl rustyline::validate::Validator for Mirror {}
impl rustyline::Helper for Mirror {}

/// Writes text to the terminal. While the prompt is up, whole lines go
/// above it and the prompt is drawn again below them as it was; a line
/// still being streamed waits for its end. (rustyline's own external
/// printer stalls typed-ahead input: it selects on the terminal while its
/// buffer still holds keys.)
pub struct Screen {
    mirror: Mirror,
    /// The prompt on the screen while reading.
    prompt: String,
    /// The unfinished line held back while the prompt is up.
    partial: String,
    pub tty: bool,
}

impl Screen {
    pub fn write(&mut self, text: &str, reading: bool) {
        if text.is_empty() {
            return;
        }
        let mut out = std::io::stdout().lock();
        if !reading || !self.tty {
            let held = std::mem::take(&mut self.partial);
            let _ = out.write_all(held.as_bytes());
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            return;
        }
        self.partial.push_str(text);
        let Some(i) = self.partial.rfind('\n') else {
            return;
        };
        let rest = self.partial.split_off(i + 1);
        let whole = std::mem::replace(&mut self.partial, rest);
        let (line, pos) = self
            .mirror
            .line
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default();
        let back = line.get(pos..).map_or(0, |r| r.chars().count());
        let mut s = format!("\r\x1b[2K{whole}{}{line}", self.prompt);
        if back > 0 {
            s.push_str(&format!("\x1b[{back}D"));
        }
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    }

    /// The prompt about to be shown, with the text it starts with.
    pub fn prompting(&mut self, prompt: &str, initial: &str) {
        self.prompt = prompt.to_string();
        if let Ok(mut m) = self.mirror.line.lock() {
            *m = (initial.to_string(), initial.len());
        }
    }

    /// Set the terminal's title (the status a window or tmux shows).
    pub fn title(&mut self, title: &str) {
        if self.tty {
            let clean: String = title.chars().filter(|c| !c.is_control()).collect();
            let mut out = std::io::stdout().lock();
            let _ = write!(out, "\x1b]2;{clean}\x07");
            let _ = out.flush();
        }
    }
}

/// Start the line editor; history is kept in `history` (0600).
pub fn start(history: Option<PathBuf>) -> anyhow::Result<(Reader, Screen)> {
    let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let config = rustyline::Config::builder()
        .auto_add_history(true)
        .max_history_size(1000)?
        .build();
    let mirror = Mirror::default();
    let mut editor: rustyline::Editor<Mirror, rustyline::history::FileHistory> =
        rustyline::Editor::with_config(config)?;
    editor.set_helper(Some(mirror.clone()));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    let (ask_tx, ask_rx) = std::sync::mpsc::channel::<(String, String)>();
    let (line_tx, line_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("ironclaw-readline".into())
        .spawn(move || {
            while let Ok((prompt, initial)) = ask_rx.recv() {
                let input = match editor.readline_with_initial(&prompt, (&initial, "")) {
                    Ok(line) => Input::Line(line),
                    Err(ReadlineError::Interrupted) => Input::Interrupted,
                    Err(_) => Input::Eof,
                };
                if let Some(path) = &history {
                    if editor.save_history(path).is_ok() {
                        use std::os::unix::fs::PermissionsExt;
                        let _ =
                            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
                    }
                }
                if line_tx.send(input).is_err() {
                    return;
                }
            }
        })?;
    Ok((
        Reader {
            ask: ask_tx,
            lines: line_rx,
        },
        Screen {
            mirror,
            prompt: String::new(),
            partial: String::new(),
            tty,
        },
    ))
}

/// The terminal's settings when the client started, put back when it ends
/// (even if it ends while the line editor has the terminal in raw mode).
pub struct Restore(Option<libc::termios>);

impl Restore {
    pub fn save() -> Self {
        if !std::io::stdin().is_terminal() {
            return Restore(None);
        }
        // SAFETY: tcgetattr fills the struct it is given; fd 0 is a tty.
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(0, &mut t) == 0 {
                return Restore(Some(t));
            }
        }
        Restore(None)
    }
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: puts back settings read from the same fd.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

/// Wait for one of `keys` on the terminal without echo or Enter, until
/// `stop` is set (another window answered) or stdin ends. Ctrl-C still
/// raises SIGINT. Blocking: run it on a blocking thread.
pub fn read_key(keys: &[char], stop: Arc<AtomicBool>) -> Option<char> {
    // SAFETY: termios on fd 0, read back and restored below.
    let saved = unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return None;
        }
        let mut raw = t;
        raw.c_lflag &= !(libc::ICANON | libc::ECHO);
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(0, libc::TCSANOW, &raw);
        t
    };
    let mut found = None;
    while !stop.load(Ordering::SeqCst) {
        let mut fds = libc::pollfd {
            fd: 0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut fds, 1, 100) };
        if ready <= 0 {
            continue;
        }
        let mut byte = 0u8;
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(0, (&mut byte as *mut u8).cast(), 1) };
        if n <= 0 {
            if n == 0 {
                break;
            }
            continue;
        }
        let c = (byte as char).to_ascii_lowercase();
        if keys.contains(&c) {
            found = Some(c);
            break;
        }
    }
    // SAFETY: restores what was read above.
    unsafe {
        libc::tcsetattr(0, libc::TCSANOW, &saved);
    }
    found
}

/// What was typed while no prompt was up (the terminal echoed it, and the
/// line editor would misread it). Lines end in `\n`; a line being typed
/// comes last, unfinished.
pub fn take_typed_ahead() -> String {
    let mut bytes = Vec::new();
    // SAFETY: termios on fd 0 read, changed for the read and restored.
    unsafe {
        let mut saved: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut saved) != 0 {
            return String::new();
        }
        let mut raw = saved;
        raw.c_lflag &= !libc::ICANON;
        raw.c_cc[libc::VMIN] = 0;
        raw.c_cc[libc::VTIME] = 0;
        libc::tcsetattr(0, libc::TCSANOW, &raw);
        let mut buf = [0u8; 4096];
        loop {
            let n = libc::read(0, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            bytes.extend_from_slice(&buf[..n as usize]);
        }
        libc::tcsetattr(0, libc::TCSANOW, &saved);
    }
    String::from_utf8_lossy(&bytes).replace('\r', "\n")
}
