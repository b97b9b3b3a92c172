//! The names and contents of the objects under a prefix: manifests,
//! segments, snapshots and the lease, and which segments' changes count.
//!
//! Owns the name grammar (parsed back from listings, anything else under
//! the prefix ignored), the manifest and lease records, the segment codec
//! (postcard inside zstd), and the epoch rule. It must not do I/O.

use crate::record::Transaction;
use crate::version::Seq;
use crate::Change;
use serde::{Deserialize, Serialize};

/// The folder of manifests.
pub(super) const MANIFESTS: &str = "manifests";
/// The folder of segments.
pub(super) const SEGMENTS: &str = "segments";
/// The folder of snapshots.
pub(super) const SNAPSHOTS: &str = "snapshots";
/// The lease object.
pub(super) const LEASE: &str = "lease";

/// A store id (the owner) as 32 hexadecimal characters.
pub(super) fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex_u64(s: &str, width: usize) -> Option<u64> {
    (s.len() == width && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| u64::from_str_radix(s, 16).ok())?
}

fn is_owner(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `manifests/<number>-<owner>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ManifestName {
    pub number: u64,
    pub owner: String,
}

impl ManifestName {
    pub fn name(&self) -> String {
        format!("{MANIFESTS}/{:016x}-{}", self.number, self.owner)
    }

    pub fn parse(name: &str) -> Option<ManifestName> {
        let rest = name.strip_prefix(MANIFESTS)?.strip_prefix('/')?;
        let (n, owner) = rest.split_once('-')?;
        is_owner(owner).then_some(ManifestName { number: parse_hex_u64(n, 16)?, owner: owner.into() })
    }
}

/// `segments/<epoch>-<n>-<first>-<last>-<owner>`: listing order is the
/// order of writing (epoch, then the segment's number within it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct SegmentName {
    pub epoch: u64,
    pub n: u64,
    pub first: Seq,
    pub last: Seq,
    pub owner: String,
}

impl SegmentName {
    pub fn name(&self) -> String {
        format!("{SEGMENTS}/{:016x}-{:08x}-{:016x}-{:016x}-{}", self.epoch, self.n, self.first, self.last, self.owner)
    }

    pub fn parse(name: &str) -> Option<SegmentName> {
        let rest = name.strip_prefix(SEGMENTS)?.strip_prefix('/')?;
        let mut it = rest.split('-');
        let epoch = parse_hex_u64(it.next()?, 16)?;
        let n = parse_hex_u64(it.next()?, 8)?;
        let first = parse_hex_u64(it.next()?, 16)?;
        let last = parse_hex_u64(it.next()?, 16)?;
        let owner = it.next()?;
        if it.next().is_some() || !is_owner(owner) || first > last {
            return None;
        }
        Some(SegmentName { epoch, n, first, last, owner: owner.into() })
    }
}

/// `snapshots/<seq>-<epoch>-<owner>`.
pub(super) fn snapshot_name(seq: Seq, epoch: u64, owner: &str) -> String {
    format!("{SNAPSHOTS}/{seq:016x}-{epoch:016x}-{owner}")
}

/// Whether `name` is a snapshot's name.
pub(super) fn is_snapshot_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix(SNAPSHOTS).and_then(|r| r.strip_prefix('/')) else { return false };
    let parts: Vec<&str> = rest.split('-').collect();
    matches!(parts.as_slice(), [s, e, o] if parse_hex_u64(s, 16).is_some() && parse_hex_u64(e, 16).is_some() && is_owner(o))
}

/// The base snapshot a manifest names.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct SnapshotRef {
    /// Its object name.
    pub name: String,
    /// The store version it holds.
    pub seq: Seq,
    /// Bytes of the SQLite image.
    pub size: u64,
    /// Bytes of the sealed object.
    pub stored_bytes: u64,
    /// When it was taken.
    pub created_ms: u64,
    /// Whether replay after it starts with foreign keys on.
    pub foreign_keys: bool,
    /// The first segment written after it (epoch, number): a segment from
    /// there on may hold repeated-version reports at the snapshot's version;
    /// one before it holds changes the snapshot already has.
    pub after: (u64, u64),
}

/// Where an epoch starts: its changes, and those of every later epoch,
/// replace any change at or after `start` of an earlier epoch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct EpochStart {
    pub epoch: u64,
    pub start: Seq,
}

/// A manifest: the state of the copy as the writer published it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Manifest {
    /// The layout's format (1).
    pub format: u32,
    pub number: u64,
    /// The writer's store id.
    pub owner: String,
    pub host: String,
    pub time_ms: u64,
    pub snapshot: Option<SnapshotRef>,
    /// Every epoch whose changes may count, in increasing order.
    pub epochs: Vec<EpochStart>,
    /// The head as of publication.
    pub head: Seq,
    /// The head a rewind left, while no new change followed it.
    pub rewound_at: Option<Seq>,
}

/// The layout format manifests record.
pub(super) const LAYOUT_FORMAT: u32 = 1;

impl Manifest {
    /// The snapshot's version, or 0 when the log starts from nothing.
    pub fn base(&self) -> Seq {
        self.snapshot.as_ref().map(|s| s.seq).unwrap_or(0)
    }

    /// Changes of `epoch` count below this version (the start of the
    /// first later epoch); `None` when the epoch is not listed.
    pub fn cutoff(&self, epoch: u64) -> Option<Seq> {
        self.epochs
            .iter()
            .any(|e| e.epoch == epoch)
            .then(|| self.epochs.iter().filter(|e| e.epoch > epoch).map(|e| e.start).min().unwrap_or(Seq::MAX))
    }

    /// Drop the epochs none of whose changes can count after the base.
    pub fn prune_epochs(&mut self) {
        let base = self.base();
        let keep: Vec<EpochStart> =
            self.epochs.iter().filter(|e| self.cutoff(e.epoch).is_some_and(|c| c > base)).copied().collect();
        self.epochs = keep;
    }
}

/// The writer's lease.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct Lease {
    /// The holder's store id.
    pub owner: String,
    pub host: String,
    pub since_ms: u64,
    /// Random, per writer start: which writer of that owner holds it.
    pub token: String,
}

/// One transaction in a segment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct SegPart {
    pub time_ms: u64,
    pub statements: Vec<String>,
}

/// One change (or repeated-version reports of it) in a segment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub(super) struct SegChange {
    pub seq: Seq,
    pub parts: Vec<SegPart>,
}

#[derive(Serialize, Deserialize)]
enum SegmentEnvelope {
    V1 { changes: Vec<SegChange> },
}

/// The largest decompressed segment read.
const MAX_SEGMENT_PLAIN: u64 = 256 * 1024 * 1024;

/// A segment's bytes before sealing.
pub(super) fn encode_segment(changes: Vec<SegChange>) -> Result<Vec<u8>, String> {
    let env = SegmentEnvelope::V1 { changes };
    let raw = postcard::to_stdvec(&env).map_err(|e| format!("a segment does not encode: {e}"))?;
    zstd::bulk::compress(&raw, 3).map_err(|e| format!("a segment does not compress: {e}"))
}

/// A segment's changes from its opened bytes.
pub(super) fn decode_segment(bytes: &[u8]) -> Result<Vec<SegChange>, String> {
    use std::io::Read;
    let mut raw = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(bytes).map_err(|e| format!("does not decompress: {e}"))?;
    decoder.take(MAX_SEGMENT_PLAIN + 1).read_to_end(&mut raw).map_err(|e| format!("does not decompress: {e}"))?;
    if raw.len() as u64 > MAX_SEGMENT_PLAIN {
        return Err(format!("decompresses to more than {MAX_SEGMENT_PLAIN} bytes"));
    }
    match postcard::from_bytes::<SegmentEnvelope>(&raw) {
        Ok(SegmentEnvelope::V1 { changes }) => Ok(changes),
        Err(e) => Err(format!("does not decode: {e}")),
    }
}

/// Merges the changes of consecutive segments into [`Change`]s, checking
/// that versions follow one another: a repeat of the last version appends
/// to it, the next version starts a new change, anything else is a gap.
#[derive(Debug, Default)]
pub(super) struct Merger {
    pending: Option<Change>,
}

impl Merger {
    /// Add one change read from a segment; returns the change it completes.
    pub fn push(&mut self, c: SegChange) -> Result<Option<Change>, String> {
        let parts = c.parts.into_iter().map(|p| Transaction { time_ms: p.time_ms, statements: p.statements });
        match self.pending.as_mut() {
            Some(p) if p.seq == c.seq => {
                p.transactions.extend(parts);
                Ok(None)
            }
            Some(p) if p.seq + 1 == c.seq => {
                let done = self.pending.replace(Change { seq: c.seq, transactions: parts.collect() });
                Ok(done)
            }
            Some(p) => Err(format!(
                "version {} follows version {}: the changes between are missing",
                crate::version::data_version(c.seq),
                crate::version::data_version(p.seq)
            )),
            None => {
                self.pending = Some(Change { seq: c.seq, transactions: parts.collect() });
                Ok(None)
            }
        }
    }

    /// The version of the change being merged.
    pub fn last_seq(&self) -> Option<Seq> {
        self.pending.as_ref().map(|c| c.seq)
    }

    /// The change still pending at the end.
    pub fn finish(&mut self) -> Option<Change> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn names_parse_back_and_sort_in_writing_order() {
        let owner = hex(&[0xab; 16]);
        let a = SegmentName { epoch: 2, n: 9, first: 5, last: 7, owner: owner.clone() };
        let b = SegmentName { epoch: 2, n: 10, first: 7, last: 7, owner: owner.clone() };
        let c = SegmentName { epoch: 3, n: 0, first: 7, last: 9, owner: owner.clone() };
        for s in [&a, &b, &c] {
            assert_eq!(SegmentName::parse(&s.name()).as_ref(), Some(s));
        }
        assert!(a.name() < b.name() && b.name() < c.name());
        let m = ManifestName { number: 3, owner: owner.clone() };
        assert_eq!(ManifestName::parse(&m.name()), Some(m));
        assert!(SegmentName::parse("segments/x").is_none());
        assert!(is_snapshot_name(&snapshot_name(5, 1, &owner)));
        assert!(!is_snapshot_name("snapshots/5"));
    }

    #[test]
    fn epochs_cut_off_rewound_changes() {
        let mut m = Manifest {
            format: 1,
            number: 1,
            owner: String::new(),
            host: String::new(),
            time_ms: 0,
            snapshot: None,
            epochs: vec![EpochStart { epoch: 1, start: 1 }, EpochStart { epoch: 2, start: 10 }],
            head: 9,
            rewound_at: Some(9),
        };
        assert_eq!(m.cutoff(1), Some(10));
        assert_eq!(m.cutoff(2), Some(Seq::MAX));
        assert_eq!(m.cutoff(5), None);
        m.snapshot = Some(SnapshotRef {
            name: String::new(),
            seq: 12,
            size: 0,
            stored_bytes: 0,
            created_ms: 0,
            foreign_keys: true,
            after: (2, 0),
        });
        m.prune_epochs();
        assert_eq!(m.epochs, vec![EpochStart { epoch: 2, start: 10 }]);
    }

    #[test]
    fn merging_appends_repeats_and_refuses_gaps() {
        let part = |s: &str| SegPart { time_ms: 1, statements: vec![s.into()] };
        let mut m = Merger::default();
        assert_eq!(m.push(SegChange { seq: 4, parts: vec![part("a")] }).unwrap(), None);
        assert_eq!(m.push(SegChange { seq: 4, parts: vec![part("p")] }).unwrap(), None);
        let done = m.push(SegChange { seq: 5, parts: vec![part("b")] }).unwrap().unwrap();
        assert_eq!((done.seq, done.transactions.len()), (4, 2));
        let err = m.push(SegChange { seq: 7, parts: vec![part("c")] }).unwrap_err();
        assert!(err.contains("missing"), "{err}");
        let bytes = encode_segment(vec![SegChange { seq: 1, parts: vec![part("x")] }]).unwrap();
        assert_eq!(decode_segment(&bytes).unwrap()[0].seq, 1);
        assert!(decode_segment(b"junk").is_err());
    }
}
