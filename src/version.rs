//! lightningd's `data_version` and the store's extended version.
//!
//! Owns the arithmetic of versions: lightningd's `data_version` is a u32 that
//! wraps from 4294967295 to 0; the store keys changes by a monotonic u64
//! (`epoch << 32 | data_version`) so that order survives the wrap. Also owns
//! recognising the version bump that ends every lightningd transaction.
//! It must not touch storage.
//!
//! ```
//! use cln_backup::version::{bump_statement, data_version, next, transaction_bump};
//!
//! // The change after data_version 4294967295 is data_version 0, one epoch on.
//! let last = u64::from(u32::MAX);
//! assert_eq!(data_version(next(last)), 0);
//! assert!(next(last) > last);
//! // The bump that ends lightningd's transaction to version 8 raises 7.
//! assert_eq!(transaction_bump(&[bump_statement(8)]), Some(7));
//! ```

/// A store version: monotonic, extended across u32 wraps of `data_version`.
///
/// ```
/// use cln_backup::{version, Seq};
///
/// // data_version 5, after one wrap of the u32.
/// let seq: Seq = (1 << 32) | 5;
/// assert_eq!(version::data_version(seq), 5);
/// assert!(seq > Seq::from(u32::MAX));
/// ```
pub type Seq = u64;

/// The `data_version` lightningd reports for a store version.
///
/// ```
/// use cln_backup::version::data_version;
///
/// assert_eq!(data_version(42), 42);
/// assert_eq!(data_version((2 << 32) | 42), 42);
/// ```
pub fn data_version(seq: Seq) -> u32 {
    seq as u32
}

/// The store version that follows `seq` (wraps `data_version` into the next epoch).
///
/// ```
/// use cln_backup::version::{data_version, next};
///
/// assert_eq!(next(7), 8);
/// let wrapped = next(u64::from(u32::MAX));
/// assert_eq!((wrapped >> 32, data_version(wrapped)), (1, 0));
/// ```
pub fn next(seq: Seq) -> Seq {
    seq + 1
}

/// The store version with `data_version == dv` nearest at or below `head`,
/// used to interpret a user's `--to-version` given as a plain data_version.
pub(crate) fn seq_at_or_below(head: Seq, dv: u64) -> Option<Seq> {
    if dv > u64::from(u32::MAX) {
        // Already an extended version.
        return (dv <= head).then_some(dv);
    }
    let epoch = head >> 32;
    let candidate = (epoch << 32) | dv;
    if candidate <= head {
        Some(candidate)
    } else if epoch > 0 {
        Some(((epoch - 1) << 32) | dv)
    } else {
        None
    }
}

const BUMP_PREFIX: &str = "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = ";

/// If `stmt` is lightningd's version bump, the version it bumps *from*.
///
/// lightningd ends every transaction with
/// `UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = N`.
/// A u32 written through SQLite's integer formatting is never negative here, but
/// accept a trailing `;` or whitespace.
pub(crate) fn bump_from(stmt: &str) -> Option<u32> {
    let rest = stmt.trim_end().trim_end_matches(';').trim_end().strip_prefix(BUMP_PREFIX)?;
    rest.parse::<u32>().ok()
}

/// The bump a transaction ends with, if it ends with one.
///
/// ```
/// use cln_backup::version::{bump_statement, transaction_bump};
///
/// let txn = ["INSERT INTO vars VALUES ('x', 1)".to_string(), bump_statement(8)];
/// assert_eq!(transaction_bump(&txn), Some(7));
/// // Only the last statement counts.
/// assert_eq!(transaction_bump(&[bump_statement(8), "DELETE FROM peers".to_string()]), None);
/// ```
pub fn transaction_bump<S: AsRef<str>>(statements: &[S]) -> Option<u32> {
    statements.last().and_then(|s| bump_from(s.as_ref()))
}

/// Is this transaction a lone `PRAGMA foreign_keys = ...` report, which lightningd
/// ran outside any transaction? Returns the state it sets.
///
/// ```
/// use cln_backup::version::lone_foreign_keys_pragma;
///
/// assert_eq!(lone_foreign_keys_pragma(&["PRAGMA foreign_keys = OFF;"]), Some(false));
/// assert_eq!(lone_foreign_keys_pragma(&["pragma foreign_keys=1"]), Some(true));
/// // Not alone: part of a transaction.
/// assert_eq!(lone_foreign_keys_pragma(&["PRAGMA foreign_keys = ON", "DELETE FROM peers"]), None);
/// ```
pub fn lone_foreign_keys_pragma<S: AsRef<str>>(statements: &[S]) -> Option<bool> {
    match statements {
        [only] => foreign_keys_pragma(only.as_ref()),
        _ => None,
    }
}

/// Parse `PRAGMA foreign_keys = ON|OFF|1|0|TRUE|FALSE|YES|NO` (any case, optional `;`).
pub(crate) fn foreign_keys_pragma(stmt: &str) -> Option<bool> {
    let s = stmt.trim().trim_end_matches(';').trim();
    let lower = s.to_ascii_lowercase();
    let rest = lower.strip_prefix("pragma")?.trim_start();
    let rest = rest.strip_prefix("foreign_keys")?.trim_start();
    let value = rest.strip_prefix('=')?.trim();
    match value {
        "on" | "1" | "true" | "yes" => Some(true),
        "off" | "0" | "false" | "no" => Some(false),
        _ => None,
    }
}

/// The bump statement lightningd would write for a transaction that produces `version`.
///
/// ```
/// use cln_backup::version::{bump_statement, transaction_bump};
///
/// assert_eq!(
///     bump_statement(1),
///     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// );
/// // The bump to 0 raises the last u32.
/// assert_eq!(transaction_bump(&[bump_statement(0)]), Some(u32::MAX));
/// ```
pub fn bump_statement(version: u32) -> String {
    format!("{BUMP_PREFIX}{}", version.wrapping_sub(1))
}

/// The restorable versions `lo` to `hi` as an operator reads them. Version 0
/// of a log without a snapshot is the empty database before the first
/// change: the command line does not restore it, so the range is shown from 1.
///
/// ```
/// use cln_backup::version::range_text;
///
/// assert_eq!(range_text(5, 9, true), "5 to 9");
/// assert_eq!(range_text(0, 3, false), "1 to 3; 0 is the empty database before the first change");
/// assert_eq!(range_text(0, 0, false), "none yet, the backup holds no change");
/// ```
pub fn range_text(lo: Seq, hi: Seq, has_snapshot: bool) -> String {
    match (has_snapshot, lo, hi) {
        (false, 0, 0) => "none yet, the backup holds no change".to_string(),
        (false, 0, hi) => format!("1 to {}; 0 is the empty database before the first change", data_version(hi)),
        (_, lo, hi) => format!("{} to {}", data_version(lo), data_version(hi)),
    }
}

/// The store version a restore to `to_version` (a `data_version`, or an
/// extended store version; the head `hi` when `None`) reaches within the
/// restorable range `lo..=hi`: the highest version at or below it after the
/// last u32 wrap. Outside the range it is [`Error::NotRestorable`], naming
/// the range as [`range_text`] words it. The one lookup behind every
/// restore source: a store's reader, a `.dbak` plan, a socket server's
/// stream, an object-store copy.
pub(crate) fn target(lo: Seq, hi: Seq, has_snapshot: bool, to_version: Option<u64>) -> crate::Result<Seq> {
    let Some(asked) = to_version else {
        return Ok(hi);
    };
    match seq_at_or_below(hi, asked) {
        Some(seq) if seq >= lo => Ok(seq),
        _ => Err(crate::Error::NotRestorable { asked, range: range_text(lo, hi, has_snapshot) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_round_trip_and_wrap() {
        assert_eq!(bump_from(&bump_statement(45)), Some(44));
        assert_eq!(bump_from(&bump_statement(0)), Some(u32::MAX));
        assert_eq!(bump_from("UPDATE vars SET intval = 3"), None);
        assert_eq!(data_version(next(u64::from(u32::MAX))), 0);
    }

    #[test]
    fn pragma_recognised() {
        assert_eq!(foreign_keys_pragma("PRAGMA foreign_keys = OFF;"), Some(false));
        assert_eq!(foreign_keys_pragma("pragma foreign_keys=1"), Some(true));
        assert_eq!(foreign_keys_pragma("PRAGMA foreign_key_check"), None);
        assert_eq!(lone_foreign_keys_pragma(&["PRAGMA foreign_keys = ON;", "x"]), None);
    }

    #[test]
    fn to_version_lookup() {
        let head = (1u64 << 32) | 5;
        assert_eq!(seq_at_or_below(head, 3), Some((1 << 32) | 3));
        assert_eq!(seq_at_or_below(head, 9), Some(9));
        assert_eq!(seq_at_or_below(7, 9), None);
    }
}
