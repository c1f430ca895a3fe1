//! Claims in progress: the leases a stripe's callers hold while they do an external effect.
//!
//! A lease lives only in memory, beside the stripe's marks and under the same lock. It is not a
//! mark: completing the claim turns it into one. A lease whose time has passed is dead and may be
//! taken over; it is removed when someone looks at it, or by the sweep an insert runs once the
//! map has doubled since the last one, so forgotten leases cost amortised O(1).

use crate::id::Fingerprint;
use std::collections::HashMap;

/// One claim in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Lease {
    /// Names the holder: a lease taken over gets a new token, so the old holder's calls fail.
    pub token: u64,
    /// When it was acquired (store time, ms).
    pub since: u64,
    /// When it runs out (store time, ms): live while `now < until`.
    pub until: u64,
    /// The fingerprint of the payload it was claimed with.
    pub payload: Option<u128>,
}

impl Lease {
    pub(crate) fn is_live(&self, now: u64) -> bool {
        now < self.until
    }
}

/// The leases of one stripe.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    map: HashMap<Fingerprint, Lease>,
    /// The map's size after the last sweep.
    swept: usize,
}

/// Sweeps never run below this many leases.
const MIN_SWEEP: usize = 64;

impl Leases {
    /// The lease on `fp`, live or not.
    #[cfg(test)]
    pub(crate) fn get(&self, fp: Fingerprint) -> Option<&Lease> {
        self.map.get(&fp)
    }

    /// The live lease on `fp` at `now`.
    pub(crate) fn live(&self, fp: Fingerprint, now: u64) -> Option<&Lease> {
        self.map.get(&fp).filter(|l| l.is_live(now))
    }

    /// Gives `fp` to `lease`, replacing a dead lease (its holder has lost it).
    pub(crate) fn insert(&mut self, fp: Fingerprint, lease: Lease, now: u64) {
        debug_assert!(self.live(fp, now).is_none());
        if self.map.len() >= (2 * self.swept).max(MIN_SWEEP) {
            self.map.retain(|_, l| l.is_live(now));
            self.swept = self.map.len();
        }
        self.map.insert(fp, lease);
    }

    /// Removes the lease on `fp` if `token` holds it; returns whether it did.
    pub(crate) fn remove(&mut self, fp: Fingerprint, token: u64) -> bool {
        if self.map.get(&fp).is_some_and(|l| l.token == token) {
            self.map.remove(&fp);
            true
        } else {
            false
        }
    }

    /// Removes a dead lease on `fp` (someone is taking the ID over).
    pub(crate) fn remove_dead(&mut self, fp: Fingerprint, now: u64) {
        if self.map.get(&fp).is_some_and(|l| !l.is_live(now)) {
            self.map.remove(&fp);
        }
    }

    /// Moves the end of `token`'s lease on `fp` to `until`; returns whether `token` holds it.
    pub(crate) fn renew(&mut self, fp: Fingerprint, token: u64, until: u64) -> bool {
        match self.map.get_mut(&fp) {
            Some(l) if l.token == token => {
                l.until = until;
                true
            }
            _ => false,
        }
    }

    /// Leases held, dead ones not yet removed included.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(token: u64, until: u64) -> Lease {
        Lease {
            token,
            since: 0,
            until,
            payload: None,
        }
    }

    #[test]
    fn only_the_holder_renews_or_removes() {
        let fp = Fingerprint::from_raw(1);
        let mut leases = Leases::default();
        leases.insert(fp, lease(1, 10), 0);
        assert!(leases.live(fp, 9).is_some());
        assert!(leases.live(fp, 10).is_none(), "dead at its end");
        assert!(!leases.renew(fp, 2, 20));
        assert!(!leases.remove(fp, 2));
        assert!(leases.renew(fp, 1, 20));
        assert!(leases.live(fp, 19).is_some());
        leases.remove_dead(fp, 19);
        assert!(leases.get(fp).is_some(), "a live lease is not taken over");
        leases.remove_dead(fp, 20);
        assert!(leases.get(fp).is_none());
        leases.insert(fp, lease(3, 30), 20);
        assert!(
            !leases.remove(fp, 1),
            "a lease taken over is not the old holder's"
        );
        assert!(leases.remove(fp, 3));
    }

    #[test]
    fn forgotten_leases_are_swept() {
        let mut leases = Leases::default();
        for i in 0..10_000u64 {
            leases.insert(Fingerprint::from_raw(u128::from(i)), lease(i, i + 1), i);
        }
        assert!(
            leases.len() <= 2 * MIN_SWEEP,
            "{} leases kept",
            leases.len()
        );
    }
}
