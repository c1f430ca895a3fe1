//! [`Store`]: open, check-and-mark, contains, and their batch forms.

use crate::clock::{StoreTime, from_unix_millis};
use crate::config::{Settings, StoreBuilder};
use crate::error::Result;
use crate::id::{Fingerprint, namespace_seed};
use crate::persist::Cold;
use crate::stats::Stats;
use crate::wheel::{Hot, HotTier, Stamps, Stripe};
use crate::window::Window;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

/// What [`Store::check_and_mark`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not seen within the window: the ID is now marked. Process the message.
    New,
    /// Marked within the window, durably. Drop the message (and ack it).
    Duplicate {
        /// When the ID was marked (to the millisecond for windows up to about six days, within
        /// `W / 2²⁹` beyond).
        first_seen: SystemTime,
    },
    /// Another caller marked the ID and its write has not completed. Do not process the message,
    /// and do not ack it: if that write fails, the broker's redelivery must still be processed.
    InFlight,
}

/// A windowed store of message IDs: a lock-striped in-memory time-wheel in front of RocksDB.
///
/// Cheap to clone; clones share one store, and every method takes `&self` from any thread. The
/// directory stays locked until the last clone is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    hot: HotTier,
    cold: Cold,
    time: StoreTime,
    window: Window,
    stamps: Stamps,
    namespace_seed: u64,
}

/// A pending claim made by a check-and-mark, to settle once its write returns.
struct Claim {
    fp: Fingerprint,
    seq: u64,
    at: u64,
}

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

    pub(crate) fn open_with(settings: &Settings) -> Result<Self> {
        let time = StoreTime::new(Arc::clone(&settings.clock));
        let opened = Cold::open(settings, time.now_millis())?;
        let window = Window::new(settings.window_ms, settings.slots);
        Ok(Self {
            inner: Arc::new(Inner {
                hot: HotTier::new(
                    settings.stripes,
                    settings.capacity,
                    settings.memory_budget,
                    opened.complete_from,
                ),
                cold: opened.cold,
                time,
                window,
                stamps: Stamps::new(window),
                namespace_seed: namespace_seed(&settings.namespace),
            }),
        })
    }

    /// Marks `id` as seen unless it already was within the window: an atomic test-and-set.
    ///
    /// Among concurrent callers with one ID exactly one gets [`Outcome::New`]; the others get
    /// [`Outcome::Duplicate`], or [`Outcome::InFlight`] while the winner's write is not yet
    /// durable. A `New` mark is in the write-ahead log (and, with
    /// [`Durability::Synced`](crate::Durability::Synced), on stable storage) when this returns.
    ///
    /// ```
    /// use dedupstore::{Outcome, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.check_and_mark("order-42")?, Outcome::New);
    /// assert!(matches!(store.check_and_mark("order-42")?, Outcome::Duplicate { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId) for an empty or over-long ID (nothing is
    /// written); an I/O or storage error if the mark could not be written (the ID stays
    /// unmarked).
    pub fn check_and_mark(&self, id: impl AsRef<[u8]>) -> Result<Outcome> {
        let fp = self.fingerprint(id.as_ref(), None)?;
        let mut claims = Vec::new();
        let outcome = self.claim(fp, &mut claims)?;
        self.commit_claims(&claims)?;
        Ok(outcome)
    }

    /// [`check_and_mark`](Self::check_and_mark) for a batch, with one write for all new marks.
    ///
    /// Outcomes come in the order of `ids`. An ID repeated inside the batch is `New` the first
    /// time and `Duplicate` after.
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId) naming the first bad ID's position, before
    /// anything is marked; an I/O or storage error if the batch could not be written (none of
    /// its IDs is marked).
    pub fn check_and_mark_batch<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<Outcome>> {
        let fps = self.fingerprints(ids)?;
        let mut claims = Vec::new();
        let mut outcomes = Vec::with_capacity(fps.len());
        for &fp in &fps {
            match self.claim(fp, &mut claims) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    self.settle(&claims, false);
                    return Err(e);
                }
            }
        }
        self.commit_claims(&claims)?;
        Ok(outcomes)
    }

    /// Whether `id` is marked within the window (a mark still in flight counts). Marks nothing.
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId), or an error reading the disk.
    pub fn contains(&self, id: impl AsRef<[u8]>) -> Result<bool> {
        let fp = self.fingerprint(id.as_ref(), None)?;
        self.is_marked(fp)
    }

    /// [`contains`](Self::contains) for a batch; answers come in the order of `ids`.
    ///
    /// # Errors
    /// As [`contains`](Self::contains); a bad ID is reported by position.
    pub fn contains_batch<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<bool>> {
        self.fingerprints(ids)?
            .into_iter()
            .map(|fp| self.is_marked(fp))
            .collect()
    }

    /// Counters and sizes, for monitoring.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let hot = self.inner.hot.totals();
        Stats {
            hot_ids: hot.ids,
            hot_bytes: hot.bytes,
            hot_evictions: hot.evictions,
            cold_lookups: hot.cold_lookups,
            generations: self.inner.cold.generation_count(),
        }
    }

    /// Writes every memtable to table files and syncs the write-ahead log: after this, every
    /// mark so far survives power loss, whatever the durability setting.
    ///
    /// # Errors
    /// An I/O or storage error.
    pub fn flush(&self) -> Result<()> {
        self.inner.cold.flush()
    }

    /// Syncs the write-ahead log and drops this handle. The directory is unlocked once every
    /// clone is dropped. Dropping a store without `close` loses nothing a process crash would
    /// not: acknowledged writes are already in the log.
    ///
    /// # Errors
    /// An I/O error syncing the log.
    pub fn close(self) -> Result<()> {
        self.inner.cold.sync_wal()
    }

    fn fingerprint(&self, id: &[u8], position: Option<usize>) -> Result<Fingerprint> {
        Fingerprint::of(self.inner.namespace_seed, id, position)
    }

    /// Fingerprints every ID, failing on the first bad one before anything happens.
    fn fingerprints<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<Fingerprint>> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| self.fingerprint(id.as_ref(), Some(i)))
            .collect()
    }

    /// Decides `fp` under its stripe's lock; if it is new, claims it with a pending entry and
    /// records the claim in `claims`.
    fn claim(&self, fp: Fingerprint, claims: &mut Vec<Claim>) -> Result<Outcome> {
        let inner = &*self.inner;
        let mut stripe = inner.hot.stripe(fp).lock();
        // Read under the lock, so times within a stripe never decrease.
        let now = inner.time.now_millis();
        match stripe.lookup(fp, inner.window, inner.stamps, now) {
            Hot::Durable { first_seen } => return Ok(duplicate(first_seen)),
            Hot::Pending { seq, first_seen } => {
                let ours = claims.iter().any(|c| c.seq == seq && c.fp == fp);
                // Our own claim is durable by the time the batch returns.
                return Ok(if ours {
                    duplicate(first_seen)
                } else {
                    Outcome::InFlight
                });
            }
            Hot::Absent => {}
        }
        if let Some(first_seen) = self.cold_lookup(&mut stripe, fp, now)? {
            return Ok(duplicate(first_seen));
        }
        let seq = stripe.insert_pending(fp, inner.window, inner.stamps, now);
        claims.push(Claim { fp, seq, at: now });
        Ok(Outcome::New)
    }

    /// Writes the claims' marks in one batch and settles them.
    fn commit_claims(&self, claims: &[Claim]) -> Result<()> {
        if claims.is_empty() {
            return Ok(());
        }
        let marks: Vec<(Fingerprint, u64)> = claims.iter().map(|c| (c.fp, c.at)).collect();
        let written = self.inner.cold.write_marks(&marks);
        self.settle(claims, written.is_ok());
        written
    }

    fn settle(&self, claims: &[Claim], durable: bool) {
        for c in claims {
            self.inner.hot.stripe(c.fp).lock().settle(c.seq, durable);
        }
    }

    fn is_marked(&self, fp: Fingerprint) -> Result<bool> {
        let inner = &*self.inner;
        let mut stripe = inner.hot.stripe(fp).lock();
        let now = inner.time.now_millis();
        match stripe.lookup(fp, inner.window, inner.stamps, now) {
            Hot::Absent => Ok(self.cold_lookup(&mut stripe, fp, now)?.is_some()),
            Hot::Pending { .. } | Hot::Durable { .. } => Ok(true),
        }
    }

    /// Asks the disk about a fingerprint the stripe does not hold, unless the stripe's miss is
    /// authoritative. Runs under the stripe lock, so no other caller can claim `fp` meanwhile.
    fn cold_lookup(&self, stripe: &mut Stripe, fp: Fingerprint, now: u64) -> Result<Option<u64>> {
        if stripe.authoritative(self.inner.window, now) {
            return Ok(None);
        }
        stripe.counters.cold_lookups += 1;
        self.inner.cold.find_live(fp, now)
    }
}

fn duplicate(first_seen: u64) -> Outcome {
    Outcome::Duplicate {
        first_seen: from_unix_millis(first_seen),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("window", &self.inner.window)
            .finish_non_exhaustive()
    }
}
