//! The session workspace on the host: path confinement, listing, download,
//! upload, delete and usage under the file routes, and the confined walk
//! the undo checkpoints use (DESIGN.md §3, §4).
//!
//! # Confinement
//!
//! The sandbox runs arbitrary code as uid 1000 with write access to this
//! folder, so everything below the root is hostile: symlinks to `/etc`, a
//! folder swapped for a link between check and use, fifos, hard links. Every
//! operation therefore
//!
//! 1. validates the caller's path without touching the disk
//!    ([`Workspace::clean_path`]): no `..`, no absolute path other than
//!    `/workspace/...`, no NUL, backslash or control character, no over-long
//!    name;
//! 2. opens the workspace root and walks the path one name at a time with
//!    `openat(O_DIRECTORY | O_NOFOLLOW)`, each step relative to the folder
//!    opened by the step before, so a concurrent swap can make the walk fail
//!    but never redirect it;
//! 3. touches the last name with `*at` calls on its folder's descriptor,
//!    again without following a link.
//!
//! # Policy
//!
//! - Symlinks are never followed, wherever they point, even inside the
//!   workspace: reading, writing or listing through one is refused with
//!   `symlink_refused` (400). Listings show a link (and any fifo, socket or
//!   device) as a `file` of size 0, so the person sees it and can delete it;
//!   deleting removes the link itself, never its target.
//! - Only regular files download. Fifos, sockets and devices are refused
//!   before they are opened (opening a fifo would block).
//! - An upload streams into a temporary file beside the target and is renamed
//!   over it: readers see the old file or the new one, never a mix, and a
//!   hard link or symlink at the target is replaced, never written through.
//!   On any error, or when the request is dropped mid-stream, the temporary
//!   file and the folders the upload created are removed.
//! - New files and folders are handed to the sandbox user: chown to
//!   [`SANDBOX_UID`] (mode 0600/0700) when the server runs as root, else
//!   opened up (0666/0777) as `sandbox::prepare_workspace` does for the
//!   root, so the agent can change what the person uploaded. Other host
//!   users are kept out by the data directory's 0700 above it.
//! - An upload claims each chunk's bytes in the quota ledger
//!   ([`crate::quota::Claim`]) before writing it, so parallel uploads cannot
//!   pass `files.quota_mb` together; when the workspace is its own
//!   filesystem, "no space left" from the disk is the quota too.
//! - After every command, setuid and setgid bits are stripped from what the
//!   sandbox left (by the undo scan, `crate::undo`): the mount is `nosuid`,
//!   but a copy of the workspace elsewhere would not be.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::{Stream, StreamExt};
use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Stat, Uid, CWD};
use rustix::io::Errno;
use tokio::io::AsyncWriteExt;

use crate::protocol::{ErrorCode, FileEntry, FileKind};
use crate::quota::Claim;
use crate::sandbox::{SANDBOX_UID, WORKSPACE_MOUNT};

/// Longest file or folder name, in bytes: Linux `NAME_MAX`. No file system
/// under the workspace can hold a longer one, so it is refused up front with
/// a clear message rather than an `ENAMETOOLONG` from deep in a walk.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest workspace-relative path, in bytes: Linux `PATH_MAX`. It also
/// bounds a walk to at most 2048 `openat` calls.
pub const MAX_PATH_BYTES: usize = 4096;

/// Most entries one listing returns. The agent can fill a folder with
/// millions of files; past this the listing is cut (and a warning logged)
/// rather than building a response of hundreds of megabytes. The shell is
/// the tool for such folders.
pub const MAX_LIST_ENTRIES: usize = 10_000;

/// Most entries [`Workspace::usage`] visits before an upload. Far above any
/// real workspace, small enough that a pathological tree costs well under a
/// second; past it the count is a lower bound.
pub const MAX_USAGE_ENTRIES: usize = 200_000;

/// Deepest folder level the tree walks (usage, checkpoints) descend into. Each
/// level holds one open descriptor, so this bounds descriptors per walk; a
/// deeper tree exists only to exhaust them.
pub const MAX_WALK_DEPTH: usize = 64;

/// Mode of folders the server creates, before the hand-off to the sandbox:
/// the owner only (the sandbox user once chowned); nobody else on the host.
const DIR_MODE: u32 = 0o700;

/// Mode of files the server creates, before the hand-off to the sandbox:
/// the owner only, as [`DIR_MODE`].
const FILE_MODE: u32 = 0o600;

/// Mode bits that hand a program its file's owner or group: stripped from
/// everything the sandbox leaves behind (by the undo scan after each command).
pub(crate) const SETID_BITS: u32 = 0o6000;

/// Folder mode when the server cannot chown (it does not run as root): the
/// sandbox user must still be able to write, as in `prepare_workspace`.
const SHARED_DIR_MODE: u32 = 0o777;

/// File mode when the server cannot chown, for the same reason.
const SHARED_FILE_MODE: u32 = 0o666;

/// Start of an upload's temporary name. The dot hides it from a plain `ls`
/// in the sandbox while the upload runs; it never outlives the upload.
pub(crate) const UPLOAD_TEMP_PREFIX: &str = ".ironclaw-upload-";

/// Temporary names tried before an upload gives up. Names are unique per
/// process, so a clash means the agent guessed one; a few retries suffice.
const UPLOAD_TEMP_ATTEMPTS: u32 = 8;

/// Makes each upload's temporary name unique within the process.
static UPLOAD_COUNTER: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------- errors

/// Everything that can go wrong with a workspace file. The message is a
/// sentence for the person; paths in it are as the agent sees them
/// (`/workspace/...`), never the host path.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The path was refused before touching the disk; the message says why.
    #[error("{0}")]
    BadPath(String),
    #[error("`{0}` does not exist.")]
    NotFound(String),
    #[error("`{0}` is not a regular file (it is a pipe, socket or device), so it cannot be read or replaced here.")]
    NotAFile(String),
    #[error("`{0}` is a file, not a folder.")]
    NotADirectory(String),
    #[error("`{0}` is a folder. Give the path of a file inside it.")]
    IsADirectory(String),
    #[error("The folder `{0}` is not empty. Delete what is inside it first.")]
    DirectoryNotEmpty(String),
    #[error("`{0}` is a symbolic link. IronClaw never follows links in the workspace; use the path of the real file, or delete the link.")]
    SymlinkRefused(String),
    #[error("The upload is larger than the limit of {}.", human_bytes(*.limit))]
    TooLarge { limit: u64 },
    #[error("The upload would exceed the workspace quota of {} ({} already used). Delete some files first.", human_bytes(*.quota), human_bytes(*.used))]
    QuotaExceeded { quota: u64, used: u64 },
    #[error("The upload was interrupted before it finished ({0}); nothing was saved. Try again.")]
    UploadInterrupted(String),
    #[error("IronClaw may not change `{0}`: the sandbox made it read-only. Change its permissions from the shell, or use another name.")]
    PermissionDenied(String),
    /// The disk under the data directory is full: the server's problem,
    /// not the session's quota.
    #[error("The server's disk is full, so nothing could be saved. Tell whoever runs IronClaw; deleting files from this workspace will not help.")]
    DiskFull,
    #[error("The workspace could not be accessed: {0}.")]
    Io(io::Error),
}

impl From<io::Error> for FileError {
    /// A full disk (ENOSPC, EDQUOT) gets its own error; anything else is an
    /// I/O error.
    fn from(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(code)
                if code == Errno::NOSPC.raw_os_error() || code == Errno::DQUOT.raw_os_error() =>
            {
                FileError::DiskFull
            }
            _ if e.kind() == io::ErrorKind::StorageFull => FileError::DiskFull,
            _ => FileError::Io(e),
        }
    }
}

impl FileError {
    /// The code on the wire; its HTTP status comes with it.
    pub fn code(&self) -> ErrorCode {
        match self {
            FileError::BadPath(_) => ErrorCode::BadPath,
            FileError::NotFound(_) => ErrorCode::NotFound,
            FileError::NotAFile(_) => ErrorCode::NotAFile,
            FileError::NotADirectory(_) => ErrorCode::NotADirectory,
            FileError::IsADirectory(_) => ErrorCode::IsADirectory,
            FileError::DirectoryNotEmpty(_) => ErrorCode::DirectoryNotEmpty,
            FileError::SymlinkRefused(_) => ErrorCode::SymlinkRefused,
            FileError::TooLarge { .. } => ErrorCode::TooLarge,
            FileError::QuotaExceeded { .. } => ErrorCode::QuotaExceeded,
            FileError::UploadInterrupted(_) => ErrorCode::UploadInterrupted,
            FileError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            FileError::DiskFull => ErrorCode::DiskFull,
            FileError::Io(_) => ErrorCode::IoError,
        }
    }
}

impl From<Errno> for FileError {
    fn from(e: Errno) -> Self {
        FileError::from(io::Error::from(e))
    }
}

/// `52428800` → `50 MiB`, for messages.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let shown = format!("{value:.1}");
    let shown = shown.strip_suffix(".0").unwrap_or(&shown);
    format!("{shown} {}", UNITS[unit])
}

// ---------------------------------------------------------------- paths

/// A validated workspace-relative path: names joined by `/`, none empty,
/// `.` or `..`, none holding NUL, `\` or a control character, each at most
/// [`MAX_NAME_BYTES`], all at most [`MAX_PATH_BYTES`]. The empty path is the
/// workspace root. Only [`Workspace::clean_path`] and [`RelPath::join`] make
/// one, so holding a `RelPath` means the checks passed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelPath(String);

impl RelPath {
    pub fn root() -> Self {
        RelPath(String::new())
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// `a/b/c.txt`, or `""` for the root: the form of `FileEntry.path`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last name, `None` for the root.
    pub fn file_name(&self) -> Option<&str> {
        self.split_last().map(|(_, name)| name)
    }

    /// `child` inside `self`, e.g. a multipart file name inside its `dir`.
    pub fn join(&self, child: &RelPath) -> Result<RelPath, FileError> {
        let joined = match (self.is_root(), child.is_root()) {
            (true, _) => child.0.clone(),
            (false, true) => self.0.clone(),
            (false, false) => format!("{}/{}", self.0, child.0),
        };
        if joined.len() > MAX_PATH_BYTES {
            return Err(path_too_long());
        }
        Ok(RelPath(joined))
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|name| !name.is_empty())
    }

    pub(crate) fn split_last(&self) -> Option<(RelPath, &str)> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rsplit_once('/') {
            Some((parent, name)) => (RelPath(parent.to_owned()), name),
            None => (RelPath::root(), self.0.as_str()),
        })
    }

    /// One more name read from the disk. Not validated: the result is only
    /// shown (listings, messages), never resolved.
    fn child_unchecked(&self, name: &str) -> RelPath {
        if self.is_root() {
            RelPath(name.to_owned())
        } else {
            RelPath(format!("{}/{name}", self.0))
        }
    }
}

/// As the agent sees it: `/workspace/a/b`, or `/workspace` for the root.
impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str(WORKSPACE_MOUNT)
        } else {
            write!(f, "{WORKSPACE_MOUNT}/{}", self.0)
        }
    }
}

fn bad_path(message: &str) -> FileError {
    FileError::BadPath(message.to_owned())
}

fn path_too_long() -> FileError {
    FileError::BadPath(format!(
        "The path is longer than {MAX_PATH_BYTES} bytes. Use a shorter path."
    ))
}

// ---------------------------------------------------------------- workspace

/// One session's workspace folder on the host.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// `data/workspaces/<session id>`: named by the server and trusted,
    /// unlike everything below it.
    root: PathBuf,
}

/// Byte limits for one upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadLimits {
    /// Largest single upload; past it `too_large` (413).
    pub max_bytes: u64,
    /// Most bytes the whole workspace may hold once the upload is in (the
    /// file it replaces does not count); past it `quota_exceeded` (507).
    /// `None`: no quota.
    pub quota_bytes: Option<u64>,
}

/// An opened file ready to stream to the client.
#[derive(Debug)]
pub struct Download {
    pub file: tokio::fs::File,
    /// Size when opened; the agent may change the file while it streams.
    pub len: u64,
    /// Guessed from the extension; `application/octet-stream` when unknown.
    pub content_type: String,
    /// The last name of the path, for `Content-Disposition`.
    pub file_name: String,
}

impl Workspace {
    /// The workspace at `root`, created (mode 0755, handed to the sandbox
    /// user) when missing. A root that exists but is not a real folder (a
    /// file, a symlink) is refused.
    pub fn open(root: PathBuf) -> Result<Self, FileError> {
        match std::fs::symlink_metadata(&root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(FileError::Io(io::Error::other(
                    "the session's workspace on the server is not a folder",
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(DIR_MODE)
                    .create(&root)?;
                let fd = rustix::fs::openat(CWD, &root, dir_flags(), Mode::empty())?;
                hand_to_sandbox(fd.as_fd(), true);
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Workspace { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Validates a path from a REST caller (already percent-decoded) without
    /// touching the disk, and normalises it: `./a//b/` → `a/b`; `""`, `.`,
    /// `/workspace` → the root; `/workspace/a` → `a` (the path as the agent
    /// sees it). Refused: `..` anywhere (even where it would stay inside),
    /// any other absolute path, NUL, backslashes (a Windows path is a
    /// mistake here), control characters (they break headers and logs),
    /// over-long names and paths. A literal `%2e%2e` is a legal name.
    pub fn clean_path(user_path: &str) -> Result<RelPath, FileError> {
        if user_path.contains('\0') {
            return Err(bad_path("The path contains a NUL byte."));
        }
        let relative = if user_path == WORKSPACE_MOUNT {
            ""
        } else if let Some(rest) = user_path
            .strip_prefix(WORKSPACE_MOUNT)
            .and_then(|rest| rest.strip_prefix('/'))
        {
            rest
        } else if user_path.starts_with('/') {
            return Err(bad_path(
                "Absolute paths are refused. Give a path inside the workspace, like `data/report.csv` or `/workspace/data/report.csv`.",
            ));
        } else {
            user_path
        };
        if relative.contains('\\') {
            return Err(bad_path(
                "Backslashes are not allowed in paths. Separate folders with `/`.",
            ));
        }
        if relative.chars().any(char::is_control) {
            return Err(bad_path(
                "The path contains a control character (such as a newline). Rename the file.",
            ));
        }
        let mut names: Vec<&str> = Vec::new();
        for name in relative.split('/') {
            match name {
                "" | "." => {}
                ".." => {
                    return Err(bad_path(
                        "`..` is not allowed in paths. Give the path from the workspace root.",
                    ))
                }
                _ if name.len() > MAX_NAME_BYTES => {
                    return Err(FileError::BadPath(format!(
                    "A name in the path is longer than {MAX_NAME_BYTES} bytes. Use a shorter name."
                )))
                }
                _ => names.push(name),
            }
        }
        let joined = names.join("/");
        if joined.len() > MAX_PATH_BYTES {
            return Err(path_too_long());
        }
        Ok(RelPath(joined))
    }

    /// The entries of folder `dir`: folders first, then files, each by name.
    /// Symlinks and special files appear as `file` of size 0; folders have
    /// size 0. At most [`MAX_LIST_ENTRIES`].
    pub fn list(&self, dir: &RelPath) -> Result<Vec<FileEntry>, FileError> {
        let mut reader = Dir::new(self.open_dir(dir, None)?)?;
        let mut entries = Vec::new();
        while let Some(item) = reader.read() {
            let item = item?;
            let raw_name = item.file_name();
            if is_dot_or_dot_dot(raw_name.to_bytes()) {
                continue;
            }
            if entries.len() >= MAX_LIST_ENTRIES {
                log::warn!("listing of {dir} cut at {MAX_LIST_ENTRIES} entries");
                break;
            }
            let stat = match rustix::fs::statat(reader.fd()?, raw_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) => stat,
                // Removed by the sandbox since the folder was read.
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(e.into()),
            };
            let name = String::from_utf8_lossy(raw_name.to_bytes()).into_owned();
            let (kind, size) = match FileType::from_raw_mode(stat.st_mode) {
                FileType::Directory => (FileKind::Dir, 0),
                FileType::RegularFile => (FileKind::File, file_size(&stat)),
                _ => (FileKind::File, 0),
            };
            entries.push(FileEntry {
                path: dir.child_unchecked(&name).0,
                name,
                kind,
                size,
                modified: rfc3339(&stat),
            });
        }
        entries.sort_by(|a, b| {
            let rank = |e: &FileEntry| e.kind != FileKind::Dir;
            rank(a).cmp(&rank(b)).then_with(|| a.name.cmp(&b.name))
        });
        Ok(entries)
    }

    /// Opens the regular file at `path` for streaming. Links, folders and
    /// special files are refused without being opened for reading.
    pub async fn open_read(&self, path: &RelPath) -> Result<Download, FileError> {
        let (workspace, target) = (self.clone(), path.clone());
        let (file, len) = blocking(move || workspace.open_read_sync(&target)).await?;
        let file_name = path.file_name().unwrap_or_default().to_owned();
        let content_type = mime_guess::from_path(&file_name)
            .first_or_octet_stream()
            .to_string();
        Ok(Download {
            file: tokio::fs::File::from_std(file),
            len,
            content_type,
            file_name,
        })
    }

    fn open_read_sync(&self, path: &RelPath) -> Result<(std::fs::File, u64), FileError> {
        let Some((parent, name)) = path.split_last() else {
            return Err(FileError::IsADirectory(path.to_string()));
        };
        let dir = self.open_dir(&parent, None)?;
        // Checked before opening so a fifo is never opened at all...
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| classify(e, dir.as_fd(), name, path))?;
        require_regular(&stat, path)?;
        // ...and again on what was opened, in case it was swapped meanwhile.
        // O_NONBLOCK keeps a swapped-in fifo from blocking the open; it has
        // no effect on reads of a regular file.
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::empty())
            .map_err(|e| classify(e, dir.as_fd(), name, path))?;
        let stat = rustix::fs::fstat(&fd)?;
        require_regular(&stat, path)?;
        Ok((std::fs::File::from(fd), file_size(&stat)))
    }

    /// Streams `body` into the file at `path`, creating missing folders,
    /// and returns the bytes written. The file appears whole or not at all;
    /// an existing folder, link or special file at `path` is refused. Over
    /// `limits` the upload stops with `too_large` or `quota_exceeded` and
    /// nothing is left behind.
    pub async fn write_stream<S, E>(
        &self,
        path: &RelPath,
        body: S,
        limits: UploadLimits,
    ) -> Result<u64, FileError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: fmt::Display,
    {
        self.write_stream_sized(path, body, limits, None).await
    }

    /// [`Workspace::write_stream`] for a body whose length the client
    /// declared: the whole length is claimed against the quota before the
    /// first byte is read, so an upload that cannot fit is refused at once.
    pub async fn write_stream_sized<S, E>(
        &self,
        path: &RelPath,
        body: S,
        limits: UploadLimits,
        declared: Option<u64>,
    ) -> Result<u64, FileError>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: fmt::Display,
    {
        let (workspace, target) = (self.clone(), path.clone());
        let (upload, file, used_elsewhere) =
            blocking(move || workspace.begin_upload(&target, limits)).await?;
        // `upload` removes the temporary file and new folders when dropped
        // uncommitted, and `claim` gives its bytes back: on every error
        // below and if this future is dropped.
        let mut claim = limits
            .quota_bytes
            .map(|quota| (Claim::open(&self.root, used_elsewhere, quota), quota));
        let over = |quota, used| FileError::QuotaExceeded { quota, used };
        if let (Some((claim, quota)), Some(declared)) = (claim.as_mut(), declared) {
            claim.grow(declared).map_err(|e| over(*quota, e.used))?;
        }
        let mut claimed = declared.unwrap_or(0);
        let mut file = tokio::fs::File::from_std(file);
        let mut body = std::pin::pin!(body);
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| FileError::UploadInterrupted(e.to_string()))?;
            written = written.saturating_add(chunk.len() as u64);
            if written > limits.max_bytes {
                return Err(FileError::TooLarge {
                    limit: limits.max_bytes,
                });
            }
            if let Some((claim, quota)) = claim.as_mut() {
                if written > claimed {
                    claim
                        .grow(written - claimed)
                        .map_err(|e| over(*quota, e.used))?;
                    claimed = written;
                }
            }
            file.write_all(&chunk)
                .await
                .map_err(|e| self.full_is_quota(e, limits))?;
        }
        file.flush()
            .await
            .map_err(|e| self.full_is_quota(e, limits))?;
        // Durable before the rename makes it visible, so a crash cannot
        // leave an empty file where the old one was.
        file.sync_data()
            .await
            .map_err(|e| self.full_is_quota(e, limits))?;
        drop(file);
        blocking(move || upload.commit()).await?;
        if let Some((claim, _)) = claim {
            claim.commit(written);
        }
        Ok(written)
    }

    /// A write error. "No space left" on a workspace that is its own
    /// filesystem is the quota when that filesystem holds the quota's worth;
    /// below it, the image's backing disk (the host's) is full, which is
    /// `disk_full`, not the person's quota.
    fn full_is_quota(&self, e: io::Error, limits: UploadLimits) -> FileError {
        let full = matches!(
            e.raw_os_error().map(Errno::from_raw_os_error),
            Some(Errno::NOSPC | Errno::DQUOT)
        );
        if !full {
            return FileError::Io(e);
        }
        match limits.quota_bytes {
            Some(quota) if crate::quota::is_mount_point(&self.root).unwrap_or(false) => {
                let used = rustix::fs::statvfs(&self.root)
                    .map(|v| v.f_blocks.saturating_sub(v.f_bfree) * v.f_frsize)
                    .unwrap_or(quota);
                if used >= quota {
                    FileError::QuotaExceeded { quota, used }
                } else {
                    FileError::DiskFull
                }
            }
            _ => FileError::from(e),
        }
    }

    /// The blocking first half of an upload: walk (creating folders), check
    /// the target, measure usage, create the temporary file.
    fn begin_upload(
        &self,
        target: &RelPath,
        limits: UploadLimits,
    ) -> Result<(PendingUpload, std::fs::File, u64), FileError> {
        let Some((parent, name)) = target.split_last() else {
            return Err(bad_path(
                "An upload needs a file name, not the workspace root.",
            ));
        };
        let mut upload = PendingUpload {
            target: target.clone(),
            name: name.to_owned(),
            dir: None,
            temp: None,
            created: Vec::new(),
        };
        let dir = self.open_dir(&parent, Some(&mut upload.created))?;
        let replaced = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => file_size(&stat),
                FileType::Directory => return Err(FileError::IsADirectory(target.to_string())),
                FileType::Symlink => return Err(FileError::SymlinkRefused(target.to_string())),
                _ => return Err(FileError::NotAFile(target.to_string())),
            },
            Err(Errno::NOENT) => 0,
            Err(e) => return Err(classify(e, dir.as_fd(), name, target)),
        };
        let dir = upload.dir.insert(dir);
        let used_elsewhere = self.usage()?.saturating_sub(replaced);
        if let Some(quota) = limits.quota_bytes {
            if used_elsewhere > quota {
                return Err(FileError::QuotaExceeded {
                    quota,
                    used: used_elsewhere,
                });
            }
        }
        let (temp, fd) = create_temp(dir.as_fd(), target)?;
        upload.temp = Some(temp);
        hand_to_sandbox(fd.as_fd(), false);
        Ok((upload, std::fs::File::from(fd), used_elsewhere))
    }

    /// Deletes the file, link or empty folder at `path`. A link is removed
    /// itself; its target is never touched. The root cannot be deleted.
    pub fn delete(&self, path: &RelPath) -> Result<(), FileError> {
        let Some((parent, name)) = path.split_last() else {
            return Err(bad_path("The workspace root itself cannot be deleted."));
        };
        let dir = self.open_dir(&parent, None)?;
        let stat = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| classify(e, dir.as_fd(), name, path))?;
        let flags = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        rustix::fs::unlinkat(&dir, name, flags).map_err(|e| match e {
            Errno::NOTEMPTY | Errno::EXIST => FileError::DirectoryNotEmpty(path.to_string()),
            e => classify(e, dir.as_fd(), name, path),
        })
    }

    /// Bytes used: the apparent sizes of the regular files, links not
    /// followed, hard links counted once per name, at most
    /// [`MAX_USAGE_ENTRIES`] entries and [`MAX_WALK_DEPTH`] levels. Uploads
    /// in flight are left out: the quota ledger counts their bytes.
    pub fn usage(&self) -> Result<u64, FileError> {
        let mut total: u64 = 0;
        let complete = self.walk(MAX_USAGE_ENTRIES, |path, stat, _, _| {
            let descend = true;
            let in_flight = path
                .rsplit('/')
                .next()
                .is_some_and(|name| name.starts_with(UPLOAD_TEMP_PREFIX));
            if FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile && !in_flight {
                total = total.saturating_add(file_size(stat));
            }
            descend
        })?;
        if !complete {
            log::warn!("workspace usage counted over the first {MAX_USAGE_ENTRIES} entries only");
        }
        Ok(total)
    }

    /// Opens the root. Its last name is not followed either: a session's
    /// folder is made by the server and is never a link.
    fn open_root(&self) -> Result<OwnedFd, FileError> {
        rustix::fs::openat(CWD, &self.root, dir_flags(), Mode::empty()).map_err(|e| match e {
            Errno::NOENT => FileError::NotFound(RelPath::root().to_string()),
            e => FileError::from(io::Error::from(e)),
        })
    }

    /// Opens folder `dir` by walking from the root one name at a time,
    /// never following a link. With `created`, missing folders are made,
    /// handed to the sandbox, and recorded so a failed upload removes them.
    pub(crate) fn open_dir(
        &self,
        dir: &RelPath,
        mut created: Option<&mut Vec<CreatedDir>>,
    ) -> Result<OwnedFd, FileError> {
        let mut current = self.open_root()?;
        let mut walked = RelPath::root();
        for name in dir.names() {
            walked = walked.child_unchecked(name);
            let (next, made) = step_into(current.as_fd(), name, &walked, created.is_some())?;
            let parent = std::mem::replace(&mut current, next);
            if let (true, Some(list)) = (made, created.as_deref_mut()) {
                list.push(CreatedDir {
                    parent,
                    name: name.to_owned(),
                });
            }
        }
        Ok(current)
    }

    /// Visits every entry below the root depth-first, in directory order,
    /// without following links; `visit` answers whether to go into a
    /// folder. Returns `false` when `limit` entries cut the walk short.
    /// Folders that vanish or cannot be read are skipped: the sandbox may
    /// be changing the tree as we walk it.
    pub(crate) fn walk(
        &self,
        limit: usize,
        mut visit: impl FnMut(&str, &Stat, BorrowedFd<'_>, &CStr) -> bool,
    ) -> Result<bool, FileError> {
        let mut stack: Vec<(Dir, String)> = vec![(Dir::new(self.open_root()?)?, String::new())];
        let mut seen = 0usize;
        loop {
            let depth = stack.len();
            let Some((reader, prefix)) = stack.last_mut() else {
                break;
            };
            let Some(item) = next_entry(reader) else {
                stack.pop();
                continue;
            };
            let raw_name = item.file_name();
            if is_dot_or_dot_dot(raw_name.to_bytes()) {
                continue;
            }
            let dir = reader.fd()?;
            let Ok(stat) = rustix::fs::statat(dir, raw_name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            seen += 1;
            if seen > limit {
                return Ok(false);
            }
            let path = format!("{prefix}{}", String::from_utf8_lossy(raw_name.to_bytes()));
            let wanted = visit(&path, &stat, dir, raw_name);
            let descend = wanted
                && FileType::from_raw_mode(stat.st_mode) == FileType::Directory
                && depth < MAX_WALK_DEPTH;
            let child = if descend {
                rustix::fs::openat(dir, raw_name, dir_flags(), Mode::empty())
                    .ok()
                    .and_then(|fd| Dir::new(fd).ok())
            } else {
                None
            };
            if let Some(child) = child {
                stack.push((child, format!("{path}/")));
            }
        }
        Ok(true)
    }
}

impl Workspace {
    /// [`Workspace::walk`] on `threads` threads, for the walk after every
    /// command, whose cost grows with the workspace: each thread walks
    /// folders depth-first and hands a folder it finds to a thread that has
    /// run out of work. `visit` gets each entry with the thread's own
    /// accumulator and answers whether to go into a folder; the
    /// accumulators come back, in no particular order. Names that are not
    /// UTF-8 are not visited. Open descriptors stay bounded: a thread
    /// holds one per level it is in, and at most `threads` folders wait to
    /// be taken.
    pub(crate) fn walk_parallel<A: Default + Send>(
        &self,
        threads: usize,
        visit: impl Fn(&str, &Stat, BorrowedFd<'_>, &CStr, &mut A) -> bool + Sync,
    ) -> Result<Vec<A>, FileError> {
        let threads = threads.max(1);
        let pool = WalkPool {
            state: std::sync::Mutex::new(WalkState {
                jobs: vec![(self.open_root()?, String::new(), 1)],
                idle: 0,
                done: false,
            }),
            wake: std::sync::Condvar::new(),
            threads,
        };
        let accs = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| scope.spawn(|| pool.work(&visit)))
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        Ok(accs)
    }
}

/// The next entry of a folder being walked; `None` when it is done, or
/// cannot be read any further (logged: the sandbox may be changing it).
fn next_entry(reader: &mut Dir) -> Option<rustix::fs::DirEntry> {
    match reader.read()? {
        Ok(item) => Some(item),
        Err(e) => {
            log::warn!("skipping an unreadable workspace folder: {e}");
            None
        }
    }
}

/// A folder waiting to be walked: its descriptor, its path with a
/// trailing `/` (empty for the root), its depth.
type WalkJob = (OwnedFd, String, usize);

struct WalkState {
    jobs: Vec<WalkJob>,
    /// Threads waiting for a job.
    idle: usize,
    /// Every thread was idle with no job left: the walk is over.
    done: bool,
}

struct WalkPool {
    state: std::sync::Mutex<WalkState>,
    wake: std::sync::Condvar,
    threads: usize,
}

impl WalkPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, WalkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next job, or `None` once every thread is out of work.
    fn take(&self) -> Option<WalkJob> {
        let mut state = self.lock();
        loop {
            if state.done {
                return None;
            }
            if let Some(job) = state.jobs.pop() {
                return Some(job);
            }
            state.idle += 1;
            if state.idle == self.threads {
                state.done = true;
                self.wake.notify_all();
                return None;
            }
            state = self.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            state.idle -= 1;
        }
    }

    /// Hands `job` to an idle thread; gives it back if none waits.
    fn offer(&self, job: WalkJob) -> Option<WalkJob> {
        let mut state = self.lock();
        if state.idle > state.jobs.len() {
            state.jobs.push(job);
            self.wake.notify_one();
            None
        } else {
            Some(job)
        }
    }

    fn work<A: Default>(
        &self,
        visit: &(impl Fn(&str, &Stat, BorrowedFd<'_>, &CStr, &mut A) -> bool + Sync),
    ) -> A {
        let mut acc = A::default();
        while let Some((fd, prefix, depth)) = self.take() {
            let Ok(reader) = Dir::new(fd) else { continue };
            let mut stack = vec![(reader, prefix, depth)];
            while let Some((reader, prefix, depth)) = stack.last_mut() {
                let depth = *depth;
                let Some(item) = next_entry(reader) else {
                    stack.pop();
                    continue;
                };
                let raw_name = item.file_name();
                let Ok(name) = std::str::from_utf8(raw_name.to_bytes()) else {
                    continue;
                };
                if is_dot_or_dot_dot(raw_name.to_bytes()) {
                    continue;
                }
                let Ok(dir) = reader.fd() else { continue };
                let Ok(stat) = rustix::fs::statat(dir, raw_name, AtFlags::SYMLINK_NOFOLLOW) else {
                    continue;
                };
                let path = format!("{prefix}{name}");
                let wanted = visit(&path, &stat, dir, raw_name, &mut acc);
                let descend = wanted
                    && FileType::from_raw_mode(stat.st_mode) == FileType::Directory
                    && depth < MAX_WALK_DEPTH;
                if !descend {
                    continue;
                }
                let Ok(child) = rustix::fs::openat(dir, raw_name, dir_flags(), Mode::empty())
                else {
                    continue;
                };
                let job = (child, format!("{path}/"), depth + 1);
                if let Some((fd, prefix, depth)) = self.offer(job) {
                    if let Ok(reader) = Dir::new(fd) {
                        stack.push((reader, prefix, depth));
                    }
                }
            }
        }
        acc
    }
}

/// Runs blocking filesystem work off the async threads.
async fn blocking<T, F>(work: F) -> Result<T, FileError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, FileError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| FileError::Io(io::Error::other(format!("file task failed: {e}"))))?
}

/// Flags for every folder on a walk: a link, even as the last name, fails.
pub(crate) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// One step of a walk: open folder `name` in `dir`, creating it when asked.
/// Returns the folder and whether this call made it.
fn step_into(
    dir: BorrowedFd<'_>,
    name: &str,
    walked: &RelPath,
    create: bool,
) -> Result<(OwnedFd, bool), FileError> {
    match rustix::fs::openat(dir, name, dir_flags(), Mode::empty()) {
        Ok(fd) => return Ok((fd, false)),
        Err(Errno::NOENT) if create => {}
        Err(e) => return Err(classify(e, dir, name, walked)),
    }
    let made = match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(DIR_MODE)) {
        Ok(()) => true,
        // Made by the sandbox meanwhile: use it if it is a real folder.
        Err(Errno::EXIST) => false,
        Err(e) => return Err(classify(e, dir, name, walked)),
    };
    // Opened again without following: the sandbox may have swapped the new
    // folder for a link since `mkdirat`.
    let fd = rustix::fs::openat(dir, name, dir_flags(), Mode::empty())
        .map_err(|e| classify(e, dir, name, walked))?;
    if made {
        hand_to_sandbox(fd.as_fd(), true);
    }
    Ok((fd, made))
}

/// Turns the error of an operation on `name` in `dir` into what the person
/// needs to know; `shown` is the path to name in the message.
fn classify(err: Errno, dir: BorrowedFd<'_>, name: &str, shown: &RelPath) -> FileError {
    let shown = shown.to_string();
    match err {
        Errno::NOENT => FileError::NotFound(shown),
        Errno::LOOP => FileError::SymlinkRefused(shown),
        // `O_DIRECTORY | O_NOFOLLOW` on a link may fail either way; look
        // (without following) to say which it was.
        Errno::NOTDIR => match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink => {
                FileError::SymlinkRefused(shown)
            }
            _ => FileError::NotADirectory(shown),
        },
        Errno::ISDIR => FileError::IsADirectory(shown),
        Errno::ACCESS | Errno::PERM | Errno::ROFS => FileError::PermissionDenied(shown),
        Errno::NAMETOOLONG => path_too_long(),
        e => FileError::from(io::Error::from(e)),
    }
}

/// Only a regular file may be read or replaced.
fn require_regular(stat: &Stat, path: &RelPath) -> Result<(), FileError> {
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => Ok(()),
        FileType::Directory => Err(FileError::IsADirectory(path.to_string())),
        FileType::Symlink => Err(FileError::SymlinkRefused(path.to_string())),
        _ => Err(FileError::NotAFile(path.to_string())),
    }
}

/// Opens `name` in `dir` without following a link (and without blocking on
/// a fifo swapped in), and clears its setuid and setgid bits if it is still
/// a regular file or folder.
pub(crate) fn clear_setid_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<(), Errno> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let fd = rustix::fs::openat(dir, name, flags, Mode::empty())?;
    let stat = rustix::fs::fstat(&fd)?;
    if !matches!(
        FileType::from_raw_mode(stat.st_mode),
        FileType::RegularFile | FileType::Directory
    ) {
        return Ok(());
    }
    let mode = stat.st_mode & 0o7777 & !SETID_BITS;
    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
}

/// Makes a new file or folder the sandbox user's (see the module docs).
/// Failure only costs the agent write access, so it is logged, not raised.
pub(crate) fn hand_to_sandbox(fd: BorrowedFd<'_>, is_dir: bool) {
    let owner = Some(Uid::from_raw(SANDBOX_UID));
    let group = Some(Gid::from_raw(SANDBOX_UID));
    match rustix::fs::fchown(fd, owner, group) {
        Ok(()) => {}
        Err(Errno::PERM) => {
            let mode = if is_dir {
                SHARED_DIR_MODE
            } else {
                SHARED_FILE_MODE
            };
            if let Err(e) = rustix::fs::fchmod(fd, Mode::from_raw_mode(mode)) {
                log::warn!("could not open a new workspace entry to the sandbox: {e}");
            }
        }
        Err(e) => log::warn!("could not hand a new workspace entry to the sandbox: {e}"),
    }
}

/// Creates an upload's temporary file in `dir`: a fresh name, `O_EXCL` so
/// nothing the sandbox put there is reused.
fn create_temp(dir: BorrowedFd<'_>, target: &RelPath) -> Result<(String, OwnedFd), FileError> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    for _ in 0..UPLOAD_TEMP_ATTEMPTS {
        let nanos = Utc::now().timestamp_subsec_nanos();
        let count = UPLOAD_COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = format!(
            "{UPLOAD_TEMP_PREFIX}{}-{count}-{nanos}.tmp",
            std::process::id()
        );
        match rustix::fs::openat(dir, temp.as_str(), flags, Mode::from_raw_mode(FILE_MODE)) {
            Ok(fd) => return Ok((temp, fd)),
            Err(Errno::EXIST) => continue,
            Err(e) => return Err(classify(e, dir, &temp, target)),
        }
    }
    Err(FileError::Io(io::Error::other(
        "no free name for the upload's temporary file",
    )))
}

pub(crate) fn is_dot_or_dot_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

pub(crate) fn file_size(stat: &Stat) -> u64 {
    u64::try_from(stat.st_size).unwrap_or(0)
}

// `Stat`'s field types differ between architectures; the conversions are
// no-ops on some of them only.
#[allow(clippy::useless_conversion)]
fn rfc3339(stat: &Stat) -> String {
    let nanos = u32::try_from(stat.st_mtime_nsec).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(i64::from(stat.st_mtime), nanos)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Secs, true)
}

// ---------------------------------------------------------------- uploads

/// A folder an upload made, removed again if the upload fails.
#[derive(Debug)]
pub(crate) struct CreatedDir {
    parent: OwnedFd,
    name: String,
}

/// An upload between its first byte and its rename. Dropping it without
/// [`PendingUpload::commit`] removes the temporary file and the (still
/// empty) folders it created.
#[derive(Debug)]
struct PendingUpload {
    target: RelPath,
    /// Last name of `target`, in `dir`.
    name: String,
    dir: Option<OwnedFd>,
    /// Name of the temporary file in `dir`, once created.
    temp: Option<String>,
    /// In creation order, outermost first.
    created: Vec<CreatedDir>,
}

impl PendingUpload {
    /// Renames the finished temporary file over the target.
    fn commit(mut self) -> Result<(), FileError> {
        let (Some(dir), Some(temp)) = (self.dir.as_ref(), self.temp.as_deref()) else {
            return Err(FileError::Io(io::Error::other(
                "upload committed before it began",
            )));
        };
        // A rename never follows a link at the target: if the sandbox put
        // one there since the check, the link is replaced, not written to.
        match rustix::fs::renameat(dir, temp, dir, self.name.as_str()) {
            Ok(()) => {
                self.temp = None;
                self.created.clear();
                Ok(())
            }
            Err(Errno::ISDIR | Errno::NOTEMPTY | Errno::EXIST) => {
                Err(FileError::IsADirectory(self.target.to_string()))
            }
            Err(e) => Err(classify(e, dir.as_fd(), &self.name, &self.target)),
        }
    }
}

impl Drop for PendingUpload {
    fn drop(&mut self) {
        if let (Some(dir), Some(temp)) = (self.dir.as_ref(), self.temp.as_deref()) {
            if let Err(e) = rustix::fs::unlinkat(dir, temp, AtFlags::empty()) {
                log::warn!("could not remove the unfinished upload {temp}: {e}");
            }
        }
        // Innermost first; a folder the sandbox has since filled stays.
        for made in self.created.iter().rev() {
            let _ = rustix::fs::unlinkat(&made.parent, made.name.as_str(), AtFlags::REMOVEDIR);
        }
    }
}

/// The risk classifier's window on the workspace (DESIGN.md §5): what is at
/// a path, and the contents of the files a call runs. Every look goes
/// through the same `openat` confinement as the REST routes, so a symlink
/// in the workspace never leads the review outside it; a link is reported
/// as such, never followed.
impl crate::risk::WorkspaceView for Workspace {
    fn entry(&self, path: &str) -> crate::risk::Entry {
        use crate::risk::Entry;
        let Ok(rel) = Workspace::clean_path(path) else {
            return Entry::Other;
        };
        let Some((parent, name)) = rel.split_last() else {
            return Entry::Folder;
        };
        let dir = match self.open_dir(&parent, None) {
            Ok(dir) => dir,
            Err(FileError::NotFound(_)) => return Entry::Missing,
            Err(_) => return Entry::Other,
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => match FileType::from_raw_mode(stat.st_mode) {
                FileType::RegularFile => Entry::File {
                    size: file_size(&stat),
                },
                FileType::Directory => Entry::Folder,
                FileType::Symlink => Entry::Link,
                _ => Entry::Other,
            },
            Err(Errno::NOENT) => Entry::Missing,
            Err(_) => Entry::Other,
        }
    }

    fn read(&self, path: &str) -> Option<Vec<u8>> {
        use std::io::Read;
        let rel = Workspace::clean_path(path).ok()?;
        let (file, len) = self.open_read_sync(&rel).ok()?;
        let limit = crate::risk::MAX_JUDGED_FILE_BYTES as u64;
        if len > limit {
            return None;
        }
        let mut bytes = Vec::new();
        // One byte past the limit tells a file that grew meanwhile.
        file.take(limit + 1).read_to_end(&mut bytes).ok()?;
        (bytes.len() as u64 <= limit).then_some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::AsyncReadExt;

    const NO_LIMITS: UploadLimits = UploadLimits {
        max_bytes: u64::MAX,
        quota_bytes: None,
    };

    /// What the host file outside the workspace holds; no test may read or
    /// change it through the workspace.
    const SECRET: &[u8] = b"host secret\n";

    /// A workspace `ws/` beside `outside/secret.txt`, the host file the
    /// sandbox tries to reach.
    struct Fixture {
        _tmp: tempfile::TempDir,
        ws: Workspace,
        root: PathBuf,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        let ws = Workspace::open(root.clone()).unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret.txt"), SECRET).unwrap();
        Fixture {
            _tmp: tmp,
            ws,
            root,
            outside,
        }
    }

    impl Fixture {
        /// The sandbox's `mkdir -p` + write, straight on the host.
        fn sandbox_write(&self, path: &str, data: &[u8]) {
            let path = self.root.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, data).unwrap();
        }

        /// `ln -s target /workspace/name`.
        fn sandbox_link(&self, target: &Path, name: &str) {
            symlink(target, self.root.join(name)).unwrap();
        }

        /// The outside folder is exactly as the fixture made it.
        fn assert_outside_untouched(&self) {
            assert_eq!(tree(&self.outside), vec!["secret.txt".to_string()]);
            assert_eq!(fs::read(self.outside.join("secret.txt")).unwrap(), SECRET);
        }
    }

    fn rel(path: &str) -> RelPath {
        Workspace::clean_path(path).unwrap()
    }

    fn body(parts: Vec<Vec<u8>>) -> impl Stream<Item = Result<Bytes, io::Error>> {
        futures_util::stream::iter(parts.into_iter().map(|part| Ok(Bytes::from(part))))
    }

    async fn put(ws: &Workspace, path: &str, data: &[u8]) -> Result<u64, FileError> {
        ws.write_stream(&rel(path), body(vec![data.to_vec()]), NO_LIMITS)
            .await
    }

    async fn get(ws: &Workspace, path: &str) -> Result<Vec<u8>, FileError> {
        let mut download = ws.open_read(&rel(path)).await?;
        let mut data = Vec::new();
        download.file.read_to_end(&mut data).await?;
        Ok(data)
    }

    /// Every path under `dir`, links not followed, relative and sorted.
    fn tree(dir: &Path) -> Vec<String> {
        fn visit(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(base).unwrap().display().to_string());
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    visit(base, &path, out);
                }
            }
        }
        let mut out = Vec::new();
        visit(dir, dir, &mut out);
        out.sort();
        out
    }

    fn mkfifo(path: &Path) {
        rustix::fs::mkfifoat(CWD, path, Mode::from_raw_mode(0o644)).unwrap();
    }

    /// A body the test feeds chunk by chunk, to look at the disk mid-upload.
    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Result<Bytes, io::Error>>,
        impl Stream<Item = Result<Bytes, io::Error>>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (tx, stream)
    }

    /// Waits until some folder under `root` holds an upload's temporary file.
    async fn wait_for_temp_file(root: &Path) {
        for _ in 0..500 {
            if tree(root).iter().any(|p| p.contains(UPLOAD_TEMP_PREFIX)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the upload never created its temporary file");
    }

    // ------------------------------------------------------------ clean_path

    #[test]
    fn clean_path_accepts_and_normalises() {
        let long_name = "n".repeat(MAX_NAME_BYTES);
        let cases: Vec<(&str, &str)> = vec![
            ("a.txt", "a.txt"),
            ("a/b/c.txt", "a/b/c.txt"),
            ("./a", "a"),
            ("a//b", "a/b"),
            ("a/./b/", "a/b"),
            ("", ""),
            (".", ""),
            ("/workspace", ""),
            ("/workspace/", ""),
            ("/workspace/data/x.csv", "data/x.csv"),
            ("/workspace//./a", "a"),
            // The router decodes percent-escapes before us; what is left is
            // a literal, legal name inside the workspace.
            ("%2e%2e/x", "%2e%2e/x"),
            ("...", "..."),
            ("..a/b..", "..a/b.."),
            (".hidden", ".hidden"),
            ("données été.csv", "données été.csv"),
            ("日本語.txt", "日本語.txt"),
            (long_name.as_str(), long_name.as_str()),
        ];
        for (input, expected) in cases {
            let cleaned = Workspace::clean_path(input)
                .unwrap_or_else(|e| panic!("{input:?} was refused: {e}"));
            assert_eq!(cleaned.as_str(), expected, "input {input:?}");
        }
    }

    #[test]
    fn clean_path_refuses_attacks() {
        let name_256 = "n".repeat(MAX_NAME_BYTES + 1);
        let name_300 = "x".repeat(300);
        let accents_256 = "é".repeat(128);
        let path_5000 = vec!["p".repeat(250); 20].join("/");
        let cases: Vec<(&str, &str)> = vec![
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("..", "`..`"),
            ("a/..", "`..`"),
            ("a/../b", "`..`"),
            ("/workspace/../etc/passwd", "`..`"),
            ("/etc/passwd", "Absolute"),
            ("/", "Absolute"),
            ("//etc/passwd", "Absolute"),
            ("/workspacex/a", "Absolute"),
            ("/tmp/workspace/a", "Absolute"),
            ("a\\..\\b", "Backslashes"),
            ("C:\\Windows", "Backslashes"),
            ("a\0b", "NUL"),
            ("/etc/passwd\0.txt", "NUL"),
            ("a\nb", "control character"),
            ("evil\r\nSet-Cookie: x", "control character"),
            ("a\u{7f}", "control character"),
            (name_256.as_str(), "longer than 255 bytes"),
            (name_300.as_str(), "longer than 255 bytes"),
            (accents_256.as_str(), "longer than 255 bytes"),
            (path_5000.as_str(), "longer than 4096 bytes"),
        ];
        for (input, reason) in cases {
            match Workspace::clean_path(input) {
                Err(e @ FileError::BadPath(_)) => {
                    assert_eq!(
                        (e.code().as_str(), e.code().http_status()),
                        ("bad_path", 400)
                    );
                    assert!(e.to_string().contains(reason), "{input:?}: {e}");
                }
                other => panic!("{input:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn rel_paths_join_split_and_show_as_the_agent_sees_them() {
        let cases = [
            ("", "a.txt", "a.txt", "/workspace/a.txt"),
            ("dir", "a.txt", "dir/a.txt", "/workspace/dir/a.txt"),
            ("dir/sub", "x/y", "dir/sub/x/y", "/workspace/dir/sub/x/y"),
            ("dir", "", "dir", "/workspace/dir"),
            ("", "", "", "/workspace"),
        ];
        for (dir, name, joined, shown) in cases {
            let path = rel(dir).join(&rel(name)).unwrap();
            assert_eq!((path.as_str(), path.to_string().as_str()), (joined, shown));
        }
        assert_eq!(rel("a/b/c.txt").file_name(), Some("c.txt"));
        assert_eq!(RelPath::root().file_name(), None);
        let deep = rel(&vec!["p".repeat(250); 16].join("/"));
        let too_long = deep.join(&deep).unwrap_err();
        assert_eq!(too_long.code(), "bad_path");
    }

    #[test]
    fn errors_have_stable_codes_statuses_and_sentences() {
        let p = || "/workspace/x".to_string();
        let cases = [
            (FileError::BadPath("Bad.".into()), "bad_path", 400),
            (FileError::SymlinkRefused(p()), "symlink_refused", 400),
            (
                FileError::UploadInterrupted("reset".into()),
                "upload_interrupted",
                400,
            ),
            (FileError::PermissionDenied(p()), "permission_denied", 403),
            (FileError::NotFound(p()), "not_found", 404),
            (FileError::NotAFile(p()), "not_a_file", 409),
            (FileError::NotADirectory(p()), "not_a_directory", 409),
            (FileError::IsADirectory(p()), "is_a_directory", 409),
            (
                FileError::DirectoryNotEmpty(p()),
                "directory_not_empty",
                409,
            ),
            (FileError::TooLarge { limit: 1 << 20 }, "too_large", 413),
            (
                FileError::QuotaExceeded { quota: 10, used: 9 },
                "quota_exceeded",
                507,
            ),
            (
                FileError::Io(io::Error::other("disk on fire")),
                "io_error",
                500,
            ),
        ];
        for (error, code, status) in cases {
            assert_eq!(
                (error.code().as_str(), error.code().http_status()),
                (code, status),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.ends_with('.'), "not a sentence: {message}");
        }
        assert_eq!(
            FileError::TooLarge { limit: 50 << 20 }.to_string(),
            "The upload is larger than the limit of 50 MiB."
        );
        assert!(FileError::SymlinkRefused(p())
            .to_string()
            .starts_with("`/workspace/x` is a symbolic link."));
    }

    #[test]
    fn human_bytes_reads_well() {
        let cases = [
            (0, "0 bytes"),
            (1023, "1023 bytes"),
            (1024, "1 KiB"),
            (1536, "1.5 KiB"),
            (50 << 20, "50 MiB"),
            (3 << 30, "3 GiB"),
            (u64::MAX, "16777216 TiB"),
        ];
        for (n, shown) in cases {
            assert_eq!(human_bytes(n), shown);
        }
    }

    // ------------------------------------------------------------ open

    #[test]
    fn open_creates_the_root_for_the_sandbox_and_refuses_a_fake_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("workspaces/s1");
        Workspace::open(root.clone()).unwrap();
        let meta = fs::symlink_metadata(&root).unwrap();
        assert!(meta.is_dir());
        assert!(meta.uid() == SANDBOX_UID || meta.mode() & 0o777 == SHARED_DIR_MODE);
        // Opening again keeps what is there.
        fs::write(root.join("kept.txt"), b"k").unwrap();
        Workspace::open(root.clone()).unwrap();
        assert_eq!(fs::read(root.join("kept.txt")).unwrap(), b"k");

        let real = tmp.path().join("elsewhere");
        fs::create_dir(&real).unwrap();
        let linked = tmp.path().join("workspaces/s2");
        symlink(&real, &linked).unwrap();
        assert_eq!(Workspace::open(linked).unwrap_err().code(), "io_error");
        let file = tmp.path().join("workspaces/s3");
        fs::write(&file, b"").unwrap();
        assert_eq!(Workspace::open(file).unwrap_err().code(), "io_error");
    }

    // ------------------------------------------------------------ list

    #[test]
    fn list_orders_folders_first_and_shows_links_and_pipes_as_empty_files() {
        let f = fixture();
        f.sandbox_write("z.txt", b"zzz");
        f.sandbox_write("m.txt", b"m");
        f.sandbox_write("b_dir/inner.txt", b"12345");
        fs::create_dir(f.root.join("a_dir")).unwrap();
        f.sandbox_link(&f.outside.join("secret.txt"), "link");
        mkfifo(&f.root.join("pipe"));

        let listed: Vec<(String, String, FileKind, u64)> =
            f.ws.list(&RelPath::root())
                .unwrap()
                .into_iter()
                .map(|e| {
                    chrono::DateTime::parse_from_rfc3339(&e.modified).unwrap();
                    (e.name, e.path, e.kind, e.size)
                })
                .collect();
        let expected = [
            ("a_dir", FileKind::Dir, 0),
            ("b_dir", FileKind::Dir, 0),
            ("link", FileKind::File, 0),
            ("m.txt", FileKind::File, 1),
            ("pipe", FileKind::File, 0),
            ("z.txt", FileKind::File, 3),
        ]
        .map(|(name, kind, size)| (name.to_string(), name.to_string(), kind, size));
        assert_eq!(listed, expected);

        let nested = f.ws.list(&rel("b_dir")).unwrap();
        assert_eq!(nested.len(), 1);
        assert_eq!(
            (
                nested[0].name.as_str(),
                nested[0].path.as_str(),
                nested[0].size
            ),
            ("inner.txt", "b_dir/inner.txt", 5)
        );
        assert!(f.ws.list(&rel("a_dir")).unwrap().is_empty());
    }

    #[test]
    fn list_refuses_links_files_and_missing_folders() {
        let f = fixture();
        f.sandbox_link(&f.outside, "d");
        f.sandbox_link(Path::new("/"), "rootlink");
        f.sandbox_write("inside/real/x.txt", b"x");
        f.sandbox_link(Path::new("real"), "inside/alias");
        f.sandbox_write("file.txt", b"f");
        mkfifo(&f.root.join("pipe"));
        let cases = [
            ("d", "symlink_refused"),
            ("rootlink", "symlink_refused"),
            ("rootlink/etc", "symlink_refused"),
            ("inside/alias", "symlink_refused"),
            ("file.txt", "not_a_directory"),
            ("file.txt/x", "not_a_directory"),
            ("pipe", "not_a_directory"),
            ("nope", "not_found"),
            ("inside/nope/deeper", "not_found"),
        ];
        for (path, code) in cases {
            let error = f.ws.list(&rel(path)).unwrap_err();
            assert_eq!(error.code(), code, "{path}: {error}");
        }
        f.assert_outside_untouched();
    }

    // ------------------------------------------------------------ links

    #[tokio::test]
    async fn reads_through_links_are_refused_and_read_nothing() {
        let f = fixture();
        f.sandbox_link(&f.outside.join("secret.txt"), "link");
        f.sandbox_link(&f.outside, "d");
        f.sandbox_link(Path::new("/"), "rootlink");
        f.sandbox_write("a/inner.txt", b"inside");
        f.sandbox_link(&f.outside, "a/d");
        f.sandbox_link(Path::new("inner.txt"), "a/alias");
        f.sandbox_link(Path::new("a"), "adir");
        let cases = [
            ("link", "/workspace/link"),
            ("d/secret.txt", "/workspace/d"),
            ("a/d/secret.txt", "/workspace/a/d"),
            ("rootlink/etc/passwd", "/workspace/rootlink"),
            // Links that stay inside are refused too: one rule, no judging
            // where a link points.
            ("a/alias", "/workspace/a/alias"),
            ("adir/inner.txt", "/workspace/adir"),
        ];
        for (path, link) in cases {
            match f.ws.open_read(&rel(path)).await {
                Err(FileError::SymlinkRefused(shown)) => assert_eq!(shown, link, "{path}"),
                other => panic!("{path}: {other:?}"),
            }
        }
        assert_eq!(get(&f.ws, "a/inner.txt").await.unwrap(), b"inside");
        f.assert_outside_untouched();
    }

    #[tokio::test]
    async fn writes_through_links_are_refused_and_create_nothing_outside() {
        let f = fixture();
        f.sandbox_link(&f.outside.join("secret.txt"), "link");
        f.sandbox_link(&f.outside, "d");
        f.sandbox_write("a/keep.txt", b"k");
        f.sandbox_link(&f.outside, "a/d");
        let before = tree(&f.root);
        for path in [
            "link",
            "d/secret.txt",
            "d/new.txt",
            "d/sub/new.txt",
            "a/d/new.txt",
        ] {
            let error = put(&f.ws, path, b"pwned").await.unwrap_err();
            assert_eq!(error.code(), "symlink_refused", "{path}: {error}");
        }
        f.assert_outside_untouched();
        assert_eq!(tree(&f.root), before, "something was left in the workspace");
    }

    #[test]
    fn deleting_a_link_removes_the_link_not_its_target() {
        let f = fixture();
        f.sandbox_link(&f.outside.join("secret.txt"), "link");
        f.sandbox_link(&f.outside, "d");
        let error = f.ws.delete(&rel("d/secret.txt")).unwrap_err();
        assert_eq!(error.code(), "symlink_refused");
        f.ws.delete(&rel("link")).unwrap();
        f.ws.delete(&rel("d")).unwrap();
        assert!(tree(&f.root).is_empty());
        f.assert_outside_untouched();
    }

    #[tokio::test]
    async fn a_fifo_is_refused_for_reading_without_blocking() {
        let f = fixture();
        mkfifo(&f.root.join("pipe"));
        let read = tokio::time::timeout(Duration::from_secs(5), f.ws.open_read(&rel("pipe")))
            .await
            .expect("reading a fifo blocked");
        assert_eq!(read.unwrap_err().code(), "not_a_file");
        let write = tokio::time::timeout(Duration::from_secs(5), put(&f.ws, "pipe", b"x"))
            .await
            .expect("writing a fifo blocked");
        assert_eq!(write.unwrap_err().code(), "not_a_file");
        // It can still be deleted.
        f.ws.delete(&rel("pipe")).unwrap();
    }

    #[tokio::test]
    async fn downloads_of_folders_and_missing_files_are_refused() {
        let f = fixture();
        f.sandbox_write("dir/x.txt", b"x");
        let cases = [
            ("", "is_a_directory"),
            ("dir", "is_a_directory"),
            ("missing.txt", "not_found"),
            ("dir/x.txt/y", "not_a_directory"),
            ("nodir/x.txt", "not_found"),
        ];
        for (path, code) in cases {
            let error = f.ws.open_read(&rel(path)).await.unwrap_err();
            assert_eq!(error.code(), code, "{path:?}: {error}");
        }
    }

    /// The sandbox swaps `d` between a real folder and a link to the host
    /// as fast as it can while the server reads and writes through it.
    /// Every outcome is either the real folder's file or a refusal.
    #[test]
    fn swapping_a_folder_for_a_link_never_redirects_a_read_or_write() {
        let f = fixture();
        f.sandbox_write("d/secret.txt", b"inside");
        f.sandbox_link(&f.outside, "other");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, root) = (stop.clone(), f.root.clone());
            std::thread::spawn(move || {
                let (d, other) = (root.join("d"), root.join("other"));
                let exchange = rustix::fs::RenameFlags::EXCHANGE;
                while !stop.load(Ordering::Relaxed) {
                    // Fails only once the test has panicked and the temp
                    // folder is gone.
                    if rustix::fs::renameat_with(CWD, &d, CWD, &other, exchange).is_err() {
                        break;
                    }
                }
            })
        };
        let (mut read_ok, mut refused) = (0, 0);
        for i in 0..2000 {
            match f.ws.open_read_sync(&rel("d/secret.txt")) {
                Ok((file, _)) => {
                    let data = std::io::read_to_string(file).unwrap();
                    assert_eq!(data, "inside");
                    read_ok += 1;
                }
                Err(e) => {
                    assert!(
                        ["symlink_refused", "not_a_directory"].contains(&e.code().as_str()),
                        "{e}"
                    );
                    refused += 1;
                }
            }
            if i % 10 == 0 {
                let target = rel("d/new.txt");
                match f.ws.begin_upload(&target, NO_LIMITS) {
                    Ok((upload, mut file, _)) => {
                        std::io::Write::write_all(&mut file, b"new").unwrap();
                        let _ = upload.commit();
                    }
                    // Mid-swap the name can look like a link or like a
                    // non-folder; either way the write is refused.
                    Err(e) => assert!(
                        ["symlink_refused", "not_a_directory"].contains(&e.code().as_str()),
                        "{e}"
                    ),
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        assert_eq!(read_ok + refused, 2000);
        f.assert_outside_untouched();
    }

    // ------------------------------------------------------------ uploads

    #[tokio::test]
    async fn round_trips_are_byte_exact() {
        let f = fixture();
        let all_bytes: Vec<u8> = (0..=255).collect();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("notes.txt", b"hello\nworld\n".to_vec()),
            ("binary.bin", all_bytes.repeat(3)),
            ("empty", Vec::new()),
            ("données été.csv", "a;b\n1;été\n".as_bytes().to_vec()),
            ("日本語.txt", "こんにちは".as_bytes().to_vec()),
            ("with space/and more.md", b"# hi".to_vec()),
            ("%2e%2e/x", b"literal percent name".to_vec()),
            ("/workspace/sugar.txt", b"via the mount path".to_vec()),
        ];
        for (path, data) in &cases {
            assert_eq!(put(&f.ws, path, data).await.unwrap(), data.len() as u64);
            assert_eq!(&get(&f.ws, path).await.unwrap(), data, "{path}");
        }
        assert_eq!(
            fs::read(f.root.join("%2e%2e/x")).unwrap(),
            b"literal percent name"
        );
        assert_eq!(
            fs::read(f.root.join("sugar.txt")).unwrap(),
            b"via the mount path"
        );
        let names: Vec<String> =
            f.ws.list(&RelPath::root())
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
        assert!(names.contains(&"données été.csv".to_string()));
        assert!(names.contains(&"日本語.txt".to_string()));
    }

    #[tokio::test]
    async fn a_fifty_mib_stream_round_trips_byte_exact() {
        let f = fixture();
        const CHUNK: usize = 64 * 1024;
        const CHUNKS: usize = 800;
        let data: Vec<u8> = (0..CHUNK * CHUNKS)
            .map(|i| (i.wrapping_mul(31) ^ (i >> 13)) as u8)
            .collect();
        let parts: Vec<Vec<u8>> = data.chunks(CHUNK).map(<[u8]>::to_vec).collect();
        let written =
            f.ws.write_stream(&rel("big/blob.bin"), body(parts), NO_LIMITS)
                .await
                .unwrap();
        assert_eq!(written, 50 << 20);
        let mut download = f.ws.open_read(&rel("big/blob.bin")).await.unwrap();
        assert_eq!(download.len, 50 << 20);
        let mut back = Vec::with_capacity(data.len());
        download.file.read_to_end(&mut back).await.unwrap();
        assert!(back == data, "the 50 MiB file came back different");
    }

    #[tokio::test]
    async fn downloads_carry_length_type_and_name() {
        let f = fixture();
        let cases = [
            ("report.csv", "text/csv"),
            ("dir/page.html", "text/html"),
            ("photo.png", "image/png"),
            ("blob.unknownext", "application/octet-stream"),
            ("noext", "application/octet-stream"),
        ];
        for (path, content_type) in cases {
            put(&f.ws, path, b"12345").await.unwrap();
            let download = f.ws.open_read(&rel(path)).await.unwrap();
            assert_eq!(download.len, 5);
            assert_eq!(download.content_type, content_type, "{path}");
            assert_eq!(download.file_name, path.rsplit('/').next().unwrap());
        }
    }

    #[tokio::test]
    async fn uploads_create_missing_folders_for_the_sandbox() {
        let f = fixture();
        f.sandbox_write("a/existing.txt", b"e");
        put(&f.ws, "a/b/c/file.txt", b"deep").await.unwrap();
        assert_eq!(fs::read(f.root.join("a/b/c/file.txt")).unwrap(), b"deep");
        for made in ["a/b", "a/b/c", "a/b/c/file.txt"] {
            let meta = fs::metadata(f.root.join(made)).unwrap();
            let shared = if meta.is_dir() {
                SHARED_DIR_MODE
            } else {
                SHARED_FILE_MODE
            };
            assert!(
                meta.uid() == SANDBOX_UID || meta.mode() & 0o777 == shared,
                "{made} is not the sandbox's"
            );
        }
        assert_eq!(
            tree(&f.root),
            ["a", "a/b", "a/b/c", "a/b/c/file.txt", "a/existing.txt"]
        );
    }

    #[tokio::test]
    async fn an_overwrite_replaces_the_file_atomically() {
        let f = fixture();
        put(&f.ws, "doc.txt", b"old content").await.unwrap();
        let mut old_reader = fs::File::open(f.root.join("doc.txt")).unwrap();

        let (tx, stream) = channel_body();
        let ws = f.ws.clone();
        let upload =
            tokio::spawn(async move { ws.write_stream(&rel("doc.txt"), stream, NO_LIMITS).await });
        tx.send(Ok(Bytes::from_static(b"new "))).await.unwrap();
        wait_for_temp_file(&f.root).await;
        // Mid-upload the target is still whole and old.
        assert_eq!(fs::read(f.root.join("doc.txt")).unwrap(), b"old content");
        tx.send(Ok(Bytes::from_static(b"content!"))).await.unwrap();
        drop(tx);
        assert_eq!(upload.await.unwrap().unwrap(), 12);

        assert_eq!(get(&f.ws, "doc.txt").await.unwrap(), b"new content!");
        // A reader that opened the old file keeps reading the old file.
        let old = std::io::read_to_string(&mut old_reader).unwrap();
        assert_eq!(old, "old content");
        assert_eq!(tree(&f.root), ["doc.txt"]);
    }

    #[tokio::test]
    async fn an_upload_replaces_a_hard_link_instead_of_writing_through_it() {
        let f = fixture();
        fs::hard_link(f.outside.join("secret.txt"), f.root.join("hard")).unwrap();
        put(&f.ws, "hard", b"replaced").await.unwrap();
        assert_eq!(get(&f.ws, "hard").await.unwrap(), b"replaced");
        f.assert_outside_untouched();
    }

    #[tokio::test]
    async fn an_upload_over_the_limit_leaves_nothing_behind() {
        let f = fixture();
        f.sandbox_write("keep.txt", b"old");
        let limits = UploadLimits {
            max_bytes: 1000,
            quota_bytes: None,
        };
        let cases = [
            (
                "new/dir/big.bin",
                vec![vec![1; 400], vec![2; 400], vec![3; 201]],
            ),
            ("keep.txt", vec![vec![0; 1001]]),
        ];
        for (path, parts) in cases {
            let error =
                f.ws.write_stream(&rel(path), body(parts), limits)
                    .await
                    .unwrap_err();
            assert!(
                matches!(error, FileError::TooLarge { limit: 1000 }),
                "{error:?}"
            );
            assert_eq!(error.code().http_status(), 413);
            assert_eq!(tree(&f.root), ["keep.txt"], "after {path}");
        }
        assert_eq!(fs::read(f.root.join("keep.txt")).unwrap(), b"old");
        let exact =
            f.ws.write_stream(&rel("exact.bin"), body(vec![vec![7; 1000]]), limits)
                .await;
        assert_eq!(exact.unwrap(), 1000);
    }

    #[tokio::test]
    async fn an_upload_over_the_quota_leaves_nothing_behind() {
        let f = fixture();
        f.sandbox_write("old.bin", &[0; 600]);
        // Links to big host files do not count against the quota.
        fs::write(f.outside.join("huge.bin"), vec![0; 10_000]).unwrap();
        f.sandbox_link(&f.outside.join("huge.bin"), "huge");
        let limits = UploadLimits {
            max_bytes: u64::MAX,
            quota_bytes: Some(1000),
        };
        let error =
            f.ws.write_stream(
                &rel("sub/new.bin"),
                body(vec![vec![1; 300], vec![1; 300]]),
                limits,
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                error,
                FileError::QuotaExceeded {
                    quota: 1000,
                    used: 600
                }
            ),
            "{error:?}"
        );
        assert_eq!(error.code().http_status(), 507);
        assert_eq!(tree(&f.root), ["huge", "old.bin"]);
        // The file an upload replaces does not count.
        let replaced =
            f.ws.write_stream(&rel("old.bin"), body(vec![vec![2; 900]]), limits)
                .await;
        assert_eq!(replaced.unwrap(), 900);
        // Already over quota: refused before reading the body.
        let tight = UploadLimits {
            max_bytes: u64::MAX,
            quota_bytes: Some(100),
        };
        let error = put_with(&f.ws, "empty", tight).await.unwrap_err();
        assert_eq!(error.code(), "quota_exceeded");
        assert_eq!(tree(&f.root), ["huge", "old.bin"]);
    }

    async fn put_with(ws: &Workspace, path: &str, limits: UploadLimits) -> Result<u64, FileError> {
        ws.write_stream(&rel(path), body(Vec::new()), limits).await
    }

    #[tokio::test]
    async fn an_interrupted_upload_leaves_nothing_behind() {
        let f = fixture();
        f.sandbox_write("doc.txt", b"old");
        for path in ["doc.txt", "fresh/dir/doc.txt"] {
            let parts: Vec<Result<Bytes, io::Error>> = vec![
                Ok(Bytes::from_static(b"partial")),
                Err(io::Error::other("connection reset")),
            ];
            let error =
                f.ws.write_stream(&rel(path), futures_util::stream::iter(parts), NO_LIMITS)
                    .await
                    .unwrap_err();
            assert_eq!(error.code(), "upload_interrupted");
            assert!(error.to_string().contains("connection reset"));
            assert_eq!(tree(&f.root), ["doc.txt"]);
        }
        assert_eq!(fs::read(f.root.join("doc.txt")).unwrap(), b"old");
    }

    #[tokio::test]
    async fn a_dropped_upload_leaves_nothing_behind() {
        let f = fixture();
        let (tx, stream) = channel_body();
        let ws = f.ws.clone();
        let upload = tokio::spawn(async move {
            ws.write_stream(&rel("new/dir/x.bin"), stream, NO_LIMITS)
                .await
        });
        tx.send(Ok(Bytes::from_static(b"some bytes")))
            .await
            .unwrap();
        wait_for_temp_file(&f.root).await;
        upload.abort();
        assert!(upload.await.unwrap_err().is_cancelled());
        assert!(tree(&f.root).is_empty(), "left: {:?}", tree(&f.root));
    }

    #[tokio::test]
    async fn uploads_refuse_what_is_in_the_way() {
        let f = fixture();
        f.sandbox_write("dir/x.txt", b"x");
        f.sandbox_write("file.txt", b"f");
        let cases = [
            ("", "bad_path"),
            ("dir", "is_a_directory"),
            ("file.txt/child.txt", "not_a_directory"),
            ("file.txt/a/b.txt", "not_a_directory"),
        ];
        for (path, code) in cases {
            let error = put(&f.ws, path, b"data").await.unwrap_err();
            assert_eq!(error.code(), code, "{path:?}: {error}");
        }
        assert_eq!(tree(&f.root), ["dir", "dir/x.txt", "file.txt"]);
    }

    // ------------------------------------------------------------ delete

    #[test]
    fn delete_removes_files_and_empty_folders_only() {
        let f = fixture();
        f.sandbox_write("full/x.txt", b"x");
        f.sandbox_write("file.txt", b"f");
        fs::create_dir(f.root.join("empty")).unwrap();
        let cases = [
            ("", Err("bad_path")),
            ("full", Err("directory_not_empty")),
            ("missing", Err("not_found")),
            ("file.txt/x", Err("not_a_directory")),
            ("file.txt", Ok(())),
            ("empty", Ok(())),
            ("full/x.txt", Ok(())),
            ("full", Ok(())),
        ];
        for (path, expected) in cases {
            let outcome = f.ws.delete(&rel(path)).map_err(|e| e.code().as_str());
            assert_eq!(outcome, expected, "{path:?}");
        }
        assert!(tree(&f.root).is_empty());
        assert!(f.root.is_dir(), "the root itself must survive");
    }

    // ------------------------------------------------------------ usage

    #[test]
    fn usage_counts_regular_files_without_following_links() {
        let f = fixture();
        assert_eq!(f.ws.usage().unwrap(), 0);
        f.sandbox_write("a.bin", &[0; 100]);
        f.sandbox_write("deep/er/b.bin", &[0; 200]);
        fs::write(f.outside.join("huge.bin"), vec![0; 1 << 20]).unwrap();
        f.sandbox_link(&f.outside.join("huge.bin"), "link");
        f.sandbox_link(&f.outside, "dirlink");
        mkfifo(&f.root.join("pipe"));
        assert_eq!(f.ws.usage().unwrap(), 300);
    }

    #[test]
    fn the_parallel_walk_sees_what_the_walk_sees() {
        let f = fixture();
        for d in 0..30 {
            for i in 0..20 {
                f.sandbox_write(&format!("d{d}/sub{}/f{i}", i % 3), b"x");
            }
        }
        f.sandbox_link(&f.outside, "link");
        let deep = vec!["z"; MAX_WALK_DEPTH + 3].join("/");
        f.sandbox_write(&format!("{deep}/bottom"), b"x");
        let mut one = std::collections::BTreeSet::new();
        f.ws.walk(usize::MAX, |path, _, _, _| one.insert(path.to_owned()))
            .unwrap();
        for threads in [1, 2, 4] {
            let parts =
                f.ws.walk_parallel(threads, |path, _, _, _, seen: &mut Vec<String>| {
                    seen.push(path.to_owned());
                    true
                })
                .unwrap();
            let many: Vec<String> = parts.into_iter().flatten().collect();
            let set: std::collections::BTreeSet<String> = many.iter().cloned().collect();
            assert_eq!(many.len(), set.len(), "each path once");
            assert_eq!(set, one, "{threads} threads");
        }
        assert!(one.contains("link") && !one.contains("link/secret.txt"));
    }

    #[test]
    fn walks_stop_descending_at_the_depth_limit() {
        let f = fixture();
        let deep = vec!["d"; MAX_WALK_DEPTH + 6].join("/");
        f.sandbox_write(&format!("{deep}/bottom.txt"), b"unreached");
        let mut seen = std::collections::BTreeSet::new();
        f.ws.walk(usize::MAX, |path, _, _, _| seen.insert(path.to_owned()))
            .unwrap();
        let deepest = vec!["d"; MAX_WALK_DEPTH].join("/");
        assert!(seen.contains(&deepest));
        assert!(!seen.contains(&format!("{deepest}/d")));
        assert_eq!(f.ws.usage().unwrap(), 0);
        // Resolution of an explicit path has no such limit.
        let listed = f.ws.list(&rel(&deep)).unwrap();
        assert_eq!(listed[0].name, "bottom.txt");
    }

    #[test]
    fn new_entries_are_handed_to_the_sandbox_user() {
        // As root the file is chowned; otherwise it is opened up instead.
        let f = fixture();
        f.sandbox_write("x", b"x");
        let fd = rustix::fs::openat(CWD, f.root.join("x"), OFlags::RDONLY, Mode::empty()).unwrap();
        hand_to_sandbox(fd.as_fd(), false);
        let meta = fs::metadata(f.root.join("x")).unwrap();
        assert!(meta.uid() == SANDBOX_UID || meta.permissions().mode() & 0o777 == SHARED_FILE_MODE);
    }
}
