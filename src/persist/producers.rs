//! Producer sequences on disk: column family `producers`, one record per producer.
//!
//! Key: the producer, as given to [`Store::accept`](crate::Store::accept) (1..=4096 bytes).
//! Value (16 bytes, big-endian): the producer's high-water mark (u64), then the store time of
//! the accept that wrote it (u64 milliseconds since the Unix epoch). A record is written by each
//! accept, in the write that carries the rest of its transaction, and deleted once the producer
//! has been idle for the store's producer idle time: at open, and when the in-memory table of
//! producers is swept.

use super::Cold;
use super::meta::field;
use crate::error::{Error, Result};
use bytes::Bytes;
use rocksdb::{IteratorMode, WriteBatch};

/// Producer records: key the producer, value [`ProducerRecord::encode`].
pub(crate) const PRODUCERS_CF: &str = "producers";
const LEN: usize = 16;

/// A producer's durable state: its high-water mark and when it was last accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProducerRecord {
    pub high: u64,
    /// The store time of the accept that wrote `high`, in milliseconds.
    pub at: u64,
}

impl ProducerRecord {
    pub(crate) fn encode(self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..8].copy_from_slice(&self.high.to_be_bytes());
        out[8..].copy_from_slice(&self.at.to_be_bytes());
        out
    }

    pub(crate) fn decode(producer: &[u8], bytes: &[u8]) -> Result<Self> {
        let corrupt = || Error::Corruption {
            what: format!(
                "record of producer {:?}",
                String::from_utf8_lossy(&producer[..producer.len().min(64)])
            ),
            detail: format!("{} bytes, expected {LEN}", bytes.len()),
        };
        if bytes.len() != LEN {
            return Err(corrupt());
        }
        Ok(Self {
            high: u64::from_be_bytes(field(bytes, 0)),
            at: u64::from_be_bytes(field(bytes, 8)),
        })
    }

    /// Whether the producer is still known at `now`: accepted less than `idle_ms` ago.
    pub(crate) fn live(self, now: u64, idle_ms: u64) -> bool {
        now < self.at.saturating_add(idle_ms)
    }
}

impl Cold {
    /// Reads every producer record, returning those live at `now` and deleting the others (in
    /// one write; a delete lost to a crash is made again by the next open). Reads one record per
    /// producer: O(producers), not O(window).
    pub(crate) fn load_producers(
        &self,
        now: u64,
        idle_ms: u64,
    ) -> Result<Vec<(Bytes, ProducerRecord)>> {
        let cf = self.cf(PRODUCERS_CF)?;
        let mut live = Vec::new();
        let mut idle = WriteBatch::default();
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (producer, value) =
                item.map_err(|e| Error::rocks("reading the producer records", &e))?;
            let record = ProducerRecord::decode(&producer, &value)?;
            if record.live(now, idle_ms) {
                live.push((Bytes::from(producer.into_vec()), record));
            } else {
                idle.delete_cf(&cf, producer);
            }
        }
        if !idle.is_empty() {
            self.write(idle)?;
        }
        Ok(live)
    }

    /// Deletes the records of `producers`, found idle. The caller holds their in-memory entries
    /// locked, so no accept of theirs is written between the sweep and this delete.
    pub(crate) fn forget_producers<'p>(
        &self,
        producers: impl IntoIterator<Item = &'p Bytes>,
    ) -> Result<()> {
        let cf = self.cf(PRODUCERS_CF)?;
        let mut batch = WriteBatch::default();
        for producer in producers {
            batch.delete_cf(&cf, producer);
        }
        // Not synced: a delete that a power loss takes back is made again by the next open.
        self.write_with(batch, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_lengths_are_corruption() {
        let record = ProducerRecord {
            high: u64::MAX - 1,
            at: 1_700_000_000_123,
        };
        assert_eq!(
            ProducerRecord::decode(b"p", &record.encode()).unwrap(),
            record
        );
        for len in [0, 8, 15, 17] {
            let err = ProducerRecord::decode(b"p", &vec![0; len]).unwrap_err();
            assert!(
                matches!(&err, Error::Corruption { what, .. } if what.contains("\"p\"")),
                "{len}: {err}"
            );
        }
    }

    #[test]
    fn a_producer_is_live_for_its_idle_time() {
        let record = ProducerRecord { high: 3, at: 1_000 };
        assert!(record.live(1_999, 1_000));
        assert!(!record.live(2_000, 1_000));
        let late = ProducerRecord {
            high: 3,
            at: u64::MAX,
        };
        assert!(late.live(u64::MAX - 1, 1_000), "no overflow");
    }
}
