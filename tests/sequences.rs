//! Producer sequences: one high-water mark per producer. The next sequence is accepted, one at
//! or below the mark is a duplicate and one beyond the next is a gap, which accepts nothing; an
//! unknown producer starts anywhere; the mark survives a reopen; a producer idle for longer than
//! the idle time is forgotten, in memory and on disk; a transaction's sequences commit with the
//! rest of it or not at all; concurrent callers accept each sequence exactly once; bad
//! producers are refused and change nothing; a damaged producer record fails the open.

use dedupstore::{CommitOutcome, Error, ManualClock, SequenceOutcome, Store};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use SequenceOutcome::{Accepted, Duplicate, Gap, InFlight};

const IDLE: Duration = Duration::from_secs(10);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn open(path: &Path, clock: &ManualClock, idle: Duration) -> Store {
    Store::builder(path)
        .window(Duration::from_secs(3600))
        .producer_idle(idle)
        .clock(clock.clone())
        .open()
        .unwrap()
}

#[test]
fn next_sequences_are_accepted_and_duplicates_and_gaps_told_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.high_water("p").unwrap(), None);
    assert_eq!(store.accept("p", 0).unwrap(), Accepted);
    assert_eq!(store.accept("p", 1).unwrap(), Accepted);
    assert_eq!(store.accept("p", 1).unwrap(), Duplicate { high_water: 1 });
    assert_eq!(store.accept("p", 0).unwrap(), Duplicate { high_water: 1 });
    assert_eq!(store.accept("p", 3).unwrap(), Gap { expected: 2 });
    assert_eq!(
        store.high_water("p").unwrap(),
        Some(1),
        "a gap accepts nothing"
    );
    assert_eq!(store.accept("p", 2).unwrap(), Accepted);
    assert_eq!(store.accept("p", 3).unwrap(), Accepted);
    assert_eq!(store.high_water("p").unwrap(), Some(3));

    // Producers are independent, and an unknown one starts wherever it is.
    assert_eq!(store.accept("q", 1_000).unwrap(), Accepted);
    assert_eq!(
        store.accept("q", 999).unwrap(),
        Duplicate { high_water: 1_000 }
    );
    assert_eq!(store.high_water("p").unwrap(), Some(3));

    // The top of the range: nothing follows u64::MAX.
    assert_eq!(store.accept("r", u64::MAX - 1).unwrap(), Accepted);
    assert_eq!(store.accept("r", u64::MAX).unwrap(), Accepted);
    assert_eq!(
        store.accept("r", u64::MAX).unwrap(),
        Duplicate {
            high_water: u64::MAX
        }
    );
    assert_eq!(store.stats().producers, 3);
}

#[test]
fn the_high_water_mark_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for seq in 0..100 {
        assert_eq!(store.accept("p", seq).unwrap(), Accepted);
    }
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.high_water("p").unwrap(), Some(99));
    assert_eq!(store.accept("p", 42).unwrap(), Duplicate { high_water: 99 });
    assert_eq!(store.accept("p", 101).unwrap(), Gap { expected: 100 });
    assert_eq!(store.accept("p", 100).unwrap(), Accepted);
}

#[test]
fn an_idle_producer_is_forgotten_after_the_idle_time() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock, IDLE);
    assert_eq!(store.accept("p", 5).unwrap(), Accepted);
    clock.advance(IDLE - Duration::from_millis(1));
    // Refused sequences do not keep a producer alive: only accepted ones do.
    assert_eq!(store.accept("p", 5).unwrap(), Duplicate { high_water: 5 });
    assert_eq!(store.accept("p", 9).unwrap(), Gap { expected: 6 });
    clock.advance(Duration::from_millis(1));
    assert_eq!(store.high_water("p").unwrap(), None);
    assert_eq!(store.accept("p", 0).unwrap(), Accepted, "starts over");

    // Across a reopen: forgotten at open, and deleted from disk then, so a later open with a
    // longer idle time does not bring it back.
    assert_eq!(store.accept("q", 7).unwrap(), Accepted);
    store.close().unwrap();
    clock.advance(IDLE);
    let store = open(dir.path(), &clock, IDLE);
    assert_eq!(store.high_water("q").unwrap(), None);
    assert_eq!(store.stats().producers, 0);
    store.close().unwrap();
    let store = open(dir.path(), &clock, IDLE * 1_000);
    assert_eq!(store.high_water("q").unwrap(), None);
    assert_eq!(store.high_water("p").unwrap(), None);
}

/// The in-memory table is swept once it doubles: idle producers leave memory and disk while the
/// store runs, not only at the next open.
#[test]
fn idle_producers_are_swept_from_memory_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock, IDLE);
    for n in 0..1_000 {
        assert_eq!(store.accept(format!("old-{n}"), 0).unwrap(), Accepted);
    }
    clock.advance(IDLE);
    for n in 0..100 {
        assert_eq!(store.accept(format!("new-{n}"), 0).unwrap(), Accepted);
    }
    assert_eq!(store.stats().producers, 100, "the idle ones were swept");
    store.close().unwrap();
    // Reopened with an idle time that would keep them, only the live ones are on disk.
    let store = open(dir.path(), &clock, IDLE * 1_000);
    assert_eq!(store.stats().producers, 100);
    assert_eq!(store.high_water("old-0").unwrap(), None);
    assert_eq!(store.high_water("new-0").unwrap(), Some(0));
}

/// A sweep racing with accepts of the producers it finds idle: an idle producer accepted again
/// while the sweep runs keeps its new record, on disk too (the sweep deletes a stripe's records
/// while holding the stripe, so no accept of them lands between finding and deleting).
#[test]
fn a_sweep_never_deletes_a_record_written_during_it() {
    const OLD: usize = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock, IDLE);
    for n in 0..OLD {
        assert_eq!(store.accept(format!("old-{n}"), 0).unwrap(), Accepted);
    }
    clock.advance(IDLE);
    std::thread::scope(|s| {
        // Past the table's next doubling, which sweeps every old producer as idle.
        s.spawn(|| {
            for n in 0..200 {
                assert_eq!(store.accept(format!("new-{n}"), 0).unwrap(), Accepted);
            }
        });
        s.spawn(|| {
            for n in 0..OLD {
                assert_eq!(store.accept(format!("old-{n}"), 5).unwrap(), Accepted);
            }
        });
    });
    store.close().unwrap();
    let store = open(dir.path(), &clock, IDLE * 1_000);
    for n in 0..OLD {
        assert_eq!(
            store.high_water(format!("old-{n}")).unwrap(),
            Some(5),
            "old-{n}"
        );
    }
    assert_eq!(store.stats().producers, OLD + 200);
}

#[test]
fn a_transaction_accepts_with_the_rest_of_it_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.accept("p", 2)
        .unwrap()
        .accept("p", 0)
        .unwrap()
        .accept("p", 1)
        .unwrap()
        .accept("p", 1)
        .unwrap()
        .accept("q", 7)
        .unwrap()
        .mark("m-1")
        .unwrap()
        .put("rows", "k", "1")
        .unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    assert_eq!(store.high_water("p").unwrap(), Some(2));
    assert_eq!(store.high_water("q").unwrap(), Some(7));

    // A gap, a duplicate, and a producer that is fine: all refused, nothing written.
    let mut txn = store.transaction();
    txn.accept("p", 4)
        .unwrap()
        .accept("q", 7)
        .unwrap()
        .accept("r", 0)
        .unwrap()
        .mark("m-2")
        .unwrap()
        .put("rows", "k", "2")
        .unwrap();
    match txn.commit().unwrap() {
        CommitOutcome::OutOfSequence(refused) => {
            let named: Vec<(&[u8], u64, SequenceOutcome)> = refused
                .iter()
                .map(|r| (&r.producer[..], r.seq, r.outcome))
                .collect();
            assert_eq!(
                named,
                [
                    (&b"p"[..], 4, Gap { expected: 3 }),
                    (&b"q"[..], 7, Duplicate { high_water: 7 }),
                ]
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.contains("m-2").unwrap(), "the mark was released");
    assert_eq!(store.get("rows", "k").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(store.high_water("r").unwrap(), None);

    // A transaction rejected for a mark accepts nothing either.
    let mut txn = store.transaction();
    txn.accept("p", 3).unwrap().mark("m-1").unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Rejected(_)));
    assert_eq!(store.high_water("p").unwrap(), Some(2));
    assert_eq!(store.accept("p", 3).unwrap(), Accepted);

    // Survives a reopen with the rest of the transaction.
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.high_water("p").unwrap(), Some(3));
    assert_eq!(store.high_water("q").unwrap(), Some(7));
    assert!(store.contains("m-1").unwrap());
}

/// Threads race through one producer's sequences, each retrying `InFlight` and gaps (it is
/// ahead of the others): every sequence is accepted exactly once.
#[test]
fn concurrent_callers_accept_each_sequence_exactly_once() {
    const THREADS: usize = 4;
    const SEQUENCES: u64 = 2_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let accepted: Vec<AtomicU32> = (0..SEQUENCES).map(|_| AtomicU32::new(0)).collect();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| {
                for seq in 0..SEQUENCES {
                    loop {
                        match store.accept("p", seq).unwrap() {
                            Accepted => {
                                accepted[usize::try_from(seq).unwrap()]
                                    .fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                            Duplicate { high_water } => {
                                assert!(seq <= high_water);
                                break;
                            }
                            Gap { expected } => assert!(expected < seq),
                            InFlight => std::thread::yield_now(),
                        }
                    }
                }
            });
        }
    });
    for (seq, count) in accepted.iter().enumerate() {
        assert_eq!(count.load(Ordering::Relaxed), 1, "sequence {seq}");
    }
    assert_eq!(store.high_water("p").unwrap(), Some(SEQUENCES - 1));
}

#[test]
fn bad_producers_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let long = vec![b'p'; dedupstore::MAX_ID_LEN + 1];
    for bad in [&b""[..], &long[..]] {
        for result in [
            store.accept(bad, 0).map(drop),
            store.high_water(bad).map(drop),
            store.transaction().accept(bad, 0).map(drop),
        ] {
            assert!(
                matches!(
                    result,
                    Err(Error::InvalidArgument {
                        what: "producer",
                        ..
                    })
                ),
                "{result:?}"
            );
        }
    }
    let mut txn = store.transaction();
    txn.put("rows", "k", "v").unwrap();
    assert!(txn.accept("", 0).is_err());
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    assert_eq!(store.stats().producers, 0);
    let longest = vec![b'p'; dedupstore::MAX_ID_LEN];
    assert_eq!(store.accept(&longest, 0).unwrap(), Accepted);
}

#[test]
fn a_damaged_producer_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.accept("sensor-7", 3).unwrap(), Accepted);
    store.close().unwrap();
    {
        use rocksdb::{DB, Options};
        let names = DB::list_cf(&Options::default(), dir.path()).unwrap();
        let db = DB::open_cf(&Options::default(), dir.path(), &names).unwrap();
        db.put_cf(&db.cf_handle("producers").unwrap(), b"sensor-7", [0; 9])
            .unwrap();
    }
    match Store::open(dir.path()) {
        Err(Error::Corruption { what, detail }) => {
            assert!(what.contains("sensor-7"), "{what}");
            assert!(detail.contains("9 bytes"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}
