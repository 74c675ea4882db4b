//! Judging a history. Each check returns the anomalies it found, each with
//! the smallest part of the history that shows it.
//!
//! What is promised, and so checked (docs/server.md, "Consistency"):
//!
//! - registers: default SET/GET on one key are linearizable (`linear`).
//! - counters: the final value lies between the acknowledged and the
//!   attempted INCRs; acknowledged INCRs returned distinct values, none
//!   above the final one.
//! - appends: the final value holds every acknowledged token once, and
//!   only tokens some client sent to that key; an acknowledged APPEND's
//!   returned length ends exactly at its token; every read (default or
//!   READONLY) is a prefix of the final value, cut at a token boundary;
//!   a default read holds every token acknowledged before it began.
//! - follower reads (READONLY): never a value no client wrote to the key;
//!   on one connection (which stays on one node, and ends when that node
//!   restarts), reads of an append key never get shorter: state on one
//!   replica only moves forward while its process runs. Freshness is not
//!   promised and not checked.

pub mod linear;

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::history::{
    AppendRead, AppendRecord, History, IncrRecord, ReadMode, RegOp, RegRecord, secs,
};

/// Something the history shows Cairn did wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    /// A short name: `not-linearizable`, `lost-append`, ...
    pub kind: &'static str,
    pub key: String,
    /// One sentence.
    pub summary: String,
    /// The ops that show it, one per line, in time order.
    pub history: Vec<String>,
}

/// What the checks found.
#[derive(Debug, Default, Clone)]
pub struct Findings {
    pub anomalies: Vec<Anomaly>,
    /// Keys the register check gave up on (step bound) or whose final
    /// value could not be read.
    pub unknown: Vec<String>,
}

/// Bounds of the register check's search.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub steps_max: u64,
    /// Minimization drops single ops only from histories up to this size.
    pub minimize_ops_max: usize,
    /// The checker's self-test: judge READONLY register reads as if they
    /// were linearizable. They are not promised to be, so a run with
    /// partitions should then report stale reads; a run that does not
    /// shows the checker cannot see them.
    pub follower_reads_linearizable: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            steps_max: 5_000_000,
            minimize_ops_max: 400,
            follower_reads_linearizable: false,
        }
    }
}

pub fn check_all(history: &History, limits: Limits) -> Findings {
    let mut findings = Findings::default();
    if limits.follower_reads_linearizable {
        let mut all = history.registers.clone();
        all.extend(history.follower_reg_reads.iter().map(|r| RegRecord {
            client: r.client,
            key: r.key.clone(),
            op: RegOp::Read(r.value),
            invoke_ns: r.invoke_ns,
            complete_ns: Some(r.complete_ns),
        }));
        registers(&all, limits, &mut findings);
    } else {
        registers(&history.registers, limits, &mut findings);
    }
    counters(&history.incrs, &history.final_counters, &mut findings);
    appends(history, &mut findings);
    follower_registers(history, &mut findings);
    findings
}

fn reg_line(r: &linear::Entry) -> String {
    let op = match r.op {
        RegOp::Write(v) => format!("SET v{v}"),
        RegOp::Read(Some(v)) => format!("GET -> v{v}"),
        RegOp::Read(None) => "GET -> nil".to_owned(),
    };
    let client = r.client;
    match r.complete_ns {
        Some(c) => format!("{} .. {}  client {client} {op}", secs(r.invoke_ns), secs(c)),
        None => format!(
            "{} .. ?  client {client} {op}  (indeterminate)",
            secs(r.invoke_ns)
        ),
    }
}

fn registers(records: &[RegRecord], limits: Limits, findings: &mut Findings) {
    let mut by_key: BTreeMap<&str, Vec<&RegRecord>> = BTreeMap::new();
    for r in records {
        by_key.entry(&r.key).or_default().push(r);
    }
    for (key, ops) in by_key {
        let read: HashSet<u64> = ops
            .iter()
            .filter_map(|r| match r.op {
                RegOp::Read(v) => v,
                RegOp::Write(_) => None,
            })
            .collect();
        let written: HashSet<u64> = ops
            .iter()
            .filter_map(|r| match r.op {
                RegOp::Write(v) => Some(v),
                RegOp::Read(_) => None,
            })
            .collect();
        // An indeterminate write nobody read may be linearized last, where
        // it constrains nothing: dropping it keeps the verdict and shrinks
        // the search.
        let entries: Vec<linear::Entry> = ops
            .iter()
            .filter(|r| {
                r.complete_ns.is_some() || matches!(r.op, RegOp::Write(v) if read.contains(&v))
            })
            .map(|r| linear::Entry {
                client: r.client,
                op: r.op,
                invoke_ns: r.invoke_ns,
                complete_ns: r.complete_ns,
            })
            .collect();
        if let Some(bad) = entries
            .iter()
            .find(|e| matches!(e.op, RegOp::Read(Some(v)) if !written.contains(&v)))
        {
            findings.anomalies.push(Anomaly {
                kind: "never-written",
                key: key.to_owned(),
                summary: format!("a default read of {key} returned a value no client wrote"),
                history: vec![reg_line(bad)],
            });
            continue;
        }
        match linear::check(&entries, limits.steps_max) {
            linear::Verdict::Linearizable => {}
            linear::Verdict::Unknown => findings.unknown.push(key.to_owned()),
            linear::Verdict::NotLinearizable => {
                let small = linear::minimize(&entries, limits.steps_max, limits.minimize_ops_max);
                findings.anomalies.push(Anomaly {
                    kind: "not-linearizable",
                    key: key.to_owned(),
                    summary: format!(
                        "the SET/GET history of {key} ({} ops) is not linearizable; {} ops show it",
                        entries.len(),
                        small.len()
                    ),
                    history: small.iter().map(reg_line).collect(),
                });
            }
        }
    }
}

fn incr_line(r: &IncrRecord) -> String {
    match r.result {
        Some(v) => format!("{}  client {} INCR -> {v}", secs(r.invoke_ns), r.client),
        None => format!(
            "{}  client {} INCR (indeterminate)",
            secs(r.invoke_ns),
            r.client
        ),
    }
}

fn counters(records: &[IncrRecord], finals: &[(String, Option<i64>)], findings: &mut Findings) {
    let mut by_key: BTreeMap<&str, Vec<&IncrRecord>> = BTreeMap::new();
    for r in records {
        by_key.entry(&r.key).or_default().push(r);
    }
    for (key, value) in finals {
        let ops = by_key.get(key.as_str()).cloned().unwrap_or_default();
        let Some(value) = *value else {
            findings.unknown.push(key.clone());
            continue;
        };
        let acked: Vec<i64> = ops.iter().filter_map(|r| r.result).collect();
        let (acked_n, attempted_n) = (acked.len() as i64, ops.len() as i64);
        if value < acked_n || value > attempted_n {
            findings.anomalies.push(Anomaly {
                kind: "counter-out-of-bounds",
                key: key.clone(),
                summary: format!(
                    "final {key} = {value}, outside [{acked_n} acknowledged, {attempted_n} attempted]"
                ),
                history: vec![format!(
                    "{} acknowledged INCRs, {} indeterminate, final GET -> {value}",
                    acked_n,
                    attempted_n - acked_n
                )],
            });
        }
        let mut seen: HashMap<i64, &IncrRecord> = HashMap::new();
        for r in &ops {
            let Some(v) = r.result else { continue };
            if let Some(first) = seen.insert(v, r) {
                findings.anomalies.push(Anomaly {
                    kind: "counter-duplicate",
                    key: key.clone(),
                    summary: format!("two acknowledged INCRs of {key} both returned {v}"),
                    history: vec![incr_line(first), incr_line(r)],
                });
            }
            if v > value || v < 1 {
                findings.anomalies.push(Anomaly {
                    kind: "counter-lost",
                    key: key.clone(),
                    summary: format!(
                        "an acknowledged INCR of {key} returned {v}, but the final value is {value}"
                    ),
                    history: vec![incr_line(r), format!("final GET -> {value}")],
                });
            }
        }
    }
}

fn append_line(a: &AppendRecord) -> String {
    let end = match (a.complete_ns, a.new_len) {
        (Some(c), Some(n)) => format!("{} -> len {n}", secs(c)),
        _ => "? (indeterminate)".to_owned(),
    };
    format!(
        "{} .. {end}  client {} APPEND {}",
        secs(a.invoke_ns),
        a.client,
        a.token
    )
}

fn read_line(r: &AppendRead) -> String {
    let mode = match r.mode {
        ReadMode::Leader => "GET".to_owned(),
        ReadMode::Follower { node, session } => {
            format!("READONLY GET on node {node} (session {session})")
        }
    };
    format!(
        "{} .. {}  client {} {mode} -> {:?}",
        secs(r.invoke_ns),
        secs(r.complete_ns),
        r.client,
        String::from_utf8_lossy(&r.value)
    )
}

/// `a;b;` -> `["a", "b"]`; `None` unless it is whole tokens.
fn tokens(value: &[u8]) -> Option<Vec<&[u8]>> {
    if value.is_empty() {
        return Some(Vec::new());
    }
    let body = value.strip_suffix(b";")?;
    Some(body.split(|&b| b == b';').collect())
}

fn appends(history: &History, findings: &mut Findings) {
    let mut by_key: BTreeMap<&str, Vec<&AppendRecord>> = BTreeMap::new();
    for a in &history.appends {
        by_key.entry(&a.key).or_default().push(a);
    }
    let mut reads: BTreeMap<&str, Vec<&AppendRead>> = BTreeMap::new();
    for r in &history.append_reads {
        reads.entry(&r.key).or_default().push(r);
    }
    for (key, value) in &history.final_appends {
        let Some(value) = value else {
            findings.unknown.push(key.clone());
            continue;
        };
        let ops = by_key.get(key.as_str()).cloned().unwrap_or_default();
        let key_reads = reads.get(key.as_str()).cloned().unwrap_or_default();
        let before = findings.anomalies.len();
        append_final(key, value, &ops, findings);
        if findings.anomalies.len() == before {
            append_reads(key, value, &ops, &key_reads, findings);
        }
    }
}

/// The final value against the APPENDs sent.
fn append_final(key: &str, value: &[u8], ops: &[&AppendRecord], findings: &mut Findings) {
    let mut anomaly = |kind, summary: String, history: Vec<String>| {
        findings.anomalies.push(Anomaly {
            kind,
            key: key.to_owned(),
            summary,
            history,
        });
    };
    let final_line = format!("final GET -> {:?}", String::from_utf8_lossy(value));
    let Some(found) = tokens(value) else {
        anomaly(
            "append-torn",
            format!("final {key} does not end at a token"),
            vec![final_line],
        );
        return;
    };
    let sent: HashMap<&[u8], &AppendRecord> = ops
        .iter()
        .map(|a| (a.token.trim_end_matches(';').as_bytes(), *a))
        .collect();
    let mut position: HashMap<&[u8], usize> = HashMap::new();
    let mut end = 0usize;
    for t in &found {
        end += t.len() + 1;
        if position.insert(t, end).is_some() {
            let line = sent.get(t).map_or_else(String::new, |a| append_line(a));
            anomaly(
                "append-duplicate",
                format!(
                    "token {} appears twice in {key}",
                    String::from_utf8_lossy(t)
                ),
                vec![line, final_line.clone()],
            );
        }
        if !sent.contains_key(t) {
            anomaly(
                "append-never-written",
                format!(
                    "{key} holds token {} that no client appended to it",
                    String::from_utf8_lossy(t)
                ),
                vec![final_line.clone()],
            );
        }
    }
    for a in ops {
        let (Some(_), Some(len)) = (a.complete_ns, a.new_len) else {
            continue;
        };
        let token = a.token.trim_end_matches(';').as_bytes();
        match position.get(token) {
            None => anomaly(
                "append-lost",
                format!("acknowledged APPEND {} is missing from {key}", a.token),
                vec![append_line(a), final_line.clone()],
            ),
            Some(&at) if at as u64 != len => anomaly(
                "append-misplaced",
                format!(
                    "APPEND {} answered length {len}, but the token ends at {at} in {key}",
                    a.token
                ),
                vec![append_line(a), final_line.clone()],
            ),
            Some(_) => {}
        }
    }
}

/// Every read against the final value (which passed `append_final`).
fn append_reads(
    key: &str,
    value: &[u8],
    ops: &[&AppendRecord],
    reads: &[&AppendRead],
    findings: &mut Findings,
) {
    let final_line = format!("final GET -> {:?}", String::from_utf8_lossy(value));
    // Acknowledged appends by completion, with where their token ends.
    let mut acked: Vec<(u64, u64, &AppendRecord)> = ops
        .iter()
        .filter_map(|a| Some((a.complete_ns?, a.new_len?, *a)))
        .collect();
    acked.sort_unstable_by_key(|&(c, _, _)| c);
    let mut last_len: HashMap<u64, &AppendRead> = HashMap::new();
    let mut by_time: Vec<&AppendRead> = reads.to_vec();
    by_time.sort_unstable_by_key(|r| r.invoke_ns);
    for r in by_time {
        let mut anomaly = |kind, summary: String, history: Vec<String>| {
            findings.anomalies.push(Anomaly {
                kind,
                key: key.to_owned(),
                summary,
                history,
            });
        };
        let n = r.value.len();
        if !value.starts_with(&r.value) || tokens(&r.value).is_none() {
            anomaly(
                "append-read-not-prefix",
                format!("a read of {key} is not a prefix of its final value"),
                vec![read_line(r), final_line.clone()],
            );
            continue;
        }
        match r.mode {
            ReadMode::Leader => {
                // Every append acknowledged before the read began must be
                // in it: its token ends within the read.
                let done = acked.partition_point(|&(c, _, _)| c < r.invoke_ns);
                let missing = acked.iter().take(done).find(|&&(_, len, _)| len > n as u64);
                if let Some(&(_, _, a)) = missing {
                    anomaly(
                        "stale-read",
                        format!(
                            "a read of {key} misses {} acknowledged before it began",
                            a.token
                        ),
                        vec![append_line(a), read_line(r)],
                    );
                }
            }
            ReadMode::Follower { session, .. } => {
                if let Some(prev) = last_len.get(&session)
                    && prev.value.len() > n
                {
                    anomaly(
                        "follower-went-back",
                        format!("READONLY reads of {key} on one connection went back in time"),
                        vec![read_line(prev), read_line(r)],
                    );
                }
                last_len.insert(session, r);
            }
        }
    }
}

fn follower_registers(history: &History, findings: &mut Findings) {
    let mut written: HashMap<&str, HashSet<u64>> = HashMap::new();
    for r in &history.registers {
        if let RegOp::Write(v) = r.op {
            written.entry(&r.key).or_default().insert(v);
        }
    }
    for r in &history.follower_reg_reads {
        let Some(v) = r.value else { continue };
        if !written.get(r.key.as_str()).is_some_and(|w| w.contains(&v)) {
            findings.anomalies.push(Anomaly {
                kind: "follower-never-written",
                key: r.key.clone(),
                summary: format!(
                    "a READONLY read of {} on node {} returned a value no client wrote",
                    r.key, r.node
                ),
                history: vec![format!(
                    "{}  client {} READONLY GET -> v{v}",
                    secs(r.invoke_ns),
                    r.client
                )],
            });
        }
    }
}

#[cfg(test)]
mod tests;
