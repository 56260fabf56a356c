//! The agent loop through the whole stack: the fake model calls `shell` and
//! `python`, the commands run in the real sandbox, output streams to the
//! socket, the model gets the result and answers. Needs Docker and the
//! sandbox image; fails loudly without them.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

/// A server, a logged-in alice and a socket on a session whose approval
/// mode is `never`, so commands run without asking.
async fn setup(
    llm: &FakeLlm,
    tweak: impl FnOnce(&mut ironclaw::config::Settings),
) -> (TestApp, Client, Socket) {
    let (app, alice, id) = alice_with_session(&llm.base_url, tweak).await;
    alice.set_mode(&id, "never").await;
    let ws = alice.connect(Some(&id)).await;
    (app, alice, ws)
}

fn output(events: &[Value], call_id: &str, stream: &str) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "exec_output" && e["call_id"] == call_id && e["stream"] == stream)
        .filter_map(|e| e["data"].as_str())
        .collect()
}

#[actix_rt::test]
async fn a_two_step_turn_runs_a_command_and_answers_from_its_output() {
    let llm = FakeLlm::start().await;
    let (app, alice, mut ws) = setup(&llm, |_| {}).await;
    llm.push(Reply::text("Let me check.").then_tool(
        "shell",
        json!({"command": "echo hello; echo oops >&2; exit 3"}),
    ));
    llm.push(Reply::text("The command printed hello and failed with 3."));
    ws.say("run it").await;
    let events = ws.turn().await;

    let call = of_type(&events, "tool_call")[0].clone();
    assert_eq!(call["tool"], "shell");
    assert_eq!(call["code"], "echo hello; echo oops >&2; exit 3");
    assert!(call["risk"]["level"].is_string() && call["risk"]["reasons"].is_array());
    let call_id = call["call_id"].as_str().unwrap();
    assert_eq!(output(&events, call_id, "stdout"), "hello\n");
    assert_eq!(output(&events, call_id, "stderr"), "oops\n");
    let done = of_type(&events, "exec_done")[0].clone();
    assert_eq!(done["exit_code"], 3);
    assert_eq!(done["timed_out"], false);
    assert!(done["duration_ms"].as_u64().is_some());
    let messages: Vec<&str> = of_type(&events, "assistant_message")
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert_eq!(
        messages,
        [
            "Let me check.",
            "The command printed hello and failed with 3."
        ]
    );
    assert_eq!(events.last().unwrap()["reason"], "completed");

    // The model's second request carries the tool result.
    let chats = llm.chat_requests();
    assert_eq!(chats.len(), 2);
    let msgs = chats[1].body["messages"].as_array().unwrap();
    let tool_msg = msgs
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool result sent back");
    let content = tool_msg["content"].as_str().unwrap();
    assert!(
        content.contains("hello") && content.contains("oops") && content.contains("exit code 3"),
        "{content}"
    );
    assert_eq!(chats[1].body["tools"][0]["function"]["name"], "shell");

    // History replays the tool call, its output and its end, in order.
    let again = alice.connect(Some(&ws.session_id())).await;
    let kinds: Vec<String> = again
        .history_events()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_string())
        .collect();
    let tool_at = kinds.iter().position(|k| k == "tool_call").unwrap();
    let done_at = kinds.iter().position(|k| k == "exec_done").unwrap();
    assert!(tool_at < done_at);
    assert_eq!(
        output(&again.history_events(), call_id, "stdout"),
        "hello\n"
    );
    assert_eq!(output(&again.history_events(), call_id, "stderr"), "oops\n");
    app.stop().await;
}

#[actix_rt::test]
async fn the_container_is_ready_before_the_first_command_and_python_and_shell_share_the_workspace()
{
    let llm = FakeLlm::start().await;
    let (app, _alice, mut ws) = setup(&llm, |_| {}).await;
    // Opening the tab started the container: it runs before anything is
    // said, with its exec agent answering.
    let name = ironclaw::sandbox::container_name(&app.instance_id(), &ws.session_id());
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let agent = std::process::Command::new("docker")
            .args([
                "exec",
                &name,
                "pgrep",
                "-f",
                "^/usr/local/lib/ironclaw/agent",
            ])
            .output()
            .unwrap();
        if agent.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "no container with its agent after the tab opened"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    llm.push(Reply::tool("python", json!({"code": "import json\nopen('note.json','w').write(json.dumps({'n': 6*7}))\nprint('written')"})));
    llm.push(Reply::tool(
        "shell",
        json!({"command": "cat note.json; id -u; pwd"}),
    ));
    llm.push(Reply::text("done"));
    ws.say("go").await;
    let events = ws.turn().await;
    let calls = of_type(&events, "tool_call");
    let first = calls[0]["call_id"].as_str().unwrap();
    let second = calls[1]["call_id"].as_str().unwrap();
    assert_eq!(output(&events, first, "stdout"), "written\n");
    assert_eq!(
        output(&events, second, "stdout"),
        "{\"n\": 42}1000\n/workspace\n"
    );
    // Started quietly when the tab opened: the turn carries no routine
    // container lines.
    let logs: Vec<&str> = of_type(&events, "log")
        .iter()
        .filter(|e| e["source"] == "sandbox")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(logs.is_empty(), "{logs:?}");
    // The file is in the session's workspace on the host.
    let on_host = app
        .data_dir
        .join("workspaces")
        .join(ws.session_id())
        .join("note.json");
    assert_eq!(std::fs::read_to_string(on_host).unwrap(), "{\"n\": 42}");
    app.stop().await;
}

#[actix_rt::test]
async fn a_timed_out_and_a_cancelled_command_leave_nothing_running() {
    let llm = FakeLlm::start().await;
    let (app, _alice, mut ws) = setup(&llm, |s| s.sandbox.exec_timeout_secs = 2).await;
    llm.push(Reply::tool("shell", json!({"command": "sleep 600"})));
    llm.push(Reply::text("it timed out"));
    ws.say("sleep").await;
    let events = ws.turn().await;
    let done = of_type(&events, "exec_done")[0].clone();
    assert_eq!(done["timed_out"], true, "{done}");
    let tool_msg = llm.chat_requests()[1].body["messages"].to_string();
    assert!(
        tool_msg.contains("timed out"),
        "the model is told: {tool_msg}"
    );

    llm.push(Reply::tool("shell", json!({"command": "sleep 601"})));
    ws.say("sleep again").await;
    ws.until("tool_call").await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    ws.send(json!({"type": "cancel"})).await;
    let events = ws.turn().await;
    assert_eq!(events.last().unwrap()["reason"], "cancelled");
    assert_eq!(of_type(&events, "exec_done").len(), 1, "{events:#?}");

    llm.push(Reply::tool("shell", json!({"command": "ps -eo cmd"})));
    llm.push(Reply::text("checked"));
    ws.say("what is running?").await;
    let events = ws.turn().await;
    let call_id = of_type(&events, "tool_call")[0]["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ps = output(&events, &call_id, "stdout");
    assert!(ps.contains("ps -eo cmd"), "{ps}");
    assert!(
        !ps.contains("sleep 600") && !ps.contains("sleep 601"),
        "{ps}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_step_limit_ends_a_looping_turn_with_a_clear_message() {
    let llm = FakeLlm::start().await;
    let (app, _alice, mut ws) = setup(&llm, |s| s.agent.max_steps = 3).await;
    for _ in 0..3 {
        llm.push(Reply::tool("shell", json!({"command": "true"})));
    }
    ws.say("loop").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "exec_done").len(), 3);
    let error = of_type(&events, "error")[0].clone();
    assert_eq!(error["code"], "step_limit");
    assert!(error["message"]
        .as_str()
        .unwrap()
        .contains("agent.max_steps"));
    assert_eq!(events.last().unwrap()["reason"], "error");
    app.stop().await;
}

#[actix_rt::test]
async fn a_model_without_tools_runs_fenced_blocks_through_the_same_path() {
    let llm = FakeLlm::start().await;
    llm.no_tools(true);
    let (app, _alice, mut ws) = setup(&llm, |_| {}).await;
    llm.push(Reply::text(
        "I'll count:\n```bash\nseq 3 | paste -sd+ | bc 2>/dev/null || echo $((1+2+3))\n```\n",
    ));
    llm.push(Reply::text("The sum is 6."));
    ws.say("sum 1..3").await;
    let events = ws.turn().await;
    assert!(of_type(&events, "log").iter().any(|e| e["message"]
        .as_str()
        .unwrap()
        .contains("does not support tool")));
    let call_id = of_type(&events, "tool_call")[0]["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(output(&events, &call_id, "stdout"), "6\n");
    assert_eq!(
        of_type(&events, "assistant_message").last().unwrap()["text"],
        "The sum is 6."
    );
    // Without tools, the result goes back as plain text.
    let last = llm.chat_requests().last().unwrap().body.clone();
    assert!(last.get("tools").is_none());
    assert!(last["messages"].to_string().contains("6"));
    app.stop().await;
}

#[actix_rt::test]
async fn deleting_a_session_removes_its_container_and_workspace() {
    let llm = FakeLlm::start().await;
    let (app, alice, mut ws) = setup(&llm, |_| {}).await;
    llm.push(Reply::tool("shell", json!({"command": "echo hi > f.txt"})));
    llm.push(Reply::text("ok"));
    ws.say("make a file").await;
    ws.turn().await;
    let id = ws.session_id();
    let workspace = app.data_dir.join("workspaces").join(&id);
    assert!(workspace.join("f.txt").exists());
    let containers = || {
        let out = std::process::Command::new("docker")
            .args([
                "ps",
                "-aq",
                "--filter",
                &format!("label=ironclaw.session={id}"),
            ])
            .output()
            .expect("docker ps");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert!(!containers().is_empty(), "the session has a container");
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}"))).await,
        204
    );
    assert!(
        ws.closed_within(Duration::from_secs(5)).await,
        "the socket is closed"
    );
    let mut gone = false;
    for _ in 0..50 {
        if containers().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "container removed");
    assert!(!workspace.exists(), "workspace removed");
    app.stop().await;
}

/// Container ids labelled with `session`, running or not.
fn session_containers(session: &str) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=ironclaw.session={session}"),
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// Seconds since the epoch, as `docker events` takes them.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// The container events (`create`, `destroy`, ...) of `session` between
/// two instants.
fn session_container_events(session: &str, since: f64, until: f64) -> Vec<String> {
    let out = std::process::Command::new("docker")
        .args([
            "events",
            "--since",
            &format!("{since:.3}"),
            "--until",
            &format!("{until:.3}"),
            "--filter",
            "type=container",
            "--filter",
            &format!("label=ironclaw.session={session}"),
            "--format",
            "{{.Action}}",
        ])
        .output()
        .expect("docker events");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

async fn health_docker(alice: &Client) -> Value {
    let health: Value = alice.get("/api/health").json_body().await;
    for key in ["status", "database", "docker", "provider"] {
        assert!(health.get(key).is_some(), "{key} in {health}");
    }
    health["docker"].clone()
}

#[actix_rt::test]
async fn deleting_a_live_session_removes_its_container_once_before_answering() {
    let llm = FakeLlm::start().await;
    let (app, alice, mut ws) = setup(&llm, |_| {}).await;
    assert_eq!(health_docker(&alice).await, "ok");
    llm.push(Reply::tool("shell", json!({"command": "echo hi"})));
    llm.push(Reply::text("ok"));
    ws.say("say hi").await;
    ws.turn().await;
    let id = ws.session_id();
    assert_eq!(
        session_containers(&id).len(),
        1,
        "the session has a container"
    );

    let since = unix_now();
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}"))).await,
        204
    );
    // No waiting: the route answers once the container is gone.
    assert_eq!(session_containers(&id), Vec::<String>::new());
    let until = unix_now() + 1.0;
    assert!(
        ws.closed_within(Duration::from_secs(5)).await,
        "the socket is closed"
    );
    let events = session_container_events(&id, since, until);
    assert_eq!(
        events.iter().filter(|a| *a == "destroy").count(),
        1,
        "removed exactly once: {events:?}"
    );
    assert!(
        !events.iter().any(|a| a == "create"),
        "nothing made a new container: {events:?}"
    );
    let live = app
        .supervisor
        .send(ironclaw::supervisor::Live {
            session_id: id.clone().into(),
        })
        .await
        .unwrap();
    assert!(live.is_none(), "the session's actors are gone");
    assert_eq!(health_docker(&alice).await, "ok");
    app.stop().await;
}

#[actix_rt::test]
async fn deleting_a_session_without_live_actors_removes_its_leftover_container() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    // A container left behind (say, by a crash) under the session's name,
    // with no actors of the session running.
    let mut conn = ironclaw::db::connect(&app.database).unwrap();
    let instance = ironclaw::db::queries::instance_id(&mut conn).unwrap();
    let name = ironclaw::sandbox::container_name(&instance, &id);
    let run = std::process::Command::new("docker")
        .args(["run", "-d", "--network", "none", "--cap-drop", "ALL"])
        .args(["--name", &name])
        .args(["--label", &format!("ironclaw.session={id}")])
        .args(["--label", &format!("ironclaw.instance={instance}")])
        .args(["ironclaw-sandbox:latest", "sleep", "infinity"])
        .output()
        .expect("docker run");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(session_containers(&id).len(), 1);
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}"))).await,
        204
    );
    assert_eq!(session_containers(&id), Vec::<String>::new());
    app.stop().await;
}
