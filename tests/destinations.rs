//! Several destinations: `backup.lock`'s two forms and their rules, the
//! catch-up of a replica from the local store, and the plugin (the real
//! binary, driven by the lightningd simulator) writing a local store with a
//! sync and an async replica, including replicas that fail; `init` with
//! several destinations. The lock and catch-up tests use the library alone
//! and run with `--no-default-features` too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::destination::replica::catch_up;
use cln_backup::destination::{self, Access, Destination, FileDestination};
use cln_backup::encryption::KeySource;
use cln_backup::lockfile::{self, Entry, Mode, LOCK_FILE_NAME};
use cln_backup::version::bump_statement;
use cln_backup::{restore, Store};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn tx(v: u32, sql: &str) -> Vec<String> {
    vec![sql.to_string(), bump_statement(v)]
}

/// A store at `path` with a table and versions 1..=head.
fn store_with(path: &Path, head: u32) -> Store {
    let store = Store::create(path).unwrap();
    store
        .add_change(
            1,
            &[
                "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
                "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
                "CREATE TABLE t (v INTEGER)".to_string(),
                bump_statement(1),
            ],
        )
        .unwrap();
    store.add_change(1, &["PRAGMA foreign_keys = OFF;"]).unwrap();
    for v in 2..=head {
        store.add_change(v, &tx(v, &format!("INSERT INTO t VALUES ({v})"))).unwrap();
    }
    store
}

fn restored(dest: &dyn Destination, dir: &Path, name: &str) -> Vec<i64> {
    let db = dir.join(name);
    restore::restore_from(dest, &db, &restore::Options::default()).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let mut stmt = conn.prepare("SELECT v FROM t ORDER BY v").unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
}

#[test]
fn one_plain_destination_stays_as_the_python_plugin_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("node.redb");
    drop(Store::create(&store).unwrap());
    let entry = Entry::local(&store).unwrap();
    let lock = dir.path().join(LOCK_FILE_NAME);
    lockfile::write_lock(&lock, std::slice::from_ref(&entry)).unwrap();
    let text = std::fs::read_to_string(&lock).unwrap();
    let abs = std::fs::canonicalize(&store).unwrap();
    assert_eq!(text, format!("{{\"backend_url\": \"file://{}\"}}", abs.display()));
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(json["backend_url"], format!("file://{}", abs.display()));
    assert_eq!(lockfile::read_lock(dir.path()).unwrap(), vec![entry]);
    assert_eq!(std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600);
    // A socket: server alone, with no options, keeps the Python form too.
    let socket = lockfile::lock_text(&[Entry::new("socket:backup.example:9000")]).unwrap();
    assert_eq!(socket, "{\"backend_url\": \"socket:backup.example:9000\"}");
    // With a token file it is the list: the Python plugin cannot send one.
    let mut with_token = Entry::new("socket:backup.example:9000");
    with_token.token_file = Some(PathBuf::from("/etc/token"));
    let list = lockfile::lock_text(&[with_token]).unwrap();
    assert!(
        list.contains("\"destinations\"") && list.contains("token_file") && !list.contains("backend_url"),
        "{list}"
    );
}

#[test]
fn several_destinations_become_the_list_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.redb"), dir.path().join("b.redb"));
    drop(Store::create(&a).unwrap());
    drop(Store::create(&b).unwrap());
    let mut replica = Entry::local(&b).unwrap();
    replica.mode = Mode::Async;
    let mut object = Entry::new("s3://bucket/node");
    object.key = Some(KeySource::HsmSecret(PathBuf::from("/var/lib/lightning/bitcoin/hsm_secret")));
    object.credentials_file = Some(PathBuf::from("/etc/cln-backup/s3.env"));
    let entries = vec![Entry::local(&a).unwrap(), replica, object];
    let lock = dir.path().join(LOCK_FILE_NAME);
    lockfile::write_lock(&lock, &entries).unwrap();
    let text = std::fs::read_to_string(&lock).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(json.get("backend_url").is_none(), "{text}");
    let list = json["destinations"].as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[1]["mode"], "async");
    assert!(list[0].get("mode").is_none(), "sync is the default and not written: {text}");
    assert_eq!(list[2]["hsm_secret"], "/var/lib/lightning/bitcoin/hsm_secret");
    assert_eq!(lockfile::read_lock(dir.path()).unwrap(), entries);
    // The primary is what the single-store readers see.
    assert_eq!(lockfile::read(dir.path()).unwrap(), std::fs::canonicalize(&a).unwrap());
    assert_eq!(std::fs::metadata(&lock).unwrap().permissions().mode() & 0o777, 0o600);
    // Never replaces a lock.
    let err = lockfile::write_lock(&lock, &entries).unwrap_err().to_string();
    assert!(err.contains(&lock.display().to_string()) && err.contains("already exists"), "{err}");
}

#[test]
fn bad_locks_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join(LOCK_FILE_NAME);
    let a = "file:///b/a.redb";
    for (text, says) in [
        (format!(r#"{{"destinations": [{{"url": "{a}", "colour": "red"}}]}}"#), "unknown field `colour`"),
        (format!(r#"{{"destinations": [{{"url": "{a}", "mode": "sometimes"}}]}}"#), "unknown variant `sometimes`"),
        (
            format!(r#"{{"destinations": [{{"url": "{a}"}}, {{"url": "webdav://h/x"}}]}}"#),
            "webdav: scheme is not supported",
        ),
        (
            format!(r#"{{"backend_url": "{a}", "destinations": [{{"url": "{a}"}}]}}"#),
            "both backend_url and destinations",
        ),
        (r#"{"destinations": [{"url": "s3://b/n", "key_file": "/k"}]}"#.to_string(), "list the local store first"),
        (format!(r#"{{"destinations": [{{"url": "{a}"}}, {{"url": "s3://b/n"}}]}}"#), "object storage is encrypted"),
        (format!(r#"{{"destinations": [{{"url": "{a}", "mode": "async"}}]}}"#), "cannot be async"),
        (format!(r#"{{"destinations": [{{"url": "{a}"}}, {{"url": "{a}"}}]}}"#), "listed twice"),
        (format!(r#"{{"destinations": [{{"url": "{a}", "key_file": "/k"}}]}}"#), "for object storage only"),
        (r#"{"destinations": []}"#.to_string(), "no destination"),
        (r#"{"nothing": 1}"#.to_string(), "neither backend_url nor destinations"),
    ] {
        std::fs::write(&lock, &text).unwrap();
        let err = lockfile::read_lock(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{}: ", lock.display())), "{text}: {err}");
        assert!(err.contains(says), "{text}: {err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // The same rules refuse to write such a lock, naming it, and write nothing.
    std::fs::remove_file(&lock).unwrap();
    let mut first = Entry::new(a);
    first.mode = Mode::Async;
    let err = lockfile::write_lock(&lock, &[first]).unwrap_err().to_string();
    assert!(err.starts_with(&lock.display().to_string()) && err.contains("cannot be async"), "{err}");
    assert!(!lock.exists());
}

#[test]
fn catch_up_sends_the_snapshot_then_the_changes_and_repeated_reports() {
    let dir = tempfile::tempdir().unwrap();
    let primary = store_with(&dir.path().join("p.redb"), 10);
    cln_backup::compact::compact(&primary, &Default::default()).unwrap();
    primary.add_change(11, &tx(11, "INSERT INTO t VALUES (11)")).unwrap();
    // An empty replica gets the snapshot (at 9) and the changes after it.
    let empty = FileDestination::new(Store::create(dir.path().join("r.redb")).unwrap());
    let done = catch_up(&primary, &empty).unwrap();
    assert_eq!((done.from, done.to, done.snapshot), (0, 11, Some(9)));
    assert_eq!(empty.head().unwrap().version, 11);
    let want: Vec<i64> = (2..=11).collect();
    assert_eq!(restored(&empty, dir.path(), "empty.sqlite3"), want);
    // Nothing to do the second time.
    assert_eq!(catch_up(&primary, &empty).unwrap().transactions, 0);
    // A lone report repeating the head reaches the replica as a part of its record.
    primary.add_change(11, &["PRAGMA foreign_keys = ON;"]).unwrap();
    primary.add_change(12, &tx(12, "INSERT INTO t VALUES (12)")).unwrap();
    let done = catch_up(&primary, &empty).unwrap();
    assert_eq!(done.transactions, 2, "{done:?}");
    let head = empty.local_store().unwrap().reader().unwrap();
    let last_two: Vec<_> = head.changes(head.head()).unwrap().map(Result::unwrap).collect();
    assert_eq!(last_two.iter().find(|c| c.data_version() == 11).unwrap().transactions.len(), 2);
}

#[test]
fn catch_up_rewinds_what_the_primary_rewound_and_refuses_a_diverged_replica() {
    let dir = tempfile::tempdir().unwrap();
    let primary = store_with(&dir.path().join("p.redb"), 5);
    let replica = FileDestination::new(Store::create(dir.path().join("r.redb")).unwrap());
    catch_up(&primary, &replica).unwrap();
    // Version 6 reached both, then lightningd restarted without committing it.
    primary.add_change(6, &tx(6, "INSERT INTO t VALUES (666)")).unwrap();
    catch_up(&primary, &replica).unwrap();
    primary.rewind().unwrap();
    let done = catch_up(&primary, &replica).unwrap();
    assert!(done.rewound, "{done:?}");
    assert_eq!(replica.head().unwrap().version, 5);
    // The primary rewound again and already holds the replacement: the
    // replica's 6 is told apart by its content, rewound and replaced.
    primary.add_change(6, &tx(6, "INSERT INTO t VALUES (6)")).unwrap();
    replica.add_change(6, &["INSERT INTO t VALUES (667)", &bump_statement(6)]).unwrap();
    let done = catch_up(&primary, &replica).unwrap();
    assert!(done.rewound, "{done:?}");
    assert_eq!(restored(&replica, dir.path(), "r.sqlite3"), vec![2, 3, 4, 5, 6]);
    // A replica ahead by more than a rewound change has diverged: both heads named.
    let ahead = FileDestination::new(store_with(&dir.path().join("ahead.redb"), 9));
    let err = catch_up(&primary, &ahead).unwrap_err().to_string();
    assert!(err.contains(&dir.path().join("ahead.redb").display().to_string()), "{err}");
    assert!(err.contains("version 9") && err.contains("at 6") && err.contains("diverged"), "{err}");
}

#[test]
fn an_async_replica_catches_up_and_reports_a_failing_destination() {
    use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store_with(&dir.path().join("p.redb"), 20)));
    let target = dir.path().join("r.redb");
    drop(Store::create(&target).unwrap());
    let replica = AsyncReplica::start_opening(
        Arc::clone(&primary),
        target.display().to_string(),
        Box::new({
            let target = target.clone();
            move || destination::open(&target, Access::Write)
        }),
        ReplicaOptions::default(),
    )
    .unwrap();
    for v in 21..=30 {
        primary.add_change(v, &["INSERT INTO t VALUES (1)", &bump_statement(v)]).unwrap();
        replica.notify();
    }
    assert!(replica.flush());
    let status = replica.status();
    assert_eq!((status.head, status.lag_changes, status.last_error), (Some(30), Some(0), None));
    drop(replica);
    assert_eq!(Store::open(&target).unwrap().version(), 30);
    // A destination that cannot be opened: failing, shown, and flush says so.
    let missing = dir.path().join("gone").join("r.redb");
    let failing = AsyncReplica::start_opening(
        Arc::clone(&primary),
        missing.display().to_string(),
        Box::new({
            let missing = missing.clone();
            move || destination::open(&missing, Access::Write)
        }),
        ReplicaOptions::default(),
    )
    .unwrap();
    failing.notify();
    // Its first attempt runs at once; the bound only stops a hung test.
    let hung = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while failing.status().last_error.is_none() {
        assert!(std::time::Instant::now() < hung, "the replica made no attempt");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let status = failing.status();
    assert!(status.last_error.unwrap().contains(&missing.display().to_string()));
    assert_eq!(status.transitions, 1);
    assert!(!failing.flush());
}

#[cfg(all(feature = "cli", feature = "plugin"))]
#[path = "support/sim.rs"]
mod sim;
#[cfg(all(feature = "cli", feature = "plugin"))]
#[path = "support/workload.rs"]
mod workload;

#[cfg(all(feature = "cli", feature = "plugin"))]
mod plugin {
    //! The plugin and `init`, run as the real binary.
    use super::*;
    use crate::{sim, workload};
    use serde_json::{json, Value};
    use sim::{Node, NodeDir, Start, Stop};

    const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

    fn entry(path: &Path, mode: Mode) -> Entry {
        let mut e = Entry::new(format!("file://{}", path.display()));
        e.mode = mode;
        e
    }

    fn lock(dir: &NodeDir, entries: &[Entry]) {
        let lock = dir.network().join(LOCK_FILE_NAME);
        let _ = std::fs::remove_file(&lock);
        std::fs::write(&lock, lockfile::lock_text(entries).unwrap()).unwrap();
    }

    fn run(node: &mut Node, load: &mut workload::Workload, n: usize) {
        for _ in 0..n {
            let txn = load.next_txn();
            node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
        }
    }

    fn restore_equals_node(store: &Path, node_db: &Path) {
        let store = Store::open_read_only(store).unwrap();
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("restored.sqlite3");
        restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
        workload::assert_same_db(&dest, node_db);
    }

    fn status_of(node: &mut Node) -> Value {
        node.rpc("backup-status", json!({})).unwrap()
    }

    fn refused(result: Result<Node, Stop>) -> String {
        match result {
            Err(Stop::Refused(msg)) => msg,
            Err(other) => panic!("expected a refusal, got {other}"),
            Ok(node) => panic!("expected a refusal, node started with logs {:?}", node.logs),
        }
    }

    #[test]
    fn a_sync_and_an_async_replica_each_hold_every_change() {
        let dir = NodeDir::new();
        let root = dir.root.path();
        let (primary, sync, lazy) = (root.join("primary.redb"), root.join("sync.redb"), root.join("async.redb"));
        for p in [&primary, &sync, &lazy] {
            drop(Store::create(p).unwrap());
        }
        lock(&dir, &[entry(&primary, Mode::Sync), entry(&sync, Mode::Sync), entry(&lazy, Mode::Async)]);
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        let mut load = workload::Workload::on_existing_schema(7, node.data_version());
        for _ in 0..4 {
            run(&mut node, &mut load, 40);
            // Answered continue: the sync replica has the change already.
            let status = status_of(&mut node);
            let list = status["destinations"].as_array().unwrap();
            assert_eq!(list.len(), 3, "{status}");
            assert_eq!(list[0]["kind"], "local");
            assert_eq!((&list[1]["mode"], &list[1]["head"]), (&json!("sync"), &json!(node.data_version())));
            assert_eq!(list[1]["lag_changes"], 0);
            assert_eq!(list[2]["mode"], "async");
            assert!(list[2]["last_error"].is_null(), "{status}");
            for field in ["head", "lag_changes", "lag_seconds", "last_success_time"] {
                assert!(list[2].get(field).is_some(), "{field} missing: {status}");
            }
        }
        // Compaction waits for the async replica, then folds the local store only.
        let stats = node.rpc("backup-compact", json!({})).unwrap();
        assert_eq!(stats["compacted"], true, "{stats}");
        run(&mut node, &mut load, 30);
        node.stop();
        // The async replica was brought up to date when the node stopped.
        restore_equals_node(&primary, &dir.db());
        restore_equals_node(&sync, &dir.db());
        restore_equals_node(&lazy, &dir.db());
    }

    #[test]
    fn a_change_lightningd_never_committed_is_rewound_on_every_replica() {
        let dir = NodeDir::new();
        let root = dir.root.path();
        let (primary, sync, lazy) = (root.join("primary.redb"), root.join("sync.redb"), root.join("async.redb"));
        for p in [&primary, &sync, &lazy] {
            drop(Store::create(p).unwrap());
        }
        lock(&dir, &[entry(&primary, Mode::Sync), entry(&sync, Mode::Sync), entry(&lazy, Mode::Async)]);
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        let mut load = workload::Workload::on_existing_schema(12, node.data_version());
        run(&mut node, &mut load, 60);
        // Answered continue, then lightningd died before its COMMIT.
        node.crash_after_hook(vec!["INSERT INTO peers (id, node_id, address) VALUES (9, x'09', 'phantom')".into()])
            .unwrap();
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        assert!(node.logged("Last changes not applied, rewinding non-committed transaction"), "{:?}", node.logs);
        assert!(node.logged(&format!("Caught up {}", sync.display())), "{:?}", node.logs);
        load.resume_at(node.data_version());
        run(&mut node, &mut load, 20);
        node.stop();
        for store in [&primary, &sync, &lazy] {
            restore_equals_node(store, &dir.db());
        }
    }

    #[test]
    fn a_failing_async_destination_does_not_stop_the_node_and_catches_up_later() {
        let dir = NodeDir::new();
        let root = dir.root.path();
        let primary = root.join("primary.redb");
        drop(Store::create(&primary).unwrap());
        let gone = root.join("removed-disk");
        let lazy = gone.join("async.redb");
        lock(&dir, &[entry(&primary, Mode::Sync), entry(&lazy, Mode::Async)]);
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        let mut load = workload::Workload::on_existing_schema(8, node.data_version());
        run(&mut node, &mut load, 60);
        // Wait for the first attempt to have failed (it runs at once).
        let mut status = status_of(&mut node);
        let hung = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while status["destinations"][1]["last_error"].is_null() {
            assert!(std::time::Instant::now() < hung, "the async replica made no attempt: {status}");
            std::thread::sleep(std::time::Duration::from_millis(20));
            status = status_of(&mut node);
        }
        let failing = &status["destinations"][1];
        assert!(failing["last_error"].as_str().unwrap().contains(&lazy.display().to_string()), "{status}");
        assert!(failing["last_error_time"].is_string(), "{status}");
        assert_eq!(status["version"], node.data_version(), "{status}");
        run(&mut node, &mut load, 20);
        assert!(node.logged_at("error", "is failing"), "{:?}", node.logs);
        // A compaction would leave it behind the new snapshot: refused, naming it.
        match node.rpc("backup-compact", json!({})) {
            Err(Stop::Refused(msg)) => {
                assert!(msg.contains(&lazy.display().to_string()) && msg.contains("not compacting"), "{msg}")
            }
            other => panic!("backup-compact with a failing replica: {other:?}"),
        }
        let failing_lines = node.logs.iter().filter(|l| l.message.contains("is failing")).count();
        assert_eq!(failing_lines, 1, "logged once per change of state: {:?}", node.logs);
        node.stop();
        restore_equals_node(&primary, &dir.db());
        // The disk is back, with an empty store: the next start catches it up.
        std::fs::create_dir(&gone).unwrap();
        drop(Store::create(&lazy).unwrap());
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        load.resume_at(node.data_version());
        run(&mut node, &mut load, 20);
        node.stop();
        restore_equals_node(&lazy, &dir.db());
    }

    #[test]
    fn a_failing_sync_destination_stops_the_node_and_one_behind_is_caught_up_first() {
        let dir = NodeDir::new();
        let root = dir.root.path();
        let primary = root.join("primary.redb");
        drop(Store::create(&primary).unwrap());
        lock(&dir, &[entry(&primary, Mode::Sync)]);
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        let mut load = workload::Workload::on_existing_schema(9, node.data_version());
        run(&mut node, &mut load, 50);
        node.stop();
        let committed = Store::open_read_only(&primary).unwrap().version();
        // A sync destination on a disk that is not there: the node stops at
        // its first write, naming it, and nothing is lost.
        let gone = root.join("removed-disk");
        let sync = gone.join("sync.redb");
        lock(&dir, &[entry(&primary, Mode::Sync), entry(&sync, Mode::Sync)]);
        let msg = refused(Node::start(&dir, &Start::with_plugin(BIN)));
        assert!(msg.contains("backup.lock") && msg.contains(&sync.display().to_string()), "{msg}");
        assert_eq!(Store::open_read_only(&primary).unwrap().version(), committed);
        restore_equals_node(&primary, &dir.db());
        // The disk is back with an empty store: caught up before the first answer.
        std::fs::create_dir(&gone).unwrap();
        drop(Store::create(&sync).unwrap());
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        assert!(node.logged(&format!("Caught up {}", sync.display())), "{:?}", node.logs);
        load.resume_at(node.data_version());
        run(&mut node, &mut load, 30);
        node.stop();
        restore_equals_node(&sync, &dir.db());
        restore_equals_node(&primary, &dir.db());
    }

    /// A stopped node with a database: the simulator without the plugin.
    fn node_with_database() -> (NodeDir, workload::Workload) {
        let dir = NodeDir::new();
        let mut node = Node::start(&dir, &Start::without_plugin()).unwrap();
        let mut load = workload::Workload::on_existing_schema(10, node.data_version());
        run(&mut node, &mut load, 80);
        node.stop();
        (dir, load)
    }

    fn cli(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
        let mut cmd = std::process::Command::new(BIN);
        cmd.env_remove("LIGHTNINGD_PLUGIN");
        for a in args {
            cmd.arg(a);
        }
        cmd.output().unwrap()
    }

    #[test]
    fn init_with_two_destinations_makes_both_complete() {
        let (dir, mut load) = node_with_database();
        let backups = tempfile::tempdir().unwrap();
        let (a, b) = (backups.path().join("a.redb"), backups.path().join("b.redb"));
        let out = cli(&[&"init", &"--lightning-dir", &dir.network(), &a, &b, &"--async", &b]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("Brought {} (async)", b.display())), "{text}");
        let entries = lockfile::read_lock(&dir.network()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].mode, Mode::Async);
        assert_eq!(entries[1].url, format!("file://{}", std::fs::canonicalize(&b).unwrap().display()));
        restore_equals_node(&a, &dir.db());
        restore_equals_node(&b, &dir.db());
        // The node then runs with both.
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        assert!(node.logged("Versions match up"), "{:?}", node.logs);
        load.resume_at(node.data_version());
        run(&mut node, &mut load, 20);
        node.stop();
        restore_equals_node(&b, &dir.db());
    }

    #[test]
    fn a_failed_init_leaves_nothing() {
        let (dir, _) = node_with_database();
        let backups = tempfile::tempdir().unwrap();
        let a = backups.path().join("a.redb");
        // The second destination cannot be made: the first is removed, no lock.
        let b = backups.path().join("no-such-dir").join("b.redb");
        let out = cli(&[&"init", &"--lightning-dir", &dir.network(), &a, &b]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&b.display().to_string()), "{err}");
        // An object-store destination whose key cannot be read: the same.
        // (A key file that does not exist is created by init: this one
        // exists, elsewhere, and is not a key.)
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("not-a.key");
        std::fs::write(&key, "not a key\n").unwrap();
        let out = cli(&[&"init", &"--lightning-dir", &dir.network(), &a, &"s3://bucket/node", &"--key-file", &key]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(&key.display().to_string()), "{err}");
        assert!(!a.exists(), "init left {}", a.display());
        assert!(!dir.network().join(LOCK_FILE_NAME).exists());
        assert_eq!(std::fs::read_dir(backups.path()).unwrap().count(), 0);
    }
}
