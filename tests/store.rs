//! Bad input to the store: each a clear, typed error naming the file, and
//! nothing lost. Also the add_change and rewind rules at their edges.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::restore::{self, Options};
use cln_backup::{Error, Store};
use std::path::{Path, PathBuf};
use support::workload::{self, Txn, Workload};
use support::{add_all, reference, restore_to};

fn names(err: &Error, path: &Path) {
    let shown = err.to_string();
    assert!(shown.contains(&path.display().to_string()), "error does not name {}: {shown}", path.display());
}

fn store_with(dir: &Path, txns: &[Txn]) -> (Store, PathBuf) {
    let path = dir.join("node.redb");
    let store = Store::create(&path).unwrap();
    add_all(&store, txns);
    (store, path)
}

/// Open the store at `path` and restore it to `dest`.
fn open_and_restore(path: &Path, dest: &Path) -> cln_backup::Result<()> {
    let store = Store::open(path)?;
    restore::restore_store(&store, dest, &Options::default())?;
    Ok(())
}

/// Run `f`, turning a panic into a test failure that says what panicked.
fn no_panic<T>(what: &str, f: impl FnOnce() -> T + std::panic::UnwindSafe) -> T {
    match std::panic::catch_unwind(f) {
        Ok(v) => v,
        Err(p) => {
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{what} panicked instead of returning an error: {msg}");
        }
    }
}

#[test]
fn corrupted_redb_file_is_an_error_never_a_wrong_restore() {
    let dir = tempfile::tempdir().unwrap();
    let txns = Workload::generate(21, 200);
    let (store, path) = store_with(dir.path(), &txns);
    drop(store);
    let want = reference(dir.path(), "reference.sqlite3", &txns);
    let original = std::fs::read(&path).unwrap();

    // Garbage over the middle half of the file: must be refused.
    let bad = dir.path().join("bad.redb");
    let mut bytes = original.clone();
    let (a, b) = (bytes.len() / 4, bytes.len() * 3 / 4);
    let mut rng = workload::Rng::new(5);
    bytes[a..b].copy_from_slice(&rng.bytes(b - a));
    std::fs::write(&bad, &bytes).unwrap();
    let dest = dir.path().join("from-bad.sqlite3");
    let err = no_panic("restore of a corrupted store", || open_and_restore(&bad, &dest))
        .expect_err("a store with its middle overwritten must not restore");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    names(&err, &bad);
    assert!(!dest.exists(), "a failed restore left a file behind");

    // Smaller overwrites at several places: each either refused as corrupt,
    // or (where it hit a free page) a restore equal to the reference.
    let mut refused = 0;
    for k in 1..8 {
        let at = original.len() * k / 8;
        let mut bytes = original.clone();
        let end = (at + 512).min(bytes.len());
        bytes[at..end].fill(0x5a);
        let bad = dir.path().join(format!("bad-{k}.redb"));
        std::fs::write(&bad, &bytes).unwrap();
        let dest = dir.path().join(format!("from-bad-{k}.sqlite3"));
        match no_panic("restore of a corrupted store", || open_and_restore(&bad, &dest)) {
            Ok(()) => workload::assert_same_db(&dest, &want),
            Err(err) => {
                assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
                names(&err, &bad);
                assert!(!dest.exists());
                refused += 1;
            }
        }
    }
    assert!(refused > 0, "no overwrite was detected");
    // The original is untouched and still restores.
    let ok = dir.path().join("ok.sqlite3");
    open_and_restore(&path, &ok).unwrap();
    workload::assert_same_db(&ok, &want);
}

fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
}

#[test]
fn one_flipped_byte_in_a_stored_record_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(22);
    let mut txns: Vec<Txn> = (0..20).map(|_| w.next_txn()).collect();
    // A change with a distinctive, incompressible 64-byte signature, stored
    // raw by the blob-aware encoding: find it in the file.
    let sig = w.rng().bytes(64);
    let channel = w.open_channels()[0];
    txns.push(w.commit(vec![format!(
        "INSERT INTO htlc_sigs (channelid, signature) VALUES ({channel}, {})",
        workload::blob_literal(&sig)
    )]));
    // Records after it, so that only the hash chain (not the tail read at
    // open) can notice.
    txns.extend((0..10).map(|_| w.next_txn()));
    let (store, path) = store_with(dir.path(), &txns);
    drop(store);
    let want = reference(dir.path(), "reference.sqlite3", &txns);
    let original = std::fs::read(&path).unwrap();
    let found = find_all(&original, &sig);
    assert!(!found.is_empty(), "the signature is not stored raw");

    let mut caught = 0;
    for (n, at) in found.iter().enumerate() {
        for offset in [0usize, 31, 63] {
            let mut bytes = original.clone();
            bytes[at + offset] ^= 0x01;
            let bad = dir.path().join(format!("flip-{n}-{offset}.redb"));
            std::fs::write(&bad, &bytes).unwrap();
            let dest = dir.path().join(format!("flip-{n}-{offset}.sqlite3"));
            match no_panic("restore with a flipped byte", || open_and_restore(&bad, &dest)) {
                // A stale copy of the page (redb is copy-on-write): harmless,
                // and the restore must still be exact.
                Ok(()) => workload::assert_same_db(&dest, &want),
                Err(err) => {
                    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
                    names(&err, &bad);
                    assert!(!dest.exists());
                    caught += 1;
                }
            }
        }
    }
    assert!(caught >= 3, "the live record's flipped bytes were not all caught");
}

#[test]
fn unrelated_files_are_not_stores() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "just some text, long enough to read a header from\n").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let sqlite = reference(dir.path(), "lightningd.sqlite3", &Workload::generate(1, 3));
    for path in [&text, &empty, &sqlite, &dir.path().to_path_buf()] {
        let before = std::fs::read(path).ok();
        let err = Store::open(path).unwrap_err();
        assert!(matches!(err, Error::NotAStore { .. }), "{}: {err:?}", path.display());
        names(&err, path);
        assert_eq!(std::fs::read(path).ok(), before, "{} was modified", path.display());
    }
    let missing = dir.path().join("missing.redb");
    let err = Store::open(&missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    names(&err, &missing);
    assert!(!missing.exists(), "opening created the file");
}

#[test]
fn redb_file_of_another_application_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("counters");
            let mut t = txn.open_table(def).unwrap();
            t.insert("hits", 7).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    names(&err, &path);
    // Still the other application's file, with its data.
    let db = redb::Database::open(&path).unwrap();
    let txn = redb::ReadableDatabase::begin_read(&db).unwrap();
    let def: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("counters");
    let t = txn.open_table(def).unwrap();
    assert_eq!(t.get("hits").unwrap().unwrap().value(), 7);
}

#[test]
fn newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let txns = Workload::generate(23, 5);
    let (store, path) = store_with(dir.path(), &txns);
    drop(store);
    {
        let db = redb::Database::open(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
            let mut t = txn.open_table(def).unwrap();
            t.insert("format", 999u32.to_le_bytes().as_slice()).unwrap();
        }
        txn.commit().unwrap();
    }
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::FormatTooNew { found: 999, .. }), "{err:?}");
    names(&err, &path);
}

#[test]
fn existing_restore_destination_is_refused_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let txns = Workload::generate(24, 10);
    let (store, _) = store_with(dir.path(), &txns);
    let dest = dir.path().join("lightningd.sqlite3");
    std::fs::write(&dest, b"the node's live database").unwrap();
    for target in [dest.clone(), dir.path().to_path_buf()] {
        let err = restore::restore_store(&store, &target, &Options::default()).unwrap_err();
        assert!(matches!(err, Error::DestinationExists { .. }), "{err:?}");
        names(&err, &dest);
        assert_eq!(std::fs::read(&dest).unwrap(), b"the node's live database");
    }
    // No temporary file left beside it.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".cln-backup"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Asked to replace it, it does.
    let opts = Options { force: true, ..Options::default() };
    restore::restore_store(&store, dir.path(), &opts).unwrap();
    workload::assert_same_db(&dest, &reference(dir.path(), "reference.sqlite3", &txns));
}

const HOLDER_ENV: &str = "CLN_BACKUP_TEST_OPEN_HELD_STORE";

#[test]
fn second_opener_is_refused_in_this_process() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_with(dir.path(), &Workload::generate(25, 3));
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::StoreLocked { .. }), "{err:?}");
    names(&err, &path);
    // The holder goes on working, and after it closes the store opens.
    let mut w = Workload::new(25);
    for _ in 0..3 {
        w.next_txn();
    }
    let next = w.next_txn();
    store.add_change(next.0, &next.1).unwrap();
    drop(store);
    assert_eq!(Store::open(&path).unwrap().version(), 4);
}

#[test]
fn second_process_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = store_with(dir.path(), &Workload::generate(26, 3));
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "open_held_store_in_child", "--ignored", "--nocapture"])
        .env(HOLDER_ENV, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("refused as expected"),
        "child: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(store);
}

/// Run by [`second_process_is_refused`] in a child process while the parent
/// holds the store.
#[test]
#[ignore = "run in a child process by second_process_is_refused"]
fn open_held_store_in_child() {
    let path = PathBuf::from(std::env::var_os(HOLDER_ENV).expect("run by the parent test"));
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, Error::StoreLocked { .. }), "{err:?}");
    names(&err, &path);
    println!("refused as expected: {err}");
}

#[test]
fn store_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    drop(Store::create(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let err = Store::create(&path).unwrap_err();
    assert!(matches!(err, Error::AlreadyExists { .. }), "{err:?}");
    names(&err, &path);
}

/// Status, and a restore, unchanged by a refused call.
fn unchanged(store: &Store, dir: &Path, txns: &[Txn], tag: &str) {
    let st = store.status().unwrap();
    assert_eq!(st.version, txns.last().unwrap().0, "{tag}");
    assert_eq!(st.changes, txns.len() as u64, "{tag}");
    let got = restore_to(store, dir, &format!("{tag}.sqlite3"), None);
    workload::assert_same_db(&got, &reference(dir, &format!("{tag}-ref.sqlite3"), txns));
}

#[test]
fn add_change_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = Workload::new(27);
    let txns: Vec<Txn> = (0..5).map(|_| w.next_txn()).collect();
    let (store, _) = store_with(dir.path(), &txns);
    let head = w.version();
    let next = w.next_txn();
    assert_eq!(next.0, head + 1);
    let body = &next.1[..next.1.len() - 1];

    let empty: [&str; 0] = [];
    let err = store.add_change(head + 1, &empty).unwrap_err();
    assert!(matches!(err, Error::EmptyChange { version } if version == head + 1), "{err}");

    // No bump, or a bump from the wrong version.
    let err = store.add_change(head + 1, body).unwrap_err();
    assert!(matches!(err, Error::MissingBump { expected_from, .. } if expected_from == head), "{err}");
    let mut wrong = body.to_vec();
    wrong.push(workload::bump(head + 2));
    let err = store.add_change(head + 1, &wrong).unwrap_err();
    assert!(matches!(err, Error::MissingBump { .. }), "{err}");
    // The bump not last.
    let mut misplaced = next.1.clone();
    misplaced.rotate_right(1);
    let err = store.add_change(head + 1, &misplaced).unwrap_err();
    assert!(matches!(err, Error::MissingBump { .. }), "{err}");

    // The head's version again, with a bump: an uncommitted replacement.
    let err = store.add_change(head, &[workload::bump(head)]).unwrap_err();
    assert!(matches!(err, Error::RepeatWithBump { version } if version == head), "{err}");

    // Gaps ahead and behind.
    for got in [head + 2, head - 1, 0, u32::MAX] {
        let err = store.add_change(got, &[workload::bump(got)]).unwrap_err();
        assert!(
            matches!(err, Error::Gap { head: h, expected, got: g } if h == head && expected == head + 1 && g == got),
            "{err}"
        );
    }
    unchanged(&store, dir.path(), &txns, "after-refusals");

    // And the right change still goes in.
    store.add_change(next.0, &next.1).unwrap();
    let mut all = txns.clone();
    all.push(next);
    unchanged(&store, dir.path(), &all, "after-next");
}

#[test]
fn rewind_edges() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    let store = Store::create(&path).unwrap();

    // Nothing to rewind in an empty store.
    assert!(matches!(store.rewind(), Err(Error::Rewind { .. })));
    assert!(!store.status().unwrap().rewind_allowed);

    // A lone pragma report into the empty store is a committed report, not a
    // transaction to rewind.
    store.add_change(0, &[workload::FOREIGN_KEYS_OFF]).unwrap();
    let st = store.status().unwrap();
    assert_eq!((st.version, st.prev_version, st.rewind_allowed), (0, None, false));
    assert!(matches!(store.rewind(), Err(Error::Rewind { .. })));
    store.add_change(0, &[workload::FOREIGN_KEYS_ON]).unwrap();

    let mut w = Workload::new(28);
    let mut txns: Vec<Txn> =
        vec![(0, vec![workload::FOREIGN_KEYS_OFF.into()]), (0, vec![workload::FOREIGN_KEYS_ON.into()])];
    for _ in 0..4 {
        let t = w.next_txn();
        store.add_change(t.0, &t.1).unwrap();
        txns.push(t);
    }
    let st = store.status().unwrap();
    assert_eq!((st.version, st.prev_version, st.rewind_allowed), (4, Some(3), true));

    // One rewind, then not a second in a row.
    let rewound = txns.pop().unwrap();
    assert_eq!(store.rewind().unwrap(), 3);
    let st = store.status().unwrap();
    assert_eq!((st.version, st.prev_version, st.rewind_allowed), (3, Some(2), false));
    let err = store.rewind().unwrap_err();
    assert!(matches!(err, Error::Rewind { .. }), "{err}");
    // Survives reopening.
    drop(store);
    let store = Store::open(&path).unwrap();
    assert!(!store.status().unwrap().rewind_allowed);
    assert!(matches!(store.rewind(), Err(Error::Rewind { .. })));
    // The rewound transaction is not restored.
    let got = restore_to(&store, dir.path(), "rewound.sqlite3", None);
    workload::assert_same_db(&got, &reference(dir.path(), "rewound-ref.sqlite3", &txns));

    // Re-adding moves on and allows a rewind again.
    store.add_change(rewound.0, &rewound.1).unwrap();
    txns.push(rewound);
    assert!(store.status().unwrap().rewind_allowed);

    // A version holding a repeated-version report cannot be rewound.
    store.add_change(4, &[workload::FOREIGN_KEYS_OFF]).unwrap();
    store.add_change(4, &[workload::FOREIGN_KEYS_ON]).unwrap();
    let st = store.status().unwrap();
    assert_eq!((st.version, st.prev_version, st.rewind_allowed), (4, Some(3), false));
    assert!(matches!(store.rewind(), Err(Error::Rewind { .. })));

    // After a snapshot at the head there is nothing to rewind, and a lone
    // report after it does not make one.
    let image = restore_to(&store, dir.path(), "image.sqlite3", None);
    store.add_snapshot(4, &mut std::fs::File::open(&image).unwrap()).unwrap();
    let st = store.status().unwrap();
    assert_eq!((st.version, st.prev_version, st.rewind_allowed), (4, None, false));
    store.add_change(4, &[workload::FOREIGN_KEYS_OFF]).unwrap();
    store.add_change(4, &[workload::FOREIGN_KEYS_ON]).unwrap();
    let st = store.status().unwrap();
    assert_eq!((st.version, st.prev_version, st.rewind_allowed), (4, None, false));
    assert!(matches!(store.rewind(), Err(Error::Rewind { .. })));
}

/// Long logs move their older records into sealed segments. Rewinds and
/// repeated-version reports around the sealing points, a reopen, an earlier
/// version from inside a segment, and a compaction must all stay exact.
#[test]
fn long_logs_seal_into_segments_and_stay_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.redb");
    let store = Store::create(&path).unwrap();
    let mut load = Workload::new(11);
    let mut txns: Vec<Txn> = Vec::new();
    // 700 transactions (about 600 KiB of records) fill several sealed segments.
    for i in 0..700u32 {
        let txn = load.next_txn();
        store.add_change(txn.0, &txn.1).unwrap();
        if i % 97 == 50 {
            // lightningd died before committing: the change is rewound and sent again.
            store.rewind().unwrap();
            store.add_change(txn.0, &txn.1).unwrap();
        }
        let version = txn.0;
        txns.push(txn);
        if i % 131 == 7 {
            let report = vec![workload::FOREIGN_KEYS_ON.to_string()];
            store.add_change(version, &report).unwrap();
            txns.push((version, report));
        }
    }
    let status = store.status().unwrap();
    assert_eq!(status.changes, 700);
    assert_eq!(status.version, 700);
    assert!(status.rewind_allowed);
    let want = reference(dir.path(), "want.sqlite3", &txns);
    workload::assert_same_db(&restore_to(&store, dir.path(), "head.sqlite3", None), &want);
    let stored = store.reader().unwrap().stored_change_bytes().unwrap();
    drop(store);

    // Reopened, the store reads the same from its segments and tail.
    let store = Store::open(&path).unwrap();
    let again = store.status().unwrap();
    assert_eq!((again.changes, again.version, again.prev_version), (700, 700, Some(699)));
    assert_eq!(store.reader().unwrap().stored_change_bytes().unwrap(), stored);
    let early: Vec<Txn> = txns.iter().filter(|(v, _)| *v <= 150).cloned().collect();
    let want_early = reference(dir.path(), "want-150.sqlite3", &early);
    workload::assert_same_db(&restore_to(&store, dir.path(), "at-150.sqlite3", Some(150)), &want_early);

    // Compaction folds every segment into the snapshot; the last change stays rewindable.
    let stats = cln_backup::compact::compact(&store, &Default::default()).unwrap();
    assert_eq!((stats.changes_before, stats.changes_after), (700, 1));
    workload::assert_same_db(&restore_to(&store, dir.path(), "compacted.sqlite3", None), &want);
    assert_eq!(store.rewind().unwrap(), 699);
    let replay = &txns.iter().rev().find(|(v, _)| *v == 700).unwrap().1;
    store.add_change(700, replay).unwrap();
    workload::assert_same_db(&restore_to(&store, dir.path(), "after.sqlite3", None), &want);
}

/// The status a store reports, without what differs between two files
/// holding the same store (their path and size).
fn status_json(store: &Store) -> serde_json::Value {
    let mut v = serde_json::to_value(store.status().unwrap()).unwrap();
    let map = v.as_object_mut().unwrap();
    map.remove("path");
    map.remove("file_bytes");
    v
}

/// `store`'s in-memory state equals what a fresh open of its file derives.
/// The file is copied (the store stays open and in use) and the copy opened
/// read-only, which repairs it in memory as a live writer's file needs.
#[track_caller]
fn matches_a_fresh_open(store: &Store, dir: &Path, what: &str) {
    let copy = dir.join(format!("copy-{what}.redb"));
    std::fs::copy(store.path(), &copy).unwrap();
    let fresh = Store::open_read_only(&copy).unwrap();
    assert_eq!(status_json(store), status_json(&fresh), "after {what}");
}

/// Every record checks against the chain, the ones written after `what` included.
#[track_caller]
fn chain_holds(store: &Store, what: &str) {
    let reader = store.reader().unwrap();
    let n = reader.log().unwrap().inspect(|c| assert!(c.is_ok(), "{c:?}")).count() as u64;
    assert_eq!(n, reader.change_count(), "after {what}");
}

#[test]
fn committed_operations_leave_memory_as_a_reopen_finds_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let txns = Workload::generate(5, 70);
    let (store, path) = store_with(dir.path(), &txns[..50]);

    // Rewind: the new last record, what it chains from, the rewind marker.
    store.rewind().unwrap();
    matches_a_fresh_open(&store, dir.path(), "rewind");
    // A repeated-version report appends to the new last record: its hash
    // comes from what the rewind left in memory.
    let lone = vec![workload::FOREIGN_KEYS_ON.to_string()];
    store.add_change(txns[48].0, &lone).unwrap();
    chain_holds(&store, "rewind");
    matches_a_fresh_open(&store, dir.path(), "append after rewind");

    // Snapshot at the head: the log is replaced, the next record chains from its anchor.
    add_all(&store, &txns[49..55]);
    let image = restore_to(&store, dir.path(), "image.sqlite3", None);
    store.add_snapshot(txns[54].0, &mut std::fs::File::open(&image).unwrap()).unwrap();
    matches_a_fresh_open(&store, dir.path(), "add_snapshot");
    add_all(&store, &txns[55..56]);
    chain_holds(&store, "add_snapshot");
    matches_a_fresh_open(&store, dir.path(), "add after add_snapshot");

    // Compaction: a new snapshot, fewer records, the last one still appendable.
    add_all(&store, &txns[56..]);
    let stats = cln_backup::compact::compact(&store, &Default::default()).unwrap();
    assert!(stats.compacted);
    matches_a_fresh_open(&store, dir.path(), "compaction");
    store.add_change(txns[69].0, &lone).unwrap();
    chain_holds(&store, "compaction");
    matches_a_fresh_open(&store, dir.path(), "append after compaction");

    drop(store);
    let reopened = Store::open(&path).unwrap();
    let restored = restore_to(&reopened, dir.path(), "final.sqlite3", None);
    let mut expected = txns.clone();
    expected.insert(49, (txns[48].0, lone.clone()));
    expected.push((txns[69].0, lone));
    workload::assert_same_db(&restored, &reference(dir.path(), "reference.sqlite3", &expected));
}

#[test]
fn bulk_load_has_the_checks_of_add_change_and_commits_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulk.redb");
    let mut txns = Workload::generate(21, 5000);
    // A repeated-version report inside a batch reads the head's record from
    // the uncommitted batch.
    txns.insert(2500, (txns[2499].0, vec![workload::FOREIGN_KEYS_ON.to_string()]));
    let store = Store::create(&path).unwrap();
    let mut bulk = store.bulk_load().unwrap();
    for (i, (v, s)) in txns.iter().enumerate() {
        bulk.add_change(*v, s).unwrap();
        if i == 1000 {
            // Refused exactly as add_change refuses, and nothing is added.
            let gap = bulk.add_change(v + 5, &txns[i + 1].1).unwrap_err();
            assert!(matches!(gap, Error::Gap { .. }), "{gap}");
            let bump = bulk.add_change(v + 1, &["UPDATE t SET x = 1"]).unwrap_err();
            assert!(matches!(bump, Error::MissingBump { .. }), "{bump}");
            let empty: [&str; 0] = [];
            assert!(matches!(bulk.add_change(v + 1, &empty).unwrap_err(), Error::EmptyChange { .. }));
        }
    }
    let commits = bulk.commits();
    bulk.finish().unwrap();
    assert!(commits <= 3, "{commits} commits before finish for {} changes", txns.len());
    assert_eq!(store.version(), txns.last().unwrap().0);
    chain_holds(&store, "bulk load");
    matches_a_fresh_open(&store, dir.path(), "bulk load");
    drop(store);
    let store = Store::open(&path).unwrap();
    let restored = restore_to(&store, dir.path(), "bulk.sqlite3", None);
    workload::assert_same_db(&restored, &reference(dir.path(), "reference.sqlite3", &txns));
}

/// How many `fsync`/`fdatasync` calls `strace -c` counted.
#[cfg(all(feature = "cli", feature = "plugin"))]
fn syncs_counted(summary: &str) -> u64 {
    summary
        .lines()
        .filter(|l| l.trim_end().ends_with("fdatasync") || l.trim_end().ends_with("fsync"))
        .filter_map(|l| l.split_whitespace().nth(3).and_then(|n| n.parse::<u64>().ok()))
        .sum()
}

/// Runs the binary, which exists only with both front ends.
#[cfg(all(feature = "cli", feature = "plugin"))]
#[test]
fn import_syncs_a_few_times_not_once_per_change() {
    let have_strace = std::process::Command::new("strace")
        .arg("-V")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have_strace {
        eprintln!("skipped: strace is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("big.dbak");
    let txns = Workload::generate(33, 3000);
    let file = std::fs::File::create(&dbak).unwrap();
    let mut w = cln_backup::legacy::DbakWriter::new(file, &dbak).unwrap();
    for (v, s) in &txns {
        w.add_transaction(*v, s).unwrap();
    }
    w.finish().unwrap();
    let store = dir.path().join("imported.redb");
    let summary = dir.path().join("strace.txt");
    let out = std::process::Command::new("strace")
        .args(["-f", "-c", "-e", "trace=fdatasync,fsync", "-o"])
        .arg(&summary)
        .arg(env!("CARGO_BIN_EXE_cln-backup"))
        .arg("import")
        .arg(&dbak)
        .arg(&store)
        .output()
        .unwrap();
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("PTRACE") {
        eprintln!("skipped: strace cannot trace here");
        return;
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let syncs = syncs_counted(&std::fs::read_to_string(&summary).unwrap());
    assert!(syncs > 0, "strace counted no syncs at all");
    eprintln!("{syncs} syncs to import {} changes", txns.len());
    assert!(syncs < 50, "{syncs} syncs to import {} changes", txns.len());
    let store = Store::open_read_only(&store).unwrap();
    let restored = restore_to(&store, dir.path(), "imported.sqlite3", None);
    workload::assert_same_db(&restored, &reference(dir.path(), "reference.sqlite3", &txns));
}
