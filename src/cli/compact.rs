//! `cln-backup compact`: offline compaction of a store.
//!
//! Owns running the library's compaction on a store no plugin is using, then
//! giving the freed space back to the file system, and reporting both. It
//! must not decide what is compacted: that is `cln_backup::compact`.
//!
//! Replicas listed in `backup.lock` are not touched: each keeps its own
//! log, which a restore from it replays as it is. The local store's new
//! snapshot reaches a replica only when the replica falls behind it: its
//! next catch-up (the plugin's, or an async replica's round) then sends the
//! snapshot before the changes. Compacting a remote copy is its own
//! business (a `backup-cli` server's compaction, an object store's).

use super::{bytes, finish_bar, plural, progress_bar, progress_callback, store_path};
use anyhow::{Context, Result};
use cln_backup::{compact, Store};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(
    about = "Fold old changes into a new snapshot and shrink the store",
    long_about = "Compact a store that no running plugin is using.\n\n\
        The snapshot and changes are replayed into a new snapshot at the version before \
        the latest (so the last change can still be rewound), the changes it replaces are \
        pruned, and the freed space is given back to the file system. A restore gives the \
        same database before and after. With the plugin running, use its backup-compact \
        method instead.\n\n\
        Other destinations in backup.lock are not changed: a replica that falls behind the \
        new snapshot receives it at its next catch-up."
)]
pub struct Args {
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let path = store_path(&args.store)?;
    // The file's length as `ls -l` shows it, before anything is written.
    let len_before = std::fs::metadata(&path).map(|m| m.len()).ok();
    let mut store = Store::open_checked(&path)?;
    let len_before = match len_before {
        Some(len) => len,
        None => file_len(&path)?,
    };
    let len = store.reader()?.change_count();
    let bar = progress_bar(len, "compact");
    let stats = compact::compact(&store, &compact::Options { progress: progress_callback(&bar), ..Default::default() });
    finish_bar(bar);
    let stats = stats?;
    if !stats.compacted {
        let after = if store.reader()?.snapshot().is_some() { "after the snapshot" } else { "in the log" };
        println!(
            "Nothing to compact in {}: {} {after} (compaction needs at least 2)",
            store.path().display(),
            plural(stats.changes_before, "change"),
        );
        return Ok(());
    }
    store.shrink_file()?;
    // Closing the store is its last write: measure the file after it.
    drop(store);
    let len_after = file_len(&path)?;
    println!(
        "Compacted {}: new snapshot at version {}",
        path.display(),
        stats.snapshot_version.map(|v| v.to_string()).unwrap_or_default()
    );
    println!("Changes:   {} -> {}", stats.changes_before, stats.changes_after);
    println!("File size: {} -> {}", bytes(len_before), bytes(len_after));
    Ok(())
}

/// The file's length, as `ls -l` shows it.
fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| path.display().to_string())?.len())
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
