//! `cln-backup verify`: check that a store restores, and optionally that it
//! restores to a given database.
//!
//! Owns the checks a user runs by hand, and their report: walking the whole
//! hash chain kept (from the oldest snapshot), reading every snapshot's
//! image against its hash, replaying into a temporary database (the library's replay,
//! with its integrity check), and comparing it with a node's database (the
//! library's comparer, [`cln_backup::compare`]). It must not write to the
//! store or to the database it compares against (that one is opened
//! read-only).

use super::{finish_bar, is_remote, plural, progress_bar, progress_callback, store_path, RemoteArgs};
use anyhow::{bail, Context, Result};
use cln_backup::compare::{compare_databases, Labels};
use cln_backup::lifecycle;
use cln_backup::restore::DB_FILE_NAME;
use cln_backup::version::data_version;
use cln_backup::{Reader, SnapshotInfo, Store};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(
    about = "Check a store's hash chain and that it restores",
    long_about = "Check a backup store.\n\n\
        Walks the hash chain over every change kept, from the oldest snapshot to the head (a \
        missing, reordered or altered record is reported), reads every snapshot kept and \
        checks its image against its hash, replays the snapshot and changes into a temporary database in $TMPDIR \
        and runs SQLite's integrity check on it, and checks its data_version.\n\n\
        With --against FILE (a node's lightningd.sqlite3, opened read-only, or its directory, \
        meaning FILE/lightningd.sqlite3), the restored database is also compared with FILE: schema first, then every table row by row. \
        The first difference is reported (table, row, column and both values) and the exit \
        status is non-zero. Stop the node first, or FILE will be ahead of the backup.\n\n\
        The store is opened read-only and its file is never changed, so it may be on read-only \
        media. A store that a running plugin holds is refused: stop the node first, or ask the \
        plugin with lightning-cli backup-status.\n\n\
        A remote copy (socket:host:port, or object storage such as s3://bucket/prefix, with \
        --token-file, --key-file or --hsm-secret, --credentials-file as it needs) is restored \
        through its destination into the temporary database, which checks every change it \
        sends, then checked and compared the same way."
)]
pub struct Args {
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
    /// A lightningd.sqlite3 to compare the restored database with, or its directory.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
    /// What a remote STORE needs.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

pub fn run(args: Args) -> Result<()> {
    // A wrong --against is told before the replay, not after it.
    let against = args.against.as_deref().map(against_file).transpose()?;
    if let Some(against) = &against {
        if !against.is_file() {
            bail!("{}: no such database file", against.display());
        }
    }
    if is_remote(&args.store)? {
        return verify_remote(&args, against.as_deref());
    }
    let store = Store::open_read_only(store_path(&args.store)?)?;
    let reader = store.reader()?;
    let head = reader.head();
    let chain = walk_chain(&reader)?;
    let snapshots = reader.snapshots();
    println!(
        "Hash chain intact: {} ({}, {}) {}",
        plural(chain.changes, "change record"),
        plural(chain.transactions, "transaction"),
        plural(chain.statements, "statement"),
        match snapshots.first() {
            Some(s) if snapshots.len() > 1 =>
                format!("from the oldest snapshot kept, at version {}, to the head", s.version),
            Some(s) => format!("after the snapshot at version {}", s.version),
            None => "from the start of the log (the store has no snapshot)".to_string(),
        }
    );
    let checked = check_snapshots(&reader, &snapshots)?;
    if !snapshots.is_empty() {
        println!(
            "Snapshot images intact: {} ({} {}), {} read, each matching its hash",
            plural(snapshots.len() as u64, "snapshot"),
            if snapshots.len() == 1 { "version" } else { "versions" },
            snapshots.iter().map(|s| s.version.to_string()).collect::<Vec<_>>().join(", "),
            super::bytes(checked)
        );
    }

    let bar = progress_bar(chain.changes, "verify");
    let verified = lifecycle::verify_against(&reader, against.as_deref(), progress_callback(&bar).as_ref());
    finish_bar(bar);
    let verified = verified?;
    println!(
        "Replayed into a temporary database: integrity check ok{} ({}, {})",
        match reader.model() {
            cln_backup::Model::Lightningd => format!(", data_version {}", data_version(head)),
            _ => format!(", version {}", data_version(head)),
        },
        plural(verified.changes, "change"),
        plural(verified.statements, "statement")
    );
    if let Some(against) = &against {
        match verified.difference {
            None => println!("{} matches the backup at version {}", against.display(), data_version(head)),
            Some(diff) => {
                bail!("{}: differs from the backup at version {}: {}", against.display(), data_version(head), diff.what)
            }
        }
    }
    println!(
        "{}: OK ({} and {} checked)",
        store.path().display(),
        plural(snapshots.len() as u64, "snapshot"),
        plural(chain.changes, "change record")
    );
    Ok(())
}

/// Read every snapshot's image, which checks it against its content hash,
/// into nothing. Returns the bytes read.
fn check_snapshots(reader: &Reader, snapshots: &[SnapshotInfo]) -> Result<u64> {
    let mut total = 0;
    for snap in snapshots {
        total += reader
            .copy_snapshot_for(snap.seq, &mut std::io::sink())
            .with_context(|| format!("the snapshot at version {}", snap.version))?;
    }
    Ok(total)
}

/// Verify a remote copy: restore it through its destination into a
/// scratch directory (the library's restore checks integrity and
/// `data_version`), then compare with `against`.
fn verify_remote(args: &Args, against: Option<&Path>) -> Result<()> {
    let dest = args.remote.open_read_only(&args.store)?;
    let tmp = cln_backup::atomic_file::ScratchDir::new("verify")
        .context("cannot create a temporary directory for the replay")?;
    let db = tmp.path().join(DB_FILE_NAME);
    let report = cln_backup::restore::restore_from(dest.as_ref(), &db, &cln_backup::restore::Options::default())
        .map_err(|e| super::naming(&args.store, e))?;
    println!(
        "Replayed into a temporary database: integrity check ok, data_version {} ({}, {})",
        report.version,
        plural(report.changes, "change"),
        plural(report.statements, "statement")
    );
    if let Some(against) = against {
        match compare_databases(&db, against, Labels::BACKUP_AND_LIVE)? {
            None => println!("{} matches the backup at version {}", against.display(), report.version),
            Some(diff) => {
                bail!("{}: differs from the backup at version {}: {}", against.display(), report.version, diff.what)
            }
        }
    }
    println!("{}: OK", dest.location());
    Ok(())
}

/// What walking the chain counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Chain {
    changes: u64,
    transactions: u64,
    statements: u64,
}

/// Walk every change record kept, from the oldest snapshot (or the start
/// of the log) to the head, checking the hash chain.
fn walk_chain(reader: &Reader) -> Result<Chain> {
    let mut chain = Chain::default();
    let mut last = None;
    for change in reader.log()? {
        let change = change?;
        chain.changes += 1;
        chain.transactions += change.transactions.len() as u64;
        chain.statements += change.transactions.iter().map(|t| t.statements.len() as u64).sum::<u64>();
        last = Some(change.seq);
    }
    let path = reader.path().display();
    if chain.changes != reader.change_count() {
        bail!(
            "{path}: the store is damaged: it holds {} change records but {} follow the oldest snapshot",
            reader.change_count(),
            chain.changes
        );
    }
    if let Some(last) = last {
        if last != reader.head() {
            bail!(
                "{path}: the store is damaged: the change log ends at version {} but the head is {}",
                data_version(last),
                data_version(reader.head())
            );
        }
    }
    Ok(chain)
}

/// The database `--against` names: a directory means `DIR/lightningd.sqlite3`,
/// as for `restore` (lightningd's base directory is refused the same way).
fn against_file(arg: &Path) -> Result<PathBuf> {
    Ok(cln_backup::restore::resolve_destination(arg)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn arguments() {
        let cli = Cli::try_parse_from(["cln-backup", "verify", "--against", "/ln/db", "s.redb"]).unwrap();
        match cli.command {
            Command::Verify(a) => {
                assert_eq!(a.store, PathBuf::from("s.redb"));
                assert_eq!(a.against, Some(PathBuf::from("/ln/db")));
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = Cli::try_parse_from(["cln-backup", "verify", "--against"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }
}
