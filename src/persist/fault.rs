//! A fault point in the persistence layer, for tests and the fuzzer: fails the Nth write, mark
//! read, generation creation, generation drop or filter save, before it reaches RocksDB (nothing done), after
//! it (done, but reported as failed, as when an fsync fails after the data reached the operating
//! system), or by panicking there. It can also hold the reads of one key, as a slow disk would.

#[cfg(any(test, fuzzing))]
use crate::error::Error;
#[cfg(any(test, fuzzing))]
use parking_lot::Mutex;
#[cfg(any(test, fuzzing))]
use std::io;
#[cfg(any(test, fuzzing))]
use std::sync::{Arc, Barrier};

/// How the message of an injected panic starts.
#[cfg(any(test, fuzzing))]
pub(crate) const INJECTED_PANIC: &str = "injected panic";

/// The operations a fault point can fail (named in every build, so call sites need no `cfg`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    /// A write batch through the write-ahead log.
    Write,
    /// Reading a mark from one generation.
    Read,
    /// Creating a generation's column family.
    Create,
    /// Dropping a dead generation.
    Drop,
    /// Writing a generation's saved filter (`persist::saved_filters`).
    Save,
}

/// How the injected failure strikes.
#[cfg(any(test, fuzzing))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Strike {
    /// Fail without doing the operation.
    Before,
    /// Do the operation, then report it failed.
    After,
    /// Panic instead of doing the operation.
    Panic,
}

/// Fails the operation `op` that comes after `after` successful ones.
#[cfg(any(test, fuzzing))]
#[derive(Debug, Default)]
pub(crate) struct FaultPoint {
    armed: Mutex<Option<(Op, u64, Strike)>>,
    held: Mutex<Option<(Vec<u8>, Arc<Barrier>)>>,
    held_write: Mutex<Option<Arc<Barrier>>>,
}

#[cfg(any(test, fuzzing))]
impl FaultPoint {
    pub(crate) fn arm(&self, op: Op, after: u64, strike: Strike) {
        *self.armed.lock() = Some((op, after, strike));
    }

    /// Holds each read of `key`: the reader meets `gate` once when it arrives and once more
    /// before it reads, so a test knows when a read is stalled and chooses when it goes on.
    pub(crate) fn hold_reads(&self, key: &[u8], gate: Arc<Barrier>) {
        *self.held.lock() = Some((key.to_vec(), gate));
    }

    /// Called before each read of `key`: waits there if the key's reads are held.
    pub(crate) fn reading(&self, key: &[u8]) {
        let gate = match &*self.held.lock() {
            Some((held, gate)) if held == key => Arc::clone(gate),
            _ => return,
        };
        gate.wait();
        gate.wait();
    }

    /// Holds the next write batch before it reaches RocksDB, as a stalled disk would: the
    /// writer meets `gate` once when it arrives and once more before it writes.
    pub(crate) fn hold_next_write(&self, gate: Arc<Barrier>) {
        *self.held_write.lock() = Some(gate);
    }

    /// Called before each write batch: waits there if the next write is held.
    pub(crate) fn writing(&self) {
        let Some(gate) = self.held_write.lock().take() else {
            return;
        };
        gate.wait();
        gate.wait();
    }

    /// Whether the armed fault has struck (or none was armed).
    pub(crate) fn spent(&self) -> bool {
        self.armed.lock().is_none()
    }

    /// Counts one `op`; `Some` if this one must fail. A [`Strike::Panic`] panics here.
    pub(crate) fn tick(&self, op: Op) -> Option<Strike> {
        let mut armed = self.armed.lock();
        let strike = match armed.as_mut() {
            Some((armed_op, 0, strike)) if *armed_op == op => {
                let strike = *strike;
                *armed = None;
                strike
            }
            Some((armed_op, after, _)) if *armed_op == op => {
                *after -= 1;
                return None;
            }
            _ => return None,
        };
        drop(armed);
        assert!(strike != Strike::Panic, "{INJECTED_PANIC} in {op:?}");
        Some(strike)
    }

    pub(crate) fn error(op: Op, strike: Strike) -> Error {
        Error::io(
            format!("{op:?} in the store (injected fault, {strike:?})"),
            io::Error::other("injected fault"),
        )
    }
}
