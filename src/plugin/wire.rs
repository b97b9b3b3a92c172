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
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Messages larger than this are refused: lightningd's largest `db_write`
/// carries a transaction's statements, far below it.
const MAX_MESSAGE: usize = 512 << 20;

/// Buffer of a byte stream, split into messages separated by `\n\n`.
#[derive(Default)]
struct Frames {
    buf: Vec<u8>,
    scanned: usize,
}

impl Frames {
    /// The next whole message in the buffer, without its separator.
    fn next(&mut self) -> Option<Vec<u8>> {
        loop {
            let at = self.buf[self.scanned..].windows(2).position(|w| w == b"\n\n")?;
            let end = self.scanned + at;
            let msg: Vec<u8> = self.buf.drain(..end + 2).take(end).collect();
            self.scanned = 0;
            if !msg.iter().all(u8::is_ascii_whitespace) {
                return Some(msg);
            }
        }
    }

    fn push(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.scanned = self.buf.len().saturating_sub(1);
        if self.buf.len() + data.len() > MAX_MESSAGE {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "message too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// What is left at end of input: a last message without separator.
    fn rest(&mut self) -> Option<Vec<u8>> {
        let rest = std::mem::take(&mut self.buf);
        self.scanned = 0;
        (!rest.iter().all(u8::is_ascii_whitespace)).then_some(rest)
    }
}

/// Reads messages from a blocking stream (lightningd's pipe on stdin).
pub struct Framer<R> {
    input: R,
    frames: Frames,
    chunk: Vec<u8>,
}

impl<R: Read> Framer<R> {
    pub fn new(input: R) -> Self {
        Framer { input, frames: Frames::default(), chunk: vec![0; 64 << 10] }
    }

    /// The next message without its separator; `None` at end of input.
    pub fn next(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(msg) = self.frames.next() {
                return Ok(Some(msg));
            }
            let n = match self.input.read(&mut self.chunk) {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if n == 0 {
                return Ok(self.frames.rest());
            }
            self.frames.push(&self.chunk[..n])?;
        }
    }
}

/// Whole messages to lightningd. Every writer takes the one lock, so nothing
/// interleaves, and a message is flushed before the lock is released.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Box<dyn Write + Send>>>);

impl Out {
    pub fn new(output: impl Write + Send + 'static) -> Out {
        Out(Arc::new(Mutex::new(Box::new(output))))
    }

    /// Write messages (without separators), in order, under one lock.
    pub fn send_all(&self, msgs: &[&[u8]]) -> std::io::Result<()> {
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for msg in msgs {
            out.write_all(msg)?;
            out.write_all(b"\n\n")?;
        }
        out.flush()
    }

    /// Write one message.
    pub fn send_raw(&self, msg: &[u8]) -> std::io::Result<()> {
        self.send_all(&[msg])
    }
}

/// A `log` notification.
pub fn log_notification(level: &str, message: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "method": "log", "params": {"level": level, "message": message}}).to_string().into_bytes()
}

/// Forward cln-plugin's output, message by message, to lightningd.
pub async fn forward_plugin_output<R: AsyncRead + Unpin>(mut from: R, out: Out) {
    let mut frames = Frames::default();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        while let Some(msg) = frames.next() {
            if out.send_raw(&msg).is_err() {
                return;
            }
        }
        match from.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if frames.push(&chunk[..n]).is_err() {
                    return;
                }
            }
        }
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
    let Ok(mut v) = serde_json::from_slice::<Value>(msg) else {
        return Incoming::Other;
    };
    if v.get("method").and_then(Value::as_str) != Some("db_write") {
        return Incoming::Other;
    }
    let id = v.get("id").cloned().unwrap_or(Value::Null);
    let params = v.get_mut("params");
    let data_version = params.as_ref().and_then(|p| p.get("data_version")).and_then(Value::as_u64);
    // The statements are moved out of the parsed message, not copied.
    let writes = params.and_then(|p| p.get_mut("writes")).map(Value::take);
    match (data_version, writes) {
        (Some(dv), Some(Value::Array(writes))) if dv <= u64::from(u32::MAX) => {
            let strings: Option<Vec<String>> = writes
                .into_iter()
                .map(|w| match w {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect();
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

    /// Hands out its bytes a few at a time, as a pipe may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn frames_split_on_blank_lines_across_reads() {
        let data: &[u8] = b"{\"a\":1}\n\n{\"b\":\n2}\n\n\n\n{\"c\":3}";
        let mut f = Framer::new(Trickle(data));
        assert_eq!(f.next().unwrap().unwrap(), b"{\"a\":1}");
        assert_eq!(f.next().unwrap().unwrap(), b"{\"b\":\n2}");
        assert_eq!(f.next().unwrap().unwrap(), b"{\"c\":3}");
        assert!(f.next().unwrap().is_none());
    }

    #[test]
    fn out_writes_whole_messages_in_order() {
        #[derive(Clone, Default)]
        struct Shared(Arc<Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = Shared::default();
        let out = Out::new(sink.clone());
        out.send_all(&[b"{\"log\":1}", b"{\"answer\":2}"]).unwrap();
        assert_eq!(&*sink.0.lock().unwrap(), b"{\"log\":1}\n\n{\"answer\":2}\n\n");
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
