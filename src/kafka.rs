//! Rebalance wiring for Kafka consumer groups, through `rdkafka` (feature `kafka`).
//!
//! [`RebalanceContext`] is the consumer's `rdkafka` context and takes over the group's
//! rebalance callback. An assignment starts preparing each partition's store
//! ([`Partitions::assign`]: the local copy, or a restore from the newest checkpoint) and fetches
//! nothing of it yet. A revocation hands each store off ([`Partitions::revoke`]: checkpoint,
//! publish, close) before the partition is given up. The poll loop calls
//! [`RebalanceContext::resume_ready`] between messages: every partition whose store became
//! ready is then assigned to the consumer at an explicit offset, the one after its store's (its
//! first, if the store holds none). The store's offset, not the group's committed one, is where
//! a partition resumes: after a crash it rewinds to the checkpoint, and the effects replay onto
//! the checkpointed state.
//!
//! Assigning a partition with an explicit offset is librdkafka's own way to start it there:
//! nothing of the partition is fetched before its store is ready, and no committed or reset
//! offset is looked up, so there is no pause and no seek to race with the fetch.
//!
//! Each message goes through [`RebalanceContext::store_for`], which hands out its partition's
//! store only while the partition is fetched here, and each message once, in the partition's
//! order. Offsets stored with [`Transaction::set_offset`](crate::Transaction::set_offset) are
//! those of the last message applied, under the topic's name as the stream: a partition resumes
//! at the next one. Set `auto.offset.reset` to `earliest`, so that a partition whose stored
//! offset was removed by retention resumes at the first message kept (a warning is logged)
//! rather than at the end.
//!
//! Both the eager and the cooperative rebalance protocols are supported. Under the eager one
//! the consumer's whole assignment is replaced whenever a partition becomes ready: the
//! partitions already fetched are assigned again at their stores' offsets, so call
//! `resume_ready` between messages, never with one applied halfway.

use crate::error::{Error, Result};
use crate::partitions::{Partition, Partitions};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::Duration;

/// A partition fetched here.
#[derive(Clone, Copy)]
struct Fetched {
    /// The offset it was assigned at, the one after its store's; `None` for the partition's
    /// first (its store held none).
    from: Option<i64>,
    /// The offset after the last message handed out since, if any.
    next: Option<i64>,
}

/// An `rdkafka` consumer context that keeps one dedupstore per assigned partition.
///
/// ```no_run
/// use dedupstore::checkpoint::Checkpoints;
/// use dedupstore::kafka::RebalanceContext;
/// use dedupstore::Partitions;
/// use rdkafka::config::ClientConfig;
/// use rdkafka::consumer::{BaseConsumer, Consumer};
/// use std::time::Duration;
///
/// let partitions = Partitions::builder("/var/lib/orders")
///     .checkpoints(Checkpoints::local("/mnt/checkpoints")?)
///     .open()?;
/// let consumer: BaseConsumer<RebalanceContext> = ClientConfig::new()
///     .set("bootstrap.servers", "127.0.0.1:9092")
///     .set("group.id", "orders")
///     .set("enable.auto.commit", "false")
///     .set("auto.offset.reset", "earliest")
///     .create_with_context(RebalanceContext::new(partitions))?;
/// consumer.subscribe(&["orders"])?;
/// loop {
///     consumer.context().resume_ready(&consumer)?;
///     let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
///     let message = message?;
///     let Some(partition) = consumer.context().store_for(&message) else {
///         continue; // revoked meanwhile: its next owner applies it
///     };
///     // Apply it in one transaction on partition.store(): mark, effect, offset, outbox.
/// #   let _ = partition;
/// #   break;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RebalanceContext {
    partitions: Partitions,
    /// Partitions assigned by the group whose stores are not ready yet: nothing is fetched.
    pending: Mutex<Vec<(String, i32)>>,
    /// Partitions assigned to the consumer at their stores' offsets.
    fetched: Mutex<HashMap<(String, i32), Fetched>>,
}

impl RebalanceContext {
    /// A context keeping its stores in `partitions`.
    #[must_use]
    pub fn new(partitions: Partitions) -> Self {
        Self {
            partitions,
            pending: Mutex::new(Vec::new()),
            fetched: Mutex::new(HashMap::new()),
        }
    }

    /// The stores of the partitions assigned: look a message's store up here
    /// ([`Partitions::get`]).
    #[must_use]
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// The store to apply `message` to, or `None` if the message is to be skipped: its
    /// partition is not fetched here (revoked meanwhile), or the message comes before the offset
    /// the partition was assigned at or before one handed out already (a fetch that went back:
    /// each partition's messages are handed out once, in order).
    ///
    /// The first message of a partition past the offset it was assigned at means that offset
    /// no longer exists (removed by retention or compaction): it is taken, and a warning
    /// logged, as the messages in between are lost to the consumer.
    #[must_use]
    pub fn store_for(&self, message: &impl Message) -> Option<Partition> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let number = u32::try_from(partition).ok()?;
        {
            let mut fetched = self.fetched.lock();
            let position = fetched.get_mut(&(topic.to_owned(), partition))?;
            match (position.next, position.from) {
                (Some(next), _) if offset < next => return None,
                (None, Some(from)) if offset < from => return None,
                (None, Some(from)) if offset > from => tracing::warn!(
                    topic,
                    partition,
                    from,
                    offset,
                    "the offset a partition resumed from is gone (retention or compaction): the messages before this one are skipped"
                ),
                _ => {}
            }
            position.next = Some(offset.saturating_add(1));
        }
        self.partitions.get(topic, number)
    }

    /// Assigns to the consumer every partition whose store became ready, at the offset after
    /// the one its store holds (its first, if it holds none). Returns those assigned. Call it
    /// from the poll loop between messages; it never waits for a restore.
    ///
    /// # Errors
    /// A partition whose store could not be prepared ([`Partitions::wait`]'s error: the
    /// partition is given up here, and fetched by no one until the group reassigns it), or
    /// [`Error::Broker`] if the consumer refused the assignment (the partitions ready are tried
    /// again at the next call).
    pub fn resume_ready(&self, consumer: &BaseConsumer<Self>) -> Result<Vec<Partition>> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut ready = Vec::new();
        let mut still = Vec::new();
        let mut first_error = None;
        for (topic, partition) in pending {
            let Ok(number) = u32::try_from(partition) else {
                continue;
            };
            match self.partitions.wait(&topic, number, Duration::ZERO) {
                Ok(Some(store)) => ready.push((topic, partition, store)),
                Ok(None) => still.push((topic, partition)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.pending.lock().extend(still);
        if !ready.is_empty()
            && let Err(e) = self.fetch(consumer, &ready)
        {
            self.pending
                .lock()
                .extend(ready.iter().map(|(t, p, _)| (t.clone(), *p)));
            return Err(e);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(ready.into_iter().map(|(_, _, store)| store).collect()),
        }
    }

    /// Assigns `ready` to the consumer at their stores' offsets: incrementally under the
    /// cooperative protocol; under the eager one, with every partition already fetched, at
    /// its store's offset.
    fn fetch(
        &self,
        consumer: &BaseConsumer<Self>,
        ready: &[(String, i32, Partition)],
    ) -> Result<()> {
        let mut fetched = self.fetched.lock();
        let cooperative = cooperative(consumer);
        // Each partition to assign, with where it resumes if its store holds no offset yet.
        let mut assigning: Vec<(Partition, Option<i64>)> = Vec::new();
        if !cooperative {
            assigning.extend(fetched.iter().filter_map(|((topic, partition), position)| {
                let number = u32::try_from(*partition).ok()?;
                Some((self.partitions.get(topic, number)?, position.from))
            }));
        }
        assigning.extend(ready.iter().map(|(_, _, store)| (store.clone(), None)));
        let mut list = TopicPartitionList::new();
        let mut positions = Vec::new();
        for (store, otherwise) in &assigning {
            let (topic, partition) = (
                store.stream(),
                i32::try_from(store.partition()).unwrap_or(i32::MAX),
            );
            let from = next_offset(store)?.or(*otherwise);
            list.add_partition_offset(
                topic,
                partition,
                from.map_or(Offset::Beginning, Offset::Offset),
            )
            .map_err(|e| Error::Broker {
                context: format!("assigning {topic}/{partition}"),
                detail: e.to_string(),
            })?;
            positions.push((topic.to_owned(), partition, from));
        }
        let assigned = if cooperative {
            consumer.incremental_assign(&list)
        } else {
            consumer.assign(&list)
        };
        assigned.map_err(|e| Error::Broker {
            context: format!("assigning {} partitions to the consumer", list.count()),
            detail: e.to_string(),
        })?;
        if !cooperative {
            fetched.clear();
        }
        for (topic, partition, from) in positions {
            fetched.insert((topic, partition), Fetched { from, next: None });
        }
        Ok(())
    }

    /// Hands off the partitions in `list` and stops fetching them.
    fn revoke(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        // Those assigned to the consumer: the others (pending) were never fetched.
        let mut fetching = TopicPartitionList::new();
        for element in list.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            self.pending
                .lock()
                .retain(|(t, p)| (t.as_str(), *p) != (topic, partition));
            if self
                .fetched
                .lock()
                .remove(&(topic.to_owned(), partition))
                .is_some()
            {
                fetching.add_partition(topic, partition);
            }
            let Ok(number) = u32::try_from(partition) else {
                continue;
            };
            if let Err(e) = self.partitions.revoke(topic, number) {
                tracing::error!(topic, partition, error = %e, "the hand-off of a revoked partition failed; the next owner replays from an older checkpoint");
            }
        }
        // The rebalance completes with an unassignment call, even of nothing.
        let unassigned = if cooperative(consumer) {
            consumer.incremental_unassign(&fetching)
        } else {
            consumer.unassign()
        };
        if let Err(e) = unassigned {
            tracing::error!(error = %e, "giving revoked partitions up failed");
        }
    }

    /// Starts preparing the stores of the partitions in `list`; nothing of them is fetched
    /// until [`resume_ready`](Self::resume_ready) finds their stores ready.
    fn assign(&self, consumer: &BaseConsumer<Self>, list: &TopicPartitionList) {
        for element in list.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let Ok(number) = u32::try_from(partition) else {
                continue;
            };
            match self.partitions.assign(topic, number) {
                Ok(()) => self.pending.lock().push((topic.to_owned(), partition)),
                Err(e) => {
                    tracing::error!(topic, partition, error = %e, "an assigned partition cannot have a store");
                }
            }
        }
        // The rebalance completes with an assignment call, of nothing: under the eager protocol
        // the rebalance revoked every partition first, and any still fetched is assigned again
        // by the next resume_ready.
        let empty = TopicPartitionList::new();
        let completed = if cooperative(consumer) {
            consumer.incremental_assign(&empty)
        } else {
            let fetched = std::mem::take(&mut *self.fetched.lock());
            self.pending.lock().extend(fetched.into_keys());
            consumer.assign(&empty)
        };
        if let Err(e) = completed {
            tracing::error!(error = %e, "completing an assignment failed");
        }
    }
}

/// Whether the group rebalances with the cooperative protocol (else the eager one).
fn cooperative(consumer: &BaseConsumer<RebalanceContext>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

/// The offset after the one `store` holds for its partition; `None` if it holds none.
fn next_offset(store: &Partition) -> Result<Option<i64>> {
    Ok(store
        .store()
        .offset(store.stream(), store.partition())?
        .map(|stored| i64::try_from(stored.saturating_add(1)).unwrap_or(i64::MAX)))
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        list: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, list),
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => self.revoke(consumer, list),
            other => {
                tracing::error!(error = ?other, "rebalance error: the partitions are handed off");
                self.revoke(consumer, list);
            }
        }
    }
}
