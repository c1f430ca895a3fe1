//! The generations' filters across reopens: after a clean close the saved filters answer misses
//! without reading RocksDB; a filter saved before later writes (a crash after them) is not
//! trusted; a sealed generation's filter survives a crash; a damaged saved filter is ignored and
//! costs no mark.

use super::Op;
use super::Strike;
use super::saved_filters;
use super::tests::{W, clock, open};
use crate::{Outcome, Store};

fn ids(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("id-{i}")).collect()
}

/// Drops `store` as a crash after its last write would leave it: its filters are not saved.
fn crash(store: Store) {
    store.engine().cold.fault.arm(Op::Save, 0, Strike::Before);
    drop(store);
}

/// Reads of generations that `contains_batch` of `ids` and `contains` of each cost.
fn reads_of(store: &Store, ids: &[String]) -> (Vec<bool>, u64) {
    let before = store.stats().generation_reads;
    let mut found = store.contains_batch(ids).unwrap();
    found.extend(ids.iter().map(|id| store.contains(id).unwrap()));
    (found, store.stats().generation_reads - before)
}

#[test]
fn after_a_clean_close_saved_filters_answer_misses() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    let marked = ids(0..20_000);
    let outcomes = store.check_and_mark_batch(&marked).unwrap();
    assert!(outcomes.iter().all(|o| *o == Outcome::New));
    assert!(store.stats().filter_bytes > 20_000);
    drop(store);

    let store = open(dir.path(), &clock);
    let (found, reads) = reads_of(&store, &ids(100_000..102_000));
    assert!(found.iter().all(|f| !f), "never marked");
    // 4,000 lookups, each ruled out but for under 0.5% false positives (one segment, not full).
    assert!(reads < 60, "{reads} reads for 4,000 misses");
    let (found, reads) = reads_of(&store, &marked[..1_000]);
    assert!(found.iter().all(|&f| f));
    assert!(reads >= 1_000, "the batch reads each of them: {reads}");
}

#[test]
fn a_filter_saved_before_later_writes_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    store.check_and_mark_batch(&ids(0..1_000)).unwrap();
    drop(store); // saves the newest generation's filter: 0..1,000

    let store = open(dir.path(), &clock);
    let later = ids(1_000..2_000);
    store.check_and_mark_batch(&later).unwrap();
    crash(store); // the saved filter lacks 1,000..2,000

    let store = open(dir.path(), &clock);
    let (found, _) = reads_of(&store, &later);
    assert!(found.iter().all(|&f| f), "a stale filter would hide them");
    let (found, reads) = reads_of(&store, &ids(50_000..51_000));
    assert!(found.iter().all(|f| !f));
    assert_eq!(
        reads, 2_000,
        "the generation has no filter: every lookup reads it"
    );
    assert_eq!(store.stats().filter_bytes, 0);
    // A clean close now saves none either: it has no filter holding all its marks.
    drop(store);
    let store = open(dir.path(), &clock);
    assert!(store.contains_batch(&later).unwrap().iter().all(|&f| f));
}

#[test]
fn sealed_filters_survive_a_crash_and_a_damaged_one_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock();
    let store = open(dir.path(), &clock);
    let old = ids(0..2_000);
    store.check_and_mark_batch(&old).unwrap();
    let sealed = store.engine().store_space.generations.read().live[0]
        .name
        .clone();
    clock.advance(W / 4);
    let new = ids(2_000..4_000);
    store.check_and_mark_batch(&new).unwrap(); // rolls over: the first generation is sealed
    assert_eq!(store.stats().generations, 2);
    crash(store);

    let store = open(dir.path(), &clock);
    let fresh = ids(10_000..11_000);
    let (found, reads) = reads_of(&store, &fresh);
    assert!(found.iter().all(|f| !f));
    // The newest generation lost its filter in the crash and is read each time; the sealed
    // one rules out nearly all.
    assert!((2_000..2_050).contains(&reads), "{reads}");
    assert!(store.contains_batch(&old).unwrap().iter().all(|&f| f));
    assert!(store.contains_batch(&new).unwrap().iter().all(|&f| f));

    // Damage the sealed filter's bits: the next open ignores it and reads the generation.
    let cold = &store.engine().cold;
    let meta = cold.cf(super::META_CF).unwrap();
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(&meta, saved_filters::chunk_key(&sealed, 0), b"damaged");
    cold.db.write(batch).unwrap();
    drop(meta);
    drop(store);
    let store = open(dir.path(), &clock);
    let (found, reads) = reads_of(&store, &old);
    assert!(found.iter().all(|&f| f), "no mark is lost with the filter");
    assert!(reads >= 4_000);
    let (_, reads) = reads_of(&store, &fresh);
    assert!(
        reads >= 2_000,
        "nothing rules them out in the sealed generation: {reads}"
    );
}
