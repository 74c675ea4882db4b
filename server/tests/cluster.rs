//! Three real nodes in one process (QUIC with mutual TLS between them):
//! routing, proxying, MOVED, the cluster client, follower reads, failover
//! and restarts.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::{Duration, Instant};

use common::{TestCluster, key_led_by, key_not_led_by};
use redis::{AsyncCommands, RedisResult, Value, cmd};

async fn get(
    con: &mut redis::aio::MultiplexedConnection,
    key: &str,
) -> RedisResult<Option<String>> {
    cmd("GET").arg(key).query_async(con).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_clients_are_proxied_and_cluster_clients_follow_moved() {
    let cluster = TestCluster::start(3).await;
    // A plain client on node 1 reaches every group.
    let mut c1 = cluster.conn(1).await;
    for i in 0..150 {
        let _: () = c1.set(format!("p{i}"), i).await.unwrap();
    }
    for node in [2, 3] {
        let mut c = cluster.conn(node).await;
        for i in 0..150 {
            assert_eq!(c.get::<_, i64>(format!("p{i}")).await.unwrap(), i);
        }
    }
    let proxied = cluster.server(1).shared.metrics.forwarded.get();
    assert!(proxied > 0, "some keys were led elsewhere and proxied");

    // A connection that asked for the topology gets -MOVED instead.
    let (key, leader) = key_not_led_by(&cluster, 1, "m");
    let mut aware = cluster.single(1).await;
    let _: Value = cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut aware)
        .await
        .unwrap();
    let err = get(&mut aware, &key).await.unwrap_err();
    assert_eq!(err.code(), Some("MOVED"), "{err:?}");
    let detail = err.detail().unwrap();
    let addr = cluster.configs[leader as usize - 1].listen.to_string();
    assert!(detail.ends_with(&addr), "{detail} should name {addr}");

    // The cluster client routes by CLUSTER SLOTS and follows redirects.
    let client = redis::cluster::ClusterClient::new(vec![cluster.url(2)]).unwrap();
    let mut cc = client.get_async_connection().await.unwrap();
    for i in 0..100 {
        let _: () = cc.set(format!("c{i}"), i).await.unwrap();
    }
    for i in 0..100 {
        assert_eq!(cc.get::<_, i64>(format!("c{i}")).await.unwrap(), i);
    }
    let values: Vec<i64> = cc
        .mget(&["{h}1", "{h}2"])
        .await
        .map(|v: Vec<Option<i64>>| v.into_iter().map(|x| x.unwrap_or(-1)).collect())
        .unwrap();
    assert_eq!(values, vec![-1, -1]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readonly_connections_read_their_local_follower() {
    let cluster = TestCluster::start(3).await;
    let (key, leader) = key_not_led_by(&cluster, 1, "r");
    let mut writer = cluster.conn(leader).await;
    let _: () = writer.set(&key, "v1").await.unwrap();
    // Node 1 hosts every group (3 replicas on 3 nodes) but does not lead
    // this one: a READONLY read is served from its replica, eventually.
    let forwarded_before = cluster.server(1).shared.metrics.forwarded.get();
    let mut follower = cluster.single(1).await;
    let _: String = cmd("READONLY").query_async(&mut follower).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match get(&mut follower, &key).await {
            Ok(Some(v)) if v == "v1" => break,
            other => {
                assert!(
                    Instant::now() < deadline,
                    "follower never caught up: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(
        cluster.server(1).shared.metrics.forwarded.get(),
        forwarded_before,
        "served locally"
    );
    // READONLY is what cluster clients send, so, as on a Redis Cluster
    // replica, a write (and, after READWRITE, a read) is answered -MOVED to
    // the leader.
    let addr = cluster.configs[leader as usize - 1].listen.to_string();
    let moved: RedisResult<()> = follower.set(&key, "v2").await;
    let err = moved.unwrap_err();
    assert_eq!(err.code(), Some("MOVED"));
    assert!(err.detail().unwrap().ends_with(&addr));
    let _: String = cmd("READWRITE").query_async(&mut follower).await.unwrap();
    let err = get(&mut follower, &key).await.unwrap_err();
    assert_eq!(err.code(), Some("MOVED"));
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_continue_after_the_leader_is_stopped() {
    let mut cluster = TestCluster::start(3).await;
    let victim = 2;
    let key = key_led_by(&cluster, 1, victim, "ctr");
    let survivor = 3;
    let mut c = cluster.conn(survivor).await;
    let mut acked = 0i64;
    for _ in 0..50 {
        let _: i64 = c.incr(&key, 1).await.unwrap();
        acked += 1;
    }
    cluster.stop(victim).await;
    // Every increment is acknowledged once a new leader is elected (the
    // router retries while the group has none).
    let mut attempted = acked;
    for _ in 0..50 {
        attempted += 1;
        let r: RedisResult<i64> = c.incr(&key, 1).await;
        if r.is_ok() {
            acked += 1;
        }
    }
    assert_eq!(acked, 100, "writes continue after the election");
    let value: i64 = c.get(&key).await.unwrap();
    assert!(
        value >= acked && value <= attempted,
        "{value} in [{acked}, {attempted}]"
    );
    let new_leader = cluster.leader_of_key(survivor, key.as_bytes()).unwrap();
    assert_ne!(new_leader, victim);

    // The stopped node restarts and catches up from the log.
    cluster.restart(victim).await;
    let mut ro = cluster.single(victim).await;
    let _: String = cmd("READONLY").query_async(&mut ro).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v: RedisResult<Option<i64>> = cmd("GET").arg(&key).query_async(&mut ro).await;
        if v.as_ref().ok().and_then(|v| *v) == Some(value) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "restarted node did not catch up: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_agree_across_a_failover() {
    let mut cluster = TestCluster::start(3).await;
    let leader = 1;
    let key = key_led_by(&cluster, 2, leader, "ttl");
    let mut c = cluster.conn(2).await;
    let _: () = cmd("SET")
        .arg(&key)
        .arg("v")
        .arg("PX")
        .arg(4_000)
        .query_async(&mut c)
        .await
        .unwrap();
    let set_at = Instant::now();
    cluster.stop(leader).await;
    // The new leader knows the same absolute expiry.
    let pttl: i64 = cmd("PTTL").arg(&key).query_async(&mut c).await.unwrap();
    let elapsed = i64::try_from(set_at.elapsed().as_millis()).unwrap();
    assert!(
        pttl > 0 && pttl <= 4_000 - elapsed + 50,
        "pttl {pttl} after {elapsed} ms"
    );
    tokio::time::sleep(Duration::from_millis(
        4_000u64.saturating_sub(elapsed as u64) + 300,
    ))
    .await;
    assert_eq!(get(&mut c, &key).await.unwrap(), None);
    assert_eq!(
        cmd("EXISTS")
            .arg(&key)
            .query_async::<i64>(&mut c)
            .await
            .unwrap(),
        0
    );
    cluster.shutdown().await;
}
