//! `backup.lock`: the file in lightningd's network directory that tells the
//! plugin where its store is, `{"backend_url": "file:///abs/path"}`, laid out
//! as the Python plugin wrote it so that either tool reads the other's.
//!
//! Shared by the front ends: `init` writes it, the plugin reads it, and
//! `import`/`export --lightning-dir` move a node between the two plugins with
//! [`repoint`], which keeps the lock it replaces beside it. It must not open
//! stores: what a `backend_url` names is [`crate::destination`]'s to say.

use crate::atomic_file::{NewOwner, Replace, TempFile};
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside the lightning directory.
pub const LOCK_FILE_NAME: &str = "backup.lock";

#[derive(serde::Deserialize)]
struct LockFile {
    backend_url: String,
}

fn lock_error(path: &Path, what: impl Into<String>) -> Error {
    Error::LockFile { path: path.to_path_buf(), what: what.into() }
}

/// Read `DIR/backup.lock` and return its `backend_url`, as written.
pub fn read_url(dir: &Path) -> Result<String> {
    let path = dir.join(LOCK_FILE_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let lock: LockFile =
        serde_json::from_str(&text).map_err(|e| lock_error(&path, format!("not a backup lock file: {e}")))?;
    Ok(lock.backend_url)
}

/// Read `DIR/backup.lock` and return the local file it names; a
/// `backend_url` this version cannot use is an error naming the lock file
/// and the URL.
pub fn read(dir: &Path) -> Result<PathBuf> {
    let url = read_url(dir)?;
    crate::destination::local_path(Path::new(&url)).map_err(|e| lock_error(&dir.join(LOCK_FILE_NAME), e.to_string()))
}

/// Write `lock` as `{"backend_url": "file:///abs/path"}` naming `store`,
/// through [`crate::atomic_file`]: a temporary file, fsync'd, owned by
/// the lightning directory's owner (the plugin reads it as the user
/// lightningd runs as) with mode 0600, then linked into place without
/// replacing one that appeared meanwhile. Returns the URL.
pub fn write(lock: &Path, store: &Path) -> Result<String> {
    let (url, content) = lock_content(store)?;
    match put(lock, content.as_bytes(), Replace::Never) {
        Ok(()) => Ok(url),
        Err(Error::DestinationExists { path }) => {
            Err(lock_error(&path, "already exists; refusing to replace another backup's lock file"))
        }
        Err(e) => {
            // Placed but not made durable: the caller removes the store on
            // failure, so take away the lock pointing at it too.
            if std::fs::read_to_string(lock).is_ok_and(|text| text == content) {
                let _ = std::fs::remove_file(lock);
            }
            Err(e)
        }
    }
}

/// The URL and the lock file's text for `store`.
fn lock_content(store: &Path) -> Result<(String, String)> {
    let abs = std::fs::canonicalize(store).map_err(|e| Error::io(store, e))?;
    let Some(text) = abs.to_str() else {
        return Err(lock_error(&abs, "the store's path is not UTF-8, so backup.lock cannot record it"));
    };
    let url = format!("file://{text}");
    let content = format!("{{\"backend_url\": {}}}", serde_json::Value::String(url.clone()));
    Ok((url, content))
}

/// Put `bytes` at `path` whole or not at all, durably, owned as the
/// directory is (see [`crate::atomic_file`]).
fn put(path: &Path, bytes: &[u8], replace: Replace) -> Result<()> {
    let mut tmp = TempFile::create(path, "lock")?;
    let tmp_path = tmp.path().to_path_buf();
    tmp.file()?.write_all(bytes).map_err(|e| Error::io(&tmp_path, e))?;
    tmp.commit(replace, NewOwner::Directory)?;
    Ok(())
}

/// Keep the lock file `lock` (holding `old`) as `kept`, as it is: a second
/// name for the same file, so its owner, mode and bytes stay those the
/// other plugin gave it; a copy where the file system has no hard links.
/// An existing `kept` is refused.
fn keep(lock: &Path, kept: &Path, old: &[u8]) -> Result<()> {
    match std::fs::hard_link(lock, kept) {
        Ok(()) => crate::atomic_file::sync_parent(kept),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Err(lock_error(kept, "already exists: it keeps an earlier lock file; move it away first"))
        }
        Err(_) => put(kept, old, Replace::Never),
    }
}

/// What [`repoint`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Repointed {
    /// The lock file written.
    pub lock: PathBuf,
    /// The URL it records.
    pub url: String,
    /// Where the lock it replaced was kept, if there was one.
    pub kept: Option<PathBuf>,
}

/// Point `DIR/backup.lock` at `store`, keeping the current lock, if any, as
/// `DIR/backup.lock.<keep_suffix>`.
///
/// The old lock is never lost and the node never sees no lock: it is given
/// the kept name first, as a hard link keeping its owner, mode and bytes (a
/// copy where there are none; an existing kept file is refused before
/// anything changes), then the new lock is renamed over it.
pub fn repoint(dir: &Path, store: &Path, keep_suffix: &str) -> Result<Repointed> {
    let lock = dir.join(LOCK_FILE_NAME);
    let kept = dir.join(format!("{LOCK_FILE_NAME}.{keep_suffix}"));
    let old = match std::fs::read(&lock) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&lock, e)),
    };
    let Some(old) = old else {
        let url = write(&lock, store)?;
        return Ok(Repointed { lock, url, kept: None });
    };
    if kept.symlink_metadata().is_ok() {
        return Err(lock_error(
            &kept,
            format!(
                "already exists: it keeps an earlier lock file; move it away first ({} was left unchanged)",
                lock.display()
            ),
        ));
    }
    let (url, content) = lock_content(store)?;
    keep(&lock, &kept, &old)?;
    put(&lock, content.as_bytes(), Replace::Existing)?;
    Ok(Repointed { lock, url, kept: Some(kept) })
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
        let remote = read(dir.path()).unwrap_err().to_string();
        assert!(remote.contains("backup.lock") && remote.contains("not supported"), "{remote}");
        std::fs::write(dir.path().join(LOCK_FILE_NAME), "garbage").unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("not a backup lock file"));
    }

    #[test]
    fn repoint_keeps_the_old_lock_and_refuses_to_replace_a_kept_one() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.dbak"), dir.path().join("b.redb"));
        std::fs::write(&a, b"").unwrap();
        std::fs::write(&b, b"").unwrap();
        // No lock yet: one is written, nothing kept.
        let first = repoint(dir.path(), &a, "python").unwrap();
        assert!(first.kept.is_none());
        let old = std::fs::read_to_string(dir.path().join(LOCK_FILE_NAME)).unwrap();
        let done = repoint(dir.path(), &b, "python").unwrap();
        let kept = done.kept.unwrap();
        assert_eq!(kept, dir.path().join("backup.lock.python"));
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), old);
        assert_eq!(read(dir.path()).unwrap(), std::fs::canonicalize(&b).unwrap());
        // A second move would overwrite the kept lock: refused, nothing changes.
        let now = std::fs::read_to_string(dir.path().join(LOCK_FILE_NAME)).unwrap();
        let err = repoint(dir.path(), &a, "python").unwrap_err().to_string();
        assert!(err.contains("backup.lock.python") && err.contains("already exists"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE_NAME)).unwrap(), now);
        assert_eq!(std::fs::read_to_string(&kept).unwrap(), old);
        // A store that cannot be recorded leaves the old lock in place.
        let err = repoint(dir.path(), &dir.path().join("missing.redb"), "other").unwrap_err().to_string();
        assert!(err.contains("missing.redb"), "{err}");
        assert_eq!(std::fs::read_to_string(dir.path().join(LOCK_FILE_NAME)).unwrap(), now);
        assert!(!dir.path().join("backup.lock.other").exists());
    }
}
