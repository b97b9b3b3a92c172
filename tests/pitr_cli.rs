//! Point-in-time restore, retention and what `info` and `verify` say about
//! several snapshots, through the real `cln-backup` binary: stores are built
//! through the library with record times read back from it, then restored,
//! listed, compacted and verified from the command line and compared with
//! reference databases built by SQLite from the same transactions.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// The binary exists only with both front ends.
#![cfg(all(feature = "cli", feature = "plugin"))]

mod support;

use cln_backup::version::Seq;
use cln_backup::{utc_iso8601, Store};
use std::path::PathBuf;
use std::time::Duration;
use support::run::{assert_fails, assert_ok, cln_backup, stderr, stdout};
use support::workload::{assert_same_db, Txn, Workload};

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");

/// A store built through the library, with every transaction it holds.
struct Built {
    dir: tempfile::TempDir,
    store: PathBuf,
    txns: Vec<Txn>,
    workload: Workload,
}

impl Built {
    /// `first` transactions added at once, then compacted (so the range
    /// starts at a snapshot), then `spaced` transactions each after a short
    /// sleep, so that each of those has a record time of its own.
    fn new(first: usize, spaced: usize) -> Built {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("node.redb");
        let mut built = Built { store, txns: vec![], workload: Workload::new(7), dir };
        let s = Store::create(&built.store).unwrap();
        built.add(&s, first, false);
        cln_backup::compact::compact(&s, &cln_backup::compact::Options::default()).unwrap();
        built.add(&s, spaced, true);
        built
    }

    /// Add `n` transactions of the workload, sleeping before each if `spaced`.
    fn add(&mut self, store: &Store, n: usize, spaced: bool) {
        for _ in 0..n {
            if spaced {
                std::thread::sleep(Duration::from_millis(5));
            }
            let (v, statements) = self.workload.next_txn();
            store.add_change(v, &statements).unwrap();
            self.txns.push((v, statements));
        }
    }

    /// Open the store again and add `n` spaced transactions.
    fn add_more(&mut self, n: usize) {
        let s = Store::open(&self.store).unwrap();
        self.add(&s, n, true);
    }

    /// When the store received each version of `range`, and that range.
    fn times(&self) -> (Vec<(Seq, u64)>, (Seq, Seq)) {
        let s = Store::open_read_only(&self.store).unwrap();
        let reader = s.reader().unwrap();
        let (lo, hi) = reader.restorable();
        ((lo..=hi).map(|seq| (seq, reader.time_of(seq).unwrap())).collect(), (lo, hi))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The reference database at `version`: the transactions up to it, by SQLite.
    fn reference(&self, version: Seq) -> PathBuf {
        let path = self.path(&format!("ref-{version}.sqlite3"));
        if path.exists() {
            return path;
        }
        let upto: Vec<Txn> = self.txns.iter().filter(|(v, _)| u64::from(*v) <= version).cloned().collect();
        support::reference(self.dir.path(), &format!("ref-{version}.sqlite3"), &upto)
    }

    /// `restore --to-time <time>` into a new file; its output.
    fn restore_at(&self, time: &str, name: &str) -> (PathBuf, String) {
        let dest = self.path(name);
        let out = assert_ok(&cln_backup(&[&"restore", &"--to-time", &time, &self.store, &dest]));
        (dest, out)
    }
}

/// A version whose neighbours were received at least 2 ms before and after
/// it, from the middle of the range.
fn lone_version(times: &[(Seq, u64)]) -> usize {
    let mid = times.len() / 2;
    let mut candidates: Vec<usize> = (1..times.len() - 1).collect();
    candidates.sort_by_key(|i| i.abs_diff(mid));
    candidates
        .into_iter()
        .find(|&i| times[i - 1].1 + 2 <= times[i].1 && times[i].1 + 2 <= times[i + 1].1)
        .unwrap_or_else(|| panic!("no version with a time of its own in {times:?}"))
}

/// The newest version received at or before `ms`.
fn newest_at(times: &[(Seq, u64)], ms: u64) -> Seq {
    times.iter().filter(|(_, t)| *t <= ms).map(|(s, _)| *s).max().unwrap()
}

/// `ms` as RFC 3339 in the UTC offset `+hh:mm`, `east` seconds east of UTC.
fn with_offset(ms: u64, east: i64, offset: &str) -> String {
    let local = (ms as i64 + east * 1000) as u64;
    let utc = utc_iso8601(local, true);
    format!("{}{offset}", utc.trim_end_matches('Z'))
}

#[test]
fn restore_to_a_time_reaches_the_newest_version_received_by_then() {
    let built = Built::new(12, 24);
    let (times, (lo, hi)) = built.times();
    let i = lone_version(&times);
    let (seq, at) = times[i];
    let (before, _) = times[i - 1];

    // Exactly at the version's time: that version, and the output names it and its time.
    let (dest, out) = built.restore_at(&utc_iso8601(at, true), "at.sqlite3");
    assert!(out.contains(&format!("at version {seq}:")), "{out}");
    assert!(out.contains(&format!("it was received at {}", utc_iso8601(at, true))), "{out}");
    assert_same_db(&dest, &built.reference(seq));
    // 1 ms after it: still that version.
    let (dest, out) = built.restore_at(&utc_iso8601(at + 1, true), "after.sqlite3");
    assert!(out.contains(&format!("at version {seq}:")), "{out}");
    assert_same_db(&dest, &built.reference(seq));
    // 1 ms before it: the version before.
    let (dest, out) = built.restore_at(&utc_iso8601(at - 1, true), "before.sqlite3");
    assert!(out.contains(&format!("at version {before}:")), "{out}");
    assert_same_db(&dest, &built.reference(before));

    // The same instant in another UTC offset, and as a Unix time.
    let (dest, out) = built.restore_at(&with_offset(at, 5 * 3600 + 30 * 60, "+05:30"), "offset.sqlite3");
    assert!(out.contains(&format!("at version {seq}:")), "{out}");
    assert_same_db(&dest, &built.reference(seq));
    let (dest, out) = built.restore_at(&with_offset(at, -8 * 3600, "-08:00").replace('T', " "), "west.sqlite3");
    assert!(out.contains(&format!("at version {seq}:")), "{out}");
    assert_same_db(&dest, &built.reference(seq));
    let (dest, out) = built.restore_at(&format!("{}.{:03}", at / 1000, at % 1000), "unix.sqlite3");
    assert!(out.contains(&format!("at version {seq}:")), "{out}");
    assert_same_db(&dest, &built.reference(seq));

    // The ends of the range: the oldest version's time (a version received
    // in the same millisecond after it wins), and the head long after.
    let (lo_time, hi_time) = (times[0].1, times[times.len() - 1].1);
    let oldest = newest_at(&times, lo_time);
    let (dest, out) = built.restore_at(&utc_iso8601(lo_time, true), "oldest.sqlite3");
    assert!(out.contains(&format!("at version {oldest}:")), "{out}");
    assert_same_db(&dest, &built.reference(oldest));
    let (dest, out) = built.restore_at("2999-01-01T00:00:00Z", "late.sqlite3");
    assert!(out.contains(&format!("at version {hi}:")), "{out}");
    assert_same_db(&dest, &built.reference(hi));

    // Before the oldest version kept: refused, naming the store and the range with times.
    let early = built.path("early.sqlite3");
    let out = cln_backup(&[&"restore", &"--to-time", &utc_iso8601(lo_time - 1, true), &built.store, &early]);
    assert_fails(
        &out,
        &[&built.store],
        &[
            &format!("no version of this backup was received at or before {}", utc_iso8601(lo_time - 1, true)),
            &format!("version {lo} ({})", utc_iso8601(lo_time, true)),
            &format!("version {hi} ({})", utc_iso8601(hi_time, true)),
        ],
    );
    assert!(!early.exists());
}

#[test]
fn to_time_is_refused_where_it_cannot_be_honoured() {
    let built = Built::new(4, 3);
    let dest = built.path("out.sqlite3");
    let (times, _) = built.times();
    let at = utc_iso8601(times[1].1, true);

    // With --to-version: one or the other.
    let out = cln_backup(&[&"restore", &"--to-time", &at, &"--to-version", &"3", &built.store, &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot be used with"), "{}", stderr(&out));

    // Text that is no time, naming it.
    let out = cln_backup(&[&"restore", &"--to-time", &"last tuesday", &built.store, &dest]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("\"last tuesday\" is not a time"), "{}", stderr(&out));
    let out = cln_backup(&[&"restore", &"--to-time", &"2026-02-30T10:00:00Z", &built.store, &dest]);
    assert!(stderr(&out).contains("2026-02 has no day 30"), "{}", stderr(&out));

    // A .dbak file and remote copies keep no record times: refused, suggesting --to-version.
    let out = cln_backup(&[&"restore", &"--to-time", &at, &FIXTURE_DBAK, &dest]);
    assert_fails(&out, &[FIXTURE_DBAK], &["--to-time needs a cln-backup store", "legacy .dbak", "--to-version"]);
    for url in ["socket:127.0.0.1:1", "s3://bucket/node"] {
        let out = cln_backup(&[&"restore", &"--to-time", &at, &url, &dest]);
        assert_fails(&out, &[url], &["--to-time needs a cln-backup store", "remote copy", "--to-version"]);
    }
    assert!(!dest.exists());
}

#[test]
fn info_lists_the_snapshots_and_the_range_with_times() {
    let mut built = Built::new(6, 3);
    built.add_more(3);
    assert_ok(&cln_backup(&[&"compact", &built.store]));
    built.add_more(2);
    let (times, (lo, hi)) = built.times();
    let status = Store::open_read_only(&built.store).unwrap().status().unwrap();
    assert!(!status.snapshots.is_empty());

    let text = assert_ok(&cln_backup(&[&"info", &built.store]));
    let second = |ms: u64| utc_iso8601(ms, false);
    let range = format!(
        "Restorable:       versions {lo} ({}) to {hi} ({})",
        second(times[0].1),
        second(times[times.len() - 1].1)
    );
    assert!(text.lines().any(|l| l == range), "{range:?} in\n{text}");
    assert!(text.contains(&format!("Snapshots:        {} kept", status.snapshots.len())), "{text}");
    for snap in &status.snapshots {
        let line = format!(
            "  version {}: received {}, stored {}, {} bytes",
            snap.version,
            second(snap.version_time_ms),
            second(snap.created_ms),
            snap.size
        );
        assert!(text.lines().any(|l| l.starts_with(&line)), "{line:?} in\n{text}");
    }
    let newest = status.snapshot.as_ref().unwrap();
    assert_eq!(newest.version_time_ms, times.iter().find(|(s, _)| *s == newest.seq).unwrap().1);
    let since =
        format!("Since snapshot:   {} changes ({} bytes", status.changes_since_snapshot, status.bytes_since_snapshot);
    assert!(status.changes_since_snapshot >= 2 && text.contains(&since), "{since:?} in\n{text}");

    let json: serde_json::Value =
        serde_json::from_str(&assert_ok(&cln_backup(&[&"info", &"--json", &built.store]))).unwrap();
    assert_eq!(json["restorable"], serde_json::json!({"from": lo, "to": hi}));
    assert_eq!(json["range_times"], serde_json::json!({"from": times[0].1, "to": times[times.len() - 1].1}));
    assert_eq!(json["snapshots"].as_array().unwrap().len(), status.snapshots.len());
    assert_eq!(json["snapshots"][0]["version_time_ms"], status.snapshots[0].version_time_ms);
    assert_eq!(json["changes_since_snapshot"], status.changes_since_snapshot);
    assert_eq!(json["bytes_since_snapshot"], status.bytes_since_snapshot);
}

#[test]
fn compact_with_retention_then_verify_checks_every_snapshot() {
    let mut built = Built::new(5, 3);
    for round in 0..3 {
        built.add_more(4);
        let out = assert_ok(&cln_backup(&[&"compact", &"--keep-snapshots", &"3", &"--max-age", &"30d", &built.store]));
        let status = Store::open_read_only(&built.store).unwrap().status().unwrap();
        let kept: Vec<String> = status.snapshots.iter().map(|s| s.version.to_string()).collect();
        assert!(
            out.contains(&format!("Snapshots: {} kept (", kept.len())) && out.contains(&kept.join(", ")),
            "round {round}: {kept:?} in\n{out}"
        );
        assert!(out.contains("In use:"), "{out}");
        let len = std::fs::metadata(&built.store).unwrap().len();
        assert!(out.contains(&format!("-> {len} bytes")), "{out}");
    }
    let status = Store::open_read_only(&built.store).unwrap().status().unwrap();
    let n = status.snapshots.len();
    assert!((1..=3).contains(&n), "{n}");

    let out = assert_ok(&cln_backup(&[&"verify", &built.store]));
    let snapshots = if n == 1 { "1 snapshot".to_string() } else { format!("{n} snapshots") };
    assert!(out.contains(&format!("Snapshot images intact: {snapshots} (")), "{out}");
    assert!(out.contains(&format!(": OK ({snapshots} and {} change record", status.changes)), "{out}");

    // Every version kept still restores as SQLite built it, from whichever snapshot.
    let (_, (lo, hi)) = built.times();
    let mut seqs = vec![lo, (lo + hi) / 2, hi];
    seqs.dedup();
    for seq in seqs {
        let dest = built.path(&format!("v{seq}.sqlite3"));
        assert_ok(&cln_backup(&[&"restore", &"--to-version", &seq.to_string(), &built.store, &dest]));
        assert_same_db(&dest, &built.reference(seq));
    }

    // Bad retention options are refused before the store is opened.
    let out = cln_backup(&[&"compact", &"--keep-snapshots", &"0", &built.store]);
    assert!(!out.status.success() && stderr(&out).contains("--keep-snapshots"), "{}", stderr(&out));
    let out = cln_backup(&[&"compact", &"--max-age", &"0d", &built.store]);
    assert!(!out.status.success() && stderr(&out).contains("\"0d\" is not an age"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}
