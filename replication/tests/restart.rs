//! Restarts and crashes: what a node keeps, what it re-applies from the
//! log, and how a wiped node comes back.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use cairn_engine::CrashMode;
use cairn_replication::RaftOptions;
use common::Cluster;
use std::collections::BTreeSet;

const MODES: [CrashMode; 3] = [
    CrashMode::DropUnsynced,
    CrashMode::KeepRandomPrefix,
    CrashMode::TornPages { page_bytes: 4096 },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_follower_catches_up_from_the_log() {
    let mut cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    cluster.put(1, "a", "1").await;
    let leader = cluster.leader(1).await;
    let follower = if leader == 1 { 2 } else { 1 };
    cluster.stop(follower).await;
    for i in 0..50 {
        cluster.put(1, &format!("k{i}"), "v").await;
    }
    cluster.start(follower).await;
    cluster.converge(1).await;
    assert_eq!(cluster.read(follower, 1, "k49").as_deref(), Some("v"));
    assert!(
        cluster
            .node(follower)
            .group(1)
            .unwrap()
            .metrics()
            .snapshot
            .is_none(),
        "the follower should have caught up from the log, not a snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_cluster_crash_keeps_every_acknowledged_write() {
    for (round, mode) in MODES.into_iter().enumerate() {
        let mut cluster = Cluster::new(3).await;
        cluster.create_group(1, &[1, 2, 3]).await;
        for i in 0..100 {
            cluster.put(1, &format!("k{i}"), &format!("v{i}")).await;
        }
        for id in 1..=3 {
            cluster.crash(id, mode, round as u64 * 10 + id).await;
        }
        for id in 1..=3 {
            cluster.start(id).await;
        }
        cluster.converge(1).await;
        for id in 1..=3 {
            for i in [0, 50, 99] {
                assert_eq!(
                    cluster.read(id, 1, &format!("k{i}")),
                    Some(format!("v{i}")),
                    "{mode:?}: node {id} lost k{i}"
                );
            }
        }
        // And the group keeps working.
        cluster.put(1, "after", "crash").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_after_snapshot_and_purge_reapplies_the_rest_from_the_log() {
    let options = RaftOptions {
        snapshot_after_entries: 40,
        entries_kept_after_snapshot: 0,
        ..common::test_options()
    };
    let mut cluster = Cluster::with_options(3, options).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    for i in 0..150 {
        cluster.put(1, &format!("k{i:03}"), &format!("v{i}")).await;
    }
    cluster.snapshot_and_purge(1).await;
    for id in 1..=3 {
        cluster.crash(id, CrashMode::DropUnsynced, id).await;
    }
    for id in 1..=3 {
        cluster.start(id).await;
    }
    cluster.converge(1).await;
    for id in 1..=3 {
        for i in [0, 77, 149] {
            assert_eq!(
                cluster.read(id, 1, &format!("k{i:03}")),
                Some(format!("v{i}")),
                "node {id}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_node_is_removed_and_readded_and_catches_up() {
    let options = RaftOptions {
        snapshot_after_entries: 30,
        entries_kept_after_snapshot: 0,
        ..common::test_options()
    };
    let mut cluster = Cluster::with_options(3, options).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    for i in 0..100 {
        cluster.put(1, &format!("k{i:03}"), "v").await;
    }
    let leader = cluster.leader(1).await;
    let victim = if leader == 3 { 2 } else { 3 };
    cluster.stop(victim).await;
    cluster.wipe(victim);
    cluster
        .change(1, |g| async move {
            g.remove_voters(BTreeSet::from([victim])).await
        })
        .await;
    cluster.start(victim).await;
    cluster
        .node(victim)
        .create_group(1, common::group_range(1))
        .await
        .unwrap();
    cluster
        .change(1, |g| async move {
            g.add_learner(victim, common::info(victim)).await
        })
        .await;
    cluster
        .change(
            1,
            |g| async move { g.promote(BTreeSet::from([victim])).await },
        )
        .await;
    cluster.put(1, "after", "rejoin").await;
    cluster.converge(1).await;
    assert_eq!(cluster.read(victim, 1, "k000").as_deref(), Some("v"));
    assert_eq!(cluster.read(victim, 1, "after").as_deref(), Some("rejoin"));
    assert_eq!(
        cluster.voters(1, cluster.leader(1).await),
        BTreeSet::from([1, 2, 3])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_group_deletes_its_replica_and_survives_restart() {
    let mut cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    cluster.create_group(2, &[1, 2, 3]).await;
    cluster.put(1, "a", "1").await;
    cluster.put(2, "b", "2").await;
    cluster.converge(1).await;
    cluster.converge(2).await;
    for id in 1..=3 {
        cluster.node(id).remove_group(2).await.unwrap();
        assert_eq!(cluster.read(id, 2, "b"), None);
    }
    cluster.stop(1).await;
    cluster.start(1).await;
    assert!(
        cluster.node(1).group(2).is_none(),
        "a removed group came back"
    );
    assert_eq!(cluster.node(1).groups().len(), 1);
    cluster.converge(1).await;
    assert_eq!(cluster.read(1, 1, "a").as_deref(), Some("1"));
}
