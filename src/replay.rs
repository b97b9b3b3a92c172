//! Replay: applying a change log to a SQLite file exactly as lightningd
//! executed it.
//!
//! Owns the replay rules that make the result equal lightningd's database:
//! foreign keys as lightningd had them at the start point (so `ON DELETE
//! CASCADE` and `SET NULL` happen as they did), lone `PRAGMA foreign_keys`
//! reports run outside any transaction, the pre-4090 expansion bug mended,
//! transactions grouped into bounded SQLite transactions, and the checks at
//! the end (`PRAGMA integrity_check`, `data_version` equal to the version
//! replayed to). A store of an application's own ([`Model::Application`])
//! is replayed with none of lightningd's rules: its statements exactly as
//! stored, foreign keys as it declared, and the integrity check alone at
//! the end. Every replay goes through here: restore, compaction,
//! `verify`, the dump export and the restore of a legacy `.dbak` file.
//!
//! It consumes changes from any iterator of [`Change`]s: the store's
//! ([`Reader::changes`]) or a legacy file's plan. It must not choose, create,
//! place or remove files: the caller hands it a file (empty, or holding the
//! start image) that the caller discards if the replay fails.
//!
//! ```
//! use cln_backup::{replay, version::bump_statement, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("node.redb"))?;
//! # store.add_change(1, &[
//! #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
//! #     "INSERT INTO vars VALUES ('data_version', 0)".into(),
//! #     "CREATE TABLE parent (id INTEGER PRIMARY KEY)".into(),
//! #     "CREATE TABLE child (id INTEGER, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE)".into(),
//! #     bump_statement(1),
//! # ])?;
//! // Version 1 made a parent table and a child table that cascades from it.
//! store.add_change(2, &[
//!     "INSERT INTO parent VALUES (1)".to_string(),
//!     "INSERT INTO child VALUES (1, 1)".into(),
//!     bump_statement(2),
//! ])?;
//! store.add_change(3, &["DELETE FROM parent WHERE id = 1".to_string(), bump_statement(3)])?;
//!
//! let db = dir.path().join("replayed.sqlite3");
//! std::fs::File::create(&db)?;
//! let reader = store.reader()?;
//! let replayed = replay::replay_store(&reader, reader.head(), &db, None)?;
//! assert_eq!(replayed.changes, 3);
//! // Foreign keys on, as lightningd has them: the delete cascaded, as it did live.
//! let conn = cln_backup::rusqlite::Connection::open(&db)?;
//! assert_eq!(conn.query_row("SELECT count(*) FROM child", [], |r| r.get::<_, i64>(0))?, 0);
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use crate::model::Model;
use crate::pace::{Pace, Paced};
use crate::record::{Change, Hash};
use crate::store::{Reader, SnapshotInfo};
use crate::version::{self, data_version, Seq};
use rusqlite::Connection;
use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// Changes replayed per SQLite transaction. lightningd committed each one
/// separately; grouping them gives the same database (every constraint is
/// immediate) and bounds the rollback journal.
const CHANGES_PER_BATCH: u64 = 20_000;

/// Changes per SQLite transaction in the background (a compaction): each
/// commit is synced, so the pages it wrote reach the disk in small steps
/// beside the node's own commits.
const BACKGROUND_CHANGES_PER_BATCH: u64 = 500;

/// Changes decoded ahead of SQLite are handed over this many at a time.
const HANDOVER_BATCH: usize = 64;

/// Called with the number of changes replayed so far.
///
/// ```
/// use cln_backup::{replay, Change, Model, Transaction, TIME_NOT_RECORDED};
/// use std::sync::{Arc, Mutex};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let calls = Arc::new(Mutex::new(Vec::new()));
/// let seen = calls.clone();
/// let progress: replay::Progress = Arc::new(move |n| seen.lock().unwrap().push(n));
/// let changes = (1..=300u64).map(|v| {
///     let sql = if v == 1 { "CREATE TABLE t (x)".to_string() } else { format!("INSERT INTO t VALUES ({v})") };
///     Ok(Change { seq: v, transactions: vec![Transaction { time_ms: TIME_NOT_RECORDED, statements: vec![sql] }] })
/// });
/// let app = Model::Application { foreign_keys: true };
/// replay::replay_changes(&dir.path().join("db.sqlite3"), app, true, changes, 300, Some(&progress))?;
/// // Every 256 changes, and once at the end.
/// assert_eq!(*calls.lock().unwrap(), [256, 300]);
/// # Ok(()) }
/// ```
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

/// What a replay did.
///
/// ```
/// use cln_backup::{replay, version::bump_statement, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// store.add_change(1, &[
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
///     "INSERT INTO vars VALUES ('data_version', 0)".into(),
///     bump_statement(1),
/// ])?;
/// // lightningd reports a lone pragma at the same version, outside any transaction.
/// store.add_change(1, &["PRAGMA foreign_keys = OFF"])?;
/// let db = dir.path().join("replayed.sqlite3");
/// std::fs::File::create(&db)?;
/// let replayed = replay::replay_store(&store.reader()?, 1, &db, None)?;
/// assert_eq!((replayed.changes, replayed.statements, replayed.foreign_keys), (1, 4, false));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Replayed {
    /// Changes replayed (one per version; a lone report repeating a version
    /// belongs to that version's change).
    pub changes: u64,
    /// SQL statements executed.
    pub statements: u64,
    /// Whether foreign keys are enforced at the last change replayed.
    pub foreign_keys: bool,
}

/// Foreign keys at the start of a store's log: as the snapshot recorded
/// them, and from an empty database as the model says (lightningd opens its
/// database with foreign keys on).
pub(crate) fn foreign_keys_at_start(model: Model, snapshot: Option<&SnapshotInfo>) -> bool {
    snapshot.map(|s| s.foreign_keys).unwrap_or(model.foreign_keys_at_start())
}

/// Replay a store's snapshot and changes up to `upto` into `path` (a new,
/// empty file). The log is read, checked and decoded on a thread of its
/// own, ahead of SQLite.
///
/// ```
/// use cln_backup::{replay, rusqlite::Connection, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE t (x)"])?;
/// # for v in 2..=5 {
/// #     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// # }
/// let reader = store.reader()?;
/// // Version 3 of a store at 5, into a new file.
/// let db = dir.path().join("at-3.sqlite3");
/// std::fs::File::create(&db)?;
/// let replayed = replay::replay_store(&reader, 3, &db, None)?;
/// assert_eq!(replayed.changes, 3);
/// let rows: i64 = Connection::open(&db)?.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
/// assert_eq!(rows, 2);
/// # Ok(()) }
/// ```
pub fn replay_store(reader: &Reader, upto: Seq, path: &Path, progress: Option<&Progress>) -> Result<Replayed> {
    {
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        reader.copy_snapshot_for(upto, &mut w)?;
        std::io::Write::flush(&mut w).map_err(|e| Error::io(path, e))?;
    }
    let fk = foreign_keys_at_start(reader.model(), reader.snapshot_for(upto).as_ref());
    let changes = reader.changes(upto)?;
    let failed = || Error::corrupt(reader.path(), "reading the change log failed unexpectedly");
    run(path, reader.model(), fk, changes, upto, progress, failed)
}

/// Replay `changes` into `path`, which holds the start image (or is empty
/// for a log that starts from nothing), under the rules of `model`, with
/// foreign keys `foreign_keys` at the start. The result must be at `upto`:
/// SQLite's `integrity_check` is run, and in lightningd's model its
/// `data_version` is checked. The first error the iterator yields stops the
/// replay and is returned as it is.
///
/// ```
/// use cln_backup::{replay, rusqlite::Connection, version::bump_statement, Change, Model, Transaction};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let change = |v: u32, sql: &[&str]| -> cln_backup::Result<Change> {
///     let mut statements: Vec<String> = sql.iter().map(|s| s.to_string()).collect();
///     statements.push(bump_statement(v));
///     Ok(Change { seq: v.into(), transactions: vec![Transaction { time_ms: 0, statements }] })
/// };
/// let log = || {
///     [
///         change(1, &[
///             "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
///             "INSERT INTO vars VALUES ('data_version', 0)",
///             "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
///             "CREATE TABLE child (parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE)",
///             "INSERT INTO parent VALUES (1)",
///             "INSERT INTO child VALUES (1)",
///         ]),
///         change(2, &["DELETE FROM parent WHERE id = 1"]),
///     ]
/// };
/// // Foreign keys at the start decide whether the delete cascades.
/// for foreign_keys in [true, false] {
///     let db = dir.path().join(format!("fk-{foreign_keys}.sqlite3"));
///     let replayed = replay::replay_changes(&db, Model::Lightningd, foreign_keys, log(), 2, None)?;
///     assert_eq!(replayed.changes, 2);
///     let children: i64 = Connection::open(&db)?.query_row("SELECT count(*) FROM child", [], |r| r.get(0))?;
///     assert_eq!(children, if foreign_keys { 0 } else { 1 });
/// }
/// // The result must be at the version given.
/// let db = dir.path().join("wrong.sqlite3");
/// assert!(replay::replay_changes(&db, Model::Lightningd, true, log(), 3, None).is_err());
/// # Ok(()) }
/// ```
pub fn replay_changes<I>(
    path: &Path,
    model: Model,
    foreign_keys: bool,
    changes: I,
    upto: Seq,
    progress: Option<&Progress>,
) -> Result<Replayed>
where
    I: IntoIterator<Item = Result<Change>>,
    I::IntoIter: Send,
{
    let failed = || Error::io(path, std::io::Error::other("reading the changes to replay failed unexpectedly"));
    run(path, model, foreign_keys, changes.into_iter(), upto, progress, failed)
}

/// A replay in the foreground: [`apply_all`], then the checks at the end.
/// `failed` is the error when the reading thread dies (a bug, not input).
fn run<I>(
    path: &Path,
    model: Model,
    foreign_keys: bool,
    changes: I,
    upto: Seq,
    progress: Option<&Progress>,
    failed: impl FnOnce() -> Error,
) -> Result<Replayed>
where
    I: Iterator<Item = Result<Change>> + Send,
{
    let (replayer, count, _) = apply_all(path, model, foreign_keys, changes, progress, failed, Pace::Foreground)?;
    replayer.finish(data_version(upto), count)
}

/// The one replay loop: open `path` and apply `changes` to it, pulled on
/// their own thread and applied here in order, without the checks at the
/// end ([`Replayer::finish`]). Returns the replayer, the changes applied and
/// the iterator, spent, so that a caller can ask it what it read (a store's
/// last chain hash).
fn apply_all<I>(
    path: &Path,
    model: Model,
    foreign_keys: bool,
    changes: I,
    progress: Option<&Progress>,
    failed: impl FnOnce() -> Error,
    pace: Pace,
) -> Result<(Replayer, u64, I)>
where
    I: Iterator<Item = Result<Change>> + Send,
{
    let mut replayer = Replayer::open(path, model, foreign_keys, pace)?;
    // Reading, checking and decoding the log runs on its own thread, ahead of
    // SQLite, so a replay costs about what executing the statements costs.
    let (count, changes) = std::thread::scope(|scope| -> Result<(u64, I)> {
        // Changes cross in batches: one hand-over per change would wake a
        // thread 20 000 times for a 20 000-change replay.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Result<Change>>>(8);
        let producer = scope.spawn(move || {
            let mut changes = changes;
            let mut batch = Vec::with_capacity(HANDOVER_BATCH);
            for change in changes.by_ref() {
                let failed = change.is_err();
                batch.push(change);
                if batch.len() == HANDOVER_BATCH || failed {
                    // A closed channel means the replay stopped on an error.
                    if tx.send(std::mem::take(&mut batch)).is_err() || failed {
                        return changes;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = tx.send(batch);
            }
            changes
        });
        let mut count = 0u64;
        for batch in rx {
            for change in batch {
                let change = change?;
                for t in &change.transactions {
                    replayer.apply(&t.statements).map_err(|e| match e {
                        Error::Sqlite { path, context: Some(c), source } => Error::Sqlite {
                            path,
                            context: Some(format!("version {}: {c}", change.data_version())),
                            source,
                        },
                        other => other,
                    })?;
                }
                count += 1;
                tick(progress, count);
            }
        }
        let changes = producer.join().map_err(|_| failed())?;
        Ok((count, changes))
    })?;
    report_done(progress, count);
    Ok((replayer, count, changes))
}

/// The replay of a compaction: the image of the newest snapshot at or below
/// `point` and the changes after it up to `point`, into `path` (an empty
/// file), written at the pace of `rate` (see [`crate::pace`]). Returns what
/// was replayed and the chain hash of the last change.
///
/// Decision: no read view of the store is held for long. The image is
/// copied through a new view every few chunks, the changes are read through
/// one view only while they are applied, and SQLite's check of the result
/// runs after that view is gone. A view held for the whole replay (tens of
/// seconds on a large node) makes the writer keep every page it frees
/// meanwhile and free them all in its first commit after: measured, one
/// `db_write` of 30 ms.
pub(crate) fn replay_for_compaction(
    store: &crate::Store,
    point: Seq,
    path: &Path,
    progress: Option<&Progress>,
    rate: Option<u64>,
) -> Result<(Replayed, Hash)> {
    let raced = || Error::CompactionRaced { version: data_version(point) };
    let snapshot = store.reader()?.snapshot_header_for(point);
    if let Some((seq, header)) = &snapshot {
        let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, Paced::new(file, rate));
        store.copy_snapshot_in_steps(*seq, header, &mut w)?;
        std::io::Write::flush(&mut w).map_err(|e| Error::io(path, e))?;
    }
    tracing::debug!("replay: start image of {} copied; replaying the changes", path.display());
    let reader = store.reader()?;
    // The snapshot copied is still the one the changes start from (only a
    // compaction, and this one holds the store's compaction lock, replaces
    // snapshots below the head).
    if reader.snapshot_header_for(point).map(|(seq, _)| seq) != snapshot.as_ref().map(|(seq, _)| *seq) {
        return Err(raced());
    }
    let model = reader.model();
    let fk = foreign_keys_at_start(model, reader.snapshot_for(point).as_ref());
    let changes = reader.changes(point)?;
    let failed = || Error::corrupt(reader.path(), "reading the change log failed unexpectedly");
    let (replayer, count, changes) = apply_all(path, model, fk, changes, progress, failed, Pace::Background(rate))?;
    let last_hash = changes.last_hash();
    drop(changes);
    drop(reader);
    let replayed = replayer.finish(data_version(point), count)?;
    Ok((replayed, last_hash))
}

/// Mend the statements mangled by CLN's expansion bug before PR 4090:
/// `reserved_til=1891733WHERE` and `peer_id=5WHERE channels.id=` lost the
/// space before `WHERE`.
///
/// ```
/// use cln_backup::replay::fix_pre_4090;
/// use std::borrow::Cow;
///
/// assert_eq!(
///     fix_pre_4090("UPDATE outputs SET status=2, reserved_til=1891733WHERE prev_out_tx=x'00'"),
///     "UPDATE outputs SET status=2, reserved_til=1891733 WHERE prev_out_tx=x'00'"
/// );
/// // Anything else comes back as it was, borrowed.
/// assert!(matches!(fix_pre_4090("UPDATE t SET a=5 WHERE b=1"), Cow::Borrowed(_)));
/// ```
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

/// Applies transactions to one SQLite file.
struct Replayer {
    conn: Connection,
    path: PathBuf,
    model: Model,
    in_txn: bool,
    foreign_keys: bool,
    journal_mode: String,
    pending: u64,
    /// Changes per SQLite transaction.
    batch: u64,
    /// In the background: a handle on the file, synced after each commit.
    paced: Option<Paced>,
    /// Statements executed.
    statements: u64,
}

impl Replayer {
    /// Open `path` (an existing image or a new empty file) for replay, with
    /// foreign keys enforced or not as the log's state says.
    fn open(path: &Path, model: Model, foreign_keys: bool, pace: Pace) -> Result<Replayer> {
        let sq = |e| Error::sqlite(path, e);
        let (batch, paced) = match pace {
            Pace::Foreground => (CHANGES_PER_BATCH, None),
            Pace::Background(rate) => {
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                (BACKGROUND_CHANGES_PER_BATCH, Some(Paced::new(file, rate)))
            }
        };
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
            model,
            in_txn: false,
            foreign_keys,
            journal_mode,
            pending: 0,
            batch,
            paced,
            statements: 0,
        })
    }

    fn exec(&self, sql: &str) -> Result<()> {
        self.conn.execute_batch(sql).map_err(|e| Error::Sqlite {
            path: self.path.clone(),
            context: Some(sql.chars().take(200).collect()),
            source: e.into(),
        })
    }

    fn commit(&mut self) -> Result<()> {
        if self.in_txn {
            self.exec("COMMIT")?;
            self.in_txn = false;
            self.pending = 0;
            if let Some(p) = &mut self.paced {
                p.sync().map_err(|e| Error::io(&self.path, e))?;
            }
        }
        Ok(())
    }

    /// Replay one transaction as it was reported.
    fn apply<S: AsRef<str>>(&mut self, statements: &[S]) -> Result<()> {
        let lightningd = self.model.is_lightningd();
        if let Some(on) = version::lone_foreign_keys_pragma(statements).filter(|_| lightningd) {
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
            if lightningd {
                self.exec(&fix_pre_4090(s.as_ref()))?;
            } else {
                self.exec(s.as_ref())?;
            }
        }
        self.statements += statements.len() as u64;
        self.pending += 1;
        if self.pending >= self.batch {
            self.commit()?;
        }
        Ok(())
    }

    /// Commit, check the database, and close it. `expect_version` is the
    /// `data_version` the database must hold (a database with no `vars` table
    /// passes only when it is 0: an empty backup). Returns what was
    /// replayed, `changes` being the number of changes applied.
    fn finish(mut self, expect_version: u32, changes: u64) -> Result<Replayed> {
        self.commit()?;
        let sq = |e| Error::sqlite(&self.path, e);
        if !self.journal_mode.eq_ignore_ascii_case("memory") {
            let mode = format!("PRAGMA journal_mode = {}", self.journal_mode);
            self.conn.query_row(&mode, [], |_| Ok(())).map_err(sq)?;
        }
        tracing::debug!("replay: checking {}", self.path.display());
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
        let found = if self.model.is_lightningd() { read_data_version(&self.conn).map_err(sq)? } else { None };
        if self.model.is_lightningd() && !holds_data_version(found, expect_version) {
            return Err(Error::RestoreCheck {
                path: self.path.clone(),
                what: format!(
                    "data_version is {} but the backup's version is {expect_version}",
                    found.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
                ),
            });
        }
        let replayed = Replayed { changes, statements: self.statements, foreign_keys: self.foreign_keys };
        self.conn.close().map_err(|(_, e)| Error::sqlite(&self.path, e))?;
        Ok(replayed)
    }
}

/// The checks at the end of a replay, on an image offered as a snapshot at
/// `version` (see [`Store::add_snapshot`](crate::Store::add_snapshot)): a
/// SQLite database (its header, then `PRAGMA quick_check`), and in
/// lightningd's model one whose `data_version` is `version`. The file is
/// opened read-only. The error says what is wrong in one line.
pub(crate) fn check_image(file: &Path, model: Model, version: u32) -> std::result::Result<(), String> {
    let mut magic = [0u8; 16];
    let len = std::fs::metadata(file).map_err(|e| e.to_string())?.len();
    if len > 0 {
        use std::io::Read;
        let mut f = std::fs::File::open(file).map_err(|e| e.to_string())?;
        if f.read_exact(&mut magic).is_err() || &magic != b"SQLite format 3\0" {
            return Err("the image is not a SQLite database (its header is not SQLite's)".into());
        }
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(file, flags).map_err(|e| format!("the image does not open: {e}"))?;
    let check: Vec<String> = conn
        .prepare("PRAGMA quick_check")
        .and_then(|mut s| s.query_map([], |r| r.get::<_, String>(0))?.collect())
        .map_err(|e| format!("the image is damaged: {e}"))?;
    if check != ["ok"] {
        return Err(format!("the image is damaged: {}", check.join("; ")));
    }
    if model.is_lightningd() {
        let found = read_data_version(&conn).map_err(|e| format!("cannot read its data_version: {e}"))?;
        if !holds_data_version(found, version) {
            return Err(format!(
                "the image is at data_version {}, not {version}",
                found.map(|v| v.to_string()).unwrap_or_else(|| "(none: no vars table or row)".into())
            ));
        }
    }
    Ok(())
}

/// `vars.data_version` of a database; `None` without a `vars` table or row.
pub(crate) fn read_data_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
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

/// Whether a database whose `vars.data_version` reads `found` is at
/// lightningd's u32 version `expected`. lightningd's version wraps at 2^32
/// while the integer its bump statement increments in SQLite goes on, so
/// compare modulo 2^32; a database without the row is version 0 only.
pub(crate) fn holds_data_version(found: Option<i64>, expected: u32) -> bool {
    match found {
        Some(v) => same_data_version(v, expected),
        None => expected == 0,
    }
}

fn same_data_version(stored: i64, expected: u32) -> bool {
    stored.rem_euclid(1 << 32) == i64::from(expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::atomic_file::TempFile;
    use crate::record::Transaction;
    use crate::store::Store;
    use crate::version::bump_statement;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Version 1 of a database whose children cascade from their parent.
    const SCHEMA: [&str; 4] = [
        "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
        "INSERT INTO vars VALUES ('data_version', 0)",
        "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
        "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE)",
    ];

    fn change(version: u32, statements: &[&str]) -> Change {
        let mut statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
        statements.push(bump_statement(version));
        Change { seq: Seq::from(version), transactions: vec![Transaction { time_ms: 0, statements }] }
    }

    /// Versions 1 and 2 (a parent with two children), then 3, deleting the parent.
    fn cascade_log() -> Vec<Change> {
        vec![
            change(1, &SCHEMA),
            change(2, &["INSERT INTO parent VALUES (1)", "INSERT INTO child VALUES (1, 1), (2, 1)"]),
            change(3, &["DELETE FROM parent WHERE id = 1"]),
        ]
    }

    fn children(path: &Path) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row("SELECT count(*) FROM child", [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn data_version_compares_modulo_2_32() {
        assert!(same_data_version(45, 45));
        assert!(same_data_version(1 << 32, 0));
        assert!(same_data_version((1 << 32) + 7, 7));
        assert!(!same_data_version(44, 45));
        assert!(!same_data_version(-1, 0));
        assert!(holds_data_version(None, 0));
        assert!(!holds_data_version(None, 1));
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

    #[test]
    fn an_error_from_the_changes_stops_the_replay_with_that_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = TempFile::create(&dir.path().join("lightningd.sqlite3"), "restore").unwrap();
        let pulled = AtomicUsize::new(0);
        let log = cascade_log();
        let changes = [Ok(log[0].clone()), Err(Error::corrupt("node.redb", "injected")), Ok(log[1].clone())]
            .into_iter()
            .inspect(|_| {
                pulled.fetch_add(1, Ordering::SeqCst);
            });
        let err = replay_changes(tmp.path(), Model::Lightningd, true, changes, 2, None).unwrap_err();
        assert!(matches!(&err, Error::Corrupt { what, .. } if what == "injected"), "{err}");
        // Nothing was read past the error.
        assert_eq!(pulled.load(Ordering::SeqCst), 2);
        // The replay left no SQLite file of its own beside the temporary...
        let names = |d: &Path| -> Vec<String> {
            std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect()
        };
        let tmp_name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(names(dir.path()), [tmp_name]);
        // ...and the temporary goes with the failed restore.
        drop(tmp);
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }

    #[test]
    fn an_error_from_a_statement_names_the_file_and_the_statement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let changes = [Ok(change(1, &SCHEMA)), Ok(change(2, &["INSERT INTO nowhere VALUES (1)"]))];
        let err = replay_changes(&path, Model::Lightningd, true, changes, 2, None).unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("INSERT INTO nowhere"), "{text}");
    }

    #[test]
    fn the_result_must_be_at_the_version_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite3");
        let err =
            replay_changes(&path, Model::Lightningd, true, cascade_log().into_iter().map(Ok), 4, None).unwrap_err();
        assert!(matches!(&err, Error::RestoreCheck { what, .. } if what.contains("data_version is 3")), "{err}");
    }

    #[test]
    fn foreign_keys_from_the_start_point_decide_the_cascade() {
        let dir = tempfile::tempdir().unwrap();
        for on in [true, false] {
            let path = dir.path().join(format!("fk-{on}.sqlite3"));
            let replayed =
                replay_changes(&path, Model::Lightningd, on, cascade_log().into_iter().map(Ok), 3, None).unwrap();
            assert_eq!(replayed.foreign_keys, on);
            assert_eq!((replayed.changes, replayed.statements), (3, 10));
            assert_eq!(children(&path), if on { 0 } else { 2 });
        }
    }

    #[test]
    fn a_store_replays_from_empty_with_foreign_keys_on_and_from_a_snapshot_as_it_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("node.redb")).unwrap();
        let log = cascade_log();
        for c in &log[..2] {
            store.add_change(c.data_version(), &c.transactions[0].statements).unwrap();
        }
        store.add_change(2, &["PRAGMA foreign_keys = OFF"]).unwrap();
        store.add_change(3, &["INSERT INTO parent VALUES (2)".to_string(), bump_statement(3)]).unwrap();
        store.add_change(4, &["DELETE FROM parent WHERE id = 1".to_string(), bump_statement(4)]).unwrap();

        // From the empty database: on until the pragma turns them off.
        let reader = store.reader().unwrap();
        assert!(foreign_keys_at_start(Model::Lightningd, reader.snapshot().as_ref()));
        let at_1 = dir.path().join("at-1.sqlite3");
        std::fs::File::create(&at_1).unwrap();
        assert!(replay_store(&reader, 1, &at_1, None).unwrap().foreign_keys);
        let head = dir.path().join("head.sqlite3");
        std::fs::File::create(&head).unwrap();
        assert!(!replay_store(&reader, 4, &head, None).unwrap().foreign_keys);
        assert_eq!(children(&head), 2);
        drop(reader);

        // A snapshot taken with foreign keys off starts the replay with them off.
        crate::compact::compact(&store, &Default::default()).unwrap();
        let reader = store.reader().unwrap();
        let snapshot = reader.snapshot().unwrap();
        assert_eq!((snapshot.version, snapshot.foreign_keys), (3, false));
        assert!(!foreign_keys_at_start(Model::Lightningd, Some(&snapshot)));
        let after = dir.path().join("after.sqlite3");
        std::fs::File::create(&after).unwrap();
        let replayed = replay_store(&reader, 4, &after, None).unwrap();
        assert_eq!((replayed.changes, replayed.foreign_keys), (1, false));
        assert_eq!(children(&after), 2);
    }
}
