//! Fuzz target: see `cln_backup::fuzzing::store_record`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cln_backup::fuzzing::store_record(data));
