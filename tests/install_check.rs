//! The setup's libclang check (`scripts/find-libclang.sh`, run by `make deps`) finds the library
//! RocksDB's bindings generator loads, and only that: a machine with LLVM's `libclang-cpp` and no
//! `libclang` must be seen as missing it, or the install is skipped and the build fails.

use std::fs;
use std::path::Path;
use std::process::Command;

/// Runs the check against a fake root holding `files`; `Some(path)` if it reported one.
fn check(files: &[&str]) -> Option<String> {
    let root = tempfile::tempdir().unwrap();
    for file in files {
        let path = root.path().join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"").unwrap();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/find-libclang.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(root.path())
        .output()
        .unwrap();
    let printed = String::from_utf8(out.stdout).unwrap();
    match out.status.code() {
        Some(0) => {
            let found = printed.trim().strip_prefix(root.path().to_str().unwrap());
            Some(found.expect("a path under the fake root").to_owned())
        }
        Some(1) => {
            assert!(printed.is_empty(), "printed {printed:?} but reported none");
            None
        }
        other => panic!(
            "exit status {other:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn llvm_cpp_library_alone_is_not_libclang() {
    // The fresh Debian 12 image: LLVM 14 with its C++ interface, no libclang.
    assert_eq!(
        check(&[
            "usr/lib/llvm-14/lib/libclang-cpp.so.14",
            "usr/lib/x86_64-linux-gnu/libclang-cpp.so.14",
            "usr/lib/llvm-14/lib/libLLVM-14.so",
        ]),
        None
    );
    assert_eq!(check(&[]), None);
    assert_eq!(check(&["usr/lib/llvm-14/lib/libclangBasic.a"]), None);
}

#[test]
fn each_name_bindgen_loads_is_found() {
    for file in [
        "usr/lib/llvm-14/lib/libclang.so",           // libclang-14-dev
        "usr/lib/llvm-14/lib/libclang.so.1",         // libclang1-14
        "usr/lib/x86_64-linux-gnu/libclang-14.so.1", // libclang1-14
        "usr/lib/x86_64-linux-gnu/libclang-16.so",   // versioned, without a soname suffix
        "usr/local/lib/libclang.so",                 // a hand-built LLVM
        "usr/lib64/libclang.so.18.1",                // Fedora-style layout
    ] {
        assert_eq!(
            check(&[file, "usr/lib/llvm-14/lib/libclang-cpp.so.14"]).as_deref(),
            Some(format!("/{file}").as_str()),
            "{file}"
        );
    }
}
