//! Many partitions in one process: 64 stores of a `Partitions` under its default budget (256
//! MiB), assigned, then each filled with 100,000 IDs. Prints the time to assign them, the parts
//! of the budget in use, and how much the process's resident memory grew, against the budget:
//! what the stores cost beyond what the budget counts.
//!
//! `cargo bench --bench partitions`

use dedupstore::Partitions;
use std::time::{Duration, Instant};

const PARTITIONS: u32 = 64;
const IDS: u64 = 100_000;

/// The process's resident memory, in MiB (Linux).
fn resident_mib() -> f64 {
    let kib: u64 = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    kib as f64 / 1024.0
}

fn main() {
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let partitions = Partitions::builder(dir.path())
        .capacity(IDS)
        .open()
        .unwrap();
    let before = resident_mib();
    let started = Instant::now();
    let stores: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            partitions.assign("orders", p).unwrap();
            partitions
                .wait("orders", p, Duration::from_secs(60))
                .unwrap()
                .unwrap()
        })
        .collect();
    let assigned = started.elapsed();
    let opened = resident_mib() - before;
    let started = Instant::now();
    for p in &stores {
        for chunk in 0..IDS / 10_000 {
            let ids: Vec<String> = (chunk * 10_000..(chunk + 1) * 10_000)
                .map(|i| format!("{}-{i:012}", p.partition()))
                .collect();
            p.store().check_and_mark_batch(&ids).unwrap();
        }
    }
    let filled = started.elapsed();
    let stats = partitions.stats();
    let mib = |b: u64| b as f64 / f64::from(1 << 20);
    println!(
        "{PARTITIONS} partitions assigned in {:.3} s ({:.1} ms each); resident memory +{opened:.1} MiB",
        assigned.as_secs_f64(),
        assigned.as_secs_f64() * 1000.0 / f64::from(PARTITIONS),
    );
    let grown = resident_mib() - before;
    println!(
        "filled with {IDS} IDs each in {:.1} s; budget {:.0} MiB: in-memory tiers {:.1} MiB, \
         block cache {:.1} MiB; resident memory +{grown:.1} MiB, {:.2} MiB per partition beyond \
         the parts the budget counts",
        filled.as_secs_f64(),
        mib(stats.memory_budget),
        mib(stats.hot_bytes),
        mib(stats.block_cache_bytes),
        (grown - mib(stats.hot_bytes) - mib(stats.block_cache_bytes)) / f64::from(PARTITIONS)
    );
}
