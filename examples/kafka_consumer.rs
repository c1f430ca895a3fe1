//! An effectively-once consumer in a Kafka consumer group, one dedupstore per assigned
//! partition, wired to the group's rebalances by `dedupstore::kafka::RebalanceContext`.
//!
//! Topic `orders` carries one message per order, its ID in header `id` and its account as the
//! payload (the producer sends a key's messages to one partition). The group coordinator
//! assigns partitions: each assignment restores the partition's store from the newest
//! checkpoint (or reopens the local copy) and the consumer resumes the partition at the offset
//! after its store's; each revocation checkpoints and publishes the store. Each message is
//! applied in one transaction: the mark, the account's balance incremented (not idempotent, so
//! a duplicate applied shows), the offset and an outbox event. A relay produces the outbox to
//! topic `events` with the partition and sequence number in headers, for downstream dedup.
//!
//! Standard input takes `status` (answers `status <p>=<offset> ...` for the partitions ready),
//! `checkpoint` (answers `checkpointed <n>`) and `quit` (revokes everything and exits).
//!
//! ```text
//! cargo run --release --features kafka --example kafka_consumer -- --brokers 127.0.0.1:9092 \
//!     --root /var/lib/orders/a --checkpoints /mnt/checkpoints
//! ```
//!
//! `--no-dedup` leaves the mark out (to see duplicates applied); `--cooperative` rebalances with
//! the cooperative protocol (`cooperative-sticky`) instead of the eager one; `--crash-after N`
//! aborts the process between the Nth commit and the next poll.

use dedupstore::checkpoint::Checkpoints;
use dedupstore::kafka::RebalanceContext;
use dedupstore::{CommitOutcome, Outcome, Partitions, Store};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use std::error::Error;
use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const TOPIC: &str = "orders";
const EVENTS: &str = "events";
/// How often the outboxes are relayed.
const RELAY_EVERY: Duration = Duration::from_millis(200);

type Result<T> = std::result::Result<T, Box<dyn Error>>;

/// A consumer instance (see the example's documentation).
#[derive(clap::Parser)]
struct Options {
    /// The brokers' addresses (`bootstrap.servers`).
    #[arg(long)]
    brokers: String,
    /// The directory of this instance's stores.
    #[arg(long)]
    root: String,
    /// The checkpoint directory the instances share.
    #[arg(long)]
    checkpoints: String,
    /// Leaves the mark out of each transaction, to see duplicates applied.
    #[arg(long)]
    no_dedup: bool,
    /// Rebalances with the cooperative protocol (`cooperative-sticky`) instead of the eager one.
    #[arg(long)]
    cooperative: bool,
    /// Aborts the process after this many commits, before the next poll.
    #[arg(long)]
    crash_after: Option<u64>,
}

fn main() -> Result<()> {
    let options = <Options as clap::Parser>::parse();
    let partitions = Partitions::builder(&options.root)
        .checkpoints(Checkpoints::local(&options.checkpoints)?)
        .capacity(100_000)
        .memory_budget(64 << 20)
        .open()?;
    let strategy = if options.cooperative {
        "cooperative-sticky"
    } else {
        "range,roundrobin"
    };
    let consumer: BaseConsumer<RebalanceContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.brokers)
        .set("partition.assignment.strategy", strategy)
        .set("group.id", "orders")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create_with_context(RebalanceContext::new(partitions))?;
    consumer.subscribe(&[TOPIC])?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &options.brokers)
        .create()?;
    let commands = stdin_lines();
    let mut commits = 0u64;
    let mut relayed = Instant::now();
    loop {
        for ready in consumer.context().resume_ready(&consumer)? {
            println!(
                "assigned {} {:?} {:?} {}",
                ready.partition(),
                ready.started_from(),
                ready.stored_offset(),
                ready.took().as_millis()
            );
        }
        if let Some(message) = consumer.poll(Duration::from_millis(50)) {
            let message = message?;
            // A message of a partition revoked meanwhile is skipped: its next owner applies it.
            let Some(partition) = consumer.context().store_for(&message) else {
                continue;
            };
            if apply(partition.store(), &message, !options.no_dedup)? {
                commits += 1;
                if options.crash_after == Some(commits) {
                    eprintln!("crashing after commit {commits}, before the next poll");
                    std::process::abort();
                }
            }
        }
        if relayed.elapsed() >= RELAY_EVERY {
            for (stream, p) in consumer.context().partitions().assigned() {
                if let Some(partition) = consumer.context().partitions().get(&stream, p) {
                    relay(&producer, partition.store(), p)?;
                }
            }
            relayed = Instant::now();
        }
        match commands.try_recv() {
            Ok(line) => match line.trim() {
                "status" => {
                    println!("{}", status(consumer.context().partitions())?)
                }
                "checkpoint" => {
                    let mut n = 0;
                    for (stream, p) in consumer.context().partitions().assigned() {
                        if consumer.context().partitions().get(&stream, p).is_some() {
                            consumer.context().partitions().checkpoint(&stream, p)?;
                            n += 1;
                        }
                    }
                    println!("checkpointed {n}");
                }
                "quit" => break,
                other => eprintln!("unknown command {other:?}"),
            },
            Err(mpsc::TryRecvError::Empty) => {}
            Err(mpsc::TryRecvError::Disconnected) => break,
        }
    }
    for (stream, p) in consumer.context().partitions().assigned() {
        if let Some(partition) = consumer.context().partitions().get(&stream, p) {
            relay(&producer, partition.store(), p)?;
        }
    }
    // Hand off before leaving the group: the rebalance our leaving starts gives the partitions
    // to others, and they must find these checkpoints.
    consumer.context().partitions().revoke_all()?;
    consumer.unsubscribe();
    println!("bye");
    Ok(())
}

/// Standard input's lines, read on a thread of their own.
fn stdin_lines() -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Applies one message in one transaction; returns whether it committed.
fn apply(store: &Store, message: &impl Message, dedup: bool) -> Result<bool> {
    let (p, offset) = (
        u32::try_from(message.partition())?,
        u64::try_from(message.offset())?,
    );
    let id = message
        .headers()
        .and_then(|h| h.iter().find(|header| header.key == "id"))
        .and_then(|header| header.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .ok_or("a message without an id header")?;
    let account = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
    let balance: u64 = match store.get("balances", &account)? {
        Some(v) => std::str::from_utf8(&v)?.parse()?,
        None => 0,
    };
    let mut txn = store.transaction();
    if dedup {
        txn.mark(&id)?;
    }
    txn.put("balances", &account, (balance + 1).to_string())?
        .set_offset(TOPIC, p, offset)?
        .outbox(format!("{id} {account} {}", balance + 1));
    match txn.commit()? {
        CommitOutcome::Committed(_) => Ok(true),
        CommitOutcome::Rejected(conflicts)
            if conflicts
                .iter()
                .all(|c| matches!(c.outcome, Outcome::Duplicate { .. })) =>
        {
            // A redelivery: drop it, moving the offset past it so a replay skips it.
            let mut txn = store.transaction();
            txn.set_offset(TOPIC, p, offset)?;
            let _ = txn.commit()?; // no marks: it always commits
            Ok(false)
        }
        // In flight elsewhere: one thread per partition here, so this does not happen; a
        // consumer with more would leave the offset where it is for the redelivery.
        other => Err(format!("{id}: {other:?}").into()),
    }
}

/// Produces the partition's outbox to `events`, each event with its partition and sequence
/// number, then acks the outbox.
fn relay(producer: &BaseProducer, store: &Store, p: u32) -> Result<()> {
    let outbox = store.outbox();
    loop {
        let events = outbox.peek(500)?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(());
        };
        for event in &events {
            let (partition, seq) = (p.to_string(), event.seq.to_string());
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "partition",
                    value: Some(&partition),
                })
                .insert(Header {
                    key: "seq",
                    value: Some(&seq),
                });
            let record = BaseRecord::<(), [u8]>::to(EVENTS)
                .payload(&event.payload[..])
                .headers(headers);
            producer.send(record).map_err(|(e, _)| e)?;
        }
        producer.flush(Duration::from_secs(30))?;
        outbox.ack(last)?;
    }
}

fn status(partitions: &Partitions) -> Result<String> {
    let mut status = String::from("status");
    for (stream, p) in partitions.assigned() {
        if let Some(ready) = partitions.get(&stream, p) {
            let offset = ready.store().offset(TOPIC, p)?.unwrap_or(0);
            status.push_str(&format!(" {p}={offset}"));
        }
    }
    Ok(status)
}
