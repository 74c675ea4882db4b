//! Clusters of 3 and 5 nodes in one process over the in-memory network:
//! election, replication, failover, partitions, membership, snapshots.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use cairn_replication::{KvCommand, KvReply};
use common::{Cluster, key, put_request, scenarios};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate() {
    let cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    for i in 0..20 {
        cluster.put(1, &format!("k{i}"), &format!("v{i}")).await;
    }
    cluster.converge(1).await;
    cluster.assert_reads(1..=3, 1, "k7", "v7");
    cluster.assert_reads(1..=3, 1, "k19", "v19");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_continue_after_the_leader_stops() {
    let mut cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    cluster.put(1, "before", "1").await;
    let old = cluster.leader(1).await;
    cluster.stop(old).await;
    cluster.put(1, "after", "2").await;
    let new = cluster.leader(1).await;
    assert_ne!(new, old);
    cluster.converge(1).await;
    cluster.assert_reads(cluster.running(), 1, "before", "1");
    cluster.assert_reads(cluster.running(), 1, "after", "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_a_healed_partition_converges() {
    let cluster = Cluster::new(5).await;
    cluster.create_group(1, &[1, 2, 3, 4, 5]).await;
    cluster.put(1, "k", "before").await;
    let old = cluster.leader(1).await;
    let others: Vec<u64> = (1..=5).filter(|id| *id != old).collect();
    let buddy = others[0];
    let majority: Vec<u64> = others[1..].to_vec();
    cluster.net.partition(&[&[old, buddy], &majority]);

    // The old leader (with one follower) cannot commit.
    let stale = cluster.node(old).group(1).unwrap();
    let request = put_request(1, "k", b"minority");
    assert!(
        stale.propose(request).await.is_err(),
        "a minority committed a write"
    );

    // The majority elects a leader and commits.
    let leader = loop {
        let found = majority
            .iter()
            .copied()
            .find(|id| cluster.node(*id).group(1).unwrap().is_leader());
        if let Some(id) = found {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let write = put_request(1, "k", b"majority");
    cluster
        .node(leader)
        .group(1)
        .unwrap()
        .propose(write)
        .await
        .unwrap();

    cluster.net.heal();
    cluster.converge(1).await;
    cluster.assert_reads(1..=5, 1, "k", "majority");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_apply_exactly_once_each() {
    let cluster = std::sync::Arc::new(Cluster::new(3).await);
    cluster.create_group(1, &[1, 2, 3]).await;
    let mut tasks = Vec::new();
    for t in 0..8 {
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25u64 {
                let command = KvCommand::Add {
                    key: key(1, "counter"),
                    by: 1,
                };
                // Each proposal carries a unique (client, serial), so a
                // retry after a timeout is not applied twice.
                cluster.propose(1, command, 100 + t, i + 1).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    cluster.converge(1).await;
    cluster.assert_reads(1..=3, 1, "counter", "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_proposal_is_applied_once() {
    let cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    let command = KvCommand::Append {
        key: key(1, "log"),
        suffix: b"x".to_vec(),
    };
    let first = cluster.propose(1, command.clone(), 77, 1).await;
    let retry = cluster.propose(1, command.clone(), 77, 1).await;
    assert_eq!(first, KvReply::Value(1));
    assert_eq!(retry, KvReply::Value(1), "the retry gets the first reply");
    let next = cluster.propose(1, command, 77, 2).await;
    assert_eq!(next, KvReply::Value(2));
    cluster.converge(1).await;
    assert_eq!(cluster.read(1, 1, "log").as_deref(), Some("xx"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_outside_the_group_range_are_refused() {
    let cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    let command = KvCommand::Put {
        key: key(2, "elsewhere"),
        value: b"v".to_vec(),
    };
    let reply = cluster.propose(1, command, 0, 0).await;
    assert!(matches!(reply, KvReply::Refused(_)), "{reply:?}");
    assert_eq!(cluster.read(1, 2, "elsewhere"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_goes_from_three_to_five_to_three_while_writing() {
    scenarios::three_to_five_to_three_while_writing(Cluster::new(3).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_chosen_voter() {
    let cluster = Cluster::new(3).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    cluster.put(1, "k", "v").await;
    let leader = cluster.leader(1).await;
    let target = if leader == 3 { 2 } else { 3 };
    cluster
        .node(leader)
        .group(1)
        .unwrap()
        .transfer_leader(target)
        .await
        .unwrap();
    assert_eq!(cluster.leader(1).await, target);
    cluster.put(1, "k2", "v2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_catches_up_by_snapshot_after_the_log_was_purged() {
    let options = cairn_replication::RaftOptions {
        snapshot_after_entries: 50,
        entries_kept_after_snapshot: 0,
        ..common::test_options()
    };
    let mut cluster = Cluster::with_options(3, options).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    for i in 0..200 {
        cluster.put(1, &format!("k{i:03}"), &format!("v{i}")).await;
    }
    cluster.snapshot_and_purge(1).await;
    cluster.add_node(4).await;
    cluster
        .node(4)
        .create_group(1, common::group_range(1))
        .await
        .unwrap();
    cluster
        .change(
            1,
            |g| async move { g.add_learner(4, common::info(4)).await },
        )
        .await;
    cluster.converge(1).await;
    assert_eq!(cluster.read(4, 1, "k000").as_deref(), Some("v0"));
    assert_eq!(cluster.read(4, 1, "k199").as_deref(), Some("v199"));
    assert!(
        cluster
            .node(4)
            .group(1)
            .unwrap()
            .metrics()
            .snapshot
            .is_some(),
        "node 4 should have installed a snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_groups_run_on_three_nodes() {
    scenarios::sixty_four_groups_on_three_nodes(Cluster::new(3).await).await;
}
