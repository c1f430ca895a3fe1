//! End to end against a real broker: consumer processes of `examples/jetstream_consumer.rs`
//! consume a partitioned JetStream stream (Debian's `nats-server`, started here on 127.0.0.1
//! with a temporary port and store) while a producer retries messages inside and after the
//! broker's duplicate window. Partitions move between the processes through hand-offs and
//! through crashes: SIGKILLs at random moments (then restored from checkpoints by another
//! process, or reopened from the local copy by a restarted one), and an abort between a commit
//! and its ack. At the end every effect is applied exactly once and every outbox event is
//! present exactly once after downstream dedup by (partition, sequence). With dedup switched
//! off the same run applies the late retries twice: the test sees the failure it guards against.

#[path = "common/consumer.rs"]
mod consumer;
#[path = "common/nats.rs"]
mod nats;
#[path = "common/orders.rs"]
mod orders;

use async_nats::jetstream::{self, stream};
use consumer::Instance;
use nats::NatsServer;
use orders::{Sent, account, id, partition_of};
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// The broker's duplicate window: retries later than this are stored again.
const BROKER_WINDOW: Duration = Duration::from_secs(1);

/// The producer: publishes orders and retries, and remembers what the stream holds.
struct Producer {
    runtime: tokio::runtime::Runtime,
    js: jetstream::Context,
    sent: Sent,
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
            sent: Sent::default(),
        }
    }

    /// Publishes message `i`; returns whether the broker stored it (rather than dropping it as
    /// a duplicate within its window).
    fn send(&mut self, i: u64, retry: bool) -> bool {
        let (id, account) = (id(i), account(i));
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
            self.sent.stored(i, p, ack.sequence, retry);
        }
        !ack.duplicate
    }

    /// Publishes messages `range`, each tenth one retried at once (inside the broker's window,
    /// so the broker drops the retry).
    fn publish(&mut self, range: std::ops::Range<u64>) {
        for i in range {
            assert!(self.send(i, false), "order-{i} is new to the broker");
            if i % 10 == 0 {
                assert!(
                    !self.send(i, true),
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
            assert!(
                self.send(i, true),
                "a retry past the broker's window is stored"
            );
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

fn spawn(
    server: &NatsServer,
    root: &Path,
    checkpoints: &Path,
    name: &str,
    dedup: bool,
    crash_after: Option<u64>,
) -> Instance {
    let flags = vec![
        ("server", server.url.clone().into()),
        ("instance", name.into()),
        ("root", root.into()),
        ("checkpoints", checkpoints.into()),
    ];
    let args = consumer::arguments(flags, dedup, crash_after);
    Instance::spawn("jetstream_consumer", name, args)
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
    let instance = |root: &str, name: &str, crash_after: Option<u64>| {
        spawn(
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

    let mut a = instance("a", "a", None);
    let mut b = instance("b", "b", None);
    for p in 0..orders::PARTITIONS {
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
    for p in 1..orders::PARTITIONS {
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
    let mut c = instance("c", "c", Some(25));
    c.ask("assign 3", "assigned 3").unwrap();
    producer.publish(1600..2000);
    assert!(!c.wait_for_exit().success(), "c aborted");
    let mut c = instance("c", "c-restarted", None);
    let answer = c.ask("assign 3", "assigned 3").unwrap();
    assert!(answer.contains("LocalCopy"), "{answer}");
    // More SIGKILLs at random moments, each followed by a restart on c's own directory.
    for round in 0..3u64 {
        producer.publish(2000 + round * 100..2100 + round * 100);
        std::thread::sleep(Duration::from_millis(fastrand::u64(0..200)));
        c.kill();
        c = instance("c", &format!("c-{round}"), None);
        let answer = c.ask("assign 3", "assigned 3").unwrap();
        assert!(answer.contains("LocalCopy"), "{answer}");
    }
    producer.publish(2300..2400);
    producer.retry_late(1200..2400, 6);

    orders::wait_for_the_end(&producer.sent, &mut [&mut a, &mut c]);
    a.quit();
    c.quit();

    let (balances, pending_events) = orders::final_state(&checkpoints, dirs.path());
    Run {
        _server: server,
        expected: producer.sent.expected(),
        balances,
        producer,
        pending_events,
    }
}

#[test]
fn every_effect_and_event_exactly_once_across_hand_offs_and_crashes() {
    let run = scenario(true);
    let sent = &run.producer.sent;
    assert!(sent.stored_retries > 100, "the stream holds retries");
    assert_eq!(
        run.balances, run.expected,
        "every order applied exactly once"
    );
    assert_eq!(run.pending_events, 0, "the outboxes were relayed");
    let events = run.producer.events();
    let deduped = orders::check_events(&events, sent);
    eprintln!(
        "{} orders, {} stored retries, {} events published ({deduped} after downstream dedup)",
        sent.ids.len(),
        sent.stored_retries,
        events.len(),
    );
}

#[test]
fn without_dedup_the_same_run_applies_retries_twice() {
    let run = scenario(false);
    // Each retry the stream stored is applied a second time, and nothing else is: hand-offs
    // and crash replays are exact without dedup too; only the retries need it.
    let stored = run.producer.sent.stored_retries as u64;
    assert!(stored > 100);
    assert_eq!(
        orders::applied_twice(&run.expected, &run.balances),
        stored,
        "effects applied twice"
    );
}
