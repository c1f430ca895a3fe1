//! Partitions that move between instances: a revoked partition's store is checkpointed and
//! published, an assigned one restored (or its local copy reopened when at least as new), with
//! its marks, offsets and outbox; a damaged checkpoint falls back to an older one, and a store
//! that starts with nothing is counted, never silent; a slow restore never holds the caller past
//! its timeout and a revocation gives it up; many partitions share one memory budget.

use async_trait::async_trait;
use dedupstore::checkpoint::Checkpoints;
use dedupstore::{CommitOutcome, Error, Outcome, Partition, Partitions, StartedFrom};
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use parking_lot::{Condvar, Mutex};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STREAM: &str = "orders";
const LONG: Duration = Duration::from_secs(30);

fn partitions(root: &Path, checkpoints: &Path) -> Partitions {
    Partitions::builder(root)
        .checkpoints(Checkpoints::local(checkpoints).unwrap())
        .memory_budget(64 << 20)
        .open()
        .unwrap()
}

fn ready(partitions: &Partitions, p: u32) -> Partition {
    partitions.assign(STREAM, p).unwrap();
    partitions
        .wait(STREAM, p, LONG)
        .unwrap()
        .expect("ready in time")
}

/// Commits `n` orders of partition `p` from `first`: a mark, a row, the offset, an event each.
fn consume(partition: &Partition, first: u64, n: u64) {
    let p = partition.partition();
    for i in first..first + n {
        let mut txn = partition.store().transaction();
        txn.mark(format!("{p}-{i}")).unwrap();
        txn.put("orders", i.to_be_bytes(), b"applied").unwrap();
        txn.set_offset(STREAM, p, i)
            .unwrap()
            .outbox(format!("{p}-{i}"));
        assert!(matches!(txn.commit().unwrap(), CommitOutcome::Committed(_)));
    }
}

#[test]
fn a_hand_off_moves_marks_offsets_rows_and_outbox_to_the_next_owner() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let a = partitions(&dir.path().join("a"), &checkpoints);
    let first = ready(&a, 7);
    assert_eq!(first.started_from(), &StartedFrom::Nothing);
    assert_eq!(first.stored_offset(), None);
    consume(&first, 0, 500);
    // Submitted and not waited for: the revocation writes them before its checkpoint.
    let tickets: Vec<_> = (500..600)
        .map(|i| {
            let mut txn = first.store().transaction();
            txn.mark(format!("7-{i}")).unwrap();
            txn.set_offset(STREAM, 7, i)
                .unwrap()
                .outbox(format!("7-{i}"));
            txn.submit().unwrap()
        })
        .collect();
    let published = a.revoke(STREAM, 7).unwrap().expect("published");
    assert_eq!(published.manifest.offset(STREAM, 7), Some(599));
    assert_eq!(published.manifest.marks, 600);
    for ticket in tickets {
        assert!(matches!(
            ticket.wait().unwrap(),
            CommitOutcome::Committed(_)
        ));
    }
    assert!(a.get(STREAM, 7).is_none() && a.assigned().is_empty());
    drop(first);
    // The store's handles are gone only now: a later revoke of nothing finds nothing.
    assert!(a.revoke(STREAM, 7).unwrap().is_none());

    let b = partitions(&dir.path().join("b"), &checkpoints);
    let moved = ready(&b, 7);
    assert!(
        matches!(moved.started_from(), StartedFrom::Checkpoint { name } if *name == published.name)
    );
    assert_eq!(moved.stored_offset(), Some(599));
    let store = moved.store();
    assert!(matches!(
        store.check_and_mark("7-0").unwrap(),
        Outcome::Duplicate { .. }
    ));
    assert!(matches!(
        store.check_and_mark("7-599").unwrap(),
        Outcome::Duplicate { .. }
    ));
    assert_eq!(store.check_and_mark("7-600").unwrap(), Outcome::New);
    assert_eq!(
        store.get("orders", 42u64.to_be_bytes()).unwrap().as_deref(),
        Some(&b"applied"[..])
    );
    assert_eq!(store.outbox().peek(usize::MAX).unwrap().len(), 600);
    let stats = b.stats();
    assert_eq!((stats.restored, stats.started_without_checkpoint), (1, 0));
    assert_eq!(
        a.stats().started_without_checkpoint,
        1,
        "a's first start was counted"
    );
    assert_eq!(a.stats().checkpoints_published, 1);
}

#[test]
fn a_local_copy_at_least_as_new_as_the_newest_checkpoint_is_reopened_an_older_one_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 1);
    consume(&p, 0, 100);
    a.checkpoint(STREAM, 1).unwrap();
    consume(&p, 100, 50); // after the checkpoint: the local copy is newer
    drop(p);
    drop(a); // as a crash would: no hand-off, the local copy stays

    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 1);
    assert_eq!(p.started_from(), &StartedFrom::LocalCopy);
    assert_eq!(p.stored_offset(), Some(149));
    drop(p);
    drop(a);

    // Another instance moves the partition on, past the old local copy.
    let b = partitions(&dir.path().join("b"), &checkpoints);
    let p = ready(&b, 1);
    assert!(matches!(p.started_from(), StartedFrom::Checkpoint { .. }));
    assert_eq!(
        p.stored_offset(),
        Some(99),
        "the checkpoint's offset: replay from it"
    );
    consume(&p, 100, 300);
    drop(p);
    b.revoke(STREAM, 1).unwrap().unwrap();

    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 1);
    assert!(matches!(p.started_from(), StartedFrom::Checkpoint { .. }));
    assert_eq!(p.stored_offset(), Some(399));
    assert!(p.store().contains("1-399").unwrap());
}

/// Flips a byte in the largest table file of checkpoint `name` of partition `p` that no
/// checkpoint in `spare` holds (objects are shared by the checkpoints that hold the same file).
fn damage(checkpoints: &Path, p: u32, name: &str, spare: &[&str]) {
    let destination = Checkpoints::local(checkpoints)
        .unwrap()
        .at(&format!("{STREAM}/{p}"))
        .unwrap();
    let kept: Vec<_> = spare
        .iter()
        .flat_map(|n| destination.manifest(n).unwrap().files)
        .collect();
    let manifest = destination.manifest(name).unwrap();
    let table = manifest
        .files
        .iter()
        .filter(|f| f.name.ends_with(".sst") && !kept.contains(f))
        .max_by_key(|f| f.size)
        .expect("a table file of its own");
    let object = checkpoints
        .join(format!("{STREAM}/{p}/files"))
        .join(format!("{}-{}", table.xxh3, table.size));
    let mut bytes = std::fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(object, bytes).unwrap();
}

#[test]
fn a_damaged_checkpoint_falls_back_to_an_older_one_and_none_sound_is_an_error_not_an_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 2);
    consume(&p, 0, 3_000);
    let older = a.checkpoint(STREAM, 2).unwrap();
    consume(&p, 3_000, 3_000);
    drop(p);
    let newer = a.revoke(STREAM, 2).unwrap().unwrap();
    damage(&checkpoints, 2, &newer.name, &[&older.name]);

    let b = partitions(&dir.path().join("b"), &checkpoints);
    let p = ready(&b, 2);
    assert!(matches!(p.started_from(), StartedFrom::Checkpoint { name } if *name == older.name));
    assert_eq!(p.stored_offset(), Some(2_999));
    assert_eq!(b.stats().failed_restores, 1);
    drop(p);
    drop(b);

    // Every checkpoint damaged: the assignment fails, loudly, and never starts empty.
    damage(&checkpoints, 2, &older.name, &[]);
    let c = partitions(&dir.path().join("c"), &checkpoints);
    c.assign(STREAM, 2).unwrap();
    assert!(matches!(
        c.wait(STREAM, 2, LONG),
        Err(Error::Corruption { .. })
    ));
    assert!(c.assigned().is_empty(), "unassigned after the error");
    assert_eq!(c.stats().started_without_checkpoint, 0);
    assert!(!dir.path().join("c").join(STREAM).join("2").exists());
}

#[test]
fn a_local_copy_that_cannot_be_opened_is_set_aside_for_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 3);
    consume(&p, 0, 200);
    a.checkpoint(STREAM, 3).unwrap();
    drop(p);
    drop(a);
    let local = dir.path().join("a").join(STREAM).join("3");
    std::fs::write(local.join("CURRENT"), b"MANIFEST-999999\n").unwrap();

    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 3);
    assert!(matches!(p.started_from(), StartedFrom::Checkpoint { .. }));
    assert!(p.store().contains("3-199").unwrap());
    let aside: Vec<_> = std::fs::read_dir(dir.path().join("a").join(STREAM))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("3.damaged-"))
        .collect();
    assert_eq!(
        aside.len(),
        1,
        "the damaged copy is kept for a person to look at"
    );
}

/// An object store whose reads wait at a gate until it is opened: a slow destination.
#[derive(Debug)]
struct Gated {
    inner: LocalFileSystem,
    open: Mutex<bool>,
    opened: Condvar,
}

impl std::fmt::Display for Gated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gated({})", self.inner)
    }
}

impl Gated {
    fn pass(&self) {
        let mut open = self.open.lock();
        while !*open {
            self.opened.wait(&mut open);
        }
    }

    fn set(&self, open: bool) {
        *self.open.lock() = open;
        self.opened.notify_all();
    }
}

#[async_trait]
impl ObjectStore for Gated {
    async fn put_opts(
        &self,
        location: &ObjectPath,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &ObjectPath,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &ObjectPath,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if location.as_ref().contains("/files/") {
            self.pass();
        }
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<ObjectPath>>,
    ) -> BoxStream<'static, object_store::Result<ObjectPath>> {
        self.inner.delete_stream(locations)
    }

    fn list(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(
        &self,
        prefix: Option<&ObjectPath>,
    ) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &ObjectPath,
        to: &ObjectPath,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[test]
fn a_slow_restore_never_holds_the_caller_past_its_timeout_and_a_revocation_gives_it_up() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let a = partitions(&dir.path().join("a"), &checkpoints);
    let p = ready(&a, 4);
    consume(&p, 0, 1_000);
    drop(p);
    a.revoke(STREAM, 4).unwrap().unwrap();

    let gated = Arc::new(Gated {
        inner: LocalFileSystem::new_with_prefix(&checkpoints).unwrap(),
        open: Mutex::new(false),
        opened: Condvar::new(),
    });
    let b = Partitions::builder(dir.path().join("b"))
        .checkpoints(Checkpoints::new(gated.clone(), "").unwrap())
        .open()
        .unwrap();
    b.assign(STREAM, 4).unwrap();
    let asked = Instant::now();
    assert!(
        b.wait(STREAM, 4, Duration::from_millis(200))
            .unwrap()
            .is_none()
    );
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(b.stats().preparing, 1);
    assert!(b.get(STREAM, 4).is_none());

    // Revoked while restoring: given up, and nothing of it stays.
    assert!(b.revoke(STREAM, 4).unwrap().is_none());
    gated.set(true);
    let partition_dir = dir.path().join("b").join(STREAM).join("4");
    let deadline = Instant::now() + LONG;
    while partition_dir.exists()
        || std::fs::read_dir(dir.path().join("b").join(STREAM)).is_ok_and(|d| d.count() > 0)
    {
        assert!(
            Instant::now() < deadline,
            "the cancelled restore left files"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Assigned again, with the destination fast: restored.
    let p = ready(&b, 4);
    assert!(matches!(p.started_from(), StartedFrom::Checkpoint { .. }));
    assert!(p.store().contains("4-999").unwrap());
}

#[test]
fn many_partitions_share_one_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 64 << 20;
    let many = Partitions::builder(dir.path().join("root"))
        .memory_budget(budget)
        .capacity(120_000)
        .open()
        .unwrap();
    let stores: Vec<Partition> = (0..24).map(|p| ready(&many, p)).collect();
    for partition in &stores {
        let ids: Vec<String> = (0..120_000)
            .map(|i| format!("{}-{i}", partition.partition()))
            .collect();
        for chunk in ids.chunks(10_000) {
            partition.store().check_and_mark_batch(chunk).unwrap();
        }
    }
    let stats = many.stats();
    assert_eq!(stats.ready, 24);
    assert_eq!(stats.memory_budget, budget as u64);
    // The in-memory tiers stay within their part (5/7); RocksDB's block cache within its part
    // (2/7) plus what its sharing allows: memtables are flushed by the store that writes, so an
    // idle partition keeps its last one (sized for its share), and together they may
    // hold a quarter of RocksDB's part beyond it (docs/operations.md).
    let rocksdb_part = budget / 7 * 2;
    assert!(
        stats.hot_bytes <= (budget - rocksdb_part) as u64,
        "{} bytes in the in-memory tiers",
        stats.hot_bytes
    );
    assert!(
        stats.block_cache_bytes <= (rocksdb_part + rocksdb_part / 4) as u64,
        "{} bytes in the block cache, for {rocksdb_part}",
        stats.block_cache_bytes
    );
    // Each partition's share is a twenty-fourth of the in-memory part: it evicted, and answers
    // the older IDs from disk.
    let store = stores[0].store();
    assert!(store.stats().hot_evictions > 0);
    assert!(store.contains("0-0").unwrap());

    // Revoking most of them gives the rest more room.
    drop(stores);
    for p in 1..24 {
        many.revoke(STREAM, p).unwrap();
    }
    let one = many.get(STREAM, 0).unwrap();
    let before = one.store().stats().memory_budget;
    assert!(
        before > (budget / 2) as u64,
        "{before} bytes for the one partition left"
    );
}

#[test]
fn bad_names_unassigned_partitions_and_a_shared_root_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let partitions = Partitions::builder(&root).open().unwrap();
    for bad in ["", ".hidden", "a/b", "spaced name", &"x".repeat(250)] {
        assert!(
            matches!(partitions.assign(bad, 0), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        partitions.wait(STREAM, 9, Duration::ZERO),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        partitions.checkpoint(STREAM, 9),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        Partitions::builder(&root).open(),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(
        Partitions::builder(dir.path().join("other"))
            .keep_checkpoints(0)
            .open(),
        Err(Error::InvalidConfig {
            what: "keep_checkpoints",
            ..
        })
    ));
    assert!(matches!(
        Partitions::builder(dir.path().join("other"))
            .memory_budget(1 << 20)
            .open(),
        Err(Error::InvalidConfig {
            what: "memory_budget",
            ..
        })
    ));
    // Without a destination, a revoked partition is closed and kept for a later assignment.
    let p = ready(&partitions, 0);
    consume(&p, 0, 10);
    drop(p);
    assert!(partitions.revoke(STREAM, 0).unwrap().is_none());
    assert!(matches!(
        partitions.checkpoint(STREAM, 0),
        Err(Error::InvalidArgument { .. })
    ));
    let p = ready(&partitions, 0);
    assert_eq!(p.started_from(), &StartedFrom::LocalCopy);
    assert_eq!(p.stored_offset(), Some(9));
}
