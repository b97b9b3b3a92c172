//! The change log's layout in redb: a tail table that every write touches,
//! and sealed segments that hold older records packed together.
//!
//! Owns where a record lives: finding one ([`record_at`], [`first_seq`]),
//! walking them in order across segments and the tail ([`Records`]), moving
//! the oldest records from the tail into segments ([`seal_if_due`]) and
//! dropping records below a snapshot ([`prune_through`]). Writes touch only
//! the tail, which holds between [`TAIL_KEEP`] and [`SEAL_AT`] records (up to
//! four times that while its records are too small to fill a segment), so a
//! commit rewrites the same few pages however long the log grows. Sealed
//! records are packed up to just under 64 KiB a value, which redb stores in
//! one run of pages, so they fill their pages instead of leaving the room that
//! small values split across leaves leave. It must not interpret records:
//! they move as the bytes they were written as, hash chain included.
//!
//! Invariants: every sealed record is older than every tail record; the tail
//! keeps at least the last [`TAIL_KEEP`] records, so a write, an append to the
//! head's record and a rewind never reach a segment; a segment holds
//! consecutive records and is keyed by the version of its last one.

use super::tables::SEALED;
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
/// Tail length at which its oldest records are sealed, as many segments as
/// they fill, down to [`TAIL_KEEP`]. Sealing in bulk this rarely (one commit
/// in about 280 also writes segments) keeps it out of the 99th percentile of
/// write latency.
const SEAL_AT: u64 = 300;
/// Records the tail keeps after sealing: at least the last two (the head's
/// record, which a repeated-version report rewrites, and the one a rewind
/// falls back to), with room to spare.
const TAIL_KEEP: u64 = 16;

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

    fn to_bytes(&self) -> Result<Vec<u8>, String> {
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

/// The bytes of the record at `seq`, from the tail or a segment.
pub(super) fn record_at(
    tail: &impl ReadableTable<u64, &'static [u8]>,
    sealed: &impl ReadableTable<u64, &'static [u8]>,
    seq: Seq,
) -> Result<Option<Vec<u8>>, LookupError> {
    if let Some(v) = tail.get(seq)? {
        return Ok(Some(v.value().to_vec()));
    }
    let Some(entry) = sealed.range(seq..)?.next() else {
        return Ok(None);
    };
    let (_, v) = entry?;
    let segment = Segment::from_bytes(v.value()).map_err(LookupError::Corrupt)?;
    Ok(segment.get(seq).map(<[u8]>::to_vec))
}

/// The first record's version, if the log holds any.
pub(super) fn first_seq(
    tail: &impl ReadableTable<u64, &'static [u8]>,
    sealed: &impl ReadableTable<u64, &'static [u8]>,
) -> Result<Option<Seq>, LookupError> {
    if let Some((_, v)) = sealed.first()? {
        return Ok(Some(Segment::from_bytes(v.value()).map_err(LookupError::Corrupt)?.first));
    }
    Ok(tail.first()?.map(|(k, _)| k.value()))
}

/// Within `txn`, after a record was added to `tail` (the tail table, open
/// in `txn`): seal the oldest records into segments once the tail is long
/// enough. The sealed table is opened only then.
pub(super) fn seal_if_due(
    txn: &WriteTransaction,
    tail: &mut redb::Table<'_, u64, &'static [u8]>,
) -> Result<(), LookupError> {
    let len = tail.len()?;
    if len < SEAL_AT {
        return Ok(());
    }
    let mut sealable = len - TAIL_KEEP;
    // Tiny records may not fill a segment for a long time: past this length
    // the tail is sealed anyway, partial segment included.
    let force = len >= 4 * SEAL_AT;
    let mut sealed = txn.open_table(SEALED)?;
    while sealable > 0 {
        let mut records: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        let mut first = None;
        let mut full = false;
        for entry in tail.range::<u64>(..)?.take(sealable as usize) {
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
        // Only full segments: the rest waits in the tail for the next round.
        let (Some(first), true) = (first, full || force) else { break };
        let segment = Segment { first, records };
        let last = segment.last();
        tail.retain_in(first..=last, |_, _| false)?;
        sealed.insert(last, segment.to_bytes().map_err(LookupError::Encode)?.as_slice())?;
        sealable -= segment.records.len() as u64;
    }
    Ok(())
}

/// The stored records from `start` through `upto`, in order, as
/// (version, bytes): the sealed segments reaching `start` first, then the
/// tail. Checks nothing about the records themselves.
pub(super) struct Records {
    sealed: redb::Range<'static, u64, &'static [u8]>,
    /// Records of the current segment not yet yielded.
    segment: VecDeque<(Seq, Vec<u8>)>,
    tail: redb::Range<'static, u64, &'static [u8]>,
    start: Seq,
    upto: Seq,
    /// Set once a record past `upto` was met: nothing after it is wanted.
    done: bool,
}

impl Records {
    pub fn new(
        tail: &redb::ReadOnlyTable<u64, &'static [u8]>,
        sealed: &redb::ReadOnlyTable<u64, &'static [u8]>,
        start: Seq,
        upto: Seq,
    ) -> Result<Records, LookupError> {
        Ok(Records {
            sealed: sealed.range(start..)?,
            segment: VecDeque::new(),
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
        match self.tail.next() {
            Some(entry) => {
                let (k, v) = entry?;
                Ok(Some((k.value(), v.value().to_vec())))
            }
            None => Ok(None),
        }
    }
}

/// Within `txn`: drop every record at or below `seq`, from the tail and from
/// segments (a segment reaching past `seq` keeps its later records).
pub(super) fn prune_through(txn: &WriteTransaction, seq: Seq) -> Result<(), LookupError> {
    let mut tail = txn.open_table(super::tables::CHANGES)?;
    tail.retain_in(..=seq, |_, _| false)?;
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
    use crate::store::tables::CHANGES;
    use redb::{Database, ReadableDatabase};

    /// An in-memory database with the log's two tables, as a new store has them.
    fn db() -> Database {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(CHANGES).unwrap();
        txn.open_table(SEALED).unwrap();
        txn.commit().unwrap();
        db
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
                tail.insert(seq, record(seq, len(seq)).as_slice()).unwrap();
                seal_if_due(&txn, &mut tail).unwrap();
            }
            txn.commit().unwrap();
        }
    }

    /// A segment as (key, first, last, record count).
    type Span = (Seq, Seq, Seq, usize);

    /// The tail's keys and each segment's span.
    fn layout(db: &Database) -> (Vec<Seq>, Vec<Span>) {
        let txn = db.begin_read().unwrap();
        let tail = txn.open_table(CHANGES).unwrap();
        let keys = tail.range::<u64>(..).unwrap().map(|e| e.unwrap().0.value()).collect();
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
        (keys, segments)
    }

    /// Every record from `start` to `upto`, read in order across segments and the tail.
    fn read_all(db: &Database, start: Seq, upto: Seq) -> Vec<(Seq, Vec<u8>)> {
        let txn = db.begin_read().unwrap();
        let tail = txn.open_table(CHANGES).unwrap();
        let sealed = txn.open_table(SEALED).unwrap();
        let mut records = Records::new(&tail, &sealed, start, upto).unwrap();
        let mut out = Vec::new();
        while let Some(r) = records.next_record().unwrap() {
            out.push(r);
        }
        out
    }

    fn check_segments_consecutive(segments: &[Span], first: Seq) {
        let mut next = first;
        for &(key, f, l, n) in segments {
            assert_eq!(key, l, "a segment is keyed by its last version");
            assert_eq!(f, next, "segments hold consecutive records");
            assert_eq!(l - f + 1, n as u64);
            next = l + 1;
        }
    }

    #[test]
    fn the_tail_seals_full_segments_when_it_reaches_seal_at() {
        let db = db();
        let len = |_| 1000;
        append(&db, 1, SEAL_AT - 1, len);
        let (tail, segments) = layout(&db);
        assert!(segments.is_empty(), "sealed before the tail reached {SEAL_AT}");
        assert_eq!(tail.len() as u64, SEAL_AT - 1);

        append(&db, SEAL_AT, SEAL_AT, len);
        let (tail, segments) = layout(&db);
        let per = (SEGMENT_BYTES / 1000) as u64;
        let full = (SEAL_AT - TAIL_KEEP) / per;
        assert_eq!(segments.len() as u64, full, "{segments:?}");
        check_segments_consecutive(&segments, 1);
        assert!(segments.iter().all(|s| s.3 as u64 == per), "only full segments: {segments:?}");
        // What did not fill a segment stays in the tail, after every sealed record.
        assert_eq!(tail.first().copied(), Some(full * per + 1));
        assert_eq!(tail.last().copied(), Some(SEAL_AT));
        assert!(tail.len() as u64 >= TAIL_KEEP);
        // Each segment stays within one 64 KiB value.
        let txn = db.begin_read().unwrap();
        let sealed = txn.open_table(SEALED).unwrap();
        for e in sealed.range::<u64>(..).unwrap() {
            assert!(e.unwrap().1.value().len() <= 64 * 1024);
        }
    }

    #[test]
    fn reads_cross_the_seam_between_segments_and_tail() {
        let db = db();
        let len = |seq: Seq| 200 + (seq as usize * 37) % 1500;
        append(&db, 1, SEAL_AT + 50, len);
        let (tail, segments) = layout(&db);
        assert!(!segments.is_empty() && !tail.is_empty());
        let all = read_all(&db, 0, SEAL_AT + 50);
        assert_eq!(all.len() as u64, SEAL_AT + 50);
        for (i, (seq, bytes)) in all.iter().enumerate() {
            assert_eq!(*seq, i as u64 + 1);
            assert_eq!(*bytes, record(*seq, len(*seq)), "version {seq}");
        }
        // A window starting inside a segment and ending inside the tail.
        let first_segment_last = segments[0].2;
        let start = first_segment_last - 2;
        let upto = tail[1];
        let window = read_all(&db, start, upto);
        assert_eq!(window.first().map(|r| r.0), Some(start));
        assert_eq!(window.last().map(|r| r.0), Some(upto));
        assert_eq!(window.len() as u64, upto - start + 1);
        // A window that ends inside a segment stops there.
        let inside = read_all(&db, 3, 5);
        assert_eq!(inside.iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 4, 5]);
        // Lookups of single records on both sides of the seam.
        let txn = db.begin_read().unwrap();
        let t = txn.open_table(CHANGES).unwrap();
        let s = txn.open_table(SEALED).unwrap();
        for seq in [1, first_segment_last, first_segment_last + 1, tail[0] - 1, tail[0], SEAL_AT + 50] {
            assert_eq!(record_at(&t, &s, seq).unwrap(), Some(record(seq, len(seq))), "version {seq}");
        }
        assert_eq!(record_at(&t, &s, SEAL_AT + 51).unwrap(), None);
        assert_eq!(first_seq(&t, &s).unwrap(), Some(1));
    }

    #[test]
    fn a_record_larger_than_a_segment_is_sealed_alone() {
        let db = db();
        let big = 10;
        let len = move |seq: Seq| if seq == big { SEGMENT_BYTES + 100 } else { 3000 };
        append(&db, 1, SEAL_AT, len);
        let (_, segments) = layout(&db);
        check_segments_consecutive(&segments, 1);
        let alone = segments.iter().find(|s| s.1 == big).expect("the big record is sealed");
        assert_eq!((alone.2, alone.3), (big, 1), "{segments:?}");
        assert_eq!(segments[0].2, big - 1, "the records before it close their own segment");
        let all = read_all(&db, 0, SEAL_AT);
        assert_eq!(all[big as usize - 1].1.len(), SEGMENT_BYTES + 100);
    }

    #[test]
    fn the_last_records_never_reach_a_segment() {
        // Tiny records never fill a segment: at four times SEAL_AT the tail
        // is sealed anyway, down to TAIL_KEEP.
        let db = db();
        for head in [SEAL_AT, 2 * SEAL_AT, 4 * SEAL_AT - 1, 4 * SEAL_AT, 5 * SEAL_AT + 3] {
            let (tail, _) = layout(&db);
            let from = tail.last().map(|l| l + 1).unwrap_or(1);
            append(&db, from, head, |_| 10);
            let (tail, segments) = layout(&db);
            check_segments_consecutive(&segments, 1);
            assert!(tail.len() as u64 >= TAIL_KEEP, "head {head}: tail of {}", tail.len());
            assert_eq!(tail.last().copied(), Some(head));
            // The head's record and the one a rewind falls back to are in the tail.
            assert!(tail.contains(&head) && tail.contains(&(head - 1)));
            if head >= 4 * SEAL_AT {
                assert!(!segments.is_empty(), "head {head}: the forced seal did not run");
            }
        }
        let (tail, segments) = layout(&db);
        assert!(segments.iter().all(|s| s.2 < tail[0]), "a sealed record is newer than a tail record");
    }

    #[test]
    fn pruning_keeps_the_later_records_of_a_straddling_segment() {
        let db = db();
        let len = |_| 1000;
        append(&db, 1, SEAL_AT, len);
        let (_, segments) = layout(&db);
        let cut = segments[1].1 + 5;
        let txn = db.begin_write().unwrap();
        prune_through(&txn, cut).unwrap();
        txn.commit().unwrap();
        let (_, after) = layout(&db);
        assert_eq!(after[0].1, cut + 1);
        assert_eq!(after[0].0, segments[1].0);
        let all = read_all(&db, cut, SEAL_AT);
        assert_eq!(all.first().map(|r| r.0), Some(cut + 1));
        assert_eq!(all.len() as u64, SEAL_AT - cut);
    }
}
