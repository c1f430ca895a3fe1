//! One stripe of the hot tier: the marks of the fingerprints that hash to it, in time order.
//!
//! Entries sit in a [`Fifo`] in the order they were marked (time never decreases under the stripe
//! lock). `slots` records where each time slot's entries start, so a slot expires by popping a
//! prefix of the queue: no scan. The [`Index`] maps fingerprints to entries in O(1).
//!
//! Invariants (checked by `check_invariants` in tests):
//! - the index holds exactly the entries whose state is not [`State::Removed`];
//! - the times of durable and pending entries never decrease from head to tail, and each lies in
//!   the slot recorded for it; a recalled entry (a mark read back from disk) keeps its older time
//!   in the slot of the lookup that read it;
//! - the stripe holds every mark made at or after `complete_from` that has not expired, so a
//!   miss is authoritative once `complete_from` is older than the window.

use super::fifo::{CHUNK, Fifo};
use super::index::{Index, SEQ_BITS, SEQ_MASK};
use super::lease::Leases;
use crate::id::Fingerprint;
use crate::window::Window;
use std::collections::VecDeque;

/// A stripe never holds this many entries: sequence bits in the index must stay unambiguous.
const MAX_ENTRIES: u64 = (1 << SEQ_BITS) - 1;

/// One remembered mark: 20 bytes.
#[derive(Clone, Copy, Default, Debug)]
#[repr(C)]
pub(crate) struct Entry {
    fp: [u32; 4],
    /// The time in [`Stamps`] units (low 30 bits) and the [`State`] (high 2 bits).
    stamp: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum State {
    /// On disk through the write-ahead log.
    Durable,
    /// Claimed by a writer whose write has not returned yet.
    Pending,
    /// Taken out of the index (a failed write, or a dead mark); waits for its slot to expire.
    Removed,
    /// A durable mark read back from disk, kept so a redelivery storm reads it once. Its time is
    /// the mark's, older than the slot it sits in.
    Recalled,
}

const STATE_SHIFT: u32 = 30;
const TIME_MASK: u32 = (1 << STATE_SHIFT) - 1;

impl Entry {
    fn new(fp: Fingerprint, time: u32, state: State) -> Self {
        let mut e = Self {
            fp: fp.words(),
            stamp: time & TIME_MASK,
        };
        e.set_state(state);
        e
    }

    fn fingerprint(self) -> Fingerprint {
        Fingerprint::from_words(self.fp)
    }

    fn time(self) -> u32 {
        self.stamp & TIME_MASK
    }

    fn state(self) -> State {
        match self.stamp >> STATE_SHIFT {
            0 => State::Durable,
            1 => State::Pending,
            2 => State::Removed,
            _ => State::Recalled,
        }
    }

    fn set_state(&mut self, state: State) {
        let bits = match state {
            State::Durable => 0,
            State::Pending => 1,
            State::Removed => 2,
            State::Recalled => 3,
        };
        self.stamp = (self.stamp & TIME_MASK) | (bits << STATE_SHIFT);
    }
}

/// How entry times are packed into 30 bits: rounded up to `unit_ms` and read back as an age
/// relative to now. An entry is never older than `W + S` while it is in the stripe, and the unit
/// is chosen so that such ages fit, so the round trip is exact up to the unit (1 ms for windows
/// up to about six days).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Stamps {
    unit_ms: u64,
}

impl Stamps {
    pub(crate) fn new(window: Window) -> Self {
        Self {
            unit_ms: (window.window_ms + window.slot_ms) / (1 << 29) + 1,
        }
    }

    fn encode(self, t: u64) -> u32 {
        (t.div_ceil(self.unit_ms) & u64::from(TIME_MASK)) as u32
    }

    /// The time of an entry stamped `units`, never earlier than the real time (so a mark is
    /// never judged older than it is) and never after `now`.
    fn decode(self, units: u32, now: u64) -> u64 {
        let now_units = now.div_ceil(self.unit_ms);
        let age = now_units.wrapping_sub(u64::from(units)) & u64::from(TIME_MASK);
        (now_units.saturating_sub(age) * self.unit_ms).min(now)
    }
}

/// What the hot tier knows of a fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Hot {
    /// Not remembered (ask the cold tier unless the stripe is authoritative).
    Absent,
    /// Claimed by a write in flight: entry `seq`, marked at `first_seen`.
    Pending { seq: u64, first_seen: u64 },
    /// Marked at `first_seen`, durable, live.
    Durable { first_seen: u64 },
}

#[derive(Clone, Copy, Debug)]
struct SlotStart {
    slot: u64,
    first_seq: u64,
}

/// Counters kept under the stripe lock, summed by [`crate::Stats`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StripeCounters {
    pub cold_lookups: u64,
    pub evictions: u64,
}

pub(crate) struct Stripe {
    fifo: Fifo<Entry>,
    slots: VecDeque<SlotStart>,
    index: Index,
    /// The index never shrinks below its presized bucket count.
    index_floor: usize,
    complete_from: u64,
    budget: usize,
    /// [`MAX_ENTRIES`], lower in tests.
    max_entries: u64,
    pub(crate) counters: StripeCounters,
    /// Claims in progress on this stripe's fingerprints.
    pub(crate) leases: Leases,
}

impl Stripe {
    /// A stripe expecting about `expected` IDs, holding at most `budget` bytes, that has every
    /// mark made at or after `complete_from`.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn new(expected: usize, budget: usize, complete_from: u64) -> Self {
        Self::with_index(Index::with_capacity(expected), budget, complete_from)
    }

    /// [`new`](Self::new), or `None` if the index for `expected` IDs cannot be allocated.
    pub(crate) fn try_new(expected: usize, budget: usize, complete_from: u64) -> Option<Self> {
        let index = Index::try_with_capacity(expected).ok()?;
        Some(Self::with_index(index, budget, complete_from))
    }

    fn with_index(index: Index, budget: usize, complete_from: u64) -> Self {
        Self {
            fifo: Fifo::new(),
            slots: VecDeque::new(),
            index_floor: index.buckets(),
            index,
            complete_from,
            budget,
            max_entries: MAX_ENTRIES,
            counters: StripeCounters::default(),
            leases: Leases::default(),
        }
    }

    /// IDs remembered (pending ones included).
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Heap bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.fifo.bytes() + self.index.bytes() + self.slots.capacity() * size_of::<SlotStart>()
    }

    /// Whether a miss here means the fingerprint has no live mark anywhere.
    pub(crate) fn authoritative(&self, window: Window, now: u64) -> bool {
        self.complete_from <= window.oldest_live(now)
    }

    /// Looks `fp` up at `now`, first dropping every expired slot.
    pub(crate) fn lookup(
        &mut self,
        fp: Fingerprint,
        window: Window,
        stamps: Stamps,
        now: u64,
    ) -> Hot {
        self.expire(window, now);
        let Some((pos, seq)) = self.find(fp) else {
            return Hot::Absent;
        };
        let Some(&entry) = self.fifo.get(seq) else {
            debug_assert!(false, "index names a missing entry");
            return Hot::Absent;
        };
        let first_seen = stamps.decode(entry.time(), now);
        match entry.state() {
            State::Pending => Hot::Pending { seq, first_seen },
            State::Durable | State::Recalled if window.is_live(first_seen, now) => {
                Hot::Durable { first_seen }
            }
            _ => {
                // Dead, but its slot has not expired yet: forget it now so it can be marked anew.
                self.unindex(pos);
                if let Some(e) = self.fifo.get_mut(seq) {
                    e.set_state(State::Removed);
                }
                Hot::Absent
            }
        }
    }

    /// Claims `fp` with a pending entry marked at `now`, returning the entry's sequence number;
    /// `None` if the stripe holds its most entries and the oldest is still pending.
    ///
    /// The caller has just looked `fp` up at `now` and found it [`Hot::Absent`].
    pub(crate) fn insert_pending(
        &mut self,
        fp: Fingerprint,
        window: Window,
        stamps: Stamps,
        now: u64,
    ) -> Option<u64> {
        self.make_room(stamps, now);
        if self.fifo.len() >= self.max_entries {
            return None;
        }
        if self.index.needs_grow() {
            self.resize_index(self.index.len() + 1);
        }
        let seq = self
            .fifo
            .push(Entry::new(fp, stamps.encode(now), State::Pending));
        let slot = window.slot(now);
        if self.slots.back().is_none_or(|s| s.slot != slot) {
            debug_assert!(self.slots.back().is_none_or(|s| s.slot < slot));
            self.slots.push_back(SlotStart {
                slot,
                first_seq: seq,
            });
        }
        self.index.insert(fp.probe_hash(), fp.tag(), seq);
        Some(seq)
    }

    /// Settles the pending entry `seq`: durable if its write succeeded, forgotten if it failed.
    /// Does nothing if the entry expired or was evicted meanwhile.
    pub(crate) fn settle(&mut self, seq: u64, durable: bool) {
        let Some(entry) = self.fifo.get_mut(seq) else {
            return;
        };
        if entry.state() != State::Pending {
            return;
        }
        if durable {
            entry.set_state(State::Durable);
            return;
        }
        entry.set_state(State::Removed);
        let fp = entry.fingerprint();
        if let Some((pos, _)) = self.find_seq(fp, seq) {
            self.unindex(pos);
        }
    }

    /// Turns the pending entry `seq` (a claim taken while its fingerprint was looked up on disk)
    /// into a recalled one: the disk holds a live mark for it, made at `first_seen`.
    pub(crate) fn recall(&mut self, seq: u64, first_seen: u64, stamps: Stamps) {
        let Some(entry) = self.fifo.get_mut(seq) else {
            debug_assert!(false, "a claim is never expired or evicted");
            return;
        };
        debug_assert_eq!(entry.state(), State::Pending);
        *entry = Entry::new(
            entry.fingerprint(),
            stamps.encode(first_seen),
            State::Recalled,
        );
    }

    /// Pops every slot whose marks are all dead at `now` (recalled marks are older than their
    /// slot, so dead by then too), up to the first pending entry: a claim
    /// stays until its write returns, however long that takes, or a second caller could claim
    /// the same ID.
    fn expire(&mut self, window: Window, now: u64) {
        let Some(end) = self.expired_end(window, now) else {
            return;
        };
        let end = self
            .fifo
            .iter_from(self.fifo.head())
            .take_while(|&(seq, _)| seq < end)
            .find(|(_, e)| e.state() == State::Pending)
            .map_or(end, |(seq, _)| seq);
        if end == self.fifo.head() {
            return;
        }
        let expiring = end - self.fifo.head();
        if expiring * 2 > self.fifo.len() {
            // Most of the stripe is going: rebuilding the index beats removing one by one.
            let kept = self
                .fifo
                .iter_from(end)
                .filter(|(_, e)| e.state() != State::Removed)
                .count();
            while self.fifo.head() < end {
                self.fifo.pop_front();
            }
            self.index.reset(kept.max(self.index_floor * 70 / 100));
            for (seq, e) in self.fifo.iter_from(end) {
                if e.state() != State::Removed {
                    let fp = e.fingerprint();
                    self.index.insert(fp.probe_hash(), fp.tag(), seq);
                }
            }
        } else {
            while self.fifo.head() < end {
                self.pop_front_entry();
            }
            if self.index.should_shrink(self.index_floor) {
                self.resize_index(self.index.len());
            }
        }
        self.trim_slots();
    }

    /// The sequence number just past the last entry of the expired slots, if any expired.
    fn expired_end(&self, window: Window, now: u64) -> Option<u64> {
        let expired = self
            .slots
            .iter()
            .take_while(|s| window.slot_expired(s.slot, now))
            .count();
        (expired > 0).then(|| {
            self.slots
                .get(expired)
                .map_or(self.fifo.tail(), |s| s.first_seq)
        })
    }

    /// Changes the stripe's budget to `budget` bytes, evicting the oldest entries at once if it
    /// shrank (pending ones stay, as in [`make_room`](Self::make_room)).
    pub(crate) fn set_budget(&mut self, budget: usize, stamps: Stamps, now: u64) {
        self.budget = budget;
        self.make_room(stamps, now);
    }

    /// Evicts the oldest entries until one more push fits the budget, or the oldest is pending
    /// (pending entries are never evicted: another caller would miss the claim).
    fn make_room(&mut self, stamps: Stamps, now: u64) {
        loop {
            // An index grown while a claim held off eviction would keep the stripe over budget
            // once the entries it grew for are evicted.
            if self.index.should_shrink(self.index_floor) {
                self.resize_index(self.index.len());
            }
            let mut after_push = self.bytes();
            if self.fifo.push_allocates() {
                after_push += CHUNK * size_of::<Entry>();
            }
            if self.index.needs_grow() {
                after_push += self.index.grown_bytes() - self.index.bytes();
            }
            if self.slots.len() == self.slots.capacity() {
                after_push += self.slots.capacity().max(4) * size_of::<SlotStart>();
            }
            if after_push <= self.budget && self.fifo.len() < self.max_entries {
                return;
            }
            let Some(&front) = self.fifo.front() else {
                return;
            };
            if front.state() == State::Pending {
                return;
            }
            if matches!(front.state(), State::Durable | State::Recalled) {
                // The stripe no longer has every mark from this time on. (A recalled mark is
                // older than `complete_from` already, since it was on disk and not here; counting
                // it keeps this rule true of whatever the stripe is given.)
                let first_seen = stamps.decode(front.time(), now);
                self.complete_from = self.complete_from.max(first_seen.saturating_add(1));
                self.counters.evictions += 1;
            }
            self.pop_front_entry();
            self.trim_slots();
        }
    }

    /// Pops the head entry, taking it out of the index first.
    fn pop_front_entry(&mut self) {
        let head = self.fifo.head();
        if let Some(&entry) = self.fifo.front()
            && entry.state() != State::Removed
            && let Some((pos, _)) = self.find_seq(entry.fingerprint(), head)
        {
            self.unindex(pos);
        }
        self.fifo.pop_front();
    }

    /// Drops slot records that no longer start any entry.
    fn trim_slots(&mut self) {
        if self.fifo.is_empty() {
            self.slots.clear();
            return;
        }
        while self.slots.len() >= 2 && self.slots[1].first_seq <= self.fifo.head() {
            self.slots.pop_front();
        }
    }

    /// The index bucket where looking up `fp` starts. With [`touch_entry`](Self::touch_entry),
    /// the batch calls' prefetch: reading the buckets of many lookups first, then their
    /// entries, then looking them up, overlaps the cache misses of all instead of taking them
    /// one after another.
    pub(crate) fn home_bucket(&self, fp: Fingerprint) -> u32 {
        self.index.home_bucket(fp.probe_hash())
    }

    /// Reads the entry that `bucket` (from [`home_bucket`](Self::home_bucket)) names, if it may
    /// be `fp`'s, and returns a word of it (zero if none): the caller hands the words of a
    /// whole chunk to `black_box` at once, so that the reads are kept without each waiting to
    /// be stored. Changes nothing.
    pub(crate) fn touch_entry(&self, fp: Fingerprint, bucket: u32) -> u32 {
        match Index::unpack(bucket) {
            Some((tag, bits)) if tag == fp.tag() => self
                .fifo
                .get(full_seq(self.fifo.head(), bits))
                .map_or(0, |entry| entry.fp[0]),
            _ => 0,
        }
    }

    /// The index bucket and sequence number of `fp`'s entry.
    fn find(&self, fp: Fingerprint) -> Option<(usize, u64)> {
        let words = fp.words();
        let head = self.fifo.head();
        let pos = self.index.find(fp.probe_hash(), fp.tag(), |bits| {
            self.fifo
                .get(full_seq(head, bits))
                .is_some_and(|e| e.fp == words)
        })?;
        Some((pos, full_seq(head, self.index.seq_bits_at(pos))))
    }

    /// The index bucket of entry `seq`, whose fingerprint is `fp`.
    fn find_seq(&self, fp: Fingerprint, seq: u64) -> Option<(usize, u64)> {
        let bits = seq as u32 & SEQ_MASK;
        let pos = self.index.find(fp.probe_hash(), fp.tag(), |b| b == bits)?;
        Some((pos, seq))
    }

    fn unindex(&mut self, pos: usize) {
        let fifo = &self.fifo;
        let head = fifo.head();
        self.index.remove_at(pos, |bits| hash_at(fifo, head, bits));
    }

    fn resize_index(&mut self, ids: usize) {
        let fifo = &self.fifo;
        let head = fifo.head();
        self.index
            .resize(ids.max(self.index_floor * 70 / 100), |bits| {
                hash_at(fifo, head, bits)
            });
    }

    /// Lowers the most entries the stripe holds, so tests reach the limit.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn set_max_entries(&mut self, max: u64) {
        self.max_entries = max.min(MAX_ENTRIES);
    }

    /// Panics unless the invariants in the module docs hold. The caller has just looked a
    /// fingerprint up at `now`, so every slot that expired by `now` is gone.
    #[cfg(any(test, fuzzing))]
    pub(crate) fn check_invariants(&self, window: Window, stamps: Stamps, now: u64) {
        let mut indexed = 0;
        let mut previous = 0;
        for (seq, e) in self.fifo.iter_from(0) {
            if e.state() != State::Removed {
                indexed += 1;
                assert_eq!(self.find_seq(e.fingerprint(), seq).map(|p| p.1), Some(seq));
                assert_eq!(self.find(e.fingerprint()).map(|p| p.1), Some(seq));
            }
            let time = stamps.decode(e.time(), now);
            let start = self.slots.iter().rev().find(|s| s.first_seq <= seq);
            // A decoded time is rounded up to the stamp unit, so it can fall in the next slot.
            let earliest = window.slot(time.saturating_sub(stamps.unit_ms - 1));
            match e.state() {
                // Its time no longer matters (and may be a recalled one's).
                State::Removed => continue,
                State::Recalled => {
                    assert!(
                        start.is_some_and(|s| earliest <= s.slot),
                        "recalled {seq} at {time} sits before its own time"
                    );
                    continue;
                }
                State::Durable | State::Pending => {}
            }
            assert!(time >= previous, "times decrease at {seq}");
            previous = time;
            assert!(
                start.is_some_and(|s| (earliest..=window.slot(time)).contains(&s.slot)),
                "slot of {seq}: {:?}, time {time}",
                start.map(|s| s.slot)
            );
        }
        assert_eq!(indexed, self.index.len());
    }
}

/// The full sequence number whose low bits are `bits`: the one in `head .. head + 2^24`.
fn full_seq(head: u64, bits: u32) -> u64 {
    head + u64::from(bits.wrapping_sub(head as u32) & SEQ_MASK)
}

fn hash_at(fifo: &Fifo<Entry>, head: u64, bits: u32) -> u64 {
    fifo.get(full_seq(head, bits)).map_or_else(
        || {
            debug_assert!(false, "index names a missing entry");
            0
        },
        |e| e.fingerprint().probe_hash(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const WINDOW: Window = Window {
        window_ms: 10_000,
        slot_ms: 1_000,
    };

    fn fp(n: u64) -> Fingerprint {
        // Spread small numbers over all bits, as real fingerprints are.
        let x = u128::from(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        Fingerprint::from_raw(x << 64 | x.rotate_left(17) | 1)
    }

    fn mark(s: &mut Stripe, f: Fingerprint, now: u64) -> Hot {
        let stamps = Stamps::new(WINDOW);
        let hot = s.lookup(f, WINDOW, stamps, now);
        if hot == Hot::Absent {
            let seq = s.insert_pending(f, WINDOW, stamps, now).unwrap();
            s.settle(seq, true);
        }
        hot
    }

    #[test]
    fn marks_live_for_the_window_and_no_longer() {
        let mut s = Stripe::new(16, 1 << 20, 0);
        assert_eq!(mark(&mut s, fp(1), 5_500), Hot::Absent);
        assert_eq!(
            mark(&mut s, fp(1), 15_500),
            Hot::Durable { first_seen: 5_500 }
        );
        // 10_001 ms later the mark is dead: found in its (unexpired) slot, dropped, marked anew.
        assert_eq!(mark(&mut s, fp(1), 15_501), Hot::Absent);
        assert_eq!(
            mark(&mut s, fp(1), 15_502),
            Hot::Durable { first_seen: 15_501 }
        );
        s.check_invariants(WINDOW, Stamps::new(WINDOW), 15_502);
    }

    #[test]
    fn pending_entries_are_in_flight_until_settled() {
        let stamps = Stamps::new(WINDOW);
        let mut s = Stripe::new(16, 1 << 20, 0);
        assert_eq!(s.lookup(fp(7), WINDOW, stamps, 100), Hot::Absent);
        let seq = s.insert_pending(fp(7), WINDOW, stamps, 100).unwrap();
        assert_eq!(
            s.lookup(fp(7), WINDOW, stamps, 101),
            Hot::Pending {
                seq,
                first_seen: 100
            }
        );
        s.settle(seq, false);
        assert_eq!(
            s.lookup(fp(7), WINDOW, stamps, 102),
            Hot::Absent,
            "a failed write is forgotten"
        );
        assert_eq!(s.len(), 0);
        s.check_invariants(WINDOW, stamps, 102);
    }

    #[test]
    fn expiry_frees_memory_slot_by_slot() {
        let stamps = Stamps::new(WINDOW);
        let mut s = Stripe::new(16, 1 << 30, 0);
        for i in 0..20_000 {
            mark(&mut s, fp(i), 1_000 + i / 4); // 5 seconds of marks
        }
        assert_eq!(s.len(), 20_000);
        let full = s.bytes();
        // At 15.5 s slots 1..=4 have expired (slot 5 needs now >= 16_000).
        assert_eq!(s.lookup(fp(u64::MAX), WINDOW, stamps, 15_500), Hot::Absent);
        assert_eq!(s.len(), 20_000 - 4 * 4_000, "four whole slots expired");
        assert!(
            s.bytes() < full / 2,
            "memory follows: {} of {full}",
            s.bytes()
        );
        s.check_invariants(WINDOW, stamps, 15_500);
        // One more slot, popped entry by entry rather than by rebuilding the index.
        for i in 0..40_000 {
            mark(&mut s, fp(100_000 + i), 15_500 + i / 8);
        }
        assert_eq!(s.lookup(fp(u64::MAX), WINDOW, stamps, 20_500), Hot::Absent);
        assert_eq!(s.len(), 40_000);
        s.check_invariants(WINDOW, stamps, 20_500);
        assert_eq!(s.lookup(fp(u64::MAX), WINDOW, stamps, 31_000), Hot::Absent);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn over_budget_the_oldest_are_evicted_and_misses_stop_being_authoritative() {
        let stamps = Stamps::new(WINDOW);
        let budget = 64 * 1024;
        let mut s = Stripe::new(16, budget, 0);
        for i in 0..10_000 {
            mark(&mut s, fp(i), 1_000 + i / 10);
            assert!(s.bytes() <= budget, "{} bytes after {i}", s.bytes());
        }
        assert!(s.counters.evictions > 0);
        assert!(
            !s.authoritative(WINDOW, 2_000),
            "evicted marks are still live"
        );
        // The newest marks are kept.
        assert_eq!(
            s.lookup(fp(9_999), WINDOW, stamps, 2_000),
            Hot::Durable { first_seen: 1_999 }
        );
        assert_eq!(s.lookup(fp(0), WINDOW, stamps, 2_000), Hot::Absent);
        s.check_invariants(WINDOW, stamps, 2_000);
        // Once every evicted mark has died, misses are authoritative again.
        assert!(s.authoritative(WINDOW, 1_999 + 10_001));
    }

    #[test]
    fn pending_entries_are_never_evicted() {
        let stamps = Stamps::new(WINDOW);
        let mut s = Stripe::new(16, 64 * 1024, 0);
        let first = s.insert_pending(fp(0), WINDOW, stamps, 1_000).unwrap();
        for i in 1..10_000 {
            mark(&mut s, fp(i), 1_000);
        }
        assert_eq!(
            s.lookup(fp(0), WINDOW, stamps, 1_000),
            Hot::Pending {
                seq: first,
                first_seen: 1_000
            }
        );
        s.settle(first, true);
        assert_eq!(
            s.lookup(fp(0), WINDOW, stamps, 1_000),
            Hot::Durable { first_seen: 1_000 }
        );
    }

    #[test]
    fn a_stripe_grown_behind_a_claim_returns_within_budget() {
        let stamps = Stamps::new(WINDOW);
        let budget = 64 * 1024;
        let mut s = Stripe::new(16, budget, 0);
        let stuck = s.insert_pending(fp(0), WINDOW, stamps, 1_000).unwrap();
        for i in 1..20_000 {
            mark(&mut s, fp(i), 1_000);
        }
        assert!(s.bytes() > budget, "nothing is evicted behind a claim");
        s.settle(stuck, true);
        for i in 20_000..20_010 {
            mark(&mut s, fp(i), 1_000);
        }
        assert!(s.bytes() <= budget, "{} bytes", s.bytes());
        s.check_invariants(WINDOW, stamps, 1_000);
    }

    #[test]
    fn a_claim_outlives_its_slot_until_its_write_returns() {
        let stamps = Stamps::new(WINDOW);
        let mut s = Stripe::new(16, 1 << 20, 0);
        mark(&mut s, fp(1), 1_000);
        let slow = s.insert_pending(fp(2), WINDOW, stamps, 1_500).unwrap();
        mark(&mut s, fp(3), 1_600);
        // Long past the window: the durable mark before the claim expires, the claim does not.
        let later = 1_500 + 3 * 10_000;
        assert_eq!(s.lookup(fp(1), WINDOW, stamps, later), Hot::Absent);
        assert_eq!(
            s.lookup(fp(2), WINDOW, stamps, later),
            Hot::Pending {
                seq: slow,
                first_seen: 1_500
            }
        );
        s.settle(slow, true);
        assert_eq!(
            s.lookup(fp(2), WINDOW, stamps, later + 1),
            Hot::Absent,
            "dead once settled"
        );
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_recalled_mark_lives_until_its_own_time_not_its_slots() {
        let stamps = Stamps::new(WINDOW);
        let mut s = Stripe::new(16, 1 << 20, 0);
        assert_eq!(s.lookup(fp(1), WINDOW, stamps, 9_000), Hot::Absent);
        let seq = s.insert_pending(fp(1), WINDOW, stamps, 9_000).unwrap();
        // The disk held a mark made at 2_000, before anything in the stripe.
        s.recall(seq, 2_000, stamps);
        mark(&mut s, fp(2), 9_500);
        s.check_invariants(WINDOW, stamps, 9_500);
        assert_eq!(
            s.lookup(fp(1), WINDOW, stamps, 12_000),
            Hot::Durable { first_seen: 2_000 }
        );
        s.settle(seq, false); // a late settle of the recalled claim changes nothing
        assert_eq!(
            s.lookup(fp(1), WINDOW, stamps, 12_000),
            Hot::Durable { first_seen: 2_000 }
        );
        // Dead at 12_001 although its slot (9 s) lives on: forgotten, and the newer mark kept.
        assert_eq!(s.lookup(fp(1), WINDOW, stamps, 12_001), Hot::Absent);
        assert_eq!(
            s.lookup(fp(2), WINDOW, stamps, 12_001),
            Hot::Durable { first_seen: 9_500 }
        );
        s.check_invariants(WINDOW, stamps, 12_001);
    }

    #[test]
    fn a_full_stripe_behind_a_pending_claim_refuses_new_claims() {
        let stamps = Stamps::new(WINDOW);
        let mut s = Stripe::new(16, usize::MAX, 0);
        s.set_max_entries(1_000);
        let stuck = s.insert_pending(fp(0), WINDOW, stamps, 1_000).unwrap();
        for i in 1..1_000 {
            mark(&mut s, fp(i), 1_000);
        }
        assert_eq!(s.insert_pending(fp(u64::MAX), WINDOW, stamps, 1_000), None);
        s.settle(stuck, true);
        assert!(
            s.insert_pending(fp(u64::MAX), WINDOW, stamps, 1_000)
                .is_some(),
            "room again"
        );
    }

    #[test]
    fn stamps_round_trip_across_their_wrap() {
        let window = Window::new(366 * 86_400_000, 1);
        let stamps = Stamps::new(window);
        assert!(stamps.unit_ms > 1);
        for t in [0, 1, 123_456_789, 1_700_000_000_000, (1 << 40) + 17] {
            for age in [0, 1, 86_400_000, window.window_ms + window.slot_ms] {
                let now = t + age;
                let back = stamps.decode(stamps.encode(t), now);
                assert!(
                    back >= t && back < t + stamps.unit_ms,
                    "t={t} age={age} back={back}"
                );
            }
        }
        let daily = Stamps::new(Window::new(86_400_000, 128));
        assert_eq!(daily.unit_ms, 1);
        assert_eq!(
            daily.decode(daily.encode(1_700_000_000_123), 1_700_050_000_000),
            1_700_000_000_123
        );
    }

    proptest! {
        /// Against a map of live marks: every lookup answers what the window says.
        #[test]
        fn agrees_with_a_model(ops in prop::collection::vec((0u64..40, 0u64..3_000, any::<bool>()), 1..300)) {
            let stamps = Stamps::new(WINDOW);
            let mut s = Stripe::new(4, 1 << 30, 0);
            let mut model: HashMap<u64, u64> = HashMap::new();
            let mut now = 1_000;
            for (id, step, fail) in ops {
                now += step;
                let hot = s.lookup(fp(id), WINDOW, stamps, now);
                let live = model.get(&id).copied().filter(|&t| WINDOW.is_live(t, now));
                if let Some(t) = live {
                    prop_assert_eq!(hot, Hot::Durable { first_seen: t });
                } else {
                    prop_assert_eq!(hot, Hot::Absent);
                    let seq = s.insert_pending(fp(id), WINDOW, stamps, now).unwrap();
                    s.settle(seq, !fail);
                    if fail { model.remove(&id); } else { model.insert(id, now); }
                }
                s.check_invariants(WINDOW, stamps, now);
            }
        }
    }

    #[test]
    fn long_windows_stamp_times_within_one_documented_unit() {
        // docs/guarantees.md: units of (W + S) / 2^29 + 1 ms; 26 ms for 157 days, 128 slots.
        let window = Window::new(157 * 86_400_000, 128);
        let stamps = Stamps::new(window);
        assert_eq!(stamps.unit_ms, 26);
        let t0 = 1_700_000_000_123;
        for age in [0, 1, 25, 86_400_000, window.window_ms] {
            for t in t0..t0 + 60 {
                let read = stamps.decode(stamps.encode(t), t + age);
                assert!(read >= t && read - t < stamps.unit_ms, "{t} read as {read}");
            }
        }
    }
}
