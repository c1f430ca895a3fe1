//! Disk stays bounded by the window: ten windows of steady marks under a manual clock, and the
//! store's directory never grows past a small multiple of one window's worth of marks.

use dedupstore::{ManualClock, Outcome, Store};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

const WINDOW: Duration = Duration::from_secs(100);
const SLOTS: u32 = 100;
/// Marks per window, in steps of one batch per second.
const MARKS_PER_WINDOW: u64 = 200_000;
const STEPS_PER_WINDOW: u64 = 100;
/// Raw bytes of one window's marks: a 16-byte key and an 8-byte time each.
const WINDOW_BYTES: u64 = MARKS_PER_WINDOW * 24;
/// The bound: three windows of raw marks (RocksDB's per-entry overhead, plus the generations
/// that are dead but not yet dropped), plus 8 MiB of files whose size does not depend on the
/// window (info logs of at most 4 MiB, options, manifest, the write-ahead log's current file).
const BOUND: u64 = 3 * WINDOW_BYTES + (8 << 20);

fn files(path: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = std::fs::read_dir(path)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    files.sort();
    files
}

fn directory_size(path: &Path) -> u64 {
    files(path).iter().map(|f| f.1).sum()
}

#[test]
fn ten_windows_of_marks_stay_within_a_bound() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_800_000_000));
    let store = Store::builder(dir.path())
        .window(WINDOW)
        .slots(SLOTS)
        .capacity(MARKS_PER_WINDOW)
        .clock(clock.clone())
        .open()
        .unwrap();
    let per_step = MARKS_PER_WINDOW / STEPS_PER_WINDOW;
    let mut next = 0u64;
    let mut largest = 0;
    for window in 0..10 {
        for _ in 0..STEPS_PER_WINDOW {
            let ids: Vec<String> = (next..next + per_step)
                .map(|i| format!("steady-{i}"))
                .collect();
            next += per_step;
            assert!(
                store
                    .check_and_mark_batch(&ids)
                    .unwrap()
                    .iter()
                    .all(|o| *o == Outcome::New)
            );
            clock.advance(WINDOW / STEPS_PER_WINDOW as u32);
        }
        let size = directory_size(dir.path());
        largest = largest.max(size);
        println!(
            "window {window}: {size} bytes on disk, {} generations",
            store.stats().generations
        );
        assert!(
            size <= BOUND,
            "window {window}: {size} bytes on disk, bound {BOUND}: {:?}",
            files(dir.path())
        );
    }
    // The bound is not vacuous: ten windows of marks would not fit under it.
    const { assert!(10 * WINDOW_BYTES > BOUND) };
    assert!(
        largest > WINDOW_BYTES / 2,
        "marks reach the disk: {largest} bytes"
    );
    // Marks of the last window are still there, older ones are gone.
    assert!(store.contains(format!("steady-{}", next - 1)).unwrap());
    assert!(!store.contains("steady-0").unwrap());
}
