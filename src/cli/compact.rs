//! `cln-backup compact`: offline compaction of a store.
//!
//! Owns running the library's compaction on a store no plugin is using, then
//! giving the freed space back to the file system, and reporting both. It
//! must not decide what is compacted: that is `cln_backup::compact`.

use super::{bytes, finish_bar, progress_bar, progress_callback, store_path};
use anyhow::Result;
use cln_backup::{compact, Store};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
#[command(
    about = "Fold old changes into a new snapshot and shrink the store",
    long_about = "Compact a store that no running plugin is using.\n\n\
        The snapshot and changes are replayed into a new snapshot at the version before \
        the latest (so the last change can still be rewound), the changes it replaces are \
        pruned, and the freed space is given back to the file system. A restore gives the \
        same database before and after. With the plugin running, use its backup-compact \
        method instead."
)]
pub struct Args {
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let mut store = Store::open_checked(store_path(&args.store)?)?;
    let len = store.reader()?.change_count();
    let bar = progress_bar(len, "compact");
    let stats = compact::compact(&store, progress_callback(&bar).as_ref());
    finish_bar(bar);
    let stats = stats?;
    if !stats.compacted {
        println!(
            "Nothing to compact in {}: {} changes after the snapshot (compaction needs at least 2)",
            store.path().display(),
            stats.changes_before
        );
        return Ok(());
    }
    store.shrink_file()?;
    let after = store.status()?;
    println!(
        "Compacted {}: new snapshot at version {}",
        store.path().display(),
        stats.snapshot_version.map(|v| v.to_string()).unwrap_or_default()
    );
    println!("Changes:   {} -> {}", stats.changes_before, stats.changes_after);
    println!("File size: {} -> {}", bytes(stats.bytes_before), bytes(after.file_bytes));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn arguments() {
        let cli = Cli::try_parse_from(["cln-backup", "compact", "file:///b/node.redb"]).unwrap();
        match cli.command {
            Command::Compact(a) => assert_eq!(a.store, PathBuf::from("file:///b/node.redb")),
            other => panic!("parsed as {other:?}"),
        }
        let err = Cli::try_parse_from(["cln-backup", "compact", "a", "b"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }
}
