//! Snapshot chunks: streaming a SQLite image into and out of the store.
//!
//! Owns the chunk layout (`(seq, index)` → zstd frame of at most
//! [`CHUNK_BYTES`] image bytes), staging chunks in short write transactions
//! so that a large image never holds the store's single writer for long, and
//! the content hash check. No step holds a whole image in memory. It must not
//! decide when snapshots are taken.

use super::{CHUNKS, SNAPSHOTS};
use crate::error::{Error, Result};
use crate::record::{now_ms, Hash, SnapshotHeader};
use crate::version::Seq;
use redb::{Database, Durability, ReadableTable, WriteTransaction};
use std::io::{Read, Write};
use std::path::Path;

/// Image bytes per chunk.
pub const CHUNK_BYTES: usize = 1 << 20;
/// Chunks written per staging transaction: bounds how long a writer waits.
const CHUNKS_PER_TXN: u32 = 4;
const LEVEL: i32 = 3;

/// Chunks written and what they hold.
#[derive(Clone, Debug)]
pub(super) struct Staged {
    size: u64,
    chunks: u32,
    stored: u64,
    content_hash: Hash,
}

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

pub(super) struct ChunkWriter<'a> {
    path: &'a Path,
    buf: Vec<u8>,
    /// One compressor and one output buffer for every chunk: a compaction
    /// beside a running node allocates nothing per chunk (large allocations
    /// and their release take the process's memory-map lock, which the
    /// node's own thread may then wait for behind a low-priority one).
    compressor: Option<zstd::bulk::Compressor<'static>>,
    frame: Vec<u8>,
    hasher: blake3::Hasher,
    staged: Staged,
}

impl<'a> ChunkWriter<'a> {
    pub(super) fn new(path: &'a Path) -> Self {
        ChunkWriter {
            path,
            buf: vec![0u8; CHUNK_BYTES],
            compressor: None,
            frame: Vec::with_capacity(zstd::zstd_safe::compress_bound(CHUNK_BYTES)),
            hasher: blake3::Hasher::new(),
            staged: Staged { size: 0, chunks: 0, stored: 0, content_hash: [0; 32] },
        }
    }

    /// Write up to `limit` chunks of `image` into `txn`; false once the image is exhausted.
    pub(super) fn write(&mut self, txn: &WriteTransaction, seq: Seq, image: &mut dyn Read, limit: u32) -> Result<bool> {
        let err = |e: redb::Error| Error::redb(self.path, e);
        let mut chunks = txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
        for _ in 0..limit {
            let n = read_full(image, &mut self.buf).map_err(|e| Error::io(self.path, e))?;
            if n == 0 {
                return Ok(false);
            }
            self.hasher.update(&self.buf[..n]);
            let compressor = match &mut self.compressor {
                Some(c) => c,
                None => {
                    self.compressor.insert(zstd::bulk::Compressor::new(LEVEL).map_err(|e| Error::io(self.path, e))?)
                }
            };
            self.frame.clear();
            compressor.compress_to_buffer(&self.buf[..n], &mut self.frame).map_err(|e| Error::io(self.path, e))?;
            let frame = &self.frame;
            chunks.insert((seq, self.staged.chunks), frame.as_slice()).map_err(|e| err(e.into()))?;
            self.staged.size += n as u64;
            self.staged.stored += frame.len() as u64;
            self.staged.chunks += 1;
        }
        Ok(true)
    }

    pub(super) fn finish(mut self) -> Staged {
        self.staged.content_hash = *self.hasher.finalize().as_bytes();
        self.staged
    }
}

fn remove_chunks_of(path: &Path, txn: &WriteTransaction, keep: impl Fn(Seq) -> bool) -> Result<()> {
    let err = |e: redb::Error| Error::redb(path, e);
    let mut chunks = txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
    chunks.retain(|(seq, _), _| keep(seq)).map_err(|e| err(e.into()))?;
    Ok(())
}

/// Write `image` as chunks for `seq` in short transactions of their own, not
/// yet visible as a snapshot. Leftovers of an earlier attempt at `seq` go first.
pub(super) fn stage(path: &Path, db: &Database, seq: Seq, image: &mut dyn Read) -> Result<Staged> {
    let err = |e: redb::Error| Error::redb(path, e);
    let mut writer = ChunkWriter::new(path);
    let mut first = true;
    loop {
        let mut txn = db.begin_write().map_err(|e| err(e.into()))?;
        // Staged chunks become durable with the publishing commit.
        txn.set_durability(Durability::None).map_err(|e| Error::redb(path, redb::Error::from(e)))?;
        if first {
            let snaps = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
            let live = matches!(snaps.get(seq), Ok(Some(_)));
            drop(snaps);
            if live {
                return Err(Error::SnapshotVersion {
                    version: crate::version::data_version(seq),
                    reason: "the store already has a snapshot at this version".into(),
                });
            }
            remove_chunks_of(path, &txn, |s| s != seq)?;
            first = false;
        }
        let more = writer.write(&txn, seq, image, CHUNKS_PER_TXN)?;
        txn.commit().map_err(|e| err(e.into()))?;
        if !more {
            return Ok(writer.finish());
        }
    }
}

/// Within `txn`: make the staged chunks at `seq` the snapshot, dropping every
/// other snapshot and every change record at or below `seq`. Returns the
/// header written.
pub(super) fn install(
    path: &Path,
    txn: &WriteTransaction,
    seq: Seq,
    staged: &Staged,
    foreign_keys: bool,
    version_time_ms: u64,
    anchor: impl FnOnce(&Hash) -> Hash,
) -> Result<SnapshotHeader> {
    let err = |e: redb::Error| Error::redb(path, e);
    remove_chunks_of(path, txn, |s| s == seq)?;
    let mut snaps = txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
    snaps.retain(|_, _| false).map_err(|e| err(e.into()))?;
    let header = SnapshotHeader {
        size: staged.size,
        chunks: staged.chunks,
        stored_bytes: staged.stored,
        content_hash: staged.content_hash,
        anchor: anchor(&staged.content_hash),
        foreign_keys,
        created_ms: now_ms(),
        version_time_ms,
    };
    let bytes = header.to_bytes().map_err(|what| Error::Encode { path: path.to_path_buf(), what })?;
    snaps.insert(seq, bytes.as_slice()).map_err(|e| err(e.into()))?;
    drop(snaps);
    super::log::prune_through(txn, seq).map_err(|e| e.at(path))?;
    Ok(header)
}

/// Within `txn`: write `image` as the chunks at `seq`, replacing every
/// chunk there is: for a snapshot that replaces one at the same version,
/// which must stay readable until the transaction that replaces it commits.
pub(super) fn stage_in(path: &Path, txn: &WriteTransaction, seq: Seq, image: &mut dyn Read) -> Result<Staged> {
    remove_chunks_of(path, txn, |_| false)?;
    let mut writer = ChunkWriter::new(path);
    while writer.write(txn, seq, image, u32::MAX)? {}
    Ok(writer.finish())
}

/// The header of a snapshot made of `staged` chunks.
pub(super) fn header(staged: &Staged, foreign_keys: bool, version_time_ms: u64, anchor: Hash) -> SnapshotHeader {
    SnapshotHeader {
        size: staged.size,
        chunks: staged.chunks,
        stored_bytes: staged.stored,
        content_hash: staged.content_hash,
        anchor,
        foreign_keys,
        created_ms: now_ms(),
        version_time_ms,
    }
}

/// Copy the chunks `from..` of the snapshot at `seq` as they are stored
/// (compressed, not checked: the reader of the copy checks the hash), from
/// a read view of one store into a write transaction of another, until
/// about `budget` bytes are copied. Returns the next chunk index to copy.
pub(super) fn copy_chunks(
    path: &Path,
    from_txn: &redb::ReadTransaction,
    to_txn: &WriteTransaction,
    seq: Seq,
    header: &SnapshotHeader,
    from: u32,
    budget: usize,
) -> Result<u32> {
    let err = |e: redb::Error| Error::redb(path, e);
    let src = from_txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
    let mut dst = to_txn.open_table(CHUNKS).map_err(|e| err(e.into()))?;
    let mut copied = 0usize;
    let mut index = from;
    while index < header.chunks && copied < budget {
        let frame = src
            .get((seq, index))
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| Error::corrupt(path, format!("snapshot chunk {index} is missing")))?;
        dst.insert((seq, index), frame.value()).map_err(|e| err(e.into()))?;
        copied += frame.value().len();
        index += 1;
    }
    if index == header.chunks {
        let bytes = header.to_bytes().map_err(|what| Error::Encode { path: path.to_path_buf(), what })?;
        let mut snaps = to_txn.open_table(SNAPSHOTS).map_err(|e| err(e.into()))?;
        snaps.insert(seq, bytes.as_slice()).map_err(|e| err(e.into()))?;
    }
    Ok(index)
}

/// Where [`copy`] reads a snapshot's chunks from.
pub(super) enum Views<'a> {
    /// One read view, for the whole copy (a [`crate::Reader`]'s).
    One(&'a redb::ReadTransaction),
    /// A new read view of this database every [`CHUNKS_PER_VIEW`] chunks,
    /// so that no view of a live store is held for long (see
    /// `Store::copy_snapshot_in_steps`).
    Fresh(&'a redb::Database),
}

/// Chunks read through one view by [`Views::Fresh`].
const CHUNKS_PER_VIEW: u32 = 16;

/// Stream the snapshot at `seq` into `out`, checking sizes and the content hash.
pub(super) fn copy(
    path: &Path,
    views: Views<'_>,
    seq: Seq,
    header: &SnapshotHeader,
    out: &mut dyn Write,
) -> Result<u64> {
    let err = |e: redb::Error| Error::redb(path, e);
    let mut hasher = blake3::Hasher::new();
    let mut written = 0u64;
    let mut fresh = None;
    let mut chunks = None;
    // One decompressor and one buffer for the whole image (see `ChunkWriter`).
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(|e| Error::io(path, e))?;
    let mut data = Vec::with_capacity(CHUNK_BYTES);
    for index in 0..header.chunks {
        if chunks.is_none() || (matches!(views, Views::Fresh(_)) && index % CHUNKS_PER_VIEW == 0) {
            // The table of the view before goes before that view.
            drop(chunks.take());
            let txn = match views {
                Views::One(txn) => txn,
                Views::Fresh(db) => &*fresh.insert(redb::ReadableDatabase::begin_read(db).map_err(|e| err(e.into()))?),
            };
            chunks = Some(txn.open_table(CHUNKS).map_err(|e| err(e.into()))?);
        }
        let Some(table) = &chunks else { continue };
        let frame = table
            .get((seq, index))
            .map_err(|e| err(e.into()))?
            .ok_or_else(|| Error::corrupt(path, format!("snapshot chunk {index} is missing")))?;
        data.clear();
        decompressor
            .decompress_to_buffer(frame.value(), &mut data)
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
