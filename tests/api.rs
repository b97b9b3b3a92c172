//! The library as an embedder reaches it: the crate root's re-exports, the
//! reader and writer of `.dbak` files re-exported from `legacy`, and the
//! calls that stand in for the format's internals (`legacy::restorable`
//! instead of the record planner, `Head::new` for destinations built
//! outside the crate).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::legacy::{self, DbakWriter, Restorable};
use cln_backup::version::bump_statement;
use cln_backup::{
    compact, restore, CompactStats, Destination, Error, FileDestination, Head, RestoreReport, Seq, Store,
};
use rusqlite::Connection;
use std::path::Path;

const SCHEMA: &str = "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)";

/// The statements lightningd reports for version `v` of a small log: the
/// schema first, then one row per version, each ending with the bump.
fn transaction(v: u32) -> Vec<String> {
    let body = if v == 1 {
        vec![SCHEMA.to_string(), "INSERT INTO vars VALUES ('data_version', 0)".to_string()]
    } else {
        vec![format!("INSERT INTO vars VALUES ('v{v}', {v})")]
    };
    body.into_iter().chain([bump_statement(v)]).collect()
}

/// A `.dbak` at `path` built by `fill`.
fn write_dbak(path: &Path, fill: impl FnOnce(&mut DbakWriter)) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = DbakWriter::new(file, path).unwrap();
    fill(&mut w);
    w.finish().unwrap();
}

fn data_version(db: &Path) -> i64 {
    let conn = Connection::open(db).unwrap();
    conn.query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0)).unwrap()
}

#[test]
fn restorable_answers_what_restore_dbak_restores() {
    let dir = tempfile::tempdir().unwrap();
    // Versions 1..=4, with a first version 4 that was rewound (replaced by
    // a later record with the same version and a bump).
    let dbak = dir.path().join("node.dbak");
    write_dbak(&dbak, |w| {
        for v in 1..=4 {
            w.add_transaction(v, &transaction(v)).unwrap();
        }
        w.add_transaction(4, &["INSERT INTO vars VALUES ('again', 4)".to_string(), bump_statement(4)]).unwrap();
    });

    let head = legacy::restorable(&dbak, None).unwrap();
    assert_eq!((head.target, head.head, head.snapshot), (4, 4, false));
    let report: RestoreReport =
        legacy::restore_dbak(&dbak, &dir.path().join("head.sqlite3"), &restore::Options::default()).unwrap();
    assert_eq!(report.seq, head.target);
    assert_eq!(data_version(&report.path), 4);

    let earlier = legacy::restorable(&dbak, Some(2)).unwrap();
    assert_eq!((earlier.target, earlier.head), (2, 4));
    let opts = restore::Options { to_version: Some(2), ..restore::Options::default() };
    let report = legacy::restore_dbak(&dbak, &dir.path().join("two.sqlite3"), &opts).unwrap();
    assert_eq!(report.seq, earlier.target);

    // Version 0 is the empty database before the first change: held, and
    // what a front end refuses to restore on its own.
    assert_eq!(legacy::restorable(&dbak, Some(0)).unwrap().target, 0);

    let err = legacy::restorable(&dbak, Some(9)).unwrap_err();
    assert!(matches!(err, Error::NotRestorable { asked: 9, .. }), "{err}");
    let err = legacy::restore_dbak(
        &dbak,
        &dir.path().join("nine.sqlite3"),
        &restore::Options { to_version: Some(9), ..restore::Options::default() },
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotRestorable { asked: 9, .. }), "{err}");
}

#[test]
fn restorable_starts_at_a_dbak_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image.sqlite3");
    {
        let conn = Connection::open(&image).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch("INSERT INTO vars VALUES ('data_version', 2)").unwrap();
    }
    let dbak = dir.path().join("snap.dbak");
    write_dbak(&dbak, |w| {
        let len = std::fs::metadata(&image).unwrap().len();
        w.add_snapshot(2, len, &mut std::fs::File::open(&image).unwrap()).unwrap();
        for v in 3..=4 {
            w.add_transaction(v, &transaction(v)).unwrap();
        }
    });

    let held: Restorable = legacy::restorable(&dbak, None).unwrap();
    assert_eq!((held.target, held.head, held.snapshot), (4, 4, true));
    assert_eq!(legacy::restorable(&dbak, Some(2)).unwrap().target, 2);
    // Below the snapshot nothing is held.
    let err = legacy::restorable(&dbak, Some(1)).unwrap_err();
    assert!(matches!(&err, Error::NotRestorable { asked: 1, range } if range == "2 to 4"), "{err}");

    // A file that is not a .dbak is refused naming it, as by restore_dbak.
    let err = legacy::restorable(&image, None).unwrap_err();
    assert!(matches!(err, Error::NotADbak { .. }), "{err}");
    assert!(err.to_string().contains(&image.display().to_string()), "{err}");
}

#[test]
fn head_new_is_what_a_file_destination_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("node.redb")).unwrap();
    for v in 1..=3 {
        store.add_change(v, &transaction(v)).unwrap();
    }
    let dest = FileDestination::new(store);
    assert_eq!(dest.head().unwrap(), Head::new(3, Some(2), true));
    let seq: Seq = dest.rewind().unwrap();
    assert_eq!(seq, 2);
    // Refused twice in a row: the head after a rewind may not be rewound.
    assert_eq!(dest.head().unwrap(), Head::new(2, Some(1), false));
}

#[test]
fn root_report_names_are_the_modules_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path().join("node.redb")).unwrap();
    for v in 1..=4 {
        store.add_change(v, &transaction(v)).unwrap();
    }
    let stats: CompactStats = compact::compact(&store, &Default::default()).unwrap();
    assert!(stats.compacted);
    assert_eq!((stats.snapshot_version, stats.changes_before, stats.changes_after), (Some(3), 4, 1));
    let dest = dir.path().join("lightningd.sqlite3");
    let report: RestoreReport = restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
    assert_eq!((report.version, report.changes), (4, 1));
    assert_eq!(data_version(&dest), 4);
}
