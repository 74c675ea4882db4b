//! TLS on the RESP port: a real node with `client_tls_*` set, driven by a
//! raw tokio-rustls client speaking RESP. TLS clients are served; plaintext
//! clients, clients without the required certificate and clients that never
//! handshake are closed, counted, and do not hurt anyone else.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_replication::{ClusterCa, NodeCert};
use common::TestCluster;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A CA and the server certificate (for 127.0.0.1) it signed, on disk.
struct Pki {
    dir: tempfile::TempDir,
    ca: ClusterCa,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = ClusterCa::generate("resp test CA").unwrap();
        let server = ca.issue_node("server", &["127.0.0.1".to_owned()]).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
        std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
        std::fs::write(dir.path().join("server-key.pem"), &server.key_pem).unwrap();
        Pki { dir, ca }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Settings for TLS on the RESP port; `mutual` also requires client
    /// certificates from this CA.
    fn configure(&self, c: &mut cairn_server::Config, mutual: bool) {
        c.client_tls_cert = Some(self.path("server.pem"));
        c.client_tls_key = Some(self.path("server-key.pem"));
        c.client_tls_ca = mutual.then(|| self.path("ca.pem"));
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca_pem`, presenting `identity` if given.
fn connector(ca_pem: &Path, identity: Option<&NodeCert>) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let chain = CertificateDer::pem_slice_iter(id.cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(id.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
    };
    TlsConnector::from(Arc::new(config))
}

async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timed out"))?
}

/// Sends `request` and reads until the reply is `expected` (or fails).
async fn expect_reply<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
    expected: &[u8],
) {
    expect_reply_read_by(s, request, expected, Duration::ZERO).await;
}

/// `expect_reply`, pausing `pause` after each read of at most 16 KiB: a
/// slow reader, so that the server's socket fills and its writes block.
async fn expect_reply_read_by<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
    expected: &[u8],
    pause: Duration,
) {
    s.write_all(request).await.unwrap();
    s.flush().await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 16 << 10];
    while got.len() < expected.len() {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("reply in time")
            .unwrap();
        assert!(n > 0, "closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    assert!(
        got == expected,
        "reply to {:?}",
        String::from_utf8_lossy(&request[..request.len().min(64)])
    );
}

/// Sends `request` (errors ignored) and reads until the server closes or
/// `wait` passes; returns what came back and whether it closed.
async fn read_until_closed<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    request: &[u8],
    wait: Duration,
) -> (Vec<u8>, bool) {
    if !request.is_empty() {
        let _ = s.write_all(request).await;
        let _ = s.flush().await;
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (got, false),
        }
    }
}

/// PING, SET and GET over TLS; with `big`, also a reply larger than the
/// socket buffers read slowly, so the server's writes block and a reply
/// left in its TLS buffer (not flushed) would never arrive (it did not,
/// before `cairn_server::tls::FlushBeforeRead`).
async fn exercise(addr: SocketAddr, connector: &TlsConnector, big: bool) {
    let mut s = tls_connect(addr, connector).await.unwrap();
    expect_reply(&mut s, b"PING\r\n", b"+PONG\r\n").await;
    expect_reply(
        &mut s,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"+OK\r\n",
    )
    .await;
    expect_reply(&mut s, b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", b"$1\r\nv\r\n").await;
    if big {
        let value = vec![b'x'; 16 << 20];
        let mut set = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", value.len()).into_bytes();
        set.extend_from_slice(&value);
        set.extend_from_slice(b"\r\n");
        expect_reply(&mut s, &set, b"+OK\r\n").await;
        let mut reply = format!("${}\r\n", value.len()).into_bytes();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\n");
        let get = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
        expect_reply_read_by(&mut s, get, &reply, Duration::from_micros(200)).await;
    }
    // QUIT's reply is sent before the server closes the TLS session.
    let (got, closed) = read_until_closed(&mut s, b"QUIT\r\n", Duration::from_secs(10)).await;
    assert_eq!(got, b"+OK\r\n");
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_are_served_and_plaintext_clients_are_closed() {
    // With client_tls_* set the port speaks only TLS: PING/SET/GET work over
    // it, a plaintext client is closed without a reply and counted, and TLS
    // clients keep being served afterwards.
    let pki = Pki::new();
    let cluster = TestCluster::start_with(1, |c| pki.configure(c, false)).await;
    let addr = cluster.configs[0].listen;
    let connector = connector(&pki.path("ca.pem"), None);
    exercise(addr, &connector, true).await;

    let mut plain = TcpStream::connect(addr).await.unwrap();
    let (got, closed) = read_until_closed(&mut plain, b"PING\r\n", Duration::from_secs(10)).await;
    assert!(closed, "a plaintext client is closed");
    assert!(
        !got.starts_with(b"+PONG"),
        "no RESP reply over plain TCP: {got:?}"
    );

    // A client that does not trust the server's CA gives up; the node is fine.
    let other = Pki::new();
    assert!(
        tls_connect(addr, &crate::connector(&other.path("ca.pem"), None))
            .await
            .is_err()
    );

    exercise(addr, &connector, false).await;
    let metrics = &cluster.server(1).shared.metrics;
    assert!(metrics.tls_handshake_failures.get() >= 2);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_from_the_ca() {
    // With client_tls_ca set, a client must present a certificate chaining
    // to it: none, or one from another CA, gets no reply; one from the CA
    // is served.
    let pki = Pki::new();
    let cluster = TestCluster::start_with(1, |c| pki.configure(c, true)).await;
    let addr = cluster.configs[0].listen;
    let ca_pem = pki.path("ca.pem");
    let stranger = ClusterCa::generate("other CA").unwrap();
    let foreign = stranger
        .issue_node("app", &["app.test".to_owned()])
        .unwrap();
    for identity in [None, Some(&foreign)] {
        // In TLS 1.3 the client may finish its side of the handshake before
        // the server has checked its certificate: the refusal then shows as
        // a closed connection instead of a reply.
        if let Ok(mut s) = tls_connect(addr, &connector(&ca_pem, identity)).await {
            let (got, closed) =
                read_until_closed(&mut s, b"PING\r\n", Duration::from_secs(10)).await;
            assert!(closed && got.is_empty(), "refused: {got:?}");
        }
    }
    let app = pki.ca.issue_node("app", &["app.test".to_owned()]).unwrap();
    exercise(addr, &connector(&ca_pem, Some(&app)), false).await;
    assert!(
        cluster
            .server(1)
            .shared
            .metrics
            .tls_handshake_failures
            .get()
            >= 2
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_handshakes_hold_a_client_slot_only_until_the_timeout() {
    // Clients that connect and never handshake (or send half a ClientHello)
    // take max_clients slots, so they cannot pin more than that, and are
    // dropped after request_read_timeout_s, freeing the slots for real
    // clients.
    let pki = Pki::new();
    let cluster = TestCluster::start_with(1, |c| {
        pki.configure(c, false);
        c.request_read_timeout_s = 2;
        c.max_clients = 3;
    })
    .await;
    let addr = cluster.configs[0].listen;
    let connector = connector(&pki.path("ca.pem"), None);
    let started = Instant::now();
    let mut stalled = Vec::new();
    for i in 0..3 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        if i == 0 {
            // A TLS handshake record header announcing more than is sent.
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
                .await
                .unwrap();
        }
        stalled.push(s);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Every slot is taken: a real client is turned away.
    assert!(tls_connect(addr, &connector).await.is_err());
    assert!(cluster.server(1).shared.metrics.connections_rejected.get() >= 1);
    for s in &mut stalled {
        let (got, closed) = read_until_closed(s, b"", Duration::from_secs(15)).await;
        assert!(closed, "a stalled handshake is dropped: {got:?}");
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1500),
        "not before the timeout: {waited:?}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    exercise(addr, &connector, false).await;
    assert!(
        cluster
            .server(1)
            .shared
            .metrics
            .tls_handshake_failures
            .get()
            >= 3
    );
    cluster.shutdown().await;
}
