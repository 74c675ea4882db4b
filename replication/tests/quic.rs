//! The QUIC transport end to end, on 127.0.0.1 with real sockets: mutual
//! TLS, one connection per peer, per-stream concurrency, limits, dead peers,
//! reconnects and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use cairn_replication::{
    BoxFuture, ClusterCa, NodeId, QuicConfig, QuicTransport, RpcHandler, RpcRequest, TlsMaterial,
    Transport, TransportError,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Answers `group LE ++ kind ++ body`, with a few special bodies:
/// `slow` sleeps 1.5 s first, `fail` answers an error, `big:N` answers N
/// bytes, `hang` never answers (and counts its drop in `dropped`).
#[derive(Default)]
struct TestHandler {
    served: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

struct DropCounter(Arc<AtomicUsize>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl RpcHandler for TestHandler {
    fn handle(&self, request: RpcRequest) -> BoxFuture<'static, Result<Vec<u8>, String>> {
        self.served.fetch_add(1, Ordering::SeqCst);
        let dropped = Arc::clone(&self.dropped);
        Box::pin(async move {
            let body = request.body.as_slice();
            if body == b"slow" {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
            } else if body == b"fail" {
                return Err("no such group: 42".to_owned());
            } else if body == b"hang" {
                let _guard = DropCounter(dropped);
                std::future::pending::<()>().await;
            } else if let Some(n) = body.strip_prefix(b"big:") {
                let n: usize = std::str::from_utf8(n).unwrap().parse().unwrap();
                return Ok(vec![7; n]);
            }
            let mut reply = request.group.to_le_bytes().to_vec();
            reply.push(request.kind);
            reply.extend_from_slice(body);
            Ok(reply)
        })
    }
}

/// The node id tests give the peer they call (each test calls at most one
/// live peer per calling node, as a node id names one address).
const LIVE: NodeId = 2;
/// The node id tests give a dead peer.
const DEAD: NodeId = 3;

fn test_config() -> QuicConfig {
    QuicConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        connect_timeout_ms: 400,
        idle_timeout_ms: 5_000,
        keep_alive_ms: 1_000,
        reconnect_backoff_min_ms: 20,
        reconnect_backoff_max_ms: 200,
        ..QuicConfig::default()
    }
}

fn material(ca: &ClusterCa) -> TlsMaterial {
    let cert = ca.issue_node("node", &["127.0.0.1".to_owned()]).unwrap();
    TlsMaterial::new(ca, &cert)
}

struct Node {
    transport: QuicTransport,
    handler: Arc<TestHandler>,
}

impl Node {
    fn start(config: QuicConfig, tls: &TlsMaterial) -> Node {
        let handler = Arc::new(TestHandler::default());
        let transport = QuicTransport::start(config, tls, handler.clone()).unwrap();
        Node { transport, handler }
    }

    fn addr(&self) -> String {
        self.transport.local_addr().to_string()
    }

    fn served(&self) -> usize {
        self.handler.served.load(Ordering::SeqCst)
    }

    /// Calls `to`, as node id [`LIVE`].
    async fn call(&self, to: &Node, body: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.call_addr(LIVE, &to.addr(), body, Duration::from_secs(2))
            .await
    }

    async fn call_addr(
        &self,
        node: NodeId,
        addr: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let request = RpcRequest {
            group: 9,
            kind: 3,
            body: body.to_vec(),
        };
        self.transport.call(node, addr, request, timeout).await
    }
}

fn echoed(body: &[u8]) -> Vec<u8> {
    let mut reply = 9u64.to_le_bytes().to_vec();
    reply.push(3);
    reply.extend_from_slice(body);
    reply
}

/// An address where nothing listens: a port that was just free.
fn dead_addr() -> String {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_rpc_between_two_nodes_with_mutual_tls() {
    // Two nodes with certificates from one CA call each other; group, kind
    // and body arrive intact.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Node::start(test_config(), &material(&ca));
    let b = Node::start(test_config(), &material(&ca));
    assert_ne!(a.transport.local_addr().port(), 0);
    assert_eq!(a.call(&b, b"ping").await.unwrap(), echoed(b"ping"));
    assert_eq!(b.call(&a, b"pong").await.unwrap(), echoed(b"pong"));
    assert_eq!(a.call(&b, b"").await.unwrap(), echoed(b""));
    assert_eq!((a.served(), b.served()), (1, 2));
    let stats = a.transport.stats();
    assert_eq!((stats.calls, stats.call_failures), (2, 0));
    assert_eq!(stats.connections_opened, 1);
    assert_eq!(stats.connections_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dial_override_replaces_the_address_of_its_node_only() {
    // A node with a dial override for peer LIVE reaches it at the override
    // even when the caller names a dead address (as a relay in front of a
    // peer is used), while calls to other nodes use the address given.
    let ca = ClusterCa::generate("cluster").unwrap();
    let b = Node::start(test_config(), &material(&ca));
    let mut config = test_config();
    config.dial_overrides.insert(LIVE, b.addr());
    let a = Node::start(config, &material(&ca));
    let reply = a
        .call_addr(LIVE, &dead_addr(), b"via", Duration::from_secs(2))
        .await;
    assert_eq!(reply.unwrap(), echoed(b"via"));
    let dead = a
        .call_addr(DEAD, &dead_addr(), b"x", Duration::from_millis(600))
        .await;
    assert!(dead.is_err(), "no override for {DEAD}: {dead:?}");
    assert_eq!(b.served(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_closes_the_connection_and_the_next_call_reconnects() {
    // disconnect() drops the link to a peer; the next call makes a new one.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Node::start(test_config(), &material(&ca));
    let b = Node::start(test_config(), &material(&ca));
    assert_eq!(a.call(&b, b"one").await.unwrap(), echoed(b"one"));
    a.transport.disconnect(LIVE);
    a.transport.disconnect(LIVE);
    assert_eq!(a.call(&b, b"two").await.unwrap(), echoed(b"two"));
    assert_eq!(a.transport.stats().connections_opened, 2);
    assert_eq!(b.transport.stats().connections_accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_connection_per_peer() {
    // 200 calls started at once (so most arrive while the first connect is
    // in flight) share one connect attempt and one connection.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Arc::new(Node::start(test_config(), &material(&ca)));
    let b = Arc::new(Node::start(test_config(), &material(&ca)));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..200u32 {
        let (a, b) = (a.clone(), b.clone());
        calls.spawn(async move {
            let body = i.to_le_bytes();
            assert_eq!(a.call(&b, &body).await.unwrap(), echoed(&body));
        });
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap();
    }
    assert_eq!(b.served(), 200);
    assert_eq!(a.transport.stats().connections_opened, 1);
    assert_eq!(a.transport.stats().connect_failures, 0);
    assert_eq!(b.transport.stats().connections_accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_a_certificate_from_another_ca_is_rejected() {
    // The server requires a client certificate from its CA: a client from
    // another CA (which itself trusts the server's CA) gets no service.
    let ca = ClusterCa::generate("cluster").unwrap();
    let rogue_ca = ClusterCa::generate("rogue").unwrap();
    let server = Node::start(test_config(), &material(&ca));
    let mut rogue = material(&rogue_ca);
    rogue.ca_cert_pem = format!("{}{}", rogue_ca.cert_pem(), ca.cert_pem());
    let client = Node::start(test_config(), &rogue);
    let err = client.call(&server, b"ping").await.unwrap_err();
    assert!(
        matches!(err, TransportError::Unreachable { node: LIVE, .. }),
        "{err}"
    );
    assert_eq!(server.served(), 0, "the handler never ran");
    assert_eq!(server.transport.stats().connections_accepted, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_with_a_certificate_from_another_ca_is_rejected() {
    // The client verifies the server against its CA: a server from another
    // CA (which itself trusts the client's CA) is never sent a request.
    let ca = ClusterCa::generate("cluster").unwrap();
    let rogue_ca = ClusterCa::generate("rogue").unwrap();
    let client = Node::start(test_config(), &material(&ca));
    let mut rogue = material(&rogue_ca);
    rogue.ca_cert_pem = format!("{}{}", rogue_ca.cert_pem(), ca.cert_pem());
    let server = Node::start(test_config(), &rogue);
    let err = client.call(&server, b"ping").await.unwrap_err();
    match &err {
        TransportError::Unreachable { node: LIVE, reason } => {
            assert!(reason.contains("certificate"), "{reason}")
        }
        other => panic!("expected Unreachable, got {other}"),
    }
    assert_eq!(server.served(), 0, "the handler never ran");
    assert_eq!(client.transport.stats().connect_failures, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_without_the_dialled_ip_is_rejected() {
    // The server's certificate must name the address dialled (IP SAN).
    let ca = ClusterCa::generate("cluster").unwrap();
    let client = Node::start(test_config(), &material(&ca));
    let cert = ca.issue_node("n", &["10.9.9.9".to_owned()]).unwrap();
    let server = Node::start(test_config(), &TlsMaterial::new(&ca, &cert));
    let err = client.call(&server, b"ping").await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable { .. }), "{err}");
    assert_eq!(server.served(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_is_refused_before_sending() {
    // The caller refuses an oversized request itself: no connection is
    // even made.
    let ca = ClusterCa::generate("cluster").unwrap();
    let small = QuicConfig {
        max_body_bytes: 1024,
        ..test_config()
    };
    let a = Node::start(small, &material(&ca));
    let b = Node::start(test_config(), &material(&ca));
    let err = a.call(&b, &[0; 1025]).await.unwrap_err();
    assert_eq!(
        err,
        TransportError::FrameTooLarge {
            bytes: 1025,
            max: 1024
        }
    );
    assert_eq!(a.transport.stats().connections_opened, 0);
    // At the limit is fine (the echo adds 9 bytes, so stay below for it).
    assert_eq!(a.call(&b, &[0; 1000]).await.unwrap(), echoed(&[0; 1000]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_refuses_an_oversized_request_and_reply_from_the_header() {
    // Limits differ between nodes: the server refuses a request over its
    // limit (saying so), and the client refuses a reply over its own.
    let ca = ClusterCa::generate("cluster").unwrap();
    let big = Node::start(test_config(), &material(&ca));
    let small = Node::start(
        QuicConfig {
            max_body_bytes: 1024,
            ..test_config()
        },
        &material(&ca),
    );
    let err = big.call(&small, &[1; 4096]).await.unwrap_err();
    match &err {
        TransportError::Remote {
            node: LIVE,
            message,
        } => {
            assert!(message.contains("exceeds the limit of 1024"), "{message}")
        }
        other => panic!("expected Remote, got {other}"),
    }
    assert_eq!(small.served(), 0, "the handler never saw it");
    let err = small.call(&big, b"big:4096").await.unwrap_err();
    assert_eq!(
        err,
        TransportError::FrameTooLarge {
            bytes: 4096,
            max: 1024
        }
    );
    // The same connection still serves well-sized calls.
    assert_eq!(big.call(&small, b"after").await.unwrap(), echoed(b"after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_length_on_the_wire_is_answered_without_waiting_for_the_body() {
    // A raw stream announcing a 4 GiB body and sending none: the server
    // answers from the header alone (it neither allocates nor waits for
    // 4 GiB), and the handler never runs.
    let ca = ClusterCa::generate("cluster").unwrap();
    let server = Node::start(test_config(), &material(&ca));
    let mut raw = quinn::Endpoint::client(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    raw.set_default_client_config(material(&ca).client_config().unwrap());
    let conn = raw
        .connect(server.transport.local_addr(), "127.0.0.1")
        .unwrap()
        .await
        .unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let mut header = vec![1u8];
    header.extend_from_slice(&9u64.to_le_bytes());
    header.push(3);
    header.extend_from_slice(&u32::MAX.to_le_bytes());
    send.write_all(&header).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(2), recv.read_to_end(4096))
        .await
        .expect("answered without the body")
        .unwrap();
    assert_eq!(reply.first(), Some(&1), "status 1: error");
    let message = String::from_utf8_lossy(reply.get(5..).unwrap());
    assert!(message.contains("4294967295 bytes exceeds"), "{message}");
    assert_eq!(server.served(), 0);

    // An unknown frame version is answered with an error too.
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    header[0] = 2;
    send.write_all(&header).await.unwrap();
    let reply = recv.read_to_end(4096).await.unwrap();
    let message = String::from_utf8_lossy(reply.get(5..).unwrap());
    assert!(message.contains("unknown rpc frame version 2"), "{message}");
    assert_eq!(server.served(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_fails_within_its_timeout_while_a_live_peer_keeps_serving() {
    // A call to an address where nothing listens fails when the connect
    // attempt gives up, inside the call's timeout; calls to a live peer
    // made meanwhile all finish before it. While backing off, calls to the
    // dead peer fail at once.
    let ca = ClusterCa::generate("cluster").unwrap();
    let config = QuicConfig {
        connect_timeout_ms: 1_500,
        reconnect_backoff_min_ms: 500,
        reconnect_backoff_max_ms: 1_000,
        ..test_config()
    };
    let a = Arc::new(Node::start(config, &material(&ca)));
    let live = Node::start(test_config(), &material(&ca));
    let dead = dead_addr();
    let started = Instant::now();
    let dead_call = {
        let (a, dead) = (a.clone(), dead.clone());
        tokio::spawn(async move { a.call_addr(DEAD, &dead, b"x", Duration::from_secs(3)).await })
    };
    for i in 0..20u8 {
        assert_eq!(a.call(&live, &[i]).await.unwrap(), echoed(&[i]));
    }
    assert!(
        !dead_call.is_finished(),
        "20 live calls took longer than the dead peer's connect timeout"
    );
    let err = dead_call.await.unwrap().unwrap_err();
    let took = started.elapsed();
    match &err {
        TransportError::Unreachable { node: DEAD, reason } => {
            assert!(reason.contains("within 1500 ms"), "{reason}")
        }
        other => panic!("expected Unreachable, got {other}"),
    }
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // During the backoff a call fails at once instead of waiting.
    let t = Instant::now();
    let err = a
        .call_addr(DEAD, &dead, b"x", Duration::from_secs(5))
        .await
        .unwrap_err();
    match &err {
        TransportError::Unreachable { node: DEAD, reason } => {
            assert!(reason.contains("not retrying"), "{reason}")
        }
        other => panic!("expected Unreachable, got {other}"),
    }
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );

    // After the backoff, a call whose timeout is shorter than the connect
    // attempt ends with Timeout.
    tokio::time::sleep(Duration::from_millis(550)).await;
    let err = a
        .call_addr(DEAD, &dead, b"x", Duration::from_millis(100))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TransportError::Timeout {
            node: DEAD,
            after_ms: 100
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handler_does_not_delay_other_requests_on_the_same_connection() {
    // A request whose handler takes 1.5 s runs beside quick ones on the
    // same connection; the quick ones answer at once.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Arc::new(Node::start(test_config(), &material(&ca)));
    let b = Arc::new(Node::start(test_config(), &material(&ca)));
    a.call(&b, b"warm up").await.unwrap();
    let slow = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move { a.call(&b, b"slow").await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    for i in 0..10u8 {
        assert_eq!(a.call(&b, &[i]).await.unwrap(), echoed(&[i]));
    }
    assert!(!slow.is_finished(), "the quick calls finished first");
    assert_eq!(slow.await.unwrap().unwrap(), echoed(b"slow"));
    assert_eq!(a.transport.stats().connections_opened, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_error_comes_back_as_remote_with_its_message() {
    // The handler's Err travels back verbatim, naming the node.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Node::start(test_config(), &material(&ca));
    let b = Node::start(test_config(), &material(&ca));
    assert_eq!(
        a.call(&b, b"fail").await.unwrap_err(),
        TransportError::Remote {
            node: LIVE,
            message: "no such group: 42".to_owned()
        }
    );
    assert_eq!(a.call(&b, b"ok").await.unwrap(), echoed(b"ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_succeed_again_after_the_peer_restarts_on_the_same_port() {
    // A peer that goes away and comes back at the same address is
    // reconnected to, after failed calls and backoff, with a new connection.
    let ca = ClusterCa::generate("cluster").unwrap();
    let tls_b = material(&ca);
    let a = Node::start(test_config(), &material(&ca));
    let b = Node::start(test_config(), &tls_b);
    let addr = b.transport.local_addr();
    assert_eq!(a.call(&b, b"one").await.unwrap(), echoed(b"one"));
    b.transport.shutdown();
    drop(b);
    let err = a
        .call_addr(LIVE, &addr.to_string(), b"gone", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            TransportError::Unreachable { .. } | TransportError::Timeout { .. }
        ),
        "{err}"
    );

    // quinn releases the port once its close has run; retry the bind.
    let config = QuicConfig {
        listen: addr,
        ..test_config()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let handler = Arc::new(TestHandler::default());
    let restarted = loop {
        match QuicTransport::start(config.clone(), &tls_b, handler.clone()) {
            Ok(t) => break t,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let reply = loop {
        match a
            .call_addr(LIVE, &addr.to_string(), b"two", Duration::from_secs(1))
            .await
        {
            Ok(reply) => break reply,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("no reconnect: {e}"),
        }
    };
    assert_eq!(reply, echoed(b"two"));
    assert_eq!(handler.served.load(Ordering::SeqCst), 1);
    assert_eq!(a.transport.stats().connections_opened, 2);
    drop(restarted);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_request_stops_its_handler() {
    // When the caller times out, the server drops the handler's work
    // instead of holding a stream for a reply nobody reads.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Node::start(test_config(), &material(&ca));
    let b = Node::start(test_config(), &material(&ca));
    let err = a
        .call_addr(LIVE, &b.addr(), b"hang", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        TransportError::Timeout {
            node: LIVE,
            after_ms: 300
        }
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while b.handler.dropped.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the handler was never dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_after_shutdown_return_closed() {
    // Shutdown ends calls in flight and refuses new ones with Closed; the
    // peer notices and serves others.
    let ca = ClusterCa::generate("cluster").unwrap();
    let a = Arc::new(Node::start(test_config(), &material(&ca)));
    let b = Arc::new(Node::start(test_config(), &material(&ca)));
    a.call(&b, b"hello").await.unwrap();
    let in_flight = {
        let (a, b) = (a.clone(), b.clone());
        tokio::spawn(async move { a.call(&b, b"hang").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    a.transport.shutdown();
    a.transport.shutdown();
    assert_eq!(
        in_flight.await.unwrap().unwrap_err(),
        TransportError::Closed
    );
    assert_eq!(
        a.call(&b, b"late").await.unwrap_err(),
        TransportError::Closed
    );
    let c = Node::start(test_config(), &material(&ca));
    assert_eq!(c.call(&b, b"still").await.unwrap(), echoed(b"still"));
}
