//! The write-ahead log: a torn record at its end (what a crash leaves) is dropped and every
//! complete record before it recovered; damage in its middle (media corruption) is reported as
//! `Error::Corruption` instead of silently dropping every acknowledged write after it.

use dedupstore::{Error, Outcome, Store};
use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MARKS: usize = 2_000;

/// A store whose marks are only in its write-ahead log (never flushed), that log's path, and
/// its length once the last mark was written (the close appends the saved filters after it).
fn store_with_marks_in_the_log(dir: &Path) -> (PathBuf, u64) {
    let store = Store::open(dir).unwrap();
    for i in 0..MARKS {
        assert_eq!(
            store.check_and_mark(format!("id-{i}")).unwrap(),
            Outcome::New
        );
    }
    let log = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let marks_end = fs::metadata(&log).unwrap().len();
    store.close().unwrap();
    assert!(
        fs::metadata(&log).unwrap().len() > marks_end,
        "the filters follow"
    );
    (log, marks_end)
}

fn recovered(dir: &Path) -> usize {
    let store = Store::open(dir).unwrap();
    let ids: Vec<String> = (0..MARKS).map(|i| format!("id-{i}")).collect();
    let found = store.contains_batch(&ids).unwrap();
    // Recovered marks are a prefix: nothing after a lost one survives.
    let prefix = found.iter().take_while(|&&c| c).count();
    assert!(
        found[prefix..].iter().all(|&c| !c),
        "a hole in the recovered marks"
    );
    prefix
}

#[test]
fn a_torn_tail_drops_only_the_torn_record() {
    let dir = tempfile::tempdir().unwrap();
    let (log, marks_end) = store_with_marks_in_the_log(dir.path());
    // A crash in the middle of the last mark's write: it and the saved filters after it are
    // gone.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(marks_end - 10)
        .unwrap();
    assert_eq!(recovered(dir.path()), MARKS - 1);
}

#[test]
fn damage_in_the_middle_of_the_log_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (log, marks_end) = store_with_marks_in_the_log(dir.path());
    let len = fs::metadata(&log).unwrap().len();
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
        .unwrap();
    file.seek(SeekFrom::Start(marks_end / 2)).unwrap();
    let mut byte = [0u8; 1];
    std::io::Read::read_exact(&mut file, &mut byte).unwrap();
    file.seek(SeekFrom::Start(marks_end / 2)).unwrap();
    file.write_all(&[byte[0] ^ 0x40]).unwrap();
    drop(file);
    match Store::open(dir.path()) {
        Err(Error::Corruption { what, detail }) => {
            assert!(
                what.contains(dir.path().to_str().unwrap()),
                "{what}: {detail}"
            );
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("opened, dropping the acknowledged marks after the damage"),
    }
    // The log is left as it was, for whoever investigates.
    assert_eq!(fs::metadata(&log).unwrap().len(), len);
}
