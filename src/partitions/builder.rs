//! [`PartitionsBuilder`]: the settings of a [`Partitions`] and of every store it opens.

use super::{Counters, Partitions, Shared};
use crate::checkpoint::Checkpoints;
use crate::clock::Clock;
use crate::config::StoreBuilder;
use crate::error::{Error, Result};
use crate::persist::{lock_directory, shared_rocksdb};
use crate::settings::{Durability, MIN_BUDGET_PER_STRIPE, MIN_ROCKSDB_BUDGET, ROCKSDB_SEVENTHS};
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The memory budget of a `Partitions` that is not given one: 256 MiB.
const DEFAULT_BUDGET: usize = 256 << 20;
/// Stripes of each partition's in-memory tier unless set: fewer than a lone store's 64, since
/// many partitions share the cores.
const DEFAULT_STRIPES: usize = 16;

/// Settings for opening a [`Partitions`]. Made by [`Partitions::builder`].
///
/// The store settings (window, slots, stripes, durability, clock, capacity) apply to every
/// partition's store, as [`StoreBuilder`]'s do to one store.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct PartitionsBuilder {
    root: PathBuf,
    template: StoreBuilder,
    memory_budget: usize,
    checkpoints: Option<Checkpoints>,
    keep_checkpoints: usize,
}

impl PartitionsBuilder {
    pub(super) fn new(root: PathBuf) -> Self {
        Self {
            template: StoreBuilder::new(root.clone()).stripes(DEFAULT_STRIPES),
            root,
            memory_budget: DEFAULT_BUDGET,
            checkpoints: None,
            keep_checkpoints: 3,
        }
    }

    /// Every partition's retention window, as [`StoreBuilder::window`]. Default 24 hours.
    pub fn window(mut self, window: Duration) -> Self {
        self.template = self.template.window(window);
        self
    }

    /// Slots of every partition's window, as [`StoreBuilder::slots`]. Default 128.
    pub fn slots(mut self, slots: u32) -> Self {
        self.template = self.template.slots(slots);
        self
    }

    /// Stripes of every partition's in-memory tier, as [`StoreBuilder::stripes`]. Default 16;
    /// each partition gets at least 64 KiB per stripe of memory, whatever the budget.
    pub fn stripes(mut self, stripes: usize) -> Self {
        self.template = self.template.stripes(stripes);
        self
    }

    /// Every partition's durability, as [`StoreBuilder::durability`]. Default
    /// [`Durability::Buffered`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.template = self.template.durability(durability);
        self
    }

    /// The clock of every partition's store. Default the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.template = self.template.clock(clock);
        self
    }

    /// IDs expected per window in each partition, as [`StoreBuilder::capacity`] (it sizes
    /// tables and memtables, never memory beyond the budget). Default 1,000,000.
    pub fn capacity(mut self, ids_per_window: u64) -> Self {
        self.template = self.template.capacity(ids_per_window);
        self
    }

    /// The memory of all partitions together: RocksDB gets 2/7 (at least 8 MiB) as one block
    /// cache with every memtable charged to it, and the in-memory tiers the rest, split evenly
    /// among the partitions assigned (again at each assignment and revocation). A partition's
    /// share never falls below 64 KiB per stripe: with more partitions than the budget holds at
    /// that floor, each keeps the floor and memory exceeds the budget by the difference.
    ///
    /// Default 256 MiB; at least 8 MiB plus one partition's floor.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.memory_budget = bytes;
        self
    }

    /// Where checkpoints are published on revocation and restored from on assignment; each
    /// partition's go under `<stream>/<partition>` of it. Default none: revoked partitions are
    /// only closed, assigned ones open their local copy or start empty.
    pub fn checkpoints(mut self, destination: Checkpoints) -> Self {
        self.checkpoints = Some(destination);
        self
    }

    /// How many checkpoints of each partition the destination keeps; older ones, and files no
    /// kept checkpoint holds, are removed after each publication. Default 3; at least 1.
    pub fn keep_checkpoints(mut self, keep: usize) -> Self {
        self.keep_checkpoints = keep;
        self
    }

    /// Creates the root directory if needed and locks it; opens no store yet.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a setting out of range (the store settings are checked as
    /// [`StoreBuilder::open`] checks them); [`Error::Locked`] if another `Partitions` has the
    /// root; an I/O error creating it.
    pub fn open(self) -> Result<Partitions> {
        let invalid = |what, detail: String| Err(Error::InvalidConfig { what, detail });
        // The store settings, checked once here rather than at the first assignment.
        self.template.clone().validate()?;
        if self.keep_checkpoints == 0 {
            return invalid("keep_checkpoints", "0; keep at least 1".into());
        }
        let min_hot = self.template.stripes * MIN_BUDGET_PER_STRIPE;
        let rocksdb_budget = (self.memory_budget / 7 * ROCKSDB_SEVENTHS).max(MIN_ROCKSDB_BUDGET);
        if self.memory_budget < rocksdb_budget + min_hot {
            return invalid(
                "memory_budget",
                format!(
                    "{} bytes is below {} (8 MiB for RocksDB and 64 KiB for each of {} stripes)",
                    self.memory_budget,
                    rocksdb_budget + min_hot,
                    self.template.stripes
                ),
            );
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| Error::io(format!("creating {}", self.root.display()), e))?;
        let lock = lock_directory(&self.root)?;
        // What an interrupted hand-off left in the staging area.
        let _ = std::fs::remove_dir_all(self.root.join(".checkpoints"));
        Ok(Partitions {
            shared: Arc::new(Shared {
                rocksdb: shared_rocksdb(rocksdb_budget),
                rocksdb_budget,
                hot_budget: self.memory_budget - rocksdb_budget,
                min_hot,
                root: self.root,
                template: self.template,
                checkpoints: self.checkpoints,
                keep_checkpoints: self.keep_checkpoints,
                state: Mutex::new(HashMap::new()),
                changed: Condvar::new(),
                counters: Counters::default(),
                guards: Mutex::new(HashMap::new()),
                _lock: lock,
            }),
        })
    }
}
