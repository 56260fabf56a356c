#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `make bench`: how fast a command goes through the whole stack. Prints
//! figures; asserts only that things worked (timings are never asserted:
//! machines are shared and noisy). Ignored by `make test`.
//!
//! - first exec of a new session: WebSocket `user_message` to `exec_done`,
//!   including container creation;
//! - warm exec round trip: `user_message` to `exec_done` for `true`, the
//!   fake model answering instantly, p50/p99;
//! - raw `docker exec <container> true` on the same container, p50/p99, for
//!   comparison (includes the docker CLI's own start-up);
//! - first streamed token: `user_message` to the first `assistant_delta`.

#[path = "it/fake_llm.rs"]
mod fake_llm;
#[path = "it/support.rs"]
mod support;

use std::time::{Duration, Instant};

use serde_json::json;

use fake_llm::{FakeLlm, Reply};
use ironclaw::config::ProviderKind;
use support::*;

/// Round trips measured per figure.
const RUNS: usize = 50;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let idx = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[idx]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

async fn exec_round_trip(ws: &mut Socket, llm: &FakeLlm) -> Duration {
    llm.push(Reply::tool("shell", json!({"command": "true"})));
    llm.push(Reply::text("ok"));
    let start = Instant::now();
    ws.say("run true").await;
    let done = ws.until("exec_done").await;
    let took = start.elapsed();
    assert_eq!(done["exit_code"], 0, "{done}");
    ws.until("turn_done").await;
    took
}

#[actix_rt::test]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_exec_round_trip() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;

    // First exec of new sessions (container created on demand).
    let mut firsts = Vec::new();
    let mut last_session = String::new();
    for _ in 0..5 {
        let id = alice.new_session().await;
        alice.set_mode(&id, "never").await;
        let mut ws = alice.connect(Some(&id)).await;
        firsts.push(exec_round_trip(&mut ws, &llm).await);
        last_session = id;
    }

    let mut ws = alice.connect(Some(&last_session)).await;
    let mut warm = Vec::new();
    for _ in 0..RUNS {
        warm.push(exec_round_trip(&mut ws, &llm).await);
    }

    let container = String::from_utf8(
        std::process::Command::new("docker")
            .args([
                "ps",
                "-q",
                "--filter",
                &format!("label=ironclaw.session={last_session}"),
            ])
            .output()
            .expect("docker ps")
            .stdout,
    )
    .unwrap()
    .trim()
    .to_string();
    assert!(!container.is_empty(), "the session's container is running");
    let mut raw = Vec::new();
    for _ in 0..RUNS {
        let start = Instant::now();
        let out = std::process::Command::new("docker")
            .args(["exec", &container, "true"])
            .output()
            .expect("docker exec");
        raw.push(start.elapsed());
        assert!(out.status.success());
    }

    let mut first_token = Vec::new();
    for i in 0..RUNS {
        llm.push(Reply::text(format!("answer {i}")));
        let start = Instant::now();
        ws.say("hi").await;
        ws.until("assistant_delta").await;
        first_token.push(start.elapsed());
        ws.until("turn_done").await;
    }

    println!();
    println!("IronClaw bench ({RUNS} runs each, command `true`, fake model answering instantly)");
    println!("{:<58} {:>10} {:>10}", "", "p50", "p99");
    println!(
        "{:<58} {:>10} {:>10}",
        "first exec, new session (WS message -> exec_done)",
        ms(percentile(&mut firsts, 0.5)),
        ms(percentile(&mut firsts, 0.99))
    );
    println!(
        "{:<58} {:>10} {:>10}",
        "exec round trip, whole stack (WS message -> exec_done)",
        ms(percentile(&mut warm, 0.5)),
        ms(percentile(&mut warm, 0.99))
    );
    println!(
        "{:<58} {:>10} {:>10}",
        "raw `docker exec <container> true` (CLI)",
        ms(percentile(&mut raw, 0.5)),
        ms(percentile(&mut raw, 0.99))
    );
    println!(
        "{:<58} {:>10} {:>10}",
        "first token (WS message -> first assistant_delta)",
        ms(percentile(&mut first_token, 0.5)),
        ms(percentile(&mut first_token, 0.99))
    );
    app.stop().await;
}

/// The quota a bench session runs with: small, so the loop fills it fast.
const BENCH_QUOTA_MB: u64 = 64;

/// Rounds of the writing loop; each appends more than the whole quota.
const QUOTA_ROUNDS: usize = 5;

/// Bytes of the regular files under `dir`: (apparent, allocated on disk).
fn bytes_under(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.is_dir() {
            let (a, b) = bytes_under(&entry.path());
            total = (total.0 + a, total.1 + b);
        } else if meta.is_file() {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

#[actix_rt::test]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_quota_against_an_agent_writing_in_a_loop() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .settings(|s| s.files.quota_mb = BENCH_QUOTA_MB)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    let root = app.data_dir.join("workspaces").join(&id);
    let quota = BENCH_QUOTA_MB * 1024 * 1024;
    println!("quota against an agent writing in a loop ({BENCH_QUOTA_MB} MiB quota):");
    for round in 0..QUOTA_ROUNDS {
        // Many files of 8 MiB each, well past the quota, then one more try.
        let command = format!(
            "for i in $(seq 1 {n}); do head -c 8M /dev/urandom > r{round}-$i.bin || break; done; \
             echo tail >> r{round}-tail.txt; df -k /workspace | tail -1",
            n = BENCH_QUOTA_MB / 8 * 2
        );
        llm.push(Reply::tool("shell", json!({ "command": command })));
        llm.push(Reply::text("ok"));
        let start = Instant::now();
        ws.say("fill it").await;
        let events = ws.turn().await;
        let took = start.elapsed();
        let output: String = of_type(&events, "exec_output")
            .iter()
            .filter_map(|e| e["data"].as_str())
            .collect();
        let (apparent, on_disk) = bytes_under(&root);
        println!(
            "  round {round}: {apparent} bytes ({:.1}% of quota), {on_disk} on disk, ENOSPC seen: {}, {}",
            apparent as f64 * 100.0 / quota as f64,
            output.contains("No space left on device"),
            ms(took)
        );
        assert!(apparent <= quota, "{apparent} > {quota}");
    }
    // And an upload on top is refused.
    let status = alice
        .put(&format!("/api/sessions/{id}/files/on-top.bin"))
        .body(vec![0u8; 1024 * 1024])
        .send()
        .await
        .unwrap()
        .status();
    println!("  a 1 MiB upload on a full workspace: {status}");
    app.stop().await;
}
