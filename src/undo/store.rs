//! The object store: file contents named by their SHA-256, one file each
//! under `objects/ab/cdef…` of the session's snapshot folder. A content is
//! stored once however many checkpoints and paths hold it; unchanged files
//! are never copied again.
//!
//! Why not git's object store (libgit2 or gix): git deflates every object,
//! which on this 2-core machine costs several times the plain copy for the
//! first checkpoint of a large workspace, and neither library prunes loose
//! objects, so retention would still be ours to write. What git adds on top
//! (trees, packs, deltas) solves problems a checkpoint log does not have:
//! the log of what each command changed lives in the database.
//!
//! Objects are written to `tmp/` and renamed into place, so a name always
//! holds a whole object; reading one back checks its hash, so a damaged
//! object is reported, never restored.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::quota::{private_dir, PRIVATE_FILE_MODE};

/// Read and write buffer.
const CHUNK: usize = 64 * 1024;

/// Hex SHA-256 of an object's content.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId(String);

impl ObjectId {
    /// An id read back from the database: 64 lowercase hex digits, or
    /// `None` (never a path into the store's parent).
    pub fn parse(hex: &str) -> Option<Self> {
        (hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| ObjectId(hex.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(hasher: Sha256) -> Self {
        ObjectId(hex::encode(hasher.finalize()))
    }
}

/// One session's object store.
#[derive(Debug)]
pub struct ObjectStore {
    /// `data/snapshots/<session>`.
    dir: PathBuf,
    /// Bytes of every object stored, for `undo.max_mb`.
    bytes: u64,
    /// Makes temporary names unique within the store.
    next_temp: u64,
}

impl ObjectStore {
    /// Opens (creating) the store in `dir`, owner-only, and counts what it
    /// holds. Leftover temporary files of an interrupted write are removed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        private_dir(dir)?;
        private_dir(&dir.join("objects"))?;
        let temp = dir.join("tmp");
        if temp.exists() {
            std::fs::remove_dir_all(&temp)?;
        }
        private_dir(&temp)?;
        let mut bytes = 0u64;
        for fan in std::fs::read_dir(dir.join("objects"))? {
            let fan = fan?;
            if !fan.file_type()?.is_dir() {
                continue;
            }
            for object in std::fs::read_dir(fan.path())? {
                bytes = bytes.saturating_add(object?.metadata()?.len());
            }
        }
        Ok(ObjectStore {
            dir: dir.to_path_buf(),
            bytes,
            next_temp: 0,
        })
    }

    /// The store in `dir` for reading only (the diff route): nothing is
    /// created, counted or cleaned, so it can run beside the session's own
    /// handle.
    pub fn reader(dir: &Path) -> Self {
        ObjectStore {
            dir: dir.to_path_buf(),
            bytes: 0,
            next_temp: 0,
        }
    }

    /// Bytes stored.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn path(&self, id: &ObjectId) -> PathBuf {
        let (fan, rest) = id.0.split_at(2);
        self.dir.join("objects").join(fan).join(rest)
    }

    pub fn contains(&self, id: &ObjectId) -> bool {
        self.path(id).exists()
    }

    /// Stores `bytes` (a link's target, a small file read whole).
    pub fn put_bytes(&mut self, bytes: &[u8]) -> io::Result<ObjectId> {
        let mut hasher = Sha256::new();
        hasher.update(bytes);
        let id = ObjectId::of(hasher);
        if !self.contains(&id) {
            let (mut temp, temp_path) = self.temp_file()?;
            temp.write_all(bytes)?;
            self.settle(temp_path, &id, bytes.len() as u64)?;
        }
        Ok(id)
    }

    /// Stores what `file` holds from its current offset. The content is
    /// hashed first; only a content the store lacks is read again and
    /// copied, hashing what is copied, so the name always matches the bytes
    /// even if the file changed between the two reads.
    pub fn put_file(&mut self, file: &mut File) -> io::Result<ObjectId> {
        use std::io::{Seek, SeekFrom};
        let mut buf = vec![0u8; CHUNK];
        let mut hasher = Sha256::new();
        let first = read_full(file, &mut buf)?;
        if first < CHUNK {
            // Small: one read was all of it.
            return self.put_bytes(&buf[..first]);
        }
        hasher.update(&buf[..first]);
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let id = ObjectId::of(hasher);
        if self.contains(&id) {
            return Ok(id);
        }
        file.seek(SeekFrom::Start(0))?;
        let (mut temp, temp_path) = self.temp_file()?;
        let (id, len) = copy_hashing(file, &mut temp)?;
        if self.contains(&id) {
            let _ = std::fs::remove_file(&temp_path);
        } else {
            self.settle(temp_path, &id, len)?;
        }
        Ok(id)
    }

    /// Copies object `id` into `out`, checking its hash on the way: a
    /// damaged object is an error (`InvalidData`), and `out` must then be
    /// thrown away.
    pub fn copy_to(&self, id: &ObjectId, out: &mut impl Write) -> io::Result<u64> {
        let mut file = File::open(self.path(id))?;
        let (found, len) = copy_hashing(&mut file, out)?;
        if found != *id {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("checkpoint object {} is damaged", &id.0[..12]),
            ));
        }
        Ok(len)
    }

    /// Object `id` whole, if it is at most `limit` bytes (checked).
    pub fn read(&self, id: &ObjectId, limit: u64) -> io::Result<Option<Vec<u8>>> {
        if std::fs::metadata(self.path(id))?.len() > limit {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.copy_to(id, &mut out)?;
        Ok(Some(out))
    }

    /// Removes object `id` (gone already is fine).
    pub fn remove(&mut self, id: &ObjectId) -> io::Result<()> {
        let path = self.path(id);
        let len = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        std::fs::remove_file(&path)?;
        self.bytes = self.bytes.saturating_sub(len);
        Ok(())
    }

    fn temp_file(&mut self) -> io::Result<(File, PathBuf)> {
        self.next_temp += 1;
        let path = self.dir.join("tmp").join(self.next_temp.to_string());
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&path)?;
        Ok((file, path))
    }

    /// Moves a finished temporary file to its name.
    fn settle(&mut self, temp: PathBuf, id: &ObjectId, len: u64) -> io::Result<()> {
        let path = self.path(id);
        if let Some(fan) = path.parent() {
            if !fan.exists() {
                private_dir(fan)?;
            }
        }
        std::fs::rename(temp, path)?;
        self.bytes = self.bytes.saturating_add(len);
        Ok(())
    }
}

/// Copies `from` to its end into `to`; answers the SHA-256 of what was
/// copied and its length.
fn copy_hashing(from: &mut impl Read, to: &mut impl Write) -> io::Result<(ObjectId, u64)> {
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = from.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])?;
        len += n as u64;
    }
    Ok((ObjectId::of(hasher), len))
}

/// Reads until `buf` is full or the file ends; answers the bytes read.
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_stored_once_and_come_back_checked() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = ObjectStore::open(&dir.path().join("s")).unwrap();
        let small = store.put_bytes(b"hello").unwrap();
        assert_eq!(store.put_bytes(b"hello").unwrap(), small);
        assert_eq!(store.bytes(), 5);

        // A large file goes through the streaming path, and deduplicates
        // against the same content stored from memory.
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("big");
        std::fs::write(&path, &big).unwrap();
        let from_file = store.put_file(&mut File::open(&path).unwrap()).unwrap();
        assert_eq!(store.put_bytes(&big).unwrap(), from_file);
        assert_eq!(store.bytes(), 5 + big.len() as u64);

        let mut back = Vec::new();
        store.copy_to(&from_file, &mut back).unwrap();
        assert_eq!(back, big);

        // Reopening counts what is there; a damaged object is refused.
        let mut store = ObjectStore::open(&dir.path().join("s")).unwrap();
        assert_eq!(store.bytes(), 5 + big.len() as u64);
        std::fs::write(store.path(&small), b"hellp").unwrap();
        let err = store.copy_to(&small, &mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        store.remove(&from_file).unwrap();
        assert!(!store.contains(&from_file));
        assert_eq!(store.bytes(), 5);
    }

    #[test]
    fn ids_from_the_database_cannot_name_other_paths() {
        assert!(ObjectId::parse(&"a".repeat(64)).is_some());
        for bad in ["", "../../etc/passwd", &"A".repeat(64), &"a".repeat(63)] {
            assert!(ObjectId::parse(bad).is_none(), "{bad}");
        }
    }
}
