//! The store's directory: refusing what is not a store, and locking it.

use super::integrity::{self, IDENTITY_FILE};
use super::meta::FORMAT_VERSION;
use crate::error::{Error, Result};
use rocksdb::{DBWithThreadMode, MultiThreaded, Options};
use std::fs::{self, File, TryLockError};
use std::path::Path;

/// The file whose lock marks the directory as in use. RocksDB's own `LOCK` is not enough: it
/// is taken only after RocksDB has started to write into the directory.
pub(crate) const LOCK_FILE: &str = "dedupstore.lock";

/// The column family every store has; a database without it is not a store.
pub(crate) const META_CF: &str = "meta";

fn expected_format() -> String {
    format!("a dedupstore (format {FORMAT_VERSION}) or an empty directory")
}

/// The column families of the store at `path` (none if it is new), refusing directories that
/// hold something else. `created` says the store's identity file is there: then a missing
/// database or `meta` column family is damage, not a foreign or empty directory. Writes nothing.
pub(crate) fn inspect(path: &Path, created: bool) -> Result<Vec<String>> {
    if created && !path.join("CURRENT").exists() {
        return Err(Error::Corruption {
            what: path.join("CURRENT").display().to_string(),
            detail: format!("missing, though {IDENTITY_FILE} says a store was created here"),
        });
    }
    if path.join("CURRENT").exists() {
        let names =
            DBWithThreadMode::<MultiThreaded>::list_cf(&Options::default(), path).map_err(|e| {
                Error::rocks(format!("listing column families of {}", path.display()), &e)
            })?;
        if !names.iter().any(|n| n == META_CF) {
            if created {
                return Err(Error::Corruption {
                    what: integrity::manifest(path).display().to_string(),
                    detail: format!(
                        "lists no column family {META_CF:?}, though {IDENTITY_FILE} says a \
                         store was created here"
                    ),
                });
            }
            return Err(Error::IncompatibleFormat {
                path: path.to_owned(),
                found: format!("a RocksDB database with column families {names:?}"),
                expected: expected_format(),
            });
        }
        return Ok(names);
    }
    let listing_error = |e| Error::io(format!("listing {}", path.display()), e);
    for entry in fs::read_dir(path).map_err(listing_error)? {
        let name = entry.map_err(listing_error)?.file_name();
        let name = name.to_string_lossy();
        // What RocksDB leaves behind if creating a database was interrupted before CURRENT.
        let leftover = [LOCK_FILE, IDENTITY_FILE].contains(&name.as_ref())
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

/// The directory's lock, held while the store is open.
pub(crate) struct DirLock {
    file: File,
    /// Whether opening the lock created its file (removed again if the directory is refused).
    created: bool,
}

/// Takes the directory's lock: an exclusive `flock`, which also conflicts with a second open in
/// the same process. Released when the returned lock is dropped. Taken before anything else in
/// the directory is read: another process may be rewriting RocksDB's files.
pub(crate) fn lock(path: &Path) -> Result<DirLock> {
    let lock_path = path.join(LOCK_FILE);
    let created = !lock_path.exists();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { file, created }),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: path.to_owned(),
        }),
        Err(TryLockError::Error(e)) => {
            Err(Error::io(format!("locking {}", lock_path.display()), e))
        }
    }
}

impl DirLock {
    /// Releases the lock of a directory that turned out not to be a store, removing its file
    /// if this open created it: a refused directory is left as it was found.
    pub(crate) fn abandon(self, path: &Path) {
        drop(self.file);
        if self.created {
            // Best effort: the refusal is what the caller reports.
            let _ = fs::remove_file(path.join(LOCK_FILE));
        }
    }
}
