//! Checkpoints of the database (RocksDB's own: memtables flushed, table files hard-linked, the
//! rest copied), and what a store's files hold, read without opening it as a store.

use super::directory::META_CF;
use super::generations::Generation;
use super::integrity::{self, IDENTITY_FILE};
use super::layout::{OFFSETS_CF, OUTBOX_CF, decode_u64};
use super::meta::Meta;
use super::{CLOCK_KEY, Cold, META_KEY, OUTBOX_NEXT_KEY};
use crate::error::{Error, Result};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{DBWithThreadMode, IteratorMode, MultiThreaded, Options};
use std::fs::{self, File};
use std::path::Path;

/// What a store's files hold: its settings, the time its marks span, its offsets and outbox.
#[derive(Clone, Debug)]
pub(crate) struct Contents {
    pub meta: Meta,
    /// The time high-water mark (milliseconds since the Unix epoch), if any mark was written.
    pub clock_ms: Option<u64>,
    /// Every generation (namespaces' included), with the marks it holds.
    pub generations: Vec<(Generation, u64)>,
    /// Every stored offset: stream, partition, offset.
    pub offsets: Vec<(String, u32, u64)>,
    /// The next outbox sequence number.
    pub outbox_next: u64,
    /// The oldest event not acked, and how many are not.
    pub outbox_oldest: Option<u64>,
    pub outbox_len: u64,
}

impl Cold {
    /// Writes a consistent checkpoint of the store into `dir`, which must not exist: RocksDB
    /// flushes the memtables and hard-links the table files (copying them across file systems),
    /// copies the rest, and the identity file is copied beside them. Writes may go on meanwhile;
    /// the checkpoint holds every write acknowledged before the call and none that began after it
    /// returned.
    pub(crate) fn checkpoint(&self, dir: &Path) -> Result<()> {
        let failed = |e: &rocksdb::Error| {
            Error::rocks(format!("writing a checkpoint into {}", dir.display()), e)
        };
        Checkpoint::new(&self.db)
            .and_then(|c| c.create_checkpoint(dir))
            .map_err(|e| failed(&e))?;
        let identity = dir.join(IDENTITY_FILE);
        fs::copy(self.path.join(IDENTITY_FILE), &identity)
            .and_then(|_| File::open(&identity)?.sync_all())
            .and_then(|()| File::open(dir)?.sync_all())
            .map_err(|e| Error::io(format!("copying the identity into {}", dir.display()), e))
    }
}

/// Reads what the store (or checkpoint) at `path` holds, opening its database read-only. Marks
/// are counted from the generations' table properties and memtables, without reading them.
pub(crate) fn read_contents(path: &Path) -> Result<Contents> {
    let names = DBWithThreadMode::<MultiThreaded>::list_cf(&Options::default(), path)
        .map_err(|e| Error::rocks(format!("listing column families of {}", path.display()), &e))?;
    let db = integrity::open_read_only(path, &names)?;
    let cf = |name: &str| {
        db.cf_handle(name).ok_or_else(|| Error::Corruption {
            what: format!("column family {name} of {}", path.display()),
            detail: "missing".into(),
        })
    };
    let read = |what: &str, e: &rocksdb::Error| {
        Error::rocks(format!("reading {what} of {}", path.display()), e)
    };
    let meta_cf = cf(META_CF)?;
    let get_u64 = |key: &[u8], what: &str| -> Result<Option<u64>> {
        db.get_pinned_cf(&meta_cf, key)
            .map_err(|e| read(what, &e))?
            .map(|v| decode_u64(&v, || what.into()))
            .transpose()
    };
    let meta = db
        .get_pinned_cf(&meta_cf, META_KEY)
        .map_err(|e| read("the meta record", &e))?
        .ok_or_else(|| Error::Corruption {
            what: format!("meta record of {}", path.display()),
            detail: "missing".into(),
        })?;
    let meta = Meta::decode(&meta, path)?;
    let clock_ms = get_u64(CLOCK_KEY, "the time high-water mark")?;
    let outbox_next = get_u64(OUTBOX_NEXT_KEY, "the outbox sequence")?.unwrap_or(0);

    let mut generations = Vec::new();
    for name in &names {
        let Some(generation) = Generation::parse(name) else {
            continue;
        };
        let generation = generation.map_err(|detail| Error::Corruption {
            what: format!("column families of {}", path.display()),
            detail,
        })?;
        let handle = cf(name)?;
        let property = |property: &str| {
            db.property_value_cf(&handle, property)
                .map_err(|e| read(name, &e))?
                .ok_or_else(|| Error::Storage {
                    context: format!("reading {name} of {}", path.display()),
                    detail: format!("RocksDB has no property {property}"),
                })
        };
        let tables = property("rocksdb.aggregated-table-properties")?;
        let marks = table_entries(&tables)
            .ok_or_else(|| Error::Storage {
                context: format!("reading {name} of {}", path.display()),
                detail: format!("no entry count in its table properties: {tables:?}"),
            })?
            .saturating_add(memtable_entries(&property)?);
        generations.push((generation, marks));
    }
    generations.sort_by_key(|(g, _)| (g.space, g.start));

    let mut offsets = Vec::new();
    for entry in db.iterator_cf(&cf(OFFSETS_CF)?, IteratorMode::Start) {
        let (key, value) = entry.map_err(|e| read("the offsets", &e))?;
        let offset = decode_u64(&value, || "an offset".into())?;
        let (stream, partition) = decode_offset_key(&key).ok_or_else(|| Error::Corruption {
            what: format!("the offsets of {}", path.display()),
            detail: format!("an undecodable key {key:?}"),
        })?;
        offsets.push((stream, partition, offset));
    }

    let mut outbox_oldest = None;
    let mut outbox_len = 0;
    for entry in db.iterator_cf(&cf(OUTBOX_CF)?, IteratorMode::Start) {
        let (key, _) = entry.map_err(|e| read("the outbox", &e))?;
        let seq = decode_u64(&key, || "an outbox key".into())?;
        outbox_oldest.get_or_insert(seq);
        outbox_len += 1;
    }
    Ok(Contents {
        meta,
        clock_ms,
        generations,
        offsets,
        outbox_next,
        outbox_oldest,
        outbox_len,
    })
}

/// The entries of a column family's table files, from RocksDB's aggregated table properties
/// (`"...; # entries=N; ..."`): every mark is written once in its generation, so these count
/// marks without reading them.
fn table_entries(properties: &str) -> Option<u64> {
    properties
        .split(';')
        .find_map(|field| field.trim().strip_prefix("# entries="))
        .and_then(|n| n.trim().parse().ok())
}

/// The entries of a column family's memtables (those a read-only open replayed from the log).
fn memtable_entries(property: &impl Fn(&str) -> Result<String>) -> Result<u64> {
    let mut entries = 0u64;
    for name in [
        "rocksdb.num-entries-active-mem-table",
        "rocksdb.num-entries-imm-mem-tables",
    ] {
        let value = property(name)?;
        entries += value.trim().parse::<u64>().map_err(|_| Error::Storage {
            context: format!("reading {name}"),
            detail: format!("not a count: {value:?}"),
        })?;
    }
    Ok(entries)
}

/// The stream and partition of an offset key (`layout::offset_key`).
fn decode_offset_key(key: &[u8]) -> Option<(String, u32)> {
    let (&len, rest) = key.split_first()?;
    let (stream, partition) = rest.split_at_checked(usize::from(len))?;
    let stream = String::from_utf8(stream.to_vec()).ok()?;
    Some((stream, u32::from_be_bytes(partition.try_into().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::offset_key;

    #[test]
    fn entries_are_read_from_table_properties() {
        let properties = "# data blocks=12; # entries=40000; # deletions=0; raw key size=640000";
        assert_eq!(table_entries(properties), Some(40_000));
        assert_eq!(table_entries("# data blocks=0"), None);
        assert_eq!(table_entries("# entries=many"), None);
    }

    #[test]
    fn offset_keys_decode_to_what_encoded_them() {
        let key = offset_key("orders.eu", 7).unwrap();
        assert_eq!(decode_offset_key(&key), Some(("orders.eu".into(), 7)));
        assert_eq!(decode_offset_key(&key[..key.len() - 1]), None);
        assert_eq!(decode_offset_key(&[9, b'a']), None);
        assert_eq!(decode_offset_key(&[]), None);
    }
}
