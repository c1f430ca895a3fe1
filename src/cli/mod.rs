//! Command-line parsing and dispatch.

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
    /// The demo's worker process (started by `demo`).
    #[command(hide = true)]
    DemoWorker(WorkerArgs),
}

/// The stream a demo consumes.
#[derive(Debug, Clone, Copy, Args)]
pub struct StreamArgs {
    /// Deliveries in the stream (at least 1,000, so that the crash lands midway).
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
    }
}
