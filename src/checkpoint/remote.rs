//! [`Checkpoints`]: where checkpoints are published and restored from, through the
//! `object_store` crate (a local or mounted directory, S3, GCS, Azure).
//!
//! Under its prefix a destination holds `files/<xxh3-128>-<size>`, each file's content stored
//! once under its checksum, and `checkpoints/<taken_ms>-<nonce>.json`, one manifest per
//! checkpoint. Publishing uploads only the files the destination does not hold yet (table files
//! never change, so a checkpoint after another sends mostly the new ones), then the manifest:
//! a checkpoint is visible only once all of its files are.

use super::Manifest;
use super::files::{CHUNK, Copy, FileEntry, Staging};
use crate::error::{Error, Result};
use futures::StreamExt;
use futures::executor::block_on;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Files larger than this are uploaded in parts of [`CHUNK`] bytes.
const SINGLE_PUT: u64 = 8 << 20;

/// A destination for checkpoints: an object store and a prefix in it.
///
/// Its calls block the calling thread until the object store answers. They run the object
/// store's futures on that thread, so a store whose client needs an async runtime (the HTTP
/// clients of S3, GCS and Azure need tokio) must be built to run its I/O on a runtime of its own,
/// with `object_store`'s `SpawnedReqwestConnector`. A local or mounted directory
/// ([`Checkpoints::local`]) needs nothing.
///
/// ```
/// use dedupstore::{Store, checkpoint::Checkpoints};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path().join("store"))?;
/// store.check_and_mark("order-1")?;
/// store.checkpoint(dir.path().join("checkpoint"))?;
///
/// let destination = Checkpoints::local(dir.path().join("bucket"))?.at("orders/7")?;
/// let published = destination.publish(dir.path().join("checkpoint"), |_| {})?;
/// let (name, _) = destination.newest()?.expect("just published");
/// assert_eq!(name, published.name);
/// destination.restore(&name, dir.path().join("restored"), |_| {})?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Checkpoints {
    objects: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
}

/// Progress of a transfer, reported as it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transfer {
    /// Bytes done so far (sent, received, or found already there).
    pub bytes: u64,
    /// Bytes of the whole checkpoint.
    pub total: u64,
}

/// What [`Checkpoints::publish`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The checkpoint's name at the destination.
    pub name: String,
    /// Its manifest.
    pub manifest: Manifest,
    /// Files uploaded, and their bytes.
    pub uploaded_files: usize,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Files the destination already held (from earlier checkpoints), not sent again.
    pub reused_files: usize,
}

/// What [`Checkpoints::prune`] removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Pruned {
    /// Checkpoints removed.
    pub checkpoints: usize,
    /// Files removed: held by no checkpoint left.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

impl Checkpoints {
    /// Checkpoints kept in `objects` under `prefix` (a `/`-separated path; empty for the root).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a prefix that is not a valid object path.
    pub fn new(objects: Arc<dyn ObjectStore>, prefix: &str) -> Result<Self> {
        Ok(Self {
            objects,
            prefix: object_path(prefix)?,
        })
    }

    /// Checkpoints kept in the local (or mounted) directory `dir`, created if missing. Every
    /// object is fsynced (with its directory) as it is written.
    ///
    /// # Errors
    /// An I/O error creating or resolving `dir`.
    pub fn local(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let objects = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| remote(&format!("opening {}", dir.display()), &e))?;
        // A published checkpoint must survive power loss as the store does: every file and
        // its directory synced before the manifest is written.
        Ok(Self {
            objects: Arc::new(objects.with_automatic_cleanup(true).with_fsync(true)),
            prefix: ObjectPath::default(),
        })
    }

    /// The checkpoints under `sub` (a `/`-separated path) within this destination: one
    /// destination per partition, say.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an empty segment or one that is not a valid object name.
    pub fn at(&self, sub: &str) -> Result<Self> {
        let mut prefix = self.prefix.clone();
        for part in object_path(sub)?.parts() {
            prefix = prefix.clone().join(part);
        }
        Ok(Self {
            objects: Arc::clone(&self.objects),
            prefix,
        })
    }

    fn key(&self, parts: &[&str]) -> ObjectPath {
        parts
            .iter()
            .fold(self.prefix.clone(), |path, part| path.join(*part))
    }

    fn file_key(&self, file: &FileEntry) -> ObjectPath {
        self.key(&["files", &format!("{}-{}", file.xxh3, file.size)])
    }

    /// Publishes the checkpoint written at `dir` ([`Store::checkpoint`](crate::Store::checkpoint)):
    /// checks it ([`verify`](super::verify)), uploads the files the destination lacks, then its
    /// manifest. `progress` hears of each piece sent.
    ///
    /// # Errors
    /// As [`verify`](super::verify) for a damaged checkpoint;
    /// [`Error::CheckpointStore`] if the destination fails. The checkpoint is then not
    /// published (files already sent stay, for the next attempt to reuse).
    pub fn publish(
        &self,
        dir: impl AsRef<Path>,
        progress: impl FnMut(Transfer),
    ) -> Result<Published> {
        let dir = dir.as_ref();
        let manifest = super::verify(dir)?;
        block_on(self.publish_verified(dir, manifest, progress))
    }

    async fn publish_verified(
        &self,
        dir: &Path,
        manifest: Manifest,
        mut progress: impl FnMut(Transfer),
    ) -> Result<Published> {
        let total = manifest.bytes();
        let mut done = Transfer { bytes: 0, total };
        let (mut uploaded_files, mut uploaded_bytes, mut reused_files) = (0, 0, 0);
        for file in &manifest.files {
            let key = self.file_key(file);
            match self.objects.head(&key).await {
                Ok(meta) if meta.size == file.size => {
                    reused_files += 1;
                    done.bytes += file.size;
                    progress(done);
                    continue;
                }
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(remote(&format!("looking up {key}"), &e)),
            }
            self.upload(
                &dir.join(&file.name),
                &key,
                file.size,
                &mut done,
                &mut progress,
            )
            .await?;
            uploaded_files += 1;
            uploaded_bytes += file.size;
        }
        let name = format!("{:020}-{:08x}", manifest.taken_ms, fastrand::u32(..));
        let key = self.key(&["checkpoints", &format!("{name}.json")]);
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        self.objects
            .put_opts(&key, PutPayload::from(manifest.encode()), create)
            .await
            .map_err(|e| remote(&format!("writing {key}"), &e))?;
        Ok(Published {
            name,
            manifest,
            uploaded_files,
            uploaded_bytes,
            reused_files,
        })
    }

    /// Uploads the file at `path` (of `size` bytes) to `key`: whole if small, in parts if not.
    async fn upload(
        &self,
        path: &Path,
        key: &ObjectPath,
        size: u64,
        done: &mut Transfer,
        progress: &mut impl FnMut(Transfer),
    ) -> Result<()> {
        let mut file =
            File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let read = |file: &mut File, limit: usize| -> Result<Vec<u8>> {
            let mut piece = Vec::with_capacity(limit);
            file.by_ref()
                .take(limit as u64)
                .read_to_end(&mut piece)
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            Ok(piece)
        };
        let sending = |e: &object_store::Error| remote(&format!("writing {key}"), e);
        if size <= SINGLE_PUT {
            let whole = read(&mut file, usize::try_from(size).unwrap_or(usize::MAX))?;
            self.objects
                .put(key, PutPayload::from(whole))
                .await
                .map_err(|e| sending(&e))?;
            done.bytes += size;
            progress(*done);
            return Ok(());
        }
        let mut upload = self
            .objects
            .put_multipart(key)
            .await
            .map_err(|e| sending(&e))?;
        loop {
            let piece = read(&mut file, CHUNK * 8)?;
            if piece.is_empty() {
                break;
            }
            let len = piece.len() as u64;
            if let Err(e) = upload.put_part(PutPayload::from(piece)).await {
                let _ = upload.abort().await; // best effort; the error is what matters
                return Err(sending(&e));
            }
            done.bytes += len;
            progress(*done);
        }
        upload.complete().await.map_err(|e| sending(&e))?;
        Ok(())
    }

    /// The names of the checkpoints held, oldest first.
    ///
    /// # Errors
    /// [`Error::CheckpointStore`] if the destination cannot be listed.
    pub fn list(&self) -> Result<Vec<String>> {
        block_on(self.list_names())
    }

    async fn list_names(&self) -> Result<Vec<String>> {
        let prefix = self.key(&["checkpoints"]);
        let mut listing = self.objects.list(Some(&prefix));
        let mut names = Vec::new();
        while let Some(object) = listing.next().await {
            let object = object.map_err(|e| remote(&format!("listing {prefix}"), &e))?;
            if let Some(name) = object
                .location
                .filename()
                .and_then(|f| f.strip_suffix(".json"))
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// The manifest of checkpoint `name`.
    ///
    /// # Errors
    /// [`Error::CheckpointStore`] if it cannot be read; [`Error::Corruption`] or
    /// [`Error::IncompatibleFormat`] if it is not a manifest this version reads.
    pub fn manifest(&self, name: &str) -> Result<Manifest> {
        block_on(self.read_manifest(name))
    }

    async fn read_manifest(&self, name: &str) -> Result<Manifest> {
        let key = self.key(&["checkpoints", &format!("{name}.json")]);
        let read = |e: &object_store::Error| remote(&format!("reading {key}"), e);
        let bytes = self
            .objects
            .get(&key)
            .await
            .map_err(|e| read(&e))?
            .bytes()
            .await
            .map_err(|e| read(&e))?;
        Manifest::decode(&bytes, key.as_ref())
    }

    /// The newest checkpoint held, with its manifest: the one taken last.
    ///
    /// # Errors
    /// As [`list`](Self::list) and [`manifest`](Self::manifest).
    pub fn newest(&self) -> Result<Option<(String, Manifest)>> {
        let Some(name) = self.list()?.pop() else {
            return Ok(None);
        };
        let manifest = self.manifest(&name)?;
        Ok(Some((name, manifest)))
    }

    /// Restores checkpoint `name` into `store_dir` (which must not exist, or be empty): every
    /// file is checked against the manifest as it arrives, and the restored database against the
    /// manifest before it is moved into place. `progress` hears of each piece received.
    ///
    /// # Errors
    /// [`Error::CheckpointStore`] if the destination fails; [`Error::Corruption`] naming the
    /// object or file that does not match its manifest; [`Error::InvalidArgument`] if
    /// `store_dir` holds anything. Nothing is left in `store_dir` after an error.
    pub fn restore(
        &self,
        name: &str,
        store_dir: impl AsRef<Path>,
        progress: impl FnMut(Transfer),
    ) -> Result<Manifest> {
        block_on(self.restore_cancellable(
            name,
            store_dir.as_ref(),
            progress,
            &AtomicBool::new(false),
        ))
    }

    /// [`restore`](Self::restore), giving up between pieces once `cancel` is set (with
    /// [`Error::Cancelled`]).
    pub(crate) async fn restore_cancellable(
        &self,
        name: &str,
        store_dir: &Path,
        mut progress: impl FnMut(Transfer),
        cancel: &AtomicBool,
    ) -> Result<Manifest> {
        let manifest = self.read_manifest(name).await?;
        let staging = Staging::new(store_dir)?;
        let mut done = Transfer {
            bytes: 0,
            total: manifest.bytes(),
        };
        for file in &manifest.files {
            let key = self.file_key(file);
            let read = |e: &object_store::Error| remote(&format!("reading {key}"), e);
            let mut copy = Copy::create(&staging.path().join(&file.name))?;
            let mut pieces = self
                .objects
                .get(&key)
                .await
                .map_err(|e| read(&e))?
                .into_stream();
            while let Some(piece) = pieces.next().await {
                if cancel.load(Ordering::Relaxed) {
                    return Err(Error::Cancelled {
                        what: format!("restoring checkpoint {name}"),
                    });
                }
                let piece = piece.map_err(|e| read(&e))?;
                copy.write(&piece)?;
                done.bytes += piece.len() as u64;
                progress(done);
            }
            copy.finish(file, key.as_ref())?;
        }
        let source = format!("checkpoint {name} at {}", self.prefix);
        manifest.check_contents(staging.path(), &source)?;
        staging.commit()?;
        Ok(manifest)
    }

    /// Removes every checkpoint but the newest `keep`, then every file that no checkpoint left
    /// holds. Run it from the one process that publishes here: a checkpoint published while it
    /// runs may lose a file it reused, and then fails its restore's checks (a restore falls back
    /// to an older one).
    ///
    /// # Errors
    /// [`Error::CheckpointStore`] if the destination fails; what was removed before stays removed.
    pub fn prune(&self, keep: usize) -> Result<Pruned> {
        block_on(self.prune_to(keep))
    }

    async fn prune_to(&self, keep: usize) -> Result<Pruned> {
        let mut pruned = Pruned::default();
        let names = self.list_names().await?;
        let stale = names.len().saturating_sub(keep);
        for name in &names[..stale] {
            let key = self.key(&["checkpoints", &format!("{name}.json")]);
            self.objects
                .delete(&key)
                .await
                .map_err(|e| remote(&format!("removing {key}"), &e))?;
            pruned.checkpoints += 1;
        }
        let mut held = HashSet::new();
        for name in &names[stale..] {
            for file in self.read_manifest(name).await?.files {
                held.insert(self.file_key(&file));
            }
        }
        let prefix = self.key(&["files"]);
        let mut listing = self.objects.list(Some(&prefix));
        let mut unheld = Vec::new();
        while let Some(object) = listing.next().await {
            let object = object.map_err(|e| remote(&format!("listing {prefix}"), &e))?;
            if !held.contains(&object.location) {
                unheld.push(object);
            }
        }
        drop(listing);
        for object in unheld {
            self.objects
                .delete(&object.location)
                .await
                .map_err(|e| remote(&format!("removing {}", object.location), &e))?;
            pruned.files += 1;
            pruned.bytes += object.size;
        }
        Ok(pruned)
    }
}

/// A `/`-separated object path, each segment checked.
fn object_path(path: &str) -> Result<ObjectPath> {
    ObjectPath::parse(path).map_err(|e| Error::InvalidArgument {
        what: "checkpoint prefix",
        detail: format!("{path:?}: {e}"),
    })
}

fn remote(context: &str, e: &object_store::Error) -> Error {
    Error::CheckpointStore {
        context: context.to_owned(),
        detail: e.to_string(),
    }
}
