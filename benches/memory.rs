//! Memory per remembered ID in the in-memory tier, counted by the allocator, against Redis'
//! `used_memory` for the same IDs set with `SET id 1 NX EX ttl`, in the same run.
//!
//! `cargo bench --bench memory`

mod common;

use common::id;
use dedupstore::Store;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts live heap bytes allocated through Rust (RocksDB's C++ allocations are not counted:
/// they are the disk tier's memtables and caches, not the in-memory tier).
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator and only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const IDS: u64 = 2_000_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..IDS).map(id).collect();
    let before = LIVE.load(Ordering::Relaxed);
    let store = Store::builder(dir.path()).capacity(IDS).open().unwrap();
    for chunk in ids.chunks(10_000) {
        store.check_and_mark_batch(chunk).unwrap();
    }
    let after = LIVE.load(Ordering::Relaxed);
    let stats = store.stats();
    assert_eq!(stats.hot_ids, IDS);
    let counted = (after - before) as f64 / IDS as f64;
    let reported = stats.hot_bytes as f64 / IDS as f64;
    println!("memory: {IDS} IDs (36 bytes each) in the in-memory tier");
    println!(
        "memory: dedupstore {counted:.1} bytes per ID (allocator, whole store), {reported:.1} (Stats::hot_bytes)"
    );

    let redis_dir = tempfile::tempdir().unwrap();
    let Some(redis) = common::redis(redis_dir.path()) else {
        return;
    };
    let mut conn = redis.connect().unwrap();
    let used = |conn: &mut redis::Connection| -> u64 {
        let info: String = redis::cmd("INFO").arg("memory").query(conn).unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap()
    };
    let base = used(&mut conn);
    for chunk in ids.chunks(10_000) {
        common::set_nx_ex(chunk).query::<()>(&mut conn).unwrap();
    }
    let redis_per_id = (used(&mut conn) - base) as f64 / IDS as f64;
    println!("memory: redis {redis_per_id:.1} bytes per ID (used_memory)");
    println!(
        "memory: redis / dedupstore = {:.1}x",
        redis_per_id / counted
    );
}
