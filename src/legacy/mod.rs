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

mod dbak;
mod export;
mod import;
mod normalise;

pub use dbak::{is_dbak, DbakReader, DbakWriter, Header, Kind, Record};
pub use export::export_dbak;
pub use import::{import, import_new, import_new_with_progress, restorable, restore_dbak, ImportReport, Restorable};
