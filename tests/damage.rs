//! A damaged store is one clear error: a byte flipped anywhere in the file
//! makes `verify` and `restore` either succeed with the true database or fail
//! with one stderr line naming the file, never with a panic message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::Store;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::add_all;
use support::run::command;
use support::workload::{Rng, Workload};

fn binary(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    command().args(args).env("RUST_BACKTRACE", "1").output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A store with every kind of page: a snapshot (from a compaction), sealed
/// segments (the tail passed its sealing length) and a tail.
fn build_store(dir: &Path) -> PathBuf {
    let path = dir.join("node.redb");
    let txns = Workload::generate(11, 380);
    let store = Store::create(&path).unwrap();
    add_all(&store, &txns[..40]);
    assert!(cln_backup::compact::compact(&store, &Default::default()).unwrap().compacted);
    add_all(&store, &txns[40..]);
    let status = store.status().unwrap();
    assert!(status.snapshot.is_some());
    let reader = store.reader().unwrap();
    // More records than the tail ever holds: some are sealed.
    assert!(reader.change_count() > 300, "{}", reader.change_count());
    drop(reader);
    drop(store);
    path
}

/// What one run on a damaged copy showed, if it broke a rule.
fn check(out: &Output, store: &Path, what: &str) -> Result<bool, String> {
    let ok = one_line_naming(out, store, what)?;
    if !ok {
        let err = text(&out.stderr);
        // Damaged, or (the magic itself flipped) not recognisable as a store.
        if !err.contains("the store is damaged") && !err.contains("not a cln-backup store") {
            return Err(format!("{what}: the error does not say the store is damaged: {err:?}"));
        }
    }
    Ok(ok)
}

/// Success (`true`), or a failure in one line naming `file` (`false`);
/// never a panic or a signal.
fn one_line_naming(out: &Output, file: &Path, what: &str) -> Result<bool, String> {
    let err = text(&out.stderr);
    if err.contains("panicked") || err.contains("stack backtrace") {
        return Err(format!("{what}: a panic reached stderr: {err:?}"));
    }
    if err.lines().count() > 1 {
        return Err(format!("{what}: stderr is more than one line: {err:?}"));
    }
    if out.status.success() {
        return Ok(true);
    }
    if out.status.code().is_none() {
        return Err(format!("{what}: killed by a signal ({:?}): {err:?}", out.status));
    }
    if !err.contains(&file.display().to_string()) {
        return Err(format!("{what}: the error does not name the file: {err:?}"));
    }
    Ok(false)
}

/// `source` restored (at `to_version`, or its head) into `dest`, which
/// must succeed: the truth a damaged copy is compared with.
fn restored(source: &Path, to_version: Option<u32>, dest: PathBuf) -> PathBuf {
    let v = to_version.map(|v| v.to_string());
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"restore"];
    if let Some(v) = &v {
        args.extend([&"--to-version" as &dyn AsRef<std::ffi::OsStr>, v]);
    }
    args.extend([&source as &dyn AsRef<std::ffi::OsStr>, &dest]);
    let out = binary(&args);
    assert!(out.status.success(), "{}", text(&out.stderr));
    dest
}

/// One way of damaging a file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    /// A byte XORed with a mask.
    Flip(u64, u8),
    /// A 512-byte sector zeroed (a disk that lost a write).
    Zero(u64),
    /// The file cut to this length.
    Truncate(u64),
}

impl Damage {
    fn apply(self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        match self {
            Damage::Flip(at, mask) => out[at as usize] ^= mask,
            Damage::Zero(at) => {
                let end = (at as usize + 512).min(out.len());
                out[at as usize..end].fill(0);
            }
            Damage::Truncate(len) => out.truncate(len as usize),
        }
        out
    }
}

/// What a sweep found.
#[derive(Default)]
struct Tally {
    problems: Vec<String>,
    /// `verify` refused.
    noticed: usize,
    /// `restore` of the head succeeded (each compared with the truth).
    restored: usize,
    /// `restore --to-version` below the damage succeeded after the head's
    /// restore failed (each compared with the truth at that version).
    restored_below: usize,
}

/// Damage copies of `original` (named `name` in each worker's directory) in
/// every way of `cases`, on two threads, and run `verify` and `restore` on
/// each: either the true database or a failure as `rule` wants it, never
/// a panic. When the head does not restore and `below` names a version and
/// its true database, `restore --to-version` of it is tried too.
type Rule = fn(&Output, &Path, &str) -> Result<bool, String>;

fn sweep(
    dir: &Path,
    original: &[u8],
    name: &str,
    rule: Rule,
    truth: &Path,
    below: Option<(u64, &Path)>,
    cases: &[Damage],
) -> Tally {
    let work = |worker: usize, chunk: &[Damage]| -> Tally {
        let mut t = Tally::default();
        let copy = dir.join(format!("damaged-{worker}-{name}"));
        let dest = dir.join(format!("restored-{worker}.sqlite3"));
        for &damage in chunk {
            std::fs::write(&copy, damage.apply(original)).unwrap();
            let what = |cmd: &str| format!("{cmd} with {damage:?}");
            match rule(&binary(&[&"verify", &copy]), &copy, &what("verify")) {
                Ok(ok) => t.noticed += usize::from(!ok),
                Err(e) => t.problems.push(e),
            }
            let _ = std::fs::remove_file(&dest);
            match rule(&binary(&[&"restore", &copy, &dest]), &copy, &what("restore")) {
                Ok(true) => {
                    t.restored += 1;
                    if let Some(d) = support::workload::difference(&dest, truth) {
                        t.problems.push(format!("{}: restored a different database: {d}", what("restore")));
                    }
                }
                Ok(false) => {
                    let Some((version, at)) = below else { continue };
                    let _ = std::fs::remove_file(&dest);
                    let v = version.to_string();
                    let out = binary(&[&"restore", &"--to-version", &v, &copy, &dest]);
                    match rule(&out, &copy, &what("restore --to-version")) {
                        Ok(true) => {
                            t.restored_below += 1;
                            if let Some(d) = support::workload::difference(&dest, at) {
                                t.problems
                                    .push(format!("{}: restored a different database: {d}", what("restore below")));
                            }
                        }
                        Ok(false) => {}
                        Err(e) => t.problems.push(e),
                    }
                }
                Err(e) => t.problems.push(e),
            }
        }
        t
    };
    let half = cases.len() / 2;
    let (a, b) = std::thread::scope(|s| {
        let first = s.spawn(|| work(0, &cases[..half]));
        let second = s.spawn(|| work(1, &cases[half..]));
        (first.join().unwrap(), second.join().unwrap())
    });
    Tally {
        problems: a.problems.into_iter().chain(b.problems).collect(),
        noticed: a.noticed + b.noticed,
        restored: a.restored + b.restored,
        restored_below: a.restored_below + b.restored_below,
    }
}

fn assert_no_problems(t: &Tally, runs: usize) {
    assert!(t.problems.is_empty(), "{} of {runs} cases broke a rule:\n{}", t.problems.len(), t.problems.join("\n"));
}

#[test]
fn a_flipped_byte_anywhere_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let original = build_store(dir.path());
    let bytes = std::fs::read(&original).unwrap();
    let truth = restored(&original, None, dir.path().join("truth.sqlite3"));

    // Every page's first bytes (its kind and entry count: where redb meets
    // damage with a panic), offsets spread over the whole file, random ones
    // from a fixed seed, and the file header.
    let len = bytes.len() as u64;
    let mut rng = Rng::new(2024);
    let mut cases: Vec<Damage> =
        (0..len / 4096).map(|p| Damage::Flip(p * 4096 + rng.below(4), 1u8 << rng.below(8))).collect();
    cases.extend((0..100u64).map(|i| Damage::Flip(i * len / 100 + 7 * i % 61, 0xFF)));
    cases.extend((0..100).map(|_| Damage::Flip(rng.below(len), 1u8 << rng.below(8))));
    cases.extend((0..16).map(|_| Damage::Flip(rng.below(512), 1u8 << rng.below(8))));
    let t = sweep(dir.path(), &bytes, "node.redb", check, &truth, None, &cases);
    eprintln!("{} flips: verify refused {}, restore succeeded {}", cases.len(), t.noticed, t.restored);
    assert_no_problems(&t, cases.len() * 2);
    // The sweep reached damage that matters, not only free space.
    assert!(t.noticed > 20, "only {} flips were noticed", t.noticed);
}

#[test]
fn zeroed_sectors_and_truncations_are_one_clear_line_and_older_versions_still_restore() {
    let dir = tempfile::tempdir().unwrap();
    let original = build_store(dir.path());
    let bytes = std::fs::read(&original).unwrap();
    let truth = restored(&original, None, dir.path().join("truth.sqlite3"));
    // The snapshot's version: below every record but the first.
    let snapshot = Store::open_read_only(&original).unwrap().status().unwrap().snapshots[0].version;
    let at_snapshot = restored(&original, Some(snapshot), dir.path().join("truth-at-snapshot.sqlite3"));

    // A zeroed sector in every page (each page kind: redb's headers and
    // trees, snapshot chunks, sealed segments, tail records, metadata), and
    // the file cut at 48 lengths and at every page boundary of its last 16.
    let len = bytes.len() as u64;
    let mut rng = Rng::new(77);
    let mut cases: Vec<Damage> = (0..len / 4096).map(|p| Damage::Zero(p * 4096 + 512 * rng.below(8))).collect();
    cases.extend((1..48u64).map(|i| Damage::Truncate(i * len / 48 + rng.below(512))));
    cases.extend((1..=16u64).map(|i| Damage::Truncate(len - i * 4096)));
    let t = sweep(dir.path(), &bytes, "node.redb", check, &truth, Some((u64::from(snapshot), &at_snapshot)), &cases);
    eprintln!(
        "{} zeroed sectors and truncations: verify refused {}, restore succeeded {}, restore --to-version {snapshot} after a failed one {}",
        cases.len(),
        t.noticed,
        t.restored,
        t.restored_below
    );
    assert_no_problems(&t, cases.len() * 2);
    assert!(t.noticed > 20, "only {} cases were noticed", t.noticed);
}

/// The Python plugin's `.dbak` carries no checksum of its own (a flipped
/// bit in a statement's text can be another valid statement, which no
/// reader can tell from the real one), so its sweep is of what a disk does
/// to a file: sectors lost and the file cut short. Each case is the true
/// database or one line naming the file, never a panic; where the head
/// does not restore, a version 40% into the file does when the damage is
/// past it, and equals the truth there.
#[test]
fn zeroed_sectors_and_truncations_of_a_dbak_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pre-4090-backup.dbak");
    let bytes = std::fs::read(&fixture).unwrap();
    let truth = restored(&fixture, None, dir.path().join("truth.sqlite3"));
    // A version 40% into the file: damage past it leaves it restorable.
    let records = cln_backup::legacy::DbakReader::open(&fixture).unwrap().scan().unwrap();
    let middle = records.iter().find(|r| r.offset > bytes.len() as u64 * 2 / 5).unwrap().version - 1;
    let at_middle = restored(&fixture, Some(middle), dir.path().join("truth-at-middle.sqlite3"));
    let len = bytes.len() as u64;
    let mut rng = Rng::new(5);
    // Truncations and zeroed sectors (a lost write) all over the file; the
    // header's 512 bytes among them.
    let mut cases: Vec<Damage> = (0..len / 512).map(|s| Damage::Zero(s * 512)).collect();
    cases.extend((1..64u64).map(|i| Damage::Truncate(i * len / 64 + rng.below(64))));
    let t =
        sweep(dir.path(), &bytes, "node.dbak", one_line_naming, &truth, Some((u64::from(middle), &at_middle)), &cases);
    eprintln!(
        "{} zeroed sectors and truncations of a .dbak: restore succeeded {}, restore --to-version {middle} after a failed one {}",
        cases.len(),
        t.restored,
        t.restored_below
    );
    assert_no_problems(&t, cases.len() * 2);
    // verify refuses a .dbak whole (import it first); restore is the one
    // that reads it, and most damage must stop it.
    assert!(cases.len() - t.restored > 20, "only {} of {} cases were refused", cases.len() - t.restored, cases.len());
    // Damage past the middle leaves the middle restorable.
    assert!(t.restored_below > 20, "only {} restores before the damage", t.restored_below);
}

#[test]
fn a_store_that_is_not_redb_is_not_called_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.txt");
    std::fs::write(&path, "hello, not a store\n").unwrap();
    let out = binary(&[&"verify", &path]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(!err.contains("damaged"), "{err:?}");
    // A readable redb file without a store's tables is not a store either.
    let other = dir.path().join("other.redb");
    let db = redb::Database::create(&other).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(redb::TableDefinition::<u64, u64>::new("unrelated")).unwrap();
    txn.commit().unwrap();
    drop(db);
    let e = Store::open_read_only(&other).unwrap_err();
    assert!(matches!(e, cln_backup::Error::NotAStore { .. }), "{e}");
    // A store whose header is cut short is damaged.
    let store = build_small(dir.path());
    let bytes = std::fs::read(&store).unwrap();
    let cut = dir.path().join("cut.redb");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let out = binary(&[&"verify", &cut]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(err.contains("damaged") && err.contains(&cut.display().to_string()), "{err:?}");
}

fn build_small(dir: &Path) -> PathBuf {
    let path = dir.join("small.redb");
    let store = Store::create(&path).unwrap();
    add_all(&store, &Workload::generate(3, 40));
    drop(store);
    path
}
