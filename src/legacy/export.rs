//! Export of a store as the Python plugin's legacy `.dbak` file.
//!
//! Owns turning a store's read view into a file the Python plugin's
//! `backup-cli restore` accepts. The output file is
//! [`crate::export`]'s (a temporary beside the destination, renamed on
//! success). It must not write to the store.

use super::dbak::DbakWriter;
use crate::error::{Error, Result};
use crate::export::{ExportReport, Output};
use crate::replay::{self, Progress};
use crate::store::Reader;
use crate::version::{data_version, Seq};
use std::path::Path;

/// Write the store's snapshot and changes up to `upto` as a legacy `.dbak`
/// file that the Python plugin's `backup-cli restore` accepts.
///
/// Layout: the snapshot first (type 2, at the snapshot's version) when the
/// store has one, then one type-1 record per transaction, in order. The
/// header is what the Python plugin's own `add_change` would leave after
/// appending those records: `version` the last record's, `prev_version` the
/// one before it, `offset0` the end of the file, `offset1` the start of the
/// last record, `version_count` the records written.
///
/// Repeated-version reports (lone `PRAGMA foreign_keys`) are written as
/// further records with the same version, after the transaction they
/// followed. The Python reader stops after the first record carrying the
/// header's version, so it skips such reports at the head version; that is
/// harmless, since they change no data (the pragma is a connection setting,
/// not stored in the database), and writing them keeps the file complete:
/// importing it again gives back the same change log.
///
/// ```
/// use cln_backup::{legacy, Store};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # for v in 2..=3 {
/// #     let statements = [format!("INSERT INTO vars VALUES ('v{v}', {v})"), cln_backup::version::bump_statement(v)];
/// #     store.add_change(v, &statements)?;
/// # }
/// let reader = store.reader()?;
/// let out = dir.path().join("backup.dbak");
/// let report = legacy::export_dbak(&reader, reader.head(), &out, false, None)?;
/// assert_eq!((report.version, report.records), (3, 3));
/// assert!(legacy::is_dbak(&out));
/// // Imported again, it gives the same store version.
/// let again = legacy::import_new(&out, &dir.path().join("again.redb"))?;
/// assert_eq!(again.version, store.version());
/// # Ok(()) }
/// ```
pub fn export_dbak(
    reader: &Reader,
    upto: Seq,
    out: &Path,
    force: bool,
    progress: Option<&Progress>,
) -> Result<ExportReport> {
    let output = Output::new(reader, upto, out, force)?;
    let snapshot = reader.snapshot_for(upto);
    let start = snapshot.as_ref().map(|s| s.seq).unwrap_or(0);
    if start >> 32 != upto >> 32 {
        return Err(Error::legacy(
            out,
            format!(
                "the change log wraps data_version past {} between the base and version {}; the legacy format cannot hold that",
                u32::MAX,
                data_version(upto)
            ),
        ));
    }
    let file = output.tmp.reopen()?;
    let mut w = DbakWriter::new(file, output.path())?;
    if let Some(snap) = &snapshot {
        w.add_snapshot_with(snap.version, snap.size, |out| reader.copy_snapshot_for(upto, out))?;
    }
    let mut changes = 0u64;
    for change in reader.changes(upto)? {
        let change = change?;
        for tx in &change.transactions {
            w.add_transaction(change.data_version(), &tx.statements)?;
        }
        changes += 1;
        replay::tick(progress, changes);
    }
    replay::report_done(progress, changes);
    let (file, header) = w.finish()?;
    drop(file);
    let done = output.persist()?;
    Ok(ExportReport {
        path: done.path,
        ownership: done.ownership,
        version: header.version,
        snapshot_version: snapshot.map(|s| s.version),
        records: header.version_count,
        bytes: done.bytes,
    })
}
