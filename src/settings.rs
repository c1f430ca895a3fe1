//! What a store is opened with: durability, the limits of every setting, and the validated
//! settings the layers below the builder read. A leaf: it imports nothing of the crate but the
//! clock.

use crate::clock::{Clock, duration_millis};
use crate::error::{Error, Result};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// When an acknowledged write is safe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// The write-ahead log is handed to the operating system before the call returns.
    ///
    /// **Survives a process crash** (including `SIGKILL`); does **not** survive power loss or an
    /// operating-system crash, which can lose the last writes (never tear them). The same promise
    /// as RocksDB's default and Redis' `appendfsync everysec`. The default.
    #[default]
    Buffered,
    /// The write-ahead log is fsynced before the call returns.
    ///
    /// **Survives power loss.** Concurrent writers share one fsync.
    Synced,
}

/// The shortest retention window.
pub const MIN_WINDOW: Duration = Duration::from_secs(1);
/// The longest retention window (366 days).
pub const MAX_WINDOW: Duration = Duration::from_secs(366 * 24 * 60 * 60);
/// The most slots a window can be divided into.
pub const MAX_SLOTS: u32 = 4096;
/// The most lock stripes of the hot tier.
pub const MAX_STRIPES: usize = 4096;
/// The in-memory tier's smallest share of the memory budget, per stripe.
pub const MIN_BUDGET_PER_STRIPE: usize = 64 * 1024;
/// RocksDB's smallest share of the memory budget (memtables and block cache).
pub const MIN_ROCKSDB_BUDGET: usize = 8 << 20;
/// Memory budget per expected ID when none is set: 40 bytes for the in-memory tier (room for
/// the `capacity` hint plus 25%) and 16 for RocksDB.
pub(crate) const DEFAULT_BUDGET_PER_ID: u64 = 56;
/// The most transactions a store's committer queues (`submit` blocks beyond): 8,192 slots,
/// about 1.5 MiB allocated at open.
pub(crate) const COMMIT_QUEUE: usize = 8_192;
/// The committer's queue of a store of a `Partitions`: dozens of them share a process, and each
/// queue's slots are allocated at open. Twice the largest group the committer writes.
pub(crate) const PARTITION_COMMIT_QUEUE: usize = 1_024;
/// RocksDB's share of the memory budget, in sevenths (16 of 56 bytes per ID by default).
pub(crate) const ROCKSDB_SEVENTHS: usize = 2;

/// Checks a retention window and the slots it is divided into (the store's or a namespace's);
/// returns the window in milliseconds.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `window` or `slots`.
pub(crate) fn check_window(window: Duration, slots: u32) -> Result<u64> {
    let invalid = |what, detail: String| Err(Error::InvalidConfig { what, detail });
    let window_ms = check_span("window", window)?;
    if slots == 0 || slots > MAX_SLOTS || u64::from(slots) > window_ms {
        return invalid(
            "slots",
            format!("{slots} slots: need 1..={MAX_SLOTS} and at least 1 ms per slot"),
        );
    }
    Ok(window_ms)
}

/// Checks a span of time the window's bounds apply to (a window, the producer idle time, named
/// by `what`); returns it in milliseconds.
///
/// # Errors
/// [`Error::InvalidConfig`] naming `what`, for a span outside [`MIN_WINDOW`]..=[`MAX_WINDOW`].
pub(crate) fn check_span(what: &'static str, span: Duration) -> Result<u64> {
    if !(MIN_WINDOW..=MAX_WINDOW).contains(&span) {
        return Err(Error::InvalidConfig {
            what,
            detail: format!("{span:?} is outside 1s..=366 days"),
        });
    }
    Ok(duration_millis(span))
}

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub path: PathBuf,
    pub window_ms: u64,
    pub slots: u32,
    pub stripes: usize,
    pub durability: Durability,
    pub clock: Arc<dyn Clock>,
    pub capacity: u64,
    /// The whole store's memory budget: `hot_budget + rocksdb_budget`.
    pub memory_budget: usize,
    pub hot_budget: usize,
    pub rocksdb_budget: usize,
    pub namespace: Vec<u8>,
    /// How long a producer's sequence state outlives its last accept, in milliseconds.
    pub producer_idle_ms: u64,
    /// RocksDB's memory when it is shared with other stores (those of a `Partitions`):
    /// `rocksdb_budget` is then this store's share, which its memtables are sized for.
    pub shared_rocksdb: Option<SharedRocksDb>,
    /// The most transactions the committer queues ([`COMMIT_QUEUE`], or
    /// [`PARTITION_COMMIT_QUEUE`] in a `Partitions`).
    pub commit_queue: usize,
}

/// A block cache and the write buffer manager that charges memtables to it, shared by several
/// stores so that one budget bounds RocksDB's memory for all of them.
#[derive(Clone)]
pub(crate) struct SharedRocksDb {
    pub cache: rocksdb::Cache,
    pub write_buffers: rocksdb::WriteBufferManager,
}

impl std::fmt::Debug for SharedRocksDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRocksDb").finish_non_exhaustive()
    }
}
