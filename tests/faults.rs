//! Faults: a full disk is an I/O error with no torn state and nothing acknowledged lost; damaged
//! table files are reported as corruption, never answered wrongly.

use dedupstore::{Error, Outcome, Store};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

/// The child: limits the size of any file it writes (`RLIMIT_FSIZE`, as a full disk would), then
/// marks IDs until a write fails, acknowledging each success on stderr.
#[test]
#[ignore = "child process of a_full_disk_is_an_io_error_and_loses_nothing"]
fn child_marks_until_the_disk_is_full() {
    let dir = std::env::var("DEDUPSTORE_TEST_DIR").unwrap();
    let store = Store::open(&dir).unwrap();
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

#[test]
fn a_full_disk_is_an_io_error_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_marks_until_the_disk_is_full",
            "--ignored",
            "--nocapture",
        ])
        .env("DEDUPSTORE_TEST_DIR", dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    let mut error = None;
    let mut done = false;
    let output = child.wait_with_output().unwrap();
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

    let store = Store::open(dir.path()).unwrap();
    for i in acked {
        let ids: Vec<String> = (0..100).map(|j| format!("full-{i}-{j}")).collect();
        assert!(
            store.contains_batch(&ids).unwrap().iter().all(|&c| c),
            "batch {i} was acknowledged"
        );
    }
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
