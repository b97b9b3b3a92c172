//! Where backups go: the [`Destination`] trait the plugin writes through,
//! and the registry ([`open`], [`open_with`], [`open_entry`]) that turns a
//! store argument or an entry of `backup.lock` into one.
//!
//! Owns the parsing of locations (plain paths, `file:`, `socket:` and
//! object-store URLs), the refusal, naming the URL, of every scheme this
//! version does not serve, and the rules for a list of destinations
//! ([`check_destinations`]). It must not know lightningd's protocol, nor
//! decide anything about a write: a destination stores what it is given,
//! or says why it did not. Keeping a replica up to date is [`replica`]'s.
//!
//! **Which lists of destinations are allowed.** A local store, when the
//! list has one, is the primary: the first entry, sync. A later local
//! store is a replica of it (a second disk), sync or async, like any other
//! destination. Object storage is a replica of a local store (it is written
//! from the primary, and its single-writer lease names the primary's
//! [`Store::id`]), so a list with an object-store destination must start
//! with a local store, and the object-store entry needs a key source. An
//! async destination is shipped from the primary, so it needs one too.
//! `socket:` alone is allowed, sync, as the Python plugin used it: the
//! server is then the only copy. A key source or a credentials file
//! belongs to object storage only, a token file to `socket:` only, and a
//! URL appears once.
//!
//! One folder per destination: `file/` ([`FileDestination`], a local redb
//! store), `socket/` ([`SocketDestination`], a remote backup server) and
//! `object/` (`ObjectDestination`, object storage, behind the
//! `object-store` feature).
//!
//! ```
//! use cln_backup::destination::{self, Access};
//! use cln_backup::lockfile::Entry;
//! use cln_backup::Store;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("node.redb");
//! drop(Store::create(&path)?);
//! let dest = destination::open(format!("file://{}", path.display()), Access::Write)?;
//! assert_eq!(dest.head()?.version, 0);
//! assert!(dest.local_store().is_some());
//!
//! // A backup server alone is allowed; object storage alone is not.
//! assert!(destination::check_destinations(&[Entry::new("socket:127.0.0.1:8700")]).is_ok());
//! assert!(destination::check_destinations(&[Entry::new("s3://bucket/node")]).is_err());
//! # Ok(()) }
//! ```

mod file;
#[cfg(feature = "object-store")]
mod object;
pub mod replica;
mod socket;

use crate::lockfile::{Entry, Mode};
use crate::store::{Added, SnapshotInfo, Store};
use crate::version::Seq;
use crate::{Change, Error, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub use file::FileDestination;
#[cfg(feature = "object-store")]
pub use object::{ObjectDestination, ObjectOptions, RemoteSummary};
pub use socket::{serve_connection, HostPort, ServeOptions, Served};
pub use socket::{SocketDestination, SocketUrl};

/// For the fuzz targets (see `crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_one_packet(bytes: &[u8]) {
    socket::read_packets(bytes);
}

/// Seeds of the socket protocol's fuzz target.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn sample_packets(statements: &[String]) -> Vec<Vec<u8>> {
    socket::sample_packets(statements)
}

/// The locations this version serves, as its error messages list them.
pub(crate) const SUPPORTED: &str =
    "supported: a path, a file:// URL, socket:host:port, or object storage (s3://bucket/prefix, gs://, az://)";

/// The head of a destination: what the first write after a start is
/// checked against.
///
/// ```
/// use cln_backup::destination::{Destination, FileDestination, Head};
/// use cln_backup::version::bump_statement;
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// # store.add_change(2, &["INSERT INTO vars VALUES ('v2', 2)".to_string(), bump_statement(2)])?;
/// let dest = FileDestination::new(store);
/// assert_eq!(dest.head()?, Head::new(2, Some(1), true));
/// dest.rewind()?;
/// let head = dest.head()?;
/// assert_eq!(head.version, 1);
/// assert!(!head.rewind_allowed, "only one rewind in a row");
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Head {
    /// lightningd's `data_version` at the head.
    pub version: u32,
    /// The version before the last change, when there is a last change.
    pub prev_version: Option<u32>,
    /// Whether [`Destination::rewind`] would be accepted now.
    pub rewind_allowed: bool,
}

impl Head {
    /// A head at `version`, after `prev_version` when there is a last
    /// change, and whether that change may be rewound: what a
    /// [`Destination`] outside this crate returns from its `head`.
    ///
    /// ```
    /// use cln_backup::destination::Head;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A destination at version 7 whose last change took it from 6.
    /// let head = Head::new(7, Some(6), true);
    /// assert_eq!((head.version, head.prev_version, head.rewind_allowed), (7, Some(6), true));
    /// assert_ne!(head, Head::new(7, None, false));
    /// # Ok(()) }
    /// ```
    pub fn new(version: u32, prev_version: Option<u32>, rewind_allowed: bool) -> Head {
        Head { version, prev_version, rewind_allowed }
    }
}

/// What a destination reports about itself, for `info` of a remote copy
/// and `backup-status`: its head, and what it can restore when it knows.
///
/// ```
/// use cln_backup::destination::{Destination, FileDestination};
/// use cln_backup::version::bump_statement;
/// use cln_backup::{compact, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
/// # }
/// // A snapshot at 2 and the change to 3.
/// compact::compact(&store, &Default::default())?;
/// let summary = FileDestination::new(store).summary()?;
/// assert_eq!(summary.head.version, 3);
/// assert_eq!(summary.snapshot_version, Some(2));
/// assert_eq!(summary.restorable, Some((2, 3)));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The head.
    pub head: Head,
    /// The lowest and highest `data_version` a restore can produce, when
    /// the destination reports them.
    pub restorable: Option<(u32, u32)>,
    /// The base snapshot's `data_version`, when the destination reports one.
    pub snapshot_version: Option<u32>,
    /// Further facts the destination reports, as label and value, in the
    /// order `info` shows them (object storage: segments, bytes stored, the
    /// lease holder).
    pub details: Vec<(String, String)>,
}

impl Summary {
    /// A summary with the head alone: what [`Destination::summary`]
    /// reports unless a destination says more.
    ///
    /// ```
    /// use cln_backup::destination::{Head, Summary};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let summary = Summary::new(Head::new(5, Some(4), true));
    /// assert_eq!(summary.head.version, 5);
    /// assert_eq!(summary.restorable, None);
    /// assert!(summary.details.is_empty());
    /// # Ok(()) }
    /// ```
    pub fn new(head: Head) -> Summary {
        Summary { head, restorable: None, snapshot_version: None, details: Vec::new() }
    }
}

/// What a restore reads from a destination, from one consistent view of it
/// (see [`Destination::restore_source`]).
///
/// ```
/// use cln_backup::destination::{Destination, FileDestination};
/// use cln_backup::version::bump_statement;
/// use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
/// # }
/// let dest = FileDestination::new(store);
/// let mut image = Vec::new();
/// let source = dest.restore_source(Some(2), &mut image)?;
/// assert_eq!(source.upto, 2);
/// assert_eq!(source.model, Model::Lightningd);
/// // No snapshot: the changes start from an empty database.
/// assert!(image.is_empty());
/// let versions: Vec<u32> = source.changes.map(|c| c.map(|c| c.data_version())).collect::<Result<_, _>>()?;
/// assert_eq!(versions, [1, 2]);
/// # Ok(()) }
/// ```
#[non_exhaustive]
pub struct RestoreSource {
    /// The store version the restore reaches.
    pub upto: Seq,
    /// Whether foreign keys are on at the start point (as the base snapshot
    /// recorded them; on when the log starts from an empty database).
    pub foreign_keys: bool,
    /// The change model the changes follow (lightningd's for every remote
    /// copy; a local store's own).
    pub model: crate::Model,
    /// The changes after the base snapshot up to `upto`, in order, each
    /// checked as it is read; the first error ends the iteration.
    pub changes: Box<dyn Iterator<Item = Result<Change>> + Send>,
}

impl RestoreSource {
    /// A source reaching `upto`, starting with `foreign_keys`, yielding
    /// `changes`: what a [`Destination`] outside this crate returns.
    ///
    /// ```
    /// use cln_backup::destination::RestoreSource;
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # store.add_change(2, &["INSERT INTO vars VALUES ('v2', 2)".to_string(), bump_statement(2)])?;
    /// // The changes of a store, as a destination of its own would read them.
    /// let reader = store.reader()?;
    /// let source = RestoreSource::new(reader.head(), true, Box::new(reader.changes(reader.head())?));
    /// assert_eq!(source.model, Model::Lightningd);
    /// assert_eq!(source.upto, 2);
    /// assert_eq!(source.changes.count(), 2);
    /// # Ok(()) }
    /// ```
    pub fn new(
        upto: Seq,
        foreign_keys: bool,
        changes: Box<dyn Iterator<Item = Result<Change>> + Send>,
    ) -> RestoreSource {
        RestoreSource { upto, foreign_keys, model: crate::Model::Lightningd, changes }
    }
}

impl std::fmt::Debug for RestoreSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreSource").field("upto", &self.upto).field("foreign_keys", &self.foreign_keys).finish()
    }
}

/// What the plugin asks of a backup, whatever holds it.
///
/// Plain on purpose: object-safe, `Send + Sync`, blocking. The plugin keeps
/// its destinations as a list and answers `continue` only once every one of
/// them has returned `Ok` from [`add_change`](Destination::add_change), so
/// each must have the change durably when it returns `Ok` (and nothing of
/// it when it returns `Err`), as [`Store::add_change`] does.
///
/// Where each destination plugs in: a folder beside `file/` with a type
/// implementing this trait, and one arm in [`open_with`] for its scheme:
///
/// - `socket:host:port`, a remote backup server: `head`, `add_change`,
///   `rewind` and `add_snapshot` are requests answered once the server has
///   them on disk; a restore streams the base snapshot and the changes.
/// - `s3://bucket/key`, an object store: changes are objects named by
///   version, written before `add_change` returns.
///
/// A restore reads any destination through
/// [`restore_source`](Destination::restore_source)
/// ([`restore::restore_from`](crate::restore::restore_from)). A destination
/// that is not a local store returns `None` from
/// [`local_store`](Destination::local_store); `backup-status` and compaction
/// use that store.
///
/// ```
/// use cln_backup::destination::{Destination, FileDestination};
/// use cln_backup::version::bump_statement;
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// // The plugin's list: a primary store and a replica of it on a second disk.
/// let destinations: Vec<Box<dyn Destination>> = vec![
///     Box::new(FileDestination::new(Store::create(dir.path().join("node.redb"))?)),
///     Box::new(FileDestination::new(Store::create(dir.path().join("replica.redb"))?)),
/// ];
/// let bump = bump_statement(1);
/// let statements = ["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", bump.as_str()];
/// for dest in &destinations {
///     dest.add_change(1, &statements)?;
/// }
/// // Every one has the change: lightningd may go on.
/// for dest in &destinations {
///     assert_eq!(dest.head()?.version, 1);
/// }
/// # Ok(()) }
/// ```
pub trait Destination: Send + Sync + std::fmt::Debug {
    /// The destination as messages name it: the store's path, or the URL.
    ///
    /// ```
    /// use cln_backup::destination::{self, Access};
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// drop(Store::create(&path)?);
    /// // A local store is named by its path, even when opened by its URL.
    /// let dest = destination::open(format!("file://{}", path.display()), Access::Write)?;
    /// assert_eq!(dest.location(), path.display().to_string());
    /// # Ok(()) }
    /// ```
    fn location(&self) -> &str;

    /// The head and whether the last change may be rewound.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # store.add_change(2, &["INSERT INTO vars VALUES ('v2', 2)".to_string(), bump_statement(2)])?;
    /// let dest = FileDestination::new(store);
    /// let head = dest.head()?;
    /// assert_eq!((head.version, head.prev_version), (2, Some(1)));
    /// assert!(head.rewind_allowed);
    /// # Ok(()) }
    /// ```
    fn head(&self) -> Result<Head>;

    /// Store one transaction lightningd reported with `data_version ==
    /// version`, under the change-log rules of [`Store::add_change`].
    /// Durable when it returns `Ok`.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::{Added, Error, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let dest = FileDestination::new(Store::create(dir.path().join("node.redb"))?);
    /// let bump = bump_statement(1);
    /// let added = dest.add_change(1, &["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", &bump])?;
    /// assert_eq!(added, Added::New(1));
    /// // Version 2 is missing: the change for 3 is refused, and nothing is stored.
    /// let bump = bump_statement(3);
    /// let refused = dest.add_change(3, &["INSERT INTO vars VALUES ('a', 1)", &bump]);
    /// assert!(matches!(refused, Err(Error::Gap { .. })));
    /// assert_eq!(dest.head()?.version, 1);
    /// # Ok(()) }
    /// ```
    fn add_change(&self, version: u32, statements: &[&str]) -> Result<Added>;

    /// Store several consecutive changes read from a local store (a
    /// replica catching up, or an async replica shipping what it has not
    /// yet), in order, each under the rules of
    /// [`add_change`](Destination::add_change). Durable when it returns `Ok`;
    /// on `Err`, a prefix of them may be stored, and
    /// [`head`](Destination::head) says how far it got. A destination that
    /// can ship many changes as one object overrides it.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::{Change, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let primary = Store::create(dir.path().join("node.redb"))?;
    /// # primary.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # for v in 2..=3 {
    /// #     primary.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
    /// # }
    /// let replica = FileDestination::new(Store::create(dir.path().join("replica.redb"))?);
    /// // Everything the primary holds, shipped in one call.
    /// let reader = primary.reader()?;
    /// let changes: Vec<Change> = reader.changes(reader.head())?.collect::<Result<_, _>>()?;
    /// replica.add_changes(&changes)?;
    /// assert_eq!(replica.head()?.version, 3);
    /// # Ok(()) }
    /// ```
    fn add_changes(&self, changes: &[Change]) -> Result<()> {
        for change in changes {
            for transaction in &change.transactions {
                let statements: Vec<&str> = transaction.statements.iter().map(String::as_str).collect();
                self.add_change(change.data_version(), &statements)?;
            }
        }
        Ok(())
    }

    /// Remove the last change: lightningd reported it but did not commit it.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # store.add_change(2, &["INSERT INTO vars VALUES ('v2', 2)".to_string(), bump_statement(2)])?;
    /// let dest = FileDestination::new(store);
    /// // lightningd's COMMIT of version 2 failed: take it back out.
    /// assert_eq!(dest.rewind()?, 1);
    /// assert_eq!(dest.head()?.version, 1);
    /// assert!(dest.rewind().is_err(), "only one rewind in a row");
    /// # Ok(()) }
    /// ```
    fn rewind(&self) -> Result<Seq>;

    /// Store a whole SQLite image as the base snapshot at `version`.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let db = dir.path().join("lightningd.sqlite3");
    /// Connection::open(&db)?.execute_batch(
    ///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER); INSERT INTO vars VALUES ('data_version', 5);",
    /// )?;
    /// let dest = FileDestination::new(Store::create(dir.path().join("node.redb"))?);
    /// let info = dest.add_snapshot(5, &mut std::fs::File::open(&db)?)?;
    /// assert_eq!(info.version, 5);
    /// // The store now starts at 5, with nothing to rewind.
    /// let head = dest.head()?;
    /// assert_eq!(head.version, 5);
    /// assert!(!head.rewind_allowed);
    /// # Ok(()) }
    /// ```
    fn add_snapshot(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo>;

    /// Stream what a restore to `to_version` (a `data_version`, or the head
    /// when `None`) needs, from one consistent view: the base snapshot's
    /// SQLite image is written to `image` (nothing when the log starts from
    /// an empty database), and the changes after it come back in a
    /// [`RestoreSource`]. A version outside the restorable range is
    /// [`Error::NotRestorable`].
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::{Error, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
    /// # }
    /// let dest = FileDestination::new(store);
    /// let mut image = Vec::new();
    /// let source = dest.restore_source(None, &mut image)?;
    /// assert_eq!(source.upto, 3);
    /// assert_eq!(source.changes.count(), 3);
    /// // Beyond the head: not restorable.
    /// let beyond = dest.restore_source(Some(9), &mut image);
    /// assert!(matches!(beyond, Err(Error::NotRestorable { asked: 9, .. })));
    /// # Ok(()) }
    /// ```
    fn restore_source(&self, to_version: Option<u64>, image: &mut dyn Write) -> Result<RestoreSource>;

    /// The local store, for what reads or rewrites it whole in place:
    /// `backup-status`, compaction.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # store.add_change(2, &["INSERT INTO vars VALUES ('v2', 2)".to_string(), bump_statement(2)])?;
    /// let dest = FileDestination::new(store);
    /// let local = dest.local_store().expect("a file destination is a local store");
    /// assert_eq!(local.version(), 2);
    /// assert_eq!(local.status()?.changes, 2);
    /// # Ok(()) }
    /// ```
    fn local_store(&self) -> Option<&Store>;

    /// Ask a destination that compacts itself (a backup server) to do so
    /// now, returning its statistics; `None` for a destination that has no
    /// such request (a local store is compacted through
    /// [`local_store`](Destination::local_store), object storage by the
    /// snapshots it is sent).
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::{compact, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # for v in 2..=3 {
    /// #     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
    /// # }
    /// let dest = FileDestination::new(store);
    /// // A local store has no such request: it is compacted as a store.
    /// assert!(dest.compact_remote().is_none());
    /// let store = dest.local_store().expect("a local store");
    /// assert_eq!(compact::compact(store, &Default::default())?.snapshot_version, Some(2));
    /// # Ok(()) }
    /// ```
    fn compact_remote(&self) -> Option<Result<serde_json::Value>> {
        None
    }

    /// What the destination holds, for `info` and `backup-status`. By
    /// default the head alone (a local store adds its restorable range and
    /// snapshot); a destination that knows more overrides it.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// # store.add_change(2, &["INSERT INTO vars VALUES ('v2', 2)".to_string(), bump_statement(2)])?;
    /// let summary = FileDestination::new(store).summary()?;
    /// assert_eq!(summary.head.version, 2);
    /// // No snapshot: from the empty database (0) to the head.
    /// assert_eq!(summary.restorable, Some((0, 2)));
    /// assert_eq!(summary.snapshot_version, None);
    /// # Ok(()) }
    /// ```
    fn summary(&self) -> Result<Summary> {
        let head = self.head()?;
        let Some(store) = self.local_store() else {
            return Ok(Summary::new(head));
        };
        let status = store.status()?;
        Ok(Summary {
            head,
            restorable: Some((crate::version::data_version(status.restorable.0), status.version)),
            snapshot_version: status.snapshot.map(|s| s.version),
            details: Vec::new(),
        })
    }
}

/// How [`open`] opens a local store.
///
/// ```
/// use cln_backup::destination::{self, Access};
/// use cln_backup::version::bump_statement;
/// use cln_backup::{Error, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("node.redb");
/// drop(Store::create(&path)?);
/// let reader = destination::open(&path, Access::ReadOnly)?;
/// let bump = bump_statement(1);
/// let refused = reader.add_change(1, &["CREATE TABLE t (x)", &bump]);
/// assert!(matches!(refused, Err(Error::ReadOnly { .. })));
/// drop(reader);
/// let writer = destination::open(&path, Access::Write)?;
/// writer.add_change(1, &["CREATE TABLE t (x)", &bump])?;
/// assert_eq!(writer.head()?.version, 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// The one writer ([`Store::open`]): the plugin, compaction, imports.
    Write,
    /// A reader beside others ([`Store::open_read_only`]).
    ReadOnly,
}

/// What a store argument or `backend_url` names. Other kinds of location
/// may become further variants, so a match outside the crate needs a
/// wildcard arm.
///
/// ```
/// use cln_backup::destination::{parse, Location};
/// use std::path::{Path, PathBuf};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let describe = |arg: &str| -> cln_backup::Result<String> {
///     Ok(match parse(Path::new(arg))? {
///         Location::File(path) => format!("the file {}", path.display()),
///         Location::Socket(url) => format!("the server at {}", url.target.to_url_form()),
///         _ => format!("the remote copy {arg}"),
///     })
/// };
/// assert_eq!(describe("node.redb")?, "the file node.redb");
/// assert_eq!(describe("socket:[::1]:8700")?, "the server at [::1]:8700");
/// assert_eq!(describe("s3://bucket/node")?, "the remote copy s3://bucket/node");
/// assert_eq!(parse(Path::new("node.redb"))?, Location::File(PathBuf::from("node.redb")));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// A local file.
    File(PathBuf),
    /// A backup server speaking the socket protocol.
    Socket(SocketUrl),
    /// A prefix in an object store (`s3://bucket/prefix`, `gs://`, `az://`), as written.
    Object(String),
}

/// How [`open_with`] opens a destination: what each kind needs beyond its URL.
///
/// ```
/// use cln_backup::destination::{open_with, Access, OpenOptions};
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("node.redb");
/// drop(Store::create(&path)?);
/// let options = OpenOptions::new(Access::ReadOnly);
/// let dest = open_with(&path, &options)?;
/// assert!(dest.local_store().is_some_and(|store| store.is_read_only()));
///
/// // Object storage is refused without its key source.
/// assert!(open_with("s3://bucket/node", &options).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct OpenOptions {
    /// Writer or reader.
    pub access: Access,
    /// Object storage: where the encryption key comes from (required there).
    pub key: Option<crate::encryption::KeySource>,
    /// Object storage: a file of `AWS_*=value` lines, read before the environment.
    pub credentials_file: Option<PathBuf>,
    /// Socket: a file holding the pre-shared token the server asks for.
    pub token_file: Option<PathBuf>,
    /// Object storage, as a writer: the local store's id
    /// ([`Store::id`]), which the single-writer lease records.
    pub owner: Option<[u8; 16]>,
}

impl OpenOptions {
    /// Options for `access` and nothing else.
    ///
    /// ```
    /// use cln_backup::destination::{Access, OpenOptions};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = OpenOptions::new(Access::Write);
    /// assert_eq!(options.access, Access::Write);
    /// assert!(options.key.is_none() && options.token_file.is_none() && options.owner.is_none());
    /// # Ok(()) }
    /// ```
    pub fn new(access: Access) -> OpenOptions {
        OpenOptions { access, key: None, credentials_file: None, token_file: None, owner: None }
    }

    /// Options for the `backup.lock` entry `entry`: its key source,
    /// credentials and token files, opened for `access` on behalf of the
    /// local store `owner`.
    ///
    /// ```
    /// use cln_backup::destination::{Access, OpenOptions};
    /// use cln_backup::lockfile::Entry;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let mut entry = Entry::new("socket:127.0.0.1:8700");
    /// entry.token_file = Some(dir.path().join("backup.token"));
    /// let options = OpenOptions::for_entry(&entry, Access::Write, None);
    /// assert_eq!(options.token_file, entry.token_file);
    /// assert_eq!(options.access, Access::Write);
    /// assert!(options.key.is_none());
    /// # Ok(()) }
    /// ```
    pub fn for_entry(entry: &Entry, access: Access, owner: Option<[u8; 16]>) -> OpenOptions {
        OpenOptions {
            access,
            key: entry.key.clone(),
            credentials_file: entry.credentials_file.clone(),
            token_file: entry.token_file.clone(),
            owner,
        }
    }
}

/// Open the destination of the `backup.lock` entry `entry` (see
/// [`OpenOptions::for_entry`]).
///
/// ```
/// use cln_backup::destination::{open_entry, Access};
/// use cln_backup::lockfile::Entry;
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("node.redb");
/// let store = Store::create(&path)?;
/// let (entry, owner) = (Entry::local(&path)?, store.id());
/// drop(store);
/// assert!(entry.url.starts_with("file:///"));
/// let dest = open_entry(&entry, Access::Write, Some(owner))?;
/// assert_eq!(dest.local_store().map(|s| s.id()), Some(owner));
/// # Ok(()) }
/// ```
pub fn open_entry(entry: &Entry, access: Access, owner: Option<[u8; 16]>) -> Result<Box<dyn Destination>> {
    open_with(&entry.url, &OpenOptions::for_entry(entry, access, owner))
}

/// What kind of location a URL names, as `backup-status` shows it:
/// `local`, `socket` or `object`.
///
/// ```
/// use cln_backup::destination::{kind, parse};
/// use std::path::Path;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// assert_eq!(kind(&parse(Path::new("node.redb"))?), "local");
/// assert_eq!(kind(&parse(Path::new("socket:127.0.0.1:8700"))?), "socket");
/// assert_eq!(kind(&parse(Path::new("gs://bucket/node"))?), "object");
/// # Ok(()) }
/// ```
pub fn kind(location: &Location) -> &'static str {
    match location {
        Location::File(_) => "local",
        Location::Socket(_) => "socket",
        Location::Object(_) => "object",
    }
}

/// Check a list of destinations (the entries of `backup.lock`, or what
/// `init` is about to write there) against the rules in this module's
/// documentation; the error names the entry's URL and the rule.
///
/// ```
/// use cln_backup::destination::check_destinations;
/// use cln_backup::lockfile::{Entry, Mode};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let local = Entry::new(format!("file://{}", dir.path().join("node.redb").display()));
/// let mut server = Entry::new("socket:127.0.0.1:8700");
/// server.mode = Mode::Async;
/// // A local primary, and a backup server shipped to from it.
/// check_destinations(&[local.clone(), server.clone()])?;
/// // The local store is the primary: a list that puts it later is refused.
/// let err = check_destinations(&[server, local]).unwrap_err();
/// assert!(err.to_string().contains("list it first"), "{err}");
/// // Object storage without a key source is refused.
/// let bucket = Entry::new("s3://bucket/node");
/// let first = Entry::new(format!("file://{}", dir.path().join("node.redb").display()));
/// assert!(check_destinations(&[first, bucket]).unwrap_err().to_string().contains("encrypted"));
/// # Ok(()) }
/// ```
pub fn check_destinations(entries: &[Entry]) -> Result<()> {
    let refuse = |url: &str, what: &str| Err(Error::Destination { url: url.to_string(), what: what.to_string() });
    let Some(first) = entries.first() else {
        return Err(Error::Destination { url: "\"\"".into(), what: "no destination is listed".into() });
    };
    let mut kinds = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let location = parse(Path::new(&entry.url))?;
        if entries[..i].iter().any(|e| e.url == entry.url) {
            return refuse(&entry.url, "is listed twice");
        }
        let object = matches!(location, Location::Object(_));
        if entry.key.is_some() && !object {
            return refuse(&entry.url, "a key source is for object storage only");
        }
        if entry.credentials_file.is_some() && !object {
            return refuse(&entry.url, "a credentials file is for object storage only");
        }
        if entry.token_file.is_some() && !matches!(location, Location::Socket(_)) {
            return refuse(&entry.url, "a token file is for socket: destinations only");
        }
        kinds.push(location);
    }
    let primary = matches!(kinds[0], Location::File(_));
    if primary && first.mode == Mode::Async {
        return refuse(
            &first.url,
            "the local store is the primary and is written before every answer: it cannot be async",
        );
    }
    for (entry, location) in entries.iter().zip(&kinds).skip(1) {
        match location {
            Location::File(_) if !primary => {
                return refuse(&entry.url, "the local store is the primary: list it first")
            }
            Location::Object(_) if !primary => {
                return refuse(&entry.url, "object storage is a replica of a local store: list the local store first")
            }
            _ if !primary && entry.mode == Mode::Async => {
                return refuse(
                    &entry.url,
                    "an async destination is shipped from a local store: list the local store first",
                )
            }
            _ => {}
        }
    }
    if !primary {
        if let Location::Object(_) = kinds[0] {
            return refuse(&first.url, "object storage is a replica of a local store: list the local store first");
        }
        if first.mode == Mode::Async {
            return refuse(
                &first.url,
                "an async destination is shipped from a local store: list the local store first",
            );
        }
    }
    for (entry, location) in entries.iter().zip(&kinds) {
        if matches!(location, Location::Object(_)) && entry.key.is_none() {
            return refuse(&entry.url, "object storage is encrypted: give the key file or the node's hsm_secret");
        }
    }
    Ok(())
}

/// Open the destination `url_or_path` names (see [`parse`]) with `access`
/// and no other option: enough for a local store or a `socket:` server
/// without a token; object storage needs [`open_with`] and its key.
///
/// ```
/// use cln_backup::destination::{open, Access};
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("node.redb");
/// drop(Store::create(&path)?);
/// let dest = open(&path, Access::Write)?;
/// assert_eq!(dest.head()?.version, 0);
/// // A scheme this version does not serve is refused before anything is opened.
/// let err = open("https://example.com/node", Access::Write).unwrap_err();
/// assert!(err.to_string().contains("not supported"), "{err}");
/// # Ok(()) }
/// ```
pub fn open(url_or_path: impl AsRef<Path>, access: Access) -> Result<Box<dyn Destination>> {
    open_with(url_or_path, &OpenOptions::new(access))
}

/// Open the destination `url_or_path` names, with what its kind needs.
///
/// ```
/// use cln_backup::destination::{open_with, serve_connection, Access, OpenOptions, ServeOptions};
/// use cln_backup::Store;
/// use std::net::TcpListener;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # // A backup server on this machine, asking for a token.
/// # let store = Store::create(dir.path().join("server.redb"))?;
/// # let listener = TcpListener::bind("127.0.0.1:0")?;
/// # let url = format!("socket:{}", listener.local_addr()?);
/// # let mut serve = ServeOptions::new();
/// # serve.token = Some(b"s3cret".to_vec());
/// # let server = std::thread::spawn(move || serve_connection(&store, &listener.accept().unwrap().0, &serve));
/// let token = dir.path().join("backup.token");
/// std::fs::write(&token, "s3cret\n")?;
/// let mut options = OpenOptions::new(Access::Write);
/// options.token_file = Some(token);
/// let dest = open_with(&url, &options)?;
/// assert_eq!(dest.location(), url);
/// assert_eq!(dest.head()?.version, 0);
/// # drop(dest);
/// # server.join().unwrap()?;
/// # Ok(()) }
/// ```
pub fn open_with(url_or_path: impl AsRef<Path>, options: &OpenOptions) -> Result<Box<dyn Destination>> {
    match parse(url_or_path.as_ref())? {
        Location::File(path) => {
            let store = match options.access {
                Access::Write => Store::open(&path)?,
                Access::ReadOnly => Store::open_read_only(&path)?,
            };
            Ok(Box::new(FileDestination::new(store)))
        }
        Location::Socket(url) => {
            let token = match &options.token_file {
                Some(path) => Some(std::fs::read(path).map_err(|e| Error::io(path, e))?),
                None => None,
            };
            Ok(Box::new(SocketDestination::connect(&url, token)?))
        }
        Location::Object(url) => open_object(&url, options),
    }
}

#[cfg(feature = "object-store")]
fn open_object(url: &str, options: &OpenOptions) -> Result<Box<dyn Destination>> {
    let Some(source) = &options.key else {
        return Err(Error::Destination {
            url: url.to_string(),
            what: "object storage is encrypted: give the key file or the node's hsm_secret".into(),
        });
    };
    let mut object_options = ObjectOptions::new(options.access, source.load()?);
    object_options.credentials_file = options.credentials_file.clone();
    object_options.owner = options.owner;
    Ok(Box::new(ObjectDestination::open(url, &object_options)?))
}

#[cfg(not(feature = "object-store"))]
fn open_object(url: &str, _options: &OpenOptions) -> Result<Box<dyn Destination>> {
    Err(Error::Destination {
        url: url.to_string(),
        what: "this cln-backup was built without object storage (the object-store feature)".into(),
    })
}

/// The local file a store argument names; other locations are refused (see
/// [`parse`]).
///
/// ```
/// use cln_backup::destination::local_path;
/// use std::path::Path;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let path = dir.path().join("node.redb");
/// let url = format!("file://{}", path.display());
/// assert_eq!(local_path(Path::new(&url))?, path);
/// assert!(local_path(Path::new("socket:127.0.0.1:8700")).is_err());
/// # Ok(()) }
/// ```
pub fn local_path(url_or_path: &Path) -> Result<PathBuf> {
    match parse(url_or_path)? {
        Location::File(path) => Ok(path),
        Location::Socket(SocketUrl { url, .. }) | Location::Object(url) => {
            Err(Error::Destination { url, what: format!("not a local store ({SUPPORTED})") })
        }
    }
}

/// Object-store schemes, as the `object_store` crate names them.
const OBJECT_SCHEMES: &[&str] = &["s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl"];

/// URL schemes that name remote stores, refused even when written without
/// `//` (`s3:bucket/key`).
const REMOTE_SCHEMES: &[&str] = &["socket", "s3", "gs", "az", "http", "https", "sftp", "ssh", "ftp"];

/// Parse a store argument or a `backend_url`.
///
/// - A plain path, relative or absolute, is a local file; a colon in a file
///   name (`node:1.redb`) is not a scheme.
/// - `file:///abs/path` and `file://localhost/abs/path` name a local file.
///   The path is taken as written, `%` included: the Python plugin records
///   and reads its `backend_url` without percent-decoding, and a lock file
///   written by either tool must name the same file for both.
/// - `file://host/...` with any other host is refused: stores are local.
/// - `socket:host:port` is a backup server ([`SocketUrl::parse`]);
///   `s3://`, `gs://`, `az://` (and the other schemes of the `object_store`
///   crate) name object storage, kept as written.
/// - Any other scheme (`https://`, `sftp://`, an unknown `scheme://`) is
///   refused, naming the URL and the scheme, as not supported by this
///   version.
///
/// A path that is not UTF-8 cannot be a URL and is taken as a path.
///
/// ```
/// use cln_backup::destination::{parse, Location};
/// use std::path::{Path, PathBuf};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// // A colon in a file name is not a scheme.
/// assert_eq!(parse(Path::new("node:1.redb"))?, Location::File(PathBuf::from("node:1.redb")));
/// let path = dir.path().join("node.redb");
/// let url = format!("file://localhost{}", path.display());
/// assert_eq!(parse(Path::new(&url))?, Location::File(path));
/// assert!(parse(Path::new("file://backup-host/node.redb")).is_err());
/// assert!(matches!(parse(Path::new("socket:127.0.0.1:8700"))?, Location::Socket(u) if u.target.port == 8700));
/// assert_eq!(parse(Path::new("s3://bucket/node"))?, Location::Object("s3://bucket/node".into()));
/// let err = parse(Path::new("sftp://host/node.redb")).unwrap_err();
/// assert!(err.to_string().contains("the sftp: scheme is not supported"), "{err}");
/// # Ok(()) }
/// ```
pub fn parse(url_or_path: &Path) -> Result<Location> {
    let Some(s) = url_or_path.to_str() else {
        return Ok(Location::File(url_or_path.to_path_buf()));
    };
    let refuse = |what: String| Error::Destination { url: s.to_string(), what };
    if let Some(rest) = s.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            let host = path.split('/').next().unwrap_or_default();
            return Err(refuse(format!(
                "a file URL must name an absolute path on this machine{}, as in file:///var/backups/node.redb",
                if host.is_empty() { String::new() } else { format!(", not a file on the host {host}") }
            )));
        }
        return Ok(Location::File(PathBuf::from(path)));
    }
    if let Some(scheme) = url_scheme(s) {
        let lower = scheme.to_ascii_lowercase();
        if lower == "socket" {
            return Ok(Location::Socket(SocketUrl::parse(s)?));
        }
        if OBJECT_SCHEMES.contains(&lower.as_str()) && s[scheme.len()..].starts_with("://") {
            return Ok(Location::Object(s.to_string()));
        }
        return Err(refuse(format!(
            "the {scheme}: scheme is not supported by this version of cln-backup ({SUPPORTED})"
        )));
    }
    if s.is_empty() {
        return Err(Error::Destination { url: "\"\"".into(), what: "the store path is empty".into() });
    }
    Ok(Location::File(url_or_path.to_path_buf()))
}

/// The scheme of a URL-like argument other than `file:`: `scheme://...`
/// for any scheme, or `scheme:...` for the remote schemes we know of.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once(':')?;
    let well_formed = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !well_formed || scheme.eq_ignore_ascii_case("file") {
        return None;
    }
    (rest.starts_with("//") || REMOTE_SCHEMES.contains(&scheme.to_ascii_lowercase().as_str())).then_some(scheme)
}
