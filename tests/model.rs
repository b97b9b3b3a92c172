//! Model-based property test of the store: random sequences of add,
//! repeated-version add, rewind, double rewind, gap, reopen, snapshot,
//! compaction (keeping several snapshots), restores of earlier versions and
//! table rebuilds, checked after every step against an in-memory model of
//! what the store must hold, and regularly by restoring and comparing with
//! the model's transactions applied directly to SQLite.
//!
//! Decision: the model counts the records after the oldest snapshot kept
//! (those a restore from it replays); a record at the oldest snapshot's own
//! version counts only when it holds reports made after a snapshot added by
//! hand, as before several snapshots were kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::{compact, restore, Error, Store};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;
use support::workload::{self, Txn};

#[derive(Clone, Debug)]
enum Op {
    Add,
    /// A lone `PRAGMA foreign_keys` report at the head's version.
    Repeat(bool),
    Rewind,
    DoubleRewind,
    /// A version that does not follow: ahead by 2 + n, or behind.
    Gap(u8),
    Reopen,
    Snapshot,
    Compact,
    /// Restore a version of the restorable range (picked by the number) and
    /// compare it with the model's database at that version.
    RestoreAt(u16),
    /// OFF, a rebuild of `parent` (which would cascade to `child` with
    /// foreign keys on), ON.
    Rebuild,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => Just(Op::Add),
        2 => any::<bool>().prop_map(Op::Repeat),
        2 => Just(Op::Rewind),
        1 => Just(Op::DoubleRewind),
        1 => (0u8..4).prop_map(Op::Gap),
        1 => Just(Op::Reopen),
        1 => Just(Op::Snapshot),
        3 => Just(Op::Compact),
        2 => any::<u16>().prop_map(Op::RestoreAt),
        1 => Just(Op::Rebuild),
    ]
}

/// What the store must hold.
#[derive(Debug, Default)]
struct Model {
    /// Every transaction lightningd committed, in order: what a restore gives.
    /// Versions never go down along it, so the database at version `v` is
    /// the prefix of the transactions at or below `v`.
    committed: Vec<Txn>,
    head: u64,
    /// The snapshots' versions, oldest first. The oldest is the floor:
    /// records are kept after it.
    snapshots: Vec<u64>,
    /// Records held: version → number of transactions in it.
    records: BTreeMap<u64, usize>,
    /// Records begun by a repeated-version report at a snapshot's version
    /// (none was kept there): they hold what came after the snapshot, so
    /// they stay when that snapshot becomes the oldest.
    after_snapshot: std::collections::BTreeSet<u64>,
    /// The head was reached by a rewind (a second one is refused).
    rewound_here: bool,
    foreign_keys: bool,
    next_row: u64,
}

impl Model {
    fn new() -> Model {
        Model { foreign_keys: true, next_row: 1, ..Model::default() }
    }

    fn has_schema(&self) -> bool {
        self.committed.iter().any(|(_, s)| s[0].starts_with("CREATE TABLE vars"))
    }

    /// The oldest snapshot's version, or 0: restores reach down to it.
    fn base(&self) -> u64 {
        self.snapshots.first().copied().unwrap_or(0)
    }

    /// The newest snapshot's version, or 0: rewinds and compaction work after it.
    fn newest(&self) -> u64 {
        self.snapshots.last().copied().unwrap_or(0)
    }

    /// A rewind removes the head's record, which must be a single change
    /// after the newest snapshot (a snapshot holds what lightningd
    /// committed), and not the result of a rewind.
    fn rewind_allowed(&self) -> bool {
        self.head > self.newest() && self.records.get(&self.head) == Some(&1) && !self.rewound_here
    }

    fn prev_version(&self) -> Option<u32> {
        (self.head > self.base() && self.records.contains_key(&self.head)).then(|| (self.head - 1) as u32)
    }

    /// The transactions a restore to `v` replays onto an empty database.
    fn upto(&self, v: u64) -> Vec<Txn> {
        self.committed.iter().take_while(|(tv, _)| u64::from(*tv) <= v).cloned().collect()
    }

    /// The next transaction at head + 1.
    fn next_txn(&mut self) -> Txn {
        let v = (self.head + 1) as u32;
        let mut s = Vec::new();
        if !self.has_schema() {
            s.push("CREATE TABLE vars (name VARCHAR(32), val VARCHAR(255), intval INTEGER, blobval BLOB, PRIMARY KEY (name));".to_string());
            s.push(format!("INSERT INTO vars (name, intval) VALUES ('data_version', {});", self.head));
            s.push("CREATE TABLE parent (id INTEGER, v TEXT, PRIMARY KEY (id));".into());
            s.push("CREATE TABLE child (pid INTEGER REFERENCES parent(id) ON DELETE CASCADE, v TEXT);".into());
        } else {
            let n = self.next_row;
            self.next_row += 1;
            s.push(format!("INSERT INTO parent (id, v) VALUES ({n}, 'a{n}');"));
            s.push(format!("INSERT INTO child (pid, v) VALUES ({n}, 'it''s c{n}');"));
        }
        s.push(workload::bump(v));
        (v, s)
    }

    fn added(&mut self, txn: Txn) {
        self.head += 1;
        self.records.insert(self.head, 1);
        self.rewound_here = false;
        self.committed.push(txn);
    }

    fn repeated(&mut self, txn: Txn) {
        if !self.records.contains_key(&self.head) {
            self.after_snapshot.insert(self.head);
        } else if self.head == self.newest() && self.head > self.base() {
            // The record the newest snapshot holds grows: that snapshot is
            // dropped (the one before it and the changes since cover it).
            self.snapshots.pop();
        }
        *self.records.entry(self.head).or_insert(0) += 1;
        if let Some(on) = cln_backup::version::lone_foreign_keys_pragma(&txn.1) {
            self.foreign_keys = on;
        }
        self.committed.push(txn);
    }

    fn rewound(&mut self) -> Txn {
        self.records.remove(&self.head);
        self.after_snapshot.remove(&self.head);
        self.head -= 1;
        self.rewound_here = true;
        self.committed.pop().expect("a transaction to rewind")
    }
}

struct Harness<'a> {
    dir: &'a Path,
    path: std::path::PathBuf,
    store: Store,
    model: Model,
    files: u64,
}

impl Harness<'_> {
    fn file(&mut self, what: &str) -> std::path::PathBuf {
        self.files += 1;
        self.dir.join(format!("{what}-{}.sqlite3", self.files))
    }

    fn restore(&mut self) -> std::path::PathBuf {
        let dest = self.file("restore");
        restore::restore_store(&self.store, &dest, &restore::Options::default())
            .unwrap_or_else(|e| panic!("restore: {e}"));
        dest
    }

    fn check_status(&self, step: &str) {
        let m = &self.model;
        let st = self.store.status().unwrap();
        assert_eq!(st.seq, m.head, "{step}: head");
        assert_eq!(st.version, m.head as u32, "{step}: version");
        assert_eq!(st.prev_version, m.prev_version(), "{step}: prev_version");
        assert_eq!(st.rewind_allowed, m.rewind_allowed(), "{step}: rewind_allowed");
        assert_eq!(st.changes, m.records.len() as u64, "{step}: changes");
        assert_eq!(st.restorable, (m.base(), m.head), "{step}: restorable");
        assert_eq!(st.snapshot.map(|s| s.seq), m.snapshots.last().copied(), "{step}: snapshot");
        assert_eq!(st.snapshots.iter().map(|s| s.seq).collect::<Vec<_>>(), m.snapshots, "{step}: snapshots");
        assert_eq!(st.changes_since_snapshot, m.head - m.newest(), "{step}: changes_since_snapshot");
    }

    fn check_restore(&mut self, step: &str) {
        let got = self.restore();
        let want = self.file("reference");
        workload::reference_db(&want, &self.model.committed).unwrap();
        if let Some(d) = workload::difference(&got, &want) {
            panic!("{step}: restore differs from the model: {d}");
        }
    }

    fn add(&mut self, txn: Txn) {
        let added = self.store.add_change(txn.0, &txn.1).unwrap();
        assert_eq!(added, cln_backup::Added::New(self.model.head + 1));
        self.model.added(txn);
    }

    fn repeat(&mut self, on: bool) {
        let txn = (
            self.model.head as u32,
            vec![if on { workload::FOREIGN_KEYS_ON } else { workload::FOREIGN_KEYS_OFF }.to_string()],
        );
        let added = self.store.add_change(txn.0, &txn.1).unwrap();
        assert_eq!(added, cln_backup::Added::Repeated(self.model.head));
        self.model.repeated(txn);
    }

    fn rewind(&mut self) -> bool {
        let allowed = self.model.rewind_allowed();
        match self.store.rewind() {
            Ok(head) => {
                assert!(allowed, "rewind accepted but the model refuses it");
                let gone = self.model.rewound();
                assert_eq!(head, self.model.head);
                // A rewind really removes the change.
                let restored = self.restore();
                if let Some(insert) = gone.1.iter().find(|s| s.starts_with("INSERT INTO parent")) {
                    let id = insert.split("VALUES (").nth(1).and_then(|r| r.split(',').next()).unwrap();
                    assert_eq!(support::count(&restored, "parent", &format!("id = {id}")), 0);
                }
                true
            }
            Err(Error::Rewind { .. }) => {
                assert!(!allowed, "rewind refused but the model allows it");
                false
            }
            Err(e) => panic!("rewind: {e}"),
        }
    }

    fn run(&mut self, op: &Op, step: &str) {
        match op {
            Op::Add => {
                let txn = self.model.next_txn();
                self.add(txn);
            }
            Op::Repeat(on) => self.repeat(*on),
            Op::Rewind => {
                self.rewind();
            }
            Op::DoubleRewind => {
                self.rewind();
                // Whatever the first did, a second in a row is refused.
                let before = self.store.status().unwrap();
                let err = self.store.rewind().unwrap_err();
                assert!(matches!(err, Error::Rewind { .. }), "{step}: {err}");
                assert_eq!(self.store.status().unwrap().seq, before.seq);
            }
            Op::Gap(n) => {
                let head = self.model.head as u32;
                let got = if *n == 0 && head > 0 { head - 1 } else { head.wrapping_add(2 + u32::from(*n)) };
                let err = self.store.add_change(got, &[workload::bump(got)]).unwrap_err();
                assert!(matches!(err, Error::Gap { head: h, got: g, .. } if h == head && g == got), "{step}: {err}");
            }
            Op::Reopen => {
                let store = std::mem::replace(
                    &mut self.store,
                    // A placeholder is not possible with an exclusive lock:
                    // close first by swapping in a store elsewhere.
                    Store::create(self.dir.join(format!("placeholder-{}.redb", self.files))).unwrap(),
                );
                self.files += 1;
                // What the store held in memory is what the file holds: a
                // read-only open (which must not change the file) and a
                // reopen for writing derive the same status.
                let held = status_without_size(&store);
                drop(store);
                let bytes = std::fs::read(&self.path).unwrap();
                let reader = Store::open_read_only(&self.path).unwrap();
                assert_eq!(status_without_size(&reader), held, "{step}: read-only open");
                drop(reader);
                assert!(std::fs::read(&self.path).unwrap() == bytes, "{step}: a read-only open changed the file");
                self.store = Store::open(&self.path).unwrap();
                assert_eq!(status_without_size(&self.store), held, "{step}: reopen");
            }
            Op::Snapshot => {
                if !self.model.foreign_keys {
                    // A snapshot is a stopped node's database: foreign keys on.
                    return;
                }
                let image = self.restore();
                let mut f = std::fs::File::open(&image).unwrap();
                let info = self.store.add_snapshot(self.model.head as u32, &mut f).unwrap();
                assert_eq!(info.seq, self.model.head);
                // A snapshot added by hand replaces every snapshot and record.
                let m = &mut self.model;
                m.snapshots = vec![m.head];
                m.records.clear();
                m.after_snapshot.clear();
            }
            Op::Compact => {
                // Two changes after the newest snapshot at least: one to
                // fold, and the last one, which stays rewindable.
                let m = &self.model;
                let expect = m.head >= 1 && m.head - 1 > m.newest();
                let stats = compact::compact(&self.store, &Default::default()).unwrap();
                assert_eq!(stats.compacted, expect, "{step}: compacted");
                let m = &mut self.model;
                if expect {
                    m.snapshots.push(m.head - 1);
                    let drop = m.snapshots.len().saturating_sub(compact::Retention::DEFAULT_KEEP);
                    m.snapshots.drain(..drop);
                    assert_eq!(stats.snapshots_dropped, drop as u64, "{step}: snapshots_dropped");
                    let base = m.base();
                    let after = &m.after_snapshot;
                    m.records.retain(|&k, _| k > base || (k == base && after.contains(&k)));
                    m.after_snapshot.retain(|&k| k >= base);
                    assert_eq!(stats.snapshot_version, Some((m.head - 1) as u32), "{step}: snapshot_version");
                }
                let kept: Vec<u32> = m.snapshots.iter().map(|&s| s as u32).collect();
                assert_eq!(stats.snapshots_kept, kept, "{step}: snapshots_kept");
                assert_eq!(stats.changes_after, m.records.len() as u64, "{step}: changes_after");
            }
            Op::RestoreAt(n) => {
                let m = &self.model;
                // Version 0 is before any transaction: nothing to compare.
                let lo = m.base().max(1);
                if m.head < lo {
                    return;
                }
                let v = lo + u64::from(*n) % (m.head - lo + 1);
                let txns = m.upto(v);
                let got = self.file("restore-at");
                let report = restore::restore_store(
                    &self.store,
                    &got,
                    &restore::Options { to_version: Some(v), ..Default::default() },
                )
                .unwrap_or_else(|e| panic!("{step}: restore to {v}: {e}"));
                assert_eq!(report.seq, v, "{step}: restored version");
                let want = self.file("reference-at");
                workload::reference_db(&want, &txns).unwrap();
                if let Some(d) = workload::difference(&got, &want) {
                    panic!("{step}: restore to version {v} differs from the model: {d}");
                }
                // Just below the range: refused.
                let base = self.model.base();
                if base > 0 {
                    let below = self.file("below");
                    let err = restore::restore_store(
                        &self.store,
                        &below,
                        &restore::Options { to_version: Some(base - 1), ..Default::default() },
                    );
                    assert!(
                        matches!(err, Err(Error::NotRestorable { asked, .. }) if asked == base - 1),
                        "{step}: restore to {}: {err:?}",
                        base - 1
                    );
                }
            }
            Op::Rebuild => {
                if !self.model.has_schema() {
                    return;
                }
                self.repeat(false);
                let v = (self.model.head + 1) as u32;
                let txn = (
                    v,
                    vec![
                        "CREATE TABLE parent_new (id INTEGER, v TEXT, PRIMARY KEY (id));".into(),
                        "INSERT INTO parent_new SELECT * FROM parent;".into(),
                        "DROP TABLE parent;".into(),
                        "ALTER TABLE parent_new RENAME TO parent;".into(),
                        workload::bump(v),
                    ],
                );
                self.add(txn);
                self.repeat(true);
            }
        }
    }
}

/// A store's status without the file's size, which closing it may change.
fn status_without_size(store: &Store) -> serde_json::Value {
    let mut v = serde_json::to_value(store.status().unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("file_bytes");
    v
}

fn run_sequence(ops: &[Op]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let mut h = Harness {
        dir: dir.path(),
        path: path.clone(),
        store: Store::create(&path).unwrap(),
        model: Model::new(),
        files: 0,
    };
    for (i, op) in ops.iter().enumerate() {
        let step = format!("step {i} ({op:?})");
        h.run(op, &step);
        h.check_status(&step);
        if i % 4 == 3 || matches!(op, Op::Compact | Op::Snapshot | Op::Reopen) {
            h.check_restore(&step);
        }
    }
    h.check_restore("end");
    // Rows really accumulated (so the comparisons compared something) when
    // the sequence added any.
    let adds = h.model.committed.iter().filter(|(_, s)| s[0].starts_with("INSERT INTO parent")).count();
    if adds > 0 {
        let got = h.restore();
        assert_eq!(support::count(&got, "child", "1"), adds as i64);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_model(ops in proptest::collection::vec(op(), 1..24)) {
        run_sequence(&ops);
    }
}

#[test]
fn fixed_sequence_covers_every_operation() {
    use Op::*;
    run_sequence(&[
        Repeat(false),
        Repeat(true),
        Add,
        Add,
        Rewind,
        Add,
        Rebuild,
        Add,
        Compact,
        Rewind,
        DoubleRewind,
        Add,
        Gap(0),
        Gap(3),
        Reopen,
        Add,
        Snapshot,
        Repeat(false),
        Add,
        Compact,
        Repeat(true),
        Add,
        Add,
        DoubleRewind,
        Reopen,
        Compact,
        Rebuild,
        Compact,
        Add,
        RestoreAt(0),
        RestoreAt(7),
    ]);
}

/// More compactions than the retention keeps, with restores of every
/// version still in range, a rewind to the newest snapshot, and a snapshot
/// by hand replacing them all.
#[test]
fn fixed_sequence_over_several_snapshots() {
    use Op::*;
    let mut ops = vec![Add, Add, Add];
    for i in 0..5u16 {
        ops.extend([Add, Add, Compact, RestoreAt(i), RestoreAt(i * 3 + 1), Repeat(false), Repeat(true), Add]);
    }
    ops.extend([
        Compact,
        Rewind,
        RestoreAt(0),
        DoubleRewind,
        Reopen,
        RestoreAt(1),
        Add,
        Add,
        Compact,
        Rebuild,
        Compact,
    ]);
    ops.extend([RestoreAt(2), RestoreAt(5), Snapshot, RestoreAt(0), Add, Compact, Add, Compact, RestoreAt(9)]);
    run_sequence(&ops);
}
