//! The cold tier: RocksDB on local disk.
//!
//! Column families: `meta` (the [`meta`] record) and one per [`generations`] generation of
//! marks (key: the 16-byte fingerprint, value: the mark time as 8 big-endian bytes of
//! milliseconds since the Unix epoch). `docs/format.md` describes the layout.

mod generations;
mod meta;
mod options;

use crate::config::{Durability, Settings};
use crate::error::{Error, Result};
use crate::id::{Fingerprint, namespace_seed};
use crate::window::Window;
use generations::Generation;
use meta::{FORMAT_VERSION, Meta};
use options::Sizing;
use parking_lot::{Mutex, RwLock};
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, FlushOptions, MultiThreaded, Options, WriteBatch,
    WriteOptions,
};
use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

type Db = DBWithThreadMode<MultiThreaded>;

const META_CF: &str = "meta";
const META_KEY: &[u8] = b"meta";
/// The file whose lock marks the directory as in use. RocksDB's own `LOCK` is not enough: it
/// is taken only after RocksDB has started to write into the directory.
pub(crate) const LOCK_FILE: &str = "dedupstore.lock";

pub(crate) struct Cold {
    // Field order is drop order: the database closes before the lock is released.
    db: Db,
    generations: RwLock<Vec<Generation>>,
    generation_options: Mutex<Options>,
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

impl Cold {
    /// Opens (or creates) the store at `settings.path`. Reads only the list of column families
    /// and the meta record: nothing proportional to the window.
    pub(crate) fn open(settings: &Settings, now: u64) -> Result<Opened> {
        let path = settings.path.clone();
        fs::create_dir_all(&path)
            .map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        let existing = inspect(&path)?;
        let lock = lock(&path)?;

        let window = Window::new(settings.window_ms, settings.slots);
        let sizing = Sizing::for_capacity(settings.capacity);
        let cache = rocksdb::Cache::new_lru_cache(options::in_memory(sizing.block_cache));
        let mut generations = Vec::new();
        let mut descriptors = Vec::new();
        for name in existing.iter().chain(std::iter::once(&META_CF.to_owned())) {
            if descriptors
                .iter()
                .any(|d: &ColumnFamilyDescriptor| d.name() == name)
            {
                continue;
            }
            let options = match Generation::parse(name) {
                Some(Ok(g)) => {
                    generations.push(g);
                    options::generation(sizing, &cache)
                }
                Some(Err(detail)) => return Err(corrupt_layout(&path, detail)),
                None if name == META_CF || name == rocksdb::DEFAULT_COLUMN_FAMILY_NAME => {
                    options::database(sizing)
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
        generations.sort_by_key(|g| g.start);

        let db = Db::open_cf_descriptors(&options::database(sizing), &path, descriptors)
            .map_err(|e| Error::rocks(format!("opening {}", path.display()), &e))?;
        let cold = Cold {
            db,
            generations: RwLock::new(generations),
            generation_options: Mutex::new(options::generation(sizing, &cache)),
            window,
            span: generations::span(window),
            sync: settings.durability == Durability::Synced,
            path,
            _lock: lock,
        };
        cold.check_meta(settings, now)?;
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

    /// Writes `marks` (fingerprint, mark time) in one batch through the write-ahead log, into
    /// the newest generation (opening a new one when time has passed its end).
    pub(crate) fn write_marks(&self, marks: &[(Fingerprint, u64)]) -> Result<()> {
        let Some(latest) = marks.iter().map(|m| m.1).max() else {
            return Ok(());
        };
        loop {
            // Holding the read lock across the write keeps the generation from being dropped.
            let generations = self.generations.read();
            if let Some(newest) = generations.last().filter(|g| latest < g.end) {
                let cf = self.cf(&newest.name)?;
                let mut batch = WriteBatch::default();
                for (fp, t) in marks {
                    batch.put_cf(&cf, fp.key(), t.to_be_bytes());
                }
                return self.write(batch);
            }
            drop(generations);
            self.open_generation(latest)?;
        }
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
            let cf = self.cf(&g.name)?;
            let found = self
                .db
                .get_pinned_cf(&cf, key)
                .map_err(|e| Error::rocks(format!("reading {}", g.name), &e))?;
            if let Some(value) = found {
                let t = decode_time(&value).ok_or_else(|| Error::Corruption {
                    what: format!("mark in {}", g.name),
                    detail: format!("value of {} bytes, expected 8", value.len()),
                })?;
                if self.window.is_live(t, now) {
                    return Ok(Some(t));
                }
            }
        }
        Ok(None)
    }

    /// Flushes every memtable to table files and syncs the write-ahead log.
    pub(crate) fn flush(&self) -> Result<()> {
        let names: Vec<String> = self
            .generations
            .read()
            .iter()
            .map(|g| g.name.clone())
            .collect();
        for name in names.iter().map(String::as_str).chain([META_CF]) {
            if let Ok(cf) = self.cf(name) {
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

    fn write(&self, batch: WriteBatch) -> Result<()> {
        let mut options = WriteOptions::default();
        options.set_sync(self.sync);
        self.db
            .write_opt(batch, &options)
            .map_err(|e| Error::rocks("writing to the store", &e))
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
        let keep_from = generations.len() - usize::from(!include_newest && !generations.is_empty());
        let dead: Vec<usize> = (0..keep_from)
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

    fn cf(&self, name: &str) -> Result<std::sync::Arc<rocksdb::BoundColumnFamily<'_>>> {
        self.db.cf_handle(name).ok_or_else(|| Error::Corruption {
            what: format!("column family {name}"),
            detail: "listed but not open".into(),
        })
    }
}

/// The time stored in a mark's value.
fn decode_time(value: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(value.try_into().ok()?))
}

fn corrupt_layout(path: &Path, detail: String) -> Error {
    Error::Corruption {
        what: format!("column families of {}", path.display()),
        detail,
    }
}

fn expected_format() -> String {
    format!("a dedupstore (format {FORMAT_VERSION}) or an empty directory")
}

/// The column families of the store at `path` (none if it is new), refusing directories that
/// hold something else. Writes nothing.
fn inspect(path: &Path) -> Result<Vec<String>> {
    if path.join("CURRENT").exists() {
        let names = Db::list_cf(&Options::default(), path).map_err(|e| {
            Error::rocks(format!("listing column families of {}", path.display()), &e)
        })?;
        if !names.iter().any(|n| n == META_CF) {
            return Err(Error::IncompatibleFormat {
                path: path.to_owned(),
                found: format!("a RocksDB database with column families {names:?}"),
                expected: expected_format(),
            });
        }
        return Ok(names);
    }
    let entries =
        fs::read_dir(path).map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // What RocksDB leaves behind if creating a database was interrupted before CURRENT.
        let leftover = name == LOCK_FILE
            || ["LOCK", "LOG", "IDENTITY"].contains(&name.as_ref())
            || ["LOG.old.", "MANIFEST-", "OPTIONS-"]
                .iter()
                .any(|p| name.starts_with(p));
        if !leftover {
            return Err(Error::IncompatibleFormat {
                path: path.to_owned(),
                found: format!("a directory that holds {name:?} and no database"),
                expected: expected_format(),
            });
        }
    }
    Ok(Vec::new())
}

/// Takes the directory's lock: an exclusive `flock`, which also conflicts with a second open in
/// the same process. Released when the returned file is closed.
fn lock(path: &Path) -> Result<File> {
    let lock_path = path.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", lock_path.display()), e))
        }
    }
}
