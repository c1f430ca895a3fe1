//! Record-and-mark transactions: marks, table rows, offsets and outbox events commit together or
//! not at all; a duplicate mark rejects the whole transaction and names itself; concurrent
//! transactions sharing an ID commit exactly once; tickets keep many commits in flight and
//! merge into groups.

#[path = "common/block_on.rs"]
mod block_on;

use block_on::block_on;
use dedupstore::{CommitOutcome, Error, Outcome, Store, Ticket};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};

fn committed(outcome: CommitOutcome) -> std::ops::Range<u64> {
    match outcome {
        CommitOutcome::Committed(receipt) => receipt.outbox,
        refused => panic!("{refused:?}"),
    }
}

#[test]
fn everything_commits_together() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.mark("pay-1").unwrap();
    txn.put("balances", "alice", "90").unwrap();
    txn.put("ledger", "1", "alice -10").unwrap();
    txn.set_offset("payments", 3, 101).unwrap();
    txn.outbox("debited alice").outbox("receipt 1");
    assert_eq!(committed(txn.commit().unwrap()), 0..2);

    assert!(matches!(
        store.check_and_mark("pay-1").unwrap(),
        Outcome::Duplicate { .. }
    ));
    assert_eq!(
        store.get("balances", "alice").unwrap().as_deref(),
        Some(&b"90"[..])
    );
    assert_eq!(
        store.get("ledger", "1").unwrap().as_deref(),
        Some(&b"alice -10"[..])
    );
    assert_eq!(store.get("ledger", "2").unwrap(), None);
    assert_eq!(store.get("never-written", "x").unwrap(), None);
    assert_eq!(store.offset("payments", 3).unwrap(), Some(101));
    assert_eq!(store.offset("payments", 4).unwrap(), None);
    let events = store.outbox().peek(10).unwrap();
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(events[1].payload, "receipt 1");

    // Deletes, and offsets that move on, in a transaction without marks.
    let mut txn = store.transaction();
    txn.delete("balances", "alice")
        .unwrap()
        .set_offset("payments", 3, 102)
        .unwrap();
    assert!(committed(txn.commit().unwrap()).is_empty());
    assert_eq!(store.get("balances", "alice").unwrap(), None);
    assert_eq!(store.offset("payments", 3).unwrap(), Some(102));
}

#[test]
fn a_duplicate_rejects_everything_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.check_and_mark_batch(&["a", "c"]).unwrap();

    let mut txn = store.transaction();
    txn.mark("a").unwrap().mark("b").unwrap().mark("c").unwrap();
    txn.put("rows", "k", "v")
        .unwrap()
        .set_offset("s", 0, 5)
        .unwrap()
        .outbox("e");
    match txn.commit().unwrap() {
        CommitOutcome::Rejected(conflicts) => {
            let ids: Vec<&[u8]> = conflicts.iter().map(|c| &c.id[..]).collect();
            assert_eq!(ids, [b"a", b"c"]);
            assert!(
                conflicts
                    .iter()
                    .all(|c| matches!(c.outcome, Outcome::Duplicate { .. }))
            );
        }
        other => panic!("{other:?}: committed a duplicate"),
    }
    assert!(!store.contains("b").unwrap(), "the new mark was released");
    assert_eq!(store.get("rows", "k").unwrap(), None);
    assert_eq!(store.offset("s", 0).unwrap(), None);
    assert!(store.outbox().peek(10).unwrap().is_empty());

    // Marking one ID twice in a transaction marks it once.
    let mut txn = store.transaction();
    txn.mark("b").unwrap().mark("b").unwrap();
    committed(txn.commit().unwrap());
}

#[test]
fn bad_names_and_ids_are_refused_when_added() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.mark("ok").unwrap().mark("ok").unwrap();
    assert!(matches!(
        txn.mark(""),
        Err(Error::InvalidId {
            position: Some(2),
            len: 0
        })
    ));
    assert!(matches!(
        txn.put("bad name", "k", "v"),
        Err(Error::InvalidName { what: "table", .. })
    ));
    assert!(matches!(
        txn.delete("", "k"),
        Err(Error::InvalidName { what: "table", .. })
    ));
    assert!(matches!(
        txn.set_offset("", 0, 1),
        Err(Error::InvalidName { what: "stream", .. })
    ));
    assert!(matches!(
        store.get("a/b", "k"),
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        store.offset(&"s".repeat(256), 0),
        Err(Error::InvalidName { .. })
    ));
    // The refused additions left the transaction as it was.
    committed(txn.commit().unwrap());
    assert!(store.contains("ok").unwrap());
}

#[test]
fn concurrent_transactions_sharing_an_id_commit_once() {
    const THREADS: usize = 8;
    const ROUNDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let wins: Vec<AtomicU32> = (0..ROUNDS).map(|_| AtomicU32::new(0)).collect();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, wins, barrier) = (&store, &wins, &barrier);
            s.spawn(move || {
                for (round, won) in wins.iter().enumerate() {
                    barrier.wait();
                    // Two shared IDs, marked in opposite orders by odd and even threads.
                    let shared = [format!("shared-{round}-a"), format!("shared-{round}-b")];
                    let mut txn = store.transaction();
                    txn.mark(&shared[t % 2]).unwrap();
                    txn.mark(format!("own-{t}-{round}")).unwrap();
                    txn.mark(&shared[1 - t % 2]).unwrap();
                    txn.put("winners", format!("{round}-{t}"), "won").unwrap();
                    if let CommitOutcome::Committed(_) = txn.commit().unwrap() {
                        won.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    for (round, w) in wins.iter().enumerate() {
        let winners: Vec<usize> = (0..THREADS)
            .filter(|t| {
                store
                    .get("winners", format!("{round}-{t}"))
                    .unwrap()
                    .is_some()
            })
            .collect();
        // A round can also have no winner: every transaction saw another's claim in flight.
        assert!(
            w.load(Ordering::Relaxed) <= 1,
            "round {round}: {} commits",
            w.load(Ordering::Relaxed)
        );
        assert_eq!(
            winners.len() as u32,
            w.load(Ordering::Relaxed),
            "round {round}"
        );
        for t in 0..THREADS {
            assert_eq!(
                store.contains(format!("own-{t}-{round}")).unwrap(),
                winners == [t]
            );
        }
    }
    assert!(
        wins.iter()
            .filter(|w| w.load(Ordering::Relaxed) == 1)
            .count()
            > ROUNDS / 2
    );
}

#[test]
fn one_thread_keeps_many_commits_in_flight_and_they_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let tickets: Vec<Ticket> = (0..2_000)
        .map(|i| {
            let mut txn = store.transaction();
            txn.mark(format!("m-{i}"))
                .unwrap()
                .set_offset("s", 0, i + 1)
                .unwrap()
                .outbox(format!("{i}"));
            txn.submit().unwrap()
        })
        .collect();
    let ranges: Vec<_> = tickets
        .into_iter()
        .map(|t| committed(t.wait().unwrap()))
        .collect();
    // Sequence numbers follow submission order from one thread.
    assert!(
        ranges
            .iter()
            .enumerate()
            .all(|(i, r)| *r == (i as u64..i as u64 + 1))
    );
    assert_eq!(store.offset("s", 0).unwrap(), Some(2_000));
    let stats = store.stats();
    assert_eq!(stats.committed_transactions, 2_000);
    assert!(stats.largest_commit_group > 1, "{stats:?}");
    assert!(stats.commit_groups < 2_000, "{stats:?}");
}

#[test]
fn a_commit_never_overtakes_the_same_threads_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..50u64 {
        let tickets: Vec<Ticket> = (0..20)
            .map(|i| {
                let mut txn = store.transaction();
                txn.set_offset("s", 0, round * 100 + i)
                    .unwrap()
                    .outbox("queued");
                txn.submit().unwrap()
            })
            .collect();
        let mut txn = store.transaction();
        txn.set_offset("s", 0, round * 100 + 99)
            .unwrap()
            .outbox("last");
        let last = committed(txn.commit().unwrap());
        assert_eq!(
            store.offset("s", 0).unwrap(),
            Some(round * 100 + 99),
            "round {round}"
        );
        for ticket in tickets {
            assert!(committed(ticket.wait().unwrap()).end <= last.start);
        }
    }
}

#[test]
fn threads_waiting_on_tickets_keep_each_threads_commit_order() {
    // Waiting callers write queued groups themselves when the writer is free, racing the
    // committer and each other: each thread's commits must still land in submission order.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let threads: u32 = 4;
    let per_thread: u64 = 1_500;
    std::thread::scope(|scope| {
        for t in 0..threads {
            let store = &store;
            scope.spawn(move || {
                let mut in_flight = std::collections::VecDeque::new();
                let mut last_seq = None;
                let mut check = |ticket: Ticket| {
                    let range = committed(ticket.wait().unwrap());
                    assert!(last_seq.is_none_or(|last| range.start > last), "thread {t}");
                    last_seq = Some(range.start);
                };
                for i in 1..=per_thread {
                    let mut txn = store.transaction();
                    txn.mark(format!("{t}-{i}"))
                        .unwrap()
                        .set_offset("s", t, i)
                        .unwrap()
                        .outbox(format!("{t}-{i}"));
                    in_flight.push_back(txn.submit().unwrap());
                    if in_flight.len() == 8 {
                        check(in_flight.pop_front().unwrap());
                    }
                }
                in_flight.into_iter().for_each(check);
            });
        }
    });
    for t in 0..threads {
        assert_eq!(store.offset("s", t).unwrap(), Some(per_thread));
    }
    // The outbox holds every event once, each thread's in its submission order.
    let events = store.outbox().peek(usize::MAX).unwrap();
    assert_eq!(events.len() as u64, u64::from(threads) * per_thread);
    let mut next = vec![1u64; threads as usize];
    for event in &events {
        let text = std::str::from_utf8(&event.payload).unwrap();
        let (t, i) = text.split_once('-').unwrap();
        let t: usize = t.parse().unwrap();
        assert_eq!(i.parse::<u64>().unwrap(), next[t], "{text}");
        next[t] += 1;
    }
    assert_eq!(
        store.stats().committed_transactions,
        u64::from(threads) * per_thread
    );
}

#[test]
fn a_ticket_kept_after_its_store_is_dropped_does_not_keep_it_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.mark("kept").unwrap();
    let ticket = txn.submit().unwrap();
    // Dropping the store writes what is queued and closes the database.
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert!(matches!(
        ticket.wait().unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert!(matches!(
        store.check_and_mark("kept").unwrap(),
        Outcome::Duplicate { .. }
    ));
}

#[test]
fn later_writes_to_a_key_win_within_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for round in 0..20 {
        let first = {
            let mut txn = store.transaction();
            txn.put("a", "k", format!("{round}-1"))
                .unwrap()
                .put("b", "k", "x")
                .unwrap();
            txn.submit().unwrap()
        };
        let second = {
            let mut txn = store.transaction();
            txn.put("a", "k", format!("{round}-2"))
                .unwrap()
                .delete("b", "k")
                .unwrap();
            txn.submit().unwrap()
        };
        committed(first.wait().unwrap());
        committed(second.wait().unwrap());
        assert_eq!(
            store.get("a", "k").unwrap().as_deref(),
            Some(format!("{round}-2").as_bytes())
        );
        assert_eq!(store.get("b", "k").unwrap(), None);
    }
}

#[test]
fn tickets_can_be_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.mark("async").unwrap().outbox("e");
    let ticket = txn.submit().unwrap();
    assert_eq!(committed(block_on(ticket).unwrap()), 0..1);
    let mut txn = store.transaction();
    txn.mark("async").unwrap();
    let mut ticket = txn.submit().unwrap();
    assert!(matches!(
        block_on(&mut ticket).unwrap(),
        CommitOutcome::Rejected(_)
    ));
    // Its outcome was returned: asking again is an error, not a hang or a panic.
    assert!(matches!(block_on(&mut ticket), Err(Error::Storage { .. })));
    assert!(matches!(ticket.wait(), Err(Error::Storage { .. })));
}

#[test]
fn the_outbox_keeps_commit_order_and_acks_durably() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        for i in 0..10 {
            let mut txn = store.transaction();
            txn.mark(format!("o-{i}"))
                .unwrap()
                .outbox(format!("event-{i}"));
            committed(txn.commit().unwrap());
        }
        let outbox = store.outbox();
        assert_eq!(
            outbox
                .peek(3)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect::<Vec<_>>(),
            [0, 1, 2]
        );
        outbox.ack(3).unwrap();
        outbox.ack(1).unwrap(); // acking again is harmless
        assert_eq!(outbox.peek(100).unwrap()[0].seq, 4);
    }
    // What was acked stays gone after a restart; what was not is read again.
    let store = Store::open(dir.path()).unwrap();
    let events = store.outbox().peek(100).unwrap();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [4, 5, 6, 7, 8, 9]
    );
    assert_eq!(events[0].payload, "event-4");
    store.outbox().ack(u64::MAX).unwrap();
    assert!(store.outbox().peek(100).unwrap().is_empty());
    drop(store);
    // Sequence numbers are never reused, even once every event is acked.
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.outbox("later");
    assert_eq!(committed(txn.commit().unwrap()), 10..11);
}

/// Transactions and outboxes own their handle of the store: they move into other threads, and
/// keep the store open after the handle that made them is dropped.
#[test]
fn transactions_and_outboxes_move_into_threads_and_outlive_their_store_handle() {
    fn owned<T: Send + 'static>(_: &T) {}
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mut txn = store.transaction();
    txn.mark("moved")
        .unwrap()
        .put("t", "k", "v")
        .unwrap()
        .outbox("event");
    let outbox = store.outbox();
    owned(&txn);
    owned(&outbox);
    drop(store);

    let range = std::thread::spawn(move || committed(txn.commit().unwrap()))
        .join()
        .unwrap();
    let relay = std::thread::spawn(move || {
        let events = outbox.peek(10).unwrap();
        outbox.ack(events[0].seq).unwrap();
        (events, outbox)
    });
    let (events, outbox) = relay.join().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].seq, range.start);
    assert!(outbox.peek(10).unwrap().is_empty());
    assert!(
        matches!(Store::open(dir.path()), Err(Error::Locked { .. })),
        "the outbox still holds the store open"
    );
    drop(outbox);
    let store = Store::open(dir.path()).unwrap();
    assert_ne!(store.check_and_mark("moved").unwrap(), Outcome::New);
}

/// An offset never moves backwards, in one transaction, across a group commit, through a flush
/// and a reopen; `reset_offset` moves it back on purpose.
#[test]
fn offsets_never_move_backwards_unless_reset() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let set = |offset: u64| {
        let mut txn = store.transaction();
        txn.set_offset("s", 0, offset).unwrap();
        committed(txn.commit().unwrap());
    };
    set(10);
    set(4); // a redelivered message, committed after newer ones
    assert_eq!(store.offset("s", 0).unwrap(), Some(10));
    set(11);
    assert_eq!(store.offset("s", 0).unwrap(), Some(11));

    // Two transactions in one group, the lower one last.
    let tickets: Vec<Ticket> = [30, 20]
        .into_iter()
        .map(|offset| {
            let mut txn = store.transaction();
            txn.set_offset("s", 0, offset).unwrap();
            txn.submit().unwrap()
        })
        .collect();
    for ticket in tickets {
        committed(ticket.wait().unwrap());
    }
    assert_eq!(store.offset("s", 0).unwrap(), Some(30));

    store.flush().unwrap();
    set(25);
    let mut txn = store.transaction();
    txn.reset_offset("s", 1, 100)
        .unwrap()
        .reset_offset("s", 1, 3)
        .unwrap();
    committed(txn.commit().unwrap());
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.offset("s", 0).unwrap(), Some(30));
    assert_eq!(
        store.offset("s", 1).unwrap(),
        Some(3),
        "the last reset wins"
    );
    let mut txn = store.transaction();
    txn.reset_offset("s", 0, 5).unwrap();
    committed(txn.commit().unwrap());
    assert_eq!(store.offset("s", 0).unwrap(), Some(5));
    store.flush().unwrap();
    assert_eq!(store.offset("s", 0).unwrap(), Some(5));
}
