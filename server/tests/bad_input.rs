//! Hostile clients: random bytes, oversized lengths, half-sent requests and
//! slow-loris connections. The node answers with an error or closes the
//! connection, never panics, and keeps serving everyone else.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::TestCluster;
use redis::AsyncCommands;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `bytes` and returns what the server answered before closing (or
/// before `wait` passed).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (out, false),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_an_error_and_others_are_served() {
    let cluster = TestCluster::start_with(1, |c| {
        c.request_read_timeout_s = 1;
        c.max_bulk_bytes = 1 << 20;
        c.max_clients = 64;
    })
    .await;
    let addr = cluster.configs[0].listen;
    let mut good = cluster.conn(1).await;
    let _: () = good.set("k", "v").await.unwrap();

    // Oversized declared lengths: refused before anything is allocated.
    for bad in [
        &b"*99999999999\r\n"[..],
        b"*1\r\n$999999999999\r\n",
        b"*1\r\n$2000000\r\n",
        b"*-5\r\n",
        b"*1\r\n$abc\r\n",
    ] {
        let (reply, closed) = exchange(addr, bad, Duration::from_secs(5)).await;
        assert!(
            reply.starts_with(b"-ERR Protocol error"),
            "{bad:?} -> {reply:?}"
        );
        assert!(closed, "{bad:?}: connection closed after a protocol error");
    }
    // Random bytes: an error or an unknown-command reply, never a hang.
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for _ in 0..20 {
        let junk: Vec<u8> = (0..512)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed & 0xFF) as u8
            })
            .collect();
        let _ = exchange(addr, &junk, Duration::from_millis(300)).await;
    }
    // A half-sent request is cut off after the read timeout, even when
    // trickled.
    let started = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"*2\r\n$3\r\nGET\r\n$10\r\nab")
        .await
        .unwrap();
    let mut buf = [0u8; 16];
    let mut closed = false;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"c").await.is_err() {
            closed = true;
            break;
        }
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "slow-loris connection was not closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Pipelined requests split at every byte still parse.
    let mut s = TcpStream::connect(addr).await.unwrap();
    for b in b"*1\r\n$4\r\nPING\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n" {
        s.write_all(&[*b]).await.unwrap();
    }
    let mut reply = Vec::new();
    while !reply.ends_with(b"$1\r\nv\r\n") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        reply.extend_from_slice(&buf[..n]);
    }
    assert_eq!(reply, b"+PONG\r\n+PONG\r\n$1\r\nv\r\n");
    // Many idle connections, then one more than max_clients is refused.
    let mut idle = Vec::new();
    for _ in 0..63 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (reply, _) = exchange(addr, b"PING\r\n", Duration::from_secs(2)).await;
    assert!(
        reply.starts_with(b"-ERR max number of clients"),
        "{reply:?}"
    );
    drop(idle);
    // The well-behaved client was served throughout.
    assert_eq!(good.get::<_, String>("k").await.unwrap(), "v");
    cluster.shutdown().await;
}
