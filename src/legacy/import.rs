//! Import of a legacy `.dbak` file into a store, and restore straight from one.
//!
//! Owns carrying out a [`Plan`]: the snapshot streamed into the store (or
//! into the staged restore file), then the committed transaction records in
//! order. The whole file is read and checked before anything is written, so
//! bad input leaves the store (or the restore destination) untouched. It
//! must not decide what was committed (that is [`super::normalise`]).

use super::dbak::DbakReader;
use super::normalise::{self, Plan};
use crate::atomic_file::{NewOwner, Replace, TempFile};
use crate::error::{Error, Result};
use crate::restore::{self, Progress, Replayer, Staged};
use crate::store::{Added, Store};
use crate::version::data_version;
use std::io::Write;
use std::path::Path;

/// What an import did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
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
        restore::tick(progress, done);
    }
    bulk.finish()?;
    restore::report_done(progress, done);
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
pub fn import_new(dbak: &Path, store_path: &Path) -> Result<ImportReport> {
    import_new_with_progress(dbak, store_path, None)
}

/// [`import_new`], calling `progress` with the number of records imported so
/// far (the legacy header's `version_count` is their number, near enough for
/// a progress bar).
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

/// Restore a legacy file straight into `dest`, with the same reading as
/// [`import`] (rewound transactions dropped). `opts.to_version` picks an
/// earlier version the file holds.
pub fn restore_dbak(dbak: &Path, dest: &Path, opts: &restore::Options) -> Result<restore::Report> {
    let mut file = DbakReader::open(dbak)?;
    let plan = normalise::plan(&mut file)?;
    let target = plan.target(opts.to_version)?;
    let mut staged = Staged::new(dbak, dest, opts.force)?;
    if let Some(snap) = &plan.snapshot {
        let staged_path = staged.path().to_path_buf();
        let mut w = std::io::BufWriter::with_capacity(1 << 20, staged.file()?);
        file.copy_snapshot(snap, &mut w)?;
        w.flush().map_err(|e| Error::io(&staged_path, e))?;
    }
    // lightningd opens its database with foreign keys on.
    let mut replayer = Replayer::open(staged.path(), true)?;
    let mut changes = 0u64;
    for step in plan.steps_upto(target) {
        let statements = file.statements(&step.record)?;
        replayer.apply(&statements)?;
        if !step.repeat {
            changes += 1;
            restore::tick(opts.progress.as_ref(), changes);
        }
    }
    restore::report_done(opts.progress.as_ref(), changes);
    let statements = replayer.statements;
    replayer.finish(data_version(target))?;
    let placed = staged.persist(data_version(target))?;
    Ok(restore::Report {
        path: placed.path,
        version: data_version(target),
        seq: target,
        changes,
        statements,
        bytes: placed.bytes,
        ownership: placed.ownership,
        moved_aside: placed.moved_aside,
    })
}
