//! Store benchmark: the write path, restore and size against their floors,
//! measured side by side in one run on the same disk.
//!
//! - `add_change` of a ~1.5 KB change (mostly a random onion blob as hex)
//!   against a bare append + `fdatasync` of the same bytes, interleaved;
//! - restore of a realistic workload against executing the same statements
//!   directly with rusqlite in one transaction into a fresh file;
//! - bytes on disk per change against the raw statement bytes.
//!
//! It also counts the write system calls (`pwrite64`) one `add_change`
//! makes, from `syscw` in `/proc/self/io`: redb writes each dirty page of a
//! commit with one call, plus one for the file header. The same count, with
//! the file offsets, comes from
//! `strace -f -e trace=pwrite64,fdatasync ./target/release/examples/bench_store --quick`.
//!
//! Run: `cargo run --release --example bench_store [-- --quick] [--dir DIR]`.
//! The default directory is a temporary one under the current directory, so
//! that it is on the same (real) disk as the project, not a tmpfs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/workload.rs"]
mod workload;

use cln_backup::{restore, Store};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workload::{Rng, Txn, Workload};

struct Args {
    quick: bool,
    dir: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args { quick: false, dir: None };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--dir" => a.dir = it.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: bench_store [--quick] [--dir DIR]");
                std::process::exit(0);
            }
            other => {
                eprintln!("unknown argument {other:?}; try --help");
                std::process::exit(2);
            }
        }
    }
    a
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// One ~1.5 KB change as lightningd reports an HTLC add with a short onion
/// payload: statement text around a random blob, then the bump.
fn small_change(rng: &mut Rng, version: u32, row: u64) -> Vec<String> {
    vec![
        format!(
            "INSERT INTO channel_htlcs ( id, channel_id, channel_htlc_id, direction, msatoshi, cltv_expiry, payment_hash, hstate, shared_secret, routing_onion, received_time, partid, we_filled) VALUES ({row}, 3, {row}, 0, {}, {}, {}, 1, NULL, {}, {}, NULL, 0);",
            rng.range(1000, 500_000_000),
            rng.range(700_000, 800_000),
            rng.blob(32),
            rng.blob(590),
            1_700_000_000_000_000_000u64 + rng.below(1_000_000_000_000),
        ),
        workload::bump(version),
    ]
}

/// Write system calls this process has made so far (`None` where
/// `/proc/self/io` is not readable).
fn write_calls() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("syscw:")).and_then(|v| v.trim().parse().ok())
}

struct AddChange {
    store: Vec<Duration>,
    bare: Vec<Duration>,
    change_bytes: usize,
    /// Median of the write calls one `add_change` made.
    writes: Option<u64>,
}

fn bench_add_change(dir: &Path, samples: usize) -> AddChange {
    let store = Store::create(dir.join("add.redb")).expect("create store");
    let mut bare =
        std::fs::OpenOptions::new().create_new(true).append(true).open(dir.join("bare.log")).expect("create bare log");
    let mut rng = Rng::new(1);
    let (mut a, mut b) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    let mut size = 0;
    let mut writes = Vec::with_capacity(samples);
    let warmup = samples / 10;
    for i in 0..samples + warmup {
        let v = (i + 1) as u32;
        let change = small_change(&mut rng, v, i as u64);
        let bytes: Vec<u8> = change.join("\0").into_bytes();
        size = bytes.len();
        // Alternate which goes first, so neither always follows the other's sync.
        let mut one = || {
            let before = write_calls();
            let t = Instant::now();
            store.add_change(v, &change).expect("add_change");
            let elapsed = t.elapsed();
            if let (Some(a), Some(b)) = (before, write_calls()) {
                writes.push(b - a);
            }
            elapsed
        };
        let mut two = || {
            let t = Instant::now();
            bare.write_all(&bytes).expect("append");
            bare.sync_data().expect("fdatasync");
            t.elapsed()
        };
        let (x, y) = if i % 2 == 0 {
            let x = one();
            (x, two())
        } else {
            let y = two();
            (one(), y)
        };
        if i >= warmup {
            a.push(x);
            b.push(y);
        }
    }
    a.sort();
    b.sort();
    writes.sort();
    let writes = writes.get(writes.len() / 2).copied();
    AddChange { store: a, bare: b, change_bytes: size, writes }
}

fn direct_apply(path: &Path, txns: &[Txn]) -> Duration {
    let t = Instant::now();
    let conn = rusqlite::Connection::open(path).expect("open direct");
    conn.execute_batch("PRAGMA foreign_keys = ON; BEGIN").expect("begin");
    for (_, s) in txns {
        for x in s {
            conn.execute_batch(x).expect("direct statement");
        }
    }
    conn.execute_batch("COMMIT").expect("commit");
    conn.close().expect("close");
    t.elapsed()
}

fn main() {
    let a = args();
    let base = match &a.dir {
        Some(d) => tempfile::tempdir_in(d),
        None => tempfile::tempdir_in("."),
    }
    .expect("temporary directory");
    let dir = base.path();
    let (samples, n_changes, repeats) = if a.quick { (200, 2000, 1) } else { (2000, 20_000, 5) };
    println!("bench_store: directory {} ({})", dir.display(), if a.quick { "quick" } else { "full" });

    // 1. add_change against append + fdatasync.
    let added = bench_add_change(dir, samples);
    let change_bytes = added.change_bytes;
    let (s50, s99) = (percentile(&added.store, 0.5), percentile(&added.store, 0.99));
    let (b50, b99) = (percentile(&added.bare, 0.5), percentile(&added.bare, 0.99));

    // 2. restore against direct execution; 3. size.
    let txns = Workload::generate(7, n_changes);
    let raw = workload::statement_bytes(&txns);
    let store_path = dir.join("workload.redb");
    let t = Instant::now();
    let store = Store::create(&store_path).expect("create store");
    for (v, s) in &txns {
        store.add_change(*v, s).expect("add_change");
    }
    let fill = t.elapsed();
    let meta = std::fs::metadata(&store_path).expect("store size");
    let file_bytes = meta.len();
    // What the file occupies: redb extends it by doubling with sparse
    // `set_len`, so its length overstates the blocks in use.
    let allocated_bytes = std::os::unix::fs::MetadataExt::blocks(&meta) * 512;
    let record_bytes = store.reader().and_then(|r| r.stored_change_bytes()).expect("stored bytes");

    let (mut rt, mut dt) = (Vec::new(), Vec::new());
    // Side by side, alternating which goes first so neither always pays for
    // the other's leftovers (dirty pages, a cold cache).
    for i in 0..repeats {
        let dest = dir.join(format!("restored-{i}.sqlite3"));
        let direct = dir.join(format!("direct-{i}.sqlite3"));
        if i % 2 == 1 {
            dt.push(direct_apply(&direct, &txns));
        }
        let t = Instant::now();
        restore::restore_store(&store, &dest, &restore::Options::default()).expect("restore");
        rt.push(t.elapsed());
        if i % 2 == 0 {
            dt.push(direct_apply(&direct, &txns));
        }
    }
    let (rm, dm) = (median(rt), median(dt));

    // Where restore time goes: reading, checking and decoding the log alone,
    // and SQLite's integrity check of the result.
    let t = Instant::now();
    let reader = store.reader().expect("reader");
    let mut decoded = 0usize;
    for c in reader.changes(reader.head()).expect("changes") {
        decoded += c.expect("change").transactions.len();
    }
    let decode_t = t.elapsed();
    drop(reader);
    let t = Instant::now();
    {
        let conn = rusqlite::Connection::open(dir.join("restored-0.sqlite3")).expect("open");
        let _: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check");
    }
    let check_t = t.elapsed();
    // Where file bytes go: the same store with free pages given back.
    let mut store = store;
    store.shrink_file().expect("shrink");
    let shrunk_bytes = std::fs::metadata(&store_path).expect("store size").len();

    let n = txns.len() as f64;
    println!();
    println!("{:<44} {:>12} {:>12} {:>8} {:>8}", "measure", "cln-backup", "floor", "ratio", "target");
    println!("{}", "-".repeat(88));
    println!(
        "{:<44} {:>10.0}us {:>10.0}us {:>8.2} {:>8}",
        format!("add_change p50 ({change_bytes} B, n={samples})"),
        us(s50),
        us(b50),
        us(s50) / us(b50),
        "<= 1.2"
    );
    println!("{:<44} {:>10.0}us {:>10.0}us {:>8.2} {:>8}", "add_change p99", us(s99), us(b99), us(s99) / us(b99), "");
    println!(
        "{:<44} {:>11.0}ms {:>11.0}ms {:>8.2} {:>8}",
        format!("restore {} changes (median of {repeats})", txns.len()),
        rm.as_secs_f64() * 1e3,
        dm.as_secs_f64() * 1e3,
        rm.as_secs_f64() / dm.as_secs_f64(),
        "<= 1.2"
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>8.3} {:>8}",
        "bytes on disk per change / raw statement bytes",
        allocated_bytes as f64 / n,
        raw as f64 / n,
        allocated_bytes as f64 / raw as f64,
        "<= 0.5"
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>8.3} {:>8}",
        "file length per change / raw bytes",
        file_bytes as f64 / n,
        raw as f64 / n,
        file_bytes as f64 / raw as f64,
        ""
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>8.3} {:>8}",
        "record bytes per change / raw statement bytes",
        record_bytes as f64 / n,
        raw as f64 / n,
        record_bytes as f64 / raw as f64,
        ""
    );
    println!(
        "{:<44} {:>12.0} {:>12.0} {:>8.3} {:>8}",
        "shrunk file bytes per change / raw bytes",
        shrunk_bytes as f64 / n,
        raw as f64 / n,
        shrunk_bytes as f64 / raw as f64,
        ""
    );
    match added.writes {
        Some(w) => println!("add_change: {w} write calls per commit (median; redb pages and its header)"),
        None => println!("add_change: write calls not measured (no /proc/self/io)"),
    }
    println!();
    println!(
        "restore breakdown: read+verify+decode {:.0}ms ({decoded} transactions), integrity_check {:.0}ms",
        decode_t.as_secs_f64() * 1e3,
        check_t.as_secs_f64() * 1e3
    );
    println!(
        "(filling the {}-change store took {:.1}s, {:.0}us per change)",
        txns.len(),
        fill.as_secs_f64(),
        us(fill) / n
    );
}
