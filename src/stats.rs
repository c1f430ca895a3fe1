//! [`Stats`]: what a store reports for monitoring.

/// A snapshot of a store's counters and sizes. Made by [`Store::stats`](crate::Store::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// IDs held by the in-memory tier.
    pub hot_ids: u64,
    /// Heap bytes held by the in-memory tier.
    pub hot_bytes: u64,
    /// The store's memory budget ([`StoreBuilder::memory_budget`](crate::StoreBuilder::memory_budget))
    /// plus its namespaces' ([`NamespaceBuilder::memory_budget`](crate::NamespaceBuilder::memory_budget)),
    /// which bounds `hot_bytes + block_cache_bytes`.
    pub memory_budget: u64,
    /// Bytes in RocksDB's block cache: data blocks, filters and indexes, and the memtables,
    /// which are charged to it.
    pub block_cache_bytes: u64,
    /// Bytes of RocksDB's memtables, all column families together (part of
    /// `block_cache_bytes`).
    pub memtable_bytes: u64,
    /// Bytes of the filters the store keeps of its generations' marks, in memory and outside
    /// the memory budget: 1.5 to 3 bytes per mark on disk (`docs/operations.md`).
    pub filter_bytes: u64,
    /// Durable marks pushed out of the in-memory tier by its memory budget (dead ones waiting
    /// for their slot to expire included).
    pub hot_evictions: u64,
    /// Claims in progress ([`Store::claim`](crate::Store::claim)), leases that ran out and were
    /// not looked at since included.
    pub claims_held: u64,
    /// Checks the in-memory tier could not answer alone (after a restart, or over budget), so
    /// that went to disk.
    pub cold_lookups: u64,
    /// Reads of marks from generations on disk since open: one per generation that a cold
    /// lookup asked and whose filter did not rule it out. Lookups of IDs never marked are
    /// mostly ruled out; a generation without a filter (after a crash, see
    /// `docs/operations.md`) is read on each.
    pub generation_reads: u64,
    /// Namespaces ([`Store::namespace`](crate::Store::namespace)). Every other figure counts them
    /// in: `memory_budget` includes their in-memory budgets, `hot_*` their in-memory tiers,
    /// `generations` theirs.
    pub namespaces: usize,
    /// Producers whose sequence high-water mark is held ([`Store::accept`](crate::Store::accept)),
    /// idle ones not yet swept included. Each takes about 100 bytes of memory plus its name,
    /// outside the memory budget; the producer idle time bounds how many there are.
    pub producers: usize,
    /// Generations (column families of marks) on disk, dead ones not yet dropped included.
    pub generations: usize,
    /// Drops of dead generations that failed since open. None fails a write; each is retried
    /// at the next rollover (meanwhile the dead generation takes disk).
    pub failed_generation_drops: u64,
    /// Writes of transactions: groups merged by the committer, and uncontended commits written
    /// by their caller (a group of one).
    pub commit_groups: u64,
    /// Transactions written (or that failed to write) by those writes.
    pub committed_transactions: u64,
    /// The most transactions merged into one write. The mean is
    /// `committed_transactions / commit_groups`.
    pub largest_commit_group: u64,
}
