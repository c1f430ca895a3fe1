//! The hot tier: a lock-striped in-memory time-wheel of recent marks.
//!
//! A fingerprint's low bits choose its stripe, each behind its own `parking_lot::Mutex` on its
//! own cache line; there is no global lock. See [`stripe`] for what one stripe holds.

#![allow(
    clippy::cast_possible_truncation,
    reason = "sequence numbers and hashes are cut to their low bits on purpose"
)]

mod fifo;
mod index;
mod lease;
mod stripe;

pub(crate) use lease::Lease;
pub(crate) use stripe::{Hot, Stamps, Stripe};

use crate::error::{Error, Result};
use crate::id::Fingerprint;
use crossbeam_utils::CachePadded;
use event_listener::Event;
use parking_lot::Mutex;

/// Bytes an ID costs in the hot tier when its tables are full: 20 for the entry, about 6 for
/// its index bucket. Used only to size tables from a count.
const BYTES_PER_ID: usize = 26;
/// The most IDs a stripe's index is presized for at open (1.5 MiB of buckets); beyond, it grows
/// with its content. Keeps a large `capacity` hint from taking its whole memory at open.
const MAX_PRESIZE: usize = 1 << 18;

pub(crate) struct HotTier {
    stripes: Box<[CachePadded<Mutex<Stripe>>]>,
    /// One per stripe: notified whenever one of its marks settles or a claim ends, for callers
    /// waiting for an ID in flight.
    settled: Box<[Event]>,
    mask: u64,
}

/// Totals over all stripes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HotTotals {
    pub ids: u64,
    pub bytes: u64,
    pub cold_lookups: u64,
    pub evictions: u64,
    pub leases: u64,
}

impl HotTotals {
    /// The totals of two tiers together.
    pub(crate) fn add(self, other: Self) -> Self {
        Self {
            ids: self.ids + other.ids,
            bytes: self.bytes + other.bytes,
            cold_lookups: self.cold_lookups + other.cold_lookups,
            evictions: self.evictions + other.evictions,
            leases: self.leases + other.leases,
        }
    }
}

impl HotTier {
    /// `stripes` stripes (a power of two) sharing `budget` bytes, presized for `capacity` IDs,
    /// each holding every mark made at or after `complete_from`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the presized tables cannot be allocated.
    pub(crate) fn new(
        stripes: usize,
        capacity: u64,
        budget: usize,
        complete_from: u64,
    ) -> Result<Self> {
        debug_assert!(stripes.is_power_of_two());
        let budget_per_stripe = budget / stripes;
        let expected = usize::try_from(capacity.div_ceil(stripes as u64))
            .unwrap_or(usize::MAX)
            .min(budget_per_stripe / BYTES_PER_ID)
            .min(MAX_PRESIZE);
        let too_large = || Error::InvalidConfig {
            what: "capacity",
            detail: format!(
                "the in-memory tables for {capacity} IDs ({expected} per stripe) cannot be allocated; lower `capacity` or `memory_budget`"
            ),
        };
        let stripes: Vec<_> = (0..stripes)
            .map(|_| {
                Stripe::try_new(expected, budget_per_stripe, complete_from)
                    .map(|s| CachePadded::new(Mutex::new(s)))
                    .ok_or_else(too_large)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            mask: stripes.len() as u64 - 1,
            settled: stripes.iter().map(|_| Event::new()).collect(),
            stripes: stripes.into_boxed_slice(),
        })
    }

    pub(crate) fn stripe(&self, fp: Fingerprint) -> &Mutex<Stripe> {
        &self.stripes[self.position(fp)]
    }

    /// The event of `fp`'s stripe: notify it after settling a mark or ending a claim there;
    /// listen to it before looking, then wait, to learn of the next change.
    pub(crate) fn settled(&self, fp: Fingerprint) -> &Event {
        &self.settled[self.position(fp)]
    }

    /// How many stripes there are.
    pub(crate) fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// Stripe number `position` (below [`stripes`](Self::stripes)).
    pub(crate) fn stripe_at(&self, position: usize) -> &Mutex<Stripe> {
        &self.stripes[position]
    }

    /// The number of `fp`'s stripe.
    pub(crate) fn position(&self, fp: Fingerprint) -> usize {
        // The mask keeps the index below `stripes.len()`, which fits in usize.
        (fp.stripe_hash() & self.mask) as usize
    }

    /// Shares `budget` bytes among the stripes again, evicting at once from each that holds more
    /// than its new share (`stamps` and `now` date what is evicted).
    pub(crate) fn set_budget(&self, budget: usize, stamps: Stamps, now: u64) {
        let per_stripe = budget / self.stripes.len();
        for stripe in &self.stripes {
            stripe.lock().set_budget(per_stripe, stamps, now);
        }
    }

    pub(crate) fn totals(&self) -> HotTotals {
        let mut t = HotTotals::default();
        for stripe in &self.stripes {
            let s = stripe.lock();
            t.ids += s.len() as u64;
            t.bytes += s.bytes() as u64;
            t.cold_lookups += s.counters.cold_lookups;
            t.evictions += s.counters.evictions;
            t.leases += s.leases.len() as u64;
        }
        t
    }
}
