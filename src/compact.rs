//! Compaction: folding the changes since the newest snapshot into a new one,
//! keeping what the retention rules say, and the policy that says when.
//!
//! Owns the choice of compaction point (the version before the head, so the
//! last change stays rewindable), [`Retention`], [`Policy`], one compaction
//! at a time per store, and the order of work: replay the newest snapshot
//! and the changes since from a read view into a temporary SQLite file
//! beside the store *without* holding the store's write lock, then publish
//! through the store's rewrite (a new file put in the store's place; the
//! writer waits only for the switch-over). Writers go on while it runs; if
//! the log moved under it (the compaction point was rewound and rewritten),
//! nothing is published.
//!
//! It must not change what a restore produces, and it must not run the
//! policy by itself: a front end (the plugin) asks [`Policy::next`] when to.
//!
//! ```
//! use cln_backup::{compact, version::bump_statement, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("node.redb"))?;
//! # store.add_change(1, &[
//! #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
//! #     "INSERT INTO vars VALUES ('data_version', 0)",
//! #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
//! # ])?;
//! for v in 2..=5 {
//!     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
//! }
//! // The front end asks the policy, and compacts when it says so.
//! let policy = compact::Policy::new(5, 0.0);
//! assert!(policy.next(&store.status()?).due.is_some());
//! let stats = compact::compact(&store, &compact::Options::default())?;
//! assert_eq!(stats.snapshot_version, Some(4));
//! assert_eq!(store.status()?.restorable, (4, 5));
//! // One change after the new snapshot: nothing is due until more come.
//! assert_eq!(policy.next(&store.status()?).due, None);
//! # Ok(()) }
//! ```

use crate::error::Result;
use crate::replay::{self, Progress};
use crate::store::{Status, Store};
use crate::version::data_version;
use serde::Serialize;
use std::time::{Duration, Instant};

/// Which snapshots a compaction keeps, and so how far back a restore can go.
///
/// Every change since the oldest snapshot kept is kept too, so a restore can
/// reach any version from the oldest snapshot to the head.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let opts = compact::Options { retention: compact::Retention::new(1, None), ..Default::default() };
/// assert_eq!(compact::compact(&store, &opts)?.snapshot_version, Some(2));
/// store.add_change(4, &["INSERT INTO t VALUES (4)"])?;
/// store.add_change(5, &["INSERT INTO t VALUES (5)"])?;
/// // Keeping one snapshot drops the one at 2: versions 2 and 3 are restorable no more.
/// let stats = compact::compact(&store, &opts)?;
/// assert_eq!((stats.snapshots_kept, stats.snapshots_dropped), (vec![4], 1));
/// assert_eq!(store.status()?.restorable, (4, 5));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Retention {
    /// Snapshots kept, the new one included (at least 1; default
    /// [`Retention::DEFAULT_KEEP`]).
    pub keep_snapshots: usize,
    /// Snapshots older than this (by the time they were stored) are dropped
    /// even when fewer than `keep_snapshots` are left; the newest is always
    /// kept. `None`: no limit.
    pub max_age: Option<Duration>,
}

impl Retention {
    /// Snapshots kept by default: the new one and the two before it, so that
    /// one compaction never takes away a restore point of the interval before it.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let opts = compact::Options::default();
    /// assert_eq!(opts.retention.keep_snapshots, compact::Retention::DEFAULT_KEEP);
    /// // Snapshots at 2, 4 and 6...
    /// for v in 2..=8 {
    ///     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    ///     if v % 2 == 1 {
    ///         compact::compact(&store, &opts)?;
    ///     }
    /// }
    /// // ...then a fourth at 8: the oldest goes.
    /// store.add_change(9, &["INSERT INTO t VALUES (9)"])?;
    /// let stats = compact::compact(&store, &opts)?;
    /// assert_eq!((stats.snapshots_kept, stats.snapshots_dropped), (vec![4, 6, 8], 1));
    /// # Ok(()) }
    /// ```
    pub const DEFAULT_KEEP: usize = 3;

    /// Keep `keep_snapshots` (at least 1), and drop snapshots stored longer
    /// than `max_age` ago (`None`: no age limit).
    ///
    /// ```
    /// use cln_backup::compact::Retention;
    /// use std::time::Duration;
    ///
    /// let week = Retention::new(2, Some(Duration::from_secs(7 * 24 * 3600)));
    /// assert_eq!((week.keep_snapshots, week.max_age), (2, Some(Duration::from_secs(604_800))));
    /// // The newest snapshot is always kept.
    /// assert_eq!(Retention::new(0, None).keep_snapshots, 1);
    /// ```
    pub fn new(keep_snapshots: usize, max_age: Option<Duration>) -> Retention {
        Retention { keep_snapshots: keep_snapshots.max(1), max_age }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep_snapshots: Retention::DEFAULT_KEEP, max_age: None }
    }
}

/// How to compact.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=5 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let replayed = Arc::new(AtomicU64::new(0));
/// let seen = replayed.clone();
/// let opts = compact::Options {
///     progress: Some(Arc::new(move |n| seen.store(n, Ordering::Relaxed))),
///     ..Default::default()
/// };
/// assert_eq!(opts.io_rate, None, "as fast as the disk goes");
/// compact::compact(&store, &opts)?;
/// // Versions 1 to 4 were replayed into the new snapshot.
/// assert_eq!(replayed.load(Ordering::Relaxed), 4);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Options {
    /// What to keep.
    pub retention: Retention,
    /// Bytes a second the compaction writes at most, beside a running node
    /// (`None`: as fast as the disk goes; see [`Options::DEFAULT_IO_RATE`]).
    /// Whatever the rate, the files it writes are synced in small steps.
    pub io_rate: Option<u64>,
    /// Progress of the replay, in changes.
    pub progress: Option<Progress>,
}

impl Options {
    /// The rate the plugin compacts at by default: 64 MiB a second, a
    /// small share of an SSD's time (about 6% of a 1 GB/s disk), so the
    /// node's commits rarely meet the compaction's writes, while a store
    /// with a 1 GiB snapshot, which writes about three times that, still
    /// compacts in about a minute.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// // Beside a running node: paced, as the plugin compacts.
    /// let opts = compact::Options { io_rate: Some(compact::Options::DEFAULT_IO_RATE), ..Default::default() };
    /// let stats = compact::compact(&store, &opts)?;
    /// assert!(stats.compacted);
    /// # Ok(()) }
    /// ```
    pub const DEFAULT_IO_RATE: u64 = 64 << 20;
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("retention", &self.retention)
            .field("io_rate", &self.io_rate)
            .finish_non_exhaustive()
    }
}

/// When an automatic compaction is due: after `after_changes` changes since
/// the newest snapshot, or once those changes' stored bytes exceed
/// `after_ratio` times the snapshot's stored bytes (whichever comes first).
/// `0` / `0.0` turns a trigger off.
///
/// ```
/// use cln_backup::{compact::Policy, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// // Three changes: due after three, not after four.
/// let status = store.status()?;
/// assert!(Policy::new(3, 0.0).next(&status).due.is_some());
/// assert_eq!(Policy::new(4, 0.0).next(&status).due, None);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Policy {
    /// Changes since the newest snapshot that trigger a compaction.
    pub after_changes: u64,
    /// Stored bytes of the changes since the newest snapshot, as a multiple
    /// of the snapshot's stored bytes, that trigger a compaction.
    pub after_ratio: f64,
    /// Changes' stored bytes that trigger a compaction of a store without a
    /// snapshot yet (the ratio has nothing to compare with).
    pub first_after_bytes: u64,
}

impl Policy {
    /// Default change count: at about 2 changes a second (a busy routing
    /// node), a compaction every few hours, and a restore that replays at
    /// most this many changes on top of a snapshot.
    ///
    /// ```
    /// use cln_backup::{compact::Policy, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let next = Policy::default().next(&store.status()?);
    /// assert_eq!(next.changes_left, Some(Policy::DEFAULT_AFTER_CHANGES - 3));
    /// # Ok(()) }
    /// ```
    pub const DEFAULT_AFTER_CHANGES: u64 = 50_000;
    /// Default ratio: compact once the log since the snapshot has grown as
    /// large as the snapshot, so compaction work stays proportional to what
    /// the node writes.
    ///
    /// ```
    /// use cln_backup::{compact::{self, Policy}, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// compact::compact(&store, &compact::Options::default())?;
    /// let status = store.status()?;
    /// let snapshot = status.snapshot.as_ref().expect("a snapshot");
    /// // The log since the snapshot may grow to the snapshot's own stored size.
    /// let next = Policy::new(0, Policy::DEFAULT_AFTER_RATIO).next(&status);
    /// assert_eq!(next.bytes_left, Some(snapshot.stored_bytes.saturating_sub(status.bytes_since_snapshot)));
    /// # Ok(()) }
    /// ```
    pub const DEFAULT_AFTER_RATIO: f64 = 1.0;
    /// Default first-compaction size: 64 MiB of stored changes.
    ///
    /// ```
    /// use cln_backup::{compact::Policy, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// // No snapshot yet: the size trigger counts toward the first-compaction size.
    /// let status = store.status()?;
    /// assert!(status.snapshot.is_none() && status.bytes_since_snapshot > 0);
    /// let next = Policy::default().next(&status);
    /// assert_eq!(next.bytes_left, Some(Policy::DEFAULT_FIRST_AFTER_BYTES - status.bytes_since_snapshot));
    /// # Ok(()) }
    /// ```
    pub const DEFAULT_FIRST_AFTER_BYTES: u64 = 64 << 20;

    /// A policy with these triggers.
    ///
    /// ```
    /// use cln_backup::compact::Policy;
    ///
    /// let policy = Policy::new(1000, 0.5);
    /// assert_eq!((policy.after_changes, policy.after_ratio), (1000, 0.5));
    /// assert_eq!(policy.first_after_bytes, Policy::DEFAULT_FIRST_AFTER_BYTES);
    /// assert_eq!(Policy::default(), Policy::new(Policy::DEFAULT_AFTER_CHANGES, Policy::DEFAULT_AFTER_RATIO));
    /// ```
    pub fn new(after_changes: u64, after_ratio: f64) -> Policy {
        Policy { after_changes, after_ratio, first_after_bytes: Policy::DEFAULT_FIRST_AFTER_BYTES }
    }

    /// No automatic compaction.
    ///
    /// ```
    /// use cln_backup::{compact::Policy, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let next = Policy::off().next(&store.status()?);
    /// assert_eq!((next.due, next.changes_left, next.bytes_left), (None, None, None));
    /// # Ok(()) }
    /// ```
    pub fn off() -> Policy {
        Policy { after_changes: 0, after_ratio: 0.0, first_after_bytes: 0 }
    }

    /// Whether any trigger is on.
    ///
    /// ```
    /// use cln_backup::compact::Policy;
    ///
    /// assert!(Policy::default().is_on());
    /// assert!(Policy::new(0, 1.0).is_on());
    /// assert!(!Policy::new(0, 0.0).is_on());
    /// assert!(!Policy::off().is_on());
    /// ```
    pub fn is_on(&self) -> bool {
        self.after_changes > 0 || self.after_ratio > 0.0
    }

    /// What is left before the next compaction is due, for a store whose
    /// status is `s`; `due` is set when it is due now.
    ///
    /// ```
    /// use cln_backup::{compact::Policy, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let policy = Policy::new(3, 0.0);
    /// assert_eq!(policy.next(&store.status()?).changes_left, Some(2));
    /// for v in 2..=3 {
    ///     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// }
    /// let next = policy.next(&store.status()?);
    /// assert_eq!(next.changes_left, Some(0));
    /// assert_eq!(next.due.as_deref(), Some("3 changes since the last snapshot (the limit is 3)"));
    /// # Ok(()) }
    /// ```
    pub fn next(&self, s: &Status) -> Next {
        let changes = s.changes_since_snapshot;
        let bytes = s.bytes_since_snapshot;
        let changes_left = (self.after_changes > 0).then(|| self.after_changes.saturating_sub(changes));
        let bytes_limit = match &s.snapshot {
            Some(snap) if self.after_ratio > 0.0 => Some((snap.stored_bytes as f64 * self.after_ratio) as u64),
            None if self.after_ratio > 0.0 && self.first_after_bytes > 0 => Some(self.first_after_bytes),
            _ => None,
        };
        let bytes_left = bytes_limit.map(|limit| limit.saturating_sub(bytes));
        // Fewer than two changes since the snapshot leave nothing to fold.
        let foldable = changes >= 2;
        let due = if !foldable {
            None
        } else if changes_left == Some(0) {
            Some(format!("{changes} changes since the last snapshot (the limit is {})", self.after_changes))
        } else if let (Some(0), Some(limit)) = (bytes_left, bytes_limit) {
            Some(format!("{bytes} bytes of changes since the last snapshot (the limit is {limit})"))
        } else {
            None
        };
        Next { due, changes_left, bytes_left }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::new(Policy::DEFAULT_AFTER_CHANGES, Policy::DEFAULT_AFTER_RATIO)
    }
}

/// What [`Policy::next`] found.
///
/// ```
/// use cln_backup::{compact::Policy, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// // Three changes against a count trigger of ten; the size trigger is off.
/// let next = Policy::new(10, 0.0).next(&store.status()?);
/// assert_eq!(next.due, None);
/// assert_eq!(next.changes_left, Some(7));
/// assert_eq!(next.bytes_left, None);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Next {
    /// Why a compaction is due now, or `None`.
    pub due: Option<String>,
    /// Changes left before the change-count trigger (`None`: that trigger is off).
    pub changes_left: Option<u64>,
    /// Stored bytes of changes left before the size trigger (`None`: off).
    pub bytes_left: Option<u64>,
}

/// What a compaction did.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// let stats = compact::compact(&store, &compact::Options::default())?;
/// assert!(!stats.compacted, "one change: nothing to fold");
/// for v in 2..=4 {
///     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// }
/// let stats = compact::compact(&store, &compact::Options::default())?;
/// assert!(stats.compacted);
/// assert_eq!((stats.changes_before, stats.changes_after), (4, 1));
/// assert_eq!(stats.snapshots_kept, vec![3]);
/// assert!(stats.bytes_in_use <= stats.bytes_after);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// False when there was nothing to fold (fewer than two changes after the snapshot).
    pub compacted: bool,
    /// `data_version` of the new snapshot (`None` when nothing was folded).
    pub snapshot_version: Option<u32>,
    /// `data_version` of each snapshot kept, oldest first.
    pub snapshots_kept: Vec<u32>,
    /// Snapshots dropped by the retention rules.
    pub snapshots_dropped: u64,
    /// Change records in the store before the compaction.
    pub changes_before: u64,
    /// Change records left after it (those after the oldest snapshot kept).
    pub changes_after: u64,
    /// Bytes of the store file before the compaction.
    pub bytes_before: u64,
    /// Bytes of the store file after it.
    pub bytes_after: u64,
    /// Bytes of the file's pages in use after it (the rest is free space
    /// inside the file).
    pub bytes_in_use: u64,
    /// Time spent waiting for a compaction already running, in milliseconds.
    pub waited_ms: u64,
    /// Wall-clock time the compaction took, in milliseconds.
    pub duration_ms: u64,
}

/// Compact `store`: a new snapshot at the version before the head (so the
/// last change stays rewindable), the snapshots `opts.retention` keeps, and
/// every change since the oldest of them, written as a new file that
/// replaces the store's (see the store's `rewrite`). The replay runs from a
/// read view without holding the store's write lock; writers go on, and
/// wait only for the switch-over.
///
/// One compaction at a time per store: a second call waits for the running
/// one (the time is in [`Stats::waited_ms`]) and then compacts what is left.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// for v in 2..=10 {
///     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// }
/// let stats = compact::compact(&store, &compact::Options::default())?;
/// // The changes up to the one before the head are folded into a snapshot.
/// assert_eq!(stats.snapshot_version, Some(9));
/// assert_eq!(store.status()?.changes_since_snapshot, 1);
/// # Ok(()) }
/// ```
pub fn compact(store: &Store, opts: &Options) -> Result<Stats> {
    let asked = Instant::now();
    let _one_at_a_time = store.lock_compaction();
    let waited_ms = asked.elapsed().as_millis() as u64;
    let started = Instant::now();
    let before = store.status()?;
    let reader = store.reader()?;
    let head = reader.head();
    let newest = reader.snapshot().map(|s| s.seq);
    let nothing = Stats {
        compacted: false,
        snapshot_version: None,
        snapshots_kept: before.snapshots.iter().map(|s| s.version).collect(),
        snapshots_dropped: 0,
        changes_before: before.changes,
        changes_after: before.changes,
        bytes_before: before.file_bytes,
        bytes_after: before.file_bytes,
        bytes_in_use: before.file_bytes,
        waited_ms,
        duration_ms: 0,
    };
    // Fewer than two changes after the newest snapshot: nothing to fold.
    if head < 2 || newest.is_some_and(|s| head - 1 <= s) || (newest.is_none() && reader.change_count() < 2) {
        return Ok(Stats { duration_ms: started.elapsed().as_millis() as u64, ..nothing });
    }
    let point = head - 1;
    let tmp = crate::atomic_file::TempFile::create(store.path(), "compact")?;
    tracing::debug!("compaction: replaying up to version {} into {}", data_version(point), tmp.path().display());
    drop(reader);
    let (replayed, expect) = crate::pace::in_background(store.path(), || {
        replay::replay_for_compaction(store, point, tmp.path(), opts.progress.as_ref(), opts.io_rate)
    })?;
    let done = store.rewrite(&crate::store::Rewrite {
        point,
        expect,
        foreign_keys: replayed.foreign_keys,
        image: tmp.path(),
        keep: opts.retention.keep_snapshots,
        max_age_ms: opts.retention.max_age.map(|a| a.as_millis() as u64),
        started,
        io_rate: opts.io_rate,
    })?;
    tracing::debug!("compaction: published; removing the image");
    drop(tmp);
    tracing::debug!("compaction: done");
    let after = store.status()?;
    Ok(Stats {
        compacted: true,
        snapshot_version: Some(data_version(point)),
        snapshots_kept: done.kept.iter().map(|s| data_version(*s)).collect(),
        snapshots_dropped: done.dropped,
        changes_before: done.record.changes_before,
        changes_after: done.record.changes_after,
        bytes_before: before.file_bytes,
        bytes_after: after.file_bytes,
        bytes_in_use: done.bytes_in_use,
        waited_ms,
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

        let stats = compact(&store, &super::Options::default()).unwrap();
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
        assert!(matches!(err, Err(crate::Error::NotRestorable { asked: 8, .. })), "{err:?}");
    }

    #[test]
    fn fewer_than_two_changes_after_the_snapshot_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 1);
        let stats = compact(&store, &super::Options::default()).unwrap();
        assert!(!stats.compacted);
        assert_eq!((stats.snapshot_version, stats.changes_before, stats.changes_after), (None, 1, 1));
        assert_eq!(store.status().unwrap().snapshot, None);

        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 3);
        assert_eq!(compact(&store, &super::Options::default()).unwrap().snapshot_version, Some(2));
        // One change after the snapshot at 2: nothing left to fold.
        let stats = compact(&store, &super::Options::default()).unwrap();
        assert!(!stats.compacted);
        assert_eq!((stats.changes_before, stats.changes_after), (1, 1));
        assert_eq!(store.status().unwrap().snapshot.map(|s| s.version), Some(2));
    }

    #[test]
    fn a_second_compaction_folds_the_changes_after_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_with(dir.path(), 5);
        compact(&store, &super::Options::default()).unwrap();
        for v in 6..=8 {
            store.add_change(v, &[format!("INSERT INTO t VALUES ({v})"), bump_statement(v)]).unwrap();
        }
        let head_before = restored(&store, dir.path(), "before.sqlite3", None);
        let six_before = restored(&store, dir.path(), "6-before.sqlite3", Some(6));
        let stats = compact(&store, &super::Options::default()).unwrap();
        assert_eq!(stats.snapshot_version, Some(7));
        // The first snapshot (4) is kept, and the changes since it.
        assert_eq!((stats.changes_before, stats.changes_after), (4, 4));
        assert_eq!((stats.snapshots_kept.clone(), stats.snapshots_dropped), (vec![4, 7], 0));
        assert_eq!(store.status().unwrap().restorable, (4, 8));
        same(&restored(&store, dir.path(), "after.sqlite3", None), &head_before);
        same(&restored(&store, dir.path(), "6-after.sqlite3", Some(6)), &six_before);
        // Keeping one snapshot drops the others and the changes before it.
        for v in 9..=10 {
            store.add_change(v, &[format!("INSERT INTO t VALUES ({v})"), bump_statement(v)]).unwrap();
        }
        let opts = super::Options { retention: super::Retention::new(1, None), ..Default::default() };
        let stats = compact(&store, &opts).unwrap();
        assert_eq!((stats.snapshots_kept.clone(), stats.snapshots_dropped), (vec![9], 2));
        assert_eq!((stats.changes_before, stats.changes_after), (6, 1));
        assert_eq!(store.status().unwrap().restorable, (9, 10));
        assert!(stats.bytes_in_use <= stats.bytes_after, "{stats:?}");
    }
}
