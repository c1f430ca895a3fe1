//! Checkpoints: a consistent copy of a store taken while it is in use, with a [`Manifest`] of
//! what it holds, verified before it is used, and kept in an object store by [`Checkpoints`].
//!
//! A checkpoint directory holds RocksDB's checkpoint of the store (memtables flushed, table files
//! hard-linked, the rest copied), the store's identity file, and the manifest,
//! [`MANIFEST_FILE`]: the store's format and window, the time its marks span, its stored
//! offsets, its outbox position, its mark count, and the size and xxh3-128 checksum of every
//! file. A restore checks each file against the manifest, then the restored database's contents
//! against it, before the store may open.

mod files;
mod remote;

pub use files::FileEntry;
pub use remote::{Checkpoints, Pruned, Published, Transfer};

use crate::error::{Error, Result};
use crate::persist::meta::FORMAT_VERSION;
use crate::persist::{Contents, lock_directory, read_contents};
use crate::store::Store;
use files::{copy_verified, hash_files, write_atomically};
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;

/// The manifest's name inside a checkpoint directory.
pub const MANIFEST_FILE: &str = "dedupstore.checkpoint.json";
/// The manifest format this version writes and reads.
const MANIFEST_VERSION: u32 = 1;

/// What a checkpoint holds: written beside its files as [`MANIFEST_FILE`] (JSON), and kept with
/// it wherever it is published. Made by [`Store::checkpoint`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// The manifest's own format version.
    pub manifest_version: u32,
    /// The store's on-disk format version (`docs/format.md`).
    pub store_format: u32,
    /// When the checkpoint was taken: the store's time, milliseconds since the Unix epoch.
    pub taken_ms: u64,
    /// The store's retention window, in milliseconds.
    pub window_ms: u64,
    /// The slots the window is divided into.
    pub slots: u32,
    /// When the oldest generation of marks held begins, milliseconds since the Unix epoch
    /// (`None` if there is none).
    pub marks_from_ms: Option<u64>,
    /// The store's time high-water mark: at least the time of every mark held, less one slot.
    pub marks_until_ms: Option<u64>,
    /// Mark entries held, in every ID space (marks dead but not yet dropped included).
    pub marks: u64,
    /// Every stored consumer offset.
    pub offsets: Vec<StoredOffset>,
    /// Where the outbox stands.
    pub outbox: OutboxPosition,
    /// Every file of the checkpoint but the manifest, sorted by name.
    pub files: Vec<FileEntry>,
}

/// A consumer offset held by a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StoredOffset {
    /// The stream.
    pub stream: String,
    /// The partition.
    pub partition: u32,
    /// The offset stored for it.
    pub offset: u64,
}

/// The outbox of a checkpoint: events committed and not acked, and the next sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct OutboxPosition {
    /// The sequence number the next event gets.
    pub next_seq: u64,
    /// The oldest event not acked, if any.
    pub oldest_seq: Option<u64>,
    /// Events not acked.
    pub pending: u64,
}

impl Manifest {
    /// The offset stored for partition `partition` of stream `stream`, if any.
    #[must_use]
    pub fn offset(&self, stream: &str, partition: u32) -> Option<u64> {
        self.offsets
            .iter()
            .find(|o| o.stream == stream && o.partition == partition)
            .map(|o| o.offset)
    }

    /// The bytes of every file of the checkpoint, the manifest left out.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    fn new(taken_ms: u64, contents: &Contents, files: Vec<FileEntry>) -> Self {
        Self {
            manifest_version: MANIFEST_VERSION,
            store_format: contents.meta.version,
            taken_ms,
            window_ms: contents.meta.window_ms,
            slots: contents.meta.slots,
            marks_from_ms: contents.generations.iter().map(|(g, _)| g.start).min(),
            marks_until_ms: contents.clock_ms,
            marks: contents.generations.iter().map(|&(_, n)| n).sum(),
            offsets: contents
                .offsets
                .iter()
                .map(|(stream, partition, offset)| StoredOffset {
                    stream: stream.clone(),
                    partition: *partition,
                    offset: *offset,
                })
                .collect(),
            outbox: OutboxPosition {
                next_seq: contents.outbox_next,
                oldest_seq: contents.outbox_oldest,
                pending: contents.outbox_len,
            },
            files,
        }
    }

    /// The manifest as JSON.
    fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decodes a manifest read from `source`, refusing other manifest and store formats.
    fn decode(bytes: &[u8], source: &str) -> Result<Self> {
        let manifest: Self = serde_json::from_slice(bytes).map_err(|e| Error::Corruption {
            what: source.to_owned(),
            detail: format!("not a checkpoint manifest: {e}"),
        })?;
        if manifest.manifest_version != MANIFEST_VERSION || manifest.store_format > FORMAT_VERSION {
            return Err(Error::IncompatibleFormat {
                path: source.into(),
                found: format!(
                    "a checkpoint manifest of version {} of a store of format {}",
                    manifest.manifest_version, manifest.store_format
                ),
                expected: format!(
                    "manifest version {MANIFEST_VERSION}, store format {FORMAT_VERSION} or older"
                ),
            });
        }
        Ok(manifest)
    }

    /// Checks that the database restored at `dir` holds what this manifest says: its settings,
    /// its marks, its offsets and its outbox. `source` names the checkpoint in the error.
    fn check_contents(&self, dir: &Path, source: &str) -> Result<()> {
        let found = Self::new(self.taken_ms, &read_contents(dir)?, self.files.clone());
        if found == *self {
            return Ok(());
        }
        Err(Error::Corruption {
            what: source.to_owned(),
            detail: format!(
                "the restored store holds {} marks, offsets {:?} and outbox {:?}; the manifest \
                 says {} marks, offsets {:?} and outbox {:?}",
                found.marks, found.offsets, found.outbox, self.marks, self.offsets, self.outbox
            ),
        })
    }
}

impl Store {
    /// Writes a consistent checkpoint of the store into `dir` (a new directory; its parent must
    /// exist) while the store stays in use, and returns its [`Manifest`].
    ///
    /// The checkpoint holds every write acknowledged before the call: every mark in it is a
    /// duplicate in a store restored from it, and its offsets say where to resume. Writes
    /// that commit during the call may or may not be in it, each whole or not at all. Table files
    /// are hard links when `dir` is on the store's file system (then the checkpoint costs little
    /// disk until the store compacts them away), copies otherwise.
    ///
    /// ```
    /// use dedupstore::{Outcome, Store, checkpoint};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path().join("store"))?;
    /// store.check_and_mark("order-1")?;
    /// let manifest = store.checkpoint(dir.path().join("checkpoint"))?;
    /// assert_eq!(manifest.marks, 1);
    ///
    /// checkpoint::restore(dir.path().join("checkpoint"), dir.path().join("restored"))?;
    /// let restored = Store::open(dir.path().join("restored"))?;
    /// assert!(matches!(restored.check_and_mark("order-1")?, Outcome::Duplicate { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if `dir` exists; an I/O or storage error writing the
    /// checkpoint, after which nothing of it is left in `dir`.
    pub fn checkpoint(&self, dir: impl AsRef<Path>) -> Result<Manifest> {
        let dir = dir.as_ref();
        if dir.exists() {
            return Err(Error::InvalidArgument {
                what: "checkpoint directory",
                detail: format!("{} exists; a checkpoint needs a new one", dir.display()),
            });
        }
        let written = self.write_checkpoint(dir);
        if written.is_err() {
            // Best effort: the error is what the caller needs.
            let _ = fs::remove_dir_all(dir);
        }
        written
    }

    fn write_checkpoint(&self, dir: &Path) -> Result<Manifest> {
        let taken_ms = self.engine().now_millis();
        self.engine().cold.checkpoint(dir)?;
        let contents = read_contents(dir)?;
        let manifest = Manifest::new(taken_ms, &contents, hash_files(dir)?);
        write_atomically(&dir.join(MANIFEST_FILE), &manifest.encode())?;
        Ok(manifest)
    }
}

/// Writes a checkpoint of the closed store at `store_dir` into `dir` (a new directory): copies
/// its files while holding its lock, so that no process opens it meanwhile. This is what the
/// `dedupstore checkpoint` command does; a store in use is checkpointed with
/// [`Store::checkpoint`] instead. `progress` hears of the bytes copied.
///
/// # Errors
/// [`Error::Locked`] if the store is open; [`Error::IncompatibleFormat`] if `store_dir` holds
/// no database; [`Error::InvalidArgument`] if `dir` exists; an error reading the store. Nothing is left in `dir` after an
/// error.
pub fn from_closed(
    store_dir: impl AsRef<Path>,
    dir: impl AsRef<Path>,
    mut progress: impl FnMut(Transfer),
) -> Result<Manifest> {
    let (store_dir, dir) = (store_dir.as_ref(), dir.as_ref());
    let lock = lock_directory(store_dir)?;
    if !store_dir.join("CURRENT").exists() {
        return Err(Error::IncompatibleFormat {
            path: store_dir.to_owned(),
            found: "a directory without a database".into(),
            expected: "a dedupstore".into(),
        });
    }
    let staging = files::Staging::new(dir)?;
    let mut names = Vec::new();
    let mut total = 0;
    let listing = |e| Error::io(format!("listing {}", store_dir.display()), e);
    for entry in fs::read_dir(store_dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().map_err(listing)?.is_file();
        if is_file && FileEntry::belongs(&name) && name != "LOCK" {
            total += entry.metadata().map_err(listing)?.len();
            names.push(name);
        }
    }
    let mut done = Transfer { bytes: 0, total };
    for name in &names {
        let (from, to) = (store_dir.join(name), staging.path().join(name));
        let copied = fs::copy(&from, &to)
            .and_then(|copied| {
                fs::File::open(&to)?.sync_all()?;
                Ok(copied)
            })
            .map_err(|e| Error::io(format!("copying {}", from.display()), e))?;
        done.bytes += copied;
        progress(done);
    }
    drop(lock);
    let taken_ms = crate::clock::unix_millis(std::time::SystemTime::now());
    let contents = read_contents(staging.path())?;
    let manifest = Manifest::new(taken_ms, &contents, hash_files(staging.path())?);
    write_atomically(&staging.path().join(MANIFEST_FILE), &manifest.encode())?;
    staging.commit()?;
    Ok(manifest)
}

/// Reads the manifest of the checkpoint at `dir` and checks every file it lists (size and
/// checksum) and that there are no others.
///
/// # Errors
/// [`Error::Corruption`] naming the first file that is missing, extra, or differs;
/// [`Error::IncompatibleFormat`] for a manifest of another version; an I/O error.
pub fn verify(dir: impl AsRef<Path>) -> Result<Manifest> {
    let dir = dir.as_ref();
    let manifest = read_manifest(dir)?;
    let found = hash_files(dir)?;
    for listed in &manifest.files {
        let file = dir.join(&listed.name);
        match found.iter().find(|f| f.name == listed.name) {
            None => {
                return Err(Error::Corruption {
                    what: file.display().to_string(),
                    detail: format!("missing, though {MANIFEST_FILE} lists it"),
                });
            }
            Some(f) if f != listed => {
                return Err(Error::Corruption {
                    what: file.display().to_string(),
                    detail: format!(
                        "{} bytes with checksum {}; {MANIFEST_FILE} says {} bytes with {}",
                        f.size, f.xxh3, listed.size, listed.xxh3
                    ),
                });
            }
            Some(_) => {}
        }
    }
    if let Some(extra) = found
        .iter()
        .find(|f| !manifest.files.iter().any(|l| l.name == f.name))
    {
        return Err(Error::Corruption {
            what: dir.join(&extra.name).display().to_string(),
            detail: format!("not listed in {MANIFEST_FILE}"),
        });
    }
    Ok(manifest)
}

/// Restores the checkpoint at `checkpoint_dir` into `store_dir` (which must not exist, or be
/// empty), verifying it first ([`verify`]) and the restored database after. The checkpoint is
/// left as it was; open the restored store with [`Store::open`].
///
/// # Errors
/// As [`verify`]; [`Error::InvalidArgument`] if `store_dir` holds anything;
/// [`Error::Corruption`] if the restored database does not hold what the manifest says. Nothing
/// is left in `store_dir` after an error.
pub fn restore(checkpoint_dir: impl AsRef<Path>, store_dir: impl AsRef<Path>) -> Result<Manifest> {
    let (from, into) = (checkpoint_dir.as_ref(), store_dir.as_ref());
    let manifest = verify(from)?;
    let staging = files::Staging::new(into)?;
    for file in &manifest.files {
        copy_verified(
            &from.join(&file.name),
            &staging.path().join(&file.name),
            file,
        )?;
    }
    manifest.check_contents(staging.path(), &from.display().to_string())?;
    staging.commit()?;
    Ok(manifest)
}

/// Reads the manifest of the checkpoint at `dir`.
///
/// # Errors
/// [`Error::Corruption`] if it is not a manifest, [`Error::IncompatibleFormat`] if it is one of
/// another version, an I/O error reading it.
pub fn read_manifest(dir: impl AsRef<Path>) -> Result<Manifest> {
    let file = dir.as_ref().join(MANIFEST_FILE);
    let bytes = fs::read(&file).map_err(|e| Error::io(format!("reading {}", file.display()), e))?;
    Manifest::decode(&bytes, &file.display().to_string())
}
