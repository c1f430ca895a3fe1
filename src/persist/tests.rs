//! Generation rollover and the write path under injected faults and a real write stall: a failed
//! or half-done create fails one write and the next rolls over; a failed drop fails no write and
//! is retried; a panic in a write leaves no mark in flight; rollovers while RocksDB delays writes
//! fail none; writers that reach a generation's end together add the next one once.

use super::{Op, Strike};
use crate::{CommitOutcome, Error, ManualClock, Outcome, Store};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

pub(super) const W: Duration = Duration::from_secs(80);

pub(super) fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

pub(super) fn open(dir: &Path, clock: &ManualClock) -> Store {
    Store::builder(dir)
        .window(W)
        .slots(80)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn create_fails_once(strike: Strike) {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    assert_eq!(store.stats().generations, 1);
    clock.advance(W / 8);
    store.engine().cold.fault.arm(Op::Create, 0, strike);
    assert!(matches!(store.check_and_mark("b"), Err(Error::Io { .. })));
    assert!(
        !store.contains("b").unwrap(),
        "the failed mark is not in flight"
    );
    // Nothing was written, so nothing is poisoned; the next write creates or finds the
    // generation and records it.
    assert_eq!(store.check_and_mark("b").unwrap(), Outcome::New);
    assert_eq!(store.check_and_mark("c").unwrap(), Outcome::New);
    assert_eq!(store.stats().generations, 2);
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.contains_batch(&["a", "b", "c"]).unwrap(), [true; 3]);
}

#[test]
fn a_failed_generation_create_fails_one_write() {
    create_fails_once(Strike::Before);
}

#[test]
fn a_create_that_failed_after_creating_is_found_by_the_next_write() {
    // RocksDB created the column family but reported a failure: the next write must not fail
    // with "column family already exists" until the next generation is due.
    create_fails_once(Strike::After);
}

#[test]
fn a_failed_drop_fails_no_write_and_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    for round in 0..12 {
        assert_eq!(
            store.check_and_mark(format!("r{round}")).unwrap(),
            Outcome::New
        );
        clock.advance(W / 8);
    }
    let before = store.stats().generations;
    store.engine().cold.fault.arm(Op::Drop, 0, Strike::Before);
    assert_eq!(store.check_and_mark("x").unwrap(), Outcome::New);
    assert!(store.engine().cold.fault.spent(), "a drop was attempted");
    let stats = store.stats();
    assert_eq!(stats.failed_generation_drops, 1);
    assert_eq!(
        stats.generations,
        before + 1,
        "the dead generation is kept, not lost"
    );
    assert!(store.contains("r11").unwrap());
    // The next rollover drops it along with the one that died since.
    clock.advance(W / 8);
    assert_eq!(store.check_and_mark("y").unwrap(), Outcome::New);
    assert_eq!(store.stats().generations, before);
    drop(store);
    let names = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).unwrap();
    let on_disk = names.iter().filter(|n| n.starts_with("marks-")).count();
    assert_eq!(on_disk, before, "{names:?}");
}

fn panicking(op: Op) {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("kept").unwrap(), Outcome::New);
    if op == Op::Create {
        clock.advance(W / 8);
    }
    store.engine().cold.fault.arm(op, 0, Strike::Panic);
    match store.check_and_mark_batch(&["p", "q"]) {
        Err(Error::Poisoned { cause }) => assert!(cause.contains("panicked"), "{cause}"),
        other => panic!("{other:?}"),
    }
    // Not in flight: a check answers from what is known, and the stripe's expiry is not held
    // up behind a claim that will never settle.
    assert_eq!(store.contains_batch(&["p", "q"]).unwrap(), [false, false]);
    let mut txn = store.transaction();
    txn.mark("t").unwrap();
    assert!(matches!(
        txn.submit().unwrap().wait(),
        Err(Error::Poisoned { .. })
    ));
    clock.advance(W * 2);
    assert!(!store.contains("kept").unwrap(), "expiry went on");
    assert_eq!(store.own_space().hot.totals().ids, 0);
    store.close().unwrap();

    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("p").unwrap(), Outcome::New);
    let mut txn = store.transaction();
    txn.mark("t").unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
}

#[test]
fn a_panic_in_a_write_leaves_no_mark_in_flight() {
    panicking(Op::Write);
}

#[test]
fn a_panic_creating_a_generation_leaves_no_mark_in_flight() {
    panicking(Op::Create);
}

#[test]
fn a_panic_in_an_outbox_ack_poisons_the_store_and_reaches_no_caller() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    let mut txn = store.transaction();
    txn.outbox("event");
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    store.engine().cold.fault.arm(Op::Write, 0, Strike::Panic);
    match store.outbox().ack(0) {
        Err(Error::Poisoned { cause }) => assert!(cause.contains("panicked"), "{cause}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        store.check_and_mark("after"),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(store.outbox().peek(10).unwrap().len(), 1, "reads go on");
    drop(store);
    let store = open(dir.path(), &clock);
    assert_eq!(store.outbox().peek(10).unwrap().len(), 1);
}

/// Options that stall writes into a generation once it has two table files: small memtables,
/// a slowdown at two level-0 files (writes are then delayed to RocksDB's `delayed_write_rate`)
/// while compaction waits for eight.
const STALL_PRONE: [(&str, &str); 4] = [
    ("write_buffer_size", "65536"),
    ("max_write_buffer_number", "2"),
    ("level0_file_num_compaction_trigger", "8"),
    ("level0_slowdown_writes_trigger", "2"),
];

#[test]
fn rollovers_during_a_real_write_stall_fail_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("first").unwrap(), Outcome::New);
    let cold = &store.engine().cold;
    {
        let mut options = cold.generation_options.lock();
        options.set_write_buffer_size(64 << 10);
        options.set_max_write_buffer_number(2);
        options.set_level_zero_file_num_compaction_trigger(8);
        options.set_level_zero_slowdown_writes_trigger(2);
    }
    for g in &store.own_space().generations.read().live {
        let cf = cold.cf(&g.name).unwrap();
        cold.db.set_options_cf(&cf, &STALL_PRONE).unwrap();
    }
    let delayed = || {
        cold.db
            .property_int_value("rocksdb.actual-delayed-write-rate")
            .unwrap()
            .unwrap_or(0)
    };

    let mut marked = vec!["first".to_owned()];
    let mut stalled_rollovers = 0;
    for round in 0..6 {
        // Fill the generation until RocksDB delays writes into it.
        for batch in 0..200 {
            let ids: Vec<String> = (0..500).map(|i| format!("{round}-{batch}-{i}")).collect();
            let outcomes = store.check_and_mark_batch(&ids).unwrap();
            assert!(outcomes.iter().all(|o| *o == Outcome::New));
            marked.extend(ids);
            if delayed() > 0 {
                break;
            }
        }
        let stalled = delayed() > 0;
        let before = store.stats().generations;
        clock.advance(W / 8);
        let id = format!("rolled-{round}");
        assert_eq!(store.check_and_mark(&id).unwrap(), Outcome::New);
        marked.push(id);
        assert_eq!(store.stats().generations, before + 1, "round {round}");
        stalled_rollovers += usize::from(stalled);
    }
    assert!(
        stalled_rollovers >= 3,
        "only {stalled_rollovers} rollovers met a stall"
    );
    drop(store);
    let store = open(dir.path(), &clock);
    let found = store.contains_batch(&marked).unwrap();
    assert!(
        found.iter().all(|&f| f),
        "a mark written during a stall was lost"
    );
}

/// The column families on disk of the closed store at `dir`.
fn column_families(dir: &Path) -> Vec<String> {
    rocksdb::DB::list_cf(&rocksdb::Options::default(), dir).unwrap()
}

/// A namespace drop whose column family drops fail (as if the process died after deleting the
/// record) is done for the caller at once; its generations stay as orphans until the next open
/// drops them, and a new namespace of the name never sees them.
#[test]
fn an_interrupted_namespace_drop_is_finished_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    let gone = store.namespace("gone").open().unwrap();
    assert_eq!(gone.check_and_mark("a").unwrap(), Outcome::New);
    clock.advance(W / 4);
    assert_eq!(gone.check_and_mark("b").unwrap(), Outcome::New);
    assert_eq!(gone.space().generations.count(), 2);
    store.engine().cold.fault.arm(Op::Drop, 0, Strike::Before);
    assert!(store.drop_namespace("gone").unwrap());
    assert_eq!(store.stats().failed_generation_drops, 1, "one drop failed");
    assert!(store.namespaces().is_empty());
    drop((gone, store));
    let orphans = |dir: &Path| {
        column_families(dir)
            .into_iter()
            .filter(|cf| cf.starts_with("ns1."))
            .count()
    };
    assert_eq!(orphans(dir.path()), 1, "the failed drop left an orphan");

    let store = open(dir.path(), &clock);
    assert!(store.namespaces().is_empty());
    let gone = store.namespace("gone").open().unwrap();
    assert_eq!(gone.space().number(), 2, "numbers are not reused");
    assert_eq!(gone.check_and_mark("a").unwrap(), Outcome::New);
    drop((gone, store));
    assert_eq!(orphans(dir.path()), 0, "the open dropped the orphan");
}

/// A drop whose record cannot be deleted fails and changes nothing: the namespace keeps its
/// marks (after the reopen that a failed write calls for).
#[test]
fn a_namespace_drop_that_cannot_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    let kept = store.namespace("kept").open().unwrap();
    assert_eq!(kept.check_and_mark("a").unwrap(), Outcome::New);
    store.engine().cold.fault.arm(Op::Write, 0, Strike::Before);
    assert!(matches!(
        store.drop_namespace("kept"),
        Err(Error::Io { .. })
    ));
    assert_eq!(store.namespaces(), ["kept"]);
    assert!(kept.contains("a").unwrap());
    drop((kept, store));
    let store = open(dir.path(), &clock);
    assert!(
        store
            .namespace("kept")
            .open()
            .unwrap()
            .contains("a")
            .unwrap()
    );
}

/// Writers that reach a generation's end together create the next one once: each generation is
/// listed once, and none but the newest can be mistaken for a sealed one (whose saved filter
/// an open trusts).
#[test]
fn racing_rollovers_list_each_generation_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    let barrier = std::sync::Barrier::new(2);
    for round in 0..300u32 {
        clock.advance(W / 8);
        std::thread::scope(|s| {
            for writer in 0..2 {
                let (store, barrier) = (&store, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let id = format!("{round}-{writer}");
                    assert_eq!(store.check_and_mark(id).unwrap(), Outcome::New);
                });
            }
        });
        let list = store.own_space().generations.read();
        let names: Vec<&str> = list.live.iter().map(|g| g.name.as_str()).collect();
        assert!(
            names.windows(2).all(|w| w[0] != w[1]),
            "round {round}: {names:?}"
        );
    }
}
