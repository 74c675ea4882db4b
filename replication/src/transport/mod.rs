//! How nodes reach each other: a request/reply RPC between nodes, addressed
//! to a Raft group, with the body opaque to the transport.
//!
//! Two implementations: `quic` (quinn, one connection per peer node shared by
//! all groups, a stream per RPC, mutual TLS) and `mem` (in-process, with
//! per-link drop, delay, duplication and partitions for tests).
//!
//! The transport never interprets `RpcRequest::body`; the Raft network
//! adapter (`network`) puts openraft's messages there, and the server may
//! add kinds of its own (proxying a client command to a leader).

mod frame;
pub mod mem;
pub(crate) mod quic;

use crate::types::{GroupId, NodeId};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// A boxed, sendable future: what the object-safe traits here return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Largest RPC body either side accepts, checked before allocating. Raft
/// batches are kept well below it (`max_payload_entries`, snapshot chunk
/// size); a larger body is refused with [`TransportError::FrameTooLarge`].
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// One request to a group on another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcRequest {
    /// The group the request is for; the receiving node dispatches on it.
    pub group: GroupId,
    /// What the body is. Kinds 1..=63 belong to replication (see
    /// `network`), 64..=255 to the layer above. Do not change: on the wire.
    pub kind: u8,
    pub body: Vec<u8>,
}

/// Why an RPC did not produce a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportError {
    /// No connection could be made, or it broke before the reply came.
    Unreachable { node: NodeId, reason: String },
    /// No reply within the caller's timeout.
    Timeout { node: NodeId, after_ms: u64 },
    /// The remote handler answered with an error (unknown group, bad body).
    Remote { node: NodeId, message: String },
    /// A request or reply body over [`MAX_BODY_BYTES`].
    FrameTooLarge { bytes: u64, max: u64 },
    /// The local transport is shut down.
    Closed,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportError::Unreachable { node, reason } => {
                write!(f, "node {node} unreachable: {reason}")
            }
            TransportError::Timeout { node, after_ms } => {
                write!(f, "node {node} did not reply within {after_ms} ms")
            }
            TransportError::Remote { node, message } => write!(f, "node {node}: {message}"),
            TransportError::FrameTooLarge { bytes, max } => {
                write!(f, "rpc body of {bytes} bytes exceeds the limit of {max}")
            }
            TransportError::Closed => write!(f, "transport is shut down"),
        }
    }
}

impl std::error::Error for TransportError {}

/// Sends RPCs to other nodes. Implementations must never let a dead or slow
/// peer block calls to other peers, and must bound every call by `timeout`.
pub trait Transport: Send + Sync + 'static {
    /// Sends `request` to node `target` at `addr` (`host:port`) and waits for
    /// its reply body.
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;
}

/// Serves RPCs arriving at this node. An `Err` is sent back to the caller as
/// [`TransportError::Remote`].
pub trait RpcHandler: Send + Sync + 'static {
    fn handle(&self, request: RpcRequest) -> BoxFuture<'static, Result<Vec<u8>, String>>;
}
