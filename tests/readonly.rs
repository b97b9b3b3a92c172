//! Reading a store never writes it: `info`, `verify`, `restore` and `export`
//! run by the real binary leave the store file's bytes as they were, work on
//! a file the user may only read and on read-only media, read a store whose
//! writer crashed without repairing the file, and refuse a store a live
//! writer holds. Writes through a read-only store are refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::{Error, Store};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use support::run::command;
use support::workload::{assert_same_db, Txn, Workload};
use support::{add_all, reference};

/// The environment variable that turns [`helper_hold_store`] into a writer.
const HOLD: &str = "CLN_BACKUP_TEST_HOLD_STORE";
const READY: &str = "store-held-and-written";
const SEED: u64 = 7;
const HELD_CHANGES: usize = 60;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[track_caller]
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A store with a snapshot (from a compaction), sealed segments and a tail.
fn build_store(dir: &Path) -> (PathBuf, Vec<Txn>) {
    let path = dir.join("node.redb");
    let txns = Workload::generate(SEED, 420);
    let store = Store::create(&path).unwrap();
    add_all(&store, &txns[..60]);
    let stats = cln_backup::compact::compact(&store, &Default::default()).unwrap();
    assert!(stats.compacted);
    add_all(&store, &txns[60..]);
    drop(store);
    (path, txns)
}

/// Every reading command, as argument lists; outputs go under `out`.
fn reading_commands(store: &Path, out: &Path) -> Vec<(String, Vec<String>)> {
    let s = store.display().to_string();
    let o = |name: &str| out.join(name).display().to_string();
    let v = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    vec![
        ("info".into(), v(&["info", &s])),
        ("info --json".into(), v(&["info", "--json", &s])),
        ("verify".into(), v(&["verify", &s])),
        ("restore".into(), v(&["restore", &s, &o("restored.sqlite3")])),
        ("export dbak".into(), v(&["export", "--format", "dbak", &s, &o("out.dbak")])),
        ("export sql".into(), v(&["export", "--format", "sql", &s, &o("out.sql")])),
        ("export sql --dump".into(), v(&["export", "--format", "sql", "--dump", &s, &o("dump.sql")])),
    ]
}

/// Run every reading command on `store` (through `wrap`, which may change the
/// user) and check that each succeeds and leaves the file's bytes unchanged.
fn run_all_unchanged(store: &Path, out: &Path, wrap: impl Fn(&[String]) -> Command) {
    let before = std::fs::read(store).unwrap();
    for (name, args) in reading_commands(store, out) {
        let result = wrap(&args).output().unwrap();
        assert_ok(&result, &name);
        assert!(std::fs::read(store).unwrap() == before, "`{name}` changed the bytes of {}", store.display());
    }
    assert!(out.join("restored.sqlite3").exists());
}

fn plain(args: &[String]) -> Command {
    let mut c = command();
    c.args(args);
    c
}

#[test]
fn reading_commands_leave_the_store_file_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let (store, txns) = build_store(dir.path());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_all_unchanged(&store, &out, plain);
    let expected = reference(dir.path(), "reference.sqlite3", &txns);
    assert_same_db(&out.join("restored.sqlite3"), &expected);
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0).unwrap_or(false)
}

fn have(program: &str) -> bool {
    Command::new(program).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn reading_commands_work_on_a_store_the_user_may_only_read() {
    let dir = tempfile::tempdir().unwrap();
    chmod(dir.path(), 0o755);
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let (store, _) = build_store(&ro);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    chmod(&out, 0o777);
    chmod(&store, 0o444);
    chmod(&ro, 0o555);
    let root = is_root();
    if root && !have("setpriv") {
        eprintln!("skipped: running as root and setpriv is not installed, so no user that may only read the store");
        chmod(&ro, 0o755);
        return;
    }
    run_all_unchanged(&store, &out, |args| {
        if root {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(env!("CARGO_BIN_EXE_cln-backup"))
                .args(args)
                .env_remove("RUST_LOG")
                .env_remove("LIGHTNINGD_PLUGIN")
                .env("TMPDIR", "/tmp");
            c
        } else {
            plain(args)
        }
    });
    // Let the temporary directory go.
    chmod(&ro, 0o755);
}

/// A read-only bind mount, unmounted when dropped.
struct ReadOnlyMount {
    target: PathBuf,
}

impl ReadOnlyMount {
    fn new(source: &Path, target: &Path) -> Result<ReadOnlyMount, String> {
        let run = |args: &[&dyn AsRef<std::ffi::OsStr>]| -> Result<(), String> {
            let out = Command::new("mount").args(args).output().map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(text(&out.stderr))
            }
        };
        run(&[&"--bind", &source, &target])?;
        // Dropped (so unmounted) if the remount fails.
        let m = ReadOnlyMount { target: target.to_path_buf() };
        run(&[&"-o", &"remount,bind,ro", &target])?;
        Ok(m)
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}

#[test]
fn reading_commands_work_on_a_read_only_mount() {
    if !is_root() {
        eprintln!("skipped: mounting needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    build_store(&src);
    let mount = match ReadOnlyMount::new(&src, &mnt) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("skipped: cannot make a read-only bind mount here: {}", e.trim());
            return;
        }
    };
    let store = mnt.join("node.redb");
    // The mount really is read-only.
    assert!(std::fs::OpenOptions::new().write(true).open(&store).is_err());
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_all_unchanged(&store, &out, plain);
    drop(mount);
}

/// Not a test of its own: with [`HOLD`] set to a path, it creates a store
/// there, adds changes, says so on stdout and holds the store open until
/// killed. Lets a test have a writer in another process.
#[test]
fn helper_hold_store() {
    let Ok(path) = std::env::var(HOLD) else { return };
    let store = Store::create(&path).unwrap();
    add_all(&store, &Workload::generate(SEED, HELD_CHANGES));
    println!("{READY}");
    std::thread::sleep(std::time::Duration::from_secs(600));
    drop(store);
}

/// A child process holding a new store at `path`, after its writes.
fn writer_process(path: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "helper_hold_store", "--nocapture", "--test-threads=1"])
        .env(HOLD, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains(READY));
    assert!(ready, "the writer process ended before holding the store");
    child
}

#[test]
fn a_crashed_writers_store_restores_without_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("crashed.redb");
    let mut writer = writer_process(&store);
    // SIGKILL: the store is left as a crash leaves it, needing redb's repair.
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(
        matches!(redb::ReadOnlyDatabase::open(&store), Err(redb::DatabaseError::RepairAborted)),
        "the killed writer should leave a file that needs repair"
    );
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    run_all_unchanged(&store, &out, plain);
    let txns = Workload::generate(SEED, HELD_CHANGES);
    let expected = reference(dir.path(), "reference.sqlite3", &txns);
    assert_same_db(&out.join("restored.sqlite3"), &expected);

    // The library too: every change is there, and the file still needs repair.
    let before = std::fs::read(&store).unwrap();
    let opened = Store::open_read_only(&store).unwrap();
    assert_eq!(opened.version(), txns.last().unwrap().0);
    drop(opened);
    assert!(std::fs::read(&store).unwrap() == before);
}

#[test]
fn a_store_held_by_a_live_writer_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("live.redb");
    let mut writer = writer_process(&store);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let before = std::fs::read(&store).unwrap();
    for (name, args) in reading_commands(&store, &out) {
        let result = plain(&args).output().unwrap();
        let err = text(&result.stderr);
        assert!(!result.status.success(), "`{name}` read a store a live writer holds");
        assert_eq!(err.lines().count(), 1, "`{name}`: {err:?}");
        assert!(err.contains(&store.display().to_string()), "`{name}`: {err:?}");
        assert!(err.contains("already open in another process"), "`{name}`: {err:?}");
        assert!(err.contains("backup-status"), "`{name}` gives no hint: {err:?}");
    }
    assert!(!out.join("restored.sqlite3").exists());
    let refused = Store::open_read_only(&store).unwrap_err();
    assert!(matches!(refused, Error::StoreLocked { .. }), "{refused}");
    writer.kill().unwrap();
    writer.wait().unwrap();
    assert!(std::fs::read(&store).unwrap() == before, "a refused reader changed the file");
}

#[test]
fn a_read_only_store_refuses_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (path, txns) = build_store(dir.path());
    let before = std::fs::read(&path).unwrap();
    let mut store = Store::open_read_only(&path).unwrap();
    assert!(store.is_read_only());
    let head = store.version();
    let refused = |e: Error| {
        assert!(matches!(e, Error::ReadOnly { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    };
    let next = Workload::generate(SEED, txns.len() + 1).pop().unwrap();
    refused(store.add_change(next.0, &next.1).unwrap_err());
    refused(store.rewind().unwrap_err());
    refused(store.add_snapshot(head, &mut std::io::empty()).unwrap_err());
    refused(store.bulk_load().unwrap_err());
    refused(cln_backup::compact::compact(&store, &Default::default()).unwrap_err());
    refused(store.shrink_file().unwrap_err());
    // Reading still works.
    let reader = store.reader().unwrap();
    assert_eq!(reader.changes(reader.head()).unwrap().count() as u64, reader.change_count());
    drop(reader);
    assert_eq!(store.version(), head);
    drop(store);
    assert!(std::fs::read(&path).unwrap() == before);
    // And a read-only store does not keep a writer out once closed.
    assert_eq!(Store::open(&path).unwrap().version(), head);
}
