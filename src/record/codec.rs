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
//! the same way, so a new dictionary or layout gets a new id.
//!
//! This module must not know about versions, hashes or storage.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

/// Plain postcard `Vec<String>`, uncompressed (for text the split form cannot hold).
const CODEC_PLAIN: u8 = 0;
/// Split text and blobs; text compressed with zstd and dictionary v1.
const CODEC_SPLIT_DICT1: u8 = 1;

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

#[derive(Serialize, Deserialize)]
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

/// Compress the text; `None` only if zstd cannot allocate its context.
fn compress_text(text: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = new_compressor();
        }
        let frame = slot.as_mut().and_then(|c| c.compress(text).ok())?;
        frame.strip_prefix(&ZSTD_MAGIC).map(<[u8]>::to_vec)
    })
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
    if blobs.len() >= 64 {
        // Onions, signatures and keys are random and stay as they are; scripts
        // and transactions with repeated parts shrink. A shared context keeps
        // the attempt cheap.
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
    let (Ok(text_len), Some(frame)) = (u32::try_from(text.len()), compress_text(&text)) else {
        return plain(statements);
    };
    let split = Split { text_len, text: frame, blob_lens, blobs, blobs_compressed };
    let mut out = vec![CODEC_SPLIT_DICT1];
    out.extend(postcard::to_stdvec(&split).map_err(|e| format!("statements do not encode: {e}"))?);
    Ok(out)
}

/// Decode what [`encode`] produced.
pub fn decode(bytes: &[u8]) -> Result<Vec<String>, DecodeError> {
    let (&codec, body) = bytes.split_first().ok_or(DecodeError::Empty)?;
    match codec {
        CODEC_PLAIN => postcard::from_bytes::<Vec<String>>(body).map_err(|e| DecodeError::Malformed(e.to_string())),
        CODEC_SPLIT_DICT1 => decode_split(body),
        other => Err(DecodeError::UnknownCodec(other)),
    }
}

fn decode_split(body: &[u8]) -> Result<Vec<String>, DecodeError> {
    let split: Split = postcard::from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let text = decompress_text(&split.text, split.text_len)?;
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
        assert_eq!(enc[0], CODEC_SPLIT_DICT1);
        let split: Split = postcard::from_bytes(&enc[1..]).expect("split");
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

    proptest! {
        #[test]
        fn any_statements_round_trip(stmts in proptest::collection::vec("(x'[0-9a-fA-F]{0,40}'?|'[^']{0,5}'{0,2}|[ -~]{0,10}|\\PC{0,4})*", 1..5)) {
            round_trip(&stmts);
        }
    }
}
