//! What the clients did: every op with its invocation and completion time
//! (nanoseconds since the run began, one monotonic clock for all clients).
//! `complete: None` marks an indeterminate op: it timed out, its
//! connection broke, or it failed in a way that does not prove it was not
//! applied (`-TRYAGAIN` included, see docs/server.md "Retries"). Such an
//! op may take effect at any point after its invocation, or never.
//!
//! Reads that fail are not recorded: they change nothing.

/// A register op on one key. Written values are unique per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegOp {
    Write(u64),
    /// What the read returned (`None`: the key did not exist).
    Read(Option<u64>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegRecord {
    pub client: u32,
    pub key: String,
    pub op: RegOp,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncrRecord {
    pub client: u32,
    pub key: String,
    pub invoke_ns: u64,
    /// The value INCR returned, when acknowledged.
    pub result: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRecord {
    pub client: u32,
    pub key: String,
    /// Unique per run, `;`-terminated, no `;` inside.
    pub token: String,
    pub invoke_ns: u64,
    pub complete_ns: Option<u64>,
    /// The length APPEND returned, when acknowledged.
    pub new_len: Option<u64>,
}

/// Where a read was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// A default (linearizable) read.
    Leader,
    /// A READONLY connection to `node`; `session` numbers the connection,
    /// unique per run (a reconnect, e.g. after the node restarts, is a
    /// new session).
    Follower { node: u64, session: u64 },
}

/// A successful GET of an append key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendRead {
    pub client: u32,
    pub key: String,
    pub mode: ReadMode,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub value: Vec<u8>,
}

/// A successful READONLY GET of a register key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowerRegRead {
    pub client: u32,
    pub key: String,
    pub node: u64,
    pub session: u64,
    pub invoke_ns: u64,
    pub complete_ns: u64,
    pub value: Option<u64>,
}

/// The whole run. Bounded by the workload (`RunConfig::ops_max`).
#[derive(Debug, Default, Clone)]
pub struct History {
    pub registers: Vec<RegRecord>,
    pub incrs: Vec<IncrRecord>,
    pub appends: Vec<AppendRecord>,
    pub append_reads: Vec<AppendRead>,
    pub follower_reg_reads: Vec<FollowerRegRead>,
    /// After healing: the value of every counter and append key.
    pub final_counters: Vec<(String, Option<i64>)>,
    pub final_appends: Vec<(String, Option<Vec<u8>>)>,
}

impl History {
    pub fn len(&self) -> usize {
        self.registers.len()
            + self.incrs.len()
            + self.appends.len()
            + self.append_reads.len()
            + self.follower_reg_reads.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ops that may or may not have happened.
    pub fn indeterminate(&self) -> usize {
        self.registers
            .iter()
            .filter(|r| r.complete_ns.is_none())
            .count()
            + self.incrs.iter().filter(|r| r.result.is_none()).count()
            + self
                .appends
                .iter()
                .filter(|r| r.complete_ns.is_none())
                .count()
    }
}

/// `12.345678s`, for histories written to files.
pub fn secs(ns: u64) -> String {
    format!(
        "{}.{:06}s",
        ns / 1_000_000_000,
        (ns % 1_000_000_000) / 1_000
    )
}
