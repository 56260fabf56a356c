//! Which workspace paths were touched, told by the kernel (fanotify)
//! instead of found by walking the tree: a session's workspace is its own
//! filesystem (`crate::quota`), so a filesystem-wide mark sees exactly its
//! changes, whoever makes them (the sandbox through its bind mount, the
//! file routes, a restore).
//!
//! The watch only narrows where the scan looks; whenever it cannot be sure
//! it says [`Touched::Everything`] and the scan walks the whole tree as
//! before: the kernel's queue overflowed, a folder was created, removed or
//! moved (its subtree moves without events of its own), a folder's handle
//! no longer resolves, or an event is not understood. Opening a file
//! counts as touching it, so writes through a memory map made after the
//! open are caught by its `stat` too.
//!
//! Needs root (`CAP_SYS_ADMIN` for a filesystem mark, `CAP_DAC_READ_SEARCH`
//! to resolve handles): where the workspace is a plain folder or the server
//! is not root, there is no watch and every look walks.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What happened since the last drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// Only these workspace-relative paths (files and links; a folder
    /// only for a change of its own mode).
    Paths(BTreeSet<String>),
    /// Anything may have changed: walk.
    Everything,
}

/// Events that say a path may have changed. `FAN_OPEN` because a file
/// opened for writing may be written through a memory map after it is
/// closed, which raises no event of its own.
const MASK: u64 = libc::FAN_CREATE
    | libc::FAN_DELETE
    | libc::FAN_MOVED_FROM
    | libc::FAN_MOVED_TO
    | libc::FAN_MODIFY
    | libc::FAN_ATTRIB
    | libc::FAN_CLOSE_WRITE
    | libc::FAN_OPEN
    | libc::FAN_ONDIR;

/// Events on a folder that change the tree's shape.
const SHAPE: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO;

/// Bytes of the fixed event header (`struct fanotify_event_metadata`).
const METADATA_LEN: usize = 24;

/// A filesystem-wide watch on one workspace.
#[derive(Debug)]
pub struct Watch {
    /// The fanotify group.
    group: OwnedFd,
    /// The workspace root, opened: handles resolve against its filesystem.
    mount: OwnedFd,
    /// The root's path as `/proc/self/fd` links show it.
    root: PathBuf,
}

impl Watch {
    /// A watch on `root` when it is the root of its own filesystem and the
    /// process may watch it; `None` otherwise (the caller walks).
    pub fn start(root: &Path) -> Option<Watch> {
        let canonical = root.canonicalize().ok()?;
        let parent = canonical.parent()?;
        let own = std::fs::symlink_metadata(&canonical).ok()?;
        let above = std::fs::symlink_metadata(parent).ok()?;
        use std::os::unix::fs::MetadataExt;
        if own.dev() == above.dev() {
            return None;
        }
        match Watch::open(&canonical) {
            Ok(watch) => Some(watch),
            Err(e) => {
                log::info!("no change watch on a workspace ({e}); every command walks it");
                None
            }
        }
    }

    fn open(root: &Path) -> io::Result<Watch> {
        let flags = libc::FAN_CLASS_NOTIF
            | libc::FAN_CLOEXEC
            | libc::FAN_NONBLOCK
            | libc::FAN_REPORT_DFID_NAME;
        let event_flags = (libc::O_RDONLY | libc::O_CLOEXEC) as libc::c_uint;
        // SAFETY: plain syscall with constant flags; the result is checked.
        let fd = unsafe { libc::fanotify_init(flags, event_flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let group = unsafe { OwnedFd::from_raw_fd(fd) };
        let path = CString::new(root.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("a workspace path holds a NUL byte"))?;
        // SAFETY: `path` is a valid C string that outlives the call.
        let marked = unsafe {
            libc::fanotify_mark(
                group.as_raw_fd(),
                libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM,
                MASK,
                libc::AT_FDCWD,
                path.as_ptr(),
            )
        };
        if marked < 0 {
            return Err(io::Error::last_os_error());
        }
        let mount = std::fs::File::open(root)?.into();
        Ok(Watch {
            group,
            mount,
            root: root.to_path_buf(),
        })
    }

    /// Everything touched since the last drain.
    pub fn drain(&mut self) -> Touched {
        let mut touched = BTreeSet::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rustix::io::read(&self.group, &mut buf) {
                Ok(0) | Err(rustix::io::Errno::AGAIN) => break,
                Ok(n) => n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    log::warn!("the workspace watch could not be read ({e}); walking");
                    return Touched::Everything;
                }
            };
            if self.parse(&buf[..n], &mut touched).is_none() {
                // Drain what is left so the next look starts clean.
                while matches!(rustix::io::read(&self.group, &mut buf), Ok(n) if n > 0) {}
                return Touched::Everything;
            }
        }
        Touched::Paths(touched)
    }

    /// Adds the paths of the events in `data`; `None` when only a walk
    /// can tell what changed.
    fn parse(&self, mut data: &[u8], touched: &mut BTreeSet<String>) -> Option<()> {
        while data.len() >= METADATA_LEN {
            let event_len = u32::from_ne_bytes(data[0..4].try_into().ok()?) as usize;
            let metadata_len = u16::from_ne_bytes(data[6..8].try_into().ok()?) as usize;
            let mask = u64::from_ne_bytes(data[8..16].try_into().ok()?);
            if event_len < METADATA_LEN || event_len > data.len() || metadata_len > event_len {
                return None;
            }
            let event = &data[..event_len];
            data = &data[event_len..];
            if mask & libc::FAN_Q_OVERFLOW != 0 {
                return None;
            }
            let on_dir = mask & libc::FAN_ONDIR != 0;
            if on_dir && mask & SHAPE != 0 {
                return None;
            }
            if on_dir && mask & (libc::FAN_ATTRIB | libc::FAN_MODIFY) == 0 {
                // A folder opened or closed: nothing of it changed.
                continue;
            }
            let (dir, name) = info(&event[metadata_len..])?;
            let dir = self.resolve(dir)?;
            let path = match (dir.is_empty(), name.is_empty() || name == ".") {
                (_, true) if dir.is_empty() => continue,
                (_, true) => dir,
                (true, false) => name,
                (false, false) => format!("{dir}/{name}"),
            };
            touched.insert(path);
        }
        Some(())
    }

    /// The workspace-relative path of a folder handle (`""` for the root);
    /// `None` when it no longer resolves or lies outside.
    fn resolve(&self, handle: &[u8]) -> Option<String> {
        // `struct file_handle` is a u32 and an i32 before the bytes: build
        // it in u32 words so it is aligned.
        let words = 2 + handle.len().saturating_sub(8).div_ceil(4);
        let mut buf = vec![0u32; words];
        if handle.len() < 8 {
            return None;
        }
        // SAFETY: `buf` holds `words * 4` bytes, at least `handle.len()`.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), words * 4) };
        bytes[..handle.len()].copy_from_slice(handle);
        // SAFETY: `buf` is an aligned, complete `struct file_handle` whose
        // `handle_bytes` the kernel wrote; the mount descriptor is ours.
        let fd = unsafe {
            libc::open_by_handle_at(
                self.mount.as_raw_fd(),
                buf.as_mut_ptr().cast::<libc::file_handle>(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: a new descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let at = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        let rel = at.strip_prefix(&self.root).ok()?;
        rel.to_str().map(str::to_owned)
    }
}

/// The folder handle and the name of an event's first `DFID_NAME` (or
/// `DFID`) record.
fn info(mut records: &[u8]) -> Option<(&[u8], String)> {
    while records.len() >= 4 {
        let kind = records[0];
        let len = u16::from_ne_bytes(records[2..4].try_into().ok()?) as usize;
        if len < 4 || len > records.len() {
            return None;
        }
        let record = &records[..len];
        records = &records[len..];
        let named = kind == libc::FAN_EVENT_INFO_TYPE_DFID_NAME;
        if !named && kind != libc::FAN_EVENT_INFO_TYPE_DFID {
            continue;
        }
        // header (4) + fsid (8), then the handle.
        let handle = record.get(12..)?;
        let size = u32::from_ne_bytes(handle.get(0..4)?.try_into().ok()?) as usize;
        let handle_end = 8 + size;
        let full = handle.get(..handle_end)?;
        let name = if named {
            let rest = handle.get(handle_end..)?;
            let end = rest.iter().position(|b| *b == 0).unwrap_or(rest.len());
            String::from_utf8(rest[..end].to_vec()).ok()?
        } else {
            String::new()
        };
        return Some((full, name));
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::info;

    /// One info record as the kernel lays it out: header, fsid, handle,
    /// then the name for `DFID_NAME`.
    fn record(kind: u8, handle: &[u8], name: Option<&str>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&[0u8; 8]); // fsid
        body.extend_from_slice(&(handle.len() as u32).to_ne_bytes());
        body.extend_from_slice(&1i32.to_ne_bytes()); // handle type
        body.extend_from_slice(handle);
        if let Some(name) = name {
            body.extend_from_slice(name.as_bytes());
            body.push(0);
        }
        while (body.len() + 4) % 4 != 0 {
            body.push(0);
        }
        let mut out = vec![kind, 0];
        out.extend_from_slice(&((body.len() + 4) as u16).to_ne_bytes());
        out.extend_from_slice(&body);
        out
    }

    #[test]
    fn records_give_the_folder_handle_and_the_name() {
        let rec = record(
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
            &[7, 7, 7, 7],
            Some("a.txt"),
        );
        let (handle, name) = info(&rec).unwrap();
        assert_eq!(handle.len(), 8 + 4);
        assert_eq!(&handle[8..], &[7, 7, 7, 7]);
        assert_eq!(name, "a.txt");
        // A folder's own event: handle, no name.
        let rec = record(libc::FAN_EVENT_INFO_TYPE_DFID, &[1, 2], None);
        assert_eq!(info(&rec).unwrap().1, "");
        // Another record type first is skipped.
        let mut two = record(9, &[0; 4], None);
        two.extend(record(
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME,
            &[3; 4],
            Some("b"),
        ));
        assert_eq!(info(&two).unwrap().1, "b");
    }

    #[test]
    fn malformed_records_are_refused_not_read_past() {
        let good = record(libc::FAN_EVENT_INFO_TYPE_DFID_NAME, &[1; 8], Some("x"));
        // Cut anywhere: never a panic, never a path.
        for cut in 0..good.len() {
            let _ = info(&good[..cut]);
        }
        // A length beyond the data, a length too small, a handle size
        // beyond the record.
        let mut long = good.clone();
        long[2..4].copy_from_slice(&1000u16.to_ne_bytes());
        assert!(info(&long).is_none());
        let mut short = good.clone();
        short[2..4].copy_from_slice(&2u16.to_ne_bytes());
        assert!(info(&short).is_none());
        let mut huge = good;
        huge[12..16].copy_from_slice(&9999u32.to_ne_bytes());
        assert!(info(&huge).is_none());
        // A name that is not UTF-8: no path (the caller walks).
        let mut bad = record(libc::FAN_EVENT_INFO_TYPE_DFID_NAME, &[1; 4], Some("ok"));
        let at = bad.len() - 4;
        bad[at] = 0xff;
        assert!(info(&bad).is_none());
    }
}
