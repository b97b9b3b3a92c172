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

pub mod hook;
pub mod wire;

use crate::cli::handover::{python_lock_fix, shell_word};
use anyhow::Context;
use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
use cln_backup::destination::{self, Access, Destination, Location};
use cln_backup::lockfile::{self, Entry, Mode, LOCK_FILE_NAME};
use cln_backup::Store;
use cln_plugin::options::{ConfigOption, StringConfigOption};
use hook::{DbWrite, Plan, Target};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use wire::{Incoming, Out};

const DEPRECATED_DESTINATION: StringConfigOption =
    ConfigOption::new_str_no_default("backup-destination", "Deprecated and unused: the store is named in backup.lock");

/// State shared with the RPC handlers.
#[derive(Clone)]
struct State {
    plan: Plan,
    /// The lock's entries, in order, for `backup-status`.
    entries: Vec<Entry>,
    problem: Option<String>,
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
        Target::Destinations(plan) => State { plan: plan.clone(), entries, problem: None },
        Target::Unavailable(why) => State { plan: Plan::default(), entries, problem: Some(why.clone()) },
    };
    let replicas = state.plan.replicas.clone();
    let mut hook = DbWrite::new(target);
    let out = Out::new(std::io::stdout());

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
            "Show the backup's versions, size and last compaction, and where each destination stands",
            |p: cln_plugin::Plugin<State>, _req| async move {
                let st: State = p.state().clone();
                tokio::task::spawn_blocking(move || status(&st)).await?
            },
        )
        .rpcmethod(
            "backup-compact",
            "Fold old changes into a new snapshot; returns statistics",
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
        .spawn(move || serve(std::io::stdin().lock(), &mut hook, &out, &pass_tx))
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
/// pass everything else on.
fn serve(
    input: impl std::io::Read,
    hook: &mut DbWrite,
    out: &Out,
    pass: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut input = wire::Framer::new(input);
    while let Some(msg) = input.next().context("reading from lightningd")? {
        match wire::classify(&msg) {
            Incoming::DbWrite(call) => {
                let outcome = hook.handle(call.data_version, &call.writes);
                match (&outcome.answer, outcome.logs.is_empty()) {
                    (Ok(()), true) => out.send_continue(&call.id),
                    _ => answer_with_logs(out, &call.id, &outcome),
                }
                .context("answering lightningd")?;
            }
            Incoming::BadDbWrite { id, error } => {
                let log = wire::log_notification("error", &error);
                let answer = wire::error_response(&id, &error);
                out.send_all(&[&log, &answer]).context("answering lightningd")?;
            }
            Incoming::Other => {
                if pass.send(msg).is_err() {
                    break;
                }
            }
        }
    }
    Ok(())
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
            json!({
                "version": s.version,
                "prev_version": s.prev_version,
                "changes_since_snapshot": s.changes,
                "snapshot_version": s.snapshot.as_ref().map(|x| x.version),
                "store_bytes": s.file_bytes,
                "last_compaction": s.last_compaction,
                "store": s.path,
                "restorable": {"from": cln_backup::version::data_version(s.restorable.0), "to": s.version},
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

/// Compact the local store, once every async destination holds its head:
/// one left behind the new snapshot could only be caught up by a
/// destination that takes a snapshot over its log, which a local store
/// does not. Sync destinations hold the head already.
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
            anyhow::bail!(
                "not compacting {}: the async backup {} is not up to date ({why}); a compaction now would leave \
                 it behind the new snapshot; fix it first, or remove it from backup.lock with the node stopped",
                store.path().display(),
                replica.location()
            );
        }
    }
    let stats = cln_backup::compact::compact(store, &Default::default())?;
    let mut value = serde_json::to_value(stats)?;
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
