//! Proposal batching (`Group::propose` over the group's batching task):
//! concurrent proposals share Raft entries yet each gets its own reply,
//! retries stay deduplicated, and a batch that cannot commit fails every
//! member instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use cairn_replication::{
    Group, KvCommand, KvReply, LinkFaults, RaftOptions, ReplicationError, Request,
};
use common::{Cluster, TIMEOUT, is_retryable, key, put_request, test_options};
use std::time::Duration;

/// One batch in flight per group, so everything proposed while the first
/// batch waits for its round trip queues up behind it.
fn one_in_flight() -> RaftOptions {
    RaftOptions {
        batches_in_flight_max: 1,
        ..test_options()
    }
}

/// Slows every link so a batch stays in flight while the others queue.
fn slow_links(cluster: &Cluster) {
    cluster.net.set_default_faults(LinkFaults {
        delay_ms: 20,
        ..LinkFaults::default()
    });
}

/// Group 1 on 3 nodes with one batch in flight, its leader, and the
/// leader's handle, with every link slowed.
async fn slowed_group() -> (Cluster, u64, Group) {
    let cluster = Cluster::with_options(3, one_in_flight()).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    let leader = cluster.leader(1).await;
    let group = cluster.node(leader).group(1).unwrap();
    slow_links(&cluster);
    (cluster, leader, group)
}

fn add(client_id: u64, serial: u64) -> Request {
    Request {
        client_id,
        serial,
        command: KvCommand::Add {
            key: key(1, "counter"),
            by: 1,
        }
        .encode(),
    }
}

/// Proposes every request at once on `group`; the results in request order.
async fn propose_all(
    group: &Group,
    requests: Vec<Request>,
) -> Vec<Result<cairn_replication::Response, ReplicationError>> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|request| {
            let group = group.clone();
            tokio::spawn(async move { group.propose(request).await })
        })
        .collect();
    let mut results = Vec::new();
    for task in tasks {
        // A proposal that never returns would hang the test: bound it.
        let joined = tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("a proposal hung");
        results.push(joined.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_proposals_share_entries_and_each_get_their_own_reply() {
    // 200 proposals at once, request i adding i + 1 to its own key: they
    // travel in fewer entries than requests, and each caller gets the value
    // its own request produced (a reply handed to the wrong caller shows).
    let (cluster, _, group) = slowed_group().await;
    let before = group.metrics();

    let requests = (0..200u64)
        .map(|i| Request {
            client_id: 1000 + i,
            serial: 1,
            command: KvCommand::Add {
                key: key(1, &format!("k{i}")),
                by: i + 1,
            }
            .encode(),
        })
        .collect();
    for (i, result) in propose_all(&group, requests).await.into_iter().enumerate() {
        let response = result.unwrap();
        assert!(!response.duplicate);
        let expected = KvReply::Value(i as u64 + 1);
        assert_eq!(
            KvReply::decode(&response.payload),
            Some(expected),
            "request {i}"
        );
    }

    let after = group.metrics();
    let requests = after.proposed_requests - before.proposed_requests;
    let batches = after.proposed_batches - before.proposed_batches;
    assert_eq!(requests, 200);
    assert!(
        batches < requests,
        "{requests} requests went in {batches} entries: nothing was batched"
    );
    cluster.net.clear_faults();
    cluster.converge(1).await;
    for id in 1..=3 {
        assert_eq!(cluster.read(id, 1, "k0").as_deref(), Some("1"));
        assert_eq!(cluster.read(id, 1, "k199").as_deref(), Some("200"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_that_propose_again_at_once_stay_in_one_entry() {
    // 16 callers, each proposing its next request as soon as the last is
    // answered (as a busy client does): every round of 16 leaves in one
    // entry. Before, the first caller back found the queue empty and the
    // slot free and went alone, which split each round into a lone entry
    // and a batch of the other 15, and halved the requests per entry.
    const CALLERS: u64 = 16;
    const ROUNDS: u64 = 20;
    let (cluster, leader, group) = slowed_group().await;
    let before = group.metrics();

    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let group = group.clone();
            tokio::spawn(async move {
                for serial in 1..=ROUNDS {
                    group.propose(add(100 + caller, serial)).await.unwrap();
                }
            })
        })
        .collect();
    for caller in callers {
        tokio::time::timeout(TIMEOUT, caller)
            .await
            .expect("a proposal hung")
            .unwrap();
    }

    let after = group.metrics();
    let requests = after.proposed_requests - before.proposed_requests;
    let batches = after.proposed_batches - before.proposed_batches;
    assert_eq!(requests, CALLERS * ROUNDS);
    // One entry per round, with slack for a caller that comes back late
    // and rides the next entry: split rounds made exactly 2 per round.
    assert!(
        batches <= ROUNDS + ROUNDS / 2,
        "{requests} requests in {batches} entries: rounds were split"
    );
    cluster.net.clear_faults();
    cluster.converge(1).await;
    let total = (CALLERS * ROUNDS).to_string();
    assert_eq!(cluster.read(leader, 1, "counter").as_deref(), Some(&*total));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_proposed_alongside_its_original_is_applied_once() {
    // The same (client, serial) proposed twice at once, among other
    // requests: one copy is applied, the other answered from the dedup
    // record with the same payload and flagged duplicate.
    let (cluster, leader, group) = slowed_group().await;

    let requests = vec![add(1, 1), add(5, 1), add(2, 1), add(5, 1), add(3, 1)];
    let results = propose_all(&group, requests).await;
    let responses: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let (first, retry) = (&responses[1], &responses[3]);
    assert_eq!(first.payload, retry.payload, "both copies get one answer");
    assert!(
        first.duplicate != retry.duplicate,
        "exactly one copy is the duplicate: {first:?} {retry:?}"
    );
    cluster.net.clear_faults();
    cluster.converge(1).await;
    assert_eq!(cluster.read(leader, 1, "counter").as_deref(), Some("4"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_whose_leader_is_lost_fails_every_member() {
    // The leader is cut off with proposals queued and in flight: every one
    // of them returns an error (none hangs, none reports success), none is
    // ever applied, and once the node leads again its batching works.
    let cluster = Cluster::with_options(3, one_in_flight()).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    cluster.put(1, "before", "1").await;
    let old = cluster.leader(1).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    cluster.net.isolate(old, &others);

    let stale = cluster.node(old).group(1).unwrap();
    let requests = (0..50)
        .map(|i| put_request(1, &format!("lost-{i}"), b"x"))
        .collect();
    for result in propose_all(&stale, requests).await {
        match result {
            Err(e) => assert!(is_retryable(&e), "unexpected error {e}"),
            Ok(response) => panic!("a cut-off leader committed: {response:?}"),
        }
    }

    // The majority has a newer leader before the link heals, so the cut-off
    // leader's entries are truncated, never committed.
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !others
        .iter()
        .any(|id| cluster.node(*id).group(1).unwrap().is_leader())
    {
        assert!(tokio::time::Instant::now() < deadline, "no new leader");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.net.heal();
    cluster.put(1, "after-heal", "1").await;
    cluster.converge(1).await;
    for id in 1..=3 {
        for i in 0..50 {
            assert_eq!(cluster.read(id, 1, &format!("lost-{i}")), None, "node {id}");
        }
    }

    // The failed batch gave its in-flight slot back: the node proposes
    // again once it leads.
    cluster
        .change(1, |group| async move { group.transfer_leader(old).await })
        .await;
    let reply = stale.propose(put_request(1, "back", b"1")).await.unwrap();
    assert_eq!(KvReply::decode(&reply.payload), Some(KvReply::Done));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proposals_fail_when_their_node_shuts_down() {
    // Proposals queued or in flight on a leader that cannot commit all
    // return an error when the node shuts down; none hangs.
    let cluster = Cluster::with_options(3, one_in_flight()).await;
    cluster.create_group(1, &[1, 2, 3]).await;
    let old = cluster.leader(1).await;
    let others: Vec<u64> = (1..=3).filter(|id| *id != old).collect();
    cluster.net.isolate(old, &others);
    let stale = cluster.node(old).group(1).unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let group = stale.clone();
            tokio::spawn(async move { group.propose(add(i + 1, 1)).await })
        })
        .collect();
    // Let the batcher take the first batch before the shutdown.
    tokio::time::sleep(Duration::from_millis(50)).await;
    cluster.node(old).shutdown().await;
    for task in tasks {
        let result = tokio::time::timeout(TIMEOUT, task)
            .await
            .expect("a proposal hung")
            .unwrap();
        assert!(result.is_err(), "{result:?}");
    }
}
