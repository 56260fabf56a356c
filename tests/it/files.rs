//! Workspace files through REST: byte-exact round trips, limits, path
//! attacks (including symlinks the agent makes inside the sandbox), other
//! users, and the upload -> agent -> download loop end to end.

use std::io::{Read, Write};

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;

const MIB: usize = 1024 * 1024;

fn enc(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn put(c: &Client, id: &str, path: &str, body: Vec<u8>) -> reqwest::Response {
    c.put(&format!("/api/sessions/{id}/files/{}", enc(path)))
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn get(c: &Client, id: &str, path: &str) -> reqwest::Response {
    c.get(&format!("/api/sessions/{id}/files/{}", enc(path)))
        .send()
        .await
        .unwrap()
}

async fn multipart(
    c: &Client,
    id: &str,
    dir: Option<&str>,
    files: &[(&str, Vec<u8>)],
) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    if let Some(d) = dir {
        form = form.text("dir", d.to_string());
    }
    for (name, bytes) in files {
        form = form.part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone()).file_name(name.to_string()),
        );
    }
    c.post(&format!("/api/sessions/{id}/files"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn list(c: &Client, id: &str, dir: &str) -> Vec<Value> {
    let resp = c
        .get(&format!("/api/sessions/{id}/files?path={}", enc(dir)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "list {dir}");
    resp.json().await.unwrap()
}

/// A request sent byte for byte, so no client normalises `..` away.
fn raw_request(base: &str, method: &str, target: &str, cookie: &str, body: &[u8]) -> u16 {
    let addr = base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nCookie: {cookie}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[actix_rt::test]
async fn uploads_and_downloads_are_byte_exact_in_both_forms() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let text = "héllo wörld\nline 2\n".as_bytes().to_vec();
    let binary: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
    let big: Vec<u8> = (0..50 * MIB).map(|i| (i * 31 % 251) as u8).collect();

    assert_eq!(
        put(&alice, &id, "notes/hello.txt", text.clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        put(&alice, &id, "bin/all bytes.bin", binary.clone())
            .await
            .status(),
        201
    );
    assert_eq!(
        put(&alice, &id, "big/fifty.bin", big.clone())
            .await
            .status(),
        201
    );
    let resp = multipart(
        &alice,
        &id,
        Some("uploads/données"),
        &[("été 日本.csv", text.clone()), ("b.bin", binary.clone())],
    )
    .await;
    assert_eq!(resp.status(), 201);
    let entries: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["path"], "uploads/données/été 日本.csv");
    let resp = multipart(&alice, &id, None, &[("big.bin", big.clone())]).await;
    assert_eq!(resp.status(), 201);

    for (path, want) in [
        ("notes/hello.txt", &text),
        ("bin/all bytes.bin", &binary),
        ("big/fifty.bin", &big),
        ("uploads/données/été 日本.csv", &text),
        ("uploads/données/b.bin", &binary),
        ("big.bin", &big),
    ] {
        let resp = get(&alice, &id, path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let cd = resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cd.starts_with("attachment"), "{cd}");
        assert_eq!(
            resp.headers()["content-length"].to_str().unwrap(),
            want.len().to_string()
        );
        let got = resp.bytes().await.unwrap();
        assert!(got.as_ref() == want.as_slice(), "{path}: bytes differ");
    }
    let resp = get(&alice, &id, "notes/hello.txt").await;
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));

    // Listing: directories first, sizes right.
    let root = list(&alice, &id, "").await;
    let names: Vec<&str> = root.iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["big", "bin", "notes", "uploads", "big.bin"]);
    assert_eq!(root[4]["size"], big.len());
    assert_eq!(root[0]["kind"], "dir");
    let sub = list(&alice, &id, "uploads/données").await;
    assert_eq!(sub.len(), 2);

    // Delete: a file, then an empty directory; a non-empty one is refused.
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}/files/notes"))).await,
        409
    );
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}/files/notes/hello.txt"))).await,
        204
    );
    assert_eq!(
        status(alice.delete(&format!("/api/sessions/{id}/files/notes"))).await,
        204
    );
    assert_eq!(get(&alice, &id, "notes/hello.txt").await.status(), 404);
    app.stop().await;
}

#[actix_rt::test]
async fn upload_size_limit_is_413_and_quota_is_a_clear_error() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |s| {
        s.files.max_upload_mb = 1;
        s.files.quota_mb = 2;
    })
    .await;
    let resp = put(&alice, &id, "too-big.bin", vec![7; MIB + 1]).await;
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    let resp = multipart(&alice, &id, None, &[("too-big.bin", vec![7; MIB + 1])]).await;
    assert_eq!(resp.status(), 413);
    assert!(
        list(&alice, &id, "").await.is_empty(),
        "nothing partial is left behind"
    );

    assert_eq!(
        put(&alice, &id, "a.bin", vec![1; MIB - 10]).await.status(),
        201
    );
    assert_eq!(
        put(&alice, &id, "b.bin", vec![2; MIB - 10]).await.status(),
        201
    );
    let resp = put(&alice, &id, "c.bin", vec![3; MIB / 2]).await;
    assert_eq!(resp.status(), 507);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "quota_exceeded");
    assert!(body["error"]["message"].as_str().unwrap().len() > 20);
    assert_eq!(list(&alice, &id, "").await.len(), 2);
    app.stop().await;
}

#[actix_rt::test]
async fn path_attacks_are_refused_with_400_and_never_followed() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    // A host file outside the workspace that the attacks aim at.
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "host secret").unwrap();
    std::fs::set_permissions(
        outside.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let passwd_before = std::fs::read("/etc/passwd").unwrap();

    // The agent makes symlinks inside the sandbox.
    alice.set_mode(&id, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    let target = secret.display().to_string();
    let dir = outside.path().display().to_string();
    llm.push(Reply::tool("shell", json!({"command": format!("ln -s /etc/passwd pw && ln -s {target} sec && ln -s {dir} outdir && ln -s / rootdir && ls -l")})));
    llm.push(Reply::text("links made"));
    ws.say("make links").await;
    let events = ws.turn().await;
    assert_eq!(
        of_type(&events, "exec_done")[0]["exit_code"],
        0,
        "{events:#?}"
    );

    let files = format!("/api/sessions/{id}/files");
    let cookie = alice.cookie.clone();
    let attacks = [
        "../../../etc/passwd",
        "..",
        "a/../../x",
        "%2e%2e/%2e%2e/etc/passwd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2Fetc%2Fpasswd",
        "a%00b",
        "a%5c..%5c..%5cetc%5cpasswd",
        &"n".repeat(300),
        "pw",
        "sec",
        "outdir/secret.txt",
        "outdir/new.txt",
        "rootdir/etc/passwd",
    ];
    for attack in attacks {
        let target = format!("{files}/{attack}");
        for method in ["GET", "PUT", "DELETE"] {
            // Deleting a symlink removes the link itself, which is safe; it
            // is checked separately below.
            if method == "DELETE" && ["pw", "sec"].contains(&attack) {
                continue;
            }
            let status = raw_request(&app.base, method, &target, &cookie, b"pwned");
            assert_eq!(status, 400, "{method} {attack}");
        }
        let status = raw_request(
            &app.base,
            "GET",
            &format!("{files}?path={attack}"),
            &cookie,
            b"",
        );
        if !["pw", "sec"].contains(&attack) || attack.contains('/') {
            assert_eq!(status, 400, "list {attack}");
        }
    }
    // Multipart with a hostile file name or directory.
    for (dir, name) in [
        (None, "../escape.txt"),
        (Some("../up"), "x.txt"),
        (Some("outdir"), "x.txt"),
        (None, "/etc/cron.d/x"),
    ] {
        let resp = multipart(&alice, &id, dir, &[(name, b"pwned".to_vec())]).await;
        assert_eq!(resp.status(), 400, "multipart {dir:?} {name}");
    }
    // Listing a directory through a symlink is refused too.
    assert_eq!(
        raw_request(
            &app.base,
            "GET",
            &format!("{files}?path=outdir"),
            &cookie,
            b""
        ),
        400
    );

    // The host files are untouched and nothing appeared outside.
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd_before);
    let outside_names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside_names.len(), 1, "{outside_names:?}");
    assert!(!app.data_dir.join("workspaces").join("escape.txt").exists());

    // Deleting the link removes the link, not its target.
    assert_eq!(status(alice.delete(&format!("{files}/sec"))).await, 204);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "host secret");
    app.stop().await;
}

#[actix_rt::test]
async fn another_users_session_answers_404_on_every_file_route() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    assert_eq!(
        put(&alice, &id, "mine.txt", b"alice's".to_vec())
            .await
            .status(),
        201
    );
    let bob = app.login("bob").await;
    let files = format!("/api/sessions/{id}/files");
    assert_eq!(bob.get(&files).send().await.unwrap().status(), 404);
    assert_eq!(status(bob.get(&format!("{files}/mine.txt"))).await, 404);
    assert_eq!(
        status(bob.put(&format!("{files}/mine.txt")).body("bob's")).await,
        404
    );
    assert_eq!(status(bob.delete(&format!("{files}/mine.txt"))).await, 404);
    assert_eq!(
        multipart(&bob, &id, None, &[("x.txt", b"bob".to_vec())])
            .await
            .status(),
        404
    );
    assert_eq!(
        status(bob.get(&format!("/api/sessions/{id}/audit"))).await,
        404
    );
    assert_eq!(
        get(&alice, &id, "mine.txt").await.text().await.unwrap(),
        "alice's"
    );
    // Without a login at all: 401.
    let anon = app
        .http()
        .get(format!("{}{files}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status(), 401);
    app.stop().await;
}

#[actix_rt::test]
async fn an_uploaded_csv_is_analysed_by_the_agent_and_its_output_downloaded() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    alice.set_mode(&id, "never").await;
    let mut ws = alice.connect(Some(&id)).await;
    let csv = "region,sales\nnorth,10\nsouth,32\n";
    assert_eq!(
        multipart(&alice, &id, None, &[("data.csv", csv.as_bytes().to_vec())])
            .await
            .status(),
        201
    );
    // The upload is announced to every tab at once.
    let announced = ws.until("files_changed").await;
    assert_eq!(announced["paths"], json!(["data.csv"]));
    assert_eq!(announced["uploaded"], true);

    let code = "import csv\nrows = list(csv.DictReader(open('/workspace/data.csv')))\ntotal = sum(int(r['sales']) for r in rows)\nopen('/workspace/out.txt', 'w').write(f'total={total}\\n')\nprint(total)";
    llm.push(Reply::tool("python", json!({"code": code})));
    llm.push(Reply::text("The total is 42; see out.txt."));
    ws.say("add up the sales").await;
    let events = ws.turn().await;
    let changed = of_type(&events, "files_changed");
    assert_eq!(changed.len(), 1, "{events:#?}");
    assert_eq!(changed[0]["paths"], json!(["out.txt"]));
    let call_id = of_type(&events, "tool_call")[0]["call_id"]
        .as_str()
        .unwrap()
        .to_string();
    let stdout: String = events
        .iter()
        .filter(|e| e["type"] == "exec_output" && e["call_id"] == call_id.as_str())
        .filter_map(|e| e["data"].as_str())
        .collect();
    assert_eq!(stdout, "42\n");
    // The model was told about the upload with the message.
    let first = llm.chat_requests()[0].body["messages"].to_string();
    assert!(
        first.contains("[The person uploaded: /workspace/data.csv]"),
        "{first}"
    );
    // Download what the agent wrote.
    let resp = get(&alice, &id, "out.txt").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "total=42\n");
    // The upload and the change replay in history.
    let again = alice.connect(Some(&id)).await;
    let replayed = of_type(&again.history_events(), "files_changed").len();
    assert_eq!(replayed, 2);
    // The audit trail lists the call.
    let audit: Vec<Value> = alice
        .get(&format!("/api/sessions/{id}/audit"))
        .json_body()
        .await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["exit_code"], 0);
    assert_eq!(audit[0]["decision"], "approved");
    assert_eq!(audit[0]["decided_by"], "policy");
    app.stop().await;
}

/// Each file error reaches the wire with its own code and status, not a
/// generic `bad_request`.
#[actix_rt::test]
async fn file_errors_reach_the_wire_with_their_own_codes() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    assert_eq!(
        put(&alice, &id, "dir/inner.txt", b"x".to_vec())
            .await
            .status(),
        201
    );
    let root = app.data_dir.join("workspaces").join(&id);
    std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();

    let files = format!("/api/sessions/{id}/files");
    let cases: [(reqwest::Response, u16, &str); 5] = [
        (get(&alice, &id, "link").await, 400, "symlink_refused"),
        (get(&alice, &id, "missing.txt").await, 404, "not_found"),
        (get(&alice, &id, "dir").await, 409, "is_a_directory"),
        (
            put(&alice, &id, "dir/inner.txt/deeper", b"x".to_vec()).await,
            409,
            "not_a_directory",
        ),
        (
            alice.delete(&format!("{files}/dir")).send().await.unwrap(),
            409,
            "directory_not_empty",
        ),
    ];
    for (resp, want_status, want_code) in cases {
        assert_eq!(resp.status().as_u16(), want_status, "{want_code}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], want_code, "{body}");
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    app.stop().await;
}
