//! The warm pool through the whole server: new sessions adopt started
//! containers that are hardened like any other, carry nothing of anyone
//! else, are never given out twice, and are replaced in the background.
//! (That the pool drains on shutdown is in `cli::sigterm_…`.)

use std::time::{Duration, Instant};

use ironclaw::config::ProviderKind;
use serde_json::Value;

use crate::fake_llm::FakeLlm;
use crate::support::{of_type, Client, Socket, TestApp};

/// The running pooled containers of `instance`: (id, name).
fn pooled(instance: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new("docker")
        .args([
            "ps",
            "--no-trunc",
            "--filter",
            "label=ironclaw.pool=1",
            "--filter",
            &format!("label=ironclaw.instance={instance}"),
            "--filter",
            "status=running",
            "--format",
            "{{.ID}} {{.Names}}",
        ])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect()
}

/// Waits until the pool holds `n` started containers and none of `not`.
async fn pool_of(instance: &str, n: usize, not: &[String]) -> Vec<(String, String)> {
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        let now = pooled(instance);
        if now.len() == n && now.iter().all(|(id, _)| !not.contains(id)) {
            return now;
        }
        assert!(
            Instant::now() < give_up,
            "the pool never held {n} fresh containers: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn inspect(name: &str) -> Value {
    let out = std::process::Command::new("docker")
        .args(["inspect", name])
        .output()
        .expect("docker inspect");
    assert!(out.status.success(), "no container {name}");
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    all[0].clone()
}

/// A new session of `client`'s that runs commands without asking, open
/// in a tab.
async fn open_session(client: &Client) -> (String, Socket) {
    let id = client.new_session().await;
    client.set_mode(&id, "never").await;
    let socket = client.connect(Some(&id)).await;
    (id, socket)
}

/// Everything the sandbox's output said during one turn.
fn output(events: &[Value]) -> String {
    of_type(events, "exec_output")
        .iter()
        .filter_map(|e| e["data"].as_str())
        .collect()
}

#[actix_rt::test]
async fn new_sessions_adopt_warm_containers_that_are_hardened_clean_and_never_shared() {
    let llm = FakeLlm::start().await;
    llm.set_scripted_runs(true);
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .settings(|s| s.sandbox.warm_pool = 2)
        .start()
        .await;
    let instance = app.instance_id();
    let first = pool_of(&instance, 2, &[]).await;
    let first_ids: Vec<String> = first.iter().map(|(id, _)| id.clone()).collect();

    let alice = app.login("alice").await;
    let (a, mut sa) = open_session(&alice).await;
    sa.say("run: echo from-a > a.txt; ls -A /workspace; id -u")
        .await;
    let events = sa.turn().await;
    assert_eq!(output(&events), "a.txt\n1000\n", "{events:#?}");

    // Alice's session runs in one of the pooled containers, now under her
    // session's name, with the hardening of any sandbox.
    let a_info = inspect(&ironclaw::sandbox::container_name(&instance, &a));
    let a_id = a_info["Id"].as_str().unwrap().to_string();
    assert!(first_ids.contains(&a_id), "{a_id} was not pooled");
    let host = &a_info["HostConfig"];
    assert_eq!(host["ReadonlyRootfs"], true);
    assert_eq!(host["CapDrop"], serde_json::json!(["ALL"]));
    assert_eq!(
        host["CapAdd"],
        serde_json::json!(["SETUID", "SETGID", "KILL"])
    );
    assert_eq!(
        host["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    assert_eq!(host["NetworkMode"], "none");
    assert_eq!(host["Init"], true);
    assert!(host["PidsLimit"].as_i64().unwrap() > 0);
    assert!(host["Memory"].as_i64().unwrap() > 0);
    assert_eq!(a_info["Config"]["User"], "0:0");
    // Its workspace is the session's own folder on the host.
    let workspace = app.data_dir.join("workspaces").join(&a);
    assert_eq!(
        std::fs::read_to_string(workspace.join("a.txt")).unwrap(),
        "from-a\n"
    );
    // Moved into place as a mount (root: a quota filesystem), it keeps the
    // flags every workspace mount has.
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    if let Some(line) = mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == workspace.to_str())
    {
        assert!(line.contains("nosuid") && line.contains("nodev"), "{line}");
    }

    // Bob's new session gets the other one, and sees nothing of Alice's.
    let bob = app.login("bob").await;
    let (b, mut sb) = open_session(&bob).await;
    sb.say("run: ls -A /workspace; cat /workspace/a.txt; ls /tmp/.ironclaw | wc -l")
        .await;
    let events = sb.turn().await;
    let seen = output(&events);
    assert!(seen.contains("No such file"), "{seen}");
    assert!(!seen.contains("from-a"), "{seen}");
    let b_id = inspect(&ironclaw::sandbox::container_name(&instance, &b))["Id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(first_ids.contains(&b_id), "{b_id} was not pooled");
    assert_ne!(a_id, b_id, "one pooled container served two sessions");

    // The pool fills again with new containers; the adopted ones are never
    // handed out again, and no pooled workspace is left where they were.
    let refilled = pool_of(&instance, 2, &first_ids).await;
    assert_eq!(refilled.len(), 2);
    let leftovers: Vec<String> = std::fs::read_dir(app.data_dir.join("workspaces"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".pool-"))
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
    app.stop().await;
}
