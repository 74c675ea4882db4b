//! Proposal batching: a group's queue of proposals and the task that turns
//! them into Raft entries.
//!
//! openraft 0.9 makes every `client_write` its own log entry: its own pass
//! through the group's core task, its own append to the log store, its own
//! apply and reply. With hundreds of concurrent proposals on one group that
//! per-entry work, not the disk, bounds throughput (about 3 entries per
//! fsync were measured at 256 proposers). So [`crate::Group::propose`] does
//! not call openraft itself: it queues the request with a oneshot for its
//! reply, and one batching task per group
//!
//! 1. takes an in-flight slot (at most `batches_in_flight_max` batches
//!    proposed and not yet answered),
//! 2. waits for the first queued request, then takes whatever else is
//!    queued, up to `batch_requests_max` requests and `batch_bytes_max`
//!    bytes of commands. There is no timer: a lone request leaves at once;
//!    requests that arrive while batches are in flight fill the next one,
//! 3. proposes the batch as one entry (`client_write_ff`, which only
//!    enqueues: the order of entries in the log is the order of the queue),
//! 4. and leaves a waiter task that, once the entry is applied on this
//!    node, hands each request its own response (the state machine applies
//!    and deduplicates each request of a batch on its own), or the batch's
//!    error to every request; then the slot is free again.
//!
//! A waiter gives up after `operation_timeout_ms` and every request of its
//! batch gets `Timeout` (the entry may still commit, as any timed-out
//! proposal may), so a lost leadership never holds a slot or a caller for
//! ever. A request whose caller stopped waiting before its batch left is
//! dropped, not proposed.
//!
//! Memory: at most `proposal_queue_requests_max` queued requests, plus
//! `batches_in_flight_max` batches of at most `batch_requests_max` requests
//! and `batch_bytes_max` bytes of commands (a single larger request goes
//! alone).

use crate::config::RaftOptions;
use crate::error::{ReplicationError, Result};
use crate::types::{GroupId, NodeId, Request, RequestBatch, Response, TypeConfig};
use openraft::Raft;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;

/// A queued request and where its reply goes.
struct Pending {
    request: Request,
    reply: oneshot::Sender<Result<Response>>,
}

/// The bounds of a group's batching, from [`RaftOptions`].
#[derive(Debug, Clone, Copy)]
struct Limits {
    batch_requests_max: usize,
    batch_bytes_max: usize,
    batches_in_flight_max: usize,
    operation_timeout: Duration,
}

/// What the batching task has proposed so far.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    batches: AtomicU64,
}

/// The sending side of a group's proposal queue. Dropping it stops the
/// batching task; queued requests then fail with `Stopped`.
pub(crate) struct Proposer {
    group: GroupId,
    queue: mpsc::Sender<Pending>,
    task: AbortHandle,
    counters: Arc<Counters>,
}

impl Proposer {
    /// Starts the batching task of `group` on the current tokio runtime.
    pub(crate) fn start(
        group: GroupId,
        node: NodeId,
        raft: Raft<TypeConfig>,
        options: &RaftOptions,
    ) -> Proposer {
        let (queue, rx) = mpsc::channel(options.proposal_queue_requests_max);
        let counters = Arc::new(Counters::default());
        let batcher = Batcher {
            group,
            node,
            raft,
            counters: counters.clone(),
            limits: Limits {
                batch_requests_max: options.batch_requests_max,
                batch_bytes_max: options.batch_bytes_max,
                batches_in_flight_max: options.batches_in_flight_max,
                operation_timeout: options.operation_timeout(),
            },
        };
        let task = tokio::spawn(batcher.run(rx)).abort_handle();
        Proposer {
            group,
            queue,
            task,
            counters,
        }
    }

    /// Requests and batches (Raft entries) proposed by this node so far.
    pub(crate) fn proposed(&self) -> (u64, u64) {
        (
            self.counters.requests.load(Ordering::Relaxed),
            self.counters.batches.load(Ordering::Relaxed),
        )
    }

    /// Queues `request` and waits for its reply: the application's response
    /// once the batch holding it is applied on this node, or the batch's
    /// error. Waits for room while the queue is full. The caller bounds the
    /// wait (`operation_timeout_ms`).
    pub(crate) async fn propose(&self, request: Request) -> Result<Response> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Pending { request, reply })
            .await
            .map_err(|_| self.stopped())?;
        rx.await.map_err(|_| self.stopped())?
    }

    /// Stops the batching task: queued requests fail with `Stopped`;
    /// batches already proposed are answered by Raft (or fail when it
    /// shuts down).
    pub(crate) fn stop(&self) {
        self.task.abort();
    }

    fn stopped(&self) -> ReplicationError {
        ReplicationError::Stopped {
            group: self.group,
            message: "the group's proposal queue is closed".into(),
        }
    }
}

impl Drop for Proposer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The batching task of one group.
struct Batcher {
    group: GroupId,
    node: NodeId,
    raft: Raft<TypeConfig>,
    counters: Arc<Counters>,
    limits: Limits,
}

impl Batcher {
    /// Runs until every sender is gone or the task is aborted.
    async fn run(self, mut rx: mpsc::Receiver<Pending>) {
        let slots = Arc::new(Semaphore::new(self.limits.batches_in_flight_max));
        // A request that did not fit the previous batch starts the next.
        let mut carried: Option<Pending> = None;
        loop {
            // The semaphore is never closed.
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let first = match carried.take() {
                Some(pending) => pending,
                None => match rx.recv().await {
                    Some(pending) => pending,
                    None => return,
                },
            };
            let (batch, rest) = self.fill(first, &mut rx);
            carried = rest;
            self.propose(batch, slot).await;
        }
    }

    /// `first` and whatever else is queued now, within the batch bounds;
    /// returns the batch and the request that would have exceeded
    /// `batch_bytes_max`, if any.
    fn fill(
        &self,
        first: Pending,
        rx: &mut mpsc::Receiver<Pending>,
    ) -> (Vec<Pending>, Option<Pending>) {
        let mut bytes = first.request.command.len();
        let mut batch = vec![first];
        while batch.len() < self.limits.batch_requests_max {
            let Ok(pending) = rx.try_recv() else {
                break;
            };
            let len = pending.request.command.len();
            if bytes.saturating_add(len) > self.limits.batch_bytes_max {
                return (batch, Some(pending));
            }
            bytes += len;
            batch.push(pending);
        }
        (batch, None)
    }

    /// Proposes `batch` as one entry and leaves a task waiting for its
    /// outcome, which holds `slot` until then.
    async fn propose(&self, batch: Vec<Pending>, slot: OwnedSemaphorePermit) {
        let (requests, replies): (Vec<Request>, Vec<_>) = batch
            .into_iter()
            .filter(|p| !p.reply.is_closed())
            .map(|p| (p.request, p.reply))
            .unzip();
        if requests.is_empty() {
            return;
        }
        let counters = &self.counters;
        counters
            .requests
            .fetch_add(requests.len() as u64, Ordering::Relaxed);
        counters.batches.fetch_add(1, Ordering::Relaxed);
        let group = self.group;
        let node = self.node;
        let limits = self.limits;
        let outcome = match self.raft.client_write_ff(RequestBatch { requests }).await {
            Ok(outcome) => outcome,
            Err(fatal) => {
                let error = ReplicationError::Stopped {
                    group,
                    message: fatal.to_string(),
                };
                answer(group, replies, Err(error));
                return;
            }
        };
        tokio::spawn(async move {
            let result = match tokio::time::timeout(limits.operation_timeout, outcome).await {
                Err(_) => Err(ReplicationError::Timeout {
                    group,
                    after_ms: limits.operation_timeout.as_millis() as u64,
                }),
                // Raft dropped the responder: it shut down.
                Ok(Err(_)) => Err(ReplicationError::Stopped {
                    group,
                    message: "raft stopped before the batch was applied".into(),
                }),
                Ok(Ok(Err(e))) => Err(ReplicationError::from_client_write(group, node, e)),
                Ok(Ok(Ok(written))) => Ok(written.data.responses),
            };
            answer(group, replies, result);
            drop(slot);
        });
    }
}

/// Hands each request of a batch its response, or every request the
/// batch's error. A caller that stopped waiting is skipped.
fn answer(
    group: GroupId,
    replies: Vec<oneshot::Sender<Result<Response>>>,
    result: Result<Vec<Response>>,
) {
    match result {
        Ok(responses) if responses.len() == replies.len() => {
            for (reply, response) in replies.into_iter().zip(responses) {
                let _ = reply.send(Ok(response));
            }
        }
        Ok(responses) => {
            // The state machine answers every request of a batch; anything
            // else is a bug, and no pairing of replies can be trusted.
            let error = ReplicationError::Storage {
                group,
                message: format!(
                    "a batch of {} requests got {} responses",
                    replies.len(),
                    responses.len()
                ),
            };
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
