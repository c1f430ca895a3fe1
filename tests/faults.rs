//! Faults: a full disk (a file size limit, and a real full file system) is an I/O error with no
//! torn state and nothing acknowledged lost; damaged table files are reported as corruption,
//! never answered wrongly.

#[path = "common/child.rs"]
mod child;

use dedupstore::{Error, Outcome, Store};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Command;

/// The child: with `DEDUPSTORE_TEST_FSIZE` set, limits the size of any file it writes
/// (`RLIMIT_FSIZE`, as a full disk would); then marks IDs until a write fails, acknowledging
/// each success on stderr.
#[test]
#[ignore = "child process of the full-disk tests"]
fn child_marks_until_the_disk_is_full() {
    let dir = std::env::var("DEDUPSTORE_TEST_DIR").unwrap();
    let store = Store::open(&dir).unwrap();
    if std::env::var_os("DEDUPSTORE_TEST_FSIZE").is_some() {
        let limit = libc::rlimit {
            rlim_cur: 4 << 20,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain system calls on this process; no memory is shared with them.
        #[allow(unsafe_code)]
        unsafe {
            // Writing past the limit must fail with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
        }
    }
    let mut out = std::io::stderr().lock();
    for i in 0u64.. {
        let ids: Vec<String> = (0..100).map(|j| format!("full-{i}-{j}")).collect();
        match store.check_and_mark_batch(&ids) {
            Ok(outcomes) => {
                assert!(outcomes.iter().all(|o| *o == Outcome::New));
                writeln!(out, "ack {i}").unwrap();
            }
            Err(e) => {
                let kind = match &e {
                    Error::Io { .. } => "io",
                    _ => "other",
                };
                writeln!(out, "error {kind}: {e}").unwrap();
                // The store keeps refusing writes and keeps answering reads.
                assert!(store.check_and_mark(format!("after-{i}")).is_err());
                assert!(
                    store
                        .contains(format!("full-{}-0", i.saturating_sub(1)))
                        .unwrap()
                );
                writeln!(out, "done").unwrap();
                return;
            }
        }
    }
}

/// Runs the child on the store at `dir` until the disk is full, checks how it failed, and
/// returns the acknowledged batches.
fn mark_until_full(dir: &Path, file_size_limit: bool) -> Vec<u64> {
    let mut child = child::ignored_test("child_marks_until_the_disk_is_full");
    child.env("DEDUPSTORE_TEST_DIR", dir);
    if file_size_limit {
        child.env("DEDUPSTORE_TEST_FSIZE", "1");
    }
    let output = child.output().unwrap();
    let mut acked = Vec::new();
    let mut error = None;
    let mut done = false;
    for line in BufReader::new(&output.stderr[..]).lines() {
        let line = line.unwrap();
        if let Some(i) = line.strip_prefix("ack ") {
            acked.push(i.parse::<u64>().unwrap());
        } else if let Some(e) = line.strip_prefix("error ") {
            error = Some(e.to_owned());
        } else if line == "done" {
            done = true;
        }
    }
    let error = error.expect("a write failed");
    assert!(error.starts_with("io:"), "{error}");
    assert!(
        done && output.status.success(),
        "the child did not panic: {:?}",
        output.status
    );
    assert!(
        acked.len() > 100,
        "the limit was reached after some writes: {}",
        acked.len()
    );
    acked
}

/// Asserts that every acknowledged batch is in the store at `dir`.
fn assert_acknowledged_kept(dir: &Path, acked: &[u64]) {
    let store = Store::open(dir).unwrap();
    for i in acked {
        let ids: Vec<String> = (0..100).map(|j| format!("full-{i}-{j}")).collect();
        assert!(
            store.contains_batch(&ids).unwrap().iter().all(|&c| c),
            "batch {i} was acknowledged"
        );
    }
}

#[test]
fn a_full_disk_is_an_io_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let acked = mark_until_full(dir.path(), true);
    assert_acknowledged_kept(dir.path(), &acked);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(tempfile::TempDir);

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// A real full file system: a 32 MiB tmpfs filled until `ENOSPC`. Mounting needs root (and a
/// kernel that lets this process mount); without, the test says so and passes.
#[test]
fn a_full_file_system_is_an_io_error_and_a_reopen_after_freeing_space_loses_nothing() {
    // SAFETY: a plain system call without arguments.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: mounting a tmpfs needs root");
        return;
    }
    let mount = Tmpfs(tempfile::tempdir().unwrap());
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=32m", "tmpfs"])
        .arg(mount.0.path())
        .status();
    if !mounted.is_ok_and(|s| s.success()) {
        eprintln!("skipped: this machine does not let root mount a tmpfs");
        return;
    }
    let dir = mount.0.path().join("store");
    drop(Store::open(&dir).unwrap());
    // Space to free once the disk is full, so the store can be reopened (an open needs room for
    // a new write-ahead log, which RocksDB preallocates).
    let ballast = mount.0.path().join("ballast");
    std::fs::write(&ballast, vec![1u8; 12 << 20]).unwrap();
    let acked = mark_until_full(&dir, false);
    std::fs::remove_file(&ballast).unwrap();
    assert_acknowledged_kept(&dir, &acked);
}

#[test]
fn damaged_table_files_are_reported_as_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..200_000).map(|i| format!("c-{i}")).collect();
    let store = Store::open(dir.path()).unwrap();
    for chunk in ids.chunks(10_000) {
        store.check_and_mark_batch(chunk).unwrap();
    }
    store.flush().unwrap();
    drop(store);

    let mut damaged = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sst") {
            let mut bytes = std::fs::read(&path).unwrap();
            // Data blocks come first: flip bytes throughout the first half of the file.
            for at in (100..bytes.len() / 2).step_by(4_000) {
                bytes[at] ^= 0x5a;
            }
            std::fs::write(&path, bytes).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);

    // The store opens or refuses to; either way, no ID is ever answered as new.
    let store = match Store::open(dir.path()) {
        Ok(store) => store,
        Err(Error::Corruption { .. }) => return,
        Err(other) => panic!("{other:?}"),
    };
    let mut corruption = 0;
    for id in &ids {
        match store.check_and_mark(id) {
            Ok(Outcome::Duplicate { .. }) => {}
            Err(Error::Corruption { .. }) => corruption += 1,
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(corruption > 0, "the damage was noticed");
}
