//! The store's file as redb sees it: how it is opened, what a failed open
//! means, and giving space back.
//!
//! Owns the check that a path starts like a redb database (before redb is
//! asked to open it), the mapping of redb's open errors to the store's
//! (locked, damaged, not a store), the redb settings every open uses, the one
//! way a writer puts a file under redb ([`writable`]), and
//! [`Store::shrink_file`]. It must not read or write the store's tables.

use super::{guarded, Db, Store};
use crate::error::{Error, Result};
use std::io::Read;
use std::path::Path;

/// redb's page cache, bounded so the plugin stays small.
const CACHE_BYTES: usize = 4 << 20;

const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// The redb settings of every open and create.
///
/// Commits are redb's default: one phase with page checksums (no
/// `set_two_phase_commit`, no quick repair, the exclusive-writer concurrency
/// mode, which does not force two phases). The page size is redb's fixed
/// 4 KiB and the region size its default (redb's setters for both exist only
/// in its own tests); the cache size does not change what a commit writes. What a commit writes is described in
/// [`super::write`].
pub(super) fn builder() -> redb::Builder {
    let mut builder = redb::Database::builder();
    builder.set_cache_size(CACHE_BYTES);
    builder.set_check_integrity_on_open(super::guard::PANICS_ABORT);
    builder
}

/// How a writable file is put under redb.
pub(super) enum Backing {
    /// Every write as redb makes it: the store's file.
    Plain,
    /// Through [`crate::pace::PacedBackend`] at this rate: a compaction's
    /// new file while it is built.
    Paced(Option<u64>),
}

/// A writable redb database over `file`, the file at `path`: created when
/// the file is empty, opened otherwise. Every writer goes through here (a new
/// store, an open for writing, a compaction's new file, built and opened
/// again), so there is one place between redb and the disk; the tests'
/// simulated disk (`sim_disk`) stands there to cut the power.
pub(super) fn writable(
    builder: &redb::Builder,
    path: &Path,
    file: std::fs::File,
    backing: Backing,
) -> std::result::Result<redb::Database, redb::DatabaseError> {
    #[cfg(test)]
    let ino = std::os::unix::fs::MetadataExt::ino(&file.metadata()?);
    let inner = redb::backends::FileBackend::new(file)?;
    match backing {
        Backing::Plain => over(
            builder,
            path,
            inner,
            #[cfg(test)]
            ino,
        ),
        Backing::Paced(rate) => over(
            builder,
            path,
            crate::pace::PacedBackend::new(inner, rate),
            #[cfg(test)]
            ino,
        ),
    }
}

fn over(
    builder: &redb::Builder,
    path: &Path,
    backend: impl redb::StorageBackend,
    #[cfg(test)] ino: u64,
) -> std::result::Result<redb::Database, redb::DatabaseError> {
    #[cfg(test)]
    if let Some(disk) = super::sim_disk::disk_for(path) {
        return builder.create_with_backend(disk.file(ino, backend)?);
    }
    #[cfg(not(test))]
    let _ = path;
    builder.create_with_backend(backend)
}

/// A rename of `from` over `to` is about to be done: the tests' simulated
/// disk counts it as one of its operations, and may cut the power there
/// (the rename is then not done).
#[cfg(test)]
pub(crate) fn before_rename(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Some(disk) = super::sim_disk::disk_for(to) else { return Ok(()) };
    let ino = std::fs::metadata(from)?.ino();
    let before = std::fs::metadata(to).ok().map(|m| m.ino());
    disk.dir_op(super::sim_disk::DirOp::Rename { target: super::sim_disk::canonical(to), before, ino })
}

/// The directory holding `path` is about to be synced: an operation of the
/// tests' simulated disk, which may fail it.
#[cfg(test)]
pub(crate) fn before_dir_sync(path: &Path) -> std::io::Result<()> {
    match super::sim_disk::disk_for(path) {
        Some(disk) => disk.dir_op(super::sim_disk::DirOp::Sync),
        None => Ok(()),
    }
}

/// Check that `path` is a file that starts like a redb database.
pub(super) fn check_magic(path: &Path) -> Result<()> {
    let mut magic = [0u8; 9];
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    if f.metadata().map_err(|e| Error::io(path, e))?.is_dir() {
        return Err(Error::NotAStore { path: path.to_path_buf(), reason: "it is a directory".into() });
    }
    if f.read_exact(&mut magic).is_err() {
        return Err(Error::NotAStore { path: path.to_path_buf(), reason: "it is not a redb database".into() });
    }
    if magic != REDB_MAGIC {
        // One or two flipped bits in the header still leave most of the magic:
        // that is a damaged store, not some other file (an unrelated file
        // matches 7 of these 9 bytes by chance about once in 10^15).
        let same = magic.iter().zip(REDB_MAGIC.iter()).filter(|(a, b)| a == b).count();
        if same >= 7 {
            return Err(Error::corrupt(path, "its redb file header is damaged"));
        }
        return Err(Error::NotAStore { path: path.to_path_buf(), reason: what_else(path, &magic).into() });
    }
    Ok(())
}

/// What a file that is not a store is instead, for the two files people
/// give by mistake: the node's SQLite database and a legacy `.dbak` backup
/// (decision: named, because "not a redb database" leaves a new user
/// guessing what a store is).
fn what_else(path: &Path, magic: &[u8; 9]) -> &'static str {
    if magic.starts_with(b"SQLite fo") {
        "it is an SQLite database, such as a node's lightningd.sqlite3, not a backup store"
    } else if crate::legacy::is_dbak(path) {
        "it is a legacy .dbak backup of the Python plugin, not a store; import it into a store first"
    } else {
        "it is not a redb database"
    }
}

/// An error opening a file that has redb's magic: a lock held elsewhere or an
/// I/O failure stay what they are; anything else means the file is damaged.
pub(super) fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
    match redb::Error::from(e) {
        redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => {
            Error::StoreLocked { path: path.to_path_buf() }
        }
        redb::Error::Io(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => Error::io(path, e),
        redb::Error::UpgradeRequired(v) => {
            Error::corrupt(path, format!("its header names storage format {v}, which no cln-backup writes"))
        }
        other => Error::damaged(path, other),
    }
}

impl Store {
    /// Give space freed by pruning back to the file system. Needs exclusive use.
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let (large, small) = (dir.path().join("large.sqlite3"), dir.path().join("small.sqlite3"));
    /// # Connection::open(&large)?.execute_batch(
    /// #     "CREATE TABLE t (x); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
    /// #      INSERT INTO t SELECT randomblob(1000) FROM n;",
    /// # )?;
    /// # Connection::open(&small)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")?;
    /// let path = dir.path().join("app.redb");
    /// let mut store = Store::create_with(&path, Model::Application { foreign_keys: true })?;
    /// store.add_snapshot_file(1, &large)?;
    /// // A smaller snapshot replaces the large one: the file keeps its length until shrunk.
    /// store.add_snapshot_file(1, &small)?;
    /// let before = std::fs::metadata(&path)?.len();
    /// assert!(store.shrink_file()?);
    /// assert!(std::fs::metadata(&path)?.len() < before);
    /// # Ok(()) }
    /// ```
    pub fn shrink_file(&mut self) -> Result<bool> {
        let path = self.path.clone();
        let db = self.db.get_mut().unwrap_or_else(|p| p.into_inner());
        guarded(&path, || match db {
            Db::Write(db) => match std::sync::Arc::get_mut(db) {
                Some(db) => db.compact().map_err(|e| Error::redb(&path, redb::Error::from(e))),
                None => Err(Error::redb(&path, redb::Error::TransactionInProgress)),
            },
            _ => Err(Error::ReadOnly { path: path.clone() }),
        })
    }
}
