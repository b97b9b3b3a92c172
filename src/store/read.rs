//! The read view of a store: [`Reader`] and the checked iteration over its
//! change records, [`Changes`].
//!
//! Owns the chain check: every record is checked against the hash before it
//! and its own version before it is decoded, and a log that stops short of
//! the version asked for is an error, so a missing, reordered or altered
//! record is corruption, never a restore. Where records live is
//! [`super::log`]'s business. It must not write.

use super::log::{self, Records};
use super::state::{load_state, State};
use super::tables::{CHANGES, RECENT, SEALED};
use super::{guarded, snapshot, SnapshotInfo, Store};
use crate::error::{Error, Result};
use crate::record::{Change, Hash, StoredChange};
use crate::version::{data_version, Seq};
use std::io::Write;
use std::path::{Path, PathBuf};

impl Store {
    /// A consistent view of the store for reading (restore, export, verify,
    /// compaction). Writers go on while it is held.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let reader = store.reader()?;
    /// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// // The view stays where it was; it owns what it reads and can move to another thread.
    /// let seen = std::thread::spawn(move || reader.changes(reader.head()).map(|c| c.count())).join().unwrap()?;
    /// assert_eq!(seen, 1);
    /// # Ok(()) }
    /// ```
    pub fn reader(&self) -> Result<Reader> {
        guarded(&self.path, || {
            let txn = self.begin_read()?;
            let state = load_state(&self.path, &txn, false)?;
            Ok(Reader { path: self.path.clone(), txn: Some(txn), state })
        })
    }
}

impl Store {
    /// Stream the image of the snapshot at `seq` (its `header`) into `out`,
    /// as [`Reader::copy_snapshot_for`] does, but through a new read view
    /// every few chunks: a compaction copies a large image into its replay
    /// file at a paced rate, and a view of the live store held that long
    /// would make the writer keep every page it frees meanwhile, then free
    /// them all in the one commit after the view ends. A snapshot's chunks
    /// never change while it is kept, and the content hash is checked over
    /// the whole image.
    pub(crate) fn copy_snapshot_in_steps(
        &self,
        seq: Seq,
        header: &crate::record::SnapshotHeader,
        out: &mut dyn Write,
    ) -> Result<u64> {
        guarded(&self.path, || {
            let db = self.writer()?;
            snapshot::copy(&self.path, snapshot::Views::Fresh(&db), seq, header, out)
        })
    }
}

/// A consistent, read-only view of a store. It owns what it reads (redb's
/// read transaction keeps the file's pages it sees), so it may outlive the
/// borrow of the [`Store`] it came from and move to another thread; writes
/// to the store go on while it is held.
///
/// ```
/// use cln_backup::rusqlite::Connection;
/// use cln_backup::{replay, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # store.add_change(2, &["INSERT INTO t VALUES (2)"])?;
/// let reader = store.reader()?;
/// store.add_change(3, &["INSERT INTO t VALUES (3)"])?;
/// // The view is still at version 2: replayed, it is the database as it was then.
/// let db = dir.path().join("at-2.sqlite3");
/// std::fs::File::create(&db)?;
/// replay::replay_store(&reader, reader.head(), &db, None)?;
/// let rows: i64 = Connection::open(&db)?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
/// assert_eq!((rows, store.version()), (1, 3));
/// # Ok(()) }
/// ```
pub struct Reader {
    path: PathBuf,
    /// Always `Some` until dropped (see `Drop`).
    txn: Option<redb::ReadTransaction>,
    state: State,
}

impl Drop for Reader {
    fn drop(&mut self) {
        let txn = self.txn.take();
        let _ = guarded(&self.path, move || {
            drop(txn);
            Ok(())
        });
    }
}

impl Reader {
    fn txn(&self) -> Result<&redb::ReadTransaction> {
        self.txn.as_ref().ok_or_else(|| Error::redb(&self.path, redb::Error::DatabaseClosed))
    }

    /// The change model of the store read (see [`crate::Model`]).
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: false })?;
    /// assert_eq!(store.reader()?.model(), Model::Application { foreign_keys: false });
    /// # Ok(()) }
    /// ```
    pub fn model(&self) -> crate::Model {
        self.state.model
    }

    /// The store's file.
    ///
    /// ```
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create(dir.path().join("node.redb"))?;
    /// assert_eq!(store.reader()?.path(), dir.path().join("node.redb"));
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The head as of this view.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let reader = store.reader()?;
    /// store.add_change(2, &["INSERT INTO t VALUES (2)"])?;
    /// assert_eq!((reader.head(), store.head()), (1, 2));
    /// assert_eq!(store.reader()?.head(), 2);
    /// # Ok(()) }
    /// ```
    pub fn head(&self) -> Seq {
        self.state.head
    }

    /// The newest snapshot, if any: where a restore to the head starts.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// assert_eq!(store.reader()?.snapshot(), None);
    /// compact::compact(&store, &Default::default())?;
    /// let snapshot = store.reader()?.snapshot().expect("a compaction leaves a snapshot");
    /// assert_eq!(snapshot.version, 3);
    /// # Ok(()) }
    /// ```
    pub fn snapshot(&self) -> Option<SnapshotInfo> {
        self.state.snapshot_info()
    }

    /// Every snapshot the store keeps, oldest first.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// compact::compact(&store, &Default::default())?;
    /// store.add_change(5, &["INSERT INTO t VALUES (5)"])?;
    /// store.add_change(6, &["INSERT INTO t VALUES (6)"])?;
    /// compact::compact(&store, &Default::default())?;
    /// let kept: Vec<u32> = store.reader()?.snapshots().iter().map(|s| s.version).collect();
    /// assert_eq!(kept, [3, 5]);
    /// # Ok(()) }
    /// ```
    pub fn snapshots(&self) -> Vec<SnapshotInfo> {
        self.state.snapshot_infos()
    }

    /// The newest snapshot at or below `seq`: where a restore to `seq`
    /// starts (`None`: from an empty database).
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// # compact::compact(&store, &Default::default())?;
    /// # for v in 5..=6 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// # compact::compact(&store, &Default::default())?;
    /// # // Snapshots at 3 and 5, the head at 6.
    /// let reader = store.reader()?;
    /// assert_eq!(reader.snapshot_for(4).map(|s| s.version), Some(3));
    /// assert_eq!(reader.snapshot_for(6).map(|s| s.version), Some(5));
    /// # Ok(()) }
    /// ```
    pub fn snapshot_for(&self, seq: Seq) -> Option<SnapshotInfo> {
        self.state.snapshot_for(seq).map(super::state::info)
    }

    /// Lowest and highest store version a restore can produce from this
    /// view: from the oldest snapshot kept (or 0) to the head.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// assert_eq!(store.reader()?.restorable(), (0, 4));
    /// compact::compact(&store, &Default::default())?;
    /// assert_eq!(store.reader()?.restorable(), (3, 4), "from the snapshot at 3");
    /// # Ok(()) }
    /// ```
    pub fn restorable(&self) -> (Seq, Seq) {
        self.state.restorable()
    }

    /// The store version a restore to `to_version` (a `data_version`, or an
    /// extended store version; the head when `None`) reaches: the highest
    /// version at or below it after the last u32 wrap, refused with
    /// [`Error::NotRestorable`] naming the range when it is outside
    /// [`restorable`](Reader::restorable).
    ///
    /// ```
    /// use cln_backup::{Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let reader = store.reader()?;
    /// assert_eq!(reader.target(None)?, 3);
    /// assert_eq!(reader.target(Some(2))?, 2);
    /// assert!(matches!(reader.target(Some(5)), Err(Error::NotRestorable { asked: 5, .. })));
    /// # Ok(()) }
    /// ```
    pub fn target(&self, to_version: Option<u64>) -> Result<Seq> {
        let (lo, hi) = self.restorable();
        crate::version::target(lo, hi, self.snapshot().is_some(), to_version)
    }

    /// Refuse a store version outside [`restorable`](Reader::restorable),
    /// as [`target`](Reader::target) does: for callers given a store version
    /// already resolved (the exports).
    pub(crate) fn check_restorable(&self, seq: Seq) -> Result<()> {
        let (lo, hi) = self.restorable();
        if seq < lo || seq > hi {
            return Err(self.not_restorable(seq));
        }
        Ok(())
    }

    fn not_restorable(&self, asked: u64) -> Error {
        let (lo, hi) = self.restorable();
        Error::NotRestorable { asked, range: crate::version::range_text(lo, hi, self.snapshot().is_some()) }
    }

    /// Number of change records.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// assert_eq!(store.reader()?.change_count(), 4);
    /// compact::compact(&store, &Default::default())?;
    /// assert_eq!(store.reader()?.change_count(), 1, "1 to 3 are in the snapshot");
    /// # Ok(()) }
    /// ```
    pub fn change_count(&self) -> u64 {
        self.state.changes
    }

    /// Write the newest snapshot's SQLite image to `out`, checking its
    /// content hash. Returns the bytes written (0 when there is no snapshot).
    /// It pairs with [`changes`](Reader::changes) up to the head; for an
    /// older version, see [`copy_snapshot_for`](Reader::copy_snapshot_for).
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let mut image = Vec::new();
    /// assert_eq!(store.reader()?.copy_snapshot(&mut image)?, 0, "no snapshot yet");
    /// compact::compact(&store, &Default::default())?;
    /// let reader = store.reader()?;
    /// let written = reader.copy_snapshot(&mut image)?;
    /// assert_eq!(Some(written), reader.snapshot().map(|s| s.size));
    /// assert!(image.starts_with(b"SQLite format 3\0"));
    /// # Ok(()) }
    /// ```
    pub fn copy_snapshot(&self, out: &mut dyn Write) -> Result<u64> {
        self.copy_snapshot_for(self.state.head, out)
    }

    /// Write the image of [`snapshot_for(upto)`](Reader::snapshot_for) to
    /// `out`, checking its content hash: the start of a restore to `upto`,
    /// which [`changes(upto)`](Reader::changes) continues. Returns the bytes
    /// written (0 when the restore starts from an empty database).
    ///
    /// A restore to version 4 by hand, in a store with snapshots at 3 and 5:
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// # compact::compact(&store, &Default::default())?;
    /// # for v in 5..=6 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// # compact::compact(&store, &Default::default())?;
    /// # // Snapshots at 3 and 5, the head at 6.
    /// let reader = store.reader()?;
    /// let db = dir.path().join("at-4.sqlite3");
    /// reader.copy_snapshot_for(4, &mut std::fs::File::create(&db)?)?;
    /// let rows: i64 = Connection::open(&db)?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
    /// assert_eq!(rows, 2, "the snapshot at 3 holds the rows of versions 2 and 3");
    /// let then: Vec<u64> = reader.changes(4)?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(then, [4]);
    /// # Ok(()) }
    /// ```
    pub fn copy_snapshot_for(&self, upto: Seq, out: &mut dyn Write) -> Result<u64> {
        guarded(&self.path, || match self.state.snapshot_for(upto) {
            Some((seq, header)) => snapshot::copy(&self.path, snapshot::Views::One(self.txn()?), *seq, header, out),
            None => Ok(0),
        })
    }

    /// The version and header of [`snapshot_for(upto)`](Reader::snapshot_for),
    /// for [`Store::copy_snapshot_in_steps`].
    pub(crate) fn snapshot_header_for(&self, upto: Seq) -> Option<(Seq, crate::record::SnapshotHeader)> {
        self.state.snapshot_for(upto).cloned()
    }

    /// The change records after [`snapshot_for(upto)`](Reader::snapshot_for)
    /// up to and including `upto`, in order, each checked against the hash
    /// chain before it is decoded: what a restore to `upto` replays on top
    /// of that snapshot.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let upto_2: Vec<u64> = store.reader()?.changes(2)?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(upto_2, [1, 2]);
    /// compact::compact(&store, &Default::default())?;
    /// // Versions 1 to 3 are in the snapshot at 3: a restore to 4 replays 4 on top of it.
    /// let upto_4: Vec<u64> = store.reader()?.changes(4)?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(upto_4, [4]);
    /// # Ok(()) }
    /// ```
    pub fn changes(&self, upto: Seq) -> Result<Changes> {
        // A version the store cannot restore is the caller's mistake, not
        // damage: refused before any record is read.
        self.check_restorable(upto)?;
        guarded(&self.path, || self.changes_inner(upto))
    }

    /// Every change record kept, from the oldest snapshot (or the start of
    /// the log) to the head, each checked against the hash chain: what
    /// `verify` walks. A newer snapshot's version is passed through, not
    /// started from.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// # compact::compact(&store, &Default::default())?;
    /// # for v in 5..=6 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// # compact::compact(&store, &Default::default())?;
    /// # // Snapshots at 3 and 5, the head at 6.
    /// let reader = store.reader()?;
    /// let kept: Vec<u64> = reader.log()?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(kept, [4, 5, 6], "from the oldest snapshot, at 3");
    /// let to_head: Vec<u64> = reader.changes(reader.head())?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(to_head, [6], "from the newest, at 5");
    /// # Ok(()) }
    /// ```
    pub fn log(&self) -> Result<Changes> {
        guarded(&self.path, || self.changes_from(self.state.snapshots.first(), self.state.head))
    }

    fn changes_inner(&self, upto: Seq) -> Result<Changes> {
        self.changes_from(self.state.snapshot_for(upto), upto)
    }

    /// The records after the snapshot `from` (or from the start of the log)
    /// up to `upto`.
    fn changes_from(&self, from: Option<&(Seq, crate::record::SnapshotHeader)>, upto: Seq) -> Result<Changes> {
        let tail = self.txn()?.open_table(CHANGES).map_err(|e| Error::redb(&self.path, e))?;
        let recent = log::open_recent(self.txn()?).map_err(|e| e.at(&self.path))?;
        let sealed = self.txn()?.open_table(SEALED).map_err(|e| Error::redb(&self.path, e))?;
        let (start, prev_hash) = match from {
            Some((seq, h)) => (*seq, h.anchor),
            None => (0, self.state.origin()),
        };
        Ok(Changes {
            path: self.path.clone(),
            records: Records::new(&tail, recent.as_ref(), &sealed, start, upto).map_err(|e| e.at(&self.path))?,
            upto,
            prev_hash,
            prev_seq: None,
            start,
            // A record at the snapshot's own version whose hash is the anchor
            // is the change the image already holds (kept for replays from
            // an older snapshot): skipped. One that chains from the anchor
            // holds reports made after the snapshot: replayed.
            skip_start: true,
            ended: false,
        })
    }

    /// When the store received the change at `seq` (its record's first
    /// transaction), or the time of a snapshot's version where the record
    /// is not kept; [`TIME_NOT_RECORDED`](crate::TIME_NOT_RECORDED) when the
    /// source recorded none (an import). Refused outside
    /// [`restorable`](Reader::restorable).
    ///
    /// ```
    /// use cln_backup::{now_ms, Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// let before = now_ms();
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let reader = store.reader()?;
    /// let received = reader.time_of(1)?;
    /// assert!(before <= received && received <= now_ms());
    /// assert!(matches!(reader.time_of(2), Err(Error::NotRestorable { .. })));
    /// # Ok(()) }
    /// ```
    pub fn time_of(&self, seq: Seq) -> Result<u64> {
        guarded(&self.path, || {
            self.check_restorable(seq)?;
            match record_in(&self.path, self.txn()?, seq)? {
                Some(bytes) => {
                    let rec = StoredChange::from_bytes(&bytes)
                        .map_err(|e| Error::corrupt(&self.path, format!("version {}: {e}", data_version(seq))))?;
                    // At the floor, a record holds reports made after the
                    // snapshot: the version's time is the snapshot's.
                    match (seq == self.state.base(), self.state.snapshot_for(seq)) {
                        (true, Some((s, h))) if *s == seq => Ok(h.version_time_ms),
                        _ => Ok(rec.parts.first().map(|p| p.time_ms).unwrap_or(crate::record::TIME_NOT_RECORDED)),
                    }
                }
                None => match self.state.snapshot_for(seq) {
                    Some((s, h)) if *s == seq => Ok(h.version_time_ms),
                    // The empty database before the first change of a log
                    // without a snapshot: nothing was received then.
                    None if seq == self.state.base() => Ok(crate::record::TIME_NOT_RECORDED),
                    _ => Err(Error::corrupt(
                        &self.path,
                        format!("change record for version {} is missing", data_version(seq)),
                    )),
                },
            }
        })
    }

    /// The store version a restore to the time `time_ms` (milliseconds since
    /// the Unix epoch) reaches: the newest version the store had received at
    /// that time. Record times never go back (see [`Store::add_change`]), so
    /// this is a binary search. Refused with [`Error::TimeNotRestorable`]
    /// when `time_ms` is before the oldest restorable version's time, or
    /// when that version's time is not known.
    ///
    /// ```
    /// use cln_backup::{now_ms, Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let reader = store.reader()?;
    /// assert_eq!(reader.target_time(now_ms())?, 3);
    /// let first = reader.time_of(1)?;
    /// assert!(reader.target_time(first)? >= 1);
    /// assert!(matches!(reader.target_time(first - 1), Err(Error::TimeNotRestorable { .. })));
    /// # Ok(()) }
    /// ```
    pub fn target_time(&self, time_ms: u64) -> Result<Seq> {
        let (lo, hi) = self.timed_range();
        if hi < lo {
            return Err(self.time_not_restorable(time_ms, crate::record::TIME_NOT_RECORDED));
        }
        let lo_time = self.time_of(lo)?;
        if lo_time == crate::record::TIME_NOT_RECORDED || time_ms < lo_time {
            return Err(self.time_not_restorable(time_ms, lo_time));
        }
        // Invariant: time_of(found) <= time_ms; the answer is in found..=hi.
        let (mut found, mut above) = (lo, hi + 1);
        while above - found > 1 {
            let mid = found + (above - found) / 2;
            if self.time_of(mid)? <= time_ms {
                found = mid;
            } else {
                above = mid;
            }
        }
        Ok(found)
    }

    /// The versions that have a time: [`restorable`](Reader::restorable),
    /// without version 0 of a log that starts from an empty database (it
    /// was never received).
    fn timed_range(&self) -> (Seq, Seq) {
        let (lo, hi) = self.restorable();
        (if lo == 0 && self.state.snapshots.is_empty() { 1 } else { lo }, hi)
    }

    fn time_not_restorable(&self, asked_ms: u64, lo_time: u64) -> Error {
        let (lo, hi) = self.timed_range();
        let hi_time = self.time_of(hi).unwrap_or(crate::record::TIME_NOT_RECORDED);
        if hi < lo {
            return Error::TimeNotRestorable {
                asked: crate::record::utc_iso8601(asked_ms, true),
                range: "the backup holds no change yet".into(),
            };
        }
        let when = |ms: u64| {
            if ms == crate::record::TIME_NOT_RECORDED {
                "time not recorded".to_string()
            } else {
                crate::record::utc_iso8601(ms, true)
            }
        };
        Error::TimeNotRestorable {
            asked: crate::record::utc_iso8601(asked_ms, true),
            range: format!(
                "version {} ({}) to version {} ({})",
                data_version(lo),
                when(lo_time),
                data_version(hi),
                when(hi_time)
            ),
        }
    }

    /// The change records after `after` (a store version at or above the
    /// base snapshot's) up to and including `upto`, checked like
    /// [`changes`](Reader::changes): the first one chains from the record at
    /// `after` (or from the base when there is none there). What a replica
    /// that already holds everything up to `after` is sent.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let reader = store.reader()?;
    /// // A replica that holds everything up to version 2 is sent 3 and 4.
    /// let sent: Vec<u64> = reader.changes_after(2, 4)?.map(|c| c.map(|c| c.seq)).collect::<Result<_, _>>()?;
    /// assert_eq!(sent, [3, 4]);
    /// # Ok(()) }
    /// ```
    pub fn changes_after(&self, after: Seq, upto: Seq) -> Result<Changes> {
        guarded(&self.path, || {
            self.check_restorable(after)?;
            let base = self.state.base();
            let prev_hash = match record_in(&self.path, self.txn()?, after)? {
                Some(bytes) => {
                    StoredChange::from_bytes(&bytes)
                        .map_err(|e| Error::corrupt(&self.path, format!("version {}: {e}", data_version(after))))?
                        .hash
                }
                None if after == base => self.state.origin(),
                None => {
                    return Err(Error::corrupt(
                        &self.path,
                        format!("change record for version {} is missing", data_version(after)),
                    ))
                }
            };
            let tail = self.txn()?.open_table(CHANGES).map_err(|e| Error::redb(&self.path, e))?;
            let recent = log::open_recent(self.txn()?).map_err(|e| e.at(&self.path))?;
            let sealed = self.txn()?.open_table(SEALED).map_err(|e| Error::redb(&self.path, e))?;
            let from = after + 1;
            Ok(Changes {
                path: self.path.clone(),
                records: Records::new(&tail, recent.as_ref(), &sealed, from, upto.max(after))
                    .map_err(|e| e.at(&self.path))?,
                upto: upto.max(after),
                prev_hash,
                prev_seq: None,
                start: after,
                skip_start: false,
                ended: false,
            })
        })
    }

    /// Bytes of each stored change record, for size accounting.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let bytes = store.reader()?.stored_change_bytes()?;
    /// assert!(bytes > 0);
    /// assert_eq!(bytes, store.status()?.bytes_since_snapshot, "no snapshot: every record counts");
    /// store.rewind()?;
    /// assert!(store.reader()?.stored_change_bytes()? < bytes);
    /// # Ok(()) }
    /// ```
    pub fn stored_change_bytes(&self) -> Result<u64> {
        guarded(&self.path, || self.stored_change_bytes_inner())
    }

    fn stored_change_bytes_inner(&self) -> Result<u64> {
        let mut total = 0u64;
        for table in [CHANGES, RECENT, SEALED] {
            let t = match self.txn()?.open_table(table) {
                Ok(t) => t,
                // A store of format 1 has no recent records.
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(Error::redb(&self.path, e)),
            };
            for entry in t.range::<u64>(..).map_err(|e| Error::redb(&self.path, e))? {
                let (_, v) = entry.map_err(|e| Error::redb(&self.path, e))?;
                total += v.value().len() as u64;
            }
        }
        Ok(total)
    }
}

/// Iterator over checked, decoded change records: sealed segments first,
/// then the tail.
///
/// ```
/// use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
/// let reader = store.reader()?;
/// let changes = reader.changes(reader.head())?.collect::<Result<Vec<_>, _>>()?;
/// assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [1, 2]);
/// assert_eq!(changes[1].transactions[0].statements, ["INSERT INTO t VALUES (1)"]);
/// # Ok(()) }
/// ```
pub struct Changes {
    path: PathBuf,
    records: Records,
    upto: Seq,
    prev_hash: Hash,
    prev_seq: Option<Seq>,
    start: Seq,
    /// The record at `start`, if there is one, is the change a snapshot
    /// there already holds: checked against the anchor and not yielded.
    skip_start: bool,
    /// Set once the iteration has ended, by running out or by an error.
    ended: bool,
}

impl Changes {
    /// Chain hash of the last record yielded (the origin if none was).
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let reader = store.reader()?;
    /// let mut all = reader.changes(3)?;
    /// let origin = all.last_hash();
    /// assert_eq!(all.by_ref().collect::<Result<Vec<_>, _>>()?.len(), 3);
    /// assert_ne!(all.last_hash(), origin);
    /// // The hash of version 3's record, however the iteration reached it.
    /// let mut rest = reader.changes_after(2, 3)?;
    /// rest.by_ref().collect::<Result<Vec<_>, _>>()?;
    /// assert_eq!(rest.last_hash(), all.last_hash());
    /// # Ok(()) }
    /// ```
    pub fn last_hash(&self) -> Hash {
        self.prev_hash
    }

    fn step(&mut self, seq: Seq, bytes: &[u8]) -> Result<Option<Change>> {
        if self.skip_start && self.prev_seq.is_none() && seq == self.start {
            let rec = StoredChange::from_bytes(bytes)
                .map_err(|e| Error::corrupt(&self.path, format!("version {}: {e}", data_version(seq))))?;
            if rec.hash == self.prev_hash {
                self.prev_seq = Some(seq);
                return Ok(None);
            }
        }
        self.step_record(seq, bytes).map(Some)
    }

    fn step_record(&mut self, seq: Seq, bytes: &[u8]) -> Result<Change> {
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
        let item = guarded(&path, || loop {
            let Some((seq, bytes)) = self.records.next_record().map_err(|e| e.at(&self.path))? else {
                break self.end();
            };
            if let Some(change) = self.step(seq, &bytes)? {
                break Ok(Some(change));
            }
        });
        if item.is_err() {
            self.ended = true;
        }
        item.transpose()
    }
}

impl Changes {
    /// The iteration ran out of records: it must have reached `upto`.
    fn end(&mut self) -> Result<Option<Change>> {
        self.ended = true;
        // Every version after the snapshot up to `upto` has a record: a log
        // that stops short lost records at its end (a damaged page can hide
        // them from the iteration).
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
}

/// The bytes of the record at `seq` in a read view.
pub(super) fn record_in(path: &Path, txn: &redb::ReadTransaction, seq: Seq) -> Result<Option<Vec<u8>>> {
    let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    let recent = log::open_recent(txn).map_err(|e| e.at(path))?;
    let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
    log::record_at(&tail, recent.as_ref(), &sealed, seq).map_err(|e| e.at(path))
}
