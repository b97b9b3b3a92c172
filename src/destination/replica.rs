//! Replicas of a local store: bringing a destination that is behind up to
//! the primary ([`catch_up`]), and keeping an async destination close behind
//! it from a background thread ([`AsyncReplica`]).
//!
//! Owns what a replica lacks and how it is sent: the base snapshot (streamed,
//! never held whole in memory), the changes after the replica's head (in
//! batches, through [`Destination::add_changes`]), the parts of a repeated
//! version the replica has not seen, and the rewind of a change the primary
//! rewound. It must not decide when a write is answered (that is the
//! plugin's), nor write the primary: it only reads it. Blocking, with std
//! threads only.
//!
//! **How a replica is matched to the primary.** A destination reports its
//! head (a `data_version`), not its content, so the first contact checks
//! what a head cannot tell: when the primary's record at the replica's head
//! holds several transactions (lone `PRAGMA foreign_keys` reports repeat a
//! version), or when the primary once rewound the change at that version
//! (its rewind marker, [`Store::rewound_at`]), the replica's last change is
//! read back ([`Destination::restore_source`]) and compared with the
//! primary's. A prefix of it gets the missing parts; a different change is
//! rewound when the replica allows it (it holds the change the primary
//! rewound) and is otherwise refused as diverged, naming both heads. This
//! read-back streams the replica's snapshot and is rare: once after such a
//! version, never on the path of each write.
//!
//! ```
//! use cln_backup::destination::{replica, FileDestination};
//! use cln_backup::version::bump_statement;
//! use cln_backup::Store;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let primary = Store::create(dir.path().join("node.redb"))?;
//! # primary.add_change(1, &[
//! #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
//! #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
//! #     bump_statement(1),
//! # ])?;
//! primary.add_change(2, &["INSERT INTO vars VALUES ('a', 1)".to_string(), bump_statement(2)])?;
//! let second_disk = FileDestination::new(Store::create(dir.path().join("replica.redb"))?);
//! replica::catch_up(&primary, &second_disk)?;
//!
//! // lightningd did not commit version 2: the primary rewinds it, then
//! // stores another change at that version.
//! primary.rewind()?;
//! primary.add_change(2, &["INSERT INTO vars VALUES ('b', 2)".to_string(), bump_statement(2)])?;
//! let done = replica::catch_up(&primary, &second_disk)?;
//! assert!(done.rewound, "the replica held the rewound change");
//! assert_eq!((done.to, done.transactions), (2, 1));
//! # Ok(()) }
//! ```

use super::{Destination, SnapshotInfo};
use crate::store::Store;
use crate::version::{data_version, seq_at_or_below, Seq};
use crate::{Change, Error, Result};
use std::io::{Read, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Changes sent in one [`Destination::add_changes`] call at most.
const BATCH_CHANGES: usize = 512;
/// Statement bytes sent in one call at most (a batch ends after the change
/// that reaches it).
const BATCH_BYTES: usize = 8 << 20;
/// Snapshot bytes in flight between the primary's reader and the replica.
const PIPE_CHUNKS: usize = 4;

/// What [`catch_up`] did.
///
/// ```
/// use cln_backup::destination::{replica, FileDestination};
/// use cln_backup::{compact, Store};
/// # use cln_backup::version::bump_statement;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let primary = Store::create(dir.path().join("node.redb"))?;
/// # primary.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// # for v in 2..=4 {
/// #     primary.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)])?;
/// # }
/// // Versions 1 to 4, the first three folded into a snapshot at 3.
/// compact::compact(&primary, &Default::default())?;
/// let empty = FileDestination::new(Store::create(dir.path().join("replica.redb"))?);
/// let done = replica::catch_up(&primary, &empty)?;
/// assert_eq!((done.from, done.to), (0, 4));
/// assert_eq!((done.snapshot, done.transactions, done.rewound), (Some(3), 1, false));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CaughtUp {
    /// The replica's `data_version` before.
    pub from: u32,
    /// Its `data_version` after: the primary's head.
    pub to: u32,
    /// The `data_version` of the base snapshot sent, if one was.
    pub snapshot: Option<u32>,
    /// Transactions sent (a repeated version's reports count one each).
    pub transactions: u64,
    /// Whether the replica's last change was rewound first (the primary
    /// had rewound it).
    pub rewound: bool,
}

/// How much of the primary a replica holds: everything up to `seq`, and
/// the first `parts` transactions of the record at `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    seq: Seq,
    parts: usize,
}

/// Bring `dest` up to the head of `primary`: the base snapshot first when
/// `dest` is empty or behind it, then the changes it lacks; a change the
/// primary rewound is rewound on `dest`. A `dest` that holds what the
/// primary never had is refused, naming both heads.
///
/// ```
/// use cln_backup::destination::{replica::catch_up, Destination, FileDestination};
/// use cln_backup::version::bump_statement;
/// use cln_backup::Store;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let primary = Store::create(dir.path().join("node.redb"))?;
/// # primary.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// primary.add_change(2, &["INSERT INTO vars VALUES ('a', 1)".to_string(), bump_statement(2)])?;
/// let replica = FileDestination::new(Store::create(dir.path().join("replica.redb"))?);
/// assert_eq!(catch_up(&primary, &replica)?.transactions, 2);
/// assert_eq!(replica.head()?.version, 2);
/// // Nothing new: nothing sent.
/// assert_eq!(catch_up(&primary, &replica)?.transactions, 0);
///
/// // A copy that is ahead of the primary is refused.
/// let older = Store::create(dir.path().join("older.redb"))?;
/// # older.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// let err = catch_up(&older, &replica).unwrap_err();
/// assert!(err.to_string().contains("diverged"), "{err}");
/// # Ok(()) }
/// ```
pub fn catch_up(primary: &Store, dest: &dyn Destination) -> Result<CaughtUp> {
    let mut report = CaughtUp::default();
    let position = align(primary, dest, &mut report, true)?;
    ship(primary, dest, position, &mut report)?;
    report.to = primary.version();
    Ok(report)
}

fn diverged(primary: &Store, dest: &dyn Destination, dest_version: u32, why: &str) -> Error {
    Error::Destination {
        url: dest.location().to_string(),
        what: format!(
            "has diverged from the local store {}: it is at version {dest_version}, the local store at {}; {why}; \
             it cannot be caught up: make a new copy there",
            primary.path().display(),
            primary.version()
        ),
    }
}

/// The primary's change record at `seq`, if there is one.
fn change_at(primary: &Store, seq: Seq) -> Result<Option<Change>> {
    let reader = primary.reader()?;
    let base = reader.restorable().0;
    if seq < base || seq > reader.head() {
        return Ok(None);
    }
    let mut changes = if seq == base { reader.changes(seq)? } else { reader.changes_after(seq - 1, seq)? };
    match changes.next() {
        Some(change) => {
            let change = change?;
            Ok((change.seq == seq).then_some(change))
        }
        None => Ok(None),
    }
}

/// The replica's last change, read back through a restore of its head.
fn last_change_of(dest: &dyn Destination) -> Result<Option<Change>> {
    let source = dest.restore_source(None, &mut std::io::sink())?;
    let mut last = None;
    for change in source.changes {
        last = Some(change?);
    }
    Ok(last.filter(|c| c.seq == source.upto))
}

/// Find where `dest` stands against `primary`, repairing what a first
/// contact must (a rewound change, a base snapshot): the position from
/// which [`ship`] goes on.
fn align(primary: &Store, dest: &dyn Destination, report: &mut CaughtUp, may_rewind: bool) -> Result<Position> {
    let head = dest.head()?;
    report.from = head.version;
    let reader = primary.reader()?;
    let phead = reader.head();
    let base = reader.restorable().0;
    let snapshot = reader.snapshot();
    drop(reader);
    let rewound = primary.rewound_at();
    let empty = head.version == 0 && head.prev_version.is_none();

    if !empty && head.version != data_version(phead) && head.version == data_version(phead + 1) {
        // One ahead: the primary rewound that change and has not replaced it.
        if may_rewind && rewound == Some(phead) && head.prev_version == Some(data_version(phead)) && head.rewind_allowed
        {
            dest.rewind()?;
            report.rewound = true;
            return align(primary, dest, report, false);
        }
        return Err(diverged(primary, dest, head.version, "it holds a change the local store does not"));
    }
    let at = if empty { None } else { seq_at_or_below(phead, u64::from(head.version)) };
    let Some(seq) = at.filter(|&s| s >= base) else {
        if !empty && at.is_none() {
            return Err(diverged(primary, dest, head.version, "it is ahead of the local store"));
        }
        // Empty, or behind the primary's base snapshot: the snapshot first.
        return match snapshot {
            Some(snap) => {
                send_snapshot(primary, dest, &snap, head.version)?;
                report.snapshot = Some(snap.version);
                Ok(Position { seq: snap.seq, parts: 0 })
            }
            None => Ok(Position { seq: 0, parts: 0 }),
        };
    };
    let Some(mine) = change_at(primary, seq)? else {
        return Ok(Position { seq, parts: 0 });
    };
    let was_rewound = seq > 0 && rewound == Some(seq - 1);
    if mine.transactions.len() < 2 && !was_rewound {
        return Ok(Position { seq, parts: mine.transactions.len() });
    }
    let theirs = last_change_of(dest)?.map(|c| c.transactions).unwrap_or_default();
    let same = |a: &crate::Transaction, b: &crate::Transaction| a.statements == b.statements;
    if theirs.len() <= mine.transactions.len() && theirs.iter().zip(&mine.transactions).all(|(a, b)| same(a, b)) {
        return Ok(Position { seq, parts: theirs.len() });
    }
    if may_rewind && was_rewound && head.rewind_allowed {
        dest.rewind()?;
        report.rewound = true;
        return align(primary, dest, report, false);
    }
    Err(diverged(
        primary,
        dest,
        head.version,
        &format!("its change at version {} differs from the local store's", head.version),
    ))
}

/// Stream the primary's base snapshot `snap` into `dest`, checking that
/// the snapshot copied is that one (a compaction may have replaced it
/// since it was looked up) and that all its bytes arrived.
fn send_snapshot(
    primary: &Store,
    dest: &dyn Destination,
    snap: &SnapshotInfo,
    dest_version: u32,
) -> Result<SnapshotInfo> {
    let (tx, rx) = sync_channel(PIPE_CHUNKS);
    let (stored, copied, local_failed) = std::thread::scope(|scope| {
        let writer = scope.spawn(move || {
            let mut pipe = PipeWriter { tx: Some(tx) };
            let copied = primary.reader().and_then(|r| {
                if r.snapshot().map(|s| s.seq) != Some(snap.seq) {
                    return Err(Error::Destination {
                        url: primary.path().display().to_string(),
                        what: "its snapshot was replaced by a compaction while it was being sent; try again".into(),
                    });
                }
                r.copy_snapshot(&mut pipe)
            });
            pipe.finish(copied.as_ref().map(|_| ()).map_err(ToString::to_string));
            copied
        });
        let mut pipe = PipeReader { rx, buf: Vec::new(), at: 0, ended: false, failed: false };
        let stored = dest.add_snapshot(snap.version, &mut pipe);
        let local_failed = pipe.failed;
        // Unblock the writer if the destination stopped reading early.
        drop(pipe);
        let copied = writer.join().unwrap_or_else(|_| {
            Err(Error::Destination {
                url: primary.path().display().to_string(),
                what: "reading its snapshot stopped unexpectedly".into(),
            })
        });
        (stored, copied, local_failed)
    });
    // Whichever side failed first: the other's failure is its consequence.
    let copied = match (&stored, copied) {
        (Err(_), Err(_)) if !local_failed => 0,
        (_, Err(e)) => return Err(e),
        (_, Ok(n)) => n,
    };
    let info = stored.map_err(|e| Error::Destination {
        url: dest.location().to_string(),
        what: format!(
            "at version {dest_version}, it needs the local store's snapshot at version {}, which it refused: {e}",
            snap.version
        ),
    })?;
    if info.size != snap.size || copied != snap.size {
        return Err(Error::Destination {
            url: dest.location().to_string(),
            what: format!("stored {} bytes of a {}-byte snapshot", info.size, snap.size),
        });
    }
    Ok(info)
}

enum Chunk {
    Data(Vec<u8>),
    End,
    Failed(String),
}

/// The writing half of the snapshot's pipe: bounded, so the image is never
/// held whole.
struct PipeWriter {
    tx: Option<SyncSender<Chunk>>,
}

impl PipeWriter {
    fn finish(&mut self, result: std::result::Result<(), String>) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(match result {
                Ok(()) => Chunk::End,
                Err(e) => Chunk::Failed(e),
            });
        }
    }
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let Some(tx) = &self.tx else {
            return Err(std::io::Error::new(std::io::ErrorKind::BrokenPipe, "snapshot pipe closed"));
        };
        tx.send(Chunk::Data(buf.to_vec()))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the destination stopped reading"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The reading half: an image that stops before its end marker is an
/// error, never a shorter snapshot.
struct PipeReader {
    rx: Receiver<Chunk>,
    buf: Vec<u8>,
    at: usize,
    ended: bool,
    /// The local side reported a failure (not the destination).
    failed: bool,
}

impl Read for PipeReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Chunk::Data(data)) => {
                    self.buf = data;
                    self.at = 0;
                }
                Ok(Chunk::End) => self.ended = true,
                Ok(Chunk::Failed(e)) => {
                    self.failed = true;
                    return Err(std::io::Error::other(format!("reading the local snapshot: {e}")));
                }
                Err(_) => {
                    self.failed = true;
                    return Err(std::io::Error::other("the local snapshot stopped before its end"));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Send `dest` what the primary holds after `position`: the missing parts
/// of the record at it, then every later change, in batches. Returns the
/// new position.
fn ship(primary: &Store, dest: &dyn Destination, mut position: Position, report: &mut CaughtUp) -> Result<Position> {
    if let Some(change) = change_at(primary, position.seq)? {
        for transaction in change.transactions.iter().skip(position.parts) {
            let statements: Vec<&str> = transaction.statements.iter().map(String::as_str).collect();
            dest.add_change(change.data_version(), &statements)?;
            position.parts += 1;
            report.transactions += 1;
        }
    }
    let reader = primary.reader()?;
    let head = reader.head();
    if position.seq < reader.restorable().0 {
        // Compacted past the replica meanwhile: align sends the snapshot.
        drop(reader);
        let aligned = align(primary, dest, report, false)?;
        return ship(primary, dest, aligned, report);
    }
    let mut batch: Vec<Change> = Vec::new();
    let mut bytes = 0usize;
    for change in reader.changes_after(position.seq, head)? {
        let change = change?;
        bytes += change.transactions.iter().flat_map(|t| &t.statements).map(String::len).sum::<usize>();
        batch.push(change);
        if batch.len() >= BATCH_CHANGES || bytes >= BATCH_BYTES {
            position = send_batch(dest, &batch, position, report)?;
            batch.clear();
            bytes = 0;
        }
    }
    send_batch(dest, &batch, position, report)
}

fn send_batch(dest: &dyn Destination, batch: &[Change], position: Position, report: &mut CaughtUp) -> Result<Position> {
    let Some(last) = batch.last() else {
        return Ok(position);
    };
    dest.add_changes(batch)?;
    report.transactions += batch.iter().map(|c| c.transactions.len() as u64).sum::<u64>();
    Ok(Position { seq: last.seq, parts: last.transactions.len() })
}

/// How an [`AsyncReplica`] keeps up, and when writes wait for it.
///
/// ```
/// use cln_backup::destination::replica::ReplicaOptions;
/// use std::time::Duration;
///
/// let mut options = ReplicaOptions::default();
/// assert_eq!((options.max_lag_changes, options.max_lag), (1000, Duration::from_secs(60)));
/// assert_eq!((options.min_retry, options.max_retry), (Duration::from_secs(1), Duration::from_secs(300)));
/// // A slow link: let the copy fall further behind before writes wait.
/// options.max_lag_changes = 10_000;
/// options.max_lag = Duration::from_secs(600);
/// assert_ne!(options, ReplicaOptions::default());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaOptions {
    /// While the replica is healthy, a write waits once it is this many
    /// changes behind (default 1000).
    pub max_lag_changes: u64,
    /// ... or once its oldest unsent change is this old (default 60 s).
    pub max_lag: Duration,
    /// How often the replica looks for work without being woken (default 30 s).
    pub poll: Duration,
    /// The first wait after a failure (default 1 s); each further failure
    /// doubles it, up to `max_retry` (default 5 min).
    pub min_retry: Duration,
    /// The longest wait between attempts while failing.
    pub max_retry: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> ReplicaOptions {
        ReplicaOptions {
            max_lag_changes: 1000,
            max_lag: Duration::from_secs(60),
            poll: Duration::from_secs(30),
            min_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(300),
        }
    }
}

/// What an [`AsyncReplica`] reports, for `backup-status`.
///
/// ```
/// use cln_backup::destination::replica::{AsyncReplica, Opener, ReplicaOptions};
/// use cln_backup::destination::{self, Access, Destination, FileDestination};
/// use cln_backup::Store;
/// use std::sync::Arc;
///
/// # use cln_backup::version::bump_statement;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
/// let missing = dir.path().join("unmounted").join("replica.redb");
/// let open: Opener = Box::new({
///     let missing = missing.clone();
///     move || destination::open(&missing, Access::Write)
/// });
/// let replica =
///     AsyncReplica::start_opening(primary, missing.display().to_string(), open, ReplicaOptions::default())?;
/// // The copy cannot be opened: the replica is failing, and says why.
/// assert!(!replica.flush());
/// let status = replica.status();
/// assert_eq!((status.head, status.lag_changes, status.transitions), (None, None, 1));
/// assert!(status.last_error.unwrap().contains(&missing.display().to_string()));
/// assert!(status.last_error_ms.is_some() && status.last_success_ms.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReplicaStatus {
    /// The destination's `data_version` as last seen, once known.
    pub head: Option<u32>,
    /// Changes the primary holds that the replica does not (known once it
    /// was reached).
    pub lag_changes: Option<u64>,
    /// Seconds since the oldest change it lacks was stored (0 when none).
    pub lag_seconds: u64,
    /// The last failure, if the last attempt failed.
    pub last_error: Option<String>,
    /// When that failure happened, in milliseconds since the Unix epoch.
    pub last_error_ms: Option<u64>,
    /// When an attempt last succeeded, in milliseconds since the Unix epoch.
    pub last_success_ms: Option<u64>,
    /// How many times it went from healthy to failing or back: a front end
    /// logs once per change of state by watching this number.
    pub transitions: u64,
}

struct Inner {
    stop: bool,
    woken: bool,
    /// The replica's position; `None` until reached, and after a failure.
    position: Option<Position>,
    /// The primary's rewind marker when the position was found.
    rewound_seen: Option<Seq>,
    /// When the oldest change the replica lacks was stored (an upper bound:
    /// the start of the round after which it was still behind).
    behind_since: Option<Instant>,
    failing: bool,
    status: ReplicaStatus,
}

/// Opens a replica's destination: again after each failure, so that a
/// destination unreachable at start, or whose connection broke, is retried
/// whole.
///
/// ```
/// use cln_backup::destination::replica::{AsyncReplica, Opener, ReplicaOptions};
/// use cln_backup::destination::{self, Access, Destination, FileDestination};
/// use cln_backup::Store;
/// use std::sync::Arc;
///
/// # use cln_backup::version::bump_statement;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
/// let path = dir.path().join("replica.redb");
/// # drop(Store::create(&path)?);
/// let open: Opener = Box::new({
///     let path = path.clone();
///     move || destination::open(&path, Access::Write)
/// });
/// let replica =
///     AsyncReplica::start_opening(primary, path.display().to_string(), open, ReplicaOptions::default())?;
/// assert!(replica.flush());
/// drop(replica);
/// assert_eq!(Store::open(&path)?.version(), 1);
/// # Ok(()) }
/// ```
pub type Opener = Box<dyn Fn() -> Result<Box<dyn Destination>> + Send + Sync>;

struct Shared {
    primary: Arc<dyn Destination>,
    location: String,
    /// The destination while open; `None` before the first open and after
    /// a failure, when there is an opener.
    dest: Mutex<Option<Arc<dyn Destination>>>,
    opener: Option<Opener>,
    options: ReplicaOptions,
    inner: Mutex<Inner>,
    /// Wakes the thread: a commit, a stop.
    wake: Condvar,
    /// Wakes writers waiting for the replica: a round ended.
    progressed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn dest_slot(&self) -> MutexGuard<'_, Option<Arc<dyn Destination>>> {
        self.dest.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The destination, opened if it is not.
    fn dest(&self) -> Result<Arc<dyn Destination>> {
        if let Some(dest) = self.dest_slot().as_ref() {
            return Ok(Arc::clone(dest));
        }
        let Some(open) = &self.opener else {
            return Err(Error::Destination { url: self.location.clone(), what: "is closed".into() });
        };
        let dest: Arc<dyn Destination> = Arc::from(open()?);
        *self.dest_slot() = Some(Arc::clone(&dest));
        Ok(dest)
    }
}

/// A destination kept close behind a local store by a thread of its own:
/// woken after each local commit ([`notify`](AsyncReplica::notify)) and on
/// a timer, it sends what the primary holds and the destination lacks
/// ([`catch_up`]'s rules). A failure never reaches the writer: it is
/// recorded in [`status`](AsyncReplica::status) and retried with a backoff.
/// While the destination is healthy and the lag bound of
/// [`ReplicaOptions`] is reached, [`wait_within_bound`](AsyncReplica::wait_within_bound)
/// holds the writer until the replica is back within it (back-pressure), so
/// a healthy async copy is never far behind.
///
/// ```
/// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
/// use cln_backup::destination::{Destination, FileDestination};
/// use cln_backup::Store;
/// use std::sync::Arc;
///
/// # use cln_backup::version::bump_statement;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("node.redb"))?;
/// # store.add_change(1, &[
/// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
/// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
/// #     bump_statement(1),
/// # ])?;
/// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
/// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
/// let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), ReplicaOptions::default())?;
/// for v in 2..=5 {
///     primary.add_change(v, &[&format!("INSERT INTO vars VALUES ('v{v}', {v})"), &bump_statement(v)])?;
///     replica.notify();
///     replica.wait_within_bound();
/// }
/// // At shutdown: wait for the copy, then stop the thread.
/// assert!(replica.flush());
/// drop(replica);
/// assert_eq!(copy.head()?.version, 5);
/// # Ok(()) }
/// ```
pub struct AsyncReplica {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for AsyncReplica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncReplica").field("dest", &self.shared.location).finish_non_exhaustive()
    }
}

impl AsyncReplica {
    /// Start replicating the local store `primary` (a destination whose
    /// [`local_store`](Destination::local_store) is `Some`) into `dest`.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
    /// let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), ReplicaOptions::default())?;
    /// // Its first round runs at once: the copy gets version 1.
    /// assert!(replica.flush());
    /// assert_eq!(copy.head()?.version, 1);
    /// # Ok(()) }
    /// ```
    pub fn start(
        primary: Arc<dyn Destination>,
        dest: Arc<dyn Destination>,
        options: ReplicaOptions,
    ) -> Result<AsyncReplica> {
        let location = dest.location().to_string();
        AsyncReplica::spawn(primary, location, Some(dest), None, options)
    }

    /// Start replicating `primary` into the destination at `location` that
    /// `open` opens: at the first round, and again after each failure. A
    /// destination that cannot be opened at start is a failing replica (in
    /// [`status`](AsyncReplica::status), retried), not an error.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, Opener, ReplicaOptions};
    /// use cln_backup::destination::{self, Access, Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// // A disk that is not mounted yet: the replica starts all the same.
    /// let missing = dir.path().join("unmounted").join("replica.redb");
    /// let open: Opener = Box::new({
    ///     let missing = missing.clone();
    ///     move || destination::open(&missing, Access::Write)
    /// });
    /// let replica =
    ///     AsyncReplica::start_opening(primary, missing.display().to_string(), open, ReplicaOptions::default())?;
    /// assert!(!replica.flush(), "failing, retried later");
    /// assert!(replica.status().last_error.is_some());
    /// # Ok(()) }
    /// ```
    pub fn start_opening(
        primary: Arc<dyn Destination>,
        location: impl Into<String>,
        open: Opener,
        options: ReplicaOptions,
    ) -> Result<AsyncReplica> {
        AsyncReplica::spawn(primary, location.into(), None, Some(open), options)
    }

    fn spawn(
        primary: Arc<dyn Destination>,
        location: String,
        dest: Option<Arc<dyn Destination>>,
        opener: Option<Opener>,
        options: ReplicaOptions,
    ) -> Result<AsyncReplica> {
        if primary.local_store().is_none() {
            return Err(Error::Destination {
                url: location,
                what: format!(
                    "an async replica needs a local store to send from, and {} is not one",
                    primary.location()
                ),
            });
        }
        let inner = Inner {
            stop: false,
            woken: true,
            position: None,
            rewound_seen: None,
            behind_since: None,
            failing: false,
            status: ReplicaStatus {
                head: None,
                lag_changes: None,
                lag_seconds: 0,
                last_error: None,
                last_error_ms: None,
                last_success_ms: None,
                transitions: 0,
            },
        };
        let shared = Arc::new(Shared {
            primary,
            location,
            dest: Mutex::new(dest),
            opener,
            options,
            inner: Mutex::new(inner),
            wake: Condvar::new(),
            progressed: Condvar::new(),
        });
        let for_thread = Arc::clone(&shared);
        let thread =
            std::thread::Builder::new().name("replica".into()).spawn(move || run(&for_thread)).map_err(|e| {
                Error::Destination { url: shared.location.clone(), what: format!("cannot start its thread: {e}") }
            })?;
        Ok(AsyncReplica { shared, thread: Some(thread) })
    }

    /// The destination, as messages name it.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
    /// let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), ReplicaOptions::default())?;
    /// assert_eq!(replica.location(), copy.location());
    /// assert!(replica.location().ends_with("copy.redb"));
    /// # Ok(()) }
    /// ```
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    /// The primary stored a change: wake the thread (unless it is waiting
    /// out a failure's backoff).
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
    /// # let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), ReplicaOptions::default())?;
    /// # assert!(replica.flush());
    /// primary.add_change(2, &["INSERT INTO vars VALUES ('a', 1)", &bump_statement(2)])?;
    /// replica.notify();
    /// assert!(replica.flush());
    /// assert_eq!(copy.head()?.version, 2);
    /// # Ok(()) }
    /// ```
    pub fn notify(&self) {
        let mut inner = self.shared.lock();
        inner.woken = true;
        if inner.behind_since.is_none() {
            inner.behind_since = Some(Instant::now());
        }
        drop(inner);
        self.shared.wake.notify_all();
    }

    /// Back-pressure: while the destination is healthy and behind by the
    /// bound or more, wait until it is back within it. Returns at once
    /// while it is failing (writes go on), or when it starts failing.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
    /// let mut options = ReplicaOptions::default();
    /// options.max_lag_changes = 1; // as good as sync, for the example
    /// let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), options)?;
    /// # assert!(replica.flush());
    /// for v in 2..=4 {
    ///     primary.add_change(v, &[&format!("INSERT INTO vars VALUES ('v{v}', {v})"), &bump_statement(v)])?;
    ///     replica.notify();
    ///     // One change behind is the bound: this waits until the copy has it.
    ///     replica.wait_within_bound();
    ///     assert_eq!(copy.head()?.version, v);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn wait_within_bound(&self) {
        let mut inner = self.shared.lock();
        while !inner.stop && !inner.failing && self.over_bound(&inner) {
            inner = self.shared.progressed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn over_bound(&self, inner: &Inner) -> bool {
        let Some(store) = self.shared.primary.local_store() else {
            return false;
        };
        let Some(position) = inner.position else {
            // Not reached yet: nothing to measure the lag against; the
            // bound applies from the first round on.
            return false;
        };
        let lag = store.head().saturating_sub(position.seq);
        lag >= self.shared.options.max_lag_changes
            || (lag > 0 && inner.behind_since.is_some_and(|t| t.elapsed() >= self.shared.options.max_lag))
    }

    /// How many times the replica started failing or recovered: cheap
    /// to read on every write, to tell whether its state changed.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, Opener, ReplicaOptions};
    /// use cln_backup::destination::{self, Access, Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// # let missing = dir.path().join("unmounted").join("replica.redb");
    /// # let open: Opener = Box::new({
    /// #     let missing = missing.clone();
    /// #     move || destination::open(&missing, Access::Write)
    /// # });
    /// # let replica =
    /// #     AsyncReplica::start_opening(primary, missing.display().to_string(), open, ReplicaOptions::default())?;
    /// // A replica whose copy cannot be opened: its first round fails.
    /// assert!(!replica.flush());
    /// assert_eq!(replica.transitions(), 1, "healthy to failing");
    /// # Ok(()) }
    /// ```
    pub fn transitions(&self) -> u64 {
        self.shared.lock().status.transitions
    }

    /// Where the replica stands.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
    /// let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), ReplicaOptions::default())?;
    /// assert!(replica.flush());
    /// let status = replica.status();
    /// assert_eq!((status.head, status.lag_changes, status.lag_seconds), (Some(1), Some(0), 0));
    /// assert!(status.last_error.is_none() && status.last_success_ms.is_some());
    /// # Ok(()) }
    /// ```
    pub fn status(&self) -> ReplicaStatus {
        let inner = self.shared.lock();
        let mut status = inner.status.clone();
        if let (Some(position), Some(store)) = (inner.position, self.shared.primary.local_store()) {
            let lag = store.head().saturating_sub(position.seq);
            status.lag_changes = Some(lag);
            status.lag_seconds = if lag == 0 { 0 } else { inner.behind_since.map_or(0, |t| t.elapsed().as_secs()) };
        } else {
            status.lag_seconds = inner.behind_since.map_or(0, |t| t.elapsed().as_secs());
        }
        status
    }

    /// Wait until the replica holds the primary's head, or its current
    /// attempt failed; `true` when it holds it. For a clean shutdown and
    /// for tests.
    ///
    /// ```
    /// use cln_backup::destination::replica::{AsyncReplica, ReplicaOptions};
    /// use cln_backup::destination::{Destination, FileDestination};
    /// use cln_backup::Store;
    /// use std::sync::Arc;
    ///
    /// # use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// # let store = Store::create(dir.path().join("node.redb"))?;
    /// # store.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
    /// #     "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
    /// #     bump_statement(1),
    /// # ])?;
    /// let primary: Arc<dyn Destination> = Arc::new(FileDestination::new(store));
    /// let copy: Arc<dyn Destination> = Arc::new(FileDestination::new(Store::create(dir.path().join("copy.redb"))?));
    /// let replica = AsyncReplica::start(Arc::clone(&primary), Arc::clone(&copy), ReplicaOptions::default())?;
    /// for v in 2..=3 {
    ///     primary.add_change(v, &[&format!("INSERT INTO vars VALUES ('v{v}', {v})"), &bump_statement(v)])?;
    ///     replica.notify();
    /// }
    /// // A clean shutdown: everything sent before the thread stops.
    /// assert!(replica.flush());
    /// drop(replica);
    /// assert_eq!(copy.head()?.version, 3);
    /// # Ok(()) }
    /// ```
    pub fn flush(&self) -> bool {
        if self.shared.lock().failing {
            return false;
        }
        self.notify();
        let mut inner = self.shared.lock();
        loop {
            let store_head = self.shared.primary.local_store().map(Store::head);
            let caught = inner.position.is_some_and(|p| Some(p.seq) == store_head) && !inner.woken;
            if caught {
                return true;
            }
            if inner.failing || inner.stop {
                return false;
            }
            inner = self.shared.progressed.wait(inner).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for AsyncReplica {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        self.shared.progressed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The replica's thread: a round whenever woken or the timer expires, or
/// after the backoff while failing.
fn run(shared: &Shared) {
    let mut retry = shared.options.min_retry;
    let mut next_try: Option<Instant> = None;
    loop {
        {
            let mut inner = shared.lock();
            loop {
                if inner.stop {
                    return;
                }
                let now = Instant::now();
                match next_try {
                    // Failing: wait out the backoff whatever wakes us.
                    Some(at) if at > now => {
                        inner = shared.wake.wait_timeout(inner, at - now).unwrap_or_else(|p| p.into_inner()).0;
                    }
                    Some(_) => break,
                    None if inner.woken => break,
                    None => {
                        let (guard, timeout) =
                            shared.wake.wait_timeout(inner, shared.options.poll).unwrap_or_else(|p| p.into_inner());
                        inner = guard;
                        if timeout.timed_out() {
                            break;
                        }
                    }
                }
            }
            inner.woken = false;
        }
        let started = Instant::now();
        let outcome = round(shared);
        let mut inner = shared.lock();
        match outcome {
            Ok((position, head)) => {
                inner.position = Some(position);
                inner.status.head = Some(head);
                inner.status.last_success_ms = Some(crate::now_ms());
                let primary_head = shared.primary.local_store().map_or(position.seq, Store::head);
                inner.behind_since = (primary_head > position.seq).then_some(started);
                if inner.failing {
                    inner.failing = false;
                    inner.status.transitions += 1;
                }
                inner.status.last_error = None;
                retry = shared.options.min_retry;
                next_try = None;
                if primary_head > position.seq {
                    inner.woken = true;
                }
            }
            Err(e) => {
                inner.position = None;
                if shared.opener.is_some() {
                    // Opened again at the next attempt.
                    *shared.dest_slot() = None;
                }
                inner.status.last_error = Some(e.to_string());
                inner.status.last_error_ms = Some(crate::now_ms());
                if !inner.failing {
                    inner.failing = true;
                    inner.status.transitions += 1;
                }
                next_try = Some(Instant::now() + retry);
                retry = (retry * 2).min(shared.options.max_retry);
            }
        }
        drop(inner);
        shared.progressed.notify_all();
    }
}

/// One round: find the replica's position if it is not known (or the
/// primary rewound since), then send what it lacks.
fn round(shared: &Shared) -> Result<(Position, u32)> {
    let Some(primary) = shared.primary.local_store() else {
        return Err(Error::Destination { url: shared.location.clone(), what: "no local store to send from".into() });
    };
    let dest = shared.dest()?;
    let dest = dest.as_ref();
    let (known, seen) = {
        let inner = shared.lock();
        (inner.position, inner.rewound_seen)
    };
    let rewound = primary.rewound_at();
    let mut report = CaughtUp::default();
    let position = match known {
        Some(p) if seen == rewound && p.seq <= primary.head() => p,
        _ => {
            let p = align(primary, dest, &mut report, true)?;
            shared.lock().rewound_seen = rewound;
            p
        }
    };
    let position = ship(primary, dest, position, &mut report)?;
    Ok((position, data_version(position.seq)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::destination::FileDestination;
    use crate::version::bump_statement;

    fn reader_of(chunks: Vec<Chunk>, close: bool) -> PipeReader {
        let (tx, rx) = sync_channel(chunks.len() + 1);
        for c in chunks {
            tx.send(c).unwrap();
        }
        if !close {
            std::mem::forget(tx);
        }
        PipeReader { rx, buf: Vec::new(), at: 0, ended: false, failed: false }
    }

    #[test]
    fn an_image_cut_short_is_an_error_never_a_shorter_snapshot() {
        let mut whole = Vec::new();
        reader_of(vec![Chunk::Data(b"abc".to_vec()), Chunk::Data(b"de".to_vec()), Chunk::End], true)
            .read_to_end(&mut whole)
            .unwrap();
        assert_eq!(whole, b"abcde");
        let mut cut = reader_of(vec![Chunk::Data(b"abc".to_vec())], true);
        let err = cut.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("before its end") && cut.failed, "{err}");
        let mut failed = reader_of(vec![Chunk::Data(b"abc".to_vec()), Chunk::Failed("damaged".into())], true);
        let err = failed.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(err.to_string().contains("damaged"), "{err}");
    }

    #[test]
    fn a_replica_behind_the_snapshot_that_refuses_it_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let primary = Store::create(dir.path().join("p.redb")).unwrap();
        let replica = FileDestination::new(Store::create(dir.path().join("r.redb")).unwrap());
        let first = [
            "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)".to_string(),
            "INSERT INTO vars VALUES ('data_version', 0)".to_string(),
            bump_statement(1),
        ];
        primary.add_change(1, &first).unwrap();
        catch_up(&primary, &replica).unwrap();
        for v in 2..=6 {
            primary.add_change(v, &[format!("INSERT INTO vars VALUES ('v{v}', {v})"), bump_statement(v)]).unwrap();
        }
        crate::compact::compact(&primary, &Default::default()).unwrap();
        // The replica (at 1) is below the primary's snapshot (at 5), and a
        // local store takes a snapshot only at its head or when empty.
        let err = catch_up(&primary, &replica).unwrap_err().to_string();
        assert!(err.starts_with(&dir.path().join("r.redb").display().to_string()), "{err}");
        assert!(err.contains("snapshot at version 5") && err.contains("at version 1"), "{err}");
        // An empty one takes it, and the change after it.
        let fresh = FileDestination::new(Store::create(dir.path().join("f.redb")).unwrap());
        let done = catch_up(&primary, &fresh).unwrap();
        assert_eq!((done.snapshot, done.to, done.transactions), (Some(5), 6, 1));
    }
}
