//! Restarts: marks survive a clean close and reopen, and a `SIGKILL` of the process that made
//! them, in `Buffered` mode: every acknowledged mark is a duplicate afterwards.

#[path = "common/child.rs"]
mod child;

use dedupstore::{Durability, Outcome, Store};
use std::io::{BufRead, BufReader, Write};
use std::time::SystemTime;

#[test]
fn marks_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..50_000).map(|i| format!("m-{i}")).collect();
    let store = Store::open(dir.path()).unwrap();
    let before = SystemTime::now();
    for chunk in ids.chunks(1_000) {
        store.check_and_mark_batch(chunk).unwrap();
    }
    let mut first_seen = Vec::new();
    for id in ids.iter().step_by(97) {
        match store.check_and_mark(id).unwrap() {
            Outcome::Duplicate { first_seen: t } => first_seen.push(t),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(
        first_seen
            .iter()
            .all(|&t| t >= before - std::time::Duration::from_millis(1))
    );
    store.close().unwrap();

    let store = Store::open(dir.path()).unwrap();
    for (id, &t) in ids.iter().step_by(97).zip(&first_seen) {
        assert_eq!(
            store.check_and_mark(id).unwrap(),
            Outcome::Duplicate { first_seen: t }
        );
    }
    assert!(store.contains_batch(&ids).unwrap().iter().all(|&c| c));
    assert_eq!(store.check_and_mark("never-seen").unwrap(), Outcome::New);
}

/// The child: marks IDs forever in `Buffered` mode, acknowledging each one on stderr once
/// `check_and_mark` has returned (stdout carries the test harness's own output). Run by `sigkill_keeps_every_acknowledged_mark`.
#[test]
#[ignore = "child process of sigkill_keeps_every_acknowledged_mark"]
fn child_marks_until_killed() {
    let dir = std::env::var("DEDUPSTORE_TEST_DIR").unwrap();
    let round: u32 = std::env::var("DEDUPSTORE_TEST_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store = Store::builder(&dir)
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let mut out = std::io::stderr().lock();
    for i in 0u64.. {
        let id = format!("r{round}-{i}");
        let batch = [format!("{id}-a"), format!("{id}-b")];
        assert_eq!(store.check_and_mark(&id).unwrap(), Outcome::New);
        assert!(
            store
                .check_and_mark_batch(&batch)
                .unwrap()
                .iter()
                .all(|o| *o == Outcome::New)
        );
        // One write of a whole line: the kill cannot tear it (pipe writes this short are atomic).
        out.write_all(format!("ack {id}\n").as_bytes()).unwrap();
    }
}

#[test]
fn sigkill_keeps_every_acknowledged_mark() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged = Vec::new();
    for round in 0..3u32 {
        let mut child = child::ignored_test("child_marks_until_killed")
            .env("DEDUPSTORE_TEST_DIR", dir.path())
            .env("DEDUPSTORE_TEST_ROUND", round.to_string())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let target = 2_000 + fastrand::usize(0..3_000);
        let mut acked = 0;
        while acked < target {
            let line = lines.next().expect("the child stopped early").unwrap();
            if let Some(id) = line.strip_prefix("ack ") {
                acknowledged.push(id.to_owned());
                acked += 1;
            }
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // What reached the pipe before the kill was acknowledged too.
        acknowledged.extend(
            lines
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned)),
        );

        let store = Store::open(dir.path()).unwrap();
        for id in &acknowledged {
            assert!(
                matches!(store.check_and_mark(id).unwrap(), Outcome::Duplicate { .. }),
                "{id}"
            );
            for part in ["a", "b"] {
                assert!(
                    store.contains(format!("{id}-{part}")).unwrap(),
                    "{id}-{part}"
                );
            }
        }
    }
    assert!(acknowledged.len() >= 6_000);
}
