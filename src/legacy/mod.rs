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
//! - [`dbak`]: the file format (header, records, reader and writer);
//! - [`normalise`]: which records lightningd committed;
//! - [`import`](mod@import): legacy file into a store, or straight into a database;
//! - [`export`](mod@export): a store out as `.dbak`.

pub mod dbak;
pub mod export;
pub mod import;
pub mod normalise;

pub use dbak::is_dbak;
pub use export::export_dbak;
pub use import::{import, import_new, import_new_with_progress, restore_dbak, ImportReport};
