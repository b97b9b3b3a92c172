//! Interoperability with the Python backup plugin's `.dbak` files, and the
//! other export formats.
//!
//! Owns reading legacy files as that plugin really writes them (every whole record, rewound transactions dropped,
//! a snapshot as base), importing them into a store, restoring them
//! directly, and exporting a store as a legacy file the Python
//! `backup-cli restore` accepts, as flat SQL, or as a full `.dump`.
//! It must not change how a store stores or how a restore replays: it goes
//! through [`Store`](crate::Store)'s public calls and [`restore`](crate::restore).
//!
//! - [`dbak`]: the file format (header, records, reader and writer);
//! - [`normalise`]: which records lightningd committed;
//! - [`import`](mod@import): legacy file into a store, or straight into a database;
//! - [`export`](mod@export): a store out as `.dbak`, SQL or a dump;
//! - [`sqldump`]: the `sqlite3 .dump` text format.

pub mod dbak;
pub mod export;
pub mod import;
pub mod normalise;
pub mod sqldump;

pub use dbak::is_dbak;
pub use export::{export_dbak, export_dump, export_sql, ExportReport};
pub use import::{import, import_new, import_new_with_progress, restore_dbak, ImportReport};
