//! The real `cairn` binary as a user runs it: `cairn start` stopped with
//! SIGTERM and restarted, `cairn local` stopped with SIGINT leaving no node
//! behind, and a node's resident memory under thousands of idle and
//! slow-loris connections.
//!
//! Every child runs in a temporary folder on free loopback ports and is
//! killed by a guard if a test fails. Signals are sent with the system's
//! `kill` (no libc dependency for three calls). Timing is never asserted as
//! performance: only behaviour and generous bounds.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
#![expect(
    clippy::await_holding_lock,
    reason = "each test holds ONE_AT_A_TIME across its awaits on purpose: every test has its own thread and runtime, so waiting for the lock only orders the tests"
)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream as StdTcpStream, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{free_tcp, free_udp};
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn");

/// The tests of this file run one at a time: each starts Raft groups in
/// other processes on two cores, and parallel runs would only make their
/// elections slow (and the RSS reading of one disturbed by another's load).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// A child process that is killed (SIGKILL) when dropped unless it has
/// already exited, with the pids of any processes it started, so a failed
/// test leaves nothing running.
struct Guard {
    child: Child,
    also: Vec<u32>,
}

impl Guard {
    fn spawn(cmd: &mut Command, log: &Path) -> Guard {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Guard {
            child,
            also: Vec::new(),
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the exit, up to `limit`.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        for pid in &self.also {
            signal(*pid, "KILL");
        }
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends signal `name` (TERM, INT, KILL) to `pid`. Errors are ignored: a
/// process already gone is fine, and a signal that was not delivered shows
/// as the process not exiting; this also runs in `Drop` during a panic.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stderr(Stdio::null())
        .status();
}

/// Whether process `pid` is gone (or a zombie nobody reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Err(_) => true,
        Ok(status) => status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
    }
}

/// A one-shot HTTP GET; the status code, or `None` if nothing answered.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = StdTcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: 0\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    s.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_owned()))
}

/// Waits until `/health` on `admin` answers 200, printing the log if not.
fn wait_healthy(admin: SocketAddr, limit: Duration, log: &Path) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some((200, _)) = http_get(admin, "/health") {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(log).unwrap_or_default();
    panic!("node at {admin} not healthy within {limit:?}; log:\n{log}");
}

/// One metric's value from `/metrics`.
fn metric(admin: SocketAddr, name: &str) -> u64 {
    let (_, body) = http_get(admin, "/metrics").unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// A single node's addresses and the `cairn start` command for it.
struct NodeArgs {
    resp: SocketAddr,
    admin: SocketAddr,
    raft: SocketAddr,
}

impl NodeArgs {
    fn new() -> NodeArgs {
        NodeArgs {
            resp: free_tcp(),
            admin: free_tcp(),
            raft: free_udp(),
        }
    }

    fn command(&self, data: &Path, extra: &[&str]) -> Command {
        let mut cmd = Command::new(CAIRN);
        cmd.arg("start")
            .arg("--data-dir")
            .arg(data)
            .arg("--listen")
            .arg(self.resp.to_string())
            .arg("--admin-listen")
            .arg(self.admin.to_string())
            .arg("--raft-listen")
            .arg(self.raft.to_string())
            .args([
                "--network",
                "loopback",
                "--memory-mb",
                "64",
                "--log",
                "info",
            ])
            .args(extra);
        cmd
    }
}

async fn redis_conn(addr: SocketAddr) -> redis::aio::MultiplexedConnection {
    redis::Client::open(format!("redis://{addr}/"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_stops_cleanly_on_sigterm_and_keeps_data_across_restart() {
    // `cairn start` serves, exits 0 on SIGTERM, and a restart on the same
    // data dir serves what was written before.
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("node.log");
    let node = NodeArgs::new();

    let mut first = Guard::spawn(&mut node.command(&data, &[]), &log);
    wait_healthy(node.admin, Duration::from_secs(60), &log);
    let mut c = redis_conn(node.resp).await;
    for i in 0..20 {
        let _: () = c.set(format!("k{i}"), format!("v{i}")).await.unwrap();
    }
    let got: String = c.get("k7").await.unwrap();
    assert_eq!(got, "v7");
    drop(c);
    signal(first.pid(), "TERM");
    let status = first
        .wait(Duration::from_secs(30))
        .expect("exits after SIGTERM");
    assert!(status.success(), "clean exit: {status:?}");

    let _second = Guard::spawn(&mut node.command(&data, &[]), &log);
    wait_healthy(node.admin, Duration::from_secs(60), &log);
    let mut c = redis_conn(node.resp).await;
    for i in 0..20 {
        let got: String = c.get(format!("k{i}")).await.unwrap();
        assert_eq!(got, format!("v{i}"));
    }
}

/// A base port for `cairn local --nodes n`: node i uses base + 10 (i - 1)
/// (RESP), + 1 (admin) and + 2 (QUIC, UDP); all must be free.
fn free_base_port(n: u16) -> u16 {
    for _ in 0..50 {
        let base = free_tcp().port();
        if u32::from(base) + 10 * u32::from(n) + 2 > 65_535 {
            continue;
        }
        let all_free = (0..n).all(|i| {
            let p = base + 10 * i;
            TcpListener::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 1)).is_ok()
                && UdpSocket::bind(("127.0.0.1", p + 2)).is_ok()
        });
        if all_free {
            return base;
        }
    }
    panic!("no free range of ports for a local cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_cluster_serves_the_cluster_client_and_stops_every_node_on_sigint() {
    // `cairn local --nodes 3` starts three node processes that serve the
    // redis cluster client across slots; SIGINT to `local` stops all of
    // them and frees their ports.
    let _turn = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("local.log");
    let base = free_base_port(3);
    let mut local = Guard::spawn(
        Command::new(CAIRN)
            .args(["local", "--nodes", "3", "--fsync", "never"])
            .arg("--base-port")
            .arg(base.to_string())
            .arg("--dir")
            .arg(dir.path().join("cluster")),
        &log,
    );
    let resp = |i: u16| SocketAddr::from(([127, 0, 0, 1], base + 10 * i));
    let admin = |i: u16| SocketAddr::from(([127, 0, 0, 1], base + 10 * i + 1));
    for i in 0..3 {
        wait_healthy(admin(i), Duration::from_secs(120), &log);
    }
    let mut pids = Vec::new();
    for i in 0..3 {
        let mut c = redis_conn(resp(i)).await;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut c)
            .await
            .unwrap();
        let pid: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("process_id:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_ne!(pid, local.pid(), "nodes are processes of their own");
        pids.push(pid);
        local.also.push(pid);
    }

    let client = redis::cluster::ClusterClient::new(vec![format!("redis://{}/", resp(1))]).unwrap();
    let mut cc = client.get_async_connection().await.unwrap();
    let mut slots = std::collections::BTreeSet::new();
    for i in 0..100 {
        let key = format!("key:{i}");
        slots.insert(cairn_server::slot::key_slot(key.as_bytes()) * 3 / 16384);
        let _: () = cc.set(&key, i).await.unwrap();
    }
    assert_eq!(slots.len(), 3, "the keys span the slot space");
    for i in 0..100 {
        let got: i64 = cc.get(format!("key:{i}")).await.unwrap();
        assert_eq!(got, i);
    }
    drop(cc);

    signal(local.pid(), "INT");
    let status = local
        .wait(Duration::from_secs(30))
        .expect("local exits after SIGINT");
    assert!(status.success(), "local exits cleanly: {status:?}");
    for pid in &pids {
        assert!(
            exited(*pid),
            "node process {pid} still running after local exited"
        );
    }
    for i in 0..3 {
        assert!(
            TcpListener::bind(resp(i)).is_ok() && TcpListener::bind(admin(i)).is_ok(),
            "node {i}'s ports are free again"
        );
    }
}

/// The soft limit on open files of this process (children inherit it).
fn open_files_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(1024)
}

/// Resident memory of `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Whether the server has closed `s` (EOF or reset) within `wait`.
async fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_loris_connections_cost_bounded_memory() {
    // Thousands of idle connections, slow-loris clients trickling half a
    // request and clients announcing a 512 MiB bulk grow a real node's RSS
    // by a bounded amount; a good client is served throughout; the
    // half-requests are cut off after request_read_timeout_s while idle
    // connections stay.
    let _turn = one_at_a_time();
    // Both processes hold one descriptor per connection: stay well inside
    // the soft limit whatever it is (20 000 here; 1 024 on many machines).
    let fd_budget = open_files_limit().saturating_sub(200).min(2_300);
    let (idle_n, loris_n, huge_n) = if fd_budget >= 2_300 {
        (2_000u64, 200u64, 5u64)
    } else {
        let n = fd_budget / 11;
        (n * 10 - 5, n, 5)
    };
    let total = idle_n + loris_n + huge_n;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("node.log");
    let node = NodeArgs::new();
    let max_clients = (total + 50).to_string();
    let mut cmd = node.command(
        &dir.path().join("data"),
        &[
            "--max-clients",
            &max_clients,
            "--request-read-timeout-s",
            "2",
            "--fsync",
            "never",
        ],
    );
    let server = Guard::spawn(&mut cmd, &log);
    wait_healthy(node.admin, Duration::from_secs(60), &log);

    // The good client: SET then GET in a loop until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let mut good = redis_conn(node.resp).await;
    let good_task = {
        let (stop, served) = (Arc::clone(&stop), Arc::clone(&served));
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("good{}", i % 64);
                let _: () = good.set(&key, i).await.expect("good SET");
                let got: u64 = good.get(&key).await.expect("good GET");
                assert_eq!(got, i);
                served.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before_kib = rss_kib(server.pid());

    let mut idle = Vec::new();
    for _ in 0..idle_n {
        idle.push(TcpStream::connect(node.resp).await.unwrap());
    }
    let mut huge = Vec::new();
    for _ in 0..huge_n {
        let mut s = TcpStream::connect(node.resp).await.unwrap();
        s.write_all(b"*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$536870000\r\n")
            .await
            .unwrap();
        s.write_all(&[b'x'; 64 << 10]).await.unwrap();
        huge.push(s);
    }
    let half_request = b"*3\r\n$3\r\nSET\r\n$5\r\nloris\r\n$10\r\nabc";
    let mut loris = Vec::new();
    for _ in 0..loris_n {
        loris.push(TcpStream::connect(node.resp).await.unwrap());
    }
    // Trickle the half request a byte per connection per round; the
    // connections are cut after 2 s whatever the trickle, so by the end of
    // the rounds the writes start failing: that is expected.
    let served_before = served.load(Ordering::Relaxed);
    let mut peak_kib = rss_kib(server.pid());
    for byte in half_request.iter().take(12) {
        for s in &mut loris {
            let _ = s.write_all(std::slice::from_ref(byte)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak_kib = peak_kib.max(rss_kib(server.pid()));
    }
    let connections = metric(node.admin, "cairn_connections");
    assert!(connections >= idle_n, "{connections} connections open");
    let growth_kib = peak_kib.saturating_sub(before_kib);
    let per_connection_bytes = growth_kib * 1024 / total;
    println!(
        "RSS before {before_kib} KiB, peak {peak_kib} KiB with {idle_n} idle + {loris_n} slow-loris + {huge_n} huge-bulk connections: +{growth_kib} KiB, {per_connection_bytes} bytes per connection"
    );
    assert!(
        growth_kib < 256 << 10,
        "RSS grew by {growth_kib} KiB for {total} connections"
    );

    // The half requests are cut off; the idle connections stay.
    for s in loris.iter_mut().chain(huge.iter_mut()) {
        assert!(
            closed_by_server(s, Duration::from_secs(10)).await,
            "half request cut off"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let connections = metric(node.admin, "cairn_connections");
    assert!(
        connections >= idle_n && connections < idle_n + loris_n,
        "{connections} connections after the cut-off"
    );
    assert!(
        metric(node.admin, "cairn_protocol_errors_total") >= loris_n + huge_n,
        "every cut-off counted"
    );
    for s in idle.iter_mut().take(10) {
        assert!(
            !closed_by_server(s, Duration::from_millis(10)).await,
            "idle stays open"
        );
    }
    let after_kib = rss_kib(server.pid());
    println!("RSS after the cut-off: {after_kib} KiB");

    stop.store(true, Ordering::Relaxed);
    good_task.await.unwrap();
    assert!(
        served.load(Ordering::Relaxed) > served_before,
        "the good client was served while the others were open"
    );
    drop(idle);
}
