//! # cln-backup
//!
//! Durable, exact backups of a Core Lightning node's SQLite database.
//!
//! lightningd reports every database transaction through its `db_write` hook
//! before it commits. This library keeps those transactions in a change log in
//! one [redb](https://docs.rs/redb) file per node, beside snapshots of the
//! database, and rebuilds `lightningd.sqlite3` from them exactly. It knows
//! nothing of lightningd's protocol: the plugin, the command line and any
//! wallet manager that embeds it are front ends over the same calls.
//!
//! The types an embedder reaches for first are re-exported here, so that
//! `use cln_backup::{...}` covers the common case; the modules group the
//! functions (`restore::restore_store`, `compact::compact`, ...). Report
//! types whose own name says little outside their module are re-exported
//! under a longer one: [`RestoreReport`] is `restore::Report`,
//! [`CompactStats`] is `compact::Stats`.
//!
//! ```
//! use cln_backup::{compact, restore, Added, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("node.redb"))?;
//! // Each transaction as lightningd reports it: statements, then the bump
//! // of `data_version` to the version it carries.
//! let added = store.add_change(1, &[
//!     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
//!     "INSERT INTO vars VALUES ('data_version', 0)",
//!     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
//! ])?;
//! assert_eq!(added, Added::New(1));
//! for v in 2..=3 {
//!     store.add_change(v, &[
//!         format!("INSERT INTO vars VALUES ('v{v}', {v})"),
//!         cln_backup::version::bump_statement(v),
//!     ])?;
//! }
//! assert_eq!(store.version(), 3);
//!
//! // Fold the old changes into a base snapshot; the last one stays a change.
//! let stats = compact::compact(&store, &Default::default())?;
//! assert_eq!(stats.snapshot_version, Some(2));
//!
//! // Rebuild the database, checked and renamed into place whole.
//! let dest = dir.path().join("lightningd.sqlite3");
//! let report = restore::restore_store(&store, &dest, &restore::Options::default())?;
//! assert_eq!(report.version, 3);
//! assert_eq!(report.path, dest);
//! # Ok(()) }
//! ```
//!
//! An application with a SQLite database of its own uses the same store
//! with its own change model ([`Model::Application`]: statements kept and
//! replayed exactly, the version counter in the store, foreign keys as
//! declared), the calls of [`lifecycle`] around its database, [`render`]
//! for exact literals, and, with the feature `tokio`, an async handle
//! (`AsyncStore`). EMBEDDING.md in the repository is the guide.
//!
//! ## Modules
//!
//! - [`store`]: the redb file: change log, snapshots, metadata; [`Store`] and its [`Reader`].
//! - [`restore`]: a replayed database put safely where lightningd opens it.
//! - [`model`]: a store's change model, lightningd's or an application's own.
//! - [`lifecycle`]: reconcile at start, snapshot of a live connection, verify against a live database.
//! - [`replay`]: changes into SQLite exactly as lightningd executed them.
//! - [`render`]: parameter values as exact SQL literals, for statements reported as text.
//! - `async_store` (feature `tokio`): [`Store`]'s calls on tokio's blocking pool.
//! - [`compact`]: fold old changes into a new snapshot; retention and the automatic policy.
//! - [`timespec`]: points in time and ages as people write them (`--to-time`, retention).
//! - [`compare`]: two databases, schema and rows, and their first difference.
//! - [`export`]: the change log as flat SQL, or the database as `sqlite3 .dump` text.
//! - [`legacy`]: the Python plugin's `.dbak` files: read, write, import, export, restore.
//! - [`destination`]: the [`Destination`] trait the plugin writes through, and store URLs.
//! - [`lockfile`]: `backup.lock`, which tells the plugin where its store is.
//! - [`version`]: `data_version` arithmetic and lightningd's version bump.
//! - [`atomic_file`]: files placed whole or not at all, and scratch directories.
//! - [`error`]: the one [`Error`] type; every variant names its file or version.
//!
//! The record format (envelopes, hash chain, statement codec) is private:
//! what a record holds reaches callers as [`Change`]s.

#![warn(missing_docs)]

#[cfg(feature = "tokio")]
pub mod async_store;
pub mod atomic_file;
pub mod compact;
pub mod compare;
pub mod destination;
pub mod encryption;
pub mod error;
pub mod export;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod legacy;
pub mod lifecycle;
pub mod lockfile;
pub mod model;
mod pace;
mod record;
pub mod render;
pub mod replay;
pub mod restore;
pub mod store;
pub mod timespec;
pub mod version;

/// The SQLite binding this library is built with: rusqlite 0.43, SQLite
/// bundled (libsqlite3-sys 0.40). One program can link only one SQLite
/// (`links = "sqlite3"`), so an application that opens its own database
/// uses this one, through this path or by depending on the same versions;
/// [`lifecycle::snapshot_connection`] takes its connection.
pub use rusqlite;

#[cfg(feature = "tokio")]
pub use async_store::AsyncStore;
pub use compact::Stats as CompactStats;
pub use compare::Difference;
pub use destination::{Destination, FileDestination, Head, RestoreSource};
pub use error::{Cause, Error, ErrorKind, Result};
pub use export::ExportReport;
pub use legacy::ImportReport;
pub use lockfile::Repointed;
pub use model::Model;
pub use record::{now_ms, utc_iso8601, Change, CompactionRecord, Transaction, TIME_NOT_RECORDED};
pub use replay::{Progress, Replayed};
pub use restore::{MovedAside, Report as RestoreReport};
pub use store::{Added, Reader, SnapshotInfo, Status, Store};
pub use version::Seq;
