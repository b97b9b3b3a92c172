//! The `db_write` hook: the version check on the first write after a start,
//! and the change-log rules for every write, over a [`Store`].
//!
//! Owns the decision for each write lightningd reports (continue, rewind and
//! continue, or refuse) and the log lines that explain it, which operators
//! grep for. It must not do I/O other than through the store, and it never
//! calls lightningd: the node serves nothing else while the hook runs.

use cln_backup::store::{Added, Store};
use cln_backup::{version, Error};
use std::sync::Arc;

/// Log phrases kept word for word: people grep for them.
pub const MATCH: &str = "Versions match up";
pub const REWIND: &str = "Last changes not applied, rewinding non-committed transaction";
pub const LOST_STATE: &str = "Core-Lightning seems to have lost some state (failed restore?). Emergency shutdown.";
pub const OUT_OF_DATE: &str = "Backup is out of date, we cannot continue safely. Emergency shutdown.";

/// A log line the hook wants lightningd to show, in order, before its answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: Level,
    pub message: String,
}

/// Levels of lightningd's log notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Info,
    Error,
}

impl Level {
    /// The name lightningd's `log` notification uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Error => "error",
        }
    }
}

/// The answer to one `db_write`, with the lines to log first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub logs: Vec<LogLine>,
    /// `Ok` means answer `{"result":"continue"}`; `Err` carries the JSON-RPC
    /// error message (lightningd then stops without committing).
    pub answer: Result<(), String>,
}

impl Outcome {
    fn refuse(mut logs: Vec<LogLine>, message: String) -> Outcome {
        logs.push(LogLine { level: Level::Error, message: message.clone() });
        Outcome { logs, answer: Err(message) }
    }
}

/// Where the hook gets its store from.
pub enum Target {
    /// The store is open.
    Store(Arc<Store>),
    /// It could not be opened: every write is refused with this explanation.
    Unavailable(String),
}

/// Per-process state of the hook.
pub struct DbWrite {
    target: Target,
    checked: bool,
}

impl DbWrite {
    pub fn new(target: Target) -> DbWrite {
        DbWrite { target, checked: false }
    }

    /// The store, if one is open.
    #[cfg(test)]
    pub fn store(&self) -> Option<&Arc<Store>> {
        match &self.target {
            Target::Store(s) => Some(s),
            Target::Unavailable(_) => None,
        }
    }

    /// Handle one `db_write` with `data_version` and `writes`.
    pub fn handle(&mut self, data_version: u32, writes: &[String]) -> Outcome {
        let store = match &self.target {
            Target::Store(s) => Arc::clone(s),
            Target::Unavailable(why) => return Outcome::refuse(Vec::new(), why.clone()),
        };
        if writes.is_empty() {
            return Outcome::refuse(
                Vec::new(),
                "db_write carried no statements: cln-backup supports only SQLite nodes (this looks like a \
                 PostgreSQL node); remove the plugin or move the node to SQLite"
                    .into(),
            );
        }
        let mut logs = Vec::new();
        if !self.checked {
            match version_check(&store, data_version, writes, &mut logs) {
                Ok(()) => self.checked = true,
                Err(message) => return Outcome::refuse(logs, message),
            }
        }
        match store.add_change(data_version, writes) {
            Ok(Added::New(_)) | Ok(Added::Repeated(_)) => Outcome { logs, answer: Ok(()) },
            Err(e) => Outcome::refuse(logs, store_error_message(&store, data_version, &e)),
        }
    }
}

/// The first write after a start: compare what lightningd had committed with
/// the backup, rewind an uncommitted change if that is what happened.
fn version_check(store: &Store, data_version: u32, writes: &[String], logs: &mut Vec<LogLine>) -> Result<(), String> {
    // L: the version lightningd had committed before this write. A write that
    // ends with the bump from N was made at N; a lone PRAGMA report at D.
    let committed = version::transaction_bump(writes).unwrap_or(data_version);
    let status = store.status().map_err(|e| format!("cannot read the backup's status: {e}"))?;
    let info = |message: String| LogLine { level: Level::Info, message };
    if status.version == committed {
        logs.push(info(format!("{MATCH} (version {committed})")));
        return Ok(());
    }
    if status.prev_version == Some(committed) && status.rewind_allowed {
        logs.push(info(format!("{REWIND} (backup at {}, lightningd committed {committed})", status.version)));
        store.rewind().map_err(|e| format!("rewinding version {} failed: {e}", status.version))?;
        return Ok(());
    }
    let prev = status.prev_version.unwrap_or(status.version);
    if prev > committed {
        Err(format!(
            "{LOST_STATE} lightningd is at version {committed} but the backup {} is at {}; restore the node's \
             database from the backup (cln-backup restore) before starting it again",
            status.path.display(),
            status.version
        ))
    } else {
        Err(format!(
            "{OUT_OF_DATE} lightningd is at version {committed} but the backup {} is at {}; the node ran without \
             the plugin: stop it and make a new backup (cln-backup init --lightning-dir ...)",
            status.path.display(),
            status.version
        ))
    }
}

fn store_error_message(store: &Store, data_version: u32, e: &Error) -> String {
    let advice = match e {
        Error::Gap { .. } => "lightningd skipped versions the backup never saw; make a new backup with cln-backup init",
        Error::Storage { .. } | Error::Io { .. } => {
            "the change is not stored: free disk space or fix the disk, then start the node again"
        }
        Error::Corrupt { .. } => "the store is damaged: run cln-backup verify on it and make a new backup",
        _ => "the change is not stored; the node stops so that nothing unbacked is committed",
    };
    format!("cannot back up version {data_version} to {}: {e}; {advice}", store.path().display())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cln_backup::version::bump_statement;

    fn tx(v: u32, sql: &str) -> Vec<String> {
        vec![sql.to_string(), bump_statement(v)]
    }

    fn store_at(dir: &std::path::Path, head: u32) -> Arc<Store> {
        let store = Store::create(dir.join("s.redb")).unwrap();
        store.add_change(1, &tx(1, "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)")).unwrap();
        for v in 2..=head {
            store.add_change(v, &tx(v, "SELECT 1")).unwrap();
        }
        Arc::new(store)
    }

    #[test]
    fn first_write_rules() {
        let dir = tempfile::tempdir().unwrap();
        // Matches: the backup is at 5, lightningd committed 5 and writes 6.
        let mut hook = DbWrite::new(Target::Store(store_at(dir.path(), 5)));
        let out = hook.handle(6, &tx(6, "SELECT 1"));
        assert_eq!(out.answer, Ok(()));
        assert!(out.logs[0].message.starts_with(MATCH));

        // Rewind: lightningd committed 5 again, the backup has 6.
        let mut hook = DbWrite::new(Target::Store(hook.store().unwrap().clone()));
        let out = hook.handle(6, &tx(6, "SELECT 2"));
        assert_eq!(out.answer, Ok(()));
        assert!(out.logs[0].message.starts_with(REWIND));

        // Lost state: lightningd at 3.
        let mut lost = DbWrite::new(Target::Store(hook.store().unwrap().clone()));
        let out = lost.handle(4, &tx(4, "SELECT 1"));
        assert!(out.answer.unwrap_err().contains(LOST_STATE));

        // Out of date: lightningd at 9.
        let mut ahead = DbWrite::new(Target::Store(hook.store().unwrap().clone()));
        let out = ahead.handle(10, &tx(10, "SELECT 1"));
        assert!(out.answer.unwrap_err().contains(OUT_OF_DATE));
        assert_eq!(hook.store().unwrap().version(), 6);
    }

    #[test]
    fn lone_pragma_first_write_matches() {
        let dir = tempfile::tempdir().unwrap();
        let mut hook = DbWrite::new(Target::Store(store_at(dir.path(), 5)));
        let out = hook.handle(5, &["PRAGMA foreign_keys = OFF;".to_string()]);
        assert_eq!(out.answer, Ok(()));
        assert_eq!(hook.store().unwrap().status().unwrap().changes, 5);
    }

    #[test]
    fn refuses_empty_and_unavailable() {
        let mut hook = DbWrite::new(Target::Unavailable("no backup.lock: run cln-backup init".into()));
        assert!(hook.handle(1, &tx(1, "x")).answer.unwrap_err().contains("cln-backup init"));
        let dir = tempfile::tempdir().unwrap();
        let mut hook = DbWrite::new(Target::Store(store_at(dir.path(), 2)));
        assert!(hook.handle(3, &[]).answer.unwrap_err().contains("only SQLite"));
    }
}
