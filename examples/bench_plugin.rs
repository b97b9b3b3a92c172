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
//! cargo run --release --example bench_plugin -- [-n N] [--dir DIR] [--quick] [--plugin PATH] [--pause] [--dest KIND]...
//! ```
//!
//! - `--dest KIND` (repeatable): also measure a node whose `backup.lock`
//!   lists a local store and a second destination of KIND, interleaved with
//!   the others, so each row is beside the local store alone in the same
//!   run. KIND is `local` (the local store alone: the plugin row, nothing
//!   added), `local-sync` and `local-async` (a second local store), `socket`
//!   (a `cln-backup server` started on loopback, on a store beside the
//!   others; sync), `s3-sync` and `s3-async` (object storage: a Garage
//!   started on loopback as the tests start it, or the URL in
//!   `CLN_BACKUP_BENCH_S3_URL`, for example `s3://bench/node`, with
//!   endpoint and credentials from the `AWS_*` environment variables; a
//!   key file made for the run).
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

#[path = "../tests/support/garage.rs"]
mod garage;
#[path = "../tests/support/sim.rs"]
mod sim;
#[path = "../tests/support/workload.rs"]
mod workload;

use cln_backup::lockfile::{self, Entry, Mode};
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

/// A node whose lock lists a local store and the destination `kind`, with
/// what must live as long as it (a server process).
struct Extra {
    kind: String,
    _dir: NodeDir,
    node: Option<Node>,
    server: Option<std::process::Child>,
    times: Vec<Duration>,
}

impl Drop for Extra {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

/// A free loopback port: bound, read, released.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start a node under `parent` whose lock lists a new local store and a
/// destination of `kind` (see the module's documentation).
fn extra_node(parent: &std::path::Path, plugin: &std::path::Path, kind: &str) -> Extra {
    let dir = NodeDir::new_in(parent);
    let primary = parent.join(format!("{kind}-primary.redb"));
    Store::create(&primary).unwrap();
    let mut entries = vec![Entry::local(&primary).unwrap()];
    let mut server = None;
    let second = |mode: Mode| {
        let path = parent.join(format!("{kind}-second.redb"));
        Store::create(&path).unwrap();
        let mut e = Entry::local(&path).unwrap();
        e.mode = mode;
        e
    };
    match kind {
        "local-sync" => entries.push(second(Mode::Sync)),
        "local-async" => entries.push(second(Mode::Async)),
        "socket" => {
            let store = parent.join("socket-server.redb");
            Store::create(&store).unwrap();
            let port = free_port();
            let child = std::process::Command::new(plugin)
                .args(["server", "--listen", &format!("127.0.0.1:{port}")])
                .arg(&store)
                .env_remove("LIGHTNINGD_PLUGIN")
                .spawn()
                .unwrap_or_else(|e| panic!("starting {} server: {e}", plugin.display()));
            server = Some(child);
            // The server is up once it accepts a connection.
            let deadline = Instant::now() + Duration::from_secs(30);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(Instant::now() < deadline, "the socket server did not start on port {port}");
                std::thread::sleep(Duration::from_millis(20));
            }
            entries.push(Entry::new(format!("socket:127.0.0.1:{port}")));
        }
        "s3-sync" | "s3-async" => {
            // The URL given, or a Garage started on loopback as the tests
            // start it.
            let (url, credentials) = match std::env::var("CLN_BACKUP_BENCH_S3_URL") {
                Ok(url) => (url, None),
                Err(_) => {
                    let g = garage::garage().unwrap_or_else(|| {
                        panic!("--dest {kind} needs Garage, or CLN_BACKUP_BENCH_S3_URL (s3://bucket/prefix) and AWS_*")
                    });
                    (g.url("bench"), Some(g.credentials_file(parent)))
                }
            };
            let key = parent.join(format!("{kind}.key"));
            // A throwaway key for the run: unique, not secret.
            let seed = format!("{} {:?} {kind}", std::process::id(), std::time::SystemTime::now());
            std::fs::write(&key, format!("{}\n", blake3::hash(seed.as_bytes()).to_hex())).unwrap();
            let mut e = Entry::new(format!("{url}/{kind}-{}", std::process::id()));
            e.key = Some(cln_backup::encryption::KeySource::KeyFile(key));
            e.credentials_file = credentials;
            e.mode = if kind == "s3-sync" { Mode::Sync } else { Mode::Async };
            entries.push(e);
        }
        other => panic!("unknown --dest {other}: local, local-sync, local-async, socket, s3-sync, s3-async"),
    }
    std::fs::write(dir.network().join(lockfile::LOCK_FILE_NAME), lockfile::lock_text(&entries).unwrap()).unwrap();
    let mut start = Start::with_plugin(plugin);
    start.durable_node = true;
    let node = Node::start(&dir, &start).unwrap_or_else(|e| panic!("start {kind}: {e}"));
    Extra { kind: kind.to_string(), _dir: dir, node: Some(node), server, times: Vec::new() }
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
    let mut kinds: Vec<String> = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--transactions" | "-n" => transactions = it.next().and_then(|v| v.parse().ok()).expect("a number"),
            "--dir" => parent = PathBuf::from(it.next().expect("a directory")),
            "--plugin" => plugin = Some(PathBuf::from(it.next().expect("a plugin binary"))),
            "--quick" => transactions = 3_000,
            "--pause" => pause = true,
            "--dest" => kinds.push(it.next().expect("a destination kind")),
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
    // `local` is the plugin row itself.
    let mut extras: Vec<Extra> =
        kinds.iter().filter(|k| k.as_str() != "local").map(|k| extra_node(work.path(), &binary, k)).collect();
    for extra in &extras {
        let version = extra.node.as_ref().map(Node::data_version);
        assert_eq!(version, Some(node.data_version()), "{} starts at the same version", extra.kind);
    }
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
        for extra in &mut extras {
            if let Some(n) = extra.node.as_mut() {
                timed(n, &txn, &mut extra.times);
            }
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
    null_node.stop();
    for v in [&mut hook, &mut nulls, &mut add, &mut sync] {
        v.sort();
    }
    let mut extra_rows = Vec::new();
    for mut extra in extras {
        extra.times.sort();
        let times = std::mem::take(&mut extra.times);
        let name = format!("db_write (plugin, local+{})", extra.kind);
        extra_rows.push((name, times));
        // Stopping waits for an async destination to be brought up to date.
        if let Some(n) = extra.node.take() {
            n.stop();
        }
    }
    let (f50, f99) = (pct(&sync, 0.5), pct(&sync, 0.99));
    println!(
        "bench_plugin: {transactions} transactions, {:.0} bytes of statements on average, in {}",
        bytes as f64 / transactions as f64,
        parent.display()
    );
    println!("{:<38} {:>10} {:>10} {:>12} {:>12}", "", "p50 (us)", "p99 (us)", "p50/floor", "p99/floor");
    let rows = [
        ("append + fdatasync (floor)".to_string(), &sync),
        ("store add_change".to_string(), &add),
        ("db_write round trip (null plugin)".to_string(), &nulls),
        ("db_write round trip (plugin)".to_string(), &hook),
    ];
    for (name, v) in rows.iter().map(|(n, v)| (n, *v)).chain(extra_rows.iter().map(|(n, v)| (n, v))) {
        let (p50, p99) = (pct(v, 0.5), pct(v, 0.99));
        println!(
            "{name:<38} {:>10.1} {:>10.1} {:>12.2} {:>12.2}",
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
