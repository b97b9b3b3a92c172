//! The lightningd plugin front end.
//!
//! Owns the plugin protocol: the manifest, the `db_write` hook, the RPC
//! methods `backup-status` and `backup-compact`, and the [`wire`] layer that
//! answers `db_write` calls, including those lightningd sends before `init`.
//! Decisions about each write live in [`hook`]; storage lives in the library.
//! A `backup.lock` left by the Python plugin (naming its `.dbak` file) is
//! refused with the exact `cln-backup import` command that moves the node
//! over. Every destination `backup.lock` lists is opened at start: the
//! local store (the primary) and the sync ones are written before each
//! answer, each async one by a replica thread of the library
//! (`destination::replica`). It never makes RPC calls to lightningd: while a
//! hook is pending the node serves nothing else, so such a call would
//! deadlock it.
//!
//! It also runs compaction automatically, by the policy its options set
//! (`backup-compact-after-changes`, `backup-compact-after-ratio`,
//! `backup-keep-snapshots`, `backup-keep-max-age`, and the pace of its
//! writes, `backup-compact-io-rate`): after each stored write
//! the `db_write` thread checks the policy and, when one is due, starts it on
//! a thread of its own; `backup-compact` runs the same function. It must not
//! compact on the `db_write` thread, nor before a write's answer is written.

pub mod hook;
pub mod wire;

use crate::cli::handover::{python_lock_fix, shell_word};
use anyhow::Context;
use cln_backup::compact::{Policy, Retention};
use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
use cln_backup::destination::{self, Access, Destination, Location};
use cln_backup::lockfile::{self, Entry, Mode, LOCK_FILE_NAME};
use cln_backup::{Status, Store};
use cln_plugin::options::{ConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption, StringConfigOption};
use hook::{DbWrite, Plan, Target};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use wire::{Incoming, Out};

const DEPRECATED_DESTINATION: StringConfigOption =
    ConfigOption::new_str_no_default("backup-destination", "Deprecated and unused: the store is named in backup.lock");

const AFTER_CHANGES: &str = "backup-compact-after-changes";
const AFTER_RATIO: &str = "backup-compact-after-ratio";
const KEEP_SNAPSHOTS: &str = "backup-keep-snapshots";
const KEEP_MAX_AGE: &str = "backup-keep-max-age";
const IO_RATE: &str = "backup-compact-io-rate";

const AFTER_CHANGES_OPTION: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    AFTER_CHANGES,
    Policy::DEFAULT_AFTER_CHANGES as i64,
    "Compact automatically once this many changes were stored since the newest snapshot (0: never by count)",
);
const AFTER_RATIO_OPTION: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    AFTER_RATIO,
    "1.0",
    "Compact automatically once the changes since the newest snapshot take this many times its stored size \
     (a decimal; 0: never by size)",
);
const KEEP_SNAPSHOTS_OPTION: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    KEEP_SNAPSHOTS,
    Retention::DEFAULT_KEEP as i64,
    "Snapshots a compaction keeps, the new one included (at least 1): a restore reaches back to the oldest",
);
const KEEP_MAX_AGE_OPTION: StringConfigOption = ConfigOption::new_str_no_default(
    KEEP_MAX_AGE,
    "Drop snapshots older than this age (30d, 12h, ...) at each compaction, the newest always kept; unset or \
     empty: no age limit",
);

const IO_RATE_OPTION: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    IO_RATE,
    (cln_backup::compact::Options::DEFAULT_IO_RATE >> 20) as i64,
    "MiB a second a compaction writes at most, so the node's own commits keep the disk (0: as fast as it goes)",
);

/// How often an automatic compaction that was skipped or failed is tried
/// again, at most.
const RETRY_AFTER: Duration = Duration::from_secs(60);

/// State shared with the RPC handlers.
#[derive(Clone)]
struct State {
    plan: Plan,
    /// The lock's entries, in order, for `backup-status`.
    entries: Vec<Entry>,
    problem: Option<String>,
    /// Compaction settings and what is running, shared by the `db_write`
    /// thread, the automatic compaction thread and the RPC handlers.
    compaction: Arc<Compaction>,
}

/// The compaction settings the plugin's options give.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub policy: Policy,
    pub retention: Retention,
    /// `backup-keep-max-age` as the user wrote it (`None`: no age limit).
    pub max_age: Option<String>,
    /// `backup-compact-io-rate`, in bytes a second (`None`: no limit).
    pub io_rate: Option<u64>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            policy: Policy::default(),
            retention: Retention::default(),
            max_age: None,
            io_rate: Some(cln_backup::compact::Options::DEFAULT_IO_RATE),
        }
    }
}

impl Settings {
    /// The settings `init` carries in `options`, or why one is refused
    /// (naming the option and its value).
    ///
    /// Decision: an option lightningd did not send takes its default (it
    /// sends registered defaults anyway); an integer option also accepts a
    /// numeric string, as a configuration file may hold one.
    pub fn from_options(options: &serde_json::Map<String, Value>) -> Result<Settings, String> {
        let refuse = |name: &str, value: &Value, why: &str| {
            let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
            format!("cln-backup: option {name}={shown} is refused: {why}")
        };
        let integer = |name: &str, default: u64, min: u64, why: &str| -> Result<u64, String> {
            let Some(value) = options.get(name) else { return Ok(default) };
            let n = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            };
            match n.and_then(|n| u64::try_from(n).ok()) {
                Some(n) if n >= min => Ok(n),
                _ => Err(refuse(name, value, why)),
            }
        };
        let after_changes = integer(
            AFTER_CHANGES,
            Policy::DEFAULT_AFTER_CHANGES,
            0,
            "it must be a whole number of changes, 0 or more (0 turns this trigger off)",
        )?;
        let keep = integer(
            KEEP_SNAPSHOTS,
            Retention::DEFAULT_KEEP as u64,
            1,
            "it must be a whole number of snapshots, at least 1 (the newest is always kept)",
        )?;
        let io_rate_mib = integer(
            IO_RATE,
            cln_backup::compact::Options::DEFAULT_IO_RATE >> 20,
            0,
            "it must be a whole number of MiB a second, 0 or more (0: no limit)",
        )?;
        let io_rate = match io_rate_mib {
            0 => None,
            n => Some(n.checked_mul(1 << 20).ok_or_else(|| refuse(IO_RATE, &json!(n), "it is too large"))?),
        };
        let keep = usize::try_from(keep).map_err(|_| refuse(KEEP_SNAPSHOTS, &json!(keep), "it is too large"))?;
        let after_ratio = match options.get(AFTER_RATIO) {
            None => Policy::DEFAULT_AFTER_RATIO,
            Some(value) => {
                let ratio = match value {
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    // Only whole numbers: cln-plugin reads a number option as an integer.
                    Value::Number(n) => n.as_i64().map(|n| n as f64),
                    _ => None,
                };
                match ratio {
                    Some(r) if r.is_finite() && r >= 0.0 => r,
                    _ => {
                        return Err(refuse(
                            AFTER_RATIO,
                            value,
                            "it must be a decimal number, 0 or more, such as 1.0 (0 turns this trigger off)",
                        ))
                    }
                }
            }
        };
        let (max_age, max_age_text) = match options.get(KEEP_MAX_AGE) {
            None | Some(Value::Null) => (None, None),
            Some(Value::String(s)) if s.trim().is_empty() => (None, None),
            Some(Value::String(s)) => match cln_backup::timespec::parse_age(s) {
                Ok(age) => (Some(age), Some(s.trim().to_string())),
                Err(why) => return Err(refuse(KEEP_MAX_AGE, &json!(s), &why)),
            },
            Some(other) => return Err(refuse(KEEP_MAX_AGE, other, "it must be an age such as 30d or 12h")),
        };
        Ok(Settings {
            policy: Policy::new(after_changes, after_ratio),
            retention: Retention::new(keep, max_age),
            max_age: max_age_text,
            io_rate,
        })
    }

    /// The settings as `backup-status` shows them.
    fn to_json(&self) -> Value {
        json!({
            "after_changes": self.policy.after_changes,
            "after_ratio": self.policy.after_ratio,
            "keep_snapshots": self.retention.keep_snapshots,
            "max_age": self.max_age,
            "io_rate_mib_per_s": self.io_rate.map(|r| r >> 20).unwrap_or(0),
        })
    }
}

/// Compaction state shared between threads.
///
/// Decision: the settings are set once, by the `db_write` thread when it
/// reads `init` (before passing it on), so every RPC call and every write
/// after `init` sees them; until then no automatic compaction runs and
/// `backup-compact` uses the defaults. Compactions are serialised by the
/// store itself; the flag here only keeps a second automatic one from
/// being started while one is running.
#[derive(Default)]
struct Compaction {
    settings: OnceLock<Settings>,
    /// An automatic compaction thread is running.
    auto_running: AtomicBool,
    /// Compactions ended (manual or automatic, failed or not): the
    /// `db_write` thread reads the newest snapshot's figures again when
    /// this moves.
    ended: AtomicU64,
    /// No automatic compaction starts before this (set after a skip or a failure).
    retry_at: Mutex<Option<Instant>>,
}

impl Compaction {
    fn settings(&self) -> Settings {
        self.settings.get().cloned().unwrap_or_default()
    }

    fn retry_later(&self) {
        *self.retry_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + RETRY_AFTER);
    }

    fn may_start(&self) -> bool {
        let retry_at = *self.retry_at.lock().unwrap_or_else(|p| p.into_inner());
        retry_at.is_none_or(|at| Instant::now() >= at)
    }
}

impl State {
    /// The local store the RPC methods read, or why there is none.
    fn store(&self) -> anyhow::Result<&Store> {
        match self.plan.primary.as_ref().and_then(|p| p.local_store()) {
            Some(store) => Ok(store),
            None => anyhow::bail!(
                "{}",
                self.problem.as_deref().unwrap_or("no local store is configured (backup.lock lists none)")
            ),
        }
    }
}

/// Open the destinations named by `DIR/backup.lock`, or say what is wrong and what to run.
fn open_target(dir: &Path) -> (Target, Vec<Entry>) {
    let fix = "run `cln-backup init --lightning-dir <network dir> <store path>` with the node stopped";
    let lock = dir.join(LOCK_FILE_NAME);
    if let Some(cmd) = python_lock_fix(dir) {
        return (
            Target::Unavailable(format!(
                "cannot use the backup: {} names a .dbak file of the Python backup plugin, not a cln-backup store; \
                 stop the node and run `{cmd}`, which imports it, checks it and points backup.lock at the new store",
                lock.display()
            )),
            Vec::new(),
        );
    }
    let entries = match lockfile::read_lock(dir) {
        Ok(entries) => entries,
        Err(e) => return (Target::Unavailable(format!("cannot use the backup: {e}; {fix}")), Vec::new()),
    };
    match open_plan(dir, &entries) {
        Ok(plan) => (Target::Destinations(plan), entries),
        Err(why) => (Target::Unavailable(why), entries),
    }
}

/// Open every entry: the local store first (the primary), then the others
/// on its behalf; async ones get a replica thread.
fn open_plan(dir: &Path, entries: &[Entry]) -> Result<Plan, String> {
    let lock = dir.join(LOCK_FILE_NAME);
    let mut plan = Plan::default();
    for (i, entry) in entries.iter().enumerate() {
        // The first entry, when a local store, is the primary (the lock's rules).
        let local = i == 0 && matches!(destination::parse(Path::new(&entry.url)), Ok(Location::File(_)));
        let owner = plan.primary.as_ref().and_then(|p| p.local_store()).map(Store::id);
        if entry.mode == Mode::Async {
            // Opened by its replica thread, and again after each failure: an
            // async destination that is down never stops the node.
            let Some(primary) = plan.primary.clone() else {
                return Err(format!(
                    "{}: {}: an async destination needs a local store listed first",
                    lock.display(),
                    entry.url
                ));
            };
            let for_open = entry.clone();
            let open = Box::new(move || destination::open_entry(&for_open, Access::Write, owner));
            let replica = AsyncReplica::start_opening(primary, entry.url.clone(), open, ReplicaOptions::default())
                .map_err(|e| format!("cannot start the async backup listed in {}: {e}", lock.display()))?;
            plan.replicas.push(Arc::new(replica));
            continue;
        }
        let dest: Arc<dyn Destination> = match destination::open_entry(entry, Access::Write, owner) {
            Ok(dest) => Arc::from(dest),
            Err(e) if local => {
                // backup.lock names a store: making a new one (init) is not
                // the fix, and init would refuse anyway while the lock exists.
                let store = destination::local_path(Path::new(&entry.url)).unwrap_or_else(|_| entry.url.clone().into());
                return Err(format!("cannot open the backup: {e}{}", open_hint(&e, &store, dir)));
            }
            Err(e) => {
                let named = if e.to_string().contains(&entry.url) { String::new() } else { format!("{}: ", entry.url) };
                return Err(format!(
                    "cannot open the backup destination listed in {}: {named}{e}; it is sync, so the node stops \
                     rather than run without it: fix it, or make it async or remove it from the lock with the node \
                     stopped",
                    lock.display()
                ));
            }
        };
        if local {
            plan.primary = Some(dest);
        } else {
            plan.sync.push(dest);
        }
    }
    Ok(plan)
}

/// What to do about a store backup.lock names that would not open.
fn open_hint(err: &cln_backup::Error, store: &Path, dir: &Path) -> String {
    match err {
        // The message says what to do.
        cln_backup::Error::StoreLocked { .. } => String::new(),
        cln_backup::Error::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => format!(
            "; the store must belong to the user lightningd runs as (the owner of {}): stop the node and chown it",
            dir.display()
        ),
        _ => format!("; stop the node and run `cln-backup verify {}` to see what is wrong with it", shell_word(store)),
    }
}

/// Run as a plugin on stdin/stdout until lightningd closes the pipe.
///
/// `db_write` calls are answered on a thread of their own with blocking I/O:
/// read, store durably, answer, with no hand-over between threads on the
/// way. That thread owns the hook's state. Everything else goes to
/// cln-plugin on the async runtime.
pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::current_dir().context("reading the working directory")?;
    let (target, entries) = open_target(&dir);
    let state = match &target {
        Target::Destinations(plan) => {
            State { plan: plan.clone(), entries, problem: None, compaction: Default::default() }
        }
        Target::Unavailable(why) => {
            State { plan: Plan::default(), entries, problem: Some(why.clone()), compaction: Default::default() }
        }
    };
    let replicas = state.plan.replicas.clone();
    let mut hook = DbWrite::new(target);
    let out = Out::new(std::io::stdout());
    let mut trigger = Trigger::new(state.clone(), out.clone());

    let (mut to_plugin, plugin_in) = tokio::io::duplex(1 << 20);
    let (plugin_out, from_plugin) = tokio::io::duplex(1 << 20);
    tokio::spawn(wire::forward_plugin_output(from_plugin, out.clone()));
    let (pass_tx, mut pass_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let passer = tokio::spawn(async move {
        while let Some(mut msg) = pass_rx.recv().await {
            msg.extend_from_slice(b"\n\n");
            if to_plugin.write_all(&msg).await.is_err() {
                break;
            }
        }
    });

    let builder = cln_plugin::Builder::new(plugin_in, plugin_out)
        .option(DEPRECATED_DESTINATION)
        .option(AFTER_CHANGES_OPTION)
        .option(AFTER_RATIO_OPTION)
        .option(KEEP_SNAPSHOTS_OPTION)
        .option(KEEP_MAX_AGE_OPTION)
        .option(IO_RATE_OPTION)
        // Registered so that lightningd sends db_write. The wire layer answers
        // every call before cln-plugin could see it (see ARCHITECTURE.md), so
        // this handler never runs; were it reached, it refuses, and
        // lightningd stops without committing.
        .hook("db_write", |_p, _req: Value| async move {
            anyhow::bail!(
                "cln-backup: a db_write call reached the plugin framework instead of the wire layer; refusing it"
            )
        })
        .rpcmethod(
            "backup-status",
            "Show the backup's versions, size, snapshots and compaction (policy, next, last), and where each \
             destination stands",
            |p: cln_plugin::Plugin<State>, _req| async move {
                let st: State = p.state().clone();
                tokio::task::spawn_blocking(move || status(&st)).await?
            },
        )
        .rpcmethod(
            "backup-compact",
            "Fold old changes into a new snapshot (after any compaction running ends); returns statistics",
            |p, _req| async move {
                let st: State = p.state().clone();
                tokio::task::spawn_blocking(move || compact(&st)).await?
            },
        );

    let plugin_task = tokio::spawn(async move {
        let plugin = match builder.start(state).await {
            Ok(Some(p)) => p,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        if let Ok(Some(value)) = plugin.option_str("backup-destination") {
            tracing::warn!(
                "option backup-destination ({}) is deprecated and unused: the store is named in backup.lock",
                value.as_str().unwrap_or("?")
            );
        }
        plugin.join().await
    });

    let reader = std::thread::Builder::new()
        .name("db_write".into())
        .spawn(move || {
            let served = serve(std::io::stdin().lock(), &mut hook, &out, &pass_tx, &mut trigger);
            // lightningd is stopping: let an automatic compaction running
            // end (lightningd kills a plugin that takes too long, which the
            // store survives as a crash).
            trigger.finish();
            served
        })
        .context("starting the db_write thread")?;
    // The thread ends when lightningd closes the pipe: it is stopping, and
    // every stored change is already durable.
    let result = tokio::task::spawn_blocking(move || reader.join())
        .await
        .context("waiting for the db_write thread")?
        .map_err(|_| anyhow::anyhow!("the db_write thread panicked"))?;
    // lightningd is stopping: give each healthy async destination what it
    // still lacks (a failing one is left to its next start's catch-up).
    for replica in &replicas {
        if !replica.flush() {
            tracing::warn!("async backup {} was not brought up to date before stopping", replica.location());
        }
    }
    passer.abort();
    plugin_task.abort();
    result
}

/// Read lightningd's messages until end of input: answer `db_write` calls,
/// read the options `init` carries, pass everything else on.
///
/// Decision: an option value that is refused makes this thread answer
/// `init` with an error naming it (logged at `broken`), then refuse every
/// later `db_write` and RPC call with the same message, so the node stops at
/// its next write without committing it. It does not answer `disable`:
/// lightningd then drops the plugin's `important` mark and carries on with
/// no backup (see SPEC.md, section 1).
fn serve(
    input: impl std::io::Read,
    hook: &mut DbWrite,
    out: &Out,
    pass: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    trigger: &mut Trigger,
) -> anyhow::Result<()> {
    let mut input = wire::Framer::new(input);
    let mut refused: Option<String> = None;
    while let Some(msg) = input.next().context("reading from lightningd")? {
        match wire::classify(&msg) {
            Incoming::DbWrite(call) => {
                if let Some(why) = &refused {
                    let log = wire::log_notification("broken", why);
                    let answer = wire::error_response(&call.id, why);
                    out.send_all(&[&log, &answer]).context("answering lightningd")?;
                    continue;
                }
                let outcome = hook.handle(call.data_version, &call.writes);
                match (&outcome.answer, outcome.logs.is_empty()) {
                    (Ok(()), true) => out.send_continue(&call.id),
                    _ => answer_with_logs(out, &call.id, &outcome),
                }
                .context("answering lightningd")?;
                if outcome.answer.is_ok() {
                    // After the answer is written: lightningd is not kept waiting.
                    trigger.after_write();
                }
            }
            Incoming::BadDbWrite { id, error } => {
                let log = wire::log_notification("error", &error);
                let answer = wire::error_response(&id, &error);
                out.send_all(&[&log, &answer]).context("answering lightningd")?;
            }
            Incoming::Other => {
                if let Some(why) = &refused {
                    if let Some(id) = request_id(&msg) {
                        out.send_raw(&wire::error_response(&id, why)).context("answering lightningd")?;
                    }
                    continue;
                }
                if let Some((id, options)) = init_call(&msg) {
                    match Settings::from_options(&options) {
                        Ok(settings) => {
                            // Set once: a second init (there is none) keeps the first.
                            let _ = trigger.state.compaction.settings.set(settings);
                        }
                        Err(why) => {
                            let log = wire::log_notification("broken", &why);
                            let answer = wire::error_response(&id, &why);
                            out.send_all(&[&log, &answer]).context("answering lightningd")?;
                            refused = Some(why);
                            continue;
                        }
                    }
                }
                if pass.send(msg).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
}

/// The id (JSON text) and options of an `init` call, when `msg` is one.
fn init_call(msg: &[u8]) -> Option<(String, serde_json::Map<String, Value>)> {
    // Cheap test first: most messages passed on are RPC calls.
    if !msg.windows(6).any(|w| w == b"\"init\"") {
        return None;
    }
    let v: Value = serde_json::from_slice(msg).ok()?;
    if v.get("method").and_then(Value::as_str) != Some("init") {
        return None;
    }
    let id = v.get("id")?.to_string();
    let options = v.get("params").and_then(|p| p.get("options")).and_then(Value::as_object).cloned();
    Some((id, options.unwrap_or_default()))
}

/// The id (JSON text) of a request in `msg`; `None` for a notification.
fn request_id(msg: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(msg).ok()?;
    v.get("method")?;
    v.get("id").filter(|id| !id.is_null()).map(Value::to_string)
}

/// The automatic compaction trigger, owned by the `db_write` thread.
///
/// Decision: the per-write check reads [`Store::since_snapshot`] only; the
/// newest snapshot's figures (which the ratio needs) come from a
/// [`Status`] read once and again only after a compaction ended, so no
/// write pays for the file's length.
struct Trigger {
    state: State,
    out: Out,
    /// The status last read, its change figures refreshed on each check.
    status: Option<Status>,
    /// `Compaction::ended` when `status` was read.
    read_at_end: u64,
    /// Changes since the snapshot at the last check: fewer now means a
    /// new snapshot.
    last_changes: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Trigger {
    fn new(state: State, out: Out) -> Trigger {
        Trigger { state, out, status: None, read_at_end: 0, last_changes: 0, thread: None }
    }

    /// After a stored write: start an automatic compaction when the policy
    /// says one is due and none is running.
    fn after_write(&mut self) {
        let compaction = Arc::clone(&self.state.compaction);
        let Some(settings) = compaction.settings.get() else { return };
        if !settings.policy.is_on() || compaction.auto_running.load(Ordering::Acquire) {
            return;
        }
        let Ok(store) = self.state.store() else { return };
        if store.is_compacting() || !compaction.may_start() {
            return;
        }
        let (changes, bytes) = store.since_snapshot();
        let ended = compaction.ended.load(Ordering::Acquire);
        if self.status.is_none() || ended != self.read_at_end || changes < self.last_changes {
            self.status = store.status().ok();
            self.read_at_end = ended;
        }
        self.last_changes = changes;
        let Some(status) = self.status.as_mut() else { return };
        status.changes_since_snapshot = changes;
        status.bytes_since_snapshot = bytes;
        let Some(reason) = settings.policy.next(status).due else { return };
        self.start(reason);
    }

    fn start(&mut self, reason: String) {
        if let Some(done) = self.thread.take() {
            // Ended already: auto_running was false.
            let _ = done.join();
        }
        self.state.compaction.auto_running.store(true, Ordering::Release);
        let (st, out) = (self.state.clone(), self.out.clone());
        let started =
            std::thread::Builder::new().name("compaction".into()).spawn(move || auto_compact(&st, &out, &reason));
        match started {
            Ok(handle) => self.thread = Some(handle),
            Err(e) => {
                self.state.compaction.auto_running.store(false, Ordering::Release);
                self.state.compaction.retry_later();
                log(&self.out, "broken", &format!("cannot start an automatic compaction thread: {e}"));
            }
        }
    }

    /// Wait for an automatic compaction running to end.
    fn finish(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Clears `auto_running` when the automatic compaction ends, whatever way.
struct Running<'a>(&'a Compaction);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.auto_running.store(false, Ordering::Release);
    }
}

/// One log notification to lightningd (lost if the pipe is closed: the
/// node is stopping).
fn log(out: &Out, level: &str, message: &str) {
    let _ = out.send_raw(&wire::log_notification(level, message));
}

/// An automatic compaction, on its own thread: [`compact`], logged.
///
/// Decision: a skip (an async destination does not hold the head) is
/// logged at `unusual` and a failure at `broken`; either way the next try
/// waits [`RETRY_AFTER`], and the node and its writes go on.
fn auto_compact(st: &State, out: &Out, reason: &str) {
    let _running = Running(&st.compaction);
    let path = st.store().map(|s| s.path().display().to_string()).unwrap_or_default();
    log(out, "info", &format!("Automatic compaction of {path} started: {reason}"));
    match compact(st) {
        Ok(stats) => {
            if stats.get("compacted") == Some(&Value::Bool(false)) {
                // Nothing was folded: not again at the next write.
                st.compaction.retry_later();
            }
            log(out, "info", &format!("Automatic compaction of {path} done: {}", describe(&stats)));
        }
        Err(e) if e.downcast_ref::<ReplicaBehind>().is_some() => {
            st.compaction.retry_later();
            log(out, "unusual", &format!("Automatic compaction skipped, tried again in a minute at the earliest: {e}"));
        }
        Err(e) => {
            st.compaction.retry_later();
            log(
                out,
                "broken",
                &format!(
                    "Automatic compaction of {path} failed (the backup goes on; tried again in a minute at the \
                     earliest): {e:#}"
                ),
            );
        }
    }
}

/// A compaction's statistics in one line.
fn describe(stats: &Value) -> String {
    let field = |name: &str| stats.get(name).map_or_else(|| "?".to_string(), Value::to_string);
    if stats.get("compacted") == Some(&Value::Bool(false)) {
        return "nothing to fold".into();
    }
    format!(
        "snapshot at version {}, snapshots kept {} ({} dropped), change records {} -> {}, file bytes {} -> {} ({} \
         in use), waited {} ms, took {} ms",
        field("snapshot_version"),
        field("snapshots_kept"),
        field("snapshots_dropped"),
        field("changes_before"),
        field("changes_after"),
        field("bytes_before"),
        field("bytes_after"),
        field("bytes_in_use"),
        field("waited_ms"),
        field("duration_ms"),
    )
}

/// The log lines of `outcome`, then its answer, in one write.
fn answer_with_logs(out: &Out, id: &str, outcome: &hook::Outcome) -> std::io::Result<()> {
    let mut msgs: Vec<Vec<u8>> =
        outcome.logs.iter().map(|l| wire::log_notification(l.level.as_str(), &l.message)).collect();
    msgs.push(match &outcome.answer {
        Ok(()) => wire::continue_response(id),
        Err(message) => wire::error_response(id, message),
    });
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    out.send_all(&refs)
}

/// The local store's figures (when there is one) and one entry per
/// destination: URL (without credentials), kind, mode, head, lag in
/// changes and seconds, last error.
fn status(st: &State) -> anyhow::Result<Value> {
    let mut out = match st.store() {
        Ok(store) => {
            let s = store.status()?;
            let (from_time, to_time) = restorable_times(store, s.restorable);
            json!({
                "version": s.version,
                "prev_version": s.prev_version,
                "changes_since_snapshot": s.changes,
                "snapshot_version": s.snapshot.as_ref().map(|x| x.version),
                "store_bytes": s.file_bytes,
                "last_compaction": s.last_compaction,
                "store": s.path,
                "restorable": {
                    "from": cln_backup::version::data_version(s.restorable.0),
                    "to": s.version,
                    "from_time": from_time,
                    "to_time": to_time,
                },
                "compaction": compaction_status(st, &s),
                "snapshots": s.snapshots.iter().map(|x| json!({
                    "version": x.version,
                    "time": cli_time(x.created_ms),
                    "version_time": known_time(x.version_time_ms),
                    "size": x.size,
                    "stored_bytes": x.stored_bytes,
                })).collect::<Vec<_>>(),
            })
        }
        Err(e) if st.plan.sync.is_empty() => return Err(e),
        Err(_) => json!({}),
    };
    let primary_head = st.store().ok().map(Store::head);
    let mut list = Vec::new();
    let mut replicas = st.plan.replicas.iter();
    for (entry, dest) in st.entries.iter().zip(destinations_in_order(&st.plan, &st.entries)) {
        let kind = destination::parse(Path::new(&entry.url)).map(|l| destination::kind(&l)).unwrap_or("unknown");
        let mut item = json!({"url": redact(&entry.url), "kind": kind, "mode": entry.mode.as_str()});
        match (entry.mode, dest) {
            (Mode::Async, _) => {
                let Some(replica) = replicas.next() else { continue };
                let s = replica.status();
                item["head"] = json!(s.head);
                item["lag_changes"] = json!(s.lag_changes);
                item["lag_seconds"] = json!(s.lag_seconds);
                item["last_error"] = json!(s.last_error);
                item["last_error_time"] = json!(s.last_error_ms.map(cli_time));
                item["last_success_time"] = json!(s.last_success_ms.map(cli_time));
            }
            (Mode::Sync, Some(dest)) => match dest.head() {
                Ok(head) => {
                    let lag = primary_head
                        .map(|h| u64::from(cln_backup::version::data_version(h).wrapping_sub(head.version)));
                    item["head"] = json!(head.version);
                    item["lag_changes"] = json!(lag.unwrap_or(0));
                    item["lag_seconds"] = json!(0);
                    item["last_error"] = Value::Null;
                }
                Err(e) => {
                    item["head"] = Value::Null;
                    item["last_error"] = json!(e.to_string());
                }
            },
            (Mode::Sync, None) => item["last_error"] = json!(st.problem),
        }
        list.push(item);
    }
    out["destinations"] = Value::Array(list);
    Ok(out)
}

/// The `compaction` object of `backup-status`: the policy, whether one is
/// running, what is left before the next, and the last.
fn compaction_status(st: &State, s: &Status) -> Value {
    let settings = st.compaction.settings();
    let next = settings.policy.next(s);
    json!({
        "policy": settings.to_json(),
        "running": s.compacting || st.compaction.auto_running.load(Ordering::Acquire),
        "changes_since_snapshot": s.changes_since_snapshot,
        "bytes_since_snapshot": s.bytes_since_snapshot,
        "next": {"due": next.due, "changes_left": next.changes_left, "bytes_left": next.bytes_left},
        "last": s.last_compaction,
    })
}

/// When the store received the oldest and the newest version a restore
/// can reach (ISO 8601; `null` where not recorded, as after an import).
fn restorable_times(store: &Store, (from, to): (cln_backup::version::Seq, cln_backup::version::Seq)) -> (Value, Value) {
    let Ok(reader) = store.reader() else { return (Value::Null, Value::Null) };
    let at = |seq| reader.time_of(seq).map_or(Value::Null, known_time);
    (at(from), at(to))
}

/// An ISO 8601 time, or `null` for a time not recorded.
fn known_time(ms: u64) -> Value {
    if ms == cln_backup::TIME_NOT_RECORDED {
        Value::Null
    } else {
        json!(cli_time(ms))
    }
}

/// The sync destinations of `plan` in the order of `entries` (the primary
/// first); `None` for async entries and for entries not opened.
fn destinations_in_order<'a>(plan: &'a Plan, entries: &[Entry]) -> Vec<Option<&'a Arc<dyn Destination>>> {
    let mut sync = plan.primary.iter().chain(&plan.sync);
    entries.iter().map(|e| if e.mode == Mode::Sync { sync.next() } else { None }).collect()
}

/// An ISO 8601 UTC time for `backup-status`.
fn cli_time(ms: u64) -> String {
    cln_backup::utc_iso8601(ms, false)
}

/// A URL as status shows it: any `user:password@` part taken out.
fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, path) = rest.split_once('/').map_or((rest, ""), |(a, p)| (a, p));
        if let Some((_, host)) = authority.rsplit_once('@') {
            let slash = if rest.contains('/') { "/" } else { "" };
            return format!("{scheme}://***@{host}{slash}{path}");
        }
    }
    url.to_string()
}

/// Why a compaction did not start: an async destination does not hold the
/// head.
#[derive(Debug)]
struct ReplicaBehind(String);

impl std::fmt::Display for ReplicaBehind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ReplicaBehind {}

/// Compact the local store, once every async destination holds its head:
/// one left behind the new snapshot could only be caught up by a
/// destination that takes a snapshot over its log, which a local store
/// does not. Sync destinations hold the head already. The snapshots kept
/// are those the options say. A compaction already running (automatic or
/// another call) is waited for by the store; `waited_ms` says how long.
/// `backup-compact` and the automatic compaction both run this.
///
/// A backup server (`socket:`) compacts its own store when asked: with no
/// local store, `backup-compact` returns the server's statistics, as the
/// Python plugin did; beside a local store, each server is asked after the
/// local compaction and its answer (or error) is listed under `servers`.
fn compact(st: &State) -> anyhow::Result<Value> {
    if st.plan.primary.is_none() {
        if let Some(answer) = st.plan.sync.iter().find_map(|d| d.compact_remote()) {
            return Ok(answer?);
        }
    }
    let store = st.store()?;
    for replica in &st.plan.replicas {
        if !replica.flush() {
            let why = replica.status().last_error.unwrap_or_else(|| "it is behind".into());
            return Err(ReplicaBehind(format!(
                "not compacting {}: the async backup {} is not up to date ({why}); a compaction now would leave \
                 it behind the new snapshot; fix it first, or remove it from backup.lock with the node stopped",
                store.path().display(),
                replica.location()
            ))
            .into());
        }
    }
    let settings = st.compaction.settings();
    let opts =
        cln_backup::compact::Options { retention: settings.retention, io_rate: settings.io_rate, ..Default::default() };
    let result = cln_backup::compact::compact(store, &opts);
    st.compaction.ended.fetch_add(1, Ordering::AcqRel);
    let mut value = serde_json::to_value(result?)?;
    let servers: Vec<Value> = st
        .plan
        .sync
        .iter()
        .filter_map(|d| {
            d.compact_remote().map(|answer| match answer {
                Ok(stats) => json!({"url": d.location(), "stats": stats}),
                Err(e) => json!({"url": d.location(), "error": e.to_string()}),
            })
        })
        .collect();
    if let (false, Some(map)) = (servers.is_empty(), value.as_object_mut()) {
        map.insert("servers".into(), Value::Array(servers));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cln_backup::version::bump_statement;

    fn options(v: Value) -> serde_json::Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn settings_from_options() {
        assert_eq!(Settings::from_options(&options(json!({}))).unwrap(), Settings::default());
        let s = Settings::from_options(&options(json!({
            "backup-compact-after-changes": "0",
            "backup-compact-after-ratio": " 0.5 ",
            "backup-keep-snapshots": 7,
            "backup-keep-max-age": "12h",
        })))
        .unwrap();
        assert_eq!((s.policy.after_changes, s.policy.after_ratio), (0, 0.5));
        assert_eq!(s.retention.keep_snapshots, 7);
        assert_eq!(s.retention.max_age, Some(Duration::from_secs(12 * 3600)));
        assert_eq!(s.max_age.as_deref(), Some("12h"));
        assert_eq!(Settings::from_options(&options(json!({"backup-keep-max-age": ""}))).unwrap().max_age, None);
        assert_eq!(Settings::from_options(&options(json!({"backup-compact-io-rate": 0}))).unwrap().io_rate, None);
        assert_eq!(
            Settings::from_options(&options(json!({"backup-compact-io-rate": "16"}))).unwrap().io_rate,
            Some(16 << 20)
        );

        for (name, value, shown) in [
            ("backup-keep-snapshots", json!(0), "backup-keep-snapshots=0"),
            ("backup-keep-snapshots", json!("many"), "backup-keep-snapshots=many"),
            ("backup-compact-after-changes", json!(-1), "backup-compact-after-changes=-1"),
            ("backup-compact-after-ratio", json!("abc"), "backup-compact-after-ratio=abc"),
            ("backup-compact-after-ratio", json!("-1"), "backup-compact-after-ratio=-1"),
            ("backup-compact-after-ratio", json!("NaN"), "backup-compact-after-ratio=NaN"),
            ("backup-keep-max-age", json!("30x"), "backup-keep-max-age=30x"),
            ("backup-compact-io-rate", json!(-5), "backup-compact-io-rate=-5"),
        ] {
            let err = Settings::from_options(&options(json!({ name: value }))).unwrap_err();
            assert!(err.contains(shown), "{err}");
        }
    }

    /// Collects what the plugin writes to lightningd.
    #[derive(Clone, Default)]
    struct Written(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Written {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn messages(written: &Written) -> Vec<Value> {
        let bytes = written.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .split("\n\n")
            .filter(|m| !m.trim().is_empty())
            .map(|m| serde_json::from_str(m).unwrap())
            .collect()
    }

    fn call(id: &str, method: &str, params: Value) -> String {
        format!("{}\n\n", json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
    }

    fn serve_input(input: &str) -> (Vec<Value>, Vec<Vec<u8>>, Arc<Compaction>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path().join("s.redb")).unwrap();
        let dest: Arc<dyn Destination> = Arc::new(cln_backup::destination::FileDestination::new(store));
        let plan = Plan { primary: Some(dest), sync: Vec::new(), replicas: Vec::new() };
        let state = State { plan: plan.clone(), entries: Vec::new(), problem: None, compaction: Default::default() };
        let written = Written::default();
        let out = Out::new(written.clone());
        let mut hook = DbWrite::new(Target::Destinations(plan));
        let mut trigger = Trigger::new(state.clone(), out.clone());
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        serve(input.as_bytes(), &mut hook, &out, &tx, &mut trigger).unwrap();
        trigger.finish();
        let mut passed = Vec::new();
        while let Ok(msg) = rx.try_recv() {
            passed.push(msg);
        }
        (messages(&written), passed, state.compaction)
    }

    /// The write at version `v`: the first makes `vars`, each later a table.
    fn write_params(v: u32) -> Value {
        let writes = if v == 1 {
            json!([
                "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
                "INSERT INTO vars VALUES ('data_version', 0)",
                bump_statement(1)
            ])
        } else {
            json!([format!("CREATE TABLE t{v} (x INTEGER)"), bump_statement(v)])
        };
        json!({"data_version": v, "writes": writes})
    }

    #[test]
    fn a_refused_option_refuses_init_and_every_later_write() {
        let input = [
            call("cln:db_write#1", "db_write", write_params(1)),
            call("cln:init#2", "init", json!({"options": {"backup-keep-snapshots": 0}, "configuration": {}})),
            call("cln:db_write#3", "db_write", write_params(2)),
            call("cln:backup-status#4", "backup-status", json!({})),
        ]
        .concat();
        let (answers, passed, compaction) = serve_input(&input);
        assert!(passed.is_empty(), "nothing reaches cln-plugin after a refused init");
        assert!(compaction.settings.get().is_none());
        let answer = |id: &str| answers.iter().find(|m| m["id"] == json!(id)).cloned().unwrap();
        assert_eq!(answer("cln:db_write#1")["result"], json!({"result": "continue"}), "before init: stored");
        for id in ["cln:init#2", "cln:db_write#3", "cln:backup-status#4"] {
            let message = answer(id)["error"]["message"].as_str().unwrap().to_string();
            assert!(message.contains("backup-keep-snapshots=0"), "{id}: {message}");
        }
        assert!(answers.iter().any(|m| m["method"] == "log" && m["params"]["level"] == "broken"));
    }

    #[test]
    fn a_good_init_is_passed_on_with_the_settings_set() {
        let input = [
            call("cln:db_write#1", "db_write", write_params(1)),
            call("cln:init#2", "init", json!({"options": {"backup-compact-after-changes": 2}, "configuration": {}})),
            call("cln:db_write#3", "db_write", write_params(2)),
            call("cln:db_write#4", "db_write", write_params(3)),
        ]
        .concat();
        let (answers, passed, compaction) = serve_input(&input);
        assert_eq!(passed.len(), 1, "init goes on to cln-plugin");
        assert_eq!(compaction.settings.get().unwrap().policy.after_changes, 2);
        let continues = answers.iter().filter(|m| m["result"] == json!({"result": "continue"})).count();
        assert_eq!(continues, 3, "{answers:?}");
        // Two changes in the store once init is read: an automatic compaction ran.
        let logs: Vec<&str> = answers.iter().filter_map(|m| m["params"]["message"].as_str()).collect();
        assert!(logs.iter().any(|l| l.contains("started")), "{logs:?}");
        assert!(logs.iter().any(|l| l.contains("done: snapshot at version")), "{logs:?}");
        let first_log = answers
            .iter()
            .position(|m| m["params"]["message"].as_str().is_some_and(|l| l.starts_with("Automatic compaction")))
            .unwrap();
        let due_at = answers.iter().position(|m| m["id"] == json!("cln:db_write#3")).unwrap();
        assert!(first_log > due_at, "the compaction starts after the answer to the write: {answers:?}");
        assert!(compaction.ended.load(Ordering::Acquire) >= 1);
    }
}
