//! Snapshot chunks: streaming a SQLite image into and out of the store.
//!
//! Owns the chunk layout (`(seq, index)` → zstd frame of at most
//! [`CHUNK_BYTES`] image bytes) and the content hash check. No step holds a
//! whole image in memory. It must not decide when snapshots are taken.

use super::{CHANGES, CHUNKS, SNAPSHOTS};
use crate::error::{Error, Result};
use crate::record::{now_ms, Hash, SnapshotHeader};
use crate::version::Seq;
use redb::WriteTransaction;
use std::io::{Read, Write};
use std::path::Path;

/// Image bytes per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
const LEVEL: i32 = 3;

fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Within `txn`: drop every existing snapshot and every change record at or
/// below `seq`, then store `image` as the snapshot at `seq`.
pub(super) fn publish(
    path: &Path,
    txn: &WriteTransaction,
    seq: Seq,
    image: &mut dyn Read,
    foreign_keys: bool,
    anchor: impl FnOnce(&Hash) -> Hash,
) -> Result<()> {
    let err = |e: redb::Error| Error::redb(path, e);
    {
        let mut snaps = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
        snaps.retain(|_, _| false).map_err(|e| err(e.into()))?;
        let mut chunks = txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
        chunks.retain(|_, _| false).map_err(|e| err(e.into()))?;
        let mut changes = txn.open_table(CHANGES).map_err(|e| err(e.into()))?;
        changes.retain_in(..=seq, |_, _| false).map_err(|e| err(e.into()))?;
    }
    let mut chunks = txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut hasher = blake3::Hasher::new();
    let (mut size, mut stored, mut index) = (0u64, 0u64, 0u32);
    loop {
        let n = read_full(image, &mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        let frame = zstd::bulk::compress(&buf[..n], LEVEL).map_err(|e| Error::io(path, e))?;
        chunks.insert((seq, index), frame.as_slice()).map_err(|e| err(e.into()))?;
        size += n as u64;
        stored += frame.len() as u64;
        index += 1;
    }
    drop(chunks);
    let content_hash = *hasher.finalize().as_bytes();
    let header = SnapshotHeader {
        size,
        chunks: index,
        stored_bytes: stored,
        content_hash,
        anchor: anchor(&content_hash),
        foreign_keys,
        created_ms: now_ms(),
    };
    let mut snaps = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
    snaps.insert(seq, header.to_bytes().as_slice()).map_err(|e| err(e.into()))?;
    Ok(())
}

/// Stream the snapshot at `seq` into `out`, checking sizes and the content hash.
pub(super) fn copy(
    path: &Path,
    txn: &redb::ReadTransaction,
    seq: Seq,
    header: &SnapshotHeader,
    out: &mut dyn Write,
) -> Result<u64> {
    let err = |e: redb::Error| Error::redb(path, e);
    let chunks = txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    for index in 0..header.chunks {
        let frame = chunks
            .get((seq, index))
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| Error::corrupt(path, format!("snapshot chunk {index} is missing")))?;
        let data = zstd::bulk::decompress(frame.value(), CHUNK_BYTES)
            .map_err(|e| Error::corrupt(path, format!("snapshot chunk {index} does not decompress: {e}")))?;
        hasher.update(&data);
        out.write_all(&data).map_err(|e| Error::io(path, e))?;
        written += data.len() as u64;
    }
    if written != header.size || *hasher.finalize().as_bytes() != header.content_hash {
        return Err(Error::corrupt(path, "snapshot content does not match its hash"));
    }
    Ok(written)
}
