//! An idempotent consumer of a partitioned stream, the pattern dedupstore is built for.
//!
//! Each message is applied with one record-and-mark transaction: its mark, its effect (a row of
//! the consumer's own table), the partition's next offset and an outbox event commit together.
//! The consumer stops halfway (as a crash or a rebalance would stop it), reopens the store and
//! resumes every partition from its stored offset; a relay then delivers the outbox.
//!
//! `cargo run --release --example consumer`

use dedupstore::{CommitOutcome, Store};
use std::error::Error;

const TOPIC: &str = "orders";
const PARTITIONS: u32 = 3;
const MESSAGES_PER_PARTITION: u64 = 2_000;

/// A message as a broker would deliver it.
struct Message {
    id: String,
    order: u64,
    amount: u64,
}

/// The simulated broker: partition `p` at `offset`. One delivery in ten is a redelivery of the
/// message before it, with its own offset (a producer retry).
fn deliver(p: u32, offset: u64) -> Message {
    let n = if offset % 10 == 9 { offset - 1 } else { offset };
    let order = u64::from(p) * 1_000_000 + n;
    Message {
        id: format!("order-{order}"),
        order,
        amount: order % 97 + 1,
    }
}

/// Applies the messages of partition `p` from its stored offset until `until`; returns how many
/// were applied (the rest were duplicates).
fn consume(store: &Store, p: u32, until: u64) -> Result<u64, Box<dyn Error>> {
    let mut applied = 0;
    let mut offset = store.offset(TOPIC, p)?.unwrap_or(0);
    while offset < until {
        let message = deliver(p, offset);
        let mut txn = store.transaction();
        txn.mark(&message.id)?
            .put(
                "orders",
                message.order.to_be_bytes(),
                message.amount.to_be_bytes(),
            )?
            .set_offset(TOPIC, p, offset + 1)?
            .outbox(format!("order {} accepted", message.order));
        match txn.commit()? {
            CommitOutcome::Committed(_) => applied += 1,
            _ => {
                // Rejected, a redelivery: drop it, but move the offset past it.
                let mut txn = store.transaction();
                txn.set_offset(TOPIC, p, offset + 1)?;
                let _ = txn.commit()?;
            }
        }
        offset += 1;
    }
    Ok(applied)
}

/// Delivers and acks every outbox event; returns how many.
fn relay(store: &Store) -> Result<u64, Box<dyn Error>> {
    let outbox = store.outbox();
    let mut delivered = 0;
    loop {
        let events = outbox.peek(500)?;
        let Some(last) = events.last() else {
            return Ok(delivered);
        };
        // A real relay publishes each event to the broker here, then acks.
        delivered += events.len() as u64;
        outbox.ack(last.seq)?;
    }
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let mut applied = 0;

    let store = Store::open(dir.path())?;
    for p in 0..PARTITIONS {
        applied += consume(&store, p, MESSAGES_PER_PARTITION / 2 + u64::from(p) * 7)?;
    }
    drop(store); // stop halfway, as a crash or a rebalance would

    let store = Store::open(dir.path())?;
    for p in 0..PARTITIONS {
        let resume = store.offset(TOPIC, p)?.unwrap_or(0);
        println!("partition {p}: resuming at offset {resume}");
        applied += consume(&store, p, MESSAGES_PER_PARTITION)?;
    }
    let published = relay(&store)?;

    let deliveries = u64::from(PARTITIONS) * MESSAGES_PER_PARTITION;
    let expected = deliveries - deliveries / 10;
    println!("{deliveries} deliveries, {applied} orders applied, {published} events published");
    assert_eq!(applied, expected, "every order applied exactly once");
    assert_eq!(published, expected, "one event per applied order");
    for p in 0..PARTITIONS {
        assert_eq!(store.offset(TOPIC, p)?, Some(MESSAGES_PER_PARTITION));
    }
    Ok(())
}
