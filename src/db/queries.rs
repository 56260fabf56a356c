//! Row types and the queries over them, as free functions taking a
//! connection. Run them through `Db::run`, never on an async thread.

use std::collections::HashMap;

use super::DbConn;
use chrono::{SecondsFormat, Utc};
use diesel::prelude::*;

use super::schema::{chat_sessions, events, logins, meta, tool_calls, users};
use super::DbError;
use crate::protocol::{
    ApprovalMode, AuditEntry, Risk, ServerEvent, SessionId, SessionSummary, Tool,
};

/// Now as RFC 3339 with milliseconds, which sorts as text.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

// ------------------------------------------------------------------ users

/// A user id as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UserId(pub i32);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i32,
    pub username: String,
    pub password_hash: String,
    /// The mode the user's new sessions start with.
    #[diesel(deserialize_as = String)]
    pub approval_mode: ApprovalMode,
    pub created_at: String,
}

impl User {
    pub fn user_id(&self) -> UserId {
        UserId(self.id)
    }

    pub fn default_mode(&self) -> ApprovalMode {
        self.approval_mode
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub username: &'a str,
    pub password_hash: &'a str,
    pub approval_mode: &'a str,
    pub created_at: String,
}

pub fn count_users(conn: &mut DbConn) -> Result<i64, DbError> {
    Ok(users::table.count().get_result(conn)?)
}

pub fn create_user(
    conn: &mut DbConn,
    username: &str,
    password_hash: &str,
    mode: ApprovalMode,
) -> Result<User, DbError> {
    diesel::insert_into(users::table)
        .values(NewUser {
            username,
            password_hash,
            approval_mode: mode.as_str(),
            created_at: now(),
        })
        .execute(conn)?;
    find_user(conn, username)?
        .ok_or_else(|| DbError::Corrupt(format!("user {username} vanished after it was made")))
}

pub fn find_user(conn: &mut DbConn, username: &str) -> Result<Option<User>, DbError> {
    Ok(users::table
        .filter(users::username.eq(username))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn list_users(conn: &mut DbConn) -> Result<Vec<User>, DbError> {
    Ok(users::table
        .order(users::username)
        .select(User::as_select())
        .load(conn)?)
}

/// Set a new password and end every login of the user. Returns false when
/// there is no such user.
pub fn set_password(
    conn: &mut DbConn,
    username: &str,
    password_hash: &str,
) -> Result<bool, DbError> {
    conn.transaction(|conn| {
        let Some(user) = find_user(conn, username)? else {
            return Ok(false);
        };
        diesel::update(users::table.find(user.id))
            .set(users::password_hash.eq(password_hash))
            .execute(conn)?;
        diesel::delete(logins::table.filter(logins::user_id.eq(user.id))).execute(conn)?;
        Ok(true)
    })
}

/// Set the approval mode the user's new sessions start with.
pub fn set_default_mode(
    conn: &mut DbConn,
    user: UserId,
    mode: ApprovalMode,
) -> Result<(), DbError> {
    diesel::update(users::table.find(user.0))
        .set(users::approval_mode.eq(mode.as_str()))
        .execute(conn)?;
    Ok(())
}

/// Remove a user with their logins and sessions; returns the removed
/// sessions' ids (their containers and workspaces go too) or `None` when
/// there is no such user.
pub fn remove_user(conn: &mut DbConn, username: &str) -> Result<Option<Vec<String>>, DbError> {
    conn.transaction(|conn| {
        let Some(user) = find_user(conn, username)? else {
            return Ok(None);
        };
        let ids = chat_sessions::table
            .filter(chat_sessions::user_id.eq(user.id))
            .select(chat_sessions::id)
            .load::<String>(conn)?;
        diesel::delete(users::table.find(user.id)).execute(conn)?;
        Ok(Some(ids))
    })
}

// ----------------------------------------------------------------- logins

#[derive(Insertable)]
#[diesel(table_name = logins)]
struct NewLogin<'a> {
    token_hash: &'a str,
    user_id: i32,
    created_at: String,
    expires_at: String,
}

pub fn create_login(
    conn: &mut DbConn,
    token_hash: &str,
    user: UserId,
    expires_at: String,
) -> Result<(), DbError> {
    diesel::insert_into(logins::table)
        .values(NewLogin {
            token_hash,
            user_id: user.0,
            created_at: now(),
            expires_at,
        })
        .execute(conn)?;
    Ok(())
}

/// The user a live login token belongs to. Expired logins are swept on the
/// way.
pub fn user_for_login(conn: &mut DbConn, token_hash: &str) -> Result<Option<User>, DbError> {
    let now = now();
    diesel::delete(logins::table.filter(logins::expires_at.le(&now))).execute(conn)?;
    Ok(logins::table
        .inner_join(users::table)
        .filter(logins::token_hash.eq(token_hash))
        .select(User::as_select())
        .first(conn)
        .optional()?)
}

pub fn delete_login(conn: &mut DbConn, token_hash: &str) -> Result<(), DbError> {
    diesel::delete(logins::table.find(token_hash)).execute(conn)?;
    Ok(())
}

// --------------------------------------------------------------- sessions

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = chat_sessions)]
pub struct ChatSession {
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub id: SessionId,
    pub user_id: i32,
    pub title: String,
    pub model: String,
    #[diesel(deserialize_as = String, serialize_as = String)]
    pub approval_mode: ApprovalMode,
    pub created_at: String,
    pub updated_at: String,
}

impl ChatSession {
    pub fn mode(&self) -> ApprovalMode {
        self.approval_mode
    }

    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            id: self.id.clone(),
            title: self.title.clone(),
            model: self.model.clone(),
            approval_mode: self.mode(),
            created_at: self.created_at.clone(),
            updated_at: self.updated_at.clone(),
        }
    }
}

/// The title a session has until it is renamed or its first message names
/// it.
pub const UNTITLED: &str = "New chat";

pub fn create_session(
    conn: &mut DbConn,
    user: UserId,
    title: Option<&str>,
    model: &str,
    mode: ApprovalMode,
) -> Result<ChatSession, DbError> {
    let now = now();
    let row = ChatSession {
        id: SessionId::random(),
        user_id: user.0,
        title: title
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(UNTITLED)
            .to_string(),
        model: model.to_string(),
        approval_mode: mode,
        created_at: now.clone(),
        updated_at: now,
    };
    diesel::insert_into(chat_sessions::table)
        .values(row.clone())
        .execute(conn)?;
    Ok(row)
}

/// The user's sessions, most recently active first.
pub fn list_sessions(conn: &mut DbConn, user: UserId) -> Result<Vec<ChatSession>, DbError> {
    Ok(chat_sessions::table
        .filter(chat_sessions::user_id.eq(user.0))
        .order((
            chat_sessions::updated_at.desc(),
            chat_sessions::created_at.desc(),
        ))
        .select(ChatSession::as_select())
        .load(conn)?)
}

/// A session, only if `user` owns it: another user's session is treated
/// exactly like a missing one.
pub fn get_session(
    conn: &mut DbConn,
    user: UserId,
    id: &str,
) -> Result<Option<ChatSession>, DbError> {
    Ok(chat_sessions::table
        .filter(chat_sessions::id.eq(id))
        .filter(chat_sessions::user_id.eq(user.0))
        .select(ChatSession::as_select())
        .first(conn)
        .optional()?)
}

/// A session by id alone, for the actors that already hold a checked id.
pub fn load_session(conn: &mut DbConn, id: &str) -> Result<Option<ChatSession>, DbError> {
    Ok(chat_sessions::table
        .find(id)
        .select(ChatSession::as_select())
        .first(conn)
        .optional()?)
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = chat_sessions)]
pub struct SessionChanges {
    pub title: Option<String>,
    pub model: Option<String>,
    pub approval_mode: Option<String>,
    pub updated_at: Option<String>,
}

pub fn update_session(
    conn: &mut DbConn,
    id: &str,
    changes: SessionChanges,
) -> Result<Option<ChatSession>, DbError> {
    diesel::update(chat_sessions::table.find(id))
        .set(&changes)
        .execute(conn)?;
    load_session(conn, id)
}

pub fn delete_session(conn: &mut DbConn, id: &str) -> Result<bool, DbError> {
    Ok(diesel::delete(chat_sessions::table.find(id)).execute(conn)? > 0)
}

// ----------------------------------------------------------------- events

#[derive(Insertable)]
#[diesel(table_name = events)]
struct NewEvent<'a> {
    session_id: &'a str,
    kind: &'a str,
    payload: String,
    created_at: String,
}

/// Append events to the session's log in one transaction and mark the
/// session active.
pub fn append_events(
    conn: &mut DbConn,
    session_id: &str,
    batch: &[ServerEvent],
) -> Result<(), DbError> {
    conn.transaction(|conn| {
        let now = now();
        for event in batch {
            let payload =
                serde_json::to_string(event).map_err(|e| DbError::Corrupt(e.to_string()))?;
            diesel::insert_into(events::table)
                .values(NewEvent {
                    session_id,
                    kind: event.kind(),
                    payload,
                    created_at: now.clone(),
                })
                .execute(conn)?;
        }
        diesel::update(chat_sessions::table.find(session_id))
            .set(chat_sessions::updated_at.eq(&now))
            .execute(conn)?;
        Ok(())
    })
}

/// The session's stored events in order. A row that no longer parses (a
/// future version's event) is skipped with a warning rather than hiding the
/// whole conversation.
pub fn list_events(conn: &mut DbConn, session_id: &str) -> Result<Vec<ServerEvent>, DbError> {
    let rows: Vec<String> = events::table
        .filter(events::session_id.eq(session_id))
        .order(events::id)
        .select(events::payload)
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|p| match serde_json::from_str(&p) {
            Ok(e) => Some(e),
            Err(e) => {
                log::warn!("skipping unreadable stored event in session {session_id}: {e}");
                None
            }
        })
        .collect())
}

/// Up to `limit` stored events of a session that come before event
/// `before` (or the latest ones), oldest first: the bounded `history` and
/// the REST pages behind it. Reads one row more than it returns, to know
/// whether older ones exist.
pub fn events_page(
    conn: &mut DbConn,
    session_id: &str,
    before: Option<i64>,
    limit: usize,
) -> Result<crate::protocol::EventPage, DbError> {
    let mut query = events::table
        .filter(events::session_id.eq(session_id))
        .order(events::id.desc())
        .select((events::id, events::payload))
        .limit(i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX))
        .into_boxed();
    if let Some(before) = before {
        let before = i32::try_from(before).unwrap_or(i32::MAX);
        query = query.filter(events::id.lt(before));
    }
    let mut rows: Vec<(i32, String)> = query.load(conn)?;
    let more = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    let first = rows.first().map(|(id, _)| i64::from(*id));
    let events = rows
        .into_iter()
        .filter_map(|(_, p)| match serde_json::from_str(&p) {
            Ok(e) => Some(e),
            Err(e) => {
                log::warn!("skipping unreadable stored event in session {session_id}: {e}");
                None
            }
        })
        .collect();
    Ok(crate::protocol::EventPage {
        events,
        more,
        before: first,
    })
}

/// How many sessions a user has (for `limits.sessions`).
pub fn count_sessions(conn: &mut DbConn, user: UserId) -> Result<i64, DbError> {
    Ok(chat_sessions::table
        .filter(chat_sessions::user_id.eq(user.0))
        .count()
        .get_result(conn)?)
}

// ------------------------------------------------------------- tool calls

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tool_calls)]
pub struct ToolCallRow {
    pub call_id: String,
    pub session_id: String,
    pub turn_id: String,
    pub tool: String,
    pub code: String,
    pub risk_level: String,
    pub risk_reasons: String,
    pub approval_mode: String,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<String>,
    pub exit_code: Option<i64>,
    pub result_for_model: Option<String>,
    pub created_at: String,
}

pub(crate) fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A stored enum's text back as the enum. Text that names no variant is
/// corrupt data, reported as such: never quietly read as some default.
fn enum_parse<T: serde::de::DeserializeOwned>(column: &str, s: &str) -> Result<T, DbError> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
        DbError::Corrupt(format!(
            "{column} holds `{s}`, which IronClaw does not know"
        ))
    })
}

/// The error of a text column that names no variant of its enum.
#[derive(Debug, thiserror::Error)]
#[error("a stored {column} is `{value}`, which IronClaw does not know")]
pub struct UnknownVariant {
    column: &'static str,
    value: String,
}

impl TryFrom<String> for ApprovalMode {
    type Error = UnknownVariant;

    fn try_from(value: String) -> Result<Self, UnknownVariant> {
        ApprovalMode::parse(&value).ok_or(UnknownVariant {
            column: "approval mode",
            value,
        })
    }
}

impl From<SessionId> for String {
    fn from(id: SessionId) -> String {
        id.as_str().to_string()
    }
}

impl From<ApprovalMode> for String {
    fn from(mode: ApprovalMode) -> String {
        mode.as_str().to_string()
    }
}

impl ToolCallRow {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        session_id: &str,
        turn_id: &str,
        call_id: &str,
        tool: Tool,
        code: &str,
        risk: &Risk,
        mode: ApprovalMode,
    ) -> Self {
        ToolCallRow {
            call_id: call_id.to_string(),
            session_id: session_id.to_string(),
            turn_id: turn_id.to_string(),
            tool: tool.as_str().to_string(),
            code: code.to_string(),
            risk_level: enum_text(&risk.level),
            risk_reasons: serde_json::to_string(&risk.reasons).unwrap_or_else(|_| "[]".into()),
            approval_mode: mode.as_str().to_string(),
            decision: None,
            decided_by: None,
            decided_at: None,
            exit_code: None,
            result_for_model: None,
            created_at: now(),
        }
    }

    /// The row as the audit route shows it; a column that holds unknown
    /// text is an error.
    pub fn audit(&self) -> Result<AuditEntry, DbError> {
        Ok(AuditEntry {
            call_id: self.call_id.clone().into(),
            turn_id: self.turn_id.clone().into(),
            tool: enum_parse("tool", &self.tool)?,
            code: self.code.clone(),
            risk: Risk {
                level: enum_parse("risk level", &self.risk_level)?,
                reasons: serde_json::from_str(&self.risk_reasons)
                    .map_err(|e| DbError::Corrupt(format!("risk reasons: {e}")))?,
            },
            approval_mode: enum_parse("approval mode", &self.approval_mode)?,
            decision: self
                .decision
                .as_deref()
                .map(|d| enum_parse("decision", d))
                .transpose()?,
            decided_by: self
                .decided_by
                .as_deref()
                .map(|d| enum_parse("decided by", d))
                .transpose()?,
            decided_at: self.decided_at.clone(),
            exit_code: self.exit_code,
            created_at: self.created_at.clone(),
        })
    }
}

pub fn list_tool_calls(conn: &mut DbConn, session_id: &str) -> Result<Vec<ToolCallRow>, DbError> {
    Ok(tool_calls::table
        .filter(tool_calls::session_id.eq(session_id))
        .order((tool_calls::created_at, tool_calls::call_id))
        .select(ToolCallRow::as_select())
        .load(conn)?)
}

/// What each finished tool call handed back to the model, by call id.
pub fn tool_results(
    conn: &mut DbConn,
    session_id: &str,
) -> Result<HashMap<String, String>, DbError> {
    let rows: Vec<(String, Option<String>)> = tool_calls::table
        .filter(tool_calls::session_id.eq(session_id))
        .select((tool_calls::call_id, tool_calls::result_for_model))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, r)| r.map(|r| (id, r)))
        .collect())
}

// ------------------------------------------------------------------- meta

/// This installation's instance id, created on first use. Containers are
/// labelled with it so a restart can reap its own leftovers without touching
/// another installation's on the same Docker engine.
pub fn instance_id(conn: &mut DbConn) -> Result<String, DbError> {
    const KEY: &str = "instance_id";
    if let Some(v) = meta::table
        .find(KEY)
        .select(meta::value)
        .first::<String>(conn)
        .optional()?
    {
        return Ok(v);
    }
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    diesel::insert_into(meta::table)
        .values((meta::key.eq(KEY), meta::value.eq(&id)))
        .execute(conn)?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LogLevel;

    fn conn() -> (tempfile::TempDir, DbConn) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::db::connect(
            crate::db::test_postgres(dir.path()).unwrap_or_else(|| dir.path().join("t.db").into()),
        )
        .unwrap();
        crate::db::migrate(&mut c).unwrap();
        (dir, c)
    }

    #[test]
    fn sessions_are_private_to_their_owner() {
        let (_d, mut c) = conn();
        let a = create_user(&mut c, "a", "h", ApprovalMode::Risky).unwrap();
        let b = create_user(&mut c, "b", "h", ApprovalMode::Risky).unwrap();
        let s = create_session(&mut c, a.user_id(), None, "m", ApprovalMode::Risky).unwrap();
        assert!(get_session(&mut c, a.user_id(), &s.id).unwrap().is_some());
        assert!(get_session(&mut c, b.user_id(), &s.id).unwrap().is_none());
        assert!(list_sessions(&mut c, b.user_id()).unwrap().is_empty());
    }

    #[test]
    fn events_round_trip_in_order_and_cascade_with_the_session() {
        let (_d, mut c) = conn();
        let a = create_user(&mut c, "a", "h", ApprovalMode::Risky).unwrap();
        let s = create_session(&mut c, a.user_id(), Some("t"), "m", ApprovalMode::Risky).unwrap();
        let evs = vec![
            ServerEvent::UserMessage {
                turn_id: "t1".into(),
                text: "hi".into(),
                client_id: None,
            },
            ServerEvent::log(LogLevel::Info, crate::protocol::LogSource::Agent, "x"),
        ];
        append_events(&mut c, &s.id, &evs).unwrap();
        assert_eq!(list_events(&mut c, &s.id).unwrap(), evs);
        assert!(delete_session(&mut c, &s.id).unwrap());
        assert!(list_events(&mut c, &s.id).unwrap().is_empty());
    }

    #[test]
    fn instance_id_is_stable() {
        let (_d, mut c) = conn();
        let a = instance_id(&mut c).unwrap();
        assert_eq!(a, instance_id(&mut c).unwrap());
    }
}
