//! `cln-backup init`: create a store, with a snapshot of a stopped node's database.
//!
//! Owns taking the snapshot (SQLite's online backup API into a temporary
//! file beside the store), reading its `data_version`, and writing
//! `backup.lock` in the lightning directory. It must leave nothing behind
//! when it fails: a store it created is removed, and `backup.lock` is written
//! last, only once the store holds what it should.

use super::{bytes, check_network_dir, finish_bar, progress_bar, store_path};
use anyhow::{anyhow, bail, Context, Result};
use cln_backup::atomic_file::{parent_dir, TempFile};
use cln_backup::restore::DB_FILE_NAME;
use cln_backup::Store;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The file lightningd's backup plugins record their store in.
pub use cln_backup::lockfile::LOCK_FILE_NAME;

/// Pages copied per step of the online backup.
const PAGES_PER_STEP: i32 = 1024;

/// How long the snapshot waits for another process's lock on the database.
const BUSY_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
#[command(
    about = "Create a backup store, with a snapshot of the node's database",
    long_about = "Create a backup store at DEST.\n\n\
        With --lightning-dir DIR, the node's network directory (where lightningd.sqlite3 \
        lives, for example ~/.lightning/bitcoin; lightningd's base directory above it is \
        refused, naming the network directory): if DIR/lightningd.sqlite3 exists, a \
        consistent snapshot of it is taken with SQLite's online backup API and stored at \
        its data_version; stop the node first. Without a database the store starts empty \
        at version 0, for a new node. Either way DIR/backup.lock is written, recording \
        the store's file:// URL for the plugin, and the store and the lock are given DIR's \
        owner and group (the user lightningd runs as; as root only).\n\n\
        An existing store, or an existing DIR/backup.lock, is refused: nothing is overwritten."
)]
pub struct Args {
    /// The node's lightning directory for its network (holding lightningd.sqlite3).
    #[arg(long, value_name = "DIR")]
    pub lightning_dir: Option<PathBuf>,
    /// The store to create: a path or a file:// URL.
    #[arg(value_name = "DEST")]
    pub dest: PathBuf,
}

pub fn run(args: Args) -> Result<()> {
    let dest = store_path(&args.dest)?;
    if dest.is_dir() {
        if dest.join(DB_FILE_NAME).exists() {
            // The node's directory given as DEST: --lightning-dir was meant,
            // and the store belongs elsewhere (another disk), not beside the database.
            bail!(
                "{}: is the node's network directory, not a store; pass it as --lightning-dir {} and give the \
                 store a file name on another disk, as in /backups/node.redb",
                dest.display(),
                dest.display()
            );
        }
        bail!(
            "{}: is a directory; give the store a file name inside it, as in {}",
            dest.display(),
            dest.join("node.redb").display()
        );
    }
    let lock = match &args.lightning_dir {
        Some(dir) => {
            check_network_dir(dir)?;
            let lock = dir.join(LOCK_FILE_NAME);
            if lock.symlink_metadata().is_ok() {
                if let Some(cmd) = super::handover::python_lock_fix(dir) {
                    bail!("{}: names a backup of the Python plugin; to move it over, run `{cmd}`", lock.display());
                }
                bail!(
                    "{}: already exists: this node already has a backup configured; \
                     remove it first to start a new backup",
                    lock.display()
                );
            }
            Some(lock)
        }
        None => None,
    };
    let store = Store::create(&dest)?;
    let result = fill(&store, &dest, args.lightning_dir.as_deref(), lock.as_deref());
    drop(store);
    if result.is_err() {
        // Leave no half-made store: init can then simply be run again.
        if let Err(e) = std::fs::remove_file(&dest) {
            tracing::warn!("could not remove {} after a failed init: {e}", dest.display());
        }
    }
    for line in result? {
        println!("{line}");
    }
    Ok(())
}

/// Fill the freshly created store and write the lock file. Returns the lines to print.
fn fill(store: &Store, dest: &Path, lightning_dir: Option<&Path>, lock: Option<&Path>) -> Result<Vec<String>> {
    let mut out = vec![];
    let db = lightning_dir.map(|d| d.join(DB_FILE_NAME));
    match &db {
        Some(db) if db.exists() => {
            let (version, size) = snapshot_into(store, db, dest)?;
            out.push(format!("Stored a snapshot of {} at version {version} ({})", db.display(), bytes(size)));
        }
        Some(db) => out.push(format!("No {} yet: created an empty backup at version 0 for a new node", db.display())),
        None => out.push("Created an empty backup at version 0".to_string()),
    }
    out.push(format!("Created the store {}", dest.display()));
    if let Some(dir) = lightning_dir {
        // The plugin writes the store as the user lightningd runs as.
        if let Some(ownership) = cln_backup::atomic_file::give_to_owner_of(dest, dir)? {
            out.push(ownership.set_line(dest));
        }
    }
    if let Some(lock) = lock {
        let url = cln_backup::lockfile::write(lock, dest)?;
        out.push(format!("Wrote {} pointing at {url}", lock.display()));
    }
    Ok(out)
}

/// Take a consistent copy of `db` beside `dest`, and store it at its `data_version`.
/// Returns the version and the image's size.
fn snapshot_into(store: &Store, db: &Path, dest: &Path) -> Result<(u32, u64)> {
    // A scratch file beside the store, removed when dropped (or by the next
    // run if this one is killed).
    let tmp = TempFile::create(dest, "init")
        .with_context(|| format!("{}: cannot create a temporary file for the snapshot", parent_dir(dest).display()))?;
    copy_database(db, tmp.path())?;
    let version = read_data_version(tmp.path()).map_err(|e| anyhow!("{}: {e}", db.display()))?;
    let mut image = std::fs::File::open(tmp.path()).with_context(|| format!("{}", tmp.path().display()))?;
    let info = store.add_snapshot(version, &mut image)?;
    Ok((version, info.size))
}

/// Copy `src` to `dst` with SQLite's online backup API.
fn copy_database(src: &Path, dst: &Path) -> Result<()> {
    let sq = |path: &Path| {
        let path = path.display().to_string();
        move |e: rusqlite::Error| anyhow!("{path}: SQLite: {e}")
    };
    let from = Connection::open_with_flags(src, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(sq(src))?;
    let mut to = Connection::open(dst).map_err(sq(dst))?;
    let bar;
    {
        let backup = Backup::new(&from, &mut to).map_err(sq(src))?;
        let first = backup.step(PAGES_PER_STEP).map_err(sq(src))?;
        let pages = backup.progress().pagecount.max(0) as u64;
        bar = progress_bar(pages, "snapshot");
        let mut step = first;
        let mut busy_since = None;
        loop {
            if let Some(bar) = &bar {
                let p = backup.progress();
                bar.set_position((p.pagecount - p.remaining).max(0) as u64);
            }
            match step {
                StepResult::Done => break,
                StepResult::More => busy_since = None,
                // Another connection holds a lock: wait for it, as SQLite advises, but not forever.
                _ => {
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > BUSY_LIMIT {
                        finish_bar(bar);
                        bail!(
                            "{}: the database stayed locked by another process for {} s; stop lightningd and run init again",
                            src.display(),
                            BUSY_LIMIT.as_secs()
                        );
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            step = backup.step(PAGES_PER_STEP).map_err(sq(src))?;
        }
    }
    finish_bar(bar);
    to.close().map_err(|(_, e)| sq(dst)(e))?;
    Ok(())
}

/// `data_version` of a lightningd database.
fn read_data_version(path: &Path) -> Result<u32, String> {
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| format!("SQLite: {e}"))?;
    let found: rusqlite::Result<Option<i64>> =
        conn.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get(0));
    match found {
        Ok(Some(v)) => u32::try_from(v).map_err(|_| format!("data_version {v} is out of range")),
        Ok(None) | Err(rusqlite::Error::QueryReturnedNoRows) => {
            Err("has no data_version in its vars table; is it a Core Lightning database?".into())
        }
        Err(rusqlite::Error::SqliteFailure(_, Some(msg))) if msg.contains("no such table") => {
            Err("has no vars table; is it a Core Lightning database?".into())
        }
        Err(e) => Err(format!("cannot read data_version: SQLite: {e}")),
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
            Command::Init(a) => Ok(a),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn arguments() {
        let a = parse(&["init", "--lightning-dir", "/ln/bitcoin", "file:///b/node.redb"]).unwrap();
        assert_eq!(a.lightning_dir, Some(PathBuf::from("/ln/bitcoin")));
        assert_eq!(a.dest, PathBuf::from("file:///b/node.redb"));
        let a = parse(&["init", "node.redb"]).unwrap();
        assert_eq!(a.lightning_dir, None);
        assert_eq!(parse(&["init"]).unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert_eq!(parse(&["init", "a", "b"]).unwrap_err().kind(), clap::error::ErrorKind::UnknownArgument);
    }

    #[test]
    fn data_version_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.sqlite3");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("CREATE TABLE t (a)").unwrap();
        assert!(read_data_version(&db).unwrap_err().contains("no vars table"));
        conn.execute_batch("CREATE TABLE vars (name TEXT, intval INTEGER)").unwrap();
        assert!(read_data_version(&db).unwrap_err().contains("no data_version"));
        conn.execute_batch("INSERT INTO vars VALUES ('data_version', 42)").unwrap();
        assert_eq!(read_data_version(&db).unwrap(), 42);
        conn.execute_batch("UPDATE vars SET intval = -1").unwrap();
        assert!(read_data_version(&db).unwrap_err().contains("out of range"));
    }
}
