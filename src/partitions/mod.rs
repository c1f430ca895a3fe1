//! [`Partitions`]: one store per `(stream, partition)` under one root directory, opened on
//! assignment and checkpointed on revocation, all within one memory budget.
//!
//! The unit that moves between consumer instances is a partition's store. A consumer calls
//! [`assign`](Partitions::assign) and [`revoke`](Partitions::revoke) from its broker's rebalance
//! callbacks: a revoked partition's store is checkpointed and published to the
//! [`Checkpoints`](crate::checkpoint::Checkpoints) destination, and an assigned one is restored
//! from the newest checkpoint there (or reopened from a local copy at least as new), in the
//! background, so that the consumer's poll loop never waits longer than it chooses
//! ([`wait`](Partitions::wait)). `docs/scaling.md` gives the whole protocol.

mod builder;
mod prepare;

pub use builder::PartitionsBuilder;

use crate::checkpoint::{Checkpoints, Published};
use crate::config::StoreBuilder;
use crate::error::{Error, Result};
use crate::persist::lock_directory;
use crate::settings::SharedRocksDb;
use crate::store::Store;
use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The longest stream name a `Partitions` takes (Kafka's limit on topic names).
pub const MAX_PARTITION_STREAM: usize = 249;

/// The stores of the partitions a consumer instance is assigned, under one root directory.
///
/// Each `(stream, partition)` has its own store at `<root>/<stream>/<partition>`. They share one
/// memory budget: one RocksDB block cache (with every memtable charged to it) for all, and the
/// in-memory tiers' share split evenly among the partitions open, again at each assignment and
/// revocation.
///
/// ```
/// use dedupstore::checkpoint::Checkpoints;
/// use dedupstore::{CommitOutcome, Partitions};
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let checkpoints = Checkpoints::local(dir.path().join("checkpoints"))?;
/// let a = Partitions::builder(dir.path().join("instance-a")).checkpoints(checkpoints.clone()).open()?;
/// a.assign("orders", 7)?;
/// let p = a.wait("orders", 7, Duration::from_secs(5))?.expect("nothing to restore");
/// let mut txn = p.store().transaction();
/// txn.mark("order-1")?.set_offset("orders", 7, 100)?;
/// assert!(matches!(txn.commit()?, CommitOutcome::Committed(_)));
/// a.revoke("orders", 7)?; // checkpointed and published
///
/// let b = Partitions::builder(dir.path().join("instance-b")).checkpoints(checkpoints).open()?;
/// b.assign("orders", 7)?;
/// let p = b.wait("orders", 7, Duration::from_secs(5))?.expect("restored in time");
/// assert_eq!(p.stored_offset(), Some(100)); // resume after it
/// assert!(p.store().contains("order-1")?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Partitions {
    shared: Arc<Shared>,
}

struct Shared {
    root: PathBuf,
    template: StoreBuilder,
    rocksdb: SharedRocksDb,
    rocksdb_budget: usize,
    /// The in-memory tiers' share of the budget, split among the open partitions.
    hot_budget: usize,
    /// The least one partition's in-memory tier gets (64 KiB per stripe).
    min_hot: usize,
    checkpoints: Option<Checkpoints>,
    keep_checkpoints: usize,
    state: Mutex<HashMap<Key, Entry>>,
    /// Notified whenever a restore ends.
    changed: Condvar,
    counters: Counters,
    /// One lock per partition, held while its directory is prepared or handed off, so that a
    /// revoked restore still winding down and the next assignment never share it.
    guards: Mutex<HashMap<Key, Arc<Mutex<()>>>>,
    _lock: crate::persist::DirLock,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    stream: String,
    partition: u32,
}

enum Entry {
    /// Being opened or restored in the background; `cancel` gives it up.
    Preparing {
        cancel: Arc<AtomicBool>,
    },
    Ready(Partition),
    /// The preparation failed; [`Partitions::wait`] reports it once.
    Failed(Error),
}

/// What an assigned partition's store started from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartedFrom {
    /// The local copy left by an earlier assignment to this instance (as new as any
    /// checkpoint, or newer).
    LocalCopy,
    /// The checkpoint of this name, restored.
    Checkpoint {
        /// The checkpoint's name at the destination.
        name: String,
    },
    /// Nothing: no checkpoint and no local copy existed, so the store started empty and its
    /// dedup knows nothing of earlier messages. Counted in
    /// [`PartitionsStats::started_without_checkpoint`] and logged.
    Nothing,
}

/// An assigned partition: its store, how it started, and where to resume.
#[derive(Clone, Debug)]
pub struct Partition {
    stream: String,
    number: u32,
    store: Store,
    started_from: StartedFrom,
    stored_offset: Option<u64>,
    took: Duration,
}

impl Partition {
    /// The partition's store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The stream.
    #[must_use]
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// The partition number.
    #[must_use]
    pub fn partition(&self) -> u32 {
        self.number
    }

    /// What the store started from.
    #[must_use]
    pub fn started_from(&self) -> &StartedFrom {
        &self.started_from
    }

    /// The offset stored for this `(stream, partition)` when the store became ready: resume
    /// the partition from it (seek the broker there), whatever the broker's own committed
    /// position says, so that effects replay onto the store's state exactly.
    #[must_use]
    pub fn stored_offset(&self) -> Option<u64> {
        self.stored_offset
    }

    /// How long the store took to become ready (open, or download, verify and open).
    #[must_use]
    pub fn took(&self) -> Duration {
        self.took
    }
}

/// Counters and sizes of a [`Partitions`], for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionsStats {
    /// Partitions whose store is ready.
    pub ready: usize,
    /// Partitions being opened or restored.
    pub preparing: usize,
    /// Stores reopened from a local copy, since open.
    pub opened_local: u64,
    /// Stores restored from a checkpoint.
    pub restored: u64,
    /// Stores that started empty, with no checkpoint or local copy to start from: their dedup
    /// knew nothing of earlier messages.
    pub started_without_checkpoint: u64,
    /// Checkpoints that could not be restored (damaged, unreadable): each was skipped for an
    /// older one.
    pub failed_restores: u64,
    /// Checkpoints published.
    pub checkpoints_published: u64,
    /// Bytes uploaded by those publications (files the destination held already left out).
    pub checkpoint_bytes_uploaded: u64,
    /// Checkpoints that failed to be taken or published.
    pub failed_checkpoints: u64,
    /// The whole memory budget.
    pub memory_budget: u64,
    /// Heap bytes of every ready partition's in-memory tier.
    pub hot_bytes: u64,
    /// Bytes in the shared RocksDB block cache (memtables included).
    pub block_cache_bytes: u64,
}

#[derive(Default)]
struct Counters {
    opened_local: AtomicU64,
    restored: AtomicU64,
    started_without_checkpoint: AtomicU64,
    failed_restores: AtomicU64,
    checkpoints_published: AtomicU64,
    checkpoint_bytes_uploaded: AtomicU64,
    failed_checkpoints: AtomicU64,
}

impl Partitions {
    /// A builder for the partitions under `root`, every setting at its default.
    pub fn builder(root: impl AsRef<Path>) -> PartitionsBuilder {
        PartitionsBuilder::new(root.as_ref().to_path_buf())
    }

    /// Starts to prepare the store of `partition` of `stream`, newly assigned to this instance,
    /// in the background: from a local copy if one is at least as new as the newest checkpoint,
    /// else from that checkpoint (falling back to older ones if it fails its checks), else empty
    /// (counted and logged). Assigning a partition already assigned does nothing.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a stream name that is not 1..=249 ASCII letters, digits, `.`,
    /// `_` or `-` (not starting with `.`).
    pub fn assign(&self, stream: &str, partition: u32) -> Result<()> {
        let key = Key::new(stream, partition)?;
        let cancel = Arc::new(AtomicBool::new(false));
        {
            let mut state = self.shared.state.lock();
            if state.contains_key(&key) {
                return Ok(());
            }
            state.insert(
                key.clone(),
                Entry::Preparing {
                    cancel: Arc::clone(&cancel),
                },
            );
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name(format!("dedupstore-assign-{partition}"))
            .spawn(move || {
                let started = Instant::now();
                // Held until the outcome is recorded: a store opened for a partition revoked
                // meanwhile is closed (in `finish`) before the next assignment may open it.
                let guard = shared.guard(&key);
                let _guard = guard.lock();
                let prepared = shared.prepare(&key, &cancel, started);
                shared.finish(&key, &cancel, prepared);
            });
        if let Err(e) = spawned {
            self.shared
                .state
                .lock()
                .remove(&Key::new(stream, partition)?);
            return Err(Error::io("starting a thread to prepare a partition", e));
        }
        Ok(())
    }

    /// Waits up to `timeout` for an assigned partition's store: `Some` once it is ready, `None`
    /// if it is still being restored (pause the partition and ask again at the next poll).
    ///
    /// # Errors
    /// The preparation's error, once (the partition is then unassigned: assign it again to
    /// retry): a local copy that cannot be opened and no checkpoint to fall back to, every
    /// checkpoint failing its checks, a destination that cannot be reached.
    /// [`Error::InvalidArgument`] if the partition is not assigned.
    pub fn wait(
        &self,
        stream: &str,
        partition: u32,
        timeout: Duration,
    ) -> Result<Option<Partition>> {
        let key = Key::new(stream, partition)?;
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state.lock();
        loop {
            match state.remove(&key) {
                None => {
                    return Err(Error::InvalidArgument {
                        what: "partition",
                        detail: format!("{stream}/{partition} is not assigned"),
                    });
                }
                Some(Entry::Failed(e)) => return Err(e),
                Some(Entry::Ready(p)) => {
                    state.insert(key, Entry::Ready(p.clone()));
                    return Ok(Some(p));
                }
                Some(preparing @ Entry::Preparing { .. }) => {
                    state.insert(key.clone(), preparing);
                    if self
                        .shared
                        .changed
                        .wait_until(&mut state, deadline)
                        .timed_out()
                    {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The store of `partition` of `stream`, if it is assigned and ready.
    #[must_use]
    pub fn get(&self, stream: &str, partition: u32) -> Option<Partition> {
        let key = Key::new(stream, partition).ok()?;
        match self.shared.state.lock().get(&key) {
            Some(Entry::Ready(p)) => Some(p.clone()),
            _ => None,
        }
    }

    /// The partitions assigned (ready or not), sorted.
    #[must_use]
    pub fn assigned(&self) -> Vec<(String, u32)> {
        let mut keys: Vec<_> = self
            .shared
            .state
            .lock()
            .keys()
            .map(|k| (k.stream.clone(), k.partition))
            .collect();
        keys.sort();
        keys
    }

    /// Hands a revoked partition off: waits for the transactions already submitted to its
    /// store to be written, takes a checkpoint of the store, publishes it (if a
    /// destination is set; then old checkpoints beyond
    /// [`keep_checkpoints`](PartitionsBuilder::keep_checkpoints) are pruned), closes the store
    /// and, once published and no handle of it is left, removes the local copy. A partition
    /// still being restored is given up. Call it once the partition's consumer has stopped
    /// submitting: what commits after the checkpoint is not in it, and the next owner processes
    /// those messages again from the stored offset.
    ///
    /// Returns what was published, if anything.
    ///
    /// # Errors
    /// An error taking or publishing the checkpoint: the partition is unassigned all the same,
    /// and its local copy kept (a later assignment here reopens it); the next owner restores
    /// an older checkpoint and replays from its offset.
    pub fn revoke(&self, stream: &str, partition: u32) -> Result<Option<Published>> {
        let key = Key::new(stream, partition)?;
        let entry = self.shared.state.lock().remove(&key);
        let published = match entry {
            None | Some(Entry::Failed(_)) => Ok(None),
            Some(Entry::Preparing { cancel }) => {
                cancel.store(true, Ordering::Relaxed);
                Ok(None)
            }
            Some(Entry::Ready(p)) => self.shared.hand_off(&key, p),
        };
        self.shared.rebudget();
        published
    }

    /// Takes a checkpoint of an assigned partition's store while it stays in use, and
    /// publishes it: run it periodically, so that after a crash (when no revocation
    /// checkpoints) the next owner replays only what came after it.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the partition is not ready or no destination is set; an
    /// error taking or publishing the checkpoint.
    pub fn checkpoint(&self, stream: &str, partition: u32) -> Result<Published> {
        let key = Key::new(stream, partition)?;
        let Some(p) = self.get(stream, partition) else {
            return Err(Error::InvalidArgument {
                what: "partition",
                detail: format!("{stream}/{partition} is not assigned and ready"),
            });
        };
        self.shared.publish(&key, p.store())
    }

    /// Revokes every assigned partition ([`revoke`](Self::revoke)), as a consumer shutting down
    /// cleanly does; returns the first error, after trying all.
    ///
    /// # Errors
    /// As [`revoke`](Self::revoke).
    pub fn revoke_all(&self) -> Result<()> {
        let mut first = None;
        for (stream, partition) in self.assigned() {
            if let Err(e) = self.revoke(&stream, partition) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Counters and sizes.
    #[must_use]
    pub fn stats(&self) -> PartitionsStats {
        let shared = &self.shared;
        let c = &shared.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut stats = PartitionsStats {
            opened_local: load(&c.opened_local),
            restored: load(&c.restored),
            started_without_checkpoint: load(&c.started_without_checkpoint),
            failed_restores: load(&c.failed_restores),
            checkpoints_published: load(&c.checkpoints_published),
            checkpoint_bytes_uploaded: load(&c.checkpoint_bytes_uploaded),
            failed_checkpoints: load(&c.failed_checkpoints),
            memory_budget: (shared.hot_budget + shared.rocksdb_budget) as u64,
            block_cache_bytes: shared.rocksdb.cache.get_usage() as u64,
            ..PartitionsStats::default()
        };
        for entry in shared.state.lock().values() {
            match entry {
                Entry::Ready(p) => {
                    stats.ready += 1;
                    stats.hot_bytes += p.store.stats().hot_bytes;
                }
                Entry::Preparing { .. } => stats.preparing += 1,
                Entry::Failed(_) => {}
            }
        }
        stats
    }
}

impl Shared {
    fn dir(&self, key: &Key) -> PathBuf {
        self.root.join(&key.stream).join(key.partition.to_string())
    }

    fn guard(&self, key: &Key) -> Arc<Mutex<()>> {
        Arc::clone(self.guards.lock().entry(key.clone()).or_default())
    }

    fn destination(&self, key: &Key) -> Option<Result<Checkpoints>> {
        let checkpoints = self.checkpoints.as_ref()?;
        Some(checkpoints.at(&format!("{}/{}", key.stream, key.partition)))
    }

    /// Records the end of a preparation, unless the partition was revoked meanwhile (then the
    /// store, if opened, is closed again).
    fn finish(&self, key: &Key, cancel: &Arc<AtomicBool>, prepared: Result<Partition>) {
        let mut state = self.state.lock();
        let ours = matches!(
            state.get(key),
            Some(Entry::Preparing { cancel: c }) if Arc::ptr_eq(c, cancel)
        );
        if ours {
            state.insert(
                key.clone(),
                match prepared {
                    Ok(p) => Entry::Ready(p),
                    Err(e) => Entry::Failed(e),
                },
            );
        }
        drop(state);
        self.rebudget();
        self.changed.notify_all();
    }

    /// The in-memory share of one partition, given how many are assigned.
    fn hot_share(&self, assigned: usize) -> usize {
        (self.hot_budget / assigned.max(1)).max(self.min_hot)
    }

    /// The share of RocksDB's memory one partition's memtables are sized for.
    fn rocksdb_share(&self, assigned: usize) -> usize {
        self.rocksdb_budget / assigned.max(1)
    }

    /// Splits the memory budget again among the ready partitions: the in-memory tiers' part,
    /// and the part each partition's memtables are sized for. Holds the state's lock
    /// throughout, so that no handle of a store being revoked is taken here while it closes.
    fn rebudget(&self) {
        let state = self.state.lock();
        let assigned = state.len();
        for entry in state.values() {
            let Entry::Ready(p) = entry else { continue };
            let shared = p.store.engine().set_budget_share(
                self.hot_share(assigned),
                self.rocksdb_share(assigned),
                self.rocksdb_budget,
            );
            if let Err(e) = shared {
                tracing::warn!(error = %e, "resizing a partition's memtables failed");
            }
        }
    }

    /// Checkpoints `store` into the root's staging area, publishes it and prunes old ones.
    fn publish(&self, key: &Key, store: &Store) -> Result<Published> {
        let Some(destination) = self.destination(key) else {
            return Err(Error::InvalidArgument {
                what: "checkpoints",
                detail: "no checkpoint destination is set (PartitionsBuilder::checkpoints)".into(),
            });
        };
        let published = (|| {
            let destination = destination?;
            let staging = Staging::new(&self.root, key)?;
            store.checkpoint(staging.path())?;
            let published = destination.publish(staging.path(), |_| {})?;
            if let Err(e) = destination.prune(self.keep_checkpoints) {
                tracing::warn!(stream = %key.stream, partition = key.partition, error = %e, "pruning old checkpoints failed");
            }
            Ok(published)
        })();
        let c = &self.counters;
        match &published {
            Ok(p) => {
                c.checkpoints_published.fetch_add(1, Ordering::Relaxed);
                c.checkpoint_bytes_uploaded
                    .fetch_add(p.uploaded_bytes, Ordering::Relaxed);
            }
            Err(e) => {
                c.failed_checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::error!(stream = %key.stream, partition = key.partition, error = %e, "checkpoint failed");
            }
        }
        published
    }

    /// The revocation of a ready partition: checkpoint, publish, close, remove the local copy.
    fn hand_off(&self, key: &Key, partition: Partition) -> Result<Option<Published>> {
        let started = Instant::now();
        let guard = self.guard(key);
        let _guard = guard.lock();
        // In-flight commits finish first: the committer writes in queue order, so an empty
        // transaction queued now completes once every one submitted before it is written.
        let _ = partition.store.transaction().submit()?.wait()?;
        let published = match self.checkpoints {
            Some(_) => Some(self.publish(key, &partition.store)?),
            None => None,
        };
        let dir = self.dir(key);
        let Partition { store, .. } = partition;
        store.close()?;
        // The local copy goes once it is published and no handle of it is left (the lock tells).
        if published.is_some()
            && let Ok(lock) = lock_directory(&dir)
        {
            drop(lock);
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "removing a handed-off partition's store failed");
            }
        }
        tracing::info!(stream = %key.stream, partition = key.partition, took = ?started.elapsed(), "partition handed off");
        Ok(published)
    }
}

/// A directory under the root where a checkpoint is written before it is published (on the
/// stores' file system, so that table files are hard links); removed when dropped.
struct Staging {
    path: PathBuf,
}

impl Staging {
    fn new(root: &Path, key: &Key) -> Result<Self> {
        let area = root.join(".checkpoints");
        fs::create_dir_all(&area)
            .map_err(|e| Error::io(format!("creating {}", area.display()), e))?;
        let path = area.join(format!(
            "{}-{}-{:08x}",
            key.stream,
            key.partition,
            fastrand::u32(..)
        ));
        Ok(Self { path })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        // Best effort: a leftover is removed when the root is opened again.
        let _ = fs::remove_dir_all(&self.path);
    }
}

impl Key {
    fn new(stream: &str, partition: u32) -> Result<Self> {
        let valid = !stream.is_empty()
            && stream.len() <= MAX_PARTITION_STREAM
            && !stream.starts_with('.')
            && stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(Error::InvalidName {
                what: "stream",
                name: stream.to_owned(),
                detail: format!(
                    "a partitioned stream's name is 1..={MAX_PARTITION_STREAM} ASCII letters, \
                     digits, '.', '_' or '-', not starting with '.'"
                ),
            });
        }
        Ok(Self {
            stream: stream.to_owned(),
            partition,
        })
    }
}

impl std::fmt::Debug for Partitions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Partitions")
            .field("root", &self.shared.root)
            .field("assigned", &self.assigned())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
