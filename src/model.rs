//! The change model of a store: what a change must look like when it is
//! stored and how it is replayed. Chosen when a store is created and
//! recorded in it, so that every later write, replay, compaction and
//! restore of the file follows the same rules.
//!
//! Owns the two models and every rule that differs between them:
//! - [`Model::Lightningd`], the default and the plugin's: a new version's
//!   last statement is lightningd's `data_version` bump to it, a repeated
//!   version is a report lightningd made outside a transaction (a lone
//!   `PRAGMA foreign_keys`), statements mangled by CLN's expansion bug
//!   before PR 4090 are mended at replay, foreign keys start on and follow
//!   the lone reports, and a replayed database must hold `vars.data_version`
//!   equal to the version replayed to;
//! - [`Model::Application`], for an application's own SQLite database: no
//!   statement is inspected or changed, the version counter and its check
//!   live in the store alone (each change carries the next version, nothing
//!   else), and foreign keys are enforced at replay as the application
//!   declared when it created the store.
//!
//! It must not touch storage or SQLite: the store records the model
//! (`Model::to_bytes`) and replay asks it what to do.
//!
//! ```
//! use cln_backup::{Error, Model, Store};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let node = Store::create(dir.path().join("node.redb"))?;
//! assert_eq!(node.model(), Model::Lightningd);
//! // lightningd's model: a new version ends with the bump to it.
//! let refused = node.add_change(1, &["CREATE TABLE t (x)"]);
//! assert!(matches!(refused, Err(Error::MissingBump { version: 1, .. })));
//! // An application's model: any statements, the version kept by the store.
//! let app = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
//! app.add_change(1, &["CREATE TABLE t (x)"])?;
//! assert_eq!(app.version(), 1);
//! # Ok(()) }
//! ```

use serde::Serialize;

/// How a store reads the changes given to it and replays them; see the
/// module documentation. Recorded in the store when it is created
/// ([`Store::create_with`](crate::Store::create_with)).
///
/// ```
/// use cln_backup::{Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let model = Model::Application { foreign_keys: false };
/// let store = Store::create_with(dir.path().join("wallet.redb"), model)?;
/// assert_eq!(store.model(), model);
/// // No bump statement, no `vars` table: the store keeps the version.
/// store.add_change(1, &["CREATE TABLE utxos (txid BLOB, vout INTEGER, value REAL)"])?;
/// assert_eq!(store.version(), 1);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum Model {
    /// lightningd's database, as its `db_write` hook reports it (the
    /// default, and what a store without a recorded model is).
    #[default]
    Lightningd,
    /// An application's own database. Statements are stored and replayed
    /// exactly as given.
    Application {
        /// Whether foreign keys are enforced at replay (`PRAGMA
        /// foreign_keys`), as the application runs its own connection.
        /// SQLite ignores that pragma inside a transaction, so a change
        /// cannot switch it.
        foreign_keys: bool,
    },
}

impl Model {
    /// The store format a store of this model is written in. An
    /// application's store is format 3, so that a build from before the
    /// models refuses it as too new rather than read it with lightningd's
    /// rules; lightningd's stays format 2, which those builds read.
    pub(crate) fn format(self) -> u32 {
        match self {
            Model::Lightningd => 2,
            Model::Application { .. } => 3,
        }
    }

    /// The model as the store records it: a kind byte and a flags byte.
    pub(crate) fn to_bytes(self) -> [u8; 2] {
        match self {
            Model::Lightningd => [0, 0],
            Model::Application { foreign_keys } => [1, u8::from(foreign_keys)],
        }
    }

    /// The model a store recorded; `None` for bytes no build wrote.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Model> {
        match bytes {
            [0, 0] => Some(Model::Lightningd),
            [1, fk @ (0 | 1)] => Some(Model::Application { foreign_keys: *fk == 1 }),
            _ => None,
        }
    }

    /// Whether a new version must end with lightningd's bump to it, and a
    /// repeated version is a report outside a transaction.
    pub(crate) fn is_lightningd(self) -> bool {
        matches!(self, Model::Lightningd)
    }

    /// Foreign keys at the start of a log that starts from an empty
    /// database: lightningd opens its database with them on; an
    /// application as it declared.
    pub(crate) fn foreign_keys_at_start(self) -> bool {
        match self {
            Model::Lightningd => true,
            Model::Application { foreign_keys } => foreign_keys,
        }
    }

    /// The model's name, as `info` shows it.
    ///
    /// ```
    /// use cln_backup::{Model, Store};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: false })?;
    /// assert_eq!(store.status()?.model.name(), "application");
    /// assert_eq!(Model::default().name(), "lightningd");
    /// # Ok(()) }
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Model::Lightningd => "lightningd",
            Model::Application { .. } => "application",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_reads_back_and_unknown_bytes_do_not() {
        for m in
            [Model::Lightningd, Model::Application { foreign_keys: true }, Model::Application { foreign_keys: false }]
        {
            assert_eq!(Model::from_bytes(&m.to_bytes()), Some(m));
        }
        assert_eq!(Model::from_bytes(&[1, 2]), None);
        assert_eq!(Model::from_bytes(&[2, 0]), None);
        assert_eq!(Model::from_bytes(&[0]), None);
    }
}
