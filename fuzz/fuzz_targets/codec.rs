//! `cargo +nightly fuzz run codec`: see `dedupstore::fuzz::codec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dedupstore::fuzz::codec(data));
