//! The engine's one error type. Every variant says what went wrong and where;
//! mapping to protocol errors happens at the edge (the server), never here.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used across the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed. `op` names the call ("fsync",
    /// "append", "rename", ...), `path` the file it was made on.
    Io {
        op: &'static str,
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// Bytes read back from disk failed a checksum, a bound or a format check.
    Corruption {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    /// An earlier write, fsync or background job failed; the engine refuses
    /// writes until it is reopened (I/O errors are sticky, never retried).
    Poisoned { cause: Arc<Error> },
    /// The caller passed something the engine cannot accept.
    InvalidArgument(String),
    /// Another process (or another `Db` in this one) holds the directory lock.
    Locked { path: PathBuf },
    /// The database was closed.
    Closed,
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Error {
        Error::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    /// True when the error reports bad bytes read back from disk.
    pub fn is_corruption(&self) -> bool {
        match self {
            Error::Corruption { .. } => true,
            Error::Poisoned { cause } => cause.is_corruption(),
            _ => false,
        }
    }

    /// True when the engine has stopped accepting writes until reopened.
    pub fn is_poisoned(&self) -> bool {
        matches!(self, Error::Poisoned { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, source } => {
                write!(f, "I/O error during {op} on {}: {source}", path.display())
            }
            Error::Corruption {
                path,
                offset,
                reason,
            } => {
                write!(
                    f,
                    "corruption in {} at offset {offset}: {reason}",
                    path.display()
                )
            }
            Error::Poisoned { cause } => {
                write!(
                    f,
                    "engine refuses writes after an earlier failure (reopen to recover): {cause}"
                )
            }
            Error::InvalidArgument(msg) => write!(f, "invalid argument: {msg}"),
            Error::Locked { path } => {
                write!(
                    f,
                    "database directory is locked by another user: {}",
                    path.display()
                )
            }
            Error::Closed => write!(f, "database is closed"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source.as_ref()),
            Error::Poisoned { cause } => Some(cause.as_ref()),
            _ => None,
        }
    }
}
