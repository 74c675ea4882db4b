//! The QUIC transport: quinn with mutual TLS (`docs/transport.md`).
//!
//! One quinn endpoint per node is both server and client. Outbound, there is
//! one connection per peer node, shared by every group and call, made on
//! first use and replaced when it closes; each RPC is one bidirectional
//! stream carrying one request frame and one reply frame
//! (`transport::frame`). Inbound, every connection is served by its own
//! task and every stream by its own task, so a slow handler holds up only
//! its own stream.
//!
//! Peer state lives in a `std::sync::Mutex` that is never held across an
//! `.await`: a caller takes what it needs (a connection, or a receiver for a
//! connect attempt in flight) and lets go, so a dead or slow peer blocks
//! nobody but the callers of that peer, and those only until their own
//! timeouts.
//!
//! Server names: a call to `host:port` dials with `host` as the TLS server
//! name. A DNS name is sent as SNI and must be a DNS SAN of the peer's
//! certificate; an IP literal (`10.0.0.7`, `[::1]`) must be an IP SAN.

use crate::tls::{TlsError, TlsMaterial};
use crate::transport::frame::{self, FrameError};
use crate::transport::{
    BoxFuture, MAX_BODY_BYTES, RpcHandler, RpcRequest, Transport, TransportError,
};
use crate::types::NodeId;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

/// QUIC application error code sent when the transport shuts down.
const CLOSE_SHUTDOWN: u32 = 0;
/// QUIC application error code sent by [`QuicTransport::disconnect`].
const CLOSE_DISCONNECT: u32 = 1;
/// QUIC application error code for a stream the server refuses to read
/// further (bad frame, too large, read timeout).
const STOP_BAD_REQUEST: u32 = 1;

/// Settings of a [`QuicTransport`]. Every field has a default
/// ([`QuicConfig::default`]); times are in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuicConfig {
    /// UDP address to bind. Port 0 picks a free port; see
    /// [`QuicTransport::local_addr`]. Default `0.0.0.0:7400`.
    pub listen: SocketAddr,
    /// Longest a connect attempt (address lookup and handshake) may take.
    /// Default 3 000. A call's own timeout still bounds the call.
    pub connect_timeout_ms: u64,
    /// A connection with no traffic for this long is closed (a dead peer
    /// is noticed after at most this). Default 10 000.
    pub idle_timeout_ms: u64,
    /// A keep-alive is sent after this long without traffic, so healthy
    /// idle connections stay open. Must be below `idle_timeout_ms`.
    /// Default 2 000.
    pub keep_alive_ms: u64,
    /// Requests one peer connection may have in flight at this node at
    /// once (QUIC's stream limit, so a peer cannot exceed it: its further
    /// calls wait for a free stream within their timeouts). Default 512.
    pub max_concurrent_streams: u32,
    /// Inbound connections (peers) this node serves at once; more are
    /// refused. Default 1 024.
    pub max_connections: u32,
    /// After a failed connect to a peer, the next attempt waits this long,
    /// doubling per consecutive failure up to `reconnect_backoff_max_ms`.
    /// A call during the wait fails at once with `Unreachable`.
    /// Defaults 50 and 2 000.
    pub reconnect_backoff_min_ms: u64,
    pub reconnect_backoff_max_ms: u64,
    /// Largest request or reply body sent or accepted, checked before
    /// anything is allocated. Default [`MAX_BODY_BYTES`] (64 MiB); at most
    /// `u32::MAX` (the frame's length field).
    pub max_body_bytes: usize,
    /// Request bodies this node holds in memory at once across all inbound
    /// streams; a request whose body would exceed it waits for room (within
    /// `request_read_timeout_ms`). At least `max_body_bytes`. Default
    /// 256 MiB.
    pub max_inbound_body_bytes: usize,
    /// Longest the server waits for a whole request frame on a stream
    /// (memory reservation included) before it drops the stream. Default
    /// 30 000: a 64 MiB body at ~20 Mbit/s.
    pub request_read_timeout_ms: u64,
    /// Addresses to dial instead of the one a caller names, by target
    /// node: for proxies and fault injection (a relay per link that can
    /// drop datagrams). The TLS server name is taken from the address
    /// dialled, so the peer's certificate must name it. Default empty.
    pub dial_overrides: BTreeMap<NodeId, String>,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 7400)),
            connect_timeout_ms: 3_000,
            idle_timeout_ms: 10_000,
            keep_alive_ms: 2_000,
            max_concurrent_streams: 512,
            max_connections: 1_024,
            reconnect_backoff_min_ms: 50,
            reconnect_backoff_max_ms: 2_000,
            max_body_bytes: MAX_BODY_BYTES,
            max_inbound_body_bytes: 256 * 1024 * 1024,
            request_read_timeout_ms: 30_000,
            dial_overrides: BTreeMap::new(),
        }
    }
}

impl QuicConfig {
    /// Checks the relations the fields must keep.
    pub fn validate(&self) -> Result<(), String> {
        let rules: [(bool, &str); 8] = [
            (
                self.connect_timeout_ms > 0,
                "connect_timeout_ms must be > 0",
            ),
            (self.idle_timeout_ms > 0, "idle_timeout_ms must be > 0"),
            (
                self.keep_alive_ms > 0 && self.keep_alive_ms < self.idle_timeout_ms,
                "keep_alive_ms must be > 0 and < idle_timeout_ms",
            ),
            (
                self.max_concurrent_streams > 0 && self.max_connections > 0,
                "max_concurrent_streams and max_connections must be > 0",
            ),
            (
                self.reconnect_backoff_min_ms > 0
                    && self.reconnect_backoff_min_ms <= self.reconnect_backoff_max_ms,
                "need 0 < reconnect_backoff_min_ms <= reconnect_backoff_max_ms",
            ),
            (
                u32::try_from(self.max_body_bytes).is_ok(),
                "max_body_bytes must fit the frame's u32 length",
            ),
            (
                self.max_inbound_body_bytes >= self.max_body_bytes
                    && self.max_inbound_body_bytes <= Semaphore::MAX_PERMITS,
                "max_inbound_body_bytes must be >= max_body_bytes",
            ),
            (
                self.request_read_timeout_ms > 0,
                "request_read_timeout_ms must be > 0",
            ),
        ];
        match rules.iter().find(|(ok, _)| !ok) {
            Some((_, rule)) => Err((*rule).to_owned()),
            None => Ok(()),
        }
    }

    /// The wait before the next connect attempt after `failures`
    /// consecutive failures (`failures >= 1`).
    fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        let ms = self
            .reconnect_backoff_min_ms
            .saturating_mul(1u64 << doublings)
            .min(self.reconnect_backoff_max_ms);
        Duration::from_millis(ms)
    }
}

/// Why [`QuicTransport::start`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuicStartError {
    /// A [`QuicConfig`] field is out of range.
    Config(String),
    /// The TLS material is unusable.
    Tls(TlsError),
    /// The UDP socket could not be bound.
    Bind { addr: SocketAddr, reason: String },
    /// `start` was called outside a tokio runtime.
    NoRuntime,
}

impl fmt::Display for QuicStartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuicStartError::Config(rule) => write!(f, "bad QUIC transport config: {rule}"),
            QuicStartError::Tls(e) => write!(f, "{e}"),
            QuicStartError::Bind { addr, reason } => write!(f, "cannot bind {addr}: {reason}"),
            QuicStartError::NoRuntime => {
                write!(
                    f,
                    "the QUIC transport must be started inside a tokio runtime"
                )
            }
        }
    }
}

impl std::error::Error for QuicStartError {}

impl From<TlsError> for QuicStartError {
    fn from(e: TlsError) -> Self {
        QuicStartError::Tls(e)
    }
}

/// Counters of a [`QuicTransport`] since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuicStats {
    /// Outbound connections established (handshake done).
    pub connections_opened: u64,
    /// Outbound connect attempts that failed (lookup, handshake, timeout).
    pub connect_failures: u64,
    /// Inbound connections whose handshake (client certificate included)
    /// succeeded.
    pub connections_accepted: u64,
    /// Inbound connections refused or whose handshake failed.
    pub connections_rejected: u64,
    /// Calls made through [`Transport::call`].
    pub calls: u64,
    /// Calls that returned an error.
    pub call_failures: u64,
    /// Inbound requests handed to the handler.
    pub requests_served: u64,
}

#[derive(Default)]
struct Counters {
    connections_opened: AtomicU64,
    connect_failures: AtomicU64,
    connections_accepted: AtomicU64,
    connections_rejected: AtomicU64,
    calls: AtomicU64,
    call_failures: AtomicU64,
    requests_served: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The outcome of one connect attempt, shared by every caller waiting on it.
type ConnectOutcome = Option<Result<quinn::Connection, String>>;

/// What this node knows of its link to one peer.
enum Link {
    /// A connect attempt is in flight; wait on `done`.
    Connecting {
        addr: String,
        attempt: u64,
        failures: u32,
        done: watch::Receiver<ConnectOutcome>,
    },
    /// Connected (until `conn.close_reason()` says otherwise).
    Up {
        addr: String,
        conn: quinn::Connection,
    },
    /// The last `failures` attempts failed; no new one before `retry_at`.
    Down {
        addr: String,
        failures: u32,
        retry_at: Instant,
        reason: String,
    },
}

/// What a caller does after looking at the link, with the lock released.
enum Next {
    Use(quinn::Connection),
    Wait(watch::Receiver<ConnectOutcome>),
    Fail(String),
}

struct Inner {
    endpoint: quinn::Endpoint,
    runtime: tokio::runtime::Handle,
    config: QuicConfig,
    handler: Arc<dyn RpcHandler>,
    /// Peer links. Never held across an `.await` (see the module docs).
    links: Mutex<HashMap<NodeId, Link>>,
    next_attempt: AtomicU64,
    /// Inbound connections being handshaken or served.
    inbound_connections: AtomicU64,
    closed: AtomicBool,
    /// One permit per byte of request body held by inbound streams.
    inbound_bytes: Arc<Semaphore>,
    counters: Counters,
}

/// The QUIC [`Transport`]: serves inbound RPCs with a handler and makes
/// outbound calls, over one endpoint. Dropping it shuts it down.
pub struct QuicTransport {
    inner: Arc<Inner>,
    local_addr: SocketAddr,
}

impl fmt::Debug for QuicTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuicTransport")
            .field("local_addr", &self.local_addr)
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

impl QuicTransport {
    /// Binds `config.listen` and starts serving: every inbound stream is
    /// one RPC given to `handler`. Must be called inside a tokio runtime
    /// (the serving tasks run on it).
    pub fn start(
        config: QuicConfig,
        tls: &TlsMaterial,
        handler: Arc<dyn RpcHandler>,
    ) -> Result<QuicTransport, QuicStartError> {
        config.validate().map_err(QuicStartError::Config)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| QuicStartError::NoRuntime)?;
        let mut server = tls.server_config()?;
        server
            .transport_config(Arc::new(transport_config(
                &config,
                config.max_concurrent_streams,
            )))
            .max_incoming(widen(config.max_connections));
        // Peers never open streams on connections this node dialled.
        let mut client = tls.client_config()?;
        client.transport_config(Arc::new(transport_config(&config, 0)));
        let bind_error = |reason: String| QuicStartError::Bind {
            addr: config.listen,
            reason,
        };
        let mut endpoint = quinn::Endpoint::server(server, config.listen)
            .map_err(|e| bind_error(e.to_string()))?;
        endpoint.set_default_client_config(client);
        let local_addr = endpoint
            .local_addr()
            .map_err(|e| bind_error(e.to_string()))?;
        let inner = Arc::new(Inner {
            endpoint,
            runtime,
            inbound_bytes: Arc::new(Semaphore::new(config.max_inbound_body_bytes)),
            config,
            handler,
            links: Mutex::new(HashMap::new()),
            next_attempt: AtomicU64::new(0),
            inbound_connections: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            counters: Counters::default(),
        });
        inner.runtime.spawn(accept_loop(Arc::clone(&inner)));
        debug!(%local_addr, "quic transport listening");
        Ok(QuicTransport { inner, local_addr })
    }

    /// The address the endpoint is bound to (the real port when
    /// `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far.
    pub fn stats(&self) -> QuicStats {
        let c = &self.inner.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        QuicStats {
            connections_opened: get(&c.connections_opened),
            connect_failures: get(&c.connect_failures),
            connections_accepted: get(&c.connections_accepted),
            connections_rejected: get(&c.connections_rejected),
            calls: get(&c.calls),
            call_failures: get(&c.call_failures),
            requests_served: get(&c.requests_served),
        }
    }

    /// Forgets this node's link to `node` and closes the connection to it,
    /// if any: for a peer removed from the cluster, whose connection would
    /// otherwise be kept alive by keep-alives. Calls in flight on it fail;
    /// a later call connects afresh, without backoff.
    pub fn disconnect(&self, node: NodeId) {
        let link = lock(&self.inner.links).remove(&node);
        if let Some(Link::Up { conn, .. }) = link {
            conn.close(quinn::VarInt::from_u32(CLOSE_DISCONNECT), b"disconnect");
        }
    }

    /// Closes the endpoint and every connection, inbound and outbound.
    /// Calls in flight fail; later calls return [`TransportError::Closed`].
    /// Idempotent; dropping the transport does the same. The UDP port is
    /// released once quinn has finished closing (a few milliseconds).
    pub fn shutdown(&self) {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner
            .endpoint
            .close(quinn::VarInt::from_u32(CLOSE_SHUTDOWN), b"shutdown");
        lock(&self.inner.links).clear();
        debug!(local_addr = %self.local_addr, "quic transport shut down");
    }
}

impl Drop for QuicTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for QuicTransport {
    fn call(
        &self,
        target: NodeId,
        addr: &str,
        request: RpcRequest,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let inner = Arc::clone(&self.inner);
        let addr = match inner.config.dial_overrides.get(&target) {
            Some(over) => over.clone(),
            None => addr.to_owned(),
        };
        Box::pin(async move {
            bump(&inner.counters.calls);
            let result =
                match tokio::time::timeout(timeout, call(&inner, target, &addr, request)).await {
                    Ok(result) => result,
                    Err(_) => Err(TransportError::Timeout {
                        node: target,
                        after_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    }),
                };
            let result = match result {
                Err(_) if inner.closed.load(Ordering::SeqCst) => Err(TransportError::Closed),
                other => other,
            };
            if result.is_err() {
                bump(&inner.counters.call_failures);
            }
            result
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the map half-updated
    // (every update is a single insert or remove), so poison is ignored.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn widen(n: u32) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn transport_config(config: &QuicConfig, max_bidi_streams: u32) -> quinn::TransportConfig {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(max_bidi_streams))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .datagram_receive_buffer_size(None)
        .keep_alive_interval(Some(Duration::from_millis(config.keep_alive_ms)))
        // An idle timeout too large for QUIC's varint falls back to the
        // largest one quinn accepts rather than failing: it is an upper bound.
        .max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(Duration::from_millis(config.idle_timeout_ms))
                .unwrap_or(quinn::IdleTimeout::from(quinn::VarInt::MAX)),
        ));
    transport
}

// ---------------------------------------------------------------- client side

/// One call, without the caller's timeout (the caller wraps it).
async fn call(
    inner: &Arc<Inner>,
    target: NodeId,
    addr: &str,
    request: RpcRequest,
) -> Result<Vec<u8>, TransportError> {
    if inner.closed.load(Ordering::SeqCst) {
        return Err(TransportError::Closed);
    }
    let max = inner.config.max_body_bytes;
    if request.body.len() > max {
        return Err(too_large(request.body.len(), max));
    }
    let conn = connection(inner, target, addr).await?;
    let unreachable = |reason: String| TransportError::Unreachable {
        node: target,
        reason,
    };
    let (mut send, mut recv) = conn
        .open_bi()
        .await
        .map_err(|e| unreachable(format!("cannot open a stream: {e}")))?;
    if let Err(e) = frame::write_request(&mut send, &request, max).await {
        // The server stops reading a request it refuses (too large, unknown
        // version) and says why in a reply: prefer its explanation.
        return match frame::read_reply(&mut recv, max).await {
            Ok(Err(message)) => Err(TransportError::Remote {
                node: target,
                message,
            }),
            _ => Err(frame_error(target, e, "sending the request")),
        };
    }
    send.finish()
        .map_err(|e| unreachable(format!("cannot finish the request: {e}")))?;
    match frame::read_reply(&mut recv, max).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(message)) => Err(TransportError::Remote {
            node: target,
            message,
        }),
        Err(e) => Err(frame_error(target, e, "reading the reply")),
    }
}

fn too_large(bytes: usize, max: usize) -> TransportError {
    TransportError::FrameTooLarge {
        bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
        max: u64::try_from(max).unwrap_or(u64::MAX),
    }
}

fn frame_error(target: NodeId, e: FrameError, doing: &str) -> TransportError {
    match e {
        FrameError::TooLarge { bytes, max } => TransportError::FrameTooLarge { bytes, max },
        other => TransportError::Unreachable {
            node: target,
            reason: format!("{doing}: {other}"),
        },
    }
}

/// The connection to `target`: the live one, the one being made, or a new
/// attempt; or an immediate `Unreachable` while backing off.
async fn connection(
    inner: &Arc<Inner>,
    target: NodeId,
    addr: &str,
) -> Result<quinn::Connection, TransportError> {
    let unreachable = |reason: String| TransportError::Unreachable {
        node: target,
        reason,
    };
    let mut done = match next_step(inner, target, addr) {
        Next::Use(conn) => return Ok(conn),
        Next::Fail(reason) => return Err(unreachable(reason)),
        Next::Wait(done) => done,
    };
    let outcome = match done.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone(),
        Err(_) => None,
    };
    match outcome {
        Some(Ok(conn)) => Ok(conn),
        Some(Err(reason)) => Err(unreachable(reason)),
        None => Err(unreachable("the connect attempt was abandoned".to_owned())),
    }
}

/// Decides, under the lock and without waiting, what a caller does next;
/// starts a connect attempt when one is due.
fn next_step(inner: &Arc<Inner>, target: NodeId, addr: &str) -> Next {
    let mut links = lock(&inner.links);
    let mut failures = 0;
    match links.get(&target) {
        Some(Link::Up { addr: a, conn }) if a == addr && conn.close_reason().is_none() => {
            return Next::Use(conn.clone());
        }
        // A closed sender without an outcome means the attempt's task was
        // dropped (runtime shutting down): start another instead.
        Some(Link::Connecting { addr: a, done, .. }) if a == addr && done.has_changed().is_ok() => {
            return Next::Wait(done.clone());
        }
        Some(Link::Down {
            addr: a,
            failures: f,
            retry_at,
            reason,
        }) if a == addr => {
            let now = Instant::now();
            if now < *retry_at {
                let wait_ms = retry_at.duration_since(now).as_millis();
                return Next::Fail(format!(
                    "not retrying for {wait_ms} ms after {f} failed connects; last: {reason}"
                ));
            }
            failures = *f;
        }
        // Never seen, closed, or now at another address: connect afresh.
        _ => {}
    }
    let attempt = inner.next_attempt.fetch_add(1, Ordering::Relaxed);
    let (tx, done) = watch::channel(None);
    links.insert(
        target,
        Link::Connecting {
            addr: addr.to_owned(),
            attempt,
            failures,
            done: done.clone(),
        },
    );
    drop(links);
    inner.runtime.spawn(connect_task(
        Arc::clone(inner),
        target,
        addr.to_owned(),
        attempt,
        tx,
    ));
    Next::Wait(done)
}

/// Makes one connect attempt, records its outcome in the link (if the link
/// still belongs to this attempt), and wakes the callers waiting on it.
/// Runs as its own task so a caller that times out does not cancel the
/// attempt the others share; bounded by `connect_timeout_ms`.
async fn connect_task(
    inner: Arc<Inner>,
    target: NodeId,
    addr: String,
    attempt: u64,
    tx: watch::Sender<ConnectOutcome>,
) {
    let timeout = Duration::from_millis(inner.config.connect_timeout_ms);
    let result = match tokio::time::timeout(timeout, connect(&inner, &addr)).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no handshake with {addr} within {} ms",
            inner.config.connect_timeout_ms
        )),
    };
    match &result {
        Ok(conn) => {
            bump(&inner.counters.connections_opened);
            debug!(node = target, %addr, remote = %conn.remote_address(), "connected");
        }
        Err(reason) => {
            bump(&inner.counters.connect_failures);
            debug!(node = target, %addr, %reason, "connect failed");
        }
    }
    record_outcome(&inner, target, &addr, attempt, &result);
    tx.send_replace(Some(result));
}

fn record_outcome(
    inner: &Inner,
    target: NodeId,
    addr: &str,
    attempt: u64,
    result: &Result<quinn::Connection, String>,
) {
    let mut links = lock(&inner.links);
    let failures = match links.get(&target) {
        Some(Link::Connecting {
            attempt: a,
            failures,
            ..
        }) if *a == attempt => *failures,
        // Superseded (another address, or shut down): leave the link alone.
        _ => return,
    };
    let link = match result {
        Ok(conn) => Link::Up {
            addr: addr.to_owned(),
            conn: conn.clone(),
        },
        Err(reason) => {
            let failures = failures.saturating_add(1);
            Link::Down {
                addr: addr.to_owned(),
                failures,
                retry_at: Instant::now() + inner.config.backoff(failures),
                reason: reason.clone(),
            }
        }
    };
    links.insert(target, link);
}

/// Resolves `addr` and performs the QUIC + TLS handshake.
async fn connect(inner: &Inner, addr: &str) -> Result<quinn::Connection, String> {
    let (server_name, socket_addr) = resolve(addr).await?;
    let connecting = inner
        .endpoint
        .connect(socket_addr, &server_name)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    connecting
        .await
        .map_err(|e| format!("handshake with {addr} ({socket_addr}) failed: {e}"))
}

/// The TLS server name (the host part, brackets removed) and a socket
/// address for `host:port`.
async fn resolve(addr: &str) -> Result<(String, SocketAddr), String> {
    if let Ok(socket_addr) = addr.parse::<SocketAddr>() {
        return Ok((socket_addr.ip().to_string(), socket_addr));
    }
    let bad = || format!("{addr:?} is not host:port");
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || host.contains(':') {
        return Err(bad());
    }
    let mut found = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| format!("cannot resolve {host}: {e}"))?;
    let socket_addr = found
        .next()
        .ok_or_else(|| format!("{host} resolves to no address"))?;
    Ok((host.to_owned(), socket_addr))
}

// ---------------------------------------------------------------- server side

/// Accepts connections until the endpoint closes.
async fn accept_loop(inner: Arc<Inner>) {
    while let Some(incoming) = inner.endpoint.accept().await {
        let open = inner.inbound_connections.load(Ordering::SeqCst);
        if open >= u64::from(inner.config.max_connections) {
            bump(&inner.counters.connections_rejected);
            warn!(
                remote = %incoming.remote_address(),
                max = inner.config.max_connections,
                "refusing a connection: too many open"
            );
            incoming.refuse();
            continue;
        }
        inner.inbound_connections.fetch_add(1, Ordering::SeqCst);
        let served = Arc::clone(&inner);
        inner.runtime.spawn(async move {
            serve_connection(&served, incoming).await;
            served.inbound_connections.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// Completes the handshake (the client certificate is verified here) and
/// serves each stream in its own task until the connection closes.
async fn serve_connection(inner: &Arc<Inner>, incoming: quinn::Incoming) {
    let remote = incoming.remote_address();
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            bump(&inner.counters.connections_rejected);
            warn!(%remote, error = %e, "inbound handshake failed");
            return;
        }
    };
    bump(&inner.counters.connections_accepted);
    debug!(%remote, "accepted a connection");
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                inner
                    .runtime
                    .spawn(serve_stream(Arc::clone(inner), send, recv));
            }
            Err(e) => {
                debug!(%remote, reason = %e, "connection closed");
                return;
            }
        }
    }
}

/// Serves one RPC: reads the request, runs the handler, writes the reply.
async fn serve_stream(inner: Arc<Inner>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let read_timeout = Duration::from_millis(inner.config.request_read_timeout_ms);
    let read = tokio::time::timeout(read_timeout, read_request(&inner, &mut recv)).await;
    let (request, _reservation) = match read {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => {
            debug!(error = %e, "bad request frame");
            let _ = recv.stop(quinn::VarInt::from_u32(STOP_BAD_REQUEST));
            // Tell the caller why, where the frame got far enough to say.
            if matches!(
                e,
                FrameError::TooLarge { .. } | FrameError::UnknownVersion(_)
            ) {
                reply(&inner, &mut send, Err(&e.to_string())).await;
            }
            return;
        }
        Err(_) => {
            debug!(
                after_ms = inner.config.request_read_timeout_ms,
                "request read timed out"
            );
            let _ = recv.stop(quinn::VarInt::from_u32(STOP_BAD_REQUEST));
            let _ = send.reset(quinn::VarInt::from_u32(STOP_BAD_REQUEST));
            return;
        }
    };
    bump(&inner.counters.requests_served);
    // If the caller gives up (its timeout, its shutdown) it stops the
    // stream; the handler's work is then dropped rather than finished for
    // nobody, so an abandoned request frees its stream at once.
    let caller_gone = send.stopped();
    let handled = tokio::select! {
        handled = inner.handler.handle(request) => handled,
        _ = caller_gone => {
            debug!("caller abandoned the request");
            return;
        }
    };
    match &handled {
        Ok(body) => reply(&inner, &mut send, Ok(body)).await,
        Err(message) => reply(&inner, &mut send, Err(message)).await,
    }
}

/// Reads a request, reserving memory for its body before reading it. The
/// reservation is held until the request has been handled.
async fn read_request(
    inner: &Inner,
    recv: &mut quinn::RecvStream,
) -> Result<(RpcRequest, tokio::sync::OwnedSemaphorePermit), FrameError> {
    let header = frame::read_request_header(recv, inner.config.max_body_bytes).await?;
    // body_len <= max_body_bytes <= u32::MAX (QuicConfig::validate).
    let permits = u32::try_from(header.body_len).map_err(|_| FrameError::TooLarge {
        bytes: u64::try_from(header.body_len).unwrap_or(u64::MAX),
        max: u64::from(u32::MAX),
    })?;
    let reservation = Arc::clone(&inner.inbound_bytes)
        .acquire_many_owned(permits)
        .await
        .map_err(|_| FrameError::Io("the transport is shutting down".to_owned()))?;
    let request = frame::read_request_body(recv, header).await?;
    Ok((request, reservation))
}

/// Writes a reply and finishes the stream. A reply over the limit is
/// replaced by an error saying so, so the caller hears why.
async fn reply(inner: &Inner, send: &mut quinn::SendStream, reply: Result<&[u8], &str>) {
    let max = inner.config.max_body_bytes;
    let written = match frame::write_reply(send, reply, max).await {
        Err(FrameError::TooLarge { bytes, .. }) => {
            let message = format!("the reply of {bytes} bytes exceeds the limit of {max}");
            warn!(%message, "replying with an error instead");
            frame::write_reply(send, Err(&message), max).await
        }
        other => other,
    };
    match written {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(e) => debug!(error = %e, "could not send the reply"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        // The documented defaults pass their own validation.
        QuicConfig::default().validate().unwrap();
    }

    #[test]
    fn invalid_configs_are_rejected() {
        // Each relation between the fields is enforced.
        let bad = [
            QuicConfig {
                keep_alive_ms: 10_000,
                ..QuicConfig::default()
            },
            QuicConfig {
                reconnect_backoff_min_ms: 3_000,
                ..QuicConfig::default()
            },
            QuicConfig {
                max_concurrent_streams: 0,
                ..QuicConfig::default()
            },
            QuicConfig {
                max_inbound_body_bytes: 1,
                ..QuicConfig::default()
            },
            QuicConfig {
                connect_timeout_ms: 0,
                ..QuicConfig::default()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn backoff_doubles_from_min_to_max() {
        // 50, 100, 200, ... ms, capped at the max and never overflowing.
        let config = QuicConfig::default();
        let ms = |failures| config.backoff(failures).as_millis();
        assert_eq!(ms(1), 50);
        assert_eq!(ms(2), 100);
        assert_eq!(ms(3), 200);
        assert_eq!(ms(6), 1_600);
        assert_eq!(ms(7), 2_000);
        assert_eq!(ms(u32::MAX), 2_000);
    }

    #[tokio::test]
    async fn resolve_takes_the_host_part_as_server_name() {
        // The TLS name is the dialled host: an IP literal or a DNS name.
        let (name, addr) = resolve("127.0.0.1:7000").await.unwrap();
        assert_eq!((name.as_str(), addr.port()), ("127.0.0.1", 7000));
        let (name, addr) = resolve("[::1]:7001").await.unwrap();
        assert_eq!((name.as_str(), addr.port()), ("::1", 7001));
        let (name, addr) = resolve("localhost:7002").await.unwrap();
        assert_eq!((name.as_str(), addr.port()), ("localhost", 7002));
        for bad in [
            "",
            "7000",
            "host",
            "host:",
            "host:99999",
            ":7000",
            "::1:7000",
        ] {
            assert!(resolve(bad).await.is_err(), "{bad:?}");
        }
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        // No panic when there is no tokio runtime to serve on.
        struct Nothing;
        impl RpcHandler for Nothing {
            fn handle(&self, _: RpcRequest) -> BoxFuture<'static, Result<Vec<u8>, String>> {
                Box::pin(async { Ok(Vec::new()) })
            }
        }
        let ca = crate::ClusterCa::generate("c").unwrap();
        let cert = ca.issue_node("n", &["127.0.0.1".to_owned()]).unwrap();
        let config = QuicConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ..QuicConfig::default()
        };
        let err = QuicTransport::start(config, &TlsMaterial::new(&ca, &cert), Arc::new(Nothing))
            .unwrap_err();
        assert_eq!(err, QuicStartError::NoRuntime);
    }
}
