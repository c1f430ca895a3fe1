//! Group commit: one committer thread, fed through a crossbeam channel, merges the queued
//! transactions into one `WriteBatch`: one write-ahead log write and, in `Synced`, one fsync
//! for the whole group. Then it settles each transaction's claims and completes its ticket.
//!
//! Two shortcuts save thread wake-ups, which cost more than a buffered write:
//! - a blocking commit with nothing queued or being written skips the queue: the caller writes
//!   its transaction itself, and it does so only while no submitted transaction is unfinished;
//! - a caller waiting on a ticket, finding the writer free and few transactions in flight, writes
//!   the queued group itself instead of waiting for the committer to wake, write and wake it
//!   back. While callers do this, the committer only looks in now and then, and steps in if they
//!   stall.
//!
//! One writer token serialises every write, and the queue is only ever taken from under it,
//! oldest first, so whoever writes a group, commits from one thread never overtake each other.

mod ticket;

pub(crate) use ticket::Completion;
pub use ticket::Ticket;
use ticket::{SPIN, spin_until};

use crate::engine::{Claimed, Engine};
use crate::error::{Error, Result};
use crate::outcome::{CommitOutcome, Receipt};
use crate::persist::Staged;
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError};
use parking_lot::{Mutex, MutexGuard};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The most transactions merged into one write.
const MAX_GROUP: usize = 512;
/// The most unfinished transactions (queued or being written) with which a waiting caller writes
/// the queue itself. With more in flight, the queue is the committer's: it keeps the committer
/// writing while the callers prepare more, on another core.
const WAITER_WRITES_UP_TO: usize = 16;
/// While waiting callers write the queue, the committer checks that they still do after naps
/// that double from the first to the longest while they do: a check costs a thread wake-up.
const NAP_MIN: Duration = Duration::from_micros(50);
const NAP_MAX: Duration = Duration::from_millis(1);

/// A transaction ready to be written: its writes and what it claimed.
pub(crate) struct Prepared {
    pub staged: Staged,
    pub claims: Claimed,
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

/// What the committer thread, direct writers and waiting callers share.
pub(crate) struct Shared {
    engine: Arc<Engine>,
    /// The queue. Only the holder of `writer` takes from it, so groups are written in the
    /// order their transactions were queued, whoever writes them.
    receiver: Receiver<Request>,
    /// Held across every write of a transaction: by the committer for a group, or by a direct
    /// writer.
    writer: Mutex<()>,
    /// Transactions submitted to the queue and not yet written.
    unfinished: AtomicUsize,
    /// Whether the last group was written by a waiting caller rather than by the committer.
    waiters_writing: AtomicBool,
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
    /// Starts the committer of `engine`, with room for `queued` transactions (`submit` blocks
    /// beyond; the queue's slots are allocated up front).
    pub(crate) fn start(engine: Arc<Engine>, queued: usize) -> Result<Self> {
        let (sender, receiver) = crossbeam_channel::bounded(queued);
        let shared = Arc::new(Shared {
            engine,
            receiver,
            writer: Mutex::new(()),
            unfinished: AtomicUsize::new(0),
            waiters_writing: AtomicBool::new(false),
            counters: Counters::default(),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("dedupstore-commit".into())
            .spawn(move || run(&thread_shared))
            .map_err(|e| Error::io("starting the committer thread", e))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            shared,
        })
    }

    /// Queues a prepared transaction for the committer. Gives its claims back if the committer
    /// has stopped.
    pub(crate) fn submit(&self, prepared: Prepared) -> Result<Ticket, Claimed> {
        let Some(sender) = &self.sender else {
            return Err(prepared.claims);
        };
        let (ticket, done) = Ticket::new(self.spin_hint(), Arc::downgrade(&self.shared));
        self.shared.unfinished.fetch_add(1, Ordering::AcqRel);
        sender.send(Request { prepared, done }).map_err(|unsent| {
            self.shared.unfinished.fetch_sub(1, Ordering::AcqRel);
            unsent.into_inner().prepared.claims
        })?;
        Ok(ticket)
    }

    /// Writes a prepared transaction in the caller's thread if nothing is queued or being
    /// written; otherwise returns `None`, and it is the caller's to submit.
    pub(crate) fn try_commit_now(&self, prepared: &Prepared) -> Option<Result<CommitOutcome>> {
        let token = self.shared.writer.try_lock()?;
        if self.shared.unfinished.load(Ordering::Acquire) != 0 {
            return None;
        }
        let started = Instant::now();
        let written = self
            .shared
            .engine
            .write_and_settle(&[&prepared.staged], &[&prepared.claims]);
        self.shared.counters.record(1, started.elapsed());
        drop(token);
        self.shared.engine.cold.maintain();
        Some(written.map(|mut outboxes| {
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

impl Shared {
    /// Called by a caller waiting on a ticket: writes the queue in the caller's thread if the
    /// writer is free and few transactions are in flight.
    pub(crate) fn write_for_waiter(&self) {
        if self.unfinished.load(Ordering::Acquire) > WAITER_WRITES_UP_TO {
            return;
        }
        if let Some(token) = self.writer.try_lock() {
            self.write_queued(token, true);
        }
    }

    /// Takes what is queued (oldest first, at most [`MAX_GROUP`]) and writes it as one group,
    /// holding `token` until the claims are settled. Returns `false` once the queue is empty and
    /// every sender is gone.
    fn write_queued(&self, token: MutexGuard<'_, ()>, by_waiter: bool) -> bool {
        let mut group = Vec::with_capacity(self.receiver.len().min(MAX_GROUP));
        let mut open = true;
        while group.len() < MAX_GROUP {
            match self.receiver.try_recv() {
                Ok(request) => group.push(request),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if !group.is_empty() {
            self.waiters_writing.store(by_waiter, Ordering::Relaxed);
            self.write_group(token, group);
        }
        open
    }

    fn write_group(&self, token: MutexGuard<'_, ()>, group: Vec<Request>) {
        let started = Instant::now();
        // No longer queued: whatever becomes of the write (an error, a panic caught below it),
        // the count must not keep direct writers out. The token keeps them out meanwhile.
        self.unfinished.fetch_sub(group.len(), Ordering::AcqRel);
        let written = {
            let staged: Vec<&Staged> = group.iter().map(|r| &r.prepared.staged).collect();
            let claims: Vec<&Claimed> = group.iter().map(|r| &r.prepared.claims).collect();
            self.engine.write_and_settle(&staged, &claims)
        };
        self.counters.record(group.len(), started.elapsed());
        // Claims are settled and the token released before any waiter runs: a caller who
        // learns of the commit finds its marks durable, and can commit again at once.
        drop(token);
        match written {
            Ok(outboxes) => {
                for (request, outbox) in group.into_iter().zip(outboxes) {
                    request
                        .done
                        .complete(Ok(CommitOutcome::Committed(Receipt { outbox })));
                }
            }
            Err(error) => {
                for request in group {
                    request.done.complete(Err(error.again()));
                }
            }
        }
        self.engine.cold.maintain();
    }
}

fn run(shared: &Shared) {
    let mut ready = Select::new();
    ready.recv(&shared.receiver);
    let mut nap = NAP_MIN;
    loop {
        if shared.waiters_writing.load(Ordering::Relaxed) {
            // Callers waiting on tickets have been writing the queue themselves: look again
            // after a nap, longer each time they kept up, and step in only if they stalled.
            // Napping (rather than waiting on the channel) spares each `submit` the cost of
            // waking this thread.
            let before = shared.counters.groups.load(Ordering::Relaxed);
            std::thread::sleep(nap);
            let progressed = shared.counters.groups.load(Ordering::Relaxed) != before
                || shared.writer.is_locked();
            if progressed {
                nap = (nap * 2).min(NAP_MAX);
                continue;
            }
            nap = NAP_MIN;
            if shared.receiver.is_empty() {
                // Idle: wait on the channel from now on.
                shared.waiters_writing.store(false, Ordering::Relaxed);
                continue;
            }
        } else if !spin_until(SPIN, || !shared.receiver.is_empty()) {
            // Waits for a request without taking it: requests are taken under the token, by
            // this thread or by a waiting caller who got there first.
            ready.ready();
        }
        let token = shared.writer.lock();
        if !shared.write_queued(token, false) {
            return;
        }
    }
}
