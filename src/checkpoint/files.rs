//! The files of a checkpoint: their checksums, verified copies, and a staging directory that
//! becomes a store only once every file in it is whole.

use super::MANIFEST_FILE;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use xxhash_rust::xxh3::Xxh3Default;

/// Files are read and written in pieces of this size.
pub(super) const CHUNK: usize = 1 << 20;

/// A file of a checkpoint, as its manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileEntry {
    /// The file's name in the checkpoint directory.
    pub name: String,
    /// Its length in bytes.
    pub size: u64,
    /// xxh3-128 of its content, 32 hexadecimal digits.
    pub xxh3: String,
}

impl FileEntry {
    /// Whether a file of this name belongs in a checkpoint: RocksDB's info log (rewritten by
    /// every open, read-only ones included) and the store's lock file do not.
    pub(super) fn belongs(name: &str) -> bool {
        name != MANIFEST_FILE
            && name != "LOG"
            && !name.starts_with("LOG.old.")
            && name != "dedupstore.lock"
    }
}

/// A running checksum of a file's content.
#[derive(Default)]
pub(super) struct Checksum {
    hash: Xxh3Default,
    size: u64,
}

impl Checksum {
    pub(super) fn update(&mut self, bytes: &[u8]) {
        self.hash.update(bytes);
        self.size += bytes.len() as u64;
    }

    pub(super) fn entry(&self, name: &str) -> FileEntry {
        FileEntry {
            name: name.to_owned(),
            size: self.size,
            xxh3: format!("{:032x}", self.hash.digest128()),
        }
    }
}

/// Every file of the checkpoint at `dir` that [belongs](FileEntry::belongs) in it, sorted by
/// name, with its checksum.
pub(super) fn hash_files(dir: &Path) -> Result<Vec<FileEntry>> {
    let listing = |e| Error::io(format!("listing {}", dir.display()), e);
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing)? {
        let entry = entry.map_err(listing)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !FileEntry::belongs(&name) {
            continue;
        }
        let mut checksum = Checksum::default();
        read_chunks(&entry.path(), |chunk| {
            checksum.update(chunk);
            Ok(())
        })?;
        entries.push(checksum.entry(&name));
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Writes `bytes` to `path` whole or not at all: to a temporary name, synced, renamed, and the
/// directory synced.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let temporary = path.with_extension("tmp");
    let failed = |e| Error::io(format!("writing {}", path.display()), e);
    let mut file = File::create(&temporary).map_err(failed)?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    fs::rename(&temporary, path).map_err(failed)?;
    sync_parent(path)
}

/// Syncs the directory holding `path`, so that a rename into it survives power loss.
pub(super) fn sync_parent(path: &Path) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", parent.display()), e))
}

/// Copies `from` to `to` (synced), checking the copy against `entry` as it goes.
pub(super) fn copy_verified(from: &Path, to: &Path, entry: &FileEntry) -> Result<()> {
    let mut copy = Copy::create(to)?;
    read_chunks(from, |chunk| copy.write(chunk))?;
    copy.finish(entry, &from.display().to_string())
}

/// Reads the file at `path` from start to end, handing each piece of up to [`CHUNK`] bytes to
/// `each`.
fn read_chunks(path: &Path, mut each: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    let mut file =
        File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut buffer = vec![0; CHUNK];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if read == 0 {
            return Ok(());
        }
        each(&buffer[..read])?;
    }
}

/// A file being written from a checkpoint's copy, checked against its manifest entry.
pub(super) struct Copy {
    file: File,
    path: PathBuf,
    checksum: Checksum,
}

impl Copy {
    pub(super) fn create(path: &Path) -> Result<Self> {
        let file =
            File::create(path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            checksum: Checksum::default(),
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.checksum.update(bytes);
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }

    /// Syncs the copy and checks it against `entry`; `source` names where it came from.
    pub(super) fn finish(self, entry: &FileEntry, source: &str) -> Result<()> {
        self.file
            .sync_all()
            .map_err(|e| Error::io(format!("syncing {}", self.path.display()), e))?;
        let copied = self.checksum.entry(&entry.name);
        if copied == *entry {
            return Ok(());
        }
        Err(Error::Corruption {
            what: source.to_owned(),
            detail: format!(
                "{} bytes with checksum {}; the manifest says {} bytes with {}",
                copied.size, copied.xxh3, entry.size, entry.xxh3
            ),
        })
    }
}

/// A directory beside a store's future directory, where a restore writes; renamed into place
/// by [`commit`](Self::commit), removed if dropped before.
pub(super) struct Staging {
    path: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staging {
    /// A staging directory for a store at `target`, which must not exist or be empty.
    pub(super) fn new(target: &Path) -> Result<Self> {
        let occupied = fs::read_dir(target).is_ok_and(|mut d| d.next().is_some());
        if occupied {
            return Err(Error::InvalidArgument {
                what: "restore directory",
                detail: format!("{} is not empty", target.display()),
            });
        }
        let name = target.file_name().ok_or_else(|| Error::InvalidArgument {
            what: "restore directory",
            detail: format!("{} has no name", target.display()),
        })?;
        let parent = target.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        let path = parent.join(format!(
            ".{}.restoring-{:08x}",
            name.to_string_lossy(),
            fastrand::u32(..)
        ));
        fs::create_dir(&path).map_err(|e| Error::io(format!("creating {}", path.display()), e))?;
        Ok(Self {
            path,
            target: target.to_owned(),
            committed: false,
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the staged store into place, durably.
    pub(super) fn commit(mut self) -> Result<()> {
        let moving = |e| {
            Error::io(
                format!(
                    "moving {} to {}",
                    self.path.display(),
                    self.target.display()
                ),
                e,
            )
        };
        sync_dir(&self.path)?;
        if self.target.exists() {
            fs::remove_dir(&self.target).map_err(moving)?; // empty, as checked
        }
        fs::rename(&self.path, &self.target).map_err(moving)?;
        self.committed = true;
        sync_parent(&self.target)
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: the restore's error is what the caller needs.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(format!("syncing {}", dir.display()), e))
}
