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
    pub fn new(store: Store) -> AsyncStore {
        AsyncStore { store: Arc::new(store) }
    }

    /// Wrap a store shared with synchronous code.
    pub fn from_arc(store: Arc<Store>) -> AsyncStore {
        AsyncStore { store }
    }

    /// [`Store::create_with`], on the blocking pool.
    pub async fn create_with(path: impl Into<PathBuf>, model: Model) -> Result<AsyncStore> {
        let path = path.into();
        let p = path.clone();
        blocking(&path, move || Store::create_with(p, model)).await.map(AsyncStore::new)
    }

    /// [`Store::open`], on the blocking pool.
    pub async fn open(path: impl Into<PathBuf>) -> Result<AsyncStore> {
        let path = path.into();
        let p = path.clone();
        blocking(&path, move || Store::open(p)).await.map(AsyncStore::new)
    }

    /// The store, for the calls that never wait ([`Store::version`],
    /// [`Store::head`], [`Store::model`]) and for synchronous code.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce(&Store) -> Result<T> + Send + 'static) -> Result<T> {
        let store = self.store.clone();
        blocking(self.store.path(), move || f(&store)).await
    }

    /// [`Store::add_change`]: durable when it returns `Ok`.
    pub async fn add_change(&self, version: u32, statements: Vec<String>) -> Result<Added> {
        self.run(move |s| s.add_change(version, &statements)).await
    }

    /// [`Store::rewind`].
    pub async fn rewind(&self) -> Result<Seq> {
        self.run(|s| s.rewind()).await
    }

    /// [`Store::reconcile`] with the version the application last committed.
    pub async fn reconcile(&self, committed: u32) -> Result<Reconciled> {
        self.run(move |s| s.reconcile(committed)).await
    }

    /// [`Store::status`].
    pub async fn status(&self) -> Result<Status> {
        self.run(|s| s.status()).await
    }

    /// [`Store::reader`]: a view that owns what it reads; use it on the
    /// blocking pool too (`tokio::task::spawn_blocking`) for long reads.
    pub async fn reader(&self) -> Result<Reader> {
        self.run(|s| s.reader()).await
    }

    /// [`Store::add_snapshot_file`].
    pub async fn add_snapshot_file(&self, version: u32, image: PathBuf) -> Result<SnapshotInfo> {
        self.run(move |s| s.add_snapshot_file(version, &image)).await
    }

    /// [`compact::compact`].
    pub async fn compact(&self, opts: compact::Options) -> Result<compact::Stats> {
        self.run(move |s| compact::compact(s, &opts)).await
    }

    /// [`restore::restore_store`] to `dest`.
    pub async fn restore(&self, dest: PathBuf, opts: restore::Options) -> Result<restore::Report> {
        self.run(move |s| restore::restore_store(s, &dest, &opts)).await
    }

    /// [`lifecycle::verify_against`] the database at `live` (or none).
    pub async fn verify_against(&self, live: Option<PathBuf>) -> Result<Verified> {
        self.run(move |s| lifecycle::verify_against(&s.reader()?, live.as_deref(), None)).await
    }
}
