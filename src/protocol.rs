//! The wire protocol: every WebSocket frame (DESIGN.md §2) and every REST
//! body (§3). No other module defines a shape that crosses the wire, so a
//! change to the protocol is a change to this file.
//!
//! Server events double as the stored event log: `history` replays the JSON
//! of each stored event exactly as it was sent live.

use serde::{Deserialize, Serialize};

/// Ids on the wire are strings; in the code each kind is its own type, so a
/// call id cannot be passed where an approval id belongs.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A fresh random id.
            pub fn random() -> Self {
                $name(uuid::Uuid::new_v4().to_string())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $name(s)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                $name(s.to_string())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Read as a string where one is wanted (queries, paths, labels);
        /// the reverse, a string where an id is wanted, takes a `from`.
        impl std::ops::Deref for $name {
            type Target = str;

            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::path::Path> for $name {
            fn as_ref(&self) -> &std::path::Path {
                std::path::Path::new(&self.0)
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }
    };
}

id_type!(
    /// One chat session: its conversation, workspace and sandbox.
    SessionId
);
id_type!(
    /// One turn: a user message and everything the agent did for it.
    TurnId
);
id_type!(
    /// One tool call. The model chooses it (native tools) or IronClaw does
    /// (fenced blocks).
    CallId
);
impl CallId {
    /// A new call id in the form every provider accepts back
    /// (`[A-Za-z0-9_-]`, as Anthropic requires).
    pub fn fresh_call() -> Self {
        CallId(format!("call_{}", uuid::Uuid::new_v4().simple()))
    }

    /// A new id for a restore (undo), usable wherever a call id is.
    pub fn fresh_restore() -> Self {
        CallId(format!("restore_{}", uuid::Uuid::new_v4().simple()))
    }
}

id_type!(
    /// One pending approval request.
    ApprovalId
);
id_type!(
    /// A message's id chosen by the page that sent it, echoed back with the
    /// stored message so the page can tell its own optimistic copy from
    /// another tab's message (the server trims the text, so the text alone
    /// cannot tell).
    ClientMessageId
);

/// Declares [`ErrorCode`]: each code with its wire name and the HTTP
/// status it answers with, in one table.
macro_rules! error_codes {
    ($( $(#[$doc:meta])* $variant:ident = ($name:literal, $status:literal), )*) => {
        /// Every error code IronClaw puts on the wire, in `error` events and
        /// REST error bodies. Each module's error type maps onto one of
        /// these; the HTTP status of each code is decided here and nowhere
        /// else.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, for tests and documentation.
            pub const ALL: &'static [ErrorCode] = &[ $( ErrorCode::$variant, )* ];

            /// The stable snake_case name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( ErrorCode::$variant => $name, )*
                }
            }

            /// The HTTP status a REST answer with this code carries.
            pub fn http_status(self) -> u16 {
                match self {
                    $( ErrorCode::$variant => $status, )*
                }
            }

            pub fn parse(s: &str) -> Option<ErrorCode> {
                match s {
                    $( $name => Some(ErrorCode::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    // Logins and REST.
    Unauthorized = ("unauthorized", 401),
    BadCredentials = ("bad_credentials", 401),
    TooManyAttempts = ("too_many_attempts", 429),
    NotFound = ("not_found", 404),
    BadRequest = ("bad_request", 400),
    TooLarge = ("too_large", 413),
    Conflict = ("conflict", 409),
    Forbidden = ("forbidden", 403),
    Unavailable = ("unavailable", 503),
    Internal = ("internal", 500),
    /// The request came from a page of another origin (or an unknown
    /// host): cross-site requests never act for a logged-in person.
    OriginRefused = ("origin_refused", 403),
    /// A state-changing body that is neither JSON nor multipart: the types
    /// a cross-site form can send without asking.
    UnsupportedMediaType = ("unsupported_media_type", 415),
    /// Every password check slot is busy; retry after `retry-after`.
    LoginBusy = ("login_busy", 503),
    /// A per-user cap (`limits.*`) is reached.
    LimitReached = ("limit_reached", 429),
    /// A model that the provider does not list and `provider.models` does
    /// not allow.
    ModelNotAllowed = ("model_not_allowed", 400),
    // Workspace files.
    BadPath = ("bad_path", 400),
    SymlinkRefused = ("symlink_refused", 400),
    UploadInterrupted = ("upload_interrupted", 400),
    PermissionDenied = ("permission_denied", 403),
    NotAFile = ("not_a_file", 409),
    NotADirectory = ("not_a_directory", 409),
    IsADirectory = ("is_a_directory", 409),
    DirectoryNotEmpty = ("directory_not_empty", 409),
    QuotaExceeded = ("quota_exceeded", 507),
    /// The server's own disk is full: not the session's quota.
    DiskFull = ("disk_full", 507),
    IoError = ("io_error", 500),
    // The WebSocket.
    MessageTooLarge = ("message_too_large", 413),
    MalformedJson = ("malformed_json", 400),
    MalformedMessage = ("malformed_message", 400),
    UnknownType = ("unknown_type", 400),
    UnknownApproval = ("unknown_approval", 404),
    /// Too many messages wait behind the running turn.
    QueueFull = ("queue_full", 429),
    /// A tab that could not keep up was dropped; it reconnects.
    SlowClient = ("slow_client", 503),
    /// The session was deleted or went idle while a tab was attached.
    SessionClosed = ("session_closed", 410),
    StorageFailed = ("storage_failed", 500),
    /// The server is shutting down; the tab reconnects when it is back.
    ServerStopping = ("server_stopping", 503),
    // Turns.
    StepLimit = ("step_limit", 429),
    // The model server.
    ProviderUnreachable = ("provider_unreachable", 502),
    ModelNotFound = ("model_not_found", 404),
    /// The model server refused IronClaw's key: the server's fault, not the
    /// person's login.
    ProviderAuth = ("provider_auth", 502),
    ProviderBusy = ("provider_busy", 503),
    ProviderMaxTokens = ("provider_max_tokens", 502),
    ProviderHttp = ("provider_http", 502),
    ProviderContextTooLong = ("provider_context_too_long", 413),
    ToolsUnsupported = ("tools_unsupported", 501),
    ProviderStreamCut = ("provider_stream_cut", 502),
    ProviderStalled = ("provider_stalled", 504),
    ProviderBadResponse = ("provider_bad_response", 502),
    ProviderError = ("provider_error", 502),
    BadToolCall = ("bad_tool_call", 502),
    // The sandbox.
    DockerUnavailable = ("docker_unavailable", 503),
    ImageMissing = ("image_missing", 503),
    CodeTooLarge = ("code_too_large", 413),
    WorkspaceUnavailable = ("workspace_unavailable", 500),
    ContainerConflict = ("container_conflict", 409),
    ContainerFailed = ("container_failed", 503),
    ExecFailed = ("exec_failed", 503),
    // Undo.
    /// A revert while the session's turn runs: it would race the command.
    TurnRunning = ("turn_running", 409),
    /// No tool call (or restore) of this session has that id.
    UnknownCall = ("unknown_call", 404),
    /// The call's checkpoint was dropped (`undo.keep`, `undo.max_mb`).
    CheckpointGone = ("checkpoint_gone", 410),
    /// The call was judged read-only and changed nothing: no checkpoint.
    NoCheckpoint = ("no_checkpoint", 409),
    /// A checkpoint could not be read back or applied.
    UndoFailed = ("undo_failed", 500),
}

impl Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        ErrorCode::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code `{name}`")))
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame from the browser. Unknown fields are ignored; an unknown `type`
/// fails to parse and the socket answers an `error` event.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Start a turn, or queue it behind the running one.
    UserMessage {
        text: String,
        /// Echoed back on the `user_message` event; optional, older
        /// clients send none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientMessageId>,
    },
    /// Answer a pending approval.
    ApprovalDecision {
        approval_id: ApprovalId,
        decision: Decision,
        /// Auto-approve the same command for the rest of the session.
        #[serde(default)]
        remember: bool,
    },
    /// Stop the running turn: the model stream and any running command.
    Cancel,
}

/// The person's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

/// Which tool the model called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tool {
    Shell,
    Python,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Shell => "shell",
            Tool::Python => "python",
        }
    }

    /// The name of the tool's one argument: `shell {command}`,
    /// `python {code}`.
    pub fn argument(self) -> &'static str {
        match self {
            Tool::Shell => "command",
            Tool::Python => "code",
        }
    }
}

/// How dangerous a tool call looks, judged by parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    /// Reads only.
    Low,
    /// Changes inside the workspace, or runs code.
    Medium,
    /// Deletes, writes outside the workspace, network, privilege, process
    /// control, package installs, or anything that could not be understood.
    High,
}

/// A risk level with the reasons for it, in plain words for the person.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Risk {
    pub level: RiskLevel,
    pub reasons: Vec<String>,
}

/// When the session asks before running a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalMode {
    /// Ask before every call.
    Always,
    /// Ask for high risk only.
    Risky,
    /// Run everything.
    Never,
}

impl ApprovalMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalMode::Always => "always",
            ApprovalMode::Risky => "risky",
            ApprovalMode::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "always" => Some(ApprovalMode::Always),
            "risky" => Some(ApprovalMode::Risky),
            "never" => Some(ApprovalMode::Never),
            _ => None,
        }
    }
}

/// How an approval ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    Approved,
    Denied,
    TimedOut,
}

/// Who settled an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DecidedBy {
    User,
    Policy,
}

/// Which output stream of a command a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Severity of a `log` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

/// The part of IronClaw a `log` event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSource {
    Agent,
    Provider,
    Sandbox,
    Approval,
    System,
}

/// Why a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnEndReason {
    Completed,
    Cancelled,
    Error,
}

/// A frame to the browser. Every variant but `session`, `history` and
/// `assistant_delta` is also stored in the session's event log when the
/// session sends it (a socket's own `error` answers to bad frames are not).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// First frame after connect.
    Session {
        session_id: SessionId,
        title: String,
        user: String,
        provider: String,
        model: String,
        approval_mode: ApprovalMode,
    },
    /// The latest stored events of the session, in order (at most
    /// `server.history_events`).
    History {
        session_id: SessionId,
        events: Vec<ServerEvent>,
        /// Older events exist: `GET /api/sessions/{id}/events?before=` pages
        /// back from `before`.
        #[serde(default)]
        more: bool,
        /// The sequence number of the first event sent, the cursor for the
        /// next page back; absent when no event was sent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<i64>,
    },
    UserMessage {
        turn_id: TurnId,
        text: String,
        /// The sender's `client_id`, when it gave one. Stored with the
        /// event; rows stored before it existed have none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<ClientMessageId>,
    },
    AssistantDelta {
        turn_id: TurnId,
        text: String,
    },
    AssistantMessage {
        turn_id: TurnId,
        text: String,
    },
    ToolCall {
        turn_id: TurnId,
        call_id: CallId,
        tool: Tool,
        code: String,
        risk: Risk,
        /// The session's approval mode when the call was judged, so a page
        /// can say why a call ran without asking.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval_mode: Option<ApprovalMode>,
    },
    ApprovalRequest {
        approval_id: ApprovalId,
        call_id: CallId,
        tool: Tool,
        code: String,
        risk: Risk,
        /// RFC 3339.
        expires_at: String,
    },
    ApprovalResolved {
        approval_id: ApprovalId,
        call_id: CallId,
        decision: Resolution,
        by: DecidedBy,
    },
    ExecOutput {
        call_id: CallId,
        stream: OutputStream,
        data: String,
    },
    ExecDone {
        call_id: CallId,
        /// `None` when the process was killed before it could exit.
        exit_code: Option<i64>,
        timed_out: bool,
        duration_ms: u64,
    },
    FilesChanged {
        paths: Vec<String>,
        /// The person uploaded these (rather than a command changing them);
        /// the model is told about them with the next message.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        uploaded: bool,
        /// The command that changed them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call_id: Option<CallId>,
        /// What the command did to each path, in path order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FileChange>,
    },
    /// The workspace was put back as it was just before `call_id` (undo).
    WorkspaceRestored {
        call_id: CallId,
        /// Every path the restore changed.
        paths: Vec<String>,
        /// This restore's own id: `/calls/{restore_id}/revert` undoes it.
        restore_id: CallId,
    },
    Log {
        level: LogLevel,
        source: LogSource,
        message: String,
    },
    TurnDone {
        turn_id: TurnId,
        reason: TurnEndReason,
    },
    Error {
        /// Stable snake_case code.
        code: ErrorCode,
        /// A sentence a person can act on.
        message: String,
    },
}

impl ServerEvent {
    /// The `type` tag, as it appears on the wire and in the event table.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerEvent::Session { .. } => "session",
            ServerEvent::History { .. } => "history",
            ServerEvent::UserMessage { .. } => "user_message",
            ServerEvent::AssistantDelta { .. } => "assistant_delta",
            ServerEvent::AssistantMessage { .. } => "assistant_message",
            ServerEvent::ToolCall { .. } => "tool_call",
            ServerEvent::ApprovalRequest { .. } => "approval_request",
            ServerEvent::ApprovalResolved { .. } => "approval_resolved",
            ServerEvent::ExecOutput { .. } => "exec_output",
            ServerEvent::ExecDone { .. } => "exec_done",
            ServerEvent::FilesChanged { .. } => "files_changed",
            ServerEvent::WorkspaceRestored { .. } => "workspace_restored",
            ServerEvent::Log { .. } => "log",
            ServerEvent::TurnDone { .. } => "turn_done",
            ServerEvent::Error { .. } => "error",
        }
    }

    /// Whether the event belongs in the stored log that `history` replays.
    /// Deltas are folded into their `assistant_message`; connection frames
    /// and per-socket errors are not part of the conversation.
    pub fn is_stored(&self) -> bool {
        match self {
            ServerEvent::Session { .. }
            | ServerEvent::History { .. }
            | ServerEvent::AssistantDelta { .. } => false,
            ServerEvent::UserMessage { .. }
            | ServerEvent::AssistantMessage { .. }
            | ServerEvent::ToolCall { .. }
            | ServerEvent::ApprovalRequest { .. }
            | ServerEvent::ApprovalResolved { .. }
            | ServerEvent::ExecOutput { .. }
            | ServerEvent::ExecDone { .. }
            | ServerEvent::FilesChanged { .. }
            | ServerEvent::WorkspaceRestored { .. }
            | ServerEvent::Log { .. }
            | ServerEvent::TurnDone { .. }
            | ServerEvent::Error { .. } => true,
        }
    }

    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerEvent::Error {
            code,
            message: message.into(),
        }
    }

    pub fn log(level: LogLevel, source: LogSource, message: impl Into<String>) -> Self {
        ServerEvent::Log {
            level,
            source,
            message: message.into(),
        }
    }
}

// ---------------------------------------------------------------- REST bodies

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Me {
    pub username: String,
    /// The approval mode the user's new sessions start with.
    pub approval_mode: ApprovalMode,
}

/// `PATCH /api/me`: change the user's default approval mode.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct UpdateMe {
    pub approval_mode: ApprovalMode,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ProviderHealth {
    pub kind: String,
    pub url: String,
    pub reachable: bool,
    pub model: String,
    pub model_available: bool,
    /// What to do when the provider is not usable; absent when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// `/api/health` without a login: whether the server answers, nothing
/// about its provider or Docker (and no work to find out).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HealthStatus {
    pub status: String,
}

/// One page of a session's stored events, oldest first
/// (`GET /api/sessions/{id}/events?before=<seq>&limit=N`).
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct EventPage {
    pub events: Vec<ServerEvent>,
    /// Older events exist before `before`.
    pub more: bool,
    /// The sequence number of the first event here, the next cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Health {
    pub status: String,
    pub database: String,
    pub docker: String,
    pub provider: ProviderHealth,
    /// The node that answered (`cluster.node_id`).
    pub node_id: String,
}

/// One chat session as listed in the sidebar.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct SessionSummary {
    pub id: SessionId,
    pub title: String,
    pub model: String,
    pub approval_mode: ApprovalMode,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct CreateSession {
    #[serde(default)]
    pub title: Option<String>,
}

/// `PATCH /api/sessions/{id}`: rename, switch model or approval mode.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
pub struct UpdateSession {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub approval_mode: Option<ApprovalMode>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SessionDetail {
    #[serde(flatten)]
    pub session: SessionSummary,
    pub events: Vec<ServerEvent>,
}

/// Kind of a workspace entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
}

/// What a command did to one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Created,
    Modified,
    Deleted,
}

/// Kind of a path a checkpoint keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    File,
    Dir,
    Link,
    /// A fifo or socket: noted, not kept.
    Other,
}

/// One path a command created, modified or deleted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FileChange {
    /// Workspace-relative.
    pub path: String,
    pub change: ChangeKind,
    pub kind: EntryKind,
    /// Bytes after the change (before it, for a deletion).
    pub size: u64,
}

/// A call's change to one path, with what the diff route needs to say
/// whether it can show the text.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct FileDiff {
    pub path: String,
    pub change: ChangeKind,
    /// True when either side is not text (or too large to show): then
    /// only the sizes are given.
    pub binary: bool,
    /// Unified diff, `--- a/path` / `+++ b/path`; absent for binaries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub before_size: Option<u64>,
    pub after_size: Option<u64>,
}

/// A checkpoint of the session: what the page needs to offer Undo.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CheckpointInfo {
    /// The tool call (or restore) it was taken before.
    pub call_id: CallId,
    /// `exec` or `restore`.
    pub kind: String,
    /// Paths the call changed.
    pub changes: usize,
    /// Dropped by retention: it can no longer be reverted.
    pub dropped: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// The answer to a revert.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RevertOutcome {
    pub call_id: CallId,
    pub restore_id: CallId,
    pub paths: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct FileEntry {
    pub name: String,
    /// Workspace-relative, `/`-separated.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// RFC 3339.
    pub modified: String,
}

/// One tool call in the audit trail.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct AuditEntry {
    pub call_id: CallId,
    pub turn_id: TurnId,
    pub tool: Tool,
    pub code: String,
    pub risk: Risk,
    pub approval_mode: ApprovalMode,
    /// `approved`, `denied`, `timed_out`, or absent while pending.
    pub decision: Option<Resolution>,
    pub decided_by: Option<DecidedBy>,
    /// RFC 3339.
    pub decided_at: Option<String>,
    pub exit_code: Option<i64>,
    /// RFC 3339.
    pub created_at: String,
}

/// One revert in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct RevertAudit {
    /// The call (or restore) whose checkpoint the workspace went back to.
    pub call_id: CallId,
    /// The revert's own id.
    pub restore_id: CallId,
    /// Who asked.
    pub by: String,
    /// RFC 3339.
    pub at: String,
    /// Paths it changed.
    pub paths: usize,
}

/// One line of `GET /api/sessions/{id}/audit`, in time order: a tool call
/// (`kind: "tool_call"`) or a revert (`kind: "revert"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditRecord {
    ToolCall(AuditEntry),
    Revert(RevertAudit),
}

impl AuditRecord {
    /// When it happened (RFC 3339), to merge the two kinds in order.
    pub fn at(&self) -> &str {
        match self {
            AuditRecord::ToolCall(entry) => &entry.created_at,
            AuditRecord::Revert(revert) => &revert.at,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// Every REST error: `{"error": {"code", "message"}}`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The models the provider offers, for the page's model picker.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct ModelList {
    pub models: Vec<String>,
    pub current: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_and_ignore_unknown_fields() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"user_message","text":"hi","extra":1}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::UserMessage {
                text: "hi".into(),
                client_id: None
            }
        );
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"user_message","text":" hi\n","client_id":"c-1"}"#)
                .unwrap();
        assert_eq!(
            m,
            ClientMessage::UserMessage {
                text: " hi\n".into(),
                client_id: Some("c-1".into())
            }
        );
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"approval_decision","approval_id":"a","decision":"deny"}"#,
        )
        .unwrap();
        assert_eq!(
            m,
            ClientMessage::ApprovalDecision {
                approval_id: "a".into(),
                decision: Decision::Deny,
                remember: false
            }
        );
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"nope"}"#).is_err());
    }

    /// Rows stored before `client_id` existed still load, and an event
    /// without one is written exactly as before.
    #[test]
    fn a_user_message_echo_carries_the_client_id_only_when_given() {
        let old: ServerEvent =
            serde_json::from_str(r#"{"type":"user_message","turn_id":"t","text":"hi"}"#).unwrap();
        assert_eq!(
            old,
            ServerEvent::UserMessage {
                turn_id: "t".into(),
                text: "hi".into(),
                client_id: None
            }
        );
        assert_eq!(
            serde_json::to_value(&old).unwrap(),
            serde_json::json!({"type": "user_message", "turn_id": "t", "text": "hi"})
        );
        let echo = ServerEvent::UserMessage {
            turn_id: "t".into(),
            text: "hi".into(),
            client_id: Some("c-1".into()),
        };
        assert_eq!(
            serde_json::to_value(&echo).unwrap(),
            serde_json::json!({"type": "user_message", "turn_id": "t", "text": "hi", "client_id": "c-1"})
        );
    }

    /// Every code, its name on the wire and its HTTP status, written out
    /// by hand: changing one, or adding one, means changing this table.
    #[test]
    fn every_error_code_has_its_wire_name_and_status() {
        let table: &[(&str, u16)] = &[
            ("unauthorized", 401),
            ("bad_credentials", 401),
            ("too_many_attempts", 429),
            ("not_found", 404),
            ("bad_request", 400),
            ("too_large", 413),
            ("conflict", 409),
            ("forbidden", 403),
            ("unavailable", 503),
            ("internal", 500),
            ("origin_refused", 403),
            ("unsupported_media_type", 415),
            ("login_busy", 503),
            ("limit_reached", 429),
            ("model_not_allowed", 400),
            ("bad_path", 400),
            ("symlink_refused", 400),
            ("upload_interrupted", 400),
            ("permission_denied", 403),
            ("not_a_file", 409),
            ("not_a_directory", 409),
            ("is_a_directory", 409),
            ("directory_not_empty", 409),
            ("quota_exceeded", 507),
            ("disk_full", 507),
            ("io_error", 500),
            ("message_too_large", 413),
            ("malformed_json", 400),
            ("malformed_message", 400),
            ("unknown_type", 400),
            ("unknown_approval", 404),
            ("queue_full", 429),
            ("slow_client", 503),
            ("session_closed", 410),
            ("storage_failed", 500),
            ("server_stopping", 503),
            ("step_limit", 429),
            ("provider_unreachable", 502),
            ("model_not_found", 404),
            ("provider_auth", 502),
            ("provider_busy", 503),
            ("provider_max_tokens", 502),
            ("provider_http", 502),
            ("provider_context_too_long", 413),
            ("tools_unsupported", 501),
            ("provider_stream_cut", 502),
            ("provider_stalled", 504),
            ("provider_bad_response", 502),
            ("provider_error", 502),
            ("bad_tool_call", 502),
            ("docker_unavailable", 503),
            ("image_missing", 503),
            ("code_too_large", 413),
            ("workspace_unavailable", 500),
            ("container_conflict", 409),
            ("container_failed", 503),
            ("exec_failed", 503),
            ("turn_running", 409),
            ("unknown_call", 404),
            ("checkpoint_gone", 410),
            ("no_checkpoint", 409),
            ("undo_failed", 500),
        ];
        assert_eq!(ErrorCode::ALL.len(), table.len());
        for (code, (name, status)) in ErrorCode::ALL.iter().zip(table) {
            assert_eq!((code.as_str(), code.http_status()), (*name, *status));
            let event = serde_json::to_value(ServerEvent::error(*code, "m")).unwrap();
            assert_eq!(event["code"], *name, "event");
            let body = serde_json::to_value(ErrorBody {
                error: ErrorDetail {
                    code: *code,
                    message: "m".into(),
                },
            })
            .unwrap();
            assert_eq!(body["error"]["code"], *name, "REST body");
            let back: ErrorCode = serde_json::from_value(serde_json::json!(name)).unwrap();
            assert_eq!(back, *code);
        }
        assert!(serde_json::from_str::<ErrorCode>("\"no_such_code\"").is_err());
    }

    #[test]
    fn ids_serialize_as_plain_strings() {
        let event = ServerEvent::TurnDone {
            turn_id: TurnId::from("t-1"),
            reason: TurnEndReason::Completed,
        };
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"turn_done","turn_id":"t-1","reason":"completed"}"#
        );
    }

    #[test]
    fn server_events_round_trip_with_snake_case_tags() {
        let e = ServerEvent::ExecDone {
            call_id: "c".into(),
            exit_code: Some(2),
            timed_out: false,
            duration_ms: 5,
        };
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "exec_done");
        assert_eq!(json["exit_code"], 2);
        let back: ServerEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
        assert_eq!(e.kind(), "exec_done");
    }
}
