//! The `server` subcommand's running part: listening, one connection at a
//! time, signals, logging.
//!
//! Owns the listening socket (loopback unless remote listening was asked
//! for), the order of clients (one served, the rest waiting, in the order
//! they came), the token file, and a clean stop on SIGINT or SIGTERM. It
//! must not interpret packets: `cln_backup::destination::serve_connection`
//! answers each connection over the store.
//!
//! While a connection is quiet, the server accepts the clients that came
//! meanwhile (they wait, unanswered, in a queue) so that it can tell the
//! library one waits: a connection quiet for `--yield-after` is then closed
//! and the next client served. A vanished client (a node that lost power)
//! thus holds the server only until its node comes back.
//!
//! A stop signal shuts the current connection down: a change being stored
//! completes (the store's write is one transaction) but is not
//! acknowledged, so the client asks again after reconnecting and finds it
//! there. The store is then dropped, which closes it.

use anyhow::{anyhow, bail, Context, Result};
use cln_backup::destination::{serve_connection, ServeOptions};
use cln_backup::Store;
use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the accept loop looks for a stop signal while no client is
/// connected.
const ACCEPT_POLL: Duration = Duration::from_millis(100);

/// What `cln-backup server` was asked.
#[derive(Debug)]
pub struct Config {
    pub listen: String,
    pub allow_remote: bool,
    pub token_file: Option<PathBuf>,
    pub yield_after: Duration,
    pub store: PathBuf,
}

/// Clients accepted while another was served, in the order they came.
type Queue = Arc<Mutex<VecDeque<(TcpStream, SocketAddr)>>>;

/// Accept every client waiting on `listener` into `queue`.
fn accept_waiting(listener: &TcpListener, queue: &Queue) {
    loop {
        match listener.accept() {
            Ok(c) => lock(queue).push_back(c),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!("accepting a connection failed: {e}");
                return;
            }
        }
    }
}

/// Serve until a stop signal.
pub fn run(config: Config) -> Result<()> {
    let addrs = listen_addresses(&config.listen, config.allow_remote)?;
    let token = match &config.token_file {
        Some(path) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("{}: cannot read the token file", path.display()))?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                bail!("{}: the token file is empty", path.display());
            }
            Some(bytes)
        }
        None => None,
    };
    if !config.store.exists() {
        bail!(
            "{}: no store there; create it with `cln-backup init {}`",
            config.store.display(),
            config.store.display()
        );
    }
    let store = Store::open(&config.store)?;
    let listener = TcpListener::bind(&addrs[..]).with_context(|| format!("{}: cannot listen", config.listen))?;
    let local = listener.local_addr().with_context(|| format!("{}: cannot listen", config.listen))?;
    listener.set_nonblocking(true).with_context(|| format!("{local}: cannot listen"))?;
    let listener = Arc::new(listener);

    let stop = Arc::new(AtomicBool::new(false));
    let current: Arc<Mutex<Option<TcpStream>>> = Arc::new(Mutex::new(None));
    watch_signals(stop.clone(), current.clone())?;

    let queue: Queue = Arc::new(Mutex::new(VecDeque::new()));
    let mut options = ServeOptions::new();
    options.token = token;
    options.yield_after = config.yield_after;
    options.others_waiting = Some({
        let (listener, queue) = (listener.clone(), queue.clone());
        Arc::new(move || {
            accept_waiting(&listener, &queue);
            !lock(&queue).is_empty()
        })
    });
    tracing::info!(
        "serving {} on {local}{}",
        config.store.display(),
        if options.token.is_some() { " (token required)" } else { "" }
    );
    // The address on stdout, once ready: what scripts and tests wait for.
    let mut out = std::io::stdout();
    writeln!(out, "listening on {local}").and_then(|()| out.flush()).context("stdout")?;

    while !stop.load(Ordering::SeqCst) {
        let next = lock(&queue).pop_front();
        let (stream, peer) = match next {
            Some(c) => c,
            None => match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                }
                Err(e) => {
                    tracing::warn!("accepting a connection failed: {e}");
                    std::thread::sleep(ACCEPT_POLL);
                    continue;
                }
            },
        };
        if stream.set_nonblocking(false).is_err() {
            continue;
        }
        tracing::info!("connection from {peer}");
        if let Ok(clone) = stream.try_clone() {
            *lock(&current) = Some(clone);
        }
        // A signal that arrived between the check above and here.
        if stop.load(Ordering::SeqCst) {
            break;
        }
        match serve_connection(&store, &stream, &options) {
            Ok(served) => tracing::info!(
                "connection from {peer} closed{}: {} changes, {} snapshots, {} rewinds, {} restores, {} refused",
                if served.idle { " (quiet while another client waited)" } else { "" },
                served.changes,
                served.snapshots,
                served.rewinds,
                served.restores,
                served.refused
            ),
            Err(e) if stop.load(Ordering::SeqCst) => tracing::info!("connection from {peer} stopped: {e}"),
            Err(e) => tracing::warn!("connection from {peer} refused and closed: {e}"),
        }
        *lock(&current) = None;
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    tracing::info!("stopping; closing {}", config.store.display());
    drop(store);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The addresses `listen` names; refused when one is not loopback and
/// remote listening was not allowed.
fn listen_addresses(listen: &str, allow_remote: bool) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| anyhow!("{listen}: not an address to listen on (IP:PORT, [IPv6]:PORT or host:port): {e}"))?
        .collect();
    if addrs.is_empty() {
        bail!("{listen}: names no address to listen on");
    }
    if !allow_remote {
        if let Some(remote) = addrs.iter().find(|a| !a.ip().is_loopback()) {
            bail!(
                "{listen}: {} is not a loopback address; listening there exposes the backups to the network (the protocol is not encrypted): pass --allow-remote to do it anyway, with --token-file",
                remote.ip()
            );
        }
    }
    Ok(addrs)
}

/// Set `stop` and shut the current connection down on SIGINT or SIGTERM.
fn watch_signals(stop: Arc<AtomicBool>, current: Arc<Mutex<Option<TcpStream>>>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal watcher")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (mut int, mut term) = match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let name = tokio::select! {
                    _ = int.recv() => "SIGINT",
                    _ = term.recv() => "SIGTERM",
                };
                tracing::info!("{name} received; stopping");
                stop.store(true, Ordering::SeqCst);
                if let Some(conn) = lock(&current).as_ref() {
                    let _ = conn.shutdown(std::net::Shutdown::Both);
                }
            });
        })
        .context("cannot start the signal watcher")?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(anyhow!("cannot watch for signals: {e}")),
        Err(_) => Err(anyhow!("cannot watch for signals")),
    }
}
