//! Fuzzes a table file: open, gets, iteration both ways
//! (`cairn_engine::fuzzing::sstable_target` says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::sstable_target(data));
