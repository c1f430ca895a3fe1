//! Producer sequences against marks, in the same run, on one store: accepting a producer's next
//! sequence against `check_and_mark` of a new ID (both one write), and a duplicate sequence
//! against a duplicate ID (both answered from memory). Producers are taken round-robin from
//! 10,000, as a consumer of many producers would meet them.
//!
//! What to read: `accept` over `check_and_mark` in each group.
//!
//! `cargo bench --bench sequences`

mod common;

use common::id;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::{Outcome, SequenceOutcome, Store};

const CAPACITY: u64 = 20_000_000;
const PRODUCERS: u64 = 10_000;
/// IDs marked (and sequences accepted) before the duplicate benchmarks.
const MARKED: u64 = 100_000;

fn producer(n: u64) -> String {
    format!("producer-{:05}", n % PRODUCERS)
}

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).capacity(CAPACITY).open().unwrap()
}

fn next(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let mut group = c.benchmark_group("next");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("check_and_mark", |b| {
        b.iter(|| {
            n += 1;
            assert_eq!(store.check_and_mark(id(n)).unwrap(), Outcome::New);
        });
    });
    let mut n = 0u64;
    group.bench_function("accept", |b| {
        b.iter(|| {
            let outcome = store.accept(producer(n), n / PRODUCERS).unwrap();
            assert_eq!(outcome, SequenceOutcome::Accepted);
            n += 1;
        });
    });
    group.finish();
}

fn duplicate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ids: Vec<String> = (0..MARKED).map(id).collect();
    for chunk in ids.chunks(10_000) {
        store.check_and_mark_batch(chunk).unwrap();
    }
    for n in 0..MARKED {
        store.accept(producer(n), n / PRODUCERS).unwrap();
    }
    let mut group = c.benchmark_group("duplicate");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("check_and_mark", |b| {
        b.iter(|| {
            n = (n + 7_919) % MARKED;
            let outcome = store.check_and_mark(id(n)).unwrap();
            assert!(matches!(outcome, Outcome::Duplicate { .. }));
        });
    });
    group.bench_function("accept", |b| {
        b.iter(|| {
            n = (n + 7_919) % MARKED;
            let outcome = store.accept(producer(n), 0).unwrap();
            assert!(matches!(outcome, SequenceOutcome::Duplicate { .. }));
        });
    });
    group.finish();
}

criterion_group!(benches, next, duplicate);
criterion_main!(benches);
