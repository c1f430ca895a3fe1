//! `dedupstore bench growth`: one store marked with fresh IDs up to each of several sizes, and
//! at each, what a consumer's calls cost and what the store holds.

use super::clients::Result;
use super::size::{NEVER_MARKED, disk_bytes, id, parse_count, resident_bytes, written_bytes};
use dedupstore::{Outcome, Store};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// Bytes of one mark as the store writes it: a 16-byte fingerprint and an 8-byte value.
const MARK_BYTES: f64 = 24.0;

#[derive(Debug, clap::Args)]
pub struct GrowthArgs {
    /// IDs in the window at which to measure, ascending (K, M, G: thousands, millions,
    /// billions).
    #[arg(long, value_delimiter = ',', value_parser = parse_count, default_value = "1M,10M,50M,200M")]
    sizes: Vec<u64>,
    /// IDs per `check_and_mark_batch` and `contains_batch` call.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch: u64,
    /// Fresh marks timed just before each size is reached: the rate at that size.
    #[arg(long, value_parser = parse_count, default_value = "1M")]
    sample: u64,
    /// Lookups behind each figure of duplicates and misses.
    #[arg(long, value_parser = parse_count, default_value = "200K")]
    probes: u64,
    /// Retention window in seconds (long enough that no ID of the run expires).
    #[arg(long, default_value_t = 7 * 86_400)]
    window: u64,
    /// The store's `capacity` hint (the builder's default, 1,000,000, unless given; it sizes
    /// the default memory budget).
    #[arg(long, value_parser = parse_count)]
    capacity: Option<u64>,
    /// The store's memory budget in bytes (the builder's default unless given).
    #[arg(long, value_parser = parse_count)]
    memory_budget: Option<u64>,
    #[command(flatten)]
    files: super::OneStoreFiles,
    /// Also draw them into this PNG file (needs a TrueType font: Debian's fonts-dejavu-core).
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// What was measured at one size.
#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub ids: u64,
    /// Fresh marks per second over the last `sample` marks before `ids` was reached.
    pub fresh_per_sec: f64,
    /// Duplicates of IDs among the newest half of those in the in-memory tier.
    pub duplicates_hot_per_sec: f64,
    /// Duplicates of IDs older than any in the in-memory tier (none while all are in it).
    pub duplicates_cold_per_sec: Option<f64>,
    /// `contains_batch` of IDs never marked.
    pub misses_per_sec: f64,
    pub hot_ids: u64,
    /// The in-memory tier's heap bytes per ID it holds.
    pub hot_bytes_per_id: f64,
    /// The generations' filters' memory per ID in the window (part of the resident memory).
    pub filter_bytes_per_id: f64,
    /// The whole process' resident memory per ID in the window.
    pub resident_bytes_per_id: Option<f64>,
    /// The store's files per ID in the window.
    pub disk_bytes_per_id: f64,
    /// Bytes the process wrote to storage per ID marked: log, flushes and compactions.
    pub written_bytes_per_id: Option<f64>,
    /// `written_bytes_per_id` over the 24 bytes of a mark's key and value.
    pub write_amplification: Option<f64>,
    pub cold_lookups: u64,
    /// Seconds since the run began.
    pub elapsed_secs: f64,
}

pub fn run(args: &GrowthArgs) -> Result<ExitCode> {
    if args.sizes.windows(2).any(|w| w[0] >= w[1]) {
        return Err("--sizes must be ascending".into());
    }
    let batch = usize::try_from(args.batch)?;
    let scratch = args.files.scratch()?;
    let path = scratch.path().join("store");
    let mut builder = Store::builder(&path).window(Duration::from_secs(args.window));
    if let Some(capacity) = args.capacity {
        builder = builder.capacity(capacity);
    }
    if let Some(budget) = args.memory_budget {
        builder = builder.memory_budget(usize::try_from(budget)?);
    }
    let store = builder.open()?;
    let budget = store.stats().memory_budget;
    eprintln!(
        "growth: sizes {:?}, batches of {batch}, memory budget {budget} bytes, in {}",
        args.sizes,
        path.display()
    );
    let total = args.sizes.last().copied().unwrap_or(0);
    let bar = super::super::count_bar(total, "fresh marks".to_owned());
    let start = Instant::now();
    let written_at_start = written_bytes();
    let mut marked = 0u64;
    let mut points = Vec::new();
    for &size in &args.sizes {
        let timed_from = size.saturating_sub(args.sample).max(marked);
        mark(&store, &mut marked, timed_from, batch, &bar)?;
        let timer = Instant::now();
        mark(&store, &mut marked, size, batch, &bar)?;
        let fresh_per_sec = (size - timed_from) as f64 / timer.elapsed().as_secs_f64();

        let stats = store.stats();
        let hot = stats.hot_ids.min(size);
        let newest = (size - (hot / 2).max(1))..size;
        let duplicates_hot_per_sec = duplicates(&store, newest, args.probes, batch)?;
        let cold = size.saturating_sub(hot + hot / 4);
        let duplicates_cold_per_sec = if cold > 0 {
            Some(duplicates(&store, 0..cold, args.probes, batch)?)
        } else {
            None
        };
        let misses_per_sec = misses(&store, size, args.probes, batch)?;
        let stats = store.stats();
        let written = written_bytes()
            .zip(written_at_start)
            .map(|(now, then)| (now - then) as f64 / size as f64);
        let point = Point {
            ids: size,
            fresh_per_sec,
            duplicates_hot_per_sec,
            duplicates_cold_per_sec,
            misses_per_sec,
            hot_ids: stats.hot_ids,
            hot_bytes_per_id: stats.hot_bytes as f64 / stats.hot_ids.max(1) as f64,
            filter_bytes_per_id: stats.filter_bytes as f64 / size as f64,
            resident_bytes_per_id: resident_bytes().map(|r| r as f64 / size as f64),
            disk_bytes_per_id: disk_bytes(&path)? as f64 / size as f64,
            written_bytes_per_id: written,
            write_amplification: written.map(|w| w / MARK_BYTES),
            cold_lookups: stats.cold_lookups,
            elapsed_secs: start.elapsed().as_secs_f64(),
        };
        bar.suspend(|| print_point(&point, points.is_empty()));
        points.push(point);
    }
    bar.finish_and_clear();
    store.close()?;
    if let Some(file) = &args.plot {
        let title = format!(
            "dedupstore bench growth: batches of {batch}, memory budget {} MiB, {} CPUs",
            budget >> 20,
            std::thread::available_parallelism().map_or(0, std::num::NonZero::get)
        );
        super::plot::growth(&points, &title, file)?;
    }
    args.files.write_json(&serde_json::json!({
        "memory_budget": budget,
        "batch": batch,
        "window_secs": args.window,
        "cpus": std::thread::available_parallelism().map_or(0, std::num::NonZero::get),
        "points": points,
    }))?;
    Ok(ExitCode::SUCCESS)
}

/// Marks fresh IDs `marked..to` in batches; every one must be new.
pub(super) fn mark(
    store: &Store,
    marked: &mut u64,
    to: u64,
    batch: usize,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    while *marked < to {
        let end = (*marked + batch as u64).min(to);
        let ids: Vec<String> = (*marked..end).map(id).collect();
        let outcomes = store.check_and_mark_batch(&ids)?;
        if let Some(i) = outcomes.iter().position(|o| *o != Outcome::New) {
            return Err(format!("fresh ID {} was answered {:?}", ids[i], outcomes[i]).into());
        }
        bar.inc(end - *marked);
        *marked = end;
    }
    Ok(())
}

/// Duplicates per second of `probes` IDs drawn at random from `range` (all marked).
fn duplicates(
    store: &Store,
    range: std::ops::Range<u64>,
    probes: u64,
    batch: usize,
) -> Result<f64> {
    let mut rng = fastrand::Rng::with_seed(range.start ^ range.end);
    let ids: Vec<String> = (0..probes).map(|_| id(rng.u64(range.clone()))).collect();
    let start = Instant::now();
    for chunk in ids.chunks(batch) {
        let outcomes = store.check_and_mark_batch(chunk)?;
        if let Some(i) = outcomes
            .iter()
            .position(|o| !matches!(o, Outcome::Duplicate { .. }))
        {
            return Err(format!("marked ID {} was answered {:?}", chunk[i], outcomes[i]).into());
        }
    }
    Ok(probes as f64 / start.elapsed().as_secs_f64())
}

/// `contains` misses per second of `probes` IDs never marked.
fn misses(store: &Store, size: u64, probes: u64, batch: usize) -> Result<f64> {
    let ids: Vec<String> = (0..probes).map(|n| id(NEVER_MARKED + size + n)).collect();
    let start = Instant::now();
    for chunk in ids.chunks(batch) {
        if let Some(i) = store.contains_batch(chunk)?.iter().position(|found| *found) {
            return Err(format!("never-marked ID {} was found", chunk[i]).into());
        }
    }
    Ok(probes as f64 / start.elapsed().as_secs_f64())
}

fn print_point(p: &Point, header: bool) {
    if header {
        println!(
            "{:>11} {:>10} {:>11} {:>11} {:>10} {:>10} {:>8} {:>9} {:>8} {:>8} {:>9} {:>6}",
            "IDs",
            "fresh/s",
            "dup hot/s",
            "dup cold/s",
            "misses/s",
            "hot IDs",
            "hot B/ID",
            "filt B/ID",
            "RSS B/ID",
            "disk B/ID",
            "wrote B/ID",
            "WA"
        );
    }
    let some = |v: Option<f64>, precision: usize| {
        v.map_or_else(|| "-".to_owned(), |v| format!("{v:.precision$}"))
    };
    println!(
        "{:>11} {:>10.0} {:>11.0} {:>11} {:>10.0} {:>10} {:>8.1} {:>9.1} {:>8} {:>8.1} {:>9} {:>6}",
        p.ids,
        p.fresh_per_sec,
        p.duplicates_hot_per_sec,
        some(p.duplicates_cold_per_sec, 0),
        p.misses_per_sec,
        p.hot_ids,
        p.hot_bytes_per_id,
        p.filter_bytes_per_id,
        some(p.resident_bytes_per_id, 1),
        p.disk_bytes_per_id,
        some(p.written_bytes_per_id, 1),
        some(p.write_amplification, 1),
    );
}
