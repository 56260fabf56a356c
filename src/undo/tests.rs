//! Undo on a real folder: the scan finds exactly what changed, the store
//! copies only that, and a restore brings every byte back without ever
//! writing outside the workspace. (The same with the real sandbox, the
//! database and the routes is in `tests/it/undo.rs`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::restore::{apply, plan};
use super::scan::{scan, Change, Manifest};
use super::store::ObjectStore;
use crate::protocol::{ChangeKind, EntryKind};
use crate::workspace::Workspace;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
    ws: Workspace,
    store: ObjectStore,
    manifest: Manifest,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ws");
        fs::create_dir(&root).unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let store = ObjectStore::open(&tmp.path().join("snapshots")).unwrap();
        Fixture {
            ws: Workspace::open(root.clone()).unwrap(),
            _tmp: tmp,
            root,
            outside,
            store,
            manifest: Manifest::default(),
        }
    }

    fn write(&self, path: &str, data: &[u8]) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, data).unwrap();
    }

    fn read(&self, path: &str) -> Vec<u8> {
        fs::read(self.root.join(path)).unwrap()
    }

    /// The look after a command: its changes, contents stored.
    fn scan(&mut self) -> Vec<Change> {
        scan(&self.ws, &mut self.manifest, Some(&mut self.store), false)
            .unwrap()
            .changes
    }

    fn baseline(&mut self) {
        let found = scan(&self.ws, &mut self.manifest, Some(&mut self.store), true).unwrap();
        assert!(found.changes.is_empty());
    }

    /// Puts the workspace back as it was before the first of `since`.
    fn revert(&mut self, since: &[Change]) -> Vec<Change> {
        let steps = plan(since, &self.manifest);
        let (done, error) = apply(&self.ws, &self.store, &mut self.manifest, &steps);
        assert!(error.is_none(), "{error:?}");
        done
    }
}

/// Every path under `root` with its content (`/` for folders, `-> t` for
/// links), sorted: a whole tree to compare byte for byte.
fn tree(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, String)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let meta = fs::symlink_metadata(&path).unwrap();
            if meta.file_type().is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", fs::read_link(&path).unwrap().display()),
                ));
            } else if meta.is_dir() {
                out.push((rel, "/".into()));
                walk(root, &path, out);
            } else {
                let data = fs::read(&path).unwrap();
                let mode = meta.permissions().mode() & 0o777;
                out.push((rel, format!("{mode:o} {}", String::from_utf8_lossy(&data))));
            }
        }
    }
    walk(root, root, &mut out);
    out.sort();
    out
}

fn shown(changes: &[Change]) -> Vec<(String, ChangeKind, EntryKind, u64)> {
    changes
        .iter()
        .map(|c| {
            let p = c.public();
            (p.path, p.change, p.kind, p.size)
        })
        .collect()
}

#[test]
fn a_scan_finds_exactly_what_changed() {
    let mut f = Fixture::new();
    f.write("same.txt", b"same");
    f.write("grow.txt", b"1");
    f.write("gone/c.txt", b"c");
    f.write("stays/old.txt", b"o");
    f.baseline();
    assert_eq!(f.manifest.len(), 6);

    f.write("grow.txt", b"12");
    fs::remove_dir_all(f.root.join("gone")).unwrap();
    f.write("stays/new.txt", b"n");
    fs::create_dir(f.root.join("empty_dir")).unwrap();
    symlink(&f.outside, f.root.join("link")).unwrap();
    // Rewritten with the same bytes: not a change a person would see.
    f.write("same.txt", b"same");
    fs::set_permissions(
        f.root.join("stays/old.txt"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    use ChangeKind::*;
    use EntryKind::*;
    assert_eq!(
        shown(&f.scan()),
        [
            ("empty_dir".into(), Created, Dir, 0),
            ("gone".into(), Deleted, Dir, 0),
            ("gone/c.txt".into(), Deleted, File, 1),
            ("grow.txt".into(), Modified, File, 2),
            (
                "link".into(),
                Created,
                Link,
                f.outside.as_os_str().len() as u64
            ),
            ("stays/new.txt".into(), Created, File, 1),
            ("stays/old.txt".into(), Modified, File, 1),
        ]
    );
    assert!(f.scan().is_empty(), "a second look finds nothing new");
}

#[test]
fn unchanged_files_are_not_copied_again() {
    let mut f = Fixture::new();
    for i in 0..200 {
        f.write(
            &format!("d{}/f{i}.txt", i % 10),
            format!("file {i}").as_bytes(),
        );
    }
    f.baseline();
    let stored = f.store.bytes();
    assert_eq!(
        stored,
        (0..200)
            .map(|i| format!("file {i}").len() as u64)
            .sum::<u64>()
    );
    f.write("d3/f3.txt", b"file 3, longer now");
    let changes = f.scan();
    assert_eq!(changes.len(), 1);
    // Only the new content was added.
    assert_eq!(f.store.bytes(), stored + "file 3, longer now".len() as u64);
    // A copy of an existing content is stored once.
    f.write("copy.txt", b"file 7");
    f.scan();
    assert_eq!(f.store.bytes(), stored + "file 3, longer now".len() as u64);
}

#[test]
fn every_path_is_found_past_the_old_snapshot_limit() {
    let mut f = Fixture::new();
    for d in 0..20 {
        for i in 0..1000 {
            f.write(&format!("d{d:02}/f{i:04}"), b"x");
        }
    }
    f.baseline();
    // Touch 15 000 of the 20 000 files: the last ones walked included.
    for d in 5..20 {
        for i in 0..1000 {
            f.write(&format!("d{d:02}/f{i:04}"), b"yy");
        }
    }
    let changes = f.scan();
    assert_eq!(changes.len(), 15_000);
    assert!(changes
        .iter()
        .all(|c| c.public().change == ChangeKind::Modified));
    assert_eq!(changes.last().unwrap().path, "d19/f0999");
}

#[test]
fn a_revert_brings_back_every_byte_and_removes_what_was_made() {
    let mut f = Fixture::new();
    f.write("a.txt", b"alpha");
    f.write("sub/b.csv", b"1,2,3\n");
    f.write("sub/deeper/c.bin", &[0, 1, 2, 255]);
    fs::set_permissions(f.root.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    symlink("sub/b.csv", f.root.join("link")).unwrap();
    f.baseline();
    let before = tree(&f.root);

    // `rm -rf /workspace/*`, then new files made by a later command.
    for name in ["a.txt", "link"] {
        fs::remove_file(f.root.join(name)).unwrap();
    }
    fs::remove_dir_all(f.root.join("sub")).unwrap();
    let rm = f.scan();
    assert_eq!(rm.len(), 6);
    f.write("new/made.txt", b"made later");
    f.write("a.txt", b"a different a");
    let later = f.scan();

    let mut since = rm.clone();
    since.extend(later);
    let done = f.revert(&since);
    assert_eq!(tree(&f.root), before);
    assert!(done
        .iter()
        .any(|c| c.path == "new/made.txt" && c.after.is_none()));
    assert!(f.scan().is_empty(), "the manifest follows the restore");

    // The restore is a change set like any other: reverting it gives the
    // state after the commands back.
    f.revert(&done);
    assert_eq!(f.read("a.txt"), b"a different a");
    assert_eq!(f.read("new/made.txt"), b"made later");
    assert!(!f.root.join("sub").exists());
}

#[test]
fn a_truncation_and_a_rewrite_are_reverted() {
    let mut f = Fixture::new();
    f.write("report.csv", &b"row\n".repeat(10_000));
    f.write("one.py", b"print(1)\n");
    f.write("two.py", b"print(2)\n");
    f.write("three.py", b"print(3)\n");
    f.baseline();
    let before = tree(&f.root);

    f.write("report.csv", b"");
    let truncated = f.scan();
    assert_eq!(
        shown(&truncated),
        [(
            "report.csv".into(),
            ChangeKind::Modified,
            EntryKind::File,
            0
        )]
    );
    f.revert(&truncated);
    assert_eq!(tree(&f.root), before);
    f.scan();

    // A program rewrites three files and creates two.
    for name in ["one.py", "two.py", "three.py"] {
        f.write(name, b"rewritten\n");
    }
    f.write("out/x.json", b"{}");
    f.write("y.log", b"log");
    let program = f.scan();
    assert_eq!(program.len(), 6, "{program:?}");
    f.revert(&program);
    assert_eq!(tree(&f.root), before);
}

#[test]
fn a_restore_never_writes_through_a_planted_link() {
    let mut f = Fixture::new();
    f.write("d/secret-target.txt", b"mine");
    f.baseline();
    // The sandbox swaps the folder for a link to the outside.
    fs::remove_dir_all(f.root.join("d")).unwrap();
    symlink(&f.outside, f.root.join("d")).unwrap();
    let swapped = f.scan();
    f.revert(&swapped);
    assert_eq!(
        fs::read_dir(&f.outside).unwrap().count(),
        0,
        "nothing written outside"
    );
    assert_eq!(f.read("d/secret-target.txt"), b"mine");
    assert!(fs::symlink_metadata(f.root.join("d")).unwrap().is_dir());
}

#[test]
fn the_scan_strips_setuid_bits() {
    let mut f = Fixture::new();
    f.baseline();
    f.write("tool", b"#!/bin/sh\n");
    fs::set_permissions(f.root.join("tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    let found = scan(&f.ws, &mut f.manifest, Some(&mut f.store), false).unwrap();
    assert_eq!(found.setid_cleared, 1);
    let mode = fs::metadata(f.root.join("tool"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    assert_eq!(found.changes[0].after.as_ref().unwrap().mode, 0o755);
}

#[test]
fn a_damaged_object_is_refused_not_restored() {
    let mut f = Fixture::new();
    f.write("a.txt", b"original");
    f.baseline();
    f.write("a.txt", b"changed!");
    let changes = f.scan();
    let object = changes[0].before.as_ref().unwrap().object.clone().unwrap();
    let (fan, rest) = object.as_str().split_at(2);
    let path = f._tmp.path().join("snapshots/objects").join(fan).join(rest);
    fs::write(path, b"tampered").unwrap();
    let steps = plan(&changes, &f.manifest);
    let (done, error) = apply(&f.ws, &f.store, &mut f.manifest, &steps);
    assert!(done.is_empty());
    assert!(error.unwrap().to_string().contains("damaged"));
    assert_eq!(f.read("a.txt"), b"changed!", "the file is left as it was");
}

/// With the workspace as its own filesystem (the server as root), the
/// kernel says what a command touched and nothing else is looked at;
/// whenever the paths cannot tell the whole story the tree is walked.
/// Without, every look walks.
#[test]
fn a_watched_workspace_is_looked_at_where_it_was_touched_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::config::Settings::load(None).unwrap();
    settings.data.dir = dir.path().to_path_buf();
    let undo = super::Undo::new(&settings, "watched");
    let mounted = crate::quota::QuotaMode::of_process() == crate::quota::QuotaMode::Mounted;
    let root = crate::quota::WorkspaceVolume::of_session(&settings, "watched")
        .root()
        .to_path_buf();
    undo.before_exec().unwrap();
    for i in 0..50 {
        let sub = root.join(format!("d{}", i % 5));
        fs::create_dir_all(&sub).unwrap();
        fs::write(sub.join(format!("f{i}")), format!("{i}")).unwrap();
    }
    let made = undo.after_exec().unwrap();
    assert_eq!(made.changes.len(), 55);
    assert!(made.walked, "new folders: walked");

    let check = |what: &str, changes: &[(&str, ChangeKind)], walked_if_watched: bool| {
        let scanned = undo.after_exec().unwrap();
        let got: Vec<(String, ChangeKind)> = scanned
            .changes
            .iter()
            .map(|c| (c.path.clone(), c.public().change))
            .collect();
        let want: Vec<(String, ChangeKind)> =
            changes.iter().map(|(p, c)| (p.to_string(), *c)).collect();
        assert_eq!(got, want, "{what}");
        assert_eq!(
            scanned.walked,
            !mounted || walked_if_watched,
            "{what}: walked"
        );
    };
    check("nothing", &[], false);
    fs::write(root.join("d1/f1"), "changed").unwrap();
    fs::write(root.join("d2/new"), "new").unwrap();
    fs::remove_file(root.join("d3/f3")).unwrap();
    check(
        "a write, a new file, a deletion",
        &[
            ("d1/f1", ChangeKind::Modified),
            ("d2/new", ChangeKind::Created),
            ("d3/f3", ChangeKind::Deleted),
        ],
        false,
    );
    fs::set_permissions(root.join("d4/f4"), fs::Permissions::from_mode(0o600)).unwrap();
    check("a mode change", &[("d4/f4", ChangeKind::Modified)], false);
    fs::rename(root.join("d0/f0"), root.join("d0/g0")).unwrap();
    check(
        "a rename",
        &[
            ("d0/f0", ChangeKind::Deleted),
            ("d0/g0", ChangeKind::Created),
        ],
        false,
    );
    // Another name for the same file: a write through it changes both.
    fs::hard_link(root.join("d1/f6"), root.join("d2/link")).unwrap();
    check("a hard link", &[("d2/link", ChangeKind::Created)], true);
    fs::write(root.join("d2/link"), "through the link").unwrap();
    check(
        "a write through a hard link",
        &[
            ("d1/f6", ChangeKind::Modified),
            ("d2/link", ChangeKind::Modified),
        ],
        true,
    );
    // A second name made, written through and removed before the look:
    // the file it named changed without an event of its own.
    fs::hard_link(root.join("d1/f11"), root.join("d1/tmp")).unwrap();
    fs::write(root.join("d1/tmp"), "sneaky").unwrap();
    fs::remove_file(root.join("d1/tmp")).unwrap();
    check(
        "a short-lived second name",
        &[("d1/f11", ChangeKind::Modified)],
        true,
    );
    // The same with a name the file routes use for uploads in flight.
    fs::hard_link(root.join("d1/f16"), root.join("d1/.ironclaw-upload-x")).unwrap();
    fs::write(root.join("d1/.ironclaw-upload-x"), "sneaky").unwrap();
    fs::remove_file(root.join("d1/.ironclaw-upload-x")).unwrap();
    check(
        "a short-lived upload-like name",
        &[("d1/f16", ChangeKind::Modified)],
        true,
    );
    fs::hard_link(root.join("d1/f21"), root.join("d1/.ironclaw-upload-y")).unwrap();
    undo.after_exec().unwrap();
    fs::write(root.join("d1/.ironclaw-upload-y"), "kept name").unwrap();
    check(
        "a write through a lasting upload-like name",
        &[("d1/f21", ChangeKind::Modified)],
        true,
    );
    fs::remove_dir_all(root.join("d4")).unwrap();
    let gone = undo.after_exec().unwrap();
    assert_eq!(gone.changes.len(), 11, "a folder and its ten files");
    assert!(gone.walked);
    crate::quota::detach_all(&settings.workspaces_dir());
}
