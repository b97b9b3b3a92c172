//! The store's redb tables: their names, key and value types, and the keys of
//! the `meta` table.
//!
//! Owns nothing but the definitions, so that every module names a table the
//! same way and the list of a store's tables (used to tell a store from
//! another redb file) cannot drift from them. It must not open or write
//! tables.

use redb::TableDefinition;

/// `format` (u32) and the metadata envelope.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The tail of the change log: the newest records, one per store version (see [`super::log`]).
pub(crate) const CHANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("changes");
/// Change records moved out of the tail, until they are sealed (see [`super::log`]).
pub(crate) const RECENT: TableDefinition<u64, &[u8]> = TableDefinition::new("recent_changes");
/// Older change records, packed into segments keyed by their last version (see [`super::log`]).
pub(crate) const SEALED: TableDefinition<u64, &[u8]> = TableDefinition::new("sealed_changes");
/// The snapshots' headers, keyed by their store versions.
pub(crate) const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots");
/// The snapshots' images, in compressed chunks (see [`super::snapshot`]).
pub(crate) const CHUNKS: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("snapshot_chunks");

/// `meta` key of the store format, read before anything else.
pub(super) const KEY_FORMAT: &str = "format";
/// `meta` key of the metadata envelope.
pub(super) const KEY_META: &str = "meta";
/// `meta` key of the change model (absent: lightningd's), see [`crate::Model`].
pub(super) const KEY_MODEL: &str = "model";

/// The names of a store's tables (`recent_changes` since format 2).
pub(super) const TABLE_NAMES: [&str; 6] =
    ["meta", "changes", "recent_changes", "sealed_changes", "snapshots", "snapshot_chunks"];
