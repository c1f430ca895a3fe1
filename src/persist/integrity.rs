//! Telling a damaged store from a new or crash-recovered one, read-only, before RocksDB may
//! delete anything.
//!
//! RocksDB trusts its MANIFEST. One that lost records (a bad disk, a copy taken while the store
//! was open, a truncation) makes RocksDB forget column families and table files. A writable open
//! would then delete those files as obsolete, skip the log records of the forgotten column
//! families, and the store would answer `New` for IDs it had marked. Three records let an open
//! refuse instead, each checked against what a crash can leave:
//!
//! - **The identity file** (`dedupstore.id`), written once the store exists: the store's
//!   creation time and namespace seed in the [`Meta`] encoding. A store whose identity is on disk
//!   must still have its database, its `meta` column family and a matching meta record.
//! - **The catalog**, keys `cf/<name>` in column family `meta`: every column family that takes
//!   writes is listed there before its first write, and leaves the list before it is dropped. A
//!   listed column family the MANIFEST does not know was forgotten, with its writes.
//! - **RocksDB's minimum log number to keep**: a table file the MANIFEST does not list is either
//!   the output of a flush or compaction a crash interrupted, whose data the MANIFEST's files and
//!   logs still hold, or a file whose record was lost. Flushes are atomic across column families
//!   ([`options::database`](super::options::database)), so every flush's record carries the
//!   minimum log number of all of them, and RocksDB deletes no log at or past the last one
//!   recorded. After a crash that log is there (or, if the last record is an open's, which
//!   records the number after the logs it replayed, the log the open created is); after lost
//!   records the MANIFEST's minimum is older than the ones it lost, and its log is gone.

use super::directory::{self, META_CF};
use super::meta::Meta;
use crate::error::{Error, Result};
use rocksdb::{
    ColumnFamilyDescriptor, DBWithThreadMode, ErrorKind, IngestExternalFileOptions, MultiThreaded,
    Options,
};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The identity file's name, in the store's directory.
pub(crate) const IDENTITY_FILE: &str = "dedupstore.id";
/// The catalog's keys in column family `meta`: this prefix and a column family's name.
const CATALOG_PREFIX: &[u8] = b"cf/";

/// The catalog key of column family `cf`.
pub(crate) fn catalog_key(cf: &str) -> Vec<u8> {
    [CATALOG_PREFIX, cf.as_bytes()].concat()
}

/// Everything an open checks before RocksDB may write to the directory at `path`: the store's
/// identity (if written) and its column families (none for a new store), or why it must not be
/// opened.
pub(crate) fn check(path: &Path) -> Result<(Option<Meta>, Vec<String>)> {
    let identity = read_identity(path)?;
    let existing = directory::inspect(path, identity.is_some())?;
    if !existing.is_empty() {
        verify(path, &existing, identity.as_ref())?;
    }
    Ok((identity, existing))
}

/// The identity of the store at `path`, if it has been written.
fn read_identity(path: &Path) -> Result<Option<Meta>> {
    let file = path.join(IDENTITY_FILE);
    match fs::read(&file) {
        Ok(bytes) => Meta::decode(&bytes, &file).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", file.display()), e)),
    }
}

/// Writes the identity file: to a temporary name, synced, renamed, and the directory synced,
/// so that it is on disk whole or not at all.
pub(crate) fn write_identity(path: &Path, meta: &Meta) -> Result<()> {
    let file = path.join(IDENTITY_FILE);
    let temporary = path.join(format!("{IDENTITY_FILE}.tmp"));
    let io = |what: &str, e| Error::io(format!("{what} {}", file.display()), e);
    let mut out = File::create(&temporary).map_err(|e| io("creating", e))?;
    out.write_all(&meta.encode())
        .and_then(|()| out.sync_all())
        .map_err(|e| io("writing", e))?;
    fs::rename(&temporary, &file).map_err(|e| io("renaming into", e))?;
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", path.display()), e))
}

/// The MANIFEST that `CURRENT` names (or `CURRENT` itself if it cannot be read): the file a
/// lost record is reported against.
pub(crate) fn manifest(path: &Path) -> PathBuf {
    fs::read_to_string(path.join("CURRENT"))
        .ok()
        .map(|name| name.trim_end().to_owned())
        .filter(|name| name.starts_with("MANIFEST-") && !name.contains('/'))
        .map_or_else(|| path.join("CURRENT"), |name| path.join(name))
}

/// RocksDB opened read-only, with the table file to blame named in a corruption it reports
/// against the MANIFEST.
pub(super) fn open_read_only(
    path: &Path,
    existing: &[String],
) -> Result<DBWithThreadMode<MultiThreaded>> {
    let mut options = Options::default();
    options.set_atomic_flush(true);
    // Each column family gets these options (a bare name would get RocksDB's defaults), so the
    // replay of the log can apply merged offsets.
    super::options::merge_offsets(&mut options);
    let descriptors = existing
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
    DBWithThreadMode::open_cf_descriptors_read_only(&options, path, descriptors, false).map_err(
        |e| {
            let error = Error::rocks(format!("reading {}", path.display()), &e);
            match error {
                Error::Corruption { ref detail, .. } if detail.contains("MANIFEST") => {
                    damaged_table(path).unwrap_or(error)
                }
                _ => error,
            }
        },
    )
}

/// The table file to blame for a corruption an open reported against the MANIFEST, if one is.
///
/// An open loads the table files the MANIFEST lists, and RocksDB reports a damaged footer or
/// properties block met there as the MANIFEST's corruption, without naming the file. Each table
/// file is ingested, as a copy, into a scratch database, which reads its footer and properties
/// as the open did; the first that fails is named. Runs only after an open has failed, and leaves the store's files
/// untouched.
fn damaged_table(path: &Path) -> Option<Error> {
    let scratch = tempfile::tempdir().ok()?;
    let db = DBWithThreadMode::<MultiThreaded>::open_default(scratch.path()).ok()?;
    let mut tables: Vec<PathBuf> = fs::read_dir(path)
        .ok()?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|file| file.extension().is_some_and(|e| e == "sst"))
        .collect();
    tables.sort();
    let mut copy = IngestExternalFileOptions::default();
    copy.set_move_files(false);
    tables.into_iter().find_map(|table| {
        let e = db.ingest_external_file_opts(&copy, vec![&table]).err()?;
        // RocksDB refuses a file it wrote itself, with this, once it has read the file's footer
        // and properties: as far as the open goes, the file is sound.
        let read_whole = e.as_ref().contains("External file version not found");
        (e.kind() == ErrorKind::Corruption && !read_whole).then(|| Error::Corruption {
            what: table.display().to_string(),
            detail: e.into_string(),
        })
    })
}

/// Checks the database at `path`, whose column families are `existing` (with `meta` among them),
/// against its identity and catalog, and its table files against the MANIFEST. Opens RocksDB
/// read-only: writes and deletes nothing.
fn verify(path: &Path, existing: &[String], identity: Option<&Meta>) -> Result<()> {
    let db = open_read_only(path, existing)?;
    let lost = |what: PathBuf, detail: String| Error::Corruption {
        what: what.display().to_string(),
        detail,
    };
    let meta_cf = db.cf_handle(META_CF).ok_or_else(|| {
        lost(
            manifest(path),
            format!("column family {META_CF:?} is listed but cannot be read"),
        )
    })?;
    let read = |e: rocksdb::Error| {
        Error::rocks(format!("reading the meta record of {}", path.display()), &e)
    };
    if let Some(identity) = identity {
        let stored = db
            .get_pinned_cf(&meta_cf, super::META_KEY)
            .map_err(read)?
            .ok_or_else(|| {
                lost(
                    manifest(path),
                    "the meta record is gone, though the identity file says the store was \
                     created"
                        .into(),
                )
            })?;
        let stored = Meta::decode(&stored, path)?;
        if (stored.created_ms, stored.namespace_seed)
            != (identity.created_ms, identity.namespace_seed)
        {
            return Err(lost(
                path.join(IDENTITY_FILE),
                format!(
                    "names a store created at {} ms, but the database holds one created at {} ms",
                    identity.created_ms, stored.created_ms
                ),
            ));
        }
    }
    for entry in db.prefix_iterator_cf(&meta_cf, CATALOG_PREFIX) {
        let (key, _) = entry.map_err(read)?;
        let Some(name) = key.strip_prefix(CATALOG_PREFIX) else {
            break; // past the catalog
        };
        let name = String::from_utf8_lossy(name);
        if !existing.iter().any(|e| *e == name) {
            return Err(lost(
                manifest(path),
                format!("column family {name:?}, which holds acknowledged writes, is missing"),
            ));
        }
    }

    let live: Vec<String> = db
        .live_files()
        .map_err(|e| Error::rocks(format!("listing the table files of {}", path.display()), &e))?
        .into_iter()
        .map(|f| f.name.trim_start_matches('/').to_owned())
        .collect();
    let files = fs::read_dir(path)
        .and_then(|entries| {
            entries
                .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
                .collect::<std::io::Result<Vec<String>>>()
        })
        .map_err(|e| Error::io(format!("listing {}", path.display()), e))?;
    let mut unlisted: Vec<&String> = files
        .iter()
        .filter(|name| {
            Path::new(name.as_str())
                .extension()
                .is_some_and(|e| e == "sst")
                && !live.iter().any(|l| l == *name)
        })
        .collect();
    if unlisted.is_empty() {
        return Ok(());
    }
    let min_log = db
        .property_int_value("rocksdb.min-log-number-to-keep")
        .map_err(|e| Error::rocks(format!("reading {}", path.display()), &e))?
        .unwrap_or(0);
    // A log number of 0 is a database whose MANIFEST never recorded one: a creation a crash
    // interrupted, unless the identity file says the store was finished.
    if log_kept(path, &files, min_log) || (min_log == 0 && identity.is_none()) {
        return Ok(()); // files a crash left; RocksDB deletes them
    }
    unlisted.sort();
    Err(lost(
        path.join(unlisted[0]),
        format!(
            "table file not listed in {} (with {} more), whose oldest log to replay, \
             {min_log:06}.log, is gone: the MANIFEST lost records, and opening would delete \
             the file",
            manifest(path).display(),
            unlisted.len() - 1
        ),
    ))
}

/// Whether the log `min_log`, the MANIFEST's minimum log number, of the store at `path` holding
/// `files`, is kept, or `min_log` is the one an open recorded with no flush since. An open that
/// replays logs records the number after the last one replayed, which no log has, and deletes
/// the logs it replayed. RocksDB deletes a log only once a record past it is written, so until a
/// flush records a newer minimum every log created since the open is kept, the open's own among
/// them: the first log at or past `min_log`, numbered before the MANIFEST the open wrote (an open
/// creates its log, then writes the new MANIFEST with the records of its recovery). After lost
/// records the minimum is older than the lost ones, the logs those records let go are gone, the
/// open's own with them, and the first log kept is numbered after the MANIFEST.
fn log_kept(path: &Path, files: &[String], min_log: u64) -> bool {
    if files.contains(&format!("{min_log:06}.log")) {
        return true;
    }
    let number = |name: &str, prefix: &str, suffix: &str| -> Option<u64> {
        name.strip_prefix(prefix)?
            .strip_suffix(suffix)?
            .parse()
            .ok()
    };
    let Some(manifest) = manifest(path)
        .file_name()
        .and_then(|name| number(&name.to_string_lossy(), "MANIFEST-", ""))
    else {
        return false;
    };
    files
        .iter()
        .filter_map(|name| number(name, "", ".log"))
        .filter(|&log| log >= min_log)
        .min()
        .is_some_and(|log| log < manifest)
}

/// Adds the write-ahead logs to a corruption RocksDB reported while opening the store without
/// naming a file: damage in the middle of a log is reported as a bare "checksum mismatch", and
/// the logs are the files it replays.
pub(crate) fn name_logs(path: &Path, error: Error) -> Error {
    let Error::Corruption { what, detail } = error else {
        return error;
    };
    if [".log", ".sst", "MANIFEST-", "CURRENT"]
        .iter()
        .any(|name| detail.contains(name))
    {
        return Error::Corruption { what, detail };
    }
    let mut logs: Vec<String> = fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().into_owned();
            Path::new(&name)
                .extension()
                .is_some_and(|e| e == "log")
                .then_some(name)
        })
        .collect();
    logs.sort();
    Error::Corruption {
        what,
        detail: format!(
            "{detail} (in the write-ahead log, replayed from {})",
            logs.join(", ")
        ),
    }
}
