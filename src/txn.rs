//! [`Transaction`]: record-and-mark, the atomic write.

use crate::claim::{Claim, checked_result};
use crate::commit::{Prepared, Ticket};
use crate::engine::{PendingSequence, Space, Unsettled};
use crate::error::{Error, Result};
use crate::id::{Fingerprint, MAX_ID_LEN, payload_fingerprint};
use crate::namespace::Namespace;
use crate::outcome::{CommitOutcome, Conflict, Outcome, SequenceConflict};
use crate::persist::{MarkValue, Offset, Row, Staged, offset_key, table_cf};
use crate::store::Store;
use bytes::Bytes;
use std::sync::Arc;

/// Marks, table rows, consumer offsets and outbox events, committed as one atomic write.
///
/// Made by [`Store::transaction`]. After any crash, all of it is on disk or none of it. If any
/// mark is a duplicate (or in flight), or any producer sequence is not the next one, nothing is
/// written and the outcome names those IDs or sequences.
///
/// ```
/// use dedupstore::{CommitOutcome, Store};
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
///
/// let mut txn = store.transaction();
/// txn.mark("payment-7")?
///     .put("balances", "alice", "90")?
///     .set_offset("payments", 0, 1_043)?
///     .outbox("{\"debited\": \"alice\"}");
/// match txn.commit()? {
///     CommitOutcome::Committed(receipt) => println!("outbox events {:?}", receipt.outbox),
///     refused => println!("nothing written: {refused:?}"),
/// }
/// assert_eq!(store.get("balances", "alice")?.as_deref(), Some(&b"90"[..]));
/// assert_eq!(store.offset("payments", 0)?, Some(1_043));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a transaction does nothing until it is committed or submitted"]
pub struct Transaction {
    /// A handle of its own, so a transaction can move into another thread or task.
    store: Store,
    marks: Vec<Marking>,
    /// Claims the transaction completes; dropped uncommitted, they are released.
    claims: Vec<Claim>,
    /// Producer sequences to accept, in the order given.
    sequences: Vec<(Bytes, u64)>,
    staged: Staged,
}

/// One mark (or claim completion) of a transaction.
#[derive(Debug)]
struct Marking {
    space: Arc<Space>,
    id: Bytes,
    fp: Fingerprint,
    payload: Option<u128>,
    result: Option<Bytes>,
    /// The token of the claim it completes.
    token: Option<u64>,
}

impl Store {
    /// Starts a record-and-mark [`Transaction`]: marks, table rows, offsets and outbox events
    /// committed as one atomic write.
    pub fn transaction(&self) -> Transaction {
        Transaction::new(self.clone())
    }
}

impl Transaction {
    pub(crate) fn new(store: Store) -> Self {
        Self {
            store,
            marks: Vec::new(),
            claims: Vec::new(),
            sequences: Vec::new(),
            staged: Staged::default(),
        }
    }

    /// Marks `id` as seen, if the transaction commits. Marking one ID twice marks it once.
    ///
    /// # Errors
    /// [`Error::InvalidId`](crate::Error::InvalidId), with the number of earlier `mark` calls
    /// as its position; the transaction is unchanged.
    pub fn mark(&mut self, id: impl AsRef<[u8]>) -> Result<&mut Self> {
        let space = Arc::clone(self.store.own_space());
        self.stage_mark(space, id.as_ref(), None)
    }

    /// [`mark`](Self::mark), keeping the fingerprint of the message's payload with the mark:
    /// the transaction is rejected with [`Outcome::Conflict`] if the ID was marked (or is
    /// claimed) with another payload. An ID marked twice keeps its first payload.
    ///
    /// # Errors
    /// As [`mark`](Self::mark).
    pub fn mark_payload(
        &mut self,
        id: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<&mut Self> {
        let space = Arc::clone(self.store.own_space());
        self.stage_mark(
            space,
            id.as_ref(),
            Some(payload_fingerprint(payload.as_ref())),
        )
    }

    /// [`mark`](Self::mark) in `namespace`: the ID is marked there, in that namespace's window,
    /// atomically with the rest of the transaction.
    ///
    /// ```
    /// use dedupstore::{CommitOutcome, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let orders = store.namespace("orders").open()?;
    /// let mut txn = store.transaction();
    /// txn.mark_in(&orders, "42")?.put("orders", "42", "shipped")?;
    /// assert!(matches!(txn.commit()?, CommitOutcome::Committed(_)));
    /// assert!(orders.contains("42")?);
    /// assert!(!store.contains("42")?, "the store's own IDs are another space");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// As [`mark`](Self::mark); [`Error::InvalidArgument`] for a namespace of another store,
    /// [`Error::NamespaceDropped`] for a dropped one.
    pub fn mark_in(&mut self, namespace: &Namespace, id: impl AsRef<[u8]>) -> Result<&mut Self> {
        let space = self.space_of(namespace)?;
        self.stage_mark(space, id.as_ref(), None)
    }

    /// [`mark_payload`](Self::mark_payload) in `namespace`.
    ///
    /// # Errors
    /// As [`mark_in`](Self::mark_in).
    pub fn mark_payload_in(
        &mut self,
        namespace: &Namespace,
        id: impl AsRef<[u8]>,
        payload: impl AsRef<[u8]>,
    ) -> Result<&mut Self> {
        let space = self.space_of(namespace)?;
        self.stage_mark(
            space,
            id.as_ref(),
            Some(payload_fingerprint(payload.as_ref())),
        )
    }

    fn space_of(&self, namespace: &Namespace) -> Result<Arc<Space>> {
        if !namespace.store().same_as(&self.store) {
            return Err(Error::InvalidArgument {
                what: "namespace",
                detail: "it belongs to another store".into(),
            });
        }
        Ok(Arc::clone(namespace.space()))
    }

    fn stage_mark(
        &mut self,
        space: Arc<Space>,
        id: &[u8],
        payload: Option<u128>,
    ) -> Result<&mut Self> {
        let fp = space.fingerprint(id, Some(self.marks.len()))?;
        self.marks.push(Marking {
            space,
            id: Bytes::copy_from_slice(id),
            fp,
            payload,
            result: None,
            token: None,
        });
        Ok(self)
    }

    /// Completes `claim` with `result` (at most [`MAX_RESULT_LEN`](crate::MAX_RESULT_LEN)
    /// bytes) if the transaction commits: the claim's effect, when it lives in this store, and
    /// its completion commit together. Dropped or rejected, the transaction releases the claim.
    /// If the claim's lease runs out and another caller takes its ID over before the commit,
    /// the transaction is rejected and names the ID.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for an over-long result or a
    /// claim of another store; the claim is then released and the transaction unchanged.
    pub fn complete(&mut self, claim: Claim, result: Option<&[u8]>) -> Result<&mut Self> {
        if !claim.is_of(&self.store) {
            return Err(Error::InvalidArgument {
                what: "claim",
                detail: "it was made by another store".into(),
            });
        }
        let result = checked_result(result)?;
        self.marks.push(Marking {
            space: Arc::clone(&claim.space),
            id: Bytes::copy_from_slice(claim.id()),
            fp: claim.fp,
            payload: claim.payload,
            result,
            token: Some(claim.token),
        });
        self.claims.push(claim);
        Ok(self)
    }

    /// Accepts sequence number `seq` of `producer`, if the transaction commits: as
    /// [`Store::accept`], atomically with the rest of the transaction. If it is not the
    /// producer's next sequence, nothing is written and the outcome is
    /// [`CommitOutcome::OutOfSequence`].
    ///
    /// One transaction may accept several sequences of a producer: taken in numeric order (a
    /// sequence given twice counts once), they must all be new and follow each other.
    ///
    /// ```
    /// use dedupstore::{CommitOutcome, SequenceOutcome, Store};
    /// # let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path())?;
    /// let mut txn = store.transaction();
    /// txn.accept("sensor-7", 0)?.accept("sensor-7", 1)?.put("readings", "sensor-7", "21.5")?;
    /// assert!(matches!(txn.commit()?, CommitOutcome::Committed(_)));
    ///
    /// let mut late = store.transaction();
    /// late.accept("sensor-7", 3)?.put("readings", "sensor-7", "22.0")?;
    /// match late.commit()? {
    ///     CommitOutcome::OutOfSequence(refused) => {
    ///         assert_eq!(refused[0].outcome, SequenceOutcome::Gap { expected: 2 });
    ///     }
    ///     other => panic!("{other:?}"),
    /// }
    /// assert_eq!(store.get("readings", "sensor-7")?.as_deref(), Some(&b"21.5"[..]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) unless `producer` is
    /// 1..=[`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes; the transaction is unchanged.
    pub fn accept(&mut self, producer: impl AsRef<[u8]>, seq: u64) -> Result<&mut Self> {
        let producer = producer.as_ref();
        check_producer(producer)?;
        self.sequences.push((Bytes::copy_from_slice(producer), seq));
        Ok(self)
    }

    /// Sets `key` to `value` in the consumer's table `table` (created on first use).
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName) unless `table` is 1..=64 ASCII letters,
    /// digits, `_` or `-`.
    pub fn put(
        &mut self,
        table: &str,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
    ) -> Result<&mut Self> {
        self.staged.rows.push(Row {
            cf: table_cf(table)?,
            key: key.as_ref().to_vec(),
            value: Some(value.as_ref().to_vec()),
        });
        Ok(self)
    }

    /// Deletes `key` from the consumer's table `table`.
    ///
    /// # Errors
    /// As [`put`](Self::put).
    pub fn delete(&mut self, table: &str, key: impl AsRef<[u8]>) -> Result<&mut Self> {
        self.staged.rows.push(Row {
            cf: table_cf(table)?,
            key: key.as_ref().to_vec(),
            value: None,
        });
        Ok(self)
    }

    /// Stores the consumer's offset in partition `partition` of stream `stream`, unless a higher
    /// one is stored: offsets never move backwards (a redelivered message committed after newer
    /// ones leaves the offset where they put it). [`reset_offset`](Self::reset_offset) moves one
    /// back.
    ///
    /// # Errors
    /// [`Error::InvalidName`](crate::Error::InvalidName) unless `stream` is 1..=255 bytes.
    pub fn set_offset(&mut self, stream: &str, partition: u32, offset: u64) -> Result<&mut Self> {
        self.stage_offset(stream, partition, offset, false)
    }

    /// Stores the consumer's offset in partition `partition` of stream `stream` as given, lower
    /// than the stored one or not: for rewinding a consumer on purpose.
    ///
    /// # Errors
    /// As [`set_offset`](Self::set_offset).
    pub fn reset_offset(&mut self, stream: &str, partition: u32, offset: u64) -> Result<&mut Self> {
        self.stage_offset(stream, partition, offset, true)
    }

    fn stage_offset(
        &mut self,
        stream: &str,
        partition: u32,
        value: u64,
        reset: bool,
    ) -> Result<&mut Self> {
        self.staged.offsets.push(Offset {
            key: offset_key(stream, partition)?,
            value,
            reset,
        });
        Ok(self)
    }

    /// Adds an event to the outbox. Events get sequence numbers in commit order.
    pub fn outbox(&mut self, payload: impl AsRef<[u8]>) -> &mut Self {
        self.staged
            .outbox
            .push(Bytes::copy_from_slice(payload.as_ref()));
        self
    }

    /// Commits and waits for the outcome. Uncontended, the calling thread writes the
    /// transaction itself; otherwise it joins the committer's next group, as
    /// [`submit`](Self::submit) then [`Ticket::wait`] would.
    ///
    /// # Errors
    /// An error reading the disk while checking the marks, or writing the transaction: then
    /// nothing of it is marked, the message must not be acked, and a failed write poisons the
    /// store ([`Error::Poisoned`](crate::Error::Poisoned) until reopened).
    pub fn commit(mut self) -> Result<CommitOutcome> {
        match self.prepare()? {
            Ok(prepared) => match self.store.committer().try_commit_now(&prepared) {
                Some(outcome) => outcome,
                None => queue(&self.store, prepared)?.wait(),
            },
            Err(refused) => Ok(refused),
        }
    }

    /// Checks and claims the marks now, then queues the write for the committer, which merges
    /// it with the other queued transactions into one write (and, with
    /// [`Durability::Synced`](crate::Durability::Synced), one fsync). One thread can keep many
    /// transactions in flight this way; they commit in the order they were submitted. Blocks
    /// only if thousands are already queued.
    ///
    /// While the ticket is pending, its marks and producers are in flight: concurrent checks of
    /// them answer [`Outcome::InFlight`] (or [`SequenceOutcome::InFlight`]), and transactions
    /// that share one are rejected.
    ///
    /// [`SequenceOutcome::InFlight`]: crate::SequenceOutcome::InFlight
    ///
    /// # Errors
    /// An error reading the disk while checking the marks (nothing is claimed), or
    /// [`Error::Poisoned`](crate::Error::Poisoned) if the committer has stopped.
    pub fn submit(mut self) -> Result<Ticket> {
        match self.prepare()? {
            Ok(prepared) => queue(&self.store, prepared),
            Err(refused) => Ok(Ticket::ready(Ok(refused))),
        }
    }

    /// Claims the marks, then the producers: the transaction ready to write, or the outcome that
    /// rejects it (then nothing stays claimed).
    fn prepare(&mut self) -> Result<Result<Prepared, CommitOutcome>> {
        let engine = self.store.engine();
        // Claims are taken in fingerprint order and stop at the first conflict, so of two
        // transactions that share IDs, the one that claims the smallest shared ID first gets
        // all of them: exactly one commits.
        let order = claim_order(&self.marks);
        // Dropped on any early return, `claims` releases what it claimed.
        let mut claims = Unsettled::new(engine, self.marks.len());
        let mut conflicts = Vec::new();
        for &i in &order {
            let m = &self.marks[i];
            // After a conflict, the remaining marks are only looked at, to name them all.
            let outcome = match (conflicts.is_empty(), m.token) {
                (true, Some(token)) => claims.complete(&m.space, m.fp, token, m.payload)?,
                (true, None) => claims.claim(&m.space, m.fp, m.payload)?,
                (false, _) => engine.check(&m.space, m.fp)?,
            };
            if outcome != Outcome::New {
                conflicts.push((i, outcome));
            }
        }
        if !conflicts.is_empty() {
            drop(claims);
            conflicts.sort_unstable_by_key(|c| c.0);
            return Ok(Err(CommitOutcome::Rejected(
                conflicts
                    .into_iter()
                    .map(|(i, outcome)| Conflict {
                        id: self.marks[i].id.clone(),
                        namespace: self.marks[i].space.name.clone(),
                        outcome,
                    })
                    .collect(),
            )));
        }
        let refused = self.accept_sequences(&mut claims);
        if !refused.is_empty() {
            drop(claims);
            return Ok(Err(CommitOutcome::OutOfSequence(refused)));
        }
        // Every mark was new, so each claimed one entry, in `order`.
        debug_assert_eq!(claims.claimed().marks.len(), order.len());
        let mut staged = std::mem::take(&mut self.staged);
        staged.sequences = claims
            .claimed()
            .sequences
            .iter()
            .map(PendingSequence::staged)
            .collect();
        staged.marks = order
            .iter()
            .zip(&claims.claimed().marks)
            .map(|(&i, c)| {
                let m = &self.marks[i];
                c.staged(MarkValue {
                    at: c.at,
                    payload: m.payload,
                    result: m.result.clone(),
                })
            })
            .collect();
        // Their leases became the pending marks: nothing is left to release.
        for claim in &mut self.claims {
            claim.ended = true;
        }
        Ok(Ok(Prepared {
            staged,
            claims: claims.into_claims(),
        }))
    }
}

/// Checks a producer's name: 1..=[`MAX_ID_LEN`] bytes, as an ID.
pub(crate) fn check_producer(producer: &[u8]) -> Result<()> {
    if producer.is_empty() || producer.len() > MAX_ID_LEN {
        return Err(Error::InvalidArgument {
            what: "producer",
            detail: format!("{} bytes, a producer is 1..={MAX_ID_LEN}", producer.len()),
        });
    }
    Ok(())
}

/// Hands a prepared transaction to the committer.
fn queue(store: &Store, prepared: Prepared) -> Result<Ticket> {
    store.committer().submit(prepared).map_err(|unsent| {
        store.engine().settle(&unsent, false);
        Error::Poisoned {
            cause: "the committer thread has stopped".into(),
        }
    })
}

impl Transaction {
    /// Claims each producer's sequences into `claims`, producers in byte order (one global
    /// order, as for marks) and each one's sequences in numeric order. Returns the sequences
    /// refused: after the first, the other producers are only looked at, to name them all.
    fn accept_sequences(&self, claims: &mut Unsettled<'_>) -> Vec<SequenceConflict> {
        let mut sequences = self.sequences.clone();
        sequences.sort_unstable();
        sequences.dedup();
        let mut refused = Vec::new();
        for run in sequences.chunk_by(|a, b| a.0 == b.0) {
            let producer = &run[0].0;
            let seqs: Vec<u64> = run.iter().map(|&(_, seq)| seq).collect();
            let judged = if refused.is_empty() {
                claims.accept(producer, &seqs)
            } else {
                self.store.engine().judge_sequences(producer, &seqs)
            };
            if let Err((seq, outcome)) = judged {
                refused.push(SequenceConflict {
                    producer: producer.clone(),
                    seq,
                    outcome,
                });
            }
        }
        refused
    }
}

/// The order in which a transaction claims its marks: by ID space and fingerprint, the same
/// global order for every transaction; an ID marked twice in one space appears once (the
/// completion of its claim if there is one, else its first mark).
fn claim_order(marks: &[Marking]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..marks.len()).collect();
    let key = |m: &Marking| (m.space.number(), m.fp.key());
    order.sort_by_key(|&i| (key(&marks[i]), marks[i].token.is_none()));
    order.dedup_by_key(|&mut i| key(&marks[i]));
    order
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("marks", &self.marks.len())
            .field("claims", &self.claims.len())
            .field("sequences", &self.sequences.len())
            .field("rows", &self.staged.rows.len())
            .field("offsets", &self.staged.offsets.len())
            .field("outbox", &self.staged.outbox.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two transactions that share IDs, marked in opposite orders, claim the shared IDs in the
    /// same order: the one that wins the first shared ID meets no claim of the other's later.
    #[test]
    fn shared_ids_are_claimed_in_one_global_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mark = |id: &str| Marking {
            space: Arc::clone(store.own_space()),
            id: Bytes::copy_from_slice(id.as_bytes()),
            fp: Fingerprint::of(0, id.as_bytes(), None).unwrap(),
            payload: None,
            result: None,
            token: None,
        };
        let one = [mark("x"), mark("own-1"), mark("y"), mark("z"), mark("y")];
        let two = [mark("z"), mark("y"), mark("own-2"), mark("x")];
        let shared = |marks: &[Marking]| -> Vec<Bytes> {
            claim_order(marks)
                .into_iter()
                .map(|i| marks[i].id.clone())
                .filter(|id| !id.starts_with(b"own"))
                .collect()
        };
        assert_eq!(shared(&one), shared(&two));
        assert_eq!(shared(&one).len(), 3, "an ID marked twice is claimed once");
    }
}
