//! The hot tier's index: an open-addressing table from fingerprint to the sequence number of its
//! entry, 4 bytes a bucket.
//!
//! A bucket packs an 8-bit tag (from fingerprint bits the probe does not use) and the low
//! [`SEQ_BITS`] bits of the entry's sequence number; zero is empty. Keys live in the entries, not
//! here: callers pass a closure that reads them back. Linear probing from a home bucket chosen by
//! multiply-shift (so the table can have any size, not only powers of two); deletion shifts later
//! members of the cluster back, so there are no tombstones and a miss stops at the first empty
//! bucket.

/// Bits of a sequence number kept in a bucket. A stripe holds fewer than 2^24 entries, so these
/// bits name one entry unambiguously.
pub(crate) const SEQ_BITS: u32 = 24;
pub(crate) const SEQ_MASK: u32 = (1 << SEQ_BITS) - 1;

const EMPTY: u32 = 0;
/// Grow when an insert would push the load above this.
const MAX_LOAD_PERCENT: usize = 85;
/// The load right after a resize (and of a table presized for an expected count).
const RESIZED_LOAD_PERCENT: usize = 70;
const MIN_BUCKETS: usize = 16;

pub(crate) struct Index {
    buckets: Box<[u32]>,
    len: usize,
}

impl Index {
    /// A table with room for `ids` entries at the resized load.
    pub(crate) fn with_capacity(ids: usize) -> Self {
        let n = buckets_for(ids);
        Self::filled(Vec::with_capacity(n), n)
    }

    /// [`with_capacity`](Self::with_capacity), or an error if the memory cannot be had.
    pub(crate) fn try_with_capacity(ids: usize) -> Result<Self, std::collections::TryReserveError> {
        let n = buckets_for(ids);
        let mut buckets = Vec::new();
        buckets.try_reserve_exact(n)?;
        Ok(Self::filled(buckets, n))
    }

    /// An empty table of `n` buckets, in `buckets` (already allocated). The buckets are
    /// written, not allocated zeroed: lookups read buckets before inserts write them, and a
    /// zeroed allocation's untouched pages would first be mapped read-only, then copied on the
    /// first write, with a TLB flush on every core the process runs on. (`black_box` keeps the
    /// compiler from turning the writes back into a zeroed allocation.)
    fn filled(mut buckets: Vec<u32>, n: usize) -> Self {
        buckets.resize(n, std::hint::black_box(EMPTY));
        Self {
            buckets: buckets.into_boxed_slice(),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.buckets.len() * size_of::<u32>()
    }

    /// Whether one more insert needs a larger table.
    pub(crate) fn needs_grow(&self) -> bool {
        (self.len + 1) * 100 > self.buckets.len() * MAX_LOAD_PERCENT
    }

    /// The size in bytes the table would have after growing for one more entry.
    pub(crate) fn grown_bytes(&self) -> usize {
        buckets_for(self.len + 1) * size_of::<u32>()
    }

    /// Whether the table is so empty that it should shrink (never below `floor` buckets).
    pub(crate) fn should_shrink(&self, floor: usize) -> bool {
        self.buckets.len() > floor && self.len * 100 < self.buckets.len() * 20
    }

    /// The bucket holding an entry tagged `tag` on `hash`'s probe sequence for which
    /// `is_match(seq_bits)` holds.
    pub(crate) fn find(
        &self,
        hash: u64,
        tag: u8,
        mut is_match: impl FnMut(u32) -> bool,
    ) -> Option<usize> {
        let mut i = self.home(hash);
        loop {
            let bucket = self.buckets[i];
            if bucket == EMPTY {
                return None;
            }
            if tag_of(bucket) == tag && is_match(bucket & SEQ_MASK) {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    /// The bucket where a probe for `hash` starts: read ahead of a lookup, so that its cache
    /// miss overlaps others (see `Stripe::home_bucket`).
    pub(crate) fn home_bucket(&self, hash: u64) -> u32 {
        self.buckets[self.home(hash)]
    }

    /// Whether `bucket` is empty; if not, the tag and sequence bits it holds.
    pub(crate) fn unpack(bucket: u32) -> Option<(u8, u32)> {
        (bucket != EMPTY).then(|| (tag_of(bucket), bucket & SEQ_MASK))
    }

    /// The sequence bits stored in bucket `pos`.
    pub(crate) fn seq_bits_at(&self, pos: usize) -> u32 {
        self.buckets[pos] & SEQ_MASK
    }

    /// Adds an entry. The caller has made room (see [`Self::needs_grow`]) and knows the entry is
    /// not in the table yet.
    pub(crate) fn insert(&mut self, hash: u64, tag: u8, seq: u64) {
        debug_assert!(tag != 0, "tag 0 would read as an empty bucket");
        debug_assert!(self.len < self.buckets.len(), "insert into a full table");
        let mut i = self.home(hash);
        while self.buckets[i] != EMPTY {
            i = self.next(i);
        }
        self.buckets[i] = (u32::from(tag) << SEQ_BITS) | (seq as u32 & SEQ_MASK);
        self.len += 1;
    }

    /// Empties bucket `pos`, moving later members of its cluster back so every remaining entry
    /// stays reachable from its home. `hash_of(seq_bits)` gives the hash of a stored entry.
    pub(crate) fn remove_at(&mut self, pos: usize, mut hash_of: impl FnMut(u32) -> u64) {
        let n = self.buckets.len();
        let distance = |from: usize, to: usize| (to + n - from) % n;
        let mut gap = pos;
        let mut i = self.next(pos);
        loop {
            let bucket = self.buckets[i];
            if bucket == EMPTY {
                break;
            }
            let home = self.home(hash_of(bucket & SEQ_MASK));
            // The entry at `i` may fill the gap if the gap lies between its home and `i`.
            if distance(home, i) >= distance(gap, i) {
                self.buckets[gap] = bucket;
                gap = i;
            }
            i = self.next(i);
        }
        self.buckets[gap] = EMPTY;
        self.len -= 1;
    }

    /// Re-hashes every entry into a table sized for `ids` entries (at least the current count):
    /// how the table grows and shrinks. `hash_of(seq_bits)` gives the hash of a stored entry.
    pub(crate) fn resize(&mut self, ids: usize, mut hash_of: impl FnMut(u32) -> u64) {
        let old = std::mem::replace(self, Self::with_capacity(ids.max(self.len)));
        for &bucket in old.buckets.iter().filter(|&&b| b != EMPTY) {
            let mut i = self.home(hash_of(bucket & SEQ_MASK));
            while self.buckets[i] != EMPTY {
                i = self.next(i);
            }
            self.buckets[i] = bucket;
        }
        self.len = old.len;
    }

    /// Empties the table and sizes it for `ids` entries, to be inserted by the caller.
    pub(crate) fn reset(&mut self, ids: usize) {
        *self = Self::with_capacity(ids);
    }

    fn home(&self, hash: u64) -> usize {
        // Multiply-shift maps the hash onto 0..n for any n.
        ((u128::from(hash) * self.buckets.len() as u128) >> 64) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.buckets.len() {
            0
        } else {
            i + 1
        }
    }
}

fn tag_of(bucket: u32) -> u8 {
    (bucket >> SEQ_BITS) as u8
}

fn buckets_for(ids: usize) -> usize {
    (ids.saturating_mul(100) / RESIZED_LOAD_PERCENT).max(MIN_BUCKETS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Keys by sequence number, as the stripe keeps them in its entries.
    fn hash(keys: &BTreeMap<u64, u64>, seq_bits: u32) -> u64 {
        keys[&u64::from(seq_bits)]
    }

    fn tag(key: u64) -> u8 {
        (key % 255 + 1) as u8
    }

    fn find(index: &Index, keys: &BTreeMap<u64, u64>, key: u64) -> Option<u64> {
        index
            .find(key, tag(key), |s| keys.get(&u64::from(s)) == Some(&key))
            .map(|pos| u64::from(index.seq_bits_at(pos)))
    }

    proptest! {
        /// Inserts, removals and resizes keep every present key findable and no absent one.
        #[test]
        fn behaves_like_a_map(ops in prop::collection::vec((0u8..4, any::<u64>()), 1..400)) {
            let mut index = Index::with_capacity(4);
            let mut keys = BTreeMap::new(); // seq -> key
            let mut next_seq = 0u64;
            for (op, value) in ops {
                match op {
                    0 | 1 => {
                        // Small key space so that clusters and collisions are common.
                        let key = (value % 64).wrapping_mul(0x9E37_79B9_7F4A_7C15) << 1;
                        if keys.values().any(|&k| k == key) { continue; }
                        if index.needs_grow() {
                            index.resize(index.len() + 1, |s| hash(&keys, s));
                        }
                        index.insert(key, tag(key), next_seq);
                        keys.insert(next_seq, key);
                        next_seq += 1;
                    }
                    2 => {
                        let Some((&seq, &key)) = keys.iter().nth(value as usize % keys.len().max(1)) else { continue };
                        let pos = index.find(key, tag(key), |s| u64::from(s) == seq).unwrap();
                        index.remove_at(pos, |s| hash(&keys, s));
                        keys.remove(&seq);
                    }
                    _ => index.resize(index.len() + (value % 50) as usize, |s| hash(&keys, s)),
                }
                prop_assert_eq!(index.len(), keys.len());
                for (&seq, &key) in &keys {
                    prop_assert_eq!(find(&index, &keys, key), Some(seq));
                }
                // Inserted keys are even, so an odd key is never present.
                prop_assert_eq!(find(&index, &keys, value | 1), None);
            }
        }
    }

    #[test]
    fn load_stays_between_bounds() {
        let mut index = Index::with_capacity(100);
        assert_eq!(index.buckets(), 142);
        let mut keys = BTreeMap::new();
        for seq in 0..10_000u64 {
            let key = seq.wrapping_mul(0x9E37_79B9_7F4A_7C15);
            if index.needs_grow() {
                index.resize(index.len() + 1, |s| hash(&keys, s));
            }
            index.insert(key, tag(key), seq);
            keys.insert(seq, key);
            assert!(index.len() * 100 <= index.buckets() * MAX_LOAD_PERCENT);
        }
        assert!(index.len() * 100 >= index.buckets() * 60);
    }
}
