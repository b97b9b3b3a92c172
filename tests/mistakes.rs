//! Mistakes an operator makes with the `cln-backup` binary, and what it
//! must answer: the wrong kind of file given as a `.dbak`, lightningd's base
//! directory given where the node's database is meant, and log lines read
//! from a file rather than a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/sim.rs"]
mod sim;

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::run::{assert_fails, assert_ok, cln_backup, command, stderr, stdout};

const FIXTURE_DBAK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pre-4090-backup.dbak");

/// The fixture imported into `dir/node.redb`, and a lightningd base
/// directory `dir/.lightning` whose `bitcoin` network directory holds the
/// restored database.
fn node(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let store = dir.join("node.redb");
    assert_ok(&cln_backup(&[&"import", &FIXTURE_DBAK, &store]));
    let base = dir.join(".lightning");
    let net = base.join("bitcoin");
    std::fs::create_dir_all(&net).unwrap();
    assert_ok(&cln_backup(&[&"restore", &store, &net]));
    (store, base, net)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn a_store_or_a_database_given_as_a_dbak_is_named_for_what_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, net) = node(dir.path());
    let db = net.join("lightningd.sqlite3");
    let out = dir.path().join("new.redb");

    let err = cln_backup(&[&"import", &store, &out]);
    let line = assert_fails(&err, &[&store], &["not a legacy .dbak backup", "cln-backup store"]);
    assert!(!line.contains("file_version"), "{line}");

    let err = cln_backup(&[&"import", &db, &out]);
    let line = assert_fails(&err, &[&db], &["not a legacy .dbak backup", "SQLite database"]);
    assert!(!line.contains("file_version"), "{line}");

    assert!(!out.exists(), "a refused import leaves no store");
}

#[test]
fn a_version_missing_from_a_dbak_is_not_said_to_be_missing_from_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("db.sqlite3");
    let err = cln_backup(&[&"restore", &"--to-version", &"99", &FIXTURE_DBAK, &dest]);
    let line = assert_fails(&err, &[Path::new(FIXTURE_DBAK)], &["version 99 is not restorable"]);
    assert!(!line.contains("store"), "{line}");
}

#[test]
fn restore_into_the_base_directory_is_refused_naming_the_network_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (store, base, net) = node(dir.path());
    let before = names(&base);

    for force in [false, true] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"restore", &store, &base];
        if force {
            args.push(&"--force");
        }
        let err = cln_backup(&args);
        let line = assert_fails(&err, &[&base], &["base directory"]);
        assert!(line.contains(&net.display().to_string()), "{line} does not name {}", net.display());
        assert_eq!(names(&base), before, "nothing is written into the base directory");
    }

    // The same file named by a dbak source, and by verify --against, which
    // says so before replaying anything.
    let err = cln_backup(&[&"restore", &FIXTURE_DBAK, &base]);
    assert_fails(&err, &[&base], &["base directory", &net.display().to_string()]);
    let err = cln_backup(&[&"verify", &"--against", &base, &store]);
    assert_fails(&err, &[&base], &["base directory", &net.display().to_string()]);
    assert!(stdout(&err).is_empty(), "verify replayed before telling: {}", stdout(&err));
    assert_eq!(names(&base), before);

    // The network directory itself still works.
    assert_ok(&cln_backup(&[&"restore", &"--force", &store, &net]));
    assert_ok(&cln_backup(&[&"verify", &"--against", &net, &store]));
}

#[test]
fn verify_against_a_missing_file_says_so_before_replaying() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, _) = node(dir.path());
    let missing = dir.path().join("missing.sqlite3");
    let err = cln_backup(&[&"verify", &"--against", &missing, &store]);
    assert_fails(&err, &[&missing], &["no such database file"]);
    assert!(stdout(&err).is_empty(), "{}", stdout(&err));
}

#[test]
fn log_lines_written_to_a_file_carry_no_terminal_colours() {
    let dir = tempfile::tempdir().unwrap();
    // A temporary left by a cln-backup run that is gone: the next run in the
    // directory removes it and logs a warning.
    let mut child = Command::new("true").spawn().unwrap();
    let gone = child.id();
    child.wait().unwrap();
    let leftover = dir.path().join(format!(".cln-backup-restore-{gone}-abcdefgh"));
    std::fs::write(&leftover, b"partial").unwrap();

    let out = cln_backup(&[&"restore", &FIXTURE_DBAK, &dir.path().join("db.sqlite3")]);
    assert_ok(&out);
    let err = stderr(&out);
    assert!(err.contains("left by an interrupted cln-backup run"), "{err:?}");
    assert!(!err.contains('\u{1b}'), "escape codes in a log read from a pipe: {err:?}");
    assert!(!leftover.exists());
}

fn running_as_root() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let probe = dir.path().join("probe");
    std::fs::write(&probe, b"").unwrap();
    std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&probe).unwrap()) == 0
}

const NOBODY: u32 = 65534;

fn owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// Run as root (sudo) for a node whose directory belongs to the user
/// lightningd runs as, init, import and export --lightning-dir give the file
/// the plugin will write to that user: a root-owned 0600 store would stop
/// lightningd at its next start, the plugin unable to open it.
#[test]
fn files_made_for_a_node_by_root_belong_to_the_nodes_user() {
    if !running_as_root() {
        println!("skipped: ownership is tested as root only");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_, base, net) = node(dir.path());
    for path in [&base, &net, &net.join("lightningd.sqlite3")] {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let backups = dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();

    let store = backups.join("init.redb");
    let out = assert_ok(&cln_backup(&[&"init", &"--lightning-dir", &net, &store]));
    assert_eq!(owner(&store), (NOBODY, NOBODY, 0o600), "{out}");
    assert!(out.contains("owner 65534:65534"), "{out}");
    // The node's user can open it.
    let info = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_cln-backup"))
        .arg("info")
        .arg(&store)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_ok(&info);

    // Moving from the Python plugin and back.
    std::fs::remove_file(net.join("backup.lock")).unwrap();
    let imported = backups.join("node.redb");
    assert_ok(&cln_backup(&[&"import", &"--lightning-dir", &net, &FIXTURE_DBAK, &imported]));
    assert_eq!(owner(&imported), (NOBODY, NOBODY, 0o600));
    let back = backups.join("back.dbak");
    assert_ok(&cln_backup(&[&"export", &"--format", &"dbak", &"--lightning-dir", &net, &imported, &back]));
    assert_eq!(owner(&back), (NOBODY, NOBODY, 0o600));

    // Without --lightning-dir there is no node to give it to.
    let plain = backups.join("plain.redb");
    assert_ok(&cln_backup(&[&"init", &plain]));
    assert_eq!(owner(&plain), (0, 0, 0o600));
}

/// A `.dbak` of `n` small transactions, long enough to import that the run
/// can be interrupted in the middle.
fn big_dbak(path: &Path, n: u32) {
    use cln_backup::legacy::DbakWriter;
    use cln_backup::version::bump_statement;
    let file = std::fs::File::create(path).unwrap();
    let mut w = DbakWriter::new(file, path).unwrap();
    w.add_transaction(
        1,
        &[
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
            "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
            "CREATE TABLE t (a INTEGER, b TEXT)".to_string(),
            bump_statement(1),
        ],
    )
    .unwrap();
    for v in 2..=n {
        w.add_transaction(v, &[format!("INSERT INTO t VALUES ({v}, 'row {v}')"), bump_statement(v)]).unwrap();
    }
    w.finish().unwrap();
}

/// Start `cln-backup args` with `TMPDIR=tmpdir`, wait until a temporary or
/// scratch directory of `purpose` appears in `dir`, send `signal` (`-KILL`,
/// `-INT`), and return whether the run was interrupted (rather than done
/// first).
fn interrupt_when_writing(
    args: &[&dyn AsRef<std::ffi::OsStr>],
    tmpdir: &Path,
    dir: &Path,
    purpose: &str,
    signal: &str,
) -> bool {
    let child = command()
        .args(args)
        .env("TMPDIR", tmpdir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let prefix = format!(".cln-backup-{purpose}-{}-", child.id());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !names(dir).iter().any(|n| n.starts_with(&prefix)) {
        assert!(std::time::Instant::now() < deadline, "no temporary {prefix}* appeared in {}", dir.display());
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let killed = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(killed.success());
    !child.wait_with_output().unwrap().status.success()
}

/// verify replays into a scratch directory in $TMPDIR. Killed (SIGKILL
/// cannot be caught), it left a `.tmpXXXX` directory there that nothing
/// ever removed. It is now named as the temporaries beside a target are,
/// and the next run removes it the same way. Ctrl-C (SIGINT) is caught:
/// the run removes it itself.
#[test]
fn an_interrupted_verify_leaves_nothing_the_next_run_does_not_remove() {
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("big.dbak");
    big_dbak(&dbak, 200_000);
    let store = dir.path().join("node.redb");
    assert_ok(&cln_backup(&[&"import", &dbak, &store]));
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();

    let mut interrupted = false;
    for _ in 0..3 {
        if interrupt_when_writing(&[&"verify", &store], &tmp, &tmp, "verify", "-KILL") {
            interrupted = true;
            break;
        }
    }
    assert!(interrupted, "verify always finished before it could be interrupted");
    let left = names(&tmp);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".cln-backup-verify-"), "{left:?}");

    let out = command().args(["verify".as_ref(), store.as_os_str()]).env("TMPDIR", &tmp).output().unwrap();
    assert_ok(&out);
    assert!(stderr(&out).contains("left by an interrupted cln-backup run"), "{}", stderr(&out));
    assert!(names(&tmp).is_empty(), "left behind: {:?}", names(&tmp));

    let mut interrupted = false;
    for _ in 0..3 {
        if interrupt_when_writing(&[&"verify", &store], &tmp, &tmp, "verify", "-INT") {
            interrupted = true;
            break;
        }
    }
    assert!(interrupted, "verify always finished before it could be interrupted");
    assert!(names(&tmp).is_empty(), "Ctrl-C left behind: {:?}", names(&tmp));
}

/// Not root, a restore into a directory of another user says once who owns
/// the file, then on the same line why it is not that user: no owner
/// repeated, no parentheses inside parentheses inside parentheses.
#[test]
fn without_root_the_ownership_line_names_the_file_then_the_reason() {
    if !running_as_root() {
        println!("skipped: needs root to run as another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (store, _, _) = node(dir.path());
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o644)).unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dest = shared.join("lightningd.sqlite3");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_cln-backup"))
        .arg("restore")
        .arg(&store)
        .arg(&dest)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = assert_ok(&out);
    let line = text.lines().find(|l| l.starts_with("Set owner")).unwrap();
    let nobody = std::fs::read_to_string("/etc/passwd").unwrap().lines().any(|l| l.starts_with("nobody:x:65534:"));
    let who = if nobody { "65534:65534 (nobody:" } else { "65534:65534" };
    assert!(line.starts_with(&format!("Set owner {who}")), "{line}");
    assert!(
        line.contains(&format!(
            "mode 0600 on {} (not running as root, so it could not be given to 0:0",
            dest.display()
        )),
        "{line}"
    );
    assert_eq!(line.matches("65534:65534").count(), 1, "the owner is said twice: {line}");
}

/// When backup.lock names a store that will not open, lightningd's log must
/// not tell the operator to run `cln-backup init`: that would start a new
/// backup beside the existing one (and init refuses while backup.lock
/// exists). A store held by another process says so; a damaged or foreign
/// file points at `cln-backup verify`.
#[test]
fn a_store_that_will_not_open_is_not_answered_with_init() {
    use sim::{Node, NodeDir, Start, Stop};
    let refused = |dir: &NodeDir| match Node::start(dir, &Start::with_plugin(env!("CARGO_BIN_EXE_cln-backup"))) {
        Err(Stop::Refused(msg)) => msg,
        Err(other) => panic!("expected a refusal, got {other}"),
        Ok(node) => panic!("expected a refusal, node started with logs {:?}", node.logs),
    };

    let dir = NodeDir::new();
    let store = dir.root.path().join("backup.redb");
    let held = cln_backup::Store::create(&store).unwrap();
    sim::write_lock(&dir, &store);
    let msg = refused(&dir);
    assert!(msg.contains("already open in another process"), "{msg}");
    assert!(!msg.contains("cln-backup init"), "{msg}");
    drop(held);

    let dir = NodeDir::new();
    let store = dir.root.path().join("backup.redb");
    std::fs::write(&store, vec![b'x'; 4096]).unwrap();
    sim::write_lock(&dir, &store);
    let msg = refused(&dir);
    assert!(msg.contains("not a cln-backup store"), "{msg}");
    assert!(!msg.contains("cln-backup init"), "{msg}");
    assert!(msg.contains(&format!("cln-backup verify {}", std::fs::canonicalize(&store).unwrap().display())), "{msg}");
}

/// A node whose lightningd.sqlite3 is a symbolic link to another disk: a
/// restore replaces the file the link points to and keeps the link, rather
/// than put a new file in place of the link and leave the disk's copy stale.
#[test]
fn restore_through_a_symbolic_link_replaces_the_file_it_points_to() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _, net) = node(dir.path());
    let disk = dir.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let real = disk.join("lightningd.sqlite3");
    let link = net.join("lightningd.sqlite3");
    std::fs::rename(&link, &real).unwrap();
    std::os::unix::fs::symlink(&real, &link).unwrap();

    let out = assert_ok(&cln_backup(&[&"restore", &"--force", &"--to-version", &"40", &store, &net]));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced: {out}");
    assert_eq!(std::fs::read_link(&link).unwrap(), real);
    assert!(out.contains(&real.display().to_string()), "{out}");
    // The node's database, seen through the link, is the one restored.
    let err = cln_backup(&[&"verify", &"--against", &net, &store]);
    assert!(stderr(&err).contains("backup 46, live 40"), "{}", stderr(&err));
    assert_eq!(names(&disk), ["lightningd.sqlite3"]);
    assert_eq!(names(&net), ["lightningd.sqlite3"]);

    // A link to a directory that is not there (a disk not mounted) is refused.
    let gone = net.join("gone.sqlite3");
    std::os::unix::fs::symlink(dir.path().join("unmounted/lightningd.sqlite3"), &gone).unwrap();
    let err = cln_backup(&[&"restore", &store, &gone]);
    assert_fails(&err, &[&gone], &["symbolic link", "unmounted"]);
    assert!(!dir.path().join("unmounted").exists());
}

/// The same file given as the .dbak and the store is said to be that, not
/// "an existing store".
#[test]
fn import_onto_its_own_dbak_says_it_is_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let dbak = dir.path().join("backup.dbak");
    std::fs::copy(FIXTURE_DBAK, &dbak).unwrap();
    let before = std::fs::read(&dbak).unwrap();
    let err = cln_backup(&[&"import", &dbak, &dbak]);
    let line = assert_fails(&err, &[&dbak], &["is the same file as the source"]);
    assert!(!line.contains("existing store"), "{line}");
    assert_eq!(std::fs::read(&dbak).unwrap(), before);
}

/// init given the node's network directory as DEST (--lightning-dir
/// forgotten) says so, rather than suggest a store inside the node's
/// directory, beside the database it backs up.
#[test]
fn init_given_the_network_directory_as_its_store_points_at_lightning_dir() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, net) = node(dir.path());
    let before = names(&net);
    let err = cln_backup(&[&"init", &net]);
    let line = assert_fails(&err, &[&net], &["network directory", &format!("--lightning-dir {}", net.display())]);
    assert!(!line.contains(&net.join("node.redb").display().to_string()), "{line}");
    assert_eq!(names(&net), before);
}

/// A command line cln-backup cannot parse is one `error:` line too, as the
/// README promises for every failure, with exit status 2; --help is not.
#[test]
fn usage_errors_are_one_line() {
    for args in [
        vec!["restore", "store.redb"],
        vec!["restore", "--to-version", "-1", "a", "b"],
        vec!["restore", "--to-version", "abc", "a", "b"],
        vec!["export", "--format", "xml", "a", "b"],
        vec!["frobnicate"],
    ] {
        let out = command().args(&args).output().unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("error: "), "{args:?}: {err:?}");
    }
    let out = command().args(["restore", "--help"]).output().unwrap();
    assert!(out.status.success());
    assert!(stdout(&out).lines().count() > 5);
}

/// The lock file import keeps as backup.lock.python is the Python plugin's
/// file as it was: same bytes, owner and mode (it was rewritten 0600).
#[test]
fn the_kept_lock_file_keeps_its_owner_and_mode() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (_, _, net) = node(dir.path());
    let dbak = dir.path().join("backup.dbak");
    std::fs::copy(FIXTURE_DBAK, &dbak).unwrap();
    let lock = net.join("backup.lock");
    let python = format!("{{\"backend_url\": \"file://{}\"}}", dbak.display());
    std::fs::write(&lock, &python).unwrap();
    std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(0o644)).unwrap();
    let before = owner(&lock);
    assert_ok(&cln_backup(&[&"import", &"--lightning-dir", &net, &dbak, &dir.path().join("moved.redb")]));
    let kept = net.join("backup.lock.python");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), python);
    assert_eq!(owner(&kept), before);
    assert_ne!(std::fs::read_to_string(&lock).unwrap(), python);
}
