//! Object storage against a real Garage server on loopback: a node's
//! changes replicated and restored from the remote copy alone, snapshots
//! larger than one multipart part, rewinds, the writer's lease, wrong keys,
//! damaged and missing objects, and what the names and sizes of the objects
//! let an observer see. Each test writes under its own prefix of one
//! Garage per test binary (see `support/garage.rs`); without Garage they
//! say so on stderr and fail under `CI=true`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::destination::{Access, Destination, ObjectDestination, ObjectOptions};
use cln_backup::encryption::{self, Key};
use cln_backup::restore::{self, Options};
use cln_backup::version::bump_statement;
use cln_backup::{Added, Error, Store};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::path::Path;
use std::sync::Arc;
use support::garage::{self, Garage};
use support::workload::{self, Txn, Workload};

const OWNER: [u8; 16] = [0x11; 16];
const OTHER: [u8; 16] = [0x22; 16];

fn key() -> Key {
    Key::from_bytes([7; 32])
}

/// Options for this Garage with `access`, the test key and `owner`.
fn options(g: &Garage, dir: &Path, access: Access, owner: Option<[u8; 16]>) -> ObjectOptions {
    let mut o = ObjectOptions::new(access, key());
    o.credentials_file = Some(g.credentials_file(dir));
    o.owner = owner;
    o
}

fn writer(g: &Garage, dir: &Path, prefix: &str) -> ObjectDestination {
    ObjectDestination::open(&g.url(prefix), &options(g, dir, Access::Write, Some(OWNER)))
        .unwrap_or_else(|e| panic!("open {prefix} for writing: {e}"))
}

fn reader(g: &Garage, dir: &Path, prefix: &str) -> ObjectDestination {
    ObjectDestination::open(&g.url(prefix), &options(g, dir, Access::ReadOnly, None)).unwrap()
}

fn add(dest: &dyn Destination, txns: &[Txn]) {
    for (v, s) in txns {
        let parts: Vec<&str> = s.iter().map(String::as_str).collect();
        dest.add_change(*v, &parts).unwrap_or_else(|e| panic!("add_change({v}): {e}"));
    }
}

/// A raw client of the test bucket, to look at and damage objects as an
/// outsider would.
struct Raw {
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Runtime,
}

impl Raw {
    fn new(g: &Garage) -> Raw {
        let store = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(garage::BUCKET)
            .with_access_key_id(garage::KEY_ID)
            .with_secret_access_key(garage::SECRET)
            .with_endpoint(&g.endpoint)
            .with_region("garage")
            .with_allow_http(true)
            .build()
            .unwrap();
        Raw { store: Arc::new(store), rt: tokio::runtime::Runtime::new().unwrap() }
    }

    /// (name under the prefix, size) of every object under `prefix`.
    fn list(&self, prefix: &str) -> Vec<(String, u64)> {
        use futures_util::StreamExt;
        let p = ObjectPath::from(prefix);
        let mut out: Vec<(String, u64)> = self.rt.block_on(async {
            let mut s = self.store.list(Some(&p));
            let mut out = vec![];
            while let Some(m) = s.next().await {
                let m = m.unwrap();
                out.push((m.location.to_string(), m.size));
            }
            out
        });
        for (n, _) in &mut out {
            *n = n.strip_prefix(&format!("{prefix}/")).unwrap().to_string();
        }
        out.sort();
        out
    }

    fn get(&self, name: &str) -> Vec<u8> {
        self.rt
            .block_on(async { self.store.get(&ObjectPath::from(name)).await.unwrap().bytes().await.unwrap().to_vec() })
    }

    fn put(&self, name: &str, bytes: Vec<u8>) {
        self.rt.block_on(async { self.store.put(&ObjectPath::from(name), PutPayload::from(bytes)).await.unwrap() });
    }

    fn delete(&self, name: &str) {
        self.rt.block_on(async { self.store.delete(&ObjectPath::from(name)).await.unwrap() });
    }

    fn segments(&self, prefix: &str) -> Vec<String> {
        self.list(prefix).into_iter().map(|(n, _)| n).filter(|n| n.starts_with("segments/")).collect()
    }
}

/// Restore `dest` into `dir/name`, returning the file or the error.
fn restore_remote(
    dest: &dyn Destination,
    dir: &Path,
    name: &str,
    to: Option<u64>,
) -> Result<std::path::PathBuf, Error> {
    let path = dir.join(name);
    restore::restore_from(dest, &path, &Options { to_version: to, ..Options::default() }).map(|r| r.path)
}

#[test]
fn a_node_replicated_to_object_storage_restores_from_the_remote_alone() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let txns = Workload::generate(41, 360);
    let local = Store::create(dir.path().join("node.redb")).unwrap();
    support::add_all(&local, &txns[..240]);

    let remote = writer(g, dir.path(), "replicate");
    // Sync mode: one segment per change.
    add(&remote, &txns[..120]);
    // Catch-up: the local store's next changes, shipped in one segment.
    let view = local.reader().unwrap();
    let changes: Vec<_> = view.changes(local.status().unwrap().seq).unwrap().map(Result::unwrap).collect();
    let head_120 = u64::from(txns[119].0);
    let rest: Vec<_> = changes.into_iter().filter(|c| c.seq > head_120).collect();
    remote.add_changes(&rest).unwrap();
    assert_eq!(remote.head().unwrap().version, txns[239].0);
    // A base snapshot at the head, then more changes after it.
    let image = support::reference(dir.path(), "at240.sqlite3", &txns[..240]);
    let info = remote.add_snapshot(txns[239].0, &mut std::fs::File::open(&image).unwrap()).unwrap();
    assert_eq!(info.version, txns[239].0);
    add(&remote, &txns[240..]);
    drop(remote);

    let source = reader(g, dir.path(), "replicate");
    let summary = source.describe().unwrap();
    assert_eq!(summary.version, txns[359].0);
    assert_eq!(summary.snapshot.map(|s| s.0), Some(txns[239].0));
    assert!(summary.lease.as_deref().unwrap_or_default().contains(&"11".repeat(16)), "{summary:?}");
    // Every byte under the prefix is counted.
    let listed: u64 = Raw::new(g).list("replicate").iter().map(|(_, s)| s).sum();
    assert_eq!(summary.stored_bytes, listed);
    let restored = restore_remote(&source, dir.path(), "restored.sqlite3", None).unwrap();
    let expected = support::reference(dir.path(), "expected.sqlite3", &txns);
    workload::assert_same_db(&restored, &expected);
    // An older version after the snapshot.
    let to = txns[299].0;
    let upto: Vec<Txn> = txns.iter().filter(|(v, _)| *v <= to).cloned().collect();
    let restored = restore_remote(&source, dir.path(), "older.sqlite3", Some(u64::from(to))).unwrap();
    workload::assert_same_db(&restored, &support::reference(dir.path(), "older-expected.sqlite3", &upto));
    // Before the snapshot: not restorable from this copy, said with the range.
    let err = restore_remote(&source, dir.path(), "gone.sqlite3", Some(5)).unwrap_err();
    assert!(matches!(err, Error::NotRestorable { asked: 5, .. }), "{err}");
}

#[test]
fn a_snapshot_larger_than_one_part_round_trips() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let remote = writer(g, dir.path(), "big-snapshot");
    // Incompressible, so that the sealed object spans two 8 MiB parts.
    let image = workload::Rng::new(9).bytes(11 * 1024 * 1024 + 123);
    let info = remote.add_snapshot(7, &mut image.as_slice()).unwrap();
    assert_eq!((info.version, info.size), (7, image.len() as u64));
    assert!(info.stored_bytes > 8 * 1024 * 1024, "{info:?}");
    assert!(encryption::is_size_class(info.stored_bytes), "{info:?}");
    let mut back = Vec::new();
    let source = reader(g, dir.path(), "big-snapshot");
    let from = source.restore_source(None, &mut back).unwrap();
    assert_eq!(from.upto, 7);
    assert_eq!(from.changes.count(), 0);
    assert!(back == image, "the image came back different ({} bytes)", back.len());
}

fn tx(v: u32, what: &str) -> Vec<String> {
    let mut s = vec![];
    if v == 1 {
        s.push("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string());
        s.push("INSERT INTO vars VALUES ('data_version', 0)".to_string());
        s.push("CREATE TABLE t (v INTEGER, what TEXT)".to_string());
    }
    s.push(format!("INSERT INTO t VALUES ({v}, '{what}')"));
    s.push(bump_statement(v));
    s
}

fn add_tx(dest: &dyn Destination, v: u32, what: &str) -> Added {
    let t = tx(v, what);
    let parts: Vec<&str> = t.iter().map(String::as_str).collect();
    dest.add_change(v, &parts).unwrap_or_else(|e| panic!("add_change({v}): {e}"))
}

#[test]
fn a_rewound_change_is_replaced_not_replayed() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let remote = writer(g, dir.path(), "rewind");
    for v in 1..=5 {
        add_tx(&remote, v, "first");
    }
    assert!(remote.head().unwrap().rewind_allowed);
    assert_eq!(remote.rewind().unwrap(), 4);
    // Once in a row only, as the local store.
    assert!(matches!(remote.rewind(), Err(Error::Rewind { .. })));
    assert_eq!(add_tx(&remote, 5, "replacement"), Added::New(5));
    add_tx(&remote, 6, "first");
    // A lone PRAGMA report repeats the head: then it may not be rewound.
    assert_eq!(remote.add_change(6, &["PRAGMA foreign_keys = ON"]).unwrap(), Added::Repeated(6));
    assert!(!remote.head().unwrap().rewind_allowed);
    add_tx(&remote, 7, "first");
    drop(remote);
    // The writer restarts (a new epoch), and rewinds a change of the old one.
    let remote = writer(g, dir.path(), "rewind");
    assert_eq!(remote.head().unwrap().version, 7);
    assert_eq!(remote.rewind().unwrap(), 6);
    add_tx(&remote, 7, "second");
    // A gap is refused as the local store refuses it.
    assert!(matches!(remote.add_change(9, &["x"]), Err(Error::Gap { .. })));
    drop(remote);

    let source = reader(g, dir.path(), "rewind");
    let db = restore_remote(&source, dir.path(), "r.sqlite3", None).unwrap();
    assert_eq!(support::count(&db, "t", "v = 5 AND what = 'replacement'"), 1);
    assert_eq!(support::count(&db, "t", "v = 5 AND what = 'first'"), 0);
    assert_eq!(support::count(&db, "t", "v = 7 AND what = 'second'"), 1);
    assert_eq!(support::count(&db, "t", "v = 7 AND what = 'first'"), 0);
    assert_eq!(support::count(&db, "t", "1"), 7);
}

#[test]
fn the_lease_refuses_another_node_and_takes_over_the_same_one() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = writer(g, dir.path(), "lease");
    add_tx(&first, 1, "a");
    let other = ObjectDestination::open(&g.url("lease"), &options(g, dir.path(), Access::Write, Some(OTHER)));
    match other {
        Err(e @ Error::LeaseHeld { .. }) => {
            let text = e.to_string();
            assert!(text.contains(&"11".repeat(16)) && text.contains("lease"), "{text}");
        }
        other => panic!("a second node was let in: {other:?}"),
    }
    // Garage takes a create-only PUT over an existing object, so a second
    // writer racing past the first check could still write the lease: the
    // first writer reads it back before its next manifest and stops.
    let raw = Raw::new(g);
    let intruder = format!(r#"{{"owner":"{}","host":"elsewhere","since_ms":0,"token":"00"}}"#, "22".repeat(16));
    raw.put("lease/lease", encryption::seal(&key(), "lease", intruder.as_bytes()).unwrap());
    assert!(matches!(first.rewind(), Err(Error::LeaseHeld { .. })));
    drop(first);
    // That node is gone: its lease removed by hand, the first node restarts.
    raw.delete("lease/lease");
    let again = writer(g, dir.path(), "lease");
    assert_eq!(again.head().unwrap().version, 1);
    add_tx(&again, 2, "b");
    drop(again);
    // The same node restarting takes its own lease over.
    let again = writer(g, dir.path(), "lease");
    assert_eq!(again.head().unwrap().version, 2);
    // Readers take no lease and write nothing.
    let before = raw.list("lease");
    let source = reader(g, dir.path(), "lease");
    assert_eq!(source.head().unwrap().version, 2);
    assert!(matches!(source.add_change(3, &["x"]), Err(Error::Remote { .. })));
    assert_eq!(raw.list("lease"), before);
}

#[test]
fn a_wrong_key_and_damaged_or_missing_segments_are_errors_not_short_restores() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let raw = Raw::new(g);
    for prefix in ["damaged", "missing", "truncated"] {
        let remote = writer(g, dir.path(), prefix);
        for v in 1..=12 {
            add_tx(&remote, v, "x");
        }
    }
    // Another key: the wrong-key error, naming the object.
    let mut o = options(g, dir.path(), Access::ReadOnly, None);
    o.key = Key::from_bytes([8; 32]);
    let wrong = ObjectDestination::open(&g.url("damaged"), &o).unwrap();
    match restore_remote(&wrong, dir.path(), "wrong.sqlite3", None) {
        Err(Error::WrongKey { object }) => assert!(object.contains("damaged/manifests/"), "{object}"),
        other => panic!("expected the wrong-key error, got {other:?}"),
    }
    // A byte changed in a segment.
    let seg = raw.segments("damaged")[5].clone();
    let mut bytes = raw.get(&format!("damaged/{seg}"));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    raw.put(&format!("damaged/{seg}"), bytes);
    match restore_remote(&reader(g, dir.path(), "damaged"), dir.path(), "d.sqlite3", None) {
        Err(Error::Damaged { object, .. }) => assert!(object.ends_with(&seg), "{object}"),
        other => panic!("expected damage, got {other:?}"),
    }
    assert!(!dir.path().join("d.sqlite3").exists());
    // A segment cut short.
    let seg = raw.segments("truncated")[3].clone();
    let bytes = raw.get(&format!("truncated/{seg}"));
    raw.put(&format!("truncated/{seg}"), bytes[..bytes.len() - 100].to_vec());
    match restore_remote(&reader(g, dir.path(), "truncated"), dir.path(), "t.sqlite3", None) {
        Err(Error::Truncated { object, .. }) => assert!(object.ends_with(&seg), "{object}"),
        other => panic!("expected truncation, got {other:?}"),
    }
    // A segment gone from the middle: refused, never a shorter restore.
    let seg = raw.segments("missing")[4].clone();
    raw.delete(&format!("missing/{seg}"));
    let err = restore_remote(&reader(g, dir.path(), "missing"), dir.path(), "m.sqlite3", None).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(!dir.path().join("m.sqlite3").exists());
    // Even to a version before the hole.
    let err = restore_remote(&reader(g, dir.path(), "missing"), dir.path(), "m2.sqlite3", Some(3)).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

#[test]
fn object_names_carry_versions_and_ids_only_and_sizes_fall_in_classes() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let txns = Workload::generate(5, 80);
    let remote = writer(g, dir.path(), "names");
    add(&remote, &txns[..40]);
    let image = support::reference(dir.path(), "at40.sqlite3", &txns[..40]);
    remote.add_snapshot(txns[39].0, &mut std::fs::File::open(&image).unwrap()).unwrap();
    add(&remote, &txns[40..]);
    remote.rewind().unwrap();
    drop(remote);
    let hexes = |s: &str, widths: &[usize]| {
        let parts: Vec<&str> = s.split('-').collect();
        parts.len() == widths.len()
            && parts.iter().zip(widths).all(|(p, w)| p.len() == *w && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let objects = Raw::new(g).list("names");
    assert!(objects.len() > 80, "{objects:?}");
    for (name, size) in &objects {
        let ok = match name.split_once('/') {
            None => name == "lease",
            Some(("manifests", rest)) => hexes(rest, &[16, 32]),
            Some(("segments", rest)) => hexes(rest, &[16, 8, 16, 16, 32]),
            Some(("snapshots", rest)) => hexes(rest, &[16, 16, 32]),
            Some(_) => false,
        };
        assert!(ok, "unexpected object name {name}");
        assert!(encryption::is_size_class(*size), "{name}: {size} bytes is not a size class");
    }
    // The smallest class holds a typical change: sizes say little.
    let sizes: std::collections::BTreeSet<u64> =
        objects.iter().filter(|(n, _)| n.starts_with("segments/")).map(|(_, s)| *s).collect();
    assert!(sizes.len() <= 6, "{sizes:?}");
}

#[test]
fn a_new_snapshot_removes_what_it_made_unnecessary_and_keeps_the_previous_one() {
    let Some(g) = garage::garage() else { return };
    let dir = tempfile::tempdir().unwrap();
    let txns: Vec<Txn> = (1..=30).map(|v| (v, tx(v, "x"))).collect();
    let remote = writer(g, dir.path(), "prune");
    let mut done = 0;
    for at in [10u32, 20, 25] {
        add(&remote, &txns[done..at as usize]);
        done = at as usize;
        let image = support::reference(dir.path(), &format!("at{at}.sqlite3"), &txns[..done]);
        remote.add_snapshot(at, &mut std::fs::File::open(&image).unwrap()).unwrap();
    }
    add(&remote, &txns[done..]);
    drop(remote);
    let raw = Raw::new(g);
    let names: Vec<String> = raw.list("prune").into_iter().map(|(n, _)| n).collect();
    let snapshots: Vec<&String> = names.iter().filter(|n| n.starts_with("snapshots/")).collect();
    // The newest (25) and the previous (20); the one at 10 is gone.
    assert_eq!(snapshots.len(), 2, "{names:?}");
    assert!(snapshots[0].starts_with(&format!("snapshots/{:016x}", 20)), "{snapshots:?}");
    assert!(snapshots[1].starts_with(&format!("snapshots/{:016x}", 25)), "{snapshots:?}");
    // Segments the previous snapshot still needs stay (from version 20 on).
    let lasts: Vec<u64> = names
        .iter()
        .filter_map(|n| n.strip_prefix("segments/"))
        .map(|n| u64::from_str_radix(n.split('-').nth(3).unwrap(), 16).unwrap())
        .collect();
    assert_eq!(lasts.iter().min(), Some(&20), "{lasts:?}");
    assert_eq!(lasts.len(), 11, "{lasts:?}");
    let source = reader(g, dir.path(), "prune");
    let db = restore_remote(&source, dir.path(), "p.sqlite3", None).unwrap();
    workload::assert_same_db(&db, &support::reference(dir.path(), "all.sqlite3", &txns));
    let err = restore_remote(&source, dir.path(), "p22.sqlite3", Some(22)).unwrap_err();
    assert!(matches!(err, Error::NotRestorable { asked: 22, .. }), "{err}");
}
