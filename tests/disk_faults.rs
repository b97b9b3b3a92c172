//! A failing disk under the store, end to end: the real plugin, driven by
//! the lightningd simulator.
//!
//! - A disk that fills up: the store on a size-limited tmpfs. The write that
//!   does not fit is refused (lightningd stops without committing it) with a
//!   log line that tells the operator what to do; once space is freed, the
//!   node starts again and goes on.
//! - A disk that fails: the store on a pass-through FUSE file system
//!   (`tests/peers/faultfs.py`) told to fail every write, or every sync,
//!   with `EIO`. The same refusal, the same recovery once the disk works.
//!
//! Each ends with a restore equal to the node's database. Mounting needs
//! root (and, for FUSE, Python's fusepy and libfuse); where it cannot be
//! done the test says so and passes, and the library's fault campaign
//! (`store::power_cut`: a simulated disk that fills up or fails) still
//! covers the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;
#[path = "support/workload.rs"]
mod workload;

use cln_backup::{restore, Store};
use sim::{Node, NodeDir, Start, Stop};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount a size-limited tmpfs here ({}); the simulated full disk of the library's campaign still runs",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn resize(&self, size: &str) {
        let out =
            Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(self.dir.path()).output().unwrap();
        assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn restore_and_compare(store: &Path, node_db: &Path) {
    let store = Store::open(store).unwrap();
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().join("restored.sqlite3");
    restore::restore_store(&store, &dest, &restore::Options::default()).unwrap();
    workload::assert_same_db(&dest, node_db);
}

#[test]
fn a_full_disk_stops_the_node_without_committing_and_it_goes_on_once_space_is_freed() {
    let Some(disk) = Tmpfs::mount("3m") else { return };
    let dir = NodeDir::new();
    let store: PathBuf = disk.path().join("backup.redb");
    Store::create(&store).unwrap();
    sim::write_lock(&dir, &store);

    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    let mut load = workload::Workload::on_existing_schema(7, node.data_version());
    let mut refused = None;
    for _ in 0..200_000 {
        let txn = load.next_txn();
        let before = node.data_version();
        match node.apply(&txn) {
            Ok(()) => {}
            Err(Stop::Refused(message)) => {
                // lightningd stops without committing the refused write.
                refused = Some((message, before));
                break;
            }
            Err(e) => panic!("the node stopped for another reason: {e}"),
        }
    }
    let (message, committed) = refused.expect("the disk never filled up");
    assert!(message.contains("free disk space"), "the refusal does not say what to do: {message}");
    assert!(message.contains(&store.display().to_string()), "the refusal does not name the store: {message}");
    drop(node);
    let db = rusqlite::Connection::open(dir.db()).unwrap();
    let version: u32 = db.query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0)).unwrap();
    assert_eq!(version, committed, "the refused write was committed");
    drop(db);

    // Space freed: the node starts, the versions agree, and it goes on.
    disk.resize("64m");
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    assert!(node.logged("Versions match up") || node.logged("rewinding non-committed transaction"), "{:?}", node.logs);
    load.resume_at(node.data_version());
    for _ in 0..300 {
        let txn = load.next_txn();
        node.apply(&txn).unwrap();
    }
    node.stop();
    restore_and_compare(&store, &dir.db());
}

/// `tests/peers/faultfs.py` mounted for the test, unmounted when dropped.
struct FaultFs {
    mount: tempfile::TempDir,
    control: PathBuf,
    child: Child,
    _backing: tempfile::TempDir,
    _ctl: tempfile::TempDir,
}

impl FaultFs {
    fn start() -> Option<FaultFs> {
        let backing = tempfile::tempdir().unwrap();
        let mount = tempfile::tempdir().unwrap();
        let ctl = tempfile::tempdir().unwrap();
        let control = ctl.path().join("fault");
        std::fs::write(&control, "").unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/faultfs.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(backing.path())
            .arg(mount.path())
            .arg(&control)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        let mut fs = FaultFs { mount, control, child, _backing: backing, _ctl: ctl };
        let deadline = Instant::now() + Duration::from_secs(15);
        let target = fs.mount.path().display().to_string();
        loop {
            let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
            if mounts.lines().any(|l| l.split(' ').nth(1) == Some(target.as_str())) {
                return Some(fs);
            }
            if let Ok(Some(_)) = fs.child.try_wait() {
                let mut why = String::new();
                if let Some(mut e) = fs.child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut e, &mut why);
                }
                let why = why.lines().last().unwrap_or("it exited").to_string();
                eprintln!("skipped: cannot mount the fault-injecting FUSE file system here ({why}); the library's simulated failing disk still runs");
                return None;
            }
            if Instant::now() > deadline {
                eprintln!("skipped: the fault-injecting FUSE file system did not mount within 15 s");
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn path(&self) -> &Path {
        self.mount.path()
    }

    /// `eio-write`, `eio-sync`, or `""` for none.
    fn fault(&self, what: &str) {
        std::fs::write(&self.control, what).unwrap();
    }
}

impl Drop for FaultFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.mount.path()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `statements` (a workload transaction without its bump) as the node's
/// next transaction, keeping the workload in step.
fn run(node: &mut Node, load: &mut workload::Workload, statements: Vec<String>) -> Result<(), Stop> {
    node.transaction(statements)?;
    load.resume_at(node.data_version());
    Ok(())
}

fn next(load: &mut workload::Workload, node: &Node) -> Vec<String> {
    load.resume_at(node.data_version());
    let (_, mut statements) = load.next_txn();
    statements.pop();
    statements
}

#[test]
fn an_io_error_on_write_or_on_sync_stops_the_node_without_committing_and_it_goes_on_after() {
    let Some(disk) = FaultFs::start() else { return };
    let dir = NodeDir::new();
    let store: PathBuf = disk.path().join("backup.redb");
    Store::create(&store).unwrap();
    sim::write_lock(&dir, &store);
    let mut node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
    let mut load = workload::Workload::on_existing_schema(9, node.data_version());
    for _ in 0..40 {
        let s = next(&mut load, &node);
        run(&mut node, &mut load, s).unwrap();
    }
    for fault in ["eio-sync", "eio-write"] {
        disk.fault(fault);
        let committed = node.data_version();
        let statements = next(&mut load, &node);
        let message = match run(&mut node, &mut load, statements.clone()) {
            Err(Stop::Refused(message)) => message,
            Ok(()) => panic!("{fault}: a write was answered continue on a failing disk"),
            Err(e) => panic!("{fault}: the node stopped for another reason: {e}"),
        };
        assert!(message.contains("fix the disk"), "{fault}: the refusal does not say what to do: {message}");
        assert!(
            message.contains(&store.display().to_string()),
            "{fault}: the refusal does not name the store: {message}"
        );
        drop(node);
        let db = rusqlite::Connection::open(dir.db()).unwrap();
        let version: u32 =
            db.query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0)).unwrap();
        assert_eq!(version, committed, "{fault}: the refused write was committed");
        drop(db);

        // The disk works again: the node starts, the versions agree (or the
        // change it never committed is rewound), and it runs again what it
        // did not commit.
        disk.fault("");
        node = Node::start(&dir, &Start::with_plugin(BIN)).unwrap();
        assert!(
            node.logged("Versions match up") || node.logged("rewinding non-committed transaction"),
            "{fault}: {:?}",
            node.logs
        );
        run(&mut node, &mut load, statements).unwrap();
        for _ in 0..40 {
            let s = next(&mut load, &node);
            run(&mut node, &mut load, s).unwrap();
        }
    }
    node.stop();
    restore_and_compare(&store, &dir.db());
}
