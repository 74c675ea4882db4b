//! The write path: group commit.
//!
//! Writers queue up; the writer at the front is the leader. The leader
//! makes room (switching the memtable or stalling if needed), takes the
//! batches queued behind it (up to `max_write_group_bytes`, never a sync
//! batch behind a non-sync leader, never mixing WAL and no-WAL batches),
//! assigns them consecutive sequence numbers, and releases the queue lock.
//! Without the lock it appends the group to the WAL as one record, fsyncs
//! once if any member asked for sync, inserts the entries into the
//! memtable, and publishes the last sequence number. Then it hands each
//! member its result and wakes the next leader. Writers arriving during the
//! leader's I/O queue up and form the next group, so under load one fsync
//! covers many writers; a sync writer waits for at most the one non-sync
//! group in front of it (whose leader did not fsync) plus its own fsync.
//!
//! Only a leader touches the WAL and switches memtables, and there is one
//! leader at a time, so sequence numbers are published in order and a
//! reader that sees sequence `s` finds every write up to `s`.

use super::{DbInner, SuperVersion, WalState, lock};
use crate::batch::{BatchOps, WriteBatch};
use crate::db::stats::Counters;
use crate::error::{Error, Result};
use crate::fs::join;
use crate::memtable::MemTable;
use crate::options::WriteOptions;
use crate::version::set::wal_name;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Groups one thread leads before handing leadership on: bounds how long
/// a writer's own call can be delayed by serving others.
const MAX_GROUPS_PER_LEADER: usize = 4;

/// How long a stalled leader sleeps before re-checking (it is also woken
/// whenever a background job finishes).
const STALL_RECHECK: Duration = Duration::from_millis(100);

struct PendingWrite {
    id: u64,
    batch: Option<WriteBatch>,
    opts: WriteOptions,
    /// A request to switch the memtable (flush), not a write.
    switch_memtable: bool,
    cv: Arc<Condvar>,
}

/// The queue of writers waiting for (or forming) a group.
#[derive(Default)]
pub(crate) struct WriteQueue {
    pending: VecDeque<PendingWrite>,
    results: HashMap<u64, Result<()>>,
    /// Followers' shares of a concurrent memtable insert, by writer id.
    inserts: HashMap<u64, InsertJob>,
    next_id: u64,
    /// Last sequence number assigned (published later by the leader).
    pub last_seq: u64,
}

impl WriteQueue {
    pub(crate) fn new(last_seq: u64) -> Self {
        WriteQueue {
            last_seq,
            ..WriteQueue::default()
        }
    }
}

impl DbInner {
    pub(crate) fn write(&self, batch: WriteBatch, opts: WriteOptions) -> Result<()> {
        self.check_writable()?;
        batch.validate(self.opts.max_key_bytes, self.opts.max_value_bytes)?;
        if batch.is_empty() {
            return Ok(());
        }
        self.enqueue(Some(batch), opts, false)
    }

    /// Switches the memtable (if it holds anything) in queue order, so the
    /// switch never races a leader's WAL append or memtable insert.
    pub(crate) fn enqueue_switch(&self) -> Result<()> {
        self.enqueue(None, WriteOptions::default(), true)
    }

    fn enqueue(
        &self,
        batch: Option<WriteBatch>,
        opts: WriteOptions,
        switch_memtable: bool,
    ) -> Result<()> {
        let cv = Arc::new(Condvar::new());
        let mut q = lock(&self.queue);
        let id = q.next_id;
        q.next_id += 1;
        q.pending.push_back(PendingWrite {
            id,
            batch,
            opts,
            switch_memtable,
            cv: cv.clone(),
        });
        loop {
            if let Some(r) = q.results.remove(&id) {
                return r;
            }
            if let Some(job) = q.inserts.remove(&id) {
                drop(q);
                job.run();
                q = lock(&self.queue);
                continue;
            }
            if q.pending.front().is_some_and(|w| w.id == id) {
                return self.lead(q, id);
            }
            q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Leads the caller's group, then keeps leading while other writers are
    /// queued (at most `MAX_GROUPS_PER_LEADER` groups, and only groups that
    /// need no memtable switch, stall or slowdown): each further group then
    /// starts at once instead of after waking its first writer, which on a
    /// busy machine costs a context switch on the critical path.
    /// REQUIRES: the caller is the front of the queue.
    fn lead<'a>(&'a self, mut q: MutexGuard<'a, WriteQueue>, my_id: u64) -> Result<()> {
        let mut mine = Ok(());
        let mut led = 0;
        while let Some(front) = q.pending.front() {
            let own = front.id == my_id;
            if !own && (front.switch_memtable || led >= MAX_GROUPS_PER_LEADER || !self.room_now()) {
                front.cv.notify_one();
                break;
            }
            let (next_q, result) = self.lead_one(q, my_id);
            q = next_q;
            led += 1;
            if own {
                mine = result.clone();
            }
            if result.is_err() {
                if let Some(w) = q.pending.front() {
                    w.cv.notify_one();
                }
                break;
            }
        }
        mine
    }

    /// True when the next group needs no memtable switch, stall or delay.
    fn room_now(&self) -> bool {
        let sv = self.super_version();
        sv.mem.approximate_bytes() < self.opts.write_buffer_bytes
            && sv.version.files(0).len() < self.opts.l0_slowdown_trigger
            && self.check_writable().is_ok()
    }

    /// See [`crate::Db::write_may_stall`]. Conservative: the memtable may
    /// fill before the write lands, so any switch that would have to wait
    /// for a flush counts, full memtable or not.
    pub(crate) fn write_may_stall(&self) -> bool {
        let sv = self.super_version();
        sv.version.files(0).len() >= self.opts.l0_slowdown_trigger
            || sv.imms.len() + 1 >= self.opts.max_memtables.max(2)
    }

    /// Runs the group at the front of the queue: makes room, logs, inserts,
    /// publishes, and hands every member but `my_id` its result.
    fn lead_one<'a>(
        &'a self,
        q: MutexGuard<'a, WriteQueue>,
        my_id: u64,
    ) -> (MutexGuard<'a, WriteQueue>, Result<()>) {
        let (leader_opts, switch) = match q.pending.front() {
            Some(w) => (w.opts, w.switch_memtable),
            None => return (q, Ok(())),
        };
        let (mut q, room) = self.make_room(q, switch);
        if room.is_err() || switch {
            if let Some(w) = q.pending.pop_front()
                && w.id != my_id
            {
                q.results.insert(w.id, room.clone());
                w.cv.notify_one();
            }
            return (q, room);
        }
        let mut group = take_group(&mut q, leader_opts, self.opts.max_write_group_bytes);
        let base = q.last_seq + 1;
        q.last_seq += group.wal.len() as u64;
        group.wal.set_base_seq(base);
        let mem = self.super_version().mem.clone();
        drop(q);

        let members = group.len();
        let last = base + group.wal.len() as u64 - 1;
        let result = self
            .log_group(&group, &mem, leader_opts.disable_wal)
            .and_then(|()| self.insert_group(group, &mem, base));
        if result.is_ok() {
            // Every member's entries are in the memtable: make them visible.
            self.visible_seq.store(last, Ordering::Release);
        }

        let mut q = lock(&self.queue);
        for _ in 0..members {
            if let Some(w) = q.pending.pop_front()
                && w.id != my_id
            {
                q.results.insert(w.id, result.clone());
                w.cv.notify_one();
            }
        }
        (q, result)
    }

    /// Appends the group to the WAL as one record, then fsyncs (if any
    /// member asked) or at least hands the bytes to the OS.
    fn log_group(&self, group: &Group, mem: &MemTable, disable_wal: bool) -> Result<()> {
        Counters::add(&self.counters.writes, group.len() as u64);
        Counters::add(&self.counters.write_groups, 1);
        if disable_wal {
            mem.mark_unlogged();
            return Ok(());
        }
        let mut wal = lock(&self.wal);
        let w = wal.as_mut().ok_or(Error::Closed)?;
        w.writer
            .add_record(group.wal.encoded())
            .map_err(|e| self.poison(Error::io("append", &w.path, e)))?;
        // Non-sync writes still reach the OS before they are acknowledged,
        // so they survive a crash of the process.
        let (op, durable) = if group.sync {
            Counters::add(&self.counters.wal_syncs, 1);
            ("fsync", w.writer.sync())
        } else {
            ("write", w.writer.flush())
        };
        durable.map_err(|e| self.poison(Error::io(op, &w.path, e)))?;
        Counters::add(
            &self.counters.wal_bytes_written,
            group.wal.size_bytes() as u64,
        );
        Ok(())
    }

    /// Inserts every member's entries into the memtable. Small groups are
    /// inserted by the leader alone; a group of at least
    /// `concurrent_insert_min_entries` entries is split: each follower
    /// inserts its own batch on its own thread (the skiplist takes
    /// concurrent inserts) while the leader inserts its own, and the leader
    /// waits for all of them. Waking a follower costs a context switch,
    /// which is more than inserting a few small entries: hence the bound.
    fn insert_group(&self, group: Group, mem: &Arc<MemTable>, base: u64) -> Result<()> {
        let parallel =
            group.members.len() > 1 && group.wal.len() >= self.opts.concurrent_insert_min_entries;
        if !parallel {
            let bytes = insert_batch(mem, group.wal.encoded(), base)?;
            Counters::add(&self.counters.user_bytes_written, bytes);
            return Ok(());
        }
        let done = Arc::new(Countdown::new(group.members.len() - 1));
        let mut own = None;
        {
            let mut q = lock(&self.queue);
            let mut member_base = base;
            for (i, (id, batch)) in group.members.into_iter().enumerate() {
                let next_base = member_base + batch.len() as u64;
                if i == 0 {
                    own = Some((batch, member_base));
                } else {
                    let job = InsertJob {
                        mem: mem.clone(),
                        base: member_base,
                        batch,
                        done: done.clone(),
                    };
                    q.inserts.insert(id, job);
                    if let Some(w) = q.pending.iter().find(|w| w.id == id) {
                        w.cv.notify_one();
                    }
                }
                member_base = next_base;
            }
        }
        let own_result = match own {
            Some((batch, b)) => insert_batch(mem, batch.encoded(), b),
            None => Ok(0),
        };
        let followers = done.wait();
        let bytes = own_result? + followers?;
        Counters::add(&self.counters.user_bytes_written, bytes);
        Ok(())
    }

    /// Makes sure the memtable has room (or switches it when `force`),
    /// delaying or stalling the writer while L0 or the memtables are full.
    /// The queue lock is released while sleeping or waiting.
    fn make_room<'a>(
        &'a self,
        mut q: MutexGuard<'a, WriteQueue>,
        force: bool,
    ) -> (MutexGuard<'a, WriteQueue>, Result<()>) {
        let mut allow_delay = !force;
        let mut force = force;
        let mut stalled_since: Option<Instant> = None;
        let result = loop {
            if let Err(e) = self.check_writable() {
                break Err(e);
            }
            let sv = self.super_version();
            let l0 = sv.version.files(0).len();
            if allow_delay && l0 >= self.opts.l0_slowdown_trigger {
                // Give compaction a little time per write rather than
                // stopping all writes later.
                drop(q);
                std::thread::sleep(Duration::from_millis(self.opts.slowdown_delay_ms));
                Counters::add(&self.counters.slowdown_count, 1);
                q = lock(&self.queue);
                allow_delay = false;
                continue;
            }
            let has_room = sv.mem.approximate_bytes() < self.opts.write_buffer_bytes;
            if (!force && has_room) || (force && sv.mem.is_empty()) {
                break Ok(());
            }
            if sv.imms.len() + 1 >= self.opts.max_memtables.max(2)
                || l0 >= self.opts.l0_stop_trigger
            {
                if stalled_since.is_none() {
                    stalled_since = Some(Instant::now());
                    Counters::add(&self.counters.stall_count, 1);
                }
                self.wake_background();
                q = self
                    .stall_cv
                    .wait_timeout(q, STALL_RECHECK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
                continue;
            }
            if let Err(e) = self.switch_memtable(&sv) {
                break Err(self.poison(e));
            }
            force = false;
        };
        if let Some(t) = stalled_since {
            Counters::add(&self.counters.stall_micros, t.elapsed().as_micros() as u64);
        }
        (q, result)
    }

    /// Seals the current WAL, starts a new one and a new memtable, and
    /// queues the old memtable for flush. REQUIRES: called by the leader.
    fn switch_memtable(&self, _seen: &SuperVersion) -> Result<()> {
        let number = lock(&self.versions).new_file_number();
        let path = join(&self.dir, &wal_name(number));
        let file = self
            .fs
            .create(&path)
            .map_err(|e| Error::io("create", &path, e))?;
        self.fs
            .sync_dir(&self.dir)
            .map_err(|e| Error::io("fsync directory", &self.dir, e))?;
        {
            let mut wal = lock(&self.wal);
            if let Some(old) = wal.as_mut() {
                old.writer
                    .seal()
                    .map_err(|e| Error::io("fsync", &old.path, e))?;
            }
            *wal = Some(WalState {
                writer: super::new_wal_writer(file, &self.opts, &path)?,
                path,
            });
        }
        let mem = Arc::new(MemTable::with_budget(number, self.opts.write_buffer_bytes));
        self.install(|cur| {
            let mut imms = Vec::with_capacity(cur.imms.len() + 1);
            imms.push(cur.mem.clone());
            imms.extend(cur.imms.iter().cloned());
            SuperVersion {
                mem,
                imms,
                version: cur.version.clone(),
            }
        });
        self.wake_background();
        Ok(())
    }
}

/// A group-commit group: the WAL record (every member's entries under one
/// header) and each member's own batch (for concurrent insertion).
struct Group {
    /// The WAL record: every member's entries under one header.
    wal: WriteBatch,
    /// The members' ids and batches, in queue order, when there are
    /// several (their batches serve concurrent inserts).
    members: Vec<(u64, WriteBatch)>,
    /// The only member's id, when there is one: its batch was moved into
    /// `wal` rather than copied (the usual case without contention).
    solo: Option<u64>,
    sync: bool,
}

impl Group {
    fn len(&self) -> usize {
        if self.solo.is_some() {
            1
        } else {
            self.members.len()
        }
    }
}

/// Takes the leader's batch and those that may join it from the front of
/// the queue (the leader first, in queue order).
fn take_group(q: &mut WriteQueue, leader: WriteOptions, max_bytes: usize) -> Group {
    // The first member's batch, until a second one joins; from then on the
    // combined record and every member's batch.
    let mut first: Option<(u64, WriteBatch)> = None;
    let mut combined: Option<WriteBatch> = None;
    let mut members = Vec::new();
    let mut sync = false;
    for w in q.pending.iter_mut() {
        if w.switch_memtable {
            break;
        }
        let Some(b) = w.batch.as_ref() else { break };
        let size = match (&first, &combined) {
            (Some((_, f)), _) => Some(f.size_bytes()),
            (None, Some(c)) => Some(c.size_bytes()),
            (None, None) => None,
        };
        if let Some(size) = size {
            let joins = w.opts.disable_wal == leader.disable_wal
                && (leader.sync || !w.opts.sync)
                && size + b.size_bytes() <= max_bytes;
            if !joins {
                break;
            }
        }
        if let Some(b) = w.batch.take() {
            if first.is_none() && combined.is_none() {
                first = Some((w.id, b));
            } else {
                let wal = combined.get_or_insert_with(WriteBatch::new);
                if let Some((id, f)) = first.take() {
                    wal.append_entries(&f);
                    members.push((id, f));
                }
                wal.append_entries(&b);
                members.push((w.id, b));
            }
        }
        sync |= w.opts.sync;
    }
    match (first, combined) {
        (Some((id, wal)), _) => Group {
            wal,
            members,
            solo: Some(id),
            sync,
        },
        (None, wal) => Group {
            wal: wal.unwrap_or_default(),
            members,
            solo: None,
            sync,
        },
    }
}

/// Inserts an encoded batch's entries with sequence numbers from `base`;
/// returns the user bytes inserted.
fn insert_batch(mem: &MemTable, encoded: &[u8], base: u64) -> Result<u64> {
    let mut bytes = 0u64;
    let ops = BatchOps::new(encoded).map_err(Error::InvalidArgument)?;
    for (seq, op) in (base..).zip(ops) {
        let op = op.map_err(Error::InvalidArgument)?;
        mem.add(seq, op.kind, op.key, op.value);
        bytes += (op.key.len() + op.value.len()) as u64;
    }
    Ok(bytes)
}

/// A follower's share of a concurrent memtable insert.
struct InsertJob {
    mem: Arc<MemTable>,
    base: u64,
    batch: WriteBatch,
    done: Arc<Countdown>,
}

impl InsertJob {
    fn run(self) {
        let r = insert_batch(&self.mem, self.batch.encoded(), self.base);
        self.done.finish(r);
    }
}

/// Counts followers' inserts down to zero, summing bytes and keeping the
/// first error.
struct Countdown {
    state: Mutex<(usize, Result<u64>)>,
    cv: Condvar,
}

impl Countdown {
    fn new(n: usize) -> Self {
        Countdown {
            state: Mutex::new((n, Ok(0))),
            cv: Condvar::new(),
        }
    }

    fn finish(&self, r: Result<u64>) {
        let mut s = lock(&self.state);
        s.0 -= 1;
        s.1 = match (std::mem::replace(&mut s.1, Ok(0)), r) {
            (Ok(a), Ok(b)) => Ok(a + b),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        if s.0 == 0 {
            self.cv.notify_all();
        }
    }

    fn wait(&self) -> Result<u64> {
        let mut s = lock(&self.state);
        while s.0 > 0 {
            s = self.cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        std::mem::replace(&mut s.1, Ok(0))
    }
}
