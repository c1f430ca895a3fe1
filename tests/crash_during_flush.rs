//! A `SIGKILL` while RocksDB flushes and compacts leaves table files the MANIFEST does not list
//! yet. The open's check for a damaged MANIFEST must tell those from lost files: every reopen
//! succeeds, and every acknowledged batch is there.

#[path = "common/child.rs"]
mod child;

use dedupstore::{Durability, Store};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

const BATCH: u64 = 2_000;
const ROWS: u64 = 50;

fn open(dir: &Path) -> Store {
    Store::builder(dir)
        .durability(Durability::Buffered)
        .open()
        .unwrap()
}

fn ids(round: u64, batch: u64) -> Vec<String> {
    (0..BATCH)
        .map(|i| format!("r{round}-b{batch}-{i}"))
        .collect()
}

/// The child: marks batches and writes rows (so that marks and a table both flush and the table
/// compacts) until killed, acknowledging each batch on stderr.
#[test]
#[ignore = "child process of kills_during_flushes_never_make_an_open_refuse"]
fn child_writes_until_killed() {
    let dir = std::env::var("DEDUPSTORE_TEST_DIR").unwrap();
    let round: u64 = std::env::var("DEDUPSTORE_TEST_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let store = open(Path::new(&dir));
    let mut out = std::io::stderr().lock();
    let row = vec![7u8; 200];
    for batch in 0u64.. {
        store.check_and_mark_batch(&ids(round, batch)).unwrap();
        let mut txn = store.transaction();
        for r in 0..ROWS {
            txn.put("rows", format!("r{round}-b{batch}-{r}"), &row)
                .unwrap();
        }
        let _ = txn.commit().unwrap();
        // One write of a whole line: the kill cannot tear it (pipe writes this short are atomic).
        out.write_all(format!("ack {batch}\n").as_bytes()).unwrap();
    }
}

#[test]
fn kills_during_flushes_never_make_an_open_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(
        std::env::var("DEDUPSTORE_CRASH_SEED").map_or(11, |v| v.parse().unwrap()),
    );
    for round in 0..10u64 {
        let mut child = child::ignored_test("child_writes_until_killed")
            .env("DEDUPSTORE_TEST_DIR", dir.path())
            .env("DEDUPSTORE_TEST_ROUND", round.to_string())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ack ").map(|n| n.parse::<u64>().unwrap()))
                .max()
        });
        std::thread::sleep(Duration::from_millis(rng.u64(300..2_500)));
        child.kill().unwrap();
        child.wait().unwrap();
        let acked = reader.join().unwrap();

        let store = Store::builder(dir.path())
            .durability(Durability::Buffered)
            .open()
            .unwrap_or_else(|e| panic!("round {round}: the open refused: {e}"));
        for batch in acked.map_or(0..0, |last| 0..last + 1) {
            let found = store.contains_batch(&ids(round, batch)).unwrap();
            assert!(
                found.iter().all(|&c| c),
                "round {round}: batch {batch} lost"
            );
            let row = store.get("rows", format!("r{round}-b{batch}-0")).unwrap();
            assert!(
                row.is_some(),
                "round {round}: the rows of batch {batch} lost"
            );
        }
        store.close().unwrap();
    }
}
