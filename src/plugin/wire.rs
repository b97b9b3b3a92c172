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

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::borrow::Cow;
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
            let end = self.scanned + separator(&self.buf[self.scanned..])?;
            // Copied out whole, and what follows moved to the front: no
            // byte-by-byte iteration over a large message.
            let msg = self.buf[..end].to_vec();
            self.buf.drain(..end + 2);
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

/// Where the first `\n\n` in `buf` starts: a scan for newlines, each
/// checked for a second one.
fn separator(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(at) = buf[from..].iter().position(|&b| b == b'\n') {
        let i = from + at;
        match buf.get(i + 1) {
            Some(b'\n') => return Some(i),
            Some(_) => from = i + 2,
            None => return None,
        }
    }
    None
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
/// interleaves; the messages of one call are gathered in one buffer (kept
/// between calls) and written with one `write_all`, then flushed once.
#[derive(Clone)]
pub struct Out(Arc<Mutex<Sink>>);

struct Sink {
    output: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl Sink {
    fn write_out(&mut self) -> std::io::Result<()> {
        let result = self.output.write_all(&self.buf).and_then(|()| self.output.flush());
        self.buf.clear();
        result
    }
}

impl Out {
    pub fn new(output: impl Write + Send + 'static) -> Out {
        Out(Arc::new(Mutex::new(Sink { output: Box::new(output), buf: Vec::with_capacity(4096) })))
    }

    fn sink(&self) -> std::sync::MutexGuard<'_, Sink> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write messages (without separators), in order, under one lock.
    pub fn send_all(&self, msgs: &[&[u8]]) -> std::io::Result<()> {
        let mut sink = self.sink();
        for msg in msgs {
            sink.buf.extend_from_slice(msg);
            sink.buf.extend_from_slice(b"\n\n");
        }
        sink.write_out()
    }

    /// Write one message.
    pub fn send_raw(&self, msg: &[u8]) -> std::io::Result<()> {
        self.send_all(&[msg])
    }

    /// Answer `continue` to the call `id` (its JSON text, as it came): the
    /// answer to almost every write, built in place.
    pub fn send_continue(&self, id: &str) -> std::io::Result<()> {
        let mut sink = self.sink();
        push_continue(&mut sink.buf, id);
        sink.buf.extend_from_slice(b"\n\n");
        sink.write_out()
    }
}

/// The `continue` answer to the call `id` (JSON text), appended to `buf`.
fn push_continue(buf: &mut Vec<u8>, id: &str) {
    buf.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(b",\"result\":{\"result\":\"continue\"}}");
}

/// The `continue` answer to the call `id` (JSON text), as a message.
pub fn continue_response(id: &str) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64 + id.len());
    push_continue(&mut buf, id);
    buf
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

/// One statement of a `db_write`, borrowed from the message when it holds
/// no JSON escapes (lightningd's statements rarely do).
#[derive(Debug, Deserialize, PartialEq, Eq)]
pub struct Statement<'m>(#[serde(borrow)] pub Cow<'m, str>);

impl AsRef<str> for Statement<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A `db_write` call, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct DbWriteCall<'m> {
    /// The call's id as JSON text, echoed in the answer as it came.
    pub id: Cow<'m, str>,
    pub data_version: u32,
    pub writes: Vec<Statement<'m>>,
}

/// What a message from lightningd is, as far as this layer cares.
#[derive(Debug)]
pub enum Incoming<'m> {
    DbWrite(DbWriteCall<'m>),
    /// A `db_write` whose params are malformed: answer this error to `id`
    /// (JSON text).
    BadDbWrite {
        id: String,
        error: String,
    },
    /// Anything else: pass it through.
    Other,
}

/// A well-formed `db_write`, as lightningd sends it.
#[derive(Deserialize)]
struct Call<'m> {
    #[serde(borrow)]
    method: Cow<'m, str>,
    #[serde(borrow)]
    id: Option<&'m RawValue>,
    #[serde(borrow)]
    params: Params<'m>,
}

#[derive(Deserialize)]
struct Params<'m> {
    data_version: u32,
    #[serde(borrow)]
    writes: Vec<Statement<'m>>,
}

/// Classify one message.
///
/// A `db_write` is parsed straight into its fields, its statements borrowed
/// from the message; only a message that does not parse that way (another
/// method that mentions `db_write`, or a malformed call) is parsed again as
/// a generic value, to tell which and to say what is wrong.
pub fn classify(msg: &[u8]) -> Incoming<'_> {
    // Cheap test first: only db_write needs parsing here. lightningd writes
    // `method` before `params`, so this stops near the start of a write.
    if !msg.windows(10).any(|w| w == b"\"db_write\"") {
        return Incoming::Other;
    }
    match serde_json::from_slice::<Call<'_>>(msg) {
        Ok(call) if call.method == "db_write" => Incoming::DbWrite(DbWriteCall {
            id: Cow::Borrowed(call.id.map_or("null", RawValue::get)),
            data_version: call.params.data_version,
            writes: call.params.writes,
        }),
        Ok(_) => Incoming::Other,
        Err(_) => classify_slowly(msg),
    }
}

/// The generic parse of a message that is not a well-formed `db_write`.
fn classify_slowly(msg: &[u8]) -> Incoming<'static> {
    let (v, utf8) = match serde_json::from_slice::<Value>(msg) {
        Ok(v) => (v, true),
        // Text that is not UTF-8 is not JSON: read with the bad bytes
        // replaced only to find the call's id and method, so that a
        // `db_write` carrying such text is refused, not passed on.
        Err(_) => match std::str::from_utf8(msg) {
            Ok(_) => return Incoming::Other,
            Err(_) => match serde_json::from_str::<Value>(&String::from_utf8_lossy(msg)) {
                Ok(v) => (v, false),
                Err(_) => return Incoming::Other,
            },
        },
    };
    if v.get("method").and_then(Value::as_str) != Some("db_write") {
        return Incoming::Other;
    }
    if !utf8 {
        let id = v.get("id").unwrap_or(&Value::Null).to_string();
        return Incoming::BadDbWrite { id, error: "db_write: the message is not valid UTF-8".into() };
    }
    let id = v.get("id").unwrap_or(&Value::Null).to_string();
    let params = v.get("params");
    let data_version = params.and_then(|p| p.get("data_version")).and_then(Value::as_u64);
    let writes = params.and_then(|p| p.get("writes")).and_then(Value::as_array);
    let error = match (data_version, writes) {
        (Some(dv), Some(writes)) if dv <= u64::from(u32::MAX) && !writes.iter().all(Value::is_string) => {
            "db_write: every entry of `writes` must be a string"
        }
        _ => "db_write: params must hold `data_version` (a u32) and `writes` (an array of strings)",
    };
    Incoming::BadDbWrite { id, error: error.into() }
}

/// An error answer to the call `id` (JSON text): lightningd stops without committing.
pub fn error_response(id: &str, message: &str) -> Vec<u8> {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":{}}}}}"#, Value::from(message))
        .into_bytes()
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
        out.send_continue("\"cln:db_write#3\"").unwrap();
        let written = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let (first, rest) = written.split_once("\n\n{\"answer\":2}\n\n").unwrap();
        assert_eq!(first, "{\"log\":1}");
        let answer: Value = serde_json::from_str(rest.strip_suffix("\n\n").unwrap()).unwrap();
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": "cln:db_write#3", "result": {"result": "continue"}}));
    }

    #[test]
    fn classifies_db_write() {
        let m = br#"{"jsonrpc":"2.0","id":"cln:db_write#17","method":"db_write","params":{"data_version":45,"writes":["A","B\"q"]}}"#;
        match classify(m) {
            Incoming::DbWrite(c) => {
                assert_eq!(c.data_version, 45);
                let writes: Vec<&str> = c.writes.iter().map(AsRef::as_ref).collect();
                assert_eq!(writes, vec!["A", "B\"q"]);
                assert!(matches!(c.writes[0].0, Cow::Borrowed(_)));
                assert_eq!(c.id, "\"cln:db_write#17\"");
            }
            other => panic!("unexpected {other:?}"),
        }
        let bad = br#"{"jsonrpc":"2.0","id":"x","method":"db_write","params":{"data_version":-1,"writes":[]}}"#;
        match classify(bad) {
            Incoming::BadDbWrite { id, error } => {
                assert_eq!(id, "\"x\"");
                assert!(error.contains("a u32"), "{error}");
            }
            other => panic!("unexpected {other:?}"),
        }
        let mixed = br#"{"jsonrpc":"2.0","id":7,"method":"db_write","params":{"data_version":3,"writes":["A",1]}}"#;
        assert!(matches!(classify(mixed), Incoming::BadDbWrite { error, .. } if error.contains("must be a string")));
        let mut latin1 =
            br#"{"jsonrpc":"2.0","id":"w","method":"db_write","params":{"data_version":3,"writes":["'"#.to_vec();
        latin1.extend_from_slice(b"caf\xe9'\"]}}");
        assert!(
            matches!(classify(&latin1), Incoming::BadDbWrite { id, error } if id == "\"w\"" && error.contains("UTF-8"))
        );
        let other = br#"{"jsonrpc":"2.0","id":"y","method":"getmanifest","params":{}}"#;
        assert!(matches!(classify(other), Incoming::Other));
        // Another method that mentions db_write is passed on.
        let mention = br#"{"jsonrpc":"2.0","id":"z","method":"help","params":{"command":"db_write"}}"#;
        assert!(matches!(classify(mention), Incoming::Other));
        let answer: Value = serde_json::from_slice(&error_response("7", "no \"disk\"")).unwrap();
        assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32000, "message": "no \"disk\""}}));
    }

    #[test]
    fn separators_are_found_after_lone_newlines() {
        assert_eq!(separator(b"a\nb\n\nc"), Some(3));
        assert_eq!(separator(b"a\nb\n"), None);
        assert_eq!(separator(b"\n\n"), Some(0));
        assert_eq!(separator(b"ab"), None);
    }
}
