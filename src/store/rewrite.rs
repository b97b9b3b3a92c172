//! Publishing a compaction by writing the store anew, beside it, and putting
//! the new file in its place.
//!
//! Owns the new file's contents (the snapshots kept, copied as stored; the
//! new snapshot; the change records from the oldest snapshot kept to the
//! head), bringing it up to the head while the writer goes on, making it
//! tight, and the switch-over: under the state lock, the last changes and
//! the metadata in one durable commit, the rename over the store's file and
//! the swap of the open database. It must not decide what to compact or keep
//! (the caller says), and it does not replay SQL.
//!
//! Decision: a compaction writes a new file instead of deleting in place.
//! Deleting thousands of records and a snapshot's chunks in the live file is
//! work proportional to history, done in commits the writer waits for; the
//! new file is written without the write lock, and the writer waits only for
//! the switch-over (the changes made since the last catch-up, one commit, a
//! rename and a directory sync). Nothing under the lock reads the whole
//! history either: the bytes of the records written during the compaction
//! (which feed the policy's size trigger) are counted before it, and only
//! those of the last few records under it. The new file holds only what is kept, laid
//! out in order and compacted by redb before it is used, so its length is
//! close to the bytes it holds. A crash at any point leaves either the old
//! file or the new one at the store's path, each complete; the temporary
//! file of a dead process is removed when the store is next opened for
//! writing. The price is the disk space of a second copy while it runs.
//!
//! Decision: the new file is compacted by redb (every page moved as low as it
//! goes, the free space at the end cut off) and then given a reserve of free
//! space inside it, about a twelfth of what it holds, so the writes after a
//! compaction fill that space instead of making redb double the file's
//! length at the first commit (redb grows a file by doubling it whenever no
//! page is free, and its compaction leaves none). The reserve is written
//! (in values of a megabyte) before redb compacts the file, then deleted by
//! a commit whose pages land above everything: closing the file cuts off
//! only the free space at its end, so the reserve's stays, inside.
//!
//! Decision: the new file is written at the pace of [`crate::pace`] (through
//! its `PacedBackend`, redb's compaction included), on a thread at the
//! lowest CPU priority, and no read view of the old file is held for long:
//! a view is opened for each transaction of snapshot chunks, and one for the
//! records. Only the switch-over runs on the caller's thread, at its
//! priority. The old file's space is given back in steps once it is
//! closed.

use super::log::{self, Packer, Records};
use super::read::record_in;
use super::state::{load_state, record_bytes, State};
use super::tables::{CHANGES, CHUNKS, KEY_FORMAT, KEY_META, KEY_MODEL, META, RECENT, SEALED, SNAPSHOTS};
use super::{file, guarded, snapshot, Db, Store};
use crate::atomic_file::{NewOwner, Replace, TempFile};
use crate::error::{Error, Result};
use crate::record::{now_ms, CompactionRecord, Hash, SnapshotHeader, StoredChange};
use crate::version::{data_version, Seq};
use redb::{Database, Durability, ReadableDatabase, TableDefinition};
use std::fs::OpenOptions;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Bytes written per transaction while the new file is built: redb writes
/// a transaction's pages at its commit, so this is also the most the file
/// has unsynced (see [`crate::pace`]).
const TXN_BYTES: usize = crate::pace::STEP as usize;
/// The switch-over is made once a catch-up leaves at most this many changes.
const SWITCH_AT: u64 = 32;
/// Catch-ups tried before switching over anyway.
const CATCH_UP_ROUNDS: usize = 16;
/// The free space left inside the new file: this fraction of what it holds.
const RESERVE_DIVISOR: u64 = 12;
/// A table that exists only while the new file is built (see the module doc).
const RESERVE: TableDefinition<u64, &[u8]> = TableDefinition::new("compaction_reserve");

/// What a compaction asks to publish.
pub(crate) struct Rewrite<'a> {
    /// The new snapshot's store version.
    pub point: Seq,
    /// The hash of the change record at `point` the image was replayed to.
    pub expect: Hash,
    /// Foreign keys at `point`.
    pub foreign_keys: bool,
    /// The replayed SQLite image at `point`.
    pub image: &'a Path,
    /// Snapshots to keep, the new one included (at least 1).
    pub keep: usize,
    /// Snapshots stored longer ago than this are dropped (never the new one).
    pub max_age_ms: Option<u64>,
    /// When the compaction started.
    pub started: Instant,
    /// Bytes a second written at most (see [`crate::compact::Options`]).
    pub io_rate: Option<u64>,
}

/// What a rewrite did.
pub(crate) struct Rewritten {
    pub record: CompactionRecord,
    /// The snapshots kept, oldest first.
    pub kept: Vec<Seq>,
    pub dropped: u64,
    /// Bytes of pages in use in the new file when it was put in place.
    pub bytes_in_use: u64,
}

/// The new file while it is built.
struct Build<'a> {
    /// The store's file (for errors about what is read).
    store: &'a Path,
    /// The temporary file (for errors about what is written).
    path: PathBuf,
    db: Database,
    /// The oldest snapshot kept: records are kept from it.
    floor: Seq,
    /// The hash of the record at `floor` that the snapshot there holds.
    floor_anchor: Hash,
    /// The head the records were last copied up to.
    copied: Seq,
    /// Bytes written, for the reserve.
    written: u64,
    /// Whether a record at the floor is kept (one holding reports made
    /// after the snapshot there).
    floor_record: bool,
}

impl Build<'_> {
    /// Bytes of records written per transaction.
    const RECORD_TXN_BYTES: usize = TXN_BYTES;

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }

    fn begin(&self, durable: bool) -> Result<redb::WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(|e| self.err(e))?;
        if !durable {
            txn.set_durability(Durability::None).map_err(|e| self.err(redb::Error::from(e)))?;
        }
        Ok(txn)
    }

    /// Compact the file with a reserve of free space inside it (see the
    /// module doc), and close and open it again.
    fn tighten(&mut self) -> Result<()> {
        // redb's compaction goes through the new file's paced backend like
        // every other write, so its page moves and its cut of the file's end
        // come in steps too. Measured on a 1.3 GB new file: 28 MiB peak
        // resident for the whole compaction, the file 1.13 times the bytes
        // in use.
        self.compact_with_reserve()?;
        // Closed and opened again without the paced backend: from the
        // switch-over on it serves the node's writes.
        drop(std::mem::replace(&mut self.db, placeholder()?));
        let handle =
            OpenOptions::new().read(true).write(true).open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        self.db = file::writable(&file::builder(), &self.path, handle, file::Backing::Plain)
            .map_err(|e| file::open_error(&self.path, e))?;
        Ok(())
    }

    /// redb's compaction, with the reserve inside (see the module doc).
    fn compact_with_reserve(&mut self) -> Result<()> {
        // The reserve in values of at most one step each, a transaction
        // each: never more than a step of it in memory.
        let mut reserve = (self.written / RESERVE_DIVISOR).max(64 << 10);
        let zeros = vec![0u8; TXN_BYTES];
        let mut key = 0u64;
        while reserve > 0 {
            let n = reserve.min(TXN_BYTES as u64);
            let txn = self.begin(false)?;
            {
                let mut t = txn.open_table(RESERVE).map_err(|e| self.err(e))?;
                t.insert(key, &zeros[..n as usize]).map_err(|e| self.err(e))?;
            }
            txn.commit().map_err(|e| self.err(e))?;
            reserve -= n;
            key += 1;
        }
        // Every page as low as it goes, the reserve among them; then the
        // reserve deleted by a commit whose pages land above it.
        self.db.compact().map_err(|e| self.err(redb::Error::from(e)))?;
        let txn = self.begin(true)?;
        txn.delete_table(RESERVE).map_err(|e| self.err(e))?;
        txn.commit().map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Whether the record at `seq` (its bytes) is the change the floor's
    /// snapshot holds, so not kept.
    fn in_floor_image(&mut self, seq: Seq, bytes: &[u8]) -> Result<bool> {
        if seq != self.floor {
            return Ok(false);
        }
        let rec = StoredChange::from_bytes(bytes)
            .map_err(|e| Error::corrupt(self.store, format!("version {}: {e}", data_version(seq))))?;
        let in_image = rec.hash == self.floor_anchor;
        self.floor_record = !in_image;
        Ok(in_image)
    }

    /// Copy every record from the floor to `st.head` out of the view `from`:
    /// all but the last three into sealed segments, those into the tail.
    fn copy_records(&mut self, from: &redb::ReadTransaction, st: &State) -> Result<()> {
        let tail_from = st.head.saturating_sub(2).max(self.floor);
        let mut records = open_records(self.store, from, self.floor, st.head)?;
        let mut packer = Packer::default();
        let mut txn = self.begin(false)?;
        let mut in_txn = 0usize;
        while let Some((seq, bytes)) = records.next_record().map_err(|e| e.at(self.store))? {
            if self.in_floor_image(seq, &bytes)? {
                continue;
            }
            in_txn += bytes.len();
            self.written += bytes.len() as u64;
            if seq < tail_from {
                packer.push(&txn, seq, bytes).map_err(|e| e.at(&self.path))?;
            } else {
                let mut tail = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
                tail.insert(seq, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
            if in_txn >= Self::RECORD_TXN_BYTES && seq + 1 < tail_from {
                txn.commit().map_err(|e| self.err(e))?;
                txn = self.begin(false)?;
                in_txn = 0;
            }
        }
        packer.finish(&txn).map_err(|e| e.at(&self.path))?;
        txn.commit().map_err(|e| self.err(e))?;
        self.copied = st.head;
        Ok(())
    }

    /// Bring the records up to `st.head`, read from `from`. Records below
    /// the last head copied minus two never change again (the head never
    /// goes back further than one version, see `State::rewind_refusal`);
    /// those from there on are in the tail and are copied again, with
    /// every record since.
    fn catch_up(&mut self, from: &redb::ReadTransaction, st: &State, durable: bool) -> Result<()> {
        let start = self.copied.saturating_sub(2).max(self.floor);
        let recent_below = st.head.saturating_sub(2);
        let mut records = open_records(self.store, from, start, st.head)?;
        let txn = self.begin(durable)?;
        {
            let mut tail = txn.open_table(CHANGES).map_err(|e| self.err(e))?;
            tail.retain(|_, _| false).map_err(|e| self.err(e))?;
            let mut recent = txn.open_table(RECENT).map_err(|e| self.err(e))?;
            while let Some((seq, bytes)) = records.next_record().map_err(|e| e.at(self.store))? {
                if self.in_floor_image(seq, &bytes)? {
                    continue;
                }
                self.written += bytes.len() as u64;
                if seq < recent_below {
                    recent.insert(seq, bytes.as_slice()).map_err(|e| self.err(e))?;
                } else {
                    tail.insert(seq, bytes.as_slice()).map_err(|e| self.err(e))?;
                }
            }
        }
        log::seal_recent(&txn).map_err(|e| e.at(&self.path))?;
        txn.commit().map_err(|e| self.err(e))?;
        self.copied = st.head;
        Ok(())
    }
}

/// How long a compaction waits for readers of the replaced file (a
/// replica sending from it, a restore) to finish before leaving its space
/// to be freed by whichever of them closes it last.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Close the replaced file `db` and give its space back in steps through
/// `file`, a handle on the same file (see
/// [`crate::atomic_file::give_back_in_steps`]). A reader may still hold the
/// file: it is emptied only once nobody else does, which is waited for up
/// to [`RELEASE_WAIT`]; after that it is freed at once by the last reader
/// closing it. Never called with the state lock held: the writer goes on
/// meanwhile.
fn release(db: Db, file: Option<std::fs::File>) {
    let Db::Write(mut shared) = db else {
        return;
    };
    let deadline = Instant::now() + RELEASE_WAIT;
    let db = loop {
        match Arc::try_unwrap(shared) {
            Ok(db) => break db,
            Err(still) if Instant::now() < deadline => {
                shared = still;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(_) => {
                tracing::debug!("the replaced store file is still read; it is freed when its last reader closes it");
                return;
            }
        }
    };
    drop(db);
    if let Some(file) = file {
        crate::atomic_file::give_back_in_steps(&file);
    }
}

/// An empty database in memory, held while the new file is closed and
/// opened again.
fn placeholder() -> Result<Database> {
    Database::builder()
        .create_with_backend(redb::backends::InMemoryBackend::new())
        .map_err(|e| Error::redb(Path::new("(memory)"), e))
}

/// The records `start..=upto` of a read view, in order.
fn open_records(path: &Path, txn: &redb::ReadTransaction, start: Seq, upto: Seq) -> Result<Records> {
    let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    let recent = log::open_recent(txn).map_err(|e| e.at(path))?;
    let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
    Records::new(&tail, recent.as_ref(), &sealed, start, upto).map_err(|e| e.at(path))
}

/// The hash of the record at `seq` in a read view, and its first part's time.
fn record_hash(path: &Path, txn: &redb::ReadTransaction, seq: Seq) -> Result<Option<(Hash, u64)>> {
    match record_in(path, txn, seq)? {
        Some(bytes) => {
            let rec = StoredChange::from_bytes(&bytes)
                .map_err(|e| Error::corrupt(path, format!("version {}: {e}", data_version(seq))))?;
            let time = rec.parts.first().map(|p| p.time_ms).unwrap_or(crate::record::TIME_NOT_RECORDED);
            Ok(Some((rec.hash, time)))
        }
        None => Ok(None),
    }
}

/// The snapshots a compaction at `point` keeps, oldest first (`None`: the
/// new one), and how many it drops.
fn choose(
    snapshots: &[(Seq, SnapshotHeader)],
    point: Seq,
    keep: usize,
    max_age_ms: Option<u64>,
    now: u64,
) -> (Vec<(Seq, Option<SnapshotHeader>)>, u64) {
    let mut kept: Vec<(Seq, Option<SnapshotHeader>)> =
        snapshots.iter().filter(|(s, _)| *s < point).map(|(s, h)| (*s, Some(h.clone()))).collect();
    kept.push((point, None));
    let total = kept.len();
    let keep = keep.max(1);
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    if let Some(age) = max_age_ms {
        kept.retain(|(_, h)| h.as_ref().is_none_or(|h| h.created_ms.saturating_add(age) >= now));
    }
    let dropped = (total - kept.len()) as u64 + snapshots.iter().filter(|(s, _)| *s >= point).count() as u64;
    (kept, dropped)
}

impl Store {
    /// Publish a compaction by writing the store anew (see the module doc).
    /// Refused with [`Error::CompactionRaced`] if the record at `job.point`
    /// changed or the head went back to it. The caller holds the
    /// compaction lock.
    pub(crate) fn rewrite(&self, job: &Rewrite<'_>) -> Result<Rewritten> {
        guarded(&self.path, || self.rewrite_inner(job))
    }

    fn rewrite_inner(&self, job: &Rewrite<'_>) -> Result<Rewritten> {
        let raced = || Error::CompactionRaced { version: data_version(job.point) };
        let real = std::fs::canonicalize(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let old = self.writer()?;
        let view = old.begin_read().map_err(|e| self.err(e))?;
        let st = load_state(&self.path, &view, false)?;
        let Some((hash, point_time)) = record_hash(&self.path, &view, job.point)? else {
            return Err(raced());
        };
        if hash != job.expect || st.head <= job.point {
            return Err(raced());
        }
        let changes_before = st.changes;
        let (kept, dropped) = choose(&st.snapshots, job.point, job.keep, job.max_age_ms, now_ms());
        let floor = kept.first().map(|(s, _)| *s).unwrap_or(job.point);
        let floor_anchor = match kept.first() {
            Some((_, Some(h))) => h.anchor,
            _ => job.expect,
        };
        // Decision: no view of the old file is held for long (see
        // `replay::replay_for_compaction`): a new one is opened for each
        // transaction of snapshot chunks, and one for the records.
        drop(view);

        let mut tmp = TempFile::reserve(&real, "rewrite")?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(tmp.path())
            .map_err(|e| Error::io(tmp.path(), e))?;
        let db = file::writable(&file::builder(), tmp.path(), file, file::Backing::Paced(job.io_rate))
            .map_err(|e| Error::redb(tmp.path(), e))?;
        let mut b = Build {
            store: &self.path,
            path: tmp.path().to_path_buf(),
            db,
            floor,
            floor_anchor,
            copied: 0,
            written: 0,
            floor_record: false,
        };

        // The tables, and the metadata as it is now (written again at the switch-over).
        let txn = b.begin(false)?;
        {
            let meta = st.meta.to_bytes().map_err(|what| Error::Encode { path: self.path.clone(), what })?;
            let mut t = txn.open_table(META).map_err(|e| b.err(e))?;
            t.insert(KEY_FORMAT, st.model.format().to_le_bytes().as_slice()).map_err(|e| b.err(e))?;
            t.insert(KEY_META, meta.as_slice()).map_err(|e| b.err(e))?;
            if st.model != crate::Model::Lightningd {
                t.insert(KEY_MODEL, st.model.to_bytes().as_slice()).map_err(|e| b.err(e))?;
            }
            for table in [CHANGES, RECENT, SEALED, SNAPSHOTS] {
                txn.open_table(table).map_err(|e| b.err(e))?;
            }
            txn.open_table(CHUNKS).map_err(|e| b.err(e))?;
        }
        txn.commit().map_err(|e| b.err(e))?;

        // Everything up to the switch-over runs at the lowest CPU priority
        // (see `crate::pace`); the switch-over, under the state lock, runs
        // on the caller's thread.
        let counted = crate::pace::in_background(&self.path, || -> Result<(u64, Seq, u64)> {
            tracing::debug!("rewrite: copying the {} snapshots kept into {}", kept.len() - 1, tmp.path().display());
            // The snapshots kept, as they are stored.
            for (seq, header) in &kept {
                let Some(header) = header else { continue };
                let mut next = 0;
                loop {
                    let view = old.begin_read().map_err(|e| self.err(e))?;
                    // Dropped meanwhile (never expected: only a compaction
                    // drops a snapshot below the head): nothing is published.
                    let still = view.open_table(SNAPSHOTS).map_err(|e| self.err(e))?;
                    if still.get(*seq).map_err(|e| self.err(e))?.is_none() {
                        return Err(raced());
                    }
                    drop(still);
                    let txn = b.begin(false)?;
                    next = snapshot::copy_chunks(&self.path, &view, &txn, *seq, header, next, TXN_BYTES)?;
                    drop(view);
                    txn.commit().map_err(|e| b.err(e))?;
                    if next >= header.chunks {
                        break;
                    }
                }
                b.written += header.stored_bytes;
            }

            tracing::debug!("rewrite: the new snapshot at version {}", data_version(job.point));
            // The new snapshot, from the replayed image.
            let mut image = std::fs::File::open(job.image).map_err(|e| Error::io(job.image, e))?;
            let new_path = b.path.clone();
            let mut chunks = snapshot::ChunkWriter::new(&new_path);
            loop {
                let txn = b.begin(false)?;
                let more = chunks.write(&txn, job.point, &mut image, 1)?;
                txn.commit().map_err(|e| b.err(e))?;
                if !more {
                    break;
                }
            }
            let header = snapshot::header(&chunks.finish(), job.foreign_keys, point_time, job.expect);
            b.written += header.stored_bytes;
            let txn = b.begin(false)?;
            {
                let bytes = header.to_bytes().map_err(|what| Error::Encode { path: self.path.clone(), what })?;
                let mut snaps = txn.open_table(SNAPSHOTS).map_err(|e| b.err(e))?;
                snaps.insert(job.point, bytes.as_slice()).map_err(|e| b.err(e))?;
            }
            txn.commit().map_err(|e| b.err(e))?;

            tracing::debug!("rewrite: the records from version {}", data_version(floor));
            // The records, from a new view, then from newer ones while the
            // writer goes on.
            let view = old.begin_read().map_err(|e| self.err(e))?;
            let now = load_state(&self.path, &view, false)?;
            match record_hash(&self.path, &view, job.point)? {
                Some((hash, _)) if hash == job.expect && now.head > job.point => {}
                _ => return Err(raced()),
            }
            b.copy_records(&view, &now)?;
            drop(view);
            for _ in 0..CATCH_UP_ROUNDS {
                let view = old.begin_read().map_err(|e| self.err(e))?;
                let now = load_state(&self.path, &view, false)?;
                if now.head <= b.copied + SWITCH_AT {
                    break;
                }
                b.catch_up(&view, &now, false)?;
            }

            tracing::debug!("rewrite: tightening");
            // Tight, with a reserve inside.
            b.tighten()?;

            // The bytes in use (redb walks every tree for them, so before
            // the last catch-up, which adds a few pages at most).
            let txn = b.db.begin_write().map_err(|e| b.err(e))?;
            let stats = txn.stats().map_err(|e| b.err(e))?;
            txn.abort().map_err(|e| b.err(e))?;
            // One more catch-up without the lock, just before it, made
            // durable here, so the switch-over has little to write and
            // little to sync.
            {
                let view = old.begin_read().map_err(|e| self.err(e))?;
                let now = load_state(&self.path, &view, false)?;
                b.catch_up(&view, &now, true)?;
            }
            // The bytes of the records after the new snapshot that no
            // later catch-up copies again (see `Build::catch_up`), counted
            // here rather than under the lock: by then they are the records
            // of the whole compaction's writes.
            let settled_below = b.copied.saturating_sub(2).max(job.point + 1);
            let view = b.db.begin_read().map_err(|e| b.err(e))?;
            let settled = record_bytes(&b.path, &view, job.point + 1, settled_below - 1)?;
            Ok((stats.allocated_pages() * stats.page_size() as u64, settled_below, settled))
        })?;
        let (bytes_in_use, settled_below, settled_bytes) = counted;

        // The owner, group and mode of the file it replaces.
        tmp.settle(NewOwner::Process)?;

        tracing::debug!("rewrite: switching over");
        // The switch-over: nothing is written to the old file meanwhile.
        let mut state = self.lock();
        // A write that failed in storage meanwhile closed the store (see
        // `Store::failed`): what the old file shows may not be on disk, and
        // nothing of it is published.
        if !self.writes_to(&old) {
            return Err(self.writer().err().unwrap_or_else(raced));
        }
        let view = old.begin_read().map_err(|e| self.err(e))?;
        match record_hash(&self.path, &view, job.point)? {
            Some((hash, _)) if hash == job.expect && state.head > job.point => {}
            _ => return Err(raced()),
        }
        let st_now = state.clone();
        b.catch_up(&view, &st_now, false)?;
        let changes_after = st_now.head - floor + u64::from(b.floor_record);
        let record = CompactionRecord {
            time_ms: now_ms(),
            snapshot_seq: job.point,
            changes_before,
            changes_after,
            duration_ms: job.started.elapsed().as_millis() as u64,
        };
        let mut meta = state.meta.clone();
        meta.last_compaction = Some(record.clone());
        let txn = b.begin(true)?;
        {
            // A snapshot the writer dropped meanwhile (see `plan_change`) is
            // not kept either.
            let mut snaps = txn.open_table(SNAPSHOTS).map_err(|e| b.err(e))?;
            for (seq, header) in &kept {
                if header.is_some() && !st_now.snapshots.iter().any(|(s, _)| s == seq) {
                    snaps.remove(*seq).map_err(|e| b.err(e))?;
                }
            }
            let bytes = meta.to_bytes().map_err(|what| Error::Encode { path: self.path.clone(), what })?;
            let mut t = txn.open_table(META).map_err(|e| b.err(e))?;
            t.insert(KEY_META, bytes.as_slice()).map_err(|e| b.err(e))?;
        }
        txn.commit().map_err(|e| b.err(e))?;
        drop(view);
        let mut next = {
            let view = b.db.begin_read().map_err(|e| b.err(e))?;
            let mut next = load_state(&self.path, &view, false)?;
            next.bytes_since_snapshot = settled_bytes + record_bytes(&b.path, &view, settled_below, next.head)?;
            next
        };
        if next.head != st_now.head || next.tip != st_now.tip {
            return Err(Error::corrupt(
                &b.path,
                format!(
                    "the rewritten store reaches version {}, not {} as the store does",
                    data_version(next.head),
                    data_version(st_now.head)
                ),
            ));
        }
        let new_inode = std::fs::metadata(&b.path).map_err(|e| Error::io(&b.path, e))?.ino();
        // A handle on the old file, to give its space back in steps once it
        // is replaced and closed (see `release`).
        let old_file = OpenOptions::new().write(true).open(&real).ok();
        let placed = tmp.place(Replace::Existing);
        let renamed = std::fs::metadata(&real).map(|m| m.ino() == new_inode).unwrap_or(false);
        if !renamed {
            // Still the old file at the path: nothing changed.
            return Err(placed.err().unwrap_or_else(|| Error::io(&real, std::io::Error::other("the rename failed"))));
        }
        let Build { db, .. } = b;
        let replaced = match placed {
            Ok(_) => {
                std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), Db::Write(Arc::new(db)))
            }
            Err(e) => {
                // Renamed, but the directory was not synced: after a power
                // cut the path may show the old file, without what is
                // written from now on. Decision: no more writes are
                // accepted (each is refused, so lightningd stops without
                // committing) until the store is opened again.
                let cause: Arc<str> =
                    Arc::from(format!("the directory was not synced after a compaction's rename: {e}"));
                let closed =
                    std::mem::replace(&mut *self.db.write().unwrap_or_else(|p| p.into_inner()), Db::Failed(cause));
                drop(state);
                drop(closed);
                return Err(e);
            }
        };
        next.generation = st_now.generation.wrapping_add(1);
        *state = next;
        drop(state);
        // The old file, no longer at the path, is closed outside the lock.
        tracing::debug!("rewrite: in place; giving the old file's space back");
        drop(old);
        release(replaced, old_file);
        Ok(Rewritten { record, kept: kept.iter().map(|(s, _)| *s).collect(), dropped, bytes_in_use })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn header(created_ms: u64) -> SnapshotHeader {
        SnapshotHeader {
            size: 1,
            chunks: 1,
            stored_bytes: 1,
            content_hash: [0; 32],
            anchor: [0; 32],
            foreign_keys: true,
            created_ms,
            version_time_ms: created_ms,
        }
    }

    /// The bytes since the snapshot that the switch-over sets (counted
    /// partly before the lock, the rest under it) are what a reopen counts,
    /// with many writes made during the compaction, the last of them a
    /// repeated version that grows the head's record.
    #[test]
    fn bytes_since_the_new_snapshot_count_the_writes_made_during_the_compaction() {
        use crate::version::bump_statement;
        use std::sync::atomic::{AtomicU32, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Arc::new(Store::create(&path).unwrap());
        let change = |v: u32| vec![format!("INSERT INTO t VALUES ({v}, randomblob({}))", v % 97), bump_statement(v)];
        store
            .add_change(
                1,
                &[
                    "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
                    "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
                    "CREATE TABLE t (v INTEGER, x BLOB)".to_string(),
                    bump_statement(1),
                ],
            )
            .unwrap();
        for v in 2..=1200 {
            store.add_change(v, &change(v)).unwrap();
        }
        let next = Arc::new(AtomicU32::new(1201));
        let (writer, at) = (Arc::clone(&store), Arc::clone(&next));
        let opts = crate::compact::Options {
            progress: Some(Arc::new(move |_| {
                for _ in 0..40 {
                    let v = at.fetch_add(1, Ordering::SeqCst);
                    writer.add_change(v, &change(v)).unwrap();
                }
            })),
            ..Default::default()
        };
        let stats = crate::compact::compact(&store, &opts).unwrap();
        let written = next.load(Ordering::SeqCst) - 1201;
        assert!(written >= 160, "only {written} writes during the compaction");
        store.add_change(1200 + written, &["PRAGMA foreign_keys = OFF;"]).unwrap();
        let kept = store.status().unwrap();
        assert_eq!(kept.snapshots.last().map(|s| s.version), stats.snapshot_version);
        assert_eq!(kept.changes_since_snapshot, u64::from(written) + 1);
        drop(opts);
        drop(store);
        let reopened = Store::open(&path).unwrap().status().unwrap();
        assert_eq!(kept.bytes_since_snapshot, reopened.bytes_since_snapshot);
        assert!(kept.bytes_since_snapshot > u64::from(written) * 40);
    }

    #[test]
    fn retention_keeps_the_newest_and_drops_by_count_then_age() {
        let snaps: Vec<_> = [(10, 1_000), (20, 2_000), (30, 3_000)].iter().map(|&(s, t)| (s, header(t))).collect();
        let seqs = |k: &[(Seq, Option<SnapshotHeader>)]| k.iter().map(|(s, _)| *s).collect::<Vec<_>>();
        let (k, d) = choose(&snaps, 40, 3, None, 5_000);
        assert_eq!((seqs(&k), d), (vec![20, 30, 40], 1));
        let (k, d) = choose(&snaps, 40, 1, None, 5_000);
        assert_eq!((seqs(&k), d), (vec![40], 3));
        let (k, d) = choose(&snaps, 40, 10, None, 5_000);
        assert_eq!((seqs(&k), d), (vec![10, 20, 30, 40], 0));
        // Stored at 2 000 with an age limit of 3 000 at 5 000: just inside.
        let (k, d) = choose(&snaps, 40, 10, Some(3_000), 5_000);
        assert_eq!((seqs(&k), d), (vec![20, 30, 40], 1));
        let (k, d) = choose(&snaps, 40, 10, Some(0), 5_000);
        assert_eq!((seqs(&k), d), (vec![40], 3));
    }
}
