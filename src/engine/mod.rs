//! [`Engine`]: the state every `Store` handle and the committer share (the cold tier, the
//! store's time, its ID spaces: the store's own and its namespaces', each with its in-memory
//! tier; its producers' high-water marks) and the claim protocol that makes check-and-mark (and
//! accepting a sequence, in [`producers`]) exact.
//!
//! A mark is *claimed* under its stripe lock: looked up and inserted as a pending entry, so that
//! concurrent callers see it in flight. If the stripe's miss is not authoritative, the disk is
//! then asked without the lock; a live mark found there turns the claim into a recalled entry
//! (answered from memory from then on) and the caller gets `Duplicate`. Once the write that
//! carries a new mark returns, the claim is *settled*: durable, or removed if the write failed.

use crate::clock::{StoreTime, from_unix_millis, unix_millis};
use crate::error::{Error, Result};
use crate::id::Fingerprint;
use crate::outcome::{Outcome, SequenceOutcome};
use crate::persist::{Cold, MarkValue, Staged, StagedMark};
use crate::settings::Settings;
use crate::wheel::{Hot, Stripe};
use bytes::Bytes;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

pub(crate) struct Engine {
    pub cold: Cold,
    time: StoreTime,
    /// The store's own ID space.
    pub store_space: Arc<Space>,
    /// The namespaces, by name.
    pub namespaces: Namespaces,
    /// Producers' sequence high-water marks.
    producers: Producers,
    /// How many stripes the store's own in-memory tier has: the most a namespace's has.
    stripes: usize,
    /// The store's memory budget (its own space and RocksDB), for `Stats`.
    memory_budget: AtomicU64,
    /// The next claim's token.
    next_token: AtomicU64,
}

/// What a write claimed: pending marks and producers' pending accepts, settled once the write
/// returns.
#[derive(Debug, Default)]
pub(crate) struct Claimed {
    pub marks: Vec<PendingMark>,
    pub sequences: Vec<PendingSequence>,
}

/// Claims taken and not yet handed to a write. Dropped with claims in it (an error, a
/// conflict, a panic between claim and write), it settles them as failed, so no mark or
/// producer stays in flight and nothing stays pending in front of its stripe's expiry.
pub(crate) struct Unsettled<'e> {
    engine: &'e Engine,
    claims: Claimed,
}

impl<'e> Unsettled<'e> {
    pub(crate) fn new(engine: &'e Engine, capacity: usize) -> Self {
        Self {
            engine,
            claims: Claimed {
                marks: Vec::with_capacity(capacity),
                sequences: Vec::new(),
            },
        }
    }

    /// [`Engine::claim`] into this set.
    pub(crate) fn claim(
        &mut self,
        space: &Arc<Space>,
        fp: Fingerprint,
        payload: Option<u128>,
    ) -> Result<Outcome> {
        self.engine
            .claim(space, fp, payload, &mut self.claims.marks)
    }

    /// [`Engine::claim_batch`] into this set.
    pub(crate) fn claim_batch(
        &mut self,
        space: &Arc<Space>,
        fps: &[Fingerprint],
    ) -> Result<Vec<Outcome>> {
        self.engine.claim_batch(space, fps, &mut self.claims.marks)
    }

    /// [`Engine::accept`] into this set.
    pub(crate) fn accept(
        &mut self,
        producer: &Bytes,
        seqs: &[u64],
    ) -> Result<(), (u64, SequenceOutcome)> {
        self.engine
            .accept(producer, seqs, &mut self.claims.sequences)
    }

    /// [`Engine::complete`] into this set.
    pub(crate) fn complete(
        &mut self,
        space: &Arc<Space>,
        fp: Fingerprint,
        token: u64,
        payload: Option<u128>,
    ) -> Result<Outcome> {
        self.engine
            .complete(space, fp, token, payload, &mut self.claims.marks)
    }

    /// What is claimed so far: marks and accepts, each in the order they were claimed.
    pub(crate) fn claimed(&self) -> &Claimed {
        &self.claims
    }

    /// The claims, for a write that will settle them.
    pub(crate) fn into_claims(mut self) -> Claimed {
        std::mem::take(&mut self.claims)
    }
}

/// The last handle is gone, and the committer with it: nothing writes after this, so the
/// newest generations' filters are saved as they are, for the next open.
impl Drop for Engine {
    fn drop(&mut self) {
        let namespaces = self.namespaces.all();
        let spaces = std::iter::once(&self.store_space).chain(&namespaces);
        if let Err(e) = self
            .cold
            .save_filters_at_close(spaces.map(|s| &*s.generations))
        {
            tracing::warn!("saving the generations' filters at close failed: {e}");
        }
    }
}

impl Drop for Unsettled<'_> {
    fn drop(&mut self) {
        self.engine.settle(&self.claims, false);
    }
}

/// A pending mark, claimed in the hot tier of its space, to write and settle.
#[derive(Clone, Debug)]
pub(crate) struct PendingMark {
    pub space: Arc<Space>,
    pub fp: Fingerprint,
    seq: u64,
    /// The mark time.
    pub at: u64,
}

impl Engine {
    pub(crate) fn open(settings: &Settings) -> Result<Self> {
        // Both clocks are read together, so the time spent opening counts.
        let origin = settings.clock.elapsed();
        let wall = settings.clock.now();
        let wall_ms = unix_millis(wall);
        let opened = Cold::open(settings, wall_ms)?;
        // Keep the wall reading's sub-millisecond part when it is the base, so store time
        // truncates to milliseconds as the wall clock would.
        let base = if opened.now == wall_ms {
            wall.duration_since(UNIX_EPOCH).unwrap_or_default()
        } else {
            Duration::from_millis(opened.now)
        };
        let time = StoreTime::new(Arc::clone(&settings.clock), base, origin);
        let store_space = Space::new(
            None,
            &settings.namespace,
            opened.store_space,
            settings.slots,
            settings.stripes,
            settings.capacity,
            settings.hot_budget,
        )?;
        let producers = opened
            .cold
            .load_producers(opened.now, settings.producer_idle_ms)?;
        let namespaces = opened
            .namespaces
            .into_iter()
            .map(|n| namespace_space(settings.stripes, n))
            .collect::<Result<_>>()?;
        Ok(Self {
            cold: opened.cold,
            time,
            store_space: Arc::new(store_space),
            namespaces: Namespaces::new(namespaces),
            producers: Producers::new(settings.stripes, settings.producer_idle_ms, producers),
            stripes: settings.stripes,
            memory_budget: AtomicU64::new(settings.memory_budget as u64),
            next_token: AtomicU64::new(1),
        })
    }

    /// The store's memory budget: its own in-memory tier's and RocksDB's (namespaces' left out).
    pub(crate) fn memory_budget(&self) -> u64 {
        self.memory_budget.load(Ordering::Relaxed)
    }

    /// Gives the store's own in-memory tier `hot` bytes (evicting at once if that is less than
    /// it holds) and sizes its memtables for `rocksdb` bytes: the stores of a `Partitions` share
    /// one budget, split again as partitions come and go. `shared` is the RocksDB memory they
    /// share (the block cache, which each store's `Stats` reports whole).
    ///
    /// # Errors
    /// A storage error if RocksDB refuses the memtables' new size.
    pub(crate) fn set_budget_share(&self, hot: usize, rocksdb: usize, shared: usize) -> Result<()> {
        let space = &self.store_space;
        space.hot.set_budget(hot, space.stamps, self.now_millis());
        self.memory_budget
            .store((hot + shared) as u64, Ordering::Relaxed);
        self.cold.resize_memtables(rocksdb)
    }

    /// The store's time, in milliseconds since the Unix epoch.
    pub(crate) fn now_millis(&self) -> u64 {
        self.time.now_millis()
    }

    /// Decides `fp` under its stripe's lock; if it is new, claims it and records the claim in
    /// `claims`. A fingerprint already claimed in `claims` is answered `Duplicate`: the claim
    /// will be durable by the time the caller's write returns. `payload` is the fingerprint of
    /// the message's payload, if the caller gave one: a mark or claim in progress made with
    /// another payload is answered `Conflict`.
    pub(crate) fn claim(
        &self,
        space: &Arc<Space>,
        fp: Fingerprint,
        payload: Option<u128>,
        claims: &mut Vec<PendingMark>,
    ) -> Result<Outcome> {
        self.decide(space, fp, payload, Some(claims))
    }

    /// What [`claim`](Self::claim) would answer for `fp`, without claiming it.
    pub(crate) fn check(&self, space: &Arc<Space>, fp: Fingerprint) -> Result<Outcome> {
        self.decide(space, fp, None, None)
    }

    fn decide(
        &self,
        space: &Arc<Space>,
        fp: Fingerprint,
        payload: Option<u128>,
        mut claims: Option<&mut Vec<PendingMark>>,
    ) -> Result<Outcome> {
        let mut stripe = space.hot.stripe(fp).lock();
        // Read under the lock, so times within a stripe never decrease.
        let now = self.now_millis();
        let decided = decide_locked(space, &mut stripe, fp, payload, now, claims.as_deref_mut())?;
        drop(stripe);
        match (decided, claims) {
            (Decided::Answer(outcome), _) => Ok(outcome),
            (Decided::Durable(first_seen), _) => {
                self.duplicate_of(space, fp, first_seen, payload, now)
            }
            (Decided::ClaimedMiss(seq), Some(claims)) => {
                self.probe_claimed(space, fp, seq, payload, now, claims)
            }
            (Decided::ClaimedMiss(_), None) => unreachable!("a miss is claimed only into claims"),
            (Decided::Miss, _) => self.probe_unclaimed(space, fp, payload, now),
        }
    }

    /// The answer for `fp`, found durable in memory (marked at `first_seen`): `Duplicate`, or
    /// `Conflict` if its stored mark was made with a payload other than `payload` (which costs
    /// one read, only when a payload is given).
    fn duplicate_of(
        &self,
        space: &Space,
        fp: Fingerprint,
        first_seen: u64,
        payload: Option<u128>,
        now: u64,
    ) -> Result<Outcome> {
        if payload.is_none() {
            return Ok(duplicate(first_seen));
        }
        Ok(match self.cold.find_live(&space.generations, fp, now)? {
            Some(mark) => answer(&mark, payload),
            None => duplicate(first_seen),
        })
    }

    /// Reads the disk for `fp`, just claimed as entry `seq` (the last of `claims`) after its
    /// stripe missed at `now` without authority. The lock is not held: the claim makes other
    /// callers of `fp` answer `InFlight` meanwhile, so a slow read stalls this ID, not the rest
    /// of its stripe. A live mark found turns the claim into a recalled entry; a failed read
    /// gives it up (and a panicking one unwinds through the caller's [`Unsettled`], which does).
    fn probe_claimed(
        &self,
        space: &Space,
        fp: Fingerprint,
        seq: u64,
        payload: Option<u128>,
        now: u64,
        claims: &mut Vec<PendingMark>,
    ) -> Result<Outcome> {
        let Some(found) = self.cold.find_live(&space.generations, fp, now).transpose() else {
            return Ok(Outcome::New);
        };
        let probe = claims.pop();
        debug_assert!(probe.is_some_and(|c| c.is(space, fp, seq)));
        let mut stripe = space.hot.stripe(fp).lock();
        let outcome = match found {
            Ok(mark) => {
                stripe.recall(seq, mark.at, space.stamps);
                Ok(answer(&mark, payload))
            }
            Err(e) => {
                stripe.settle(seq, false);
                Err(e)
            }
        };
        drop(stripe);
        space.hot.settled(fp).notify(usize::MAX);
        outcome
    }

    /// Reads the disk for `fp` (missed by its stripe at `now`, which is not authoritative)
    /// without claiming it, and keeps a live mark it finds in the stripe.
    fn probe_unclaimed(
        &self,
        space: &Space,
        fp: Fingerprint,
        payload: Option<u128>,
        now: u64,
    ) -> Result<Outcome> {
        let Some(mark) = self.cold.find_live(&space.generations, fp, now)? else {
            return Ok(Outcome::New);
        };
        self.remember(space, fp, mark.at);
        Ok(answer(&mark, payload))
    }

    /// Keeps a live mark of `fp` made at `first_seen`, just read from disk, in its stripe,
    /// unless the stripe has it already (claimed or recalled meanwhile).
    fn remember(&self, space: &Space, fp: Fingerprint, first_seen: u64) {
        self.remember_in(space, &mut space.hot.stripe(fp).lock(), fp, first_seen);
    }

    /// [`remember`](Self::remember), in `fp`'s stripe, locked by the caller.
    fn remember_in(&self, space: &Space, stripe: &mut Stripe, fp: Fingerprint, first_seen: u64) {
        let later = self.now_millis();
        if space.window.is_live(first_seen, later)
            && stripe.lookup(fp, space.window, space.stamps, later) == Hot::Absent
            && let Some(seq) = stripe.insert_pending(fp, space.window, space.stamps, later)
        {
            stripe.recall(seq, first_seen, space.stamps);
        }
    }

    /// Writes a group of transactions in one batch and settles every claim of the group
    /// (`claims`, one per transaction): the one way a write of claims ends.
    ///
    /// A panic inside the write is caught here: its claims are settled as failed and the store
    /// is poisoned (the write's fate is unknown, as after a failed fsync), and the panic becomes
    /// the error every transaction of the group gets. No mark stays in flight behind it.
    pub(crate) fn write_and_settle(
        &self,
        group: &[&Staged],
        claims: &[&Claimed],
    ) -> Result<Vec<Range<u64>>> {
        let written = panic::catch_unwind(AssertUnwindSafe(|| self.cold.write_staged(group)))
            .unwrap_or_else(|panic| Err(self.cold.poison_after_panic(panic.as_ref())));
        for c in claims {
            self.settle(c, written.is_ok());
        }
        written
    }

    /// Settles claims once their write returned: durable if `written`, forgotten otherwise.
    pub(crate) fn settle(&self, claims: &Claimed, written: bool) {
        settle_marks(&claims.marks, written);
        self.settle_sequences(&claims.sequences, written);
    }

    /// Producers in memory, for `Stats`.
    pub(crate) fn producers(&self) -> usize {
        self.producers.len()
    }

    /// Writes the marks of `claims` in one batch, directly (not through the committer), each
    /// with the value `value` gives it.
    pub(crate) fn write_claims(
        &self,
        mut claims: Unsettled<'_>,
        value: impl Fn(&PendingMark) -> MarkValue,
    ) -> Result<()> {
        debug_assert!(claims.claims.sequences.is_empty());
        if claims.claims.marks.is_empty() {
            return Ok(());
        }
        let marks = claims.claims.marks.iter().map(|c| c.staged(value(c)));
        let staged = Staged::marks(marks.collect());
        let written = self.write_and_settle(&[&staged], &[&claims.claims]);
        claims.claims.marks.clear(); // settled
        self.cold.maintain();
        written.map(drop)
    }
}

impl PendingMark {
    /// Whether this is entry `seq` of `fp` in `space`.
    fn is(&self, space: &Space, fp: Fingerprint, seq: u64) -> bool {
        self.seq == seq && self.fp == fp && std::ptr::eq(Arc::as_ptr(&self.space), space)
    }

    /// The mark to write, with stored value `value`.
    pub(crate) fn staged(&self, value: MarkValue) -> StagedMark {
        StagedMark {
            space: Arc::clone(&self.space.generations),
            fp: self.fp,
            value,
        }
    }
}

/// What deciding an ID under its stripe's lock leaves to do once the lock is dropped.
enum Decided {
    Answer(Outcome),
    /// Durable in memory, marked at this time: `Duplicate`, unless a payload was given that
    /// the stored mark may contradict.
    Durable(u64),
    /// Missed without authority and claimed as entry `seq`: the disk decides.
    ClaimedMiss(u64),
    /// Missed without authority, not claimed: the disk decides.
    Miss,
}

/// The part of [`Engine::claim`] (or, without `claims`, [`Engine::check`]) done under `fp`'s
/// locked `stripe` at `now`: a lease or an entry in memory answers; a miss is claimed into
/// `claims`, and left to the disk unless the stripe is authoritative.
fn decide_locked(
    space: &Arc<Space>,
    stripe: &mut Stripe,
    fp: Fingerprint,
    payload: Option<u128>,
    now: u64,
    claims: Option<&mut Vec<PendingMark>>,
) -> Result<Decided> {
    if let Some(lease) = stripe.leases.live(fp, now) {
        return Ok(Decided::Answer(if differs(payload, lease.payload) {
            conflict(lease.since)
        } else {
            Outcome::InFlight
        }));
    }
    match stripe.lookup(fp, space.window, space.stamps, now) {
        Hot::Durable { first_seen } => return Ok(Decided::Durable(first_seen)),
        Hot::Pending { seq, first_seen } => {
            let ours = claims
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.is(space, fp, seq)));
            return Ok(Decided::Answer(if ours {
                duplicate(first_seen)
            } else {
                Outcome::InFlight
            }));
        }
        Hot::Absent => {}
    }
    let authoritative = stripe.authoritative(space.window, now);
    if !authoritative {
        stripe.counters.cold_lookups += 1;
    }
    let Some(claims) = claims else {
        return Ok(if authoritative {
            Decided::Answer(Outcome::New)
        } else {
            Decided::Miss
        });
    };
    // A claim whose lease has run out is taken over: its holder can no longer complete it.
    stripe.leases.remove_dead(fp, now);
    let seq = pend(space, stripe, fp, now)?;
    claims.push(PendingMark {
        space: Arc::clone(space),
        fp,
        seq,
        at: now,
    });
    Ok(if authoritative {
        Decided::Answer(Outcome::New)
    } else {
        Decided::ClaimedMiss(seq)
    })
}

/// Settles claimed marks once their write returned: durable if `written`, forgotten otherwise.
fn settle_marks(claims: &[PendingMark], written: bool) {
    for c in claims {
        c.space.hot.stripe(c.fp).lock().settle(c.seq, written);
        c.space.hot.settled(c.fp).notify(usize::MAX);
    }
}

/// Inserts a pending entry for `fp` at `now` into its locked `stripe` of `space`, where the
/// caller found it absent; returns the entry's sequence number.
fn pend(space: &Space, stripe: &mut Stripe, fp: Fingerprint, now: u64) -> Result<u64> {
    stripe
        .insert_pending(fp, space.window, space.stamps, now)
        .ok_or_else(|| Error::Storage {
            context: "claiming a mark".into(),
            detail: "its stripe of the in-memory tier is full behind a write that has not \
                     returned"
                .into(),
        })
}

fn duplicate(first_seen: u64) -> Outcome {
    Outcome::Duplicate {
        first_seen: from_unix_millis(first_seen),
    }
}

fn conflict(first_seen: u64) -> Outcome {
    Outcome::Conflict {
        first_seen: from_unix_millis(first_seen),
    }
}

/// Whether a caller's payload and a stored one are known to differ.
fn differs(ours: Option<u128>, theirs: Option<u128>) -> bool {
    matches!((ours, theirs), (Some(a), Some(b)) if a != b)
}

/// What a caller with `payload` is told of a live stored `mark`.
fn answer(mark: &MarkValue, payload: Option<u128>) -> Outcome {
    if differs(payload, mark.payload) {
        conflict(mark.at)
    } else {
        duplicate(mark.at)
    }
}

mod batch;
mod claims;
mod namespaces;
mod producers;
mod space;
#[cfg(test)]
mod tests;

pub(crate) use claims::{Acquired, Flight};
use namespaces::namespace_space;
pub(crate) use namespaces::{Namespaces, Wanted};
pub(crate) use producers::PendingSequence;
use producers::Producers;
pub(crate) use space::Space;
