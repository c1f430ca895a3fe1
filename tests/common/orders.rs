//! What the end-to-end tests share: the orders a producer sends (an ID, an account, the
//! account's partition), and the checks of what the consumers made of them: every balance from
//! the partitions' final checkpoints, and the events after downstream dedup by (partition,
//! sequence). Included with `#[path]` by the tests that use it.

#![allow(dead_code)] // each test uses part of it

use crate::consumer::Instance;
use dedupstore::Store;
use dedupstore::checkpoint::Checkpoints;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};
use xxhash_rust::xxh3::xxh3_64;

pub const PARTITIONS: u32 = 4;
pub const ACCOUNTS: u64 = 40;
/// The stream (topic) the consumers store their offsets under.
pub const STREAM: &str = "orders";

pub fn id(i: u64) -> String {
    format!("order-{i}")
}

pub fn account(i: u64) -> String {
    format!("acct-{}", i % ACCOUNTS)
}

/// The partition a producer sends an account's orders to.
pub fn partition_of(account: &str) -> u32 {
    (xxh3_64(account.as_bytes()) % u64::from(PARTITIONS)) as u32
}

/// What the broker holds: every distinct order (ID to account), the last offset of each
/// partition, and how many retries it stored as messages of their own.
#[derive(Default)]
pub struct Sent {
    pub ids: BTreeMap<String, String>,
    pub last_offset: HashMap<u32, u64>,
    pub stored_retries: usize,
}

impl Sent {
    /// Records a message the broker stored at `offset` of partition `p`.
    pub fn stored(&mut self, i: u64, p: u32, offset: u64, retry: bool) {
        let last = self.last_offset.entry(p).or_default();
        *last = (*last).max(offset);
        self.ids.insert(id(i), account(i));
        if retry {
            self.stored_retries += 1;
        }
    }

    /// Each account's balance if every order is applied exactly once.
    pub fn expected(&self) -> HashMap<String, u64> {
        let mut expected = HashMap::new();
        for account in self.ids.values() {
            *expected.entry(account.clone()).or_default() += 1;
        }
        expected
    }
}

/// Waits until the instances' stored offsets reach the end of every partition.
pub fn wait_for_the_end(sent: &Sent, instances: &mut [&mut Instance]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let mut offsets = HashMap::new();
        for instance in instances.iter_mut() {
            offsets.extend(instance.status());
        }
        let behind: Vec<_> = sent
            .last_offset
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

/// The balances and pending outbox events of every partition's newest checkpoint, restored
/// under `scratch`.
pub fn final_state(checkpoints: &Path, scratch: &Path) -> (HashMap<String, u64>, usize) {
    let mut balances = HashMap::new();
    let mut pending = 0;
    for p in 0..PARTITIONS {
        let destination = Checkpoints::local(checkpoints)
            .unwrap()
            .at(&format!("{STREAM}/{p}"))
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

/// Checks the events the consumers published, as (partition, sequence, payload): a replay
/// re-emits an event under the sequence number it had with the same payload, and after
/// dedup by (partition, sequence) each order has exactly one. Returns how many are left after
/// dedup.
pub fn check_events(events: &[(u32, u64, String)], sent: &Sent) -> usize {
    let mut by_position: HashMap<(u32, u64), &str> = HashMap::new();
    for (p, seq, payload) in events {
        let earlier = by_position.entry((*p, *seq)).or_insert(payload);
        assert_eq!(
            *earlier, payload,
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
        sent.ids.keys().map(String::as_str).collect::<Vec<_>>(),
        "one event per order"
    );
    by_position.len()
}

/// How many effects were applied more than once: the balances' excess over `expected`.
pub fn applied_twice(expected: &HashMap<String, u64>, balances: &HashMap<String, u64>) -> u64 {
    expected
        .iter()
        .map(|(account, n)| {
            balances
                .get(account)
                .copied()
                .unwrap_or(0)
                .saturating_sub(*n)
        })
        .sum()
}
