//! Checkpoints at size, against a plain copy of the same files measured in the same run.
//!
//! Fills a store with `DEDUPSTORE_BENCH_IDS` IDs (default 10,000,000), then times: a checkpoint
//! of the open store, its first publication to a destination directory, a second publication
//! after 1% more IDs (incremental), a restore from the destination (download, checksums, contents
//! check), and the restored store's open and first answer. The baseline is `cp -r` of the closed
//! store's directory to the same disk, then `sync`. Then a hand-off of a partition of a tenth the size through
//! `Partitions` (revoke on one root, assign on another). Prints one table.
//!
//! `cargo bench --bench checkpoint` (`DEDUPSTORE_BENCH_IDS=1000000` for a quick run).

use dedupstore::checkpoint::Checkpoints;
use dedupstore::{Outcome, Partitions, Store};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn fill(store: &Store, from: u64, n: u64) {
    let batch = 10_000;
    let mut i = from;
    while i < from + n {
        let ids: Vec<String> = (i..(i + batch).min(from + n))
            .map(|j| format!("order-{j:012}"))
            .collect();
        store.check_and_mark_batch(&ids).unwrap();
        i += batch;
    }
}

fn du(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            du(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let value = f();
    (value, started.elapsed())
}

fn row(what: &str, took: Duration, bytes: u64, baseline: Duration) {
    println!(
        "{what:<44} {:>9.3} s {:>9.1} MiB {:>8.1} MiB/s {:>7.2}x cp",
        took.as_secs_f64(),
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / f64::from(1 << 20) / took.as_secs_f64(),
        took.as_secs_f64() / baseline.as_secs_f64()
    );
}

fn main() {
    let ids: u64 = std::env::var("DEDUPSTORE_BENCH_IDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    // On the project's disk, not a tmpfs: the figures are the disk's.
    let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let store_dir = dir.path().join("store");
    let store = Store::builder(&store_dir).capacity(ids).open().unwrap();
    let ((), filled) = timed(|| fill(&store, 0, ids));
    store.flush().unwrap();
    drop(store);
    let store_bytes = du(&store_dir);

    // The baseline: a plain copy of the closed store's files, synced (a publication to a
    // directory fsyncs every file it writes).
    let copy = dir.path().join("copy");
    let ((), copied) = timed(|| {
        assert!(
            Command::new("cp")
                .arg("-r")
                .arg(&store_dir)
                .arg(&copy)
                .status()
                .unwrap()
                .success()
        );
        assert!(Command::new("sync").status().unwrap().success());
    });
    std::fs::remove_dir_all(&copy).unwrap();

    let store = Store::builder(&store_dir).capacity(ids).open().unwrap();
    let destination = Checkpoints::local(dir.path().join("bucket")).unwrap();
    let (manifest, checkpointed) = timed(|| store.checkpoint(dir.path().join("c1")).unwrap());
    let (first, published) = timed(|| destination.publish(dir.path().join("c1"), |_| {}).unwrap());
    std::fs::remove_dir_all(dir.path().join("c1")).unwrap();

    fill(&store, ids, ids / 100);
    let (second, incremental) = timed(|| {
        store.checkpoint(dir.path().join("c2")).unwrap();
        destination.publish(dir.path().join("c2"), |_| {}).unwrap()
    });
    drop(store);

    let restored_dir = dir.path().join("restored");
    let (restored, restore_took) = timed(|| {
        destination
            .restore(&second.name, &restored_dir, |_| {})
            .unwrap()
    });
    let (answer, opened) = timed(|| {
        let restored = Store::open(&restored_dir).unwrap();
        restored.check_and_mark("order-000000000007").unwrap()
    });
    assert!(matches!(answer, Outcome::Duplicate { .. }));
    assert_eq!(restored.marks, ids + ids / 100);

    println!(
        "{ids} IDs: filled in {:.1} s; store {:.1} MiB on disk ({:.1} bytes per ID); \
         cp -r and sync of the closed store: {:.3} s",
        filled.as_secs_f64(),
        store_bytes as f64 / f64::from(1 << 20),
        store_bytes as f64 / ids as f64,
        copied.as_secs_f64()
    );
    row(
        "checkpoint of the open store (hard links)",
        checkpointed,
        manifest.bytes(),
        copied,
    );
    row(
        "first publication to a directory",
        published,
        first.uploaded_bytes,
        copied,
    );
    row(
        "checkpoint + publication after 1% more IDs",
        incremental,
        second.uploaded_bytes,
        copied,
    );
    row(
        "restore (download, checksums, contents)",
        restore_took,
        restored.bytes(),
        copied,
    );
    println!(
        "{:<44} {:>9.3} s (open and first duplicate answered)",
        "open of the restored store",
        opened.as_secs_f64()
    );
    println!(
        "second publication sent {} of {} files ({} reused)",
        second.uploaded_files,
        second.manifest.files.len(),
        second.reused_files
    );

    // A hand-off of a partition a tenth the size: revoke on one instance, assign on another.
    let partition_ids = ids / 10;
    let a = Partitions::builder(dir.path().join("a"))
        .checkpoints(destination.at("handoff").unwrap())
        .capacity(partition_ids)
        .open()
        .unwrap();
    a.assign("orders", 0).unwrap();
    let p = a
        .wait("orders", 0, Duration::from_secs(60))
        .unwrap()
        .unwrap();
    fill(p.store(), 0, partition_ids);
    drop(p);
    let (handed, revoke_took) = timed(|| a.revoke("orders", 0).unwrap().unwrap());
    let b = Partitions::builder(dir.path().join("b"))
        .checkpoints(destination.at("handoff").unwrap())
        .capacity(partition_ids)
        .open()
        .unwrap();
    let (p, assign_took) = timed(|| {
        b.assign("orders", 0).unwrap();
        b.wait("orders", 0, Duration::from_secs(600))
            .unwrap()
            .unwrap()
    });
    assert!(p.store().contains("order-000000000001").unwrap());
    drop(p);
    drop(b);
    println!(
        "hand-off of a partition of {partition_ids} IDs ({:.1} MiB): revoke {:.3} s, assign {:.3} s, \
         {:.3} s in all",
        handed.manifest.bytes() as f64 / f64::from(1 << 20),
        revoke_took.as_secs_f64(),
        assign_took.as_secs_f64(),
        (revoke_took + assign_took).as_secs_f64()
    );
}
