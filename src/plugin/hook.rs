//! The `db_write` hook: the version check on the first write after a start,
//! and the change-log rules for every write, over the node's destinations.
//!
//! Owns the decision for each write lightningd reports (continue, rewind and
//! continue, or refuse) and the log lines that explain it, which operators
//! grep for. It must not do I/O other than through its destinations, and it
//! never calls lightningd: the node serves nothing else while the hook runs.

use cln_backup::destination::replica::{self, AsyncReplica};
use cln_backup::destination::Destination;
use cln_backup::lifecycle::{self, Reconciled};
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

/// The destinations of `backup.lock`, by role.
#[derive(Clone, Default)]
pub struct Plan {
    /// The local store, when the lock has one: written first, checked
    /// first, and the source every replica is caught up from.
    pub primary: Option<Arc<dyn Destination>>,
    /// The other sync destinations: each has a change before `continue`.
    pub sync: Vec<Arc<dyn Destination>>,
    /// The async destinations: woken after each write, never failing one.
    pub replicas: Vec<Arc<AsyncReplica>>,
}

impl Plan {
    /// Every destination sync, none the primary: each is checked at the
    /// first write and must have each change.
    #[cfg(test)]
    pub fn all_sync(destinations: Vec<Arc<dyn Destination>>) -> Plan {
        Plan { primary: None, sync: destinations, replicas: Vec::new() }
    }

    /// The destinations written before each answer, primary first.
    fn written(&self) -> impl Iterator<Item = &Arc<dyn Destination>> {
        self.primary.iter().chain(&self.sync)
    }
}

/// Where the hook stores each write.
pub enum Target {
    /// The primary and every sync destination must have a change durably
    /// before the answer is `continue`; async ones get it soon after. A
    /// write refused by a later destination may already be in an earlier
    /// one: lightningd stops without committing it, and the next start's
    /// version check rewinds it there (and the catch-up rewinds a replica
    /// that has it), as after a crash.
    Destinations(Plan),
    /// The backup could not be opened: every write is refused with this explanation.
    Unavailable(String),
}

/// The refusal of a write without statements, which PostgreSQL nodes send.
const NO_STATEMENTS: &str = "db_write carried no statements: cln-backup supports only SQLite nodes (this looks like a \
                             PostgreSQL node); remove the plugin or move the node to SQLite";

/// Per-process state of the hook, owned by the thread that answers
/// `db_write` (no lock: nothing else touches it).
pub struct DbWrite {
    target: Target,
    checked: bool,
    /// Each replica's state changes already logged.
    logged_transitions: Vec<u64>,
}

impl DbWrite {
    pub fn new(target: Target) -> DbWrite {
        DbWrite { target, checked: false, logged_transitions: Vec::new() }
    }

    /// Handle one `db_write` with `data_version` and `writes`.
    ///
    /// Each check is made once: the first write after a start is checked
    /// here for statements (before the version check, which would misread
    /// an empty write) and against each destination's head; later writes go
    /// straight to the destinations, whose own refusal of an empty change
    /// is answered with the same message.
    pub fn handle<S: AsRef<str>>(&mut self, data_version: u32, writes: &[S]) -> Outcome {
        let plan = match &self.target {
            Target::Destinations(plan) => plan,
            Target::Unavailable(why) => return Outcome::refuse(Vec::new(), why.clone()),
        };
        let mut logs = Vec::new();
        if !self.checked {
            if writes.is_empty() {
                return Outcome::refuse(logs, NO_STATEMENTS.into());
            }
            if let Some(primary) = &plan.primary {
                if let Err(message) = version_check(primary.as_ref(), data_version, writes, &mut logs) {
                    return Outcome::refuse(logs, message);
                }
            }
            for dest in &plan.sync {
                if let Some(store) = plan.primary.as_ref().and_then(|p| p.local_store()) {
                    if let Err(message) = catch_up(store, dest.as_ref(), &mut logs) {
                        return Outcome::refuse(logs, message);
                    }
                }
                if let Err(message) = version_check(dest.as_ref(), data_version, writes, &mut logs) {
                    return Outcome::refuse(logs, message);
                }
            }
            self.checked = true;
        }
        let parts: Vec<&str> = writes.iter().map(AsRef::as_ref).collect();
        for dest in plan.written() {
            if let Err(e) = dest.add_change(data_version, &parts) {
                return Outcome::refuse(logs, store_error_message(dest.as_ref(), data_version, &e));
            }
        }
        for replica in &plan.replicas {
            replica.notify();
        }
        for replica in &plan.replicas {
            replica.wait_within_bound();
        }
        self.log_replica_changes(&mut logs);
        Outcome { logs, answer: Ok(()) }
    }

    /// One log line each time an async destination starts failing or
    /// recovers (not one per failed attempt).
    fn log_replica_changes(&mut self, logs: &mut Vec<LogLine>) {
        let Target::Destinations(plan) = &self.target else {
            return;
        };
        self.logged_transitions.resize(plan.replicas.len(), 0);
        for (replica, logged) in plan.replicas.iter().zip(self.logged_transitions.iter_mut()) {
            if replica.transitions() == *logged {
                continue;
            }
            let status = replica.status();
            *logged = status.transitions;
            logs.push(match status.last_error {
                Some(e) => LogLine {
                    level: Level::Error,
                    message: format!(
                        "async backup {} is failing (writes go on; retrying with backoff): {e}",
                        replica.location()
                    ),
                },
                None => LogLine {
                    level: Level::Info,
                    message: format!("async backup {} is reachable again and catching up", replica.location()),
                },
            });
        }
    }
}

/// Bring a sync destination that is behind up to the primary before the
/// first answer, and say so.
fn catch_up(primary: &cln_backup::Store, dest: &dyn Destination, logs: &mut Vec<LogLine>) -> Result<(), String> {
    let done = replica::catch_up(primary, dest).map_err(|e| {
        format!("cannot bring {} up to the local store {}: {e}", dest.location(), primary.path().display())
    })?;
    if done.transactions > 0 || done.snapshot.is_some() || done.rewound {
        let mut message = format!("Caught up {} from version {} to {}", dest.location(), done.from, done.to);
        if done.rewound {
            message.push_str(", after rewinding the change the local store had rewound");
        }
        if let Some(v) = done.snapshot {
            message.push_str(&format!(", with the snapshot at version {v}"));
        }
        message.push_str(&format!(" ({} transactions)", done.transactions));
        logs.push(LogLine { level: Level::Info, message });
    }
    Ok(())
}

/// The first write after a start: compare what lightningd had committed with
/// the backup, rewind an uncommitted change if that is what happened.
fn version_check<S: AsRef<str>>(
    dest: &dyn Destination,
    data_version: u32,
    writes: &[S],
    logs: &mut Vec<LogLine>,
) -> Result<(), String> {
    // L: the version lightningd had committed before this write. A write that
    // ends with the bump from N was made at N; a lone PRAGMA report at D.
    let committed = version::transaction_bump(writes).unwrap_or(data_version);
    let info = |message: String| LogLine { level: Level::Info, message };
    let found = lifecycle::reconcile(dest, committed).map_err(|e| match e {
        Error::Rewind { .. } => format!("rewinding the backup {} failed: {e}", dest.location()),
        e => format!("cannot reconcile the backup {} with version {committed}: {e}", dest.location()),
    })?;
    match found {
        Reconciled::Match { .. } => {
            logs.push(info(format!("{MATCH} (version {committed})")));
            Ok(())
        }
        Reconciled::Rewound { removed, .. } => {
            logs.push(info(format!("{REWIND} (backup at {removed}, lightningd committed {committed})")));
            Ok(())
        }
        Reconciled::DatabaseBehind { backup, .. } => Err(format!(
            "{LOST_STATE} lightningd is at version {committed} but the backup {} is at {backup}; restore the node's \
             database from the backup (cln-backup restore) before starting it again",
            dest.location(),
        )),
        Reconciled::BackupBehind { backup, .. } => Err(format!(
            "{OUT_OF_DATE} lightningd is at version {committed} but the backup {} is at {backup}; the node ran \
             without the plugin: stop it and make a new backup (cln-backup init --lightning-dir ...)",
            dest.location(),
        )),
        // `Reconciled` may grow; an outcome this build does not know is
        // not a reason to write.
        _ => Err(format!("the backup {} cannot be reconciled with version {committed}", dest.location())),
    }
}

fn store_error_message(dest: &dyn Destination, data_version: u32, e: &Error) -> String {
    let advice = match e {
        Error::EmptyChange { .. } => return NO_STATEMENTS.into(),
        Error::Gap { .. } => "lightningd skipped versions the backup never saw; make a new backup with cln-backup init",
        Error::Storage { .. } | Error::Io { .. } => {
            "the change is not stored: free disk space or fix the disk, then start the node again"
        }
        Error::Corrupt { .. } => "the store is damaged: run cln-backup verify on it and make a new backup",
        _ => "the change is not stored; the node stops so that nothing unbacked is committed",
    };
    format!("cannot back up version {data_version} to {}: {e}; {advice}", dest.location())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cln_backup::destination::FileDestination;
    use cln_backup::store::Store;
    use cln_backup::version::bump_statement;

    fn tx(v: u32, sql: &str) -> Vec<String> {
        vec![sql.to_string(), bump_statement(v)]
    }

    fn store_at(dir: &std::path::Path, head: u32) -> Arc<dyn Destination> {
        let store = Store::create(dir.join("s.redb")).unwrap();
        store.add_change(1, &tx(1, "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)")).unwrap();
        for v in 2..=head {
            store.add_change(v, &tx(v, "SELECT 1")).unwrap();
        }
        Arc::new(FileDestination::new(store))
    }

    fn hook_on(dest: &Arc<dyn Destination>) -> DbWrite {
        DbWrite::new(Target::Destinations(Plan::all_sync(vec![Arc::clone(dest)])))
    }

    #[test]
    fn first_write_rules() {
        let dir = tempfile::tempdir().unwrap();
        let dest = store_at(dir.path(), 5);
        // Matches: the backup is at 5, lightningd committed 5 and writes 6.
        let mut hook = hook_on(&dest);
        let out = hook.handle(6, &tx(6, "SELECT 1"));
        assert_eq!(out.answer, Ok(()));
        assert!(out.logs[0].message.starts_with(MATCH));

        // Rewind: lightningd committed 5 again, the backup has 6.
        let mut hook = hook_on(&dest);
        let out = hook.handle(6, &tx(6, "SELECT 2"));
        assert_eq!(out.answer, Ok(()));
        assert!(out.logs[0].message.starts_with(REWIND));

        // Lost state: lightningd at 3.
        let out = hook_on(&dest).handle(4, &tx(4, "SELECT 1"));
        assert!(out.answer.unwrap_err().contains(LOST_STATE));

        // Out of date: lightningd at 9.
        let out = hook_on(&dest).handle(10, &tx(10, "SELECT 1"));
        assert!(out.answer.unwrap_err().contains(OUT_OF_DATE));
        assert_eq!(dest.head().unwrap().version, 6);
    }

    #[test]
    fn lone_pragma_first_write_matches() {
        let dir = tempfile::tempdir().unwrap();
        let dest = store_at(dir.path(), 5);
        let out = hook_on(&dest).handle(5, &["PRAGMA foreign_keys = OFF;".to_string()]);
        assert_eq!(out.answer, Ok(()));
        assert_eq!(dest.local_store().unwrap().status().unwrap().changes, 5);
    }

    #[test]
    fn refuses_empty_and_unavailable() {
        let mut hook = DbWrite::new(Target::Unavailable("no backup.lock: run cln-backup init".into()));
        assert!(hook.handle(1, &tx(1, "x")).answer.unwrap_err().contains("cln-backup init"));
        let dir = tempfile::tempdir().unwrap();
        let dest = store_at(dir.path(), 2);
        let mut hook = hook_on(&dest);
        let empty: &[String] = &[];
        assert!(hook.handle(3, empty).answer.unwrap_err().contains("only SQLite"));
        // After the first write the store's own check refuses, with the same words.
        assert_eq!(hook.handle(3, &tx(3, "SELECT 1")).answer, Ok(()));
        assert_eq!(hook.handle(4, empty).answer.unwrap_err(), NO_STATEMENTS);
        assert_eq!(dest.head().unwrap().version, 3);
    }

    #[test]
    fn every_destination_has_the_change_before_continue() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (first, second) = (store_at(a.path(), 3), store_at(b.path(), 3));
        let mut hook =
            DbWrite::new(Target::Destinations(Plan::all_sync(vec![Arc::clone(&first), Arc::clone(&second)])));
        assert_eq!(hook.handle(4, &tx(4, "SELECT 1")).answer, Ok(()));
        assert_eq!((first.head().unwrap().version, second.head().unwrap().version), (4, 4));
        // The second refuses (its head moved on): the write is refused, naming it.
        second.add_change(5, &["SELECT 2", &bump_statement(5)]).unwrap();
        let refused = hook.handle(5, &tx(5, "SELECT 1")).answer.unwrap_err();
        assert!(refused.contains(second.location()), "{refused}");
    }

    #[test]
    fn a_sync_replica_behind_is_caught_up_before_the_first_answer() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let primary = store_at(a.path(), 5);
        let behind: Arc<dyn Destination> =
            Arc::new(FileDestination::new(Store::create(b.path().join("r.redb")).unwrap()));
        let plan = Plan { primary: Some(Arc::clone(&primary)), sync: vec![Arc::clone(&behind)], replicas: Vec::new() };
        let mut hook = DbWrite::new(Target::Destinations(plan));
        let out = hook.handle(6, &tx(6, "SELECT 1"));
        assert_eq!(out.answer, Ok(()));
        let caught = out.logs.iter().find(|l| l.message.starts_with("Caught up")).expect("a catch-up line");
        assert!(caught.message.contains("from version 0 to 5"), "{caught:?}");
        // Each then has the change: the replica was checked after its catch-up.
        assert_eq!((primary.head().unwrap().version, behind.head().unwrap().version), (6, 6));
        assert_eq!(out.logs.iter().filter(|l| l.message.starts_with(MATCH)).count(), 2, "{:?}", out.logs);
    }
}
