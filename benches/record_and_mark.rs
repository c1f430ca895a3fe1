//! Record-and-mark throughput: transactions of one mark, one table row, one offset and one
//! outbox event, submitted from one thread with 1, 8 or 64 in flight, in `Buffered` and
//! `Synced`, against raw RocksDB writing the same bytes into the same column families with the
//! same sync setting, in the same run. `rocksdb/<mode>/<n>` writes batches of as many
//! transactions as the committer merged on average at `dedupstore/<mode>/<n>` (the same batch
//! shape; the sizes are printed), one thread, one write after the other.
//!
//! What to read: `dedupstore/synced/64` over `rocksdb/synced/1` (group commit against one fsync
//! per commit), and `dedupstore/<mode>/<n>` over `rocksdb/<mode>/<n>` (the engine's overhead).
//! `rocksdb/synced/all-64` writes batches of 64 transactions: the most any group commit with 64
//! in flight can put behind one fsync, so its ratio to `rocksdb/synced/1` bounds what group
//! commit can reach on this disk without overlapping an fsync with the next write.
//!
//! `cargo bench --bench record_and_mark`

mod common;

use common::id;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::{CommitOutcome, Durability, Store};
use rocksdb::{DB, Options, WriteBatch, WriteOptions};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

const DEPTHS: [usize; 3] = [1, 8, 64];

fn mode_name(durability: Durability) -> &'static str {
    match durability {
        Durability::Buffered => "buffered",
        Durability::Synced => "synced",
    }
}

/// Runs `count` transactions with `depth` in flight (one at a time with `commit`, more with
/// `submit`); returns the time taken.
fn run_store(store: &Store, next: &mut u64, count: u64, depth: usize) -> Duration {
    let transaction = |n: u64| {
        let mut txn = store.transaction();
        txn.mark(id(n)).unwrap();
        txn.put("records", n.to_be_bytes(), [7u8; 100]).unwrap();
        txn.set_offset("stream", 0, n).unwrap();
        txn.outbox([9u8; 100]);
        txn
    };
    let start = Instant::now();
    let mut in_flight = VecDeque::with_capacity(depth);
    for _ in 0..count {
        *next += 1;
        if depth == 1 {
            assert!(matches!(
                transaction(*next).commit().unwrap(),
                CommitOutcome::Committed(_)
            ));
            continue;
        }
        in_flight.push_back(transaction(*next).submit().unwrap());
        if in_flight.len() == depth {
            let outcome = in_flight.pop_front().unwrap().wait().unwrap();
            assert!(matches!(outcome, CommitOutcome::Committed(_)));
        }
    }
    for ticket in in_flight {
        assert!(matches!(
            ticket.wait().unwrap(),
            CommitOutcome::Committed(_)
        ));
    }
    start.elapsed()
}

fn open_raw(path: &std::path::Path) -> DB {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    DB::open_cf(
        &options,
        path,
        ["marks", "records", "offsets", "outbox", "meta"],
    )
    .unwrap()
}

/// Writes what `count` transactions write, `depth` transactions to a batch.
fn run_raw(db: &DB, sync: bool, next: &mut u64, count: u64, depth: usize) -> Duration {
    let cf = |name| db.cf_handle(name).unwrap();
    let (marks, records, offsets, outbox, meta) = (
        cf("marks"),
        cf("records"),
        cf("offsets"),
        cf("outbox"),
        cf("meta"),
    );
    let mut options = WriteOptions::default();
    options.set_sync(sync);
    let start = Instant::now();
    let mut written = 0;
    while written < count {
        let mut batch = WriteBatch::default();
        for _ in 0..depth.min(usize::try_from(count - written).unwrap()) {
            *next += 1;
            let n = *next;
            let fingerprint = xxhash_rust::xxh3::xxh3_128(id(n).as_bytes()).to_be_bytes();
            batch.put_cf(&marks, fingerprint, n.to_be_bytes());
            batch.put_cf(&records, n.to_be_bytes(), [7u8; 100]);
            let mut offset_key = b"\x06stream".to_vec();
            offset_key.extend_from_slice(&0u32.to_be_bytes());
            batch.put_cf(&offsets, offset_key, n.to_be_bytes());
            batch.put_cf(&outbox, n.to_be_bytes(), [9u8; 100]);
            written += 1;
        }
        batch.put_cf(&meta, b"outbox_next", next.to_be_bytes());
        db.write_opt(batch, &options).unwrap();
    }
    start.elapsed()
}

/// A pause between runs, so that the one closed last has let go of the cores.
fn settle() {
    std::thread::sleep(Duration::from_secs(3));
}

fn record_and_mark(c: &mut Criterion) {
    let mut group = c.benchmark_group("record_and_mark");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    for durability in [Durability::Buffered, Durability::Synced] {
        let mode = mode_name(durability);
        let sync = durability == Durability::Synced;
        for depth in DEPTHS {
            // Fresh databases for every pair, so that neither inherits the other's compactions.
            let dir = tempfile::tempdir().unwrap();
            let store = Store::builder(dir.path())
                .durability(durability)
                .capacity(20_000_000)
                .open()
                .unwrap();
            let mut next = 0;
            group.bench_function(BenchmarkId::new(format!("dedupstore/{mode}"), depth), |b| {
                b.iter_custom(|iters| run_store(&store, &mut next, iters, depth));
            });
            let stats = store.stats();
            drop(store);
            settle();
            // The mean group size, rounded to the nearest whole transaction.
            let groups = stats.commit_groups.max(1);
            let shape = usize::try_from((stats.committed_transactions + groups / 2) / groups)
                .unwrap()
                .max(1);
            eprintln!(
                "record_and_mark: {mode}/{depth}: {} transactions in {} groups; rocksdb writes batches of {shape}",
                stats.committed_transactions, stats.commit_groups
            );

            let raw_dir = tempfile::tempdir().unwrap();
            let db = open_raw(raw_dir.path());
            let mut raw_next = 0;
            group.bench_function(BenchmarkId::new(format!("rocksdb/{mode}"), depth), |b| {
                b.iter_custom(|iters| run_raw(&db, sync, &mut raw_next, iters, shape));
            });
            drop(db);
            settle();
        }
    }
    let bound_dir = tempfile::tempdir().unwrap();
    let db = open_raw(bound_dir.path());
    let mut next = 0;
    group.bench_function(BenchmarkId::new("rocksdb/synced", "all-64"), |b| {
        b.iter_custom(|iters| run_raw(&db, true, &mut next, iters, 64));
    });
    group.finish();
}

criterion_group!(benches, record_and_mark);
criterion_main!(benches);
