//! IronClaw's sandbox exec agent (`ironclaw-agent`), wire protocol v1.
//!
//! One agent runs in every sandbox container, started by the host with
//! `docker exec -i -u 0:0 <container> /usr/local/lib/ironclaw/agent`. It reads
//! RUN and KILL frames on stdin and answers with READY, STDOUT, STDERR,
//! EXIT, HEARTBEAT and REFUSED frames on stdout; stderr carries only its own
//! diagnostics. When stdin reaches EOF it kills every call and exits 0. The
//! full specification is the crate's `README.md`.
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
//! - [`proc_tree`]: the `/proc` walk the sweep uses (pure over its input).
//! - [`privileges`]: the start-up check for uid 0 and the capabilities.
//! - [`sys`]: thin libc wrappers.
//!
//! # Processes
//!
//! ```text
//! agent (uid 0, subreaper, poll loop)
//! └─ keeper (uid 0, subreaper, own session; one per call)
//!    └─ program (uid 1000, own process group, no capabilities)
//!       └─ whatever it starts, however it detaches
//! ```
//!
//! The container has only CAP_SETUID, CAP_SETGID and CAP_KILL and runs with
//! no-new-privileges: uid 1000 can neither signal nor ptrace the agent or a
//! keeper, nor write the agent's binary (read-only rootfs).

pub mod agent;
pub mod call;
pub mod keeper;
pub mod privileges;
pub mod proc_tree;
pub mod protocol;
pub mod sys;
