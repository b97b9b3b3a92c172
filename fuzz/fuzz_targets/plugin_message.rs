//! Fuzz target: lightningd's pipe as the plugin reads it. The bytes are
//! framed into messages (a blank line between them), each classified as
//! the wire layer does (a `db_write` parsed into its version and
//! statements, a malformed one into the error it is answered with), and
//! every answer built for it must be JSON.
#![no_main]

#[path = "../../src/plugin/wire.rs"]
#[allow(dead_code)]
mod wire;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let mut framer = wire::Framer::new(data);
    while let Ok(Some(msg)) = framer.next() {
        match wire::classify(&msg) {
            wire::Incoming::DbWrite(call) => {
                let answer = wire::continue_response(&call.id);
                serde_json::from_slice::<serde_json::Value>(&answer).expect("a continue answer is JSON");
            }
            wire::Incoming::BadDbWrite { id, error } => {
                let answer = wire::error_response(&id, &error);
                serde_json::from_slice::<serde_json::Value>(&answer).expect("an error answer is JSON");
            }
            wire::Incoming::Other => {}
        }
    }
});
