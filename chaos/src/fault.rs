//! The faults and their schedule.
//!
//! A schedule is a list of steps: inject a fault, hold it, undo it, let
//! the cluster recover. The seed fixes the list (kinds, hold and rest
//! times, and the random choices made when a step runs: which key's
//! leader, which minority). Which node *is* that leader is the cluster's
//! doing, so two runs with one seed share their schedule, not their exact
//! history.
//!
//! Membership faults (add a node, remove one, wipe a node's disk and add
//! it back) need `cairn admin add-node/remove-node`, which do not exist
//! yet; they become further variants here with their own undo.

use crate::cluster::{Cluster, GroupView, NodeState, slot};
use crate::rng::Rng;

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
}

/// The kinds the command line chooses from (`--faults kill,pause,...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Kill,
    Pause,
    Partition,
    Transfer,
}

impl Class {
    pub fn parse(name: &str) -> Result<Class, String> {
        match name {
            "kill" => Ok(Class::Kill),
            "pause" => Ok(Class::Pause),
            "partition" => Ok(Class::Partition),
            "transfer" => Ok(Class::Transfer),
            _ => Err(format!(
                "unknown fault class {name:?} (kill, pause, partition, transfer)"
            )),
        }
    }

    fn faults(self) -> &'static [Fault] {
        match self {
            Class::Kill => &[Fault::KillLeader, Fault::KillRandom],
            Class::Pause => &[Fault::PauseLeader, Fault::PauseRandom],
            Class::Partition => &[Fault::IsolateLeader, Fault::MajorityMinority, Fault::Bridge],
            Class::Transfer => &[Fault::TransferLeader],
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
        let Ok(groups) = cluster.status(id).await else {
            continue;
        };
        // Group 0 is the meta group: it holds no slots.
        let found = groups
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
    }
}

pub fn undo(cluster: &mut Cluster, undo: &Undo) -> Result<(), String> {
    match *undo {
        Undo::Restart(id) => cluster.restart(id),
        Undo::Resume(id) => cluster.resume(id),
        Undo::Heal => {
            cluster.relays.heal();
            Ok(())
        }
        Undo::Nothing => Ok(()),
    }
}
