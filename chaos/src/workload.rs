//! The clients: each a task with its own connection to one node, one op
//! at a time, every op timed and recorded. Most clients mix register
//! SET/GET, INCR and APPEND/GET as plain clients (a node proxies to the
//! leader); follower clients read over READONLY connections.
//!
//! Keys rotate so per-key histories stay small enough for the
//! linearizability search and append values stay short: register slot `i`
//! is key `r{i}.{g}` where `g` counts `rotate_ops` writes to the slot; the
//! same for append slots (`a{i}.{g}`). Counters are `c{i}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::history::{
    AppendRead, AppendRecord, FollowerRegRead, History, IncrRecord, ReadMode, RegOp, RegRecord,
};
use crate::resp::{Conn, Reply};
use crate::rng::Rng;

/// Key counts and rotation.
#[derive(Debug, Clone, Copy)]
pub struct Keys {
    pub registers: u64,
    pub counters: u64,
    pub appends: u64,
    /// Writes to a register or append slot before it moves to a new key.
    pub rotate_ops: u64,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            registers: 3,
            counters: 2,
            appends: 2,
            rotate_ops: 250,
        }
    }
}

/// State the clients share.
pub struct Shared {
    start: Instant,
    history: Mutex<History>,
    stop: AtomicBool,
    next_value: AtomicU64,
    next_session: AtomicU64,
    reg_writes: Vec<AtomicU64>,
    append_writes: Vec<AtomicU64>,
    keys: Keys,
    ops_max: usize,
    op_timeout: Duration,
}

fn lock(m: &Mutex<History>) -> MutexGuard<'_, History> {
    // Records are pushed whole; a panicking client cannot leave half of one.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    pub fn new(start: Instant, keys: Keys, ops_max: usize, op_timeout: Duration) -> Shared {
        let counters = |n: u64| (0..n).map(|_| AtomicU64::new(0)).collect();
        Shared {
            start,
            history: Mutex::new(History::default()),
            stop: AtomicBool::new(false),
            next_value: AtomicU64::new(1),
            next_session: AtomicU64::new(1),
            reg_writes: counters(keys.registers),
            append_writes: counters(keys.appends),
            keys,
            ops_max,
            op_timeout,
        }
    }

    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || lock(&self.history).len() >= self.ops_max
    }

    pub fn history(&self) -> MutexGuard<'_, History> {
        lock(&self.history)
    }

    pub fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// The key of register slot `i`: `write` counts a write towards
    /// rotation.
    fn register_key(&self, i: u64, write: bool) -> String {
        key_of("r", &self.reg_writes, i, write, self.keys.rotate_ops)
    }

    fn append_key(&self, i: u64, write: bool) -> String {
        key_of("a", &self.append_writes, i, write, self.keys.rotate_ops)
    }

    /// Every register, counter and append key used so far.
    pub fn keys_used(&self) -> (Vec<String>, Vec<String>, Vec<String>) {
        let all = |prefix: &str, writes: &[AtomicU64]| -> Vec<String> {
            let mut keys = Vec::new();
            for (i, w) in writes.iter().enumerate() {
                let last = w.load(Ordering::SeqCst) / self.keys.rotate_ops.max(1);
                keys.extend((0..=last).map(|g| format!("{prefix}{i}.{g}")));
            }
            keys
        };
        let counters = (0..self.keys.counters).map(|i| format!("c{i}")).collect();
        (
            all("r", &self.reg_writes),
            counters,
            all("a", &self.append_writes),
        )
    }
}

fn key_of(prefix: &str, writes: &[AtomicU64], i: u64, write: bool, rotate: u64) -> String {
    let slot = usize::try_from(i).unwrap_or(0);
    let n = writes.get(slot).map_or(0, |w| {
        if write {
            w.fetch_add(1, Ordering::SeqCst)
        } else {
            w.load(Ordering::SeqCst)
        }
    });
    format!("{prefix}{i}.{}", n / rotate.max(1))
}

/// `v17` -> 17; anything else is a value no client wrote (`u64::MAX`,
/// which no client writes).
pub fn parse_value(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.strip_prefix('v'))
        .and_then(|s| s.parse().ok())
        .filter(|&v| v != u64::MAX)
        .unwrap_or(u64::MAX)
}

/// How an op went, for the connection: a timeout or a broken reply means
/// the connection's state is unknown, so it is replaced.
enum Wire {
    Fine,
    Broken,
}

fn wire<T>(r: &Result<T, String>) -> Wire {
    if r.is_ok() { Wire::Fine } else { Wire::Broken }
}

/// A plain client against node `addr` until the run stops.
pub async fn plain_client(shared: Arc<Shared>, client: u32, addr: SocketAddr, mut rng: Rng) {
    let mut seq = 0u64;
    while !shared.stopped() {
        let Ok(mut conn) = Conn::connect(addr, Duration::from_secs(1)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while !shared.stopped() {
            let roll = rng.below(100);
            let state = if roll < 50 {
                register_op(&shared, &mut conn, client, &mut rng).await
            } else if roll < 65 {
                incr_op(&shared, &mut conn, client, &mut rng).await
            } else {
                seq += 1;
                append_op(&shared, &mut conn, client, seq, &mut rng).await
            };
            if matches!(state, Wire::Broken) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.below(5))).await;
        }
    }
}

async fn register_op(shared: &Shared, conn: &mut Conn, client: u32, rng: &mut Rng) -> Wire {
    let slot = rng.below(shared.keys.registers);
    let timeout = shared.op_timeout;
    if rng.percent(50) {
        let key = shared.register_key(slot, true);
        let v = shared.next_value.fetch_add(1, Ordering::SeqCst);
        let value = format!("v{v}");
        let invoke_ns = shared.now_ns();
        let reply = conn
            .call(&[b"SET", key.as_bytes(), value.as_bytes()], timeout)
            .await;
        let ok = matches!(&reply, Ok(Reply::Status(s)) if s == "OK");
        let complete_ns = ok.then(|| shared.now_ns());
        shared.history().registers.push(RegRecord {
            client,
            key,
            op: RegOp::Write(v),
            invoke_ns,
            complete_ns,
        });
        wire(&reply)
    } else {
        let key = shared.register_key(slot, false);
        let invoke_ns = shared.now_ns();
        let reply = conn.call(&[b"GET", key.as_bytes()], timeout).await;
        let complete_ns = shared.now_ns();
        let seen = match &reply {
            Ok(Reply::Bulk(None)) => Some(None),
            Ok(Reply::Bulk(Some(b))) => Some(Some(parse_value(b))),
            _ => None,
        };
        if let Some(seen) = seen {
            shared.history().registers.push(RegRecord {
                client,
                key,
                op: RegOp::Read(seen),
                invoke_ns,
                complete_ns: Some(complete_ns),
            });
        }
        wire(&reply)
    }
}

async fn incr_op(shared: &Shared, conn: &mut Conn, client: u32, rng: &mut Rng) -> Wire {
    let key = format!("c{}", rng.below(shared.keys.counters));
    let invoke_ns = shared.now_ns();
    let reply = conn
        .call(&[b"INCR", key.as_bytes()], shared.op_timeout)
        .await;
    let result = match &reply {
        Ok(Reply::Int(v)) => Some(*v),
        _ => None,
    };
    shared.history().incrs.push(IncrRecord {
        client,
        key,
        invoke_ns,
        result,
    });
    wire(&reply)
}

async fn append_op(shared: &Shared, conn: &mut Conn, client: u32, seq: u64, rng: &mut Rng) -> Wire {
    let slot = rng.below(shared.keys.appends);
    let timeout = shared.op_timeout;
    if rng.percent(70) {
        let key = shared.append_key(slot, true);
        let token = format!("{client}-{seq};");
        let invoke_ns = shared.now_ns();
        let reply = conn
            .call(&[b"APPEND", key.as_bytes(), token.as_bytes()], timeout)
            .await;
        let (complete_ns, new_len) = match &reply {
            Ok(Reply::Int(n)) => (Some(shared.now_ns()), u64::try_from(*n).ok()),
            _ => (None, None),
        };
        shared.history().appends.push(AppendRecord {
            client,
            key,
            token,
            invoke_ns,
            complete_ns,
            new_len,
        });
        wire(&reply)
    } else {
        let key = shared.append_key(slot, false);
        read_append(shared, conn, client, key, ReadMode::Leader).await
    }
}

async fn read_append(
    shared: &Shared,
    conn: &mut Conn,
    client: u32,
    key: String,
    mode: ReadMode,
) -> Wire {
    let invoke_ns = shared.now_ns();
    let reply = conn
        .call(&[b"GET", key.as_bytes()], shared.op_timeout)
        .await;
    let complete_ns = shared.now_ns();
    let value = match &reply {
        Ok(Reply::Bulk(v)) => Some(v.clone().unwrap_or_default()),
        _ => None,
    };
    if let Some(value) = value {
        shared.history().append_reads.push(AppendRead {
            client,
            key,
            mode,
            invoke_ns,
            complete_ns,
            value,
        });
    }
    wire(&reply)
}

/// A READONLY client of node `node` until the run stops; each connection
/// is a new session.
pub async fn follower_client(
    shared: Arc<Shared>,
    client: u32,
    node: u64,
    addr: SocketAddr,
    mut rng: Rng,
) {
    while !shared.stopped() {
        let Ok(mut conn) = Conn::connect(addr, Duration::from_secs(1)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let hello = conn.call(&[b"READONLY"], shared.op_timeout).await;
        if !matches!(&hello, Ok(Reply::Status(s)) if s == "OK") {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let session = shared.next_session.fetch_add(1, Ordering::SeqCst);
        let mode = ReadMode::Follower { node, session };
        while !shared.stopped() {
            let state = if rng.percent(50) {
                let key = shared.append_key(rng.below(shared.keys.appends), false);
                read_append(&shared, &mut conn, client, key, mode).await
            } else {
                let key = shared.register_key(rng.below(shared.keys.registers), false);
                follower_register(&shared, &mut conn, client, key, node, session).await
            };
            if matches!(state, Wire::Broken) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(rng.below(10))).await;
        }
    }
}

async fn follower_register(
    shared: &Shared,
    conn: &mut Conn,
    client: u32,
    key: String,
    node: u64,
    session: u64,
) -> Wire {
    let invoke_ns = shared.now_ns();
    let reply = conn
        .call(&[b"GET", key.as_bytes()], shared.op_timeout)
        .await;
    let complete_ns = shared.now_ns();
    let value = match &reply {
        Ok(Reply::Bulk(v)) => Some(v.as_deref().map(parse_value)),
        _ => None,
    };
    if let Some(value) = value {
        shared.history().follower_reg_reads.push(FollowerRegRead {
            client,
            key,
            node,
            session,
            invoke_ns,
            complete_ns,
            value,
        });
    }
    wire(&reply)
}

/// After healing: a linearizable GET of `key`, retried against each node
/// in turn until `deadline`: invocation and completion time and value, or
/// `None` if no node answered. A node that did not answer leaves its last
/// failure in `failures` (a node that keeps failing after healing is a
/// finding).
pub async fn final_get(
    shared: &Shared,
    addrs: &[SocketAddr],
    key: &str,
    deadline: Instant,
    failures: &mut BTreeMap<SocketAddr, String>,
) -> Option<(u64, u64, Option<Vec<u8>>)> {
    let mut i = 0usize;
    while Instant::now() < deadline {
        let addr = *addrs.get(i % addrs.len().max(1))?;
        i += 1;
        let failure = match Conn::connect(addr, Duration::from_secs(1)).await {
            Ok(mut conn) => {
                let invoke_ns = shared.now_ns();
                let reply = conn
                    .call(&[b"GET", key.as_bytes()], shared.op_timeout)
                    .await;
                match reply {
                    Ok(Reply::Bulk(v)) => return Some((invoke_ns, shared.now_ns(), v)),
                    Ok(other) => format!("GET {key}: {other:?}"),
                    Err(e) => format!("GET {key}: {e}"),
                }
            }
            Err(e) => e,
        };
        failures.insert(addr, failure);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    None
}
