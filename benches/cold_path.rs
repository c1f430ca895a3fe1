//! The cold path: `contains` of never-seen IDs against a store holding 3,000,000 IDs on disk and
//! none in memory (just reopened), against raw RocksDB `get`s of the same keys on the same files,
//! with the same filters, indexes and cache, in the same run. Filters should answer nearly every
//! miss without reading a data block.
//!
//! `cargo bench --bench cold_path`

mod common;

use common::id;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dedupstore::Store;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DB, Options};
use std::hint::black_box;

const IDS_ON_DISK: u64 = 3_000_000;

fn contains_miss(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::builder(dir.path())
            .capacity(IDS_ON_DISK)
            .open()
            .unwrap();
        let ids: Vec<String> = (0..IDS_ON_DISK).map(id).collect();
        for chunk in ids.chunks(10_000) {
            store.check_and_mark_batch(chunk).unwrap();
        }
        store.flush().unwrap();
    }
    let store = Store::builder(dir.path())
        .capacity(IDS_ON_DISK)
        .open()
        .unwrap();
    let generations = store.stats().generations;

    // The same files, opened read-only by plain RocksDB with the same table options: filters
    // (read by any built-in filter policy) and indexes in a block cache of the size the store
    // gives RocksDB (2/7 of its memory budget, docs/design.md).
    let names = DB::list_cf(&Options::default(), dir.path()).unwrap();
    let cache_bytes = usize::try_from(store.stats().memory_budget / 7 * 2).unwrap();
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&Cache::new_lru_cache(cache_bytes));
    table.set_bloom_filter(10.0, false);
    table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(4 << 10);
    table.set_pin_top_level_index_and_filter(true);
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    let mut options = Options::default();
    options.set_block_based_table_factory(&table);
    let descriptors = names
        .iter()
        .map(|n| ColumnFamilyDescriptor::new(n, options.clone()));
    let raw = DB::open_cf_descriptors_read_only(&options, dir.path(), descriptors, false).unwrap();
    let marks: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("marks-"))
        .collect();
    eprintln!("cold_path: {IDS_ON_DISK} IDs in {generations} generation(s): {marks:?}");

    let mut group = c.benchmark_group("contains_miss_on_disk");
    group.throughput(Throughput::Elements(1));
    let mut next = IDS_ON_DISK;
    group.bench_function("dedupstore", |b| {
        b.iter(|| {
            next += 1;
            black_box(store.contains(id(next)).unwrap())
        });
    });
    let cfs: Vec<_> = marks.iter().map(|n| raw.cf_handle(n).unwrap()).collect();
    group.bench_function("rocksdb_get", |b| {
        b.iter(|| {
            next += 1;
            let key = xxhash_rust::xxh3::xxh3_128(id(next).as_bytes()).to_be_bytes();
            black_box(
                cfs.iter()
                    .any(|cf| raw.get_pinned_cf(cf, key).unwrap().is_some()),
            )
        });
    });
    group.finish();
    assert!(store.stats().cold_lookups > 0, "the misses went to disk");
}

criterion_group!(benches, contains_miss);
criterion_main!(benches);
