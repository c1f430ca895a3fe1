//! Rebalance wiring for Kafka consumer groups, through `rdkafka` (feature `kafka`).
//!
//! [`RebalanceContext`] is the consumer's `rdkafka` context: the group coordinator's
//! assignments start restoring each partition's store ([`Partitions::assign`]) and pause the
//! partition; revocations hand each store off ([`Partitions::revoke`]: checkpoint, publish,
//! close). The poll loop calls [`RebalanceContext::resume_ready`] before each poll, which seeks
//! every partition whose store is ready to the offset after the one its store holds and resumes
//! it. The store's offset, not the group's committed one, is where a partition resumes: after a
//! crash it rewinds to the checkpoint, and the effects replay onto the checkpointed state.
//!
//! Offsets stored with [`Transaction::set_offset`](crate::Transaction::set_offset) are those of
//! the last message applied: a partition resumes at the next one.

use crate::error::{Error, Result};
use crate::partitions::{Partition, Partitions};
use parking_lot::Mutex;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use std::time::Duration;

/// How long a seek may take before [`RebalanceContext::resume_ready`] gives up on it.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

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
///     .create_with_context(RebalanceContext::new(partitions))?;
/// consumer.subscribe(&["orders"])?;
/// loop {
///     consumer.context().resume_ready(&consumer)?;
///     let Some(message) = consumer.poll(Duration::from_millis(100)) else { continue };
///     let message = message?;
///     // Apply it in one transaction on the partition's store: mark, effect, offset, outbox.
/// #   let _ = message;
/// #   break;
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct RebalanceContext {
    partitions: Partitions,
    /// Partitions assigned and paused, whose stores are not ready yet.
    pending: Mutex<Vec<(String, i32)>>,
}

impl RebalanceContext {
    /// A context keeping its stores in `partitions`.
    #[must_use]
    pub fn new(partitions: Partitions) -> Self {
        Self {
            partitions,
            pending: Mutex::new(Vec::new()),
        }
    }

    /// The stores of the partitions assigned: look a message's store up here
    /// ([`Partitions::get`]).
    #[must_use]
    pub fn partitions(&self) -> &Partitions {
        &self.partitions
    }

    /// Seeks every assigned partition whose store became ready to the offset after the one
    /// its store holds (the beginning, if it holds none), and resumes it. Returns those
    /// resumed. Call it from the poll loop before each poll; it never waits for a restore.
    ///
    /// # Errors
    /// A partition whose store could not be prepared ([`Partitions::wait`]'s error), or
    /// [`Error::Broker`] if a seek or resume failed; the other partitions are resumed all the
    /// same, and a failed one stays paused.
    pub fn resume_ready(&self, consumer: &BaseConsumer<Self>) -> Result<Vec<Partition>> {
        let pending = std::mem::take(&mut *self.pending.lock());
        let mut resumed = Vec::new();
        let mut still = Vec::new();
        let mut first_error = None;
        for (topic, partition) in pending {
            let Ok(number) = u32::try_from(partition) else {
                continue;
            };
            match self.partitions.wait(&topic, number, Duration::ZERO) {
                Ok(Some(ready)) => match resume(consumer, &topic, partition, &ready) {
                    Ok(()) => resumed.push(ready),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                },
                Ok(None) => still.push((topic, partition)),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.pending.lock().extend(still);
        first_error.map_or(Ok(resumed), Err)
    }
}

/// Seeks `partition` of `topic` to the offset after `ready`'s stored one, and resumes it.
fn resume(
    consumer: &BaseConsumer<RebalanceContext>,
    topic: &str,
    partition: i32,
    ready: &Partition,
) -> Result<()> {
    let offset = match ready.stored_offset() {
        Some(stored) => Offset::Offset(i64::try_from(stored.saturating_add(1)).unwrap_or(i64::MAX)),
        None => Offset::Beginning,
    };
    let broker = |what: &str, e: rdkafka::error::KafkaError| Error::Broker {
        context: format!("{what} {topic}/{partition}"),
        detail: e.to_string(),
    };
    consumer
        .seek(topic, partition, offset, SEEK_TIMEOUT)
        .map_err(|e| broker("seeking", e))?;
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    consumer.resume(&list).map_err(|e| broker("resuming", e))
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                for element in list.elements() {
                    let (topic, partition) = (element.topic(), element.partition());
                    self.pending
                        .lock()
                        .retain(|(t, p)| (t.as_str(), *p) != (topic, partition));
                    let Ok(number) = u32::try_from(partition) else {
                        continue;
                    };
                    if let Err(e) = self.partitions.revoke(topic, number) {
                        tracing::error!(topic, partition, error = %e, "the hand-off of a revoked partition failed; the next owner replays from an older checkpoint");
                    }
                }
            }
            Rebalance::Assign(list) => {
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
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        // Paused until their stores are ready: resume_ready seeks and resumes them.
        if let Rebalance::Assign(list) = rebalance
            && let Err(e) = consumer.pause(list)
        {
            tracing::error!(error = %e, "pausing newly assigned partitions failed");
        }
    }
}
