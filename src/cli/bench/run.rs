//! Runs one phase of a row: its threads deliver their share of the stream through their
//! clients until the stream or the time runs out.

use super::clients::{Client, Result};
use super::latency::{Latency, Percentiles};
use serde::Serialize;
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The deliveries of a run: IDs in delivery order, and whether each is its message's first.
pub struct Deliveries {
    pub ids: Vec<String>,
    pub first: Vec<bool>,
}

/// What one phase of a row measured.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Measured {
    /// Deliveries handled.
    pub ops: u64,
    /// The ones the target found new.
    pub new: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    /// Per call: one ID, or one batch or pipeline of `depth`; for transactions, from submit to
    /// the outcome; for raw RocksDB, per write (deliveries it is told are not first write
    /// nothing).
    pub latency: Percentiles,
}

/// Chunks of `depth` deliveries dealt round-robin to the threads: thread `t` takes chunks
/// `t`, `t + threads`, ...; a thread stops at `deadline`, or after `limits[t]` chunks if given
/// (a replay goes as far as the stream did). Returns what was measured and how many chunks
/// each thread got through.
pub fn phase(
    deliveries: &Deliveries,
    depth: usize,
    clients: Vec<Box<dyn Client>>,
    limits: Option<&[usize]>,
    time: Duration,
    progress: &indicatif::ProgressBar,
) -> Result<(Measured, Vec<usize>)> {
    let threads = clients.len();
    let chunks = deliveries.ids.len().div_ceil(depth);
    let barrier = Barrier::new(threads + 1);
    let outcomes = std::thread::scope(|s| {
        let workers: Vec<_> = clients
            .into_iter()
            .enumerate()
            .map(|(t, mut client)| {
                let barrier = &barrier;
                let limit = limits.map_or(usize::MAX, |l| l[t]);
                s.spawn(move || -> Result<(u64, u64, usize, Latency)> {
                    let mut latency = Latency::new();
                    let (mut ops, mut new, mut done) = (0, 0, 0);
                    barrier.wait();
                    let deadline = Instant::now() + time;
                    for chunk in (t..chunks).step_by(threads).take(limit) {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let range = chunk * depth..((chunk + 1) * depth).min(deliveries.ids.len());
                        let n = range.len() as u64;
                        new += client.deliver(
                            &deliveries.ids[range.clone()],
                            &deliveries.first[range],
                            &mut latency,
                        )?;
                        ops += n;
                        done += 1;
                        progress.inc(n);
                    }
                    new += client.finish(&mut latency)?;
                    Ok((ops, new, done, latency))
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let results: Vec<_> = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err("a bench thread panicked".into()))
            })
            .collect();
        (start.elapsed(), results)
    });
    let (elapsed, results) = outcomes;
    let mut latency = Latency::new();
    let (mut ops, mut new, mut done) = (0, 0, Vec::with_capacity(threads));
    for result in results {
        let (o, n, d, l) = result?;
        ops += o;
        new += n;
        done.push(d);
        latency.merge(&l);
    }
    let seconds = elapsed.as_secs_f64();
    let measured = Measured {
        ops,
        new,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        latency: latency.summary(),
    };
    Ok((measured, done))
}
