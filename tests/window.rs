//! The retention window, under a manual clock: a mark is a duplicate until `W - 1 ms` and new
//! again at `W + S`, from memory and from disk after a restart (`tests/clock_steps.rs` steps the
//! wall clock).

mod common;

use common::{MS, S, SLOTS, W, duplicate_since, open, t0};
use dedupstore::{ManualClock, Outcome, Store};

#[test]
fn duplicate_until_the_window_ends_and_new_after() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    clock.advance(W - MS);
    assert_eq!(store.check_and_mark("a").unwrap(), duplicate_since(t0()));
    assert!(store.contains("a").unwrap());
    clock.advance(MS + S);
    assert!(!store.contains("a").unwrap());
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    assert_eq!(
        store.check_and_mark("a").unwrap(),
        duplicate_since(t0() + W + S)
    );
}

#[test]
fn the_window_holds_on_disk_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    let ids: Vec<String> = (0..1_000).map(|i| format!("id-{i}")).collect();
    assert!(
        store
            .check_and_mark_batch(&ids)
            .unwrap()
            .iter()
            .all(|o| *o == Outcome::New)
    );
    store.close().unwrap();

    clock.advance(W - MS);
    let store = open(dir.path(), &clock);
    for id in &ids {
        assert_eq!(
            store.check_and_mark(id).unwrap(),
            duplicate_since(t0()),
            "{id}"
        );
    }
    assert!(
        store.stats().cold_lookups >= 1_000,
        "answers came from disk"
    );
    store.close().unwrap();

    clock.advance(MS + S);
    let store = open(dir.path(), &clock);
    assert!(store.contains_batch(&ids).unwrap().iter().all(|c| !c));
    assert!(
        store
            .check_and_mark_batch(&ids)
            .unwrap()
            .iter()
            .all(|o| *o == Outcome::New)
    );
}

#[test]
fn reopening_with_another_window_judges_marks_by_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    store.close().unwrap();

    clock.advance(W + S);
    let longer = Store::builder(dir.path())
        .window(W * 2)
        .slots(SLOTS)
        .clock(clock.clone())
        .open()
        .unwrap();
    assert_eq!(longer.check_and_mark("a").unwrap(), duplicate_since(t0()));
    longer.close().unwrap();

    let shorter = Store::builder(dir.path())
        .window(W / 2)
        .slots(SLOTS)
        .clock(clock.clone())
        .open()
        .unwrap();
    assert_eq!(shorter.check_and_mark("a").unwrap(), Outcome::New);
}
