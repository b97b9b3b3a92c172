//! Fuzz target: see `cln_backup::fuzzing::sealed_segment`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cln_backup::fuzzing::sealed_segment(data));
