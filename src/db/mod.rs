//! The database: SQLite through diesel, opened with WAL, foreign keys and a
//! busy timeout, migrated at start, and used only from the PersistenceActor
//! pool (a SyncArbiter) so no async thread ever waits on disk.
//!
//! Queries are free functions over `&mut SqliteConnection` in [`queries`];
//! callers run them through [`Db::run`], which ships the closure to a pool
//! thread as one typed message and awaits its typed result.

pub mod checkpoints;
pub mod journal;
pub mod queries;
pub mod schema;

use std::future::Future;

use crate::protocol::SessionId;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::prelude::*;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

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

/// Open a connection with the pragmas every connection needs.
pub fn connect(path: &Path) -> Result<SqliteConnection, DbError> {
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
pub fn migrate(conn: &mut SqliteConnection) -> Result<Vec<String>, DbError> {
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| DbError::Migration(e.to_string()))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
}

/// One pool thread's connection.
pub struct PersistenceActor {
    conn: SqliteConnection,
}

impl PersistenceActor {
    fn open(path: &Path) -> Self {
        let conn = connect(path).unwrap_or_else(|e| {
            // The pool's factory cannot fail. Start-up has already opened
            // this path once, so this is a disk that went away; an in-memory
            // connection keeps the thread alive and every query on it fails
            // loudly ("no such table") instead of hanging callers.
            log::error!("{e}");
            #[allow(clippy::expect_used)]
            SqliteConnection::establish(":memory:").expect("in-memory sqlite always opens")
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
type Work<R> = dyn FnOnce(&mut SqliteConnection) -> Result<R, DbError> + Send;

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
    pub fn start(path: &Path) -> Result<Db, DbError> {
        let mut conn = connect(path)?;
        let applied = migrate(&mut conn)?;
        if !applied.is_empty() {
            log::info!("database migrations applied: {}", applied.join(", "));
        }
        drop(conn);
        let path = path.to_path_buf();
        let addr = SyncArbiter::start(POOL_THREADS, move || PersistenceActor::open(&path));
        Ok(Db { addr })
    }

    /// Run `f` with a pooled connection.
    pub async fn run<R, F>(&self, f: F) -> Result<R, DbError>
    where
        R: Send + 'static,
        F: FnOnce(&mut SqliteConnection) -> Result<R, DbError> + Send + 'static,
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
