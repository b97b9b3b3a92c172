//! A lightningd simulator: drives the real `cln-backup` binary through the
//! plugin protocol exactly as lightningd does, and keeps its own SQLite
//! database as the node's.
//!
//! Owns the message sequence (getmanifest, the pre-init `db_write` calls of
//! migrations and start-up, init with its `configuration`, then `db_write`
//! per transaction and RPC calls passed through), the working directory and
//! environment lightningd gives plugins, and the node's commit discipline:
//! a transaction is committed only after the plugin answered `continue`, with
//! foreign keys on, and lone `PRAGMA foreign_keys` reports run outside any
//! transaction. It can die between a hook and its commit.
//!
//! Shared by tests, examples and benchmarks (included by path), so it must
//! not depend on test-only crates.
#![allow(dead_code)]

use rusqlite::Connection;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The migrations lightningd applies at a first start.
pub const MIGRATIONS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");

/// How long the simulator waits for one answer before declaring the plugin hung.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One migration file.
#[derive(Clone, Debug)]
pub struct Migration {
    pub name: String,
    /// A table rebuild: run between lone `PRAGMA foreign_keys = OFF/ON` reports.
    pub rebuild: bool,
    pub statements: Vec<String>,
}

/// Read `migrations/*.sql` in order.
pub fn migrations() -> Vec<Migration> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(MIGRATIONS_DIR)
        .unwrap_or_else(|e| panic!("{MIGRATIONS_DIR}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let body: String =
                text.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n");
            let statements = body
                .split(";\n")
                .map(|s| s.trim().trim_end_matches(';').trim())
                .filter(|s| !s.is_empty())
                .map(|s| format!("{s};"))
                .collect();
            Migration {
                name: path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                rebuild: text.starts_with("-- rebuild"),
                statements,
            }
        })
        .collect()
}

/// For examples: the `cln-backup` binary of the example's own profile, built
/// with cargo first (`cargo run --example` does not build binaries; cargo
/// rebuilds only what changed).
pub fn plugin_binary_beside_example() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let release = profile_dir.file_name().is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--bin", "cln-backup"]);
    if release {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("run cargo build").success(), "building the plugin binary failed");
    let bin = profile_dir.join("cln-backup");
    assert!(bin.exists(), "{} is missing after the build", bin.display());
    bin
}

/// For examples: the example `name` of the calling example's own profile,
/// built with cargo first (cargo rebuilds only what changed).
pub fn example_binary_beside_example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let examples_dir = exe.parent().expect("target/<profile>/examples");
    let release = examples_dir.parent().and_then(Path::file_name).is_some_and(|n| n == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "--example", name]);
    if release {
        cmd.arg("--release");
    }
    assert!(cmd.status().expect("run cargo build").success(), "building the example {name} failed");
    let bin = examples_dir.join(name);
    assert!(bin.exists(), "{} is missing after the build", bin.display());
    bin
}

/// A log notification the plugin sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// Why a node stopped.
#[derive(Debug)]
pub enum Stop {
    /// The plugin answered a `db_write` with an error: lightningd calls
    /// `fatal()` and exits without committing.
    Refused(String),
    /// The plugin died or closed its pipe.
    PluginDied(String),
    /// The plugin broke the protocol.
    Protocol(String),
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::Refused(m) => write!(f, "db_write refused: {m}"),
            Stop::PluginDied(m) => write!(f, "plugin died: {m}"),
            Stop::Protocol(m) => write!(f, "protocol error: {m}"),
        }
    }
}

/// A node's directories: `<root>` is the lightning-dir, `<root>/regtest` the
/// network directory where `lightningd.sqlite3` and `backup.lock` live.
pub struct NodeDir {
    pub root: tempfile::TempDir,
}

impl NodeDir {
    pub fn new() -> NodeDir {
        NodeDir::new_in(&std::env::temp_dir())
    }

    pub fn new_in(parent: &Path) -> NodeDir {
        let root = tempfile::Builder::new().prefix("lightning-").tempdir_in(parent).expect("create lightning-dir");
        std::fs::create_dir(root.path().join("regtest")).expect("create network dir");
        NodeDir { root }
    }

    pub fn network(&self) -> PathBuf {
        self.root.path().join("regtest")
    }

    pub fn db(&self) -> PathBuf {
        self.network().join("lightningd.sqlite3")
    }
}

impl Default for NodeDir {
    fn default() -> Self {
        NodeDir::new()
    }
}

/// Write `backup.lock` in the node's network directory naming `store`, as
/// `cln-backup init` does.
pub fn write_lock(dir: &NodeDir, store: &Path) {
    let abs = std::fs::canonicalize(store).unwrap_or_else(|e| panic!("{}: {e}", store.display()));
    let body = format!("{{\"backend_url\": {}}}", json!(format!("file://{}", abs.display())));
    std::fs::write(dir.network().join("backup.lock"), body).expect("write backup.lock");
}

/// How a node starts.
#[derive(Clone, Debug)]
pub struct Start {
    /// The plugin binary; `None` runs the node without the plugin.
    pub plugin: Option<PathBuf>,
    /// How many migration files this lightningd knows (all by default).
    pub migrations: usize,
    /// Options passed to the plugin in `init`.
    pub options: serde_json::Map<String, Value>,
    /// Sync the node's own commits as lightningd does (SQLite's default).
    /// Tests leave it off: a crash is simulated by not committing, and syncing
    /// only slows them. Benchmarks turn it on, so that the node's writes are
    /// flushed by its own commits, not by the plugin's.
    pub durable_node: bool,
    /// SIGKILL the plugin this long after it is started, wherever it is then
    /// (a hook, a compaction, a rewind); the node goes on as lightningd
    /// would: a write whose `continue` came first is committed, the one in
    /// flight is not.
    pub kill_after: Option<Duration>,
}

impl Start {
    pub fn with_plugin(binary: impl Into<PathBuf>) -> Start {
        Start {
            plugin: Some(binary.into()),
            migrations: migrations().len(),
            options: serde_json::Map::new(),
            durable_node: false,
            kill_after: None,
        }
    }

    pub fn without_plugin() -> Start {
        Start {
            plugin: None,
            migrations: migrations().len(),
            options: serde_json::Map::new(),
            durable_node: false,
            kill_after: None,
        }
    }
}

struct Plugin {
    /// Shared with a killer thread (see [`Start::kill_after`]): a child
    /// already waited for is never signalled, so a reused pid is safe.
    child: Arc<Mutex<Child>>,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
    next_id: u64,
    /// Answers that arrived while another answer was awaited.
    early: std::collections::HashMap<String, Value>,
}

impl Plugin {
    fn child(&self) -> std::sync::MutexGuard<'_, Child> {
        self.child.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running simulated node.
pub struct Node {
    network: PathBuf,
    db: Connection,
    data_version: u32,
    plugin: Option<Plugin>,
    /// Log notifications received, in order.
    pub logs: Vec<LogLine>,
    /// Round-trip time of every `db_write`, in order.
    pub hook_times: Vec<Duration>,
}

fn open_db(path: &Path, durable: bool) -> Connection {
    let db = Connection::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Foreign keys on, as lightningd runs.
    db.execute_batch("PRAGMA foreign_keys = ON;").expect("configure the node database");
    if !durable {
        db.execute_batch("PRAGMA synchronous = OFF;").expect("configure the node database");
    }
    db
}

fn read_data_version(db: &Connection) -> u32 {
    db.query_row("SELECT intval FROM vars WHERE name='data_version'", [], |r| r.get::<_, i64>(0))
        .map(|v| v as u32)
        .unwrap_or(0)
}

fn applied_migrations(db: &Connection) -> usize {
    db.query_row("SELECT version FROM version", [], |r| r.get::<_, i64>(0)).map(|v| v as usize).unwrap_or(0)
}

/// The version bump lightningd ends every transaction with.
pub fn bump(version: u32) -> String {
    cln_backup::version::bump_statement(version)
}

fn spawn_reader(mut out: impl Read + Send + 'static) -> Receiver<Value> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 64 << 10];
        loop {
            while let Some(at) = buf.windows(2).position(|w: &[u8]| w == b"\n\n") {
                // Parsed in place, then dropped with its separator: no
                // byte-by-byte copy of a message (the benchmarks time this).
                let msg = &buf[..at];
                if msg.iter().all(u8::is_ascii_whitespace) {
                    buf.drain(..at + 2);
                    continue;
                }
                let value = serde_json::from_slice(msg)
                    .unwrap_or_else(|e| json!({"sim-bad-json": String::from_utf8_lossy(msg), "error": e.to_string()}));
                buf.drain(..at + 2);
                if tx.send(value).is_err() {
                    return;
                }
            }
            match out.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    rx
}

impl Node {
    /// Start a node in `dir`: getmanifest, pre-init writes (pending migrations
    /// and the start-up version update), init.
    pub fn start(dir: &NodeDir, opts: &Start) -> Result<Node, Stop> {
        let network = dir.network();
        let db = open_db(&dir.db(), opts.durable_node);
        let data_version = read_data_version(&db);
        let mut node = Node { network, db, data_version, plugin: None, logs: Vec::new(), hook_times: Vec::new() };
        if let Some(binary) = &opts.plugin {
            node.spawn(binary)?;
            if let (Some(after), Some(plugin)) = (opts.kill_after, node.plugin.as_ref()) {
                let child = Arc::clone(&plugin.child);
                std::thread::spawn(move || {
                    std::thread::sleep(after);
                    let _ = child.lock().unwrap_or_else(|p| p.into_inner()).kill();
                });
            }
            let manifest = node.request("getmanifest", json!({"allow-deprecated-apis": false}))?;
            let hooks = manifest.get("hooks").and_then(Value::as_array).cloned().unwrap_or_default();
            if !hooks.iter().any(|h| h.get("name").and_then(Value::as_str) == Some("db_write")) {
                return Err(Stop::Protocol(format!("manifest does not register db_write: {manifest}")));
            }
        }
        node.pre_init_writes(opts.migrations)?;
        if node.plugin.is_some() {
            let lightning_dir = node.network.parent().map(Path::to_path_buf).unwrap_or_default();
            let init = json!({
                "options": Value::Object(opts.options.clone()),
                "configuration": {
                    "lightning-dir": lightning_dir.join("regtest"),
                    "rpc-file": "lightning-rpc",
                    "startup": true,
                    "network": "regtest",
                    "feature_set": {"init": "080269a2", "node": "800000080269a2", "channel": "", "invoice": "02000002024100"},
                },
            });
            let answer = node.request("init", init)?;
            if answer.get("disable").is_some() {
                return Err(Stop::Protocol(format!("the plugin disabled itself: {answer}")));
            }
        }
        Ok(node)
    }

    fn spawn(&mut self, binary: &Path) -> Result<(), Stop> {
        let mut child = Command::new(binary)
            .current_dir(&self.network)
            .env("LIGHTNINGD_PLUGIN", "1")
            .env("LIGHTNINGD_VERSION", "v24.08-sim")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| Stop::PluginDied(format!("{}: {e}", binary.display())))?;
        let stdout = child.stdout.take().ok_or_else(|| Stop::PluginDied("no stdout".into()))?;
        let stdin = child.stdin.take();
        self.plugin = Some(Plugin {
            child: Arc::new(Mutex::new(child)),
            stdin,
            messages: spawn_reader(stdout),
            next_id: 0,
            early: Default::default(),
        });
        Ok(())
    }

    /// lightningd's pre-init writes: every pending migration (rebuilds in their
    /// own transaction between lone pragma reports), then the version update.
    fn pre_init_writes(&mut self, known: usize) -> Result<(), Stop> {
        let all = migrations();
        let known = known.min(all.len());
        let applied = applied_migrations(&self.db);
        let mut pending: Vec<String> = Vec::new();
        for m in &all[applied.min(known)..known] {
            if m.rebuild {
                if !pending.is_empty() {
                    self.transaction(std::mem::take(&mut pending))?;
                }
                self.write_lone("PRAGMA foreign_keys = OFF;")?;
                self.transaction(m.statements.clone())?;
                self.write_lone("PRAGMA foreign_keys = ON;")?;
            } else {
                pending.extend(m.statements.iter().cloned());
            }
        }
        pending.push(format!("UPDATE version SET version={known};"));
        self.transaction(pending)
    }

    /// The node's committed `data_version`.
    pub fn data_version(&self) -> u32 {
        self.data_version
    }

    /// The node's database file.
    pub fn db_path(&self) -> PathBuf {
        self.network.join("lightningd.sqlite3")
    }

    /// Run one transaction: `statements` plus the bump, reported, then committed.
    pub fn transaction(&mut self, mut statements: Vec<String>) -> Result<(), Stop> {
        let version = self.data_version.wrapping_add(1);
        statements.push(bump(version));
        self.report(version, &statements)?;
        self.commit(&statements);
        self.data_version = version;
        Ok(())
    }

    /// Run a workload transaction `(data_version, statements)` as generated
    /// (with its bump, or a lone pragma report at the current version).
    pub fn apply(&mut self, txn: &(u32, Vec<String>)) -> Result<(), Stop> {
        let (version, statements) = txn;
        if cln_backup::version::lone_foreign_keys_pragma(statements).is_some() {
            assert_eq!(*version, self.data_version, "lone pragma must repeat the committed version");
            return self.write_lone(&statements[0]);
        }
        assert_eq!(*version, self.data_version.wrapping_add(1), "workload out of step with the node");
        self.report(*version, statements)?;
        self.commit(statements);
        self.data_version = *version;
        Ok(())
    }

    /// A lone report run outside any transaction, at the current version.
    pub fn write_lone(&mut self, statement: &str) -> Result<(), Stop> {
        self.report(self.data_version, &[statement.to_string()])?;
        self.db.execute_batch(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
        Ok(())
    }

    fn commit(&self, statements: &[String]) {
        self.db.execute_batch("BEGIN").expect("BEGIN");
        for s in statements {
            self.db.execute_batch(s).unwrap_or_else(|e| panic!("node statement failed: {s}: {e}"));
        }
        self.db.execute_batch("COMMIT").expect("COMMIT");
    }

    fn report(&mut self, version: u32, statements: &[String]) -> Result<(), Stop> {
        if self.plugin.is_none() {
            return Ok(());
        }
        let started = Instant::now();
        let answer = self.request("db_write", json!({"data_version": version, "writes": statements}));
        self.hook_times.push(started.elapsed());
        match answer {
            Ok(v) if v == json!({"result": "continue"}) => Ok(()),
            Ok(v) => {
                self.kill();
                Err(Stop::Protocol(format!("db_write answered {v}, not continue")))
            }
            Err(e) => {
                self.kill();
                Err(e)
            }
        }
    }

    /// Report a transaction, get `continue`, then die before committing.
    pub fn crash_after_hook(mut self, mut statements: Vec<String>) -> Result<(), Stop> {
        let version = self.data_version.wrapping_add(1);
        statements.push(bump(version));
        self.report(version, &statements)?;
        self.kill();
        Ok(())
    }

    /// Call an RPC method the plugin registered, as `lightning-cli` would.
    pub fn rpc(&mut self, method: &str, params: Value) -> Result<Value, Stop> {
        self.request(method, params)
    }

    fn request(&mut self, method: &str, params: Value) -> Result<Value, Stop> {
        let id = self.send_request(method, params)?;
        self.wait_answer(&id, method)
    }

    /// Send an RPC call without waiting for its answer (lightningd goes on
    /// sending hooks meanwhile); collect it with [`Node::rpc_wait`].
    pub fn rpc_start(&mut self, method: &str, params: Value) -> Result<String, Stop> {
        self.send_request(method, params)
    }

    /// Wait for the answer to a call started with [`Node::rpc_start`].
    pub fn rpc_wait(&mut self, id: &str) -> Result<Value, Stop> {
        self.wait_answer(id, id)
    }

    /// The answer to a call started with [`Node::rpc_start`], if it has
    /// arrived; never waits. Log lines and other answers that arrived
    /// meanwhile are kept, as [`Node::rpc_wait`] keeps them.
    pub fn rpc_poll(&mut self, id: &str) -> Option<Result<Value, Stop>> {
        let plugin = self.plugin.as_mut()?;
        if let Some(msg) = plugin.early.remove(id) {
            return Some(answer_of(msg));
        }
        loop {
            let msg = match plugin.messages.try_recv() {
                Ok(m) => m,
                Err(std::sync::mpsc::TryRecvError::Empty) => return None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Some(Err(Stop::PluginDied(format!("pipe closed while waiting for {id}"))))
                }
            };
            if let Some(line) = log_line(&msg) {
                self.logs.push(line);
                continue;
            }
            if msg.get("sim-bad-json").is_some() {
                return Some(Err(Stop::Protocol(format!("plugin wrote invalid JSON: {msg}"))));
            }
            match msg.get("id").and_then(Value::as_str) {
                Some(got) if got == id => return Some(answer_of(msg)),
                Some(other) if msg.get("method").is_none() && other.starts_with("cln:") => {
                    let other = other.to_string();
                    plugin.early.insert(other, msg);
                }
                Some(_) if msg.get("method").is_none() => {
                    return Some(Err(Stop::Protocol(format!("answer to an unknown id: {msg}"))));
                }
                _ => {}
            }
        }
    }

    fn send_request(&mut self, method: &str, params: Value) -> Result<String, Stop> {
        let plugin = self.plugin.as_mut().ok_or_else(|| Stop::Protocol("no plugin".into()))?;
        plugin.next_id += 1;
        let id = format!("cln:{method}#{}", plugin.next_id);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let mut bytes = msg.to_string().into_bytes();
        bytes.extend_from_slice(b"\n\n");
        let stdin = plugin.stdin.as_mut().ok_or_else(|| Stop::PluginDied("stdin closed".into()))?;
        stdin.write_all(&bytes).and_then(|_| stdin.flush()).map_err(|e| Stop::PluginDied(e.to_string()))?;
        Ok(id)
    }

    fn wait_answer(&mut self, id: &str, method: &str) -> Result<Value, Stop> {
        let plugin = self.plugin.as_mut().ok_or_else(|| Stop::Protocol("no plugin".into()))?;
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            if let Some(msg) = plugin.early.remove(id) {
                return answer_of(msg);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = match plugin.messages.recv_timeout(left) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => return Err(Stop::Protocol(format!("no answer to {method}"))),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Stop::PluginDied(format!("pipe closed while waiting for {method}")))
                }
            };
            if let Some(line) = log_line(&msg) {
                self.logs.push(line);
                continue;
            }
            if msg.get("sim-bad-json").is_some() {
                return Err(Stop::Protocol(format!("plugin wrote invalid JSON: {msg}")));
            }
            match msg.get("id").and_then(Value::as_str) {
                Some(got) if got == id => return answer_of(msg),
                Some(other) if msg.get("method").is_none() && other.starts_with("cln:") => {
                    let other = other.to_string();
                    plugin.early.insert(other, msg);
                }
                Some(_) if msg.get("method").is_none() => {
                    return Err(Stop::Protocol(format!("answer to an unknown id: {msg}")));
                }
                _ => {}
            }
        }
    }

    /// Whether the log has a line at `level` containing `text`.
    pub fn logged_at(&self, level: &str, text: &str) -> bool {
        self.logs.iter().any(|l| l.level == level && l.message.contains(text))
    }

    /// Gather log notifications that arrived without being waited for.
    pub fn drain_logs(&mut self, wait: Duration) {
        let Some(plugin) = self.plugin.as_mut() else { return };
        let deadline = Instant::now() + wait;
        while let Ok(msg) = plugin.messages.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if let Some(line) = log_line(&msg) {
                self.logs.push(line);
            }
        }
    }

    /// Whether any log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.logs.iter().any(|l| l.message.contains(text))
    }

    /// The plugin's process id.
    pub fn plugin_pid(&self) -> Option<u32> {
        Some(self.plugin.as_ref()?.child().id())
    }

    /// Resident memory of the plugin process, in KiB.
    pub fn plugin_rss_kib(&self) -> Option<u64> {
        let pid = self.plugin.as_ref()?.child().id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
    }

    fn kill(&mut self) {
        if let Some(p) = self.plugin.take() {
            let mut child = p.child();
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the node as lightningd does: close the plugin's stdin and wait.
    pub fn stop(mut self) -> Vec<LogLine> {
        if let Some(mut p) = self.plugin.take() {
            drop(p.stdin.take());
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                while let Ok(msg) = p.messages.try_recv() {
                    if let Some(line) = log_line(&msg) {
                        self.logs.push(line);
                    }
                }
                let waited = p.child().try_wait();
                match waited {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                    _ => {
                        let mut child = p.child();
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        std::mem::take(&mut self.logs)
    }
}

/// The log line a `log` notification carries, if `msg` is one.
fn log_line(msg: &Value) -> Option<LogLine> {
    if msg.get("method").and_then(Value::as_str) != Some("log") {
        return None;
    }
    let p = &msg["params"];
    Some(LogLine {
        level: p["level"].as_str().unwrap_or_default().to_string(),
        message: p["message"].as_str().unwrap_or_default().to_string(),
    })
}

fn answer_of(msg: Value) -> Result<Value, Stop> {
    if let Some(err) = msg.get("error") {
        let text = err.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
        return Err(Stop::Refused(text));
    }
    msg.get("result").cloned().ok_or_else(|| Stop::Protocol(format!("answer without result: {msg}")))
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}
