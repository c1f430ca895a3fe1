//! Producer sequences in memory: each known producer's high-water mark, in a lock-striped table
//! in front of column family `producers`, claimed and settled as marks are.
//!
//! An accept *claims* its producer under the stripe's lock: its sequences are judged against the
//! producer's live high-water mark and, if they are the next ones, the entry records the pending
//! write (by its token), so that concurrent accepts of that producer answer `InFlight`. Once the
//! write returns, the claim is *settled*: the entry takes the new high-water mark, or forgets the
//! claim if the write failed. With one write pending per producer, high-water marks reach the
//! disk in the order they were accepted, and a failed write leaves no later one built on it.
//!
//! Producers idle for longer than the idle time are forgotten: skipped (and deleted) at open, and
//! swept, in memory and on disk, whenever the table has doubled since the last sweep, so memory
//! and disk stay proportional to the producers active within the idle time.

use super::Engine;
use crate::outcome::SequenceOutcome;
use crate::persist::{ProducerRecord, StagedSequence};
use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use xxhash_rust::xxh3::xxh3_64;

/// No sweep runs while fewer producers than this are in memory.
const MIN_SWEEP: usize = 1024;

pub(crate) struct Producers {
    stripes: Box<[Mutex<HashMap<Bytes, Producer>>]>,
    idle_ms: u64,
    /// Producers in memory.
    len: AtomicUsize,
    /// The count at which the next sweep runs: twice the count the last one left
    /// (`usize::MAX` while one runs).
    sweep_at: AtomicUsize,
    next_token: AtomicU64,
}

#[derive(Debug)]
struct Producer {
    /// The durable high-water mark; `None` until the producer's first write returns.
    durable: Option<ProducerRecord>,
    /// The token of the accept being written, if one is.
    pending: Option<u64>,
}

/// A claimed accept: the producer's new high-water mark, to write and then settle.
#[derive(Debug)]
pub(crate) struct PendingSequence {
    producer: Bytes,
    token: u64,
    record: ProducerRecord,
}

impl Producers {
    /// A table of `stripes` stripes (a power of two) holding the producers `loaded` at open.
    pub(crate) fn new(stripes: usize, idle_ms: u64, loaded: Vec<(Bytes, ProducerRecord)>) -> Self {
        debug_assert!(stripes.is_power_of_two());
        let producers = Self {
            stripes: (0..stripes).map(|_| Mutex::default()).collect(),
            idle_ms,
            len: AtomicUsize::new(loaded.len()),
            sweep_at: AtomicUsize::new((2 * loaded.len()).max(MIN_SWEEP)),
            next_token: AtomicU64::new(1),
        };
        for (producer, record) in loaded {
            let entry = Producer {
                durable: Some(record),
                pending: None,
            };
            producers.stripe(&producer).lock().insert(producer, entry);
        }
        producers
    }

    fn stripe(&self, producer: &[u8]) -> &Mutex<HashMap<Bytes, Producer>> {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "only the low bits are used"
        )]
        let i = xxh3_64(producer) as usize & (self.stripes.len() - 1);
        &self.stripes[i]
    }

    /// Producers in memory (idle ones not yet swept included).
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// What accepting `seqs` of the producer of `entry` answers at `now`: its new high-water
    /// mark, or the first sequence refused and why. A duplicate stays one whatever a pending
    /// write does; any other answer waits for it.
    fn answer(
        &self,
        entry: Option<&Producer>,
        now: u64,
        seqs: &[u64],
    ) -> Result<u64, (u64, SequenceOutcome)> {
        let pending = entry.is_some_and(|p| p.pending.is_some());
        match judge(self.live_high(entry, now), seqs) {
            Err(duplicate @ (_, SequenceOutcome::Duplicate { .. })) => Err(duplicate),
            _ if pending => Err((seqs[0], SequenceOutcome::InFlight)),
            judged => judged,
        }
    }

    /// `entry`'s high-water mark, if it is durable and live at `now`.
    fn live_high(&self, entry: Option<&Producer>, now: u64) -> Option<u64> {
        entry
            .and_then(|p| p.durable)
            .filter(|r| r.live(now, self.idle_ms))
            .map(|r| r.high)
    }
}

impl PendingSequence {
    /// The high-water mark to write.
    pub(crate) fn staged(&self) -> StagedSequence {
        StagedSequence {
            producer: self.producer.clone(),
            record: self.record,
        }
    }
}

impl Engine {
    /// Claims sequences `seqs` (ascending, distinct, at least one) of `producer`, recording the
    /// claim in `claims`; or returns the first sequence refused and why, claiming nothing.
    pub(crate) fn accept(
        &self,
        producer: &Bytes,
        seqs: &[u64],
        claims: &mut Vec<PendingSequence>,
    ) -> Result<(), (u64, SequenceOutcome)> {
        let producers = &self.producers;
        let mut stripe = producers.stripe(producer).lock();
        let now = self.now_millis();
        let high = producers.answer(stripe.get(producer), now, seqs)?;
        let token = producers.next_token.fetch_add(1, Ordering::Relaxed);
        let fresh = match stripe.entry(producer.clone()) {
            Entry::Occupied(entry) => {
                entry.into_mut().pending = Some(token);
                false
            }
            Entry::Vacant(entry) => {
                entry.insert(Producer {
                    durable: None,
                    pending: Some(token),
                });
                true
            }
        };
        drop(stripe);
        claims.push(PendingSequence {
            producer: producer.clone(),
            token,
            record: ProducerRecord { high, at: now },
        });
        if fresh {
            let len = producers.len.fetch_add(1, Ordering::Relaxed) + 1;
            let due = producers.sweep_at.load(Ordering::Relaxed);
            if len >= due
                && producers
                    .sweep_at
                    .compare_exchange(due, usize::MAX, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                self.sweep_producers();
            }
        }
        Ok(())
    }

    /// What [`accept`](Self::accept) would answer for `seqs` of `producer`, claiming nothing.
    pub(crate) fn judge_sequences(
        &self,
        producer: &[u8],
        seqs: &[u64],
    ) -> Result<(), (u64, SequenceOutcome)> {
        let stripe = self.producers.stripe(producer).lock();
        self.producers
            .answer(stripe.get(producer), self.now_millis(), seqs)
            .map(drop)
    }

    /// The durable high-water mark of `producer`, unless it is unknown or idle.
    pub(crate) fn high_water(&self, producer: &[u8]) -> Option<u64> {
        let stripe = self.producers.stripe(producer).lock();
        self.producers
            .live_high(stripe.get(producer), self.now_millis())
    }

    /// Settles accepts once their write returned: each producer takes its new high-water mark
    /// if `written`, and is free for the next accept either way.
    pub(crate) fn settle_sequences(&self, claims: &[PendingSequence], written: bool) {
        for claim in claims {
            let mut stripe = self.producers.stripe(&claim.producer).lock();
            let Some(entry) = stripe.get_mut(&claim.producer) else {
                debug_assert!(false, "a claimed producer is never swept");
                continue;
            };
            debug_assert_eq!(entry.pending, Some(claim.token));
            entry.pending = None;
            if written {
                entry.durable = Some(claim.record);
            } else if entry.durable.is_none() {
                stripe.remove(&claim.producer);
                self.producers.len.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// Forgets the producers idle at this time, in memory and on disk, one stripe at a time:
    /// a stripe's records are deleted while it is locked, so no accept of those producers can
    /// be written before the delete. A delete that fails leaves its stripe as it was (the
    /// failure poisons the store, as any failed write does).
    fn sweep_producers(&self) {
        let producers = &self.producers;
        for stripe in &producers.stripes {
            let mut stripe = stripe.lock();
            let now = self.now_millis();
            let idle: Vec<Bytes> = stripe
                .iter()
                .filter(|(_, p)| p.pending.is_none() && producers.live_high(Some(p), now).is_none())
                .map(|(producer, _)| producer.clone())
                .collect();
            if idle.is_empty() || self.cold.forget_producers(&idle).is_err() {
                continue;
            }
            for producer in &idle {
                stripe.remove(producer);
            }
            producers.len.fetch_sub(idle.len(), Ordering::Relaxed);
        }
        let left = producers.len.load(Ordering::Relaxed);
        producers
            .sweep_at
            .store((2 * left).max(MIN_SWEEP), Ordering::Relaxed);
    }
}

/// What accepting `seqs` (ascending, distinct, at least one) of a producer whose live
/// high-water mark is `high` (`None`: unknown) answers: the new high-water mark, or the first
/// sequence refused and why. An unknown producer's first sequence is accepted whatever it is.
fn judge(high: Option<u64>, seqs: &[u64]) -> Result<u64, (u64, SequenceOutcome)> {
    debug_assert!(!seqs.is_empty() && seqs.windows(2).all(|w| w[0] < w[1]));
    let mut high = high;
    for &seq in seqs {
        match high {
            Some(h) if seq <= h => {
                return Err((seq, SequenceOutcome::Duplicate { high_water: h }));
            }
            // `h < seq`, so `h + 1` does not overflow.
            Some(h) if seq != h + 1 => {
                return Err((seq, SequenceOutcome::Gap { expected: h + 1 }));
            }
            _ => high = Some(seq),
        }
    }
    Ok(high.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use SequenceOutcome::{Duplicate, Gap, InFlight};

    /// While an accept of a producer is pending, other accepts of it are `InFlight` (a duplicate
    /// excepted): no acceptance is built on a write that may fail. A failed write leaves the
    /// producer as it was, a new one unknown.
    #[test]
    fn a_producer_has_one_accept_pending_and_a_failed_one_leaves_no_trace() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::Store::open(dir.path()).unwrap();
        let engine = store.engine();
        let p = Bytes::from_static(b"p");
        let mut refused = Vec::new();

        let mut first = Vec::new();
        assert_eq!(engine.accept(&p, &[0], &mut first), Ok(()));
        assert_eq!(engine.accept(&p, &[0], &mut refused), Err((0, InFlight)));
        assert_eq!(engine.accept(&p, &[1], &mut refused), Err((1, InFlight)));
        assert_eq!(engine.judge_sequences(&p, &[1]), Err((1, InFlight)));
        engine.settle_sequences(&first, false);
        assert_eq!(engine.high_water(&p), None);
        assert_eq!(
            engine.producers(),
            0,
            "a new producer whose write failed is forgotten"
        );

        let mut written = Vec::new();
        assert_eq!(engine.accept(&p, &[3], &mut written), Ok(()));
        engine.settle_sequences(&written, true);
        assert_eq!(engine.high_water(&p), Some(3));
        let mut pending = Vec::new();
        assert_eq!(engine.accept(&p, &[4, 5], &mut pending), Ok(()));
        assert_eq!(
            engine.high_water(&p),
            Some(3),
            "not until its write returns"
        );
        assert_eq!(
            engine.accept(&p, &[2], &mut refused),
            Err((2, Duplicate { high_water: 3 })),
            "a duplicate whatever the pending write does"
        );
        assert_eq!(engine.accept(&p, &[9], &mut refused), Err((9, InFlight)));
        engine.settle_sequences(&pending, false);
        assert_eq!(engine.high_water(&p), Some(3));
        assert_eq!(engine.accept(&p, &[4], &mut written), Ok(()));
        assert!(refused.is_empty(), "a refusal claims nothing");
    }

    #[test]
    fn an_entry_is_the_size_the_operations_guide_quotes() {
        assert_eq!(std::mem::size_of::<(Bytes, Producer)>(), 72);
    }

    #[test]
    fn sequences_are_judged_against_the_high_water_mark() {
        assert_eq!(
            judge(None, &[7]),
            Ok(7),
            "an unknown producer starts anywhere"
        );
        assert_eq!(judge(None, &[0, 1, 2]), Ok(2));
        assert_eq!(judge(None, &[0, 2]), Err((2, Gap { expected: 1 })));
        assert_eq!(judge(Some(4), &[5]), Ok(5));
        assert_eq!(judge(Some(4), &[5, 6, 7]), Ok(7));
        assert_eq!(judge(Some(4), &[4]), Err((4, Duplicate { high_water: 4 })));
        assert_eq!(
            judge(Some(4), &[0, 5]),
            Err((0, Duplicate { high_water: 4 }))
        );
        assert_eq!(judge(Some(4), &[6]), Err((6, Gap { expected: 5 })));
        assert_eq!(judge(Some(4), &[5, 7]), Err((7, Gap { expected: 6 })));
        assert_eq!(
            judge(Some(u64::MAX), &[u64::MAX]),
            Err((
                u64::MAX,
                Duplicate {
                    high_water: u64::MAX
                }
            ))
        );
        assert_eq!(judge(Some(u64::MAX - 1), &[u64::MAX]), Ok(u64::MAX));
    }
}
