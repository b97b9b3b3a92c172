//! A store on a disk that fills up, end to end: the real plugin, driven by
//! the lightningd simulator, on a size-limited tmpfs. The write that does not
//! fit is refused (lightningd stops without committing it) with a log line
//! that tells the operator what to do; once space is freed, the node starts
//! again and goes on, and the restore equals the node's database.
//!
//! Mounting needs root (or a user namespace); where the mount is refused the
//! test says so and passes, and the library's fault campaign
//! (`store::power_cut`, a simulated full disk) still covers the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;
#[path = "support/workload.rs"]
mod workload;

use cln_backup::{restore, Store};
use sim::{Node, NodeDir, Start, Stop};
use std::path::{Path, PathBuf};
use std::process::Command;

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
