//! Generations' filters saved in column family `meta`, so that an open has each generation's
//! filter without reading the generation: a generation's is saved once it receives no more marks
//! (*sealed*), and the newest's when the store closes (*closing*).
//!
//! Keys: `filter/<generation>` the header; `filter/<generation>/<chunk>` (u32 big-endian) the
//! [`Filter::encode`] bytes in chunks of at most [`CHUNK`], one write each, so no write holds
//! much of the memtables' budget. The header is written after its chunks:
//!
//! | bytes | field |
//! |---|---|
//! | 0 | kind: 0 sealed, 1 closing |
//! | 1..9 | closing: RocksDB's last sequence number once the closing headers are written (u64 BE) |
//! | 9..17 | the encoded filter's length (u64 BE) |
//! | 17..21 | chunks (u32 BE) |
//!
//! A closing filter held every mark of its generation when the store closed; if anything was
//! written since (the sequence number moved on, as after a crash of a later session), it is
//! ignored and that generation is read from RocksDB until it expires. A header or filter that
//! does not decode is ignored the same way, with a warning: a filter is derived data, and
//! losing it loses no mark.

use super::fault::Op;
use super::filter::{Filter, take};
use super::generations::Generation;
use super::{Cold, META_CF};
use crate::error::{Error, Result};
use rocksdb::WriteBatch;
use std::sync::Arc;

const PREFIX: &str = "filter/";
const CHUNK: usize = 4 << 20;
const HEADER_LEN: usize = 21;
const SEALED: u8 = 0;
const CLOSING: u8 = 1;

fn header_key(generation: &str) -> Vec<u8> {
    format!("{PREFIX}{generation}").into_bytes()
}

pub(super) fn chunk_key(generation: &str, chunk: u32) -> Vec<u8> {
    let mut key = format!("{PREFIX}{generation}/").into_bytes();
    key.extend_from_slice(&chunk.to_be_bytes());
    key
}

/// A header's kind, sequence number, length and chunks.
fn decode_header(mut bytes: &[u8]) -> Result<(u8, u64, u64, u32), String> {
    if bytes.len() != HEADER_LEN {
        return Err(format!("a header of {} bytes", bytes.len()));
    }
    let [kind] = take(&mut bytes)?;
    let after = u64::from_be_bytes(take(&mut bytes)?);
    let len = u64::from_be_bytes(take(&mut bytes)?);
    Ok((kind, after, len, u32::from_be_bytes(take(&mut bytes)?)))
}

/// Deletes generation `name`'s saved filter, in `batch`.
pub(super) fn delete(batch: &mut WriteBatch, meta: &impl rocksdb::AsColumnFamilyRef, name: &str) {
    batch.delete_cf(meta, header_key(name));
    let from = format!("{PREFIX}{name}/").into_bytes();
    let to = format!("{PREFIX}{name}0").into_bytes(); // '0' follows '/'
    batch.delete_range_cf(meta, from, to);
}

impl Cold {
    /// Saves the filters of `sealed` (generations that receive no more marks) and, if given,
    /// the filter of the newest generation of each ID space, as it is at close. Nothing may be
    /// written to the store between this and the close.
    pub(super) fn save_filters(
        &self,
        sealed: &[(String, Arc<Filter>)],
        closing: &[(String, Arc<Filter>)],
    ) -> Result<()> {
        let meta = self.cf(META_CF)?;
        // Held while a generation's records are deleted too: none is saved after its drop.
        let _saving = self.filter_saves.lock();
        let mut headers = Vec::new();
        for (kind, saved) in [(SEALED, sealed), (CLOSING, closing)] {
            for (name, filter) in saved {
                if self.db.cf_handle(name).is_none() {
                    continue; // dropped since it was listed
                }
                let encoded = filter.encode();
                let mut chunks = 0u32;
                for chunk in encoded.chunks(CHUNK) {
                    let mut batch = WriteBatch::default();
                    batch.put_cf(&meta, chunk_key(name, chunks), chunk);
                    self.write_saved(batch)?;
                    chunks += 1;
                }
                headers.push((name, kind, encoded.len() as u64, chunks));
            }
        }
        if headers.is_empty() {
            return Ok(());
        }
        // One batch: each of its puts takes one sequence number.
        let after = self.db.latest_sequence_number() + headers.len() as u64;
        let mut batch = WriteBatch::default();
        for &(name, kind, len, chunks) in &headers {
            let mut header = Vec::with_capacity(HEADER_LEN);
            header.push(kind);
            header.extend_from_slice(&after.to_be_bytes());
            header.extend_from_slice(&len.to_be_bytes());
            header.extend_from_slice(&chunks.to_be_bytes());
            batch.put_cf(&meta, header_key(name), header);
        }
        self.write_saved(batch)?;
        for (_, filter) in sealed {
            filter.set_sealed();
        }
        Ok(())
    }

    /// Writes part of a saved filter, unsynced: a filter lost with the unsynced tail of the log
    /// is one the next open does without. A failure does not poison the store, as it leaves no
    /// acknowledged write in doubt (and RocksDB refuses writes itself once its log fails).
    fn write_saved(&self, batch: WriteBatch) -> Result<()> {
        self.check_poison()?;
        self.fallible(
            Op::Save,
            || "saving a generation's filter".into(),
            || self.db.write(batch),
        )
    }

    /// Gives each of `generations` its saved filter, if one holds all its marks. Called at
    /// open before anything is written, which would make every closing filter look stale.
    pub(super) fn load_filters(&self, generations: &mut [Generation]) -> Result<()> {
        let opened_at = self.db.latest_sequence_number();
        for g in generations {
            g.filter = self.load_filter(g, opened_at)?.map(Arc::new);
        }
        Ok(())
    }

    /// The saved filter of generation `g`, if one holds all its marks; `opened_at` is RocksDB's
    /// last sequence number when it was opened.
    fn load_filter(&self, g: &Generation, opened_at: u64) -> Result<Option<Filter>> {
        let meta = self.cf(META_CF)?;
        let read = |key: &[u8]| {
            self.db
                .get_cf(&meta, key)
                .map_err(|e| Error::rocks(format!("reading the filter of {}", g.name), &e))
        };
        let Some(header) = read(&header_key(&g.name))? else {
            return Ok(None);
        };
        let ignored = |why: String| {
            tracing::warn!(generation = %g.name, "saved filter ignored: {why}");
            Ok(None)
        };
        let (kind, after, len, chunks) = match decode_header(&header) {
            Ok(fields) => fields,
            Err(why) => return ignored(why),
        };
        match kind {
            SEALED => {}
            CLOSING if after == opened_at => {}
            CLOSING => return Ok(None), // written to since: the filter may lack marks
            _ => return ignored(format!("kind {kind}")),
        }
        let mut encoded = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        for chunk in 0..chunks {
            match read(&chunk_key(&g.name, chunk))? {
                Some(bytes) => encoded.extend_from_slice(&bytes),
                None => return ignored(format!("chunk {chunk} of {chunks} is missing")),
            }
        }
        if encoded.len() as u64 != len {
            return ignored(format!("{} bytes, the header says {len}", encoded.len()));
        }
        match Filter::decode(&encoded) {
            Ok(filter) => {
                if kind == SEALED {
                    filter.set_sealed();
                }
                Ok(Some(filter))
            }
            Err(why) => ignored(why),
        }
    }
}
