//! Moving a node from the Python backup plugin to cln-backup and back, as
//! README.md tells an operator to, on the real pre-4090 fixture.
//!
//! The README's blocks marked `<!-- migration-steps -->`,
//! `<!-- migration-back-steps -->` and `<!-- restore-steps -->` are run as
//! written, command by command, with the real binary. The rule: only lines
//! starting with `cln-backup` are run (stopping and starting the node is the
//! operator's), split on spaces, with `~/.lightning` and `/backups` at the
//! start of a word replaced by `<tmp>/lightning` and `<tmp>/backups`.
//! Then the refusals: each leaves `backup.lock` as it was.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;

mod support;

use cln_backup::compare::{compare_databases_with, Labels, Rows};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::run::{assert_fails, assert_ok, command};

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");
const FIXTURE_SQL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-restored.sql");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
const BIN: &str = env!("CARGO_BIN_EXE_cln-backup");

/// Run the binary with `args` (paths and words alike).
fn run<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Output {
    command().args(args).output().unwrap()
}

/// The shell commands of the README's fenced block after `<!-- marker -->`.
fn readme_block(marker: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(README).unwrap();
    let tag = format!("<!-- {marker} -->");
    let after = &readme[readme.find(&tag).unwrap_or_else(|| panic!("README has no {tag}")) + tag.len()..];
    let body = after.trim_start().strip_prefix("```sh\n").unwrap_or_else(|| panic!("{tag} is not before a sh block"));
    let body = &body[..body.find("```").unwrap()];
    body.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// The `cln-backup` commands of a block, with the documented substitution.
fn commands(marker: &str, tmp: &Path) -> Vec<Vec<String>> {
    let lines = readme_block(marker);
    let cmds: Vec<Vec<String>> = lines
        .iter()
        .filter(|l| l.starts_with("cln-backup "))
        .map(|l| {
            assert!(!l.contains(['"', '\'', '$', '\\']), "not a plain command: {l}");
            l.split_whitespace().skip(1).map(|w| substitute(w, tmp)).collect()
        })
        .collect();
    assert!(!cmds.is_empty(), "{marker}: no cln-backup command in {lines:?}");
    cmds
}

fn substitute(word: &str, tmp: &Path) -> String {
    for (from, to) in [("~/.lightning", "lightning"), ("/backups", "backups")] {
        if let Some(rest) = word.strip_prefix(from) {
            return format!("{}{rest}", tmp.join(to).display());
        }
    }
    word.to_string()
}

/// A stopped node that ran with the Python plugin: `<tmp>/lightning/bitcoin`
/// holds the database at the backup's head and a `backup.lock` naming
/// `<tmp>/backups/backup.dbak`.
struct Setup {
    tmp: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let net = tmp.path().join("lightning/bitcoin");
        std::fs::create_dir_all(&net).unwrap();
        std::fs::create_dir_all(tmp.path().join("backups")).unwrap();
        std::fs::copy(FIXTURE_DBAK, tmp.path().join("backups/backup.dbak")).unwrap();
        assert_ok(&run(&[Path::new("restore"), Path::new(FIXTURE_DBAK), &net]));
        let s = Setup { tmp };
        std::fs::write(s.lock(), s.python_lock()).unwrap();
        s
    }
    fn net(&self) -> PathBuf {
        self.tmp.path().join("lightning/bitcoin")
    }
    fn lock(&self) -> PathBuf {
        self.net().join("backup.lock")
    }
    fn backup(&self, name: &str) -> PathBuf {
        self.tmp.path().join("backups").join(name)
    }
    /// The lock the Python plugin wrote.
    fn python_lock(&self) -> String {
        format!("{{\"backend_url\": \"file://{}\"}}", self.backup("backup.dbak").display())
    }
    fn run(&self, marker: &str) {
        for cmd in commands(marker, self.tmp.path()) {
            assert_ok(&run(&cmd));
        }
    }
}

/// `backup` restores to the database of the fixture's `.sql` dump.
#[track_caller]
fn assert_restores_to_fixture(backup: &Path, tmp: &Path) {
    let dest = tmp.join(format!("check-{}.sqlite3", backup.file_name().unwrap().to_string_lossy()));
    assert_ok(&run(&[Path::new("restore"), backup, &dest]));
    assert_is_fixture(&dest);
}

/// `db` holds the database of the fixture's `.sql` dump, by the library's
/// comparer. Rows are compared as multisets: a `.dump` does not keep the
/// rowids of tables without an INTEGER PRIMARY KEY.
#[track_caller]
fn assert_is_fixture(db: &Path) {
    let dir = tempfile::tempdir().unwrap();
    let expected = dir.path().join("expected.sqlite3");
    Connection::open(&expected).unwrap().execute_batch(&std::fs::read_to_string(FIXTURE_SQL).unwrap()).unwrap();
    if let Some(d) = compare_databases_with(db, &expected, Labels::RESTORED_AND_EXPECTED, Rows::AsMultiset).unwrap() {
        panic!("{d}");
    }
}

#[test]
fn the_readme_migration_runs_as_written_and_back() {
    let s = Setup::new();
    s.run("migration-steps");
    let store = s.backup("node.redb");
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    assert_eq!(std::fs::read_to_string(s.lock()).unwrap(), format!("{{\"backend_url\": \"file://{}\"}}", abs(&store)));
    assert_eq!(std::fs::read_to_string(s.net().join("backup.lock.python")).unwrap(), s.python_lock());
    assert_restores_to_fixture(&store, s.tmp.path());
    // The .dbak is left as it was.
    assert_eq!(std::fs::read(s.backup("backup.dbak")).unwrap(), std::fs::read(FIXTURE_DBAK).unwrap());

    let ours = std::fs::read_to_string(s.lock()).unwrap();
    s.run("migration-back-steps");
    let back = s.backup("back.dbak");
    assert_eq!(std::fs::read_to_string(s.lock()).unwrap(), format!("{{\"backend_url\": \"file://{}\"}}", abs(&back)));
    assert_eq!(std::fs::read_to_string(s.net().join("backup.lock.cln-backup")).unwrap(), ours);
    assert!(cln_backup::legacy::is_dbak(&back));
    assert_restores_to_fixture(&back, s.tmp.path());
}

#[test]
fn the_readme_restore_runbook_runs_as_written() {
    let s = Setup::new();
    assert_ok(&run(&[Path::new("import"), Path::new(FIXTURE_DBAK), &s.backup("node.redb")]));
    // The node's database is lost.
    std::fs::write(s.net().join("lightningd.sqlite3"), b"").unwrap();
    s.run("restore-steps");
    assert_is_fixture(&s.net().join("lightningd.sqlite3"));
}

#[test]
fn a_lock_naming_another_backup_is_refused_before_anything_is_written() {
    let s = Setup::new();
    let elsewhere = s.backup("other.dbak");
    std::fs::copy(FIXTURE_DBAK, &elsewhere).unwrap();
    let lock = format!("{{\"backend_url\": \"file://{}\"}}", elsewhere.display());
    std::fs::write(s.lock(), &lock).unwrap();
    let store = s.backup("node.redb");
    let out = run(&[Path::new("import"), Path::new("--lightning-dir"), &s.net(), &s.backup("backup.dbak"), &store]);
    assert_fails(&out, &[&s.lock()], &["names", "other.dbak", "refusing"]);
    assert_eq!(std::fs::read_to_string(s.lock()).unwrap(), lock);
    assert!(!store.exists());
}

#[test]
fn a_kept_lock_is_never_overwritten() {
    let s = Setup::new();
    let kept = s.net().join("backup.lock.python");
    std::fs::write(&kept, "earlier").unwrap();
    let store = s.backup("node.redb");
    let out = run(&[Path::new("import"), Path::new("--lightning-dir"), &s.net(), &s.backup("backup.dbak"), &store]);
    assert_fails(&out, &[&kept], &["already exists"]);
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), "earlier");
    assert_eq!(std::fs::read_to_string(s.lock()).unwrap(), s.python_lock());
    assert!(!store.exists());
}

#[test]
fn a_node_database_that_differs_leaves_the_lock_and_says_why() {
    let s = Setup::new();
    let db = s.net().join("lightningd.sqlite3");
    // The node ran on after the backup's last record.
    Connection::open(&db)
        .unwrap()
        .execute_batch("UPDATE vars SET intval = intval + 1 WHERE name = 'data_version'")
        .unwrap();
    let store = s.backup("node.redb");
    let out = run(&[Path::new("import"), Path::new("--lightning-dir"), &s.net(), &s.backup("backup.dbak"), &store]);
    assert_fails(&out, &[&db], &["differs from the backup's head at version 46", "stop the node", "left unchanged"]);
    assert_eq!(std::fs::read_to_string(s.lock()).unwrap(), s.python_lock());
    assert!(!s.net().join("backup.lock.python").exists());
    assert!(!store.exists(), "the store made from the .dbak is removed, so the command can be run again");
}

#[test]
fn init_on_the_base_directory_names_the_network_directory() {
    let s = Setup::new();
    std::fs::remove_file(s.lock()).unwrap();
    let base = s.tmp.path().join("lightning");
    let store = s.backup("node.redb");
    let out = run(&[Path::new("init"), Path::new("--lightning-dir"), &base, &store]);
    assert_fails(&out, &[&base], &["base directory", &format!("--lightning-dir {}", s.net().display())]);
    assert!(!store.exists(), "no empty backup is created");
    assert!(!base.join("backup.lock").exists());
}

#[test]
fn init_and_the_plugin_name_the_import_command_for_a_python_lock() {
    let s = Setup::new();
    let expected = format!(
        "cln-backup import --lightning-dir {} {} {}",
        s.net().display(),
        s.backup("backup.dbak").display(),
        s.backup("backup.redb").display()
    );
    let out = run(&[Path::new("init"), Path::new("--lightning-dir"), &s.net(), &s.backup("x.redb")]);
    assert_fails(&out, &[&s.lock()], &[&expected]);

    // The plugin, started by lightningd in the node's network directory.
    let dir = sim::NodeDir::new();
    std::fs::copy(s.net().join("lightningd.sqlite3"), dir.db()).unwrap();
    let dbak = dir.root.path().join("backup.dbak");
    std::fs::copy(FIXTURE_DBAK, &dbak).unwrap();
    std::fs::write(dir.network().join("backup.lock"), format!("{{\"backend_url\": \"file://{}\"}}", dbak.display()))
        .unwrap();
    let msg = match sim::Node::start(&dir, &sim::Start::with_plugin(BIN)) {
        Err(sim::Stop::Refused(msg)) => msg,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(node) => panic!("the plugin accepted a .dbak lock: {:?}", node.logs),
    };
    let network = std::fs::canonicalize(dir.network()).unwrap();
    let command = format!(
        "cln-backup import --lightning-dir {} {} {}",
        network.display(),
        dbak.display(),
        dbak.with_extension("redb").display()
    );
    assert!(msg.contains(&format!("`{command}`")), "{msg}");
    // Running it as printed moves the node over.
    let words: Vec<&str> = command.split_whitespace().skip(1).collect();
    assert_ok(&run(&words));
    let lock = std::fs::read_to_string(dir.network().join("backup.lock")).unwrap();
    assert!(lock.contains(&dbak.with_extension("redb").display().to_string()), "{lock}");
    assert!(dir.network().join("backup.lock.python").exists());
}

#[test]
fn exporting_back_refuses_a_version_other_than_the_head() {
    let s = Setup::new();
    s.run("migration-steps");
    let ours = std::fs::read_to_string(s.lock()).unwrap();
    let back = s.backup("back.dbak");
    let out = run(&[
        Path::new("export"),
        Path::new("--format"),
        Path::new("dbak"),
        Path::new("--to-version"),
        Path::new("40"),
        Path::new("--lightning-dir"),
        &s.net(),
        &s.backup("node.redb"),
        &back,
    ]);
    assert_fails(&out, &[&s.net()], &["--to-version", "older state"]);
    assert_eq!(std::fs::read_to_string(s.lock()).unwrap(), ours);
    assert!(!back.exists());
}
