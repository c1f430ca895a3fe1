//! [`Space`]: one ID space, the store's own or a namespace's: its window, its in-memory tier and
//! its generations on disk. The same ID in two spaces is two unrelated IDs.

use crate::error::{Error, Result};
use crate::id::{Fingerprint, namespace_seed};
use crate::persist::Generations;
use crate::settings::MIN_BUDGET_PER_STRIPE;
use crate::wheel::{HotTier, Stamps};
use crate::window::Window;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub(crate) struct Space {
    /// The namespace's name; `None` for the store's own space.
    pub name: Option<String>,
    pub hot: HotTier,
    pub window: Window,
    /// The slots the window is divided into, as set.
    pub slots: u32,
    pub stamps: Stamps,
    seed: u64,
    pub generations: Arc<Generations>,
    /// The in-memory tier's budget, in bytes.
    pub memory_budget: u64,
    /// Set once the namespace is dropped: every later call through a handle of it fails.
    dropped: AtomicBool,
}

impl Space {
    /// A space over `generations`, whose window has `slots` slots and whose in-memory tier has
    /// `stripes` stripes sharing `budget` bytes, presized for `capacity` IDs; IDs are
    /// fingerprinted with the seed of `seed_name`.
    pub(crate) fn new(
        name: Option<String>,
        seed_name: &[u8],
        generations: Arc<Generations>,
        slots: u32,
        stripes: usize,
        capacity: u64,
        budget: usize,
    ) -> Result<Self> {
        let window = generations.window;
        let hot = HotTier::new(stripes, capacity, budget, generations.complete_from())?;
        Ok(Self {
            name,
            hot,
            window,
            slots,
            stamps: Stamps::new(window),
            seed: namespace_seed(seed_name),
            generations,
            memory_budget: budget as u64,
            dropped: AtomicBool::new(false),
        })
    }

    /// The number of the space (0 for the store's own), which orders spaces.
    pub(crate) fn number(&self) -> u32 {
        self.generations.space
    }

    /// Validates `id` and fingerprints it in this space; `position` names it within a batch.
    ///
    /// # Errors
    /// [`Error::InvalidId`], or [`Error::NamespaceDropped`].
    pub(crate) fn fingerprint(&self, id: &[u8], position: Option<usize>) -> Result<Fingerprint> {
        if self.dropped.load(Ordering::Acquire) {
            return Err(Error::NamespaceDropped {
                name: self.name.clone().unwrap_or_default(),
            });
        }
        Fingerprint::of(self.seed, id, position)
    }

    pub(crate) fn set_dropped(&self) {
        self.dropped.store(true, Ordering::Release);
    }
}

/// The stripes of a namespace's in-memory tier: as many as the store's, or fewer, so that each
/// has at least [`MIN_BUDGET_PER_STRIPE`] of `budget`.
pub(crate) fn namespace_stripes(store_stripes: usize, budget: usize) -> usize {
    let fit = (budget / MIN_BUDGET_PER_STRIPE).max(1);
    let fit = 1 << fit.ilog2();
    store_stripes.min(fit)
}

impl std::fmt::Debug for Space {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Space")
            .field("name", &self.name)
            .field("number", &self.number())
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}
