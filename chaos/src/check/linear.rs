//! Linearizability of one register's history: Wing & Gong's search with
//! Lowe's memoization (as in Porcupine and Knossos' "wgl").
//!
//! The history becomes a list of call and return events in time order.
//! The search repeatedly takes the earliest op whose call precedes every
//! pending return ("minimal"), applies it to the register, and lifts its
//! call and return out of the list; when no minimal op applies, it undoes
//! the last choice. A cache of (set of linearized ops, register value)
//! pairs already explored cuts the repeats: from equal pairs the rest of
//! the search is the same. An indeterminate op returns at +infinity, so it
//! may be linearized anywhere after its call, including after every other
//! op, which is the same as never.
//!
//! The search is exponential in the worst case, so it is bounded: past
//! `steps_max` it answers `Unknown` rather than hang.

#![expect(
    clippy::indexing_slicing,
    reason = "the event list's vectors are sized for every node (2 + 2 per op) and op indexes come from node numbers, so every index is in bounds by construction"
)]

use std::collections::HashSet;

use crate::history::RegOp;

/// One op of a register history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Who ran it: only for people reading a minimal history.
    pub client: u32,
    pub op: RegOp,
    pub invoke_ns: u64,
    /// `None`: indeterminate.
    pub complete_ns: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    NotLinearizable,
    /// The search ran past its step bound.
    Unknown,
}

const HEAD: usize = 0;
const TAIL: usize = 1;

/// A doubly linked list of events over indexes: node `2 + 2i` is op `i`'s
/// call, `3 + 2i` its return; 0 and 1 are sentinels.
struct Events {
    next: Vec<usize>,
    prev: Vec<usize>,
}

impl Events {
    fn new(entries: &[Entry]) -> Events {
        // (time, 0 for a call / 1 for a return, node): a call and a return
        // at the same instant count as concurrent (the permissive choice).
        let mut order: Vec<(u64, u8, usize)> = Vec::with_capacity(entries.len() * 2);
        for (i, e) in entries.iter().enumerate() {
            order.push((e.invoke_ns, 0, 2 + 2 * i));
            order.push((e.complete_ns.unwrap_or(u64::MAX), 1, 3 + 2 * i));
        }
        order.sort_unstable();
        let n = 2 + 2 * entries.len();
        let (mut next, mut prev) = (vec![TAIL; n], vec![HEAD; n]);
        let mut last = HEAD;
        for &(_, _, node) in &order {
            next[last] = node;
            prev[node] = last;
            last = node;
        }
        next[last] = TAIL;
        prev[TAIL] = last;
        Events { next, prev }
    }

    fn lift(&mut self, call: usize) {
        for node in [call, call + 1] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = n;
            self.prev[n] = p;
        }
    }

    /// Undoes `lift(call)`: the list is restored in reverse order of the
    /// lifts, so each node's own links still name its old neighbours.
    fn unlift(&mut self, call: usize) {
        for node in [call + 1, call] {
            let (p, n) = (self.prev[node], self.next[node]);
            self.next[p] = node;
            self.prev[n] = node;
        }
    }
}

fn step(state: Option<u64>, op: RegOp) -> Option<Option<u64>> {
    match op {
        RegOp::Write(v) => Some(Some(v)),
        RegOp::Read(seen) => (seen == state).then_some(state),
    }
}

/// Checks a register history that starts from a missing key.
pub fn check(entries: &[Entry], steps_max: u64) -> Verdict {
    let mut events = Events::new(entries);
    let words = entries.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    let mut stack: Vec<(usize, Option<u64>)> = Vec::new();
    let mut state: Option<u64> = None;
    let mut node = events.next[HEAD];
    let mut steps = 0u64;
    while events.next[HEAD] != TAIL {
        steps += 1;
        if steps > steps_max {
            return Verdict::Unknown;
        }
        let is_call = node != TAIL && node.is_multiple_of(2);
        if is_call {
            let op = (node - 2) / 2;
            if let Some(new_state) = step(state, entries[op].op) {
                linearized[op / 64] |= 1 << (op % 64);
                if cache.insert((linearized.clone(), new_state)) {
                    stack.push((node, state));
                    state = new_state;
                    events.lift(node);
                    node = events.next[HEAD];
                    continue;
                }
                linearized[op / 64] &= !(1 << (op % 64));
            }
            node = events.next[node];
        } else {
            // A return: its op could not be linearized before it. Undo.
            let Some((call, old_state)) = stack.pop() else {
                return Verdict::NotLinearizable;
            };
            let op = (call - 2) / 2;
            linearized[op / 64] &= !(1 << (op % 64));
            state = old_state;
            events.unlift(call);
            node = events.next[call];
        }
    }
    Verdict::Linearizable
}

/// A smaller history that is still not linearizable, for people to read.
///
/// First the shortest prefix in time: the ops invoked up to some instant
/// T, those that completed after T turned indeterminate and the reads
/// among them dropped (a prefix of a linearizable history is
/// linearizable, so the shortest failing T is found by bisection). Then,
/// while the history is at most `greedy_max` ops, single reads are
/// dropped, and writes together with every read of their value, as long
/// as it still fails. Every check is bounded by `steps_max`; a check that
/// answers Unknown keeps the op.
pub fn minimize(entries: &[Entry], steps_max: u64, greedy_max: usize) -> Vec<Entry> {
    let fails = |h: &[Entry]| check(h, steps_max) == Verdict::NotLinearizable;
    let mut times: Vec<u64> = entries.iter().map(|e| e.invoke_ns).collect();
    times.sort_unstable();
    times.dedup();
    let (mut lo, mut hi) = (0usize, times.len().saturating_sub(1));
    let mut best = entries.to_vec();
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let candidate = prefix(entries, times.get(mid).copied().unwrap_or(u64::MAX));
        if fails(&candidate) {
            hi = mid;
            best = candidate;
        } else {
            lo = mid + 1;
        }
    }
    if let Some(&t) = times.get(hi) {
        let candidate = prefix(entries, t);
        if candidate.len() < best.len() && fails(&candidate) {
            best = candidate;
        }
    }
    if best.len() > greedy_max {
        return best;
    }
    let mut i = 0;
    while i < best.len() {
        let Some(target) = best.get(i).copied() else {
            break;
        };
        let candidate: Vec<Entry> = match target.op {
            RegOp::Read(_) => best
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .map(|(_, e)| *e)
                .collect(),
            RegOp::Write(v) => best
                .iter()
                .copied()
                .filter(|e| e.op != RegOp::Write(v) && e.op != RegOp::Read(Some(v)))
                .collect(),
        };
        if fails(&candidate) {
            best = candidate;
        } else {
            i += 1;
        }
    }
    best
}

/// The history as of instant `t` (see `minimize`).
fn prefix(entries: &[Entry], t: u64) -> Vec<Entry> {
    entries
        .iter()
        .filter(|e| e.invoke_ns <= t)
        .filter_map(|e| match e.complete_ns {
            Some(c) if c <= t => Some(*e),
            _ if matches!(e.op, RegOp::Read(_)) => None,
            _ => Some(Entry {
                complete_ns: None,
                ..*e
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: u64 = 1_000_000;

    fn w(v: u64, invoke: u64, complete: u64) -> Entry {
        Entry {
            client: 1,
            op: RegOp::Write(v),
            invoke_ns: invoke,
            complete_ns: Some(complete),
        }
    }

    fn r(v: Option<u64>, invoke: u64, complete: u64) -> Entry {
        Entry {
            client: 2,
            op: RegOp::Read(v),
            invoke_ns: invoke,
            complete_ns: Some(complete),
        }
    }

    fn lost(e: Entry) -> Entry {
        Entry {
            complete_ns: None,
            ..e
        }
    }

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        // The base cases: nothing, and ops one after another reading what
        // was last written.
        assert_eq!(check(&[], STEPS), Verdict::Linearizable);
        let h = [
            r(None, 0, 1),
            w(1, 2, 3),
            r(Some(1), 4, 5),
            w(2, 6, 7),
            r(Some(2), 8, 9),
        ];
        assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_ops_may_take_effect_in_either_order() {
        // Two overlapping writes, then reads seeing 1: write 2 went first.
        let h = [w(1, 0, 10), w(2, 1, 9), r(Some(1), 11, 12)];
        assert_eq!(check(&h, STEPS), Verdict::Linearizable);
        // A read overlapping a write may see the old or the new value.
        let h = [w(1, 0, 1), w(2, 2, 10), r(Some(1), 3, 4), r(Some(2), 5, 6)];
        assert_eq!(check(&h, STEPS), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_after_an_acknowledged_write_is_caught() {
        // Write 2 completed before the read began; reading 1 is stale.
        let h = [w(1, 0, 1), w(2, 2, 3), r(Some(1), 4, 5)];
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
    }

    #[test]
    fn reads_going_back_in_time_are_caught() {
        // Once a read saw 2 (after write 1 completed... and 2 overlapping),
        // a later read cannot see 1 again.
        let h = [w(1, 0, 1), w(2, 2, 20), r(Some(2), 3, 4), r(Some(1), 5, 6)];
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
    }

    #[test]
    fn never_written_value_and_lost_write_are_caught() {
        // A value nobody wrote; a missing key after an acknowledged write.
        assert_eq!(check(&[r(Some(9), 0, 1)], STEPS), Verdict::NotLinearizable);
        let h = [w(1, 0, 1), r(None, 2, 3)];
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
    }

    #[test]
    fn indeterminate_write_may_happen_late_or_never() {
        // A timed-out write may show up long after its call...
        let h = [lost(w(1, 0, 0)), r(None, 5, 6), r(Some(1), 100, 101)];
        assert_eq!(check(&h, STEPS), Verdict::Linearizable);
        // ...or never.
        let h = [lost(w(1, 0, 0)), r(None, 5, 6), r(None, 100, 101)];
        assert_eq!(check(&h, STEPS), Verdict::Linearizable);
        // But not before its call, and once seen it stays (no later
        // write to undo it).
        let h = [r(Some(1), 0, 1), lost(w(1, 2, 2))];
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
        let h = [lost(w(1, 0, 0)), r(Some(1), 5, 6), r(None, 7, 8)];
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
    }

    #[test]
    fn step_bound_answers_unknown() {
        // Many concurrent writes and no way to order the reads: the bound
        // stops the search instead of letting it run.
        let mut h: Vec<Entry> = (0..12).map(|v| lost(w(v, 0, 0))).collect();
        h.push(r(Some(100), 1, 2));
        assert_eq!(check(&h, 50), Verdict::Unknown);
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
    }

    #[test]
    fn minimize_keeps_a_small_failing_core() {
        // A long good history with one stale read in the middle: the
        // minimal history is the writes and the read around it.
        let mut h = Vec::new();
        let mut t = 0;
        for v in 1..=50 {
            h.push(w(v, t, t + 1));
            h.push(r(Some(v), t + 2, t + 3));
            t += 4;
        }
        h.push(r(Some(10), t, t + 1));
        for v in 51..=60 {
            h.push(w(v, t + 2, t + 3));
            t += 4;
        }
        assert_eq!(check(&h, STEPS), Verdict::NotLinearizable);
        let small = minimize(&h, STEPS, 200);
        assert_eq!(check(&small, STEPS), Verdict::NotLinearizable);
        assert!(small.len() <= 3, "{small:?}");
        assert!(small.contains(&r(Some(10), 200, 201)));
    }
}
