//! Comparing two SQLite databases: schema first, then every table row by
//! row, and the first difference described in one line.
//!
//! Owns what "the same database" means for every check that asks it:
//! `verify --against`, the hand-over between plugins, and the tests. Both
//! files are opened read-only, `sqlite_stat*` tables (statistics from
//! ANALYZE, not data) are left out, and `data_version` is compared before
//! anything else, since two versions apart every table may differ. It must
//! not write either file, and it must not decide what a difference means for
//! the caller (a failed check, a test failure): it reports it.
//!
//! Rows are matched one of two ways ([`Rows`]), and which one is the
//! caller's decision, made by where its databases come from. A restore must
//! reproduce every rowid exactly, since lightningd's tables refer to each
//! other's rows by rowid: restores, live databases and hand-overs are
//! compared [`Rows::ByRowid`], which streams both tables in rowid order. A
//! database reloaded from a `.dump` (the fixture's SQL, an exported dump)
//! cannot: `.dump` writes no rowid for a table without an INTEGER PRIMARY
//! KEY, so the reload numbers its rows afresh. Such a database is compared
//! [`Rows::AsMultiset`]: each table's rows as a sorted multiset of values,
//! rowids ignored, duplicates counted. That mode holds one table of each side
//! in memory at a time and sorts it in Rust (not with SQL's ORDER BY, whose
//! order depends on column collations and the database's text encoding),
//! which suits test-sized databases, not a node's; `verify` never uses it.
//!
//! ```
//! use cln_backup::compare::{compare_databases, Labels};
//! use cln_backup::{restore, rusqlite::Connection, version::bump_statement, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("node.redb"))?;
//! let live_db = dir.path().join("live.sqlite3");
//! let live = Connection::open(&live_db)?;
//! // The node runs each transaction and reports it to the store.
//! let bump = bump_statement(1);
//! let first = [
//!     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
//!     "INSERT INTO vars VALUES ('data_version', 0)",
//!     "CREATE TABLE peers (id INTEGER PRIMARY KEY, address TEXT)",
//!     bump.as_str(),
//! ];
//! store.add_change(1, &first)?;
//! live.execute_batch(&first.join(";"))?;
//! let backup = dir.path().join("backup.sqlite3");
//! restore::restore_store(&store, &backup, &Default::default())?;
//! assert_eq!(compare_databases(&backup, &live_db, Labels::BACKUP_AND_LIVE)?, None);
//!
//! // A change the backup does not have: the versions differ, and that comes first.
//! live.execute_batch(&format!("INSERT INTO peers VALUES (1, 'a:1'); {}", bump_statement(2)))?;
//! let d = compare_databases(&backup, &live_db, Labels::BACKUP_AND_LIVE)?.unwrap();
//! assert!(d.what.starts_with("table vars, row data_version, column intval: backup 1, live 2"), "{d}");
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::cmp::Ordering;
use std::fmt;
use std::path::{Path, PathBuf};

/// The first difference between two databases.
///
/// ```
/// use cln_backup::compare::{compare_databases, Labels};
/// use cln_backup::rusqlite::Connection;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("a.sqlite3"), dir.path().join("b.sqlite3"));
/// Connection::open(&a)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")?;
/// Connection::open(&b)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (2)")?;
/// let d = compare_databases(&a, &b, Labels::RESTORED_AND_EXPECTED)?.expect("they differ");
/// assert_eq!((d.a.as_path(), d.b.as_path()), (a.as_path(), b.as_path()));
/// assert_eq!(d.what, "table t, rowid 1, column x: restored 1, expected 2");
/// assert_eq!(d.to_string(), format!("{}: differs from {}: {}", a.display(), b.display(), d.what));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Difference {
    /// The first database compared.
    pub a: PathBuf,
    /// The second database compared.
    pub b: PathBuf,
    /// Where they differ, and how, in the words of the [`Labels`] given:
    /// `table peers, rowid 2, column address: backup 'a', live 'b'`.
    pub what: String,
}

/// One line naming both files: `A: differs from B: WHAT`.
impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: differs from {}: {}", self.a.display(), self.b.display(), self.what)
    }
}

/// Compare the databases at `a` and `b`, both opened read-only, the second
/// inside one read transaction (a consistent view even if something writes
/// it meanwhile). Returns the first difference, described with `labels`
/// naming the two sides, or `None` when schema and rows are equal. A
/// missing `b` is an error naming it. Rows are matched by rowid: the
/// comparison a restore must pass.
///
/// ```
/// use cln_backup::compare::{compare_databases, Labels};
/// use cln_backup::rusqlite::Connection;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("a.sqlite3"), dir.path().join("b.sqlite3"));
/// for path in [&a, &b] {
///     Connection::open(path)?.execute_batch("CREATE TABLE t (x REAL); INSERT INTO t VALUES (0.1 + 0.2)")?;
/// }
/// assert_eq!(compare_databases(&a, &b, Labels::BACKUP_AND_LIVE)?, None);
/// // A REAL is compared bit for bit: 0.3 is another number.
/// Connection::open(&b)?.execute_batch("UPDATE t SET x = 0.3")?;
/// let d = compare_databases(&a, &b, Labels::BACKUP_AND_LIVE)?.expect("a rounded value is a difference");
/// assert_eq!(d.what, "table t, rowid 1, column x: backup 0.30000000000000004, live 0.3");
/// // A missing second database is an error naming it.
/// let err = compare_databases(&a, &dir.path().join("gone.sqlite3"), Labels::BACKUP_AND_LIVE).unwrap_err();
/// assert!(err.to_string().contains("gone.sqlite3"), "{err}");
/// # Ok(()) }
/// ```
pub fn compare_databases(a: &Path, b: &Path, labels: Labels) -> Result<Option<Difference>> {
    compare_databases_with(a, b, labels, Rows::ByRowid)
}

/// [`compare_databases`], with the rows of each table matched as `rows`
/// says: [`Rows::AsMultiset`] when one side was reloaded from a `.dump`.
///
/// ```
/// use cln_backup::compare::{compare_databases_with, Labels, Rows};
/// use cln_backup::rusqlite::Connection;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("a.sqlite3"), dir.path().join("b.sqlite3"));
/// // The same rows under other rowids, as a reload of a `.dump` may number them.
/// Connection::open(&a)?.execute_batch("CREATE TABLE notes (body); INSERT INTO notes VALUES ('x'), ('y')")?;
/// Connection::open(&b)?.execute_batch(
///     "CREATE TABLE notes (body); INSERT INTO notes (rowid, body) VALUES (7, 'y'), (9, 'x')",
/// )?;
/// let labels = Labels::RESTORED_AND_EXPECTED;
/// assert!(compare_databases_with(&a, &b, labels, Rows::ByRowid)?.is_some());
/// assert_eq!(compare_databases_with(&a, &b, labels, Rows::AsMultiset)?, None);
/// # Ok(()) }
/// ```
pub fn compare_databases_with(a: &Path, b: &Path, labels: Labels, rows: Rows) -> Result<Option<Difference>> {
    if !b.is_file() {
        return Err(Error::io(b, std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file")));
    }
    let b_conn = Connection::open_with_flags(b, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite(b, e))?;
    let a_conn = Connection::open_with_flags(a, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| Error::sqlite(a, e))?;
    b_conn.execute_batch("BEGIN").map_err(|e| Error::sqlite(b, e))?;
    let sides = Sides { a, b, labels, rows };
    let what = compare(&a_conn, &b_conn, &sides)?;
    Ok(what.map(|what| Difference { a: a.to_path_buf(), b: b.to_path_buf(), what }))
}

/// How the rows of a table are matched between the two databases (the
/// schema and `data_version` are compared the same way in both).
///
/// ```
/// use cln_backup::compare::{compare_databases_with, Labels, Rows};
/// use cln_backup::rusqlite::Connection;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("a.sqlite3"), dir.path().join("b.sqlite3"));
/// Connection::open(&a)?.execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES ('x'), ('x')")?;
/// Connection::open(&b)?.execute_batch("CREATE TABLE t (v); INSERT INTO t VALUES ('x')")?;
/// assert_eq!(Rows::default(), Rows::ByRowid);
/// // As a multiset, duplicates are counted.
/// let d = compare_databases_with(&a, &b, Labels::RESTORED_AND_EXPECTED, Rows::AsMultiset)?.unwrap();
/// assert_eq!(d.what, "table t, values ('x'): row twice in the restored database, once in the expected database");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Rows {
    /// Row by row in rowid order (by all columns for a table without
    /// rowid): equal tables hold the same values under the same rowids.
    /// Differences read `table peers, rowid 2, column address: ...`.
    #[default]
    ByRowid,
    /// Each table's rows as a sorted multiset of their values, rowids
    /// ignored: equal tables hold the same rows, each as many times.
    /// Differences read `table notes, values ('x', 1): row only in the ...`
    /// or `...: row twice in the ..., once in the ...`.
    AsMultiset,
}

/// How a difference names the two databases compared: a short word before a
/// value (`backup 7, live 8`) and a phrase after "only in the".
///
/// ```
/// use cln_backup::compare::{compare_databases, Labels};
/// use cln_backup::rusqlite::Connection;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (a, b) = (dir.path().join("old.sqlite3"), dir.path().join("new.sqlite3"));
/// Connection::open(&a)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")?;
/// Connection::open(&b)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1), (2)")?;
/// let labels = Labels { a: "old", a_only: "old copy", b: "new", b_only: "new copy" };
/// let d = compare_databases(&a, &b, labels)?.unwrap();
/// assert_eq!(d.what, "table t, rowid 2: row only in the new copy");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Labels {
    /// The first database, before its value: `backup` in `backup 7, live 8`.
    pub a: &'static str,
    /// The first database after "only in the": `backup`.
    pub a_only: &'static str,
    /// The second database, before its value: `live`.
    pub b: &'static str,
    /// The second database after "only in the": `live database`.
    pub b_only: &'static str,
}

impl Labels {
    /// A restored backup against a node's database.
    ///
    /// ```
    /// use cln_backup::compare::{compare_databases, Labels};
    /// use cln_backup::rusqlite::Connection;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let (backup, live) = (dir.path().join("backup.sqlite3"), dir.path().join("lightningd.sqlite3"));
    /// let sql = "CREATE TABLE peers (id INTEGER PRIMARY KEY)";
    /// Connection::open(&backup)?.execute_batch(sql)?;
    /// Connection::open(&live)?.execute_batch(&format!("{sql}; INSERT INTO peers VALUES (3)"))?;
    /// let d = compare_databases(&backup, &live, Labels::BACKUP_AND_LIVE)?.unwrap();
    /// assert_eq!(d.what, "table peers, rowid 3: row only in the live database");
    /// # Ok(()) }
    /// ```
    pub const BACKUP_AND_LIVE: Labels = Labels { a: "backup", a_only: "backup", b: "live", b_only: "live database" };

    /// A database restored by a test against the one it should equal.
    ///
    /// ```
    /// use cln_backup::compare::{compare_databases, Labels};
    /// use cln_backup::rusqlite::Connection;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let (restored, expected) = (dir.path().join("restored.sqlite3"), dir.path().join("expected.sqlite3"));
    /// Connection::open(&restored)?.execute_batch("CREATE TABLE t (x)")?;
    /// Connection::open(&expected)?.execute_batch("CREATE TABLE t (x); CREATE INDEX t_x ON t (x)")?;
    /// let d = compare_databases(&restored, &expected, Labels::RESTORED_AND_EXPECTED)?.unwrap();
    /// assert_eq!(d.what, "schema: index t_x exists only in the expected database");
    /// # Ok(()) }
    /// ```
    pub const RESTORED_AND_EXPECTED: Labels =
        Labels { a: "restored", a_only: "restored database", b: "expected", b_only: "expected database" };
}

/// The two files, for errors, their labels, for differences, and how rows
/// are matched.
struct Sides<'p> {
    a: &'p Path,
    b: &'p Path,
    labels: Labels,
    rows: Rows,
}

/// The first difference between two databases, described in one line, or
/// `None` when schema and rows are equal. Tables named `sqlite_stat*`
/// (statistics from ANALYZE, not data) are left out.
fn compare(backup: &Connection, live: &Connection, names: &Sides<'_>) -> Result<Option<String>> {
    let b_version = data_version_of(backup).map_err(|e| Error::sqlite(names.a, e))?;
    let l_version = data_version_of(live).map_err(|e| Error::sqlite(names.b, e))?;
    let l = &names.labels;
    if b_version != l_version {
        return Ok(Some(format!(
            "table vars, row data_version, column intval: {} {}, {} {} (the databases are at different versions)",
            l.a,
            show_opt(b_version),
            l.b,
            show_opt(l_version)
        )));
    }
    let b_schema = schema(backup).map_err(|e| Error::sqlite(names.a, e))?;
    let l_schema = schema(live).map_err(|e| Error::sqlite(names.b, e))?;
    if let Some(diff) = compare_schema(&b_schema, &l_schema, l) {
        return Ok(Some(diff));
    }
    for entry in b_schema.iter().filter(|e| e.kind == "table") {
        if let Some(diff) = compare_table(backup, live, entry, names)? {
            return Ok(Some(diff));
        }
    }
    Ok(None)
}

fn data_version_of(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    let has_vars: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='vars'", [], |r| r.get(0))?;
    if has_vars == 0 {
        return Ok(None);
    }
    match conn.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get(0)) {
        Ok(v) => Ok(v),
        Err(rusqlite::Error::QueryReturnedNoRows) => Ok(None),
        Err(e) => Err(e),
    }
}

fn show_opt(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "missing".into())
}

/// One entry of `sqlite_master`.
#[derive(Debug, PartialEq, Eq)]
struct SchemaEntry {
    kind: String,
    name: String,
    sql: Option<String>,
}

fn schema(conn: &Connection) -> rusqlite::Result<Vec<SchemaEntry>> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%' ORDER BY name, type")?;
    let rows = stmt.query_map([], |r| Ok(SchemaEntry { kind: r.get(0)?, name: r.get(1)?, sql: r.get(2)? }))?;
    rows.collect()
}

fn compare_schema(backup: &[SchemaEntry], live: &[SchemaEntry], labels: &Labels) -> Option<String> {
    let (a_only, b_only) = (labels.a_only, labels.b_only);
    let (mut b, mut l) = (backup.iter().peekable(), live.iter().peekable());
    loop {
        match (b.peek(), l.peek()) {
            (None, None) => return None,
            (Some(e), None) => return Some(format!("schema: {} {} exists only in the {a_only}", e.kind, e.name)),
            (None, Some(e)) => return Some(format!("schema: {} {} exists only in the {b_only}", e.kind, e.name)),
            (Some(be), Some(le)) => {
                let (bk, lk) = ((&be.name, &be.kind), (&le.name, &le.kind));
                if bk < lk {
                    return Some(format!("schema: {} {} exists only in the {a_only}", be.kind, be.name));
                }
                if lk < bk {
                    return Some(format!("schema: {} {} exists only in the {b_only}", le.kind, le.name));
                }
                if be.sql != le.sql {
                    return Some(format!(
                        "schema: {} {} differs: {} {}, {} {}",
                        be.kind,
                        be.name,
                        labels.a,
                        show_sql(&be.sql),
                        labels.b,
                        show_sql(&le.sql)
                    ));
                }
                b.next();
                l.next();
            }
        }
    }
}

fn show_sql(sql: &Option<String>) -> String {
    match sql {
        Some(s) => show(&Value::Text(s.clone())),
        None => "NULL".into(),
    }
}

/// Quote an identifier for SQL.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Compare one table's rows the way `names.rows` says.
fn compare_table(
    backup: &Connection,
    live: &Connection,
    table: &SchemaEntry,
    names: &Sides<'_>,
) -> Result<Option<String>> {
    let columns: Vec<String> = {
        let sql = format!("SELECT * FROM {} LIMIT 0", ident(&table.name));
        let stmt = backup.prepare(&sql).map_err(|e| reading(names.a, &sql, e))?;
        stmt.column_names().map(|c| c.to_string()).collect()
    };
    match names.rows {
        Rows::ByRowid => compare_by_rowid(backup, live, table, &columns, names),
        Rows::AsMultiset => compare_as_multiset(backup, live, table, columns.len(), names),
    }
}

/// Compare one table's rows, in rowid order (or by all columns when the
/// table has no usable rowid).
fn compare_by_rowid(
    backup: &Connection,
    live: &Connection,
    table: &SchemaEntry,
    columns: &[String],
    names: &Sides<'_>,
) -> Result<Option<String>> {
    let without_rowid = table
        .sql
        .as_deref()
        .is_some_and(|s| s.to_ascii_uppercase().replace(char::is_whitespace, "").contains("WITHOUTROWID"));
    let rowid = if without_rowid {
        None
    } else {
        ["rowid", "_rowid_", "oid"].into_iter().find(|alias| !columns.iter().any(|c| c.eq_ignore_ascii_case(alias)))
    };
    let sql = match rowid {
        Some(alias) => format!("SELECT {alias}, * FROM {} ORDER BY {alias}", ident(&table.name)),
        None => {
            let order: Vec<String> = (1..=columns.len()).map(|i| i.to_string()).collect();
            format!("SELECT * FROM {} ORDER BY {}", ident(&table.name), order.join(", "))
        }
    };
    let (read_a, read_b) = (|e| reading(names.a, &sql, e), |e| reading(names.b, &sql, e));
    let mut b_stmt = backup.prepare(&sql).map_err(read_a)?;
    let mut l_stmt = live.prepare(&sql).map_err(read_b)?;
    let mut b_rows = b_stmt.query([]).map_err(read_a)?;
    let mut l_rows = l_stmt.query([]).map_err(read_b)?;
    let width = columns.len() + usize::from(rowid.is_some());
    let values = |row: &rusqlite::Row<'_>| -> rusqlite::Result<Vec<Value>> { (0..width).map(|i| row.get(i)).collect() };
    let key = |vals: &[Value], index: u64| match rowid {
        Some(_) => format!("rowid {}", show(&vals[0])),
        None => format!("row {} (ordered by all columns)", index + 1),
    };
    let lab = &names.labels;
    let (a_only, b_only) = (format!("row only in the {}", lab.a_only), format!("row only in the {}", lab.b_only));
    let mut index = 0u64;
    loop {
        let b = b_rows.next().and_then(|r| r.map(values).transpose()).map_err(read_a)?;
        let l = l_rows.next().and_then(|r| r.map(values).transpose()).map_err(read_b)?;
        let here = |vals: &[Value]| format!("table {}, {}", table.name, key(vals, index));
        match (b, l) {
            (None, None) => return Ok(None),
            (Some(b), None) => return Ok(Some(format!("{}: {a_only}", here(&b)))),
            (None, Some(l)) => return Ok(Some(format!("{}: {b_only}", here(&l)))),
            (Some(b), Some(l)) => {
                if rowid.is_some() && b[0] != l[0] {
                    let b_first = matches!((&b[0], &l[0]), (Value::Integer(x), Value::Integer(y)) if x < y);
                    return Ok(Some(if b_first {
                        format!("{}: {a_only}", here(&b))
                    } else {
                        format!("{}: {b_only}", here(&l))
                    }));
                }
                let skip = usize::from(rowid.is_some());
                for (i, column) in columns.iter().enumerate() {
                    let (bv, lv) = (&b[i + skip], &l[i + skip]);
                    if bv != lv {
                        return Ok(Some(format!(
                            "{}, column {column}: {} {}, {} {}",
                            here(&b),
                            lab.a,
                            show(bv),
                            lab.b,
                            show(lv)
                        )));
                    }
                }
            }
        }
        index += 1;
    }
}

/// Compare one table's rows as sorted multisets of values: walk both sorted
/// lists a run of equal rows at a time, and report the first row whose
/// count differs, as "only in" one side or with both counts.
fn compare_as_multiset(
    backup: &Connection,
    live: &Connection,
    table: &SchemaEntry,
    width: usize,
    names: &Sides<'_>,
) -> Result<Option<String>> {
    let sql = format!("SELECT * FROM {}", ident(&table.name));
    let b_rows = sorted_rows(backup, &sql, width).map_err(|e| reading(names.a, &sql, e))?;
    let l_rows = sorted_rows(live, &sql, width).map_err(|e| reading(names.b, &sql, e))?;
    let (mut i, mut j) = (0, 0);
    loop {
        let row = match (b_rows.get(i), l_rows.get(j)) {
            (None, None) => return Ok(None),
            (Some(b), None) => b,
            (None, Some(l)) => l,
            (Some(b), Some(l)) => match row_order(b, l) {
                Ordering::Greater => l,
                Ordering::Less | Ordering::Equal => b,
            },
        };
        let run = |rows: &[Vec<Value>], from: usize| {
            rows.get(from..).map_or(0, |rest| rest.iter().take_while(|r| row_order(r, row).is_eq()).count())
        };
        let (in_b, in_l) = (run(&b_rows, i), run(&l_rows, j));
        if in_b != in_l {
            let lab = &names.labels;
            let how = match (in_b, in_l) {
                (_, 0) => format!("row only in the {}", lab.a_only),
                (0, _) => format!("row only in the {}", lab.b_only),
                _ => format!("row {} in the {}, {} in the {}", times(in_b), lab.a_only, times(in_l), lab.b_only),
            };
            return Ok(Some(format!("table {}, values {}: {how}", table.name, show_row(row))));
        }
        i += in_b;
        j += in_l;
    }
}

/// Every row `sql` returns, `width` values each, sorted by [`row_order`].
fn sorted_rows(conn: &Connection, sql: &str, width: usize) -> rusqlite::Result<Vec<Vec<Value>>> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |row| (0..width).map(|i| row.get(i)).collect::<rusqlite::Result<Vec<Value>>>())?;
    let mut rows = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    rows.sort_by(|x, y| row_order(x, y));
    Ok(rows)
}

/// Rows ordered column by column with [`value_order`].
fn row_order(x: &[Value], y: &[Value]) -> Ordering {
    x.iter().zip(y).map(|(a, b)| value_order(a, b)).find(|o| o.is_ne()).unwrap_or_else(|| x.len().cmp(&y.len()))
}

/// A total order on values, whose ties are exactly the values `==` calls
/// equal (as [`Rows::ByRowid`] compares them): by storage class first
/// (NULL, integer, real, text, blob), so an integer and the real of the same
/// number stay apart, then by value, text and blobs byte by byte. Reals
/// compare numerically (0.0 ties with -0.0, as `==` has it); a NaN, which
/// SQLite never stores, falls back to IEEE total order so sorting stays
/// well defined.
fn value_order(a: &Value, b: &Value) -> Ordering {
    fn class(v: &Value) -> u8 {
        match v {
            Value::Null => 0,
            Value::Integer(_) => 1,
            Value::Real(_) => 2,
            Value::Text(_) => 3,
            Value::Blob(_) => 4,
        }
    }
    match (a, b) {
        (Value::Integer(x), Value::Integer(y)) => x.cmp(y),
        (Value::Real(x), Value::Real(y)) => x.partial_cmp(y).unwrap_or_else(|| x.total_cmp(y)),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        (Value::Blob(x), Value::Blob(y)) => x.cmp(y),
        _ => class(a).cmp(&class(b)),
    }
}

/// How many times a row occurs, in words.
fn times(n: usize) -> String {
    match n {
        1 => "once".into(),
        2 => "twice".into(),
        n => format!("{n} times"),
    }
}

/// A row's values as SQL would write them: `('x', 1, NULL)`.
fn show_row(row: &[Value]) -> String {
    let values: Vec<String> = row.iter().map(show).collect();
    format!("({})", values.join(", "))
}

/// A value as SQL would write it, shortened when long, on one line.
fn show(v: &Value) -> String {
    const TEXT_MAX: usize = 120;
    const BLOB_MAX: usize = 48;
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(f) => format!("{f:?}"),
        Value::Text(s) => {
            let mut out: String = s
                .chars()
                .take(TEXT_MAX)
                .flat_map(|c| match c {
                    '\'' => vec!['\'', '\''],
                    '\n' => vec!['\\', 'n'],
                    '\r' => vec!['\\', 'r'],
                    c => vec![c],
                })
                .collect();
            let n = s.chars().count();
            if n > TEXT_MAX {
                out.push_str(&format!("... ({n} characters)"));
            }
            format!("'{out}'")
        }
        Value::Blob(b) => {
            let hex: String = b.iter().take(BLOB_MAX).map(|x| format!("{x:02x}")).collect();
            if b.len() > BLOB_MAX {
                format!("x'{hex}...' ({} bytes)", b.len())
            } else {
                format!("x'{hex}'")
            }
        }
    }
}

/// A failure reading `path` while running `sql`.
fn reading(path: &Path, sql: &str, source: rusqlite::Error) -> Error {
    Error::Sqlite { path: path.to_path_buf(), context: Some(sql.to_string()), source: source.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    const SCHEMA: &str = "
        CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
        INSERT INTO vars VALUES ('data_version', 7);
        CREATE TABLE peers (id INTEGER PRIMARY KEY, node_id BLOB, address TEXT);
        CREATE TABLE kv (k TEXT PRIMARY KEY, v) WITHOUT ROWID;
        INSERT INTO peers VALUES (1, x'02aa', 'a:1'), (2, x'02bb', 'b:2'), (5, x'02cc', NULL);
        INSERT INTO kv VALUES ('x', 1), ('y', 2);
    ";

    fn pair() -> (Connection, Connection) {
        let a = Connection::open_in_memory().unwrap();
        let b = Connection::open_in_memory().unwrap();
        a.execute_batch(SCHEMA).unwrap();
        b.execute_batch(SCHEMA).unwrap();
        (a, b)
    }

    fn diff(a: &Connection, b: &Connection) -> Option<String> {
        diff_with(a, b, Rows::ByRowid)
    }

    fn diff_with(a: &Connection, b: &Connection, rows: Rows) -> Option<String> {
        let names = Sides { a: Path::new("backup"), b: Path::new("live"), labels: Labels::BACKUP_AND_LIVE, rows };
        compare(a, b, &names).unwrap()
    }

    #[test]
    fn equal_databases_have_no_difference() {
        let (a, b) = pair();
        assert_eq!(diff(&a, &b), None);
    }

    #[test]
    fn a_changed_value_is_reported_with_table_row_and_column() {
        let (a, b) = pair();
        b.execute_batch("UPDATE peers SET address = 'it''s\nnew' WHERE id = 2").unwrap();
        assert_eq!(diff(&a, &b).unwrap(), "table peers, rowid 2, column address: backup 'b:2', live 'it''s\\nnew'");
    }

    #[test]
    fn missing_and_extra_rows_are_reported() {
        let (a, b) = pair();
        b.execute_batch("DELETE FROM peers WHERE id = 2").unwrap();
        assert_eq!(diff(&a, &b).unwrap(), "table peers, rowid 2: row only in the backup");
        let (a, b) = pair();
        b.execute_batch("INSERT INTO peers VALUES (3, x'02dd', NULL)").unwrap();
        assert_eq!(diff(&a, &b).unwrap(), "table peers, rowid 3: row only in the live database");
        let (a, b) = pair();
        a.execute_batch("INSERT INTO peers VALUES (9, x'02dd', NULL)").unwrap();
        assert_eq!(diff(&a, &b).unwrap(), "table peers, rowid 9: row only in the backup");
    }

    #[test]
    fn tables_without_rowid_are_compared_by_all_columns() {
        let (a, b) = pair();
        b.execute_batch("UPDATE kv SET v = x'00ff' WHERE k = 'y'").unwrap();
        assert_eq!(diff(&a, &b).unwrap(), "table kv, row 2 (ordered by all columns), column v: backup 2, live x'00ff'");
    }

    #[test]
    fn schema_and_version_differences_come_first() {
        let (a, b) = pair();
        b.execute_batch("CREATE INDEX peers_node ON peers (node_id); UPDATE peers SET address = 'z'").unwrap();
        assert_eq!(diff(&a, &b).unwrap(), "schema: index peers_node exists only in the live database");
        let (a, b) = pair();
        b.execute_batch("UPDATE vars SET intval = 8; UPDATE peers SET address = 'z'").unwrap();
        assert!(diff(&a, &b).unwrap().starts_with("table vars, row data_version, column intval: backup 7, live 8"));
    }

    /// A table without an INTEGER PRIMARY KEY, whose rowids a `.dump`
    /// reload renumbers: `a` holds rows 1 and 2, `b` the same values under
    /// rowids 7 and 9, inserted in the other order.
    fn renumbered() -> (Connection, Connection) {
        let (a, b) = pair();
        a.execute_batch("CREATE TABLE notes (body, n); INSERT INTO notes VALUES ('x', 1), (x'00', 1.5), (NULL, 2);")
            .unwrap();
        b.execute_batch(
            "CREATE TABLE notes (body, n);
             INSERT INTO notes (rowid, body, n) VALUES (7, NULL, 2), (8, x'00', 1.5), (9, 'x', 1);",
        )
        .unwrap();
        (a, b)
    }

    #[test]
    fn a_rowid_only_difference_counts_by_rowid_and_not_as_multiset() {
        let (a, b) = renumbered();
        assert_eq!(diff_with(&a, &b, Rows::ByRowid).unwrap(), "table notes, rowid 1: row only in the backup");
        assert_eq!(diff_with(&a, &b, Rows::AsMultiset), None);
        // Rows of every storage class sort the same whichever order they came in.
        a.execute_batch("INSERT INTO notes VALUES (3, 'y'), (2.5, x'01')").unwrap();
        b.execute_batch("INSERT INTO notes VALUES (2.5, x'01'), (3, 'y')").unwrap();
        assert_eq!(diff_with(&a, &b, Rows::AsMultiset), None);
    }

    #[test]
    fn a_value_difference_counts_both_ways() {
        let (a, b) = pair();
        b.execute_batch("UPDATE peers SET address = 'z:9' WHERE id = 2").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::ByRowid).unwrap(),
            "table peers, rowid 2, column address: backup 'b:2', live 'z:9'"
        );
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "table peers, values (2, x'02bb', 'b:2'): row only in the backup"
        );
        let (a, b) = renumbered();
        b.execute_batch("UPDATE notes SET n = 3 WHERE n = 2").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "table notes, values (NULL, 2): row only in the backup"
        );
        // An integer and the real of the same number are different values.
        let (a, b) = renumbered();
        b.execute_batch("UPDATE notes SET n = 1.0 WHERE n = 1").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "table notes, values ('x', 1): row only in the backup"
        );
        // Schema and version still come first.
        let (a, b) = renumbered();
        b.execute_batch("CREATE INDEX notes_n ON notes (n)").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "schema: index notes_n exists only in the live database"
        );
    }

    #[test]
    fn duplicate_rows_count_as_a_multiset() {
        // The same set of rows, but not the same number of each.
        let (a, b) = renumbered();
        a.execute_batch("INSERT INTO notes VALUES ('x', 1)").unwrap();
        b.execute_batch("INSERT INTO notes VALUES (NULL, 2)").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "table notes, values (NULL, 2): row once in the backup, twice in the live database"
        );
        let (a, b) = renumbered();
        b.execute_batch("INSERT INTO notes VALUES ('x', 1), ('x', 1)").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "table notes, values ('x', 1): row once in the backup, 3 times in the live database"
        );
        a.execute_batch("INSERT INTO notes VALUES ('x', 1), ('x', 1)").unwrap();
        assert_eq!(diff_with(&a, &b, Rows::AsMultiset), None);
        // A row the live side lacks entirely, after the others.
        a.execute_batch("INSERT INTO notes VALUES (x'ff', x'ff')").unwrap();
        assert_eq!(
            diff_with(&a, &b, Rows::AsMultiset).unwrap(),
            "table notes, values (x'ff', x'ff'): row only in the backup"
        );
    }

    #[test]
    fn values_sort_by_storage_class_then_value() {
        let sorted = [
            Value::Null,
            Value::Integer(-5),
            Value::Integer(2),
            Value::Real(-1.5),
            Value::Real(0.0),
            Value::Real(3.0),
            Value::Text("B".into()),
            Value::Text("a".into()),
            Value::Text("é".into()),
            Value::Blob(vec![]),
            Value::Blob(vec![0, 1]),
        ];
        for (i, x) in sorted.iter().enumerate() {
            for (j, y) in sorted.iter().enumerate() {
                assert_eq!(value_order(x, y), i.cmp(&j), "{x:?} against {y:?}");
            }
        }
        assert_eq!(value_order(&Value::Real(-0.0), &Value::Real(0.0)), Ordering::Equal);
        assert_eq!(Value::Real(-0.0), Value::Real(0.0), "ties are what == calls equal");
    }

    #[test]
    fn long_values_are_shortened() {
        let long = show(&Value::Blob(vec![0xab; 100]));
        assert!(long.starts_with("x'abab") && long.ends_with("...' (100 bytes)"), "{long}");
        let text = show(&Value::Text("é".repeat(200)));
        assert!(text.ends_with("... (200 characters)'"), "{text}");
        assert_eq!(show(&Value::Real(1.5)), "1.5");
        assert_eq!(show(&Value::Null), "NULL");
    }
}
