//! The store: one redb file per node holding the change log, the base
//! snapshot and the metadata.
//!
//! Owns the tables, their invariants and every write to them; each public
//! write is one redb write transaction, durable (fsync'd) before it returns.
//! It must not know about lightningd's protocol, and it does not replay SQL:
//! restore and compaction read it through a [`Reader`].
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
mod snapshot;

use crate::error::{Error, Result};
use crate::record::{
    codec, genesis_hash, now_ms, snapshot_anchor, Change, CompactionRecord, Hash, Meta, SnapshotHeader, StoredChange,
    StoredPart, FORMAT_VERSION,
};
use crate::version::{self, data_version, Seq};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

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

/// An open store. Safe to share between threads: writes are serialised.
pub struct Store {
    path: PathBuf,
    db: redb::Database,
    state: Mutex<State>,
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

/// Run `f`, turning a panic into [`Error::Corrupt`] naming `path`.
///
/// redb meets some damaged pages with a panic (`unreachable!`) rather than an
/// error. A damaged store must be a clear error, never a crash: every call
/// that reads the file goes through here.
pub(crate) fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
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
        let db = redb::Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(redb::backends::FileBackend::new(file).map_err(|e| Error::redb(&path, e))?)
            .map_err(|e| Error::redb(&path, e))?;
        let meta = Meta { store_id: random_id(), created_ms: now_ms(), rewound_at: None, last_compaction: None };
        let txn = db.begin_write().map_err(|e| Error::redb(&path, e))?;
        {
            let mut t = txn.open_table(META).map_err(|e| Error::redb(&path, e))?;
            t.insert(KEY_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice()).map_err(|e| Error::redb(&path, e))?;
            t.insert(KEY_META, meta.to_bytes().as_slice()).map_err(|e| Error::redb(&path, e))?;
            txn.open_table(CHANGES).map_err(|e| Error::redb(&path, e))?;
            txn.open_table(SEALED).map_err(|e| Error::redb(&path, e))?;
            txn.open_table(SNAPSHOTS).map_err(|e| Error::redb(&path, e))?;
            txn.open_table(CHUNKS).map_err(|e| Error::redb(&path, e))?;
        }
        txn.commit().map_err(|e| Error::redb(&path, e))?;
        crate::atomic_file::sync_parent(&path)?;
        Store::from_db(path, db)
    }

    /// Open an existing store.
    pub fn open(path: impl AsRef<Path>) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let mut magic = [0u8; 9];
        let mut f = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        if f.metadata().map_err(|e| Error::io(&path, e))?.is_dir() {
            return Err(Error::NotAStore { path, reason: "it is a directory".into() });
        }
        if f.read_exact(&mut magic).is_err() || magic != REDB_MAGIC {
            return Err(Error::NotAStore { path, reason: "not a redb database".into() });
        }
        drop(f);
        guarded(&path.clone(), move || {
            let db =
                redb::Database::builder().set_cache_size(CACHE_BYTES).open(&path).map_err(|e| Error::redb(&path, e))?;
            Store::from_db(path, db)
        })
    }

    fn from_db(path: PathBuf, db: redb::Database) -> Result<Store> {
        let txn = db.begin_read().map_err(|e| Error::redb(&path, e))?;
        let state = load_state(&path, &txn)?;
        drop(txn);
        Ok(Store { path, db, state: Mutex::new(state) })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
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
        if statements.is_empty() {
            return Err(Error::EmptyChange { version });
        }
        let mut st = self.lock();
        let head = st.head;
        let next = version::next(head);
        if version == data_version(next) {
            let expected_from = version.wrapping_sub(1);
            if version::transaction_bump(statements) != Some(expected_from) {
                let last = statements.last().map(|s| s.as_ref()).unwrap_or_default();
                return Err(Error::MissingBump { version, expected_from, last: last.chars().take(160).collect() });
            }
            let part = StoredPart { time_ms: now_ms(), statements: codec::encode(statements) };
            let rec = StoredChange::new(&st.tip, next, vec![part]);
            self.put_change(next, &rec)?;
            st.last = Some(Last { seq: next, from: st.tip, parts: 1 });
            st.tip = rec.hash;
            st.head = next;
            st.changes += 1;
            Ok(Added::New(next))
        } else if version == data_version(head) {
            if version::transaction_bump(statements).is_some() {
                return Err(Error::RepeatWithBump { version });
            }
            let part = StoredPart { time_ms: now_ms(), statements: codec::encode(statements) };
            let (rec, from, new_record) = match &st.last {
                Some(last) if last.seq == head => {
                    let mut stored = self.read_change(head)?;
                    stored.parts.push(part);
                    (StoredChange::new(&last.from, head, stored.parts), last.from, false)
                }
                _ => (StoredChange::new(&st.tip, head, vec![part]), st.tip, true),
            };
            self.put_change(head, &rec)?;
            st.last = Some(Last { seq: head, from, parts: rec.parts.len() });
            st.tip = rec.hash;
            if new_record {
                st.changes += 1;
            }
            Ok(Added::Repeated(head))
        } else {
            Err(Error::Gap { head: data_version(head), expected: data_version(next), got: version })
        }
    }

    fn read_change(&self, seq: Seq) -> Result<StoredChange> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let bytes = record_in(&self.path, &txn, seq)?.ok_or_else(|| {
            Error::corrupt(&self.path, format!("change record for version {} is missing", data_version(seq)))
        })?;
        StoredChange::from_bytes(&bytes).map_err(|e| Error::corrupt(&self.path, e))
    }

    fn put_change(&self, seq: Seq, rec: &StoredChange) -> Result<()> {
        let bytes = rec.to_bytes();
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            t.insert(seq, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        log::seal_if_due(&txn).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))
    }

    /// Remove the last change: lightningd reported it but did not commit it.
    ///
    /// Refused when it is not safe: twice in a row, when the last version holds
    /// repeated-version reports, or when nothing follows the snapshot.
    pub fn rewind(&self) -> Result<Seq> {
        guarded(&self.path, || self.rewind_inner())
    }

    fn rewind_inner(&self) -> Result<Seq> {
        let mut st = self.lock();
        if let Some(reason) = st.rewind_refusal() {
            return Err(Error::Rewind { reason });
        }
        let head = st.head;
        let mut meta = st.meta.clone();
        meta.rewound_at = Some(head - 1);
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        let prev = {
            let mut t = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            t.remove(head).map_err(|e| self.err(e))?;
            let sealed = txn.open_table(SEALED).map_err(|e| self.err(e))?;
            let base = st.base();
            let prev = if head > base {
                log::record_at(&t, &sealed, head - 1).map_err(|e| lookup_error(&self.path, e))?
            } else {
                None
            };
            match prev {
                Some(bytes) => {
                    let rec = StoredChange::from_bytes(&bytes).map_err(|e| Error::corrupt(&self.path, e))?;
                    Some((head - 1, rec))
                }
                None => None,
            }
        };
        self.put_meta(&txn, &meta)?;
        txn.commit().map_err(|e| self.err(e))?;
        st.meta = meta;
        st.head = head - 1;
        st.changes -= 1;
        match prev {
            Some((seq, rec)) => {
                // The record before the last: what it chains from is only needed
                // if it is itself appended to, which the next add recomputes from
                // the store on demand.
                let from = self.chain_origin_of(seq)?;
                st.tip = rec.hash;
                st.last = Some(Last { seq, from, parts: rec.parts.len() });
            }
            None => {
                st.tip = st.origin();
                st.last = None;
            }
        }
        Ok(st.head)
    }

    /// The hash the record at `seq` chains from.
    fn chain_origin_of(&self, seq: Seq) -> Result<Hash> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        let st = load_state(&self.path, &txn)?;
        let before = if seq > st.base() { record_in(&self.path, &txn, seq - 1)? } else { None };
        match before {
            Some(bytes) => Ok(StoredChange::from_bytes(&bytes).map_err(|e| Error::corrupt(&self.path, e))?.hash),
            None => Ok(st.origin()),
        }
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
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
        snapshot::publish(&self.path, &txn, seq, image, true, |content| snapshot_anchor(&tip, seq, content))?;
        txn.commit().map_err(|e| self.err(e))?;
        *st = self.reload()?;
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
        // The image goes in first, in short transactions that do not hold the
        // state lock, so db_write answers go on meanwhile; only the switch-over
        // below is exclusive.
        let staged = snapshot::stage(&self.path, &self.db, seq, image)?;
        let mut st = self.lock();
        let changes_before = st.changes;
        let txn = self.db.begin_write().map_err(|e| self.err(e))?;
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
        snapshot::install(&self.path, &txn, seq, &staged, foreign_keys, |_| expect)?;
        // Records are consecutive from the snapshot to the head.
        let changes_after = st.head - seq;
        let record = CompactionRecord {
            time_ms: now_ms(),
            snapshot_seq: seq,
            changes_before,
            changes_after,
            duration_ms: started.elapsed().as_millis() as u64,
        };
        let mut meta = st.meta.clone();
        meta.last_compaction = Some(record.clone());
        self.put_meta(&txn, &meta)?;
        txn.commit().map_err(|e| self.err(e))?;
        *st = self.reload()?;
        Ok(record)
    }

    fn put_meta(&self, txn: &redb::WriteTransaction, meta: &Meta) -> Result<()> {
        let mut t = txn.open_table(META).map_err(|e| self.err(e))?;
        t.insert(KEY_META, meta.to_bytes().as_slice()).map_err(|e| self.err(e))?;
        Ok(())
    }

    fn reload(&self) -> Result<State> {
        let txn = self.db.begin_read().map_err(|e| self.err(e))?;
        load_state(&self.path, &txn)
    }

    /// A consistent view of the store for reading (restore, export, verify,
    /// compaction). Writers go on while it is held.
    pub fn reader(&self) -> Result<Reader<'_>> {
        guarded(&self.path, || {
            let txn = self.db.begin_read().map_err(|e| self.err(e))?;
            let state = load_state(&self.path, &txn)?;
            Ok(Reader { store: self, txn, state })
        })
    }

    /// Give space freed by pruning back to the file system. Needs exclusive use.
    pub fn shrink_file(&mut self) -> Result<bool> {
        self.db.compact().map_err(|e| Error::redb(&self.path, redb::Error::from(e)))
    }
}

fn lookup_error(path: &Path, e: log::LookupError) -> Error {
    match e {
        log::LookupError::Storage(e) => Error::redb(path, e),
        log::LookupError::Corrupt(what) => Error::corrupt(path, what),
    }
}

/// The bytes of the record at `seq` in a read view.
fn record_in(path: &Path, txn: &redb::ReadTransaction, seq: Seq) -> Result<Option<Vec<u8>>> {
    let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
    log::record_at(&tail, &sealed, seq).map_err(|e| lookup_error(path, e))
}

fn load_state(path: &Path, txn: &redb::ReadTransaction) -> Result<State> {
    let err = |e: redb::Error| match e {
        redb::Error::TableDoesNotExist(t) => {
            Error::NotAStore { path: path.to_path_buf(), reason: format!("it has no {t} table") }
        }
        other => Error::redb(path, other),
    };
    let meta_t = txn.open_table(META).map_err(|e| err(e.into()))?;
    let format = meta_t
        .get(KEY_FORMAT)
        .map_err(|e| err(e.into()))?
        .ok_or_else(|| Error::NotAStore { path: path.to_path_buf(), reason: "no format version".into() })?;
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
    txn: redb::ReadTransaction,
    state: State,
}

impl Reader<'_> {
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
            Some((seq, header)) => snapshot::copy(&self.store.path, &self.txn, *seq, header, out),
            None => Ok(0),
        })
    }

    /// The change records after the snapshot up to and including `upto`, in
    /// order, each checked against the hash chain before it is decoded.
    pub fn changes(&self, upto: Seq) -> Result<Changes> {
        guarded(&self.store.path, || self.changes_inner(upto))
    }

    fn changes_inner(&self, upto: Seq) -> Result<Changes> {
        let tail = self.txn.open_table(CHANGES).map_err(|e| self.store.err(e))?;
        let sealed = self.txn.open_table(SEALED).map_err(|e| self.store.err(e))?;
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
        })
    }

    /// Bytes of each stored change record, for size accounting.
    pub fn stored_change_bytes(&self) -> Result<u64> {
        guarded(&self.store.path, || self.stored_change_bytes_inner())
    }

    fn stored_change_bytes_inner(&self) -> Result<u64> {
        let mut total = 0u64;
        for table in [CHANGES, SEALED] {
            let t = self.txn.open_table(table).map_err(|e| self.store.err(e))?;
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
        let item = guarded(&path, || match self.next_raw()? {
            Some((seq, bytes)) => self.step(seq, &bytes).map(Some),
            None => Ok(None),
        });
        item.transpose()
    }
}
