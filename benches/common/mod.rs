//! What the benches share: the Redis baseline, started on 127.0.0.1 by the bench itself, and
//! the raw RocksDB one.

#![allow(dead_code)] // each bench uses part of it

use std::path::Path;

#[path = "../../src/cli/bench/redis_server.rs"]
mod redis_server;
pub use redis_server::{Persistence, RedisServer};

/// Redis with the durability of `Durability::Buffered` (append-only file synced every second);
/// `None`, with the reason on stderr, if it cannot be started.
pub fn redis(dir: &Path) -> Option<RedisServer> {
    RedisServer::start(dir, Persistence::EverySec)
        .inspect_err(|why| eprintln!("no Redis baseline: {why}"))
        .ok()
}

/// A store in `dir` with `capacity(ids)`, holding the marks of IDs `0..ids` (so all in memory),
/// and those IDs.
pub fn marked_store(dir: &Path, ids: u64) -> (dedupstore::Store, Vec<String>) {
    let store = dedupstore::Store::builder(dir)
        .capacity(ids)
        .open()
        .unwrap();
    let ids: Vec<String> = (0..ids).map(id).collect();
    for chunk in ids.chunks(10_000) {
        store.check_and_mark_batch(chunk).unwrap();
    }
    (store, ids)
}

/// `SET id 1 NX EX 86400` for each of `ids`, in one pipeline: what a consumer deduplicating
/// through Redis sends.
pub fn set_nx_ex<I: redis::ToRedisArgs>(ids: impl IntoIterator<Item = I>) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for id in ids {
        pipe.cmd("SET")
            .arg(id)
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(86_400);
    }
    pipe
}

/// A plain RocksDB database in `dir`, with default options: the raw baseline.
pub fn raw_rocksdb(dir: &Path) -> rocksdb::DB {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    rocksdb::DB::open(&options, dir).unwrap()
}

/// The IDs the benches mark: what a consumer would see, 36 bytes each.
pub fn id(i: u64) -> String {
    format!(
        "order-{i:012}-{:016x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}
