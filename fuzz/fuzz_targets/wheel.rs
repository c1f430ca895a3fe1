//! `cargo +nightly fuzz run wheel`: see `dedupstore::fuzz::wheel`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dedupstore::fuzz::wheel(data));
