//! [`Namespace`]: an independent ID space inside a store, with its own window: per topic, per
//! tenant. The same ID in two namespaces (or in one and the store's own space) is two IDs.

use crate::claim::ClaimOutcome;
use crate::engine::{Space, Wanted};
use crate::error::Result;
use crate::id::payload_fingerprint;
use crate::outcome::Outcome;
use crate::settle::Settled;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// An independent dedup space inside a [`Store`]: its own IDs, window and in-memory tier,
/// sharing the store's disk, write-ahead log, transactions and memory for RocksDB.
///
/// Made by [`Store::namespace`]. It offers the store's dedup calls, each answered in this
/// namespace only; [`Transaction::mark_in`](crate::Transaction::mark_in) marks in it as part of
/// a transaction. A namespace lives on disk until [`Store::drop_namespace`] drops it, with all
/// its marks, and frees its disk. Cheap to clone; owns a handle of its store, so it can move
/// into other threads and tasks.
///
/// ```
/// use dedupstore::{Outcome, Store};
/// use std::time::Duration;
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let orders = store.namespace("orders").window(Duration::from_secs(3600)).open()?;
/// let refunds = store.namespace("refunds").window(Duration::from_secs(7 * 86_400)).open()?;
///
/// assert_eq!(orders.check_and_mark("42")?, Outcome::New);
/// assert_eq!(refunds.check_and_mark("42")?, Outcome::New, "another namespace, another ID");
/// assert!(matches!(orders.check_and_mark("42")?, Outcome::Duplicate { .. }));
///
/// assert!(store.drop_namespace("orders")?);
/// let orders = store.namespace("orders").open()?;
/// assert_eq!(orders.check_and_mark("42")?, Outcome::New, "dropped with its marks");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Namespace {
    store: Store,
    space: Arc<Space>,
}

/// Settings of a namespace; made by [`Store::namespace`].
///
/// A new namespace takes what is set here, and the defaults for the rest; an existing one keeps
/// what it was created with, and asking it for something else is an error.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct NamespaceBuilder {
    store: Store,
    name: String,
    wanted: Wanted,
}

impl Store {
    /// The namespace `name` (1..=64 ASCII letters, digits, `_` or `-`): created, durably, when
    /// [`open`](NamespaceBuilder::open) finds none of that name. See [`Namespace`].
    pub fn namespace(&self, name: &str) -> NamespaceBuilder {
        NamespaceBuilder {
            store: self.clone(),
            name: name.to_owned(),
            wanted: Wanted::default(),
        }
    }

    /// Drops namespace `name` with every mark in it, and deletes its column families, so its disk
    /// is freed. Returns whether it existed.
    ///
    /// Durable when this returns (its record is deleted with a synced write); a crash during the
    /// drop leaves column families that the next open deletes. Later calls through handles of
    /// the dropped namespace fail with [`Error::NamespaceDropped`](crate::Error::NamespaceDropped);
    /// writes of its marks already under way complete as if just before the drop. Opening the
    /// name again creates a new, empty namespace.
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName); an error writing to the store.
    pub fn drop_namespace(&self, name: &str) -> Result<bool> {
        self.engine().drop_namespace(name)
    }

    /// The names of the store's namespaces, in order.
    #[must_use]
    pub fn namespaces(&self) -> Vec<String> {
        self.engine()
            .namespaces
            .all()
            .iter()
            .filter_map(|s| s.name.clone())
            .collect()
    }
}

impl NamespaceBuilder {
    /// The namespace's retention window. Default: the store's window. Range as
    /// [`StoreBuilder::window`](crate::StoreBuilder::window).
    pub fn window(mut self, window: Duration) -> Self {
        self.wanted.window = Some(window);
        self
    }

    /// How many slots the window is divided into. Default: the store's setting. Range as
    /// [`StoreBuilder::slots`](crate::StoreBuilder::slots).
    pub fn slots(mut self, slots: u32) -> Self {
        self.wanted.slots = Some(slots);
        self
    }

    /// The most heap memory the namespace's in-memory tier takes, in bytes, on top of the store's
    /// [`memory_budget`](crate::StoreBuilder::memory_budget). Default 16 MiB; at least
    /// [`MIN_BUDGET_PER_STRIPE`](crate::MIN_BUDGET_PER_STRIPE) (64 KiB). Memory is taken as IDs
    /// come, not up front. Marks beyond it stay on disk and are read from there.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.wanted.memory_budget = Some(bytes);
        self
    }

    /// Opens the namespace, creating it (durably) if it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName) for a bad name;
    /// [`Error::InvalidConfig`](crate::Error::InvalidConfig) for a setting out of range, or one
    /// that differs from an existing namespace's; an error writing the new namespace's record.
    pub fn open(self) -> Result<Namespace> {
        let space = self.store.engine().namespace(&self.name, self.wanted)?;
        Ok(Namespace {
            store: self.store,
            space,
        })
    }
}

impl Namespace {
    /// The store the namespace is in.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn space(&self) -> &Arc<Space> {
        &self.space
    }

    /// The namespace's name.
    #[must_use]
    pub fn name(&self) -> &str {
        self.space.name.as_deref().unwrap_or_default()
    }

    /// The namespace's retention window.
    #[must_use]
    pub fn window(&self) -> Duration {
        Duration::from_millis(self.space.window.window_ms)
    }

    /// [`Store::check_and_mark`], in this namespace.
    ///
    /// # Errors
    /// As [`Store::check_and_mark`]; [`Error::NamespaceDropped`](crate::Error::NamespaceDropped).
    pub fn check_and_mark(&self, id: impl AsRef<[u8]>) -> Result<Outcome> {
        self.store.check_and_mark_in(&self.space, id.as_ref(), None)
    }

    /// [`Store::check_and_mark_payload`], in this namespace.
    ///
    /// # Errors
    /// As [`check_and_mark`](Self::check_and_mark).
    pub fn check_and_mark_payload(
        &self,
        id: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<Outcome> {
        let payload = payload_fingerprint(payload.as_ref());
        self.store
            .check_and_mark_in(&self.space, id.as_ref(), Some(payload))
    }

    /// [`Store::check_and_mark_batch`], in this namespace.
    ///
    /// # Errors
    /// As [`Store::check_and_mark_batch`];
    /// [`Error::NamespaceDropped`](crate::Error::NamespaceDropped).
    pub fn check_and_mark_batch<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<Outcome>> {
        self.store.check_and_mark_batch_in(&self.space, ids)
    }

    /// [`Store::contains`], in this namespace.
    ///
    /// # Errors
    /// As [`Store::contains`]; [`Error::NamespaceDropped`](crate::Error::NamespaceDropped).
    pub fn contains(&self, id: impl AsRef<[u8]>) -> Result<bool> {
        self.store.contains_in(&self.space, id.as_ref())
    }

    /// [`Store::contains_batch`], in this namespace.
    ///
    /// # Errors
    /// As [`contains`](Self::contains).
    pub fn contains_batch<I: AsRef<[u8]>>(&self, ids: &[I]) -> Result<Vec<bool>> {
        self.store.contains_batch_in(&self.space, ids)
    }

    /// [`Store::claim`], in this namespace.
    ///
    /// # Errors
    /// As [`Store::claim`]; [`Error::NamespaceDropped`](crate::Error::NamespaceDropped).
    pub fn claim(&self, id: impl AsRef<[u8]>, lease: Duration) -> Result<ClaimOutcome> {
        self.store.claim_in(&self.space, id.as_ref(), None, lease)
    }

    /// [`Store::claim_payload`], in this namespace.
    ///
    /// # Errors
    /// As [`claim`](Self::claim).
    pub fn claim_payload(
        &self,
        id: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
        lease: Duration,
    ) -> Result<ClaimOutcome> {
        let payload = payload_fingerprint(payload.as_ref());
        self.store
            .claim_in(&self.space, id.as_ref(), Some(payload), lease)
    }

    /// [`Store::wait_settled`], in this namespace.
    ///
    /// # Errors
    /// As [`Store::wait_settled`]; [`Error::NamespaceDropped`](crate::Error::NamespaceDropped).
    pub fn wait_settled(&self, id: impl AsRef<[u8]>, timeout: Duration) -> Result<bool> {
        self.store
            .wait_settled_in(&self.space, id.as_ref(), timeout)
    }

    /// [`Store::settled`], in this namespace.
    ///
    /// # Errors
    /// As [`wait_settled`](Self::wait_settled).
    pub fn settled(&self, id: impl AsRef<[u8]>) -> Result<Settled> {
        self.store.settled_in(&self.space, id.as_ref())
    }
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace")
            .field("name", &self.name())
            .field("window", &self.window())
            .finish_non_exhaustive()
    }
}
