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
///
/// ```
/// use cln_backup::legacy::{DbakReader, DbakWriter, Kind};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let image = dir.path().join("image.sqlite3");
/// # let conn = cln_backup::rusqlite::Connection::open(&image)?;
/// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
/// #                     INSERT INTO vars VALUES ('data_version', 1);")?;
/// # drop(conn);
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_snapshot(1, std::fs::metadata(&image)?.len(), &mut std::fs::File::open(&image)?)?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let kinds: Vec<Kind> = DbakReader::open(&dbak)?.scan()?.iter().map(|r| r.kind).collect();
/// assert_eq!(kinds, [Kind::Snapshot, Kind::Transaction]);
/// # Ok(()) }
/// ```
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
///
/// ```
/// use cln_backup::legacy::{DbakReader, DbakWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let dbak = dir.path().join("backup.dbak");
/// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// w.add_transaction(1, &["CREATE TABLE t (x)"])?;
/// w.add_transaction(2, &["INSERT INTO t VALUES (2)"])?;
/// let (_, written) = w.finish()?;
/// let header = DbakReader::open(&dbak)?.header();
/// assert_eq!(header, written);
/// assert_eq!((header.version, header.prev_version, header.version_count), (2, 1, 2));
/// assert_eq!(header.offset0, std::fs::metadata(&dbak)?.len(), "nothing was rewound");
/// # Ok(()) }
/// ```
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
///
/// ```
/// use cln_backup::legacy::{DbakReader, DbakWriter, Kind};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let records = DbakReader::open(&dbak)?.scan()?;
/// assert_eq!(records[0].offset, 512, "records start after the 512-byte header");
/// // Each record is its 9-byte header and its payload.
/// assert_eq!(records[1].offset, records[0].offset + 9 + u64::from(records[0].length));
/// assert_eq!((records[1].version, records[1].kind), (2, Kind::Transaction));
/// # Ok(()) }
/// ```
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
///
/// ```
/// use cln_backup::legacy::{is_dbak, DbakWriter};
/// use cln_backup::Store;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// assert!(is_dbak(&dbak));
/// let store = dir.path().join("node.redb");
/// Store::create(&store)?;
/// assert!(!is_dbak(&store));
/// assert!(!is_dbak(&dir.path().join("missing.dbak")));
/// # Ok(()) }
/// ```
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
///
/// ```
/// use cln_backup::legacy::{DbakReader, DbakWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let dbak = dir.path().join("backup.dbak");
/// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// # w.add_transaction(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
/// #     "INSERT INTO vars VALUES ('data_version', 0)",
/// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// # ])?;
/// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
/// # w.add_transaction(2, &v2)?;
/// # w.finish()?;
/// let mut file = DbakReader::open(&dbak)?;
/// let mut versions = Vec::new();
/// for record in file.scan()? {
///     let statements = file.statements(&record)?;
///     assert!(statements.last().unwrap().starts_with("UPDATE vars SET intval"));
///     versions.push(record.version);
/// }
/// assert_eq!(versions, [1, 2]);
/// # Ok(()) }
/// ```
pub struct DbakReader {
    path: PathBuf,
    file: File,
    len: u64,
    header: Header,
}

impl DbakReader {
    /// Open `path` and read its header.
    ///
    /// ```
    /// use cln_backup::legacy::DbakReader;
    /// use cln_backup::{Error, Store};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = dir.path().join("node.redb");
    /// Store::create(&store)?;
    /// // A store given where a legacy file was expected is told apart.
    /// let err = DbakReader::open(&store).err().unwrap();
    /// assert!(matches!(err, Error::NotADbak { .. }), "{err}");
    /// assert!(err.to_string().contains("redb"), "{err}");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let dbak = dir.path().join("backup.dbak");
    /// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// # w.add_transaction(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
    /// #     "INSERT INTO vars VALUES ('data_version', 0)",
    /// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
    /// # ])?;
    /// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
    /// # w.add_transaction(2, &v2)?;
    /// # w.finish()?;
    /// let file = DbakReader::open(&dbak)?;
    /// assert_eq!(file.path(), dbak);
    /// # Ok(()) }
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The header as read.
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let dbak = dir.path().join("backup.dbak");
    /// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// # w.add_transaction(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
    /// #     "INSERT INTO vars VALUES ('data_version', 0)",
    /// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
    /// # ])?;
    /// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
    /// # w.add_transaction(2, &v2)?;
    /// # w.finish()?;
    /// let mut file = DbakReader::open(&dbak)?;
    /// let header = file.header();
    /// // The last record acknowledged to lightningd, and the one before it.
    /// assert_eq!((header.version, header.prev_version), (2, 1));
    /// assert_eq!(header.version_count, file.scan()?.len() as u64);
    /// # Ok(()) }
    /// ```
    pub fn header(&self) -> Header {
        self.header
    }

    /// Every record from byte 512 to the end of the file, in order. Reads
    /// the 9-byte record headers only. A record that runs past the end of the
    /// file, or a type other than 1 or 2, is an error naming its offset.
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let dbak = dir.path().join("backup.dbak");
    /// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// # w.add_transaction(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
    /// #     "INSERT INTO vars VALUES ('data_version', 0)",
    /// #     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
    /// # ])?;
    /// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
    /// # w.add_transaction(2, &v2)?;
    /// # w.finish()?;
    /// let records = DbakReader::open(&dbak)?.scan()?;
    /// assert_eq!(records.len(), 2);
    /// // Cut the last record short.
    /// let f = std::fs::OpenOptions::new().write(true).open(&dbak)?;
    /// f.set_len(std::fs::metadata(&dbak)?.len() - 1)?;
    /// let err = DbakReader::open(&dbak)?.scan().unwrap_err().to_string();
    /// assert!(err.contains(&format!("truncated record at offset {}", records[1].offset)), "{err}");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let dbak = dir.path().join("backup.dbak");
    /// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// w.add_transaction(7, &["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"])?;
    /// w.finish()?;
    /// let mut file = DbakReader::open(&dbak)?;
    /// let record = file.scan()?[0];
    /// assert_eq!(file.statements(&record)?, ["INSERT INTO t VALUES (1)", "INSERT INTO t VALUES (2)"]);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    /// use std::io::Read;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let image = dir.path().join("image.sqlite3");
    /// # let conn = cln_backup::rusqlite::Connection::open(&image)?;
    /// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
    /// #                     INSERT INTO vars VALUES ('data_version', 1);")?;
    /// # drop(conn);
    /// # let dbak = dir.path().join("backup.dbak");
    /// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// # w.add_snapshot(1, std::fs::metadata(&image)?.len(), &mut std::fs::File::open(&image)?)?;
    /// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
    /// # w.add_transaction(2, &v2)?;
    /// # w.finish()?;
    /// let mut file = DbakReader::open(&dbak)?;
    /// let records = file.scan()?;
    /// let mut image = Vec::new();
    /// file.snapshot(&records[0])?.read_to_end(&mut image)?;
    /// assert_eq!(image.len(), records[0].length as usize);
    /// assert!(image.starts_with(b"SQLite format 3\0"));
    /// assert!(file.snapshot(&records[1]).is_err(), "a transaction record");
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let image = dir.path().join("image.sqlite3");
    /// # let conn = cln_backup::rusqlite::Connection::open(&image)?;
    /// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
    /// #                     INSERT INTO vars VALUES ('data_version', 1);")?;
    /// # drop(conn);
    /// # let dbak = dir.path().join("backup.dbak");
    /// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// # w.add_snapshot(1, std::fs::metadata(&image)?.len(), &mut std::fs::File::open(&image)?)?;
    /// # let v2 = ["INSERT INTO vars VALUES ('v2', 2)".to_string(), cln_backup::version::bump_statement(2)];
    /// # w.add_transaction(2, &v2)?;
    /// # w.finish()?;
    /// let mut file = DbakReader::open(&dbak)?;
    /// let base = file.scan()?[0];
    /// let copy = dir.path().join("base.sqlite3");
    /// let bytes = file.copy_snapshot(&base, &mut std::fs::File::create(&copy)?)?;
    /// assert_eq!(bytes, u64::from(base.length));
    /// let conn = cln_backup::rusqlite::Connection::open(&copy)?;
    /// let version: u32 = conn.query_row("SELECT intval FROM vars WHERE name = 'data_version'", [], |r| r.get(0))?;
    /// assert_eq!(version, base.version);
    /// # Ok(()) }
    /// ```
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
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let dbak = dir.path().join("backup.dbak");
/// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// w.add_transaction(1, &[
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
///     "INSERT INTO vars VALUES ('data_version', 0)",
///     "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 0",
/// ])?;
/// let (file, header) = w.finish()?;
/// file.sync_all()?;
/// assert_eq!(header.version, 1);
/// // A file the import (and the Python plugin) reads.
/// let restored = legacy::restore_dbak(&dbak, &dir.path().join("lightningd.sqlite3"), &Default::default())?;
/// assert_eq!(restored.version, 1);
/// # Ok(()) }
/// ```
pub struct DbakWriter {
    path: PathBuf,
    out: BufWriter<File>,
    header: Header,
}

impl DbakWriter {
    /// Start a legacy file in `file` (empty, positioned at 0), written to `path`.
    /// The header starts as the Python plugin's `init` writes it: version 0.
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let dbak = dir.path().join("backup.dbak");
    /// let w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// assert_eq!((w.header().version, w.header().version_count), (0, 0));
    /// w.finish()?;
    /// // A file with a header and no record yet.
    /// assert_eq!(std::fs::metadata(&dbak)?.len(), 512);
    /// assert_eq!(DbakReader::open(&dbak)?.scan()?, []);
    /// # Ok(()) }
    /// ```
    pub fn new(file: File, path: &Path) -> Result<DbakWriter> {
        let header = Header { version: 0, offset0: HEADER_LEN, prev_version: 0, offset1: 0, version_count: 0 };
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(&header.to_bytes()).map_err(|e| Error::io(path, e))?;
        Ok(DbakWriter { path: path.to_path_buf(), out, header })
    }

    /// The header as it will be written.
    ///
    /// ```
    /// use cln_backup::legacy::DbakWriter;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let dbak = dir.path().join("backup.dbak");
    /// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// let before = w.header();
    /// w.add_transaction(1, &["CREATE TABLE t (x)"])?;
    /// let after = w.header();
    /// // The new record starts where the next one was to go.
    /// assert_eq!((after.version, after.prev_version, after.offset1), (1, before.version, before.offset0));
    /// assert_eq!(after.version_count, before.version_count + 1);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let dbak = dir.path().join("backup.dbak");
    /// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// w.add_transaction(1, &["CREATE TABLE t (x TEXT)", "INSERT INTO t VALUES ('a')"])?;
    /// // NUL separates the statements: a statement holding one is refused.
    /// assert!(w.add_transaction(2, &["INSERT INTO t VALUES ('a\0b')"]).is_err());
    /// w.finish()?;
    /// let mut file = DbakReader::open(&dbak)?;
    /// let records = file.scan()?;
    /// assert_eq!(records.len(), 1);
    /// assert_eq!(file.statements(&records[0])?, ["CREATE TABLE t (x TEXT)", "INSERT INTO t VALUES ('a')"]);
    /// # Ok(()) }
    /// ```
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
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter, Kind};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let image = dir.path().join("lightningd.sqlite3");
    /// # let conn = cln_backup::rusqlite::Connection::open(&image)?;
    /// # conn.execute_batch("CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER);
    /// #                     INSERT INTO vars VALUES ('data_version', 5);")?;
    /// # drop(conn);
    /// let len = std::fs::metadata(&image)?.len();
    /// let dbak = dir.path().join("backup.dbak");
    /// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// w.add_snapshot(5, len, &mut std::fs::File::open(&image)?)?;
    /// // An image shorter than announced is refused.
    /// assert!(w.add_snapshot(6, len + 1, &mut std::fs::File::open(&image)?).is_err());
    /// # drop(w);
    /// # let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// # w.add_snapshot(5, len, &mut std::fs::File::open(&image)?)?;
    /// w.finish()?;
    /// let record = DbakReader::open(&dbak)?.scan()?[0];
    /// assert_eq!((record.kind, record.version, u64::from(record.length)), (Kind::Snapshot, 5, len));
    /// # Ok(()) }
    /// ```
    pub fn add_snapshot(&mut self, version: u32, length: u64, image: &mut dyn Read) -> Result<()> {
        let path = self.path.clone();
        self.add_snapshot_with(version, length, |out| {
            std::io::copy(&mut image.take(length), out).map_err(|e| Error::io(&path, e))
        })
    }

    /// Write the header and flush; returns the file (not yet synced) and the header.
    ///
    /// ```
    /// use cln_backup::legacy::{DbakReader, DbakWriter};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let dbak = dir.path().join("backup.dbak");
    /// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
    /// w.add_transaction(1, &["CREATE TABLE t (x)"])?;
    /// let (file, header) = w.finish()?;
    /// file.sync_all()?;
    /// assert_eq!(DbakReader::open(&dbak)?.header(), header);
    /// # Ok(()) }
    /// ```
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
