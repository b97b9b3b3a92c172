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
    if !err.contains(&store.display().to_string()) {
        return Err(format!("{what}: the error does not name the store: {err:?}"));
    }
    // Damaged, or (the magic itself flipped) not recognisable as a store.
    if !err.contains("the store is damaged") && !err.contains("not a cln-backup store") {
        return Err(format!("{what}: the error does not say the store is damaged: {err:?}"));
    }
    Ok(false)
}

#[test]
fn a_flipped_byte_anywhere_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let original = build_store(dir.path());
    let bytes = std::fs::read(&original).unwrap();
    let truth = dir.path().join("truth.sqlite3");
    let out = binary(&[&"restore", &original, &truth]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Every page's first bytes (its kind and entry count: where redb meets
    // damage with a panic), offsets spread over the whole file, random ones
    // from a fixed seed, and the file header.
    let len = bytes.len() as u64;
    let mut rng = Rng::new(2024);
    let mut offsets: Vec<(u64, u8)> = (0..len / 4096).map(|p| (p * 4096 + rng.below(4), 1u8 << rng.below(8))).collect();
    offsets.extend((0..100u64).map(|i| (i * len / 100 + 7 * i % 61, 0xFF)));
    offsets.extend((0..100).map(|_| (rng.below(len), 1u8 << rng.below(8))));
    offsets.extend((0..16).map(|_| (rng.below(512), 1u8 << rng.below(8))));

    let work = |worker: usize, chunk: &[(u64, u8)]| -> (Vec<String>, usize, usize) {
        let mut problems = Vec::new();
        let (mut damaged, mut restored) = (0, 0);
        let copy = dir.path().join(format!("damaged-{worker}.redb"));
        let dest = dir.path().join(format!("restored-{worker}.sqlite3"));
        for &(offset, mask) in chunk {
            let mut flipped = bytes.clone();
            flipped[offset as usize] ^= mask;
            std::fs::write(&copy, &flipped).unwrap();
            let what = |cmd: &str| format!("{cmd} with byte {offset} ^ {mask:#04x}");
            match check(&binary(&[&"verify", &copy]), &copy, &what("verify")) {
                Ok(ok) => damaged += usize::from(!ok),
                Err(e) => problems.push(e),
            }
            let _ = std::fs::remove_file(&dest);
            match check(&binary(&[&"restore", &copy, &dest]), &copy, &what("restore")) {
                Ok(true) => {
                    restored += 1;
                    if let Some(d) = support::workload::difference(&dest, &truth) {
                        problems.push(format!("{}: restored a different database: {d}", what("restore")));
                    }
                }
                Ok(false) => {}
                Err(e) => problems.push(e),
            }
        }
        (problems, damaged, restored)
    };
    let half = offsets.len() / 2;
    let (a, b) = std::thread::scope(|s| {
        let first = s.spawn(|| work(0, &offsets[..half]));
        let second = s.spawn(|| work(1, &offsets[half..]));
        (first.join().unwrap(), second.join().unwrap())
    });
    let problems: Vec<String> = a.0.into_iter().chain(b.0).collect();
    let (damaged, restored) = (a.1 + b.1, a.2 + b.2);
    eprintln!("{} offsets: verify refused {damaged}, restore succeeded {restored}", offsets.len());
    assert!(
        problems.is_empty(),
        "{} of {} runs broke a rule:\n{}",
        problems.len(),
        offsets.len() * 2,
        problems.join("\n")
    );
    // The sweep reached damage that matters, not only free space.
    assert!(damaged > 20, "only {damaged} flips were noticed");
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
