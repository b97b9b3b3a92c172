//! The library's error type.
//!
//! Owns every way a library call can fail, each variant naming the file or the
//! version involved so that a front end can print one clear line. It must not
//! format for a particular front end (no log levels, no exit codes, no
//! command-line flags: a message says what would fix it in the library's
//! terms, and a front end names its own flag).
//!
//! ```
//! use cln_backup::version::bump_statement;
//! use cln_backup::{Error, ErrorKind, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::create(dir.path().join("node.redb"))?;
//! // Version 2 reported to a store still at version 0.
//! let err = store.add_change(2, &[bump_statement(2)]).unwrap_err();
//! assert!(matches!(err, Error::Gap { head: 0, expected: 1, got: 2 }));
//! assert!(err.to_string().starts_with("version 2 does not follow the backup's version 0: expected 1"));
//! assert_eq!(err.kind(), ErrorKind::Refused);
//! # Ok(()) }
//! ```

use std::path::PathBuf;

/// Result alias used throughout the library.
///
/// ```
/// use cln_backup::{Result, Store};
/// use std::path::Path;
///
/// /// The version a store holds, read without taking its write lock.
/// fn backed_up(store: &Path) -> Result<u32> {
///     Ok(Store::open_read_only(store)?.version())
/// }
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// drop(Store::create(dir.path().join("node.redb"))?);
/// assert_eq!(backed_up(&dir.path().join("node.redb"))?, 0);
/// assert!(backed_up(&dir.path().join("missing.redb")).is_err());
/// # Ok(()) }
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
///
/// ```
/// use cln_backup::{Error, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("node.redb");
/// let _store = Store::create(&path)?;
/// let err = Store::create(&path).unwrap_err();
/// assert!(matches!(&err, Error::AlreadyExists { path: p } if *p == path));
/// // The message starts with the file it is about.
/// assert!(err.to_string().starts_with(&format!("{}: already exists", path.display())));
/// # Ok(()) }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error on a named file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another handle in this one) holds the store.
    #[error("{}: the store is already open in another process, or by another handle in this one; close that one first", path.display())]
    StoreLocked {
        /// The store file.
        path: PathBuf,
    },

    /// The file is not a cln-backup store: not a redb database at all, or a
    /// readable redb database with none of a store's tables. A store that
    /// cannot be read is [`Error::Corrupt`].
    #[error("{}: not a cln-backup store ({reason})", path.display())]
    NotAStore {
        /// The file given as a store.
        path: PathBuf,
        /// What the file is instead, or what it lacks.
        reason: String,
    },

    /// A write was asked of a store opened with `Store::open_read_only`.
    #[error("{}: the store is open read-only; this operation would write it", path.display())]
    ReadOnly {
        /// The store file.
        path: PathBuf,
    },

    /// A record could not be serialised; nothing was written.
    #[error("{}: cannot encode a record: {what}", path.display())]
    Encode {
        /// The store the record was for.
        path: PathBuf,
        /// The serialiser's complaint.
        what: String,
    },

    /// The store was written by a newer cln-backup.
    #[error("{}: store format {found} is newer than this cln-backup supports (format {supported}); upgrade cln-backup", path.display())]
    FormatTooNew {
        /// The store file.
        path: PathBuf,
        /// The format number the file records.
        found: u32,
        /// The newest format number this build reads.
        supported: u32,
    },

    /// `create` was asked for a path that already exists.
    #[error("{}: already exists; refusing to overwrite an existing store", path.display())]
    AlreadyExists {
        /// The path that exists.
        path: PathBuf,
    },

    /// The store's own checks failed: redb checksums, a page that cannot be
    /// read, the hash chain, or a record that does not decode.
    #[error("{}: the store is damaged: {what}", path.display())]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// Which check failed, and where.
        what: String,
    },

    /// redb reported an error other than corruption (for example the disk is full).
    #[error("{}: storage error: {source}", path.display())]
    Storage {
        /// The store file.
        path: PathBuf,
        /// redb's error.
        #[source]
        source: Cause,
    },

    /// An earlier write through this handle failed in storage (an I/O
    /// error, a full disk). After a failed commit, and above all a failed
    /// sync, what the file holds is known only once it is opened again, so
    /// this handle reads and writes nothing more: the next open finds what
    /// the disk really kept.
    #[error("{}: an earlier write to the store failed ({cause}); nothing more is written until the store is opened again", path.display())]
    WriteFailed {
        /// The store file.
        path: PathBuf,
        /// The failure, as it was reported then.
        cause: String,
    },

    /// The [`Store`](crate::Store) this view came from was dropped: a
    /// [`Reader`](crate::Reader) reads only while its store is open (redb
    /// closes the file with the last handle). Not retryable: open the store
    /// again and take a new reader.
    #[error("{}: the store was closed while a view of it was still held; open it again to read it", path.display())]
    StoreClosed {
        /// The store file.
        path: PathBuf,
    },

    /// A change arrived whose version does not follow the head.
    #[error("version {got} does not follow the backup's version {head}: expected {expected} (or {head} again for a lone PRAGMA report, in lightningd's model)")]
    Gap {
        /// The `data_version` of the backup's last change.
        head: u32,
        /// The `data_version` a new change must carry: `head + 1`, wrapping.
        expected: u32,
        /// The `data_version` the change carried.
        got: u32,
    },

    /// A change with no statements (PostgreSQL nodes send these).
    #[error("change for version {version} has no statements; only SQLite nodes are supported")]
    EmptyChange {
        /// The change's `data_version`.
        version: u32,
    },

    /// A new version whose last statement is not the `data_version` bump to it.
    #[error("change for version {version} does not end with the data_version bump from {expected_from} (last statement: {last:?})")]
    MissingBump {
        /// The change's `data_version`.
        version: u32,
        /// The `data_version` the bump should have raised from (`version - 1`, wrapping).
        expected_from: u32,
        /// The change's last statement, as reported.
        last: String,
    },

    /// Two writers raced on one store: the change was checked against the
    /// store's version, and another write reached the store first. An
    /// application must serialise its writers, holding one lock around its
    /// own transaction and the report of it; then this cannot happen.
    #[error("version {version} cannot be stored: another write reached the store first (it is at version {head}); writers of one store must be serialised, one lock held around the application's transaction and its report")]
    ConcurrentWrite {
        /// The version the change carried.
        version: u32,
        /// The store's version when the change came to be stored.
        head: u32,
    },

    /// A snapshot image that is not what it is offered as: not a SQLite
    /// database, damaged, or (lightningd's model) holding another
    /// `data_version`. Nothing was stored.
    #[error("cannot store a snapshot at version {version}: {what}")]
    SnapshotImage {
        /// The `data_version` the snapshot was offered at.
        version: u32,
        /// What is wrong with the image.
        what: String,
    },

    /// A repeated version that carries a bump: that is an uncommitted transaction being replaced, not a repeat.
    #[error("change for version {version} repeats the head version but ends with a data_version bump; rewind the uncommitted change first")]
    RepeatWithBump {
        /// The repeated `data_version`.
        version: u32,
    },

    /// Rewind asked for when it cannot be done safely.
    #[error("cannot rewind: {reason}")]
    Rewind {
        /// Why the last change must stay.
        reason: &'static str,
    },

    /// A snapshot was offered at a version the store cannot take it at.
    #[error("cannot store a snapshot at version {version}: {reason}")]
    SnapshotVersion {
        /// The `data_version` the snapshot was offered at.
        version: u32,
        /// Why the store cannot take it there.
        reason: String,
    },

    /// A version was asked for that the store no longer (or never) held.
    #[error("version {asked} is not restorable from this backup (restorable: {range})")]
    NotRestorable {
        /// The version asked for: a `data_version`, or a store version
        /// (`epoch << 32 | data_version`) when above `u32::MAX`.
        asked: u64,
        /// The versions the backup can restore, as text (for example `5 to 9`).
        range: String,
    },

    /// A time was asked for that the store holds no version at.
    #[error("no version of this backup was received at or before {asked} (restorable: {range})")]
    TimeNotRestorable {
        /// The time asked for, ISO 8601 UTC.
        asked: String,
        /// The versions the backup can restore, with their times.
        range: String,
    },

    /// A restore to a time was asked of a source that keeps no times: only a
    /// store records when each version was received (a `.dbak` file and the
    /// remote copies do not).
    #[error("{source_name}: restoring to a time needs the times a store keeps, and this source keeps none; restore a version instead")]
    NoRecordTimes {
        /// The source asked, as its location names it.
        source_name: String,
    },

    /// Another writer changed the log while a compaction was being prepared.
    #[error("the change log moved under the compaction (version {version} changed); nothing was pruned, try again")]
    CompactionRaced {
        /// The `data_version` whose change differed from the one replayed.
        version: u32,
    },

    /// SQLite failed while replaying or reading a database.
    #[error("{}: SQLite: {source}{}", path.display(), context.as_deref().map(|c| format!(" (while running: {c})")).unwrap_or_default())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The statement being run, when there was one.
        context: Option<String>,
        /// SQLite's error.
        #[source]
        source: Cause,
    },

    /// The restored database does not check out.
    #[error("{}: restored database failed its check: {what}", path.display())]
    RestoreCheck {
        /// The restored database: the temporary beside the destination, or
        /// the destination once the temporary was renamed to it.
        path: PathBuf,
        /// Which check failed: integrity, or the `data_version` found.
        what: String,
    },

    /// A restore destination exists and replacing it was not asked for.
    #[error("{}: destination exists, and replacing it was not asked for", path.display())]
    DestinationExists {
        /// The existing destination.
        path: PathBuf,
    },

    /// A restore or export whose output is the very file it reads (the same
    /// path, a hard link or a symbolic link to it).
    #[error("{}: is the same file as the source {}; refusing to write over the backup being read", output.display(), input.display())]
    SameFile {
        /// The file being read.
        input: PathBuf,
        /// The output asked for, which is that file.
        output: PathBuf,
    },

    /// A SQLite rollback journal or write-ahead log of the database a restore
    /// would replace: opening the restored file would apply it.
    #[error("{}: a crashed SQLite left it; it belongs to the old database and would be applied to the restored one (a restore that replaces the database moves it aside with the old database)", path.display())]
    StaleSideFile {
        /// The journal or write-ahead log found.
        path: PathBuf,
    },

    /// A directory given for the node's database that is lightningd's base
    /// directory: the database is in the network directory below it.
    #[error("{}: is lightningd's base directory, not a network directory: the node's lightningd.sqlite3 is in {below}; give {} instead", path.display(), network.display())]
    BaseDirectory {
        /// The directory given.
        path: PathBuf,
        /// The network directories below it that hold a database, joined by `and`.
        below: String,
        /// The first of those directories, to give instead.
        network: PathBuf,
    },

    /// A file given as a legacy `.dbak` backup whose header is not one:
    /// `what` says what it is instead, when that can be told.
    #[error("{}: not a legacy .dbak backup ({what})", path.display())]
    NotADbak {
        /// The file given.
        path: PathBuf,
        /// What the file is instead, or what its header lacks.
        what: String,
    },

    /// A legacy `.dbak` file that cannot be read.
    #[error("{}: legacy backup: {what}", path.display())]
    Legacy {
        /// The `.dbak` file.
        path: PathBuf,
        /// What is wrong with it, and where.
        what: String,
    },

    /// `backup.lock` (or a store it is to record, or the copy it keeps of an
    /// older lock) cannot be read, written or replaced; `path` is that file.
    #[error("{}: {what}", path.display())]
    LockFile {
        /// The file that failed.
        path: PathBuf,
        /// What failed.
        what: String,
    },

    /// A store argument or a `backend_url` this version cannot use: a scheme
    /// it does not support, or a `file:` URL that names no local path.
    #[error("{url}: {what}")]
    Destination {
        /// The argument or URL, as given.
        url: String,
        /// Why it cannot be used.
        what: String,
    },

    /// A key file or an `hsm_secret` that cannot give the key of a remote
    /// copy, or a key file that cannot be created.
    #[error("{}: {what}", path.display())]
    Key {
        /// The key file or `hsm_secret`.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },

    /// A sealed object opened with a key other than the one it was sealed
    /// with: its key check value differs.
    #[error("{object}: sealed with another key, not the key given (another key file, or another node's hsm_secret)")]
    WrongKey {
        /// The object, as a URL.
        object: String,
    },

    /// A sealed object whose bytes fail their authentication or layout:
    /// altered, swapped with another object, or not a sealed object at all.
    #[error("{object}: damaged: {what}")]
    Damaged {
        /// The object, as a URL.
        object: String,
        /// Which check failed, and where.
        what: String,
    },

    /// A sealed object that ends before its last chunk.
    #[error("{object}: truncated: {what}")]
    Truncated {
        /// The object, as a URL.
        object: String,
        /// Where it ends.
        what: String,
    },

    /// An object store refused or failed a request, or its copy does not
    /// hold together (a missing segment, a manifest naming nothing).
    #[error("{url}: {what}")]
    Remote {
        /// The prefix or object, as a URL.
        url: String,
        /// What failed.
        what: String,
    },

    /// The writer's lease on an object-store prefix is held by another
    /// node's store.
    #[error("{url}: another node's backup writes here (lease held by {holder} since {since}); give this node another prefix, or remove {lease} once that node is gone")]
    LeaseHeld {
        /// The prefix, as a URL.
        url: String,
        /// The holder: its host name and store id.
        holder: String,
        /// When the holder took the lease (UTC).
        since: String,
        /// The lease object, as a URL.
        lease: String,
    },

    /// A socket-protocol peer broke the protocol (a packet of an unknown
    /// type, over its limit, truncated, or that does not decode), sent no
    /// token or a wrong one, or the connection to it failed.
    #[error("{peer}: {what}")]
    Protocol {
        /// The peer's address, or the URL it was reached at.
        peer: String,
        /// What it sent, or what failed.
        what: String,
    },
}

/// What an application can do about an [`Error`] ([`Error::kind`]).
///
/// ```
/// use cln_backup::{ErrorKind, Store};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("s.redb");
/// let _first = Store::create(&path).unwrap();
/// // A second handle on a store that is open: try again once it is closed.
/// let e = Store::open(&path).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Busy);
/// assert!(e.is_retryable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Something else holds what the call needs: another process or handle
    /// has the store open, another write or a compaction came first. The
    /// same call may succeed later, unchanged.
    Busy,
    /// The disk or the network failed: full, an I/O error, a remote copy
    /// unreachable. Try again once it is fixed; a store that reported
    /// [`Error::WriteFailed`] (or the failure that caused it) is opened
    /// again first.
    Unavailable,
    /// The call asked for something the rules refuse (a version that does
    /// not follow, a rewind that is not allowed, a destination that
    /// exists, a version not restorable). The same call fails again: the
    /// caller must change what it asks.
    Refused,
    /// A file or object is damaged: a store failing its checks, a restore
    /// failing its own, a `.dbak` or a remote object that does not read.
    /// Stop, and restore from another copy.
    Damaged,
    /// The file, key or address given is not one this build can use: not
    /// a store, a format too new, another key, a scheme not supported.
    /// Stop, and give the right one.
    Incompatible,
}

/// The underlying failure of [`Error::Storage`] (redb's) or
/// [`Error::Sqlite`] (SQLite's), kept opaque so that the library's public
/// types name neither crate: an application that uses another version of
/// either builds against this one all the same. Its text is the underlying
/// error's; [`std::error::Error::source`] goes on down the chain.
///
/// ```
/// use cln_backup::{lifecycle, Error, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// store.add_change(1, &["CREATE TABLE t (x UNIQUE)"])?;
/// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
/// // Stored as given; the replay meets the duplicate.
/// store.add_change(3, &["INSERT INTO t VALUES (1)"])?;
/// let err = lifecycle::verify_against(&store.reader()?, None, None).unwrap_err();
/// let Error::Sqlite { source, .. } = &err else { panic!("{err}") };
/// assert_eq!(source.to_string(), "UNIQUE constraint failed: t.x");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Cause(Box<Inner>);

#[derive(Debug)]
enum Inner {
    Redb(redb::Error),
    Sqlite(rusqlite::Error),
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &*self.0 {
            Inner::Redb(e) => e.fmt(f),
            Inner::Sqlite(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.0 {
            Inner::Redb(e) => e.source(),
            Inner::Sqlite(e) => e.source(),
        }
    }
}

impl Cause {
    /// The operating system's error underneath, when there is one (a full
    /// disk is `ErrorKind::StorageFull`, an I/O error `Other` with errno 5).
    /// A SQLite failure carries none: SQLite reports a result code instead
    /// ([`Cause::sqlite_code`]; 13, `SQLITE_FULL`, for a full disk).
    ///
    /// ```
    /// # use cln_backup::{lifecycle, Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x UNIQUE)"])?;
    /// # store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// # // Stored as given; the replay meets the duplicate.
    /// # store.add_change(3, &["INSERT INTO t VALUES (1)"])?;
    /// use std::io::ErrorKind;
    ///
    /// /// Whether `err` is a full disk, which freeing space fixes.
    /// fn disk_full(err: &Error) -> bool {
    ///     match err {
    ///         Error::Storage { source, .. } => source.io_error().is_some_and(|e| e.kind() == ErrorKind::StorageFull),
    ///         // SQLITE_FULL
    ///         Error::Sqlite { source, .. } => source.sqlite_code() == Some(13),
    ///         _ => false,
    ///     }
    /// }
    /// let err = lifecycle::verify_against(&store.reader()?, None, None).unwrap_err();
    /// let Error::Sqlite { source, .. } = &err else { panic!("{err}") };
    /// // A constraint failed: no operating-system error, and not a full disk.
    /// assert!(source.io_error().is_none());
    /// assert!(!disk_full(&err));
    /// # Ok(()) }
    /// ```
    pub fn io_error(&self) -> Option<&std::io::Error> {
        match &*self.0 {
            Inner::Redb(redb::Error::Io(e)) => Some(e),
            Inner::Redb(_) => None,
            Inner::Sqlite(e) => std::error::Error::source(e).and_then(|s| s.downcast_ref()),
        }
    }

    /// SQLite's extended result code, for a SQLite failure (for example
    /// 2067, `SQLITE_CONSTRAINT_UNIQUE`, or 13, `SQLITE_FULL`).
    ///
    /// ```
    /// # use cln_backup::{lifecycle, Error, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// # store.add_change(1, &["CREATE TABLE t (x UNIQUE)"])?;
    /// # store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// # // Stored as given; the replay meets the duplicate.
    /// # store.add_change(3, &["INSERT INTO t VALUES (1)"])?;
    /// let err = lifecycle::verify_against(&store.reader()?, None, None).unwrap_err();
    /// let Error::Sqlite { source, .. } = &err else { panic!("{err}") };
    /// // SQLITE_CONSTRAINT_UNIQUE
    /// assert_eq!(source.sqlite_code(), Some(2067));
    /// # Ok(()) }
    /// ```
    pub fn sqlite_code(&self) -> Option<i32> {
        match &*self.0 {
            Inner::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => Some(e.extended_code),
            _ => None,
        }
    }
}

impl From<redb::Error> for Cause {
    fn from(e: redb::Error) -> Self {
        Cause(Box::new(Inner::Redb(e)))
    }
}

impl From<rusqlite::Error> for Cause {
    fn from(e: rusqlite::Error) -> Self {
        Cause(Box::new(Inner::Sqlite(e)))
    }
}

impl Error {
    /// What the caller can do about this error: wait and try again
    /// ([`ErrorKind::Busy`], [`ErrorKind::Unavailable`]), or stop and
    /// change something ([`ErrorKind::Refused`], [`ErrorKind::Damaged`],
    /// [`ErrorKind::Incompatible`]).
    ///
    /// ```
    /// use cln_backup::{Error, ErrorKind, Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let notes = dir.path().join("notes.txt");
    /// std::fs::write(&notes, "not a store")?;
    /// let err = Store::open(&notes).unwrap_err();
    /// assert!(matches!(err, Error::NotAStore { .. }));
    /// assert_eq!(err.kind(), ErrorKind::Incompatible);
    ///
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// store.add_change(2, &["INSERT INTO t VALUES (1)"])?;
    /// store.rewind()?;
    /// // A second rewind in a row breaks a rule: the same call fails again.
    /// assert_eq!(store.rewind().unwrap_err().kind(), ErrorKind::Refused);
    /// # Ok(()) }
    /// ```
    pub fn kind(&self) -> ErrorKind {
        use ErrorKind::*;
        match self {
            Error::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound
                | std::io::ErrorKind::PermissionDenied
                | std::io::ErrorKind::AlreadyExists
                | std::io::ErrorKind::IsADirectory
                | std::io::ErrorKind::NotADirectory
                | std::io::ErrorKind::ReadOnlyFilesystem
                | std::io::ErrorKind::InvalidInput => Refused,
                _ => Unavailable,
            },
            Error::StoreLocked { .. } | Error::CompactionRaced { .. } | Error::ConcurrentWrite { .. } => Busy,
            Error::Storage { .. } | Error::WriteFailed { .. } | Error::Remote { .. } | Error::Protocol { .. } => {
                Unavailable
            }
            Error::Sqlite { source, .. } => match source.sqlite_code().map(|c| c & 0xff) {
                // SQLITE_BUSY, SQLITE_LOCKED
                Some(5 | 6) => Busy,
                // SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN
                Some(10 | 13 | 14) => Unavailable,
                // SQLITE_CORRUPT, SQLITE_NOTADB
                Some(11 | 26) => Damaged,
                _ => Refused,
            },
            Error::Corrupt { .. }
            | Error::RestoreCheck { .. }
            | Error::Legacy { .. }
            | Error::Damaged { .. }
            | Error::Truncated { .. } => Damaged,
            Error::NotAStore { .. }
            | Error::FormatTooNew { .. }
            | Error::NotADbak { .. }
            | Error::Destination { .. }
            | Error::Key { .. }
            | Error::WrongKey { .. } => Incompatible,
            Error::ReadOnly { .. }
            | Error::Encode { .. }
            | Error::AlreadyExists { .. }
            | Error::Gap { .. }
            | Error::EmptyChange { .. }
            | Error::MissingBump { .. }
            | Error::RepeatWithBump { .. }
            | Error::Rewind { .. }
            | Error::SnapshotVersion { .. }
            | Error::SnapshotImage { .. }
            | Error::NotRestorable { .. }
            | Error::TimeNotRestorable { .. }
            | Error::NoRecordTimes { .. }
            | Error::DestinationExists { .. }
            | Error::SameFile { .. }
            | Error::StaleSideFile { .. }
            | Error::BaseDirectory { .. }
            | Error::LockFile { .. }
            | Error::LeaseHeld { .. }
            | Error::StoreClosed { .. } => Refused,
        }
    }

    /// Whether the same call may succeed later: [`ErrorKind::Busy`] or
    /// [`ErrorKind::Unavailable`] (after the disk or the network is fixed).
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
    /// store.add_change(1, &["CREATE TABLE t (x)"])?;
    /// // Another writer stored version 1 first: retry with the next version.
    /// let raced = store.add_change(1, &["INSERT INTO t VALUES (1)"]).unwrap_err();
    /// assert!(raced.is_retryable());
    /// // A version that skips one is refused for good.
    /// let gap = store.add_change(3, &["INSERT INTO t VALUES (1)"]).unwrap_err();
    /// assert!(!gap.is_retryable());
    /// # Ok(()) }
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind(), ErrorKind::Busy | ErrorKind::Unavailable)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Corrupt { path: path.into(), what: what.into() }
    }

    pub(crate) fn sqlite(path: impl Into<PathBuf>, source: rusqlite::Error) -> Self {
        Error::Sqlite { path: path.into(), context: None, source: Cause::from(source) }
    }

    pub(crate) fn legacy(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Legacy { path: path.into(), what: what.into() }
    }

    /// Map any redb error onto ours, keeping damage and locking distinct
    /// from other storage failures. Whether a file is a store at all is
    /// decided when it is opened (see `store::load_state`): past that, a table
    /// of the wrong type or a missing one is damage.
    pub(crate) fn redb(path: impl Into<PathBuf>, source: impl Into<redb::Error>) -> Self {
        let path = path.into();
        match source.into() {
            redb::Error::DatabaseAlreadyOpen | redb::Error::LockProtocolMismatch => Error::StoreLocked { path },
            redb::Error::Corrupted(what) => Error::Corrupt { path, what },
            redb::Error::DatabaseClosed => Error::StoreClosed { path },
            redb::Error::TableDoesNotExist(t) => Error::Corrupt { path, what: format!("its {t} table is missing") },
            e @ (redb::Error::TableTypeMismatch { .. }
            | redb::Error::TypeDefinitionChanged { .. }
            | redb::Error::TableIsMultimap(_)
            | redb::Error::TableIsNotMultimap(_)
            | redb::Error::UpgradeRequired(_)) => {
                Error::Corrupt { path, what: format!("its tables do not read back: {e}") }
            }
            // A read past the end of the file means a page pointer is damaged
            // or the file was truncated: damage, not a failing disk.
            redb::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Error::Corrupt {
                path,
                what: format!("a page lies beyond the end of the file (truncated or damaged): {e}"),
            },
            other => Error::Storage { path, source: Cause::from(other) },
        }
    }

    /// A redb error met while reading a file that has redb's magic: unless it
    /// is a lock held elsewhere or the operating system's I/O error, the file
    /// is damaged.
    pub(crate) fn damaged(path: impl Into<PathBuf>, source: impl Into<redb::Error>) -> Self {
        let path = path.into();
        match Error::redb(path, source) {
            Error::Storage { path, source: Cause(inner) } => match *inner {
                Inner::Redb(redb::Error::Io(e)) => Error::Io { path, source: e },
                other => Error::Corrupt { path, what: Cause(Box::new(other)).to_string() },
            },
            mapped => mapped,
        }
    }
}
