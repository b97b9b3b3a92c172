//! The calls an application makes around its own database, beside each
//! change it reports: when it starts ([`reconcile`]), when it takes a
//! backup of a live database ([`snapshot_connection`]), and when it checks
//! that the backup restores what it has ([`verify_against`]).
//!
//! Owns the start-up rule of SPEC section 2 (the version the application
//! last committed against the backup's: they match, or the backup holds the
//! one change the application never committed and it is rewound, or one of
//! them lost changes and nothing is touched), the online copy of a live
//! SQLite connection into a snapshot, and the restore-and-compare check.
//! The plugin, the command line and any embedding application use these
//! same functions. It must not decide what to tell a user: the outcomes are
//! values, worded by whoever shows them.
//!
//! ```
//! use cln_backup::rusqlite::Connection;
//! use cln_backup::{lifecycle, Model, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("app.sqlite3");
//! let conn = Connection::open(&db)?;
//! conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")?;
//! // A database at the application's version 1, not yet backed up.
//! let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
//! lifecycle::snapshot_connection(&store, &conn, 1)?;
//! // Then, at every start, and now and then.
//! assert!(store.reconcile(1)?.may_continue());
//! assert!(lifecycle::verify_against(&store.reader()?, Some(&db), None)?.difference.is_none());
//! # Ok(()) }
//! ```

use crate::atomic_file::{ScratchDir, TempFile};
use crate::compare::{compare_databases, Difference, Labels};
use crate::destination::{Destination, Head};
use crate::error::{Error, Result};
use crate::replay::{replay_store, Progress};
use crate::store::{Reader, SnapshotInfo, Store};
use crate::version::data_version;
use std::path::Path;

/// What [`reconcile`] found, and did.
///
/// ```
/// use cln_backup::lifecycle::Reconciled;
/// use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// // The application's database says it committed version 3.
/// let what_to_do = match store.reconcile(3)? {
///     Reconciled::Match { .. } | Reconciled::Rewound { .. } => "go on",
///     Reconciled::DatabaseBehind { .. } => "restore the database",
///     Reconciled::BackupBehind { committed: 3, backup: 1 } => "take a new backup",
///     other => panic!("{other:?}"),
/// };
/// assert_eq!(what_to_do, "take a new backup");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reconciled {
    /// The backup's version is the one the application committed: go on.
    Match {
        /// The version both are at.
        version: u32,
    },
    /// The backup held one change more, which the application reported but
    /// never committed (it stopped between the report and its `COMMIT`, or
    /// the `COMMIT` failed): it was removed from the backup. Go on.
    Rewound {
        /// The version of the change removed.
        removed: u32,
        /// The version the backup is at now, the application's.
        version: u32,
    },
    /// The backup is ahead of the application's database by more than the
    /// one change that may be rewound: the database lost changes it had
    /// committed (a database restored from an older copy, for example).
    /// Nothing was changed: restore the database from the backup before the
    /// application goes on.
    DatabaseBehind {
        /// The version the application's database is at.
        committed: u32,
        /// The version the backup is at.
        backup: u32,
    },
    /// Any other disagreement (SPEC section 2, "otherwise"): the
    /// application committed changes the backup never received (it ran
    /// without the backup), or the backup holds a change the database did
    /// not commit that may no longer be rewound (a second rewind in a row).
    /// Nothing was changed: the backup cannot restore the database as it
    /// is; take a new backup ([`snapshot_connection`] into a new store).
    BackupBehind {
        /// The version the application's database is at.
        committed: u32,
        /// The version the backup is at.
        backup: u32,
    },
}

impl Reconciled {
    /// Whether the application may go on writing: the versions now agree.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// // Version 2 was reported but never committed: rewound, go on.
    /// assert!(store.reconcile(1)?.may_continue());
    /// // A database that ran on without the backup: stop.
    /// assert!(!store.reconcile(5)?.may_continue());
    /// # Ok(()) }
    /// ```
    pub fn may_continue(self) -> bool {
        matches!(self, Reconciled::Match { .. } | Reconciled::Rewound { .. })
    }
}

/// Bring the backup `dest` in line with `committed`, the version the
/// application's database last committed, as the application starts and
/// before it reports any change: see [`Reconciled`] for the four outcomes.
/// Only [`Reconciled::Rewound`] changes the backup.
///
/// ```
/// use cln_backup::lifecycle::{reconcile, Reconciled};
/// use cln_backup::{FileDestination, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
/// // The application stopped before committing version 2.
/// let dest = FileDestination::new(store);
/// assert_eq!(reconcile(&dest, 1)?, Reconciled::Rewound { removed: 2, version: 1 });
/// assert_eq!(reconcile(&dest, 1)?, Reconciled::Match { version: 1 });
/// # Ok(()) }
/// ```
pub fn reconcile(dest: &dyn Destination, committed: u32) -> Result<Reconciled> {
    decide(dest.head()?, committed, || dest.rewind().map(|_| ()))
}

impl Store {
    /// [`reconcile`] this store with `committed`, the version the
    /// application's database last committed.
    ///
    /// ```
    /// use cln_backup::lifecycle::Reconciled;
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// assert_eq!(store.reconcile(2)?, Reconciled::Match { version: 2 });
    /// // A database still at version 0 lost a change it had committed.
    /// let found = store.reconcile(0)?;
    /// assert_eq!(found, Reconciled::DatabaseBehind { committed: 0, backup: 2 });
    /// assert!(!found.may_continue());
    /// # Ok(()) }
    /// ```
    pub fn reconcile(&self, committed: u32) -> Result<Reconciled> {
        let status = self.status()?;
        let head = Head::new(status.version, status.prev_version, status.rewind_allowed);
        decide(head, committed, || self.rewind().map(|_| ()))
    }
}

/// The rule of SPEC section 2 on a head; `rewind` is called for the one
/// outcome that changes the backup.
fn decide(head: Head, committed: u32, rewind: impl FnOnce() -> Result<()>) -> Result<Reconciled> {
    if head.version == committed {
        return Ok(Reconciled::Match { version: committed });
    }
    if head.prev_version == Some(committed) && head.rewind_allowed {
        rewind()?;
        return Ok(Reconciled::Rewound { removed: head.version, version: committed });
    }
    let prev = head.prev_version.unwrap_or(head.version);
    Ok(if prev > committed {
        Reconciled::DatabaseBehind { committed, backup: head.version }
    } else {
        Reconciled::BackupBehind { committed, backup: head.version }
    })
}

/// Take a consistent copy of the live database behind `conn` with SQLite's
/// online backup, and store it in `store` as its snapshot at `version`
/// (checked as [`Store::add_snapshot`] checks an image). For a new store,
/// or one whose head is `version`.
///
/// `version` must be the version of what `conn` shows: call it with the
/// application's writer lock held, outside any transaction, so that no
/// change is committed meanwhile. The copy goes to a temporary file beside
/// the store, removed when done.
///
/// ```
/// use cln_backup::rusqlite::Connection;
/// use cln_backup::{lifecycle, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let conn = Connection::open(dir.path().join("wallet.sqlite3"))?;
/// conn.execute_batch("CREATE TABLE utxos (txid BLOB, value REAL); INSERT INTO utxos VALUES (x'00', 0.5)")?;
/// let store = Store::create_with(dir.path().join("wallet.redb"), Model::Application { foreign_keys: true })?;
/// // The application's database is at its version 7.
/// let info = lifecycle::snapshot_connection(&store, &conn, 7)?;
/// assert_eq!((info.version, store.version()), (7, 7));
/// # Ok(()) }
/// ```
pub fn snapshot_connection(store: &Store, conn: &rusqlite::Connection, version: u32) -> Result<SnapshotInfo> {
    let tmp = TempFile::create(store.path(), "snapshot")?;
    let copy = tmp.path().to_path_buf();
    {
        let mut to = rusqlite::Connection::open(&copy).map_err(|e| Error::sqlite(&copy, e))?;
        let backup = rusqlite::backup::Backup::new(conn, &mut to).map_err(|e| Error::sqlite(&copy, e))?;
        // Pages a step; SQLite's own busy handling applies between steps.
        backup
            .run_to_completion(1024, std::time::Duration::from_millis(10), None)
            .map_err(|e| Error::sqlite(&copy, e))?;
        drop(backup);
        to.close().map_err(|(_, e)| Error::sqlite(&copy, e))?;
    }
    store.add_snapshot_file(version, &copy)
}

/// What [`verify_against`] found.
///
/// ```
/// use cln_backup::{lifecycle, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// store.add_change(2, &["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"])?;
/// // Without a database to compare with: the restore and its checks only.
/// let found = lifecycle::verify_against(&store.reader()?, None, None)?;
/// assert_eq!((found.version, found.changes, found.statements), (2, 2, 3));
/// assert!(found.difference.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Verified {
    /// The version the backup was restored to (its head).
    pub version: u32,
    /// Changes replayed after the snapshot.
    pub changes: u64,
    /// Statements executed.
    pub statements: u64,
    /// The first difference between the restored database and the one
    /// compared, `None` when they are equal (or none was given).
    pub difference: Option<Difference>,
}

/// Restore the head of the store read by `reader` into a scratch file (its
/// hash chain and snapshot checked as they are read, SQLite's integrity
/// check at the end), then, given `against`, compare the result with that
/// database, schema and every row, REAL values bit for bit. Neither the
/// store nor `against` is written (`against` is read in one read
/// transaction). The scratch file is removed when done.
///
/// ```
/// use cln_backup::rusqlite::Connection;
/// use cln_backup::{lifecycle, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let live = dir.path().join("app.sqlite3");
/// let conn = Connection::open(&live)?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// for (v, sql) in [(1, "CREATE TABLE t (x REAL)"), (2, "INSERT INTO t VALUES (0.30000000000000004)")] {
///     conn.execute_batch(sql)?;
///     store.add_change(v, &[sql])?;
/// }
/// let found = lifecycle::verify_against(&store.reader()?, Some(&live), None)?;
/// assert!(found.difference.is_none());
/// // A value rounded to 15 digits on the way is caught.
/// conn.execute_batch("UPDATE t SET x = 0.3")?;
/// let found = lifecycle::verify_against(&store.reader()?, Some(&live), None)?;
/// assert!(found.difference.is_some());
/// # Ok(()) }
/// ```
pub fn verify_against(reader: &Reader, against: Option<&Path>, progress: Option<&Progress>) -> Result<Verified> {
    let scratch = ScratchDir::new("verify")?;
    let db = scratch.path().join("restored.sqlite3");
    std::fs::File::create(&db).map_err(|e| Error::io(&db, e))?;
    let head = reader.head();
    let replayed = replay_store(reader, head, &db, progress)?;
    let difference = match against {
        Some(against) => compare_databases(&db, against, Labels::BACKUP_AND_LIVE)?,
        None => None,
    };
    Ok(Verified { version: data_version(head), changes: replayed.changes, statements: replayed.statements, difference })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn head(version: u32, prev: Option<u32>, rewind: bool) -> Head {
        Head::new(version, prev, rewind)
    }

    #[test]
    fn the_four_outcomes_and_only_a_rewind_touches_the_backup() {
        let never = || -> Result<()> { panic!("rewound") };
        assert_eq!(decide(head(5, Some(4), true), 5, never).unwrap(), Reconciled::Match { version: 5 });
        let mut rewound = false;
        let r = decide(head(5, Some(4), true), 4, || {
            rewound = true;
            Ok(())
        });
        assert_eq!(r.unwrap(), Reconciled::Rewound { removed: 5, version: 4 });
        assert!(rewound);
        // Twice in a row is not allowed: the backup holds a change it can
        // no longer take back (SPEC section 2, "otherwise").
        assert_eq!(
            decide(head(5, Some(4), false), 4, never).unwrap(),
            Reconciled::BackupBehind { committed: 4, backup: 5 }
        );
        assert_eq!(
            decide(head(9, Some(8), true), 3, never).unwrap(),
            Reconciled::DatabaseBehind { committed: 3, backup: 9 }
        );
        assert_eq!(
            decide(head(5, Some(4), true), 7, never).unwrap(),
            Reconciled::BackupBehind { committed: 7, backup: 5 }
        );
    }

    #[test]
    fn a_rewind_that_fails_is_an_error_not_an_outcome() {
        let r = decide(head(5, Some(4), true), 4, || Err(Error::Rewind { reason: "test" }));
        assert!(matches!(r, Err(Error::Rewind { .. })));
    }
}
