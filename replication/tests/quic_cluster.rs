//! The cluster scenarios over real QUIC with mutual TLS on loopback: the
//! same nodes as the in-memory tests, with `QuicTransport` between them.
//! A partition here is nodes stopped and started again: QUIC links are
//! real, so the in-memory network's link faults do not apply.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use cairn_engine::CrashMode;
use cairn_replication::KvReply;
use common::{Cluster, put_request, scenarios};

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
    cluster.assert_reads(1..=3, 1, "k29", "v");
    cluster.assert_reads(1..=3, 1, "after", "failover");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_a_minority_cannot_commit_and_the_majority_history_wins() {
    // 5 nodes; the leader and one follower are left alone (the other three
    // stopped): they cannot commit. Then only the three run: they elect a
    // leader and commit. When all five run again, every node holds the
    // majority's write, and the minority's uncommitted entry is gone.
    let mut cluster = Cluster::quic(5).await;
    cluster.create_group(1, &[1, 2, 3, 4, 5]).await;
    cluster.put(1, "k", "before").await;
    let old = cluster.leader(1).await;
    let others: Vec<u64> = (1..=5).filter(|id| *id != old).collect();
    let minority = [old, others[0]];
    let majority = &others[1..];
    for id in majority {
        cluster.stop(*id).await;
    }
    let stale = cluster.node(old).group(1).unwrap();
    assert!(
        stale
            .propose(put_request(1, "k", b"minority"))
            .await
            .is_err(),
        "a minority committed a write"
    );
    drop(stale);

    for id in minority {
        cluster.stop(id).await;
    }
    for id in majority {
        cluster.start(*id).await;
    }
    let leader = cluster.leader(1).await;
    assert!(majority.contains(&leader), "leader {leader} is not running");
    let reply = cluster
        .node(leader)
        .group(1)
        .unwrap()
        .propose(put_request(1, "k", b"majority"))
        .await
        .unwrap();
    assert_eq!(KvReply::decode(&reply.payload), Some(KvReply::Done));

    for id in minority {
        cluster.start(id).await;
    }
    cluster.converge(1).await;
    cluster.assert_reads(1..=5, 1, "k", "majority");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_membership_goes_from_three_to_five_to_three_while_writing() {
    scenarios::three_to_five_to_three_while_writing(Cluster::quic(3).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_sixty_four_groups_run_on_three_nodes() {
    scenarios::sixty_four_groups_on_three_nodes(Cluster::quic(3).await).await;
}
