//! The facade: every operation goes to the group that owns it, on the node
//! that can serve it.
//!
//! An [`Op`] names its group. If this node hosts the group and leads it,
//! the op runs here: a write is proposed (and waited for), a linearizable
//! read passes the group's read barrier and then reads the local engine. A
//! read that accepts staleness (READONLY) runs on any local replica. If
//! another node leads, the op is forwarded to it over the node transport
//! (RPC kind [`FORWARD_KIND`]), or, for a cluster-aware client, answered
//! with `-MOVED` so the client goes there itself. While a group has no
//! leader, the op is retried with backoff until its deadline, then
//! answered `-TRYAGAIN`.
//!
//! Writes carry the connection's `(client_id, serial)`: a write retried
//! after a timeout or a leader change is applied at most once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_engine::IterOptions;
use cairn_replication::{
    BoxFuture, Group, NodeId, ReplicationError, Request, RpcHandler, RpcRequest,
};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::command::{Command, ReadState, StateError, StoredValue, execute};
use crate::entry::{self, Args, DataEntry};
use crate::glob::glob_match;
use crate::resp::Frame;
use crate::server::Shared;
use crate::slot::{MAX_SLOT, data_key, slot_keys_end, slot_keys_start, split_data_key};

/// RPC kind of a forwarded operation.
pub const FORWARD_KIND: u8 = 64;

/// How many times an op may be forwarded before it is answered TRYAGAIN
/// (a leader changing under it).
const MAX_HOPS: u8 = 3;

/// Largest keys one SCAN step returns, whatever COUNT says.
pub const SCAN_MAX_COUNT: usize = 10_000;

/// What to do in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Propose an encoded `DataEntry` (data group) or `MetaCommand` (meta
    /// group) and return the applied reply.
    Propose { entry: Vec<u8> },
    /// Run read-only commands of one slot against the engine.
    Read { slot: u16, commands: Vec<Args> },
    /// The stored bytes of keys of one slot (WATCH), as bulk or null.
    Peek { slot: u16, keys: Vec<Vec<u8>> },
    /// Live keys from slot `slot` (after user key `after`, if any) up to
    /// the group's last slot, at most `count` examined: one SCAN step.
    Scan {
        slot: u16,
        after: Option<Vec<u8>>,
        count: usize,
        pattern: Option<Vec<u8>>,
    },
    /// Live keys of the group (DBSIZE), or of one of its slots
    /// (CLUSTER COUNTKEYSINSLOT).
    Count { slot: Option<u16> },
    /// A connection's pipelined reads of one group, each `(slot, args)`,
    /// after one read barrier and on one engine snapshot; the reply is an
    /// array of each command's reply.
    Reads { commands: Vec<(u16, Args)> },
}

impl Op {
    fn is_write(&self) -> bool {
        matches!(self, Op::Propose { .. })
    }
}

/// Whether a read may be served by a follower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consistency {
    Linearizable,
    /// Any local replica; possibly stale.
    Local,
}

/// Who is asking: for dedup, and for how to answer a misrouted op.
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub client_id: u64,
    pub serial: u64,
    pub consistency: Consistency,
    /// The client follows `-MOVED` (it asked for the cluster topology).
    pub follows_moved: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Forward {
    group: u64,
    op: Op,
    client_id: u64,
    serial: u64,
    consistency: Consistency,
    hops: u8,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ForwardReply {
    Done(Frame),
    /// The node cannot serve it; `leader` is who it believes leads.
    Redirect {
        leader: Option<NodeId>,
    },
}

/// Why an attempt did not produce a reply.
enum Miss {
    /// Another node leads (or should be asked).
    Elsewhere(NodeId),
    /// No leader known, or a transient failure: try again.
    Retry(String),
    /// A final error reply.
    Fail(Frame),
}

/// Runs one read-only command against a snapshot; its errors are its reply.
fn read_one(state: &SlotState<'_>, args: &Args, now: u64) -> Frame {
    match Command::parse(args.clone()) {
        Err(e) => Frame::Error(e.to_redis_error()),
        Ok(cmd) if cmd.is_write() => err("ERR internal: write sent as a read"),
        Ok(cmd) => match execute(&cmd, state, now) {
            Ok(outcome) => outcome.reply,
            Err(e) => Frame::Error(e.to_redis_error()),
        },
    }
}

fn err(text: impl Into<String>) -> Frame {
    Frame::Error(text.into().into_bytes())
}

impl Shared {
    /// Runs `op` in `group` on the right node and returns its reply. `slot`
    /// is the slot a `-MOVED` names (data ops only).
    pub async fn route(&self, group: u64, slot: Option<u16>, op: Op, caller: Caller) -> Frame {
        let deadline = Instant::now() + self.config.request_timeout();
        let mut backoff = Duration::from_millis(10);
        let mut target: Option<NodeId> = None;
        let mut hops: u8 = 0;
        loop {
            let attempt = match target.filter(|&t| t != self.id) {
                None => self.serve(group, &op, caller, deadline).await,
                Some(node) => {
                    if caller.follows_moved
                        && let Some(slot) = slot
                        && let Some(addr) = self.client_addr_of(node)
                    {
                        return err(format!("MOVED {slot} {addr}"));
                    }
                    self.forward(node, group, &op, caller, hops).await
                }
            };
            match attempt {
                Ok(frame) => return frame,
                Err(Miss::Fail(frame)) => return frame,
                Err(Miss::Elsewhere(node)) => {
                    hops += 1;
                    if hops > MAX_HOPS {
                        // Leadership is moving; wait a little before chasing it.
                        hops = 0;
                        target = None;
                        if !self.sleep_until(deadline, &mut backoff).await {
                            return tryagain(group, "the leader keeps moving");
                        }
                    } else {
                        target = Some(node);
                    }
                }
                Err(Miss::Retry(why)) => {
                    debug!(group, %why, "retrying");
                    target = None;
                    hops = 0;
                    if !self.sleep_until(deadline, &mut backoff).await {
                        return tryagain(group, &why);
                    }
                }
            }
        }
    }

    async fn sleep_until(&self, deadline: Instant, backoff: &mut Duration) -> bool {
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        tokio::time::sleep((*backoff).min(deadline - now)).await;
        *backoff = (*backoff * 2).min(Duration::from_millis(200));
        true
    }

    /// One attempt on this node.
    async fn serve(
        &self,
        group_id: u64,
        op: &Op,
        caller: Caller,
        deadline: Instant,
    ) -> Result<Frame, Miss> {
        let Some(group) = self.node.group(group_id) else {
            // Not hosted here: ask the leader we last heard of, or a replica.
            return match self.guess_leader(group_id) {
                Some(node) if node != self.id => Err(Miss::Elsewhere(node)),
                _ => Err(Miss::Retry(format!("group {group_id} is not known yet"))),
            };
        };
        // A READONLY read stays on this replica unless it is a new one,
        // behind what a deleted replica of the group here already served:
        // then it goes to the leader like a default read would.
        if caller.consistency == Consistency::Local && !op.is_write() {
            let retired = self.retired_applied(group_id);
            if retired == 0 || group.metrics().last_applied.map_or(0, |l| l.index) >= retired {
                return self.read_local(group_id, op);
            }
        }
        if !group.is_leader() {
            return match group.metrics().leader {
                Some(leader) if leader != self.id => {
                    self.note_leader(group_id, leader);
                    Err(Miss::Elsewhere(leader))
                }
                _ => Err(Miss::Retry(format!("group {group_id} has no leader"))),
            };
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let work = async {
            match op {
                Op::Propose { entry } => self.propose(&group, entry, caller).await,
                _ => match group.ensure_linearizable().await {
                    Ok(()) => self.read_local(group_id, op),
                    Err(e) => Err(self.miss(group_id, e)),
                },
            }
        };
        match tokio::time::timeout(left, work).await {
            Ok(result) => result,
            // The outcome of a write is unknown. The router retries it until
            // the request's deadline with the same serial, so it is applied
            // at most once.
            Err(_) => Err(Miss::Retry(format!("group {group_id}: no reply in time"))),
        }
    }

    async fn propose(&self, group: &Group, command: &[u8], caller: Caller) -> Result<Frame, Miss> {
        // The leader stamps its own clock, so a proxy's clock never moves a
        // group's replicated clock.
        let command = if group.id() == crate::cluster::map::META_GROUP {
            command.to_vec()
        } else {
            match entry::decode::<DataEntry>(command) {
                Ok(mut data) => {
                    *data.now_ms_mut() = crate::clock::wall_clock_ms();
                    entry::encode(&data)
                }
                Err(e) => return Err(Miss::Fail(err(format!("ERR {e}")))),
            }
        };
        let request = Request {
            client_id: caller.client_id,
            serial: caller.serial,
            command,
        };
        match group.propose(request).await {
            Ok(response) => Ok(if group.id() == crate::cluster::map::META_GROUP {
                // The meta reply travels as a bulk of its encoding.
                Frame::Bulk(response.payload)
            } else {
                entry::decode_reply(&response.payload)
            }),
            Err(e) => Err(self.miss(group.id(), e)),
        }
    }

    fn miss(&self, group: u64, e: ReplicationError) -> Miss {
        match e {
            ReplicationError::NotLeader {
                leader: Some((id, _)),
                ..
            } => {
                self.note_leader(group, id);
                Miss::Elsewhere(id)
            }
            // A timed-out write may have been applied; the retry carries the
            // same serial, so it is not applied twice.
            ReplicationError::NotLeader { .. }
            | ReplicationError::NoLeader { .. }
            | ReplicationError::Timeout { .. }
            | ReplicationError::Transport { .. } => Miss::Retry(e.to_string()),
            other => Miss::Fail(err(format!("CLUSTERDOWN {other}"))),
        }
    }

    async fn forward(
        &self,
        node: NodeId,
        group: u64,
        op: &Op,
        caller: Caller,
        hops: u8,
    ) -> Result<Frame, Miss> {
        let Some(addr) = self.raft_addr_of(node) else {
            // A leader hint naming a node that left the map would be
            // followed on every retry, forever: drop it, so the next try
            // asks a replica the map names.
            self.forget_leader(group);
            return Err(Miss::Retry(format!(
                "node {node} is not in the cluster map"
            )));
        };
        let body = entry::encode(&Forward {
            group,
            op: op.clone(),
            client_id: caller.client_id,
            serial: caller.serial,
            consistency: caller.consistency,
            hops,
        });
        let request = RpcRequest {
            group,
            kind: FORWARD_KIND,
            body,
        };
        let reply = self
            .transport
            .call(node, &addr, request, self.config.request_timeout())
            .await;
        self.metrics.forwarded.inc();
        match reply {
            Ok(bytes) => match entry::decode::<ForwardReply>(&bytes) {
                Ok(ForwardReply::Done(frame)) => {
                    if op.is_write() || caller.consistency == Consistency::Linearizable {
                        self.note_leader(group, node);
                    }
                    Ok(frame)
                }
                Ok(ForwardReply::Redirect {
                    leader: Some(leader),
                }) if leader != node => {
                    self.note_leader(group, leader);
                    Err(Miss::Elsewhere(leader))
                }
                Ok(ForwardReply::Redirect { .. }) => {
                    self.forget_leader(group);
                    Err(Miss::Retry(format!(
                        "node {node} does not lead group {group}"
                    )))
                }
                Err(e) => Err(Miss::Fail(err(format!("ERR node {node}: {e}")))),
            },
            Err(e) => {
                self.forget_leader(group);
                Err(Miss::Retry(e.to_string()))
            }
        }
    }

    /// Serves an op forwarded by another node: here or not at all (the
    /// caller chases the leader).
    async fn serve_forwarded(self: Arc<Self>, forward: Forward) -> ForwardReply {
        let caller = Caller {
            client_id: forward.client_id,
            serial: forward.serial,
            consistency: forward.consistency,
            follows_moved: false,
        };
        let deadline = Instant::now() + self.config.request_timeout();
        let mut backoff = Duration::from_millis(10);
        loop {
            match self
                .serve(forward.group, &forward.op, caller, deadline)
                .await
            {
                Ok(frame) => return ForwardReply::Done(frame),
                Err(Miss::Fail(frame)) => return ForwardReply::Done(frame),
                Err(Miss::Elsewhere(leader)) => {
                    return ForwardReply::Redirect {
                        leader: Some(leader),
                    };
                }
                // Hosted and electing: wait here rather than bounce back.
                Err(Miss::Retry(_)) if self.node.group(forward.group).is_some() => {
                    if !self.sleep_until(deadline, &mut backoff).await {
                        return ForwardReply::Redirect { leader: None };
                    }
                }
                Err(Miss::Retry(_)) => return ForwardReply::Redirect { leader: None },
            }
        }
    }

    /// A read of the local engine (after the barrier, or READONLY).
    fn read_local(&self, group: u64, op: &Op) -> Result<Frame, Miss> {
        let db = self.node.db();
        match op {
            Op::Propose { .. } => Err(Miss::Fail(err("ERR internal: a write is not a read"))),
            Op::Read { slot, commands } => {
                let now = self.clocks.read_time(*slot);
                // One snapshot for every key of the request: MGET never
                // sees half of an MSET.
                let snapshot = db.snapshot();
                let state = SlotState {
                    db,
                    snapshot: &snapshot,
                    slot: *slot,
                };
                let mut replies: Vec<Frame> = commands
                    .iter()
                    .map(|args| read_one(&state, args, now))
                    .collect();
                Ok(if replies.len() == 1 {
                    replies.pop().unwrap_or(Frame::Null)
                } else {
                    Frame::Array(replies)
                })
            }
            Op::Reads { commands } => {
                let snapshot = db.snapshot();
                let replies = commands
                    .iter()
                    .map(|(slot, args)| {
                        let state = SlotState {
                            db,
                            snapshot: &snapshot,
                            slot: *slot,
                        };
                        read_one(&state, args, self.clocks.read_time(*slot))
                    })
                    .collect();
                Ok(Frame::Array(replies))
            }
            Op::Peek { slot, keys } => {
                let now = self.clocks.read_time(*slot);
                let snapshot = db.snapshot();
                let mut values = Vec::with_capacity(keys.len());
                for key in keys {
                    match db.get_at(data_key(*slot, key), &snapshot) {
                        Ok(v) => values
                            .push(crate::app::live(v, now).map_or(Frame::NullBulk, Frame::Bulk)),
                        Err(e) => return Err(Miss::Fail(err(format!("ERR storage failure: {e}")))),
                    }
                }
                Ok(Frame::Array(values))
            }
            Op::Scan {
                slot,
                after,
                count,
                pattern,
            } => self.scan_local(group, *slot, after.as_deref(), *count, pattern.as_deref()),
            Op::Count { slot } => self.count_local(group, *slot),
        }
    }

    fn group_slots(&self, group: u64) -> Option<(u16, u16)> {
        let map = self.map();
        map.groups.get(&group).map(|g| (g.first_slot, g.last_slot))
    }

    /// One SCAN step; replies `[next slot or -1, resume key or null,
    /// [keys]]`: the next step starts in `next slot`, after `resume key`.
    fn scan_local(
        &self,
        group: u64,
        slot: u16,
        after: Option<&[u8]>,
        count: usize,
        pattern: Option<&[u8]>,
    ) -> Result<Frame, Miss> {
        let Some((_, last)) = self.group_slots(group) else {
            return Err(Miss::Retry(format!("group {group} is not in the map")));
        };
        let count = count.clamp(1, SCAN_MAX_COUNT);
        let now = self.clocks.read_time(slot);
        let db = self.node.db();
        let start = match after {
            // The smallest key after `after` in the slot.
            Some(after) => {
                let mut k = data_key(slot, after);
                k.push(0);
                k
            }
            None => slot_keys_start(slot),
        };
        let mut keys = Vec::new();
        let mut examined = 0usize;
        let mut resume: Option<(u16, Vec<u8>)> = None;
        for item in db.iter(IterOptions::range(start, slot_keys_end(last))) {
            let (key, value) =
                item.map_err(|e| Miss::Fail(err(format!("ERR storage failure: {e}"))))?;
            let Some((key_slot, user_key)) = split_data_key(&key) else {
                continue;
            };
            examined += 1;
            let live = StoredValue::peek_expire_at(&value)
                .map(|at| at.is_none_or(|at| at.get() > now))
                .unwrap_or(true);
            if live && pattern.is_none_or(|p| glob_match(p, user_key)) {
                keys.push(Frame::Bulk(user_key.to_vec()));
            }
            if examined >= count {
                resume = Some((key_slot, user_key.to_vec()));
                break;
            }
        }
        let (next_slot, after) = match resume {
            Some((slot, key)) => (i64::from(slot), Frame::Bulk(key)),
            None if last >= MAX_SLOT => (-1, Frame::NullBulk),
            None => (i64::from(last) + 1, Frame::NullBulk),
        };
        Ok(Frame::Array(vec![
            Frame::Integer(next_slot),
            after,
            Frame::Array(keys),
        ]))
    }

    fn count_local(&self, group: u64, slot: Option<u16>) -> Result<Frame, Miss> {
        let Some((mut first, mut last)) = self.group_slots(group) else {
            return Err(Miss::Retry(format!("group {group} is not in the map")));
        };
        if let Some(slot) = slot {
            (first, last) = (slot, slot);
        }
        let db = self.node.db();
        let mut live: i64 = 0;
        let iter = db.iter(IterOptions::range(
            slot_keys_start(first),
            slot_keys_end(last),
        ));
        for item in iter {
            let (key, value) =
                item.map_err(|e| Miss::Fail(err(format!("ERR storage failure: {e}"))))?;
            let Some((slot, _)) = split_data_key(&key) else {
                continue;
            };
            let now = self.clocks.read_time(slot);
            let alive = StoredValue::peek_expire_at(&value)
                .map(|at| at.is_none_or(|at| at.get() > now))
                .unwrap_or(true);
            live += i64::from(alive);
        }
        Ok(Frame::Integer(live))
    }

    fn guess_leader(&self, group: u64) -> Option<NodeId> {
        if let Some(leader) = self.leader_hint(group) {
            return Some(leader);
        }
        let map = self.map();
        map.groups
            .get(&group)
            .and_then(|g| g.replicas.iter().copied().find(|&n| n != self.id))
    }
}

fn tryagain(group: u64, why: &str) -> Frame {
    err(format!(
        "TRYAGAIN group {group} is not available right now ({why})"
    ))
}

/// The engine, at one snapshot, as one slot's [`ReadState`].
struct SlotState<'a> {
    db: &'a cairn_engine::Db,
    snapshot: &'a cairn_engine::Snapshot,
    slot: u16,
}

impl ReadState for SlotState<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateError> {
        let Some(bytes) = self
            .db
            .get_at(data_key(self.slot, key), self.snapshot)
            .map_err(StateError::Engine)?
        else {
            return Ok(None);
        };
        StoredValue::decode(&bytes)
            .map(Some)
            .map_err(|error| StateError::Corrupt {
                key: key.to_vec(),
                error,
            })
    }
}

/// Serves RPC kinds >= 64 for the node. Holds the node weakly: the
/// transport holds the handler, so a strong reference would keep a stopped
/// node (and its sockets) alive.
pub struct AppRpc(pub std::sync::Weak<Shared>);

impl RpcHandler for AppRpc {
    fn handle(&self, request: RpcRequest) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        let shared = self.0.upgrade();
        Box::pin(async move {
            let Some(shared) = shared else {
                return Err("node is stopping".to_owned());
            };
            match request.kind {
                FORWARD_KIND => {
                    let forward: Forward = entry::decode(&request.body)?;
                    shared.metrics.forwarded_in.inc();
                    let reply = shared.serve_forwarded(forward).await;
                    Ok(entry::encode(&reply))
                }
                LEADERS_KIND => Ok(entry::encode(&shared.local_leaders())),
                other => Err(format!("unknown rpc kind {other}")),
            }
        })
    }
}

/// RPC kind asking a node which groups it leads (for CLUSTER SLOTS on
/// nodes that do not host every group).
pub const LEADERS_KIND: u8 = 65;

impl Shared {
    /// Groups this node leads, with their terms.
    pub fn local_leaders(&self) -> BTreeMap<u64, (NodeId, u64)> {
        self.node
            .groups()
            .into_iter()
            .filter_map(|g| {
                let m = g.metrics();
                m.leader.map(|leader| (g.id(), (leader, m.term)))
            })
            .collect()
    }
}
