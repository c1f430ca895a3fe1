//! One figure bounds the store's memory: with 100 consumer tables written at once and ten times
//! more (then fewer) IDs than the `capacity` hint said, the process's peak resident memory grows
//! by no more than `memory_budget` plus a fixed allowance for what the budget does not cover, and
//! `Stats` accounts for each part within the budget.
//!
//! It runs alone in its own process (one test in this file), so the peak is the store's.

#![cfg(target_os = "linux")]

use dedupstore::{CommitOutcome, Stats, Store};

const LIMIT: usize = 32 << 20;
/// What the budget does not cover (docs/operations.md): about 12 MiB for threads, RocksDB's
/// database-wide structures and the buffers of flushes and compactions in progress, about 100 KiB
/// per column family (100 tables, a few generations and the store's own four) and up to 512 open
/// table files of about 16 KiB each.
const ALLOWANCE: u64 = (12 << 20) + 120 * (100 << 10) + 512 * (16 << 10);
const TABLES: u64 = 100;
const IDS: u64 = 1_000_000;
const ROW: [u8; 200] = [7; 200];

/// The process's peak resident memory, in bytes.
fn peak_resident() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Marks `ids` IDs, each with a row in one of the tables, in transactions of 1,000, then checks
/// every 97th again; returns the stats.
fn fill(capacity: u64, ids: u64) -> Stats {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .capacity(capacity)
        .memory_budget(LIMIT)
        .open()
        .unwrap();
    for batch in 0..ids / 1_000 {
        let mut txn = store.transaction();
        for i in batch * 1_000..(batch + 1) * 1_000 {
            txn.mark(i.to_be_bytes()).unwrap();
            let table = format!("t{}", i % TABLES);
            txn.put(&table, i.to_be_bytes(), ROW).unwrap();
        }
        assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    }
    // Checks of IDs the in-memory tier evicted go to disk: filters and blocks come into the
    // cache.
    let old: Vec<[u8; 8]> = (0..ids).step_by(97).map(u64::to_be_bytes).collect();
    assert!(store.contains_batch(&old).unwrap().iter().all(|&c| c));
    let stats = store.stats();
    assert_eq!(stats.memory_budget, LIMIT as u64);
    assert!(
        stats.hot_bytes + stats.block_cache_bytes <= stats.memory_budget,
        "the parts add up to more than the budget: {stats:?}"
    );
    assert!(stats.memtable_bytes <= stats.block_cache_bytes);
    stats
}

#[test]
fn a_hundred_tables_and_a_capacity_hint_ten_times_off_stay_within_the_budget() {
    let before = peak_resident();
    // Ten times more IDs than the hint: the in-memory tier evicts, checks go to disk.
    let under = fill(IDS / 10, IDS);
    assert!(
        under.hot_evictions > 0 && under.cold_lookups > 0,
        "{under:?}"
    );
    // Ten times fewer: nothing is sized for the hint beyond the budget.
    let over = fill(IDS * 10, IDS / 10);
    let grown = peak_resident().saturating_sub(before);
    eprintln!(
        "peak resident memory grew by {} MiB for a budget of {} MiB; {under:?}; {over:?}",
        grown >> 20,
        LIMIT >> 20
    );
    assert!(
        grown <= LIMIT as u64 + ALLOWANCE,
        "peak resident memory grew by {grown} bytes, over the budget of {LIMIT} plus {ALLOWANCE}"
    );
}
