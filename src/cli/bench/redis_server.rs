//! A `redis-server` from the system's packages, started on 127.0.0.1 with a free port and a
//! directory of its own, and stopped when dropped: the baseline users would pick instead.
//! Shared by `dedupstore bench` and the criterion benches (`benches/common`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How Redis persists its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Nothing written to disk: a restart forgets every key.
    None,
    /// Append-only file synced every second: a process crash loses nothing, power loss up to
    /// a second (the durability of `Durability::Buffered`).
    EverySec,
    /// Append-only file synced before each reply: survives power loss (`Durability::Synced`).
    Always,
}

impl Persistence {
    /// Its name in tables and JSON: `none`, `everysec` or `always`.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::EverySec => "everysec",
            Self::Always => "always",
        }
    }

    fn arguments(self) -> &'static [&'static str] {
        match self {
            Self::None => &["--appendonly", "no"],
            Self::EverySec => &["--appendonly", "yes", "--appendfsync", "everysec"],
            Self::Always => &["--appendonly", "yes", "--appendfsync", "always"],
        }
    }
}

/// A running `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Child,
    pub port: u16,
}

impl RedisServer {
    /// Starts Redis with `persistence` (and no snapshots) in `dir`, and waits until it answers.
    ///
    /// # Errors
    /// Why there is no server, in a sentence: `redis-server` is not installed, or did not
    /// answer within 10 seconds.
    pub fn start(dir: &Path, persistence: Persistence) -> Result<Self, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port on 127.0.0.1: {e}"))?
            .port();
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
            ])
            .args(persistence.arguments())
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("redis-server could not be started ({e}); `make redis` installs it")
            })?;
        let server = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut c) = server.connect()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return Ok(server);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "redis-server did not answer on 127.0.0.1:{port} within 10 s"
        ))
    }

    /// A new connection to the server.
    ///
    /// # Errors
    /// The client's, if the server does not accept it.
    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
