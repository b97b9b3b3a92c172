//! Import benchmark: moving a Python-plugin `.dbak` into a store, measured
//! side by side in one run on the same disk.
//!
//! - `import_new` (batched commits, one durable sync at the end) of a
//!   `.dbak` holding a realistic CLN-shaped workload;
//! - the first 10 000 of the same changes added one durable `add_change` at
//!   a time, as the plugin stores them and as the import did before it was
//!   batched (a subset: at one sync each, all of them take minutes), compared
//!   per change;
//! - a bare read of the `.dbak`'s records (every transaction record's
//!   statements), the floor an import cannot beat.
//!
//! Run: `cargo run --release --example bench_import [-- --changes N] [--dir DIR]`
//! (default 100 000 changes). The directory defaults to a temporary one under
//! the current directory, on the project's disk rather than a tmpfs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/workload.rs"]
mod workload;

use cln_backup::legacy::{DbakReader, DbakWriter, Kind};
use cln_backup::{legacy, Store};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use workload::Workload;

fn main() {
    let mut changes = 100_000usize;
    let mut dir: Option<PathBuf> = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--changes" => changes = it.next().and_then(|n| n.parse().ok()).expect("--changes N"),
            "--dir" => dir = it.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: bench_import [--changes N] [--dir DIR]");
                return;
            }
            other => {
                eprintln!("unknown argument {other:?}; try --help");
                std::process::exit(2);
            }
        }
    }
    let tmp = match &dir {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir_in(".").unwrap(),
    };
    let txns = Workload::generate(99, changes);
    let dbak = tmp.path().join("backup.dbak");
    {
        let file = std::fs::File::create(&dbak).unwrap();
        let mut w = DbakWriter::new(file, &dbak).unwrap();
        for (v, s) in &txns {
            w.add_transaction(*v, s).unwrap();
        }
        w.finish().unwrap();
    }
    let dbak_bytes = std::fs::metadata(&dbak).unwrap().len();
    println!("{} changes, .dbak of {:.1} MB", txns.len(), dbak_bytes as f64 / 1e6);

    // The floor: read and decode every record, writing nothing.
    let t = Instant::now();
    let mut file = DbakReader::open(&dbak).unwrap();
    let mut statements = 0usize;
    for record in file.scan().unwrap() {
        if record.kind == Kind::Transaction {
            statements += file.statements(&record).unwrap().len();
        }
    }
    let read = t.elapsed();
    assert!(statements > 0);

    let t = Instant::now();
    let report = legacy::import_new(&dbak, &tmp.path().join("batched.redb")).unwrap();
    let batched = t.elapsed();
    assert_eq!(report.changes as usize, txns.len());

    let subset = &txns[..txns.len().min(10_000)];
    let t = Instant::now();
    let store = Store::create(tmp.path().join("one-by-one.redb")).unwrap();
    for (v, s) in subset {
        store.add_change(*v, s).unwrap();
    }
    let one_by_one = t.elapsed();

    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    let (floor, bulk, single) = (per(read, txns.len()), per(batched, txns.len()), per(one_by_one, subset.len()));
    println!("{:<44} {:>8} {:>10} {:>10}", "", "changes", "seconds", "µs/change");
    let row = |what: &str, n: usize, d: Duration, us: f64| {
        println!("{what:<44} {n:>8} {:>10.2} {us:>10.1}", d.as_secs_f64());
    };
    row("read the .dbak (floor)", txns.len(), read, floor);
    row("import (batched commits, one sync)", txns.len(), batched, bulk);
    row("durable add_change per change (subset)", subset.len(), one_by_one, single);
    println!("import / floor, per change:              {:.2}x", bulk / floor);
    println!("per-change durable / import, per change: {:.1}x", single / bulk);
}
