//! The undo routes (DESIGN.md §3): what a call changed, the diff of one
//! path, the session's checkpoints, and the revert, which goes through the
//! session's agent so it never races a turn.

use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};

use super::{owned_session, ApiError, AppState, AuthUser};
use crate::db::checkpoints::{self, Missing};
use crate::protocol::{CallId, ErrorBody, ErrorCode, ErrorDetail, FileChange};
use crate::supervisor::Lookup;
use crate::undo::{self, Change, UndoError};

/// An answer of these routes that is not a success: an undo error with
/// its own code, or one of the API's (login, unknown session).
#[derive(Debug, thiserror::Error)]
enum UndoReply {
    #[error("{0}")]
    Undo(#[from] UndoError),
    #[error("{0}")]
    Api(#[from] ApiError),
}

impl UndoReply {
    fn code(&self) -> ErrorCode {
        match self {
            UndoReply::Undo(e) => e.code(),
            UndoReply::Api(e) => e.code(),
        }
    }
}

impl actix_web::ResponseError for UndoReply {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let message = match self {
            UndoReply::Api(e) => return e.error_response(),
            // Details of internal failures go to the log only.
            UndoReply::Undo(UndoError::Storage(e)) => {
                log::error!("undo: {e}");
                "IronClaw could not read its database; the server log has details.".to_string()
            }
            UndoReply::Undo(e) => e.to_string(),
        };
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message,
            },
        })
    }
}

/// What the call changed: `(dropped, changes)`; a call judged read-only
/// that changed nothing has none.
async fn call_changes(
    state: &AppState,
    user: &AuthUser,
    id: &str,
    call_id: &str,
) -> Result<(bool, Vec<Change>), UndoReply> {
    let session = owned_session(state, &user.0, id).await?;
    let call = call_id.to_string();
    let found = state
        .db
        .run(move |c| checkpoints::of_call(c, &session.id, &call))
        .await
        .map_err(UndoError::Storage)?;
    match found {
        Ok(found) => Ok(found),
        Err(Missing::None) => Ok((false, Vec::new())),
        Err(m) => Err(UndoError::missing(m, &state.settings).into()),
    }
}

async fn changes(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UndoReply> {
    let (id, call_id) = path.into_inner();
    let (_, changes) = call_changes(&state, &user, &id, &call_id).await?;
    let list: Vec<FileChange> = changes.iter().map(Change::public).collect();
    Ok(HttpResponse::Ok().json(list))
}

#[derive(serde::Deserialize)]
struct DiffQuery {
    path: String,
}

async fn diff(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
    query: web::Query<DiffQuery>,
) -> Result<HttpResponse, UndoReply> {
    let (id, call_id) = path.into_inner();
    let (dropped, changes) = call_changes(&state, &user, &id, &call_id).await?;
    let wanted = query.into_inner().path;
    let Some(change) = changes.into_iter().find(|c| c.path == wanted) else {
        return Err(ApiError::NotFound("That command did not change this path.".into()).into());
    };
    if dropped {
        return Err(UndoError::missing(Missing::Dropped, &state.settings).into());
    }
    let settings = state.settings.clone();
    let diff = web::block(move || undo::diff(&settings, &id, &change))
        .await
        .map_err(|_| UndoError::Stopped)??;
    Ok(HttpResponse::Ok().json(diff))
}

async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, UndoReply> {
    let session = owned_session(&state, &user.0, &id).await?;
    let list = state
        .db
        .run(move |c| checkpoints::list(c, &session.id))
        .await
        .map_err(UndoError::Storage)?;
    Ok(HttpResponse::Ok().json(list))
}

async fn revert(
    state: web::Data<AppState>,
    user: AuthUser,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UndoReply> {
    let (id, call_id) = path.into_inner();
    let session = owned_session(&state, &user.0, &id).await?;
    let agent = state
        .supervisor
        .send(Lookup {
            session_id: session.id.clone(),
            owner: user.0.user_id(),
        })
        .await
        .map_err(|_| UndoError::Stopped)?;
    let agent = match agent {
        Ok(agent) => agent,
        // Another node runs the session: it does the revert.
        Err(elsewhere) => {
            let Some(relay) = &state.relay else {
                return Err(UndoError::Elsewhere(elsewhere.node_id).into());
            };
            let outcome = relay
                .send(crate::relay::RevertElsewhere {
                    owner_node: elsewhere.node_id,
                    session_id: session.id.clone(),
                    user: user.0.user_id(),
                    call_id: CallId::from(call_id),
                    by: user.0.username.clone(),
                })
                .await
                .map_err(|_| UndoError::Stopped)??;
            return Ok(HttpResponse::Ok().json(outcome));
        }
    };
    let outcome = agent
        .send(crate::agent::Revert {
            call_id: CallId::from(call_id),
            by: user.0.username.clone(),
        })
        .await
        .map_err(|_| UndoError::Stopped)??;
    Ok(HttpResponse::Ok().json(outcome))
}

/// Register the routes under `/api` (called from the API scope).
pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/sessions/{id}/checkpoints", web::get().to(list))
        .route(
            "/sessions/{id}/calls/{call_id}/changes",
            web::get().to(changes),
        )
        .route("/sessions/{id}/calls/{call_id}/diff", web::get().to(diff))
        .route(
            "/sessions/{id}/calls/{call_id}/revert",
            web::post().to(revert),
        )
}
