//! Fuzzes a bloom filter block: validation and probes
//! (`cairn_engine::fuzzing::bloom_target` says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::bloom_target(data));
