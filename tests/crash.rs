//! The crash harness: a child process runs writer threads doing record-and-mark transactions
//! (mark + table row + offset + outbox event) and an outbox relay, reporting every acknowledged
//! commit and ack to the parent over a pipe; the parent kills it with `SIGKILL` at a random
//! moment, reopens the store and checks that
//!
//! - every acknowledged transaction is fully there, and no transaction is partly there: each
//!   stream's records are exactly a prefix `0..offset`, with the stored offset, and the mark of
//!   each (in the store's own space and in the writer's namespace, `ns-<writer>`, with a window
//!   of its own); writers that commit one at a time also accept sequence `n` of their producer
//!   in transaction `n`, and the producer's recovered high-water mark is the prefix's last;
//! - marking any recovered ID again returns `Duplicate`;
//! - the outbox holds exactly the committed events the relay had not acked, in commit order;
//! - a claimer thread claims IDs with an hour's lease and completes them (alone, or in a
//!   transaction with a row), or releases them: every acknowledged completion is there with its
//!   result (and its row), a released ID is free, and no claim survives the crash, however long
//!   its lease: each unacknowledged one is free, or completed whole.
//!
//! 20 cycles in each durability mode by default; `DEDUPSTORE_CRASH_CYCLES` raises it for a soak
//! and `DEDUPSTORE_CRASH_SEED` picks the first seed (each cycle uses the next one).

#[path = "common/child.rs"]
mod child;

use dedupstore::{
    ClaimOutcome, CommitOutcome, Durability, Namespace, Outcome, SequenceOutcome, Store, Ticket,
    Transaction,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

const WRITERS: u32 = 4;
/// Writers with an even number commit one at a time (`commit`); odd ones keep this many in
/// flight (`submit`).
const IN_FLIGHT: usize = 16;

fn stream(t: u32) -> String {
    format!("writer-{t}")
}

fn id(t: u32, n: u64) -> String {
    format!("msg-{t}-{n}")
}

fn payload(t: u32, n: u64) -> String {
    format!("event {t} {n}")
}

fn claim_id(n: u64) -> String {
    format!("claim-{n}")
}

fn claim_result(n: u64) -> String {
    format!("result {n}")
}

/// The claimer's `n`th claim is completed alone (`n % 3 == 0`), completed in a transaction with
/// a row (`1`), or released (`2`).
fn claim_fate(n: u64) -> u64 {
    n % 3
}

/// A lease far longer than any test: a claim that survived the crash would show.
const HOUR: Duration = Duration::from_secs(3600);

fn durability(name: &str) -> Durability {
    match name {
        "synced" => Durability::Synced,
        _ => Durability::Buffered,
    }
}

/// Writer `t`'s namespace, created on first use.
fn namespace(store: &Store, t: u32) -> Namespace {
    store
        .namespace(&format!("ns-{t}"))
        .window(Duration::from_secs(7 * 24 * 3600))
        .open()
        .unwrap()
}

/// Writer `t`'s producer.
fn producer(t: u32) -> String {
    format!("producer-{t}")
}

/// Whether writer `t` accepts its producer's sequences: those that commit one at a time.
fn sequenced(t: u32) -> bool {
    t.is_multiple_of(2)
}

/// One record-and-mark transaction of writer `t`: its `n`th message, marked in the store's own
/// space and in the writer's namespace, and accepted as sequence `n` of its producer if the
/// writer commits one at a time (a producer has one write in flight at a time).
fn transaction(store: &Store, t: u32, n: u64) -> Transaction {
    let mut txn = store.transaction();
    if sequenced(t) {
        txn.accept(producer(t), n).unwrap();
    }
    txn.mark(id(t, n)).unwrap();
    txn.mark_in(&namespace(store, t), id(t, n)).unwrap();
    txn.put("records", id(t, n), payload(t, n)).unwrap();
    txn.set_offset(&stream(t), 0, n + 1).unwrap();
    txn.outbox(payload(t, n));
    txn
}

/// The child: writers and a relay, reporting on stderr until killed.
#[test]
#[ignore = "child process of the crash_* tests"]
fn crash_child() {
    let dir = std::env::var("DEDUPSTORE_CRASH_DIR").unwrap();
    let mode = std::env::var("DEDUPSTORE_CRASH_DURABILITY").unwrap();
    let store = Store::builder(&dir)
        .durability(durability(&mode))
        .open()
        .unwrap();
    let out = Mutex::new(std::io::stderr());
    let report = |line: String| {
        let mut out = out.lock().unwrap();
        out.write_all(line.as_bytes()).unwrap();
        out.flush().unwrap();
    };
    std::thread::scope(|s| {
        for t in 0..WRITERS {
            let (store, report) = (&store, &report);
            s.spawn(move || {
                let mut in_flight: VecDeque<(u64, Ticket)> = VecDeque::new();
                for n in 0u64.. {
                    if t % 2 == 0 {
                        let outcome = transaction(store, t, n).commit().unwrap();
                        assert!(matches!(outcome, CommitOutcome::Committed(_)));
                        report(format!("ack {t} {n}\n"));
                        continue;
                    }
                    in_flight.push_back((n, transaction(store, t, n).submit().unwrap()));
                    while in_flight.len() >= IN_FLIGHT {
                        let (n, ticket) = in_flight.pop_front().unwrap();
                        assert!(matches!(
                            ticket.wait().unwrap(),
                            CommitOutcome::Committed(_)
                        ));
                        report(format!("ack {t} {n}\n"));
                    }
                }
            });
        }
        s.spawn(|| {
            for n in 0u64.. {
                let id = claim_id(n);
                let ClaimOutcome::Acquired(claim) = store.claim(&id, HOUR).unwrap() else {
                    panic!("{id} was not free");
                };
                report(format!("claimed {n}\n"));
                let result = claim_result(n);
                match claim_fate(n) {
                    0 => claim.complete(Some(result.as_bytes())).unwrap(),
                    1 => {
                        let mut txn = store.transaction();
                        txn.complete(claim, Some(result.as_bytes()))
                            .unwrap()
                            .put("claimed", &id, &result)
                            .unwrap();
                        assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
                    }
                    _ => {
                        claim.release();
                        report(format!("released {n}\n"));
                        continue;
                    }
                }
                report(format!("completed {n}\n"));
            }
        });
        s.spawn(|| {
            let outbox = store.outbox();
            loop {
                if let Some(last) = outbox.peek(50).unwrap().last() {
                    outbox.ack(last.seq).unwrap();
                    report(format!("relay {}\n", last.seq));
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        });
    });
}

/// What the parent learnt from the child before and just after the kill.
#[derive(Default)]
struct Reported {
    acked: HashMap<u32, Vec<u64>>,
    relay: Option<u64>,
    /// The claimer's last claim, and the claims it completed or released.
    claimed: Option<u64>,
    completed: HashSet<u64>,
    released: HashSet<u64>,
}

/// Runs one child until a random moment, kills it, and returns what it reported.
fn run_and_kill(dir: &Path, mode: &str, rng: &mut fastrand::Rng) -> Reported {
    let mut child = child::ignored_test("crash_child")
        .env("DEDUPSTORE_CRASH_DIR", dir)
        .env("DEDUPSTORE_CRASH_DURABILITY", mode)
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let kill_after = rng.usize(1..400);
    let delay = Duration::from_micros(rng.u64(0..20_000));
    let mut reported = Reported::default();
    let mut seen = 0;
    let mut killed = false;
    for line in lines.map_while(Result::ok) {
        let fields: Vec<&str> = line.split(' ').collect();
        match fields[..] {
            ["ack", t, n] => reported
                .acked
                .entry(t.parse().unwrap())
                .or_default()
                .push(n.parse().unwrap()),
            ["relay", seq] => reported.relay = Some(seq.parse().unwrap()),
            ["claimed", n] => reported.claimed = Some(n.parse().unwrap()),
            ["completed", n] => {
                reported.completed.insert(n.parse().unwrap());
            }
            ["released", n] => {
                reported.released.insert(n.parse().unwrap());
            }
            _ => continue, // the test harness's own output
        }
        seen += 1;
        if !killed && seen >= kill_after {
            std::thread::sleep(delay);
            child.kill().unwrap(); // SIGKILL; what is already in the pipe is still read
            killed = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed, "the child exited by itself: {status}");
    reported
}

/// Reopens the store after a kill and checks everything the module docs promise.
/// Returns the transactions and the completed claims recovered.
fn verify(dir: &Path, mode: &str, reported: &Reported) -> (u64, u64) {
    let store = Store::builder(dir)
        .durability(durability(mode))
        .open()
        .unwrap();
    let mut committed = HashMap::new();
    for t in 0..WRITERS {
        let offset = store.offset(&stream(t), 0).unwrap().unwrap_or(0);
        let own = namespace(&store, t);
        for &n in reported.acked.get(&t).into_iter().flatten() {
            assert!(
                n < offset,
                "writer {t}: message {n} was acked but the offset is {offset}"
            );
        }
        // A prefix with no holes, and nothing of any transaction after it.
        for n in 0..offset + 2 * IN_FLIGHT as u64 {
            let row = store.get("records", id(t, n)).unwrap();
            let marked = store.contains(id(t, n)).unwrap();
            assert_eq!(
                own.contains(id(t, n)).unwrap(),
                marked,
                "writer {t} message {n}: the two marks of one transaction disagree"
            );
            if n < offset {
                assert_eq!(
                    row.as_deref(),
                    Some(payload(t, n).as_bytes()),
                    "writer {t} message {n}"
                );
                assert!(marked, "writer {t} message {n}: row without mark");
            } else {
                assert_eq!(
                    row, None,
                    "writer {t} message {n} is past the offset {offset}"
                );
                assert!(
                    !marked,
                    "writer {t} message {n}: mark past the offset {offset}"
                );
            }
        }
        if sequenced(t) {
            let high = store.high_water(producer(t)).unwrap();
            assert_eq!(high, offset.checked_sub(1), "writer {t}'s producer");
        }
        committed.insert(t, offset);
    }
    let total: u64 = committed.values().sum();

    // The outbox: the committed events numbered after the relay's last durable ack, in order.
    let events = store.outbox().peek(usize::MAX).unwrap();
    if let (Some(first), Some(last)) = (events.first(), events.last()) {
        assert_eq!(
            last.seq + 1,
            total,
            "the newest event is the last committed one"
        );
        assert_eq!(events.len() as u64, total - first.seq, "no holes");
        if let Some(relayed) = reported.relay {
            assert!(
                first.seq > relayed,
                "event {} was acked by the relay",
                first.seq
            );
        }
    } else if let Some(relayed) = reported.relay {
        assert!(
            relayed < total,
            "the relay acked events that were not committed"
        );
    }
    let mut next_per_writer: HashMap<u32, u64> = HashMap::new();
    for pair in events.windows(2) {
        assert_eq!(pair[0].seq + 1, pair[1].seq);
    }
    for event in &events {
        let text = std::str::from_utf8(&event.payload).unwrap();
        let fields: Vec<u64> = text
            .split(' ')
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        let (t, n) = (u32::try_from(fields[0]).unwrap(), fields[1]);
        assert!(
            n < committed[&t],
            "event of an uncommitted transaction: {text}"
        );
        let expected = next_per_writer.entry(t).or_insert(n);
        assert_eq!(
            n, *expected,
            "writer {t}'s events out of order or duplicated"
        );
        *expected += 1;
    }

    let claims = verify_claims(&store, reported);

    // Every recovered ID and sequence is a duplicate, and the store takes new transactions.
    for t in (0..WRITERS).filter(|&t| sequenced(t) && committed[&t] > 0) {
        let last = committed[&t] - 1;
        assert_eq!(
            store.accept(producer(t), last).unwrap(),
            SequenceOutcome::Duplicate { high_water: last }
        );
        assert_eq!(
            store.accept(producer(t), last + 2).unwrap(),
            SequenceOutcome::Gap { expected: last + 1 }
        );
    }
    for t in 0..WRITERS {
        for n in 0..committed[&t] {
            assert!(matches!(
                store.check_and_mark(id(t, n)).unwrap(),
                Outcome::Duplicate { .. }
            ));
        }
    }
    assert!(matches!(
        transaction(&store, WRITERS, 0).commit().unwrap(),
        CommitOutcome::Committed(_)
    ));
    (total, claims)
}

/// Each claim the child made: acknowledged completions are there whole (result, and row for
/// those done in a transaction), and nothing is still claimed.
fn verify_claims(store: &Store, reported: &Reported) -> u64 {
    let Some(last) = reported.claimed else {
        return 0;
    };
    let mut completed = 0;
    for n in 0..=last + 1 {
        let id = claim_id(n);
        let row = store.get("claimed", &id).unwrap();
        match store.claim(&id, HOUR).unwrap() {
            ClaimOutcome::Completed { result, .. } => {
                assert!(
                    !reported.released.contains(&n),
                    "{id} was released, yet is completed"
                );
                assert_eq!(result.as_deref(), Some(claim_result(n).as_bytes()), "{id}");
                if claim_fate(n) == 1 {
                    assert_eq!(
                        row.as_deref(),
                        Some(claim_result(n).as_bytes()),
                        "{id}'s row"
                    );
                }
                completed += 1;
            }
            ClaimOutcome::Acquired(claim) => {
                assert!(
                    !reported.completed.contains(&n),
                    "{id}'s acknowledged completion is lost"
                );
                assert_eq!(row, None, "{id} has a row but no completion");
                claim.release();
            }
            other => panic!("{id} is still claimed after the crash: {other:?}"),
        }
    }
    completed
}

fn cycles(mode: &str) {
    let cycles: u64 = std::env::var("DEDUPSTORE_CRASH_CYCLES").map_or(20, |v| v.parse().unwrap());
    let first_seed: u64 = std::env::var("DEDUPSTORE_CRASH_SEED")
        .map_or_else(|_| fastrand::u64(..), |v| v.parse().unwrap());
    let (mut committed, mut completed) = (0, 0);
    for cycle in 0..cycles {
        let seed = first_seed.wrapping_add(cycle);
        let dir = tempfile::tempdir().unwrap();
        let mut rng = fastrand::Rng::with_seed(seed);
        let reported = run_and_kill(dir.path(), mode, &mut rng);
        let result = std::panic::catch_unwind(|| verify(dir.path(), mode, &reported));
        match result {
            Ok((total, claims)) => {
                committed += total;
                completed += claims;
            }
            Err(panic) => {
                eprintln!("crash harness: {mode}, cycle {cycle}, seed {seed} failed");
                std::panic::resume_unwind(panic);
            }
        }
    }
    println!(
        "crash harness: {mode}: {cycles} cycles from seed {first_seed}, {committed} transactions and {completed} completed claims recovered, 0 violations"
    );
    assert!(committed > 0);
    assert!(completed > 0);
}

#[test]
fn crash_cycles_buffered() {
    cycles("buffered");
}

#[test]
fn crash_cycles_synced() {
    cycles("synced");
}
