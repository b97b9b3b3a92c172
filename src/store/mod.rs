//! The store: one redb file per node holding the change log, the base
//! snapshot and the metadata.
//!
//! Owns the tables, their invariants and every write to them; each public
//! write is one redb write transaction, durable (fsync'd) before it returns
//! (a [`BulkLoad`] for imports: when it finishes). It also owns the two ways
//! of opening a file: for writing, with redb's exclusive lock, or read-only
//! ([`Store::open_read_only`]), which never changes a byte of the file, and
//! the one panic boundary around redb ([`guarded`]). It must not know about
//! lightningd's protocol, and it does not replay SQL: restore and compaction
//! read it through a [`Reader`].
//!
//! Invariants (see ARCHITECTURE.md):
//! - change records are keyed by store version; versions are consecutive
//!   from the snapshot (or from 0 when there is none) up to the head;
//! - at most one base snapshot; publishing one prunes every change record
//!   at or below its version, in the same transaction;
//! - each change record chains from the one before it (or from the snapshot's
//!   anchor, or the store's genesis hash);
//! - head and prev_version are derived from the log's keys, never stored
//!   twice, so adding a change touches one table.

mod log;
mod overlay;
mod snapshot;

use crate::error::{Error, Result};
use crate::record::{
    codec, genesis_hash, now_ms, snapshot_anchor, Change, CompactionRecord, Hash, Meta, SnapshotHeader, StoredChange,
    StoredPart, FORMAT_VERSION,
};
use crate::version::{self, data_version, Seq};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use serde::Serialize;
use std::cell::Cell;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, Once};

pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
pub(crate) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
/// Older change records, packed into segments keyed by their last version (see [`log`]).
pub(crate) const SEALED: TableDefinition<u64, &[u8]> = TableDefinition::new("sealed_changes");
pub(crate) const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
pub(crate) const CHUNKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("snapshot_chunks");

const KEY_FORMAT: &str = "format";
const KEY_META: &str = "meta";

/// redb's page cache, bounded so the plugin stays small.
const CACHE_BYTES: usize = 4 << 20;

const REDB_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// A store's base snapshot, as status reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub seq: Seq,
    pub version: u32,
    /// Bytes of the SQLite image.
    pub size: u64,
    /// Bytes stored, compressed.
    pub stored_bytes: u64,
    pub created_ms: u64,
    pub foreign_keys: bool,
}

/// What a store holds, for `info`, `backup-status` and embedding callers.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    pub path: PathBuf,
    pub format: u32,
    /// lightningd's `data_version` at the head.
    pub version: u32,
    /// The head as a store version (differs from `version` after a u32 wrap).
    pub seq: Seq,
    /// The version before the last change, when there is a last change.
    pub prev_version: Option<u32>,
    /// Whether [`Store::rewind`] would be accepted now.
    pub rewind_allowed: bool,
    /// Change records held.
    pub changes: u64,
    pub snapshot: Option<SnapshotInfo>,
    /// Lowest and highest store version a restore can produce.
    pub restorable: (Seq, Seq),
    pub file_bytes: u64,
    pub created_ms: u64,
    pub last_compaction: Option<CompactionRecord>,
}

/// What `add_change` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// A new version was appended.
    New(Seq),
    /// A repeated-version report was appended to the head's record.
    Repeated(Seq),
}

#[derive(Clone, Debug)]
struct Last {
    seq: Seq,
    /// The hash this record chains from.
    from: Hash,
    parts: usize,
}

/// The head of the store, derived from its tables.
#[derive(Clone, Debug)]
struct State {
    meta: Meta,
    head: Seq,
    snapshot: Option<(Seq, SnapshotHeader)>,
    last: Option<Last>,
    /// The hash the next new record chains from.
    tip: Hash,
    changes: u64,
}

impl State {
    /// A placeholder until the first load.
    fn empty() -> State {
        let meta = Meta { store_id: [0; 16], created_ms: 0, rewound_at: None, last_compaction: None };
        State { meta, head: 0, snapshot: None, last: None, tip: [0; 32], changes: 0 }
    }

    fn origin(&self) -> Hash {
        match &self.snapshot {
            Some((_, h)) => h.anchor,
            None => genesis_hash(&self.meta.store_id),
        }
    }

    /// The version the log starts from: the snapshot's, or 0.
    fn base(&self) -> Seq {
        self.snapshot.as_ref().map(|(s, _)| *s).unwrap_or(0)
    }

    fn rewind_refusal(&self) -> Option<&'static str> {
        let Some(last) = &self.last else {
            return Some("there is no change after the snapshot to remove");
        };
        if self.meta.rewound_at == Some(self.head) {
            return Some("the last change was already rewound; only one rewind in a row is allowed");
        }
        if last.seq <= self.base() {
            // The record at the snapshot's version (or at 0 in a store without
            // one) can only hold lone PRAGMA reports: lightningd had committed them.
            return Some("the last record only holds repeated-version reports");
        }
        if last.parts > 1 {
            return Some("the last version holds repeated-version reports, so lightningd had committed it");
        }
        None
    }

    fn snapshot_info(&self) -> Option<SnapshotInfo> {
        self.snapshot.as_ref().map(|(seq, h)| SnapshotInfo {
            seq: *seq,
            version: data_version(*seq),
            size: h.size,
            stored_bytes: h.stored_bytes,
            created_ms: h.created_ms,
            foreign_keys: h.foreign_keys,
        })
    }

    fn restorable(&self) -> (Seq, Seq) {
        (self.snapshot.as_ref().map(|(s, _)| *s).unwrap_or(0), self.head)
    }
}

/// The redb handle behind a store, and whether it may be written.
enum Db {
    /// [`Store::create`] or [`Store::open`]: redb's exclusive lock, writable.
    Write(redb::Database),
    /// [`Store::open_read_only`] of a cleanly closed file: a shared lock, the
    /// file opened read-only.
    Read(redb::ReadOnlyDatabase),
    /// [`Store::open_read_only`] of a file whose writer died without closing
    /// it: redb's repair ran over an [`overlay::Overlay`], in memory.
    Recovered(redb::Database),
    /// Only while the store is dropped.
    Closed,
}

/// An open store. Safe to share between threads: writes are serialised.
pub struct Store {
    path: PathBuf,
    db: Db,
    state: Mutex<State>,
}

impl Drop for Store {
    fn drop(&mut self) {
        // redb flushes and unlocks on drop; a store that met a damaged page may
        // fail there too, and that must stay as quiet as the failure itself.
        let db = std::mem::replace(&mut self.db, Db::Closed);
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

thread_local! {
    /// How many [`guarded`] calls this thread is inside.
    static GUARD_DEPTH: Cell<u32> = const { Cell::new(0) };
}

static QUIET_HOOK: Once = Once::new();

/// Install, once per process, a panic hook that stays silent for panics
/// [`guarded`] is about to catch and hands every other panic to the hook that
/// was installed before it.
///
/// The library installs it because only the library knows which panics it
/// turns into errors: without it, Rust's default hook prints "thread 'main'
/// panicked at ..." (and a backtrace under `RUST_BACKTRACE`) for a damaged
/// page before the caller ever sees the `Corrupt` error, and a front end or an
/// embedding wallet cannot tell that message from a real crash. Panics outside
/// [`guarded`], in any thread, are reported exactly as before.
fn install_quiet_hook() {
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if GUARD_DEPTH.with(Cell::get) == 0 {
                previous(info);
            }
        }));
    });
}

/// Leaves the guarded region when dropped, unwinding included.
struct Depth;

impl Depth {
    fn enter() -> Depth {
        GUARD_DEPTH.with(|d| d.set(d.get().saturating_add(1)));
        Depth
    }
}

impl Drop for Depth {
    fn drop(&mut self) {
        GUARD_DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// Run `f`, turning a panic into [`Error::Corrupt`] naming `path`, silently.
///
/// redb meets some damaged pages with a panic (`unreachable!`) rather than an
/// error. A damaged store must be one clear error, never a crash or a panic
/// message: every call that touches redb goes through here, and this is the
/// only place the library catches panics.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    install_quiet_hook();
    let depth = Depth::enter();
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    drop(depth);
    match caught {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("unknown failure");
            Err(Error::corrupt(path, format!("the storage engine failed on a damaged page ({what})")))
        }
    }
}

/// Builds the state a change leaves, from the state before it.
struct Planned {
    seq: Seq,
    bytes: Vec<u8>,
    added: Added,
    next: State,
}

/// The checks and the record of one `add_change`, shared by [`Store::add_change`]
/// and [`BulkLoad::add_change`]. `existing` reads the record at a version
/// (for a repeated-version report appended to the head's record).
fn plan_change<S: AsRef<str>>(
    path: &Path,
    st: &State,
    version: u32,
    statements: &[S],
    time_ms: u64,
    existing: impl FnOnce(Seq) -> Result<StoredChange>,
) -> Result<Planned> {
    if statements.is_empty() {
        return Err(Error::EmptyChange { version });
    }
    let head = st.head;
    let next = version::next(head);
    let encode =
        |statements: &[S]| codec::encode(statements).map_err(|what| Error::Encode { path: path.to_path_buf(), what });
    let mut after = st.clone();
    if version == data_version(next) {
        let expected_from = version.wrapping_sub(1);
        if version::transaction_bump(statements) != Some(expected_from) {
            let last = statements.last().map(|s| s.as_ref()).unwrap_or_default();
            return Err(Error::MissingBump { version, expected_from, last: last.chars().take(160).collect() });
        }
        let part = StoredPart { time_ms, statements: encode(statements)? };
        let rec = StoredChange::new(&st.tip, next, vec![part]);
        let bytes = rec.to_bytes().map_err(|what| Error::Encode { path: path.to_path_buf(), what })?;
        after.last = Some(Last { seq: next, from: st.tip, parts: 1 });
        after.tip = rec.hash;
        after.head = next;
        after.changes += 1;
        Ok(Planned { seq: next, bytes, added: Added::New(next), next: after })
    } else if version == data_version(head) {
        if version::transaction_bump(statements).is_some() {
            return Err(Error::RepeatWithBump { version });
        }
        let part = StoredPart { time_ms, statements: encode(statements)? };
        let (rec, from, new_record) = match &st.last {
            Some(last) if last.seq == head => {
                let mut stored = existing(head)?;
                stored.parts.push(part);
                (StoredChange::new(&last.from, head, stored.parts), last.from, false)
            }
            _ => (StoredChange::new(&st.tip, head, vec![part]), st.tip, true),
        };
        let bytes = rec.to_bytes().map_err(|what| Error::Encode { path: path.to_path_buf(), what })?;
        after.last = Some(Last { seq: head, from, parts: rec.parts.len() });
        after.tip = rec.hash;
        if new_record {
            after.changes += 1;
        }
        Ok(Planned { seq: head, bytes, added: Added::Repeated(head), next: after })
    } else {
        Err(Error::Gap { head: data_version(head), expected: data_version(next), got: version })
    }
}

/// Within `txn`: store a change record and seal the tail if it is due.
fn write_change(path: &Path, txn: &redb::WriteTransaction, seq: Seq, bytes: &[u8]) -> Result<()> {
    {
        let mut t = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
        t.insert(seq, bytes).map_err(|e| Error::redb(path, e))?;
    }
    log::seal_if_due(txn).map_err(|e| lookup_error(path, e))
}

/// Check that `path` is a file that starts like a redb database.
fn check_magic(path: &Path) -> Result<()> {
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
        return Err(Error::NotAStore { path: path.to_path_buf(), reason: "it is not a redb database".into() });
    }
    Ok(())
}

/// An error opening a file that has redb's magic: a lock held elsewhere or an
/// I/O failure stay what they are; anything else means the file is damaged.
fn open_error(path: &Path, e: redb::DatabaseError) -> Error {
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
    /// Create a new, empty store at `path` (mode 0600). Refuses an existing path.
    pub fn create(path: impl AsRef<Path>) -> Result<Store> {
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
            let db = redb::Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create_with_backend(redb::backends::FileBackend::new(file).map_err(|e| Error::redb(&path, e))?)
                .map_err(|e| Error::redb(&path, e))?;
            let txn = db.begin_write().map_err(|e| Error::redb(&path, e))?;
            {
                let mut t = txn.open_table(META).map_err(|e| Error::redb(&path, e))?;
                t.insert(KEY_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice()).map_err(|e| Error::redb(&path, e))?;
                t.insert(KEY_META, meta_bytes.as_slice()).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(CHANGES).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(SEALED).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(SNAPSHOTS).map_err(|e| Error::redb(&path, e))?;
                txn.open_table(CHUNKS).map_err(|e| Error::redb(&path, e))?;
            }
            txn.commit().map_err(|e| Error::redb(&path, e))?;
            crate::atomic_file::sync_parent(&path)?;
            Store::from_db(path, Db::Write(db))
        })
    }

    /// Open an existing store for reading and writing, with an exclusive lock.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_write(path.as_ref(), false)
    }

    /// [`Store::open`], after checking every page of the file against redb's
    /// checksums (it reads the whole file). For a command about to rewrite
    /// much of a store (compaction): redb trusts the pages it frees, and a
    /// damaged one met while committing can abort the process, where a
    /// damaged page met while reading is an error.
    pub fn open_checked(path: impl AsRef<Path>) -> Result<Store> {
        Store::open_write(path.as_ref(), true)
    }

    fn open_write(path: &Path, check: bool) -> Result<Store> {
        let path = path.to_path_buf();
        check_magic(&path)?;
        guarded(&path.clone(), move || {
            let db = redb::Database::builder()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(check)
                .open(&path)
                .map_err(|e| open_error(&path, e))?;
            Store::from_db(path, Db::Write(db))
        })
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
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        check_magic(&path)?;
        guarded(&path.clone(), move || {
            let mut builder = redb::Database::builder();
            builder.set_cache_size(CACHE_BYTES);
            match builder.open_read_only(&path) {
                Ok(db) => Store::from_db(path, Db::Read(db)),
                Err(redb::DatabaseError::RepairAborted) => {
                    let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                    let overlay = overlay::Overlay::new(file).map_err(|e| Error::io(&path, e))?;
                    let db = builder.create_with_backend(overlay).map_err(|e| open_error(&path, e))?;
                    Store::from_db(path, Db::Recovered(db))
                }
                Err(e) => Err(open_error(&path, e)),
            }
        })
    }

    fn from_db(path: PathBuf, db: Db) -> Result<Store> {
        guarded(&path.clone(), move || {
            let store = Store { path, db, state: Mutex::new(State::empty()) };
            let txn = store.begin_read()?;
            let state = load_state(&store.path, &txn, true)?;
            drop(txn);
            *store.lock() = state;
            Ok(store)
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the store was opened with [`Store::open_read_only`].
    pub fn is_read_only(&self) -> bool {
        !matches!(self.db, Db::Write(_))
    }

    fn begin_read(&self) -> Result<redb::ReadTransaction> {
        let txn = match &self.db {
            Db::Write(db) | Db::Recovered(db) => db.begin_read(),
            Db::Read(db) => db.begin_read(),
            Db::Closed => return Err(Error::redb(&self.path, redb::Error::DatabaseClosed)),
        };
        txn.map_err(|e| self.err(e))
    }

    /// The database, for a write; refused on a read-only store.
    fn writer(&self) -> Result<&redb::Database> {
        match &self.db {
            Db::Write(db) => Ok(db),
            _ => Err(Error::ReadOnly { path: self.path.clone() }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated: it is
        // replaced whole after each commit.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }

    /// Status of the store.
    pub fn status(&self) -> Result<Status> {
        guarded(&self.path, || self.status_inner())
    }

    fn status_inner(&self) -> Result<Status> {
        let st = self.lock().clone();
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).map_err(|e| Error::io(&self.path, e))?;
        let rewind_allowed = st.rewind_refusal().is_none();
        Ok(Status {
            path: self.path.clone(),
            format: FORMAT_VERSION,
            version: data_version(st.head),
            seq: st.head,
            prev_version: st
                .last
                .as_ref()
                .filter(|l| l.seq == st.head && l.seq > st.base())
                .map(|l| data_version(l.seq - 1)),
            rewind_allowed,
            changes: st.changes,
            snapshot: st.snapshot_info(),
            restorable: st.restorable(),
            file_bytes,
            created_ms: st.meta.created_ms,
            last_compaction: st.meta.last_compaction.clone(),
        })
    }

    /// The head's `data_version`.
    pub fn version(&self) -> u32 {
        data_version(self.lock().head)
    }

    /// The head as a store version.
    pub fn head(&self) -> Seq {
        self.lock().head
    }

    /// Store one transaction lightningd reported with `data_version == version`.
    ///
    /// Follows the change-log rules: `version` must be the head's next version
    /// (mod 2^32) and end with the bump to it, or equal the head's version for
    /// a repeated-version report (appended to that version's record, in order).
    /// Anything else is refused. Durable when it returns `Ok`.
    pub fn add_change<S: AsRef<str>>(&self, version: u32, statements: &[S]) -> Result<Added> {
        guarded(&self.path, || self.add_change_inner(version, statements))
    }

    fn add_change_inner<S: AsRef<str>>(&self, version: u32, statements: &[S]) -> Result<Added> {
        let db = self.writer()?;
        let mut st = self.lock();
        let planned = plan_change(&self.path, &st, version, statements, now_ms(), |seq| self.read_change(seq))?;
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        write_change(&self.path, &txn, planned.seq, &planned.bytes)?;
        txn.commit().map_err(|e| self.err(e))?;
        *st = planned.next;
        Ok(planned.added)
    }

    /// A loader for many changes at once, for building a store that is not
    /// yet in use (an import): the same checks as [`Store::add_change`], but
    /// committed in large batches without syncing, and synced once by
    /// [`BulkLoad::finish`]. Until `finish` returns `Ok`, what it added is not
    /// durable: a crash can lose any of it (never a part of a change, and
    /// never a change without the ones before it).
    ///
    /// While a `BulkLoad` is alive it holds the store's write transaction:
    /// other writes to the store wait for it, so it must not be interleaved
    /// with them on one thread.
    pub fn bulk_load(&self) -> Result<BulkLoad<'_>> {
        self.writer()?;
        let state = self.lock().clone();
        Ok(BulkLoad { store: self, txn: None, state, in_batch: 0, commits: 0 })
    }

    fn read_change(&self, seq: Seq) -> Result<StoredChange> {
        let txn = self.begin_read()?;
        let bytes = record_in(&self.path, &txn, seq)?.ok_or_else(|| {
            Error::corrupt(&self.path, format!("change record for version {} is missing", data_version(seq)))
        })?;
        StoredChange::from_bytes(&bytes).map_err(|e| Error::corrupt(&self.path, e))
    }

    /// Remove the last change: lightningd reported it but did not commit it.
    ///
    /// Refused when it is not safe: twice in a row, when the last version holds
    /// repeated-version reports, or when nothing follows the snapshot.
    pub fn rewind(&self) -> Result<Seq> {
        guarded(&self.path, || self.rewind_inner())
    }

    fn rewind_inner(&self) -> Result<Seq> {
        let db = self.writer()?;
        let mut st = self.lock();
        if let Some(reason) = st.rewind_refusal() {
            return Err(Error::Rewind { reason });
        }
        let head = st.head;
        let base = st.base();
        let mut next = st.clone();
        next.meta.rewound_at = Some(head - 1);
        next.head = head - 1;
        next.changes -= 1;
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            t.remove(head).map_err(|e| self.err(e))?;
            let sealed = txn.open_table(SEALED).map_err(|e| self.err(e))?;
            let record = |seq: Seq| -> Result<Option<StoredChange>> {
                match log::record_at(&t, &sealed, seq).map_err(|e| lookup_error(&self.path, e))? {
                    Some(bytes) => {
                        Ok(Some(StoredChange::from_bytes(&bytes).map_err(|e| Error::corrupt(&self.path, e))?))
                    }
                    None => Ok(None),
                }
            };
            // The new last record, and the hash it chains from (the record
            // before it, or the origin), exactly as a reopen derives them.
            let prev = if head > base { record(head - 1)? } else { None };
            match prev {
                Some(rec) => {
                    let seq = head - 1;
                    let from = match if seq > base { record(seq - 1)? } else { None } {
                        Some(before) => before.hash,
                        None => st.origin(),
                    };
                    next.tip = rec.hash;
                    next.last = Some(Last { seq, from, parts: rec.parts.len() });
                }
                None => {
                    next.tip = st.origin();
                    next.last = None;
                }
            }
        }
        self.put_meta(&txn, &next.meta)?;
        txn.commit().map_err(|e| self.err(e))?;
        *st = next;
        Ok(st.head)
    }

    /// Store a whole SQLite image as the base snapshot at `version`, streaming
    /// it from `image` in compressed chunks.
    ///
    /// Accepted on an empty store (it then starts at `version`) or at the
    /// head's version (it then replaces the log: the last change can no longer
    /// be rewound). Replay after it starts with foreign keys on, as lightningd
    /// opens its database.
    pub fn add_snapshot(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        guarded(&self.path, || self.add_snapshot_inner(version, image))
    }

    fn add_snapshot_inner(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        let db = self.writer()?;
        let mut st = self.lock();
        let empty = st.head == 0 && st.snapshot.is_none() && st.changes == 0;
        let seq = if empty {
            Seq::from(version)
        } else if version == data_version(st.head) {
            st.head
        } else {
            return Err(Error::SnapshotVersion {
                version,
                reason: format!(
                    "the store is at version {}; a snapshot must be taken at the head or into an empty store",
                    data_version(st.head)
                ),
            });
        };
        let tip = st.tip;
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        let header =
            snapshot::publish(&self.path, &txn, seq, image, true, |content| snapshot_anchor(&tip, seq, content))?;
        // The snapshot replaces every record at or below the head: none is left.
        let mut next = st.clone();
        next.tip = header.anchor;
        next.snapshot = Some((seq, header));
        next.head = seq;
        next.last = None;
        next.changes = 0;
        txn.commit().map_err(|e| self.err(e))?;
        *st = next;
        st.snapshot_info().ok_or_else(|| Error::corrupt(&self.path, "snapshot vanished after commit"))
    }

    /// Publish a compaction: the image of the database at `seq` (replayed by the
    /// caller from this store) replaces the snapshot and every change up to
    /// `seq`. Refused if the record at `seq` no longer has hash `expect`.
    pub(crate) fn publish_compaction(
        &self,
        seq: Seq,
        expect: Hash,
        foreign_keys: bool,
        image: &mut dyn Read,
        started: std::time::Instant,
    ) -> Result<CompactionRecord> {
        guarded(&self.path, || self.publish_compaction_inner(seq, expect, foreign_keys, image, started))
    }

    fn publish_compaction_inner(
        &self,
        seq: Seq,
        expect: Hash,
        foreign_keys: bool,
        image: &mut dyn Read,
        started: std::time::Instant,
    ) -> Result<CompactionRecord> {
        let db = self.writer()?;
        // The image goes in first, in short transactions that do not hold the
        // state lock, so db_write answers go on meanwhile; only the switch-over
        // below is exclusive.
        let staged = snapshot::stage(&self.path, db, seq, image)?;
        let mut st = self.lock();
        let changes_before = st.changes;
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        {
            let t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            let sealed = txn.open_table(SEALED).map_err(|e| self.err(e))?;
            let current = match log::record_at(&t, &sealed, seq).map_err(|e| lookup_error(&self.path, e))? {
                Some(v) => Some(StoredChange::from_bytes(&v).map_err(|e| Error::corrupt(&self.path, e))?.hash),
                None => None,
            };
            if current != Some(expect) || st.head <= seq {
                return Err(Error::CompactionRaced { version: data_version(seq) });
            }
        }
        let header = snapshot::install(&self.path, &txn, seq, &staged, foreign_keys, |_| expect)?;
        // Records are consecutive from the snapshot to the head.
        let changes_after = st.head - seq;
        let record = CompactionRecord {
            time_ms: now_ms(),
            snapshot_seq: seq,
            changes_before,
            changes_after,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        // The head, the last record and what it chains from stay: the record
        // after `seq` chained from `expect`, which is the new snapshot's anchor.
        let mut next = st.clone();
        next.meta.last_compaction = Some(record.clone());
        next.snapshot = Some((seq, header));
        next.changes = changes_after;
        self.put_meta(&txn, &next.meta)?;
        txn.commit().map_err(|e| self.err(e))?;
        *st = next;
        Ok(record)
    }

    fn put_meta(&self, txn: &redb::WriteTransaction, meta: &Meta) -> Result<()> {
        let bytes = meta.to_bytes().map_err(|what| Error::Encode { path: self.path.clone(), what })?;
        let mut t = txn.open_table(META).map_err(|e| self.err(e))?;
        t.insert(KEY_META, bytes.as_slice()).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A consistent view of the store for reading (restore, export, verify,
    /// compaction). Writers go on while it is held.
    pub fn reader(&self) -> Result<Reader<'_>> {
        guarded(&self.path, || {
            let txn = self.begin_read()?;
            let state = load_state(&self.path, &txn, false)?;
            Ok(Reader { store: self, txn: Some(txn), state })
        })
    }

    /// Give space freed by pruning back to the file system. Needs exclusive use.
    pub fn shrink_file(&mut self) -> Result<bool> {
        let path = self.path.clone();
        guarded(&path, || match &mut self.db {
            Db::Write(db) => db.compact().map_err(|e| Error::redb(&path, redb::Error::from(e))),
            _ => Err(Error::ReadOnly { path: path.clone() }),
        })
    }
}

/// Changes added in bulk: see [`Store::bulk_load`].
pub struct BulkLoad<'s> {
    store: &'s Store,
    /// The open batch, committed every [`BULK_BATCH`] changes.
    txn: Option<redb::WriteTransaction>,
    /// The state with every change added so far, committed or not.
    state: State,
    in_batch: usize,
    commits: u64,
}

/// Changes per bulk-load commit.
const BULK_BATCH: usize = 4096;

impl std::fmt::Debug for BulkLoad<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BulkLoad").field("path", &self.store.path).field("commits", &self.commits).finish()
    }
}

impl BulkLoad<'_> {
    /// Add one change, with exactly the checks of [`Store::add_change`]. Not
    /// durable until [`BulkLoad::finish`].
    pub fn add_change<S: AsRef<str>>(&mut self, version: u32, statements: &[S]) -> Result<Added> {
        let path = self.store.path.clone();
        guarded(&path, || self.add_change_inner(version, statements, now_ms()))
    }

    /// [`BulkLoad::add_change`] for a change whose source recorded no time
    /// (a `.dbak` import): it is stored with
    /// [`TIME_NOT_RECORDED`](crate::record::TIME_NOT_RECORDED), not the
    /// time of the load, which would pass for when lightningd made it.
    pub fn add_change_without_time<S: AsRef<str>>(&mut self, version: u32, statements: &[S]) -> Result<Added> {
        let path = self.store.path.clone();
        guarded(&path, || self.add_change_inner(version, statements, crate::record::TIME_NOT_RECORDED))
    }

    fn add_change_inner<S: AsRef<str>>(&mut self, version: u32, statements: &[S], time_ms: u64) -> Result<Added> {
        let path = &self.store.path;
        let txn = match self.txn {
            Some(ref txn) => txn,
            None => {
                let mut txn = self.store.writer()?.begin_write().map_err(|e| Error::redb(path, e))?;
                txn.set_durability(Durability::None).map_err(|e| Error::redb(path, redb::Error::from(e)))?;
                &*self.txn.insert(txn)
            }
        };
        let planned = plan_change(path, &self.state, version, statements, time_ms, |seq| {
            let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
            let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
            let bytes = log::record_at(&tail, &sealed, seq).map_err(|e| lookup_error(path, e))?.ok_or_else(|| {
                Error::corrupt(path, format!("change record for version {} is missing", data_version(seq)))
            })?;
            StoredChange::from_bytes(&bytes).map_err(|e| Error::corrupt(path, e))
        })?;
        write_change(path, txn, planned.seq, &planned.bytes)?;
        self.state = planned.next;
        self.in_batch += 1;
        if self.in_batch >= BULK_BATCH {
            self.commit_batch()?;
        }
        Ok(planned.added)
    }

    fn commit_batch(&mut self) -> Result<()> {
        if let Some(txn) = self.txn.take() {
            txn.commit().map_err(|e| Error::redb(&self.store.path, e))?;
            self.commits += 1;
            *self.store.lock() = self.state.clone();
        }
        self.in_batch = 0;
        Ok(())
    }

    /// Commit what is left and make everything added durable (one sync).
    pub fn finish(mut self) -> Result<()> {
        let path = self.store.path.clone();
        guarded(&path, || {
            self.commit_batch()?;
            // An empty commit with immediate durability persists the
            // non-durable ones before it.
            let txn = self.store.writer()?.begin_write().map_err(|e| Error::redb(&path, e))?;
            txn.commit().map_err(|e| Error::redb(&path, e))?;
            self.commits += 1;
            Ok(())
        })
    }

    /// Commits made so far (each batch, and the final durable one): the test
    /// suite checks that a bulk load does not commit once per change.
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

fn lookup_error(path: &Path, e: log::LookupError) -> Error {
    match e {
        log::LookupError::Storage(e) => Error::redb(path, e),
        log::LookupError::Corrupt(what) => Error::corrupt(path, what),
        log::LookupError::Encode(what) => Error::Encode { path: path.to_path_buf(), what },
    }
}

/// The bytes of the record at `seq` in a read view.
fn record_in(path: &Path, txn: &redb::ReadTransaction, seq: Seq) -> Result<Option<Vec<u8>>> {
    let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
    log::record_at(&tail, &sealed, seq).map_err(|e| lookup_error(path, e))
}

/// The names of a store's tables.
const TABLE_NAMES: [&str; 5] = ["meta", "changes", "sealed_changes", "snapshots", "snapshot_chunks"];

/// Derive the head from a read view. `at_open`: first tell a redb file with
/// none of a store's tables (not a store) from a store that cannot be read
/// (damaged).
fn load_state(path: &Path, txn: &redb::ReadTransaction, at_open: bool) -> Result<State> {
    if at_open {
        let mut ours = 0;
        for table in txn.list_tables().map_err(|e| Error::damaged(path, e))? {
            if TABLE_NAMES.contains(&table.name()) {
                ours += 1;
            }
        }
        if ours == 0 {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: "a redb database without a cln-backup store's tables".into(),
            });
        }
    }
    let err = |e: redb::Error| match e {
        redb::Error::TableDoesNotExist(t) => Error::corrupt(path, format!("its {t} table is missing")),
        other => Error::damaged(path, other),
    };
    let meta_t = txn.open_table(META).map_err(|e| err(e.into()))?;
    let format = meta_t
        .get(KEY_FORMAT)
        .map_err(|e| err(e.into()))?
        .ok_or_else(|| Error::corrupt(path, "its format version is missing"))?;
    let format = <[u8; 4]>::try_from(format.value())
        .map(u32::from_le_bytes)
        .map_err(|_| Error::corrupt(path, "format version is not 4 bytes"))?;
    if format > FORMAT_VERSION {
        return Err(Error::FormatTooNew { path: path.to_path_buf(), found: format, supported: FORMAT_VERSION });
    }
    let meta = meta_t
        .get(KEY_META)
        .map_err(|e| err(e.into()))?
        .ok_or_else(|| Error::corrupt(path, "metadata record is missing"))?;
    let meta = Meta::from_bytes(meta.value()).map_err(|e| Error::corrupt(path, e))?;

    let snaps = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
    let snapshot = match snaps.last().map_err(|e| err(e.into()))? {
        Some((k, v)) => Some((k.value(), SnapshotHeader::from_bytes(v.value()).map_err(|e| Error::corrupt(path, e))?)),
        None => None,
    };
    let tail = txn.open_table(CHANGES).map_err(|e| err(e.into()))?;
    let sealed = txn.open_table(SEALED).map_err(|e| err(e.into()))?;
    let decode = |seq: Seq, bytes: &[u8]| {
        let rec = StoredChange::from_bytes(bytes).map_err(|e| Error::corrupt(path, e))?;
        Ok::<_, Error>((seq, rec))
    };
    // The head's record is always in the tail (see `log`).
    let last = match tail.last().map_err(|e| err(e.into()))? {
        Some((k, v)) => Some(decode(k.value(), v.value())?),
        None => None,
    };
    let before = match &last {
        Some((seq, _)) if *seq > 0 => {
            match log::record_at(&tail, &sealed, seq - 1).map_err(|e| lookup_error(path, e))? {
                Some(bytes) => Some(decode(seq - 1, &bytes)?),
                None => None,
            }
        }
        _ => None,
    };
    // Records are consecutive, so their count follows from the first and last.
    let first = log::first_seq(&tail, &sealed).map_err(|e| lookup_error(path, e))?;
    let changes = match (first, &last) {
        (Some(first), Some((last, _))) if *last >= first => last - first + 1,
        _ => 0,
    };
    let mut st = State { meta, head: 0, snapshot, last: None, tip: [0; 32], changes };
    let origin = st.origin();
    st.head = st.snapshot.as_ref().map(|(s, _)| *s).unwrap_or(0);
    st.tip = origin;
    if let Some((seq, rec)) = last {
        let from = before.map(|(_, r)| r.hash).unwrap_or(origin);
        st.head = st.head.max(seq);
        st.tip = rec.hash;
        st.last = Some(Last { seq, from, parts: rec.parts.len() });
    }
    Ok(st)
}

/// A consistent, read-only view of a store.
pub struct Reader<'s> {
    store: &'s Store,
    /// Always `Some` until dropped (see `Drop`).
    txn: Option<redb::ReadTransaction>,
    state: State,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let txn = self.txn.take();
        let _ = guarded(&self.store.path, move || {
            drop(txn);
            Ok(())
        });
    }
}

impl Reader<'_> {
    fn txn(&self) -> Result<&redb::ReadTransaction> {
        self.txn.as_ref().ok_or_else(|| Error::redb(&self.store.path, redb::Error::DatabaseClosed))
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.store.path
    }

    /// The head as of this view.
    pub fn head(&self) -> Seq {
        self.state.head
    }

    /// The base snapshot, if any.
    pub fn snapshot(&self) -> Option<SnapshotInfo> {
        self.state.snapshot_info()
    }

    /// Lowest and highest store version a restore can produce from this view.
    pub fn restorable(&self) -> (Seq, Seq) {
        self.state.restorable()
    }

    /// Number of change records.
    pub fn change_count(&self) -> u64 {
        self.state.changes
    }

    /// Write the snapshot's SQLite image to `out`, checking its content hash.
    /// Returns the bytes written (0 when there is no snapshot).
    pub fn copy_snapshot(&self, out: &mut dyn Write) -> Result<u64> {
        guarded(&self.store.path, || match &self.state.snapshot {
            Some((seq, header)) => snapshot::copy(&self.store.path, self.txn()?, *seq, header, out),
            None => Ok(0),
        })
    }

    /// The change records after the snapshot up to and including `upto`, in
    /// order, each checked against the hash chain before it is decoded.
    pub fn changes(&self, upto: Seq) -> Result<Changes> {
        guarded(&self.store.path, || self.changes_inner(upto))
    }

    fn changes_inner(&self, upto: Seq) -> Result<Changes> {
        let tail = self.txn()?.open_table(CHANGES).map_err(|e| self.store.err(e))?;
        let sealed = self.txn()?.open_table(SEALED).map_err(|e| self.store.err(e))?;
        let start = self.state.base();
        Ok(Changes {
            path: self.store.path.clone(),
            sealed: sealed.range(start..).map_err(|e| self.store.err(e))?,
            segment: std::collections::VecDeque::new(),
            tail: tail.range(start..=upto).map_err(|e| self.store.err(e))?,
            upto,
            prev_hash: self.state.origin(),
            prev_seq: None,
            start,
            ended: false,
        })
    }

    /// Bytes of each stored change record, for size accounting.
    pub fn stored_change_bytes(&self) -> Result<u64> {
        guarded(&self.store.path, || self.stored_change_bytes_inner())
    }

    fn stored_change_bytes_inner(&self) -> Result<u64> {
        let mut total = 0u64;
        for table in [CHANGES, SEALED] {
            let t = self.txn()?.open_table(table).map_err(|e| self.store.err(e))?;
            for entry in t.range::<u64>(..).map_err(|e| self.store.err(e))? {
                let (_, v) = entry.map_err(|e| self.store.err(e))?;
                total += v.value().len() as u64;
            }
        }
        Ok(total)
    }
}

/// Iterator over checked, decoded change records: sealed segments first,
/// then the tail.
pub struct Changes {
    path: PathBuf,
    sealed: redb::Range<'static, u64, &'static [u8]>,
    /// Records of the current segment not yet yielded.
    segment: std::collections::VecDeque<(Seq, Vec<u8>)>,
    tail: redb::Range<'static, u64, &'static [u8]>,
    upto: Seq,
    prev_hash: Hash,
    prev_seq: Option<Seq>,
    start: Seq,
    /// Set once the iteration has ended, by running out or by an error.
    ended: bool,
}

impl Changes {
    /// Chain hash of the last record yielded (the origin if none was).
    pub fn last_hash(&self) -> Hash {
        self.prev_hash
    }

    /// The next stored record in order, as (version, bytes).
    fn next_raw(&mut self) -> Result<Option<(Seq, Vec<u8>)>> {
        loop {
            if let Some((seq, bytes)) = self.segment.pop_front() {
                if seq < self.start {
                    continue;
                }
                if seq > self.upto {
                    self.segment.clear();
                    return Ok(None);
                }
                return Ok(Some((seq, bytes)));
            }
            match self.sealed.next() {
                Some(entry) => {
                    let (_, v) = entry.map_err(|e| Error::redb(&self.path, e))?;
                    let segment = log::Segment::from_bytes(v.value()).map_err(|e| Error::corrupt(&self.path, e))?;
                    let first = segment.first;
                    self.segment =
                        segment.records.into_iter().enumerate().map(|(i, r)| (first + i as u64, r)).collect();
                }
                None => break,
            }
        }
        match self.tail.next() {
            Some(entry) => {
                let (k, v) = entry.map_err(|e| Error::redb(&self.path, e))?;
                Ok(Some((k.value(), v.value().to_vec())))
            }
            None => Ok(None),
        }
    }

    fn step(&mut self, seq: Seq, bytes: &[u8]) -> Result<Change> {
        let expected_seq = match self.prev_seq {
            Some(p) => p + 1,
            None => seq.max(self.start),
        };
        let first_ok = self.prev_seq.is_some() || seq == self.start || seq == self.start + 1;
        if seq != expected_seq || !first_ok {
            return Err(Error::corrupt(
                &self.path,
                format!("change record for version {} is missing", data_version(expected_seq.min(seq))),
            ));
        }
        let rec = StoredChange::from_bytes(bytes)
            .map_err(|e| Error::corrupt(&self.path, format!("version {}: {e}", data_version(seq))))?;
        if !rec.check(&self.prev_hash, seq) {
            return Err(Error::corrupt(
                &self.path,
                format!(
                    "change record for version {} fails its hash chain (a record is missing, reordered or altered)",
                    data_version(seq)
                ),
            ));
        }
        self.prev_hash = rec.hash;
        self.prev_seq = Some(seq);
        rec.decode(seq).map_err(|e| Error::corrupt(&self.path, format!("version {}: {e}", data_version(seq))))
    }
}

impl Iterator for Changes {
    type Item = Result<Change>;
    fn next(&mut self) -> Option<Self::Item> {
        let path = self.path.clone();
        if self.ended {
            return None;
        }
        let item = guarded(&path, || match self.next_raw()? {
            Some((seq, bytes)) => self.step(seq, &bytes).map(Some),
            None => {
                self.ended = true;
                // Every version after the snapshot up to `upto` has a record:
                // a log that stops short lost records at its end (a damaged
                // page can hide them from the iteration).
                let reached = self.prev_seq.unwrap_or(self.start);
                if reached < self.upto {
                    return Err(Error::corrupt(
                        &self.path,
                        format!(
                            "the change records after version {} are missing (the log reaches version {})",
                            data_version(reached),
                            data_version(self.upto)
                        ),
                    ));
                }
                Ok(None)
            }
        });
        if item.is_err() {
            self.ended = true;
        }
        item.transpose()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const CHILD: &str = "CLN_BACKUP_GUARDED_CHILD";

    /// Run in a child process by `guarded_is_silent_and_other_panics_are_not`,
    /// where nothing captures stderr.
    #[test]
    fn guarded_child() {
        if std::env::var_os(CHILD).is_none() {
            return;
        }
        let err =
            guarded(Path::new("/x/store.redb"), || -> Result<()> { panic!("inside-guarded-marker") }).unwrap_err();
        assert!(matches!(err, Error::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("/x/store.redb: the store is damaged"), "{err}");
        // Nested, and after a caught panic, still silent.
        let nested =
            guarded(Path::new("/x/a"), || guarded(Path::new("/x/b"), || -> Result<()> { panic!("nested-marker") }));
        assert!(nested.is_err());
        // A panic outside the boundary goes to the hook that was there before.
        let outside = std::panic::catch_unwind(|| panic!("outside-guarded-marker"));
        assert!(outside.is_err());
        eprintln!("child-done");
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

    #[test]
    fn guarded_is_silent_and_other_panics_are_not() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::tests::guarded_child", "--nocapture", "--test-threads=1"])
            .env(CHILD, "1")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(err.contains("child-done"), "the child did not run: {err}");
        assert!(!err.contains("inside-guarded-marker"), "guarded let a panic message through: {err}");
        assert!(!err.contains("nested-marker"), "guarded let a panic message through: {err}");
        assert!(err.contains("outside-guarded-marker"), "a panic outside guarded was silenced: {err}");
    }
}
