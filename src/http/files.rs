//! The workspace file routes (DESIGN.md §3): list, download, raw and
//! multipart upload, delete; and the audit trail (tool calls and reverts).
//! Paths are confined by `crate::workspace`; an upload is announced to the
//! session's agent, and every write leaves undo's mark.

use actix_multipart::Multipart;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;

use super::{owned_session, ApiError, AppState, AuthUser};
use crate::agent::FilesUploaded;
use crate::db::queries;
use crate::protocol::{AuditRecord, FileEntry, SessionId};
use crate::quota::WorkspaceVolume;
use crate::supervisor::Lookup;
use crate::workspace::{FileError, RelPath, UploadLimits, Workspace};

const MIB: u64 = 1024 * 1024;

/// The session's workspace, if `user` owns the session.
async fn workspace(
    state: &AppState,
    user: &AuthUser,
    id: &str,
) -> Result<(SessionId, Workspace), ApiError> {
    let session = owned_session(state, &user.0, id).await?;
    let volume = WorkspaceVolume::of_session(&state.settings, &session.id);
    let ws = web::block(move || {
        volume.prepare()?;
        Workspace::open(volume.root().to_path_buf())
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok((session.id, ws))
}

fn limits(state: &AppState) -> UploadLimits {
    UploadLimits {
        max_bytes: state.settings.files.max_upload_mb * MIB,
        quota_bytes: Some(state.settings.files.quota_mb * MIB),
    }
}

/// The body's declared length, refused before reading it when it is over
/// the limit.
fn check_declared_length(req: &HttpRequest, max: u64) -> Result<Option<u64>, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if n > max => Err(FileError::TooLarge { limit: max }.into()),
        declared => Ok(declared),
    }
}

/// Leave undo's mark that the workspace changed outside any command, so
/// the next checkpoint looks again (`crate::undo::mark_stale`).
async fn mark_changed(state: &AppState, session_id: &SessionId) {
    let settings = state.settings.clone();
    let id = session_id.clone();
    let _ = web::block(move || crate::undo::mark_stale(&settings, &id)).await;
}

/// Tell the live session (starting it if needed) that files arrived.
async fn announce(
    state: &AppState,
    owner: crate::db::queries::UserId,
    session_id: &SessionId,
    paths: Vec<String>,
) {
    if paths.is_empty() {
        return;
    }
    mark_changed(state, session_id).await;
    match state
        .supervisor
        .send(Lookup {
            session_id: session_id.clone(),
            owner,
        })
        .await
    {
        Ok(Ok(agent)) => agent.do_send(FilesUploaded { paths }),
        Ok(Err(_)) => {
            if let Some(relay) = &state.relay {
                relay.do_send(crate::relay::TellOwner {
                    session_id: session_id.clone(),
                    note: crate::relay::Note::Uploaded { paths },
                });
            }
        }
        Err(_) => {}
    }
}

#[derive(serde::Deserialize)]
struct ListQuery {
    path: Option<String>,
}

async fn list(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let (_, ws) = workspace(&state, &user, &id).await?;
    let dir = Workspace::clean_path(query.path.as_deref().unwrap_or(""))?;
    let entries: Vec<FileEntry> = web::block(move || ws.list(&dir))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    Ok(HttpResponse::Ok().json(entries))
}

/// The session, its workspace and the confined path of a
/// `/sessions/{id}/files/{path}` route.
async fn file_target(
    state: &AppState,
    user: &AuthUser,
    req: &HttpRequest,
) -> Result<(SessionId, Workspace, RelPath), ApiError> {
    let id = req.match_info().get("id").unwrap_or_default();
    let (session_id, ws) = workspace(state, user, id).await?;
    Ok((session_id, ws, file_path(req)?))
}

/// The `{path}` of a file route, fully decoded. actix's router decodes
/// everything but `%2F`, `%25` and `%2B`, so a client could otherwise hide a
/// `/` (and with it `..` segments) from the checks; those are decoded here,
/// before confinement.
fn file_path(req: &HttpRequest) -> Result<RelPath, ApiError> {
    let raw = req.match_info().get("path").unwrap_or_default();
    let decoded = percent_decode(raw)
        .ok_or_else(|| ApiError::BadRequest("The file path is not valid UTF-8.".into()))?;
    Ok(Workspace::clean_path(&decoded)?)
}

/// Decode `%XX` escapes; `None` if the result is not UTF-8. A `%` not
/// followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// The type a workspace file is served as: its own when a browser can
/// only show it (pictures, PDF, plain text); text of any other kind (HTML,
/// JavaScript, SVG, XML, CSS…) as plain text; anything else as bytes.
fn served_type(guessed: &str) -> &'static str {
    let essence = guessed.split(';').next().unwrap_or_default().trim();
    match essence {
        "image/png" => "image/png",
        "image/jpeg" => "image/jpeg",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        "application/pdf" => "application/pdf",
        _ if essence.starts_with("text/")
            || essence.ends_with("+xml")
            || essence.ends_with("/xml")
            || essence.ends_with("/json")
            || essence.ends_with("javascript")
            || essence.ends_with("ecmascript") =>
        {
            "text/plain; charset=utf-8"
        }
        _ => "application/octet-stream",
    }
}

async fn download(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (_, ws, path) = file_target(&state, &user, &req).await?;
    let file = ws.open_read(&path).await?;
    let disposition = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::FilenameExt(header::ExtendedValue {
            charset: header::Charset::Ext("UTF-8".into()),
            language_tag: None,
            value: file.file_name.clone().into_bytes(),
        })],
    };
    // Read exactly the length seen at open, even if the agent grows the
    // file meanwhile.
    use tokio::io::AsyncReadExt;
    let body = tokio_util::io::ReaderStream::new(file.file.take(file.len));
    Ok(HttpResponse::Ok()
        .content_type(served_type(&file.content_type))
        .insert_header((header::CONTENT_DISPOSITION, disposition))
        // Whatever the agent wrote, it is never a page or a script of this
        // origin: no script runs in it, and it is never sniffed as one.
        .insert_header((header::CONTENT_SECURITY_POLICY, "sandbox"))
        .insert_header((header::REFERRER_POLICY, super::REFERRER_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .no_chunking(file.len)
        .streaming(body))
}

async fn put(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (session_id, ws, path) = file_target(&state, &user, &req).await?;
    if path.is_root() {
        return Err(ApiError::BadRequest(
            "Give the file a name: PUT /api/sessions/{id}/files/<path>.".into(),
        ));
    }
    let limits = limits(&state);
    let declared = check_declared_length(&req, limits.max_bytes)?;
    let size = ws.write_stream_sized(&path, body, limits, declared).await?;
    let entry = uploaded_entry(&ws, &path).await?;
    log::info!("session {session_id}: uploaded {path} ({size} bytes)");
    announce(
        &state,
        user.0.user_id(),
        &session_id,
        vec![path.as_str().to_string()],
    )
    .await;
    Ok(HttpResponse::Created().json(entry))
}

/// The listing entry of a file just written.
async fn uploaded_entry(ws: &Workspace, path: &RelPath) -> Result<FileEntry, ApiError> {
    let ws = ws.clone();
    let path = path.clone();
    web::block(move || -> Result<Option<FileEntry>, FileError> {
        let parent = match path.as_str().rsplit_once('/') {
            Some((dir, _)) => Workspace::clean_path(dir)?,
            None => RelPath::root(),
        };
        Ok(ws
            .list(&parent)?
            .into_iter()
            .find(|e| e.path == path.as_str()))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??
    .ok_or_else(|| ApiError::Internal("an uploaded file vanished".into()))
}

async fn multipart(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
    mut form: Multipart,
) -> Result<HttpResponse, ApiError> {
    let (session_id, ws) = workspace(&state, &user, &id).await?;
    let mut uploaded: Vec<FileEntry> = Vec::new();
    let received = receive_form(&mut form, &ws, limits(&state), &mut uploaded).await;
    if received.is_err() {
        // Read what the client is still sending, so it gets the answer
        // instead of a connection closed under it.
        drain(&mut form).await;
    }
    if !uploaded.is_empty() {
        log::info!("session {session_id}: uploaded {} file(s)", uploaded.len());
        announce(
            &state,
            user.0.user_id(),
            &session_id,
            uploaded.iter().map(|e| e.path.clone()).collect(),
        )
        .await;
    }
    received?;
    if uploaded.is_empty() {
        return Err(ApiError::BadRequest("The form has no `file` field.".into()));
    }
    Ok(HttpResponse::Created().json(uploaded))
}

/// Bytes of a refused form read and thrown away before answering; beyond
/// this the connection is closed instead.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

async fn drain(form: &mut Multipart) {
    let mut seen = 0;
    while let Some(Ok(mut field)) = form.next().await {
        while let Some(Ok(chunk)) = field.next().await {
            seen += chunk.len();
            if seen > MAX_DRAIN_BYTES {
                return;
            }
        }
    }
}

/// Store each `file` field of the form (into the folder of the `dir`
/// field that precedes it), adding each stored file to `uploaded`.
async fn receive_form(
    form: &mut Multipart,
    ws: &Workspace,
    limits: UploadLimits,
    uploaded: &mut Vec<FileEntry>,
) -> Result<(), ApiError> {
    let unreadable = |e: actix_multipart::MultipartError| {
        ApiError::BadRequest(format!("The upload form could not be read: {e}."))
    };
    let mut dir = RelPath::root();
    while let Some(field) = form.next().await {
        let mut field = field.map_err(unreadable)?;
        match field.name() {
            Some("dir") => {
                let mut bytes = Vec::new();
                while let Some(chunk) = field.next().await {
                    bytes.extend_from_slice(&chunk.map_err(unreadable)?);
                    if bytes.len() > crate::workspace::MAX_PATH_BYTES {
                        return Err(ApiError::BadRequest("The `dir` field is too long.".into()));
                    }
                }
                dir = Workspace::clean_path(&String::from_utf8_lossy(&bytes))?;
            }
            Some("file") => {
                let name = field
                    .content_disposition()
                    .and_then(|cd| cd.get_filename().map(str::to_string))
                    .ok_or_else(|| {
                        ApiError::BadRequest("Each `file` field needs a filename.".into())
                    })?;
                let path = dir.join(&Workspace::clean_path(&name)?)?;
                if path.is_root() {
                    return Err(ApiError::BadRequest("A file needs a name.".into()));
                }
                ws.write_stream(&path, field, limits).await?;
                uploaded.push(uploaded_entry(ws, &path).await?);
            }
            // Unknown fields are read and ignored.
            _ => {
                while let Some(chunk) = field.next().await {
                    chunk.map_err(unreadable)?;
                }
            }
        }
    }
    Ok(())
}

async fn delete(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (session_id, ws, path) = file_target(&state, &user, &req).await?;
    web::block(move || ws.delete(&path))
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))??;
    mark_changed(&state, &session_id).await;
    Ok(HttpResponse::NoContent().finish())
}

async fn audit(
    state: web::Data<AppState>,
    user: AuthUser,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let session = owned_session(&state, &user.0, &id).await?;
    let (rows, reverts) = state
        .db
        .run(move |c| {
            Ok((
                queries::list_tool_calls(c, &session.id)?,
                crate::db::checkpoints::reverts(c, &session.id)?,
            ))
        })
        .await?;
    let mut entries = rows
        .iter()
        .map(|row| row.audit().map(AuditRecord::ToolCall))
        .collect::<Result<Vec<AuditRecord>, _>>()?;
    entries.extend(reverts.into_iter().map(AuditRecord::Revert));
    // Both kinds carry RFC 3339 UTC times of one format: text order is
    // time order (the sort is stable for ties).
    entries.sort_by(|a, b| a.at().cmp(b.at()));
    Ok(HttpResponse::Ok().json(entries))
}

/// Register the routes under `/api` (called from the API scope).
pub fn routes(scope: actix_web::Scope) -> actix_web::Scope {
    scope
        .route("/sessions/{id}/files", web::get().to(list))
        .route("/sessions/{id}/files", web::post().to(multipart))
        .route("/sessions/{id}/files/{path:.*}", web::get().to(download))
        .route("/sessions/{id}/files/{path:.*}", web::put().to(put))
        .route("/sessions/{id}/files/{path:.*}", web::delete().to(delete))
        .route("/sessions/{id}/audit", web::get().to(audit))
}

#[cfg(test)]
mod tests {
    use super::percent_decode;

    #[test]
    fn workspace_files_are_served_as_types_that_cannot_run() {
        for (guessed, served) in [
            ("image/png", "image/png"),
            ("application/pdf", "application/pdf"),
            ("text/plain", "text/plain; charset=utf-8"),
            ("text/csv", "text/plain; charset=utf-8"),
            ("text/html", "text/plain; charset=utf-8"),
            ("text/javascript", "text/plain; charset=utf-8"),
            ("application/javascript", "text/plain; charset=utf-8"),
            ("image/svg+xml", "text/plain; charset=utf-8"),
            ("application/xhtml+xml", "text/plain; charset=utf-8"),
            ("application/json", "text/plain; charset=utf-8"),
            ("application/wasm", "application/octet-stream"),
            ("application/x-sh", "application/octet-stream"),
            ("application/octet-stream", "application/octet-stream"),
        ] {
            assert_eq!(super::served_type(guessed), served, "{guessed}");
        }
    }

    #[test]
    fn percent_decoding_finishes_what_the_router_left() {
        for (raw, want) in [
            ("a%2Fb", Some("a/b")),
            ("..%2f..%2fetc", Some("../../etc")),
            ("100%25", Some("100%")),
            ("a%2Bb", Some("a+b")),
            ("50%", Some("50%")),
            ("%zz", Some("%zz")),
            ("%C3%A9t%C3%A9", Some("été")),
            ("%ff", None),
        ] {
            assert_eq!(percent_decode(raw).as_deref(), want, "{raw}");
        }
    }
}
