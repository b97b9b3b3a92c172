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
use super::tables::{CHANGES, KEY_FORMAT, KEY_META, META, SEALED, SNAPSHOTS, TABLE_NAMES};
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
    pub head: Seq,
    pub snapshot: Option<(Seq, SnapshotHeader)>,
    pub last: Option<Last>,
    /// The hash the next new record chains from.
    pub tip: Hash,
    pub changes: u64,
    /// Writes installed since the store was opened: a write planned outside
    /// the state lock is installed only if no other write came in between.
    /// Not part of what the tables say, so never compared.
    pub generation: u64,
}

impl State {
    /// A placeholder until the first load.
    pub fn empty() -> State {
        let meta = Meta { store_id: [0; 16], created_ms: 0, rewound_at: None, last_compaction: None };
        State { meta, head: 0, snapshot: None, last: None, tip: [0; 32], changes: 0, generation: 0 }
    }

    /// The hash the first record after the base chains from.
    pub fn origin(&self) -> Hash {
        match &self.snapshot {
            Some((_, h)) => h.anchor,
            None => genesis_hash(&self.meta.store_id),
        }
    }

    /// The version the log starts from: the snapshot's, or 0.
    pub fn base(&self) -> Seq {
        self.snapshot.as_ref().map(|(s, _)| *s).unwrap_or(0)
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
        if last.parts > 1 {
            return Some("the last version holds repeated-version reports, so lightningd had committed it");
        }
        None
    }

    pub fn snapshot_info(&self) -> Option<SnapshotInfo> {
        self.snapshot.as_ref().map(|(seq, h)| SnapshotInfo {
            seq: *seq,
            version: data_version(*seq),
            size: h.size,
            stored_bytes: h.stored_bytes,
            created_ms: h.created_ms,
            foreign_keys: h.foreign_keys,
        })
    }

    pub fn restorable(&self) -> (Seq, Seq) {
        (self.snapshot.as_ref().map(|(s, _)| *s).unwrap_or(0), self.head)
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
        Some((seq, _)) if *seq > 0 => match log::record_at(&tail, &sealed, seq - 1).map_err(|e| e.at(path))? {
            Some(bytes) => Some(decode(seq - 1, &bytes)?),
            None => None,
        },
        _ => None,
    };
    // Records are consecutive, so their count follows from the first and last.
    let first = log::first_seq(&tail, &sealed).map_err(|e| e.at(path))?;
    let changes = match (first, &last) {
        (Some(first), Some((last, _))) if *last >= first => last - first + 1,
        _ => 0,
    };
    let mut st = State { meta, head: 0, snapshot, last: None, tip: [0; 32], changes, generation: 0 };
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
