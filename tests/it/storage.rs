//! What the workspace may cost the host (issue 10, items 3 and 4): the
//! quota holds against the agent and against parallel uploads, setuid bits
//! made in the sandbox never reach the host, and IronClaw's data is the
//! server's alone. Needs Docker, the sandbox image, and root (the quota
//! filesystems are loop mounts), as in CI.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

const MIB: u64 = 1024 * 1024;

/// The quota these tests run with: small, so filling it is quick.
const QUOTA_MB: u64 = 20;

fn workspace(app: &TestApp, id: &str) -> PathBuf {
    app.data_dir.join("workspaces").join(id)
}

/// Slack over the quota the tests allow for the disk blocks a file takes
/// beyond its data (ext4's extent blocks count in `st_blocks`): the quota
/// module states the bound.
const BLOCK_SLACK: u64 = MIB;

/// What the workspace holds on the host: (apparent bytes, allocated bytes)
/// of its regular files.
fn host_bytes(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = entry.path().symlink_metadata().unwrap();
        if meta.is_dir() {
            let (len, blocks) = host_bytes(&entry.path());
            total = (total.0 + len, total.1 + blocks);
        } else if meta.is_file() {
            total = (total.0 + meta.len(), total.1 + meta.blocks() * 512);
        }
    }
    total
}

fn assert_within_quota(dir: &Path) -> u64 {
    let (len, blocks) = host_bytes(dir);
    assert!(
        len <= QUOTA_MB * MIB,
        "{len} bytes on the host against a {QUOTA_MB} MiB quota"
    );
    assert!(
        blocks <= QUOTA_MB * MIB + BLOCK_SLACK,
        "{blocks} bytes of disk against a {QUOTA_MB} MiB quota"
    );
    len
}

/// The options the workspace is mounted with on the host, if mounted.
fn mount_options(dir: &Path) -> Option<String> {
    let dir = dir.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(' ').collect();
        (fields.get(4) == Some(&dir.to_str().unwrap())).then(|| fields[5].to_string())
    })
}

/// Runs `command` through the fake model in a session whose commands run
/// unasked; answers the command's stdout+stderr and its exit code.
async fn run_shell(llm: &FakeLlm, ws: &mut Socket, command: &str) -> (String, Value) {
    llm.push(Reply::tool("shell", json!({ "command": command })));
    llm.push(Reply::text("done"));
    ws.say("go").await;
    let events = ws.turn().await;
    let output: String = of_type(&events, "exec_output")
        .iter()
        .filter_map(|e| e["data"].as_str())
        .collect();
    let done = of_type(&events, "exec_done")
        .first()
        .map(|e| e["exit_code"].clone())
        .unwrap_or(Value::Null);
    (output, done)
}

async fn setup(llm: &FakeLlm) -> (TestApp, Client, String, Socket) {
    let (app, alice, id) = alice_with_session(&llm.base_url, |s| {
        s.files.quota_mb = QUOTA_MB;
        s.files.max_upload_mb = 100;
    })
    .await;
    alice.set_mode(&id, "never").await;
    let ws = alice.connect(Some(&id)).await;
    (app, alice, id, ws)
}

#[actix_rt::test]
async fn the_agent_writing_past_the_quota_gets_no_space_left_and_the_host_keeps_its_disk() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id, mut ws) = setup(&llm).await;
    let (output, exit) = run_shell(
        &llm,
        &mut ws,
        "head -c 200M /dev/zero > big.bin; echo status=$?",
    )
    .await;
    assert!(
        output.contains("No space left on device"),
        "the model sees why the write stopped: {output}"
    );
    assert!(output.contains("status=1"), "{output}");
    assert_eq!(exit, 0);
    let held = assert_within_quota(&workspace(&app, &id));
    assert!(held > QUOTA_MB * MIB - MIB, "the quota is usable: {held}");
    // The model got the message too.
    let chats = llm.chat_requests();
    let tool_result = chats[1].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()["content"]
        .to_string();
    assert!(
        tool_result.contains("No space left on device"),
        "{tool_result}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn parallel_uploads_cannot_pass_the_quota_together() {
    let llm = FakeLlm::start().await;
    let (app, alice, id, _ws) = setup(&llm).await;
    let body = vec![7u8; 7 * MIB as usize];
    let mut uploads = Vec::new();
    for i in 0..6 {
        let (alice, id, body) = (alice.clone(), id.clone(), body.clone());
        uploads.push(tokio::spawn(async move {
            let resp = if i % 2 == 0 {
                alice
                    .put(&format!("/api/sessions/{id}/files/raw-{i}.bin"))
                    .body(body)
                    .send()
                    .await
            } else {
                // Multipart, with no length per file.
                let form = reqwest::multipart::Form::new().part(
                    "file",
                    reqwest::multipart::Part::bytes(body).file_name(format!("form-{i}.bin")),
                );
                alice
                    .post(&format!("/api/sessions/{id}/files"))
                    .multipart(form)
                    .send()
                    .await
            };
            let resp = resp.unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body)
        }));
    }
    let mut stored = 0;
    for upload in uploads {
        let (status, body) = upload.await.unwrap();
        match status {
            201 => stored += 1,
            507 => assert_eq!(body["error"]["code"], "quota_exceeded", "{body}"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(
        (1..=2).contains(&stored),
        "{stored} uploads of 7 MiB stored"
    );
    assert_within_quota(&workspace(&app, &id));
    let listed = alice
        .get(&format!("/api/sessions/{id}/files"))
        .send()
        .await
        .unwrap()
        .json::<Vec<Value>>()
        .await
        .unwrap();
    assert_eq!(listed.len(), stored, "no partial file left: {listed:?}");
    app.stop().await;
}

#[actix_rt::test]
async fn an_upload_does_not_fit_where_the_agent_filled_the_quota() {
    let llm = FakeLlm::start().await;
    let (app, alice, id, mut ws) = setup(&llm).await;
    run_shell(&llm, &mut ws, "head -c 19M /dev/zero > fill.bin").await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/late.bin"))
        .body(vec![1u8; 2 * MIB as usize])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 507);
    app.stop().await;
}

#[actix_rt::test]
async fn a_setuid_file_made_in_the_sandbox_has_no_setuid_bit_on_the_host() {
    let llm = FakeLlm::start().await;
    let (app, _alice, id, mut ws) = setup(&llm).await;
    let (output, _) = run_shell(
        &llm,
        &mut ws,
        "cp /bin/bash x && chmod 4755 x && mkdir d && chmod 2775 d && cp x d/y && chmod 6755 d/y \
         && stat -c '%a %n' x d d/y && grep ' /workspace ' /proc/mounts",
    )
    .await;
    // It was set inside, and inside the mount is nosuid already.
    assert!(output.contains("4755 x"), "{output}");
    let inside = output
        .lines()
        .find(|l| l.contains(" /workspace "))
        .unwrap_or_default();
    assert!(
        inside.contains("nosuid") && inside.contains("nodev"),
        "{output}"
    );

    let root = workspace(&app, &id);
    for name in ["x", "d", "d/y"] {
        let meta = std::fs::symlink_metadata(root.join(name)).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o6000,
            0,
            "{name} keeps mode {:o} on the host",
            meta.permissions().mode()
        );
    }
    // And could not run with its owner's rights anyway.
    let options = mount_options(&root).expect("the workspace is its own mount");
    assert!(
        options.contains("nosuid") && options.contains("nodev"),
        "{options}"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn data_dir_database_and_workspaces_are_the_servers_alone() {
    let llm = FakeLlm::start().await;
    let (app, alice, id, mut ws) = setup(&llm).await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/sub/up.txt"))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // The sandbox still reads and writes what was uploaded.
    let (output, _) = run_shell(&llm, &mut ws, "cat sub/up.txt && echo more >> sub/up.txt").await;
    assert!(output.contains("hello"), "{output}");

    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    let data = &app.data_dir;
    assert_eq!(mode(data), 0o700, "data dir");
    assert_eq!(mode(&data.join("workspaces")), 0o700);
    assert_eq!(mode(&data.join("volumes")), 0o700);
    // The SQLite file and its journals (PostgreSQL keeps its own files).
    if let ironclaw::db::Database::Sqlite(db) = &app.database {
        assert_eq!(db, &data.join("ironclaw.db"));
        for suffix in ["", "-wal", "-shm"] {
            let mut path = db.as_os_str().to_owned();
            path.push(suffix);
            let path = std::path::PathBuf::from(path);
            if path.exists() || suffix.is_empty() {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
    } else {
        assert!(
            !data.join("ironclaw.db").exists(),
            "a SQLite file beside PostgreSQL"
        );
    }
    assert_eq!(
        mode(&data.join("volumes").join(format!("{id}.ext4"))),
        0o600
    );
    let root = workspace(&app, &id);
    assert_eq!(mode(&root.join("sub")), 0o700);
    assert_eq!(mode(&root.join("sub/up.txt")), 0o600);
    let owner = std::fs::metadata(root.join("sub/up.txt")).unwrap().uid();
    assert_eq!(owner, ironclaw::sandbox::SANDBOX_UID);
    assert_eq!(
        std::fs::read_to_string(root.join("sub/up.txt")).unwrap(),
        "hellomore\n"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn the_quota_filesystem_survives_a_restart_and_goes_with_the_session() {
    let llm = FakeLlm::start().await;
    let (app, alice, id, _ws) = setup(&llm).await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/kept.txt"))
        .body("kept")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let root = workspace(&app, &id);
    assert!(mount_options(&root).is_some());
    // Stopping detaches the mounts, as a reboot would.
    let (data_dir, temp) = app.stop().await;
    assert!(mount_options(&root).is_none());

    let app = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .data_dir(&data_dir)
        .settings(|s| s.files.quota_mb = QUOTA_MB)
        .start()
        .await;
    let alice = app.login("alice").await;
    let resp = alice
        .get(&format!("/api/sessions/{id}/files/kept.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "kept");
    assert!(mount_options(&root).is_some(), "mounted again");

    let resp = alice
        .delete(&format!("/api/sessions/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    assert!(mount_options(&root).is_none(), "unmounted");
    assert!(!root.exists());
    assert!(!data_dir.join("volumes").join(format!("{id}.ext4")).exists());
    app.stop().await;
    drop(temp);
}
