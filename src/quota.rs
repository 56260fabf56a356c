//! The workspace quota (`files.quota_mb`, DESIGN.md §4): each session's
//! workspace is a filesystem of its own, so nothing (the agent in the
//! sandbox, a raw upload, a multipart form) can make it grow past the quota
//! or fill the host's disk; and the ledger of bytes that uploads in flight
//! have claimed, so parallel uploads cannot pass it together.
//!
//! # Why a loop-mounted ext4 image
//!
//! Options weighed (measured on Docker 20.10, kernel 6.x, as root):
//!
//! - **A loop-mounted ext4 image per session** (chosen). The server makes
//!   `data/volumes/<session>.ext4` (sparse: it costs only what is written)
//!   with `mkfs.ext4` and mounts it `loop,nosuid,nodev` on
//!   `data/workspaces/<session>`; Docker bind-mounts that folder as before.
//!   A write past the limit fails *inside the sandbox* with "No space left
//!   on device", which is what the model must see; the mount gives
//!   `nosuid,nodev` in the same step; the server keeps plain host access
//!   for the file routes; it needs only e2fsprogs and util-linux (present on
//!   Debian) and a stock engine. mkfs of a 1 GiB sparse image takes ~30 ms.
//! - A Docker `local` volume with `type`/`device`/`o`: the driver calls
//!   mount(2) itself, which cannot set up a loop device from a file, and the
//!   volume lives under `/var/lib/docker`, out of reach of the file routes.
//! - XFS/ext4 project quotas: need the data directory on a file system
//!   prepared (mounted `prjquota`) by the operator. Not a default.
//! - tmpfs with `size=`: the workspace would not survive a stop.
//!
//! The image is sized [`image_bytes`] (quota plus room for ext4's own
//! metadata), and after the first mount the blocks beyond the quota are made
//! root-only (`tune2fs -r`), so the sandbox user (uid 1000) can store exactly
//! `quota_mb` of blocks. Uploads, which the server writes as root, are held
//! to the quota by the [ledger](Claim) and [`Workspace`]'s usage count; the
//! image's size bounds even those: the slack is at most
//! [`image_bytes`]` - quota`, i.e. quota/16 + 24 MiB.
//!
//! # Lifecycle
//!
//! - **First use** (a file route, the agent's snapshot, the container's
//!   start): [`WorkspaceVolume::prepare`] makes the image and mounts it.
//! - **Restart**: mounts survive the server; after a reboot the first use
//!   mounts the existing image again (ext4 replays its journal).
//! - **Session delete**: [`WorkspaceVolume::remove`] detaches the mount
//!   (lazily, so an open download does not block it) and removes the image
//!   and the folder.
//! - A changed `files.quota_mb` applies to new sessions; existing images
//!   keep their size.
//!
//! # When the server is not root
//!
//! Mounting needs root. Without it (a developer's `make run`), or when
//! mounting fails (no loop devices, e.g. in an unprivileged container), the
//! workspace is a plain folder and only the file routes' check holds: the
//! agent can then fill the host's disk. [`QuotaMode::of_process`] says which
//! at start-up and the server logs it as an error. A non-empty folder left
//! from before this scheme is not mounted over (that would hide its files):
//! it stays a plain folder, with an error in the log.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::config::Settings;
use crate::sandbox::SANDBOX_UID;

/// Mode of the folders IronClaw keeps its data in (data dir, workspaces,
/// volumes): the owner only. The sandbox reaches its workspace through the
/// bind mount, which the root Docker daemon sets up, so it needs no way
/// through these folders; other host users get none.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Mode of the files IronClaw keeps (database, images): the owner only.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Mount options of every workspace: `nosuid` so a setuid file made in the
/// sandbox never runs with its owner's rights, `nodev` so a device node
/// opens nothing. `exec` stays: tools (pip, build scripts) run from there.
const MOUNT_OPTIONS: &str = "loop,nosuid,nodev,noatime";

/// Fixed room for ext4's metadata on top of the quota: the journal (4 MiB
/// for small images, mkfs's default), the inode tables and the blocks ext4
/// keeps back for itself (up to 16 MiB); measured, with a margin.
const IMAGE_FIXED_OVERHEAD: u64 = 24 * 1024 * 1024;

/// Proportional room: ext4 keeps back up to 2% and its journal grows with
/// the size (32 MiB for 1 GiB); 1/16 covers both.
const IMAGE_OVERHEAD_DIVISOR: u64 = 16;

/// Bytes per inode: mkfs's own default. A workspace of 1 GiB holds 65 000
/// files and folders (a checked-out source tree with its dependencies
/// runs to tens of thousands); the inode tables take 1.6% of the image,
/// inside the overhead above.
const BYTES_PER_INODE: &str = "16384";

/// Where the images live, under the data directory.
const VOLUMES_DIR: &str = "volumes";

/// Whether workspaces can be mounted in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaMode {
    /// Root: each workspace is its own ext4 filesystem.
    Mounted,
    /// Not root: plain folders, the upload check only.
    BestEffort,
}

impl QuotaMode {
    pub fn of_process() -> Self {
        if rustix::process::geteuid().is_root() {
            QuotaMode::Mounted
        } else {
            QuotaMode::BestEffort
        }
    }
}

/// Image size for a quota: the quota plus ext4's metadata (see the module
/// docs). The file is sparse, so the excess costs no disk until written.
pub fn image_bytes(quota_bytes: u64) -> u64 {
    quota_bytes
        .saturating_add(quota_bytes / IMAGE_OVERHEAD_DIVISOR)
        .saturating_add(IMAGE_FIXED_OVERHEAD)
}

/// The images' folder under `data_dir`.
pub fn volumes_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(VOLUMES_DIR)
}

/// Creates `dir` (and missing parents) with [`PRIVATE_DIR_MODE`], and
/// tightens it if it exists already with a looser mode.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
}

/// One session's workspace on the host and the limit on its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceVolume {
    /// `data/workspaces/<session>`: the mount point, or the plain folder.
    root: PathBuf,
    /// `data/volumes/<session>.ext4` and the quota, when mounting applies.
    image: Option<(PathBuf, u64)>,
    /// A warm pool's workspace, which may be moved into a session's place.
    pool: bool,
}

/// Names of warm-pool workspaces start with this (never a session id,
/// which is a UUID).
pub const POOL_PREFIX: &str = ".pool-";

impl From<PathBuf> for WorkspaceVolume {
    /// A plain folder with no filesystem of its own (tests, and tools that
    /// bring their own folder).
    fn from(root: PathBuf) -> Self {
        WorkspaceVolume {
            root,
            image: None,
            pool: false,
        }
    }
}

/// Serialises mounting, one lock per workspace folder: the file routes,
/// the agent and the container may all ask for the same workspace at once,
/// while different workspaces are made and mounted in parallel (a burst of
/// new sessions would otherwise queue behind each other's mkfs).
static MOUNTING: Mutex<BTreeMap<PathBuf, Weak<Mutex<()>>>> = Mutex::new(BTreeMap::new());

/// The lock of the workspace at `root` (see [`MOUNTING`]).
fn mount_lock(root: &Path) -> Arc<Mutex<()>> {
    let mut locks = MOUNTING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(lock) = locks.get(root).and_then(Weak::upgrade) {
        return lock;
    }
    locks.retain(|_, lock| lock.strong_count() > 0);
    let lock = Arc::new(Mutex::new(()));
    locks.insert(root.to_path_buf(), Arc::downgrade(&lock));
    lock
}

impl WorkspaceVolume {
    /// The workspace of `session_id` under the configured data directory,
    /// mounted when the server runs as root.
    pub fn of_session(settings: &Settings, session_id: &str) -> Self {
        let root = settings.workspaces_dir().join(session_id);
        let quota = settings.files.quota_mb.saturating_mul(1024 * 1024);
        let image = (QuotaMode::of_process() == QuotaMode::Mounted && quota > 0).then(|| {
            let file = volumes_dir(&settings.data.dir).join(format!("{session_id}.ext4"));
            (file, quota)
        });
        WorkspaceVolume {
            root,
            image,
            pool: false,
        }
    }

    /// A warm-pool workspace (`.pool-<id>` beside the sessions'), made like
    /// a session's and moved into one's place when a session adopts its
    /// container ([`WorkspaceVolume::move_to`]).
    pub fn pooled(settings: &Settings, pool_id: &str) -> Self {
        let mut volume = WorkspaceVolume::of_session(settings, &format!("{POOL_PREFIX}{pool_id}"));
        volume.pool = true;
        volume
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Never used: no folder yet, or an empty one that is not mounted and
    /// has no image. Only such a workspace may receive a pooled one.
    pub fn is_fresh(&self) -> bool {
        if self.image.as_ref().is_some_and(|(image, _)| image.exists()) {
            return false;
        }
        match std::fs::read_dir(&self.root) {
            Err(e) => e.kind() == io::ErrorKind::NotFound,
            Ok(mut entries) => {
                entries.next().is_none() && !is_mount_point(&self.root).unwrap_or(true)
            }
        }
    }

    /// Moves this (pooled, prepared) workspace into `target`'s place, which
    /// must be fresh ([`WorkspaceVolume::is_fresh`]); a container that
    /// bind-mounts this workspace then has `target`'s.
    ///
    /// A plain folder is renamed: the container's bind mount follows the
    /// directory. A quota filesystem is a mount point, which cannot be
    /// renamed: it is bind-mounted on `target` (`nosuid,nodev` like any
    /// workspace), its old mount point detached and removed, and its image
    /// renamed to `target`'s, so the next boot mounts it there. The
    /// container's own mount holds the same filesystem throughout.
    /// Under `target`'s lock in [`MOUNTING`], so no
    /// [`WorkspaceVolume::prepare`] of it runs in between. Blocking.
    pub fn move_to(&self, target: &WorkspaceVolume) -> io::Result<()> {
        let lock = mount_lock(&target.root);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.pool || !target.is_fresh() {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the session's workspace is already in use",
            ));
        }
        if let Some(parent) = target.root.parent() {
            private_dir(parent)?;
        }
        match (&self.image, &target.image) {
            (None, None) => {
                if target.root.exists() {
                    std::fs::remove_dir(&target.root)?;
                }
                std::fs::rename(&self.root, &target.root)
            }
            (Some((from, _)), Some((to, _))) if is_mount_point(&self.root)? => {
                if !target.root.exists() {
                    std::fs::DirBuilder::new()
                        .mode(PRIVATE_DIR_MODE)
                        .create(&target.root)?;
                }
                bind_private(&self.root, &target.root)?;
                detach(&self.root)?;
                std::fs::remove_dir(&self.root)?;
                std::fs::rename(from, to)
            }
            _ => Err(io::Error::other(
                "the pooled workspace and the session's are not the same kind",
            )),
        }
    }

    /// Makes the workspace ready: the folder exists, and when mounting
    /// applies, the image exists and is mounted on it. Blocking (it may run
    /// mkfs and mount); idempotent and cheap once mounted. A failure to
    /// mount is logged and leaves the plain folder (see the module docs).
    pub fn prepare(&self) -> io::Result<()> {
        if let Some(parent) = self.root.parent() {
            private_dir(parent)?;
        }
        match std::fs::symlink_metadata(&self.root) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(io::Error::other(
                    "the session's workspace on the server is not a folder",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
                .mode(PRIVATE_DIR_MODE)
                .create(&self.root)?,
            Err(e) => return Err(e),
        }
        let Some((image, quota)) = &self.image else {
            return Ok(());
        };
        if is_mount_point(&self.root)? {
            return Ok(());
        }
        let lock = mount_lock(&self.root);
        let _guard = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if is_mount_point(&self.root)? {
            return Ok(());
        }
        if let Err(e) = self.mount(image, *quota, &_guard) {
            log::error!(
                "workspace {}: could not mount its quota filesystem ({e}); it is a plain folder \
                 and the agent's writes are NOT limited to files.quota_mb",
                self.root.display()
            );
        }
        Ok(())
    }

    /// Under the workspace's lock in [`MOUNTING`]: make the image if
    /// missing, then mount it.
    fn mount(&self, image: &Path, quota: u64, _held: &MutexGuard<'_, ()>) -> io::Result<()> {
        let fresh = !image.exists();
        if fresh {
            if std::fs::read_dir(&self.root)?.next().is_some() {
                return Err(io::Error::other(
                    "the folder already holds files from before quota filesystems; \
                     mounting over it would hide them",
                ));
            }
            if let Some(dir) = image.parent() {
                private_dir(dir)?;
            }
            if let Err(e) = make_image(image, quota) {
                let _ = std::fs::remove_file(image);
                return Err(e);
            }
        }
        mount_loop(image, &self.root)?;
        if fresh {
            // mkfs's lost+found would show in every listing; e2fsck makes
            // it again when it needs one. Gone before measuring, so its
            // blocks are not counted free on top of the quota.
            let _ = std::fs::remove_dir(self.root.join("lost+found"));
            // Hold the sandbox to the quota exactly: the blocks past it go
            // to root. tune2fs must see the image unmounted, or the kernel
            // would write its own superblock back over the change.
            let extra = blocks_over_quota(&self.root, quota)?;
            detach(&self.root)?;
            if extra > 0 {
                run(helper("tune2fs")
                    .args(["-r", &extra.to_string()])
                    .arg(image))?;
            }
            mount_loop(image, &self.root)?;
        }
        log::info!(
            "workspace {}: quota filesystem mounted ({} MiB)",
            self.root.display(),
            quota / (1024 * 1024)
        );
        Ok(())
    }

    /// Removes the workspace: detaches its mount (lazily, so an open
    /// download cannot block it; the filesystem goes when the last file on
    /// it closes), then deletes the image and the folder. Blocking.
    pub fn remove(&self) -> io::Result<()> {
        if is_mount_point(&self.root).unwrap_or(false) {
            detach(&self.root)?;
        }
        if let Some((image, _)) = &self.image {
            match std::fs::remove_file(image) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        match std::fs::remove_dir_all(&self.root) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Detaches every workspace mounted under `workspaces_dir` (tests, and an
/// operator taking a data directory away). Errors are logged.
pub fn detach_all(workspaces_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(workspaces_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_mount_point(&path).unwrap_or(false) {
            if let Err(e) = detach(&path) {
                log::warn!("could not unmount {}: {e}", path.display());
            }
        }
    }
}

/// Whether a filesystem is mounted on `dir`: its device differs from its
/// parent's. The folder is made by the server and never a link.
pub fn is_mount_point(dir: &Path) -> io::Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let Some(parent) = dir.parent() else {
        return Ok(true);
    };
    Ok(std::fs::symlink_metadata(dir)?.dev() != std::fs::symlink_metadata(parent)?.dev())
}

/// A sparse image file of [`image_bytes`], owner-only, with an ext4
/// filesystem whose root belongs to the sandbox user.
fn make_image(image: &Path, quota: u64) -> io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(image)?;
    file.set_len(image_bytes(quota))?;
    drop(file);
    run(helper("mkfs.ext4")
        .args(["-q", "-F", "-m", "0", "-b", "4096", "-i", BYTES_PER_INODE])
        // No online-resize reserve: images are never grown in place.
        .args(["-O", "^resize_inode", "-L", "ironclaw-ws", "-E"])
        .arg(format!(
            "root_owner={SANDBOX_UID}:{SANDBOX_UID},nodiscard,lazy_itable_init=1"
        ))
        .arg(image))
}

/// Blocks an unprivileged writer could use beyond `quota` on the
/// filesystem mounted at `root`.
fn blocks_over_quota(root: &Path, quota: u64) -> io::Result<u64> {
    let vfs = rustix::fs::statvfs(root)?;
    let block = vfs.f_frsize.max(1);
    let quota_blocks = quota.div_ceil(block);
    if vfs.f_bavail < quota_blocks {
        log::warn!(
            "workspace {}: its filesystem holds {} blocks, fewer than the quota's {quota_blocks}",
            root.display(),
            vfs.f_bavail
        );
    }
    Ok(vfs.f_bavail.saturating_sub(quota_blocks))
}

/// Lazily unmounts the filesystem on `dir`; the loop device goes with it.
/// Mounts `image` on `root` through a loop device. One at a time in the
/// whole server: `mount -o loop` picks a free loop device and two at once
/// can pick the same one, and the loser would leave its workspace a plain
/// folder with no quota. (Making the image, the slow part, runs in
/// parallel.)
fn mount_loop(image: &Path, root: &Path) -> io::Result<()> {
    static LOOP_SETUP: Mutex<()> = Mutex::new(());
    let _one = LOOP_SETUP.lock().unwrap_or_else(PoisonError::into_inner);
    run(helper("mount")
        .args(["-t", "ext4", "-o", MOUNT_OPTIONS])
        .arg(image)
        .arg(root))
}

/// Binds `from`'s filesystem on `to` with the flags every workspace mount
/// has (`nosuid,nodev,noatime`): a bind, then a remount of that bind.
fn bind_private(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::mount::{mount_bind, mount_remount, MountFlags};
    mount_bind(from, to)?;
    let flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOATIME;
    if let Err(e) = mount_remount(to, flags, c"") {
        let _ = detach(to);
        return Err(e.into());
    }
    Ok(())
}

fn detach(dir: &Path) -> io::Result<()> {
    rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH).map_err(io::Error::from)
}

/// Where the system keeps `mkfs.ext4`, `tune2fs` and `mount`: looked up
/// here first, since a service's `PATH` often lacks the `sbin` folders.
const HELPER_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// A command for the helper program `name`, by absolute path when found.
fn helper(name: &str) -> Command {
    let found = HELPER_DIRS
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file());
    match found {
        Some(path) => Command::new(path),
        None => Command::new(name),
    }
}

/// Runs a helper program, turning a failure into an error with its output.
fn run(command: &mut Command) -> io::Result<()> {
    let program = command.get_program().to_string_lossy().into_owned();
    let out = command.output().map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("{program} could not be run ({e}); install e2fsprogs and util-linux"),
        )
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

// ---------------------------------------------------------------- ledger

/// The uploads in flight into one workspace.
#[derive(Debug, Default)]
struct Account {
    /// Uploads holding a [`Claim`] here.
    uploads: usize,
    /// Bytes they have claimed (written or declared) and not yet released.
    claimed: u64,
    /// Bytes of uploads committed while any upload was in flight: each
    /// upload's usage count predates them.
    committed: u64,
}

/// Bytes claimed by uploads in flight, per workspace root. Process-wide:
/// every HTTP worker's uploads into one workspace must see each other's,
/// and the key is the workspace's own path, so separate servers in one
/// process (tests) never share an account.
static LEDGER: Mutex<BTreeMap<PathBuf, Account>> = Mutex::new(BTreeMap::new());

fn ledger() -> MutexGuard<'static, BTreeMap<PathBuf, Account>> {
    LEDGER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One upload's share of its workspace's quota. It grows before each chunk
/// is written ([`Claim::grow`]), so the check and the reservation are one
/// step under the ledger's lock; dropping it releases the bytes.
#[derive(Debug)]
pub struct Claim {
    root: PathBuf,
    /// Workspace usage measured when the upload began, without the file it
    /// replaces and without other uploads' temporary files.
    used_at_start: u64,
    /// The account's `committed` when the upload began.
    committed_at_start: u64,
    /// Bytes this claim holds.
    bytes: u64,
    quota: u64,
}

/// The quota would be passed; `used` is what counts against it besides the
/// refused upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub used: u64,
}

impl Claim {
    /// Opens a claim on the workspace at `root` whose usage is `used`.
    pub fn open(root: &Path, used: u64, quota: u64) -> Claim {
        let mut ledger = ledger();
        let account = ledger.entry(root.to_path_buf()).or_default();
        account.uploads += 1;
        Claim {
            root: root.to_path_buf(),
            used_at_start: used,
            committed_at_start: account.committed,
            bytes: 0,
            quota,
        }
    }

    /// Claims `more` bytes, or refuses when the workspace's usage, the
    /// uploads committed since this one began and every claim in flight
    /// (this one included) would pass the quota.
    pub fn grow(&mut self, more: u64) -> Result<(), OverQuota> {
        let mut ledger = ledger();
        let account = ledger.entry(self.root.clone()).or_default();
        let used = self
            .used_at_start
            .saturating_add(account.committed.saturating_sub(self.committed_at_start))
            .saturating_add(account.claimed);
        if used.saturating_add(more) > self.quota {
            return Err(OverQuota {
                used: used.saturating_sub(self.bytes),
            });
        }
        account.claimed = account.claimed.saturating_add(more);
        self.bytes = self.bytes.saturating_add(more);
        Ok(())
    }

    /// The upload's file is in place: its bytes now count as committed for
    /// the uploads still in flight, and the claim ends.
    pub fn commit(self, size: u64) {
        let mut ledger = ledger();
        let account = ledger.entry(self.root.clone()).or_default();
        account.committed = account.committed.saturating_add(size);
        drop(ledger);
        // `drop` releases the claim.
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut ledger = ledger();
        let account = ledger.entry(self.root.clone()).or_default();
        account.claimed = account.claimed.saturating_sub(self.bytes);
        account.uploads = account.uploads.saturating_sub(1);
        // With no upload in flight, the next one measures usage afresh.
        if account.uploads == 0 {
            ledger.remove(&self.root);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn images_leave_room_for_metadata_and_stay_close_to_the_quota() {
        let mib = 1024 * 1024;
        assert_eq!(image_bytes(0), 24 * mib);
        assert_eq!(image_bytes(20 * mib), 20 * mib + 20 * mib / 16 + 24 * mib);
        assert_eq!(image_bytes(u64::MAX), u64::MAX);
    }

    #[test]
    fn parallel_claims_share_one_quota() {
        let root = PathBuf::from(format!("/nonexistent/ledger-{}", std::process::id()));
        let mut a = Claim::open(&root, 5, 20);
        let mut b = Claim::open(&root, 5, 20);
        a.grow(7).unwrap();
        assert_eq!(b.grow(9), Err(OverQuota { used: 12 }));
        b.grow(8).unwrap();
        // `a` lands: its 7 bytes count as committed for `b`, and a new
        // upload, whose usage count includes them, sees `b`'s claim.
        a.commit(7);
        assert_eq!(b.grow(1), Err(OverQuota { used: 12 }));
        let mut c = Claim::open(&root, 12, 20);
        assert_eq!(c.grow(1), Err(OverQuota { used: 20 }));
        drop(b);
        c.grow(8).unwrap();
        drop(c);
        assert!(!ledger().contains_key(&root));
    }
}
