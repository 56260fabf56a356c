//! The HTTP surface: REST routes (DESIGN.md §3), the WebSocket upgrade, the
//! static page, the login cookie and the one error type every route answers
//! with (`{"error": {"code", "message"}}`). The workspace file routes and
//! the audit trail are in [`files`].

pub mod files;
pub mod origin;
pub mod undo;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use actix::Addr;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, SameSite};
use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse, ResponseError};
use chrono::Utc;

use crate::auth::{self, LoginLimiter, COOKIE_NAME};
use crate::config::Settings;
use crate::db::queries::{self, User};
use crate::db::{Db, DbError};
use crate::protocol::{
    ErrorBody, ErrorCode, ErrorDetail, Health, HealthStatus, LoginRequest, Me, ModelList,
    SessionDetail, SessionSummary, UpdateSession,
};
use crate::supervisor::{EndSession, EngineStatus, Live, SessionSupervisor};
use crate::workspace::FileError;
use crate::ws::{self, SocketCounts, WsSession};

/// Everything a route needs, shared by all workers.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub supervisor: Addr<SessionSupervisor>,
    /// Login attempts per (user, address), address and user.
    pub login_limiter: LoginLimiter,
    /// Password checks allowed at once ([`auth::MAX_CONCURRENT_HASHES`]).
    pub login_slots: tokio::sync::Semaphore,
    /// Open WebSockets per user, for `limits.sockets`.
    pub sockets: Arc<SocketCounts>,
    pub http: reqwest::Client,
    /// This node's id (`cluster.node_id`), reported by health.
    pub node_id: String,
    /// Sockets of sessions another node runs go through this (PostgreSQL
    /// only: on SQLite the node is alone).
    pub relay: Option<Addr<crate::relay::Relay>>,
}

// ------------------------------------------------------------------ errors

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Log in first.")]
    Unauthorized,
    #[error("Wrong username or password.")]
    BadCredentials,
    #[error("Too many failed logins; try again in {0} s.")]
    TooManyAttempts(u64),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Unavailable(String),
    /// A workspace file operation failed; its own code reaches the wire.
    #[error("{0}")]
    File(#[from] FileError),
    #[error("Too many logins are being checked right now; try again in a moment.")]
    LoginBusy,
    /// A cross-site or unknown-host request; the detail goes to the log.
    #[error("This request came from another site or an unexpected address, so IronClaw refused it. Open IronClaw from its own address, or add that origin to server.allowed_origins.")]
    OriginRefused,
    #[error(
        "This route takes a JSON body (Content-Type: application/json) or a multipart upload."
    )]
    UnsupportedMediaType,
    #[error("{0}")]
    LimitReached(String),
    #[error("{0}")]
    ModelNotAllowed(String),
    #[error("Internal error; the server log has details.")]
    Internal(String),
}

impl ApiError {
    /// The code on the wire; the status comes with it
    /// ([`ErrorCode::http_status`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::BadCredentials => ErrorCode::BadCredentials,
            ApiError::TooManyAttempts(_) => ErrorCode::TooManyAttempts,
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::BadRequest(_) => ErrorCode::BadRequest,
            ApiError::TooLarge(_) => ErrorCode::TooLarge,
            ApiError::Conflict(_) => ErrorCode::Conflict,
            ApiError::Forbidden(_) => ErrorCode::Forbidden,
            ApiError::Unavailable(_) => ErrorCode::Unavailable,
            ApiError::File(e) => e.code(),
            ApiError::LoginBusy => ErrorCode::LoginBusy,
            ApiError::OriginRefused => ErrorCode::OriginRefused,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::LimitReached(_) => ErrorCode::LimitReached,
            ApiError::ModelNotAllowed(_) => ErrorCode::ModelNotAllowed,
            ApiError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn session_not_found() -> Self {
        ApiError::NotFound("No such session.".into())
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            log::error!("internal error: {detail}");
        }
        let mut resp = HttpResponse::build(self.status_code());
        match self {
            ApiError::TooManyAttempts(secs) => {
                resp.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::LoginBusy => {
                resp.insert_header((header::RETRY_AFTER, LOGIN_BUSY_RETRY_SECS.to_string()));
            }
            _ => {}
        }
        resp.json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
            },
        })
    }
}

/// JSON bodies that fail to parse answer in the same error shape.
pub fn json_config(limit: usize) -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(limit)
        .error_handler(|err, _| {
            let e = match &err {
                actix_web::error::JsonPayloadError::OverflowKnownLength { .. }
                | actix_web::error::JsonPayloadError::Overflow { .. } => {
                    ApiError::TooLarge("That request body is too large.".into())
                }
                other => ApiError::BadRequest(format!(
                    "The request body is not valid JSON for this route: {other}."
                )),
            };
            actix_web::error::InternalError::from_response(err, e.error_response()).into()
        })
}

// -------------------------------------------------------------------- auth

/// The logged-in user, from the login cookie. Routes that take it answer
/// 401 without a valid cookie.
pub struct AuthUser(pub User);

impl FromRequest for AuthUser {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let token = req.cookie(COOKIE_NAME).map(|c| c.value().to_string());
        let state = req.app_data::<web::Data<AppState>>().cloned();
        Box::pin(async move {
            let (Some(token), Some(state)) = (token, state) else {
                return Err(ApiError::Unauthorized);
            };
            let hash = auth::token_hash(&token);
            state
                .db
                .run(move |c| queries::user_for_login(c, &hash))
                .await?
                .map(AuthUser)
                .ok_or(ApiError::Unauthorized)
        })
    }
}

fn client_key(req: &HttpRequest) -> String {
    req.peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// Seconds a login refused for lack of a hashing slot is told to wait.
const LOGIN_BUSY_RETRY_SECS: u64 = 1;

/// Bytes of a login body: a username and password, far below the JSON
/// limit of other routes, so a huge body is refused before it is parsed.
pub const LOGIN_BODY_LIMIT: usize = 8 * 1024;

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    // Lengths first: nothing below (limiter keys, logs, argon2) sees an
    // oversized value.
    if username.len() > auth::MAX_USERNAME_BYTES || password.len() > auth::MAX_PASSWORD_BYTES {
        return Err(ApiError::BadRequest(format!(
            "A username is at most {} bytes and a password at most {} bytes.",
            auth::MAX_USERNAME_BYTES,
            auth::MAX_PASSWORD_BYTES
        )));
    }
    let address = client_key(&req);
    // Counted before hashing, so parallel guesses cannot all get through.
    let attempt = state
        .login_limiter
        .begin(&username, &address)
        .map_err(|auth::Wait(secs)| ApiError::TooManyAttempts(secs))?;
    let Ok(_slot) = state.login_slots.try_acquire() else {
        state.login_limiter.withdraw(attempt);
        return Err(ApiError::LoginBusy);
    };
    let name = username.clone();
    let user = state.db.run(move |c| queries::find_user(c, &name)).await?;
    let stored = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| auth::dummy_hash().to_string());
    // argon2 is deliberately slow: keep it off the async threads.
    let ok = web::block(move || auth::verify_password(&password, &stored))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(user) = user.filter(|_| ok) else {
        log::info!(
            "failed login for {:?} from {address}",
            auth::clip_for_log(&username, auth::MAX_USERNAME_BYTES)
        );
        return Err(ApiError::BadCredentials);
    };
    state.login_limiter.succeeded(attempt);
    let token = auth::new_token();
    let hash = auth::token_hash(&token);
    let ttl = chrono::Duration::hours(state.settings.server.login_ttl_hours as i64);
    let expires = (Utc::now() + ttl).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let uid = user.user_id();
    state
        .db
        .run(move |c| queries::create_login(c, &hash, uid, expires))
        .await?;
    log::info!("{} logged in", user.username);
    let cookie = Cookie::build(COOKIE_NAME, token)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.settings.server.secure_cookie)
        .max_age(CookieDuration::hours(
            state.settings.server.login_ttl_hours as i64,
        ))
        .finish();
    Ok(HttpResponse::Ok().cookie(cookie).json(Me {
        approval_mode: user.default_mode(),
        username: user.username,
    }))
}

async fn logout(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some(c) = req.cookie(COOKIE_NAME) {
        let hash = auth::token_hash(c.value());
        state
            .db
            .run(move |c| queries::delete_login(c, &hash))
            .await?;
    }
    let mut gone = Cookie::build(COOKIE_NAME, "").path("/").finish();
    gone.make_removal();
    Ok(HttpResponse::NoContent().cookie(gone).finish())
}

async fn me(user: AuthUser) -> HttpResponse {
    HttpResponse::Ok().json(Me {
        approval_mode: user.0.default_mode(),
        username: user.0.username,
    })
}

/// Change the user's default approval mode (for sessions created later;
/// each session can still be switched on its own).
async fn update_me(
    state: web::Data<AppState>,
    user: AuthUser,
    body: web::Json<crate::protocol::UpdateMe>,
) -> Result<HttpResponse, ApiError> {
    let mode = body.approval_mode;
    let uid = user.0.user_id();
    state
        .db
        .run(move |c| queries::set_default_mode(c, uid, mode))
        .await?;
    Ok(HttpResponse::Ok().json(Me {
        username: user.0.username,
        approval_mode: mode,
    }))
}

// ------------------------------------------------------------------ health

/// Without a login: `{status}` only, and no provider or Docker query (an
/// unauthenticated caller must not make the server do work or learn its
/// set-up). Logged in: the details.
async fn health(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if AuthUser::extract(&req).await.is_err() {
        return HttpResponse::Ok().json(HealthStatus {
            status: "ok".to_string(),
        });
    }
    let database = match state.db.run(queries::count_users).await {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            log::warn!("health: database: {e}");
            "error: the database does not answer; the server's log has details".to_string()
        }
    };
    let provider = crate::provider::health(&state.http, &state.settings.provider).await;
    let docker = match state.supervisor.send(EngineStatus).await {
        Ok(engine) => engine.summary,
        Err(e) => format!("error: {e}"),
    };
    let status =
        if database == "ok" && provider.reachable && provider.model_available && docker == "ok" {
            "ok"
        } else {
            "degraded"
        };
    HttpResponse::Ok().json(Health {
        status: status.to_string(),
        database,
        docker,
        provider,
        node_id: state.node_id.clone(),
    })
}

async fn models(state: web::Data<AppState>, _user: AuthUser) -> Result<HttpResponse, ApiError> {
    let models = crate::provider::list_models(&state.http, &state.settings.provider)
        .await
        .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    let wanted = &state.settings.provider.model;
    let current = crate::provider::resolve_model(wanted, &models).unwrap_or_else(|| wanted.clone());
    Ok(HttpResponse::Ok().json(ModelList { models, current }))
}

// ---------------------------------------------------------------- sessions

async fn list_sessions(
    state: web::Data<AppState>,
    user: AuthUser,
) -> Result<HttpResponse, ApiError> {
    let uid = user.0.user_id();
    let rows = state
        .db
        .run(move |c| queries::list_sessions(c, uid))
        .await?;
    let list: Vec<SessionSummary> = rows.iter().map(|s| s.summary()).collect();
    Ok(HttpResponse::Ok().json(list))
}

async fn create_session(
    state: web::Data<AppState>,
    user: AuthUser,
    body: Option<web::Json<crate::protocol::CreateSession>>,
) -> Result<HttpResponse, ApiError> {
    let title = body.and_then(|b| b.into_inner().title);
    if let Some(t) = &title {
        check_title(t)?;
    }
    let uid = user.0.user_id();
    let mode = user.0.default_mode();
    let model = state.settings.provider.model.clone();
    let limit = state.settings.limits.sessions;
    let row = state
        .db
        .run(move |c| {
            if queries::count_sessions(c, uid)? >= limit as i64 {
                return Ok(None);
            }
            queries::create_session(c, uid, title.as_deref(), &model, mode).map(Some)
        })
        .await?
        .ok_or_else(|| {
            ApiError::LimitReached(format!(
                "You have {limit} sessions, the most one person may keep (limits.sessions). Delete one first."
            ))
        })?;
    Ok(HttpResponse::Created().json(row.summary()))
}

/// Longest session title, in characters: a sidebar line, not a document.
pub const MAX_TITLE_CHARS: usize = 200;

fn check_title(title: &str) -> Result<(), ApiError> {
    if title.chars().count() > MAX_TITLE_CHARS {
        return Err(ApiError::BadRequest(format!(
            "A session title is at most {MAX_TITLE_CHARS} characters."
        )));
    }
    Ok(())
}

/// A session may use a model the provider lists (Ollama's `:latest`
/// matching) or one on `provider.models`; anything else is refused before
/// it is stored.
async fn check_model(state: &AppState, model: &str) -> Result<(), ApiError> {
    let settings = &state.settings.provider;
    if model == settings.model || settings.models.iter().any(|m| m == model) {
        return Ok(());
    }
    let shown = auth::clip_for_log(model, auth::MAX_USERNAME_BYTES);
    match crate::provider::list_models(&state.http, settings).await {
        Ok(offered) if crate::provider::resolve_model(model, &offered).is_some() => Ok(()),
        Ok(_) => Err(ApiError::ModelNotAllowed(format!(
            "The model server does not offer `{shown}`, and it is not on provider.models. Pick one from the list."
        ))),
        Err(e) => Err(ApiError::ModelNotAllowed(format!(
            "`{shown}` is not on provider.models, and the model server could not be asked ({e})."
        ))),
    }
}

/// The session if `user` owns it, else 404.
pub async fn owned_session(
    state: &AppState,
    user: &User,
    id: &str,
) -> Result<queries::ChatSession, ApiError> {
    let uid = user.user_id();
    let id = id.to_string();
    state
        .db
        .run(move |c| queries::get_session(c, uid, &id))
        .await?
        .ok_or_else(ApiError::session_not_found)
}

async fn get_session(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &user.0, &path).await?;
    let id = session.id.clone();
    let events = state.db.run(move |c| queries::list_events(c, &id)).await?;
    Ok(HttpResponse::Ok().json(SessionDetail {
        session: session.summary(),
        events,
    }))
}

/// Most events one page may ask for.
const MAX_EVENT_PAGE: usize = 1000;

#[derive(serde::Deserialize)]
struct EventsQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

/// Older events than `history` carried, a page at a time, oldest first.
async fn session_events(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    query: web::Query<EventsQuery>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &user.0, &path).await?;
    let limit = query
        .limit
        .unwrap_or(state.settings.server.history_events)
        .clamp(1, MAX_EVENT_PAGE);
    let before = query.before;
    let id = session.id.clone();
    let page = state
        .db
        .run(move |c| queries::events_page(c, &id, before, limit))
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

async fn update_session(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
    body: web::Json<UpdateSession>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &user.0, &path).await?;
    let body = body.into_inner();
    let title = body.title.map(|t| t.trim().to_string());
    if title.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::BadRequest(
            "A session title cannot be empty.".into(),
        ));
    }
    if let Some(t) = &title {
        check_title(t)?;
    }
    if body.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(ApiError::BadRequest("A model name cannot be empty.".into()));
    }
    if let Some(m) = &body.model {
        check_model(&state, m.trim()).await?;
    }
    let changes = queries::SessionChanges {
        title,
        model: body.model.map(|m| m.trim().to_string()),
        approval_mode: body.approval_mode.map(|m| m.as_str().to_string()),
        updated_at: None,
    };
    let id = session.id.clone();
    let updated = state
        .db
        .run(move |c| queries::update_session(c, &id, changes))
        .await?
        .ok_or_else(ApiError::session_not_found)?;
    match state
        .supervisor
        .send(Live {
            session_id: updated.id.clone(),
        })
        .await
    {
        Ok(Some(agent)) => agent.do_send(crate::agent::SessionChanged {
            session: updated.clone(),
        }),
        // Not running here: perhaps on another node.
        _ => {
            if let Some(relay) = &state.relay {
                relay.do_send(crate::relay::TellOwner {
                    session_id: updated.id.clone(),
                    note: crate::relay::Note::Changed,
                });
            }
        }
    }
    Ok(HttpResponse::Ok().json(updated.summary()))
}

/// Delete a session: its actors and container first (the supervisor
/// answers once the container is gone), then its rows, then its workspace.
async fn delete_session(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &user.0, &path).await?;
    if let Some(relay) = &state.relay {
        // The node running it, if another, stops it and removes its container.
        relay.do_send(crate::relay::TellOwner {
            session_id: session.id.clone(),
            note: crate::relay::Note::End,
        });
    }
    let ended = state
        .supervisor
        .send(EndSession {
            session_id: session.id.clone(),
        })
        .await;
    match ended {
        Ok(Ok(())) => {}
        // The rows go anyway; the reaper removes the container at the next
        // start.
        Ok(Err(e)) => log::warn!("session {}: {e}", session.id),
        Err(e) => log::warn!("session {}: supervisor unreachable ({e})", session.id),
    }
    let id = session.id.clone();
    state
        .db
        .run(move |c| queries::delete_session(c, &id))
        .await?;
    remove_workspace(&state.settings, &session.id).await;
    let settings = state.settings.clone();
    let id = session.id.clone();
    match web::block(move || crate::undo::remove_store(&settings, &id)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!(
            "could not remove the checkpoints of session {}: {e}",
            session.id
        ),
        Err(e) => log::warn!(
            "could not remove the checkpoints of session {}: {e}",
            session.id
        ),
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Remove a deleted session's workspace from disk (its container, which
/// mounts it, is gone by now).
async fn remove_workspace(settings: &Settings, session_id: &str) {
    let volume = crate::quota::WorkspaceVolume::of_session(settings, session_id);
    let removed = web::block(move || volume.remove()).await;
    match removed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::warn!("could not remove the workspace of session {session_id}: {e}"),
        Err(e) => log::warn!("could not remove the workspace of session {session_id}: {e}"),
    }
}

// --------------------------------------------------------------- websocket

#[derive(serde::Deserialize)]
struct WsQuery {
    session: Option<String>,
}

async fn websocket(
    state: web::Data<AppState>,
    req: HttpRequest,
    stream: web::Payload,
    query: web::Query<WsQuery>,
) -> Result<HttpResponse, actix_web::Error> {
    // Refuse before upgrading: an unauthenticated socket never opens.
    let user = AuthUser::extract(&req).await?.0;
    let limit = state.settings.limits.sockets;
    let permit = state
        .sockets
        .acquire(user.user_id().0, limit)
        .ok_or_else(|| {
            ApiError::LimitReached(format!(
                "You have {limit} connections open, the most one person may (limits.sockets). Close a tab or another client first."
            ))
        })?;
    let session = match &query.session {
        Some(id) => owned_session(&state, &user, id).await?,
        None => {
            let uid = user.user_id();
            let mode = user.default_mode();
            let model = state.settings.provider.model.clone();
            state
                .db
                .run(
                    move |c| match queries::list_sessions(c, uid)?.into_iter().next() {
                        Some(s) => Ok(s),
                        None => queries::create_session(c, uid, None, &model, mode),
                    },
                )
                .await
                .map_err(ApiError::from)?
        }
    };
    let actor = WsSession::new(
        session.id,
        user.username.clone(),
        user.user_id(),
        state.supervisor.clone(),
        state.relay.clone(),
        state.settings.server.max_frame_bytes,
        state.settings.server.outbound_queue,
    )
    .with_permit(permit);
    ws::start_socket(&req, stream, actor)
}

// ------------------------------------------------------------------- pages

/// The page's Content-Security-Policy: only our own styles, and scripts
/// only from the page's own static folder (not merely the origin: a
/// workspace file served from the same origin must never run as a
/// script), so nothing a model writes can run even if it reached the DOM.
/// Forms post only to the server itself.
fn csp(req: &HttpRequest) -> String {
    let info = req.connection_info();
    let host = info.host();
    // The host names the page's own origin in the policy; anything odd in
    // it (it is the client's header) falls back to the origin alone.
    let plain = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    let scripts = if plain {
        format!("{}://{host}/static/", info.scheme())
    } else {
        "'self'".to_string()
    };
    format!(
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src {scripts}; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// Referrer policy of every page: the page's URLs (session ids) never
/// leave with a link.
pub const REFERRER_POLICY: &str = "no-referrer";

/// Where the page's files are: `IRONCLAW_WEB_DIR`, else `./web` when it
/// exists (an installed copy), else the source tree it was built from.
fn web_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("IRONCLAW_WEB_DIR") {
        return dir.into();
    }
    let local = std::path::PathBuf::from("web");
    if local.join("index.html").is_file() {
        return local;
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web")
}

fn page(req: &HttpRequest, name: &str) -> HttpResponse {
    match std::fs::read_to_string(web_dir().join(name)) {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, csp(req)))
            .insert_header((header::REFERRER_POLICY, REFERRER_POLICY))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(_) => HttpResponse::NotFound().body("page missing"),
    }
}

async fn index(req: HttpRequest) -> HttpResponse {
    match AuthUser::extract(&req).await {
        Ok(_) => page(&req, "index.html"),
        Err(_) => HttpResponse::Found()
            .insert_header((header::LOCATION, "/login"))
            .finish(),
    }
}

/// The login page; someone already logged in goes straight to the app.
async fn login_page(req: HttpRequest) -> HttpResponse {
    match AuthUser::extract(&req).await {
        Ok(_) => HttpResponse::Found()
            .insert_header((header::LOCATION, "/"))
            .finish(),
        Err(_) => page(&req, "login.html"),
    }
}

/// `HEAD` answers exactly like `GET`, without the body (the HTTP layer
/// leaves a HEAD response's body out; its length stays). Runs before the
/// origin check, where a read is a read either way.
pub async fn head_as_get(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    if req.method() == actix_web::http::Method::HEAD {
        req.head_mut().method = actix_web::http::Method::GET;
    }
    next.call(req).await
}

async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("No such route.".into()))
}

/// Register every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        undo::routes(files::routes(web::scope("/api")))
            .service(
                web::resource("/login")
                    .app_data(json_config(LOGIN_BODY_LIMIT))
                    .route(web::post().to(login)),
            )
            .route("/logout", web::post().to(logout))
            .route("/me", web::get().to(me))
            .route("/me", web::patch().to(update_me))
            .route("/health", web::get().to(health))
            .route("/models", web::get().to(models))
            .route("/sessions", web::get().to(list_sessions))
            .route("/sessions", web::post().to(create_session))
            .route("/sessions/{id}", web::get().to(get_session))
            .route("/sessions/{id}", web::patch().to(update_session))
            .route("/sessions/{id}", web::delete().to(delete_session))
            .route("/sessions/{id}/events", web::get().to(session_events))
            .default_service(web::to(api_not_found)),
    )
    .route("/ws", web::get().to(websocket))
    .route("/", web::get().to(index))
    .route("/login", web::get().to(login_page))
    .service(
        actix_files::Files::new("/static", web_dir().join("static"))
            .use_etag(true)
            .use_last_modified(true)
            .prefer_utf8(true),
    );
}
