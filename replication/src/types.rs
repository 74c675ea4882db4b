//! The types every part of replication shares: ids, the Raft type
//! configuration, and what a proposal carries.
//!
//! A proposal is opaque to replication: `Request::command` is interpreted by
//! the node's [`crate::Application`] when the entry is applied, so the server
//! decides what a command means (Redis commands, cluster-map changes) and
//! replication only orders, persists and applies it. A Raft entry carries a
//! [`RequestBatch`]: the group batches concurrent proposals into one entry
//! (see `crate::proposal`), and the state machine answers each request of
//! the batch on its own.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node of the cluster. `0` is never a valid id.
pub type NodeId = u64;

/// A Raft group. Every node that holds a replica of the group runs one
/// `openraft::Raft` for it.
pub type GroupId = u64;

/// How to reach a node: its Raft (QUIC) address and its client (RESP)
/// address, both `host:port`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub raft_addr: String,
    pub client_addr: String,
}

impl NodeInfo {
    pub fn new(raft_addr: impl Into<String>, client_addr: impl Into<String>) -> Self {
        NodeInfo {
            raft_addr: raft_addr.into(),
            client_addr: client_addr.into(),
        }
    }
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft {} client {}", self.raft_addr, self.client_addr)
    }
}

/// One proposal. `client_id` and `serial` deduplicate retries: a request
/// whose `(client_id, serial)` was already applied in its group is not
/// applied again, and the first application's response is returned. A
/// `client_id` of 0 opts out of deduplication.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client_id: u64,
    pub serial: u64,
    /// Interpreted by the [`crate::Application`]; opaque here.
    pub command: Vec<u8>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "request client {} serial {} ({} bytes)",
            self.client_id,
            self.serial,
            self.command.len()
        )
    }
}

/// What applying a request produced, as the [`crate::Application`] encoded
/// it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub payload: Vec<u8>,
    /// True when this was a retry of an already applied request and
    /// `payload` is the first application's response.
    pub duplicate: bool,
}

/// The payload of one Raft entry: requests applied in order, each with its
/// own deduplication and its own response. Do not change: on disk and on
/// the wire (postcard, inside the log entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestBatch {
    pub requests: Vec<Request>,
}

impl fmt::Display for RequestBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bytes: usize = self.requests.iter().map(|r| r.command.len()).sum();
        write!(
            f,
            "batch of {} requests ({bytes} bytes)",
            self.requests.len()
        )
    }
}

/// What applying one entry produced: for a [`RequestBatch`], one
/// [`Response`] per request, in the batch's order; empty for blank and
/// membership entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub responses: Vec<Response>,
}

openraft::declare_raft_types!(
    /// Cairn's Raft types. Snapshots are files, so a snapshot of any size is
    /// built, sent and installed in bounded memory.
    pub TypeConfig:
        D = RequestBatch,
        R = BatchResponse,
        NodeId = NodeId,
        Node = NodeInfo,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of [`TypeConfig`].
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of [`TypeConfig`].
pub type LogId = openraft::LogId<NodeId>;
/// A vote of [`TypeConfig`].
pub type Vote = openraft::Vote<NodeId>;
