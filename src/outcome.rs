//! What calls answer: [`Outcome`] for a check, [`CommitOutcome`] for a transaction. A leaf,
//! so that every layer can name them.

use bytes::Bytes;
use std::ops::Range;
use std::time::SystemTime;

/// What [`Store::check_and_mark`](crate::Store::check_and_mark) found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Not seen within the window: the ID is now marked. Process the message.
    New,
    /// Marked within the window, durably. Drop the message (and ack it).
    Duplicate {
        /// When the ID was marked: to the millisecond for windows up to about six days; beyond,
        /// from memory, up to one unit of `(W + S) / 2²⁹ + 1` ms late (26 ms for a 157-day
        /// window with 128 slots).
        first_seen: SystemTime,
    },
    /// Another caller marked the ID and its write has not completed, or holds a
    /// [claim](crate::Store::claim) on it. Do not process the message, and do not ack it: if that
    /// write fails or that claim is released, the broker's redelivery must still be processed.
    /// [`Store::wait_settled`](crate::Store::wait_settled) waits for it to end.
    InFlight,
    /// The ID was marked (or is claimed) with another payload than the one given: not a
    /// redelivery but a different message reusing the ID. Never answered to a caller that gave
    /// no payload, nor about a mark made without one.
    Conflict {
        /// When the ID was marked, or claimed.
        first_seen: SystemTime,
    },
}

/// What became of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum CommitOutcome {
    /// Everything was written, atomically and with the store's durability.
    Committed(Receipt),
    /// Nothing was written: these marks were already present, or in flight.
    Rejected(Vec<Conflict>),
}

/// What a committed transaction was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The sequence numbers of its outbox events, in the order they were added (empty if it
    /// added none).
    pub outbox: Range<u64>,
}

/// A mark that kept a transaction from committing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The ID, as given to [`Transaction::mark`](crate::Transaction::mark).
    pub id: Bytes,
    /// The namespace it was marked in ([`Transaction::mark_in`](crate::Transaction::mark_in));
    /// `None` for the store's own ID space.
    pub namespace: Option<String>,
    /// [`Outcome::Duplicate`], [`Outcome::InFlight`] or [`Outcome::Conflict`].
    pub outcome: Outcome,
}
