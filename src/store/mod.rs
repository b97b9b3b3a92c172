//! The store: one redb file per node holding the change log, the base
//! snapshot and the metadata.
//!
//! Owns the tables, their invariants and every write to them; each public
//! write is one redb write transaction, durable (fsync'd) before it returns
//! (a [`BulkLoad`] for imports: when it finishes). It must not know about
//! lightningd's protocol, and it does not replay SQL: restore and compaction
//! read it through a [`Reader`].
//!
//! This module holds the [`Store`] type and the two ways of opening a file:
//! for writing, with redb's exclusive lock, or read-only
//! ([`Store::open_read_only`]), which never changes a byte of the file. The
//! rest is one module per idea, so that each has one obvious home:
//! - `tables`: the table definitions;
//! - `state`: the head, derived from the tables at open;
//! - `write`: every write (changes, bulk loads, rewinds, snapshots);
//! - `rewrite`: publishing a compaction as a new file put in the store's place;
//! - `read`: the read view and its chain check;
//! - `log`: where a change record lives (the tail, recent records, sealed segments);
//! - `snapshot`: snapshot chunks;
//! - `report`: the status a store reports;
//! - `file`: the file's magic, open errors, redb's settings, shrinking;
//! - `guard`: the one panic boundary around redb (`guarded`);
//! - `overlay`: the in-memory repair of a crashed writer's file.
//!
//! Invariants (see ARCHITECTURE.md):
//! - change records are keyed by store version; versions are consecutive
//!   from the oldest snapshot (or from 0 when there is none) up to the head;
//! - one or more snapshots; any version from the oldest to the head restores
//!   from the newest snapshot at or below it;
//! - each change record chains from the one before it (or from the oldest
//!   snapshot's anchor, or the store's genesis hash); a compaction
//!   snapshot's anchor is the hash of the record at its version;
//! - record times never go back;
//! - head and prev_version are derived from the log's keys, never stored
//!   twice, so adding a change touches one table.
//!
//! ```
//! use cln_backup::{Model, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("app.redb");
//! let store = Store::create_with(&path, Model::Application { foreign_keys: true })?;
//! store.add_change(1, &["CREATE TABLE t (x)"])?;
//! store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
//! drop(store);
//! // All of it is in the one file, read back through a read view.
//! let reader = Store::open_read_only(&path)?.reader()?;
//! let versions: Vec<u64> = reader.changes(reader.head())?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
//! assert_eq!(versions, [1, 2]);
//! # Ok(()) }
//! ```

mod file;
#[cfg(test)]
pub(crate) use file::{before_dir_sync, before_rename};
mod guard;
mod log;
mod overlay;
#[cfg(test)]
mod power_cut;
mod read;
mod report;
mod rewrite;
#[cfg(test)]
mod sim_disk;
mod snapshot;
mod state;
mod tables;
mod write;

pub(crate) use guard::guarded;
pub use read::{Changes, Reader};
pub use report::{SnapshotInfo, Status};
pub(crate) use rewrite::Rewrite;
pub(crate) use tables::{CHANGES, CHUNKS, META, RECENT, SEALED, SNAPSHOTS};
pub use write::{Added, BulkLoad};

use crate::error::{Error, Result};
use crate::record::{now_ms, Meta};
#[cfg(any(test, feature = "fuzzing"))]
use crate::version::Seq;
use redb::{ReadableDatabase, ReadableTable};
use state::State;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tables::{KEY_FORMAT, KEY_META, KEY_MODEL};

/// The records of a sealed segment's bytes (for the fuzz targets, see
/// `crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn segment_records(bytes: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    log::Segment::from_bytes(bytes).map(|s| s.records)
}

/// A sealed segment of `records` from `first` (a fuzz target's seed).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn segment_bytes(first: Seq, records: Vec<Vec<u8>>) -> Option<Vec<u8>> {
    log::Segment { first, records }.to_bytes().ok()
}

/// The redb handle behind a store, and whether it may be written.
#[derive(Clone)]
enum Db {
    /// [`Store::create`] or [`Store::open`]: redb's exclusive lock, writable.
    Write(Arc<redb::Database>),
    /// [`Store::open_read_only`] of a cleanly closed file: a shared lock, the
    /// file opened read-only.
    Read(Arc<redb::ReadOnlyDatabase>),
    /// [`Store::open_read_only`] of a file whose writer died without closing
    /// it: redb's repair ran over an [`overlay::Overlay`], in memory.
    Recovered(Arc<redb::Database>),
    /// A write failed in storage (see [`Store::failed`]): nothing more is
    /// read or written until the store is opened again.
    Failed(Arc<str>),
    /// Only while the store is dropped.
    Closed,
}

/// An open store. Safe to share between threads: writes are serialised.
///
/// Reading its state ([`Store::version`], [`Store::head`],
/// [`Store::status`], ...) never waits for a write: a write holds the state
/// lock across its commit and its sync, and publishes the state it leaves
/// once it is durable; those calls read what was last published.
///
/// ```
/// use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// std::thread::scope(|s| {
///     // Four writers store one change each; one that lost a race tries the next version.
///     let writers: Vec<_> = (0..4)
///         .map(|_| {
///             s.spawn(|| loop {
///                 match store.add_change(store.version() + 1, &["INSERT INTO t VALUES (1)"]) {
///                     Err(e) if e.is_retryable() => continue,
///                     done => break done,
///                 }
///             })
///         })
///         .collect();
///     writers.into_iter().try_for_each(|w| w.join().expect("a writer panicked").map(drop))
/// })?;
/// assert_eq!((store.version(), store.status()?.changes), (5, 5));
/// # Ok(()) }
/// ```
pub struct Store {
    path: PathBuf,
    /// Replaced whole, under the state lock, when a compaction puts a
    /// rewritten file in place (see `rewrite`); every write takes it after
    /// taking the state lock.
    db: RwLock<Db>,
    state: Mutex<State>,
    /// The state as the last write left it, for the calls that only read
    /// it: replaced (never held) by whoever changed `state`, when it lets go
    /// of the lock (see [`StateGuard`]).
    published: RwLock<Arc<State>>,
    /// Held by a running compaction (and a bulk load): one at a time.
    compacting: Mutex<()>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // redb flushes and unlocks on drop; a store that met a damaged page may
        // fail there too, and that must stay as quiet as the failure itself.
        let db = std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), Db::Closed);
        let _ = guarded(&self.path, move || {
            drop(db);
            Ok(())
        });
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish_non_exhaustive()
    }
}

fn random_id() -> [u8; 16] {
    // Uniqueness, not secrecy: time, pid and an address mixed by BLAKE3.
    let mut h = blake3::Hasher::new();
    h.update(&now_ms().to_le_bytes());
    h.update(&std::process::id().to_le_bytes());
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.update(&d.as_nanos().to_le_bytes());
    }
    let local = 0u8;
    h.update(&(&local as *const u8 as usize).to_le_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&h.finalize().as_bytes()[..16]);
    id
}

impl Store {
    /// Create a new, empty store at `path` (mode 0600) for lightningd's
    /// changes ([`Model::Lightningd`](crate::Model)). Refuses an existing
    /// path.
    ///
    /// ```
    /// use cln_backup::{Error, Model, Store};
    /// use std::os::unix::fs::PermissionsExt;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// let store = Store::create(&path)?;
    /// assert_eq!((store.model(), store.version()), (Model::Lightningd, 0));
    /// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
    /// assert!(matches!(Store::create(&path), Err(Error::AlreadyExists { .. })));
    /// # Ok(()) }
    /// ```
    pub fn create(path: impl AsRef<Path>) -> Result<Store> {
        Store::create_with(path, crate::Model::Lightningd)
    }

    /// Create a new, empty store at `path` (mode 0600) that reads and
    /// replays its changes as `model` says, for good: the model is recorded
    /// in the store. Refuses an existing path.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.redb");
    /// drop(Store::create_with(&path, Model::Application { foreign_keys: true })?);
    /// assert_eq!(Store::open(&path)?.model(), Model::Application { foreign_keys: true });
    /// # Ok(()) }
    /// ```
    pub fn create_with(path: impl AsRef<Path>, model: crate::Model) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path).map_err(|e| match e
                .kind()
            {
                std::io::ErrorKind::AlreadyExists => Error::AlreadyExists { path: path.clone() },
                _ => Error::io(&path, e),
            })?;
        let meta = Meta { store_id: random_id(), created_ms: now_ms(), rewound_at: None, last_compaction: None };
        let meta_bytes = meta.to_bytes().map_err(|what| Error::Encode { path: path.clone(), what })?;
        guarded(&path.clone(), move || {
            let db = file::writable(&file::builder(), &path, file, file::Backing::Plain)
                .map_err(|e| Error::redb(&path, e))?;
            let txn = db.begin_write().map_err(|e| Error::redb(&path, e))?;
            {
                let mut t = txn.open_table(META).map_err(|e| Error::redb(&path, e))?;
                t.insert(KEY_FORMAT, model.format().to_le_bytes().as_slice()).map_err(|e| Error::redb(&path, e))?;
                t.insert(KEY_META, meta_bytes.as_slice()).map_err(|e| Error::redb(&path, e))?;
                if model != crate::Model::Lightningd {
                    t.insert(KEY_MODEL, model.to_bytes().as_slice()).map_err(|e| Error::redb(&path, e))?;
                }
                txn.open_table(CHANGES).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(RECENT).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(SEALED).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(SNAPSHOTS).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(CHUNKS).map_err(|e| Error::redb(&path, e))?;
            }
            txn.commit().map_err(|e| Error::redb(&path, e))?;
            crate::atomic_file::sync_parent(&path)?;
            Store::from_db(path, Db::Write(Arc::new(db)))
        })
    }

    /// Open an existing store for reading and writing, with an exclusive lock.
    ///
    /// ```
    /// use cln_backup::{ErrorKind, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// drop(Store::create(&path)?);
    /// let store = Store::open(&path)?;
    /// // One writer at a time: a second open waits for the first to close.
    /// assert_eq!(Store::open(&path).unwrap_err().kind(), ErrorKind::Busy);
    /// drop(store);
    /// assert!(Store::open(&path).is_ok());
    /// # Ok(()) }
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_write(path.as_ref(), false)
    }

    /// [`Store::open`], after checking every page of the file against redb's
    /// checksums (it reads the whole file). For a command about to rewrite
    /// much of a store (compaction): redb trusts the pages it frees, and a
    /// damaged one met while committing can abort the process, where a
    /// damaged page met while reading is an error.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.redb");
    /// Store::create_with(&path, Model::Application { foreign_keys: true })?.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let store = Store::open_checked(&path)?;
    /// assert_eq!((store.version(), store.is_read_only()), (1, false));
    /// # Ok(()) }
    /// ```
    pub fn open_checked(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_write(path.as_ref(), true)
    }

    fn open_write(path: &Path, check: bool) -> Result<Store> {
        let path = path.to_path_buf();
        file::check_magic(&path)?;
        guarded(&path.clone(), move || {
            let handle = OpenOptions::new().read(true).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
            let db = file::writable(
                file::builder().set_check_integrity_on_open(check || guard::PANICS_ABORT),
                &path,
                handle,
                file::Backing::Plain,
            )
            .map_err(|e| file::open_error(&path, e))?;
            let store = Store::from_db(path, Db::Write(Arc::new(db)))?;
            store.upgrade_format()?;
            // With the store's lock held, no compaction of it runs: a
            // temporary beside it from a process that is gone is a leftover.
            if let Ok(real) = std::fs::canonicalize(&store.path) {
                crate::atomic_file::remove_leftovers(&crate::atomic_file::parent_dir(&real));
            }
            Ok(store)
        })
    }

    /// Mark a store of an older format (already accepted by the open) as
    /// its model's format (see [`crate::Model`]) before this build writes to it: what it writes
    /// (codec 2 records, `recent_changes`) is not readable by the builds that
    /// wrote the older format, which then refuse the file as too new instead
    /// of calling it damaged. A store already at this format is left as it is.
    fn upgrade_format(&self) -> Result<()> {
        self.upgrade_format_inner().map_err(|e| self.failed(e))
    }

    fn upgrade_format_inner(&self) -> Result<()> {
        let db = self.writer()?;
        let format = self.lock().model.format();
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut meta = txn.open_table(META).map_err(|e| self.err(e))?;
            let stored = meta
                .get(KEY_FORMAT)
                .map_err(|e| self.err(e))?
                .and_then(|v| <[u8; 4]>::try_from(v.value()).ok())
                .map(u32::from_le_bytes);
            if stored.is_some_and(|f| f >= format) {
                // Nothing to write: the transaction is dropped, not committed.
                return Ok(());
            }
            meta.insert(KEY_FORMAT, format.to_le_bytes().as_slice()).map_err(|e| self.err(e))?;
            txn.open_table(RECENT).map_err(|e| self.err(e))?;
        }
        txn.commit().map_err(|e| self.err(e))
    }

    /// Open an existing store for reading only. The file is opened read-only
    /// and its bytes never change, so this works on read-only media and for a
    /// user who may only read the file.
    ///
    /// A store whose writer died without closing it (a crashed plugin's) is
    /// read too: redb's repair of such a file runs over a copy-on-write layer
    /// in memory, and the file stays as the crash left it.
    ///
    /// While one process reads a crashed store this way, its locks are a
    /// writer's locks taken shared: another process's writer and readers are
    /// refused with [`Error::StoreLocked`] until it is done.
    ///
    /// A store a live writer holds (a running node's plugin) is refused with
    /// [`Error::StoreLocked`]: redb's writer rewrites pages in place, so there
    /// is no consistent state to read beside it from another process, and the
    /// plugin's `backup-status` answers for a running node. Every write method
    /// of the returned store fails with [`Error::ReadOnly`].
    ///
    /// ```
    /// use cln_backup::{Error, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// drop(Store::create(&path)?);
    /// let before = std::fs::read(&path)?;
    /// let store = Store::open_read_only(&path)?;
    /// assert!(matches!(store.rewind(), Err(Error::ReadOnly { .. })));
    /// drop(store);
    /// assert_eq!(std::fs::read(&path)?, before, "reading never writes");
    /// # Ok(()) }
    /// ```
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        file::check_magic(&path)?;
        guarded(&path.clone(), move || {
            let builder = file::builder();
            // redb checks a file whole only when it opens it for writing (it
            // commits the allocator state it rebuilds): where panics abort,
            // a read-only open goes through the in-memory layer too, so
            // that the check runs and writes nothing to the file.
            let opened = if guard::PANICS_ABORT {
                Err(redb::DatabaseError::RepairAborted)
            } else {
                builder.open_read_only(&path)
            };
            match opened {
                Ok(db) => Store::from_db(path, Db::Read(Arc::new(db))),
                Err(redb::DatabaseError::RepairAborted) => {
                    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                    let overlay = overlay::Overlay::new(file).map_err(|e| Error::io(&path, e))?;
                    let db = builder.create_with_backend(overlay).map_err(|e| file::open_error(&path, e))?;
                    Store::from_db(path, Db::Recovered(Arc::new(db)))
                }
                Err(e) => Err(file::open_error(&path, e)),
            }
        })
    }

    fn from_db(path: PathBuf, db: Db) -> Result<Store> {
        guarded(&path.clone(), move || {
            let store = Store {
                path,
                db: RwLock::new(db),
                state: Mutex::new(State::empty()),
                published: RwLock::new(Arc::new(State::empty())),
                compacting: Mutex::new(()),
            };
            let txn = store.begin_read()?;
            let state = state::load_state(&store.path, &txn, true)?;
            drop(txn);
            *store.lock() = state;
            Ok(store)
        })
    }

    /// The store's file.
    ///
    /// ```
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// assert_eq!(Store::create(&path)?.path(), path);
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this handle refuses writes: it was opened with
    /// [`Store::open_read_only`], or a write through it failed in storage
    /// ([`Error::WriteFailed`] until the store is
    /// opened again).
    ///
    /// ```
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// assert!(!Store::create(&path)?.is_read_only());
    /// assert!(Store::open_read_only(&path)?.is_read_only());
    /// # Ok(()) }
    /// ```
    pub fn is_read_only(&self) -> bool {
        !matches!(self.db(), Db::Write(_))
    }

    /// The current database handle (cheap: a reference count).
    fn db(&self) -> Db {
        self.db.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        let txn = match self.db() {
            Db::Write(db) | Db::Recovered(db) => db.begin_read(),
            Db::Read(db) => db.begin_read(),
            Db::Failed(cause) => return Err(Error::WriteFailed { path: self.path.clone(), cause: cause.to_string() }),
            Db::Closed => return Err(Error::redb(&self.path, redb::Error::DatabaseClosed)),
        };
        txn.map_err(|e| self.err(e))
    }

    /// The database, for a write; refused on a read-only store. Taken after
    /// the state lock by every write (see [`Store::db`]).
    fn writer(&self) -> Result<Arc<redb::Database>> {
        match self.db() {
            Db::Write(db) => Ok(db),
            Db::Failed(cause) => Err(Error::WriteFailed { path: self.path.clone(), cause: cause.to_string() }),
            _ => Err(Error::ReadOnly { path: self.path.clone() }),
        }
    }

    /// What a write that returned `e` leaves: after a failure in storage
    /// (redb's I/O errors, a full disk, a failed sync) the handle is closed
    /// for good, so that nothing is built on a state the disk may not hold
    /// (redb keeps serving reads of a commit whose sync failed, and a
    /// compaction would publish them in a new file). The error is returned
    /// as it was; later calls get [`Error::WriteFailed`].
    ///
    /// Decision: only storage errors close the handle. A refusal (a gap, a
    /// rewind not allowed) or damage found while reading changes nothing on
    /// disk.
    fn failed(&self, e: Error) -> Error {
        if let Error::Storage { source, .. } = &e {
            let cause: Arc<str> = Arc::from(source.to_string());
            let old = std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), Db::Failed(cause));
            tracing::error!(
                "{}: a write failed in storage ({source}); the store is closed until opened again",
                self.path.display()
            );
            let _ = guarded(&self.path, move || {
                drop(old);
                Ok(())
            });
        }
        e
    }

    /// Whether `db` is still the database the store writes to (a
    /// compaction checks, under the state lock, that the file it read is
    /// still the store's before putting its own in place).
    fn writes_to(&self, db: &Arc<redb::Database>) -> bool {
        matches!(&*self.db.read().unwrap_or_else(|p| p.into_inner()), Db::Write(now) if Arc::ptr_eq(now, db))
    }

    /// Taken by a compaction (and a bulk load) for as long as it runs.
    pub(crate) fn lock_compaction(&self) -> MutexGuard<'_, ()> {
        self.compacting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a compaction is running on this store now (or a [`BulkLoad`],
    /// which holds the same lock: a compaction waits for it).
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let model = Model::Application { foreign_keys: true };
    /// let store = Arc::new(Store::create_with(dir.path().join("app.redb"), model)?);
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let seen = Arc::new(AtomicBool::new(false));
    /// let (during, watched) = (seen.clone(), store.clone());
    /// // The replay's progress is reported while the compaction runs.
    /// let progress = Arc::new(move |_| during.store(watched.is_compacting(), Ordering::SeqCst));
    /// compact::compact(&store, &compact::Options { progress: Some(progress), ..Default::default() })?;
    /// assert!(seen.load(Ordering::SeqCst));
    /// assert!(!store.is_compacting());
    /// # Ok(()) }
    /// ```
    pub fn is_compacting(&self) -> bool {
        self.compacting.try_lock().is_err()
    }

    fn lock(&self) -> StateGuard<'_> {
        // A panic while holding the lock cannot leave State half-updated: it is
        // replaced whole after each commit.
        StateGuard { state: self.state.lock().unwrap_or_else(|p| p.into_inner()), store: self, changed: false }
    }

    /// The state the last write published: never waits for a write.
    fn published(&self) -> Arc<State> {
        self.published.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }
}

/// The state lock, held. Whoever changes the state through it publishes
/// what it leaves when it lets go (see [`Store::published`]).
struct StateGuard<'s> {
    state: MutexGuard<'s, State>,
    store: &'s Store,
    changed: bool,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.state
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.changed = true;
        &mut self.state
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        if self.changed {
            let now = Arc::new(self.state.clone());
            *self.store.published.write().unwrap_or_else(|p| p.into_inner()) = now;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The format stored in the file at `path`, read with redb directly.
    fn stored_format(path: &Path) -> u32 {
        let db = redb::Database::open(path).unwrap();
        let txn = db.begin_read().unwrap();
        let meta = txn.open_table(META).unwrap();
        let v = meta.get(KEY_FORMAT).unwrap().unwrap();
        u32::from_le_bytes(<[u8; 4]>::try_from(v.value()).unwrap())
    }

    #[test]
    fn a_format_1_store_reads_as_it_is_and_is_marked_2_when_opened_for_writing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::create(&path).unwrap();
        for v in 1..=3 {
            let stmts = [format!("INSERT INTO t VALUES ({v})"), crate::version::bump_statement(v)];
            store.add_change(v, &stmts).unwrap();
        }
        drop(store);
        assert_eq!(stored_format(&path), 2);
        // What format 1 looked like: no recent_changes, format 1.
        {
            let db = redb::Database::open(&path).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(META).unwrap().insert(KEY_FORMAT, 1u32.to_le_bytes().as_slice()).unwrap();
            assert!(txn.delete_table(RECENT).unwrap());
            txn.commit().unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let reader = Store::open_read_only(&path).unwrap();
        assert_eq!(reader.reader().unwrap().changes(3).unwrap().count(), 3);
        drop(reader);
        assert_eq!(std::fs::read(&path).unwrap(), before, "a read-only open wrote the file");
        let store = Store::open(&path).unwrap();
        store.add_change(4, &["SELECT 4".to_string(), crate::version::bump_statement(4)]).unwrap();
        assert_eq!(store.reader().unwrap().changes(4).unwrap().count(), 4);
        drop(store);
        assert_eq!(stored_format(&path), 2);
    }

    #[test]
    fn reading_the_state_does_not_wait_for_a_write_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s.redb")).unwrap();
        store.add_change(1, &["SELECT 1".to_string(), crate::version::bump_statement(1)]).unwrap();
        // What a write holds across its commit and its sync.
        let held = store.lock();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let status = store.status().map(|s| s.version).ok();
                let _ = tx.send((store.version(), store.head(), status, store.since_snapshot().0, store.id()));
            });
            let got = rx.recv_timeout(std::time::Duration::from_secs(20));
            drop(held);
            let (version, head, status, since, id) = got.expect("reading the state waited for the write");
            assert_eq!((version, head, status, since), (1, 1, Some(1), 1));
            assert_ne!(id, [0; 16]);
        });
        // A write publishes what it leaves.
        store.add_change(2, &["SELECT 2".to_string(), crate::version::bump_statement(2)]).unwrap();
        assert_eq!((store.version(), store.status().unwrap().changes), (2, 2));
    }

    #[test]
    fn the_in_memory_repair_takes_shared_locks_that_a_writer_refuses_and_respects() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::create(&path).unwrap());
        let overlay_db = || {
            let backend = overlay::Overlay::new(std::fs::File::open(&path).unwrap()).unwrap();
            redb::Database::builder().create_with_backend(backend)
        };
        // A live writer (redb's locks are per open file, so one in this
        // process counts) refuses the open.
        let writer = Store::open(&path).unwrap();
        assert!(matches!(overlay_db(), Err(redb::DatabaseError::DatabaseAlreadyOpen)));
        drop(writer);
        // Open, it keeps a writer out.
        let before = std::fs::read(&path).unwrap();
        let db = overlay_db().unwrap();
        assert!(matches!(Store::open(&path), Err(Error::StoreLocked { .. })));
        drop(db);
        assert_eq!(std::fs::read(&path).unwrap(), before, "the in-memory open wrote the file");
        assert!(Store::open(&path).is_ok());
    }
}
