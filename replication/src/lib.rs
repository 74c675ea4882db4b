//! Cairn's replication layer: many Raft groups per node over one storage
//! engine, a shared Raft log store, and a QUIC transport with mutual TLS.
//! See `docs/replication.md` for the architecture, the log store format and
//! the apply/flush/purge invariant.
//!
//! The tree follows the data path: a proposal enters a [`Group`] (one
//! openraft `Raft`), is batched with concurrent ones into one entry
//! (`proposal`), is appended to the shared log store (`log_store`),
//! replicated through the `network` adapter over a [`Transport`] (`quic` or
//! the in-memory one), and applied by the state machine (`state_machine`)
//! to the engine. Only what this file re-exports is public.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod app;
mod config;
mod error;
mod keys;
mod log_store;
mod network;
mod node;
mod proposal;
mod state_machine;
mod tls;
mod transport;
mod types;

pub use app::{Application, ApplyContext, ApplyError, KvApplication, KvCommand, KvReply};
pub use config::RaftOptions;
pub use error::{ReplicationError, Result};
pub use keys::KeyRange;
pub use log_store::{
    GroupLog, GroupLogReader, LogStoreError, LogStoreOptions, LogStoreStats, SharedLog,
};
pub use network::{FIRST_APP_KIND, RpcRouter};
pub use node::{FollowerProgress, Group, GroupMetrics, Node, NodeOptions};
pub use tls::{ClusterCa, NodeCert, TlsError, TlsMaterial};
pub use transport::mem::{LinkFaults, MemNetwork, MemNetworkStats};
pub use transport::quic::{QuicConfig, QuicStartError, QuicStats, QuicTransport};
pub use transport::{BoxFuture, MAX_BODY_BYTES, RpcHandler, RpcRequest, Transport, TransportError};
pub use types::{
    BatchResponse, Entry, GroupId, LogId, NodeId, NodeInfo, Request, RequestBatch, Response,
    TypeConfig, Vote,
};
