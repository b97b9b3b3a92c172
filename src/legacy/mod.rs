//! Interoperability with the Python backup plugin's `.dbak` files.
//!
//! Owns reading legacy files as that plugin really writes them (every whole
//! record, rewound transactions dropped, a snapshot as base), importing them
//! into a store, restoring them directly, and exporting a store as a legacy
//! file the Python `backup-cli restore` accepts. It must not change how a
//! store stores or how a replay applies statements: it goes through
//! [`Store`](crate::Store)'s public calls, [`crate::replay`] and
//! [`crate::restore`]. The SQL and dump exports are not legacy formats: they
//! are [`crate::export`]'s.
//!
//! The format's reader and writer ([`DbakReader`], [`DbakWriter`]) are
//! public, for tools and tests that read or build `.dbak` files; the layout
//! constants and the header's bytes stay inside `dbak` (a [`Record`] says
//! where it lies, since errors name records by offset). Which records
//! count stays inside too: [`import`], [`restore_dbak`] and [`restorable`]
//! apply it.
//!
//! Inside: `dbak`, the file format (header, records, reader and writer);
//! `normalise`, which records lightningd committed; `import`, a legacy file
//! into a store or straight into a database; `export`, a store out as `.dbak`.
//!
//! ```
//! use cln_backup::legacy::{self, DbakWriter};
//! use cln_backup::version::bump_statement;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let dbak = dir.path().join("backup.dbak");
//! let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
//! w.add_transaction(1, &[
//!     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
//!     "INSERT INTO vars VALUES ('data_version', 0)",
//!     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
//! ])?;
//! w.add_transaction(2, &["INSERT INTO vars VALUES ('lost', 0)".to_string(), bump_statement(2)])?;
//! // lightningd did not commit that one: the plugin appended its next try at the same version.
//! w.add_transaction(2, &["INSERT INTO vars VALUES ('kept', 2)".to_string(), bump_statement(2)])?;
//! w.finish()?;
//!
//! let store = dir.path().join("node.redb");
//! let report = legacy::import_new(&dbak, &store)?;
//! assert_eq!((report.records, report.changes, report.rewound, report.version), (3, 2, 1, 2));
//! assert_eq!(cln_backup::Store::open(&store)?.version(), 2);
//! # Ok(()) }
//! ```

mod dbak;
mod export;
mod import;
mod normalise;

pub use dbak::{is_dbak, DbakReader, DbakWriter, Header, Kind, Record};
pub use export::export_dbak;
pub use import::{import, import_new, import_new_with_progress, restorable, restore_dbak, ImportReport, Restorable};
