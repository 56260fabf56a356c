//! What the workspace holds, and what changed since the last look.
//!
//! A [`Manifest`] maps every path to the `stat` fields that tell a change
//! (kind, size, mode, modification and change times, inode) and to what a
//! checkpoint keeps of it (an [`Entry`]: the content's object id for a file,
//! the target's for a link). A scan walks the whole tree, links never
//! followed, and compares: a path whose `stat` is unchanged costs nothing
//! more; only a changed file is read, hashed and (when undo keeps
//! contents) copied into the store. Every path is visited, however many
//! there are, down to the walk's depth limit.
//!
//! The scan after each command also strips setuid and setgid bits from
//! what the sandbox left (DESIGN.md §4): one walk does both.

use std::collections::HashMap;
use std::io;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use serde::{Deserialize, Serialize};

use super::store::{ObjectId, ObjectStore};
use crate::protocol::{ChangeKind, EntryKind, FileChange};
use crate::workspace::{FileError, Workspace};

/// What a checkpoint keeps of one path: enough to put it back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    /// A file's content or a link's target; `None` for folders, for other
    /// kinds (fifos, sockets), and when the content was not kept (undo off,
    /// or unreadable).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "object_id")]
    pub object: Option<ObjectId>,
    pub size: u64,
    /// Permission bits (`0o7777` without setuid/setgid).
    pub mode: u32,
    pub mtime_ns: i64,
}

impl Entry {
    /// Same content and mode: what a person would call unchanged. A
    /// folder's times and size follow its entries, so they do not count;
    /// a file whose content was not kept counts as changed once its
    /// `stat` differs (the caller only asks then).
    fn same_as(&self, other: &Entry) -> bool {
        if self.kind != other.kind || self.mode != other.mode {
            return false;
        }
        match self.kind {
            EntryKind::Dir | EntryKind::Other => true,
            EntryKind::File | EntryKind::Link => {
                self.object.is_some() && self.object == other.object
            }
        }
    }
}

/// One path's change: `before` absent for a creation, `after` absent for a
/// deletion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub path: String,
    pub before: Option<Entry>,
    pub after: Option<Entry>,
}

impl Change {
    /// As `files_changed` and the changes route show it.
    pub fn public(&self) -> FileChange {
        let (change, shown) = match (&self.before, &self.after) {
            (None, Some(after)) => (ChangeKind::Created, after),
            (Some(before), None) => (ChangeKind::Deleted, before),
            (Some(_), Some(after)) => (ChangeKind::Modified, after),
            // Never built; shown as a deletion of nothing.
            (None, None) => {
                return FileChange {
                    path: self.path.clone(),
                    change: ChangeKind::Deleted,
                    kind: EntryKind::Other,
                    size: 0,
                }
            }
        };
        FileChange {
            path: self.path.clone(),
            change,
            kind: shown.kind,
            size: shown.size,
        }
    }
}

/// The `stat` fields that tell a path changed. The change time cannot be
/// set by a program, so a write always shows here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    kind: EntryKind,
    size: u64,
    mode: u32,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: u64,
    /// Names the inode has: a file with more than one can change under
    /// another name.
    links: u64,
}

impl Stamp {
    // `Stat`'s field types differ between architectures.
    #[allow(clippy::useless_conversion)]
    fn of(stat: &Stat) -> Self {
        let kind = kind_of(stat);
        Stamp {
            kind,
            // A folder's size is its entry table's: not a size a person
            // means.
            size: if kind == EntryKind::Dir {
                0
            } else {
                crate::workspace::file_size(stat)
            },
            mode: mode_bits(stat),
            mtime_ns: i64::from(stat.st_mtime)
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::try_from(stat.st_mtime_nsec).unwrap_or(0)),
            ctime_ns: i64::from(stat.st_ctime)
                .saturating_mul(1_000_000_000)
                .saturating_add(i64::try_from(stat.st_ctime_nsec).unwrap_or(0)),
            inode: u64::from(stat.st_ino),
            links: u64::from(stat.st_nlink),
        }
    }

    /// A folder's times and size move with its entries; only its kind and
    /// mode are its own.
    fn unchanged(&self, old: &Stamp) -> bool {
        match self.kind {
            EntryKind::Dir => old.kind == EntryKind::Dir && old.mode == self.mode,
            _ => self == old,
        }
    }
}

fn kind_of(stat: &Stat) -> EntryKind {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => EntryKind::File,
        FileType::Directory => EntryKind::Dir,
        FileType::Symlink => EntryKind::Link,
        _ => EntryKind::Other,
    }
}

// `st_mode`'s type differs between architectures.
#[allow(clippy::unnecessary_cast)]
fn mode_bits(stat: &Stat) -> u32 {
    (stat.st_mode as u32) & 0o7777
}

/// What the manifest knows of one path.
#[derive(Debug, Clone)]
struct Known {
    stamp: Stamp,
    entry: Entry,
    /// The scan that last saw it; one that did not is gone.
    seen: u64,
}

/// Every path of the workspace as the last scan saw it.
#[derive(Debug, Default)]
pub struct Manifest {
    paths: HashMap<String, Known>,
    /// Scans so far, to mark what each one saw.
    scans: u64,
}

impl Manifest {
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.paths.keys().map(String::as_str)
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.paths.get(path).map(|k| &k.entry)
    }

    /// Every object the current workspace holds: never collected.
    pub fn objects(&self) -> impl Iterator<Item = &ObjectId> {
        self.paths.values().filter_map(|k| k.entry.object.as_ref())
    }

    /// Notes `path` as just written by a restore: its new `stat` and what
    /// it holds.
    pub(super) fn set(&mut self, path: &str, stat: &Stat, entry: Entry) {
        let known = Known {
            stamp: Stamp::of(stat),
            entry,
            seen: self.scans,
        };
        self.paths.insert(path.to_owned(), known);
    }

    pub(super) fn forget(&mut self, path: &str) {
        self.paths.remove(path);
    }
}

/// What one scan found.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Sorted by path.
    pub changes: Vec<Change>,
    /// Files and folders whose setuid/setgid bits were stripped.
    pub setid_cleared: usize,
    /// The whole tree was walked (rather than only the paths the watch
    /// reported).
    pub walked: bool,
}

/// Walks the workspace against `manifest`, updating it in place: a path
/// whose `stat` is unchanged costs a lookup, nothing is copied or
/// allocated for it. With a `store`, the content of every new or changed
/// file and link goes into it, so the manifest's objects are always
/// stored. With `baseline`, the manifest was empty for want of a previous
/// look (a server start): the paths found are its start, not changes.
///
/// If the store cannot be written the scan stops with the error and the
/// manifest keeps, for every path it had not yet updated, what it knew:
/// the next scan compares against that again.
pub fn scan(
    ws: &Workspace,
    manifest: &mut Manifest,
    mut store: Option<&mut ObjectStore>,
    baseline: bool,
) -> Result<Scanned, FileError> {
    let seen = look(ws)?;
    manifest.scans += 1;
    let scan = manifest.scans;
    let mut out = Scanned {
        walked: true,
        ..Scanned::default()
    };
    for part in seen {
        out.setid_cleared += part.setid_cleared;
        for (path, stamp) in part.entries {
            observe(
                ws,
                manifest,
                store.as_deref_mut(),
                path,
                stamp,
                baseline,
                &mut out,
            )?;
        }
    }
    let paths = &mut manifest.paths;
    let gone: Vec<String> = paths
        .iter()
        .filter(|(_, known)| known.seen != scan)
        .map(|(path, _)| path.clone())
        .collect();
    for path in gone {
        if let Some(known) = paths.remove(&path) {
            if !baseline {
                out.changes.push(Change {
                    path,
                    before: Some(known.entry),
                    after: None,
                });
            }
        }
    }
    out.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Notes what is at `path` now (`stamp`) in the manifest, reading its
/// content only when its `stat` changed; a change goes to `out` unless
/// this is a first look.
fn observe(
    ws: &Workspace,
    manifest: &mut Manifest,
    store: Option<&mut ObjectStore>,
    path: String,
    stamp: Stamp,
    baseline: bool,
    out: &mut Scanned,
) -> Result<(), FileError> {
    let scan = manifest.scans;
    let paths = &mut manifest.paths;
    if let Some(known) = paths.get_mut(&path) {
        if stamp.unchanged(&known.stamp) {
            known.seen = scan;
            return Ok(());
        }
    }
    let entry = match read_entry(ws, &path, &stamp, store) {
        Ok(entry) => entry,
        // Vanished meanwhile: the end of the scan counts it gone.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) if is_store_failure(&e) => return Err(FileError::Io(e)),
        // Unreadable: noted, not fatal; its content is not kept.
        Err(e) => {
            log::warn!("could not read workspace entry {path} for its checkpoint: {e}");
            Entry {
                kind: stamp.kind,
                object: None,
                size: stamp.size,
                mode: stamp.mode,
                mtime_ns: stamp.mtime_ns,
            }
        }
    };
    let known = Known {
        stamp,
        entry: entry.clone(),
        seen: scan,
    };
    let before = match paths.get_mut(&path) {
        Some(slot) => Some(std::mem::replace(slot, known).entry),
        None => {
            paths.insert(path.clone(), known);
            None
        }
    };
    let changed = match &before {
        None => true,
        Some(before) => !before.same_as(&entry),
    };
    if changed && !baseline {
        out.changes.push(Change {
            path,
            before,
            after: Some(entry),
        });
    }
    Ok(())
}

/// Looks at `touched` only (what the watch reported), the rest of the
/// manifest taken as it was. `Ok(None)` when the paths cannot tell the
/// whole story and the tree must be walked: a folder appeared where there
/// was none, a touched file has other names (hard links), or a path's
/// folder is no longer a folder.
pub fn scan_touched(
    ws: &Workspace,
    manifest: &mut Manifest,
    mut store: Option<&mut ObjectStore>,
    touched: &std::collections::BTreeSet<String>,
) -> Result<Option<Scanned>, FileError> {
    let mut now: Vec<(String, Option<Stamp>)> = Vec::with_capacity(touched.len());
    let mut setid_cleared = 0;
    for path in touched {
        let leaf = path.rsplit('/').next().unwrap_or(path);
        // An upload in flight is not the workspace's yet; one that is gone
        // (renamed into place, or abandoned) counts as made and removed
        // below, like any name: the sandbox can use such a name too.
        let in_flight = leaf.starts_with(crate::workspace::UPLOAD_TEMP_PREFIX);
        let Ok(rel) = Workspace::clean_path(path) else {
            return Ok(None);
        };
        let Some((parent, name)) = rel.split_last() else {
            continue;
        };
        let dir = match ws.open_dir(&parent, None) {
            Ok(dir) => dir,
            Err(FileError::NotFound(_)) => {
                now.push((path.clone(), None));
                continue;
            }
            Err(_) => return Ok(None),
        };
        let stat = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(rustix::io::Errno::NOENT) => {
                now.push((path.clone(), None));
                continue;
            }
            Err(e) => return Err(FileError::Io(e.into())),
        };
        let mut stamp = Stamp::of(&stat);
        if in_flight {
            // Another name of a workspace file under an upload's name: a
            // write through it changes that file.
            if stamp.kind != EntryKind::Dir && stamp.links > 1 {
                return Ok(None);
            }
            continue;
        }
        let was = manifest.paths.get(path).map(|k| k.stamp.kind);
        if stamp.kind == EntryKind::Dir && was != Some(EntryKind::Dir) {
            return Ok(None);
        }
        if stamp.kind != EntryKind::Dir && stamp.links > 1 {
            return Ok(None);
        }
        if matches!(stamp.kind, EntryKind::File | EntryKind::Dir)
            && stamp.mode & crate::workspace::SETID_BITS != 0
        {
            let Ok(cname) = std::ffi::CString::new(name) else {
                return Ok(None);
            };
            if crate::workspace::clear_setid_at(std::os::fd::AsFd::as_fd(&dir), &cname).is_ok() {
                setid_cleared += 1;
                if let Ok(again) = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    stamp = Stamp::of(&again);
                }
            }
        }
        now.push((path.clone(), Some(stamp)));
    }
    // A folder that is gone takes its contents with it: only a walk knows
    // them all for sure. A path made and removed since the last look may
    // have been another name of a file that is still here (written
    // through, then unlinked): only a walk sees that file's change.
    if now
        .iter()
        .any(|(p, s)| s.is_none() && manifest.get(p).is_none_or(|e| e.kind == EntryKind::Dir))
    {
        return Ok(None);
    }
    manifest.scans += 1;
    let mut out = Scanned {
        changes: Vec::new(),
        setid_cleared,
        walked: false,
    };
    for (path, stamp) in now {
        match stamp {
            Some(stamp) => observe(
                ws,
                manifest,
                store.as_deref_mut(),
                path,
                stamp,
                false,
                &mut out,
            )?,
            None => {
                if let Some(known) = manifest.paths.remove(&path) {
                    out.changes.push(Change {
                        path,
                        before: Some(known.entry),
                        after: None,
                    });
                }
            }
        }
    }
    out.changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Some(out))
}

/// Threads for the walk: the machine's cores, at most 4 (the walk is
/// `stat` calls; past a few threads they wait on each other in the
/// kernel).
fn walk_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(4)
}

/// What one walking thread saw.
#[derive(Default)]
struct Seen {
    entries: Vec<(String, Stamp)>,
    setid_cleared: usize,
}

/// Every path's stamp (the walk, on several threads), setuid bits
/// stripped on the way. Upload temporaries are left out.
fn look(ws: &Workspace) -> Result<Vec<Seen>, FileError> {
    ws.walk_parallel(walk_threads(), |path, stat, dir, name, seen: &mut Seen| {
        let leaf = path.rsplit('/').next().unwrap_or(path);
        if leaf.starts_with(crate::workspace::UPLOAD_TEMP_PREFIX) {
            return false;
        }
        let mut stat = *stat;
        if matches!(kind_of(&stat), EntryKind::File | EntryKind::Dir)
            && stat.st_mode & crate::workspace::SETID_BITS != 0
        {
            match crate::workspace::clear_setid_at(dir, name) {
                Ok(()) => {
                    seen.setid_cleared += 1;
                    if let Ok(again) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                        stat = again;
                    }
                }
                Err(e) => log::warn!("could not clear the setuid bit of {path}: {e}"),
            }
        }
        seen.entries.push((path.to_owned(), Stamp::of(&stat)));
        true
    })
}

/// Errors from the store's own folder (as opposed to the workspace entry
/// being read): the disk under `data/` is full or unwritable.
fn is_store_failure(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<StoreFailure>().is_some())
}

/// Marks an error as the store's, see [`is_store_failure`].
#[derive(Debug)]
struct StoreFailure(io::Error);

impl std::fmt::Display for StoreFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the checkpoint store could not be written: {}", self.0)
    }
}

impl std::error::Error for StoreFailure {}

fn store_err(e: io::Error) -> io::Error {
    io::Error::other(StoreFailure(e))
}

/// Reads what a checkpoint keeps of `path`: a file's content (opened
/// through the confined walk, without following, and checked to be the
/// file that was stat'ed), a link's target.
fn read_entry(
    ws: &Workspace,
    path: &str,
    stamp: &Stamp,
    store: Option<&mut ObjectStore>,
) -> io::Result<Entry> {
    let mut entry = Entry {
        kind: stamp.kind,
        object: None,
        size: stamp.size,
        mode: stamp.mode,
        mtime_ns: stamp.mtime_ns,
    };
    let Some(store) = store else {
        return Ok(entry);
    };
    if !matches!(stamp.kind, EntryKind::File | EntryKind::Link) {
        return Ok(entry);
    }
    let rel = Workspace::clean_path(path).map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
    let Some((parent, name)) = rel.split_last() else {
        return Ok(entry);
    };
    let dir = ws.open_dir(&parent, None).map_err(|e| match e {
        FileError::NotFound(_) | FileError::SymlinkRefused(_) | FileError::NotADirectory(_) => {
            io::Error::from(io::ErrorKind::NotFound)
        }
        other => io::Error::other(other.to_string()),
    })?;
    let replaced = || io::Error::new(io::ErrorKind::NotFound, "replaced while being read");
    if stamp.kind == EntryKind::Link {
        let target = rustix::fs::readlinkat(&dir, name, Vec::new())?;
        entry.object = Some(store.put_bytes(target.as_bytes()).map_err(store_err)?);
        return Ok(entry);
    }
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| match e {
        rustix::io::Errno::LOOP => replaced(),
        e => io::Error::from(e),
    })?;
    let opened = Stamp::of(&rustix::fs::fstat(&fd)?);
    if opened.inode != stamp.inode || opened.kind != EntryKind::File {
        return Err(replaced());
    }
    let mut file = std::fs::File::from(fd);
    entry.object = Some(store.put_file(&mut file).map_err(store_err)?);
    Ok(entry)
}

/// `ObjectId` as a plain hex string in stored JSON.
mod object_id {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::ObjectId;

    pub fn serialize<S: Serializer>(id: &Option<ObjectId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(id.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ObjectId>, D::Error> {
        let hex: Option<String> = Option::deserialize(d)?;
        hex.map(|hex| {
            ObjectId::parse(&hex)
                .ok_or_else(|| serde::de::Error::custom("a checkpoint object id is malformed"))
        })
        .transpose()
    }
}
