//! Latency of calls, in a histogram per thread merged at the end of a run.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The longest call recorded exactly; longer ones count as this long.
const LONGEST_NS: u64 = 60_000_000_000;

/// Call latencies of one thread, or of a whole run once merged.
pub struct Latency(Histogram<u64>);

impl Latency {
    pub fn new() -> Self {
        // Three significant digits from 1 ns to a minute: about 200 KiB.
        Self(Histogram::new_with_bounds(1, LONGEST_NS, 3).expect("valid histogram bounds"))
    }

    /// Records a call that started at `start` and has just returned.
    pub fn since(&mut self, start: Instant) {
        self.record(start.elapsed());
    }

    pub fn record(&mut self, took: Duration) {
        let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(ns.clamp(1, LONGEST_NS));
    }

    pub fn merge(&mut self, other: &Self) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn summary(&self) -> Percentiles {
        let us = |q: f64| self.0.value_at_quantile(q) as f64 / 1_000.0;
        Percentiles {
            calls: self.0.len(),
            p50_us: us(0.5),
            p99_us: us(0.99),
            p999_us: us(0.999),
        }
    }
}

/// Call latency percentiles, in microseconds.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Percentiles {
    pub calls: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}
