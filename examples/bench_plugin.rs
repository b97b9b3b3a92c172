//! Benchmark of the plugin's write path, measured side by side in one run on
//! the same disk, interleaved transaction by transaction:
//!
//! - `db_write` round trip through the real binary over pipes (what lightningd waits for);
//! - the store's bare `add_change` of the same transaction;
//! - a bare append + `fdatasync` of the same statement bytes (the floor).
//!
//! Then the plugin's resident memory after all changes.
//!
//! ```sh
//! cargo run --release --example bench_plugin -- [--transactions N] [--dir DIR] [--quick]
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/sim.rs"]
mod sim;
#[path = "../tests/support/workload.rs"]
mod workload;

use cln_backup::Store;
use sim::{Node, NodeDir, Start};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let mut transactions = 100_000usize;
    let mut parent = std::env::current_dir().expect("cwd");
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--transactions" | "-n" => transactions = it.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--dir" => parent = PathBuf::from(it.next().expect("a directory")),
            "--quick" => transactions = 3_000,
            other => panic!("unknown argument {other}"),
        }
    }
    let binary = sim::plugin_binary_beside_example();
    let work = tempfile::Builder::new().prefix("bench-plugin-").tempdir_in(&parent).expect("work dir");
    let dir = NodeDir::new_in(work.path());
    let store_path = work.path().join("plugin.redb");
    Store::create(&store_path).unwrap();
    sim::write_lock(&dir, &store_path);
    let bare = Store::create(work.path().join("bare.redb")).unwrap();
    let mut floor = std::fs::OpenOptions::new().create(true).append(true).open(work.path().join("floor.log")).unwrap();

    let mut start = Start::with_plugin(&binary);
    start.durable_node = true;
    let mut node = Node::start(&dir, &start).unwrap_or_else(|e| panic!("start: {e}"));
    // The bare store follows the node's versions: give it the same start-up history.
    for v in 1..=node.data_version() {
        bare.add_change(v, &[sim::bump(v)]).unwrap();
    }
    let mut load = workload::Workload::on_existing_schema(7, node.data_version());
    let (mut hook, mut add, mut sync) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0u64;
    let started = Instant::now();
    for i in 0..transactions {
        let txn = load.next_txn();
        let payload = txn.1.join("\0");
        bytes += payload.len() as u64;

        let before = node.hook_times.len();
        node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
        if node.hook_times.len() > before {
            hook.push(*node.hook_times.last().unwrap());
        }

        let t = Instant::now();
        bare.add_change(txn.0, &txn.1).unwrap();
        add.push(t.elapsed());

        let t = Instant::now();
        floor.write_all(payload.as_bytes()).unwrap();
        floor.sync_data().unwrap();
        sync.push(t.elapsed());

        if (i + 1) % 10_000 == 0 {
            eprintln!("{} transactions, {:.0?}", i + 1, started.elapsed());
        }
    }
    let rss = node.plugin_rss_kib().unwrap_or(0);
    node.stop();
    for v in [&mut hook, &mut add, &mut sync] {
        v.sort();
    }
    let (f50, f99) = (pct(&sync, 0.5), pct(&sync, 0.99));
    println!(
        "bench_plugin: {transactions} transactions, {:.0} bytes of statements on average",
        bytes as f64 / transactions as f64
    );
    println!("{:<34} {:>10} {:>10} {:>12} {:>12}", "", "p50 (us)", "p99 (us)", "p50/floor", "p99/floor");
    for (name, v) in
        [("append + fdatasync (floor)", &sync), ("store add_change", &add), ("db_write round trip (plugin)", &hook)]
    {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "{name:<34} {:>10.1} {:>10.1} {:>12.2} {:>12.2}",
            us(p50),
            us(p99),
            us(p50) / us(f50),
            us(p99) / us(f99)
        );
    }
    println!("plugin resident memory after {transactions} changes: {:.1} MiB", rss as f64 / 1024.0);
}
