//! The producer-sequence part of the `ops` model: the contract of `Store::accept` restated on
//! the model's state (a high-water mark and an accept time per producer, forgotten after the
//! idle time), independently of the store's code.

use crate::SequenceOutcome;
use crate::outcome::SequenceConflict;
use std::collections::{BTreeMap, BTreeSet};

/// Each producer's high-water mark and the time of the accept that wrote it.
pub(super) type Producers = BTreeMap<u8, (u64, u64)>;

/// A transaction's sequences, by producer: ascending, each given once.
pub(super) type Accepts = BTreeMap<u8, Vec<u64>>;

/// The sequences of `accepts` (producer, sequence) pairs as the fuzzer gave them.
pub(super) fn accepts(pairs: &[(u8, u8)]) -> Accepts {
    let mut by_producer: BTreeMap<u8, BTreeSet<u64>> = BTreeMap::new();
    for &(producer, seq) in pairs.iter().take(4) {
        by_producer
            .entry(producer_of(producer))
            .or_default()
            .insert(sequence_of(seq));
    }
    by_producer
        .into_iter()
        .map(|(p, seqs)| (p, seqs.into_iter().collect()))
        .collect()
}

pub(super) fn producer_of(n: u8) -> u8 {
    n % 3
}

/// Sequences 0..8: enough to meet duplicates, gaps and next ones often.
pub(super) fn sequence_of(n: u8) -> u64 {
    u64::from(n % 8)
}

pub(super) fn producer_name(p: u8) -> String {
    format!("producer-{p}")
}

/// Producer `p`'s high-water mark at `now`, if it was accepted less than `idle` ms ago.
pub(super) fn live_high(producers: &Producers, p: u8, now: u64, idle: u64) -> Option<u64> {
    producers
        .get(&p)
        .filter(|&&(_, at)| now < at + idle)
        .map(|&(high, _)| high)
}

/// What accepting `seqs` over high-water mark `high` answers: the new high-water mark, or the
/// first sequence refused and why. An unknown producer starts wherever its first sequence is.
pub(super) fn expected(high: Option<u64>, seqs: &[u64]) -> Result<u64, (u64, SequenceOutcome)> {
    let mut high = high;
    for &seq in seqs {
        if let Some(h) = high {
            if seq <= h {
                return Err((seq, SequenceOutcome::Duplicate { high_water: h }));
            }
            if seq > h + 1 {
                return Err((seq, SequenceOutcome::Gap { expected: h + 1 }));
            }
        }
        high = Some(seq);
    }
    Ok(high.expect("at least one sequence"))
}

/// Whether every producer of `accepts` would be accepted in `producers` at `now`; those in
/// `unsure` (whose write failed in this process) may go either way.
pub(super) fn all_accepted(
    producers: &Producers,
    accepts: &Accepts,
    unsure: &BTreeSet<u8>,
    now: u64,
    idle: u64,
) -> bool {
    accepts.iter().all(|(&p, seqs)| {
        unsure.contains(&p) || expected(live_high(producers, p, now, idle), seqs).is_ok()
    })
}

/// Applies accepted sequences: each producer's high-water mark becomes its last.
pub(super) fn apply(producers: &mut Producers, accepts: &Accepts, now: u64) {
    for (&p, seqs) in accepts {
        producers.insert(p, (*seqs.last().expect("at least one sequence"), now));
    }
}

/// Whether a transaction refused with `refused` agrees with `producers` at `now`: each names a
/// producer of `accepts` once, with the answer the model expects (any answer, for one in
/// `unsure`; `InFlight` or a duplicate, for one an earlier transaction of the step claimed),
/// and every producer the model surely refuses is named.
pub(super) fn refusal_agrees(
    producers: &Producers,
    accepts: &Accepts,
    refused: &[SequenceConflict],
    (unsure, in_flight): (&BTreeSet<u8>, &BTreeSet<u8>),
    now: u64,
    idle: u64,
) -> bool {
    let mut named = BTreeSet::new();
    for r in refused {
        let Some((&p, seqs)) = accepts
            .iter()
            .find(|&(&p, _)| producer_name(p).as_bytes() == r.producer)
        else {
            return false;
        };
        let judged = expected(live_high(producers, p, now, idle), seqs);
        let plausible = unsure.contains(&p)
            || judged == Err((r.seq, r.outcome))
            || in_flight.contains(&p)
                && match r.outcome {
                    SequenceOutcome::InFlight => r.seq == seqs[0],
                    SequenceOutcome::Duplicate { high_water } => {
                        r.seq == seqs[0] && r.seq <= high_water
                    }
                    _ => false,
                };
        if !plausible || !named.insert(p) {
            return false;
        }
    }
    !named.is_empty()
        && accepts.iter().all(|(&p, seqs)| {
            named.contains(&p)
                || unsure.contains(&p)
                || in_flight.contains(&p)
                || expected(live_high(producers, p, now, idle), seqs).is_ok()
        })
}
