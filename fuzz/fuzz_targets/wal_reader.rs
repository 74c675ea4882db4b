//! Fuzzes a WAL file: replay, batch decoding, recovery
//! (`cairn_engine::fuzzing::wal_target` says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::wal_target(data));
