//! Claims with leases, for effects outside the store: one holder at a time; completion stores a
//! result that duplicates get back, across restarts and for the window; release, drop and the
//! lease's end free the ID, and a holder that lost its lease cannot complete; payloads that
//! differ under one ID conflict; callers wait for an ID in flight, blocking or with `.await`;
//! claims move across threads and complete inside transactions, atomically.

#[path = "common/block_on.rs"]
mod block_on;

use block_on::block_on;
use dedupstore::{
    Claim, ClaimOutcome, CommitOutcome, Error, MAX_RESULT_LEN, ManualClock, Outcome, Store,
};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const LEASE: Duration = Duration::from_secs(30);
const WINDOW: Duration = Duration::from_secs(3600);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn open(path: &Path, clock: &ManualClock) -> Store {
    Store::builder(path)
        .window(WINDOW)
        .slots(60)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn acquired(outcome: ClaimOutcome) -> Claim {
    match outcome {
        ClaimOutcome::Acquired(claim) => claim,
        other => panic!("expected Acquired, got {other:?}"),
    }
}

fn completed(outcome: ClaimOutcome) -> Option<Vec<u8>> {
    match outcome {
        ClaimOutcome::Completed { result, .. } => result.map(|r| r.to_vec()),
        other => panic!("expected Completed, got {other:?}"),
    }
}

#[test]
fn a_claim_is_exclusive_until_completed_and_duplicates_get_its_result() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    let claim = acquired(store.claim("charge-1", LEASE).unwrap());
    assert_eq!(claim.id(), b"charge-1");
    assert_eq!(claim.until(), start() + LEASE);

    match store.claim("charge-1", LEASE).unwrap() {
        ClaimOutcome::InProgress { until } => assert_eq!(until, start() + LEASE),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.check_and_mark("charge-1").unwrap(), Outcome::InFlight);
    assert!(store.contains("charge-1").unwrap());
    assert_eq!(store.stats().claims_held, 1);

    clock.advance(Duration::from_secs(1));
    claim.complete(Some(b"201 charged")).unwrap();
    assert_eq!(store.stats().claims_held, 0);
    assert_eq!(
        completed(store.claim("charge-1", LEASE).unwrap()).as_deref(),
        Some(&b"201 charged"[..])
    );
    match store.check_and_mark("charge-1").unwrap() {
        Outcome::Duplicate { first_seen } => {
            assert_eq!(
                first_seen,
                start() + Duration::from_secs(1),
                "completion time"
            );
        }
        other => panic!("{other:?}"),
    }

    // Completed without a result; and a plain mark is a completed claim without one.
    acquired(store.claim("charge-2", LEASE).unwrap())
        .complete(None)
        .unwrap();
    assert_eq!(completed(store.claim("charge-2", LEASE).unwrap()), None);
    assert_eq!(store.check_and_mark("charge-3").unwrap(), Outcome::New);
    assert_eq!(completed(store.claim("charge-3", LEASE).unwrap()), None);
}

#[test]
fn release_and_drop_free_the_id_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    acquired(store.claim("a", LEASE).unwrap()).release();
    let claim = acquired(store.claim("a", LEASE).unwrap());
    drop(claim);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    // A claim dropped by a panicking holder frees the ID too.
    let held = acquired(store.claim("b", LEASE).unwrap());
    let outcome = std::thread::spawn(move || {
        let _held = held;
        panic!("the effect failed");
    })
    .join();
    assert!(outcome.is_err());
    acquired(store.claim("b", LEASE).unwrap());
}

#[test]
fn a_lease_that_runs_out_is_taken_over_and_its_holder_loses_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);

    // Run out, and taken over by another claim: the old holder cannot complete or extend.
    let mut hung = acquired(store.claim("job", LEASE).unwrap());
    clock.advance(LEASE - Duration::from_millis(1));
    assert!(matches!(
        store.claim("job", LEASE).unwrap(),
        ClaimOutcome::InProgress { .. }
    ));
    clock.advance(Duration::from_millis(1));
    let second = acquired(store.claim("job", LEASE).unwrap());
    assert!(matches!(
        hung.extend(LEASE),
        Err(Error::ClaimLost { completed: false })
    ));
    assert!(matches!(
        hung.complete(Some(b"late")),
        Err(Error::ClaimLost { completed: false })
    ));
    assert!(
        matches!(
            store.claim("job", LEASE).unwrap(),
            ClaimOutcome::InProgress { .. }
        ),
        "the loser's failed completion left the new holder's claim alone"
    );
    second.complete(Some(b"on time")).unwrap();
    assert_eq!(
        completed(store.claim("job", LEASE).unwrap()).as_deref(),
        Some(&b"on time"[..])
    );

    // Run out, and taken over by a check-and-mark: the old holder learns the ID is done.
    let hung = acquired(store.claim("msg", LEASE).unwrap());
    clock.advance(LEASE);
    assert_eq!(store.check_and_mark("msg").unwrap(), Outcome::New);
    assert!(matches!(
        hung.complete(None),
        Err(Error::ClaimLost { completed: true })
    ));

    // Run out, but nobody came: the late completion still counts.
    let slow = acquired(store.claim("slow", LEASE).unwrap());
    clock.advance(LEASE * 2);
    slow.complete(Some(b"late but alone")).unwrap();
    assert_eq!(
        completed(store.claim("slow", LEASE).unwrap()).as_deref(),
        Some(&b"late but alone"[..])
    );
}

#[test]
fn extend_keeps_a_claim_past_its_first_lease() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    let mut claim = acquired(store.claim("long", LEASE).unwrap());
    clock.advance(LEASE - Duration::from_secs(5));
    let until = claim.extend(LEASE).unwrap();
    assert_eq!(until, start() + LEASE * 2 - Duration::from_secs(5));
    assert_eq!(claim.until(), until);
    clock.advance(LEASE - Duration::from_secs(1));
    match store.claim("long", LEASE).unwrap() {
        ClaimOutcome::InProgress { until: seen } => assert_eq!(seen, until),
        other => panic!("past its first lease, the extended claim is held: {other:?}"),
    }
    claim.complete(None).unwrap();
}

#[test]
fn stored_results_outlive_a_restart_and_expire_with_the_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    acquired(store.claim("req-1", LEASE).unwrap())
        .complete(Some(b"{\"status\": 201}"))
        .unwrap();
    let large = vec![7u8; MAX_RESULT_LEN];
    acquired(store.claim("req-2", LEASE).unwrap())
        .complete(Some(&large))
        .unwrap();
    drop(store);

    clock.advance(WINDOW / 2);
    let store = open(dir.path(), &clock);
    assert_eq!(
        completed(store.claim("req-1", LEASE).unwrap()).as_deref(),
        Some(&b"{\"status\": 201}"[..])
    );
    assert_eq!(completed(store.claim("req-2", LEASE).unwrap()), Some(large));
    assert!(store.stats().cold_lookups > 0, "read back from disk");
    // Answered from memory now, the result still comes back.
    assert_eq!(
        completed(store.claim("req-1", LEASE).unwrap()).as_deref(),
        Some(&b"{\"status\": 201}"[..])
    );

    clock.advance(WINDOW / 2 + WINDOW / 60);
    acquired(store.claim("req-1", LEASE).unwrap());
}

#[test]
fn a_payload_that_differs_under_one_id_is_a_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    let conflict = |outcome: ClaimOutcome| {
        assert!(
            matches!(outcome, ClaimOutcome::Conflict { first_seen } if first_seen == start()),
            "{outcome:?}"
        );
    };

    let claim = acquired(store.claim_payload("order-1", "2 apples", LEASE).unwrap());
    conflict(store.claim_payload("order-1", "9 pears", LEASE).unwrap());
    assert!(matches!(
        store.claim_payload("order-1", "2 apples", LEASE).unwrap(),
        ClaimOutcome::InProgress { .. }
    ));
    assert!(matches!(
        store.check_and_mark_payload("order-1", "9 pears").unwrap(),
        Outcome::Conflict { .. }
    ));
    assert_eq!(
        store.check_and_mark("order-1").unwrap(),
        Outcome::InFlight,
        "no payload, nothing to compare"
    );
    claim.complete(Some(b"ok")).unwrap();
    conflict(store.claim_payload("order-1", "9 pears", LEASE).unwrap());
    assert_eq!(
        completed(store.claim_payload("order-1", "2 apples", LEASE).unwrap()).as_deref(),
        Some(&b"ok"[..])
    );

    // Plain marks with a payload, and transactions.
    assert_eq!(
        store.check_and_mark_payload("order-2", "a").unwrap(),
        Outcome::New
    );
    assert!(matches!(
        store.check_and_mark_payload("order-2", "b").unwrap(),
        Outcome::Conflict { .. }
    ));
    assert!(matches!(
        store.check_and_mark_payload("order-2", "a").unwrap(),
        Outcome::Duplicate { .. }
    ));
    let mut txn = store.transaction();
    txn.mark_payload("order-2", "b")
        .unwrap()
        .put("t", "k", "v")
        .unwrap();
    match txn.commit().unwrap() {
        CommitOutcome::Rejected(conflicts) => {
            assert!(matches!(conflicts[0].outcome, Outcome::Conflict { .. }));
        }
        other => panic!("{other:?}: committed over a conflicting payload"),
    }
    assert_eq!(store.get("t", "k").unwrap(), None);

    // After a restart, from disk.
    drop(store);
    let store = open(dir.path(), &clock);
    conflict(store.claim_payload("order-1", "9 pears", LEASE).unwrap());
    assert!(matches!(
        store.check_and_mark_payload("order-2", "b").unwrap(),
        Outcome::Conflict { .. }
    ));
    assert!(matches!(
        store.check_and_mark_payload("order-2", "a").unwrap(),
        Outcome::Duplicate { .. }
    ));
}

#[test]
fn a_claim_completes_inside_a_transaction_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);

    let claim = acquired(store.claim("refund-1", LEASE).unwrap());
    let mut txn = store.transaction();
    txn.complete(claim, Some(b"refunded"))
        .unwrap()
        .put("refunds", "refund-1", "10 EUR")
        .unwrap()
        .set_offset("refunds", 0, 1)
        .unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    assert_eq!(
        completed(store.claim("refund-1", LEASE).unwrap()).as_deref(),
        Some(&b"refunded"[..])
    );
    assert_eq!(
        store.get("refunds", "refund-1").unwrap().as_deref(),
        Some(&b"10 EUR"[..])
    );

    // Rejected (another mark is a duplicate): nothing is written and the claim is released.
    assert_eq!(store.check_and_mark("seen").unwrap(), Outcome::New);
    let claim = acquired(store.claim("refund-2", LEASE).unwrap());
    let mut txn = store.transaction();
    txn.complete(claim, Some(b"refunded"))
        .unwrap()
        .mark("seen")
        .unwrap()
        .put("refunds", "refund-2", "5 EUR")
        .unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Rejected(_)));
    assert_eq!(store.get("refunds", "refund-2").unwrap(), None);
    acquired(store.claim("refund-2", LEASE).unwrap()).release();

    // Dropped uncommitted: the claim is released.
    let claim = acquired(store.claim("refund-3", LEASE).unwrap());
    let mut txn = store.transaction();
    txn.complete(claim, None).unwrap();
    drop(txn);
    acquired(store.claim("refund-3", LEASE).unwrap()).release();

    // A mark of the claimed ID in the same transaction is the completion, not a conflict.
    let claim = acquired(store.claim("refund-4", LEASE).unwrap());
    let mut txn = store.transaction();
    txn.mark("refund-4").unwrap();
    txn.complete(claim, Some(b"r4")).unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    assert_eq!(
        completed(store.claim("refund-4", LEASE).unwrap()).as_deref(),
        Some(&b"r4"[..])
    );

    // Lost before the commit: rejected, naming the ID.
    let claim = acquired(store.claim("refund-5", LEASE).unwrap());
    clock.advance(LEASE);
    let other = acquired(store.claim("refund-5", LEASE).unwrap());
    let mut txn = store.transaction();
    txn.complete(claim, None)
        .unwrap()
        .put("refunds", "refund-5", "x")
        .unwrap();
    match txn.commit().unwrap() {
        CommitOutcome::Rejected(conflicts) => {
            assert_eq!(conflicts[0].id, "refund-5");
            assert_eq!(conflicts[0].outcome, Outcome::InFlight);
        }
        other => panic!("{other:?}: committed a lost claim"),
    }
    assert_eq!(store.get("refunds", "refund-5").unwrap(), None);
    other.release();

    // A claim of another store is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let other_store = open(elsewhere.path(), &clock);
    let foreign = acquired(other_store.claim("x", LEASE).unwrap());
    assert!(matches!(
        store.transaction().complete(foreign, None),
        Err(Error::InvalidArgument { what: "claim", .. })
    ));
    acquired(other_store.claim("x", LEASE).unwrap());
}

#[test]
fn bad_arguments_are_refused_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    for lease in [Duration::ZERO, Duration::from_micros(999), Duration::MAX] {
        assert!(matches!(
            store.claim("x", lease),
            Err(Error::InvalidArgument { what: "lease", .. })
        ));
    }
    assert!(matches!(
        store.claim("", LEASE),
        Err(Error::InvalidId { .. })
    ));
    let mut claim = acquired(store.claim("x", LEASE).unwrap());
    assert!(matches!(
        claim.extend(Duration::ZERO),
        Err(Error::InvalidArgument { what: "lease", .. })
    ));
    assert_eq!(claim.until(), start() + LEASE, "unchanged");
    let too_long = vec![0u8; MAX_RESULT_LEN + 1];
    assert!(matches!(
        claim.complete(Some(&too_long)),
        Err(Error::InvalidArgument { what: "result", .. })
    ));
    // Nothing was written, and the claim was released.
    acquired(store.claim("x", LEASE).unwrap());
}

#[test]
fn claims_move_across_threads_and_exactly_one_racer_completes() {
    fn movable<T: Send + 'static>() {}
    movable::<Claim>();
    movable::<ClaimOutcome>();
    movable::<dedupstore::Settled>();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let claim = acquired(store.claim("moved", LEASE).unwrap());
    std::thread::spawn(move || claim.complete(Some(b"from a thread")).unwrap())
        .join()
        .unwrap();
    assert_eq!(
        completed(store.claim("moved", LEASE).unwrap()).as_deref(),
        Some(&b"from a thread"[..])
    );

    let effects = Arc::new(AtomicU32::new(0));
    let racers: Vec<_> = (0..8)
        .map(|_| {
            let (store, effects) = (store.clone(), Arc::clone(&effects));
            std::thread::spawn(move || {
                for i in 0..200 {
                    let id = format!("race-{i}");
                    loop {
                        match store.claim(&id, LEASE).unwrap() {
                            ClaimOutcome::Acquired(claim) => {
                                effects.fetch_add(1, Ordering::Relaxed);
                                claim.complete(None).unwrap();
                                break;
                            }
                            ClaimOutcome::InProgress { .. } => {
                                store.wait_settled(&id, LEASE).unwrap();
                            }
                            ClaimOutcome::Completed { .. } => break,
                            ClaimOutcome::Conflict { .. } => panic!("no payloads"),
                        }
                    }
                }
            })
        })
        .collect();
    for racer in racers {
        racer.join().unwrap();
    }
    assert_eq!(effects.load(Ordering::Relaxed), 200, "one effect per ID");
}

#[test]
fn waiters_wake_when_an_id_settles() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(
        store.wait_settled("idle", Duration::ZERO).unwrap(),
        "nothing in flight"
    );

    // Released by its holder, then claimed again 2 s later: a waiter that missed the release
    // would find the second claim when its own wait runs out, and return false.
    let claim = acquired(store.claim("a", Duration::from_secs(3600)).unwrap());
    assert!(
        !store.wait_settled("a", Duration::from_millis(20)).unwrap(),
        "times out"
    );
    let holder = {
        let store = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            claim.release();
            std::thread::sleep(Duration::from_secs(2));
            acquired(store.claim("a", Duration::from_secs(3600)).unwrap())
        })
    };
    assert!(store.wait_settled("a", Duration::from_secs(10)).unwrap());
    holder.join().unwrap().release();
    // A lease that runs out wakes a blocking waiter without anyone releasing it.
    let hung = acquired(store.claim("b", Duration::from_millis(100)).unwrap());
    assert!(store.wait_settled("b", Duration::from_secs(60)).unwrap());
    acquired(store.claim("b", LEASE).unwrap())
        .complete(None)
        .unwrap();
    drop(hung);

    // Awaited: completed by its holder on another thread.
    let claim = acquired(store.claim("c", LEASE).unwrap());
    let settled = store.settled("c").unwrap();
    let holder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        claim.complete(Some(b"done")).unwrap();
    });
    block_on(settled);
    holder.join().unwrap();
    assert_eq!(
        completed(store.claim("c", LEASE).unwrap()).as_deref(),
        Some(&b"done"[..])
    );
    assert!(matches!(store.settled(""), Err(Error::InvalidId { .. })));
}

/// Claims, completions, releases, marks and time passing in any order, on three IDs under a
/// manual clock, against a model of leases: who holds each ID until when, and what completed it.
mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Claim { id: u8, lease: u64 },
        Advance(u64),
        Complete { holder: usize, result: Option<u8> },
        Release(usize),
        Mark(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3u8, 1..100u64).prop_map(|(id, lease)| Op::Claim { id, lease }),
            (0..150u64).prop_map(Op::Advance),
            (0..4usize, proptest::option::of(any::<u8>()))
                .prop_map(|(holder, result)| Op::Complete { holder, result }),
            (0..4usize).prop_map(Op::Release),
            (0..3u8).prop_map(Op::Mark),
        ]
    }

    /// One ID in the model.
    #[derive(Default)]
    struct Id {
        /// The live-or-dead lease the store holds: its end and the holder's number.
        lease: Option<(u64, usize)>,
        /// When it was marked, and the result stored.
        done: Option<(u64, Option<u8>)>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn claims_follow_their_leases(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(start());
            let store = open(dir.path(), &clock);
            let mut ids: Vec<Id> = (0..3).map(|_| Id::default()).collect();
            // Claims held: (ID, its holder number, the claim).
            let mut held: Vec<(u8, usize, Claim)> = Vec::new();
            let (mut now, mut next_holder) = (0u64, 0usize);
            let time = |ms: u64| start() + Duration::from_millis(ms);
            for op in ops {
                match op {
                    Op::Advance(ms) => {
                        clock.advance(Duration::from_millis(ms));
                        now += ms;
                    }
                    Op::Claim { id, lease } => {
                        let model = &mut ids[usize::from(id)];
                        let outcome = store
                            .claim([id], Duration::from_millis(lease))
                            .unwrap();
                        match (outcome, model.done, model.lease) {
                            (ClaimOutcome::Completed { result, at }, Some((t, r)), _) => {
                                prop_assert_eq!(at, time(t));
                                prop_assert_eq!(result.map(|r| r[0]), r);
                            }
                            (ClaimOutcome::InProgress { until }, None, Some((end, _)))
                                if now < end =>
                            {
                                prop_assert_eq!(until, time(end));
                            }
                            (ClaimOutcome::Acquired(claim), None, current)
                                if current.is_none_or(|(end, _)| now >= end) =>
                            {
                                model.lease = Some((now + lease_ms(lease, now, &claim), next_holder));
                                held.push((id, next_holder, claim));
                                next_holder += 1;
                            }
                            (outcome, done, lease) => prop_assert!(
                                false,
                                "claim {id} at {now}: {outcome:?}, model {done:?} {lease:?}"
                            ),
                        }
                    }
                    Op::Mark(id) => {
                        let model = &mut ids[usize::from(id)];
                        let outcome = store.check_and_mark([id]).unwrap();
                        let live = model.lease.is_some_and(|(end, _)| now < end);
                        match (outcome, model.done) {
                            (Outcome::Duplicate { first_seen }, Some((t, _))) => {
                                prop_assert_eq!(first_seen, time(t));
                            }
                            (Outcome::InFlight, None) if live => {}
                            (Outcome::New, None) if !live => {
                                model.done = Some((now, None));
                                model.lease = None; // taken over
                            }
                            (outcome, done) => prop_assert!(
                                false,
                                "mark {id} at {now}: {outcome:?}, model {done:?} live {live}"
                            ),
                        }
                    }
                    Op::Complete { holder, result } => {
                        if holder >= held.len() {
                            continue;
                        }
                        let (id, number, claim) = held.remove(holder);
                        let model = &mut ids[usize::from(id)];
                        let ours = model.lease.is_some_and(|(_, n)| n == number);
                        let live_other = !ours && model.lease.is_some_and(|(end, _)| now < end);
                        let completed = claim.complete(result.as_ref().map(std::slice::from_ref));
                        match completed {
                            Ok(()) if ours || (model.done.is_none() && !live_other) => {
                                model.done = Some((now, result));
                                model.lease = None;
                            }
                            Err(Error::ClaimLost { completed }) if !ours => {
                                prop_assert_eq!(completed, model.done.is_some());
                                prop_assert_eq!(!completed, live_other);
                            }
                            other => prop_assert!(
                                false,
                                "complete {id} at {now}: {other:?}, ours {ours}"
                            ),
                        }
                    }
                    Op::Release(holder) => {
                        if holder >= held.len() {
                            continue;
                        }
                        let (id, number, claim) = held.remove(holder);
                        claim.release();
                        let model = &mut ids[usize::from(id)];
                        if model.lease.is_some_and(|(_, n)| n == number) {
                            model.lease = None;
                        }
                    }
                }
            }
        }
    }

    /// The lease a claim acquired at `now` got, checked against what was asked.
    fn lease_ms(lease: u64, now: u64, claim: &Claim) -> u64 {
        let until = claim.until().duration_since(start()).unwrap().as_millis();
        assert_eq!(u64::try_from(until).unwrap(), now + lease);
        lease
    }
}
