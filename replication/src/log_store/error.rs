//! The log store's error type. Every variant says what went wrong and
//! where (segment file, offset, group); openraft sees it as a
//! `StorageError` carrying the same text.

use crate::types::{GroupId, NodeId};
use openraft::{AnyError, ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the shared Raft log store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum LogStoreError {
    /// An I/O call failed. `op` names the call ("fsync", "append", ...),
    /// `path` the file or directory.
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// Bytes read back from a segment failed a checksum, a bound or a format
    /// check, or recovery found the log inconsistent (a hole in a group's
    /// entries). Recovery stops rather than drop acknowledged data.
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// Recovery found a group whose entries are not contiguous.
    Hole { group: GroupId, reason: String },
    /// An earlier write or fsync failed; the store refuses all work until it
    /// is reopened (I/O errors are sticky, a failed fsync is never retried).
    Poisoned { cause: Arc<LogStoreError> },
    /// The caller asked for something the store cannot do.
    InvalidArgument { group: GroupId, reason: String },
    /// Another `SharedLog` holds the directory.
    Locked { path: PathBuf },
    /// The store was closed.
    Closed,
}

impl LogStoreError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogStoreError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        LogStoreError::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True when the store refuses work until reopened.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, LogStoreError::Poisoned { .. })
    }

    /// True when bytes on disk failed a check (also through a poison).
    pub fn is_corruption(&self) -> bool {
        match self {
            LogStoreError::Corrupt { .. } | LogStoreError::Hole { .. } => true,
            LogStoreError::Poisoned { cause } => cause.is_corruption(),
            _ => false,
        }
    }

    /// The error as openraft wants it, about `subject`, while doing `verb`.
    pub(crate) fn into_storage(
        self,
        subject: ErrorSubject<NodeId>,
        verb: ErrorVerb,
    ) -> StorageError<NodeId> {
        StorageIOError::new(subject, verb, AnyError::new(&self)).into()
    }

    /// Converts an engine error met while reading `path`.
    pub(crate) fn from_engine(err: cairn_engine::Error, path: impl Into<PathBuf>) -> Self {
        match err {
            cairn_engine::Error::Corruption {
                path,
                offset,
                reason,
            } => LogStoreError::Corrupt {
                path,
                offset,
                reason,
            },
            cairn_engine::Error::Io { op, path, source } => LogStoreError::Io { op, path, source },
            other => LogStoreError::Io {
                op: "read",
                path: path.into(),
                source: Arc::new(io::Error::other(other.to_string())),
            },
        }
    }
}

impl From<LogStoreError> for StorageError<NodeId> {
    fn from(err: LogStoreError) -> Self {
        let verb = if err.is_corruption() {
            ErrorVerb::Read
        } else {
            ErrorVerb::Write
        };
        err.into_storage(ErrorSubject::Store, verb)
    }
}

impl fmt::Display for LogStoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogStoreError::Io { op, path, source } => {
                write!(
                    f,
                    "raft log I/O error during {op} on {}: {source}",
                    path.display()
                )
            }
            LogStoreError::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "raft log corruption in {} at offset {offset}: {reason}",
                path.display()
            ),
            LogStoreError::Hole { group, reason } => {
                write!(f, "raft log of group {group} has a hole: {reason}")
            }
            LogStoreError::Poisoned { cause } => write!(
                f,
                "raft log store refuses work after an earlier failure (reopen to recover): {cause}"
            ),
            LogStoreError::InvalidArgument { group, reason } => {
                write!(f, "invalid raft log request for group {group}: {reason}")
            }
            LogStoreError::Locked { path } => {
                write!(
                    f,
                    "raft log directory is locked by another user: {}",
                    path.display()
                )
            }
            LogStoreError::Closed => write!(f, "raft log store is closed"),
        }
    }
}

impl std::error::Error for LogStoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LogStoreError::Io { source, .. } => Some(source.as_ref()),
            LogStoreError::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
