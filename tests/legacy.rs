//! Legacy `.dbak` interoperability: import, direct restore, export as
//! `.dbak`, SQL and dump, against the real pre-4090 fixture and files built
//! with the legacy writer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::compare::{compare_databases, compare_databases_with, Labels, Rows};
use cln_backup::export;
use cln_backup::legacy;
use cln_backup::legacy::{DbakReader, DbakWriter, Header, Kind};
use cln_backup::replay::fix_pre_4090;
use cln_backup::restore;
use cln_backup::version::bump_statement;
use cln_backup::{Error, Store};
use rusqlite::Connection;
use std::path::{Path, PathBuf};

// The `.dbak` layout the Python plugin writes (see the `legacy` docs): a 512-byte
// big-endian header (`file_version` 1, `version` u32, `offset0` u64,
// `prev_version` u32, `offset1` u64, `version_count` u64), then records of a
// 9-byte header (`length` u32 of the payload, `version` u32, `type` u8)
// and the payload. Tests that poke bytes compute it here.
const HEADER_LEN: u64 = 512;
const RECORD_HEADER_LEN: u64 = 9;

/// The 512 bytes of `h` as the layout above.
fn header_bytes(h: &Header) -> [u8; HEADER_LEN as usize] {
    let mut b = [0u8; HEADER_LEN as usize];
    b[0..4].copy_from_slice(&1u32.to_be_bytes());
    b[4..8].copy_from_slice(&h.version.to_be_bytes());
    b[8..16].copy_from_slice(&h.offset0.to_be_bytes());
    b[16..20].copy_from_slice(&h.prev_version.to_be_bytes());
    b[20..28].copy_from_slice(&h.offset1.to_be_bytes());
    b[28..36].copy_from_slice(&h.version_count.to_be_bytes());
    b
}

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");
const FIXTURE_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-restored.sql");

/// The fixture's SQL loaded into `dir/expected.sqlite3`, once per directory.
fn expected_fixture(dir: &Path) -> PathBuf {
    let path = dir.join("expected.sqlite3");
    if !path.exists() {
        Connection::open(&path).unwrap().execute_batch(&std::fs::read_to_string(FIXTURE_SQL).unwrap()).unwrap();
    }
    path
}

/// Assert that `actual` and `expected` hold the same schema and rows, by
/// the library's comparer: [`Rows::AsMultiset`] when a side was loaded from
/// a `.dump` (which does not keep the rowids of tables without an INTEGER
/// PRIMARY KEY), [`Rows::ByRowid`] when both are replays of the same log.
#[track_caller]
fn assert_same(actual: &Path, expected: &Path, rows: Rows, what: &str) {
    if let Some(d) = compare_databases_with(actual, expected, Labels::RESTORED_AND_EXPECTED, rows).unwrap() {
        panic!("{what}: {d}");
    }
}

fn data_version(path: &Path) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0))
        .unwrap()
}

/// Import the fixture into a new store at `dir/node.redb`.
fn fixture_store(dir: &Path) -> (Store, legacy::ImportReport) {
    let path = dir.join("node.redb");
    let report = legacy::import_new(Path::new(FIXTURE_DBAK), &path).unwrap();
    (Store::open(&path).unwrap(), report)
}

/// Restore a legacy file the way the Python plugin does: `stream_changes`
/// in filebackend.py (walk records from byte 512 while the last version read
/// is below the header's, i.e. stop after the first record carrying the
/// header's version), replayed as backend.py's `restore` does (one sqlite3
/// connection with `PRAGMA foreign_keys = 1`, statements in order with its
/// pre-4090 rewrite, Python's implicit BEGIN before the first DML statement,
/// one commit at the end; a snapshot replaces the file and reopens).
fn python_restore(dbak: &Path, dest: &Path) -> Result<(), String> {
    let data = std::fs::read(dbak).map_err(|e| e.to_string())?;
    let be32 = |at: usize| u32::from_be_bytes(data[at..at + 4].try_into().unwrap());
    let header_version = i64::from(be32(4));
    let open = |dest: &Path| {
        let conn = Connection::open(dest).unwrap();
        conn.execute_batch("PRAGMA foreign_keys = 1").unwrap();
        conn
    };
    let mut conn = open(dest);
    let mut offset = HEADER_LEN as usize;
    let mut version: i64 = -1;
    while version < header_version {
        if offset + 9 > data.len() {
            return Err("struct.error: unpack requires a buffer of 9 bytes".into());
        }
        let length = be32(offset) as usize;
        version = i64::from(be32(offset + 4));
        let typ = data[offset + 8];
        let payload = &data[offset + 9..offset + 9 + length];
        offset += 9 + length;
        match typ {
            1 => {
                let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
                for q in text.split('\0') {
                    let q = fix_pre_4090(q);
                    let word = q.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
                    let dml = matches!(word.as_str(), "INSERT" | "UPDATE" | "DELETE" | "REPLACE");
                    if dml && conn.is_autocommit() {
                        conn.execute_batch("BEGIN").map_err(|e| e.to_string())?;
                    }
                    conn.execute_batch(&q).map_err(|e| format!("{e} in {q}"))?;
                }
            }
            2 => {
                drop(conn);
                std::fs::write(dest, payload).map_err(|e| e.to_string())?;
                conn = open(dest);
            }
            t => return Err(format!("Unknown FileBackend entry type {t}")),
        }
    }
    if version != header_version {
        return Err(format!("Versions do not match up: {version} vs {header_version}"));
    }
    if !conn.is_autocommit() {
        conn.execute_batch("COMMIT").map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn legacy_error(e: &Error, path: &Path, needle: &str) {
    let msg = e.to_string();
    assert!(matches!(e, Error::Legacy { .. } | Error::NotADbak { .. }), "not a legacy error: {msg}");
    assert!(msg.contains(&path.display().to_string()), "error does not name the file: {msg}");
    assert!(msg.contains(needle), "error does not say {needle:?}: {msg}");
}

#[test]
fn fixture_restores_directly_to_the_reference_dump() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("lightningd.sqlite3");
    let report = legacy::restore_dbak(Path::new(FIXTURE_DBAK), &dest, &restore::Options::default()).unwrap();
    let header = DbakReader::open(Path::new(FIXTURE_DBAK)).unwrap().header();
    assert_eq!(report.version, header.version);
    assert_eq!(data_version(&dest), i64::from(header.version));
    assert_same(&dest, &expected_fixture(dir.path()), Rows::AsMultiset, "restore_dbak");

    // A directory destination means DIR/lightningd.sqlite3; it now exists, so it is refused.
    let err = legacy::restore_dbak(Path::new(FIXTURE_DBAK), dir.path(), &restore::Options::default()).unwrap_err();
    assert!(matches!(err, Error::DestinationExists { .. }), "{err}");

    // A .dbak keeps no times: a restore to a time is refused, naming it,
    // instead of restoring its head.
    let other = dir.path().join("at-a-time.sqlite3");
    let opts = restore::Options { to_time_ms: Some(cln_backup::now_ms()), ..Default::default() };
    let err = legacy::restore_dbak(Path::new(FIXTURE_DBAK), &other, &opts).unwrap_err();
    assert!(matches!(err, Error::NoRecordTimes { .. }) && err.to_string().contains("pre-4090-backup.dbak"), "{err}");
    assert!(!other.exists());
}

#[test]
fn fixture_restores_through_import_to_the_reference_dump() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = fixture_store(dir.path());
    let mut file = DbakReader::open(Path::new(FIXTURE_DBAK)).unwrap();
    let records = file.scan().unwrap();
    assert_eq!(report.records, records.len() as u64);
    assert_eq!(report.changes, records.len() as u64, "every fixture record is a committed transaction");
    assert_eq!(report.rewound, 0);
    assert_eq!(report.snapshot_version, None);
    assert_eq!(report.version, file.header().version);
    assert_eq!(store.version(), file.header().version);
    assert_eq!(store.status().unwrap().changes, records.len() as u64);
    assert!(no_temporaries(dir.path()), "the import left a temporary file");

    let dest = dir.path().join("restored.sqlite3");
    restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
    assert_same(&dest, &expected_fixture(dir.path()), Rows::AsMultiset, "import + restore_store");
}

#[test]
fn fixture_dump_reproduces_the_sqlite3_dump_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fixture_store(dir.path());
    let reader = store.reader().unwrap();
    let out = dir.path().join("dump.sql");
    let report = export::export_dump(&reader, reader.head(), &out, false, None).unwrap();
    assert_eq!(report.version, store.version());
    let ours = std::fs::read_to_string(&out).unwrap();
    let theirs = std::fs::read_to_string(FIXTURE_SQL).unwrap();
    if ours != theirs {
        let line = ours.lines().zip(theirs.lines()).position(|(a, b)| a != b);
        panic!("dump differs from sqlite3's at line {line:?}");
    }
    // An existing output is refused without force, replaced with it.
    let err = export::export_dump(&reader, reader.head(), &out, false, None).unwrap_err();
    assert!(matches!(err, Error::DestinationExists { .. }), "{err}");
    export::export_dump(&reader, reader.head() - 10, &out, true, None).unwrap();
    let earlier = std::fs::read_to_string(&out).unwrap();
    let dv = store.version() - 10;
    assert!(earlier.contains(&format!("INSERT INTO vars VALUES('data_version',NULL,{dv},NULL);")));
}

#[test]
fn dump_formats_values_like_sqlite3() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "CREATE TABLE \"select\"(a, b);
         INSERT INTO \"select\" VALUES('x''y\nz', 1.5), (3.0, 0.375), (0.1, -2.0),
             (x'ABcd', 'a' || char(13)), (1e16, 123456789012345678.0), (NULL, -9223372036854775808);
         CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
         INSERT INTO w VALUES('b', 2), ('a', 1);
         CREATE TABLE sq(id INTEGER PRIMARY KEY AUTOINCREMENT, b);
         INSERT INTO sq(b) VALUES(1);
         CREATE TABLE reals(r REAL);
         INSERT INTO reals VALUES (1e300), (1e-300), (3.141592653589793), (-2.2250738585072014e-308), (0.30000000000000004);
         CREATE TABLE gap(x);
         INSERT INTO gap VALUES ('a'), ('b'), ('c');
         DELETE FROM gap WHERE x = 'b';
         CREATE VIEW v AS SELECT 1 -- hi
         ;",
    )
    .unwrap();
    let mut out = Vec::new();
    export::dump(&conn, &db, &mut out, Path::new("out.sql")).unwrap();
    let text = String::from_utf8(out).unwrap();
    // What sqlite3's .dump prints for the same database, apart from the
    // digits of inexact reals (0.1 here, and the `reals` table): SQLite
    // 3.43 changed how `%!.20g` rounds them, so they depend on the version.
    let expected = "PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE IF NOT EXISTS \"select\"(a, b);
INSERT INTO \"select\" VALUES(replace('x''y\\nz','\\n',char(10)),1.5);
INSERT INTO \"select\" VALUES(3.0,0.375);
INSERT INTO \"select\" VALUES(0.1?,-2.0);
INSERT INTO \"select\" VALUES(X'abcd',replace('a\\r','\\r',char(13)));
INSERT INTO \"select\" VALUES(10000000000000000.0,123456789012345680.0);
INSERT INTO \"select\" VALUES(NULL,-9223372036854775808);
CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID;
INSERT INTO w VALUES('a',1);
INSERT INTO w VALUES('b',2);
CREATE TABLE sq(id INTEGER PRIMARY KEY AUTOINCREMENT, b);
INSERT INTO sq VALUES(1,1);
CREATE TABLE reals(r REAL);
INSERT INTO reals VALUES(?);
INSERT INTO reals VALUES(?);
INSERT INTO reals VALUES(?);
INSERT INTO reals VALUES(?);
INSERT INTO reals VALUES(?);
CREATE TABLE gap(x);
INSERT INTO gap VALUES('a');
INSERT INTO gap VALUES('c');
DELETE FROM sqlite_sequence;
INSERT INTO sqlite_sequence VALUES('sq',1);
CREATE VIEW v AS SELECT 1 -- hi
;
COMMIT;
";
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let expected_lines: Vec<&str> = expected.split_inclusive('\n').collect();
    assert_eq!(lines.len(), expected_lines.len(), "{text}");
    for (got, want) in lines.iter().zip(&expected_lines) {
        match want.split_once('?') {
            None => assert_eq!(got, want),
            Some((before, after)) => {
                let digits = got
                    .strip_prefix(before.trim_end_matches("0.1"))
                    .and_then(|g| g.strip_suffix(after))
                    .unwrap_or_else(|| panic!("{got:?} is not {want:?}"));
                assert!(digits.len() >= 17 && digits.parse::<f64>().is_ok(), "{got:?}");
            }
        }
    }
    // It loads back to the same contents, every real bit for bit. The
    // reload numbers `gap`'s rows afresh (the dump writes no rowids), so
    // the rows match as a multiset and not by rowid.
    let reloaded = dir.path().join("reloaded.sqlite3");
    let back = Connection::open(&reloaded).unwrap();
    back.execute_batch(&text).unwrap();
    assert_same(&reloaded, &db, Rows::AsMultiset, "dump reloaded");
    let by_rowid = compare_databases(&reloaded, &db, Labels::RESTORED_AND_EXPECTED).unwrap().unwrap();
    assert_eq!(by_rowid.what, "table gap, rowid 2: row only in the restored database");
    let reals = |c: &Connection| -> Vec<u64> {
        c.prepare("SELECT r FROM reals ORDER BY rowid")
            .unwrap()
            .query_map([], |r| r.get::<_, f64>(0))
            .unwrap()
            .map(|r| r.unwrap().to_bits())
            .collect()
    };
    assert_eq!(reals(&back), reals(&conn));
}

#[test]
fn round_trip_legacy_store_legacy_restore() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fixture_store(dir.path());
    let reader = store.reader().unwrap();
    let out = dir.path().join("export.dbak");
    let report = legacy::export_dbak(&reader, reader.head(), &out, false, None).unwrap();
    assert!(legacy::is_dbak(&out));
    assert_eq!(report.version, store.version());

    // The header is what the Python plugin's add_change leaves.
    let mut file = DbakReader::open(&out).unwrap();
    let header = file.header();
    let records = file.scan().unwrap();
    let last = records.last().unwrap();
    assert_eq!(header.version, store.version());
    assert_eq!(header.prev_version, store.version() - 1);
    assert_eq!(header.offset0, std::fs::metadata(&out).unwrap().len());
    assert_eq!(header.offset1, last.offset);
    assert_eq!(header.version_count, records.len() as u64);
    assert_eq!(report.records, records.len() as u64);

    let dest = dir.path().join("restored.sqlite3");
    legacy::restore_dbak(&out, &dest, &restore::Options::default()).unwrap();
    assert_same(&dest, &expected_fixture(dir.path()), Rows::AsMultiset, "fixture -> store -> dbak -> restore");

    // Same statements, record for record, as the original file.
    let mut original = DbakReader::open(Path::new(FIXTURE_DBAK)).unwrap();
    let orig_records = original.scan().unwrap();
    assert_eq!(orig_records.len(), records.len());
    for (a, b) in orig_records.iter().zip(&records) {
        assert_eq!((a.version, a.kind), (b.version, b.kind));
        assert_eq!(original.statements(a).unwrap(), file.statements(b).unwrap());
    }
}

/// Versions 1..=5 of a small schema, with lone PRAGMA reports at version 3,
/// then `tail`.
fn small_log(w: &mut DbakWriter) {
    w.add_transaction(
        1,
        &[
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
            "INSERT INTO vars VALUES ('data_version', 0)".into(),
            bump_statement(1),
        ],
    )
    .unwrap();
    w.add_transaction(2, &["CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)".to_string(), bump_statement(2)])
        .unwrap();
    w.add_transaction(3, &["INSERT INTO t VALUES (3, 'three')".to_string(), bump_statement(3)]).unwrap();
    w.add_transaction(3, &["PRAGMA foreign_keys = OFF;"]).unwrap();
    w.add_transaction(3, &["PRAGMA foreign_keys = ON;"]).unwrap();
    for v in 4..=5u32 {
        w.add_transaction(v, &[format!("INSERT INTO t VALUES ({v}, 'v{v}')"), bump_statement(v)]).unwrap();
    }
}

fn write_dbak(path: &Path, build: impl FnOnce(&mut DbakWriter)) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = DbakWriter::new(file, path).unwrap();
    build(&mut w);
    w.finish().unwrap();
}

fn names(path: &Path) -> Vec<String> {
    Connection::open(path)
        .unwrap()
        .prepare("SELECT name FROM t ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn rewound_transaction_is_dropped_not_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("rewound.dbak");
    write_dbak(&dbak, |w| {
        small_log(w);
        // Version 6 reported, rewound (lightningd stopped before committing),
        // then reported again with other content: the plugin appended both.
        w.add_transaction(6, &["INSERT INTO t VALUES (100, 'A')".to_string(), bump_statement(6)]).unwrap();
        w.add_transaction(6, &["INSERT INTO t VALUES (101, 'B')".to_string(), bump_statement(6)]).unwrap();
    });

    // The Python reader stops at the first record with the header's version: it replays A.
    let naive = dir.path().join("naive.sqlite3");
    python_restore(&dbak, &naive).unwrap();
    assert_eq!(names(&naive), ["three", "v4", "v5", "A"]);

    let store_path = dir.path().join("node.redb");
    let report = legacy::import_new(&dbak, &store_path).unwrap();
    assert_eq!(report.records, 9);
    assert_eq!(report.rewound, 1);
    assert_eq!(report.changes, 8, "6 transactions and 2 lone reports");
    assert_eq!(report.version, 6);
    let store = Store::open(&store_path).unwrap();
    let status = store.status().unwrap();
    assert_eq!(status.version, 6);
    assert_eq!(status.changes, 6, "one record per version");
    let reader = store.reader().unwrap();
    let v6: Vec<_> =
        reader.changes(reader.head()).unwrap().map(|c| c.unwrap()).filter(|c| c.data_version() == 6).collect();
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].transactions.len(), 1);
    assert_eq!(v6[0].transactions[0].statements[0], "INSERT INTO t VALUES (101, 'B')");
    let v3 = reader.changes(3).unwrap().last().unwrap().unwrap();
    assert_eq!(v3.transactions.len(), 3, "the lone reports are kept after version 3");

    let from_store = dir.path().join("from-store.sqlite3");
    restore::restore_store(&store, &from_store, &restore::Options::default()).unwrap();
    assert_eq!(names(&from_store), ["three", "v4", "v5", "B"]);

    let direct = dir.path().join("direct.sqlite3");
    let r = legacy::restore_dbak(&dbak, &direct, &restore::Options::default()).unwrap();
    assert_eq!((r.version, r.changes), (6, 6));
    assert_eq!(names(&direct), ["three", "v4", "v5", "B"]);
    assert_same(&direct, &from_store, Rows::ByRowid, "direct vs store");

    // An earlier version the file holds; one it does not hold is refused.
    let v5 = dir.path().join("v5.sqlite3");
    let opts = restore::Options { to_version: Some(5), ..Default::default() };
    legacy::restore_dbak(&dbak, &v5, &opts).unwrap();
    assert_eq!(names(&v5), ["three", "v4", "v5"]);
    assert_eq!(data_version(&v5), 5);
    let none = dir.path().join("v7.sqlite3");
    let opts = restore::Options { to_version: Some(7), ..Default::default() };
    let err = legacy::restore_dbak(&dbak, &none, &opts).unwrap_err();
    assert!(matches!(err, Error::NotRestorable { asked: 7, .. }), "{err}");
    assert!(!none.exists());
}

#[test]
fn rewind_in_the_middle_and_unacknowledged_tail() {
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("middle.dbak");
    write_dbak(&dbak, |w| {
        small_log(w);
        w.add_transaction(6, &["INSERT INTO t VALUES (100, 'A')".to_string(), bump_statement(6)]).unwrap();
        w.add_transaction(6, &["INSERT INTO t VALUES (100, 'B')".to_string(), bump_statement(6)]).unwrap();
        w.add_transaction(7, &["UPDATE t SET name = 'C' WHERE id = 100".to_string(), bump_statement(7)]).unwrap();
    });
    // The Python reader replays both version-6 records: the same primary key twice.
    let err = python_restore(&dbak, &dir.path().join("naive.sqlite3")).unwrap_err();
    assert!(err.contains("UNIQUE"), "{err}");

    let dest = dir.path().join("direct.sqlite3");
    legacy::restore_dbak(&dbak, &dest, &restore::Options::default()).unwrap();
    assert_eq!(names(&dest), ["three", "v4", "v5", "C"]);

    // A record appended past the header's version was never acknowledged:
    // put the header back to version 7 after appending version 8.
    let tail = dir.path().join("tail.dbak");
    let mut header = DbakReader::open(&dbak).unwrap().header();
    write_dbak(&tail, |w| {
        small_log(w);
        w.add_transaction(6, &["INSERT INTO t VALUES (100, 'B')".to_string(), bump_statement(6)]).unwrap();
        w.add_transaction(7, &["UPDATE t SET name = 'C' WHERE id = 100".to_string(), bump_statement(7)]).unwrap();
        header = w.header();
        w.add_transaction(8, &["DELETE FROM t".to_string(), bump_statement(8)]).unwrap();
    });
    let mut bytes = std::fs::read(&tail).unwrap();
    bytes[..HEADER_LEN as usize].copy_from_slice(&header_bytes(&header));
    std::fs::write(&tail, &bytes).unwrap();
    let report = legacy::import_new(&tail, &dir.path().join("tail.redb")).unwrap();
    assert_eq!((report.version, report.unacknowledged), (7, 1));
    let dest = dir.path().join("tail.sqlite3");
    legacy::restore_dbak(&tail, &dest, &restore::Options::default()).unwrap();
    assert_eq!(names(&dest), ["three", "v4", "v5", "C"]);

    // A header two versions behind the records is not explained by that: refused.
    header.version = 6;
    bytes[..HEADER_LEN as usize].copy_from_slice(&header_bytes(&header));
    std::fs::write(&tail, &bytes).unwrap();
    let err = legacy::restore_dbak(&tail, &dir.path().join("x.sqlite3"), &Default::default()).unwrap_err();
    legacy_error(&err, &tail, "header says version 6");
}

/// No temporary file of ours is left in `dir`.
fn no_temporaries(dir: &Path) -> bool {
    std::fs::read_dir(dir).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().starts_with(".cln-backup-"))
}

/// Check that a bad file gives a clear error naming it, writes no
/// destination, creates no store, and leaves an existing empty store empty.
fn rejected(dir: &Path, bad: &Path, needle: &str) {
    let dest = dir.join("dest.sqlite3");
    let err = legacy::restore_dbak(bad, &dest, &restore::Options::default()).unwrap_err();
    legacy_error(&err, bad, needle);
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1, "restore left a file behind");

    let store_path = dir.join("new.redb");
    let err = legacy::import_new(bad, &store_path).unwrap_err();
    legacy_error(&err, bad, needle);
    assert!(!store_path.exists());
    assert!(no_temporaries(dir), "the import left a temporary file");

    let existing = dir.join("existing.redb");
    let store = Store::create(&existing).unwrap();
    let err = legacy::import(bad, &store).unwrap_err();
    legacy_error(&err, bad, needle);
    let status = store.status().unwrap();
    assert_eq!((status.changes, status.seq, status.snapshot.is_none()), (0, 0, true));
    drop(store);
    std::fs::remove_file(&existing).unwrap();
}

fn fixture_bytes() -> Vec<u8> {
    std::fs::read(FIXTURE_DBAK).unwrap()
}

#[test]
fn bad_legacy_files_are_refused_clearly() {
    let fixture = fixture_bytes();
    let mut file = DbakReader::open(Path::new(FIXTURE_DBAK)).unwrap();
    let records = file.scan().unwrap();
    // The record layout: length is the payload's, records follow each other.
    assert_eq!(records[0].offset, HEADER_LEN);
    assert_eq!(records[1].offset, HEADER_LEN + 9 + u64::from(records[0].length));
    let last = records.last().unwrap();
    assert_eq!(last.offset + RECORD_HEADER_LEN + u64::from(last.length), fixture.len() as u64);
    let middle = records[records.len() / 2];

    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        (
            "truncated mid-record",
            fixture[..fixture.len() - 100].to_vec(),
            format!("truncated record at offset {}", records.last().unwrap().offset),
        ),
        (
            "truncated inside a record header",
            fixture[..middle.offset as usize + 5].to_vec(),
            format!("truncated record at offset {}", middle.offset),
        ),
        (
            "corrupted type",
            {
                let mut b = fixture.clone();
                b[middle.offset as usize + 8] = 7;
                b
            },
            format!("record at offset {} (version {}) has unknown type 7", middle.offset, middle.version),
        ),
        (
            "corrupted length",
            {
                let mut b = fixture.clone();
                b[middle.offset as usize..middle.offset as usize + 4].copy_from_slice(&0x7fff_0000u32.to_be_bytes());
                b
            },
            format!("truncated record at offset {}", middle.offset),
        ),
        ("shorter than the header", fixture[..300].to_vec(), "shorter than the 512-byte header".into()),
        (
            "wrong file_version",
            {
                let mut b = fixture.clone();
                b[3] = 2;
                b
            },
            "unknown file_version 2".into(),
        ),
        (
            "statements not UTF-8",
            {
                let mut b = fixture.clone();
                b[(middle.offset + RECORD_HEADER_LEN) as usize + 3] = 0xff;
                b
            },
            format!("record at offset {} (version {}) is not UTF-8", middle.offset, middle.version),
        ),
    ];
    for (what, bytes, needle) in cases {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.dbak");
        std::fs::write(&bad, bytes).unwrap();
        eprintln!("case: {what}");
        rejected(dir.path(), &bad, &needle);
    }
}

/// A file cut short past some version restores the versions before the
/// damage, never the head, and never the last change before the damage
/// (the damaged record could have been its rewind); an import, which takes
/// the whole file, is still refused.
#[test]
fn versions_before_damage_restore_and_the_rest_is_refused_naming_it() {
    let fixture = fixture_bytes();
    let records = DbakReader::open(Path::new(FIXTURE_DBAK)).unwrap().scan().unwrap();
    let cut_in = records[records.len() / 2];
    let last_whole = records[records.len() / 2 - 1].version;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("cut.dbak");
    std::fs::write(&bad, &fixture[..cut_in.offset as usize + 20]).unwrap();
    let needle = format!("truncated record at offset {}", cut_in.offset);

    let before = u64::from(last_whole - 1);
    let held = legacy::restorable(&bad, Some(before)).unwrap();
    assert_eq!(held.target, before);
    let dest = dir.path().join("before.sqlite3");
    legacy::restore_dbak(&bad, &dest, &restore::Options { to_version: Some(before), ..Default::default() }).unwrap();
    let truth = dir.path().join("truth.sqlite3");
    legacy::restore_dbak(
        Path::new(FIXTURE_DBAK),
        &truth,
        &restore::Options { to_version: Some(before), ..Default::default() },
    )
    .unwrap();
    assert_same(&dest, &truth, Rows::ByRowid, "the restore before the damage");

    for refused in [None, Some(u64::from(last_whole)), Some(u64::from(cut_in.version))] {
        let e = legacy::restorable(&bad, refused).unwrap_err();
        legacy_error(&e, &bad, &needle);
        if refused.is_some() {
            assert!(e.to_string().contains(&format!("restore, up to {}", last_whole - 1)), "{e}");
        }
    }
    let e = legacy::import_new(&bad, &dir.path().join("s.redb")).unwrap_err();
    legacy_error(&e, &bad, &needle);
}

#[test]
fn version_sequence_errors_name_the_record() {
    let dir = tempfile::tempdir().unwrap();
    // A gap: version 5 missing.
    let gap = dir.path().join("gap.dbak");
    write_dbak(&gap, |w| {
        for v in 1..=4u32 {
            let first = if v == 1 {
                "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER); INSERT INTO vars VALUES ('data_version', 0)"
            } else {
                "SELECT 1"
            };
            w.add_transaction(v, &[first.to_string(), bump_statement(v)]).unwrap();
        }
        w.add_transaction(6, &["SELECT 1".to_string(), bump_statement(6)]).unwrap();
    });
    let err = legacy::restore_dbak(&gap, &dir.path().join("a"), &Default::default()).unwrap_err();
    legacy_error(&err, &gap, "has version 6, expected 5");
    // A new version without its bump.
    let nobump = dir.path().join("nobump.dbak");
    write_dbak(&nobump, |w| {
        w.add_transaction(1, &["CREATE TABLE x (a)"]).unwrap();
    });
    let err = legacy::restore_dbak(&nobump, &dir.path().join("b"), &Default::default()).unwrap_err();
    legacy_error(&err, &nobump, "does not end with the data_version bump");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}

#[test]
fn is_dbak_recognises_legacy_files_only() {
    let dir = tempfile::tempdir().unwrap();
    assert!(legacy::is_dbak(Path::new(FIXTURE_DBAK)));
    let (_store, _) = fixture_store(dir.path());
    assert!(!legacy::is_dbak(&dir.path().join("node.redb")));
    let short = dir.path().join("short");
    std::fs::write(&short, &fixture_bytes()[..511]).unwrap();
    assert!(!legacy::is_dbak(&short));
    let sqlite = dir.path().join("db.sqlite3");
    Connection::open(&sqlite).unwrap().execute_batch("CREATE TABLE a(b)").unwrap();
    assert!(!legacy::is_dbak(&sqlite));
    assert!(!legacy::is_dbak(dir.path()));
    assert!(!legacy::is_dbak(&dir.path().join("missing")));
}

#[test]
fn python_reader_accepts_our_export() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = fixture_store(dir.path());

    let check = |store: &Store, name: &str| -> PathBuf {
        let reader = store.reader().unwrap();
        let out = dir.path().join(format!("{name}.dbak"));
        legacy::export_dbak(&reader, reader.head(), &out, false, None).unwrap();
        let python = dir.path().join(format!("{name}-python.sqlite3"));
        python_restore(&out, &python).unwrap();
        let ours = dir.path().join(format!("{name}-ours.sqlite3"));
        restore::restore_store(store, &ours, &restore::Options::default()).unwrap();
        assert_same(&python, &ours, Rows::ByRowid, name);
        assert_eq!(data_version(&python), i64::from(store.version()));
        out
    };
    let plain = check(&store, "plain");
    assert!(DbakReader::open(&plain).unwrap().scan().unwrap().iter().all(|r| r.kind == Kind::Transaction));

    // With a snapshot: compact first, so the export starts with a type-2 record.
    cln_backup::compact::compact(&store, &Default::default()).unwrap();
    let snap = store.status().unwrap().snapshot.unwrap();
    let compacted = check(&store, "compacted");
    let mut file = DbakReader::open(&compacted).unwrap();
    let records = file.scan().unwrap();
    assert_eq!(records[0].kind, Kind::Snapshot);
    assert_eq!(records[0].version, snap.version);
    assert_eq!(u64::from(records[0].length), snap.size);
    assert!(records[1..].iter().all(|r| r.kind == Kind::Transaction));
    assert_same(
        &dir.path().join("compacted-ours.sqlite3"),
        &expected_fixture(dir.path()),
        Rows::AsMultiset,
        "compacted",
    );

    // Importing it again gives a store with that snapshot and the same restore.
    let again = dir.path().join("again.redb");
    let report = legacy::import_new(&compacted, &again).unwrap();
    assert_eq!(report.snapshot_version, Some(snap.version));
    let again = Store::open(&again).unwrap();
    let dest = dir.path().join("again.sqlite3");
    restore::restore_store(&again, &dest, &restore::Options::default()).unwrap();
    assert_same(&dest, &expected_fixture(dir.path()), Rows::AsMultiset, "re-imported");
}

#[test]
fn export_sql_has_one_block_per_version_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("small.dbak");
    write_dbak(&dbak, |w| {
        small_log(w);
        w.add_transaction(6, &["INSERT INTO t VALUES (6, 'it''s\nmultiline')".to_string(), bump_statement(6)]).unwrap();
    });
    for (name, source) in [("fixture", Path::new(FIXTURE_DBAK)), ("small", dbak.as_path())] {
        let store_path = dir.path().join(format!("{name}.redb"));
        legacy::import_new(source, &store_path).unwrap();
        let store = Store::open(&store_path).unwrap();
        let reader = store.reader().unwrap();
        let out = dir.path().join(format!("{name}.sql"));
        export::export_sql(&reader, reader.head(), &out, false, None).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();

        let versions: Vec<u32> = text
            .lines()
            .filter_map(|l| l.strip_prefix("-- version "))
            .map(|rest| {
                let (v, time) = rest.split_once(' ').unwrap();
                // A .dbak records no times: the import says so.
                assert_eq!(time, "(time not recorded: imported from a .dbak)");
                v.parse().unwrap()
            })
            .collect();
        assert_eq!(versions, (1..=store.version()).collect::<Vec<_>>(), "{name}");

        // Replays on an empty database to what a restore gives.
        let replayed = dir.path().join(format!("{name}-replayed.sqlite3"));
        Connection::open(&replayed).unwrap().execute_batch(&text).unwrap();
        let restored = dir.path().join(format!("{name}-restored.sqlite3"));
        restore::restore_store(&store, &restored, &restore::Options::default()).unwrap();
        assert_same(&replayed, &restored, Rows::ByRowid, name);
    }
    let small = std::fs::read_to_string(dir.path().join("small.sql")).unwrap();
    assert_eq!(small.matches("-- reported again at the same version").count(), 2);
    let pragma_off = small.find("PRAGMA foreign_keys = OFF;\n").unwrap();
    let pragma_on = small.find("PRAGMA foreign_keys = ON;\n\n-- version 4").unwrap();
    assert!(small.find("-- version 3").unwrap() < pragma_off && pragma_off < pragma_on);
    assert_eq!(names(&dir.path().join("small-replayed.sqlite3")).last().unwrap(), "it's\nmultiline");
}

#[test]
fn exports_and_restores_report_progress_to_the_last_change() {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = fixture_store(dir.path());
    let reader = store.reader().unwrap();
    let last = Arc::new(AtomicU64::new(0));
    let seen = Arc::clone(&last);
    let progress: restore::Progress = Arc::new(move |n| seen.store(n, Ordering::SeqCst));
    type Export = fn(
        &cln_backup::Reader,
        u64,
        &Path,
        bool,
        Option<&restore::Progress>,
    ) -> cln_backup::Result<export::ExportReport>;
    let exports: [(&str, Export); 3] =
        [("dbak", legacy::export_dbak), ("sql", export::export_sql), ("dump", export::export_dump)];
    for (name, export) in exports {
        last.store(0, Ordering::SeqCst);
        export(&reader, reader.head(), &dir.path().join(name), false, Some(&progress)).unwrap();
        assert_eq!(last.load(Ordering::SeqCst), report.changes, "{name}");
    }
    last.store(0, Ordering::SeqCst);
    let opts = restore::Options { progress: Some(Arc::clone(&progress)), ..restore::Options::default() };
    legacy::restore_dbak(Path::new(FIXTURE_DBAK), &dir.path().join("direct.sqlite3"), &opts).unwrap();
    assert_eq!(last.load(Ordering::SeqCst), report.changes);
}
