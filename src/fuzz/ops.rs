//! The `ops` target: a whole store against a model of its contract.
//!
//! The fuzzer's bytes become a window, a stripe count and a list of operations: check-and-mark
//! (one ID, a batch, a flood that overflows the in-memory tier), contains, transactions (marks,
//! rows, offsets, outbox events; committed alone or two submitted together), outbox peeks and
//! acks, reads of rows and offsets, claims (acquired, completed with or without a result,
//! extended, released, lost when their lease runs out and someone takes the ID over), producer
//! sequences (alone and in transactions: accepted, duplicate, gaps, forgotten when idle), clock
//! moves (time passing, wall-clock steps either way), close-and-reopen, and a fault armed at the
//! Nth write, generation create or drop.
//!
//! The model is the set of states the store may be in. A write that fails has an unknown fate
//! (written, or not): each state forks into both, and every later answer keeps only the states
//! it agrees with. An answer no state agrees with is a finding. Within the process that saw the
//! failure, the failed write's marks may read either way (the contract leaves them unmarked in
//! that process); after a reopen they read as the disk holds them, all of a transaction or none.

use super::next;
use super::sequences::{self, Accepts, Producers};
use crate::persist::generations::span;
use crate::persist::{Op as Fault, Strike};
use crate::{
    Claim, ClaimOutcome, CommitOutcome, Durability, Error, MIN_BUDGET_PER_STRIPE,
    MIN_ROCKSDB_BUDGET, ManualClock, Outcome, SequenceOutcome, Store,
};
use arbitrary::{Arbitrary, Unstructured};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const START_MS: u64 = 1_700_000_000_000;
const TABLE: &str = "rows";
const STREAM: &str = "stream";

#[derive(Arbitrary, Debug)]
struct Setup {
    /// Window of 1 to 8 seconds.
    window: u8,
    /// 1, 2, 4 or 8 slots.
    slots: u8,
    /// 1 or 2 stripes, each with the smallest memory budget.
    stripes: u8,
    synced: bool,
}

#[derive(Arbitrary, Debug)]
enum Step {
    Mark(u8),
    Batch(Vec<u8>),
    Contains(u8),
    Commit(Txn),
    /// Submits both, then waits for both: they may share a group write, and the second meets
    /// the first's marks in flight.
    SubmitPair(Txn, Txn),
    Ack(u8),
    Peek,
    Get(u8),
    Offset(u8),
    /// Marks `count % 4096` IDs never used by the other steps: enough to overflow the
    /// in-memory tier and send later checks to disk.
    Flood {
        base: u8,
        count: u16,
    },
    Advance {
        by: u16,
        unit: Unit,
    },
    WallClock {
        back: bool,
        by: u16,
        unit: Unit,
    },
    Reopen,
    Arm {
        op: FaultOp,
        after: u8,
        strike: FaultStrike,
    },
    /// Claims an ID for `lease % 4000 + 1` ms.
    Claim {
        id: u8,
        lease: u16,
    },
    /// Completes the claim held on an ID, if any, with an optional one-byte result.
    Complete {
        id: u8,
        result: Option<u8>,
    },
    Extend {
        id: u8,
        lease: u16,
    },
    Release(u8),
    /// Accepts a sequence of a producer ([`sequences::producer_of`], [`sequences::sequence_of`]).
    Accept {
        producer: u8,
        seq: u8,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Unit {
    Millis,
    Slots,
    Windows,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FaultOp {
    Write,
    Create,
    Drop,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum FaultStrike {
    Before,
    After,
    Panic,
}

#[derive(Arbitrary, Debug)]
struct Txn {
    marks: Vec<u8>,
    /// Row key and value (`None` deletes).
    rows: Vec<(u8, Option<u8>)>,
    offset: Option<(u8, u16)>,
    outbox: u8,
    /// Producer sequences to accept (the first four).
    accepts: Vec<(u8, u8)>,
}

/// One state the store may be in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    /// The latest mark time of each ID.
    marks: BTreeMap<u32, u64>,
    rows: BTreeMap<u8, u8>,
    offsets: BTreeMap<u8, u64>,
    /// Outbox sequence number to event number (the payload is `e<number>`).
    outbox: BTreeMap<u64, u32>,
    next_seq: u64,
    /// The result stored with an ID's latest mark, if it was a completion with one.
    results: BTreeMap<u32, u8>,
    producers: Producers,
}

impl State {
    /// The state without the flood's IDs, for a finding's report.
    fn summary(&self) -> String {
        let marks: BTreeMap<_, _> = self.marks.range(..1_000).collect();
        format!(
            "marks {marks:?} rows {:?} offsets {:?} outbox {:?} next {} producers {:?}",
            self.rows, self.offsets, self.outbox, self.next_seq, self.producers
        )
    }
}

/// What a check of one ID may answer in one state.
struct Answers {
    new: bool,
    /// The `first_seen` times a duplicate may report.
    duplicate: Vec<u64>,
    /// A claim holds the ID: every mark of it is `InFlight`.
    in_flight: bool,
}

impl Answers {
    fn allow(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::New => self.new,
            Outcome::Duplicate { first_seen } => self.duplicate.contains(&millis(first_seen)),
            Outcome::InFlight => self.in_flight,
            Outcome::Conflict { .. } => false,
        }
    }

    /// What `contains` may answer.
    fn allow_found(&self, found: bool) -> bool {
        if found {
            self.in_flight || !self.duplicate.is_empty()
        } else {
            self.new
        }
    }
}

/// A claim the run holds, as the model sees it.
#[derive(Clone, Copy, Debug)]
struct Lease {
    until: u64,
    /// Still the store's lease on the ID: nobody took it over after it ran out.
    valid: bool,
}

struct Model {
    window: u64,
    slot: u64,
    states: Vec<State>,
    /// IDs whose write failed since open, with the failed marks' times: this process may
    /// answer them either way.
    unsure: BTreeMap<u32, Vec<u64>>,
    /// A write failed since open (a failed create poisons nothing, a failed write does).
    maybe_poisoned: bool,
    events: u32,
    /// The latest time the store marked an ID at or opened at: no later open may start more
    /// than a slot before it.
    floor: u64,
    /// Every answer so far, for the report of a finding.
    log: Vec<String>,
    /// The claims held, by ID (leases live in memory, in every state alike).
    leases: BTreeMap<u32, Lease>,
    /// Producers whose write failed since open: this process may answer them as either state.
    unsure_producers: BTreeSet<u8>,
}

impl Model {
    fn answers(&self, state: &State, id: u32, now: u64) -> Answers {
        if self
            .leases
            .get(&id)
            .is_some_and(|l| l.valid && now < l.until)
        {
            return Answers {
                new: false,
                duplicate: Vec::new(),
                in_flight: true,
            };
        }
        let mut answers = Answers {
            new: true,
            duplicate: Vec::new(),
            in_flight: false,
        };
        if let Some(&at) = state.marks.get(&id) {
            let age = now.saturating_sub(at);
            if age < self.window + self.slot {
                answers.duplicate.push(at);
            }
            answers.new = age >= self.window;
        }
        if let Some(times) = self.unsure.get(&id) {
            answers.new = true;
            answers.duplicate.extend(times);
        }
        answers
    }

    /// Keeps the states that agree with an answer (`agrees` may also update them).
    fn observe(&mut self, what: &str, mut agrees: impl FnMut(&Model, &mut State) -> bool) {
        self.log.push(what.to_owned());
        let mut states = std::mem::take(&mut self.states);
        let before = states.clone();
        states.retain_mut(|s| agrees(self, s));
        assert!(
            !states.is_empty(),
            "no state of the model agrees with {what}\nstates:\n{}\nunsure: {:?}\nsteps:\n{}",
            before
                .iter()
                .map(State::summary)
                .collect::<Vec<_>>()
                .join("\n"),
            self.unsure,
            self.log.join("\n")
        );
        states.dedup();
        self.states = states;
    }

    /// After a write with an unknown fate: each state, and each with the write applied.
    fn fork(&mut self, what: &str, apply: impl Fn(&Model, &State) -> Vec<State>) {
        self.log.push(format!("{what}: failed, fate unknown"));
        let mut next = Vec::new();
        for state in &self.states {
            for s in std::iter::once(state.clone()).chain(apply(self, state)) {
                if !next.contains(&s) {
                    next.push(s);
                }
            }
        }
        self.states = next;
    }

    /// Checks marks answered in order, `outcomes[i]` for `ids[i]`, and applies them.
    fn marked(&mut self, what: &str, ids: &[u32], outcomes: &[Outcome], now: u64) {
        assert_eq!(ids.len(), outcomes.len());
        let answered = if outcomes.len() <= 8 {
            format!("{outcomes:?}")
        } else {
            let new = outcomes.iter().filter(|&&o| o == Outcome::New).count();
            format!("{new} new of {}", outcomes.len())
        };
        self.observe(&format!("{what} -> {answered}"), |m, s| {
            for (&id, &outcome) in ids.iter().zip(outcomes) {
                if !m.answers(s, id, now).allow(outcome) {
                    return false;
                }
                match outcome {
                    Outcome::Duplicate { first_seen } => {
                        s.marks.insert(id, millis(first_seen));
                    }
                    Outcome::New => mark(s, id, now, None),
                    Outcome::InFlight | Outcome::Conflict { .. } => {}
                }
            }
            true
        });
        // A new mark written here settles an ID; a duplicate answered from disk after a failed
        // write does not (the in-memory tier may still answer it either way).
        for (id, outcome) in ids.iter().zip(outcomes) {
            if *outcome == Outcome::New {
                self.settled_new(*id, now);
            }
        }
    }

    /// An ID newly marked at `now`, with its write returned: it is no longer unsure, and a claim
    /// on it (whose lease ran out, or the mark would have been `InFlight`) was taken over.
    fn settled_new(&mut self, id: u32, now: u64) {
        self.unsure.remove(&id);
        self.floor = self.floor.max(now);
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.valid = false;
        }
    }

    /// A check-and-mark of `ids` failed: forks into no mark, every possibly new ID marked, and
    /// only the surely new ones marked.
    fn marks_failed(&mut self, what: &str, ids: &[u32], now: u64) {
        self.fork(what, |m, s| {
            let mut all = s.clone();
            let mut sure = s.clone();
            for &id in ids {
                let answers = m.answers(s, id, now);
                if answers.new {
                    mark(&mut all, id, now, None);
                    if answers.duplicate.is_empty() {
                        mark(&mut sure, id, now, None);
                    }
                }
            }
            vec![all, sure]
        });
        for &id in ids {
            self.unsure.entry(id).or_default().push(now);
        }
    }

    /// Checks a transaction's outcome against the model and applies it. `in_flight` holds the
    /// IDs and producers an earlier transaction of the same step had claimed, which may answer
    /// `InFlight`. Its outbox events are numbered from `first_event`.
    fn transaction(
        &mut self,
        (txn, first_event): (&Txn, u32),
        result: &Result<CommitOutcome, Error>,
        struck: bool,
        in_flight: (&BTreeSet<u32>, &BTreeSet<u8>),
        now: u64,
    ) {
        let distinct: BTreeSet<u32> = txn.marks.iter().map(|&m| small_id(m)).collect();
        let accepts = sequences::accepts(&txn.accepts);
        let events = u32::from(txn.outbox % 4);
        match result {
            Ok(CommitOutcome::Committed(receipt)) => {
                self.observe(&format!("commit {txn:?} -> {receipt:?}"), |m, s| {
                    let fresh = distinct.iter().all(|&id| m.answers(s, id, now).new)
                        && m.all_accepted(s, &accepts, now);
                    let seqs = s.next_seq..s.next_seq + u64::from(events);
                    let numbered = if events == 0 {
                        receipt.outbox.is_empty()
                    } else {
                        receipt.outbox == seqs
                    };
                    if !fresh || !numbered {
                        return false;
                    }
                    apply_txn(s, txn, &distinct, first_event, now);
                    true
                });
                for &id in &distinct {
                    self.settled_new(id, now);
                }
                for p in accepts.keys() {
                    self.unsure_producers.remove(p);
                }
            }
            Ok(CommitOutcome::OutOfSequence(refused)) => {
                self.observe(
                    &format!("commit {txn:?} -> out of sequence {refused:?}"),
                    |m, s| {
                        // Sequences are checked once every mark is claimed.
                        distinct.iter().all(|&id| m.answers(s, id, now).new)
                            && sequences::refusal_agrees(
                                &s.producers,
                                &accepts,
                                refused,
                                (&m.unsure_producers, in_flight.1),
                                now,
                                m.window,
                            )
                    },
                );
            }
            Ok(CommitOutcome::Rejected(conflicts)) => {
                self.observe(
                    &format!("commit {txn:?} -> rejected {conflicts:?}"),
                    |m, s| {
                        let mut named = BTreeSet::new();
                        for c in conflicts {
                            let Some(id) = parse_small(&c.id).filter(|id| distinct.contains(id))
                            else {
                                return false;
                            };
                            let answers = m.answers(s, id, now);
                            let plausible = c.outcome != Outcome::New
                                && (answers.allow(c.outcome)
                                    || in_flight.0.contains(&id) && c.outcome == Outcome::InFlight);
                            if !plausible || !named.insert(id) {
                                return false;
                            }
                        }
                        // Every ID surely marked is named. One the other transaction claimed
                        // is surely marked if that one committed; if its write failed, its
                        // claim may have been released before this one looked (it is unsure).
                        !named.is_empty()
                            && distinct
                                .iter()
                                .all(|&id| named.contains(&id) || m.answers(s, id, now).new)
                    },
                );
            }
            Err(e) => {
                if !self.expect_failure(&format!("commit {txn:?}"), e, struck) {
                    return;
                }
                self.fork(&format!("commit {txn:?}"), |m, s| {
                    // Written only if its sequences were the next ones.
                    if !m.all_accepted(s, &accepts, now) {
                        return Vec::new();
                    }
                    let mut applied = s.clone();
                    apply_txn(&mut applied, txn, &distinct, first_event, now);
                    vec![applied]
                });
                for &id in &distinct {
                    self.unsure.entry(id).or_default().push(now);
                }
                self.unsure_producers.extend(accepts.keys());
            }
        }
    }

    /// Whether every producer of `accepts` would be accepted in `state` at `now`.
    fn all_accepted(&self, state: &State, accepts: &Accepts, now: u64) -> bool {
        sequences::all_accepted(
            &state.producers,
            accepts,
            &self.unsure_producers,
            now,
            self.window,
        )
    }

    /// Checks the answer to an accept of `seq` of producer `p` and applies it.
    fn accepted(&mut self, p: u8, seq: u64, outcome: SequenceOutcome, now: u64) {
        let what = format!("accept {p}:{seq} at {now} -> {outcome:?}");
        self.observe(&what, |m, s| {
            let high = sequences::live_high(&s.producers, p, now, m.window);
            let agrees = m.unsure_producers.contains(&p)
                || match sequences::expected(high, &[seq]) {
                    Ok(_) => outcome == SequenceOutcome::Accepted,
                    Err((_, refused)) => outcome == refused,
                };
            if agrees && outcome == SequenceOutcome::Accepted {
                s.producers.insert(p, (seq, now));
            }
            agrees
        });
        if outcome == SequenceOutcome::Accepted {
            self.unsure_producers.remove(&p);
        }
    }

    /// Numbers the outbox events of `txn`: each event of the run gets its own payload.
    fn number_events(&mut self, txn: &Txn) -> u32 {
        let first = self.events;
        self.events += u32::from(txn.outbox % 4);
        first
    }

    /// An error is a finding unless the armed fault struck in this step, or an earlier one may
    /// have poisoned the store. Returns whether the write may have happened: only a write the
    /// fault struck (a poisoned store refuses before writing anything).
    fn expect_failure(&mut self, what: &str, e: &Error, struck: bool) -> bool {
        let poisoned = matches!(e, Error::Poisoned { .. }) && self.maybe_poisoned;
        assert!(
            struck || poisoned,
            "{what} failed with no fault: {e}\nsteps:\n{}",
            self.log.join("\n")
        );
        self.maybe_poisoned = true;
        if !struck {
            self.log.push(format!("{what}: refused ({e})"));
        }
        struck
    }
}

/// Applies a written transaction: its marks (`ids`) at `now`, rows, offset, outbox events
/// numbered from `first_event` and producer sequences.
fn apply_txn(state: &mut State, txn: &Txn, ids: &BTreeSet<u32>, first_event: u32, now: u64) {
    for &id in ids {
        mark(state, id, now, None);
    }
    for &(key, value) in &txn.rows {
        match value {
            Some(v) => state.rows.insert(key % 16, v),
            None => state.rows.remove(&(key % 16)),
        };
    }
    if let Some((partition, offset)) = txn.offset {
        // Offsets never move backwards.
        let offset = u64::from(offset);
        state
            .offsets
            .entry(partition % 4)
            .and_modify(|o| *o = (*o).max(offset))
            .or_insert(offset);
    }
    for i in 0..u32::from(txn.outbox % 4) {
        state.outbox.insert(state.next_seq, first_event + i);
        state.next_seq += 1;
    }
    sequences::apply(&mut state.producers, &sequences::accepts(&txn.accepts), now);
}

/// Marks `id` at `now` in `state`, with the result a completion stored (`None`: a plain mark, or
/// a completion without one).
fn mark(state: &mut State, id: u32, now: u64, result: Option<u8>) {
    state.marks.insert(id, now);
    match result {
        Some(r) => state.results.insert(id, r),
        None => state.results.remove(&id),
    };
}

/// The store under test, its clock and how to reopen it.
struct Harness {
    dir: tempfile::TempDir,
    clock: ManualClock,
    setup: (Duration, u32, usize, Durability),
    store: Option<Store>,
}

impl Harness {
    fn open(&mut self) -> &Store {
        let (window, slots, stripes, durability) = self.setup;
        let store = Store::builder(self.dir.path())
            .window(window)
            .slots(slots)
            .stripes(stripes)
            .memory_budget(stripes * MIN_BUDGET_PER_STRIPE + MIN_ROCKSDB_BUDGET)
            .capacity(1_000)
            .durability(durability)
            .clock(self.clock.clone())
            .open()
            .unwrap_or_else(|e| panic!("reopening: {e}"));
        self.store.insert(store)
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("open")
    }
}

/// Runs a store through the steps `data` decodes to, checking every answer against the model.
pub fn ops(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = Setup::arbitrary(&mut u) else {
        return;
    };
    let steps: Vec<Step> = std::iter::from_fn(|| next(&mut u)).collect();
    run(&setup, steps, None);
}

/// Runs `steps` on a new store, with `fault` armed from the start (its `after` is not
/// limited as an `Arm` step's is). Returns whether the fault struck.
#[allow(clippy::too_many_lines, reason = "one short arm per kind of step")]
fn run(setup: &Setup, steps: Vec<Step>, fault: Option<(Fault, u64, Strike)>) -> bool {
    let window_ms = u64::from(setup.window % 8 + 1) * 1_000;
    let slots = 1u32 << (setup.slots % 4);
    let stripes = 1usize << (setup.stripes % 2);
    let durability = if setup.synced {
        Durability::Synced
    } else {
        Durability::Buffered
    };
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        tempfile::Builder::new()
            .prefix("dedupstore-fuzz")
            .tempdir_in("/dev/shm")
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let mut h = Harness {
        dir,
        clock: ManualClock::new(UNIX_EPOCH + Duration::from_millis(START_MS)),
        setup: (Duration::from_millis(window_ms), slots, stripes, durability),
        store: None,
    };
    h.open();
    let window = crate::window::Window::new(window_ms, slots);
    let most_generations = window_ms.div_ceil(span(window)) + 3;
    let mut m = Model {
        window: window_ms,
        slot: window.slot_ms,
        states: vec![State::default()],
        unsure: BTreeMap::new(),
        maybe_poisoned: false,
        events: 0,
        floor: START_MS,
        log: vec![format!(
            "window {window_ms} ms, {slots} slots, {stripes} stripes"
        )],
        leases: BTreeMap::new(),
        unsure_producers: BTreeSet::new(),
    };
    // The claims held, by ID; they hold the store open, so a reopen drops them first.
    let mut claims: BTreeMap<u32, Claim> = BTreeMap::new();
    // Whether the fault struck, known once the store it was armed in closes.
    let mut fault_struck = None;
    if let Some((op, after, strike)) = fault {
        h.store().engine().cold.fault.arm(op, after, strike);
        m.log.push(format!("arm {op:?} after {after} {strike:?}"));
    }

    for step in steps {
        if let Step::Reopen = step {
            claims.clear();
            m.leases.clear();
            fault_struck.get_or_insert(reopen(&mut h, &mut m));
            continue;
        }
        let store = h.store();
        let now = store.engine().now_millis();
        let fault = &store.engine().cold.fault;
        let armed = !fault.spent();
        let struck = || armed && store.engine().cold.fault.spent();
        match step {
            Step::Mark(n) => {
                let id = small_id(n);
                match store.check_and_mark(name(id)) {
                    Ok(o) => m.marked(&format!("mark {id} at {now}"), &[id], &[o], now),
                    Err(e) => {
                        if m.expect_failure("mark", &e, struck()) {
                            m.marks_failed(&format!("mark {id}"), &[id], now);
                        }
                    }
                }
            }
            Step::Batch(ns) => {
                let ids: Vec<u32> = ns.iter().take(16).map(|&n| small_id(n)).collect();
                batch(store, &mut m, &ids, now, struck);
            }
            Step::Flood { base, count } => {
                let first = 1_000 + u32::from(base) * 4_096;
                let ids: Vec<u32> = (first..first + u32::from(count % 4_096)).collect();
                batch(store, &mut m, &ids, now, struck);
            }
            Step::Contains(n) => {
                let id = small_id(n);
                let found = store.contains(name(id)).expect("contains never fails here");
                m.observe(&format!("contains {id} at {now} -> {found}"), |m, s| {
                    m.answers(s, id, now).allow_found(found)
                });
            }
            Step::Commit(txn) => {
                let events = m.number_events(&txn);
                let result = build(store, &txn, events).and_then(crate::Transaction::commit);
                let none = (&BTreeSet::new(), &BTreeSet::new());
                m.transaction((&txn, events), &result, struck(), none, now);
            }
            Step::SubmitPair(a, b) => {
                let (a_events, b_events) = (m.number_events(&a), m.number_events(&b));
                let first = build(store, &a, a_events).and_then(crate::Transaction::submit);
                let second = build(store, &b, b_events).and_then(crate::Transaction::submit);
                let first = first.and_then(crate::Ticket::wait);
                let second = second.and_then(crate::Ticket::wait);
                let struck = struck();
                let none = (&BTreeSet::new(), &BTreeSet::new());
                m.transaction((&a, a_events), &first, struck, none, now);
                let (claimed, producers) = match &first {
                    Ok(CommitOutcome::Rejected(_) | CommitOutcome::OutOfSequence(_)) => {
                        (BTreeSet::new(), BTreeSet::new())
                    }
                    _ => (
                        a.marks.iter().map(|&n| small_id(n)).collect(),
                        sequences::accepts(&a.accepts).into_keys().collect(),
                    ),
                };
                m.transaction((&b, b_events), &second, struck, (&claimed, &producers), now);
            }
            Step::Ack(n) => {
                let up_to = if n == u8::MAX { u64::MAX } else { u64::from(n) };
                match store.outbox().ack(up_to) {
                    Ok(()) => m.observe(&format!("ack {up_to}"), |_, s| {
                        s.outbox.retain(|&seq, _| seq > up_to);
                        true
                    }),
                    Err(e) => {
                        if !m.expect_failure("ack", &e, struck()) {
                            continue;
                        }
                        m.fork(&format!("ack {up_to}"), |_, s| {
                            let mut acked = s.clone();
                            acked.outbox.retain(|&seq, _| seq > up_to);
                            vec![acked]
                        });
                    }
                }
            }
            Step::Peek => peek(store, &mut m),
            Step::Get(key) => get(store, &mut m, key % 16),
            Step::Offset(p) => offset(store, &mut m, p % 4),
            Step::Advance { by, unit } => {
                h.clock
                    .advance(Duration::from_millis(amount(by, unit, window)));
                m.log
                    .push(format!("advance to {}", store.engine().now_millis()));
            }
            Step::WallClock { back, by, unit } => {
                let by = amount(by, unit, window);
                let wall = millis(crate::Clock::now(&h.clock));
                let wall = if back {
                    wall.saturating_sub(by)
                } else {
                    wall + by
                };
                h.clock.step(UNIX_EPOCH + Duration::from_millis(wall));
                assert_eq!(
                    store.engine().now_millis(),
                    now,
                    "a wall-clock step moved an open store's time"
                );
                m.log.push(format!("wall clock stepped to {wall}"));
                continue;
            }
            Step::Reopen => unreachable!("handled above"),
            Step::Claim { id, lease } => {
                let id = small_id(id);
                let lease = u64::from(lease % 4_000) + 1;
                claim(store, &mut m, &mut claims, id, lease, now);
            }
            Step::Complete { id, result } => {
                let id = small_id(id);
                if let Some(claim) = claims.remove(&id) {
                    complete(&mut m, claim, id, result, now, struck);
                }
            }
            Step::Extend { id, lease } => {
                let id = small_id(id);
                let lease = u64::from(lease % 4_000) + 1;
                if let Some(claim) = claims.get_mut(&id) {
                    let extended = claim.extend(Duration::from_millis(lease));
                    let held = m.leases.get_mut(&id).expect("a lease for every claim");
                    m.log
                        .push(format!("extend {id} by {lease} at {now} -> {extended:?}"));
                    match extended {
                        Ok(until) if held.valid => {
                            assert_eq!(millis(until), now + lease, "{}", m.log.join("\n"));
                            held.until = now + lease;
                        }
                        Err(Error::ClaimLost { .. }) if !held.valid => {}
                        other => panic!("extend: {other:?}\nsteps:\n{}", m.log.join("\n")),
                    }
                }
            }
            Step::Release(id) => {
                let id = small_id(id);
                if let Some(claim) = claims.remove(&id) {
                    claim.release();
                    m.leases.remove(&id);
                    m.log.push(format!("release {id}"));
                }
            }
            Step::Accept { producer, seq } => {
                let (p, seq) = (
                    sequences::producer_of(producer),
                    sequences::sequence_of(seq),
                );
                match store.accept(sequences::producer_name(p), seq) {
                    Ok(outcome) => m.accepted(p, seq, outcome, now),
                    Err(e) => {
                        let what = format!("accept {p}:{seq} at {now}");
                        if m.expect_failure(&what, &e, struck()) {
                            let accepts = Accepts::from([(p, vec![seq])]);
                            m.fork(&what, |m, s| {
                                if !m.all_accepted(s, &accepts, now) {
                                    return Vec::new();
                                }
                                let mut applied = s.clone();
                                sequences::apply(&mut applied.producers, &accepts, now);
                                vec![applied]
                            });
                            m.unsure_producers.insert(p);
                        }
                    }
                }
            }
            Step::Arm { op, after, strike } => {
                let op = match op {
                    FaultOp::Write => Fault::Write,
                    FaultOp::Create => Fault::Create,
                    FaultOp::Drop => Fault::Drop,
                };
                let strike = match strike {
                    FaultStrike::Before => Strike::Before,
                    FaultStrike::After => Strike::After,
                    // A drop runs after its write has settled, outside any write: a panic
                    // there reaches the caller as any bug's panic would.
                    FaultStrike::Panic if op == Fault::Drop => Strike::Before,
                    FaultStrike::Panic => Strike::Panic,
                };
                // Each failure doubles the model's states; keep it small.
                if m.states.len() <= 8 {
                    fault.arm(op, u64::from(after % 4), strike);
                    m.log
                        .push(format!("arm {op:?} after {} {strike:?}", after % 4));
                }
                continue;
            }
        }
        let stats = h.store().stats();
        assert!(
            stats.generations as u64 <= most_generations + stats.failed_generation_drops,
            "{} generations on disk for a window of {window_ms} ms",
            stats.generations
        );
    }
    // Everything acknowledged survives a last reopen.
    claims.clear();
    m.leases.clear();
    fault_struck.get_or_insert(reopen(&mut h, &mut m));
    fault.is_some() && fault_struck == Some(true)
}

/// Claims `id` for `lease` ms and checks the outcome. A claim acquired over the lost one of an
/// earlier step proves that one lost: its completion must fail.
fn claim(
    store: &Store,
    m: &mut Model,
    claims: &mut BTreeMap<u32, Claim>,
    id: u32,
    lease: u64,
    now: u64,
) {
    let outcome = store
        .claim(name(id), Duration::from_millis(lease))
        .unwrap_or_else(|e| panic!("claim {id}: {e}\nsteps:\n{}", m.log.join("\n")));
    let what = format!("claim {id} for {lease} at {now}");
    match outcome {
        ClaimOutcome::Acquired(claim) => {
            m.observe(&format!("{what} -> acquired"), |m, s| {
                m.answers(s, id, now).new
            });
            if let Some(old) = claims.insert(id, claim) {
                let lost = old.complete(None);
                assert!(
                    matches!(lost, Err(Error::ClaimLost { completed: false })),
                    "the claim taken over completed: {lost:?}\nsteps:\n{}",
                    m.log.join("\n")
                );
            }
            m.leases.insert(
                id,
                Lease {
                    until: now + lease,
                    valid: true,
                },
            );
        }
        ClaimOutcome::InProgress { until } => {
            let held = m.leases.get(&id).copied();
            m.log
                .push(format!("{what} -> in progress until {}", millis(until)));
            assert!(
                held.is_some_and(|l| l.valid && now < l.until && l.until == millis(until)),
                "{what}: in progress until {}, held {held:?}\nsteps:\n{}",
                millis(until),
                m.log.join("\n")
            );
        }
        ClaimOutcome::Completed { result, at } => {
            let result = result.map(|r| r.to_vec());
            m.observe(
                &format!("{what} -> completed at {at:?} {result:?}"),
                |m, s| {
                    m.answers(s, id, now).duplicate.contains(&millis(at))
                        && s.results.get(&id).map(|&r| vec![r]) == result
                },
            );
        }
        ClaimOutcome::Conflict { .. } => panic!("{what}: a conflict, with no payload given"),
    }
}

/// Completes `claim` on `id` with `result`, checking the outcome: a claim still held marks the
/// ID; a lost one answers as a mark would (marked if the ID is free, `ClaimLost` otherwise).
fn complete(
    m: &mut Model,
    claim: Claim,
    id: u32,
    result: Option<u8>,
    now: u64,
    struck: impl Fn() -> bool,
) {
    let held = m.leases.remove(&id).expect("a lease for every claim");
    let bytes = result.map(|r| [r]);
    let completed = claim.complete(bytes.as_ref().map(|r| &r[..]));
    let what = format!("complete {id} with {result:?} at {now} (held {held:?})");
    match completed {
        Ok(()) => {
            m.observe(&format!("{what} -> ok"), |m, s| {
                let free = held.valid || m.answers(s, id, now).new;
                if free {
                    mark(s, id, now, result);
                }
                free
            });
            m.settled_new(id, now);
        }
        Err(Error::ClaimLost { completed }) => {
            m.observe(
                &format!("{what} -> lost (completed: {completed})"),
                |m, s| {
                    let a = m.answers(s, id, now);
                    !held.valid
                        && (if completed {
                            !a.duplicate.is_empty()
                        } else {
                            a.in_flight
                        })
                },
            );
        }
        Err(e) => {
            if m.expect_failure(&what, &e, struck()) {
                m.fork(&what, |m, s| {
                    let mut written = s.clone();
                    let free = held.valid || m.answers(s, id, now).new;
                    free.then(|| {
                        mark(&mut written, id, now, result);
                        written
                    })
                    .into_iter()
                    .collect()
                });
                m.unsure.entry(id).or_default().push(now);
            }
        }
    }
}

fn batch(store: &Store, m: &mut Model, ids: &[u32], now: u64, struck: impl Fn() -> bool) {
    let names: Vec<String> = ids.iter().map(|&id| name(id)).collect();
    let what = format!("batch of {} from {:?} at {now}", ids.len(), ids.first());
    match store.check_and_mark_batch(&names) {
        Ok(outcomes) => m.marked(&what, ids, &outcomes, now),
        Err(e) => {
            if m.expect_failure(&what, &e, struck()) {
                m.marks_failed(&what, ids, now);
            }
        }
    }
}

/// Closes the store, reopens it and checks its time, then everything it holds, against the
/// model. Returns whether the closed store's fault point was spent.
fn reopen(h: &mut Harness, m: &mut Model) -> bool {
    let closed = h.store.take().expect("open");
    let spent = closed.engine().cold.fault.spent();
    let before = closed.engine().now_millis();
    drop(closed);
    let wall = millis(crate::Clock::now(&h.clock));
    let store = h.open();
    let now = store.engine().now_millis();
    m.log.push(format!("reopen at {now} (wall {wall})"));
    assert!(
        now >= wall,
        "reopened at {now}, behind the wall clock {wall}"
    );
    assert!(
        now <= wall.max(before),
        "reopened at {now}, ahead of the wall clock {wall} and of the time at close {before}"
    );
    assert!(
        now + m.slot >= m.floor,
        "reopened at {now}, more than a slot before the time {} the store had reached",
        m.floor
    );
    m.floor = m.floor.max(now);
    let mut ids: BTreeSet<u32> = m.unsure.keys().copied().collect();
    m.unsure.clear();
    m.maybe_poisoned = false;
    ids.extend(m.states.iter().flat_map(|s| s.marks.keys().copied()));
    let ids: Vec<u32> = ids.into_iter().collect();
    let names: Vec<String> = ids.iter().map(|&id| name(id)).collect();
    let found = store.contains_batch(&names).expect("contains after reopen");
    m.observe(&format!("contains after reopen at {now}"), |m, s| {
        ids.iter()
            .zip(&found)
            .all(|(&id, &found)| m.answers(s, id, now).allow_found(found))
    });
    for key in 0..16 {
        get(store, m, key);
    }
    for partition in 0..4 {
        offset(store, m, partition);
    }
    m.unsure_producers.clear();
    for p in 0..3 {
        let high = store
            .high_water(sequences::producer_name(p))
            .expect("a valid producer");
        m.observe(&format!("producer {p} after reopen -> {high:?}"), |m, s| {
            sequences::live_high(&s.producers, p, now, m.window) == high
        });
    }
    peek(store, m);
    spent
}

fn get(store: &Store, m: &mut Model, key: u8) {
    let value = store.get(TABLE, [key]).expect("reading a row");
    let value = value.map(|v| v[0]);
    m.observe(&format!("get {key} -> {value:?}"), |_, s| {
        s.rows.get(&key).copied() == value
    });
}

fn offset(store: &Store, m: &mut Model, partition: u8) {
    let value = store
        .offset(STREAM, u32::from(partition))
        .expect("reading an offset");
    m.observe(&format!("offset {partition} -> {value:?}"), |_, s| {
        s.offsets.get(&partition).copied() == value
    });
}

fn peek(store: &Store, m: &mut Model) {
    let entries = store.outbox().peek(usize::MAX).expect("reading the outbox");
    let seen: Vec<(u64, Vec<u8>)> = entries
        .into_iter()
        .map(|e| (e.seq, e.payload.to_vec()))
        .collect();
    m.observe(&format!("peek -> {} events", seen.len()), |_, s| {
        let expected: Vec<(u64, Vec<u8>)> = s
            .outbox
            .iter()
            .map(|(&seq, &event)| (seq, payload(event)))
            .collect();
        expected == seen
    });
}

/// The transaction `txn` describes, its outbox events numbered from `first_event`.
fn build(store: &Store, txn: &Txn, first_event: u32) -> crate::Result<crate::Transaction> {
    let mut t = store.transaction();
    for &n in &txn.marks {
        t.mark(name(small_id(n)))?;
    }
    for &(key, value) in &txn.rows {
        match value {
            Some(v) => t.put(TABLE, [key % 16], [v])?,
            None => t.delete(TABLE, [key % 16])?,
        };
    }
    if let Some((partition, offset)) = txn.offset {
        t.set_offset(STREAM, u32::from(partition % 4), u64::from(offset))?;
    }
    for i in 0..u32::from(txn.outbox % 4) {
        t.outbox(payload(first_event + i));
    }
    for &(producer, seq) in txn.accepts.iter().take(4) {
        let p = sequences::producer_of(producer);
        t.accept(sequences::producer_name(p), sequences::sequence_of(seq))?;
    }
    Ok(t)
}

fn amount(by: u16, unit: Unit, window: crate::window::Window) -> u64 {
    match unit {
        Unit::Millis => u64::from(by % 2_000),
        Unit::Slots => u64::from(by % 16) * window.slot_ms,
        Unit::Windows => u64::from(by % 4) * window.window_ms,
    }
}

fn small_id(n: u8) -> u32 {
    u32::from(n % 32)
}

fn name(id: u32) -> String {
    format!("m{id}")
}

fn parse_small(id: &[u8]) -> Option<u32> {
    std::str::from_utf8(id)
        .ok()?
        .strip_prefix('m')?
        .parse()
        .ok()
}

fn payload(event: u32) -> Vec<u8> {
    format!("e{event}").into_bytes()
}

fn millis(t: SystemTime) -> u64 {
    crate::clock::unix_millis(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workload that reaches every fault point: marks, transactions alone and in a group,
    /// an outbox ack, a flood past the in-memory budget, rollovers and drops of dead
    /// generations, claims and producer sequences. [`run`] reopens the store at the end and
    /// checks all of it.
    #[allow(clippy::too_many_lines, reason = "a line or so per step")]
    fn workload() -> Vec<Step> {
        let txn = |marks: Vec<u8>, rows: Vec<(u8, Option<u8>)>, offset, outbox| Txn {
            marks,
            rows,
            offset,
            outbox,
            accepts: Vec::new(),
        };
        let accepting = |marks: Vec<u8>, accepts: Vec<(u8, u8)>| Txn {
            accepts,
            ..txn(marks, vec![(6, Some(60))], None, 0)
        };
        vec![
            Step::Batch(vec![1, 2, 3]),
            Step::Commit(txn(
                vec![4, 5],
                vec![(1, Some(10)), (2, Some(20))],
                Some((1, 100)),
                2,
            )),
            Step::Mark(1),
            Step::Advance {
                by: 3,
                unit: Unit::Slots,
            },
            Step::SubmitPair(
                txn(vec![6], vec![(3, Some(30))], None, 1),
                txn(vec![6, 7], vec![(4, Some(40))], Some((2, 5)), 1),
            ),
            Step::Ack(0),
            Step::Flood {
                base: 1,
                count: 3_000,
            },
            Step::Advance {
                by: 1,
                unit: Unit::Windows,
            },
            Step::Batch(vec![1, 8, 9]),
            Step::Commit(txn(vec![10], vec![(1, None)], Some((1, 101)), 1)),
            Step::Advance {
                by: 2,
                unit: Unit::Windows,
            },
            Step::Mark(11),
            Step::Advance {
                by: 5,
                unit: Unit::Slots,
            },
            Step::Mark(12),
            Step::Mark(12),
            Step::Commit(txn(vec![13, 1], vec![(5, Some(50))], Some((1, 102)), 1)),
            Step::Peek,
            // Claims: completed with a result and read back, lost to a mark, released,
            // extended.
            Step::Claim { id: 14, lease: 999 },
            Step::Complete {
                id: 14,
                result: Some(7),
            },
            Step::Claim { id: 14, lease: 99 },
            Step::Claim { id: 15, lease: 9 },
            Step::Advance {
                by: 1,
                unit: Unit::Slots,
            },
            Step::Mark(15),
            Step::Complete {
                id: 15,
                result: None,
            },
            Step::Claim { id: 16, lease: 499 },
            Step::Release(16),
            Step::Claim { id: 16, lease: 499 },
            Step::Extend { id: 16, lease: 599 },
            Step::Complete {
                id: 16,
                result: Some(1),
            },
            // Producer sequences: next, duplicate, gap, several in a transaction, two
            // transactions of one producer in flight together, forgotten once idle.
            Step::Accept {
                producer: 0,
                seq: 0,
            },
            Step::Accept {
                producer: 0,
                seq: 1,
            },
            Step::Accept {
                producer: 0,
                seq: 1,
            },
            Step::Accept {
                producer: 0,
                seq: 5,
            },
            Step::Commit(accepting(vec![17], vec![(0, 3), (0, 2), (1, 4)])),
            Step::Commit(accepting(vec![18], vec![(0, 4), (1, 7)])),
            Step::SubmitPair(
                accepting(vec![19], vec![(1, 5)]),
                accepting(vec![20], vec![(1, 6), (2, 0)]),
            ),
            Step::Advance {
                by: 2,
                unit: Unit::Windows,
            },
            Step::Accept {
                producer: 1,
                seq: 2,
            },
        ]
    }

    /// SQLite-style: fail the first write (create, drop), then the second, and so on until the
    /// workload runs through without reaching the fault. After each failure the model checks
    /// every later answer and, after a reopen, everything on disk: nothing acknowledged lost,
    /// no transaction torn, no wrong `New`.
    #[test]
    fn every_fault_point_in_turn() {
        let setup = Setup {
            window: 4,
            slots: 3,
            stripes: 0,
            synced: false,
        };
        let strikes = [Strike::Before, Strike::After, Strike::Panic];
        for (op, strikes) in [
            (Fault::Write, &strikes[..]),
            (Fault::Create, &strikes[..]),
            // A drop runs outside any write; a panic there reaches its caller as any bug's does.
            (Fault::Drop, &strikes[..2]),
        ] {
            for &strike in strikes {
                let reached = (0..1_000)
                    .take_while(|&n| run(&setup, workload(), Some((op, n, strike))))
                    .count();
                assert!(reached >= 2, "{op:?} {strike:?}: reached {reached} times");
            }
        }
    }
}
