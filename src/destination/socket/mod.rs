//! The Python plugin's socket protocol: a remote `cln-backup server` or
//! `backup-cli server` as a [`Destination`], and the serving of one
//! connection over a local [`Store`] (`serve`).
//!
//! Owns the client half of the protocol: one connection behind a mutex,
//! each request answered before the call returns, reconnection with a
//! bounded backoff and the version check of SPEC section 2 after it, and the
//! restore stream read back as [`Change`]s. It must not store anything
//! locally, and never returns `Ok` for a change the server has not
//! acknowledged.
//!
//! Submodules: `packet` (the codec and its limits), `url` (`socket:` URLs),
//! `socks` (the SOCKS5 handshake for Tor), `serve` (the server's side of a
//! connection).

mod packet;
mod serve;
mod socks;
mod url;

pub use serve::{serve_connection, ServeOptions, Served};

/// Read packets from `bytes` as a peer would, until one fails (for the fuzz
/// targets, see `crate::fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn read_packets(bytes: &[u8]) {
    use packet::Kind;
    let mut r = bytes;
    while let Ok(h) = packet::read_header(&mut r) {
        let read = match h.kind {
            Kind::Change => packet::read_change(&mut r, h).map(drop),
            Kind::Snapshot => packet::read_snapshot(&mut r, h, &mut std::io::sink()).map(drop),
            kind => packet::read_small(&mut r, h).map(|p| drop(packet::u32_at(kind, &p, 0))),
        };
        if read.is_err() {
            break;
        }
    }
}

/// Packets of several kinds, as this client and the server send them.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn sample_packets(statements: &[String]) -> Vec<Vec<u8>> {
    use packet::Kind;
    let mut out = Vec::new();
    if let Ok(change) = packet::change_packet(42, statements) {
        out.push(change);
    }
    out.push(packet::packet(Kind::Ack, &42u32.to_be_bytes()));
    out.push(packet::packet(Kind::Rewind, &41u32.to_be_bytes()));
    out.push(packet::packet(Kind::Nack, b"version 43 does not follow 41"));
    out.push(packet::packet(Kind::Done, b""));
    out
}
pub use url::{HostPort, SocketUrl};

use super::{Destination, Head, RestoreSource};
use crate::record::{Change, Transaction, TIME_NOT_RECORDED};
use crate::store::{Added, SnapshotInfo, Store};
use crate::version::{self, data_version, Seq};
use crate::{Error, Result};
use packet::{Header, Kind, StagedSnapshot, Wire};
use std::io::{BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a connection attempt may take (per address, and to the proxy).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the client waits for the answer to a change, a rewind, a
/// snapshot's acknowledgement or metadata. The server answers a change once
/// it is fsync'd, which takes milliseconds; a minute of silence means the
/// server or the path to it is stuck, and lightningd is stalled meanwhile.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the client waits for the next bytes of a restore or for a
/// compaction's answer: the server compresses the base image before its
/// first byte, and a compaction replays the log, both minutes on a large
/// node.
pub const LONG_READ_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The first pause before reconnecting after the connection is lost.
pub const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The longest pause between two reconnection attempts (the delay doubles
/// from [`FIRST_RETRY_DELAY`] up to it).
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// How long the client keeps trying to reconnect before the change is
/// refused. lightningd is stalled while the hook waits (no payments move),
/// so the budget covers a server restart, not an outage: past it the write
/// is refused and lightningd stops, which is safe and which an operator
/// sees, where a stall of minutes is neither.
pub const RECONNECT_BUDGET: Duration = Duration::from_secs(30);

/// The protocol number METADATA carries.
const PROTOCOL: u32 = 1;

/// What METADATA says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Meta {
    version: u32,
    prev_version: u32,
    count: u64,
}

impl Meta {
    fn parse(payload: &[u8]) -> std::result::Result<Meta, Wire> {
        if payload.len() != 20 {
            return Err(Wire::Refused(format!("METADATA of {} bytes, not 20", payload.len())));
        }
        let protocol = packet::u32_at(Kind::Metadata, payload, 0)?;
        if protocol != PROTOCOL {
            return Err(Wire::Refused(format!("the server speaks protocol {protocol}; this client speaks {PROTOCOL}")));
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&payload[12..20]);
        Ok(Meta {
            version: packet::u32_at(Kind::Metadata, payload, 4)?,
            prev_version: packet::u32_at(Kind::Metadata, payload, 8)?,
            count: u64::from_be_bytes(count),
        })
    }

    /// Whether the last change looks rewindable. The Python server reports
    /// `prev_version` 0 after a rewind and before any change, and ours
    /// reports the head itself when no rewind is allowed: only a
    /// `prev_version` one below the head names a change to rewind. The
    /// server decides in the end; its ACK says where it is.
    fn rewindable(&self) -> bool {
        self.count > 0 && self.prev_version == self.version.wrapping_sub(1)
    }
}

/// The connection and what the server last said about its head.
#[derive(Debug, Default)]
struct Conn {
    stream: Option<TcpStream>,
    known: Option<Meta>,
}

/// A remote backup server reached over the socket protocol.
///
/// ```
/// use cln_backup::destination::{Destination, SocketDestination, SocketUrl};
/// use cln_backup::restore;
/// use cln_backup::version::bump_statement;
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # use cln_backup::destination::{serve_connection, ServeOptions};
/// # let dir = tempfile::tempdir()?;
/// # // A backup server on this machine, for one connection.
/// # let store = cln_backup::Store::create(dir.path().join("server.redb"))?;
/// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let url = SocketUrl::parse(&format!("socket:{}", listener.local_addr()?))?;
/// # let server = std::thread::spawn(move || {
/// #     serve_connection(&store, &listener.accept().unwrap().0, &ServeOptions::new())
/// # });
/// let dest = SocketDestination::connect(&url, None)?;
/// dest.add_change(1, &[
///     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
///     "INSERT INTO vars VALUES ('data_version', 0)",
///     &bump_statement(1),
/// ])?;
/// dest.add_change(2, &["INSERT INTO vars VALUES ('a', 1)", &bump_statement(2)])?;
/// assert_eq!(dest.head()?.version, 2);
/// assert!(dest.local_store().is_none(), "the server is the only copy");
///
/// // Rebuild the database from what the server streams back.
/// let db = dir.path().join("lightningd.sqlite3");
/// let report = restore::restore_from(&dest, &db, &restore::Options::default())?;
/// assert_eq!(report.version, 2);
/// # drop(dest);
/// # assert_eq!(server.join().unwrap()?.changes, 2);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SocketDestination {
    url: SocketUrl,
    token: Option<Vec<u8>>,
    conn: Mutex<Conn>,
}

/// What a request expects once the connection is back after it was lost
/// with the request possibly sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AtBase {
    /// The server still at the base version means the request was lost:
    /// send it again.
    Resend,
    /// The request leaves the version unchanged (a repeated-version
    /// report): whether it was stored cannot be told, so it is an error.
    Unknown,
}

impl SocketDestination {
    /// Connect to the server `url` names, sending `token` (a pre-shared
    /// token) first when given, and read its metadata.
    ///
    /// ```
    /// use cln_backup::destination::{Destination, SocketDestination, SocketUrl};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use cln_backup::destination::{serve_connection, ServeOptions};
    /// # let dir = tempfile::tempdir()?;
    /// # // A backup server on this machine, for one connection.
    /// # let store = cln_backup::Store::create(dir.path().join("server.redb"))?;
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let url = SocketUrl::parse(&format!("socket:{}", listener.local_addr()?))?;
    /// # let server = std::thread::spawn(move || {
    /// #     serve_connection(&store, &listener.accept().unwrap().0, &ServeOptions::new())
    /// # });
    /// let dest = SocketDestination::connect(&url, None)?;
    /// assert_eq!(dest.location(), url.url);
    /// assert_eq!(dest.head()?.version, 0);
    /// // A token that is only white space is refused before anything is sent.
    /// assert!(SocketDestination::connect(&url, Some(b"\n".to_vec())).is_err());
    /// # drop(dest);
    /// # server.join().unwrap()?;
    /// # Ok(()) }
    /// ```
    pub fn connect(url: &SocketUrl, token: Option<Vec<u8>>) -> Result<SocketDestination> {
        let token = token.map(|t| trim_token(&t).to_vec());
        if token.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(Error::Destination { url: url.url.clone(), what: "the token file is empty".into() });
        }
        if token.as_ref().is_some_and(|t| t.len() > serve::MAX_TOKEN) {
            return Err(Error::Destination {
                url: url.url.clone(),
                what: format!("the token is over {} bytes", serve::MAX_TOKEN),
            });
        }
        let dest = SocketDestination { url: url.clone(), token, conn: Mutex::new(Conn::default()) };
        {
            let mut conn = dest.lock();
            let (stream, meta) = dest.open().map_err(|w| dest.err(w))?;
            conn.stream = Some(stream);
            conn.known = Some(meta);
        }
        Ok(dest)
    }

    /// Ask the server to compact its store; returns its statistics (JSON).
    ///
    /// ```
    /// use cln_backup::destination::{Destination, SocketDestination, SocketUrl};
    /// use cln_backup::version::bump_statement;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use cln_backup::destination::{serve_connection, ServeOptions};
    /// # let dir = tempfile::tempdir()?;
    /// # // A backup server on this machine, for one connection.
    /// # let store = cln_backup::Store::create(dir.path().join("server.redb"))?;
    /// # let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// # let url = SocketUrl::parse(&format!("socket:{}", listener.local_addr()?))?;
    /// # let server = std::thread::spawn(move || {
    /// #     serve_connection(&store, &listener.accept().unwrap().0, &ServeOptions::new())
    /// # });
    /// # let dest = SocketDestination::connect(&url, None)?;
    /// # dest.add_change(1, &[
    /// #     "CREATE TABLE vars (name TEXT PRIMARY KEY, intval INTEGER)",
    /// #     "INSERT INTO vars VALUES ('data_version', 0)",
    /// #     &bump_statement(1),
    /// # ])?;
    /// # for v in 2..=3 {
    /// #     dest.add_change(v, &[&format!("INSERT INTO vars VALUES ('v{v}', {v})"), &bump_statement(v)])?;
    /// # }
    /// // The server holds versions 1 to 3: it folds 1 and 2 into a snapshot.
    /// let stats = dest.compact()?;
    /// assert_eq!(stats["compacted"], true);
    /// assert_eq!(stats["snapshot_version"], 2);
    /// assert_eq!(dest.head()?.version, 3);
    /// # drop(dest);
    /// # server.join().unwrap()?;
    /// # Ok(()) }
    /// ```
    pub fn compact(&self) -> Result<serde_json::Value> {
        let mut conn = self.lock();
        let stream = self.connected(&mut conn)?;
        let answer = (|| {
            stream.set_read_timeout(Some(LONG_READ_TIMEOUT))?;
            stream.write_all(&packet::packet(Kind::Compact, &[]))?;
            let (kind, payload) = reply(stream)?;
            stream.set_read_timeout(Some(READ_TIMEOUT))?;
            match kind {
                Kind::CompactRes => Ok(payload),
                Kind::Nack => Err(Wire::Refused(format!("compaction refused: {}", nack_text(&payload)))),
                got => Err(Wire::Unexpected { got, expected: "COMPACT_RES" }),
            }
        })();
        let payload = answer.map_err(|w| {
            conn.stream = None;
            self.err(w)
        })?;
        conn.known = None;
        serde_json::from_slice(&payload).map_err(|e| self.err(Wire::Refused(format!("COMPACT_RES is not JSON: {e}"))))
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic elsewhere while holding the lock leaves a connection whose
        // state is unknown: drop it, the next request reconnects.
        self.conn.lock().unwrap_or_else(|poisoned| {
            let mut g = poisoned.into_inner();
            g.stream = None;
            g.known = None;
            g
        })
    }

    fn err(&self, w: Wire) -> Error {
        Error::Destination { url: self.url.url.clone(), what: w.to_string() }
    }

    /// A new connection: TCP (through the proxy when one is given), the
    /// token when we have one, then METADATA.
    fn open(&self) -> std::result::Result<(TcpStream, Meta), Wire> {
        let mut stream = match &self.url.proxy {
            None => connect_any(&self.url.target)?,
            Some(proxy) => {
                let mut s = connect_any(proxy)?;
                s.set_read_timeout(Some(CONNECT_TIMEOUT))?;
                s.set_write_timeout(Some(CONNECT_TIMEOUT))?;
                socks::connect(&mut s, &self.url.target)?;
                s
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        if let Some(token) = &self.token {
            stream.write_all(&packet::packet(Kind::Token, token))?;
            match reply(&mut stream) {
                Ok((Kind::Ack, _)) => {}
                Ok((Kind::Nack, p)) => {
                    return Err(Wire::Refused(format!("the server refused the token: {}", nack_text(&p))))
                }
                Ok((got, _)) => return Err(Wire::Unexpected { got, expected: "ACK of the token" }),
                Err(Wire::Closed) => {
                    return Err(Wire::Refused(
                        "the server closed the connection on the token (a server without the token extension?)".into(),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
        let meta = metadata(&mut stream)?;
        tracing::debug!(url = %self.url.url, version = meta.version, "connected");
        Ok((stream, meta))
    }

    /// The connection, reconnecting with backoff if there is none.
    fn connected<'c>(&self, conn: &'c mut Conn) -> Result<&'c mut TcpStream> {
        if conn.stream.is_none() {
            let mut backoff = Backoff::new();
            loop {
                match self.open() {
                    Ok((s, meta)) => {
                        conn.known = Some(meta);
                        conn.stream = Some(s);
                        break;
                    }
                    Err(w) if w.is_connection() && backoff.wait(&self.url.url, &w) => {}
                    Err(w) => return Err(self.err(w)),
                }
            }
        }
        conn.stream.as_mut().ok_or_else(|| self.err(Wire::Closed))
    }

    /// Send a request that moves the server from `base` to `target` and
    /// wait for its ACK. On a lost connection: reconnect with backoff, and
    /// follow SPEC section 2 from the server's METADATA (at `target`: done;
    /// at `base`: as `at_base` says; anything else: an error naming both).
    fn exchange(
        &self,
        conn: &mut Conn,
        what: &str,
        base: u32,
        target: u32,
        at_base: AtBase,
        send: &mut dyn FnMut(&mut TcpStream) -> std::io::Result<()>,
    ) -> Result<Meta> {
        let mut backoff = Backoff::new();
        let mut sent = false;
        // A connection the server closed meanwhile (idle too long, restarted)
        // is replaced before anything is sent on it, so that nothing sent is
        // in doubt.
        if conn.stream.as_ref().is_some_and(|s| !still_open(s)) {
            tracing::info!(url = %self.url.url, "the server closed the connection; reconnecting");
            conn.stream = None;
        }
        loop {
            if conn.stream.is_none() {
                match self.open() {
                    Ok((s, meta)) => {
                        conn.known = Some(meta);
                        if sent && target != base && meta.version == target {
                            tracing::info!(url = %self.url.url, "the server had {what} before the connection was lost");
                            conn.stream = Some(s);
                            return Ok(meta);
                        }
                        if meta.version != base {
                            return Err(self.err(Wire::Refused(format!(
                                "after reconnecting, the server is at version {}, neither {base} (before {what}) nor {target} (after it)",
                                meta.version
                            ))));
                        }
                        if sent && at_base == AtBase::Unknown {
                            return Err(self.err(Wire::Refused(format!(
                                "the connection was lost after sending {what}, which leaves the version at {base}: whether the server stored it cannot be told"
                            ))));
                        }
                        conn.stream = Some(s);
                    }
                    Err(w) if w.is_connection() && backoff.wait(&self.url.url, &w) => continue,
                    Err(w) => return Err(self.err(w)),
                }
            }
            let Some(stream) = conn.stream.as_mut() else { continue };
            sent = true;
            let answer = send(stream).map_err(Wire::Io).and_then(|()| reply(stream));
            match answer {
                Ok((Kind::Ack, payload)) => match packet::u32_at(Kind::Ack, &payload, 0) {
                    Ok(v) if v == target => {
                        let meta = Meta {
                            version: target,
                            prev_version: if target == base {
                                conn.known.map_or(base, |m| m.prev_version)
                            } else {
                                base
                            },
                            count: conn.known.map_or(1, |m| m.count.saturating_add(1)),
                        };
                        conn.known = Some(meta);
                        return Ok(meta);
                    }
                    Ok(v) => {
                        conn.stream = None;
                        conn.known = None;
                        return Err(self.err(Wire::Refused(format!(
                            "the server acknowledged {what} at version {v}, not {target}"
                        ))));
                    }
                    Err(w) => {
                        conn.stream = None;
                        return Err(self.err(w));
                    }
                },
                Ok((Kind::Nack, payload)) => {
                    conn.known = None;
                    return Err(self.err(Wire::Refused(format!("the server refused {what}: {}", nack_text(&payload)))));
                }
                Ok((got, _)) => {
                    conn.stream = None;
                    return Err(self.err(Wire::Unexpected { got, expected: "ACK or NACK" }));
                }
                Err(w) if w.is_connection() => {
                    conn.stream = None;
                    if !backoff.wait(&self.url.url, &w) {
                        return Err(self.err(Wire::Refused(format!(
                            "the connection was lost sending {what} and did not come back within {}s: {w}",
                            RECONNECT_BUDGET.as_secs()
                        ))));
                    }
                }
                Err(w) => {
                    conn.stream = None;
                    return Err(self.err(w));
                }
            }
        }
    }

    /// The server's head, read fresh (reconnecting if needed).
    fn meta(&self, conn: &mut Conn) -> Result<Meta> {
        let stream = self.connected(conn)?;
        match metadata(stream) {
            Ok(m) => {
                conn.known = Some(m);
                Ok(m)
            }
            Err(w) if w.is_connection() => {
                conn.stream = None;
                self.connected(conn)?;
                conn.known.ok_or_else(|| self.err(Wire::Closed))
            }
            Err(w) => {
                conn.stream = None;
                Err(self.err(w))
            }
        }
    }

    /// The base version for a request: what the server last said, or its
    /// METADATA when nothing is known.
    fn base(&self, conn: &mut Conn) -> Result<Meta> {
        match conn.known {
            Some(m) if conn.stream.is_some() => Ok(m),
            _ => self.meta(conn),
        }
    }
}

/// A token as read from a file: without surrounding white space (a
/// trailing newline most of all).
pub(crate) fn trim_token(t: &[u8]) -> &[u8] {
    let start = t.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(t.len());
    let end = t.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &t[start..end.max(start)]
}

/// Whether `stream` is still open: nothing to read (the server sends
/// nothing unasked), and no end of stream or error waiting.
fn still_open(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let open = matches!(stream.peek(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    stream.set_nonblocking(false).is_ok() && open
}

/// Connect to the first address of `at` that answers.
fn connect_any(at: &HostPort) -> std::result::Result<TcpStream, Wire> {
    let addrs = (at.host.as_str(), at.port).to_socket_addrs()?;
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(Wire::Io(
        last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} has no address", at.host))
        }),
    ))
}

/// REQ_METADATA and its answer.
fn metadata(stream: &mut TcpStream) -> std::result::Result<Meta, Wire> {
    stream.write_all(&packet::packet(Kind::ReqMetadata, &[]))?;
    match reply(stream)? {
        (Kind::Metadata, p) => Meta::parse(&p),
        (Kind::Nack, p) => Err(Wire::Refused(format!("the server refused REQ_METADATA: {}", nack_text(&p)))),
        (got, _) => Err(Wire::Unexpected { got, expected: "METADATA" }),
    }
}

/// The next small packet from the server.
fn reply(stream: &mut TcpStream) -> std::result::Result<(Kind, Vec<u8>), Wire> {
    let h = packet::read_header(stream)?;
    match h.kind {
        Kind::Change | Kind::Snapshot => Err(Wire::Unexpected { got: h.kind, expected: "an answer" }),
        _ => Ok((h.kind, packet::read_small(stream, h)?)),
    }
}

/// A NACK's reason: our server sends the version and a text; the Python
/// server the version only.
fn nack_text(payload: &[u8]) -> String {
    let version = packet::u32_at(Kind::Nack, payload, 0).ok();
    let text = payload.get(4..).map(String::from_utf8_lossy).unwrap_or_default();
    match (version, text.trim()) {
        (Some(v), "") => format!("NACK at version {v}"),
        (Some(v), t) => format!("{t} (server at version {v})"),
        (None, _) => "NACK".into(),
    }
}

/// Pauses between reconnection attempts: none before the first (a server
/// that closed an idle connection is back at once), then doubling from
/// [`FIRST_RETRY_DELAY`] to [`MAX_RETRY_DELAY`], within [`RECONNECT_BUDGET`].
struct Backoff {
    started: Instant,
    delay: Duration,
    first: bool,
}

impl Backoff {
    fn new() -> Backoff {
        Backoff { started: Instant::now(), delay: FIRST_RETRY_DELAY, first: true }
    }

    /// Pause before the next attempt; false when the budget is spent.
    fn wait(&mut self, url: &str, why: &Wire) -> bool {
        if std::mem::take(&mut self.first) {
            tracing::info!(url, "connection lost ({why}); reconnecting");
            return true;
        }
        if self.started.elapsed() + self.delay > RECONNECT_BUDGET {
            tracing::error!(url, "giving up reconnecting after {}s: {why}", self.started.elapsed().as_secs());
            return false;
        }
        tracing::warn!(url, "connection lost ({why}); reconnecting in {} ms", self.delay.as_millis());
        std::thread::sleep(self.delay);
        self.delay = (self.delay * 2).min(MAX_RETRY_DELAY);
        true
    }
}

impl Destination for SocketDestination {
    fn location(&self) -> &str {
        &self.url.url
    }

    fn head(&self) -> Result<Head> {
        let mut conn = self.lock();
        let m = self.meta(&mut conn)?;
        let rewindable = m.rewindable();
        Ok(Head::new(m.version, rewindable.then_some(m.prev_version), rewindable))
    }

    fn add_change(&self, version: u32, statements: &[&str]) -> Result<Added> {
        let bytes = packet::change_packet(version, statements).map_err(|w| self.err(w))?;
        let mut conn = self.lock();
        let base = self.base(&mut conn)?.version;
        let repeat = version == base;
        let what = format!("the change for version {version}");
        let at_base = if repeat { AtBase::Unknown } else { AtBase::Resend };
        self.exchange(&mut conn, &what, base, version, at_base, &mut |s| s.write_all(&bytes))?;
        // The server's store numbers versions across wraps; ours counts from its metadata.
        Ok(if repeat { Added::Repeated(Seq::from(version)) } else { Added::New(Seq::from(version)) })
    }

    fn rewind(&self) -> Result<Seq> {
        let mut conn = self.lock();
        let m = self.meta(&mut conn)?;
        if !m.rewindable() {
            return Err(Error::Rewind { reason: "the server has no change it may rewind" });
        }
        let to = m.prev_version;
        let bytes = packet::packet(Kind::Rewind, &to.to_be_bytes());
        let what = format!("the rewind of version {} to {to}", m.version);
        self.exchange(&mut conn, &what, m.version, to, AtBase::Resend, &mut |s| s.write_all(&bytes))?;
        // Not rewindable twice: what the server's next METADATA will say.
        conn.known = Some(Meta { version: to, prev_version: to, count: m.count });
        Ok(Seq::from(to))
    }

    fn add_snapshot(&self, version: u32, image: &mut dyn Read) -> Result<SnapshotInfo> {
        let mut staged = StagedSnapshot::stage(version, image, None)
            .map_err(|e| self.err(Wire::Refused(format!("cannot stage the snapshot: {e}"))))?;
        let mut conn = self.lock();
        let base = self.base(&mut conn)?.version;
        let what = format!("the snapshot at version {version}");
        self.exchange(&mut conn, &what, base, version, AtBase::Resend, &mut |s| staged.send(s))?;
        conn.known = Some(Meta { version, prev_version: version, count: conn.known.map_or(1, |m| m.count) });
        let now = crate::record::now_ms();
        Ok(SnapshotInfo {
            seq: Seq::from(version),
            version,
            size: staged.image_bytes,
            stored_bytes: staged.packet_bytes,
            created_ms: now,
            version_time_ms: now,
            foreign_keys: true,
        })
    }

    fn restore_source(&self, to_version: Option<u64>, image: &mut dyn Write) -> Result<RestoreSource> {
        let mut conn = self.lock();
        let head = self.meta(&mut conn)?;
        let stream = conn.stream.take().ok_or_else(|| self.err(Wire::Closed))?;
        conn.known = None;
        drop(conn);
        let url = self.url.url.clone();
        let err = |w: Wire| Error::Destination { url: url.clone(), what: format!("restore: {w}") };
        stream.set_read_timeout(Some(LONG_READ_TIMEOUT)).map_err(|e| err(Wire::Io(e)))?;
        (&stream).write_all(&packet::packet(Kind::Restore, &[])).map_err(|e| err(Wire::Io(e)))?;
        let mut r = BufReader::with_capacity(64 << 10, stream);
        // The first packet: the base snapshot, or the first change, or DONE.
        let h = packet::read_header(&mut r).map_err(err)?;
        let mut first = None;
        let (start, has_snapshot) = match h.kind {
            Kind::Snapshot => {
                let (v, _) = packet::read_snapshot(&mut r, h, image).map_err(err)?;
                (Seq::from(v), true)
            }
            Kind::Change => {
                let (v, statements) = packet::read_change(&mut r, h).map_err(err)?;
                first = Some((v, statements));
                (Seq::from(v.wrapping_sub(1)), false)
            }
            Kind::Done => (Seq::from(head.version), false),
            Kind::Nack => {
                let p = packet::read_small(&mut r, h).map_err(err)?;
                return Err(err(Wire::Refused(format!("the server refused: {}", nack_text(&p)))));
            }
            got => return Err(err(Wire::Unexpected { got, expected: "SNAPSHOT, CHANGE or DONE" })),
        };
        let done = h.kind == Kind::Done;
        // The head, in the numbering that starts at the base: past a u32
        // wrap it is one epoch above.
        let head_seq = extend(start, head.version);
        let upto = version::target(start, head_seq, has_snapshot, to_version)?;
        let mut stream = RestoreStream { r, url: self.url.url.clone(), pending: None, last: start, upto, done };
        if let Some((v, statements)) = first {
            stream.take_change(v, statements)?;
        }
        Ok(RestoreSource::new(upto, true, Box::new(stream)))
    }

    fn compact_remote(&self) -> Option<Result<serde_json::Value>> {
        Some(self.compact())
    }

    fn local_store(&self) -> Option<&Store> {
        None
    }
}

/// `version` as a store version at or above `start`'s epoch-0 numbering.
fn extend(start: Seq, version: u32) -> Seq {
    if Seq::from(version) >= start {
        Seq::from(version)
    } else {
        Seq::from(version) + (1 << 32)
    }
}

/// The CHANGE packets of a restore, as [`Change`]s: repeated versions
/// merged into one, the version extended across wraps, stopping at `upto`.
struct RestoreStream {
    r: BufReader<TcpStream>,
    url: String,
    /// The change being gathered (more transactions may repeat its version).
    pending: Option<Change>,
    /// The store version of the last change read (the base at first).
    last: Seq,
    upto: Seq,
    done: bool,
}

impl RestoreStream {
    fn err(&self, what: String) -> Error {
        Error::Destination { url: self.url.clone(), what: format!("restore: {what}") }
    }

    /// Take one CHANGE; returns a completed change when this one starts a new version.
    fn take_change(&mut self, v: u32, statements: Vec<String>) -> Result<Option<Change>> {
        let last_v = data_version(self.last);
        let seq = if v == last_v {
            self.last
        } else if v == last_v.wrapping_add(1) {
            self.last + 1
        } else {
            return Err(self.err(format!("the server sent version {v} after {last_v}")));
        };
        let tx = Transaction { time_ms: TIME_NOT_RECORDED, statements };
        if seq > self.upto {
            self.done = true;
            return Ok(self.pending.take());
        }
        self.last = seq;
        match &mut self.pending {
            Some(p) if p.seq == seq => {
                if version::transaction_bump(&tx.statements).is_some() {
                    // Two transactions with the same version that both bump
                    // it: the earlier was rewound (a Python server streams
                    // rewound changes); keep the later.
                    tracing::warn!(url = %self.url, version = v, "dropping a rewound change the server streamed");
                    p.transactions = vec![tx];
                } else {
                    p.transactions.push(tx);
                }
                Ok(None)
            }
            _ => Ok(self.pending.replace(Change { seq, transactions: vec![tx] })),
        }
    }

    fn step(&mut self) -> Result<Option<Change>> {
        loop {
            if self.done {
                return Ok(self.pending.take());
            }
            let h: Header = packet::read_header(&mut self.r).map_err(|w| self.err(w.to_string()))?;
            match h.kind {
                Kind::Change => {
                    let (v, statements) = packet::read_change(&mut self.r, h).map_err(|w| self.err(w.to_string()))?;
                    if let Some(c) = self.take_change(v, statements)? {
                        return Ok(Some(c));
                    }
                }
                Kind::Done => {
                    self.done = true;
                    if self.last != self.upto {
                        return Err(self.err(format!(
                            "the stream ended at version {}, before version {} the server reported",
                            data_version(self.last),
                            data_version(self.upto)
                        )));
                    }
                }
                Kind::Nack => {
                    let p = packet::read_small(&mut self.r, h).map_err(|w| self.err(w.to_string()))?;
                    return Err(self.err(format!("the server stopped: {}", nack_text(&p))));
                }
                Kind::Snapshot => {
                    return Err(self.err("a second snapshot in the stream, after changes".into()));
                }
                got => return Err(self.err(Wire::Unexpected { got, expected: "CHANGE or DONE" }.to_string())),
            }
        }
    }
}

impl Iterator for RestoreStream {
    type Item = Result<Change>;

    fn next(&mut self) -> Option<Result<Change>> {
        match self.step() {
            Ok(Some(c)) => Some(Ok(c)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                self.pending = None;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn meta(version: u32, prev_version: u32, count: u64) -> Meta {
        Meta { version, prev_version, count }
    }

    #[test]
    fn only_a_prev_version_one_below_the_head_is_rewindable() {
        assert!(meta(13, 12, 4).rewindable());
        assert!(meta(0, u32::MAX, 4).rewindable(), "across the wrap");
        // Ours after a rewind or a snapshot; the Python server's marker after a rewind.
        assert!(!meta(12, 12, 4).rewindable());
        assert!(!meta(12, 0, 4).rewindable());
        // The Python server before any change, and after its init snapshot.
        assert!(!meta(0, 0, 0).rewindable());
        assert!(!meta(10, 0, 1).rewindable());
    }

    #[test]
    fn metadata_is_twenty_bytes_of_protocol_one() {
        let mut p = 1u32.to_be_bytes().to_vec();
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&6u32.to_be_bytes());
        p.extend_from_slice(&9u64.to_be_bytes());
        assert_eq!(Meta::parse(&p).unwrap(), meta(7, 6, 9));
        assert!(Meta::parse(&p[..19]).is_err());
        p[3] = 2;
        assert!(Meta::parse(&p).unwrap_err().to_string().contains("protocol 2"));
    }

    #[test]
    fn versions_extend_past_the_wrap_from_the_base() {
        assert_eq!(extend(10, 12), 12);
        assert_eq!(extend(u64::from(u32::MAX - 1), 3), u64::from(u32::MAX) + 4);
        assert_eq!(extend(5, 5), 5);
    }

    #[test]
    fn tokens_are_trimmed_and_nack_reasons_read() {
        assert_eq!(trim_token(b"  s3cret\r\n"), b"s3cret");
        assert_eq!(trim_token(b"\n\n"), b"");
        assert_eq!(trim_token(b"a b"), b"a b");
        let mut p = 4u32.to_be_bytes().to_vec();
        assert_eq!(nack_text(&p), "NACK at version 4");
        p.extend_from_slice(b"wrong token");
        assert_eq!(nack_text(&p), "wrong token (server at version 4)");
        assert_eq!(nack_text(&[]), "NACK");
    }
}
