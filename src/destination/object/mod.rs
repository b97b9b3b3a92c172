//! Object storage (`s3://bucket/prefix`, and the other schemes of the
//! `object_store` crate) as a [`Destination`]: a replica of a local store.
//!
//! Owns the layout of objects under a prefix, the writer's lease, and the
//! reading of a copy back (head, restore, summary). It must not be the only
//! copy: the local store stays the primary. Every object is sealed
//! ([`crate::encryption`]) under its name relative to the prefix, so a copy
//! moved to another bucket or prefix still opens.
//!
//! Layout under the prefix (names carry versions, epochs and the writer's
//! store id, nothing else; all numbers are fixed-width hexadecimal, so a
//! listing sorts as they were written):
//!
//! - `lease`: the writer's lease (its store id, host, start time and a random
//!   token of this start).
//! - `manifests/<number>-<owner>`: immutable, numbered; the reader takes the
//!   highest. Each records the base snapshot, the epochs (where each
//!   starts), the head as of publication and a pending rewind. Published
//!   when a writer starts, on each rewind and on each snapshot, each time
//!   after checking the lease still holds this writer's token.
//! - `segments/<epoch>-<n>-<first>-<last>-<owner>`: immutable changes, one
//!   or many consecutive versions (`first` to `last`), compressed and
//!   sealed, written with one create-only PUT. `<n>` counts the segments of
//!   an epoch, so a missing one in the middle is seen. An epoch is new at
//!   every writer start and every rewind; a change of an epoch counts only
//!   below the start of every later epoch, so a rewound change (and a
//!   replacement at the same version) need no deletion.
//! - `snapshots/<version>-<epoch>-<owner>`: a SQLite image, compressed and
//!   sealed in chunks, sent as a multipart upload; it counts once a
//!   manifest names it. After a new snapshot's manifest is published, the
//!   objects neither it nor the previous manifest needs are removed (the
//!   previous snapshot stays, so a reader that took the previous manifest
//!   still finds all it names).
//!
//! Decisions: a snapshot is accepted at the head, into an empty copy, or
//! ahead of the head (a replica that fell behind a local store that
//! compacted past it restarts from that snapshot), never behind it. The
//! lease does not rest on conditional writes alone (Garage
//! 2.5 overwrites on `If-None-Match: *`, where S3 and MinIO refuse): the
//! writer writes it, reads it back and compares its token, and checks it
//! again before every manifest. A lease of the same store id (the same node
//! restarting) is taken over; another's is refused. A writer with a store
//! id is required: without one, the node restarting could not be told from
//! another node. Changes are listed before manifests, so every epoch of a
//! listed segment is in the manifest read after. A failed create-only PUT
//! keeps the segment's name for the retry, and a retry that finds the name
//! taken reads it back and accepts it only if it holds the same change.

mod layout;
mod remote;

use super::{Access, Destination, Head, RestoreSource};
use crate::encryption::{self, Key, Opener, Sealer};
use crate::store::{Added, SnapshotInfo, Store};
use crate::version::{self, data_version, Seq};
use crate::{now_ms, Change, Error, Result};
use layout::{
    hex, EpochStart, Lease, Manifest, ManifestName, Merger, SegChange, SegPart, SegmentName, SnapshotRef,
    LAYOUT_FORMAT, LEASE, MANIFESTS, SEGMENTS, SNAPSHOTS,
};
use remote::{Created, Remote};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

/// How to open an object-storage destination.
///
/// ```
/// use cln_backup::destination::{Access, Destination, ObjectDestination, ObjectOptions};
/// use cln_backup::encryption::Key;
/// use cln_backup::Store;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// let mut options = ObjectOptions::new(Access::Write, Key::from_bytes([7; 32]));
/// options.owner = Some(store.id()); // the lease names the local store
/// // `memory:///`, the object_store crate's in-memory store, stands in for a bucket.
/// let remote = ObjectDestination::open("memory:///node", &options)?;
/// assert_eq!(remote.head()?.version, 0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct ObjectOptions {
    /// The writer (the plugin, `init`) or a reader (`restore`, `info`, `verify`).
    pub access: Access,
    /// The key objects are sealed with.
    pub key: Key,
    /// A file of `AWS_*=value` lines read before the environment, if any:
    /// its values win over the environment's.
    pub credentials_file: Option<PathBuf>,
    /// The local store's id: the lease's owner. Required to write; the same
    /// id takes over its own lease (the node restarting), another is refused.
    pub owner: Option<[u8; 16]>,
}

impl ObjectOptions {
    /// Options for `access` with `key`, no credentials file and no owner.
    ///
    /// ```
    /// use cln_backup::destination::{Access, ObjectDestination, ObjectOptions};
    /// use cln_backup::encryption::Key;
    ///
    /// let options = ObjectOptions::new(Access::Write, Key::from_bytes([7; 32]));
    /// assert!(options.owner.is_none() && options.credentials_file.is_none());
    /// // Without an owner, writing is refused: nothing would hold the lease.
    /// let err = ObjectDestination::open("memory:///node", &options).unwrap_err();
    /// assert!(err.to_string().contains("store's id"), "{err}");
    /// ```
    pub fn new(access: Access, key: Key) -> ObjectOptions {
        ObjectOptions { access, key, credentials_file: None, owner: None }
    }
}

/// What `info` shows of a remote copy ([`ObjectDestination::describe`]).
///
/// ```
/// use cln_backup::destination::{replica, Access, ObjectDestination, ObjectOptions};
/// use cln_backup::encryption::Key;
/// use cln_backup::Store;
/// # use cln_backup::version::bump_statement;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// # for v in 2..=3 {
/// #     store.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
/// # }
/// let mut options = ObjectOptions::new(Access::Write, Key::from_bytes([7; 32]));
/// options.owner = Some(store.id());
/// // `memory:///`, the object_store crate's in-memory store, stands in for a bucket.
/// let remote = ObjectDestination::open("memory:///node", &options)?;
/// replica::catch_up(&store, &remote)?;
/// let summary = remote.describe()?;
/// assert_eq!((summary.url.as_str(), summary.version), ("memory:///node", 3));
/// assert_eq!((summary.snapshot, summary.segments), (None, 1), "one catch-up, one segment");
/// assert!(summary.stored_bytes > 0 && summary.lease.is_some());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RemoteSummary {
    /// The prefix, as a URL.
    pub url: String,
    /// lightningd's `data_version` at the head.
    pub version: u32,
    /// The store version at the head.
    pub seq: Seq,
    /// Lowest and highest store version a restore can produce.
    pub restorable: (Seq, Seq),
    /// The base snapshot's version, image bytes and stored bytes.
    pub snapshot: Option<(u32, u64, u64)>,
    /// Segments whose changes count.
    pub segments: usize,
    /// Bytes of every object under the prefix.
    pub stored_bytes: u64,
    /// The manifest read (its number).
    pub manifest: Option<u64>,
    /// The lease holder: host and store id, and since when (UTC).
    pub lease: Option<String>,
}

/// A prefix in an object store.
///
/// ```
/// use cln_backup::destination::{replica, Access, Destination, ObjectDestination, ObjectOptions};
/// use cln_backup::encryption::Key;
/// use cln_backup::Store;
/// # use cln_backup::version::bump_statement;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// let mut options = ObjectOptions::new(Access::Write, Key::from_bytes([7; 32]));
/// options.owner = Some(store.id());
/// // `memory:///`, the object_store crate's in-memory store, stands in for a bucket.
/// let remote = ObjectDestination::open("memory:///node", &options)?;
/// // A replica of the local store: sent what it lacks, then each new change.
/// replica::catch_up(&store, &remote)?;
/// remote.add_change(2, &["INSERT INTO vars VALUES ('a', 1)", &bump_statement(2)])?;
/// assert_eq!(remote.head()?.version, 2);
/// // Read back as a restore reads it.
/// let source = remote.restore_source(None, &mut std::io::sink())?;
/// assert_eq!(source.changes.count(), 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct ObjectDestination {
    url: String,
    shared: Arc<Shared>,
    writer: Option<Mutex<Writer>>,
}

/// What the destination and its restore iterators share.
#[derive(Debug)]
struct Shared {
    remote: Remote,
    key: Key,
}

/// The last change, as far as rewinds care.
#[derive(Clone, Copy, Debug)]
struct Last {
    seq: Seq,
    parts: usize,
}

/// The one writer's state: the head and where the next segment goes.
#[derive(Clone, Debug)]
struct Writer {
    owner: String,
    token: String,
    manifest: Manifest,
    epoch: u64,
    next_n: u64,
    head: Seq,
    last: Option<Last>,
    rewound_at: Option<Seq>,
}

impl Writer {
    fn base(&self) -> Seq {
        self.manifest.base()
    }

    fn rewind_refusal(&self) -> Option<&'static str> {
        let Some(last) = &self.last else {
            return Some("there is no change after the snapshot to remove");
        };
        if self.rewound_at == Some(self.head) {
            return Some("the last change was already rewound; only one rewind in a row is allowed");
        }
        if last.seq <= self.base() {
            return Some("the last record only holds repeated-version reports");
        }
        if last.parts > 1 {
            return Some("the last version holds repeated-version reports, so lightningd had committed it");
        }
        None
    }

    /// Apply the change-log rules to one transaction: the version it gets,
    /// what `add_change` answers, and the state after it.
    fn plan(&mut self, version: u32, statements: &[&str]) -> Result<(Seq, Added)> {
        if statements.is_empty() {
            return Err(Error::EmptyChange { version });
        }
        let head = self.head;
        let next = version::next(head);
        if version == data_version(next) {
            let expected_from = version.wrapping_sub(1);
            if version::transaction_bump(statements) != Some(expected_from) {
                let last = statements.last().copied().unwrap_or_default();
                return Err(Error::MissingBump { version, expected_from, last: last.chars().take(160).collect() });
            }
            self.head = next;
            self.last = Some(Last { seq: next, parts: 1 });
            Ok((next, Added::New(next)))
        } else if version == data_version(head) {
            if version::transaction_bump(statements).is_some() {
                return Err(Error::RepeatWithBump { version });
            }
            self.last = Some(match self.last {
                Some(l) if l.seq == head => Last { seq: head, parts: l.parts + 1 },
                _ => Last { seq: head, parts: 1 },
            });
            Ok((head, Added::Repeated(head)))
        } else {
            Err(Error::Gap { head: data_version(head), expected: data_version(next), got: version })
        }
    }
}

/// Segments shipped by [`Destination::add_changes`] close past this many
/// bytes of statements.
const SEGMENT_TARGET: usize = 4 * 1024 * 1024;

/// Segments a restore fetches ahead of the one it decodes: round trips
/// overlap, and at most this many segments are held.
const PREFETCH: usize = 16;

/// A reader's view of the prefix: what was listed and the manifest read.
#[derive(Debug)]
struct View {
    manifest: Option<(ManifestName, Manifest)>,
    manifests: Vec<ManifestName>,
    /// Every listed segment, in writing order, with its size.
    segments: Vec<(SegmentName, u64)>,
    snapshots: Vec<(String, u64)>,
    lease_size: u64,
    manifest_bytes: u64,
}

/// A segment whose changes count, and the bounds on them.
#[derive(Clone, Debug)]
struct Counted {
    name: SegmentName,
    /// Its changes count below this version.
    cutoff: Seq,
    /// Its changes at the base's version count (repeated-version reports
    /// after the snapshot).
    at_base: bool,
}

impl View {
    fn manifest(&self) -> Option<&Manifest> {
        self.manifest.as_ref().map(|(_, m)| m)
    }

    fn base(&self) -> Seq {
        self.manifest().map(Manifest::base).unwrap_or(0)
    }

    fn counted(&self) -> Vec<Counted> {
        let Some(m) = self.manifest() else { return vec![] };
        let base = m.base();
        let after = m.snapshot.as_ref().map(|s| s.after).unwrap_or((0, 0));
        self.segments
            .iter()
            .filter_map(|(s, _)| {
                let cutoff = m.cutoff(s.epoch)?;
                let at_base = (s.epoch, s.n) >= after;
                let counts = s.first < cutoff && (s.last > base || (s.last == base && at_base));
                counts.then(|| Counted { name: s.clone(), cutoff, at_base })
            })
            .collect()
    }

    /// The head: the highest counted change, or the base.
    fn head(&self) -> Seq {
        let base = self.base();
        self.counted().iter().map(|c| c.name.last.min(c.cutoff - 1)).fold(base, Seq::max)
    }

    /// The listing's own checks: segments numbered without a gap within an
    /// epoch, and changes reaching at least the manifest's head.
    fn check(&self, remote: &Remote) -> Result<()> {
        let counted = self.counted();
        for pair in counted.windows(2) {
            let (a, b) = (&pair[0].name, &pair[1].name);
            if a.epoch == b.epoch && a.n + 1 != b.n {
                return Err(Error::Remote {
                    url: remote.url().to_string(),
                    what: format!("a segment is missing between {} and {}: the copy is not whole", a.name(), b.name()),
                });
            }
        }
        if let Some((name, m)) = &self.manifest {
            let head = self.head();
            if head < m.head {
                return Err(Error::Remote {
                    url: remote.object_url(&name.name()),
                    what: format!(
                        "records version {} as published, but the segments reach only version {}: segments are missing",
                        data_version(m.head),
                        data_version(head)
                    ),
                });
            }
        }
        Ok(())
    }

    fn highest_epoch(&self) -> u64 {
        let listed = self.manifest().map(|m| m.epochs.iter().map(|e| e.epoch).max().unwrap_or(0)).unwrap_or(0);
        self.segments.iter().map(|(s, _)| s.epoch).fold(listed, u64::max)
    }
}

impl Shared {
    /// An encryption error names the object's URL, not only its name.
    fn at(&self, e: Error) -> Error {
        match e {
            Error::WrongKey { object } => Error::WrongKey { object: self.remote.object_url(&object) },
            Error::Damaged { object, what } => Error::Damaged { object: self.remote.object_url(&object), what },
            Error::Truncated { object, what } => Error::Truncated { object: self.remote.object_url(&object), what },
            other => other,
        }
    }

    fn damaged(&self, name: &str, what: impl Into<String>) -> Error {
        Error::Damaged { object: self.remote.object_url(name), what: what.into() }
    }

    fn seal(&self, name: &str, plain: &[u8]) -> Result<Vec<u8>> {
        encryption::seal(&self.key, name, plain).map_err(|e| self.at(e))
    }

    fn open(&self, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        encryption::open(&self.key, name, sealed).map_err(|e| self.at(e))
    }

    /// Read and open a small object; `None` when it does not exist.
    fn read(&self, name: &str) -> Result<Option<Vec<u8>>> {
        match self.remote.get(name)? {
            Some(sealed) => Ok(Some(self.open(name, &sealed)?)),
            None => Ok(None),
        }
    }

    fn read_json<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<Option<T>> {
        match self.read(name)? {
            Some(plain) => serde_json::from_slice(&plain)
                .map(Some)
                .map_err(|e| self.damaged(name, format!("does not decode: {e}"))),
            None => Ok(None),
        }
    }

    fn read_segment(&self, name: &str) -> Result<Vec<SegChange>> {
        self.segment_from(name, self.remote.get(name)?)
    }

    /// A segment's changes from its sealed bytes, fetched already.
    fn segment_from(&self, name: &str, sealed: Option<Vec<u8>>) -> Result<Vec<SegChange>> {
        let sealed = sealed.ok_or_else(|| Error::Remote {
            url: self.remote.object_url(name),
            what: "missing: it was listed, then removed (a compaction meanwhile?); try again".into(),
        })?;
        let plain = self.open(name, &sealed)?;
        layout::decode_segment(&plain).map_err(|what| self.damaged(name, what))
    }

    fn view(&self) -> Result<View> {
        // Segments first: every epoch of a listed segment was published in
        // a manifest before the segment was written.
        let mut segments: Vec<(SegmentName, u64)> = self
            .remote
            .list(SEGMENTS)?
            .into_iter()
            .filter_map(|(n, size)| SegmentName::parse(&n).map(|s| (s, size)))
            .collect();
        segments.sort();
        let listed = self.remote.list(MANIFESTS)?;
        let manifest_bytes = listed.iter().map(|(_, s)| s).sum();
        let mut manifests: Vec<ManifestName> =
            listed.into_iter().filter_map(|(n, _)| ManifestName::parse(&n)).collect();
        manifests.sort_by(|a, b| (a.number, &a.owner).cmp(&(b.number, &b.owner)));
        let snapshots: Vec<(String, u64)> =
            self.remote.list(SNAPSHOTS)?.into_iter().filter(|(n, _)| layout::is_snapshot_name(n)).collect();
        let lease_size = self.remote.size(LEASE)?.unwrap_or(0);
        let manifest = match manifests.last() {
            Some(top) => {
                if let Some(twin) = manifests.iter().rev().nth(1).filter(|m| m.number == top.number) {
                    return Err(Error::Remote {
                        url: self.remote.url().to_string(),
                        what: format!(
                            "two writers published manifest {}: {} and {}; remove the prefix's lease and restart the one node that owns it",
                            top.number,
                            twin.name(),
                            top.name()
                        ),
                    });
                }
                let name = top.name();
                let m: Manifest = self.read_json(&name)?.ok_or_else(|| Error::Remote {
                    url: self.remote.object_url(&name),
                    what: "missing: it was listed, then removed; try again".into(),
                })?;
                if m.format != LAYOUT_FORMAT {
                    return Err(self.damaged(
                        &name,
                        format!(
                            "layout format {} is not the one this cln-backup reads ({LAYOUT_FORMAT}); upgrade cln-backup",
                            m.format
                        ),
                    ));
                }
                Some((top.clone(), m))
            }
            None => None,
        };
        Ok(View { manifest, manifests, segments, snapshots, lease_size, manifest_bytes })
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "an unnamed host".into())
}

fn random_token(url: &str) -> Result<String> {
    let mut token = [0u8; 16];
    getrandom::fill(&mut token).map_err(|e| Error::Remote {
        url: url.to_string(),
        what: format!("no randomness from the operating system for the lease: {e}"),
    })?;
    Ok(hex(&token))
}

impl ObjectDestination {
    /// Open the prefix `url` names. A writer takes the lease (see the
    /// module's decisions) and publishes a manifest with a new epoch; a
    /// reader reads only.
    ///
    /// ```
    /// use cln_backup::destination::{Access, Destination, ObjectDestination, ObjectOptions};
    /// use cln_backup::encryption::Key;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([7; 32]);
    /// let mut options = ObjectOptions::new(Access::Write, key.clone());
    /// options.owner = Some([1; 16]);
    /// // `memory:///`, the object_store crate's in-memory store, stands in for a bucket.
    /// let writer = ObjectDestination::open("memory:///node", &options)?;
    /// assert!(writer.describe()?.lease.is_some_and(|l| l.contains("01010101")));
    ///
    /// // A reader takes no lease and refuses to write.
    /// let reader = ObjectDestination::open("memory:///node", &ObjectOptions::new(Access::ReadOnly, key))?;
    /// assert!(reader.add_change(1, &["CREATE TABLE t (x)"]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn open(url: &str, options: &ObjectOptions) -> Result<ObjectDestination> {
        let credentials = match &options.credentials_file {
            Some(path) => remote::read_credentials(path)?,
            None => vec![],
        };
        let remote = Remote::connect(url, &credentials)?;
        let shared = Arc::new(Shared { remote, key: options.key.clone() });
        let url = shared.remote.url().to_string();
        let writer = match options.access {
            Access::ReadOnly => None,
            Access::Write => {
                let Some(owner) = options.owner else {
                    return Err(Error::Destination {
                        url,
                        what: "writing needs the local store's id, to hold the prefix's lease".into(),
                    });
                };
                Some(Mutex::new(start_writer(&shared, hex(&owner))?))
            }
        };
        Ok(ObjectDestination { url, shared, writer })
    }

    fn writer(&self) -> Result<MutexGuard<'_, Writer>> {
        let Some(w) = &self.writer else {
            return Err(Error::Remote { url: self.url.clone(), what: "opened for reading; this would write".into() });
        };
        w.lock().map_err(|_| Error::Remote {
            url: self.url.clone(),
            what: "an earlier write failed midway in another thread; reopen the destination".into(),
        })
    }

    /// What `info` shows of the copy: head, restorable range, snapshot,
    /// segments, stored bytes and the lease holder. Reads only.
    ///
    /// ```
    /// use cln_backup::destination::{Access, Destination, ObjectDestination, ObjectOptions};
    /// use cln_backup::encryption::Key;
    /// # use cln_backup::version::bump_statement;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut options = ObjectOptions::new(Access::Write, Key::from_bytes([7; 32]));
    /// options.owner = Some([1; 16]);
    /// // `memory:///`, the object_store crate's in-memory store, stands in for a bucket.
    /// let remote = ObjectDestination::open("memory:///node", &options)?;
    /// let empty = remote.describe()?;
    /// assert_eq!((empty.version, empty.segments, empty.manifest), (0, 0, Some(1)));
    /// remote.add_change(1, &["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", &bump_statement(1)])?;
    /// let summary = remote.describe()?;
    /// assert_eq!((summary.version, summary.restorable, summary.segments), (1, (0, 1), 1));
    /// assert!(summary.stored_bytes > empty.stored_bytes);
    /// # Ok(()) }
    /// ```
    pub fn describe(&self) -> Result<RemoteSummary> {
        let sh = &self.shared;
        let view = sh.view()?;
        let head = view.head();
        let lease: Option<Lease> = sh.read_json(LEASE)?;
        let snapshot = view.manifest().and_then(|m| m.snapshot.as_ref());
        let stored_bytes = view.segments.iter().map(|(_, s)| s).sum::<u64>()
            + view.snapshots.iter().map(|(_, s)| s).sum::<u64>()
            + view.lease_size
            + view.manifest_bytes;
        Ok(RemoteSummary {
            url: self.url.clone(),
            version: data_version(head),
            seq: head,
            restorable: (view.base(), head),
            snapshot: snapshot.map(|s| (data_version(s.seq), s.size, s.stored_bytes)),
            segments: view.counted().len(),
            stored_bytes,
            manifest: view.manifest.as_ref().map(|(n, _)| n.number),
            lease: lease
                .map(|l| format!("{} (store {}) since {}", l.host, l.owner, crate::utc_iso8601(l.since_ms, false))),
        })
    }

    /// Write one segment of `changes` (versions `first` to `last`) as the
    /// writer's next; its number advances only once the segment is there.
    fn put_segment(&self, w: &mut Writer, first: Seq, last: Seq, changes: Vec<SegChange>) -> Result<()> {
        let sh = &self.shared;
        let name = SegmentName { epoch: w.epoch, n: w.next_n, first, last, owner: w.owner.clone() }.name();
        let plain = layout::encode_segment(changes.clone()).map_err(|what| sh.damaged(&name, what))?;
        let sealed = sh.seal(&name, &plain)?;
        if sh.remote.put_create(&name, sealed)? == Created::Exists {
            // A retry after a lost answer: the first attempt landed.
            let there = sh.read_segment(&name)?;
            let same = there.len() == changes.len()
                && there.iter().zip(&changes).all(|(a, b)| {
                    a.seq == b.seq
                        && a.parts.len() == b.parts.len()
                        && a.parts.iter().zip(&b.parts).all(|(x, y)| x.statements == y.statements)
                });
            if !same {
                return Err(Error::Remote {
                    url: sh.remote.object_url(&name),
                    what: "exists with other changes: another writer uses this store id".into(),
                });
            }
        }
        w.next_n += 1;
        Ok(())
    }
}

/// Take the lease, read the copy's state, and publish a manifest with a
/// new epoch.
fn start_writer(sh: &Shared, owner: String) -> Result<Writer> {
    let host = host_name();
    let token = random_token(sh.remote.url())?;
    take_lease(sh, &owner, &host, &token)?;
    let view = sh.view()?;
    view.check(&sh.remote)?;
    let head = view.head();
    let base = view.base();
    let counted = view.counted();
    // How many transactions the head's change holds: rewinds depend on it.
    let mut last = None;
    let holding_head: Vec<&Counted> =
        counted.iter().filter(|c| c.name.first <= head && head <= c.name.last && head < c.cutoff).collect();
    if !holding_head.is_empty() {
        let mut parts = 0;
        for c in holding_head {
            let name = c.name.name();
            for ch in sh.read_segment(&name)? {
                if ch.seq == head && (head > base || c.at_base) {
                    parts += ch.parts.len();
                }
            }
        }
        if parts > 0 {
            last = Some(Last { seq: head, parts });
        }
    }
    let epoch = view.highest_epoch() + 1;
    let previous = view.manifest.as_ref().map(|(_, m)| m.clone());
    let number = view.manifests.last().map(|m| m.number + 1).unwrap_or(1);
    let mut manifest = match previous {
        Some(m) => m,
        None => Manifest {
            format: LAYOUT_FORMAT,
            number: 0,
            owner: owner.clone(),
            host: host.clone(),
            time_ms: 0,
            snapshot: None,
            epochs: vec![],
            head: 0,
            rewound_at: None,
        },
    };
    let rewound_at = manifest.rewound_at.filter(|r| *r == head);
    manifest.number = number;
    manifest.owner = owner.clone();
    manifest.host = host.clone();
    manifest.time_ms = now_ms();
    manifest.epochs.push(EpochStart { epoch, start: head + 1 });
    manifest.head = head;
    manifest.rewound_at = rewound_at;
    let mut w = Writer { owner, token, manifest: manifest.clone(), epoch, next_n: 0, head, last, rewound_at };
    publish(sh, &mut w, manifest)?;
    Ok(w)
}

/// Write this writer's lease, or refuse another owner's; then read it back.
fn take_lease(sh: &Shared, owner: &str, host: &str, token: &str) -> Result<()> {
    let lease = Lease { owner: owner.into(), host: host.into(), since_ms: now_ms(), token: token.into() };
    let plain = serde_json::to_vec(&lease).map_err(|e| sh.damaged(LEASE, e.to_string()))?;
    for _ in 0..2 {
        match sh.read_json::<Lease>(LEASE)? {
            Some(held) if held.owner != owner => return Err(lease_held(sh, &held)),
            Some(_) => {
                // The same node restarting: its own lease is taken over.
                sh.remote.put_overwrite(LEASE, sh.seal(LEASE, &plain)?)?;
            }
            None => {
                if sh.remote.put_create(LEASE, sh.seal(LEASE, &plain)?)? == Created::Exists {
                    continue;
                }
            }
        }
        return check_lease(sh, token);
    }
    match sh.read_json::<Lease>(LEASE)? {
        Some(held) => Err(lease_held(sh, &held)),
        None => Err(Error::Remote {
            url: sh.remote.object_url(LEASE),
            what: "appears and disappears: another writer is starting here".into(),
        }),
    }
}

/// The lease holds this writer's token, or the write is refused.
fn check_lease(sh: &Shared, token: &str) -> Result<()> {
    match sh.read_json::<Lease>(LEASE)? {
        Some(held) if held.token == token => Ok(()),
        Some(held) => Err(lease_held(sh, &held)),
        None => Err(Error::Remote {
            url: sh.remote.object_url(LEASE),
            what: "this writer's lease is gone (removed by hand?); restart the writer to take it again".into(),
        }),
    }
}

fn lease_held(sh: &Shared, held: &Lease) -> Error {
    Error::LeaseHeld {
        url: sh.remote.url().to_string(),
        holder: format!("{} (store {})", held.host, held.owner),
        since: crate::utc_iso8601(held.since_ms, false),
        lease: sh.remote.object_url(LEASE),
    }
}

/// Check the lease, then write `manifest` (create-only) and make it the
/// writer's.
fn publish(sh: &Shared, w: &mut Writer, manifest: Manifest) -> Result<()> {
    check_lease(sh, &w.token)?;
    let name = ManifestName { number: manifest.number, owner: w.owner.clone() }.name();
    let plain = serde_json::to_vec(&manifest).map_err(|e| sh.damaged(&name, e.to_string()))?;
    if sh.remote.put_create(&name, sh.seal(&name, &plain)?)? == Created::Exists {
        // A retry after a lost answer finds its own manifest, written at
        // another time.
        let there: Option<Manifest> = sh.read_json(&name)?;
        let same = there.is_some_and(|t| Manifest { time_ms: manifest.time_ms, ..t } == manifest);
        if !same {
            return Err(Error::Remote {
                url: sh.remote.object_url(&name),
                what: "exists already with other contents: another writer uses this store id".into(),
            });
        }
    }
    w.manifest = manifest;
    Ok(())
}

/// Remove what neither the newest manifest nor the one before it needs.
/// Failures leave objects behind, never remove one still needed.
fn prune(sh: &Shared, newest: &Manifest) -> Result<()> {
    let view = sh.view()?;
    let Some(previous) = view.manifests.iter().rev().find(|m| m.number < newest.number) else { return Ok(()) };
    let prev: Manifest = match sh.read_json(&previous.name())? {
        Some(m) => m,
        None => return Ok(()),
    };
    let keep_base = prev.base().min(newest.base());
    for m in view.manifests.iter().filter(|m| m.number < previous.number) {
        sh.remote.delete(&m.name())?;
    }
    let keep: Vec<&str> = [&newest.snapshot, &prev.snapshot].into_iter().flatten().map(|s| s.name.as_str()).collect();
    for (name, _) in &view.snapshots {
        if !keep.contains(&name.as_str()) {
            sh.remote.delete(name)?;
        }
    }
    for (s, _) in &view.segments {
        if s.last < keep_base {
            sh.remote.delete(&s.name())?;
        }
    }
    Ok(())
}

/// Counts the bytes written through it.
struct Counting<W: Write> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl Destination for ObjectDestination {
    fn location(&self) -> &str {
        &self.url
    }

    fn head(&self) -> Result<Head> {
        if self.writer.is_some() {
            let w = self.writer()?;
            let prev_version = w.last.filter(|l| l.seq == w.head && l.seq > w.base()).map(|l| data_version(l.seq - 1));
            return Ok(Head::new(data_version(w.head), prev_version, w.rewind_refusal().is_none()));
        }
        let view = self.shared.view()?;
        view.check(&self.shared.remote)?;
        let head = view.head();
        let prev = (head > view.base()).then(|| data_version(head - 1));
        Ok(Head::new(data_version(head), prev, false))
    }

    fn add_change(&self, version: u32, statements: &[&str]) -> Result<Added> {
        let mut w = self.writer()?;
        let mut next = w.clone();
        let (seq, added) = next.plan(version, statements)?;
        let part = SegPart { time_ms: now_ms(), statements: statements.iter().map(|s| s.to_string()).collect() };
        self.put_segment(&mut next, seq, seq, vec![SegChange { seq, parts: vec![part] }])?;
        *w = next;
        Ok(added)
    }

    fn add_changes(&self, changes: &[Change]) -> Result<()> {
        let mut w = self.writer()?;
        let mut next = w.clone();
        let mut batch: Vec<SegChange> = Vec::new();
        let mut bytes = 0usize;
        for change in changes {
            for t in &change.transactions {
                let statements: Vec<&str> = t.statements.iter().map(String::as_str).collect();
                let (seq, _) = next.plan(change.data_version(), &statements)?;
                let part = SegPart { time_ms: t.time_ms, statements: t.statements.clone() };
                bytes += t.statements.iter().map(String::len).sum::<usize>();
                match batch.last_mut() {
                    Some(last) if last.seq == seq => last.parts.push(part),
                    _ => batch.push(SegChange { seq, parts: vec![part] }),
                }
            }
            if bytes >= SEGMENT_TARGET {
                let (first, last) = (batch[0].seq, batch[batch.len() - 1].seq);
                self.put_segment(&mut next, first, last, std::mem::take(&mut batch))?;
                *w = next.clone();
                bytes = 0;
            }
        }
        if let (Some(first), Some(last)) = (batch.first().map(|c| c.seq), batch.last().map(|c| c.seq)) {
            self.put_segment(&mut next, first, last, batch)?;
        }
        *w = next;
        Ok(())
    }

    fn rewind(&self) -> Result<Seq> {
        let mut w = self.writer()?;
        if let Some(reason) = w.rewind_refusal() {
            return Err(Error::Rewind { reason });
        }
        let head = w.head;
        let epoch = w.epoch + 1;
        let mut manifest = w.manifest.clone();
        manifest.number += 1;
        manifest.time_ms = now_ms();
        manifest.epochs.push(EpochStart { epoch, start: head });
        manifest.head = head - 1;
        manifest.rewound_at = Some(head - 1);
        let mut next = w.clone();
        publish(&self.shared, &mut next, manifest)?;
        next.epoch = epoch;
        next.next_n = 0;
        next.head = head - 1;
        next.rewound_at = Some(head - 1);
        next.last = (head - 1 > next.base()).then_some(Last { seq: head - 1, parts: 1 });
        *w = next;
        Ok(head - 1)
    }

    fn add_snapshot(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        let sh = &self.shared;
        let mut w = self.writer()?;
        let empty = w.head == 0 && w.manifest.snapshot.is_none() && w.last.is_none();
        let seq = if empty {
            Seq::from(version)
        } else if version == data_version(w.head) {
            w.head
        } else if version > data_version(w.head) {
            // A replica behind a local store that compacted past it: the
            // copy restarts from the snapshot, the changes before it no
            // longer count.
            (w.head & !Seq::from(u32::MAX)) | Seq::from(version)
        } else {
            return Err(Error::SnapshotVersion {
                version,
                reason: format!(
                    "the copy is at version {}; a snapshot must be taken at the head, ahead of it, or into an empty copy",
                    data_version(w.head)
                ),
            });
        };
        let name = layout::snapshot_name(seq, w.epoch, &w.owner);
        let upload = sh.remote.upload(&name)?;
        let sealer = Sealer::new(&sh.key, &name, upload).map_err(|e| sh.at(e))?;
        let mut encoder = zstd::stream::write::Encoder::new(sealer, 3).map_err(|e| sh.damaged(&name, e.to_string()))?;
        let mut counted = Counting { inner: &mut encoder, bytes: 0 };
        std::io::copy(image, &mut counted).map_err(|e| Error::Remote {
            url: sh.remote.object_url(&name),
            what: format!("the snapshot could not be read or sent: {}", remote::one_line(&e.to_string())),
        })?;
        let size = counted.bytes;
        let sealer = encoder.finish().map_err(|e| sh.damaged(&name, e.to_string()))?;
        let (upload, _) = sealer
            .finish_into()
            .map_err(|e| Error::Remote { url: sh.remote.object_url(&name), what: remote::one_line(&e.to_string()) })?;
        let stored_bytes = upload.finish()?;
        let created_ms = now_ms();
        let mut manifest = w.manifest.clone();
        manifest.number += 1;
        manifest.time_ms = created_ms;
        manifest.snapshot = Some(SnapshotRef {
            name: name.clone(),
            seq,
            size,
            stored_bytes,
            created_ms,
            foreign_keys: true,
            after: (w.epoch, w.next_n),
        });
        manifest.head = seq;
        manifest.rewound_at = None;
        manifest.prune_epochs();
        let mut next = w.clone();
        publish(sh, &mut next, manifest.clone())?;
        next.head = seq;
        next.last = None;
        next.rewound_at = None;
        *w = next;
        drop(w);
        // The new snapshot is published: what it made unnecessary goes. A
        // failure here leaves objects behind, never a copy without a base.
        if let Err(e) = prune(sh, &manifest) {
            tracing::warn!("{e}");
        }
        Ok(SnapshotInfo {
            seq,
            version: data_version(seq),
            size,
            stored_bytes,
            created_ms,
            version_time_ms: created_ms,
            foreign_keys: true,
        })
    }

    fn restore_source(&self, to_version: Option<u64>, image: &mut dyn Write) -> Result<RestoreSource> {
        let sh = &self.shared;
        let view = sh.view()?;
        view.check(&sh.remote)?;
        let Some(manifest) = view.manifest() else {
            return Err(Error::Remote {
                url: self.url.clone(),
                what: "holds no backup: no manifest under this prefix (a mistyped bucket or prefix?)".into(),
            });
        };
        let (lo, hi) = (view.base(), view.head());
        let upto = version::target(lo, hi, manifest.snapshot.is_some(), to_version)?;
        if let Some(snap) = &manifest.snapshot {
            let name = snap.name.clone();
            let mut out = Counting { inner: image, bytes: 0 };
            {
                let mut decoder =
                    zstd::stream::write::Decoder::new(&mut out).map_err(|e| sh.damaged(&name, e.to_string()))?;
                let mut opener = Opener::new(&sh.key, &name);
                sh.remote.get_stream(&name, |piece| opener.push(piece, &mut decoder).map_err(|e| sh.at(e)))?;
                opener.finish(&mut decoder).map_err(|e| sh.at(e))?;
                decoder.flush().map_err(|e| sh.damaged(&name, format!("does not decompress: {e}")))?;
            }
            if out.bytes != snap.size {
                return Err(sh.damaged(
                    &name,
                    format!("holds {} bytes of image where its manifest records {}", out.bytes, snap.size),
                ));
            }
        }
        let foreign_keys = manifest.snapshot.as_ref().map(|s| s.foreign_keys).unwrap_or(true);
        let changes = RemoteChanges {
            shared: self.shared.clone(),
            queue: view.counted().into(),
            fetching: VecDeque::new(),
            current: VecDeque::new(),
            merger: Merger::default(),
            base: lo,
            upto,
            ended: false,
        };
        Ok(RestoreSource::new(upto, foreign_keys, Box::new(changes)))
    }

    fn summary(&self) -> Result<super::Summary> {
        let d = self.describe()?;
        let head = self.head()?;
        let mut summary = super::Summary::new(head);
        summary.restorable = Some((data_version(d.restorable.0), data_version(d.restorable.1)));
        summary.snapshot_version = d.snapshot.map(|(version, _, _)| version);
        if let Some((_, size, stored)) = d.snapshot {
            summary.details.push(("Snapshot bytes".into(), format!("{size} ({stored} stored)")));
        }
        summary.details.push(("Segments".into(), d.segments.to_string()));
        summary.details.push(("Stored bytes".into(), d.stored_bytes.to_string()));
        if let Some(n) = d.manifest {
            summary.details.push(("Manifest".into(), n.to_string()));
        }
        summary.details.push(("Lease".into(), d.lease.unwrap_or_else(|| "none".into())));
        Ok(summary)
    }

    fn local_store(&self) -> Option<&Store> {
        None
    }
}

/// The changes of the counted segments, fetched one segment at a time,
/// merged and checked in order up to `upto`.
struct RemoteChanges {
    shared: Arc<Shared>,
    queue: VecDeque<Counted>,
    /// Segments being fetched, in order, at most [`PREFETCH`].
    fetching: VecDeque<(Counted, remote::Pending)>,
    current: VecDeque<(SegChange, String)>,
    merger: Merger,
    base: Seq,
    upto: Seq,
    ended: bool,
}

impl RemoteChanges {
    fn step(&mut self) -> Result<Option<Change>> {
        loop {
            if let Some((c, from)) = self.current.pop_front() {
                if c.seq > self.upto {
                    self.queue.clear();
                    self.fetching.clear();
                    self.current.clear();
                    continue;
                }
                if self.merger.last_seq().is_none() && c.seq > self.base + 1 {
                    return Err(self.missing(format!(
                        "the changes from version {} to {} are missing (first found in {from})",
                        data_version(self.base + 1),
                        data_version(c.seq - 1)
                    )));
                }
                match self.merger.push(c) {
                    Ok(Some(done)) => return Ok(Some(done)),
                    Ok(None) => continue,
                    Err(what) => return Err(self.missing(format!("{what} (in {from})"))),
                }
            }
            while self.fetching.len() < PREFETCH {
                let Some(seg) = self.queue.pop_front() else { break };
                let pending = self.shared.remote.get_later(&seg.name.name())?;
                self.fetching.push_back((seg, pending));
            }
            if let Some((seg, pending)) = self.fetching.pop_front() {
                let name = seg.name.name();
                let changes = self.shared.segment_from(&name, pending.wait(&self.shared.remote)?)?;
                for c in changes {
                    let counts = c.seq < seg.cutoff && (c.seq > self.base || (c.seq == self.base && seg.at_base));
                    if counts {
                        self.current.push_back((c, name.clone()));
                    }
                }
                continue;
            }
            // The end: whatever follows is `None`.
            self.ended = true;
            let last = self.merger.finish();
            let reached = last.as_ref().map(|c| c.seq).unwrap_or(self.base);
            if reached < self.upto {
                return Err(self.missing(format!(
                    "the changes end at version {} where version {} was asked",
                    data_version(reached),
                    data_version(self.upto)
                )));
            }
            return Ok(last);
        }
    }

    fn missing(&self, what: String) -> Error {
        Error::Remote { url: self.shared.remote.url().to_string(), what: format!("segments are missing: {what}") }
    }
}

impl Iterator for RemoteChanges {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        if self.ended {
            return None;
        }
        match self.step() {
            Ok(Some(c)) => Some(Ok(c)),
            Ok(None) => {
                self.ended = true;
                None
            }
            Err(e) => {
                self.ended = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// A writer on the `object_store` crate's in-memory store: the
    /// destination's own logic, without a server (the tests against a real
    /// one are in `tests/object_store.rs`).
    fn memory_writer() -> ObjectDestination {
        let mut o = ObjectOptions::new(Access::Write, Key::from_bytes([3; 32]));
        o.owner = Some([5; 16]);
        ObjectDestination::open("memory:///node", &o).unwrap()
    }

    fn tx(v: u32) -> Vec<String> {
        vec![format!("INSERT INTO t VALUES ({v})"), version::bump_statement(v)]
    }

    fn add(d: &ObjectDestination, v: u32) -> Added {
        let t = tx(v);
        let parts: Vec<&str> = t.iter().map(String::as_str).collect();
        d.add_change(v, &parts).unwrap()
    }

    #[test]
    fn usable_and_dropped_inside_another_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let d = memory_writer();
            assert_eq!(add(&d, 1), Added::New(1));
            assert_eq!(d.head().unwrap().version, 1);
            drop(d);
        });
    }

    #[test]
    fn repeats_after_a_snapshot_count_and_the_ones_before_do_not() {
        let d = memory_writer();
        for v in 1..=3 {
            add(&d, v);
        }
        assert_eq!(d.add_change(3, &["PRAGMA foreign_keys = OFF"]).unwrap(), Added::Repeated(3));
        d.add_snapshot(3, &mut &b"image at 3"[..]).unwrap();
        // After the snapshot, nothing to rewind; a repeat at its version counts.
        assert!(matches!(d.rewind(), Err(Error::Rewind { .. })));
        assert_eq!(d.add_change(3, &["PRAGMA foreign_keys = ON"]).unwrap(), Added::Repeated(3));
        assert!(!d.head().unwrap().rewind_allowed);
        add(&d, 4);
        let mut image = Vec::new();
        let source = d.restore_source(None, &mut image).unwrap();
        assert_eq!(image, b"image at 3");
        let changes: Vec<Change> = source.changes.map(Result::unwrap).collect();
        let seqs: Vec<(Seq, usize)> = changes.iter().map(|c| (c.seq, c.transactions.len())).collect();
        // The repeat before the snapshot is in the image; the one after it is replayed.
        assert_eq!(seqs, vec![(3, 1), (4, 1)]);
        assert_eq!(changes[0].transactions[0].statements, vec!["PRAGMA foreign_keys = ON".to_string()]);
    }

    #[test]
    fn a_snapshot_ahead_of_the_head_restarts_the_copy_and_one_behind_is_refused() {
        let d = memory_writer();
        for v in 1..=3 {
            add(&d, v);
        }
        let err = d.add_snapshot(2, &mut &b"old"[..]).unwrap_err();
        assert!(matches!(err, Error::SnapshotVersion { version: 2, .. }), "{err}");
        d.add_snapshot(10, &mut &b"image at 10"[..]).unwrap();
        assert_eq!(d.head().unwrap(), Head::new(10, None, false));
        assert!(matches!(d.add_change(5, &["x"]), Err(Error::Gap { .. })));
        add(&d, 11);
        let mut image = Vec::new();
        let source = d.restore_source(None, &mut image).unwrap();
        assert_eq!((image.as_slice(), source.upto), (&b"image at 10"[..], 11));
        let seqs: Vec<Seq> = source.changes.map(|c| c.unwrap().seq).collect();
        assert_eq!(seqs, vec![11]);
    }

    #[test]
    fn batches_follow_the_change_log_rules() {
        let d = memory_writer();
        add(&d, 1);
        let change = |seq: Seq, txs: Vec<Vec<String>>| Change {
            seq,
            transactions: txs.into_iter().map(|statements| crate::Transaction { time_ms: 5, statements }).collect(),
        };
        d.add_changes(&[change(2, vec![tx(2), vec!["PRAGMA foreign_keys = ON".into()]]), change(3, vec![tx(3)])])
            .unwrap();
        assert_eq!(d.head().unwrap(), Head::new(3, Some(2), true));
        // A batch with a gap stores nothing of itself.
        let err = d.add_changes(&[change(4, vec![tx(4)]), change(6, vec![tx(6)])]).unwrap_err();
        assert!(matches!(err, Error::Gap { .. }), "{err}");
        assert_eq!(d.head().unwrap().version, 3);
        let mut image = Vec::new();
        let source = d.restore_source(Some(2), &mut image).unwrap();
        assert_eq!(source.upto, 2);
        let got: Vec<(Seq, usize)> =
            source.changes.map(|c| c.map(|c| (c.seq, c.transactions.len()))).map(Result::unwrap).collect();
        assert_eq!(got, vec![(1, 1), (2, 2)]);
    }

    #[test]
    fn a_retry_after_a_lost_answer_finds_its_segment_and_another_change_is_refused() {
        let d = memory_writer();
        add(&d, 1);
        let before = d.writer().unwrap().clone();
        add(&d, 2);
        // The answer to the segment of version 2 was lost: the writer is
        // back where it was, and sends it again (the in-memory store refuses
        // a create-only PUT over an existing object, as S3 does).
        *d.writer().unwrap() = before.clone();
        assert_eq!(add(&d, 2), Added::New(2));
        assert_eq!(d.head().unwrap().version, 2);
        // Another change under the same name is not taken for it.
        *d.writer().unwrap() = before;
        let other = ["INSERT INTO t VALUES (99)".to_string(), version::bump_statement(2)];
        let parts: Vec<&str> = other.iter().map(String::as_str).collect();
        let err = d.add_change(2, &parts).unwrap_err();
        assert!(err.to_string().contains("another writer uses this store id"), "{err}");
        assert_eq!(d.head().unwrap().version, 1);
    }

    #[test]
    fn a_reader_writes_nothing() {
        let d = ObjectDestination::open("memory:///r", &ObjectOptions::new(Access::ReadOnly, Key::from_bytes([1; 32])))
            .unwrap();
        let t = tx(1);
        let parts: Vec<&str> = t.iter().map(String::as_str).collect();
        let err = d.add_change(1, &parts).unwrap_err();
        assert!(err.to_string().contains("opened for reading"), "{err}");
        assert!(d.rewind().is_err() && d.add_snapshot(1, &mut &b""[..]).is_err());
        assert!(d.shared.remote.list("").unwrap().is_empty());
    }

    #[test]
    fn a_reader_of_an_empty_prefix_says_so() {
        let d = ObjectDestination::open(
            "memory:///nothing",
            &ObjectOptions::new(Access::ReadOnly, Key::from_bytes([1; 32])),
        )
        .unwrap();
        let err = d.restore_source(None, &mut Vec::new()).unwrap_err();
        assert!(err.to_string().starts_with("memory:///nothing: holds no backup"), "{err}");
        let mut o = ObjectOptions::new(Access::Write, Key::from_bytes([1; 32]));
        o.owner = None;
        let err = ObjectDestination::open("memory:///x", &o).unwrap_err();
        assert!(err.to_string().contains("store's id"), "{err}");
    }
}
