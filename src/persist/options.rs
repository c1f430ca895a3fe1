//! RocksDB options, sized for the retention window from the `capacity` hint.

use super::generations::PER_WINDOW;
use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, DBRecoveryMode, Options};

const MIB: u64 = 1 << 20;
/// A memtable entry of a mark: 16 bytes of key, 8 of value, the rest skiplist and bookkeeping.
const MEMTABLE_BYTES_PER_MARK: u64 = 64;
/// Filter bits per mark (ribbon, with the false-positive rate of a 16-bit Bloom filter, about
/// 0.05%): a lookup of a never-seen ID probes every live generation's filters, and each false
/// positive costs a data-block read.
const FILTER_BITS_PER_MARK: f64 = 16.0;

/// Sizes derived from the expected IDs per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// Memtable size of a generation: half of the marks a generation receives, 4..=64 MiB.
    pub write_buffer: u64,
    /// Block cache shared by all column families: 10 bytes per expected ID, 8 MiB..=1 GiB.
    pub block_cache: u64,
}

impl Sizing {
    pub(crate) fn for_capacity(capacity: u64) -> Self {
        let per_generation = capacity.div_ceil(PER_WINDOW);
        let write_buffer = (per_generation * MEMTABLE_BYTES_PER_MARK / 2).clamp(4 * MIB, 64 * MIB);
        let block_cache = capacity.saturating_mul(10).clamp(8 * MIB, 1024 * MIB);
        Self {
            write_buffer,
            block_cache,
        }
    }
}

/// Options of the database as a whole (and of its small column families).
pub(crate) fn database(sizing: Sizing) -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.create_missing_column_families(true);
    o.set_compression_type(DBCompressionType::None);
    // Old generations stop receiving writes; this much WAL makes RocksDB flush them, so the
    // WAL never holds more than a few memtables' worth.
    o.set_max_total_wal_size(4 * sizing.write_buffer);
    // Disk stays bounded by the window only if RocksDB's own files are bounded too: its info
    // log (at most 4 files of 1 MiB) and its manifest (rewritten once past 16 MiB).
    o.set_keep_log_file_num(4);
    o.set_max_log_file_size(in_memory(MIB));
    o.set_max_manifest_file_size(in_memory(16 * MIB));
    // A crash leaves at most a torn record at the end of the write-ahead log, which recovery
    // drops (it was never acknowledged). Damage anywhere else is media corruption: reported, not
    // silently cut off with every acknowledged write after it, as point-in-time recovery would.
    o.set_wal_recovery_mode(DBRecoveryMode::TolerateCorruptedTailRecords);
    // Flushes are atomic across column families: each flush's MANIFEST record then carries the
    // minimum log number of all of them, which the open's check for lost MANIFEST records relies
    // on (`integrity`). Marks and table rows written together also reach table files together.
    o.set_atomic_flush(true);
    o
}

/// Options of a generation's column family: point lookups of random 16-byte keys, each written
/// once and never updated.
pub(crate) fn generation(sizing: Sizing, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_ribbon_filter(FILTER_BITS_PER_MARK);
    table.set_whole_key_filtering(true);
    table.set_optimize_filters_for_memory(true);
    // Filters and indexes stay pinned in the table readers, outside the cache: a miss never
    // waits for a filter block to be read.
    table.set_cache_index_and_filter_blocks(false);

    let mut o = Options::default();
    o.set_block_based_table_factory(&table);
    o.set_compression_type(DBCompressionType::None);
    o.set_write_buffer_size(in_memory(sizing.write_buffer));
    o.set_target_file_size_base(sizing.write_buffer);
    o.set_max_bytes_for_level_base(4 * sizing.write_buffer);
    o.set_memtable_whole_key_filtering(true);
    o.set_memtable_prefix_bloom_ratio(0.1);
    o
}

/// A byte count as RocksDB's `size_t` settings take it (all sizes here are far below 4 GiB).
pub(crate) fn in_memory(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

/// Options of the column families of the consumer's own data (tables, offsets, outbox) and of
/// `meta`: point lookups by key, with Bloom filters.
pub(crate) fn table(sizing: Sizing, cache: &Cache) -> Options {
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(cache);
    table.set_bloom_filter(10.0, false);
    let mut o = Options::default();
    o.set_block_based_table_factory(&table);
    o.set_compression_type(DBCompressionType::None);
    o.set_write_buffer_size(in_memory(sizing.write_buffer));
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_capacity_within_bounds() {
        let small = Sizing::for_capacity(1_000);
        assert_eq!(small.write_buffer, 4 << 20);
        assert_eq!(small.block_cache, 8 << 20);
        let big = Sizing::for_capacity(80_000_000);
        assert_eq!(big.write_buffer, 64 << 20);
        assert_eq!(big.block_cache, 800_000_000);
        let mid = Sizing::for_capacity(4_000_000);
        assert_eq!(mid.write_buffer, 16_000_000);
    }
}
