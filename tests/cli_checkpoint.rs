//! `dedupstore checkpoint` and `dedupstore restore`, the real binary on real stores: a closed
//! store published (incrementally, the second time) and restored whole; an open store, a
//! non-empty target and a missing checkpoint refused with a message and a non-zero exit.

use dedupstore::{Outcome, Store};
use std::path::Path;
use std::process::{Command, Output};

fn dedupstore(args: &[&Path]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dedupstore"))
        .args(args)
        .output()
        .unwrap()
}

fn mark(dir: &Path, range: std::ops::Range<u32>) {
    let store = Store::open(dir).unwrap();
    let ids: Vec<String> = range.map(|i| format!("id-{i}")).collect();
    store.check_and_mark_batch(&ids).unwrap();
    let mut txn = store.transaction();
    txn.set_offset("orders", 0, u64::from(ids.len() as u32))
        .unwrap();
    let _ = txn.commit().unwrap();
}

fn json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_closed_store_is_published_incrementally_and_restored_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, dest) = (dir.path().join("store"), dir.path().join("dest"));
    mark(&store, 0..50_000);
    let flag = |s: &str| Path::new(s).to_owned();
    let checkpoint = |extra: &[&Path]| {
        let mut args = vec![Path::new("checkpoint"), &store, &dest];
        args.extend_from_slice(extra);
        dedupstore(&args)
    };
    let prefix = [flag("--prefix"), flag("orders/0"), flag("--json")];
    let prefix: Vec<&Path> = prefix.iter().map(|p| p.as_path()).collect();

    let first = json(&checkpoint(&prefix));
    assert_eq!(first["manifest"]["marks"], 50_000);
    assert!(first["uploaded_files"].as_u64().unwrap() > 0);
    mark(&store, 50_000..60_000);
    let second = json(&checkpoint(&prefix));
    assert!(second["reused_files"].as_u64().unwrap() > 0, "{second}");
    assert!(
        second["uploaded_bytes"].as_u64().unwrap()
            < second["manifest"]["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["size"].as_u64().unwrap())
                .sum::<u64>()
    );

    let restored = dir.path().join("restored");
    let mut args = vec![Path::new("restore"), &dest, &restored];
    args.extend_from_slice(&prefix);
    let manifest = json(&dedupstore(&args));
    assert_eq!(manifest["marks"], 60_000);
    assert_eq!(
        manifest["offsets"][0]["offset"], 50_000,
        "offsets never move back"
    );
    let restored = Store::open(&restored).unwrap();
    assert!(matches!(
        restored.check_and_mark("id-59999").unwrap(),
        Outcome::Duplicate { .. }
    ));
    assert_eq!(restored.offset("orders", 0).unwrap(), Some(50_000));
    drop(restored);

    // The same target again: not empty, refused.
    let again = dedupstore(&args);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Prose for people, without --json.
    let prose = dedupstore(&[
        Path::new("restore"),
        &dest,
        &dir.path().join("prose"),
        Path::new("--prefix"),
        Path::new("orders/0"),
    ]);
    assert!(prose.status.success());
    assert!(String::from_utf8_lossy(&prose.stdout).contains("60000 marks"));
}

#[test]
fn an_open_store_and_a_missing_checkpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (store_dir, dest) = (dir.path().join("store"), dir.path().join("dest"));
    let store = Store::open(&store_dir).unwrap();
    let busy = dedupstore(&[Path::new("checkpoint"), &store_dir, &dest]);
    assert!(!busy.status.success());
    let message = String::from_utf8_lossy(&busy.stderr);
    assert!(message.contains("already open"), "{message}");
    drop(store);

    let nothing = dedupstore(&[Path::new("restore"), &dest, &dir.path().join("r")]);
    assert!(!nothing.status.success());
    let message = String::from_utf8_lossy(&nothing.stderr);
    assert!(message.contains("no checkpoint"), "{message}");
    assert!(!dir.path().join("r").exists());
}
