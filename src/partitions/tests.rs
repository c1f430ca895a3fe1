use super::*;
use crate::CommitOutcome;
use std::sync::Barrier;

/// A revocation waits for the transactions submitted before it, even while the disk holds
/// their write: the checkpoint it publishes has every one of them.
#[test]
fn a_revocation_waits_for_transactions_still_queued() {
    let dir = tempfile::tempdir().unwrap();
    let partitions = Partitions::builder(dir.path().join("a"))
        .checkpoints(Checkpoints::local(dir.path().join("checkpoints")).unwrap())
        .open()
        .unwrap();
    partitions.assign("orders", 0).unwrap();
    let p = partitions
        .wait("orders", 0, Duration::from_secs(30))
        .unwrap()
        .unwrap();
    let gate = Arc::new(Barrier::new(2));
    p.store()
        .engine()
        .cold
        .fault
        .hold_next_write(Arc::clone(&gate));
    let submit = |i: u64| {
        let mut txn = p.store().transaction();
        txn.mark(format!("m-{i}")).unwrap();
        txn.set_offset("orders", 0, i).unwrap();
        txn.submit().unwrap()
    };
    let first = submit(0);
    gate.wait(); // the committer is in the first write, held
    let queued: Vec<_> = (1..10).map(submit).collect();
    let revoking = {
        let partitions = partitions.clone();
        std::thread::spawn(move || partitions.revoke("orders", 0))
    };
    // Long enough for a revocation that did not wait to checkpoint without them.
    std::thread::sleep(Duration::from_millis(300));
    gate.wait();
    let published = revoking.join().unwrap().unwrap().unwrap();
    assert_eq!(published.manifest.marks, 10);
    assert_eq!(published.manifest.offset("orders", 0), Some(9));
    for ticket in std::iter::once(first).chain(queued) {
        assert!(matches!(
            ticket.wait().unwrap(),
            CommitOutcome::Committed(_)
        ));
    }
}
