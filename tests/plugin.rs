//! End-to-end tests of the plugin: the real binary driven through the plugin
//! protocol by the lightningd simulator, each ending with a restore compared
//! row by row with the simulator's database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;
#[path = "support/workload.rs"]
mod workload;

use cln_backup::{restore, Store};
use sim::{Node, NodeDir, Start, Stop};
use std::path::{Path, PathBuf};

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// `cln-backup init` without a database: an empty store and backup.lock.
fn init_empty(dir: &NodeDir) -> PathBuf {
    let store = dir.root.path().join("backup.redb");
    Store::create(&store).unwrap();
    sim::write_lock(dir, &store);
    store
}

fn restore_and_compare(store: &Path, node_db: &Path) {
    let store = Store::open(store).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored.sqlite3");
    restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
    workload::assert_same_db(&dest, node_db);
}

/// Run `n` transactions of the realistic workload (channels opening and
/// closing by cascade, HTLCs with onions, invoices, payments, forwards).
fn run_workload(node: &mut Node, load: &mut workload::Workload, n: usize) {
    for _ in 0..n {
        let txn = load.next_txn();
        node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
    }
}

#[test]
fn start_then_restart_five_times() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut load: Option<workload::Workload> = None;
    for round in 0..6 {
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap_or_else(|e| panic!("start {round}: {e}"));
        if round > 0 {
            assert!(node.logged("Versions match up"), "round {round}: {:?}", node.logs);
        }
        // The node's history goes on across restarts; its start-up write moved the version.
        let load = load.get_or_insert_with(|| workload::Workload::on_existing_schema(1, node.data_version()));
        load.resume_at(node.data_version());
        run_workload(&mut node, load, 150);
        node.stop();
    }
    assert!(load.is_some_and(|l| l.closed_channels() > 0), "the workload closed channels by cascade");
    restore_and_compare(&store, &dir.db());
}

#[test]
fn start_without_init_stops_and_says_why() {
    let dir = NodeDir::new();
    let err = Node::start(&dir, &Start::with_plugin(BIN)).err().expect("must stop");
    match err {
        Stop::Refused(msg) => assert!(msg.contains("cln-backup init"), "{msg}"),
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn a_lock_naming_an_unreachable_backup_server_stops_and_says_why() {
    // socket: is served now: the plugin connects, and a server that is not
    // there stops the node with the lock and the URL named, not with the
    // old "remote stores are not supported" refusal.
    let dir = NodeDir::new();
    let url = "socket:127.0.0.1:1";
    std::fs::write(dir.network().join("backup.lock"), format!("{{\"backend_url\": \"{url}\"}}")).unwrap();
    let msg = refused(Node::start(&dir, &Start::with_plugin(BIN)));
    for part in ["backup.lock", url] {
        assert!(msg.contains(part), "missing {part:?} in: {msg}");
    }
    for gone in ["not supported by this version", "move backup.lock aside", "local store only"] {
        assert!(!msg.contains(gone), "{gone:?} in: {msg}");
    }
}

#[test]
fn crash_between_hook_and_commit_rewinds() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    let mut load = workload::Workload::on_existing_schema(3, node.data_version());
    run_workload(&mut node, &mut load, 200);
    node.crash_after_hook(vec!["INSERT INTO peers (id, node_id, address) VALUES (2, x'02', 'phantom')".into()])
        .unwrap();
    let node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    assert!(node.logged("Last changes not applied, rewinding non-committed transaction"), "{:?}", node.logs);
    node.stop();
    restore_and_compare(&store, &dir.db());
}

fn peer(n: u32) -> Vec<String> {
    vec![format!("INSERT INTO peers (id, node_id, address) VALUES ({n}, x'{n:08x}', 'peer {n}')")]
}

fn refused(result: Result<Node, Stop>) -> String {
    match result {
        Err(Stop::Refused(msg)) => msg,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(node) => panic!("expected a refusal, node started with logs {:?}", node.logs),
    }
}

#[test]
fn node_two_versions_behind_is_refused_as_lost_state() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    node.transaction(peer(1)).unwrap();
    node.stop();
    let old = dir.root.path().join("old.sqlite3");
    std::fs::copy(dir.db(), &old).unwrap();
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    node.transaction(peer(2)).unwrap();
    node.stop();
    let head = Store::open(&store).unwrap().version();
    // A failed restore: the node's database is two versions behind the backup.
    std::fs::copy(&old, dir.db()).unwrap();
    let msg = refused(Node::start(&dir, &Start::with_plugin(BIN)));
    assert!(msg.contains("lost some state"), "{msg}");
    assert_eq!(Store::open(&store).unwrap().version(), head, "a refused write must not change the backup");
}

#[test]
fn node_that_ran_without_the_plugin_is_refused_as_out_of_date() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    node.transaction(peer(1)).unwrap();
    node.stop();
    let mut bare = Node::start(&dir, &Start::without_plugin()).unwrap();
    bare.transaction(peer(2)).unwrap();
    drop(bare);
    let msg = refused(Node::start(&dir, &Start::with_plugin(BIN)));
    assert!(msg.contains("out of date"), "{msg}");
    let restored = tempfile::tempdir().unwrap();
    let dest = restored.path().join("r.sqlite3");
    restore::restore_store(&Store::open(&store).unwrap(), &dest, &restore::Options::default()).unwrap();
    let peers: i64 =
        rusqlite::Connection::open(&dest).unwrap().query_row("SELECT count(*) FROM peers", [], |r| r.get(0)).unwrap();
    assert_eq!(peers, 1, "the backup holds what the plugin saw, nothing more");
}

#[test]
fn deprecated_option_is_accepted_and_warned_about() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut start = Start::with_plugin(BIN);
    start.options.insert("backup-destination".into(), serde_json::json!("file:///somewhere/else.bkp"));
    let mut node = Node::start(&dir, &start).unwrap();
    node.transaction(peer(1)).unwrap();
    node.drain_logs(std::time::Duration::from_millis(300));
    assert!(node.logged("backup-destination") && node.logged("deprecated"), "{:?}", node.logs);
    node.stop();
    restore_and_compare(&store, &dir.db());
}

#[test]
fn repeated_version_pragma_reports_are_kept_in_order() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    node.stop();
    let store = Store::open(&store).unwrap();
    let reader = store.reader().unwrap();
    let changes: Vec<_> = reader.changes(reader.head()).unwrap().map(Result::unwrap).collect();
    // Each record's transactions: the first is the transaction that made the
    // version, the rest are the lone reports that repeated it, in order. Two
    // rebuilds: OFF after version 1, the rebuild as 2, ON then OFF, the second
    // rebuild as 3, ON.
    let shape: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            c.transactions[1..]
                .iter()
                .map(|t| {
                    assert_eq!(t.statements.len(), 1, "a report is one statement");
                    t.statements[0].clone()
                })
                .collect()
        })
        .collect();
    let off = "PRAGMA foreign_keys = OFF;".to_string();
    let on = "PRAGMA foreign_keys = ON;".to_string();
    assert_eq!(shape, vec![vec![off.clone()], vec![on.clone(), off], vec![on], vec![]]);
    drop(reader);
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("r.sqlite3");
    restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
    workload::assert_same_db(&dest, &dir.db());
}

#[test]
fn upgrade_whose_first_write_is_a_lone_pragma_does_not_rewind() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let all = sim::migrations().len();
    let mut old = Start::with_plugin(BIN);
    old.migrations = all - 1;
    let mut node = Node::start(&dir, &old).unwrap();
    node.transaction(peer(1)).unwrap();
    node.transaction(vec![
        "INSERT INTO channels (id, peer_id, state) VALUES (1, 1, 2)".into(),
        "INSERT INTO channel_htlcs (id, channel_id, channel_htlc_id, direction) VALUES (1, 1, 0, 0)".into(),
        "INSERT INTO htlc_sigs (channelid, signature) VALUES (1, x'3045')".into(),
    ])
    .unwrap();
    node.stop();
    // The new version's only migration is a rebuild of channels.
    let node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    assert!(node.logged("Versions match up"), "{:?}", node.logs);
    assert!(!node.logged("rewinding"), "{:?}", node.logs);
    node.stop();
    restore_and_compare(&store, &dir.db());
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    let htlcs: i64 = conn.query_row("SELECT count(*) FROM channel_htlcs", [], |r| r.get(0)).unwrap();
    assert_eq!(htlcs, 1, "the rebuild must not cascade on the node either");
}

#[test]
fn compaction_during_a_workload_then_restore() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    let mut load = workload::Workload::on_existing_schema(4, node.data_version());
    run_workload(&mut node, &mut load, 300);
    let call = node.rpc_start("backup-compact", serde_json::json!({})).unwrap();
    run_workload(&mut node, &mut load, 100);
    let stats = node.rpc_wait(&call).unwrap();
    assert_eq!(stats["compacted"], serde_json::json!(true), "{stats}");
    assert!(stats["changes_after"].as_u64().unwrap() < stats["changes_before"].as_u64().unwrap(), "{stats}");
    let status = node.rpc("backup-status", serde_json::json!({})).unwrap();
    assert_eq!(status["version"].as_u64(), Some(u64::from(node.data_version())), "{status}");
    assert!(status["last_compaction"].is_object(), "{status}");
    node.stop();
    restore_and_compare(&store, &dir.db());
}

#[test]
fn version_wraps_from_u32_max_to_zero() {
    let dir = NodeDir::new();
    // A node that has run a long time: built without the plugin, then its
    // data_version set near the top. lightningd keeps the version as a u32;
    // the trigger keeps SQLite's copy in step with it across the wrap.
    let bare = Node::start(&dir, &Start::without_plugin()).unwrap();
    drop(bare);
    let start = u32::MAX - 3;
    {
        let conn = rusqlite::Connection::open(dir.db()).unwrap();
        conn.execute_batch(&format!(
            "UPDATE vars SET intval = {start} WHERE name = 'data_version';
             CREATE TRIGGER data_version_u32 AFTER UPDATE OF intval ON vars
             WHEN NEW.name = 'data_version' AND NEW.intval > 4294967295
             BEGIN UPDATE vars SET intval = NEW.intval - 4294967296 WHERE name = 'data_version'; END;"
        ))
        .unwrap();
    }
    let store_path = dir.root.path().join("backup.redb");
    let store = Store::create(&store_path).unwrap();
    store.add_snapshot(start, &mut std::fs::File::open(dir.db()).unwrap()).unwrap();
    drop(store);
    sim::write_lock(&dir, &store_path);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    for n in 1..8 {
        node.transaction(peer(n)).unwrap();
    }
    // One start-up write and seven transactions from u32::MAX - 3.
    let expected = start.wrapping_add(8);
    assert_eq!(node.data_version(), expected);
    assert!(expected < 10, "the node's version wrapped");
    node.stop();
    let store = Store::open(&store_path).unwrap();
    assert_eq!(store.version(), expected);
    assert!(store.head() > u64::from(u32::MAX), "the store's version keeps growing across the wrap");
    drop(store);
    restore_and_compare(&store_path, &dir.db());
}

fn cli(args: &[&dyn AsRef<std::ffi::OsStr>]) -> std::process::Output {
    std::process::Command::new(BIN).args(args).env_remove("LIGHTNINGD_PLUGIN").output().unwrap()
}

#[test]
fn init_on_a_node_with_a_database_snapshots_it_and_versions_match() {
    let dir = NodeDir::new();
    // A node that ran for a while without a backup.
    let mut bare = Node::start(&dir, &Start::without_plugin()).unwrap();
    for n in 1..20 {
        bare.transaction(peer(n)).unwrap();
    }
    let version = bare.data_version();
    drop(bare);
    let store = dir.root.path().join("backup.redb");
    let out = cli(&[&"init", &"--lightning-dir", &dir.network(), &store]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("at version {version}")), "{said}");
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    assert!(node.logged("Versions match up"), "{:?}", node.logs);
    node.transaction(peer(100)).unwrap();
    node.stop();
    restore_and_compare(&store, &dir.db());
}

#[test]
fn restore_to_a_file_and_a_directory_and_refuse_an_existing_destination() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    for n in 1..10 {
        node.transaction(peer(n)).unwrap();
    }
    node.stop();
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("node.sqlite3");
    let out = cli(&[&"restore", &store, &file]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    workload::assert_same_db(&file, &dir.db());
    let out = cli(&[&"restore", &store, &out_dir.path()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let in_dir = out_dir.path().join("lightningd.sqlite3");
    workload::assert_same_db(&in_dir, &dir.db());
    let before = std::fs::read(&file).unwrap();
    let out = cli(&[&"restore", &store, &file]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&file.display().to_string()) && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&file).unwrap(), before, "a refused restore leaves the file alone");
}
