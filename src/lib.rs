//! An embedded store of recently seen message IDs, for consumers of at-least-once brokers.
//!
//! Brokers such as Kafka, NATS JetStream, RabbitMQ and SQS redeliver messages: a lost ack, a
//! consumer that crashed after doing the work. `dedupstore` remembers every message ID for a
//! retention window, in memory in front of RocksDB on local disk, so a consumer can drop
//! redeliveries without a network hop to Redis.
//!
//! ```
//! use dedupstore::{Outcome, Store};
//! use std::time::Duration;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let dir = tempfile::tempdir()?; // any directory; a temporary one for this example
//!     let store = Store::builder(dir.path())
//!         .window(Duration::from_secs(24 * 3600))
//!         .open()?;
//!
//!     for id in ["order-1", "order-2", "order-1"] {
//!         match store.check_and_mark(id)? {
//!             Outcome::New => println!("{id}: process it"),
//!             Outcome::Duplicate { first_seen } => println!("{id}: seen at {first_seen:?}, drop it"),
//!             Outcome::InFlight => println!("{id}: another worker has it, do not ack"),
//!             Outcome::Conflict { .. } => println!("{id}: reused by another message, reject it"),
//!         }
//!     }
//!     assert!(store.contains("order-2")?);
//!     Ok(())
//! }
//! ```
//!
//! What it is:
//! - a windowed set of IDs: an ID marked at `t0` is a duplicate while `t - t0 < W` and new again
//!   from `t - t0 >= W + S` (`S`, the slot length, is `W / slots`);
//! - an exact, linearizable check-and-mark: among concurrent callers with one ID, exactly one
//!   gets [`Outcome::New`], across threads and across restarts;
//! - record-and-mark: a [`Transaction`] commits marks together with the consumer's table rows,
//!   offsets and [`Outbox`] events in one atomic write, with group commit for many in flight;
//! - claims for effects outside the store ([`Store::claim`]): one holder at a time under a
//!   lease, a completion that stores a result for duplicates to get back, and payloads that
//!   conflict instead of passing as duplicates (`docs/idempotency.md`);
//! - [namespaces](Namespace): independent ID spaces in one store, each with its own window,
//!   dropped whole when no longer needed;
//! - producer sequences ([`Store::accept`]): one high-water mark per ordered producer, with
//!   duplicates and gaps told apart, alone or inside a transaction;
//! - [partitions](Partitions) that move between consumer instances: one store per
//!   `(stream, partition)` under one memory budget, [checkpointed](Store::checkpoint) and
//!   published on revocation ([`checkpoint::Checkpoints`]: a directory, S3, GCS, Azure), restored
//!   on assignment, resumed from the stored offset (`docs/scaling.md`);
//! - crash-safe: every acknowledged write survives a process crash ([`Durability::Buffered`]) or
//!   power loss ([`Durability::Synced`]);
//! - memory-speed for IDs in the in-memory tier, bounded on disk by the window.
//!
//! What it is not:
//! - not shared between processes: one process opens a directory at a time
//!   ([`Error::Locked`]);
//! - not a message queue or a cache of payloads: it stores 128-bit fingerprints of IDs (see
//!   [`fingerprint`] for the collision odds), never the IDs or the messages;
//! - not replicated: a copy on another machine is the broker's job, or your backups'.
//!
//! `docs/guarantees.md` states what survives which failure, `docs/design.md` how it works,
//! `docs/format.md` what it writes to disk.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::pedantic)]
// Product names (RocksDB, Redis, JetStream) read better in prose than in backticks.
#![allow(clippy::doc_markdown)]
#![cfg_attr(not(test), warn(clippy::unwrap_used, clippy::expect_used))]

pub mod checkpoint;
mod claim;
mod clock;
mod commit;
mod config;
mod engine;
mod error;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzz;
mod id;
#[cfg(feature = "kafka")]
pub mod kafka;
mod namespace;
mod outbox;
mod outcome;
mod partitions;
mod persist;
mod sequence;
mod settings;
mod settle;
mod stats;
mod store;
mod txn;
mod wheel;
mod window;

pub use bytes::Bytes;
pub use claim::{Claim, ClaimOutcome};
pub use clock::{Clock, ManualClock, SystemClock};
pub use commit::Ticket;
pub use config::StoreBuilder;
pub use error::{Error, Result};
pub use id::{MAX_ID_LEN, fingerprint};
pub use namespace::{Namespace, NamespaceBuilder};
pub use outbox::Outbox;
pub use outcome::{CommitOutcome, Conflict, Outcome, Receipt, SequenceConflict, SequenceOutcome};
pub use partitions::{
    MAX_PARTITION_STREAM, Partition, Partitions, PartitionsBuilder, PartitionsStats, StartedFrom,
};
pub use persist::{MAX_RESULT_LEN, MAX_STREAM_NAME, MAX_TABLE_NAME, OutboxEntry};
pub use settings::{
    Durability, MAX_SLOTS, MAX_STRIPES, MAX_WINDOW, MIN_BUDGET_PER_STRIPE, MIN_ROCKSDB_BUDGET,
    MIN_WINDOW,
};
pub use settle::Settled;
pub use stats::Stats;
pub use store::Store;
pub use txn::Transaction;

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
