//! The lightningd plugin front end.
//!
//! Owns the plugin protocol: the manifest, the `db_write` hook, the RPC
//! methods `backup-status` and `backup-compact`, and the [`wire`] layer that
//! answers `db_write` calls, including those lightningd sends before `init`.
//! Decisions about each write live in [`hook`]; storage lives in the library.
//! A `backup.lock` left by the Python plugin (naming its `.dbak` file) is
//! refused with the exact `cln-backup import` command that moves the node
//! over. It never makes RPC calls to lightningd: while a hook is pending the node
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

/// When `DIR/backup.lock` names a `.dbak` file of the Python plugin, the
/// command that moves the node over to a store (`cln-backup import
/// --lightning-dir DIR OLD.dbak OLD.redb`, the store beside the old file).
pub fn python_lock_fix(dir: &Path) -> Option<String> {
    let dbak = crate::lockfile::read(dir).ok()?;
    if !cln_backup::legacy::is_dbak(&dbak) {
        return None;
    }
    let store = if dbak.extension().is_some_and(|e| e == "dbak") {
        dbak.with_extension("redb")
    } else {
        cln_backup::atomic_file::with_suffix(&dbak, ".redb")
    };
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    Some(format!("cln-backup import --lightning-dir {} {} {}", shell_word(&dir), shell_word(&dbak), shell_word(&store)))
}

/// A path as one shell word: as it is when it needs no quoting, else in single quotes.
fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// Open the store named by `DIR/backup.lock`, or say what is wrong and what to run.
fn open_target(dir: &Path) -> Target {
    let fix = "run `cln-backup init --lightning-dir <network dir> <store path>` with the node stopped";
    if let Some(cmd) = python_lock_fix(dir) {
        return Target::Unavailable(format!(
            "cannot use the backup: {} names a .dbak file of the Python backup plugin, not a cln-backup store; \
             stop the node and run `{cmd}`, which imports it, checks it and points backup.lock at the new store",
            dir.join(crate::lockfile::LOCK_FILE_NAME).display()
        ));
    }
    match crate::lockfile::read(dir) {
        Err(e) => Target::Unavailable(format!("cannot use the backup: {e:#}; {fix}")),
        Ok(path) => match Store::open(&path) {
            Ok(store) => Target::Store(Arc::new(store)),
            // backup.lock names a store: making a new one (init) is not the
            // fix, and init would refuse anyway while the lock exists.
            Err(e) => Target::Unavailable(format!("cannot open the backup: {e}{}", open_hint(&e, &path, dir))),
        },
    }
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
/// read, store durably, answer, with no hand-over between threads on the way.
/// Everything else goes to cln-plugin on the async runtime.
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

    let hook_for_plugin = Arc::clone(&hook);
    let builder = cln_plugin::Builder::new(plugin_in, plugin_out)
        .option(DEPRECATED_DESTINATION)
        // Registered so lightningd sends db_write; the wire layer answers every
        // call itself (see ARCHITECTURE.md), so this runs only if a call ever
        // reaches cln-plugin, and then decides the same way.
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

    let reader = std::thread::Builder::new()
        .name("db_write".into())
        .spawn(move || serve(std::io::stdin().lock(), &hook, &out, &pass_tx))
        .context("starting the db_write thread")?;
    // The thread ends when lightningd closes the pipe: it is stopping, and
    // every stored change is already durable.
    let result = tokio::task::spawn_blocking(move || reader.join())
        .await
        .context("waiting for the db_write thread")?
        .map_err(|_| anyhow::anyhow!("the db_write thread panicked"))?;
    passer.abort();
    plugin_task.abort();
    result
}

/// Read lightningd's messages until end of input: answer `db_write` calls,
/// pass everything else on.
fn serve(
    input: impl std::io::Read,
    hook: &Mutex<DbWrite>,
    out: &Out,
    pass: &tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
) -> anyhow::Result<()> {
    let mut input = wire::Framer::new(input);
    while let Some(msg) = input.next().context("reading from lightningd")? {
        match wire::classify(&msg) {
            Incoming::DbWrite(call) => {
                let outcome = lock(hook).handle(call.data_version, &call.writes);
                let mut msgs: Vec<Vec<u8>> =
                    outcome.logs.iter().map(|l| wire::log_notification(l.level.as_str(), &l.message)).collect();
                let answer = match &outcome.answer {
                    Ok(()) => wire::continue_response(&call.id),
                    Err(message) => wire::error_response(&call.id, message),
                };
                msgs.push(answer.to_string().into_bytes());
                let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
                out.send_all(&refs).context("answering lightningd")?;
            }
            Incoming::BadDbWrite { id, error } => {
                let log = wire::log_notification("error", &error);
                let answer = wire::error_response(&id, &error).to_string().into_bytes();
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
