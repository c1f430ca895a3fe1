//! The life of generations: opening the next one as time passes, reading marks across the live
//! ones, and dropping those whose marks are all dead.

use super::fault::{self, Op};
use super::filter::Filter;
use super::generations::{Generation, Generations, List};
use super::{Cold, META_CF, MarkValue};
use super::{integrity, saved_filters};
use crate::error::{Error, Result};
use crate::id::Fingerprint;
use rocksdb::{BoundColumnFamily, WriteBatch, WriteOptions};
use std::sync::Arc;
use std::sync::atomic::Ordering;

impl Cold {
    /// The newest live mark of `fp` in `space` at `now`, looking through every live generation,
    /// newest first. A generation's filter ([`Generation::filter`]) rules out most of those that
    /// do not hold it; RocksDB is read for the rest.
    pub(crate) fn find_live(
        &self,
        space: &Generations,
        fp: Fingerprint,
        now: u64,
    ) -> Result<Option<MarkValue>> {
        let key = fp.key();
        let list = space.read();
        for g in list.live.iter().rev() {
            if space.window.range_expired(g.end, now) {
                break; // it and every older generation hold only dead marks
            }
            if g.filter.as_ref().is_some_and(|f| !f.may_hold(fp)) {
                continue;
            }
            #[cfg(any(test, fuzzing))]
            self.fault.reading(&key);
            self.generation_reads.fetch_add(1, Ordering::Relaxed);
            let cf = self.cf(&g.name)?;
            let found = self.fallible(
                Op::Read,
                || format!("reading {}", g.name),
                || self.db.get_pinned_cf(&cf, key),
            )?;
            if let Some(value) = found {
                let mark = MarkValue::decode(&value, || format!("a mark in {}", g.name))?;
                if space.window.is_live(mark.at, now) {
                    return Ok(Some(mark));
                }
            }
        }
        Ok(None)
    }

    /// [`find_live`](Self::find_live) for many fingerprints, each asked at its own time: one
    /// `multi_get` a live generation, newest first, for those not found in a newer one and not
    /// ruled out by its filter.
    pub(crate) fn find_live_many(
        &self,
        space: &Generations,
        asks: &[(Fingerprint, u64)],
    ) -> Result<Vec<Option<MarkValue>>> {
        let mut found: Vec<Option<MarkValue>> = asks.iter().map(|_| None).collect();
        let mut open: Vec<usize> = (0..asks.len()).collect();
        let list = space.read();
        for g in list.live.iter().rev() {
            // Older generations end earlier: once one holds only dead marks for an ask, so do
            // all after it.
            open.retain(|&i| !space.window.range_expired(g.end, asks[i].1));
            if open.is_empty() {
                break;
            }
            let (read, ruled_out): (Vec<usize>, Vec<usize>) = match &g.filter {
                Some(filter) => open.into_iter().partition(|&i| filter.may_hold(asks[i].0)),
                None => (open, Vec::new()),
            };
            if read.is_empty() {
                open = ruled_out;
                continue;
            }
            let keys: Vec<_> = read.iter().map(|&i| asks[i].0.key()).collect();
            #[cfg(any(test, fuzzing))]
            for key in &keys {
                self.fault.reading(key);
            }
            self.generation_reads
                .fetch_add(keys.len() as u64, Ordering::Relaxed);
            let cf = self.cf(&g.name)?;
            let values = self.fallible(
                Op::Read,
                || format!("reading {}", g.name),
                || {
                    self.db
                        .batched_multi_get_cf(&cf, &keys, false)
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()
                },
            )?;
            // Those the filter ruled out go on to older generations too.
            let mut still = ruled_out;
            for (i, value) in read.into_iter().zip(values) {
                if let Some(value) = value {
                    let mark = MarkValue::decode(&value, || format!("a mark in {}", g.name))?;
                    if space.window.is_live(mark.at, asks[i].1) {
                        found[i] = Some(mark);
                        continue;
                    }
                }
                still.push(i);
            }
            open = still;
        }
        Ok(found)
    }

    /// Makes sure a generation of `space` holds marks made at `t` (unless its namespace was
    /// dropped): creates the next one and records it. Returns whether this call created one.
    /// Only creators wait for each other here; readers and writers of marks before `t` go on. A
    /// failure leaves the list as it was (a column family RocksDB created before failing is found
    /// and recorded by the next attempt).
    pub(super) fn cover(&self, space: &Arc<Generations>, t: u64) -> Result<bool> {
        let covered = |list: &List| list.dropped || list.live.last().is_some_and(|g| t < g.end);
        if covered(&space.read()) {
            return Ok(false);
        }
        // The options' lock serialises creators.
        let options = self.generation_options.lock();
        let list = space.read();
        if covered(&list) {
            return Ok(false); // another writer got here first
        }
        let next = Generation::next(space.space, t, space.span, list.live.last());
        drop(list);
        if self.db.cf_handle(&next.name).is_none() {
            self.fallible(
                Op::Create,
                || format!("creating {}", next.name),
                || self.db.create_cf(&next.name, &options),
            )?;
        }
        self.catalog(&next.name)?;
        // Recorded before the next creator may look: two creators that both found the list
        // uncovered would otherwise both add the generation, and the filter of the first copy,
        // which receives no marks, would be saved as that of a sealed generation.
        space.write().live.push(next);
        drop(options);
        self.rolled.lock().push((Arc::clone(space), t));
        Ok(true)
    }

    /// The column family of the newest generation of `list` (of space `space`), which must hold
    /// marks made at `t`; `None` if the namespace was dropped.
    pub(super) fn newest_cf(
        &self,
        space: u32,
        list: &List,
        t: u64,
    ) -> Result<Option<Arc<BoundColumnFamily<'_>>>> {
        if list.dropped {
            return Ok(None);
        }
        match list.live.last() {
            // Only this space's rollover adds generations, and only a drop of its namespace
            // takes away the newest one.
            Some(g) if t < g.end => self.cf(&g.name).map(Some),
            _ => Err(Error::Storage {
                context: format!("writing marks of ID space {space}"),
                detail: format!("no generation holds mark time {t}"),
            }),
        }
    }

    /// Drops the generations that died by the last rollover of each space that rolled over
    /// since the last call. Writers call it once their write is settled and the writer token
    /// released, so it delays no other write, and nothing here can fail a write: a failed drop
    /// is retried at the next rollover or open.
    ///
    /// The generation that stopped receiving marks is not flushed here: RocksDB flushes it once
    /// the write-ahead log outgrows `max_total_wal_size`, and a flush requested now could wait
    /// out a write stall.
    pub(crate) fn maintain(&self) {
        let rolled = std::mem::take(&mut *self.rolled.lock());
        for (space, t) in rolled {
            self.reap(&space, t, false);
            let (sealed, _) = unsaved_filters(&space);
            if let Err(e) = self.save_filters(&sealed, &[]) {
                tracing::warn!(space = space.space, "saving sealed filters failed: {e}");
            }
        }
    }

    /// Saves, before the store closes, the filters of each of `spaces`: those of generations
    /// sealed since their last save, and the newest's. Nothing may be written after.
    pub(crate) fn save_filters_at_close<'a>(
        &self,
        spaces: impl IntoIterator<Item = &'a Generations>,
    ) -> Result<()> {
        let (mut sealed, mut closing) = (Vec::new(), Vec::new());
        for space in spaces {
            let (s, c) = unsaved_filters(space);
            sealed.extend(s);
            closing.extend(c);
        }
        self.save_filters(&sealed, &closing)
    }

    /// Drops every generation of `space` whose marks are all dead at `now`, the newest only if
    /// `include_newest` (writers may be about to write into it). Each leaves the list, then the
    /// catalog, before RocksDB drops it, so no reader looks it up meanwhile; one whose drop fails
    /// goes back into the list, to be dropped by a later call.
    pub(super) fn reap(&self, space: &Generations, now: u64, include_newest: bool) {
        let dead: Vec<Generation> = {
            let mut list = space.write();
            let live = &mut list.live;
            let candidates = live.len() - usize::from(!include_newest && !live.is_empty());
            let first_live = (0..candidates)
                .find(|&i| !space.window.range_expired(live[i].end, now))
                .unwrap_or(candidates);
            live.drain(..first_live).collect()
        };
        let failed = self.drop_generations(dead);
        if failed.is_empty() {
            return;
        }
        let mut list = space.write();
        if list.dropped {
            return; // orphans now, dropped at the next open
        }
        for g in failed {
            let at = list.live.partition_point(|other| other.start < g.start);
            list.live.insert(at, g);
        }
    }

    /// Drops each of `generations` ([`drop_generation`](Self::drop_generation)); returns those
    /// whose drop failed, counted in [`failed_drops`](Self::failed_drops).
    pub(super) fn drop_generations(&self, generations: Vec<Generation>) -> Vec<Generation> {
        generations
            .into_iter()
            .filter(|g| {
                let failed = self.drop_generation(g).is_err();
                if failed {
                    self.failed_drops.fetch_add(1, Ordering::Relaxed);
                }
                failed
            })
            .collect()
    }

    /// Drops one generation: out of the catalog first, durably (a catalogued column family that
    /// is gone would read as damage at the next open), then out of RocksDB.
    fn drop_generation(&self, g: &Generation) -> Result<()> {
        let mut synced = WriteOptions::default();
        synced.set_sync(true);
        // No filter of it is saved after its records are deleted: see `save_filters`.
        let _saving = self.filter_saves.lock();
        let drop = || {
            if let Some(meta) = self.db.cf_handle(META_CF) {
                let mut batch = WriteBatch::default();
                batch.delete_cf(&meta, integrity::catalog_key(&g.name));
                saved_filters::delete(&mut batch, &meta, &g.name);
                self.db.write_opt(batch, &synced)?;
            }
            self.db.drop_cf(&g.name)
        };
        self.fallible(fault::Op::Drop, String::new, drop)
    }
}

/// The filters of `space` to save: those of generations that receive no more marks and are not
/// saved as such yet, and the newest generation's.
type Named = Vec<(String, Arc<Filter>)>;
fn unsaved_filters(space: &Generations) -> (Named, Named) {
    let list = space.read();
    let named = |g: &Generation| g.filter.as_ref().map(|f| (g.name.clone(), Arc::clone(f)));
    let Some((newest, older)) = list.live.split_last() else {
        return (Vec::new(), Vec::new());
    };
    let sealed = older
        .iter()
        .filter(|g| g.filter.as_ref().is_some_and(|f| !f.is_sealed()))
        .filter_map(named)
        .collect();
    (sealed, named(newest).into_iter().collect())
}
