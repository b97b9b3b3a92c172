//! Helpers shared by the integration tests: the CLN-shaped workload and
//! small conveniences over the library. Nothing here may hide a failure:
//! every helper panics with the file and the reason.
#![allow(dead_code)]

// Runs the binary, which exists only with both front ends.
#[cfg(all(feature = "cli", feature = "plugin"))]
pub mod run;
// `cln-backup server` on loopback.
#[cfg(all(feature = "cli", feature = "plugin"))]
pub mod server;
pub mod workload;
// A Garage server on loopback, for the object-storage tests.
pub mod garage;

use cln_backup::restore::{self, Options};
use cln_backup::Store;
use std::path::{Path, PathBuf};
use workload::Txn;

/// Add every transaction to the store, as the plugin would.
pub fn add_all(store: &Store, txns: &[Txn]) {
    for (v, s) in txns {
        store.add_change(*v, s).unwrap_or_else(|e| panic!("add_change({v}) failed: {e}"));
    }
}

/// Restore the store's head (or `to_version`) into a new file under `dir`.
pub fn restore_to(store: &Store, dir: &Path, name: &str, to_version: Option<u64>) -> PathBuf {
    let dest = dir.join(name);
    let opts = Options { to_version, ..Options::default() };
    restore::restore_store(store, &dest, &opts).unwrap_or_else(|e| panic!("restore to {} failed: {e}", dest.display()));
    dest
}

/// Build the reference database for `txns` in a new file under `dir`.
pub fn reference(dir: &Path, name: &str, txns: &[Txn]) -> PathBuf {
    let path = dir.join(name);
    workload::reference_db(&path, txns).unwrap_or_else(|e| panic!("reference {} failed: {e}", path.display()));
    path
}

/// Count rows of `table` matching `filter` (an SQL condition).
pub fn count(db: &Path, table: &str, filter: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open database");
    conn.query_row(&format!("SELECT count(*) FROM {table} WHERE {filter}"), [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("count {table} in {}: {e}", db.display()))
}
