//! Bad input gets a clear error and loses nothing: bad IDs, a directory already open (in this
//! process or another, refused before anything in it is read), a damaged or foreign meta record,
//! some other RocksDB, unrelated files.

#[path = "common/child.rs"]
mod child;

use dedupstore::{Error, Outcome, SequenceOutcome, Store};
use rocksdb::{DB, Options};
use std::path::Path;

#[test]
fn bad_ids_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for bad in [Vec::new(), vec![b'x'; 4097]] {
        match store.check_and_mark(&bad) {
            Err(Error::InvalidId {
                len,
                position: None,
            }) => assert_eq!(len, bad.len()),
            other => panic!("{other:?}"),
        }
        assert!(matches!(store.contains(&bad), Err(Error::InvalidId { .. })));
    }
    // A batch with one bad ID marks none of the good ones.
    let batch: [&[u8]; 3] = [b"good-1", b"", b"good-2"];
    let err = store.check_and_mark_batch(&batch).unwrap_err();
    assert!(
        matches!(
            err,
            Error::InvalidId {
                position: Some(1),
                len: 0
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid id at batch position 1: 0 bytes, an id is 1..=4096 bytes"
    );
    assert_eq!(
        store.contains_batch(&[b"good-1", b"good-2"]).unwrap(),
        [false, false]
    );
    // The longest ID is fine.
    assert_eq!(
        store.check_and_mark(vec![b'x'; 4096]).unwrap(),
        Outcome::New
    );
}

#[test]
fn a_second_open_in_this_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.check_and_mark("kept").unwrap();
    match Store::open(dir.path()) {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("{other:?}"),
    }
    // The refused open disturbed nothing; once the first store is gone the directory opens.
    assert!(store.contains("kept").unwrap());
    drop(store);
    assert!(Store::open(dir.path()).unwrap().contains("kept").unwrap());
}

#[test]
fn a_second_open_takes_the_lock_before_reading_the_database() {
    // While the holder's RocksDB rewrites its files, a second open must not read them: it is
    // refused as `Locked`, not with whatever a half-written MANIFEST or CURRENT looks like.
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.check_and_mark("kept").unwrap();
    let current = dir.path().join("CURRENT");
    let aside = dir.path().join("CURRENT.aside");
    std::fs::rename(&current, &aside).unwrap(); // as between RocksDB's unlink and rename
    let second = Store::open(dir.path());
    std::fs::rename(&aside, &current).unwrap();
    match second {
        Err(Error::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("{other:?}"),
    }
    drop(store);
    assert!(Store::open(dir.path()).unwrap().contains("kept").unwrap());
}

/// The child: tries to open the directory the parent holds and prints what happened.
#[test]
#[ignore = "child process of a_second_open_in_another_process_is_locked"]
fn child_tries_to_open() {
    let dir = std::env::var("DEDUPSTORE_TEST_DIR").unwrap();
    match Store::open(dir) {
        Err(Error::Locked { .. }) => eprintln!("result: locked"),
        other => eprintln!("result: {other:?}"),
    }
}

#[test]
fn a_second_open_in_another_process_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    let out = child::ignored_test("child_tries_to_open")
        .env("DEDUPSTORE_TEST_DIR", dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("result: locked"), "{stderr}");
}

/// Overwrites the meta record of the (closed) store at `path`.
fn overwrite_meta(path: &Path, value: &[u8]) {
    let names = DB::list_cf(&Options::default(), path).unwrap();
    let db = DB::open_cf(&Options::default(), path, &names).unwrap();
    db.put_cf(&db.cf_handle("meta").unwrap(), b"meta", value)
        .unwrap();
}

#[test]
fn a_garbage_meta_record_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path())
        .unwrap()
        .check_and_mark("x")
        .unwrap();
    overwrite_meta(dir.path(), b"this is not a meta record");
    match Store::open(dir.path()) {
        Err(Error::Corruption { what, detail }) => {
            assert!(what.contains("meta record"), "{what}");
            assert!(detail.contains("magic"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_meta_record_from_another_format_version_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    Store::open(dir.path()).unwrap();
    let mut future = b"DDUPSTOR".to_vec();
    future.extend_from_slice(&9u32.to_le_bytes());
    future.extend_from_slice(&[0; 60]);
    overwrite_meta(dir.path(), &future);
    match Store::open(dir.path()) {
        Err(Error::IncompatibleFormat {
            found, expected, ..
        }) => {
            assert_eq!(found, "dedupstore format 9");
            assert_eq!(expected, "dedupstore format 1..=4");
        }
        other => panic!("{other:?}"),
    }
}

/// A store of format 1 (marks without values), 2 (without namespaces) or 3 (without producer
/// sequences, so without their column family) opens as it is and is upgraded to format 4,
/// which older versions then refuse rather than misread a mark that carries a value or fail on
/// a column family they do not know.
#[test]
fn a_format_1_2_or_3_store_opens_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.check_and_mark("x").unwrap(), Outcome::New);
    drop(store);
    // What an older version wrote: no `producers` column family, none in the catalog.
    {
        let names = DB::list_cf(&Options::default(), dir.path()).unwrap();
        let db = DB::open_cf(&Options::default(), dir.path(), &names).unwrap();
        db.drop_cf("producers").unwrap();
        db.delete_cf(&db.cf_handle("meta").unwrap(), b"cf/producers")
            .unwrap();
    }
    let version = |path: &Path| {
        let names = DB::list_cf(&Options::default(), path).unwrap();
        let db = DB::open_cf(&Options::default(), path, &names).unwrap();
        let meta = db
            .get_cf(&db.cf_handle("meta").unwrap(), b"meta")
            .unwrap()
            .unwrap();
        (u32::from_le_bytes(meta[8..12].try_into().unwrap()), meta)
    };
    let (found, mut meta) = version(dir.path());
    assert_eq!(found, 4);
    for older in [1u32, 2, 3] {
        meta[8..12].copy_from_slice(&older.to_le_bytes());
        let sum = xxhash_rust::xxh3::xxh3_64(&meta[..40]);
        meta[40..48].copy_from_slice(&sum.to_le_bytes());
        overwrite_meta(dir.path(), &meta);
        assert_eq!(version(dir.path()).0, older);

        let store = Store::open(dir.path()).unwrap();
        assert!(matches!(
            store.check_and_mark("x").unwrap(),
            Outcome::Duplicate { .. }
        ));
        assert_eq!(
            store.accept("p", u64::from(older)).unwrap(),
            SequenceOutcome::Accepted
        );
        drop(store);
        assert_eq!(version(dir.path()).0, 4, "the open upgraded the record");
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.high_water("p").unwrap(), Some(u64::from(older)));
        drop(store);
    }
}

#[test]
fn another_rocksdb_database_is_incompatible_and_untouched() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = DB::open_cf(&opts, dir.path(), ["users"]).unwrap();
        db.put_cf(&db.cf_handle("users").unwrap(), b"alice", b"1")
            .unwrap();
    }
    match Store::open(dir.path()) {
        Err(Error::IncompatibleFormat { found, .. }) => assert!(found.contains("users"), "{found}"),
        other => panic!("{other:?}"),
    }
    assert!(
        !dir.path().join("dedupstore.lock").exists(),
        "nothing was written"
    );
    let db = DB::open_cf(&Options::default(), dir.path(), ["users"]).unwrap();
    assert_eq!(
        db.get_cf(&db.cf_handle("users").unwrap(), b"alice")
            .unwrap()
            .as_deref(),
        Some(&b"1"[..])
    );
}

#[test]
fn a_directory_of_unrelated_files_is_incompatible() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    match Store::open(dir.path()) {
        Err(Error::IncompatibleFormat { found, .. }) => {
            assert!(found.contains("notes.txt"), "{found}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing was written"
    );
}

#[test]
fn a_path_that_is_a_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(Store::open(&file), Err(Error::Io { .. })));
}

#[test]
fn reopening_under_another_namespace_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Store::builder(dir.path())
        .namespace("orders")
        .open()
        .unwrap()
        .check_and_mark("1")
        .unwrap();
    match Store::builder(dir.path()).namespace("refunds").open() {
        Err(Error::InvalidConfig { what, .. }) => assert_eq!(what, "namespace"),
        other => panic!("{other:?}"),
    }
    let store = Store::builder(dir.path())
        .namespace("orders")
        .open()
        .unwrap();
    assert!(store.contains("1").unwrap());
}
