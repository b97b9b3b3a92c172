//! The Python plugin's `.dbak` file format: reading and writing records.
//!
//! Owns the bytes of the format: a 512-byte big-endian
//! header, then records from byte 512, each `u32 length, u32 version,
//! u8 type, payload` where `length` counts the payload only. Type 1 holds a
//! transaction's statements joined by NUL bytes, type 2 a whole SQLite file.
//!
//! The reader walks every whole record to the end of the file, reading only
//! record headers and seeking past payloads; a snapshot payload is handed out
//! as a bounded stream, never held in memory. It must not interpret the
//! records (which one was committed is [`super::normalise`]'s business), and
//! it never trusts the header's offsets: after a rewind the Python plugin
//! leaves them pointing between records.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of the file header; records start here.
pub(crate) const HEADER_LEN: u64 = 512;
/// The only `file_version` the Python plugin writes.
const FILE_VERSION: u32 = 1;
/// How a redb database (a cln-backup store) starts.
const REDB_MAGIC: &[u8] = b"redb";
/// How an SQLite database starts.
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
/// Bytes of a record's header (`length`, `version`, `type`).
const RECORD_HEADER_LEN: u64 = 9;

/// What a record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Type 1: one transaction's statements, joined by NUL bytes.
    Transaction,
    /// Type 2: a whole SQLite database file.
    Snapshot,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Transaction => 1,
            Kind::Snapshot => 2,
        }
    }
}

/// The file header. The Python reader trusts `version` only; the offsets
/// are written for its writer's benefit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// The `data_version` of the last record acknowledged to lightningd.
    pub version: u32,
    /// Byte offset where the next record goes (the end of the file when
    /// nothing was rewound).
    pub offset0: u64,
    /// The `data_version` of the record before the last one.
    pub prev_version: u32,
    /// Byte offset where the last record starts.
    pub offset1: u64,
    /// Records written, rewound ones included.
    pub version_count: u64,
}

impl Header {
    /// The 512 bytes of this header.
    fn to_bytes(self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        b[0..4].copy_from_slice(&FILE_VERSION.to_be_bytes());
        b[4..8].copy_from_slice(&self.version.to_be_bytes());
        b[8..16].copy_from_slice(&self.offset0.to_be_bytes());
        b[16..20].copy_from_slice(&self.prev_version.to_be_bytes());
        b[20..28].copy_from_slice(&self.offset1.to_be_bytes());
        b[28..36].copy_from_slice(&self.version_count.to_be_bytes());
        b
    }

    /// Parse a header read from `path`.
    fn parse(path: &Path, b: &[u8; HEADER_LEN as usize]) -> Result<Header> {
        let file_version = be32(&b[0..4]);
        if file_version != FILE_VERSION {
            let what = if b.starts_with(REDB_MAGIC) {
                "it is a redb database, such as a cln-backup store".to_string()
            } else if b.starts_with(SQLITE_MAGIC) {
                "it is an SQLite database, such as lightningd.sqlite3".to_string()
            } else {
                format!("unknown file_version {file_version} in the header; a .dbak file has 1")
            };
            return Err(Error::NotADbak { path: path.to_path_buf(), what });
        }
        Ok(Header {
            version: be32(&b[4..8]),
            offset0: be64(&b[8..16]),
            prev_version: be32(&b[16..20]),
            offset1: be64(&b[20..28]),
            version_count: be64(&b[28..36]),
        })
    }
}

fn be32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_be_bytes(a)
}

/// Where one record sits in the file, as [`DbakReader::scan`] found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Record {
    /// Offset in bytes of the record's header from the start of the file
    /// (errors about the record name it).
    pub offset: u64,
    /// Bytes of the payload (the record's header not included).
    pub length: u32,
    /// The `data_version` the record was written with.
    pub version: u32,
    /// What the payload holds.
    pub kind: Kind,
}

impl Record {
    /// Offset of the payload.
    pub(crate) fn payload_offset(&self) -> u64 {
        self.offset + RECORD_HEADER_LEN
    }

    /// Offset just past the record.
    pub(crate) fn end(&self) -> u64 {
        self.payload_offset() + u64::from(self.length)
    }
}

/// Does `path` look like a legacy file? True when it starts with
/// `00 00 00 01` (file_version 1) and holds at least a whole header.
/// A redb store starts with `redb`, an SQLite file with `SQLite format 3`.
pub fn is_dbak(path: &Path) -> bool {
    let Ok(mut f) = File::open(path) else {
        return false;
    };
    let big_enough = f.metadata().map(|m| m.is_file() && m.len() >= HEADER_LEN);
    if !matches!(big_enough, Ok(true)) {
        return false;
    }
    let mut magic = [0u8; 4];
    f.read_exact(&mut magic).is_ok() && magic == FILE_VERSION.to_be_bytes()
}

/// An open legacy file.
pub struct DbakReader {
    path: PathBuf,
    file: File,
    len: u64,
    header: Header,
}

impl DbakReader {
    /// Open `path` and read its header.
    pub fn open(path: &Path) -> Result<DbakReader> {
        let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(path, e))?;
        if !meta.is_file() {
            return Err(Error::legacy(path, "not a regular file"));
        }
        let len = meta.len();
        if len < HEADER_LEN {
            return Err(Error::legacy(path, format!("file is {len} bytes, shorter than the {HEADER_LEN}-byte header")));
        }
        let mut b = [0u8; HEADER_LEN as usize];
        file.read_exact(&mut b).map_err(|e| Error::io(path, e))?;
        let header = Header::parse(path, &b)?;
        Ok(DbakReader { path: path.to_path_buf(), file, len, header })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header as read.
    pub fn header(&self) -> Header {
        self.header
    }

    /// Every record from byte 512 to the end of the file, in order. Reads
    /// the 9-byte record headers only. A record that runs past the end of the
    /// file, or a type other than 1 or 2, is an error naming its offset.
    pub fn scan(&mut self) -> Result<Vec<Record>> {
        match self.scan_prefix()? {
            (records, None) => Ok(records),
            (_, Some(damage)) => Err(damage),
        }
    }

    /// [`DbakReader::scan`], keeping the whole records before damage: the
    /// records up to the first that is cut short or of an unknown type, and
    /// the error that names it. An I/O error is still an error.
    pub(crate) fn scan_prefix(&mut self) -> Result<(Vec<Record>, Option<Error>)> {
        let mut records = Vec::new();
        let mut offset = HEADER_LEN;
        let mut r = BufReader::with_capacity(64 << 10, &mut self.file);
        r.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(&self.path, e))?;
        while offset < self.len {
            let left = self.len - offset;
            if left < RECORD_HEADER_LEN {
                let damage = Error::legacy(
                    &self.path,
                    format!(
                        "truncated record at offset {offset}: only {left} bytes left of its {RECORD_HEADER_LEN}-byte header"
                    ),
                );
                return Ok((records, Some(damage)));
            }
            let mut h = [0u8; RECORD_HEADER_LEN as usize];
            r.read_exact(&mut h).map_err(|e| Error::io(&self.path, e))?;
            let length = be32(&h[0..4]);
            let version = be32(&h[4..8]);
            let kind = match h[8] {
                1 => Kind::Transaction,
                2 => Kind::Snapshot,
                t => {
                    let damage = Error::legacy(
                        &self.path,
                        format!("record at offset {offset} (version {version}) has unknown type {t} (expected 1 or 2)"),
                    );
                    return Ok((records, Some(damage)));
                }
            };
            let rec = Record { offset, length, version, kind };
            if rec.end() > self.len {
                let damage = Error::legacy(
                    &self.path,
                    format!(
                        "truncated record at offset {offset} (version {version}): its payload is {length} bytes but only {} remain in the {}-byte file",
                        left - RECORD_HEADER_LEN,
                        self.len
                    ),
                );
                return Ok((records, Some(damage)));
            }
            r.seek_relative(i64::from(length)).map_err(|e| Error::io(&self.path, e))?;
            records.push(rec);
            offset = rec.end();
        }
        Ok((records, None))
    }

    /// The statements of a type-1 record.
    pub fn statements(&mut self, rec: &Record) -> Result<Vec<String>> {
        if rec.kind != Kind::Transaction {
            return Err(Error::legacy(
                &self.path,
                format!("record at offset {} is a snapshot, not a transaction", rec.offset),
            ));
        }
        let mut payload = vec![0u8; rec.length as usize];
        self.file
            .seek(SeekFrom::Start(rec.payload_offset()))
            .and_then(|_| self.file.read_exact(&mut payload))
            .map_err(|e| Error::io(&self.path, e))?;
        let text = String::from_utf8(payload).map_err(|e| {
            Error::legacy(
                &self.path,
                format!(
                    "record at offset {} (version {}) is not UTF-8 (invalid byte at payload offset {})",
                    rec.offset,
                    rec.version,
                    e.utf8_error().valid_up_to()
                ),
            )
        })?;
        Ok(text.split('\0').map(str::to_owned).collect())
    }

    /// The payload of a type-2 record as a stream of exactly its length.
    pub fn snapshot(&mut self, rec: &Record) -> Result<std::io::Take<&mut File>> {
        if rec.kind != Kind::Snapshot {
            return Err(Error::legacy(
                &self.path,
                format!("record at offset {} is a transaction, not a snapshot", rec.offset),
            ));
        }
        self.file.seek(SeekFrom::Start(rec.payload_offset())).map_err(|e| Error::io(&self.path, e))?;
        Ok((&mut self.file).take(u64::from(rec.length)))
    }

    /// Copy a snapshot record's payload to `out`, checking its length.
    pub fn copy_snapshot(&mut self, rec: &Record, out: &mut dyn Write) -> Result<u64> {
        let path = self.path.clone();
        let mut r = self.snapshot(rec)?;
        let n = std::io::copy(&mut r, out).map_err(|e| Error::io(&path, e))?;
        if n != u64::from(rec.length) {
            return Err(Error::legacy(
                &path,
                format!(
                    "snapshot at offset {} ended after {n} of {} bytes (the file changed while being read)",
                    rec.offset, rec.length
                ),
            ));
        }
        Ok(n)
    }
}

/// Writes a legacy file the way the Python plugin's `add_change` does:
/// records appended in order, the header rewritten at the end.
pub struct DbakWriter {
    path: PathBuf,
    out: BufWriter<File>,
    header: Header,
}

impl DbakWriter {
    /// Start a legacy file in `file` (empty, positioned at 0), written to `path`.
    /// The header starts as the Python plugin's `init` writes it: version 0.
    pub fn new(file: File, path: &Path) -> Result<DbakWriter> {
        let header = Header { version: 0, offset0: HEADER_LEN, prev_version: 0, offset1: 0, version_count: 0 };
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header.to_bytes()).map_err(|e| Error::io(path, e))?;
        Ok(DbakWriter { path: path.to_path_buf(), out, header })
    }

    /// The header as it will be written.
    pub fn header(&self) -> Header {
        self.header
    }

    fn record_header(&mut self, version: u32, kind: Kind, length: u64) -> Result<u32> {
        let length = u32::try_from(length).map_err(|_| {
            Error::legacy(
                &self.path,
                format!("a record of {length} bytes at version {version} does not fit the format's 32-bit length"),
            )
        })?;
        let mut h = [0u8; RECORD_HEADER_LEN as usize];
        h[0..4].copy_from_slice(&length.to_be_bytes());
        h[4..8].copy_from_slice(&version.to_be_bytes());
        h[8] = kind.code();
        self.out.write_all(&h).map_err(|e| Error::io(&self.path, e))?;
        Ok(length)
    }

    fn appended(&mut self, version: u32, length: u32) {
        let h = &mut self.header;
        h.prev_version = h.version;
        h.offset1 = h.offset0;
        h.version = version;
        h.offset0 += RECORD_HEADER_LEN + u64::from(length);
        h.version_count += 1;
    }

    /// Append a type-1 record.
    pub fn add_transaction<S: AsRef<str>>(&mut self, version: u32, statements: &[S]) -> Result<()> {
        let mut length = 0u64;
        for (i, s) in statements.iter().enumerate() {
            let s = s.as_ref();
            if s.contains('\0') {
                return Err(Error::legacy(
                    &self.path,
                    format!("a statement at version {version} contains a NUL byte, which the format uses as separator"),
                ));
            }
            length += s.len() as u64 + u64::from(i > 0);
        }
        let length = self.record_header(version, Kind::Transaction, length)?;
        for (i, s) in statements.iter().enumerate() {
            if i > 0 {
                self.out.write_all(b"\0").map_err(|e| Error::io(&self.path, e))?;
            }
            self.out.write_all(s.as_ref().as_bytes()).map_err(|e| Error::io(&self.path, e))?;
        }
        self.appended(version, length);
        Ok(())
    }

    /// Append a type-2 record of `length` bytes that `fill` writes (and
    /// returns the count of).
    pub(crate) fn add_snapshot_with(
        &mut self,
        version: u32,
        length: u64,
        fill: impl FnOnce(&mut dyn Write) -> Result<u64>,
    ) -> Result<()> {
        let length32 = self.record_header(version, Kind::Snapshot, length)?;
        let written = fill(&mut self.out)?;
        if written != length {
            return Err(Error::legacy(
                &self.path,
                format!("snapshot for version {version} was {written} bytes, not the {length} announced"),
            ));
        }
        self.appended(version, length32);
        Ok(())
    }

    /// Append a type-2 record streamed from `image`, which must hold exactly `length` bytes.
    pub fn add_snapshot(&mut self, version: u32, length: u64, image: &mut dyn Read) -> Result<()> {
        let path = self.path.clone();
        self.add_snapshot_with(version, length, |out| {
            std::io::copy(&mut image.take(length), out).map_err(|e| Error::io(&path, e))
        })
    }

    /// Write the header and flush; returns the file (not yet synced) and the header.
    pub fn finish(self) -> Result<(File, Header)> {
        let path = self.path;
        let header = self.header;
        let mut file = self.out.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&header.to_bytes()))
            .and_then(|_| file.flush())
            .map_err(|e| Error::io(&path, e))?;
        Ok((file, header))
    }
}
