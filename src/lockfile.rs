//! `backup.lock`: the file in lightningd's network directory that tells the
//! plugin where its backups go.
//!
//! Two forms. A lock holding one `file://` or `socket:` destination with no
//! options is `{"backend_url": "file:///abs/path"}`, laid out as the Python
//! plugin wrote it so that either tool reads the other's. Anything else
//! (several destinations, object storage, a mode, a key source, a
//! credentials or token file) is a list:
//!
//! ```json
//! {"destinations": [
//!   {"url": "file:///b/node.redb"},
//!   {"url": "s3://bucket/node", "mode": "async", "hsm_secret": "/var/lib/lightning/bitcoin/hsm_secret"}
//! ]}
//! ```
//!
//! Each entry is a [`Entry`]: `url` (required), `mode` (`"sync"`, the
//! default, or `"async"`), at most one of `key_file` and `hsm_secret`,
//! `credentials_file`, `token_file`; an unknown field is refused naming the
//! file. The list form has no `backend_url` on purpose: the Python plugin,
//! given such a lock, fails to start (and stops lightningd) instead of
//! backing up to one destination of several and leaving the others behind.
//! Which combinations are allowed is [`crate::destination::check_destinations`]'s
//! to say; a lock that breaks a rule is refused naming the file.
//!
//! Shared by the front ends: `init` writes it, the plugin reads it, and
//! `import`/`export --lightning-dir` move a node between the two plugins with
//! [`repoint`], which keeps the lock it replaces beside it. It must not open
//! stores: what a URL names is [`crate::destination`]'s to say.
//!
//! ```
//! use cln_backup::lockfile::{self, Entry, Mode, LOCK_FILE_NAME};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (primary, replica) = (dir.path().join("node.redb"), dir.path().join("replica.redb"));
//! # std::fs::write(&primary, b"")?;
//! # std::fs::write(&replica, b"")?;
//! let mut second = Entry::local(&replica)?;
//! second.mode = Mode::Async;
//! let entries = vec![Entry::local(&primary)?, second];
//! lockfile::write_lock(&dir.path().join(LOCK_FILE_NAME), &entries)?;
//! // Two destinations: the list form, which reads back the same.
//! assert_eq!(lockfile::read_lock(dir.path())?, entries);
//! assert_eq!(lockfile::read(dir.path())?, std::fs::canonicalize(&primary)?);
//! # Ok(()) }
//! ```

use crate::atomic_file::{NewOwner, Replace, TempFile};
use crate::encryption::KeySource;
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside the lightning directory.
///
/// ```
/// use cln_backup::lockfile::{self, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let lightning_dir = tempfile::tempdir()?;
/// let store = lightning_dir.path().join("node.redb");
/// # std::fs::write(&store, b"")?;
/// lockfile::write(&lightning_dir.path().join(LOCK_FILE_NAME), &store)?;
/// // The readers take the directory and find the lock by this name.
/// assert_eq!(lockfile::read(lightning_dir.path())?, std::fs::canonicalize(&store)?);
/// # Ok(()) }
/// ```
pub const LOCK_FILE_NAME: &str = "backup.lock";

/// When a destination has a change, relative to the answer lightningd waits for.
///
/// ```
/// use cln_backup::lockfile::{self, Entry, Mode};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let entry = Entry::new("socket:127.0.0.1:9000");
/// assert_eq!(entry.mode, Mode::Sync, "the default");
/// let mut replica = entry.clone();
/// replica.mode = Mode::Async;
/// // A sync entry alone is the Python plugin's form; an async one needs the list.
/// assert!(lockfile::lock_text(&[entry])?.contains("backend_url"));
/// assert!(lockfile::lock_text(&[replica])?.contains(r#""mode": "async""#));
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Before the write is answered `continue`: a failure stops the node.
    #[default]
    Sync,
    /// Soon after, from a background replica of the local store: a failure
    /// is logged and shown, and the node goes on.
    Async,
}

impl Mode {
    /// `"sync"` or `"async"`, as the lock and `backup-status` write it.
    ///
    /// ```
    /// use cln_backup::lockfile::{self, Entry, Mode};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// assert_eq!(Mode::Sync.as_str(), "sync");
    /// let mut entry = Entry::new("socket:127.0.0.1:9000");
    /// entry.mode = Mode::Async;
    /// let text = lockfile::lock_text(&[entry])?;
    /// assert!(text.contains(&format!("\"mode\": \"{}\"", Mode::Async.as_str())), "{text}");
    /// # Ok(()) }
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }
}

/// One destination of `backup.lock`.
///
/// ```
/// use cln_backup::lockfile::{self, Entry};
/// use std::path::Path;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let mut entry = Entry::new("socket:127.0.0.1:9000");
/// entry.token_file = Some(dir.path().join("token"));
/// let text = lockfile::lock_text(std::slice::from_ref(&entry))?;
/// assert_eq!(lockfile::parse_lock(Path::new("backup.lock"), &text)?, [entry]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// Where it is: a `file://` URL (absolute), a `socket:` URL or an
    /// object-store URL.
    pub url: String,
    /// Sync or async.
    pub mode: Mode,
    /// Object storage: where the encryption key comes from.
    pub key: Option<KeySource>,
    /// Object storage: a file of `AWS_*=value` lines.
    pub credentials_file: Option<PathBuf>,
    /// Socket: a file holding the server's pre-shared token.
    pub token_file: Option<PathBuf>,
}

impl Entry {
    /// A sync destination at `url` with no options.
    ///
    /// ```
    /// use cln_backup::lockfile::{Entry, Mode};
    ///
    /// let entry = Entry::new("socket:127.0.0.1:9000");
    /// assert_eq!((entry.url.as_str(), entry.mode), ("socket:127.0.0.1:9000", Mode::Sync));
    /// assert!(entry.key.is_none() && entry.token_file.is_none() && entry.credentials_file.is_none());
    /// ```
    pub fn new(url: impl Into<String>) -> Entry {
        Entry { url: url.into(), mode: Mode::Sync, key: None, credentials_file: None, token_file: None }
    }

    /// A sync destination naming the local store `store` by its absolute
    /// `file://` URL (the store must exist: its path is made canonical).
    ///
    /// ```
    /// use cln_backup::lockfile::Entry;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = dir.path().join("node.redb");
    /// assert!(Entry::local(&store).is_err(), "not there yet");
    /// std::fs::write(&store, b"")?;
    /// let entry = Entry::local(&store)?;
    /// assert_eq!(entry.url, format!("file://{}", std::fs::canonicalize(&store)?.display()));
    /// # Ok(()) }
    /// ```
    pub fn local(store: &Path) -> Result<Entry> {
        Ok(Entry::new(file_url(store)?))
    }

    /// Whether the entry is a URL alone, sync, with no options: the one
    /// entry a Python-readable lock can hold.
    ///
    /// ```
    /// use cln_backup::lockfile::Entry;
    ///
    /// let mut entry = Entry::new("socket:127.0.0.1:9000");
    /// assert!(entry.is_plain());
    /// entry.token_file = Some("token".into());
    /// assert!(!entry.is_plain());
    /// ```
    pub fn is_plain(&self) -> bool {
        self.mode == Mode::Sync && self.key.is_none() && self.credentials_file.is_none() && self.token_file.is_none()
    }
}

/// An entry as the list form writes it.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryJson {
    url: String,
    #[serde(default, skip_serializing_if = "is_sync")]
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hsm_secret: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    credentials_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token_file: Option<PathBuf>,
}

fn is_sync(mode: &Mode) -> bool {
    *mode == Mode::Sync
}

/// Both forms. The old one is read as the Python plugin reads it (other
/// keys beside `backend_url` are ignored, as it ignores them); the list
/// form is strict.
#[derive(serde::Deserialize)]
struct LockJson {
    backend_url: Option<String>,
    destinations: Option<Vec<serde_json::Value>>,
}

#[derive(serde::Serialize)]
struct ListJson<'a> {
    destinations: &'a [EntryJson],
}

impl EntryJson {
    fn into_entry(self) -> std::result::Result<Entry, String> {
        let key = match (self.key_file, self.hsm_secret) {
            (Some(_), Some(_)) => return Err(format!("{}: give key_file or hsm_secret, not both", self.url)),
            (Some(f), None) => Some(KeySource::KeyFile(f)),
            (None, Some(f)) => Some(KeySource::HsmSecret(f)),
            (None, None) => None,
        };
        Ok(Entry {
            url: self.url,
            mode: self.mode,
            key,
            credentials_file: self.credentials_file,
            token_file: self.token_file,
        })
    }

    fn from_entry(entry: &Entry) -> EntryJson {
        let (key_file, hsm_secret) = match &entry.key {
            Some(KeySource::KeyFile(f)) => (Some(f.clone()), None),
            Some(KeySource::HsmSecret(f)) => (None, Some(f.clone())),
            None => (None, None),
        };
        EntryJson {
            url: entry.url.clone(),
            mode: entry.mode,
            key_file,
            hsm_secret,
            credentials_file: entry.credentials_file.clone(),
            token_file: entry.token_file.clone(),
        }
    }
}

fn lock_error(path: &Path, what: impl Into<String>) -> Error {
    Error::LockFile { path: path.to_path_buf(), what: what.into() }
}

/// Parse the text of the lock file `path`, and check its destinations
/// against the registry's rules.
///
/// ```
/// use cln_backup::lockfile::{self, Entry};
/// use std::path::Path;
///
/// let lock = Path::new("backup.lock");
/// let entries = lockfile::parse_lock(lock, r#"{"backend_url": "file:///b/node.redb"}"#).unwrap();
/// assert_eq!(entries, [Entry::new("file:///b/node.redb")]);
/// // The list form is strict, and its errors name the file.
/// let err = lockfile::parse_lock(lock, r#"{"destinations": [{"url": "file:///b/node.redb", "colour": 1}]}"#);
/// let err = err.unwrap_err().to_string();
/// assert!(err.starts_with("backup.lock: ") && err.contains("unknown field `colour`"), "{err}");
/// ```
pub fn parse_lock(path: &Path, text: &str) -> Result<Vec<Entry>> {
    let lock: LockJson =
        serde_json::from_str(text).map_err(|e| lock_error(path, format!("not a backup lock file: {e}")))?;
    let entries = match (lock.backend_url, lock.destinations) {
        (Some(url), None) => vec![Entry::new(url)],
        (None, Some(list)) => {
            let mut entries = Vec::with_capacity(list.len());
            for (i, value) in list.into_iter().enumerate() {
                let entry: EntryJson = serde_json::from_value(value)
                    .map_err(|e| lock_error(path, format!("destination {}: {e}", i + 1)))?;
                entries.push(entry.into_entry().map_err(|e| lock_error(path, e))?);
            }
            entries
        }
        (Some(_), Some(_)) => {
            return Err(lock_error(path, "holds both backend_url and destinations; it must hold one of them"))
        }
        (None, None) => {
            return Err(lock_error(path, "not a backup lock file: it has neither backend_url nor destinations"))
        }
    };
    crate::destination::check_destinations(&entries).map_err(|e| lock_error(path, e.to_string()))?;
    Ok(entries)
}

/// Read `DIR/backup.lock`: its destinations, in order, checked against the
/// registry's rules (see [`crate::destination::check_destinations`]).
///
/// ```
/// use cln_backup::lockfile::{self, Entry, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// assert!(lockfile::read_lock(dir.path()).is_err(), "no lock yet");
/// std::fs::write(dir.path().join(LOCK_FILE_NAME), r#"{"backend_url": "socket:127.0.0.1:9000"}"#)?;
/// assert_eq!(lockfile::read_lock(dir.path())?, [Entry::new("socket:127.0.0.1:9000")]);
/// # Ok(()) }
/// ```
pub fn read_lock(dir: &Path) -> Result<Vec<Entry>> {
    let path = dir.join(LOCK_FILE_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    parse_lock(&path, &text)
}

/// The text of a lock holding `entries`: the Python plugin's form for one
/// plain `file://` or `socket:` entry, the list otherwise.
///
/// ```
/// use cln_backup::lockfile::{self, Entry};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let primary = Entry::new("file:///b/node.redb");
/// let text = lockfile::lock_text(std::slice::from_ref(&primary))?;
/// assert_eq!(text, r#"{"backend_url": "file:///b/node.redb"}"#);
/// let both = lockfile::lock_text(&[primary, Entry::new("socket:127.0.0.1:9000")])?;
/// assert!(both.contains("\"destinations\"") && !both.contains("backend_url"), "{both}");
/// # Ok(()) }
/// ```
pub fn lock_text(entries: &[Entry]) -> Result<String> {
    if let [one] = entries {
        let lower = one.url.to_ascii_lowercase();
        if one.is_plain() && (lower.starts_with("file://") || lower.starts_with("socket:")) {
            return Ok(format!("{{\"backend_url\": {}}}", serde_json::Value::String(one.url.clone())));
        }
    }
    let list: Vec<EntryJson> = entries.iter().map(EntryJson::from_entry).collect();
    serde_json::to_string_pretty(&ListJson { destinations: &list }).map_err(|e| Error::Destination {
        url: entries.first().map(|e| e.url.clone()).unwrap_or_default(),
        what: format!("cannot write it in backup.lock: {e}"),
    })
}

/// Write the lock file `lock` listing `entries` (see [`lock_text`]), after
/// checking them against the registry's rules, through
/// [`crate::atomic_file`] as [`write()`] does; an existing lock is never
/// replaced.
///
/// ```
/// use cln_backup::lockfile::{self, Entry, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let lock = dir.path().join(LOCK_FILE_NAME);
/// let entries = [Entry::new("socket:127.0.0.1:9000")];
/// lockfile::write_lock(&lock, &entries)?;
/// assert_eq!(std::fs::read_to_string(&lock)?, lockfile::lock_text(&entries)?);
/// let again = lockfile::write_lock(&lock, &entries).unwrap_err().to_string();
/// assert!(again.contains("already exists"), "{again}");
/// // A list the rules refuse is not written.
/// std::fs::remove_file(&lock)?;
/// assert!(lockfile::write_lock(&lock, &[]).is_err() && !lock.exists());
/// # Ok(()) }
/// ```
pub fn write_lock(lock: &Path, entries: &[Entry]) -> Result<()> {
    crate::destination::check_destinations(entries).map_err(|e| lock_error(lock, e.to_string()))?;
    let content = lock_text(entries)?;
    put_new(lock, &content)
}

/// Read `DIR/backup.lock` and return its `backend_url`, as written; for a
/// lock in the list form, the first destination's URL.
///
/// ```
/// use cln_backup::lockfile::{self, Entry, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let entries = [Entry::new("file:///b/node.redb"), Entry::new("socket:127.0.0.1:9000")];
/// lockfile::write_lock(&dir.path().join(LOCK_FILE_NAME), &entries)?;
/// assert_eq!(lockfile::read_url(dir.path())?, "file:///b/node.redb");
/// # Ok(()) }
/// ```
pub fn read_url(dir: &Path) -> Result<String> {
    let path = dir.join(LOCK_FILE_NAME);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let lock: LockJson =
        serde_json::from_str(&text).map_err(|e| lock_error(&path, format!("not a backup lock file: {e}")))?;
    match (lock.backend_url, lock.destinations) {
        (Some(url), _) => Ok(url),
        (None, Some(_)) => Ok(parse_lock(&path, &text)?.remove(0).url),
        (None, None) => Err(lock_error(&path, "not a backup lock file: it has neither backend_url nor destinations")),
    }
}

/// Read `DIR/backup.lock` and return the local file it names (the primary,
/// in the list form); a lock without one is an error naming the lock file
/// and the URL.
///
/// ```
/// use cln_backup::lockfile::{self, LOCK_FILE_NAME};
/// use std::path::Path;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let lock = dir.path().join(LOCK_FILE_NAME);
/// std::fs::write(&lock, r#"{"backend_url": "file:///b/node.redb"}"#)?;
/// assert_eq!(lockfile::read(dir.path())?, Path::new("/b/node.redb"));
/// std::fs::write(&lock, r#"{"backend_url": "socket:127.0.0.1:9000"}"#)?;
/// let err = lockfile::read(dir.path()).unwrap_err().to_string();
/// assert!(err.contains(LOCK_FILE_NAME) && err.contains("not a local store"), "{err}");
/// # Ok(()) }
/// ```
pub fn read(dir: &Path) -> Result<PathBuf> {
    let url = read_url(dir)?;
    crate::destination::local_path(Path::new(&url)).map_err(|e| lock_error(&dir.join(LOCK_FILE_NAME), e.to_string()))
}

/// Write `lock` as `{"backend_url": "file:///abs/path"}` naming `store`,
/// through [`crate::atomic_file`]: a temporary file, fsync'd, owned by
/// the lightning directory's owner (the plugin reads it as the user
/// lightningd runs as) with mode 0600, then linked into place without
/// replacing one that appeared meanwhile. Returns the URL.
///
/// ```
/// use cln_backup::lockfile::{self, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = dir.path().join("node.redb");
/// # std::fs::write(&store, b"")?;
/// let lock = dir.path().join(LOCK_FILE_NAME);
/// let url = lockfile::write(&lock, &store)?;
/// assert_eq!(url, lockfile::file_url(&store)?);
/// assert_eq!(std::fs::read_to_string(&lock)?, format!(r#"{{"backend_url": "{url}"}}"#));
/// assert!(lockfile::write(&lock, &store).is_err(), "an existing lock is never replaced");
/// # Ok(()) }
/// ```
pub fn write(lock: &Path, store: &Path) -> Result<String> {
    let (url, content) = lock_content(store)?;
    put_new(lock, &content)?;
    Ok(url)
}

/// Place `content` at `lock`, never replacing a file there.
fn put_new(lock: &Path, content: &str) -> Result<()> {
    match put(lock, content.as_bytes(), Replace::Never) {
        Ok(()) => Ok(()),
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

/// The absolute `file://` URL of the existing file `store`.
///
/// ```
/// use cln_backup::lockfile;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = dir.path().join("node.redb");
/// std::fs::write(&store, b"")?;
/// // A roundabout spelling still gives the canonical path.
/// let url = lockfile::file_url(&dir.path().join(".").join("node.redb"))?;
/// assert_eq!(url, format!("file://{}", std::fs::canonicalize(&store)?.display()));
/// assert!(lockfile::file_url(&dir.path().join("missing.redb")).is_err());
/// # Ok(()) }
/// ```
pub fn file_url(store: &Path) -> Result<String> {
    Ok(lock_content(store)?.0)
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
///
/// ```
/// use cln_backup::lockfile::{self, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = dir.path().join("node.redb");
/// # std::fs::write(&store, b"")?;
/// let done = lockfile::repoint(dir.path(), &store, "python")?;
/// assert_eq!(done.lock, dir.path().join(LOCK_FILE_NAME));
/// assert_eq!(done.url, lockfile::read_url(dir.path())?);
/// assert_eq!(done.kept, None, "there was no lock to keep");
/// # Ok(()) }
/// ```
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
///
/// ```
/// use cln_backup::lockfile::{self, LOCK_FILE_NAME};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let (dbak, store) = (dir.path().join("backup.dbak"), dir.path().join("node.redb"));
/// # std::fs::write(&dbak, b"")?;
/// # std::fs::write(&store, b"")?;
/// lockfile::write(&dir.path().join(LOCK_FILE_NAME), &dbak)?;
/// let python_lock = std::fs::read(dir.path().join(LOCK_FILE_NAME))?;
/// let done = lockfile::repoint(dir.path(), &store, "python")?;
/// assert_eq!(lockfile::read(dir.path())?, std::fs::canonicalize(&store)?);
/// let kept = done.kept.unwrap();
/// assert_eq!(kept, dir.path().join("backup.lock.python"));
/// assert_eq!(std::fs::read(&kept)?, python_lock);
/// // Once more would lose the kept lock: refused, nothing changes.
/// assert!(lockfile::repoint(dir.path(), &dbak, "python").is_err());
/// assert_eq!(lockfile::read(dir.path())?, std::fs::canonicalize(&store)?);
/// # Ok(()) }
/// ```
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
        assert!(remote.contains("backup.lock") && remote.contains("socket:[::1]:1234"), "{remote}");
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
