//! The Python plugin's socket protocol, client side: a remote
//! `cln-backup server` or `backup-cli server` as a [`Destination`].
//!
//! Owns the `socket:host:port[?proxy=socks5:host:port]` URL and the client
//! half of the protocol. It must not store anything locally.

use super::{Destination, Head, RestoreSource};
use crate::store::{Added, SnapshotInfo, Store};
use crate::version::Seq;
use crate::{Error, Result};
use std::io::{Read, Write};

/// A parsed `socket:` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketUrl {
    /// The URL as written.
    pub url: String,
}

impl SocketUrl {
    /// Parse `socket:host:port[?proxy=socks5:host:port]`.
    pub fn parse(url: &str) -> Result<SocketUrl> {
        Err(Error::Destination { url: url.to_string(), what: "the socket: scheme is not supported yet".into() })
    }
}

/// A remote backup server reached over the socket protocol.
#[derive(Debug)]
pub struct SocketDestination {
    url: SocketUrl,
}

impl SocketDestination {
    /// Connect to the server `url` names, sending `token` (a pre-shared
    /// token) first when given, and read its metadata.
    pub fn connect(url: &SocketUrl, token: Option<Vec<u8>>) -> Result<SocketDestination> {
        let _ = token;
        Err(Error::Destination { url: url.url.clone(), what: "the socket: scheme is not supported yet".into() })
    }
}

impl Destination for SocketDestination {
    fn location(&self) -> &str {
        &self.url.url
    }
    fn head(&self) -> Result<Head> {
        Err(self.unsupported())
    }
    fn add_change(&self, _version: u32, _statements: &[&str]) -> Result<Added> {
        Err(self.unsupported())
    }
    fn rewind(&self) -> Result<Seq> {
        Err(self.unsupported())
    }
    fn add_snapshot(&self, _version: u32, _image: &mut dyn Read) -> Result<SnapshotInfo> {
        Err(self.unsupported())
    }
    fn restore_source(&self, _to_version: Option<u64>, _image: &mut dyn Write) -> Result<RestoreSource> {
        Err(self.unsupported())
    }
    fn local_store(&self) -> Option<&Store> {
        None
    }
}

impl SocketDestination {
    fn unsupported(&self) -> Error {
        Error::Destination { url: self.url.url.clone(), what: "the socket: scheme is not supported yet".into() }
    }
}
