//! CLUSTER subcommands, answered from the cluster map and the groups'
//! leaders. Each group is presented as a Redis Cluster shard: its leader is
//! the primary, its other replicas the replicas.

use std::fmt::Write as _;

use cairn_replication::NodeId;

use crate::entry::Args;
use crate::resp::Frame;
use crate::route::{Caller, Consistency, Op};
use crate::server::Shared;
use crate::slot::{MAX_SLOT, key_slot};

use super::map::{ClusterMap, GroupEntry};

fn bulk(s: impl Into<Vec<u8>>) -> Frame {
    Frame::Bulk(s.into())
}

fn error(s: impl Into<String>) -> Frame {
    Frame::Error(s.into().into_bytes())
}

/// Redis node ids are 40 hex characters.
pub fn node_name(id: NodeId) -> String {
    format!("{id:040x}")
}

/// `host:port` split for replies; a port that does not parse is 0.
fn host_port(addr: &str) -> (String, i64) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_matches(['[', ']']).to_owned(),
            port.parse().unwrap_or(0),
        ),
        None => (addr.to_owned(), 0),
    }
}

/// The group's replicas, leader first (or the first replica when no leader
/// is known).
fn ordered_replicas(shared: &Shared, id: u64, group: &GroupEntry) -> Vec<NodeId> {
    let leader = shared
        .leader_hint(id)
        .filter(|l| group.replicas.contains(l))
        .or_else(|| group.replicas.first().copied());
    let mut out: Vec<NodeId> = leader.into_iter().collect();
    out.extend(group.replicas.iter().filter(|&&n| Some(n) != leader));
    out
}

pub async fn cluster(shared: &Shared, args: &Args) -> Frame {
    let sub = args
        .get(1)
        .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
        .unwrap_or_default();
    let map = shared.map();
    match (sub.as_str(), args.len()) {
        ("slots", 2) => slots(shared, &map),
        ("shards", 2) => shards(shared, &map),
        ("nodes", 2) => bulk(nodes(shared, &map)),
        ("myid", 2) => bulk(node_name(shared.id)),
        ("keyslot", 3) => Frame::Integer(i64::from(key_slot(&args[2]))),
        ("info", 2) => bulk(info(shared, &map)),
        ("countkeysinslot", 3) => {
            let Some(slot) = std::str::from_utf8(&args[2])
                .ok()
                .and_then(|s| s.parse::<u16>().ok())
                .filter(|&s| s <= MAX_SLOT)
            else {
                return error("ERR Invalid slot");
            };
            let Some((group, _)) = map.group_of_slot(slot) else {
                return error("CLUSTERDOWN Hash slot not served");
            };
            let caller = Caller {
                client_id: 0,
                serial: 0,
                consistency: Consistency::Linearizable,
                follows_moved: false,
            };
            shared
                .route(group, None, Op::Count { slot: Some(slot) }, caller)
                .await
        }
        ("slots" | "shards" | "nodes" | "myid" | "keyslot" | "info" | "countkeysinslot", _) => {
            error(format!(
                "ERR wrong number of arguments for 'cluster|{sub}' command"
            ))
        }
        _ => error(format!(
            "ERR unknown subcommand '{}'. Try CLUSTER HELP.",
            String::from_utf8_lossy(args.get(1).map(Vec::as_slice).unwrap_or_default())
        )),
    }
}

fn node_frame(map: &ClusterMap, node: NodeId) -> Frame {
    let (host, port) = map
        .nodes
        .get(&node)
        .map(|n| host_port(&n.client_addr))
        .unwrap_or_default();
    Frame::Array(vec![
        bulk(host),
        Frame::Integer(port),
        bulk(node_name(node)),
        Frame::Array(Vec::new()),
    ])
}

fn slots(shared: &Shared, map: &ClusterMap) -> Frame {
    Frame::Array(
        map.groups
            .iter()
            .map(|(&id, group)| {
                let mut entry = vec![
                    Frame::Integer(i64::from(group.first_slot)),
                    Frame::Integer(i64::from(group.last_slot)),
                ];
                entry.extend(
                    ordered_replicas(shared, id, group)
                        .into_iter()
                        .map(|n| node_frame(map, n)),
                );
                Frame::Array(entry)
            })
            .collect(),
    )
}

fn shards(shared: &Shared, map: &ClusterMap) -> Frame {
    let pair = |k: &str, v: Frame| (bulk(k), v);
    Frame::Array(
        map.groups
            .iter()
            .map(|(&id, group)| {
                let replicas = ordered_replicas(shared, id, group);
                let nodes = replicas
                    .iter()
                    .enumerate()
                    .map(|(i, &n)| {
                        let (host, port) = map
                            .nodes
                            .get(&n)
                            .map(|e| host_port(&e.client_addr))
                            .unwrap_or_default();
                        Frame::Map(vec![
                            pair("id", bulk(node_name(n))),
                            pair("port", Frame::Integer(port)),
                            pair("ip", bulk(host.clone())),
                            pair("endpoint", bulk(host)),
                            pair("role", bulk(if i == 0 { "master" } else { "replica" })),
                            pair("replication-offset", Frame::Integer(0)),
                            pair("health", bulk("online")),
                        ])
                    })
                    .collect();
                Frame::Map(vec![
                    pair(
                        "slots",
                        Frame::Array(vec![
                            Frame::Integer(i64::from(group.first_slot)),
                            Frame::Integer(i64::from(group.last_slot)),
                        ]),
                    ),
                    pair("nodes", Frame::Array(nodes)),
                ])
            })
            .collect(),
    )
}

/// CLUSTER NODES: one line per node; a node is shown as the master of the
/// slot ranges whose groups it leads.
fn nodes(shared: &Shared, map: &ClusterMap) -> String {
    let mut out = String::new();
    for (&id, node) in &map.nodes {
        let (host, port) = host_port(&node.client_addr);
        let (_, raft_port) = host_port(&node.raft_addr);
        let myself = if id == shared.id {
            "myself,master"
        } else {
            "master"
        };
        let _ = write!(
            out,
            "{} {host}:{port}@{raft_port} {myself} - 0 0 {} connected",
            node_name(id),
            map.epoch
        );
        for (&gid, group) in &map.groups {
            if ordered_replicas(shared, gid, group).first() == Some(&id) {
                let _ = write!(out, " {}-{}", group.first_slot, group.last_slot);
            }
        }
        out.push('\n');
    }
    out
}

fn info(shared: &Shared, map: &ClusterMap) -> String {
    let assigned: u32 = map
        .groups
        .values()
        .map(|g| u32::from(g.last_slot - g.first_slot) + 1)
        .sum();
    let state = if map.epoch > 0 && shared.ready() {
        "ok"
    } else {
        "fail"
    };
    format!(
        "cluster_enabled:1\r\ncluster_state:{state}\r\ncluster_slots_assigned:{assigned}\r\ncluster_slots_ok:{assigned}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\ncluster_known_nodes:{}\r\ncluster_size:{}\r\ncluster_current_epoch:{}\r\ncluster_my_epoch:{}\r\ncairn_groups:{}\r\n",
        map.nodes.len(),
        map.nodes.len(),
        map.epoch,
        map.epoch,
        map.groups.len(),
    )
}
