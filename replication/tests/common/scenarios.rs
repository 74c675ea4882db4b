//! Cluster scenarios that run over both transports: `cluster.rs` calls them
//! with the in-memory network, `quic_cluster.rs` with QUIC and mutual TLS.

use super::{Cluster, group_range};
use std::collections::BTreeSet;
use std::sync::Arc;

/// Group 1 goes from voters {1, 2, 3} to all five nodes and back to three
/// (two of the old voters removed, never the leader of the moment) while
/// a writer keeps proposing; every write is on the final voters.
pub async fn three_to_five_to_three_while_writing(mut cluster: Cluster) {
    cluster.create_group(1, &[1, 2, 3]).await;
    cluster.add_node(4).await;
    cluster.add_node(5).await;
    let cluster = Arc::new(cluster);
    let writer = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                cluster.put(1, &format!("w{i}"), "v").await;
            }
        })
    };
    for id in [4, 5] {
        cluster
            .node(id)
            .create_group(1, group_range(1))
            .await
            .unwrap();
    }
    for id in [4, 5] {
        // The node's own address: a QUIC node listens on a port of its own.
        let info = cluster.node(id).info().clone();
        cluster
            .change(1, |g| {
                let info = info.clone();
                async move { g.add_learner(id, info).await }
            })
            .await;
    }
    cluster
        .change(
            1,
            |g| async move { g.promote(BTreeSet::from([4, 5])).await },
        )
        .await;
    let leader = cluster.leader(1).await;
    assert_eq!(cluster.voters(1, leader), BTreeSet::from([1, 2, 3, 4, 5]));

    let removed: BTreeSet<u64> = [1, 2, 3, 4, 5]
        .into_iter()
        .filter(|id| *id != leader)
        .take(2)
        .collect();
    let to_remove = removed.clone();
    cluster
        .change(1, |g| {
            let ids = to_remove.clone();
            async move { g.remove_voters(ids).await }
        })
        .await;
    writer.await.unwrap();
    let leader = cluster.leader(1).await;
    let voters = cluster.voters(1, leader);
    assert_eq!(voters.len(), 3);
    assert!(voters.is_disjoint(&removed));
    cluster.converge(1).await;
    for id in voters {
        for i in [0, 30, 59] {
            assert_eq!(
                cluster.read(id, 1, &format!("w{i}")).as_deref(),
                Some("v"),
                "node {id} w{i}"
            );
        }
    }
}

/// 64 groups on nodes 1-3 at once, each written by its own task; every
/// node ends with every group's last write.
pub async fn sixty_four_groups_on_three_nodes(cluster: Cluster) {
    for g in 1..=64 {
        cluster.create_group(g, &[1, 2, 3]).await;
    }
    let mut tasks = Vec::new();
    let cluster = Arc::new(cluster);
    for g in 1..=64u64 {
        let cluster = cluster.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                cluster.put(g, &format!("k{i}"), &format!("g{g}v{i}")).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    for g in 1..=64u64 {
        cluster.converge(g).await;
        for id in 1..=3 {
            assert_eq!(
                cluster.read(id, g, "k4"),
                Some(format!("g{g}v4")),
                "group {g} node {id}"
            );
        }
    }
}
