//! What one thread of a bench row calls: the store, raw RocksDB or Redis, one ID at a time, in
//! batches, or with transactions in flight.

use super::latency::Latency;
use dedupstore::{CommitOutcome, Outcome, Store, Ticket, fingerprint};
use rocksdb::{DB, WriteBatch, WriteOptions};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// How a row calls its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// One ID per call, one call at a time (`check_and_mark`; `SET NX EX`; a put).
    Single,
    /// `depth` IDs per call (`check_and_mark_batch`; a pipeline; a `WriteBatch`).
    Batch,
    /// Transactions of a mark, a 100-byte row, an offset and a 100-byte outbox event, `depth`
    /// in flight (`submit`); raw RocksDB writes the same in batches of the store's mean group.
    Txn,
}

/// One thread's handle on a row's target.
pub trait Client: Send {
    /// Delivers `ids` (`first[i]`: whether `ids[i]` is its message's first delivery), as one
    /// call or one call per ID as the row's API says; returns how many the target found new.
    fn deliver(&mut self, ids: &[String], first: &[bool], latency: &mut Latency) -> Result<u64>;

    /// Waits for whatever is still in flight; returns how many of those were new.
    fn finish(&mut self, _latency: &mut Latency) -> Result<u64> {
        Ok(0)
    }
}

/// The bytes of the consumer's own state each transaction writes, as in the record-and-mark bench.
const ROW: [u8; 100] = [7; 100];
const EVENT: [u8; 100] = [9; 100];
const STREAM: &str = "bench";

/// dedupstore, through the API the row names.
pub struct StoreClient {
    store: Arc<Store>,
    api: Api,
    depth: usize,
    /// The stream partition this thread's transactions store offsets under.
    partition: u32,
    sent: u64,
    in_flight: VecDeque<(Instant, Ticket)>,
}

impl StoreClient {
    pub fn new(store: Arc<Store>, api: Api, depth: usize, partition: u32) -> Self {
        Self {
            store,
            api,
            depth,
            partition,
            sent: 0,
            in_flight: VecDeque::with_capacity(depth),
        }
    }

    fn settle_oldest(&mut self, latency: &mut Latency) -> Result<u64> {
        let Some((start, ticket)) = self.in_flight.pop_front() else {
            return Ok(0);
        };
        let outcome = ticket.wait()?;
        latency.since(start);
        Ok(u64::from(matches!(outcome, CommitOutcome::Committed(_))))
    }
}

impl Client for StoreClient {
    fn deliver(&mut self, ids: &[String], _: &[bool], latency: &mut Latency) -> Result<u64> {
        let mut new = 0;
        match self.api {
            Api::Single => {
                for id in ids {
                    let start = Instant::now();
                    let outcome = self.store.check_and_mark(id)?;
                    latency.since(start);
                    new += u64::from(outcome == Outcome::New);
                }
            }
            Api::Batch => {
                let start = Instant::now();
                let outcomes = self.store.check_and_mark_batch(ids)?;
                latency.since(start);
                new += outcomes.iter().filter(|o| **o == Outcome::New).count() as u64;
            }
            Api::Txn => {
                for id in ids {
                    self.sent += 1;
                    let mut txn = self.store.transaction();
                    txn.mark(id)?
                        .put("records", self.sent.to_be_bytes(), ROW)?
                        .set_offset(STREAM, self.partition, self.sent)?
                        .outbox(EVENT);
                    self.in_flight.push_back((Instant::now(), txn.submit()?));
                    if self.in_flight.len() >= self.depth {
                        new += self.settle_oldest(latency)?;
                    }
                }
            }
        }
        Ok(new)
    }

    fn finish(&mut self, latency: &mut Latency) -> Result<u64> {
        let mut new = 0;
        while !self.in_flight.is_empty() {
            new += self.settle_oldest(latency)?;
        }
        Ok(new)
    }
}

/// The column families of the raw baseline: a store's marks, one consumer table, offsets, the
/// outbox and its position.
pub const RAW_FAMILIES: [&str; 5] = ["marks", "records", "offsets", "outbox", "meta"];

/// Raw RocksDB with default options: the writes the store makes for the deliveries that are
/// first ones (which it is told, checking nothing), with the same sync setting; on a replay,
/// the reads that find the marks again.
pub struct RawClient {
    db: Arc<DB>,
    api: Api,
    options: WriteOptions,
    replay: bool,
    /// Transactions per write (`Api::Txn`): the store's mean commit group in the same shape.
    group: usize,
    partition: u32,
    sent: u64,
    batch: WriteBatch,
    batched: usize,
}

impl RawClient {
    pub fn new(
        db: Arc<DB>,
        api: Api,
        sync: bool,
        replay: bool,
        group: usize,
        partition: u32,
    ) -> Self {
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        Self {
            db,
            api,
            options,
            replay,
            group: group.max(1),
            partition,
            sent: 0,
            batch: WriteBatch::default(),
            batched: 0,
        }
    }

    fn write(&mut self, latency: &mut Latency) -> Result<()> {
        let batch = std::mem::take(&mut self.batch);
        self.batched = 0;
        if batch.is_empty() {
            return Ok(());
        }
        let start = Instant::now();
        self.db.write_opt(batch, &self.options)?;
        latency.since(start);
        Ok(())
    }

    fn read(&self, ids: &[String], latency: &mut Latency) -> Result<u64> {
        let marks = family(&self.db, "marks")?;
        let keys: Vec<[u8; 16]> = ids.iter().map(|id| fingerprint(id.as_bytes())).collect();
        let mut new = 0;
        if self.api == Api::Batch {
            let start = Instant::now();
            let found = self.db.batched_multi_get_cf(&marks, &keys, false);
            latency.since(start);
            for value in found {
                new += u64::from(value?.is_none());
            }
        } else {
            for key in keys {
                let start = Instant::now();
                let value = self.db.get_pinned_cf(&marks, key)?;
                latency.since(start);
                new += u64::from(value.is_none());
            }
        }
        Ok(new)
    }
}

impl Client for RawClient {
    fn deliver(&mut self, ids: &[String], first: &[bool], latency: &mut Latency) -> Result<u64> {
        if self.replay {
            return self.read(ids, latency);
        }
        let fresh = || ids.iter().zip(first).filter(|(_, f)| **f).map(|(id, _)| id);
        let db = Arc::clone(&self.db);
        let marks = family(&db, "marks")?;
        let mark = |batch: &mut WriteBatch, id: &String| {
            batch.put_cf(&marks, fingerprint(id.as_bytes()), now_millis());
        };
        match self.api {
            Api::Single => {
                for id in fresh() {
                    mark(&mut self.batch, id);
                    self.write(latency)?;
                }
            }
            Api::Batch => {
                fresh().for_each(|id| mark(&mut self.batch, id));
                self.write(latency)?;
            }
            Api::Txn => {
                let (records, offsets, outbox, meta) = (
                    family(&db, "records")?,
                    family(&db, "offsets")?,
                    family(&db, "outbox")?,
                    family(&db, "meta")?,
                );
                let mut offset_key = vec![u8::try_from(STREAM.len())?];
                offset_key.extend_from_slice(STREAM.as_bytes());
                offset_key.extend_from_slice(&self.partition.to_be_bytes());
                for id in fresh() {
                    self.sent += 1;
                    let n = self.sent.to_be_bytes();
                    mark(&mut self.batch, id);
                    self.batch.put_cf(&records, n, ROW);
                    self.batch.put_cf(&offsets, &offset_key, n);
                    self.batch.put_cf(&outbox, n, EVENT);
                    self.batch.put_cf(&meta, b"outbox_next", n);
                    self.batched += 1;
                    if self.batched == self.group {
                        self.write(latency)?;
                    }
                }
            }
        }
        Ok(fresh().count() as u64)
    }

    fn finish(&mut self, latency: &mut Latency) -> Result<u64> {
        self.write(latency)?;
        Ok(0)
    }
}

/// Redis `SET id 1 NX EX <window>`: one request at a time, or pipelined `depth` at a time.
pub struct RedisClient {
    connection: redis::Connection,
    api: Api,
    window_secs: u64,
}

impl RedisClient {
    pub fn new(connection: redis::Connection, api: Api, window_secs: u64) -> Self {
        Self {
            connection,
            api,
            window_secs,
        }
    }

    fn set(&self, id: &str) -> redis::Cmd {
        let mut cmd = redis::cmd("SET");
        cmd.arg(id).arg(1).arg("NX").arg("EX").arg(self.window_secs);
        cmd
    }
}

impl Client for RedisClient {
    fn deliver(&mut self, ids: &[String], _: &[bool], latency: &mut Latency) -> Result<u64> {
        let mut new = 0;
        if self.api == Api::Batch {
            let mut pipe = redis::pipe();
            for id in ids {
                pipe.add_command(self.set(id));
            }
            let start = Instant::now();
            let replies: Vec<Option<String>> = pipe.query(&mut self.connection)?;
            latency.since(start);
            new += replies.iter().filter(|r| r.is_some()).count() as u64;
        } else {
            for id in ids {
                let cmd = self.set(id);
                let start = Instant::now();
                let reply: Option<String> = cmd.query(&mut self.connection)?;
                latency.since(start);
                new += u64::from(reply.is_some());
            }
        }
        Ok(new)
    }
}

fn family<'a>(db: &'a DB, name: &str) -> Result<Arc<rocksdb::BoundColumnFamily<'a>>> {
    db.cf_handle(name)
        .ok_or_else(|| format!("raw RocksDB has no column family {name}").into())
}

fn now_millis() -> [u8; 8] {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    ms.to_be_bytes()
}
