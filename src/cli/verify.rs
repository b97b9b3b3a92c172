//! `cln-backup verify`: check that a store restores, and optionally that it
//! restores to a given database.
//!
//! Owns the checks a user runs by hand: walking the whole hash chain,
//! replaying into a temporary database (the library's replay, with its
//! integrity check), and comparing two SQLite databases table by table and
//! row by row to report the first difference. It must not write to the store
//! or to the database it compares against (that one is opened read-only).

use super::{finish_bar, plural, progress_bar, progress_callback, store_path};
use anyhow::{bail, Context, Result};
use cln_backup::restore::{replay_into, DB_FILE_NAME};
use cln_backup::version::data_version;
use cln_backup::{Reader, Store};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
#[command(
    about = "Check a store's hash chain and that it restores",
    long_about = "Check a backup store.\n\n\
        Walks the hash chain over every change (a missing, reordered or altered record is \
        reported), replays the snapshot and changes into a temporary database in $TMPDIR \
        and runs SQLite's integrity check on it, and checks its data_version.\n\n\
        With --against FILE (a node's lightningd.sqlite3, opened read-only, or its directory, \
        meaning FILE/lightningd.sqlite3), the restored database is also compared with FILE: schema first, then every table row by row. \
        The first difference is reported (table, row, column and both values) and the exit \
        status is non-zero. Stop the node first, or FILE will be ahead of the backup.\n\n\
        The store is opened read-only and its file is never changed, so it may be on read-only \
        media. A store that a running plugin holds is refused: stop the node first, or ask the \
        plugin with lightning-cli backup-status."
)]
pub struct Args {
    /// The store: a path or a file:// URL.
    #[arg(value_name = "STORE")]
    pub store: PathBuf,
    /// A lightningd.sqlite3 to compare the restored database with, or its directory.
    #[arg(long, value_name = "FILE")]
    pub against: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    // A wrong --against is told before the replay, not after it.
    let against = args.against.as_deref().map(against_file).transpose()?;
    if let Some(against) = &against {
        if !against.is_file() {
            bail!("{}: no such database file", against.display());
        }
    }
    let store = Store::open_read_only(store_path(&args.store)?)?;
    let reader = store.reader()?;
    let head = reader.head();
    let chain = walk_chain(&reader)?;
    println!(
        "Hash chain intact: {} ({}, {}) {}",
        plural(chain.changes, "change record"),
        plural(chain.transactions, "transaction"),
        plural(chain.statements, "statement"),
        match reader.snapshot() {
            Some(s) => format!("after the snapshot at version {}", s.version),
            None => "from the start of the log (the store has no snapshot)".to_string(),
        }
    );

    let tmp = cln_backup::atomic_file::ScratchDir::new("verify")
        .context("cannot create a temporary directory for the replay")?;
    let db = tmp.path().join(DB_FILE_NAME);
    std::fs::File::create(&db).with_context(|| db.display().to_string())?;
    let bar = progress_bar(chain.changes, "verify");
    let replayed = replay_into(&reader, head, &db, progress_callback(&bar).as_ref());
    finish_bar(bar);
    let replayed = replayed?;
    println!(
        "Replayed into a temporary database: integrity check ok, data_version {} ({}, {})",
        data_version(head),
        plural(replayed.changes, "change"),
        plural(replayed.statements, "statement")
    );

    if let Some(against) = &against {
        match compare_files(&db, against)? {
            None => println!("{} matches the backup at version {}", against.display(), data_version(head)),
            Some(diff) => {
                bail!("{}: differs from the backup at version {}: {diff}", against.display(), data_version(head))
            }
        }
    }
    println!("{}: OK", store.path().display());
    Ok(())
}

/// What walking the chain counted.
#[derive(Debug, Default, PartialEq, Eq)]
struct Chain {
    changes: u64,
    transactions: u64,
    statements: u64,
}

/// Walk every change record after the snapshot, checking the hash chain.
fn walk_chain(reader: &Reader<'_>) -> Result<Chain> {
    let mut chain = Chain::default();
    let mut last = None;
    for change in reader.changes(reader.head())? {
        let change = change?;
        chain.changes += 1;
        chain.transactions += change.transactions.len() as u64;
        chain.statements += change.transactions.iter().map(|t| t.statements.len() as u64).sum::<u64>();
        last = Some(change.seq);
    }
    let path = reader.path().display();
    if chain.changes != reader.change_count() {
        bail!(
            "{path}: the store is damaged: it holds {} change records but {} follow the snapshot",
            reader.change_count(),
            chain.changes
        );
    }
    if let Some(last) = last {
        if last != reader.head() {
            bail!(
                "{path}: the store is damaged: the change log ends at version {} but the head is {}",
                data_version(last),
                data_version(reader.head())
            );
        }
    }
    Ok(chain)
}

/// The database `--against` names: a directory means `DIR/lightningd.sqlite3`,
/// as for `restore` (lightningd's base directory is refused the same way).
fn against_file(arg: &Path) -> Result<PathBuf> {
    Ok(cln_backup::restore::resolve_destination(arg)?)
}

/// Compare the database restored at `restored` with `live`, opened read-only.
fn compare_files(restored: &Path, live: &Path) -> Result<Option<String>> {
    compare_databases(restored, live, Labels::BACKUP_AND_LIVE)
}

/// Compare two databases, both opened read-only; the first difference is
/// described with `labels` naming the two sides.
pub(crate) fn compare_databases(a: &Path, b: &Path, labels: Labels) -> Result<Option<String>> {
    let (restored, live) = (a, b);
    if !live.is_file() {
        bail!("{}: no such database file", live.display());
    }
    let live_conn =
        Connection::open_with_flags(live, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
            .with_context(|| format!("{}: cannot open", live.display()))?;
    let restored_conn = Connection::open_with_flags(restored, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .with_context(|| format!("{}: cannot open", restored.display()))?;
    // One read transaction: a consistent view even if something writes meanwhile.
    live_conn.execute_batch("BEGIN").with_context(|| format!("{}: cannot read", live.display()))?;
    let names = Names { backup: restored.display().to_string(), live: live.display().to_string(), labels };
    compare(&restored_conn, &live_conn, &names)
}

/// How a difference names the two databases compared: a short word before a
/// value (`backup 7, live 8`) and a phrase after "only in the".
#[derive(Clone, Copy, Debug)]
pub(crate) struct Labels {
    pub a: &'static str,
    pub a_only: &'static str,
    pub b: &'static str,
    pub b_only: &'static str,
}

impl Labels {
    /// A restored backup against a node's database.
    pub(crate) const BACKUP_AND_LIVE: Labels =
        Labels { a: "backup", a_only: "backup", b: "live", b_only: "live database" };
}

/// File names for error messages, and the labels of the two sides.
struct Names {
    backup: String,
    live: String,
    labels: Labels,
}

/// The first difference between two databases, described in one line, or
/// `None` when schema and rows are equal. Tables named `sqlite_stat*`
/// (statistics from ANALYZE, not data) are left out.
fn compare(backup: &Connection, live: &Connection, names: &Names) -> Result<Option<String>> {
    let b_version = data_version_of(backup).with_context(|| names.backup.clone())?;
    let l_version = data_version_of(live).with_context(|| names.live.clone())?;
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
    let b_schema = schema(backup).with_context(|| names.backup.clone())?;
    let l_schema = schema(live).with_context(|| names.live.clone())?;
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
fn compare_table(backup: &Connection, live: &Connection, table: &SchemaEntry, names: &Names) -> Result<Option<String>> {
    let columns: Vec<String> = {
        let stmt = backup
            .prepare(&format!("SELECT * FROM {} LIMIT 0", ident(&table.name)))
            .with_context(|| format!("{}: reading table {}", names.backup, table.name))?;
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
    let read = |name: &str| format!("{name}: reading table {}", table.name);
    let mut b_stmt = backup.prepare(&sql).with_context(|| read(&names.backup))?;
    let mut l_stmt = live.prepare(&sql).with_context(|| read(&names.live))?;
    let mut b_rows = b_stmt.query([]).with_context(|| read(&names.backup))?;
    let mut l_rows = l_stmt.query([]).with_context(|| read(&names.live))?;
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
        let b = b_rows.next().with_context(|| read(&names.backup))?.map(values).transpose()?;
        let l = l_rows.next().with_context(|| read(&names.live))?.map(values).transpose()?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn arguments() {
        let cli = Cli::try_parse_from(["cln-backup", "verify", "--against", "/ln/db", "s.redb"]).unwrap();
        match cli.command {
            Command::Verify(a) => {
                assert_eq!(a.store, PathBuf::from("s.redb"));
                assert_eq!(a.against, Some(PathBuf::from("/ln/db")));
            }
            other => panic!("parsed as {other:?}"),
        }
        let err = Cli::try_parse_from(["cln-backup", "verify", "--against"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::InvalidValue);
    }

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
        let names = Names { backup: "backup".into(), live: "live".into(), labels: Labels::BACKUP_AND_LIVE };
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
