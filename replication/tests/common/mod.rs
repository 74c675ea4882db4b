//! An in-process cluster of replication nodes over the in-memory network,
//! each with its own in-memory file system, for the cluster tests.

#![allow(dead_code, reason = "each test file uses a different part")]

pub mod scenarios;

use cairn_engine::{Db, MemFs, Options};
use cairn_replication::{
    ClusterCa, GroupId, KeyRange, KvApplication, KvCommand, KvReply, MemNetwork, Node, NodeId,
    NodeInfo, NodeOptions, QuicConfig, QuicTransport, RaftOptions, ReplicationError, Request,
    RpcRouter, SharedLog, TlsMaterial, Transport,
};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(20);

/// Key range of group `g` in these tests: keys `[0x00, g, ...]`.
pub fn group_range(g: GroupId) -> KeyRange {
    KeyRange::new(vec![0x00, g as u8], vec![0x00, g as u8 + 1])
}

pub fn key(g: GroupId, name: &str) -> Vec<u8> {
    let mut key = vec![0x00, g as u8];
    key.extend_from_slice(name.as_bytes());
    key
}

/// A plain put of `name` in group `g`, without deduplication (client 0).
pub fn put_request(g: GroupId, name: &str, value: &[u8]) -> Request {
    Request {
        client_id: 0,
        serial: 0,
        command: KvCommand::Put {
            key: key(g, name),
            value: value.to_vec(),
        }
        .encode(),
    }
}

pub fn info(id: NodeId) -> NodeInfo {
    NodeInfo::new(format!("mem-{id}"), format!("mem-{id}-client"))
}

pub struct TestNode {
    pub fs: Arc<MemFs>,
    /// QUIC clusters: the node's transport and the port it keeps across
    /// restarts (its address is in the group's membership).
    pub quic: Option<Arc<QuicTransport>>,
    pub quic_port: u16,
    pub snapshot_dir: PathBuf,
    pub node: Option<Node>,
    pub log: Option<Arc<SharedLog>>,
}

pub struct Cluster {
    /// The in-memory network, or `None` for a cluster over real QUIC.
    pub net: MemNetwork,
    pub ca: Option<ClusterCa>,
    pub nodes: BTreeMap<NodeId, TestNode>,
    pub options: RaftOptions,
    _tmp: tempfile::TempDir,
    next_client: u64,
}

pub fn test_options() -> RaftOptions {
    RaftOptions {
        operation_timeout_ms: 3_000,
        ..RaftOptions::loopback()
    }
}

impl Cluster {
    /// Nodes `1..=n`, started, hosting no group yet.
    pub async fn new(n: u64) -> Cluster {
        Cluster::with_options(n, test_options()).await
    }

    /// Nodes `1..=n` talking QUIC with mutual TLS on loopback.
    pub async fn quic(n: u64) -> Cluster {
        Cluster::build(n, test_options(), true).await
    }

    pub async fn quic_with_options(n: u64, options: RaftOptions) -> Cluster {
        Cluster::build(n, options, true).await
    }

    pub async fn with_options(n: u64, options: RaftOptions) -> Cluster {
        Cluster::build(n, options, false).await
    }

    async fn build(n: u64, options: RaftOptions, quic: bool) -> Cluster {
        let tmp = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            ca: quic.then(|| ClusterCa::generate("cairn test ca").unwrap()),
            net: MemNetwork::new(0x5eed),
            nodes: BTreeMap::new(),
            options,
            _tmp: tmp,
            next_client: 1,
        };
        for id in 1..=n {
            cluster.add_node(id).await;
        }
        cluster
    }

    /// A fresh node `id` with empty storage, started.
    pub async fn add_node(&mut self, id: NodeId) {
        let snapshot_dir = self._tmp.path().join(format!("node-{id}"));
        self.nodes.insert(
            id,
            TestNode {
                fs: Arc::new(MemFs::new()),
                quic: None,
                quic_port: 0,
                snapshot_dir,
                node: None,
                log: None,
            },
        );
        self.start(id).await;
    }

    /// Opens node `id` on its storage (after `stop`, a restart).
    pub async fn start(&mut self, id: NodeId) {
        let options = self.options.clone();
        let entry = self.nodes.get_mut(&id).unwrap();
        let db = Db::open(
            "/db",
            Options {
                fs: entry.fs.clone(),
                ..Options::default()
            },
        )
        .unwrap();
        let log = open_log(entry);
        let router = RpcRouter::new();
        let (transport, node_info): (Arc<dyn Transport>, NodeInfo) = match &self.ca {
            None => (self.net.transport(id), info(id)),
            Some(ca) => {
                let cert = ca
                    .issue_node(&format!("node-{id}"), &["127.0.0.1".to_owned()])
                    .unwrap();
                let config = QuicConfig {
                    listen: SocketAddr::from(([127, 0, 0, 1], entry.quic_port)),
                    connect_timeout_ms: 500,
                    reconnect_backoff_min_ms: 20,
                    reconnect_backoff_max_ms: 200,
                    ..QuicConfig::default()
                };
                let tls = TlsMaterial::new(ca, &cert);
                // The previous incarnation's socket closes asynchronously.
                let deadline = Instant::now() + Duration::from_secs(5);
                let quic = loop {
                    match QuicTransport::start(config.clone(), &tls, router.clone()) {
                        Ok(quic) => break Arc::new(quic),
                        Err(e) if Instant::now() < deadline => {
                            let _ = e;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("node {id}: {e}"),
                    }
                };
                let addr = quic.local_addr();
                entry.quic_port = addr.port();
                entry.quic = Some(quic.clone());
                (
                    quic,
                    NodeInfo::new(addr.to_string(), format!("client-{id}")),
                )
            }
        };
        let node = Node::open(
            NodeOptions {
                id,
                info: node_info,
                snapshot_dir: entry.snapshot_dir.clone(),
                raft: options,
            },
            db,
            log,
            transport,
            router.clone(),
            Arc::new(KvApplication),
        )
        .await
        .unwrap();
        self.net.register(id, router);
        entry.node = Some(node);
    }

    /// Stops node `id` as a clean shutdown: unreachable, groups stopped,
    /// engine closed.
    pub async fn stop(&mut self, id: NodeId) {
        self.net.unregister(id);
        let entry = self.nodes.get_mut(&id).unwrap();
        if let Some(quic) = entry.quic.take() {
            quic.shutdown();
        }
        if let Some(node) = entry.node.take() {
            node.shutdown().await;
            node.log_store().close();
            let _ = node.db().close();
        }
    }

    /// Power loss on node `id`: its file system keeps what was synced and
    /// what `mode` leaves of the rest; the node's tasks are then stopped
    /// (their writes go to dead file handles).
    pub async fn crash(&mut self, id: NodeId, mode: cairn_engine::CrashMode, seed: u64) {
        self.net.unregister(id);
        let entry = self.nodes.get_mut(&id).unwrap();
        if let Some(quic) = entry.quic.take() {
            quic.shutdown();
        }
        entry.fs.crash(mode, seed);
        if let Some(node) = entry.node.take() {
            node.shutdown().await;
            node.log_store().close();
        }
        entry.log = None;
    }

    /// Replaces node `id`'s storage with an empty one (a new disk). The
    /// node must be stopped.
    pub fn wipe(&mut self, id: NodeId) {
        let entry = self.nodes.get_mut(&id).unwrap();
        assert!(entry.node.is_none(), "wipe a stopped node");
        entry.fs = Arc::new(MemFs::new());
        entry.log = None;
        let _ = std::fs::remove_dir_all(&entry.snapshot_dir);
    }

    pub fn node(&self, id: NodeId) -> &Node {
        self.nodes[&id].node.as_ref().unwrap()
    }

    pub fn running(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.node.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Creates group `g` on `members` and initialises it with them.
    pub async fn create_group(&self, g: GroupId, members: &[NodeId]) {
        for id in members {
            self.node(*id)
                .create_group(g, group_range(g))
                .await
                .unwrap();
        }
        let set: BTreeMap<NodeId, NodeInfo> = members
            .iter()
            .map(|id| (*id, self.node(*id).info().clone()))
            .collect();
        self.node(members[0])
            .group(g)
            .unwrap()
            .initialize(set)
            .await
            .unwrap();
    }

    /// The leader of `g` as seen by a running member, waiting for one.
    pub async fn leader(&self, g: GroupId) -> NodeId {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            // A restarted leader believes in its old term until a peer
            // answers with a newer one: take the claim with the highest term.
            let claim = self
                .running()
                .into_iter()
                .filter_map(|id| {
                    let m = self.node(id).group(g)?.metrics();
                    (m.leader == Some(id) && m.state == "leader").then_some((m.term, id))
                })
                .max();
            if let Some((_, id)) = claim {
                return id;
            }
            assert!(
                Instant::now() < deadline,
                "group {g}: no leader within {TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn client(&mut self) -> u64 {
        self.next_client += 1;
        self.next_client
    }

    /// Proposes `command` to `g` at its current leader, retrying through
    /// elections until `TIMEOUT`. With a `client_id`, retries are deduplicated.
    pub async fn propose(
        &self,
        g: GroupId,
        command: KvCommand,
        client_id: u64,
        serial: u64,
    ) -> KvReply {
        let request = Request {
            client_id,
            serial,
            command: command.encode(),
        };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let leader = self.leader(g).await;
            match self
                .node(leader)
                .group(g)
                .unwrap()
                .propose(request.clone())
                .await
            {
                Ok(response) => return KvReply::decode(&response.payload).unwrap_or(KvReply::Done),
                Err(e) => {
                    assert!(Instant::now() < deadline, "group {g}: proposal failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub async fn put(&self, g: GroupId, name: &str, value: &str) {
        let command = KvCommand::Put {
            key: key(g, name),
            value: value.as_bytes().to_vec(),
        };
        assert_eq!(self.propose(g, command, 0, 0).await, KvReply::Done);
    }

    /// Reads `name` of group `g` from node `id`'s engine (a local read).
    pub fn read(&self, id: NodeId, g: GroupId, name: &str) -> Option<String> {
        self.node(id)
            .db()
            .get(key(g, name))
            .unwrap()
            .map(|v| String::from_utf8(v).unwrap())
    }

    /// Asserts that each of `ids` reads `want` for `name` in group `g`.
    pub fn assert_reads(
        &self,
        ids: impl IntoIterator<Item = NodeId>,
        g: GroupId,
        name: &str,
        want: &str,
    ) {
        for id in ids {
            assert_eq!(self.read(id, g, name).as_deref(), Some(want), "node {id}");
        }
    }

    /// Waits until the leader of `g` has applied its whole log, then until
    /// every running member (in the leader's membership) has applied as
    /// much. Metrics lag the replies a little, hence the leader wait.
    pub async fn converge(&self, g: GroupId) {
        let leader = self.leader(g).await;
        let group = self.node(leader).group(g).unwrap();
        let last = group.metrics().last_log_index.unwrap_or(0);
        group.wait_for_applied(last, TIMEOUT).await.unwrap();
        let m = group.metrics();
        let members: BTreeSet<NodeId> = m.voters.union(&m.learners).copied().collect();
        for id in self.running() {
            if members.contains(&id) {
                let replica = self.node(id).group(g).unwrap();
                if let Err(e) = replica.wait_for_applied(last, TIMEOUT).await {
                    panic!(
                        "node {id} did not apply {last}: {e}: {:?}",
                        replica.metrics()
                    );
                }
            }
        }
    }

    /// Runs a membership change at the leader, retrying while the group is
    /// between leaders or finishing an earlier change.
    pub async fn change<F, Fut>(&self, g: GroupId, f: F)
    where
        F: Fn(cairn_replication::Group) -> Fut,
        Fut: std::future::Future<Output = Result<(), ReplicationError>>,
    {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let leader = self.leader(g).await;
            match f(self.node(leader).group(g).unwrap()).await {
                Ok(()) => return,
                Err(e) => {
                    assert!(
                        Instant::now() < deadline,
                        "group {g}: membership change failed: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    /// Triggers a snapshot at the leader of `g` and waits until its log
    /// has been purged.
    pub async fn snapshot_and_purge(&self, g: GroupId) {
        let group = self.node(self.leader(g).await).group(g).unwrap();
        group.trigger_snapshot().await.unwrap();
        let deadline = Instant::now() + TIMEOUT;
        while group.metrics().purged.is_none() {
            assert!(Instant::now() < deadline, "group {g}: log never purged");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn voters(&self, g: GroupId, at: NodeId) -> BTreeSet<NodeId> {
        self.node(at).group(g).unwrap().metrics().voters
    }
}

pub fn is_retryable(e: &ReplicationError) -> bool {
    matches!(
        e,
        ReplicationError::NotLeader { .. }
            | ReplicationError::NoLeader { .. }
            | ReplicationError::Timeout { .. }
    )
}

/// Opens the node's log store on its file system.
fn open_log(entry: &mut TestNode) -> Arc<SharedLog> {
    let log = SharedLog::open(
        entry.fs.clone(),
        std::path::Path::new("/raft"),
        cairn_replication::LogStoreOptions::default(),
    )
    .unwrap();
    entry.log = Some(log.clone());
    log
}
