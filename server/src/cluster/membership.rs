//! Moves each Raft group's membership to what the cluster map says.
//!
//! The map is the desired state: a data group's `replicas` are its voters,
//! and the meta group's voters are `meta_voters` with every other node a
//! learner (so every node applies the map). A node acts only on groups it
//! leads, one step at a time, and the next pass (the map watcher runs every
//! 250 ms) takes the next step:
//!
//! 1. a wanted node that is not a member joins as a learner and catches up;
//! 2. once every wanted voter is a caught-up member, the voters are set to
//!    the wanted ones; voters left out stay on as learners, so they receive
//!    the change that removes them and never campaign again (a leader that
//!    is itself left out first hands leadership to a wanted voter);
//! 3. a learner nobody wants is removed once it has the membership that
//!    demoted it, or at once if its node left the map, or after
//!    [`UNACKED_LEARNER_MS`] without acknowledging (its node may have
//!    deleted the replica already, see [`stale_learners`]).
//!
//! A node whose replica is no longer assigned to it deletes the replica
//! once the group no longer counts it as a voter ([`remove_unassigned`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cairn_replication::{Group, GroupMetrics, NodeId};
use tracing::{info, warn};

use crate::cluster::map::{ClusterMap, META_GROUP};
use crate::server::Shared;

/// A learner this many entries behind is not promoted yet.
const MAX_PROMOTE_LAG: u64 = 100;

/// The members a group should have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

/// What the map wants for group `id`, or `None` if it is not this node's
/// business to change it (unknown, uninitialized, or an old map without
/// meta voters).
pub fn target(map: &ClusterMap, id: u64) -> Option<Target> {
    if id == META_GROUP {
        if map.meta_voters.is_empty() {
            return None;
        }
        let voters: BTreeSet<NodeId> = map.meta_voters.iter().copied().collect();
        let learners = map
            .nodes
            .keys()
            .copied()
            .filter(|n| !voters.contains(n))
            .collect();
        return Some(Target { voters, learners });
    }
    let group = map.groups.get(&id)?;
    if !group.initialized || group.replicas.is_empty() {
        return None;
    }
    Some(Target {
        voters: group.replicas.iter().copied().collect(),
        learners: BTreeSet::new(),
    })
}

/// One step of the change that moves `group` (led here) towards `target`.
/// Returns whether anything was done.
pub async fn step(shared: &Arc<Shared>, group: &Group, map: &ClusterMap, target: &Target) -> bool {
    let id = group.id();
    let m = group.metrics();
    let me = shared.id;
    // 1. Wanted nodes that are not members join as learners.
    let members: BTreeSet<NodeId> = m.voters.union(&m.learners).copied().collect();
    let missing: Vec<NodeId> = target
        .voters
        .union(&target.learners)
        .copied()
        .filter(|n| !members.contains(n))
        .collect();
    if let Some(&node) = missing.first() {
        let Some(entry) = map.nodes.get(&node) else {
            return false;
        };
        info!(group = id, node, "adding a learner");
        if let Err(e) = group.add_learner(node, entry.info()).await {
            // It stays a learner if it was added; its catch-up is watched
            // below on the next pass.
            warn!(group = id, node, error = %e, "adding a learner");
        }
        return true;
    }
    // 2. The voters become the wanted ones once all are caught up.
    if m.voters != target.voters {
        let behind = target.voters.iter().any(|n| {
            !m.voters.contains(n)
                && m.followers
                    .get(n)
                    .is_none_or(|p| p.matched_index.is_none() || p.lag > MAX_PROMOTE_LAG)
        });
        if behind {
            return false;
        }
        if !target.voters.contains(&me) {
            if let Some(&to) = target.voters.intersection(&m.voters).next() {
                info!(group = id, to, "handing leadership over before leaving");
                if let Err(e) = group.transfer_leader(to).await {
                    warn!(group = id, to, error = %e, "leader transfer");
                }
            } else {
                // No wanted node votes yet: let them all vote first, this
                // leader included; the next pass hands over.
                let both = m.voters.union(&target.voters).copied().collect();
                set_voters(group, both).await;
            }
            return true;
        }
        set_voters(group, target.voters.clone()).await;
        return true;
    }
    // 3. Unwanted learners go once they have seen the change.
    let now = Instant::now();
    let stale = {
        let mut waiting = lock(&shared.unacked_learners);
        stale_learners(&m, target, map, id, &mut waiting, now)
    };
    if stale.is_empty() {
        return false;
    }
    info!(group = id, nodes = ?stale, "removing learners");
    if let Err(e) = group.remove_learners(stale).await {
        warn!(group = id, error = %e, "removing learners");
    }
    true
}

/// How long an unwanted learner may go without acknowledging the current
/// membership before it is removed anyway. Its node deletes its replica as
/// soon as it has seen itself demoted (`remove_unassigned`), so it cannot
/// acknowledge a later membership entry or a new leader's first append:
/// without a bound it would stay a learner forever. Removing one that had
/// not seen its demotion costs at most a disruptive election, never
/// safety (its log lacks the committed change, so it cannot win).
pub const UNACKED_LEARNER_MS: u64 = 10_000;

/// The learners of a group (led here, metrics `m`) to remove: wanted by
/// nobody, and either their node left the map, or they acknowledged the
/// current membership, or they have not for [`UNACKED_LEARNER_MS`].
/// `waiting` holds since when each (group, learner) has been waited for.
pub fn stale_learners(
    m: &GroupMetrics,
    target: &Target,
    map: &ClusterMap,
    group: u64,
    waiting: &mut HashMap<(u64, NodeId), Instant>,
    now: Instant,
) -> BTreeSet<NodeId> {
    let unwanted: BTreeSet<NodeId> = m
        .learners
        .iter()
        .copied()
        .filter(|n| !target.learners.contains(n) && !target.voters.contains(n))
        .collect();
    waiting.retain(|&(g, n), _| g != group || unwanted.contains(&n));
    unwanted
        .into_iter()
        .filter(|n| {
            let acked = m
                .followers
                .get(n)
                .and_then(|p| p.matched_index)
                .is_some_and(|matched| Some(matched) >= m.membership_index);
            let since = *waiting.entry((group, *n)).or_insert(now);
            !map.nodes.contains_key(n)
                || acked
                || now.saturating_duration_since(since) >= Duration::from_millis(UNACKED_LEARNER_MS)
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn set_voters(group: &Group, voters: BTreeSet<NodeId>) {
    info!(group = group.id(), voters = ?voters, "changing voters");
    if let Err(e) = group.set_voters_keeping_learners(voters).await {
        warn!(group = group.id(), error = %e, "changing voters");
    }
}

/// Deletes this node's replicas of data groups the map no longer assigns
/// here, once the group does not count this node as a voter (the leader
/// demoted it, or it never joined).
pub async fn remove_unassigned(shared: &Arc<Shared>, map: &ClusterMap) -> Result<(), String> {
    if map.epoch == 0 {
        return Ok(());
    }
    for group in shared.node.groups() {
        let id = group.id();
        if id == META_GROUP {
            continue;
        }
        let assigned = map
            .groups
            .get(&id)
            .is_some_and(|g| g.replicas.contains(&shared.id));
        if assigned || group.metrics().voters.contains(&shared.id) {
            continue;
        }
        info!(
            group = id,
            "deleting this replica: the map moved it elsewhere"
        );
        // Noted before (a replica created meanwhile must not serve older
        // state) and after (the last entries applied before it stopped).
        let applied =
            |g: &cairn_replication::Group| g.metrics().last_applied.map_or(0, |l| l.index);
        shared.note_retired(id, applied(&group));
        shared.clocks.unregister(id);
        shared
            .node
            .remove_group(id)
            .await
            .map_err(|e| format!("remove group {id}: {e}"))?;
        shared.note_retired(id, applied(&group));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::map::NodeEntry;

    fn map(nodes: u64, meta_voters: Vec<NodeId>) -> ClusterMap {
        let nodes = (1..=nodes)
            .map(|id| {
                let entry = NodeEntry {
                    raft_addr: format!("127.0.0.1:{}", 7400 + id),
                    client_addr: format!("127.0.0.1:{}", 7300 + id),
                    admin_addr: format!("127.0.0.1:{}", 7500 + id),
                };
                (id, entry)
            })
            .collect();
        let mut map = ClusterMap::bootstrap("c".into(), nodes, 2, 3).unwrap_or_default();
        map.meta_voters = meta_voters;
        map
    }

    #[test]
    fn targets_follow_the_map() {
        let mut m = map(4, vec![1, 2, 3]);
        let meta = target(&m, META_GROUP).unwrap();
        assert_eq!(meta.voters, BTreeSet::from([1, 2, 3]));
        assert_eq!(meta.learners, BTreeSet::from([4]));
        // Uninitialized groups are left to their first replica.
        assert_eq!(target(&m, 1), None);
        m.groups.get_mut(&1).unwrap().initialized = true;
        let one = target(&m, 1).unwrap();
        assert_eq!(one.voters.len(), 3);
        assert!(one.learners.is_empty());
        assert_eq!(target(&m, 99), None);
        // Maps from before membership changes leave the meta group alone.
        assert_eq!(target(&map(3, vec![]), META_GROUP), None);
    }

    #[test]
    fn a_learner_that_never_acknowledges_is_removed_after_a_bound() {
        // A regression found by cairn-chaos (seed 22, 5 nodes): node 5 was
        // demoted in group 9 and deleted its replica; a later membership
        // entry (or a new leader, which knows no follower's progress) left
        // it unable to acknowledge, and it stayed a learner for good.
        let m = map(4, vec![1, 2, 3]);
        let target = Target {
            voters: BTreeSet::from([1, 2, 3]),
            learners: BTreeSet::new(),
        };
        let progress = |matched| cairn_replication::FollowerProgress {
            matched_index: matched,
            lag: 0,
        };
        let metrics = GroupMetrics {
            group: 1,
            node: 1,
            state: "leader",
            term: 3,
            leader: Some(1),
            last_log_index: Some(40),
            last_applied: None,
            snapshot: None,
            purged: None,
            voters: BTreeSet::from([1, 2, 3]),
            learners: BTreeSet::from([4]),
            membership_index: Some(30),
            followers: [
                (2, progress(Some(40))),
                (3, progress(Some(40))),
                (4, progress(Some(20))),
            ]
            .into(),
            proposed_requests: 0,
            proposed_batches: 0,
        };
        let mut waiting = HashMap::new();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Behind the membership entry: waited for, up to the bound.
        assert!(stale_learners(&metrics, &target, &m, 1, &mut waiting, t0).is_empty());
        let almost = UNACKED_LEARNER_MS - 1;
        assert!(stale_learners(&metrics, &target, &m, 1, &mut waiting, at(almost)).is_empty());
        let late = stale_learners(
            &metrics,
            &target,
            &m,
            1,
            &mut waiting,
            at(UNACKED_LEARNER_MS),
        );
        assert_eq!(late, BTreeSet::from([4]));
        // Acknowledged: removed at once, and a new wait starts afresh.
        let mut acked = metrics.clone();
        acked.followers.insert(4, progress(Some(30)));
        let mut fresh = HashMap::new();
        let now = stale_learners(&acked, &target, &m, 1, &mut fresh, t0);
        assert_eq!(now, BTreeSet::from([4]));
        // A new leader knows no progress: still bounded.
        let mut unknown = metrics.clone();
        unknown.followers.remove(&4);
        let mut fresh = HashMap::new();
        assert!(stale_learners(&unknown, &target, &m, 1, &mut fresh, t0).is_empty());
        let late = stale_learners(&unknown, &target, &m, 1, &mut fresh, at(UNACKED_LEARNER_MS));
        assert_eq!(late, BTreeSet::from([4]));
        // A wanted learner is never removed, and its wait is forgotten.
        let wanted = Target {
            voters: target.voters.clone(),
            learners: BTreeSet::from([4]),
        };
        assert!(stale_learners(&metrics, &wanted, &m, 1, &mut waiting, at(60_000)).is_empty());
        assert!(waiting.is_empty());
    }
}
