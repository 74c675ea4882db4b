//! In-process Cairn clusters for integration tests: N real nodes (engine,
//! Raft log on disk, QUIC with mutual TLS, RESP and admin listeners) on
//! loopback ports, each started and stopped like the `cairn` binary does.

#![allow(dead_code, reason = "each test binary uses part of the harness")]

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_replication::ClusterCa;
use cairn_server::Server;
use cairn_server::config::{Config, Network};
use cairn_server::server::write_secret;

/// Clusters of one test binary run one at a time: each is a dozen Raft
/// groups on two cores, and elections under that load would make timings
/// (not results) flaky.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub struct TestCluster {
    _turn: std::sync::MutexGuard<'static, ()>,
    pub dir: tempfile::TempDir,
    ca: ClusterCa,
    pub configs: Vec<Config>,
    pub servers: Vec<Option<Server>>,
}

/// Issues node `id`'s certificate (for 127.0.0.1) from `ca` into `tls`;
/// returns the certificate's and the key's paths.
fn write_node_cert(ca: &ClusterCa, tls: &std::path::Path, id: u64) -> (PathBuf, PathBuf) {
    let cert = ca
        .issue_node(&format!("node-{id}"), &["127.0.0.1".to_owned()])
        .unwrap();
    let cert_path = tls.join(format!("node-{id}.pem"));
    let key_path = tls.join(format!("node-{id}-key.pem"));
    std::fs::write(&cert_path, &cert.cert_pem).unwrap();
    write_secret(&key_path, &cert.key_pem).unwrap();
    (cert_path, key_path)
}

pub fn free_tcp() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

pub fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

impl TestCluster {
    /// Starts `n` nodes (node 1 bootstraps) and waits until every group has
    /// a leader.
    pub async fn start(n: u64) -> TestCluster {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: u64, tweak: impl Fn(&mut Config)) -> TestCluster {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        std::fs::create_dir_all(&tls).unwrap();
        let ca = ClusterCa::generate("test ca").unwrap();
        std::fs::write(tls.join("ca.pem"), ca.cert_pem()).unwrap();
        let addrs: Vec<(SocketAddr, SocketAddr, SocketAddr)> = (0..n)
            .map(|_| (free_tcp(), free_tcp(), free_udp()))
            .collect();
        let peers: Vec<String> = addrs
            .iter()
            .enumerate()
            .map(|(i, (resp, admin, raft))| format!("{}@{raft}@{resp}@{admin}", i + 1))
            .collect();
        let mut configs = Vec::new();
        for (i, (resp, admin, raft)) in addrs.iter().enumerate() {
            let id = i as u64 + 1;
            let (cert_path, key_path) = write_node_cert(&ca, &tls, id);
            let mut config = Config {
                node_id: id,
                data_dir: dir.path().join(format!("node-{id}")),
                listen: *resp,
                admin_listen: *admin,
                raft_listen: *raft,
                peers: peers.clone(),
                bootstrap: Some(id == 1),
                network: Network::Lan,
                tls_ca: Some(tls.join("ca.pem")),
                tls_cert: Some(cert_path),
                tls_key: Some(key_path),
                memory_mb: 64,
                request_timeout_ms: 10_000,
                ..Config::default()
            };
            tweak(&mut config);
            configs.push(config);
        }
        let mut cluster = TestCluster {
            _turn: turn,
            dir,
            ca,
            configs,
            servers: Vec::new(),
        };
        for i in 0..n as usize {
            let server = start_retrying(cluster.configs[i].clone()).await;
            cluster.servers.push(Some(server));
        }
        let started = Instant::now();
        cluster.wait_ready().await;
        eprintln!("cluster of {n} ready in {:?}", started.elapsed());
        cluster
    }

    /// Starts one more node that waits to be added (`cairn start --join`):
    /// no peers, no bootstrap, a certificate from the cluster's CA. Returns
    /// its id; `cairn admin add-node` (POST /admin/add-node) brings it in.
    pub async fn start_joining_node(&mut self) -> u64 {
        let id = self.configs.len() as u64 + 1;
        let tls = self.dir.path().join("tls");
        let (cert_path, key_path) = write_node_cert(&self.ca, &tls, id);
        let mut config = self.configs[0].clone();
        config.node_id = id;
        config.data_dir = self.dir.path().join(format!("node-{id}"));
        config.listen = free_tcp();
        config.admin_listen = free_tcp();
        config.raft_listen = free_udp();
        config.peers = Vec::new();
        config.bootstrap = Some(false);
        config.tls_cert = Some(cert_path);
        config.tls_key = Some(key_path);
        self.configs.push(config.clone());
        self.servers.push(Some(start_retrying(config).await));
        id
    }

    /// `id@raft@client@admin` query for POST /admin/add-node.
    pub fn add_node_query(&self, id: u64) -> String {
        let c = &self.configs[id as usize - 1];
        format!(
            "id={id}&raft={}&client={}&admin={}",
            c.raft_listen, c.listen, c.admin_listen
        )
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for server in self.servers.iter().flatten() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(server.wait_ready(left).await, "cluster not ready in time");
        }
    }

    pub fn server(&self, id: u64) -> &Server {
        self.servers[id as usize - 1].as_ref().unwrap()
    }

    pub fn url(&self, id: u64) -> String {
        format!("redis://{}/", self.configs[id as usize - 1].listen)
    }

    pub async fn conn(&self, id: u64) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url(id))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// A fresh single (non-multiplexed) connection, for connection state
    /// such as READONLY, MULTI or AUTH.
    pub async fn single(&self, id: u64) -> redis::aio::MultiplexedConnection {
        self.conn(id).await
    }

    /// Stops node `id` cleanly.
    pub async fn stop(&mut self, id: u64) {
        if let Some(server) = self.servers[id as usize - 1].take() {
            server.shutdown().await;
        }
    }

    pub async fn restart(&mut self, id: u64) {
        let server = start_retrying(self.configs[id as usize - 1].clone()).await;
        self.servers[id as usize - 1] = Some(server);
    }

    /// The node leading the group of `key`, as node `asker` sees it.
    pub fn leader_of_key(&self, asker: u64, key: &[u8]) -> Option<u64> {
        let shared = &self.server(asker).shared;
        let slot = cairn_server::slot::key_slot(key);
        let map = shared.map();
        let (group, _) = map.group_of_slot(slot)?;
        shared.leader_hint(group)
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.servers.len() {
            self.stop(i as u64 + 1).await;
        }
    }
}

/// Starts a node, retrying while a previous incarnation's ports close.
async fn start_retrying(config: Config) -> Server {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match Server::start(config.clone()).await {
            Ok(server) => return server,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("node {} did not start: {e}", config.node_id),
        }
    }
}

/// A key whose slot is led by `leader` as seen from node `asker`.
pub fn key_led_by(cluster: &TestCluster, asker: u64, leader: u64, prefix: &str) -> String {
    for i in 0..100_000 {
        let key = format!("{prefix}{i}");
        if cluster.leader_of_key(asker, key.as_bytes()) == Some(leader) {
            return key;
        }
    }
    panic!("no key led by node {leader}");
}

/// A key whose slot is not led by `node`.
pub fn key_not_led_by(cluster: &TestCluster, node: u64, prefix: &str) -> (String, u64) {
    for i in 0..100_000 {
        let key = format!("{prefix}{i}");
        match cluster.leader_of_key(node, key.as_bytes()) {
            Some(leader) if leader != node => return (key, leader),
            _ => {}
        }
    }
    panic!("node {node} leads every group");
}

pub fn data_dir(cluster: &TestCluster, id: u64) -> PathBuf {
    cluster.configs[id as usize - 1].data_dir.clone()
}
