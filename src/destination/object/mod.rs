//! Object storage (`s3://bucket/prefix`, and the other schemes of the
//! `object_store` crate) as a [`Destination`]: a replica of a local store.
//!
//! Owns the layout of objects under a prefix. It must not be the only copy:
//! the local store stays the primary.

use super::{Access, Destination, Head, RestoreSource};
use crate::encryption::Key;
use crate::store::{Added, SnapshotInfo, Store};
use crate::version::Seq;
use crate::{Error, Result};
use std::io::{Read, Write};
use std::path::PathBuf;

/// How to open an object-storage destination.
#[derive(Debug)]
#[non_exhaustive]
pub struct ObjectOptions {
    /// The writer (the plugin, `init`) or a reader (`restore`, `info`, `verify`).
    pub access: Access,
    /// The key objects are sealed with.
    pub key: Key,
    /// A file of `AWS_*=value` lines read before the environment, if any.
    pub credentials_file: Option<PathBuf>,
}

impl ObjectOptions {
    /// Options for `access` with `key` and no credentials file.
    pub fn new(access: Access, key: Key) -> ObjectOptions {
        ObjectOptions { access, key, credentials_file: None }
    }
}

/// A prefix in an object store.
#[derive(Debug)]
pub struct ObjectDestination {
    url: String,
}

impl ObjectDestination {
    /// Open the prefix `url` names.
    pub fn open(url: &str, options: &ObjectOptions) -> Result<ObjectDestination> {
        let _ = options;
        Err(Error::Destination { url: url.to_string(), what: "object storage is not supported yet".into() })
    }
}

impl Destination for ObjectDestination {
    fn location(&self) -> &str {
        &self.url
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

impl ObjectDestination {
    fn unsupported(&self) -> Error {
        Error::Destination { url: self.url.clone(), what: "object storage is not supported yet".into() }
    }
}
