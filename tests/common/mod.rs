//! A one-minute window under a manual clock, shared by the window and clock-step tests.

use dedupstore::{ManualClock, Outcome, Store};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const W: Duration = Duration::from_secs(60);
pub const SLOTS: u32 = 60;
pub const S: Duration = Duration::from_secs(1);
pub const MS: Duration = Duration::from_millis(1);

/// The manual clock's start: not on a second or slot boundary.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(437)
}

/// Opens the store at `dir` with window `W` in `SLOTS` slots, on `clock`.
pub fn open(dir: &Path, clock: &ManualClock) -> Store {
    Store::builder(dir)
        .window(W)
        .slots(SLOTS)
        .clock(clock.clone())
        .open()
        .unwrap()
}

pub fn duplicate_since(first_seen: SystemTime) -> Outcome {
    Outcome::Duplicate { first_seen }
}
