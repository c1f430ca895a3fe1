//! Steps of the wall clock: while a store is open its time advances by elapsed time only, so a
//! step forward or back (by any amount) changes no answer and drops nothing; at open, time never
//! starts below the high-water mark persisted with the marks, so a clock that went back while
//! the store was closed neither expires marks early nor stops rollover (disk stays bounded).

mod common;

use common::{MS, S, W, duplicate_since, open, t0};
use dedupstore::{ManualClock, Outcome};
use std::time::Duration;

#[test]
fn steps_of_the_wall_clock_while_open_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    let generations = store.stats().generations;

    // Forward by two windows, as a VM resumed with a stale clock corrects it: no mark expires,
    // no generation is dropped, and a new mark is stamped with the store's time.
    clock.step(t0() + 2 * W);
    assert_eq!(store.check_and_mark("a").unwrap(), duplicate_since(t0()));
    assert_eq!(store.check_and_mark("b").unwrap(), Outcome::New);
    assert_eq!(store.check_and_mark("b").unwrap(), duplicate_since(t0()));
    assert_eq!(store.stats().generations, generations);

    // And back, past where it started.
    clock.step(t0() - Duration::from_secs(3_600));
    assert_eq!(store.check_and_mark("a").unwrap(), duplicate_since(t0()));
    assert_eq!(store.check_and_mark("b").unwrap(), duplicate_since(t0()));

    // Time passing is what expires marks, measured from when they were made.
    clock.advance(W - MS);
    assert_eq!(store.check_and_mark("a").unwrap(), duplicate_since(t0()));
    clock.advance(MS + S);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    assert_eq!(store.check_and_mark("b").unwrap(), Outcome::New);
}

#[test]
fn a_clock_behind_at_open_starts_from_the_high_water_mark() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    clock.advance(10 * S);
    assert_eq!(store.check_and_mark("b").unwrap(), Outcome::New);
    store.close().unwrap();

    // Two hours back while closed: the store's time resumes where its marks left it.
    clock.step(t0() - Duration::from_secs(7_200));
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), duplicate_since(t0()));
    assert_eq!(
        store.check_and_mark("b").unwrap(),
        duplicate_since(t0() + 10 * S)
    );
    assert_eq!(store.check_and_mark("c").unwrap(), Outcome::New);
    assert_eq!(
        store.check_and_mark("c").unwrap(),
        duplicate_since(t0() + 10 * S),
        "new marks take the store's time, not the wall clock's"
    );
    clock.advance(W - 10 * S - MS);
    assert_eq!(store.check_and_mark("a").unwrap(), duplicate_since(t0()));
    clock.advance(MS + S);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    assert_eq!(
        store.check_and_mark("b").unwrap(),
        duplicate_since(t0() + 10 * S)
    );
}

#[test]
fn a_store_reopened_with_the_clock_far_behind_keeps_disk_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    let first: Vec<String> = (0..100).map(|i| format!("first-{i}")).collect();
    store.check_and_mark_batch(&first).unwrap();
    store.close().unwrap();

    // Ten windows behind. Were the store to take that time, every write would go to the
    // generation it already has (its end is ten windows away) and nothing would ever expire.
    clock.step(t0() - 10 * W);
    let store = open(dir.path(), &clock);
    for round in 0..40 {
        let ids: Vec<String> = (0..100).map(|i| format!("round-{round}-{i}")).collect();
        store.check_and_mark_batch(&ids).unwrap();
        clock.advance(W / 8);
    }
    let generations = store.stats().generations;
    assert!(
        (2..=10).contains(&generations),
        "{generations} generations after five windows"
    );
    assert!(
        store.contains_batch(&first).unwrap().iter().all(|c| !c),
        "marks from before the restart expire five windows later"
    );
    assert!(store.contains("round-39-0").unwrap());
}

#[test]
fn time_an_open_reached_is_never_lost_to_a_later_open() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(t0());
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("a").unwrap(), Outcome::New);
    store.close().unwrap();

    // Opened with the clock two windows ahead, the store drops the generation holding "a"...
    clock.step(t0() + 2 * W);
    open(dir.path(), &clock).close().unwrap();
    // ...so when the clock is set back, its time must not go back with it: "a" would answer
    // New within a window of its own mark time, by the store's own timestamps.
    clock.step(t0() + S);
    let store = open(dir.path(), &clock);
    assert_eq!(store.check_and_mark("b").unwrap(), Outcome::New);
    let Outcome::Duplicate { first_seen: b_time } = store.check_and_mark("b").unwrap() else {
        panic!("b was just marked");
    };
    let outcome = store.check_and_mark("a").unwrap();
    if outcome == Outcome::New {
        let age = b_time.duration_since(t0()).unwrap();
        assert!(age >= W, "\"a\" is New though marked {age:?} before \"b\"");
    }
    assert!(b_time >= t0() + 2 * W - S, "{b_time:?}");
}
