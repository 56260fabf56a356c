//! The integration test binary: the real server on 127.0.0.1, a real SQLite
//! file in a temp dir, the fake LLM (DESIGN.md §8).

// clippy.toml allows unwrap/expect in `#[test]` functions; the helpers here
// are test code too, and a panic with the reason is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod approvals;
mod browser;
mod chat;
mod cli;
mod fake_llm;
mod files;
mod layout;
mod page_perf;
mod page_safety;
mod pool;
mod providers;
mod sandbox;
mod storage;
mod support;
mod terminal;
mod tools;
mod undo;
mod web_safety;
mod webdriver;
