//! The server's side of one socket-protocol connection, over a local
//! [`Store`]: what `cln-backup server` runs for each client.
//!
//! Owns the answer to every packet a client sends: a change acknowledged
//! only once the store has it durably, snapshots staged in a temporary file
//! before the store takes them, rewinds under the store's rules, metadata,
//! streamed restores, compaction, and the token check. It must not listen,
//! accept or choose between clients (the front end does), nor add rules of
//! its own to what the store accepts.
//!
//! A packet that breaks the protocol (unknown type, over its limit,
//! truncated, bad zlib, statements that are not UTF-8) is answered NACK
//! where the client could read it, and the connection is closed with an
//! error naming the peer; nothing of that packet is stored. A well-formed
//! request the store refuses (a gap, a rewind too far) is answered NACK with
//! the reason, and the connection goes on.

use super::packet::{self, Header, Kind, SnapshotStager, Wire};
use crate::compact;
use crate::store::Store;
use crate::version::data_version;
use crate::{Error, Result};
use std::io::{BufReader, BufWriter, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// Longest pre-shared token accepted.
pub(crate) const MAX_TOKEN: usize = 4096;

/// How long a connection may stay silent, by default, before the server
/// closes it when another client is waiting. The plugin keeps its
/// connection open and may be quiet for long (lightningd writes little
/// between blocks); it is closed only when someone else wants the server,
/// typically the same node restarted while its old connection vanished
/// without closing (a power cut). A client whose quiet connection was
/// closed reconnects on its next request.
pub const YIELD_AFTER: Duration = Duration::from_secs(5);

/// How often a quiet connection looks for waiting clients.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// How long the rest of a packet may take once its header arrived, and how
/// long a write to the client may wait for it to read.
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether other clients wait for the server (see [`ServeOptions::others_waiting`]).
pub type OthersWaiting = std::sync::Arc<dyn Fn() -> bool + Send + Sync>;

/// How [`serve_connection`] serves.
///
/// ```
/// use cln_backup::destination::{serve_connection, ServeOptions, SocketDestination, SocketUrl};
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("server.redb"))?;
/// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let url = SocketUrl::parse(&format!("socket:{}", listener.local_addr()?))?;
/// let mut options = ServeOptions::new();
/// options.token = Some(b"s3cret".to_vec());
/// options.scratch_dir = Some(dir.path().to_path_buf());
/// // A client without the token is refused; one with it is served.
/// for (token, accepted) in [(None, false), (Some(b"s3cret\n".to_vec()), true)] {
///     let url = url.clone();
///     let client = std::thread::spawn(move || SocketDestination::connect(&url, token).map(drop));
///     let (stream, _) = listener.accept()?;
///     assert_eq!(serve_connection(&store, &stream, &options).is_ok(), accepted);
///     assert_eq!(client.join().unwrap().is_ok(), accepted);
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The pre-shared token every connection must send first (surrounding
    /// white space ignored); `None` accepts every client, old ones included.
    pub token: Option<Vec<u8>>,
    /// Where snapshots are staged while they arrive and while a restore
    /// compresses one; the store's directory when `None`.
    pub scratch_dir: Option<PathBuf>,
    /// Silence between packets after which the connection is closed
    /// whether or not others wait; `None` (the default) never closes a
    /// quiet connection on its own.
    pub idle_timeout: Option<Duration>,
    /// Silence after which the connection is closed when
    /// [`others_waiting`](ServeOptions::others_waiting) says another client
    /// waits (5 seconds by default: well below a client's 60-second wait for an answer).
    pub yield_after: Duration,
    /// Asked about once a second while the connection is quiet: whether
    /// another client waits for the server. `None`: never.
    pub others_waiting: Option<OthersWaiting>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .field("scratch_dir", &self.scratch_dir)
            .field("idle_timeout", &self.idle_timeout)
            .field("yield_after", &self.yield_after)
            .field("others_waiting", &self.others_waiting.is_some())
            .finish()
    }
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            token: None,
            scratch_dir: None,
            idle_timeout: None,
            yield_after: YIELD_AFTER,
            others_waiting: None,
        }
    }
}

impl ServeOptions {
    /// No token, snapshots staged beside the store, a quiet connection
    /// closed after 5 seconds only when another client waits.
    ///
    /// ```
    /// use cln_backup::destination::ServeOptions;
    /// use std::time::Duration;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let options = ServeOptions::new();
    /// assert!(options.token.is_none() && options.scratch_dir.is_none());
    /// assert_eq!(options.idle_timeout, None);
    /// assert_eq!(options.yield_after, Duration::from_secs(5));
    /// assert!(options.others_waiting.is_none());
    /// # Ok(()) }
    /// ```
    pub fn new() -> ServeOptions {
        ServeOptions::default()
    }
}

/// What one connection did.
///
/// ```
/// use cln_backup::destination::{serve_connection, Destination, ServeOptions, SocketDestination, SocketUrl};
/// use cln_backup::version::bump_statement;
/// use cln_backup::Store;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// # let store = Store::create(dir.path().join("server.redb"))?;
/// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let url = SocketUrl::parse(&format!("socket:{}", listener.local_addr()?))?;
/// let client = std::thread::spawn(move || -> cln_backup::Result<()> {
///     let dest = SocketDestination::connect(&url, None)?;
///     dest.add_change(1, &["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", &bump_statement(1)])?;
///     dest.add_change(2, &["INSERT INTO vars VALUES ('a', 1)", &bump_statement(2)])?;
///     dest.rewind()?;
///     // A gap: refused, and the connection goes on.
///     assert!(dest.add_change(5, &["INSERT INTO vars VALUES ('b', 2)", &bump_statement(5)]).is_err());
///     Ok(())
/// });
/// let (stream, _) = listener.accept()?;
/// let served = serve_connection(&store, &stream, &ServeOptions::new())?;
/// client.join().unwrap()?;
/// assert_eq!((served.changes, served.rewinds, served.refused), (2, 1, 1));
/// assert!(!served.idle, "the client closed the connection");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Served {
    /// Changes stored and acknowledged.
    pub changes: u64,
    /// Snapshots stored.
    pub snapshots: u64,
    /// Rewinds done.
    pub rewinds: u64,
    /// Restores streamed.
    pub restores: u64,
    /// Requests answered NACK (refused by the store).
    pub refused: u64,
    /// Whether the connection was closed for being quiet (another client
    /// waited, or [`ServeOptions::idle_timeout`] passed).
    pub idle: bool,
}

/// Serve one connection over `store` until the client closes it.
///
/// `Ok` when the client closed the connection, or it was closed for being
/// quiet (see [`ServeOptions::yield_after`]); an error naming the peer when the
/// connection failed or was closed by us for a packet that breaks the
/// protocol or a missing or wrong token.
///
/// ```
/// use cln_backup::destination::{serve_connection, Destination, ServeOptions, SocketDestination, SocketUrl};
/// use cln_backup::version::bump_statement;
/// use cln_backup::Store;
/// use std::net::TcpListener;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let store = Store::create(dir.path().join("server.redb"))?;
/// let listener = TcpListener::bind("127.0.0.1:0")?;
/// let url = SocketUrl::parse(&format!("socket:{}", listener.local_addr()?))?;
/// // A client in another thread: its change is acknowledged once the store has it.
/// let client = std::thread::spawn(move || -> cln_backup::Result<()> {
///     let dest = SocketDestination::connect(&url, None)?;
///     dest.add_change(1, &["CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)", &bump_statement(1)])?;
///     Ok(())
/// });
/// let (stream, _) = listener.accept()?;
/// let served = serve_connection(&store, &stream, &ServeOptions::new())?;
/// client.join().unwrap()?;
/// assert_eq!(served.changes, 1);
/// assert_eq!(store.version(), 1);
/// # Ok(()) }
/// ```
pub fn serve_connection(store: &Store, stream: &TcpStream, options: &ServeOptions) -> Result<Served> {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "peer".into());
    let fail = |what: String| Error::Protocol { peer: peer.clone(), what };
    let _ = stream.set_nodelay(true);
    // A client that stops reading (during a restore) must not hold the server.
    let _ = stream.set_write_timeout(Some(PACKET_TIMEOUT));
    let mut conn = Connection {
        store,
        stream,
        reader: BufReader::with_capacity(64 << 10, stream),
        options,
        served: Served::default(),
        scratch: match &options.scratch_dir {
            Some(d) => d.clone(),
            None => match store.path().parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            },
        },
    };
    let mut authorised = options.token.is_none();
    loop {
        match wait_for_packet(stream, &conn.reader, options) {
            Ok(Wait::Packet) => {}
            Ok(Wait::Closed) => return Ok(conn.served),
            Ok(Wait::Quiet) => {
                conn.served.idle = true;
                return Ok(conn.served);
            }
            Err(e) => return Err(fail(format!("connection error: {e}"))),
        }
        let h = match packet::read_header(&mut conn.reader) {
            Ok(h) => h,
            Err(Wire::Closed) => return Ok(conn.served),
            Err(w) => {
                conn.nack_if_possible(&w);
                return Err(fail(w.to_string()));
            }
        };
        let _ = stream.set_read_timeout(Some(PACKET_TIMEOUT));
        if !authorised {
            if h.kind != Kind::Token {
                conn.send(&nack(store.version(), "this server requires a token first"));
                return Err(fail(format!("sent {} without the token this server requires; closed", h.kind.name())));
            }
            let token = match packet::read_small(&mut conn.reader, h) {
                Ok(t) => t,
                Err(w) => return Err(fail(w.to_string())),
            };
            if !token_matches(options.token.as_deref().unwrap_or_default(), &token) {
                conn.send(&nack(store.version(), "wrong token"));
                return Err(fail("sent a wrong token; closed".into()));
            }
            authorised = true;
            conn.send(&packet::packet(Kind::Ack, &[]));
            continue;
        }
        match conn.handle(h) {
            Ok(()) => {}
            Err(Fatal::Wire(w)) => {
                conn.nack_if_possible(&w);
                return Err(fail(w.to_string()));
            }
            Err(Fatal::Store(e)) => return Err(fail(e.to_string())),
        }
    }
}

/// What waiting for the next packet found.
enum Wait {
    /// Its first byte is there.
    Packet,
    /// The client closed the connection.
    Closed,
    /// The connection was quiet long enough to be closed.
    Quiet,
}

/// Wait for the next packet's first byte, looking every [`IDLE_TICK`]
/// whether the connection has been quiet long enough to be closed.
fn wait_for_packet(
    stream: &TcpStream,
    reader: &BufReader<&TcpStream>,
    options: &ServeOptions,
) -> std::io::Result<Wait> {
    if !reader.buffer().is_empty() {
        return Ok(Wait::Packet);
    }
    let started = std::time::Instant::now();
    stream.set_read_timeout(Some(IDLE_TICK))?;
    loop {
        match stream.peek(&mut [0u8; 1]) {
            Ok(0) => return Ok(Wait::Closed),
            Ok(_) => return Ok(Wait::Packet),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                let quiet = started.elapsed();
                if options.idle_timeout.is_some_and(|limit| quiet >= limit) {
                    return Ok(Wait::Quiet);
                }
                if quiet >= options.yield_after && options.others_waiting.as_ref().is_some_and(|waiting| waiting()) {
                    tracing::info!("closing a connection quiet for {}s: another client waits", quiet.as_secs());
                    return Ok(Wait::Quiet);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Compare tokens in constant time: equal BLAKE3 hashes (their comparison
/// is constant-time) of the trimmed tokens.
fn token_matches(expected: &[u8], got: &[u8]) -> bool {
    let expected = super::trim_token(expected);
    !expected.is_empty() && blake3::hash(expected) == blake3::hash(super::trim_token(got))
}

/// A NACK: the server's version, then the reason in UTF-8 (the Python
/// client reads neither; ours shows the reason).
fn nack(version: u32, why: &str) -> Vec<u8> {
    let mut p = version.to_be_bytes().to_vec();
    p.extend_from_slice(why.as_bytes());
    packet::packet(Kind::Nack, &p)
}

/// Why a connection ends.
enum Fatal {
    /// The client broke the protocol, or the connection failed.
    Wire(Wire),
    /// Writing to the client failed, or the store failed mid-stream.
    Store(Error),
}

impl From<Wire> for Fatal {
    fn from(w: Wire) -> Fatal {
        Fatal::Wire(w)
    }
}

struct Connection<'a> {
    store: &'a Store,
    stream: &'a TcpStream,
    reader: BufReader<&'a TcpStream>,
    options: &'a ServeOptions,
    served: Served,
    scratch: PathBuf,
}

impl Connection<'_> {
    /// Write one whole packet. A failure surfaces on the next read.
    fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = (&*self.stream).write_all(bytes) {
            tracing::debug!("writing to the client failed: {e}");
        }
    }

    fn send_or_fail(&mut self, bytes: &[u8]) -> std::result::Result<(), Fatal> {
        (&*self.stream).write_all(bytes).map_err(|e| Fatal::Wire(Wire::Io(e)))
    }

    /// A NACK for a packet that broke the protocol, unless the connection
    /// itself failed.
    fn nack_if_possible(&mut self, w: &Wire) {
        if !w.is_connection() || matches!(w, Wire::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof) {
            let bytes = nack(self.store.version(), &w.to_string());
            self.send(&bytes);
        }
    }

    /// Refuse a well-formed request the store would not take.
    fn refuse(&mut self, what: &str, e: &dyn std::fmt::Display) -> std::result::Result<(), Fatal> {
        let why = format!("{what}: {e}");
        tracing::warn!("refused {why}");
        self.served.refused += 1;
        let bytes = nack(self.store.version(), &why);
        self.send_or_fail(&bytes)
    }

    fn ack(&mut self) -> std::result::Result<(), Fatal> {
        let bytes = packet::packet(Kind::Ack, &self.store.version().to_be_bytes());
        self.send_or_fail(&bytes)
    }

    fn handle(&mut self, h: Header) -> std::result::Result<(), Fatal> {
        match h.kind {
            Kind::Change => {
                let (version, statements) = packet::read_change(&mut self.reader, h)?;
                tracing::debug!(version, "CHANGE");
                match self.store.add_change(version, &statements) {
                    Ok(_) => {
                        self.served.changes += 1;
                        self.ack()
                    }
                    Err(e) => self.refuse(&format!("the change for version {version}"), &e),
                }
            }
            Kind::Snapshot => {
                // Staged in a named file, which the store checks and takes
                // where it is (no second copy).
                let mut file = tempfile::NamedTempFile::new_in(&self.scratch)
                    .map_err(|e| Fatal::Store(Error::io(&self.scratch, e)))?;
                let (version, size) = {
                    let mut w = BufWriter::with_capacity(64 << 10, file.as_file_mut());
                    packet::read_snapshot(&mut self.reader, h, &mut w)?
                };
                tracing::info!(version, size, "SNAPSHOT");
                match self.store.add_snapshot_file(version, file.path()) {
                    Ok(_) => {
                        self.served.snapshots += 1;
                        self.ack()
                    }
                    Err(e) => self.refuse(&format!("the snapshot at version {version}"), &e),
                }
            }
            Kind::Rewind => {
                let payload = packet::read_small(&mut self.reader, h)?;
                if payload.len() != 4 {
                    return Err(Fatal::Wire(Wire::Refused(format!("REWIND of {} bytes, not 4", payload.len()))));
                }
                let to = packet::u32_at(Kind::Rewind, &payload, 0)?;
                tracing::info!(to, "REWIND");
                let status = self.store.status().map_err(Fatal::Store)?;
                if status.prev_version != Some(to) || !status.rewind_allowed {
                    let why = match status.prev_version {
                        Some(p) if status.rewind_allowed => format!("the version before the head is {p}"),
                        _ => "the last change may not be rewound".into(),
                    };
                    return self.refuse(&format!("the rewind to version {to}"), &why);
                }
                match self.store.rewind() {
                    Ok(_) => {
                        self.served.rewinds += 1;
                        self.ack()
                    }
                    Err(e) => self.refuse(&format!("the rewind to version {to}"), &e),
                }
            }
            Kind::ReqMetadata => {
                packet::read_small(&mut self.reader, h)?;
                let status = self.store.status().map_err(Fatal::Store)?;
                // A head that may not be rewound reports itself as its
                // prev_version: no client then asks for a rewind.
                let prev = match status.prev_version {
                    Some(p) if status.rewind_allowed => p,
                    _ => status.version,
                };
                let count = status.changes + u64::from(status.snapshot.is_some());
                let mut p = Vec::with_capacity(20);
                p.extend_from_slice(&super::PROTOCOL.to_be_bytes());
                p.extend_from_slice(&status.version.to_be_bytes());
                p.extend_from_slice(&prev.to_be_bytes());
                p.extend_from_slice(&count.to_be_bytes());
                self.send_or_fail(&packet::packet(Kind::Metadata, &p))
            }
            Kind::Restore => {
                packet::read_small(&mut self.reader, h)?;
                tracing::info!("RESTORE");
                self.restore()?;
                self.served.restores += 1;
                Ok(())
            }
            Kind::Compact => {
                packet::read_small(&mut self.reader, h)?;
                tracing::info!("COMPACT");
                match compact::compact(self.store, &Default::default()) {
                    Ok(stats) => {
                        let json = serde_json::to_vec(&stats).unwrap_or_default();
                        self.send_or_fail(&packet::packet(Kind::CompactRes, &json))
                    }
                    Err(e) => self.refuse("the compaction", &e),
                }
            }
            Kind::Token => {
                packet::read_small(&mut self.reader, h)?;
                if self.options.token.is_none() {
                    tracing::info!("the client sent a token; this server requires none");
                }
                self.send_or_fail(&packet::packet(Kind::Ack, &[]))
            }
            // What a client may send back during a restore, or by mistake:
            // read and ignored, as the Python server does.
            Kind::Ack | Kind::Nack | Kind::Metadata | Kind::Done | Kind::CompactRes => {
                tracing::debug!("ignoring {} from the client", h.kind.name());
                packet::read_small(&mut self.reader, h)?;
                Ok(())
            }
        }
    }

    /// Stream the store: the base snapshot (compressed through a temporary
    /// file), one CHANGE per transaction, then DONE.
    fn restore(&mut self) -> std::result::Result<(), Fatal> {
        let reader = match self.store.reader() {
            Ok(r) => r,
            Err(e) => return self.refuse("the restore", &e),
        };
        let upto = reader.head();
        let mut out = BufWriter::with_capacity(64 << 10, self.stream);
        let io = |e: std::io::Error| Fatal::Wire(Wire::Io(e));
        if let Some(info) = reader.snapshot() {
            let mut stager = SnapshotStager::new(info.version, Some(&self.scratch))
                .map_err(|e| Fatal::Store(Error::io(&self.scratch, e)))?;
            if let Err(e) = reader.copy_snapshot(&mut stager) {
                drop(out);
                return self.refuse("the restore", &e);
            }
            let mut staged = stager.finish().map_err(|e| Fatal::Store(Error::io(&self.scratch, e)))?;
            staged.send(&mut out).map_err(io)?;
            if !info.foreign_keys {
                // The snapshot was taken with foreign keys off: the protocol
                // has no field for it, so it follows as the lone report
                // lightningd made, at the snapshot's version.
                let p = packet::change_packet(info.version, &["PRAGMA foreign_keys = OFF;"])?;
                out.write_all(&p).map_err(io)?;
            }
        }
        let changes = match reader.changes(upto) {
            Ok(c) => c,
            Err(e) => {
                out.flush().map_err(io)?;
                drop(out);
                return self.refuse("the restore", &e);
            }
        };
        for change in changes {
            let change = match change {
                Ok(c) => c,
                Err(e) => {
                    out.flush().map_err(io)?;
                    drop(out);
                    self.refuse("the restore", &e)?;
                    return Err(Fatal::Store(e));
                }
            };
            for tx in &change.transactions {
                let p = packet::change_packet(data_version(change.seq), &tx.statements)?;
                out.write_all(&p).map_err(io)?;
            }
        }
        out.write_all(&packet::packet(Kind::Done, &[])).map_err(io)?;
        out.flush().map_err(io)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn tokens_match_only_when_equal_and_never_when_empty() {
        assert!(token_matches(b"correct horse\n", b"correct horse"));
        assert!(!token_matches(b"correct horse", b"correct hors"));
        assert!(!token_matches(b"correct horse", b""));
        assert!(!token_matches(b"\n", b""), "an empty expected token matches nothing");
    }

    #[test]
    fn a_nack_carries_the_version_then_the_reason() {
        assert_eq!(nack(3, "no"), [7, 0, 0, 0, 6, 0, 0, 0, 3, b'n', b'o']);
    }
}
