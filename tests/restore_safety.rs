//! What a restore or an export must never do to the files around it: leave a
//! crashed SQLite's journal or WAL to be applied to the restored database,
//! write over the backup it reads, hand lightningd a file it cannot open, or
//! let an interrupted run's temporary block the next one. Each test runs the
//! real binary on real files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rusqlite::Connection;
use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");
/// The fixture's version.
const FIXTURE_VERSION: i64 = 46;
/// The version of the old database a restore replaces.
const OLD_VERSION: i64 = 10;
/// Set in the child process that leaves a crashed SQLite's files behind.
const CHILD_DB: &str = "CLN_BACKUP_TEST_CRASHING_SQLITE_DB";
const CHILD_MODE: &str = "CLN_BACKUP_TEST_CRASHING_SQLITE_MODE";
const CHILD_READY: &str = "crashing-sqlite-ready";

fn cln_backup(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cln-backup"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("LIGHTNINGD_PLUGIN")
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

#[track_caller]
fn assert_ok(out: &Output) {
    assert!(out.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", out.status, stdout(out), stderr(out));
}

/// The run failed with one `error:` line naming every path in `paths` and saying `what`.
#[track_caller]
fn assert_fails(out: &Output, paths: &[&Path], what: &str) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, stdout: {}", stdout(out));
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    for path in paths {
        assert!(err.contains(&path.display().to_string()), "{err:?} does not name {}", path.display());
    }
    assert!(err.contains(what), "{err:?} does not say {what:?}");
    err
}

/// A small database shaped like lightningd's, at `data_version`.
fn lightningd_db(path: &Path, data_version: i64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE vars (name VARCHAR(32), val VARCHAR(255), intval INTEGER, blobval BLOB, PRIMARY KEY (name));
         INSERT INTO vars (name, intval) VALUES ('data_version', {data_version});
         CREATE TABLE peers (id INTEGER PRIMARY KEY, node_id BLOB UNIQUE, address TEXT);
         INSERT INTO peers VALUES (1, x'02aabb', '127.0.0.1:9735');"
    ))
    .unwrap();
}

fn data_version_of(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get(0)).unwrap()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A node directory holding an old database, and a store at the fixture's version.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ln")).unwrap();
        lightningd_db(&dir.path().join("ln/lightningd.sqlite3"), OLD_VERSION);
        let setup = Setup { dir };
        assert_ok(&cln_backup(&[&"import", &FIXTURE_DBAK, &setup.store()]));
        setup
    }
    fn ln(&self) -> PathBuf {
        self.dir.path().join("ln")
    }
    fn db(&self) -> PathBuf {
        self.ln().join("lightningd.sqlite3")
    }
    fn store(&self) -> PathBuf {
        self.dir.path().join("node.redb")
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Not a test on its own: run as a child process by the tests below, it
/// opens the database named in its environment, writes part of a transaction
/// (`journal` mode: enough rows to spill pages to the file, so the rollback
/// journal is hot) or commits transactions to a write-ahead log that is never
/// checkpointed (`wal` mode), says it is ready and waits to be killed.
#[test]
#[ignore = "run as a child process by the crashed-SQLite tests"]
fn crashing_sqlite() {
    let Some(db) = std::env::var_os(CHILD_DB) else {
        return;
    };
    let conn = Connection::open(&db).unwrap();
    match std::env::var(CHILD_MODE).unwrap().as_str() {
        "journal" => {
            conn.execute_batch(
                "PRAGMA cache_size = 8;
                 BEGIN;
                 UPDATE vars SET intval = intval + 1 WHERE name = 'data_version';
                 CREATE TABLE filler (b BLOB);",
            )
            .unwrap();
            for _ in 0..400 {
                conn.execute("INSERT INTO filler VALUES (randomblob(2000))", []).unwrap();
            }
        }
        "wal" => {
            let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0)).unwrap();
            assert_eq!(mode, "wal");
            conn.execute_batch(
                "PRAGMA wal_autocheckpoint = 0;
                 UPDATE vars SET intval = intval + 1 WHERE name = 'data_version';
                 CREATE TABLE filler (b BLOB);
                 INSERT INTO filler VALUES (randomblob(2000));",
            )
            .unwrap();
        }
        other => panic!("unknown mode {other}"),
    }
    println!("{CHILD_READY}");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(60));
    }
}

/// Leave `db` as a SQLite killed mid-work leaves it: a child process opens it,
/// writes, and is SIGKILLed.
fn crash_sqlite_on(db: &Path, mode: &str) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "crashing_sqlite", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, db)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut seen = vec![];
    for line in out.lines() {
        let line = line.unwrap();
        if line.contains(CHILD_READY) {
            break;
        }
        seen.push(line);
    }
    // Child::kill is SIGKILL: SQLite gets no chance to tidy up.
    child.kill().unwrap();
    child.wait().unwrap();
    match mode {
        "journal" => {
            let journal = with_suffix(db, "-journal");
            let len = std::fs::metadata(&journal).map(|m| m.len()).unwrap_or(0);
            assert!(len > 0, "no hot journal at {} (child said {seen:?})", journal.display());
        }
        _ => {
            for suffix in ["-wal", "-shm"] {
                assert!(with_suffix(db, suffix).exists(), "no {suffix} file (child said {seen:?})");
            }
        }
    }
}

/// The one `DB.replaced-*` database beside `db`.
fn replaced(db: &Path) -> PathBuf {
    let dir = db.parent().unwrap();
    let prefix = format!("{}.replaced-", db.file_name().unwrap().to_string_lossy());
    let found: Vec<String> = names(dir)
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && !n.ends_with("-journal") && !n.ends_with("-wal") && !n.ends_with("-shm"))
        .collect();
    assert_eq!(found.len(), 1, "{:?}", names(dir));
    dir.join(&found[0])
}

/// A hot journal beside the destination: refused without --force (naming it
/// and why), and with --force moved aside with the old database, so that the
/// restored file reads the restored version when opened again and the old
/// pair still opens as the old database.
fn hot_journal_case(source: &dyn Fn(&Setup) -> PathBuf) {
    let s = Setup::new();
    let source = source(&s);
    crash_sqlite_on(&s.db(), "journal");
    let journal = with_suffix(&s.db(), "-journal");

    let out = cln_backup(&[&"restore", &source, &s.ln()]);
    assert_fails(&out, &[&journal], "a crashed SQLite left it; it belongs to the old database");

    let out = cln_backup(&[&"restore", &"--force", &source, &s.ln()]);
    assert_ok(&out);
    assert!(!journal.exists(), "the old journal is still beside the restored database");
    assert_eq!(data_version_of(&s.db()), FIXTURE_VERSION);
    let old = replaced(&s.db());
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Moved {} aside to {}", journal.display(), with_suffix(&old, "-journal").display())),
        "{text}"
    );
    assert!(text.contains(&format!("Moved {} aside to {}", s.db().display(), old.display())), "{text}");
    // The old pair opens as the old database: the journal rolls back the
    // transaction that never committed.
    assert_eq!(data_version_of(&old), OLD_VERSION);
}

#[test]
fn a_hot_journal_is_never_applied_to_a_restore_from_a_store() {
    hot_journal_case(&|s| s.store());
}

#[test]
fn a_hot_journal_is_never_applied_to_a_restore_from_a_legacy_file() {
    hot_journal_case(&|_| PathBuf::from(FIXTURE_DBAK));
}

#[test]
fn a_journal_without_its_database_is_refused_too() {
    let s = Setup::new();
    crash_sqlite_on(&s.db(), "journal");
    std::fs::rename(s.db(), s.path("elsewhere.sqlite3")).unwrap();
    let journal = with_suffix(&s.db(), "-journal");
    let out = cln_backup(&[&"restore", &s.store(), &s.ln()]);
    assert_fails(&out, &[&journal], "would be applied to the restored one");
    assert!(!s.db().exists());

    let out = cln_backup(&[&"restore", &"--force", &s.store(), &s.db()]);
    assert_ok(&out);
    assert!(!journal.exists());
    assert_eq!(data_version_of(&s.db()), FIXTURE_VERSION);
}

#[test]
fn a_write_ahead_log_is_moved_aside_with_its_database() {
    let s = Setup::new();
    crash_sqlite_on(&s.db(), "wal");
    let wal = with_suffix(&s.db(), "-wal");
    let out = cln_backup(&[&"restore", &s.store(), &s.db()]);
    assert_fails(&out, &[&wal], "a crashed SQLite left it");

    assert_ok(&cln_backup(&[&"restore", &"--force", &s.store(), &s.db()]));
    for suffix in ["-journal", "-wal", "-shm"] {
        assert!(!with_suffix(&s.db(), suffix).exists(), "{suffix} left beside the restored database");
    }
    assert_eq!(data_version_of(&s.db()), FIXTURE_VERSION);
    // The transaction committed only to the log is still there, with its database.
    let old = replaced(&s.db());
    assert!(with_suffix(&old, "-wal").exists());
    assert_eq!(data_version_of(&old), OLD_VERSION + 1);
}

#[test]
fn a_backup_is_never_its_own_destination() {
    let s = Setup::new();
    let store = s.store();
    let out = cln_backup(&[&"restore", &"--force", &store, &store]);
    assert_fails(&out, &[&store], "is the same file as the source");

    // A hard link to the store as the directory's database.
    let dir = s.path("linked");
    std::fs::create_dir(&dir).unwrap();
    std::fs::hard_link(&store, dir.join("lightningd.sqlite3")).unwrap();
    let out = cln_backup(&[&"restore", &"--force", &store, &dir]);
    assert_fails(&out, &[&store, &dir.join("lightningd.sqlite3")], "is the same file as the source");

    for args in [&["--format", "dbak"][..], &["--format", "sql"], &["--format", "sql", "--dump"]] {
        for out_path in [store.clone(), dir.join("lightningd.sqlite3")] {
            let mut argv: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"export", &"--force"];
            for a in args {
                argv.push(a);
            }
            argv.push(&store);
            argv.push(&out_path);
            let out = cln_backup(&argv);
            assert_fails(&out, &[&store, &out_path], "is the same file as the source");
        }
    }
    // Opening a store writes to it (redb's own bookkeeping), so check what it holds.
    assert_eq!(cln_backup::Store::open(&store).unwrap().version() as i64, FIXTURE_VERSION, "the store was replaced");

    // A legacy file, by its own path and through a symbolic link.
    let dbak = s.path("copy.dbak");
    std::fs::copy(FIXTURE_DBAK, &dbak).unwrap();
    let before = std::fs::read(&dbak).unwrap();
    let out = cln_backup(&[&"restore", &"--force", &dbak, &dbak]);
    assert_fails(&out, &[&dbak], "is the same file as the source");
    let linked = s.path("symlinked");
    std::fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(&dbak, linked.join("lightningd.sqlite3")).unwrap();
    let out = cln_backup(&[&"restore", &"--force", &dbak, &linked]);
    assert_fails(&out, &[&dbak], "is the same file as the source");
    assert!(std::fs::read(&dbak).unwrap() == before, "the legacy file was written");
    assert_eq!(names(s.dir.path()), ["copy.dbak", "linked", "ln", "node.redb", "symlinked"]);
}

/// A dead process's pid: a child that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn leftovers_of_interrupted_runs_are_removed_by_the_next_run() {
    let s = Setup::new();
    let dead = dead_pid();
    // What a killed restore leaves in the node directory, and a killed import beside the store.
    let restore_left = format!(".cln-backup-restore-{dead}-k2m9q4zt");
    for name in [restore_left.clone(), format!("{restore_left}-journal")] {
        std::fs::write(s.ln().join(name), b"partial").unwrap();
    }
    // A run still going (this very process) is left alone.
    let running = format!(".cln-backup-restore-{}-a1b2c3d4", std::process::id());
    std::fs::write(s.ln().join(&running), b"in progress").unwrap();

    let out = cln_backup(&[&"restore", &"--force", &s.store(), &s.ln()]);
    assert_ok(&out);
    assert_eq!(names(&s.ln()), [running.clone(), "lightningd.sqlite3".to_string()]);
    assert!(stderr(&out).contains(&restore_left), "the removal is not logged: {}", stderr(&out));

    let import_left = format!(".cln-backup-import-{dead}-p0o9i8u7");
    std::fs::write(s.path(&import_left), b"partial store").unwrap();
    let again = s.path("again.redb");
    assert_ok(&cln_backup(&[&"import", &FIXTURE_DBAK, &again]));
    assert!(!s.path(&import_left).exists(), "{:?}", names(s.dir.path()));
    assert!(names(s.dir.path()).iter().all(|n| !n.starts_with(".cln-backup-")), "{:?}", names(s.dir.path()));
}

fn running_as_root() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    std::fs::metadata(&probe).unwrap().uid() == 0
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

const NOBODY: u32 = 65534;

fn chown(path: &Path, id: u32) {
    std::os::unix::fs::chown(path, Some(id), Some(id)).unwrap();
}

/// What `sqlite3` reads for data_version as the user 65534.
fn data_version_as_nobody(db: &Path) -> String {
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "sqlite3"])
        .arg(db)
        .arg("SELECT intval FROM vars WHERE name='data_version'")
        .output()
        .unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout).trim(), String::from_utf8_lossy(&out.stderr).trim())
}

#[test]
fn a_restore_keeps_the_owner_lightningd_runs_as() {
    if !running_as_root() {
        println!("skipped: ownership is tested as root only");
        return;
    }
    let s = Setup::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Replacing a database keeps its owner, group and mode.
    chown(&s.db(), NOBODY);
    std::fs::set_permissions(s.db(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = cln_backup(&[&"restore", &"--force", &s.store(), &s.ln()]);
    assert_ok(&out);
    let m = std::fs::metadata(s.db()).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (NOBODY, NOBODY, 0o640));
    assert!(stdout(&out).contains("owner 65534:65534"), "{}", stdout(&out));
    assert!(stdout(&out).contains("mode 0640"), "{}", stdout(&out));

    // A new database takes its directory's owner, with mode 0600.
    let new_dir = s.path("new-node");
    std::fs::create_dir(&new_dir).unwrap();
    chown(&new_dir, NOBODY);
    assert_ok(&cln_backup(&[&"restore", &s.store(), &new_dir]));
    let fresh = new_dir.join("lightningd.sqlite3");
    let m = std::fs::metadata(&fresh).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (NOBODY, NOBODY, 0o600));

    // Exports: a replaced file's ownership is kept, a new one is 0600.
    let export = s.path("out.sql");
    std::fs::write(&export, b"old").unwrap();
    chown(&export, NOBODY);
    std::fs::set_permissions(&export, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_ok(&cln_backup(&[&"export", &"--format", &"sql", &"--force", &s.store(), &export]));
    let m = std::fs::metadata(&export).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (NOBODY, NOBODY, 0o640));
    let new_export = s.path("new.dbak");
    assert_ok(&cln_backup(&[&"export", &"--format", &"dbak", &s.store(), &new_export]));
    assert_eq!(std::fs::metadata(&new_export).unwrap().mode() & 0o7777, 0o600);

    if !have("setpriv") || !have("sqlite3") {
        println!("skipped: opening as another user needs setpriv and sqlite3");
        return;
    }
    // lightningd, running as its own user, can open both.
    assert_eq!(data_version_as_nobody(&s.db()), FIXTURE_VERSION.to_string());
    assert_eq!(data_version_as_nobody(&fresh), FIXTURE_VERSION.to_string());
}

#[test]
fn without_root_a_restore_keeps_its_own_owner_and_says_so() {
    if !running_as_root() || !have("setpriv") {
        println!("skipped: needs root and setpriv to run as another user");
        return;
    }
    let s = Setup::new();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for p in [s.dir.path().to_path_buf(), s.ln(), s.store()] {
        chown(&p, NOBODY);
    }
    // The database to replace belongs to root: user 65534 cannot give a file to root.
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_cln-backup"))
        .args([Path::new("restore"), Path::new("--force"), &s.store(), &s.ln()])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_ok(&out);
    let m = std::fs::metadata(s.db()).unwrap();
    assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY));
    let text = stdout(&out);
    assert!(text.contains("not running as root, so it could not be given to 0:0"), "{text}");
    assert_eq!(data_version_of(&s.db()), FIXTURE_VERSION);
}
