//! Every write to a store: changes (one at a time or in bulk), rewinds,
//! snapshots and the publication of a compaction.
//!
//! Owns the change-log rules ([`plan_change`], shared by [`Store::add_change`]
//! and [`BulkLoad`]), and the rule that each public write is one redb write
//! transaction, durable when it returns, whose new [`State`] is computed from
//! the values written before the commit and installed once it returns. It
//! must not read records for anything but the write it makes (reading is
//! [`super::read`]'s), nor decide where records live ([`super::log`]).
//!
//! Decision: a change's statements are encoded, and its record built and
//! hashed, outside the state lock, from a copy of the state; the lock is held
//! for the redb transaction only, and the planned write is installed only if
//! no other write was installed meanwhile (otherwise it is planned again).
//! One writer, the plugin, never plans twice; the lock then guards only what
//! must be serial: the commit and the state it leaves.
//!
//! What one plain `add_change` commit writes (redb 4, 4 KiB pages, one-phase
//! commit with checksums), seen with
//! `strace -f -e trace=pwrite64,fdatasync ./target/release/examples/bench_store --quick`
//! and counted by that example (`write calls per commit`):
//! - redb's file header (320 bytes at offset 0: the commit slot naming the
//!   new roots and their checksums);
//! - the `changes` leaf holding the new record (the tail);
//! - the user table tree's leaf (the tail's new root page and checksum);
//! - redb's system table tree leaf (the roots of redb's own tables);
//! - a `data_pages_unreachable` leaf: the pages this commit freed (the old
//!   copies of the pages above);
//! - a `data_pages_allocated` leaf: the pages it allocated (kept for
//!   savepoints, purged at once when there are none);
//!
//! then one `fdatasync`. Before the tail was kept within one leaf (format 1),
//! a plain commit also rewrote the tail's branch page (its 16 to 300 records
//! spanned many leaves): 7 writes, now 6. The last three are redb's and come
//! with every durable commit; `meta` and the other tables are not touched by
//! a plain write. One commit in a few also writes a leaf and a branch of
//! `recent_changes` (see [`super::log`]), one in about 280 the segments it
//! seals.

use super::log;
use super::read::record_in;
use super::state::{Last, State};
use super::tables::{CHANGES, KEY_META, META, RECENT, SEALED, SNAPSHOTS};
use super::{guarded, snapshot, SnapshotInfo, Store};
use crate::error::{Error, Result};
use crate::record::{codec, now_ms, snapshot_anchor, Meta, StoredChange, StoredPart};
use crate::version::{self, data_version, Seq};
use redb::Durability;
use std::io::Read;
use std::path::Path;

/// What `add_change` did.
///
/// ```
/// use cln_backup::{version, Added, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// let first = [
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
///     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
///     version::bump_statement(1),
/// ];
/// assert_eq!(store.add_change(1, &first)?, Added::New(1));
/// // lightningd reports a lone PRAGMA outside a transaction with the version it is at.
/// assert_eq!(store.add_change(1, &["PRAGMA foreign_keys = OFF;"])?, Added::Repeated(1));
/// assert_eq!(store.reader()?.changes(1)?.next().transpose()?.map(|c| c.transactions.len()), Some(2));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// A new version was appended.
    New(Seq),
    /// A repeated-version report was appended to the head's record.
    Repeated(Seq),
}

/// Install `next` as the state after a committed write.
fn install(st: &mut State, mut next: State) {
    next.generation = st.generation.wrapping_add(1);
    *st = next;
}

/// A change planned against a state: its record and the state it leaves.
pub(super) struct Planned {
    seq: Seq,
    bytes: Vec<u8>,
    added: Added,
    next: State,
    /// A snapshot whose version's record this write changes: its anchor no
    /// longer matches, so it is dropped with this write (see `plan_change`).
    drop_snapshot: Option<Seq>,
}

/// The statements of one change, encoded (see [`codec::encode`]); an
/// encoding failure is reported only once the change-log rules accepted it.
pub(super) fn encode<S: AsRef<str>>(path: &Path, statements: &[S]) -> Result<Vec<u8>> {
    codec::encode(statements).map_err(|what| Error::Encode { path: path.to_path_buf(), what })
}

/// The checks and the record of one `add_change`, shared by [`Store::add_change`]
/// and [`BulkLoad::add_change`]. `encoded` is [`encode`] of `statements`;
/// `existing` reads the record at a version (for a repeated-version report
/// appended to the head's record).
pub(super) fn plan_change<S: AsRef<str>>(
    path: &Path,
    st: &State,
    version: u32,
    statements: &[S],
    time_ms: u64,
    encoded: Result<Vec<u8>>,
    existing: impl FnOnce(Seq) -> Result<Vec<u8>>,
) -> Result<Planned> {
    if statements.is_empty() {
        return Err(Error::EmptyChange { version });
    }
    let head = st.head;
    let next = version::next(head);
    let mut after = st.clone();
    // Record times never go back, so a time names one point of the log even
    // when the clock was set back (an unknown time stays unknown).
    let time_ms = if time_ms == crate::record::TIME_NOT_RECORDED { time_ms } else { time_ms.max(st.last_time_ms) };
    after.last_time_ms = after.last_time_ms.max(time_ms);
    let lightningd = st.model.is_lightningd();
    if version == data_version(next) {
        let expected_from = version.wrapping_sub(1);
        if lightningd && version::transaction_bump(statements) != Some(expected_from) {
            let last = statements.last().map(|s| s.as_ref()).unwrap_or_default();
            return Err(Error::MissingBump { version, expected_from, last: last.chars().take(160).collect() });
        }
        let part = StoredPart { time_ms, statements: encoded? };
        let rec = StoredChange::new(&st.tip, next, vec![part]);
        let bytes = rec.to_bytes().map_err(|what| Error::Encode { path: path.to_path_buf(), what })?;
        after.last = Some(Last { seq: next, from: st.tip, parts: 1 });
        after.tip = rec.hash;
        after.head = next;
        after.changes += 1;
        after.bytes_since_snapshot += bytes.len() as u64;
        Ok(Planned { seq: next, bytes, added: Added::New(next), next: after, drop_snapshot: None })
    } else if version == data_version(head) {
        if !lightningd {
            // An application's versions are the store's alone: one already
            // stored was stored by another writer (or reported twice).
            return Err(Error::ConcurrentWrite { version, head: data_version(head) });
        }
        if version::transaction_bump(statements).is_some() {
            return Err(Error::RepeatWithBump { version });
        }
        let part = StoredPart { time_ms, statements: encoded? };
        let (rec, from, old_bytes) = match &st.last {
            Some(last) if last.seq == head => {
                let old = existing(head)?;
                let mut stored = StoredChange::from_bytes(&old).map_err(|e| Error::corrupt(path, e))?;
                stored.parts.push(part);
                let old = old.len() as u64;
                (StoredChange::new(&last.from, head, stored.parts), last.from, Some(old))
            }
            _ => (StoredChange::new(&st.tip, head, vec![part]), st.tip, None),
        };
        let bytes = rec.to_bytes().map_err(|what| Error::Encode { path: path.to_path_buf(), what })?;
        after.last = Some(Last { seq: head, from, parts: rec.parts.len() });
        after.tip = rec.hash;
        if old_bytes.is_none() {
            after.changes += 1;
        }
        if head > st.newest_seq() || st.newest().is_none() {
            after.bytes_since_snapshot += bytes.len() as u64;
            after.bytes_since_snapshot -= old_bytes.unwrap_or(0).min(after.bytes_since_snapshot);
        }
        // Decision: a snapshot newer than the floor whose version's record
        // grows (a rewind back onto it, then a lone PRAGMA report) is dropped
        // with the write. Its anchor was that record's hash, which changes;
        // the versions it covered stay restorable from the snapshot before
        // it and the log kept since. At the floor the record is not kept
        // (the report starts a record of its own, chained from the anchor).
        let drop_snapshot =
            st.snapshots.iter().skip(1).find(|(s, _)| *s == head && old_bytes.is_some()).map(|(s, _)| *s);
        if let Some(seq) = drop_snapshot {
            // The bytes since the snapshot before it are counted again once
            // the write is committed (see `recount_after_drop`).
            after.snapshots.retain(|(s, _)| *s != seq);
        }
        Ok(Planned { seq: head, bytes, added: Added::Repeated(head), next: after, drop_snapshot })
    } else if !lightningd && data_version(head).wrapping_sub(version) < 1 << 31 {
        // Behind the head: stored already, by another writer.
        Err(Error::ConcurrentWrite { version, head: data_version(head) })
    } else {
        Err(Error::Gap { head: data_version(head), expected: data_version(next), got: version })
    }
}

/// Within `txn`: store a change record in the tail, after making room for
/// it there (see [`log::make_room`]), with the tail table opened once.
fn write_change(path: &Path, txn: &redb::WriteTransaction, seq: Seq, bytes: &[u8]) -> Result<()> {
    let mut tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    log::make_room(txn, &mut tail, bytes.len()).map_err(|e| e.at(path))?;
    tail.insert(seq, bytes).map_err(|e| Error::redb(path, e))?;
    Ok(())
}

/// Within `txn`: drop the snapshot a planned write leaves behind, if any
/// (see [`plan_change`]).
fn drop_snapshot(path: &Path, txn: &redb::WriteTransaction, planned: &Planned) -> Result<()> {
    if let Some(seq) = planned.drop_snapshot {
        let mut snaps = txn.open_table(SNAPSHOTS).map_err(|e| Error::redb(path, e))?;
        snaps.remove(seq).map_err(|e| Error::redb(path, e))?;
    }
    Ok(())
}

impl Store {
    /// Store one transaction lightningd reported with `data_version == version`.
    ///
    /// Follows the change-log rules: `version` must be the head's next version
    /// (mod 2^32) and end with the bump to it, or equal the head's version for
    /// a repeated-version report (appended to that version's record, in order).
    /// Anything else is refused. Durable when it returns `Ok`.
    ///
    /// In an application's model ([`crate::Model::Application`]) `version`
    /// is the head's next version and the statements are taken as they are;
    /// a version already stored is [`Error::ConcurrentWrite`].
    ///
    /// ```
    /// use cln_backup::{Added, Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// assert_eq!(store.add_change(1, &["CREATE TABLE t (x)"])?, Added::New(1));
    /// // A second writer that read version 0 lost the race.
    /// let raced = store.add_change(1, &["INSERT INTO t VALUES (1)"]).unwrap_err();
    /// assert!(matches!(raced, Error::ConcurrentWrite { .. }) && raced.is_retryable());
    /// # Ok(()) }
    /// ```
    pub fn add_change<S: AsRef<str>>(&self, version: u32, statements: &[S]) -> Result<Added> {
        guarded(&self.path, || self.add_change_inner(version, statements)).map_err(|e| self.failed(e))
    }

    fn add_change_inner<S: AsRef<str>>(&self, version: u32, statements: &[S]) -> Result<Added> {
        // The database is taken under the state lock, below: a compaction
        // replaces it under that lock.
        self.writer()?;
        let time_ms = now_ms();
        // Encoded once, outside the lock; again only if another write came first.
        let mut encoded = Some(encode(&self.path, statements));
        let mut raced = false;
        loop {
            let before = self.lock().clone();
            let encoded = encoded.take().unwrap_or_else(|| encode(&self.path, statements));
            let planned =
                plan_change(&self.path, &before, version, statements, time_ms, encoded, |seq| self.read_change(seq))
                    .map_err(|e| match e {
                        // Planned again because another write landed, and
                        // now out of order: say that writers raced.
                        Error::Gap { .. } | Error::RepeatWithBump { .. } | Error::MissingBump { .. } if raced => {
                            Error::ConcurrentWrite { version, head: data_version(before.head) }
                        }
                        e => e,
                    })?;
            #[cfg(test)]
            if tests::INTERFERE.with(|i| i.replace(false)) {
                // The tests' stand-in for another thread's write landing here.
                self.add_change_inner(version, statements)?;
            }
            let mut st = self.lock();
            if st.generation != before.generation {
                raced = true;
                continue;
            }
            let db = self.writer()?;
            let txn = db.begin_write().map_err(|e| self.err(e))?;
            write_change(&self.path, &txn, planned.seq, &planned.bytes)?;
            drop_snapshot(&self.path, &txn, &planned)?;
            txn.commit().map_err(|e| self.err(e))?;
            let dropped = planned.drop_snapshot.is_some();
            install(&mut st, planned.next);
            if dropped {
                self.recount_after_drop(&mut st);
            }
            return Ok(planned.added);
        }
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
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// let mut load = store.bulk_load()?;
    /// load.add_change(1, &["CREATE TABLE t (x)"])?;
    /// for v in 2..=100 {
    ///     load.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// }
    /// load.finish()?;
    /// assert_eq!((store.version(), store.status()?.changes), (100, 100));
    /// # Ok(()) }
    /// ```
    pub fn bulk_load(&self) -> Result<BulkLoad<'_>> {
        self.writer()?;
        // A compaction would put a new file in place under the load's open
        // transaction: one waits for the other.
        let compaction = self.lock_compaction();
        let state = self.lock().clone();
        Ok(BulkLoad { store: self, txn: None, state, in_batch: 0, commits: 0, dropped: false, _compaction: compaction })
    }

    /// After a write that dropped a snapshot (rare): count the bytes since
    /// the snapshot that is now the newest, which the write could not know.
    /// The write is committed, so a failure to read leaves the count as it
    /// was (it only feeds the compaction policy) rather than fail the write.
    fn recount_after_drop(&self, st: &mut State) {
        let counted = self.begin_read().and_then(|txn| super::state::bytes_since_snapshot(&self.path, &txn, st));
        if let Ok(bytes) = counted {
            st.bytes_since_snapshot = bytes;
        }
    }

    /// The stored bytes of the record at `seq`.
    fn read_change(&self, seq: Seq) -> Result<Vec<u8>> {
        let txn = self.begin_read()?;
        record_in(&self.path, &txn, seq)?.ok_or_else(|| {
            Error::corrupt(&self.path, format!("change record for version {} is missing", data_version(seq)))
        })
    }

    /// Remove the last change: lightningd reported it but did not commit it.
    ///
    /// Refused when it is not safe: twice in a row, when the last version holds
    /// repeated-version reports, or when nothing follows the snapshot.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// // The application's COMMIT of version 2 failed: take it back out.
    /// assert_eq!(store.rewind()?, 1);
    /// assert!(store.rewind().is_err(), "only one rewind in a row");
    /// # Ok(()) }
    /// ```
    pub fn rewind(&self) -> Result<Seq> {
        guarded(&self.path, || self.rewind_inner()).map_err(|e| self.failed(e))
    }

    fn rewind_inner(&self) -> Result<Seq> {
        let mut st = self.lock();
        let db = self.writer()?;
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
            let removed = t.remove(head).map_err(|e| self.err(e))?.map(|v| v.value().len() as u64).unwrap_or(0);
            next.bytes_since_snapshot -= removed.min(next.bytes_since_snapshot);
            let recent = txn.open_table(RECENT).map_err(|e| self.err(e))?;
            let sealed = txn.open_table(SEALED).map_err(|e| self.err(e))?;
            let record = |seq: Seq| -> Result<Option<StoredChange>> {
                match log::record_at(&t, Some(&recent), &sealed, seq).map_err(|e| e.at(&self.path))? {
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
                    next.last_time_ms = st.newest().map(|(_, h)| h.version_time_ms).unwrap_or(0);
                    next.last_time_ms = next.last_time_ms.max(rec.parts.iter().map(|p| p.time_ms).max().unwrap_or(0));
                    next.last = Some(Last { seq, from, parts: rec.parts.len() });
                }
                None => {
                    next.tip = st.origin();
                    next.last_time_ms = st.newest().map(|(_, h)| h.version_time_ms).unwrap_or(0);
                    next.last = None;
                }
            }
        }
        self.put_meta(&txn, &next.meta)?;
        txn.commit().map_err(|e| self.err(e))?;
        install(&mut st, next);
        Ok(st.head)
    }

    /// Store a whole SQLite image as the base snapshot at `version`, streaming
    /// it from `image` in compressed chunks.
    ///
    /// Accepted on an empty store (it then starts at `version`) or at the
    /// head's version (it then replaces the log: the last change can no longer
    /// be rewound). Replay after it starts with foreign keys on, as lightningd
    /// opens its database (an application's store: as it declared).
    ///
    /// The image is checked on the way in, and refused with
    /// [`Error::SnapshotImage`] when it is not a SQLite database, fails
    /// SQLite's `quick_check`, or (lightningd's model) holds another
    /// `data_version`. Decision: to check it, the image is first copied to a
    /// temporary file beside the store (removed when done), so the store's
    /// disk needs room for it once more while it is taken.
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let db = dir.path().join("app.sqlite3");
    /// # Connection::open(&db)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")?;
    /// let image: Vec<u8> = std::fs::read(&db)?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// let info = store.add_snapshot(7, &mut image.as_slice())?;
    /// assert_eq!((info.version, info.size), (7, image.len() as u64));
    /// assert_eq!(store.version(), 7, "an empty store starts at the snapshot");
    /// let refused = store.add_snapshot(7, &mut &b"not a database"[..]);
    /// assert!(matches!(refused, Err(Error::SnapshotImage { .. })));
    /// # Ok(()) }
    /// ```
    pub fn add_snapshot(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        self.writer()?;
        let mut copy = crate::atomic_file::TempFile::create(&self.path, "snapshot")?;
        let tmp = copy.path().to_path_buf();
        {
            let mut w = std::io::BufWriter::with_capacity(1 << 20, copy.file()?);
            std::io::copy(image, &mut w).map_err(|e| Error::io(&tmp, e))?;
            std::io::Write::flush(&mut w).map_err(|e| Error::io(&tmp, e))?;
        }
        self.add_snapshot_file(version, &tmp)
    }

    /// [`Store::add_snapshot`] of the SQLite database in the file `image`
    /// (not open for writing by anyone meanwhile), checked where it is
    /// rather than copied first.
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{Error, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let image = dir.path().join("lightningd.sqlite3");
    /// Connection::open(&image)?.execute_batch(
    ///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER); INSERT INTO vars VALUES ('data_version', 2);",
    /// )?;
    /// let store = Store::create(dir.path().join("node.redb"))?;
    /// // Offered at another version than the one it holds: refused.
    /// assert!(matches!(store.add_snapshot_file(7, &image), Err(Error::SnapshotImage { .. })));
    /// assert_eq!(store.add_snapshot_file(2, &image)?.version, 2);
    /// # Ok(()) }
    /// ```
    pub fn add_snapshot_file(&self, version: u32, image: &Path) -> Result<SnapshotInfo> {
        guarded(&self.path, || {
            self.writer()?;
            crate::replay::check_image(image, self.published().model, version)
                .map_err(|what| Error::SnapshotImage { version, what })?;
            let mut file = std::fs::File::open(image).map_err(|e| Error::io(image, e))?;
            let mut reader = std::io::BufReader::with_capacity(1 << 20, &mut file);
            self.add_snapshot_inner(version, &mut reader)
        })
        .map_err(|e| self.failed(e))
    }

    fn add_snapshot_inner(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        let mut st = self.lock();
        let db = self.writer()?;
        let empty = st.head == 0 && st.snapshots.is_empty() && st.changes == 0;
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
        // The image goes in in short transactions (memory stays bounded
        // whatever its size), made visible by the last one.
        // One at the version of the snapshot it replaces is written in the
        // transaction that replaces it.
        let replaces = st.snapshots.iter().any(|(s, _)| *s == seq);
        let staged = if replaces { None } else { Some(snapshot::stage(&self.path, &db, seq, image)?) };
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        let staged = match staged {
            Some(staged) => staged,
            None => snapshot::stage_in(&self.path, &txn, seq, image)?,
        };
        let header =
            snapshot::install(&self.path, &txn, seq, &staged, st.model.foreign_keys_at_start(), now_ms(), |content| {
                snapshot_anchor(&tip, seq, content)
            })?;
        // The snapshot replaces every snapshot and every record at or below
        // the head: none is left.
        let mut next = st.clone();
        next.tip = header.anchor;
        next.last_time_ms = header.version_time_ms;
        next.snapshots = vec![(seq, header)];
        next.head = seq;
        next.last = None;
        next.changes = 0;
        next.bytes_since_snapshot = 0;
        txn.commit().map_err(|e| self.err(e))?;
        install(&mut st, next);
        st.snapshot_info().ok_or_else(|| Error::corrupt(&self.path, "snapshot vanished after commit"))
    }

    fn put_meta(&self, txn: &redb::WriteTransaction, meta: &Meta) -> Result<()> {
        let bytes = meta.to_bytes().map_err(|what| Error::Encode { path: self.path.clone(), what })?;
        let mut t = txn.open_table(META).map_err(|e| self.err(e))?;
        t.insert(KEY_META, bytes.as_slice()).map_err(|e| self.err(e))?;
        Ok(())
    }
}

/// Changes added in bulk: see [`Store::bulk_load`].
///
/// An import, as a copy of another store's log:
///
/// ```
/// use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let model = Model::Application { foreign_keys: true };
/// # let old = Store::create_with(dir.path().join("old.redb"), model)?;
/// # old.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=5 {
/// #     old.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let new = Store::create_with(dir.path().join("new.redb"), model)?;
/// let reader = old.reader()?;
/// let mut load = new.bulk_load()?;
/// for change in reader.changes(reader.head())? {
///     let change = change?;
///     for txn in &change.transactions {
///         load.add_change(change.data_version(), &txn.statements)?;
///     }
/// }
/// load.finish()?;
/// assert_eq!(new.version(), 5);
/// # Ok(()) }
/// ```
pub struct BulkLoad<'s> {
    store: &'s Store,
    /// The open batch, committed every [`BULK_BATCH`] changes.
    txn: Option<redb::WriteTransaction>,
    /// The state with every change added so far, committed or not.
    state: State,
    in_batch: usize,
    commits: u64,
    /// A write of the open batch dropped a snapshot (see `plan_change`).
    dropped: bool,
    _compaction: std::sync::MutexGuard<'s, ()>,
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
    ///
    /// ```
    /// use cln_backup::{Added, Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// let mut load = store.bulk_load()?;
    /// assert_eq!(load.add_change(1, &["CREATE TABLE t (x)"])?, Added::New(1));
    /// // Refused, as by `Store::add_change`; the load goes on.
    /// let gap = load.add_change(3, &["INSERT INTO t VALUES (3)"]);
    /// assert!(matches!(gap, Err(Error::Gap { expected: 2, .. })));
    /// load.add_change(2, &["INSERT INTO t VALUES (2)"])?;
    /// load.finish()?;
    /// assert_eq!(store.version(), 2);
    /// # Ok(()) }
    /// ```
    pub fn add_change<S: AsRef<str>>(&mut self, version: u32, statements: &[S]) -> Result<Added> {
        let path = self.store.path.clone();
        let store = self.store;
        guarded(&path, || self.add_change_inner(version, statements, now_ms())).map_err(|e| store.failed(e))
    }

    /// [`BulkLoad::add_change`] for a change whose source recorded no time
    /// (a `.dbak` import): it is stored with
    /// [`TIME_NOT_RECORDED`](crate::record::TIME_NOT_RECORDED), not the
    /// time of the load, which would pass for when lightningd made it.
    ///
    /// ```
    /// use cln_backup::{Model, Store, TIME_NOT_RECORDED};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// let mut load = store.bulk_load()?;
    /// load.add_change_without_time(1, &["CREATE TABLE t (x)"])?;
    /// load.finish()?;
    /// assert_eq!(store.reader()?.time_of(1)?, TIME_NOT_RECORDED);
    /// # Ok(()) }
    /// ```
    pub fn add_change_without_time<S: AsRef<str>>(&mut self, version: u32, statements: &[S]) -> Result<Added> {
        let path = self.store.path.clone();
        let store = self.store;
        guarded(&path, || self.add_change_inner(version, statements, crate::record::TIME_NOT_RECORDED))
            .map_err(|e| store.failed(e))
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
        let encoded = encode(path, statements);
        let planned = plan_change(path, &self.state, version, statements, time_ms, encoded, |seq| {
            let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
            let recent = txn.open_table(RECENT).map_err(|e| Error::redb(path, e))?;
            let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
            let bytes =
                log::record_at(&tail, Some(&recent), &sealed, seq).map_err(|e| e.at(path))?.ok_or_else(|| {
                    Error::corrupt(path, format!("change record for version {} is missing", data_version(seq)))
                })?;
            Ok(bytes)
        })?;
        {
            let mut tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
            log::make_room_bulk(txn, &mut tail).map_err(|e| e.at(path))?;
            tail.insert(planned.seq, planned.bytes.as_slice()).map_err(|e| Error::redb(path, e))?;
        }
        drop_snapshot(path, txn, &planned)?;
        self.dropped |= planned.drop_snapshot.is_some();
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
            let mut st = self.store.lock();
            install(&mut st, self.state.clone());
            if std::mem::take(&mut self.dropped) {
                self.store.recount_after_drop(&mut st);
                self.state.bytes_since_snapshot = st.bytes_since_snapshot;
            }
        }
        self.in_batch = 0;
        Ok(())
    }

    /// Commit what is left and make everything added durable (one sync).
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.redb");
    /// let store = Store::create_with(&path, Model::Application { foreign_keys: true })?;
    /// let mut load = store.bulk_load()?;
    /// load.add_change(1, &["CREATE TABLE t (x)"])?;
    /// load.add_change(2, &["INSERT INTO t VALUES (2)"])?;
    /// load.finish()?;
    /// drop(store);
    /// assert_eq!(Store::open(&path)?.version(), 2);
    /// # Ok(()) }
    /// ```
    pub fn finish(mut self) -> Result<()> {
        let path = self.store.path.clone();
        let store = self.store;
        guarded(&path, || {
            self.commit_batch()?;
            // A commit with immediate durability persists the non-durable
            // ones before it; in it, the tail goes back within its leaf for
            // the writes that follow.
            let txn = self.store.writer()?.begin_write().map_err(|e| Error::redb(&path, e))?;
            {
                let mut tail = txn.open_table(CHANGES).map_err(|e| Error::redb(&path, e))?;
                log::fit_tail(&txn, &mut tail).map_err(|e| e.at(&path))?;
            }
            txn.commit().map_err(|e| Error::redb(&path, e))?;
            self.commits += 1;
            Ok(())
        })
        .map_err(|e| store.failed(e))
    }

    /// Commits made so far (each batch, and the final durable one): the test
    /// suite checks that a bulk load does not commit once per change.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// let mut load = store.bulk_load()?;
    /// load.add_change(1, &["CREATE TABLE t (x)"])?;
    /// for v in 2..=100 {
    ///     load.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// }
    /// assert_eq!(load.commits(), 0, "100 changes fit in one batch, committed by finish");
    /// load.finish()?;
    /// # Ok(()) }
    /// ```
    pub fn commits(&self) -> u64 {
        self.commits
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::version::bump_statement;

    thread_local! {
        /// Set: the next `add_change` on this thread stores the same change
        /// again between planning and taking the lock.
        pub(super) static INTERFERE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn a_report_onto_a_newer_snapshot_drops_it_and_counts_the_bytes_since_the_one_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::create(&path).unwrap();
        let schema = [
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
            "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
            bump_statement(1),
        ];
        store.add_change(1, &schema).unwrap();
        let add = |v: u32| {
            store.add_change(v, &[format!("SELECT {v}"), bump_statement(v)]).unwrap();
        };
        (2..=4).for_each(add);
        crate::compact::compact(&store, &Default::default()).unwrap(); // snapshot at 3
        (5..=6).for_each(add);
        crate::compact::compact(&store, &Default::default()).unwrap(); // snapshot at 5
        assert_eq!(store.status().unwrap().snapshots.iter().map(|s| s.version).collect::<Vec<_>>(), vec![3, 5]);
        // Back onto the newer snapshot, then a lone report there.
        store.rewind().unwrap();
        assert_eq!(store.head(), 5);
        store.add_change(5, &["PRAGMA foreign_keys = OFF;"]).unwrap();
        let kept = store.status().unwrap();
        assert_eq!(kept.snapshots.iter().map(|s| s.version).collect::<Vec<_>>(), vec![3]);
        drop(store);
        let reopened = Store::open(&path).unwrap().status().unwrap();
        assert_eq!(kept.bytes_since_snapshot, reopened.bytes_since_snapshot);
        assert!(kept.bytes_since_snapshot > 0);
    }

    #[test]
    fn a_write_planned_before_another_one_landed_is_planned_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s.redb")).unwrap();
        store.add_change(1, &["SELECT 1".to_string(), bump_statement(1)]).unwrap();
        INTERFERE.with(|i| i.set(true));
        let err = store.add_change(2, &["SELECT 2".to_string(), bump_statement(2)]).unwrap_err();
        // Planned again on the new head, version 2 is a repeat, with a bump:
        // the error says that another write came first.
        assert!(matches!(err, Error::ConcurrentWrite { version: 2, head: 2 }), "{err}");
        assert!(err.is_retryable(), "{err}");
        assert!(err.to_string().contains("serialised"), "{err}");
        let st = store.lock().clone();
        assert_eq!((st.head, st.changes), (2, 2));
        let reader = store.reader().unwrap();
        assert_eq!(reader.changes(2).unwrap().map(|c| c.unwrap().seq).collect::<Vec<_>>(), vec![1, 2]);
    }

    #[test]
    fn writers_racing_on_one_store_each_plan_against_the_state_they_commit_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s.redb")).unwrap();
        let target = 60u32;
        std::thread::scope(|scope| {
            for thread in 0..4 {
                let store = &store;
                scope.spawn(move || loop {
                    let v = store.version() + 1;
                    if v > target {
                        return;
                    }
                    let stmts = [format!("INSERT INTO t VALUES ({thread}, {v})"), bump_statement(v)];
                    match store.add_change(v, &stmts) {
                        Ok(added) => assert_eq!(added, Added::New(Seq::from(v))),
                        // Another thread stored `v` first.
                        Err(Error::RepeatWithBump { .. } | Error::Gap { .. } | Error::ConcurrentWrite { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                });
            }
        });
        let st = store.lock().clone();
        assert_eq!((st.head, st.changes), (u64::from(target), u64::from(target)));
        let reader = store.reader().unwrap();
        assert_eq!(reader.change_count(), u64::from(target));
        let mut n = 0;
        for change in reader.changes(reader.head()).unwrap() {
            change.unwrap();
            n += 1;
        }
        assert_eq!(n, target);
        // The kept tip is the last record's hash: the next change chains on.
        drop(reader);
        store.add_change(target + 1, &["SELECT 1".to_string(), bump_statement(target + 1)]).unwrap();
        assert_eq!(store.reader().unwrap().changes(Seq::from(target + 1)).unwrap().count(), target as usize + 1);
    }
}
