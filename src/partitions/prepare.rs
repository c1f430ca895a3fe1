//! Preparing an assigned partition's store: choosing between the local copy and the newest
//! checkpoint, restoring (falling back to older checkpoints), or starting empty, loudly.

use super::{Key, Partition, Shared, StartedFrom};
use crate::checkpoint::{Checkpoints, Manifest};
use crate::error::{Error, Result};
use crate::settings::PARTITION_COMMIT_QUEUE;
use crate::store::Store;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

impl Shared {
    /// Opens or restores the store of `key`, giving up once `cancel` is set. The caller holds
    /// the partition's guard.
    pub(super) fn prepare(
        &self,
        key: &Key,
        cancel: &AtomicBool,
        started: Instant,
    ) -> Result<Partition> {
        let dir = self.dir(key);
        let destination = self.destination(key).transpose()?;
        let checkpoints = match &destination {
            Some(d) => newest_first(d, key)?,
            None => Vec::new(),
        };
        let newest_offset = checkpoints
            .first()
            .map(|(_, m)| m.offset(&key.stream, key.partition));

        let mut local_failure = None;
        if holds_store(&dir) {
            match self.open(&dir) {
                Ok(store) => {
                    let local = store.offset(&key.stream, key.partition)?;
                    // `None < Some(_)`: a checkpoint with an offset beats a copy without one.
                    if newest_offset.is_none_or(|newest| newest <= local) {
                        self.counters.opened_local.fetch_add(1, Ordering::Relaxed);
                        return Ok(Partition::ready(
                            key,
                            store,
                            StartedFrom::LocalCopy,
                            started,
                        ));
                    }
                    drop(store);
                    tracing::info!(stream = %key.stream, partition = key.partition, ?local, newest = ?newest_offset, "the local copy is older than the newest checkpoint; restoring");
                }
                // A handle of the store is still open somewhere: never move it.
                Err(e @ Error::Locked { .. }) => return Err(e),
                Err(e) if checkpoints.is_empty() => return Err(e),
                Err(e) => {
                    tracing::warn!(stream = %key.stream, partition = key.partition, error = %e, "the local copy cannot be opened; restoring a checkpoint");
                    local_failure = Some(e);
                }
            }
            set_aside(&dir, local_failure.is_some())?;
        }

        let mut last_error = None;
        for (name, _) in &checkpoints {
            if cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled {
                    what: format!("assigning {}/{}", key.stream, key.partition),
                });
            }
            let Some(destination) = &destination else {
                break;
            };
            let restored = futures::executor::block_on(destination.restore_cancellable(
                name,
                &dir,
                |_| {},
                cancel,
            ));
            match restored.and_then(|_| self.open(&dir)) {
                Ok(store) => {
                    self.counters.restored.fetch_add(1, Ordering::Relaxed);
                    let start = StartedFrom::Checkpoint { name: name.clone() };
                    return Ok(Partition::ready(key, store, start, started));
                }
                Err(e @ Error::Cancelled { .. }) => return Err(e),
                Err(e) => {
                    self.counters
                        .failed_restores
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(stream = %key.stream, partition = key.partition, checkpoint = %name, error = %e, "a checkpoint failed to restore; trying an older one");
                    let _ = fs::remove_dir_all(&dir); // best effort: a partial restore
                    last_error = Some(e);
                }
            }
        }
        if let Some(e) = last_error.or(local_failure) {
            return Err(e);
        }
        let store = self.open(&dir)?;
        self.counters
            .started_without_checkpoint
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(stream = %key.stream, partition = key.partition, "partition started without a checkpoint: its dedup knows no earlier message");
        Ok(Partition::ready(key, store, StartedFrom::Nothing, started))
    }

    /// Opens the store at `dir` with its share of the memory budget.
    fn open(&self, dir: &Path) -> Result<Store> {
        let assigned = self.state.lock().len();
        let mut builder = self.template.clone();
        builder.path = dir.to_path_buf();
        let mut settings = builder.validate()?;
        settings.hot_budget = self.hot_share(assigned);
        // Memtables are sized for this partition's share; the cache they are charged to is
        // the shared one, whatever this figure.
        settings.rocksdb_budget = self.rocksdb_share(assigned);
        settings.memory_budget = settings.hot_budget + self.rocksdb_budget;
        settings.shared_rocksdb = Some(self.rocksdb.clone());
        settings.commit_queue = PARTITION_COMMIT_QUEUE;
        Store::open_with(&settings)
    }
}

impl Partition {
    fn ready(key: &Key, store: Store, start: StartedFrom, started: Instant) -> Self {
        let stored_offset = store.offset(&key.stream, key.partition).ok().flatten();
        let took = started.elapsed();
        tracing::info!(stream = %key.stream, partition = key.partition, ?start, ?stored_offset, ?took, "partition ready");
        Self {
            stream: key.stream.clone(),
            number: key.partition,
            store,
            started_from: start,
            stored_offset,
            took,
        }
    }
}

/// The checkpoints of `key` at `destination`, the best first: the highest stored offset of the
/// partition, then the newest. A manifest that cannot be read is skipped (and logged).
fn newest_first(destination: &Checkpoints, key: &Key) -> Result<Vec<(String, Manifest)>> {
    let mut found = Vec::new();
    for name in destination.list()? {
        match destination.manifest(&name) {
            Ok(manifest) => found.push((name, manifest)),
            Err(e) => {
                tracing::error!(stream = %key.stream, partition = key.partition, checkpoint = %name, error = %e, "skipping a checkpoint whose manifest cannot be read");
            }
        }
    }
    found.sort_by_key(|(name, m)| {
        std::cmp::Reverse((
            m.offset(&key.stream, key.partition),
            m.taken_ms,
            name.clone(),
        ))
    });
    Ok(found)
}

/// Whether `dir` holds anything (a store, or what a crash left of one).
fn holds_store(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Moves the local copy at `dir` out of the way of a restore: removed if it is merely older,
/// kept beside it (`<dir>.damaged-<ms>`) if it could not be opened, for a person to look at.
fn set_aside(dir: &Path, damaged: bool) -> Result<()> {
    if damaged {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        let aside = dir.with_extension(format!("damaged-{stamp}"));
        return fs::rename(dir, &aside).map_err(|e| {
            Error::io(
                format!("moving {} to {}", dir.display(), aside.display()),
                e,
            )
        });
    }
    fs::remove_dir_all(dir).map_err(|e| Error::io(format!("removing {}", dir.display()), e))
}
