//! `dedupstore demo`: an at-least-once consumer on an embedded store, crashed midway.
//!
//! The consumer applies each message with one record-and-mark transaction: the mark, the
//! message's effect (a row keyed by delivery in a table named after the stream) and its offset
//! commit together. A worker process consumes the stream, keeping many transactions in flight, and the
//! parent kills it with `SIGKILL` at a random moment. The parent then reopens the store and
//! resumes from the stored offset, a point before the crash. Finally it checks the effects on
//! disk against the stream it generated: every message applied exactly once.

use super::StreamArgs;
use super::stream::{Stream, index};
use dedupstore::{CommitOutcome, Outcome, Store, Ticket};
use indicatif::ProgressBar;
use std::collections::VecDeque;
use std::error::Error;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The partition the demo's offsets are stored under.
const PARTITION: u32 = 0;
/// Transactions the consumer keeps in flight.
const IN_FLIGHT: usize = 256;

type Result<T> = std::result::Result<T, Box<dyn Error>>;

pub fn run(dir: Option<PathBuf>, args: StreamArgs) -> Result<ExitCode> {
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

    // A worker process, killed at a random moment.
    let kill_after = fastrand::u64(n / 4..=n * 3 / 4);
    let acked = run_worker(&dir, args, seed, kill_after, &progress)?;

    // Reopen and resume from the offset committed with the effects.
    let reopened = Instant::now();
    let store = Store::open(&dir)?;
    let open_time = reopened.elapsed();
    let resume = store.offset(&stream.name(), PARTITION)?.unwrap_or(0);
    progress.suspend(|| {
        println!(
            "demo: worker killed with SIGKILL after acking {acked} deliveries; store reopened in {open_time:.1?}, stored offset {resume}"
        );
    });
    if acked > resume {
        return Err(format!(
            "deliveries up to {acked} were acked but the stored offset is {resume}"
        )
        .into());
    }
    progress.set_position(resume);
    consume(&store, &stream, |_| progress.inc(1))?;
    progress.finish_and_clear();
    let elapsed = started.elapsed();

    let report = Report::check(&stream, &store)?;
    println!(
        "demo: {:.2} s in all; after the restart {} checks went to disk while the in-memory tier refilled; {} transactions in {} group commits",
        elapsed.as_secs_f64(),
        store.stats().cold_lookups,
        store.stats().committed_transactions,
        store.stats().commit_groups,
    );
    for problem in &report.problems {
        println!("demo: PROBLEM: {problem}");
    }
    println!(
        "demo: {n} delivered, {} new, {} duplicates dropped, {} applied twice, {} lost",
        report.applied,
        n - report.applied,
        report.applied_twice,
        report.lost
    );
    Ok(if report.is_clean(&stream) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Consumes the stream from the stored offset to the end, calling `acked` with each delivery,
/// in order, once its transaction has committed.
fn consume(store: &Store, stream: &Stream, mut acked: impl FnMut(u64)) -> Result<()> {
    // Deliveries in flight, in order; `None` once known to be committed.
    let mut in_flight: VecDeque<(u64, Option<Ticket>)> = VecDeque::with_capacity(IN_FLIGHT);
    let mut i = store.offset(&stream.name(), PARTITION)?.unwrap_or(0);
    while i < stream.len() {
        let message = stream.deliveries[index(i)];
        let mut txn = store.transaction();
        txn.mark(stream.id(message))?;
        txn.put(&stream.name(), i.to_be_bytes(), message.to_be_bytes())?;
        txn.set_offset(&stream.name(), PARTITION, i + 1)?;
        let ticket = txn.submit()?;
        // A conflict is decided when the transaction is submitted.
        let ticket = if ticket.is_done() {
            match ticket.wait()? {
                CommitOutcome::Committed(_) => None,
                CommitOutcome::Rejected(conflicts)
                    if conflicts.iter().any(|c| c.outcome == Outcome::InFlight) =>
                {
                    // Its first delivery is one of ours still in flight: wait, then decide again.
                    while let Some(entry) = in_flight.pop_front() {
                        settle(entry, &mut acked)?;
                    }
                    continue;
                }
                CommitOutcome::Rejected(_) | CommitOutcome::OutOfSequence(_) => {
                    // A duplicate (the demo accepts no producer sequences): drop it, committing
                    // only the offset.
                    let mut txn = store.transaction();
                    txn.set_offset(&stream.name(), PARTITION, i + 1)?;
                    Some(txn.submit()?)
                }
            }
        } else {
            Some(ticket)
        };
        in_flight.push_back((i, ticket));
        while in_flight.len() >= IN_FLIGHT {
            if let Some(entry) = in_flight.pop_front() {
                settle(entry, &mut acked)?;
            }
        }
        i += 1;
    }
    while let Some(entry) = in_flight.pop_front() {
        settle(entry, &mut acked)?;
    }
    Ok(())
}

fn settle((i, ticket): (u64, Option<Ticket>), acked: &mut impl FnMut(u64)) -> Result<()> {
    if let Some(ticket) = ticket {
        let outcome = ticket.wait()?;
        if !matches!(outcome, CommitOutcome::Committed(_)) {
            return Err(format!("delivery {i} rejected in flight: {outcome:?}").into());
        }
    }
    acked(i);
    Ok(())
}

/// The worker process: consumes from the stored offset, acking deliveries on stdout as lines
/// `ack <n>` (every delivery below `n` is committed).
pub fn worker(dir: &Path, args: StreamArgs) -> Result<ExitCode> {
    let seed = args.seed.ok_or("the worker needs --seed")?;
    let stream = Stream::generate(args, seed);
    let store = Store::open(dir)?;
    let mut out = std::io::stdout().lock();
    let mut result = Ok(());
    consume(&store, &stream, |i| {
        if result.is_ok() && (i + 1) % 100 == 0 {
            // One write of a whole line: a kill cannot tear it.
            result = out.write_all(format!("ack {}\n", i + 1).as_bytes());
        }
    })?;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Runs a worker and kills it once it has acked `kill_after` deliveries, a moment later.
/// Returns how many deliveries it acked.
fn run_worker(
    dir: &Path,
    args: StreamArgs,
    seed: u64,
    kill_after: u64,
    progress: &ProgressBar,
) -> Result<u64> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("demo-worker")
        .arg("--dir")
        .arg(dir)
        .args(["--messages", &args.messages.to_string()])
        .args(["--redeliver-percent", &args.redeliver_percent.to_string()])
        .args(["--seed", &seed.to_string()])
        .stdout(Stdio::piped())
        .spawn()?;
    let mut reader = BufReader::new(child.stdout.take().ok_or("worker has no stdout")?);
    let mut acked = 0u64;
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        // Lines written before the kill are still in the pipe: the broker received those acks.
        if reader.read_line(&mut line)? == 0 || !line.ends_with('\n') {
            break;
        }
        acked = line
            .trim_end()
            .strip_prefix("ack ")
            .ok_or_else(|| format!("worker wrote {line:?}"))?
            .parse()?;
        progress.set_position(acked);
        if !killed && acked >= kill_after {
            // A moment later, so that the kill lands anywhere in the work in flight.
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

/// The verdict, read from the effects on disk.
struct Report {
    /// Applications: rows of `applied`.
    applied: u64,
    applied_twice: u64,
    lost: u64,
    problems: Vec<String>,
}

impl Report {
    fn check(stream: &Stream, store: &Store) -> Result<Self> {
        let mut problems = Vec::new();
        let mut applications = vec![0u32; index(stream.messages)];
        let mut applied = 0;
        for i in 0..stream.len() {
            let Some(row) = store.get(&stream.name(), i.to_be_bytes())? else {
                continue;
            };
            applied += 1;
            let message = u32::from_be_bytes(row[..].try_into()?);
            applications[message as usize] += 1;
            if message != stream.deliveries[index(i)] || !stream.first[index(i)] {
                problems.push(format!(
                    "delivery {i} applied message {message}, not a first delivery"
                ));
            }
        }
        let offset = store.offset(&stream.name(), PARTITION)?.unwrap_or(0);
        if offset != stream.len() {
            problems.push(format!("stored offset {offset}, expected {}", stream.len()));
        }
        let mut unmarked = 0;
        for chunk in (0..u32::try_from(stream.messages)?)
            .collect::<Vec<_>>()
            .chunks(10_000)
        {
            let ids: Vec<String> = chunk.iter().map(|&m| stream.id(m)).collect();
            unmarked += store.contains_batch(&ids)?.iter().filter(|&&c| !c).count() as u64;
        }
        if unmarked > 0 {
            problems.push(format!("{unmarked} messages are not marked"));
        }
        problems.truncate(10);
        Ok(Self {
            applied,
            applied_twice: applications.iter().filter(|&&a| a > 1).count() as u64,
            lost: applications.iter().filter(|&&a| a == 0).count() as u64,
            problems,
        })
    }

    fn is_clean(&self, stream: &Stream) -> bool {
        self.problems.is_empty()
            && self.applied_twice == 0
            && self.lost == 0
            && self.applied == stream.messages
    }
}

fn progress_bar(len: u64) -> ProgressBar {
    super::progress_bar(
        len,
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} deliveries ({per_sec})",
    )
}
