//! `dedupstore bench windows`: one store run through many retention windows at a steady rate,
//! on a manual clock, to show that its disk stays flat: generations whose marks have all
//! expired are dropped while new ones fill.

use super::clients::Result;
use super::growth::mark;
use super::size::{disk_bytes, parse_count};
use dedupstore::{ManualClock, Store};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

#[derive(Debug, clap::Args)]
pub struct WindowsArgs {
    /// Windows to run through.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    windows: u64,
    /// Fresh IDs marked in each window, evenly over it (K, M, G: thousands, millions,
    /// billions).
    #[arg(long, value_parser = parse_count, default_value = "2M")]
    ids_per_window: u64,
    /// Retention window in seconds of the manual clock (no real time passes).
    #[arg(long, default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    window: u64,
    /// IDs per `check_and_mark_batch` call; the clock moves on after each.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    batch: u64,
    #[command(flatten)]
    files: super::OneStoreFiles,
}

/// The store at the end of one window.
#[derive(Debug, Serialize)]
struct WindowEnd {
    window: u64,
    disk_bytes: u64,
    /// Disk bytes per ID a window holds (`ids_per_window`).
    disk_bytes_per_id: f64,
    generations: usize,
    hot_ids: u64,
}

pub fn run(args: &WindowsArgs) -> Result<ExitCode> {
    let batch = usize::try_from(args.batch)?;
    let scratch = args.files.scratch()?;
    let path = scratch.path().join("store");
    let clock = ManualClock::new(SystemTime::now());
    let store = Store::builder(&path)
        .window(Duration::from_secs(args.window))
        .clock(clock.clone())
        .open()?;
    let batches = args.ids_per_window.div_ceil(args.batch);
    let step = Duration::from_secs(args.window).div_f64(batches as f64);
    eprintln!(
        "windows: {} windows of {} s, {} IDs each in batches of {batch}, in {}",
        args.windows,
        args.window,
        args.ids_per_window,
        path.display()
    );
    let bar = super::super::count_bar(args.windows * args.ids_per_window, "fresh marks".to_owned());
    let mut marked = 0;
    let mut ends = Vec::new();
    println!(
        "{:>6} {:>12} {:>10} {:>11} {:>10}",
        "window", "disk bytes", "disk B/ID", "generations", "hot IDs"
    );
    for window in 1..=args.windows {
        let end = window * args.ids_per_window;
        while marked < end {
            let to = (marked + args.batch).min(end);
            mark(&store, &mut marked, to, batch, &bar)?;
            clock.advance(step);
        }
        // What stays after the window's writes have left the memtables.
        store.flush()?;
        let stats = store.stats();
        let disk = disk_bytes(&path)?;
        let at = WindowEnd {
            window,
            disk_bytes: disk,
            disk_bytes_per_id: disk as f64 / args.ids_per_window as f64,
            generations: stats.generations,
            hot_ids: stats.hot_ids,
        };
        bar.suspend(|| {
            println!(
                "{:>6} {:>12} {:>10.1} {:>11} {:>10}",
                at.window, at.disk_bytes, at.disk_bytes_per_id, at.generations, at.hot_ids
            );
        });
        ends.push(at);
    }
    bar.finish_and_clear();
    store.close()?;
    args.files.write_json(&serde_json::json!({
        "window_secs": args.window,
        "ids_per_window": args.ids_per_window,
        "batch": batch,
        "ends": ends,
    }))?;
    Ok(ExitCode::SUCCESS)
}
