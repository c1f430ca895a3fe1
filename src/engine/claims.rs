//! Claims with leases: the two-phase path for effects outside the store.
//!
//! [`Engine::acquire`] gives an ID to one caller for a lease, kept in memory beside the stripe's
//! marks ([`Lease`]): meanwhile other claims see it in progress and check-and-mark sees it in
//! flight. [`Engine::complete`] turns the lease into a pending mark, written and settled like any
//! other; [`Engine::release`] and the lease's end give the ID back. A lease is never written:
//! after a restart no claim is in progress (every holder died with the process), so the
//! redelivery of a message whose claim was never completed acquires it again.

use super::{Engine, PendingMark, Space, differs, pend};
use crate::error::Result;
use crate::id::Fingerprint;
use crate::outcome::Outcome;
use crate::persist::MarkValue;
use crate::wheel::{Hot, Lease};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// What [`Engine::acquire`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    /// The caller holds the ID under `token` until `until` (store time, ms).
    Held { token: u64, until: u64 },
    /// Another caller holds it until `until`, or its mark is being written (then `until` is
    /// now).
    InProgress { until: u64 },
    /// A live mark: a completed claim (with its result) or a plain mark.
    Completed(MarkValue),
    /// A mark or claim in progress made with another payload, since `first_seen`.
    Conflict { first_seen: u64 },
}

/// Whether an ID is in flight, for callers waiting for it to settle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flight {
    /// Neither written nor claimed right now.
    Settled,
    /// A write that marks it has not returned.
    Writing,
    /// A claim on it is in progress until `until` (store time, ms).
    Held { until: u64 },
}

impl Engine {
    /// Claims `fp` for `lease_ms`, unless it is marked or claimed already. `payload`, the
    /// fingerprint of the message's payload if given, is kept with the claim and compared with
    /// those of marks and claims found.
    pub(crate) fn acquire(
        &self,
        space: &Space,
        fp: Fingerprint,
        lease_ms: u64,
        payload: Option<u128>,
    ) -> Result<Acquired> {
        let mut stripe = space.hot.stripe(fp).lock();
        let now = self.now_millis();
        if let Some(lease) = stripe.leases.live(fp, now) {
            return Ok(if differs(payload, lease.payload) {
                Acquired::Conflict {
                    first_seen: lease.since,
                }
            } else {
                Acquired::InProgress { until: lease.until }
            });
        }
        match stripe.lookup(fp, space.window, space.stamps, now) {
            Hot::Durable { first_seen } => {
                drop(stripe);
                // The stored result lives on disk only: one read (memtable or block cache).
                let mark = self
                    .cold
                    .find_live(&space.generations, fp, now)?
                    .unwrap_or(MarkValue::at(first_seen));
                return Ok(completed(mark, payload));
            }
            Hot::Pending { .. } => return Ok(Acquired::InProgress { until: now }),
            Hot::Absent => {}
        }
        let authoritative = stripe.authoritative(space.window, now);
        if !authoritative {
            stripe.counters.cold_lookups += 1;
        }
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        let until = now.saturating_add(lease_ms);
        let lease = Lease {
            token,
            since: now,
            until,
            payload,
        };
        stripe.leases.insert(fp, lease, now);
        if authoritative {
            return Ok(Acquired::Held { token, until });
        }
        drop(stripe);
        // The lease makes other callers see the ID in progress while the disk is read without
        // the lock; a read that fails or panics gives it back through `hold`.
        let mut hold = Hold {
            space,
            fp,
            token: Some(token),
        };
        let Some(mark) = self.cold.find_live(&space.generations, fp, now)? else {
            hold.token = None;
            return Ok(Acquired::Held { token, until });
        };
        hold.token = None;
        let mut stripe = space.hot.stripe(fp).lock();
        stripe.leases.remove(fp, token);
        self.remember_in(space, &mut stripe, fp, mark.at);
        drop(stripe);
        space.hot.settled(fp).notify(usize::MAX);
        Ok(completed(mark, payload))
    }

    /// Turns `token`'s lease on `fp` into a pending mark in `claims` and answers `New`. If the
    /// lease was lost (it ran out and someone took the ID over), decides `fp` as a mark would:
    /// `New` if nobody holds or has marked it since, otherwise what they did.
    pub(crate) fn complete(
        &self,
        space: &Arc<Space>,
        fp: Fingerprint,
        token: u64,
        payload: Option<u128>,
        claims: &mut Vec<PendingMark>,
    ) -> Result<Outcome> {
        let mut stripe = space.hot.stripe(fp).lock();
        let now = self.now_millis();
        if !stripe.leases.remove(fp, token) {
            drop(stripe);
            return self.claim(space, fp, payload, claims);
        }
        // Nobody marks an ID while its lease is held, nor takes a lease over without removing
        // it, so the stripe cannot have a mark of `fp` now.
        let found = stripe.lookup(fp, space.window, space.stamps, now);
        debug_assert_eq!(found, Hot::Absent);
        if found != Hot::Absent {
            drop(stripe);
            return self.claim(space, fp, payload, claims);
        }
        let pended = pend(space, &mut stripe, fp, now);
        drop(stripe);
        let Ok(seq) = pended else {
            space.hot.settled(fp).notify(usize::MAX);
            return pended.map(|_| Outcome::New);
        };
        claims.push(PendingMark {
            space: Arc::clone(space),
            fp,
            seq,
            at: now,
        });
        Ok(Outcome::New)
    }

    /// Renews `token`'s lease on `fp` for `lease_ms` from now; the new end, or `None` if the
    /// claim was lost.
    pub(crate) fn extend(
        &self,
        space: &Space,
        fp: Fingerprint,
        token: u64,
        lease_ms: u64,
    ) -> Option<u64> {
        let mut stripe = space.hot.stripe(fp).lock();
        let until = self.now_millis().saturating_add(lease_ms);
        stripe.leases.renew(fp, token, until).then_some(until)
    }

    /// Whether `fp` is being written or claimed right now.
    pub(crate) fn flight(&self, space: &Space, fp: Fingerprint) -> Flight {
        let mut stripe = space.hot.stripe(fp).lock();
        let now = self.now_millis();
        if let Some(lease) = stripe.leases.live(fp, now) {
            return Flight::Held { until: lease.until };
        }
        match stripe.lookup(fp, space.window, space.stamps, now) {
            Hot::Pending { .. } => Flight::Writing,
            Hot::Durable { .. } | Hot::Absent => Flight::Settled,
        }
    }
}

impl Space {
    /// Ends `token`'s claim on `fp` without marking it; does nothing if the claim was lost.
    pub(crate) fn release(&self, fp: Fingerprint, token: u64) {
        let released = self.hot.stripe(fp).lock().leases.remove(fp, token);
        if released {
            self.hot.settled(fp).notify(usize::MAX);
        }
    }
}

/// What a caller with `payload` is told of a live stored `mark`.
fn completed(mark: MarkValue, payload: Option<u128>) -> Acquired {
    if differs(payload, mark.payload) {
        Acquired::Conflict {
            first_seen: mark.at,
        }
    } else {
        Acquired::Completed(mark)
    }
}

/// A lease taken while the disk is read; dropped still holding it (the read failed or
/// panicked), it releases the lease.
struct Hold<'e> {
    space: &'e Space,
    fp: Fingerprint,
    token: Option<u64>,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        if let Some(token) = self.token {
            self.space.release(self.fp, token);
        }
    }
}
