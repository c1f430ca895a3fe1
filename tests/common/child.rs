//! Child processes: a test runs one of its own ignored tests in a process of its own, to kill it
//! mid-write or to open a store from another process. Included with `#[path]` by the tests that
//! use it (not from `common/mod.rs`, which every caller would then compile unused).

use std::process::{Command, Stdio};

/// Runs the ignored test `name` of this test binary, alone, with its standard output discarded
/// and its standard error (where children report) piped. The caller adds the environment.
pub fn ignored_test(name: &str) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            name,
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}
