//! Group commit: one committer thread, fed through a crossbeam channel, merges the queued
//! transactions into one `WriteBatch`: one write-ahead log write and, in `Synced`, one fsync
//! for the whole group. Then it settles each transaction's claims and completes its ticket.
//!
//! A blocking commit with nothing queued or being written skips the queue: the caller writes
//! its transaction itself, saving two thread wake-ups. One writer token serialises the
//! committer's groups and these direct writes, and a direct write happens only while no
//! submitted transaction is unfinished, so commits from one thread never overtake each other.

mod ticket;

pub(crate) use ticket::Completion;
pub use ticket::Ticket;
use ticket::{SPIN, spin_until};

use crate::engine::{Claim, Engine};
use crate::error::{Error, Result};
use crate::persist::Staged;
use crate::txn::{CommitOutcome, Receipt};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use parking_lot::Mutex;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most transactions merged into one write.
const MAX_GROUP: usize = 512;
/// The most transactions queued; `submit` blocks beyond it.
const MAX_QUEUED: usize = 8_192;

/// A transaction ready to be written: its writes and its claimed marks.
pub(crate) struct Prepared {
    pub staged: Staged,
    pub claims: Vec<Claim>,
}

/// A prepared transaction handed to the committer.
struct Request {
    prepared: Prepared,
    done: Completion,
}

pub(crate) struct Committer {
    sender: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

/// What the committer thread and direct writers share.
struct Shared {
    engine: Arc<Engine>,
    /// Held across every write of a transaction: by the committer for a group, or by a direct
    /// writer.
    writer: Mutex<()>,
    /// Transactions submitted to the queue and not yet written.
    unfinished: AtomicUsize,
    counters: Counters,
}

/// Group sizes, for [`Stats`](crate::Stats), and how long writes take.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub groups: AtomicU64,
    pub transactions: AtomicU64,
    pub largest: AtomicU64,
    /// Moving average of a write's duration, in nanoseconds (updated under the writer token).
    write_nanos: AtomicU64,
}

impl Counters {
    fn record(&self, size: usize, took: Duration) {
        let size = size as u64;
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.transactions.fetch_add(size, Ordering::Relaxed);
        self.largest.fetch_max(size, Ordering::Relaxed);
        // An exponential average with weight 1/8.
        let took = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        let average = self.write_nanos.load(Ordering::Relaxed);
        let updated = if took >= average {
            average + (took - average) / 8
        } else {
            average - (average - took) / 8
        };
        self.write_nanos.store(updated, Ordering::Relaxed);
    }
}

impl Committer {
    pub(crate) fn start(engine: Arc<Engine>) -> Result<Self> {
        let (sender, receiver) = crossbeam_channel::bounded(MAX_QUEUED);
        let shared = Arc::new(Shared {
            engine,
            writer: Mutex::new(()),
            unfinished: AtomicUsize::new(0),
            counters: Counters::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dedupstore-commit".into())
            .spawn(move || run(&thread_shared, &receiver))
            .map_err(|e| Error::io("starting the committer thread", e))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            shared,
        })
    }

    /// Queues a prepared transaction for the committer. Gives its claims back if the committer
    /// has stopped.
    pub(crate) fn submit(&self, prepared: Prepared) -> Result<Ticket, Vec<Claim>> {
        let Some(sender) = &self.sender else {
            return Err(prepared.claims);
        };
        let (ticket, done) = Ticket::new(self.spin_hint());
        self.shared.unfinished.fetch_add(1, Ordering::AcqRel);
        sender.send(Request { prepared, done }).map_err(|unsent| {
            self.shared.unfinished.fetch_sub(1, Ordering::AcqRel);
            unsent.into_inner().prepared.claims
        })?;
        Ok(ticket)
    }

    /// Writes a prepared transaction in the caller's thread if nothing is queued or being
    /// written; otherwise gives it back to be submitted.
    pub(crate) fn try_commit_now(
        &self,
        prepared: Prepared,
    ) -> Result<Result<CommitOutcome>, Prepared> {
        let Some(_token) = self.shared.writer.try_lock() else {
            return Err(prepared);
        };
        if self.shared.unfinished.load(Ordering::Acquire) != 0 {
            return Err(prepared);
        }
        let started = Instant::now();
        let written = self
            .shared
            .engine
            .write_and_settle(&[&prepared.staged], &[&prepared.claims]);
        self.shared.counters.record(1, started.elapsed());
        Ok(written.map(|mut outboxes| {
            CommitOutcome::Committed(Receipt {
                outbox: outboxes.pop().unwrap_or_default(),
            })
        }))
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.shared.counters
    }

    /// How long a waiter should spin for a commit submitted now: while writes complete in less
    /// than [`SPIN`], spinning catches the completion; when they take longer (an fsync, a large
    /// group), it would only burn a core that the write needs.
    fn spin_hint(&self) -> Duration {
        let recent = Duration::from_nanos(self.shared.counters.write_nanos.load(Ordering::Relaxed));
        if recent < SPIN { SPIN } else { Duration::ZERO }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what is queued, then return.
        drop(self.sender.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The next request: spinning a little first (the next one often comes within microseconds of
/// the last completion, sooner than a sleeping thread wakes), then sleeping. `None` once every
/// sender is gone.
fn next(receiver: &Receiver<Request>) -> Option<Request> {
    let mut request = None;
    spin_until(SPIN, || match receiver.try_recv() {
        Ok(r) => {
            request = Some(r);
            true
        }
        Err(TryRecvError::Empty) => false,
        Err(TryRecvError::Disconnected) => true,
    });
    request.or_else(|| receiver.recv().ok())
}

fn run(shared: &Shared, receiver: &Receiver<Request>) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    while let Some(first) = next(receiver) {
        group.push(first);
        group.extend(receiver.try_iter().take(MAX_GROUP - 1));
        let token = shared.writer.lock();
        let started = Instant::now();
        let written = {
            let staged: Vec<&Staged> = group.iter().map(|r| &r.prepared.staged).collect();
            let claims: Vec<&[Claim]> = group.iter().map(|r| &r.prepared.claims[..]).collect();
            shared.engine.write_and_settle(&staged, &claims)
        };
        shared.counters.record(group.len(), started.elapsed());
        shared.unfinished.fetch_sub(group.len(), Ordering::AcqRel);
        // Claims are settled and the token released before any waiter runs: a caller who
        // learns of the commit finds its marks durable, and can commit again at once.
        drop(token);
        match written {
            Ok(outboxes) => {
                for (request, outbox) in group.drain(..).zip(outboxes) {
                    request
                        .done
                        .complete(Ok(CommitOutcome::Committed(Receipt { outbox })));
                }
            }
            Err(error) => {
                for request in group.drain(..) {
                    request.done.complete(Err(error.again()));
                }
            }
        }
    }
}
