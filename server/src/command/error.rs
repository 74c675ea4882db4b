//! What can go wrong with a command, and how Redis words it.
//!
//! Errors stay typed inside the crate; [`CommandError::to_redis_error`] and
//! [`ExecError::to_redis_error`] give the reply text at the edge.

use std::fmt;

use super::value::DecodeError;

/// The largest string a command may build: Redis's default
/// `proto-max-bulk-len`, 512 MiB.
pub const STRING_MAX_BYTES: u64 = 512 * 1024 * 1024;

/// Longest command name, and most argument bytes, quoted in an
/// unknown-command reply (Redis's 128).
const UNKNOWN_QUOTE_MAX_BYTES: usize = 128;

/// A request that is not a well-formed command. Found by
/// [`Command::parse`](super::Command::parse) from the arguments alone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CommandError {
    /// No arguments at all. Redis never replies to an empty request: the
    /// server should skip it before parsing (the codec already does).
    Empty,
    /// The command name is not one Cairn knows. Holds the request as sent.
    Unknown { name: Vec<u8>, args: Vec<Vec<u8>> },
    /// Too few or too many arguments; `command` is the lower-case name.
    WrongArity { command: &'static str },
    /// An option that does not exist or cannot be combined with another.
    Syntax,
    /// An argument that must be a 64-bit integer is not one.
    NotAnInteger,
    /// An argument that must be a float is not one (or is NaN).
    NotAFloat,
    /// An expiry that is not positive, or overflows in milliseconds.
    InvalidExpireTime { command: &'static str },
    /// DECRBY by `i64::MIN`, whose negation does not fit.
    DecrementOverflow,
    /// A negative SETRANGE offset.
    OffsetOutOfRange,
    /// An EXPIRE option other than NX, XX, GT, LT.
    UnsupportedOption { option: Vec<u8> },
    /// EXPIRE with NX and one of XX, GT, LT.
    NxWithXxGtLt,
    /// EXPIRE with both GT and LT.
    GtWithLt,
}

impl CommandError {
    /// The error reply Redis sends, without the leading `-`.
    pub fn to_redis_error(&self) -> Vec<u8> {
        match self {
            Self::Empty => b"ERR empty command".to_vec(),
            Self::Unknown { name, args } => unknown_command(name, args),
            Self::WrongArity { command } => {
                format!("ERR wrong number of arguments for '{command}' command").into_bytes()
            }
            Self::Syntax => b"ERR syntax error".to_vec(),
            Self::NotAnInteger => b"ERR value is not an integer or out of range".to_vec(),
            Self::NotAFloat => b"ERR value is not a valid float".to_vec(),
            Self::InvalidExpireTime { command } => {
                format!("ERR invalid expire time in '{command}' command").into_bytes()
            }
            Self::DecrementOverflow => b"ERR decrement would overflow".to_vec(),
            Self::OffsetOutOfRange => b"ERR offset is out of range".to_vec(),
            Self::UnsupportedOption { option } => {
                let mut out = b"ERR Unsupported option ".to_vec();
                out.extend_from_slice(option);
                out
            }
            Self::NxWithXxGtLt => {
                b"ERR NX and XX, GT or LT options at the same time are not compatible".to_vec()
            }
            Self::GtWithLt => b"ERR GT and LT options at the same time are not compatible".to_vec(),
        }
    }
}

/// Redis's `unknown command '<name>', with args beginning with: '<a>' '<b>' `:
/// the name cut at 128 bytes, then arguments quoted one by one while fewer
/// than 128 bytes are written, the last cut to fit.
fn unknown_command(name: &[u8], args: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"ERR unknown command '".to_vec();
    out.extend(name.iter().take(UNKNOWN_QUOTE_MAX_BYTES));
    out.extend_from_slice(b"', with args beginning with: ");
    let mut quoted = Vec::new();
    for arg in args {
        if quoted.len() >= UNKNOWN_QUOTE_MAX_BYTES {
            break;
        }
        let room = UNKNOWN_QUOTE_MAX_BYTES - quoted.len();
        quoted.push(b'\'');
        quoted.extend(arg.iter().take(room));
        quoted.extend_from_slice(b"' ");
    }
    out.extend_from_slice(&quoted);
    out
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_redis_error()))
    }
}

impl std::error::Error for CommandError {}

/// The state a command reads could not be read.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// The engine failed (I/O, corruption, a poisoned database).
    Engine(cairn_engine::Error),
    /// The bytes stored for `key` are not a value this version reads.
    Corrupt { key: Vec<u8>, error: DecodeError },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Engine(e) => write!(f, "engine: {e}"),
            Self::Corrupt { key, error } => {
                write!(
                    f,
                    "value of key {:?}: {error}",
                    String::from_utf8_lossy(key)
                )
            }
        }
    }
}

impl std::error::Error for StateError {}

/// A command that could not run. All but [`ExecError::State`] are the
/// client's to see, as Redis words them; none of them leaves mutations.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecError {
    /// A relative expiry that overflows once added to the current time.
    InvalidExpireTime { command: &'static str },
    /// INCR and friends on a value that is not a 64-bit integer.
    NotAnInteger,
    /// INCRBYFLOAT on a value that is not a float.
    NotAFloat,
    /// INCR and friends past `i64`'s range.
    IncrementOverflow,
    /// INCRBYFLOAT whose result is NaN or infinite.
    NanOrInfinity,
    /// APPEND or SETRANGE would build a string over [`STRING_MAX_BYTES`].
    StringTooLong,
    /// Reading the state failed: not the client's fault, and the command
    /// did not run.
    State(StateError),
}

impl ExecError {
    /// The error reply to send, without the leading `-`.
    pub fn to_redis_error(&self) -> Vec<u8> {
        match self {
            Self::InvalidExpireTime { command } => {
                format!("ERR invalid expire time in '{command}' command").into_bytes()
            }
            Self::NotAnInteger => b"ERR value is not an integer or out of range".to_vec(),
            Self::NotAFloat => b"ERR value is not a valid float".to_vec(),
            Self::IncrementOverflow => b"ERR increment or decrement would overflow".to_vec(),
            Self::NanOrInfinity => b"ERR increment would produce NaN or Infinity".to_vec(),
            Self::StringTooLong => {
                b"ERR string exceeds maximum allowed size (proto-max-bulk-len)".to_vec()
            }
            Self::State(e) => format!("ERR storage failure: {e}").into_bytes(),
        }
    }
}

impl From<StateError> for ExecError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_redis_error()))
    }
}

impl std::error::Error for ExecError {}
