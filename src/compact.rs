//! Compaction: folding old changes into a new base snapshot.
//!
//! Owns the choice of compaction point (the version before the head, so the
//! last change stays rewindable) and the order of work: replay from a read
//! view into a temporary SQLite file beside the store *without* holding the
//! store's write lock, then publish snapshot and pruning in one short write
//! transaction. Writers go on while it runs; if the log moved under it (the
//! compaction point was rewound and rewritten), nothing is published.
//!
//! It must not change what a restore produces.

use crate::error::{Error, Result};
use crate::restore::{self, Progress};
use crate::store::Store;
use crate::version::data_version;
use serde::Serialize;
use std::time::Instant;

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// False when there was nothing to fold (fewer than two changes after the snapshot).
    pub compacted: bool,
    /// `data_version` of the new snapshot.
    pub snapshot_version: Option<u32>,
    pub changes_before: u64,
    pub changes_after: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub duration_ms: u64,
}

/// Compact `store`: snapshot at head-1, prune what it replaces.
pub fn compact(store: &Store, progress: Option<&Progress>) -> Result<Stats> {
    let started = Instant::now();
    let before = store.status()?;
    let reader = store.reader()?;
    let head = reader.head();
    let (lo, _) = reader.restorable();
    let nothing = Stats {
        compacted: false,
        snapshot_version: None,
        changes_before: before.changes,
        changes_after: before.changes,
        bytes_before: before.file_bytes,
        bytes_after: before.file_bytes,
        duration_ms: 0,
    };
    if head == 0 || head - 1 <= lo || reader.change_count() < 2 {
        return Ok(Stats { duration_ms: started.elapsed().as_millis() as u64, ..nothing });
    }
    let point = head - 1;
    let tmp = crate::atomic_file::TempFile::create(store.path(), "compact")?;
    let replayed = restore::replay_into(&reader, point, tmp.path(), progress)?;
    drop(reader);
    let mut image = std::fs::File::open(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
    let record = store.publish_compaction(point, replayed.last_hash, replayed.foreign_keys, &mut image, started)?;
    let after = store.status()?;
    Ok(Stats {
        compacted: true,
        snapshot_version: Some(data_version(point)),
        changes_before: record.changes_before,
        changes_after: record.changes_after,
        bytes_before: before.file_bytes,
        bytes_after: after.file_bytes,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
