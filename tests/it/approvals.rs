//! Approvals through the whole stack with the real sandbox: risky commands
//! wait for the person, denied and expired ones never run, modes, remember,
//! several tabs, and the audit trail.

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

async fn audit(c: &Client, id: &str) -> Vec<Value> {
    c.get(&format!("/api/sessions/{id}/audit"))
        .json_body()
        .await
}

async fn decide(ws: &mut Socket, approval_id: &str, decision: &str, remember: bool) {
    ws.send(json!({"type": "approval_decision", "approval_id": approval_id, "decision": decision, "remember": remember}))
        .await;
}

fn workspace_file(app: &TestApp, id: &str, name: &str) -> std::path::PathBuf {
    app.data_dir.join("workspaces").join(id).join(name)
}

#[actix_rt::test]
async fn a_denied_rm_never_runs_and_the_turn_goes_on() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/target.txt"))
        .body("keep me")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool("shell", json!({"command": "rm target.txt"})));
    llm.push(Reply::text("Understood, I left it alone."));
    ws.say("delete target.txt").await;

    let call = ws.until("tool_call").await;
    assert_eq!(call["risk"]["level"], "high");
    let request = ws.until("approval_request").await;
    assert_eq!(request["call_id"], call["call_id"]);
    assert_eq!(request["code"], "rm target.txt");
    assert_eq!(request["risk"]["level"], "high");
    let reasons = request["risk"]["reasons"].as_array().unwrap();
    assert!(
        !reasons.is_empty()
            && reasons
                .iter()
                .any(|r| r.as_str().unwrap().contains("delete")),
        "{reasons:?}"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(request["expires_at"].as_str().unwrap()).is_ok());

    decide(
        &mut ws,
        request["approval_id"].as_str().unwrap(),
        "deny",
        false,
    )
    .await;
    let events = ws.turn().await;
    let resolved = of_type(&events, "approval_resolved")[0].clone();
    assert_eq!(resolved["decision"], "denied");
    assert_eq!(resolved["by"], "user");
    assert!(
        of_type(&events, "exec_done").is_empty(),
        "a denied call never runs"
    );
    assert_eq!(events.last().unwrap()["reason"], "completed");
    assert_eq!(
        std::fs::read_to_string(workspace_file(&app, &id, "target.txt")).unwrap(),
        "keep me"
    );
    // The model was told, and answered.
    let told = llm.chat_requests()[1].body["messages"].to_string();
    assert!(told.contains("denied"), "{told}");
    let trail = audit(&alice, &id).await;
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0]["code"], "rm target.txt");
    assert_eq!(trail[0]["decision"], "denied");
    assert_eq!(trail[0]["decided_by"], "user");
    assert_eq!(trail[0]["approval_mode"], "risky");
    assert!(trail[0]["decided_at"].is_string());
    assert!(trail[0]["exit_code"].is_null());
    app.stop().await;
}

#[actix_rt::test]
async fn an_expired_request_is_denied_and_recorded() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |s| s.approval.timeout_secs = 1).await;
    alice
        .put(&format!("/api/sessions/{id}/files/target.txt"))
        .body("keep me")
        .send()
        .await
        .unwrap();
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "rm -rf target.txt"}),
    ));
    llm.push(Reply::text("No answer, so nothing was deleted."));
    ws.say("delete it").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "approval_request").len(), 1);
    let resolved = of_type(&events, "approval_resolved")[0].clone();
    assert_eq!(resolved["decision"], "timed_out");
    assert!(of_type(&events, "exec_done").is_empty());
    assert!(workspace_file(&app, &id, "target.txt").exists());
    let trail = audit(&alice, &id).await;
    assert_eq!(trail[0]["decision"], "timed_out");
    // Answering after expiry is a clear error, and the socket stays open.
    decide(
        &mut ws,
        resolved["approval_id"].as_str().unwrap(),
        "approve",
        false,
    )
    .await;
    assert_eq!(ws.until("error").await["code"], "unknown_approval");
    app.stop().await;
}

#[actix_rt::test]
async fn modes_always_asks_for_ls_risky_does_not_and_never_asks_for_nothing() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let mut ws = alice.connect(Some(&id)).await;

    // risky (the default): a read runs without asking.
    llm.push(Reply::tool("shell", json!({"command": "ls -la"})));
    llm.push(Reply::text("listed"));
    ws.say("list").await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "tool_call")[0]["risk"]["level"], "low");
    assert!(of_type(&events, "approval_request").is_empty());
    assert_eq!(of_type(&events, "exec_done")[0]["exit_code"], 0);

    // always: even ls asks.
    alice.set_mode(&id, "always").await;
    assert_eq!(
        ws.until("session").await["approval_mode"],
        "always",
        "tabs hear of the change"
    );
    llm.push(Reply::tool("shell", json!({"command": "ls"})));
    llm.push(Reply::text("listed again"));
    ws.say("list again").await;
    let request = ws.until("approval_request").await;
    decide(
        &mut ws,
        request["approval_id"].as_str().unwrap(),
        "approve",
        false,
    )
    .await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "approval_resolved")[0]["decision"],
        "approved"
    );
    assert_eq!(of_type(&events, "exec_done")[0]["exit_code"], 0);

    // never: even rm runs without asking.
    alice.set_mode(&id, "never").await;
    alice
        .put(&format!("/api/sessions/{id}/files/gone.txt"))
        .body("x")
        .send()
        .await
        .unwrap();
    llm.push(Reply::tool("shell", json!({"command": "rm gone.txt"})));
    llm.push(Reply::text("removed"));
    ws.say("remove it").await;
    let events = ws.turn().await;
    assert!(of_type(&events, "approval_request").is_empty());
    assert_eq!(of_type(&events, "exec_done")[0]["exit_code"], 0);
    assert!(!workspace_file(&app, &id, "gone.txt").exists());

    let trail = audit(&alice, &id).await;
    let by: Vec<(&str, &str, &str)> = trail
        .iter()
        .map(|e| {
            (
                e["approval_mode"].as_str().unwrap(),
                e["decision"].as_str().unwrap(),
                e["decided_by"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by,
        [
            ("risky", "approved", "policy"),
            ("always", "approved", "user"),
            ("never", "approved", "policy")
        ]
    );
    assert!(trail.iter().all(|e| e["exit_code"] == 0));
    app.stop().await;
}

#[actix_rt::test]
async fn remember_skips_the_second_identical_ask() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let mut ws = alice.connect(Some(&id)).await;
    let cmd = "rm -f scratch.tmp";
    llm.push(Reply::tool("shell", json!({"command": cmd})));
    llm.push(Reply::text("first"));
    ws.say("clean up").await;
    let request = ws.until("approval_request").await;
    decide(
        &mut ws,
        request["approval_id"].as_str().unwrap(),
        "approve",
        true,
    )
    .await;
    let events = ws.turn().await;
    assert_eq!(of_type(&events, "exec_done").len(), 1);

    llm.push(Reply::tool("shell", json!({"command": cmd})));
    llm.push(Reply::text("second"));
    ws.say("clean up again").await;
    let events = ws.turn().await;
    assert!(
        of_type(&events, "approval_request").is_empty(),
        "{events:#?}"
    );
    assert_eq!(of_type(&events, "exec_done").len(), 1);

    // A different risky command still asks.
    llm.push(Reply::tool("shell", json!({"command": "rm -f other.tmp"})));
    llm.push(Reply::text("third"));
    ws.say("and the other").await;
    let request = ws.until("approval_request").await;
    decide(
        &mut ws,
        request["approval_id"].as_str().unwrap(),
        "deny",
        false,
    )
    .await;
    ws.turn().await;
    let trail = audit(&alice, &id).await;
    let by: Vec<&str> = trail
        .iter()
        .map(|e| e["decided_by"].as_str().unwrap())
        .collect();
    assert_eq!(by, ["user", "policy", "user"]);
    app.stop().await;
}

#[actix_rt::test]
async fn another_tab_answers_and_every_tab_sees_it_resolved() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let mut a = alice.connect(Some(&id)).await;
    let mut b = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "rm -f nothing.txt"}),
    ));
    llm.push(Reply::text("done"));
    a.say("remove").await;
    let in_a = a.until("approval_request").await;
    let in_b = b.until("approval_request").await;
    assert_eq!(in_a["approval_id"], in_b["approval_id"]);

    // A tab opened now finds the pending request in its history.
    let c = alice.connect(Some(&id)).await;
    let pending: Vec<Value> = of_type(&c.history_events(), "approval_request")
        .into_iter()
        .cloned()
        .collect();
    assert_eq!(pending.len(), 1);
    assert!(of_type(&c.history_events(), "approval_resolved").is_empty());
    let mut c = c;
    decide(
        &mut c,
        pending[0]["approval_id"].as_str().unwrap(),
        "approve",
        false,
    )
    .await;

    for ws in [&mut a, &mut b, &mut c] {
        let resolved = ws.until("approval_resolved").await;
        assert_eq!(resolved["decision"], "approved");
        assert_eq!(resolved["by"], "user");
        assert_eq!(ws.until("exec_done").await["exit_code"], 0);
    }
    // A second answer (from the first tab) is refused politely.
    decide(&mut a, in_a["approval_id"].as_str().unwrap(), "deny", false).await;
    assert_eq!(a.until("error").await["code"], "unknown_approval");
    app.stop().await;
}

#[actix_rt::test]
async fn cancel_while_waiting_for_approval_denies_it_and_ends_the_turn() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool("shell", json!({"command": "rm -rf data"})));
    ws.say("wipe").await;
    ws.until("approval_request").await;
    ws.send(json!({"type": "cancel"})).await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "approval_resolved")[0]["decision"],
        "denied"
    );
    assert_eq!(events.last().unwrap()["reason"], "cancelled");
    assert!(of_type(&events, "exec_done").is_empty());
    assert_eq!(audit(&alice, &id).await[0]["decision"], "denied");
    app.stop().await;
}

#[actix_rt::test]
async fn a_users_default_mode_applies_to_their_new_sessions_only() {
    let llm = FakeLlm::start().await;
    let (app, alice, old) = alice_with_session(&llm.base_url, |_| {}).await;
    let me: Value = alice.get("/api/me").json_body().await;
    assert_eq!(me["approval_mode"], "risky");
    let resp = alice
        .patch("/api/me")
        .json(&json!({"approval_mode": "always"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let bad = alice
        .patch("/api/me")
        .json(&json!({"approval_mode": "sometimes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let new = alice.new_session().await;
    let sessions: Vec<Value> = alice.get("/api/sessions").json_body().await;
    let mode_of =
        |id: &str| sessions.iter().find(|s| s["id"] == id).unwrap()["approval_mode"].clone();
    assert_eq!(mode_of(&new), "always");
    assert_eq!(mode_of(&old), "risky", "existing sessions keep their mode");
    // Bob's default is his own.
    let bob = app.login("bob").await;
    let me: Value = bob.get("/api/me").json_body().await;
    assert_eq!(me["approval_mode"], "risky");
    // The new session asks even for `ls`.
    let mut ws = alice.connect(Some(&new)).await;
    llm.push(Reply::tool("shell", json!({"command": "ls"})));
    llm.push(Reply::text("ok"));
    ws.say("list").await;
    let request = ws.until("approval_request").await;
    decide(
        &mut ws,
        request["approval_id"].as_str().unwrap(),
        "approve",
        false,
    )
    .await;
    assert_eq!(ws.until("exec_done").await["exit_code"], 0);
    app.stop().await;
}

/// Upload `body` as the workspace file `name`.
async fn upload(c: &Client, id: &str, name: &str, body: &str) {
    let resp = c
        .put(&format!("/api/sessions/{id}/files/{name}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "upload {name}: {}",
        resp.status()
    );
}

/// The next approval request of the running turn, denied; returns it.
async fn deny_next(ws: &mut Socket) -> Value {
    let request = ws.until("approval_request").await;
    decide(ws, request["approval_id"].as_str().unwrap(), "deny", false).await;
    request
}

fn reasons(request: &Value) -> String {
    request["risk"]["reasons"].to_string()
}

#[actix_rt::test]
async fn the_script_trick_asks_and_a_deny_keeps_the_target() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    upload(&alice, &id, "keep1", "precious").await;
    let mut ws = alice.connect(Some(&id)).await;
    // Writing the script is a new file: it runs without asking...
    llm.push(Reply::tool(
        "shell",
        json!({"command": "printf 'rm -f keep1\\n' > a.sh"}),
    ));
    // ...but running it is judged on what it holds.
    llm.push(Reply::tool("shell", json!({"command": "bash a.sh"})));
    // Written and run in one call: cannot be judged beforehand.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "printf 'rm -f keep1\\n' > b.sh; sh b.sh"}),
    ));
    llm.push(Reply::text("left it"));
    ws.say("tidy up").await;
    let first = deny_next(&mut ws).await;
    assert_eq!(first["code"], "bash a.sh");
    assert!(
        reasons(&first).contains("runs a.sh, which deletes files"),
        "{}",
        reasons(&first)
    );
    let second = deny_next(&mut ws).await;
    assert!(reasons(&second).contains("b.sh"), "{}", reasons(&second));
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "exec_done").len(),
        0,
        "only the first call ran"
    );
    assert_eq!(
        std::fs::read_to_string(workspace_file(&app, &id, "keep1")).unwrap(),
        "precious"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_module_trick_asks_and_a_deny_keeps_the_target() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    upload(&alice, &id, "keep3", "precious").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "python",
        json!({"code": "open('m3.py', 'w').write('import os\\nos.remove(\"keep3\")\\n')"}),
    ));
    llm.push(Reply::tool("python", json!({"code": "import m3"})));
    llm.push(Reply::text("left it"));
    ws.say("set up a helper").await;
    let request = deny_next(&mut ws).await;
    assert_eq!(request["code"], "import m3");
    assert!(
        reasons(&request).contains("imports m3.py, which deletes files"),
        "{}",
        reasons(&request)
    );
    ws.turn().await;
    assert!(
        workspace_file(&app, &id, "m3.py").exists(),
        "the first call ran"
    );
    assert!(workspace_file(&app, &id, "keep3").exists());
    app.stop().await;
}

#[actix_rt::test]
async fn the_daemon_trick_asks_and_a_deny_keeps_the_target() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    upload(&alice, &id, "keep12", "precious").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "printf 'sleep 8; rm -f keep12\\n' > d.sh; setsid bash d.sh </dev/null >/dev/null 2>&1 & sleep 1"}),
    ));
    llm.push(Reply::text("left it"));
    ws.say("schedule a cleanup").await;
    let request = deny_next(&mut ws).await;
    assert!(
        reasons(&request).contains("setsid"),
        "{}",
        reasons(&request)
    );
    let events = ws.turn().await;
    assert!(of_type(&events, "exec_done").is_empty());
    assert!(workspace_file(&app, &id, "keep12").exists());
    app.stop().await;
}

#[actix_rt::test]
async fn a_script_edited_between_approval_and_run_is_refused() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    upload(&alice, &id, "job.sh", "rm -f scratch.txt\necho cleaned\n").await;
    upload(&alice, &id, "keep.txt", "precious").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool("shell", json!({"command": "bash job.sh"})));
    llm.push(Reply::text("it was refused"));
    ws.say("run the job").await;
    let request = ws.until("approval_request").await;
    assert!(
        reasons(&request).contains("runs job.sh"),
        "{}",
        reasons(&request)
    );
    // The file changes after the person saw it, before it runs.
    upload(&alice, &id, "job.sh", "rm -f keep.txt\n").await;
    decide(
        &mut ws,
        request["approval_id"].as_str().unwrap(),
        "approve",
        false,
    )
    .await;
    let events = ws.turn().await;
    let done = of_type(&events, "exec_done")[0].clone();
    assert_eq!(done["exit_code"], 126, "{done}");
    let stderr: String = of_type(&events, "exec_output")
        .iter()
        .filter(|e| e["stream"] == "stderr")
        .map(|e| e["data"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        stderr.contains("job.sh changed after the command was approved"),
        "{stderr}"
    );
    assert!(workspace_file(&app, &id, "keep.txt").exists());
    // The model is told too.
    let told = llm.chat_requests()[1].body["messages"].to_string();
    assert!(
        told.contains("changed after the command was approved"),
        "{told}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_setsid_daemon_is_gone_when_its_exec_ends() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    upload(&alice, &id, "keep.txt", "precious").await;
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "setsid bash -c 'sleep 8; rm -f keep.txt' </dev/null >/dev/null 2>&1 & sleep 1; echo planted"}),
    ));
    llm.push(Reply::tool(
        "shell",
        json!({"command": "ps -eo pid,sid,args"}),
    ));
    llm.push(Reply::text("done"));
    ws.say("plant it").await;
    let events = ws.turn().await;
    let ps: String = of_type(&events, "exec_output")
        .iter()
        .map(|e| e["data"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(ps.contains("planted"), "{ps}");
    assert!(
        !ps.contains("sleep 8"),
        "the daemon outlived its exec:\n{ps}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(9)).await;
    assert!(workspace_file(&app, &id, "keep.txt").exists());
    app.stop().await;
}
