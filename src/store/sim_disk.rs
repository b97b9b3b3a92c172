//! A simulated disk under redb, for the power-cut and fault campaigns
//! (tests only).
//!
//! Owns what a disk keeps when the power goes: every redb file opened for
//! writing in a directory the test attached ([`attach`]) goes through a
//! [`SimFile`] (see `file::writable`), which passes reads and writes to the
//! real file and keeps, beside it, the bytes a completed `sync_data` made
//! durable and the writes and length changes made since. At a chosen
//! operation (a count of writes, length changes and syncs over the whole
//! directory) it cuts the power: that operation fails, and so does every
//! later one. [`Disk::image`] then gives what the file holds after the cut:
//! the durable bytes with none, all or a random part of the unsynced
//! operations applied, in order, writes torn at sector granularity. It can
//! also fail one operation with `EIO` and go on (after a failed sync, the
//! writes it did not make durable are lost for good, as Linux drops such
//! pages), and refuse to grow a file past a size (`ENOSPC`).
//!
//! Renames and directory syncs in the directory are operations of the disk
//! too (see `file::before_rename`, `file::before_dir_sync`): a rename not
//! yet followed by a directory sync may be lost in a cut, so that the path
//! shows the file it showed before ([`Disk::ino_at`]).
//!
//! Learned from redb's own crash test (a live and a durable image, the
//! durable one advanced by syncs); the sector tearing, the random reordering
//! of unsynced writes and the failure modes are this project's.
//!
//! It must not be used outside tests: syncs are not passed to the real file
//! (durability is what this module models, and the campaigns run thousands
//! of cases).

use redb::{BackendError, StorageBackend};
use std::collections::HashMap;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The granularity of a torn write: a disk sector.
pub(super) const SECTOR: usize = 512;

/// What happens at the operation a campaign chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    /// The power goes: this operation and every later one fail.
    PowerCut,
    /// This operation fails with `EIO`; later ones work. A failed sync
    /// makes nothing durable, and the writes it was to sync are lost.
    Eio,
}

/// Which unsynced operations reach the disk in an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Loss {
    /// None of them: the last durable state.
    All,
    /// Each with even odds, a write possibly torn into sectors.
    Some,
    /// All of them (a crash just after the cache was written back).
    Nothing,
}

#[derive(Clone, Debug)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct FileState {
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug)]
struct State {
    files: HashMap<u64, FileState>,
    /// Writes, length changes and syncs so far.
    ops: u64,
    fault: Option<(u64, Fault)>,
    /// Set by a power cut.
    dead: bool,
    /// The next sync fails with `EIO`.
    fail_sync: bool,
    /// No file grows past this length (`ENOSPC`).
    capacity: Option<u64>,
    /// Faults injected and `ENOSPC` answers given, for the campaign's figures.
    injected: u64,
    full: u64,
    rng: u64,
    /// Renames since the last directory sync: the target, the file it named
    /// before (none for a new name) and the file it names now.
    renamed: HashMap<PathBuf, (Option<u64>, u64)>,
}

/// An operation on the directory rather than on a file's bytes.
#[derive(Clone, Debug)]
pub(super) enum DirOp {
    /// `target` is to name the file `ino` instead of `before` (if any).
    Rename { target: PathBuf, before: Option<u64>, ino: u64 },
    /// The directory is synced: every rename so far is durable.
    Sync,
}

/// One directory's simulated disk.
#[derive(Debug)]
pub(super) struct Disk {
    dir: PathBuf,
    state: Mutex<State>,
}

static DISKS: Mutex<Vec<Arc<Disk>>> = Mutex::new(Vec::new());

/// Put the files redb opens for writing in `dir` on a simulated disk until
/// the returned handle is dropped. `seed` drives its random choices.
pub(super) fn attach(dir: &Path, seed: u64) -> Attached {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let disk = Arc::new(Disk {
        dir,
        state: Mutex::new(State {
            files: HashMap::new(),
            ops: 0,
            fault: None,
            dead: false,
            fail_sync: false,
            capacity: None,
            injected: 0,
            full: 0,
            rng: seed | 1,
            renamed: HashMap::new(),
        }),
    });
    disks().push(disk.clone());
    Attached(disk)
}

fn disks() -> MutexGuard<'static, Vec<Arc<Disk>>> {
    DISKS.lock().unwrap_or_else(|p| p.into_inner())
}

/// The disk of the directory `path` is in, if a test attached one.
pub(super) fn disk_for(path: &Path) -> Option<Arc<Disk>> {
    let parent = path.parent()?;
    let parent = parent.canonicalize().unwrap_or_else(|_| parent.to_path_buf());
    disks().iter().find(|d| d.dir == parent).cloned()
}

/// `path` with its directory resolved (the file itself need not exist).
pub(super) fn canonical(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf()).join(name),
        _ => path.to_path_buf(),
    }
}

/// A simulated disk, detached when dropped.
#[derive(Debug)]
pub(super) struct Attached(Arc<Disk>);

impl std::ops::Deref for Attached {
    type Target = Disk;
    fn deref(&self) -> &Disk {
        &self.0
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        disks().retain(|d| !Arc::ptr_eq(d, &self.0));
    }
}

fn next_random(state: &mut u64) -> u64 {
    // xorshift64*: enough for choosing what a cut keeps.
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

fn apply(image: &mut Vec<u8>, op: &Pending) {
    match op {
        Pending::SetLen(len) => image.resize(*len as usize, 0),
        Pending::Write { offset, data } => write_at(image, *offset as usize, data),
    }
}

fn write_at(image: &mut Vec<u8>, offset: usize, data: &[u8]) {
    if image.len() < offset + data.len() {
        image.resize(offset + data.len(), 0);
    }
    image[offset..offset + data.len()].copy_from_slice(data);
}

fn power_cut() -> io::Error {
    io::Error::other("simulated power cut")
}

impl Disk {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fail the `at`-th operation from now (1 is the next) with `fault`.
    pub(super) fn fault_in(&self, at: u64, fault: Fault) {
        let mut st = self.state();
        st.fault = Some((st.ops + at, fault));
    }

    /// Fail the next sync with `EIO`, whichever file it is of.
    pub(super) fn fail_next_sync(&self) {
        self.state().fail_sync = true;
    }

    /// Refuse to grow any file past `bytes` (`None`: no limit).
    pub(super) fn set_capacity(&self, bytes: Option<u64>) {
        self.state().capacity = bytes;
    }

    /// Writes, length changes and syncs so far.
    pub(super) fn ops(&self) -> u64 {
        self.state().ops
    }

    /// Whether the power was cut.
    pub(super) fn is_dead(&self) -> bool {
        self.state().dead
    }

    /// (faults injected, growths refused for want of space).
    pub(super) fn counts(&self) -> (u64, u64) {
        let st = self.state();
        (st.injected, st.full)
    }

    /// Count a directory operation and say whether it goes ahead (before it
    /// is done for real: a rename the power cut stops is not done).
    pub(super) fn dir_op(&self, op: DirOp) -> io::Result<()> {
        let mut st = self.state();
        let st = &mut *st;
        if st.dead {
            return Err(power_cut());
        }
        st.ops += 1;
        match st.fault {
            Some((at, Fault::PowerCut)) if at == st.ops => {
                st.dead = true;
                st.injected += 1;
                return Err(power_cut());
            }
            Some((at, Fault::Eio)) if at == st.ops => {
                st.injected += 1;
                return Err(io::Error::from_raw_os_error(5));
            }
            _ => {}
        }
        match op {
            DirOp::Rename { target, before, ino } => {
                // Two renames over one name before a sync: the durable one
                // is still the first's `before`.
                let durable = st.renamed.get(&target).map_or(before, |(b, _)| *b);
                st.renamed.insert(target, (durable, ino));
            }
            DirOp::Sync => st.renamed.clear(),
        }
        Ok(())
    }

    /// The file `path` names after a crash now: with `lose_renames`, the
    /// one that a rename not yet followed by a directory sync replaced
    /// (`None` if the name was new), otherwise the one it names now.
    pub(super) fn ino_at(&self, path: &Path, lose_renames: bool) -> io::Result<Option<u64>> {
        let path = canonical(path);
        match self.state().renamed.get(&path) {
            Some(&(before, _)) if lose_renames => return Ok(before),
            Some(&(_, now)) => return Ok(Some(now)),
            None => {}
        }
        match std::fs::metadata(&path) {
            Ok(m) => Ok(Some(std::os::unix::fs::MetadataExt::ino(&m))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A coin toss from the disk's seed.
    pub(super) fn coin(&self) -> bool {
        next_random(&mut self.state().rng).is_multiple_of(2)
    }

    /// What the file `ino` holds after a crash now, losing `loss` of what
    /// was not synced. `None` for a file this disk never saw.
    pub(super) fn image(&self, ino: u64, loss: Loss) -> Option<Vec<u8>> {
        let mut st = self.state();
        let st = &mut *st;
        let file = st.files.get(&ino)?;
        let mut image = file.durable.clone();
        for op in &file.pending {
            match loss {
                Loss::All => {}
                Loss::Nothing => apply(&mut image, op),
                Loss::Some => {
                    let roll = next_random(&mut st.rng) % 6;
                    match (op, roll) {
                        (_, 0..=2) => {}
                        (Pending::Write { offset, data }, 3) => {
                            // Torn: some sectors of it, not others.
                            for (i, sector) in data.chunks(SECTOR).enumerate() {
                                if next_random(&mut st.rng).is_multiple_of(2) {
                                    write_at(&mut image, *offset as usize + i * SECTOR, sector);
                                }
                            }
                        }
                        _ => apply(&mut image, op),
                    }
                }
            }
        }
        Some(image)
    }

    /// Count one operation on `ino` and say whether it goes ahead. A write
    /// that the power cut interrupts may still have reached the cache.
    fn op(&self, ino: u64, what: Option<Pending>) -> io::Result<()> {
        let mut st = self.state();
        let st = &mut *st;
        if st.dead {
            return Err(power_cut());
        }
        st.ops += 1;
        let file = st.files.entry(ino).or_default();
        if what.is_none() && st.fail_sync {
            st.fail_sync = false;
            st.injected += 1;
            file.pending.clear();
            return Err(io::Error::from_raw_os_error(5));
        }
        match st.fault {
            Some((at, Fault::PowerCut)) if at == st.ops => {
                st.dead = true;
                st.injected += 1;
                if let Some(op) = what {
                    file.pending.push(op);
                }
                Err(power_cut())
            }
            Some((at, Fault::Eio)) if at == st.ops => {
                st.injected += 1;
                if what.is_none() {
                    // The sync failed: what it was to make durable is gone,
                    // whatever the cache still shows.
                    file.pending.clear();
                }
                Err(io::Error::from_raw_os_error(5))
            }
            _ => {
                match what {
                    Some(op) => file.pending.push(op),
                    None => {
                        for op in std::mem::take(&mut file.pending) {
                            apply(&mut file.durable, &op);
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn check_space(&self, end: u64) -> io::Result<()> {
        let mut st = self.state();
        if st.capacity.is_some_and(|c| end > c) {
            st.full += 1;
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(())
    }

    /// Wrap `inner`, the file `ino`, in this disk. A file seen before keeps
    /// its state (closed and opened again, it is the same file); a new one
    /// (or an empty one) starts durable as it is.
    pub(super) fn file<B: StorageBackend>(self: &Arc<Self>, ino: u64, inner: B) -> io::Result<SimFile<B>> {
        let mut st = self.state();
        if st.dead {
            return Err(power_cut());
        }
        let len = inner.len()?;
        // An empty file is new, whatever an inode of the same number held
        // before (the file system reuses them).
        if len == 0 || !st.files.contains_key(&ino) {
            let mut durable = vec![0u8; len as usize];
            inner.read(0, &mut durable)?;
            st.files.insert(ino, FileState { durable, pending: Vec::new() });
        }
        Ok(SimFile { inner, disk: self.clone(), ino })
    }
}

/// One file on a simulated disk (see the module doc).
#[derive(Debug)]
pub(super) struct SimFile<B> {
    inner: B,
    disk: Arc<Disk>,
    ino: u64,
}

impl<B: StorageBackend> SimFile<B> {
    fn alive(&self) -> io::Result<()> {
        if self.disk.is_dead() {
            return Err(power_cut());
        }
        Ok(())
    }
}

impl<B: StorageBackend> StorageBackend for SimFile<B> {
    fn len(&self) -> io::Result<u64> {
        self.alive()?;
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.alive()?;
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.disk.check_space(len)?;
        self.disk.op(self.ino, Some(Pending::SetLen(len)))?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> io::Result<()> {
        // Not passed on: durability is modelled here.
        self.disk.op(self.ino, None)
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.disk.check_space(offset + data.len() as u64)?;
        self.disk.op(self.ino, Some(Pending::Write { offset, data: data.to_vec() }))?;
        self.inner.write(offset, data)
    }

    fn close(&self) -> io::Result<()> {
        // Locks are released whatever happened: the test goes on.
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}
