//! Consumer instances for the end-to-end tests: an example of this repository in a process of
//! its own, driven over its standard input. Included with `#[path]` by the tests that use it.

#![allow(dead_code)] // each test uses part of it

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// An example's binary, built by `cargo test` beside the test's own (with the features the
/// test was built with).
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let example = profile.join("examples").join(name);
    assert!(
        example.is_file(),
        "{} is missing: `cargo test` builds it (or `cargo build --release --example {name}`)",
        example.display()
    );
    example
}

/// An example's arguments: `--<name> <value>` for each of `flags`, then `--no-dedup` if not
/// `dedup` and `--crash-after <n>` if given.
pub fn arguments(
    flags: Vec<(&str, OsString)>,
    dedup: bool,
    crash_after: Option<u64>,
) -> Vec<OsString> {
    let mut args = Vec::new();
    for (name, value) in flags {
        args.extend([format!("--{name}").into(), value]);
    }
    if !dedup {
        args.push("--no-dedup".into());
    }
    if let Some(n) = crash_after {
        args.extend(["--crash-after".into(), n.to_string().into()]);
    }
    args
}

/// One consumer instance.
pub struct Instance {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Instance {
    /// Starts example `example` with `args`; `name` names it in failures.
    pub fn spawn(example: &str, name: &str, args: Vec<OsString>) -> Self {
        let mut child = Command::new(example_binary(example))
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting the example");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            name: name.to_owned(),
            child,
            stdin,
            lines,
        }
    }

    /// The next line the instance prints that starts with `answer`, within `timeout`. `None` if
    /// the process ended first.
    pub fn expect(&mut self, answer: &str, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(answer) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no {answer:?} in {timeout:?}", self.name)
                }
            }
        }
    }

    /// Sends `command` and returns the answer: the next line starting with `answer`. `None` if
    /// the process ended first.
    pub fn ask(&mut self, command: &str, answer: &str) -> Option<String> {
        writeln!(self.stdin, "{command}").ok()?;
        self.stdin.flush().ok()?;
        self.expect(answer, Duration::from_secs(120))
    }

    /// The stored offset of each ready partition.
    pub fn status(&mut self) -> Vec<(u32, u64)> {
        let line = self.ask("status", "status").unwrap_or_default();
        line.split_whitespace()
            .skip(1)
            .filter_map(|pair| {
                let (p, offset) = pair.split_once('=')?;
                Some((p.parse().ok()?, offset.parse().ok()?))
            })
            .collect()
    }

    /// Kills the process with `SIGKILL`.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to end by itself (a crash it was told to have).
    pub fn wait_for_exit(mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// Asks the instance to revoke everything and exit, and waits for it.
    pub fn quit(mut self) {
        assert!(
            self.ask("quit", "bye").is_some(),
            "{} did not quit cleanly",
            self.name
        );
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{}: {status}", self.name);
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}
