//! The main job: a simulated lightningd node runs with the real `cln-backup`
//! plugin backing it up into an embedded redb store; then the store is
//! restored and compared with the node's own database row by row.
//!
//! ```sh
//! cargo run --release --example simulate_node -- [--transactions N] [--seed S] [--dir DIR]
//! ```
//!
//! Prints a summary: changes, store size, hook round-trip p50/p99, restore time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/sim.rs"]
mod sim;
#[path = "../tests/support/workload.rs"]
mod workload;

use cln_backup::{restore, Store};
use sim::{Node, NodeDir, Start};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    transactions: usize,
    seed: u64,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args { transactions: 5000, seed: 42, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--transactions" | "-n" => a.transactions = value().parse().expect("--transactions takes a number"),
            "--seed" => a.seed = value().parse().expect("--seed takes a number"),
            "--dir" => a.dir = Some(PathBuf::from(value())),
            "--help" | "-h" => {
                println!("simulate_node [--transactions N] [--seed S] [--dir DIR]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = args();
    let binary = sim::plugin_binary_beside_example();
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let dir = NodeDir::new_in(&parent);
    let store_path = dir.root.path().join("backup.redb");
    Store::create(&store_path).expect("create store");
    sim::write_lock(&dir, &store_path);

    let mut node = Node::start(&dir, &Start::with_plugin(&binary)).unwrap_or_else(|e| panic!("node start: {e}"));
    let mut load = workload::Workload::on_existing_schema(args.seed, node.data_version());
    let started = Instant::now();
    for _ in 0..args.transactions {
        let txn = load.next_txn();
        node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
    }
    let ran = started.elapsed();
    let rss = node.plugin_rss_kib();
    let mut hooks = node.hook_times.clone();
    let node_version = node.data_version();
    node.stop();
    hooks.sort();

    let store = Store::open(&store_path).expect("open store");
    let status = store.status().expect("status");
    let out = tempfile::tempdir_in(&parent).expect("restore dir");
    let dest = out.path().join("lightningd.sqlite3");
    let t = Instant::now();
    let report = restore::restore_store(&store, &dest, &restore::Options::default()).expect("restore");
    let restore_time = t.elapsed();
    assert_eq!(report.version, node_version, "restored version");
    if let Some(diff) = workload::difference(&dest, &dir.db()) {
        eprintln!("MISMATCH: {diff}");
        std::process::exit(1);
    }
    let (objects, rows) = workload::size(&dir.db()).expect("count the node's rows");
    println!("simulated node: {} transactions in {:.2?} (plugin RSS {} KiB)", args.transactions, ran, rss.unwrap_or(0));
    println!(
        "store: version {}, {} change records, store file {} bytes",
        status.version, status.changes, status.file_bytes
    );
    println!(
        "db_write round trip: p50 {:.3?}, p99 {:.3?} over {} hooks",
        percentile(&hooks, 0.50),
        percentile(&hooks, 0.99),
        hooks.len()
    );
    println!("restore: {} changes replayed in {:.2?} (into a temporary file)", report.changes, restore_time);
    println!("check: restored database equals the node's ({objects} tables and indexes, {rows} rows)");
}
