//! The bodies of the fuzz targets in `fuzz/fuzz_targets`, compiled only for tests and for
//! cargo-fuzz (`--cfg fuzzing`). Each takes the fuzzer's bytes and panics when the code breaks
//! the contract it checks:
//!
//! - [`codec`]: every decoder of stored bytes answers `Error::Corruption` (or a clean value),
//!   never panics;
//! - [`wheel`]: one stripe of the hot tier against a model of its marks;
//! - [`ops`]: a whole store (operations, clock moves, reopens, injected faults) against a model
//!   of the contract in `docs/guarantees.md`.
//!
//! `cargo test` replays the corpora kept in `fuzz/corpus/<target>` through the same functions
//! (`docs/reliability.md` says how to fuzz and what the runs found).

mod codec;
mod ops;
mod sequences;
mod wheel;

pub use codec::codec;
pub use ops::ops;
pub use wheel::wheel;

/// Whether a panic is one the fault point injected (the store catches those): the fuzz
/// targets' panic hook lets them pass and aborts on any other.
#[must_use]
pub fn injected(info: &std::panic::PanicHookInfo<'_>) -> bool {
    crate::persist::panic_message(info.payload())
        .is_some_and(|m| m.starts_with(crate::persist::INJECTED_PANIC))
}

/// The next step the fuzzer's bytes decode to; `None` once they are used up (`arbitrary` would
/// go on making steps of zeros).
fn next<'a, T: arbitrary::Arbitrary<'a>>(u: &mut arbitrary::Unstructured<'a>) -> Option<T> {
    if u.is_empty() {
        return None;
    }
    T::arbitrary(u).ok()
}

#[cfg(test)]
mod replay {
    use std::path::Path;

    /// Runs every input of `fuzz/corpus/<target>` through `body`.
    fn replay(target: &str, body: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus")
            .join(target);
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .collect();
        inputs.sort();
        assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{} fails", path.display());
        }
    }

    #[test]
    fn codec_corpus() {
        replay("codec", super::codec);
    }

    #[test]
    fn wheel_corpus() {
        replay("wheel", super::wheel);
    }

    #[test]
    fn ops_corpus() {
        replay("ops", super::ops);
    }
}
