//! Cairn's server: the `cairn` binary's library. A node serves the Redis
//! protocol, routes every key to the Raft group owning its hash slot, and
//! replicates through `cairn-replication`. See docs/architecture in
//! `docs/server.md`, `docs/operations.md` for running it.
//!
//! The tree follows a request: `conn` reads it (`resp` decodes), `command`
//! parses and executes Redis commands, `route` sends an operation to the
//! group's leader (here, forwarded, or `-MOVED`), `app` applies committed
//! entries (`entry`) to the engine with the group's replicated `clock`;
//! `cluster` holds the map (in the meta group) and the CLUSTER commands;
//! `server` starts a node and keeps its groups in line with the map
//! (`tls` is the RESP port's optional TLS);
//! `admin`, `metrics` and `info` are for operators; `config` is the
//! settings.
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

pub mod admin;
pub mod app;
pub mod clock;
pub mod cluster;
pub mod command;
pub mod config;
pub mod conn;
pub mod entry;
pub mod glob;
pub mod info;
pub mod metrics;
mod nosync;
pub mod resp;
pub mod route;
pub mod server;
pub mod slot;
pub mod tls;

pub use config::Config;
pub use server::Server;
