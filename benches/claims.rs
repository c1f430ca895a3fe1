//! Claims against plain marks, in the same run, on one store each: a claim and its completion
//! (with a 100-byte result) of a new ID, against a `check_and_mark` of a new ID; and a claim of
//! a completed ID that gets its result back, against a `check_and_mark` of a duplicate.
//!
//! What to read: `new_id/claim_complete` over `new_id/check_and_mark` (the target: at most 2),
//! and `completed_id/claim` over `completed_id/check_and_mark` (the cost of reading the stored
//! result back).
//!
//! `cargo bench --bench claims`

mod common;

use common::id;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::{ClaimOutcome, Outcome, Store};
use std::hint::black_box;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);
const RESULT: [u8; 100] = [7; 100];
/// IDs completed before the duplicate benchmarks: more than they touch.
const COMPLETED: u64 = 100_000;
/// Room in the in-memory tier for every ID a run marks, as in a correctly sized deployment.
const CAPACITY: u64 = 20_000_000;

fn open(dir: &std::path::Path) -> Store {
    Store::builder(dir).capacity(CAPACITY).open().unwrap()
}

fn new_id(c: &mut Criterion) {
    let (marks_dir, claims_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (marks, claims) = (open(marks_dir.path()), open(claims_dir.path()));
    let mut group = c.benchmark_group("new_id");
    group.throughput(Throughput::Elements(1));
    let mut next = 0u64;
    group.bench_function("check_and_mark", |b| {
        b.iter(|| {
            next += 1;
            let outcome = marks.check_and_mark(id(next)).unwrap();
            assert_eq!(outcome, Outcome::New);
        });
    });
    let mut next = 0u64;
    group.bench_function("claim_complete", |b| {
        b.iter(|| {
            next += 1;
            let ClaimOutcome::Acquired(claim) = claims.claim(id(next), LEASE).unwrap() else {
                panic!("a new ID was not acquired");
            };
            claim.complete(Some(&RESULT)).unwrap();
        });
    });
    group.finish();
}

fn completed_id(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    for n in 0..COMPLETED {
        let ClaimOutcome::Acquired(claim) = store.claim(id(n), LEASE).unwrap() else {
            panic!("a new ID was not acquired");
        };
        claim.complete(Some(&RESULT)).unwrap();
    }
    let mut group = c.benchmark_group("completed_id");
    group.throughput(Throughput::Elements(1));
    let mut n = 0u64;
    group.bench_function("check_and_mark", |b| {
        b.iter(|| {
            n = (n + 7_919) % COMPLETED;
            let outcome = store.check_and_mark(id(n)).unwrap();
            assert!(matches!(outcome, Outcome::Duplicate { .. }));
        });
    });
    group.bench_function("claim", |b| {
        b.iter(|| {
            n = (n + 7_919) % COMPLETED;
            match store.claim(id(n), LEASE).unwrap() {
                ClaimOutcome::Completed { result, .. } => black_box(result),
                other => panic!("{other:?}"),
            };
        });
    });
    group.finish();
}

criterion_group!(benches, new_id, completed_id);
criterion_main!(benches);
