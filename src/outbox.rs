//! [`Outbox`]: the events transactions committed, for a relay to deliver.

use crate::error::Result;
use crate::persist::OutboxEntry;
use crate::store::Store;

/// The outbox of a store. Made by [`Store::outbox`].
///
/// A relay peeks at the oldest events, delivers them, then acks up to the last one delivered.
/// Acked events are removed durably; a relay that crashes before acking re-reads them
/// (delivery from the outbox is at-least-once, like the broker's).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let store = dedupstore::Store::open(dir.path())?;
/// let mut txn = store.transaction();
/// txn.mark("order-1")?.outbox("order-1 shipped");
/// let _ = txn.commit()?;
///
/// let outbox = store.outbox();
/// for event in outbox.peek(100)? {
///     println!("deliver #{}: {:?}", event.seq, event.payload);
///     outbox.ack(event.seq)?;
/// }
/// assert!(outbox.peek(100)?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    /// A handle of its own, so a relay can move the outbox into its thread or task.
    store: Store,
}

impl Store {
    /// The outbox: events committed by transactions, for a relay to deliver and ack.
    #[must_use]
    pub fn outbox(&self) -> Outbox {
        Outbox::new(self.clone())
    }
}

impl Outbox {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Up to `limit` of the oldest events not yet acked, in commit order.
    ///
    /// # Errors
    /// An error reading the disk.
    pub fn peek(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        self.store.engine().cold.outbox_peek(limit)
    }

    /// Removes every event numbered `up_to_seq` or lower, through the write-ahead log (with the
    /// store's durability). Acking again, or beyond the newest event, is harmless.
    ///
    /// # Errors
    /// An I/O or storage error; like any failed write, it poisons the store.
    pub fn ack(&self, up_to_seq: u64) -> Result<()> {
        self.store.engine().cold.outbox_ack(up_to_seq)
    }
}
