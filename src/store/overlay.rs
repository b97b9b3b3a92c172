//! A copy-on-write view of a store file, for reading a store whose writer
//! died without closing it.
//!
//! redb repairs such a file before it lets anyone read it, and its read-only
//! open refuses to repair. This backend lets the repair run in memory: reads
//! come from the file (opened read-only), writes and length changes stay in
//! memory, and syncing does nothing, so the file's bytes never change.
//!
//! Locks are taken on the real file, through redb's own `FileBackend`, but
//! always shared: an exclusive lock needs a writable descriptor, and shared
//! locks are what a reader should hold anyway. A live writer's exclusive locks
//! still refuse them, so a store in use is never read through this backend.
//!
//! It must not write to the file, and it must not be used for anything but
//! reading (the store refuses writes on a store opened this way).

use redb::backends::FileBackend;
use redb::{BackendError, StorageBackend};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::ops::Bound;
use std::sync::{Mutex, MutexGuard};

/// Bytes per copied block.
const BLOCK: u64 = 4096;

#[derive(Debug)]
struct Layer {
    /// The length redb sees.
    len: u64,
    /// Bytes below this offset that are not in `blocks` come from the file;
    /// above it they are zero (the storage was shortened, then grown again).
    from_file: u64,
    /// Blocks written since the open, by block index.
    blocks: HashMap<u64, Box<[u8]>>,
}

/// The file, read-only, with a layer of in-memory changes on top.
#[derive(Debug)]
pub(super) struct Overlay {
    file: FileBackend,
    layer: Mutex<Layer>,
}

impl Overlay {
    /// `file` must be open for reading; it is never written.
    pub(super) fn new(file: File) -> io::Result<Overlay> {
        let len = file.metadata()?.len();
        let file = FileBackend::new(file).map_err(|e| io::Error::other(e.to_string()))?;
        Ok(Overlay { file, layer: Mutex::new(Layer { len, from_file: len, blocks: HashMap::new() }) })
    }

    fn layer(&self) -> MutexGuard<'_, Layer> {
        // A panic elsewhere cannot leave a half-copied block: blocks are
        // inserted whole.
        self.layer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fill `out` with the unmodified bytes at `offset`: the file's below
    /// `from_file`, zeros above.
    fn read_base(&self, from_file: u64, offset: u64, out: &mut [u8]) -> io::Result<()> {
        let end = offset + out.len() as u64;
        let file_end = end.min(from_file);
        if offset < file_end {
            let n = (file_end - offset) as usize;
            self.file.read(offset, &mut out[..n])?;
            out[n..].fill(0);
        } else {
            out.fill(0);
        }
        Ok(())
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past the end of the storage")
}

impl StorageBackend for Overlay {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.layer().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        let layer = self.layer();
        let end = offset.checked_add(out.len() as u64).ok_or_else(eof)?;
        if end > layer.len {
            return Err(eof());
        }
        let mut pos = offset;
        while pos < end {
            let block = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - within as u64).min(end - pos)) as usize;
            let dst = &mut out[(pos - offset) as usize..(pos - offset) as usize + n];
            match layer.blocks.get(&block) {
                Some(b) => dst.copy_from_slice(&b[within..within + n]),
                None => self.read_base(layer.from_file, pos, dst)?,
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        let mut layer = self.layer();
        if len < layer.len {
            layer.from_file = layer.from_file.min(len);
            layer.blocks.retain(|&b, _| b * BLOCK < len);
            // The bytes past the new end of a kept block must read as zero if
            // the storage grows again.
            if let Some(b) = layer.blocks.get_mut(&(len / BLOCK)) {
                b[(len % BLOCK) as usize..].fill(0);
            }
        }
        layer.len = len;
        Ok(())
    }

    fn sync_data(&self) -> Result<(), io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        let mut layer = self.layer();
        let end = offset.checked_add(data.len() as u64).ok_or_else(eof)?;
        if end > layer.len {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "write past the end of the storage"));
        }
        let mut pos = offset;
        while pos < end {
            let block = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let n = ((BLOCK - within as u64).min(end - pos)) as usize;
            if !layer.blocks.contains_key(&block) {
                let mut copy = vec![0u8; BLOCK as usize].into_boxed_slice();
                let start = block * BLOCK;
                let avail = layer.len.saturating_sub(start).min(BLOCK) as usize;
                self.read_base(layer.from_file, start, &mut copy[..avail])?;
                layer.blocks.insert(block, copy);
            }
            if let Some(b) = layer.blocks.get_mut(&block) {
                b[within..within + n].copy_from_slice(&data[(pos - offset) as usize..(pos - offset) as usize + n]);
            }
            pos += n as u64;
        }
        Ok(())
    }

    fn close(&self) -> Result<(), io::Error> {
        self.file.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn try_lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.file.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.file.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn writes_stay_in_memory_and_reads_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let original: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        std::fs::write(&path, &original).unwrap();
        let o = Overlay::new(File::open(&path).unwrap()).unwrap();
        o.write(4090, &[0xAA; 20]).unwrap();
        let mut buf = vec![0u8; 30];
        o.read(4085, &mut buf).unwrap();
        assert_eq!(&buf[..5], &original[4085..4090]);
        assert_eq!(&buf[5..25], &[0xAA; 20]);
        assert_eq!(&buf[25..], &original[4110..4115]);
        // Shrink, then grow: the dropped bytes read as zero.
        o.set_len(4095).unwrap();
        o.set_len(9000).unwrap();
        let mut tail = vec![1u8; 10];
        o.read(4090, &mut tail).unwrap();
        assert_eq!(&tail[..5], &[0xAA; 5]);
        assert_eq!(&tail[5..], &[0; 5]);
        let mut far = vec![1u8; 100];
        o.read(8000, &mut far).unwrap();
        assert_eq!(far, vec![0; 100]);
        assert!(o.read(8950, &mut far).is_err(), "past the end");
        o.sync_data().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), original, "the file never changes");
    }
}
