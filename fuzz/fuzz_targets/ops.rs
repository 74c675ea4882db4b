//! Fuzzes a program of operations, crashes and faults against a model
//! (`cairn_engine::fuzzing::ops_target` says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::ops_target(data));
