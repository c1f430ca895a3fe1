//! A namespace against the store's own ID space, in the same run, on one store: `check_and_mark`
//! of a new ID, and of a duplicate, in each. A namespace runs the same protocol on an in-memory
//! tier and generations of its own; this measures what reaching it costs.
//!
//! What to read: `namespace` over `store` in each group (expected near 1).
//!
//! `cargo bench --bench namespaces`

mod common;

use common::id;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::{Namespace, Outcome, Store};

/// Room in the in-memory tiers for every ID a run marks, as in a correctly sized deployment.
const CAPACITY: u64 = 20_000_000;
const NAMESPACE_BUDGET: usize = 1 << 30;
/// IDs marked before the duplicate benchmarks: more than they touch.
const MARKED: u64 = 100_000;

/// A store at `dir` and its namespace `orders`.
fn open(dir: &std::path::Path) -> (Store, Namespace) {
    let store = Store::builder(dir).capacity(CAPACITY).open().unwrap();
    let orders = store
        .namespace("orders")
        .memory_budget(NAMESPACE_BUDGET)
        .open()
        .unwrap();
    (store, orders)
}

fn new_id(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, orders) = open(dir.path());
    let mut group = c.benchmark_group("new_id");
    group.throughput(Throughput::Elements(1));
    let mut next = 0u64;
    group.bench_function("store", |b| {
        b.iter(|| {
            next += 1;
            assert_eq!(store.check_and_mark(id(next)).unwrap(), Outcome::New);
        });
    });
    let mut next = 0u64;
    group.bench_function("namespace", |b| {
        b.iter(|| {
            next += 1;
            assert_eq!(orders.check_and_mark(id(next)).unwrap(), Outcome::New);
        });
    });
    group.finish();
}

fn duplicate(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, orders) = open(dir.path());
    let ids: Vec<String> = (0..MARKED).map(id).collect();
    for chunk in ids.chunks(10_000) {
        store.check_and_mark_batch(chunk).unwrap();
        orders.check_and_mark_batch(chunk).unwrap();
    }
    let mut group = c.benchmark_group("duplicate");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("store", |b| {
        b.iter(|| {
            n = (n + 7_919) % MARKED;
            let outcome = store.check_and_mark(id(n)).unwrap();
            assert!(matches!(outcome, Outcome::Duplicate { .. }));
        });
    });
    group.bench_function("namespace", |b| {
        b.iter(|| {
            n = (n + 7_919) % MARKED;
            let outcome = orders.check_and_mark(id(n)).unwrap();
            assert!(matches!(outcome, Outcome::Duplicate { .. }));
        });
    });
    group.finish();
}

criterion_group!(benches, new_id, duplicate);
criterion_main!(benches);
