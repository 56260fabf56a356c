//! The page's own defences (issue 16): scripts only from the page's static
//! folder, workspace files that can never run as a page or a script, forms
//! and referrers kept home, and `HEAD` answered like `GET`.

use serde_json::Value;

use crate::fake_llm::FakeLlm;
use crate::support::*;

#[actix_rt::test]
async fn pages_allow_scripts_from_their_static_folder_only_and_keep_forms_and_referrers_home() {
    let llm = FakeLlm::start().await;
    let (app, alice, _) = alice_with_session(&llm.base_url, |_| {}).await;
    for path in ["/", "/login"] {
        let resp = if path == "/" {
            alice.get(path).send().await.unwrap()
        } else {
            app.http()
                .get(format!("{}{path}", app.base))
                .send()
                .await
                .unwrap()
        };
        assert_eq!(resp.status(), 200, "{path}");
        let csp = resp.headers()["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains(&format!("script-src {}/static/;", app.base)),
            "{path}: {csp}"
        );
        assert!(!csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("form-action 'self'"), "{path}: {csp}");
        assert_eq!(resp.headers()["referrer-policy"], "no-referrer", "{path}");
    }
    app.stop().await;
}

#[actix_rt::test]
async fn workspace_files_are_served_as_inert_bytes_or_text() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    for (name, body, served) in [
        ("evil.js", "window.pwned = 1;", "text/plain; charset=utf-8"),
        (
            "page.html",
            "<script>alert(1)</script>",
            "text/plain; charset=utf-8",
        ),
        (
            "pic.svg",
            "<svg onload=alert(1)/>",
            "text/plain; charset=utf-8",
        ),
        ("tool.wasm", "\0asm", "application/octet-stream"),
        ("chart.png", "\u{89}PNG", "image/png"),
    ] {
        let resp = alice
            .put(&format!("/api/sessions/{id}/files/{name}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
        let resp = alice
            .get(&format!("/api/sessions/{id}/files/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let headers = resp.headers();
        assert_eq!(headers["content-type"], served, "{name}");
        assert_eq!(headers["content-security-policy"], "sandbox", "{name}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{name}");
        assert!(headers["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment"));
    }
    app.stop().await;
}

#[actix_rt::test]
async fn head_answers_like_get_without_a_body() {
    let llm = FakeLlm::start().await;
    let (app, alice, id) = alice_with_session(&llm.base_url, |_| {}).await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/report.csv"))
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    for path in [
        "/".to_string(),
        "/static/app.js".to_string(),
        "/api/health".to_string(),
        "/api/me".to_string(),
        format!("/api/sessions/{id}/files/report.csv"),
    ] {
        let get = alice.get(&path).send().await.unwrap();
        let (get_status, get_type) = (get.status(), get.headers().get("content-type").cloned());
        let get_len = get.bytes().await.unwrap().len();
        let head = alice
            .get(&path)
            .build()
            .map(|mut r| {
                *r.method_mut() = reqwest::Method::HEAD;
                r
            })
            .unwrap();
        let head = alice.http.execute(head).await.unwrap();
        assert_eq!(head.status(), get_status, "{path}");
        assert_eq!(
            head.headers().get("content-type").cloned(),
            get_type,
            "{path}"
        );
        if let Some(len) = head.headers().get("content-length") {
            assert_eq!(len.to_str().unwrap(), get_len.to_string(), "{path}");
        }
        assert!(head.bytes().await.unwrap().is_empty(), "{path}");
    }
    // A HEAD is a read: it changes nothing and needs no origin check.
    let me: Value = alice.get("/api/me").json_body().await;
    assert_eq!(me["username"], "alice");
    app.stop().await;
}
