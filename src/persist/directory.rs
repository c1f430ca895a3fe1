//! The store's directory: refusing what is not a store, and locking it.

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
/// hold something else. Writes nothing.
pub(crate) fn inspect(path: &Path) -> Result<Vec<String>> {
    if path.join("CURRENT").exists() {
        let names =
            DBWithThreadMode::<MultiThreaded>::list_cf(&Options::default(), path).map_err(|e| {
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
    let listing_error = |e| Error::io(format!("listing {}", path.display()), e);
    for entry in fs::read_dir(path).map_err(listing_error)? {
        let name = entry.map_err(listing_error)?.file_name();
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
pub(crate) fn lock(path: &Path) -> Result<File> {
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
