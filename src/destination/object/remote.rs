//! The object store under a prefix, as blocking calls: the client the
//! `object_store` crate builds from the URL and the credentials, and the
//! small tokio runtime the destination owns to drive it.
//!
//! Owns the credentials (the `AWS_*`, `GOOGLE_*` and `AZURE_*` variables of
//! the environment, then a credentials file's lines over them), the
//! translation of the crate's errors into ours (one line naming the object),
//! and the bounds on what is read (an object read whole is refused past a
//! size, a stream is handed on piece by piece). It must not know what the
//! objects hold: naming and sealing are the destination's.
//!
//! Decision: every call is spawned on the destination's own multi-threaded
//! runtime and waited for on a standard channel, never `block_on` from the
//! caller's thread, so that the destination can be called from inside
//! another tokio runtime (the plugin's) without the nested-runtime panic.

use crate::{Error, Result};
use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{MultipartUpload, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::future::Future;
use std::io::Write;
use std::sync::Arc;

/// The largest object read whole (manifests, segments, the lease).
pub(super) const MAX_WHOLE_OBJECT: u64 = 64 * 1024 * 1024;

/// Bytes of each part of a multipart upload but the last: above the 5 MiB
/// S3 minimum, the same for every part (some servers require it).
pub(super) const PART_SIZE: usize = 8 * 1024 * 1024;

/// The environment variables handed to the client: the standard ones of
/// each kind of store.
const ENV_PREFIXES: &[&str] = &["AWS_", "GOOGLE_", "AZURE_"];

/// What a create-only write found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Created {
    /// The object was written.
    Written,
    /// An object of that name was there already (not written).
    Exists,
}

/// A prefix in an object store, with the runtime that drives its client.
pub(super) struct Remote {
    store: Arc<dyn ObjectStore>,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
    prefix: String,
    url: String,
    /// An S3 client given no access key, web identity or container
    /// credentials: the crate asks the instance metadata service instead.
    metadata_credentials: bool,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote").field("url", &self.url).finish()
    }
}

/// The `name=value` lines of a credentials file (the systemd
/// `EnvironmentFile` form: blank lines and `#` comments skipped, values
/// optionally quoted).
pub(super) fn read_credentials(path: &std::path::Path) -> Result<Vec<(String, String)>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > 64 * 1024 {
        return Err(Error::Key { path: path.to_path_buf(), what: "too large for a credentials file".into() });
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(format!("line {} is not NAME=value", i + 1)),
            });
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.push((name.trim().to_string(), value.to_string()));
    }
    Ok(out)
}

impl Remote {
    /// The client for `url` (`s3://bucket/prefix`...), configured from the
    /// environment and then `credentials` (which win).
    pub(super) fn connect(url: &str, credentials: &[(String, String)]) -> Result<Remote> {
        let refuse = |what: String| Error::Destination { url: url.to_string(), what };
        let parsed = url::Url::parse(url).map_err(|e| refuse(format!("not a URL: {e}")))?;
        let mut options: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        for (k, v) in credentials {
            let k = k.to_ascii_lowercase();
            options.retain(|(o, _)| *o != k);
            options.push((k, v.clone()));
        }
        let metadata_credentials = parsed.scheme() == "s3"
            && !options.iter().any(|(k, _)| {
                [
                    "aws_access_key_id",
                    "aws_web_identity_token_file",
                    "aws_container_credentials_relative_uri",
                    "aws_container_credentials_full_uri",
                    "aws_skip_signature",
                ]
                .contains(&k.as_str())
            });
        let (store, path) = object_store::parse_url_opts(&parsed, options)
            .map_err(|e| refuse(format!("cannot use this object store: {}", one_line(&e.to_string()))))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cln-backup-object")
            .enable_all()
            .build()
            .map_err(|e| refuse(format!("cannot start the object store's runtime: {e}")))?;
        Ok(Remote {
            store: Arc::from(store),
            runtime: Some(runtime),
            prefix: path.to_string(),
            url: url.trim_end_matches('/').into(),
            metadata_credentials,
        })
    }

    /// The prefix as a URL, as messages name it.
    pub(super) fn url(&self) -> &str {
        &self.url
    }

    /// An object under the prefix as a URL.
    pub(super) fn object_url(&self, name: &str) -> String {
        format!("{}/{name}", self.url)
    }

    fn path(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    fn err(&self, name: &str, e: &object_store::Error) -> Error {
        let what = one_line(&e.to_string());
        // Decision: with no credentials given, the crate's fallback to the
        // instance metadata service fails with a request to an address the
        // user never named; say instead what is missing, keeping the cause.
        if self.metadata_credentials && what.contains("/latest/") {
            return Error::Remote {
                url: self.url.clone(),
                what: format!(
                    "no credentials: no AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment or the \
                     credentials file, and the instance metadata service asked instead failed ({what})"
                ),
            };
        }
        Error::Remote { url: self.object_url(name), what }
    }

    /// Run `fut` on the destination's runtime and wait for it.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let Some(runtime) = &self.runtime else {
            return Err(Error::Remote { url: self.url.clone(), what: "the object store's runtime is gone".into() });
        };
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| Error::Remote { url: self.url.clone(), what: "the object store's request was lost".into() })
    }

    /// Write `bytes` as `name` unless an object of that name exists.
    pub(super) fn put_create(&self, name: &str, bytes: Vec<u8>) -> Result<Created> {
        let store = self.store.clone();
        let path = self.path(name);
        let opts = PutOptions { mode: PutMode::Create, ..PutOptions::default() };
        match self.run(async move { store.put_opts(&path, PutPayload::from(bytes), opts).await })? {
            Ok(_) => Ok(Created::Written),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::Exists),
            Err(e) => Err(self.err(name, &e)),
        }
    }

    /// Write `bytes` as `name`, replacing what is there.
    pub(super) fn put_overwrite(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let store = self.store.clone();
        let path = self.path(name);
        self.run(async move { store.put(&path, PutPayload::from(bytes)).await })?.map_err(|e| self.err(name, &e))?;
        Ok(())
    }

    /// Read `name` whole; `None` when it does not exist. Refused past
    /// [`MAX_WHOLE_OBJECT`].
    pub(super) fn get(&self, name: &str) -> Result<Option<Vec<u8>>> {
        self.get_later(name)?.wait(self)
    }

    /// Start reading `name` whole, to be waited for with
    /// [`Pending::wait`]: reads of many small objects overlap.
    pub(super) fn get_later(&self, name: &str) -> Result<Pending> {
        let store = self.store.clone();
        let path = self.path(name);
        let Some(runtime) = &self.runtime else {
            return Err(Error::Remote { url: self.url.clone(), what: "the object store's runtime is gone".into() });
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let got = async {
                let got = store.get(&path).await?;
                if got.meta.size > MAX_WHOLE_OBJECT {
                    return Ok(Err(got.meta.size));
                }
                got.bytes().await.map(|b| Ok(b.to_vec()))
            };
            let _ = tx.send(got.await);
        });
        Ok(Pending { name: name.to_string(), rx })
    }

    /// Stream `name` into `each`, piece by piece as the server sends it.
    pub(super) fn get_stream(&self, name: &str, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let store = self.store.clone();
        let path = self.path(name);
        let got = self.run(async move { store.get(&path).await })?;
        let mut stream = match got {
            Ok(got) => got.into_stream(),
            Err(object_store::Error::NotFound { .. }) => {
                return Err(Error::Remote { url: self.object_url(name), what: "missing".into() })
            }
            Err(e) => return Err(self.err(name, &e)),
        };
        loop {
            let (piece, rest) = self.run(async move {
                let piece = stream.next().await;
                (piece, stream)
            })?;
            stream = rest;
            match piece {
                None => return Ok(()),
                Some(Ok(bytes)) => each(&bytes)?,
                Some(Err(e)) => return Err(self.err(name, &e)),
            }
        }
    }

    /// The names (relative to the prefix) and sizes of the objects under
    /// `dir/`.
    pub(super) fn list(&self, dir: &str) -> Result<Vec<(String, u64)>> {
        let store = self.store.clone();
        let path = self.path(dir);
        let listed = self.run(async move {
            let mut out = Vec::new();
            let mut stream = store.list(Some(&path));
            while let Some(meta) = stream.next().await {
                let meta = meta?;
                out.push((meta.location.to_string(), meta.size));
            }
            Ok::<_, object_store::Error>(out)
        })?;
        let listed = listed.map_err(|e| self.err(dir, &e))?;
        let base = if self.prefix.is_empty() { String::new() } else { format!("{}/", self.prefix) };
        Ok(listed
            .into_iter()
            .filter_map(|(full, size)| full.strip_prefix(&base).map(|n| (n.to_string(), size)))
            .collect())
    }

    /// The size of `name`; `None` when it does not exist.
    pub(super) fn size(&self, name: &str) -> Result<Option<u64>> {
        let store = self.store.clone();
        let path = self.path(name);
        match self.run(async move { store.head(&path).await })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(name, &e)),
        }
    }

    /// Remove `name` (gone already is fine).
    pub(super) fn delete(&self, name: &str) -> Result<()> {
        let store = self.store.clone();
        let path = self.path(name);
        match self.run(async move { store.delete(&path).await })? {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(name, &e)),
        }
    }

    /// Start a multipart upload of `name`.
    pub(super) fn upload(&self, name: &str) -> Result<Upload<'_>> {
        let store = self.store.clone();
        let path = self.path(name);
        let upload = self.run(async move { store.put_multipart(&path).await })?.map_err(|e| self.err(name, &e))?;
        Ok(Upload { remote: self, name: name.to_string(), upload: Some(upload), buf: Vec::new(), written: 0 })
    }
}

impl Drop for Remote {
    /// Stop the runtime without waiting: dropping a runtime the usual way
    /// inside another runtime's task (the plugin's) would panic.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A read started by [`Remote::get_later`].
pub(super) struct Pending {
    name: String,
    rx: std::sync::mpsc::Receiver<object_store::Result<std::result::Result<Vec<u8>, u64>>>,
}

impl Pending {
    /// The object's bytes; `None` when it does not exist.
    pub(super) fn wait(self, remote: &Remote) -> Result<Option<Vec<u8>>> {
        let name = &self.name;
        let got = self
            .rx
            .recv()
            .map_err(|_| Error::Remote { url: remote.object_url(name), what: "the request was lost".into() })?;
        match got {
            Ok(Ok(bytes)) => Ok(Some(bytes)),
            Ok(Err(size)) => Err(Error::Remote {
                url: remote.object_url(name),
                what: format!("{size} bytes, more than any object this backup writes ({MAX_WHOLE_OBJECT})"),
            }),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(remote.err(name, &e)),
        }
    }
}

/// A multipart upload as a [`Write`]: parts of [`PART_SIZE`] bytes go out
/// as they fill, one at a time, so at most one part is held.
pub(super) struct Upload<'r> {
    remote: &'r Remote,
    name: String,
    upload: Option<Box<dyn MultipartUpload>>,
    buf: Vec<u8>,
    written: u64,
}

impl Upload<'_> {
    fn send_part(&mut self, part: Vec<u8>) -> std::io::Result<()> {
        let Some(upload) = self.upload.as_mut() else {
            return Err(std::io::Error::other("the upload was already finished"));
        };
        let fut = upload.put_part(PutPayload::from(part));
        match self.remote.run(fut) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(std::io::Error::other(one_line(&e.to_string()))),
            Err(e) => Err(std::io::Error::other(e.to_string())),
        }
    }

    /// Send the last part and complete the upload; the object appears whole.
    pub(super) fn finish(mut self) -> Result<u64> {
        let last = std::mem::take(&mut self.buf);
        if !last.is_empty() {
            self.send_part(last).map_err(|e| self.io_err(e))?;
        }
        let Some(mut upload) = self.upload.take() else {
            return Err(Error::Remote { url: self.remote.object_url(&self.name), what: "already finished".into() });
        };
        let done = self.remote.run(async move {
            let r = upload.complete().await;
            (r, upload)
        })?;
        match done {
            (Ok(_), _) => Ok(self.written),
            (Err(e), upload) => {
                self.upload = Some(upload);
                Err(self.remote.err(&self.name, &e))
            }
        }
    }

    /// The error of a failed write, naming the object.
    pub(super) fn io_err(&self, e: std::io::Error) -> Error {
        Error::Remote { url: self.remote.object_url(&self.name), what: one_line(&e.to_string()) }
    }
}

impl Write for Upload<'_> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let n = data.len().min(PART_SIZE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.written += n as u64;
        if self.buf.len() == PART_SIZE {
            let part = std::mem::replace(&mut self.buf, Vec::with_capacity(PART_SIZE));
            self.send_part(part)?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Upload<'_> {
    /// An upload not completed is aborted, so the server drops its parts.
    fn drop(&mut self) {
        if let Some(mut upload) = self.upload.take() {
            let _ = self.remote.run(async move { upload.abort().await });
        }
    }
}

/// An error's text on one line.
/// An S3 error document in it (`<?xml ...><Error><Code>...`) is shortened
/// to its code and message: the rest repeats the bucket and the request.
pub(super) fn one_line(s: &str) -> String {
    let s = match s.find("<?xml") {
        Some(at) => {
            let tag = |name: &str| {
                let open = format!("<{name}>");
                let from = s[at..].find(&open)? + at + open.len();
                let to = s[from..].find("</")? + from;
                Some(s[from..to].to_string())
            };
            match (tag("Code"), tag("Message")) {
                (Some(code), Some(message)) => format!("{}{code}: {message}", &s[..at]),
                _ => s.to_string(),
            }
        }
        None => s.to_string(),
    };
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn an_s3_error_document_is_shortened_to_its_code_and_message() {
        let text = "Error performing GET http://h/b in 1ms - Server returned non-2xx status code: 403 Forbidden: \
                    <?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                    <Message>Forbidden: Invalid signature</Message><Resource>/b</Resource></Error>";
        assert_eq!(
            one_line(text),
            "Error performing GET http://h/b in 1ms - Server returned non-2xx status code: 403 Forbidden: \
             AccessDenied: Forbidden: Invalid signature"
        );
        assert_eq!(one_line("a\n  b <?xml nothing"), "a b <?xml nothing");
    }

    #[test]
    fn credentials_files_are_environment_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s3.env");
        std::fs::write(
            &path,
            "# for the node\n\nAWS_ACCESS_KEY_ID=GK1\nexport AWS_SECRET_ACCESS_KEY=\"s e c\"\n AWS_REGION = 'garage' \n",
        )
        .unwrap();
        let got = read_credentials(&path).unwrap();
        let want: Vec<(String, String)> =
            [("AWS_ACCESS_KEY_ID", "GK1"), ("AWS_SECRET_ACCESS_KEY", "s e c"), ("AWS_REGION", "garage")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
        assert_eq!(got, want);
        std::fs::write(&path, "AWS_REGION=x\nnonsense\n").unwrap();
        let err = read_credentials(&path).unwrap_err().to_string();
        assert!(err.contains("s3.env") && err.contains("line 2"), "{err}");
    }
}
