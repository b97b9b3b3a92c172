//! Statement encoding: how one transaction's SQL statements become stored bytes.
//!
//! lightningd's statements carry parameters inlined as text; blobs appear as
//! `x'<lowercase hex>'` and are most of the bytes (onions, signatures, PSBTs),
//! random and so incompressible, but twice their size as hex. The encoding
//! lifts every such literal out of the text as raw bytes, and compresses the
//! remaining SQL with zstd primed by a dictionary of lightningd's statement
//! shapes. It is lossless by construction: only an exact `x'..'` run of
//! lowercase hex digits is lifted, and decoding writes back the same bytes.
//!
//! Codec ids are part of the stored format: a stored id must always decode
//! the same way, so a new dictionary or layout gets a new id. This build
//! writes codec 2 (or 0 for text the split form cannot hold) and reads 0, 1
//! and 2: codec 1 is codec 2's content in another order, written by earlier
//! builds.
//!
//! Decision: codec 2 puts the compressed text last, so that its length is
//! implied by the end of the bytes and zstd writes it straight into the
//! output, which is built once; codec 1 put it first, behind a length, and so
//! needed the frame compressed elsewhere and copied. Blobs are tried with
//! zstd only when a cheap estimate (below) says they may shrink: onions,
//! keys and signatures are random, and the attempt was thrown away.
//!
//! This module must not know about versions, hashes or storage.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Plain postcard `Vec<String>`, uncompressed (for text the split form cannot hold).
const CODEC_PLAIN: u8 = 0;
/// Split text and blobs; text compressed with zstd and dictionary v1, first
/// (read only: written by earlier builds).
const CODEC_SPLIT_DICT1: u8 = 1;
/// The same content as codec 1 with the text's frame last: [`SplitHead`],
/// then the magicless frame to the end of the bytes.
const CODEC_SPLIT_DICT1_TEXT_LAST: u8 = 2;

/// Separates statements in the split text. Statements from SQLite never contain NUL.
const STMT_SEP: u8 = 0;
/// Stands where a blob literal was lifted out.
const BLOB_MARK: u8 = 1;

/// Blob literals shorter than this many bytes stay in the text: not worth a length.
const MIN_BLOB: usize = 8;

const ZSTD_LEVEL: i32 = 9;

/// Raw-content zstd dictionary: the shapes of lightningd's statements (values
/// removed, blob literals as the mark byte, most frequent last), taken from a
/// real node's log, `migrations/` and the CLN-shaped workload generator.
/// Frozen: it is part of codec 1.
static DICTIONARY_V1: &[u8] = include_bytes!("dictionary.sql");

/// Codec 1, as earlier builds wrote it.
#[derive(Deserialize)]
struct Split {
    /// Length of the text before compression.
    text_len: u32,
    /// Magicless zstd frame (no dictionary id, no content size: both are
    /// implied) of the statements joined by NUL, blobs replaced by a mark byte.
    text: Vec<u8>,
    /// Length of each lifted blob, in order of appearance.
    blob_lens: Vec<u32>,
    /// The lifted blobs, concatenated; zstd-compressed when that saved space.
    blobs: Vec<u8>,
    blobs_compressed: bool,
}

/// Codec 2's fields before the text's frame.
#[derive(Deserialize)]
struct SplitHead {
    text_len: u32,
    blob_lens: Vec<u32>,
    blobs: Vec<u8>,
    blobs_compressed: bool,
}

/// [`SplitHead`] borrowed for writing: the same fields, so the same bytes.
#[derive(Serialize)]
struct SplitHeadRef<'a> {
    text_len: u32,
    blob_lens: &'a [u32],
    blobs: &'a [u8],
    blobs_compressed: bool,
}

/// Why stored statement bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown statement codec {0}")]
    UnknownCodec(u8),
    #[error("empty statement payload")]
    Empty,
    #[error("malformed statement payload: {0}")]
    Malformed(String),
}

fn encoder_dict() -> &'static zstd::dict::EncoderDictionary<'static> {
    static D: OnceLock<zstd::dict::EncoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::EncoderDictionary::copy(DICTIONARY_V1, ZSTD_LEVEL))
}

fn decoder_dict() -> &'static zstd::dict::DecoderDictionary<'static> {
    static D: OnceLock<zstd::dict::DecoderDictionary<'static>> = OnceLock::new();
    D.get_or_init(|| zstd::dict::DecoderDictionary::copy(DICTIONARY_V1))
}

thread_local! {
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static BLOB_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn new_compressor() -> Option<zstd::bulk::Compressor<'static>> {
    use zstd::stream::raw::CParameter;
    let mut c = zstd::bulk::Compressor::with_prepared_dictionary(encoder_dict()).ok()?;
    // The frame's magic number, dictionary id and content size are implied by
    // the codec id and the stored length: 9 bytes a record saved.
    c.set_parameter(CParameter::DictIdFlag(false)).ok()?;
    c.set_parameter(CParameter::ContentSizeFlag(false)).ok()?;
    c.set_parameter(CParameter::ChecksumFlag(false)).ok()?;
    Some(c)
}

fn new_decompressor() -> Result<zstd::bulk::Decompressor<'static>, DecodeError> {
    zstd::bulk::Decompressor::with_prepared_dictionary(decoder_dict())
        .map_err(|e| DecodeError::Malformed(e.to_string()))
}

/// The zstd frame magic number, left out of stored frames.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Append the magicless zstd frame of `text` to `out`, which must already
/// hold at least 4 bytes (a codec 2 head always does): zstd writes the frame
/// in place, its magic number over the last 4 bytes of `out`, which are put
/// back afterwards. `false` (and `out` as it was) if zstd cannot allocate its
/// context or fails.
fn append_text_frame(text: &[u8], out: &mut Vec<u8>) -> bool {
    let Some(at) = out.len().checked_sub(ZSTD_MAGIC.len()) else {
        return false;
    };
    let mut saved = [0u8; 4];
    saved.copy_from_slice(&out[at..]);
    out.reserve(zstd::zstd_safe::compress_bound(text.len()));
    let written = COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = new_compressor();
        }
        let c = slot.as_mut()?;
        let mut cursor = std::io::Cursor::new(&mut *out);
        cursor.set_position(at as u64);
        c.compress_to_buffer(text, &mut cursor).ok()
    });
    let framed = written.is_some_and(|n| n >= ZSTD_MAGIC.len()) && out.get(at..at + 4) == Some(&ZSTD_MAGIC[..]);
    if !framed {
        out.truncate(at);
        out.extend_from_slice(&saved);
        return false;
    }
    out[at..at + 4].copy_from_slice(&saved);
    true
}

/// Whether zstd may shrink `blobs` by the sixteenth that storing them
/// compressed requires, judged without compressing: by the byte entropy
/// (with the cost of a Huffman table) and by the repeated 4-byte sequences a
/// match could use. Random bytes (onions, keys, signatures) fail both.
fn blobs_may_shrink(blobs: &[u8]) -> bool {
    let n = blobs.len();
    let needed = n / 16 + 1;
    let mut counts = [0u32; 256];
    for &b in blobs {
        counts[b as usize] += 1;
    }
    let symbols = counts.iter().filter(|&&c| c > 0).count();
    let bits: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n as f64;
            -p * p.log2()
        })
        .sum();
    // The empirical entropy of a short sample is biased low; the table costs
    // about half a byte a symbol.
    let bits = bits + (symbols as f64 - 1.0) / (2.0 * n as f64 * std::f64::consts::LN_2);
    let entropy_bytes = (bits * n as f64 / 8.0) as usize + symbols / 2;
    if entropy_bytes + needed <= n {
        return true;
    }
    // Repeats: positions whose 4 bytes appeared before (a small hash table
    // of the last position of each hashed 4-byte sequence).
    let mut last = [u32::MAX; 4096];
    let mut repeated = 0usize;
    for i in 0..n.saturating_sub(3) {
        let word = u32::from_le_bytes([blobs[i], blobs[i + 1], blobs[i + 2], blobs[i + 3]]);
        let slot = (word.wrapping_mul(2_654_435_761) >> 20) as usize;
        let prev = last[slot];
        if prev != u32::MAX && blobs.get(prev as usize..prev as usize + 4) == Some(&blobs[i..i + 4]) {
            repeated += 1;
            if repeated >= needed {
                return true;
            }
        }
        last[slot] = i as u32;
    }
    false
}

#[cfg(test)]
thread_local! {
    /// Blob compressions attempted by this thread, for the tests.
    static BLOB_TRIALS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

fn decompress_text(frame: &[u8], size: u32) -> Result<Vec<u8>, DecodeError> {
    if size > 1 << 30 {
        return Err(DecodeError::Malformed(format!("text of {size} bytes")));
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(new_decompressor()?);
        }
        let d = slot.as_mut().ok_or(DecodeError::Empty)?;
        let mut whole = Vec::with_capacity(frame.len() + ZSTD_MAGIC.len());
        whole.extend_from_slice(&ZSTD_MAGIC);
        whole.extend_from_slice(frame);
        let text = d.decompress(&whole, size as usize).map_err(|e| DecodeError::Malformed(e.to_string()))?;
        if text.len() != size as usize {
            return Err(DecodeError::Malformed(format!("text is {} bytes, expected {size}", text.len())));
        }
        Ok(text)
    })
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn hex_val(b: u8) -> u8 {
    if b.is_ascii_digit() {
        b - b'0'
    } else {
        b - b'a' + 10
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lift blob literals out of one statement, appending text to `text` and blobs to `blobs`.
fn split_statement(stmt: &[u8], text: &mut Vec<u8>, blob_lens: &mut Vec<u32>, blobs: &mut Vec<u8>) {
    let mut i = 0;
    let mut in_string = false;
    while i < stmt.len() {
        let b = stmt[i];
        if in_string {
            // `''` inside a string is an escaped quote: both bytes stay in the string.
            if b == b'\'' {
                if stmt.get(i + 1) == Some(&b'\'') {
                    text.extend_from_slice(b"''");
                    i += 2;
                    continue;
                }
                in_string = false;
            }
            text.push(b);
            i += 1;
            continue;
        }
        if b == b'x' && stmt.get(i + 1) == Some(&b'\'') && (i == 0 || !is_ident(stmt[i - 1])) {
            let start = i + 2;
            let mut end = start;
            while end < stmt.len() && is_lower_hex(stmt[end]) {
                end += 1;
            }
            let digits = end - start;
            if stmt.get(end) == Some(&b'\'')
                && digits % 2 == 0
                && digits / 2 >= MIN_BLOB
                && digits / 2 <= u32::MAX as usize
            {
                text.push(BLOB_MARK);
                blob_lens.push((digits / 2) as u32);
                for pair in stmt[start..end].chunks_exact(2) {
                    blobs.push(hex_val(pair[0]) << 4 | hex_val(pair[1]));
                }
                i = end + 1;
                continue;
            }
        }
        if b == b'\'' {
            in_string = true;
        }
        text.push(b);
        i += 1;
    }
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn plain<S: AsRef<str>>(statements: &[S]) -> Result<Vec<u8>, String> {
    let plain: Vec<&str> = statements.iter().map(|s| s.as_ref()).collect();
    let mut out = vec![CODEC_PLAIN];
    out.extend(postcard::to_stdvec(&plain).map_err(|e| format!("statements do not encode: {e}"))?);
    Ok(out)
}

/// Encode one transaction's statements. An error is returned, never empty
/// bytes: stored bytes must always decode to the statements given.
pub fn encode<S: AsRef<str>>(statements: &[S]) -> Result<Vec<u8>, String> {
    let representable = statements.iter().all(|s| !s.as_ref().bytes().any(|b| b == STMT_SEP || b == BLOB_MARK));
    if !representable {
        return plain(statements);
    }
    let total: usize = statements.iter().map(|s| s.as_ref().len() + 1).sum();
    let mut text = Vec::with_capacity(total);
    let mut blobs = Vec::with_capacity(total / 2);
    let mut blob_lens = Vec::new();
    for (n, s) in statements.iter().enumerate() {
        if n > 0 {
            text.push(STMT_SEP);
        }
        split_statement(s.as_ref().as_bytes(), &mut text, &mut blob_lens, &mut blobs);
    }
    let mut blobs_compressed = false;
    if blobs.len() >= 64 && blobs_may_shrink(&blobs) {
        #[cfg(test)]
        BLOB_TRIALS.with(|t| t.set(t.get() + 1));
        // Scripts and transactions with repeated parts shrink. A shared
        // context keeps the attempt cheap.
        let packed = BLOB_COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = zstd::bulk::Compressor::new(1).ok();
            }
            slot.as_mut().and_then(|c| c.compress(&blobs).ok())
        });
        if let Some(c) = packed {
            if c.len() + c.len() / 16 < blobs.len() {
                blobs = c;
                blobs_compressed = true;
            }
        }
    }
    let Ok(text_len) = u32::try_from(text.len()) else {
        return plain(statements);
    };
    let head = SplitHeadRef { text_len, blob_lens: &blob_lens, blobs: &blobs, blobs_compressed };
    let mut out = Vec::with_capacity(16 + blob_lens.len() * 2 + blobs.len() + text.len() / 2);
    out.push(CODEC_SPLIT_DICT1_TEXT_LAST);
    let mut out = postcard::to_extend(&head, out).map_err(|e| format!("statements do not encode: {e}"))?;
    if !append_text_frame(&text, &mut out) {
        return plain(statements);
    }
    Ok(out)
}

/// Decode what [`encode`] produced.
pub fn decode(bytes: &[u8]) -> Result<Vec<String>, DecodeError> {
    let (&codec, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match codec {
        CODEC_PLAIN => postcard::from_bytes::<Vec<String>>(body).map_err(|e| DecodeError::Malformed(e.to_string())),
        CODEC_SPLIT_DICT1 => {
            let split: Split = postcard::from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
            let text = decompress_text(&split.text, split.text_len)?;
            let head = SplitHead {
                text_len: split.text_len,
                blob_lens: split.blob_lens,
                blobs: split.blobs,
                blobs_compressed: split.blobs_compressed,
            };
            join(text, head)
        }
        CODEC_SPLIT_DICT1_TEXT_LAST => {
            let (head, frame): (SplitHead, &[u8]) =
                postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
            let text = decompress_text(frame, head.text_len)?;
            join(text, head)
        }
        other => Err(DecodeError::UnknownCodec(other)),
    }
}

/// The statements from their decompressed text and lifted blobs.
fn join(text: Vec<u8>, split: SplitHead) -> Result<Vec<String>, DecodeError> {
    let blobs = if split.blobs_compressed {
        let expected: usize = split.blob_lens.iter().map(|&l| l as usize).sum();
        zstd::bulk::decompress(&split.blobs, expected).map_err(|e| DecodeError::Malformed(e.to_string()))?
    } else {
        split.blobs
    };
    let mut lens = split.blob_lens.iter();
    let mut at = 0usize;
    let mut out = Vec::new();
    for stmt in text.split(|&b| b == STMT_SEP) {
        let mut s = Vec::with_capacity(stmt.len() * 2);
        for &b in stmt {
            if b == BLOB_MARK {
                let len =
                    *lens.next().ok_or_else(|| DecodeError::Malformed("more blob marks than blobs".into()))? as usize;
                let blob = blobs
                    .get(at..at + len)
                    .ok_or_else(|| DecodeError::Malformed("blob lengths exceed blob bytes".into()))?;
                at += len;
                s.extend_from_slice(b"x'");
                for &x in blob {
                    s.push(HEX[(x >> 4) as usize]);
                    s.push(HEX[(x & 15) as usize]);
                }
                s.push(b'\'');
            } else {
                s.push(b);
            }
        }
        out.push(String::from_utf8(s).map_err(|_| DecodeError::Malformed("statement is not UTF-8".into()))?);
    }
    if lens.next().is_some() || at != blobs.len() {
        return Err(DecodeError::Malformed("unused blob bytes".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(stmts: &[String]) {
        let enc = encode(stmts).unwrap();
        assert_eq!(decode(&enc).expect("decodes"), stmts);
    }

    #[test]
    fn lifts_blobs_and_keeps_strings() {
        let stmts = vec![
            "INSERT INTO t VALUES(x'00112233445566778899aabbccddeeff', 'x''00112233445566778899''', X'AABBCCDDEEFF0011AABB')".to_string(),
            "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 4".to_string(),
        ];
        round_trip(&stmts);
        let enc = encode(&stmts).unwrap();
        assert_eq!(enc[0], CODEC_SPLIT_DICT1_TEXT_LAST);
        let (split, _frame): (SplitHead, &[u8]) = postcard::take_from_bytes(&enc[1..]).expect("split");
        assert_eq!(split.blob_lens, vec![16], "only the unquoted lowercase literal is lifted");
    }

    #[test]
    fn falls_back_for_control_bytes() {
        let stmts = vec!["SELECT '\u{1}'".to_string()];
        round_trip(&stmts);
        assert_eq!(encode(&stmts).unwrap()[0], CODEC_PLAIN);
    }

    #[test]
    fn rejects_garbage() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[CODEC_SPLIT_DICT1, 1, 2, 3]).is_err());
    }

    /// Statements with a key and a repetitive script, and their codec 1
    /// bytes as the build before codec 2 wrote them (text frame first, blobs
    /// compressed).
    const V1_STATEMENTS: [&str; 3] = [
        "INSERT INTO peers (id, node_id, address) VALUES (7, x'02aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899', 'host:9735');",
        "UPDATE outputs SET scriptpubkey = x'0014000000000000000000000000000000000000000000140000000000000000000000000000000000000000001400000000000000000000000000000000000000000014000000000000000000000000000000000000000000' WHERE prev_out_index = 1;",
        "UPDATE vars SET intval = intval + 1 WHERE name = 'data_version' AND intval = 41",
    ];
    const V1_BYTES: &str = "01d2014c00003d0200140269642c203727686f73743a3937333527293b003d203d20313b00316461746134310b0054d381efa904417791c6d15c3e3dc4110416eee182298ba9128d7087086dfa6102810221593228b52ffd207a4d0100d002aabbccddeeff00112233445566778899001400140014001400050080c680c680c6387a1c642e0101";

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn codec_1_records_still_decode() {
        let old = unhex(V1_BYTES);
        assert_eq!(old[0], CODEC_SPLIT_DICT1);
        assert_eq!(decode(&old).unwrap(), V1_STATEMENTS);
        // New records carry the same content in codec 2, no longer than before.
        let new = encode(&V1_STATEMENTS).unwrap();
        assert_eq!(new[0], CODEC_SPLIT_DICT1_TEXT_LAST);
        assert!(new.len() <= old.len(), "codec 2 is {} bytes, codec 1 {}", new.len(), old.len());
        assert_eq!(decode(&new).unwrap(), V1_STATEMENTS);
    }

    #[test]
    fn codec_2_text_frame_is_the_end_of_the_bytes() {
        let enc = encode(&V1_STATEMENTS).unwrap();
        let (head, frame): (SplitHead, &[u8]) = postcard::take_from_bytes(&enc[1..]).unwrap();
        assert!(head.blobs_compressed, "the repetitive script shrinks");
        assert_eq!(decompress_text(frame, head.text_len).unwrap().len(), head.text_len as usize);
        // A cut frame is an error, not other statements.
        assert!(decode(&enc[..enc.len() - 1]).is_err());
    }

    fn trials() -> u32 {
        BLOB_TRIALS.with(std::cell::Cell::get)
    }

    fn random_bytes(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    fn literal(bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("x'{hex}'")
    }

    #[test]
    fn random_blobs_are_not_tried_with_zstd() {
        for (n, seed) in [(64, 1), (100, 2), (590, 3), (1366, 4), (5000, 5)] {
            let stmt = format!("INSERT INTO t VALUES({})", literal(&random_bytes(n, seed)));
            let before = trials();
            round_trip(&[stmt]);
            assert_eq!(trials(), before, "a random blob of {n} bytes was trial-compressed");
        }
    }

    #[test]
    fn blobs_that_shrink_are_still_compressed() {
        // A transaction paying one random key hash 12 times, between random bytes.
        let key = random_bytes(20, 9);
        let mut script = random_bytes(100, 10);
        for _ in 0..12 {
            script.extend_from_slice(&[0x00, 0x14]);
            script.extend_from_slice(&key);
            script.extend_from_slice(&random_bytes(8, script.len() as u64));
        }
        let zeros = vec![0u8; 300];
        let mut skewed = random_bytes(400, 11);
        skewed.iter_mut().for_each(|b| *b &= 0x0f);
        for blob in [zeros, skewed, script] {
            let stmts = [format!("INSERT INTO t VALUES({})", literal(&blob))];
            let enc = encode(&stmts).unwrap();
            let (head, _): (SplitHead, &[u8]) = postcard::take_from_bytes(&enc[1..]).unwrap();
            assert!(head.blobs_compressed, "a blob of {} bytes that shrinks was stored as it is", blob.len());
            assert_eq!(decode(&enc).unwrap(), stmts);
        }
    }

    proptest! {
        #[test]
        fn any_statements_round_trip(stmts in proptest::collection::vec("(x'[0-9a-fA-F]{0,40}'?|'[^']{0,5}'{0,2}|[ -~]{0,10}|\\PC{0,4})*", 1..5)) {
            round_trip(&stmts);
        }
    }
}
