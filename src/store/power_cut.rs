//! Power cuts, I/O errors and a full disk under every store operation
//! (tests only).
//!
//! Each case creates a store on a simulated disk (`sim_disk`), runs a random
//! sequence of operations (changes, repeated-version reports, rewinds,
//! snapshots offered whole, compactions, bulk loads) beside a model of what
//! the store must hold, and fails one disk operation on the way: the power
//! goes, or one write or sync fails with `EIO`, or the disk fills up. The
//! file left at the store's path (the old one or a compaction's new one,
//! whichever the rename left there), with none, all or a random part of
//! what was not synced, is then opened as a store, and must:
//! - open without any repair but redb's own;
//! - hold every operation that returned `Ok`, and of the one that failed
//!   all or nothing (a bulk load: a prefix of its changes);
//! - agree with itself: its status, its snapshots and its log;
//! - restore exactly the model's database, at the head and at the oldest
//!   version it says it can restore;
//! - take the next change.
//!
//! The number of cases is `CLN_BACKUP_POWER_CUTS` (5000 by default); the
//! figures are printed at the end. It must not be used outside tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::sim_disk::{self, Fault, Loss};
use super::Store;
use crate::error::Error;
use crate::version::{bump_statement, data_version, Seq};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Each version's transactions, as statements.
type History = BTreeMap<Seq, Vec<Vec<String>>>;

/// What the store must hold after an operation returned `Ok`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Expect {
    head: Seq,
    rewound_at: Option<Seq>,
    snapshots: Vec<Seq>,
    /// Every version's transactions since the store began (the records a
    /// compaction folded into a snapshot included): what a restore replays.
    history: History,
}

impl Expect {
    fn floor(&self) -> Seq {
        self.snapshots.first().copied().unwrap_or(0)
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn first_change() -> Vec<String> {
    vec![
        "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".into(),
        "INSERT INTO vars VALUES ('data_version', 0)".into(),
        "CREATE TABLE t (v INTEGER, payload TEXT)".into(),
        bump_statement(1),
    ]
}

fn change(v: u32, rng: &mut Rng) -> Vec<String> {
    if v == 1 {
        return first_change();
    }
    // Lengths from a few bytes to several kilobytes, so records move from
    // the tail to recent records and sealed segments, and some spill pages.
    let len = match rng.below(10) {
        0 => 2000 + rng.below(6000),
        1..=3 => 200 + rng.below(800),
        _ => 10 + rng.below(100),
    } as usize;
    let payload: String = (0..len).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
    vec![format!("INSERT INTO t VALUES ({v}, '{payload}')"), bump_statement(v)]
}

/// The database at `upto` as a replay must build it, in a file.
fn reference(history: &History, upto: Seq, path: &Path) {
    let _ = std::fs::remove_file(path);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("PRAGMA synchronous = OFF; BEGIN").unwrap();
    for (_, txns) in history.range(..=upto) {
        for txn in txns {
            for s in txn {
                // A lone foreign-key report changes nothing here (no table
                // has a foreign key), and SQLite ignores it in a transaction.
                conn.execute_batch(s).unwrap();
            }
        }
    }
    conn.execute_batch("COMMIT").unwrap();
}

fn rows(path: &Path) -> Vec<(i64, String)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn.prepare("SELECT v, payload FROM t ORDER BY rowid").unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
}

fn expected_rows(history: &History, upto: Seq) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for (seq, txns) in history.range(..=upto) {
        for s in txns.iter().flatten() {
            if let Some(rest) = s.strip_prefix("INSERT INTO t VALUES (") {
                let payload = rest.split_once(", '").unwrap().1.trim_end_matches("')");
                out.push((i64::from(data_version(*seq)), payload.to_string()));
            }
        }
    }
    out
}

/// What a store says it holds, read back.
fn observe(store: &Store) -> Result<(Expect, History), String> {
    let status = store.status().map_err(|e| format!("status: {e}"))?;
    let reader = store.reader().map_err(|e| format!("reader: {e}"))?;
    let mut records = BTreeMap::new();
    for change in reader.log().map_err(|e| format!("log: {e}"))? {
        let change = change.map_err(|e| format!("log: {e}"))?;
        records.insert(change.seq, change.transactions.into_iter().map(|t| t.statements).collect());
    }
    if status.seq != reader.head() || status.seq != store.head() {
        return Err(format!("status says {}, the reader {}", status.seq, reader.head()));
    }
    if status.changes != reader.change_count() || status.changes != records.len() as u64 {
        return Err(format!(
            "status counts {} changes, the reader {}, the log holds {}",
            status.changes,
            reader.change_count(),
            records.len()
        ));
    }
    let snapshots: Vec<Seq> = status.snapshots.iter().map(|s| s.seq).collect();
    if status.restorable.0 != snapshots.first().copied().unwrap_or_else(|| records.keys().next().map_or(0, |s| s - 1)) {
        // A store without a snapshot restores from its first record's version.
        let first = records.keys().next().copied();
        if !(snapshots.is_empty() && first.is_some_and(|f| status.restorable.0 + 1 == f || status.restorable.0 == 0)) {
            return Err(format!("restorable from {} with snapshots {snapshots:?}", status.restorable.0));
        }
    }
    let seen = Expect { head: status.seq, rewound_at: store.rewound_at(), snapshots, history: BTreeMap::new() };
    Ok((seen, records))
}

/// Whether what was read back is `want`.
fn matches(seen: &Expect, records: &History, want: &Expect) -> Result<(), String> {
    if seen.head != want.head || seen.snapshots != want.snapshots || seen.rewound_at != want.rewound_at {
        return Err(format!(
            "head {} snapshots {:?} rewound {:?}, expected head {} snapshots {:?} rewound {:?}",
            seen.head, seen.snapshots, seen.rewound_at, want.head, want.snapshots, want.rewound_at
        ));
    }
    let floor = want.floor();
    for (seq, txns) in want.history.range(floor + 1..want.head + 1) {
        match records.get(seq) {
            Some(got) if got == txns => {}
            Some(got) => return Err(format!("version {seq}: {got:?}, expected {txns:?}")),
            None => return Err(format!("version {seq} is missing")),
        }
    }
    for (seq, got) in records {
        if *seq < floor || *seq > want.head {
            return Err(format!("a record at {seq}, outside {floor}..={}", want.head));
        }
        // At the oldest snapshot, a record holds reports made after it.
        if *seq == floor && !want.history.get(seq).is_some_and(|all| all.ends_with(got)) {
            return Err(format!("the record at the floor {seq} is {got:?}"));
        }
    }
    Ok(())
}

#[derive(Default, Debug)]
struct Figures {
    cases: u64,
    faults: u64,
    refused_for_space: u64,
    ops_ok: u64,
    ops_failed: u64,
    lost: u64,
    compactions: u64,
    restores: u64,
    torn_images: u64,
    /// Cases whose file at the store's path is the one a compaction's
    /// rename replaced, the rename lost before the directory was synced.
    renames_undone: u64,
}

enum Op {
    Add,
    Repeat,
    Rewind,
    Snapshot,
    Compact,
    Bulk(u32),
}

fn pick(rng: &mut Rng) -> Op {
    match rng.below(100) {
        0..=54 => Op::Add,
        55..=62 => Op::Repeat,
        63..=74 => Op::Rewind,
        75..=79 => Op::Snapshot,
        80..=89 => Op::Compact,
        _ => Op::Bulk(1 + rng.below(20) as u32),
    }
}

/// Run one operation. Returns the states the store may hold if it failed
/// (besides the one before it), and the state after it if it succeeded.
fn run_op(
    op: &Op,
    store: &Store,
    want: &Expect,
    rng: &mut Rng,
    scratch: &Path,
) -> (Result<Expect, Error>, Vec<Expect>) {
    let head = want.head;
    let after = |history: History, head: Seq| -> Expect {
        Expect {
            head,
            rewound_at: store.rewound_at(),
            snapshots: store.status().map(|s| s.snapshots.iter().map(|x| x.seq).collect()).unwrap_or_default(),
            history,
        }
    };
    match op {
        Op::Add => {
            let v = data_version(head) + 1;
            let stmts = change(v, rng);
            let mut history = want.history.clone();
            history.insert(head + 1, vec![stmts.clone()]);
            // If it fails, it may still be whole on disk.
            let maybe = Expect { head: head + 1, history: history.clone(), ..want.clone() };
            match store.add_change(v, &stmts) {
                Ok(_) => (Ok(after(history, head + 1)), vec![]),
                Err(e) => (Err(e), vec![maybe]),
            }
        }
        Op::Repeat => {
            if head == 0 || !want.history.contains_key(&head) {
                return (Ok(want.clone()), vec![]);
            }
            let on = rng.below(2) == 0;
            let stmts = vec![format!("PRAGMA foreign_keys = {};", if on { "ON" } else { "OFF" })];
            let mut history = want.history.clone();
            history.get_mut(&head).unwrap().push(stmts.clone());
            let maybe = Expect { history: history.clone(), ..want.clone() };
            // A newer snapshot at this version is dropped by such a write
            // (see `plan_change`).
            let mut without = maybe.clone();
            if without.snapshots.len() > 1 && without.snapshots.last() == Some(&head) {
                without.snapshots.pop();
            }
            match store.add_change(data_version(head), &stmts) {
                Ok(_) => (Ok(after(history, head)), vec![]),
                Err(e) => (Err(e), vec![maybe, without]),
            }
        }
        Op::Rewind => {
            let mut history = want.history.clone();
            history.remove(&head);
            let maybe = Expect {
                head: head.saturating_sub(1),
                rewound_at: head.checked_sub(1),
                history: history.clone(),
                ..want.clone()
            };
            match store.rewind() {
                Ok(_) => (Ok(after(history, head - 1)), vec![]),
                Err(e) => (Err(e), vec![maybe]),
            }
        }
        Op::Snapshot => {
            if head == 0 {
                return (Ok(want.clone()), vec![]);
            }
            let image = scratch.join("image.sqlite3");
            reference(&want.history, head, &image);
            let mut file = std::fs::File::open(&image).unwrap();
            let maybe = Expect { snapshots: vec![head], rewound_at: want.rewound_at, ..want.clone() };
            match store.add_snapshot(data_version(head), &mut file) {
                Ok(_) => (Ok(after(want.history.clone(), head)), vec![]),
                Err(e) => (Err(e), vec![maybe]),
            }
        }
        Op::Compact => {
            let opts = crate::compact::Options {
                retention: crate::compact::Retention { keep_snapshots: 1 + rng.below(3) as usize, max_age: None },
                ..Default::default()
            };
            // Which snapshots a compaction keeps is its own rule (tested
            // elsewhere); here, whatever it reported must be what survives.
            match crate::compact::compact(store, &opts) {
                Ok(_) => (Ok(after(want.history.clone(), head)), vec![]),
                Err(e) => {
                    // The new file is put in place whole or not at all; which
                    // snapshots it holds is read from the store when it
                    // opens (see `check`).
                    (Err(e), vec![Expect { snapshots: vec![u64::MAX], ..want.clone() }])
                }
            }
        }
        Op::Bulk(n) => {
            let mut history = want.history.clone();
            let mut prefixes = Vec::new();
            let result = (|| {
                let mut load = store.bulk_load()?;
                let mut h = head;
                for _ in 0..*n {
                    let v = data_version(h) + 1;
                    let stmts = change(v, rng);
                    load.add_change(v, &stmts)?;
                    h += 1;
                    history.insert(h, vec![stmts]);
                    prefixes.push(Expect { head: h, history: history.clone(), ..want.clone() });
                }
                load.finish()?;
                Ok(h)
            })();
            match result {
                Ok(h) => (Ok(after(history, h)), vec![]),
                Err(e) => (Err(e), prefixes),
            }
        }
    }
}

fn is_refusal(e: &Error) -> bool {
    matches!(e, Error::Rewind { .. } | Error::SnapshotVersion { .. })
}

/// The store at `path` after the case: open it, find which expected state
/// it holds, restore it, take one more change. Returns what went wrong.
fn check(path: &Path, acked: &Expect, failed: &[Expect], scratch: &Path, figures: &mut Figures) -> Result<(), String> {
    let store = Store::open(path).map_err(|e| format!("the store does not open: {e}"))?;
    let (seen, records) = observe(&store)?;
    let mut candidates: Vec<Expect> = vec![acked.clone()];
    for f in failed {
        if f.snapshots == [u64::MAX] {
            // A compaction that failed: the store holds the state before
            // it, with the snapshots it held then or those the new file had.
            candidates.push(Expect { snapshots: seen.snapshots.clone(), ..f.clone() });
        } else {
            candidates.push(f.clone());
        }
    }
    let mut why = Vec::new();
    let Some(want) = candidates.iter().find(|c| match matches(&seen, &records, c) {
        Ok(()) => true,
        Err(e) => {
            why.push(e);
            false
        }
    }) else {
        if seen.head < acked.head {
            figures.lost += acked.head - seen.head;
        }
        return Err(format!("the store holds none of the expected states: {}", why.join("; ")));
    };
    // Restores: the head, and the oldest version it says it restores.
    let (low, high) = store.status().map_err(|e| e.to_string())?.restorable;
    if high > 0 || !seen.snapshots.is_empty() {
        for to in [high, low] {
            if to == 0 && seen.snapshots.is_empty() {
                continue;
            }
            let dest = scratch.join("restored.sqlite3");
            let _ = std::fs::remove_file(&dest);
            let opts = crate::restore::Options { to_version: Some(to), ..Default::default() };
            crate::restore::restore_store(&store, &dest, &opts).map_err(|e| format!("restore of {to}: {e}"))?;
            figures.restores += 1;
            let got = rows(&dest);
            let expect = expected_rows(&want.history, to);
            if got != expect {
                return Err(format!("the restore of {to} has {} rows, the model {}", got.len(), expect.len()));
            }
            if low == high {
                break;
            }
        }
    }
    // And it goes on.
    let v = data_version(seen.head) + 1;
    let mut rng = Rng(v as u64 | 1);
    store.add_change(v, &change(v, &mut rng)).map_err(|e| format!("the next change after the cut: {e}"))?;
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    PowerCut(Loss),
    Eio(Loss),
    DiskFull,
}

/// One case; `Err` describes a broken rule.
fn case(seed: u64, figures: &mut Figures) -> Result<(), String> {
    let started = std::time::Instant::now();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let disk = sim_disk::attach(dir.path(), rng.next());
    let kind = match rng.below(10) {
        0..=5 => Kind::PowerCut([Loss::All, Loss::Some, Loss::Some, Loss::Nothing][rng.below(4) as usize]),
        6..=7 => Kind::Eio([Loss::All, Loss::Some, Loss::Nothing][rng.below(3) as usize]),
        _ => Kind::DiskFull,
    };
    let store = Store::create(&path).map_err(|e| format!("create: {e}"))?;
    let long = rng.below(12) == 0;
    let ops = if long { 350 + rng.below(100) } else { 5 + rng.below(40) };
    // Where the fault goes: somewhere among the operations' disk writes and
    // syncs (about a dozen a change; a compaction has more).
    let at = 1 + rng.below(ops * 14);
    match kind {
        Kind::PowerCut(_) => disk.fault_in(at, Fault::PowerCut),
        Kind::Eio(_) => disk.fault_in(at, Fault::Eio),
        Kind::DiskFull => {}
    }
    let full_at = rng.below(ops);
    let mut acked = Expect { head: 0, rewound_at: None, snapshots: vec![], history: BTreeMap::new() };
    let mut failed: Vec<Expect> = Vec::new();
    let mut faulted = false;
    for i in 0..ops {
        if matches!(kind, Kind::DiskFull) && i == full_at {
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            disk.set_capacity(Some(len + rng.below(64 << 10)));
        }
        let op = pick(&mut rng);
        let (faults_before, full_before) = disk.counts();
        let timer = std::time::Instant::now();
        let (result, maybe) = run_op(&op, &store, &acked, &mut rng, scratch.path());
        let took = timer.elapsed();
        let (faults_after, full_after) = disk.counts();
        if std::env::var_os("CLN_BACKUP_POWER_CUT_TRACE").is_some() {
            let what = match &op {
                Op::Add => "add".to_string(),
                Op::Repeat => "repeat".into(),
                Op::Rewind => "rewind".into(),
                Op::Snapshot => "snapshot".into(),
                Op::Compact => "compact".into(),
                Op::Bulk(n) => format!("bulk {n}"),
            };
            let got = match &result {
                Ok(e) => format!("ok: head {} snapshots {:?}", e.head, e.snapshots),
                Err(e) => format!("err: {e}"),
            };
            eprintln!(
                "op {i} {what} at head {}: {got} (faults {faults_after}, store head {}) in {took:?}",
                acked.head,
                store.head()
            );
        }
        let hit = faults_after > faults_before || full_after > full_before || faulted;
        match result {
            Ok(next) => {
                figures.ops_ok += 1;
                if matches!(op, Op::Compact) {
                    figures.compactions += 1;
                }
                acked = next;
                failed.clear();
            }
            Err(e) if !hit && is_refusal(&e) => {}
            Err(e) if !hit => return Err(format!("operation {i} failed with no fault injected: {e}")),
            Err(_) => {
                figures.ops_failed += 1;
                faulted = true;
                failed.extend(maybe);
            }
        }
        if disk.is_dead() {
            break;
        }
    }
    figures.cases += 1;
    let (faults, full) = disk.counts();
    figures.faults += faults;
    figures.refused_for_space += full;
    // The process ends (power cut, or the node stops after an error); the
    // disk keeps what it keeps.
    let loss = match kind {
        Kind::PowerCut(loss) | Kind::Eio(loss) => loss,
        Kind::DiskFull => Loss::Nothing,
    };
    if loss == Loss::Some {
        figures.torn_images += 1;
    }
    let ran = started.elapsed();
    drop(store);
    let live = std::fs::metadata(&path).map_err(|e| format!("the store's path: {e}"))?.ino();
    let ino = disk
        .ino_at(&path, disk.coin())
        .map_err(|e| format!("the store's path: {e}"))?
        .ok_or("a lost rename leaves no file at the store's path")?;
    figures.renames_undone += u64::from(ino != live);
    let image = disk.image(ino, loss).ok_or("the file at the store's path was never written")?;
    drop(disk);
    let after = scratch.path().join("after");
    std::fs::create_dir(&after).unwrap();
    let reopened = after.join("s.redb");
    std::fs::write(&reopened, image).unwrap();
    let checked = check(&reopened, &acked, &failed, scratch.path(), figures)
        .map_err(|e| format!("{kind:?}, fault at disk operation {at}: {e}"));
    if std::env::var_os("CLN_BACKUP_POWER_CUT_TRACE").is_some() {
        eprintln!("case {seed}: {ops} operations in {ran:?}, checked in {:?}", started.elapsed() - ran);
    }
    checked
}

#[test]
fn no_acknowledged_operation_is_lost_to_a_power_cut_an_io_error_or_a_full_disk() {
    let cases: u64 = std::env::var("CLN_BACKUP_POWER_CUTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5000);
    let first: u64 = std::env::var("CLN_BACKUP_POWER_CUT_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let started = std::time::Instant::now();
    let workers = 2u64;
    let results: Vec<(Figures, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                s.spawn(move || {
                    let mut figures = Figures::default();
                    let mut problems = Vec::new();
                    let mut seed = first + w;
                    while seed < first + cases {
                        if let Err(e) = case(seed, &mut figures) {
                            problems.push(format!("seed {seed}: {e}"));
                        }
                        seed += workers;
                    }
                    (figures, problems)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut total = Figures::default();
    let mut problems = Vec::new();
    for (f, p) in results {
        total.cases += f.cases;
        total.faults += f.faults;
        total.refused_for_space += f.refused_for_space;
        total.ops_ok += f.ops_ok;
        total.ops_failed += f.ops_failed;
        total.lost += f.lost;
        total.compactions += f.compactions;
        total.restores += f.restores;
        total.torn_images += f.torn_images;
        total.renames_undone += f.renames_undone;
        problems.extend(p);
    }
    eprintln!("power-cut campaign: {total:?} in {:.1} s", started.elapsed().as_secs_f64());
    assert!(problems.is_empty(), "{} of {cases} cases broke a rule:\n{}", problems.len(), problems.join("\n"));
    assert_eq!(total.cases, cases);
    // The campaign reached what it is for.
    assert!(total.faults > cases / 2, "{total:?}");
    assert!(total.compactions > 0 && total.refused_for_space > 0, "{total:?}");
}

#[test]
fn after_a_failed_sync_the_store_writes_nothing_more_and_a_compaction_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let disk = sim_disk::attach(dir.path(), 3);
    let store = Store::create(&path).unwrap();
    let mut rng = Rng(5);
    for v in 1..=3 {
        store.add_change(v, &change(v, &mut rng)).unwrap();
    }
    // The sync of version 4 fails: Linux may already have dropped its pages,
    // while redb's cache still shows them.
    disk.fail_next_sync();
    let e = store.add_change(4, &change(4, &mut rng)).unwrap_err();
    assert!(matches!(e, Error::Storage { .. }), "{e}");
    // Nothing is built on it: no write, no rewind, no compaction (which would
    // publish what redb shows in a new file).
    let again = store.add_change(4, &change(4, &mut rng)).unwrap_err();
    assert!(matches!(again, Error::WriteFailed { .. }), "{again}");
    assert!(again.to_string().contains("opened again"), "{again}");
    assert!(matches!(store.rewind(), Err(Error::WriteFailed { .. })));
    assert!(crate::compact::compact(&store, &Default::default()).is_err());
    drop(store);
    let ino = std::fs::metadata(&path).unwrap().ino();
    let image = disk.image(ino, Loss::Nothing).unwrap();
    let other = tempfile::tempdir().unwrap();
    let reopened = other.path().join("s.redb");
    std::fs::write(&reopened, image).unwrap();
    let store = Store::open(&reopened).unwrap();
    assert_eq!(store.head(), 3, "the change whose sync failed is in the store");
    store.add_change(4, &change(4, &mut rng)).unwrap();
}

/// An import under a power cut at each of its disk operations in turn
/// (the rename and the directory sync that put the store at its target
/// included): it fails and leaves no store at the target, or it returns
/// `Ok`. Either way, the file the disk shows at the target after the crash,
/// if any (a rename not yet synced may or may not have happened), is a
/// whole store, even with every write since the last sync lost.
#[test]
fn an_import_cut_at_any_disk_operation_leaves_no_store_or_a_whole_one() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-4090-backup.dbak");
    let scratch = tempfile::tempdir().unwrap();
    let truth = scratch.path().join("truth.sqlite3");
    crate::legacy::restore_dbak(&fixture, &truth, &Default::default()).unwrap();
    let head = crate::legacy::restorable(&fixture, None).unwrap().head;
    // How many disk operations a whole import makes.
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let disk = sim_disk::attach(dir.path(), 1);
        crate::legacy::import_new(&fixture, &dir.path().join("s.redb")).unwrap();
        disk.ops()
    };
    assert!(total > 3, "{total}");
    let (mut failed, mut returned, mut after_crash) = (0, 0, 0);
    for cut in 1..=total + 1 {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("s.redb");
        let disk = sim_disk::attach(dir.path(), cut);
        disk.fault_in(cut, Fault::PowerCut);
        match crate::legacy::import_new(&fixture, &target) {
            Err(_) => {
                failed += 1;
                assert!(!target.exists(), "cut {cut}: a failed import left a store");
            }
            Ok(_) => returned += 1,
        }
        for (lose_renames, loss) in [(true, Loss::All), (false, Loss::All), (false, Loss::Nothing)] {
            let Some(ino) = disk.ino_at(&target, lose_renames).unwrap() else { continue };
            after_crash += 1;
            let image = disk.image(ino, loss).unwrap();
            let other = tempfile::tempdir().unwrap();
            let reopened = other.path().join("s.redb");
            std::fs::write(&reopened, image).unwrap();
            let store = Store::open(&reopened).unwrap_or_else(|e| panic!("cut {cut}, {lose_renames}, {loss:?}: {e}"));
            assert_eq!(
                store.head(),
                head,
                "cut {cut}, {lose_renames}, {loss:?}: the import's changes are not all on disk"
            );
            let dest = scratch.path().join(format!("restored-{cut}-{lose_renames}-{loss:?}.sqlite3"));
            crate::restore::restore_store(&store, &dest, &Default::default()).unwrap();
            let differs =
                crate::compare::compare_databases(&dest, &truth, crate::compare::Labels::RESTORED_AND_EXPECTED)
                    .unwrap();
            assert!(differs.is_none(), "cut {cut}, {loss:?}: {differs:?}");
        }
    }
    eprintln!(
        "import cut at each of {} disk operations: failed with no store {failed}, returned Ok {returned}; \
         stores at the target after the crash {after_crash}, each whole",
        total + 1
    );
    assert!(failed > 0 && returned > 0 && after_crash > 2, "failed {failed}, returned {returned}, {after_crash}");
}

/// A compaction under a power cut at each of its disk operations in turn,
/// its new file's rename and the directory sync after it included. Whatever
/// the compaction answered, the file the disk shows at the store's path
/// after the crash (the old one when the rename was not yet synced, or the
/// new one), with none, some or all of what was not synced, is a whole
/// store that restores the database.
#[test]
fn a_compaction_cut_at_each_disk_operation_leaves_a_whole_store_at_the_path() {
    const CHANGES: u32 = 60;
    let changes: Vec<Vec<String>> = {
        let mut rng = Rng(11);
        (1..=CHANGES).map(|v| change(v, &mut rng)).collect()
    };
    let scratch = tempfile::tempdir().unwrap();
    let setup = |dir: &Path, seed: u64| {
        let disk = sim_disk::attach(dir, seed);
        let store = Store::create(dir.join("s.redb")).unwrap();
        for (v, c) in (1..).zip(&changes) {
            store.add_change(v, c).unwrap();
        }
        (disk, store)
    };
    let truth = {
        let dir = tempfile::tempdir().unwrap();
        let (_disk, store) = setup(dir.path(), 1);
        crate::restore::restore_store(&store, &scratch.path().join("truth.sqlite3"), &Default::default()).unwrap();
        scratch.path().join("truth.sqlite3")
    };
    let total = {
        let dir = tempfile::tempdir().unwrap();
        let (disk, store) = setup(dir.path(), 1);
        let before = disk.ops();
        crate::compact::compact(&store, &Default::default()).unwrap();
        disk.ops() - before
    };
    let (mut failed, mut old_file, mut new_file) = (0, 0, 0);
    for cut in 1..=total + 1 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (disk, store) = setup(dir.path(), cut);
        let old_ino = std::fs::metadata(&path).unwrap().ino();
        disk.fault_in(cut, Fault::PowerCut);
        failed += u64::from(crate::compact::compact(&store, &Default::default()).is_err());
        drop(store);
        for (lose_renames, loss) in
            [true, false].into_iter().flat_map(|r| [(r, Loss::All), (r, Loss::Some), (r, Loss::Nothing)])
        {
            let ino =
                disk.ino_at(&path, lose_renames).unwrap().unwrap_or_else(|| panic!("cut {cut}: no file at the path"));
            if ino == old_ino {
                old_file += 1;
            } else {
                new_file += 1;
            }
            let other = tempfile::tempdir().unwrap();
            let reopened = other.path().join("s.redb");
            std::fs::write(&reopened, disk.image(ino, loss).unwrap()).unwrap();
            let store = Store::open(&reopened).unwrap_or_else(|e| panic!("cut {cut}, {lose_renames}, {loss:?}: {e}"));
            assert_eq!(store.head(), Seq::from(CHANGES), "cut {cut}, {loss:?}");
            let dest = other.path().join("restored.sqlite3");
            crate::restore::restore_store(&store, &dest, &Default::default())
                .unwrap_or_else(|e| panic!("cut {cut}, {lose_renames}, {loss:?}: {e}"));
            let differs =
                crate::compare::compare_databases(&dest, &truth, crate::compare::Labels::RESTORED_AND_EXPECTED)
                    .unwrap();
            assert!(differs.is_none(), "cut {cut}, {loss:?}: {differs:?}");
        }
    }
    eprintln!(
        "compaction cut at each of {} disk operations: {failed} failed; the file at the path after the crash \
         (6 losses each): the old one {old_file} times, the new one {new_file}",
        total + 1
    );
    // Cuts before the rename fail it; those after the directory sync come
    // once the new file is published, and it is shown whatever is lost.
    assert!(failed > 0 && failed < total, "failed {failed} of {total}");
    assert!(new_file >= 4 && old_file > new_file, "old {old_file}, new {new_file}");
}
