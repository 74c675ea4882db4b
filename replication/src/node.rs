//! A node: the registry of the Raft groups it hosts over one engine, one
//! shared log store and one transport.
//!
//! Which groups a node hosts is kept in the engine (`keys::spec_key`,
//! written with the WAL and synced), so `Node::open` restarts every group
//! that was created and not removed. Each group gets its own `Raft`, state
//! machine (applying to the shared engine), log handle (into the shared log
//! store) and network (over the shared transport).

use crate::app::Application;
use crate::config::RaftOptions;
use crate::error::{ReplicationError, Result};
use crate::keys::{self, KeyRange};
use crate::log_store::SharedLog;
use crate::network::{KIND_TRIGGER_ELECTION, NetworkFactory, RpcRouter};
use crate::proposal::Proposer;
use crate::state_machine::GroupStateMachine;
use crate::transport::{RpcRequest, Transport};
use crate::types::{GroupId, LogId, NodeId, NodeInfo, Request, Response, TypeConfig};
use cairn_engine::{Db, IterOptions, WriteBatch, WriteOptions};
use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, Raft, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// What a node needs beyond its engine, log store and transport.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub id: NodeId,
    pub info: NodeInfo,
    /// Snapshot files live in `snapshot_dir/group-<id>/`.
    pub snapshot_dir: PathBuf,
    pub raft: RaftOptions,
}

/// A group as recorded in the engine. Do not change: on disk (postcard).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct GroupSpec {
    id: GroupId,
    range: KeyRange,
}

struct NodeInner {
    options: NodeOptions,
    raft_config: Arc<openraft::Config>,
    db: Db,
    log: Arc<SharedLog>,
    transport: Arc<dyn Transport>,
    router: Arc<RpcRouter>,
    app: Arc<dyn Application>,
    groups: RwLock<HashMap<GroupId, Group>>,
}

/// A node hosting Raft groups. Cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<NodeInner>,
}

fn storage(group: GroupId, e: impl std::fmt::Display) -> ReplicationError {
    ReplicationError::Storage {
        group,
        message: e.to_string(),
    }
}

impl Node {
    /// Opens a node and restarts every group it hosted. `router` must be
    /// the handler the transport delivers incoming RPCs to.
    pub async fn open(
        options: NodeOptions,
        db: Db,
        log: Arc<SharedLog>,
        transport: Arc<dyn Transport>,
        router: Arc<RpcRouter>,
        app: Arc<dyn Application>,
    ) -> Result<Node> {
        let raft_config = options
            .raft
            .to_openraft()
            .map_err(|message| ReplicationError::Storage { group: 0, message })?;
        let node = Node {
            inner: Arc::new(NodeInner {
                options,
                raft_config: Arc::new(raft_config),
                db,
                log,
                transport,
                router,
                app,
                groups: RwLock::new(HashMap::new()),
            }),
        };
        for spec in node.recorded_specs()? {
            node.start_group(spec).await?;
        }
        Ok(node)
    }

    fn recorded_specs(&self) -> Result<Vec<GroupSpec>> {
        let (start, end) = keys::spec_range();
        let mut specs = Vec::new();
        for item in self.inner.db.iter(IterOptions::range(start, end)) {
            let (key, value) = item.map_err(|e| storage(0, e))?;
            let group = keys::group_of_spec_key(&key).unwrap_or(0);
            let spec: GroupSpec = postcard::from_bytes(&value)
                .map_err(|e| storage(group, format!("group spec does not decode: {e}")))?;
            specs.push(spec);
        }
        Ok(specs)
    }

    pub fn id(&self) -> NodeId {
        self.inner.options.id
    }

    pub fn info(&self) -> &NodeInfo {
        &self.inner.options.info
    }

    /// The node's engine (for local, possibly stale reads).
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    pub fn log_store(&self) -> &Arc<SharedLog> {
        &self.inner.log
    }

    pub fn group(&self, id: GroupId) -> Option<Group> {
        read(&self.inner.groups).get(&id).cloned()
    }

    /// Every hosted group, by id.
    pub fn groups(&self) -> Vec<Group> {
        let mut groups: Vec<Group> = read(&self.inner.groups).values().cloned().collect();
        groups.sort_by_key(|g| g.id());
        groups
    }

    /// Hosts a new, empty replica of group `id` for keys in `range`. It
    /// takes part once it is initialised (`Group::initialize`, on one node)
    /// or added by the group's leader (`Group::add_learner`).
    pub async fn create_group(&self, id: GroupId, range: KeyRange) -> Result<Group> {
        if !range.is_valid_data_range() {
            return Err(ReplicationError::InvalidRange {
                group: id,
                reason: "empty, or reaching replication's reserved keys".into(),
            });
        }
        {
            let groups = read(&self.inner.groups);
            if groups.contains_key(&id) {
                return Err(ReplicationError::GroupExists { group: id });
            }
            if let Some(other) = groups
                .values()
                .find(|g| g.range().start < range.end && range.start < g.range().end)
            {
                return Err(ReplicationError::InvalidRange {
                    group: id,
                    reason: format!("overlaps group {}", other.id()),
                });
            }
        }
        let spec = GroupSpec { id, range };
        let bytes = postcard::to_allocvec(&spec).map_err(|e| storage(id, e))?;
        let mut batch = WriteBatch::new();
        batch.put(keys::spec_key(id), bytes);
        self.write_synced(id, batch)?;
        self.start_group(spec).await
    }

    /// Writes replication's own bookkeeping through the WAL, synced: group
    /// specs must survive a crash even though the data writes skip the WAL.
    fn write_synced(&self, id: GroupId, batch: WriteBatch) -> Result<()> {
        let sync = WriteOptions {
            sync: true,
            disable_wal: false,
        };
        self.inner.db.write(batch, sync).map_err(|e| storage(id, e))
    }

    async fn start_group(&self, spec: GroupSpec) -> Result<Group> {
        let inner = &self.inner;
        let id = spec.id;
        let dir = inner.options.snapshot_dir.join(format!("group-{id}"));
        let sm = GroupStateMachine::open(
            id,
            spec.range.clone(),
            inner.db.clone(),
            inner.app.clone(),
            dir,
        )
        .map_err(|e| storage(id, e))?;
        let network = NetworkFactory {
            node: inner.options.id,
            group: id,
            transport: inner.transport.clone(),
        };
        let log = inner.log.group(id);
        let raft = Raft::new(
            inner.options.id,
            inner.raft_config.clone(),
            network,
            log,
            sm,
        )
        .await
        .map_err(|e| ReplicationError::Stopped {
            group: id,
            message: e.to_string(),
        })?;
        inner.router.add_group(id, raft.clone());
        let proposer = Proposer::start(id, inner.options.id, raft.clone(), &inner.options.raft);
        let group = Group {
            inner: Arc::new(GroupInner {
                id,
                range: spec.range,
                node: inner.options.id,
                raft,
                proposer,
                transport: inner.transport.clone(),
                options: inner.options.raft.clone(),
            }),
        };
        write(&inner.groups).insert(id, group.clone());
        Ok(group)
    }

    /// Stops the group here and deletes its replica: its Raft state in the
    /// log store, its data and its snapshots. Remove the node from the
    /// group's membership first, or the group will keep sending to it.
    pub async fn remove_group(&self, id: GroupId) -> Result<()> {
        let Some(group) = write(&self.inner.groups).remove(&id) else {
            return Err(ReplicationError::NoSuchGroup { group: id });
        };
        self.inner.router.remove_group(id);
        group.shutdown().await;
        self.inner
            .log
            .remove_group(id)
            .await
            .map_err(|e| storage(id, e))?;
        let meta = keys::group_meta_range(id);
        let mut batch = WriteBatch::new();
        batch.delete_range(&group.range().start, &group.range().end);
        batch.delete_range(&meta.start, &meta.end);
        batch.delete(keys::spec_key(id));
        self.write_synced(id, batch)?;
        let dir = self.inner.options.snapshot_dir.join(format!("group-{id}"));
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(storage(id, e)),
        }
    }

    /// Stops every group (their state stays for the next open).
    pub async fn shutdown(&self) {
        let groups: Vec<Group> = write(&self.inner.groups).drain().map(|(_, g)| g).collect();
        for group in groups {
            self.inner.router.remove_group(group.id());
            group.shutdown().await;
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

struct GroupInner {
    id: GroupId,
    range: KeyRange,
    node: NodeId,
    raft: Raft<TypeConfig>,
    /// The group's proposal queue and batching task (`crate::proposal`).
    proposer: Proposer,
    transport: Arc<dyn Transport>,
    options: RaftOptions,
}

/// One replica of a Raft group on this node. Cheap to clone.
#[derive(Clone)]
pub struct Group {
    inner: Arc<GroupInner>,
}

/// Where a group stands, as seen from this replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetrics {
    pub group: GroupId,
    pub node: NodeId,
    /// "leader", "follower", "candidate", "learner" or "shutdown".
    pub state: &'static str,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied: Option<LogId>,
    pub snapshot: Option<LogId>,
    pub purged: Option<LogId>,
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// Log index of the membership above (the latest this replica has,
    /// committed or not).
    pub membership_index: Option<u64>,
    /// Leader only: per follower, the last index known replicated and the
    /// lag behind the leader's last log index.
    pub followers: BTreeMap<NodeId, FollowerProgress>,
    /// Requests this replica has proposed to Raft since it started, and
    /// the batches (Raft entries) they went in: their ratio is the
    /// batching (see `Group::propose`).
    pub proposed_requests: u64,
    pub proposed_batches: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerProgress {
    pub matched_index: Option<u64>,
    pub lag: u64,
}

impl Group {
    pub fn id(&self) -> GroupId {
        self.inner.id
    }

    pub fn range(&self) -> &KeyRange {
        &self.inner.range
    }

    fn timeout_error(&self) -> ReplicationError {
        ReplicationError::Timeout {
            group: self.id(),
            after_ms: self.inner.options.operation_timeout_ms,
        }
    }

    fn not_leader(
        &self,
        leader_id: Option<NodeId>,
        leader_node: Option<NodeInfo>,
    ) -> ReplicationError {
        ReplicationError::not_leader(self.id(), self.inner.node, leader_id, leader_node)
    }

    fn write_error(
        &self,
        e: RaftError<NodeId, ClientWriteError<NodeId, NodeInfo>>,
    ) -> ReplicationError {
        match e {
            RaftError::APIError(e) => {
                ReplicationError::from_client_write(self.id(), self.inner.node, e)
            }
            RaftError::Fatal(e) => ReplicationError::Stopped {
                group: self.id(),
                message: e.to_string(),
            },
        }
    }

    /// Makes this group a new cluster of `members` (call on one of them,
    /// once). Calling it again on an initialised group is a no-op.
    pub async fn initialize(&self, members: BTreeMap<NodeId, NodeInfo>) -> Result<()> {
        match self.inner.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(ReplicationError::Membership {
                group: self.id(),
                message: e.to_string(),
            }),
        }
    }

    /// Proposes `request` and waits until it is committed and applied here;
    /// returns what the application replied. Only on the leader.
    ///
    /// Concurrent proposals of a group share Raft entries: a lone request
    /// is proposed at once as an entry of its own; while entries are in
    /// flight, requests queue and the group's batching task proposes what
    /// is queued as one entry (see `crate::proposal`). Each request is
    /// still applied, and deduplicated, on its own and gets its own
    /// response. An error of the
    /// entry (`NotLeader`, `NoLeader`, `Timeout`, `Stopped`) is returned to
    /// every request in it.
    pub async fn propose(&self, request: Request) -> Result<Response> {
        let proposal = self.inner.proposer.propose(request);
        match tokio::time::timeout(self.inner.options.operation_timeout(), proposal).await {
            Err(_) => Err(self.timeout_error()),
            Ok(result) => result,
        }
    }

    /// Returns once this replica's state machine reflects every write
    /// committed before the call (the leader confirms its leadership with a
    /// quorum, then waits for its apply). Only on the leader; a read of the
    /// engine after it is linearizable.
    pub async fn ensure_linearizable(&self) -> Result<()> {
        let barrier = self.inner.raft.ensure_linearizable();
        match tokio::time::timeout(self.inner.options.operation_timeout(), barrier).await {
            Err(_) => Err(self.timeout_error()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(self.not_leader(f.leader_id, f.leader_node))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => {
                Err(ReplicationError::NoLeader { group: self.id() })
            }
            Ok(Err(RaftError::Fatal(e))) => Err(ReplicationError::Stopped {
                group: self.id(),
                message: e.to_string(),
            }),
        }
    }

    /// Adds `id` as a learner and waits until it has caught up with the
    /// leader's log (the node must host the group: `Node::create_group`).
    pub async fn add_learner(&self, id: NodeId, info: NodeInfo) -> Result<()> {
        let add = self.inner.raft.add_learner(id, info, true);
        match tokio::time::timeout(self.inner.options.operation_timeout(), add).await {
            Err(_) => Err(self.timeout_error()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.write_error(e)),
        }
    }

    /// Makes learners `ids` voters (joint consensus, then the new config).
    pub async fn promote(&self, ids: BTreeSet<NodeId>) -> Result<()> {
        self.change(ChangeMembers::AddVoterIds(ids)).await
    }

    /// Removes voters `ids` from the group (they stop being replicated to).
    pub async fn remove_voters(&self, ids: BTreeSet<NodeId>) -> Result<()> {
        self.change(ChangeMembers::RemoveVoters(ids)).await
    }

    /// Sets the voters to exactly `ids` (each must already be a member).
    pub async fn set_voters(&self, ids: BTreeSet<NodeId>) -> Result<()> {
        self.change(ChangeMembers::ReplaceAllVoters(ids)).await
    }

    /// Sets the voters to exactly `ids` (each must already be a member);
    /// voters left out stay on as learners, so they receive the change
    /// that removes them and stop campaigning.
    pub async fn set_voters_keeping_learners(&self, ids: BTreeSet<NodeId>) -> Result<()> {
        self.change_retaining(ChangeMembers::ReplaceAllVoters(ids), true)
            .await
    }

    /// Removes learners `ids` from the group.
    pub async fn remove_learners(&self, ids: BTreeSet<NodeId>) -> Result<()> {
        self.change(ChangeMembers::RemoveNodes(ids)).await
    }

    async fn change(&self, changes: ChangeMembers<NodeId, NodeInfo>) -> Result<()> {
        self.change_retaining(changes, false).await
    }

    async fn change_retaining(
        &self,
        changes: ChangeMembers<NodeId, NodeInfo>,
        retain: bool,
    ) -> Result<()> {
        let change = self.inner.raft.change_membership(changes, retain);
        match tokio::time::timeout(self.inner.options.operation_timeout(), change).await {
            Err(_) => Err(self.timeout_error()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.write_error(e)),
        }
    }

    /// Hands leadership to voter `target`: waits until it has the leader's
    /// whole log, then asks it to start an election (openraft 0.9 has no
    /// transfer message; an up-to-date candidate wins once this leader
    /// stops heartbeating). Returns when `target` leads, or `Timeout`.
    pub async fn transfer_leader(&self, target: NodeId) -> Result<()> {
        let group = self.id();
        let metrics = self.metrics();
        if metrics.leader == Some(target) {
            return Ok(());
        }
        if metrics.leader != Some(self.inner.node) {
            return Err(self.not_leader(metrics.leader, None));
        }
        if !metrics.voters.contains(&target) {
            return Err(ReplicationError::Membership {
                group,
                message: format!("node {target} is not a voter"),
            });
        }
        let timeout = self.inner.options.operation_timeout();
        self.inner
            .raft
            .wait(Some(timeout))
            .metrics(
                |m| {
                    let last = m.last_log_index;
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&target).copied().flatten())
                        .is_some_and(|matched| Some(matched.index) >= last)
                },
                "target caught up",
            )
            .await
            .map_err(|_| self.timeout_error())?;
        let addr = self
            .inner
            .raft
            .metrics()
            .borrow()
            .membership_config
            .nodes()
            .find(|(id, _)| **id == target)
            .map(|(_, info)| info.raft_addr.clone())
            .unwrap_or_default();
        // Stop heartbeating so the voters' leader leases run out and they
        // accept the target's higher-term vote request.
        self.inner.raft.runtime_config().heartbeat(false);
        let result = self.elect_on(target, &addr, timeout).await;
        self.inner.raft.runtime_config().heartbeat(true);
        result
    }

    async fn elect_on(&self, target: NodeId, addr: &str, timeout: Duration) -> Result<()> {
        let group = self.id();
        let lease = Duration::from_millis(self.inner.options.election_timeout_max_ms);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            tokio::time::sleep(lease).await;
            let request = RpcRequest {
                group,
                kind: KIND_TRIGGER_ELECTION,
                body: Vec::new(),
            };
            if let Err(e) = self
                .inner
                .transport
                .call(target, addr, request, lease)
                .await
            {
                tracing::warn!(group, target, "leader transfer: {e}");
            }
            let won = self
                .inner
                .raft
                .wait(Some(lease * 2))
                .metrics(|m| m.current_leader == Some(target), "target leads")
                .await;
            if won.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.timeout_error());
            }
        }
    }

    /// Waits until the group has a leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<NodeId> {
        let found = self
            .inner
            .raft
            .wait(Some(timeout))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await
            .map_err(|_| ReplicationError::NoLeader { group: self.id() })?;
        found
            .current_leader
            .ok_or(ReplicationError::NoLeader { group: self.id() })
    }

    /// Waits until this replica has applied at least `index`.
    pub async fn wait_for_applied(&self, index: u64, timeout: Duration) -> Result<()> {
        self.inner
            .raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "applied")
            .await
            .map(|_| ())
            .map_err(|_| self.timeout_error())
    }

    /// Builds a snapshot now (normally driven by `snapshot_after_entries`).
    pub async fn trigger_snapshot(&self) -> Result<()> {
        self.inner
            .raft
            .trigger()
            .snapshot()
            .await
            .map_err(|e| ReplicationError::Stopped {
                group: self.id(),
                message: e.to_string(),
            })
    }

    pub fn is_leader(&self) -> bool {
        self.inner.raft.metrics().borrow().current_leader == Some(self.inner.node)
    }

    pub fn metrics(&self) -> GroupMetrics {
        let m = self.inner.raft.metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let learners: BTreeSet<NodeId> = membership.learner_ids().collect();
        let membership_index = m.membership_config.log_id().map(|l| l.index);
        let last = m.last_log_index.unwrap_or(0);
        let followers = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.inner.node)
            .map(|(id, matched)| {
                let matched_index = matched.map(|l| l.index);
                let lag = last.saturating_sub(matched_index.unwrap_or(0));
                (*id, FollowerProgress { matched_index, lag })
            })
            .collect();
        let (proposed_requests, proposed_batches) = self.inner.proposer.proposed();
        GroupMetrics {
            group: self.id(),
            node: self.inner.node,
            state,
            term: m.current_term,
            leader: m.current_leader,
            last_log_index: m.last_log_index,
            last_applied: m.last_applied,
            snapshot: m.snapshot,
            purged: m.purged,
            voters,
            learners,
            membership_index,
            followers,
            proposed_requests,
            proposed_batches,
        }
    }

    async fn shutdown(&self) {
        self.inner.proposer.stop();
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(group = self.id(), "raft shutdown: {e}");
        }
    }
}
