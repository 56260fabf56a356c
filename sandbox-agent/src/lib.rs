//! IronClaw's sandbox exec agent, `ironclaw-agent` (wire protocol v1). The
//! specification follows (it is the crate's `README.md`); each module's own
//! docs say which part of it the module carries out.
//!
//! # Layout
//!
//! - [`protocol`]: frame layouts, encoding and decoding (pure; the host side
//!   and the tests use it too).
//! - [`agent`]: the single-threaded `poll(2)` loop: requests, output
//!   forwarding, timers, heartbeats, reaping.
//! - [`call`]: one call as the agent tracks it: pipes, deadlines, and the
//!   mapping to the reported exit code.
//! - [`keeper`]: the processes behind a call. The keeper (uid 0, a child
//!   subreaper) forks the program (uid 1000), waits for it, then sweeps
//!   every process left below it.
//! - [`proc_tree`]: the `/proc` walks the sweeps use (pure over their input).
//! - [`privileges`]: the start-up check for uid 0 and the capabilities.
//! - [`sys`]: thin libc wrappers.
//!
#![doc = include_str!("../README.md")]

pub mod agent;
pub mod call;
pub mod keeper;
pub mod privileges;
pub mod proc_tree;
pub mod protocol;
pub mod sys;
