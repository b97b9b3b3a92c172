//! The plugin killed with SIGKILL at random points, over and over: during a
//! start (its version check and rewind included), inside `db_write` hooks,
//! during compactions (automatic and asked for), right after a hook whose
//! transaction lightningd then never commits. After each kill the node
//! starts again as lightningd would; every start's version check must pass
//! or rewind (SPEC section 2), never refuse, and at the end the restore must
//! equal the simulated node's database.
//!
//! `CLN_BACKUP_KILL_ROUNDS` sets the rounds (24 by default, which CI runs;
//! 200 or more on demand) and `CLN_BACKUP_KILL_SEED` the seed:
//!
//! ```sh
//! CLN_BACKUP_KILL_ROUNDS=200 cargo test --release --test kill -- --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;
mod support;

use cln_backup::Store;
use serde_json::json;
use sim::{Node, NodeDir, Start, Stop};
use std::path::Path;
use std::time::Duration;
use support::run;
use support::server::Server;
use support::workload::{self, Rng, Workload};

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Where a round's kill is aimed.
#[derive(Clone, Copy, Debug)]
enum Aim {
    /// In the start: pre-init writes, the version check, a rewind.
    Start,
    /// Inside the hooks of a running node.
    Hooks,
    /// While a compaction asked for with `backup-compact` runs.
    Compaction,
    /// The node dies after a hook, before committing; the next start
    /// rewinds, and is killed itself early on.
    AfterHook,
}

#[derive(Default, Debug)]
struct Counts {
    rounds: u64,
    killed_in_start: u64,
    killed_in_hook: u64,
    killed_in_compaction: u64,
    uncommitted_after_hook: u64,
    rewinds_seen: u64,
    matches_seen: u64,
    transactions_committed: u64,
}

/// The campaign on the node in `dir`, whose `backup.lock` is written:
/// `rounds` kills, then a last start without one. Returns what it did.
fn campaign(dir: &NodeDir, rounds: u64, seed: u64) -> Counts {
    let mut rng = Rng::new(seed);
    // Automatic compactions every 120 changes, so that kills meet them too.
    let options = json!({"backup-compact-after-changes": "120"});
    let start = |kill_after: Option<Duration>| {
        let mut s = Start::with_plugin(BIN);
        s.options = options.as_object().cloned().unwrap();
        s.kill_after = kill_after;
        s
    };

    // The first start applies every migration: not killed (the simulator,
    // like lightningd, would redo them from the start).
    let mut node = Node::start(dir, &start(None)).unwrap();
    let mut load = Workload::on_existing_schema(seed, node.data_version());
    for _ in 0..150 {
        node.apply(&load.next_txn()).unwrap();
    }
    node.stop();
    let mut counts = Counts::default();
    // A transaction the node reported but never committed, to run again.
    let mut pending: Option<Vec<String>> = None;
    for round in 0..rounds {
        counts.rounds += 1;
        let aim = match rng.below(4) {
            0 => Aim::Start,
            1 => Aim::Hooks,
            2 => Aim::Compaction,
            _ => Aim::AfterHook,
        };
        let kill_ms = match aim {
            Aim::Start => rng.range(0, 40),
            Aim::Hooks => rng.range(20, 400),
            Aim::Compaction => rng.range(10, 300),
            Aim::AfterHook => rng.range(150, 600),
        };
        let kill = match aim {
            Aim::AfterHook => None,
            _ => Some(Duration::from_millis(kill_ms)),
        };
        let mut node = match Node::start(dir, &start(kill)) {
            Ok(node) => node,
            Err(Stop::PluginDied(_)) => {
                counts.killed_in_start += 1;
                continue;
            }
            Err(e) => panic!("round {round} ({aim:?}): the start was refused: {e}"),
        };
        let rewound = node.logged("rewinding non-committed transaction");
        let matched = node.logged("Versions match up");
        assert!(rewound || matched, "round {round}: no version check in {:?}", node.logs);
        counts.rewinds_seen += u64::from(rewound);
        counts.matches_seen += u64::from(matched);
        load.resume_at(node.data_version());
        if matches!(aim, Aim::Compaction) {
            let _ = node.rpc_start("backup-compact", json!({}));
        }
        let budget = match aim {
            Aim::AfterHook => rng.range(1, 60),
            _ => 2000,
        };
        let mut died = false;
        for _ in 0..budget {
            // What lightningd runs next: the transaction it never committed,
            // then the mix.
            let statements = match pending.take() {
                Some(s) => s,
                None => {
                    let (_, mut s) = load.next_txn();
                    s.pop();
                    s
                }
            };
            match node.transaction(statements.clone()) {
                Ok(()) => {
                    counts.transactions_committed += 1;
                    load.resume_at(node.data_version());
                }
                Err(Stop::PluginDied(_)) => {
                    // No answer before the plugin died: lightningd stops
                    // without committing, and runs it again after the start.
                    pending = Some(statements);
                    died = true;
                    break;
                }
                Err(e) => panic!("round {round} ({aim:?}): a write was refused: {e}"),
            }
        }
        match aim {
            Aim::AfterHook => {
                let (_, mut s) = load.next_txn();
                s.pop();
                node.crash_after_hook(s.clone()).unwrap();
                pending = Some(s);
                counts.uncommitted_after_hook += 1;
            }
            _ if !died => {
                // The kill came after the last write: stop as lightningd
                // would have been stopped by it.
                drop(node);
            }
            Aim::Compaction => counts.killed_in_compaction += 1,
            _ => counts.killed_in_hook += 1,
        }
    }

    // A last start without a kill: the version check passes, writes go on,
    // and the store restores the node exactly.
    let mut node = Node::start(dir, &start(None)).unwrap();
    assert!(node.logged("Versions match up") || node.logged("rewinding non-committed transaction"), "{:?}", node.logs);
    load.resume_at(node.data_version());
    if let Some(s) = pending.take() {
        node.transaction(s).unwrap();
        load.resume_at(node.data_version());
    }
    for _ in 0..50 {
        let (_, mut s) = load.next_txn();
        s.pop();
        node.transaction(s).unwrap();
        load.resume_at(node.data_version());
    }
    node.stop();
    assert!(counts.killed_in_hook + counts.killed_in_compaction + counts.killed_in_start > rounds / 3, "{counts:?}");
    assert!(counts.rewinds_seen > 0, "{counts:?}");
    counts
}

/// The restore of `source` (a store or a URL) equals the node's database.
fn restores_the_node(source: &dyn AsRef<std::ffi::OsStr>, node_db: &Path) {
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored.sqlite3");
    run::assert_ok(&run::cln_backup(&[&"restore", source, &dest]));
    workload::assert_same_db(&dest, node_db);
}

fn rounds() -> u64 {
    env_u64("CLN_BACKUP_KILL_ROUNDS", 24)
}

#[test]
fn sigkill_at_random_points_never_breaks_a_restart_or_the_restore() {
    let dir = NodeDir::new();
    let store = dir.root.path().join("backup.redb");
    Store::create(&store).unwrap();
    sim::write_lock(&dir, &store);
    let counts = campaign(&dir, rounds(), env_u64("CLN_BACKUP_KILL_SEED", 1));
    eprintln!("kill campaign: {counts:?}");
    restores_the_node(&store, &dir.db());
}

/// The same with a remote copy written on every change: a `cln-backup
/// server` on loopback as a sync destination beside the local store. The
/// server's copy, restored through the socket protocol, equals the node too.
#[test]
fn sigkill_with_a_socket_destination_leaves_both_copies_equal_to_the_node() {
    let dir = NodeDir::new();
    let files = tempfile::tempdir().unwrap();
    let server_store = files.path().join("server.redb");
    drop(Store::create(&server_store).unwrap());
    let server = Server::start(&server_store, "127.0.0.1:0");
    let local = dir.root.path().join("backup.redb");
    let socket = server.url();
    run::assert_ok(&run::cln_backup(&[&"init", &"--lightning-dir", &dir.network(), &local, &socket]));
    let counts = campaign(&dir, rounds().div_ceil(2), env_u64("CLN_BACKUP_KILL_SEED", 1) + 1);
    eprintln!("kill campaign with a socket destination: {counts:?}");
    restores_the_node(&local, &dir.db());
    restores_the_node(&socket, &dir.db());
}

/// The same with an object-storage copy on a real Garage on loopback beside
/// the local store, written on every change or (`--async`) in the
/// background. Kills land in the middle of uploads and of the copy's lease;
/// every start must take the copy over again, and once the node has stopped
/// cleanly the bucket's copy, restored on its own, equals the node.
fn s3_campaign(mode: &str, seed: u64) {
    let Some(g) = support::garage::garage() else { return };
    let dir = NodeDir::new();
    let files = tempfile::tempdir().unwrap();
    let local = dir.root.path().join("backup.redb");
    let key = files.path().join("node.key");
    let credentials = g.credentials_file(files.path());
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let url = g.url(&format!("kill-{mode}-{}-{nanos}", std::process::id()));
    let network = dir.network();
    let mut init: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"init", &"--lightning-dir", &network, &local, &url];
    if mode == "async" {
        init.extend_from_slice(&[&"--async", &url]);
    }
    init.extend_from_slice(&[&"--key-file", &key, &"--credentials-file", &credentials]);
    run::assert_ok(&run::cln_backup(&init));
    let counts = campaign(&dir, rounds().div_ceil(2), env_u64("CLN_BACKUP_KILL_SEED", 1) + seed);
    eprintln!("kill campaign with an s3 destination ({mode}): {counts:?}");
    restores_the_node(&local, &dir.db());
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored.sqlite3");
    run::assert_ok(&run::cln_backup(&[
        &"restore",
        &url,
        &dest,
        &"--key-file",
        &key,
        &"--credentials-file",
        &credentials,
    ]));
    workload::assert_same_db(&dest, &dir.db());
}

#[test]
fn sigkill_with_a_sync_s3_destination_leaves_both_copies_equal_to_the_node() {
    s3_campaign("sync", 2);
}

#[test]
fn sigkill_with_an_async_s3_destination_leaves_both_copies_equal_to_the_node() {
    s3_campaign("async", 3);
}
