//! Fuzzes a block's contents: restart array, iteration, seeks
//! (`cairn_engine::fuzzing::block_target` says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::block_target(data));
