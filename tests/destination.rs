//! The destination registry: which store arguments and `backend_url`s open
//! a local store, and how every other location is refused, naming the URL.
//! Library only: runs with `--no-default-features` too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::destination::{self, Access, Destination, Location};
use cln_backup::lockfile::{self, LOCK_FILE_NAME};
use cln_backup::version::bump_statement;
use cln_backup::{Error, Store};
use std::path::{Path, PathBuf};

/// A store at `path` holding versions 1 and 2.
fn store_at(path: &Path) {
    let store = Store::create(path).unwrap();
    for v in 1..=2 {
        store.add_change(v, &[format!("INSERT INTO t VALUES ({v})"), bump_statement(v)]).unwrap();
    }
}

fn refusal(arg: &str) -> String {
    match destination::open(arg, Access::ReadOnly) {
        Err(e @ Error::Destination { .. }) => e.to_string(),
        Err(other) => panic!("{arg}: expected a refusal of the location, got {other}"),
        Ok(d) => panic!("{arg}: opened {d:?}"),
    }
}

#[test]
fn paths_and_file_urls_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.redb");
    store_at(&path);
    let text = path.to_str().unwrap();
    for arg in [text.to_string(), format!("file://{text}"), format!("file://localhost{text}")] {
        let dest = destination::open(&arg, Access::ReadOnly).unwrap();
        assert_eq!(dest.location(), text, "{arg}");
        assert_eq!(dest.head().unwrap().version, 2, "{arg}");
        assert_eq!(dest.local_store().unwrap().path(), path, "{arg}");
    }
    // The writer's open: the plugin holds it through the trait, shared across threads.
    let dest: std::sync::Arc<dyn Destination> =
        std::sync::Arc::from(destination::open(format!("file://{text}"), Access::Write).unwrap());
    let other = std::sync::Arc::clone(&dest);
    let head =
        std::thread::spawn(move || other.add_change(3, &["SELECT 3", &bump_statement(3)]).map(|_| ())).join().unwrap();
    head.unwrap();
    assert_eq!(dest.head().unwrap().version, 3);
}

#[test]
fn relative_paths_are_taken_as_written() {
    for arg in ["rel/node.redb", "node.redb", "./node:1.redb", "C:x"] {
        assert_eq!(destination::parse(Path::new(arg)).unwrap(), Location::File(PathBuf::from(arg)), "{arg}");
    }
    // Opened relative to the working directory: a missing one names itself.
    let err = destination::open("no-such-dir/node.redb", Access::ReadOnly).unwrap_err().to_string();
    assert!(err.starts_with("no-such-dir/node.redb"), "{err}");
}

#[test]
fn percent_signs_in_file_urls_are_part_of_the_name() {
    // As the Python plugin reads backend_url: no percent-decoding, so a
    // lock file written by either tool names the same file for both.
    let dir = tempfile::tempdir().unwrap();
    let literal = dir.path().join("node%20a.redb");
    store_at(&literal);
    let url = format!("file://{}", literal.to_str().unwrap());
    assert_eq!(destination::local_path(Path::new(&url)).unwrap(), literal);
    let dest = destination::open(&url, Access::ReadOnly).unwrap();
    assert_eq!(dest.local_store().unwrap().path(), literal);
    // The decoded name is another file, which does not exist.
    let decoded = format!("file://{}", dir.path().join("node a.redb").to_str().unwrap());
    let err = destination::open(&decoded, Access::ReadOnly).unwrap_err().to_string();
    assert!(err.contains("node a.redb") && err.contains("No such file"), "{err}");
}

#[test]
fn file_urls_with_a_host_are_refused() {
    for (url, host) in [("file://backup.example.com/var/node.redb", "backup.example.com"), ("file://nas/x", "nas")] {
        let err = refusal(url);
        assert!(err.starts_with(&format!("{url}: ")), "{err}");
        assert!(err.contains("absolute path") && err.contains(&format!("the host {host}")), "{err}");
    }
    let err = refusal("file://relative/but/no/host");
    assert!(err.contains("absolute path"), "{err}");
}

#[test]
fn other_schemes_are_refused_naming_the_url_and_what_is_supported() {
    let dir = tempfile::tempdir().unwrap();
    for (url, scheme) in [
        ("s3:bucket/node.redb", "s3:"),
        ("https://example.com/node.redb", "https:"),
        ("webdav://host/node.redb", "webdav:"),
        ("x-unknown://anything", "x-unknown:"),
    ] {
        let err = refusal(url);
        assert!(err.starts_with(&format!("{url}: ")), "{err}");
        assert!(err.contains(&format!("the {scheme} scheme is not supported by this version")), "{err}");
        assert!(err.contains("supported: a path, a file:// URL"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
    // socket: and object storage are served: parsed, not refused as unsupported.
    assert!(matches!(destination::parse(Path::new("s3://bucket/node.redb")).unwrap(), Location::Object(_)));
    assert!(!refusal("socket:127.0.0.1:9000").contains("remote stores are not supported"));
    let err = refusal("");
    assert!(err.contains("the store path is empty"), "{err}");
    // Nothing was created under a name made of a URL.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn backup_lock_urls_go_through_the_registry() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("node.redb");
    store_at(&store);
    let url = lockfile::write(&dir.path().join(LOCK_FILE_NAME), &store).unwrap();
    assert_eq!(lockfile::read_url(dir.path()).unwrap(), url);
    let dest = destination::open(lockfile::read_url(dir.path()).unwrap(), Access::ReadOnly).unwrap();
    assert_eq!(dest.head().unwrap().version, 2);
    // A lock naming a remote store: the error names the lock file and the URL.
    std::fs::write(dir.path().join(LOCK_FILE_NAME), r#"{"backend_url": "s3://bucket/node.redb"}"#).unwrap();
    let err = lockfile::read(dir.path()).unwrap_err().to_string();
    let lock = dir.path().join(LOCK_FILE_NAME);
    assert!(err.starts_with(&format!("{}: s3://bucket/node.redb: ", lock.display())), "{err}");
    assert!(err.contains("not a local store"), "{err}");
    // The full reading of the lock refuses it too: object storage needs a local store first.
    let err = lockfile::read_lock(dir.path()).unwrap_err().to_string();
    assert!(err.starts_with(&format!("{}: s3://bucket/node.redb: ", lock.display())), "{err}");
    assert!(err.contains("list the local store first"), "{err}");
}

/// The command line refuses the same locations the same way, on one line
/// naming the URL, and creates nothing.
#[cfg(all(feature = "cli", feature = "plugin"))]
#[test]
fn the_command_line_refuses_unsupported_locations_on_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (args, url, says) in [
        (vec!["info", "webdav://host/node.redb"], "webdav://host/node.redb", "not supported by this version"),
        (vec!["info", "s3://bucket/node.redb"], "s3://bucket/node.redb", "give the key file or the node's hsm_secret"),
        (vec!["init", "s3:bucket/node.redb"], "s3:bucket/node.redb", "not supported by this version"),
        (vec!["verify", "file://nas/backups/node.redb"], "file://nas/backups/node.redb", "not a file on the host nas"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_cln-backup"))
            .args(&args)
            .current_dir(dir.path())
            .env_remove("LIGHTNINGD_PLUGIN")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with(&format!("error: {url}: ")) && err.contains(says), "{err}");
        assert!(err.contains("supported: a path, a file:// URL") || !says.contains("not supported"), "{err}");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// A destination that keeps everything in memory: what a remote one looks
/// like to a restore, which reads it only through the trait.
#[derive(Debug, Default)]
struct Memory {
    changes: std::sync::Mutex<Vec<cln_backup::Change>>,
}

impl Destination for Memory {
    fn location(&self) -> &str {
        "memory:"
    }

    fn head(&self) -> cln_backup::Result<cln_backup::Head> {
        let changes = self.changes.lock().unwrap();
        let version = changes.last().map(|c| c.data_version()).unwrap_or(0);
        let prev = changes.len().checked_sub(2).map(|i| changes[i].data_version());
        Ok(cln_backup::Head::new(version, prev, false))
    }

    fn add_change(&self, version: u32, statements: &[&str]) -> cln_backup::Result<cln_backup::Added> {
        let transaction = cln_backup::Transaction {
            time_ms: cln_backup::now_ms(),
            statements: statements.iter().map(|s| s.to_string()).collect(),
        };
        let mut changes = self.changes.lock().unwrap();
        match changes.last_mut() {
            Some(last) if last.data_version() == version => {
                last.transactions.push(transaction);
                Ok(cln_backup::Added::Repeated(last.seq))
            }
            _ => {
                let seq = u64::from(version);
                changes.push(cln_backup::Change { seq, transactions: vec![transaction] });
                Ok(cln_backup::Added::New(seq))
            }
        }
    }

    fn rewind(&self) -> cln_backup::Result<cln_backup::Seq> {
        let mut changes = self.changes.lock().unwrap();
        changes.pop();
        Ok(changes.last().map(|c| c.seq).unwrap_or(0))
    }

    fn add_snapshot(&self, _: u32, _: &mut dyn std::io::Read) -> cln_backup::Result<cln_backup::SnapshotInfo> {
        unimplemented!("not used by these tests")
    }

    fn restore_source(
        &self,
        to_version: Option<u64>,
        _image: &mut dyn std::io::Write,
    ) -> cln_backup::Result<cln_backup::RestoreSource> {
        let changes = self.changes.lock().unwrap().clone();
        let upto = to_version.unwrap_or_else(|| changes.last().map(|c| c.seq).unwrap_or(0));
        let wanted: Vec<_> = changes.into_iter().filter(|c| c.seq <= upto).map(Ok).collect();
        Ok(cln_backup::RestoreSource::new(upto, true, Box::new(wanted.into_iter())))
    }

    fn local_store(&self) -> Option<&Store> {
        None
    }
}

/// The same transactions, through the trait, into a store and into memory.
fn fill(dests: &[&dyn Destination]) {
    let mut txns = vec![vec![
        "CREATE TABLE t (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES t(id) ON DELETE CASCADE)".to_string(),
        "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
        "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    ]];
    txns.push(vec!["INSERT INTO t VALUES (1, NULL)".into(), "INSERT INTO t VALUES (2, 1)".into()]);
    txns.push(vec!["INSERT INTO t VALUES (3, 2)".into()]);
    txns.push(vec!["DELETE FROM t WHERE id = 1".into()]);
    for (i, mut txn) in txns.into_iter().enumerate() {
        let v = i as u32 + 1;
        txn.push(bump_statement(v));
        let parts: Vec<&str> = txn.iter().map(String::as_str).collect();
        for d in dests {
            d.add_change(v, &parts).unwrap();
        }
    }
}

#[test]
fn a_restore_reads_any_destination_through_the_trait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(Store::create(&path).unwrap());
    let file = destination::open(&path, Access::Write).unwrap();
    let memory = Memory::default();
    fill(&[file.as_ref(), &memory]);

    for to in [None, Some(2), Some(3)] {
        let opts = cln_backup::restore::Options { to_version: to, ..Default::default() };
        let from_file = dir.path().join(format!("file-{to:?}.sqlite3"));
        let from_memory = dir.path().join(format!("memory-{to:?}.sqlite3"));
        let direct = dir.path().join(format!("direct-{to:?}.sqlite3"));
        let a = cln_backup::restore::restore_from(file.as_ref(), &from_file, &opts).unwrap();
        let b = cln_backup::restore::restore_from(&memory, &from_memory, &opts).unwrap();
        let c = cln_backup::restore::restore_store(file.local_store().unwrap(), &direct, &opts).unwrap();
        assert_eq!((a.version, b.version, c.version), (c.version, c.version, to.map(|v| v as u32).unwrap_or(4)));
        assert_eq!((a.changes, b.changes), (c.changes, c.changes));
        for other in [&from_file, &from_memory] {
            let diff = cln_backup::compare::compare_databases(
                &direct,
                other,
                cln_backup::compare::Labels::RESTORED_AND_EXPECTED,
            )
            .unwrap();
            assert!(diff.is_none(), "{to:?}: {}", diff.unwrap());
        }
        // Foreign keys were on from the start: the delete cascaded.
        let rows: i64 = rusqlite::Connection::open(&from_memory)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            rows,
            match to {
                Some(2) => 2,
                Some(3) => 3,
                _ => 0,
            }
        );
    }

    // A version the store does not hold is refused before anything is written.
    let dest = dir.path().join("none.sqlite3");
    let opts = cln_backup::restore::Options { to_version: Some(9), ..Default::default() };
    match cln_backup::restore::restore_from(file.as_ref(), &dest, &opts) {
        Err(Error::NotRestorable { asked: 9, .. }) => {}
        other => panic!("expected NotRestorable, got {other:?}"),
    }
    assert!(!dest.exists());

    // A time is refused too: only a store keeps times, and a source read
    // through the trait gives none, so the head must not be given instead.
    let opts = cln_backup::restore::Options { to_time_ms: Some(cln_backup::now_ms()), ..Default::default() };
    match cln_backup::restore::restore_from(&memory, &dest, &opts) {
        Err(e @ Error::NoRecordTimes { .. }) => assert!(!e.is_retryable(), "{e}"),
        other => panic!("expected NoRecordTimes, got {other:?}"),
    }
    assert!(!dest.exists());
}
