//! Cairn's Redis-protocol front. For now this crate holds the RESP codec
//! (`resp`) and the command layer (`command`: Redis string commands as a
//! pure function of command, state and time, see `docs/commands.md`). The
//! codec has frames, a streaming decoder with bounded allocation, the request
//! view the server will read commands through (multibulk or inline), and an
//! encoder for RESP2 and RESP3 clients. See `docs/protocol.md` for what the
//! codec accepts, its limits and how RESP3 replies degrade for RESP2 clients.
//! The `cairn` binary, the router and the cluster map come with the server.
//!
//! ```
//! use cairn_server::resp::{decode_command, Frame, Limits, RespVersion};
//!
//! # fn main() -> Result<(), cairn_server::resp::ProtocolError> {
//! let buf = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
//! let (args, used) = decode_command(buf, &Limits::default())?.unwrap_or_default();
//! assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
//! let (inline, _) = decode_command(&buf[used..], &Limits::default())?.unwrap_or_default();
//! assert_eq!(inline, vec![b"PING".to_vec()]);
//!
//! let mut out = Vec::new();
//! Frame::Boolean(true).encode(&mut out, RespVersion::Resp2);
//! assert_eq!(out, b":1\r\n");
//! # Ok(())
//! # }
//! ```

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod command;
pub mod resp;
