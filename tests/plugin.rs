//! End-to-end tests of the plugin: the real binary driven through the plugin
//! protocol by the lightningd simulator, each ending with a restore compared
//! row by row with the simulator's database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;

use cln_backup::{lockfile, restore, Store};
use sim::{Node, NodeDir, Start, Stop};
use std::path::{Path, PathBuf};

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// `cln-backup init` without a database: an empty store and backup.lock.
fn init_empty(dir: &NodeDir) -> PathBuf {
    let store = dir.root.path().join("backup.redb");
    Store::create(&store).unwrap();
    lockfile::write(&dir.network(), &store).unwrap();
    store
}

fn restore_and_compare(store: &Path, node_db: &Path) {
    let store = Store::open(store).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored.sqlite3");
    restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
    let a = rows(&dest);
    let b = rows(node_db);
    assert_eq!(a, b, "restored database differs from the node's");
}

fn rows(path: &Path) -> Vec<(String, Vec<String>)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut out = Vec::new();
    let tables: Vec<(String, String)> = conn
        .prepare("SELECT name, sql FROM sqlite_master WHERE type='table' ORDER BY name")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for (name, sql) in tables {
        let mut stmt = conn.prepare(&format!("SELECT quote(*) FROM \"{name}\"")).ok();
        let mut data = vec![sql];
        if stmt.is_none() {
            let mut s = conn.prepare(&format!("SELECT * FROM \"{name}\" ORDER BY rowid")).unwrap();
            let n = s.column_count();
            let mut q = s.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                data.push((0..n).map(|i| format!("{:?}", r.get_ref(i).unwrap())).collect::<Vec<_>>().join("|"));
            }
        }
        stmt.take();
        out.push((name, data));
    }
    out
}

#[test]
fn start_then_restart_five_times() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    for round in 0..6 {
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap_or_else(|e| panic!("start {round}: {e}"));
        node.transaction(vec![format!(
            "INSERT INTO peers (id, node_id, address) VALUES ({round}, x'{round:02x}', 'a')"
        )])
        .unwrap();
        if round > 0 {
            assert!(node.logged("Versions match up"), "round {round}: {:?}", node.logs);
        }
        node.stop();
    }
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
fn crash_between_hook_and_commit_rewinds() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    node.transaction(vec!["INSERT INTO peers (id, node_id, address) VALUES (1, x'01', 'a')".into()]).unwrap();
    node.crash_after_hook(vec!["INSERT INTO peers (id, node_id, address) VALUES (2, x'02', 'phantom')".into()])
        .unwrap();
    let node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    assert!(node.logged("Last changes not applied, rewinding non-committed transaction"), "{:?}", node.logs);
    node.stop();
    restore_and_compare(&store, &dir.db());
}
