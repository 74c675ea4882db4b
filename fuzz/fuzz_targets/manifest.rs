//! Fuzzes a manifest: edit decoding and version-set recovery
//! (`cairn_engine::fuzzing::manifest_target` says what is checked).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn_engine::fuzzing::manifest_target(data));
