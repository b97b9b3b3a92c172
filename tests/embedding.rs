//! The library embedded as an application embeds it: `tests/embedder`, a
//! program depending on it without default features, built with `panic =
//! "abort"` and redb's debug assertions on (a debug build). A damaged store
//! must be an error there too, never an abort, and reading it must not
//! change it; a store that reads restores the true database.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use cln_backup::compare::{compare_databases, Labels};
use cln_backup::Store;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::workload::Workload;

/// Build the embedding program (once per target directory; later runs
/// find it built) and return its path.
fn embedder() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/embedder/Cargo.toml");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embedder");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--quiet", "--locked", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    assert!(out.status.success(), "building the embedder: {}", String::from_utf8_lossy(&out.stderr));
    target.join("debug/cln-backup-embedder")
}

#[test]
fn a_damaged_store_is_an_error_in_an_application_built_to_abort_on_panic() {
    let program = embedder();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.redb");
    let txns = Workload::generate(5, 300);
    {
        let store = Store::create(&path).unwrap();
        support::add_all(&store, &txns[..60]);
        cln_backup::compact::compact(&store, &Default::default()).unwrap();
        support::add_all(&store, &txns[60..]);
    }
    let truth = support::reference(dir.path(), "truth.sqlite3", &txns);
    let whole = std::fs::read(&path).unwrap();
    let (mut errors, mut restored) = (0, 0);
    let damaged = dir.path().join("damaged.redb");
    for page in 0..whole.len() / 4096 {
        for offset in [0, 100, 2000] {
            let mut bytes = whole.clone();
            bytes[page * 4096 + offset] ^= 0x5a;
            std::fs::write(&damaged, &bytes).unwrap();
            let out_db = dir.path().join(format!("restored-{page}-{offset}.sqlite3"));
            let run = Command::new(&program).arg(&damaged).arg(&out_db).output().unwrap();
            let what = format!("byte {} flipped", page * 4096 + offset);
            assert_eq!(
                run.status.signal(),
                None,
                "{what}: the application was killed: {}",
                String::from_utf8_lossy(&run.stderr)
            );
            assert!(run.status.success(), "{what}: {}", String::from_utf8_lossy(&run.stderr));
            assert_eq!(std::fs::read(&damaged).unwrap(), bytes, "{what}: reading the store changed it");
            let said = String::from_utf8_lossy(&run.stdout).into_owned();
            if said.starts_with("ok ") {
                restored += 1;
                let diff = compare_databases(&out_db, &truth, Labels::RESTORED_AND_EXPECTED).unwrap();
                assert!(diff.is_none(), "{what}: a wrong restore: {diff:?}");
            } else {
                errors += 1;
                assert!(
                    said.starts_with("error Damaged: ") || said.starts_with("error Incompatible: "),
                    "{what}: {said}"
                );
                assert!(said.contains(&damaged.display().to_string()), "{what}: the error names no file: {said}");
            }
        }
    }
    eprintln!("embedder under panic = \"abort\": {errors} damaged copies refused, {restored} restored exactly");
    assert!(errors > 10 && restored > 10, "errors {errors}, restored {restored}");
}
