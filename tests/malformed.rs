//! Malformed input from lightningd, sent to the real binary over its pipes:
//! every case is answered per SPEC (an error to a `db_write` that cannot be
//! stored, so lightningd stops without committing; never `continue`), the
//! plugin never hangs, and the store keeps exactly what it had.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cln_backup::Store;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// A node directory with an empty store at version 0 and its `backup.lock`.
struct Dir {
    root: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let root = tempfile::tempdir().unwrap();
        let store = root.path().join("backup.redb");
        Store::create(&store).unwrap();
        let lock = json!({"backend_url": format!("file://{}", store.display())});
        std::fs::write(root.path().join("backup.lock"), lock.to_string()).unwrap();
        Dir { root }
    }

    fn store(&self) -> PathBuf {
        self.root.path().join("backup.redb")
    }
}

/// The plugin started as lightningd starts it, spoken to byte by byte.
struct Raw {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
}

impl Raw {
    fn start(dir: &Path) -> Raw {
        let mut child = Command::new(BIN)
            .current_dir(dir)
            .env("LIGHTNINGD_PLUGIN", "1")
            .env("LIGHTNINGD_VERSION", "v24.08-sim")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut out = child.stdout.take().unwrap();
        let stdin = child.stdin.take();
        let (tx, messages) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1 << 16];
            loop {
                while let Some(at) = buf.windows(2).position(|w: &[u8]| w == b"\n\n") {
                    let msg: Vec<u8> = buf.drain(..at + 2).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&msg[..at]) {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                }
                match out.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        Raw { child, stdin, messages }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        // A plugin that stopped reading is what some cases test for.
        let _ = stdin.write_all(bytes).and_then(|()| stdin.flush());
    }

    fn call(&mut self, id: &str, method: &str, params: Value) {
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.send(format!("{msg}\n\n").as_bytes());
    }

    /// The answer to `id` (log lines skipped), or `None` if the plugin closed
    /// its output or nothing came within the time.
    fn answer(&mut self, id: &str, within: Duration) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self.messages.recv_timeout(left).ok()?;
            if msg.get("id").and_then(Value::as_str) == Some(id) {
                return Some(msg);
            }
        }
    }

    /// Close stdin, as lightningd does on shutdown, and wait for the exit.
    fn finish(mut self) -> std::process::ExitStatus {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the plugin did not exit after its stdin closed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn head(store: &Path) -> u64 {
    Store::open_read_only(store).unwrap().head()
}

/// A started plugin past `getmanifest`, with the store at version 1.
fn ready(dir: &Dir) -> Raw {
    let mut p = Raw::start(dir.root.path());
    p.call("m", "getmanifest", json!({}));
    assert!(p.answer("m", Duration::from_secs(20)).is_some(), "no manifest");
    p.call(
        "cln:db_write#1",
        "db_write",
        json!({"data_version": 1, "writes": [
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
            "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0"]}),
    );
    let a = p.answer("cln:db_write#1", Duration::from_secs(20)).unwrap();
    assert_eq!(a["result"], json!({"result": "continue"}), "{a}");
    p
}

fn bump(v: u32) -> String {
    cln_backup::version::bump_statement(v)
}

/// The error answer to `id`, or a failure naming what came instead.
fn refused(p: &mut Raw, id: &str, what: &str) -> String {
    let a = p.answer(id, Duration::from_secs(20)).unwrap_or_else(|| panic!("{what}: no answer"));
    assert!(a.get("result").is_none(), "{what}: answered {a}");
    a["error"]["message"].as_str().unwrap_or_else(|| panic!("{what}: {a}")).to_string()
}

#[test]
fn malformed_db_write_params_are_refused_and_nothing_is_stored() {
    let dir = Dir::new();
    let mut p = ready(&dir);
    let cases: Vec<(&str, Value, &str)> = vec![
        ("a string version", json!({"data_version": "2", "writes": ["SELECT 1", bump(2)]}), "u32"),
        ("a negative version", json!({"data_version": -1, "writes": ["SELECT 1", bump(2)]}), "u32"),
        ("a version past u32", json!({"data_version": 4_294_967_296u64, "writes": [bump(2)]}), "u32"),
        ("writes not an array", json!({"data_version": 2, "writes": "SELECT 1"}), "array of strings"),
        ("a write not a string", json!({"data_version": 2, "writes": [1, bump(2)]}), "must be a string"),
        ("no writes", json!({"data_version": 2}), "array of strings"),
        ("no params", Value::Null, "array of strings"),
        ("empty writes", json!({"data_version": 2, "writes": []}), "no statements"),
        ("a version gap", json!({"data_version": 9, "writes": ["SELECT 1", bump(9)]}), "version"),
    ];
    for (i, (what, params, says)) in cases.iter().enumerate() {
        let id = format!("cln:db_write#{}", 10 + i);
        p.call(&id, "db_write", params.clone());
        let message = refused(&mut p, &id, what);
        assert!(message.contains(says), "{what}: {message}");
    }
    // Text that is not UTF-8 inside the call.
    let mut bytes =
        br#"{"jsonrpc":"2.0","id":"cln:db_write#50","method":"db_write","params":{"data_version":2,"writes":["INSERT INTO vars VALUES ('caf"#
            .to_vec();
    bytes.extend_from_slice(b"\xe9', 1)\", \"");
    bytes.extend_from_slice(bump(2).as_bytes());
    bytes.extend_from_slice(b"\"]}}\n\n");
    p.send(&bytes);
    let message = refused(&mut p, "cln:db_write#50", "not UTF-8");
    assert!(message.contains("UTF-8"), "{message}");
    // The plugin still works: the next proper write is stored.
    p.call("cln:db_write#60", "db_write", json!({"data_version": 2, "writes": ["SELECT 2", bump(2)]}));
    let a = p.answer("cln:db_write#60", Duration::from_secs(20)).unwrap();
    assert_eq!(a["result"], json!({"result": "continue"}), "{a}");
    assert!(p.finish().success());
    assert_eq!(head(&dir.store()), 2, "a refused write was stored, or the good one lost");
}

#[test]
fn a_hundred_megabyte_write_is_stored_whole() {
    let dir = Dir::new();
    let mut p = ready(&dir);
    let big = format!("INSERT INTO vars VALUES ('{}', 1)", "x".repeat(100 << 20));
    p.call("cln:db_write#2", "db_write", json!({"data_version": 2, "writes": [big, bump(2)]}));
    let a = p.answer("cln:db_write#2", Duration::from_secs(120)).expect("no answer to a 100 MB write");
    assert_eq!(a["result"], json!({"result": "continue"}), "{}", a.to_string().chars().take(300).collect::<String>());
    assert!(p.finish().success());
    let store = Store::open_read_only(dir.store()).unwrap();
    let reader = store.reader().unwrap();
    let change = reader.changes(2).unwrap().last().unwrap().unwrap();
    assert_eq!(change.seq, 2);
    assert_eq!(change.transactions[0].statements[0].len(), (100 << 20) + "INSERT INTO vars VALUES ('', 1)".len());
}

#[test]
fn invalid_json_is_never_answered_with_continue_and_the_store_is_untouched() {
    let dir = Dir::new();
    let mut p = ready(&dir);
    p.send(
        b"{\"jsonrpc\":\"2.0\",\"id\":\"cln:db_write#2\",\"method\":\"db_write\",\"params\":{\"data_version\":2,\n\n",
    );
    // Either an error answer or the plugin stops reading (lightningd then
    // stops too: the plugin is important); never `continue`.
    if let Some(a) = p.answer("cln:db_write#2", Duration::from_secs(5)) {
        assert!(a.get("result").is_none(), "{a}");
    }
    let _ = p.finish();
    assert_eq!(head(&dir.store()), 1);
}

#[test]
fn init_before_getmanifest_does_not_hang_or_store_anything() {
    let dir = Dir::new();
    let mut p = Raw::start(dir.root.path());
    p.call(
        "i",
        "init",
        json!({"options": {}, "configuration": {"lightning-dir": dir.root.path(), "rpc-file": "lightning-rpc", "network": "regtest", "startup": true}}),
    );
    if let Some(a) = p.answer("i", Duration::from_secs(5)) {
        assert!(a.get("error").is_some(), "init before getmanifest was accepted: {a}");
    }
    let started = Instant::now();
    let _ = p.finish();
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(head(&dir.store()), 0);
}

#[test]
fn stdin_closed_in_the_middle_of_a_message_stores_nothing_and_exits() {
    let dir = Dir::new();
    let mut p = ready(&dir);
    let msg = json!({"jsonrpc": "2.0", "id": "cln:db_write#2", "method": "db_write",
        "params": {"data_version": 2, "writes": ["SELECT 2", bump(2)]}})
    .to_string();
    p.send(&msg.as_bytes()[..msg.len() / 2]);
    let status = p.finish();
    // Half a message is not a write: nothing stored, and a clean exit or a
    // clear failure, never a hang.
    assert!(status.code().is_some(), "killed by a signal: {status:?}");
    assert_eq!(head(&dir.store()), 1);
}
