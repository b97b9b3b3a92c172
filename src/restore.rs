//! Restore: replaying a change log into a SQLite database exactly as
//! lightningd executed it.
//!
//! Owns the replay rules that make the result equal lightningd's database:
//! foreign keys on (so `ON DELETE
//! CASCADE` and `SET NULL` happen as they did in lightningd), lone
//! `PRAGMA foreign_keys` reports run outside any transaction, and the
//! pre-4090 expansion bug mended. Owns the safe hand-over too: refuse a
//! destination that is the source, replay into a temporary file beside the
//! destination ([`crate::atomic_file`]), `PRAGMA integrity_check`, check
//! that `data_version` equals the version restored, fsync, give it the
//! replaced file's ownership, move a crashed SQLite's journal or WAL aside
//! with the old database, rename, and read `data_version` again in place. A
//! failed restore leaves no file behind.
//!
//! It must not write to a store; it reads one through [`Reader`].

use crate::atomic_file::{self, NewOwner, Ownership, Replace, TempFile};
use crate::error::{Error, Result};
use crate::record::Hash;
use crate::store::{Reader, Store};
use crate::version::{self, data_version, Seq};
use rusqlite::Connection;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// The database file name lightningd uses; a directory destination gets it.
pub const DB_FILE_NAME: &str = "lightningd.sqlite3";

/// Changes replayed per SQLite transaction. lightningd committed each one
/// separately; grouping them gives the same database (every constraint is
/// immediate) and bounds the rollback journal.
const CHANGES_PER_BATCH: u64 = 20_000;

/// Changes decoded ahead of SQLite are handed over this many at a time.
const HANDOVER_BATCH: usize = 64;

/// Called with the number of changes replayed so far.
pub type Progress = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Tell `progress` that `done` changes are done, every 256 of them (a call
/// per change would cost more than a progress bar is worth).
pub(crate) fn tick(progress: Option<&Progress>, done: u64) {
    if done.is_multiple_of(256) {
        report_done(progress, done);
    }
}

/// Tell `progress` that `done` changes are done: the last report of a run.
pub(crate) fn report_done(progress: Option<&Progress>, done: u64) {
    if let Some(p) = progress {
        p(done);
    }
}

/// How to restore.
#[derive(Clone, Default)]
pub struct Options {
    /// Restore this version (a `data_version`, or an extended store version)
    /// instead of the head.
    pub to_version: Option<u64>,
    /// Replace an existing destination.
    pub force: bool,
    /// Progress callback.
    pub progress: Option<Progress>,
}

/// What a restore produced.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub path: PathBuf,
    /// `data_version` of the restored database.
    pub version: u32,
    pub seq: Seq,
    /// Change records replayed on top of the snapshot.
    pub changes: u64,
    pub statements: u64,
    /// Bytes of the restored file.
    pub bytes: u64,
    /// The owner, group and mode the restored file got.
    pub ownership: Ownership,
    /// The old database and its SQLite side files, when they were moved aside.
    pub moved_aside: Vec<MovedAside>,
}

/// Mend the statements mangled by CLN's expansion bug before PR 4090:
/// `reserved_til=1891733WHERE` and `peer_id=5WHERE channels.id=` lost the
/// space before `WHERE`.
pub fn fix_pre_4090(stmt: &str) -> Cow<'_, str> {
    if !stmt.contains("WHERE") {
        return Cow::Borrowed(stmt);
    }
    let bytes = stmt.as_bytes();
    let mut insert_at = Vec::new();
    for (at, _) in stmt.match_indices("WHERE") {
        let mut d = at;
        while d > 0 && bytes[d - 1].is_ascii_digit() {
            d -= 1;
        }
        if d == at {
            continue;
        }
        let before = &stmt[..d];
        let mended = before.ends_with("reserved_til=")
            || (before.ends_with("peer_id=") && stmt[at..].starts_with("WHERE channels.id="));
        if mended {
            insert_at.push(at);
        }
    }
    if insert_at.is_empty() {
        return Cow::Borrowed(stmt);
    }
    let mut out = String::with_capacity(stmt.len() + insert_at.len());
    let mut from = 0;
    for at in insert_at {
        out.push_str(&stmt[from..at]);
        out.push(' ');
        from = at;
    }
    out.push_str(&stmt[from..]);
    Cow::Owned(out)
}

/// Replays transactions into one SQLite file.
pub struct Replayer {
    conn: Connection,
    path: PathBuf,
    in_txn: bool,
    foreign_keys: bool,
    journal_mode: String,
    pending: u64,
    /// Transactions replayed.
    pub transactions: u64,
    /// Statements executed.
    pub statements: u64,
}

impl Replayer {
    /// Open `path` (an existing image or a new empty file) for replay, with
    /// foreign keys enforced or not as the log's state says.
    pub fn open(path: &Path, foreign_keys: bool) -> Result<Replayer> {
        let sq = |e| Error::sqlite(path, e);
        let conn = Connection::open(path).map_err(sq)?;
        let journal_mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).map_err(sq)?;
        // The file is private until it is renamed into place, and discarded on
        // failure, so the replay need not sync each batch; `finish` syncs once.
        conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = MEMORY;").map_err(sq)?;
        conn.execute_batch(if foreign_keys { "PRAGMA foreign_keys = ON" } else { "PRAGMA foreign_keys = OFF" })
            .map_err(sq)?;
        Ok(Replayer {
            conn,
            path: path.to_path_buf(),
            in_txn: false,
            foreign_keys,
            journal_mode,
            pending: 0,
            transactions: 0,
            statements: 0,
        })
    }

    /// Whether foreign keys are enforced at this point of the log.
    pub fn foreign_keys(&self) -> bool {
        self.foreign_keys
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| Error::Sqlite {
            path: self.path.clone(),
            context: Some(sql.chars().take(200).collect()),
            source: e,
        })
    }

    fn commit(&mut self) -> Result<()> {
        if self.in_txn {
            self.exec("COMMIT")?;
            self.in_txn = false;
            self.pending = 0;
        }
        Ok(())
    }

    /// Replay one transaction as lightningd reported it.
    pub fn apply<S: AsRef<str>>(&mut self, statements: &[S]) -> Result<()> {
        self.transactions += 1;
        if let Some(on) = version::lone_foreign_keys_pragma(statements) {
            // lightningd ran this outside any transaction; inside one SQLite ignores it.
            self.commit()?;
            self.exec(statements[0].as_ref())?;
            self.foreign_keys = on;
            self.statements += 1;
            return Ok(());
        }
        if !self.in_txn {
            self.exec("BEGIN")?;
            self.in_txn = true;
        }
        for s in statements {
            self.exec(&fix_pre_4090(s.as_ref()))?;
        }
        self.statements += statements.len() as u64;
        self.pending += 1;
        if self.pending >= CHANGES_PER_BATCH {
            self.commit()?;
        }
        Ok(())
    }

    /// Commit, check the database, and close it. `expect_version` is the
    /// `data_version` the database must hold (a database with no `vars` table
    /// passes only when it is 0: an empty backup).
    pub fn finish(mut self, expect_version: u32) -> Result<bool> {
        self.commit()?;
        let sq = |e| Error::sqlite(&self.path, e);
        if !self.journal_mode.eq_ignore_ascii_case("memory") {
            let mode = format!("PRAGMA journal_mode = {}", self.journal_mode);
            self.conn.query_row(&mode, [], |_| Ok(())).map_err(sq)?;
        }
        let check: Vec<String> = {
            let mut stmt = self.conn.prepare("PRAGMA integrity_check").map_err(sq)?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(sq)?;
            rows.collect::<std::result::Result<_, _>>().map_err(sq)?
        };
        if check != ["ok"] {
            return Err(Error::RestoreCheck {
                path: self.path.clone(),
                what: format!("integrity_check: {}", check.join("; ")),
            });
        }
        let found = read_data_version(&self.conn).map_err(sq)?;
        let ok = match found {
            Some(v) => same_data_version(v, expect_version),
            None => expect_version == 0,
        };
        if !ok {
            return Err(Error::RestoreCheck {
                path: self.path.clone(),
                what: format!(
                    "data_version is {} but the backup's version is {expect_version}",
                    found.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
                ),
            });
        }
        let fk = self.foreign_keys;
        self.conn.close().map_err(|(_, e)| Error::sqlite(&self.path, e))?;
        Ok(fk)
    }
}

/// `vars.data_version` of a database; `None` without a `vars` table or row.
fn read_data_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_vars: bool =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='vars'", [], |r| {
            r.get::<_, i64>(0)
        })? > 0;
    if !has_vars {
        return Ok(None);
    }
    conn.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get(0)).map(Some).or_else(|e| match e
    {
        rusqlite::Error::QueryReturnedNoRows => Ok(None),
        e => Err(e),
    })
}

/// Whether SQLite's `vars.intval` for `data_version` is lightningd's u32
/// version `expected`. lightningd's version wraps at 2^32 while the integer
/// its bump statement increments in SQLite goes on, so compare modulo 2^32.
fn same_data_version(stored: i64, expected: u32) -> bool {
    stored.rem_euclid(1 << 32) == i64::from(expected)
}

/// Network directories lightningd creates under its base directory.
pub const NETWORKS: &[&str] = &["bitcoin", "testnet", "testnet4", "signet", "regtest", "liquid", "liquid-regtest"];

/// The network directories below `dir` that hold a `lightningd.sqlite3`,
/// when `dir` holds none itself: `dir` is then lightningd's base directory
/// (`~/.lightning`), not the network directory (`~/.lightning/bitcoin`)
/// where the node's database lives. Empty for any other directory.
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
pub fn existing_side_files(db: &Path) -> Vec<PathBuf> {
    atomic_file::side_paths(db).into_iter().filter(|p| p.symlink_metadata().is_ok()).collect()
}

/// A file a restore moved out of the way, and where to.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MovedAside {
    pub from: PathBuf,
    pub to: PathBuf,
}

/// What [`Staged::persist`] put in place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub path: PathBuf,
    pub bytes: u64,
    pub ownership: Ownership,
    pub moved_aside: Vec<MovedAside>,
}

/// A temporary file beside the destination, renamed over it by
/// [`Staged::persist`] once the replay checked out; removed if dropped.
///
/// Refused before anything is written: a destination that is the source
/// itself, and (without `force`) an existing destination or a SQLite side
/// file of the database it would replace.
pub struct Staged {
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

    /// The final destination.
    pub fn destination(&self) -> &Path {
        &self.dest
    }

    /// fsync the file and give it the replaced database's owner, group and
    /// mode (or the directory's owner and mode 0600); move the old database
    /// aside with its SQLite side files if it has any; rename the file into
    /// place and fsync the directory; then open it where it now is and check
    /// that it reads `data_version` `version`.
    pub fn persist(mut self, version: u32) -> Result<Placed> {
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

/// Open the database placed at `path` as lightningd will and check its `data_version`.
fn check_placed(path: &Path, expected: u32) -> Result<()> {
    let sq = |e| Error::sqlite(path, e);
    let conn = Connection::open(path).map_err(sq)?;
    let found = read_data_version(&conn).map_err(sq)?;
    conn.close().map_err(|(_, e)| Error::sqlite(path, e))?;
    let ok = match found {
        Some(v) => same_data_version(v, expected),
        None => expected == 0,
    };
    if !ok {
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

/// The restorable versions `lo` to `hi` as an operator reads them. Version 0
/// of a log without a snapshot is the empty database before the first
/// change: the command line does not restore it, so the range is shown from 1.
pub fn range_text(lo: Seq, hi: Seq, has_snapshot: bool) -> String {
    match (has_snapshot, lo, hi) {
        (false, 0, 0) => "none yet, the backup holds no change".to_string(),
        (false, 0, hi) => format!("1 to {}; 0 is the empty database before the first change", data_version(hi)),
        (_, lo, hi) => format!("{} to {}", data_version(lo), data_version(hi)),
    }
}

/// Resolve a user's `--to-version` against a reader's restorable range.
pub fn target(reader: &Reader<'_>, to_version: Option<u64>) -> Result<Seq> {
    let (lo, hi) = reader.restorable();
    let range = || range_text(lo, hi, reader.snapshot().is_some());
    match to_version {
        None => Ok(hi),
        Some(v) => match version::seq_at_or_below(hi, v) {
            Some(seq) if seq >= lo => Ok(seq),
            _ => Err(Error::NotRestorable { asked: v, range: range() }),
        },
    }
}

/// Replay a store's snapshot and changes up to `upto` into `path` (a new or
/// empty file). Returns the replayer's counts, whether foreign keys are on at
/// `upto`, and the chain hash of the last change replayed.
pub fn replay_into(reader: &Reader<'_>, upto: Seq, path: &Path, progress: Option<&Progress>) -> Result<Replayed> {
    {
        let mut file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut file);
        reader.copy_snapshot(&mut w)?;
        std::io::Write::flush(&mut w).map_err(|e| Error::io(path, e))?;
    }
    let fk = reader.snapshot().map(|s| s.foreign_keys).unwrap_or(true);
    let mut replayer = Replayer::open(path, fk)?;
    let changes = reader.changes(upto)?;
    // Reading, checking and decoding the log runs on its own thread, ahead of
    // SQLite, so a restore costs about what executing the statements costs.
    let (count, last_hash) = std::thread::scope(|scope| -> Result<(u64, Hash)> {
        // Changes cross in batches: one hand-over per change would wake a
        // thread 20 000 times for a 20 000-change restore.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<crate::record::Change>>>(8);
        let producer = scope.spawn(move || {
            let mut changes = changes;
            let mut batch = Vec::with_capacity(HANDOVER_BATCH);
            for change in changes.by_ref() {
                let failed = change.is_err();
                batch.push(change);
                if batch.len() == HANDOVER_BATCH || failed {
                    // A closed channel means the replay stopped on an error.
                    if tx.send(std::mem::take(&mut batch)).is_err() || failed {
                        return changes.last_hash();
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            changes.last_hash()
        });
        let mut count = 0u64;
        for batch in rx {
            for change in batch {
                let change = change?;
                for t in &change.transactions {
                    replayer.apply(&t.statements)?;
                }
                count += 1;
                tick(progress, count);
            }
        }
        let last_hash =
            producer.join().map_err(|_| Error::corrupt(reader.path(), "reading the change log failed unexpectedly"))?;
        Ok((count, last_hash))
    })?;
    report_done(progress, count);
    let statements = replayer.statements;
    let foreign_keys = replayer.finish(data_version(upto))?;
    Ok(Replayed { changes: count, statements, foreign_keys, last_hash })
}

/// What [`replay_into`] did.
#[derive(Clone, Debug)]
pub struct Replayed {
    pub changes: u64,
    pub statements: u64,
    pub foreign_keys: bool,
    /// Chain hash of the last change replayed (the snapshot's anchor if none).
    pub last_hash: crate::record::Hash,
}

/// Restore `store` to `dest` (a file, or a directory meaning
/// `DIR/lightningd.sqlite3`).
pub fn restore_store(store: &Store, dest: &Path, opts: &Options) -> Result<Report> {
    let reader = store.reader()?;
    let seq = target(&reader, opts.to_version)?;
    let staged = Staged::new(store.path(), dest, opts.force)?;
    let replayed = replay_into(&reader, seq, staged.path(), opts.progress.as_ref())?;
    let placed = staged.persist(data_version(seq))?;
    Ok(Report {
        path: placed.path,
        version: data_version(seq),
        seq,
        changes: replayed.changes,
        statements: replayed.statements,
        bytes: placed.bytes,
        ownership: placed.ownership,
        moved_aside: placed.moved_aside,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_version_compares_modulo_2_32() {
        assert!(same_data_version(45, 45));
        assert!(same_data_version(1 << 32, 0));
        assert!(same_data_version((1 << 32) + 7, 7));
        assert!(!same_data_version(44, 45));
        assert!(!same_data_version(-1, 0));
    }

    #[test]
    fn mends_pre_4090_statements() {
        assert_eq!(
            fix_pre_4090("UPDATE outputs SET status=2, reserved_til=1891733WHERE prev_out_tx=x'00'"),
            "UPDATE outputs SET status=2, reserved_til=1891733 WHERE prev_out_tx=x'00'"
        );
        assert_eq!(
            fix_pre_4090("UPDATE channels SET peer_id=5WHERE channels.id=3"),
            "UPDATE channels SET peer_id=5 WHERE channels.id=3"
        );
        assert!(matches!(fix_pre_4090("UPDATE t SET a=5 WHERE b=1"), Cow::Borrowed(_)));
        assert!(matches!(fix_pre_4090("UPDATE t SET peer_id=5WHERE other=1"), Cow::Borrowed(_)));
    }
}
