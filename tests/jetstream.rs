//! End to end against a real broker: consumer processes of `examples/jetstream_consumer.rs`
//! consume a partitioned JetStream stream (Debian's `nats-server`, started here on 127.0.0.1
//! with a temporary port and store) while a producer retries messages inside and after the
//! broker's duplicate window. Partitions move between the processes through hand-offs and
//! through crashes: SIGKILLs at random moments (then restored from checkpoints by another
//! process, or reopened from the local copy by a restarted one), and an abort between a commit
//! and its ack. At
//! the end every effect is applied exactly once and every outbox event is present exactly once
//! after downstream dedup by (partition, sequence). With dedup switched off the same run
//! applies the late retries twice: the test sees the failure it guards against.

#[path = "common/nats.rs"]
mod nats;

use async_nats::jetstream::{self, stream};
use dedupstore::Store;
use dedupstore::checkpoint::Checkpoints;
use nats::{Instance, NatsServer};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::xxh3_64;

const PARTITIONS: u32 = 4;
const ACCOUNTS: u64 = 40;
/// The broker's duplicate window: retries later than this are stored again.
const BROKER_WINDOW: Duration = Duration::from_secs(1);

/// The producer: publishes orders and retries, and remembers what the stream holds.
struct Producer {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    /// Every distinct ID the stream holds, with its account.
    ids: BTreeMap<String, String>,
    /// The last stream sequence of each partition's subject.
    last_seq: HashMap<u32, u64>,
    stored_retries: usize,
}

fn account(i: u64) -> String {
    format!("acct-{}", i % ACCOUNTS)
}

fn partition_of(account: &str) -> u32 {
    (xxh3_64(account.as_bytes()) % u64::from(PARTITIONS)) as u32
}

impl Producer {
    fn new(server: &NatsServer) -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let js = runtime.block_on(async {
            let client = async_nats::connect(&server.url).await.unwrap();
            let js = jetstream::new(client);
            js.create_stream(stream::Config {
                name: "ORDERS".into(),
                subjects: vec!["orders.*".into()],
                duplicate_window: BROKER_WINDOW,
                ..Default::default()
            })
            .await
            .unwrap();
            js.create_stream(stream::Config {
                name: "EVENTS".into(),
                subjects: vec!["events.*".into()],
                ..Default::default()
            })
            .await
            .unwrap();
            js
        });
        Self {
            runtime,
            js,
            ids: BTreeMap::new(),
            last_seq: HashMap::new(),
            stored_retries: 0,
        }
    }

    /// Publishes message `i`; returns whether the broker stored it (rather than dropping it as
    /// a duplicate within its window).
    fn send(&mut self, i: u64) -> bool {
        let (id, account) = (format!("order-{i}"), account(i));
        let p = partition_of(&account);
        let ack = self.runtime.block_on(async {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            self.js
                .publish_with_headers(format!("orders.{p}"), headers, account.clone().into())
                .await
                .unwrap()
                .await
                .unwrap()
        });
        if !ack.duplicate {
            let last = self.last_seq.entry(p).or_default();
            *last = (*last).max(ack.sequence);
            self.ids.insert(id, account);
        }
        !ack.duplicate
    }

    /// Publishes messages `range`, each tenth one retried at once (inside the broker's window,
    /// so the broker drops the retry).
    fn publish(&mut self, range: std::ops::Range<u64>) {
        for i in range {
            assert!(self.send(i), "order-{i} is new to the broker");
            if i % 10 == 0 {
                assert!(
                    !self.send(i),
                    "a retry inside the broker's window is dropped"
                );
            }
        }
    }

    /// Retries every `step`th message of `range`, past the broker's window: the stream holds
    /// each retry a second time, and only the consumer's dedup can drop it.
    fn retry_late(&mut self, range: std::ops::Range<u64>, step: usize) {
        std::thread::sleep(BROKER_WINDOW + Duration::from_millis(300));
        for i in range.step_by(step) {
            assert!(self.send(i), "a retry past the broker's window is stored");
            self.stored_retries += 1;
        }
    }

    /// Every event the consumers published, as (partition, sequence, payload).
    fn events(&self) -> Vec<(u32, u64, String)> {
        self.runtime.block_on(async {
            let stream = self.js.get_stream("EVENTS").await.unwrap();
            let state = stream.get_info().await.unwrap().state;
            let mut events = Vec::new();
            for seq in state.first_sequence..=state.last_sequence {
                let message = stream.get_raw_message(seq).await.unwrap();
                let field = |name: &str| -> u64 {
                    message.headers.get(name).unwrap().as_str().parse().unwrap()
                };
                let payload = String::from_utf8(message.payload.to_vec()).unwrap();
                events.push((field("Partition") as u32, field("Seq"), payload));
            }
            assert_eq!(events.len() as u64, state.messages);
            events
        })
    }
}

/// Waits until the instances' stored offsets reach the end of every partition.
fn wait_for_the_end(producer: &Producer, instances: &mut [&mut Instance]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut offsets = HashMap::new();
        for instance in instances.iter_mut() {
            offsets.extend(instance.status());
        }
        let behind: Vec<_> = producer
            .last_seq
            .iter()
            .filter(|(p, last)| offsets.get(p) != Some(last))
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partitions behind: {behind:?}, stored {offsets:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The balances and pending outbox events of every partition's newest checkpoint, restored.
fn final_state(checkpoints: &Path, scratch: &Path) -> (HashMap<String, u64>, usize) {
    let mut balances = HashMap::new();
    let mut pending = 0;
    for p in 0..PARTITIONS {
        let destination = Checkpoints::local(checkpoints)
            .unwrap()
            .at(&format!("orders/{p}"))
            .unwrap();
        let (name, _) = destination.newest().unwrap().expect("a final checkpoint");
        let dir = scratch.join(format!("final-{p}"));
        destination.restore(&name, &dir, |_| {}).unwrap();
        let store = Store::open(&dir).unwrap();
        for a in 0..ACCOUNTS {
            let account = account(a);
            if let Some(v) = store.get("balances", &account).unwrap() {
                let v: u64 = std::str::from_utf8(&v).unwrap().parse().unwrap();
                assert_eq!(
                    partition_of(&account),
                    p,
                    "{account} lives in its partition"
                );
                *balances.entry(account).or_default() += v;
            }
        }
        pending += store.outbox().peek(usize::MAX).unwrap().len();
    }
    (balances, pending)
}

struct Run {
    /// Kept running for the checks that read the events.
    _server: NatsServer,
    expected: HashMap<String, u64>,
    balances: HashMap<String, u64>,
    producer: Producer,
    pending_events: usize,
}

/// The whole scenario, with dedup on or off in every consumer.
fn scenario(dedup: bool) -> Run {
    let server = NatsServer::start();
    let dirs = tempfile::tempdir().unwrap();
    let checkpoints = dirs.path().join("checkpoints");
    let spawn = |root: &str, name: &str, crash_after: Option<u64>| {
        Instance::spawn(
            &server,
            &dirs.path().join(root),
            &checkpoints,
            name,
            dedup,
            crash_after,
        )
    };
    let mut producer = Producer::new(&server);
    producer.publish(0..400);

    let mut a = spawn("a", "a", None);
    let mut b = spawn("b", "b", None);
    for p in 0..PARTITIONS {
        let owner = if p < 2 { &mut a } else { &mut b };
        let answer = owner
            .ask(&format!("assign {p}"), &format!("assigned {p}"))
            .unwrap();
        assert!(answer.contains("Nothing"), "a first start: {answer}");
    }
    producer.retry_late(0..400, 7);
    producer.publish(400..800);
    a.ask("checkpoint", "checkpointed").unwrap();
    b.ask("checkpoint", "checkpointed").unwrap();

    // A hand-off: partition 1 moves from a to b.
    let handoff = Instant::now();
    let revoked = a.ask("revoke 1", "revoked 1").unwrap();
    let assigned = b.ask("assign 1", "assigned 1").unwrap();
    eprintln!(
        "hand-off of partition 1: {} ms ({revoked}; {assigned})",
        handoff.elapsed().as_millis()
    );
    assert!(assigned.contains("Checkpoint"), "{assigned}");

    // A crash: b is killed at a random moment while it consumes; a takes its partitions over,
    // each restored from its newest checkpoint and rewound to the checkpoint's offset.
    producer.publish(800..1200);
    std::thread::sleep(Duration::from_millis(fastrand::u64(0..300)));
    b.kill();
    for p in 1..PARTITIONS {
        let answer = a
            .ask(&format!("assign {p}"), &format!("assigned {p}"))
            .unwrap();
        assert!(answer.contains("Checkpoint"), "{answer}");
    }
    producer.publish(1200..1600);
    producer.retry_late(400..1200, 5);

    // A crash between a commit and its ack: partition 3 moves to c, which aborts after its
    // 25th commit; restarted on its own directory, c reopens its local copy, newer than any
    // checkpoint.
    a.ask("revoke 3", "revoked 3").unwrap();
    let mut c = spawn("c", "c", Some(25));
    c.ask("assign 3", "assigned 3").unwrap();
    producer.publish(1600..2000);
    assert!(!c.wait_for_exit().success(), "c aborted");
    let mut c = spawn("c", "c-restarted", None);
    let answer = c.ask("assign 3", "assigned 3").unwrap();
    assert!(answer.contains("LocalCopy"), "{answer}");
    // More SIGKILLs at random moments, each followed by a restart on c's own directory.
    for round in 0..3u64 {
        producer.publish(2000 + round * 100..2100 + round * 100);
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..200)));
        c.kill();
        c = spawn("c", &format!("c-{round}"), None);
        let answer = c.ask("assign 3", "assigned 3").unwrap();
        assert!(answer.contains("LocalCopy"), "{answer}");
    }
    producer.publish(2300..2400);
    producer.retry_late(1200..2400, 6);

    wait_for_the_end(&producer, &mut [&mut a, &mut c]);
    a.quit();
    c.quit();

    let mut expected = HashMap::new();
    for account in producer.ids.values() {
        *expected.entry(account.clone()).or_default() += 1;
    }
    let (balances, pending_events) = final_state(&checkpoints, dirs.path());
    Run {
        _server: server,
        expected,
        balances,
        producer,
        pending_events,
    }
}

#[test]
fn every_effect_and_event_exactly_once_across_hand_offs_and_crashes() {
    let run = scenario(true);
    assert!(
        run.producer.stored_retries > 100,
        "the stream holds retries"
    );
    assert_eq!(
        run.balances, run.expected,
        "every order applied exactly once"
    );
    assert_eq!(run.pending_events, 0, "the outboxes were relayed");

    // Downstream dedup by (partition, sequence): a replay re-emits an event under the sequence
    // number it had, with the same payload.
    let events = run.producer.events();
    let mut by_position: HashMap<(u32, u64), String> = HashMap::new();
    for (p, seq, payload) in &events {
        let earlier = by_position
            .entry((*p, *seq))
            .or_insert_with(|| payload.clone());
        assert_eq!(
            earlier, payload,
            "event {p}/{seq} re-emitted with another payload"
        );
    }
    let mut per_id: BTreeMap<&str, usize> = BTreeMap::new();
    for payload in by_position.values() {
        *per_id
            .entry(payload.split(' ').next().unwrap())
            .or_default() += 1;
    }
    assert!(per_id.values().all(|&n| n == 1), "an order's event twice");
    assert_eq!(
        per_id.keys().copied().collect::<Vec<_>>(),
        run.producer
            .ids
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        "one event per order"
    );
    eprintln!(
        "{} orders, {} stored retries, {} events published ({} after downstream dedup)",
        run.producer.ids.len(),
        run.producer.stored_retries,
        events.len(),
        by_position.len()
    );
}

#[test]
fn without_dedup_the_same_run_applies_retries_twice() {
    let run = scenario(false);
    let doubled: u64 = run
        .expected
        .iter()
        .map(|(account, n)| {
            run.balances
                .get(account)
                .copied()
                .unwrap_or(0)
                .saturating_sub(*n)
        })
        .sum();
    // Each retry the stream stored is applied a second time, and nothing else is: hand-offs
    // and crash replays are exact without dedup too; only the retries need it.
    assert!(run.producer.stored_retries > 100);
    assert_eq!(
        doubled, run.producer.stored_retries as u64,
        "effects applied twice"
    );
}
