//! Exports of a store for people and other tools: flat SQL and a full
//! schema-and-data dump. (The Python plugin's `.dbak` is a legacy format and
//! lives in [`crate::legacy`]; it shares this module's output file.)
//!
//! Owns the output file every export writes: a temporary file beside the
//! destination ([`crate::atomic_file`]), fsync'd and renamed, so a failed
//! export leaves nothing behind; an existing destination is replaced only
//! when asked (keeping its owner, group and mode), and never when it is the
//! store being read. It must not write to the store, and it must not apply
//! statements itself: the dump replays through [`crate::replay`].
//!
//! - [`export_sql`]: the change log as flat SQL (inside: `sql`);
//! - [`export_dump`]: the database at a version as `sqlite3`'s `.dump`
//!   writes it (inside: `dump`, which also serves [`dump()`] of any open
//!   database).
//!
//! ```
//! use cln_backup::{export, Model, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
//! store.add_change(1, &["CREATE TABLE t (x)"])?;
//! store.add_change(2, &["INSERT INTO t VALUES (2)"])?;
//! let reader = store.reader()?;
//! let log = export::export_sql(&reader, reader.head(), &dir.path().join("log.sql"), false, None)?;
//! let dump = export::export_dump(&reader, reader.head(), &dir.path().join("dump.sql"), false, None)?;
//! assert_eq!((log.version, dump.version), (2, 2));
//! // The log holds the statements as reported; the dump, the database they made.
//! assert!(std::fs::read_to_string(&log.path)?.contains("\nINSERT INTO t VALUES (2);\n"));
//! assert!(std::fs::read_to_string(&dump.path)?.contains("\nINSERT INTO t VALUES(2);\n"));
//! # Ok(()) }
//! ```

mod dump;
mod sql;

pub use dump::{dump, export_dump};
pub use sql::export_sql;

use crate::atomic_file::{self, Committed, NewOwner, Ownership, Replace, TempFile};
use crate::error::{Error, Result};
use crate::store::Reader;
use crate::version::Seq;
use std::path::{Path, PathBuf};

/// What an export wrote.
///
/// ```
/// use cln_backup::{export, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let reader = store.reader()?;
/// let out = dir.path().join("log.sql");
/// let report = export::export_sql(&reader, 2, &out, false, None)?;
/// assert_eq!(report.path, out);
/// assert_eq!((report.version, report.snapshot_version, report.records), (2, None, 2));
/// assert_eq!(report.bytes, std::fs::metadata(&out)?.len());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ExportReport {
    /// The output file, in place.
    pub path: PathBuf,
    /// `data_version` exported up to.
    pub version: u32,
    /// Version of the store's snapshot the export starts from, if any.
    pub snapshot_version: Option<u32>,
    /// Transactions written: SQL transactions for `export_sql`, the changes
    /// replayed into the dump for `export_dump`, legacy records for `.dbak`
    /// (including the snapshot record).
    pub records: u64,
    /// Bytes of the output file.
    pub bytes: u64,
    /// The owner, group and mode the output file got.
    pub ownership: Ownership,
}

/// The temporary file an export writes, beside its destination (see
/// [`crate::atomic_file`]): put in place on success, removed if dropped.
pub(crate) struct Output {
    pub(crate) tmp: TempFile,
    force: bool,
}

impl Output {
    /// Refuse a version `upto` the reader cannot export, an output that is
    /// the store being read, or (without `force`) one that exists; then
    /// create the temporary file (mode 0600: exports hold the node's data).
    pub(crate) fn new(reader: &Reader, upto: Seq, dest: &Path, force: bool) -> Result<Output> {
        reader.check_restorable(upto)?;
        if atomic_file::same_file(reader.path(), dest) {
            return Err(Error::SameFile { input: reader.path().to_path_buf(), output: dest.to_path_buf() });
        }
        if dest.exists() && !force {
            return Err(Error::DestinationExists { path: dest.to_path_buf() });
        }
        Ok(Output { tmp: TempFile::create(dest, "export")?, force })
    }

    pub(crate) fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// fsync, keep a replaced file's owner, group and mode, rename into place.
    pub(crate) fn persist(self) -> Result<Committed> {
        let replace = if self.force { Replace::Existing } else { Replace::Never };
        self.tmp.commit(replace, NewOwner::Process)
    }
}
