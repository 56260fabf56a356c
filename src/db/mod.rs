//! The database: SQLite (the default: one file, opened with WAL, foreign
//! keys and a busy timeout) or PostgreSQL (`database.url = "postgres://…"`,
//! for several nodes), through diesel, migrated at start, and used only
//! from the PersistenceActor pool (a SyncArbiter) so no async thread ever
//! waits on the database.
//!
//! Queries are free functions over `&mut DbConn` in [`queries`], one set for
//! both backends ([`DbConn`] is diesel's `MultiConnection`); each backend
//! has its own migrations with the same versions (`migrations/sqlite`,
//! `migrations/postgres`). Callers run queries through [`Db::run`], which
//! ships the closure to a pool thread as one typed message and awaits its
//! typed result.

pub mod bus;
pub mod checkpoints;
pub mod cluster;
pub mod journal;
pub mod queries;
pub mod schema;

use std::future::Future;

use crate::protocol::SessionId;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// A connection to either backend; every query takes one.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

/// Which database: a SQLite file, or a PostgreSQL URL.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl Database {
    /// `sqlite://PATH`, `postgres://…` / `postgresql://…`, or a plain path
    /// (SQLite).
    pub fn parse(url: &str) -> Result<Database, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Database::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(DbError::Open {
                    path: PathBuf::from(url),
                    reason: "a sqlite:// URL needs a file path".into(),
                });
            }
            return Ok(Database::Sqlite(PathBuf::from(path)));
        }
        if url.contains("://") {
            return Err(DbError::Open {
                path: PathBuf::from(crate::config::redact_credentials(url)),
                reason: "database.url must start with sqlite:// or postgres://".into(),
            });
        }
        Ok(Database::Sqlite(PathBuf::from(url)))
    }

    /// `sqlite` or `postgres`.
    pub fn kind(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// For people and logs: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(p) => p.display().to_string(),
            Database::Postgres(url) => crate::config::redact_credentials(url),
        }
    }
}

impl From<&Path> for Database {
    fn from(p: &Path) -> Self {
        Database::Sqlite(p.to_path_buf())
    }
}

impl From<&PathBuf> for Database {
    fn from(p: &PathBuf) -> Self {
        Database::Sqlite(p.clone())
    }
}

impl From<PathBuf> for Database {
    fn from(p: PathBuf) -> Self {
        Database::Sqlite(p)
    }
}

impl From<&Database> for Database {
    fn from(d: &Database) -> Self {
        d.clone()
    }
}

/// How long a writer waits for another writer's lock before giving up.
/// Long enough to ride out a burst of event appends from many sessions.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Pool threads for database work. SQLite serialises writers anyway; a few
/// threads let reads (history, listings, logins) overlap with writes.
pub const POOL_THREADS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database error: {0}")]
    Query(#[from] diesel::result::Error),
    #[error("cannot open the database at {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("the database worker is gone")]
    Mailbox,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<MailboxError> for DbError {
    fn from(_: MailboxError) -> Self {
        DbError::Mailbox
    }
}

/// Makes the database file (and its folder) owner-only before SQLite opens
/// it: SQLite gives its `-wal` and `-shm` files the database's mode, so
/// all three end up 0600. An existing looser file is tightened.
fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(crate::quota::PRIVATE_DIR_MODE)
            .create(parent)?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(crate::quota::PRIVATE_FILE_MODE)
        .open(path)?;
    let private = std::fs::Permissions::from_mode(crate::quota::PRIVATE_FILE_MODE);
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, private.clone()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Open a connection: SQLite with the pragmas every connection needs, or
/// PostgreSQL.
pub fn connect(target: impl Into<Database>) -> Result<DbConn, DbError> {
    match target.into() {
        Database::Sqlite(path) => connect_sqlite(&path).map(DbConn::Sqlite),
        Database::Postgres(url) => {
            PgConnection::establish(&url)
                .map(DbConn::Postgres)
                .map_err(|e| DbError::Open {
                    path: PathBuf::from(crate::config::redact_credentials(&url)),
                    reason: crate::config::redact_credentials(&e.to_string()),
                })
        }
    }
}

fn connect_sqlite(path: &Path) -> Result<SqliteConnection, DbError> {
    private_file(path).map_err(|e| DbError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let url = path.to_string_lossy().to_string();
    let mut conn = SqliteConnection::establish(&url).map_err(|e| DbError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    conn.batch_execute(&format!(
        "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        BUSY_TIMEOUT.as_millis()
    ))
    .map_err(|e| DbError::Open {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(conn)
}

/// Apply pending embedded migrations; returns the versions applied.
pub fn migrate(conn: &mut DbConn) -> Result<Vec<String>, DbError> {
    let applied = match conn {
        DbConn::Sqlite(c) => c
            .run_pending_migrations(SQLITE_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
        DbConn::Postgres(c) => c
            .run_pending_migrations(POSTGRES_MIGRATIONS)
            .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>()),
    }
    .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(applied)
}

/// For the test suites: with `IRONCLAW_TEST_POSTGRES=postgres://…/postgres`
/// (`make test-postgres` sets it), a PostgreSQL database of `dir`'s own,
/// made if missing, so a restart on the same folder finds the same data;
/// otherwise `None` (SQLite in the folder, the default).
#[doc(hidden)]
pub fn test_postgres(dir: &Path) -> Option<Database> {
    use sha2::Digest;
    let admin = std::env::var("IRONCLAW_TEST_POSTGRES")
        .ok()
        .filter(|u| !u.is_empty())?;
    let digest = sha2::Sha256::digest(dir.to_string_lossy().as_bytes());
    let name = format!("t_{}", hex::encode(&digest[..10]));
    let created = PgConnection::establish(&admin)
        .map_err(|e| e.to_string())
        .and_then(|mut c| {
            let exists = diesel::select(diesel::dsl::exists(
                pg_database::table.filter(pg_database::datname.eq(&name)),
            ))
            .get_result::<bool>(&mut c)
            .map_err(|e| e.to_string())?;
            if !exists {
                // The name is hex from a digest: nothing to quote.
                diesel::sql_query(format!("CREATE DATABASE {name}"))
                    .execute(&mut c)
                    .map_err(|e| e.to_string())?;
            }
            Ok(())
        });
    if let Err(e) = created {
        panic!("IRONCLAW_TEST_POSTGRES is set but its server cannot make a database: {e}");
    }
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    Some(Database::Postgres(format!("{base}/{name}")))
}

diesel::table! {
    pg_database (datname) {
        datname -> Text,
    }
}

/// One pool thread's connection.
pub struct PersistenceActor {
    conn: DbConn,
}

impl PersistenceActor {
    fn open(target: &Database) -> Self {
        let conn = connect(target).unwrap_or_else(|e| {
            // The pool's factory cannot fail. Start-up has already opened
            // this database once, so this is a disk or server that went
            // away; an in-memory connection keeps the thread alive and every
            // query on it fails loudly ("no such table") instead of hanging
            // callers.
            log::error!("{e}");
            #[allow(clippy::expect_used)]
            DbConn::Sqlite(
                SqliteConnection::establish(":memory:").expect("in-memory sqlite always opens"),
            )
        });
        PersistenceActor { conn }
    }
}

impl Actor for PersistenceActor {
    type Context = SyncContext<Self>;
}

/// A unit of database work: a closure run on a pool thread with that
/// thread's connection. Generic over its result so each call site stays
/// typed without a message type per query.
pub struct Run<R>(Box<Work<R>>);

/// The closure of a [`Run`].
type Work<R> = dyn FnOnce(&mut DbConn) -> Result<R, DbError> + Send;

impl<R: Send + 'static> Message for Run<R> {
    type Result = Result<R, DbError>;
}

impl<R: Send + 'static> Handler<Run<R>> for PersistenceActor {
    type Result = Result<R, DbError>;

    fn handle(&mut self, msg: Run<R>, _: &mut SyncContext<Self>) -> Self::Result {
        (msg.0)(&mut self.conn)
    }
}

/// A cheap, cloneable handle on the persistence pool.
#[derive(Clone)]
pub struct Db {
    addr: Addr<PersistenceActor>,
}

impl Db {
    /// Migrate the database, then start the pool. Must run inside an actix
    /// system.
    pub fn start(target: impl Into<Database>) -> Result<Db, DbError> {
        let target = target.into();
        let mut conn = connect(&target)?;
        let applied = migrate(&mut conn)?;
        if !applied.is_empty() {
            log::info!("database migrations applied: {}", applied.join(", "));
        }
        drop(conn);
        Ok(Db::pool(target, POOL_THREADS))
    }

    /// A pool of `threads` connections to an already migrated database
    /// (a node's heartbeat has one of its own, so a busy main pool never
    /// delays it past its lease).
    pub fn pool(target: impl Into<Database>, threads: usize) -> Db {
        let target = target.into();
        let addr = SyncArbiter::start(threads.max(1), move || PersistenceActor::open(&target));
        Db { addr }
    }

    /// Run `f` with a pooled connection.
    pub async fn run<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<R, DbError> + Send + 'static,
    {
        self.addr.send(Run(Box::new(f))).await?
    }

    /// Store one of the agent's records; hands it back for sending.
    pub fn write(
        &self,
        session_id: SessionId,
        record: journal::Record,
    ) -> impl Future<Output = Result<journal::Record, DbError>> + 'static {
        let db = self.clone();
        async move {
            db.run(move |c| journal::write(c, &session_id, &record).map(|()| record))
                .await
        }
    }

    /// The session, its event log and its tool results.
    pub fn load_agent_state(
        &self,
        session_id: SessionId,
    ) -> impl Future<Output = Result<journal::Stored, DbError>> + 'static {
        let db = self.clone();
        async move { db.run(move |c| journal::load(c, &session_id)).await }
    }

    /// The latest `limit` events of the session's log, for a tab that
    /// attaches.
    pub fn latest_events(
        &self,
        session_id: SessionId,
        limit: usize,
    ) -> impl Future<Output = Result<crate::protocol::EventPage, DbError>> + 'static {
        let db = self.clone();
        async move {
            db.run(move |c| queries::events_page(c, &session_id, None, limit))
                .await
        }
    }
}
