//! The head of a store: what the writer keeps in memory between writes, and
//! its derivation from the tables.
//!
//! Owns [`State`] and [`load_state`], the one place that reads the head, the
//! tip of the hash chain, the last record's parts, the snapshot, the rewind
//! marker and the number of change records out of a read view. Writes compute
//! the state they leave from the state before them (see [`super::write`]); a
//! reopen must derive the same state, which the tests below check. It must
//! not write.
//!
//! Decision: the head and the record before it are derived from the log's
//! keys, never stored twice, so a plain write touches the tail table only.

use super::log;
use super::tables::{CHANGES, KEY_FORMAT, KEY_META, KEY_MODEL, META, SEALED, SNAPSHOTS, TABLE_NAMES};
use super::SnapshotInfo;
use crate::error::{Error, Result};
use crate::record::{genesis_hash, Hash, Meta, SnapshotHeader, StoredChange, FORMAT_VERSION};
use crate::version::{data_version, Seq};
use redb::{ReadableTable, TableHandle};
use std::path::Path;

/// The last change record: where it is and what it chains from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Last {
    pub seq: Seq,
    /// The hash this record chains from.
    pub from: Hash,
    pub parts: usize,
}

/// The head of the store, derived from its tables.
#[derive(Clone, Debug)]
pub(super) struct State {
    pub meta: Meta,
    /// The change model the store records.
    pub model: crate::Model,
    pub head: Seq,
    /// The snapshots, oldest first. The oldest is the log's floor: change
    /// records are kept from it to the head.
    pub snapshots: Vec<(Seq, SnapshotHeader)>,
    pub last: Option<Last>,
    /// The hash the next new record chains from.
    pub tip: Hash,
    /// Change records from the floor to the head.
    pub changes: u64,
    /// The time of the newest record's last part (or of the newest
    /// snapshot's version): a new record's time is never below it.
    pub last_time_ms: u64,
    /// Stored bytes of the change records after the newest snapshot. Counted
    /// when the store is opened and kept by the writes; a reader's view
    /// leaves it 0 (counting it reads every record).
    pub bytes_since_snapshot: u64,
    /// Writes installed since the store was opened: a write planned outside
    /// the state lock is installed only if no other write came in between.
    /// Not part of what the tables say, so never compared.
    pub generation: u64,
}

impl State {
    /// A placeholder until the first load.
    pub fn empty() -> State {
        let meta = Meta { store_id: [0; 16], created_ms: 0, rewound_at: None, last_compaction: None };
        State {
            meta,
            model: crate::Model::Lightningd,
            head: 0,
            snapshots: Vec::new(),
            last: None,
            tip: [0; 32],
            changes: 0,
            last_time_ms: 0,
            bytes_since_snapshot: 0,
            generation: 0,
        }
    }

    /// The hash the first record after the floor chains from.
    pub fn origin(&self) -> Hash {
        match self.snapshots.first() {
            Some((_, h)) => h.anchor,
            None => genesis_hash(&self.meta.store_id),
        }
    }

    /// The version the log starts from (the floor): the oldest snapshot's, or 0.
    pub fn base(&self) -> Seq {
        self.snapshots.first().map(|(s, _)| *s).unwrap_or(0)
    }

    /// The newest snapshot.
    pub fn newest(&self) -> Option<&(Seq, SnapshotHeader)> {
        self.snapshots.last()
    }

    /// The newest snapshot's version, or 0: a rewind may not go below it.
    pub fn newest_seq(&self) -> Seq {
        self.newest().map(|(s, _)| *s).unwrap_or(0)
    }

    /// The newest snapshot at or below `seq`: where a restore to `seq` starts.
    pub fn snapshot_for(&self, seq: Seq) -> Option<&(Seq, SnapshotHeader)> {
        self.snapshots.iter().rev().find(|(s, _)| *s <= seq)
    }

    /// Changes after the newest snapshot.
    pub fn changes_since_snapshot(&self) -> u64 {
        self.head - self.newest_seq()
    }

    pub fn rewind_refusal(&self) -> Option<&'static str> {
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
        if last.seq <= self.newest_seq() {
            // A newer snapshot holds this version: lightningd had committed it.
            return Some("the last change is part of a snapshot");
        }
        if last.parts > 1 {
            return Some("the last version holds repeated-version reports, so lightningd had committed it");
        }
        None
    }

    /// The newest snapshot, as status reports it.
    pub fn snapshot_info(&self) -> Option<SnapshotInfo> {
        self.newest().map(info)
    }

    /// Every snapshot, oldest first, as status reports them.
    pub fn snapshot_infos(&self) -> Vec<SnapshotInfo> {
        self.snapshots.iter().map(info).collect()
    }

    pub fn restorable(&self) -> (Seq, Seq) {
        (self.base(), self.head)
    }
}

/// A snapshot as status reports it.
pub(super) fn info((seq, h): &(Seq, SnapshotHeader)) -> SnapshotInfo {
    SnapshotInfo {
        seq: *seq,
        version: data_version(*seq),
        size: h.size,
        stored_bytes: h.stored_bytes,
        created_ms: h.created_ms,
        version_time_ms: h.version_time_ms,
        foreign_keys: h.foreign_keys,
    }
}

/// Derive the head from a read view. `at_open`: first tell a redb file with
/// none of a store's tables (not a store) from a store that cannot be read
/// (damaged).
pub(super) fn load_state(path: &Path, txn: &redb::ReadTransaction, at_open: bool) -> Result<State> {
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
    let model = match meta_t.get(KEY_MODEL).map_err(|e| err(e.into()))? {
        None => crate::Model::Lightningd,
        Some(v) => crate::Model::from_bytes(v.value()).ok_or_else(|| {
            Error::corrupt(path, format!("its change model {:?} is not one this build knows", v.value()))
        })?,
    };

    let snaps = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
    let mut snapshots = Vec::new();
    for entry in snaps.iter().map_err(|e| err(e.into()))? {
        let (k, v) = entry.map_err(|e| err(e.into()))?;
        snapshots.push((k.value(), SnapshotHeader::from_bytes(v.value()).map_err(|e| Error::corrupt(path, e))?));
    }
    let tail = txn.open_table(CHANGES).map_err(|e| err(e.into()))?;
    let recent = log::open_recent(txn).map_err(|e| e.at(path))?;
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
            match log::record_at(&tail, recent.as_ref(), &sealed, seq - 1).map_err(|e| e.at(path))? {
                Some(bytes) => Some(decode(seq - 1, &bytes)?),
                None => None,
            }
        }
        _ => None,
    };
    // Records are consecutive, so their count follows from the first and last.
    let first = log::first_seq(&tail, recent.as_ref(), &sealed).map_err(|e| e.at(path))?;
    let changes = match (first, &last) {
        (Some(first), Some((last, _))) if *last >= first => last - first + 1,
        _ => 0,
    };
    let mut st = State { snapshots, changes, ..State::empty() };
    st.meta = meta;
    st.model = model;
    let origin = st.origin();
    st.head = st.newest_seq();
    st.tip = origin;
    st.last_time_ms = st.newest().map(|(_, h)| h.version_time_ms).unwrap_or(0);
    if let Some((seq, rec)) = last {
        let from = before.map(|(_, r)| r.hash).unwrap_or(origin);
        st.head = st.head.max(seq);
        st.tip = rec.hash;
        st.last_time_ms = st.last_time_ms.max(rec.parts.iter().map(|p| p.time_ms).max().unwrap_or(0));
        st.last = Some(Last { seq, from, parts: rec.parts.len() });
    }
    if at_open {
        st.bytes_since_snapshot = bytes_since_snapshot(path, txn, &st)?;
    }
    Ok(st)
}

/// The stored bytes of the records after `st`'s newest snapshot, read from
/// `txn` (every one of them is read).
pub(super) fn bytes_since_snapshot(path: &Path, txn: &redb::ReadTransaction, st: &State) -> Result<u64> {
    let from = if st.newest().is_some() { st.newest_seq() + 1 } else { 0 };
    record_bytes(path, txn, from, st.head)
}

/// The stored bytes of the records from `from` through `upto`, read from
/// `txn` (every one of them is read; none when `from > upto`).
pub(super) fn record_bytes(path: &Path, txn: &redb::ReadTransaction, from: Seq, upto: Seq) -> Result<u64> {
    if from > upto {
        return Ok(0);
    }
    let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    let recent = log::open_recent(txn).map_err(|e| e.at(path))?;
    let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
    let mut records = log::Records::new(&tail, recent.as_ref(), &sealed, from, upto).map_err(|e| e.at(path))?;
    let mut total = 0;
    while let Some((_, bytes)) = records.next_record().map_err(|e| e.at(path))? {
        total += bytes.len() as u64;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::store::Store;
    use crate::version::bump_statement;

    /// The state as the tables say, beside the state the writes kept.
    fn derived_and_kept(store: &Store) -> (State, State) {
        let txn = store.begin_read().unwrap();
        let derived = load_state(&store.path, &txn, true).unwrap();
        (derived, store.lock().clone())
    }

    /// Every field the tables determine (all but `generation`), as one value.
    fn fields(st: &State) -> impl PartialEq + std::fmt::Debug {
        (st.meta.clone(), st.head, st.snapshots.clone(), st.last.clone(), st.tip, st.changes, st.last_time_ms)
    }

    /// The state derived from the tables, now and after a reopen, equals the
    /// one the writes kept in memory.
    fn check(store: Store) -> (Store, State) {
        let (derived, kept) = derived_and_kept(&store);
        assert_eq!(fields(&derived), fields(&kept));
        let path = store.path.clone();
        drop(store);
        let store = Store::open(&path).unwrap();
        let (reopened, _) = derived_and_kept(&store);
        assert_eq!(fields(&reopened), fields(&kept));
        (store, kept)
    }

    fn change(v: u32) -> Vec<String> {
        vec![format!("INSERT INTO t VALUES ({v}, x'{}')", "ab".repeat(40)), bump_statement(v)]
    }

    fn new_store(dir: &tempfile::TempDir) -> Store {
        Store::create(dir.path().join("s.redb")).unwrap()
    }

    #[test]
    fn an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let (_, st) = check(new_store(&dir));
        assert_eq!((st.head, st.changes, st.last.clone()), (0, 0, None));
        assert_eq!(st.tip, genesis_hash(&st.meta.store_id));
    }

    #[test]
    fn after_changes_and_a_repeated_version_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        for v in 1..=5 {
            store.add_change(v, &change(v)).unwrap();
        }
        let (store, st) = check(store);
        assert_eq!((st.head, st.changes), (5, 5));
        let last = st.last.clone().unwrap();
        assert_eq!((last.seq, last.parts), (5, 1));
        let before_tip = st.tip;
        store.add_change(5, &["PRAGMA foreign_keys = OFF;"]).unwrap();
        let (_, st) = check(store);
        let last = st.last.clone().unwrap();
        assert_eq!((last.seq, last.parts, st.changes), (5, 2, 5));
        assert_ne!(st.tip, before_tip, "the head's record changed, so its hash did");
    }

    #[test]
    fn after_sealing() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        let n = 700;
        let mut bulk = store.bulk_load().unwrap();
        for v in 1..n {
            bulk.add_change(v, &change(v)).unwrap();
        }
        bulk.finish().unwrap();
        store.add_change(n, &change(n)).unwrap();
        {
            let txn = store.begin_read().unwrap();
            let sealed = txn.open_table(SEALED).unwrap();
            assert!(sealed.first().unwrap().is_some(), "nothing was sealed");
        }
        let (_, st) = check(store);
        assert_eq!((st.head, st.changes), (u64::from(n), u64::from(n)));
        assert_eq!(st.last.as_ref().map(|l| l.seq), Some(u64::from(n)));
    }

    #[test]
    fn after_a_bulk_load_a_rewind_and_a_report_at_the_new_head() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        let n = 600;
        let mut bulk = store.bulk_load().unwrap();
        for v in 1..=n {
            bulk.add_change(v, &change(v)).unwrap();
        }
        bulk.finish().unwrap();
        let (store, st) = check(store);
        assert_eq!((st.head, st.changes), (u64::from(n), u64::from(n)));
        assert_eq!(store.rewind().unwrap(), u64::from(n - 1));
        let (store, st) = check(store);
        assert_eq!((st.head, st.changes), (u64::from(n - 1), u64::from(n - 1)));
        // The new head's record takes a repeated-version report where it is.
        store.add_change(n - 1, &["PRAGMA foreign_keys = OFF;"]).unwrap();
        let (store, st) = check(store);
        assert_eq!(st.last.as_ref().map(|l| (l.seq, l.parts)), Some((u64::from(n - 1), 2)));
        let reader = store.reader().unwrap();
        let changes: Vec<_> = reader.changes(reader.head()).unwrap().map(|c| c.unwrap()).collect();
        assert_eq!(changes.len() as u32, n - 1);
        assert_eq!(changes.last().map(|c| c.transactions.len()), Some(2));
    }

    #[test]
    fn after_a_rewind() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        for v in 1..=3 {
            store.add_change(v, &change(v)).unwrap();
        }
        let (store, at_two_tip) = {
            let txn = store.begin_read().unwrap();
            let tail = txn.open_table(CHANGES).unwrap();
            let rec = StoredChange::from_bytes(tail.get(2).unwrap().unwrap().value()).unwrap();
            drop(tail);
            drop(txn);
            (store, rec.hash)
        };
        assert_eq!(store.rewind().unwrap(), 2);
        let (store, st) = check(store);
        assert_eq!((st.head, st.changes, st.meta.rewound_at), (2, 2, Some(2)));
        assert_eq!(st.tip, at_two_tip);
        assert!(st.rewind_refusal().is_some(), "a second rewind in a row is allowed");
        // A new change after the rewind.
        store.add_change(3, &change(3)).unwrap();
        let (_, st) = check(store);
        assert_eq!((st.head, st.changes, st.meta.rewound_at), (3, 3, Some(2)));
        assert!(st.rewind_refusal().is_none());
    }

    #[test]
    fn after_a_snapshot_and_changes_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = new_store(&dir);
        for v in 1..=4 {
            store.add_change(v, &change(v)).unwrap();
        }
        // A database at version 4 (its rows do not matter here).
        let db = dir.path().join("image.sqlite3");
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER); \
             INSERT INTO vars VALUES ('data_version', 4);",
        )
        .unwrap();
        drop(conn);
        let image = std::fs::read(&db).unwrap();
        store.add_snapshot(4, &mut image.as_slice()).unwrap();
        let (store, st) = check(store);
        let (seq, header) = st.newest().cloned().unwrap();
        assert_eq!((seq, st.head, st.changes, st.last.clone()), (4, 4, 0, None));
        assert_eq!(st.tip, header.anchor);
        assert!(st.rewind_refusal().is_some());
        store.add_change(5, &change(5)).unwrap();
        store.add_change(6, &change(6)).unwrap();
        let (_, st) = check(store);
        assert_eq!((st.head, st.changes), (6, 2));
        assert_eq!(st.last.as_ref().map(|l| (l.seq, l.parts)), Some((6, 1)));
    }
}
