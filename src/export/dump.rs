//! A schema-and-data dump of the database at a version, in the format of
//! the `sqlite3` shell's `.dump`.
//!
//! Owns the export (the store replayed into a scratch database beside the
//! output, through [`crate::replay`], then dumped) and the text: `PRAGMA foreign_keys=OFF;`, `BEGIN TRANSACTION;`, each
//! table's `CREATE` statement followed by its rows as `INSERT INTO t
//! VALUES(...);`, then indexes, triggers and views, then `COMMIT;`. Values
//! are written as the shell writes them: `NULL`; integers in decimal; reals
//! that are whole as `N.0`, others through SQLite's own `%!.20g` (the digits
//! of inexact values changed in SQLite 3.43; every version's reads back to
//! the same double); text quoted
//! with `''`, newlines and carriage returns through `replace(...)`; blobs as
//! `X'..'` with lowercase hex. Rows come in rowid order (the order the shell's
//! full-table scan yields). It must not change the database it reads.

use super::{ExportReport, Output};
use crate::atomic_file::TempFile;
use crate::error::{Error, Result};
use crate::replay::{self, Progress};
use crate::store::Reader;
use crate::version::{data_version, Seq};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Write the whole database at `upto` as `sqlite3`'s `.dump` would: the
/// snapshot and changes are replayed into a temporary database beside `out`,
/// which is then dumped (see [`dump`]).
///
/// ```
/// use cln_backup::compare::{compare_databases_with, Labels, Rows};
/// use cln_backup::{export, restore, rusqlite::Connection, Error};
/// # use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// # store.add_change(1, &["CREATE TABLE notes (body TEXT, n REAL)"])?;
/// # store.add_change(2, &["INSERT INTO notes VALUES ('it''s', 0.1), (NULL, 2.0)"])?;
/// let reader = store.reader()?;
/// let out = dir.path().join("dump.sql");
/// let report = export::export_dump(&reader, reader.head(), &out, false, None)?;
/// assert_eq!(report.version, 2);
/// // An existing output is replaced only when asked.
/// let again = export::export_dump(&reader, reader.head(), &out, false, None);
/// assert!(matches!(again, Err(Error::DestinationExists { .. })));
///
/// // Reloaded, the dump holds what a restore holds (its rowids numbered afresh).
/// let reloaded = dir.path().join("reloaded.sqlite3");
/// Connection::open(&reloaded)?.execute_batch(&std::fs::read_to_string(&out)?)?;
/// let restored = restore::restore_store(&store, &dir.path().join("restored.sqlite3"), &Default::default())?;
/// let labels = Labels::RESTORED_AND_EXPECTED;
/// assert_eq!(compare_databases_with(&restored.path, &reloaded, labels, Rows::AsMultiset)?, None);
/// # Ok(()) }
/// ```
pub fn export_dump(
    reader: &Reader,
    upto: Seq,
    out: &Path,
    force: bool,
    progress: Option<&Progress>,
) -> Result<ExportReport> {
    let output = Output::new(reader, upto, out, force)?;
    // A scratch database beside OUT, removed (with any side files) when dropped.
    let db = TempFile::create(out, "dump")?;
    let replayed = replay::replay_store(reader, upto, db.path(), progress)?;
    let conn = rusqlite::Connection::open_with_flags(db.path(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| Error::sqlite(db.path(), e))?;
    let tmp_path = output.path().to_path_buf();
    let mut file = output.tmp.reopen()?;
    let mut w = BufWriter::with_capacity(1 << 20, &mut file);
    dump(&conn, db.path(), &mut w, &tmp_path)?;
    w.flush().map_err(|e| Error::io(&tmp_path, e))?;
    drop(w);
    drop(conn);
    drop(file);
    let done = output.persist()?;
    Ok(ExportReport {
        path: done.path,
        ownership: done.ownership,
        version: data_version(upto),
        snapshot_version: reader.snapshot_for(upto).map(|s| s.version),
        records: replayed.changes,
        bytes: done.bytes,
    })
}

/// Write the dump of `conn` (the database at `db_path`) to `out` (the file at `out_path`).
///
/// ```
/// use cln_backup::{export, rusqlite::Connection};
/// use std::path::Path;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let db = dir.path().join("db.sqlite3");
/// let conn = Connection::open(&db)?;
/// conn.execute_batch("CREATE TABLE t (x, y); INSERT INTO t VALUES (1.0, 'it''s'), (NULL, x'00ff')")?;
/// let mut out = Vec::new();
/// export::dump(&conn, &db, &mut out, Path::new("dump.sql"))?;
/// assert_eq!(
///     String::from_utf8(out)?,
///     "PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\nCREATE TABLE t (x, y);\n\
///      INSERT INTO t VALUES(1.0,'it''s');\nINSERT INTO t VALUES(NULL,X'00ff');\nCOMMIT;\n"
/// );
/// # Ok(()) }
/// ```
pub fn dump(conn: &Connection, db_path: &Path, out: &mut dyn Write, out_path: &Path) -> Result<()> {
    let sq = |e| Error::sqlite(db_path, e);
    let io = |e| Error::io(out_path, e);
    out.write_all(b"PRAGMA foreign_keys=OFF;\nBEGIN TRANSACTION;\n").map_err(io)?;
    let tables: Vec<(String, String)> = {
        let mut stmt = conn
            .prepare(
                "SELECT name, sql FROM sqlite_schema WHERE type == 'table' AND sql NOT NULL \
                 ORDER BY tbl_name == 'sqlite_sequence', rowid",
            )
            .map_err(sq)?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sq)?;
        rows.collect::<std::result::Result<_, _>>().map_err(sq)?
    };
    let mut writable_schema = false;
    for (name, sql) in &tables {
        if name == "sqlite_sequence" {
            out.write_all(b"DELETE FROM sqlite_sequence;\n").map_err(io)?;
        } else if name.starts_with("sqlite_stat") && name.len() == "sqlite_stat1".len() {
            out.write_all(b"ANALYZE sqlite_schema;\n").map_err(io)?;
        } else if name.starts_with("sqlite_") {
            continue;
        } else if sql.starts_with("CREATE VIRTUAL TABLE") {
            if !writable_schema {
                out.write_all(b"PRAGMA writable_schema=ON;\n").map_err(io)?;
                writable_schema = true;
            }
            writeln!(
                out,
                "INSERT INTO sqlite_schema(type,name,tbl_name,rootpage,sql)VALUES('table',{},{},0,{});",
                quote_text(name),
                quote_text(name),
                quote_text(sql)
            )
            .map_err(io)?;
            continue;
        } else {
            schema_line(out, sql).map_err(io)?;
        }
        table_rows(conn, db_path, name, out, out_path)?;
    }
    {
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_schema WHERE sql NOT NULL AND type IN ('index','trigger','view')")
            .map_err(sq)?;
        let mut rows = stmt.query([]).map_err(sq)?;
        while let Some(row) = rows.next().map_err(sq)? {
            let sql: String = row.get(0).map_err(sq)?;
            // The shell ends the statement on a new line when it holds a `--` comment.
            let tail: &[u8] = if sql.contains("--") { b"\n;\n" } else { b";\n" };
            out.write_all(sql.as_bytes()).map_err(io)?;
            out.write_all(tail).map_err(io)?;
        }
    }
    if writable_schema {
        out.write_all(b"PRAGMA writable_schema=OFF;\n").map_err(io)?;
    }
    out.write_all(b"COMMIT;\n").map_err(io)?;
    Ok(())
}

/// A table's `CREATE` statement as the shell prints it: a quoted name gets
/// `IF NOT EXISTS`; a statement ending inside a comment gets the comment closed.
fn schema_line(out: &mut dyn Write, sql: &str) -> std::io::Result<()> {
    let mut sql = sql.to_string();
    if sql.contains("/*") || sql.contains("--") {
        for term in ["", "*/", "\n"] {
            let candidate = format!("{sql}{term};");
            if is_complete(&candidate) {
                sql = format!("{sql}{term}");
                break;
            }
        }
    }
    let quoted_name =
        sql.strip_prefix("CREATE TABLE ").is_some_and(|rest| rest.starts_with('"') || rest.starts_with('\''));
    if quoted_name {
        writeln!(out, "CREATE TABLE IF NOT EXISTS {};", &sql["CREATE TABLE ".len()..])
    } else {
        writeln!(out, "{sql};")
    }
}

fn table_rows(conn: &Connection, db_path: &Path, name: &str, out: &mut dyn Write, out_path: &Path) -> Result<()> {
    let sq = |e| Error::sqlite(db_path, e);
    let io = |e| Error::io(out_path, e);
    let quoted = quote_identifier(name);
    let without_rowid: bool = conn
        .query_row("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?1", [name], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(sq)?
        != 0;
    let order = if without_rowid { "" } else { " ORDER BY rowid" };
    let mut stmt = conn.prepare(&format!("SELECT * FROM \"{}\"{order}", name.replace('"', "\"\""))).map_err(sq)?;
    let columns = stmt.column_count();
    let mut real = conn.prepare("SELECT printf('%!.20g', ?1)").map_err(sq)?;
    let mut rows = stmt.query([]).map_err(sq)?;
    let mut line = Vec::with_capacity(256);
    while let Some(row) = rows.next().map_err(sq)? {
        line.clear();
        line.extend_from_slice(b"INSERT INTO ");
        line.extend_from_slice(quoted.as_bytes());
        line.extend_from_slice(b" VALUES(");
        for i in 0..columns {
            if i > 0 {
                line.push(b',');
            }
            match row.get_ref(i).map_err(sq)? {
                ValueRef::Null => line.extend_from_slice(b"NULL"),
                ValueRef::Integer(n) => line.extend_from_slice(n.to_string().as_bytes()),
                ValueRef::Real(r) => {
                    let text = format_real(r, &mut real).map_err(sq)?;
                    line.extend_from_slice(text.as_bytes());
                }
                ValueRef::Text(t) => escaped_text(&mut line, t),
                ValueRef::Blob(b) => {
                    line.extend_from_slice(b"X'");
                    for byte in b {
                        line.extend_from_slice(format!("{byte:02x}").as_bytes());
                    }
                    line.push(b'\'');
                }
            }
        }
        line.extend_from_slice(b");\n");
        out.write_all(&line).map_err(io)?;
    }
    Ok(())
}

/// A real as the shell writes it: `N.0` when whole (and within i64), else
/// SQLite's `%!.20g`; infinities as `9.0e+999` / `-9.0e+999`.
fn format_real(r: f64, printf: &mut rusqlite::Statement<'_>) -> rusqlite::Result<String> {
    if r == f64::INFINITY {
        return Ok("9.0e+999".into());
    }
    if r == f64::NEG_INFINITY {
        return Ok("-9.0e+999".into());
    }
    // i64's range is [-2^63, 2^63): 2^63 itself is not an i64.
    const TWO_63: f64 = 9_223_372_036_854_775_808.0;
    if (-TWO_63..TWO_63).contains(&r) && r == (r as i64) as f64 {
        return Ok(format!("{}.0", r as i64));
    }
    printf.query_row([r], |row| row.get(0))
}

/// Text in single quotes with `''`; newlines and carriage returns are
/// written through `replace()` with a marker not found in the text, as the
/// shell's `output_quoted_escaped_string` does.
fn escaped_text(out: &mut Vec<u8>, t: &[u8]) {
    let has_nl = t.contains(&b'\n');
    let has_cr = t.contains(&b'\r');
    let nl = if has_nl { unused_marker(t, "\\n", "\\012") } else { String::new() };
    let cr = if has_cr { unused_marker(t, "\\r", "\\015") } else { String::new() };
    if has_nl {
        out.extend_from_slice(b"replace(");
    }
    if has_cr {
        out.extend_from_slice(b"replace(");
    }
    out.push(b'\'');
    for &c in t {
        match c {
            b'\'' => out.extend_from_slice(b"''"),
            b'\n' => out.extend_from_slice(nl.as_bytes()),
            b'\r' => out.extend_from_slice(cr.as_bytes()),
            c => out.push(c),
        }
    }
    out.push(b'\'');
    if has_cr {
        out.extend_from_slice(format!(",'{cr}',char(13))").as_bytes());
    }
    if has_nl {
        out.extend_from_slice(format!(",'{nl}',char(10))").as_bytes());
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn unused_marker(t: &[u8], a: &str, b: &str) -> String {
    if !contains(t, a) {
        return a.to_string();
    }
    if !contains(t, b) {
        return b.to_string();
    }
    (0u32..).map(|i| format!("({a}{i})")).find(|m| !contains(t, m)).unwrap_or_default()
}

fn quote_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A table name as the shell writes it after `INSERT INTO`: bare when it is
/// a plain identifier that is not a keyword, else in double quotes.
fn quote_identifier(name: &str) -> String {
    let plain = name.bytes().next().is_some_and(|c| c.is_ascii_alphabetic() || c == b'_')
        && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_');
    if plain && !is_keyword(name) {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

#[allow(unsafe_code)]
fn is_keyword(name: &str) -> bool {
    let Ok(len) = std::os::raw::c_int::try_from(name.len()) else {
        return false;
    };
    // SAFETY: sqlite3_keyword_check reads exactly `len` bytes from the pointer,
    // which points at `name`'s bytes; it keeps no reference.
    unsafe { rusqlite::ffi::sqlite3_keyword_check(name.as_ptr().cast(), len) != 0 }
}

#[allow(unsafe_code)]
fn is_complete(sql: &str) -> bool {
    let Ok(c) = std::ffi::CString::new(sql) else {
        return false;
    };
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    unsafe { rusqlite::ffi::sqlite3_complete(c.as_ptr()) != 0 }
}
