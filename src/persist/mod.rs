//! The cold tier: RocksDB on local disk.
//!
//! Column families: `meta` (the [`meta`] record, the outbox's next sequence number and the
//! [`namespaces`]' records), one per [`generations`] generation of marks (of the store's own ID
//! space and of each namespace), `offsets`, `outbox`, [`producers`], and `table.<name>` for each
//! of the consumer's tables ([`layout`]). `docs/format.md` describes the layout.
//!
//! Every write is one `WriteBatch` through the write-ahead log. The first write that fails
//! poisons the store: every later write returns [`Error::Poisoned`], so a write whose fate is
//! unknown (a failed fsync) is never followed by others; reopening recovers.

mod cycle;
mod directory;
mod fault;
mod filter;
#[cfg(test)]
mod filter_tests;
pub(crate) mod generations;
mod integrity;
pub(crate) mod layout;
pub(crate) mod mark;
pub(crate) mod meta;
mod namespaces;
mod options;
mod producers;
mod saved_filters;
mod snapshot;
mod staged;
#[cfg(test)]
mod tests;

pub(crate) use directory::{DirLock, lock as lock_directory};
#[cfg(any(test, fuzzing))]
pub(crate) use fault::{INJECTED_PANIC, Op, Strike};
pub(crate) use generations::{Generations, STORE_SPACE};
pub use layout::{MAX_STREAM_NAME, MAX_TABLE_NAME};
pub(crate) use layout::{check_name, offset_key, table_cf};
pub use mark::MAX_RESULT_LEN;
pub(crate) use mark::MarkValue;
pub(crate) use namespaces::OpenedNamespace;
pub(crate) use options::shared_rocksdb;
pub(crate) use producers::ProducerRecord;
pub(crate) use snapshot::{Contents, read_contents};
pub(crate) use staged::{Offset, Row, Staged, StagedMark, StagedSequence};

use crate::error::{Error, Result};
use crate::id::namespace_seed;
use crate::settings::{Durability, Settings};
use crate::window::Window;
use bytes::Bytes;
use directory::META_CF;
use generations::Generation;
use layout::{OFFSETS_CF, OUTBOX_CF, decode_u64};
use meta::Meta;
use options::Sizing;
use parking_lot::Mutex;
use producers::PRODUCERS_CF;
use rocksdb::{
    BoundColumnFamily, Cache, ColumnFamilyDescriptor, DBWithThreadMode, IteratorMode,
    MultiThreaded, Options, WriteBatch, WriteBufferManager, WriteOptions,
};
use std::fs;
use std::ops::Range;
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

type Db = DBWithThreadMode<MultiThreaded>;

const META_KEY: &[u8] = b"meta";
/// The outbox's next sequence number, u64 big-endian, in column family `meta`.
const OUTBOX_NEXT_KEY: &[u8] = b"outbox_next";
/// The store's time high-water mark, u64 big-endian milliseconds, in column family `meta`: at
/// least the time of every mark written and of every open, less one slot. An open never starts
/// the store's time below it.
const CLOCK_KEY: &[u8] = b"clock";

pub(crate) struct Cold {
    // Field order is drop order: the database closes before the lock is released.
    db: Db,
    generation_options: Mutex<Options>,
    /// Options of new table column families; its lock also serialises their creation.
    table_options: Mutex<Options>,
    /// The next outbox sequence number; locked across every write that adds outbox events, so
    /// sequence numbers follow commit order.
    outbox_next: Mutex<u64>,
    /// RocksDB's memory: the block cache, and the memtables charged to it.
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// Why the store is poisoned, once a write has failed.
    poisoned: OnceLock<String>,
    /// The time high-water mark last written to `meta` (see [`CLOCK_KEY`]).
    clock_written: AtomicU64,
    /// Drops of dead generations that failed; each is retried.
    failed_drops: AtomicU64,
    /// Marks asked of RocksDB: one per generation a lookup's filter did not rule out.
    generation_reads: AtomicU64,
    /// Rollovers whose dead generations are not dropped yet: the space and the mark time.
    rolled: Mutex<Vec<(Arc<Generations>, u64)>>,
    /// The next namespace's number; locked while a namespace is created.
    namespace_next: Mutex<u64>,
    /// Locked while generations' filters are saved, and while a generation's are deleted.
    filter_saves: Mutex<()>,
    #[cfg(any(test, fuzzing))]
    pub(crate) fault: fault::FaultPoint,
    /// The store's own window: the time high-water mark is persisted once a slot.
    window: Window,
    /// The `capacity` hint, which sizes memtables within RocksDB's budget.
    capacity: u64,
    /// The size memtables are given, in bytes ([`Cold::resize_memtables`] changes it).
    memtable_size: AtomicU64,
    sync: bool,
    path: PathBuf,
    _lock: directory::DirLock,
}

/// A freshly opened cold tier and what the hot tier needs to know of it.
pub(crate) struct Opened {
    pub cold: Cold,
    /// The generations of the store's own ID space.
    pub store_space: Arc<Generations>,
    pub namespaces: Vec<OpenedNamespace>,
    /// The store's time at open: the wall clock's reading, raised to the persisted high-water
    /// mark and to the newest generation's start.
    pub now: u64,
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
    /// Opens (or creates) the store at `settings.path`, `wall` being the wall clock's reading.
    /// Reads only the list of column families and the meta CF (with the generations' saved
    /// filters, about 2 bytes per mark): no generation.
    pub(crate) fn open(settings: &Settings, wall: u64) -> Result<Opened> {
        let path = settings.path.clone();
        fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let lock = directory::lock(&path)?;
        let (identity, existing) = match integrity::check(&path) {
            Ok(checked) => checked,
            Err(e) => {
                lock.abandon(&path);
                return Err(e);
            }
        };

        let window = Window::new(settings.window_ms, settings.slots);
        let mut sizing = Sizing::new(settings.capacity, settings.rocksdb_budget);
        sizing.pin_level0 = settings.shared_rocksdb.is_none();
        let (cache, write_buffers) = match &settings.shared_rocksdb {
            Some(shared) => (shared.cache.clone(), shared.write_buffers.clone()),
            None => sizing.memory(),
        };
        let mut found = Vec::new();
        let mut descriptors: Vec<ColumnFamilyDescriptor> = Vec::new();
        let always = [META_CF, OFFSETS_CF, OUTBOX_CF, PRODUCERS_CF].map(str::to_owned);
        for name in existing.iter().chain(&always) {
            if descriptors.iter().any(|d| d.name() == name) {
                continue;
            }
            let options = match Generation::parse(name) {
                Some(Ok(g)) => {
                    found.push(g);
                    options::generation(sizing, &cache)
                }
                Some(Err(detail)) => return Err(corrupt_layout(&path, detail)),
                None if name == OFFSETS_CF => options::offsets(sizing, &cache),
                None if always.contains(name) || layout::is_table_cf(name) => {
                    options::table(sizing, &cache)
                }
                None if name == rocksdb::DEFAULT_COLUMN_FAMILY_NAME => {
                    options::database(sizing, &write_buffers)
                }
                None => {
                    return Err(corrupt_layout(
                        &path,
                        format!("unknown column family {name:?}"),
                    ));
                }
            };
            descriptors.push(ColumnFamilyDescriptor::new(name, options));
        }

        let opened: Vec<String> = descriptors.iter().map(|d| d.name().to_owned()).collect();
        let database = options::database(sizing, &write_buffers);
        let db = Db::open_cf_descriptors(&database, &path, descriptors).map_err(|e| {
            integrity::name_logs(
                &path,
                Error::rocks(format!("opening {}", path.display()), &e),
            )
        })?;
        let cold = Cold {
            db,
            generation_options: Mutex::new(options::generation(sizing, &cache)),
            table_options: Mutex::new(options::table(sizing, &cache)),
            cache,
            write_buffers,
            outbox_next: Mutex::new(0),
            poisoned: OnceLock::new(),
            clock_written: AtomicU64::new(0),
            failed_drops: AtomicU64::new(0),
            generation_reads: AtomicU64::new(0),
            rolled: Mutex::new(Vec::new()),
            namespace_next: Mutex::new(1),
            filter_saves: Mutex::new(()),
            #[cfg(any(test, fuzzing))]
            fault: fault::FaultPoint::default(),
            window,
            capacity: settings.capacity,
            memtable_size: AtomicU64::new(sizing.write_buffer),
            sync: settings.durability == Durability::Synced,
            path,
            _lock: lock,
        };
        cold.load_filters(&mut found)?;
        let high_water = cold.stored_u64(CLOCK_KEY, "the time high-water mark")?;
        let newest_start = found.iter().map(|g| g.start).max().unwrap_or(0);
        let now = wall.max(high_water.unwrap_or(0)).max(newest_start);
        let meta = cold.check_meta(settings, now, !found.is_empty())?;
        if identity.is_none() {
            integrity::write_identity(&cold.path, &meta)?;
        }
        cold.complete_catalog(&opened)?;
        *cold.outbox_next.lock() = cold
            .stored_u64(OUTBOX_NEXT_KEY, "the outbox sequence")?
            .unwrap_or(0);
        cold.clock_written
            .store(high_water.unwrap_or(0), Ordering::Relaxed);
        // Generations are dropped below by this time: it becomes the high-water mark first, so
        // no later open, whatever its clock says, starts before the drop.
        cold.raise_clock(now)?;
        let (store_space, namespaces) = cold.open_spaces(found, now)?;
        Ok(Opened {
            cold,
            store_space,
            namespaces,
            now,
        })
    }

    /// Sorts the generations `found` at open into the store's own space and its namespaces',
    /// drops those of dropped namespaces, and drops every generation dead at `now`.
    fn open_spaces(
        &self,
        mut found: Vec<Generation>,
        now: u64,
    ) -> Result<(Arc<Generations>, Vec<OpenedNamespace>)> {
        let namespaces = self.load_namespaces(&mut found)?;
        let (own, orphans) = found.into_iter().partition(|g| g.space == STORE_SPACE);
        self.drop_generations(orphans);
        let store_space = Arc::new(Generations::new(STORE_SPACE, self.window, own));
        for space in namespaces
            .iter()
            .map(|n| &n.generations)
            .chain([&store_space])
        {
            self.reap(space, now, true);
        }
        Ok((store_space, namespaces))
    }

    /// Validates the meta record against `settings`, writing it for a new store and updating it
    /// when the window changed. Returns the record as stored. `holds_marks` says the store has
    /// generations: a new store has none.
    fn check_meta(&self, settings: &Settings, now: u64, holds_marks: bool) -> Result<Meta> {
        let wanted = Meta {
            version: meta::FORMAT_VERSION,
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
        let (stored, write) = match stored {
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
                (stored, (current != stored).then_some(current))
            }
            None if !holds_marks => (wanted, Some(wanted)),
            None => {
                return Err(Error::Corruption {
                    what: format!("meta record of {}", self.path.display()),
                    detail: "missing, though the store holds marks".into(),
                });
            }
        };
        let Some(meta) = write else {
            return Ok(stored);
        };
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_cf_opt(&cf, META_KEY, meta.encode(), &options)
            .map_err(|e| Error::rocks("writing the meta record", &e))?;
        // An unflushed memtable would pin every write-ahead log file written after it.
        self.db
            .flush_cf(&cf)
            .map_err(|e| Error::rocks("flushing the meta record", &e))?;
        Ok(meta)
    }

    /// Lists in the catalog every column family of `names` (those the open opened) not yet in it:
    /// those of a store written before the catalog existed, or created by a write that then
    /// failed.
    fn complete_catalog(&self, names: &[String]) -> Result<()> {
        let mut batch = WriteBatch::default();
        let meta = self.cf(META_CF)?;
        for name in names
            .iter()
            .filter(|n| *n != META_CF && *n != rocksdb::DEFAULT_COLUMN_FAMILY_NAME)
        {
            let key = integrity::catalog_key(name);
            let listed = self
                .db
                .get_pinned_cf(&meta, &key)
                .map_err(|e| Error::rocks("reading the catalog", &e))?;
            if listed.is_none() {
                batch.put_cf(&meta, key, []);
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.write(batch)
    }

    /// Lists column family `cf` in the catalog, before its first write.
    fn catalog(&self, cf: &str) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(&self.cf(META_CF)?, integrity::catalog_key(cf), []);
        self.write(batch)
    }

    /// Persists `now` as the time high-water mark unless the persisted one is within a slot.
    fn raise_clock(&self, now: u64) -> Result<()> {
        if !self.clock_due(now) {
            return Ok(());
        }
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.db
            .put_cf_opt(&self.cf(META_CF)?, CLOCK_KEY, now.to_be_bytes(), &options)
            .map_err(|e| Error::rocks("writing the time high-water mark", &e))?;
        self.clock_written.store(now, Ordering::Relaxed);
        Ok(())
    }

    /// Whether time `t` is a slot or more past the persisted high-water mark, so that it is
    /// due to be persisted.
    fn clock_due(&self, t: u64) -> bool {
        t >= self
            .clock_written
            .load(Ordering::Relaxed)
            .saturating_add(self.window.slot_ms)
    }

    /// A u64 kept under `key` in `meta` (`what` names it in errors).
    fn stored_u64(&self, key: &[u8], what: &str) -> Result<Option<u64>> {
        let stored = self
            .db
            .get_pinned_cf(&self.cf(META_CF)?, key)
            .map_err(|e| Error::rocks(format!("reading {what}"), &e))?;
        stored.map(|v| decode_u64(&v, || what.into())).transpose()
    }

    /// Writes a group of transactions in one batch through the write-ahead log: marks into the
    /// newest generation (opening a new one when time has passed its end), rows into their
    /// tables (created on first use), producers' high-water marks, offsets, and outbox events
    /// numbered in commit order.
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
        // Each ID space the group marks in, with its newest mark time, in space order (the order
        // in which writers take the spaces' locks).
        let mut spaces: Vec<(&Arc<Generations>, u64)> = Vec::new();
        for mark in group.iter().flat_map(|s| &s.marks) {
            match spaces.iter_mut().find(|(g, _)| Arc::ptr_eq(g, &mark.space)) {
                Some((_, t)) => *t = (*t).max(mark.value.at),
                None => spaces.push((&mark.space, mark.value.at)),
            }
        }
        spaces.sort_by_key(|(g, _)| g.space);
        let latest = spaces.iter().map(|&(_, t)| t).max();
        // Rollovers come first, with no space locked: a rollover locks its space to write.
        for &(space, t) in &spaces {
            self.cover(space, t)?;
        }
        // Holding each space's read lock across the write keeps its newest generation from being
        // dropped. A dropped namespace has none: its marks are left out, as if written just
        // before the drop deleted them.
        let mut targets = Vec::with_capacity(spaces.len());
        for &(space, t) in &spaces {
            let list = space.read();
            let cf = self.newest_cf(space.space, &list, t)?;
            targets.push((space, list, cf));
        }
        for (space, list, cf) in &targets {
            if cf.is_some() {
                filter_marks(group, space, list);
            }
        }
        let mut outbox_next = group
            .iter()
            .any(|s| !s.outbox.is_empty())
            .then(|| self.outbox_next.lock());
        let mut seq = outbox_next.as_deref().copied().unwrap_or(0);
        let mut batch = WriteBatch::default();
        // Once a slot, a batch of marks raises the persisted time high-water mark.
        let clock = latest.filter(|&t| self.clock_due(t));
        if let Some(t) = clock {
            batch.put_cf(&self.cf(META_CF)?, CLOCK_KEY, t.to_be_bytes());
        }
        let mut ranges = Vec::with_capacity(group.len());
        let mut encoded = Vec::new();
        let (offsets_cf, outbox_cf) = (self.cf(OFFSETS_CF)?, self.cf(OUTBOX_CF)?);
        let producers_cf = self.cf(PRODUCERS_CF)?;
        for staged in group {
            for mark in &staged.marks {
                let target = targets.iter().find(|(g, ..)| Arc::ptr_eq(g, &mark.space));
                if let Some((.., Some(cf))) = target {
                    encoded.clear();
                    mark.value.encode_into(&mut encoded);
                    batch.put_cf(cf, mark.fp.key(), &encoded);
                }
            }
            for (row, i) in staged.rows.iter().zip(&mut row_cf) {
                let cf = &tables[i].1;
                match &row.value {
                    Some(value) => batch.put_cf(cf, &row.key, value),
                    None => batch.delete_cf(cf, &row.key),
                }
            }
            for sequence in &staged.sequences {
                batch.put_cf(&producers_cf, &sequence.producer, sequence.record.encode());
            }
            for offset in &staged.offsets {
                let value = offset.value.to_be_bytes();
                if offset.reset {
                    batch.put_cf(&offsets_cf, &offset.key, value);
                } else {
                    batch.merge_cf(&offsets_cf, &offset.key, value);
                }
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
        drop(targets);
        if let Some(t) = clock {
            self.clock_written.fetch_max(t, Ordering::Relaxed);
        }
        Ok(ranges)
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

    /// Sizes memtables for `budget` bytes of RocksDB memory, as an open would: the share of a
    /// store whose block cache and write buffer manager are shared with others, which shrinks
    /// as more stores share them. Applies to every column family open and to those created
    /// later, once the size is half or double the current one; a memtable already larger than
    /// its new size flushes at its next write.
    ///
    /// # Errors
    /// A storage error if RocksDB refuses the new size.
    pub(crate) fn resize_memtables(&self, budget: usize) -> Result<()> {
        let target = Sizing::new(self.capacity, budget).write_buffer;
        // Only a change by half or double resizes: each resize rewrites RocksDB's OPTIONS file
        // for every column family, and a share changes at every assignment of a partition.
        let current = self.memtable_size.load(Ordering::Relaxed);
        if target > current / 2 && target < current.saturating_mul(2) {
            return Ok(());
        }
        self.memtable_size.store(target, Ordering::Relaxed);
        let size = options::in_memory(target);
        self.generation_options.lock().set_write_buffer_size(size);
        self.table_options.lock().set_write_buffer_size(size);
        let names = Db::list_cf(&Options::default(), &self.path)
            .map_err(|e| Error::rocks("listing column families", &e))?;
        let value = size.to_string();
        for name in &names {
            if let Some(cf) = self.db.cf_handle(name) {
                self.db
                    .set_options_cf(&cf, &[("write_buffer_size", &value)])
                    .map_err(|e| Error::rocks(format!("resizing the memtables of {name}"), &e))?;
            }
        }
        Ok(())
    }

    /// Makes every write so far survive power loss.
    pub(crate) fn sync_wal(&self) -> Result<()> {
        self.db
            .flush_wal(true)
            .map_err(|e| Error::rocks("syncing the write-ahead log", &e))
    }

    fn check_poison(&self) -> Result<()> {
        match self.poisoned.get() {
            Some(cause) => Err(Error::Poisoned {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Writes `batch`, synced as the durability setting says.
    fn write(&self, batch: WriteBatch) -> Result<()> {
        self.write_with(batch, self.sync)
    }

    /// The one place a batch reaches RocksDB, synced if `sync`. A failure poisons the store, and
    /// so does a panic (caught here, so that every write, outbox acks included, ends in a
    /// result).
    fn write_with(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        self.check_poison()?;
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        #[cfg(any(test, fuzzing))]
        self.fault.writing();
        let write = || {
            self.fallible(
                fault::Op::Write,
                || "writing to the store".into(),
                || self.db.write_opt(batch, &options),
            )
        };
        match panic::catch_unwind(AssertUnwindSafe(write)) {
            Ok(written) => written.map_err(|e| self.poison(e)),
            Err(panic) => Err(self.poison_after_panic(panic.as_ref())),
        }
    }

    /// Poisons the store after a write panicked (its fate is unknown) and returns the error
    /// its callers get.
    pub(crate) fn poison_after_panic(&self, panic: &(dyn std::any::Any + Send)) -> Error {
        let message = panic_message(panic).unwrap_or("a panic without a message");
        let cause = format!("a write panicked: {message}");
        self.poisoned.get_or_init(|| cause.clone());
        Error::Poisoned { cause }
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
            self.catalog(cf)?;
        }
        drop(options);
        self.cf(cf)
    }

    /// Runs a RocksDB call through the fault point (which does nothing outside tests and
    /// fuzzing); `what` names the operation in an error.
    #[cfg_attr(not(any(test, fuzzing)), allow(clippy::unused_self))]
    fn fallible<T>(
        &self,
        op: fault::Op,
        what: impl FnOnce() -> String,
        call: impl FnOnce() -> Result<T, rocksdb::Error>,
    ) -> Result<T> {
        #[cfg(any(test, fuzzing))]
        let strike = self.fault.tick(op);
        #[cfg(not(any(test, fuzzing)))]
        let _ = op;
        #[cfg(any(test, fuzzing))]
        if strike == Some(Strike::Before) {
            return Err(fault::FaultPoint::error(op, Strike::Before));
        }
        let result = call().map_err(|e| Error::rocks(what(), &e));
        #[cfg(any(test, fuzzing))]
        if let (Ok(_), Some(strike)) = (&result, strike) {
            return Err(fault::FaultPoint::error(op, strike));
        }
        result
    }

    /// RocksDB's memory: the block cache's usage (memtables included, as they are charged to
    /// it) and the memtables'.
    pub(crate) fn memory_usage(&self) -> (u64, u64) {
        (
            self.cache.get_usage() as u64,
            self.write_buffers.get_usage() as u64,
        )
    }

    /// Drops of dead generations that failed since open.
    pub(crate) fn failed_drops(&self) -> u64 {
        self.failed_drops.load(Ordering::Relaxed)
    }

    /// Marks asked of RocksDB since open ([`Stats::generation_reads`](crate::Stats)).
    pub(crate) fn generation_reads(&self) -> u64 {
        self.generation_reads.load(Ordering::Relaxed)
    }

    fn cf(&self, name: &str) -> Result<Arc<BoundColumnFamily<'_>>> {
        self.db.cf_handle(name).ok_or_else(|| Error::Corruption {
            what: format!("column family {name}"),
            detail: "expected but not open".into(),
        })
    }
}

/// Adds the marks of `group` in `space` to the filter of its newest generation (in `list`),
/// which they are written to: before the write, so that a filter holds every mark its
/// generation may hold.
fn filter_marks(group: &[&Staged], space: &Arc<Generations>, list: &generations::List) {
    if let Some(filter) = list.live.last().and_then(|g| g.filter.as_ref()) {
        let marks = group.iter().flat_map(|s| &s.marks);
        filter.insert(marks.filter(|m| Arc::ptr_eq(&m.space, space)).map(|m| m.fp));
    }
}

/// The message a panic was raised with, if it has one.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> Option<&str> {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
}

fn corrupt_layout(path: &std::path::Path, detail: String) -> Error {
    Error::Corruption {
        what: format!("column families of {}", path.display()),
        detail,
    }
}
