//! Where the store's time comes from.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Where the store's time comes from: a wall clock read when the store opens, and a monotonic
/// clock that measures how much time has passed since.
///
/// While a store is open its time is the wall time read at open plus the monotonic time elapsed
/// since, so a step of the wall clock (a bad NTP step, a VM resumed with a stale clock) changes
/// nothing until the next open. At open the wall time is never taken below a high-water mark
/// the store persisted with its data, so a clock that went back while the store was closed never
/// makes a mark expire early.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// The current wall-clock time. Read when a store opens.
    fn now(&self) -> SystemTime;

    /// Time elapsed since a fixed origin of this clock's choosing, from a clock that never steps
    /// (for [`SystemClock`], [`Instant`]). The store's time advances by it while open.
    fn elapsed(&self) -> Duration;
}

/// The operating system's clocks: [`SystemTime`] for the wall clock, [`Instant`] for elapsed
/// time. The default.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn elapsed(&self) -> Duration {
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        ORIGIN.get_or_init(Instant::now).elapsed()
    }
}

/// A clock that only moves when told to: for tests and simulations.
///
/// [`advance`](Self::advance) lets time pass (both the wall clock and elapsed time move);
/// [`step`](Self::step) sets the wall clock alone, as an NTP step would. Clones share one time.
///
/// ```
/// use dedupstore::{Clock, ManualClock};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(1_000));
/// clock.advance(Duration::from_millis(1_500));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(1_001_500));
/// assert_eq!(clock.elapsed(), Duration::from_millis(1_500));
///
/// clock.step(UNIX_EPOCH); // the wall clock jumps back; no time passes
/// assert_eq!(clock.now(), UNIX_EPOCH);
/// assert_eq!(clock.elapsed(), Duration::from_millis(1_500));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    wall_millis: Arc<AtomicU64>,
    elapsed_millis: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock whose wall time reads `start` (at millisecond resolution) and whose elapsed time
    /// reads zero, until moved.
    #[must_use]
    pub fn new(start: SystemTime) -> Self {
        Self {
            wall_millis: Arc::new(AtomicU64::new(unix_millis(start))),
            elapsed_millis: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Lets `by` pass: the wall clock and elapsed time both move forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = duration_millis(by);
        self.elapsed_millis.fetch_add(by, Ordering::SeqCst);
        self.wall_millis.fetch_add(by, Ordering::SeqCst);
    }

    /// Steps the wall clock to `to`, forwards or backwards, without any time passing: what a
    /// corrected or misconfigured system clock does. An open store does not see it.
    pub fn step(&self, to: SystemTime) {
        self.wall_millis.store(unix_millis(to), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.wall_millis.load(Ordering::SeqCst))
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.elapsed_millis.load(Ordering::SeqCst))
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

/// The store's view of time: the wall time read at open (raised to the persisted high-water
/// mark), advanced by the clock's elapsed time since. Never runs backwards.
#[derive(Debug)]
pub(crate) struct StoreTime {
    clock: Arc<dyn Clock>,
    /// Store time at `origin`, since the Unix epoch.
    base: Duration,
    /// The clock's elapsed time when `base` was taken.
    origin: Duration,
    latest: AtomicU64,
}

impl StoreTime {
    /// Store time that read `base` when `clock`'s elapsed time read `origin`, and advances with
    /// it.
    pub(crate) fn new(clock: Arc<dyn Clock>, base: Duration, origin: Duration) -> Self {
        Self {
            clock,
            base,
            origin,
            latest: AtomicU64::new(duration_millis(base).min(MAX_MILLIS)),
        }
    }

    /// The current time in milliseconds since the Unix epoch.
    ///
    /// Readings taken one after another (for example under one lock) never decrease, even from
    /// a clock whose elapsed time does.
    pub(crate) fn now_millis(&self) -> u64 {
        let elapsed = self.clock.elapsed().saturating_sub(self.origin);
        let read = duration_millis(self.base.saturating_add(elapsed)).min(MAX_MILLIS);
        // Most readings fall in the millisecond already stored: a load answers them without
        // writing the line every thread shares, so callers on other cores do not contend for it.
        let latest = self.latest.load(Ordering::Acquire);
        if read <= latest {
            return latest;
        }
        self.latest.fetch_max(read, Ordering::AcqRel).max(read)
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
    fn store_time_follows_elapsed_time_not_wall_steps() {
        let clock = ManualClock::new(UNIX_EPOCH + Duration::from_secs(100));
        let time = StoreTime::new(
            Arc::new(clock.clone()),
            Duration::from_secs(100),
            clock.elapsed(),
        );
        assert_eq!(time.now_millis(), 100_000);
        clock.step(UNIX_EPOCH + Duration::from_secs(50));
        assert_eq!(time.now_millis(), 100_000);
        clock.step(UNIX_EPOCH + Duration::from_secs(1_000_000));
        assert_eq!(time.now_millis(), 100_000);
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(time.now_millis(), 101_500);
    }

    /// A clock whose elapsed time runs backwards: a custom `Clock` with a bug.
    #[derive(Debug)]
    struct Backwards(AtomicU64);

    impl Clock for Backwards {
        fn now(&self) -> SystemTime {
            UNIX_EPOCH
        }
        fn elapsed(&self) -> Duration {
            Duration::from_millis(self.0.fetch_sub(10, Ordering::SeqCst))
        }
    }

    #[test]
    fn store_time_never_goes_back() {
        let clock = Backwards(AtomicU64::new(1_000));
        let origin = clock.elapsed();
        let time = StoreTime::new(Arc::new(clock), Duration::from_secs(5), origin);
        assert_eq!(time.now_millis(), 5_000);
        assert_eq!(time.now_millis(), 5_000);
    }
}
