//! Cairn's replication layer: many Raft groups per node over one storage
//! engine, a shared Raft log store, and a QUIC transport with mutual TLS.
//! See `docs/replication.md` for the architecture, the log store format and
//! the apply/flush/purge invariant.
//!
//! The tree follows the data path: a proposal enters a [`Group`] (one
//! openraft `Raft`), is appended to the shared log store (`log_store`),
//! replicated through the `network` adapter over a [`Transport`] (`quic` or
//! the in-memory one), and applied by the state machine (`state_machine`)
//! to the engine. Only what this file re-exports is public.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod log_store;
mod transport;
mod types;

pub use log_store::{
    GroupLog, GroupLogReader, LogStoreError, LogStoreOptions, LogStoreStats, SharedLog,
};
pub use transport::{BoxFuture, MAX_BODY_BYTES, RpcHandler, RpcRequest, Transport, TransportError};
pub use types::{Entry, GroupId, LogId, NodeId, NodeInfo, Request, Response, TypeConfig, Vote};
