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

use crate::error::{Error, Result};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::fmt;
use std::path::{Path, PathBuf};

/// The first difference between two databases.
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
/// missing `b` is an error naming it.
pub fn compare_databases(a: &Path, b: &Path, labels: Labels) -> Result<Option<Difference>> {
    if !b.is_file() {
        return Err(Error::io(b, std::io::Error::new(std::io::ErrorKind::NotFound, "no such database file")));
    }
    let b_conn = Connection::open_with_flags(b, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
        .map_err(|e| Error::sqlite(b, e))?;
    let a_conn = Connection::open_with_flags(a, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|e| Error::sqlite(a, e))?;
    b_conn.execute_batch("BEGIN").map_err(|e| Error::sqlite(b, e))?;
    let sides = Sides { a, b, labels };
    let what = compare(&a_conn, &b_conn, &sides)?;
    Ok(what.map(|what| Difference { a: a.to_path_buf(), b: b.to_path_buf(), what }))
}

/// How a difference names the two databases compared: a short word before a
/// value (`backup 7, live 8`) and a phrase after "only in the".
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
    pub const BACKUP_AND_LIVE: Labels = Labels { a: "backup", a_only: "backup", b: "live", b_only: "live database" };

    /// A database restored by a test against the one it should equal.
    pub const RESTORED_AND_EXPECTED: Labels =
        Labels { a: "restored", a_only: "restored database", b: "expected", b_only: "expected database" };
}

/// The two files, for errors, and their labels, for differences.
struct Sides<'p> {
    a: &'p Path,
    b: &'p Path,
    labels: Labels,
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

/// Compare one table's rows, in rowid order (or by all columns when the
/// table has no usable rowid).
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
    Error::Sqlite { path: path.to_path_buf(), context: Some(sql.to_string()), source }
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
        let names = Sides { a: Path::new("backup"), b: Path::new("live"), labels: Labels::BACKUP_AND_LIVE };
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
