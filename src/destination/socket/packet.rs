//! The socket protocol's packets: `u8 type, u32 length (big-endian),
//! payload`, and the zlib streams inside CHANGE and SNAPSHOT payloads.
//!
//! Owns encoding and decoding every packet type, and the limits that keep a
//! peer from making us allocate or write without bound. It must not decide
//! what a packet means for a store or a client: `serve` and the client do.
//!
//! Nothing is ever allocated from a declared length: payloads are read in
//! bounded chunks as bytes actually arrive, a CHANGE is capped before and
//! after decompression, and a SNAPSHOT is inflated straight into a writer
//! (a temporary file), never held whole.

use flate2::{Compression, Decompress, FlushDecompress, Status};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes of a packet header: the type and the payload's length.
pub(crate) const HEADER_LEN: usize = 5;

/// Largest CHANGE payload accepted off the wire (the version and the zlib
/// stream). The plugin takes `db_write` messages of up to 512 MiB from
/// lightningd, JSON-escaped, so a change it accepted compresses to less
/// than this; anything longer is refused before a byte of it is read.
pub(crate) const MAX_CHANGE_PAYLOAD: u32 = 513 << 20;

/// Largest decompressed CHANGE (statements joined by NUL): the plugin's own
/// message limit. A zlib stream that inflates beyond it (a zip bomb) is
/// refused as soon as it passes it, with nothing stored.
pub(crate) const MAX_STATEMENTS_BYTES: u64 = 512 << 20;

/// Largest SNAPSHOT image inflated to disk. lightningd's databases are a
/// few GiB at most; the cap stops a zip bomb from filling the disk the
/// store lives on, and is far above any real node.
pub(crate) const MAX_IMAGE_BYTES: u64 = 256 << 30;

/// Largest payload of the other packets (ACK, NACK and its reason, REWIND,
/// METADATA, TOKEN, COMPACT_RES, and the empty requests): none carries more
/// than a few hundred bytes.
pub(crate) const MAX_SMALL_PAYLOAD: u32 = 64 << 10;

/// The chunk a payload is read, inflated or copied in.
const CHUNK: usize = 64 << 10;

/// zlib's level for what we send: the Python plugin's `zlib.compress` default.
const LEVEL: u32 = 6;

/// The packet types of SPEC section 5, and the token extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Change = 1,
    Snapshot = 2,
    Rewind = 3,
    ReqMetadata = 4,
    Restore = 5,
    Ack = 6,
    Nack = 7,
    Metadata = 8,
    Done = 9,
    Compact = 10,
    CompactRes = 11,
    /// Extension: a pre-shared token, sent first by a client that has one.
    Token = 12,
}

impl Kind {
    /// The type a byte names, if any.
    pub(crate) fn from_byte(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Change,
            2 => Kind::Snapshot,
            3 => Kind::Rewind,
            4 => Kind::ReqMetadata,
            5 => Kind::Restore,
            6 => Kind::Ack,
            7 => Kind::Nack,
            8 => Kind::Metadata,
            9 => Kind::Done,
            10 => Kind::Compact,
            11 => Kind::CompactRes,
            12 => Kind::Token,
            _ => return None,
        })
    }

    /// The name the protocol's documentation gives the type.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Change => "CHANGE",
            Kind::Snapshot => "SNAPSHOT",
            Kind::Rewind => "REWIND",
            Kind::ReqMetadata => "REQ_METADATA",
            Kind::Restore => "RESTORE",
            Kind::Ack => "ACK",
            Kind::Nack => "NACK",
            Kind::Metadata => "METADATA",
            Kind::Done => "DONE",
            Kind::Compact => "COMPACT",
            Kind::CompactRes => "COMPACT_RES",
            Kind::Token => "TOKEN",
        }
    }
}

/// What can be wrong with what a peer sent, or with the connection.
#[derive(Debug)]
pub(crate) enum Wire {
    /// The connection failed (reset, timed out, closed mid-packet).
    Io(io::Error),
    /// The peer closed the connection between packets.
    Closed,
    /// A type byte the protocol does not define.
    UnknownType(u8),
    /// A declared length above the type's limit.
    TooLong { kind: Kind, len: u64, max: u64 },
    /// A payload shorter than its type's fixed fields.
    TooShort { kind: Kind, len: u32, need: u32 },
    /// A zlib stream that does not decode, ends early or has bytes after it.
    Zlib { kind: Kind, what: String },
    /// Statements that are not UTF-8.
    NotUtf8 { version: u32, at: usize },
    /// A packet that is not the answer expected.
    Unexpected { got: Kind, expected: &'static str },
    /// The peer answered NACK, or refused what was sent; the text says why.
    Refused(String),
}

impl std::fmt::Display for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wire::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                write!(f, "the connection closed in the middle of a packet (truncated)")
            }
            Wire::Io(e) => write!(f, "connection error: {e}"),
            Wire::Closed => write!(f, "the connection was closed"),
            Wire::UnknownType(t) => write!(f, "unknown packet type {t}"),
            Wire::TooLong { kind, len, max } => {
                write!(f, "{} packet of {len} bytes is over the limit of {max} bytes", kind.name())
            }
            Wire::TooShort { kind, len, need } => {
                write!(f, "{} packet of {len} bytes is too short (needs at least {need})", kind.name())
            }
            Wire::Zlib { kind, what } => write!(f, "{} payload: bad zlib stream: {what}", kind.name()),
            Wire::NotUtf8 { version, at } => {
                write!(f, "CHANGE for version {version} is not UTF-8 (invalid byte at offset {at})")
            }
            Wire::Unexpected { got, expected } => write!(f, "got {} where {expected} was expected", got.name()),
            Wire::Refused(why) => write!(f, "{why}"),
        }
    }
}

impl From<io::Error> for Wire {
    fn from(e: io::Error) -> Wire {
        Wire::Io(e)
    }
}

impl Wire {
    /// Whether the connection itself failed (reconnecting may help), rather
    /// than the peer sending something wrong.
    pub(crate) fn is_connection(&self) -> bool {
        matches!(self, Wire::Io(_) | Wire::Closed)
    }
}

/// A packet header as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub len: u32,
}

/// The bytes of a whole packet of `kind` with `payload`, to write at once.
pub(crate) fn packet(kind: Kind, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(kind as u8);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A whole CHANGE packet: `version` and the zlib stream of `statements`
/// joined by NUL bytes, as the Python plugin sends it.
pub(crate) fn change_packet<S: AsRef<str>>(version: u32, statements: &[S]) -> Result<Vec<u8>, Wire> {
    let mut joined = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        if i > 0 {
            joined.push(0);
        }
        joined.extend_from_slice(s.as_ref().as_bytes());
    }
    if joined.len() as u64 > MAX_STATEMENTS_BYTES {
        return Err(Wire::TooLong { kind: Kind::Change, len: joined.len() as u64, max: MAX_STATEMENTS_BYTES });
    }
    let mut out = Vec::with_capacity(HEADER_LEN + 4 + joined.len() / 3 + 64);
    out.push(Kind::Change as u8);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&version.to_be_bytes());
    let mut z = flate2::write::ZlibEncoder::new(out, Compression::new(LEVEL));
    z.write_all(&joined)?;
    let mut out = z.finish()?;
    let len = out.len() - HEADER_LEN;
    if len as u64 > u64::from(MAX_CHANGE_PAYLOAD) {
        return Err(Wire::TooLong { kind: Kind::Change, len: len as u64, max: u64::from(MAX_CHANGE_PAYLOAD) });
    }
    out[1..HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// A SNAPSHOT packet staged in a temporary file: the header, the version and
/// the zlib stream of the image, so its length is known before a byte is
/// sent and memory stays bounded whatever the image's size.
pub(crate) struct StagedSnapshot {
    file: std::fs::File,
    /// Bytes of the image read.
    pub image_bytes: u64,
    /// Bytes of the whole packet.
    pub packet_bytes: u64,
}

impl StagedSnapshot {
    /// Compress `image` into a temporary file in `dir` (the system's
    /// temporary directory when `None`) as a SNAPSHOT packet at `version`.
    pub(crate) fn stage(
        version: u32,
        image: &mut dyn Read,
        dir: Option<&std::path::Path>,
    ) -> io::Result<StagedSnapshot> {
        let mut stager = SnapshotStager::new(version, dir)?;
        io::copy(image, &mut stager)?;
        stager.finish()
    }

    /// Write the whole packet to `w`, from its start (again after a failed attempt).
    pub(crate) fn send(&mut self, w: &mut dyn Write) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = self.file.read(&mut buf)?;
            if n == 0 {
                return w.flush();
            }
            w.write_all(&buf[..n])?;
        }
    }
}

/// A SNAPSHOT packet being written to a temporary file: the image is
/// written to it (it is a [`Write`]), and [`finish`](SnapshotStager::finish)
/// fills in the length.
pub(crate) struct SnapshotStager {
    z: flate2::write::ZlibEncoder<io::BufWriter<std::fs::File>>,
    image_bytes: u64,
}

impl SnapshotStager {
    /// A SNAPSHOT at `version`, staged in `dir` (the system's temporary
    /// directory when `None`).
    pub(crate) fn new(version: u32, dir: Option<&std::path::Path>) -> io::Result<SnapshotStager> {
        let file = match dir {
            Some(d) => tempfile::tempfile_in(d)?,
            None => tempfile::tempfile()?,
        };
        let mut w = io::BufWriter::with_capacity(CHUNK, file);
        w.write_all(&[Kind::Snapshot as u8, 0, 0, 0, 0])?;
        w.write_all(&version.to_be_bytes())?;
        Ok(SnapshotStager { z: flate2::write::ZlibEncoder::new(w, Compression::new(LEVEL)), image_bytes: 0 })
    }

    /// End the zlib stream and write the packet's length.
    pub(crate) fn finish(self) -> io::Result<StagedSnapshot> {
        let mut w = self.z.finish()?;
        w.flush()?;
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        let packet_bytes = file.seek(SeekFrom::End(0))?;
        let len = packet_bytes - HEADER_LEN as u64;
        let len = u32::try_from(len).map_err(|_| {
            io::Error::other(format!(
                "the compressed image is {len} bytes, over the protocol's limit of {} (a u32 length)",
                u32::MAX
            ))
        })?;
        file.seek(SeekFrom::Start(1))?;
        file.write_all(&len.to_be_bytes())?;
        Ok(StagedSnapshot { file, image_bytes: self.image_bytes, packet_bytes })
    }
}

impl Write for SnapshotStager {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.z.write(buf)?;
        self.image_bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.z.flush()
    }
}

/// Read a packet header. `Closed` when the peer closed the connection
/// before its first byte; a header cut short is a truncation.
pub(crate) fn read_header(r: &mut dyn Read) -> Result<Header, Wire> {
    let mut h = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match r.read(&mut h[got..]) {
            Ok(0) if got == 0 => return Err(Wire::Closed),
            Ok(0) => return Err(Wire::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Wire::Io(e)),
        }
    }
    let kind = Kind::from_byte(h[0]).ok_or(Wire::UnknownType(h[0]))?;
    let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]);
    Ok(Header { kind, len })
}

/// Read the payload of a small packet (at most [`MAX_SMALL_PAYLOAD`]).
pub(crate) fn read_small(r: &mut dyn Read, h: Header) -> Result<Vec<u8>, Wire> {
    if h.len > MAX_SMALL_PAYLOAD {
        return Err(Wire::TooLong { kind: h.kind, len: u64::from(h.len), max: u64::from(MAX_SMALL_PAYLOAD) });
    }
    read_exactly(r, u64::from(h.len))
}

/// Read exactly `len` bytes, growing the buffer only as bytes arrive.
fn read_exactly(r: &mut dyn Read, len: u64) -> Result<Vec<u8>, Wire> {
    let mut out = Vec::new();
    let mut left = len;
    let mut buf = [0u8; 8192];
    while left > 0 {
        let want = buf.len().min(left as usize);
        match r.read(&mut buf[..want]) {
            Ok(0) => return Err(Wire::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                left -= n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Wire::Io(e)),
        }
    }
    Ok(out)
}

/// A `u32` at the start of a small payload.
pub(crate) fn u32_at(kind: Kind, payload: &[u8], at: usize) -> Result<u32, Wire> {
    match payload.get(at..at + 4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(Wire::TooShort { kind, len: payload.len() as u32, need: (at + 4) as u32 }),
    }
}

/// The version at the front of a CHANGE or SNAPSHOT payload.
fn read_version(r: &mut dyn Read, h: Header) -> Result<u32, Wire> {
    if h.len < 4 {
        return Err(Wire::TooShort { kind: h.kind, len: h.len, need: 4 });
    }
    let b = read_exactly(r, 4)?;
    u32_at(h.kind, &b, 0)
}

/// Read a CHANGE payload: its version and statements.
pub(crate) fn read_change(r: &mut dyn Read, h: Header) -> Result<(u32, Vec<String>), Wire> {
    if h.len > MAX_CHANGE_PAYLOAD {
        return Err(Wire::TooLong { kind: h.kind, len: u64::from(h.len), max: u64::from(MAX_CHANGE_PAYLOAD) });
    }
    let version = read_version(r, h)?;
    let mut joined = Vec::new();
    inflate(r, h.kind, u64::from(h.len - 4), MAX_STATEMENTS_BYTES, &mut |b| {
        joined.extend_from_slice(b);
        Ok(())
    })?;
    let text = String::from_utf8(joined).map_err(|e| Wire::NotUtf8 { version, at: e.utf8_error().valid_up_to() })?;
    Ok((version, text.split('\0').map(str::to_owned).collect()))
}

/// Read a SNAPSHOT payload, inflating the image into `out`; returns the
/// version and the image's size.
pub(crate) fn read_snapshot(r: &mut dyn Read, h: Header, out: &mut dyn Write) -> Result<(u32, u64), Wire> {
    let version = read_version(r, h)?;
    let n = inflate(r, h.kind, u64::from(h.len - 4), MAX_IMAGE_BYTES, &mut |b| out.write_all(b))?;
    out.flush()?;
    Ok((version, n))
}

/// Inflate the zlib stream of exactly `len` bytes read from `r` into
/// `sink`, at most `max` bytes of output. The stream must end exactly at
/// `len`: a stream cut short, bytes after its end, or output past `max` is
/// refused. Returns the bytes produced.
fn inflate(
    r: &mut dyn Read,
    kind: Kind,
    len: u64,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<u64, Wire> {
    let zerr = |what: String| Wire::Zlib { kind, what };
    let mut z = Decompress::new(true);
    let mut input = vec![0u8; CHUNK];
    let mut output = vec![0u8; CHUNK];
    let mut left = len;
    let (mut start, mut end) = (0usize, 0usize);
    let mut produced = 0u64;
    loop {
        if start == end && left > 0 {
            let want = CHUNK.min(left as usize);
            let n = loop {
                match r.read(&mut input[..want]) {
                    Ok(0) => return Err(Wire::Io(io::ErrorKind::UnexpectedEof.into())),
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Wire::Io(e)),
                }
            };
            left -= n as u64;
            (start, end) = (0, n);
        }
        let (in_before, out_before) = (z.total_in(), z.total_out());
        let status =
            z.decompress(&input[start..end], &mut output, FlushDecompress::None).map_err(|e| zerr(e.to_string()))?;
        let consumed = (z.total_in() - in_before) as usize;
        let made = (z.total_out() - out_before) as usize;
        start += consumed;
        produced += made as u64;
        if produced > max {
            return Err(Wire::TooLong { kind, len: produced, max });
        }
        if made > 0 {
            sink(&output[..made])?;
        }
        if status == Status::StreamEnd {
            if start < end || left > 0 {
                let extra = (end - start) as u64 + left;
                // Drain what the peer declared, so the stream stays in step.
                skip(r, left)?;
                return Err(zerr(format!("{extra} bytes after the end of the stream")));
            }
            return Ok(produced);
        }
        if consumed == 0 && made == 0 && start == end && left == 0 {
            return Err(zerr("the stream ends before its end marker (truncated)".into()));
        }
    }
}

/// Read and drop `len` bytes.
fn skip(r: &mut dyn Read, len: u64) -> Result<(), Wire> {
    let copied = io::copy(&mut r.take(len), &mut io::sink())?;
    if copied < len {
        return Err(Wire::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    Ok(())
}

/// zlib of `data` at the level we send (tests, and small payloads).
#[cfg(test)]
pub(crate) fn zlib(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, FlushCompress};
    let mut z = Compress::new(Compression::new(LEVEL), true);
    let mut out = Vec::with_capacity(data.len() + 64);
    let _ = z.compress_vec(data, &mut out, FlushCompress::Finish);
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use flate2::{Compress, FlushCompress};

    fn header(kind: u8, len: u32) -> Vec<u8> {
        let mut h = vec![kind];
        h.extend_from_slice(&len.to_be_bytes());
        h
    }

    #[test]
    fn a_change_round_trips_and_is_the_python_layout() {
        let stmts = [
            "INSERT INTO t VALUES ('é')",
            "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 4",
        ];
        let p = change_packet(5, &stmts).unwrap();
        assert_eq!(p[0], 1);
        assert_eq!(u32::from_be_bytes(p[1..5].try_into().unwrap()) as usize, p.len() - 5);
        assert_eq!(&p[5..9], &5u32.to_be_bytes());
        // The payload after the version is one zlib stream of the NUL-joined text.
        let mut d = flate2::read::ZlibDecoder::new(&p[9..]);
        let mut text = String::new();
        d.read_to_string(&mut text).unwrap();
        assert_eq!(text, stmts.join("\0"));
        let mut r = &p[..];
        let h = read_header(&mut r).unwrap();
        assert_eq!(h.kind, Kind::Change);
        let (v, got) = read_change(&mut r, h).unwrap();
        assert_eq!(v, 5);
        assert_eq!(got, stmts);
        assert!(r.is_empty());
    }

    #[test]
    fn every_type_byte_is_known_and_others_are_refused() {
        for b in 1..=12u8 {
            assert_eq!(Kind::from_byte(b).unwrap() as u8, b);
        }
        for b in [0u8, 13, 0x7f, 0xff] {
            let mut r = &header(b, 0)[..];
            assert!(matches!(read_header(&mut r), Err(Wire::UnknownType(t)) if t == b));
        }
        let p = packet(Kind::Ack, &7u32.to_be_bytes());
        assert_eq!(p, [6, 0, 0, 0, 4, 0, 0, 0, 7]);
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading() {
        // The declared length is never allocated: nothing follows the header.
        let mut r = &header(1, u32::MAX)[..];
        let h = read_header(&mut r).unwrap();
        assert!(matches!(read_change(&mut r, h), Err(Wire::TooLong { .. })));
        let mut r = &header(6, MAX_SMALL_PAYLOAD + 1)[..];
        let h = read_header(&mut r).unwrap();
        assert!(matches!(read_small(&mut r, h), Err(Wire::TooLong { .. })));
    }

    #[test]
    fn truncated_headers_and_payloads_are_truncations() {
        let mut r = &[1u8, 0, 0][..];
        let e = read_header(&mut r).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut empty = &[][..];
        assert!(matches!(read_header(&mut empty), Err(Wire::Closed)));
        let p = change_packet(9, &["x"]).unwrap();
        let mut r = &p[..p.len() - 3];
        let h = read_header(&mut r).unwrap();
        let e = read_change(&mut r, h).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut r = &header(1, 2)[..];
        let h = read_header(&mut r).unwrap();
        assert!(matches!(read_change(&mut r, h), Err(Wire::TooShort { .. })));
    }

    #[test]
    fn bad_zlib_trailing_bytes_and_invalid_utf8_are_refused() {
        let mut p = header(1, 8);
        p.extend_from_slice(&3u32.to_be_bytes());
        p.extend_from_slice(b"nope");
        let mut r = &p[..];
        let h = read_header(&mut r).unwrap();
        assert!(matches!(read_change(&mut r, h), Err(Wire::Zlib { .. })));

        let mut z = zlib(b"ok");
        z.extend_from_slice(b"junk");
        let mut p = header(1, 4 + z.len() as u32);
        p.extend_from_slice(&3u32.to_be_bytes());
        p.extend_from_slice(&z);
        let mut r = &p[..];
        let h = read_header(&mut r).unwrap();
        let e = read_change(&mut r, h).unwrap_err();
        assert!(e.to_string().contains("after the end"), "{e}");
        assert!(r.is_empty(), "the declared payload is consumed");

        let z = zlib(b"INSERT \xff");
        let mut p = header(1, 4 + z.len() as u32);
        p.extend_from_slice(&3u32.to_be_bytes());
        p.extend_from_slice(&z);
        let mut r = &p[..];
        let h = read_header(&mut r).unwrap();
        assert!(matches!(read_change(&mut r, h), Err(Wire::NotUtf8 { version: 3, at: 7 })));
    }

    #[test]
    fn a_zip_bomb_stops_at_the_cap() {
        // 600 MiB of zeros compresses to well under a MiB.
        let mut z = Compress::new(Compression::new(1), true);
        let mut out = Vec::new();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..600 {
            out.reserve(1 << 16);
            z.compress_vec(&zeros, &mut out, FlushCompress::None).unwrap();
        }
        out.reserve(1 << 16);
        z.compress_vec(&[], &mut out, FlushCompress::Finish).unwrap();
        let mut p = header(1, 4 + out.len() as u32);
        p.extend_from_slice(&1u32.to_be_bytes());
        p.extend_from_slice(&out);
        let mut r = &p[..];
        let h = read_header(&mut r).unwrap();
        let e = read_change(&mut r, h).unwrap_err();
        assert!(matches!(e, Wire::TooLong { max: MAX_STATEMENTS_BYTES, .. }), "{e}");
    }

    #[test]
    fn a_snapshot_streams_both_ways() {
        let image: Vec<u8> = (0..300_000u32).flat_map(|i| (i % 251).to_le_bytes()).collect();
        let mut staged = StagedSnapshot::stage(42, &mut &image[..], None).unwrap();
        assert_eq!(staged.image_bytes, image.len() as u64);
        let mut bytes = Vec::new();
        staged.send(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, staged.packet_bytes);
        // Sent twice, the same bytes (a resend after a reconnect).
        let mut again = Vec::new();
        staged.send(&mut again).unwrap();
        assert_eq!(bytes, again);
        let mut r = &bytes[..];
        let h = read_header(&mut r).unwrap();
        assert_eq!(h.kind, Kind::Snapshot);
        let mut out = Vec::new();
        let (v, n) = read_snapshot(&mut r, h, &mut out).unwrap();
        assert_eq!((v, n), (42, image.len() as u64));
        assert_eq!(out, image);
        // Python's zlib.decompress would read the same stream.
        let mut d = flate2::read::ZlibDecoder::new(&bytes[9..]);
        let mut plain = Vec::new();
        d.read_to_end(&mut plain).unwrap();
        assert_eq!(plain, image);
    }
}
