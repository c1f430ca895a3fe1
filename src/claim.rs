//! [`Claim`]: the two-phase path for effects outside the store (an HTTP call, an email, a write
//! to another database): claim the ID, do the effect, complete the claim.

use crate::clock::from_unix_millis;
use crate::engine::{Acquired, Space, Unsettled};
use crate::error::{Error, Result};
use crate::id::{Fingerprint, payload_fingerprint};
use crate::outcome::Outcome;
use crate::persist::{MAX_RESULT_LEN, MarkValue};
use crate::settings::MAX_WINDOW;
use crate::store::Store;
use bytes::Bytes;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// What [`Store::claim`] found.
#[derive(Debug)]
#[must_use = "an acquired claim is released when dropped"]
pub enum ClaimOutcome {
    /// The caller holds the ID: do the effect, then [`complete`](Claim::complete) the claim.
    Acquired(Claim),
    /// Another caller holds a claim on the ID until `until`, or its mark is being written (then
    /// `until` is the time of the call). Do not ack the message; retry after `until`, or
    /// [wait](Store::wait_settled) for the claim to end.
    InProgress {
        /// When the other caller's lease runs out, unless it extends it.
        until: SystemTime,
    },
    /// The ID was completed (or marked) within the window: the effect has happened. Ack the
    /// message, and answer with `result`, the result the claim was completed with (`None` for a
    /// plain mark or a claim completed without one).
    Completed {
        /// The stored result.
        result: Option<Bytes>,
        /// When the ID was completed or marked.
        at: SystemTime,
    },
    /// The ID was completed, or is claimed, with another payload than the one given: a different
    /// message reusing the ID (Stripe's `idempotency_error`). Only
    /// [`claim_payload`](Store::claim_payload) gets this.
    Conflict {
        /// When the ID was completed, or claimed.
        first_seen: SystemTime,
    },
}

/// The right to do one message's external effect, held until a lease runs out.
///
/// Got from [`Store::claim`]. While it is held, other claims of the ID get
/// [`ClaimOutcome::InProgress`] and check-and-mark gets [`Outcome::InFlight`].
/// [`complete`](Self::complete) marks the ID done (optionally with a result that duplicates get
/// back), atomically with the consumer's own writes if it goes through
/// [`Transaction::complete`](crate::Transaction::complete). [`release`](Self::release) and
/// dropping the claim give the ID back at once, for a retry; a holder that hangs loses it when
/// the lease runs out, and a process that dies loses all of them (leases live in memory only:
/// after a restart, no ID is claimed).
///
/// Owns a handle of its store, so it can move into another thread or task.
pub struct Claim {
    store: Store,
    pub(crate) space: Arc<Space>,
    id: Bytes,
    pub(crate) fp: Fingerprint,
    pub(crate) token: u64,
    until: u64,
    pub(crate) payload: Option<u128>,
    /// Set once the lease is used up (completed): dropping the claim then releases nothing.
    pub(crate) ended: bool,
}

impl Store {
    /// Claims `id` for `lease`, for an effect outside the store; see [`Claim`].
    ///
    /// ```
    /// use dedupstore::{ClaimOutcome, Store};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    ///
    /// match store.claim("charge-9", Duration::from_secs(30))? {
    ///     ClaimOutcome::Acquired(claim) => {
    ///         let receipt = b"charged 90 EUR"; // call the payment provider here
    ///         claim.complete(Some(receipt))?;
    ///     }
    ///     ClaimOutcome::Completed { result, .. } => println!("done before: {result:?}"),
    ///     ClaimOutcome::InProgress { until } => println!("another worker has it until {until:?}"),
    ///     ClaimOutcome::Conflict { .. } => unreachable!("only claim_payload compares payloads"),
    /// }
    /// // A redelivery gets the stored result back.
    /// let ClaimOutcome::Completed { result, .. } = store.claim("charge-9", Duration::from_secs(30))?
    /// else { unreachable!() };
    /// assert_eq!(result.as_deref(), Some(&b"charged 90 EUR"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidId`], or [`Error::InvalidArgument`] for a lease under 1 ms or over
    /// [`MAX_WINDOW`](crate::MAX_WINDOW) (nothing is claimed); an error reading the disk.
    pub fn claim(&self, id: impl AsRef<[u8]>, lease: Duration) -> Result<ClaimOutcome> {
        self.claim_in(self.own_space(), id.as_ref(), None, lease)
    }

    /// [`claim`](Self::claim), keeping the fingerprint of the message's payload with the claim
    /// and its completion: the same ID claimed with another payload is
    /// [`ClaimOutcome::Conflict`], never a silent duplicate.
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    pub fn claim_payload(
        &self,
        id: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
        lease: Duration,
    ) -> Result<ClaimOutcome> {
        let payload = payload_fingerprint(payload.as_ref());
        self.claim_in(self.own_space(), id.as_ref(), Some(payload), lease)
    }

    /// [`claim`](Self::claim) (with a payload's fingerprint) in `space`.
    pub(crate) fn claim_in(
        &self,
        space: &Arc<Space>,
        id: &[u8],
        payload: Option<u128>,
        lease: Duration,
    ) -> Result<ClaimOutcome> {
        let engine = self.engine();
        let fp = space.fingerprint(id, None)?;
        let lease_ms = lease_millis(lease)?;
        Ok(match engine.acquire(space, fp, lease_ms, payload)? {
            Acquired::Held { token, until } => ClaimOutcome::Acquired(Claim {
                store: self.clone(),
                space: Arc::clone(space),
                id: Bytes::copy_from_slice(id),
                fp,
                token,
                until,
                payload,
                ended: false,
            }),
            Acquired::InProgress { until } => ClaimOutcome::InProgress {
                until: from_unix_millis(until),
            },
            Acquired::Completed(mark) => ClaimOutcome::Completed {
                result: mark.result,
                at: from_unix_millis(mark.at),
            },
            Acquired::Conflict { first_seen } => ClaimOutcome::Conflict {
                first_seen: from_unix_millis(first_seen),
            },
        })
    }
}

impl Claim {
    /// The claimed ID.
    #[must_use]
    pub fn id(&self) -> &[u8] {
        &self.id
    }

    /// When the lease runs out, unless extended.
    #[must_use]
    pub fn until(&self) -> SystemTime {
        from_unix_millis(self.until)
    }

    /// Renews the lease for `lease` from now, while the effect takes longer than planned;
    /// returns the new end. Works after the lease ran out too, as long as nobody took the ID
    /// over meanwhile.
    ///
    /// # Errors
    /// [`Error::ClaimLost`] if another caller took the ID over; [`Error::InvalidArgument`] for a
    /// lease out of range (the claim is unchanged).
    pub fn extend(&mut self, lease: Duration) -> Result<SystemTime> {
        let lease_ms = lease_millis(lease)?;
        match self
            .store
            .engine()
            .extend(&self.space, self.fp, self.token, lease_ms)
        {
            Some(until) => {
                self.until = until;
                Ok(from_unix_millis(until))
            }
            None => Err(self.lost()),
        }
    }

    /// Marks the ID done, storing `result` (at most [`MAX_RESULT_LEN`] bytes) for duplicates to
    /// get back while the window keeps the ID. Written like
    /// [`check_and_mark`](Store::check_and_mark): in the write-ahead log (and with
    /// [`Durability::Synced`](crate::Durability::Synced), on stable storage) when this returns.
    /// If the lease ran out but nobody took the ID over, the completion still counts.
    ///
    /// # Errors
    /// [`Error::ClaimLost`] if another caller took the ID over after the lease ran out (nothing
    /// is written); [`Error::InvalidArgument`] for an over-long result (nothing is written, the
    /// claim is released); an I/O or storage error if the write failed (the ID is free again and
    /// the store poisoned, as after a failed `check_and_mark`).
    pub fn complete(mut self, result: Option<&[u8]>) -> Result<()> {
        let result = checked_result(result)?;
        let engine = self.store.engine();
        let mut claims = Unsettled::new(engine, 1);
        let outcome = claims.complete(&self.space, self.fp, self.token, self.payload)?;
        self.ended = true;
        if outcome != Outcome::New {
            return Err(self.lost());
        }
        engine.write_claims(claims, |c| MarkValue {
            at: c.at,
            payload: self.payload,
            result: result.clone(),
        })
    }

    /// Gives the ID back at once, unmarked: the next claim or check of it is new. Dropping the
    /// claim does the same.
    pub fn release(self) {
        drop(self);
    }

    /// Whether this claim belongs to `store`.
    pub(crate) fn is_of(&self, store: &Store) -> bool {
        self.store.same_as(store)
    }

    /// The error for a claim another caller took over.
    fn lost(&self) -> Error {
        Error::ClaimLost {
            completed: matches!(
                self.store.engine().check(&self.space, self.fp),
                Ok(Outcome::Duplicate { .. })
            ),
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.ended {
            self.space.release(self.fp, self.token);
        }
    }
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claim")
            .field("id", &self.id)
            .field("until", &self.until())
            .finish_non_exhaustive()
    }
}

/// A lease in milliseconds, checked.
fn lease_millis(lease: Duration) -> Result<u64> {
    if lease < Duration::from_millis(1) || lease > MAX_WINDOW {
        return Err(Error::InvalidArgument {
            what: "lease",
            detail: format!("{lease:?}; a lease is 1 ms ..= {MAX_WINDOW:?}"),
        });
    }
    // At most MAX_WINDOW, so it fits.
    Ok(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
}

/// A result to store, checked.
pub(crate) fn checked_result(result: Option<&[u8]>) -> Result<Option<Bytes>> {
    match result {
        Some(r) if r.len() > MAX_RESULT_LEN => Err(Error::InvalidArgument {
            what: "result",
            detail: format!("{} bytes; a result is at most {MAX_RESULT_LEN}", r.len()),
        }),
        r => Ok(r.map(Bytes::copy_from_slice)),
    }
}
