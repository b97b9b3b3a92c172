//! Encryption at rest of what goes to a remote copy: the key, where it comes
//! from, and sealing and opening objects with it.
//!
//! Owns the key sources (a key file, or a key derived from the node's
//! `hsm_secret`), the sealed-object format and its size classes. It must not
//! know where sealed bytes are kept, nor what they hold (compression and
//! layout are the destination's).
//!
//! Decisions:
//!
//! - **Key file**: 64 hexadecimal characters (a 256-bit key) and an optional
//!   newline, nothing else. `create_key_file` writes a new random one,
//!   mode 0600, never over an existing file.
//! - **`hsm_secret`**: the key is HKDF-SHA256 of the secret with a fixed,
//!   versioned info string, so the node's own backup of `hsm_secret` (or
//!   of its mnemonic) is all a restore needs. Accepted: the classic 32 raw
//!   bytes, and the mnemonic form of newer lightningd (32 bytes of
//!   passphrase hash, all zero without a passphrase, then the words; the key
//!   comes from the hash and the words, with the words' spacing
//!   normalised, so the file rebuilt from the same words and passphrase
//!   gives the same key). Refused: the encrypted 73-byte form, whose bytes
//!   change whenever its passphrase does, so a key derived from them would
//!   be lost with a passphrase change; and anything else.
//! - **Sealed object**: a 45-byte header (magic, format 1, the chunk size, a
//!   16-byte key check value, a 16-byte random salt), then chunks of exactly
//!   `chunk` plaintext bytes each (a 4-byte count of the data bytes it holds,
//!   the data, zeros) sealed with XChaCha20-Poly1305. A chunk's nonce is the
//!   salt, its index and a last-chunk flag; its associated data is the header,
//!   the object's name, the index and the flag: chunks cannot be reordered,
//!   dropped at the end, or moved to another object or name without failing
//!   to open. The key check value is derived from the key (HKDF, its own
//!   info string), so a wrong key is told apart from damage before any chunk
//!   is opened. Random 128-bit salts make nonce reuse under one key
//!   negligible without any state.
//! - **What a restore needs**: the key file, or the `hsm_secret` (for the
//!   mnemonic form, the words and passphrase it is rebuilt from); nothing
//!   of the key is stored with the copy but a check value that tells a
//!   wrong key from damage.
//! - **Size classes**: an object that fits one chunk (up to 64 KiB) is
//!   padded to 1 KiB or to two significant bits above it (1, 1.25, 1.5,
//!   1.75 × a power of two); a larger one is 64 KiB chunks, their number
//!   rounded up to four significant bits (exact up to 15 chunks). What stays
//!   visible: the size class (at most 25% and 12.5% apart), the number of
//!   objects, their names (versions, never content) and when they are
//!   written.
//!
//! ```
//! use cln_backup::encryption::KeySource;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("backup.key");
//! std::fs::write(&path, format!("{}\n", "5a".repeat(32)))?;
//! let key = KeySource::KeyFile(path.clone()).load()?;
//! assert_eq!(format!("{key:?}"), "Key(..)", "a key is never printed");
//!
//! // Anything but 64 hexadecimal characters and a newline is refused.
//! std::fs::write(&path, "5a".repeat(16))?;
//! let err = KeySource::KeyFile(path).load().unwrap_err();
//! assert!(err.to_string().contains("64 hexadecimal characters"), "{err}");
//! # Ok(()) }
//! ```

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Where the key of a remote copy comes from.
///
/// ```
/// use cln_backup::encryption::KeySource;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let key_file = dir.path().join("backup.key");
/// std::fs::write(&key_file, "5a".repeat(32))?;
/// assert!(KeySource::KeyFile(key_file).load().is_ok());
///
/// // An encrypted hsm_secret is refused: its bytes change with its passphrase.
/// let hsm_secret = dir.path().join("hsm_secret");
/// std::fs::write(&hsm_secret, [1u8; 73])?;
/// let err = KeySource::HsmSecret(hsm_secret).load().unwrap_err();
/// assert!(err.to_string().contains("encrypted hsm_secret"), "{err}");
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// A file holding the key.
    KeyFile(PathBuf),
    /// The node's `hsm_secret`, from which the key is derived.
    HsmSecret(PathBuf),
}

/// The largest key file or `hsm_secret` read: both are far smaller.
const MAX_SECRET_FILE: u64 = 4096;

impl KeySource {
    /// Read the key: parse the key file, or derive the key from `hsm_secret`.
    ///
    /// ```
    /// use cln_backup::encryption::KeySource;
    /// use cln_backup::ErrorKind;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("backup.key");
    /// std::fs::write(&path, "not a key\n")?;
    /// let err = KeySource::KeyFile(path.clone()).load().unwrap_err();
    /// // The wrong file was given: the message names it.
    /// assert_eq!(err.kind(), ErrorKind::Incompatible);
    /// assert!(err.to_string().starts_with(&path.display().to_string()), "{err}");
    /// std::fs::write(&path, "00ff".repeat(16))?;
    /// assert!(KeySource::KeyFile(path).load().is_ok());
    /// # Ok(()) }
    /// ```
    pub fn load(&self) -> Result<Key> {
        match self {
            KeySource::KeyFile(path) => {
                let bytes = read_small(path)?;
                parse_key_file(&bytes).map_err(|what| Error::Key { path: path.clone(), what })
            }
            KeySource::HsmSecret(path) => {
                let bytes = read_small(path)?;
                derive_from_hsm_secret(&bytes).map_err(|what| Error::Key { path: path.clone(), what })
            }
        }
    }
}

fn read_small(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(Error::Key {
            path: path.to_path_buf(),
            what: format!("larger than {MAX_SECRET_FILE} bytes: neither a key file nor an hsm_secret"),
        });
    }
    Ok(bytes)
}

const KEY_FILE_FORM: &str = "a key file holds 64 hexadecimal characters (a 256-bit key) and a newline";

fn parse_key_file(bytes: &[u8]) -> std::result::Result<Key, String> {
    let text = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if text.len() != 64 {
        return Err(format!("not a key file: {} characters where {KEY_FILE_FORM}", text.len()));
    }
    let mut key = [0u8; 32];
    for (i, pair) in text.chunks(2).enumerate() {
        let hi = hex_digit(pair[0]);
        let lo = hex_digit(pair[1]);
        match (hi, lo) {
            (Some(hi), Some(lo)) => key[i] = hi << 4 | lo,
            _ => return Err(format!("not a key file: a character that is not hexadecimal ({KEY_FILE_FORM})")),
        }
    }
    Ok(Key { bytes: key })
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// What an `hsm_secret` file holds, as far as the key derivation cares.
#[derive(Debug, PartialEq, Eq)]
enum HsmSecretForm<'a> {
    /// The classic 32 raw bytes.
    Plain(&'a [u8]),
    /// The mnemonic form: the passphrase hash (zero without one), and the
    /// words with their spacing normalised.
    Mnemonic { passphrase_hash: &'a [u8], words: String },
}

/// The encrypted `hsm_secret`: a 24-byte stream header, 32 bytes and a
/// 17-byte tag.
const ENCRYPTED_HSM_SECRET_LEN: usize = 73;

fn classify_hsm_secret(bytes: &[u8]) -> std::result::Result<HsmSecretForm<'_>, String> {
    if bytes.len() == 32 {
        return Ok(HsmSecretForm::Plain(bytes));
    }
    if bytes.len() == ENCRYPTED_HSM_SECRET_LEN {
        return Err("an encrypted hsm_secret (73 bytes): its bytes change with its passphrase, so a key derived \
                    from them would not survive a passphrase change; use a key file instead"
            .into());
    }
    if bytes.len() < 32 {
        return Err(format!("not an hsm_secret: {} bytes (a plain hsm_secret has 32)", bytes.len()));
    }
    let (passphrase_hash, rest) = bytes.split_at(32);
    // The words as lightningd reads them: a C string, so a trailing NUL
    // (or several) is not part of them.
    let end = rest.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    let rest = &rest[..end];
    let text =
        std::str::from_utf8(rest).map_err(|_| "not an hsm_secret: after 32 bytes, no mnemonic words".to_string())?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let well_formed = (12..=24).contains(&words.len())
        && words.iter().all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase()));
    if !well_formed {
        return Err("not an hsm_secret: after 32 bytes, not 12 to 24 mnemonic words".into());
    }
    Ok(HsmSecretForm::Mnemonic { passphrase_hash, words: words.join(" ") })
}

/// Key files and new keys need only hexadecimal text; the derivation from
/// `hsm_secret` and sealing need the object-store feature's crates.
#[cfg(not(feature = "object-store"))]
fn derive_from_hsm_secret(bytes: &[u8]) -> std::result::Result<Key, String> {
    classify_hsm_secret(bytes)?;
    Err("this cln-backup was built without object storage (the object-store feature), which derives keys".into())
}

/// The info string of the key derived from `hsm_secret`: versioned, so a
/// future derivation is a new string, never a changed one.
#[cfg(feature = "object-store")]
const HSM_SECRET_INFO: &[u8] = b"cln-backup/remote-copy-key/v1";

#[cfg(feature = "object-store")]
fn derive_from_hsm_secret(bytes: &[u8]) -> std::result::Result<Key, String> {
    let mut ikm = Vec::with_capacity(bytes.len() + 16);
    match classify_hsm_secret(bytes)? {
        HsmSecretForm::Plain(secret) => {
            ikm.extend_from_slice(b"plain:");
            ikm.extend_from_slice(secret);
        }
        HsmSecretForm::Mnemonic { passphrase_hash, words } => {
            ikm.extend_from_slice(b"mnemonic:");
            ikm.extend_from_slice(passphrase_hash);
            ikm.extend_from_slice(words.as_bytes());
        }
    }
    let mut out = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(b"cln-backup"), &ikm)
        .expand(HSM_SECRET_INFO, &mut out)
        .map_err(|_| "the key derivation failed".to_string())?;
    Ok(Key { bytes: out })
}

/// Write a new random key to `path` (mode 0600, as a key file holds it) and
/// return it. Refused when `path` exists: a key is never replaced, as the
/// copies sealed with it could no longer be opened.
///
/// ```
/// use cln_backup::encryption::{create_key_file, open, seal, KeySource};
/// use std::os::unix::fs::PermissionsExt;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("backup.key");
/// let key = create_key_file(&path)?;
/// assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
/// // What the new key seals opens with the key read back from the file.
/// let sealed = seal(&key, "lease", b"hello")?;
/// assert_eq!(open(&KeySource::KeyFile(path.clone()).load()?, "lease", &sealed)?, b"hello");
/// assert!(create_key_file(&path).is_err(), "never replaced");
/// # Ok(()) }
/// ```
#[cfg(feature = "object-store")]
pub fn create_key_file(path: &Path) -> Result<Key> {
    use crate::atomic_file::{NewOwner, Replace, TempFile};
    use std::io::Write;
    if path.symlink_metadata().is_ok() {
        return Err(exists(path));
    }
    let key = Key::generate().map_err(|what| Error::Key { path: path.to_path_buf(), what })?;
    let mut temp = TempFile::create(path, "key")?;
    let text = format!("{}\n", key.to_hex());
    let temp_path = temp.path().to_path_buf();
    temp.file()?.write_all(text.as_bytes()).map_err(|e| Error::io(&temp_path, e))?;
    match temp.commit(Replace::Never, NewOwner::Process) {
        Ok(_) => Ok(key),
        Err(Error::DestinationExists { .. }) => Err(exists(path)),
        Err(e) => Err(e),
    }
}

#[cfg(feature = "object-store")]
fn exists(path: &Path) -> Error {
    Error::Key {
        path: path.to_path_buf(),
        what: "already exists; a key is never replaced (the copies sealed with it need it)".into(),
    }
}

/// A 256-bit key, never printed.
///
/// ```
/// use cln_backup::encryption::Key;
///
/// let key = Key::from_bytes([0x5a; 32]);
/// assert_eq!(format!("{key:?}"), "Key(..)");
/// ```
#[derive(Clone)]
pub struct Key {
    bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let _ = self.bytes;
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key from its 32 bytes (an embedder keeping keys its own way).
    ///
    /// ```
    /// # #[cfg(feature = "object-store")]
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use cln_backup::encryption::{open, seal, Key, KeySource};
    ///
    /// let dir = tempfile::tempdir()?;
    /// // The same 32 bytes, kept by the embedder and as a key file.
    /// let key = Key::from_bytes([7; 32]);
    /// std::fs::write(dir.path().join("backup.key"), "07".repeat(32))?;
    /// let from_file = KeySource::KeyFile(dir.path().join("backup.key")).load()?;
    /// let sealed = seal(&key, "lease", b"hello")?;
    /// assert_eq!(open(&from_file, "lease", &sealed)?, b"hello");
    /// # Ok(()) }
    /// # #[cfg(not(feature = "object-store"))]
    /// # fn main() {}
    /// ```
    pub fn from_bytes(bytes: [u8; 32]) -> Key {
        Key { bytes }
    }

    /// A new random key from the operating system.
    ///
    /// ```
    /// use cln_backup::encryption::{open, seal, Key};
    /// use cln_backup::Error;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mine, another) = (Key::generate()?, Key::generate()?);
    /// let sealed = seal(&mine, "lease", b"hello")?;
    /// assert_eq!(open(&mine, "lease", &sealed)?, b"hello");
    /// assert!(matches!(open(&another, "lease", &sealed), Err(Error::WrongKey { .. })));
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "object-store")]
    pub fn generate() -> std::result::Result<Key, String> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| format!("no randomness from the operating system: {e}"))?;
        Ok(Key { bytes })
    }

    #[cfg(feature = "object-store")]
    fn to_hex(&self) -> String {
        self.bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(feature = "object-store")]
pub use seal::{is_size_class, open, seal, Opener, Sealer, HEADER_LEN};

/// The sealed-object format (see the module's decisions).
#[cfg(feature = "object-store")]
mod seal {
    use super::Key;
    use crate::{Error, Result};
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};
    use std::io::Write;

    const MAGIC: &[u8; 8] = b"clnbkOBJ";
    const FORMAT: u8 = 1;
    /// Bytes of the header: magic, format, chunk size, key check, salt.
    ///
    /// ```
    /// use cln_backup::encryption::{open, seal, Key, HEADER_LEN};
    /// use cln_backup::Error;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([1; 32]);
    /// let sealed = seal(&key, "lease", b"hello")?;
    /// let header = &sealed[..HEADER_LEN];
    /// // The header alone tells a wrong key apart from damage...
    /// let other = Key::from_bytes([2; 32]);
    /// assert!(matches!(open(&other, "lease", header), Err(Error::WrongKey { .. })));
    /// // ... and an object that ends after it is truncated.
    /// assert!(matches!(open(&key, "lease", header), Err(Error::Truncated { .. })));
    /// # Ok(()) }
    /// ```
    pub const HEADER_LEN: usize = 8 + 1 + 4 + 16 + 16;
    const TAG: usize = 16;
    /// The chunk size of objects larger than one chunk, and the largest.
    const BIG_CHUNK: usize = 64 * 1024;
    /// The smallest chunk (and so the smallest object's class).
    const MIN_CHUNK: usize = 1024;
    /// Each chunk's plaintext starts with the count of data bytes it holds.
    const COUNT: usize = 4;

    /// The subkeys of a key: the sealing key and the key check value.
    struct Keys {
        aead: XChaCha20Poly1305,
        check: [u8; 16],
    }

    fn keys(key: &Key) -> Keys {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, &key.bytes);
        let mut seal = [0u8; 32];
        let mut check = [0u8; 16];
        // Both lengths are far below HKDF-SHA256's limit of 8160 bytes.
        let _ = hk.expand(b"cln-backup/object/v1/seal", &mut seal);
        let _ = hk.expand(b"cln-backup/object/v1/key-check", &mut check);
        Keys { aead: XChaCha20Poly1305::new(&seal.into()), check }
    }

    /// `x` rounded up to `bits` significant bits.
    fn round_up(x: u64, bits: u32) -> u64 {
        let width = 64 - x.leading_zeros();
        if width <= bits {
            return x;
        }
        let shift = width - bits;
        let unit = 1u64 << shift;
        x.div_ceil(unit) * unit
    }

    fn small_chunk(len: usize) -> usize {
        (round_up(len.max(MIN_CHUNK) as u64, 3) as usize).min(BIG_CHUNK)
    }

    fn chunk_count_class(n: u64) -> u64 {
        round_up(n.max(1), 4)
    }

    /// Whether `size` is the size of a sealed object: one chunk of a small
    /// class, or 64 KiB chunks in a counted class.
    ///
    /// ```
    /// use cln_backup::encryption::{is_size_class, seal, Key};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([1; 32]);
    /// let short = seal(&key, "segments/a", &[0; 10])?;
    /// let longer = seal(&key, "segments/b", &[0; 900])?;
    /// assert_eq!(short.len(), longer.len(), "one size class");
    /// assert!(is_size_class(short.len() as u64));
    /// assert!(!is_size_class(short.len() as u64 + 1));
    /// # Ok(()) }
    /// ```
    pub fn is_size_class(size: u64) -> bool {
        let Some(body) = size.checked_sub(HEADER_LEN as u64) else { return false };
        let one = body.checked_sub(TAG as u64);
        if let Some(chunk) = one {
            if (MIN_CHUNK as u64..=BIG_CHUNK as u64).contains(&chunk) && small_chunk(chunk as usize) as u64 == chunk {
                return true;
            }
        }
        let per = (BIG_CHUNK + TAG) as u64;
        body % per == 0 && body / per >= 1 && chunk_count_class(body / per) == body / per
    }

    fn nonce(salt: &[u8; 16], index: u32, last: bool) -> XNonce {
        let mut n = [0u8; 24];
        n[..16].copy_from_slice(salt);
        n[16..20].copy_from_slice(&index.to_le_bytes());
        n[20] = u8::from(last);
        n.into()
    }

    fn aad(header: &[u8], name: &str, index: u32, last: bool) -> Vec<u8> {
        let mut a = Vec::with_capacity(header.len() + name.len() + 16);
        a.extend_from_slice(header);
        a.extend_from_slice(&(name.len() as u64).to_le_bytes());
        a.extend_from_slice(name.as_bytes());
        a.extend_from_slice(&u64::from(index).to_le_bytes());
        a.push(u8::from(last));
        a
    }

    /// Seal `data` whole as the object `name`.
    ///
    /// ```
    /// use cln_backup::encryption::{open, seal, Key};
    /// use cln_backup::Error;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([1; 32]);
    /// let data = b"INSERT INTO vars VALUES ('a', 1)";
    /// let sealed = seal(&key, "segments/1", data)?;
    /// assert_eq!(open(&key, "segments/1", &sealed)?, data);
    /// // Sealed under its name: moved to another name, it does not open.
    /// assert!(matches!(open(&key, "segments/2", &sealed), Err(Error::Damaged { .. })));
    /// // A random salt each time: the same data never gives the same bytes.
    /// assert_ne!(seal(&key, "segments/1", data)?, sealed);
    /// # Ok(()) }
    /// ```
    pub fn seal(key: &Key, name: &str, data: &[u8]) -> Result<Vec<u8>> {
        let chunk = if data.len() + COUNT <= BIG_CHUNK { small_chunk(data.len() + COUNT) } else { BIG_CHUNK };
        let mut sealer = Sealer::with_chunk(key, name, chunk, Vec::new())?;
        sealer.write_all(data).map_err(|e| Error::Damaged { object: name.into(), what: e.to_string() })?;
        sealer.finish()
    }

    /// Open the whole sealed object `name`.
    ///
    /// ```
    /// use cln_backup::encryption::{open, seal, Key, HEADER_LEN};
    /// use cln_backup::Error;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([1; 32]);
    /// let sealed = seal(&key, "manifests/1", b"{}")?;
    /// assert_eq!(open(&key, "manifests/1", &sealed)?, b"{}");
    /// let mut altered = sealed.clone();
    /// altered[HEADER_LEN + 3] ^= 1;
    /// assert!(matches!(open(&key, "manifests/1", &altered), Err(Error::Damaged { .. })));
    /// let cut = &sealed[..sealed.len() - 1];
    /// assert!(matches!(open(&key, "manifests/1", cut), Err(Error::Truncated { .. })));
    /// # Ok(()) }
    /// ```
    pub fn open(key: &Key, name: &str, sealed: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut opener = Opener::new(key, name);
        opener.push(sealed, &mut out)?;
        opener.finish(&mut out)?;
        Ok(out)
    }

    /// A streaming sealer: data written to it comes out sealed in chunks to
    /// `out`, holding one chunk at a time; [`Sealer::finish_into`] pads and seals
    /// the last chunk.
    ///
    /// ```
    /// use cln_backup::encryption::{open, Key, Sealer};
    /// use std::io::Write;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([1; 32]);
    /// let image = vec![7u8; 100_000]; // two chunks
    /// let mut sealer = Sealer::new(&key, "snapshots/3", Vec::new())?;
    /// sealer.write_all(&image)?;
    /// let (sealed, size) = sealer.finish_into()?;
    /// assert_eq!(sealed.len() as u64, size);
    /// assert_eq!(open(&key, "snapshots/3", &sealed)?, image);
    /// # Ok(()) }
    /// ```
    pub struct Sealer<W: Write> {
        keys: Keys,
        name: String,
        header: [u8; HEADER_LEN],
        salt: [u8; 16],
        chunk: usize,
        buf: Vec<u8>,
        index: u32,
        out: W,
        written: u64,
    }

    impl<W: Write> std::fmt::Debug for Sealer<W> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Sealer").field("name", &self.name).field("index", &self.index).finish()
        }
    }

    impl<W: Write> Sealer<W> {
        /// A sealer of a large object (a snapshot) named `name`, writing to `out`.
        ///
        /// ```
        /// use cln_backup::encryption::{seal, Key, Sealer};
        /// use std::io::Write;
        ///
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let key = Key::from_bytes([1; 32]);
        /// let mut sealer = Sealer::new(&key, "snapshots/1", Vec::new())?;
        /// sealer.write_all(b"a tiny image")?;
        /// let (_, size) = sealer.finish_into()?;
        /// // Its chunks are 64 KiB, even for a small object; `seal` picks a smaller class.
        /// assert!(size > 64 * 1024);
        /// assert!((seal(&key, "snapshots/1", b"a tiny image")?.len() as u64) < size);
        /// # Ok(()) }
        /// ```
        pub fn new(key: &Key, name: &str, out: W) -> Result<Sealer<W>> {
            Sealer::with_chunk(key, name, BIG_CHUNK, out)
        }

        fn with_chunk(key: &Key, name: &str, chunk: usize, mut out: W) -> Result<Sealer<W>> {
            let keys = keys(key);
            let mut salt = [0u8; 16];
            getrandom::fill(&mut salt).map_err(|e| Error::Damaged {
                object: name.into(),
                what: format!("no randomness from the operating system to seal it: {e}"),
            })?;
            let mut header = [0u8; HEADER_LEN];
            header[..8].copy_from_slice(MAGIC);
            header[8] = FORMAT;
            header[9..13].copy_from_slice(&(chunk as u32).to_le_bytes());
            header[13..29].copy_from_slice(&keys.check);
            header[29..45].copy_from_slice(&salt);
            out.write_all(&header).map_err(|e| Error::Damaged { object: name.into(), what: e.to_string() })?;
            Ok(Sealer {
                keys,
                name: name.to_string(),
                header,
                salt,
                chunk,
                buf: Vec::with_capacity(chunk),
                index: 0,
                out,
                written: HEADER_LEN as u64,
            })
        }

        fn emit(&mut self, last: bool) -> std::io::Result<()> {
            let used = self.buf.len();
            let mut plain = Vec::with_capacity(self.chunk);
            plain.extend_from_slice(&(used as u32).to_le_bytes());
            plain.extend_from_slice(&self.buf);
            plain.resize(self.chunk, 0);
            let aad = aad(&self.header, &self.name, self.index, last);
            let sealed = self
                .keys
                .aead
                .encrypt(&nonce(&self.salt, self.index, last), Payload { msg: &plain, aad: &aad })
                .map_err(|_| std::io::Error::other("the chunk could not be sealed"))?;
            self.out.write_all(&sealed)?;
            self.written += sealed.len() as u64;
            self.index = self
                .index
                .checked_add(1)
                .ok_or_else(|| std::io::Error::other("too many chunks for one sealed object"))?;
            self.buf.clear();
            Ok(())
        }

        /// Seal what is left, pad to the object's size class, and return
        /// the output and the sealed object's size.
        ///
        /// ```
        /// use cln_backup::encryption::{is_size_class, Key, Sealer};
        /// use std::io::Write;
        ///
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let dir = tempfile::tempdir()?;
        /// let path = dir.path().join("snapshot.sealed");
        /// let key = Key::from_bytes([1; 32]);
        /// let mut sealer = Sealer::new(&key, "snapshots/3", std::fs::File::create(&path)?)?;
        /// sealer.write_all(&[7; 5000])?;
        /// let (file, size) = sealer.finish_into()?;
        /// drop(file);
        /// assert_eq!(std::fs::metadata(&path)?.len(), size);
        /// assert!(is_size_class(size));
        /// # Ok(()) }
        /// ```
        pub fn finish_into(mut self) -> std::io::Result<(W, u64)> {
            let data_chunks = u64::from(self.index) + 1;
            let total = if self.chunk == BIG_CHUNK { chunk_count_class(data_chunks) } else { 1 };
            let mut left = total - data_chunks;
            self.emit(left == 0)?;
            while left > 0 {
                left -= 1;
                self.emit(left == 0)?;
            }
            self.out.flush()?;
            Ok((self.out, self.written))
        }

        fn finish(self) -> Result<W> {
            let name = self.name.clone();
            self.finish_into().map(|(w, _)| w).map_err(|e| Error::Damaged { object: name, what: e.to_string() })
        }
    }

    impl<W: Write> Write for Sealer<W> {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let room = self.chunk - COUNT;
            // A full buffer is emitted only once more data comes: the last
            // chunk must be sealed as the last.
            if self.buf.len() == room && !data.is_empty() {
                self.emit(false)?;
            }
            let n = data.len().min(room - self.buf.len());
            self.buf.extend_from_slice(&data[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.out.flush()
        }
    }

    /// A streaming opener: sealed bytes pushed in come out as data, one
    /// chunk held at a time; [`Opener::finish`] checks the object ended
    /// with its last chunk.
    ///
    /// ```
    /// use cln_backup::encryption::{seal, Key, Opener};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = Key::from_bytes([1; 32]);
    /// let image = vec![7u8; 200_000];
    /// let sealed = seal(&key, "snapshots/3", &image)?;
    /// // As a network stream delivers it: in pieces of any size.
    /// let mut opener = Opener::new(&key, "snapshots/3");
    /// let mut out = Vec::new();
    /// for piece in sealed.chunks(4096) {
    ///     opener.push(piece, &mut out)?;
    /// }
    /// opener.finish(&mut out)?;
    /// assert_eq!(out, image);
    /// # Ok(()) }
    /// ```
    pub struct Opener {
        keys: Keys,
        name: String,
        header: Vec<u8>,
        chunk: usize,
        salt: [u8; 16],
        buf: Vec<u8>,
        index: u32,
        ended: bool,
        padding: bool,
    }

    impl std::fmt::Debug for Opener {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Opener").field("name", &self.name).field("index", &self.index).finish()
        }
    }

    impl Opener {
        /// An opener of the object `name` sealed with `key`.
        ///
        /// ```
        /// use cln_backup::encryption::{seal, Key, Opener, HEADER_LEN};
        /// use cln_backup::Error;
        ///
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let sealed = seal(&Key::from_bytes([1; 32]), "lease", b"hello")?;
        /// let mut opener = Opener::new(&Key::from_bytes([2; 32]), "lease");
        /// // A wrong key is seen as soon as the header is in.
        /// let err = opener.push(&sealed[..HEADER_LEN], &mut Vec::new()).unwrap_err();
        /// assert!(matches!(err, Error::WrongKey { .. }));
        /// # Ok(()) }
        /// ```
        pub fn new(key: &Key, name: &str) -> Opener {
            Opener {
                keys: keys(key),
                name: name.to_string(),
                header: Vec::with_capacity(HEADER_LEN),
                chunk: 0,
                salt: [0; 16],
                buf: Vec::new(),
                index: 0,
                ended: false,
                padding: false,
            }
        }

        fn damaged(&self, what: impl Into<String>) -> Error {
            Error::Damaged { object: self.name.clone(), what: what.into() }
        }

        fn truncated(&self, what: impl Into<String>) -> Error {
            Error::Truncated { object: self.name.clone(), what: what.into() }
        }

        fn parse_header(&mut self) -> Result<()> {
            let h = &self.header;
            if &h[..8] != MAGIC {
                return Err(self.damaged("not a sealed cln-backup object (its first bytes are not the magic)"));
            }
            if h[8] != FORMAT {
                return Err(self.damaged(format!(
                    "sealed in format {}, which this cln-backup does not read (it reads format {FORMAT}); upgrade cln-backup",
                    h[8]
                )));
            }
            let mut c = [0u8; 4];
            c.copy_from_slice(&h[9..13]);
            let chunk = u32::from_le_bytes(c) as usize;
            if !(MIN_CHUNK..=BIG_CHUNK).contains(&chunk) {
                return Err(self.damaged(format!("its header gives a chunk size of {chunk} bytes")));
            }
            if h[13..29] != self.keys.check {
                return Err(Error::WrongKey { object: self.name.clone() });
            }
            self.salt.copy_from_slice(&h[29..45]);
            self.chunk = chunk;
            self.buf.reserve(chunk + TAG);
            Ok(())
        }

        fn open_chunk(&self, sealed: &[u8], last: bool) -> Option<Vec<u8>> {
            let aad = aad(&self.header, &self.name, self.index, last);
            self.keys.aead.decrypt(&nonce(&self.salt, self.index, last), Payload { msg: sealed, aad: &aad }).ok()
        }

        /// Open the buffered chunk, sealed as `last` or not, and write its data.
        fn take_chunk(&mut self, last: bool, out: &mut dyn Write) -> Result<()> {
            let sealed = std::mem::take(&mut self.buf);
            let plain = match self.open_chunk(&sealed, last) {
                Some(p) => p,
                None if self.open_chunk(&sealed, !last).is_some() => {
                    return Err(if last {
                        self.truncated(format!("it ends after chunk {}, which is not its last", self.index))
                    } else {
                        self.damaged(format!("bytes follow its last chunk ({})", self.index))
                    })
                }
                None => return Err(self.damaged(format!("chunk {} fails its authentication", self.index))),
            };
            let mut c = [0u8; 4];
            c.copy_from_slice(&plain[..COUNT]);
            let used = u32::from_le_bytes(c) as usize;
            if used > self.chunk - COUNT || (self.padding && used > 0) {
                return Err(self.damaged(format!("chunk {} has an impossible data count", self.index)));
            }
            if used < self.chunk - COUNT {
                self.padding = true;
            }
            out.write_all(&plain[COUNT..COUNT + used])
                .map_err(|e| self.damaged(format!("its data could not be written out: {e}")))?;
            self.index += 1;
            self.buf = sealed;
            self.buf.clear();
            self.ended = last;
            Ok(())
        }

        /// Feed sealed bytes; the data of each chunk known not to be the
        /// last is written to `out`.
        ///
        /// ```
        /// use cln_backup::encryption::{seal, Key, Opener};
        ///
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let key = Key::from_bytes([1; 32]);
        /// let sealed = seal(&key, "lease", b"hello")?;
        /// let mut opener = Opener::new(&key, "lease");
        /// let mut out = Vec::new();
        /// opener.push(&sealed, &mut out)?;
        /// // One chunk, which might be the last: nothing comes out before `finish`.
        /// assert!(out.is_empty());
        /// opener.finish(&mut out)?;
        /// assert_eq!(out, b"hello");
        /// # Ok(()) }
        /// ```
        pub fn push(&mut self, mut data: &[u8], out: &mut dyn Write) -> Result<()> {
            if self.header.len() < HEADER_LEN {
                let n = data.len().min(HEADER_LEN - self.header.len());
                self.header.extend_from_slice(&data[..n]);
                data = &data[n..];
                if self.header.len() < HEADER_LEN {
                    return Ok(());
                }
                self.parse_header()?;
            }
            while !data.is_empty() {
                if self.ended {
                    return Err(self.damaged(format!("bytes follow its last chunk ({})", self.index - 1)));
                }
                let full = self.chunk + TAG;
                if self.buf.len() == full {
                    // More bytes follow: this chunk is not the last.
                    self.take_chunk(false, out)?;
                }
                let n = data.len().min(full - self.buf.len());
                self.buf.extend_from_slice(&data[..n]);
                data = &data[n..];
            }
            Ok(())
        }

        /// The end of the sealed bytes: open the last chunk, or say what is
        /// missing.
        ///
        /// ```
        /// use cln_backup::encryption::{seal, Key, Opener};
        /// use cln_backup::Error;
        ///
        /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
        /// let key = Key::from_bytes([1; 32]);
        /// let sealed = seal(&key, "snapshots/3", &vec![7u8; 100_000])?;
        /// // The stream broke off halfway.
        /// let mut opener = Opener::new(&key, "snapshots/3");
        /// let mut out = Vec::new();
        /// opener.push(&sealed[..sealed.len() / 2], &mut out)?;
        /// let err = opener.finish(&mut out).unwrap_err();
        /// assert!(matches!(err, Error::Truncated { .. }), "{err}");
        /// # Ok(()) }
        /// ```
        pub fn finish(mut self, out: &mut dyn Write) -> Result<()> {
            if self.header.len() < HEADER_LEN {
                return Err(if self.header.is_empty() {
                    self.truncated("it is empty")
                } else {
                    self.truncated(format!("it ends within its header ({} bytes)", self.header.len()))
                });
            }
            if self.ended {
                return Ok(());
            }
            if self.buf.len() != self.chunk + TAG {
                return Err(if self.buf.is_empty() {
                    self.truncated(format!(
                        "it ends after chunk {}, which is not its last",
                        self.index.saturating_sub(1)
                    ))
                } else {
                    self.truncated(format!("it ends within chunk {}", self.index))
                });
            }
            self.take_chunk(true, out)
        }
    }

    #[cfg(test)]
    mod tests {
        #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
        use super::*;

        fn key(b: u8) -> Key {
            Key::from_bytes([b; 32])
        }

        fn data(n: usize) -> Vec<u8> {
            (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
        }

        #[test]
        fn round_trips_whole_and_streamed_at_every_boundary() {
            let k = key(1);
            for n in [0, 1, 1019, 1020, 1021, 5000, 65531, 65532, 65533, 200_000, 3 * 65532, 3 * 65532 + 1] {
                let d = data(n);
                let sealed = seal(&k, "seg/1", &d).unwrap();
                assert!(is_size_class(sealed.len() as u64), "{n} bytes sealed to {} bytes", sealed.len());
                assert_eq!(open(&k, "seg/1", &sealed).unwrap(), d, "{n}");
                // Pushed in odd pieces, as a network stream delivers it.
                let mut opener = Opener::new(&k, "seg/1");
                let mut out = Vec::new();
                for piece in sealed.chunks(997) {
                    opener.push(piece, &mut out).unwrap();
                }
                opener.finish(&mut out).unwrap();
                assert_eq!(out, d);
            }
        }

        #[test]
        fn streamed_sealing_pads_to_a_count_class() {
            let k = key(2);
            let d = data(17 * 65532 + 3); // 18 data chunks: padded to 18 (4 bits: 10010).
            let mut s = Sealer::new(&k, "snap", Vec::new()).unwrap();
            s.write_all(&d).unwrap();
            let (sealed, size) = s.finish_into().unwrap();
            assert_eq!(sealed.len() as u64, size);
            assert!(is_size_class(size));
            assert_eq!(open(&k, "snap", &sealed).unwrap(), d);
            let d = data(16 * 65532 + 1); // 17 data chunks: padded to 18.
            let mut s = Sealer::new(&k, "snap", Vec::new()).unwrap();
            s.write_all(&d).unwrap();
            let (sealed, _) = s.finish_into().unwrap();
            assert_eq!(sealed.len(), HEADER_LEN + 18 * (65536 + 16));
            assert_eq!(open(&k, "snap", &sealed).unwrap(), d);
        }

        #[test]
        fn small_objects_share_classes() {
            let k = key(3);
            let a = seal(&k, "a", &data(10)).unwrap();
            let b = seal(&k, "a", &data(900)).unwrap();
            assert_eq!(a.len(), b.len());
            assert_eq!(a.len(), HEADER_LEN + 1024 + 16);
            assert!(!is_size_class(a.len() as u64 + 1));
        }

        #[test]
        fn a_wrong_key_is_told_apart_from_damage() {
            let sealed = seal(&key(4), "x", &data(3000)).unwrap();
            assert!(matches!(open(&key(5), "x", &sealed), Err(Error::WrongKey { object }) if object == "x"));
        }

        #[test]
        fn a_wrong_name_fails() {
            let sealed = seal(&key(4), "segments/1", &data(3000)).unwrap();
            let err = open(&key(4), "segments/2", &sealed).unwrap_err();
            assert!(matches!(err, Error::Damaged { .. }), "{err}");
        }

        #[test]
        fn tampering_fails_anywhere() {
            let k = key(6);
            let sealed = seal(&k, "x", &data(200_000)).unwrap();
            for at in [HEADER_LEN, HEADER_LEN + 10, 70_000, sealed.len() - 1] {
                let mut bad = sealed.clone();
                bad[at] ^= 1;
                let err = open(&k, "x", &bad).unwrap_err();
                assert!(matches!(err, Error::Damaged { .. }), "{at}: {err}");
            }
            // The salt is in the header: altering it breaks every chunk.
            let mut bad = sealed.clone();
            bad[40] ^= 1;
            assert!(matches!(open(&k, "x", &bad), Err(Error::Damaged { .. })));
            let mut bad = sealed;
            bad[0] = b'X';
            assert!(matches!(open(&k, "x", &bad), Err(Error::Damaged { what, .. }) if what.contains("magic")));
        }

        #[test]
        fn truncation_is_told_as_such() {
            let k = key(7);
            let sealed = seal(&k, "x", &data(200_000)).unwrap();
            let per = 65536 + 16;
            // At a chunk boundary: the chunk before is not the last.
            let err = open(&k, "x", &sealed[..HEADER_LEN + 2 * per]).unwrap_err();
            assert!(matches!(err, Error::Truncated { ref what, .. } if what.contains("not its last")), "{err}");
            let err = open(&k, "x", &sealed[..HEADER_LEN + per + 100]).unwrap_err();
            assert!(matches!(err, Error::Truncated { .. }), "{err}");
            assert!(matches!(open(&k, "x", &sealed[..20]), Err(Error::Truncated { .. })));
            assert!(matches!(open(&k, "x", &[]), Err(Error::Truncated { .. })));
            // Bytes appended after the last chunk.
            let mut long = sealed.clone();
            long.extend_from_slice(&[0; 10]);
            assert!(matches!(open(&k, "x", &long), Err(Error::Damaged { .. })));
        }

        #[test]
        fn reordered_or_swapped_chunks_fail() {
            let k = key(8);
            let sealed = seal(&k, "x", &data(200_000)).unwrap();
            let per = 65536 + 16;
            let mut swapped = sealed.clone();
            let (a, b) = (HEADER_LEN, HEADER_LEN + per);
            let first = sealed[a..a + per].to_vec();
            swapped[a..a + per].copy_from_slice(&sealed[b..b + per]);
            swapped[b..b + per].copy_from_slice(&first);
            assert!(matches!(open(&k, "x", &swapped), Err(Error::Damaged { .. })));
            // A chunk from another object of the same name and key.
            let other = seal(&k, "x", &data(200_000)).unwrap();
            let mut mixed = sealed.clone();
            mixed[b..b + per].copy_from_slice(&other[b..b + per]);
            assert!(matches!(open(&k, "x", &mixed), Err(Error::Damaged { .. })));
        }

        #[test]
        fn classes_round_up() {
            assert_eq!(round_up(1024, 3), 1024);
            assert_eq!(round_up(1025, 3), 1280);
            assert_eq!(round_up(1800, 3), 2048);
            assert_eq!(chunk_count_class(15), 15);
            assert_eq!(chunk_count_class(17), 18);
            assert_eq!(chunk_count_class(33), 36);
            assert_eq!(chunk_count_class(36), 36);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn key_files_are_64_hex_characters() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, format!("{}\n", "ab".repeat(32))).unwrap();
        assert_eq!(KeySource::KeyFile(path.clone()).load().unwrap().bytes, [0xab; 32]);
        for bad in ["ab".repeat(31), format!("{}zz", "ab".repeat(31)), format!("{}\n\n", "ab".repeat(32))] {
            std::fs::write(&path, bad).unwrap();
            let err = KeySource::KeyFile(path.clone()).load().unwrap_err();
            assert!(matches!(&err, Error::Key { path: p, .. } if *p == path), "{err}");
            assert!(err.to_string().contains("64 hexadecimal"), "{err}");
        }
    }

    #[cfg(feature = "object-store")]
    #[test]
    fn created_key_files_load_and_are_never_replaced() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("backup.key");
        let key = create_key_file(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(KeySource::KeyFile(path.clone()).load().unwrap().bytes, key.bytes);
        let err = create_key_file(&path).unwrap_err();
        assert!(err.to_string().contains("never replaced"), "{err}");
        assert_eq!(KeySource::KeyFile(path).load().unwrap().bytes, key.bytes);
        assert_eq!(format!("{key:?}"), "Key(..)");
    }

    #[cfg(feature = "object-store")]
    #[test]
    fn hsm_secret_forms() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hsm_secret");
        let load = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            KeySource::HsmSecret(path.clone()).load()
        };
        let plain = load(&[7u8; 32]).unwrap();
        assert_eq!(plain.bytes, load(&[7u8; 32]).unwrap().bytes, "deterministic");
        assert_ne!(plain.bytes, [7u8; 32], "derived, not the secret itself");
        assert_ne!(plain.bytes, load(&[8u8; 32]).unwrap().bytes);
        let err = load(&[1u8; 73]).unwrap_err();
        assert!(err.to_string().contains("encrypted hsm_secret"), "{err}");
        assert!(load(&[1u8; 31]).is_err());
        let words = "abandon ability able about above absent absorb abstract absurd abuse access accident";
        let mut m = vec![0u8; 32];
        m.extend_from_slice(words.as_bytes());
        let a = load(&m).unwrap();
        // The same words, spaced otherwise, with a newline: the same key.
        let mut m2 = vec![0u8; 32];
        m2.extend_from_slice(format!("{}\n", words.replace(' ', "  ")).as_bytes());
        assert_eq!(a.bytes, load(&m2).unwrap().bytes);
        // Written as a C string.
        let mut m3 = m.clone();
        m3.push(0);
        assert_eq!(a.bytes, load(&m3).unwrap().bytes);
        // With a passphrase (its hash first): another key.
        let mut p = vec![9u8; 32];
        p.extend_from_slice(words.as_bytes());
        assert_ne!(a.bytes, load(&p).unwrap().bytes);
        let mut junk = vec![0u8; 32];
        junk.extend_from_slice(b"not words 123");
        assert!(load(&junk).is_err());
    }
}
