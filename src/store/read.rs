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
    pub fn reader(&self) -> Result<Reader<'_>> {
        guarded(&self.path, || {
            let txn = self.begin_read()?;
            let state = load_state(&self.path, &txn, false)?;
            Ok(Reader { store: self, txn: Some(txn), state })
        })
    }
}

/// A consistent, read-only view of a store.
pub struct Reader<'s> {
    store: &'s Store,
    /// Always `Some` until dropped (see `Drop`).
    txn: Option<redb::ReadTransaction>,
    state: State,
}

impl Drop for Reader<'_> {
    fn drop(&mut self) {
        let txn = self.txn.take();
        let _ = guarded(&self.store.path, move || {
            drop(txn);
            Ok(())
        });
    }
}

impl Reader<'_> {
    fn txn(&self) -> Result<&redb::ReadTransaction> {
        self.txn.as_ref().ok_or_else(|| Error::redb(&self.store.path, redb::Error::DatabaseClosed))
    }

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

    /// The store version a restore to `to_version` (a `data_version`, or an
    /// extended store version; the head when `None`) reaches: the highest
    /// version at or below it after the last u32 wrap, refused with
    /// [`Error::NotRestorable`] naming the range when it is outside
    /// [`restorable`](Reader::restorable).
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
    pub fn change_count(&self) -> u64 {
        self.state.changes
    }

    /// Write the snapshot's SQLite image to `out`, checking its content hash.
    /// Returns the bytes written (0 when there is no snapshot).
    pub fn copy_snapshot(&self, out: &mut dyn Write) -> Result<u64> {
        guarded(&self.store.path, || match &self.state.snapshot {
            Some((seq, header)) => snapshot::copy(&self.store.path, self.txn()?, *seq, header, out),
            None => Ok(0),
        })
    }

    /// The change records after the snapshot up to and including `upto`, in
    /// order, each checked against the hash chain before it is decoded.
    pub fn changes(&self, upto: Seq) -> Result<Changes> {
        guarded(&self.store.path, || self.changes_inner(upto))
    }

    fn changes_inner(&self, upto: Seq) -> Result<Changes> {
        let tail = self.txn()?.open_table(CHANGES).map_err(|e| self.store.err(e))?;
        let recent = log::open_recent(self.txn()?).map_err(|e| e.at(&self.store.path))?;
        let sealed = self.txn()?.open_table(SEALED).map_err(|e| self.store.err(e))?;
        let start = self.state.base();
        Ok(Changes {
            path: self.store.path.clone(),
            records: Records::new(&tail, recent.as_ref(), &sealed, start, upto).map_err(|e| e.at(&self.store.path))?,
            upto,
            prev_hash: self.state.origin(),
            prev_seq: None,
            start,
            ended: false,
        })
    }

    /// The change records after `after` (a store version at or above the
    /// base snapshot's) up to and including `upto`, checked like
    /// [`changes`](Reader::changes): the first one chains from the record at
    /// `after` (or from the base when there is none there). What a replica
    /// that already holds everything up to `after` is sent.
    pub fn changes_after(&self, after: Seq, upto: Seq) -> Result<Changes> {
        guarded(&self.store.path, || {
            let base = self.state.base();
            if after < base {
                return Err(self.not_restorable(after));
            }
            let prev_hash = match record_in(&self.store.path, self.txn()?, after)? {
                Some(bytes) => {
                    StoredChange::from_bytes(&bytes)
                        .map_err(|e| Error::corrupt(&self.store.path, format!("version {}: {e}", data_version(after))))?
                        .hash
                }
                None if after == base => self.state.origin(),
                None => {
                    return Err(Error::corrupt(
                        &self.store.path,
                        format!("change record for version {} is missing", data_version(after)),
                    ))
                }
            };
            let tail = self.txn()?.open_table(CHANGES).map_err(|e| self.store.err(e))?;
            let recent = log::open_recent(self.txn()?).map_err(|e| e.at(&self.store.path))?;
            let sealed = self.txn()?.open_table(SEALED).map_err(|e| self.store.err(e))?;
            let from = after + 1;
            Ok(Changes {
                path: self.store.path.clone(),
                records: Records::new(&tail, recent.as_ref(), &sealed, from, upto.max(after))
                    .map_err(|e| e.at(&self.store.path))?,
                upto: upto.max(after),
                prev_hash,
                prev_seq: None,
                start: after,
                ended: false,
            })
        })
    }

    /// Bytes of each stored change record, for size accounting.
    pub fn stored_change_bytes(&self) -> Result<u64> {
        guarded(&self.store.path, || self.stored_change_bytes_inner())
    }

    fn stored_change_bytes_inner(&self) -> Result<u64> {
        let mut total = 0u64;
        for table in [CHANGES, RECENT, SEALED] {
            let t = match self.txn()?.open_table(table) {
                Ok(t) => t,
                // A store of format 1 has no recent records.
                Err(redb::TableError::TableDoesNotExist(_)) => continue,
                Err(e) => return Err(self.store.err(e)),
            };
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
    records: Records,
    upto: Seq,
    prev_hash: Hash,
    prev_seq: Option<Seq>,
    start: Seq,
    /// Set once the iteration has ended, by running out or by an error.
    ended: bool,
}

impl Changes {
    /// Chain hash of the last record yielded (the origin if none was).
    pub fn last_hash(&self) -> Hash {
        self.prev_hash
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
        if self.ended {
            return None;
        }
        let item = guarded(&path, || match self.records.next_record().map_err(|e| e.at(&self.path))? {
            Some((seq, bytes)) => self.step(seq, &bytes).map(Some),
            None => {
                self.ended = true;
                // Every version after the snapshot up to `upto` has a record:
                // a log that stops short lost records at its end (a damaged
                // page can hide them from the iteration).
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
        });
        if item.is_err() {
            self.ended = true;
        }
        item.transpose()
    }
}

/// The bytes of the record at `seq` in a read view.
pub(super) fn record_in(path: &Path, txn: &redb::ReadTransaction, seq: Seq) -> Result<Option<Vec<u8>>> {
    let tail = txn.open_table(CHANGES).map_err(|e| Error::redb(path, e))?;
    let recent = log::open_recent(txn).map_err(|e| e.at(path))?;
    let sealed = txn.open_table(SEALED).map_err(|e| Error::redb(path, e))?;
    log::record_at(&tail, recent.as_ref(), &sealed, seq).map_err(|e| e.at(path))
}
