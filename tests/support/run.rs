//! Running the real `cln-backup` binary as a user would, and checking what it
//! said: the one place the end-to-end tests start it from.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// The binary, with no `RUST_LOG` and not in plugin mode.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cln-backup"));
    c.env_remove("RUST_LOG").env_remove("LIGHTNINGD_PLUGIN");
    c
}

/// Run the binary with `args` and collect what it printed.
pub fn cln_backup(args: &[&dyn AsRef<OsStr>]) -> Output {
    command().args(args).output().unwrap_or_else(|e| panic!("cannot run cln-backup: {e}"))
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The run succeeded; returns its stdout.
#[track_caller]
pub fn assert_ok(out: &Output) -> String {
    assert!(out.status.success(), "exit {:?}\nstdout: {}\nstderr: {}", out.status, stdout(out), stderr(out));
    stdout(out)
}

/// The run failed with exactly one `error:` line on stderr that names every
/// one of `paths` and says each of `what`. Returns the line.
#[track_caller]
pub fn assert_fails<P: AsRef<Path>>(out: &Output, paths: &[P], what: &[&str]) -> String {
    let err = stderr(out);
    assert!(!out.status.success(), "expected failure, stdout: {}", stdout(out));
    assert_eq!(err.lines().count(), 1, "stderr is not one line: {err:?}");
    assert!(err.starts_with("error: "), "{err:?}");
    for path in paths {
        let path = path.as_ref().display().to_string();
        assert!(err.contains(&path), "{err:?} does not name {path}");
    }
    for w in what {
        assert!(err.contains(w), "{err:?} does not say {w:?}");
    }
    err
}
