//! Namespaces on disk: a record per namespace in column family `meta`, and their generations.
//!
//! Record `namespace/<name>` (32 bytes, integers little-endian): the namespace's number (u32),
//! slots (u32), window in milliseconds (u64), in-memory budget in bytes (u64), xxh3-64 of those
//! 24 bytes. Its marks live in generations `ns<number>.marks-<start>-<end>`. Numbers are never
//! reused (the next one is kept under `namespace_next`), so a namespace dropped and created again
//! never sees the marks of the one before.
//!
//! Dropping a namespace deletes its record first, durably, then each of its generations: a
//! generation whose namespace has no record is an orphan, and an interrupted drop leaves orphans,
//! which the next open drops.

use super::generations::{Generation, Generations, STORE_SPACE};
use super::layout::check_name;
use super::meta::field;
use super::{Cold, META_CF};
use crate::error::{Error, Result};
use crate::window::Window;
use rocksdb::WriteBatch;
use std::sync::Arc;
use xxhash_rust::xxh3::xxh3_64;

const RECORD_PREFIX: &[u8] = b"namespace/";
/// The next namespace number, u64 big-endian, in column family `meta`.
pub(super) const NEXT_KEY: &[u8] = b"namespace_next";
const LEN: usize = 32;
const BODY: usize = 24;

/// A namespace's settings, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NamespaceRecord {
    pub name: String,
    /// Its ID space: the number in its generations' names, never [`STORE_SPACE`].
    pub space: u32,
    pub window_ms: u64,
    pub slots: u32,
    /// The in-memory tier's budget, in bytes.
    pub memory_budget: u64,
}

impl NamespaceRecord {
    pub(crate) fn window(&self) -> Window {
        Window::new(self.window_ms, self.slots)
    }

    fn key(name: &str) -> Vec<u8> {
        [RECORD_PREFIX, name.as_bytes()].concat()
    }

    fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[0..4].copy_from_slice(&self.space.to_le_bytes());
        out[4..8].copy_from_slice(&self.slots.to_le_bytes());
        out[8..16].copy_from_slice(&self.window_ms.to_le_bytes());
        out[16..24].copy_from_slice(&self.memory_budget.to_le_bytes());
        let sum = xxh3_64(&out[..BODY]);
        out[BODY..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    /// Reads the record stored under `key`; anything unreadable is [`Error::Corruption`].
    fn decode(key: &[u8], value: &[u8]) -> Result<Self> {
        let name = String::from_utf8_lossy(&key[RECORD_PREFIX.len()..]).into_owned();
        let corrupt = |detail: String| Error::Corruption {
            what: format!("the record of namespace {name:?}"),
            detail,
        };
        let bytes: &[u8; LEN] = value
            .try_into()
            .map_err(|_| corrupt(format!("{} bytes, expected {LEN}", value.len())))?;
        let u32_at = |at| u32::from_le_bytes(field(bytes, at));
        let u64_at = |at| u64::from_le_bytes(field(bytes, at));
        if u64_at(BODY) != xxh3_64(&bytes[..BODY]) {
            return Err(corrupt("checksum mismatch".into()));
        }
        let record = Self {
            space: u32_at(0),
            slots: u32_at(4),
            window_ms: u64_at(8),
            memory_budget: u64_at(16),
            name: name.clone(),
        };
        let sane = record.space != STORE_SPACE
            && record.slots > 0
            && record.window_ms / u64::from(record.slots) > 0
            && check_name("namespace", &record.name).is_ok();
        if !sane {
            return Err(corrupt(format!("impossible settings {record:?}")));
        }
        Ok(record)
    }
}

/// A namespace found at open: its record and its generations.
pub(crate) struct OpenedNamespace {
    pub record: NamespaceRecord,
    pub generations: Arc<Generations>,
}

impl Cold {
    /// Reads every namespace record, gives each its generations out of `found` (which keeps the
    /// store's own and the orphans'), and sets the next namespace number past every number seen.
    pub(super) fn load_namespaces(
        &self,
        found: &mut Vec<Generation>,
    ) -> Result<Vec<OpenedNamespace>> {
        let meta = self.cf(META_CF)?;
        let mut namespaces = Vec::new();
        for entry in self.db.prefix_iterator_cf(&meta, RECORD_PREFIX) {
            let (key, value) = entry.map_err(|e| Error::rocks("reading namespace records", &e))?;
            if !key.starts_with(RECORD_PREFIX) {
                break;
            }
            let record = NamespaceRecord::decode(&key, &value)?;
            let (own, rest) = std::mem::take(found)
                .into_iter()
                .partition(|g| g.space == record.space);
            *found = rest;
            let generations = Arc::new(Generations::new(record.space, record.window(), own));
            namespaces.push(OpenedNamespace {
                record,
                generations,
            });
        }
        let stored_next = self.stored_u64(NEXT_KEY, "the next namespace number")?;
        let seen = namespaces
            .iter()
            .map(|n| n.record.space)
            .chain(found.iter().map(|g| g.space))
            .max()
            .unwrap_or(STORE_SPACE);
        let next = stored_next.unwrap_or(1).max(u64::from(seen) + 1).max(1);
        *self.namespace_next.lock() = next;
        Ok(namespaces)
    }

    /// Records a new namespace `name` (whose name the caller checked), numbering it, and returns
    /// its record and (empty) generations. The caller makes sure no namespace of that name exists.
    pub(crate) fn create_namespace(
        &self,
        name: &str,
        window: Window,
        slots: u32,
        memory_budget: u64,
    ) -> Result<OpenedNamespace> {
        let mut next = self.namespace_next.lock();
        let space = u32::try_from(*next).map_err(|_| Error::InvalidArgument {
            what: "namespace",
            detail: "every namespace number has been used".into(),
        })?;
        let record = NamespaceRecord {
            name: name.to_owned(),
            space,
            window_ms: window.window_ms,
            slots,
            memory_budget,
        };
        let meta = self.cf(META_CF)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(&meta, NamespaceRecord::key(name), record.encode());
        batch.put_cf(&meta, NEXT_KEY, (*next + 1).to_be_bytes());
        self.write_with(batch, true)?;
        *next += 1;
        drop(next);
        Ok(OpenedNamespace {
            generations: Arc::new(Generations::new(space, window, Vec::new())),
            record,
        })
    }

    /// Drops namespace `name`, whose generations are `generations`: its record goes first,
    /// durably, then each generation. Writes of its marks still queued are skipped from then on.
    /// A generation whose drop fails stays an orphan on disk until the next open, and is counted
    /// in [`failed_drops`](Self::failed_drops).
    pub(crate) fn drop_namespace(&self, name: &str, generations: &Generations) -> Result<()> {
        let dead = {
            let mut list = generations.write();
            let meta = self.cf(META_CF)?;
            let mut batch = WriteBatch::default();
            batch.delete_cf(&meta, NamespaceRecord::key(name));
            self.write_with(batch, true)?;
            list.dropped = true;
            std::mem::take(&mut list.live)
        };
        self.drop_generations(dead);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_damage_is_reported() {
        let record = NamespaceRecord {
            name: "orders".into(),
            space: 3,
            window_ms: 3_600_000,
            slots: 60,
            memory_budget: 8 << 20,
        };
        let key = NamespaceRecord::key("orders");
        let value = record.encode();
        assert_eq!(NamespaceRecord::decode(&key, &value).unwrap(), record);
        for at in [0, 5, 12, 20, 30] {
            let mut flipped = value;
            flipped[at] ^= 1;
            assert!(
                matches!(
                    NamespaceRecord::decode(&key, &flipped),
                    Err(Error::Corruption { .. })
                ),
                "byte {at}"
            );
        }
        assert!(NamespaceRecord::decode(&key, &value[..31]).is_err());
        let store_space = NamespaceRecord {
            space: STORE_SPACE,
            ..record
        };
        assert!(NamespaceRecord::decode(&key, &store_space.encode()).is_err());
    }
}
