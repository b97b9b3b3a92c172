//! `backup.lock`: the file in lightningd's network directory that tells the
//! plugin where its store is, `{"backend_url": "file:///abs/path"}`, laid out
//! as the Python plugin wrote it so that either tool reads the other's.
//!
//! Shared by the front ends: `init` writes it, the plugin reads it, and
//! `import`/`export --lightning-dir` move a node between the two plugins with
//! [`repoint`], which keeps the lock it replaces beside it. It must not open
//! stores.

use anyhow::{anyhow, bail, Context, Result};
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

/// Write `lock` as `{"backend_url": "file:///abs/path"}` naming `store`: a
/// temporary file, fsync'd, then linked into place without replacing one that
/// appeared meanwhile. Returns the URL.
pub fn write(lock: &Path, store: &Path) -> Result<String> {
    let abs = std::fs::canonicalize(store).with_context(|| format!("{}", store.display()))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| anyhow!("{}: the store's path is not UTF-8, so backup.lock cannot record it", abs.display()))?;
    let url = format!("file://{abs}");
    let content = format!("{{\"backend_url\": {}}}", serde_json::to_string(&url)?);
    let dir = match lock.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let io = |e: std::io::Error| anyhow!("{}: {e}", lock.display());
    let mut tmp = tempfile::Builder::new().prefix(".backup.lock-").tempfile_in(&dir).map_err(io)?;
    tmp.write_all(content.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist_noclobber(lock).map_err(|e| io(e.error))?;
    if let Err(e) = std::fs::File::open(&dir).and_then(|d| d.sync_all()) {
        // The caller removes the store on failure: take the lock pointing at it too.
        let _ = std::fs::remove_file(lock);
        bail!("{}: {e}", dir.display());
    }
    Ok(url)
}

/// What [`repoint`] did.
#[derive(Debug)]
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
/// The old lock is never lost: it is copied to the kept name (created new,
/// fsync'd; an existing kept file is refused before anything changes) before
/// the lock is replaced, and put back if writing the new one fails.
pub fn repoint(dir: &Path, store: &Path, keep_suffix: &str) -> Result<Repointed> {
    let lock = dir.join(LOCK_FILE_NAME);
    let kept = dir.join(format!("{LOCK_FILE_NAME}.{keep_suffix}"));
    let old = match std::fs::read(&lock) {
        Ok(bytes) => Some(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => bail!("{}: {e}", lock.display()),
    };
    let Some(old) = old else {
        let url = write(&lock, store)?;
        return Ok(Repointed { lock, url, kept: None });
    };
    if kept.symlink_metadata().is_ok() {
        bail!(
            "{}: already exists: it keeps an earlier lock file; move it away first ({} was left unchanged)",
            kept.display(),
            lock.display()
        );
    }
    save_new(&kept, &old)?;
    std::fs::remove_file(&lock).map_err(|e| anyhow!("{}: {e}", lock.display()))?;
    match write(&lock, store) {
        Ok(url) => Ok(Repointed { lock, url, kept: Some(kept) }),
        Err(e) => {
            // Put the old lock back; the kept copy stays, so it is never lost.
            if let Err(back) = save_new(&lock, &old) {
                bail!("{e:#}; and putting the old lock back failed ({back:#}): it is kept in {}", kept.display());
            }
            let _ = std::fs::remove_file(&kept);
            Err(e)
        }
    }
}

/// Create `path` (which must not exist) holding `bytes`, durably.
fn save_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| anyhow!("{}: {e}", path.display());
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| anyhow!("{}: {e}", dir.display()))
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
