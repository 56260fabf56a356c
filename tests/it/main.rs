//! The integration test binary: the real server on 127.0.0.1, a real SQLite
//! file in a temp dir, the fake LLM (DESIGN.md §8).

mod approvals;
mod browser;
mod chat;
mod fake_llm;
mod files;
mod providers;
mod sandbox;
mod support;
mod tools;
