//! The `wheel` target: one stripe of the hot tier against a model, under random windows, memory
//! budgets, entry limits, clock jumps and claims held open across them.

use super::next;
use crate::MIN_BUDGET_PER_STRIPE;
use crate::id::Fingerprint;
use crate::wheel::{Hot, Stamps, Stripe};
use crate::window::Window;
use arbitrary::{Arbitrary, Unstructured};
use std::collections::HashMap;

#[derive(Arbitrary, Debug)]
struct Setup {
    /// Window length: 1 s to about 388 days (stamp units of 1 ms up to 63 ms).
    window_s: u32,
    slots: u16,
    /// Memory budget above the smallest a store allows, in units of 16 bytes.
    budget: u16,
    max_entries: u16,
}

#[derive(Arbitrary, Debug)]
enum Op {
    /// Look up and claim if absent, then settle at once.
    Mark {
        id: u16,
        written: bool,
    },
    /// Marks `count % 4096` IDs from `first` on (settled durable): enough to overflow a budget.
    Fill {
        first: u16,
        count: u16,
    },
    /// Look up and claim if absent, leaving the claim open.
    Claim {
        id: u16,
    },
    /// Settle the `which`th open claim.
    Settle {
        which: u8,
        written: bool,
    },
    Lookup {
        id: u16,
    },
    /// Let time pass: `by` units of 1/64 of a slot, or whole windows.
    Advance {
        by: u16,
        windows: bool,
    },
    /// Look up and claim if absent, then recall a mark made `age` 1/64ths of a window ago (as
    /// if the disk held it), or fail the claim if that mark is dead.
    Recall {
        id: u16,
        age: u8,
    },
}

/// What the model knows of an ID.
#[derive(Clone, Copy, Debug)]
struct Known {
    at: u64,
    /// The open claim's sequence number, while its write has not returned.
    claim: Option<u64>,
}

/// Runs the stripe through the ops `data` decodes to, checking every answer against the model.
pub fn wheel(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let window_ms = (u64::from(setup.window_s) % (388 * 86_400) + 1) * 1_000;
    let slots = u32::from(setup.slots % 4096 + 1).min(u32::try_from(window_ms).unwrap_or(1));
    let window = Window::new(window_ms, slots);
    let stamps = Stamps::new(window);
    let unit = (window.window_ms + window.slot_ms) / (1 << 29) + 1;
    let budget = MIN_BUDGET_PER_STRIPE + usize::from(setup.budget) * 16;
    let mut stripe = Stripe::new(4, budget, 0);
    let max_entries = u64::from(setup.max_entries).max(2);
    stripe.set_max_entries(max_entries);

    let mut model: HashMap<u16, Known> = HashMap::new();
    let mut open: Vec<(u16, u64)> = Vec::new();
    let mut now: u64 = 1_700_000_000_000;
    // Open claims keep their slots (and all after) from expiring. The engine settles every
    // claim when its write returns; a write outstanding for 2^29 stamp units (six days at
    // 1 ms) would let stamps wrap, which the stripe does not handle. Time is kept below that.
    let wrap = (1u64 << 29) * unit;
    let mut oldest_open = None::<u64>;
    // Whether a lookup ran since time last moved (expiry runs in lookups).
    let mut expired = true;

    while let Some(op) = next(&mut u) {
        match op {
            Op::Advance { by, windows } => {
                let step = if windows {
                    u64::from(by % 4) * window.window_ms
                } else {
                    u64::from(by) * window.slot_ms.div_ceil(64)
                };
                if oldest_open.is_some_and(|t: u64| now + step - t >= wrap) {
                    continue;
                }
                now += step;
                expired &= step == 0;
            }
            Op::Lookup { id } => {
                expired = true;
                let hot = stripe.lookup(fp(id), window, stamps, now);
                check(&mut model, &stripe, window, unit, id, hot, now);
            }
            Op::Mark { id, written } => {
                expired = true;
                if let Some(seq) = claim(&mut stripe, &mut model, window, stamps, unit, id, now) {
                    within_budget(&stripe, budget, &open);
                    stripe.settle(seq, written);
                    settle(&mut model, id, written);
                }
            }
            Op::Fill { first, count } => {
                expired |= count % 4096 > 0;
                for id in (0..count % 4096).map(|i| first.wrapping_add(i)) {
                    if let Some(seq) = claim(&mut stripe, &mut model, window, stamps, unit, id, now)
                    {
                        within_budget(&stripe, budget, &open);
                        stripe.settle(seq, true);
                        settle(&mut model, id, true);
                    }
                }
            }
            Op::Recall { id, age } => {
                expired = true;
                if let Some(seq) = claim(&mut stripe, &mut model, window, stamps, unit, id, now) {
                    let at = now.saturating_sub(u64::from(age) * window.window_ms.div_ceil(64));
                    if window.is_live(at, now) {
                        stripe.recall(seq, at, stamps);
                        model.insert(id, Known { at, claim: None });
                    } else {
                        stripe.settle(seq, false);
                        settle(&mut model, id, false);
                    }
                    within_budget(&stripe, budget, &open);
                }
            }
            Op::Claim { id } => {
                expired = true;
                if let Some(seq) = claim(&mut stripe, &mut model, window, stamps, unit, id, now) {
                    open.push((id, seq));
                    oldest_open.get_or_insert(now);
                }
            }
            Op::Settle { which, written } => {
                if open.is_empty() {
                    continue;
                }
                let (id, seq) = open.remove(usize::from(which) % open.len());
                stripe.settle(seq, written);
                settle(&mut model, id, written);
                if open.is_empty() {
                    oldest_open = None;
                }
            }
        }
        if expired {
            stripe.check_invariants(window, stamps, now);
        }
    }
}

/// Checks the memory budget after an insert (with no other claim open). Entries behind an open claim are never evicted
/// (another caller would miss the claim), so the stripe may outgrow its budget while one is
/// open; the next insert after it settles evicts back within.
fn within_budget(stripe: &Stripe, budget: usize, open: &[(u16, u64)]) {
    if open.is_empty() {
        assert!(
            stripe.bytes() <= budget,
            "{} bytes over a budget of {budget}",
            stripe.bytes()
        );
    }
}

/// Looks `id` up and claims it if the stripe has no live mark; `None` if it did not claim.
fn claim(
    stripe: &mut Stripe,
    model: &mut HashMap<u16, Known>,
    window: Window,
    stamps: Stamps,
    unit: u64,
    id: u16,
    now: u64,
) -> Option<u64> {
    let hot = stripe.lookup(fp(id), window, stamps, now);
    check(model, stripe, window, unit, id, hot, now);
    if hot != Hot::Absent {
        return None;
    }
    let seq = stripe.insert_pending(fp(id), window, stamps, now);
    match seq {
        Some(seq) => {
            model.insert(
                id,
                Known {
                    at: now,
                    claim: Some(seq),
                },
            );
        }
        None => assert!(
            model.values().any(|k| k.claim.is_some()),
            "a claim refused though nothing is pending"
        ),
    }
    seq
}

fn settle(model: &mut HashMap<u16, Known>, id: u16, written: bool) {
    if written {
        if let Some(k) = model.get_mut(&id) {
            k.claim = None;
        }
    } else {
        model.remove(&id);
    }
}

/// Checks one lookup's answer against the model, and forgets what the stripe may forget.
fn check(
    model: &mut HashMap<u16, Known>,
    stripe: &Stripe,
    window: Window,
    unit: u64,
    id: u16,
    hot: Hot,
    now: u64,
) {
    let known = model.get(&id).copied();
    let close = |first_seen: u64, at: u64| first_seen >= at.min(now) && first_seen < at + unit;
    match (known, hot) {
        (Some(k), Hot::Pending { seq, first_seen }) => {
            assert_eq!(k.claim, Some(seq), "id {id}: pending under another claim");
            assert!(
                close(first_seen, k.at),
                "id {id}: {first_seen} for {}",
                k.at
            );
        }
        (Some(k), Hot::Durable { first_seen }) => {
            assert!(
                k.claim.is_none(),
                "id {id}: durable while its claim is open"
            );
            assert!(
                close(first_seen, k.at),
                "id {id}: {first_seen} for {}",
                k.at
            );
            assert!(
                window.is_live(first_seen, now),
                "id {id}: dead mark answered"
            );
        }
        (Some(k), Hot::Absent) => {
            assert!(k.claim.is_none(), "id {id}: an open claim was lost");
            // Dead, or evicted: then a miss is not authoritative.
            assert!(
                !window.is_live(k.at, now) || !stripe.authoritative(window, now),
                "id {id}: live mark at {} lost at {now}",
                k.at
            );
            model.remove(&id);
        }
        (None, Hot::Absent) => {}
        (None, other) => panic!("id {id}: never marked, answered {other:?}"),
    }
}

fn fp(id: u16) -> Fingerprint {
    // A few IDs share a stripe; spread them over the bits as real fingerprints are.
    let b = (u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1).to_le_bytes();
    let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let hi = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    Fingerprint::from_words([lo, hi, lo.rotate_left(7), hi.rotate_left(13)])
}
