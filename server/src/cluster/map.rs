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
    /// The meta group's voters. Every other node of `nodes` is a learner
    /// of it, so every node applies the map. Empty in maps written before
    /// membership changes existed: the meta group is then left alone.
    #[serde(default)]
    pub meta_voters: Vec<NodeId>,
    /// Replicas each data group should have (fewer while there are fewer
    /// nodes). 0 in older maps: see [`ClusterMap::replica_target`].
    #[serde(default)]
    pub replicas: usize,
}

/// Most voters the meta group gets when nodes join; the rest are learners.
pub const MAX_META_VOTERS: usize = 5;

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
        let target = replicas.max(1);
        let replicas = replicas.clamp(1, ids.len());
        let mut map = ClusterMap {
            epoch: 1,
            cluster_id,
            meta_voters: ids.clone(),
            replicas: target,
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

    /// Replicas a data group should have: the map's target, capped by the
    /// number of nodes.
    pub fn replica_target(&self) -> usize {
        let target = if self.replicas == 0 { 3 } else { self.replicas };
        target.clamp(1, self.nodes.len().max(1))
    }

    /// This map with node `id` added and the replicas rebalanced onto it.
    /// `Ok(None)` if the node is already there with the same addresses.
    pub fn with_node(&self, id: NodeId, entry: NodeEntry) -> Result<Option<ClusterMap>, MapError> {
        if let Some(existing) = self.nodes.get(&id) {
            return if *existing == entry {
                Ok(None)
            } else {
                Err(MapError(format!(
                    "node {id} is already in the cluster, at other addresses"
                )))
            };
        }
        if id == 0 {
            return Err(MapError("node ids start at 1".into()));
        }
        if let Some((other, _)) = self
            .nodes
            .iter()
            .find(|(_, n)| n.raft_addr == entry.raft_addr || n.client_addr == entry.client_addr)
        {
            return Err(MapError(format!(
                "node {other} already uses one of these addresses"
            )));
        }
        let mut next = self.clone();
        next.nodes.insert(id, entry);
        next.rebalance();
        next.validate()?;
        Ok(Some(next))
    }

    /// This map without node `id`: its replicas move to the other nodes.
    /// `Ok(None)` if it is not in the map.
    pub fn without_node(&self, id: NodeId) -> Result<Option<ClusterMap>, MapError> {
        if !self.nodes.contains_key(&id) {
            return Ok(None);
        }
        if self.nodes.len() == 1 {
            return Err(MapError("cannot remove the last node".into()));
        }
        let mut next = self.clone();
        next.nodes.remove(&id);
        for group in next.groups.values_mut() {
            group.replicas.retain(|&n| n != id);
        }
        next.meta_voters.retain(|&n| n != id);
        next.rebalance();
        next.validate()?;
        Ok(Some(next))
    }

    /// Gives every group its target number of replicas and spreads them:
    /// a group short of replicas gets the least loaded nodes; then, while
    /// one node holds two replicas more than another, one moves. The meta
    /// group is refilled up to [`MAX_META_VOTERS`]. Deterministic: every
    /// node computing it from the same map gets the same result.
    pub fn rebalance(&mut self) {
        let target = self.replica_target();
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        let load = |groups: &BTreeMap<u64, GroupEntry>, node: NodeId| {
            groups
                .values()
                .filter(|g| g.replicas.contains(&node))
                .count()
        };
        let group_ids: Vec<u64> = self.groups.keys().copied().collect();
        for &gid in &group_ids {
            while let Some(group) = self.groups.get(&gid)
                && group.replicas.len() < target
            {
                let Some(&pick) = ids
                    .iter()
                    .filter(|n| !group.replicas.contains(n))
                    .min_by_key(|&&n| (load(&self.groups, n), n))
                else {
                    break;
                };
                if let Some(group) = self.groups.get_mut(&gid) {
                    group.replicas.push(pick);
                }
            }
        }
        // Even out: each move takes one replica from the most loaded node
        // to the least loaded, for a group that has one but not the other.
        for _ in 0..self.groups.len() * ids.len() {
            let Some(&most) = ids.iter().max_by_key(|&&n| (load(&self.groups, n), n)) else {
                break;
            };
            let Some(&least) = ids
                .iter()
                .min_by_key(|&&n| (load(&self.groups, n), std::cmp::Reverse(n)))
            else {
                break;
            };
            if load(&self.groups, most) <= load(&self.groups, least) + 1 {
                break;
            }
            // Initialized groups only: an uninitialized one is about to be
            // started by its first replica.
            let Some(group) = self.groups.values_mut().find(|g| {
                g.initialized && g.replicas.contains(&most) && !g.replicas.contains(&least)
            }) else {
                break;
            };
            for r in &mut group.replicas {
                if *r == most {
                    *r = least;
                }
            }
        }
        if !self.meta_voters.is_empty() {
            let want = ids.len().min(MAX_META_VOTERS);
            for &n in &ids {
                if self.meta_voters.len() >= want {
                    break;
                }
                if !self.meta_voters.contains(&n) {
                    self.meta_voters.push(n);
                }
            }
        }
    }

    /// Checks that groups cover every slot exactly once, in order, and that
    /// replicas are known nodes.
    pub fn validate(&self) -> Result<(), MapError> {
        for node in &self.meta_voters {
            if !self.nodes.contains_key(node) {
                return Err(MapError(format!(
                    "the meta group names unknown node {node} as a voter"
                )));
            }
        }
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
            for (i, node) in group.replicas.iter().enumerate() {
                if group.replicas[..i].contains(node) {
                    return Err(MapError(format!("group {id} names node {node} twice")));
                }
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

    fn entry(id: u64) -> NodeEntry {
        nodes(id).remove(&id).unwrap()
    }

    fn loads(map: &ClusterMap) -> BTreeMap<NodeId, usize> {
        map.nodes
            .keys()
            .map(|&n| {
                let load = map
                    .groups
                    .values()
                    .filter(|g| g.replicas.contains(&n))
                    .count();
                (n, load)
            })
            .collect()
    }

    fn initialized(mut map: ClusterMap) -> ClusterMap {
        for g in map.groups.values_mut() {
            g.initialized = true;
        }
        map
    }

    #[test]
    fn a_joining_node_takes_an_even_share_of_replicas() {
        let map = initialized(ClusterMap::bootstrap("c".into(), nodes(3), 9, 3).unwrap());
        let next = map.with_node(4, entry(4)).unwrap().unwrap();
        assert!(next.groups.values().all(|g| g.replicas.len() == 3));
        let loads = loads(&next);
        // 27 replicas on 4 nodes: 6 or 7 each.
        assert!(loads.values().all(|&l| (6..=7).contains(&l)), "{loads:?}");
        assert_eq!(next.meta_voters, vec![1, 2, 3, 4]);
        // The same node again is no change; other addresses are refused.
        assert_eq!(next.with_node(4, entry(4)).unwrap(), None);
        assert!(next.with_node(4, entry(5)).is_err());
        let mut clash = entry(5);
        clash.raft_addr = entry(1).raft_addr;
        assert!(next.with_node(5, clash).is_err());
        assert!(next.with_node(0, entry(6)).is_err());
    }

    #[test]
    fn a_single_node_cluster_grows_to_three_replicas() {
        let mut map = initialized(ClusterMap::bootstrap("c".into(), nodes(1), 3, 3).unwrap());
        assert_eq!((map.replicas, map.replica_target()), (3, 1));
        for id in 2..=3 {
            map = map.with_node(id, entry(id)).unwrap().unwrap();
        }
        assert!(map.groups.values().all(|g| g.replicas.len() == 3));
        assert_eq!(map.meta_voters, vec![1, 2, 3]);
        // Voters stop at MAX_META_VOTERS; the rest are learners.
        for id in 4..=7 {
            map = map.with_node(id, entry(id)).unwrap().unwrap();
        }
        assert_eq!(map.meta_voters.len(), MAX_META_VOTERS);
        let loads = loads(&map);
        let (min, max) = (loads.values().min().unwrap(), loads.values().max().unwrap());
        assert!(max - min <= 1, "{loads:?}");
    }

    #[test]
    fn a_removed_node_hands_its_replicas_to_the_others() {
        let map = initialized(ClusterMap::bootstrap("c".into(), nodes(4), 8, 3).unwrap());
        let next = map.without_node(2).unwrap().unwrap();
        assert!(!next.nodes.contains_key(&2));
        assert!(!next.meta_voters.contains(&2));
        for g in next.groups.values() {
            assert_eq!(g.replicas.len(), 3);
            assert!(!g.replicas.contains(&2));
        }
        assert_eq!(next.without_node(2).unwrap(), None);
        // Down to one node: replicas shrink to what exists; the last node
        // stays.
        let one = next
            .without_node(3)
            .unwrap()
            .unwrap()
            .without_node(4)
            .unwrap()
            .unwrap();
        assert!(one.groups.values().all(|g| g.replicas == vec![1]));
        assert!(one.without_node(1).is_err());
        // A map naming a node twice for one group is refused.
        let mut twice = one;
        twice.groups.get_mut(&1).unwrap().replicas = vec![1, 1];
        assert!(twice.validate().is_err());
    }
}
