//! Threads sharing one store: duplicates from memory in batches of 64, and fresh marks
//! (`Buffered`) in batches of 64, on 1, 2 and as many threads as the machine has cores, against
//! a `Mutex<HashSet>` shared by as many threads in the same run. Throughput is for all threads
//! together: at two threads it should be near twice one thread's while the cores are free.
//!
//! `cargo bench --bench threads`

mod common;

use common::id;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::Store;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HOT_IDS: u64 = 1_000_000;
const DEPTH: u64 = 64;

/// 1, 2 and the machine's cores (if more).
fn thread_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut counts = vec![1, 2];
    if cores > 2 {
        counts.push(cores);
    }
    counts
}

/// Runs `work(thread, iteration)` `iters` times on each of `threads` threads, started
/// together; the time until the last finishes.
fn on_threads(threads: usize, iters: u64, work: &(dyn Fn(usize, u64) + Sync)) -> Duration {
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                for i in 0..iters {
                    work(t, i);
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // The scope joins every thread before returning.
        start
    })
    .elapsed()
}

fn duplicates(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (store, ids) = common::marked_store(dir.path(), HOT_IDS);
    let set: Mutex<HashSet<String>> = Mutex::new(ids.iter().cloned().collect());
    // Each thread walks the IDs with its own stride, so threads do not move in step.
    let batch = |t: usize, i: u64| -> Vec<&String> {
        let stride = 7_919 + 2 * t as u64;
        (0..DEPTH)
            .map(|k| &ids[((i * DEPTH + k) * stride % HOT_IDS) as usize])
            .collect()
    };

    let mut group = c.benchmark_group("threads_duplicate_batch_of_64");
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(DEPTH * threads as u64));
        group.bench_function(format!("dedupstore/{threads}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|t, i| {
                    black_box(store.check_and_mark_batch(&batch(t, i)).unwrap());
                })
            });
        });
        group.bench_function(format!("mutex_hashset/{threads}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|t, i| {
                    for id in batch(t, i) {
                        let mut set = set.lock();
                        let new = !set.contains(id) && set.insert(id.clone());
                        black_box(new);
                    }
                })
            });
        });
    }
    group.finish();
}

fn fresh_marks(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    // Room in memory for everything the run marks, as in a correctly sized deployment.
    let store = Store::builder(dir.path())
        .capacity(20_000_000)
        .open()
        .unwrap();
    let next = AtomicU64::new(0);
    let mut group = c.benchmark_group("threads_fresh_batch_of_64");
    for threads in thread_counts() {
        group.throughput(Throughput::Elements(DEPTH * threads as u64));
        group.bench_function(format!("dedupstore/{threads}"), |b| {
            b.iter_custom(|iters| {
                on_threads(threads, iters, &|_, _| {
                    let first = next.fetch_add(DEPTH, Ordering::Relaxed);
                    let ids: Vec<String> = (first..first + DEPTH).map(id).collect();
                    black_box(store.check_and_mark_batch(&ids).unwrap());
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, duplicates, fresh_marks);
criterion_main!(benches);
