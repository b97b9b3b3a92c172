//! Writing a file so that it appears whole or not at all.
//!
//! Owns the one way the project puts a file in place: a temporary file beside
//! the target with a recognisable name (`.cln-backup-<purpose>-<pid>-<random>`),
//! written, fsync'd, given its owner and mode, then renamed over the target
//! (or linked without replacing one that appeared meanwhile), and the
//! directory fsync'd. A temporary that is not placed is removed when dropped,
//! with any SQLite side files next to it. Owns too the clean-up of the
//! temporaries an interrupted run left: every new temporary first removes, in
//! its directory, those whose writing process is gone.
//!
//! Scratch directories in `$TMPDIR` ([`ScratchDir`]) carry the same kind of
//! name and are cleaned up the same way.
//!
//! It must not know what the files hold (databases, stores, dumps): callers
//! decide what goes in, and what to move aside before a replacement.
//!
//! Public: [`TempFile`] as scratch space beside a target, [`ScratchDir`],
//! [`Ownership`] (in every report of a placed file), [`parent_dir`] and
//! [`give_to_owner_of`], which the front ends use; placing a file, the
//! clean-up and the name helpers are the library's own.
//!
//! ```
//! use cln_backup::atomic_file::TempFile;
//! use std::io::Write;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let target = dir.path().join("lightningd.sqlite3");
//! let mut tmp = TempFile::create(&target, "copy")?;
//! tmp.file()?.write_all(b"partial")?;
//! // Beside the target, named for its purpose and the process writing it.
//! let name = tmp.path().file_name().unwrap().to_string_lossy().into_owned();
//! assert!(name.starts_with(&format!(".cln-backup-copy-{}-", std::process::id())), "{name}");
//! assert_eq!(tmp.path().parent(), Some(dir.path()));
//! // Never placed: dropping it leaves nothing behind, and no target.
//! drop(tmp);
//! assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
//! # Ok(()) }
//! ```

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Every temporary's name starts with this.
pub(crate) const TEMP_PREFIX: &str = ".cln-backup-";

/// The files SQLite keeps beside a database `X`: `X-journal` (rollback
/// journal), `X-wal` and `X-shm` (write-ahead log and its index).
pub(crate) const SQLITE_SIDE_SUFFIXES: [&str; 3] = ["-journal", "-wal", "-shm"];

/// What to do when the target exists at the moment of placing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Replace {
    /// Replace it (rename over it).
    Existing,
    /// Never replace it: the placement fails with
    /// [`Error::DestinationExists`], even if the target appeared after the
    /// temporary was created.
    Never,
}

/// Who owns a file that replaces nothing. A file that replaces one always
/// takes that file's owner, group and mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NewOwner {
    /// The running process, mode 0600.
    Process,
    /// The owner and group of the target's directory, mode 0600: a
    /// database restored by root into lightningd's directory belongs to the
    /// user lightningd runs as.
    Directory,
}

/// The owner, group and mode a placed file got.
///
/// Every report of a placed file carries one (a restore's, an export's):
///
/// ```
/// use cln_backup::{restore, Store};
/// use std::os::unix::fs::MetadataExt;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// let dest = dir.path().join("lightningd.sqlite3");
/// let report = restore::restore_store(&store, &dest, &Default::default())?;
/// // A new database: the owner and group of its directory, mode 0600.
/// let owner = std::fs::metadata(dir.path())?;
/// let got = &report.ownership;
/// assert_eq!((got.uid, got.gid, got.mode), (owner.uid(), owner.gid(), 0o600));
/// assert!(got.to_string().ends_with("mode 0600"), "{got}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Ownership {
    /// The owner's user id.
    pub uid: u32,
    /// The group id.
    pub gid: u32,
    /// Permission bits (`0o640`).
    pub mode: u32,
    /// The owner's name from `/etc/passwd`, when found there.
    pub user: Option<String>,
    /// The group's name from `/etc/group`, when found there.
    pub group: Option<String>,
    /// Set when the file could not be given the owner it should have had
    /// (not root): says which owner was wanted and that ours was kept.
    pub note: Option<String>,
}

impl std::fmt::Display for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "owner {}, mode {:04o}", describe_owner(self.uid, self.gid), self.mode)?;
        if let Some(note) = &self.note {
            write!(f, " ({note})")?;
        }
        Ok(())
    }
}

impl Ownership {
    /// The line a front end prints for a file given this ownership:
    /// `Set owner 1000:1000 (lightning:lightning), mode 0600 on PATH`, and
    /// the note, if any, after the path.
    ///
    /// ```
    /// # use cln_backup::{restore, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
    /// #     "INSERT INTO vars VALUES ('data_version', 0)",
    /// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
    /// # ])?;
    /// let dest = dir.path().join("lightningd.sqlite3");
    /// let report = restore::restore_store(&store, &dest, &Default::default())?;
    /// let line = report.ownership.set_line(&report.path);
    /// assert!(line.starts_with("Set owner "), "{line}");
    /// assert!(line.ends_with(&format!("mode 0600 on {}", dest.display())), "{line}");
    /// # Ok(()) }
    /// ```
    pub fn set_line(&self, path: &Path) -> String {
        let mut line =
            format!("Set owner {}, mode {:04o} on {}", describe_owner(self.uid, self.gid), self.mode, path.display());
        if let Some(note) = &self.note {
            line.push_str(&format!(" ({note})"));
        }
        line
    }
}

/// `1000:1000 (lightning:lightning)`, the names when the system knows them.
pub(crate) fn describe_owner(uid: u32, gid: u32) -> String {
    let user = user_name(uid);
    let group = group_name(gid);
    if user.is_none() && group.is_none() {
        return format!("{uid}:{gid}");
    }
    let user = user.unwrap_or_else(|| uid.to_string());
    let group = group.unwrap_or_else(|| gid.to_string());
    format!("{uid}:{gid} ({user}:{group})")
}

/// The temporaries and scratch directories this process has not placed or
/// removed yet, with what each is for, so that a front end stopped by a
/// signal can remove them before it exits ([`remove_unfinished`]).
static UNFINISHED: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<(PathBuf, PathBuf)>> {
    UNFINISHED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn forget(path: &Path) {
    unfinished().retain(|(p, _)| p != path);
}

/// Remove every temporary file (with its SQLite side files) and scratch
/// directory this process made and has not placed or removed, and return
/// the targets of the files removed. For a front end stopped by a signal,
/// just before it exits (decision: an interrupted command leaves nothing,
/// instead of leaving its temporaries to the next run's clean-up). The
/// registry stays locked, so that nothing is registered meanwhile: call it
/// only on the way out.
///
/// ```
/// use cln_backup::atomic_file::{remove_unfinished, TempFile};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let target = dir.path().join("lightningd.sqlite3");
/// let tmp = TempFile::create(&target, "restore")?;
/// let unfinished = tmp.path().to_path_buf();
/// // SIGTERM arrived: take away what this process was writing, then exit.
/// assert_eq!(remove_unfinished(), [target.clone()]);
/// assert!(!unfinished.exists() && !target.exists());
/// // The registry stays locked: nothing is dropped after this, the process exits.
/// std::mem::forget(tmp);
/// # Ok(()) }
/// ```
pub fn remove_unfinished() -> Vec<PathBuf> {
    let mut list = unfinished();
    let mut targets = Vec::new();
    for (path, target) in list.drain(..) {
        if path.is_dir() {
            let _ = std::fs::remove_dir_all(&path);
        } else if std::fs::remove_file(&path).is_ok() {
            remove_with_side_files(&path);
            targets.push(target);
        }
    }
    std::mem::forget(list);
    targets
}

/// A temporary file beside its target. Dropped before it was placed, it is
/// removed, with its SQLite side files. Outside the library it is scratch
/// space beside a target (`init`'s copy of a live database); putting it in
/// place is the library's (`place` and `commit` are crate-private), so that
/// every file the project places goes through the checks above.
///
/// ```
/// use cln_backup::atomic_file::TempFile;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let tmp = TempFile::create(&dir.path().join("lightningd.sqlite3"), "copy")?;
/// // Used as a database, it gets SQLite's side files beside it.
/// let journal = format!("{}-journal", tmp.path().display());
/// std::fs::write(&journal, b"")?;
/// let path = tmp.path().to_path_buf();
/// drop(tmp);
/// assert!(!path.exists() && !std::path::Path::new(&journal).exists());
/// # Ok(()) }
/// ```
pub struct TempFile {
    path: PathBuf,
    target: PathBuf,
    file: Option<File>,
    placed: bool,
}

impl TempFile {
    /// Create an empty temporary file (mode 0600) beside `target`, after
    /// removing leftovers of interrupted runs in that directory. `purpose`
    /// names it (`restore`, `export`...); it must not contain `-`.
    ///
    /// ```
    /// use cln_backup::atomic_file::TempFile;
    /// use std::os::unix::fs::PermissionsExt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let target = dir.path().join("dump.sql");
    /// let tmp = TempFile::create(&target, "export")?;
    /// let meta = std::fs::metadata(tmp.path())?;
    /// assert_eq!((meta.len(), meta.permissions().mode() & 0o777), (0, 0o600));
    /// assert!(!target.exists(), "the target is not touched");
    /// # Ok(()) }
    /// ```
    pub fn create(target: &Path, purpose: &str) -> Result<TempFile> {
        let dir = parent_dir(target);
        remove_leftovers(&dir);
        for _ in 0..16 {
            let path = dir.join(temp_name(purpose));
            match OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
                Ok(file) => {
                    unfinished().push((path.clone(), target.to_path_buf()));
                    return Ok(TempFile { path, target: target.to_path_buf(), file: Some(file), placed: false });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        Err(Error::io(&dir, std::io::Error::new(ErrorKind::AlreadyExists, "no free temporary file name")))
    }

    /// A temporary name beside `target` for a file the caller creates itself,
    /// exclusively (as [`Store::create`](crate::Store::create) does). Leftovers
    /// are removed first as by [`create`](Self::create).
    pub(crate) fn reserve(target: &Path, purpose: &str) -> Result<TempFile> {
        let dir = parent_dir(target);
        remove_leftovers(&dir);
        let path = dir.join(temp_name(purpose));
        unfinished().push((path.clone(), target.to_path_buf()));
        Ok(TempFile { path, target: target.to_path_buf(), file: None, placed: false })
    }

    /// The temporary file's path.
    ///
    /// ```
    /// use cln_backup::atomic_file::TempFile;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let target = dir.path().join("lightningd.sqlite3");
    /// let tmp = TempFile::create(&target, "copy")?;
    /// // In the target's directory, so that placing it is a rename.
    /// assert_eq!(tmp.path().parent(), target.parent());
    /// assert_ne!(tmp.path(), target);
    /// assert!(tmp.path().is_file());
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open temporary file (opened now if it was reserved).
    ///
    /// ```
    /// use cln_backup::atomic_file::TempFile;
    /// use std::io::Write;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let mut tmp = TempFile::create(&dir.path().join("out.sql"), "export")?;
    /// tmp.file()?.write_all(b"SELECT 1;")?;
    /// tmp.file()?.flush()?;
    /// assert_eq!(std::fs::read(tmp.path())?, b"SELECT 1;");
    /// # Ok(()) }
    /// ```
    pub fn file(&mut self) -> Result<&mut File> {
        if self.file.is_none() {
            let file =
                OpenOptions::new().read(true).write(true).open(&self.path).map_err(|e| Error::io(&self.path, e))?;
            self.file = Some(file);
        }
        self.file.as_mut().ok_or_else(|| Error::io(&self.path, ErrorKind::NotFound.into()))
    }

    /// A second handle on the temporary file, for a writer that takes one by value.
    pub(crate) fn reopen(&self) -> Result<File> {
        OpenOptions::new().read(true).write(true).open(&self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// fsync the temporary file and give it the owner, group and mode the
    /// target should have (see [`NewOwner`]). Returns what was set and the
    /// file's size.
    pub(crate) fn settle(&mut self, owner: NewOwner) -> Result<(Ownership, u64)> {
        let target = self.target.clone();
        let path = self.path.clone();
        let file = self.file()?;
        file.sync_all().map_err(|e| Error::io(&path, e))?;
        let ownership = set_ownership(file, &path, &target, owner)?;
        let bytes = file.metadata().map_err(|e| Error::io(&path, e))?.len();
        Ok((ownership, bytes))
    }

    /// Put the temporary file at its target and fsync the directory. With
    /// [`Replace::Never`] an existing target is left alone and the result is
    /// [`Error::DestinationExists`]. Call [`settle`](Self::settle) first.
    pub(crate) fn place(mut self, replace: Replace) -> Result<PathBuf> {
        self.file = None;
        #[cfg(test)]
        crate::store::before_rename(&self.path, &self.target).map_err(|e| Error::io(&self.target, e))?;
        match replace {
            Replace::Existing => std::fs::rename(&self.path, &self.target).map_err(|e| Error::io(&self.target, e))?,
            Replace::Never => link_new(&self.path, &self.target)?,
        }
        self.placed = true;
        if let Err(e) = sync_parent(&self.target) {
            // Decision: a new name whose directory could not be synced is
            // taken back, so that a failure leaves nothing at the target
            // (nothing had that name before). A replaced file cannot be
            // given back; the caller knows the rename happened.
            if matches!(replace, Replace::Never) {
                let _ = std::fs::remove_file(&self.target);
            }
            return Err(e);
        }
        Ok(self.target.clone())
    }

    /// [`settle`](Self::settle), then [`place`](Self::place).
    pub(crate) fn commit(mut self, replace: Replace, owner: NewOwner) -> Result<Committed> {
        let (ownership, bytes) = self.settle(owner)?;
        let path = self.place(replace)?;
        Ok(Committed { path, bytes, ownership })
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        self.file = None;
        if !self.placed {
            remove_with_side_files(&self.path);
        }
        forget(&self.path);
    }
}

/// A scratch directory in `$TMPDIR` (a trial restore, a comparison), named
/// as the temporaries are (`.cln-backup-<purpose>-<pid>-<random>`), removed
/// with everything in it when dropped, and by a later run if this one is
/// killed first.
///
/// ```
/// use cln_backup::atomic_file::ScratchDir;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let scratch = ScratchDir::new("trial")?;
/// let db = scratch.path().join("lightningd.sqlite3");
/// std::fs::write(&db, b"")?;
/// let path = scratch.path().to_path_buf();
/// drop(scratch);
/// assert!(!path.exists(), "removed with everything in it");
/// # Ok(()) }
/// ```
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Create one, after removing those of runs that are gone.
    ///
    /// ```
    /// use cln_backup::atomic_file::ScratchDir;
    /// use std::os::unix::fs::PermissionsExt;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scratch = ScratchDir::new("compare")?;
    /// assert_eq!(scratch.path().parent(), Some(std::env::temp_dir().as_path()));
    /// assert_eq!(std::fs::metadata(scratch.path())?.permissions().mode() & 0o777, 0o700);
    /// // Each call makes a directory of its own.
    /// assert_ne!(ScratchDir::new("compare")?.path(), scratch.path());
    /// # Ok(()) }
    /// ```
    pub fn new(purpose: &str) -> Result<ScratchDir> {
        let dir = std::env::temp_dir();
        remove_leftovers(&dir);
        for _ in 0..16 {
            let path = dir.join(temp_name(purpose));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    unfinished().push((path.clone(), path.clone()));
                    return Ok(ScratchDir { path });
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        Err(Error::io(&dir, std::io::Error::new(ErrorKind::AlreadyExists, "no free temporary directory name")))
    }

    /// The directory's path.
    ///
    /// ```
    /// use cln_backup::atomic_file::ScratchDir;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let scratch = ScratchDir::new("trial")?;
    /// assert!(scratch.path().is_dir());
    /// let name = scratch.path().file_name().unwrap().to_string_lossy().into_owned();
    /// assert!(name.starts_with(".cln-backup-trial-"), "{name}");
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        forget(&self.path);
    }
}

fn remove_with_side_files(path: &Path) {
    if let Ok(file) = OpenOptions::new().write(true).open(path) {
        give_back_in_steps(&file);
    }
    let _ = std::fs::remove_file(path);
    for side in side_paths(path) {
        let _ = std::fs::remove_file(side);
    }
}

/// Bytes a file gives back to the file system per step (see
/// [`give_back_in_steps`]).
pub(crate) const GIVE_BACK_STEP: u64 = 4 << 20;

/// The pause between two steps of [`give_back_in_steps`]: it lets the node's
/// own commits in between.
pub(crate) const GIVE_BACK_PAUSE: std::time::Duration = std::time::Duration::from_millis(2);

/// Empty `file` from its end, [`GIVE_BACK_STEP`] bytes at a time, each step
/// synced, before the caller removes or closes it. Best effort: an error
/// stops it, and the rest is freed when the file goes.
///
/// Decision: a large file is never freed in one go while a node may be
/// writing beside it. Freeing a gigabyte at once is one journal commit that
/// every other file's `fdatasync` on the same file system waits for, and
/// with online discard (ext4 `-o discard`) that commit also trims every
/// block: an unrelated 200-byte `fdatasync` was measured to wait 52 ms
/// behind the removal of a 1 GiB file, and at most 6 ms when the same file
/// was emptied in 16 MiB steps first; steps of 4 MiB keep each commit's
/// share of the disk's time near a millisecond.
pub(crate) fn give_back_in_steps(file: &File) {
    if let Ok(len) = file.metadata().map(|m| m.len()) {
        let _ = cut_in_steps(len, 0, |l| file.set_len(l), || file.sync_all());
    }
}

/// The one stepping of [`give_back_in_steps`], for any file: cut a file of
/// `len` bytes down towards `to`, [`GIVE_BACK_STEP`] bytes at a time, each
/// cut followed by `sync` and a pause, and stop once at most one step is
/// left above `to` (the caller makes the last cut, or removes the file).
pub(crate) fn cut_in_steps(
    mut len: u64,
    to: u64,
    set_len: impl Fn(u64) -> std::io::Result<()>,
    sync: impl Fn() -> std::io::Result<()>,
) -> std::io::Result<()> {
    while len > to.saturating_add(GIVE_BACK_STEP) {
        len -= GIVE_BACK_STEP;
        set_len(len)?;
        sync()?;
        std::thread::sleep(GIVE_BACK_PAUSE);
    }
    Ok(())
}

/// What [`TempFile::commit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The file in place.
    pub(crate) path: PathBuf,
    /// Its size in bytes.
    pub(crate) bytes: u64,
    /// The owner, group and mode it got.
    pub(crate) ownership: Ownership,
}

/// `path` with `suffix` appended to its last component (`X` → `X-journal`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// `X-journal`, `X-wal` and `X-shm` for a database `X`, whether or not they exist.
pub(crate) fn side_paths(db: &Path) -> Vec<PathBuf> {
    SQLITE_SIDE_SUFFIXES.iter().map(|suffix| with_suffix(db, suffix)).collect()
}

/// The directory a file lives in (`.` for a bare file name).
///
/// ```
/// use cln_backup::atomic_file::parent_dir;
/// use std::path::Path;
///
/// assert_eq!(parent_dir(Path::new("bitcoin/lightningd.sqlite3")), Path::new("bitcoin"));
/// assert_eq!(parent_dir(Path::new("lightningd.sqlite3")), Path::new("."));
/// ```
pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsync the directory holding `path`, so that a rename or a new name in it
/// survives a crash.
pub(crate) fn sync_parent(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    #[cfg(test)]
    crate::store::before_dir_sync(path).map_err(|e| Error::io(&dir, e))?;
    File::open(&dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(&dir, e))
}

/// Whether `a` and `b` are the same file: the same device and inode (which
/// also catches hard links and symbolic links). A path that does not exist
/// is no file.
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(ma), Ok(mb)) => ma.dev() == mb.dev() && ma.ino() == mb.ino(),
        _ => false,
    }
}

/// Give `tmp` a new name `dest` without replacing a `dest` that exists, then
/// drop the old name.
fn link_new(tmp: &Path, dest: &Path) -> Result<()> {
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => std::fs::remove_file(tmp).map_err(|e| Error::io(tmp, e)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::DestinationExists { path: dest.to_path_buf() }),
        // File systems without hard links: check, then rename.
        Err(_) => {
            if dest.symlink_metadata().is_ok() {
                return Err(Error::DestinationExists { path: dest.to_path_buf() });
            }
            std::fs::rename(tmp, dest).map_err(|e| Error::io(dest, e))
        }
    }
}

/// `.cln-backup-<purpose>-<pid>-<random>`.
fn temp_name(purpose: &str) -> String {
    format!("{TEMP_PREFIX}{purpose}-{}-{}", std::process::id(), random_suffix())
}

/// Eight letters and digits, different each call.
fn random_suffix() -> String {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let mut n = h.finish();
    const ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| {
            let c = ALPHABET[(n % 36) as usize] as char;
            n /= 36;
            c
        })
        .collect()
}

/// The pid in a temporary's file name, if the name is one of ours.
pub(crate) fn writer_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let mut parts = rest.split('-');
    let _purpose = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// Remove, in `dir`, the temporaries (and their SQLite side files) and
/// scratch directories whose writing process is no longer running, and return what was removed. Each
/// removal is logged. Without `/proc` nothing is removed: whether a process
/// runs cannot be told.
pub(crate) fn remove_leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut removed = vec![];
    if !Path::new("/proc/self").exists() {
        return removed;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let own = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(writer_pid) else {
            continue;
        };
        if pid == own || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        // A scratch directory ([`ScratchDir`]) goes with everything in it.
        let removal = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            Ok(_) => std::fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removal {
            Ok(()) => {
                tracing::warn!(
                    "removed {}, left by an interrupted cln-backup run (process {pid} is gone)",
                    path.display()
                );
                removed.push(path);
            }
            Err(e) => tracing::warn!("could not remove {}, left by an interrupted run: {e}", path.display()),
        }
    }
    removed
}

/// Give `file` (at `path`, to be placed at `target`) its owner, group and mode.
fn set_ownership(file: &File, path: &Path, target: &Path, owner: NewOwner) -> Result<Ownership> {
    let (wanted, mode) = match std::fs::metadata(target) {
        Ok(m) => (Some((m.uid(), m.gid())), m.mode() & 0o777),
        Err(_) => match owner {
            NewOwner::Process => (None, 0o600),
            NewOwner::Directory => {
                let dir = parent_dir(target);
                let m = std::fs::metadata(&dir).map_err(|e| Error::io(&dir, e))?;
                (Some((m.uid(), m.gid())), 0o600)
            }
        },
    };
    chown_and_chmod(file, path, wanted, mode)
}

/// Give the file at `path` the owner and group of the directory `dir`,
/// keeping its mode: a store or `.dbak` file made by root for a node is
/// written by the plugin as the user lightningd runs as, who owns the
/// node's network directory. Not running as root, the file keeps its owner
/// and the returned [`Ownership`] says so. Returns `None` when the file
/// already had that owner and group.
///
/// ```
/// use cln_backup::atomic_file::give_to_owner_of;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let dbak = dir.path().join("backup.dbak");
/// std::fs::write(&dbak, b"")?;
/// // Made by the directory's owner: nothing to change.
/// assert_eq!(give_to_owner_of(&dbak, dir.path())?, None);
/// assert!(give_to_owner_of(&dir.path().join("missing"), dir.path()).is_err());
/// # Ok(()) }
/// ```
pub fn give_to_owner_of(path: &Path, dir: &Path) -> Result<Option<Ownership>> {
    let m = std::fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let ours = file.metadata().map_err(|e| Error::io(path, e))?;
    if (ours.uid(), ours.gid()) == (m.uid(), m.gid()) {
        return Ok(None);
    }
    let ownership = chown_and_chmod(&file, path, Some((m.uid(), m.gid())), ours.mode() & 0o777)?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(Some(ownership))
}

/// Give `file` (at `path`) the owner and group `wanted`, if any, and `mode`.
fn chown_and_chmod(file: &File, path: &Path, wanted: Option<(u32, u32)>, mode: u32) -> Result<Ownership> {
    let io = |e| Error::io(path, e);
    let mut note = None;
    if let Some((uid, gid)) = wanted {
        let ours = file.metadata().map_err(io)?;
        if (ours.uid(), ours.gid()) != (uid, gid) {
            match std::os::unix::fs::fchown(file, Some(uid), Some(gid)) {
                Ok(()) => {}
                // Only root gives files away; anyone may pick one of their own groups.
                Err(e) if e.kind() == ErrorKind::PermissionDenied && ours.uid() != 0 => {
                    // The owner shown is what the file has; the note says what it lacks.
                    let _ = std::os::unix::fs::fchown(file, None, Some(gid));
                    note =
                        Some(format!("not running as root, so it could not be given to {}", describe_owner(uid, gid)));
                }
                Err(e) => return Err(io(e)),
            }
        }
    }
    file.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io)?;
    let m = file.metadata().map_err(io)?;
    Ok(Ownership {
        uid: m.uid(),
        gid: m.gid(),
        mode: m.mode() & 0o7777,
        user: user_name(m.uid()),
        group: group_name(m.gid()),
        note,
    })
}

fn user_name(uid: u32) -> Option<String> {
    name_in("/etc/passwd", uid)
}

fn group_name(gid: u32) -> Option<String> {
    name_in("/etc/group", gid)
}

/// The name in the first field of the `name:password:id:...` line whose
/// third field is `id`.
fn name_in(file: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == id && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_large_file_is_emptied_in_steps_before_it_goes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("node.sqlite3");
        let tmp = TempFile::create(&target, "restore").unwrap();
        let path = tmp.path().to_path_buf();
        {
            let f = OpenOptions::new().write(true).open(&path).unwrap();
            f.set_len(3 * GIVE_BACK_STEP + 5).unwrap();
            let t = std::time::Instant::now();
            give_back_in_steps(&f);
            // Three steps, each with its pause, down to the last step's worth.
            assert!(t.elapsed() >= GIVE_BACK_PAUSE * 3, "{:?}", t.elapsed());
            assert_eq!(f.metadata().unwrap().len(), 5);
            f.set_len(2 * GIVE_BACK_STEP).unwrap();
        }
        drop(tmp);
        assert!(!path.exists(), "a temporary dropped unplaced is removed");
    }

    #[test]
    fn names_carry_the_pid() {
        let name = temp_name("restore");
        assert_eq!(writer_pid(&name), Some(std::process::id()));
        assert_eq!(writer_pid(&format!("{name}-journal")), Some(std::process::id()));
        assert_eq!(writer_pid(".cln-backup-restore-AbC123"), None, "an older name without a pid");
        assert_eq!(writer_pid("lightningd.sqlite3"), None);
        assert_ne!(temp_name("x"), temp_name("x"));
    }

    #[test]
    fn dropped_temporaries_vanish_and_committed_ones_land() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out");
        {
            let mut t = TempFile::create(&target, "test").unwrap();
            t.file().unwrap().write_all(b"partial").unwrap();
            std::fs::write(format!("{}-journal", t.path().display()), b"j").unwrap();
        }
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));

        let mut t = TempFile::create(&target, "test").unwrap();
        t.file().unwrap().write_all(b"whole").unwrap();
        let done = t.commit(Replace::Never, NewOwner::Process).unwrap();
        assert_eq!((done.bytes, done.ownership.mode), (5, 0o600));
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(names(dir.path()), ["out"]);

        let mut t = TempFile::create(&target, "test").unwrap();
        t.file().unwrap().write_all(b"again").unwrap();
        let err = t.commit(Replace::Never, NewOwner::Process).unwrap_err();
        assert!(matches!(err, Error::DestinationExists { .. }), "{err}");
        assert_eq!(std::fs::read(&target).unwrap(), b"whole");
        assert_eq!(names(dir.path()), ["out"]);

        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
        let mut t = TempFile::create(&target, "test").unwrap();
        t.file().unwrap().write_all(b"replaced").unwrap();
        let done = t.commit(Replace::Existing, NewOwner::Process).unwrap();
        assert_eq!(done.ownership.mode, 0o640, "the replaced file's mode is kept");
        assert_eq!(std::fs::read(&target).unwrap(), b"replaced");
    }

    #[test]
    fn leftovers_of_gone_processes_are_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let gone = format!(".cln-backup-restore-{dead}-abcdefgh");
        let live = format!(".cln-backup-restore-{}-abcdefgh", std::process::id());
        for name in [gone.clone(), format!("{gone}-journal"), live.clone(), ".cln-backup-restore-old".into()] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let removed = remove_leftovers(dir.path());
        assert_eq!(removed.len(), 2, "{removed:?}");
        let mut kept = vec![".cln-backup-restore-old".to_string(), live];
        kept.sort();
        assert_eq!(names(dir.path()), kept);
    }

    #[test]
    fn same_file_sees_links() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"x").unwrap();
        let b = dir.path().join("b");
        std::fs::hard_link(&a, &b).unwrap();
        let c = dir.path().join("c");
        std::os::unix::fs::symlink(&a, &c).unwrap();
        assert!(same_file(&a, &b) && same_file(&a, &c));
        assert!(same_file(&a, &dir.path().join(".").join("a")));
        assert!(!same_file(&a, &dir.path().join("missing")));
        std::fs::write(dir.path().join("d"), b"x").unwrap();
        assert!(!same_file(&a, &dir.path().join("d")));
    }
}
