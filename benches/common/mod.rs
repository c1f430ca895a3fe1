//! What the benches share: the Redis baseline, started on 127.0.0.1 by the bench itself.

#![allow(dead_code)] // each bench uses part of it

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` on loopback, stopped when dropped.
pub struct Redis {
    child: Child,
    pub port: u16,
}

impl Redis {
    /// Starts Redis with append-only persistence synced every second: the durability of
    /// `Durability::Buffered` (a process crash loses nothing, power loss up to a second).
    /// `None`, with a note on stderr, if `redis-server` is not installed.
    pub fn start(dir: &Path) -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
            ])
            .arg("--dir")
            .arg(dir)
            .stdout(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!(
                "redis-server is not installed: no Redis baseline (`make bench` installs it)"
            );
            return None;
        };
        let redis = Self { child, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut c) = redis.connect()
                && redis::cmd("PING").query::<String>(&mut c).is_ok()
            {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!("redis-server did not answer on port {port}: no Redis baseline");
        None
    }

    pub fn connect(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain RocksDB database in `dir`, with default options: the raw baseline.
pub fn raw_rocksdb(dir: &Path) -> rocksdb::DB {
    let mut options = rocksdb::Options::default();
    options.create_if_missing(true);
    rocksdb::DB::open(&options, dir).unwrap()
}

/// The IDs the benches mark: what a consumer would see, 36 bytes each.
pub fn id(i: u64) -> String {
    format!(
        "order-{i:012}-{:016x}",
        i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    )
}
