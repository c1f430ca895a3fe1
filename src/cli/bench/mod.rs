//! `dedupstore bench`: one workload, side by side, against dedupstore, raw RocksDB (the floor
//! it sits on) and Redis (what users run instead), started here on 127.0.0.1; and a store at
//! growing sizes, `growth` (docs/performance.md).

mod clients;
mod growth;
mod latency;
mod plot;
pub mod redis_server;
mod restart;
mod run;
mod size;
mod table;
mod windows;

use super::StreamArgs;
use super::stream::Stream;
use clients::{Api, Client, RawClient, RedisClient, Result, StoreClient};
use dedupstore::{Durability, Store};
use redis_server::{Persistence, RedisServer};
use run::{Deliveries, Measured};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    run: Option<SizeRun>,
    #[command(flatten)]
    compare: CompareArgs,
}

#[derive(Debug, clap::Subcommand)]
enum SizeRun {
    /// Fresh marks, duplicates (from memory and from disk), misses, memory and disk at growing
    /// numbers of IDs in the window, with the default memory budget.
    Growth(growth::GrowthArgs),
    /// A store holding many IDs closed and opened again: time to the first correct answer, and
    /// throughput second by second after the open against before the close.
    Restart(restart::RestartArgs),
    /// One store through many retention windows at a steady rate on a manual clock: its disk
    /// at the end of each.
    Windows(windows::WindowsArgs),
}

/// Which systems a run compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
enum Target {
    Dedupstore,
    Rocksdb,
    Redis,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DurabilityArg {
    /// `Durability::Buffered`; raw RocksDB without sync; Redis without persistence and with
    /// AOF `everysec`.
    Buffered,
    /// `Durability::Synced`; raw RocksDB with sync; Redis with AOF `always`.
    Synced,
}

#[derive(Debug, clap::Args)]
struct CompareArgs {
    #[command(flatten)]
    stream: StreamArgs,
    /// Threads per row (several: each row runs once per count), sharing one store, database
    /// or Redis server, each with its own connection.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// IDs per batch call and per pipeline, and transactions in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    depth: u64,
    /// Longest time a row spends on each phase (the stream, then its replay).
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Systems to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "dedupstore,rocksdb,redis"
    )]
    targets: Vec<Target>,
    /// Durabilities to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "buffered,synced"
    )]
    durability: Vec<DurabilityArg>,
    /// APIs to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "single,batch,txn"
    )]
    api: Vec<Api>,
    /// Retention window in seconds: the store's window and Redis' `EX`.
    #[arg(long, default_value_t = 86_400)]
    window: u64,
    /// Where the stores, databases and Redis files go, each removed after its row (a
    /// temporary directory unless given; use local disk, not tmpfs).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write every row, with its ratio to every Redis row, as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One row of the table: a system, its durability and API, and threads.
#[derive(Clone, Debug, Serialize)]
struct Row {
    name: String,
    target: Target,
    /// `buffered` or `synced` (dedupstore, RocksDB); Redis' persistence: `none`, `everysec`
    /// or `always`.
    durability: &'static str,
    api: Api,
    depth: usize,
    threads: usize,
    /// The deliveries of the stream, all of them duplicates in the replay.
    stream: Measured,
    replay: Measured,
    /// For transactions: the store's mean commit group, which raw RocksDB's batches copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_group: Option<usize>,
}

pub fn run(args: BenchArgs) -> Result<ExitCode> {
    match args.run {
        Some(SizeRun::Growth(a)) => growth::run(&a),
        Some(SizeRun::Restart(a)) => restart::run(&a),
        Some(SizeRun::Windows(a)) => windows::run(&a),
        None => compare(&args.compare),
    }
}

fn compare(args: &CompareArgs) -> Result<ExitCode> {
    if args.seconds <= 0.0 || !args.seconds.is_finite() {
        return Err(format!("--seconds {} is not a positive time", args.seconds).into());
    }
    if args.threads.iter().any(|&t| t == 0 || t > 1024) {
        return Err("--threads takes counts from 1 to 1024".into());
    }
    let seed = args.stream.seed.unwrap_or_else(|| fastrand::u64(..));
    let stream = Stream::generate(args.stream, seed);
    let deliveries = Deliveries {
        ids: stream.deliveries.iter().map(|&n| stream.id(n)).collect(),
        first: stream.first.clone(),
    };
    let scratch = scratch_dir(args.dir.as_deref())?;
    let depth = usize::try_from(args.depth)?;
    let time = Duration::from_secs_f64(args.seconds);
    eprintln!(
        "bench: {} deliveries of {} messages ({}% redelivered, seed {seed}), depth {depth}, \
         up to {:.0} s a phase, in {}",
        stream.len(),
        stream.messages,
        args.stream.redeliver_percent,
        args.seconds,
        scratch.path().display(),
    );
    let mut rows = Vec::new();
    let mut redis_missing = None;
    for &threads in &args.threads {
        let mut bench = Bench {
            deliveries: &deliveries,
            depth,
            threads,
            time,
            window: args.window,
            dir: scratch.path(),
            groups: Vec::new(),
        };
        for durability in &args.durability {
            let durability = match durability {
                DurabilityArg::Buffered => Durability::Buffered,
                DurabilityArg::Synced => Durability::Synced,
            };
            for &api in &args.api {
                if args.targets.contains(&Target::Dedupstore) {
                    rows.push(bench.store(durability, api)?);
                }
                if args.targets.contains(&Target::Rocksdb) {
                    rows.push(bench.raw(durability, api)?);
                }
            }
            if !args.targets.contains(&Target::Redis) {
                continue;
            }
            let persistences: &[Persistence] = match durability {
                Durability::Buffered => &[Persistence::None, Persistence::EverySec],
                Durability::Synced => &[Persistence::Always],
            };
            for &persistence in persistences {
                for &api in args.api.iter().filter(|a| **a != Api::Txn) {
                    match bench.redis(persistence, api) {
                        Ok(row) => rows.push(row),
                        Err(Skip::Missing(why)) => redis_missing = Some(why),
                        Err(Skip::Failed(e)) => return Err(e),
                    }
                }
            }
        }
    }
    table::print(&rows);
    if let Some(why) = &redis_missing {
        println!("no Redis rows: {why}");
    }
    write_json(args.json.as_deref(), &table::json(&rows, seed, args))?;
    Ok(ExitCode::SUCCESS)
}

/// Where a run on one store puts it, and its figures.
#[derive(Debug, clap::Args)]
struct OneStoreFiles {
    /// Where the store goes (a temporary directory unless given; removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

impl OneStoreFiles {
    /// The scratch directory the store goes in.
    fn scratch(&self) -> Result<tempfile::TempDir> {
        scratch_dir(self.dir.as_deref())
    }

    /// Writes `value` to the `--json` file, if one was given.
    fn write_json(&self, value: &impl Serialize) -> Result<()> {
        write_json(self.json.as_deref(), value)
    }
}

/// Writes `value` as pretty JSON to `file`, if one was asked for (`--json`).
fn write_json(file: Option<&Path>, value: &impl Serialize) -> Result<()> {
    if let Some(file) = file {
        std::fs::write(file, serde_json::to_string_pretty(value)?)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    }
    Ok(())
}

/// A temporary directory in `dir` (created if missing), or in the system's.
fn scratch_dir(dir: Option<&Path>) -> Result<tempfile::TempDir> {
    Ok(match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            tempfile::Builder::new().prefix("bench-").tempdir_in(dir)?
        }
        None => tempfile::Builder::new()
            .prefix("dedupstore-bench-")
            .tempdir()?,
    })
}

/// Why a Redis row did not run.
enum Skip {
    Missing(String),
    Failed(Box<dyn std::error::Error + Send + Sync>),
}

/// What the rows of one thread count share.
struct Bench<'a> {
    deliveries: &'a Deliveries,
    depth: usize,
    threads: usize,
    time: Duration,
    window: u64,
    dir: &'a Path,
    /// The store's mean commit group per durability, from its transaction rows.
    groups: Vec<(Durability, usize)>,
}

impl Bench<'_> {
    fn durability_name(durability: Durability) -> &'static str {
        match durability {
            Durability::Buffered => "buffered",
            Durability::Synced => "synced",
        }
    }

    fn name(&self, system: &str, mode: &str, api: Api) -> String {
        let shape = match api {
            Api::Single => "single".to_owned(),
            Api::Batch if system == "redis" => format!("pipelined/{}", self.depth),
            Api::Batch => format!("batch/{}", self.depth),
            Api::Txn => format!("txn/{}", self.depth),
        };
        format!("{system} {mode} {shape} x{}", self.threads)
    }

    /// Runs the stream, then its replay, with clients made by `client(replay, thread)`.
    fn phases(
        &self,
        name: &str,
        mut client: impl FnMut(bool, u32) -> Result<Box<dyn Client>>,
    ) -> Result<(Measured, Measured)> {
        let len = self.deliveries.ids.len() as u64;
        let bar = super::count_bar(len, name.to_owned());
        let make = |replay, client: &mut dyn FnMut(bool, u32) -> Result<Box<dyn Client>>| {
            (0..self.threads)
                .map(|t| client(replay, u32::try_from(t)?))
                .collect::<Result<Vec<_>>>()
        };
        let clients = make(false, &mut client)?;
        let (stream, done) =
            run::phase(self.deliveries, self.depth, clients, None, self.time, &bar)?;
        bar.set_position(0);
        bar.set_message(format!("{name} (replay)"));
        let clients = make(true, &mut client)?;
        let (replay, _) = run::phase(
            self.deliveries,
            self.depth,
            clients,
            Some(&done),
            self.time,
            &bar,
        )?;
        bar.finish_and_clear();
        if replay.new > 0 {
            return Err(
                format!("{name}: {} replayed deliveries were found new", replay.new).into(),
            );
        }
        Ok((stream, replay))
    }

    fn row(&self, name: String, target: Target, durability: &'static str, api: Api) -> Row {
        let zero = Measured {
            ops: 0,
            new: 0,
            seconds: 0.0,
            ops_per_sec: 0.0,
            latency: latency::Latency::new().summary(),
        };
        Row {
            name,
            target,
            durability,
            api,
            depth: if api == Api::Single { 1 } else { self.depth },
            threads: self.threads,
            stream: zero,
            replay: zero,
            mean_group: None,
        }
    }

    fn store(&mut self, durability: Durability, api: Api) -> Result<Row> {
        let mode = Self::durability_name(durability);
        let mut row = self.row(
            self.name("dedupstore", mode, api),
            Target::Dedupstore,
            mode,
            api,
        );
        let dir = self.dir.join("store");
        let messages = self.deliveries.first.iter().filter(|f| **f).count() as u64;
        let store = Arc::new(
            Store::builder(&dir)
                .window(Duration::from_secs(self.window))
                .durability(durability)
                .capacity(messages.max(1))
                .open()?,
        );
        let depth = self.depth;
        (row.stream, row.replay) = self.phases(&row.name, |_, t| {
            Ok(Box::new(StoreClient::new(
                Arc::clone(&store),
                api,
                depth,
                t,
            )))
        })?;
        if api == Api::Txn {
            let stats = store.stats();
            let groups = stats.commit_groups.max(1);
            // The mean group, rounded to the nearest whole transaction.
            let group = usize::try_from((stats.committed_transactions + groups / 2) / groups)?;
            row.mean_group = Some(group.max(1));
            self.groups.push((durability, group.max(1)));
        }
        Arc::into_inner(store)
            .ok_or("the bench's store is still shared after its row")?
            .close()?;
        remove(&dir)?;
        Ok(row)
    }

    fn raw(&self, durability: Durability, api: Api) -> Result<Row> {
        let mode = Self::durability_name(durability);
        let mut row = self.row(self.name("rocksdb", mode, api), Target::Rocksdb, mode, api);
        let group = match api {
            Api::Txn => self
                .groups
                .iter()
                .find(|(d, _)| *d == durability)
                .map_or(self.depth, |(_, g)| *g),
            _ => 1,
        };
        let dir = self.dir.join("rocksdb");
        let mut options = rocksdb::Options::default();
        options.create_if_missing(true);
        options.create_missing_column_families(true);
        let db = Arc::new(rocksdb::DB::open_cf(&options, &dir, clients::RAW_FAMILIES)?);
        let sync = durability == Durability::Synced;
        (row.stream, row.replay) = self.phases(&row.name, |replay, t| {
            Ok(Box::new(RawClient::new(
                Arc::clone(&db),
                api,
                sync,
                replay,
                group,
                t,
            )))
        })?;
        if api == Api::Txn {
            row.mean_group = Some(group);
        }
        drop(db);
        remove(&dir)?;
        Ok(row)
    }

    fn redis(&self, persistence: Persistence, api: Api) -> std::result::Result<Row, Skip> {
        let failed = |e: Box<dyn std::error::Error + Send + Sync>| Skip::Failed(e);
        let dir = self.dir.join("redis");
        std::fs::create_dir_all(&dir).map_err(|e| failed(e.into()))?;
        let server = RedisServer::start(&dir, persistence).map_err(Skip::Missing)?;
        let mut row = self.row(
            self.name("redis", persistence.name(), api),
            Target::Redis,
            persistence.name(),
            api,
        );
        let window = self.window;
        (row.stream, row.replay) = self
            .phases(&row.name, |_, _| {
                Ok(Box::new(RedisClient::new(server.connect()?, api, window)))
            })
            .map_err(failed)?;
        drop(server);
        remove(&dir).map_err(failed)?;
        Ok(row)
    }
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).map_err(|e| format!("cannot remove {}: {e}", dir.display()).into())
}
