//! The wire layer between lightningd's pipes and cln-plugin.
//!
//! lightningd sends `db_write` calls between `getmanifest` and `init`, which
//! cln-plugin's handshake does not accept, and waits for each answer before it
//! goes on. This layer reads lightningd's messages (JSON objects separated by
//! a blank line), answers every `db_write` itself, and passes everything else
//! through to cln-plugin unchanged. Everything written to stdout goes through
//! one queue of whole messages, so nothing interleaves, and the log lines that
//! explain an answer are written before the answer.
//!
//! It must not decide anything about a write: that is [`super::hook`].

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Messages larger than this are refused: lightningd's largest `db_write`
/// carries a transaction's statements, far below it.
const MAX_MESSAGE: usize = 512 << 20;

/// Splits a byte stream into messages separated by `\n\n`.
pub struct Framer<R> {
    input: R,
    buf: Vec<u8>,
    scanned: usize,
}

impl<R: AsyncRead + Unpin> Framer<R> {
    pub fn new(input: R) -> Self {
        Framer { input, buf: Vec::with_capacity(64 << 10), scanned: 0 }
    }

    /// The next message without its separator; `None` at end of input.
    /// Whitespace-only leftovers at the end are ignored.
    pub async fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(at) = self.buf[self.scanned..].windows(2).position(|w| w == b"\n\n") {
                let end = self.scanned + at;
                let msg: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
                self.scanned = 0;
                if msg.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                return Ok(Some(msg));
            }
            self.scanned = self.buf.len().saturating_sub(1);
            if self.buf.len() > MAX_MESSAGE {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message too large"));
            }
            let mut chunk = [0u8; 64 << 10];
            let n = self.input.read(&mut chunk).await?;
            if n == 0 {
                let rest = std::mem::take(&mut self.buf);
                self.scanned = 0;
                if rest.iter().all(|b| b.is_ascii_whitespace()) {
                    return Ok(None);
                }
                return Ok(Some(rest));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

enum Queued {
    Message(Vec<u8>),
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// A handle for queueing whole messages to stdout.
#[derive(Clone)]
pub struct Out(mpsc::Sender<Queued>);

impl Out {
    /// Start the writer task over `output`.
    pub fn spawn<W: AsyncWrite + Unpin + Send + 'static>(mut output: W) -> (Out, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Queued>(256);
        let task = tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                match item {
                    Queued::Message(mut msg) => {
                        msg.extend_from_slice(b"\n\n");
                        if output.write_all(&msg).await.is_err() || output.flush().await.is_err() {
                            break;
                        }
                    }
                    Queued::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        (Out(tx), task)
    }

    /// Queue one message (without separator).
    pub async fn send_raw(&self, msg: Vec<u8>) {
        // The writer only stops when stdout is gone, and then lightningd is too.
        let _ = self.0.send(Queued::Message(msg)).await;
    }

    /// Wait until everything queued so far is written.
    pub async fn flush(&self) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.0.send(Queued::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }

    /// Queue a JSON value.
    pub async fn send(&self, value: &Value) {
        self.send_raw(value.to_string().into_bytes()).await;
    }

    /// Queue a `log` notification.
    pub async fn log(&self, level: &str, message: &str) {
        self.send(&json!({"jsonrpc": "2.0", "method": "log", "params": {"level": level, "message": message}})).await;
    }
}

/// Forward cln-plugin's output, message by message, into the queue.
pub async fn forward_plugin_output<R: AsyncRead + Unpin>(from: R, out: Out) {
    let mut framer = Framer::new(from);
    while let Ok(Some(msg)) = framer.next().await {
        out.send_raw(msg).await;
    }
}

/// A `db_write` call, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct DbWriteCall {
    pub id: Value,
    pub data_version: u32,
    pub writes: Vec<String>,
}

/// What a message from lightningd is, as far as this layer cares.
#[derive(Debug)]
pub enum Incoming {
    DbWrite(DbWriteCall),
    /// A `db_write` whose params are malformed: answer this error to `id`.
    BadDbWrite {
        id: Value,
        error: String,
    },
    /// Anything else: pass it through.
    Other,
}

/// Classify one message.
pub fn classify(msg: &[u8]) -> Incoming {
    // Cheap test first: only db_write needs parsing here.
    if !msg.windows(8).any(|w| w == b"db_write") {
        return Incoming::Other;
    }
    let Ok(v) = serde_json::from_slice::<Value>(msg) else {
        return Incoming::Other;
    };
    if v.get("method").and_then(Value::as_str) != Some("db_write") {
        return Incoming::Other;
    }
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let params = v.get("params");
    let data_version = params.and_then(|p| p.get("data_version")).and_then(Value::as_u64);
    let writes = params.and_then(|p| p.get("writes")).and_then(Value::as_array);
    match (data_version, writes) {
        (Some(dv), Some(writes)) if dv <= u64::from(u32::MAX) => {
            let strings: Option<Vec<String>> = writes.iter().map(|w| w.as_str().map(str::to_string)).collect();
            match strings {
                Some(writes) => Incoming::DbWrite(DbWriteCall { id, data_version: dv as u32, writes }),
                None => Incoming::BadDbWrite { id, error: "db_write: every entry of `writes` must be a string".into() },
            }
        }
        _ => Incoming::BadDbWrite {
            id,
            error: "db_write: params must hold `data_version` (a u32) and `writes` (an array of strings)".into(),
        },
    }
}

/// The answer lightningd expects for a stored write.
pub fn continue_response(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"result": "continue"}})
}

/// An error answer: lightningd stops without committing.
pub fn error_response(id: &Value, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32000, "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_split_on_blank_lines_across_reads() {
        let data: &[u8] = b"{\"a\":1}\n\n{\"b\":\n2}\n\n\n\n{\"c\":3}";
        let mut f = Framer::new(data);
        assert_eq!(f.next().await.unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(f.next().await.unwrap().unwrap(), b"{\"b\":\n2}");
        assert_eq!(f.next().await.unwrap().unwrap(), b"{\"c\":3}");
        assert!(f.next().await.unwrap().is_none());
    }

    #[test]
    fn classifies_db_write() {
        let m = br#"{"jsonrpc":"2.0","id":"cln:db_write#17","method":"db_write","params":{"data_version":45,"writes":["A","B"]}}"#;
        match classify(m) {
            Incoming::DbWrite(c) => {
                assert_eq!(c.data_version, 45);
                assert_eq!(c.writes, vec!["A", "B"]);
                assert_eq!(c.id, Value::String("cln:db_write#17".into()));
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad = br#"{"jsonrpc":"2.0","id":"x","method":"db_write","params":{"data_version":-1,"writes":[]}}"#;
        assert!(matches!(classify(bad), Incoming::BadDbWrite { .. }));
        let other = br#"{"jsonrpc":"2.0","id":"y","method":"getmanifest","params":{}}"#;
        assert!(matches!(classify(other), Incoming::Other));
    }
}
