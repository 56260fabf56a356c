//! Nodes and session leases (DESIGN.md §7): every node beats a heartbeat
//! row, and a session's actors run on the node that holds its lease. A
//! lease is taken when the session's actors start, renewed with the
//! node's heartbeat, given back when they stop, and taken over by another
//! node once it has expired (its holder died or lost the database).
//!
//! Times are RFC 3339 text in UTC with milliseconds, compared as text, from
//! each node's clock: nodes are expected to keep time (NTP) to well within
//! a lease.

use chrono::{Duration, SecondsFormat, Utc};
use diesel::prelude::*;

use super::schema::{nodes, session_leases};
use super::{DbConn, DbError};

fn at(offset: Duration) -> String {
    (Utc::now() + offset).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// A node as `ironclaw check` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Node {
    pub node_id: String,
    pub advertise_url: String,
    pub started_at: String,
    pub heartbeat_at: String,
}

/// Record that `node_id` is alive (and where it is reached).
pub fn heartbeat(
    c: &mut DbConn,
    node_id: &str,
    advertise_url: &str,
    started_at: &str,
) -> Result<(), DbError> {
    let now = at(Duration::zero());
    let updated = diesel::update(nodes::table.find(node_id))
        .set((
            nodes::advertise_url.eq(advertise_url),
            nodes::heartbeat_at.eq(&now),
            nodes::started_at.eq(started_at),
        ))
        .execute(c)?;
    if updated == 0 {
        let inserted = diesel::insert_into(nodes::table)
            .values((
                nodes::node_id.eq(node_id),
                nodes::advertise_url.eq(advertise_url),
                nodes::started_at.eq(started_at),
                nodes::heartbeat_at.eq(&now),
            ))
            .execute(c);
        // Another process with the same id inserted first: it is alive.
        if let Err(e) = inserted {
            if !matches!(
                e,
                diesel::result::Error::DatabaseError(
                    diesel::result::DatabaseErrorKind::UniqueViolation,
                    _
                )
            ) {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Every node that has ever beaten, most recent heartbeat first.
pub fn nodes(c: &mut DbConn) -> Result<Vec<Node>, DbError> {
    Ok(nodes::table
        .order(nodes::heartbeat_at.desc())
        .load::<Node>(c)?)
}

/// Who holds a session's lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This node: it runs the session's actors until `lease` from now.
    Mine,
    /// Another node, until its lease expires.
    Held { node_id: String, expires_at: String },
}

/// Take (or renew) the lease on `session_id` for `node_id`, for `ttl`,
/// unless another node holds it and it has not expired.
pub fn acquire(
    c: &mut DbConn,
    session_id: &str,
    node_id: &str,
    ttl: std::time::Duration,
) -> Result<Lease, DbError> {
    let ttl = Duration::from_std(ttl).unwrap_or_else(|_| Duration::seconds(10));
    for _ in 0..3 {
        let now = at(Duration::zero());
        let until = at(ttl);
        // Ours, or free to take: one statement, so two nodes cannot both
        // take an expired lease.
        let taken = diesel::update(
            session_leases::table
                .filter(session_leases::session_id.eq(session_id))
                .filter(
                    session_leases::node_id
                        .eq(node_id)
                        .or(session_leases::expires_at.lt(&now)),
                ),
        )
        .set((
            session_leases::node_id.eq(node_id),
            session_leases::expires_at.eq(&until),
        ))
        .execute(c)?;
        if taken == 1 {
            return Ok(Lease::Mine);
        }
        let held = session_leases::table
            .find(session_id)
            .select((session_leases::node_id, session_leases::expires_at))
            .first::<(String, String)>(c)
            .optional()?;
        if let Some((holder, expires_at)) = held {
            if expires_at >= now {
                return Ok(Lease::Held {
                    node_id: holder,
                    expires_at,
                });
            }
            // It expired between the two statements: try again.
            continue;
        }
        let inserted = diesel::insert_into(session_leases::table)
            .values((
                session_leases::session_id.eq(session_id),
                session_leases::node_id.eq(node_id),
                session_leases::expires_at.eq(&until),
            ))
            .execute(c);
        match inserted {
            Ok(_) => return Ok(Lease::Mine),
            // Another node inserted first: look again.
            Err(diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            )) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(DbError::Corrupt(format!(
        "the lease on session {session_id} kept changing hands"
    )))
}

/// Extend `node_id`'s leases on `sessions`; answers the ones it no longer
/// holds (another node took them over), which it must stop serving.
pub fn renew(
    c: &mut DbConn,
    node_id: &str,
    sessions: &[String],
    ttl: std::time::Duration,
) -> Result<Vec<String>, DbError> {
    if sessions.is_empty() {
        return Ok(Vec::new());
    }
    let ttl = Duration::from_std(ttl).unwrap_or_else(|_| Duration::seconds(10));
    let until = at(ttl);
    diesel::update(
        session_leases::table
            .filter(session_leases::node_id.eq(node_id))
            .filter(session_leases::session_id.eq_any(sessions)),
    )
    .set(session_leases::expires_at.eq(&until))
    .execute(c)?;
    let held: Vec<String> = session_leases::table
        .filter(session_leases::node_id.eq(node_id))
        .filter(session_leases::session_id.eq_any(sessions))
        .select(session_leases::session_id)
        .load(c)?;
    Ok(sessions
        .iter()
        .filter(|s| !held.contains(s))
        .cloned()
        .collect())
}

/// What other live nodes hold, for a node that starts: the sessions they
/// lease, and whether any other node beat within `ttl`.
pub fn held_elsewhere(
    c: &mut DbConn,
    node_id: &str,
    ttl: std::time::Duration,
) -> Result<(Vec<String>, bool), DbError> {
    let now = at(Duration::zero());
    let since = at(-Duration::from_std(ttl).unwrap_or_else(|_| Duration::seconds(10)));
    let sessions = session_leases::table
        .filter(session_leases::node_id.ne(node_id))
        .filter(session_leases::expires_at.ge(&now))
        .select(session_leases::session_id)
        .load(c)?;
    let others: i64 = nodes::table
        .filter(nodes::node_id.ne(node_id))
        .filter(nodes::heartbeat_at.ge(&since))
        .count()
        .get_result(c)?;
    Ok((sessions, others > 0))
}

/// Who holds `session_id`'s lease and until when, if anyone.
pub fn lease(c: &mut DbConn, session_id: &str) -> Result<Option<(String, String)>, DbError> {
    Ok(session_leases::table
        .find(session_id)
        .select((session_leases::node_id, session_leases::expires_at))
        .first::<(String, String)>(c)
        .optional()?)
}

/// Give back `node_id`'s lease on `session_id` (its actors stopped).
pub fn release(c: &mut DbConn, session_id: &str, node_id: &str) -> Result<(), DbError> {
    diesel::delete(
        session_leases::table
            .filter(session_leases::session_id.eq(session_id))
            .filter(session_leases::node_id.eq(node_id)),
    )
    .execute(c)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::queries;
    use crate::protocol::ApprovalMode;

    fn setup() -> (tempfile::TempDir, DbConn, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = crate::db::connect(
            crate::db::test_postgres(dir.path()).unwrap_or_else(|| dir.path().join("t.db").into()),
        )
        .unwrap();
        crate::db::migrate(&mut c).unwrap();
        let user = queries::create_user(&mut c, "u", "h", ApprovalMode::Risky).unwrap();
        let s =
            queries::create_session(&mut c, user.user_id(), Some("t"), "m", ApprovalMode::Risky)
                .unwrap();
        (dir, c, s.id.to_string())
    }

    #[test]
    fn one_node_holds_a_lease_until_it_expires_then_another_takes_it() {
        let (_dir, mut c, s) = setup();
        let long = std::time::Duration::from_secs(60);
        assert_eq!(acquire(&mut c, &s, "a", long).unwrap(), Lease::Mine);
        assert_eq!(
            acquire(&mut c, &s, "a", long).unwrap(),
            Lease::Mine,
            "renewing"
        );
        match acquire(&mut c, &s, "b", long).unwrap() {
            Lease::Held { node_id, .. } => assert_eq!(node_id, "a"),
            other => panic!("b took a live lease: {other:?}"),
        }
        // a's lease runs out (it stopped beating): b takes it over, and a,
        // renewing late, learns it has lost it.
        acquire(&mut c, &s, "a", std::time::Duration::from_millis(1)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(acquire(&mut c, &s, "b", long).unwrap(), Lease::Mine);
        assert_eq!(
            renew(&mut c, "a", std::slice::from_ref(&s), long).unwrap(),
            vec![s.clone()]
        );
        assert!(renew(&mut c, "b", std::slice::from_ref(&s), long)
            .unwrap()
            .is_empty());
        // Given back, it is free for anyone.
        release(&mut c, &s, "b").unwrap();
        assert_eq!(acquire(&mut c, &s, "a", long).unwrap(), Lease::Mine);
    }

    #[test]
    fn nodes_are_listed_with_their_last_heartbeat() {
        let (_dir, mut c, _) = setup();
        heartbeat(&mut c, "a", "http://a:8080", "2026-12-01T00:00:00.000Z").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        heartbeat(&mut c, "b", "http://b:8080", "2026-12-01T00:00:00.000Z").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        heartbeat(&mut c, "a", "http://a:8081", "2026-12-01T00:00:00.000Z").unwrap();
        let list = nodes(&mut c).unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].node_id, "a", "the latest heartbeat first");
        assert_eq!(list[0].advertise_url, "http://a:8081");
    }
}
