//! The local destination: a redb store on this machine's file system.
//!
//! Owns nothing but the mapping of [`Destination`] onto [`Store`]: every
//! rule (versions, durability, rewinds) is the store's. It must not add
//! checks of its own, so that the plugin and a direct caller of the store
//! see the same answers.

use super::{Destination, Head, RestoreSource};
use crate::store::{Added, SnapshotInfo, Store};
use crate::version::Seq;
use crate::Result;
use std::io::{Read, Write};

/// A [`Store`] as a [`Destination`].
///
/// ```
/// use cln_backup::destination::{Destination, FileDestination};
/// use cln_backup::version::bump_statement;
/// use cln_backup::{Added, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let dest: Box<dyn Destination> = Box::new(FileDestination::new(Store::create(dir.path().join("node.redb"))?));
/// let added = dest.add_change(1, &[
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
///     "INSERT INTO vars VALUES ('data_version', 0)",
///     &bump_statement(1),
/// ])?;
/// assert_eq!(added, Added::New(1));
/// // The store's rules, unchanged: a gap is refused.
/// assert!(dest.add_change(3, &["INSERT INTO vars VALUES ('a', 1)", &bump_statement(3)]).is_err());
/// assert_eq!(dest.head()?.version, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct FileDestination {
    store: Store,
    location: String,
}

impl FileDestination {
    /// Serve `store`; messages name it by its path.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("node.redb");
    /// let dest = FileDestination::new(Store::create(&path)?);
    /// assert_eq!(dest.location(), path.display().to_string());
    /// # Ok(()) }
    /// ```
    pub fn new(store: Store) -> FileDestination {
        let location = store.path().display().to_string();
        FileDestination { store, location }
    }

    /// The store itself.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let dest = FileDestination::new(Store::create(dir.path().join("node.redb"))?);
    /// dest.add_change(1, &["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", &bump_statement(1)])?;
    /// // What went through the destination is in the store.
    /// assert_eq!(dest.store().version(), 1);
    /// assert_eq!(dest.store().status()?.changes, 1);
    /// # Ok(()) }
    /// ```
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Give the store back.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::version::bump_statement;
    /// use cln_backup::Store;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// let dest = FileDestination::new(Store::create(dir.path().join("node.redb"))?);
    /// dest.add_change(1, &["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", &bump_statement(1)])?;
    /// let store = dest.into_store();
    /// assert_eq!(store.version(), 1);
    /// assert!(!store.is_read_only());
    /// # Ok(()) }
    /// ```
    pub fn into_store(self) -> Store {
        self.store
    }
}

impl Destination for FileDestination {
    fn location(&self) -> &str {
        &self.location
    }

    fn head(&self) -> Result<Head> {
        let status = self.store.status()?;
        Ok(Head { version: status.version, prev_version: status.prev_version, rewind_allowed: status.rewind_allowed })
    }

    fn add_change(&self, version: u32, statements: &[&str]) -> Result<Added> {
        self.store.add_change(version, statements)
    }

    fn rewind(&self) -> Result<Seq> {
        self.store.rewind()
    }

    fn add_snapshot(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        self.store.add_snapshot(version, image)
    }

    fn restore_source(&self, to_version: Option<u64>, image: &mut dyn Write) -> Result<RestoreSource> {
        let reader = self.store.reader()?;
        let upto = reader.target(to_version)?;
        reader.copy_snapshot_for(upto, image)?;
        let model = reader.model();
        let foreign_keys = crate::replay::foreign_keys_at_start(model, reader.snapshot_for(upto).as_ref());
        let changes = reader.changes(upto)?;
        Ok(RestoreSource { upto, foreign_keys, model, changes: Box::new(changes) })
    }

    fn local_store(&self) -> Option<&Store> {
        Some(&self.store)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::destination::{open, Access};
    use crate::version::bump_statement;

    fn tx(v: u32) -> Vec<String> {
        vec![format!("INSERT INTO t VALUES ({v})"), bump_statement(v)]
    }

    #[test]
    fn the_trait_reports_what_the_store_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::create(&path).unwrap());
        let dest = open(format!("file://{}", path.display()), Access::Write).unwrap();
        assert_eq!(dest.location(), path.display().to_string());
        assert_eq!(dest.head().unwrap(), Head { version: 0, prev_version: None, rewind_allowed: false });
        for v in 1..=3 {
            let t = tx(v);
            let parts: Vec<&str> = t.iter().map(String::as_str).collect();
            assert_eq!(dest.add_change(v, &parts).unwrap(), Added::New(u64::from(v)));
        }
        assert_eq!(dest.head().unwrap(), Head { version: 3, prev_version: Some(2), rewind_allowed: true });
        // A gap is the store's refusal, unchanged.
        let t = tx(5);
        let parts: Vec<&str> = t.iter().map(String::as_str).collect();
        assert!(matches!(dest.add_change(5, &parts), Err(crate::Error::Gap { .. })));
        assert_eq!(dest.rewind().unwrap(), 2);
        assert_eq!(dest.head().unwrap().version, 2);
        assert!(!dest.head().unwrap().rewind_allowed);
        assert_eq!(dest.local_store().unwrap().version(), 2);
        drop(dest);
        // Read-only opens refuse writes, as the store does.
        let reader = open(&path, Access::ReadOnly).unwrap();
        let t = tx(3);
        let parts: Vec<&str> = t.iter().map(String::as_str).collect();
        assert!(matches!(reader.add_change(3, &parts), Err(crate::Error::ReadOnly { .. })));
        assert_eq!(reader.head().unwrap().version, 2);
    }
}
