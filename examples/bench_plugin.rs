//! Benchmark of the plugin's write path, measured side by side in one run on
//! the same directory, interleaved transaction by transaction:
//!
//! - `db_write` round trip through the real plugin binary over pipes (what
//!   lightningd waits for);
//! - the same round trip through the null plugin (`examples/null_plugin.rs`:
//!   the same protocol, framing and parse, answering `continue` without
//!   storing), driven by a second simulated node: the harness's own cost;
//! - the store's bare `add_change` of the same transaction;
//! - a bare append + `fdatasync` of the same statement bytes (the floor).
//!
//! It prints p50 and p99 of each, the plugin's own cost (`plugin - null`,
//! in µs and as a ratio of the floor's p50), and the plugin's resident
//! memory after all changes.
//!
//! ```sh
//! cargo run --release --example bench_plugin -- [-n N] [--dir DIR] [--quick] [--plugin PATH] [--pause]
//! ```
//!
//! - `--dir DIR`: where every file goes (`--dir /dev/shm` measures on tmpfs,
//!   without the disk); the working directory by default.
//! - `--plugin PATH` (or `CLN_BACKUP_PLUGIN=PATH`): the plugin binary to
//!   measure instead of this tree's, so an older build runs under the same
//!   harness.
//! - `--quick`: 3 000 transactions instead of 100 000.
//!
//! Pages written per commit: the plugin's pid is printed at the start. Run
//! with `--pause`, which waits for Enter before the measured loop, and in
//! another terminal attach
//!
//! ```sh
//! strace -f -c -e trace=pwrite64,fdatasync -p <plugin pid>
//! ```
//!
//! then press Enter; when the run ends, stop strace (Ctrl-C) and divide the
//! `pwrite64` calls by the `fdatasync` calls (one per commit).
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

/// Start a simulated node in a new directory under `parent`, its
/// `backup.lock` naming a new store, with `plugin`.
fn node_with(parent: &std::path::Path, plugin: &std::path::Path, name: &str) -> (NodeDir, Node) {
    let dir = NodeDir::new_in(parent);
    let store_path = parent.join(format!("{name}.redb"));
    Store::create(&store_path).unwrap();
    sim::write_lock(&dir, &store_path);
    let mut start = Start::with_plugin(plugin);
    start.durable_node = true;
    let node = Node::start(&dir, &start).unwrap_or_else(|e| panic!("start {name}: {e}"));
    (dir, node)
}

/// The last round trip `node` timed, if `apply` sent one.
fn timed(node: &mut Node, txn: &(u32, Vec<String>), into: &mut Vec<Duration>) {
    let before = node.hook_times.len();
    node.apply(txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
    if node.hook_times.len() > before {
        into.push(*node.hook_times.last().unwrap());
    }
}

fn main() {
    let mut transactions = 100_000usize;
    let mut parent = std::env::current_dir().expect("cwd");
    let mut plugin = std::env::var_os("CLN_BACKUP_PLUGIN").map(PathBuf::from);
    let mut pause = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--transactions" | "-n" => transactions = it.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--dir" => parent = PathBuf::from(it.next().expect("a directory")),
            "--plugin" => plugin = Some(PathBuf::from(it.next().expect("a plugin binary"))),
            "--quick" => transactions = 3_000,
            "--pause" => pause = true,
            other => panic!("unknown argument {other}"),
        }
    }
    // Absolute: the plugin is started in the node's directory.
    let binary = match plugin {
        Some(path) => std::fs::canonicalize(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        None => sim::plugin_binary_beside_example(),
    };
    let null = sim::example_binary_beside_example("null_plugin");
    let work = tempfile::Builder::new().prefix("bench-plugin-").tempdir_in(&parent).expect("work dir");
    let bare = Store::create(work.path().join("bare.redb")).unwrap();
    let mut floor = std::fs::OpenOptions::new().create(true).append(true).open(work.path().join("floor.log")).unwrap();

    let (_real_dir, mut node) = node_with(work.path(), &binary, "plugin");
    let (_null_dir, mut null_node) = node_with(work.path(), &null, "null");
    assert_eq!(node.data_version(), null_node.data_version(), "both nodes start at the same version");
    println!(
        "plugin {} pid {}; null plugin pid {}; files in {}",
        binary.display(),
        node.plugin_pid().unwrap_or(0),
        null_node.plugin_pid().unwrap_or(0),
        work.path().display()
    );
    if pause {
        println!("attach now (strace -f -c -e trace=pwrite64,fdatasync -p <plugin pid>), then press Enter");
        std::io::stdout().flush().unwrap();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
    }
    // The bare store follows the node's versions: give it the same start-up history.
    for v in 1..=node.data_version() {
        bare.add_change(v, &[sim::bump(v)]).unwrap();
    }
    let mut load = workload::Workload::on_existing_schema(7, node.data_version());
    let (mut hook, mut nulls, mut add, mut sync) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0u64;
    let started = Instant::now();
    for i in 0..transactions {
        let txn = load.next_txn();
        let payload = txn.1.join("\0");
        bytes += payload.len() as u64;

        timed(&mut node, &txn, &mut hook);
        timed(&mut null_node, &txn, &mut nulls);

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
    null_node.stop();
    for v in [&mut hook, &mut nulls, &mut add, &mut sync] {
        v.sort();
    }
    let (f50, f99) = (pct(&sync, 0.5), pct(&sync, 0.99));
    println!(
        "bench_plugin: {transactions} transactions, {:.0} bytes of statements on average, in {}",
        bytes as f64 / transactions as f64,
        parent.display()
    );
    println!("{:<34} {:>10} {:>10} {:>12} {:>12}", "", "p50 (us)", "p99 (us)", "p50/floor", "p99/floor");
    for (name, v) in [
        ("append + fdatasync (floor)", &sync),
        ("store add_change", &add),
        ("db_write round trip (null plugin)", &nulls),
        ("db_write round trip (plugin)", &hook),
    ] {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "{name:<34} {:>10.1} {:>10.1} {:>12.2} {:>12.2}",
            us(p50),
            us(p99),
            us(p50) / us(f50),
            us(p99) / us(f99)
        );
    }
    let own = us(pct(&hook, 0.5)) - us(pct(&nulls, 0.5));
    println!("plugin's own cost at p50 (plugin - null): {own:.1} us, {:.2} x the floor's p50", own / us(f50));
    println!("plugin resident memory after {transactions} changes: {:.1} MiB", rss as f64 / 1024.0);
}
