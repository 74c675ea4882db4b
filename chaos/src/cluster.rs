//! Real `cairn` processes on loopback, each behind the relays: start,
//! SIGKILL, restart, SIGSTOP/SIGCONT, and their admin API (status, leader
//! transfer, add-node, remove-node).
//!
//! The node set changes: besides the `n` nodes that start the cluster, a
//! few spare ids get ports, certificates and relays up front (a node's
//! `raft_dial` overrides are fixed when it starts, so every node must know
//! the relay to every id it may ever dial). An id is a *member* (started
//! and in the cluster map, as far as the harness made it) or *out*
//! (stopped; its data directory is wiped before it joins again).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::relay::Relays;
use crate::resp::{Conn, Reply};

/// Largest admin reply read, bytes (a /status of a few dozen groups is
/// tens of KiB).
const ADMIN_REPLY_BYTES_MAX: u64 = 4 << 20;

#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub client: SocketAddr,
    pub admin: SocketAddr,
    pub raft: SocketAddr,
}

/// How a node process is doing, as the harness made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    Running,
    Paused,
    Killed,
}

struct Node {
    addrs: Addrs,
    /// The arguments of the next start: the first cluster's (`--peer`s)
    /// until the node is wiped, `join_args` from then on.
    args: Vec<String>,
    /// `cairn start --join`: no peers, waits to be added.
    join_args: Vec<String>,
    data_dir: PathBuf,
    child: Option<Child>,
    state: NodeState,
}

/// One group as a node's /status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub id: u64,
    pub first_slot: u16,
    pub last_slot: u16,
    /// The map's wanted replicas (the meta group's: its voters).
    pub replicas: Vec<u64>,
    pub leader: Option<u64>,
    /// This node's replica, if it hosts one.
    pub local: Option<LocalView>,
}

/// A replica's own Raft membership, from /status.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalView {
    pub leader: bool,
    pub voters: BTreeSet<u64>,
    pub learners: BTreeSet<u64>,
}

/// One node's /status: its map's epoch and nodes, and the groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusView {
    pub epoch: u64,
    pub nodes: BTreeSet<u64>,
    pub groups: Vec<GroupView>,
}

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    nodes: BTreeMap<u64, Node>,
    members: BTreeSet<u64>,
    /// Ids out of the cluster, longest out first.
    out: VecDeque<u64>,
    pub relays: Relays,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in self.nodes.values_mut() {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A loopback port free right now (bound and released; a race with other
/// programs is possible and shows as a failed start).
fn free_port(udp: bool) -> Result<SocketAddr, String> {
    let addr = if udp {
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    } else {
        TcpListener::bind("127.0.0.1:0").and_then(|s| s.local_addr())
    };
    addr.map_err(|e| format!("no free port: {e}"))
}

fn signal(pid: u32, sig: &str) -> Result<(), String> {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .map_err(|e| format!("kill -{sig} {pid}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("kill -{sig} {pid}: {status}"))
    }
}

impl Cluster {
    /// Makes certificates, starts the relays and `n` nodes (node 1
    /// bootstraps), and returns without waiting for them: see
    /// [`Cluster::wait_ready`]. Ids `n + 1 ..= n + spares` are out, ready
    /// to join.
    pub async fn start(
        bin: &Path,
        dir: &Path,
        n: u64,
        spares: u64,
        fsync: &str,
    ) -> Result<Cluster, String> {
        let tls = dir.join("tls");
        let all = n + spares;
        let mut certs = Command::new(bin);
        certs.arg("certs").arg("--out").arg(&tls);
        for id in 1..=all {
            certs.arg("--node").arg(format!("{id}=127.0.0.1"));
        }
        let out = certs
            .output()
            .map_err(|e| format!("run {} certs: {e}", bin.display()))?;
        if !out.status.success() {
            return Err(format!(
                "cairn certs failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let mut addrs = BTreeMap::new();
        for id in 1..=all {
            let a = Addrs {
                client: free_port(false)?,
                admin: free_port(false)?,
                raft: free_port(true)?,
            };
            addrs.insert(id, a);
        }
        let raft: BTreeMap<u64, SocketAddr> = addrs.iter().map(|(&i, a)| (i, a.raft)).collect();
        let relays = Relays::start(&raft).await?;
        let peers: Vec<String> = addrs
            .iter()
            .filter(|&(&i, _)| i <= n)
            .map(|(i, a)| format!("{i}@{}@{}@{}", a.raft, a.client, a.admin))
            .collect();
        let mut nodes = BTreeMap::new();
        for (&id, &a) in &addrs {
            let data_dir = dir.join(format!("node-{id}"));
            let mut join_args = node_args(id, &a, &data_dir, &tls, fsync);
            for &to in addrs.keys().filter(|&&to| to != id) {
                let front = relays
                    .front(id, to)
                    .ok_or_else(|| format!("no relay {id}->{to}"))?;
                join_args.extend(["--raft-dial".to_owned(), format!("{to}@{front}")]);
            }
            let mut args = join_args.clone();
            if id <= n {
                let bootstrap = if id == 1 { "true" } else { "false" };
                args.extend(["--bootstrap".to_owned(), bootstrap.to_owned()]);
                for p in &peers {
                    args.extend(["--peer".to_owned(), p.clone()]);
                }
            }
            join_args.push("--join".to_owned());
            nodes.insert(
                id,
                Node {
                    addrs: a,
                    args,
                    join_args,
                    data_dir,
                    child: None,
                    state: NodeState::Killed,
                },
            );
        }
        let mut cluster = Cluster {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            nodes,
            members: (1..=n).collect(),
            out: (n + 1..=all).collect(),
            relays,
        };
        for id in 1..=n {
            cluster.spawn(id)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, id: u64) -> Result<(), String> {
        let log_path = self.dir.join(format!("node-{id}.log"));
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let err = log
            .try_clone()
            .map_err(|e| format!("open {}: {e}", log_path.display()))?;
        let child = Command::new(&self.bin)
            .args(&node.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start node {id}: {e}"))?;
        node.child = Some(child);
        node.state = NodeState::Running;
        Ok(())
    }

    /// The members: the nodes in the cluster (as the harness made it).
    pub fn ids(&self) -> Vec<u64> {
        self.members.iter().copied().collect()
    }

    /// Ids out of the cluster, longest out first.
    pub fn out(&self) -> Vec<u64> {
        self.out.iter().copied().collect()
    }

    pub fn addrs(&self, id: u64) -> Option<Addrs> {
        self.nodes.get(&id).map(|n| n.addrs)
    }

    pub fn state(&self, id: u64) -> Option<NodeState> {
        self.nodes.get(&id).map(|n| n.state)
    }

    fn pid(&self, id: u64) -> Result<u32, String> {
        self.nodes
            .get(&id)
            .and_then(|n| n.child.as_ref())
            .map(Child::id)
            .ok_or_else(|| format!("node {id} is not running"))
    }

    /// SIGKILL, and reap it.
    pub fn kill(&mut self, id: u64) -> Result<(), String> {
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))?;
        if let Some(mut child) = node.child.take() {
            child.kill().map_err(|e| format!("kill node {id}: {e}"))?;
            let _ = child.wait();
        }
        node.state = NodeState::Killed;
        Ok(())
    }

    pub fn restart(&mut self, id: u64) -> Result<(), String> {
        if self.state(id) != Some(NodeState::Killed) {
            return Err(format!("node {id} is not killed"));
        }
        self.spawn(id)
    }

    pub fn pause(&mut self, id: u64) -> Result<(), String> {
        signal(self.pid(id)?, "STOP")?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.state = NodeState::Paused;
        }
        Ok(())
    }

    pub fn resume(&mut self, id: u64) -> Result<(), String> {
        signal(self.pid(id)?, "CONT")?;
        if let Some(n) = self.nodes.get_mut(&id) {
            n.state = NodeState::Running;
        }
        Ok(())
    }

    /// Every member running, every link up.
    pub fn heal_all(&mut self) -> Result<(), String> {
        self.relays.heal();
        for id in self.ids() {
            match self.state(id) {
                Some(NodeState::Paused) => self.resume(id)?,
                Some(NodeState::Killed) => self.restart(id)?,
                _ => {}
            }
        }
        Ok(())
    }

    /// A node process that exited on its own (a crash): its id and status.
    pub fn crashed(&mut self) -> Option<(u64, String)> {
        for (&id, node) in &mut self.nodes {
            if let Some(child) = node.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                node.child = None;
                node.state = NodeState::Killed;
                return Some((id, status.to_string()));
            }
        }
        None
    }

    /// The map and groups as node `id` sees them.
    pub async fn status(&self, id: u64) -> Result<StatusView, String> {
        let admin = self.addrs(id).ok_or_else(|| format!("no node {id}"))?.admin;
        let (code, body) = http(admin, "GET", "/status", Duration::from_secs(3)).await?;
        if code != 200 {
            return Err(format!("node {id} /status: HTTP {code}"));
        }
        parse_status(&body)
    }

    /// Waits until every running node answers /status and every group has
    /// a leader known to some running node, up to `timeout`.
    ///
    /// Not the node's own `ready` (/health): it also asks for a leader of
    /// groups the node does not host, which a node of a 5-node cluster
    /// does not learn without traffic (see docs/testing.md, "What the
    /// harness found").
    pub async fn wait_ready(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.all_led().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!("cluster not ready after {timeout:?}: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn all_led(&self) -> Result<(), String> {
        let mut views = Vec::new();
        for id in self.ids() {
            if self.state(id) == Some(NodeState::Running) {
                views.extend(self.status(id).await?.groups);
            }
        }
        every_group_led(&views)
    }

    /// Asks the group's leader (per node `ask`) to hand leadership to `to`.
    pub async fn transfer_leader(&self, leader: u64, group: u64, to: u64) -> Result<(), String> {
        let admin = self
            .addrs(leader)
            .ok_or_else(|| format!("no node {leader}"))?
            .admin;
        let path = format!("/admin/transfer-leader?group={group}&to={to}");
        // The leader answers once the transfer is done or has failed.
        let (code, body) = http(admin, "POST", &path, Duration::from_secs(10)).await?;
        if (200..300).contains(&code) {
            Ok(())
        } else {
            Err(format!("transfer-leader: HTTP {code}: {}", body.trim()))
        }
    }
    /// The /status of every running member but `except`, those that
    /// answer.
    pub async fn views(&self, except: Option<u64>) -> Vec<(u64, StatusView)> {
        let mut views = Vec::new();
        for id in self.ids() {
            if Some(id) != except
                && self.state(id) == Some(NodeState::Running)
                && let Ok(v) = self.status(id).await
            {
                views.push((id, v));
            }
        }
        views
    }

    /// Polls `check` over the members' views (but `except`'s) every
    /// 250 ms until it passes or `timeout` is up.
    async fn wait_views(
        &self,
        except: Option<u64>,
        timeout: Duration,
        check: impl Fn(&[(u64, StatusView)]) -> Result<(), String>,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match check(&self.views(except).await) {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!("after {timeout:?}: {last}"));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits until every group's membership is what the map wants
    /// ([`settled`]).
    pub async fn wait_settled(&self, timeout: Duration) -> Result<(), String> {
        self.wait_views(None, timeout, settled)
            .await
            .map_err(|e| format!("membership not settled {e}"))
    }

    /// Asks a running member other than `not` to apply an admin change;
    /// the first that answers decides (a 409 is final).
    async fn admin_change(&self, not: u64, path: &str) -> Result<(), String> {
        let mut last = "no running member to ask".to_owned();
        for id in self.ids() {
            if id == not || self.state(id) != Some(NodeState::Running) {
                continue;
            }
            let Some(a) = self.addrs(id) else { continue };
            // It answers once the meta group committed the new map.
            match http(a.admin, "POST", path, Duration::from_secs(10)).await {
                Ok((code, _)) if (200..300).contains(&code) => return Ok(()),
                Ok((code, body)) => {
                    last = format!("node {id}: HTTP {code}: {}", body.trim());
                    if code == 409 {
                        break;
                    }
                }
                Err(e) => last = e,
            }
        }
        Err(format!("POST {path}: {last}"))
    }

    /// Brings out-id `id` in: once no member counts it any more
    /// ([`absent`]), wipes its data directory, starts it with `--join` and
    /// asks a member to add it; returns when every running member's map
    /// has it. Each wait is bounded by `timeout`. On an error before the
    /// add it is out again.
    pub async fn join(&mut self, id: u64, timeout: Duration) -> Result<(), String> {
        if !self.out.contains(&id) {
            return Err(format!("node {id} is not out"));
        }
        self.wait_views(Some(id), timeout, |v| absent(v, id))
            .await
            .map_err(|e| format!("node {id} still counted {e}"))?;
        let node = self
            .nodes
            .get_mut(&id)
            .ok_or_else(|| format!("no node {id}"))?;
        match std::fs::remove_dir_all(&node.data_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("wipe {}: {e}", node.data_dir.display())),
        }
        node.args = node.join_args.clone();
        let a = node.addrs;
        self.spawn(id)?;
        self.members.insert(id);
        self.out.retain(|&o| o != id);
        let added = self.add(id, a, timeout).await;
        if added.is_err() {
            let _ = self.kill(id);
            self.members.remove(&id);
            self.out.push_back(id);
        }
        added
    }

    async fn add(&self, id: u64, a: Addrs, timeout: Duration) -> Result<(), String> {
        // It must be up before the meta leader tries to replicate to it.
        let deadline = Instant::now() + timeout;
        while self.status(id).await.is_err() {
            if Instant::now() > deadline {
                return Err(format!("node {id} did not start within {timeout:?}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let path = format!(
            "/admin/add-node?id={id}&raft={}&client={}&admin={}",
            a.raft, a.client, a.admin
        );
        self.admin_change(id, &path).await?;
        self.wait_views(Some(id), timeout, |views| {
            match views.iter().find(|(_, v)| !v.nodes.contains(&id)) {
                Some((n, _)) => Err(format!("node {n}'s map lacks node {id}")),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| format!("node {id} added but not in every map {e}"))
    }

    /// Takes member `id` out: asks another member to remove it, waits
    /// (up to `timeout`) until no other member counts it, then SIGKILLs
    /// it. Once the removal is asked it is out, in time or not; an error
    /// then says which wait ran out.
    pub async fn leave(&mut self, id: u64, timeout: Duration) -> Result<(), String> {
        if !self.members.contains(&id) {
            return Err(format!("node {id} is not a member"));
        }
        self.admin_change(id, &format!("/admin/remove-node?id={id}"))
            .await?;
        let gone = self
            .wait_views(Some(id), timeout, |v| absent(v, id))
            .await
            .map_err(|e| format!("node {id} removed but still counted {e}"));
        // A paused node must not be left stopped: SIGKILL ends it either way.
        self.kill(id)?;
        self.members.remove(&id);
        self.out.push_back(id);
        gone
    }

    /// Whether member `id` answers a default (linearizable) GET within
    /// `timeout`.
    pub async fn serves(&self, id: u64, timeout: Duration) -> Result<(), String> {
        let a = self.addrs(id).ok_or_else(|| format!("no node {id}"))?;
        let deadline = Instant::now() + timeout;
        loop {
            let last = match Conn::connect(a.client, Duration::from_secs(1)).await {
                Ok(mut c) => match c
                    .call(&[b"GET", b"chaos-probe"], Duration::from_secs(3))
                    .await
                {
                    Ok(Reply::Bulk(_)) => return Ok(()),
                    Ok(other) => format!("{other:?}"),
                    Err(e) => e,
                },
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "node {id} does not serve after {timeout:?}: {last}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// Whether the nodes' views together name a leader for every group,
/// data groups included.
fn every_group_led(views: &[GroupView]) -> Result<(), String> {
    let mut groups: BTreeMap<u64, bool> = BTreeMap::new();
    for g in views {
        *groups.entry(g.id).or_default() |= g.leader.is_some();
    }
    // Group 0, the meta group, is listed before the cluster map exists.
    if groups.keys().all(|&g| g == 0) {
        return Err("no data groups in the cluster map yet".to_owned());
    }
    match groups.iter().find(|&(_, &led)| !led) {
        Some((g, _)) => Err(format!("no running node knows a leader of group {g}")),
        None => Ok(()),
    }
}

fn parse_status(body: &str) -> Result<StatusView, String> {
    use serde_json::Value;
    let v: Value = serde_json::from_str(body).map_err(|e| format!("bad /status JSON: {e}"))?;
    let groups = v
        .get("groups")
        .and_then(Value::as_array)
        .ok_or("/status without groups")?;
    let ids = |v: Option<&Value>| -> Vec<u64> {
        v.and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    };
    let slot = |g: &Value, i: usize| {
        g.get("slots")
            .and_then(|s| s.get(i))
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0)
    };
    let local = |l: &Value| LocalView {
        leader: l.get("state").and_then(Value::as_str) == Some("leader"),
        voters: ids(l.get("voters")).into_iter().collect(),
        learners: ids(l.get("learners")).into_iter().collect(),
    };
    let groups = groups
        .iter()
        .map(|g| GroupView {
            id: g.get("id").and_then(Value::as_u64).unwrap_or(0),
            first_slot: slot(g, 0),
            last_slot: slot(g, 1),
            replicas: ids(g.get("replicas")),
            leader: g.get("leader").and_then(Value::as_u64),
            local: g.get("local").filter(|l| !l.is_null()).map(local),
        })
        .collect();
    let nodes = v
        .get("nodes")
        .and_then(Value::as_array)
        .map(|n| {
            n.iter()
                .filter_map(|n| n.get("id").and_then(Value::as_u64))
                .collect()
        })
        .unwrap_or_default();
    Ok(StatusView {
        epoch: v.get("epoch").and_then(Value::as_u64).unwrap_or(0),
        nodes,
        groups,
    })
}

/// Whether no view counts `id` in the map or in any replica's
/// membership: then no group can count on its vote, and its disk may be
/// wiped before it joins again (a node that forgets its vote while a
/// group still counts it could vote twice in one term).
pub fn absent(views: &[(u64, StatusView)], id: u64) -> Result<(), String> {
    for (node, view) in views {
        if view.nodes.contains(&id) {
            return Err(format!(
                "node {node}'s map (epoch {}) has node {id}",
                view.epoch
            ));
        }
        for g in &view.groups {
            if let Some(l) = &g.local
                && (l.voters.contains(&id) || l.learners.contains(&id))
            {
                return Err(format!(
                    "node {node}'s replica of group {} counts node {id}",
                    g.id
                ));
            }
        }
    }
    Ok(())
}

/// Whether every group's Raft membership is what the map wants, as its
/// leader sees it: a data group's voters are its replicas; the meta
/// group's voters are the meta voters and every other node of the map a
/// learner; no other learners. All views must share one map epoch.
pub fn settled(views: &[(u64, StatusView)]) -> Result<(), String> {
    let Some((first, map)) = views.first() else {
        return Err("no node answered".to_owned());
    };
    if let Some((node, v)) = views.iter().find(|(_, v)| v.epoch != map.epoch) {
        return Err(format!(
            "node {node} has map epoch {}, node {first} {}",
            v.epoch, map.epoch
        ));
    }
    for g in &map.groups {
        let wanted: BTreeSet<u64> = g.replicas.iter().copied().collect();
        let learners: BTreeSet<u64> = if g.id == 0 {
            map.nodes.difference(&wanted).copied().collect()
        } else {
            BTreeSet::new()
        };
        let leader = views
            .iter()
            .flat_map(|(_, v)| &v.groups)
            .filter(|v| v.id == g.id)
            .find_map(|v| v.local.as_ref().filter(|l| l.leader))
            .ok_or_else(|| format!("group {} has no leader among the answers", g.id))?;
        if leader.voters != wanted || leader.learners != learners {
            return Err(format!(
                "group {}: voters {:?} learners {:?}, want {wanted:?} {learners:?}",
                g.id, leader.voters, leader.learners
            ));
        }
    }
    Ok(())
}

/// The arguments every start of node `id` shares.
fn node_args(id: u64, a: &Addrs, data_dir: &Path, tls: &Path, fsync: &str) -> Vec<String> {
    let path = |p: &Path| p.to_string_lossy().into_owned();
    [
        "start",
        "--node-id",
        &id.to_string(),
        "--data-dir",
        &path(data_dir),
        "--listen",
        &a.client.to_string(),
        "--admin-listen",
        &a.admin.to_string(),
        "--raft-listen",
        &a.raft.to_string(),
        "--network",
        "loopback",
        "--fsync",
        fsync,
        "--tls-ca",
        &path(&tls.join("ca.pem")),
        "--tls-cert",
        &path(&tls.join(format!("node-{id}.pem"))),
        "--tls-key",
        &path(&tls.join(format!("node-{id}-key.pem"))),
        "--memory-mb",
        "64",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// A one-shot HTTP/1.1 request, bounded by `timeout` (a paused node must
/// not hang the schedule).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let request = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect {addr}: {e}"))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
        );
        stream
            .write_all(head.as_bytes())
            .await
            .map_err(|e| format!("send to {addr}: {e}"))?;
        let mut response = Vec::new();
        stream
            .take(ADMIN_REPLY_BYTES_MAX)
            .read_to_end(&mut response)
            .await
            .map_err(|e| format!("read from {addr}: {e}"))?;
        Ok::<_, String>(response)
    };
    let response = tokio::time::timeout(timeout, request)
        .await
        .map_err(|_| format!("{method} {path} at {addr}: timed out"))??;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}

/// Redis Cluster's hash slot of a key (CRC16/XMODEM of the key or its
/// `{hash tag}`, mod 16384), to find the group a key lives in.
pub fn slot(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| rest.get(..close)).flatten()
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in tagged {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and redis-cli.
        assert_eq!(slot(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
    }

    #[test]
    fn ready_needs_data_groups_each_led_by_some_node() {
        // A regression: the meta group alone (before the map has data
        // groups) once passed as ready; a group only some nodes know the
        // leader of (it is not hosted on the others) is led.
        let view = |id, leader| GroupView {
            id,
            first_slot: 0,
            last_slot: 0,
            replicas: vec![1, 2, 3],
            leader,
            local: None,
        };
        assert!(every_group_led(&[]).is_err());
        assert!(every_group_led(&[view(0, Some(1))]).is_err());
        assert!(every_group_led(&[view(0, Some(1)), view(1, None)]).is_err());
        let led = [view(0, Some(1)), view(1, None), view(1, Some(2))];
        assert!(every_group_led(&led).is_ok());
    }

    #[test]
    fn status_json_is_read() {
        // The fields /status has (server/src/admin.rs).
        let body = r#"{"node":1,"ready":true,"epoch":4,"cluster_id":"c","nodes":[{"id":1},{"id":2},{"id":3}],"groups":[{"id":0,"slots":[0,0],"replicas":[1,2,3],"leader":1,"local":{"state":"leader","term":2,"applied":9,"last_log_index":9,"voters":[1,2,3],"learners":[4],"lag":{}}},{"id":1,"slots":[0,5460],"replicas":[1,2,3],"leader":null,"local":null}]}"#;
        let view = parse_status(body).unwrap();
        assert_eq!(view.epoch, 4);
        assert_eq!(view.nodes, BTreeSet::from([1, 2, 3]));
        assert_eq!(view.groups[1].last_slot, 5460);
        assert_eq!(view.groups[1].leader, None);
        assert_eq!(view.groups[1].local, None);
        assert_eq!(view.groups[0].leader, Some(1));
        let local = view.groups[0].local.as_ref().unwrap();
        assert!(local.leader);
        assert_eq!(local.learners, BTreeSet::from([4]));
    }

    /// A replica: whether it leads, its voters and learners.
    type Local<'a> = Option<(bool, &'a [u64], &'a [u64])>;

    /// A /status of one node: map `nodes`, and `groups` as (id, wanted
    /// replicas, local replica).
    fn node_view(epoch: u64, nodes: &[u64], groups: &[(u64, &[u64], Local<'_>)]) -> StatusView {
        StatusView {
            epoch,
            nodes: nodes.iter().copied().collect(),
            groups: groups
                .iter()
                .map(|&(id, replicas, local)| GroupView {
                    id,
                    first_slot: 0,
                    last_slot: 0,
                    replicas: replicas.to_vec(),
                    leader: None,
                    local: local.map(|(leader, voters, learners)| LocalView {
                        leader,
                        voters: voters.iter().copied().collect(),
                        learners: learners.iter().copied().collect(),
                    }),
                })
                .collect(),
        }
    }

    #[test]
    fn a_node_is_absent_only_once_no_map_and_no_replica_counts_it() {
        // Wiping a node that some replica still counts as a member could
        // let it vote twice in one term, so both the map and every local
        // membership must have dropped it.
        let out = node_view(5, &[1, 2], &[(0, &[1, 2], Some((true, &[1, 2], &[])))]);
        assert!(absent(&[(1, out.clone())], 3).is_ok());
        let in_map = node_view(5, &[1, 2, 3], &[(0, &[1, 2], Some((true, &[1, 2], &[])))]);
        assert!(absent(&[(1, out.clone()), (2, in_map)], 3).is_err());
        let learner = node_view(5, &[1, 2], &[(4, &[1, 2], Some((false, &[1, 2], &[3])))]);
        assert!(absent(&[(1, out), (2, learner)], 3).is_err());
    }

    #[test]
    fn settled_needs_every_leader_to_have_the_wanted_members() {
        // Meta group: voters are the meta voters, every other map node a
        // learner; data group: voters are its replicas.
        let meta_ok = (0, &[1, 2, 3][..], Some((true, &[1, 2, 3][..], &[4][..])));
        let data_ok = (1, &[2, 3, 4][..], Some((true, &[2, 3, 4][..], &[][..])));
        let follower = (1, &[2, 3, 4][..], Some((false, &[1, 2, 3][..], &[][..])));
        let nodes = [1, 2, 3, 4];
        let one = node_view(7, &nodes, &[meta_ok, follower]);
        let two = node_view(7, &nodes, &[meta_ok, data_ok]);
        assert!(settled(&[(1, one.clone()), (2, two.clone())]).is_ok());
        // No leader of group 1 answered.
        assert!(settled(&[(1, one.clone())]).is_err());
        // A node on an older map.
        let old = node_view(6, &nodes, &[meta_ok, data_ok]);
        assert!(settled(&[(1, one.clone()), (2, old)]).is_err());
        // The leader still has node 1 as a voter.
        let moving = (1, &[2, 3, 4][..], Some((true, &[1, 2, 3, 4][..], &[][..])));
        let three = node_view(7, &nodes, &[meta_ok, moving]);
        assert!(settled(&[(1, one.clone()), (3, three)]).is_err());
        // Node 4 joined the map but is not yet a meta learner.
        let meta_short = (0, &[1, 2, 3][..], Some((true, &[1, 2, 3][..], &[][..])));
        let four = node_view(7, &nodes, &[meta_short, data_ok]);
        assert!(settled(&[(4, four)]).is_err());
        assert!(settled(&[]).is_err());
    }
}
