//! Producer sequences: [`Store::accept`] and [`Store::high_water`], for producers that number
//! their messages in order, as Kafka's idempotent producer does. One high-water mark per
//! producer, whatever the number of its messages.

use crate::error::Result;
use crate::outcome::{CommitOutcome, SequenceOutcome};
use crate::store::Store;

impl Store {
    /// Accepts sequence number `seq` of `producer` if it is the producer's next one: its
    /// high-water mark plus one, or anything for a producer the store does not know (new, or
    /// idle for longer than [`producer_idle`](crate::StoreBuilder::producer_idle)). An accepted
    /// sequence becomes the producer's high-water mark, written with the store's durability
    /// before this returns.
    ///
    /// Answers [`SequenceOutcome::Duplicate`] for a sequence at or below the high-water mark,
    /// [`SequenceOutcome::Gap`] for one beyond the next (nothing is accepted: the messages in
    /// between come first), and [`SequenceOutcome::InFlight`] while another caller's accept of
    /// the producer is being written. The state is one high-water mark per producer, so a
    /// producer's messages must be accepted in order: this is for ordered streams (a Kafka
    /// partition's idempotent producer, a device's counter), where [`check_and_mark`]
    /// would keep one mark per message.
    ///
    /// Producers are one space per store, apart from the IDs of marks and from namespaces:
    /// name them with their stream when several streams share a store. To accept a sequence
    /// together with the message's effects, use [`Transaction::accept`](crate::Transaction::accept).
    ///
    /// ```
    /// use dedupstore::{SequenceOutcome, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.accept("producer-1", 0)?, SequenceOutcome::Accepted);
    /// assert_eq!(store.accept("producer-1", 1)?, SequenceOutcome::Accepted);
    /// assert_eq!(store.accept("producer-1", 1)?, SequenceOutcome::Duplicate { high_water: 1 });
    /// assert_eq!(store.accept("producer-1", 5)?, SequenceOutcome::Gap { expected: 2 });
    /// assert_eq!(store.high_water("producer-1")?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// [`check_and_mark`]: Store::check_and_mark
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) unless `producer` is
    /// 1..=[`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes. An I/O or storage error if the high-water
    /// mark could not be written: then the sequence is not accepted in this process, the
    /// message must not be acked, and the store is poisoned until reopened.
    pub fn accept(&self, producer: impl AsRef<[u8]>, seq: u64) -> Result<SequenceOutcome> {
        let mut txn = self.transaction();
        txn.accept(producer, seq)?;
        Ok(match txn.commit()? {
            CommitOutcome::Committed(_) => SequenceOutcome::Accepted,
            CommitOutcome::OutOfSequence(refused) => refused
                .first()
                .map_or(SequenceOutcome::InFlight, |r| r.outcome),
            CommitOutcome::Rejected(_) => {
                unreachable!("a transaction without marks is never rejected for them")
            }
        })
    }

    /// The high-water mark of `producer`: the highest sequence accepted, or `None` for a
    /// producer the store does not know (never accepted, or idle for longer than the producer
    /// idle time). An accept being written is not counted until its write returns.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) unless `producer` is
    /// 1..=[`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes.
    pub fn high_water(&self, producer: impl AsRef<[u8]>) -> Result<Option<u64>> {
        let producer = producer.as_ref();
        crate::txn::check_producer(producer)?;
        Ok(self.engine().high_water(producer))
    }
}
