//! The faults and their schedule.
//!
//! A schedule is a list of steps: inject a fault, hold it, undo it, let
//! the cluster recover. The seed fixes the list (kinds, hold and rest
//! times, and the random choices made when a step runs: which key's
//! leader, which minority). Which node *is* that leader is the cluster's
//! doing, so two runs with one seed share their schedule, not their exact
//! history.
//!
//! Membership faults change the node set through the admin API
//! (`add-node`, `remove-node`) while the clients run: a node joins and one
//! (maybe the same) leaves, or a node leaves, has its disk wiped and joins
//! again under its old id. The node set a step leaves behind is the one
//! later faults pick from, so kills, pauses and partitions also hit nodes
//! that joined. Every wait of a membership step is bounded
//! ([`MEMBERSHIP_WAIT`]); one that runs out is a problem of the run, not
//! a hang.

use std::time::Duration;

use crate::cluster::{Cluster, GroupView, NodeState, slot};
use crate::rng::Rng;

/// The bound of each wait of a membership step: a removed node no longer
/// counted by any group, a joined node in every map, every group's
/// membership settled after a join (a debug build moves 9 groups' replicas
/// by snapshot in well under a minute on 2 cores).
pub const MEMBERSHIP_WAIT: Duration = Duration::from_secs(90);

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the leader of the group holding a workload key; restart it
    /// after the hold.
    KillLeader,
    /// SIGKILL a random node; restart it after the hold.
    KillRandom,
    /// SIGSTOP a key's group leader for longer than an election timeout,
    /// then SIGCONT: it wakes up believing it leads.
    PauseLeader,
    /// SIGSTOP a random node, then SIGCONT.
    PauseRandom,
    /// Cut one node (a key's group leader) off from all the others.
    IsolateLeader,
    /// Split the nodes into a random minority and the majority.
    MajorityMinority,
    /// Two halves that only talk through one bridge node (with 3 nodes:
    /// a line 1 - 2 - 3, with the middle chosen at random).
    Bridge,
    /// Move a key's group leadership to another replica under load.
    TransferLeader,
    /// A node that is out (a fresh id at first) joins with `--join` and an
    /// empty disk; after the hold a random member (perhaps that one)
    /// leaves and is stopped. The cluster keeps its size.
    AddRemove,
    /// A random member leaves and is stopped; its data directory is wiped
    /// and, after the hold, it joins again under the same id, catches up
    /// by snapshot and must serve. The cluster is one node short during
    /// the hold (with 3 nodes: 2, and every group runs on 2 replicas).
    WipeAndReAdd,
}

/// The kinds the command line chooses from (`--faults kill,pause,...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Kill,
    Pause,
    Partition,
    Transfer,
    Membership,
}

impl Class {
    pub fn parse(name: &str) -> Result<Class, String> {
        match name {
            "kill" => Ok(Class::Kill),
            "pause" => Ok(Class::Pause),
            "partition" => Ok(Class::Partition),
            "transfer" => Ok(Class::Transfer),
            "membership" => Ok(Class::Membership),
            _ => Err(format!(
                "unknown fault class {name:?} (kill, pause, partition, transfer, membership)"
            )),
        }
    }

    fn faults(self) -> &'static [Fault] {
        match self {
            Class::Kill => &[Fault::KillLeader, Fault::KillRandom],
            Class::Pause => &[Fault::PauseLeader, Fault::PauseRandom],
            Class::Partition => &[Fault::IsolateLeader, Fault::MajorityMinority, Fault::Bridge],
            Class::Transfer => &[Fault::TransferLeader],
            Class::Membership => &[Fault::AddRemove, Fault::WipeAndReAdd],
        }
    }
}

impl Fault {
    pub fn class(self) -> Class {
        match self {
            Fault::KillLeader | Fault::KillRandom => Class::Kill,
            Fault::PauseLeader | Fault::PauseRandom => Class::Pause,
            Fault::IsolateLeader | Fault::MajorityMinority | Fault::Bridge => Class::Partition,
            Fault::TransferLeader => Class::Transfer,
            Fault::AddRemove | Fault::WipeAndReAdd => Class::Membership,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "kill-leader",
            Fault::KillRandom => "kill",
            Fault::PauseLeader => "pause-leader",
            Fault::PauseRandom => "pause",
            Fault::IsolateLeader => "isolate-leader",
            Fault::MajorityMinority => "majority-minority",
            Fault::Bridge => "bridge",
            Fault::TransferLeader => "transfer-leader",
            Fault::AddRemove => "add-remove",
            Fault::WipeAndReAdd => "wipe-readd",
        }
    }
}

/// One step of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub fault: Fault,
    /// How long the fault lasts (a kill: until the restart).
    pub hold_ms: u64,
    /// Quiet time after undoing it.
    pub rest_ms: u64,
}

/// A random step from `classes`: holds of 1.5-6 s (loopback elections
/// time out after 150-300 ms, so every pause and partition outlasts
/// several), rests of 1-4 s.
pub fn random_step(rng: &mut Rng, classes: &[Class]) -> Option<Step> {
    let class = rng.pick(classes)?;
    let fault = *rng.pick(class.faults())?;
    Some(Step {
        fault,
        hold_ms: rng.between(1_500, 6_000),
        rest_ms: rng.between(1_000, 4_000),
    })
}

/// What undoes an injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo {
    Restart(u64),
    Resume(u64),
    Heal,
    Nothing,
    /// Take the member out (remove, wait, SIGKILL).
    Leave(u64),
    /// Bring the node in again (wipe, `--join`, add) and wait until it
    /// is a caught-up replica that serves.
    Rejoin(u64),
}

/// The leader of the group holding `key`, as the first running node that
/// knows one sees it (a node does not learn the leaders of groups it does
/// not host).
async fn leader_of(cluster: &Cluster, key: &str) -> Option<(GroupView, u64)> {
    let s = slot(key.as_bytes());
    for id in cluster.ids() {
        if cluster.state(id) != Some(NodeState::Running) {
            continue;
        }
        let Ok(view) = cluster.status(id).await else {
            continue;
        };
        // Group 0 is the meta group: it holds no slots.
        let found = view
            .groups
            .into_iter()
            .find(|g| g.id != 0 && g.first_slot <= s && s <= g.last_slot);
        if let Some(group) = found
            && let Some(leader) = group.leader
        {
            return Some((group, leader));
        }
    }
    None
}

fn running(cluster: &Cluster) -> Vec<u64> {
    cluster
        .ids()
        .into_iter()
        .filter(|&id| cluster.state(id) == Some(NodeState::Running))
        .collect()
}

/// Injects `fault`; `key` picks the group for leader faults. Returns a
/// description and its undo.
pub async fn inject(
    cluster: &mut Cluster,
    fault: Fault,
    key: &str,
    rng: &mut Rng,
) -> Result<(String, Undo), String> {
    let nodes = cluster.ids();
    let random = *rng
        .pick(&running(cluster))
        .ok_or("no running node to fault")?;
    let leader = match fault {
        Fault::KillLeader | Fault::PauseLeader | Fault::IsolateLeader | Fault::TransferLeader => {
            leader_of(cluster, key).await
        }
        _ => None,
    };
    // No leader known (an election under way): a random node stands in.
    let leader_id = leader.as_ref().map_or(random, |(_, l)| *l);
    match fault {
        Fault::KillLeader | Fault::KillRandom => {
            cluster.kill(leader_id)?;
            Ok((
                format!("SIGKILL node {leader_id}"),
                Undo::Restart(leader_id),
            ))
        }
        Fault::PauseLeader | Fault::PauseRandom => {
            cluster.pause(leader_id)?;
            Ok((format!("SIGSTOP node {leader_id}"), Undo::Resume(leader_id)))
        }
        Fault::IsolateLeader => {
            cluster.relays.cut_between(&[leader_id], &nodes);
            Ok((format!("isolate node {leader_id}"), Undo::Heal))
        }
        Fault::MajorityMinority => {
            let mut shuffled = nodes.clone();
            rng.shuffle(&mut shuffled);
            let minority: Vec<u64> = shuffled.into_iter().take((nodes.len() - 1) / 2).collect();
            cluster.relays.cut_between(&minority, &nodes);
            Ok((format!("partition {minority:?} from the rest"), Undo::Heal))
        }
        Fault::Bridge => {
            let mut shuffled = nodes.clone();
            rng.shuffle(&mut shuffled);
            let half = nodes.len() / 2;
            let (left, rest) = shuffled.split_at(half);
            let (bridge, right) = rest.split_first().ok_or("bridge needs 3 nodes")?;
            for &a in left {
                for &b in right {
                    cluster.relays.set_cut(a, b, true);
                }
            }
            Ok((
                format!("bridge {left:?} - {bridge} - {right:?}"),
                Undo::Heal,
            ))
        }
        Fault::TransferLeader => {
            let (group, l) = leader.ok_or_else(|| format!("no leader known for {key}"))?;
            let others: Vec<u64> = group.replicas.iter().copied().filter(|&r| r != l).collect();
            let to = *rng.pick(&others).ok_or("a group of one replica")?;
            cluster.transfer_leader(l, group.id, to).await?;
            Ok((
                format!("transfer group {} from {l} to {to}", group.id),
                Undo::Nothing,
            ))
        }
        Fault::AddRemove => {
            let joining = *cluster.out().first().ok_or("no node id is out")?;
            cluster.join(joining, MEMBERSHIP_WAIT).await?;
            let leaving = *rng.pick(&cluster.ids()).ok_or("no member")?;
            Ok((
                format!("node {joining} joined; node {leaving} leaves after the hold"),
                Undo::Leave(leaving),
            ))
        }
        Fault::WipeAndReAdd => {
            if nodes.len() < 3 {
                return Err(format!("only {} members", nodes.len()));
            }
            cluster.leave(random, MEMBERSHIP_WAIT).await?;
            Ok((
                format!("node {random} left; wiped, it joins again after the hold"),
                Undo::Rejoin(random),
            ))
        }
    }
}

pub async fn undo(cluster: &mut Cluster, undo: &Undo) -> Result<(), String> {
    match *undo {
        Undo::Restart(id) => cluster.restart(id),
        Undo::Resume(id) => cluster.resume(id),
        Undo::Heal => {
            cluster.relays.heal();
            Ok(())
        }
        Undo::Nothing => Ok(()),
        Undo::Leave(id) => cluster.leave(id, MEMBERSHIP_WAIT).await,
        Undo::Rejoin(id) => {
            cluster.join(id, MEMBERSHIP_WAIT).await?;
            cluster.wait_settled(MEMBERSHIP_WAIT).await?;
            cluster.serves(id, MEMBERSHIP_WAIT).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Fault; 10] = [
        Fault::KillLeader,
        Fault::KillRandom,
        Fault::PauseLeader,
        Fault::PauseRandom,
        Fault::IsolateLeader,
        Fault::MajorityMinority,
        Fault::Bridge,
        Fault::TransferLeader,
        Fault::AddRemove,
        Fault::WipeAndReAdd,
    ];

    #[test]
    fn every_class_parses_and_owns_its_faults() {
        // `--faults` names map to classes, and each fault belongs to the
        // class that lists it (the summary counts by class).
        for name in ["kill", "pause", "partition", "transfer", "membership"] {
            let class = Class::parse(name).unwrap();
            assert!(!class.faults().is_empty());
            for f in class.faults() {
                assert_eq!(f.class(), class, "{f:?}");
            }
        }
        assert!(Class::parse("members").unwrap_err().contains("membership"));
        for f in ALL {
            assert!(f.class().faults().contains(&f), "{f:?}");
        }
        let names: std::collections::BTreeSet<_> = ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), ALL.len(), "fault names must be distinct");
    }

    #[test]
    fn random_steps_stay_in_the_chosen_classes_and_reach_both_membership_faults() {
        // One seed gives one schedule; a membership-only schedule holds
        // only membership faults, both kinds, with bounded hold and rest.
        let steps = |seed| {
            let mut rng = Rng::new(seed);
            (0..200)
                .map(|_| random_step(&mut rng, &[Class::Membership]).unwrap())
                .collect::<Vec<_>>()
        };
        let a = steps(21);
        assert_eq!(a, steps(21));
        assert!(a.iter().all(|s| s.fault.class() == Class::Membership));
        for f in [Fault::AddRemove, Fault::WipeAndReAdd] {
            assert!(a.iter().any(|s| s.fault == f), "{f:?} never chosen");
        }
        assert!(
            a.iter()
                .all(|s| (1_500..=6_000).contains(&s.hold_ms)
                    && (1_000..=4_000).contains(&s.rest_ms))
        );
        let mut rng = Rng::new(1);
        assert_eq!(random_step(&mut rng, &[]), None);
        let mixed: Vec<Step> = (0..500)
            .map(|_| random_step(&mut rng, &[Class::Kill, Class::Membership]).unwrap())
            .collect();
        assert!(mixed.iter().any(|s| s.fault.class() == Class::Kill));
        assert!(mixed.iter().any(|s| s.fault.class() == Class::Membership));
        assert!(
            mixed
                .iter()
                .all(|s| matches!(s.fault.class(), Class::Kill | Class::Membership))
        );
    }
}
