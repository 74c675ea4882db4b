//! The Redis serialization protocol (RESP2 and RESP3), as bytes in and out.
//!
//! The tree follows the data path: `line` reads the CRLF-terminated lines
//! every frame starts with, `decode` turns bytes into any [`Frame`] (replies,
//! and whatever a peer sends), `command` is the narrower request view a server
//! reads clients through (a multibulk of bulk strings, or an inline line split
//! by `inline`), `encode` writes frames for a RESP2 or RESP3 client. `limits`
//! bounds every length before anything is allocated; `error` says what was
//! wrong and where, and how Redis words it.
//!
//! Decoding never panics and never trusts a length: a length is checked
//! against [`Limits`] before it is used, and an aggregate's preallocation is
//! bounded by the bytes actually buffered, so `*1000000000\r\n` costs nothing.

mod command;
mod decode;
mod encode;
mod error;
mod frame;
mod inline;
mod limits;
mod line;

pub use command::{Args, CommandDecoder, decode_command};
pub use decode::{Decoder, decode};
pub use error::ProtocolError;
pub use frame::{Frame, RespVersion};
pub use limits::Limits;
pub(crate) use line::parse_i64;
