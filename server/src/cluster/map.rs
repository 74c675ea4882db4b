//! The cluster map: nodes, groups, their slot ranges and replicas.
//!
//! It lives in the meta Raft group (group 0) as one JSON value under
//! [`META_MAP_KEY`], changed only by compare-and-set on its `epoch` (see
//! `app::MetaCommand`), so every change is one linearizable step and every
//! node that has applied epoch `e` sees the same map.

use std::collections::BTreeMap;

use cairn_replication::{KeyRange, NodeId, NodeInfo};
use serde::{Deserialize, Serialize};

use crate::slot::{MAX_SLOT, SLOTS};

/// The meta group's id. Data groups are numbered from 1.
pub const META_GROUP: u64 = 0;

/// The meta group's key range: above every slot (slots use `0x00..0x40`)
/// and below replication's reserved `0xFF 0xFF`.
pub fn meta_range() -> KeyRange {
    KeyRange::new(vec![0xFE], vec![0xFF])
}

/// Where the map is stored.
pub const META_MAP_KEY: &[u8] = &[0xFE, b'm'];

/// Largest encoded map accepted from disk or a peer.
pub const MAX_MAP_BYTES: usize = 16 << 20;

/// One node of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// QUIC address peers dial.
    pub raft_addr: String,
    /// RESP address clients dial (what MOVED and CLUSTER SLOTS announce).
    pub client_addr: String,
    /// Admin HTTP address.
    pub admin_addr: String,
}

impl NodeEntry {
    pub fn info(&self) -> NodeInfo {
        NodeInfo::new(self.raft_addr.clone(), self.client_addr.clone())
    }
}

/// One data group: a contiguous slot range and the nodes replicating it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEntry {
    pub first_slot: u16,
    pub last_slot: u16,
    /// Replica nodes. The first one initializes the group's Raft log.
    pub replicas: Vec<NodeId>,
    /// Set once the first replica has initialized the group, so a wiped
    /// node never initializes a second, divergent log for it.
    pub initialized: bool,
}

impl GroupEntry {
    pub fn contains(&self, slot: u16) -> bool {
        (self.first_slot..=self.last_slot).contains(&slot)
    }
}

/// The whole map. `epoch` counts changes; 0 is "no map yet".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterMap {
    pub epoch: u64,
    /// A name for the cluster, fixed at bootstrap.
    pub cluster_id: String,
    pub nodes: BTreeMap<NodeId, NodeEntry>,
    pub groups: BTreeMap<u64, GroupEntry>,
}

/// Why a map does not hold together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapError(pub String);

impl std::fmt::Display for MapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MapError {}

impl ClusterMap {
    /// The first map of a cluster: `groups` data groups splitting the
    /// slots evenly, each on `replicas` nodes (capped at the node count),
    /// placed round-robin so every node is first replica of about as many
    /// groups as any other.
    pub fn bootstrap(
        cluster_id: String,
        nodes: BTreeMap<NodeId, NodeEntry>,
        groups: u16,
        replicas: usize,
    ) -> Result<ClusterMap, MapError> {
        if nodes.is_empty() {
            return Err(MapError("a cluster needs at least one node".into()));
        }
        if groups == 0 || groups > SLOTS {
            return Err(MapError(format!(
                "groups must be between 1 and {SLOTS}, not {groups}"
            )));
        }
        let ids: Vec<NodeId> = nodes.keys().copied().collect();
        let replicas = replicas.clamp(1, ids.len());
        let mut map = ClusterMap {
            epoch: 1,
            cluster_id,
            nodes,
            groups: BTreeMap::new(),
        };
        let per_group = u32::from(SLOTS) / u32::from(groups);
        let extra = u32::from(SLOTS) % u32::from(groups);
        let mut first: u32 = 0;
        for g in 0..u32::from(groups) {
            let size = per_group + u32::from(g < extra);
            let last = first + size - 1;
            let start = usize::try_from(g).unwrap_or(0);
            let members = (0..replicas)
                .map(|r| ids[(start + r) % ids.len()])
                .collect();
            map.groups.insert(
                u64::from(g) + 1,
                GroupEntry {
                    first_slot: u16::try_from(first).unwrap_or(MAX_SLOT),
                    last_slot: u16::try_from(last).unwrap_or(MAX_SLOT),
                    replicas: members,
                    initialized: false,
                },
            );
            first = last + 1;
        }
        map.validate()?;
        Ok(map)
    }

    /// Checks that groups cover every slot exactly once, in order, and that
    /// replicas are known nodes.
    pub fn validate(&self) -> Result<(), MapError> {
        let mut next: u32 = 0;
        for (id, group) in &self.groups {
            if *id == META_GROUP {
                return Err(MapError("group 0 is the meta group".into()));
            }
            if u32::from(group.first_slot) != next || group.last_slot < group.first_slot {
                return Err(MapError(format!(
                    "group {id} covers slots {}..={}, expected to start at {next}",
                    group.first_slot, group.last_slot
                )));
            }
            if group.replicas.is_empty() {
                return Err(MapError(format!("group {id} has no replicas")));
            }
            for node in &group.replicas {
                if !self.nodes.contains_key(node) {
                    return Err(MapError(format!(
                        "group {id} names unknown node {node} as a replica"
                    )));
                }
            }
            next = u32::from(group.last_slot) + 1;
        }
        if !self.groups.is_empty() && next != u32::from(SLOTS) {
            return Err(MapError(format!(
                "slots {next}..{SLOTS} belong to no group"
            )));
        }
        Ok(())
    }

    /// The group owning `slot`.
    pub fn group_of_slot(&self, slot: u16) -> Option<(u64, &GroupEntry)> {
        self.groups
            .iter()
            .find(|(_, g)| g.contains(slot))
            .map(|(id, g)| (*id, g))
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<ClusterMap, MapError> {
        if bytes.len() > MAX_MAP_BYTES {
            return Err(MapError(format!(
                "cluster map of {} bytes exceeds {MAX_MAP_BYTES}",
                bytes.len()
            )));
        }
        let map: ClusterMap = serde_json::from_slice(bytes)
            .map_err(|e| MapError(format!("cluster map does not decode: {e}")))?;
        map.validate()?;
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(n: u64) -> BTreeMap<NodeId, NodeEntry> {
        (1..=n)
            .map(|id| {
                (
                    id,
                    NodeEntry {
                        raft_addr: format!("127.0.0.1:{}", 7400 + id),
                        client_addr: format!("127.0.0.1:{}", 7379 + id),
                        admin_addr: format!("127.0.0.1:{}", 7380 + id),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn bootstrap_covers_every_slot_and_spreads_first_replicas() {
        let map = ClusterMap::bootstrap("c".into(), nodes(3), 9, 3).unwrap();
        assert_eq!(map.groups.len(), 9);
        for slot in [0, 1, 5000, MAX_SLOT] {
            assert!(map.group_of_slot(slot).is_some());
        }
        let mut firsts = BTreeMap::new();
        for g in map.groups.values() {
            assert_eq!(g.replicas.len(), 3);
            *firsts.entry(g.replicas[0]).or_insert(0) += 1;
        }
        assert_eq!(firsts.values().copied().collect::<Vec<_>>(), vec![3, 3, 3]);
        let back = ClusterMap::decode(&map.encode()).unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn replicas_are_capped_by_nodes_and_bad_maps_are_refused() {
        let map = ClusterMap::bootstrap("c".into(), nodes(1), 3, 3).unwrap();
        assert!(map.groups.values().all(|g| g.replicas == vec![1]));
        assert!(ClusterMap::bootstrap("c".into(), nodes(1), 0, 3).is_err());
        let mut gap = map.clone();
        gap.groups.remove(&2);
        assert!(gap.validate().is_err());
        let mut unknown = map;
        unknown.groups.get_mut(&1).unwrap().replicas = vec![9];
        assert!(unknown.validate().is_err());
        assert!(ClusterMap::decode(b"{not json").is_err());
    }
}
