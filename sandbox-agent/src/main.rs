//! `ironclaw-agent`: the resident exec agent of an IronClaw sandbox
//! container. See the crate's README and `lib.rs` for the protocol and the
//! process layout.

fn main() {
    std::process::exit(ironclaw_sandbox_agent::agent::main());
}
