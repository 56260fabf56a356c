//! The agent's writes. Each thing that happens in a turn is one named
//! operation, a [`Record`], stored with its events in one transaction by
//! [`write`]: the event log and the tool-call rows never disagree, and the
//! agent builds no queries of its own.
//!
//! A record also says what the model was told (a tool call's result), so
//! the conversation the agent keeps in memory can be folded from the very
//! records it stores, exactly as a restart folds it from the rows.

use super::DbConn;
use diesel::prelude::*;

use super::checkpoints::{self, NewCheckpoint};
use super::queries::{self, ToolCallRow};
use super::schema::{chat_sessions, tool_calls};
use super::DbError;
use crate::protocol::{
    ApprovalMode, CallId, DecidedBy, Resolution, Risk, ServerEvent, Tool, TurnId,
};

/// A tool call as the audit keeps it when it is announced.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToolCall {
    pub turn_id: TurnId,
    pub call_id: CallId,
    pub tool: Tool,
    pub code: String,
    pub risk: Risk,
    /// The session's approval mode when the call was reviewed.
    pub mode: ApprovalMode,
}

/// One named write of the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Events that touch no other row: logs, errors, uploads, a turn's end.
    Events(Vec<ServerEvent>),
    /// A turn begins with the person's message; an untitled session takes
    /// its title from it.
    StartTurn { message: ServerEvent, text: String },
    /// A tool call is announced (its `tool_call` event, and an
    /// `approval_request` when the person is asked).
    StartToolCall {
        call: NewToolCall,
        events: Vec<ServerEvent>,
    },
    /// The call's approval is settled. A call that will not run also gets
    /// its result for the model here.
    SettleDecision {
        call_id: CallId,
        decision: Resolution,
        by: DecidedBy,
        result: Option<String>,
        events: Vec<ServerEvent>,
    },
    /// A command finished: its coalesced output (stored, not sent again:
    /// it went out live), its exit, what the model is told, and the
    /// checkpoint of what it changed.
    FinishExec {
        call_id: CallId,
        exit_code: Option<i64>,
        result: String,
        output: Vec<ServerEvent>,
        events: Vec<ServerEvent>,
        checkpoints: Vec<NewCheckpoint>,
    },
    /// The person put the workspace back (`workspace_restored`), logged
    /// as a checkpoint of its own.
    Restore {
        checkpoints: Vec<NewCheckpoint>,
        events: Vec<ServerEvent>,
    },
}

impl Record {
    /// The events to send to the sockets once the record is stored, in
    /// order.
    pub fn events(&self) -> &[ServerEvent] {
        match self {
            Record::Events(events)
            | Record::StartToolCall { events, .. }
            | Record::SettleDecision { events, .. }
            | Record::FinishExec { events, .. }
            | Record::Restore { events, .. } => events,
            Record::StartTurn { message, .. } => std::slice::from_ref(message),
        }
    }

    /// The checkpoints the record logs.
    pub fn checkpoints(&self) -> &[NewCheckpoint] {
        match self {
            Record::FinishExec { checkpoints, .. } | Record::Restore { checkpoints, .. } => {
                checkpoints
            }
            Record::Events(_)
            | Record::StartTurn { .. }
            | Record::StartToolCall { .. }
            | Record::SettleDecision { .. } => &[],
        }
    }

    /// Every event the record stores, in the order the log keeps them.
    pub fn stored_events(&self) -> impl Iterator<Item = &ServerEvent> {
        let output: &[ServerEvent] = match self {
            Record::FinishExec { output, .. } => output,
            Record::Events(_)
            | Record::StartTurn { .. }
            | Record::StartToolCall { .. }
            | Record::SettleDecision { .. }
            | Record::Restore { .. } => &[],
        };
        output.iter().chain(self.events()).filter(|e| e.is_stored())
    }

    /// What the model is told about a call, when this record settles it.
    pub fn result(&self) -> Option<(&CallId, &str)> {
        match self {
            Record::SettleDecision {
                call_id,
                result: Some(result),
                ..
            }
            | Record::FinishExec {
                call_id, result, ..
            } => Some((call_id, result)),
            Record::Events(_)
            | Record::StartTurn { .. }
            | Record::StartToolCall { .. }
            | Record::Restore { .. }
            | Record::SettleDecision { result: None, .. } => None,
        }
    }
}

/// Characters of the first message used as a session's title.
const TITLE_CHARS: usize = 60;

/// The title a session takes from its first message: whitespace folded,
/// cut at [`TITLE_CHARS`].
pub fn title_from(text: &str) -> String {
    let title: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if title.chars().count() > TITLE_CHARS {
        format!("{}…", title.chars().take(TITLE_CHARS).collect::<String>())
    } else {
        title
    }
}

/// Store `record` for `session_id` in one transaction.
pub fn write(conn: &mut DbConn, session_id: &str, record: &Record) -> Result<(), DbError> {
    conn.transaction(|c| {
        match record {
            Record::Events(_) => {}
            Record::StartTurn { text, .. } => start_turn(c, session_id, text)?,
            Record::StartToolCall { call, .. } => start_tool_call(c, session_id, call)?,
            Record::SettleDecision {
                call_id,
                decision,
                by,
                result,
                ..
            } => settle_decision(c, call_id, *decision, *by, result.as_deref())?,
            Record::FinishExec {
                call_id,
                exit_code,
                result,
                ..
            } => finish_exec(c, call_id, *exit_code, result)?,
            Record::Restore { .. } => {}
        }
        for checkpoint in record.checkpoints() {
            checkpoints::insert(c, session_id, checkpoint)?;
        }
        let events: Vec<ServerEvent> = record.stored_events().cloned().collect();
        queries::append_events(c, session_id, &events)
    })
}

/// Name an untitled session after the first message of its first turn.
fn start_turn(c: &mut DbConn, session_id: &str, text: &str) -> Result<(), DbError> {
    diesel::update(
        chat_sessions::table
            .find(session_id)
            .filter(chat_sessions::title.eq(queries::UNTITLED)),
    )
    .set(chat_sessions::title.eq(title_from(text)))
    .execute(c)?;
    Ok(())
}

fn start_tool_call(c: &mut DbConn, session_id: &str, call: &NewToolCall) -> Result<(), DbError> {
    let row = ToolCallRow::new(
        session_id,
        call.turn_id.as_str(),
        call.call_id.as_str(),
        call.tool,
        &call.code,
        &call.risk,
        call.mode,
    );
    diesel::insert_into(tool_calls::table)
        .values(&row)
        .execute(c)?;
    Ok(())
}

fn settle_decision(
    c: &mut DbConn,
    call_id: &CallId,
    decision: Resolution,
    by: DecidedBy,
    result: Option<&str>,
) -> Result<(), DbError> {
    diesel::update(tool_calls::table.find(call_id.as_str()))
        .set((
            tool_calls::decision.eq(queries::enum_text(&decision)),
            tool_calls::decided_by.eq(queries::enum_text(&by)),
            tool_calls::decided_at.eq(queries::now()),
        ))
        .execute(c)?;
    if let Some(result) = result {
        diesel::update(tool_calls::table.find(call_id.as_str()))
            .set(tool_calls::result_for_model.eq(result))
            .execute(c)?;
    }
    Ok(())
}

fn finish_exec(
    c: &mut DbConn,
    call_id: &CallId,
    exit_code: Option<i64>,
    result: &str,
) -> Result<(), DbError> {
    diesel::update(tool_calls::table.find(call_id.as_str()))
        .set((
            tool_calls::exit_code.eq(exit_code),
            tool_calls::result_for_model.eq(result),
        ))
        .execute(c)?;
    Ok(())
}

/// What a session's agent loads when it (re)starts.
pub struct Stored {
    pub session: Option<queries::ChatSession>,
    pub events: Vec<ServerEvent>,
    /// What each settled tool call handed back to the model.
    pub results: std::collections::HashMap<CallId, String>,
}

/// Load the session, its event log and its tool results in one read.
pub fn load(c: &mut DbConn, session_id: &str) -> Result<Stored, DbError> {
    c.transaction(|c| {
        Ok(Stored {
            session: queries::load_session(c, session_id)?,
            events: queries::list_events(c, session_id)?,
            results: queries::tool_results(c, session_id)?
                .into_iter()
                .map(|(k, v)| (CallId::from(k), v))
                .collect(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::RiskLevel;

    fn open() -> (tempfile::TempDir, DbConn, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = super::super::connect(
            crate::db::test_postgres(dir.path()).unwrap_or_else(|| dir.path().join("t.db").into()),
        )
        .unwrap();
        super::super::migrate(&mut c).unwrap();
        let user = queries::create_user(&mut c, "alice", "hash", ApprovalMode::Risky).unwrap();
        let session =
            queries::create_session(&mut c, user.user_id(), None, "m", ApprovalMode::Risky)
                .unwrap();
        (dir, c, session.id.to_string())
    }

    #[test]
    fn a_turns_records_store_events_rows_and_results_together() {
        let (_dir, mut c, id) = open();
        let message = ServerEvent::UserMessage {
            turn_id: "t".into(),
            text: "  count   the files please ".into(),
            client_id: None,
        };
        write(
            &mut c,
            &id,
            &Record::StartTurn {
                message,
                text: "  count   the files please ".into(),
            },
        )
        .unwrap();
        let call = NewToolCall {
            turn_id: "t".into(),
            call_id: "c1".into(),
            tool: Tool::Shell,
            code: "ls | wc -l".into(),
            risk: Risk {
                level: RiskLevel::Low,
                reasons: vec![],
            },
            mode: ApprovalMode::Risky,
        };
        write(
            &mut c,
            &id,
            &Record::StartToolCall {
                call,
                events: vec![],
            },
        )
        .unwrap();
        write(
            &mut c,
            &id,
            &Record::SettleDecision {
                call_id: "c1".into(),
                decision: Resolution::Approved,
                by: DecidedBy::Policy,
                result: None,
                events: vec![],
            },
        )
        .unwrap();
        let output = ServerEvent::ExecOutput {
            call_id: "c1".into(),
            stream: crate::protocol::OutputStream::Stdout,
            data: "3\n".into(),
        };
        let done = ServerEvent::ExecDone {
            call_id: "c1".into(),
            exit_code: Some(0),
            timed_out: false,
            duration_ms: 3,
        };
        let finish = Record::FinishExec {
            call_id: "c1".into(),
            exit_code: Some(0),
            result: "[exit code 0]\n3".into(),
            output: vec![output],
            events: vec![done],
            checkpoints: vec![],
        };
        assert_eq!(finish.events().len(), 1, "live output is not sent again");
        write(&mut c, &id, &finish).unwrap();

        let stored = load(&mut c, &id).unwrap();
        let session = stored.session.unwrap();
        assert_eq!(session.title, "count the files please");
        let kinds: Vec<&str> = stored.events.iter().map(ServerEvent::kind).collect();
        assert_eq!(kinds, ["user_message", "exec_output", "exec_done"]);
        assert_eq!(
            stored.results.get(&CallId::from("c1")).map(String::as_str),
            Some("[exit code 0]\n3")
        );
        let audit = queries::list_tool_calls(&mut c, &id).unwrap()[0]
            .audit()
            .unwrap();
        assert_eq!(
            (audit.decision, audit.decided_by, audit.exit_code),
            (Some(Resolution::Approved), Some(DecidedBy::Policy), Some(0))
        );
    }

    #[test]
    fn a_renamed_session_keeps_its_title() {
        let (_dir, mut c, id) = open();
        queries::update_session(
            &mut c,
            &id,
            queries::SessionChanges {
                title: Some("Mine".into()),
                ..Default::default()
            },
        )
        .unwrap();
        write(
            &mut c,
            &id,
            &Record::StartTurn {
                message: ServerEvent::UserMessage {
                    turn_id: "t".into(),
                    text: "hello".into(),
                    client_id: None,
                },
                text: "hello".into(),
            },
        )
        .unwrap();
        assert_eq!(
            queries::load_session(&mut c, &id).unwrap().unwrap().title,
            "Mine"
        );
    }

    #[test]
    fn enum_columns_with_unknown_text_fail_loudly() {
        let (_dir, mut c, id) = open();
        diesel::sql_query("UPDATE chat_sessions SET approval_mode = 'sometimes'")
            .execute(&mut c)
            .unwrap();
        let err = queries::load_session(&mut c, &id).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
        diesel::sql_query("UPDATE users SET approval_mode = 'sometimes'")
            .execute(&mut c)
            .unwrap();
        assert!(queries::find_user(&mut c, "alice").is_err());

        diesel::sql_query("UPDATE chat_sessions SET approval_mode = 'risky'")
            .execute(&mut c)
            .unwrap();
        let call = NewToolCall {
            turn_id: "t".into(),
            call_id: "c1".into(),
            tool: Tool::Python,
            code: "print(1)".into(),
            risk: Risk {
                level: RiskLevel::Medium,
                reasons: vec![],
            },
            mode: ApprovalMode::Always,
        };
        write(
            &mut c,
            &id,
            &Record::StartToolCall {
                call,
                events: vec![],
            },
        )
        .unwrap();
        diesel::sql_query("UPDATE tool_calls SET risk_level = 'extreme'")
            .execute(&mut c)
            .unwrap();
        let row = &queries::list_tool_calls(&mut c, &id).unwrap()[0];
        assert!(
            row.audit().is_err(),
            "an unknown risk level is not read as some default"
        );
    }
}
