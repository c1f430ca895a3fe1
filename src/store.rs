//! [`Store`]: open, check-and-mark, contains, transactions and reads.

use crate::commit::Committer;
use crate::engine::{Engine, Space, Unsettled};
use crate::error::Result;
use crate::id::{Fingerprint, payload_fingerprint};
use crate::outcome::Outcome;
use crate::persist::{MarkValue, offset_key, table_cf};
use crate::settings::Settings;
use crate::stats::Stats;
use crate::wheel::HotTotals;
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A windowed store of message IDs: a lock-striped in-memory time-wheel in front of RocksDB.
///
/// Cheap to clone; clones share one store, and every method takes `&self` from any thread.
/// [`Transaction`](crate::Transaction)s and [`Outbox`](crate::Outbox)es hold a clone of their
/// own, so they can move into other threads and tasks. The directory stays locked until the last
/// handle (clones, transactions and outboxes) is dropped.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    // Field order is drop order: the committer finishes what is queued before the engine closes.
    committer: Committer,
    engine: Arc<Engine>,
}

impl Store {
    pub(crate) fn open_with(settings: &Settings) -> Result<Self> {
        let engine = Arc::new(Engine::open(settings)?);
        let committer = Committer::start(Arc::clone(&engine), settings.commit_queue)?;
        Ok(Self {
            inner: Arc::new(Inner { committer, engine }),
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub(crate) fn committer(&self) -> &Committer {
        &self.inner.committer
    }

    /// Whether `other` is a handle of this same store.
    pub(crate) fn same_as(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Marks `id` as seen unless it already was within the window: an atomic test-and-set.
    ///
    /// Among concurrent callers with one ID exactly one gets [`Outcome::New`]; the others get
    /// [`Outcome::Duplicate`], or [`Outcome::InFlight`] while the winner's write is not yet
    /// durable. A `New` mark is in the write-ahead log (and, with
    /// [`Durability::Synced`](crate::Durability::Synced), on stable storage) when this returns.
    /// To commit the mark together with the message's effects, use a
    /// [`transaction`](Self::transaction).
    ///
    /// ```
    /// use dedupstore::{Outcome, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.check_and_mark("order-42")?, Outcome::New);
    /// assert!(matches!(store.check_and_mark("order-42")?, Outcome::Duplicate { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId) for an empty or over-long ID (nothing is
    /// written); an I/O or storage error if the mark could not be written. Then the ID stays
    /// unmarked in this process, the message must not be acked, and the store is poisoned
    /// ([`Error::Poisoned`](crate::Error::Poisoned)) until reopened.
    pub fn check_and_mark(&self, id: impl AsRef<[u8]>) -> Result<Outcome> {
        self.check_and_mark_in(self.own_space(), id.as_ref(), None)
    }

    /// [`check_and_mark`](Self::check_and_mark), keeping the fingerprint of the message's
    /// payload with the mark: the same ID with another payload is [`Outcome::Conflict`], never a
    /// silent `Duplicate`. A duplicate whose payload is compared costs one read of the stored
    /// mark (the memtable or the block cache, mostly).
    ///
    /// ```
    /// use dedupstore::{Outcome, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// assert_eq!(store.check_and_mark_payload("order-7", b"2 apples")?, Outcome::New);
    /// assert!(matches!(
    ///     store.check_and_mark_payload("order-7", b"2 apples")?,
    ///     Outcome::Duplicate { .. }
    /// ));
    /// assert!(matches!(
    ///     store.check_and_mark_payload("order-7", b"9 pears")?,
    ///     Outcome::Conflict { .. }
    /// ));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`check_and_mark`](Self::check_and_mark).
    pub fn check_and_mark_payload(
        &self,
        id: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<Outcome> {
        let payload = payload_fingerprint(payload.as_ref());
        self.check_and_mark_in(self.own_space(), id.as_ref(), Some(payload))
    }

    /// The store's own ID space (the one outside every namespace).
    pub(crate) fn own_space(&self) -> &Arc<Space> {
        &self.engine().store_space
    }

    /// [`check_and_mark`](Self::check_and_mark) (with a payload's fingerprint) in `space`.
    pub(crate) fn check_and_mark_in(
        &self,
        space: &Arc<Space>,
        id: &[u8],
        payload: Option<u128>,
    ) -> Result<Outcome> {
        let engine = self.engine();
        let fp = space.fingerprint(id, None)?;
        let mut claims = Unsettled::new(engine, 1);
        let outcome = claims.claim(space, fp, payload)?;
        engine.write_claims(claims, |c| MarkValue {
            payload,
            ..MarkValue::at(c.at)
        })?;
        Ok(outcome)
    }

    /// [`check_and_mark`](Self::check_and_mark) for a batch, with one write for all new marks.
    ///
    /// Outcomes come in the order of `ids`. An ID repeated inside the batch is `New` the first
    /// time and `Duplicate` after.
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId) naming the first bad ID's position, before
    /// anything is marked; an I/O or storage error if the batch could not be written (none of
    /// its IDs is marked).
    pub fn check_and_mark_batch<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<Outcome>> {
        self.check_and_mark_batch_in(self.own_space(), ids)
    }

    /// [`check_and_mark_batch`](Self::check_and_mark_batch) in `space`.
    pub(crate) fn check_and_mark_batch_in<I: AsRef<[u8]>>(
        &self,
        space: &Arc<Space>,
        ids: &[I],
    ) -> Result<Vec<Outcome>> {
        let engine = self.engine();
        let fps = fingerprints(space, ids)?;
        let mut claims = Unsettled::new(engine, fps.len());
        let outcomes = claims.claim_batch(space, &fps)?;
        engine.write_claims(claims, |c| MarkValue::at(c.at))?;
        Ok(outcomes)
    }

    /// Whether `id` is marked within the window (a mark still in flight counts). Marks nothing.
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId), or an error reading the disk.
    pub fn contains(&self, id: impl AsRef<[u8]>) -> Result<bool> {
        self.contains_in(self.own_space(), id.as_ref())
    }

    /// [`contains`](Self::contains) in `space`.
    pub(crate) fn contains_in(&self, space: &Arc<Space>, id: &[u8]) -> Result<bool> {
        Ok(self.engine().check(space, space.fingerprint(id, None)?)? != Outcome::New)
    }

    /// [`contains`](Self::contains) for a batch; answers come in the order of `ids`.
    ///
    /// # Errors
    /// As [`contains`](Self::contains); a bad ID is reported by position.
    pub fn contains_batch<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<bool>> {
        self.contains_batch_in(self.own_space(), ids)
    }

    /// [`contains_batch`](Self::contains_batch) in `space`.
    pub(crate) fn contains_batch_in<I: AsRef<[u8]>>(
        &self,
        space: &Arc<Space>,
        ids: &[I],
    ) -> Result<Vec<bool>> {
        let outcomes = self
            .engine()
            .check_batch(space, &fingerprints(space, ids)?)?;
        Ok(outcomes.into_iter().map(|o| o != Outcome::New).collect())
    }

    /// The value of `key` in the consumer's table `table`, if any.
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName) for a bad table name, or an error
    /// reading the disk.
    pub fn get(&self, table: &str, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        self.engine().cold.get(&table_cf(table)?, key.as_ref())
    }

    /// The offset last committed for partition `partition` of stream `stream`, if any.
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName) for a bad stream name, or an error
    /// reading the disk.
    pub fn offset(&self, stream: &str, partition: u32) -> Result<Option<u64>> {
        self.engine().cold.offset(&offset_key(stream, partition)?)
    }

    /// Counters and sizes, for monitoring.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let engine = self.engine();
        let namespaces = engine.namespaces.all();
        let spaces = || std::iter::once(&engine.store_space).chain(&namespaces);
        let hot = spaces()
            .map(|s| s.hot.totals())
            .fold(HotTotals::default(), HotTotals::add);
        let commits = self.committer().counters();
        let (block_cache_bytes, memtable_bytes) = engine.cold.memory_usage();
        Stats {
            hot_ids: hot.ids,
            hot_bytes: hot.bytes,
            memory_budget: engine.memory_budget()
                + namespaces.iter().map(|s| s.memory_budget).sum::<u64>(),
            block_cache_bytes,
            memtable_bytes,
            filter_bytes: spaces().map(|s| s.generations.filter_bytes()).sum(),
            hot_evictions: hot.evictions,
            claims_held: hot.leases,
            cold_lookups: hot.cold_lookups,
            generation_reads: engine.cold.generation_reads(),
            namespaces: namespaces.len(),
            producers: engine.producers(),
            generations: spaces().map(|s| s.generations.count()).sum(),
            failed_generation_drops: self.engine().cold.failed_drops(),
            commit_groups: commits.groups.load(Ordering::Relaxed),
            committed_transactions: commits.transactions.load(Ordering::Relaxed),
            largest_commit_group: commits.largest.load(Ordering::Relaxed),
        }
    }

    /// Writes every memtable to table files and syncs the write-ahead log: after this, every
    /// write acknowledged before the call survives power loss, whatever the durability setting.
    ///
    /// # Errors
    /// An I/O or storage error.
    pub fn flush(&self) -> Result<()> {
        self.engine().cold.flush()
    }

    /// Syncs the write-ahead log and drops this handle. Closing the last handle first lets the
    /// committer write the transactions still queued, so the sync covers them too; the
    /// directory is unlocked once every handle is gone (clones, transactions and outboxes). Dropping a store without `close` loses
    /// nothing a process crash would not: acknowledged writes are already in the log.
    ///
    /// # Errors
    /// An I/O error syncing the log.
    pub fn close(self) -> Result<()> {
        match Arc::try_unwrap(self.inner) {
            Ok(Inner { committer, engine }) => {
                drop(committer); // writes what is queued, then stops
                engine.cold.sync_wal()
            }
            Err(shared) => shared.engine.cold.sync_wal(),
        }
    }
}

/// Fingerprints every ID in `space`, failing on the first bad one before anything happens.
fn fingerprints<I: AsRef<[u8]>>(space: &Space, ids: &[I]) -> Result<Vec<Fingerprint>> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| space.fingerprint(id.as_ref(), Some(i)))
        .collect()
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("window", &self.own_space().window)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{Op, Strike};
    use crate::{CommitOutcome, Error};

    /// A failed write poisons the store: it and every later write fail, reads go on, the failed
    /// marks stay unmarked in memory, and reopening recovers the last consistent state.
    fn poisoning(strike: Strike) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check_and_mark("before").unwrap(), Outcome::New);
        // The table exists before the fault, so that the write it strikes is the transaction's.
        let mut txn = store.transaction();
        txn.put("rows", "earlier", "v").unwrap();
        assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
        store.engine().cold.fault.arm(Op::Write, 0, strike);

        let mut txn = store.transaction();
        txn.mark("m").unwrap().put("rows", "k", "v").unwrap();
        txn.set_offset("s", 0, 7).unwrap().outbox("event");
        assert!(matches!(txn.commit(), Err(Error::Io { .. })));

        assert!(matches!(
            store.check_and_mark("x"),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(
            store.check_and_mark_batch(&["y", "z"]),
            Err(Error::Poisoned { .. })
        ));
        let mut txn = store.transaction();
        txn.mark("w").unwrap();
        assert!(matches!(txn.commit(), Err(Error::Poisoned { .. })));
        assert!(matches!(store.outbox().ack(0), Err(Error::Poisoned { .. })));
        assert!(store.contains("before").unwrap(), "reads go on");
        assert!(
            !store.contains("m").unwrap(),
            "the failed mark is not in flight forever"
        );
        assert!(!store.contains("x").unwrap());
        drop(store);

        let store = Store::open(dir.path()).unwrap();
        let written = strike == Strike::After;
        // All of the failed transaction or none of it.
        assert_eq!(store.contains("m").unwrap(), written);
        assert_eq!(store.get("rows", "k").unwrap().is_some(), written);
        assert_eq!(store.offset("s", 0).unwrap(), written.then_some(7));
        assert_eq!(store.outbox().peek(10).unwrap().len(), usize::from(written));
        assert!(!store.contains("x").unwrap());
        assert!(store.contains("before").unwrap());
        let mut txn = store.transaction();
        txn.mark("after-reopen").unwrap();
        assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    }

    #[test]
    fn a_write_failing_before_the_log_poisons_the_store() {
        poisoning(Strike::Before);
    }

    #[test]
    fn a_write_failing_after_the_log_poisons_the_store() {
        poisoning(Strike::After);
    }

    /// Whoever writes the group (the committer or a caller waiting on a ticket), its failure
    /// (an error, or a panic caught below the write) reaches every ticket in it, none of its
    /// marks stays in flight, and later submissions are answered, not left waiting.
    fn failed_group(strike: Strike) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.engine().cold.fault.arm(Op::Write, 0, strike);
        let tickets: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|id| {
                let mut txn = store.transaction();
                txn.mark(id).unwrap().outbox(*id);
                txn.submit().unwrap()
            })
            .collect();
        for ticket in tickets {
            match ticket.wait() {
                Err(Error::Poisoned { .. }) => {}
                Err(Error::Io { .. }) if strike != Strike::Panic => {}
                other => panic!("{other:?}"),
            }
        }
        for id in ["a", "b", "c"] {
            assert!(
                !store.contains(id).unwrap(),
                "{id} is not in flight forever"
            );
        }
        for _ in 0..40 {
            let mut txn = store.transaction();
            txn.mark("later").unwrap();
            assert!(matches!(
                txn.submit().unwrap().wait(),
                Err(Error::Poisoned { .. })
            ));
        }
        store.close().unwrap();
        let store = Store::open(dir.path()).unwrap();
        for id in ["a", "b", "c"] {
            assert!(!store.contains(id).unwrap());
        }
        assert!(store.outbox().peek(10).unwrap().is_empty());
    }

    #[test]
    fn a_failed_group_fails_every_transaction_in_it() {
        failed_group(Strike::Before);
    }

    #[test]
    fn a_panic_in_a_group_write_fails_the_group_and_the_committer_goes_on() {
        failed_group(Strike::Panic);
    }

    #[test]
    fn a_huge_capacity_hint_opens_without_taking_its_memory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).capacity(1 << 40).open().unwrap();
        let presized = store.stats().hot_bytes;
        assert!(presized < 200 << 20, "{presized} bytes at open");
        assert_eq!(store.check_and_mark("x").unwrap(), Outcome::New);
    }

    #[test]
    fn a_store_is_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<Store>();
    }

    #[test]
    fn a_failed_check_and_mark_leaves_the_id_unmarked() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
        store.engine().cold.fault.arm(Op::Write, 0, Strike::Before);
        assert!(matches!(
            store.check_and_mark_batch(&["b", "c"]),
            Err(Error::Io { .. })
        ));
        assert_eq!(
            store.contains_batch(&["a", "b", "c"]).unwrap(),
            [true, false, false]
        );
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.check_and_mark_batch(&["a", "b", "c"]).unwrap()[1..],
            [Outcome::New, Outcome::New]
        );
    }
}
