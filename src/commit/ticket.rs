//! [`Ticket`]: a commit in flight, to wait on or `.await`, with no async runtime.

use super::Shared;
use crate::error::{Error, Result};
use crate::outcome::CommitOutcome;
use parking_lot::{Condvar, Mutex};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The longest a waiter spins before it sleeps.
pub(crate) const SPIN: Duration = Duration::from_micros(50);

/// Spins until `done()` or `limit` has passed; returns whether `done()` held.
pub(crate) fn spin_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        for _ in 0..64 {
            if done() {
                return true;
            }
            std::hint::spin_loop();
        }
        if start.elapsed() >= limit {
            return done();
        }
    }
}

/// A submitted transaction. [`wait`](Ticket::wait) blocks for its outcome; `.await` yields it
/// in any executor. Dropping a ticket does not cancel the commit.
#[must_use = "a ticket is how you learn whether the commit succeeded"]
pub struct Ticket {
    state: Arc<State>,
    /// The group committer, for `wait` to write the queue itself when the writer is free. Weak,
    /// so that a ticket kept after its store is dropped does not keep the database open.
    committer: Weak<Shared>,
    /// How long `wait` spins before it sleeps.
    spin: Duration,
}

#[derive(Default)]
struct State {
    /// Set once `slot.outcome` is; read without the lock while spinning.
    ready: AtomicBool,
    slot: Mutex<Slot>,
    done: Condvar,
}

#[derive(Default)]
struct Slot {
    outcome: Option<Result<CommitOutcome>>,
    waker: Option<Waker>,
    taken: bool,
}

/// The committer's end of a ticket. Dropped without completing (the committer stopped), it
/// completes the ticket with an error, so no waiter hangs.
pub(crate) struct Completion {
    state: Option<Arc<State>>,
}

impl Ticket {
    /// A pending ticket whose waiter spins for `spin` before it sleeps.
    pub(crate) fn new(spin: Duration, committer: Weak<Shared>) -> (Self, Completion) {
        let state = Arc::new(State::default());
        (
            Self {
                state: Arc::clone(&state),
                committer,
                spin,
            },
            Completion { state: Some(state) },
        )
    }

    /// A ticket that is already complete.
    pub(crate) fn ready(outcome: Result<CommitOutcome>) -> Self {
        let (ticket, completion) = Self::new(Duration::ZERO, Weak::new());
        completion.complete(outcome);
        ticket
    }

    /// Blocks until the commit is decided.
    ///
    /// With few transactions in flight and no write under way, the calling thread writes the
    /// queued group (its own transaction included) itself rather than wait for the committer
    /// thread: with [`Durability::Synced`](crate::Durability::Synced) that includes the fsync.
    /// Polling the ticket as a future never writes.
    ///
    /// # Errors
    /// As [`Transaction::commit`](crate::Transaction::commit).
    pub fn wait(self) -> Result<CommitOutcome> {
        // When commits complete within microseconds, spinning a little saves the wake-up of a
        // sleeping thread, which costs more than the write itself. Meanwhile, if the writer is
        // free, this thread writes the queue (its own transaction included) itself.
        let committer = self.committer.upgrade();
        spin_until(self.spin, || {
            if !self.is_done()
                && let Some(committer) = &committer
            {
                committer.write_for_waiter();
            }
            self.is_done()
        });
        drop(committer);
        let mut slot = self.state.slot.lock();
        loop {
            if let Some(outcome) = slot.take() {
                return outcome;
            }
            self.state.done.wait(&mut slot);
        }
    }

    /// Whether the outcome is known (`wait` would not block).
    #[must_use]
    pub fn is_done(&self) -> bool {
        self.state.ready.load(Ordering::Acquire)
    }
}

impl Future for Ticket {
    type Output = Result<CommitOutcome>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut slot = self.state.slot.lock();
        if let Some(outcome) = slot.take() {
            return Poll::Ready(outcome);
        }
        slot.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Slot {
    /// The outcome, once: a ticket polled or waited on after it returned its outcome gets an
    /// error instead of hanging.
    fn take(&mut self) -> Option<Result<CommitOutcome>> {
        if self.taken {
            return Some(Err(Error::Storage {
                context: "waiting on a ticket".into(),
                detail: "its outcome was already returned".into(),
            }));
        }
        let outcome = self.outcome.take()?;
        self.taken = true;
        Some(outcome)
    }
}

impl Completion {
    pub(crate) fn complete(mut self, outcome: Result<CommitOutcome>) {
        if let Some(state) = self.state.take() {
            state.complete(outcome);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            state.complete(Err(Error::Poisoned {
                cause: "the committer stopped before this transaction was written".into(),
            }));
        }
    }
}

impl State {
    fn complete(&self, outcome: Result<CommitOutcome>) {
        let waker = {
            let mut slot = self.slot.lock();
            slot.outcome = Some(outcome);
            self.ready.store(true, Ordering::Release);
            slot.waker.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            // A waker is the executor's code: if it panics, the committer must go on.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("done", &self.is_done())
            .finish()
    }
}
