//! A headless Chromium driven over WebDriver (chromium-driver from Debian,
//! installed by `make test-deps`), for the browser tests and `make bench`
//! (which includes this file with `#[path]`).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::PASSWORD;

/// WebDriver's key for element references.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long to wait for something to appear in the page.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// A chromedriver process and one browser session on it.
pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    pub async fn start() -> Browser {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            // Its own process group, so the browsers it starts can be
            // ended with it.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver is not installed: run `make test-deps` (Debian packages chromium and chromium-driver)");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{root}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,900"]
            }
        }}});
        let resp: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let id = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromium did not start: {resp}"))
            .to_string();
        Browser {
            driver,
            base: format!("{root}/session/{id}"),
            http,
        }
    }

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("webdriver json");
        v["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    pub async fn find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        v[ELEMENT].as_str().map(str::to_string)
    }

    pub async fn wait_for(&self, css: &str) -> String {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            if let Some(e) = self.find(css).await {
                return e;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!(
                    "`{css}` did not appear; page text: {}",
                    self.script("return document.body.innerText").await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.wait_for(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({"text": text})),
        )
        .await;
    }

    pub async fn click(&self, css: &str) {
        let e = self.wait_for(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/click"),
            Some(json!({})),
        )
        .await;
    }

    pub async fn script(&self, js: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Run `js` as an asynchronous script: it calls `done(value)`.
    pub async fn script_async(&self, js: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/async",
            Some(json!({
                "script": format!("const done = arguments[arguments.length - 1]; {js}"),
                "args": []
            })),
        )
        .await
    }

    /// Type `text` into the field `css` key by key, as WebDriver types
    /// (one key event each, every one handled before the next); answers
    /// the milliseconds per character until all of it is in the field and
    /// a frame has been drawn after it.
    pub async fn time_typing(&self, css: &str, text: &str) -> f64 {
        let e = self.wait_for(css).await;
        let start = Instant::now();
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        )
        .await;
        self.wait_until(&format!(
            "document.querySelector({css:?}).value.endsWith({text:?})"
        ))
        .await;
        self.script_async("requestAnimationFrame(() => requestAnimationFrame(() => done(true)));")
            .await;
        start.elapsed().as_secs_f64() * 1000.0 / text.chars().count().max(1) as f64
    }

    /// Start recording the gaps between animation frames (a frame the page
    /// could not draw in time shows as a long gap).
    pub async fn watch_frames(&self) {
        self.script(
            "const f = window.__frames = {worst: 0, last: performance.now(), on: true};
             requestAnimationFrame(function tick() {
               if (!f.on) return;
               const now = performance.now();
               f.worst = Math.max(f.worst, now - f.last);
               if (now - f.last > 50) (f.long = f.long || []).push([Math.round(now - f.last), !!document.querySelector('[data-done]')]);
               f.last = now;
               requestAnimationFrame(tick);
             });
             return true;",
        )
        .await;
    }

    /// Stop recording; answers the longest gap between two frames, in ms.
    pub async fn worst_frame_gap(&self) -> f64 {
        self.script("window.__frames.on = false; return window.__frames.worst;")
            .await
            .as_f64()
            .unwrap_or(f64::NAN)
    }

    /// Wait until `js` (an expression) is truthy; returns its value.
    pub async fn wait_until(&self, js: &str) -> Value {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        loop {
            let v = self.script(&format!("return ({js});")).await;
            if !(v.is_null() || v == json!(false) || v == json!("") || v == json!(0)) {
                return v;
            }
            if Instant::now() > deadline {
                self.screenshot("timeout").await;
                panic!(
                    "`{js}` never held; page text: {}",
                    self.script("return document.body.innerText").await
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save a screenshot under target/ for a person to look at.
    pub async fn screenshot(&self, name: &str) {
        use base64_decode as b64;
        let v = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        if let Some(data) = v.as_str() {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
            let _ = std::fs::create_dir_all(&dir);
            let _ = std::fs::write(dir.join(format!("{name}.png")), b64(data));
        }
    }

    /// Type `text` into the message box and send it.
    pub async fn send(&self, text: &str) {
        self.type_into("#composer", text).await;
        self.click("#send").await;
    }

    /// Wait for a finished reply of the model that contains `text`.
    pub async fn wait_reply(&self, text: &str) {
        let text = serde_json::to_string(text).unwrap_or_default();
        self.wait_until(&format!(
            "[...document.querySelectorAll('.msg-assistant[data-done=\"true\"]')].some(m => m.innerText.includes({text}))"
        ))
        .await;
    }

    pub async fn login(&self, base: &str, user: &str) {
        self.goto(&format!("{base}/")).await;
        self.type_into("#login-username", user).await;
        self.type_into("#login-password", PASSWORD).await;
        self.click("#login-submit").await;
        self.wait_for("#composer").await;
    }
}

/// Minimal standard base64 decoder for screenshots (no extra crate).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

impl Drop for Browser {
    /// End the browser session (which closes Chromium), then the driver's
    /// whole process group, so no browser outlives its test.
    fn drop(&mut self) {
        if let Some(rest) = self.base.strip_prefix("http://") {
            if let Some((addr, path)) = rest.split_once('/') {
                if let Ok(mut s) = std::net::TcpStream::connect(addr) {
                    use std::io::{Read, Write};
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = write!(s, "DELETE /{path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = s.read_to_end(&mut Vec::new());
                }
            }
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
