//! Replication's one error type. Each variant says what went wrong and
//! where (group, node); the server maps them to Redis replies at its edge
//! (`NotLeader` to `-MOVED` or a proxy hop, `NoLeader` to `-TRYAGAIN`,
//! `Timeout` to an indeterminate error).

use crate::types::{GroupId, NodeId, NodeInfo};
use openraft::error::ClientWriteError;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicationError {
    /// This node is not the group's leader; `leader` is the one it knows of.
    NotLeader {
        group: GroupId,
        leader: Option<(NodeId, NodeInfo)>,
    },
    /// The group has no leader right now (election in progress, quorum
    /// lost). Retry later.
    NoLeader { group: GroupId },
    /// The group is not hosted on this node.
    NoSuchGroup { group: GroupId },
    /// A group with this id is already hosted on this node.
    GroupExists { group: GroupId },
    /// The group's key range is empty, reaches replication's own keys, or
    /// overlaps another group on this node.
    InvalidRange { group: GroupId, reason: String },
    /// No outcome within the deadline: the operation may or may not have
    /// taken effect (a proposal may still commit).
    Timeout { group: GroupId, after_ms: u64 },
    /// A membership change was refused (another in progress, unknown
    /// learner, empty voter set).
    Membership { group: GroupId, message: String },
    /// The engine, the log store or a snapshot file failed.
    Storage { group: GroupId, message: String },
    /// The group's Raft stopped (after a storage failure, or shut down).
    Stopped { group: GroupId, message: String },
    /// A peer could not be reached for an operation that needed it.
    Transport { group: GroupId, message: String },
}

impl fmt::Display for ReplicationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplicationError::NotLeader { group, leader } => match leader {
                Some((id, info)) => {
                    write!(f, "group {group}: not the leader; node {id} ({info}) is")
                }
                None => write!(f, "group {group}: not the leader; the leader is unknown"),
            },
            ReplicationError::NoLeader { group } => write!(f, "group {group} has no leader"),
            ReplicationError::NoSuchGroup { group } => {
                write!(f, "group {group} is not hosted on this node")
            }
            ReplicationError::GroupExists { group } => {
                write!(f, "group {group} is already hosted on this node")
            }
            ReplicationError::InvalidRange { group, reason } => {
                write!(f, "group {group}: invalid key range: {reason}")
            }
            ReplicationError::Timeout { group, after_ms } => {
                write!(f, "group {group}: no outcome within {after_ms} ms")
            }
            ReplicationError::Membership { group, message } => {
                write!(f, "group {group}: membership change refused: {message}")
            }
            ReplicationError::Storage { group, message } => {
                write!(f, "group {group}: storage failure: {message}")
            }
            ReplicationError::Stopped { group, message } => {
                write!(f, "group {group}: raft stopped: {message}")
            }
            ReplicationError::Transport { group, message } => {
                write!(f, "group {group}: {message}")
            }
        }
    }
}

impl std::error::Error for ReplicationError {}

impl ReplicationError {
    /// `NotLeader` naming the leader `this` node knows of, or `NoLeader`
    /// when it knows none (or believes it leads itself).
    pub(crate) fn not_leader(
        group: GroupId,
        this: NodeId,
        leader_id: Option<NodeId>,
        leader_node: Option<NodeInfo>,
    ) -> ReplicationError {
        match (leader_id, leader_node) {
            (Some(id), Some(node)) if id != this => ReplicationError::NotLeader {
                group,
                leader: Some((id, node)),
            },
            _ => ReplicationError::NoLeader { group },
        }
    }

    /// What openraft's refusal of a write means for the caller.
    pub(crate) fn from_client_write(
        group: GroupId,
        this: NodeId,
        e: ClientWriteError<NodeId, NodeInfo>,
    ) -> ReplicationError {
        match e {
            ClientWriteError::ForwardToLeader(f) => {
                ReplicationError::not_leader(group, this, f.leader_id, f.leader_node)
            }
            ClientWriteError::ChangeMembershipError(e) => ReplicationError::Membership {
                group,
                message: e.to_string(),
            },
        }
    }
}

pub type Result<T, E = ReplicationError> = std::result::Result<T, E>;
