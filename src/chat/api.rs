//! The REST side of the terminal client (DESIGN.md §3): login, sessions,
//! files with progress bars, undo. Every failure becomes the server's own
//! sentence (`{"error": {"message"}}`) or a plain one about the connection.

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use futures_util::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::auth::COOKIE_NAME;
use crate::protocol::{
    CheckpointInfo, CreateSession, ErrorBody, FileEntry, LoginRequest, Me, RevertOutcome,
    SessionSummary, UpdateSession,
};

/// Files at least this big get a progress bar.
const PROGRESS_BYTES: u64 = 256 * 1024;

/// A server and a login on it.
#[derive(Clone)]
pub struct Api {
    /// `http(s)://host:port`, no trailing slash.
    pub base: String,
    pub user: String,
    token: String,
    http: reqwest::Client,
}

/// `s` with every byte outside `A-Za-z0-9-._~/` percent-encoded.
pub fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A workspace path as the routes take it, refusing `..` here: a URL
/// would resolve it away before the server could refuse it.
pub fn workspace_path(path: &str) -> anyhow::Result<String> {
    let path = path.trim_start_matches("/workspace/").trim_matches('/');
    if path.split('/').any(|seg| seg == "..") {
        bail!("{path}: a workspace path cannot lead outside the workspace (..)");
    }
    Ok(path.to_string())
}

fn query(s: &str) -> String {
    encode_path(s).replace('/', "%2F")
}

async fn failure(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => anyhow!("{}", body.error.message),
        Err(_) => anyhow!("the server answered {status}"),
    }
}

impl Api {
    pub fn new(base: &str, token: &str, user: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Api {
            base: base.trim_end_matches('/').to_string(),
            user: user.to_string(),
            token: token.to_string(),
            http,
        })
    }

    /// `Cookie:` value for requests and the WebSocket.
    pub fn cookie(&self) -> String {
        format!("{COOKIE_NAME}={}", self.token)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header(reqwest::header::COOKIE, self.cookie())
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| {
            anyhow!(
                "cannot reach IronClaw at {}: {}",
                self.base,
                if e.is_connect() {
                    "connection refused (is the server running?)".to_string()
                } else {
                    e.to_string()
                }
            )
        })?;
        if resp.status().is_success() {
            Ok(resp)
        } else {
            Err(failure(resp).await)
        }
    }

    async fn json<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = self.send(rb).await?;
        resp.json().await.context("reading the server's answer")
    }

    /// Log in; the token and its lifetime in seconds.
    pub async fn login(&self, body: &LoginRequest) -> anyhow::Result<(String, i64)> {
        let resp = self
            .send(
                self.http
                    .post(format!("{}/api/login", self.base))
                    .json(body),
            )
            .await?;
        resp.headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(super::login::token_from_set_cookie)
            .ok_or_else(|| anyhow!("the server accepted the login but sent no login cookie"))
    }

    /// Whether the server still takes this login.
    pub async fn still_valid(&self) -> anyhow::Result<bool> {
        let resp = self
            .req(reqwest::Method::GET, "/api/me")
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach IronClaw at {}: {e}", self.base))?;
        Ok(resp.status().is_success() && resp.json::<Me>().await.is_ok())
    }

    pub async fn logout(&self) -> anyhow::Result<()> {
        self.send(self.req(reqwest::Method::POST, "/api/logout"))
            .await
            .map(|_| ())
    }

    pub async fn sessions(&self) -> anyhow::Result<Vec<SessionSummary>> {
        self.json(self.req(reqwest::Method::GET, "/api/sessions"))
            .await
    }

    pub async fn new_session(&self) -> anyhow::Result<SessionSummary> {
        self.json(
            self.req(reqwest::Method::POST, "/api/sessions")
                .json(&CreateSession::default()),
        )
        .await
    }

    pub async fn update_session(
        &self,
        id: &str,
        change: &UpdateSession,
    ) -> anyhow::Result<SessionSummary> {
        self.json(
            self.req(
                reqwest::Method::PATCH,
                &format!("/api/sessions/{}", query(id)),
            )
            .json(change),
        )
        .await
    }

    pub async fn files(&self, id: &str, dir: &str) -> anyhow::Result<Vec<FileEntry>> {
        self.json(self.req(
            reqwest::Method::GET,
            &format!(
                "/api/sessions/{}/files?path={}",
                query(id),
                query(&workspace_path(dir)?)
            ),
        ))
        .await
    }

    pub async fn checkpoints(&self, id: &str) -> anyhow::Result<Vec<CheckpointInfo>> {
        self.json(self.req(
            reqwest::Method::GET,
            &format!("/api/sessions/{}/checkpoints", query(id)),
        ))
        .await
    }

    pub async fn revert(&self, id: &str, call_id: &str) -> anyhow::Result<RevertOutcome> {
        self.json(self.req(
            reqwest::Method::POST,
            &format!(
                "/api/sessions/{}/calls/{}/revert",
                query(id),
                query(call_id)
            ),
        ))
        .await
    }

    /// Upload `local` to `remote` (workspace-relative) as a raw body, with
    /// a progress bar on stderr for big files.
    pub async fn upload(&self, id: &str, local: &Path, remote: &str) -> anyhow::Result<u64> {
        let file = tokio::fs::File::open(local)
            .await
            .with_context(|| format!("cannot open {}", local.display()))?;
        let meta = file.metadata().await?;
        if !meta.is_file() {
            bail!("{} is not a file", local.display());
        }
        let size = meta.len();
        let bar = progress(size, "uploading");
        let counted = bar.clone();
        let stream =
            tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024).map(move |chunk| {
                if let Ok(c) = &chunk {
                    counted.inc(c.len() as u64);
                }
                chunk
            });
        let rb = self
            .req(
                reqwest::Method::PUT,
                &format!(
                    "/api/sessions/{}/files/{}",
                    query(id),
                    encode_path(&workspace_path(remote)?)
                ),
            )
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(stream));
        let sent = self.send(rb).await;
        bar.finish_and_clear();
        sent?;
        Ok(size)
    }

    /// Download `remote` into `local` (written beside it first, then
    /// renamed, so a broken download leaves no half file).
    pub async fn download(&self, id: &str, remote: &str, local: &Path) -> anyhow::Result<u64> {
        let resp = self
            .send(self.req(
                reqwest::Method::GET,
                &format!(
                    "/api/sessions/{}/files/{}",
                    query(id),
                    encode_path(&workspace_path(remote)?)
                ),
            ))
            .await?;
        let bar = progress(resp.content_length().unwrap_or(0), "downloading");
        let name = local
            .file_name()
            .ok_or_else(|| anyhow!("{} is not a file name", local.display()))?;
        let temp = local.with_file_name(format!(".{}.ironclaw-part", name.to_string_lossy()));
        let mut file = tokio::fs::File::create(&temp)
            .await
            .with_context(|| format!("cannot write {}", temp.display()))?;
        let mut body = resp.bytes_stream();
        let mut total = 0u64;
        let result: anyhow::Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.context("the download broke off")?;
                file.write_all(&chunk).await?;
                total += chunk.len() as u64;
                bar.inc(chunk.len() as u64);
            }
            file.sync_all().await?;
            Ok(())
        }
        .await;
        bar.finish_and_clear();
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&temp).await;
            return Err(e);
        }
        tokio::fs::rename(&temp, local)
            .await
            .with_context(|| format!("cannot write {}", local.display()))?;
        Ok(total)
    }
}

/// A bar on stderr for transfers of [`PROGRESS_BYTES`] or more (hidden when
/// stderr is not a terminal).
fn progress(size: u64, what: &str) -> ProgressBar {
    if size < PROGRESS_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(size);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar
}
