//! Group commit: one committer thread, fed through a crossbeam channel, merges the queued
//! transactions into one `WriteBatch`: one write-ahead log write and, in `Synced`, one fsync
//! for the whole group. Then it settles each transaction's claims and completes its ticket.

mod ticket;

pub(crate) use ticket::Completion;
pub use ticket::Ticket;

use crate::engine::{Claim, Engine};
use crate::error::{Error, Result};
use crate::persist::Staged;
use crate::txn::{CommitOutcome, Receipt};
use crossbeam_channel::{Receiver, Sender};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

/// The most transactions merged into one write.
const MAX_GROUP: usize = 512;
/// The most transactions queued; `submit` blocks beyond it.
const MAX_QUEUED: usize = 8_192;

/// A transaction handed to the committer.
pub(crate) struct Request {
    pub staged: Staged,
    pub claims: Vec<Claim>,
    pub done: Completion,
}

pub(crate) struct Committer {
    sender: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

/// Group sizes, for [`Stats`](crate::Stats).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub groups: AtomicU64,
    pub transactions: AtomicU64,
    pub largest: AtomicU64,
}

impl Committer {
    pub(crate) fn start(engine: Arc<Engine>) -> Result<Self> {
        let (sender, receiver) = crossbeam_channel::bounded(MAX_QUEUED);
        let counters = Arc::new(Counters::default());
        let thread_counters = Arc::clone(&counters);
        let thread = std::thread::Builder::new()
            .name("dedupstore-commit".into())
            .spawn(move || run(&engine, &receiver, &thread_counters))
            .map_err(|e| Error::io("starting the committer thread", e))?;
        Ok(Self {
            sender: Some(sender),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues `request`; gives its claims back if the committer has stopped.
    pub(crate) fn submit(&self, request: Request) -> Result<(), Vec<Claim>> {
        match &self.sender {
            Some(sender) => sender
                .send(request)
                .map_err(|unsent| unsent.into_inner().claims),
            None => Err(request.claims),
        }
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.counters
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

fn run(engine: &Engine, receiver: &Receiver<Request>, counters: &Counters) {
    let mut group: Vec<Request> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = receiver.recv() {
        group.push(first);
        group.extend(receiver.try_iter().take(MAX_GROUP - 1));
        let written = {
            let staged: Vec<&Staged> = group.iter().map(|r| &r.staged).collect();
            engine.cold.write_staged(&staged)
        };
        let size = group.len() as u64;
        counters.groups.fetch_add(1, Ordering::Relaxed);
        counters.transactions.fetch_add(size, Ordering::Relaxed);
        counters.largest.fetch_max(size, Ordering::Relaxed);
        match written {
            Ok(outboxes) => {
                for (request, outbox) in group.drain(..).zip(outboxes) {
                    // Settled before completion: a caller who learns of the commit finds its
                    // marks durable.
                    engine.settle(&request.claims, true);
                    request
                        .done
                        .complete(Ok(CommitOutcome::Committed(Receipt { outbox })));
                }
            }
            Err(error) => {
                for request in group.drain(..) {
                    engine.settle(&request.claims, false);
                    request.done.complete(Err(error.again()));
                }
            }
        }
    }
}
