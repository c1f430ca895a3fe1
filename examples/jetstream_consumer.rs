//! An effectively-once consumer of a partitioned NATS JetStream stream, one dedupstore per
//! partition, handing partitions off through checkpoints.
//!
//! The stream `ORDERS` holds subjects `orders.<p>` (the producer hashes the account to a
//! partition). For each partition this instance is assigned, a pull consumer with explicit acks
//! reads from the partition store's stored offset, and each message is applied in one
//! transaction: the mark (the `Nats-Msg-Id` header, or the payload's fingerprint), the effect
//! (the account's balance, incremented: not idempotent, so a duplicate applied shows), the
//! offset and an outbox event. A message is acked only after its commit; a duplicate is acked and
//! dropped; a message in flight is never acked. A relay publishes the outbox to `events.<p>`
//! with the event's partition and sequence number in headers, for downstream dedup.
//!
//! JetStream 2.9 has no consumer groups, so assignments come from outside (a deployment's static
//! assignment, or the end-to-end test): one command per line on standard input,
//!
//! - `assign <p>`: prepare the partition's store (restored from the newest checkpoint, or
//!   reopened), then consume from its stored offset; answers `assigned <p> <from> <offset> <ms>`;
//! - `revoke <p>`: stop consuming, relay the outbox, checkpoint and publish; answers
//!   `revoked <p> <ms>`;
//! - `checkpoint`: checkpoint every ready partition while consuming; answers `checkpointed <n>`;
//! - `status`: answers `status <p>=<offset> ...`, the stored offset of each ready partition;
//! - `quit`: revoke everything and exit.
//!
//! ```text
//! cargo run --release --example jetstream_consumer -- --server 127.0.0.1:4222 \
//!     --root /var/lib/orders/a --checkpoints /mnt/checkpoints
//! ```
//!
//! Options (`--help` lists them): `--no-dedup` leaves the mark out (to see duplicates applied),
//! `--crash-after N` aborts the process between the Nth commit and its ack.

use async_nats::HeaderMap;
use async_nats::jetstream::{self, AckKind, consumer::DeliverPolicy, consumer::pull};
use dedupstore::checkpoint::Checkpoints;
use dedupstore::{CommitOutcome, Outcome, Partition, Partitions, Store, fingerprint};
use std::collections::HashMap;
use std::error::Error;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinHandle;

const STREAM: &str = "ORDERS";
/// The stream name the partitions' offsets are stored under.
const OFFSETS: &str = "orders";

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// A consumer instance (see the example's documentation).
#[derive(clap::Parser)]
struct Options {
    /// The NATS server's URL.
    #[arg(long)]
    server: String,
    /// The directory of this instance's stores.
    #[arg(long)]
    root: String,
    /// The checkpoint directory the instances share.
    #[arg(long)]
    checkpoints: String,
    /// This instance's name [default: the process ID].
    #[arg(long)]
    instance: Option<String>,
    /// Leaves the mark out of each transaction, to see duplicates applied.
    #[arg(long)]
    no_dedup: bool,
    /// Aborts the process after this many commits.
    #[arg(long)]
    crash_after: Option<u64>,
}

/// What the partition tasks share.
struct Consumer {
    js: jetstream::Context,
    partitions: Partitions,
    instance: String,
    dedup: bool,
    crash_after: Option<u64>,
    commits: AtomicU64,
}

/// A partition being consumed: its task, and the flag that stops it.
struct Running {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Result<()>>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = <Options as clap::Parser>::parse();
    let client = async_nats::connect(&options.server).await?;
    let partitions = Partitions::builder(&options.root)
        .checkpoints(Checkpoints::local(&options.checkpoints)?)
        .capacity(100_000)
        .memory_budget(64 << 20)
        .open()?;
    let consumer = Arc::new(Consumer {
        js: jetstream::new(client),
        partitions,
        instance: options
            .instance
            .unwrap_or_else(|| std::process::id().to_string()),
        dedup: !options.no_dedup,
        crash_after: options.crash_after,
        commits: AtomicU64::new(0),
    });
    let mut running: HashMap<u32, Running> = HashMap::new();
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["assign", p] => {
                let p: u32 = p.parse()?;
                consumer.partitions.assign(OFFSETS, p)?;
                // A real consumer pauses the partition and asks again at its next poll; here
                // nothing else waits, so keep asking.
                let ready = loop {
                    if let Some(ready) =
                        consumer
                            .partitions
                            .wait(OFFSETS, p, Duration::from_millis(200))?
                    {
                        break ready;
                    }
                };
                println!(
                    "assigned {p} {:?} {:?} {}",
                    ready.started_from(),
                    ready.stored_offset(),
                    ready.took().as_millis()
                );
                let stop = Arc::new(AtomicBool::new(false));
                let task = tokio::spawn(Arc::clone(&consumer).consume(ready, Arc::clone(&stop)));
                running.insert(p, Running { stop, task });
            }
            ["revoke", p] => {
                let p: u32 = p.parse()?;
                let started = std::time::Instant::now();
                if let Some(r) = running.remove(&p) {
                    r.stop.store(true, Ordering::Relaxed);
                    r.task.await??;
                }
                consumer.partitions.revoke(OFFSETS, p)?;
                println!("revoked {p} {}", started.elapsed().as_millis());
            }
            ["checkpoint"] => {
                let mut n = 0;
                for p in running.keys() {
                    consumer.partitions.checkpoint(OFFSETS, *p)?;
                    n += 1;
                }
                println!("checkpointed {n}");
            }
            ["status"] => {
                let mut status = String::from("status");
                for (stream, p) in consumer.partitions.assigned() {
                    if let Some(ready) = consumer.partitions.get(&stream, p) {
                        let offset = ready.store().offset(OFFSETS, p)?.unwrap_or(0);
                        status.push_str(&format!(" {p}={offset}"));
                    }
                }
                println!("{status}");
            }
            ["quit"] => break,
            _ => eprintln!("unknown command {line:?}"),
        }
    }
    for (_, r) in running.drain() {
        r.stop.store(true, Ordering::Relaxed);
        r.task.await??;
    }
    consumer.partitions.revoke_all()?;
    println!("bye");
    Ok(())
}

impl Consumer {
    /// Consumes one partition from its stored offset until `stop`, then relays what is left
    /// of its outbox.
    async fn consume(self: Arc<Self>, ready: Partition, stop: Arc<AtomicBool>) -> Result<()> {
        let p = ready.partition();
        let store = ready.store().clone();
        let stream = self.js.get_stream(STREAM).await?;
        // Resume after the stored offset, whatever the broker remembers of acks: the store's
        // state is the truth, and replaying onto it is exact.
        let deliver_policy = match ready.stored_offset() {
            Some(offset) => DeliverPolicy::ByStartSequence {
                start_sequence: offset + 1,
            },
            None => DeliverPolicy::All,
        };
        let name = format!("orders-{p}-{}-{}", self.instance, fastrand::u32(..));
        let consumer = stream
            .create_consumer(pull::Config {
                name: Some(name.clone()),
                filter_subject: format!("orders.{p}"),
                deliver_policy,
                ack_policy: jetstream::consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            })
            .await?;
        while !stop.load(Ordering::Relaxed) {
            let mut batch = consumer
                .fetch()
                .max_messages(100)
                .expires(Duration::from_millis(100))
                .messages()
                .await?;
            use futures::StreamExt;
            while let Some(message) = batch.next().await {
                self.apply(&store, p, message?).await?;
            }
            self.relay(&store, p).await?;
        }
        self.relay(&store, p).await?;
        stream.delete_consumer(&name).await?;
        Ok(())
    }

    /// Applies one message in one transaction, then acks it (or not).
    async fn apply(&self, store: &Store, p: u32, message: jetstream::Message) -> Result<()> {
        let seq = message.info()?.stream_sequence;
        let id = match message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")) {
            Some(id) => id.as_str().to_owned(),
            None => format!(
                "{:032x}",
                u128::from_be_bytes(fingerprint(&message.payload))
            ),
        };
        let account = String::from_utf8_lossy(&message.payload).into_owned();
        let balance: u64 = match store.get("balances", &account)? {
            Some(v) => std::str::from_utf8(&v)?.parse()?,
            None => 0,
        };
        let mut txn = store.transaction();
        if self.dedup {
            txn.mark(&id)?;
        }
        txn.put("balances", &account, (balance + 1).to_string())?
            .set_offset(OFFSETS, p, seq)?
            .outbox(format!("{id} {account} {}", balance + 1));
        match txn.commit()? {
            CommitOutcome::Committed(_) => {
                let n = self.commits.fetch_add(1, Ordering::Relaxed) + 1;
                if self.crash_after == Some(n) {
                    eprintln!("crashing between commit {n} and its ack");
                    std::process::abort();
                }
                message.ack().await?;
            }
            CommitOutcome::Rejected(conflicts)
                if conflicts
                    .iter()
                    .all(|c| matches!(c.outcome, Outcome::Duplicate { .. })) =>
            {
                // A redelivery: drop it, moving the offset past it so a replay skips it.
                let mut txn = store.transaction();
                txn.set_offset(OFFSETS, p, seq)?;
                let _ = txn.commit()?; // no marks: it always commits
                message.ack().await?;
            }
            // In flight elsewhere (or a reused ID): never ack; the broker redelivers it.
            _ => message.ack_with(AckKind::Nak(None)).await?,
        }
        Ok(())
    }

    /// Publishes the partition's outbox to `events.<p>`, each event with its partition and
    /// sequence number, then acks the outbox.
    async fn relay(&self, store: &Store, p: u32) -> Result<()> {
        let outbox = store.outbox();
        loop {
            let events = outbox.peek(500)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(());
            };
            for event in events {
                let mut headers = HeaderMap::new();
                headers.insert("Partition", p.to_string().as_str());
                headers.insert("Seq", event.seq.to_string().as_str());
                self.js
                    .publish_with_headers(format!("events.{p}"), headers, event.payload)
                    .await?
                    .await?;
            }
            outbox.ack(last)?;
        }
    }
}
