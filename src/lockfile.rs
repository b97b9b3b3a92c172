//! `backup.lock`: the file in lightningd's network directory that tells the
//! plugin where its store is, `{"backend_url": "file:///abs/path"}`, laid out
//! as the Python plugin wrote it so that either tool reads the other's.
//!
//! Shared by the front ends: `init` writes it, the plugin reads it. It must
//! not open stores.

use anyhow::{anyhow, bail, Context, Result};
use cln_backup::atomic_file::{NewOwner, Replace, TempFile};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside the lightning directory.
pub const LOCK_FILE_NAME: &str = "backup.lock";

#[derive(serde::Deserialize)]
struct LockFile {
    backend_url: String,
}

/// Read `DIR/backup.lock` and return the store path it names.
pub fn read(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(LOCK_FILE_NAME);
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    let lock: LockFile =
        serde_json::from_str(&text).map_err(|e| anyhow!("{}: not a backup lock file: {e}", path.display()))?;
    crate::cli::store_path(Path::new(&lock.backend_url)).with_context(|| format!("{}", path.display()))
}

/// Write `lock` as `{"backend_url": "file:///abs/path"}` naming `store`,
/// through [`cln_backup::atomic_file`]: a temporary file, fsync'd, owned by
/// the lightning directory's owner (the plugin reads it as the user
/// lightningd runs as) with mode 0600, then linked into place without
/// replacing one that appeared meanwhile. Returns the URL.
pub fn write(lock: &Path, store: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(store).with_context(|| format!("{}", store.display()))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| anyhow!("{}: the store's path is not UTF-8, so backup.lock cannot record it", abs.display()))?;
    let url = format!("file://{abs}");
    let content = format!("{{\"backend_url\": {}}}", serde_json::to_string(&url)?);
    let mut tmp = TempFile::create(lock, "lock")?;
    let path = tmp.path().to_path_buf();
    tmp.file()?.write_all(content.as_bytes()).with_context(|| format!("{}", path.display()))?;
    match tmp.commit(Replace::Never, NewOwner::Directory) {
        Ok(_) => Ok(url),
        Err(cln_backup::Error::DestinationExists { path }) => {
            bail!("{}: already exists; refusing to replace another backup's lock file", path.display())
        }
        Err(e) => {
            // Placed but not made durable: the caller removes the store on
            // failure, so take away the lock pointing at it too.
            if std::fs::read_to_string(lock).is_ok_and(|text| text == content) {
                let _ = std::fs::remove_file(lock);
            }
            Err(e.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_file_is_exact_json_with_the_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("node.redb");
        std::fs::write(&store, b"").unwrap();
        let lock = dir.path().join(LOCK_FILE_NAME);
        // A relative spelling of the store must still record its absolute path.
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let url = write(&lock, &sub.join("..").join("node.redb")).unwrap();
        let abs = std::fs::canonicalize(&store).unwrap();
        assert_eq!(url, format!("file://{}", abs.display()));
        assert_eq!(
            std::fs::read_to_string(&lock).unwrap(),
            format!("{{\"backend_url\": \"file://{}\"}}", abs.display())
        );
        assert_eq!(read(dir.path()).unwrap(), abs);
        // Never replaces an existing lock.
        let err = write(&lock, &store).unwrap_err();
        assert!(err.to_string().contains(&lock.display().to_string()), "{err}");
    }

    #[test]
    fn unreadable_or_remote_lock_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = read(dir.path()).unwrap_err().to_string();
        assert!(missing.contains("backup.lock"), "{missing}");
        std::fs::write(dir.path().join(LOCK_FILE_NAME), "{\"backend_url\": \"socket:[::1]:1234\"}").unwrap();
        let remote = format!("{:#}", read(dir.path()).unwrap_err());
        assert!(remote.contains("backup.lock") && remote.contains("not supported"), "{remote}");
        std::fs::write(dir.path().join(LOCK_FILE_NAME), "garbage").unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("not a backup lock file"));
    }
}
