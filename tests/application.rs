//! A store of an application's own ([`Model::Application`]), as an
//! embedding application uses it: none of lightningd's rules apply. Each
//! test is one thing a trial embedding met with lightningd's model: a
//! statement rewritten, foreign keys forced on, a `vars` table required, a
//! snapshot of the wrong version or not SQLite at all accepted, errors that
//! could not tell "try again" from "stop".
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::lifecycle::{self, Reconciled};
use cln_backup::rusqlite::Connection;
use cln_backup::{restore, Error, ErrorKind, Model, Store};
use std::path::{Path, PathBuf};

const FK_OFF: Model = Model::Application { foreign_keys: false };
const FK_ON: Model = Model::Application { foreign_keys: true };

/// An application: its database, and its store of `model`. Each change is
/// run on the database and reported, as the contract says.
struct App {
    _dir: tempfile::TempDir,
    db: PathBuf,
    conn: Connection,
    store: Store,
}

impl App {
    fn new(model: Model) -> App {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.sqlite3");
        let conn = Connection::open(&db).unwrap();
        let fk = matches!(model, Model::Application { foreign_keys: true });
        conn.execute_batch(if fk { "PRAGMA foreign_keys = ON" } else { "PRAGMA foreign_keys = OFF" }).unwrap();
        let store = Store::create_with(dir.path().join("app.redb"), model).unwrap();
        App { _dir: dir, db, conn, store }
    }

    /// One transaction: run, reported before COMMIT, committed.
    fn change(&self, statements: &[&str]) {
        self.conn.execute_batch("BEGIN").unwrap();
        for s in statements {
            self.conn.execute_batch(s).unwrap();
        }
        self.store.add_change(self.store.version() + 1, statements).unwrap();
        self.conn.execute_batch("COMMIT").unwrap();
    }

    fn restored(&self) -> PathBuf {
        let dest = self._dir.path().join(format!("restored-{}.sqlite3", self.store.version()));
        restore::restore_store(&self.store, &dest, &Default::default()).unwrap();
        dest
    }
}

fn rows(db: &Path, sql: &str) -> Vec<String> {
    let conn = Connection::open(db).unwrap();
    let mut stmt = conn.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0)).unwrap().map(|r| r.unwrap()).collect()
}

fn equal(a: &Path, b: &Path) {
    let diff = compare_databases(a, b, Labels::RESTORED_AND_EXPECTED).unwrap();
    assert!(diff.is_none(), "{diff:?}");
}

#[test]
fn statements_are_stored_and_replayed_exactly_without_vars_or_a_bump() {
    let app = App::new(FK_ON);
    app.change(&["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"]);
    // lightningd's pre-4090 repair would put a space before WHERE here.
    app.change(&["INSERT INTO notes (body) VALUES ('reserved_til=5WHERE x')"]);
    app.change(&["INSERT INTO notes (body) VALUES ('peer_id=5WHERE channels.id=3')"]);
    assert_eq!(app.store.version(), 3);
    let restored = app.restored();
    assert_eq!(
        rows(&restored, "SELECT body FROM notes ORDER BY id"),
        ["reserved_til=5WHERE x", "peer_id=5WHERE channels.id=3"]
    );
    equal(&restored, &app.db);
    // The same through `verify`'s comparison.
    let verified = lifecycle::verify_against(&app.store.reader().unwrap(), Some(&app.db), None).unwrap();
    assert!(verified.difference.is_none(), "{:?}", verified.difference);
    assert_eq!(verified.version, 3);
}

#[test]
fn foreign_keys_replay_as_the_application_declared() {
    for model in [FK_OFF, FK_ON] {
        let app = App::new(model);
        app.change(&[
            "CREATE TABLE parent (id INTEGER PRIMARY KEY)",
            "CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER REFERENCES parent(id) ON DELETE CASCADE)",
        ]);
        app.change(&["INSERT INTO parent VALUES (1)", "INSERT INTO child VALUES (1, 1), (2, 1)"]);
        // With foreign keys off the children stay; on, they go with it.
        app.change(&["DELETE FROM parent WHERE id = 1"]);
        let live = rows(&app.db, "SELECT CAST(count(*) AS TEXT) FROM child");
        assert_eq!(live, [if model == FK_OFF { "2" } else { "0" }]);
        let restored = app.restored();
        assert_eq!(rows(&restored, "SELECT CAST(count(*) AS TEXT) FROM child"), live, "{model:?}");
        equal(&restored, &app.db);
        // A compaction's snapshot keeps the declaration, and so does a reopen.
        cln_backup::compact::compact(&app.store, &Default::default()).unwrap();
        app.change(&["INSERT INTO parent VALUES (2)", "INSERT INTO child VALUES (3, 2)"]);
        app.change(&["DELETE FROM parent WHERE id = 2"]);
        equal(&app.restored(), &app.db);
        assert_eq!(app.store.status().unwrap().model, model);
    }
}

#[test]
fn the_model_is_recorded_in_the_store_and_outlives_reopens_and_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    let store = Store::create_with(&path, FK_OFF).unwrap();
    assert_eq!(store.status().unwrap().format, 3);
    for v in 1..=5u32 {
        store.add_change(v, &[format!("CREATE TABLE t{v} (x)")]).unwrap();
    }
    cln_backup::compact::compact(&store, &Default::default()).unwrap();
    drop(store);
    let store = Store::open(&path).unwrap();
    assert_eq!((store.model(), store.status().unwrap().format), (FK_OFF, 3));
    drop(store);
    let reader = Store::open_read_only(&path).unwrap();
    assert_eq!(reader.reader().unwrap().model(), FK_OFF);
    // lightningd's stores stay format 2, which earlier builds read.
    let node = Store::create(dir.path().join("node.redb")).unwrap();
    assert_eq!((node.model(), node.status().unwrap().format), (Model::Lightningd, 2));
}

#[test]
fn a_version_already_stored_says_that_writers_raced() {
    let app = App::new(FK_ON);
    app.change(&["CREATE TABLE t (x)"]);
    // A second writer that read the version before the first stored it.
    let err = app.store.add_change(1, &["INSERT INTO t VALUES (2)"]).unwrap_err();
    assert!(matches!(err, Error::ConcurrentWrite { version: 1, head: 1 }), "{err}");
    assert_eq!(err.kind(), ErrorKind::Busy);
    assert!(err.to_string().contains("serialised"), "{err}");
    // A gap is a refusal: the same call fails again.
    let gap = app.store.add_change(3, &["INSERT INTO t VALUES (3)"]).unwrap_err();
    assert!(matches!(gap, Error::Gap { .. }) && !gap.is_retryable(), "{gap}");
}

#[test]
fn reconcile_matches_rewinds_or_refuses_and_touches_nothing_when_it_refuses() {
    let app = App::new(FK_ON);
    app.change(&["CREATE TABLE t (x)"]);
    app.change(&["INSERT INTO t VALUES (1)"]);
    assert_eq!(app.store.reconcile(2).unwrap(), Reconciled::Match { version: 2 });
    // Reported, then the COMMIT never happened.
    app.store.add_change(3, &["INSERT INTO t VALUES (2)"]).unwrap();
    assert_eq!(app.store.reconcile(2).unwrap(), Reconciled::Rewound { removed: 3, version: 2 });
    equal(&app.restored(), &app.db);
    let before = app.store.status().unwrap();
    assert_eq!(app.store.reconcile(0).unwrap(), Reconciled::DatabaseBehind { committed: 0, backup: 2 });
    assert_eq!(app.store.reconcile(9).unwrap(), Reconciled::BackupBehind { committed: 9, backup: 2 });
    let after = app.store.status().unwrap();
    assert_eq!((before.version, before.changes), (after.version, after.changes));
}

#[test]
fn a_snapshot_of_a_live_connection_restores_the_database_and_the_log_goes_on_from_it() {
    let app = App::new(FK_ON);
    // The database existed before the backup: it starts from a snapshot.
    app.conn
        .execute_batch("CREATE TABLE t (x REAL, y BLOB); INSERT INTO t VALUES (0.1, x'00ff'), (1e-300, NULL);")
        .unwrap();
    let info = lifecycle::snapshot_connection(&app.store, &app.conn, 40).unwrap();
    assert_eq!((info.version, app.store.version()), (40, 40));
    app.change(&["INSERT INTO t VALUES (2.5, x'01')"]);
    assert_eq!(app.store.version(), 41);
    equal(&app.restored(), &app.db);
}

/// A database at `version` in lightningd's terms (`vars.data_version`).
fn lightningd_image(dir: &Path, version: u32) -> PathBuf {
    let path = dir.join(format!("image-{version}.sqlite3"));
    let _ = std::fs::remove_file(&path);
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(&format!(
        "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER); INSERT INTO vars VALUES ('data_version', {version});"
    ))
    .unwrap();
    path
}

#[test]
fn a_snapshot_that_is_not_sqlite_or_not_at_its_version_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("node.redb")).unwrap();
    let image = lightningd_image(dir.path(), 2);
    let err = store.add_snapshot_file(7, &image).unwrap_err();
    assert!(matches!(err, Error::SnapshotImage { version: 7, .. }), "{err}");
    assert!(err.to_string().contains("data_version 2, not 7"), "{err}");
    let err = store.add_snapshot(7, &mut &b"these bytes are no database at all"[..]).unwrap_err();
    assert!(err.to_string().contains("not a SQLite database"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Refused);
    // A damaged image: a real one with a page overwritten.
    let mut bytes = std::fs::read(lightningd_image(dir.path(), 7)).unwrap();
    let half = bytes.len() / 2;
    bytes[half..].fill(0xa5);
    let err = store.add_snapshot(7, &mut bytes.as_slice()).unwrap_err();
    assert!(matches!(err, Error::SnapshotImage { .. }), "{err}");
    let status = store.status().unwrap();
    assert!(status.snapshot.is_none() && status.version == 0, "{status:?}");
    // The right one goes in.
    assert_eq!(store.add_snapshot_file(7, &lightningd_image(dir.path(), 7)).unwrap().version, 7);
    // No temporary is left beside the store.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cln-backup"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn errors_say_whether_to_try_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = Store::create(&path).unwrap();
    let locked = Store::open(&path).unwrap_err();
    assert!(matches!(locked, Error::StoreLocked { .. }) && locked.is_retryable(), "{locked}");
    // The library's words, not a front end's.
    assert!(!locked.to_string().contains("lightning-cli"), "{locked}");
    drop(store);
    std::fs::write(&path, vec![0u8; 8192]).unwrap();
    let damaged = Store::open(&path).unwrap_err();
    assert!(!damaged.is_retryable(), "{damaged}");
    let missing = Store::open(dir.path().join("none.redb")).unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::Refused, "{missing}");
}

#[test]
fn a_reader_whose_store_was_dropped_says_so_and_is_not_worth_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    let store = Store::create_with(&path, FK_ON).unwrap();
    store.add_change(1, &["CREATE TABLE t (x)"]).unwrap();
    let reader = store.reader().unwrap();
    assert_eq!(reader.changes_after(0, 1).unwrap().count(), 1);
    drop(store);
    // redb closes the file with the last handle: the view cannot read any
    // more, and no retry would change that.
    let closed = match reader.changes_after(0, 1) {
        Ok(mut changes) => changes.next().unwrap().unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(closed, Error::StoreClosed { .. }), "{closed}");
    assert_eq!(closed.kind(), ErrorKind::Refused);
    assert!(closed.to_string().contains("app.redb"), "{closed}");
    // Opened again, the store reads as before.
    let store = Store::open_read_only(&path).unwrap();
    assert_eq!(store.reader().unwrap().changes_after(0, 1).unwrap().count(), 1);
}

#[test]
fn versions_the_store_cannot_restore_are_refused_as_such_not_reported_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create_with(dir.path().join("app.redb"), FK_ON).unwrap();
    for v in 1..=3 {
        store.add_change(v, &[format!("CREATE TABLE t{v} (x)")]).unwrap();
    }
    let reader = store.reader().unwrap();
    // Past the head: the caller's mistake, named with the range it may ask.
    let past = reader.changes(9).err().expect("changes(9) is refused");
    assert!(matches!(past, Error::NotRestorable { asked: 9, .. }), "{past}");
    let after = reader.changes_after(5, 9).err().expect("changes_after(5, 9) is refused");
    assert!(matches!(after, Error::NotRestorable { asked: 5, .. }), "{after}");
    assert_eq!(after.kind(), ErrorKind::Refused);
    // Version 0 of a log without a snapshot is the empty database: no time.
    assert_eq!(reader.time_of(0).unwrap(), cln_backup::TIME_NOT_RECORDED);
    assert!(reader.time_of(3).unwrap() > 0);
}
