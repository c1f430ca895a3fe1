//! Checkpoints: taken while writers commit, restored to a state in which every mark
//! acknowledged before the checkpoint is a duplicate and each transaction is whole; verified
//! before use (damaged, missing, extra files and foreign manifests refused, naming the file);
//! published incrementally to a destination directory, pruned, and refused whole when a
//! destination or target is full.

use dedupstore::checkpoint::{self, Checkpoints, MANIFEST_FILE};
use dedupstore::{CommitOutcome, Error, Outcome, Store};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

const WRITERS: u32 = 4;

/// Commits transactions of writer `w` until `stop`: each marks `w-<i>`, sets the writer's
/// offset to `i` and adds an event. Returns the last `i` acknowledged.
fn write_until(store: &Store, w: u32, stop: &AtomicBool, acked: &parking_lot::Mutex<Vec<u64>>) {
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let mut txn = store.transaction();
        txn.mark(format!("{w}-{i}")).unwrap();
        txn.set_offset("writers", w, i).unwrap();
        txn.outbox(format!("{w}-{i}"));
        assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
        acked.lock()[w as usize] = i;
        i += 1;
    }
}

#[test]
fn a_checkpoint_under_write_load_restores_every_acknowledged_mark_and_whole_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(parking_lot::Mutex::new(vec![0u64; WRITERS as usize]));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (store, stop, acked) = (store.clone(), Arc::clone(&stop), Arc::clone(&acked));
            thread::spawn(move || write_until(&store, w, &stop, &acked))
        })
        .collect();
    while acked.lock().iter().any(|&i| i < 2_000) {
        thread::yield_now();
    }
    let before = acked.lock().clone();
    let manifest = store.checkpoint(dir.path().join("checkpoint")).unwrap();
    let after = acked.lock().clone();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }

    checkpoint::restore(dir.path().join("checkpoint"), dir.path().join("restored")).unwrap();
    let restored = Store::open(dir.path().join("restored")).unwrap();
    let mut marks = 0;
    for w in 0..WRITERS {
        let offset = restored.offset("writers", w).unwrap().unwrap();
        let (acked_before, acked_after) = (before[w as usize], after[w as usize]);
        assert!(
            (acked_before..=acked_after + 1).contains(&offset),
            "writer {w}: offset {offset}, acknowledged {acked_before} before and {acked_after} after"
        );
        assert_eq!(manifest.offset("writers", w), Some(offset));
        // Each transaction whole: the marks up to the offset and none after it.
        let ids: Vec<String> = (0..=offset + 50).map(|i| format!("{w}-{i}")).collect();
        let seen = restored.contains_batch(&ids).unwrap();
        for (i, seen) in seen.iter().enumerate() {
            assert_eq!(
                *seen,
                i as u64 <= offset,
                "writer {w}, mark {i}, offset {offset}"
            );
        }
        assert!(matches!(
            restored.check_and_mark(format!("{w}-0")).unwrap(),
            Outcome::Duplicate { .. }
        ));
        marks += offset + 1;
    }
    assert_eq!(manifest.marks, marks, "the manifest counts every mark");
    assert_eq!(manifest.outbox.next_seq, marks);
    assert_eq!(manifest.outbox.pending, marks);
    assert_eq!(
        restored.outbox().peek(usize::MAX).unwrap().len() as u64,
        marks
    );
    // The original goes on untouched by its checkpoint.
    assert_eq!(store.check_and_mark("later").unwrap(), Outcome::New);
}

fn small_checkpoint(dir: &Path) -> dedupstore::checkpoint::Manifest {
    let store = Store::open(dir.join("store")).unwrap();
    let ids: Vec<String> = (0..20_000).map(|i| format!("id-{i}")).collect();
    store.check_and_mark_batch(&ids).unwrap();
    store.checkpoint(dir.join("checkpoint")).unwrap()
}

fn largest_table_file(manifest: &dedupstore::checkpoint::Manifest) -> String {
    manifest
        .files
        .iter()
        .filter(|f| f.name.ends_with(".sst"))
        .max_by_key(|f| f.size)
        .unwrap()
        .name
        .clone()
}

#[test]
fn a_damaged_checkpoint_is_refused_naming_its_file_and_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_checkpoint(dir.path());
    let checkpoint = dir.path().join("checkpoint");
    assert_eq!(checkpoint::verify(&checkpoint).unwrap(), manifest);
    let table = checkpoint.join(largest_table_file(&manifest));
    let original = std::fs::read(&table).unwrap();
    let target = dir.path().join("restored");

    // A flipped byte.
    let mut damaged = original.clone();
    damaged[original.len() / 3] ^= 1;
    std::fs::write(&table, &damaged).unwrap();
    match checkpoint::restore(&checkpoint, &target) {
        Err(Error::Corruption { what, .. }) => assert!(what.ends_with(".sst"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert!(!target.exists(), "nothing restored");

    // A missing file, then an extra one.
    std::fs::remove_file(&table).unwrap();
    assert!(matches!(
        checkpoint::verify(&checkpoint),
        Err(Error::Corruption { detail, .. }) if detail.contains("missing")
    ));
    std::fs::write(&table, &original).unwrap();
    std::fs::write(checkpoint.join("000999.sst"), b"stray").unwrap();
    assert!(matches!(
        checkpoint::verify(&checkpoint),
        Err(Error::Corruption { detail, .. }) if detail.contains("not listed")
    ));
    std::fs::remove_file(checkpoint.join("000999.sst")).unwrap();
    checkpoint::verify(&checkpoint).unwrap();

    // A manifest of another version, and one that is not a manifest.
    let manifest_file = checkpoint.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest_file).unwrap();
    std::fs::write(
        &manifest_file,
        text.replace("\"manifest_version\": 1", "\"manifest_version\": 9"),
    )
    .unwrap();
    assert!(matches!(
        checkpoint::verify(&checkpoint),
        Err(Error::IncompatibleFormat { .. })
    ));
    std::fs::write(&manifest_file, b"{\"not\": \"a manifest\"}").unwrap();
    assert!(matches!(
        checkpoint::verify(&checkpoint),
        Err(Error::Corruption { .. })
    ));
    std::fs::write(&manifest_file, text).unwrap();

    // Sound again: it restores, into an empty directory only.
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("something"), b"x").unwrap();
    assert!(matches!(
        checkpoint::restore(&checkpoint, &target),
        Err(Error::InvalidArgument { .. })
    ));
    std::fs::remove_file(target.join("something")).unwrap();
    checkpoint::restore(&checkpoint, &target).unwrap();
    assert!(Store::open(&target).unwrap().contains("id-19999").unwrap());
    assert!(matches!(
        Store::open(dir.path().join("store"))
            .unwrap()
            .checkpoint(&checkpoint),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn a_closed_store_is_checkpointed_under_its_lock() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut txn = store.transaction();
    txn.mark("a").unwrap().set_offset("s", 3, 9).unwrap();
    let _ = txn.commit().unwrap();
    assert!(matches!(
        checkpoint::from_closed(dir.path().join("store"), dir.path().join("c1"), |_| {}),
        Err(Error::Locked { .. })
    ));
    assert!(!dir.path().join("c1").exists());
    drop(store);
    let manifest =
        checkpoint::from_closed(dir.path().join("store"), dir.path().join("c1"), |_| {}).unwrap();
    assert_eq!((manifest.marks, manifest.offset("s", 3)), (1, Some(9)));
    checkpoint::restore(dir.path().join("c1"), dir.path().join("r")).unwrap();
    let restored = Store::open(dir.path().join("r")).unwrap();
    assert!(restored.contains("a").unwrap());
    // Not a store: nothing there, or a directory without a database.
    assert!(matches!(
        checkpoint::from_closed(dir.path().join("nothing"), dir.path().join("c2"), |_| {}),
        Err(Error::Io { .. })
    ));
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let not_a_store =
        checkpoint::from_closed(dir.path().join("empty"), dir.path().join("c2"), |_| {});
    assert!(not_a_store.is_err(), "{not_a_store:?}");
    assert!(!dir.path().join("c2").exists());
}

#[test]
fn publishing_is_incremental_restores_verify_each_object_and_pruning_keeps_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let destination = Checkpoints::local(dir.path().join("bucket"))
        .unwrap()
        .at("orders/0")
        .unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let mut names = Vec::new();
    for round in 0..4u32 {
        let ids: Vec<String> = (0..20_000).map(|i| format!("{round}-{i}")).collect();
        store.check_and_mark_batch(&ids).unwrap();
        let local = dir.path().join(format!("checkpoint-{round}"));
        store.checkpoint(&local).unwrap();
        let mut reported = 0;
        let published = destination.publish(&local, |t| reported = t.bytes).unwrap();
        assert_eq!(
            reported,
            published.manifest.bytes(),
            "progress reaches the total"
        );
        if round > 0 {
            assert!(
                published.reused_files > 0 && published.uploaded_bytes < published.manifest.bytes(),
                "round {round} sends only what changed: {published:?}"
            );
        }
        names.push(published.name);
    }
    assert_eq!(destination.list().unwrap(), names);
    let (newest, manifest) = destination.newest().unwrap().unwrap();
    assert_eq!(newest, names[3]);
    assert_eq!(manifest.marks, 80_000);

    // A damaged object is named, and nothing is left in the target.
    let table = manifest
        .files
        .iter()
        .filter(|f| f.name.ends_with(".sst"))
        .max_by_key(|f| f.size)
        .unwrap();
    let object = dir
        .path()
        .join("bucket/orders/0/files")
        .join(format!("{}-{}", table.xxh3, table.size));
    let original = std::fs::read(&object).unwrap();
    let mut damaged = original.clone();
    damaged[10] ^= 0xff;
    std::fs::write(&object, damaged).unwrap();
    let target = dir.path().join("restored");
    match destination.restore(&newest, &target, |_| {}) {
        Err(Error::Corruption { what, .. }) => assert!(what.contains("files/"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert!(!target.exists());
    std::fs::write(&object, original).unwrap();
    destination.restore(&newest, &target, |_| {}).unwrap();
    let restored = Store::open(&target).unwrap();
    assert!(restored.contains("3-19999").unwrap() && restored.contains("0-0").unwrap());

    // Pruning keeps the two newest, each still whole.
    let pruned = destination.prune(2).unwrap();
    assert_eq!(pruned.checkpoints, 2);
    assert!(pruned.files > 0, "{pruned:?}");
    assert_eq!(destination.list().unwrap(), names[2..]);
    for (i, name) in names[2..].iter().enumerate() {
        let into = dir.path().join(format!("after-prune-{i}"));
        destination.restore(name, &into, |_| {}).unwrap();
    }
    assert!(matches!(
        destination.manifest(&names[0]),
        Err(Error::CheckpointStore { .. })
    ));
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    /// A tmpfs of `size` (such as `"4m"`); `None` (the test then says so and passes) without
    /// root or a kernel that lets this process mount.
    fn mount(size: &str) -> Option<Self> {
        let mount = Self(tempfile::tempdir().unwrap());
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(mount.0.path())
            .stderr(std::process::Stdio::null())
            .status();
        if mounted.is_ok_and(|s| s.success()) {
            Some(mount)
        } else {
            eprintln!("skipped: this process cannot mount a tmpfs (it needs root)");
            None
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_destination_or_target_is_an_error_and_publishes_or_restores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("store")).unwrap();
    let ids: Vec<String> = (0..200_000).map(|i| format!("id-{i}")).collect();
    for chunk in ids.chunks(20_000) {
        store.check_and_mark_batch(chunk).unwrap();
    }
    let manifest = store.checkpoint(dir.path().join("checkpoint")).unwrap();
    assert!(manifest.bytes() > 4 << 20, "{} bytes", manifest.bytes());
    let Some(full) = Tmpfs::mount("4m") else {
        return;
    };

    let destination = Checkpoints::local(full.0.path().join("bucket")).unwrap();
    match destination.publish(dir.path().join("checkpoint"), |_| {}) {
        Err(Error::CheckpointStore { detail, .. }) => {
            assert!(detail.to_lowercase().contains("space"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(destination.list().unwrap().is_empty(), "nothing published");

    let target = full.0.path().join("restored");
    match checkpoint::restore(dir.path().join("checkpoint"), &target) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull);
        }
        other => panic!("{other:?}"),
    }
    assert!(!target.exists(), "nothing restored");
    let leftovers: Vec<_> = std::fs::read_dir(full.0.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "bucket")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
