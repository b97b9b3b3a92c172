//! Compaction as a node lives with it: a `cln-backup compact` killed at many
//! points (the store left must be the old one or the new one, whole, with no
//! temporary left once it is opened again), `db_write` answered while the
//! plugin compacts (order and content kept), the retention rules at their
//! boundaries, and restores to a version or a time compared with copies of
//! the node's database saved at those versions.
//!
//! The retention and point-in-time tests use the library alone and run with
//! `--no-default-features` too; the others run the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::compact::{self, Retention};
use cln_backup::restore::{self, restore_store};
use cln_backup::{Error, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::workload::{self, Txn, Workload};

/// Add `txns` to the store in one bulk load (one sync).
fn bulk(store: &Store, txns: &[Txn]) {
    let mut bulk = store.bulk_load().unwrap();
    for (v, s) in txns {
        bulk.add_change(*v, s).unwrap_or_else(|e| panic!("add_change({v}): {e}"));
    }
    bulk.finish().unwrap();
}

/// A connection to a new reference database at `path`, as lightningd opens
/// its own (foreign keys on), without syncing.
fn reference_conn(path: &Path) -> rusqlite::Connection {
    let conn = workload::open_like_lightningd(path).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF;").unwrap();
    conn
}

#[track_caller]
fn same(restored: &Path, expected: &Path, what: &str) {
    if let Some(d) = workload::difference(restored, expected) {
        panic!("{what}: {d}");
    }
}

fn compact_with(store: &Store, keep: usize, max_age: Option<Duration>) -> compact::Stats {
    let opts = compact::Options { retention: Retention::new(keep, max_age), ..Default::default() };
    compact::compact(store, &opts).unwrap_or_else(|e| panic!("compact: {e}"))
}

fn snapshot_versions(store: &Store) -> Vec<u32> {
    store.status().unwrap().snapshots.iter().map(|s| s.version).collect()
}

/// Restore `to_version`, expecting it refused as not restorable.
#[track_caller]
fn refused(store: &Store, dir: &Path, to_version: u64) {
    let dest = dir.join(format!("refused-{to_version}.sqlite3"));
    let opts = restore::Options { to_version: Some(to_version), ..Default::default() };
    let got = restore_store(store, &dest, &opts);
    assert!(matches!(got, Err(Error::NotRestorable { asked, .. }) if asked == to_version), "{to_version}: {got:?}");
    assert!(!dest.exists(), "a refused restore left {}", dest.display());
}

/// Versions 1..=n of a small schema, and a reference database built from a
/// prefix of them.
struct Small {
    txns: Vec<Txn>,
}

impl Small {
    fn new() -> Small {
        let mut txns = vec![(
            1,
            vec![
                "CREATE TABLE vars (name VARCHAR(32), val VARCHAR(255), intval INTEGER, blobval BLOB, PRIMARY KEY (name));"
                    .to_string(),
                "INSERT INTO vars (name, intval) VALUES ('data_version', 0);".to_string(),
                "CREATE TABLE t (v INTEGER, note TEXT);".to_string(),
                workload::bump(1),
            ],
        )];
        for v in 2..=200u32 {
            txns.push((v, vec![format!("INSERT INTO t (v, note) VALUES ({v}, 'row {v}');"), workload::bump(v)]));
        }
        Small { txns }
    }

    fn upto(&self, v: u32) -> &[Txn] {
        &self.txns[..v as usize]
    }

    /// Add versions `from..=to` to the store.
    fn add(&self, store: &Store, from: u32, to: u32) {
        support::add_all(store, &self.txns[from as usize - 1..to as usize]);
    }

    /// The reference at version `v` (built once per directory).
    fn reference(&self, dir: &Path, v: u32) -> PathBuf {
        let name = format!("reference-{v}.sqlite3");
        if dir.join(&name).exists() {
            return dir.join(name);
        }
        support::reference(dir, &name, self.upto(v))
    }
}

/// Restore `v` and compare with the reference built from versions 1..=v.
#[track_caller]
fn restores_exactly(store: &Store, small: &Small, dir: &Path, v: u32) {
    let got = support::restore_to(store, dir, &format!("restored-{v}.sqlite3"), Some(u64::from(v)));
    same(&got, &small.reference(dir, v), &format!("version {v}"));
    std::fs::remove_file(&got).unwrap();
}

#[test]
fn retention_keeps_the_newest_snapshots_and_every_change_after_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let small = Small::new();

    // Keep 2: three compactions with changes between.
    let store = Store::create(dir.path().join("keep2.redb")).unwrap();
    small.add(&store, 1, 10);
    let s1 = compact_with(&store, 2, None);
    assert_eq!((s1.compacted, s1.snapshot_version, s1.snapshots_dropped), (true, Some(9), 0));
    assert_eq!(s1.snapshots_kept, vec![9]);
    small.add(&store, 11, 20);
    let s2 = compact_with(&store, 2, None);
    assert_eq!((s2.snapshot_version, s2.snapshots_dropped), (Some(19), 0));
    assert_eq!(s2.snapshots_kept, vec![9, 19]);
    assert_eq!(snapshot_versions(&store), s2.snapshots_kept);
    small.add(&store, 21, 30);
    let s3 = compact_with(&store, 2, None);
    // The sizes reported are the file's as a user copies it.
    let len = std::fs::metadata(dir.path().join("keep2.redb")).unwrap().len();
    assert_eq!(s3.bytes_after, len, "bytes_after is the file's length");
    assert!(s3.bytes_in_use <= s3.bytes_after, "{s3:?}");
    assert!(s3.bytes_in_use > 0, "{s3:?}");
    assert_eq!((s3.snapshot_version, s3.snapshots_dropped), (Some(29), 1));
    assert_eq!(s3.snapshots_kept, vec![19, 29]);
    let st = store.status().unwrap();
    assert_eq!(st.snapshots.iter().map(|s| s.version).collect::<Vec<_>>(), s3.snapshots_kept);
    assert_eq!(st.snapshot.as_ref().map(|s| s.version), Some(29), "the newest snapshot");
    assert_eq!(st.restorable, (19, 30));
    assert_eq!(store.reader().unwrap().restorable(), (19, 30));
    assert_eq!(st.changes, s3.changes_after, "Stats and Status count the same records");
    assert!(st.changes >= 11, "every change after the oldest kept snapshot stays: {}", st.changes);
    assert_eq!(st.changes_since_snapshot, 1);
    // Both ends of the range and a version between the snapshots restore.
    for v in [19, 20, 24, 29, 30] {
        restores_exactly(&store, &small, dir.path(), v);
    }
    // Just below the oldest kept snapshot: refused.
    refused(&store, dir.path(), 18);
    refused(&store, dir.path(), 9);
    // What the retention rules left survives a reopen.
    drop(store);
    let store = Store::open(dir.path().join("keep2.redb")).unwrap();
    assert_eq!(snapshot_versions(&store), vec![19, 29]);
    assert_eq!(store.status().unwrap().restorable, (19, 30));
    restores_exactly(&store, &small, dir.path(), 19);
    drop(store);

    // Keep 3: the same history keeps the first snapshot, and so version 18 and 9.
    let store = Store::create(dir.path().join("keep3.redb")).unwrap();
    small.add(&store, 1, 10);
    compact_with(&store, 3, None);
    small.add(&store, 11, 20);
    compact_with(&store, 3, None);
    small.add(&store, 21, 30);
    let s = compact_with(&store, 3, None);
    assert_eq!((s.snapshots_kept.clone(), s.snapshots_dropped), (vec![9, 19, 29], 0));
    assert_eq!(snapshot_versions(&store), s.snapshots_kept);
    assert_eq!(store.status().unwrap().restorable, (9, 30));
    for v in [9, 10, 18, 19, 30] {
        restores_exactly(&store, &small, dir.path(), v);
    }
    refused(&store, dir.path(), 8);

    // A fourth compaction with keep 3 drops the oldest by count.
    small.add(&store, 31, 40);
    let s = compact_with(&store, 3, None);
    assert_eq!((s.snapshots_kept.clone(), s.snapshots_dropped), (vec![19, 29, 39], 1));
    assert_eq!(store.status().unwrap().restorable, (19, 40));
    refused(&store, dir.path(), 18);

    // max_age 0: every snapshot but the new one is too old.
    small.add(&store, 41, 50);
    std::thread::sleep(Duration::from_millis(20));
    let s = compact_with(&store, 3, Some(Duration::ZERO));
    assert_eq!(s.snapshot_version, Some(49));
    assert_eq!((s.snapshots_kept.clone(), s.snapshots_dropped), (vec![49], 3));
    let st = store.status().unwrap();
    assert_eq!(st.snapshots.iter().map(|s| s.version).collect::<Vec<_>>(), vec![49]);
    assert_eq!(st.restorable, (49, 50));
    assert_eq!(st.changes, s.changes_after);
    restores_exactly(&store, &small, dir.path(), 49);
    restores_exactly(&store, &small, dir.path(), 50);
    refused(&store, dir.path(), 48);

    // max_age never drops the newest, even when nothing is folded.
    let s = compact_with(&store, 3, Some(Duration::ZERO));
    assert!(!s.compacted);
    assert_eq!(snapshot_versions(&store), vec![49]);
}

#[test]
fn after_a_compaction_the_file_is_close_to_the_bytes_it_holds_and_stays_so_for_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tight.redb");
    let store = Store::create(&path).unwrap();
    let txns = Workload::generate(17, 21000);
    bulk(&store, &txns[..20000]);
    let grown = std::fs::metadata(&path).unwrap().len();
    let stats = compact_with(&store, 3, None);
    let len = std::fs::metadata(&path).unwrap().len();
    assert_eq!(stats.bytes_after, len);
    // A 20 000-change store: the length at most 1.15 times the bytes in use
    // (a store of a few MB is longer than that: redb's own pages weigh more).
    assert!(len as f64 <= 1.15 * stats.bytes_in_use as f64, "{len} bytes long, {} in use", stats.bytes_in_use);
    assert!(len < grown, "the compacted file ({len}) is not shorter than the grown one ({grown})");
    // The reserve inside takes the next writes: no doubling at the first commit.
    for (v, s) in &txns[20000..20100] {
        store.add_change(*v, s).unwrap();
    }
    let after = std::fs::metadata(&path).unwrap().len();
    assert_eq!(after, len, "100 changes after the compaction changed the file's length");
    drop(store);
    // Closing it keeps the bound (redb's close trims free space at the end only).
    let closed = std::fs::metadata(&path).unwrap().len();
    assert!(closed <= len, "{closed} > {len}");
}

#[test]
fn a_store_without_a_snapshot_restores_by_time_from_its_first_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("fresh.redb")).unwrap();
    // Nothing received yet: no time to restore to, and it says so.
    let err = store.reader().unwrap().target_time(u64::MAX / 2).unwrap_err();
    assert!(matches!(&err, Error::TimeNotRestorable { range, .. } if range.contains("no change")), "{err}");
    let txns = Workload::generate(3, 4);
    for (v, s) in &txns {
        store.add_change(*v, s).unwrap();
    }
    let reader = store.reader().unwrap();
    assert_eq!(reader.restorable().0, 0);
    let first = reader.time_of(1).unwrap();
    assert_eq!(reader.target_time(first).unwrap(), reader.target_time(first).unwrap().max(1));
    assert!(reader.target_time(first).unwrap() >= 1);
    // Before the first change: refused, naming version 1 (version 0, the
    // empty database, was never received).
    let err = reader.target_time(first - 1).unwrap_err();
    assert!(matches!(&err, Error::TimeNotRestorable { range, .. } if range.starts_with("version 1 ")), "{err}");
    assert_eq!(reader.target_time(u64::MAX / 2).unwrap(), reader.head());
}

#[test]
fn a_long_max_age_keeps_what_the_count_allows() {
    let dir = tempfile::tempdir().unwrap();
    let small = Small::new();
    let store = Store::create(dir.path().join("node.redb")).unwrap();
    small.add(&store, 1, 10);
    compact_with(&store, 2, Some(Duration::from_secs(3600)));
    small.add(&store, 11, 20);
    let s = compact_with(&store, 2, Some(Duration::from_secs(3600)));
    assert_eq!((s.snapshots_kept.clone(), s.snapshots_dropped), (vec![9, 19], 0));
    assert_eq!(store.status().unwrap().restorable, (9, 20));
    restores_exactly(&store, &small, dir.path(), 9);
}

/// Compactions of one store from several threads, with a writer going on:
/// each returns (they wait for one another instead of failing), the
/// snapshots they leave are distinct and in order, and every version in
/// the range restores.
#[test]
fn concurrent_compactions_are_serialised() {
    let dir = tempfile::tempdir().unwrap();
    let small = Small::new();
    let store = Store::create(dir.path().join("node.redb")).unwrap();
    small.add(&store, 1, 60);
    let results: Vec<Vec<compact::Stats>> = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            for v in 61..=200u32 {
                small.add(&store, v, v);
            }
        });
        let compactors: Vec<_> = (0..3)
            .map(|_| {
                scope.spawn(|| {
                    (0..3)
                        .map(|_| {
                            compact::compact(&store, &compact::Options::default())
                                .unwrap_or_else(|e| panic!("a concurrent compaction failed: {e}"))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        writer.join().unwrap();
        compactors.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let all: Vec<&compact::Stats> = results.iter().flatten().collect();
    let done: Vec<u32> = all.iter().filter_map(|s| s.snapshot_version).collect();
    assert!(!done.is_empty(), "no compaction folded anything");
    let mut distinct = done.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), done.len(), "two compactions made a snapshot at the same version: {done:?}");
    assert!(!store.is_compacting());
    let st = store.status().unwrap();
    assert!(!st.compacting);
    let kept: Vec<u32> = st.snapshots.iter().map(|s| s.version).collect();
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "snapshots out of order: {kept:?}");
    assert!(kept.len() <= Retention::DEFAULT_KEEP, "{kept:?}");
    // The newest snapshot is the highest one any compaction made.
    assert_eq!(kept.last(), distinct.last(), "made {done:?}, kept {kept:?}");
    assert_eq!(st.seq, 200);
    let (lo, hi) = st.restorable;
    assert_eq!(lo, u64::from(kept[0]));
    for v in [lo, (lo + hi) / 2, hi] {
        restores_exactly(&store, &small, dir.path(), v as u32);
    }
}

/// A snapshot keeps the time its version was received, not the time of the
/// compaction: restores by time find the same versions before and after.
#[test]
fn compaction_keeps_the_times_versions_were_received() {
    let dir = tempfile::tempdir().unwrap();
    let small = Small::new();
    let store = Store::create(dir.path().join("node.redb")).unwrap();
    let add_apart = |from: u32, to: u32| {
        for v in from..=to {
            std::thread::sleep(Duration::from_millis(2));
            small.add(&store, v, v);
        }
    };
    add_apart(1, 10);
    let times = |upto: u64| -> Vec<u64> {
        let r = store.reader().unwrap();
        let (lo, _) = r.restorable();
        (lo.max(1)..=upto).map(|v| r.time_of(v).unwrap()).collect()
    };
    let before = times(10);
    assert!(before.windows(2).all(|w| w[0] < w[1]), "versions added apart have distinct times: {before:?}");
    std::thread::sleep(Duration::from_millis(20));
    compact_with(&store, 3, None);
    let snap = store.status().unwrap().snapshot.unwrap();
    assert_eq!(snap.version, 9);
    assert_eq!(snap.version_time_ms, before[8], "the snapshot's version_time_ms is when version 9 was received");
    assert!(snap.created_ms > before[9], "created_ms is when the snapshot was made");
    {
        let r = store.reader().unwrap();
        assert_eq!((r.time_of(9).unwrap(), r.time_of(10).unwrap()), (before[8], before[9]));
        assert_eq!(r.target_time(before[8]).unwrap(), 9);
        assert_eq!(r.target_time(before[9] - 1).unwrap(), 9);
        assert_eq!(r.target_time(before[9]).unwrap(), 10);
    }
    add_apart(11, 20);
    let before20 = store.reader().unwrap().time_of(20).unwrap();
    compact_with(&store, 3, None);
    // Version 9 is now the floor below a newer snapshot: same times.
    let r = store.reader().unwrap();
    assert_eq!(r.restorable(), (9, 20));
    assert_eq!((r.time_of(9).unwrap(), r.time_of(10).unwrap()), (before[8], before[9]));
    assert_eq!(r.time_of(20).unwrap(), before20);
    assert_eq!(r.target_time(before[9]).unwrap(), 10);
    let mut prev = 0;
    for v in 9..=20 {
        let t = r.time_of(v).unwrap();
        assert!(t > prev, "time of version {v} ({t} ms) is not after the one before ({prev} ms)");
        prev = t;
    }
}

/// Versions saved as copies of the reference database, then restored by
/// version and by time after several compactions with the default retention.
#[test]
fn restores_by_version_and_by_time_match_copies_saved_at_those_versions() {
    let dir = tempfile::tempdir().unwrap();
    let copies = dir.path().join("copies");
    std::fs::create_dir(&copies).unwrap();
    let path = dir.path().join("node.redb");
    let store = Store::create(&path).unwrap();
    let ref_path = dir.path().join("reference.sqlite3");
    let conn = reference_conn(&ref_path);
    let mut load = Workload::new(11);

    // Compact when the head reaches these versions (snapshot at head - 1).
    let compact_at: [u32; 5] = [500, 900, 1300, 1700, 2100];
    let last: u32 = 2400;
    let mut save: std::collections::BTreeSet<u32> = (1..=last).filter(|v| v % 250 == 0).collect();
    for c in compact_at {
        save.extend([c - 2, c - 1, c, c + 1]);
    }
    // Versions restored by time too: received at distinct milliseconds.
    let timed: Vec<u32> = vec![1299, 1301, 1750, 2099, 2300, last - 1];
    save.extend(timed.iter().copied());

    let mut saved: BTreeMap<u32, PathBuf> = BTreeMap::new();
    let mut pending: Vec<Txn> = Vec::new();
    let mut stats = Vec::new();
    let flush = |pending: &mut Vec<Txn>| {
        if !pending.is_empty() {
            bulk(&store, pending);
            pending.clear();
        }
    };
    while load.version() < last {
        let txn = load.next_txn();
        let v = txn.0;
        workload::apply(&conn, std::slice::from_ref(&txn)).unwrap();
        let lone = workload::is_lone_pragma(&txn.1);
        if timed.contains(&v) || timed.contains(&(v.wrapping_sub(1))) {
            // This version's time must differ from its neighbours'.
            flush(&mut pending);
            std::thread::sleep(Duration::from_millis(3));
            store.add_change(v, &txn.1).unwrap();
            std::thread::sleep(Duration::from_millis(3));
        } else {
            pending.push(txn);
        }
        if save.contains(&v) {
            // Taken again after a repeated report of the same version, so
            // that the copy holds all of it.
            let copy = copies.join(format!("v{v}.sqlite3"));
            std::fs::copy(&ref_path, &copy).unwrap();
            saved.insert(v, copy);
        }
        if compact_at.contains(&v) && !lone {
            flush(&mut pending);
            let s = compact::compact(&store, &compact::Options::default()).unwrap();
            assert_eq!(s.snapshot_version, Some(v - 1), "compaction at head {v}");
            stats.push(s);
        }
    }
    flush(&mut pending);
    drop(conn);

    let st = store.status().unwrap();
    let kept: Vec<u32> = st.snapshots.iter().map(|s| s.version).collect();
    // The default keeps the newest three.
    assert_eq!(kept, vec![1299, 1699, 2099]);
    assert_eq!(stats.last().map(|s| s.snapshots_kept.clone()), Some(kept.clone()));
    assert_eq!(stats.iter().map(|s| s.snapshots_dropped).sum::<u64>(), 2);
    assert_eq!(st.restorable, (1299, u64::from(last)));

    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let (lo, hi) = st.restorable;
    let mut restored = 0;
    for (&v, copy) in &saved {
        let v64 = u64::from(v);
        if v64 < lo || v64 > hi {
            refused(&store, &out, v64);
            continue;
        }
        let dest = out.join(format!("v{v}.sqlite3"));
        let report = restore_store(&store, &dest, &restore::Options { to_version: Some(v64), ..Default::default() })
            .unwrap_or_else(|e| panic!("restore {v}: {e}"));
        assert_eq!(report.version, v);
        same(&dest, copy, &format!("restore to version {v}"));
        std::fs::remove_file(&dest).unwrap();
        restored += 1;
    }
    assert!(restored >= 10, "only {restored} saved versions were in range");

    let reader = store.reader().unwrap();
    for &v in &timed {
        let v64 = u64::from(v);
        let at = reader.time_of(v64).unwrap();
        let next = reader.time_of(v64 + 1).unwrap();
        assert!(next > at, "version {v} at {at} ms, {} at {next} ms: times must differ", v + 1);
        assert_eq!(reader.target_time(at).unwrap(), v64, "target_time(time_of({v}))");
        assert_eq!(reader.target_time(next - 1).unwrap(), v64, "target_time(time_of({}) - 1)", v + 1);
        for (name, t) in [("at", at), ("before-next", next - 1)] {
            let dest = out.join(format!("t{v}-{name}.sqlite3"));
            let report = restore_store(&store, &dest, &restore::Options { to_time_ms: Some(t), ..Default::default() })
                .unwrap_or_else(|e| panic!("restore to the time of {v} ({name}): {e}"));
            assert_eq!(report.version, v, "restore to {t} ms ({name} version {v})");
            same(&dest, &saved[&v], &format!("restore to the time of version {v} ({name})"));
            std::fs::remove_file(&dest).unwrap();
        }
    }
    // Record times never go back across the range.
    let mut prev = 0;
    for v in lo..=hi {
        let t = reader.time_of(v).unwrap();
        assert!(t >= prev, "time of version {v} ({t}) is before the one before it ({prev})");
        prev = t;
    }
    // Before the oldest snapshot's version was received: refused, naming the range.
    let before = reader.time_of(lo).unwrap() - 1;
    let err = reader.target_time(before).unwrap_err();
    assert!(matches!(err, Error::TimeNotRestorable { .. }), "{err}");
    assert!(err.to_string().contains("version 1299"), "{err}");
    drop(reader);
    let dest = out.join("too-early.sqlite3");
    let got = restore_store(&store, &dest, &restore::Options { to_time_ms: Some(before), ..Default::default() });
    assert!(matches!(got, Err(Error::TimeNotRestorable { .. })), "{got:?}");
    assert!(!dest.exists());
}

/// The end-to-end tests: the real binary.
#[cfg(all(feature = "cli", feature = "plugin"))]
mod binary {
    use super::*;
    use std::process::{Child, Stdio};
    use std::time::Instant;
    use support::run::{assert_ok, cln_backup, command};

    /// The next `n` transactions of the workload.
    fn take(load: &mut Workload, n: usize) -> Vec<Txn> {
        (0..n).map(|_| load.next_txn()).collect()
    }

    /// The temporaries a process with id `pid` left in `dir`, by purpose
    /// (`.cln-backup-<purpose>-<pid>-<random>`, SQLite side files included).
    fn temporaries_of(dir: &Path, pid: u32) -> Vec<String> {
        let marker = format!("-{pid}-");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(".cln-backup-") {
                if let Some(at) = rest.find(&marker) {
                    found.push(rest[..at].to_string());
                }
            }
        }
        found.sort();
        found
    }

    fn spawn_compact(store: &Path) -> Child {
        command()
            .arg("compact")
            .arg(store)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// The seed of the kill delays: `CLN_BACKUP_KILL_SEED` to rerun a failure.
    fn seed() -> u64 {
        match std::env::var("CLN_BACKUP_KILL_SEED") {
            Ok(s) => s.parse().unwrap_or_else(|_| panic!("CLN_BACKUP_KILL_SEED={s} is not a number")),
            Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64,
        }
    }

    #[derive(Debug, Default)]
    struct Outcomes {
        /// The process finished before the kill.
        finished: u32,
        /// Killed after the new store was in place.
        killed_after: u32,
        /// Killed before: the old store stayed.
        killed_before: u32,
        /// Temporaries the process had beside the store when it was killed,
        /// by purpose: which part of the work the kills landed in.
        phases: BTreeMap<String, u32>,
    }

    /// Kill `cln-backup compact` at pseudo-random points spread over its
    /// run: whatever the point, the store opens at the same head, verifies,
    /// restores to the reference, and keeps no temporary of the dead process.
    ///
    /// Decision: the delays are stratified (round `i` draws from the `i`-th
    /// of 24 equal slices of [0, 1.2 D], D measured on a compaction of the
    /// same size), so that every run reaches the start, the middle and the
    /// end of a compaction whatever the seed; the seed only moves the
    /// points within their slices. A killed round is followed by an
    /// uninterrupted compaction, so that each round has the same work.
    #[test]
    fn sigkill_during_compaction_leaves_a_whole_store() {
        const ROUNDS: usize = 24;
        const PER_ROUND: usize = 150;
        let seed = seed();
        println!("kill delays seeded with {seed} (rerun with CLN_BACKUP_KILL_SEED={seed})");
        let mut rng = workload::Rng::new(seed);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.redb");
        let ref_path = dir.path().join("reference.sqlite3");
        let conn = reference_conn(&ref_path);
        let mut load = Workload::new(7);

        let store = Store::create(&path).unwrap();
        let first = take(&mut load, 2000);
        super::bulk(&store, &first);
        workload::apply(&conn, &first).unwrap();
        drop(store);
        // A first compaction, then the duration of a typical one (a few
        // hundred changes on top of a snapshot) to place the kills in.
        assert_ok(&cln_backup(&[&"compact", &path]));
        let add_round = |load: &mut Workload| {
            let txns = take(load, PER_ROUND);
            let store = Store::open(&path).unwrap();
            super::bulk(&store, &txns);
            workload::apply(&conn, &txns).unwrap();
            store.head()
        };
        add_round(&mut load);
        let started = Instant::now();
        assert_ok(&cln_backup(&[&"compact", &path]));
        let d = started.elapsed();
        println!("one compaction took {d:?}");
        let span_us = (d.as_micros() as u64 * 12 / 10).max(1);

        let mut outcomes = Outcomes::default();
        for round in 0..ROUNDS {
            let head = add_round(&mut load);
            let newest_before = Store::open_read_only(&path).unwrap().status().unwrap().snapshot.map(|s| s.seq);
            // Stratified: each round's delay falls in its own slice of [0, 1.2 D].
            let slice = span_us / ROUNDS as u64;
            let delay = Duration::from_micros(slice * round as u64 + rng.below(slice.max(1)));
            let mut child = spawn_compact(&path);
            let pid = child.id();
            std::thread::sleep(delay);
            let phase = temporaries_of(dir.path(), pid);
            let finished = match child.try_wait().unwrap() {
                Some(status) => {
                    assert!(status.success(), "round {round}: compact exited with {status}");
                    true
                }
                None => {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    false
                }
            };

            // Open for writing: it must work, and clean up after the dead process.
            let store = Store::open(&path).unwrap_or_else(|e| panic!("round {round} (delay {delay:?}): open: {e}"));
            let st = store.status().unwrap();
            assert_eq!(st.seq, head, "round {round} (delay {delay:?}): head");
            let newest = st.snapshot.as_ref().map(|s| s.seq);
            let published = newest == Some(head - 1);
            assert!(
                published || newest == newest_before,
                "round {round}: the newest snapshot is {newest:?}, neither the old {newest_before:?} nor head - 1"
            );
            assert!(!finished || published, "round {round}: compact exited but its snapshot is not there");
            let left = temporaries_of(dir.path(), pid);
            assert!(
                left.is_empty(),
                "round {round} (delay {delay:?}): temporaries of the killed process {pid} left beside the store after the open: {left:?}"
            );
            let restored = support::restore_to(&store, dir.path(), "restored.sqlite3", None);
            same(&restored, &ref_path, &format!("round {round} (delay {delay:?}): restore of the head"));
            std::fs::remove_file(&restored).unwrap();
            drop(store);
            assert_ok(&cln_backup(&[&"verify", &path]));
            if !published {
                // Compact now, so that every round's compaction has the same
                // work to do (a snapshot and one round of changes), and so
                // that a compaction after a killed one is seen to work.
                assert_ok(&cln_backup(&[&"compact", &path]));
                let st = Store::open_read_only(&path).unwrap().status().unwrap();
                assert_eq!(st.snapshot.map(|s| s.seq), Some(head - 1), "round {round}: compaction after the kill");
            }

            println!(
                "round {round}: delay {delay:?}, {}, temporaries at the kill: {phase:?}",
                if finished {
                    "finished"
                } else if published {
                    "killed after the new store was in place"
                } else {
                    "killed before"
                }
            );
            match (finished, published) {
                (true, _) => outcomes.finished += 1,
                (false, true) => outcomes.killed_after += 1,
                (false, false) => outcomes.killed_before += 1,
            }
            if !finished {
                let key = if phase.is_empty() { "(none)".to_string() } else { phase.join("+") };
                *outcomes.phases.entry(key).or_default() += 1;
            }
        }
        println!("{outcomes:?}");
        // The earliest slices kill a compaction that cannot have finished.
        assert!(outcomes.killed_before > 0, "{outcomes:?}");
    }

    /// Transactions go on while the plugin compacts: each is answered, kept
    /// in order, and a restore afterwards equals the node's database.
    #[test]
    fn db_write_goes_on_during_compaction() {
        use crate::support_sim::{self, Node, NodeDir, Start};
        use serde_json::{json, Value};
        const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

        let dir = NodeDir::new();
        let store_path = dir.root.path().join("backup.redb");
        Store::create(&store_path).unwrap();
        support_sim::write_lock(&dir, &store_path);
        let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        let mut load = Workload::on_existing_schema(21, node.data_version());
        let send = |node: &mut Node, load: &mut Workload| {
            let txn = load.next_txn();
            node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
        };
        for _ in 0..2500 {
            send(&mut node, &mut load);
        }
        let mut during = Vec::new();
        // At least three compactions, and more until 100 transactions were
        // answered during them (a fast machine compacts in few writes).
        let mut round = 0;
        while round < 3 || (during.iter().sum::<u32>() < 100 && round < 30) {
            round += 1;
            let call = node.rpc_start("backup-compact", json!({})).unwrap();
            let mut sent = 0u32;
            let stats: Value = loop {
                if let Some(answer) = node.rpc_poll(&call) {
                    break answer.unwrap_or_else(|e| panic!("round {round}: backup-compact: {e}"));
                }
                send(&mut node, &mut load);
                sent += 1;
            };
            println!("round {round}: {sent} transactions answered while compacting; {stats}");
            assert_eq!(stats["compacted"], json!(true), "round {round}: {stats}");
            assert!(stats["bytes_in_use"].as_u64() <= stats["bytes_after"].as_u64(), "round {round}: {stats}");
            during.push(sent);
            // Changes for the next round to fold.
            for _ in 0..500 {
                send(&mut node, &mut load);
            }
        }
        let version = node.data_version();
        let node_db = node.db_path();
        node.stop();
        println!("transactions during each compaction: {during:?}");
        // Decision: each compaction must see writes answered while it runs,
        // and all together at least 100; how many fall in one depends on
        // how long it takes on this machine, so a count per compaction is
        // not asserted.
        assert!(during.iter().all(|&n| n > 0), "no transaction was answered while a compaction ran: {during:?}");
        assert!(during.iter().sum::<u32>() >= 100, "fewer than 100 transactions during the compactions: {during:?}");

        let store = Store::open_read_only(&store_path).unwrap();
        let st = store.status().unwrap();
        assert_eq!(st.version, version, "the store's head is the node's data_version");
        // Several compactions asked for (and any the plugin's policy ran): at
        // most the default number of snapshots kept.
        assert!(
            (1..=Retention::DEFAULT_KEEP).contains(&st.snapshots.len()),
            "snapshots kept after three compactions: {:?}",
            st.snapshots
        );
        drop(store);
        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("restored.sqlite3");
        assert_ok(&cln_backup(&[&"restore", &store_path, &dest]));
        same(&dest, &node_db, "restore after compactions under load");
        assert_ok(&cln_backup(&[&"verify", &"--against", &node_db, &store_path]));
    }
}

#[cfg(all(feature = "cli", feature = "plugin"))]
#[path = "support/sim.rs"]
mod support_sim;
