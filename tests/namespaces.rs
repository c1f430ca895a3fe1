//! Namespaces: independent ID spaces in one store. The same ID in two namespaces (or in one and
//! the store's own space) never collides; each judges its marks by its own window; namespaces and
//! their settings survive a reopen; a dropped namespace loses its marks and its disk, handles of
//! it fail cleanly, and the name starts over empty; transactions mark in several namespaces
//! atomically; bad names and settings are refused with nothing created; concurrent callers and
//! a concurrent drop never see a wrong answer.

use dedupstore::{ClaimOutcome, CommitOutcome, Error, ManualClock, Outcome, Store};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const HOUR: Duration = Duration::from_secs(3600);
const MINUTE: Duration = Duration::from_secs(60);

fn start() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn open(path: &Path, clock: &ManualClock) -> Store {
    Store::builder(path)
        .window(HOUR)
        .slots(60)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn is_duplicate(outcome: Outcome) -> bool {
    matches!(outcome, Outcome::Duplicate { .. })
}

/// Bytes of table files in the store's directory.
fn table_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sst"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

#[test]
fn the_same_id_in_two_namespaces_and_the_store_is_three_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let orders = store.namespace("orders").open().unwrap();
    let refunds = store.namespace("refunds").open().unwrap();
    assert_eq!(orders.name(), "orders");

    assert_eq!(orders.check_and_mark("42").unwrap(), Outcome::New);
    assert!(!refunds.contains("42").unwrap());
    assert!(!store.contains("42").unwrap());
    assert_eq!(refunds.check_and_mark("42").unwrap(), Outcome::New);
    assert_eq!(store.check_and_mark("42").unwrap(), Outcome::New);
    assert!(is_duplicate(orders.check_and_mark("42").unwrap()));

    // Batches, payloads and claims are per namespace too.
    let batch = orders.check_and_mark_batch(&["42", "43", "43"]).unwrap();
    assert!(is_duplicate(batch[0]) && batch[1] == Outcome::New && is_duplicate(batch[2]));
    assert_eq!(
        refunds.contains_batch(&["42", "43"]).unwrap(),
        [true, false]
    );
    assert_eq!(
        refunds.check_and_mark_payload("p", b"one").unwrap(),
        Outcome::New
    );
    assert_eq!(
        orders.check_and_mark_payload("p", b"two").unwrap(),
        Outcome::New,
        "another namespace's payload is no conflict"
    );
    let ClaimOutcome::Acquired(claim) = orders.claim("c", MINUTE).unwrap() else {
        panic!("a fresh id is acquired")
    };
    assert!(matches!(
        refunds.claim("c", MINUTE).unwrap(),
        ClaimOutcome::Acquired(_)
    ));
    assert_eq!(store.check_and_mark("c").unwrap(), Outcome::New);
    assert_eq!(orders.check_and_mark("c").unwrap(), Outcome::InFlight);
    claim.complete(Some(b"sent")).unwrap();
    match orders.claim("c", MINUTE).unwrap() {
        ClaimOutcome::Completed { result, .. } => assert_eq!(result.as_deref(), Some(&b"sent"[..])),
        other => panic!("{other:?}"),
    }
    assert!(orders.wait_settled("c", MINUTE).unwrap());

    // Handles opened again, and clones, are the same namespace.
    let again = store.namespace("orders").open().unwrap();
    assert!(is_duplicate(again.check_and_mark("43").unwrap()));
    assert_eq!(store.namespaces(), ["orders", "refunds"]);
    assert_eq!(store.stats().namespaces, 2);
}

#[test]
fn each_namespace_judges_its_marks_by_its_own_window() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    let short = store.namespace("short").window(MINUTE).open().unwrap();
    let long = store.namespace("long").window(2 * HOUR).open().unwrap();
    let default = store.namespace("default-window").open().unwrap();
    assert_eq!(short.window(), MINUTE);
    assert_eq!(default.window(), HOUR, "the store's window by default");
    for space in ["store", "short", "long"] {
        let outcome = match space {
            "store" => store.check_and_mark("id"),
            "short" => short.check_and_mark("id"),
            _ => long.check_and_mark("id"),
        };
        assert_eq!(outcome.unwrap(), Outcome::New, "{space}");
    }

    clock.advance(MINUTE - Duration::from_millis(1));
    assert!(short.contains("id").unwrap(), "t - t0 < W is a duplicate");
    clock.advance(Duration::from_secs(2)); // W + S for the short window (S = 1 s)
    assert!(!short.contains("id").unwrap(), "t - t0 >= W + S is new");
    assert!(store.contains("id").unwrap());
    assert!(long.contains("id").unwrap());

    clock.advance(HOUR);
    assert!(!store.contains("id").unwrap());
    assert!(long.contains("id").unwrap());
    clock.advance(HOUR);
    assert!(!long.contains("id").unwrap());
}

#[test]
fn namespaces_and_their_marks_survive_a_reopen_with_their_settings() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(start());
    let store = open(dir.path(), &clock);
    let short = store
        .namespace("short")
        .window(MINUTE)
        .slots(6)
        .memory_budget(1 << 20)
        .open()
        .unwrap();
    assert_eq!(short.check_and_mark("a").unwrap(), Outcome::New);
    assert_eq!(
        store
            .namespace("other")
            .open()
            .unwrap()
            .check_and_mark("b")
            .unwrap(),
        Outcome::New
    );
    let budget = store.stats().memory_budget;
    drop((short, store));

    let store = open(dir.path(), &clock);
    assert_eq!(store.namespaces(), ["other", "short"]);
    assert_eq!(store.stats().memory_budget, budget, "budgets come back");
    let short = store.namespace("short").open().unwrap();
    assert_eq!(
        short.window(),
        MINUTE,
        "the recorded window, not the store's"
    );
    assert!(is_duplicate(short.check_and_mark("a").unwrap()));
    assert!(!store.contains("a").unwrap());
    assert!(
        store
            .namespace("other")
            .open()
            .unwrap()
            .contains("b")
            .unwrap()
    );
    // Asking an existing namespace for other settings is refused; the same ones are fine.
    for (builder, what) in [
        (store.namespace("short").window(HOUR), "window"),
        (store.namespace("short").slots(60), "slots"),
        (
            store.namespace("short").memory_budget(2 << 20),
            "memory_budget",
        ),
    ] {
        match builder.open() {
            Err(Error::InvalidConfig { what: got, .. }) => assert_eq!(got, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    store
        .namespace("short")
        .window(MINUTE)
        .slots(6)
        .memory_budget(1 << 20)
        .open()
        .unwrap();
    // The short window judges the reopened marks too.
    clock.advance(MINUTE + Duration::from_secs(10));
    assert!(!short.contains("a").unwrap());
}

#[test]
fn a_dropped_namespace_loses_its_marks_and_its_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let bulk = store.namespace("bulk").open().unwrap();
    let kept = store.namespace("kept").open().unwrap();
    assert_eq!(kept.check_and_mark("k").unwrap(), Outcome::New);
    assert_eq!(store.check_and_mark("s").unwrap(), Outcome::New);
    let ids: Vec<String> = (0..200_000).map(|i| format!("bulk-{i}")).collect();
    for chunk in ids.chunks(10_000) {
        bulk.check_and_mark_batch(chunk).unwrap();
    }
    store.flush().unwrap();
    let before = table_bytes(dir.path());
    assert!(
        before > 2 << 20,
        "the marks reached table files: {before} bytes"
    );
    let generations = store.stats().generations;

    assert!(store.drop_namespace("bulk").unwrap());
    assert!(!store.drop_namespace("bulk").unwrap(), "dropped once");
    let after = table_bytes(dir.path());
    assert!(
        after < before / 10,
        "the namespace's table files are deleted: {before} -> {after} bytes"
    );
    assert!(store.stats().generations < generations);
    assert_eq!(store.namespaces(), ["kept"]);
    for result in [
        bulk.check_and_mark("bulk-1").map(drop),
        bulk.contains("bulk-1").map(drop),
        bulk.claim("x", MINUTE).map(drop),
        bulk.wait_settled("x", MINUTE).map(drop),
    ] {
        match result {
            Err(Error::NamespaceDropped { name }) => assert_eq!(name, "bulk"),
            other => panic!("{other:?}"),
        }
    }
    let mut txn = store.transaction();
    assert!(matches!(
        txn.mark_in(&bulk, "y"),
        Err(Error::NamespaceDropped { .. })
    ));
    drop((txn, bulk));

    // The name starts over, empty; the rest of the store is untouched, also after a reopen.
    let bulk = store.namespace("bulk").open().unwrap();
    assert!(!bulk.contains("bulk-1").unwrap());
    assert!(kept.contains("k").unwrap());
    assert!(store.contains("s").unwrap());
    assert_eq!(bulk.check_and_mark("bulk-2").unwrap(), Outcome::New);
    drop((bulk, kept, store));
    let store = Store::open(dir.path()).unwrap();
    let bulk = store.namespace("bulk").open().unwrap();
    assert!(!bulk.contains("bulk-1").unwrap());
    assert!(bulk.contains("bulk-2").unwrap());
    assert!(
        store
            .namespace("kept")
            .open()
            .unwrap()
            .contains("k")
            .unwrap()
    );
    assert!(table_bytes(dir.path()) < before / 10);
}

#[test]
fn a_transaction_marks_in_several_namespaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let a = store.namespace("a").open().unwrap();
    let b = store.namespace("b").open().unwrap();
    assert_eq!(b.check_and_mark("taken").unwrap(), Outcome::New);

    let mut txn = store.transaction();
    txn.mark("x").unwrap();
    txn.mark_in(&a, "x").unwrap().mark_in(&b, "taken").unwrap();
    txn.put("rows", "r", "v").unwrap();
    match txn.commit().unwrap() {
        CommitOutcome::Rejected(conflicts) => {
            assert_eq!(conflicts.len(), 1);
            assert_eq!(conflicts[0].id, "taken");
            assert_eq!(conflicts[0].namespace.as_deref(), Some("b"));
        }
        other => panic!("{other:?}"),
    }
    assert!(!store.contains("x").unwrap() && !a.contains("x").unwrap());
    assert_eq!(store.get("rows", "r").unwrap(), None);

    let mut txn = store.transaction();
    txn.mark("x").unwrap();
    txn.mark_in(&a, "x").unwrap();
    txn.mark_payload_in(&b, "fresh", b"p").unwrap();
    txn.put("rows", "r", "v").unwrap();
    assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    drop((a, b, store));
    let store = Store::open(dir.path()).unwrap();
    let (a, b) = (
        store.namespace("a").open().unwrap(),
        store.namespace("b").open().unwrap(),
    );
    assert!(store.contains("x").unwrap() && a.contains("x").unwrap());
    assert!(matches!(
        b.check_and_mark_payload("fresh", b"other").unwrap(),
        Outcome::Conflict { .. }
    ));
    assert!(store.get("rows", "r").unwrap().is_some());

    // A namespace of another store is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = Store::open(elsewhere.path()).unwrap();
    let foreign = other.namespace("a").open().unwrap();
    let mut txn = store.transaction();
    assert!(matches!(
        txn.mark_in(&foreign, "x"),
        Err(Error::InvalidArgument {
            what: "namespace",
            ..
        })
    ));
}

#[test]
fn bad_names_and_settings_are_refused_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for bad in ["", "a.b", "with space", "ümlaut", &"n".repeat(65)] {
        assert!(
            matches!(
                store.namespace(bad).open(),
                Err(Error::InvalidName {
                    what: "namespace",
                    ..
                })
            ),
            "{bad:?}"
        );
        assert!(matches!(
            store.drop_namespace(bad),
            Err(Error::InvalidName { .. })
        ));
    }
    for (builder, what) in [
        (
            store.namespace("n").window(Duration::from_millis(999)),
            "window",
        ),
        (
            store
                .namespace("n")
                .window(Duration::from_secs(367 * 86_400)),
            "window",
        ),
        (store.namespace("n").slots(0), "slots"),
        (store.namespace("n").slots(4097), "slots"),
        (
            store
                .namespace("n")
                .window(Duration::from_secs(1))
                .slots(1001),
            "slots",
        ),
        (store.namespace("n").memory_budget(1024), "memory_budget"),
    ] {
        match builder.open() {
            Err(Error::InvalidConfig { what: got, .. }) => assert_eq!(got, what),
            other => panic!("{what}: {other:?}"),
        }
    }
    assert!(store.namespaces().is_empty());
    assert!(!store.drop_namespace("never-made").unwrap());
    drop(store);
    assert!(Store::open(dir.path()).unwrap().namespaces().is_empty());
}

#[test]
fn concurrent_callers_get_one_new_per_id_per_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let names = ["n0", "n1", "n2"];
    let news = Arc::new(AtomicUsize::new(0));
    std::thread::scope(|s| {
        for t in 0..6 {
            let (store, news) = (store.clone(), Arc::clone(&news));
            s.spawn(move || {
                // Every thread opens the namespaces itself: creation races too.
                let spaces: Vec<_> = names
                    .iter()
                    .map(|n| store.namespace(n).open().unwrap())
                    .collect();
                for i in 0..300 {
                    let space = &spaces[(i + t) % 3];
                    let outcome = loop {
                        match space.check_and_mark(format!("id-{}", i % 100)).unwrap() {
                            Outcome::InFlight => {
                                space
                                    .wait_settled(format!("id-{}", i % 100), MINUTE)
                                    .unwrap();
                            }
                            settled => break settled,
                        }
                    };
                    if outcome == Outcome::New {
                        news.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    // 100 IDs in each of 3 namespaces, each new exactly once.
    assert_eq!(news.load(Ordering::Relaxed), 300);
    assert_eq!(store.namespaces(), names);
}

#[test]
fn a_drop_racing_with_callers_gives_each_an_answer_or_a_clean_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let racing = store.namespace("racing").open().unwrap();
    let answered = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..3 {
            let (racing, answered) = (racing.clone(), &answered);
            s.spawn(move || {
                for i in 0.. {
                    let mut txn = racing.store().transaction();
                    let result = txn
                        .mark_in(&racing, format!("{t}-{i}"))
                        .map(drop)
                        .and_then(|()| txn.commit().map(drop));
                    match result {
                        Ok(()) => answered.fetch_add(1, Ordering::Relaxed),
                        Err(Error::NamespaceDropped { .. }) => break,
                        Err(e) => panic!("{e}"),
                    };
                    if let Err(e) = racing.check_and_mark(format!("m{t}-{i}")) {
                        assert!(matches!(e, Error::NamespaceDropped { .. }), "{e}");
                        break;
                    }
                }
            });
        }
        while answered.load(Ordering::Relaxed) < 100 {
            std::thread::yield_now();
        }
        assert!(store.drop_namespace("racing").unwrap());
    });
    let fresh = store.namespace("racing").open().unwrap();
    assert!(!fresh.contains("0-0").unwrap());
    assert_eq!(fresh.check_and_mark("0-0").unwrap(), Outcome::New);
    drop(fresh);
    drop(racing);
    store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let fresh = store.namespace("racing").open().unwrap();
    assert!(fresh.contains("0-0").unwrap());
    assert!(!fresh.contains("0-1").unwrap());
}

/// Marks, checks, time, reopens and drops in any order, in the store's own space and two
/// namespaces of other windows, under a manual clock, against a model of each space's marks:
/// within each space's own window a mark is a duplicate, past it plus one slot it is new, and a
/// drop forgets a namespace's marks.
mod model {
    use super::*;
    use proptest::prelude::*;

    /// Window and slots of the store's space and of namespaces "a" and "b".
    const SPACES: [(u64, u32); 3] = [(20_000, 20), (10_000, 10), (30_000, 10)];
    const NAMES: [&str; 2] = ["a", "b"];

    #[derive(Clone, Debug)]
    enum Op {
        Mark { space: usize, id: u8 },
        Check { space: usize, id: u8 },
        Advance(u64),
        Reopen,
        Drop(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..4u8).prop_map(|(space, id)| Op::Mark { space, id }),
            2 => (0..3usize, 0..4u8).prop_map(|(space, id)| Op::Check { space, id }),
            3 => (0..15_000u64).prop_map(Op::Advance),
            1 => Just(Op::Reopen),
            1 => (1..3usize).prop_map(Op::Drop),
        ]
    }

    /// The store and its two namespaces, opened (and created) with their settings.
    fn open_all(path: &Path, clock: &ManualClock) -> (Store, Vec<dedupstore::Namespace>) {
        let (w, slots) = SPACES[0];
        let store = Store::builder(path)
            .window(Duration::from_millis(w))
            .slots(slots)
            .clock(clock.clone())
            .open()
            .unwrap();
        let namespaces = NAMES
            .iter()
            .zip(&SPACES[1..])
            .map(|(name, &(w, slots))| {
                store
                    .namespace(name)
                    .window(Duration::from_millis(w))
                    .slots(slots)
                    .open()
                    .unwrap()
            })
            .collect();
        (store, namespaces)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn each_space_keeps_its_own_marks_for_its_own_window(
            ops in proptest::collection::vec(op(), 1..50)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(start());
            let (mut store, mut namespaces) = open_all(dir.path(), &clock);
            // Per space, per ID: when it was marked.
            let mut marks = [[None::<u64>; 4]; 3];
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Advance(ms) => {
                        clock.advance(Duration::from_millis(ms));
                        now += ms;
                    }
                    Op::Reopen => {
                        drop((store, namespaces));
                        (store, namespaces) = open_all(dir.path(), &clock);
                    }
                    Op::Drop(space) => {
                        prop_assert!(store.drop_namespace(NAMES[space - 1]).unwrap());
                        marks[space] = [None; 4];
                        namespaces[space - 1] = store
                            .namespace(NAMES[space - 1])
                            .window(Duration::from_millis(SPACES[space].0))
                            .slots(SPACES[space].1)
                            .open()
                            .unwrap();
                    }
                    Op::Mark { space, id } | Op::Check { space, id } => {
                        let marking = matches!(op, Op::Mark { .. });
                        let key = [id];
                        // Marks answer with an outcome; checks with whether the ID is marked.
                        let seen = match (space, marking) {
                            (0, true) => Ok(store.check_and_mark(key).unwrap()),
                            (0, false) => Err(store.contains(key).unwrap()),
                            (s, true) => Ok(namespaces[s - 1].check_and_mark(key).unwrap()),
                            (s, false) => Err(namespaces[s - 1].contains(key).unwrap()),
                        };
                        let (w, slots) = SPACES[space];
                        let slot = w / u64::from(slots);
                        let model = &mut marks[space][usize::from(id)];
                        let age = model.map(|t0| now - t0);
                        let duplicate = seen.is_err_and(|found| found)
                            || seen.is_ok_and(|o| o != Outcome::New);
                        match age {
                            Some(age) if age < w => prop_assert!(
                                duplicate,
                                "space {space} id {id} marked {age} ms ago, window {w}: {seen:?}"
                            ),
                            Some(age) if age < w + slot => {}
                            _ => prop_assert!(
                                !duplicate,
                                "space {space} id {id}, age {age:?}, window {w}: {seen:?}"
                            ),
                        }
                        if let (Ok(Outcome::Duplicate { first_seen }), Some(t0)) = (seen, *model) {
                            prop_assert_eq!(first_seen, start() + Duration::from_millis(t0));
                        }
                        if marking && !duplicate {
                            *model = Some(now);
                        }
                    }
                }
            }
        }
    }
}
