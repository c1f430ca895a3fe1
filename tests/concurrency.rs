//! Concurrent callers: eight threads hammer overlapping IDs, singly and in batches, and every ID
//! gets exactly one `New` — from memory, and from disk after a restart.

use dedupstore::{Outcome, Store};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};

const THREADS: usize = 8;
const IDS: usize = 20_000;

fn id(i: usize) -> String {
    format!("event-{i}")
}

/// Every thread checks every ID, in its own order; half of them in batches. An `InFlight`
/// answer is retried, as a consumer would after the broker redelivers.
fn hammer(store: &Store, ids: usize) -> Vec<AtomicU32> {
    let news: Vec<AtomicU32> = (0..ids).map(|_| AtomicU32::new(0)).collect();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (news, barrier) = (&news, &barrier);
            s.spawn(move || {
                let mut order: Vec<usize> = (0..ids).collect();
                fastrand::Rng::with_seed(t as u64).shuffle(&mut order);
                barrier.wait();
                for chunk in order.chunks(64) {
                    let mut pending: Vec<usize> = chunk.to_vec();
                    while !pending.is_empty() {
                        let outcomes = if t % 2 == 0 {
                            let names: Vec<String> = pending.iter().map(|&i| id(i)).collect();
                            store.check_and_mark_batch(&names).unwrap()
                        } else {
                            pending
                                .iter()
                                .map(|&i| store.check_and_mark(id(i)).unwrap())
                                .collect()
                        };
                        let mut retry = Vec::new();
                        for (&i, outcome) in pending.iter().zip(outcomes) {
                            match outcome {
                                Outcome::New => {
                                    news[i].fetch_add(1, Ordering::Relaxed);
                                }
                                Outcome::Duplicate { .. } => {}
                                Outcome::InFlight => retry.push(i),
                                Outcome::Conflict { .. } => panic!("no payloads given"),
                            }
                        }
                        pending = retry;
                        if !pending.is_empty() {
                            std::thread::yield_now();
                        }
                    }
                }
            });
        }
    });
    news
}

#[test]
fn every_id_gets_exactly_one_new() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).stripes(4).open().unwrap();
    let news = hammer(&store, IDS);
    for (i, n) in news.iter().enumerate() {
        assert_eq!(
            n.load(Ordering::Relaxed),
            1,
            "{} got {} New",
            id(i),
            n.load(Ordering::Relaxed)
        );
    }
    assert_eq!(store.stats().hot_ids, IDS as u64);
}

#[test]
fn exactly_one_new_while_misses_go_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let first_half: Vec<String> = (0..IDS / 2).map(id).collect();
    store.check_and_mark_batch(&first_half).unwrap();
    store.close().unwrap();

    // After a restart the in-memory tier is empty and misses are checked on disk.
    let store = Store::builder(dir.path()).stripes(4).open().unwrap();
    let news = hammer(&store, IDS);
    for (i, n) in news.iter().enumerate() {
        let expected = u32::from(i >= IDS / 2);
        assert_eq!(n.load(Ordering::Relaxed), expected, "{}", id(i));
    }
    assert!(store.stats().cold_lookups > 0);
}
