//! Redis string commands, as a pure function.
//!
//! The tree follows a command's path: `parse` turns a request's arguments
//! into a typed [`Command`] (checking arity, options and numbers with
//! Redis's error texts); `stamp` makes its expiries absolute so it means
//! the same thing on every replica; `exec` runs it against a [`ReadState`]
//! at a given time and returns the reply and the [`Mutation`]s; `value` is
//! what the engine stores per key; `engine` connects all this to a real
//! [`cairn_engine::Db`]; `expiry` is the compaction filter that removes
//! expired keys from disk. `number` reads and writes numbers as Redis does.
//!
//! Execution never reads a clock and never does I/O, so it serves either
//! way of replicating: apply the (stamped) command on every replica, or
//! execute on the leader and replicate the mutations. See
//! `docs/commands.md`.
//!
//! ```
//! use cairn_server::command::{execute, Command, Mutation, ReadState, StateError, StoredValue};
//! use cairn_server::resp::Frame;
//!
//! struct Empty;
//! impl ReadState for Empty {
//!     fn get(&self, _key: &[u8]) -> Result<Option<StoredValue>, StateError> {
//!         Ok(None)
//!     }
//! }
//!
//! let args = vec![b"SET".to_vec(), b"k".to_vec(), b"v".to_vec(), b"EX".to_vec(), b"10".to_vec()];
//! let cmd = Command::parse(args).unwrap().stamp(1_000);
//! let out = execute(&cmd, &Empty, 1_000).unwrap();
//! assert_eq!(out.reply, Frame::Simple(b"OK".to_vec()));
//! let Mutation::Put { value, .. } = &out.mutations[0] else { panic!() };
//! assert_eq!(value.expire_at_ms.map(|t| t.get()), Some(11_000));
//! ```

mod engine;
mod error;
mod exec;
mod expiry;
mod number;
mod parse;
mod stamp;
mod value;

pub use engine::{EngineState, apply_mutations};
pub use error::{CommandError, ExecError, STRING_MAX_BYTES, StateError};
pub use exec::{Mutation, Outcome, ReadState, execute};
pub use expiry::ExpiryFilter;
pub use parse::{Command, ExpireCondition, Expiry, GetExTtl, SetCondition, SetTtl};
pub use value::{DecodeError, StoredValue, Value};
