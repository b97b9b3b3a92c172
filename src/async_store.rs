//! A store for async applications (feature `tokio`): [`AsyncStore`].
//!
//! Owns running the store's blocking calls (a durable write waits for an
//! `fsync`, a restore replays a whole database) on tokio's blocking thread
//! pool, so that an async task awaiting them does not hold up the others
//! on its worker thread, and handing back results that own what they need
//! (a [`Reader`] holds no borrow of the store). The reads of the store's
//! state that never wait ([`Store::version`], [`Store::head`]) are called on
//! the shared [`Store`] directly. It must not add rules of its own: every
//! call is the [`Store`]'s (or [`lifecycle`]'s) with the same meaning.
//!
//! Writers must still be serialised with the application's own transaction:
//! hold one lock (a `tokio::sync::Mutex`) around the database transaction,
//! its report ([`AsyncStore::add_change`]) before `COMMIT`, and the
//! [`AsyncStore::rewind`] if the `COMMIT` fails. Two writers that race get
//! [`Error::ConcurrentWrite`].
//!
//! Dropping the future of a call does not cancel it: the call runs to its
//! end on the blocking pool. A change whose [`AsyncStore::add_change`] was
//! dropped unawaited may be stored; treat it as a failed `COMMIT` would be
//! treated (do not commit, [`AsyncStore::rewind`] or reconcile at the next
//! start).
//!
//! ```
//! use cln_backup::rusqlite::Connection;
//! use cln_backup::{AsyncStore, Model};
//! use tokio::sync::Mutex;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("app.sqlite3");
//! let store = AsyncStore::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true }).await?;
//! let app = Mutex::new(Connection::open(&db)?);
//! for sql in ["CREATE TABLE t (x)", "INSERT INTO t VALUES (1)"] {
//!     // One lock around the transaction, its report and its COMMIT.
//!     let conn = app.lock().await;
//!     conn.execute_batch("BEGIN")?;
//!     conn.execute_batch(sql)?;
//!     let version = store.store().version() + 1;
//!     store.add_change(version, vec![sql.into()]).await?;
//!     if conn.execute_batch("COMMIT").is_err() {
//!         store.rewind().await?;
//!     }
//! }
//! assert!(store.verify_against(Some(db)).await?.difference.is_none());
//! # Ok(()) }
//! ```

use crate::compact;
use crate::error::{Error, Result};
use crate::lifecycle::{self, Reconciled, Verified};
use crate::restore;
use crate::store::{Added, Reader, SnapshotInfo, Status, Store};
use crate::version::Seq;
use crate::Model;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A [`Store`] whose blocking calls run on tokio's blocking pool; cheap to
/// clone (every clone is the same open store).
///
/// ```
/// use cln_backup::{AsyncStore, Model};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cln_backup::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = AsyncStore::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true }).await?;
/// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
/// assert_eq!(store.store().version(), 1);
/// let reader = store.reader().await?;
/// assert_eq!(reader.head(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct AsyncStore {
    store: Arc<Store>,
}

/// Run `f` on the blocking pool; a panic in it goes on in the caller.
async fn blocking<T: Send + 'static>(path: &Path, f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the async runtime shut down before the call finished"),
        }),
    }
}

impl AsyncStore {
    /// Wrap an open store.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Store};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let store = AsyncStore::new(Store::create(dir.path().join("node.redb"))?);
    /// store.add_change(1, vec![
    ///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".into(),
    ///     "INSERT INTO vars VALUES ('data_version', 0)".into(),
    ///     cln_backup::version::bump_statement(1),
    /// ]).await?;
    /// assert_eq!(store.store().version(), 1);
    /// # Ok(()) }
    /// ```
    pub fn new(store: Store) -> AsyncStore {
        AsyncStore { store: Arc::new(store) }
    }

    /// Wrap a store shared with synchronous code.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model, Store};
    /// use std::sync::Arc;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let model = Model::Application { foreign_keys: true };
    /// let shared = Arc::new(Store::create_with(dir.path().join("app.redb"), model)?);
    /// let store = AsyncStore::from_arc(shared.clone());
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// // The synchronous side sees the same open store.
    /// assert_eq!(shared.version(), 1);
    /// # Ok(()) }
    /// ```
    pub fn from_arc(store: Arc<Store>) -> AsyncStore {
        AsyncStore { store }
    }

    /// [`Store::create_with`], on the blocking pool.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, ErrorKind, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.redb");
    /// let store = AsyncStore::create_with(&path, Model::Application { foreign_keys: false }).await?;
    /// assert_eq!(store.store().model(), Model::Application { foreign_keys: false });
    /// // An existing path is refused, never overwritten.
    /// let again = AsyncStore::create_with(&path, Model::Lightningd).await.unwrap_err();
    /// assert_eq!(again.kind(), ErrorKind::Refused);
    /// # Ok(()) }
    /// ```
    pub async fn create_with(path: impl Into<PathBuf>, model: Model) -> Result<AsyncStore> {
        let path = path.into();
        let p = path.clone();
        blocking(&path, move || Store::create_with(p, model)).await.map(AsyncStore::new)
    }

    /// [`Store::open`], on the blocking pool.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("app.redb");
    /// let store = AsyncStore::create_with(&path, Model::Application { foreign_keys: true }).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// drop(store);
    /// let store = AsyncStore::open(&path).await?;
    /// assert_eq!(store.store().version(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn open(path: impl Into<PathBuf>) -> Result<AsyncStore> {
        let path = path.into();
        let p = path.clone();
        blocking(&path, move || Store::open(p)).await.map(AsyncStore::new)
    }

    /// The store, for the calls that never wait ([`Store::version`],
    /// [`Store::head`], [`Store::model`]) and for synchronous code.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// // No await: these never wait for a write's sync.
    /// assert_eq!(store.store().version(), 1);
    /// assert_eq!(store.store().head(), 1);
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Store) -> Result<T> + Send + 'static) -> Result<T> {
        let store = self.store.clone();
        blocking(self.store.path(), move || f(&store)).await
    }

    /// [`Store::add_change`]: durable when it returns `Ok`.
    ///
    /// ```
    /// use cln_backup::{Added, AsyncStore, Error, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// let added = store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// assert_eq!(added, Added::New(1));
    /// // The same version again: another writer stored it first.
    /// let raced = store.add_change(1, vec!["INSERT INTO t VALUES (1)".into()]).await;
    /// assert!(matches!(raced, Err(Error::ConcurrentWrite { version: 1, head: 1 })));
    /// # Ok(()) }
    /// ```
    pub async fn add_change(&self, version: u32, statements: Vec<String>) -> Result<Added> {
        self.run(move |s| s.add_change(version, &statements)).await
    }

    /// [`Store::rewind`].
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// store.add_change(2, vec!["INSERT INTO t VALUES (1)".into()]).await?;
    /// // The COMMIT of version 2 failed: take it back out.
    /// assert_eq!(store.rewind().await?, 1);
    /// assert_eq!(store.store().version(), 1);
    /// # Ok(()) }
    /// ```
    pub async fn rewind(&self) -> Result<Seq> {
        self.run(|s| s.rewind()).await
    }

    /// [`Store::reconcile`] with the version the application last committed.
    ///
    /// ```
    /// use cln_backup::lifecycle::Reconciled;
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// store.add_change(2, vec!["INSERT INTO t VALUES (1)".into()]).await?;
    /// // The application's database last committed version 1.
    /// let found = store.reconcile(1).await?;
    /// assert_eq!(found, Reconciled::Rewound { removed: 2, version: 1 });
    /// assert!(found.may_continue());
    /// # Ok(()) }
    /// ```
    pub async fn reconcile(&self, committed: u32) -> Result<Reconciled> {
        self.run(move |s| s.reconcile(committed)).await
    }

    /// [`Store::status`].
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// let status = store.status().await?;
    /// assert_eq!((status.version, status.changes), (1, 1));
    /// assert!(status.snapshot.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<Status> {
        self.run(|s| s.status()).await
    }

    /// [`Store::reader`]: a view that owns what it reads; use it on the
    /// blocking pool too (`tokio::task::spawn_blocking`) for long reads.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// let reader = store.reader().await?;
    /// store.add_change(2, vec!["INSERT INTO t VALUES (1)".into()]).await?;
    /// // The view keeps the version it was taken at, and goes to another thread.
    /// let versions = tokio::task::spawn_blocking(move || -> cln_backup::Result<Vec<u32>> {
    ///     reader.changes(reader.head())?.map(|c| c.map(|c| c.data_version())).collect()
    /// }).await??;
    /// assert_eq!(versions, [1]);
    /// # Ok(()) }
    /// ```
    pub async fn reader(&self) -> Result<Reader> {
        self.run(|s| s.reader()).await
    }

    /// [`Store::add_snapshot_file`].
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// let image = dir.path().join("copy.sqlite3");
    /// Connection::open(&image)?.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1)")?;
    /// // The application's database is at its version 5.
    /// let info = store.add_snapshot_file(5, image).await?;
    /// assert_eq!((info.version, store.store().version()), (5, 5));
    /// # Ok(()) }
    /// ```
    pub async fn add_snapshot_file(&self, version: u32, image: PathBuf) -> Result<SnapshotInfo> {
        self.run(move |s| s.add_snapshot_file(version, &image)).await
    }

    /// [`compact::compact`].
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// for v in 2..=4 {
    ///     store.add_change(v, vec![format!("INSERT INTO t VALUES ({v})")]).await?;
    /// }
    /// let stats = store.compact(Default::default()).await?;
    /// // The last change stays a change; the ones before it are a snapshot.
    /// assert_eq!(stats.snapshot_version, Some(3));
    /// # Ok(()) }
    /// ```
    pub async fn compact(&self, opts: compact::Options) -> Result<compact::Stats> {
        self.run(move |s| compact::compact(s, &opts)).await
    }

    /// [`restore::restore_store`] to `dest`.
    ///
    /// ```
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// store.add_change(2, vec!["INSERT INTO t VALUES (0.1)".into()]).await?;
    /// let dest = dir.path().join("restored.sqlite3");
    /// let report = store.restore(dest.clone(), Default::default()).await?;
    /// assert_eq!((report.version, report.path), (2, dest));
    /// # Ok(()) }
    /// ```
    pub async fn restore(&self, dest: PathBuf, opts: restore::Options) -> Result<restore::Report> {
        self.run(move |s| restore::restore_store(s, &dest, &opts)).await
    }

    /// [`lifecycle::verify_against`] the database at `live` (or none).
    ///
    /// ```
    /// use cln_backup::rusqlite::Connection;
    /// use cln_backup::{AsyncStore, Model};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let model = Model::Application { foreign_keys: true };
    /// # let store = AsyncStore::create_with(dir.path().join("app.redb"), model).await?;
    /// let live = dir.path().join("app.sqlite3");
    /// let conn = Connection::open(&live)?;
    /// conn.execute_batch("CREATE TABLE t (x)")?;
    /// store.add_change(1, vec!["CREATE TABLE t (x)".into()]).await?;
    /// assert!(store.verify_against(Some(live.clone())).await?.difference.is_none());
    /// // A row the backup never received.
    /// conn.execute_batch("INSERT INTO t VALUES (1)")?;
    /// assert!(store.verify_against(Some(live)).await?.difference.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn verify_against(&self, live: Option<PathBuf>) -> Result<Verified> {
        self.run(move |s| lifecycle::verify_against(&s.reader()?, live.as_deref(), None)).await
    }
}
