//! Rendering parameter values as SQL literals, for applications that report
//! their statements as text.
//!
//! Owns how a parameter value becomes SQL text in a reported statement:
//! [`literal`] turns a [`Value`] into a literal that SQLite reads back as the same value
//! in the same storage class, bit for bit, and [`expand`] puts such literals
//! in place of a statement's `?` and `?NNN` placeholders. It must not run
//! SQL, open a database or decide what a statement means: it rewrites text,
//! and what it writes is what replay executes.
//!
//! # The contract for reported statements
//!
//! A store rebuilds a database by executing, in order, the statements an
//! application reported. The result equals the live database only if each
//! statement does at replay exactly what it did live:
//!
//! - Every value is an exact literal. `sqlite3_expanded_sql` is not: it
//!   prints a REAL with 15 significant digits, so `0.1 + 0.2`
//!   (0.30000000000000004) comes back as 0.3, a different number. Render
//!   values with [`literal`] or [`expand`] instead, or bind nothing and
//!   write literals that round-trip.
//! - Every statement is deterministic. `random()`, `randomblob()`,
//!   `CURRENT_TIMESTAMP`, `CURRENT_DATE`, `datetime('now')`, `julianday('now')`
//!   and the like give a different value at replay; compute such a value in
//!   the application and report it as a literal.
//!
//! ```
//! use cln_backup::render::{expand, Value};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fee = 0.1 + 0.2; // 0.30000000000000004
//! let sql = expand("INSERT INTO fees (id, rate) VALUES (?, ?)", &[Value::from(7), Value::from(fee)])?;
//! // sqlite3_expanded_sql would have written `0.3`, which reads back as another number.
//! assert_eq!(sql, "INSERT INTO fees (id, rate) VALUES (7, 0.30000000000000004)");
//! # Ok(()) }
//! ```
//!
//! Decision: a NaN is rendered as `NULL`. SQLite never stores a NaN (binding
//! one stores NULL), so `NULL` is what the live database holds too.
//!
//! Decision: infinities are `9e999` and `-9e999`. SQLite has no literal for
//! them; a decimal number beyond the largest double reads as infinity.
//!
//! Decision: a negative zero is `-0.0`, which SQLite reads as -0.0. It keeps
//! the sign wherever a bound -0.0 keeps it (a column without a declared type,
//! an expression); a REAL column stores it as 0.0 and an INTEGER or NUMERIC
//! column as the integer 0, for a literal and a bound value alike. The
//! other way round, a literal 0.0 written right after a unary minus reads as
//! -0.0 where a bound 0.0 gives 0.0; [`expand`] writes such a zero so that
//! it does not (see there).
//!
//! Decision: text containing NUL characters is written as quoted pieces
//! joined by `char(0)`, in parentheses: `('a'||char(0)||'b')`. A NUL cannot
//! stand in a quoted literal (a statement's text ends at the first NUL), and
//! the store keeps statements NUL-free. The concatenation, like a literal and
//! unlike `CAST(x'..' AS TEXT)`, has no type affinity, so comparisons convert
//! nothing a bound value would not, and it does not depend on the database's
//! text encoding (the CAST reads its bytes as UTF-16 in a UTF-16 database).
//!
//! Decision: blobs are lowercase `x'..'`, as lightningd writes them, so the
//! store's statement encoding keeps their bytes out of the compressed text.

use std::fmt::Write as _;

/// A parameter value, in SQLite's five storage classes.
///
/// ```
/// use cln_backup::render::{literal, Value};
///
/// assert_eq!(Value::from(true), Value::Integer(1));
/// assert_eq!(Value::from(None::<&str>), Value::Null);
/// assert_eq!(Value::from(vec![0xca, 0xfe]), Value::Blob(vec![0xca, 0xfe]));
/// // A NaN is stored as NULL by SQLite, and rendered so.
/// assert_eq!(literal(&Value::Real(f64::NAN)), "NULL");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit signed integer.
    Integer(i64),
    /// A double; a NaN renders as `NULL` (SQLite stores none).
    Real(f64),
    /// UTF-8 text, NUL characters included.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Integer(v)
    }
}

impl From<i32> for Value {
    fn from(v: i32) -> Self {
        Value::Integer(i64::from(v))
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Value::Integer(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}

/// `false` is the integer 0 and `true` the integer 1, as SQLite has them.
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Integer(i64::from(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Blob(v)
    }
}

impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Self {
        Value::Blob(v.to_vec())
    }
}

/// `None` is NULL.
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Why [`expand`] could not render a statement.
///
/// ```
/// use cln_backup::render::{expand, RenderError, Value};
///
/// let err = expand("SELECT ?2", &[Value::from(1)]).unwrap_err();
/// assert!(matches!(err, RenderError::NoParameter { number: 2, offset: 7, given: 1, .. }));
/// let err = expand("SELECT ?", &[Value::from(1), Value::from(2)]).unwrap_err();
/// assert_eq!(err, RenderError::UnusedParameter { number: 2, given: 2 });
/// let err = expand("SELECT * FROM t WHERE id = :id", &[Value::from(1)]).unwrap_err();
/// assert!(matches!(err, RenderError::NamedParameter { ref name, .. } if name == ":id"));
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// A placeholder refers to a parameter that was not given: `?0`, or a
    /// number past the last parameter.
    #[error(
        "placeholder {placeholder} at byte {offset} refers to parameter {number}, but {given} parameters were given (numbered from 1)"
    )]
    NoParameter {
        /// The placeholder as written: `?` or `?3`.
        placeholder: String,
        /// The parameter it refers to, from 1 (`usize::MAX` for a number
        /// too large to hold).
        number: usize,
        /// Where the placeholder starts in the statement, in bytes.
        offset: usize,
        /// How many parameters were given.
        given: usize,
    },

    /// A parameter no placeholder refers to (the first such one).
    #[error("parameter {number} of the {given} given is not used by any placeholder")]
    UnusedParameter {
        /// The unused parameter's number, from 1.
        number: usize,
        /// How many parameters were given.
        given: usize,
    },

    /// A named parameter (`:name`, `@name`, `$name`, or SQLite's `#name`),
    /// which `expand` does not support: number the placeholders instead.
    #[error("named parameter {name} at byte {offset} is not supported: use ? or ?NNN placeholders")]
    NamedParameter {
        /// The parameter as written, sigil included: `:id`.
        name: String,
        /// Where it starts in the statement, in bytes.
        offset: usize,
    },
}

/// An SQL literal that SQLite reads back as exactly `value`, in the same
/// storage class. A REAL is the shortest decimal that reads back as the
/// same double, always with a `.` or an exponent so that it stays a REAL;
/// the exceptions (NaN, infinities, text with NUL) are in the module docs.
///
/// ```
/// use cln_backup::render::{literal, Value};
///
/// assert_eq!(literal(&Value::Real(0.1 + 0.2)), "0.30000000000000004");
/// assert_eq!(literal(&Value::Real(1.0)), "1.0");
/// assert_eq!(literal(&Value::Integer(i64::MIN)), "-9223372036854775808");
/// assert_eq!(literal(&Value::from("it's")), "'it''s'");
/// assert_eq!(literal(&Value::from(&b"\x02\xab"[..])), "x'02ab'");
/// assert_eq!(literal(&Value::from(None::<i64>)), "NULL");
/// ```
pub fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => i.to_string(),
        Value::Real(x) => real(*x),
        Value::Text(s) => text(s),
        Value::Blob(b) => {
            let mut out = String::with_capacity(3 + 2 * b.len());
            out.push_str("x'");
            for byte in b {
                let _ = write!(out, "{byte:02x}");
            }
            out.push('\'');
            out
        }
    }
}

/// A double as SQLite reads it back exactly.
fn real(x: f64) -> String {
    if x.is_nan() {
        "NULL".to_owned()
    } else if x.is_infinite() {
        if x > 0.0 { "9e999" } else { "-9e999" }.to_owned()
    } else {
        // Debug writes the shortest decimal that parses back to `x`, with a
        // `.` or an exponent (`1.0`, `1e300`); the check keeps it a REAL
        // should that ever change.
        let s = format!("{x:?}");
        if s.contains(['.', 'e']) {
            s
        } else {
            s + ".0"
        }
    }
}

/// Text quoted, quotes doubled; NUL characters as `char(0)`.
fn text(s: &str) -> String {
    let quote = |piece: &str| format!("'{}'", piece.replace('\'', "''"));
    if !s.contains('\0') {
        return quote(s);
    }
    let pieces: Vec<String> = s.split('\0').map(quote).collect();
    format!("({})", pieces.join("||char(0)||"))
}

/// `sql` with each `?` and `?NNN` placeholder replaced by the [`literal`] of
/// its parameter. Placeholders are numbered as SQLite numbers them: `?NNN` is
/// parameter NNN (from 1), and a bare `?` is the one after the largest number
/// assigned so far. A `?` inside a string, a quoted identifier (`".."`,
/// `` `..` ``, `[..]`) or a comment is text and stays. Every parameter must be
/// used; named parameters are refused. A space is put between a literal and a
/// neighbour it could run into (`a-?` with -1 becomes `a- -1`, not a comment).
///
/// A REAL 0.0 after a minus sign is written `(0.0+0)`: SQLite negates a
/// number written right after a unary minus as it parses it, so `-0.0` is
/// -0.0, while `-?` with 0.0 bound is computed as `0 - 0.0`, which is 0.0.
/// For every other value the two agree. Unlike a bound value, a literal
/// integer that is a whole `ORDER BY` or `GROUP BY` term names a result
/// column: such a term must not be a placeholder.
///
/// ```
/// use cln_backup::render::{expand, Value};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let sql = expand(
///     "UPDATE t SET note = '?', v = ?2 WHERE id = ?1 -- ?",
///     &[Value::from(3), Value::from(-1.5)],
/// )?;
/// assert_eq!(sql, "UPDATE t SET note = '?', v = -1.5 WHERE id = 3 -- ?");
/// # Ok(()) }
/// ```
pub fn expand(sql: &str, params: &[Value]) -> Result<String, RenderError> {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 8 * params.len());
    let mut used = vec![false; params.len()];
    let mut largest = 0usize;
    // Every token boundary below is at an ASCII byte, so `copied` and `at`
    // are always char boundaries of `sql`.
    let mut copied = 0;
    // Whether the last token, ignoring spaces, comments, `(` and `+`, is a
    // minus sign: a unary minus reaches the literal that follows.
    let mut after_minus = false;
    let mut at = 0;
    while let Some(&first) = bytes.get(at) {
        let rest = &bytes[at..];
        let next = rest.get(1).copied();
        let len = match first {
            b'\'' | b'"' | b'`' => quoted(rest),
            b'[' => through(rest, 1, b"]"),
            b'-' if next == Some(b'-') => through(rest, 2, b"\n"),
            b'/' if next == Some(b'*') => through(rest, 2, b"*/"),
            b':' | b'@' | b'$' | b'#' if next.is_some_and(is_word) => {
                let len = 1 + word(&rest[1..]);
                return Err(RenderError::NamedParameter { name: sql[at..at + len].to_owned(), offset: at });
            }
            b'?' => {
                let len = 1 + rest[1..].iter().take_while(|b| b.is_ascii_digit()).count();
                let written = &sql[at..at + len];
                let number = if len == 1 { largest + 1 } else { written[1..].parse().unwrap_or(usize::MAX) };
                let index =
                    number.checked_sub(1).filter(|&i| i < params.len()).ok_or_else(|| RenderError::NoParameter {
                        placeholder: written.to_owned(),
                        number,
                        offset: at,
                        given: params.len(),
                    })?;
                largest = largest.max(number);
                used[index] = true;
                out.push_str(&sql[copied..at]);
                let lit = match &params[index] {
                    Value::Real(x) if after_minus && x.to_bits() == 0 => "(0.0+0)".to_owned(),
                    v => literal(v),
                };
                if out.chars().next_back().is_some_and(|c| !stays_apart(c)) {
                    out.push(' ');
                }
                out.push_str(&lit);
                if bytes.get(at + len).is_some_and(|&b| !stays_apart(char::from(b))) {
                    out.push(' ');
                }
                at += len;
                copied = at;
                after_minus = false;
                continue;
            }
            b if is_word(b) => word(rest),
            _ => 1,
        };
        after_minus = match first {
            b'-' => len == 1 || after_minus,
            b'/' if len > 1 => after_minus,
            b'(' | b'+' => after_minus,
            b => b.is_ascii_whitespace() && after_minus,
        };
        at += len;
    }
    out.push_str(&sql[copied..]);
    if let Some(unused) = used.iter().position(|u| !u) {
        return Err(RenderError::UnusedParameter { number: unused + 1, given: params.len() });
    }
    Ok(out)
}

/// A byte that may be part of a word (keyword, identifier, number) as
/// SQLite's tokenizer has it: letters, digits, `_`, `$` and every byte of a
/// non-ASCII character.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The length of the word at the start of `bytes`.
fn word(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_word(b)).count()
}

/// The length of the string or quoted identifier at the start of `bytes`,
/// closing quote included; a doubled quote is part of it. Unterminated: all
/// of `bytes`.
fn quoted(bytes: &[u8]) -> usize {
    let quote = bytes[0];
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        i += 1;
        if b == quote {
            if bytes.get(i) != Some(&quote) {
                return i;
            }
            i += 1;
        }
    }
    bytes.len()
}

/// The length of `bytes` up to and including the first `end` at or after
/// `start` (past the opening `[`, `--` or `/*`); all of it without one.
fn through(bytes: &[u8], start: usize, end: &[u8]) -> usize {
    bytes
        .get(start..)
        .and_then(|tail| tail.windows(end.len()).position(|w| w == end))
        .map_or(bytes.len(), |p| start + p + end.len())
}

/// Whether a literal may touch `c` without the two running together into
/// another token: whitespace, brackets, separators and operators that no
/// literal's first or last character extends.
fn stays_apart(c: char) -> bool {
    c.is_ascii_whitespace() || "(),;=<>!+*/%&|~".contains(c)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::compare::{compare_databases, Labels};
    use proptest::prelude::*;
    use rusqlite::types::Value as Sql;
    use rusqlite::Connection;

    /// The value as rusqlite binds it.
    fn bound(v: &Value) -> Sql {
        match v {
            Value::Null => Sql::Null,
            Value::Integer(i) => Sql::Integer(*i),
            Value::Real(x) => Sql::Real(*x),
            Value::Text(s) => Sql::Text(s.clone()),
            Value::Blob(b) => Sql::Blob(b.clone()),
        }
    }

    /// Equal in storage class and value, REALs bit for bit.
    fn same(a: &Sql, b: &Sql) -> bool {
        match (a, b) {
            (Sql::Real(x), Sql::Real(y)) => x.to_bits() == y.to_bits(),
            _ => a == b,
        }
    }

    fn select(conn: &Connection, expr: &str) -> Sql {
        conn.query_row(&format!("SELECT {expr}"), [], |r| r.get(0)).unwrap()
    }

    /// What SQLite gives back for `v` read as a literal: `v` itself, except
    /// that a NaN is NULL (SQLite stores no NaN).
    fn read_back_as(v: &Value) -> Sql {
        match v {
            Value::Real(x) if x.is_nan() => Sql::Null,
            v => bound(v),
        }
    }

    fn text_with(chars: impl Strategy<Value = char>) -> impl Strategy<Value = Value> {
        proptest::collection::vec(chars, 0..24).prop_map(|c| Value::Text(c.into_iter().collect()))
    }

    fn any_value() -> impl Strategy<Value = Value> {
        let special = [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            -f64::from_bits(1),
            f64::MAX,
            f64::MIN,
            0.1 + 0.2,
            1e300,
            1e16,
        ];
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::Integer),
            prop::sample::select(vec![i64::MIN, i64::MAX, 0, -1]).prop_map(Value::Integer),
            any::<u64>().prop_map(|bits| Value::Real(f64::from_bits(bits))),
            proptest::num::f64::ANY.prop_map(Value::Real),
            (0u64..(1 << 52), any::<bool>())
                .prop_map(|(m, neg)| Value::Real(f64::from_bits(m | (u64::from(neg) << 63)))),
            prop::sample::select(special.to_vec()).prop_map(Value::Real),
            text_with(prop_oneof![any::<char>(), Just('\0'), Just('\''), Just('?'), Just('"')]),
            text_with(prop::sample::select(vec!['\0', 'a', '\'', 'é'])),
            proptest::collection::vec(any::<u8>(), 0..40).prop_map(Value::Blob),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// `SELECT <literal>` gives back the value, storage class and bits.
        #[test]
        fn literals_read_back_exactly(v in any_value()) {
            let conn = Connection::open_in_memory().unwrap();
            let lit = literal(&v);
            let got = select(&conn, &lit);
            prop_assert!(same(&got, &read_back_as(&v)), "{v:?} as {lit} read back as {got:?}");
            let class: String = conn.query_row(&format!("SELECT typeof({lit})"), [], |r| r.get(0)).unwrap();
            let expected = match read_back_as(&v) {
                Sql::Null => "null",
                Sql::Integer(_) => "integer",
                Sql::Real(_) => "real",
                Sql::Text(_) => "text",
                Sql::Blob(_) => "blob",
            };
            prop_assert_eq!(class, expected, "{:?} as {}", v, lit);
            prop_assert!(!lit.contains('\0'));
        }

        /// A literal stored in a column of every affinity, and compared with
        /// each stored value, does what the bound value does.
        #[test]
        fn literals_store_and_compare_as_bound_values(v in any_value()) {
            let conn = Connection::open_in_memory().unwrap();
            conn.execute_batch("CREATE TABLE t (n, i INTEGER, r REAL, t TEXT, m NUMERIC)").unwrap();
            let lit = literal(&v);
            conn.execute(&format!("INSERT INTO t VALUES ({lit}, {lit}, {lit}, {lit}, {lit})"), []).unwrap();
            conn.execute("INSERT INTO t VALUES (?1, ?1, ?1, ?1, ?1)", [bound(&v)]).unwrap();
            let row = |sql: &str, p: &[Sql]| -> Vec<Sql> {
                conn.query_row(sql, rusqlite::params_from_iter(p), |r| (0..r.as_ref().column_count()).map(|i| r.get(i)).collect())
                    .unwrap()
            };
            let stored = |rowid: i64| row("SELECT n, i, r, t, m FROM t WHERE rowid = ?1", &[Sql::Integer(rowid)]);
            let (as_literal, as_bound) = (stored(1), stored(2));
            for (l, b) in as_literal.iter().zip(&as_bound) {
                prop_assert!(same(l, b), "{v:?} as {lit}: stored {as_literal:?}, bound stored {as_bound:?}");
            }
            let compare = "SELECT n < {}, i < {}, r < {}, t < {}, m < {}, n = {}, i = {}, r = {}, t = {}, m = {}, \
                           5 < {}, 'm' < {}, x'00' < {} FROM t WHERE rowid = 1";
            let with_literal = row(&compare.replace("{}", &lit), &[]);
            let with_bound = row(&compare.replace("{}", "?1"), &[bound(&v)]);
            prop_assert_eq!(with_literal, with_bound, "{:?} as {}", v, lit);
        }

        /// Expanded statements, placeholders negated and numbered, give what
        /// the statement with the values bound gives.
        #[test]
        fn expanded_statements_equal_bound_ones(values in proptest::collection::vec(any_value(), 1..6)) {
            let conn = Connection::open_in_memory().unwrap();
            let numbered: Vec<String> = (1..=values.len()).map(|i| format!("?{i}, -?{i}, -(?{i}), - + ?{i}, 1-?{i}")).collect();
            let sql = format!("SELECT {}, {}", vec!["?"; values.len()].join(", "), numbered.join(", "));
            // The bare `?`s take 1..=n, the numbered ones refer to them again.
            let expanded = expand(&sql, &values).unwrap();
            let run = |sql: &str, p: &[Sql]| -> Vec<Sql> {
                conn.query_row(sql, rusqlite::params_from_iter(p), |r| (0..r.as_ref().column_count()).map(|i| r.get(i)).collect())
                    .unwrap()
            };
            let bound_values: Vec<Sql> = values.iter().map(bound).collect();
            let (got, want) = (run(&expanded, &[]), run(&sql, &bound_values));
            prop_assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                prop_assert!(same(g, w), "{expanded}: {got:?}, bound: {want:?}");
            }
        }
    }

    /// SQLite's own readings of the literals the renderer relies on.
    #[test]
    fn sqlite_reads_the_edge_literals_as_documented() {
        let conn = Connection::open_in_memory().unwrap();
        assert_eq!(select(&conn, "-9223372036854775808"), Sql::Integer(i64::MIN));
        assert_eq!(select(&conn, "typeof(1e300)"), Sql::Text("real".into()));
        assert_eq!(select(&conn, "9e999"), Sql::Real(f64::INFINITY));
        assert_eq!(select(&conn, "-9e999"), Sql::Real(f64::NEG_INFINITY));
        // SQLite stores no NaN: binding one, or making one, gives NULL.
        assert_eq!(conn.query_row("SELECT ?1", [f64::NAN], |r| r.get::<_, Sql>(0)).unwrap(), Sql::Null);
        assert_eq!(select(&conn, "9e999 - 9e999"), Sql::Null);
        // -0.0 keeps its sign as a value and in a column without affinity;
        // a REAL column stores 0.0 and INTEGER or NUMERIC the integer 0,
        // whether it came as a literal or bound.
        let Sql::Real(z) = select(&conn, "-0.0") else { panic!("-0.0 is not a REAL") };
        assert_eq!(z.to_bits(), (-0.0f64).to_bits());
        conn.execute_batch("CREATE TABLE t (n, r REAL, m NUMERIC); INSERT INTO t VALUES (-0.0, -0.0, -0.0)").unwrap();
        conn.execute("INSERT INTO t VALUES (?1, ?1, ?1)", [-0.0f64]).unwrap();
        for rowid in [1, 2] {
            let row: (f64, f64, Sql) = conn
                .query_row("SELECT n, r, m FROM t WHERE rowid = ?1", [rowid], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .unwrap();
            assert_eq!(
                (row.0.to_bits(), row.1.to_bits(), row.2),
                ((-0.0f64).to_bits(), 0.0f64.to_bits(), Sql::Integer(0))
            );
        }
        // Text with a NUL: whole, as text, and no affinity (CAST would have
        // TEXT affinity, and `5 > CAST(..)` would compare as text).
        let lit = literal(&Value::from("a\0'b\0"));
        assert_eq!(lit, "('a'||char(0)||'''b'||char(0)||'')");
        assert_eq!(select(&conn, &lit), Sql::Text("a\0'b\0".into()));
        let with_cast = select(&conn, "5 > CAST(x'00' AS TEXT)");
        let bound_nul = conn.query_row("SELECT 5 > ?1", ["\0"], |r| r.get::<_, Sql>(0)).unwrap();
        assert_ne!(with_cast, bound_nul, "CAST gives the comparison TEXT affinity");
        assert_eq!(select(&conn, &format!("5 > {}", literal(&Value::from("\0")))), bound_nul);
        // The same text in a UTF-16 database; CAST would read its bytes as UTF-16.
        let utf16 = Connection::open_in_memory().unwrap();
        utf16.execute_batch("PRAGMA encoding = 'UTF-16le'").unwrap();
        assert_eq!(select(&utf16, "(SELECT encoding FROM pragma_encoding)"), Sql::Text("UTF-16le".into()));
        assert_eq!(select(&utf16, &lit), Sql::Text("a\0'b\0".into()));
        assert_ne!(select(&utf16, "CAST(x'610027620000' AS TEXT)"), Sql::Text("a\0'b\0".into()));
    }

    #[test]
    fn from_conversions() {
        assert_eq!(Value::from(true), Value::Integer(1));
        assert_eq!(Value::from(false), Value::Integer(0));
        assert_eq!(Value::from(-3i32), Value::Integer(-3));
        assert_eq!(Value::from(u32::MAX), Value::Integer(4_294_967_295));
        assert_eq!(Value::from(i64::MIN), Value::Integer(i64::MIN));
        assert_eq!(Value::from(2.5), Value::Real(2.5));
        assert_eq!(Value::from("x"), Value::Text("x".into()));
        assert_eq!(Value::from(String::from("x")), Value::Text("x".into()));
        assert_eq!(Value::from(vec![1u8]), Value::Blob(vec![1]));
        assert_eq!(Value::from(&[1u8, 2][..]), Value::Blob(vec![1, 2]));
        assert_eq!(Value::from(Some("x")), Value::Text("x".into()));
        assert_eq!(Value::from(None::<f64>), Value::Null);
        assert_eq!(literal(&Value::Blob(Vec::new())), "x''");
        assert_eq!(literal(&Value::Real(f64::NAN)), "NULL");
        assert_eq!(literal(&Value::Real(-0.0)), "-0.0");
        assert_eq!(literal(&Value::Real(1e300)), "1e300");
        assert_eq!(literal(&Value::Real(f64::NEG_INFINITY)), "-9e999");
    }

    /// The problem this module fixes: `sqlite3_expanded_sql` rounds a REAL to
    /// 15 significant digits, and the statement it writes stores another
    /// number. The literal stores the same one.
    #[test]
    fn expanded_sql_loses_a_real_and_the_literal_does_not() {
        let conn = Connection::open_in_memory().unwrap();
        let x: f64 = 0.1 + 0.2;
        assert_eq!(x.to_string(), "0.30000000000000004");
        let mut stmt = conn.prepare("SELECT ?1").unwrap();
        stmt.raw_bind_parameter(1, x).unwrap();
        let by_sqlite = stmt.expanded_sql().unwrap();
        assert_eq!(by_sqlite, "SELECT 0.3");
        let rounded: f64 = conn.query_row(&by_sqlite, [], |r| r.get(0)).unwrap();
        assert_ne!(rounded.to_bits(), x.to_bits());
        // The same with `%.15g` done in Rust, for a value with more digits.
        let y = std::f64::consts::PI * 1e-7;
        let fifteen: f64 = conn.query_row(&format!("SELECT {y:.14e}"), [], |r| r.get(0)).unwrap();
        assert_ne!(fifteen.to_bits(), y.to_bits());

        let ours = expand("SELECT ?", &[Value::Real(x)]).unwrap();
        assert_eq!(ours, "SELECT 0.30000000000000004");
        let exact: f64 = conn.query_row(&ours, [], |r| r.get(0)).unwrap();
        assert_eq!(exact.to_bits(), x.to_bits());
        let exact: f64 = conn.query_row(&format!("SELECT {}", literal(&Value::Real(y))), [], |r| r.get(0)).unwrap();
        assert_eq!(exact.to_bits(), y.to_bits());
    }

    /// Two databases one bit apart in one REAL are different databases to
    /// the comparer that checks restores.
    #[test]
    fn the_comparer_sees_the_last_bit_of_a_real() {
        let dir = tempfile::tempdir().unwrap();
        let x: f64 = 0.1 + 0.2;
        let next = f64::from_bits(x.to_bits() ^ 1);
        let make = |name: &str, v: f64| {
            let path = dir.path().join(name);
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
                 INSERT INTO vars VALUES ('data_version', 1);
                 CREATE TABLE fees (id INTEGER PRIMARY KEY, rate REAL, raw);",
            )
            .unwrap();
            let lit = literal(&Value::Real(v));
            conn.execute_batch(&format!("INSERT INTO fees VALUES (1, 2.5, 'x'), (2, {lit}, {lit})")).unwrap();
            path
        };
        let (a, b, c) = (make("a.sqlite3", x), make("b.sqlite3", next), make("c.sqlite3", x));
        let diff = compare_databases(&a, &b, Labels::RESTORED_AND_EXPECTED).unwrap().expect("a difference");
        assert_eq!(
            diff.what,
            "table fees, rowid 2, column rate: restored 0.30000000000000004, expected 0.3000000000000001"
        );
        assert_eq!(compare_databases(&a, &c, Labels::RESTORED_AND_EXPECTED).unwrap(), None);
    }

    #[test]
    fn placeholders_in_strings_identifiers_and_comments_stay() {
        let sql = "SELECT '?', 'it''s ?', \"?\", `?`, [?], ? -- ?\n, /* ? */ ?, x'3f' /* ? unterminated";
        let got = expand(sql, &[Value::from(1), Value::from("?")]).unwrap();
        assert_eq!(got, "SELECT '?', 'it''s ?', \"?\", `?`, [?], 1 -- ?\n, /* ? */ '?', x'3f' /* ? unterminated");
        assert_eq!(expand("SELECT 'never closed ?", &[]).unwrap(), "SELECT 'never closed ?");
        assert_eq!(expand("SELECT a$b, \"x\"\"?\" FROM t", &[]).unwrap(), "SELECT a$b, \"x\"\"?\" FROM t");
    }

    #[test]
    fn numbered_and_bare_placeholders() {
        let p = [Value::from(1), Value::from(2), Value::from(3)];
        assert_eq!(expand("VALUES (?, ?, ?)", &p).unwrap(), "VALUES (1, 2, 3)");
        assert_eq!(expand("VALUES (?3, ?1, ?2, ?1)", &p).unwrap(), "VALUES (3, 1, 2, 1)");
        // A bare `?` takes the number after the largest so far.
        assert_eq!(expand("VALUES (?2, ?, ?1)", &p).unwrap(), "VALUES (2, 3, 1)");
        assert_eq!(expand("VALUES (?, ?3, ?2)", &p).unwrap(), "VALUES (1, 3, 2)");
        // `?12abc` is `?12` then `abc` to SQLite; a literal never touches a word.
        assert_eq!(
            expand("SELECT ?1AS a, a-?2, -?2, ?3||'x'", &[1.into(), (-1).into(), "y".into()]).unwrap(),
            "SELECT 1 AS a, a- -1, - -1, 'y'||'x'"
        );
        assert_eq!(expand("SELECT x IS?", &[Value::Null]).unwrap(), "SELECT x IS NULL");
    }

    /// `-0.0` is -0.0, but `-?` with 0.0 bound is 0.0: after a minus sign
    /// (through spaces, comments, `(` and `+`) a zero is not a plain literal.
    #[test]
    fn zero_after_a_minus_sign_is_not_negated_as_it_is_parsed() {
        let conn = Connection::open_in_memory().unwrap();
        let bound: f64 = conn.query_row("SELECT -?1", [0.0f64], |r| r.get(0)).unwrap();
        assert_eq!(bound.to_bits(), 0.0f64.to_bits());
        assert_eq!(select(&conn, "-0.0"), Sql::Real(-0.0));
        let Sql::Real(folded) = select(&conn, "- +0.0") else { panic!("not a REAL") };
        assert_eq!(folded.to_bits(), (-0.0f64).to_bits(), "SQLite folds the sign into the literal");
        let zero = [Value::Real(0.0)];
        let sql = "SELECT -?1, - /* c */ ?1, -(?1), - + ?1, a - ?1, ?1, (?1), -x, ?1";
        assert_eq!(
            expand(sql, &zero).unwrap(),
            "SELECT - (0.0+0), - /* c */ (0.0+0), -((0.0+0)), - + (0.0+0), a - (0.0+0), 0.0, (0.0), -x, 0.0"
        );
        for sql in ["SELECT -?1", "SELECT -(?1)", "SELECT - + ?1", "SELECT - -- c\n ?1"] {
            let Sql::Real(got) = select(&conn, &expand(sql, &zero).unwrap()[7..]) else { panic!("not a REAL") };
            assert_eq!(got.to_bits(), 0.0f64.to_bits(), "{sql}");
        }
    }

    #[test]
    fn errors_name_the_placeholder_or_parameter() {
        let one = [Value::from(1)];
        assert_eq!(
            expand("SELECT ?, ?", &one),
            Err(RenderError::NoParameter { placeholder: "?".into(), number: 2, offset: 10, given: 1 })
        );
        assert_eq!(
            expand("SELECT ?0", &one),
            Err(RenderError::NoParameter { placeholder: "?0".into(), number: 0, offset: 7, given: 1 })
        );
        let err = expand("SELECT ?99999999999999999999999", &one).unwrap_err();
        assert!(matches!(err, RenderError::NoParameter { number: usize::MAX, .. }), "{err:?}");
        assert_eq!(
            expand("SELECT ?2", &[Value::from(1), Value::from(2)]),
            Err(RenderError::UnusedParameter { number: 1, given: 2 })
        );
        assert_eq!(expand("SELECT 1", &one), Err(RenderError::UnusedParameter { number: 1, given: 1 }));
        for (sql, name) in [("SELECT :id", ":id"), ("SELECT @a_1", "@a_1"), ("x = $v", "$v")] {
            let err = expand(sql, &one).unwrap_err();
            assert_eq!(err, RenderError::NamedParameter { name: name.into(), offset: sql.find(name).unwrap() });
            assert!(err.to_string().contains("not supported"), "{err}");
        }
        let err = expand("SELECT ?", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "placeholder ? at byte 7 refers to parameter 1, but 0 parameters were given (numbered from 1)"
        );
    }
}
