//! A fault point in the write path, for tests and the fuzzer: fails a chosen write, before it
//! reaches RocksDB (nothing written) or after (written, but reported as failed, as when an fsync
//! fails after the data reached the operating system).

#![cfg(any(test, fuzzing))]

use crate::error::Error;
use parking_lot::Mutex;
use std::io;

/// Where the injected failure strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strike {
    BeforeWrite,
    AfterWrite,
}

/// Fails the write that comes after `after` successful ones.
#[derive(Debug, Default)]
pub(crate) struct FaultPoint {
    armed: Mutex<Option<(u64, Strike)>>,
}

impl FaultPoint {
    pub(crate) fn arm(&self, after: u64, strike: Strike) {
        *self.armed.lock() = Some((after, strike));
    }

    /// Counts one write; `Some` if this one must fail.
    pub(crate) fn tick(&self) -> Option<Strike> {
        let mut armed = self.armed.lock();
        match armed.as_mut() {
            Some((0, strike)) => {
                let strike = *strike;
                *armed = None;
                Some(strike)
            }
            Some((after, _)) => {
                *after -= 1;
                None
            }
            None => None,
        }
    }

    pub(crate) fn error(strike: Strike) -> Error {
        Error::io(
            format!("writing to the store (injected fault, {strike:?})"),
            io::Error::other("injected fault"),
        )
    }
}
