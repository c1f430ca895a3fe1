//! Where the store's time comes from.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time.
///
/// The store reads it for every mark and check. It may jump in either direction: the store
/// never lets time run backwards internally (it keeps the latest reading it has seen), so a
/// clock going back never makes a mark expire early.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock. The default.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that only moves when told to: for tests and simulations.
///
/// Clones share one time.
///
/// ```
/// use dedupstore::{Clock, ManualClock};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(1_001_500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start` (at millisecond resolution) until moved.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        Self {
            millis: Arc::new(AtomicU64::new(unix_millis(start))),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.millis.fetch_add(duration_millis(by), Ordering::SeqCst);
    }

    /// Sets the clock to `to`, forwards or backwards.
    pub fn set(&self, to: SystemTime) {
        self.millis.store(unix_millis(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.millis.load(Ordering::SeqCst))
    }
}

/// The latest time the store represents: about 285,000 years after 1970. Later readings are
/// clamped to it, so that time arithmetic never overflows.
const MAX_MILLIS: u64 = 1 << 53;

/// Milliseconds since the Unix epoch; times before it read as 0, times after [`MAX_MILLIS`] as
/// [`MAX_MILLIS`].
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, duration_millis)
        .min(MAX_MILLIS)
}

/// Whole milliseconds in `d`, saturating.
pub(crate) fn duration_millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn from_unix_millis(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// The store's view of time: a [`Clock`] that never runs backwards.
#[derive(Debug)]
pub(crate) struct StoreTime {
    clock: Arc<dyn Clock>,
    latest: AtomicU64,
}

impl StoreTime {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            latest: AtomicU64::new(0),
        }
    }

    /// The current time in milliseconds since the Unix epoch: the largest reading so far.
    ///
    /// Readings taken one after another (for example under one lock) never decrease.
    pub(crate) fn now_millis(&self) -> u64 {
        let read = unix_millis(self.clock.now());
        let previous = self.latest.fetch_max(read, Ordering::AcqRel);
        previous.max(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_readings_are_clamped() {
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        assert_eq!(unix_millis(far), MAX_MILLIS);
    }

    #[test]
    fn store_time_never_goes_back() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        let time = StoreTime::new(Arc::new(clock.clone()));
        assert_eq!(time.now_millis(), 100_000);
        clock.set(UNIX_EPOCH + Duration::from_secs(50));
        assert_eq!(time.now_millis(), 100_000);
        clock.set(UNIX_EPOCH + Duration::from_secs(101));
        assert_eq!(time.now_millis(), 101_000);
    }
}
