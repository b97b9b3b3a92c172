//! `cln-backup init`: create a store, with a snapshot of a stopped node's
//! database, and bring every other destination up to date from it.
//!
//! Owns taking the snapshot (SQLite's online backup API into a temporary
//! file beside the store), reading its `data_version`, the order of work
//! for several destinations (the local store first, then each other one
//! caught up from it with the library's `replica::catch_up`), and writing
//! `backup.lock` in the lightning directory. It must leave nothing behind
//! when it fails: a store it created is removed, and `backup.lock` is written
//! last, only once every destination holds what it should.
//!
//! Async destinations are picked with `--async DEST` (repeated), not with a
//! suffix on the URL: a `socket:` URL already takes a `?proxy=` query, and
//! a URL is passed to its destination exactly as written.

use super::{bytes, check_network_dir, finish_bar, plural, progress_bar};
use anyhow::{anyhow, bail, Context, Result};
use cln_backup::atomic_file::{parent_dir, ScratchDir, TempFile};
use cln_backup::destination::{self, replica, Access, Location, OpenOptions};
use cln_backup::encryption::KeySource;
use cln_backup::lockfile::{Entry, Mode};
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
    long_about = "Create a backup at each DEST.\n\n\
        With --lightning-dir DIR, the node's network directory (where lightningd.sqlite3 \
        lives, for example ~/.lightning/bitcoin; lightningd's base directory above it is \
        refused, naming the network directory): if DIR/lightningd.sqlite3 exists, a \
        consistent snapshot of it is taken with SQLite's online backup API and stored at \
        its data_version; stop the node first. Without a database the store starts empty \
        at version 0, for a new node. Either way DIR/backup.lock is written, listing the \
        destinations for the plugin, and the store and the lock are given DIR's owner and \
        group (the user lightningd runs as; as root only).\n\n\
        A DEST is a path or file:// URL (a local store), socket:host:port (a backup server), \
        or object storage (s3://bucket/prefix, gs://, az://). The first local DEST is \
        created and becomes the primary; every other DEST is opened as a writer and \
        brought up to date from it before init returns, so each is complete. Object storage \
        is encrypted: --key-file or --hsm-secret (DIR/hsm_secret by default), and needs a \
        local store. A single socket: DEST with no local store gets the snapshot itself, \
        as with the Python plugin. Every DEST is sync (each change is there before \
        lightningd commits it) unless named with --async.\n\n\
        An existing store, or an existing DIR/backup.lock, is refused: nothing is overwritten. \
        A failed init removes the store it created and writes no backup.lock."
)]
pub struct Args {
    /// The node's lightning directory for its network (holding lightningd.sqlite3).
    #[arg(long, value_name = "DIR")]
    pub lightning_dir: Option<PathBuf>,
    /// Where the backups go: a store to create (path or file:// URL), then any
    /// socket: or object-storage URLs.
    #[arg(value_name = "DEST", required = true)]
    pub dests: Vec<PathBuf>,
    /// Make this DEST (as written among the DESTs) async: written by a replica
    /// thread soon after each change, never stopping the node when it fails.
    #[arg(long = "async", value_name = "DEST")]
    pub async_dests: Vec<PathBuf>,
    /// Keys, credentials and tokens of the remote DESTs (for object storage
    /// the key defaults to DIR/hsm_secret).
    #[command(flatten)]
    pub remote: super::RemoteArgs,
}

/// One DEST, as given and as parsed.
struct Dest {
    arg: String,
    location: Location,
    mode: Mode,
}

pub fn run(args: Args) -> Result<()> {
    let mut dests = Vec::with_capacity(args.dests.len());
    for arg in &args.dests {
        let location = destination::parse(arg)?;
        let mode = if args.async_dests.contains(arg) { Mode::Async } else { Mode::Sync };
        dests.push(Dest { arg: arg.display().to_string(), location, mode });
    }
    for named in &args.async_dests {
        if !args.dests.contains(named) {
            bail!("{}: --async names no DEST; give it exactly as among the DESTs", named.display());
        }
    }
    // The local store, when there is one, is the primary: first.
    if let Some(i) = dests.iter().position(|d| matches!(d.location, Location::File(_))) {
        let primary = dests.remove(i);
        dests.insert(0, primary);
    }
    let object = dests.iter().any(|d| matches!(d.location, Location::Object(_)));
    // The lock's own rule says "list the local store first", which is the
    // lock's wording: on this command line the order does not matter.
    if object && !dests.iter().any(|d| matches!(d.location, Location::File(_))) {
        let url = dests.iter().find(|d| matches!(d.location, Location::Object(_))).map_or("", |d| d.arg.as_str());
        bail!("{url}: object storage is a replica of a local store: give a local store (a path) among the DESTs too");
    }
    let key = match (&args.remote.key_file, &args.remote.hsm_secret, &args.lightning_dir) {
        (Some(f), _, _) => Some(KeySource::KeyFile(absolute(f)?)),
        (None, Some(f), _) => Some(KeySource::HsmSecret(absolute(f)?)),
        (None, None, Some(dir)) if object => Some(KeySource::HsmSecret(absolute(&dir.join("hsm_secret"))?)),
        (None, None, None) if object => {
            let url = dests.iter().find(|d| matches!(d.location, Location::Object(_))).map_or("", |d| d.arg.as_str());
            bail!("{url}: object storage is encrypted: give --key-file or --hsm-secret (or --lightning-dir, for its hsm_secret)")
        }
        _ => None,
    };
    let credentials_file = args.remote.credentials_file.as_deref().map(absolute).transpose()?;
    let token_file = args.remote.token_file.as_deref().map(absolute).transpose()?;
    let listed = || dests.iter().map(|d| d.arg.as_str()).collect::<Vec<_>>().join(" ");
    if !object && (args.remote.key_file.is_some() || args.remote.hsm_secret.is_some() || credentials_file.is_some()) {
        bail!(
            "{}: --key-file, --hsm-secret and --credentials-file are for object-storage DESTs, and none is given",
            listed()
        );
    }
    if token_file.is_some() && !dests.iter().any(|d| matches!(d.location, Location::Socket(_))) {
        bail!("{}: --token-file is for socket: DESTs, and none is given", listed());
    }
    // The lock's entries as they will be, checked before anything is made
    // (the primary's URL is made absolute once its file exists).
    let entry = |d: &Dest| {
        let mut e = Entry::new(d.arg.clone());
        e.mode = d.mode;
        match d.location {
            Location::Object(_) => {
                e.key = key.clone();
                e.credentials_file = credentials_file.clone();
            }
            Location::Socket(_) => e.token_file = token_file.clone(),
            _ => {}
        }
        e
    };
    let mut entries: Vec<Entry> = dests.iter().map(entry).collect();
    destination::check_destinations(&entries)?;

    let local = match &dests[0].location {
        Location::File(path) => Some(path.clone()),
        _ => None,
    };
    if let Some(dest) = &local {
        refuse_directory(dest)?;
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

    // The store everything is caught up from: the local DEST, or a scratch
    // one (a socket: server alone gets the snapshot from it).
    let scratch = match local {
        Some(_) => None,
        None => Some(ScratchDir::new("init").context("cannot create a temporary directory for the snapshot")?),
    };
    let store_path = match (&local, &scratch) {
        (Some(path), _) => path.clone(),
        (None, Some(dir)) => dir.path().join("init.redb"),
        (None, None) => bail!("no destination to create"),
    };
    // A key file named but missing is made now, once every check passed,
    // and removed again if init fails (nothing durable is sealed with it).
    let new_key = match (object, &key) {
        (true, Some(KeySource::KeyFile(path))) if new_key_file(path)? => Some(path.clone()),
        _ => None,
    };
    let store = match Store::create(&store_path) {
        Ok(store) => store,
        Err(e) => {
            if let Some(path) = &new_key {
                let _ = std::fs::remove_file(path);
            }
            return Err(e.into());
        }
    };
    let mut created = Vec::new();
    let result = fill(&store, &store_path, local.is_some(), args.lightning_dir.as_deref()).and_then(|mut out| {
        for (d, e) in dests.iter().zip(&entries).skip(usize::from(local.is_some())) {
            out.push(copy_to(&store, d, e, &mut created)?);
        }
        if let Some(dir) = &args.lightning_dir {
            for path in &created {
                if let Some(ownership) = cln_backup::atomic_file::give_to_owner_of(path, dir)? {
                    out.push(ownership.set_line(path));
                }
            }
        }
        if let Some(lock) = &lock {
            // Local stores by their absolute file:// URL: the plugin runs in DIR.
            for (e, d) in entries.iter_mut().zip(&dests) {
                if let Location::File(path) = &d.location {
                    e.url = cln_backup::lockfile::file_url(path)?;
                }
            }
            cln_backup::lockfile::write_lock(lock, &entries)?;
            out.push(match entries.as_slice() {
                [one] => format!("Wrote {} pointing at {}", lock.display(), one.url),
                _ => format!("Wrote {} listing {}", lock.display(), plural(entries.len() as u64, "destination")),
            });
        }
        Ok(out)
    });
    drop(store);
    if result.is_err() {
        // Leave no half-made store: init can then simply be run again.
        let made = local.iter().chain(&created).chain(&new_key);
        for path in made {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::warn!("could not remove {} after a failed init: {e}", path.display());
            }
        }
    }
    for line in result? {
        println!("{line}");
    }
    if let Some(path) = &new_key {
        println!(
            "Created the key file {}: keep a copy away from this machine and the bucket; without it the remote \
             copy cannot be restored",
            path.display()
        );
    }
    Ok(())
}

/// A path as the lock must record it: the plugin runs in the network
/// directory, so a relative path would name another file there.
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}: cannot make the path absolute", path.display()))
}

/// Refuse a local DEST that is a directory, saying what was meant.
fn refuse_directory(dest: &Path) -> Result<()> {
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
    Ok(())
}

/// Open the destination `dest` as a writer on behalf of `store` (a local
/// one is created, and recorded in `created`) and bring it up to `store`'s
/// head. Returns the line to print.
fn copy_to(store: &Store, dest: &Dest, entry: &Entry, created: &mut Vec<PathBuf>) -> Result<String> {
    let opened: Box<dyn cln_backup::Destination> = match &dest.location {
        Location::File(path) => {
            refuse_directory(path)?;
            let new = Store::create(path)?;
            created.push(path.clone());
            Box::new(cln_backup::FileDestination::new(new))
        }
        _ => destination::open_with(&dest.arg, &OpenOptions::for_entry(entry, Access::Write, Some(store.id())))?,
    };
    let done = replica::catch_up(store, opened.as_ref()).map_err(|e| super::naming(Path::new(&dest.arg), e))?;
    Ok(format!(
        "Brought {} ({}) to version {}{} ({})",
        dest.arg,
        entry.mode.as_str(),
        done.to,
        done.snapshot.map(|v| format!(" with the snapshot at version {v}")).unwrap_or_default(),
        plural(done.transactions, "transaction")
    ))
}

/// Fill the freshly created store (a snapshot of the node's database, if
/// it has one) and give it to the lightning directory's owner. Returns the
/// lines to print.
fn fill(store: &Store, dest: &Path, kept: bool, lightning_dir: Option<&Path>) -> Result<Vec<String>> {
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
    if !kept {
        return Ok(out);
    }
    out.push(format!("Created the store {}", dest.display()));
    if let Some(dir) = lightning_dir {
        // The plugin writes the store as the user lightningd runs as.
        if let Some(ownership) = cln_backup::atomic_file::give_to_owner_of(dest, dir)? {
            out.push(ownership.set_line(dest));
        }
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
    let info = store.add_snapshot_file(version, tmp.path())?;
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

/// `--key-file F` naming no file yet: make one with a new random key, and
/// return whether it was made (decision: `init` creates the key rather than
/// asking for one made elsewhere, so that a user never invents a weak key;
/// an existing file is never replaced).
#[cfg(feature = "object-store")]
fn new_key_file(path: &std::path::Path) -> Result<bool> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    cln_backup::encryption::create_key_file(path)?;
    Ok(true)
}

#[cfg(not(feature = "object-store"))]
fn new_key_file(_path: &std::path::Path) -> Result<bool> {
    Ok(false)
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
        assert_eq!(a.dests, vec![PathBuf::from("file:///b/node.redb")]);
        let a = parse(&["init", "node.redb"]).unwrap();
        assert_eq!(a.lightning_dir, None);
        assert_eq!(parse(&["init"]).unwrap_err().kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let a = parse(&["init", "a", "b", "--async", "b", "--hsm-secret", "/h"]).unwrap();
        assert_eq!(a.dests, vec![PathBuf::from("a"), PathBuf::from("b")]);
        assert_eq!(a.async_dests, vec![PathBuf::from("b")]);
        assert_eq!(a.remote.hsm_secret, Some(PathBuf::from("/h")));
        assert_eq!(
            parse(&["init", "a", "--key-file", "k", "--hsm-secret", "h"]).unwrap_err().kind(),
            clap::error::ErrorKind::ArgumentConflict
        );
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
