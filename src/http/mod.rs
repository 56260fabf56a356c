//! The HTTP surface: REST routes (DESIGN.md §3), the WebSocket upgrade, the
//! static page, the login cookie and the one error type every route answers
//! with (`{"error": {"code", "message"}}`). The workspace file routes and
//! the audit trail are in [`files`].

pub mod files;

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
    ErrorBody, ErrorCode, ErrorDetail, Health, LoginRequest, Me, ModelList, SessionDetail,
    SessionSummary, UpdateSession,
};
use crate::supervisor::{EndSession, EngineStatus, Live, SessionSupervisor};
use crate::workspace::FileError;
use crate::ws::{self, WsSession};

/// Everything a route needs, shared by all workers.
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: Db,
    pub supervisor: Addr<SessionSupervisor>,
    /// Failed logins per username.
    pub user_limiter: LoginLimiter,
    /// Failed logins per client address, looser: one address may serve
    /// several people.
    pub ip_limiter: LoginLimiter,
    pub http: reqwest::Client,
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
        if let ApiError::TooManyAttempts(secs) = self {
            resp.insert_header((header::RETRY_AFTER, secs.to_string()));
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
        .map(|a| format!("ip:{}", a.ip()))
        .unwrap_or_else(|| "ip:unknown".into())
}

async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let LoginRequest { username, password } = body.into_inner();
    let user_key = format!("user:{username}");
    let ip_key = client_key(&req);
    if let Some(wait) = state
        .user_limiter
        .blocked_for(&user_key)
        .or_else(|| state.ip_limiter.blocked_for(&ip_key))
    {
        return Err(ApiError::TooManyAttempts(wait));
    }
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
        log::info!("failed login for {username:?}");
        state.user_limiter.record_failure(&user_key);
        state.ip_limiter.record_failure(&ip_key);
        return Err(ApiError::BadCredentials);
    };
    state.user_limiter.clear(&user_key);
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

async fn health(state: web::Data<AppState>) -> HttpResponse {
    let database = match state.db.run(queries::count_users).await {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
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
    let uid = user.0.user_id();
    let mode = user.0.default_mode();
    let model = state.settings.provider.model.clone();
    let row = state
        .db
        .run(move |c| queries::create_session(c, uid, title.as_deref(), &model, mode))
        .await?;
    Ok(HttpResponse::Created().json(row.summary()))
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
    if body.model.as_deref().is_some_and(|m| m.trim().is_empty()) {
        return Err(ApiError::BadRequest("A model name cannot be empty.".into()));
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
    if let Ok(Some(agent)) = state
        .supervisor
        .send(Live {
            session_id: updated.id.clone(),
        })
        .await
    {
        agent.do_send(crate::agent::SessionChanged {
            session: updated.clone(),
        });
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
        user.username,
        state.supervisor.clone(),
        state.settings.server.max_frame_bytes,
        state.settings.server.outbound_queue,
    );
    ws::start_socket(&req, stream, actor)
}

// ------------------------------------------------------------------- pages

/// The page's Content-Security-Policy: only our own scripts and styles, so
/// nothing a model writes can run even if it reached the DOM.
const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

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

fn page(name: &str) -> HttpResponse {
    match std::fs::read_to_string(web_dir().join(name)) {
        Ok(html) => HttpResponse::Ok()
            .content_type("text/html; charset=utf-8")
            .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(html),
        Err(_) => HttpResponse::NotFound().body("page missing"),
    }
}

async fn index(req: HttpRequest) -> HttpResponse {
    match AuthUser::extract(&req).await {
        Ok(_) => page("index.html"),
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
        Err(_) => page("login.html"),
    }
}

async fn api_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("No such route.".into()))
}

/// Register every route.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        files::routes(web::scope("/api"))
            .route("/login", web::post().to(login))
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
