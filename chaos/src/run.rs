//! One run: start the cluster, drive the clients, follow the schedule,
//! heal, read the final values, check, report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::check::{self, Anomaly, Findings};
use crate::cluster::Cluster;
use crate::fault::{self, Class, Fault, Step};
use crate::history::{RegOp, RegRecord};
use crate::rng::Rng;
use crate::workload::{self, Keys, Shared};

#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The `cairn` binary.
    pub cairn_bin: PathBuf,
    /// Where nodes keep data and logs, and anomalies are written. Made if
    /// missing; should be empty.
    pub dir: PathBuf,
    pub seed: u64,
    /// 3 or 5.
    pub nodes: u64,
    /// Further node ids that membership faults bring in (ports,
    /// certificates and relays are made for them up front).
    pub spares: u64,
    /// Workload time (startup, healing and checking come on top).
    pub duration: Duration,
    /// Steps run first, in order, all of them; then random steps from
    /// `classes` until `duration` is up.
    pub fixed: Vec<Step>,
    pub classes: Vec<Class>,
    /// Plain clients (spread over the nodes) and READONLY clients.
    pub clients: u32,
    pub follower_clients: u32,
    pub keys: Keys,
    /// Ops recorded at most; clients stop issuing past it, and the run
    /// reports it as a problem (the rest of the schedule ran without
    /// load). About 700 ops/s with the default clients here: 1.5 M is
    /// over 30 minutes, ~150 MiB of history.
    pub ops_max: usize,
    /// A client op not answered within this is indeterminate.
    pub op_timeout: Duration,
    /// `always` (the default durability) or `never`.
    pub fsync: String,
    pub limits: check::Limits,
}

impl RunConfig {
    pub fn new(cairn_bin: PathBuf, dir: PathBuf, seed: u64) -> RunConfig {
        RunConfig {
            cairn_bin,
            dir,
            seed,
            nodes: 3,
            spares: 2,
            duration: Duration::from_secs(60),
            fixed: Vec::new(),
            classes: vec![Class::Kill, Class::Pause, Class::Partition, Class::Transfer],
            clients: 6,
            follower_clients: 2,
            keys: Keys::default(),
            ops_max: 1_500_000,
            op_timeout: Duration::from_secs(6),
            fsync: "always".to_owned(),
            limits: check::Limits::default(),
        }
    }
}

/// What a run did and found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub seed: u64,
    pub nodes: u64,
    pub elapsed: Duration,
    /// Ops recorded (failed reads are not).
    pub ops: usize,
    pub indeterminate: usize,
    /// Faults injected, by name, in order.
    pub faults: Vec<(Fault, String)>,
    /// Datagrams the relays dropped.
    pub dropped_datagrams: u64,
    pub findings: Findings,
    /// Nodes that exited on their own, and harness problems (a fault that
    /// could not be injected, a cluster that did not recover).
    pub problems: Vec<String>,
    /// Files the anomalies were written to.
    pub anomaly_files: Vec<PathBuf>,
}

impl Report {
    /// The one-line summary.
    pub fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for (f, _) in &self.faults {
            *counts.entry(f.name()).or_default() += 1;
        }
        let faults: Vec<String> = counts.iter().map(|(n, c)| format!("{n} {c}")).collect();
        format!(
            "cairn-chaos seed={} nodes={} secs={} ops={} indeterminate={} faults={} ({}) dropped_datagrams={} anomalies={} unknown={} problems={}",
            self.seed,
            self.nodes,
            self.elapsed.as_secs(),
            self.ops,
            self.indeterminate,
            self.faults.len(),
            faults.join(", "),
            self.dropped_datagrams,
            self.findings.anomalies.len(),
            self.findings.unknown.len(),
            self.problems.len()
        )
    }

    pub fn injected(&self, class: Class) -> usize {
        self.faults
            .iter()
            .filter(|(f, _)| f.class() == class)
            .count()
    }
}

/// Runs the whole thing on its own tokio runtime.
pub fn run(config: &RunConfig) -> Result<Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(run_async(config))
}

fn log(start: Instant, line: &str) {
    eprintln!("[{:7.2}s] {line}", start.elapsed().as_secs_f64());
}

async fn run_async(config: &RunConfig) -> Result<Report, String> {
    std::fs::create_dir_all(&config.dir)
        .map_err(|e| format!("create {}: {e}", config.dir.display()))?;
    let t0 = Instant::now();
    let mut rng = Rng::new(config.seed);
    let mut cluster = Cluster::start(
        &config.cairn_bin,
        &config.dir,
        config.nodes,
        config.spares,
        &config.fsync,
    )
    .await?;
    cluster.wait_ready(Duration::from_secs(120)).await?;
    log(
        t0,
        &format!("{} nodes ready in {}", config.nodes, config.dir.display()),
    );
    let mut report = Report {
        seed: config.seed,
        nodes: config.nodes,
        ..Report::default()
    };
    let shared = Arc::new(Shared::new(
        Instant::now(),
        config.keys,
        config.ops_max,
        config.op_timeout,
    ));
    let clients = spawn_clients(config, &cluster, &shared, &mut rng);
    schedule(config, &mut cluster, &mut rng, &mut report, t0).await;
    shared.stop();
    for c in clients {
        let _ = c.await;
    }
    log(t0, "clients stopped; healing");
    if let Err(e) = cluster.heal_all() {
        report.problems.push(format!("heal: {e}"));
    }
    if let Err(e) = cluster.wait_ready(Duration::from_secs(60)).await {
        report.problems.push(format!("after healing: {e}"));
    }
    if report.injected(Class::Membership) > 0 {
        // Every node that joined must have become a full replica.
        match cluster.wait_settled(fault::MEMBERSHIP_WAIT).await {
            Ok(()) => log(t0, &format!("members {:?} settled", cluster.ids())),
            Err(e) => report.problems.push(format!("after healing: {e}")),
        }
    }
    final_reads(&cluster, &shared).await;
    while let Some((id, status)) = cluster.crashed() {
        report
            .problems
            .push(format!("node {id} exited on its own: {status}"));
    }
    report.dropped_datagrams = cluster.relays.dropped();
    drop(cluster);
    let history = shared.history().clone();
    report.ops = history.len();
    if report.ops >= config.ops_max {
        report.problems.push(format!(
            "the history reached ops_max ({}): the clients stopped early",
            config.ops_max
        ));
    }
    report.indeterminate = history.indeterminate();
    log(t0, &format!("checking {} ops", report.ops));
    report.findings = check::check_all(&history, config.limits);
    for (i, a) in report.findings.anomalies.iter().enumerate() {
        let path = config.dir.join(format!("anomaly-{i}.txt"));
        std::fs::write(&path, anomaly_text(config, a))
            .map_err(|e| format!("write {}: {e}", path.display()))?;
        report.anomaly_files.push(path);
    }
    report.elapsed = t0.elapsed();
    Ok(report)
}

fn spawn_clients(
    config: &RunConfig,
    cluster: &Cluster,
    shared: &Arc<Shared>,
    rng: &mut Rng,
) -> Vec<tokio::task::JoinHandle<()>> {
    let ids = cluster.ids();
    let mut tasks = Vec::new();
    for c in 0..config.clients + config.follower_clients {
        let index = usize::try_from(c).unwrap_or(0) % ids.len().max(1);
        let Some(&node) = ids.get(index) else {
            continue;
        };
        let Some(addrs) = cluster.addrs(node) else {
            continue;
        };
        let (shared, client_rng) = (Arc::clone(shared), rng.fork());
        let task = if c < config.clients {
            tokio::spawn(workload::plain_client(
                shared,
                c + 1,
                addrs.client,
                client_rng,
            ))
        } else {
            tokio::spawn(workload::follower_client(
                shared,
                c + 1,
                node,
                addrs.client,
                client_rng,
            ))
        };
        tasks.push(task);
    }
    tasks
}

async fn schedule(
    config: &RunConfig,
    cluster: &mut Cluster,
    rng: &mut Rng,
    report: &mut Report,
    t0: Instant,
) {
    let start = Instant::now();
    // Let the clients warm up before the first fault.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut fixed = config.fixed.iter().copied();
    loop {
        let step = match fixed.next() {
            Some(step) => step,
            None if start.elapsed() >= config.duration => break,
            None => match fault::random_step(rng, &config.classes) {
                Some(step) => step,
                None => {
                    tokio::time::sleep(config.duration.saturating_sub(start.elapsed())).await;
                    break;
                }
            },
        };
        let key = format!("r{}.0", rng.below(config.keys.registers));
        match fault::inject(cluster, step.fault, &key, rng).await {
            Ok((what, undo)) => {
                log(
                    t0,
                    &format!("{}: {what} for {} ms", step.fault.name(), step.hold_ms),
                );
                report.faults.push((step.fault, what));
                tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
                match fault::undo(cluster, &undo).await {
                    Ok(()) => log(t0, &format!("undone: {undo:?}")),
                    Err(e) => {
                        log(t0, &format!("undo {undo:?}: {e}"));
                        report.problems.push(format!("undo {undo:?}: {e}"));
                    }
                }
            }
            Err(e) => {
                log(t0, &format!("{}: not injected: {e}", step.fault.name()));
                // A membership step's waits are bounded; one that runs
                // out is a finding (a node that never leaves or catches
                // up), not a skipped fault.
                if step.fault.class() == Class::Membership {
                    report.problems.push(format!("{}: {e}", step.fault.name()));
                }
                tokio::time::sleep(Duration::from_millis(step.hold_ms)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(step.rest_ms)).await;
        while let Some((id, status)) = cluster.crashed() {
            log(
                t0,
                &format!("node {id} exited on its own ({status}); restarting"),
            );
            report
                .problems
                .push(format!("node {id} exited on its own: {status}"));
            let _ = cluster.restart(id);
        }
    }
}

async fn final_reads(cluster: &Cluster, shared: &Shared) {
    let addrs: Vec<_> = cluster
        .ids()
        .into_iter()
        .filter_map(|id| cluster.addrs(id).map(|a| a.client))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut failures = BTreeMap::new();
    let (registers, counters, appends) = shared.keys_used();
    for key in registers {
        if let Some((invoke_ns, complete_ns, v)) =
            workload::final_get(shared, &addrs, &key, deadline, &mut failures).await
        {
            shared.history().registers.push(RegRecord {
                client: 0,
                key,
                op: RegOp::Read(v.as_deref().map(workload::parse_value)),
                invoke_ns,
                complete_ns: Some(complete_ns),
            });
        }
    }
    for key in counters {
        let got = workload::final_get(shared, &addrs, &key, deadline, &mut failures).await;
        // A missing key is 0; a value that is no integer is out of every
        // bound, so the check reports it.
        let value = got.map(|(_, _, v)| {
            v.map_or(0, |b| {
                std::str::from_utf8(&b)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(i64::MIN)
            })
        });
        shared.history().final_counters.push((key, value));
    }
    for key in appends {
        let got = workload::final_get(shared, &addrs, &key, deadline, &mut failures).await;
        let value = got.map(|(_, _, v)| v.unwrap_or_default());
        shared.history().final_appends.push((key, value));
    }
    for (addr, failure) in failures {
        let node = cluster
            .ids()
            .into_iter()
            .find(|&id| cluster.addrs(id).map(|a| a.client) == Some(addr));
        eprintln!("final reads: node {node:?} at {addr}, last failure: {failure}");
    }
}

fn anomaly_text(config: &RunConfig, a: &Anomaly) -> String {
    let mut text = format!(
        "{}: {}\nkey {}, seed {}, {} nodes, node logs in {}\n\n",
        a.kind,
        a.summary,
        a.key,
        config.seed,
        config.nodes,
        config.dir.display()
    );
    let _ = writeln!(
        text,
        "clients 1-{} are plain clients, {}-{} READONLY ones; client 0 reads the final values after healing\n",
        config.clients,
        config.clients + 1,
        config.clients + config.follower_clients
    );
    for line in &a.history {
        let _ = writeln!(text, "{line}");
    }
    text
}
