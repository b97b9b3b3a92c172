//! End-to-end tests of the `cln-backup` binary: each runs the real program on
//! real files and checks its exit status, its output and the files it leaves.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::version::bump_statement;
use cln_backup::Store;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use support::run::{assert_fails, assert_ok, cln_backup, stderr, stdout};
use support::workload::assert_same_db;

/// A small database shaped like lightningd's: `vars` with data_version, and
/// tables linked by cascading foreign keys.
fn lightningd_db(path: &Path, data_version: u32) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&format!(
        "PRAGMA foreign_keys = ON;
         CREATE TABLE vars (name VARCHAR(32), val VARCHAR(255), intval INTEGER, blobval BLOB, PRIMARY KEY (name));
         INSERT INTO vars (name, intval) VALUES ('data_version', {data_version});
         CREATE TABLE peers (id INTEGER PRIMARY KEY, node_id BLOB UNIQUE, address TEXT);
         CREATE TABLE channels (id INTEGER PRIMARY KEY, peer_id INTEGER REFERENCES peers(id) ON DELETE CASCADE,
                                state INTEGER, funding_satoshi INTEGER);
         CREATE TABLE htlcs (id INTEGER PRIMARY KEY, channel_id INTEGER REFERENCES channels(id) ON DELETE CASCADE,
                             msatoshi INTEGER, payment_hash BLOB);
         INSERT INTO peers VALUES (1, x'02aabb', '127.0.0.1:9735'), (2, x'03ccdd', 'node.onion:9735');
         INSERT INTO channels VALUES (1, 1, 2, 1000000), (2, 2, 2, 500000);
         INSERT INTO htlcs VALUES (1, 1, 1000, x'0101'), (2, 1, 2000, x'0202'), (3, 2, 3000, x'0303');"
    ))
    .unwrap();
}

fn data_version_of(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get(0)).unwrap()
}

/// A lightning dir with a database at version 5, and a store made from it by `init`.
struct Node {
    dir: tempfile::TempDir,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("ln")).unwrap();
        lightningd_db(&dir.path().join("ln/lightningd.sqlite3"), 5);
        Node { dir }
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
    fn init(&self) {
        assert_ok(&cln_backup(&[&"init", &"--lightning-dir", &self.ln(), &self.store()]));
    }
    /// Versions 6, 7 and 8 as lightningd would report them, applied to the
    /// node's database too so that it stays what the backup should restore to.
    fn add_changes(&self) {
        let store = Store::open(self.store()).unwrap();
        let db = Connection::open(self.db()).unwrap();
        db.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        let changes: [(u32, Vec<String>); 3] = [
            (6, vec!["INSERT INTO peers VALUES (3, x'04eeff', 'third:9735')".into(), bump_statement(6)]),
            (7, vec!["INSERT INTO channels VALUES (3, 3, 1, 700000)".into(), bump_statement(7)]),
            // Closing a channel: its HTLCs go by cascade.
            (8, vec!["DELETE FROM channels WHERE state = 2 AND id=1".into(), bump_statement(8)]),
        ];
        for (v, statements) in changes {
            store.add_change(v, &statements).unwrap();
            db.execute_batch(&format!("BEGIN; {}; COMMIT;", statements.join(";\n"))).unwrap();
        }
    }
}

#[test]
fn init_snapshots_the_database_and_writes_backup_lock() {
    let node = Node::new();
    let out = cln_backup(&[&"init", &"--lightning-dir", &node.ln(), &node.store()]);
    assert_ok(&out);
    let size = std::fs::metadata(node.db()).unwrap().len();
    assert!(
        stdout(&out).contains(&format!("Stored a snapshot of {} at version 5 ({size} bytes", node.db().display())),
        "{}",
        stdout(&out)
    );
    let lock = std::fs::read_to_string(node.ln().join("backup.lock")).unwrap();
    let abs = std::fs::canonicalize(node.store()).unwrap();
    assert_eq!(lock, format!("{{\"backend_url\": \"file://{}\"}}", abs.display()));

    let store = Store::open(node.store()).unwrap();
    let status = store.status().unwrap();
    assert_eq!(status.version, 5);
    assert_eq!(status.snapshot.as_ref().map(|s| s.size), Some(size));
    drop(store);

    let dest = node.path("restored.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &node.store(), &dest]));
    assert_same_db(&dest, &node.db());
}

#[test]
fn init_without_a_database_starts_empty_at_version_0() {
    let node = Node::new();
    std::fs::remove_file(node.db()).unwrap();
    let out = cln_backup(&[&"init", &"--lightning-dir", &node.ln(), &node.store()]);
    assert_ok(&out);
    assert!(stdout(&out).contains("empty backup at version 0"), "{}", stdout(&out));
    let lock = std::fs::read_to_string(node.ln().join("backup.lock")).unwrap();
    let abs = std::fs::canonicalize(node.store()).unwrap();
    assert_eq!(lock, format!("{{\"backend_url\": \"file://{}\"}}", abs.display()));
    let status = Store::open(node.store()).unwrap().status().unwrap();
    assert_eq!((status.version, status.changes), (0, 0));
    assert!(status.snapshot.is_none());
}

#[test]
fn init_without_lightning_dir_and_file_url() {
    let node = Node::new();
    let url = format!("file://{}", node.store().display());
    let out = cln_backup(&[&"init", &url]);
    assert_ok(&out);
    assert!(stdout(&out).contains("version 0"), "{}", stdout(&out));
    assert_eq!(Store::open(node.store()).unwrap().version(), 0);
    assert!(!node.ln().join("backup.lock").exists());

    // An existing store is refused and left alone.
    let before = std::fs::read(node.store()).unwrap();
    let out = cln_backup(&[&"init", &node.store()]);
    assert_fails(&out, &[&node.store()], &["already exists"]);
    assert_eq!(std::fs::read(node.store()).unwrap(), before);
}

#[test]
fn init_refuses_an_existing_backup_lock_before_creating_anything() {
    let node = Node::new();
    let lock = node.ln().join("backup.lock");
    std::fs::write(&lock, "{\"backend_url\": \"file:///elsewhere\"}").unwrap();
    let out = cln_backup(&[&"init", &"--lightning-dir", &node.ln(), &node.store()]);
    assert_fails(&out, &[&lock], &["already exists"]);
    assert!(!node.store().exists());
    assert_eq!(std::fs::read_to_string(&lock).unwrap(), "{\"backend_url\": \"file:///elsewhere\"}");
}

#[test]
fn a_failed_init_leaves_nothing_behind() {
    let node = Node::new();
    Connection::open(node.db()).unwrap().execute_batch("DELETE FROM vars").unwrap();
    let out = cln_backup(&[&"init", &"--lightning-dir", &node.ln(), &node.store()]);
    assert_fails(&out, &[&node.db()], &["no data_version"]);
    assert!(!node.store().exists());
    assert!(!node.ln().join("backup.lock").exists());
    let leftovers: Vec<_> =
        std::fs::read_dir(node.dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n != "ln").collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // And it can simply be run again once the database is right.
    lightningd_db(&node.path("fixed.sqlite3"), 9);
    std::fs::rename(node.path("fixed.sqlite3"), node.db()).unwrap();
    assert_ok(&cln_backup(&[&"init", &"--lightning-dir", &node.ln(), &node.store()]));
    assert_eq!(Store::open(node.store()).unwrap().version(), 9);
}

#[test]
fn restore_to_file_and_directory_and_force() {
    let node = Node::new();
    node.init();
    node.add_changes();

    let file = node.path("out.sqlite3");
    let out = cln_backup(&[&"restore", &node.store(), &file]);
    assert_ok(&out);
    assert!(stdout(&out).contains(&file.display().to_string()), "{}", stdout(&out));
    assert!(stdout(&out).contains("version 8"), "{}", stdout(&out));
    assert!(stdout(&out).contains("3 changes replayed"), "{}", stdout(&out));
    assert_same_db(&file, &node.db());
    assert_eq!(data_version_of(&file), 8);
    // The cascade happened: channel 1's HTLCs are gone, channel 2's stays.
    let htlcs: i64 =
        Connection::open(&file).unwrap().query_row("SELECT count(*) FROM htlcs", [], |r| r.get(0)).unwrap();
    assert_eq!(htlcs, 1);

    let dir = node.path("restored");
    std::fs::create_dir(&dir).unwrap();
    assert_ok(&cln_backup(&[&"restore", &node.store(), &dir]));
    let in_dir = dir.join("lightningd.sqlite3");
    assert_same_db(&in_dir, &node.db());

    // An existing destination is refused and left untouched...
    std::fs::write(&file, b"precious").unwrap();
    let out = cln_backup(&[&"restore", &node.store(), &file]);
    assert_fails(&out, &[&file], &["--force"]);
    assert_eq!(std::fs::read(&file).unwrap(), b"precious");
    let out = cln_backup(&[&"restore", &node.store(), &dir]);
    assert_fails(&out, &[&in_dir], &["--force"]);
    // ...and replaced with --force.
    assert_ok(&cln_backup(&[&"restore", &"--force", &node.store(), &file]));
    assert_same_db(&file, &node.db());
}

#[test]
fn restore_an_earlier_version() {
    let node = Node::new();
    node.init();
    let at_5 = node.path("at-5.sqlite3");
    std::fs::copy(node.db(), &at_5).unwrap();
    node.add_changes();

    let dest = node.path("v6.sqlite3");
    let out = cln_backup(&[&"restore", &"--to-version", &"6", &node.store(), &dest]);
    assert_ok(&out);
    assert!(stdout(&out).contains("version 6"), "{}", stdout(&out));
    assert_eq!(data_version_of(&dest), 6);
    let conn = Connection::open(&dest).unwrap();
    let peers: i64 = conn.query_row("SELECT count(*) FROM peers", [], |r| r.get(0)).unwrap();
    let channels: i64 = conn.query_row("SELECT count(*) FROM channels", [], |r| r.get(0)).unwrap();
    let htlcs: i64 = conn.query_row("SELECT count(*) FROM htlcs", [], |r| r.get(0)).unwrap();
    assert_eq!((peers, channels, htlcs), (3, 2, 3));

    let dest = node.path("v5.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &"--to-version", &"5", &node.store(), &dest]));
    assert_same_db(&dest, &at_5);

    // Older than the snapshot: not held by the store.
    let dest = node.path("v4.sqlite3");
    let out = cln_backup(&[&"restore", &"--to-version", &"4", &node.store(), &dest]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("version 4 is not restorable") && err.contains("5 to 8"), "{err}");
    assert!(!dest.exists());
}

#[test]
fn info_reports_versions_and_changes() {
    let node = Node::new();
    node.init();
    let snapshot_size = std::fs::metadata(node.db()).unwrap().len();
    node.add_changes();
    let file_bytes = std::fs::metadata(node.store()).unwrap().len();
    let out = cln_backup(&[&"info", &"--json", &node.store()]);
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["version"], 8);
    assert_eq!(v["prev_version"], 7);
    assert_eq!(v["changes"], 3);
    assert_eq!(v["snapshot"]["version"], 5);
    assert_eq!(v["snapshot"]["size"], snapshot_size);
    assert_eq!(v["restorable"], serde_json::json!({"from": 5, "to": 8}));
    assert_eq!(v["file_bytes"], file_bytes);

    let out = cln_backup(&[&"info", &node.store()]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("Version:          8"), "{text}");
    assert!(text.contains("Changes:          3"), "{text}");
    assert!(text.contains("Restorable:       versions 5 (") && text.contains(") to 8 ("), "{text}");
    assert!(text.contains("Snapshots:        1 kept"), "{text}");
    assert!(text.contains("  version 5: received "), "{text}");
    assert!(text.contains("Since snapshot:   3 changes ("), "{text}");
}

#[test]
fn verify_a_good_store_and_compare_with_the_node() {
    let node = Node::new();
    node.init();
    node.add_changes();
    let out = cln_backup(&[&"verify", &node.store()]);
    assert_ok(&out);
    assert!(stdout(&out).contains("Hash chain intact: 3 change records"), "{}", stdout(&out));
    assert!(stdout(&out).contains("data_version 8"), "{}", stdout(&out));

    let out = cln_backup(&[&"verify", &"--against", &node.db(), &node.store()]);
    assert_ok(&out);
    assert!(stdout(&out).contains("matches the backup at version 8"), "{}", stdout(&out));

    // A changed value in the node's database is the first difference reported.
    Connection::open(node.db())
        .unwrap()
        .execute_batch("UPDATE channels SET funding_satoshi = 12345 WHERE id = 3")
        .unwrap();
    let out = cln_backup(&[&"verify", &"--against", &node.db(), &node.store()]);
    assert_fails(&out, &[&node.db()], &["table channels, rowid 3, column funding_satoshi: backup 700000, live 12345"]);
}

#[test]
fn compact_keeps_restores_identical() {
    let node = Node::new();
    node.init();
    node.add_changes();
    let before = node.path("before.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &node.store(), &before]));
    let before_v7 = node.path("before7.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &"--to-version", &"7", &node.store(), &before_v7]));

    // At a rate (1 MiB a second: this store writes far less than that).
    let out = cln_backup(&[&"compact", &"--io-rate", &"1", &node.store()]);
    assert_ok(&out);
    assert!(stdout(&out).contains("new snapshot at version 7"), "{}", stdout(&out));
    // The snapshot `init` made (version 5) is kept, and the changes since it.
    assert!(stdout(&out).contains("Changes:   3 -> 3"), "{}", stdout(&out));

    let status = Store::open(node.store()).unwrap().status().unwrap();
    assert_eq!((status.version, status.changes, status.changes_since_snapshot), (8, 3, 1));
    assert_eq!(status.snapshot.map(|s| s.version), Some(7));
    assert_eq!(status.snapshots.iter().map(|s| s.version).collect::<Vec<_>>(), vec![5, 7]);

    let after = node.path("after.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &node.store(), &after]));
    assert_same_db(&after, &before);
    let after_v7 = node.path("after7.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &"--to-version", &"7", &node.store(), &after_v7]));
    assert_same_db(&after_v7, &before_v7);
    assert_ok(&cln_backup(&[&"verify", &"--against", &node.db(), &node.store()]));
}

#[test]
fn unrelated_file_as_store() {
    let node = Node::new();
    for sub in ["info", "verify", "compact"] {
        let out = cln_backup(&[&sub, &node.db()]);
        assert_fails(&out, &[&node.db()], &["not a cln-backup store"]);
    }
    let out = cln_backup(&[&"restore", &node.db(), &node.path("x.sqlite3")]);
    assert_fails(&out, &[&node.db()], &["is neither a cln-backup store nor a legacy .dbak backup"]);
    assert!(!node.path("x.sqlite3").exists());
}

#[test]
fn a_store_in_use_by_another_process_is_refused() {
    let node = Node::new();
    node.init();
    let held = Store::open(node.store()).unwrap();
    for sub in ["info", "verify", "compact"] {
        let out = cln_backup(&[&sub, &node.store()]);
        assert_fails(&out, &[&node.store()], &["already open in another process"]);
    }
    let dest = node.path("x.sqlite3");
    let out = cln_backup(&[&"restore", &node.store(), &dest]);
    assert_fails(&out, &[&node.store()], &["already open in another process"]);
    assert!(!dest.exists());
    drop(held);
    assert_ok(&cln_backup(&[&"info", &node.store()]));
}

#[test]
fn missing_store_and_remote_urls() {
    let node = Node::new();
    let missing = node.path("missing.redb");
    let out = cln_backup(&[&"info", &missing]);
    assert_fails(&out, &[&missing], &["No such file"]);
    let out = cln_backup(&[&"restore", &missing, &node.path("x.sqlite3")]);
    assert_fails(&out, &[&missing], &["No such file"]);
    // A remote URL goes to its destination (nothing listens on port 1), which
    // says what went wrong naming it; remote stores are no longer refused as such.
    let out = cln_backup(&[&"info", &"socket:127.0.0.1:1"]);
    let err = assert_fails(&out, &[Path::new("socket:127.0.0.1:1")], &[]);
    assert!(!err.contains("remote stores are not supported"), "{err}");
}

#[test]
fn help_everywhere() {
    for sub in ["init", "restore", "info", "verify", "compact", "import", "export"] {
        let out = cln_backup(&[&sub, &"--help"]);
        assert_ok(&out);
        assert!(stdout(&out).contains(&format!("Usage: cln-backup {sub}")), "{}", stdout(&out));
    }
    let out = cln_backup(&[&"--help"]);
    assert_ok(&out);
    for sub in ["init", "restore", "info", "verify", "compact", "import", "export"] {
        assert!(stdout(&out).contains(sub));
    }
}

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");
const FIXTURE_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-restored.sql");

#[test]
fn legacy_file_restores_directly_and_through_import_and_export() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(FIXTURE_DBAK);
    // restore accepts a .dbak directly, recognised by its header.
    let direct = dir.path().join("direct.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &fixture, &direct]));
    assert_eq!(data_version_of(&direct), 46);

    let store = dir.path().join("node.redb");
    let out = cln_backup(&[&"import", &fixture, &store]);
    assert_ok(&out);
    assert!(stdout(&out).contains("version 46"), "{}", stdout(&out));

    // The full dump at the head is the fixture's .dump, byte for byte.
    let dump = dir.path().join("dump.sql");
    assert_ok(&cln_backup(&[&"export", &"--format", &"sql", &"--dump", &store, &dump]));
    assert_eq!(std::fs::read_to_string(&dump).unwrap(), std::fs::read_to_string(FIXTURE_SQL).unwrap());

    // Store -> legacy -> restore gives the same database as the direct restore.
    let again = dir.path().join("again.dbak");
    assert_ok(&cln_backup(&[&"export", &"--format", &"dbak", &store, &again]));
    let round = dir.path().join("round.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &again, &round]));
    assert_same_db(&round, &direct);

    // The SQL change log has one block per version.
    let log = dir.path().join("log.sql");
    assert_ok(&cln_backup(&[&"export", &"--format", &"sql", &store, &log]));
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().filter(|l| l.starts_with("-- version ")).count(), 46, "{}", &text[..400]);

    // An earlier version, and an existing output refused.
    let early = dir.path().join("early.sqlite3");
    assert_ok(&cln_backup(&[&"restore", &"--to-version", &"40", &fixture, &early]));
    assert_eq!(data_version_of(&early), 40);
    let out = cln_backup(&[&"export", &"--format", &"dbak", &store, &again]);
    assert_fails(&out, &[&again], &["exists"]);
}

#[test]
fn truncated_legacy_file_is_refused_and_no_store_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(FIXTURE_DBAK).unwrap();
    let cut = dir.path().join("cut.dbak");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let store = dir.path().join("node.redb");
    let out = cln_backup(&[&"import", &cut, &store]);
    assert_fails(&out, &[&cut], &["truncated"]);
    assert!(!store.exists(), "a failed import must leave no store");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "nothing but the input remains");
    let dest = dir.path().join("r.sqlite3");
    let out = cln_backup(&[&"restore", &cut, &dest]);
    assert_fails(&out, &[&cut], &["truncated"]);
    assert!(!dest.exists());
}
