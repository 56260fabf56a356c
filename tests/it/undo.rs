//! Undo through the whole stack with the real sandbox: what each command
//! changed, reverting it (and the revert), retention, the routes' guards,
//! and a store the sandbox cannot reach.

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

/// Runs one command through a turn (the session's mode decides whether it
/// asks); answers the turn's events and the call id.
async fn run(ws: &mut Socket, llm: &FakeLlm, tool: &str, code: &str) -> (Vec<Value>, String) {
    let args = match tool {
        "python" => json!({ "code": code }),
        _ => json!({ "command": code }),
    };
    llm.push(Reply::tool(tool, args));
    llm.push(Reply::text("Done."));
    ws.say("go").await;
    let events = ws.turn().await;
    let call_id = of_type(&events, "tool_call")
        .first()
        .and_then(|c| c["call_id"].as_str())
        .unwrap_or_else(|| panic!("no tool call: {events:#?}"))
        .to_string();
    (events, call_id)
}

async fn upload(c: &Client, id: &str, path: &str, body: Vec<u8>) {
    let resp = c
        .put(&format!("/api/sessions/{id}/files/{path}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "upload {path}");
}

async fn download(c: &Client, id: &str, path: &str) -> Option<Vec<u8>> {
    let resp = c
        .get(&format!("/api/sessions/{id}/files/{path}"))
        .send()
        .await
        .unwrap();
    match resp.status().as_u16() {
        200 => Some(resp.bytes().await.unwrap().to_vec()),
        404 => None,
        s => panic!("download {path}: {s}"),
    }
}

async fn revert(c: &Client, id: &str, call_id: &str) -> reqwest::Response {
    c.post(&format!("/api/sessions/{id}/calls/{call_id}/revert"))
        .send()
        .await
        .unwrap()
}

/// A workspace of text and binary files in folders.
fn sample() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("notes.txt", b"first line\nsecond line\n".to_vec()),
        ("data/sales.csv", b"region,sales\nnorth,10\n".to_vec()),
        (
            "data/deep/blob.bin",
            (0..=255u8).cycle().take(70_000).collect(),
        ),
    ]
}

#[actix_rt::test]
async fn an_approved_rm_rf_is_reverted_byte_for_byte_and_the_model_is_told() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    for (path, body) in sample() {
        upload(&alice, &id, path, body).await;
    }
    let mut ws = alice.connect(Some(&id)).await;
    llm.push(Reply::tool(
        "shell",
        json!({"command": "rm -rf /workspace/*"}),
    ));
    llm.push(Reply::text("Deleted."));
    ws.say("clear the workspace").await;
    let request = ws.until("approval_request").await;
    ws.send(json!({"type": "approval_decision", "approval_id": request["approval_id"], "decision": "approve"}))
        .await;
    let events = ws.turn().await;
    let call_id = request["call_id"].as_str().unwrap().to_string();
    assert!(download(&alice, &id, "notes.txt").await.is_none());

    // Exactly what the command did, with the call it came from.
    let changed = of_type(&events, "files_changed");
    assert_eq!(changed.len(), 1, "{events:#?}");
    assert_eq!(changed[0]["call_id"], call_id.as_str());
    let mut changes = changed[0]["changes"].as_array().unwrap().clone();
    changes.sort_by_key(|c| c["path"].as_str().unwrap().to_string());
    assert_eq!(
        changes,
        [
            json!({"path": "data", "change": "deleted", "kind": "dir", "size": 0}),
            json!({"path": "data/deep", "change": "deleted", "kind": "dir", "size": 0}),
            json!({"path": "data/deep/blob.bin", "change": "deleted", "kind": "file", "size": 70_000}),
            json!({"path": "data/sales.csv", "change": "deleted", "kind": "file", "size": 22}),
            json!({"path": "notes.txt", "change": "deleted", "kind": "file", "size": 23}),
        ]
    );
    let listed: Vec<Value> = alice
        .get(&format!("/api/sessions/{id}/calls/{call_id}/changes"))
        .json_body()
        .await;
    assert_eq!(listed.len(), 5);

    let resp = revert(&alice, &id, &call_id).await;
    assert_eq!(resp.status(), 200);
    let outcome: Value = resp.json().await.unwrap();
    assert_eq!(outcome["call_id"], call_id.as_str());
    assert_eq!(outcome["paths"].as_array().unwrap().len(), 5);
    for (path, body) in sample() {
        assert_eq!(
            download(&alice, &id, path).await.as_deref(),
            Some(&body[..]),
            "{path}"
        );
    }
    // Every tab hears of it, and it is in the history.
    let restored = ws.until("workspace_restored").await;
    assert_eq!(restored["call_id"], call_id.as_str());
    assert_eq!(restored["restore_id"], outcome["restore_id"]);
    let again = alice.connect(Some(&id)).await;
    assert_eq!(
        of_type(&again.history_events(), "workspace_restored").len(),
        1
    );
    // The sandbox sees the files again.
    alice.set_mode(&id, "never").await;
    let (events, _) = run(&mut ws, &llm, "shell", "cat /workspace/notes.txt").await;
    let out: String = of_type(&events, "exec_output")
        .iter()
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(out, "first line\nsecond line\n");
    // The model was told with the next message.
    let told = llm.chat_requests()[2].body["messages"].to_string();
    assert!(
        told.contains("The person restored the workspace to how it was before your command `rm -rf /workspace/*`"),
        "{told}"
    );
    assert!(told.contains("/workspace/notes.txt"), "{told}");
    // The audit records who reverted which call, and when.
    let audit: Vec<Value> = alice
        .get(&format!("/api/sessions/{id}/audit"))
        .json_body()
        .await;
    let reverts: Vec<&Value> = audit.iter().filter(|e| e["kind"] == "revert").collect();
    assert_eq!(reverts.len(), 1, "{audit:#?}");
    assert_eq!(reverts[0]["call_id"], call_id.as_str());
    assert_eq!(reverts[0]["by"], "alice");
    assert_eq!(reverts[0]["paths"], 5);
    assert!(chrono::DateTime::parse_from_rfc3339(reverts[0]["at"].as_str().unwrap()).is_ok());
    assert_eq!(audit[0]["kind"], "tool_call");
    app.stop().await;
}

#[actix_rt::test]
async fn a_truncation_a_rewriting_program_and_a_revert_of_a_revert() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    let report = "row\n".repeat(5000).into_bytes();
    upload(&alice, &id, "report.csv", report.clone()).await;
    for name in ["a.py", "b.py", "c.py"] {
        upload(&alice, &id, name, format!("print('{name}')\n").into_bytes()).await;
    }
    let mut ws = alice.connect(Some(&id)).await;

    // A truncation by redirect.
    let (_, truncate) = run(&mut ws, &llm, "shell", ": > /workspace/report.csv").await;
    assert_eq!(download(&alice, &id, "report.csv").await.unwrap().len(), 0);
    assert_eq!(revert(&alice, &id, &truncate).await.status(), 200);
    assert_eq!(download(&alice, &id, "report.csv").await.unwrap(), report);

    // A program that rewrites three files and creates two.
    let program = "for n in ['a.py', 'b.py', 'c.py']:\n    open(f'/workspace/{n}', 'w').write('rewritten\\n')\nimport os\nos.makedirs('/workspace/out', exist_ok=True)\nopen('/workspace/out/new1.txt', 'w').write('1')\nopen('/workspace/new2.txt', 'w').write('2')\n";
    let (events, rewrite) = run(&mut ws, &llm, "python", program).await;
    let changes = of_type(&events, "files_changed")[0]["changes"]
        .as_array()
        .unwrap()
        .clone();
    let summary: Vec<(String, String)> = changes
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().into(),
                c["change"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("a.py".into(), "modified".into()),
            ("b.py".into(), "modified".into()),
            ("c.py".into(), "modified".into()),
            ("new2.txt".into(), "created".into()),
            ("out".into(), "created".into()),
            ("out/new1.txt".into(), "created".into()),
        ]
    );
    // The diff of a text file, line by line.
    let diff: Value = alice
        .get(&format!(
            "/api/sessions/{id}/calls/{rewrite}/diff?path=a.py"
        ))
        .json_body()
        .await;
    assert_eq!(diff["binary"], false);
    let text = diff["diff"].as_str().unwrap();
    assert!(text.contains("--- a/a.py\n+++ b/a.py\n"), "{text}");
    assert!(text.contains("-print('a.py')\n+rewritten\n"), "{text}");

    let resp = revert(&alice, &id, &rewrite).await;
    assert_eq!(resp.status(), 200);
    let outcome: Value = resp.json().await.unwrap();
    for name in ["a.py", "b.py", "c.py"] {
        assert_eq!(
            download(&alice, &id, name).await.unwrap(),
            format!("print('{name}')\n").into_bytes()
        );
    }
    assert!(download(&alice, &id, "new2.txt").await.is_none());
    assert!(download(&alice, &id, "out/new1.txt").await.is_none());

    // The revert is itself a checkpoint: undoing it brings the program's
    // work back.
    let restore_id = outcome["restore_id"].as_str().unwrap();
    let changes: Vec<Value> = alice
        .get(&format!("/api/sessions/{id}/calls/{restore_id}/changes"))
        .json_body()
        .await;
    assert_eq!(changes.len(), 6);
    assert_eq!(revert(&alice, &id, restore_id).await.status(), 200);
    assert_eq!(download(&alice, &id, "a.py").await.unwrap(), b"rewritten\n");
    assert_eq!(download(&alice, &id, "out/new1.txt").await.unwrap(), b"1");
    assert_eq!(download(&alice, &id, "report.csv").await.unwrap(), report);
    app.stop().await;
}

#[actix_rt::test]
async fn retention_drops_the_oldest_checkpoint_and_says_so() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |s| s.undo.keep = 2).await;
    alice.set_mode(&id, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    let mut calls = Vec::new();
    for i in 0..3 {
        let (_, call) = run(
            &mut ws,
            &llm,
            "shell",
            &format!("echo {i} > /workspace/f{i}.txt"),
        )
        .await;
        calls.push(call);
    }
    let resp = revert(&alice, &id, &calls[0]).await;
    assert_eq!(resp.status(), 410);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "checkpoint_gone");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("dropped"));
    // The page's list says which can still be undone.
    let list: Vec<Value> = alice
        .get(&format!("/api/sessions/{id}/checkpoints"))
        .json_body()
        .await;
    let dropped: Vec<(&str, bool)> = list
        .iter()
        .map(|c| {
            (
                c["call_id"].as_str().unwrap(),
                c["dropped"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dropped,
        [
            (calls[0].as_str(), true),
            (calls[1].as_str(), false),
            (calls[2].as_str(), false)
        ]
    );
    // The log told the tabs.
    let again = alice.connect(Some(&id)).await;
    let logs: Vec<String> = of_type(&again.history_events(), "log")
        .iter()
        .filter_map(|l| l["message"].as_str().map(str::to_string))
        .collect();
    assert!(
        logs.iter()
            .any(|m| m.contains("checkpoints were dropped") && m.contains(&calls[0])),
        "{logs:?}"
    );
    // The newest still reverts.
    assert_eq!(revert(&alice, &id, &calls[1]).await.status(), 200);
    assert!(download(&alice, &id, "f1.txt").await.is_none());
    assert!(download(&alice, &id, "f2.txt").await.is_none());
    assert_eq!(download(&alice, &id, "f0.txt").await.unwrap(), b"0\n");
    app.stop().await;
}

#[actix_rt::test]
async fn undo_routes_guard_other_users_unknown_calls_and_running_turns() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    let (_, call) = run(&mut ws, &llm, "shell", "echo x > /workspace/x.txt").await;
    let (_, read_only) = run(&mut ws, &llm, "shell", "ls /workspace").await;

    // Another user: every route answers 404, as for an unknown session.
    let bob = app.login("bob").await;
    for path in [
        format!("/api/sessions/{id}/checkpoints"),
        format!("/api/sessions/{id}/calls/{call}/changes"),
        format!("/api/sessions/{id}/calls/{call}/diff?path=x.txt"),
    ] {
        assert_eq!(status(bob.get(&path)).await, 404, "{path}");
    }
    assert_eq!(revert(&bob, &id, &call).await.status(), 404);
    assert!(
        download(&alice, &id, "x.txt").await.is_some(),
        "bob changed nothing"
    );
    // A page of another origin, in alice's own browser: refused before the
    // route runs.
    let resp = alice
        .post(&format!("/api/sessions/{id}/calls/{call}/revert"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_refused");
    assert!(download(&alice, &id, "x.txt").await.is_some());

    // Unknown call, a read-only call, a path the call did not change.
    let resp = revert(&alice, &id, "call_nope").await;
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_call");
    let resp = revert(&alice, &id, &read_only).await;
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_checkpoint");
    assert_eq!(
        status(alice.get(&format!(
            "/api/sessions/{id}/calls/{call}/diff?path=other.txt"
        )))
        .await,
        404
    );

    // While a turn runs (here: waiting for approval) a revert is refused.
    alice.set_mode(&id, "always").await;
    llm.push(Reply::tool("shell", json!({"command": "ls"})));
    llm.push(Reply::text("Done."));
    ws.say("look").await;
    let request = ws.until("approval_request").await;
    let resp = revert(&alice, &id, &call).await;
    assert_eq!(resp.status(), 409);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "turn_running");
    assert!(download(&alice, &id, "x.txt").await.is_some());
    ws.send(json!({"type": "approval_decision", "approval_id": request["approval_id"], "decision": "deny"}))
        .await;
    ws.turn().await;
    assert_eq!(revert(&alice, &id, &call).await.status(), 200);
    assert!(download(&alice, &id, "x.txt").await.is_none());
    app.stop().await;
}

#[actix_rt::test]
async fn the_sandbox_cannot_see_or_write_the_snapshot_store() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    let marker = "ironclaw-undo-canary-7d1f0e";
    upload(&alice, &id, "canary.txt", marker.as_bytes().to_vec()).await;
    let mut ws = alice.connect(Some(&id)).await;
    run(&mut ws, &llm, "shell", "rm /workspace/canary.txt").await;
    // The store on the host holds the content, owner-only.
    let store = app.data_dir.join("snapshots").join(&id);
    let found = std::process::Command::new("grep")
        .args(["-rl", marker])
        .arg(&store)
        .output()
        .unwrap();
    assert!(
        !found.stdout.is_empty(),
        "the checkpoint holds the deleted file"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // Nothing in the sandbox reaches it: no mount names it, and a search
    // of every file the sandbox can read finds no copy.
    // The marker is put together in the shell, so the command's own text
    // (staged in the sandbox to run) does not hold it.
    let (head, tail) = marker.split_at(10);
    let probe = format!(
        "m={head}; m=$m{tail}; grep -c snapshots /proc/self/mountinfo; grep -rls \"$m\" / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | wc -l; echo end"
    );
    let (events, _) = run(&mut ws, &llm, "shell", &probe).await;
    let out: String = of_type(&events, "exec_output")
        .iter()
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(out, "0\n0\nend\n", "{events:#?}");
    app.stop().await;
}

#[actix_rt::test]
async fn files_changed_is_exact_for_15000_of_20000_files() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    let make = "import os\nfor d in range(20):\n    os.makedirs(f'/workspace/d{d:02}', exist_ok=True)\n    for i in range(1000):\n        open(f'/workspace/d{d:02}/f{i:04}', 'w').write('x')\n";
    let (events, _) = run(&mut ws, &llm, "python", make).await;
    let made = of_type(&events, "files_changed")[0]["changes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(made, 20_020);
    let touch = "for d in range(5, 20):\n    for i in range(1000):\n        open(f'/workspace/d{d:02}/f{i:04}', 'w').write('yy')\n";
    let (events, call) = run(&mut ws, &llm, "python", touch).await;
    let changes = of_type(&events, "files_changed")[0]["changes"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(changes.len(), 15_000);
    assert!(changes
        .iter()
        .all(|c| c["change"] == "modified" && c["size"] == 2));
    let listed: Vec<Value> = alice
        .get(&format!("/api/sessions/{id}/calls/{call}/changes"))
        .json_body()
        .await;
    assert_eq!(listed.len(), 15_000);
    app.stop().await;
}
