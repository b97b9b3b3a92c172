//! `backup.lock`: the file in lightningd's network directory that tells the
//! plugin where its store is, `{"backend_url": "file:///abs/path"}`, as the
//! Python plugin wrote it.
//!
//! Shared by the front ends (`init` writes it, the plugin reads it). It must
//! not open stores.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The lock file's name inside the lightning directory.
pub const LOCK_FILE_NAME: &str = "backup.lock";

#[derive(serde::Serialize, serde::Deserialize)]
struct LockFile {
    backend_url: String,
}

/// Where a backup URL points.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A local store (or legacy file) path.
    File(PathBuf),
    /// A remote store, `socket:host:port`.
    Socket(String),
}

/// Parse a store location: a plain path, a `file://` URL or a `socket:` URL.
pub fn parse_destination(url: &str) -> std::result::Result<Destination, String> {
    if let Some(rest) = url.strip_prefix("file://") {
        if rest.is_empty() {
            return Err(format!("{url}: a file:// URL needs a path"));
        }
        Ok(Destination::File(PathBuf::from(rest)))
    } else if let Some(rest) = url.strip_prefix("socket:") {
        Ok(Destination::Socket(rest.to_string()))
    } else if url.contains("://") {
        Err(format!("{url}: unknown backup URL scheme (expected file:// or socket:)"))
    } else if url.is_empty() {
        Err("empty backup location".into())
    } else {
        Ok(Destination::File(PathBuf::from(url)))
    }
}

/// Read `DIR/backup.lock`.
pub fn read(dir: &Path) -> Result<Destination> {
    let path = dir.join(LOCK_FILE_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let lock: LockFile = serde_json::from_str(&text).map_err(|e| Error::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not a backup lock file: {e}")),
    })?;
    parse_destination(&lock.backend_url).map_err(|what| Error::Io {
        path: path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
    })
}

/// Write `DIR/backup.lock` pointing at `store` (made absolute), atomically.
/// Refuses an existing lock file.
pub fn write(dir: &Path, store: &Path) -> Result<PathBuf> {
    let path = dir.join(LOCK_FILE_NAME);
    if path.exists() {
        return Err(Error::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a backup lock file already exists"),
        });
    }
    let abs = std::path::absolute(store).map_err(|e| Error::io(store, e))?;
    // The Python plugin's layout (json.dumps), so either tool reads the other's.
    let url = serde_json::to_string(&format!("file://{}", abs.display()))
        .map_err(|e| Error::io(&path, std::io::Error::other(e)))?;
    let body = format!("{{\"backend_url\": {url}}}");
    let mut tmp = tempfile::Builder::new().prefix(".backup.lock-").tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    std::io::Write::write_all(&mut tmp, body.as_bytes()).map_err(|e| Error::io(tmp.path(), e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist_noclobber(&path).map_err(|e| Error::io(&path, e.error))?;
    crate::store::sync_dir(&path)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations() {
        assert_eq!(parse_destination("file:///a/b"), Ok(Destination::File("/a/b".into())));
        assert_eq!(parse_destination("/a/b"), Ok(Destination::File("/a/b".into())));
        assert_eq!(parse_destination("socket:[::1]:1234"), Ok(Destination::Socket("[::1]:1234".into())));
        assert!(parse_destination("s3://bucket").is_err());
    }

    #[test]
    fn write_then_read_and_refuse_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s.redb");
        let lock = write(dir.path(), &store).unwrap();
        let text = std::fs::read_to_string(&lock).unwrap();
        assert_eq!(text, format!("{{\"backend_url\": \"file://{}\"}}", store.display()));
        assert_eq!(read(dir.path()).unwrap(), Destination::File(store.clone()));
        assert!(write(dir.path(), &store).is_err());
    }
}
