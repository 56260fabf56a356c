//! The page with long content, in a real headless Chromium (issue 16):
//! typing stays quick next to a 20 000-line output, long output and long
//! messages are collapsed with a way to see all of it, a long reply streams
//! without freezing the page, and a message's own echo replaces its
//! optimistic copy whatever the server did to its text. Figures are
//! printed, never asserted (machines are shared and noisy).

use serde_json::json;

use crate::fake_llm::{FakeLlm, Reply};
use crate::support::*;
use crate::webdriver::Browser;
use ironclaw::config::ProviderKind;

/// Lines of output a card shows before "Show all" (the page's
/// `OUTPUT_TAIL_LINES`).
const TAIL_LINES: usize = 200;

/// A chat whose one command printed `seq 1 20000`, open in the browser
/// (approval mode `never`, so it runs at once). Answers the session id.
async fn chat_with_a_long_output(app: &TestApp, llm: &FakeLlm, browser: &Browser) -> String {
    let alice = app.login("alice").await;
    let id = alice.new_session().await;
    alice.set_mode(&id, "never").await;
    browser.login(&app.base, "alice").await;
    browser.goto(&format!("{}/?session={id}", app.base)).await;
    browser.wait_for("#composer").await;
    llm.push(Reply::tool("shell", json!({"command": "seq 1 20000"})));
    llm.push(Reply::text("Counted."));
    browser.send("count to 20000").await;
    browser
        .wait_until(
            "document.querySelector('.tool-card[data-done=\"true\"][data-exit-code=\"0\"]')",
        )
        .await;
    browser.wait_reply("Counted.").await;
    id
}

/// The message box's height once the page has drawn a frame.
const HEIGHT_NEXT_FRAME: &str = "requestAnimationFrame(() => requestAnimationFrame(() => done(document.querySelector('#composer').offsetHeight)));";

#[actix_rt::test]
async fn typing_in_a_chat_holding_a_long_output_shows_every_key() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    chat_with_a_long_output(&app, &llm, &browser).await;
    let text = "the quick brown fox jumps over";
    assert_eq!(text.len(), 30);
    // Only the output's tail is in the page to be laid out.
    let in_page = browser
        .script("return document.querySelector('.tool-card .tool-output').textContent.split('\\n').filter(Boolean).length;")
        .await;
    assert_eq!(in_page, TAIL_LINES);
    let per_char = browser.time_typing("#composer", text).await;
    println!("typing 30 characters next to a 20 000-line output: {per_char:.1} ms per character");
    let value = browser
        .script("return document.querySelector('#composer').value;")
        .await;
    assert_eq!(value, text);
    // The message box grew with a long text and shrinks back once sent.
    browser
        .script("const c = document.querySelector('#composer'); c.value = 'a\\nb\\nc\\nd\\ne\\nf'; c.dispatchEvent(new Event('input')); return 1;")
        .await;
    let grown = browser.script_async(HEIGHT_NEXT_FRAME).await;
    browser
        .script("const c = document.querySelector('#composer'); c.value = ''; c.dispatchEvent(new Event('input')); return 1;")
        .await;
    let shrunk = browser.script_async(HEIGHT_NEXT_FRAME).await;
    assert!(
        grown.as_f64() > shrunk.as_f64(),
        "six lines {grown} px, empty {shrunk} px"
    );
    app.stop().await;
}

#[actix_rt::test]
async fn a_long_output_shows_its_tail_then_all_of_it_and_downloads_whole() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    chat_with_a_long_output(&app, &llm, &browser).await;
    let lines = "document.querySelector('.tool-card .tool-output').textContent.split('\\n').filter(Boolean)";
    // Collapsed: the last lines only, and a bar saying so.
    let shown = browser
        .wait_until(&format!(
            "document.querySelector('.tool-card .output-bar') && {lines}"
        ))
        .await;
    let shown = shown.as_array().unwrap();
    assert_eq!(shown.len(), TAIL_LINES, "only the tail is in the page");
    assert_eq!(shown.last().unwrap(), "20000");
    assert_eq!(shown[0], (20000 - TAIL_LINES + 1).to_string());
    for control in ["output-expand", "output-copy", "output-download"] {
        browser
            .wait_for(&format!(
                ".tool-card .output-bar [data-action=\"{control}\"]"
            ))
            .await;
    }
    let bar = browser
        .script("return document.querySelector('.tool-card .output-bar').innerText;")
        .await;
    assert!(bar.as_str().unwrap().contains("20000"), "{bar}");
    browser.screenshot("long-output-collapsed").await;

    // Download: the whole output, as a file named after the call.
    browser
        .script(
            "window.__blobs = [];
             const make = URL.createObjectURL.bind(URL);
             URL.createObjectURL = b => { window.__blobs.push(b); return make(b); };
             document.addEventListener('click', e => {
               const a = e.target.closest && e.target.closest('a[download]');
               if (a) { window.__downloadName = a.download; e.preventDefault(); }
             }, true);
             return 1;",
        )
        .await;
    browser
        .click(".tool-card .output-bar [data-action=\"output-download\"]")
        .await;
    browser
        .wait_until("window.__blobs.length && window.__downloadName")
        .await;
    browser
        .script("window.__blobs[0].text().then(t => { window.__blobText = t; }); return 1;")
        .await;
    let whole = browser
        .wait_until("typeof window.__blobText === 'string' && window.__blobText")
        .await;
    let expected: String = (1..=20000).map(|i| format!("{i}\n")).collect();
    assert!(
        whole.as_str() == Some(expected.as_str()),
        "the download is the whole output"
    );
    let name = browser.script("return window.__downloadName;").await;
    let call = browser
        .script("return document.querySelector('.tool-card').dataset.callId;")
        .await;
    assert_eq!(
        name.as_str().unwrap(),
        format!("output-{}.txt", call.as_str().unwrap())
    );

    // Show all: every line.
    browser
        .click(".tool-card .output-bar [data-action=\"output-expand\"]")
        .await;
    let all = browser
        .wait_until(&format!("{lines}.length > {TAIL_LINES} && {lines}"))
        .await;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 20000);
    assert_eq!(all[0], "1");
    assert_eq!(all.last().unwrap(), "20000");
    let expanded = browser
        .script("return document.querySelector('.tool-card .output-bar [data-action=\"output-expand\"]').getAttribute('aria-expanded');")
        .await;
    assert_eq!(expanded, "true");

    // After a reload (history), the output is collapsed again.
    browser.script("location.reload(); return 1;").await;
    let shown = browser
        .wait_until(&format!(
            "document.querySelector('.tool-card .output-bar') && {lines}"
        ))
        .await;
    assert_eq!(shown.as_array().unwrap().len(), TAIL_LINES);

    // A long message of the person's own is collapsed with "Show more".
    llm.push(Reply::text("Noted."));
    let long: String = (1..=80)
        .map(|i| format!("line {i} of my notes\n"))
        .collect();
    browser
        .script(&format!(
            "const c = document.querySelector('#composer'); c.value = {}; c.dispatchEvent(new Event('input')); return 1;",
            json!(long)
        ))
        .await;
    browser.click("#send").await;
    browser
        .wait_until("document.querySelector('.msg-user.collapsed [data-action=\"show-more\"]')")
        .await;
    let height = browser
        .script("return document.querySelector('.msg-user.collapsed .bubble').getBoundingClientRect().height;")
        .await;
    assert!(height.as_f64().unwrap() < 600.0, "collapsed to {height} px");
    browser
        .click(".msg-user.collapsed [data-action=\"show-more\"]")
        .await;
    browser
        .wait_until("document.querySelector('.msg-user.collapsible:not(.collapsed) [data-action=\"show-more\"][aria-expanded=\"true\"]')")
        .await;
    browser.screenshot("long-message-expanded").await;
    app.stop().await;
}

#[actix_rt::test]
async fn a_message_with_spaces_around_it_leaves_no_ghost_copy() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    // Connected, with the history shown (which replaces what is on screen).
    browser
        .wait_until("window.IronClaw.state.wsReady && window.IronClaw.state.shown")
        .await;
    llm.push(Reply::text("Hello."));
    llm.push(Reply::text("Again."));
    browser
        .script("const c = document.querySelector('#composer'); c.value = '  hi \\n'; c.dispatchEvent(new Event('input')); return 1;")
        .await;
    browser.click("#send").await;
    browser.wait_reply("Hello.").await;
    // A second message goes below the first reply, not above a ghost.
    browser.send("again").await;
    browser.wait_reply("Again.").await;
    let seen = browser
        .script(
            "return {
               users: [...document.querySelectorAll('.msg-user')].map(m => m.innerText.trim()),
               pending: document.querySelectorAll('.msg-user.pending').length,
               last: document.querySelector('#messages').lastElementChild.innerText.trim()
             };",
        )
        .await;
    assert_eq!(seen["users"], json!(["hi", "again"]), "{seen}");
    assert_eq!(seen["pending"], 0, "{seen}");
    assert_eq!(seen["last"], "Again.", "{seen}");
    app.stop().await;
}

#[actix_rt::test]
async fn a_five_thousand_word_reply_streams_and_renders() {
    let llm = FakeLlm::start().await;
    let app = TestApp::builder(ProviderKind::Openai, &llm.base_url)
        .start()
        .await;
    let browser = Browser::start().await;
    browser.login(&app.base, "alice").await;
    let words = [
        "alpha", "beta", "gamma", "delta", "**bold**", "`code`", "omega",
    ];
    let mut reply = String::new();
    for i in 0..5000 {
        reply.push_str(words[i % words.len()]);
        reply.push(if i % 100 == 99 { '\n' } else { ' ' });
        if i % 500 == 499 {
            reply.push_str(&format!("\n## Part {}\n\n", i / 500 + 1));
        }
    }
    llm.push(Reply::text(reply));
    browser.send("write a lot").await;
    browser.wait_for(".msg-assistant .bubble").await;
    browser.watch_frames().await;
    browser
        .wait_until("document.querySelector('.msg-assistant[data-done=\"true\"]')")
        .await;
    let worst = browser.worst_frame_gap().await;
    println!("a 5 000-word reply streamed: worst gap between frames {worst:.0} ms");
    println!(
        "frames over 50 ms as [gap, reply done]: {}",
        browser
            .script("return JSON.stringify(window.__frames.long || [])")
            .await
    );
    let done = browser
        .script("const m = document.querySelector('.msg-assistant[data-done=\"true\"]'); return {h2: m.querySelectorAll('h2').length, strong: m.querySelectorAll('strong').length};")
        .await;
    assert_eq!(done["h2"], 10, "{done}");
    assert!(done["strong"].as_u64().unwrap() > 700, "{done}");
    app.stop().await;
}
