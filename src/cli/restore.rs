//! `cln-backup restore`: rebuild `lightningd.sqlite3` from a backup.
//!
//! Owns choosing what kind of source was given ([`open_source`]) and
//! reporting the result. The replay itself, the checks and the safe
//! hand-over of the file are the library's (`cln_backup::restore`); this file
//! must not write the destination itself.
//!
//! Decision: `--to-time` is refused for a `.dbak` file and for a remote
//! copy before anything is read or written: the times at which versions
//! arrived are kept only in a store's own records, and a guess from
//! anything else could restore a version the user did not ask for.

use super::{bytes, finish_bar, is_remote, naming, plural, progress_bar, progress_callback, store_path, RemoteArgs};
use anyhow::{bail, Result};
use cln_backup::restore::{self as lib, Options, Report};
use cln_backup::Store;
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(
    about = "Restore lightningd.sqlite3 from a backup",
    long_about = "Restore the node's database from a backup.\n\n\
        SOURCE is a store (a path or a file:// URL), a legacy .dbak file of the Python \
        backup plugin, recognised by its header, or a remote copy: socket:host:port \
        (--token-file if the server asks for one) or object storage (s3://bucket/prefix; \
        --key-file or --hsm-secret, and --credentials-file or the AWS_* environment). DEST is the database file to write, \
        or a directory, meaning DEST/lightningd.sqlite3. The snapshot and changes are \
        replayed as lightningd executed them into a temporary file beside DEST, which is \
        checked (PRAGMA integrity_check, and data_version equal to the version restored), \
        synced and only then renamed into place: a failed restore leaves no file behind. \
        The file keeps the owner, group and mode of the database it replaces (a new one \
        gets the directory's owner and mode 0600).\n\n\
        An existing DEST is refused unless --force is given, and so is a SQLite journal or \
        WAL file beside it (a crashed SQLite's, which would be applied to the restored \
        database): --force moves those aside with the old database, as \
        DEST.replaced-<UTC time> and DEST.replaced-<UTC time>-journal. DEST may never be \
        SOURCE itself. Stop the node before replacing its database.\n\n\
        --to-version N restores an earlier version that the backup still holds; --to-time T \
        (a store only) restores the newest version the store had received at time T, an \
        RFC 3339 time (2026-12-07T10:30:00Z, 2026-12-07 11:30:00.250+01:00) or a Unix time in \
        seconds (1796640000, 1796640000.250), to the millisecond (finer fractions are \
        truncated). A time before the oldest version kept is refused, naming the range; \
        cln-backup info lists the versions and times a store can restore."
)]
pub struct Args {
    /// The backup to restore from: a store (path or file:// URL) or a legacy .dbak file.
    #[arg(value_name = "SOURCE")]
    pub source: PathBuf,
    /// The database file to write, or a directory (DEST/lightningd.sqlite3).
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
    /// Restore this earlier data_version instead of the latest; it must still be held by the store.
    #[arg(long, value_name = "N")]
    pub to_version: Option<u64>,
    /// Restore the newest version the store had received at this time: RFC 3339 or a Unix time in seconds.
    #[arg(long, value_name = "TIME", value_parser = cln_backup::timespec::parse_point, conflicts_with = "to_version")]
    pub to_time: Option<u64>,
    /// Replace DEST if it exists.
    #[arg(long)]
    pub force: bool,
    /// What a remote SOURCE needs.
    #[command(flatten)]
    pub remote: RemoteArgs,
}

/// What a restore can read from.
pub enum Source {
    /// A cln-backup store.
    Store(Box<Store>),
    /// A legacy `.dbak` file of the Python plugin.
    Legacy(PathBuf),
    /// A remote copy (`socket:` or object storage), read through its destination.
    Remote(Box<dyn cln_backup::Destination>),
}

/// Open what SOURCE names: a remote URL through its destination (with what
/// `remote` gives), a legacy `.dbak` file recognised by its header, anything
/// else must be a store.
pub fn open_source(arg: &Path, remote: &RemoteArgs) -> Result<Source> {
    if is_remote(arg)? {
        return Ok(Source::Remote(remote.open_read_only(arg)?));
    }
    let path = store_path(arg)?;
    if cln_backup::legacy::is_dbak(&path) {
        return Ok(Source::Legacy(path));
    }
    let store = Store::open_read_only(&path).map_err(|e| match e {
        // Both readings were tried: say so, not only that it is no store.
        cln_backup::Error::NotAStore { path, reason } => {
            anyhow::anyhow!("{}: is neither a cln-backup store nor a legacy .dbak backup ({reason})", path.display())
        }
        other => other.into(),
    })?;
    Ok(Source::Store(Box::new(store)))
}

/// Check that `to_version` is held by the source (the error names the
/// file), and refuse a restore that would write an empty database: version 0 of a log
/// that starts from nothing (an empty store, or `--to-version 0`) holds no
/// database, and a 0-byte file is not one lightningd can start from.
pub fn refuse_empty(source: &Source, to_version: Option<u64>) -> Result<()> {
    let (path, empty, head) = match source {
        Source::Store(store) => {
            let reader = store.reader()?;
            let seq = reader.target(to_version).map_err(|e| naming(store.path(), e))?;
            (store.path().to_path_buf(), seq == 0 && reader.snapshot_for(seq).is_none(), reader.head())
        }
        Source::Legacy(path) => {
            // Reading the plan scans the file: only when a version is asked
            // (to check it is held) or the header says the file is at 0.
            let header = cln_backup::legacy::DbakReader::open(path)?.header();
            if to_version.is_none() && header.version != 0 {
                return Ok(());
            }
            let held = cln_backup::legacy::restorable(path, to_version).map_err(|e| naming(path, e))?;
            (path.clone(), held.target == 0 && !held.snapshot, held.head)
        }
        // What a remote copy holds is told by its own restore.
        Source::Remote(_) => return Ok(()),
    };
    if !empty {
        return Ok(());
    }
    if head == 0 {
        bail!("{}: the store holds no database yet: version 0 is empty", path.display());
    }
    bail!(
        "{}: version 0 is empty (the log starts from an empty database); restorable versions with a database: 1 to {}",
        path.display(),
        cln_backup::version::data_version(head)
    );
}

/// What to restore: the head, a version, or the version held at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `None`: the head; otherwise `--to-version`.
    Version(Option<u64>),
    /// `--to-time`, in milliseconds since the Unix epoch.
    Time(u64),
}

impl Target {
    fn to_version(self) -> Option<u64> {
        match self {
            Target::Version(v) => v,
            Target::Time(_) => None,
        }
    }
}

/// The version a restore to `target` reaches in a store, and when the store
/// received it (milliseconds since the Unix epoch, or
/// [`TIME_NOT_RECORDED`](cln_backup::TIME_NOT_RECORDED)): the library's
/// answer, so that what is printed is what is restored. Errors name the store.
pub fn store_target(store: &Store, target: Target) -> Result<(cln_backup::version::Seq, u64)> {
    let reader = store.reader()?;
    let seq = match target {
        Target::Time(ms) => reader.target_time(ms),
        Target::Version(v) => reader.target(v),
    }
    .map_err(|e| naming(store.path(), e))?;
    let time = reader.time_of(seq).map_err(|e| naming(store.path(), e))?;
    Ok((seq, time))
}

/// Refuse `--to-time` for a source that keeps no times: a `.dbak` file or a
/// remote copy (see the module's decision).
pub fn refuse_time_without_store(source: &Source, target: Target) -> Result<()> {
    if !matches!(target, Target::Time(_)) {
        return Ok(());
    }
    let (what, name) = match source {
        Source::Store(_) => return Ok(()),
        Source::Legacy(path) => ("a legacy .dbak file", path.display().to_string()),
        Source::Remote(from) => ("a remote copy", from.location().to_string()),
    };
    bail!("{}", no_times(&name, what));
}

/// Why `--to-time` is refused for `name`, which is `what`.
fn no_times(name: &str, what: &str) -> String {
    format!(
        "{name}: --to-time needs a cln-backup store: the times versions were received are kept only in a store, \
         and this is {what}; restore a version with --to-version N instead"
    )
}

/// Restore `source` to `dest`.
pub fn restore_from(source: &Source, dest: &Path, target: Target, force: bool) -> Result<Report> {
    let to_version = target.to_version();
    let to_time_ms = match target {
        Target::Time(ms) => Some(ms),
        Target::Version(_) => None,
    };
    refuse_time_without_store(source, target)?;
    match source {
        Source::Store(store) => {
            let len = store.reader()?.change_count();
            let bar = progress_bar(len, "restore");
            let opts = Options { to_version, to_time_ms, force, progress: progress_callback(&bar) };
            let report = lib::restore_store(store, dest, &opts);
            finish_bar(bar);
            report.map_err(with_flags)
        }
        Source::Legacy(path) => {
            // The header's record count: near enough for a bar.
            let records = cln_backup::legacy::DbakReader::open(path).map(|f| f.header().version_count);
            let bar = progress_bar(records.unwrap_or(0), "restore");
            let opts = Options { to_version, to_time_ms: None, force, progress: progress_callback(&bar) };
            let report = cln_backup::legacy::restore_dbak(path, dest, &opts);
            finish_bar(bar);
            report.map_err(with_flags)
        }
        Source::Remote(from) => {
            let opts = Options { to_version, to_time_ms: None, force, progress: None };
            lib::restore_from(from.as_ref(), dest, &opts).map_err(|e| naming(Path::new(from.location()), with_flags(e)))
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    let target = match args.to_time {
        Some(ms) => Target::Time(ms),
        None => Target::Version(args.to_version),
    };
    // A remote copy is refused before it is reached.
    if matches!(target, Target::Time(_)) && is_remote(&args.source)? {
        bail!("{}", no_times(&args.source.display().to_string(), "a remote copy"));
    }
    let source = open_source(&args.source, &args.remote)?;
    refuse_time_without_store(&source, target)?;
    // The version a time reaches, and when it was received: told after the restore.
    let held = match (&source, target) {
        (Source::Store(store), Target::Time(_)) => Some(store_target(store, target)?),
        _ => None,
    };
    // Also checks --to-version against what the source holds, naming the file.
    refuse_empty(&source, held.map(|(seq, _)| seq).or(target.to_version()))?;
    let dest = destination_path(&args.dest);
    let report = restore_from(&source, &dest, target, args.force)?;
    println!(
        "Restored {} at version {}{}: {} replayed ({}), {}",
        report.path.display(),
        report.version,
        if u64::from(report.version) != report.seq {
            format!(" (store version {})", report.seq)
        } else {
            String::new()
        },
        plural(report.changes, "change"),
        plural(report.statements, "statement"),
        bytes(report.bytes)
    );
    if let (Target::Time(asked), Some((_, received))) = (target, held) {
        println!(
            "Version {} is the newest the store had received at {}: it was received at {}",
            report.version,
            cln_backup::utc_iso8601(asked, true),
            received_text(received)
        );
    }
    for moved in &report.moved_aside {
        println!("Moved {} aside to {}", moved.from.display(), moved.to.display());
    }
    println!("{}", report.ownership.set_line(&report.path));
    Ok(())
}

/// The library's refusals that a command-line flag overrides, told with
/// that flag (the library names no flags); every other error as it is.
pub fn with_flags(err: cln_backup::Error) -> anyhow::Error {
    match err {
        cln_backup::Error::DestinationExists { path } => {
            anyhow::anyhow!("{}: destination exists; pass --force to replace it", path.display())
        }
        cln_backup::Error::StaleSideFile { path } => anyhow::anyhow!(
            "{}: a crashed SQLite left it; it belongs to the old database and would be applied to the restored one \
             (pass --force to move it aside with the old database)",
            path.display()
        ),
        other => other.into(),
    }
}

/// When a version was received, as shown: ISO 8601 UTC to the millisecond.
pub fn received_text(ms: u64) -> String {
    if ms == cln_backup::TIME_NOT_RECORDED {
        "an unrecorded time".to_string()
    } else {
        cln_backup::utc_iso8601(ms, true)
    }
}

/// A destination may be written as a `file://` URL too.
fn destination_path(arg: &Path) -> PathBuf {
    match arg.to_str().and_then(|s| s.strip_prefix("file://")) {
        Some(rest) => PathBuf::from(rest.strip_prefix("localhost").unwrap_or(rest)),
        None => arg.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("cln-backup").chain(args.iter().copied()))?;
        match cli.command {
            Command::Restore(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments() {
        let a = parse(&["restore", "node.redb", "/ln/bitcoin"]).unwrap();
        assert_eq!(a.source, PathBuf::from("node.redb"));
        assert_eq!(a.dest, PathBuf::from("/ln/bitcoin"));
        assert_eq!(a.to_version, None);
        assert!(!a.force);
        let a = parse(&["restore", "--to-version", "17", "--force", "s", "d"]).unwrap();
        assert_eq!(a.to_version, Some(17));
        assert!(a.force);
        assert_eq!(parse(&["restore", "s"]).unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(
            parse(&["restore", "--to-version", "-3", "s", "d"]).unwrap_err().kind(),
            clap::error::ErrorKind::UnknownArgument
        );
        assert_eq!(
            parse(&["restore", "--to-version", "x", "s", "d"]).unwrap_err().kind(),
            clap::error::ErrorKind::ValueValidation
        );
        assert_eq!(parse(&["restore", "s", "d"]).unwrap().to_time, None);
        let a = parse(&["restore", "--to-time", "2026-12-07T11:30:00.250+01:00", "s", "d"]).unwrap();
        assert_eq!(a.to_time, Some(1_796_639_400_250));
        assert_eq!(parse(&["restore", "--to-time", "1796639400", "s", "d"]).unwrap().to_time, Some(1_796_639_400_000));
        let err = parse(&["restore", "--to-time", "yesterday", "s", "d"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains("\"yesterday\" is not a time"), "{err}");
        let err = parse(&["restore", "--to-time", "1796639400", "--to-version", "3", "s", "d"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn destinations() {
        assert_eq!(destination_path(Path::new("file:///ln/db")), PathBuf::from("/ln/db"));
        assert_eq!(destination_path(Path::new("ln/db")), PathBuf::from("ln/db"));
    }

    #[test]
    fn remote_sources_go_to_their_destination() {
        // Nothing listens there: the error names the URL, and no longer says
        // remote stores are unsupported.
        let err = open_source(Path::new("socket:[::1]:1"), &RemoteArgs::default()).err().unwrap().to_string();
        assert!(err.contains("socket:[::1]:1") && !err.contains("remote stores are not supported"), "{err}");
        let err = open_source(Path::new("s3://bucket/node"), &RemoteArgs::default()).err().unwrap().to_string();
        assert!(err.contains("s3://bucket/node") && err.contains("key"), "{err}");
        let a = parse(&["restore", "--hsm-secret", "/h", "--credentials-file", "/c", "s3://b/n", "d"]).unwrap();
        assert_eq!(a.remote.hsm_secret, Some(PathBuf::from("/h")));
        assert_eq!(a.remote.credentials_file, Some(PathBuf::from("/c")));
    }
}
