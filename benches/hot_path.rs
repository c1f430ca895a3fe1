//! The hot path: a duplicate answered from memory, against a `Mutex<HashSet>` in the same run;
//! 64 duplicates in one batch call against 64 single calls and Redis pipelined; a fresh mark in `Buffered` mode, singly and in batches of 500, against raw RocksDB writes of
//! the same bytes and Redis `SET id 1 NX EX ttl` over loopback (pipelined for the batch).
//!
//! `cargo bench --bench hot_path`

mod common;

use common::{id, raw_rocksdb};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::{Outcome, Store};
use parking_lot::Mutex;
use rocksdb::WriteOptions;
use std::collections::HashSet;
use std::hint::black_box;

const HOT_IDS: u64 = 1_000_000;
/// The capacity of the stores that take fresh marks: more than a run marks, so that the
/// in-memory tier holds the whole window, as in a correctly sized deployment.
const FRESH_CAPACITY: u64 = 20_000_000;

fn duplicate_check(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = common::marked_store(dir.path(), HOT_IDS);
    let set: Mutex<HashSet<String>> = Mutex::new(ids.iter().cloned().collect());

    let mut group = c.benchmark_group("duplicate_check");
    group.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    group.bench_function("dedupstore", |b| {
        b.iter(|| {
            i = (i + 7_919) % ids.len();
            let outcome = store.check_and_mark(&ids[i]).unwrap();
            debug_assert!(matches!(outcome, Outcome::Duplicate { .. }));
            black_box(outcome)
        });
    });
    group.bench_function("mutex_hashset", |b| {
        b.iter(|| {
            i = (i + 7_919) % ids.len();
            let mut set = set.lock();
            let new = !set.contains(&ids[i]) && set.insert(ids[i].clone());
            black_box(new)
        });
    });
    group.finish();
}

/// 64 duplicates from memory: one `check_and_mark_batch` call, 64 `check_and_mark` calls, and
/// (the baseline users would pick) 64 `SET id 1 NX EX` in one Redis pipeline.
fn duplicate_batch(c: &mut Criterion) {
    const DEPTH: usize = 64;
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = common::marked_store(dir.path(), HOT_IDS);
    // Batches drawn all over the window, as redeliveries come; each batch's IDs are its own, as
    // a consumer's come with their messages.
    let mut rng = fastrand::Rng::with_seed(7);
    let batches: Vec<Vec<String>> = (0..1_024)
        .map(|_| {
            (0..DEPTH)
                .map(|_| ids[rng.usize(..ids.len())].clone())
                .collect()
        })
        .collect();
    let mut group = c.benchmark_group("duplicate_batch_of_64");
    group.throughput(Throughput::Elements(DEPTH as u64));
    let mut n = 0usize;
    let mut next = || {
        n = (n + 1) % batches.len();
        &batches[n]
    };
    group.bench_function("dedupstore_batch", |b| {
        b.iter(|| {
            let outcomes = store.check_and_mark_batch(next()).unwrap();
            debug_assert!(
                outcomes
                    .iter()
                    .all(|o| matches!(o, Outcome::Duplicate { .. }))
            );
            black_box(outcomes)
        });
    });
    group.bench_function("dedupstore_single", |b| {
        b.iter(|| {
            for id in next() {
                black_box(store.check_and_mark(id).unwrap());
            }
        });
    });
    let redis_dir = tempfile::tempdir().unwrap();
    if let Some(redis) = common::redis(redis_dir.path()) {
        let mut conn = redis.connect().unwrap();
        for chunk in ids.chunks(10_000) {
            common::set_nx_ex(chunk).query::<()>(&mut conn).unwrap();
        }
        group.bench_function("redis_pipelined_set_nx_ex", |b| {
            b.iter(|| {
                let r: Vec<Option<String>> = common::set_nx_ex(next()).query(&mut conn).unwrap();
                debug_assert!(r.iter().all(Option::is_none));
                black_box(r)
            });
        });
    }
    group.finish();
}

fn fresh_mark(c: &mut Criterion) {
    let mut group = c.benchmark_group("fresh_mark_buffered");
    group.throughput(Throughput::Elements(1));

    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .capacity(FRESH_CAPACITY)
        .open()
        .unwrap();
    let mut next = 0u64;
    group.bench_function("dedupstore", |b| {
        b.iter(|| {
            next += 1;
            black_box(store.check_and_mark(id(next)).unwrap())
        });
    });

    // Raw RocksDB writing what a mark writes: a 16-byte key and an 8-byte value, through the WAL.
    let raw_dir = tempfile::tempdir().unwrap();
    let db = raw_rocksdb(raw_dir.path());
    let write = WriteOptions::default();
    let mut key = 0u128;
    group.bench_function("rocksdb_put", |b| {
        b.iter(|| {
            key += 1;
            db.put_opt(
                xxhash_rust::xxh3::xxh3_128(&key.to_le_bytes()).to_be_bytes(),
                1u64.to_be_bytes(),
                &write,
            )
            .unwrap();
        });
    });

    let redis_dir = tempfile::tempdir().unwrap();
    if let Some(redis) = common::redis(redis_dir.path()) {
        let mut conn = redis.connect().unwrap();
        group.bench_function("redis_set_nx_ex", |b| {
            b.iter(|| {
                next += 1;
                let set: Option<String> = redis::cmd("SET")
                    .arg(id(next))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(86_400)
                    .query(&mut conn)
                    .unwrap();
                black_box(set)
            });
        });
    }
    group.finish();
}

/// The IDs of the next batch of 500 new messages.
fn next_batch(next: &mut u64) -> Vec<String> {
    *next += 500;
    (*next..*next + 500).map(id).collect()
}

fn batch_mark(c: &mut Criterion) {
    let mut group = c.benchmark_group("fresh_mark_batch_of_500");
    group.throughput(Throughput::Elements(500));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .capacity(FRESH_CAPACITY)
        .open()
        .unwrap();
    let mut next = 0u64;
    group.bench_function("dedupstore", |b| {
        b.iter_batched(
            || next_batch(&mut next),
            |ids| black_box(store.check_and_mark_batch(&ids).unwrap()),
            BatchSize::SmallInput,
        );
    });
    // Raw RocksDB writing what the batch writes: 500 keys of 16 bytes and values of 8, in one
    // WriteBatch through the WAL.
    let raw_dir = tempfile::tempdir().unwrap();
    let db = raw_rocksdb(raw_dir.path());
    group.bench_function("rocksdb_write_batch", |b| {
        b.iter_batched(
            || next_batch(&mut next),
            |ids| {
                let mut batch = rocksdb::WriteBatch::default();
                for id in &ids {
                    batch.put(
                        xxhash_rust::xxh3::xxh3_128(id.as_bytes()).to_be_bytes(),
                        1u64.to_be_bytes(),
                    );
                }
                db.write(batch).unwrap();
            },
            BatchSize::SmallInput,
        );
    });

    let redis_dir = tempfile::tempdir().unwrap();
    if let Some(redis) = common::redis(redis_dir.path()) {
        let mut conn = redis.connect().unwrap();
        group.bench_function("redis_pipelined_set_nx_ex", |b| {
            b.iter_batched(
                || next_batch(&mut next),
                |ids| {
                    let r: Vec<Option<String>> = common::set_nx_ex(&ids).query(&mut conn).unwrap();
                    black_box(r)
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    duplicate_check,
    duplicate_batch,
    fresh_mark,
    batch_mark
);
criterion_main!(benches);
