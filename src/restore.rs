//! Restore: what it takes to put a replayed database where lightningd
//! will open it.
//!
//! Owns the destination's safety and the hand-over of the file: the version
//! to restore (checked against the backup's restorable range), refusing a
//! destination that is the source, a temporary file beside the destination
//! ([`crate::atomic_file`]) for the replay to fill, the replaced file's
//! ownership, moving a crashed SQLite's journal or WAL aside with the old
//! database, the rename, and reading `data_version` again in place. A failed
//! restore leaves no file behind.
//!
//! It must not write to a store (it reads one through [`Reader`](crate::Reader)), and it
//! must not know how statements are applied: that is [`crate::replay`].
//!
//! ```
//! use cln_backup::{restore, Error, Model, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
//! # store.add_change(1, &["CREATE TABLE t (x)"])?;
//! # store.add_change(2, &["INSERT INTO t VALUES (2)"])?;
//! let node = dir.path().join("bitcoin");
//! std::fs::create_dir(&node)?;
//! // A directory means the database lightningd opens in it.
//! let report = restore::restore_store(&store, &node, &restore::Options::default())?;
//! assert_eq!(report.path, node.join(restore::DB_FILE_NAME));
//! // A version the store does not hold is refused before anything is written.
//! let elsewhere = dir.path().join("other.sqlite3");
//! let opts = restore::Options { to_version: Some(9), ..Default::default() };
//! let err = restore::restore_store(&store, &elsewhere, &opts).unwrap_err();
//! assert!(matches!(err, Error::NotRestorable { asked: 9, .. }), "{err}");
//! assert!(!elsewhere.exists());
//! # Ok(()) }
//! ```

use crate::atomic_file::{self, NewOwner, Ownership, Replace, TempFile};
use crate::destination::Destination;
use crate::error::{Error, Result};
use crate::record::Change;
use crate::replay::{self, holds_data_version, read_data_version};
use crate::store::Store;
use crate::version::{data_version, Seq};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

pub use crate::replay::Progress;

/// The database file name lightningd uses; a directory destination gets it.
///
/// ```
/// use cln_backup::restore::{resolve_destination, DB_FILE_NAME};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// assert_eq!(resolve_destination(dir.path())?, dir.path().join(DB_FILE_NAME));
/// # Ok(()) }
/// ```
pub const DB_FILE_NAME: &str = "lightningd.sqlite3";

/// How to restore.
///
/// ```
/// use cln_backup::{now_ms, restore, Model, Store};
/// use std::sync::{atomic::{AtomicU64, Ordering}, Arc};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let dest = dir.path().join("app.sqlite3");
/// let replayed = Arc::new(AtomicU64::new(0));
/// let seen = replayed.clone();
/// let opts = restore::Options {
///     to_version: Some(2),
///     progress: Some(Arc::new(move |n| seen.store(n, Ordering::Relaxed))),
///     ..Default::default()
/// };
/// assert_eq!(restore::restore_store(&store, &dest, &opts)?.version, 2);
/// assert_eq!(replayed.load(Ordering::Relaxed), 2);
/// // A time takes precedence over a version: now, every change had been received.
/// let opts = restore::Options { to_version: Some(1), to_time_ms: Some(now_ms()), force: true, ..Default::default() };
/// assert_eq!(restore::restore_store(&store, &dest, &opts)?.version, 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Options {
    /// Restore this version (a `data_version`, or an extended store version)
    /// instead of the head.
    pub to_version: Option<u64>,
    /// Restore the newest version the store had received at this time
    /// (milliseconds since the Unix epoch) instead of the head; see
    /// [`Reader::target_time`](crate::Reader::target_time). Only a store
    /// keeps record times: [`restore_from`] and
    /// [`legacy::restore_dbak`](crate::legacy::restore_dbak) refuse it
    /// ([`Error::NoRecordTimes`]). It takes precedence over `to_version`.
    pub to_time_ms: Option<u64>,
    /// Replace an existing destination.
    pub force: bool,
    /// Progress callback.
    pub progress: Option<Progress>,
}

/// What a restore produced.
///
/// ```
/// use cln_backup::{restore, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let dest = dir.path().join("app.sqlite3");
/// let report = restore::restore_store(&store, &dest, &restore::Options::default())?;
/// assert_eq!((report.version, report.seq), (3, 3));
/// // Three changes of one statement each, from an empty database.
/// assert_eq!((report.changes, report.statements), (3, 3));
/// assert_eq!(report.bytes, std::fs::metadata(&dest)?.len());
/// assert!(report.moved_aside.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Report {
    /// The restored database, in place (a directory destination resolved to
    /// its `lightningd.sqlite3`, a symbolic link to the file it names).
    pub path: PathBuf,
    /// `data_version` of the restored database.
    pub version: u32,
    /// The store version restored (`epoch << 32 | data_version`).
    pub seq: Seq,
    /// Change records replayed on top of the snapshot.
    pub changes: u64,
    /// SQL statements executed by the replay.
    pub statements: u64,
    /// Bytes of the restored file.
    pub bytes: u64,
    /// The owner, group and mode the restored file got.
    pub ownership: Ownership,
    /// The old database and its SQLite side files, when they were moved aside.
    pub moved_aside: Vec<MovedAside>,
}

/// Network directories lightningd creates under its base directory.
pub(crate) const NETWORKS: &[&str] =
    &["bitcoin", "testnet", "testnet4", "signet", "regtest", "liquid", "liquid-regtest"];

/// The network directories below `dir` that hold a `lightningd.sqlite3`,
/// when `dir` holds none itself: `dir` is then lightningd's base directory
/// (`~/.lightning`), not the network directory (`~/.lightning/bitcoin`)
/// where the node's database lives. Empty for any other directory.
///
/// ```
/// use cln_backup::restore::{networks_below, DB_FILE_NAME};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let base = tempfile::tempdir()?;
/// let network = base.path().join("bitcoin");
/// std::fs::create_dir(&network)?;
/// std::fs::write(network.join(DB_FILE_NAME), b"")?;
/// assert_eq!(networks_below(base.path()), vec![network.clone()]);
/// assert!(networks_below(&network).is_empty());
/// # Ok(()) }
/// ```
pub fn networks_below(dir: &Path) -> Vec<PathBuf> {
    if dir.join(DB_FILE_NAME).exists() {
        return vec![];
    }
    NETWORKS.iter().map(|n| dir.join(n)).filter(|d| d.join(DB_FILE_NAME).is_file()).collect()
}

/// The database a path names: a directory means `DIR/lightningd.sqlite3`.
/// lightningd's base directory is refused, naming the network directory
/// below it ([`networks_below`]): its database would be one the node never
/// opens. A symbolic link (a database kept on another disk) means the file
/// it points to, so that a restore replaces that file rather than the link;
/// a link to nothing is refused.
///
/// ```
/// use cln_backup::restore::{resolve_destination, DB_FILE_NAME};
/// use cln_backup::Error;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let base = tempfile::tempdir()?;
/// let network = base.path().join("regtest");
/// std::fs::create_dir(&network)?;
/// assert_eq!(resolve_destination(&network)?, network.join(DB_FILE_NAME));
/// std::fs::write(network.join(DB_FILE_NAME), b"")?;
/// // The base directory above it is refused, naming the network directory.
/// let err = resolve_destination(base.path()).unwrap_err();
/// assert!(matches!(&err, Error::BaseDirectory { network: n, .. } if *n == network), "{err}");
/// // A file is itself.
/// let file = base.path().join("copy.sqlite3");
/// assert_eq!(resolve_destination(&file)?, file);
/// # Ok(()) }
/// ```
pub fn resolve_destination(dest: &Path) -> Result<PathBuf> {
    let db = if dest.is_dir() {
        let below = networks_below(dest);
        if let Some(first) = below.first() {
            return Err(Error::BaseDirectory {
                path: dest.to_path_buf(),
                below: below.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" and "),
                network: first.clone(),
            });
        }
        dest.join(DB_FILE_NAME)
    } else {
        dest.to_path_buf()
    };
    match db.symlink_metadata() {
        Ok(m) if m.file_type().is_symlink() => follow_link(&db),
        _ => Ok(db),
    }
}

/// The file the symbolic link `link` points to: an existing one, or a new
/// one in an existing directory.
fn follow_link(link: &Path) -> Result<PathBuf> {
    if let Ok(target) = std::fs::canonicalize(link) {
        return Ok(target);
    }
    let to = std::fs::read_link(link).map_err(|e| Error::io(link, e))?;
    let to = atomic_file::parent_dir(link).join(to);
    match to.parent().map(std::fs::canonicalize) {
        Some(Ok(dir)) if dir.is_dir() => Ok(match to.file_name() {
            Some(name) => dir.join(name),
            None => to,
        }),
        _ => Err(Error::io(
            link,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("a symbolic link to {}, whose directory does not exist (is its disk mounted?)", to.display()),
            ),
        )),
    }
}

/// The SQLite side files (`-journal`, `-wal`, `-shm`) that exist beside `db`.
pub(crate) fn existing_side_files(db: &Path) -> Vec<PathBuf> {
    atomic_file::side_paths(db).into_iter().filter(|p| p.symlink_metadata().is_ok()).collect()
}

/// A file a restore moved out of the way, and where to.
///
/// ```
/// use cln_backup::{restore, Error, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// let dest = dir.path().join("lightningd.sqlite3");
/// restore::restore_store(&store, &dest, &Default::default())?;
/// // A crashed SQLite left a journal beside the database.
/// let journal = dir.path().join("lightningd.sqlite3-journal");
/// std::fs::write(&journal, b"hot journal")?;
/// let err = restore::restore_store(&store, &dest, &Default::default()).unwrap_err();
/// assert!(matches!(err, Error::StaleSideFile { .. }), "{err}");
/// // Replacing the database moves the old one aside with its journal, as a pair.
/// let report = restore::restore_store(&store, &dest, &restore::Options { force: true, ..Default::default() })?;
/// let moved: Vec<_> = report.moved_aside.iter().map(|m| m.from.clone()).collect();
/// assert_eq!(moved, [dest.clone(), journal.clone()]);
/// let old = report.moved_aside[0].to.to_str().unwrap();
/// assert!(old.starts_with(&format!("{}.replaced-", dest.display())), "{old}");
/// assert_eq!(report.moved_aside[1].to.to_str(), Some(format!("{old}-journal").as_str()));
/// assert!(std::path::Path::new(old).is_file() && !journal.exists());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct MovedAside {
    /// Where the file was: the old database or one of its side files.
    pub from: PathBuf,
    /// Where it is now: `X.replaced-<UTC time>` for the database `X`, and
    /// that name followed by `-journal`, `-wal` or `-shm` for its side files.
    pub to: PathBuf,
}

/// What [`Staged::persist`] put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Placed {
    /// The database in place.
    pub(crate) path: PathBuf,
    /// Its size in bytes.
    pub(crate) bytes: u64,
    /// The owner, group and mode it got.
    pub(crate) ownership: Ownership,
    /// The old database and its side files, when they were moved aside.
    pub(crate) moved_aside: Vec<MovedAside>,
}

/// A temporary file beside the destination, renamed over it by
/// [`Staged::persist`] once the replay checked out; removed if dropped.
///
/// Refused before anything is written: a destination that is the source
/// itself, and (without `force`) an existing destination or a SQLite side
/// file of the database it would replace.
struct Staged {
    tmp: TempFile,
    dest: PathBuf,
    force: bool,
}

impl Staged {
    /// Stage a restore of the backup file `source` to `dest` (resolved as
    /// [`resolve_destination`]).
    pub fn new(source: &Path, dest: &Path, force: bool) -> Result<Staged> {
        let dest = resolve_destination(dest)?;
        if atomic_file::same_file(source, &dest) {
            return Err(Error::SameFile { input: source.to_path_buf(), output: dest });
        }
        if !force {
            refuse_without_force(&dest)?;
        }
        let tmp = TempFile::create(&dest, "restore")?;
        Ok(Staged { tmp, dest, force })
    }

    /// The temporary file's path.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The temporary file, for writing a snapshot into.
    pub fn file(&mut self) -> Result<&mut std::fs::File> {
        self.tmp.file()
    }

    /// fsync the file and give it the replaced database's owner, group and
    /// mode (or the directory's owner and mode 0600); move the old database
    /// aside with its SQLite side files if it has any; rename the file into
    /// place and fsync the directory; then open it where it now is and check
    /// that it reads `data_version` `version` (with `None`, that it opens:
    /// an application's database keeps its version where it chooses).
    pub fn persist(mut self, version: Option<u32>) -> Result<Placed> {
        if !self.force {
            // Something may have appeared since the restore started.
            refuse_without_force(&self.dest)?;
        }
        let (ownership, bytes) = self.tmp.settle(NewOwner::Directory)?;
        let moved_aside = move_aside(&self.dest)?;
        let replace = if self.force { Replace::Existing } else { Replace::Never };
        let path = self.tmp.place(replace)?;
        check_placed(&path, version)?;
        Ok(Placed { path, bytes, ownership, moved_aside })
    }
}

/// Without `--force`: a SQLite side file, or the destination, is in the way.
fn refuse_without_force(dest: &Path) -> Result<()> {
    if let Some(side) = existing_side_files(dest).into_iter().next() {
        return Err(Error::StaleSideFile { path: side });
    }
    if dest.symlink_metadata().is_ok() {
        return Err(Error::DestinationExists { path: dest.to_path_buf() });
    }
    Ok(())
}

/// When SQLite side files lie beside `dest`, move them and the database
/// they belong to aside, as a pair SQLite still opens together:
/// `DB.replaced-<UTC time>` and `DB.replaced-<UTC time>-journal`. The
/// database is linked to its new name first, so `dest` never goes missing.
fn move_aside(dest: &Path) -> Result<Vec<MovedAside>> {
    if existing_side_files(dest).is_empty() {
        return Ok(vec![]);
    }
    let stamp: String = crate::record::utc_iso8601(crate::record::now_ms(), false)
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    let mut moved = vec![];
    let mut base = None;
    for n in 0..100u32 {
        let candidate = atomic_file::with_suffix(
            dest,
            &if n == 0 { format!(".replaced-{stamp}") } else { format!(".replaced-{stamp}-{n}") },
        );
        let taken = candidate.symlink_metadata().is_ok()
            || atomic_file::side_paths(&candidate).iter().any(|p| p.symlink_metadata().is_ok());
        if !taken {
            base = Some(candidate);
            break;
        }
    }
    let base = base.ok_or_else(|| {
        Error::io(
            dest,
            std::io::Error::new(std::io::ErrorKind::AlreadyExists, "no free name to move the old database to"),
        )
    })?;
    if dest.symlink_metadata().is_ok() {
        match std::fs::hard_link(dest, &base) {
            Ok(()) => {}
            // No hard links on this file system: rename (dest is missing until the restore is placed).
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                std::fs::rename(dest, &base).map_err(|e| Error::io(dest, e))?
            }
            Err(e) => return Err(Error::io(&base, e)),
        }
        moved.push(MovedAside { from: dest.to_path_buf(), to: base.clone() });
    }
    for suffix in atomic_file::SQLITE_SIDE_SUFFIXES {
        let side = atomic_file::with_suffix(dest, suffix);
        if side.symlink_metadata().is_err() {
            continue;
        }
        let to = atomic_file::with_suffix(&base, suffix);
        std::fs::rename(&side, &to).map_err(|e| Error::io(&side, e))?;
        moved.push(MovedAside { from: side, to });
    }
    atomic_file::sync_parent(dest)?;
    Ok(moved)
}

/// Open the database placed at `path` as its application will and check
/// its `data_version` (lightningd's model; `None`: that its schema reads).
fn check_placed(path: &Path, expected: Option<u32>) -> Result<()> {
    let sq = |e| Error::sqlite(path, e);
    let conn = Connection::open(path).map_err(sq)?;
    let Some(expected) = expected else {
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())).map_err(sq)?;
        return conn.close().map_err(|(_, e)| Error::sqlite(path, e));
    };
    let found = read_data_version(&conn).map_err(sq)?;
    conn.close().map_err(|(_, e)| Error::sqlite(path, e))?;
    if !holds_data_version(found, expected) {
        return Err(Error::RestoreCheck {
            path: path.to_path_buf(),
            what: format!(
                "opened in place it reads data_version {}, not the {expected} restored",
                found.map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
            ),
        });
    }
    Ok(())
}

/// What a restore to `seq` that replayed `replayed` and placed `placed` reports.
fn report(seq: Seq, replayed: &replay::Replayed, placed: Placed) -> Report {
    Report {
        path: placed.path,
        version: data_version(seq),
        seq,
        changes: replayed.changes,
        statements: replayed.statements,
        bytes: placed.bytes,
        ownership: placed.ownership,
        moved_aside: placed.moved_aside,
    }
}

/// Restore what `source` holds to `dest` (a file, or a directory meaning
/// `DIR/lightningd.sqlite3`), reading it through
/// [`Destination::restore_source`]: the same safety as [`restore_store`]
/// (staging, side files, ownership, the version reread in place) for any
/// destination, local or not.
///
/// ```
/// use cln_backup::{restore, FileDestination, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # store.add_change(2, &["INSERT INTO t VALUES (2)"])?;
/// // Any destination: here a local store; a `socket:` server or object storage alike.
/// let source = FileDestination::new(store);
/// let dest = dir.path().join("app.sqlite3");
/// let opts = restore::Options { to_version: Some(1), ..Default::default() };
/// let report = restore::restore_from(&source, &dest, &opts)?;
/// assert_eq!((report.path, report.version), (dest, 1));
/// # Ok(()) }
/// ```
pub fn restore_from(source: &dyn Destination, dest: &Path, opts: &Options) -> Result<Report> {
    refuse_time(opts, source.location())?;
    restore_with(Path::new(source.location()), dest, opts, |image| {
        let from = source.restore_source(opts.to_version, image)?;
        Ok((from.upto, from.model, from.foreign_keys, from.changes))
    })
}

/// Restore `store` to `dest` (a file, or a directory meaning
/// `DIR/lightningd.sqlite3`).
///
/// ```
/// use cln_backup::{restore, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// store.add_change(2, &["INSERT INTO t VALUES (42)"])?;
/// let dest = dir.path().join("app.sqlite3");
/// // Version 1, then the head; an existing file is replaced only when asked.
/// let opts = restore::Options { to_version: Some(1), ..Default::default() };
/// assert_eq!(restore::restore_store(&store, &dest, &opts)?.version, 1);
/// assert!(restore::restore_store(&store, &dest, &Default::default()).is_err());
/// let opts = restore::Options { force: true, ..Default::default() };
/// assert_eq!(restore::restore_store(&store, &dest, &opts)?.version, 2);
/// # Ok(()) }
/// ```
pub fn restore_store(store: &Store, dest: &Path, opts: &Options) -> Result<Report> {
    let reader = store.reader()?;
    let seq = match opts.to_time_ms {
        Some(ms) => reader.target_time(ms)?,
        None => reader.target(opts.to_version)?,
    };
    restore_with(store.path(), dest, opts, |image| {
        reader.copy_snapshot_for(seq, image)?;
        let model = reader.model();
        Ok((seq, model, replay::foreign_keys_at_start(model, reader.snapshot_for(seq).as_ref()), reader.changes(seq)?))
    })
}

/// The one restore, whatever the source: stage a file beside `dest`; `start`
/// writes the start image into it (nothing for a log that starts from an
/// empty database) and returns the version to reach, the change model, the
/// foreign-key state at the start and the changes; they are replayed into the staged file, which
/// is then placed (see [`Staged::persist`]). `source` is the file read from,
/// never to be written over. On any error the staged file is removed.
/// A source other than a store keeps no record times: a restore to a time
/// is refused rather than quietly giving the head (or `to_version`).
pub(crate) fn refuse_time(opts: &Options, source_name: &str) -> Result<()> {
    match opts.to_time_ms {
        Some(_) => Err(Error::NoRecordTimes { source_name: source_name.to_string() }),
        None => Ok(()),
    }
}

pub(crate) fn restore_with<I>(
    source: &Path,
    dest: &Path,
    opts: &Options,
    start: impl FnOnce(&mut dyn std::io::Write) -> Result<(Seq, crate::Model, bool, I)>,
) -> Result<Report>
where
    I: IntoIterator<Item = Result<Change>>,
    I::IntoIter: Send,
{
    let mut staged = Staged::new(source, dest, opts.force)?;
    let staged_path = staged.path().to_path_buf();
    let (seq, model, foreign_keys, changes) = {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, staged.file()?);
        let started = start(&mut w)?;
        std::io::Write::flush(&mut w).map_err(|e| Error::io(&staged_path, e))?;
        started
    };
    // A statement that fails is the source's to answer for: the error names
    // it (and, from the replay, the version), not the temporary file.
    let replayed = replay::replay_changes(&staged_path, model, foreign_keys, changes, seq, opts.progress.as_ref())
        .map_err(|e| match e {
            Error::Sqlite { path, context, source: cause } if path == staged_path && context.is_some() => {
                Error::Sqlite { path: source.to_path_buf(), context, source: cause }
            }
            other => other,
        })?;
    let placed = staged.persist(model.is_lightningd().then_some(data_version(seq)))?;
    Ok(report(seq, &replayed, placed))
}
