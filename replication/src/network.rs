//! openraft's network, over a [`Transport`]: every Raft RPC of a group
//! becomes one transport call carrying the group id, a kind, and the
//! postcard-encoded openraft message; the reply is the postcard-encoded
//! `Result` the remote `Raft` returned.
//!
//! The receiving side is [`RpcRouter`]: it finds the group's `Raft` and
//! hands the message to it. Kinds 64 and above go to the handler of the
//! layer above (the server), so one transport carries both.

use crate::transport::{
    BoxFuture, MAX_BODY_BYTES, RpcHandler, RpcRequest, Transport, TransportError,
};
use crate::types::{GroupId, NodeId, NodeInfo, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Timeout,
    Unreachable,
};
use openraft::network::{Backoff, RPCOption};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{RPCTypes, Raft, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// RPC kinds of replication. Do not change: on the wire.
pub(crate) const KIND_APPEND_ENTRIES: u8 = 1;
pub(crate) const KIND_VOTE: u8 = 2;
pub(crate) const KIND_INSTALL_SNAPSHOT: u8 = 3;
/// Asks the receiving node to start an election in the group now
/// (leadership transfer on openraft 0.9).
pub(crate) const KIND_TRIGGER_ELECTION: u8 = 4;
/// Kinds from here on belong to the layer above.
pub const FIRST_APP_KIND: u8 = 64;

/// Creates a [`GroupNetwork`] per target node for one group.
pub(crate) struct NetworkFactory {
    pub(crate) node: NodeId,
    pub(crate) group: GroupId,
    pub(crate) transport: Arc<dyn Transport>,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = GroupNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> GroupNetwork {
        GroupNetwork {
            node: self.node,
            group: self.group,
            target,
            addr: node.raft_addr.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// One group's link to one peer.
pub(crate) struct GroupNetwork {
    node: NodeId,
    group: GroupId,
    target: NodeId,
    addr: String,
    transport: Arc<dyn Transport>,
}

impl GroupNetwork {
    async fn call<Req, Resp, E>(
        &self,
        action: RPCTypes,
        kind: u8,
        request: &Req,
        timeout: Duration,
        entries: u64,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, E>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body = postcard::to_allocvec(request).map_err(|e| network_error(&e))?;
        if body.len() > MAX_BODY_BYTES {
            // Let openraft retry with fewer entries.
            return Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint((entries / 2).max(1)),
            ));
        }
        let request = RpcRequest {
            group: self.group,
            kind,
            body,
        };
        let reply = self
            .transport
            .call(self.target, &self.addr, request, timeout)
            .await
            .map_err(|e| match e {
                TransportError::Timeout { .. } => RPCError::Timeout(Timeout {
                    action,
                    id: self.node,
                    target: self.target,
                    timeout,
                }),
                TransportError::Unreachable { .. } | TransportError::Closed => {
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                other => network_error(&other),
            })?;
        let result: Result<Resp, E> =
            postcard::from_bytes(&reply).map_err(|e| network_error(&e))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

fn network_error<E: std::error::Error + 'static, X: std::error::Error>(
    e: &E,
) -> RPCError<NodeId, NodeInfo, X> {
    RPCError::Network(NetworkError::new(e))
}

impl RaftNetwork<TypeConfig> for GroupNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        self.call(
            RPCTypes::AppendEntries,
            KIND_APPEND_ENTRIES,
            &rpc,
            option.hard_ttl(),
            entries,
        )
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(
            RPCTypes::InstallSnapshot,
            KIND_INSTALL_SNAPSHOT,
            &rpc,
            option.hard_ttl(),
            1,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.call(RPCTypes::Vote, KIND_VOTE, &rpc, option.hard_ttl(), 1)
            .await
    }

    fn backoff(&self) -> Backoff {
        // After an unreachable peer: 50 ms, doubling to 1 s.
        Backoff::new(
            (0..)
                .map(|i: u32| Duration::from_millis(50u64 << i.min(4)).min(Duration::from_secs(1))),
        )
    }
}

/// Dispatches incoming RPCs to the groups of this node.
#[derive(Default)]
pub struct RpcRouter {
    groups: RwLock<HashMap<GroupId, Raft<TypeConfig>>>,
    app: OnceLock<Arc<dyn RpcHandler>>,
}

impl RpcRouter {
    pub fn new() -> Arc<RpcRouter> {
        Arc::new(RpcRouter::default())
    }

    /// Routes kinds >= [`FIRST_APP_KIND`] to `handler`. Set once.
    pub fn set_app_handler(&self, handler: Arc<dyn RpcHandler>) -> Result<(), String> {
        self.app
            .set(handler)
            .map_err(|_| "the application RPC handler is already set".to_string())
    }

    pub(crate) fn add_group(&self, group: GroupId, raft: Raft<TypeConfig>) {
        write(&self.groups).insert(group, raft);
    }

    pub(crate) fn remove_group(&self, group: GroupId) {
        write(&self.groups).remove(&group);
    }

    fn raft(&self, group: GroupId) -> Result<Raft<TypeConfig>, String> {
        self.groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .cloned()
            .ok_or_else(|| format!("group {group} is not on this node"))
    }
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|e| format!("malformed rpc body: {e}"))
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| format!("encode reply: {e}"))
}

impl RpcHandler for RpcRouter {
    fn handle(&self, request: RpcRequest) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        if request.kind >= FIRST_APP_KIND {
            return match self.app.get() {
                Some(app) => app.handle(request),
                None => {
                    Box::pin(
                        async move { Err(format!("no handler for rpc kind {}", request.kind)) },
                    )
                }
            };
        }
        let raft = self.raft(request.group);
        Box::pin(async move {
            let raft = raft?;
            match request.kind {
                KIND_APPEND_ENTRIES => {
                    let rpc: AppendEntriesRequest<TypeConfig> = decode(&request.body)?;
                    encode(&raft.append_entries(rpc).await)
                }
                KIND_VOTE => {
                    let rpc: VoteRequest<NodeId> = decode(&request.body)?;
                    encode(&raft.vote(rpc).await)
                }
                KIND_INSTALL_SNAPSHOT => {
                    let rpc: InstallSnapshotRequest<TypeConfig> = decode(&request.body)?;
                    encode(&raft.install_snapshot(rpc).await)
                }
                KIND_TRIGGER_ELECTION => {
                    raft.trigger()
                        .elect()
                        .await
                        .map_err(|e| format!("trigger election: {e}"))?;
                    Ok(Vec::new())
                }
                other => Err(format!("unknown rpc kind {other}")),
            }
        })
    }
}
