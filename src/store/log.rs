//! The change log's layout in redb: the tail, one B-tree leaf that every
//! write touches; the recent records moved out of it; and sealed segments
//! that hold older records packed together.
//!
//! Owns where a record lives: finding one ([`record_at`], [`first_seq`]),
//! walking them in order across the three ([`Records`]), moving records out
//! of the tail before it outgrows its leaf ([`make_room`]), sealing recent
//! records into segments, and dropping records below a snapshot
//! ([`prune_through`]). It must not interpret records: they move as the
//! bytes they were written as, hash chain included.
//!
//! Decision: a plain write rewrites the tail's one leaf and nothing else of
//! ours. The tail (`changes`) holds the newest records within
//! [`TAIL_LEAF_BYTES`], one redb leaf, so the table has no branch page to
//! rewrite; before a record would overflow the leaf, every tail record but
//! the newest moves, in the same transaction, to `recent_changes` (one commit
//! in a few also rewrites a leaf and a branch there). Once `recent_changes`
//! holds [`SEAL_AT`] records, they are sealed into segments of consecutive
//! records packed to just under 64 KiB (one redb value, its pages filled
//! instead of the room small values split across leaves leave), keyed by
//! their last version: one commit in about 280 also writes segments, which
//! keeps sealing out of the 99th percentile of write latency. A bulk load,
//! synced only at its end, lets the tail grow to [`BULK_TAIL`] records
//! between moves and fits it back into its leaf when it finishes. Stores of
//! format 1 have no `recent_changes` and a tail of up to 1200 records: they
//! read the same, and their first write moves the tail's older records out.
//!
//! Invariants: every sealed record is older than every recent record, which
//! is older than every tail record; the head's record is always in the tail
//! (so an append to it never reaches another table), and so is the record
//! before it unless the head holds repeated-version reports (so after a
//! rewind the new head's record is in the tail too); a segment holds
//! consecutive records and is keyed by the version of its last one.

use super::tables::{CHANGES, RECENT, SEALED};
use crate::error::Error;
use crate::version::Seq;
use redb::{ReadableTable, ReadableTableMetadata, WriteTransaction};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::Path;

/// Bytes of records packed into one sealed segment at most (a record larger
/// than this is sealed alone): with the segment's own framing it stays within
/// one 64 KiB page.
const SEGMENT_BYTES: usize = 63 * 1024;
/// Number of recent records at which they are sealed, as many segments as
/// they fill.
const SEAL_AT: u64 = 300;
/// Bytes of the tail's records, each counted with [`ENTRY_BYTES`], that fit
/// in one 4 KiB redb leaf with its header.
const TAIL_LEAF_BYTES: usize = 4096 - 64;
/// What a redb leaf spends on an entry besides its value (the u64 key and
/// the value's end offset), rounded up.
const ENTRY_BYTES: usize = 16;
/// Records the tail holds during a bulk load before they move out (see
/// [`make_room_bulk`]).
const BULK_TAIL: u64 = 256;
/// Records older than the head are moved out of the tail when a new one would
/// not fit; the newest this many stay, so after the new one is in, the head
/// and the record before it are in the tail.
const TAIL_KEEP: u64 = 1;

#[derive(Serialize, Deserialize)]
enum SegmentEnvelope {
    V1 { first: Seq, records: Vec<Vec<u8>> },
}

/// A sealed segment, decoded.
#[derive(Debug)]
pub(super) struct Segment {
    pub first: Seq,
    pub records: Vec<Vec<u8>>,
}

impl Segment {
    pub fn from_bytes(bytes: &[u8]) -> Result<Segment, String> {
        match postcard::from_bytes::<SegmentEnvelope>(bytes) {
            Ok(SegmentEnvelope::V1 { first, records }) if !records.is_empty() => Ok(Segment { first, records }),
            Ok(_) => Err("sealed segment is empty".into()),
            Err(e) => Err(format!("sealed segment does not decode: {e}")),
        }
    }

    pub(super) fn to_bytes(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(&SegmentEnvelope::V1 { first: self.first, records: self.records.clone() })
            .map_err(|e| format!("sealed segment does not encode: {e}"))
    }

    pub fn last(&self) -> Seq {
        self.first + self.records.len() as u64 - 1
    }

    /// The record at `seq`, if this segment holds it.
    pub fn get(&self, seq: Seq) -> Option<&[u8]> {
        let i = seq.checked_sub(self.first)?;
        self.records.get(usize::try_from(i).ok()?).map(Vec::as_slice)
    }
}

/// Where a lookup failed.
#[derive(Debug)]
pub(super) enum LookupError {
    Storage(redb::Error),
    Corrupt(String),
    /// A segment that could not be serialised (never stored as empty bytes).
    Encode(String),
}

impl LookupError {
    /// The store's error for this failure in the store at `path`.
    pub fn at(self, path: &Path) -> Error {
        match self {
            LookupError::Storage(e) => Error::redb(path, e),
            LookupError::Corrupt(what) => Error::corrupt(path, what),
            LookupError::Encode(what) => Error::Encode { path: path.to_path_buf(), what },
        }
    }
}

impl From<redb::StorageError> for LookupError {
    fn from(e: redb::StorageError) -> Self {
        LookupError::Storage(e.into())
    }
}

impl From<redb::TableError> for LookupError {
    fn from(e: redb::TableError) -> Self {
        LookupError::Storage(e.into())
    }
}

/// Open `recent_changes` in a read view: a store of format 1 has none,
/// which reads as empty.
pub(super) fn open_recent(
    txn: &redb::ReadTransaction,
) -> Result<Option<redb::ReadOnlyTable<u64, &'static [u8]>>, LookupError> {
    match txn.open_table(RECENT) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The bytes of the record at `seq`, from the tail, the recent records or a segment.
pub(super) fn record_at<T: ReadableTable<u64, &'static [u8]>>(
    tail: &T,
    recent: Option<&T>,
    sealed: &T,
    seq: Seq,
) -> Result<Option<Vec<u8>>, LookupError> {
    if let Some(v) = tail.get(seq)? {
        return Ok(Some(v.value().to_vec()));
    }
    if let Some(recent) = recent {
        if let Some(v) = recent.get(seq)? {
            return Ok(Some(v.value().to_vec()));
        }
    }
    let Some(entry) = sealed.range(seq..)?.next() else {
        return Ok(None);
    };
    let (_, v) = entry?;
    let segment = Segment::from_bytes(v.value()).map_err(LookupError::Corrupt)?;
    Ok(segment.get(seq).map(<[u8]>::to_vec))
}

/// The first record's version, if the log holds any.
pub(super) fn first_seq<T: ReadableTable<u64, &'static [u8]>>(
    tail: &T,
    recent: Option<&T>,
    sealed: &T,
) -> Result<Option<Seq>, LookupError> {
    if let Some((_, v)) = sealed.first()? {
        return Ok(Some(Segment::from_bytes(v.value()).map_err(LookupError::Corrupt)?.first));
    }
    if let Some(recent) = recent {
        if let Some((k, _)) = recent.first()? {
            return Ok(Some(k.value()));
        }
    }
    Ok(tail.first()?.map(|(k, _)| k.value()))
}

/// Within `txn`, before a record of `incoming` bytes is put in `tail` (the
/// tail table, open in `txn`): if it would not fit in the tail's leaf, move
/// every tail record but the newest [`TAIL_KEEP`] to the recent records, and
/// seal those once there are [`SEAL_AT`]. Tables other than the tail are
/// opened only then.
pub(super) fn make_room(
    txn: &WriteTransaction,
    tail: &mut redb::Table<'_, u64, &'static [u8]>,
    incoming: usize,
) -> Result<(), LookupError> {
    let (bytes, count) = tail_size(tail)?;
    if bytes + incoming + ENTRY_BYTES <= TAIL_LEAF_BYTES || count <= TAIL_KEEP {
        return Ok(());
    }
    move_out(txn, tail, count, TAIL_KEEP)
}

/// Within `txn`, after a bulk load: bring the tail back within its leaf,
/// keeping the head's record and the one before it.
pub(super) fn fit_tail(
    txn: &WriteTransaction,
    tail: &mut redb::Table<'_, u64, &'static [u8]>,
) -> Result<(), LookupError> {
    let (bytes, count) = tail_size(tail)?;
    if bytes <= TAIL_LEAF_BYTES || count <= TAIL_KEEP + 1 {
        return Ok(());
    }
    move_out(txn, tail, count, TAIL_KEEP + 1)
}

/// The bytes the tail's records take in its leaf (values and per-entry
/// overhead), and how many there are.
fn tail_size(tail: &redb::Table<'_, u64, &'static [u8]>) -> Result<(usize, u64), LookupError> {
    let mut bytes = 0;
    let mut count = 0u64;
    for entry in tail.iter()? {
        let (_, v) = entry?;
        bytes += v.value().len() + ENTRY_BYTES;
        count += 1;
    }
    Ok((bytes, count))
}

/// [`make_room`] for a bulk load, whose batches are not synced one by one:
/// the tail grows to [`BULK_TAIL`] records before they move out (all but
/// the newest) in one go, which spares each change the count of the tail's
/// bytes and most moves. [`fit_tail`] brings the tail back within its leaf
/// when the load finishes.
pub(super) fn make_room_bulk(
    txn: &WriteTransaction,
    tail: &mut redb::Table<'_, u64, &'static [u8]>,
) -> Result<(), LookupError> {
    let count = tail.len()?;
    if count < BULK_TAIL {
        return Ok(());
    }
    move_out(txn, tail, count, TAIL_KEEP)
}

/// Move all but the newest `keep` of the tail's `count` records to the
/// recent records, and seal those if due.
fn move_out(
    txn: &WriteTransaction,
    tail: &mut redb::Table<'_, u64, &'static [u8]>,
    count: u64,
    keep: u64,
) -> Result<(), LookupError> {
    let mut recent = txn.open_table(RECENT)?;
    let mut span = None;
    for entry in tail.range::<u64>(..)?.take(count.saturating_sub(keep) as usize) {
        let (k, v) = entry?;
        recent.insert(k.value(), v.value())?;
        span = Some((span.map_or(k.value(), |(first, _)| first), k.value()));
    }
    if let Some((first, last)) = span {
        tail.retain_in(first..=last, |_, _| false)?;
    }
    seal_if_due(txn, &mut recent)
}

/// Records packed into sealed segments in order, for a store being written
/// whole (a compaction's new file): each segment is inserted once full, and
/// the last, partial one by [`Packer::finish`].
#[derive(Default)]
pub(super) struct Packer {
    first: Option<Seq>,
    records: Vec<Vec<u8>>,
    bytes: usize,
}

impl Packer {
    /// Add the record at `seq`, the next after the last one added.
    pub fn push(&mut self, txn: &WriteTransaction, seq: Seq, bytes: Vec<u8>) -> Result<(), LookupError> {
        if !self.records.is_empty() && self.bytes + bytes.len() > SEGMENT_BYTES {
            self.flush(txn)?;
        }
        self.first.get_or_insert(seq);
        self.bytes += bytes.len();
        self.records.push(bytes);
        Ok(())
    }

    fn flush(&mut self, txn: &WriteTransaction) -> Result<(), LookupError> {
        if let Some(first) = self.first.take() {
            let segment = Segment { first, records: std::mem::take(&mut self.records) };
            let mut sealed = txn.open_table(SEALED)?;
            sealed.insert(segment.last(), segment.to_bytes().map_err(LookupError::Encode)?.as_slice())?;
        }
        self.bytes = 0;
        Ok(())
    }

    /// Seal what is left.
    pub fn finish(mut self, txn: &WriteTransaction) -> Result<(), LookupError> {
        self.flush(txn)
    }
}

/// Within `txn`: seal the recent records into segments if due (see
/// [`seal_if_due`]), for a store being written whole.
pub(super) fn seal_recent(txn: &WriteTransaction) -> Result<(), LookupError> {
    let mut recent = txn.open_table(RECENT)?;
    seal_if_due(txn, &mut recent)
}

/// Within `txn`: seal the recent records into segments once there are
/// [`SEAL_AT`] of them; only full segments, unless there are four times as
/// many (tiny records may not fill a segment for a long time).
fn seal_if_due(txn: &WriteTransaction, recent: &mut redb::Table<'_, u64, &'static [u8]>) -> Result<(), LookupError> {
    let len = recent.len()?;
    if len < SEAL_AT {
        return Ok(());
    }
    let mut sealable = len;
    let force = len >= 4 * SEAL_AT;
    let mut sealed = txn.open_table(SEALED)?;
    while sealable > 0 {
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        let mut first = None;
        let mut full = false;
        for entry in recent.range::<u64>(..)?.take(sealable as usize) {
            let (k, v) = entry?;
            let value = v.value();
            if !records.is_empty() && bytes + value.len() > SEGMENT_BYTES {
                full = true;
                break;
            }
            first.get_or_insert(k.value());
            bytes += value.len();
            records.push(value.to_vec());
        }
        // Only full segments: the rest waits for the next round.
        let (Some(first), true) = (first, full || force) else { break };
        let segment = Segment { first, records };
        let last = segment.last();
        recent.retain_in(first..=last, |_, _| false)?;
        sealed.insert(last, segment.to_bytes().map_err(LookupError::Encode)?.as_slice())?;
        sealable -= segment.records.len() as u64;
    }
    Ok(())
}

/// The stored records from `start` through `upto`, in order, as
/// (version, bytes): the sealed segments reaching `start` first, then the
/// recent records, then the tail. Checks nothing about the records themselves.
pub(super) struct Records {
    sealed: redb::Range<'static, u64, &'static [u8]>,
    /// Records of the current segment not yet yielded.
    segment: VecDeque<(Seq, Vec<u8>)>,
    recent: Option<redb::Range<'static, u64, &'static [u8]>>,
    tail: redb::Range<'static, u64, &'static [u8]>,
    start: Seq,
    upto: Seq,
    /// Set once a record past `upto` was met: nothing after it is wanted.
    done: bool,
}

impl Records {
    pub fn new(
        tail: &redb::ReadOnlyTable<u64, &'static [u8]>,
        recent: Option<&redb::ReadOnlyTable<u64, &'static [u8]>>,
        sealed: &redb::ReadOnlyTable<u64, &'static [u8]>,
        start: Seq,
        upto: Seq,
    ) -> Result<Records, LookupError> {
        Ok(Records {
            sealed: sealed.range(start..)?,
            segment: VecDeque::new(),
            recent: recent.map(|r| r.range(start..=upto)).transpose()?,
            tail: tail.range(start..=upto)?,
            start,
            upto,
            done: false,
        })
    }

    /// The next record, or `None` after the last one wanted.
    pub fn next_record(&mut self) -> Result<Option<(Seq, Vec<u8>)>, LookupError> {
        if self.done {
            return Ok(None);
        }
        loop {
            if let Some((seq, bytes)) = self.segment.pop_front() {
                if seq < self.start {
                    continue;
                }
                if seq > self.upto {
                    self.segment.clear();
                    self.done = true;
                    return Ok(None);
                }
                return Ok(Some((seq, bytes)));
            }
            match self.sealed.next() {
                Some(entry) => {
                    let (_, v) = entry?;
                    let segment = Segment::from_bytes(v.value()).map_err(LookupError::Corrupt)?;
                    let first = segment.first;
                    self.segment = segment.records.into_iter().zip(first..).map(|(r, seq)| (seq, r)).collect();
                }
                None => break,
            }
        }
        if let Some(recent) = &mut self.recent {
            match recent.next() {
                Some(entry) => {
                    let (k, v) = entry?;
                    return Ok(Some((k.value(), v.value().to_vec())));
                }
                None => self.recent = None,
            }
        }
        match self.tail.next() {
            Some(entry) => {
                let (k, v) = entry?;
                Ok(Some((k.value(), v.value().to_vec())))
            }
            None => Ok(None),
        }
    }
}

/// Within `txn`: drop every record at or below `seq`, from the tail, the
/// recent records and segments (a segment reaching past `seq` keeps its
/// later records).
pub(super) fn prune_through(txn: &WriteTransaction, seq: Seq) -> Result<(), LookupError> {
    let mut tail = txn.open_table(CHANGES)?;
    tail.retain_in(..=seq, |_, _| false)?;
    let mut recent = txn.open_table(RECENT)?;
    recent.retain_in(..=seq, |_, _| false)?;
    let mut sealed = txn.open_table(SEALED)?;
    sealed.retain_in(..=seq, |_, _| false)?;
    let straddling = match sealed.range(seq..)?.next() {
        Some(entry) => {
            let (k, v) = entry?;
            Some((k.value(), Segment::from_bytes(v.value()).map_err(LookupError::Corrupt)?))
        }
        None => None,
    };
    if let Some((key, mut segment)) = straddling {
        if segment.first <= seq {
            let drop = (seq - segment.first + 1) as usize;
            segment.records.drain(..drop);
            segment.first = seq + 1;
            sealed.insert(key, segment.to_bytes().map_err(LookupError::Encode)?.as_slice())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use redb::{Database, ReadableDatabase};

    /// An in-memory database with the log's tables, as a new store has them
    /// (`with_recent`) or as format 1 had them.
    fn db_with(with_recent: bool) -> Database {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(CHANGES).unwrap();
        if with_recent {
            txn.open_table(RECENT).unwrap();
        }
        txn.open_table(SEALED).unwrap();
        txn.commit().unwrap();
        db
    }

    fn db() -> Database {
        db_with(true)
    }

    /// A record of `len` bytes that names its version.
    fn record(seq: Seq, len: usize) -> Vec<u8> {
        seq.to_le_bytes().iter().copied().cycle().take(len).collect()
    }

    /// Append records `from..=to` of `len(seq)` bytes, one transaction each,
    /// as the store does.
    fn append(db: &Database, from: Seq, to: Seq, len: impl Fn(Seq) -> usize) {
        for seq in from..=to {
            let txn = db.begin_write().unwrap();
            {
                let mut tail = txn.open_table(CHANGES).unwrap();
                let bytes = record(seq, len(seq));
                make_room(&txn, &mut tail, bytes.len()).unwrap();
                tail.insert(seq, bytes.as_slice()).unwrap();
            }
            txn.commit().unwrap();
        }
    }

    /// A segment as (key, first, last, record count).
    type Span = (Seq, Seq, Seq, usize);

    /// Where the records are: the tail's keys, the recent keys, each segment's span.
    struct Layout {
        tail: Vec<Seq>,
        recent: Vec<Seq>,
        segments: Vec<Span>,
        /// The tail table's leaf and branch pages.
        tail_pages: (u64, u64),
    }

    fn layout(db: &Database) -> Layout {
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(CHANGES).unwrap();
        let keys = |t: &redb::ReadOnlyTable<u64, &[u8]>| -> Vec<Seq> {
            t.range::<u64>(..).unwrap().map(|e| e.unwrap().0.value()).collect()
        };
        let tail = keys(&t);
        let stats = t.stats().unwrap();
        let recent = open_recent(&txn).unwrap().map(|r| keys(&r)).unwrap_or_default();
        let sealed = txn.open_table(SEALED).unwrap();
        let segments = sealed
            .range::<u64>(..)
            .unwrap()
            .map(|e| {
                let (k, v) = e.unwrap();
                let s = Segment::from_bytes(v.value()).unwrap();
                (k.value(), s.first, s.last(), s.records.len())
            })
            .collect();
        Layout { tail, recent, segments, tail_pages: (stats.leaf_pages(), stats.branch_pages()) }
    }

    /// Every record from `start` to `upto`, read in order across the tables.
    fn read_all(db: &Database, start: Seq, upto: Seq) -> Vec<(Seq, Vec<u8>)> {
        let txn = db.begin_read().unwrap();
        let tail = txn.open_table(CHANGES).unwrap();
        let recent = open_recent(&txn).unwrap();
        let sealed = txn.open_table(SEALED).unwrap();
        let mut records = Records::new(&tail, recent.as_ref(), &sealed, start, upto).unwrap();
        let mut out = Vec::new();
        while let Some(r) = records.next_record().unwrap() {
            out.push(r);
        }
        out
    }

    /// Segments, then recent records, then the tail hold `1..=head` in order.
    fn check_order(l: &Layout, head: Seq) {
        let mut next = 1;
        for &(key, f, last, n) in &l.segments {
            assert_eq!(key, last, "a segment is keyed by its last version");
            assert_eq!(f, next, "segments hold consecutive records");
            assert_eq!(last - f + 1, n as u64);
            next = last + 1;
        }
        for &k in l.recent.iter().chain(&l.tail) {
            assert_eq!(k, next, "records are consecutive across the tables");
            next += 1;
        }
        assert_eq!(next, head + 1);
    }

    #[test]
    fn the_tail_stays_within_one_leaf_and_keeps_the_head_and_the_record_before() {
        let db = db();
        let len = |seq: Seq| 100 + (seq as usize * 131) % 1700;
        for head in 1..=120 {
            append(&db, head, head, len);
            let l = layout(&db);
            check_order(&l, head);
            assert_eq!(l.tail_pages, (1, 0), "head {head}: the tail is not one leaf");
            assert_eq!(l.tail.last().copied(), Some(head));
            if head > 1 {
                assert!(l.tail.contains(&(head - 1)), "head {head}: the record before the head left the tail");
            }
            let bytes: usize = l.tail.iter().map(|&s| len(s) + ENTRY_BYTES).sum();
            assert!(bytes <= TAIL_LEAF_BYTES || l.tail.len() as u64 <= TAIL_KEEP + 1, "head {head}");
        }
        assert!(!layout(&db).recent.is_empty(), "nothing moved out of the tail");
    }

    #[test]
    fn recent_records_seal_into_full_segments_at_seal_at() {
        let db = db();
        let len = |_| 1000;
        // Three records of 1000 bytes fill the tail: each move takes two.
        let mut head = 0;
        while layout(&db).recent.len() as u64 + 2 < SEAL_AT {
            head += 1;
            append(&db, head, head, len);
            assert!(layout(&db).segments.is_empty(), "sealed before {SEAL_AT} recent records");
        }
        while layout(&db).segments.is_empty() {
            head += 1;
            append(&db, head, head, len);
        }
        let l = layout(&db);
        check_order(&l, head);
        let per = (SEGMENT_BYTES / 1000) as u64;
        assert!(l.segments.iter().all(|s| s.3 as u64 == per), "only full segments: {:?}", l.segments);
        // What did not fill a segment stays in the recent records.
        assert!((l.recent.len() as u64) < per, "{} recent records left", l.recent.len());
        let txn = db.begin_read().unwrap();
        let sealed = txn.open_table(SEALED).unwrap();
        for e in sealed.range::<u64>(..).unwrap() {
            assert!(e.unwrap().1.value().len() <= 64 * 1024, "a segment is larger than one 64 KiB value");
        }
    }

    #[test]
    fn reads_cross_the_seams_between_segments_recent_records_and_tail() {
        let db = db();
        let len = |seq: Seq| 200 + (seq as usize * 37) % 1500;
        let head = 2 * SEAL_AT;
        append(&db, 1, head, len);
        let l = layout(&db);
        check_order(&l, head);
        assert!(!l.segments.is_empty() && !l.recent.is_empty() && !l.tail.is_empty());
        let all = read_all(&db, 0, head);
        assert_eq!(all.len() as u64, head);
        for (i, (seq, bytes)) in all.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(*bytes, record(*seq, len(*seq)), "version {seq}");
        }
        // A window from inside a segment to inside the tail.
        let start = l.segments[0].2 - 2;
        let upto = l.tail[0];
        let window = read_all(&db, start, upto);
        assert_eq!(window.iter().map(|r| r.0).collect::<Vec<_>>(), (start..=upto).collect::<Vec<_>>());
        // A window that ends inside a segment stops there; one inside the recent records too.
        assert_eq!(read_all(&db, 3, 5).iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 4, 5]);
        let r0 = l.recent[0];
        assert_eq!(read_all(&db, r0, r0 + 1).iter().map(|r| r.0).collect::<Vec<_>>(), vec![r0, r0 + 1]);
        // Single records on both sides of each seam.
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(CHANGES).unwrap();
        let r = open_recent(&txn).unwrap();
        let s = txn.open_table(SEALED).unwrap();
        let last_sealed = l.segments.last().unwrap().2;
        for seq in [1, l.segments[0].2, l.segments[0].2 + 1, last_sealed, r0, l.tail[0] - 1, l.tail[0], head] {
            assert_eq!(record_at(&t, r.as_ref(), &s, seq).unwrap(), Some(record(seq, len(seq))), "version {seq}");
        }
        assert_eq!(record_at(&t, r.as_ref(), &s, head + 1).unwrap(), None);
        assert_eq!(first_seq(&t, r.as_ref(), &s).unwrap(), Some(1));
    }

    #[test]
    fn a_record_larger_than_a_segment_is_sealed_alone() {
        let db = db();
        let big = 10;
        let len = move |seq: Seq| if seq == big { SEGMENT_BYTES + 100 } else { 3000 };
        append(&db, 1, SEAL_AT + 10, len);
        let l = layout(&db);
        check_order(&l, SEAL_AT + 10);
        let alone = l.segments.iter().find(|s| s.1 == big).expect("the big record is sealed");
        assert_eq!((alone.2, alone.3), (big, 1), "{:?}", l.segments);
        assert_eq!(l.segments[0].2, big - 1, "the records before it close their own segment");
        let all = read_all(&db, 0, SEAL_AT + 10);
        assert_eq!(all[big as usize - 1].1.len(), SEGMENT_BYTES + 100);
    }

    #[test]
    fn tiny_records_are_sealed_anyway_at_four_times_seal_at() {
        let db = db();
        let mut head = 0;
        while layout(&db).segments.is_empty() {
            head += 100;
            append(&db, head - 99, head, |_| 10);
            assert!(head < 6 * SEAL_AT, "tiny records were never sealed");
        }
        let l = layout(&db);
        check_order(&l, head);
        assert!(l.recent.len() as u64 + l.tail.len() as u64 >= 2);
        assert!(head >= 4 * SEAL_AT, "sealed at {head}: segments of tiny records are not full");
        assert_eq!(l.tail_pages, (1, 0));
    }

    #[test]
    fn a_format_1_tail_reads_and_moves_out_on_the_first_write() {
        let db = db_with(false);
        let len = |_| 500;
        let txn = db.begin_write().unwrap();
        {
            let mut tail = txn.open_table(CHANGES).unwrap();
            for seq in 1..=250 {
                tail.insert(seq, record(seq, 500).as_slice()).unwrap();
            }
        }
        txn.commit().unwrap();
        assert_eq!(read_all(&db, 0, 250).len(), 250);
        append(&db, 251, 251, len);
        let l = layout(&db);
        check_order(&l, 251);
        assert_eq!(l.tail, vec![250, 251]);
        assert_eq!(l.tail_pages, (1, 0));
        let all = read_all(&db, 0, 251);
        assert!(all.iter().all(|(seq, bytes)| *bytes == record(*seq, 500)));
    }

    #[test]
    fn a_bulk_load_moves_records_in_runs_and_ends_with_a_one_leaf_tail() {
        let db = db();
        let head = 3 * BULK_TAIL + 7;
        let txn = db.begin_write().unwrap();
        {
            let mut tail = txn.open_table(CHANGES).unwrap();
            for seq in 1..=head {
                make_room_bulk(&txn, &mut tail).unwrap();
                tail.insert(seq, record(seq, 700).as_slice()).unwrap();
                assert!(tail.len().unwrap() <= BULK_TAIL, "version {seq}");
            }
        }
        txn.commit().unwrap();
        let l = layout(&db);
        check_order(&l, head);
        assert!(l.tail.len() > 5, "the bulk tail moved out record by record");
        // What the end of a bulk load does.
        let txn = db.begin_write().unwrap();
        {
            let mut tail = txn.open_table(CHANGES).unwrap();
            fit_tail(&txn, &mut tail).unwrap();
        }
        txn.commit().unwrap();
        let l = layout(&db);
        check_order(&l, head);
        assert_eq!(l.tail_pages, (1, 0));
        assert!(l.tail.contains(&head) && l.tail.contains(&(head - 1)), "{:?}", l.tail);
        assert_eq!(read_all(&db, 0, head).len() as u64, head);
    }

    #[test]
    fn pruning_keeps_the_later_records_of_a_straddling_segment() {
        let db = db();
        let head = SEAL_AT + 100;
        append(&db, 1, head, |_| 1000);
        let l = layout(&db);
        let cut = l.segments[1].1 + 5;
        let txn = db.begin_write().unwrap();
        prune_through(&txn, cut).unwrap();
        txn.commit().unwrap();
        let after = layout(&db);
        assert_eq!((after.segments[0].0, after.segments[0].1), (l.segments[1].0, cut + 1));
        let all = read_all(&db, cut, head);
        assert_eq!(all.first().map(|r| r.0), Some(cut + 1));
        assert_eq!(all.len() as u64, head - cut);
        // Pruning into the recent records and the tail.
        let cut = after.recent[3];
        let txn = db.begin_write().unwrap();
        prune_through(&txn, cut).unwrap();
        txn.commit().unwrap();
        let all = read_all(&db, cut, head);
        assert_eq!(all.first().map(|r| r.0), Some(cut + 1));
        assert!(layout(&db).segments.is_empty());
    }
}
