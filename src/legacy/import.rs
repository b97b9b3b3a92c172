//! Import of a legacy `.dbak` file into a store, and restore straight from one.
//!
//! Owns carrying out a [`Plan`]: the snapshot streamed into the store (or
//! into the staged restore file), then the committed transaction records in
//! order, added to the store or read as changes for [`crate::replay`]. The
//! whole file is read and checked before anything is written, so bad input
//! leaves the store (or the restore destination) untouched. It must not
//! decide what was committed (that is [`super::normalise`]), nor apply
//! statements itself.

use super::dbak::DbakReader;
use super::normalise::{self, Plan, Step};
use crate::atomic_file::{NewOwner, Replace, TempFile};
use crate::error::{Error, Result};
use crate::record::{Change, Transaction, TIME_NOT_RECORDED};
use crate::replay::{self, Progress};
use crate::restore;
use crate::store::{Added, Store};
use crate::version::{data_version, Seq};
use std::iter::Peekable;
use std::path::Path;

/// What an import did.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let image = dir.path().join("image.sqlite3");
/// # let conn = cln_backup::rusqlite::Connection::open(&image)?;
/// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
/// #                     INSERT INTO vars VALUES ('data_version', 1);")?;
/// # drop(conn);
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_snapshot(1, std::fs::metadata(&image)?.len(), &mut std::fs::File::open(&image)?)?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let report = legacy::import_new(&dbak, &dir.path().join("node.redb"))?;
/// assert_eq!(report.snapshot_version, Some(1));
/// assert_eq!((report.records, report.changes, report.version), (2, 1, 2));
/// assert_eq!((report.rewound, report.unacknowledged), (0, 0));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ImportReport {
    /// Whole records in the legacy file.
    pub records: u64,
    /// Transaction records imported (lone PRAGMA reports included).
    pub changes: u64,
    /// Rewound transactions dropped (replaced by a later record with the same version).
    pub rewound: u64,
    /// A last record dropped because the plugin never acknowledged it (0 or 1).
    pub unacknowledged: u64,
    /// Version of the base snapshot, if the file had one.
    pub snapshot_version: Option<u32>,
    /// Version of the store after the import.
    pub version: u32,
}

fn report(plan: &Plan) -> ImportReport {
    ImportReport {
        records: plan.records,
        changes: plan.steps.len() as u64,
        rewound: plan.rewound.len() as u64,
        unacknowledged: u64::from(plan.unacknowledged.is_some()),
        snapshot_version: plan.snapshot.map(|r| r.version),
        version: data_version(plan.head),
    }
}

/// Import `dbak` into `store`, which must be empty.
///
/// The file is read and checked whole first; a bad file leaves the store as
/// it was. Rewound transactions are never added (so the store needs no
/// rewind). An error while writing (disk full, say) can leave the store
/// partly filled: use [`import_new`] to get all or nothing.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
/// use cln_backup::Store;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// let report = legacy::import(&dbak, &store)?;
/// assert_eq!(store.version(), report.version);
/// // Only into an empty store.
/// let err = legacy::import(&dbak, &store).unwrap_err().to_string();
/// assert!(err.contains("the store is not empty"), "{err}");
/// # Ok(()) }
/// ```
pub fn import(dbak: &Path, store: &Store) -> Result<ImportReport> {
    let status = store.status()?;
    if status.changes != 0 || status.snapshot.is_some() || status.seq != 0 {
        return Err(Error::legacy(
            dbak,
            format!(
                "cannot import into {}: the store is not empty (it is at version {})",
                store.path().display(),
                status.version
            ),
        ));
    }
    let mut file = DbakReader::open(dbak)?;
    let plan = normalise::plan(&mut file)?;
    apply(&mut file, &plan, store, None)?;
    Ok(report(&plan))
}

/// Write `plan` into `store`: the snapshot in one commit, then the records
/// through a [`crate::store::BulkLoad`] (the checks of `add_change`, large
/// batches, one sync at the end). `progress` gets the number of records
/// imported so far.
fn apply(file: &mut DbakReader, plan: &Plan, store: &Store, progress: Option<&Progress>) -> Result<()> {
    if let Some(snap) = &plan.snapshot {
        let mut image = file.snapshot(snap)?;
        let info = store.add_snapshot(snap.version, &mut image)?;
        if info.size != u64::from(snap.length) {
            return Err(Error::legacy(
                file.path(),
                format!(
                    "snapshot at offset {} is {} bytes but {} were stored (the file changed while being read)",
                    snap.offset, snap.length, info.size
                ),
            ));
        }
    }
    let mut bulk = store.bulk_load()?;
    let mut done = 0u64;
    for step in &plan.steps {
        let statements = file.statements(&step.record)?;
        let added = bulk.add_change_without_time(step.record.version, &statements)?;
        let expected = if step.repeat { Added::Repeated(step.seq) } else { Added::New(step.seq) };
        if added != expected {
            return Err(Error::legacy(
                file.path(),
                format!("record at offset {} was stored as {added:?}, expected {expected:?}", step.record.offset),
            ));
        }
        done += 1;
        replay::tick(progress, done);
    }
    bulk.finish()?;
    replay::report_done(progress, done);
    Ok(())
}

/// Import `dbak` into a new store at `store_path`, all or nothing.
///
/// The store is built in a temporary file beside it
/// (`.cln-backup-import-<pid>-<random>`, see [`crate::atomic_file`]) and
/// linked into place only once the whole import succeeded, never over a
/// store that appeared meanwhile; on failure the partial file is removed, so
/// no store exists at `store_path`. An existing `store_path` is refused. The
/// temporary of an interrupted import is removed by the next one.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
/// use cln_backup::Store;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let store = dir.path().join("node.redb");
/// let report = legacy::import_new(&dbak, &store)?;
/// assert_eq!(Store::open(&store)?.version(), report.version);
/// // Never over an existing store.
/// assert!(legacy::import_new(&dbak, &store).is_err());
/// # Ok(()) }
/// ```
pub fn import_new(dbak: &Path, store_path: &Path) -> Result<ImportReport> {
    import_new_with_progress(dbak, store_path, None)
}

/// [`import_new`], calling `progress` with the number of records imported so
/// far (the legacy header's `version_count` is their number, near enough for
/// a progress bar).
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
/// use cln_backup::replay::Progress;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use std::sync::Arc;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let done = Arc::new(AtomicU64::new(0));
/// let seen = done.clone();
/// let progress: Progress = Arc::new(move |n| seen.store(n, Ordering::Relaxed));
/// let report = legacy::import_new_with_progress(&dbak, &dir.path().join("node.redb"), Some(&progress))?;
/// assert_eq!(done.load(Ordering::Relaxed), report.changes, "the last call gives the total");
/// # Ok(()) }
/// ```
pub fn import_new_with_progress(dbak: &Path, store_path: &Path, progress: Option<&Progress>) -> Result<ImportReport> {
    if crate::atomic_file::same_file(dbak, store_path) {
        return Err(Error::SameFile { input: dbak.to_path_buf(), output: store_path.to_path_buf() });
    }
    if store_path.exists() {
        return Err(Error::AlreadyExists { path: store_path.to_path_buf() });
    }
    let mut file = DbakReader::open(dbak)?;
    let plan = normalise::plan(&mut file)?;
    // The partial store holds nothing that is not still in the legacy file:
    // dropping `tmp` on any error removes it.
    let tmp = TempFile::reserve(store_path, "import")?;
    let store = Store::create(tmp.path())?;
    let applied = apply(&mut file, &plan, &store, progress);
    drop(store);
    applied?;
    tmp.commit(Replace::Never, NewOwner::Process).map_err(|e| match e {
        Error::DestinationExists { path } => Error::AlreadyExists { path },
        e => e,
    })?;
    Ok(report(&plan))
}

/// What a restore of a legacy file to a version would start from and reach,
/// read as [`restore_dbak`] reads the file, without writing anything.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let image = dir.path().join("image.sqlite3");
/// # let conn = cln_backup::rusqlite::Connection::open(&image)?;
/// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
/// #                     INSERT INTO vars VALUES ('data_version', 1);")?;
/// # drop(conn);
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_snapshot(1, std::fs::metadata(&image)?.len(), &mut std::fs::File::open(&image)?)?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let r = legacy::restorable(&dbak, None)?;
/// assert!(r.snapshot, "the file starts from a snapshot");
/// assert_eq!((r.target, r.head), (2, 2));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Restorable {
    /// The store version (`epoch << 32 | data_version`) the restore would reach.
    pub target: Seq,
    /// The store version of the file's last committed record (or of its base).
    pub head: Seq,
    /// Whether the file starts with a snapshot record (the base a restore starts from).
    pub snapshot: bool,
}

/// What [`restore_dbak`] to `to_version` (a `data_version`, or a store
/// version; `None` for the head) would restore from `dbak`, refused as it
/// would be when the file does not hold that version. Reads every record
/// header of the file; writes nothing.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// assert_eq!(legacy::restorable(&dbak, None)?.target, 2);
/// assert_eq!(legacy::restorable(&dbak, Some(1))?.target, 1);
/// assert!(legacy::restorable(&dbak, Some(3)).is_err(), "the file does not reach version 3");
/// assert_eq!(std::fs::read_dir(dir.path())?.count(), 1, "nothing written");
/// # Ok(()) }
/// ```
pub fn restorable(dbak: &Path, to_version: Option<u64>) -> Result<Restorable> {
    let mut file = DbakReader::open(dbak)?;
    let (plan, target) = plan_for(&mut file, to_version)?;
    Ok(Restorable { target, head: plan.head, snapshot: plan.snapshot.is_some() })
}

/// The plan of `file` and the version a restore to `to_version` means.
///
/// Decision: a file damaged past some version (cut short, a record of an
/// unknown type or not UTF-8) still restores any version before the
/// damage that `to_version` names; the head, or a version at or past the
/// damage, is refused with the error that names it.
fn plan_for(file: &mut DbakReader, to_version: Option<u64>) -> Result<(Plan, Seq)> {
    let (plan, damage) = normalise::plan_before_damage(file)?;
    match (damage, to_version) {
        (None, _) => {
            let target = plan.target(to_version)?;
            Ok((plan, target))
        }
        (Some(damage), None) => Err(damage),
        (Some(damage), Some(_)) => match plan.target(to_version) {
            Ok(target) => Ok((plan, target)),
            Err(_) => Err(match damage {
                Error::Legacy { path, what } if !plan.steps.is_empty() => Error::Legacy {
                    path,
                    what: format!("{what}; the versions before it restore, up to {}", data_version(plan.head)),
                },
                other => other,
            }),
        },
    }
}

/// Restore a legacy file straight into `dest`, with the same reading as
/// [`import`] (rewound transactions dropped). `opts.to_version` picks an
/// earlier version the file holds.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
/// use cln_backup::restore;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let dest = dir.path().join("lightningd.sqlite3");
/// let opts = restore::Options { to_version: Some(1), ..Default::default() };
/// let report = legacy::restore_dbak(&dbak, &dest, &opts)?;
/// assert_eq!((report.version, report.path.as_path()), (1, dest.as_path()));
/// let conn = cln_backup::rusqlite::Connection::open(&dest)?;
/// let version: u32 = conn.query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0))?;
/// assert_eq!(version, 1);
/// # Ok(()) }
/// ```
pub fn restore_dbak(dbak: &Path, dest: &Path, opts: &restore::Options) -> Result<restore::Report> {
    restore::refuse_time(opts, &dbak.display().to_string())?;
    let mut file = DbakReader::open(dbak)?;
    let (plan, target) = plan_for(&mut file, opts.to_version)?;
    let (file, plan) = (&mut file, &plan);
    restore::restore_with(dbak, dest, opts, move |image| {
        if let Some(snap) = &plan.snapshot {
            file.copy_snapshot(snap, image)?;
        }
        let changes = PlanChanges { file, steps: plan.steps.iter().peekable(), upto: target, failed: false };
        Ok((target, crate::Model::Lightningd, FOREIGN_KEYS_AT_START, changes))
    })
}

/// Foreign keys at the start of a legacy file's log, snapshot or not: on.
/// The Python plugin records no foreign-key state, and its snapshot is the
/// file lightningd opens with foreign keys on.
const FOREIGN_KEYS_AT_START: bool = true;

/// A plan's steps up to `upto`, read from the file as changes: a lone report
/// joins the change of the version it repeats, as in a store. Stops after
/// the first error.
struct PlanChanges<'a> {
    file: &'a mut DbakReader,
    steps: Peekable<std::slice::Iter<'a, Step>>,
    upto: Seq,
    failed: bool,
}

impl PlanChanges<'_> {
    fn transaction(&mut self, step: &Step) -> Result<Transaction> {
        Ok(Transaction { time_ms: TIME_NOT_RECORDED, statements: self.file.statements(&step.record)? })
    }

    fn change(&mut self, first: &Step) -> Result<Change> {
        let mut transactions = vec![self.transaction(first)?];
        while let Some(next) = self.steps.next_if(|s| s.repeat && s.seq == first.seq) {
            transactions.push(self.transaction(next)?);
        }
        Ok(Change { seq: first.seq, transactions })
    }
}

impl Iterator for PlanChanges<'_> {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        if self.failed {
            return None;
        }
        let first = self.steps.next_if(|s| s.seq <= self.upto)?;
        let change = self.change(first);
        self.failed = change.is_err();
        Some(change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::dbak::DbakWriter;
    use crate::version::bump_statement;
    use rusqlite::Connection;

    /// A `.dbak` whose snapshot (version 1) holds a parent with two
    /// children that cascade, then version 2 deleting the parent, then a
    /// lone report repeating version 2.
    fn cascading_dbak(dir: &Path) -> std::path::PathBuf {
        let image = dir.join("image.sqlite3");
        let conn = Connection::open(&image).unwrap();
        conn.execute_batch(
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
             INSERT INTO vars VALUES ('data_version', 1);
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE);
             INSERT INTO parent VALUES (1);
             INSERT INTO child VALUES (1, 1), (2, 1);",
        )
        .unwrap();
        drop(conn);
        let path = dir.join("backup.dbak");
        let mut w = DbakWriter::new(std::fs::File::create(&path).unwrap(), &path).unwrap();
        let len = std::fs::metadata(&image).unwrap().len();
        w.add_snapshot(1, len, &mut std::fs::File::open(&image).unwrap()).unwrap();
        w.add_transaction(2, &["DELETE FROM parent WHERE id = 1".to_string(), bump_statement(2)]).unwrap();
        w.add_transaction(2, &["PRAGMA foreign_keys = ON"]).unwrap();
        w.finish().unwrap();
        path
    }

    #[test]
    fn a_legacy_snapshot_replays_with_foreign_keys_on() {
        let dir = tempfile::tempdir().unwrap();
        let dbak = cascading_dbak(dir.path());
        let dest = dir.path().join("lightningd.sqlite3");
        let report = restore_dbak(&dbak, &dest, &restore::Options::default()).unwrap();
        // The lone report belongs to version 2's change, as in a store.
        assert_eq!((report.version, report.changes, report.statements), (2, 1, 3));
        let conn = Connection::open(&dest).unwrap();
        let children: i64 = conn.query_row("SELECT count(*) FROM child", [], |r| r.get(0)).unwrap();
        assert_eq!(children, 0, "the delete cascaded");
    }
}
