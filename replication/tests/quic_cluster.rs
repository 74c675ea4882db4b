//! The cluster scenarios over real QUIC with mutual TLS on loopback: the
//! same nodes as the in-memory tests, with `QuicTransport` between them.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use cairn_engine::CrashMode;
use common::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_three_nodes_replicate_and_survive_losing_the_leader() {
    let mut cluster = Cluster::quic(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    for i in 0..30 {
        cluster.put(1, &format!("k{i}"), "v").await;
    }
    let old = cluster.leader(1).await;
    cluster.stop(old).await;
    cluster.put(1, "after", "failover").await;
    cluster.start(old).await;
    cluster.converge(1).await;
    for id in 1..=3 {
        assert_eq!(
            cluster.read(id, 1, "k29").as_deref(),
            Some("v"),
            "node {id}"
        );
        assert_eq!(
            cluster.read(id, 1, "after").as_deref(),
            Some("failover"),
            "node {id}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_five_nodes_survive_a_whole_cluster_crash() {
    let mut cluster = Cluster::quic(5).await;
    cluster.create_group(1, &[1, 2, 3, 4, 5]).await;
    cluster.create_group(2, &[1, 2, 3, 4, 5]).await;
    for i in 0..40 {
        cluster
            .put(1 + i % 2, &format!("k{i}"), &format!("v{i}"))
            .await;
    }
    for id in 1..=5 {
        cluster.crash(id, CrashMode::DropUnsynced, id).await;
    }
    for id in 1..=5 {
        cluster.start(id).await;
    }
    for g in [1, 2] {
        cluster.converge(g).await;
    }
    for id in 1..=5 {
        for i in [0u64, 1, 38, 39] {
            assert_eq!(
                cluster.read(id, 1 + i % 2, &format!("k{i}")),
                Some(format!("v{i}")),
                "node {id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_new_node_catches_up_by_a_chunked_snapshot() {
    let options = cairn_replication::RaftOptions {
        snapshot_after_entries: 50,
        entries_kept_after_snapshot: 0,
        // Small chunks: the snapshot crosses the wire in many RPCs.
        snapshot_chunk_bytes: 4096,
        ..common::test_options()
    };
    let mut cluster = Cluster::quic_with_options(3, options).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    let value = "x".repeat(200);
    for i in 0..150 {
        cluster.put(1, &format!("k{i:03}"), &value).await;
    }
    cluster.snapshot_and_purge(1).await;
    cluster.add_node(4).await;
    cluster
        .node(4)
        .create_group(1, common::group_range(1))
        .await
        .unwrap();
    let info = cluster.node(4).info().clone();
    cluster
        .change(1, |g| {
            let info = info.clone();
            async move { g.add_learner(4, info).await }
        })
        .await;
    cluster.converge(1).await;
    assert_eq!(cluster.read(4, 1, "k000").as_deref(), Some(value.as_str()));
    assert_eq!(cluster.read(4, 1, "k149").as_deref(), Some(value.as_str()));
    assert!(
        cluster
            .node(4)
            .group(1)
            .unwrap()
            .metrics()
            .snapshot
            .is_some()
    );
}
