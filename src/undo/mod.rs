//! Undo (DESIGN.md §4): a checkpoint of the workspace before every command
//! that may change it, exactly what each command changed, and putting the
//! workspace back as it was before any kept command.
//!
//! The design, in three parts:
//!
//! - **The manifest** ([`scan`]): every path with the `stat` fields that
//!   tell a change and the id of its stored content. The look after each
//!   command (a walk of the whole tree, one `stat` per unchanged path, or
//!   only the paths the watch reported) reads and stores only what
//!   changed, reports each created, modified or deleted path, and strips
//!   setuid bits on the way.
//! - **The object store** ([`store`]): contents by SHA-256 under
//!   `data/snapshots/<session>/`, outside anything mounted into the
//!   sandbox. Because every content the manifest names is stored, the
//!   workspace as it is before a command is always recoverable: that is
//!   the checkpoint, and it costs what changed since the last one.
//! - **The log** (`crate::db::checkpoints`): for each command, each path's
//!   entry before and after. A revert to just before call *k* puts every
//!   path touched since *k* back to the entry the first change after *k*
//!   found ([`restore`]); the revert is logged the same way, so it can be
//!   undone too.
//!
//! Where the workspace is its own filesystem and the server is root, a
//! fanotify watch on it (`watch`) says which paths anything touched, so a
//! look stats those only; the tree is walked when the paths cannot tell
//! the whole story (a folder created, removed or moved, hard links, an
//! overflowing queue). Without a watch: between commands nothing runs in
//! the sandbox (every exec's processes are swept at its end), so the
//! manifest stays true until the file routes write; they leave a `stale`
//! mark ([`mark_stale`]) and the next checkpoint walks again. Either way,
//! what changed between commands is logged as changes made outside any
//! command. The store is used from one thread at a time (a mutex);
//! its methods block and run off the async threads.

mod restore;
mod scan;
mod store;
mod watch;

use std::io;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

pub use scan::{Change, Entry, Manifest, Scanned};
pub use store::{ObjectId, ObjectStore};

use crate::config::Settings;
use crate::db::DbError;
use crate::protocol::{ChangeKind, EntryKind, ErrorCode, FileDiff};
use crate::quota::WorkspaceVolume;
use crate::workspace::{FileError, Workspace};

/// Largest side of a diff shown as text; past it, sizes only.
pub const MAX_DIFF_BYTES: u64 = 1024 * 1024;

/// Name of the mark the file routes leave in a session's snapshot folder.
const STALE_MARK: &str = "stale";

/// Why an undo could not be done; each maps onto an [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum UndoError {
    #[error("A turn is running in this session. Undo once it has finished, or stop it first.")]
    TurnRunning,
    #[error("This session has no command with that id.")]
    UnknownCall,
    #[error("This command was judged read-only and changed no files, so it has no checkpoint to go back to.")]
    NoCheckpoint,
    #[error("The checkpoint before this command was dropped (undo keeps the newest {keep} checkpoints of a session, {max_mb} MB at most), so it can no longer be undone.")]
    Gone { keep: usize, max_mb: u64 },
    #[error("Undo is off on this server (undo.keep = 0).")]
    Off,
    #[error("{0}")]
    Workspace(#[from] FileError),
    #[error("The checkpoint store could not be used: {0}")]
    Store(io::Error),
    #[error("{0}")]
    Storage(#[from] DbError),
    #[error("The session stopped before the undo finished; try again.")]
    Stopped,
    #[error("This session is being served by another node ({0}); try again in a moment.")]
    Elsewhere(String),
    /// The node running the session answered this.
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
}

impl UndoError {
    /// Why a call has no checkpoint to go back to, as the person is told.
    pub fn missing(why: crate::db::checkpoints::Missing, settings: &Settings) -> Self {
        use crate::db::checkpoints::Missing;
        match why {
            Missing::Unknown => UndoError::UnknownCall,
            Missing::None => UndoError::NoCheckpoint,
            Missing::Dropped => UndoError::Gone {
                keep: settings.undo.keep,
                max_mb: settings.undo.max_mb,
            },
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            UndoError::TurnRunning => ErrorCode::TurnRunning,
            UndoError::UnknownCall => ErrorCode::UnknownCall,
            UndoError::NoCheckpoint => ErrorCode::NoCheckpoint,
            UndoError::Gone { .. } => ErrorCode::CheckpointGone,
            UndoError::Off => ErrorCode::Unavailable,
            UndoError::Workspace(e) => e.code(),
            UndoError::Store(_) => ErrorCode::UndoFailed,
            UndoError::Storage(_) => ErrorCode::StorageFailed,
            UndoError::Stopped | UndoError::Elsewhere(_) => ErrorCode::Unavailable,
            UndoError::Remote { code, .. } => *code,
        }
    }
}

/// `data/snapshots/<session>`: the session's object store and its marks.
pub fn snapshot_dir(settings: &Settings, session_id: &str) -> PathBuf {
    settings.data.dir.join("snapshots").join(session_id)
}

/// Notes that the file routes changed the workspace, so the next
/// checkpoint looks at it again. Failing to leave the mark only costs
/// exactness (the change is then seen as the next command's), so it is
/// logged, not raised.
pub fn mark_stale(settings: &Settings, session_id: &str) {
    let dir = snapshot_dir(settings, session_id);
    let marked = crate::quota::private_dir(&dir).and_then(|()| {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(STALE_MARK))
            .map(drop)
    });
    if let Err(e) = marked {
        log::warn!("session {session_id}: could not mark the workspace as changed: {e}");
    }
}

/// Removes a deleted session's checkpoints.
pub fn remove_store(settings: &Settings, session_id: &str) -> io::Result<()> {
    match std::fs::remove_dir_all(snapshot_dir(settings, session_id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// What a revert did.
#[derive(Debug)]
pub struct Reverted {
    /// Changes made between commands, found by the look before it.
    pub outside: Vec<Change>,
    /// What the revert changed (all of it when `error` is `None`).
    pub applied: Vec<Change>,
    pub error: Option<UndoError>,
}

#[derive(Debug, Default)]
struct State {
    /// `None` until the first look after the server started.
    manifest: Option<Manifest>,
    /// Opened on first use.
    store: Option<ObjectStore>,
    /// The kernel's account of what was touched, when the workspace is
    /// its own filesystem and the server may watch it; started before the
    /// first look, so nothing falls between.
    watch: Option<watch::Watch>,
    /// A watch was tried (once per session actor).
    watch_tried: bool,
}

/// One session's checkpoints.
#[derive(Debug)]
pub struct Undo {
    volume: WorkspaceVolume,
    dir: PathBuf,
    /// `undo.keep` > 0: contents are kept. Without, scans still report
    /// what changed.
    keeps: bool,
    state: Mutex<State>,
}

impl Undo {
    pub fn new(settings: &Settings, session_id: &str) -> Self {
        Undo {
            volume: WorkspaceVolume::of_session(settings, session_id),
            dir: snapshot_dir(settings, session_id),
            keeps: settings.undo.keep > 0 && settings.undo.max_mb > 0,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether checkpoints are kept (`undo.keep` and `undo.max_mb` > 0).
    pub fn keeps(&self) -> bool {
        self.keeps
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic mid-scan leaves a manifest that may be wrong: look again.
        self.state.lock().unwrap_or_else(|poisoned| {
            let mut state = poisoned.into_inner();
            state.manifest = None;
            state
        })
    }

    fn workspace(&self) -> Result<Workspace, UndoError> {
        self.volume.prepare().map_err(FileError::Io)?;
        Ok(Workspace::open(self.volume.root().to_path_buf())?)
    }

    /// Before a command (or a revert): makes the manifest true to the
    /// workspace, storing what changed since the last look. Answers those
    /// changes, made outside any command; none on the first look after a
    /// start, which only learns what is there.
    pub fn before_exec(&self) -> Result<Vec<Change>, UndoError> {
        let ws = self.workspace()?;
        let mut state = self.lock();
        self.refresh(&ws, &mut state)
    }

    fn refresh(&self, ws: &Workspace, state: &mut State) -> Result<Vec<Change>, UndoError> {
        let mark = self.dir.join(STALE_MARK);
        let baseline = state.manifest.is_none();
        if !baseline && state.watch.is_some() {
            // The watch saw every write, the file routes' included.
            let _ = std::fs::remove_file(&mark);
            return self.look(ws, state).map(|s| s.changes);
        }
        let stale = mark.exists();
        if !baseline && !stale {
            return Ok(Vec::new());
        }
        if stale {
            // Removed before the look: a write that ends after it marks
            // again.
            if let Err(e) = std::fs::remove_file(&mark) {
                log::warn!("could not clear a workspace's change mark: {e}");
            }
        }
        self.scan(ws, state, baseline).map(|s| s.changes)
    }

    fn scan(
        &self,
        ws: &Workspace,
        state: &mut State,
        baseline: bool,
    ) -> Result<Scanned, UndoError> {
        if self.keeps && state.store.is_none() {
            state.store = Some(ObjectStore::open(&self.dir).map_err(UndoError::Store)?);
        }
        if !state.watch_tried {
            state.watch_tried = true;
            state.watch = watch::Watch::start(self.volume.root());
        } else if let Some(watch) = state.watch.as_mut() {
            // This walk sees everything; what the watch holds is old news.
            let _ = watch.drain();
        }
        let mut manifest = state.manifest.take().unwrap_or_default();
        let store = if self.keeps {
            state.store.as_mut()
        } else {
            None
        };
        let scanned = scan::scan(ws, &mut manifest, store, baseline);
        // A scan cut short keeps what it knew (see `scan::scan`); a first
        // look cut short knows too little, and is taken again.
        if scanned.is_ok() || !baseline {
            state.manifest = Some(manifest);
        }
        Ok(scanned?)
    }

    /// After a command: what it created, modified and deleted (its
    /// contents stored), setuid bits stripped.
    pub fn after_exec(&self) -> Result<Scanned, UndoError> {
        let ws = self.workspace()?;
        let mut state = self.lock();
        self.look(&ws, &mut state)
    }

    /// What changed since the last look: only the paths the watch reports
    /// when it can tell, else a walk of the whole tree.
    fn look(&self, ws: &Workspace, state: &mut State) -> Result<Scanned, UndoError> {
        let baseline = state.manifest.is_none();
        let touched = match (&mut state.watch, baseline) {
            (Some(watch), false) => watch.drain(),
            _ => watch::Touched::Everything,
        };
        if let watch::Touched::Paths(paths) = &touched {
            if paths.is_empty() {
                return Ok(Scanned::default());
            }
            if self.keeps && state.store.is_none() {
                state.store = Some(ObjectStore::open(&self.dir).map_err(UndoError::Store)?);
            }
            let store = if self.keeps {
                state.store.as_mut()
            } else {
                None
            };
            if let Some(manifest) = state.manifest.as_mut() {
                if let Some(scanned) = scan::scan_touched(ws, manifest, store, paths)? {
                    return Ok(scanned);
                }
            }
        }
        self.scan(ws, state, baseline)
    }

    /// Puts the workspace back as it was before the first of `since` (the
    /// changes logged from the checkpoint of the call being reverted on).
    /// Nothing is written unless every content needed is in the store.
    pub fn revert(&self, since: &[Change]) -> Result<Reverted, UndoError> {
        if !self.keeps {
            return Err(UndoError::Off);
        }
        let ws = self.workspace()?;
        let mut state = self.lock();
        let outside = self.refresh(&ws, &mut state)?;
        let mut all = since.to_vec();
        all.extend(outside.iter().cloned());
        let State {
            manifest, store, ..
        } = &mut *state;
        let (Some(manifest), Some(store)) = (manifest.as_mut(), store.as_ref()) else {
            return Err(UndoError::Stopped);
        };
        let steps = restore::plan(&all, manifest);
        for step in &steps {
            let wanted = step.want.as_ref().and_then(|w| w.object.as_ref());
            if let Some(object) = wanted {
                if !store.contains(object) {
                    return Err(UndoError::Store(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("the content of {} is missing from the store", step.path),
                    )));
                }
            }
        }
        let (applied, error) = restore::apply(&ws, store, manifest, &steps);
        Ok(Reverted {
            outside,
            applied,
            error: error.map(UndoError::from),
        })
    }

    /// Removes the objects retention let go of, except those the
    /// workspace holds now. Answers the bytes the store keeps.
    pub fn collect(&self, unreferenced: &[ObjectId]) -> u64 {
        let mut state = self.lock();
        let State {
            manifest, store, ..
        } = &mut *state;
        let Some(store) = store.as_mut() else {
            return 0;
        };
        // Without a manifest (nothing looked yet) nothing is known to be
        // free. Nothing let go (the usual case after a command): no need
        // to gather what the workspace holds.
        if let Some(manifest) = manifest.as_ref().filter(|_| !unreferenced.is_empty()) {
            let held: std::collections::HashSet<&ObjectId> = manifest.objects().collect();
            for object in unreferenced.iter().filter(|o| !held.contains(o)) {
                if let Err(e) = store.remove(object) {
                    log::warn!("could not remove a dropped checkpoint object: {e}");
                }
            }
        }
        store.bytes()
    }
}

/// The diff of one change: a unified diff when both sides are text of at
/// most [`MAX_DIFF_BYTES`], else the sizes.
pub fn diff(settings: &Settings, session_id: &str, change: &Change) -> Result<FileDiff, UndoError> {
    let store = ObjectStore::reader(&snapshot_dir(settings, session_id));
    let text = |entry: &Option<Entry>| -> Result<Option<Option<String>>, UndoError> {
        // Some(None): not text. None: absent side (empty text).
        let Some(entry) = entry else {
            return Ok(None);
        };
        if entry.kind != EntryKind::File {
            return Ok(Some(None));
        }
        let Some(object) = &entry.object else {
            return Ok(Some(None));
        };
        let bytes = store.read(object, MAX_DIFF_BYTES).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                UndoError::Gone {
                    keep: settings.undo.keep,
                    max_mb: settings.undo.max_mb,
                }
            } else {
                UndoError::Store(e)
            }
        })?;
        Ok(Some(
            bytes
                .filter(|b| !b.contains(&0))
                .and_then(|b| String::from_utf8(b).ok()),
        ))
    };
    let before = text(&change.before)?;
    let after = text(&change.after)?;
    let public = change.public();
    let sizes = (
        change.before.as_ref().map(|e| e.size),
        change.after.as_ref().map(|e| e.size),
    );
    let (a, b) = match (before, after) {
        (Some(None), _) | (_, Some(None)) => {
            return Ok(FileDiff {
                path: change.path.clone(),
                change: public.change,
                binary: true,
                diff: None,
                before_size: sizes.0,
                after_size: sizes.1,
            })
        }
        (a, b) => (
            a.flatten().unwrap_or_default(),
            b.flatten().unwrap_or_default(),
        ),
    };
    let old_name = match public.change {
        ChangeKind::Created => "/dev/null".to_string(),
        _ => format!("a/{}", change.path),
    };
    let new_name = match public.change {
        ChangeKind::Deleted => "/dev/null".to_string(),
        _ => format!("b/{}", change.path),
    };
    let diff = similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header(&old_name, &new_name)
        .to_string();
    Ok(FileDiff {
        path: change.path.clone(),
        change: public.change,
        binary: false,
        diff: Some(diff),
        before_size: sizes.0,
        after_size: sizes.1,
    })
}

#[cfg(test)]
mod tests;
