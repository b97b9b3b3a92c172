//! The change log as flat, human-readable SQL.
//!
//! Owns the text: a heading naming the store and the versions, whether the
//! log starts from a snapshot (binary, not included) or from an empty
//! database, `PRAGMA foreign_keys = ON;`, then one block per version headed
//! with its time. It must not replay anything.

use super::{ExportReport, Output};
use crate::error::{Error, Result};
use crate::replay::{self, fix_pre_4090, Progress};
use crate::store::Reader;
use crate::version::{data_version, Seq};
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write the change log up to `upto` as flat, human-readable SQL: one block
/// per version, headed `-- version N (time)`, each statement ending with `;`.
///
/// Statements are written as lightningd executed them, with the pre-4090
/// expansion bug mended, so that the file replays. It starts with
/// `PRAGMA foreign_keys = ON;` because lightningd runs with foreign keys on
/// and the log relies on cascades. A snapshot, when the store has one, is
/// binary and not included: the file replays on top of it, and a leading
/// comment says so ([`super::export_dump`] writes the whole database instead). A change
/// imported from a `.dbak`, which records no times, is headed
/// `-- version N (time not recorded: imported from a .dbak)`.
///
/// ```
/// use cln_backup::{export, restore, rusqlite::Connection};
/// use cln_backup::compare::{compare_databases, Labels};
/// # use cln_backup::{version::bump_statement, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
/// # }
/// let reader = store.reader()?;
/// let out = dir.path().join("log.sql");
/// export::export_sql(&reader, reader.head(), &out, false, None)?;
/// let text = std::fs::read_to_string(&out)?;
/// assert!(text.contains("PRAGMA foreign_keys = ON;\n\n-- version 1 ("));
/// assert!(text.contains("INSERT INTO vars VALUES ('v3', 3);\n"));
///
/// // Run on an empty database, it makes what a restore makes.
/// let replayed = dir.path().join("replayed.sqlite3");
/// Connection::open(&replayed)?.execute_batch(&text)?;
/// let restored = restore::restore_store(&store, &dir.path().join("restored.sqlite3"), &Default::default())?;
/// assert_eq!(compare_databases(&restored.path, &replayed, Labels::RESTORED_AND_EXPECTED)?, None);
/// # Ok(()) }
/// ```
pub fn export_sql(
    reader: &Reader,
    upto: Seq,
    out: &Path,
    force: bool,
    progress: Option<&Progress>,
) -> Result<ExportReport> {
    let output = Output::new(reader, upto, out, force)?;
    let snapshot = reader.snapshot_for(upto);
    let tmp_path = output.path().to_path_buf();
    let io = |e| Error::io(&tmp_path, e);
    let mut file = output.tmp.reopen()?;
    let mut w = BufWriter::with_capacity(1 << 20, &mut file);
    let lo = snapshot.as_ref().map(|s| s.seq).unwrap_or(0);
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
             -- these statements apply on top of it. The dump export writes the whole database instead.",
            s.version, s.size
        ),
        None => writeln!(w, "-- The log starts from an empty database."),
    }
    .map_err(io)?;
    let model = reader.model();
    match model {
        crate::Model::Lightningd => writeln!(
            w,
            "-- lightningd runs with foreign keys on, and the log relies on its cascades.\nPRAGMA foreign_keys = ON;"
        ),
        _ => {
            let on = crate::replay::foreign_keys_at_start(model, snapshot.as_ref());
            writeln!(
                w,
                "-- The application declared foreign keys {}.\nPRAGMA foreign_keys = {};",
                if on { "on" } else { "off" },
                if on { "ON" } else { "OFF" }
            )
        }
    }
    .map_err(io)?;
    let mut records = 0u64;
    let mut changes = 0u64;
    for change in reader.changes(upto)? {
        let change = change?;
        changes += 1;
        replay::tick(progress, changes);
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
                let s = if model.is_lightningd() { fix_pre_4090(s) } else { std::borrow::Cow::Borrowed(s.as_str()) };
                let s = s.trim_end().trim_end_matches(';').trim_end();
                writeln!(w, "{s};").map_err(io)?;
            }
            records += 1;
        }
    }
    replay::report_done(progress, changes);
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
