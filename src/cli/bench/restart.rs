//! `dedupstore bench restart`: a store holding many IDs closed and opened again: how long until
//! it answers correctly, and its throughput second by second afterwards against before.

use super::clients::Result;
use super::growth::mark;
use super::size::{id, parse_count};
use dedupstore::{Outcome, Store};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Redeliveries are drawn from this many of the newest IDs: brokers redeliver recent messages.
const RECENT: u64 = 100_000;

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// IDs marked before the store is closed (K, M, G: thousands, millions, billions).
    #[arg(long, value_parser = parse_count, default_value = "50M")]
    ids: u64,
    /// IDs per `check_and_mark_batch` call.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch: u64,
    /// Seconds of the workload timed before the close and after the open.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    seconds: u64,
    /// Share of the workload's IDs that are redeliveries of recent ones, in percent.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    redeliver_percent: u8,
    /// Retention window in seconds (long enough that no ID of the run expires).
    #[arg(long, default_value_t = 7 * 86_400)]
    window: u64,
    /// The store's memory budget in bytes (the builder's default unless given).
    #[arg(long, value_parser = parse_count)]
    memory_budget: Option<u64>,
    #[command(flatten)]
    files: super::OneStoreFiles,
}

/// The measured restart.
#[derive(Debug, Serialize)]
struct Restart {
    ids: u64,
    batch: u64,
    redeliver_percent: u8,
    /// IDs per second, second by second, before the close.
    before: Vec<f64>,
    close_secs: f64,
    /// From calling `open` until it returned.
    open_secs: f64,
    /// From calling `open` until the oldest ID and a recent one were both answered `Duplicate`.
    first_answer_secs: f64,
    /// IDs per second, second by second, after the open.
    after: Vec<f64>,
}

/// The workload's state: the next fresh ID and where redeliveries come from.
struct Workload {
    next: u64,
    redeliver_percent: u64,
    rng: fastrand::Rng,
}

pub fn run(args: &RestartArgs) -> Result<ExitCode> {
    if args.ids < 2 {
        return Err("--ids must be at least 2".into());
    }
    let batch = usize::try_from(args.batch)?;
    let scratch = args.files.scratch()?;
    let path = scratch.path().join("store");
    let store = open(&path, args)?;
    eprintln!(
        "restart: {} IDs, batches of {batch}, {}% redeliveries, memory budget {} bytes, in {}",
        args.ids,
        args.redeliver_percent,
        store.stats().memory_budget,
        path.display()
    );
    let bar = super::super::count_bar(args.ids, "fresh marks".to_owned());
    let mut marked = 0;
    mark(&store, &mut marked, args.ids, batch, &bar)?;
    bar.finish_and_clear();
    let mut workload = Workload {
        next: args.ids,
        redeliver_percent: u64::from(args.redeliver_percent),
        rng: fastrand::Rng::with_seed(args.ids),
    };
    let before = workload.run(&store, batch, args.seconds)?;

    let timer = Instant::now();
    store.close()?;
    let close_secs = timer.elapsed().as_secs_f64();
    let timer = Instant::now();
    let store = open(&path, args)?;
    let open_secs = timer.elapsed().as_secs_f64();
    for probe in [id(0), id(workload.next - 1)] {
        let outcome = store.check_and_mark(&probe)?;
        if !matches!(outcome, Outcome::Duplicate { .. }) {
            return Err(
                format!("after the reopen, marked ID {probe} was answered {outcome:?}").into(),
            );
        }
    }
    let first_answer_secs = timer.elapsed().as_secs_f64();
    let after = workload.run(&store, batch, args.seconds)?;
    store.close()?;

    let restart = Restart {
        ids: args.ids,
        batch: args.batch,
        redeliver_percent: args.redeliver_percent,
        before,
        close_secs,
        open_secs,
        first_answer_secs,
        after,
    };
    print(&restart);
    args.files.write_json(&restart)?;
    Ok(ExitCode::SUCCESS)
}

fn open(path: &Path, args: &RestartArgs) -> Result<Store> {
    let mut builder = Store::builder(path).window(Duration::from_secs(args.window));
    if let Some(budget) = args.memory_budget {
        builder = builder.memory_budget(usize::try_from(budget)?);
    }
    Ok(builder.open()?)
}

impl Workload {
    /// Runs batches for `seconds`, checking every answer; IDs per second in each second.
    fn run(&mut self, store: &Store, batch: usize, seconds: u64) -> Result<Vec<f64>> {
        let mut per_second = vec![0u64; usize::try_from(seconds)?];
        let start = Instant::now();
        loop {
            let (ids, fresh) = self.next_batch(batch);
            let outcomes = store.check_and_mark_batch(&ids)?;
            for ((id, outcome), fresh) in ids.iter().zip(&outcomes).zip(&fresh) {
                let expected = if *fresh { "New" } else { "Duplicate" };
                if *fresh != (*outcome == Outcome::New) {
                    return Err(format!("{id} was answered {outcome:?}, not {expected}").into());
                }
            }
            // A batch counts in the second it ended in; one ending after the last does not.
            let Some(count) = per_second.get_mut(usize::try_from(start.elapsed().as_secs())?)
            else {
                break;
            };
            *count += ids.len() as u64;
        }
        Ok(per_second.into_iter().map(|n| n as f64).collect())
    }

    /// The next batch's IDs, and for each whether it is fresh (else a redelivery).
    fn next_batch(&mut self, batch: usize) -> (Vec<String>, Vec<bool>) {
        let mut ids = Vec::with_capacity(batch);
        let mut fresh = Vec::with_capacity(batch);
        for _ in 0..batch {
            // A redelivery is of an ID marked before it (earlier in this batch, perhaps): a
            // duplicate either way.
            if self.rng.u64(0..100) < self.redeliver_percent {
                let back = self.rng.u64(1..=RECENT.min(self.next));
                ids.push(id(self.next - back));
                fresh.push(false);
            } else {
                ids.push(id(self.next));
                fresh.push(true);
                self.next += 1;
            }
        }
        (ids, fresh)
    }
}

fn print(r: &Restart) {
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let steady = mean(&r.before);
    println!(
        "{} IDs in the store; batches of {}, {}% redeliveries of the newest {RECENT}",
        r.ids, r.batch, r.redeliver_percent
    );
    println!(
        "before the close: {steady:.0} IDs/s (mean of {} s)",
        r.before.len()
    );
    println!(
        "close {:.3} s, open {:.3} s, first correct answer {:.3} s after open was called",
        r.close_secs, r.open_secs, r.first_answer_secs
    );
    println!("{:>6} {:>10} {:>10}", "second", "IDs/s", "of steady");
    for (second, rate) in r.after.iter().enumerate() {
        println!("{:>6} {rate:>10.0} {:>9.2}x", second + 1, rate / steady);
    }
    println!(
        "after the open: {:.0} IDs/s (mean of {} s)",
        mean(&r.after),
        r.after.len()
    );
}
