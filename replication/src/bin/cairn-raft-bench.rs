//! Replication throughput and latency: 3 nodes in one process over QUIC
//! with mutual TLS on loopback, engine and Raft log on the real file system
//! with fsync, 100-byte values, N concurrent proposers over G groups.
//!
//! ```text
//! cargo run --release -p cairn-replication --bin cairn-raft-bench -- \
//!     [--proposers 1,16,64,256] [--groups 1,16] [--seconds 5] [--value-bytes 100] [--dir PATH]
//!     [--batches-in-flight N] [--batch-requests N]
//! ```
//!
//! The last two override `RaftOptions::batches_in_flight_max` and
//! `batch_requests_max` (defaults otherwise, on `RaftOptions::loopback()`).
//!
//! Each proposer loops: pick its group, propose a put of a fresh key to the
//! group's leader, wait until it is applied there (which means a majority
//! has fsynced it), record the latency. A failed proposal is counted as an
//! error and the proposer looks up the group's leader again. Prints one row
//! per (groups, proposers): writes/s, p50, p99, p99.9, log entries per
//! fsync, writes per log entry (how many proposals each Raft entry
//! carried), and errors.

use cairn_engine::{Db, Options};
use cairn_replication::{
    ClusterCa, Group, KeyRange, KvApplication, KvCommand, LogStoreOptions, Node, NodeInfo,
    NodeOptions, QuicConfig, QuicTransport, RaftOptions, Request, RpcRouter, SharedLog,
    TlsMaterial,
};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The `cairn` binary's allocator (see server/Cargo.toml).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    proposers: Vec<usize>,
    groups: Vec<u64>,
    seconds: u64,
    value_bytes: usize,
    dir: Option<PathBuf>,
    raft: RaftOptions,
}

fn parse_list<T: std::str::FromStr>(text: &str) -> Result<Vec<T>, BoxError> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<T>()
                .map_err(|_| format!("bad number {s:?}").into())
        })
        .collect()
}

fn parse_args() -> Result<Args, BoxError> {
    let mut args = Args {
        proposers: vec![1, 16, 64, 256],
        groups: vec![1, 16],
        seconds: 5,
        value_bytes: 100,
        dir: None,
        raft: RaftOptions::loopback(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--proposers" => args.proposers = parse_list(&value()?)?,
            "--groups" => args.groups = parse_list(&value()?)?,
            "--seconds" => args.seconds = value()?.parse()?,
            "--value-bytes" => args.value_bytes = value()?.parse()?,
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--batches-in-flight" => args.raft.batches_in_flight_max = value()?.parse()?,
            "--batch-requests" => args.raft.batch_requests_max = value()?.parse()?,
            "--help" | "-h" => {
                println!(
                    "cairn-raft-bench [--proposers 1,16,64,256] [--groups 1,16] [--seconds 5] [--value-bytes 100] [--dir PATH] [--batches-in-flight N] [--batch-requests N]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

struct BenchNode {
    node: Node,
    _quic: Arc<QuicTransport>,
}

async fn start_node(
    id: u64,
    dir: &Path,
    ca: &ClusterCa,
    raft: &RaftOptions,
) -> Result<BenchNode, BoxError> {
    let db = Db::open(dir.join("db"), Options::default())?;
    let fs = db.options().fs.clone();
    let log = SharedLog::open(fs, &dir.join("raft"), LogStoreOptions::default())?;
    let router = RpcRouter::new();
    let cert = ca.issue_node(&format!("node-{id}"), &["127.0.0.1".to_owned()])?;
    let config = QuicConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        ..QuicConfig::default()
    };
    let quic = Arc::new(QuicTransport::start(
        config,
        &TlsMaterial::new(ca, &cert),
        router.clone(),
    )?);
    let info = NodeInfo::new(quic.local_addr().to_string(), String::new());
    let node = Node::open(
        NodeOptions {
            id,
            info,
            snapshot_dir: dir.join("snapshots"),
            raft: raft.clone(),
        },
        db,
        log,
        quic.clone(),
        router,
        Arc::new(KvApplication),
    )
    .await?;
    Ok(BenchNode { node, _quic: quic })
}

fn group_range(g: u64) -> KeyRange {
    let g = g as u16;
    KeyRange::new(g.to_be_bytes().to_vec(), (g + 1).to_be_bytes().to_vec())
}

async fn leader_of(nodes: &[Node], g: u64) -> Result<Group, BoxError> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for n in nodes {
            if let Some(group) = n.group(g)
                && group.is_leader()
            {
                return Ok(group);
            }
        }
        if Instant::now() > deadline {
            return Err(format!("group {g} elected no leader").into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

struct Row {
    groups: u64,
    proposers: usize,
    writes: u64,
    /// Proposals that failed (leader changes, timeouts); not counted in
    /// `writes`.
    errors: u64,
    elapsed: Duration,
    latencies_us: Vec<u64>,
    entries_per_fsync: f64,
    /// Acknowledged writes per Raft entry appended: the batching.
    requests_per_entry: f64,
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

async fn run_case(
    root: &Path,
    ca: &ClusterCa,
    groups: u64,
    proposers: usize,
    args: &Args,
) -> Result<Row, BoxError> {
    let case_dir = root.join(format!("g{groups}-p{proposers}"));
    let mut nodes = Vec::new();
    for id in 1..=3u64 {
        nodes.push(start_node(id, &case_dir.join(format!("node-{id}")), ca, &args.raft).await?);
    }
    let members: BTreeMap<u64, NodeInfo> = nodes
        .iter()
        .map(|n| (n.node.id(), n.node.info().clone()))
        .collect();
    for g in 1..=groups {
        for n in &nodes {
            n.node.create_group(g, group_range(g)).await?;
        }
        // Spread leadership: the initialising node usually wins the first
        // election.
        let first = &nodes[(g as usize) % nodes.len()];
        first
            .node
            .group(g)
            .ok_or("group missing")?
            .initialize(members.clone())
            .await?;
    }
    let handles: Vec<Node> = nodes.iter().map(|n| n.node.clone()).collect();
    let mut leaders = Vec::new();
    for g in 1..=groups {
        leaders.push(leader_of(&handles, g).await?);
    }
    let fsyncs_before: u64 = nodes
        .iter()
        .map(|n| n.node.log_store().stats().fsyncs)
        .sum();
    let entries_before: u64 = nodes
        .iter()
        .map(|n| n.node.log_store().stats().entries_written)
        .sum();
    let batches_before = proposed_batches(&handles, groups);
    let value = vec![b'v'; args.value_bytes];
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..proposers {
        let mut group = leaders[p % leaders.len()].clone();
        let handles = handles.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0u64;
            let mut i = 0u64;
            let prefix = group.range().start.clone();
            while Instant::now() < deadline {
                let mut key = prefix.clone();
                key.extend_from_slice(format!("p{p}-{i}").as_bytes());
                i += 1;
                let command = KvCommand::Put {
                    key,
                    value: value.clone(),
                }
                .encode();
                let t = Instant::now();
                let request = Request {
                    client_id: 0,
                    serial: 0,
                    command,
                };
                if group.propose(request).await.is_ok() {
                    latencies.push(t.elapsed().as_micros() as u64);
                } else {
                    // Leadership moved (or the write timed out): find the
                    // group's leader again, as a client following a
                    // redirect would, instead of spinning on a follower.
                    errors += 1;
                    if let Ok(leader) = leader_of(&handles, group.id()).await {
                        group = leader;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (latencies, failed) = task.await?;
        latencies_us.extend(latencies);
        errors += failed;
    }
    let elapsed = start.elapsed();
    let fsyncs: u64 = nodes
        .iter()
        .map(|n| n.node.log_store().stats().fsyncs)
        .sum::<u64>()
        - fsyncs_before;
    let entries: u64 = nodes
        .iter()
        .map(|n| n.node.log_store().stats().entries_written)
        .sum::<u64>()
        - entries_before;
    let batches = proposed_batches(&handles, groups) - batches_before;
    for n in &nodes {
        n.node.shutdown().await;
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&case_dir);
    latencies_us.sort_unstable();
    let writes = latencies_us.len() as u64;
    Ok(Row {
        groups,
        proposers,
        writes,
        errors,
        elapsed,
        latencies_us,
        entries_per_fsync: if fsyncs == 0 {
            0.0
        } else {
            entries as f64 / fsyncs as f64
        },
        requests_per_entry: if batches == 0 {
            0.0
        } else {
            writes as f64 / batches as f64
        },
    })
}

/// Batches (Raft entries of requests) proposed by every replica of every
/// group so far.
fn proposed_batches(nodes: &[Node], groups: u64) -> u64 {
    (1..=groups)
        .flat_map(|g| nodes.iter().filter_map(move |n| n.group(g)))
        .map(|group| group.metrics().proposed_batches)
        .sum()
}

fn main() -> Result<(), BoxError> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let tmp;
        let root = match &args.dir {
            Some(dir) => dir.clone(),
            None => {
                tmp = tempfile_dir()?;
                tmp.clone()
            }
        };
        let ca = ClusterCa::generate("cairn bench ca")?;
        println!(
            "3 nodes, QUIC + mTLS on loopback, fsync on, {}-byte values, {} s per case",
            args.value_bytes, args.seconds
        );
        println!(
            "{:>6} {:>9} {:>10} {:>9} {:>9} {:>9} {:>13} {:>13} {:>6}",
            "groups",
            "proposers",
            "writes/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms",
            "entries/fsync",
            "writes/entry",
            "errors"
        );
        for &groups in &args.groups {
            // The ratio column is against this group count's first row (its
            // fewest proposers), as docs/benchmarks.md reads it.
            let mut base: Option<f64> = None;
            for &proposers in &args.proposers {
                let row = run_case(&root, &ca, groups, proposers, &args).await?;
                let rate = row.writes as f64 / row.elapsed.as_secs_f64();
                if base.is_none() {
                    base = Some(rate);
                }
                println!(
                    "{:>6} {:>9} {:>10.0} {:>9.2} {:>9.2} {:>9.2} {:>13.1} {:>13.1} {:>6}{}",
                    row.groups,
                    row.proposers,
                    rate,
                    percentile(&row.latencies_us, 0.50),
                    percentile(&row.latencies_us, 0.99),
                    percentile(&row.latencies_us, 0.999),
                    row.entries_per_fsync,
                    row.requests_per_entry,
                    row.errors,
                    base.map(|b| format!("   ({:.1}x)", rate / b))
                        .unwrap_or_default()
                );
            }
        }
        let _ = std::fs::remove_dir_all(&root);
        Ok(())
    })
}

fn tempfile_dir() -> Result<PathBuf, BoxError> {
    let dir = std::env::temp_dir().join(format!("cairn-raft-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
