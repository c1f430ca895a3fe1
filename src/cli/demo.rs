//! `dedupstore demo`: an at-least-once consumer on an embedded store, crashed midway.
//!
//! The parent plays the broker. It starts a worker process that consumes the stream in poll
//! batches, marking each batch with one `check_and_mark_batch` and acking it on stdout, and kills
//! it with `SIGKILL` at a random moment. It then reopens the store and redelivers from its last
//! commit, a point before the crash, as a broker redelivers what was not acked. Finally it checks
//! every outcome against the stream it generated.

use super::StreamArgs;
use super::stream::{Stream, index};
use dedupstore::{Outcome, Store};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::HashSet;
use std::error::Error;
use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The broker commits acked deliveries every this many batches; a restart redelivers from the
/// last commit.
const COMMIT_EVERY_BATCHES: u64 = 20;

const NEW: u8 = b'N';
const DUPLICATE: u8 = b'D';
const IN_FLIGHT: u8 = b'I';
const NONE: u8 = 0;

pub fn run(dir: Option<PathBuf>, args: StreamArgs) -> Result<ExitCode, Box<dyn Error>> {
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let stream = Stream::generate(args, seed);
    let temp;
    let dir = if let Some(dir) = dir {
        dir
    } else {
        temp = tempfile::tempdir()?;
        temp.path().to_owned()
    };
    let n = stream.len();
    println!(
        "demo: {n} deliveries of {} messages ({}% redeliveries, seed {seed:#x}), store at {}",
        stream.messages,
        args.redeliver_percent,
        dir.display()
    );
    let progress = progress_bar(n);
    let started = Instant::now();

    // Phase 1: a worker process, killed at a random moment.
    let kill_after = if n >= 4 {
        fastrand::u64(n / 4..n * 3 / 4)
    } else {
        0
    };
    let mut first_run = vec![NONE; index(n)];
    let acked = run_worker(&dir, args, seed, kill_after, &mut first_run, &progress)?;

    // Phase 2: reopen and resume from the broker's last commit.
    let reopened = Instant::now();
    let store = Store::open(&dir)?;
    let open_time = reopened.elapsed();
    let commit_every = args.batch * COMMIT_EVERY_BATCHES;
    let resume = acked - acked % commit_every;
    progress.suspend(|| {
        println!(
            "demo: worker killed with SIGKILL after {acked} acked deliveries; store reopened in {open_time:?}, broker redelivers from {resume}"
        );
    });
    let mut second_run = vec![NONE; index(n)];
    consume(&store, &stream, resume, args.batch, |start, outcomes| {
        second_run[index(start)..index(start) + outcomes.len()].copy_from_slice(outcomes);
        progress.inc(outcomes.len() as u64);
        Ok(())
    })?;
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    let report = Report::check(
        &stream,
        &first_run,
        &second_run,
        acked,
        resume,
        args.batch,
        &store,
    )?;
    let stats = store.stats();
    println!(
        "demo: {:.2} s in all; after the restart {} checks went to disk while the in-memory tier refilled",
        elapsed.as_secs_f64(),
        stats.cold_lookups
    );
    if report.crashed_batch_applied > 0 {
        println!(
            "demo: the batch in flight at the kill had been written but not acked: its {} new messages came back as duplicates",
            report.crashed_batch_applied
        );
    }
    for problem in &report.problems {
        println!("demo: PROBLEM: {problem}");
    }
    println!(
        "demo: {} delivered, {} new, {} duplicates dropped, {} applied twice, {} lost",
        report.delivered,
        report.new,
        report.delivered - report.new,
        report.applied_twice,
        report.lost
    );
    Ok(if report.is_clean(&stream) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Consumes deliveries from `from` to the end in batches of `batch`, handing each batch's
/// outcomes to `ack`.
fn consume(
    store: &Store,
    stream: &Stream,
    from: u64,
    batch: u64,
    mut ack: impl FnMut(u64, &[u8]) -> Result<(), Box<dyn Error>>,
) -> Result<(), Box<dyn Error>> {
    let mut start = from;
    while start < stream.len() {
        let end = (start + batch).min(stream.len());
        let outcomes: Vec<u8> = store
            .check_and_mark_batch(&stream.ids(start..end))?
            .into_iter()
            .map(|o| match o {
                Outcome::New => NEW,
                Outcome::Duplicate { .. } => DUPLICATE,
                Outcome::InFlight => IN_FLIGHT,
            })
            .collect();
        ack(start, &outcomes)?;
        start = end;
    }
    Ok(())
}

/// The worker process: consumes from `from`, acking each batch as a line `<start> <outcomes>`
/// on stdout once its marks are written.
pub fn worker(dir: &Path, args: StreamArgs, from: u64) -> Result<ExitCode, Box<dyn Error>> {
    let seed = args.seed.ok_or("the worker needs --seed")?;
    let stream = Stream::generate(args, seed);
    let store = Store::open(dir)?;
    let mut out = std::io::stdout().lock();
    consume(&store, &stream, from, args.batch, |start, outcomes| {
        writeln!(out, "{start} {}", String::from_utf8_lossy(outcomes))?;
        out.flush()?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a worker from the start of the stream and kills it once `kill_after` deliveries are
/// acked. Records acked outcomes in `outcomes`; returns how many deliveries were acked.
fn run_worker(
    dir: &Path,
    args: StreamArgs,
    seed: u64,
    kill_after: u64,
    outcomes: &mut [u8],
    progress: &ProgressBar,
) -> Result<u64, Box<dyn Error>> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("demo-worker")
        .arg("--dir")
        .arg(dir)
        .args(["--messages", &args.messages.to_string()])
        .args(["--redeliver-percent", &args.redeliver_percent.to_string()])
        .args(["--seed", &seed.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--from", "0"])
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("worker has no stdout")?;
    let mut reader = BufReader::new(stdout);
    let mut acked = 0u64;
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        // Lines written before the kill are still in the pipe: the broker received those acks.
        if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            break;
        }
        let (start, batch) = line
            .trim_end()
            .split_once(' ')
            .ok_or_else(|| format!("worker wrote {line:?}"))?;
        if start.parse::<u64>()? != acked {
            return Err(format!("worker acked {start} out of order, expected {acked}").into());
        }
        let batch = batch.as_bytes();
        outcomes[index(acked)..index(acked) + batch.len()].copy_from_slice(batch);
        acked += batch.len() as u64;
        progress.set_position(acked);
        if !killed && acked >= kill_after {
            // A moment later, so that the kill lands anywhere in the worker's next batch.
            std::thread::sleep(Duration::from_micros(fastrand::u64(0..2_000)));
            child.kill()?; // SIGKILL
            killed = true;
        }
    }
    let status = child.wait()?;
    if !killed {
        return Err(format!("worker exited before the crash: {status}").into());
    }
    Ok(acked)
}

/// The demo's verdict, computed from the outcomes against the stream.
struct Report {
    delivered: u64,
    /// Messages applied (a `New` outcome), counting the crashed batch's if it was written.
    new: u64,
    applied_twice: u64,
    lost: u64,
    crashed_batch_applied: u64,
    problems: Vec<String>,
}

impl Report {
    fn check(
        stream: &Stream,
        first_run: &[u8],
        second_run: &[u8],
        acked: u64,
        resume: u64,
        batch: u64,
        store: &Store,
    ) -> Result<Self, Box<dyn Error>> {
        let n = stream.len();
        let mut problems = Vec::new();
        let mut applied = vec![0u32; index(stream.messages)];
        let expected = |i: u64| {
            if stream.first[index(i)] {
                NEW
            } else {
                DUPLICATE
            }
        };
        let mut mismatch = |run: &str, i: u64, got: u8, want: u8| {
            if problems.len() < 10 {
                problems.push(format!(
                    "{run} run, delivery {i} (message {}): got {:?}, expected {:?}",
                    stream.deliveries[index(i)],
                    got as char,
                    want as char
                ));
            }
        };

        for i in 0..acked {
            let got = first_run[index(i)];
            if got != expected(i) {
                mismatch("first", i, got, expected(i));
            }
        }
        // The batch in flight at the kill was written whole or not at all: its first deliveries
        // come back all as duplicates (written) or all as new (not written).
        let crashed = acked..(acked + batch).min(n);
        let firsts: Vec<u64> = crashed
            .clone()
            .filter(|&i| stream.first[index(i)])
            .collect();
        let written = firsts
            .iter()
            .filter(|&&i| second_run[index(i)] == DUPLICATE)
            .count();
        if written != 0 && written != firsts.len() {
            mismatch("second", acked, b'?', b'?');
        }
        let crashed_batch_written = written != 0 && written == firsts.len();
        for i in resume..n {
            let got = second_run[index(i)];
            let want = if i < acked || (crashed_batch_written && crashed.contains(&i)) {
                DUPLICATE
            } else {
                expected(i)
            };
            if got != want {
                mismatch("second", i, got, want);
            }
        }

        let news = (0..acked)
            .filter(|&i| first_run[index(i)] == NEW)
            .chain((resume..n).filter(|&i| second_run[index(i)] == NEW))
            .chain(firsts.iter().copied().filter(|_| crashed_batch_written));
        for i in news {
            applied[stream.deliveries[index(i)] as usize] += 1;
        }
        let unmarked = unmarked_messages(stream, store)?;
        let lost = applied.iter().filter(|&&a| a == 0).count() as u64;
        if unmarked > 0 {
            problems.push(format!("{unmarked} messages are not marked in the store"));
        }
        let delivered = acked
            + (n - resume)
            + if crashed_batch_written {
                crashed.end - crashed.start
            } else {
                0
            };
        Ok(Self {
            delivered,
            new: applied.iter().map(|&a| u64::from(a)).sum(),
            applied_twice: applied.iter().filter(|&&a| a > 1).count() as u64,
            lost: lost.max(unmarked),
            crashed_batch_applied: if crashed_batch_written {
                firsts.len() as u64
            } else {
                0
            },
            problems,
        })
    }

    fn is_clean(&self, stream: &Stream) -> bool {
        self.problems.is_empty()
            && self.applied_twice == 0
            && self.lost == 0
            && self.new == stream.messages
    }
}

/// How many of the stream's messages the store does not hold.
fn unmarked_messages(stream: &Stream, store: &Store) -> Result<u64, Box<dyn Error>> {
    let mut unmarked = 0;
    let all: Vec<u32> = stream
        .deliveries
        .iter()
        .copied()
        .collect::<HashSet<u32>>()
        .into_iter()
        .collect();
    for chunk in all.chunks(10_000) {
        let ids: Vec<String> = chunk.iter().map(|&m| stream.id(m)).collect();
        unmarked += store.contains_batch(&ids)?.iter().filter(|&&c| !c).count() as u64;
    }
    Ok(unmarked)
}

fn progress_bar(len: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} deliveries ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar
}
