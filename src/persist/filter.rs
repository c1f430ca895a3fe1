//! The filter the store keeps of each generation's marks, in memory: it holds every mark written
//! to the generation, so a lookup of an ID the generation does not hold is answered without
//! RocksDB, which would probe the generation's memtables and each of its table files (their
//! filters, then their indexes) to say the same. A generation of tens of millions of marks spans
//! several levels of table files; a miss there costs microseconds, one here tens of nanoseconds.
//!
//! A filter is a chain of split-block Bloom filters (one cache line per probe): the first sized
//! for a quarter more marks than the previous generation received, each next one as large as
//! all before it
//! together, so a generation that receives more than expected keeps its false-positive rate,
//! takes at most twice the bits its marks need, and a lookup probes one segment per doubling.
//! Inserts take the chain's lock; only the newest generation receives them.

use crate::id::Fingerprint;
use parking_lot::RwLock;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Filter bits per mark: a false-positive rate of about 0.5% per full segment, so a lookup that
/// passes every live generation's filter in vain, and reads RocksDB for nothing, is rare.
pub(crate) const BITS_PER_MARK: usize = 12;
/// The marks the first segment of a generation is sized for when nothing better is known.
pub(crate) const FIRST_SEGMENT: u64 = 1 << 16;
/// The encoding's version (the first byte of [`Filter::encode`]).
const VERSION: u8 = 1;

pub(crate) struct Filter {
    segments: RwLock<Vec<Segment>>,
    /// Whether the filter is saved as complete: the generation receives no more marks.
    sealed: AtomicBool,
}

struct Segment {
    bits: sbbf_rs_safe::Filter,
    /// The marks it is sized for, and how many it holds.
    room: u64,
    held: u64,
}

impl Segment {
    fn new(room: u64) -> Self {
        let keys = usize::try_from(room).unwrap_or(usize::MAX);
        Self {
            bits: sbbf_rs_safe::Filter::new(BITS_PER_MARK, keys),
            room,
            held: 0,
        }
    }
}

impl Filter {
    /// An empty filter sized for about `expected` marks.
    pub(crate) fn new(expected: u64) -> Self {
        Self {
            segments: RwLock::new(vec![Segment::new(expected.max(1))]),
            sealed: AtomicBool::new(false),
        }
    }

    /// Adds `marks`. Every mark is added before the write that stores it: the filter holds a
    /// superset of the generation's marks (a write that fails leaves only false positives).
    pub(crate) fn insert(&self, marks: impl IntoIterator<Item = Fingerprint>) {
        let mut segments = self.segments.write();
        for fp in marks {
            if segments.last().is_none_or(|s| s.held >= s.room) {
                let room = segments.iter().map(|s| s.room).sum::<u64>();
                segments.push(Segment::new(room.max(1)));
            }
            if let Some(last) = segments.last_mut() {
                last.bits.insert_hash(fp.filter_hash());
                last.held += 1;
            }
        }
    }

    /// Whether the generation may hold `fp`; `false` means it certainly does not.
    pub(crate) fn may_hold(&self, fp: Fingerprint) -> bool {
        let hash = fp.filter_hash();
        // The largest segment, last, holds most marks.
        self.segments
            .read()
            .iter()
            .rev()
            .any(|s| s.bits.contains_hash(hash))
    }

    /// How many marks were added.
    pub(crate) fn marks(&self) -> u64 {
        self.segments.read().iter().map(|s| s.held).sum()
    }

    /// The memory its bits take.
    pub(crate) fn bytes(&self) -> u64 {
        let segments = self.segments.read();
        segments
            .iter()
            .map(|s| s.bits.as_bytes().len() as u64)
            .sum()
    }

    pub(crate) fn is_sealed(&self) -> bool {
        self.sealed.load(Ordering::Acquire)
    }

    pub(crate) fn set_sealed(&self) {
        self.sealed.store(true, Ordering::Release);
    }

    /// The filter as bytes: the version, the segment count (u32), then per segment its room,
    /// its count and its length in bytes (u64 each, all big-endian) and its bits.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let segments = self.segments.read();
        let bits: usize = segments.iter().map(|s| s.bits.as_bytes().len()).sum();
        let mut out = Vec::with_capacity(5 + segments.len() * 24 + bits);
        out.push(VERSION);
        // Segments double in size: there are never more than 64.
        let count = u32::try_from(segments.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for s in segments.iter() {
            let bits = s.bits.as_bytes();
            out.extend_from_slice(&s.room.to_be_bytes());
            out.extend_from_slice(&s.held.to_be_bytes());
            out.extend_from_slice(&(bits.len() as u64).to_be_bytes());
            out.extend_from_slice(bits);
        }
        out
    }

    /// Reads what [`encode`](Self::encode) wrote, or says why it cannot.
    pub(crate) fn decode(mut bytes: &[u8]) -> Result<Self, String> {
        let [version] = take(&mut bytes)?;
        if version != VERSION {
            return Err(format!("version {version}, expected {VERSION}"));
        }
        let count = u32::from_be_bytes(take(&mut bytes)?);
        if count == 0 {
            return Err("no segments".into());
        }
        let mut segments = Vec::new();
        for i in 0..count {
            let room = u64::from_be_bytes(take(&mut bytes)?);
            let held = u64::from_be_bytes(take(&mut bytes)?);
            let len = u64::from_be_bytes(take(&mut bytes)?);
            let Some((bits, rest)) = usize::try_from(len)
                .ok()
                .and_then(|len| bytes.split_at_checked(len))
            else {
                return Err(format!("segment {i}: {len} bytes, {} left", bytes.len()));
            };
            bytes = rest;
            let bits = sbbf_rs_safe::Filter::from_bytes(bits)
                .ok_or_else(|| format!("segment {i}: {len} bytes is no whole number of blocks"))?;
            if held > room {
                return Err(format!("segment {i} holds {held} marks, room for {room}"));
            }
            segments.push(Segment { bits, room, held });
        }
        if !bytes.is_empty() {
            return Err(format!("{} bytes past the last segment", bytes.len()));
        }
        Ok(Self {
            segments: RwLock::new(segments),
            sealed: AtomicBool::new(false),
        })
    }
}

/// The next `N` bytes of `bytes`, taken off it.
pub(crate) fn take<const N: usize>(bytes: &mut &[u8]) -> Result<[u8; N], String> {
    let (head, rest) = bytes
        .split_first_chunk::<N>()
        .ok_or_else(|| format!("truncated: {} bytes left, {N} wanted", bytes.len()))?;
    *bytes = rest;
    Ok(*head)
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("marks", &self.marks())
            .field("bytes", &self.bytes())
            .field("sealed", &self.is_sealed())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(i: u64) -> Fingerprint {
        Fingerprint::of(7, &i.to_be_bytes(), None).unwrap()
    }

    #[test]
    fn holds_every_mark_through_growth_and_rejects_most_others() {
        let filter = Filter::new(1_000);
        filter.insert((0..50_000).map(fp));
        assert_eq!(filter.marks(), 50_000);
        assert!((0..50_000).all(|i| filter.may_hold(fp(i))));
        // Segments of 1,000, 1,000, 2,000, ... 32,000: the chain doubles.
        assert_eq!(filter.segments.read().len(), 7);
        let false_positives = (50_000..150_000)
            .filter(|&i| filter.may_hold(fp(i)))
            .count();
        // Seven segments, each under 0.5% when full.
        assert!(false_positives < 3_500, "{false_positives} of 100,000");
    }

    #[test]
    fn round_trips_and_damage_is_refused() {
        let filter = Filter::new(100);
        filter.insert((0..300).map(fp));
        let bytes = filter.encode();
        let back = Filter::decode(&bytes).unwrap();
        assert_eq!(back.marks(), 300);
        assert_eq!(back.encode(), bytes);
        assert!((0..300).all(|i| back.may_hold(fp(i))));
        for cut in [0, 1, 4, 5, 20, bytes.len() - 1] {
            assert!(Filter::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Filter::decode(&longer).is_err());
        let mut version = bytes.clone();
        version[0] = 2;
        assert!(Filter::decode(&version).is_err());
        let mut odd = bytes;
        odd[5 + 16 + 7] ^= 1; // the first segment's length, no longer whole blocks
        assert!(Filter::decode(&odd).is_err());
    }
}
