//! Moving a node between the Python backup plugin and cln-backup:
//! `import --lightning-dir` and `export --format dbak --lightning-dir`.
//!
//! Owns the checks made before `backup.lock` is repointed: the lock names
//! the file being moved from, the name the old lock is kept under is free,
//! the new backup restores to the same database as the old one, and a
//! stopped node's `lightningd.sqlite3` equals the backup's head. The lock is
//! repointed only after all of them pass ([`cln_backup::lockfile::repoint`]); a
//! failure leaves `backup.lock` as it was. It must not write stores or
//! `.dbak` files itself: `import` and `export` do, through the library.

use super::check_network_dir;
use anyhow::{bail, Context, Result};
use cln_backup::compare::{compare_databases, Labels};
use cln_backup::lockfile::{self, LOCK_FILE_NAME};
use cln_backup::replay::replay_store;
use cln_backup::restore::{Options, DB_FILE_NAME};
use cln_backup::version::data_version;
use cln_backup::Store;
use std::path::{Path, PathBuf};

/// Suffix the Python plugin's lock is kept under after `import`.
pub const KEPT_PYTHON: &str = "python";
/// Suffix cln-backup's lock is kept under after `export`.
pub const KEPT_CLN_BACKUP: &str = "cln-backup";

/// Checks made before anything is written: DIR is a network directory, its
/// `backup.lock`, if any, names `from` (the backup being moved from), and
/// `backup.lock.<keep_suffix>` does not exist.
pub fn precheck(dir: &Path, from: &Path, keep_suffix: &str) -> Result<()> {
    check_network_dir(dir)?;
    let lock = dir.join(LOCK_FILE_NAME);
    if lock.symlink_metadata().is_ok() {
        // Repointing writes a lock with one store: replicas listed beside it
        // would be dropped without a word.
        if let Ok(entries) = lockfile::read_lock(dir) {
            if entries.len() > 1 {
                bail!(
                    "{}: lists {} destinations; moving between plugins repoints a lock naming one store: \
                     list only {} there first (nothing was changed)",
                    lock.display(),
                    entries.len(),
                    from.display()
                );
            }
        }
        let named = lockfile::read(dir)?;
        if !same_file(&named, from) {
            bail!(
                "{}: names {}, not {}: this node is backed up elsewhere; refusing to repoint it",
                lock.display(),
                named.display(),
                from.display()
            );
        }
    }
    let kept = dir.join(format!("{LOCK_FILE_NAME}.{keep_suffix}"));
    if kept.symlink_metadata().is_ok() {
        bail!(
            "{}: already exists: it keeps an earlier lock file; move it away first (nothing was changed)",
            kept.display()
        );
    }
    Ok(())
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// What [`check`] compared.
#[derive(Debug)]
pub struct Checked {
    /// `data_version` of both backups' head.
    pub version: u32,
    /// The node's database, when there was one and it matched.
    pub node_db: Option<PathBuf>,
}

/// Check that `store` and the `.dbak` file `dbak` restore to the same
/// database at their head (both restored into a temporary directory and
/// compared schema first, then row by row), and that `DIR/lightningd.sqlite3`,
/// when it exists, equals that database (the node must be stopped).
pub fn check(store: &Path, dbak: &Path, dir: &Path) -> Result<Checked> {
    let tmp = cln_backup::atomic_file::ScratchDir::new("check")
        .context("cannot create a temporary directory to check the backups")?;
    let from_store = tmp.path().join("store.sqlite3");
    std::fs::File::create(&from_store).with_context(|| from_store.display().to_string())?;
    let head = {
        let store = Store::open_read_only(store)?;
        let reader = store.reader()?;
        let head = reader.head();
        replay_store(&reader, head, &from_store, None)?;
        head
    };
    let from_dbak = tmp.path().join("dbak.sqlite3");
    let restored = cln_backup::legacy::restore_dbak(dbak, &from_dbak, &Options::default())?;
    if restored.version != data_version(head) {
        bail!(
            "{}: restores to version {} but {} is at version {}",
            dbak.display(),
            restored.version,
            store.display(),
            data_version(head)
        );
    }
    let labels = Labels { a: "store", a_only: "store", b: ".dbak", b_only: ".dbak file" };
    if let Some(diff) = compare_databases(&from_store, &from_dbak, labels)? {
        bail!("{}: does not restore to the same database as {}: {}", store.display(), dbak.display(), diff.what);
    }
    let db = dir.join(DB_FILE_NAME);
    let node_db = if db.exists() {
        if let Some(diff) = compare_databases(&from_store, &db, Labels::BACKUP_AND_LIVE)? {
            bail!(
                "{}: differs from the backup's head at version {}: {}; stop the node (its database must be \
                 at the backup's version) and run the command again",
                db.display(),
                data_version(head),
                diff.what
            );
        }
        Some(db)
    } else {
        None
    };
    Ok(Checked { version: data_version(head), node_db })
}

/// Run `check`, then repoint `DIR/backup.lock` at `to` (the store or `.dbak`
/// file this command just wrote), keeping the old lock as
/// `backup.lock.<keep_suffix>`. On a failed check `to` is removed, so the command can simply be run again,
/// and `backup.lock` is left as it was. Returns the lines to print.
pub fn finish(store: &Path, dbak: &Path, dir: &Path, to: &Path, keep_suffix: &str) -> Result<Vec<String>> {
    let checked = match check(store, dbak, dir) {
        Ok(c) => c,
        Err(e) => {
            let removed = std::fs::remove_file(to).is_ok();
            let what = if removed { "removed" } else { "kept" };
            bail!(
                "{}; {} left unchanged, {what} {}",
                crate::one_line(&e),
                dir.join(LOCK_FILE_NAME).display(),
                to.display()
            );
        }
    };
    let mut out = vec![format!(
        "Checked: {} and {} restore to the same database at version {}",
        store.display(),
        dbak.display(),
        checked.version
    )];
    if let Some(db) = &checked.node_db {
        out.push(format!("Checked: {} equals the backup at version {}", db.display(), checked.version));
    }
    // The plugin the lock names writes `to` as the user lightningd runs as.
    let ownership = match cln_backup::atomic_file::give_to_owner_of(to, dir) {
        Ok(o) => o,
        Err(e) => {
            let removed = std::fs::remove_file(to).is_ok();
            let what = if removed { "removed" } else { "kept" };
            bail!("{e}; {} left unchanged, {what} {}", dir.join(LOCK_FILE_NAME).display(), to.display());
        }
    };
    if let Some(ownership) = ownership {
        out.push(ownership.set_line(to));
    }
    let done = lockfile::repoint(dir, to, keep_suffix)?;
    if let Some(kept) = &done.kept {
        out.push(format!("Kept the previous lock file as {}", kept.display()));
    }
    out.push(format!("Wrote {} pointing at {}", done.lock.display(), done.url));
    Ok(out)
}

/// When `DIR/backup.lock` names a `.dbak` file of the Python plugin, the
/// command that moves the node over to a store (`cln-backup import
/// --lightning-dir DIR OLD.dbak OLD.redb`, the store beside the old file):
/// what the plugin and `init` tell an operator who has not moved over yet.
pub(crate) fn python_lock_fix(dir: &Path) -> Option<String> {
    let dbak = lockfile::read(dir).ok()?;
    if !cln_backup::legacy::is_dbak(&dbak) {
        return None;
    }
    let store = if dbak.extension().is_some_and(|e| e == "dbak") {
        dbak.with_extension("redb")
    } else {
        let mut name = dbak.clone().into_os_string();
        name.push(".redb");
        PathBuf::from(name)
    };
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    Some(format!("cln-backup import --lightning-dir {} {} {}", shell_word(&dir), shell_word(&dbak), shell_word(&store)))
}

/// A path as one shell word: as it is when it needs no quoting, else in single quotes.
pub(crate) fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    let plain = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+,:@%=".contains(c));
    if plain {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}
