//! The admin HTTP server: `/health`, `/status` (JSON), `/metrics`
//! (Prometheus text), and the operations `cairn admin` calls:
//! `POST /admin/transfer-leader?group=G&to=N`,
//! `POST /admin/add-node?id=N&raft=A&client=A&admin=A` and
//! `POST /admin/remove-node?id=N`.
//!
//! A deliberately small HTTP/1.1 server: one request per connection, the
//! request head bounded to 16 KiB and read within 10 s, no request bodies.
//! It is for operators and scrapers on a trusted network, not for clients.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::cluster::map::NodeEntry;
use crate::server::Shared;

const MAX_HEAD_BYTES: usize = 16 << 10;
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Admin connections served at once; more wait in the accept queue.
const MAX_ADMIN_CONNECTIONS: usize = 64;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_ADMIN_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = handle(&shared, stream).await {
                debug!(error = %e, "admin connection");
            }
            drop(permit);
        });
    }
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

async fn handle(shared: &Shared, mut stream: TcpStream) -> std::io::Result<()> {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => None,
    };
    let Some(head) = head else {
        return respond(&mut stream, 400, "text/plain", "bad request\n").await;
    };
    let mut words = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match (method, path) {
        ("GET", "/health") => {
            if shared.ready() {
                respond(&mut stream, 200, "text/plain", "ok\n").await
            } else {
                respond(&mut stream, 503, "text/plain", "not ready\n").await
            }
        }
        ("GET", "/status") => {
            let body = serde_json::to_string_pretty(&status(shared)).unwrap_or_default();
            respond(&mut stream, 200, "application/json", &body).await
        }
        ("GET", "/metrics") => {
            let body = metrics(shared);
            respond(&mut stream, 200, "text/plain; version=0.0.4", &body).await
        }
        ("POST", "/admin/transfer-leader") => {
            let (code, body) = transfer_leader(shared, query).await;
            respond(&mut stream, code, "text/plain", &body).await
        }
        ("POST", "/admin/add-node") => {
            let (code, body) = add_node(shared, query).await;
            respond(&mut stream, code, "text/plain", &body).await
        }
        ("POST", "/admin/remove-node") => {
            let (code, body) = remove_node(shared, query).await;
            respond(&mut stream, code, "text/plain", &body).await
        }
        _ => respond(&mut stream, 404, "text/plain", "not found\n").await,
    }
}

async fn respond(stream: &mut TcpStream, code: u16, kind: &str, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        409 => "Conflict",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {kind}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn transfer_leader(shared: &Shared, query: &str) -> (u16, String) {
    let (Some(group), Some(to)) = (
        query_param(query, "group").and_then(|g| g.parse::<u64>().ok()),
        query_param(query, "to").and_then(|n| n.parse::<u64>().ok()),
    ) else {
        return (
            400,
            "usage: POST /admin/transfer-leader?group=G&to=N\n".into(),
        );
    };
    let Some(g) = shared.node.group(group) else {
        return (404, format!("group {group} is not on this node\n"));
    };
    if !g.is_leader() {
        let leader = g.metrics().leader;
        return (
            409,
            format!(
                "node {} does not lead group {group}; ask its leader ({leader:?})\n",
                shared.id
            ),
        );
    }
    match g.transfer_leader(to).await {
        Ok(()) => (
            200,
            format!("group {group}: leadership moved to node {to}\n"),
        ),
        Err(e) => (409, format!("{e}\n")),
    }
}

/// Adds a node to the cluster map; the groups' leaders then move replicas
/// onto it (see `cluster::membership`). Returns once the map is changed.
async fn add_node(shared: &Shared, query: &str) -> (u16, String) {
    let usage =
        "usage: POST /admin/add-node?id=N&raft=HOST:PORT&client=HOST:PORT&admin=HOST:PORT\n";
    let id = query_param(query, "id").and_then(|n| n.parse::<u64>().ok());
    let (Some(id), Some(raft), Some(client), Some(admin)) = (
        id,
        query_param(query, "raft"),
        query_param(query, "client"),
        query_param(query, "admin"),
    ) else {
        return (400, usage.into());
    };
    let entry = NodeEntry {
        raft_addr: raft.to_owned(),
        client_addr: client.to_owned(),
        admin_addr: admin.to_owned(),
    };
    let result = shared
        .change_map(|current| current.with_node(id, entry.clone()).map_err(|e| e.0))
        .await;
    match result {
        Ok(()) => (
            200,
            format!(
                "node {id} added (map epoch {}); replicas move to it in the background: watch `cairn admin status`\n",
                shared.map().epoch
            ),
        ),
        Err(e) => (409, format!("{e}\n")),
    }
}

/// Takes a node out of the cluster map; the groups' leaders move its
/// replicas to other nodes and then drop it.
async fn remove_node(shared: &Shared, query: &str) -> (u16, String) {
    let Some(id) = query_param(query, "id").and_then(|n| n.parse::<u64>().ok()) else {
        return (400, "usage: POST /admin/remove-node?id=N\n".into());
    };
    let result = shared
        .change_map(|current| current.without_node(id).map_err(|e| e.0))
        .await;
    match result {
        Ok(()) => (
            200,
            format!(
                "node {id} removed from the map (epoch {}); its replicas move in the background: stop it once `cairn admin status` shows no group on it\n",
                shared.map().epoch
            ),
        ),
        Err(e) => (409, format!("{e}\n")),
    }
}

#[derive(Serialize)]
struct Status {
    node: u64,
    ready: bool,
    epoch: u64,
    cluster_id: String,
    nodes: Vec<NodeStatus>,
    groups: Vec<GroupStatus>,
}

#[derive(Serialize)]
struct NodeStatus {
    id: u64,
    client_addr: String,
    raft_addr: String,
    admin_addr: String,
}

#[derive(Serialize)]
struct GroupStatus {
    id: u64,
    slots: (u16, u16),
    replicas: Vec<u64>,
    leader: Option<u64>,
    /// This node's view (only for groups hosted here).
    local: Option<LocalGroup>,
}

#[derive(Serialize)]
struct LocalGroup {
    state: &'static str,
    term: u64,
    applied: u64,
    last_log_index: u64,
    /// The Raft membership this replica has: it reaches the map's
    /// `replicas` as membership changes complete.
    voters: Vec<u64>,
    learners: Vec<u64>,
    /// Leader only: entries each follower is behind.
    lag: std::collections::BTreeMap<u64, u64>,
}

fn status(shared: &Shared) -> Status {
    let map = shared.map();
    let mut groups = Vec::new();
    let meta = std::iter::once((crate::cluster::map::META_GROUP, None));
    let data = map.groups.iter().map(|(&id, g)| (id, Some(g)));
    for (id, entry) in meta.chain(data) {
        let local = shared.node.group(id).map(|g| {
            let m = g.metrics();
            LocalGroup {
                state: m.state,
                term: m.term,
                applied: m.last_applied.map_or(0, |l| l.index),
                last_log_index: m.last_log_index.unwrap_or(0),
                voters: m.voters.iter().copied().collect(),
                learners: m.learners.iter().copied().collect(),
                lag: m.followers.iter().map(|(n, p)| (*n, p.lag)).collect(),
            }
        });
        groups.push(GroupStatus {
            id,
            slots: entry.map_or((0, 0), |g| (g.first_slot, g.last_slot)),
            replicas: entry.map_or_else(
                || {
                    if map.meta_voters.is_empty() {
                        map.nodes.keys().copied().collect()
                    } else {
                        map.meta_voters.clone()
                    }
                },
                |g| g.replicas.clone(),
            ),
            leader: shared.leader_hint(id),
            local,
        });
    }
    Status {
        node: shared.id,
        ready: shared.ready(),
        epoch: map.epoch,
        cluster_id: map.cluster_id.clone(),
        nodes: map
            .nodes
            .iter()
            .map(|(&id, n)| NodeStatus {
                id,
                client_addr: n.client_addr.clone(),
                raft_addr: n.raft_addr.clone(),
                admin_addr: n.admin_addr.clone(),
            })
            .collect(),
        groups,
    }
}

fn metrics(shared: &Shared) -> String {
    let mut out = String::new();
    shared.metrics.render(&mut out);
    out.push_str(
        "# HELP cairn_raft_term Current Raft term, by group.\n# TYPE cairn_raft_term gauge\n",
    );
    let groups: Vec<_> = shared
        .node
        .groups()
        .into_iter()
        .map(|g| g.metrics())
        .collect();
    for m in &groups {
        let _ = writeln!(out, "cairn_raft_term{{group=\"{}\"}} {}", m.group, m.term);
    }
    out.push_str("# HELP cairn_raft_is_leader 1 if this node leads the group.\n# TYPE cairn_raft_is_leader gauge\n");
    for m in &groups {
        let _ = writeln!(
            out,
            "cairn_raft_is_leader{{group=\"{}\"}} {}",
            m.group,
            u8::from(m.leader == Some(shared.id))
        );
    }
    out.push_str("# HELP cairn_raft_leader Node id of the group's leader (0: unknown).\n# TYPE cairn_raft_leader gauge\n");
    for m in &groups {
        let _ = writeln!(
            out,
            "cairn_raft_leader{{group=\"{}\"}} {}",
            m.group,
            m.leader.unwrap_or(0)
        );
    }
    out.push_str("# HELP cairn_raft_applied_index Last applied log index, by group.\n# TYPE cairn_raft_applied_index gauge\n");
    for m in &groups {
        let _ = writeln!(
            out,
            "cairn_raft_applied_index{{group=\"{}\"}} {}",
            m.group,
            m.last_applied.map_or(0, |l| l.index)
        );
    }
    out.push_str("# HELP cairn_raft_apply_lag Log entries not yet applied here, by group.\n# TYPE cairn_raft_apply_lag gauge\n");
    for m in &groups {
        let lag = m
            .last_log_index
            .unwrap_or(0)
            .saturating_sub(m.last_applied.map_or(0, |l| l.index));
        let _ = writeln!(out, "cairn_raft_apply_lag{{group=\"{}\"}} {lag}", m.group);
    }
    out.push_str("# HELP cairn_raft_follower_lag Entries a follower is behind (leader only).\n# TYPE cairn_raft_follower_lag gauge\n");
    for m in &groups {
        for (follower, p) in &m.followers {
            let _ = writeln!(
                out,
                "cairn_raft_follower_lag{{group=\"{}\",follower=\"{follower}\"}} {}",
                m.group, p.lag
            );
        }
    }
    let stats = shared.node.db().stats();
    out.push_str("# HELP cairn_engine_level_files Table files per LSM level.\n# TYPE cairn_engine_level_files gauge\n");
    for (level, l) in stats.levels.iter().enumerate() {
        let _ = writeln!(
            out,
            "cairn_engine_level_files{{level=\"{level}\"}} {}",
            l.files
        );
    }
    out.push_str("# HELP cairn_engine_level_bytes Table bytes per LSM level.\n# TYPE cairn_engine_level_bytes gauge\n");
    for (level, l) in stats.levels.iter().enumerate() {
        let _ = writeln!(
            out,
            "cairn_engine_level_bytes{{level=\"{level}\"}} {}",
            l.bytes
        );
    }
    let engine: [(&str, &str, &str, u64); 10] = [
        (
            "cairn_engine_table_bytes",
            "gauge",
            "Bytes of table files on disk.",
            stats.table_bytes(),
        ),
        (
            "cairn_engine_memtable_bytes",
            "gauge",
            "Bytes in memtables.",
            stats.memtable_bytes,
        ),
        (
            "cairn_engine_block_cache_bytes",
            "gauge",
            "Bytes in the block cache.",
            stats.block_cache_bytes,
        ),
        (
            "cairn_engine_compactions_total",
            "counter",
            "Compactions run.",
            stats.compactions,
        ),
        (
            "cairn_engine_compaction_bytes_written_total",
            "counter",
            "Bytes written by compactions.",
            stats.compaction_bytes_written,
        ),
        (
            "cairn_engine_idle_compactions_total",
            "counter",
            "Memtable and L0 folded into L1 after writes paused.",
            stats.idle_compactions,
        ),
        (
            "cairn_engine_flushes_total",
            "counter",
            "Memtable flushes.",
            stats.flushes,
        ),
        (
            "cairn_engine_stalls_total",
            "counter",
            "Writes stopped for L0 or memtables.",
            stats.stall_count,
        ),
        (
            "cairn_engine_stall_microseconds_total",
            "counter",
            "Time writes spent stalled.",
            stats.stall_micros,
        ),
        (
            "cairn_engine_user_bytes_written_total",
            "counter",
            "Bytes of user writes.",
            stats.user_bytes_written,
        ),
    ];
    for (name, kind, help, value) in engine {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let log = shared.node.log_store().stats();
    let _ = writeln!(
        out,
        "# HELP cairn_raft_log_fsyncs_total Raft log fsyncs.\n# TYPE cairn_raft_log_fsyncs_total counter\ncairn_raft_log_fsyncs_total {}",
        log.fsyncs
    );
    out
}
