//! A running node: engine, Raft log, QUIC transport, the replication node
//! with its groups, the cluster map, and the RESP and admin listeners.
//!
//! Start-up order: open the engine (with the expiry filter on the groups'
//! replicated clocks) and the log store, start QUIC, open the replication
//! node (which restarts every group it hosted), make sure the meta group
//! exists, then start the map watcher, which creates and initializes the
//! data groups the map assigns here. A bootstrapping node initializes the
//! meta group with the initial cluster and writes the first map.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cairn_engine::{Db, FileSystem, Options, ReadMode, StdFs};
use cairn_replication::{
    ClusterCa, LogStoreOptions, Node, NodeId, NodeInfo, NodeOptions, QuicConfig, QuicTransport,
    RpcRouter, SharedLog, TlsMaterial, Transport,
};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::app::ServerApp;
use crate::clock::Clocks;
use crate::cluster::map::{ClusterMap, META_GROUP, META_MAP_KEY, NodeEntry, meta_range};
use crate::cluster::membership;
use crate::command::ExpiryFilter;
use crate::config::{Config, FsyncPolicy};
use crate::entry::{self, MetaCommand, MetaReply};
use crate::metrics::Metrics;
use crate::resp::Frame;
use crate::route::{AppRpc, Caller, Consistency, Op};
use crate::slot::{clock_key, slots_key_range};

/// What every connection and task of the node shares.
pub struct Shared {
    pub id: NodeId,
    pub config: Config,
    pub node: Node,
    pub transport: Arc<dyn Transport>,
    pub clocks: Arc<Clocks>,
    pub app: Arc<ServerApp>,
    pub metrics: Metrics,
    map: RwLock<Arc<ClusterMap>>,
    map_changed: watch::Sender<u64>,
    leaders: Mutex<HashMap<u64, NodeId>>,
    /// Per data group, the applied index of the last replica of it this
    /// process deleted. A replica created later (the map gave the group
    /// back) serves READONLY reads only once it has applied as far, so a
    /// connection's reads on this node never go back (docs/server.md,
    /// "Consistency").
    retired_applied: Mutex<HashMap<u64, u64>>,
    /// Since when the membership driver has waited for each unwanted
    /// learner (group, node) to acknowledge (`membership::stale_learners`).
    pub(crate) unacked_learners: Mutex<HashMap<(u64, NodeId), std::time::Instant>>,
    next_connection: AtomicU64,
    /// A per-process random base for client ids, so ids never repeat
    /// across restarts (dedup records outlive connections).
    client_id_base: u64,
    pub started_at: std::time::Instant,
    pub client_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub connection_slots: Arc<Semaphore>,
    pub scan_cursors: crate::conn::ScanCursors,
    stopping: AtomicBool,
    /// Set at shutdown; connections watch it and close.
    pub stop: watch::Sender<bool>,
}

impl Shared {
    /// The current cluster map (epoch 0 until the first one is applied).
    pub fn map(&self) -> Arc<ClusterMap> {
        Arc::clone(&self.map.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn subscribe_map(&self) -> watch::Receiver<u64> {
        self.map_changed.subscribe()
    }

    /// The applied index of the last deleted replica of `group` here (0
    /// if none was deleted since this process started).
    pub fn retired_applied(&self, group: u64) -> u64 {
        let retired = self
            .retired_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        retired.get(&group).copied().unwrap_or(0)
    }

    /// Records that a replica of `group` that had applied up to `applied`
    /// is being deleted (see `retired_applied`); only ever raises it.
    pub fn note_retired(&self, group: u64, applied: u64) {
        let mut retired = self
            .retired_applied
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let entry = retired.entry(group).or_default();
        *entry = (*entry).max(applied);
    }

    pub fn client_addr_of(&self, node: NodeId) -> Option<String> {
        self.map().nodes.get(&node).map(|n| n.client_addr.clone())
    }

    pub fn raft_addr_of(&self, node: NodeId) -> Option<String> {
        self.map().nodes.get(&node).map(|n| n.raft_addr.clone())
    }

    pub fn note_leader(&self, group: u64, leader: NodeId) {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(group, leader);
    }

    pub fn forget_leader(&self, group: u64) {
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&group);
    }

    /// Who leads `group`, as far as this node knows.
    pub fn leader_hint(&self, group: u64) -> Option<NodeId> {
        if let Some(g) = self.node.group(group)
            && let Some(leader) = g.metrics().leader
        {
            return Some(leader);
        }
        self.leaders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&group)
            .copied()
    }

    /// A fresh connection number (this node's counter, for CLIENT ID) and
    /// client id (unique in the cluster: the Raft groups deduplicate
    /// retried writes by it).
    pub fn new_client_id(&self) -> (u64, u64) {
        let n = self.next_connection.fetch_add(1, Ordering::Relaxed) + 1;
        (n, self.client_id_base.wrapping_add(n).max(1))
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Proposes a change to the cluster map, retrying on conflicts: `change`
    /// is applied to the latest map this node has seen until one sticks.
    pub async fn change_map(
        &self,
        change: impl Fn(&ClusterMap) -> Result<Option<ClusterMap>, String>,
    ) -> Result<(), String> {
        // The cluster-unique id (the first is only this node's counter, and
        // the meta group deduplicates by id across all nodes).
        let (_, client_id) = self.new_client_id();
        for attempt in 0..50u64 {
            let current = self.map();
            let Some(mut next) = change(&current)? else {
                return Ok(());
            };
            next.epoch = current.epoch + 1;
            let command = MetaCommand::SetMap {
                expected_epoch: current.epoch,
                map: next.encode(),
            };
            let caller = Caller {
                client_id,
                serial: attempt + 1,
                consistency: Consistency::Linearizable,
                follows_moved: false,
            };
            let op = Op::Propose {
                entry: entry::encode(&command),
            };
            match self.route(META_GROUP, None, op, caller).await {
                Frame::Bulk(reply) => match entry::decode::<MetaReply>(&reply)? {
                    MetaReply::Done => {
                        self.wait_for_epoch(next.epoch).await;
                        return Ok(());
                    }
                    MetaReply::Conflict { epoch } => {
                        self.wait_for_epoch(epoch).await;
                    }
                    MetaReply::Invalid { reason } => return Err(reason),
                },
                Frame::Error(e) => {
                    warn!(error = %String::from_utf8_lossy(&e), "cluster map change failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                other => return Err(format!("unexpected meta reply {other:?}")),
            }
        }
        Err(
            "no change to the cluster map committed after 50 attempts (is a majority of nodes up?)"
                .into(),
        )
    }

    /// Waits (bounded) until this node has applied map epoch `epoch`.
    async fn wait_for_epoch(&self, epoch: u64) {
        let mut rx = self.subscribe_map();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                self.refresh_map();
                if self.map().epoch >= epoch {
                    return;
                }
                let _ = tokio::time::timeout(Duration::from_millis(50), rx.changed()).await;
            }
        })
        .await;
    }

    /// Reloads the map from the local meta replica if it moved.
    pub fn refresh_map(&self) -> bool {
        let bytes = match self.node.db().get(META_MAP_KEY) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return false,
            Err(e) => {
                warn!(error = %e, "cannot read the cluster map");
                return false;
            }
        };
        let map = match ClusterMap::decode(&bytes) {
            Ok(map) => map,
            Err(e) => {
                warn!(error = %e, "the stored cluster map does not decode");
                return false;
            }
        };
        let mut current = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.epoch <= current.epoch {
            return false;
        }
        info!(
            epoch = map.epoch,
            groups = map.groups.len(),
            nodes = map.nodes.len(),
            "cluster map"
        );
        *current = Arc::new(map);
        let epoch = current.epoch;
        drop(current);
        self.map_changed.send_replace(epoch);
        true
    }
}

/// A started node.
pub struct Server {
    pub shared: Arc<Shared>,
    quic: Arc<QuicTransport>,
    tasks: Vec<JoinHandle<()>>,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

/// TLS for QUIC: the configured files, or a CA and certificate generated
/// once in `data_dir/tls` for a single node.
fn tls_material(config: &Config) -> Result<TlsMaterial, String> {
    if let (Some(ca), Some(cert), Some(key)) = (&config.tls_ca, &config.tls_cert, &config.tls_key) {
        return TlsMaterial::load(ca, cert, key).map_err(|e| io_err("tls", e));
    }
    let dir = config.data_dir.join("tls");
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("node.pem"),
        dir.join("node-key.pem"),
    );
    if !ca_path.exists() {
        std::fs::create_dir_all(&dir).map_err(|e| io_err("create tls dir", e))?;
        let ca = ClusterCa::generate("cairn single-node CA").map_err(|e| io_err("tls", e))?;
        let host = config
            .raft_addr()
            .rsplit_once(':')
            .map(|(h, _)| h.trim_matches(['[', ']']).to_owned())
            .unwrap_or_else(|| "127.0.0.1".into());
        let node = ca
            .issue_node(
                &format!("node-{}", config.node_id),
                &[host, "localhost".into()],
            )
            .map_err(|e| io_err("tls", e))?;
        write_secret(&dir.join("ca-key.pem"), ca.key_pem())?;
        write_secret(&key_path, &node.key_pem)?;
        std::fs::write(&cert_path, &node.cert_pem).map_err(|e| io_err("write cert", e))?;
        std::fs::write(&ca_path, ca.cert_pem()).map_err(|e| io_err("write ca", e))?;
    }
    TlsMaterial::load(&ca_path, &cert_path, &key_path).map_err(|e| io_err("tls", e))
}

/// Writes a private key readable by its owner only.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), String> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options
        .open(path)
        .map_err(|e| io_err(&format!("write {}", path.display()), e))?;
    file.write_all(contents.as_bytes())
        .map_err(|e| io_err(&format!("write {}", path.display()), e))
}

/// Engine options within `memory_mb`: half for memtables, 40% block
/// cache, 10% table indexes and filters.
fn engine_options(config: &Config, clocks: &Arc<Clocks>) -> Options {
    let budget = config.memory_mb << 20;
    let clocks = Arc::clone(clocks);
    Options {
        write_buffer_bytes: (budget / 8).max(1 << 20),
        max_memtables: 4,
        block_cache_bytes: budget * 4 / 10,
        table_cache_bytes: (budget / 10).max(1 << 20),
        compaction_filter: Some(Arc::new(ExpiryFilter::new(move |key| {
            clocks.filter_time(key)
        }))),
        ..Options::default()
    }
}

impl Server {
    /// Starts a node. Must run inside a multi-threaded tokio runtime.
    pub async fn start(config: Config) -> Result<Server, String> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| io_err(&format!("create {}", config.data_dir.display()), e))?;
        // Sockets first: a port in use fails before storage is touched.
        let resp = TcpListener::bind(config.listen)
            .await
            .map_err(|e| io_err(&format!("listen on {}", config.listen), e))?;
        let admin = TcpListener::bind(config.admin_listen)
            .await
            .map_err(|e| io_err(&format!("listen on {}", config.admin_listen), e))?;
        let client_addr = resp.local_addr().map_err(|e| io_err("resp address", e))?;
        let admin_addr = admin.local_addr().map_err(|e| io_err("admin address", e))?;
        let tls = tls_material(&config)?;
        let client_tls = crate::tls::acceptor(&config)?;
        let router = RpcRouter::new();
        let quic = QuicTransport::start(
            QuicConfig {
                listen: config.raft_listen,
                dial_overrides: config.dial_overrides()?,
                ..QuicConfig::default()
            },
            &tls,
            router.clone(),
        )
        .map_err(|e| io_err("start the node transport", e))?;
        let quic = Arc::new(quic);
        let transport: Arc<dyn Transport> = quic.clone();
        let clocks = Clocks::new();
        let db = Db::open(config.data_dir.join("db"), engine_options(&config, &clocks))
            .map_err(|e| io_err("open the engine", e))?;
        let std_fs: Arc<dyn FileSystem> = Arc::new(StdFs::new(ReadMode::Pread));
        let log_fs: Arc<dyn FileSystem> = match config.fsync {
            FsyncPolicy::Always => std_fs,
            FsyncPolicy::Never => Arc::new(crate::nosync::NoSyncFs(std_fs)),
        };
        let log = match SharedLog::open(
            log_fs,
            &config.data_dir.join("raft"),
            LogStoreOptions::default(),
        ) {
            Ok(log) => log,
            Err(e) => {
                let _ = db.close();
                return Err(io_err("open the raft log", e));
            }
        };
        let app = ServerApp::new(Arc::clone(&clocks));
        let info = NodeInfo::new(config.raft_addr(), config.client_addr());
        let node = Node::open(
            NodeOptions {
                id: config.node_id,
                info,
                snapshot_dir: config.data_dir.join("snapshots"),
                raft: config.raft_options(),
            },
            db,
            log,
            Arc::clone(&transport),
            router.clone(),
            app.clone(),
        )
        .await
        .map_err(|e| io_err("open the replication node", e))?;
        if node.group(META_GROUP).is_none() {
            node.create_group(META_GROUP, meta_range())
                .await
                .map_err(|e| io_err("create the meta group", e))?;
        }
        let (map_changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            id: config.node_id,
            connection_slots: Arc::new(Semaphore::new(config.max_clients)),
            config,
            node,
            transport,
            clocks,
            app,
            metrics: Metrics::default(),
            map: RwLock::new(Arc::new(ClusterMap::default())),
            map_changed,
            leaders: Mutex::new(HashMap::new()),
            retired_applied: Mutex::new(HashMap::new()),
            unacked_learners: Mutex::new(HashMap::new()),
            next_connection: AtomicU64::new(0),
            client_id_base: random_u64() & !0xFFFF_FFFF,
            started_at: std::time::Instant::now(),
            client_addr,
            admin_addr,
            scan_cursors: crate::conn::ScanCursors::default(),
            stopping: AtomicBool::new(false),
            stop: watch::channel(false).0,
        });
        router
            .set_app_handler(Arc::new(AppRpc(Arc::downgrade(&shared))))
            .map_err(|e| io_err("rpc", e))?;
        shared.refresh_map();
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(watch_map(Arc::clone(&shared))));
        tasks.push(tokio::spawn(flush_clocks(Arc::clone(&shared))));
        if shared.config.bootstraps() {
            tasks.push(tokio::spawn(bootstrap(Arc::clone(&shared))));
        }
        tasks.push(tokio::spawn(crate::conn::serve(
            Arc::clone(&shared),
            resp,
            client_tls,
        )));
        tasks.push(tokio::spawn(crate::admin::serve(
            Arc::clone(&shared),
            admin,
        )));
        info!(
            node = shared.id,
            resp = %client_addr,
            admin = %admin_addr,
            raft = %quic.local_addr(),
            "cairn node started"
        );
        Ok(Server {
            shared,
            quic,
            tasks,
        })
    }

    pub fn client_addr(&self) -> SocketAddr {
        self.shared.client_addr
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.shared.admin_addr
    }

    /// Waits until the map is known and every group it assigns here has
    /// a leader (somewhere), or `timeout` passes.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.shared.ready() {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the listeners and the groups, then closes the storage.
    pub async fn shutdown(self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.shared.stop.send_replace(true);
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.quic.shutdown();
        self.shared.node.shutdown().await;
        self.shared.node.log_store().close();
        if let Err(e) = self.shared.node.db().close() {
            warn!(error = %e, "closing the engine");
        }
    }
}

impl Shared {
    /// The map is known, every group is initialized, and the meta group and
    /// every group this node hosts have a known leader. Leaders of groups
    /// hosted elsewhere are learnt from traffic (a reply or a redirect), so
    /// requiring them would keep a node of a large cluster unready forever.
    pub fn ready(&self) -> bool {
        let map = self.map();
        let me = self.config.node_id;
        map.epoch > 0
            && self.leader_hint(META_GROUP).is_some()
            && map.groups.values().all(|g| g.initialized)
            && map
                .groups
                .iter()
                .filter(|(_, g)| g.replicas.contains(&me))
                .all(|(&id, _)| self.leader_hint(id).is_some())
    }
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// Initializes the meta group with the initial cluster and writes the first
/// map. Idempotent: on a node that did it before, both steps are no-ops.
async fn bootstrap(shared: Arc<Shared>) {
    let peers = match shared.config.initial_cluster() {
        Ok(peers) => peers,
        Err(e) => {
            warn!(error = %e, "bootstrap: bad peers");
            return;
        }
    };
    let nodes: BTreeMap<NodeId, NodeEntry> = peers
        .iter()
        .map(|p| {
            (
                p.id,
                NodeEntry {
                    raft_addr: p.raft_addr.clone(),
                    client_addr: p.client_addr.clone(),
                    admin_addr: p.admin_addr.clone(),
                },
            )
        })
        .collect();
    let Some(meta) = shared.node.group(META_GROUP) else {
        return;
    };
    if meta.metrics().last_log_index.is_none() && shared.map().epoch == 0 {
        let members = nodes.iter().map(|(id, n)| (*id, n.info())).collect();
        if let Err(e) = meta.initialize(members).await {
            warn!(error = %e, "bootstrap: initializing the meta group");
            return;
        }
    }
    let groups = shared
        .config
        .groups
        .unwrap_or_else(|| u16::try_from(nodes.len() * 3).unwrap_or(u16::MAX));
    let cluster_id = format!("{:016x}", random_u64());
    let replicas = shared.config.replicas;
    // Until a majority of the initial nodes is up this cannot commit: keep
    // trying, however long that takes.
    loop {
        let result = shared
            .change_map(|current| {
                if current.epoch > 0 {
                    return Ok(None);
                }
                ClusterMap::bootstrap(cluster_id.clone(), nodes.clone(), groups, replicas)
                    .map(Some)
                    .map_err(|e| e.0)
            })
            .await;
        match result {
            Ok(()) => {
                info!("cluster bootstrapped");
                return;
            }
            Err(e) => {
                warn!(error = %e, "bootstrap: writing the first cluster map; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Moves the durable clocks on (see `clock`).
async fn flush_clocks(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(crate::clock::FLUSH_INTERVAL).await;
        let worker = Arc::clone(&shared);
        let flushed =
            tokio::task::spawn_blocking(move || worker.clocks.flush_clocks(worker.node.db())).await;
        if let Ok(Err(e)) = flushed {
            warn!(error = %e, "flushing the engine for the expiry clocks");
        }
    }
}

/// Keeps the node's groups in line with the cluster map: creates the
/// groups assigned here, initializes those this node must start, and
/// registers their clocks.
async fn watch_map(shared: Arc<Shared>) {
    let meta_changed = Arc::clone(&shared.app.meta_changed);
    // Membership changes of groups led here, one per group at a time. They
    // are aborted with this task at shutdown.
    let mut changes = tokio::task::JoinSet::new();
    let mut changing: HashSet<u64> = HashSet::new();
    loop {
        let notified = meta_changed.notified();
        shared.refresh_map();
        if let Err(e) = reconcile(&shared).await {
            warn!(error = %e, "applying the cluster map");
        }
        while let Some(done) = changes.try_join_next() {
            if let Ok(id) = done {
                changing.remove(&id);
            }
        }
        let map = shared.map();
        for group in shared.node.groups() {
            let id = group.id();
            if changing.contains(&id) || !group.is_leader() {
                continue;
            }
            let Some(target) = membership::target(&map, id) else {
                continue;
            };
            changing.insert(id);
            let (shared, map) = (Arc::clone(&shared), Arc::clone(&map));
            changes.spawn(async move {
                membership::step(&shared, &group, &map, &target).await;
                id
            });
        }
        let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
    }
}

async fn reconcile(shared: &Arc<Shared>) -> Result<(), String> {
    let map = shared.map();
    for (&id, group) in &map.groups {
        if !group.replicas.contains(&shared.id) {
            continue;
        }
        let hosted = match shared.node.group(id) {
            Some(g) => g,
            None => {
                let range = slots_key_range(group.first_slot, group.last_slot);
                shared
                    .node
                    .create_group(id, range)
                    .await
                    .map_err(|e| io_err(&format!("create group {id}"), e))?
            }
        };
        if shared.clocks.of_slot(group.first_slot).is_none() {
            let clock = shared
                .node
                .db()
                .get(clock_key(group.first_slot))
                .map_err(|e| io_err("read a group clock", e))?
                .and_then(|b| b.try_into().ok().map(u64::from_le_bytes))
                .unwrap_or(0);
            shared
                .clocks
                .register(id, group.first_slot, group.last_slot, clock);
        }
        if !group.initialized && group.replicas.first() == Some(&shared.id) {
            let members = group
                .replicas
                .iter()
                .filter_map(|n| map.nodes.get(n).map(|e| (*n, e.info())))
                .collect();
            let t = std::time::Instant::now();
            hosted
                .initialize(members)
                .await
                .map_err(|e| io_err(&format!("initialize group {id}"), e))?;
            tracing::debug!(group = id, took = ?t.elapsed(), "initialized");
            let t = std::time::Instant::now();
            let r = shared
                .change_map(|current| {
                    let mut next = current.clone();
                    match next.groups.get_mut(&id) {
                        Some(g) if !g.initialized => {
                            g.initialized = true;
                            Ok(Some(next))
                        }
                        _ => Ok(None),
                    }
                })
                .await;
            tracing::debug!(group = id, took = ?t.elapsed(), "marked initialized");
            r?;
        }
    }
    membership::remove_unassigned(shared, &map).await
}
