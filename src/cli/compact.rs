//! `cln-backup compact`: offline compaction of a store.
//!
//! Owns running the library's compaction on a store no plugin is using and
//! reporting what it did. It
//! must not decide what is compacted: that is `cln_backup::compact`.
//!
//! Replicas listed in `backup.lock` are not touched: each keeps its own
//! log, which a restore from it replays as it is. The local store's new
//! snapshot reaches a replica only when the replica falls behind it: its
//! next catch-up (the plugin's, or an async replica's round) then sends the
//! snapshot before the changes. Compacting a remote copy is its own
//! business (a `backup-cli` server's compaction, an object store's).
//!
//! Decision: nothing is shrunk here. The library's compaction writes the
//! store anew as a tight file with a small reserve of free space inside it
//! (so the next writes do not make redb double the file); shrinking it
//! further would take that reserve away. The report gives the file's length
//! as measured at the end, and the library's figure of the bytes in use.

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
        new snapshot receives it at its next catch-up.\n\n\
        Retention: the new snapshot and the newest ones before it are kept, up to \
        --keep-snapshots in all (3 by default), and with them every change after the oldest \
        one kept, so that a restore (--to-version or --to-time) can reach any version from \
        the oldest snapshot kept to the head. --max-age drops snapshots stored longer ago \
        than AGE (30d, 12h, 2w, 1d12h) even when fewer are left; the newest is always kept."
)]
pub struct Args {
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
    /// Snapshots to keep, the new one included (at least 1).
    #[arg(
        long,
        value_name = "N",
        default_value_t = compact::Retention::DEFAULT_KEEP as u64,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub keep_snapshots: u64,
    /// Drop snapshots stored longer ago than AGE (30d, 12h, 90m, 2w, 1d12h); the newest is always kept.
    #[arg(long, value_name = "AGE", value_parser = cln_backup::timespec::parse_age)]
    pub max_age: Option<std::time::Duration>,
    /// Write at most MIB mebibytes a second (0, the default: as fast as the disk goes). The
    /// plugin's compactions use its backup-compact-io-rate option instead.
    #[arg(long, value_name = "MIB", default_value_t = 0)]
    pub io_rate: u64,
}

pub fn run(args: Args) -> Result<()> {
    let path = store_path(&args.store)?;
    // The file's length as `ls -l` shows it, before anything is written.
    let len_before = std::fs::metadata(&path).map(|m| m.len()).ok();
    let store = Store::open_checked(&path)?;
    let len_before = match len_before {
        Some(len) => len,
        None => file_len(&path)?,
    };
    let len = store.reader()?.change_count();
    let bar = progress_bar(len, "compact");
    let retention = compact::Retention::new(usize::try_from(args.keep_snapshots).unwrap_or(usize::MAX), args.max_age);
    let io_rate = match args.io_rate {
        0 => None,
        mib => Some(mib.saturating_mul(1 << 20)),
    };
    let opts = compact::Options { retention, io_rate, progress: progress_callback(&bar) };
    let stats = compact::compact(&store, &opts);
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
    // Closing the store is its last write: measure the file after it.
    drop(store);
    let len_after = file_len(&path)?;
    println!(
        "Compacted {}: new snapshot at version {}",
        path.display(),
        stats.snapshot_version.map(|v| v.to_string()).unwrap_or_default()
    );
    println!("Changes:   {} -> {}", stats.changes_before, stats.changes_after);
    println!("{}", snapshots_line(&stats));
    println!("File size: {} -> {}", bytes(len_before), bytes(len_after));
    if len_after == stats.bytes_after {
        println!("In use:    {} of the file's {}", bytes(stats.bytes_in_use), bytes(len_after));
    } else {
        // The figures are the compaction's, before the file was shrunk.
        println!(
            "In use:    {} of {} after the compaction, before the file was shrunk to {}",
            bytes(stats.bytes_in_use),
            bytes(stats.bytes_after),
            bytes(len_after)
        );
    }
    Ok(())
}

/// `Snapshots: 3 kept (versions 5, 7, 9), 1 dropped`.
fn snapshots_line(stats: &compact::Stats) -> String {
    let versions: Vec<String> = stats.snapshots_kept.iter().map(u32::to_string).collect();
    format!(
        "Snapshots: {} kept ({} {}), {} dropped",
        stats.snapshots_kept.len(),
        if versions.len() == 1 { "version" } else { "versions" },
        versions.join(", "),
        stats.snapshots_dropped
    )
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
        let parse = |args: &[&str]| -> Result<Args, clap::Error> {
            let cli = Cli::try_parse_from(["cln-backup", "compact"].iter().chain(args))?;
            match cli.command {
                Command::Compact(a) => Ok(a),
                other => panic!("parsed as {other:?}"),
            }
        };
        let a = parse(&["file:///b/node.redb"]).unwrap();
        assert_eq!(a.store, PathBuf::from("file:///b/node.redb"));
        assert_eq!((a.keep_snapshots, a.max_age), (3, None));
        let a = parse(&["--keep-snapshots", "5", "--max-age", "1d12h", "s"]).unwrap();
        assert_eq!((a.keep_snapshots, a.max_age), (5, Some(std::time::Duration::from_secs(36 * 3600))));
        assert_eq!(parse(&["--keep-snapshots", "0", "s"]).unwrap_err().kind(), clap::error::ErrorKind::ValueValidation);
        let err = parse(&["--max-age", "0d", "s"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("\"0d\" is not an age"), "{err}");
        let err = Cli::try_parse_from(["cln-backup", "compact", "a", "b"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn the_snapshots_kept_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s.redb")).unwrap();
        store
            .add_change(
                1,
                &[
                    "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
                    "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
                    cln_backup::version::bump_statement(1),
                ],
            )
            .unwrap();
        for v in 2..=4 {
            store.add_change(v, &[cln_backup::version::bump_statement(v)]).unwrap();
        }
        let stats = compact::compact(&store, &compact::Options::default()).unwrap();
        assert_eq!(snapshots_line(&stats), "Snapshots: 1 kept (version 3), 0 dropped");
    }
}
