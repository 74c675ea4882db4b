//! What a committed command means: the [`Application`] the node was opened
//! with interprets `Request::command` when its entry is applied.
//!
//! Replication orders and persists opaque commands; the layer above (the
//! server's Redis commands, its cluster map) gives them meaning. Apply is
//! deterministic: every replica runs the same commands in the same order on
//! the same state and must produce the same writes, so an application may
//! read only through its [`ApplyContext`] and must not consult clocks or
//! randomness (the leader stamps what it needs into the command).
//!
//! [`KvApplication`] is a minimal application (put, delete, delete range,
//! compare-and-set-like increment) used by replication's own tests and
//! benchmarks.

use crate::keys::KeyRange;
use crate::types::GroupId;
use cairn_engine::{Db, WriteBatch};
use std::collections::BTreeMap;
use std::fmt;

/// Interprets committed commands. Called on the group's apply task, one
/// command at a time, in log order.
pub trait Application: Send + Sync + 'static {
    /// Applies `command` and returns the reply the proposer receives. Errors
    /// the command itself can have (wrong type, key outside the group)
    /// belong in the reply; `Err` is for engine failures, which stop the
    /// group (the engine is poisoned anyway).
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Result<Vec<u8>, ApplyError>;
}

/// Why an apply could not proceed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ApplyError {
    /// A write outside the group's key range. The command is refused as a
    /// whole by the application (see [`KvApplication`]) before this can be
    /// hit; reaching it is a bug in the application.
    OutOfRange { group: GroupId, key: Vec<u8> },
    /// The engine failed; the group stops applying.
    Engine(String),
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApplyError::OutOfRange { group, key } => {
                write!(f, "group {group}: write to key {key:?} outside its range")
            }
            ApplyError::Engine(message) => write!(f, "engine: {message}"),
        }
    }
}

impl std::error::Error for ApplyError {}

/// One pending write of the current apply batch.
#[derive(Debug, Clone)]
enum Pending {
    Put(Vec<u8>),
    Delete,
}

/// The state a command sees while it is applied: the engine plus the writes
/// of the commands applied before it in the same batch, which are not in
/// the engine yet (the batch is written once, at the end of the apply call).
pub struct ApplyContext<'a> {
    group: GroupId,
    range: &'a KeyRange,
    db: &'a Db,
    batch: &'a mut WriteBatch,
    /// Latest pending point write per key, with its order in the batch.
    points: BTreeMap<Vec<u8>, (u64, Pending)>,
    /// Range deletes of the batch, with their order.
    ranges: Vec<(u64, Vec<u8>, Vec<u8>)>,
    next_order: u64,
}

impl<'a> ApplyContext<'a> {
    pub(crate) fn new(
        group: GroupId,
        range: &'a KeyRange,
        db: &'a Db,
        batch: &'a mut WriteBatch,
    ) -> Self {
        ApplyContext {
            group,
            range,
            db,
            batch,
            points: BTreeMap::new(),
            ranges: Vec::new(),
            next_order: 0,
        }
    }

    /// The group being applied.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The group's key range; every write must stay inside it.
    pub fn range(&self) -> &KeyRange {
        self.range
    }

    /// Reads `key` as of the commands applied so far.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, ApplyError> {
        let point = self.points.get(key);
        let point_order = point.map(|(order, _)| *order);
        let deleted_later = self.ranges.iter().any(|(order, start, end)| {
            point_order.is_none_or(|p| *order > p)
                && key >= start.as_slice()
                && key < end.as_slice()
        });
        if deleted_later {
            return Ok(None);
        }
        match point {
            Some((_, Pending::Put(value))) => Ok(Some(value.clone())),
            Some((_, Pending::Delete)) => Ok(None),
            None => self
                .db
                .get(key)
                .map_err(|e| ApplyError::Engine(e.to_string())),
        }
    }

    /// Writes `key = value`. REQUIRES: `key` inside the group's range.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ApplyError> {
        self.check(key)?;
        self.batch.put(key, value);
        let order = self.order();
        self.points
            .insert(key.to_vec(), (order, Pending::Put(value.to_vec())));
        Ok(())
    }

    /// Deletes `key`. REQUIRES: `key` inside the group's range.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), ApplyError> {
        self.check(key)?;
        self.batch.delete(key);
        let order = self.order();
        self.points.insert(key.to_vec(), (order, Pending::Delete));
        Ok(())
    }

    /// Deletes `[start, end)`. REQUIRES: inside the group's range.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<(), ApplyError> {
        if !self.range.covers(start, end) {
            return Err(ApplyError::OutOfRange {
                group: self.group,
                key: start.to_vec(),
            });
        }
        if start >= end {
            return Ok(());
        }
        self.batch.delete_range(start, end);
        let order = self.order();
        self.ranges.push((order, start.to_vec(), end.to_vec()));
        Ok(())
    }

    /// Writes replication's own keys (dedup records, applied state), which
    /// live outside every data range.
    pub(crate) fn put_meta(&mut self, key: &[u8], value: &[u8]) {
        self.batch.put(key, value);
        let order = self.order();
        self.points
            .insert(key.to_vec(), (order, Pending::Put(value.to_vec())));
    }

    fn check(&self, key: &[u8]) -> Result<(), ApplyError> {
        if self.range.contains(key) {
            Ok(())
        } else {
            Err(ApplyError::OutOfRange {
                group: self.group,
                key: key.to_vec(),
            })
        }
    }

    fn order(&mut self) -> u64 {
        self.next_order += 1;
        self.next_order
    }
}

/// Commands of [`KvApplication`]. Encoded with postcard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KvCommand {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    DeleteRange {
        start: Vec<u8>,
        end: Vec<u8>,
    },
    /// Reads the key as a decimal u64 (absent = 0), adds `by`, writes it
    /// back and replies with the new value: a read-modify-write that shows
    /// whether concurrent proposals were applied in one order.
    Add {
        key: Vec<u8>,
        by: u64,
    },
    /// Appends `suffix` to the key's value; replies with the new length.
    Append {
        key: Vec<u8>,
        suffix: Vec<u8>,
    },
}

impl KvCommand {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<KvCommand> {
        postcard::from_bytes(bytes).ok()
    }
}

/// Replies of [`KvApplication`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum KvReply {
    Done,
    Value(u64),
    /// The command was malformed or wrote outside the group.
    Refused(String),
}

impl KvReply {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Option<KvReply> {
        postcard::from_bytes(bytes).ok()
    }
}

/// A plain key-value application, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy)]
pub struct KvApplication;

impl Application for KvApplication {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Result<Vec<u8>, ApplyError> {
        let Some(command) = KvCommand::decode(command) else {
            return Ok(KvReply::Refused("malformed command".into()).encode());
        };
        let reply = match apply_kv(ctx, command) {
            Ok(reply) => reply,
            Err(ApplyError::OutOfRange { group, key }) => {
                KvReply::Refused(format!("key {key:?} is not in group {group}"))
            }
            Err(e) => return Err(e),
        };
        Ok(reply.encode())
    }
}

fn apply_kv(ctx: &mut ApplyContext<'_>, command: KvCommand) -> Result<KvReply, ApplyError> {
    match command {
        KvCommand::Put { key, value } => ctx.put(&key, &value).map(|()| KvReply::Done),
        KvCommand::Delete { key } => ctx.delete(&key).map(|()| KvReply::Done),
        KvCommand::DeleteRange { start, end } => {
            ctx.delete_range(&start, &end).map(|()| KvReply::Done)
        }
        KvCommand::Add { key, by } => {
            let current = ctx
                .get(&key)?
                .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
                .unwrap_or(0);
            let next = current.wrapping_add(by);
            ctx.put(&key, next.to_string().as_bytes())?;
            Ok(KvReply::Value(next))
        }
        KvCommand::Append { key, suffix } => {
            let mut value = ctx.get(&key)?.unwrap_or_default();
            value.extend_from_slice(&suffix);
            ctx.put(&key, &value)?;
            Ok(KvReply::Value(value.len() as u64))
        }
    }
}
