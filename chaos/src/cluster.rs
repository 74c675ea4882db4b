//! Real `cairn` processes on loopback, each behind the relays: start,
//! SIGKILL, restart, SIGSTOP/SIGCONT, and their admin API (status, leader
//! transfer).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::relay::Relays;

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
    args: Vec<String>,
    child: Option<Child>,
    state: NodeState,
}

/// One group as a node's /status shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub id: u64,
    pub first_slot: u16,
    pub last_slot: u16,
    pub replicas: Vec<u64>,
    pub leader: Option<u64>,
}

pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    nodes: BTreeMap<u64, Node>,
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
    /// [`Cluster::wait_ready`].
    pub async fn start(bin: &Path, dir: &Path, n: u64, fsync: &str) -> Result<Cluster, String> {
        let tls = dir.join("tls");
        let mut certs = Command::new(bin);
        certs.arg("certs").arg("--out").arg(&tls);
        for id in 1..=n {
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
        for id in 1..=n {
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
            .map(|(i, a)| format!("{i}@{}@{}@{}", a.raft, a.client, a.admin))
            .collect();
        let mut nodes = BTreeMap::new();
        for (&id, &a) in &addrs {
            let path = |p: PathBuf| p.to_string_lossy().into_owned();
            let mut args: Vec<String> = [
                "start",
                "--node-id",
                &id.to_string(),
                "--data-dir",
                &path(dir.join(format!("node-{id}"))),
                "--listen",
                &a.client.to_string(),
                "--admin-listen",
                &a.admin.to_string(),
                "--raft-listen",
                &a.raft.to_string(),
                "--network",
                "loopback",
                "--bootstrap",
                if id == 1 { "true" } else { "false" },
                "--fsync",
                fsync,
                "--tls-ca",
                &path(tls.join("ca.pem")),
                "--tls-cert",
                &path(tls.join(format!("node-{id}.pem"))),
                "--tls-key",
                &path(tls.join(format!("node-{id}-key.pem"))),
                "--memory-mb",
                "64",
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            for p in &peers {
                args.extend(["--peer".to_owned(), p.clone()]);
            }
            for &to in addrs.keys().filter(|&&to| to != id) {
                let front = relays
                    .front(id, to)
                    .ok_or_else(|| format!("no relay {id}->{to}"))?;
                args.extend(["--raft-dial".to_owned(), format!("{to}@{front}")]);
            }
            nodes.insert(
                id,
                Node {
                    addrs: a,
                    args,
                    child: None,
                    state: NodeState::Killed,
                },
            );
        }
        let mut cluster = Cluster {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            nodes,
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

    pub fn ids(&self) -> Vec<u64> {
        self.nodes.keys().copied().collect()
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

    /// Every node running, every link up.
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

    /// The groups as node `id` sees them.
    pub async fn status(&self, id: u64) -> Result<Vec<GroupView>, String> {
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
                views.extend(self.status(id).await?);
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

fn parse_status(body: &str) -> Result<Vec<GroupView>, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|e| format!("bad /status JSON: {e}"))?;
    let groups = v
        .get("groups")
        .and_then(serde_json::Value::as_array)
        .ok_or("/status without groups")?;
    let slot = |g: &serde_json::Value, i: usize| {
        g.get("slots")
            .and_then(|s| s.get(i))
            .and_then(serde_json::Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0)
    };
    let views = groups
        .iter()
        .map(|g| GroupView {
            id: g.get("id").and_then(serde_json::Value::as_u64).unwrap_or(0),
            first_slot: slot(g, 0),
            last_slot: slot(g, 1),
            replicas: g
                .get("replicas")
                .and_then(serde_json::Value::as_array)
                .map(|r| r.iter().filter_map(serde_json::Value::as_u64).collect())
                .unwrap_or_default(),
            leader: g.get("leader").and_then(serde_json::Value::as_u64),
        })
        .collect();
    Ok(views)
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
        let body = r#"{"node":1,"ready":true,"groups":[{"id":0,"slots":[0,0],"replicas":[1,2,3],"leader":1},{"id":1,"slots":[0,5460],"replicas":[1,2,3],"leader":null}]}"#;
        let groups = parse_status(body).unwrap();
        assert_eq!(groups[1].last_slot, 5460);
        assert_eq!(groups[1].leader, None);
        assert_eq!(groups[0].leader, Some(1));
    }
}
