//! Damaged files: every file of a store, flipped or truncated, and the MANIFEST truncated at
//! every point. Reopening gives a clear error that names the damaged file, or a consistent
//! state: each transaction all there or not at all, the recovered ones a prefix of those
//! acknowledged, and no recovered ID answered `New`. A refused open deletes nothing.

use dedupstore::{Error, ManualClock, Outcome, Store};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

const ROUNDS: u64 = 4;
const PER_ROUND: u64 = 300;
const TXNS: u64 = ROUNDS * PER_ROUND;
const WINDOW: Duration = Duration::from_secs(3600);

fn clock() -> ManualClock {
    ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
}

fn open(dir: &Path, clock: &ManualClock) -> dedupstore::Result<Store> {
    Store::builder(dir)
        .window(WINDOW)
        .clock(clock.clone())
        .open()
}

fn id(i: u64) -> String {
    format!("id-{i}")
}

/// A store of `TXNS` record-and-mark transactions over several generations: the first rounds
/// flushed to table files, the last only in the write-ahead log. With `reopened`, the store is
/// closed and opened again before the last round, so that the MANIFEST starts with an open's
/// record (which names a log number no log has) and ends in the flushes since. Returns the
/// clock to reopen it with.
fn build(dir: &Path, reopened: bool) -> ManualClock {
    let clock = clock();
    let mut store = open(dir, &clock).unwrap();
    for round in 0..ROUNDS {
        if reopened && round + 1 == ROUNDS {
            store.close().unwrap();
            store = open(dir, &clock).unwrap();
        }
        for i in round * PER_ROUND..(round + 1) * PER_ROUND {
            // The last round's generation also flushes: the MANIFEST then ends in flushes.
            if round + 1 == ROUNDS && i % 100 == 0 {
                store.flush().unwrap();
            }
            let mut txn = store.transaction();
            txn.mark(id(i)).unwrap();
            txn.put("rows", id(i), b"v").unwrap();
            txn.set_offset("stream", 0, i + 1).unwrap();
            let _ = txn.commit().unwrap();
        }
        if round + 1 < ROUNDS {
            store.flush().unwrap();
            // Past a generation's end: the next round starts a new column family.
            clock.advance(WINDOW / 6);
        }
    }
    store.close().unwrap();
    clock
}

fn copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Asserts that a refused open deleted none of the files in `before` (RocksDB may have added
/// its info log).
fn assert_kept(dir: &Path, before: &[String], case: &str) {
    let after = names(dir);
    let deleted: Vec<&String> = before.iter().filter(|n| !after.contains(n)).collect();
    assert!(
        deleted.is_empty(),
        "{case}: a refused open deleted {deleted:?}"
    );
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip(u64),
    Truncate(u64),
}

fn damage(file: &Path, how: Damage) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    match how {
        Damage::Flip(at) => {
            let mut byte = [0u8];
            f.read_exact_at(&mut byte, at).unwrap();
            f.write_all_at(&[byte[0] ^ 0x5a], at).unwrap();
        }
        Damage::Truncate(to) => f.set_len(to).unwrap(),
    }
}

/// Whether an error names `file` (by its name: RocksDB and the store give full paths).
fn names_file(e: &Error, file: &str) -> bool {
    e.to_string().contains(file)
}

/// Checks a reopened store: every transaction all there or not at all, the recovered ones a
/// prefix, every recovered ID a duplicate. A read may fail only with an error naming `file`.
/// Returns how many transactions were recovered, or `None` if a read failed.
fn check_consistent(store: &Store, file: &str) -> Option<u64> {
    let mut recovered = 0;
    let mut hole = false;
    for i in 0..TXNS {
        let (mark, row) = match (store.contains(id(i)), store.get("rows", id(i))) {
            (Ok(mark), Ok(row)) => (mark, row.is_some()),
            (Err(e), _) | (_, Err(e)) => {
                assert!(names_file(&e, file), "read of {} failed with {e}", id(i));
                return None;
            }
        };
        assert_eq!(mark, row, "transaction {i} is torn");
        if mark {
            assert!(!hole, "transaction {i} recovered after a lost one");
            recovered += 1;
            assert!(matches!(
                store.check_and_mark(id(i)),
                Ok(Outcome::Duplicate { .. })
            ));
        } else {
            hole = true;
        }
    }
    let offset = match store.offset("stream", 0) {
        Ok(offset) => offset.unwrap_or(0),
        Err(e) => {
            assert!(names_file(&e, file), "reading the offset failed with {e}");
            return None;
        }
    };
    assert_eq!(
        offset, recovered,
        "the offset disagrees with the recovered transactions"
    );
    Some(recovered)
}

#[test]
fn every_file_flipped_or_truncated_is_named_or_recovered_consistently() {
    let base = tempfile::tempdir().unwrap();
    let source = base.path().join("source");
    let clock = build(&source, false);
    let mut case = 0;
    for name in names(&source) {
        let len = fs::metadata(source.join(&name)).unwrap().len();
        let mut damages = vec![Damage::Truncate(0), Damage::Truncate(len / 2)];
        if len > 0 {
            damages.extend([
                Damage::Flip(0),
                Damage::Flip(len / 2),
                Damage::Flip(len - 1),
                Damage::Truncate(len - 1),
            ]);
        }
        for how in damages {
            case += 1;
            let dir = base.path().join(format!("case-{case}"));
            copy(&source, &dir);
            damage(&dir.join(&name), how);
            match open(&dir, &clock) {
                Err(e) => {
                    assert!(names_file(&e, &name), "{name} {how:?}: {e}");
                    // The evidence stays: RocksDB may have flushed its log before the damage
                    // was found, but the damaged file is never deleted.
                    assert!(
                        dir.join(&name).exists(),
                        "{name} {how:?}: a refused open deleted it: {e}"
                    );
                }
                Ok(store) => {
                    let recovered = check_consistent(&store, &name);
                    // Only the write-ahead log's torn tail may cost acknowledged writes.
                    if let (Some(recovered), false) = (recovered, name.ends_with(".log")) {
                        assert_eq!(recovered, TXNS, "{name} {how:?}: lost without an error");
                    }
                }
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn a_manifest_truncated_anywhere_is_refused_before_anything_is_deleted() {
    truncate_the_manifest_anywhere(false);
}

#[test]
fn a_manifest_truncated_anywhere_after_a_reopen_is_refused_before_anything_is_deleted() {
    truncate_the_manifest_anywhere(true);
}

fn truncate_the_manifest_anywhere(reopened: bool) {
    let base = tempfile::tempdir().unwrap();
    let source = base.path().join("source");
    let clock = build(&source, reopened);
    let manifest = names(&source)
        .into_iter()
        .find(|n| n.starts_with("MANIFEST-"))
        .unwrap();
    let len = fs::metadata(source.join(&manifest)).unwrap().len();
    let dir: PathBuf = base.path().join("damaged");
    for at in (0..len).step_by(24) {
        copy(&source, &dir);
        damage(&dir.join(&manifest), Damage::Truncate(at));
        let before = names(&dir);
        match open(&dir, &clock) {
            Err(e @ Error::Corruption { .. }) => {
                assert!(
                    names_file(&e, &manifest) || names_file(&e, ".sst"),
                    "truncated to {at}: {e}"
                );
                assert_kept(&dir, &before, &format!("truncated to {at}"));
            }
            Err(e) => panic!("truncated to {at}: {e:?}"),
            Ok(store) => {
                // Only what no acknowledged write needed may be lost.
                assert_eq!(
                    check_consistent(&store, &manifest),
                    Some(TXNS),
                    "truncated to {at}"
                );
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
