//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant saying what and where.
///
/// No input, file content or I/O failure makes the library panic: it returns one of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An ID was empty or longer than [`MAX_ID_LEN`](crate::MAX_ID_LEN) bytes. Nothing was written.
    #[error("invalid id{}: {len} bytes, an id is 1..=4096 bytes", position.map(|p| format!(" at batch position {p}")).unwrap_or_default())]
    InvalidId {
        /// Where in a batch the offending ID sits (`None` for single-ID calls).
        position: Option<usize>,
        /// The length of the offending ID.
        len: usize,
    },

    /// A table, stream or namespace name is empty, too long, or has characters it may not have.
    #[error("invalid {what} name {name:?}: {detail}")]
    InvalidName {
        /// `"table"`, `"stream"` or `"namespace"`.
        what: &'static str,
        /// The offending name.
        name: String,
        /// What a valid name is.
        detail: String,
    },

    /// An argument other than an ID is out of range: a claim's lease, a stored result.
    /// Nothing was written.
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// The argument.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// A [`Claim`](crate::Claim)'s lease ran out and another caller took its ID over: the
    /// holder's completion or extension did nothing. The effect may have run twice; whether the
    /// other caller completed the ID is in `completed`.
    #[error("the claim's lease ran out and another caller {}", if *completed { "completed its id" } else { "holds its id" })]
    ClaimLost {
        /// Whether the ID is marked (by the caller that took it over), rather than held.
        completed: bool,
    },

    /// The namespace was dropped (by [`Store::drop_namespace`](crate::Store::drop_namespace))
    /// after this handle was opened. Nothing was done; open the namespace again to use a new,
    /// empty one of that name.
    #[error("namespace {name:?} was dropped")]
    NamespaceDropped {
        /// The namespace's name.
        name: String,
    },

    /// A builder setting is out of range, or contradicts the settings the store was created with.
    #[error("invalid setting `{what}`: {detail}")]
    InvalidConfig {
        /// The setting.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// The directory is in use by another open store, in this process or another.
    #[error("{}: the store is already open (locked by another `Store`)", path.display())]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },

    /// The directory holds something this version cannot open: a store written by another
    /// format version, some other RocksDB database, or unrelated files.
    #[error("{}: incompatible format: found {found}, expected {expected}", path.display())]
    IncompatibleFormat {
        /// The store's directory.
        path: PathBuf,
        /// What the directory holds.
        found: String,
        /// What this version reads.
        expected: String,
    },

    /// Stored data failed a consistency check.
    #[error("corruption in {what}: {detail}")]
    Corruption {
        /// Which record or file.
        what: String,
        /// What was wrong with it.
        detail: String,
    },

    /// An operating-system I/O error (a full disk reports [`io::ErrorKind::StorageFull`]).
    #[error("{context}: {source}")]
    Io {
        /// What the store was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// An earlier write failed, so the store refuses every write until it is reopened.
    ///
    /// A failed write (or fsync) may or may not have reached the disk; writing on after it could
    /// make later writes durable while it is not, so the store stops. Reopening recovers the
    /// last consistent state.
    #[error("the store refuses writes after an earlier write failed ({cause}); reopen it")]
    Poisoned {
        /// The failure that poisoned the store.
        cause: String,
    },

    /// A checkpoint destination ([`Checkpoints`](crate::checkpoint::Checkpoints)) failed: an
    /// object store that could not be reached, listed, read or written.
    #[error("{context}: {detail}")]
    CheckpointStore {
        /// What the store was doing, and where.
        context: String,
        /// The object store's message.
        detail: String,
    },

    /// A broker client refused an operation (a seek or a resume of the `kafka` feature's
    /// rebalance wiring).
    #[error("{context}: {detail}")]
    Broker {
        /// What was being done, and to which partition.
        context: String,
        /// The client's message.
        detail: String,
    },

    /// An operation was given up because its caller asked (a restore of a partition that was
    /// revoked meanwhile). Nothing of it is left.
    #[error("{what}: cancelled")]
    Cancelled {
        /// What was given up.
        what: String,
    },

    /// RocksDB refused an operation for a reason that is neither I/O nor corruption.
    #[error("{context}: {detail}")]
    Storage {
        /// What the store was doing.
        context: String,
        /// RocksDB's message.
        detail: String,
    },
}

impl Error {
    /// Classifies a RocksDB error raised while doing `context`.
    pub(crate) fn rocks(context: impl Into<String>, err: &rocksdb::Error) -> Self {
        let context = context.into();
        let detail = err.as_ref().to_owned();
        match err.kind() {
            rocksdb::ErrorKind::Corruption => Error::Corruption {
                what: context,
                detail,
            },
            rocksdb::ErrorKind::IOError => {
                let kind = if detail.contains("No space left") {
                    io::ErrorKind::StorageFull
                } else {
                    io::ErrorKind::Other
                };
                Error::Io {
                    context,
                    source: io::Error::new(kind, detail),
                }
            }
            _ => Error::Storage { context, detail },
        }
    }

    /// The same error again, for another caller of a failed group commit.
    pub(crate) fn again(&self) -> Self {
        match self {
            Error::Io { context, source } => Error::Io {
                context: context.clone(),
                source: io::Error::new(source.kind(), source.to_string()),
            },
            Error::Corruption { what, detail } => Error::Corruption {
                what: what.clone(),
                detail: detail.clone(),
            },
            Error::Poisoned { cause } => Error::Poisoned {
                cause: cause.clone(),
            },
            other => Error::Storage {
                context: "committing a group of transactions".into(),
                detail: other.to_string(),
            },
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
