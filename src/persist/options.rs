//! RocksDB options, sized for the retention window from the `capacity` hint and held within
//! RocksDB's share of the memory budget.

use super::generations::PER_WINDOW;
use crate::settings::SharedRocksDb;
use rocksdb::{
    BlockBasedIndexType, BlockBasedOptions, Cache, DBCompactionStyle, DBCompressionType,
    DBRecoveryMode, MergeOperands, Options, WriteBufferManager,
};

const MIB: u64 = 1 << 20;
/// A memtable entry of a mark: 16 bytes of key, 8 of value, the rest skiplist and bookkeeping.
const MEMTABLE_BYTES_PER_MARK: u64 = 64;
/// RocksDB's filter bits per mark (Bloom, about 1% false positives). The store's own filters
/// (`persist::filter`) rule out nearly every lookup of a mark a generation does not hold, so
/// RocksDB's see only their false positives and the lookups of marks that are there, where
/// they pick the table file that holds it. A Bloom filter costs a third of the CPU of a ribbon
/// filter to build in flushes and compactions, which share this machine's cores with callers.
const FILTER_BITS_PER_MARK: f64 = 10.0;
/// The size of one partition of a generation's filters and indexes.
const METADATA_BLOCK: usize = 4 << 10;
/// The most table files RocksDB keeps open.
const MAX_OPEN_FILES: i32 = 512;
/// Readahead of each input file of a compaction.
const COMPACTION_READAHEAD: usize = 256 << 10;
/// The memtable arena block of a consumer table's column family.
const TABLE_ARENA_BLOCK: usize = 4 << 10;

/// Sizes derived from the expected IDs per window and RocksDB's memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sizing {
    /// Memtable size of one column family: half of the marks a generation receives, 1..=8 MiB,
    /// and at most half of `write_buffers`. Not more: an insert walks the memtable's skiplist,
    /// and past a few MiB of random keys every level of the walk is a cache miss (with
    /// `capacity(20_000_000)`, 64 MiB memtables marked 0.27-0.32M fresh IDs/s where 8 MiB ones
    /// mark 0.62-0.75M, `dedupstore bench growth --capacity 20M --sizes 1M,3M`).
    pub write_buffer: u64,
    /// Memtables of all column families together: half of `block_cache`. Past it RocksDB
    /// flushes (without stalling writes, see [`Sizing::memory`]).
    pub write_buffers: u64,
    /// The block cache shared by all column families, holding data blocks, filters and indexes,
    /// with the memtables charged to it: RocksDB's whole memory budget.
    pub block_cache: u64,
    /// Whether level-0 files' filters and indexes are pinned in the cache (not when the cache
    /// is shared with other stores: see `in_cache`).
    pub pin_level0: bool,
}

impl Sizing {
    pub(crate) fn new(capacity: u64, rocksdb_budget: usize) -> Self {
        let block_cache = rocksdb_budget as u64;
        let write_buffers = block_cache / 2;
        let per_generation = capacity.div_ceil(PER_WINDOW);
        let write_buffer = (per_generation * MEMTABLE_BYTES_PER_MARK / 2)
            .clamp(MIB, 8 * MIB)
            .min(write_buffers / 2);
        Self {
            write_buffer,
            write_buffers,
            block_cache,
            pin_level0: true,
        }
    }

    /// The block cache, and the write buffer manager that charges memtables to it.
    pub(crate) fn memory(self) -> (Cache, WriteBufferManager) {
        let cache = Cache::new_lru_cache(in_memory(self.block_cache));
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            in_memory(self.write_buffers),
            // Never stall: the memtables of many tables, just flushed, can hold more than the
            // limit between them (an arena block each), and a stall would then never end.
            false,
            cache.clone(),
        );
        (cache, write_buffers)
    }
}

/// A block cache of `budget` bytes and a write buffer manager charging memtables to it, for
/// several stores to share (as a store's own are sized from its budget).
pub(crate) fn shared_rocksdb(budget: usize) -> SharedRocksDb {
    let (cache, write_buffers) = Sizing::new(1, budget).memory();
    SharedRocksDb {
        cache,
        write_buffers,
    }
}

/// Options of the database as a whole (and of its small column families).
pub(crate) fn database(sizing: Sizing, write_buffers: &WriteBufferManager) -> Options {
    let mut o = Options::default();
    // Every column family's memtables count against one figure, charged to the block cache.
    o.set_write_buffer_manager(write_buffers);
    // An open table file's reader costs memory outside the block cache (about 8 KiB, its index
    // and filter being in the cache). Many tables flushed often make many small files: keeping
    // at most this many open bounds that memory, and file descriptors.
    o.set_max_open_files(MAX_OPEN_FILES);
    // Compactions read their inputs with this much readahead each, outside the cache (RocksDB's
    // default, 2 MiB, costs tens of MiB when many small files merge).
    o.set_compaction_readahead_size(COMPACTION_READAHEAD);
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
    table.set_bloom_filter(FILTER_BITS_PER_MARK, false);
    table.set_whole_key_filtering(true);
    table.set_optimize_filters_for_memory(true);
    // Partitioned, so that a filter or index evicted from the cache (a window larger than the
    // budget's room for filters, 2 bytes an ID) is read back one 4 KiB partition at a time, the
    // one a lookup needs, not whole: a table file's filter is a few hundred KiB, and reading and
    // checksumming whole filters for single lookups took a third of the time of fresh marks at
    // 20M IDs. The top level of each (a few KiB a file) is pinned in the cache, shared or not.
    table.set_index_type(BlockBasedIndexType::TwoLevelIndexSearch);
    table.set_partition_filters(true);
    table.set_metadata_block_size(METADATA_BLOCK);
    table.set_pin_top_level_index_and_filter(true);
    in_cache(&mut table, sizing.pin_level0);

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

/// Filters and indexes live in the block cache, charged to the memory budget, rather than pinned
/// in table readers outside any limit; at high priority, so data blocks are evicted first, and
/// pinned for level-0 files, the newest and most read, if `pin_level0`. Pinned blocks cannot be
/// evicted: in a cache shared by many stores (a `Partitions`), their level-0 files together
/// would hold more than the cache, so there nothing is pinned.
fn in_cache(table: &mut BlockBasedOptions, pin_level0: bool) {
    table.set_cache_index_and_filter_blocks(true);
    table.set_cache_index_and_filter_blocks_with_high_priority(true);
    table.set_pin_l0_filter_and_index_blocks_in_cache(pin_level0);
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
    in_cache(&mut table, sizing.pin_level0);
    let mut o = Options::default();
    o.set_block_based_table_factory(&table);
    o.set_compression_type(DBCompressionType::None);
    o.set_write_buffer_size(in_memory(sizing.write_buffer));
    // Each table written since the last flush holds at least one arena block: small blocks keep
    // that floor well below the memtables' share when there are many tables.
    o.set_arena_block_size(TABLE_ARENA_BLOCK);
    // Universal compaction merges small flushed files whatever their keys: leveled compaction
    // would move the files of a table written in key order down as they are, one per flush, and
    // their count (and the memory each costs) would grow without end.
    o.set_compaction_style(DBCompactionStyle::Universal);
    o
}

/// Options of the `offsets` column family: as a table's, with offsets merged by their maximum,
/// so that [`set_offset`](crate::Transaction::set_offset) never lowers one, with no read.
pub(crate) fn offsets(sizing: Sizing, cache: &Cache) -> Options {
    let mut o = table(sizing, cache);
    merge_offsets(&mut o);
    o
}

/// Sets the offsets' merge operator. Every open that replays the write-ahead log needs it, the
/// read-only check included: without it, replay stops at the first merged offset.
pub(crate) fn merge_offsets(o: &mut Options) {
    o.set_merge_operator_associative(HIGHEST_OFFSET, highest_offset);
}

/// The name the offsets' merge operator is recorded under in RocksDB's files.
const HIGHEST_OFFSET: &str = "dedupstore.highest_offset";

/// The highest of the stored offset and the operands, all u64 big-endian; `None` (which RocksDB
/// reports as corruption) if any is not 8 bytes.
fn highest_offset(_key: &[u8], stored: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let operands: Vec<&[u8]> = operands.iter().collect();
    highest(stored, &operands)
}

fn highest(stored: Option<&[u8]>, operands: &[&[u8]]) -> Option<Vec<u8>> {
    let mut top: Option<u64> = None;
    for &bytes in stored.iter().chain(operands) {
        let offset = u64::from_be_bytes(bytes.try_into().ok()?);
        top = Some(top.map_or(offset, |t| t.max(offset)));
    }
    top.map(|t| t.to_be_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_capacity_within_the_budget() {
        let small = Sizing::new(1_000, 16 << 20);
        assert_eq!(small.write_buffer, 1 << 20);
        assert_eq!(small.write_buffers, 8 << 20);
        assert_eq!(small.block_cache, 16 << 20);
        let big = Sizing::new(80_000_000, 1 << 30);
        assert_eq!(big.write_buffer, 8 << 20);
        let mid = Sizing::new(1_000_000, 1 << 30);
        assert_eq!(mid.write_buffer, 4_000_000);
        let capped = Sizing::new(80_000_000, 8 << 20);
        assert_eq!(capped.write_buffer, 2 << 20, "half of the memtables' share");
    }

    #[test]
    fn offsets_merge_to_their_highest() {
        let be = |v: u64| v.to_be_bytes().to_vec();
        let merge = |stored: Option<u64>, operands: &[u64]| {
            let stored = stored.map(be);
            let operands: Vec<Vec<u8>> = operands.iter().map(|&v| be(v)).collect();
            let slices: Vec<&[u8]> = operands.iter().map(Vec::as_slice).collect();
            highest(stored.as_deref(), &slices)
        };
        assert_eq!(merge(Some(7), &[3, 9, 4]), Some(be(9)));
        assert_eq!(merge(Some(12), &[3]), Some(be(12)));
        assert_eq!(merge(None, &[5, 2]), Some(be(5)));
        assert_eq!(highest(Some(&[1, 2, 3][..]), &[]), None, "a damaged value");
    }
}
