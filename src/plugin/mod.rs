//! The lightningd plugin front end.
//!
//! Owns the plugin protocol: the manifest, the `db_write` hook, the RPC
//! methods `backup-status` and `backup-compact`, and the [`wire`] layer that
//! answers `db_write` calls, including those lightningd sends before `init`.
//! Decisions about each write live in [`hook`]; storage lives in the library.
//! It never makes RPC calls to lightningd: while a hook is pending the node
//! serves nothing else, so such a call would deadlock it.

pub mod hook;
pub mod wire;

use anyhow::Context;
use cln_backup::Store;
use cln_plugin::options::{ConfigOption, StringConfigOption};
use hook::{DbWrite, Target};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;
use wire::{Incoming, Out};

const DEPRECATED_DESTINATION: StringConfigOption =
    ConfigOption::new_str_no_default("backup-destination", "Deprecated and unused: the store is named in backup.lock");

/// State shared with the RPC handlers.
#[derive(Clone)]
struct State {
    store: Option<Arc<Store>>,
    problem: Option<String>,
}

/// Open the store named by `DIR/backup.lock`, or say what is wrong and what to run.
fn open_target(dir: &Path) -> Target {
    let fix = "run `cln-backup init --lightning-dir <network dir> <store path>` with the node stopped";
    match crate::lockfile::read(dir) {
        Err(e) => Target::Unavailable(format!("cannot use the backup: {e:#}; {fix}")),
        Ok(path) => match Store::open(&path) {
            Ok(store) => Target::Store(Arc::new(store)),
            Err(e) => Target::Unavailable(format!("cannot open the backup: {e}; {fix}")),
        },
    }
}

/// Run as a plugin on stdin/stdout until lightningd closes the pipe.
pub async fn run() -> anyhow::Result<()> {
    let dir = std::env::current_dir().context("reading the working directory")?;
    let target = open_target(&dir);
    let state = State {
        store: match &target {
            Target::Store(s) => Some(Arc::clone(s)),
            Target::Unavailable(_) => None,
        },
        problem: match &target {
            Target::Unavailable(why) => Some(why.clone()),
            Target::Store(_) => None,
        },
    };
    let hook = Arc::new(Mutex::new(DbWrite::new(target)));

    let (out, writer) = Out::spawn(tokio::io::stdout());
    let (mut to_plugin, plugin_in) = tokio::io::duplex(1 << 20);
    let (plugin_out, from_plugin) = tokio::io::duplex(1 << 20);
    tokio::spawn(wire::forward_plugin_output(from_plugin, out.clone()));

    let hook_for_plugin = Arc::clone(&hook);
    let builder = cln_plugin::Builder::new(plugin_in, plugin_out)
        .option(DEPRECATED_DESTINATION)
        // Registered so lightningd sends db_write; the wire layer answers every
        // call itself so that log lines precede answers and one path decides.
        .hook("db_write", move |_p, req: Value| {
            let hook = Arc::clone(&hook_for_plugin);
            async move {
                let call = match wire::classify(req.to_string().as_bytes()) {
                    Incoming::DbWrite(c) => c,
                    _ => anyhow::bail!("malformed db_write"),
                };
                let outcome =
                    tokio::task::spawn_blocking(move || lock(&hook).handle(call.data_version, &call.writes)).await?;
                outcome.answer.map_err(anyhow::Error::msg)?;
                Ok(json!({"result": "continue"}))
            }
        })
        .rpcmethod("backup-status", "Show the backup's versions, size and last compaction", |p, _req| async move {
            status(p.state())
        })
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

    let mut input = wire::Framer::new(tokio::io::stdin());
    while let Some(msg) = input.next().await.context("reading from lightningd")? {
        match wire::classify(&msg) {
            Incoming::DbWrite(call) => {
                let hook = Arc::clone(&hook);
                let (dv, writes) = (call.data_version, call.writes);
                let outcome = tokio::task::spawn_blocking(move || lock(&hook).handle(dv, &writes))
                    .await
                    .context("db_write handler")?;
                for line in &outcome.logs {
                    out.log(line.level.as_str(), &line.message).await;
                }
                match outcome.answer {
                    Ok(()) => out.send(&wire::continue_response(&call.id)).await,
                    Err(message) => out.send(&wire::error_response(&call.id, &message)).await,
                }
            }
            Incoming::BadDbWrite { id, error } => {
                out.log("error", &error).await;
                out.send(&wire::error_response(&id, &error)).await;
            }
            Incoming::Other => {
                let mut framed = msg;
                framed.extend_from_slice(b"\n\n");
                if to_plugin.write_all(&framed).await.is_err() {
                    break;
                }
            }
        }
    }
    // lightningd closed the pipe: it is stopping. Write what is queued and go;
    // every stored change is already durable.
    drop(to_plugin);
    out.flush().await;
    plugin_task.abort();
    writer.abort();
    Ok(())
}

fn lock(hook: &Mutex<DbWrite>) -> std::sync::MutexGuard<'_, DbWrite> {
    hook.lock().unwrap_or_else(|p| p.into_inner())
}

fn status(st: &State) -> anyhow::Result<Value> {
    let store = st.store.as_ref().ok_or_else(|| anyhow::anyhow!("{}", st.problem.clone().unwrap_or_default()))?;
    let s = store.status()?;
    Ok(json!({
        "version": s.version,
        "prev_version": s.prev_version,
        "changes_since_snapshot": s.changes,
        "snapshot_version": s.snapshot.as_ref().map(|x| x.version),
        "store_bytes": s.file_bytes,
        "last_compaction": s.last_compaction,
        "store": s.path,
        "restorable": {"from": cln_backup::version::data_version(s.restorable.0), "to": s.version},
    }))
}

fn compact(st: &State) -> anyhow::Result<Value> {
    let store = st.store.as_ref().ok_or_else(|| anyhow::anyhow!("{}", st.problem.clone().unwrap_or_default()))?;
    let stats = cln_backup::compact::compact(store, None)?;
    Ok(serde_json::to_value(stats)?)
}
