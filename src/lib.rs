//! IronClaw: a self-hosted AI agent runtime. A person logs in to a web page,
//! chats with an LLM agent, and the agent runs shell commands and Python for
//! them inside a hardened Docker sandbox of their own session.
//!
//! # Layout
//!
//! - [`protocol`]: every WebSocket frame and REST body. The wire, in one place.
//! - [`config`]: settings from defaults, `ironclaw.toml` and `IRONCLAW_*`.
//! - [`app`]: start-up: database, first admin, Docker, supervisor, HTTP
//!   server.
//! - [`http`]: REST routes, the page, `ApiError`. Reaches sessions and
//!   Docker only through the supervisor.
//! - [`ws`]: the WsSession actor, one per browser socket, and the upgrade
//!   (the only user of actix-web-actors).
//! - [`supervisor`]: the SessionSupervisor, registry of live sessions and
//!   owner of each one's actor set; removes a deleted session's container.
//! - [`agent`]: the AgentActor, one per live session, which carries out
//!   what its turn machine decides: `agent/turn.rs` (the pure turn state
//!   machine: inputs in, effects out), `agent/conversation.rs` (what the
//!   model sees, folded from the stored log), `agent/tabs.rs` (fan-out to
//!   the session's sockets).
//! - [`provider`]: the ProviderActor and the LLM wire formats it decodes
//!   (`provider/decode.rs` for the streams, `provider/anthropic.rs` for
//!   the Messages API's shape); tool calls leave it typed, as `ToolCall`.
//! - [`approval`]: the ApprovalActor: judges each call's risk with
//!   [`risk`] (the shell and Python classifiers) and holds pending
//!   approvals.
//! - [`sandbox`]: the SandboxActor, one container per live session
//!   (`sandbox/mod.rs`), split into `container` (lifecycle, hardening,
//!   reaper, the `Engine` handle), `exec` (the wrapper, timeouts, kill) and
//!   `output` (pure output decoders). The only user of bollard.
//! - [`workspace`]: the session's files on the host, confined paths, the
//!   confined walk.
//! - [`undo`]: checkpoints before commands, what each command changed, and
//!   reverts: the manifest scan, the content-addressed object store under
//!   `data/snapshots/`, the restore (its log is `db/checkpoints.rs`).
//! - [`quota`]: each workspace as its own size-limited filesystem (a
//!   loop-mounted ext4 image, `nosuid,nodev`), and the upload ledger.
//! - [`db`]: diesel/SQLite, the PersistenceActor pool, the queries
//!   (`db/queries.rs`), the agent's named writes (`db/journal.rs`) and the
//!   undo log (`db/checkpoints.rs`). The
//!   only user of diesel.
//! - [`auth`]: password hashes, login tokens, the failed-login limiter.

pub mod agent;
pub mod app;
pub mod approval;
pub mod auth;
pub mod chat;
pub mod config;
pub mod db;
pub mod http;
pub mod protocol;
pub mod provider;
pub mod quota;
pub mod relay;
pub mod risk;
pub mod sandbox;
pub mod supervisor;
pub mod undo;
pub mod workspace;
pub mod ws;
