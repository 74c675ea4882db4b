//! Replication's settings, in one place, with units in the names.

use std::time::Duration;

/// Raft timing and batching for every group of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftOptions {
    /// Leader heartbeat period. Default 100 ms (a LAN); `loopback()` 50.
    pub heartbeat_interval_ms: u64,
    /// A follower starts an election after a random timeout in
    /// `[min, max)` without a heartbeat. Default 500..1000 ms (LAN);
    /// `loopback()` 150..300.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Most entries per AppendEntries RPC. Default 512.
    pub max_payload_entries: u64,
    /// A snapshot is built after this many entries since the last one.
    /// Default 20 000.
    pub snapshot_after_entries: u64,
    /// Entries kept in the log after a snapshot, so a follower a little
    /// behind (or one installing a snapshot) catches up from the log.
    /// Default 5 000.
    pub entries_kept_after_snapshot: u64,
    /// Snapshot chunk size on the wire. Default 1 MiB (well under the
    /// transport's body bound).
    pub snapshot_chunk_bytes: u64,
    /// Timeout for one snapshot chunk, including the install when it is the
    /// last one. Default 60 s: a large snapshot installs in bounded memory
    /// but not in bounded time.
    pub install_snapshot_timeout_ms: u64,
    /// How long a proposal, a read barrier or a membership change may wait
    /// before it is reported as a `Timeout` (outcome unknown). Default 10 s.
    pub operation_timeout_ms: u64,
    /// Proposals waiting in a group's queue for the batching task; a full
    /// queue makes `propose` wait (backpressure, within its timeout).
    /// Default 4096.
    pub proposal_queue_requests_max: usize,
    /// Most requests in one Raft entry. Default 1024.
    pub batch_requests_max: usize,
    /// Most bytes of commands in one Raft entry; a single larger request
    /// goes alone. Default 1 MiB.
    pub batch_bytes_max: usize,
    /// Entries of a group proposed to Raft and not yet answered; the next
    /// batch fills while these are in flight. Default 1 (see
    /// `docs/replication.md`, "Proposal batching", for the measurements).
    pub batches_in_flight_max: usize,
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            max_payload_entries: 512,
            snapshot_after_entries: 20_000,
            entries_kept_after_snapshot: 5_000,
            snapshot_chunk_bytes: 1 << 20,
            install_snapshot_timeout_ms: 60_000,
            operation_timeout_ms: 10_000,
            proposal_queue_requests_max: 4096,
            batch_requests_max: 1024,
            batch_bytes_max: 1 << 20,
            batches_in_flight_max: 1,
        }
    }
}

impl RaftOptions {
    /// Settings for nodes on one machine (tests, `cairn local`): faster
    /// heartbeats and elections.
    pub fn loopback() -> Self {
        RaftOptions {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 150,
            election_timeout_max_ms: 300,
            ..RaftOptions::default()
        }
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        Duration::from_millis(self.operation_timeout_ms)
    }

    pub(crate) fn to_openraft(&self) -> Result<openraft::Config, String> {
        if self.proposal_queue_requests_max == 0
            || self.batch_requests_max == 0
            || self.batch_bytes_max == 0
            || self.batches_in_flight_max == 0
        {
            return Err(
                "proposal_queue_requests_max, batch_requests_max, batch_bytes_max and \
                 batches_in_flight_max must be > 0"
                    .into(),
            );
        }
        let config = openraft::Config {
            cluster_name: "cairn".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            max_payload_entries: self.max_payload_entries,
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries),
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            install_snapshot_timeout: self.install_snapshot_timeout_ms,
            ..openraft::Config::default()
        };
        config.validate().map_err(|e| e.to_string())
    }
}
