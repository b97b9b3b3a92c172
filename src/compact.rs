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
use crate::replay::{self, Progress};
use crate::store::Store;
use crate::version::data_version;
use serde::Serialize;
use std::time::Instant;

/// What a compaction did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// False when there was nothing to fold (fewer than two changes after the snapshot).
    pub compacted: bool,
    /// `data_version` of the new snapshot (`None` when nothing was folded).
    pub snapshot_version: Option<u32>,
    /// Change records in the store before the compaction.
    pub changes_before: u64,
    /// Change records left after it (those after the new snapshot).
    pub changes_after: u64,
    /// Bytes of the store file before the compaction.
    pub bytes_before: u64,
    /// Bytes of the store file after it.
    pub bytes_after: u64,
    /// Wall-clock time the compaction took, in milliseconds.
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
    let (replayed, last_hash) = replay::replay_store_chained(&reader, point, tmp.path(), progress)?;
    drop(reader);
    let mut image = std::fs::File::open(tmp.path()).map_err(|e| Error::io(tmp.path(), e))?;
    let record = store.publish_compaction(point, last_hash, replayed.foreign_keys, &mut image, started)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{compare_databases, Labels};
    use crate::restore::{restore_store, Options};
    use crate::version::bump_statement;
    use std::path::{Path, PathBuf};

    /// A store holding versions 1 to `n`: a table, then a row per version.
    fn store_with(dir: &Path, n: u32) -> Store {
        let store = Store::create(dir.join("node.redb")).unwrap();
        store
            .add_change(
                1,
                &[
                    "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
                    "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
                    "CREATE TABLE t (v INTEGER)".to_string(),
                    bump_statement(1),
                ],
            )
            .unwrap();
        for v in 2..=n {
            store.add_change(v, &[format!("INSERT INTO t VALUES ({v})"), bump_statement(v)]).unwrap();
        }
        store
    }

    fn restored(store: &Store, dir: &Path, name: &str, to_version: Option<u64>) -> PathBuf {
        let dest = dir.join(name);
        restore_store(store, &dest, &Options { to_version, ..Options::default() }).unwrap();
        dest
    }

    fn same(a: &Path, b: &Path) {
        if let Some(d) = compare_databases(a, b, Labels::RESTORED_AND_EXPECTED).unwrap() {
            panic!("{d}");
        }
    }

    #[test]
    fn compaction_keeps_the_head_and_snapshots_the_version_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 10);
        let before = store.status().unwrap();
        assert_eq!((before.seq, before.restorable, before.changes), (10, (0, 10), 10));
        let head_before = restored(&store, dir.path(), "head-before.sqlite3", None);
        let nine_before = restored(&store, dir.path(), "9-before.sqlite3", Some(9));

        let stats = compact(&store, None).unwrap();
        let after = store.status().unwrap();
        assert!(stats.compacted);
        assert_eq!(stats.snapshot_version, Some(9));
        assert_eq!((stats.changes_before, stats.changes_after), (10, 1));
        assert_eq!((stats.bytes_before, stats.bytes_after), (before.file_bytes, after.file_bytes));
        // The head is where it was, the last change stays a change (rewindable),
        // and the restorable range now starts at the snapshot.
        assert_eq!((after.version, after.seq, after.changes), (10, 10, 1));
        assert_eq!(after.snapshot.as_ref().map(|s| (s.version, s.foreign_keys)), Some((9, true)));
        assert_eq!(after.restorable, (9, 10));
        assert!(after.rewind_allowed);
        // What it folded restores as before, at both ends of the new range.
        same(&restored(&store, dir.path(), "head-after.sqlite3", None), &head_before);
        same(&restored(&store, dir.path(), "9-after.sqlite3", Some(9)), &nine_before);
        // Versions before the snapshot are gone.
        let err = restore_store(
            &store,
            &dir.path().join("8.sqlite3"),
            &Options { to_version: Some(8), ..Options::default() },
        );
        assert!(matches!(err, Err(Error::NotRestorable { asked: 8, .. })), "{err:?}");
    }

    #[test]
    fn fewer_than_two_changes_after_the_snapshot_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 1);
        let stats = compact(&store, None).unwrap();
        assert!(!stats.compacted);
        assert_eq!((stats.snapshot_version, stats.changes_before, stats.changes_after), (None, 1, 1));
        assert_eq!(store.status().unwrap().snapshot, None);

        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 3);
        assert_eq!(compact(&store, None).unwrap().snapshot_version, Some(2));
        // One change after the snapshot at 2: nothing left to fold.
        let stats = compact(&store, None).unwrap();
        assert!(!stats.compacted);
        assert_eq!((stats.changes_before, stats.changes_after), (1, 1));
        assert_eq!(store.status().unwrap().snapshot.map(|s| s.version), Some(2));
    }

    #[test]
    fn a_second_compaction_folds_the_changes_after_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 5);
        compact(&store, None).unwrap();
        for v in 6..=8 {
            store.add_change(v, &[format!("INSERT INTO t VALUES ({v})"), bump_statement(v)]).unwrap();
        }
        let head_before = restored(&store, dir.path(), "before.sqlite3", None);
        let stats = compact(&store, None).unwrap();
        assert_eq!(stats.snapshot_version, Some(7));
        assert_eq!((stats.changes_before, stats.changes_after), (4, 1));
        assert_eq!(store.status().unwrap().restorable, (7, 8));
        same(&restored(&store, dir.path(), "after.sqlite3", None), &head_before);
    }
}
