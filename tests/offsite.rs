//! Off-site backups as an operator runs them: the real binary's `init`,
//! `restore`, `info`, `verify` and `server`, the plugin driven by the
//! lightningd simulator, a real Garage on loopback for object storage and a
//! real `cln-backup server` for `socket:`. Each test restores what the node
//! wrote from the remote copy and compares it with the node's database.
//!
//! Every test uses its own prefix of the shared test bucket, so they run in
//! parallel. When Garage is absent they say so on stderr and pass, except
//! under `CI=true`, where the support module fails them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::Store;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::garage::{self, Garage};
use support::run;
use support::server::Server;

#[path = "support/sim.rs"]
mod sim;

use sim::{Node, NodeDir, Start, Stop};
use support::workload::Workload;

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// The test's Garage, or `None` (said on stderr; a failure under `CI=true`).
fn garage_or_skip() -> Option<&'static Garage> {
    garage::garage()
}

/// A prefix of the bucket no other test (nor an earlier run) uses.
fn prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("offsite-{name}-{}-{nanos}", std::process::id())
}

fn apply(node: &mut Node, load: &mut Workload, n: usize) {
    for _ in 0..n {
        let txn = load.next_txn();
        node.apply(&txn).unwrap_or_else(|e| panic!("transaction {}: {e}", txn.0));
    }
}

/// A stopped node with a database (the simulator without the plugin), as
/// an operator has when adding the backup to a running node.
fn node_with_database(seed: u64) -> (NodeDir, Workload) {
    let dir = NodeDir::new();
    let mut node = Node::start(&dir, &Start::without_plugin()).unwrap();
    let mut load = Workload::on_existing_schema(seed, node.data_version());
    apply(&mut node, &mut load, 40);
    node.stop();
    (dir, load)
}

fn start(dir: &NodeDir) -> Node {
    Node::start(dir, &Start::with_plugin(BIN)).unwrap_or_else(|e| panic!("node start: {e}"))
}

fn cli(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    run::cln_backup(args)
}

/// The file at `restored` equals the node's database, or the test fails
/// naming the first difference.
fn assert_equals_node(restored: &Path, node_db: &Path) {
    match compare_databases(restored, node_db, Labels::RESTORED_AND_EXPECTED) {
        Ok(None) => {}
        Ok(Some(d)) => panic!("{d}"),
        Err(e) => panic!("comparing {}: {e}", restored.display()),
    }
}

/// A new key file of the documented form (64 hex digits), mode 0600.
fn write_key(path: &Path, byte: u8) {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).unwrap();
    writeln!(f, "{}", format!("{byte:02x}").repeat(32)).unwrap();
}

/// `info --json` of a remote copy.
fn info_json(url: &str, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> Value {
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"info", &"--json"];
    args.extend_from_slice(extra);
    args.push(&url);
    let out = cli(&args);
    serde_json::from_str(&run::assert_ok(&out)).unwrap()
}

// ---------------------------------------------------------------- socket server

// ---------------------------------------------------------------- a relay to Garage

/// A TCP relay in front of Garage that can hold every byte: the S3 copy
/// falls behind while it is held, with the real server behind it.
struct Relay {
    addr: String,
    held: Arc<AtomicBool>,
    /// Connections accepted so far.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl Relay {
    fn start(to: &str) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let held = Arc::new(AtomicBool::new(false));
        let to = to.trim_start_matches("http://").to_string();
        let flag = Arc::clone(&held);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(&to) else { return };
                for (mut from, mut into) in
                    [(client.try_clone().unwrap(), server.try_clone().unwrap()), (server, client)]
                {
                    let flag = Arc::clone(&flag);
                    std::thread::spawn(move || {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            while flag.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            if into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Relay { addr: format!("http://{addr}"), held, accepted }
    }

    fn hold(&self, on: bool) {
        self.held.store(on, Ordering::SeqCst);
    }

    /// A credentials file in `dir` for Garage through this relay.
    fn credentials_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("relay.env");
        std::fs::write(
            &path,
            format!(
                "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_ENDPOINT={}\nAWS_REGION=garage\nAWS_ALLOW_HTTP=true\n",
                garage::KEY_ID,
                garage::SECRET,
                self.addr
            ),
        )
        .unwrap();
        path
    }
}

// ---------------------------------------------------------------- listing the bucket

/// Every object under `prefix` with its size, ETag and modification time,
/// read through `object_store` with the tests' key: what a reader must not
/// change.
fn listing(g: &Garage, prefix: &str) -> Vec<(String, u64, Option<String>, i64)> {
    use futures_util::StreamExt;
    use object_store::aws::AmazonS3Builder;
    use object_store::ObjectStore;
    let s3 = AmazonS3Builder::new()
        .with_bucket_name(garage::BUCKET)
        .with_endpoint(&g.endpoint)
        .with_region("garage")
        .with_access_key_id(garage::KEY_ID)
        .with_secret_access_key(garage::SECRET)
        .with_allow_http(true)
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let path = object_store::path::Path::from(prefix);
        let mut out = Vec::new();
        let mut stream = s3.list(Some(&path));
        while let Some(meta) = stream.next().await {
            let meta = meta.unwrap();
            out.push((meta.location.to_string(), meta.size, meta.e_tag, meta.last_modified.timestamp_millis()));
        }
        out.sort();
        out
    })
}

// ---------------------------------------------------------------- a populated copy

/// A stopped node backed up to a local store and `s3://BUCKET/<prefix>`
/// (sync), with the key and credentials files it was made with.
struct Copy {
    node: NodeDir,
    files: tempfile::TempDir,
    url: String,
    prefix: String,
    key: PathBuf,
    credentials: PathBuf,
    version: u32,
}

fn populated(g: &Garage, name: &str, seed: u64) -> Copy {
    let (node, mut load) = node_with_database(seed);
    let files = tempfile::tempdir().unwrap();
    let prefix = prefix(name);
    let url = g.url(&prefix);
    let key = files.path().join("s3.key");
    let credentials = g.credentials_file(files.path());
    let local = files.path().join("local.redb");
    let out = cli(&[
        &"init",
        &"--lightning-dir",
        &node.network(),
        &local,
        &url,
        &"--key-file",
        &key,
        &"--credentials-file",
        &credentials,
    ]);
    run::assert_ok(&out);
    let mut n = start(&node);
    load.resume_at(n.data_version());
    apply(&mut n, &mut load, 60);
    let version = n.data_version();
    n.stop();
    Copy { node, files, url, prefix, key, credentials, version }
}

impl Copy {
    fn out(&self, name: &str) -> PathBuf {
        self.files.path().join(name)
    }
}

// ---------------------------------------------------------------- 1

#[test]
fn three_destinations_each_restore_the_node_alone() {
    let Some(g) = garage_or_skip() else { return };
    let (node_dir, mut load) = node_with_database(31);
    let files = tempfile::tempdir().unwrap();
    let server_store = files.path().join("server.redb");
    drop(Store::create(&server_store).unwrap());
    let server = Server::start(&server_store, "127.0.0.1:0");
    let local = files.path().join("local.redb");
    let key = files.path().join("node.key");
    let credentials = g.credentials_file(files.path());
    let url = g.url(&prefix("three"));
    let socket = server.url();
    assert!(!key.exists());
    let out = cli(&[
        &"init",
        &"--lightning-dir",
        &node_dir.network(),
        &local,
        &url,
        &socket,
        &"--key-file",
        &key,
        &"--credentials-file",
        &credentials,
    ]);
    run::assert_ok(&out);
    assert!(run::stdout(&out).contains(&format!("Created the key file {}", key.display())), "{}", run::stdout(&out));
    let key_text = std::fs::read_to_string(&key).unwrap();
    assert_eq!(key_text.trim().len(), 64, "{key_text:?}");

    let mut node = start(&node_dir);
    assert!(node.logged("Versions match up"), "{:?}", node.logs);
    load.resume_at(node.data_version());
    apply(&mut node, &mut load, 150);
    // lightningd dies after the hook answered, before its COMMIT: every
    // destination has a change the node never committed.
    node.crash_after_hook(vec!["INSERT INTO peers (id, node_id, address) VALUES (99, x'99', 'phantom')".into()])
        .unwrap();
    let mut node = start(&node_dir);
    assert!(node.logged("rewinding non-committed transaction"), "{:?}", node.logs);
    load.resume_at(node.data_version());
    apply(&mut node, &mut load, 150);
    let version = node.data_version();
    node.stop();

    // Each destination alone restores the node.
    let creds: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"--key-file", &key, &"--credentials-file", &credentials];
    for (name, source) in [("s3", url.as_str()), ("socket", socket.as_str()), ("local", local.to_str().unwrap())] {
        let out_db = files.path().join(format!("{name}.sqlite3"));
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"restore", &source, &out_db];
        if name == "s3" {
            args.extend_from_slice(&creds);
        }
        run::assert_ok(&cli(&args));
        assert_equals_node(&out_db, &node_dir.db());
    }
    let info = info_json(&url, &creds);
    assert_eq!(info["version"], json!(version), "{info}");
    assert_eq!(info["restorable"]["to"], json!(version), "{info}");
    let node_db = node_dir.db();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &url, &"--against", &node_db];
    args.extend_from_slice(&creds);
    let said = run::assert_ok(&cli(&args));
    assert!(said.contains(&format!("matches the backup at version {version}")), "{said}");
    assert!(said.contains(&format!("{url}: OK")), "{said}");
}

// ---------------------------------------------------------------- 2

#[test]
fn an_async_s3_copy_shows_its_lag_and_has_the_head_after_a_clean_stop() {
    let Some(g) = garage_or_skip() else { return };
    let (node_dir, mut load) = node_with_database(32);
    let files = tempfile::tempdir().unwrap();
    let relay = Relay::start(&g.endpoint);
    // The node reaches Garage through the relay; the tests' own reads go direct.
    let credentials = relay.credentials_file(files.path());
    let direct = g.credentials_file(files.path());
    let local = files.path().join("local.redb");
    let key = files.path().join("node.key");
    let url = g.url(&prefix("async"));
    let out = cli(&[
        &"init",
        &"--lightning-dir",
        &node_dir.network(),
        &local,
        &url,
        &"--async",
        &url,
        &"--key-file",
        &key,
        &"--credentials-file",
        &credentials,
    ]);
    run::assert_ok(&out);
    let entries = cln_backup::lockfile::read_lock(&node_dir.network()).unwrap();
    assert_eq!(entries[1].mode, cln_backup::lockfile::Mode::Async);

    let mut node = start(&node_dir);
    load.resume_at(node.data_version());
    apply(&mut node, &mut load, 30);
    // Garage unreachable for a while: the node goes on, the copy falls behind.
    relay.hold(true);
    apply(&mut node, &mut load, 40);
    let status = node.rpc("backup-status", json!({})).unwrap();
    let s3 = &status["destinations"][1];
    assert_eq!(s3["mode"], "async", "{status}");
    assert_eq!(s3["kind"], "object", "{status}");
    let lag = s3["lag_changes"].as_u64().unwrap_or_else(|| panic!("no lag_changes: {status}"));
    assert!(lag >= 1, "the held copy shows no lag: {status}");
    if let Some(head) = s3["head"].as_u64() {
        assert!(head < u64::from(node.data_version()), "{status}");
    }
    relay.hold(false);
    apply(&mut node, &mut load, 10);
    let version = node.data_version();
    // A clean stop: the plugin brings the copy up to date before it exits.
    node.stop();
    let creds: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"--key-file", &key, &"--credentials-file", &direct];
    let info = info_json(&url, &creds);
    assert_eq!(info["version"], json!(version), "{info}");
    let out_db = files.path().join("restored.sqlite3");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"restore", &url, &out_db];
    args.extend_from_slice(&creds);
    run::assert_ok(&cli(&args));
    assert_equals_node(&out_db, &node_dir.db());
}

// ---------------------------------------------------------------- 3

#[test]
fn a_second_node_on_the_same_prefix_is_refused_and_the_first_copy_is_unchanged() {
    let Some(g) = garage_or_skip() else { return };
    let first = populated(g, "lease", 33);
    let before = listing(g, &first.prefix);
    assert!(!before.is_empty());
    let (second, _) = node_with_database(34);
    let files = tempfile::tempdir().unwrap();
    let local = files.path().join("second.redb");
    let init = |key: &Path| {
        cli(&[
            &"init",
            &"--lightning-dir",
            &second.network(),
            &local,
            &first.url,
            &"--key-file",
            &key,
            &"--credentials-file",
            &first.credentials,
        ])
    };
    // Its own key: the lease does not open with it, and that is said.
    let key = files.path().join("second.key");
    write_key(&key, 0x34);
    let line = run::assert_fails(&init(&key), &[] as &[&Path], &[&format!("{}/lease", first.url)]);
    assert!(line.contains("another key"), "{line}");
    // The first node's key file copied over: the lease names its holder.
    let line = run::assert_fails(&init(&first.key), &[] as &[&Path], &[&first.url]);
    let id = Store::open_read_only(first.files.path().join("local.redb")).unwrap().id();
    let first_id: String = id.iter().map(|b| format!("{b:02x}")).collect();
    assert!(line.contains(&first_id), "{line} does not name the holder's store id {first_id}");
    assert!(line.contains("another node's backup writes here"), "{line}");
    assert!(!local.exists(), "the refused init left {}", local.display());
    assert!(!second.network().join("backup.lock").exists());
    assert_eq!(listing(g, &first.prefix), before, "the refused init changed the first node's copy");
    let out_db = first.out("restored.sqlite3");
    run::assert_ok(&cli(&[
        &"restore",
        &first.url,
        &out_db,
        &"--key-file",
        &first.key,
        &"--credentials-file",
        &first.credentials,
    ]));
    assert_equals_node(&out_db, &first.node.db());
}

// ---------------------------------------------------------------- 4

#[test]
fn a_wrong_key_no_key_or_wrong_credentials_is_one_line_and_writes_nothing() {
    let Some(g) = garage_or_skip() else { return };
    let copy = populated(g, "keys", 35);
    let outdir = copy.files.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out_db = outdir.join("lightningd.sqlite3");
    let other = copy.out("other.key");
    write_key(&other, 0x5a);
    let out = cli(&[&"restore", &copy.url, &out_db, &"--key-file", &other, &"--credentials-file", &copy.credentials]);
    let line = run::assert_fails(&out, &[] as &[&Path], &[&copy.url, "another key"]);
    eprintln!("wrong key: {line}");
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0, "a refused restore left files in {}", outdir.display());

    let out = cli(&[&"restore", &copy.url, &out_db, &"--credentials-file", &copy.credentials]);
    let line = run::assert_fails(&out, &[] as &[&Path], &[&copy.url, "key"]);
    eprintln!("no key: {line}");
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);

    let bad = copy.out("bad.env");
    std::fs::write(
        &bad,
        format!(
            "AWS_ACCESS_KEY_ID={}\nAWS_SECRET_ACCESS_KEY={}\nAWS_ENDPOINT={}\nAWS_REGION=garage\nAWS_ALLOW_HTTP=true\n",
            garage::KEY_ID,
            "0".repeat(64),
            g.endpoint
        ),
    )
    .unwrap();
    let out = cli(&[&"restore", &copy.url, &out_db, &"--key-file", &copy.key, &"--credentials-file", &bad]);
    let line = run::assert_fails(&out, &[] as &[&Path], &[&copy.url]);
    eprintln!("bad credentials: {line}");
    assert!(!line.contains("<?xml"), "the server's error document, not its message: {line}");
    assert_eq!(std::fs::read_dir(&outdir).unwrap().count(), 0);
    // The right key and credentials still restore it.
    run::assert_ok(&cli(&[
        &"restore",
        &copy.url,
        &out_db,
        &"--key-file",
        &copy.key,
        &"--credentials-file",
        &copy.credentials,
    ]));
    assert_equals_node(&out_db, &copy.node.db());
}

// ---------------------------------------------------------------- 5

#[test]
fn a_socket_server_killed_under_the_plugin_loses_nothing_the_node_committed() {
    let (node_dir, mut load) = node_with_database(36);
    let files = tempfile::tempdir().unwrap();
    let server_store = files.path().join("server.redb");
    drop(Store::create(&server_store).unwrap());
    let mut server = Server::start(&server_store, "127.0.0.1:0");
    let local = files.path().join("local.redb");
    let socket = server.url();
    run::assert_ok(&cli(&[&"init", &"--lightning-dir", &node_dir.network(), &local, &socket]));

    let node = start(&node_dir);
    load.resume_at(node.data_version());
    // The node writes in its own thread; the server is killed once 100
    // transactions were committed, while it goes on writing.
    let (progress, committed) = std::sync::mpsc::channel::<u32>();
    let writer = std::thread::spawn(move || {
        let mut node = node;
        for i in 0..3000 {
            let txn = load.next_txn();
            match node.apply(&txn) {
                Ok(()) if i == 100 => progress.send(node.data_version()).unwrap(),
                Ok(()) => {}
                Err(stop) => return (node.data_version(), Some((txn.0, stop)), load),
            }
        }
        (node.data_version(), None, load)
    });
    let at_kill = committed.recv().unwrap();
    server.kill();
    let (reached, stopped, mut load) = writer.join().unwrap();
    eprintln!("killed at {at_kill}; the node committed up to {reached}; stopped by {stopped:?}");
    match stopped {
        Some((v, Stop::Refused(msg))) => {
            // The next transaction, or a lone report at the committed version.
            assert!(v == reached + 1 || v == reached, "refused {v} after committing {reached}");
            assert!(msg.contains(&socket), "{msg} does not name {socket}");
        }
        Some((v, other)) => panic!("the plugin failed otherwise at {v}: {other}"),
        None => panic!("the node wrote 3000 changes to a killed server without an error"),
    }
    // Every change the node committed is on the server.
    server.restart();
    let info = info_json(&socket, &[]);
    let head = info["version"].as_u64().unwrap();
    assert!(head >= u64::from(reached) && head <= u64::from(reached) + 1, "server at {head}, node at {reached}");

    let mut node = start(&node_dir);
    assert!(node.logged("Versions match up") || node.logged("rewinding non-committed transaction"), "{:?}", node.logs);
    load.resume_at(node.data_version());
    apply(&mut node, &mut load, 30);
    node.stop();
    let out_db = files.path().join("restored.sqlite3");
    run::assert_ok(&cli(&[&"restore", &socket, &out_db]));
    assert_equals_node(&out_db, &node_dir.db());
}

// ---------------------------------------------------------------- 6

#[test]
fn restore_info_and_verify_of_an_s3_copy_write_nothing_to_the_bucket() {
    let Some(g) = garage_or_skip() else { return };
    let copy = populated(g, "readonly", 37);
    let before = listing(g, &copy.prefix);
    assert!(before.iter().any(|(name, ..)| name.ends_with("/lease")), "{before:?}");
    let creds: [&dyn AsRef<std::ffi::OsStr>; 4] = [&"--key-file", &copy.key, &"--credentials-file", &copy.credentials];
    let info = info_json(&copy.url, &creds);
    assert_eq!(info["version"], json!(copy.version), "{info}");
    let out_db = copy.out("restored.sqlite3");
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"restore", &copy.url, &out_db];
    args.extend_from_slice(&creds);
    run::assert_ok(&cli(&args));
    assert_equals_node(&out_db, &copy.node.db());
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"verify", &copy.url];
    args.extend_from_slice(&creds);
    run::assert_ok(&cli(&args));
    assert_eq!(listing(g, &copy.prefix), before, "a reader changed the bucket");
    assert_eq!(info_json(&copy.url, &creds), info);
}

// ---------------------------------------------------------------- a new user's mistakes

#[test]
fn a_new_users_mistakes_are_one_line_naming_the_thing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("node.redb");
    drop(Store::create(&store).unwrap());
    // Listening on every address without saying so.
    let out = cli(&[&"server", &"--listen", &"0.0.0.0:9", &store]);
    run::assert_fails(&out, &[] as &[&Path], &["0.0.0.0:9", "--allow-remote"]);
    // A database or a legacy backup given as the store: said what it is.
    let db = dir.path().join("lightningd.sqlite3");
    rusqlite::Connection::open(&db).unwrap().execute_batch("CREATE TABLE vars (name TEXT)").unwrap();
    let out = cli(&[&"server", &"--listen", &"127.0.0.1:0", &db]);
    run::assert_fails(&out, &[&db], &["SQLite database"]);
    let dbak = dir.path().join("backup.dbak");
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak"), &dbak).unwrap();
    let out = cli(&[&"server", &"--listen", &"127.0.0.1:0", &dbak]);
    run::assert_fails(&out, &[&dbak], &["import"]);
    // Object storage with no local store: refused before a key is made.
    let node = NodeDir::new();
    let key = dir.path().join("new.key");
    let out = cli(&[&"init", &"--lightning-dir", &node.network(), &"s3://bucket/node", &"--key-file", &key]);
    run::assert_fails(&out, &[] as &[&Path], &["s3://bucket/node", "local store"]);
    assert!(!key.exists(), "a refused init made the key file {}", key.display());
    // --async naming a DEST that is not among them.
    let a = dir.path().join("a.redb");
    let b = dir.path().join("b.redb");
    let out = cli(&[&"init", &"--lightning-dir", &node.network(), &a, &"--async", &b]);
    run::assert_fails(&out, &[&b], &["--async"]);
    assert!(!a.exists());
}

#[test]
fn no_credentials_at_all_is_one_line_naming_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    write_key(&key, 0x11);
    let out_db = dir.path().join("out.sqlite3");
    let mut cmd = run::command();
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    // No instance metadata service here either: a closed port of loopback.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    cmd.env("AWS_METADATA_ENDPOINT", format!("http://{closed}"));
    let out = cmd.args(["restore", "s3://bucket/node"]).arg(&out_db).arg("--key-file").arg(&key).output().unwrap();
    let line = run::assert_fails(&out, &[] as &[&Path], &["s3://bucket/node", "no credentials"]);
    eprintln!("no credentials: {line}");
    assert!(line.contains("AWS_ACCESS_KEY_ID"), "{line}");
    assert!(!out_db.exists());
}

#[test]
fn sigint_during_a_restore_from_s3_is_one_line_and_leaves_nothing() {
    let Some(g) = garage_or_skip() else { return };
    let copy = populated(g, "sigint", 38);
    let relay = Relay::start(&g.endpoint);
    let credentials = relay.credentials_file(copy.files.path());
    let outdir = copy.files.path().join("out");
    std::fs::create_dir(&outdir).unwrap();
    let out_db = outdir.join("lightningd.sqlite3");
    // Garage holds every answer: the restore waits on its first request.
    relay.hold(true);
    let child = run::command()
        .args(["restore", &copy.url])
        .arg(&out_db)
        .arg("--key-file")
        .arg(&copy.key)
        .arg("--credentials-file")
        .arg(&credentials)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let hung = std::time::Instant::now() + Duration::from_secs(60);
    while relay.accepted.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < hung, "the restore never reached the relay");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    relay.hold(false);
    let line = run::assert_fails(&out, &[] as &[&Path], &["interrupted by SIGINT"]);
    eprintln!("{line}");
    assert_eq!(out.status.code(), Some(130), "{line}");
    let left: Vec<_> = std::fs::read_dir(&outdir).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(left.is_empty(), "the interrupted restore left {left:?}");
}
