//! What a store reports about itself: [`Status`] and [`SnapshotInfo`], for
//! `info`, `backup-status` and embedding callers.
//!
//! Owns turning the writer's [`State`](super::state::State) into those
//! reports. It must not read the tables, nor take the state lock (a write
//! holds it across its sync): a status is the state the last write
//! published, plus the file's length.

use super::guarded;
use super::Store;
use crate::error::{Error, Result};
use crate::record::CompactionRecord;
use crate::version::{data_version, Seq};
use serde::Serialize;
use std::path::PathBuf;

/// A snapshot a store keeps, as status reports it.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=4 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let received = store.reader()?.time_of(3)?;
/// compact::compact(&store, &Default::default())?;
/// let info = store.status()?.snapshot.expect("a compaction leaves a snapshot");
/// assert_eq!((info.seq, info.version), (3, 3));
/// assert!(info.size > 0 && info.stored_bytes > 0 && info.foreign_keys);
/// assert_eq!(info.version_time_ms, received);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SnapshotInfo {
    /// The snapshot's store version (`data_version` with its wrap epoch above bit 32).
    pub seq: Seq,
    /// lightningd's `data_version` in the image.
    pub version: u32,
    /// Bytes of the SQLite image.
    pub size: u64,
    /// Bytes stored, compressed.
    pub stored_bytes: u64,
    /// When the snapshot was stored, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the store received the version the image holds, in milliseconds
    /// since the Unix epoch ([`TIME_NOT_RECORDED`](crate::TIME_NOT_RECORDED)
    /// when unknown).
    pub version_time_ms: u64,
    /// Whether replay after the snapshot starts with foreign keys on (as
    /// lightningd had them at that version).
    pub foreign_keys: bool,
}

/// What a store holds, for `info`, `backup-status` and embedding callers.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=4 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// compact::compact(&store, &Default::default())?;
/// let status = store.status()?;
/// assert_eq!((status.version, status.prev_version, status.format), (4, Some(3), 3));
/// // Versions 1 to 3 are in the snapshot; the last change stays a change, and may be rewound.
/// assert_eq!((status.changes, status.changes_since_snapshot, status.rewind_allowed), (1, 1, true));
/// assert_eq!((status.restorable, status.snapshots.len()), ((3, 4), 1));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The store file.
    pub path: PathBuf,
    /// The store's format: 2 for lightningd's model, 3 for an
    /// application's.
    pub format: u32,
    /// The change model the store records.
    pub model: crate::Model,
    /// lightningd's `data_version` at the head.
    pub version: u32,
    /// The head as a store version (differs from `version` after a u32 wrap).
    pub seq: Seq,
    /// The version before the last change, when there is a last change.
    pub prev_version: Option<u32>,
    /// Whether [`Store::rewind`] would be accepted now.
    pub rewind_allowed: bool,
    /// Change records held (from the oldest snapshot to the head).
    pub changes: u64,
    /// Changes after the newest snapshot (what a restore to the head replays).
    pub changes_since_snapshot: u64,
    /// Stored bytes of the changes after the newest snapshot.
    pub bytes_since_snapshot: u64,
    /// The newest snapshot, if the store has one.
    pub snapshot: Option<SnapshotInfo>,
    /// Every snapshot kept, oldest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// Lowest and highest store version a restore can produce.
    pub restorable: (Seq, Seq),
    /// Length of the store file in bytes.
    pub file_bytes: u64,
    /// When the store was created, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The last compaction published into the store, if any.
    pub last_compaction: Option<CompactionRecord>,
    /// Whether a compaction (or a [`BulkLoad`](super::BulkLoad)) is running now.
    pub compacting: bool,
}

impl Store {
    /// Status of the store, as the last write left it: never waits for a
    /// write in progress.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: false })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// let status = store.status()?;
    /// assert_eq!((status.version, status.changes, status.rewind_allowed), (1, 1, true));
    /// assert_eq!(status.model, Model::Application { foreign_keys: false });
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> Result<Status> {
        guarded(&self.path, || self.status_inner())
    }

    fn status_inner(&self) -> Result<Status> {
        let st = self.published();
        let file_bytes = std::fs::metadata(&self.path).map(|m| m.len()).map_err(|e| Error::io(&self.path, e))?;
        let rewind_allowed = st.rewind_refusal().is_none();
        Ok(Status {
            path: self.path.clone(),
            format: st.model.format(),
            model: st.model,
            version: data_version(st.head),
            seq: st.head,
            prev_version: st
                .last
                .as_ref()
                .filter(|l| l.seq == st.head && l.seq > st.base())
                .map(|l| data_version(l.seq - 1)),
            rewind_allowed,
            changes: st.changes,
            changes_since_snapshot: st.changes_since_snapshot(),
            bytes_since_snapshot: st.bytes_since_snapshot,
            snapshot: st.snapshot_info(),
            snapshots: st.snapshot_infos(),
            restorable: st.restorable(),
            file_bytes,
            created_ms: st.meta.created_ms,
            last_compaction: st.meta.last_compaction.clone(),
            compacting: self.is_compacting(),
        })
    }

    /// Changes after the newest snapshot and their stored bytes, as
    /// [`Status`] reports them, without reading the file's length: what an
    /// automatic compaction policy checks after each write.
    ///
    /// ```
    /// use cln_backup::{compact, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// # for v in 2..=4 {
    /// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
    /// # }
    /// let (changes, bytes) = store.since_snapshot();
    /// assert_eq!((changes, bytes), (4, store.status()?.bytes_since_snapshot));
    /// compact::compact(&store, &Default::default())?;
    /// assert_eq!(store.since_snapshot().0, 1);
    /// # Ok(()) }
    /// ```
    pub fn since_snapshot(&self) -> (u64, u64) {
        let st = self.published();
        (st.changes_since_snapshot(), st.bytes_since_snapshot)
    }

    /// The head's version (lightningd's `data_version`, or an application's
    /// own): what the next change must follow. Never waits for a write.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// assert_eq!(store.version(), 0);
    /// store.add_change(store.version() + 1, &["CREATE TABLE t (x)"])?;
    /// assert_eq!((store.version(), store.head()), (1, 1));
    /// # Ok(()) }
    /// ```
    pub fn version(&self) -> u32 {
        data_version(self.published().head)
    }

    /// The store's identity: 16 random bytes fixed when it was created, the
    /// same for every open of the file (a replica's single-writer lease
    /// names its writer by it).
    ///
    /// ```
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// let id = Store::create(&path)?.id();
    /// assert_eq!(Store::open_read_only(&path)?.id(), id);
    /// assert_ne!(Store::create(dir.path().join("other.redb"))?.id(), id);
    /// # Ok(()) }
    /// ```
    pub fn id(&self) -> [u8; 16] {
        self.published().meta.store_id
    }

    /// The head left by the last rewind, if the store was ever rewound: the
    /// change at the version after it was removed (and may have been
    /// replaced since). A replica holding that version may hold the
    /// removed change.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// store.add_change(2, &["INSERT INTO t VALUES (2)"])?;
    /// assert_eq!(store.rewound_at(), None);
    /// store.rewind()?;
    /// // Version 2 is stored again, with other statements: the store remembers the rewind.
    /// store.add_change(2, &["INSERT INTO t VALUES (20)"])?;
    /// assert_eq!(store.rewound_at(), Some(1));
    /// # Ok(()) }
    /// ```
    pub fn rewound_at(&self) -> Option<Seq> {
        self.published().meta.rewound_at
    }

    /// The change model the store records (see [`crate::Model`]).
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// assert_eq!(Store::create(dir.path().join("node.redb"))?.model(), Model::Lightningd);
    /// let app = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: false })?;
    /// assert_eq!(app.model(), Model::Application { foreign_keys: false });
    /// # Ok(()) }
    /// ```
    pub fn model(&self) -> crate::Model {
        self.published().model
    }

    /// The head as a store version.
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{version, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let image = dir.path().join("lightningd.sqlite3");
    /// # let conn = Connection::open(&image)?;
    /// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)")?;
    /// # conn.execute("INSERT INTO vars VALUES ('data_version', ?1)", [u32::MAX])?;
    /// # drop(conn);
    /// let store = Store::create(dir.path().join("node.redb"))?;
    /// store.add_snapshot_file(u32::MAX, &image)?;
    /// // lightningd's data_version wraps to 0; the store's version goes on counting.
    /// store.add_change(0, &["INSERT INTO vars VALUES ('x', 1)".to_string(), version::bump_statement(0)])?;
    /// assert_eq!((store.version(), store.head()), (0, 1 << 32));
    /// # Ok(()) }
    /// ```
    pub fn head(&self) -> Seq {
        self.published().head
    }
}
