//! A real NATS server with JetStream, started on 127.0.0.1 with a temporary port and store
//! directory. Included with `#[path]` by the tests that use it.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
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
