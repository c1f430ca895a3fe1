//! The crate's modules import only downwards (docs/design.md, "Modules"): every `crate::` path in
//! a module's code names a module of a lower layer, or the module itself.

use std::fs;
use std::path::Path;

/// Each top-level module and its layer; a module may use only modules of lower layers.
const LAYERS: &[(&str, u32)] = &[
    ("error", 0),
    ("window", 0),
    ("clock", 0),
    ("stats", 0),
    ("outcome", 0),
    ("id", 1),
    ("settings", 1),
    ("wheel", 2),
    ("persist", 2),
    ("engine", 3),
    ("commit", 4),
    ("store", 5),
    ("checkpoint", 6),
    ("claim", 6),
    ("outbox", 6),
    ("settle", 6),
    ("namespace", 7),
    ("txn", 8),
    ("config", 9),
    ("sequence", 9),
    ("partitions", 10),
    ("kafka", 11),
    ("cli", 11),
    ("fuzz", 11),
];

fn layer(module: &str) -> u32 {
    LAYERS
        .iter()
        .find(|(name, _)| *name == module)
        .unwrap_or_else(|| panic!("module {module} has no layer in this test"))
        .1
}

/// The modules named by `crate::<module>` paths in `code`, comments left out.
fn uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap_or_default();
        for (at, _) in line.match_indices("crate::") {
            let rest = &line[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            // `crate::{...}` and `crate::Type` name the root's re-exports, not a module.
            if !name.is_empty() && rest[name.len()..].starts_with("::") {
                found.push(name);
            }
        }
    }
    found
}

/// Checks the file or directory `path` of `module`.
fn check(path: &Path, module: &str, violations: &mut Vec<String>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).unwrap() {
            check(&entry.unwrap().path(), module, violations);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        for used in uses(&fs::read_to_string(path).unwrap()) {
            if used != module && layer(&used) >= layer(module) {
                violations.push(format!("{} uses crate::{used}", path.display()));
            }
        }
    }
}

#[test]
fn modules_import_only_downwards() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut modules = 0;
    for entry in fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if name == "lib" || name == "main" {
            continue;
        }
        modules += 1;
        check(&path, &name, &mut violations);
    }
    assert_eq!(modules, LAYERS.len(), "a module was added or removed");
    assert!(violations.is_empty(), "{violations:#?}");
}

#[test]
fn uses_finds_module_paths_and_skips_the_rest() {
    let code = "use crate::engine::Engine;\n\
                use crate::{Error, Store};\n\
                /// [`x`](crate::store::Store::open)\n\
                let x = crate::persist::table_cf(t); // crate::txn::Transaction\n";
    assert_eq!(uses(code), ["engine", "persist"]);
}
