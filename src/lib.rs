//! # cln-backup
//!
//! Durable, exact backups of a Core Lightning node's SQLite database.
//!
//! lightningd reports every database transaction through its `db_write` hook
//! before it commits. This library keeps those transactions in a change log in
//! one [redb](https://docs.rs/redb) file per node, beside a base snapshot of the
//! database, and rebuilds `lightningd.sqlite3` from them exactly. It knows
//! nothing of lightningd's protocol: the plugin, the command line and any
//! wallet manager that embeds it are front ends over the same calls.
//!
//! ```
//! use cln_backup::{restore, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("node.redb"))?;
//! // Transaction 1, as lightningd reports it: statements, then the version bump.
//! store.add_change(1, &[
//!     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
//!     "INSERT INTO vars VALUES ('data_version', 0)",
//!     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
//! ])?;
//! let dest = dir.path().join("lightningd.sqlite3");
//! let report = restore::restore_store(&store, &dest, &restore::Options::default())?;
//! assert_eq!(report.version, 1);
//! # Ok(()) }
//! ```

pub mod atomic_file;
pub mod compact;
pub mod compare;
pub mod destination;
pub mod error;
pub mod export;
pub mod legacy;
pub mod lockfile;
pub mod record;
pub mod replay;
pub mod restore;
pub mod store;
pub mod version;

pub use error::{Error, Result};
pub use record::{Change, Transaction};
pub use store::{Added, Reader, SnapshotInfo, Status, Store};
