//! Undo's log in the database: one row per checkpoint and one per path it
//! saw change (DESIGN.md §4). The contents live in the session's object
//! store (`crate::undo`); these rows say which object each path held
//! before and after each step, which is all a revert, a diff or the
//! retention needs.

use super::DbConn;
use diesel::prelude::*;

use super::queries::now;
use super::schema::{checkpoint_changes, checkpoints, tool_calls};
use super::DbError;
use crate::protocol::{CallId, CheckpointInfo};
use crate::undo::{Change, Entry, ObjectId};

/// What a checkpoint was taken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointKind {
    /// Before a tool call; the rows are what the call changed.
    Exec(CallId),
    /// A restore, with its own id so it can be undone too.
    Restore {
        restore_id: CallId,
        reverted: CallId,
        by: String,
    },
    /// Changes made between commands (uploads, deletes through the file
    /// routes), found by the next checkpoint.
    Outside,
}

/// A checkpoint to store with the agent's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCheckpoint {
    pub kind: CheckpointKind,
    pub changes: Vec<Change>,
}

/// Rows per insert: SQLite caps the variables of one statement.
const INSERT_BATCH: usize = 1000;

#[derive(Insertable)]
#[diesel(table_name = checkpoint_changes)]
struct ChangeRow {
    checkpoint_id: i32,
    path: String,
    before: Option<String>,
    after: Option<String>,
    before_object: Option<String>,
    after_object: Option<String>,
}

fn entry_json(entry: &Option<Entry>) -> Result<Option<String>, DbError> {
    entry
        .as_ref()
        .map(|e| serde_json::to_string(e).map_err(|e| DbError::Corrupt(e.to_string())))
        .transpose()
}

fn entry_from(json: Option<String>) -> Result<Option<Entry>, DbError> {
    json.map(|j| {
        serde_json::from_str(&j)
            .map_err(|e| DbError::Corrupt(format!("a checkpoint entry does not parse: {e}")))
    })
    .transpose()
}

/// Stores a checkpoint and its rows (inside the caller's transaction).
pub fn insert(c: &mut DbConn, session_id: &str, checkpoint: &NewCheckpoint) -> Result<(), DbError> {
    let (kind, call_id, reverted, by) = match &checkpoint.kind {
        CheckpointKind::Exec(call) => ("exec", Some(call.as_str()), None, None),
        CheckpointKind::Restore {
            restore_id,
            reverted,
            by,
        } => (
            "restore",
            Some(restore_id.as_str()),
            Some(reverted.as_str()),
            Some(by.as_str()),
        ),
        CheckpointKind::Outside => ("outside", None, None, None),
    };
    let id: i32 = diesel::insert_into(checkpoints::table)
        .values((
            checkpoints::session_id.eq(session_id),
            checkpoints::call_id.eq(call_id),
            checkpoints::kind.eq(kind),
            checkpoints::reverted_call_id.eq(reverted),
            checkpoints::by_user.eq(by),
            checkpoints::created_at.eq(now()),
        ))
        .returning(checkpoints::id)
        .get_result(c)?;
    let object = |e: &Option<Entry>| {
        e.as_ref()
            .and_then(|e| e.object.as_ref())
            .map(|o| o.as_str().to_owned())
    };
    for batch in checkpoint.changes.chunks(INSERT_BATCH) {
        let rows = batch
            .iter()
            .map(|ch| {
                Ok(ChangeRow {
                    checkpoint_id: id,
                    path: ch.path.clone(),
                    before: entry_json(&ch.before)?,
                    after: entry_json(&ch.after)?,
                    before_object: object(&ch.before),
                    after_object: object(&ch.after),
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        // A batch insert is backend-specific SQL: run it on the backend's
        // own connection.
        let insert = diesel::insert_into(checkpoint_changes::table).values(&rows);
        match c {
            DbConn::Sqlite(c) => insert.execute(c)?,
            DbConn::Postgres(c) => insert.execute(c)?,
        };
    }
    Ok(())
}

/// A checkpoint row as looked up by call.
struct Found {
    id: i32,
    dropped: bool,
}

/// The session's checkpoint taken for `call_id` (a tool call or a
/// restore).
fn find(c: &mut DbConn, session_id: &str, call_id: &str) -> Result<Option<Found>, DbError> {
    Ok(checkpoints::table
        .filter(checkpoints::session_id.eq(session_id))
        .filter(checkpoints::call_id.eq(call_id))
        .select((checkpoints::id, checkpoints::dropped))
        .first::<(i32, bool)>(c)
        .optional()?
        .map(|(id, dropped)| Found { id, dropped }))
}

/// Why a call has no usable checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// No call of this session has that id.
    Unknown,
    /// The call was judged read-only and changed nothing.
    None,
    /// Retention dropped it.
    Dropped,
}

fn missing(c: &mut DbConn, session_id: &str, call_id: &str) -> Result<Missing, DbError> {
    let known = tool_calls::table
        .filter(tool_calls::session_id.eq(session_id))
        .filter(tool_calls::call_id.eq(call_id))
        .count()
        .get_result::<i64>(c)?
        > 0;
    Ok(if known {
        Missing::None
    } else {
        Missing::Unknown
    })
}

type RowTuple = (String, Option<String>, Option<String>);

fn to_change((path, before, after): RowTuple) -> Result<Change, DbError> {
    Ok(Change {
        path,
        before: entry_from(before)?,
        after: entry_from(after)?,
    })
}

/// Every change from the checkpoint of `call_id` on, in the order they
/// happened (checkpoint, then path): what a revert to just before that
/// call must undo.
pub fn since(
    c: &mut DbConn,
    session_id: &str,
    call_id: &str,
) -> Result<Result<Vec<Change>, Missing>, DbError> {
    let Some(found) = find(c, session_id, call_id)? else {
        return Ok(Err(missing(c, session_id, call_id)?));
    };
    if found.dropped {
        return Ok(Err(Missing::Dropped));
    }
    let rows: Vec<RowTuple> = checkpoint_changes::table
        .inner_join(checkpoints::table)
        .filter(checkpoints::session_id.eq(session_id))
        .filter(checkpoints::id.ge(found.id))
        .order((checkpoints::id, checkpoint_changes::path))
        .select((
            checkpoint_changes::path,
            checkpoint_changes::before,
            checkpoint_changes::after,
        ))
        .load(c)?;
    Ok(Ok(rows
        .into_iter()
        .map(to_change)
        .collect::<Result<_, _>>()?))
}

/// What `call_id` changed, in path order; `dropped` when its contents may
/// be gone.
pub fn of_call(
    c: &mut DbConn,
    session_id: &str,
    call_id: &str,
) -> Result<Result<(bool, Vec<Change>), Missing>, DbError> {
    let Some(found) = find(c, session_id, call_id)? else {
        return Ok(Err(missing(c, session_id, call_id)?));
    };
    let rows: Vec<RowTuple> = checkpoint_changes::table
        .filter(checkpoint_changes::checkpoint_id.eq(found.id))
        .order(checkpoint_changes::path)
        .select((
            checkpoint_changes::path,
            checkpoint_changes::before,
            checkpoint_changes::after,
        ))
        .load(c)?;
    Ok(Ok((
        found.dropped,
        rows.into_iter().map(to_change).collect::<Result<_, _>>()?,
    )))
}

/// How many paths each of the session's checkpoints logged, in one query.
fn change_counts(
    c: &mut DbConn,
    session_id: &str,
) -> Result<std::collections::HashMap<i32, usize>, DbError> {
    let rows: Vec<(i32, i64)> = checkpoint_changes::table
        .inner_join(checkpoints::table)
        .filter(checkpoints::session_id.eq(session_id))
        .group_by(checkpoint_changes::checkpoint_id)
        .select((checkpoint_changes::checkpoint_id, diesel::dsl::count_star()))
        .load(c)?;
    Ok(rows
        .into_iter()
        .map(|(id, n)| (id, usize::try_from(n).unwrap_or(0)))
        .collect())
}

/// The session's checkpoints for calls and restores, oldest first.
pub fn list(c: &mut DbConn, session_id: &str) -> Result<Vec<CheckpointInfo>, DbError> {
    let rows: Vec<(i32, Option<String>, String, bool, String)> = checkpoints::table
        .filter(checkpoints::session_id.eq(session_id))
        .filter(checkpoints::kind.ne("outside"))
        .order(checkpoints::id)
        .select((
            checkpoints::id,
            checkpoints::call_id,
            checkpoints::kind,
            checkpoints::dropped,
            checkpoints::created_at,
        ))
        .load(c)?;
    let counts = change_counts(c, session_id)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, call_id, kind, dropped, created_at) in rows {
        out.push(CheckpointInfo {
            call_id: CallId::from(call_id.unwrap_or_default()),
            kind,
            changes: counts.get(&id).copied().unwrap_or(0),
            dropped,
            created_at,
        });
    }
    Ok(out)
}

/// How many checkpoints retention drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retain {
    /// All but the newest `n` (calls and restores).
    Newest(usize),
    /// The oldest one still kept (the store is over `undo.max_mb`).
    DropOldest,
}

/// What retention dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Dropped {
    /// The calls (and restores) that can no longer be reverted.
    pub calls: Vec<CallId>,
    /// Objects no kept checkpoint refers to any more (the workspace may
    /// still hold some: the caller keeps those).
    pub unreferenced: Vec<ObjectId>,
}

/// Drops the oldest checkpoints by `retain`, with the between-commands
/// ones older than the oldest kept, in one transaction.
pub fn drop_oldest(c: &mut DbConn, session_id: &str, retain: Retain) -> Result<Dropped, DbError> {
    c.transaction(|c| {
        let live: Vec<(i32, Option<String>, String)> = checkpoints::table
            .filter(checkpoints::session_id.eq(session_id))
            .filter(checkpoints::dropped.eq(false))
            .order(checkpoints::id)
            .select((checkpoints::id, checkpoints::call_id, checkpoints::kind))
            .load(c)?;
        let counted: Vec<&(i32, Option<String>, String)> = live
            .iter()
            .filter(|(_, _, kind)| kind != "outside")
            .collect();
        let drop_count = match retain {
            Retain::Newest(n) => counted.len().saturating_sub(n),
            Retain::DropOldest => counted.len().min(1),
        };
        if drop_count == 0 {
            return Ok(Dropped::default());
        }
        // Everything up to the last dropped counted checkpoint, and the
        // between-commands ones before the first kept.
        let limit = match counted.get(drop_count) {
            Some((first_kept, _, _)) => *first_kept,
            None => i32::MAX,
        };
        let doomed: Vec<i32> = live
            .iter()
            .filter(|(id, _, _)| *id < limit)
            .map(|(id, _, _)| *id)
            .collect();
        let calls = live
            .iter()
            .filter(|(id, _, kind)| *id < limit && kind != "outside")
            .filter_map(|(_, call, _)| call.clone().map(CallId::from))
            .collect();
        diesel::update(checkpoints::table.filter(checkpoints::id.eq_any(&doomed)))
            .set(checkpoints::dropped.eq(true))
            .execute(c)?;
        let held: Vec<(Option<String>, Option<String>)> = checkpoint_changes::table
            .filter(checkpoint_changes::checkpoint_id.eq_any(&doomed))
            .select((
                checkpoint_changes::before_object,
                checkpoint_changes::after_object,
            ))
            .load(c)?;
        let mut candidates: Vec<String> = held
            .into_iter()
            .flat_map(|(a, b)| [a, b])
            .flatten()
            .collect();
        candidates.sort();
        candidates.dedup();
        let mut unreferenced = Vec::new();
        for object in candidates {
            let still = checkpoint_changes::table
                .inner_join(checkpoints::table)
                .filter(checkpoints::session_id.eq(session_id))
                .filter(checkpoints::dropped.eq(false))
                .filter(
                    checkpoint_changes::before_object
                        .eq(&object)
                        .or(checkpoint_changes::after_object.eq(&object)),
                )
                .count()
                .get_result::<i64>(c)?
                > 0;
            if !still {
                unreferenced.extend(ObjectId::parse(&object));
            }
        }
        Ok(Dropped {
            calls,
            unreferenced,
        })
    })
}

/// Every revert of the session, for the audit: (restore id, reverted
/// call, who, when, paths changed).
pub fn reverts(
    c: &mut DbConn,
    session_id: &str,
) -> Result<Vec<crate::protocol::RevertAudit>, DbError> {
    type Row = (i32, Option<String>, Option<String>, Option<String>, String);
    let rows: Vec<Row> = checkpoints::table
        .filter(checkpoints::session_id.eq(session_id))
        .filter(checkpoints::kind.eq("restore"))
        .order(checkpoints::id)
        .select((
            checkpoints::id,
            checkpoints::call_id,
            checkpoints::reverted_call_id,
            checkpoints::by_user,
            checkpoints::created_at,
        ))
        .load(c)?;
    let counts = change_counts(c, session_id)?;
    let mut out = Vec::with_capacity(rows.len());
    for (id, restore_id, reverted, by, at) in rows {
        out.push(crate::protocol::RevertAudit {
            call_id: CallId::from(reverted.unwrap_or_default()),
            restore_id: CallId::from(restore_id.unwrap_or_default()),
            by: by.unwrap_or_default(),
            at,
            paths: counts.get(&id).copied().unwrap_or(0),
        });
    }
    Ok(out)
}
