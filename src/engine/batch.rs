//! Deciding a batch of IDs at once. The batch is sorted by stripe and taken [`AHEAD`] IDs at a
//! time: their stripes are locked together (in ascending order, the one order in which any
//! caller holds more than one stripe lock, so no two callers wait for each other), their index
//! buckets read, then their entries, then each is decided, so that the cache misses of all
//! overlap instead of following one another. The misses the disk must decide are read after
//! every lock is dropped, together: one `multi_get` a generation.
//!
//! The answers are those of deciding the IDs one after another in the batch's order: IDs of one
//! stripe keep their order, so an ID repeated in the batch is claimed at its first position and
//! found pending (ours, so `Duplicate`) at the next; IDs of different stripes never see each
//! other.

use super::{Decided, Engine, PendingMark, Space, answer, decide_locked, duplicate};
use crate::error::Result;
use crate::id::Fingerprint;
use crate::outcome::Outcome;
use crate::wheel::Stripe;
use parking_lot::MutexGuard;
use std::collections::HashMap;
use std::sync::Arc;

/// IDs whose lookups are overlapped: about as many cache misses as one core keeps in flight.
/// Also the most stripe locks a batch holds at once.
const AHEAD: usize = 16;

/// A miss the disk decides, after every stripe lock is dropped.
struct Miss {
    /// Its position in the batch.
    at: usize,
    /// When its stripe missed it.
    now: u64,
    /// Its claim, if the batch claims: the entry's sequence number and the claim's position in
    /// the claims.
    claim: Option<(u64, usize)>,
}

impl Engine {
    /// [`claim`](Self::claim) for every fingerprint of `fps`, answers in their order.
    pub(crate) fn claim_batch(
        &self,
        space: &Arc<Space>,
        fps: &[Fingerprint],
        claims: &mut Vec<PendingMark>,
    ) -> Result<Vec<Outcome>> {
        self.decide_batch(space, fps, Some(claims))
    }

    /// [`check`](Self::check) for every fingerprint of `fps`, answers in their order.
    pub(crate) fn check_batch(
        &self,
        space: &Arc<Space>,
        fps: &[Fingerprint],
    ) -> Result<Vec<Outcome>> {
        self.decide_batch(space, fps, None)
    }

    fn decide_batch(
        &self,
        space: &Arc<Space>,
        fps: &[Fingerprint],
        mut claims: Option<&mut Vec<PendingMark>>,
    ) -> Result<Vec<Outcome>> {
        let mut outcomes = vec![Outcome::New; fps.len()];
        let mut misses = Vec::new();
        let (order, stripes) = by_stripe(space, fps);
        for chunk in order.chunks(AHEAD) {
            // `chunk` is sorted by stripe: each stripe is locked once, in ascending order.
            let mut locked: Vec<(usize, MutexGuard<'_, Stripe>)> = Vec::with_capacity(AHEAD);
            // Which of `locked` each ID of the chunk is in.
            let mut held = [0usize; AHEAD];
            for (held, &i) in held.iter_mut().zip(chunk) {
                if locked.last().is_none_or(|&(s, _)| s != stripes[i]) {
                    locked.push((stripes[i], space.hot.stripe_at(stripes[i]).lock()));
                }
                *held = locked.len() - 1;
            }
            // Read under the locks, so times within a stripe never decrease.
            let now = self.now_millis();
            let mut buckets = [0u32; AHEAD];
            for ((bucket, &at), &i) in buckets.iter_mut().zip(&held).zip(chunk) {
                *bucket = locked[at].1.home_bucket(fps[i]);
            }
            let mut read = 0;
            for ((&bucket, &at), &i) in buckets.iter().zip(&held).zip(chunk) {
                read ^= locked[at].1.touch_entry(fps[i], bucket);
            }
            std::hint::black_box(read);
            for (&at, &i) in held.iter().zip(chunk) {
                let claimed = claims.as_ref().map_or(0, |c| c.len());
                let stripe = &mut locked[at].1;
                let decided =
                    decide_locked(space, stripe, fps[i], None, now, claims.as_deref_mut())?;
                let claim = match decided {
                    Decided::Answer(outcome) => {
                        outcomes[i] = outcome;
                        continue;
                    }
                    Decided::Durable(first_seen) => {
                        outcomes[i] = duplicate(first_seen);
                        continue;
                    }
                    Decided::ClaimedMiss(seq) => Some((seq, claimed)),
                    Decided::Miss => None,
                };
                misses.push(Miss { at: i, now, claim });
            }
        }
        if !misses.is_empty() {
            self.probe_batch(space, fps, &misses, &mut outcomes, claims)?;
        }
        Ok(outcomes)
    }

    /// Reads the disk for the batch's `misses` without any stripe lock (a claimed miss makes
    /// other callers of its ID answer `InFlight` meanwhile). A live mark found answers
    /// `Duplicate`; a claimed one turns into a recalled entry and leaves `claims`, an unclaimed
    /// one is kept in its stripe. A failed read fails the batch: the claims left in `claims`
    /// are then settled as failed by the caller's `Unsettled`.
    fn probe_batch(
        &self,
        space: &Arc<Space>,
        fps: &[Fingerprint],
        misses: &[Miss],
        outcomes: &mut [Outcome],
        claims: Option<&mut Vec<PendingMark>>,
    ) -> Result<()> {
        let asks: Vec<_> = misses.iter().map(|m| (fps[m.at], m.now)).collect();
        let found = self.cold.find_live_many(&space.generations, &asks)?;
        let mut recalled = Vec::new();
        let mut first_seen = HashMap::new();
        for (miss, mark) in misses.iter().zip(found) {
            let Some(mark) = mark else {
                continue; // New, as its outcome already says; its claim stays
            };
            let fp = fps[miss.at];
            outcomes[miss.at] = answer(&mark, None);
            match miss.claim {
                Some((seq, claimed)) => {
                    space
                        .hot
                        .stripe(fp)
                        .lock()
                        .recall(seq, mark.at, space.stamps);
                    space.hot.settled(fp).notify(usize::MAX);
                    recalled.push(claimed);
                    first_seen.insert(fp, miss.at);
                }
                None => self.remember(space, fp, mark.at),
            }
        }
        // A repeat of a recalled ID later in the batch found its claim, pending, and was answered
        // with the claim's time: it gets the time of the mark found, as a single call would.
        for (i, fp) in fps.iter().enumerate() {
            if let Some(&at) = first_seen.get(fp)
                && i > at
                && matches!(outcomes[i], Outcome::Duplicate { .. })
            {
                outcomes[i] = outcomes[at];
            }
        }
        if let Some(claims) = claims
            && !recalled.is_empty()
        {
            // `recalled` is ascending: misses are found in the order their claims were pushed.
            let mut recalled = recalled.into_iter().peekable();
            let mut position = 0;
            claims.retain(|_| {
                let keep = recalled.next_if_eq(&position).is_none();
                position += 1;
                keep
            });
        }
        Ok(())
    }
}

/// The positions of `fps` sorted by stripe, each stripe's in the batch's order, and the stripe
/// of each position. A counting sort, linear in the batch and the number of stripes.
fn by_stripe(space: &Space, fps: &[Fingerprint]) -> (Vec<usize>, Vec<usize>) {
    let stripes: Vec<usize> = fps.iter().map(|&fp| space.hot.position(fp)).collect();
    let mut next = vec![0; space.hot.stripes() + 1];
    for &s in &stripes {
        next[s + 1] += 1;
    }
    for s in 1..next.len() {
        next[s] += next[s - 1];
    }
    let mut order = vec![0; fps.len()];
    for (i, &s) in stripes.iter().enumerate() {
        order[next[s]] = i;
        next[s] += 1;
    }
    (order, stripes)
}
