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
