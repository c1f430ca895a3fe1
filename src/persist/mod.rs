//! The cold tier: RocksDB on local disk.
//!
//! Column families: `meta` (the [`meta`] record and the outbox's next sequence number), one per
//! [`generations`] generation of marks, `offsets`, `outbox`, and `table.<name>` for each of the
//! consumer's tables ([`layout`]). `docs/format.md` describes the layout.
//!
//! Every write is one `WriteBatch` through the write-ahead log. The first write that fails
//! poisons the store: every later write returns [`Error::Poisoned`], so a write whose fate is
//! unknown (a failed fsync) is never followed by others; reopening recovers.

mod directory;
mod fault;
mod generations;
mod layout;
mod meta;
mod options;
mod staged;

#[cfg(any(test, fuzzing))]
pub(crate) use fault::Strike;
pub use layout::{MAX_STREAM_NAME, MAX_TABLE_NAME};
pub(crate) use layout::{offset_key, table_cf};
pub(crate) use staged::{Row, Staged};

use crate::config::{Durability, Settings};
use crate::error::{Error, Result};
use crate::id::{Fingerprint, namespace_seed};
use crate::window::Window;
use bytes::Bytes;
use directory::META_CF;
use generations::Generation;
use layout::{OFFSETS_CF, OUTBOX_CF, decode_u64};
use meta::Meta;
use options::Sizing;
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    BoundColumnFamily, ColumnFamilyDescriptor, DBWithThreadMode, FlushOptions, IteratorMode,
    MultiThreaded, Options, WriteBatch, WriteOptions,
};
use std::fs::{self, File};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

type Db = DBWithThreadMode<MultiThreaded>;

const META_KEY: &[u8] = b"meta";
/// The outbox's next sequence number, u64 big-endian, in column family `meta`.
const OUTBOX_NEXT_KEY: &[u8] = b"outbox_next";

pub(crate) struct Cold {
    // Field order is drop order: the database closes before the lock is released.
    db: Db,
    generations: RwLock<Vec<Generation>>,
    generation_options: Mutex<Options>,
    /// Options of new table column families; its lock also serialises their creation.
    table_options: Mutex<Options>,
    /// The next outbox sequence number; locked across every write that adds outbox events, so
    /// sequence numbers follow commit order.
    outbox_next: Mutex<u64>,
    /// Why the store is poisoned, once a write has failed.
    poisoned: OnceLock<String>,
    #[cfg(any(test, fuzzing))]
    pub(crate) fault: fault::FaultPoint,
    window: Window,
    span: u64,
    sync: bool,
    path: PathBuf,
    _lock: File,
}

/// A freshly opened cold tier and what the hot tier needs to know of it.
pub(crate) struct Opened {
    pub cold: Cold,
    /// Every mark made at or after this time will go through the hot tier; earlier ones may be
    /// on disk only.
    pub complete_from: u64,
}

/// An outbox event: its sequence number (commit order) and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Position in commit order, from 0, never reused.
    pub seq: u64,
    /// The payload, as given to [`Transaction::outbox`](crate::Transaction::outbox).
    pub payload: Bytes,
}

impl Cold {
    /// Opens (or creates) the store at `settings.path`. Reads only the list of column families
    /// and the meta CF: nothing proportional to the window.
    pub(crate) fn open(settings: &Settings, now: u64) -> Result<Opened> {
        let path = settings.path.clone();
        fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let existing = directory::inspect(&path)?;
        let lock = directory::lock(&path)?;

        let window = Window::new(settings.window_ms, settings.slots);
        let sizing = Sizing::for_capacity(settings.capacity);
        let cache = rocksdb::Cache::new_lru_cache(options::in_memory(sizing.block_cache));
        let mut generations = Vec::new();
        let mut descriptors: Vec<ColumnFamilyDescriptor> = Vec::new();
        let always = [META_CF, OFFSETS_CF, OUTBOX_CF].map(str::to_owned);
        for name in existing.iter().chain(&always) {
            if descriptors.iter().any(|d| d.name() == name) {
                continue;
            }
            let options = match Generation::parse(name) {
                Some(Ok(g)) => {
                    generations.push(g);
                    options::generation(sizing, &cache)
                }
                Some(Err(detail)) => return Err(corrupt_layout(&path, detail)),
                None if always.contains(name) || layout::is_table_cf(name) => {
                    options::table(sizing, &cache)
                }
                None if name == rocksdb::DEFAULT_COLUMN_FAMILY_NAME => options::database(sizing),
                None => {
                    return Err(corrupt_layout(
                        &path,
                        format!("unknown column family {name:?}"),
                    ));
                }
            };
            descriptors.push(ColumnFamilyDescriptor::new(name, options));
        }
        generations.sort_by_key(|g| g.start);

        let db = Db::open_cf_descriptors(&options::database(sizing), &path, descriptors)
            .map_err(|e| Error::rocks(format!("opening {}", path.display()), &e))?;
        let cold = Cold {
            db,
            generations: RwLock::new(generations),
            generation_options: Mutex::new(options::generation(sizing, &cache)),
            table_options: Mutex::new(options::table(sizing, &cache)),
            outbox_next: Mutex::new(0),
            poisoned: OnceLock::new(),
            #[cfg(any(test, fuzzing))]
            fault: fault::FaultPoint::default(),
            window,
            span: generations::span(window),
            sync: settings.durability == Durability::Synced,
            path,
            _lock: lock,
        };
        cold.check_meta(settings, now)?;
        *cold.outbox_next.lock() = cold.stored_outbox_next()?;
        cold.drop_dead_generations(now, true)?;
        let complete_from = cold
            .generations
            .read()
            .iter()
            .map(|g| g.end)
            .max()
            .unwrap_or(0);
        Ok(Opened {
            cold,
            complete_from,
        })
    }

    /// Validates the meta record against `settings`, writing it for a new store and updating it
    /// when the window changed.
    fn check_meta(&self, settings: &Settings, now: u64) -> Result<()> {
        let wanted = Meta {
            window_ms: settings.window_ms,
            slots: settings.slots,
            namespace_seed: namespace_seed(&settings.namespace),
            created_ms: now,
        };
        let cf = self.cf(META_CF)?;
        let stored = self
            .db
            .get_pinned_cf(&cf, META_KEY)
            .map_err(|e| Error::rocks("reading the meta record", &e))?;
        let write = match stored {
            Some(bytes) => {
                let stored = Meta::decode(&bytes, &self.path)?;
                if stored.namespace_seed != wanted.namespace_seed {
                    return Err(Error::InvalidConfig {
                        what: "namespace",
                        detail: format!(
                            "{} was created with another namespace; its marks would not match",
                            self.path.display()
                        ),
                    });
                }
                let current = Meta {
                    created_ms: stored.created_ms,
                    ..wanted
                };
                (current != stored).then_some(current)
            }
            None if self.generations.read().is_empty() => Some(wanted),
            None => {
                return Err(Error::Corruption {
                    what: format!("meta record of {}", self.path.display()),
                    detail: "missing, though the store holds marks".into(),
                });
            }
        };
        if let Some(meta) = write {
            let mut options = WriteOptions::default();
            options.set_sync(true);
            self.db
                .put_cf_opt(&cf, META_KEY, meta.encode(), &options)
                .map_err(|e| Error::rocks("writing the meta record", &e))?;
            // An unflushed memtable would pin every write-ahead log file written after it.
            self.db
                .flush_cf(&cf)
                .map_err(|e| Error::rocks("flushing the meta record", &e))?;
        }
        Ok(())
    }

    fn stored_outbox_next(&self) -> Result<u64> {
        let stored = self
            .db
            .get_pinned_cf(&self.cf(META_CF)?, OUTBOX_NEXT_KEY)
            .map_err(|e| Error::rocks("reading the outbox sequence", &e))?;
        stored.map_or(Ok(0), |v| decode_u64(&v, || "the outbox sequence".into()))
    }

    /// Writes a group of transactions in one batch through the write-ahead log: marks into the
    /// newest generation (opening a new one when time has passed its end), rows into their
    /// tables (created on first use), offsets, and outbox events numbered in commit order.
    /// Returns each transaction's outbox sequence numbers.
    pub(crate) fn write_staged(&self, group: &[&Staged]) -> Result<Vec<Range<u64>>> {
        self.check_poison()?;
        // Each table's column family is looked up (or created) once per group; `row_cf` holds
        // each row's, in the order the rows come.
        let mut tables: Vec<(&str, Arc<BoundColumnFamily<'_>>)> = Vec::new();
        let mut row_cf = Vec::new();
        for row in group.iter().flat_map(|s| &s.rows) {
            let known = tables.iter().position(|(name, _)| *name == row.cf);
            let i = if let Some(i) = known {
                i
            } else {
                tables.push((&row.cf, self.table(&row.cf)?));
                tables.len() - 1
            };
            row_cf.push(i);
        }
        let mut row_cf = row_cf.into_iter();
        let latest = group.iter().flat_map(|s| s.marks.iter().map(|m| m.1)).max();
        // Holding the read lock across the write keeps the generation from being dropped.
        let generations = loop {
            let generations = self.generations.read();
            match latest {
                Some(t) if generations.last().is_none_or(|g| t >= g.end) => {
                    drop(generations);
                    self.open_generation(t)?;
                }
                _ => break generations,
            }
        };
        let marks_cf = match latest {
            Some(_) => generations.last().map(|g| self.cf(&g.name)).transpose()?,
            None => None,
        };
        let mut outbox_next = group
            .iter()
            .any(|s| !s.outbox.is_empty())
            .then(|| self.outbox_next.lock());
        let mut seq = outbox_next.as_deref().copied().unwrap_or(0);
        let mut batch = WriteBatch::default();
        let mut ranges = Vec::with_capacity(group.len());
        let (offsets_cf, outbox_cf) = (self.cf(OFFSETS_CF)?, self.cf(OUTBOX_CF)?);
        for staged in group {
            if let Some(cf) = &marks_cf {
                for (fp, t) in &staged.marks {
                    batch.put_cf(cf, fp.key(), t.to_be_bytes());
                }
            }
            for (row, i) in staged.rows.iter().zip(&mut row_cf) {
                let cf = &tables[i].1;
                match &row.value {
                    Some(value) => batch.put_cf(cf, &row.key, value),
                    None => batch.delete_cf(cf, &row.key),
                }
            }
            for (key, offset) in &staged.offsets {
                batch.put_cf(&offsets_cf, key, offset.to_be_bytes());
            }
            let first = seq;
            for payload in &staged.outbox {
                batch.put_cf(&outbox_cf, seq.to_be_bytes(), payload);
                seq = seq.checked_add(1).ok_or_else(|| Error::Corruption {
                    what: "the outbox sequence".into(),
                    detail: "no sequence numbers left".into(),
                })?;
            }
            ranges.push(first..seq);
        }
        if let Some(next) = outbox_next.as_deref_mut() {
            batch.put_cf(&self.cf(META_CF)?, OUTBOX_NEXT_KEY, seq.to_be_bytes());
            self.write(batch)?;
            *next = seq;
        } else {
            self.write(batch)?;
        }
        drop(generations);
        Ok(ranges)
    }

    /// The newest live mark of `fp` at `now`, looking through every live generation, newest
    /// first. Filters answer most misses without reading a data block.
    pub(crate) fn find_live(&self, fp: Fingerprint, now: u64) -> Result<Option<u64>> {
        let key = fp.key();
        let generations = self.generations.read();
        for g in generations.iter().rev() {
            if self.window.range_expired(g.end, now) {
                break; // it and every older generation hold only dead marks
            }
            let found = self
                .db
                .get_pinned_cf(&self.cf(&g.name)?, key)
                .map_err(|e| Error::rocks(format!("reading {}", g.name), &e))?;
            if let Some(value) = found {
                let t = decode_u64(&value, || format!("a mark in {}", g.name))?;
                if self.window.is_live(t, now) {
                    return Ok(Some(t));
                }
            }
        }
        Ok(None)
    }

    /// A row of a consumer table (`cf` as [`table_cf`] names it).
    pub(crate) fn get(&self, cf: &str, key: &[u8]) -> Result<Option<Bytes>> {
        let Some(handle) = self.db.cf_handle(cf) else {
            return Ok(None); // the table was never written
        };
        let value = self
            .db
            .get_pinned_cf(&handle, key)
            .map_err(|e| Error::rocks(format!("reading {cf}"), &e))?;
        Ok(value.map(|v| Bytes::copy_from_slice(&v)))
    }

    /// A stored consumer offset, by [`offset_key`].
    pub(crate) fn offset(&self, key: &[u8]) -> Result<Option<u64>> {
        let value = self
            .db
            .get_pinned_cf(&self.cf(OFFSETS_CF)?, key)
            .map_err(|e| Error::rocks("reading an offset", &e))?;
        value
            .map(|v| decode_u64(&v, || "an offset".into()))
            .transpose()
    }

    /// The first `limit` outbox events, in commit order.
    pub(crate) fn outbox_peek(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let cf = self.cf(OUTBOX_CF)?;
        let mut entries = Vec::new();
        for item in self.db.iterator_cf(&cf, IteratorMode::Start).take(limit) {
            let (key, payload) = item.map_err(|e| Error::rocks("reading the outbox", &e))?;
            entries.push(OutboxEntry {
                seq: decode_u64(&key, || "an outbox key".into())?,
                payload: Bytes::from(payload.into_vec()),
            });
        }
        Ok(entries)
    }

    /// Removes the outbox events numbered `0..=up_to`, through the write-ahead log.
    pub(crate) fn outbox_ack(&self, up_to: u64) -> Result<()> {
        let cf = self.cf(OUTBOX_CF)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(
            &cf,
            0u64.to_be_bytes(),
            up_to.saturating_add(1).to_be_bytes(),
        );
        if up_to == u64::MAX {
            batch.delete_cf(&cf, u64::MAX.to_be_bytes());
        }
        self.write(batch)
    }

    /// Flushes every memtable to table files and syncs the write-ahead log.
    pub(crate) fn flush(&self) -> Result<()> {
        let names = Db::list_cf(&Options::default(), &self.path)
            .map_err(|e| Error::rocks("listing column families", &e))?;
        for name in &names {
            if let Some(cf) = self.db.cf_handle(name) {
                self.db
                    .flush_cf(&cf)
                    .map_err(|e| Error::rocks(format!("flushing {name}"), &e))?;
            }
        }
        self.sync_wal()
    }

    /// Makes every write so far survive power loss.
    pub(crate) fn sync_wal(&self) -> Result<()> {
        self.db
            .flush_wal(true)
            .map_err(|e| Error::rocks("syncing the write-ahead log", &e))
    }

    /// How many generations are on disk.
    pub(crate) fn generation_count(&self) -> usize {
        self.generations.read().len()
    }

    fn check_poison(&self) -> Result<()> {
        match self.poisoned.get() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The one place a batch reaches RocksDB. A failure poisons the store.
    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.check_poison()?;
        #[cfg(any(test, fuzzing))]
        let strike = self.fault.tick();
        #[cfg(any(test, fuzzing))]
        if strike == Some(Strike::BeforeWrite) {
            return Err(self.poison(fault::FaultPoint::error(Strike::BeforeWrite)));
        }
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        let result = self
            .db
            .write_opt(batch, &options)
            .map_err(|e| Error::rocks("writing to the store", &e));
        #[cfg(any(test, fuzzing))]
        let result = result.and_then(|()| match strike {
            Some(s) => Err(fault::FaultPoint::error(s)),
            None => Ok(()),
        });
        result.map_err(|e| self.poison(e))
    }

    fn poison(&self, error: Error) -> Error {
        self.poisoned.get_or_init(|| error.to_string());
        error
    }

    /// The column family of a table, created on its first write.
    fn table(&self, cf: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        if let Some(handle) = self.db.cf_handle(cf) {
            return Ok(handle);
        }
        let options = self.table_options.lock();
        if self.db.cf_handle(cf).is_none() {
            self.db
                .create_cf(cf, &options)
                .map_err(|e| Error::rocks(format!("creating {cf}"), &e))?;
        }
        drop(options);
        self.cf(cf)
    }

    /// Opens the generation for marks made at `t`, then drops the generations that died.
    fn open_generation(&self, t: u64) -> Result<()> {
        let mut generations = self.generations.write();
        if generations.last().is_some_and(|g| t < g.end) {
            return Ok(()); // another writer got here first
        }
        let next = Generation::next(t, self.span, generations.last());
        self.db
            .create_cf(&next.name, &self.generation_options.lock())
            .map_err(|e| Error::rocks(format!("creating {}", next.name), &e))?;
        if let Some(previous) = generations.last()
            && let Ok(cf) = self.cf(&previous.name)
        {
            // It receives no more writes; flushing it now lets its WAL go.
            let mut flush = FlushOptions::default();
            flush.set_wait(false);
            self.db
                .flush_cf_opt(&cf, &flush)
                .map_err(|e| Error::rocks(format!("flushing {}", previous.name), &e))?;
        }
        generations.push(next);
        drop(generations);
        self.drop_dead_generations(t, false)
    }

    /// Drops every generation whose marks are all dead at `now`. The newest is kept unless
    /// `include_newest` (writers may be about to write into it).
    fn drop_dead_generations(&self, now: u64, include_newest: bool) -> Result<()> {
        let mut generations = self.generations.write();
        let candidates =
            generations.len() - usize::from(!include_newest && !generations.is_empty());
        let dead: Vec<usize> = (0..candidates)
            .filter(|&i| self.window.range_expired(generations[i].end, now))
            .collect();
        for &i in dead.iter().rev() {
            let g = generations.remove(i);
            self.db
                .drop_cf(&g.name)
                .map_err(|e| Error::rocks(format!("dropping {}", g.name), &e))?;
        }
        Ok(())
    }

    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.db.cf_handle(name).ok_or_else(|| Error::Corruption {
            what: format!("column family {name}"),
            detail: "expected but not open".into(),
        })
    }
}

fn corrupt_layout(path: &std::path::Path, detail: String) -> Error {
    Error::Corruption {
        what: format!("column families of {}", path.display()),
        detail,
    }
}
