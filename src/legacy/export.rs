//! Export of a store: as a legacy `.dbak` file, as flat SQL, or as a full
//! schema-and-data dump.
//!
//! Owns turning a store's read view into files other tools read: the Python
//! plugin's `backup-cli restore` (`.dbak`), people (`--format sql`) and
//! `sqlite3` (`--dump`). Every output is written to a temporary file beside
//! the destination ([`crate::atomic_file`]), fsync'd and renamed, so a failed
//! export leaves nothing behind; an existing destination is replaced only
//! when asked (keeping its owner, group and mode), and never when it is the
//! store being read. It must not write to the store.

use super::dbak::DbakWriter;
use super::sqldump;
use crate::atomic_file::{self, Committed, NewOwner, Ownership, Replace, TempFile};
use crate::error::{Error, Result};
use crate::restore::{self, fix_pre_4090, Progress};
use crate::store::Reader;
use crate::version::{data_version, Seq};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExportReport {
    pub path: PathBuf,
    /// `data_version` exported up to.
    pub version: u32,
    /// Version of the store's snapshot the export starts from, if any.
    pub snapshot_version: Option<u32>,
    /// Transactions written (legacy records for `.dbak`, including the snapshot record).
    pub records: u64,
    /// Bytes of the output file.
    pub bytes: u64,
    /// The owner, group and mode the output file got.
    pub ownership: Ownership,
}

/// The temporary file an export writes, beside its destination (see
/// [`crate::atomic_file`]): put in place on success, removed if dropped.
struct Output {
    tmp: TempFile,
    force: bool,
}

impl Output {
    /// Refuse an output that is the store being read, or (without `force`)
    /// that exists; then create the temporary file (mode 0600: exports hold
    /// the node's data).
    fn new(reader: &Reader<'_>, dest: &Path, force: bool) -> Result<Output> {
        if atomic_file::same_file(reader.path(), dest) {
            return Err(Error::SameFile { input: reader.path().to_path_buf(), output: dest.to_path_buf() });
        }
        if dest.exists() && !force {
            return Err(Error::DestinationExists { path: dest.to_path_buf() });
        }
        Ok(Output { tmp: TempFile::create(dest, "export")?, force })
    }

    fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// fsync, keep a replaced file's owner, group and mode, rename into place.
    fn persist(self) -> Result<Committed> {
        let replace = if self.force { Replace::Existing } else { Replace::Never };
        self.tmp.commit(replace, NewOwner::Process)
    }
}

fn check_upto(reader: &Reader<'_>, upto: Seq) -> Result<()> {
    let (lo, hi) = reader.restorable();
    if upto < lo || upto > hi {
        return Err(Error::NotRestorable {
            asked: upto,
            range: crate::restore::range_text(lo, hi, reader.snapshot().is_some()),
        });
    }
    Ok(())
}

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
pub fn export_dbak(
    reader: &Reader<'_>,
    upto: Seq,
    out: &Path,
    force: bool,
    progress: Option<&Progress>,
) -> Result<ExportReport> {
    check_upto(reader, upto)?;
    let snapshot = reader.snapshot();
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
    let output = Output::new(reader, out, force)?;
    let file = output.tmp.reopen()?;
    let mut w = DbakWriter::new(file, output.path())?;
    if let Some(snap) = &snapshot {
        w.add_snapshot_with(snap.version, snap.size, |out| reader.copy_snapshot(out))?;
    }
    let mut changes = 0u64;
    for change in reader.changes(upto)? {
        let change = change?;
        for tx in &change.transactions {
            w.add_transaction(change.data_version(), &tx.statements)?;
        }
        changes += 1;
        restore::tick(progress, changes);
    }
    restore::report_done(progress, changes);
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

/// Write the change log up to `upto` as flat, human-readable SQL: one block
/// per version, headed `-- version N (time)`, each statement ending with `;`.
///
/// Statements are written as lightningd executed them, with the pre-4090
/// expansion bug mended, so that the file replays. It starts with
/// `PRAGMA foreign_keys = ON;` because lightningd runs with foreign keys on
/// and the log relies on cascades. A snapshot, when the store has one, is
/// binary and not included: the file replays on top of it, and a leading
/// comment says so (`--dump` writes the whole database instead). A change
/// imported from a `.dbak`, which records no times, is headed
/// `-- version N (time not recorded: imported from a .dbak)`.
pub fn export_sql(
    reader: &Reader<'_>,
    upto: Seq,
    out: &Path,
    force: bool,
    progress: Option<&Progress>,
) -> Result<ExportReport> {
    check_upto(reader, upto)?;
    let snapshot = reader.snapshot();
    let output = Output::new(reader, out, force)?;
    let tmp_path = output.path().to_path_buf();
    let io = |e| Error::io(&tmp_path, e);
    let mut file = output.tmp.reopen()?;
    let mut w = BufWriter::with_capacity(1 << 20, &mut file);
    let (lo, _) = reader.restorable();
    writeln!(
        w,
        "-- cln-backup change log of {}, versions {} to {}",
        reader.path().display(),
        data_version(lo),
        data_version(upto)
    )
    .map_err(io)?;
    match &snapshot {
        Some(s) => writeln!(
            w,
            "-- The log starts from a snapshot of the database at version {} ({} bytes, binary, not included):\n\
             -- these statements apply on top of it. Use --dump for a full schema-and-data dump.",
            s.version, s.size
        ),
        None => writeln!(w, "-- The log starts from an empty database."),
    }
    .map_err(io)?;
    writeln!(
        w,
        "-- lightningd runs with foreign keys on, and the log relies on its cascades.\nPRAGMA foreign_keys = ON;"
    )
    .map_err(io)?;
    let mut records = 0u64;
    let mut changes = 0u64;
    for change in reader.changes(upto)? {
        let change = change?;
        changes += 1;
        restore::tick(progress, changes);
        for (i, tx) in change.transactions.iter().enumerate() {
            let time = if tx.time_ms == crate::record::TIME_NOT_RECORDED {
                "time not recorded: imported from a .dbak".to_string()
            } else {
                crate::record::utc_iso8601(tx.time_ms, true)
            };
            if i == 0 {
                writeln!(w, "\n-- version {} ({time})", change.data_version()).map_err(io)?;
            } else {
                writeln!(w, "-- reported again at the same version ({time})").map_err(io)?;
            }
            for s in &tx.statements {
                let s = fix_pre_4090(s);
                let s = s.trim_end().trim_end_matches(';').trim_end();
                writeln!(w, "{s};").map_err(io)?;
            }
            records += 1;
        }
    }
    restore::report_done(progress, changes);
    w.flush().map_err(io)?;
    drop(w);
    drop(file);
    let done = output.persist()?;
    Ok(ExportReport {
        path: done.path,
        ownership: done.ownership,
        version: data_version(upto),
        snapshot_version: snapshot.map(|s| s.version),
        records,
        bytes: done.bytes,
    })
}

/// Write the whole database at `upto` as `sqlite3`'s `.dump` would: the
/// snapshot and changes are replayed into a temporary database beside `out`,
/// which is then dumped (see [`sqldump`]).
pub fn export_dump(
    reader: &Reader<'_>,
    upto: Seq,
    out: &Path,
    force: bool,
    progress: Option<&Progress>,
) -> Result<ExportReport> {
    check_upto(reader, upto)?;
    let output = Output::new(reader, out, force)?;
    // A scratch database beside OUT, removed (with any side files) when dropped.
    let db = TempFile::create(out, "dump")?;
    let replayed = restore::replay_into(reader, upto, db.path(), progress)?;
    let conn = rusqlite::Connection::open_with_flags(db.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| Error::sqlite(db.path(), e))?;
    let tmp_path = output.path().to_path_buf();
    let mut file = output.tmp.reopen()?;
    let mut w = BufWriter::with_capacity(1 << 20, &mut file);
    sqldump::dump(&conn, db.path(), &mut w, &tmp_path)?;
    w.flush().map_err(|e| Error::io(&tmp_path, e))?;
    drop(w);
    drop(conn);
    drop(file);
    let done = output.persist()?;
    Ok(ExportReport {
        path: done.path,
        ownership: done.ownership,
        version: data_version(upto),
        snapshot_version: reader.snapshot().map(|s| s.version),
        records: replayed.changes,
        bytes: done.bytes,
    })
}
