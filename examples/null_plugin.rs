//! A plugin that stores nothing: it speaks lightningd's plugin protocol
//! (`getmanifest`, `init`, the `db_write` hook) and answers every `db_write`
//! with `continue` at once.
//!
//! It reads and answers through the real plugin's own wire layer (the same
//! framing, the same typed parse of `db_write` with the same JSON crate, the
//! same output path), so that a round trip through it is what the harness
//! and the protocol cost without any storage: `bench_plugin` subtracts it
//! from the real plugin's round trip.
//!
//! ```sh
//! cargo build --release --example null_plugin   # bench_plugin builds it itself
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../src/plugin/wire.rs"]
mod wire;

use serde_json::{json, Value};
use wire::{Framer, Incoming, Out};

fn main() {
    let out = Out::new(std::io::stdout());
    let mut input = Framer::new(std::io::stdin().lock());
    while let Some(msg) = input.next().expect("reading from lightningd") {
        match wire::classify(&msg) {
            Incoming::DbWrite(call) => {
                // Touch what a real plugin reads, so the parse is not optimised away.
                std::hint::black_box((call.data_version, call.writes.len()));
                out.send_continue(&call.id).expect("answering");
            }
            Incoming::BadDbWrite { id, error } => {
                out.send_raw(&wire::error_response(&id, &error)).expect("answering");
            }
            Incoming::Other => answer_other(&out, &msg),
        }
    }
}

/// `getmanifest` and `init`; notifications and anything else are ignored.
fn answer_other(out: &Out, msg: &[u8]) {
    let Ok(v) = serde_json::from_slice::<Value>(msg) else { return };
    let Some(id) = v.get("id") else { return };
    let result = match v.get("method").and_then(Value::as_str) {
        Some("getmanifest") => json!({
            "options": [],
            "rpcmethods": [],
            "subscriptions": [],
            "hooks": [{"name": "db_write"}],
            "dynamic": false,
        }),
        Some("init") => json!({}),
        _ => return,
    };
    let answer = json!({"jsonrpc": "2.0", "id": id, "result": result});
    out.send_raw(answer.to_string().as_bytes()).expect("answering");
}
