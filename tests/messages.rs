//! What the `cln-backup` binary tells an operator: every failure is one
//! stderr line naming the file and the problem, and the success output says
//! things right (plurals, no snapshot wording without a snapshot, sizes as
//! `ls -l` shows them, SQL exports that do not invent times).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::legacy::DbakWriter;
use cln_backup::version::bump_statement;
use cln_backup::Store;
use std::path::{Path, PathBuf};
use support::run::{assert_fails, assert_ok, cln_backup, command};

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");

fn show(p: &Path) -> String {
    p.display().to_string()
}

/// The fixture imported into a store in `dir`.
fn imported(dir: &Path) -> PathBuf {
    let store = dir.join("node.redb");
    assert_ok(&cln_backup(&[&"import", &FIXTURE_DBAK, &store]));
    store
}

#[test]
fn a_version_outside_the_range_names_the_file_and_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path());
    let dest = dir.path().join("out.sqlite3");
    let out = cln_backup(&[&"restore", &"--to-version", &"47", &store, &dest]);
    assert_fails(&out, &[show(&store)], &["version 47", "restorable: 1 to 46; 0 is the empty database"]);
    let out = cln_backup(&[&"restore", &"--to-version", &"47", &FIXTURE_DBAK, &dest]);
    assert_fails(&out, &[FIXTURE_DBAK], &["version 47", "restorable: 1 to 46; 0 is the empty database"]);
    assert!(!dest.exists());
    let out = cln_backup(&[&"export", &"--format", &"sql", &"--to-version", &"47", &store, &dest]);
    assert_fails(&out, &[show(&store)], &["version 47", "restorable: 1 to 46; 0 is the empty database"]);
    assert!(!dest.exists());
}

#[test]
fn remote_schemes_are_refused_naming_the_scheme() {
    let dir = tempfile::tempdir().unwrap();
    // Object storage is served, as a replica of a local store: alone, it is
    // refused naming the URL and the rule.
    for url in ["s3://bucket/node.redb", "gs://bucket/node.redb", "az://container/node.redb"] {
        let out = command().args(["init", "--key-file", "key", url]).current_dir(dir.path()).output().unwrap();
        assert_fails(&out, &[url], &["a replica of a local store", "give a local store (a path) among the DESTs"]);
        assert!(!dir.path().join("key").exists(), "a refused init made a key file");
    }
    for (url, scheme) in [
        ("https://example.com/node.redb", "https:"),
        ("http://example.com/node.redb", "http:"),
        ("sftp://host/backups/node.redb", "sftp:"),
    ] {
        let out = command().args(["init", url]).current_dir(dir.path()).output().unwrap();
        assert_fails(&out, &[url], &[&format!("the {scheme} scheme is not supported")]);
    }
    // Nothing was created under a name made of the URL.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn verify_against_a_directory_reads_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path());
    let node = dir.path().join("bitcoin");
    std::fs::create_dir(&node).unwrap();
    assert_ok(&cln_backup(&[&"restore", &store, &node]));
    let text = assert_ok(&cln_backup(&[&"verify", &"--against", &node, &store]));
    assert!(text.contains(&format!("{} matches the backup at version 46", show(&node.join("lightningd.sqlite3")))));
}

#[test]
fn init_into_a_directory_says_so_and_suggests_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = cln_backup(&[&"init", &dir.path()]);
    assert_fails(&out, &[show(dir.path())], &["is a directory", &show(&dir.path().join("node.redb"))]);
}

#[test]
fn a_file_that_is_neither_says_both_were_tried() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, vec![7u8; 4096]).unwrap();
    let dest = dir.path().join("out.sqlite3");
    let out = cln_backup(&[&"restore", &junk, &dest]);
    assert_fails(&out, &[show(&junk)], &["is neither a cln-backup store nor a legacy .dbak backup"]);
    assert!(!dest.exists());
}

/// A `.dbak` holding one transaction.
fn one_change_dbak(path: &Path) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = DbakWriter::new(file, path).unwrap();
    w.add_transaction(
        1,
        &[
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
            "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
            bump_statement(1),
        ],
    )
    .unwrap();
    w.finish().unwrap();
}

#[test]
fn counts_are_singular_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("one.dbak");
    one_change_dbak(&dbak);
    let store = dir.path().join("one.redb");
    let text = assert_ok(&cln_backup(&[&"import", &dbak, &store]));
    assert!(text.contains("version 1, 1 change\n"), "{text}");
    let text = assert_ok(&cln_backup(&[&"verify", &store]));
    assert!(text.contains("1 change record (1 transaction, 3 statements)"), "{text}");
    assert!(text.contains("(1 change, 3 statements)"), "{text}");
    let text = assert_ok(&cln_backup(&[&"compact", &store]));
    assert!(text.contains(": 1 change in the log"), "{text}");
    let dest = dir.path().join("one.sqlite3");
    let text = assert_ok(&cln_backup(&[&"restore", &store, &dest]));
    assert!(text.contains(": 1 change replayed (3 statements)"), "{text}");
    let text = assert_ok(&cln_backup(&[&"export", &"--format", &"dbak", &store, &dir.path().join("again.dbak")]));
    assert!(text.contains("(1 record, "), "{text}");
}

#[test]
fn stores_without_a_snapshot_are_not_described_with_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("empty.redb");
    assert_ok(&cln_backup(&[&"init", &store]));
    for cmd in ["info", "verify", "compact"] {
        let text = assert_ok(&cln_backup(&[&cmd, &store]));
        assert!(!text.contains("after the snapshot"), "{cmd}: {text}");
    }
    let text = assert_ok(&cln_backup(&[&"info", &store]));
    assert!(text.contains("Previous version: none (the store holds no change yet)"), "{text}");
}

#[test]
fn compact_reports_the_file_length_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path());
    let before = std::fs::metadata(&store).unwrap().len();
    let text = assert_ok(&cln_backup(&[&"compact", &store]));
    let after = std::fs::metadata(&store).unwrap().len();
    let line = text.lines().find(|l| l.starts_with("File size:")).unwrap();
    let expected = format!("File size: {before} bytes");
    assert!(line.starts_with(&expected), "{line:?} vs {before}");
    assert!(line.contains(&format!("-> {after} bytes")), "{line:?} vs {after}");
}

#[test]
fn info_json_gives_the_restorable_range_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path());
    let text = assert_ok(&cln_backup(&[&"info", &"--json", &store]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["restorable"], serde_json::json!({"from": 0, "to": 46}));
    assert!(v.get("restorable_versions").is_none(), "{text}");
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.iter().filter(|k| k.starts_with("restorable")).count(), 1, "{keys:?}");
}

#[test]
fn sql_export_of_an_imported_store_does_not_present_import_times() {
    let dir = tempfile::tempdir().unwrap();
    let store = imported(dir.path());
    // A change the plugin stores after the import has its real time.
    Store::open(&store)
        .unwrap()
        .add_change(47, &["DELETE FROM vars WHERE name = 'none'".to_string(), cln_backup::version::bump_statement(47)])
        .unwrap();
    let sql = dir.path().join("log.sql");
    assert_ok(&cln_backup(&[&"export", &"--format", &"sql", &store, &sql]));
    let text = std::fs::read_to_string(&sql).unwrap();
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("-- version ")).collect();
    assert_eq!(heads.len(), 47);
    for h in &heads[..46] {
        assert!(h.ends_with("(time not recorded: imported from a .dbak)"), "{h}");
    }
    let year = cln_backup::utc_iso8601(cln_backup::now_ms(), false)[..4].to_string();
    // `-- version 47 (YYYY-MM-DDTHH:MM:SS.mmmZ)`
    assert!(heads[46].starts_with(&format!("-- version 47 ({year}-")), "{}", heads[46]);
    assert!(heads[46].ends_with("Z)") && heads[46].len() == "-- version 47 ".len() + 26, "{}", heads[46]);
}

#[test]
fn restoring_an_empty_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("empty.redb");
    Store::create(&store).unwrap();
    let dest = dir.path().join("out.sqlite3");
    let out = cln_backup(&[&"restore", &store, &dest]);
    assert_fails(&out, &[show(&store)], &["the store holds no database yet: version 0 is empty"]);
    let out = cln_backup(&[&"restore", &"--to-version", &"0", &store, &dest]);
    assert_fails(&out, &[show(&store)], &["version 0 is empty"]);
    // Version 0 of a log that starts from nothing, in a store that has more.
    let store = imported(dir.path());
    let out = cln_backup(&[&"restore", &"--to-version", &"0", &store, &dest]);
    assert_fails(&out, &[show(&store)], &["version 0 is empty", "1 to 46"]);
    let out = cln_backup(&[&"restore", &"--to-version", &"0", &FIXTURE_DBAK, &dest]);
    assert_fails(&out, &[FIXTURE_DBAK], &["version 0 is empty"]);
    assert!(!dest.exists(), "no 0-byte database is written");
}
