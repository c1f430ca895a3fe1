//! What calls answer: [`Outcome`] for a check, [`SequenceOutcome`] for a producer's sequence,
//! [`CommitOutcome`] for a transaction. A leaf, so that every layer can name them.

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
    /// Nothing was written: these producer sequences
    /// ([`Transaction::accept`](crate::Transaction::accept)) were not the next ones. A
    /// transaction's sequences are checked after its marks, so this lists every producer that
    /// kept it from committing, once its marks were all new.
    OutOfSequence(Vec<SequenceConflict>),
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

/// What [`Store::accept`](crate::Store::accept) found for a producer's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SequenceOutcome {
    /// The next sequence of the producer (or the first of a producer the store does not know):
    /// it is now the producer's high-water mark. Process the message.
    Accepted,
    /// At or below the producer's high-water mark: already accepted. Drop the message (and ack
    /// it).
    Duplicate {
        /// The producer's high-water mark: the highest sequence accepted.
        high_water: u64,
    },
    /// Beyond the next sequence: messages in between have not been accepted (lost, or still to
    /// come). Nothing was accepted; hold the message or have it redelivered later.
    Gap {
        /// The sequence the producer is expected to send next: its high-water mark plus one.
        expected: u64,
    },
    /// Another caller's accept of this producer is being written. Do not process the message,
    /// and do not ack it: if that write fails, this sequence may still be the next one.
    InFlight,
}

/// A producer sequence that kept a transaction from committing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceConflict {
    /// The producer, as given to [`Transaction::accept`](crate::Transaction::accept).
    pub producer: Bytes,
    /// The first of its sequences in the transaction (in numeric order) that was not accepted.
    pub seq: u64,
    /// [`SequenceOutcome::Duplicate`], [`SequenceOutcome::Gap`] or
    /// [`SequenceOutcome::InFlight`].
    pub outcome: SequenceOutcome,
}
