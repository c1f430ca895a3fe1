//! [`Staged`]: one transaction's writes, validated and encoded, waiting to be written.

use super::generations::Generations;
use super::mark::MarkValue;
use super::producers::ProducerRecord;
use crate::id::Fingerprint;
use bytes::Bytes;
use std::sync::Arc;

#[derive(Debug, Default)]
pub(crate) struct Staged {
    /// Claimed marks.
    pub marks: Vec<StagedMark>,
    /// Puts (`Some` value) and deletes (`None`) into the consumer's tables, by column family.
    pub rows: Vec<Row>,
    /// Producers' new high-water marks, one per producer.
    pub sequences: Vec<StagedSequence>,
    /// Offsets, in the order they were set.
    pub offsets: Vec<Offset>,
    /// Outbox payloads, in the order they were added.
    pub outbox: Vec<Bytes>,
}

/// A mark to write: its ID space, fingerprint and stored value.
#[derive(Debug)]
pub(crate) struct StagedMark {
    pub space: Arc<Generations>,
    pub fp: Fingerprint,
    pub value: MarkValue,
}

/// A producer's high-water mark to store.
#[derive(Debug)]
pub(crate) struct StagedSequence {
    pub producer: Bytes,
    pub record: ProducerRecord,
}

/// A consumer offset to store.
#[derive(Debug)]
pub(crate) struct Offset {
    /// The key, by [`offset_key`](super::offset_key).
    pub key: Vec<u8>,
    pub value: u64,
    /// Stored as given; otherwise never below the stored offset.
    pub reset: bool,
}

#[derive(Debug)]
pub(crate) struct Row {
    pub cf: String,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl Staged {
    pub(crate) fn marks(marks: Vec<StagedMark>) -> Self {
        Self {
            marks,
            ..Self::default()
        }
    }
}
