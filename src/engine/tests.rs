//! Cold lookups: the disk is read without the stripe lock, under a claim that keeps exactly one
//! `New`, and live marks found there are then answered from memory.

use crate::persist::{Op, Strike};
use crate::{Error, ManualClock, Outcome, Store};
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Barrier, mpsc};
use std::thread;
use std::time::{Duration, UNIX_EPOCH};

const W: Duration = Duration::from_secs(80);
const T0: Duration = Duration::from_secs(1_700_000_000);

/// One stripe, so every ID shares the lock a slow read must not hold.
fn open(dir: &Path, clock: &ManualClock) -> Store {
    Store::builder(dir)
        .window(W)
        .slots(80)
        .stripes(1)
        .clock(clock.clone())
        .open()
        .unwrap()
}

/// A store reopened after marking `ids` a second ago: its stripe's misses go to disk.
fn reopened_after_marking(dir: &Path, clock: &ManualClock, ids: &[&str]) -> Store {
    let store = open(dir, clock);
    for id in ids {
        assert_eq!(store.check_and_mark(id).unwrap(), Outcome::New);
    }
    drop(store);
    clock.advance(Duration::from_secs(1));
    open(dir, clock)
}

fn first_seen(outcome: &Outcome) -> Option<Duration> {
    match outcome {
        Outcome::Duplicate { first_seen } => first_seen.duration_since(UNIX_EPOCH).ok(),
        _ => None,
    }
}

#[test]
fn a_stalled_disk_read_blocks_only_its_own_id() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let store = reopened_after_marking(dir.path(), &clock, &["slow", "other"]);
    let gate = Arc::new(Barrier::new(2));
    let key = store.own_space().fingerprint(b"slow", None).unwrap().key();
    store
        .engine()
        .cold
        .fault
        .hold_reads(&key, Arc::clone(&gate));

    thread::scope(|s| {
        let slow = s.spawn(|| store.check_and_mark("slow"));
        gate.wait(); // the read of "slow" has begun and is held
        let (tx, rx) = mpsc::channel();
        let store = &store;
        s.spawn(move || {
            let answers = (
                store.check_and_mark("other"),
                store.check_and_mark("fresh"),
                store.check_and_mark("slow"),
                store.contains("slow"),
            );
            tx.send(answers).unwrap();
        });
        let answers = rx.recv_timeout(Duration::from_secs(30));
        gate.wait(); // let the slow read go on, whatever the answers
        let (other, fresh, slow_again, contains) =
            answers.expect("callers of other IDs of the stripe waited for the stalled read");
        assert_eq!(first_seen(&other.unwrap()), Some(T0));
        assert_eq!(fresh.unwrap(), Outcome::New);
        assert_eq!(
            slow_again.unwrap(),
            Outcome::InFlight,
            "claimed by the read"
        );
        assert!(contains.unwrap(), "an ID being read is not new");
        assert_eq!(first_seen(&slow.join().unwrap().unwrap()), Some(T0));
    });
    assert_eq!(first_seen(&store.check_and_mark("slow").unwrap()), Some(T0));
}

#[test]
fn a_redelivery_storm_after_a_restart_reads_each_id_from_disk_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let ids: Vec<String> = (0..200).map(|i| format!("id-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let store = reopened_after_marking(dir.path(), &clock, &refs);
    for _ in 0..3 {
        for id in &ids[..100] {
            assert_eq!(first_seen(&store.check_and_mark(id).unwrap()), Some(T0));
        }
        assert_eq!(store.contains_batch(&ids[100..]).unwrap(), vec![true; 100]);
    }
    assert_eq!(store.stats().cold_lookups, 200);
    assert_eq!(store.stats().hot_ids, 200);
}

#[test]
fn a_mark_read_back_from_disk_dies_at_its_own_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let store = reopened_after_marking(dir.path(), &clock, &["a"]);
    clock.advance(W / 2);
    assert_eq!(first_seen(&store.check_and_mark("a").unwrap()), Some(T0));
    // Past the window since the mark (not since the read): marked anew.
    clock.advance(W / 2);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
}

/// In a batch after a restart, an ID found on disk is a duplicate of its first mark each time
/// it comes, and an ID new to the store is new once.
#[test]
fn a_batch_answers_repeats_of_marks_on_disk_with_their_first_mark() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let store = reopened_after_marking(dir.path(), &clock, &["a", "b"]);
    let outcomes = store
        .check_and_mark_batch(&["a", "new", "a", "b", "new", "b", "a"])
        .unwrap();
    let seen: Vec<Option<Duration>> = outcomes.iter().map(first_seen).collect();
    let t1 = T0 + Duration::from_secs(1);
    assert_eq!(
        seen,
        [
            Some(T0),
            None,
            Some(T0),
            Some(T0),
            Some(t1),
            Some(T0),
            Some(T0)
        ]
    );
    assert_eq!(outcomes[1], Outcome::New);
    // The recalled marks answer from memory now; the new one is durable.
    assert_eq!(
        store.contains_batch(&["a", "b", "new", "never"]).unwrap(),
        [true, true, true, false]
    );
}

#[test]
fn a_failed_or_panicking_disk_read_leaves_nothing_claimed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let store = reopened_after_marking(dir.path(), &clock, &["a", "b"]);
    let fault = &store.engine().cold.fault;

    fault.arm(Op::Read, 0, Strike::Before);
    assert!(matches!(store.check_and_mark("a"), Err(Error::Io { .. })));
    fault.arm(Op::Read, 0, Strike::Before);
    assert!(matches!(store.contains("a"), Err(Error::Io { .. })));
    assert_eq!(first_seen(&store.check_and_mark("a").unwrap()), Some(T0));

    fault.arm(Op::Read, 0, Strike::Panic);
    let panicked = panic::catch_unwind(AssertUnwindSafe(|| store.check_and_mark("b")));
    assert!(panicked.is_err());
    // Both are claimed, then the batch's one read (one generation, both keys) fails.
    fault.arm(Op::Read, 0, Strike::Before);
    let batch = store.check_and_mark_batch(&["new", "b"]);
    assert!(matches!(batch, Err(Error::Io { .. })));
    // Neither the panicked read's claim nor the failed batch's claims are left in flight.
    assert_eq!(first_seen(&store.check_and_mark("b").unwrap()), Some(T0));
    assert_eq!(store.check_and_mark("new").unwrap(), Outcome::New);
}

/// Many threads race to mark the same IDs after a restart, half of them marked before it: each
/// ID is `New` exactly once, and only if it was not marked before.
#[test]
fn racing_callers_after_a_restart_get_exactly_one_new_per_id() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let ids: Vec<String> = (0..400).map(|i| format!("id-{i}")).collect();
    let old: Vec<&str> = ids.iter().step_by(2).map(String::as_str).collect();
    let store = reopened_after_marking(dir.path(), &clock, &old);
    let news: Vec<Vec<usize>> = thread::scope(|s| {
        let racers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut news = Vec::new();
                    for (i, id) in ids.iter().enumerate() {
                        loop {
                            match store.check_and_mark(id).unwrap() {
                                Outcome::InFlight => thread::yield_now(),
                                Outcome::New => break news.push(i),
                                Outcome::Duplicate { .. } => break,
                                Outcome::Conflict { .. } => panic!("no payloads given"),
                            }
                        }
                    }
                    news
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = news.concat();
    all.sort_unstable();
    let expected: Vec<usize> = (1..400).step_by(2).collect();
    assert_eq!(all, expected);
}

/// Batches (each thread its own order, so batches lock overlapping sets of stripes) race single
/// calls to mark the same IDs after a restart, half of them marked before it: no caller waits
/// for another for good, each ID is `New` exactly once, and only if it was not marked before;
/// the old ones are answered with their first mark's time.
#[test]
fn racing_batches_and_single_calls_get_exactly_one_new_per_id() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + T0);
    let ids: Vec<String> = (0..2_000).map(|i| format!("id-{i}")).collect();
    let old: Vec<&str> = ids.iter().step_by(2).map(String::as_str).collect();
    let store = reopened_after_marking(dir.path(), &clock, &old);
    let check = |i: usize, outcome: Outcome| -> Option<bool> {
        match outcome {
            Outcome::InFlight => None,
            Outcome::New => Some(true),
            Outcome::Duplicate { .. } => {
                if i.is_multiple_of(2) {
                    assert_eq!(first_seen(&outcome), Some(T0), "{}", ids[i]);
                }
                Some(false)
            }
            Outcome::Conflict { .. } => panic!("no payloads given"),
        }
    };
    let news: Vec<Vec<usize>> = thread::scope(|s| {
        let racers: Vec<_> = (0..4u64)
            .map(|racer| {
                let (ids, store, check) = (&ids, &store, &check);
                s.spawn(move || {
                    let mut order: Vec<usize> = (0..ids.len()).collect();
                    fastrand::Rng::with_seed(racer).shuffle(&mut order);
                    let mut news = Vec::new();
                    if racer % 2 == 0 {
                        for i in order {
                            let new = loop {
                                if let Some(new) = check(i, store.check_and_mark(&ids[i]).unwrap())
                                {
                                    break new;
                                }
                                thread::yield_now();
                            };
                            if new {
                                news.push(i);
                            }
                        }
                        return news;
                    }
                    let mut pending: Vec<usize> = Vec::new();
                    let mut rest = order.chunks(37);
                    loop {
                        let batch: Vec<usize> = match rest.next() {
                            Some(chunk) => pending.drain(..).chain(chunk.iter().copied()).collect(),
                            None if pending.is_empty() => break news,
                            None => std::mem::take(&mut pending),
                        };
                        let names: Vec<&String> = batch.iter().map(|&i| &ids[i]).collect();
                        let outcomes = store.check_and_mark_batch(&names).unwrap();
                        for (i, outcome) in batch.into_iter().zip(outcomes) {
                            match check(i, outcome) {
                                None => pending.push(i),
                                Some(true) => news.push(i),
                                Some(false) => {}
                            }
                        }
                        if rest.len() == 0 && !pending.is_empty() {
                            thread::yield_now();
                        }
                    }
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let mut all: Vec<usize> = news.concat();
    all.sort_unstable();
    let expected: Vec<usize> = (1..ids.len()).step_by(2).collect();
    assert_eq!(all, expected);
}
