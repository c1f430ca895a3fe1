//! `cargo +nightly fuzz run ops`: see `dedupstore::fuzz::ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // The store catches the panics its fault point injects; any other panic is a finding.
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !dedupstore::fuzz::injected(info) {
                abort(info);
            }
        }));
    },
    |data: &[u8]| dedupstore::fuzz::ops(data)
);
