//! The library says what is wrong in its own terms, never with a
//! command-line flag; the command line adds its flag where it reports the
//! error. And the database comparer the library offers names both files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::restore::{restore_store, Options};
use cln_backup::version::bump_statement;
use cln_backup::{export, legacy, Error, Store};
use std::path::{Path, PathBuf};
use support::run::{assert_fails, cln_backup};

/// A store at version 2 in `dir`.
fn store_in(dir: &Path) -> Store {
    let store = Store::create(dir.join("node.redb")).unwrap();
    store
        .add_change(
            1,
            &[
                "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
                "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
                "CREATE TABLE peers (id INTEGER PRIMARY KEY, address TEXT)".to_string(),
                bump_statement(1),
            ],
        )
        .unwrap();
    store.add_change(2, &["INSERT INTO peers VALUES (1, 'a:1')".to_string(), bump_statement(2)]).unwrap();
    store
}

/// No `--word` anywhere in `text`.
#[track_caller]
fn names_no_flag(text: &str) {
    assert!(!text.split_whitespace().any(|w| w.trim_start_matches('(').starts_with("--")), "{text}");
}

/// A file in the way of a restore or an export.
fn occupied(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, b"precious").unwrap();
    path
}

#[test]
fn an_existing_destination_is_refused_in_the_librarys_words_and_with_the_flag_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let dest = occupied(dir.path(), "lightningd.sqlite3");
    let out = occupied(dir.path(), "out.sql");

    let err = restore_store(&store, &dest, &Options::default()).unwrap_err();
    assert!(matches!(&err, Error::DestinationExists { path } if path == &dest), "{err}");
    let text = err.to_string();
    assert!(text.starts_with(&dest.display().to_string()) && text.contains("destination exists"), "{text}");
    names_no_flag(&text);
    let reader = store.reader().unwrap();
    for err in [
        export::export_sql(&reader, reader.head(), &out, false, None).unwrap_err(),
        export::export_dump(&reader, reader.head(), &out, false, None).unwrap_err(),
        legacy::export_dbak(&reader, reader.head(), &out, false, None).unwrap_err(),
    ] {
        assert!(matches!(&err, Error::DestinationExists { path } if path == &out), "{err}");
        names_no_flag(&err.to_string());
    }
    drop(reader);
    let path = store.path().to_path_buf();
    drop(store);

    let run = cln_backup(&[&"restore", &path, &dest]);
    assert_fails(&run, &[&dest], &["destination exists; pass --force to replace it"]);
    for format in [&["--format", "sql"][..], &["--format", "sql", "--dump"], &["--format", "dbak"]] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"export"];
        args.extend(format.iter().map(|a| a as &dyn AsRef<std::ffi::OsStr>));
        args.push(&path);
        args.push(&out);
        assert_fails(&cln_backup(&args), &[&out], &["destination exists; pass --force to replace it"]);
    }
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn a_stale_journal_is_refused_in_the_librarys_words_and_with_the_flag_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let dest = dir.path().join("lightningd.sqlite3");
    let journal = occupied(dir.path(), "lightningd.sqlite3-journal");

    let err = restore_store(&store, &dest, &Options::default()).unwrap_err();
    assert!(matches!(&err, Error::StaleSideFile { path } if path == &journal), "{err}");
    let text = err.to_string();
    assert!(text.contains("a crashed SQLite left it") && text.contains("moves it aside"), "{text}");
    names_no_flag(&text);
    let path = store.path().to_path_buf();
    drop(store);

    let run = cln_backup(&[&"restore", &path, &dest]);
    assert_fails(
        &run,
        &[&journal],
        &["a crashed SQLite left it; it belongs to the old database", "pass --force to move it aside"],
    );
    assert!(!dest.exists());
}

#[test]
fn the_comparer_names_both_files_and_the_first_difference() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_in(dir.path());
    let a = support::restore_to(&store, dir.path(), "a.sqlite3", None);
    let b = support::restore_to(&store, dir.path(), "b.sqlite3", None);
    assert_eq!(compare_databases(&a, &b, Labels::RESTORED_AND_EXPECTED).unwrap(), None);

    let conn = rusqlite::Connection::open(&b).unwrap();
    conn.execute_batch("UPDATE peers SET address = 'b:2' WHERE id = 1").unwrap();
    drop(conn);
    let diff = compare_databases(&a, &b, Labels::BACKUP_AND_LIVE).unwrap().unwrap();
    assert_eq!(diff.what, "table peers, rowid 1, column address: backup 'a:1', live 'b:2'");
    assert_eq!(diff.to_string(), format!("{}: differs from {}: {}", a.display(), b.display(), diff.what));

    // The schema counts too, before any row.
    let conn = rusqlite::Connection::open(&b).unwrap();
    conn.execute_batch("UPDATE peers SET address = 'a:1'; CREATE INDEX peers_address ON peers (address)").unwrap();
    drop(conn);
    let diff = compare_databases(&a, &b, Labels::RESTORED_AND_EXPECTED).unwrap().unwrap();
    assert_eq!(diff.what, "schema: index peers_address exists only in the expected database");

    let missing = dir.path().join("missing.sqlite3");
    let err = compare_databases(&a, &missing, Labels::BACKUP_AND_LIVE).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: no such database file", missing.display()));
}
