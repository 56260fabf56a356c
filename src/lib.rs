//! IronClaw: a self-hosted AI agent runtime. A person logs in to a web page,
//! chats with an LLM agent, and the agent runs shell commands and Python for
//! them inside a hardened Docker sandbox of their own session.
//!
//! # Layout
//!
//! - [`protocol`]: every WebSocket frame and REST body. The wire, in one place.
//! - [`config`]: settings from defaults, `ironclaw.toml` and `IRONCLAW_*`.
//! - [`app`]: start-up: database, first admin, supervisor, HTTP server.
//! - [`http`]: REST routes, the WebSocket upgrade, the page, `ApiError`.
//! - [`ws`]: the WsSession actor, one per browser socket.
//! - [`supervisor`]: the SessionSupervisor, registry of live sessions.
//! - [`agent`]: the AgentActor, one per live session: the conversation loop.
//! - [`provider`]: the ProviderActor and the LLM wire formats it decodes.
//! - [`db`]: diesel/SQLite, the PersistenceActor pool and the queries.
//! - [`auth`]: password hashes, login tokens, the failed-login limiter.

pub mod agent;
pub mod app;
pub mod approval;
pub mod auth;
pub mod config;
pub mod db;
pub mod http;
pub mod protocol;
pub mod provider;
pub mod risk;
pub mod sandbox;
pub mod supervisor;
pub mod workspace;
pub mod ws;
