//! Putting paths back: the plan (what each path must become) and its
//! application through the same confinement as the file routes: folders
//! opened one name at a time without following links, new content written
//! to a temporary name and renamed over, so a link the sandbox planted
//! never leads a write outside the workspace.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Timestamps, Uid};
use rustix::io::Errno;

use super::scan::{Change, Entry, Manifest};
use super::store::ObjectStore;
use crate::protocol::EntryKind;
use crate::sandbox::SANDBOX_UID;
use crate::workspace::{FileError, Workspace};

/// Start of a restored file's temporary name, beside its final one.
const RESTORE_TEMP_PREFIX: &str = ".ironclaw-restore-";

/// One path to bring to `want` (`None`: absent).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub path: String,
    pub want: Option<Entry>,
}

/// What the workspace must look like to be as it was before the first of
/// `since`: each path any of them touched goes back to the state the
/// earliest one found it in. Paths already in that state are left out.
pub fn plan(since: &[Change], manifest: &Manifest) -> Vec<Step> {
    let mut targets: BTreeMap<&str, &Option<Entry>> = BTreeMap::new();
    for change in since {
        targets
            .entry(change.path.as_str())
            .or_insert(&change.before);
    }
    targets
        .into_iter()
        .filter(|(path, want)| !already(manifest.get(path), want.as_ref()))
        .map(|(path, want)| Step {
            path: path.to_owned(),
            want: want.clone(),
        })
        .collect()
}

fn already(now: Option<&Entry>, want: Option<&Entry>) -> bool {
    match (now, want) {
        (None, None) => true,
        (Some(now), Some(want)) => {
            now.kind == want.kind
                && now.mode == want.mode
                && match want.kind {
                    EntryKind::Dir | EntryKind::Other => true,
                    EntryKind::File | EntryKind::Link => {
                        want.object.is_some() && now.object == want.object
                    }
                }
        }
        _ => false,
    }
}

/// Applies `steps`: removals deepest first, then folders, files and links
/// shallowest first. Answers every path it changed, as a change from what
/// the manifest held to what is there now (the manifest follows); on an
/// error, what was done before it and the error.
pub fn apply(
    ws: &Workspace,
    store: &ObjectStore,
    manifest: &mut Manifest,
    steps: &[Step],
) -> (Vec<Change>, Option<FileError>) {
    let mut done = Vec::new();
    let mut removals: Vec<&Step> = steps
        .iter()
        .filter(|s| {
            let now = manifest.get(&s.path);
            match (now, &s.want) {
                (Some(_), None) => true,
                (Some(now), Some(want)) => {
                    (now.kind == EntryKind::Dir) != (want.kind == EntryKind::Dir)
                }
                (None, _) => false,
            }
        })
        .collect();
    // Children sort after their folder; reversed, they go first.
    removals.sort_by(|a, b| b.path.cmp(&a.path));
    for step in removals {
        if let Err(e) = remove(ws, manifest, &step.path, &mut done) {
            return (done, Some(e));
        }
    }
    for step in steps {
        let Some(want) = &step.want else { continue };
        let before = manifest.get(&step.path).cloned();
        match put(ws, store, &step.path, want) {
            Ok(Some(stat)) => {
                manifest.set(&step.path, &stat, want.clone());
                done.push(Change {
                    path: step.path.clone(),
                    before,
                    after: Some(want.clone()),
                });
            }
            Ok(None) => {}
            Err(e) => return (done, Some(e)),
        }
    }
    (done, None)
}

/// Removes `path` (a folder with everything under it), noting each
/// removed path in `done`.
fn remove(
    ws: &Workspace,
    manifest: &mut Manifest,
    path: &str,
    done: &mut Vec<Change>,
) -> Result<(), FileError> {
    let rel = Workspace::clean_path(path)?;
    let Some((parent, name)) = rel.split_last() else {
        return Ok(());
    };
    let dir = match ws.open_dir(&parent, None) {
        Ok(dir) => dir,
        // Its folder is gone already, and it with it.
        Err(FileError::NotFound(_)) => return forget_tree(manifest, path, done),
        Err(e) => return Err(e),
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            remove_tree(dir.as_fd(), name).map_err(|e| FileError::Io(e.into()))?
        }
        Ok(_) => rustix::fs::unlinkat(&dir, name, AtFlags::empty())
            .map_err(|e| FileError::Io(e.into()))?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(FileError::Io(e.into())),
    }
    forget_tree(manifest, path, done)
}

/// Notes `path` and everything the manifest had under it as removed.
fn forget_tree(
    manifest: &mut Manifest,
    path: &str,
    done: &mut Vec<Change>,
) -> Result<(), FileError> {
    let prefix = format!("{path}/");
    let mut gone: Vec<String> = manifest
        .paths()
        .filter(|p| *p == path || p.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    gone.sort();
    for p in gone {
        let before = manifest.get(&p).cloned();
        manifest.forget(&p);
        done.push(Change {
            path: p,
            before,
            after: None,
        });
    }
    Ok(())
}

/// Removes folder `name` in `dir` and everything in it, links removed as
/// links, never followed.
fn remove_tree(dir: BorrowedFd<'_>, name: &str) -> Result<(), Errno> {
    let fd = rustix::fs::openat(dir, name, crate::workspace::dir_flags(), Mode::empty())?;
    let mut names = Vec::new();
    {
        let mut reader = Dir::read_from(&fd)?;
        while let Some(item) = reader.read() {
            let item = item?;
            let raw = item.file_name().to_bytes();
            if !crate::workspace::is_dot_or_dot_dot(raw) {
                names.push(item.file_name().to_owned());
            }
        }
    }
    for child in names {
        let stat = rustix::fs::statat(&fd, child.as_c_str(), AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let child = child.to_string_lossy().into_owned();
            remove_tree(fd.as_fd(), &child)?;
        } else {
            rustix::fs::unlinkat(&fd, child.as_c_str(), AtFlags::empty())?;
        }
    }
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// Makes `path` hold `want`. Answers its new `stat`, or `None` when the
/// kind cannot be put back (a fifo or socket).
fn put(
    ws: &Workspace,
    store: &ObjectStore,
    path: &str,
    want: &Entry,
) -> Result<Option<rustix::fs::Stat>, FileError> {
    let rel = Workspace::clean_path(path)?;
    let Some((parent, name)) = rel.split_last() else {
        return Ok(None);
    };
    let dir = ws.open_dir(&parent, None)?;
    let io_err = |e: Errno| FileError::Io(e.into());
    match want.kind {
        EntryKind::Dir => {
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o700)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io_err(e)),
            }
            let fd = rustix::fs::openat(&dir, name, crate::workspace::dir_flags(), Mode::empty())
                .map_err(io_err)?;
            set_owner_and_mode(fd.as_fd(), want.mode, true);
        }
        EntryKind::File => {
            let object = want.object.as_ref().ok_or_else(|| {
                FileError::Io(io::Error::other(format!(
                    "the checkpoint does not hold the content of {path}"
                )))
            })?;
            let temp = temp_name(name);
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let fd = rustix::fs::openat(&dir, temp.as_str(), flags, Mode::from_raw_mode(0o600))
                .map_err(io_err)?;
            let mut file = std::fs::File::from(fd);
            let written = store.copy_to(object, &mut io::BufWriter::new(&mut file));
            if let Err(e) = written {
                let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
                return Err(FileError::Io(e));
            }
            set_owner_and_mode(file.as_fd(), want.mode, false);
            let time = timespec(want.mtime_ns);
            let _ = rustix::fs::futimens(
                &file,
                &Timestamps {
                    last_access: time,
                    last_modification: time,
                },
            );
            drop(file);
            if let Err(e) = rustix::fs::renameat(&dir, temp.as_str(), &dir, name) {
                let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
                return Err(io_err(e));
            }
        }
        EntryKind::Link => {
            let object = want.object.as_ref().ok_or_else(|| {
                FileError::Io(io::Error::other(format!(
                    "the checkpoint does not hold the target of {path}"
                )))
            })?;
            let mut target = Vec::new();
            store.copy_to(object, &mut target).map_err(FileError::Io)?;
            let target = String::from_utf8(target).map_err(|_| {
                FileError::Io(io::Error::other(format!(
                    "the link {path} points to a name that is not UTF-8"
                )))
            })?;
            let temp = temp_name(name);
            rustix::fs::symlinkat(target.as_str(), &dir, temp.as_str()).map_err(io_err)?;
            let _ = rustix::fs::chownat(
                &dir,
                temp.as_str(),
                Some(Uid::from_raw(SANDBOX_UID)),
                Some(Gid::from_raw(SANDBOX_UID)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            if let Err(e) = rustix::fs::renameat(&dir, temp.as_str(), &dir, name) {
                let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
                return Err(io_err(e));
            }
        }
        EntryKind::Other => {
            log::warn!("{path} was a fifo or socket; it is not put back");
            return Ok(None);
        }
    }
    rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .map(Some)
        .map_err(io_err)
}

/// A temporary name beside `name`, unique within the process.
fn temp_name(name: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let keep: String = name.chars().take(32).collect();
    format!("{RESTORE_TEMP_PREFIX}{}-{n}-{keep}", std::process::id())
}

/// Hands a restored entry to the sandbox user with its recorded mode. A
/// server that cannot chown (not root) leaves it writable by everyone
/// instead, as the file routes do, keeping the execute bits it had.
fn set_owner_and_mode(fd: BorrowedFd<'_>, mode: u32, is_dir: bool) {
    let mode = mode & 0o777;
    let owned = rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(SANDBOX_UID)),
        Some(Gid::from_raw(SANDBOX_UID)),
    );
    let mode = match owned {
        Ok(()) => mode,
        Err(_) if is_dir => 0o777,
        Err(_) => 0o666 | (mode & 0o111),
    };
    if let Err(e) = rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)) {
        log::warn!("could not set the mode of a restored workspace entry: {e}");
    }
}

fn timespec(ns: i64) -> rustix::fs::Timespec {
    rustix::fs::Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}
