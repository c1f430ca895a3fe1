//! A real NATS server with JetStream, started on 127.0.0.1 with a temporary port and store
//! directory, and instances of `examples/jetstream_consumer.rs` driven over their standard
//! input. Included with `#[path]` by the tests that use it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// `nats-server`, installed from Debian's packages if it is missing (as `make test` does).
fn nats_server_binary() -> PathBuf {
    // Debian installs it in /usr/sbin, which a user's PATH may leave out.
    let find = || {
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain(["/usr/sbin".into(), "/usr/bin".into()])
            .map(|dir| dir.join("nats-server"))
            .find(|p| p.is_file())
    };
    if let Some(found) = find() {
        return found;
    }
    eprintln!("nats-server is missing: installing Debian's package");
    // Root needs no sudo; `id -u` prints 0 for it.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    let sudo = if root { "" } else { "sudo " };
    let installed = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{sudo}apt-get update -qq && {sudo}env DEBIAN_FRONTEND=noninteractive \
             apt-get install -y -qq nats-server >/dev/null"
        ))
        .status();
    find().unwrap_or_else(|| {
        panic!(
            "nats-server is not installed and installing it failed ({installed:?}); run `make nats`"
        )
    })
}

/// A `nats-server -js` on loopback, stopped when dropped.
pub struct NatsServer {
    child: Child,
    pub url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    pub fn start() -> Self {
        let binary = nats_server_binary();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nats-server");
        let url = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !answers_ping(&url) {
            assert!(
                Instant::now() < deadline,
                "nats-server did not answer on {url}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url,
            _store: store,
        }
    }
}

/// Whether a NATS server at `url` completes the protocol's handshake: its `INFO`, then our
/// `CONNECT` and `PING` answered with `PONG` (a listening socket alone may still reset).
fn answers_ping(url: &str) -> bool {
    let Ok(stream) = std::net::TcpStream::connect(url) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut reader = BufReader::new(&stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() || !line.starts_with("INFO") {
        return false;
    }
    if (&stream)
        .write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")
        .is_err()
    {
        return false;
    }
    line.clear();
    reader.read_line(&mut line).is_ok() && line.starts_with("PONG")
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The example's binary, built by `cargo test` beside this test's.
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().unwrap().parent().unwrap();
    let example = profile.join("examples").join("jetstream_consumer");
    assert!(
        example.is_file(),
        "{} is missing: `cargo test` builds it (or `cargo build --release --example jetstream_consumer`)",
        example.display()
    );
    example
}

/// One consumer instance: the example, in a process of its own.
pub struct Instance {
    pub name: String,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl Instance {
    pub fn spawn(
        server: &NatsServer,
        root: &Path,
        checkpoints: &Path,
        name: &str,
        dedup: bool,
        crash_after: Option<u64>,
    ) -> Self {
        let mut command = Command::new(example_binary());
        command
            .args(["--server", &server.url, "--instance", name])
            .arg("--root")
            .arg(root)
            .arg("--checkpoints")
            .arg(checkpoints)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if !dedup {
            command.arg("--no-dedup");
        }
        if let Some(n) = crash_after {
            command.args(["--crash-after", &n.to_string()]);
        }
        let mut child = command.spawn().expect("starting the example");
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

    /// Sends `command` and returns the answer: the next line starting with `answer`. `None` if
    /// the process ended first.
    pub fn ask(&mut self, command: &str, answer: &str) -> Option<String> {
        writeln!(self.stdin, "{command}").ok()?;
        self.stdin.flush().ok()?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(answer) => return Some(line),
                Ok(_) => {}
                Err(RecvTimeoutError::Disconnected) => return None,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: no answer to {command:?} in 120 s", self.name)
                }
            }
        }
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
