//! The builder: every setting of a store, its default and its range.

use crate::clock::{Clock, SystemClock};
use crate::error::{Error, Result};
use crate::settings::{
    COMMIT_QUEUE, DEFAULT_BUDGET_PER_ID, Durability, MAX_STRIPES, MIN_BUDGET_PER_STRIPE,
    MIN_ROCKSDB_BUDGET, ROCKSDB_SEVENTHS, Settings, check_span, check_window,
};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

impl Store {
    /// A builder for a store at `path`, with every setting at its default.
    pub fn builder(path: impl AsRef<Path>) -> StoreBuilder {
        StoreBuilder::new(path.as_ref().to_path_buf())
    }

    /// Opens (or creates) the store at `path` with default settings.
    ///
    /// # Errors
    /// As [`StoreBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::builder(path).open()
    }
}

/// Settings for opening a [`Store`]. Made by [`Store::builder`].
///
/// ```no_run
/// use dedupstore::{Durability, Store};
/// use std::time::Duration;
///
/// let store = Store::builder("/var/lib/consumer/dedup")
///     .window(Duration::from_secs(7 * 24 * 3600))
///     .capacity(50_000_000)
///     .durability(Durability::Synced)
///     .open()?;
/// # Ok::<(), dedupstore::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct StoreBuilder {
    pub(crate) path: PathBuf,
    pub(crate) window: Duration,
    pub(crate) slots: u32,
    pub(crate) stripes: usize,
    pub(crate) durability: Durability,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) capacity: u64,
    pub(crate) memory_budget: Option<usize>,
    pub(crate) namespace: Vec<u8>,
    pub(crate) producer_idle: Option<Duration>,
}

impl StoreBuilder {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            window: Duration::from_secs(24 * 60 * 60),
            slots: 128,
            stripes: 64,
            durability: Durability::Buffered,
            clock: Arc::new(SystemClock),
            capacity: 1_000_000,
            memory_budget: None,
            namespace: Vec::new(),
            producer_idle: None,
        }
    }

    /// The retention window `W`: how long a marked ID stays a duplicate.
    ///
    /// Default 24 hours; range [`MIN_WINDOW`](crate::MIN_WINDOW) (1 s) ..= [`MAX_WINDOW`](crate::MAX_WINDOW) (366 days), in whole
    /// milliseconds. A store may be reopened with another window: every stored mark is then
    /// judged by the new one (marks keep their exact time).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How many slots the window is divided into: the time resolution `S = W / slots`.
    ///
    /// An ID checked between `W` and `W + S` after its mark may be answered either way; memory
    /// of dead marks is reclaimed one slot at a time. Default 128; range 1 ..= [`MAX_SLOTS`](crate::MAX_SLOTS),
    /// and `S` must be at least 1 ms.
    pub fn slots(mut self, slots: u32) -> Self {
        self.slots = slots;
        self
    }

    /// How many independently locked stripes the in-memory tier has.
    ///
    /// Default 64; a power of two in 1 ..= [`MAX_STRIPES`]. More stripes, less contention
    /// between threads that check different IDs.
    pub fn stripes(mut self, stripes: usize) -> Self {
        self.stripes = stripes;
        self
    }

    /// When writes are acknowledged. Default [`Durability::Buffered`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The clock. Default [`SystemClock`]; tests use [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The number of IDs expected per window.
    ///
    /// Sizes the in-memory tables, the default memory budget and RocksDB's memtables, filters
    /// and block cache. A wrong hint costs memory or speed, never correctness.
    /// Default 1,000,000; range 1 ..= 2⁴⁰.
    pub fn capacity(mut self, ids_per_window: u64) -> Self {
        self.capacity = ids_per_window;
        self
    }

    /// The most memory, in bytes, the store uses: its in-memory tier, RocksDB's memtables and
    /// RocksDB's block cache (data blocks, filters and indexes, with the memtables charged to
    /// it), whatever the number of tables and however wrong the [`capacity`](Self::capacity)
    /// hint. [`Stats`](crate::Stats) reports each part.
    ///
    /// RocksDB gets 2/7 of it (at least [`MIN_ROCKSDB_BUDGET`]) and the in-memory tier the rest
    /// (at least [`MIN_BUDGET_PER_STRIPE`] per stripe). When the window holds more IDs than the
    /// in-memory tier fits, it keeps the newest and older ones are answered from disk (filters
    /// first); when memtables reach half of RocksDB's share, RocksDB flushes them.
    ///
    /// Default: 56 bytes per expected ID, room for the hint plus 25% in memory. At least 8 MiB
    /// plus 64 KiB per stripe.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = Some(bytes);
        self
    }

    /// The seed that the store's own IDs are fingerprinted under. Default empty.
    ///
    /// This names the store's own ID space; for several independent ID spaces in one store, each
    /// with its own window, use [`Store::namespace`] instead. Fixed when the store is created: reopening with another namespace is an
    /// [`Error::InvalidConfig`], since every stored mark would silently stop matching.
    pub fn namespace(mut self, namespace: impl AsRef<[u8]>) -> Self {
        self.namespace = namespace.as_ref().to_vec();
        self
    }

    /// How long a producer's sequence state ([`Store::accept`]) outlives its last accepted
    /// sequence. A producer idle for longer is forgotten, in memory and on disk: its next
    /// sequence is accepted whatever it is, as a new producer's first is.
    ///
    /// Default: the [`window`](Self::window); range [`MIN_WINDOW`](crate::MIN_WINDOW) (1 s)
    /// ..= [`MAX_WINDOW`](crate::MAX_WINDOW) (366 days), in whole milliseconds. Not stored: a
    /// store reopened with a shorter idle time forgets the producers idle for longer.
    pub fn producer_idle(mut self, idle: Duration) -> Self {
        self.producer_idle = Some(idle);
        self
    }

    /// Opens the store, creating it if the directory is missing or empty.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a setting out of range, [`Error::Locked`] if another `Store`
    /// has the directory open, [`Error::IncompatibleFormat`] if it holds something else,
    /// [`Error::Corruption`] or [`Error::Io`] if it cannot be read.
    pub fn open(self) -> Result<Store> {
        Store::open_with(&self.validate()?)
    }

    pub(crate) fn validate(self) -> Result<Settings> {
        let invalid = |what, detail: String| Err(Error::InvalidConfig { what, detail });
        let window_ms = check_window(self.window, self.slots)?;
        let producer_idle_ms = match self.producer_idle {
            Some(idle) => check_span("producer_idle", idle)?,
            None => window_ms,
        };
        if !self.stripes.is_power_of_two() || self.stripes > MAX_STRIPES {
            return invalid(
                "stripes",
                format!(
                    "{} is not a power of two in 1..={MAX_STRIPES}",
                    self.stripes
                ),
            );
        }
        if self.capacity == 0 || self.capacity > 1 << 40 {
            return invalid("capacity", format!("{} is outside 1..=2^40", self.capacity));
        }
        let min_hot = self.stripes * MIN_BUDGET_PER_STRIPE;
        let min_budget = min_hot + MIN_ROCKSDB_BUDGET;
        let memory_budget = match self.memory_budget {
            Some(b) if b < min_budget => {
                return invalid(
                    "memory_budget",
                    format!(
                        "{b} bytes is below {min_budget} (8 MiB for RocksDB and 64 KiB for each \
                         of {} stripes)",
                        self.stripes
                    ),
                );
            }
            Some(b) => b,
            None => usize::try_from(self.capacity.saturating_mul(DEFAULT_BUDGET_PER_ID))
                .unwrap_or(usize::MAX)
                .max(min_budget),
        };
        let rocksdb_wanted = (memory_budget / 7 * ROCKSDB_SEVENTHS).max(MIN_ROCKSDB_BUDGET);
        let hot_budget = memory_budget.saturating_sub(rocksdb_wanted).max(min_hot);
        Ok(Settings {
            path: self.path,
            window_ms,
            slots: self.slots,
            stripes: self.stripes,
            durability: self.durability,
            clock: self.clock,
            capacity: self.capacity,
            memory_budget,
            hot_budget,
            rocksdb_budget: memory_budget - hot_budget,
            namespace: self.namespace,
            producer_idle_ms,
            shared_rocksdb: None,
            commit_queue: COMMIT_QUEUE,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::{MAX_SLOTS, MAX_WINDOW, MIN_WINDOW};

    fn check(b: StoreBuilder) -> Result<Settings> {
        b.validate()
    }

    fn builder() -> StoreBuilder {
        StoreBuilder::new("unused".into())
    }

    #[test]
    fn defaults_are_valid() {
        let s = check(builder()).unwrap();
        assert_eq!(s.window_ms, 86_400_000);
        assert_eq!(s.memory_budget, 56_000_000);
        assert_eq!(s.hot_budget, 40_000_000);
        assert_eq!(s.rocksdb_budget, 16_000_000);
        assert_eq!(
            s.producer_idle_ms, s.window_ms,
            "producers idle for a window"
        );
        let hour = Duration::from_secs(3600);
        let set = check(builder().window(hour).producer_idle(2 * hour)).unwrap();
        assert_eq!(set.producer_idle_ms, 7_200_000);
    }

    #[test]
    fn the_budget_is_shared_with_rocksdb_within_both_floors() {
        let small = check(builder().stripes(4).memory_budget(9 << 20)).unwrap();
        assert_eq!(small.rocksdb_budget, MIN_ROCKSDB_BUDGET);
        assert_eq!(small.hot_budget, 1 << 20);
        let many = check(builder().stripes(MAX_STRIPES).memory_budget(264 << 20)).unwrap();
        assert_eq!(many.hot_budget, MAX_STRIPES * MIN_BUDGET_PER_STRIPE);
        assert_eq!(many.rocksdb_budget, MIN_ROCKSDB_BUDGET);
        let big = check(builder().memory_budget(7 << 30)).unwrap();
        assert_eq!((big.hot_budget, big.rocksdb_budget), (5 << 30, 2 << 30));
    }

    #[test]
    fn out_of_range_settings_name_themselves() {
        let cases = [
            (builder().window(Duration::from_millis(999)), "window"),
            (
                builder().window(MAX_WINDOW + Duration::from_millis(1)),
                "window",
            ),
            (builder().slots(0), "slots"),
            (builder().slots(MAX_SLOTS + 1), "slots"),
            (
                builder().window(Duration::from_secs(1)).slots(1001),
                "slots",
            ),
            (builder().stripes(0), "stripes"),
            (builder().stripes(48), "stripes"),
            (builder().stripes(MAX_STRIPES * 2), "stripes"),
            (builder().capacity(0), "capacity"),
            (builder().memory_budget(1024), "memory_budget"),
            (
                builder().producer_idle(Duration::from_millis(999)),
                "producer_idle",
            ),
            (
                builder().producer_idle(MAX_WINDOW + Duration::from_millis(1)),
                "producer_idle",
            ),
            (
                builder().stripes(1).memory_budget(MIN_ROCKSDB_BUDGET),
                "memory_budget",
            ),
        ];
        for (b, name) in cases {
            match check(b) {
                Err(Error::InvalidConfig { what, .. }) => assert_eq!(what, name),
                other => panic!("{name}: expected InvalidConfig, got {other:?}"),
            }
        }
        assert!(check(builder().window(MAX_WINDOW).slots(MAX_SLOTS)).is_ok());
        assert!(check(builder().window(MIN_WINDOW).slots(1000)).is_ok());
    }
}
