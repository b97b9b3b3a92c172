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
