//! Benchmark of compaction as the node sees it, every figure of a section
//! measured side by side in one run on the same directory:
//!
//! 1. `stall-20k`: two simulated nodes driving the real plugin binary, both
//!    starting from the same history of 20 000 changes, fed the same
//!    transactions one by one, interleaved; node A is sent `backup-compact`
//!    again as soon as each answers, node B never. `db_write` round trips of
//!    A while a compaction runs, beside B's over the same period (worst, p99,
//!    p50, p99(A)/p99(B)), and the compactions' durations.
//! 2. `stall-big`: the same on a store whose snapshot is a `--big-mb` node
//!    database (lightningd-like tables, wide rows, part random, part
//!    repetitive), made with `cln-backup init`, during one or two compactions.
//! 3. `compact-vs-replay`: the library's `compact` on the 20k history beside
//!    a bare rusqlite replay of the same changes into an empty file (one SQLite
//!    transaction per 1 000 changes, `synchronous=OFF`): the least work any
//!    compaction does. Median of 3 each, and the ratio.
//! 4. `restore-growth`: a store grown to 10 000, 100 000 and 1 000 000
//!    changes with the default policy and retention (compacting whenever
//!    `Policy::next` says one is due, as the plugin does), and the time of a
//!    restore of the head at each size (median of 3), the file's length and
//!    the changes since the newest snapshot. Stops at what fits in 30 minutes.
//! 5. `rss-big`: peak resident memory of `cln-backup compact` and
//!    `cln-backup restore` (the binary of this build) on the big store, read
//!    with `/usr/bin/time -f %M`.
//!
//! Each run also prints the machine's `nproc`, the file system of `--dir`
//! and the git commit.
//!
//! ```sh
//! cargo run --release --example bench_compact -- [--dir DIR] [--quick] [--section NAME] [--big-mb N] [--keep]
//! # one section at a time:
//! cargo run --release --example bench_compact -- --dir DIR --keep --section stall-20k
//! cargo run --release --example bench_compact -- --dir DIR --keep --section stall-big [--big-mb 1024]
//! cargo run --release --example bench_compact -- --dir DIR --keep --section compact-vs-replay
//! cargo run --release --example bench_compact -- --dir DIR --keep --section restore-growth
//! cargo run --release --example bench_compact -- --dir DIR --keep --section rss-big [--big-mb 1024]
//! ```
//!
//! - `--dir DIR`: where every file goes (the working directory by default).
//! - `--quick`: small sizes, a smoke test of every section (under 2 minutes):
//!   a 2 000-change history, a 16 MiB big database unless `--big-mb` is
//!   given, growth to 1 000 / 5 000 / 20 000 changes with a policy of 2 000
//!   changes so that compactions happen.
//! - `--section NAME`: run one section (the names above).
//! - `--big-mb N`: size of the big node database in MiB (1024 by default).
//! - `--io-rate MIB`: the plugins' `backup-compact-io-rate` (its default, 64, if unset; 0: no limit).
//! - `--keep`: keep the inputs built (the history, the big database and its
//!   store, the grown stores) in `DIR/bench-compact-cache`, named by their
//!   parameters, and reuse them when present.
//!
//! Decision: the 20k history is built without the plugin's per-change sync:
//! the plugin receives lightningd's start-up writes on a new store, then the
//! workload is applied to the node's database with rusqlite and loaded into
//! the store with `Store::bulk_load`, which leaves node and store at the same
//! version with the same content, in seconds instead of minutes.
//!
//! Decision: a write counts as "during a compaction" when the compaction's
//! call was sent before it and its answer had not arrived when the write was
//! sent; B's write of the same transaction is its pair.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/sim.rs"]
mod sim;
#[path = "../tests/support/workload.rs"]
mod workload;

use cln_backup::compact::{self, Policy, Retention};
use cln_backup::restore;
use cln_backup::Store;
use rusqlite::{params, Connection};
use serde_json::{json, Value};
use sim::{Node, NodeDir, Start};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Seed of every workload here.
const SEED: u64 = 11;

struct Cfg {
    dir: PathBuf,
    quick: bool,
    big_mb: u64,
    /// `backup-compact-io-rate` for both nodes (the plugin's default if unset).
    io_rate: Option<u64>,
    keep: bool,
    bin: PathBuf,
    /// Where built inputs go: kept under `dir` with `--keep`, else in the run's
    /// own temporary directory.
    cache: PathBuf,
    work: PathBuf,
}

impl Cfg {
    fn history_len(&self) -> usize {
        if self.quick {
            2_000
        } else {
            20_000
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn command_line(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "(unknown)".into())
}

/// A prepared node database with its store, in a directory: `lightningd.sqlite3`,
/// `store.redb`, and `meta` (the `data_version` the workload started at and
/// the transactions applied).
struct Input {
    dir: PathBuf,
    start_version: u32,
    txns: usize,
}

impl Input {
    fn db(&self) -> PathBuf {
        self.dir.join("lightningd.sqlite3")
    }
    fn store(&self) -> PathBuf {
        self.dir.join("store.redb")
    }
    fn load(dir: &Path) -> Option<Input> {
        let meta = std::fs::read_to_string(dir.join("meta")).ok()?;
        let mut it = meta.split_whitespace();
        let start_version = it.next()?.parse().ok()?;
        let txns = it.next()?.parse().ok()?;
        Some(Input { dir: dir.to_path_buf(), start_version, txns })
    }
    fn save(dir: &Path, start_version: u32, txns: usize) -> Input {
        std::fs::write(dir.join("meta"), format!("{start_version} {txns}\n")).unwrap();
        Input { dir: dir.to_path_buf(), start_version, txns }
    }
    /// The workload generator as it stands after this input's transactions.
    fn workload(&self) -> workload::Workload {
        let mut w = workload::Workload::on_existing_schema(SEED, self.start_version);
        for _ in 0..self.txns {
            w.next_txn();
        }
        w
    }
}

/// The history of `n` changes: cached, or built (see the module's decisions).
fn history(cfg: &Cfg, n: usize) -> Input {
    let dir = cfg.cache.join(format!("history-{n}-seed{SEED}"));
    if let Some(input) = Input::load(&dir) {
        eprintln!("reusing {}", dir.display());
        return input;
    }
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let node_dir = NodeDir::new_in(&cfg.work);
    let store_path = dir.join("store.redb");
    Store::create(&store_path).unwrap();
    sim::write_lock(&node_dir, &store_path);
    let node = Node::start(&node_dir, &Start::with_plugin(&cfg.bin)).unwrap_or_else(|e| panic!("start: {e}"));
    let start_version = node.data_version();
    node.stop();
    let store = Store::open(&store_path).unwrap();
    let conn = workload::open_like_lightningd(&node_dir.db()).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF;").unwrap();
    let mut w = workload::Workload::on_existing_schema(SEED, start_version);
    let mut bulk = store.bulk_load().unwrap();
    for _ in 0..n {
        let txn = w.next_txn();
        workload::apply(&conn, std::slice::from_ref(&txn)).unwrap();
        bulk.add_change(txn.0, &txn.1).unwrap();
    }
    bulk.finish().unwrap();
    drop(store);
    conn.close().map_err(|(_, e)| e).unwrap();
    copy(&node_dir.db(), &dir.join("lightningd.sqlite3"));
    eprintln!("built the {n}-change history in {:.1?}", started.elapsed());
    Input::save(&dir, start_version, n)
}

/// Random bytes of the workload's generator.
fn random(rng: &mut workload::Rng, n: usize) -> Vec<u8> {
    rng.bytes(n)
}

/// A node database of about `mb` MiB with lightningd's schema (the
/// simulator's migrations) and wide rows in tables the workload does not
/// write: `transactions` (a txid, a raw transaction: 240 random bytes and 260
/// repetitive ones) and `utxoset` (txids and script keys, random), and its
/// store made by `cln-backup init`. Cached by size.
fn big(cfg: &Cfg) -> Input {
    let dir = cfg.cache.join(format!("big-{}mb-seed{SEED}", cfg.big_mb));
    if let Some(input) = Input::load(&dir) {
        eprintln!("reusing {}", dir.display());
        return input;
    }
    let started = Instant::now();
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let node_dir = NodeDir::new_in(&cfg.work);
    // The schema as lightningd makes it at a first start.
    Node::start(&node_dir, &Start::without_plugin()).unwrap_or_else(|e| panic!("start: {e}")).stop();
    let db_path = node_dir.db();
    let conn = Connection::open(&db_path).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF;").unwrap();
    let mut rng = workload::Rng::new(SEED);
    let target = cfg.big_mb << 20;
    let repetitive: Vec<u8> = (0..260u32).map(|i| (i % 7) as u8 * 0x11).collect();
    let mut row = 0u64;
    while file_len(&db_path) < target {
        conn.execute_batch("BEGIN").unwrap();
        {
            let mut tx = conn
                .prepare_cached(
                    "INSERT INTO transactions (id, blockheight, txindex, rawtx, type, channel_id) \
                     VALUES (?1, NULL, ?2, ?3, ?4, NULL)",
                )
                .unwrap();
            let mut utxo = conn
                .prepare_cached(
                    "INSERT INTO utxoset (txid, outnum, blockheight, spendheight, txindex, scriptpubkey, satoshis) \
                     VALUES (?1, ?2, NULL, NULL, ?3, ?4, ?5)",
                )
                .unwrap();
            for _ in 0..20_000 {
                row += 1;
                let txid = random(&mut rng, 32);
                let mut raw = random(&mut rng, 240);
                raw.extend_from_slice(&repetitive);
                tx.execute(params![txid, row as i64, raw, (row % 5) as i64]).unwrap();
                for out in 0..2i64 {
                    let mut script = vec![0x00, 0x14];
                    script.extend(random(&mut rng, 20));
                    utxo.execute(params![txid, out, row as i64, script, (rng.below(1 << 40)) as i64]).unwrap();
                }
            }
        }
        conn.execute_batch("UPDATE vars SET intval = intval + 1 WHERE name = 'data_version'; COMMIT;").unwrap();
    }
    let version: i64 = conn.query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0)).unwrap();
    conn.close().map_err(|(_, e)| e).unwrap();
    eprintln!(
        "built a {:.0} MiB node database ({row} transactions) in {:.1?}",
        mib(file_len(&db_path)),
        started.elapsed()
    );
    let store_path = dir.join("store.redb");
    let t = Instant::now();
    let out = Command::new(&cfg.bin)
        .arg("init")
        .arg("--lightning-dir")
        .arg(node_dir.network())
        .arg(&store_path)
        .env_remove("LIGHTNINGD_PLUGIN")
        .output()
        .unwrap();
    assert!(out.status.success(), "cln-backup init: {}", String::from_utf8_lossy(&out.stderr));
    eprintln!("cln-backup init: {:.1?}, store {:.0} MiB", t.elapsed(), mib(file_len(&store_path)));
    copy(&db_path, &dir.join("lightningd.sqlite3"));
    Input::save(&dir, version as u32, 0)
}

/// Start two nodes (`A`, `B`) under `cfg.work` from copies of `input`.
fn pair(cfg: &Cfg, input: &Input, tag: &str) -> [(NodeDir, Node, PathBuf); 2] {
    ["A", "B"].map(|name| {
        let dir = NodeDir::new_in(&cfg.work);
        copy(&input.db(), &dir.db());
        let store = cfg.work.join(format!("{tag}-{name}.redb"));
        copy(&input.store(), &store);
        sim::write_lock(&dir, &store);
        let mut start = Start::with_plugin(&cfg.bin);
        start.durable_node = true;
        if let Some(rate) = cfg.io_rate {
            start.options.insert("backup-compact-io-rate".into(), json!(rate));
        }
        let node = Node::start(&dir, &start).unwrap_or_else(|e| panic!("start {name}: {e}"));
        (dir, node, store)
    })
}

/// Send `txn` to `node` and push the round trip it timed.
fn timed(node: &mut Node, txn: &workload::Txn, into: &mut Vec<Duration>) {
    let before = node.hook_times.len();
    node.apply(txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
    if node.hook_times.len() > before {
        into.push(*node.hook_times.last().unwrap());
    }
}

/// Peak resident memory of a process so far, in KiB.
fn hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// One `backup-compact` as the node saw it.
struct Compaction {
    wall: Duration,
    answer: Result<Value, String>,
    writes: usize,
}

fn field(v: &Value, name: &str) -> String {
    v.get(name).map(Value::to_string).unwrap_or_else(|| "-".into())
}

/// The interleaved measurement of `stall-20k` and `stall-big`.
fn stall(cfg: &Cfg, name: &str, input: &Input, min_compactions: usize, min_writes: usize, warmup: usize) {
    println!("\n== {name}: db_write round trips of A while it compacts, beside B (never compacted)");
    if let Ok(s) = Store::open_read_only(input.store()).and_then(|s| s.status()) {
        println!(
            "start: version {}, {} changes, {} since the snapshot, snapshot {}, store {:.1} MiB",
            s.version,
            s.changes,
            s.changes_since_snapshot,
            s.snapshot.as_ref().map(|x| format!("{:.1} MiB image", mib(x.size))).unwrap_or_else(|| "none".into()),
            mib(s.file_bytes)
        );
    }
    let [(_da, mut a, _store_a), (_db, mut b, _store_b)] = pair(cfg, input, name);
    assert_eq!(a.data_version(), b.data_version(), "both nodes start at the same version");
    let mut w = input.workload();
    w.resume_at(a.data_version());
    let a_pid = a.plugin_pid().unwrap_or(0);
    let (mut before_a, mut before_b) = (Vec::new(), Vec::new());
    for i in 0..warmup {
        let txn = w.next_txn();
        if i.is_multiple_of(2) {
            timed(&mut a, &txn, &mut before_a);
            timed(&mut b, &txn, &mut before_b);
        } else {
            timed(&mut b, &txn, &mut before_b);
            timed(&mut a, &txn, &mut before_a);
        }
    }
    let (mut during_a, mut during_b) = (Vec::new(), Vec::new());
    // The slowest writes, with when they came in the compaction they met
    // (seconds since it was asked for): which part of it they waited on.
    let mut slow: Vec<(Duration, &str, usize, f64, f64)> = Vec::new();
    let mut done: Vec<Compaction> = Vec::new();
    let mut pending: Option<(String, Instant, usize)> = None;
    let limit = Duration::from_secs(if cfg.quick { 90 } else { 40 * 60 });
    let started = Instant::now();
    let mut i = 0usize;
    loop {
        if let Some((id, t0, writes_at)) = &pending {
            if let Some(answer) = a.rpc_poll(id) {
                done.push(Compaction {
                    wall: t0.elapsed(),
                    answer: answer.map_err(|e| e.to_string()),
                    writes: during_a.len() - writes_at,
                });
                pending = None;
            }
        }
        if pending.is_none() {
            if done.len() >= min_compactions && during_a.len() >= min_writes {
                break;
            }
            assert!(started.elapsed() < limit, "{name}: not done in {limit:?}");
            let id = a.rpc_start("backup-compact", json!({})).unwrap();
            pending = Some((id, Instant::now(), during_a.len()));
        }
        let txn = w.next_txn();
        let (na, nb) = (during_a.len(), during_b.len());
        if i.is_multiple_of(2) {
            timed(&mut a, &txn, &mut during_a);
            timed(&mut b, &txn, &mut during_b);
        } else {
            timed(&mut b, &txn, &mut during_b);
            timed(&mut a, &txn, &mut during_a);
        }
        if let Some((_, t0, _)) = &pending {
            let at = t0.elapsed().as_secs_f64();
            for (label, v, n) in [("A", &during_a, na), ("B", &during_b, nb)] {
                if let Some(d) = v.get(n) {
                    let epoch =
                        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
                    slow.push((*d, label, done.len() + 1, at, epoch));
                }
            }
            if slow.len() > 64 {
                slow.sort_by_key(|x| std::cmp::Reverse(x.0));
                slow.truncate(16);
            }
        }
        i += 1;
    }
    slow.sort_by_key(|x| std::cmp::Reverse(x.0));
    for (d, label, n, at, epoch) in slow.iter().take(8) {
        println!("slow write: {label} {:.2} ms, {at:.2} s into compaction {n} at {epoch:.3}", ms(*d));
    }
    let hwm = hwm_kib(a_pid);
    let rows: [(&str, &mut Vec<Duration>); 4] = [
        ("A during compaction", &mut during_a),
        ("B same period", &mut during_b),
        ("A before (no compaction)", &mut before_a),
        ("B before", &mut before_b),
    ];
    println!("{:<28} {:>7} {:>10} {:>10} {:>10}", "db_write round trip", "writes", "p50 ms", "p99 ms", "worst ms");
    let mut p99s = Vec::new();
    let mut worst_a = Duration::ZERO;
    for (label, v) in rows {
        v.sort();
        let worst = v.last().copied().unwrap_or_default();
        println!("{label:<28} {:>7} {:>10.3} {:>10.3} {:>10.3}", v.len(), ms(pct(v, 0.5)), ms(pct(v, 0.99)), ms(worst));
        p99s.push(pct(v, 0.99));
        if label.starts_with("A during") {
            worst_a = worst;
        }
    }
    let ratio = ms(p99s[0]) / ms(p99s[1]).max(1e-9);
    println!(
        "p99(A)/p99(B) = {ratio:.2} (target <= 2: {}); worst of A during compaction {:.2} ms (target <= 10: {})",
        if ratio <= 2.0 { "met" } else { "NOT met" },
        ms(worst_a),
        if ms(worst_a) <= 10.0 { "met" } else { "NOT met" }
    );
    // The first compactions one by one (the first folds the history), then
    // all of them summed up.
    println!(
        "{:<4} {:>10} {:>12} {:>10} {:>16} {:>22} {:>12} {:>7}",
        "#", "wall s", "duration_ms", "waited_ms", "changes bef>aft", "bytes before>after", "in use", "writes"
    );
    for (n, c) in done.iter().enumerate().take(5) {
        match &c.answer {
            Ok(v) => println!(
                "{:<4} {:>10.2} {:>12} {:>10} {:>16} {:>22} {:>12} {:>7}",
                n + 1,
                c.wall.as_secs_f64(),
                field(v, "duration_ms"),
                field(v, "waited_ms"),
                format!("{}>{}", field(v, "changes_before"), field(v, "changes_after")),
                format!("{}>{}", field(v, "bytes_before"), field(v, "bytes_after")),
                field(v, "bytes_in_use"),
                c.writes
            ),
            Err(e) => println!("{:<4} {:>10.2} refused: {e} ({} writes)", n + 1, c.wall.as_secs_f64(), c.writes),
        }
    }
    let refused = done.iter().filter(|c| c.answer.is_err()).count();
    let idle = done.iter().filter(|c| matches!(&c.answer, Ok(v) if v["compacted"] == json!(false))).count();
    let mut walls: Vec<Duration> = done.iter().map(|c| c.wall).collect();
    walls.sort();
    let mut reported: Vec<u64> =
        done.iter().filter_map(|c| c.answer.as_ref().ok()?.get("duration_ms")?.as_u64()).collect();
    reported.sort();
    println!(
        "{} compactions ({} with nothing to fold, {} refused), wall s min {:.2} median {:.2} max {:.2}; \
         duration_ms median {} max {}",
        done.len(),
        idle,
        refused,
        walls.first().map(Duration::as_secs_f64).unwrap_or(0.0),
        pct(&walls, 0.5).as_secs_f64(),
        walls.last().map(Duration::as_secs_f64).unwrap_or(0.0),
        reported.get(reported.len() / 2).copied().unwrap_or(0),
        reported.last().copied().unwrap_or(0)
    );
    if let Some(kib) = hwm {
        println!("plugin A peak resident memory (VmHWM): {:.1} MiB", kib as f64 / 1024.0);
    }
    a.stop();
    b.stop();
}

/// Every statement of every change the store holds, change by change.
fn log_statements(store: &Store) -> Vec<Vec<String>> {
    let reader = store.reader().unwrap();
    reader.log().unwrap().map(|c| c.unwrap().transactions.into_iter().flat_map(|t| t.statements).collect()).collect()
}

fn compact_vs_replay(cfg: &Cfg) {
    let input = history(cfg, cfg.history_len());
    println!("\n== compact-vs-replay: the library's compact beside a bare rusqlite replay ({} changes)", input.txns);
    let changes = log_statements(&Store::open_read_only(input.store()).unwrap());
    let statements: usize = changes.iter().map(Vec::len).sum();
    let (mut compacts, mut replays) = (Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..3 {
        let path = cfg.work.join("cvr.redb");
        copy(&input.store(), &path);
        let store = Store::open(&path).unwrap();
        let t = Instant::now();
        let stats = compact::compact(&store, &compact::Options::default()).unwrap();
        compacts.push(t.elapsed());
        assert!(stats.compacted, "nothing compacted");
        last = Some(stats);
        drop(store);
        std::fs::remove_file(&path).unwrap();

        let db = cfg.work.join("replay.sqlite3");
        let _ = std::fs::remove_file(&db);
        let t = Instant::now();
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch("PRAGMA synchronous = OFF;").unwrap();
        for batch in changes.chunks(1000) {
            conn.execute_batch("BEGIN").unwrap();
            for s in batch.iter().flatten() {
                conn.execute_batch(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            }
            conn.execute_batch("COMMIT").unwrap();
        }
        conn.close().map_err(|(_, e)| e).unwrap();
        replays.push(t.elapsed());
        std::fs::remove_file(&db).unwrap();
    }
    let (c, r) = (median(compacts.clone()), median(replays.clone()));
    println!("{:<36} {:>10} {:>24}", "", "median s", "runs s");
    let runs = |v: &[Duration]| v.iter().map(|d| format!("{:.2}", d.as_secs_f64())).collect::<Vec<_>>().join(" ");
    println!("{:<36} {:>10.3} {:>24}", "compact (library)", c.as_secs_f64(), runs(&compacts));
    println!("{:<36} {:>10.3} {:>24}", "replay (rusqlite, 1000 per txn)", r.as_secs_f64(), runs(&replays));
    println!(
        "compact / replay = {:.2}; {} changes, {statements} statements",
        c.as_secs_f64() / r.as_secs_f64(),
        changes.len()
    );
    if let Some(s) = last {
        println!(
            "compaction: changes {} -> {}, store {:.1} -> {:.1} MiB ({:.1} MiB in use)",
            s.changes_before,
            s.changes_after,
            mib(s.bytes_before),
            mib(s.bytes_after),
            mib(s.bytes_in_use)
        );
    }
}

fn restore_growth(cfg: &Cfg) {
    let (sizes, policy, tag): ([u32; 3], Policy, &str) = if cfg.quick {
        (
            [1_000, 5_000, 20_000],
            Policy::new(2_000, Policy::DEFAULT_AFTER_RATIO),
            "quick policy: 2000 changes or ratio 1.0",
        )
    } else {
        ([10_000, 100_000, 1_000_000], Policy::default(), "default policy: 50000 changes or ratio 1.0")
    };
    println!("\n== restore-growth: restore time of the head as the store grows ({tag}, default retention)");
    let budget = Duration::from_secs(30 * 60);
    let section = Instant::now();
    let path = cfg.work.join("growth.redb");
    let _ = std::fs::remove_file(&path);
    let mut store = Store::create(&path).unwrap();
    let mut w = workload::Workload::new(SEED);
    let opts = compact::Options { retention: Retention::default(), io_rate: None, progress: None };
    println!(
        "{:>9} {:>9} {:>11} {:>9} {:>10} {:>11} {:>11} {:>13} {:>12}",
        "changes",
        "grow s",
        "compactions",
        "compact s",
        "file MiB",
        "since snap",
        "snapshots",
        "restore med s",
        "restored MiB"
    );
    for size in sizes {
        let cached = cfg.cache.join(format!("growth-{size}-p{}-seed{SEED}.redb", policy.after_changes));
        let grow = Instant::now();
        let (mut compactions, mut compacting) = (0, Duration::ZERO);
        let mut reused = false;
        if cfg.keep && cached.exists() && store.version() < size {
            drop(store);
            copy(&cached, &path);
            store = Store::open(&path).unwrap();
            while w.version() < store.version() {
                w.next_txn();
            }
            eprintln!("reusing {}", cached.display());
            reused = true;
        }
        let mut over = false;
        while store.version() < size {
            if section.elapsed() > budget {
                over = true;
                break;
            }
            let status = store.status().unwrap();
            let next = policy.next(&status);
            if next.due.is_some() {
                let t = Instant::now();
                compact::compact(&store, &opts).unwrap();
                compacting += t.elapsed();
                compactions += 1;
                continue;
            }
            let left = u64::from(size - store.version());
            let chunk = next.changes_left.unwrap_or(10_000).clamp(1, 10_000).min(left);
            let mut bulk = store.bulk_load().unwrap();
            for _ in 0..chunk {
                let txn = w.next_txn();
                bulk.add_change(txn.0, &txn.1).unwrap();
            }
            bulk.finish().unwrap();
        }
        if over {
            println!(
                "stopped at {} changes: the section's 30 minutes are spent ({:.0} s growing towards {size})",
                store.version(),
                grow.elapsed().as_secs_f64()
            );
            break;
        }
        let grow_time = grow.elapsed();
        if cfg.keep && !cached.exists() {
            copy(&path, &cached);
        }
        let mut times = Vec::new();
        let dest = cfg.work.join("growth-restored.sqlite3");
        for _ in 0..3 {
            let t = Instant::now();
            restore::restore_store(&store, &dest, &restore::Options { force: true, ..Default::default() }).unwrap();
            times.push(t.elapsed());
        }
        let restored = file_len(&dest);
        let _ = std::fs::remove_file(&dest);
        let s = store.status().unwrap();
        println!(
            "{:>9} {:>9} {:>11} {:>9} {:>10.1} {:>11} {:>11} {:>13.3} {:>12.1}",
            s.version,
            // A store reused from the cache was not grown in this run.
            if reused { "cached".to_string() } else { format!("{:.1}", grow_time.as_secs_f64()) },
            if reused { "-".to_string() } else { compactions.to_string() },
            if reused { "-".to_string() } else { format!("{:.1}", compacting.as_secs_f64()) },
            mib(file_len(&path)),
            s.changes_since_snapshot,
            s.snapshots.len(),
            median(times).as_secs_f64(),
            mib(restored)
        );
    }
    drop(store);
    let _ = std::fs::remove_file(&path);
}

/// Run `bin args` under `/usr/bin/time -f %M`: (peak RSS KiB, wall time).
fn peak_rss(bin: &Path, args: &[&Path]) -> (u64, Duration) {
    let t = Instant::now();
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(bin)
        .args(args)
        .env_remove("LIGHTNINGD_PLUGIN")
        .output()
        .unwrap_or_else(|e| panic!("/usr/bin/time: {e}"));
    let wall = t.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{} {:?}: {stderr}", bin.display(), args);
    let kib = stderr.lines().rev().find_map(|l| l.trim().parse().ok()).unwrap_or(0);
    (kib, wall)
}

fn rss_big(cfg: &Cfg) {
    let input = big(cfg);
    let extra = if cfg.quick { 500 } else { 5_000 };
    println!("\n== rss-big: peak resident memory of the binary on the {} MiB store (+{extra} changes)", cfg.big_mb);
    let path = cfg.work.join("rss.redb");
    copy(&input.store(), &path);
    {
        let store = Store::open(&path).unwrap();
        let mut w = workload::Workload::on_existing_schema(SEED, store.version());
        let mut bulk = store.bulk_load().unwrap();
        for _ in 0..extra {
            let txn = w.next_txn();
            bulk.add_change(txn.0, &txn.1).unwrap();
        }
        bulk.finish().unwrap();
    }
    let before = file_len(&path);
    let (compact_kib, compact_wall) = peak_rss(&cfg.bin, &[Path::new("compact"), &path]);
    let after = file_len(&path);
    let dest = cfg.work.join("rss-restored.sqlite3");
    let _ = std::fs::remove_file(&dest);
    let (restore_kib, restore_wall) = peak_rss(&cfg.bin, &[Path::new("restore"), &path, &dest]);
    let restored = file_len(&dest);
    println!("{:<34} {:>10} {:>8} {:>8}", "", "peak MiB", "wall s", "target");
    for (label, kib, wall) in [
        ("cln-backup compact STORE", compact_kib, compact_wall),
        ("cln-backup restore STORE DEST", restore_kib, restore_wall),
    ] {
        let m = kib as f64 / 1024.0;
        println!("{label:<34} {m:>10.1} {:>8.1} {:>8}", wall.as_secs_f64(), if m <= 256.0 { "met" } else { "NOT met" });
    }
    println!(
        "store {:.1} -> {:.1} MiB by the compaction; restored database {:.1} MiB",
        mib(before),
        mib(after),
        mib(restored)
    );
    let _ = std::fs::remove_file(&dest);
    let _ = std::fs::remove_file(&path);
}

const SECTIONS: [&str; 5] = ["stall-20k", "stall-big", "compact-vs-replay", "restore-growth", "rss-big"];

fn main() {
    let mut dir = std::env::current_dir().expect("cwd");
    let (mut quick, mut keep) = (false, false);
    let mut section: Option<String> = None;
    let mut big_mb: Option<u64> = None;
    let mut io_rate: Option<u64> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(it.next().expect("a directory")),
            "--quick" => quick = true,
            "--keep" => keep = true,
            "--section" => section = Some(it.next().expect("a section name")),
            "--big-mb" => big_mb = Some(it.next().and_then(|v| v.parse().ok()).expect("a size in MiB")),
            "--io-rate" => io_rate = Some(it.next().and_then(|v| v.parse().ok()).expect("MiB a second")),
            other => panic!("unknown argument {other}"),
        }
    }
    if let Some(s) = &section {
        assert!(SECTIONS.contains(&s.as_str()), "unknown section {s}: one of {}", SECTIONS.join(", "));
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let dir = std::fs::canonicalize(&dir).unwrap();
    let bin = sim::plugin_binary_beside_example();
    let work = tempfile::Builder::new().prefix("bench-compact-").tempdir_in(&dir).expect("work dir");
    let cache = if keep { dir.join("bench-compact-cache") } else { work.path().join("cache") };
    std::fs::create_dir_all(&cache).unwrap();
    let cfg = Cfg {
        dir: dir.clone(),
        quick,
        big_mb: big_mb.unwrap_or(if quick { 16 } else { 1024 }),
        io_rate,
        keep,
        bin,
        cache,
        work: work.path().to_path_buf(),
    };
    let repo = env!("CARGO_MANIFEST_DIR");
    let commit = command_line("git", &["-C", repo, "rev-parse", "--short=12", "HEAD"]);
    // `command_line` answers "(unknown)" for an empty output: a clean tree.
    let changed = command_line("git", &["-C", repo, "status", "--porcelain", "--untracked-files=no"]);
    let dirty = changed != "(unknown)";
    println!(
        "bench_compact: commit {commit}{}, nproc {}, --dir {} on {}, binary {}{}{}",
        if dirty { " (with uncommitted changes)" } else { "" },
        command_line("nproc", &[]),
        cfg.dir.display(),
        command_line("stat", &["-f", "-c", "%T", &cfg.dir.to_string_lossy()]),
        cfg.bin.display(),
        if quick { ", --quick" } else { "" },
        cfg.io_rate.map(|r| format!(", --io-rate {r}")).unwrap_or_default()
    );
    let run = |name: &str| section.as_deref().is_none_or(|s| s == name);
    let total = Instant::now();
    if run("stall-20k") {
        let t = Instant::now();
        let input = history(&cfg, cfg.history_len());
        let (compactions, writes, warmup) = if quick { (3, 300, 200) } else { (3, 3000, 1000) };
        stall(&cfg, "stall-20k", &input, compactions, writes, warmup);
        eprintln!("stall-20k: {:.0?}", t.elapsed());
    }
    if run("stall-big") {
        let t = Instant::now();
        let input = big(&cfg);
        let (compactions, warmup) = if quick { (1, 200) } else { (2, 1000) };
        stall(&cfg, &format!("stall-big ({} MiB)", cfg.big_mb), &input, compactions, 0, warmup);
        eprintln!("stall-big: {:.0?}", t.elapsed());
    }
    if run("compact-vs-replay") {
        let t = Instant::now();
        compact_vs_replay(&cfg);
        eprintln!("compact-vs-replay: {:.0?}", t.elapsed());
    }
    if run("restore-growth") {
        let t = Instant::now();
        restore_growth(&cfg);
        eprintln!("restore-growth: {:.0?}", t.elapsed());
    }
    if run("rss-big") {
        let t = Instant::now();
        rss_big(&cfg);
        eprintln!("rss-big: {:.0?}", t.elapsed());
    }
    eprintln!("total {:.0?}", total.elapsed());
}
