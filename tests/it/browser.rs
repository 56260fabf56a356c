//! The page in a real headless Chromium, driven over WebDriver
//! (chromium-driver from Debian, installed by `make test-deps`): log in,
//! chat, see the streamed reply rendered; upload a file and see it listed.

use std::time::Duration;

use serde_json::{json, Value};

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;
use crate::webdriver::Browser;
use ironclaw::config::ProviderKind;

#[actix_rt::test]
async fn a_person_logs_in_chats_and_sees_the_streamed_reply_rendered_safely() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Ollama, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;

    // A wrong password shows an error and stays on the login page.
    browser.goto(&format!("{}/", app.base)).await;
    browser.type_into("#login-username", "alice").await;
    browser.type_into("#login-password", "nope").await;
    browser.click("#login-submit").await;
    browser.wait_until("document.querySelector('#login-error') && document.querySelector('#login-error').innerText.length > 0").await;

    browser.login(&app.base, "alice").await;
    llm.push(
        Reply::text("Here is **bold** text and `code`.\n\n```python\nprint('hi')\n```\n\n<img src=x onerror=\"document.title='pwned'\"><script>document.title='pwned'</script>")
            .event_delay_ms(5),
    );
    browser
        .type_into("#composer", "Hello from the browser")
        .await;
    browser.click("#send").await;
    browser.wait_until("document.querySelector('.msg-user') && document.querySelector('.msg-user').innerText.includes('Hello from the browser')").await;
    browser
        .wait_until("document.querySelector('.msg-assistant[data-done=\"true\"]')")
        .await;
    let rendered = browser
        .script("const m = document.querySelector('.msg-assistant[data-done=\"true\"]'); return {strong: m.querySelectorAll('strong').length, pre: m.querySelectorAll('pre').length, img: m.querySelectorAll('img[src=x], [onerror]').length, script: m.querySelectorAll('script').length, text: m.innerText, title: document.title};")
        .await;
    assert_eq!(rendered["strong"], 1, "{rendered}");
    assert!(rendered["pre"].as_u64().unwrap() >= 1, "{rendered}");
    assert_eq!(
        rendered["img"], 0,
        "model output must not create elements: {rendered}"
    );
    assert_eq!(rendered["script"], 0, "{rendered}");
    assert!(
        rendered["text"].as_str().unwrap().contains("<img src=x"),
        "shown as text: {rendered}"
    );
    assert_ne!(rendered["title"], "pwned");
    browser.screenshot("chat").await;

    // The conversation is still there after a reload.
    browser.script("location.reload(); return 1;").await;
    browser.wait_until("document.querySelector('.msg-assistant[data-done=\"true\"]') && document.querySelector('.msg-assistant strong')").await;
    app.stop().await;
}

#[actix_rt::test]
async fn a_person_uploads_a_file_and_approves_a_risky_command_in_the_page() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;

    // Upload through the page's file input; the file panel lists it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report data.csv");
    std::fs::write(&file, "a,b\n1,2\n").unwrap();
    let input = browser.wait_for("#file-input").await;
    browser
        .cmd(
            reqwest::Method::POST,
            &format!("/element/{input}/value"),
            Some(json!({"text": file.display().to_string()})),
        )
        .await;
    browser
        .wait_until("document.querySelector('.file-row[data-path=\"report data.csv\"]')")
        .await;

    // A risky command waits for approval; the card shows the reasons.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "rm -f 'report data.csv'"}),
    ));
    llm.push(Reply::text("Removed it."));
    browser.send("remove the report").await;
    browser.wait_for("[data-action=\"approve\"]").await;
    let card = browser
        .script("return [...document.querySelectorAll('.tool-card, .approval')].map(e => e.innerText).join(' | ');")
        .await;
    let card = card.as_str().unwrap();
    assert!(card.contains("rm -f") && card.contains("Approve"), "{card}");
    browser.screenshot("approval").await;
    browser.click("[data-action=\"approve\"]").await;
    browser
        .wait_until("document.querySelector('.approval.resolved[data-decision=\"approved\"]')")
        .await;
    browser
        .wait_until(
            "document.querySelector('.tool-card[data-done=\"true\"][data-exit-code=\"0\"]')",
        )
        .await;
    // files_changed refreshes the panel: the file is gone.
    browser
        .wait_until("!document.querySelector('.file-row[data-path=\"report data.csv\"]')")
        .await;
    browser.wait_reply("Removed it.").await;
    browser.screenshot("after-approval").await;
    app.stop().await;
}

#[actix_rt::test]
async fn sign_in_never_leaves_the_origin_whatever_next_says() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    for next in [
        "/%09/example.com/",
        "/%0a/example.com/",
        "/%0d/example.com/",
        "//example.com/",
        "https://example.com/",
    ] {
        browser
            .goto(&format!("{}/login?next={next}", app.base))
            .await;
        browser.type_into("#login-username", "alice").await;
        browser.type_into("#login-password", PASSWORD).await;
        browser.click("#login-submit").await;
        browser.wait_for("#composer").await;
        let at = browser
            .script("return location.origin + location.pathname;")
            .await;
        assert_eq!(
            at.as_str(),
            Some(format!("{}/", app.base).as_str()),
            "next={next}"
        );
        // Sign out for the next round.
        browser
            .script("return fetch('/api/logout', {method: 'POST', credentials: 'same-origin'}).then(() => true);")
            .await;
    }
    app.stop().await;
}

#[actix_rt::test]
async fn a_workspace_script_loaded_into_the_page_does_not_run() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ironclaw::config::ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    let resp = alice
        .put(&format!("/api/sessions/{id}/files/evil.js"))
        .body("window.pwned = 1;")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    // Both loads go through the same injection; the page's own script
    // loads (so the check can tell), the workspace one must not run.
    browser
        .script(&format!(
            "for (const [src, flag] of [['/static/theme.js', 'own'], ['/api/sessions/{id}/files/evil.js', 'evil']]) {{
               const s = document.createElement('script');
               s.src = src;
               s.onload = () => {{ window[flag + 'Loaded'] = true; }};
               s.onerror = () => {{ window[flag + 'Blocked'] = true; }};
               document.head.appendChild(s);
             }}
             return true;"
        ))
        .await;
    browser
        .wait_until("window.ownLoaded === true && (window.evilBlocked === true || window.evilLoaded === true)")
        .await;
    let outcome = browser
        .script("return [window.pwned === undefined, window.evilBlocked === true];")
        .await;
    assert_eq!(outcome, serde_json::json!([true, true]));
    app.stop().await;
}

/// Serve `html` to every request on a fresh loopback port, from a thread;
/// answers the page's URL.
fn serve_page(html: String) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                html.len()
            );
        }
    });
    url
}

#[actix_rt::test]
async fn a_page_on_another_port_gets_nothing_from_the_socket() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    // Logged in: the browser holds the Strict cookie, which a page on
    // another port of the same host (same site) would send along.
    browser.login(&app.base, "alice").await;
    let page = serve_page(format!(
        r#"<!doctype html><title>other</title><script>
window.got = []; window.ended = false;
var ws = new WebSocket("{}/ws");
ws.onmessage = function (e) {{ try {{ window.got.push(JSON.parse(e.data).type); }} catch (x) {{}} }};
ws.onclose = function () {{ window.ended = true; }};
ws.onerror = function () {{ window.ended = true; }};
</script>"#,
        app.ws_base
    ));
    browser.goto(&page).await;
    browser
        .wait_until("window.ended || (window.got && window.got.length > 0)")
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = browser.script("return window.got;").await;
    assert!(
        !got.as_array().unwrap().iter().any(|t| t == "session"),
        "the foreign page received: {got}"
    );
    // The page's own origin still connects.
    browser.goto(&format!("{}/", app.base)).await;
    browser.wait_for("#composer").await;
    app.stop().await;
}

#[actix_rt::test]
async fn a_person_sees_what_a_command_changed_and_undoes_it_in_the_page() {
    let llm = FakeLlm::start().await;
    // Two checkpoints kept: the third one drops the oldest, which the
    // page must then show as no longer undoable.
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .settings(|s| s.undo.keep = 2)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    let report = "region,sales\nnorth,10\n";
    for (path, body) in [
        ("notes.txt", "first line\nsecond line\n"),
        ("report.csv", report),
    ] {
        let resp = alice
            .put(&format!("/api/sessions/{id}/files/{path}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "upload {path}");
    }
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    browser.goto(&format!("{}/?session={id}", app.base)).await;
    browser
        .wait_for(".file-row[data-path=\"report.csv\"]")
        .await;

    // A command that edits a text file: its card says so, and the diff
    // shows the removed and the added line.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "printf 'first line\\nchanged line\\n' > /workspace/notes.txt"}),
    ));
    llm.push(Reply::text("Edited."));
    browser.send("edit the notes").await;
    browser.wait_reply("Edited.").await;
    let edit = browser
        .wait_until("document.querySelector('.tool-card .changes-toggle') && document.querySelector('.tool-card').dataset.callId")
        .await;
    let edit = edit.as_str().unwrap().to_string();
    let label = browser
        .script("return document.querySelector('.tool-card .changes-toggle').innerText;")
        .await;
    assert_eq!(label.as_str().unwrap().trim(), "1 file changed");
    browser.click(".tool-card .changes-toggle").await;
    browser
        .wait_for(".change-row[data-path=\"notes.txt\"][data-change=\"modified\"] .diff-add")
        .await;
    let diff = browser
        .script("const r = document.querySelector('.change-row[data-path=\"notes.txt\"]'); return {del: [...r.querySelectorAll('.diff-del')].map(e => e.textContent).join(''), add: [...r.querySelectorAll('.diff-add')].map(e => e.textContent).join('')};")
        .await;
    assert_eq!(diff["del"], "-second line\n", "{diff}");
    assert_eq!(diff["add"], "+changed line\n", "{diff}");

    // A command that deletes a file; Undo, confirmed, brings it back.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "rm -f /workspace/report.csv"}),
    ));
    llm.push(Reply::text("Removed it."));
    browser.send("remove the report").await;
    browser.wait_reply("Removed it.").await;
    browser
        .wait_until("!document.querySelector('.file-row[data-path=\"report.csv\"]')")
        .await;
    let rm = browser
        .wait_until("document.querySelectorAll('.tool-card .changes-toggle').length === 2 && document.querySelectorAll('.tool-card')[1].dataset.callId")
        .await;
    let rm = rm.as_str().unwrap().to_string();
    let card = format!(".tool-card[data-call-id=\"{rm}\"]");
    let label = browser
        .script(&format!(
            "return document.querySelector('{card} .changes-toggle').innerText;"
        ))
        .await;
    assert_eq!(label.as_str().unwrap().trim(), "1 file changed");
    browser.click(&format!("{card} .changes-toggle")).await;
    browser
        .wait_for(&format!(
            "{card} .change-row[data-path=\"report.csv\"][data-change=\"deleted\"]"
        ))
        .await;
    let undo = format!("{card} [data-action=\"undo\"]:not([disabled])");
    browser.wait_for(&undo).await;
    browser.click(&undo).await;
    browser.wait_for("#confirm-dialog[open]").await;
    let body = browser
        .script("return document.querySelector('#confirm-body').innerText;")
        .await;
    let body = body.as_str().unwrap();
    assert!(
        body.contains("report.csv") && body.contains("rm -f") && body.contains("later"),
        "{body}"
    );
    browser.screenshot("undo-confirm").await;
    browser.click("#confirm-ok").await;
    browser
        .wait_for(".file-row[data-path=\"report.csv\"]")
        .await;
    browser
        .wait_until("document.querySelector('.restore-notice') && document.querySelector('.restore-notice').innerText.includes('rm -f') && document.querySelector('.restore-notice').innerText.includes('1 path')")
        .await;
    browser.wait_for(&format!("{card} .undone-tag")).await;
    let back = alice
        .get(&format!("/api/sessions/{id}/files/report.csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 200);
    assert_eq!(back.text().await.unwrap(), report);
    // The restore was the third checkpoint: the edit's was dropped.
    let edit_card = format!(".tool-card[data-call-id=\"{edit}\"]");
    browser
        .wait_for(&format!("{edit_card} .checkpoint-gone"))
        .await;
    assert!(browser
        .find(&format!("{edit_card} [data-action=\"undo\"]"))
        .await
        .is_none());
    browser.screenshot("undo-done").await;
    browser
        .script("document.documentElement.setAttribute('data-theme', 'dark'); return 1;")
        .await;
    browser.screenshot("undo-done-dark").await;
    browser
        .script("document.documentElement.setAttribute('data-theme', 'light'); return 1;")
        .await;

    // After a reload the history shows the same, and the restore itself
    // can be undone from its notice.
    browser.script("location.reload(); return 1;").await;
    browser
        .wait_for(&format!("{edit_card} .checkpoint-gone"))
        .await;
    browser.wait_for(&format!("{card} .undone-tag")).await;
    browser
        .wait_for(&format!("{edit_card} .changes-toggle"))
        .await;
    let redo = ".restore-notice [data-action=\"undo\"]:not([disabled])";
    browser.wait_for(redo).await;
    browser.click(redo).await;
    browser.wait_for("#confirm-dialog[open]").await;
    browser.click("#confirm-ok").await;
    browser
        .wait_until("!document.querySelector('.file-row[data-path=\"report.csv\"]')")
        .await;
    browser
        .wait_until("document.querySelectorAll('.restore-notice').length === 2 && document.querySelector('.restore-notice .undone-tag')")
        .await;
    // The rm is back in effect, but its checkpoint has now been dropped.
    browser.wait_for(&format!("{card} .checkpoint-gone")).await;
    browser.screenshot("undo-undone").await;
    app.stop().await;
}

#[actix_rt::test]
async fn command_output_shows_colours_and_progress_like_a_terminal_and_code_is_highlighted() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    browser.goto(&format!("{}/?session={id}", app.base)).await;
    browser.wait_for("#composer").await;

    // Red text, then a progress counter rewritten with \r; the sleeps put
    // the updates in separate output chunks.
    llm.push(Reply::tool(
        "shell",
        json!({"command": "printf '\\033[31mred\\033[0m plain\\n'; for i in 1 2 3; do printf '\\rprogress %d' $i; sleep 0.3; done; echo"}),
    ));
    llm.push(Reply::text(
        "Done. In Python:\n\n```python\ndef greet(name):\n    return f\"hi {name}\"  # <b>not bold</b>\n```\n",
    ));
    browser.send("show me colours").await;
    browser.wait_reply("In Python").await;
    browser.wait_for(".tool-card[data-done=\"true\"]").await;

    let red = browser
        .script("const s = [...document.querySelectorAll('.tool-output span')].find(e => e.textContent === 'red'); return s && {cls: s.className, color: getComputedStyle(s).color, plain: getComputedStyle(s.nextSibling || s.parentNode).color};")
        .await;
    assert!(
        red["cls"].as_str().unwrap_or("").contains("ansi-fg-1"),
        "{red}"
    );
    assert_eq!(red["color"], "rgb(255, 107, 107)", "{red}");
    assert_ne!(red["color"], red["plain"], "{red}");
    let output = browser
        .script("return document.querySelector('.tool-output').textContent;")
        .await;
    assert_eq!(output, "red plain\nprogress 3\n");

    // The tool card's command and the reply's Python block are highlighted;
    // the HTML in the Python comment stays text.
    browser
        .wait_until("[...document.querySelectorAll('.tool-card .code-block code .token.keyword')].some(e => e.textContent === 'for')")
        .await;
    let py = browser
        .script("const c = document.querySelector('.msg-assistant .code-block code.language-python'); return {kw: [...c.querySelectorAll('.token.keyword')].map(e => e.textContent), comment: (c.querySelector('.token.comment') || {}).textContent, tags: c.querySelectorAll('b').length, text: c.textContent, kwColor: getComputedStyle(c.querySelector('.token.keyword')).color, plainColor: getComputedStyle(c).color};")
        .await;
    assert!(py["kw"].as_array().unwrap().contains(&json!("def")), "{py}");
    assert!(
        py["kw"].as_array().unwrap().contains(&json!("return")),
        "{py}"
    );
    assert_eq!(py["comment"], "# <b>not bold</b>", "{py}");
    assert_eq!(py["tags"], 0, "{py}");
    assert_eq!(
        py["text"],
        "def greet(name):\n    return f\"hi {name}\"  # <b>not bold</b>"
    );
    assert_ne!(py["kwColor"], py["plainColor"], "{py}");
    browser.screenshot("terminal-light").await;

    // Dark theme: the keyword colour follows the theme, the output's red stays.
    browser
        .script("document.documentElement.setAttribute('data-theme', 'dark'); return 1;")
        .await;
    let dark = browser
        .script("const k = document.querySelector('.msg-assistant .code-block .token.keyword'); const s = [...document.querySelectorAll('.tool-output span')].find(e => e.textContent === 'red'); return {kw: getComputedStyle(k).color, red: getComputedStyle(s).color};")
        .await;
    assert_ne!(dark["kw"], py["kwColor"], "{dark}");
    assert_eq!(dark["red"], "rgb(255, 107, 107)", "{dark}");
    browser.screenshot("terminal-dark").await;
    browser
        .script("document.documentElement.setAttribute('data-theme', 'light'); return 1;")
        .await;

    // A reload replays the same output from history.
    browser
        .script("window.beforeReload = true; location.reload(); return 1;")
        .await;
    browser
        .wait_until("!window.beforeReload && document.querySelector('.tool-card[data-done=\"true\"] .tool-output .ansi-fg-1')")
        .await;
    let output = browser
        .script("return document.querySelector('.tool-output').textContent;")
        .await;
    assert_eq!(output, "red plain\nprogress 3\n");
    app.stop().await;
}

impl Browser {
    /// Resize the browser window (the page's viewport follows).
    async fn resize(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    /// Upload `file` through the page's file input.
    async fn upload(&self, file: &std::path::Path) {
        let input = self.wait_for("#file-input").await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{input}/value"),
            Some(json!({"text": file.display().to_string()})),
        )
        .await;
    }

    /// The `id` of the focused element.
    async fn focused(&self) -> Value {
        self.script("return document.activeElement && document.activeElement.id;")
            .await
    }

    /// Press `key` where the focus is (a synthetic keydown, as the page's
    /// handlers see it).
    async fn press(&self, key: &str) {
        self.script(&format!(
            "(document.activeElement || document.body).dispatchEvent(new KeyboardEvent('keydown', {{key: '{key}', bubbles: true, cancelable: true}})); return 1;"
        ))
        .await;
    }
}

#[actix_rt::test]
async fn focus_goes_to_the_message_box_after_sign_in_approve_and_keys_move_in_the_chat_list() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;
    for _ in 0..3 {
        alice.new_session().await;
    }
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    browser
        .wait_until("document.activeElement && document.activeElement.id === 'composer'")
        .await;

    // A low-risk command runs without asking, and its card says so.
    llm.push(Reply::tool("shell", json!({"command": "ls -la"})));
    llm.push(Reply::text("Listed."));
    browser.send("list the files").await;
    browser
        .wait_until("document.querySelector('.tool-card[data-done=\"true\"]')")
        .await;
    let note = browser
        .wait_until("document.querySelector('.tool-card .ap-outcome.unasked') && document.querySelector('.tool-card .ap-outcome.unasked').innerText")
        .await;
    assert_eq!(
        note.as_str().unwrap().trim(),
        "Ran without asking: low risk"
    );

    // A risky command asks; after Approve the keyboard is back in the
    // message box.
    llm.push(Reply::tool("shell", json!({"command": "rm -f x"})));
    llm.push(Reply::text("Removed."));
    browser.send("remove x").await;
    browser.click("[data-action=\"approve\"]").await;
    browser
        .wait_until("document.querySelector('.approval.resolved[data-decision=\"approved\"]')")
        .await;
    assert_eq!(browser.focused().await, json!("composer"));
    browser.wait_reply("Removed.").await;
    assert_eq!(browser.focused().await, json!("composer"));
    let asked = browser
        .script("return document.querySelectorAll('.tool-card .ap-outcome.unasked').length;")
        .await;
    assert_eq!(
        asked,
        json!(1),
        "the approved card does not say it ran unasked"
    );

    // Escape closes the log panel.
    browser.click("#log-toggle").await;
    browser
        .wait_until("!document.querySelector('#log-panel').hidden")
        .await;
    browser.press("Escape").await;
    browser
        .wait_until("document.querySelector('#log-panel').hidden && document.activeElement.id === 'log-toggle'")
        .await;

    // The chat list is one Tab stop; arrow keys move inside it.
    browser
        .wait_until("document.querySelectorAll('.session-item').length === 3")
        .await;
    let stops = browser
        .script("return [...document.querySelectorAll('#sidebar a[href], #sidebar button')].filter(e => e.tabIndex >= 0 && e.closest('#session-list')).length;")
        .await;
    assert_eq!(stops, json!(1), "one Tab stop in the chat list");
    browser
        .script("document.querySelector('.session-item[tabindex=\"0\"]').focus(); return 1;")
        .await;
    let first = browser
        .script("return document.activeElement.dataset.sessionId;")
        .await;
    browser.press("ArrowDown").await;
    let moved = browser
        .script("const items = [...document.querySelectorAll('.session-item')]; return [items.indexOf(document.activeElement), document.activeElement.tabIndex, items.filter(a => a.tabIndex === 0).length];")
        .await;
    assert_eq!(moved, json!([1, 0, 1]));
    browser.press("ArrowUp").await;
    assert_eq!(
        browser
            .script("return document.activeElement.dataset.sessionId;")
            .await,
        first
    );
    app.stop().await;
}

#[actix_rt::test]
async fn uploading_a_name_that_exists_asks_replace_keep_both_or_cancel() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("report.csv");
    std::fs::write(&file, "a,b\n1,2\n").unwrap();
    browser.upload(&file).await;
    browser
        .wait_for(".file-row[data-path=\"report.csv\"]")
        .await;
    let rows = "document.querySelectorAll('.file-row').length";

    // Keep both: the upload gets a free name.
    std::fs::write(&file, "a,b\n3,4\n").unwrap();
    browser.upload(&file).await;
    browser.wait_for("#choice-dialog[open]").await;
    let prompt = browser
        .script("return [document.querySelector('#choice-title').innerText, [...document.querySelectorAll('#choice-actions button')].map(b => b.innerText)];")
        .await;
    assert!(
        prompt[0].as_str().unwrap().contains("report.csv"),
        "{prompt}"
    );
    assert_eq!(prompt[1], json!(["Cancel", "Keep both", "Replace"]));
    browser.screenshot("upload-replace-prompt").await;
    browser.click("[data-choice=\"keep\"]").await;
    browser
        .wait_for(".file-row[data-path=\"report (1).csv\"]")
        .await;

    // Cancel: nothing is uploaded.
    browser.upload(&file).await;
    browser.wait_for("#choice-dialog[open]").await;
    browser.click("[data-choice=\"cancel\"]").await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(browser.script(&format!("return {rows};")).await, json!(2));

    // Replace: the same name, the new content.
    std::fs::write(&file, "a,b\n5,6\n").unwrap();
    // Earlier uploads may still be listed as done (for a few seconds):
    // mark them, and wait for a new one.
    browser
        .script("document.querySelectorAll('.upload-item').forEach(n => n.dataset.earlier = '1'); return true;")
        .await;
    browser.upload(&file).await;
    browser.wait_for("#choice-dialog[open]").await;
    browser.click("[data-choice=\"replace\"]").await;
    browser
        .wait_until("document.querySelector('.upload-item.done:not([data-earlier])')")
        .await;
    let id = browser
        .script("return window.IronClaw.state.sessionId;")
        .await;
    let alice = app.login("alice").await;
    let body = alice
        .get(&format!(
            "/api/sessions/{}/files/report.csv",
            id.as_str().unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "a,b\n5,6\n");
    assert_eq!(browser.script(&format!("return {rows};")).await, json!(2));
    app.stop().await;
}

/// Bounding boxes in the chat header that overlap the title, or that stick
/// out of the window, and the header's shape.
const HEADER_CHECK: &str = r#"
const box = (e) => e.getBoundingClientRect();
const shown = (e) => { const r = box(e); return r.width > 0 && r.height > 0; };
const header = box(document.querySelector('.chat-header'));
const title = box(document.querySelector('#session-title'));
const controls = [document.querySelector('#sidebar-open'),
  ...document.querySelectorAll('.header-controls > *, .chat-settings > *')]
  .filter((e) => e && shown(e) && !e.classList.contains('chat-settings'));
const problems = [];
for (const c of controls) {
  const r = box(c);
  const name = c.id || c.className;
  if (r.left < title.right && title.left < r.right && r.top < title.bottom && title.top < r.bottom) problems.push('title under ' + name);
  if (r.right > window.innerWidth + 0.5 || r.left < -0.5) problems.push(name + ' outside the window');
  if (r.top < header.top - 0.5 || r.bottom > header.bottom + 0.5) problems.push(name + ' outside the header row');
}
return {problems, width: window.innerWidth, headerHeight: header.height, titleWidth: title.width,
        controls: controls.length, title: document.querySelector('#session-title-text').innerText};
"#;

#[actix_rt::test]
async fn the_header_never_paints_the_title_under_its_controls() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    let resp = alice
        .patch(&format!("/api/sessions/{id}"))
        .json(&json!({"title": "**Quarterly sales report** with `regional` breakdowns and a very long tail of words"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    browser.goto(&format!("{}/?session={id}", app.base)).await;
    browser
        .wait_until("document.querySelector('#session-title-text').innerText.includes('Quarterly')")
        .await;
    let shown = browser
        .script("return [document.querySelector('#session-title-text').innerText, document.querySelector('.session-item[aria-current] .s-title').innerText, document.title];")
        .await;
    for t in shown.as_array().unwrap() {
        let t = t.as_str().unwrap();
        assert!(
            t.starts_with("Quarterly sales report with regional")
                && !t.contains('*')
                && !t.contains('`'),
            "{shown}"
        );
    }
    // The approval switch says what it is.
    let mode = browser
        .script("return document.querySelector('#approval-mode').innerText.replace(/\\s+/g, ' ');")
        .await;
    assert!(mode.as_str().unwrap().starts_with("Approval:"), "{mode}");

    for (width, height) in [(1400, 900), (1000, 800), (700, 800), (390, 844)] {
        browser.resize(width, height).await;
        for theme in ["light", "dark"] {
            browser
                .script(&format!(
                    "document.documentElement.setAttribute('data-theme', '{theme}'); return 1;"
                ))
                .await;
            let check = browser
                .wait_until(&format!(
                    "window.innerWidth <= {width} && (() => {{ {HEADER_CHECK} }})()"
                ))
                .await;
            assert_eq!(check["problems"], json!([]), "{width} {theme}: {check}");
            assert!(
                check["titleWidth"].as_f64().unwrap() >= 60.0,
                "{width} {theme}: {check}"
            );
            assert!(
                check["headerHeight"].as_f64().unwrap() <= 64.0,
                "one row at {width}: {check}"
            );
            if width == 1400 || width == 390 {
                browser.screenshot(&format!("header-{width}-{theme}")).await;
            }
        }
    }

    // On the phone, the model and the mode are in a menu; Escape closes it.
    browser
        .script("document.documentElement.setAttribute('data-theme', 'light'); return 1;")
        .await;
    let hidden = browser
        .script("return [document.querySelector('#model-picker').getBoundingClientRect().width, document.querySelector('#approval-mode').getBoundingClientRect().width];")
        .await;
    assert_eq!(hidden, json!([0, 0]), "in the menu while it is closed");
    browser.click("#settings-toggle").await;
    browser
        .wait_until("document.querySelector('#model-picker').getBoundingClientRect().width > 0 && document.querySelector('#approval-mode').getBoundingClientRect().width > 0")
        .await;
    browser.screenshot("header-390-menu-light").await;
    browser.press("Escape").await;
    browser
        .wait_until("document.querySelector('#approval-mode').getBoundingClientRect().width === 0 && document.activeElement.id === 'settings-toggle'")
        .await;

    // Switching to Never asks first; cancelling keeps Risky.
    browser.resize(1400, 900).await;
    let never = "document.querySelector('input[name=\"approval_mode\"][value=\"never\"]')";
    browser.script(&format!("{never}.click(); return 1;")).await;
    browser.wait_for("#confirm-dialog[open]").await;
    let body = browser
        .script("return document.querySelector('#confirm-title').innerText + ' ' + document.querySelector('#confirm-ok').innerText;")
        .await;
    assert!(body.as_str().unwrap().contains("Never ask"), "{body}");
    browser.click("#confirm-cancel").await;
    browser
        .wait_until(
            "document.querySelector('input[name=\"approval_mode\"]:checked').value === 'risky'",
        )
        .await;
    let stored: Value = alice
        .get(&format!("/api/sessions/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stored["approval_mode"], "risky");
    browser.script(&format!("{never}.click(); return 1;")).await;
    browser.wait_for("#confirm-dialog[open]").await;
    browser.click("#confirm-ok").await;
    browser
        .wait_until(
            "document.querySelector('input[name=\"approval_mode\"]:checked').value === 'never'",
        )
        .await;
    app.stop().await;
}
