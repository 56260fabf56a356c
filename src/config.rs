//! Settings: built-in defaults, then `ironclaw.toml` (or `--config`), then
//! `IRONCLAW_<SECTION>__<KEY>` environment variables (DESIGN.md §7).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::ApprovalMode;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub data: DataSettings,
    #[serde(default)]
    pub database: DatabaseSettings,
    #[serde(default)]
    pub cluster: ClusterSettings,
    pub provider: ProviderSettings,
    pub agent: AgentSettings,
    pub approval: ApprovalSettings,
    pub sandbox: SandboxSettings,
    pub files: FileSettings,
    pub limits: LimitSettings,
    pub undo: UndoSettings,
}

/// Checkpoints kept per session for undo (DESIGN.md §4); the oldest go
/// first when either limit is passed.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UndoSettings {
    /// Checkpoints (commands and restores) kept; 0 turns undo off.
    pub keep: usize,
    /// Bytes of stored contents, in MiB, past which the oldest checkpoints
    /// are dropped. The workspace's current files are always kept, so a
    /// workspace larger than this keeps no history.
    pub max_mb: u64,
}

/// Caps per user, so one account cannot take the host's memory and CPU
/// from everyone else.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LimitSettings {
    /// Live sandbox containers per user (each has `sandbox.memory_mb` and
    /// `sandbox.cpus`); above it the user's oldest idle container stops.
    pub containers: usize,
    /// Sessions a user may keep; above it creating one answers
    /// `limit_reached` until one is deleted.
    pub sessions: usize,
    /// WebSockets a user may hold open at once (tabs, CLIs).
    pub sockets: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ServerSettings {
    /// Loopback by default: exposing IronClaw is a deliberate choice.
    pub host: String,
    pub port: u16,
    /// Largest WebSocket frame accepted from a browser. A chat message is
    /// text a person typed or pasted; 1 MiB is far above that and far below
    /// anything that would strain memory.
    pub max_frame_bytes: usize,
    /// Events queued for one socket before it is judged too slow and closed;
    /// on reconnect `history` brings it back up to date.
    pub outbound_queue: usize,
    /// How long a session's actors stay alive after its last socket leaves,
    /// so a reload does not restart them.
    pub session_grace_secs: u64,
    /// Failed logins for one username (or address) within
    /// `login_window_secs` before further attempts answer 429.
    pub login_max_failures: u32,
    pub login_window_secs: u64,
    /// How long a login lasts without being used.
    pub login_ttl_hours: u64,
    /// Set the cookie's `Secure` flag (when served behind HTTPS).
    pub secure_cookie: bool,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Origins (`scheme://host[:port]`) besides the server's own that may
    /// open the WebSocket and call state-changing routes, e.g. the public
    /// name of a reverse proxy in front of IronClaw.
    pub allowed_origins: Vec<String>,
    /// Events sent in `history` when a tab attaches; older ones are paged
    /// in over REST, so the frame does not grow with a session's age.
    pub history_events: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct DataSettings {
    /// Holds `ironclaw.db` and `workspaces/`.
    pub dir: PathBuf,
}

/// This node among several (DESIGN.md §7).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ClusterSettings {
    /// This node's name; empty: one generated on first start and kept in
    /// `<data.dir>/nodes/<host>-<port>.id`.
    #[serde(default)]
    pub node_id: String,
    /// Where other nodes reach this one; empty: `http://<server.host>:<server.port>`.
    #[serde(default)]
    pub advertise_url: String,
    /// How long a session's lease lasts without a heartbeat: a dead node's
    /// sessions are taken over after this.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

fn default_lease_secs() -> u64 {
    10
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: String::new(),
            advertise_url: String::new(),
            lease_secs: default_lease_secs(),
        }
    }
}

/// Where the database is (DESIGN.md §7).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`; empty means
    /// SQLite at `<data.dir>/ironclaw.db`.
    #[serde(default)]
    pub url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Ollama,
    Openai,
    Anthropic,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Ollama => "ollama",
            ProviderKind::Openai => "openai",
            ProviderKind::Anthropic => "anthropic",
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProviderSettings {
    pub kind: ProviderKind,
    /// Empty means the kind's default (Ollama honours `OLLAMA_HOST`).
    pub base_url: String,
    pub model: String,
    /// Empty means read from `OPENAI_API_KEY` / `ANTHROPIC_API_KEY`.
    pub api_key: String,
    /// Model names a session may switch to besides those the provider
    /// lists (e.g. aliases a gateway accepts but does not list).
    pub models: Vec<String>,
    /// Whether to offer native tools; `false` for models that cannot call
    /// them (replies are then scanned for fenced code blocks).
    pub tools: bool,
    /// Attempts for a request that fails with 429/5xx before any output.
    pub max_retries: u32,
    /// First backoff delay; doubled each attempt unless `retry-after` says.
    pub retry_base_ms: u64,
    /// Time to wait for the server to answer a request at all.
    pub connect_timeout_secs: u64,
    /// Longest silence tolerated inside a stream before it counts as cut.
    pub stream_idle_secs: u64,
    /// Approximate context budget in tokens (4 bytes each) before the
    /// oldest tool outputs are trimmed.
    pub context_tokens: usize,
    /// Tokens the model may produce per reply (Anthropic requires it).
    pub max_tokens: u32,
}

impl ProviderSettings {
    /// The server's URL with the kind's default filled in.
    pub fn resolved_base_url(&self) -> String {
        let url = if !self.base_url.is_empty() {
            self.base_url.clone()
        } else {
            match self.kind {
                ProviderKind::Ollama => match std::env::var("OLLAMA_HOST") {
                    Ok(h) if !h.is_empty() => {
                        if h.starts_with("http://") || h.starts_with("https://") {
                            h
                        } else {
                            format!("http://{h}")
                        }
                    }
                    _ => "http://localhost:11434".to_string(),
                },
                ProviderKind::Openai => "https://api.openai.com".to_string(),
                ProviderKind::Anthropic => "https://api.anthropic.com".to_string(),
            }
        };
        url.trim_end_matches('/').to_string()
    }

    /// The server's URL as shown to people and logs: credentials in it
    /// (`user:pass@`) replaced by `***`.
    pub fn shown_base_url(&self) -> String {
        redact_credentials(&self.resolved_base_url())
    }

    /// The API key with the kind's environment variable as fallback.
    pub fn resolved_api_key(&self) -> Option<String> {
        if !self.api_key.is_empty() {
            return Some(self.api_key.clone());
        }
        let var = match self.kind {
            ProviderKind::Ollama => return None,
            ProviderKind::Openai => "OPENAI_API_KEY",
            ProviderKind::Anthropic => "ANTHROPIC_API_KEY",
        };
        std::env::var(var).ok().filter(|k| !k.is_empty())
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct AgentSettings {
    /// Model calls in one turn before it is ended with a message; stops a
    /// model that loops on tool calls.
    pub max_steps: u32,
    /// Bytes of one command's output handed back to the model (head and
    /// tail kept); more would crowd out the conversation.
    pub tool_output_for_model_bytes: usize,
    /// Bytes of one command's output kept in the event log for `history`.
    pub stored_output_bytes: usize,
    pub system_prompt: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ApprovalSettings {
    /// Default for new users' sessions.
    pub mode: ApprovalMode,
    /// A pending approval is denied after this long.
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SandboxSettings {
    pub image: String,
    /// `none` (default) or `bridge`.
    pub network: String,
    pub memory_mb: u64,
    pub cpus: f64,
    pub pids: i64,
    pub exec_timeout_secs: u64,
    /// A container with no exec for this long is stopped (started again on
    /// demand).
    pub idle_stop_secs: u64,
    /// Size of the tmpfs mounted on `/tmp` and the home directory.
    pub tmpfs_mb: u64,
    /// Started containers kept ready for new sessions (0: none).
    pub warm_pool: usize,
    /// Container creations and starts in flight at once; more wait their
    /// turn, first come first served.
    pub start_concurrency: usize,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct FileSettings {
    pub max_upload_mb: u64,
    pub quota_mb: u64,
}

const DEFAULT_SYSTEM_PROMPT: &str = "You are IronClaw, an assistant that can run shell commands and Python code \
in a sandboxed Linux container on the user's behalf. The user's files are in /workspace, which is also the \
working directory. Use the `shell` tool for commands and the `python` tool for Python code. The sandbox has \
no network access. Keep answers short and say what you did.";

impl Settings {
    /// Load from defaults, the optional file and the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, config::ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("server.host", "127.0.0.1")?
            .set_default("server.port", 8080)?
            .set_default("server.max_frame_bytes", 1024 * 1024)?
            .set_default("server.outbound_queue", 1024)?
            .set_default("server.session_grace_secs", 60)?
            .set_default("server.login_max_failures", 5)?
            .set_default("server.login_window_secs", 300)?
            .set_default("server.login_ttl_hours", 24 * 14)?
            .set_default("server.secure_cookie", false)?
            .set_default("server.workers", 0)?
            .set_default("server.allowed_origins", Vec::<String>::new())?
            .set_default("server.history_events", 500)?
            .set_default("limits.containers", 3)?
            .set_default("limits.sessions", 100)?
            .set_default("limits.sockets", 20)?
            .set_default("provider.models", Vec::<String>::new())?
            .set_default("data.dir", "data")?
            .set_default("database.url", "")?
            .set_default("cluster.node_id", "")?
            .set_default("cluster.advertise_url", "")?
            .set_default("cluster.lease_secs", 10)?
            .set_default("provider.kind", "ollama")?
            .set_default("provider.base_url", "")?
            .set_default("provider.model", "llama3.2")?
            .set_default("provider.api_key", "")?
            .set_default("provider.tools", true)?
            .set_default("provider.max_retries", 3)?
            .set_default("provider.retry_base_ms", 500)?
            .set_default("provider.connect_timeout_secs", 10)?
            .set_default("provider.stream_idle_secs", 300)?
            .set_default("provider.context_tokens", 32_000)?
            .set_default("provider.max_tokens", 4096)?
            .set_default("agent.max_steps", 20)?
            .set_default("agent.tool_output_for_model_bytes", 16 * 1024)?
            .set_default("agent.stored_output_bytes", 1024 * 1024)?
            .set_default("agent.system_prompt", DEFAULT_SYSTEM_PROMPT)?
            .set_default("approval.mode", "risky")?
            .set_default("approval.timeout_secs", 300)?
            .set_default("sandbox.image", "ironclaw-sandbox:latest")?
            .set_default("sandbox.network", "none")?
            .set_default("sandbox.memory_mb", 512)?
            .set_default("sandbox.cpus", 1.0)?
            .set_default("sandbox.pids", 256)?
            .set_default("sandbox.exec_timeout_secs", 120)?
            .set_default("sandbox.idle_stop_secs", 900)?
            .set_default("sandbox.tmpfs_mb", 256)?
            .set_default("sandbox.warm_pool", 2)?
            .set_default(
                "sandbox.start_concurrency",
                crate::sandbox::DEFAULT_START_CONCURRENCY as u64,
            )?
            .set_default("files.max_upload_mb", 100)?
            .set_default("files.quota_mb", 1024)?
            .set_default("undo.keep", 50)?
            .set_default("undo.max_mb", 1024)?;
        match file {
            Some(path) => {
                builder = builder.add_source(config::File::from(path).required(true));
            }
            None => {
                builder =
                    builder.add_source(config::File::with_name("ironclaw.toml").required(false));
            }
        }
        builder = builder.add_source(
            config::Environment::with_prefix("IRONCLAW")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("server.allowed_origins")
                .with_list_parse_key("provider.models"),
        );
        builder.build()?.try_deserialize()
    }

    /// The database `database.url` names (SQLite at `<data.dir>/ironclaw.db`
    /// when it is empty).
    pub fn database(&self) -> Result<crate::db::Database, crate::db::DbError> {
        if self.database.url.trim().is_empty() {
            Ok(crate::db::Database::Sqlite(
                self.data.dir.join("ironclaw.db"),
            ))
        } else {
            crate::db::Database::parse(self.database.url.trim())
        }
    }

    pub fn workspaces_dir(&self) -> PathBuf {
        self.data.dir.join("workspaces")
    }
}

/// `text` with the user information of every URL in it (`user:pass@`)
/// replaced by `***@`, for anything shown to a person or written to a log:
/// a provider URL may carry its credentials, and error texts quote URLs.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| {
                matches!(c, '/' | '?' | '#' | ')' | '"' | '\'' | '<' | '>') || c.is_whitespace()
            })
            .unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(i) => {
                out.push_str("***@");
                out.push_str(&authority[i + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let s = Settings::load(Some(Path::new("/nonexistent/ironclaw.toml")));
        assert!(
            s.is_err(),
            "an explicit --config that is missing is an error"
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[server]\nport = 9999\n").unwrap();
        let s = Settings::load(Some(&file)).unwrap();
        assert_eq!(s.server.port, 9999);
        assert_eq!(s.server.host, "127.0.0.1");
        assert_eq!(s.provider.model, "llama3.2");
        assert_eq!(s.approval.mode, ApprovalMode::Risky);
        assert_eq!(s.sandbox.network, "none");
        assert_eq!(s.sandbox.exec_timeout_secs, 120);
        assert_eq!(s.limits.containers, 3);
        assert_eq!(s.server.history_events, 500);
        assert!(s.server.allowed_origins.is_empty());
        assert!(s.provider.models.is_empty());
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        let table = [
            ("http://user:pass@host:1/v1", "http://***@host:1/v1"),
            ("https://tok@h", "https://***@h"),
            ("http://host:1/a@b", "http://host:1/a@b"),
            ("no url here", "no url here"),
            (
                "error sending request for url (http://u:p@x/v1/models): refused",
                "error sending request for url (http://***@x/v1/models): refused",
            ),
            (
                "a http://a:b@c and ws://d:e@f",
                "a http://***@c and ws://***@f",
            ),
            ("http://p:w@rd@host/", "http://***@host/"),
        ];
        for (input, want) in table {
            assert_eq!(redact_credentials(input), want, "{input}");
        }
    }
}
