//! Command-line parsing and dispatch.

mod bench;
mod checkpoint;
mod demo;
mod stream;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// An embedded windowed deduplication store.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Simulate an at-least-once consumer that crashes midway, and check that no message is
    /// lost or applied twice.
    Demo(DemoArgs),
    /// Checkpoint a closed store into a destination directory (incremental: files the
    /// destination holds already are not sent again).
    Checkpoint(checkpoint::CheckpointArgs),
    /// Restore a store from a destination's newest checkpoint (or a named one, or a checkpoint
    /// directory), verifying every file and the restored contents against the manifest.
    Restore(checkpoint::RestoreArgs),
    /// Measure one workload side by side against raw RocksDB and Redis (started here on
    /// 127.0.0.1), or one store at size: growing (`growth`), reopened (`restart`), or through
    /// many windows (`windows`).
    Bench(Box<bench::BenchArgs>),
    /// The demo's worker process (started by `demo`).
    #[command(hide = true)]
    DemoWorker(WorkerArgs),
}

/// The stream a demo consumes.
#[derive(Debug, Clone, Copy, Args)]
pub struct StreamArgs {
    /// Deliveries in the stream (at least 1,000: the demo's crash lands midway).
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(1_000..=1 << 32))]
    messages: u64,
    /// Share of deliveries that redeliver an earlier message, in percent (0..=100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    redeliver_percent: u8,
    /// Seed of the stream (random unless given).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Store directory (a temporary directory, removed afterwards, unless given).
    #[arg(long)]
    dir: Option<PathBuf>,
    #[command(flatten)]
    stream: StreamArgs,
}

#[derive(Debug, Args)]
struct WorkerArgs {
    #[arg(long)]
    dir: PathBuf,
    #[command(flatten)]
    stream: StreamArgs,
}

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.command {
        Command::Demo(args) => demo::run(args.dir, args.stream),
        Command::DemoWorker(args) => demo::worker(&args.dir, args.stream),
        Command::Checkpoint(args) => checkpoint::checkpoint(&args),
        Command::Restore(args) => checkpoint::restore(&args),
        Command::Bench(args) => bench::run(*args).map_err(|e| e as Box<dyn std::error::Error>),
    }
}

/// A progress bar of `total` on standard error drawn with `template`; hidden unless standard
/// error is a terminal.
fn progress_bar(total: u64, template: &str) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// A progress bar of `total` items, labelled `what`.
fn count_bar(total: u64, what: String) -> indicatif::ProgressBar {
    progress_bar(
        total,
        "{spinner} {msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})",
    )
    .with_message(what)
}

/// A progress bar of `total` bytes, labelled `what`.
fn bytes_bar(total: u64, what: &'static str) -> indicatif::ProgressBar {
    progress_bar(
        total,
        "{spinner} {msg} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec})",
    )
    .with_message(what)
}
