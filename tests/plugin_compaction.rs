//! Automatic compaction in the plugin, end to end: the real binary driven by
//! the lightningd simulator with the compaction options set, its
//! `backup-status` and `backup-compact` answers, and a restore by the real
//! CLI compared with the node's database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Runs the binary, which exists only with both front ends.
#![cfg(all(feature = "cli", feature = "plugin"))]

mod support;

#[path = "support/sim.rs"]
mod sim;

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::Store;
use serde_json::{json, Value};
use sim::{Node, NodeDir, Start, Stop};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use support::run;
use support::workload::Workload;

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// `cln-backup init` without a database: an empty store and backup.lock.
fn init_empty(dir: &NodeDir) -> PathBuf {
    let store = dir.root.path().join("backup.redb");
    Store::create(&store).unwrap();
    sim::write_lock(dir, &store);
    store
}

/// A start of the plugin with these options in `init`.
fn start_with(options: Value) -> Start {
    let mut start = Start::with_plugin(BIN);
    start.options = options.as_object().cloned().unwrap();
    start
}

/// Run `n` transactions of the realistic workload; each must be answered
/// `continue` (`apply` fails otherwise).
fn apply(node: &mut Node, load: &mut Workload, n: usize) {
    for _ in 0..n {
        let txn = load.next_txn();
        node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
    }
}

fn status(node: &mut Node) -> Value {
    node.rpc("backup-status", json!({})).unwrap_or_else(|e| panic!("backup-status: {e}"))
}

/// `backup-status` once no compaction is running (waits up to a minute).
fn status_when_idle(node: &mut Node) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(node);
        if s["compaction"]["running"] == json!(false) {
            return s;
        }
        assert!(Instant::now() < deadline, "a compaction is still running after a minute: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Restore the store with the real CLI and compare it with the node's database.
fn restore_and_compare(store: &Path, node_db: &Path) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored.sqlite3");
    let args: [&dyn AsRef<OsStr>; 3] = [&"restore", &store, &dest];
    run::assert_ok(&run::cln_backup(&args));
    match compare_databases(&dest, node_db, Labels::RESTORED_AND_EXPECTED) {
        Ok(None) => {}
        Ok(Some(d)) => panic!("{d}"),
        Err(e) => panic!("comparing {}: {e}", dest.display()),
    }
}

fn refused(result: Result<Node, Stop>) -> String {
    match result {
        Err(Stop::Refused(msg)) => msg,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(node) => panic!("expected a refusal, node started with logs {:?}", node.logs),
    }
}

/// A node with `backup-compact-after-changes=200` (the ratio off, so the
/// count alone decides and the number of compactions does not depend on
/// how well the workload compresses) after 700 transactions, each answered
/// `continue`; its status once no compaction runs.
///
/// The writes go in batches of 100, each followed by a wait for any
/// compaction running to end: on a slow machine one compaction could
/// otherwise span the writes that make the next one due. Writes within a
/// batch go on while a compaction runs.
fn node_after_700_writes(dir: &NodeDir, seed: u64) -> (Node, Value) {
    let options = json!({"backup-compact-after-changes": 200, "backup-compact-after-ratio": "0"});
    let mut node = Node::start(dir, &start_with(options)).unwrap();
    let mut load = Workload::on_existing_schema(seed, node.data_version());
    for _ in 0..7 {
        apply(&mut node, &mut load, 100);
        status_when_idle(&mut node);
    }
    let s = status_when_idle(&mut node);
    (node, s)
}

#[test]
fn compactions_run_automatically_while_the_node_writes() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let (node, s) = node_after_700_writes(&dir, 11);
    let c = &s["compaction"];
    assert!(c["last"].is_object(), "no last compaction: {s}");
    assert_eq!(s["last_compaction"], c["last"]);
    // The last one folded changes made after the first 200.
    assert!(c["last"]["snapshot_seq"].as_u64().unwrap() > 400, "{s}");
    assert!(c["changes_since_snapshot"].as_u64().unwrap() < 200, "{s}");
    let snapshots = s["snapshots"].as_array().unwrap();
    assert!(!snapshots.is_empty(), "{s}");
    for snap in snapshots {
        for key in ["version", "time", "version_time", "size", "stored_bytes"] {
            assert!(!snap[key].is_null(), "snapshot without {key}: {snap}");
        }
    }
    assert_eq!(s["snapshot_version"], snapshots.last().unwrap()["version"]);
    assert!(s["restorable"]["from_time"].is_string() && s["restorable"]["to_time"].is_string(), "{s}");

    let logs = node.stop();
    let info = |text: &str| logs.iter().filter(|l| l.level == "info" && l.message.contains(text)).count();
    assert!(info("Automatic compaction of") >= 4, "start and end of each are logged: {logs:?}");
    assert!(info("done: snapshot at version") >= 2, "at least two automatic compactions: {logs:?}");
    assert_eq!(info("started:"), info("done:"), "each that started ended: {logs:?}");
    assert!(!logs.iter().any(|l| l.level == "broken" || l.level == "unusual"), "{logs:?}");
    restore_and_compare(&store, &dir.db());
}

/// Needs the library's retention (several snapshots kept); the provisional
/// compaction keeps only the newest.
#[test]
fn automatic_compactions_keep_several_snapshots() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let (node, s) = node_after_700_writes(&dir, 14);
    let snapshots = s["snapshots"].as_array().unwrap();
    assert!(snapshots.len() >= 2, "fewer than two snapshots after automatic compactions: {s}");
    assert!(snapshots.len() <= 3, "more snapshots than the default keeps: {s}");
    let versions: Vec<u64> = snapshots.iter().map(|x| x["version"].as_u64().unwrap()).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "oldest first: {versions:?}");
    // A restore can reach back to the oldest snapshot kept.
    assert_eq!(s["restorable"]["from"], snapshots[0]["version"]);
    node.stop();
    restore_and_compare(&store, &dir.db());
}

#[test]
fn status_shows_the_policy_given_and_what_is_left() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let options = json!({
        "backup-compact-after-changes": 300,
        "backup-compact-after-ratio": "2.5",
        "backup-keep-snapshots": 5,
        "backup-keep-max-age": "30d",
        "backup-compact-io-rate": 16,
    });
    let mut node = Node::start(&dir, &start_with(options)).unwrap();
    let mut load = Workload::on_existing_schema(12, node.data_version());
    apply(&mut node, &mut load, 5);
    let before = status(&mut node);
    let c = &before["compaction"];
    assert_eq!(
        c["policy"],
        json!({"after_changes": 300, "after_ratio": 2.5, "keep_snapshots": 5, "max_age": "30d", "io_rate_mib_per_s": 16})
    );
    assert_eq!(c["running"], json!(false));
    assert!(c["next"]["due"].is_null(), "{c}");
    assert!(c["last"].is_null(), "{c}");
    // No snapshot yet: the size trigger counts towards the first one.
    assert!(c["next"]["bytes_left"].is_u64(), "{c}");
    let left = c["next"]["changes_left"].as_u64().unwrap();
    assert_eq!(left, 300 - c["changes_since_snapshot"].as_u64().unwrap());

    apply(&mut node, &mut load, 10);
    let after = status(&mut node);
    let c = &after["compaction"];
    assert_eq!(c["next"]["changes_left"].as_u64().unwrap(), left - 10, "{c}");
    assert!(
        c["bytes_since_snapshot"].as_u64().unwrap() > before["compaction"]["bytes_since_snapshot"].as_u64().unwrap()
    );
    // The keys that were there before stay.
    for key in ["version", "prev_version", "changes_since_snapshot", "store_bytes", "store", "destinations"] {
        assert!(after.get(key).is_some(), "{key} missing: {after}");
    }
    assert_eq!(after["version"], json!(node.data_version()));
    node.stop();
    restore_and_compare(&store, &dir.db());
}

#[test]
fn the_defaults_are_shown_when_no_option_is_given() {
    let dir = NodeDir::new();
    init_empty(&dir);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    let s = status(&mut node);
    assert_eq!(
        s["compaction"]["policy"],
        json!({"after_changes": 50000, "after_ratio": 1.0, "keep_snapshots": 3, "max_age": null, "io_rate_mib_per_s": 64})
    );
    node.stop();
}

#[test]
fn a_bad_option_value_is_refused_naming_the_option() {
    for (name, value, shown) in [
        ("backup-keep-snapshots", json!(0), "backup-keep-snapshots=0"),
        ("backup-compact-after-ratio", json!("abc"), "backup-compact-after-ratio=abc"),
        ("backup-compact-after-changes", json!(-5), "backup-compact-after-changes=-5"),
        ("backup-keep-max-age", json!("soon"), "backup-keep-max-age=soon"),
        ("backup-compact-io-rate", json!("fast"), "backup-compact-io-rate=fast"),
    ] {
        let dir = NodeDir::new();
        let store = init_empty(&dir);
        let msg = refused(Node::start(&dir, &start_with(json!({ name: value }))));
        assert!(msg.contains(shown), "{name}: {msg}");
        // The writes before init were stored; nothing after.
        let version = Store::open(&store).unwrap().status().unwrap().version;
        assert!(version > 0, "{name}: the writes before init are kept");
    }
}

/// Needs the library's serialised compaction; the provisional one lets the
/// second publish at the version the first just did, and refuses it.
#[test]
fn two_compactions_called_at_once_both_answer() {
    let dir = NodeDir::new();
    let store = init_empty(&dir);
    let mut node = Node::start(&dir, &start_with(json!({"backup-compact-after-changes": 0}))).unwrap();
    let mut load = Workload::on_existing_schema(13, node.data_version());
    apply(&mut node, &mut load, 150);
    let first = node.rpc_start("backup-compact", json!({})).unwrap();
    let second = node.rpc_start("backup-compact", json!({})).unwrap();
    let a = node.rpc_wait(&first).unwrap_or_else(|e| panic!("first backup-compact: {e}"));
    let b = node.rpc_wait(&second).unwrap_or_else(|e| panic!("second backup-compact: {e}"));
    for answer in [&a, &b] {
        assert!(answer["waited_ms"].is_u64(), "{answer}");
        assert!(answer["compacted"].is_boolean(), "{answer}");
    }
    assert!(a["compacted"] == json!(true) || b["compacted"] == json!(true), "{a} {b}");
    // The node writes on, and the store is whole.
    apply(&mut node, &mut load, 50);
    let s = status_when_idle(&mut node);
    assert!(s["snapshot_version"].is_u64(), "{s}");
    node.stop();
    let args: [&dyn AsRef<OsStr>; 2] = [&"verify", &store];
    run::assert_ok(&run::cln_backup(&args));
    restore_and_compare(&store, &dir.db());
}

#[test]
fn an_async_destination_behind_skips_the_automatic_compaction_once_a_minute() {
    use cln_backup::lockfile::{self, Entry, Mode, LOCK_FILE_NAME};
    let dir = NodeDir::new();
    let root = dir.root.path();
    let primary = root.join("primary.redb");
    drop(Store::create(&primary).unwrap());
    let lazy = root.join("removed-disk").join("async.redb");
    let mut entries = vec![Entry::new(format!("file://{}", primary.display()))];
    let mut behind = Entry::new(format!("file://{}", lazy.display()));
    behind.mode = Mode::Async;
    entries.push(behind);
    std::fs::write(dir.network().join(LOCK_FILE_NAME), lockfile::lock_text(&entries).unwrap()).unwrap();

    let options = json!({"backup-compact-after-changes": 50, "backup-compact-after-ratio": "0"});
    let mut node = Node::start(&dir, &start_with(options)).unwrap();
    let mut load = Workload::on_existing_schema(15, node.data_version());
    apply(&mut node, &mut load, 60);
    let s = status_when_idle(&mut node);
    // Due, but not run: the async destination does not hold the head.
    assert!(s["compaction"]["next"]["due"].is_string(), "{s}");
    assert!(s["snapshot_version"].is_null() && s["compaction"]["last"].is_null(), "{s}");
    // Many writes later, still within the minute: not tried again.
    apply(&mut node, &mut load, 100);
    let logs = node.stop();
    let skips: Vec<_> = logs.iter().filter(|l| l.message.starts_with("Automatic compaction skipped")).collect();
    assert_eq!(skips.len(), 1, "one skip a minute at most: {logs:?}");
    assert_eq!(skips[0].level, "unusual");
    assert!(skips[0].message.contains(&lazy.display().to_string()), "names the destination: {}", skips[0].message);
    assert!(!logs.iter().any(|l| l.message.contains("done:")), "{logs:?}");
    restore_and_compare(&primary, &dir.db());
}
