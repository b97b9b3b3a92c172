//! Background I/O at a pace a running node does not notice.
//!
//! Owns how a compaction writes the files it makes beside a live store (the
//! replayed image, the new store file): each is synced every [`STEP`]
//! bytes, so that its dirty pages never pile up into a write-back burst that
//! the node's own `fdatasync` would queue behind, and, when a rate is set,
//! the bytes are spread over time so that the disk is never kept busy by the
//! compaction for long. It must not decide what is written, nor where.
//!
//! Owns too the CPU side: [`in_background`] runs a compaction's work on a
//! thread of its own at the lowest CPU priority, so that the node's threads,
//! and the kernel's threads that complete its `fdatasync`, always run first.
//!
//! Decision: I/O is paced by syncs and sleeps on the compaction's own
//! thread, not by I/O priorities: those depend on the kernel's scheduler
//! (`none` and `kyber` ignore them), while a bounded amount of unsynced data
//! and a bounded rate hold on any Linux disk.
//!
//! Decision: the CPU priority is lowered on a new thread, never on the
//! caller's: an unprivileged process cannot raise a thread's priority back,
//! and the caller may be the plugin's own thread or an embedder's. The work
//! done under the store's state lock (a compaction's switch-over) stays on
//! the caller's thread, so a writer never waits for a thread that the CPU
//! serves last. Measured on a 2-core machine: a 200-byte `fdatasync` loop
//! beside one busy thread at normal priority had a p99 of 18.8 ms (worst
//! 28 ms); beside the same thread at the lowest priority, 3.8 ms (worst
//! 10 ms), as with nothing running beside it (5.2 ms, worst 15 ms).

use crate::error::{Error, Result};
use std::fs::File;
use std::io::Write;
use std::ops::Bound;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes written between two syncs of a paced file: at the 1 GB/s of a
/// common SSD, about a millisecond of the disk's time, so a node's commit
/// that arrives behind one waits about that long.
pub(crate) const STEP: u64 = 1 << 20;

/// Run `work` on a new thread at the lowest CPU priority (see the module
/// doc) and return what it returns; `path` names the store in the error if
/// no thread can be started. Where the priority cannot be lowered (not
/// Linux, or refused), the work runs at the caller's priority.
pub(crate) fn in_background<T: Send>(path: &Path, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("cln-backup-bg".into())
            .spawn_scoped(scope, || {
                lower_priority();
                work()
            })
            .map_err(|e| Error::io(path, e))?;
        match handle.join() {
            Ok(out) => out,
            // A panic of the work is the caller's, as if it had run here.
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}

/// The calling thread's CPU priority to the lowest (nice 19). Threads it
/// starts inherit it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        if let Err(e) = rustix::process::setpriority_process(Some(tid), 19) {
            tracing::debug!("could not lower the priority of a background thread: {e}");
        }
    }
}

/// How a file is written: as fast as it goes (a restore, with the node
/// stopped), or in the background of a running node at an optional rate in
/// bytes a second (a compaction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Pace {
    #[default]
    Foreground,
    Background(Option<u64>),
}

/// The bookkeeping of a paced file: bytes unsynced, bytes written, and the
/// rate.
#[derive(Debug)]
struct Pacer {
    unsynced: u64,
    /// Bytes a second, `None` for as fast as the disk goes.
    rate: Option<u64>,
    started: Instant,
    spent: u64,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Pacer {
        Pacer { unsynced: 0, rate: rate.filter(|r| *r > 0), started: Instant::now(), spent: 0 }
    }

    /// `n` bytes were written: `sync` once [`STEP`] bytes are unsynced.
    fn wrote<E>(&mut self, n: u64, sync: impl FnOnce() -> std::result::Result<(), E>) -> std::result::Result<(), E> {
        self.unsynced += n;
        self.spent += n;
        if self.unsynced >= STEP {
            self.synced(sync)?;
        }
        Ok(())
    }

    /// `sync` now, then wait until the bytes written are due at the rate.
    fn synced<E>(&mut self, sync: impl FnOnce() -> std::result::Result<(), E>) -> std::result::Result<(), E> {
        sync()?;
        self.unsynced = 0;
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_secs_f64(self.spent as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        Ok(())
    }
}

/// A file written in the background of a running node (see the module doc).
/// Writing through it syncs every [`STEP`] bytes; SQLite's writes through
/// its own handle on the same file are synced with [`Paced::sync`].
pub(crate) struct Paced {
    file: File,
    pacer: Pacer,
}

impl Paced {
    pub(crate) fn new(file: File, rate: Option<u64>) -> Paced {
        Paced { file, pacer: Pacer::new(rate) }
    }

    /// Sync now whatever was written (an unknown amount: SQLite's pages at
    /// a commit), and keep the rate.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        let file = &self.file;
        self.pacer.synced(|| file.sync_data())
    }
}

impl Write for Paced {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.file.write(buf)?;
        let file = &self.file;
        self.pacer.wrote(n as u64, || file.sync_data())?;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// A redb file written in the background of a running node: every write
/// redb makes (its commits, and the page moves of its own compaction) goes
/// through the pacing of the module doc. Used for a compaction's new store
/// file only while it is built: the file is opened again, without it,
/// before it serves the node's writes.
#[derive(Debug)]
pub(crate) struct PacedBackend {
    inner: redb::backends::FileBackend,
    pacer: std::sync::Mutex<Pacer>,
}

impl PacedBackend {
    pub(crate) fn new(inner: redb::backends::FileBackend, rate: Option<u64>) -> PacedBackend {
        PacedBackend { inner, pacer: std::sync::Mutex::new(Pacer::new(rate)) }
    }
}

type BackendResult<T> = std::io::Result<T>;
type LockResult<T> = std::result::Result<T, redb::BackendError>;

impl redb::StorageBackend for PacedBackend {
    fn len(&self) -> BackendResult<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> BackendResult<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> BackendResult<()> {
        // redb cuts the free space off the end of the file in one call
        // (after its compaction, hundreds of megabytes): given back in steps
        // instead, as `atomic_file::give_back_in_steps` does and for the
        // same reason.
        let current = self.inner.len()?;
        crate::atomic_file::cut_in_steps(current, len, |l| self.inner.set_len(l), || self.inner.sync_data())?;
        self.inner.set_len(len)
    }

    fn sync_data(&self) -> BackendResult<()> {
        self.inner.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> BackendResult<()> {
        self.inner.write(offset, data)?;
        let mut pacer = self.pacer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        pacer.wrote(data.len() as u64, || self.inner.sync_data())
    }

    fn close(&self) -> BackendResult<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<()> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> LockResult<bool> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_rate_spreads_the_bytes_over_time_and_everything_reaches_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut p = Paced::new(File::create(&path).unwrap(), Some(16 << 20));
        let t = Instant::now();
        for _ in 0..8 {
            p.write_all(&vec![7u8; 1 << 20]).unwrap();
        }
        p.flush().unwrap();
        // 8 MiB at 16 MiB/s: at least the seven steps synced before the last
        // are due at 7/16 s; an unpaced write takes a few milliseconds.
        assert!(t.elapsed() >= Duration::from_millis(430), "{:?}", t.elapsed());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8 << 20);
    }

    #[test]
    fn background_work_runs_at_the_lowest_priority_and_the_caller_keeps_its_own() {
        let here = Path::new("store.redb");
        #[cfg(target_os = "linux")]
        {
            let own = || rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap();
            let before = own();
            let inside = in_background(here, || Ok(own())).unwrap();
            assert_eq!(inside, 19);
            assert_eq!(own(), before, "the caller's thread is left as it was");
        }
        assert_eq!(in_background(here, || Ok(7)).unwrap(), 7);
        let err =
            in_background(here, || -> Result<()> { Err(Error::io(here, std::io::Error::other("boom"))) }).unwrap_err();
        assert!(err.to_string().contains("boom") && err.to_string().contains("store.redb"), "{err}");
    }

    #[test]
    fn a_paced_redb_file_is_cut_in_steps_and_keeps_what_it_holds() {
        use redb::{ReadableDatabase, StorageBackend, TableDefinition};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.redb");
        let file = std::fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path).unwrap();
        let backend = PacedBackend::new(redb::backends::FileBackend::new(file).unwrap(), None);
        const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");
        let db = redb::Database::builder().create_with_backend(backend).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(T).unwrap().insert(1, vec![5u8; 3 << 20].as_slice()).unwrap();
        txn.commit().unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(T).unwrap().get(1).unwrap().unwrap().value(), vec![5u8; 3 << 20].as_slice());
        drop(txn);
        drop(db);
        // A cut of 24 MiB goes in 4 MiB steps, each followed by a pause.
        let backend = PacedBackend::new(
            redb::backends::FileBackend::new(std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap())
                .unwrap(),
            None,
        );
        backend.set_len(24 << 20).unwrap();
        let t = Instant::now();
        backend.set_len(0).unwrap();
        assert!(t.elapsed() >= crate::atomic_file::GIVE_BACK_PAUSE * 5, "{:?}", t.elapsed());
        assert_eq!(backend.len().unwrap(), 0);
    }
}
