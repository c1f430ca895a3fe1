//! Waiting for an ID in flight to settle, blocking ([`Store::wait_settled`]) or in any async
//! runtime ([`Store::settled`]), instead of spinning on [`Outcome::InFlight`](crate::Outcome).

use crate::engine::{Flight, Space};
use crate::error::Result;
use crate::id::Fingerprint;
use crate::store::Store;
use event_listener::{EventListener, Listener};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

impl Store {
    /// Blocks until `id` is no longer in flight, or `timeout` has passed; returns whether it
    /// settled.
    ///
    /// An ID is in flight while a write that marks it has not returned, or while a
    /// [claim](Store::claim) on it is held. It settles when the write returns, or the claim is
    /// completed, released or runs out. Then ask again: the other caller's success answers
    /// `Duplicate` (or `Completed`), its failure `New` (or `Acquired`), and a third caller may
    /// have taken the ID in between (`InFlight` again).
    ///
    /// ```
    /// use dedupstore::{Outcome, Store};
    /// use std::time::Duration;
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let outcome = loop {
    ///     match store.check_and_mark("msg-1")? {
    ///         Outcome::InFlight => {
    ///             store.wait_settled("msg-1", Duration::from_secs(5))?;
    ///         }
    ///         settled => break settled,
    ///     }
    /// };
    /// assert_eq!(outcome, Outcome::New);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId).
    pub fn wait_settled(&self, id: impl AsRef<[u8]>, timeout: Duration) -> Result<bool> {
        self.wait_settled_in(self.own_space(), id.as_ref(), timeout)
    }

    /// [`wait_settled`](Self::wait_settled) in `space`.
    pub(crate) fn wait_settled_in(
        &self,
        space: &Space,
        id: &[u8],
        timeout: Duration,
    ) -> Result<bool> {
        let engine = self.engine();
        let fp = space.fingerprint(id, None)?;
        let deadline = Instant::now().checked_add(timeout);
        loop {
            // Listen first, then look, so that a change between the two is not missed.
            let listener = space.hot.settled(fp).listen();
            let lease_end = match engine.flight(space, fp) {
                Flight::Settled => return Ok(true),
                Flight::Writing => None,
                // A lease that runs out notifies nobody: wake at its end (and a millisecond,
                // the store clock's resolution) to look again.
                Flight::Held { until } => Instant::now().checked_add(Duration::from_millis(
                    until.saturating_sub(engine.now_millis()).saturating_add(1),
                )),
            };
            let wake = match (deadline, lease_end) {
                (Some(d), Some(l)) => Some(d.min(l)),
                (d, l) => d.or(l),
            };
            match wake {
                Some(wake) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        return Ok(false);
                    }
                    listener.wait_deadline(wake);
                }
                None => {
                    listener.wait();
                }
            }
        }
    }

    /// A future that completes once `id` is no longer in flight: the async form of
    /// [`wait_settled`](Self::wait_settled), for any executor (it needs no runtime).
    ///
    /// A write in flight always completes it when it returns, and so does a claim completed or
    /// released. A lease that runs out wakes nobody, though: race the future against your
    /// runtime's timer until [`ClaimOutcome::InProgress`](crate::ClaimOutcome)'s `until`, or
    /// give it a timeout.
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId).
    pub fn settled(&self, id: impl AsRef<[u8]>) -> Result<Settled> {
        self.settled_in(self.own_space(), id.as_ref())
    }

    /// [`settled`](Self::settled) in `space`.
    pub(crate) fn settled_in(&self, space: &Arc<Space>, id: &[u8]) -> Result<Settled> {
        Ok(Settled {
            fp: space.fingerprint(id, None)?,
            store: self.clone(),
            space: Arc::clone(space),
            listener: None,
        })
    }
}

/// An ID in flight, to `.await` until it settles; made by [`Store::settled`].
#[must_use = "futures do nothing unless awaited"]
pub struct Settled {
    store: Store,
    space: Arc<Space>,
    fp: Fingerprint,
    listener: Option<EventListener>,
}

impl Future for Settled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            if let Some(listener) = this.listener.as_mut() {
                if Pin::new(listener).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.listener = None;
            }
            let listener = this.space.hot.settled(this.fp).listen();
            match this.store.engine().flight(&this.space, this.fp) {
                Flight::Settled => return Poll::Ready(()),
                Flight::Writing | Flight::Held { .. } => this.listener = Some(listener),
            }
        }
    }
}

impl std::fmt::Debug for Settled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settled").finish_non_exhaustive()
    }
}
