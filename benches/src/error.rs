//! The one error type of the benchmark runner.

use std::fmt;
use std::io;

/// What went wrong in a run, and where.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The command line or configuration is wrong.
    Usage(String),
    /// A file-system or process operation of the runner itself failed.
    Io {
        /// What the runner was doing.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// An engine returned an error.
    Engine {
        /// The engine's name (`cairn`, `rocksdb`, ...).
        engine: &'static str,
        /// The operation (`put`, `get`, `open`, ...).
        op: &'static str,
        /// The engine's message.
        message: String,
    },
    /// A workload found something that cannot be (a key it wrote is missing).
    Check(String),
    /// A child process (one engine's run) failed or printed something unreadable.
    Child {
        /// The engine the child ran.
        engine: String,
        /// What happened.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m) => write!(f, "{m}"),
            Error::Io { what, source } => write!(f, "{what}: {source}"),
            Error::Engine {
                engine,
                op,
                message,
            } => write!(f, "{engine}: {op} failed: {message}"),
            Error::Check(m) => write!(f, "check failed: {m}"),
            Error::Child { engine, message } => write!(f, "{engine} run: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Shorthand for the runner's results.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an I/O error with what the runner was doing.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// Wraps an engine's error (any `Display`) with the engine and operation.
pub(crate) fn engine<E: fmt::Display>(
    engine: &'static str,
    op: &'static str,
) -> impl FnOnce(E) -> Error {
    move |e| Error::Engine {
        engine,
        op,
        message: e.to_string(),
    }
}
