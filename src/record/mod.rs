//! The stored record format: what one row of each store table holds.
//!
//! Owns the versioned envelopes (serde + postcard) for change records,
//! snapshot headers and store metadata, and the hash chain that links change
//! records: each record's hash covers the previous record's hash, its own
//! store version and its payload, so a missing, reordered or altered record
//! is detected on read. It must not open files or know about redb.
//!
//! Envelopes are enums whose variant index postcard writes first: a new
//! layout is a new variant, and old variants keep decoding.

pub mod codec;

use crate::version::Seq;
use serde::{Deserialize, Serialize};

/// The newest store format this build reads.
///
/// 2: change records may use statement codec 2, and the log has a
/// `recent_changes` table between its tail and its sealed segments. A
/// format 1 store reads as before and is marked 2 when opened for writing.
///
/// 3: the store records a [`Model`](crate::Model) other than lightningd's
/// (`meta` key `model`). Only such stores are format 3; lightningd's stay
/// format 2, which older builds read.
pub const FORMAT_VERSION: u32 = 3;

/// A chain hash (BLAKE3).
pub type Hash = [u8; 32];

/// `time_ms` of a transaction whose source recorded no time: a `.dbak`
/// file carries none, so an import cannot know when lightningd made its
/// changes, and says so rather than stamp them with the import's time.
///
/// ```
/// use cln_backup::legacy::{self, DbakWriter};
/// use cln_backup::version::bump_statement;
/// use cln_backup::{Store, TIME_NOT_RECORDED};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let dbak = dir.path().join("backup.dbak");
/// let mut w = DbakWriter::new(std::fs::File::create(&dbak)?, &dbak)?;
/// w.add_transaction(1, &[
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
///     "INSERT INTO vars VALUES ('data_version', 0)",
///     bump_statement(1).as_str(),
/// ])?;
/// w.finish()?;
/// let path = dir.path().join("node.redb");
/// legacy::import_new(&dbak, &path)?;
/// // A `.dbak` file records no times: the imported change says so.
/// let store = Store::open(&path)?;
/// assert_eq!(store.reader()?.time_of(1)?, TIME_NOT_RECORDED);
/// # Ok(()) }
/// ```
pub const TIME_NOT_RECORDED: u64 = 0;

/// One transaction as lightningd reported it, with the time it was stored.
///
/// ```
/// use cln_backup::{now_ms, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// let before = now_ms();
/// store.add_change(1, &["CREATE TABLE t (x)", "INSERT INTO t VALUES (1)"])?;
/// let change = store.reader()?.changes(1)?.next().expect("version 1")?;
/// let txn = &change.transactions[0];
/// assert_eq!(txn.statements, ["CREATE TABLE t (x)", "INSERT INTO t VALUES (1)"]);
/// assert!(txn.time_ms >= before && txn.time_ms <= now_ms());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    /// Milliseconds since the Unix epoch when the store took it, or
    /// [`TIME_NOT_RECORDED`].
    pub time_ms: u64,
    /// The statements, in order, exactly as lightningd sent them.
    pub statements: Vec<String>,
}

/// A decoded change record: every transaction reported with one `data_version`.
///
/// Usually one; lone `PRAGMA foreign_keys` reports that repeat the version follow
/// the transaction they came after, in order.
///
/// ```
/// use cln_backup::version::bump_statement;
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// store.add_change(1, &[
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
///     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
///     bump_statement(1),
/// ])?;
/// // lightningd switched foreign keys outside a transaction: a lone report
/// // that repeats the version.
/// store.add_change(1, &["PRAGMA foreign_keys = OFF"])?;
/// let changes: Vec<_> = store.reader()?.changes(1)?.collect::<Result<_, _>>()?;
/// assert_eq!(changes.len(), 1);
/// assert_eq!(changes[0].transactions.len(), 2);
/// assert_eq!(changes[0].transactions[1].statements, ["PRAGMA foreign_keys = OFF"]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Store version (extended across u32 wraps).
    pub seq: Seq,
    /// The transactions, in the order lightningd reported them.
    pub transactions: Vec<Transaction>,
}

impl Change {
    /// lightningd's `data_version` for this change.
    ///
    /// ```
    /// use cln_backup::Change;
    ///
    /// // The change after the first wrap of lightningd's u32 to 5.
    /// let change = Change { seq: (1 << 32) | 5, transactions: vec![] };
    /// assert_eq!(change.data_version(), 5);
    /// ```
    pub fn data_version(&self) -> u32 {
        crate::version::data_version(self.seq)
    }
}

/// One stored transaction: statements encoded by [`codec`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredPart {
    pub time_ms: u64,
    pub statements: Vec<u8>,
}

#[derive(Deserialize)]
enum ChangeEnvelope {
    V1 { hash: Hash, parts: Vec<StoredPart> },
}

/// [`ChangeEnvelope`] borrowed for writing: the same variants and fields, so
/// the same bytes, without copying the parts on the write path.
#[derive(Serialize)]
enum ChangeEnvelopeRef<'a> {
    V1 { hash: &'a Hash, parts: &'a [StoredPart] },
}

/// A change record as stored: encoded parts plus the chain hash.
#[derive(Clone, Debug)]
pub struct StoredChange {
    pub hash: Hash,
    pub parts: Vec<StoredPart>,
}

/// Hash of a change record given the hash it chains from.
pub fn chain_hash(prev: &Hash, seq: Seq, parts: &[StoredPart]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"cln-backup/change/v1");
    h.update(prev);
    h.update(&seq.to_le_bytes());
    for p in parts {
        h.update(&p.time_ms.to_le_bytes());
        h.update(&(p.statements.len() as u64).to_le_bytes());
        h.update(&p.statements);
    }
    *h.finalize().as_bytes()
}

/// The hash a store's first record chains from.
pub fn genesis_hash(store_id: &[u8; 16]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"cln-backup/genesis/v1");
    h.update(store_id);
    *h.finalize().as_bytes()
}

/// The hash the first change after a snapshot chains from: it binds the
/// snapshot's content to the chain that led to it.
pub fn snapshot_anchor(prev: &Hash, seq: Seq, content_hash: &Hash) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"cln-backup/snapshot/v1");
    h.update(prev);
    h.update(&seq.to_le_bytes());
    h.update(content_hash);
    *h.finalize().as_bytes()
}

impl StoredChange {
    /// Build a record chained from `prev`.
    pub fn new(prev: &Hash, seq: Seq, parts: Vec<StoredPart>) -> Self {
        StoredChange { hash: chain_hash(prev, seq, &parts), parts }
    }

    /// Serialise into the versioned envelope.
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let env = ChangeEnvelopeRef::V1 { hash: &self.hash, parts: &self.parts };
        postcard::to_stdvec(&env).map_err(|e| format!("change record does not encode: {e}"))
    }

    /// Parse the envelope. Does not check the chain; see [`StoredChange::check`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        match postcard::from_bytes::<ChangeEnvelope>(bytes) {
            Ok(ChangeEnvelope::V1 { hash, parts }) => Ok(StoredChange { hash, parts }),
            Err(e) => Err(format!("change record does not decode: {e}")),
        }
    }

    /// Check that this record, stored under `seq`, chains from `prev`.
    pub fn check(&self, prev: &Hash, seq: Seq) -> bool {
        chain_hash(prev, seq, &self.parts) == self.hash
    }

    /// Decode the statements.
    pub fn decode(&self, seq: Seq) -> Result<Change, codec::DecodeError> {
        let transactions = self
            .parts
            .iter()
            .map(|p| Ok(Transaction { time_ms: p.time_ms, statements: codec::decode(&p.statements)? }))
            .collect::<Result<_, codec::DecodeError>>()?;
        Ok(Change { seq, transactions })
    }
}

/// A snapshot's header: where its chunks are and how to check them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// Bytes of the uncompressed SQLite image.
    pub size: u64,
    /// Number of chunks, keyed `(seq, 0..chunks)`.
    pub chunks: u32,
    /// Bytes stored (compressed), for status.
    pub stored_bytes: u64,
    /// BLAKE3 of the uncompressed image.
    pub content_hash: Hash,
    /// The hash the first change after this snapshot chains from.
    pub anchor: Hash,
    /// Whether replay continues with foreign keys enforced (false only when a
    /// compaction point fell between lone `PRAGMA foreign_keys = OFF` and `ON`).
    pub foreign_keys: bool,
    /// When the snapshot was stored, in milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// When the store received the version the image holds (its change
    /// record's time), or [`TIME_NOT_RECORDED`]: what `--to-time` compares.
    /// A snapshot offered whole (`init`, an import) has the time it was stored.
    pub version_time_ms: u64,
}

/// The first header layout, without `version_time_ms`.
#[derive(Serialize, Deserialize)]
struct SnapshotHeaderV1 {
    size: u64,
    chunks: u32,
    stored_bytes: u64,
    content_hash: Hash,
    anchor: Hash,
    foreign_keys: bool,
    created_ms: u64,
}

#[derive(Deserialize)]
enum SnapshotEnvelope {
    V1(SnapshotHeaderV1),
    V2(SnapshotHeader),
}

/// [`SnapshotEnvelope::V2`] borrowed for writing: the same bytes (variant
/// index 1, then the header), without a variant this build never writes.
struct SnapshotV2Ref<'a>(&'a SnapshotHeader);

impl Serialize for SnapshotV2Ref<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_newtype_variant("SnapshotEnvelope", 1, "V2", self.0)
    }
}

impl SnapshotHeader {
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(&SnapshotV2Ref(self)).map_err(|e| format!("snapshot header does not encode: {e}"))
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        match postcard::from_bytes::<SnapshotEnvelope>(bytes) {
            Ok(SnapshotEnvelope::V2(h)) => Ok(h),
            // Written before headers kept the version's time: the time the
            // snapshot was stored is the closest known bound.
            Ok(SnapshotEnvelope::V1(h)) => Ok(SnapshotHeader {
                size: h.size,
                chunks: h.chunks,
                stored_bytes: h.stored_bytes,
                content_hash: h.content_hash,
                anchor: h.anchor,
                foreign_keys: h.foreign_keys,
                created_ms: h.created_ms,
                version_time_ms: h.created_ms,
            }),
            Err(e) => Err(format!("snapshot header does not decode: {e}")),
        }
    }
}

/// What the last compaction did, kept for status.
///
/// ```
/// use cln_backup::{compact, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// assert!(store.status()?.last_compaction.is_none());
/// store.add_change(1, &["CREATE TABLE t (x)"])?;
/// for v in 2..=4 {
///     store.add_change(v, &[format!("INSERT INTO t VALUES ({v})")])?;
/// }
/// compact::compact(&store, &Default::default())?;
/// let last = store.status()?.last_compaction.expect("a compaction ran");
/// assert_eq!(last.snapshot_seq, 3);
/// assert_eq!((last.changes_before, last.changes_after), (4, 1));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CompactionRecord {
    /// When it was published, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The store version of the snapshot it made.
    pub snapshot_seq: Seq,
    /// Change records held before it.
    pub changes_before: u64,
    /// Change records held after it.
    pub changes_after: u64,
    /// How long it took, in milliseconds.
    pub duration_ms: u64,
}

/// Store-wide metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Random identity of this store, seeds the hash chain.
    pub store_id: [u8; 16],
    pub created_ms: u64,
    /// The store version a rewind went back to; a second rewind is refused while
    /// the head is still there.
    pub rewound_at: Option<Seq>,
    pub last_compaction: Option<CompactionRecord>,
}

#[derive(Serialize, Deserialize)]
enum MetaEnvelope {
    V1(Meta),
}

impl Meta {
    pub fn to_bytes(&self) -> Result<Vec<u8>, String> {
        postcard::to_stdvec(&MetaEnvelope::V1(self.clone())).map_err(|e| format!("metadata does not encode: {e}"))
    }
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        match postcard::from_bytes::<MetaEnvelope>(bytes) {
            Ok(MetaEnvelope::V1(m)) => Ok(m),
            Err(e) => Err(format!("metadata does not decode: {e}")),
        }
    }
}

/// A record time (milliseconds since the Unix epoch) as ISO 8601 UTC,
/// `2023-11-14T22:13:20Z`, with `.mmm` milliseconds when `millis` is set.
///
/// ```
/// use cln_backup::utc_iso8601;
///
/// assert_eq!(utc_iso8601(1_700_000_000_250, true), "2023-11-14T22:13:20.250Z");
/// assert_eq!(utc_iso8601(1_700_000_000_250, false), "2023-11-14T22:13:20Z");
/// assert_eq!(utc_iso8601(0, false), "1970-01-01T00:00:00Z");
/// ```
pub fn utc_iso8601(ms: u64, millis: bool) -> String {
    let secs = ms / 1000;
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let (h, min, s) = (rem / 3600, rem / 60 % 60, rem % 60);
    if millis {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}.{:03}Z", ms % 1000)
    } else {
        format!("{y:04}-{m:02}-{d:02}T{h:02}:{min:02}:{s:02}Z")
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Milliseconds since the Unix epoch.
///
/// ```
/// use cln_backup::{now_ms, Model, Store};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let before = now_ms();
/// let store = Store::create_with(dir.path().join("app.redb"), Model::Application { foreign_keys: true })?;
/// let created = store.status()?.created_ms;
/// assert!(before <= created && created <= now_ms());
/// # Ok(()) }
/// ```
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_records_round_trip_and_check_their_chain() {
        let parts = vec![StoredPart { time_ms: 7, statements: codec::encode(&["SELECT 1"]).unwrap() }];
        let rec = StoredChange::new(&[3; 32], 42, parts);
        let back = StoredChange::from_bytes(&rec.to_bytes().unwrap()).unwrap();
        assert_eq!(back.hash, rec.hash);
        assert!(back.check(&[3; 32], 42));
        assert!(!back.check(&[4; 32], 42), "another predecessor");
        assert!(!back.check(&[3; 32], 43), "another version");
        assert_eq!(back.decode(42).unwrap().transactions[0].statements, vec!["SELECT 1"]);
    }

    #[test]
    fn snapshot_headers_round_trip_and_the_first_layout_still_reads() {
        let h = SnapshotHeader {
            size: 10,
            chunks: 1,
            stored_bytes: 5,
            content_hash: [1; 32],
            anchor: [2; 32],
            foreign_keys: false,
            created_ms: 1_700_000_000_000,
            version_time_ms: 1_699_999_999_000,
        };
        assert_eq!(SnapshotHeader::from_bytes(&h.to_bytes().unwrap()).unwrap(), h);
        #[derive(Serialize)]
        enum Old {
            V1(SnapshotHeaderV1),
        }
        let old = Old::V1(SnapshotHeaderV1 {
            size: 10,
            chunks: 1,
            stored_bytes: 5,
            content_hash: [1; 32],
            anchor: [2; 32],
            foreign_keys: false,
            created_ms: 1_700_000_000_000,
        });
        let back = SnapshotHeader::from_bytes(&postcard::to_stdvec(&old).unwrap()).unwrap();
        assert_eq!(back, SnapshotHeader { version_time_ms: 1_700_000_000_000, ..h });
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_iso8601(0, true), "1970-01-01T00:00:00.000Z");
        // A leap day in a century leap year.
        assert_eq!(utc_iso8601(951_827_696_789, true), "2000-02-29T12:34:56.789Z");
        assert_eq!(utc_iso8601(1_709_559_264_000, true), "2024-03-04T13:34:24.000Z");
        // 2100 is not a leap year.
        assert_eq!(utc_iso8601(4_107_542_400_000, true), "2100-03-01T00:00:00.000Z");
        assert_eq!(utc_iso8601(1_700_000_000_999, false), "2023-11-14T22:13:20Z");
        assert_eq!(utc_iso8601(4_107_542_399_000, false), "2100-02-28T23:59:59Z");
    }
}
