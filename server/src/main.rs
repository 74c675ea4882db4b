//! `cairn`: run a node (`start`), a local cluster (`local`), make
//! certificates (`certs`), and operate a cluster (`admin`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cairn_replication::ClusterCa;
use cairn_server::config::{Config, FsyncPolicy, Network, Redirect};
use cairn_server::server::write_secret;
use clap::{Args, Parser, Subcommand};

/// See server/Cargo.toml: glibc's allocator was a third of the CPU under
/// pipelined load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: a replicated, sharded key-value store speaking the Redis protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a node. With no arguments: a single-node cluster, data in
    /// ./cairn-data, RESP on 127.0.0.1:7379, admin HTTP on 127.0.0.1:7380.
    Start(Box<StartArgs>),
    /// Run a local cluster of N node processes on loopback; Ctrl-C stops it.
    Local(LocalArgs),
    /// Create a cluster CA and node certificates for QUIC between nodes.
    Certs(CertsArgs),
    /// Operate a running node over its admin HTTP API.
    Admin(AdminArgs),
}

/// Every config file key is also a flag; flags win over the file.
#[derive(Args, Default)]
struct StartArgs {
    /// A TOML config file (keys as in docs/operations.md).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    node_id: Option<u64>,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// RESP listen address.
    #[arg(long)]
    listen: Option<SocketAddr>,
    #[arg(long)]
    raft_listen: Option<SocketAddr>,
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    #[arg(long)]
    advertise_client: Option<String>,
    #[arg(long)]
    advertise_raft: Option<String>,
    #[arg(long)]
    advertise_admin: Option<String>,
    /// Initial cluster member `id@raft_addr@client_addr@admin_addr`;
    /// repeat for each node, this one included.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// Create the cluster from this node (run on exactly one node, once).
    #[arg(long)]
    bootstrap: Option<bool>,
    /// Wait to be added to a running cluster (`cairn admin add-node` on a
    /// member): the same as `--bootstrap false`.
    #[arg(long, conflicts_with = "bootstrap")]
    join: bool,
    /// Data groups made at bootstrap (default: 3 per initial node).
    #[arg(long)]
    groups: Option<u16>,
    #[arg(long)]
    replicas: Option<usize>,
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Certificate (PEM) for TLS on the RESP port; the port then accepts
    /// only TLS. With --client-tls-key.
    #[arg(long)]
    client_tls_cert: Option<PathBuf>,
    #[arg(long)]
    client_tls_key: Option<PathBuf>,
    /// CA (PEM) that client certificates must chain to (mutual TLS).
    #[arg(long)]
    client_tls_ca: Option<PathBuf>,
    #[arg(long, env = "CAIRN_REQUIREPASS", hide_env_values = true)]
    requirepass: Option<String>,
    #[arg(long, value_enum)]
    fsync: Option<FsyncPolicy>,
    /// Engine memory budget in MiB.
    #[arg(long)]
    memory_mb: Option<usize>,
    #[arg(long, value_enum)]
    network: Option<Network>,
    #[arg(long, value_enum)]
    redirect: Option<Redirect>,
    #[arg(long)]
    max_clients: Option<usize>,
    #[arg(long)]
    request_timeout_ms: Option<u64>,
    /// Seconds a client may take to finish a started request or a TLS
    /// handshake.
    #[arg(long)]
    request_read_timeout_s: Option<u64>,
    /// Largest bulk string a client may send, bytes.
    #[arg(long)]
    max_bulk_bytes: Option<usize>,
    /// Log filter, e.g. `info` or `cairn_server=debug,warn`. RUST_LOG wins.
    #[arg(long)]
    log: Option<String>,
    /// `id@host:port`: dial node `id` there instead of its advertised Raft
    /// address (proxies, fault injection); repeat per node.
    #[arg(long = "raft-dial")]
    raft_dial: Vec<String>,
}

#[derive(Args)]
struct LocalArgs {
    /// Number of nodes.
    #[arg(long, default_value_t = 3)]
    nodes: u64,
    /// Node i (from 1) uses RESP port base + 10 (i - 1), admin +1, QUIC +2.
    #[arg(long, default_value_t = 7379)]
    base_port: u16,
    /// Folder holding every node's data and the certificates.
    #[arg(long, default_value = "cairn-local")]
    dir: PathBuf,
    /// Data groups (default: 3 per node).
    #[arg(long)]
    groups: Option<u16>,
    #[arg(long, value_enum, default_value = "always")]
    fsync: FsyncPolicy,
}

#[derive(Args)]
struct CertsArgs {
    /// Output folder: ca.pem, ca-key.pem, node-<id>.pem, node-<id>-key.pem.
    #[arg(long, default_value = "cairn-certs")]
    out: PathBuf,
    /// `id=host[,host...]` per node: the names or IPs peers dial it by.
    #[arg(long = "node", required = true)]
    nodes: Vec<String>,
    /// Reuse the CA in the output folder (to add nodes later).
    #[arg(long)]
    reuse_ca: bool,
}

#[derive(Args)]
struct AdminArgs {
    /// A node's admin address.
    #[arg(long, default_value = "127.0.0.1:7380")]
    node: String,
    #[command(subcommand)]
    action: AdminAction,
}

#[derive(Subcommand)]
enum AdminAction {
    /// The cluster as this node sees it (JSON).
    Status,
    /// Whether the node is ready.
    Health,
    /// Prometheus metrics.
    Metrics,
    /// Move a group's leadership to another node (ask the group's leader).
    TransferLeader {
        #[arg(long)]
        group: u64,
        #[arg(long)]
        to: u64,
    },
    /// Add a node (started with `cairn start --join`) to the cluster; the
    /// groups' replicas are rebalanced onto it.
    AddNode {
        #[arg(long)]
        id: u64,
        /// Its QUIC address, as other nodes dial it.
        #[arg(long)]
        raft: String,
        /// Its RESP address, as clients dial it.
        #[arg(long)]
        client: String,
        /// Its admin HTTP address.
        #[arg(long)]
        admin: String,
    },
    /// Remove a node: its replicas move to the other nodes first. Stop it
    /// afterwards and do not restart it with its data.
    RemoveNode {
        #[arg(long)]
        id: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Start(args) => start(*args),
        Cmd::Local(args) => local(args),
        Cmd::Certs(args) => certs(args),
        Cmd::Admin(args) => admin(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn build_config(args: StartArgs) -> Result<Config, String> {
    let mut c = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("read {}: {e}", path.display()))?;
            Config::from_toml(&text)?
        }
        None => Config::default(),
    };
    macro_rules! set {
        ($($field:ident),*) => { $(if let Some(v) = args.$field { c.$field = v; })* };
    }
    macro_rules! set_opt {
        ($($field:ident),*) => { $(if args.$field.is_some() { c.$field = args.$field; })* };
    }
    set!(
        node_id,
        data_dir,
        listen,
        raft_listen,
        admin_listen,
        replicas,
        fsync,
        memory_mb,
        network,
        redirect,
        max_clients,
        request_timeout_ms,
        request_read_timeout_s,
        max_bulk_bytes,
        log
    );
    set_opt!(
        advertise_client,
        advertise_raft,
        advertise_admin,
        bootstrap,
        groups,
        tls_ca,
        tls_cert,
        tls_key,
        client_tls_cert,
        client_tls_key,
        client_tls_ca,
        requirepass
    );
    if !args.peers.is_empty() {
        c.peers = args.peers;
    }
    if args.join {
        c.bootstrap = Some(false);
    }
    if !args.raft_dial.is_empty() {
        c.raft_dial = args.raft_dial;
    }
    c.validate()?;
    Ok(c)
}

fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))
}

fn start(args: StartArgs) -> Result<(), String> {
    let config = build_config(args)?;
    init_logs(&config.log);
    runtime()?.block_on(async move {
        let server = cairn_server::Server::start(config).await?;
        println!(
            "cairn node {} serving RESP on {}, admin on http://{}",
            server.shared.id,
            server.client_addr(),
            server.admin_addr()
        );
        wait_for_signal().await;
        eprintln!("cairn: shutting down");
        server.shutdown().await;
        Ok(())
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn local(args: LocalArgs) -> Result<(), String> {
    if args.nodes == 0 || args.nodes > 99 {
        return Err("--nodes must be between 1 and 99".into());
    }
    let port = |i: u64, offset: u64| -> Result<u16, String> {
        u16::try_from(u64::from(args.base_port) + 10 * (i - 1) + offset)
            .map_err(|_| "ports past 65535: lower --base-port".to_string())
    };
    let tls = args.dir.join("tls");
    std::fs::create_dir_all(&tls).map_err(|e| format!("create {}: {e}", tls.display()))?;
    let ca = load_or_make_ca(&tls, true)?;
    let mut peers = Vec::new();
    for i in 1..=args.nodes {
        peers.push(format!(
            "{i}@127.0.0.1:{}@127.0.0.1:{}@127.0.0.1:{}",
            port(i, 2)?,
            port(i, 0)?,
            port(i, 1)?
        ));
        issue(
            &ca,
            &tls,
            i,
            &["127.0.0.1".to_owned(), "localhost".to_owned()],
        )?;
    }
    let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let mut children = Vec::new();
    for i in 1..=args.nodes {
        let mut cmd = std::process::Command::new(&exe);
        cmd.arg("start")
            .arg("--node-id")
            .arg(i.to_string())
            .arg("--data-dir")
            .arg(args.dir.join(format!("node-{i}")))
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", port(i, 0)?))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{}", port(i, 1)?))
            .arg("--raft-listen")
            .arg(format!("127.0.0.1:{}", port(i, 2)?))
            .arg("--network")
            .arg("loopback")
            .arg("--bootstrap")
            .arg((i == 1).to_string())
            .arg("--fsync")
            .arg(match args.fsync {
                FsyncPolicy::Always => "always",
                FsyncPolicy::Never => "never",
            })
            .arg("--tls-ca")
            .arg(tls.join("ca.pem"))
            .arg("--tls-cert")
            .arg(tls.join(format!("node-{i}.pem")))
            .arg("--tls-key")
            .arg(tls.join(format!("node-{i}-key.pem")));
        if let Some(groups) = args.groups {
            cmd.arg("--groups").arg(groups.to_string());
        }
        for p in &peers {
            cmd.arg("--peer").arg(p);
        }
        let child = cmd.spawn().map_err(|e| format!("start node {i}: {e}"))?;
        children.push(child);
    }
    println!("cairn local cluster of {} nodes:", args.nodes);
    for i in 1..=args.nodes {
        println!(
            "  node {i}: redis-cli -c -p {}   admin http://127.0.0.1:{}/status",
            port(i, 0)?,
            port(i, 1)?
        );
    }
    println!("data under {}; Ctrl-C stops every node", args.dir.display());
    let rt = runtime()?;
    rt.block_on(wait_for_signal());
    for child in &children {
        // SIGTERM: each node shuts down cleanly.
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    for mut child in children {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if std::time::Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
    Ok(())
}

fn load_or_make_ca(dir: &std::path::Path, reuse: bool) -> Result<ClusterCa, String> {
    let (cert, key) = (dir.join("ca.pem"), dir.join("ca-key.pem"));
    if reuse && cert.exists() && key.exists() {
        let cert = std::fs::read_to_string(&cert).map_err(|e| format!("read CA: {e}"))?;
        let key = std::fs::read_to_string(&key).map_err(|e| format!("read CA key: {e}"))?;
        return ClusterCa::from_pem(&cert, &key).map_err(|e| e.to_string());
    }
    if cert.exists() || key.exists() {
        return Err(format!(
            "{} already holds a CA: pass --reuse-ca to issue more certificates with it, or choose another --out",
            dir.display()
        ));
    }
    let ca = ClusterCa::generate("cairn cluster CA").map_err(|e| e.to_string())?;
    write_secret(&key, ca.key_pem())?;
    std::fs::write(&cert, ca.cert_pem()).map_err(|e| format!("write CA: {e}"))?;
    Ok(ca)
}

fn issue(ca: &ClusterCa, dir: &std::path::Path, id: u64, hosts: &[String]) -> Result<(), String> {
    let node = ca
        .issue_node(&format!("node-{id}"), hosts)
        .map_err(|e| e.to_string())?;
    write_secret(&dir.join(format!("node-{id}-key.pem")), &node.key_pem)?;
    std::fs::write(dir.join(format!("node-{id}.pem")), &node.cert_pem)
        .map_err(|e| format!("write node certificate: {e}"))
}

fn certs(args: CertsArgs) -> Result<(), String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("create {}: {e}", args.out.display()))?;
    let ca = load_or_make_ca(&args.out, args.reuse_ca)?;
    for spec in &args.nodes {
        let (id, hosts) = spec
            .split_once('=')
            .ok_or_else(|| format!("--node {spec:?} is not id=host[,host...]"))?;
        let id: u64 = id
            .parse()
            .map_err(|_| format!("--node {spec:?}: {id:?} is not a node id"))?;
        let hosts: Vec<String> = hosts.split(',').map(str::to_owned).collect();
        issue(&ca, &args.out, id, &hosts)?;
        println!(
            "node {id}: {}",
            args.out.join(format!("node-{id}.pem")).display()
        );
    }
    println!(
        "CA: {} (keep ca-key.pem secret)",
        args.out.join("ca.pem").display()
    );
    Ok(())
}

fn admin(args: AdminArgs) -> Result<(), String> {
    let (method, path) = match &args.action {
        AdminAction::Status => ("GET", "/status".to_owned()),
        AdminAction::Health => ("GET", "/health".to_owned()),
        AdminAction::Metrics => ("GET", "/metrics".to_owned()),
        AdminAction::TransferLeader { group, to } => (
            "POST",
            format!("/admin/transfer-leader?group={group}&to={to}"),
        ),
        AdminAction::AddNode {
            id,
            raft,
            client,
            admin,
        } => (
            "POST",
            format!("/admin/add-node?id={id}&raft={raft}&client={client}&admin={admin}"),
        ),
        AdminAction::RemoveNode { id } => ("POST", format!("/admin/remove-node?id={id}")),
    };
    let (code, body) = http(&args.node, method, &path)?;
    print!("{body}");
    if (200..300).contains(&code) {
        Ok(())
    } else {
        Err(format!("{method} {path}: HTTP {code}"))
    }
}

/// A one-shot HTTP/1.1 request to the admin server.
fn http(addr: &str, method: &str, path: &str) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let mut stream =
        std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n\r\n"
    )
    .map_err(|e| format!("send: {e}"))?;
    let mut response = Vec::new();
    stream
        .take(64 << 20)
        .read_to_end(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, body.to_owned()))
}
