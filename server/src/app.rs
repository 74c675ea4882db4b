//! The state machine's meaning: how a committed entry changes the engine.
//!
//! Data groups run Redis commands (`command::execute`) against the
//! [`ApplyContext`], at the entry's time raised to the group's replicated
//! clock (`clock`); the meta group compare-and-sets the cluster map. Apply
//! is deterministic: it reads only the context and the entry.

use std::sync::Arc;

use cairn_replication::{Application, ApplyContext, ApplyError};
use tokio::sync::Notify;

use crate::clock::Clocks;
use crate::cluster::map::{ClusterMap, META_GROUP, META_MAP_KEY};
use crate::command::{Command, Mutation, ReadState, StateError, StoredValue, Value, execute};
use crate::entry::{self, DataEntry, MetaCommand, MetaReply, Watch};
use crate::resp::Frame;
use crate::slot::{clock_key, data_key, key_slot, slot_keys_end, slot_keys_start};

/// The server's [`Application`].
pub struct ServerApp {
    clocks: Arc<Clocks>,
    /// Woken after every applied meta entry.
    pub meta_changed: Arc<Notify>,
}

impl ServerApp {
    pub fn new(clocks: Arc<Clocks>) -> Arc<ServerApp> {
        Arc::new(ServerApp {
            clocks,
            meta_changed: Arc::new(Notify::new()),
        })
    }
}

/// The first and last slot of a data group's key range.
pub fn range_slots(ctx: &ApplyContext<'_>) -> Option<(u16, u16)> {
    let range = ctx.range();
    let first = u16::from_be_bytes(range.start.get(..2)?.try_into().ok()?);
    let end = u16::from_be_bytes(range.end.get(..2)?.try_into().ok()?);
    Some((first, end.checked_sub(1)?))
}

impl Application for ServerApp {
    fn apply(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Result<Vec<u8>, ApplyError> {
        if ctx.group() == META_GROUP {
            let reply = apply_meta(ctx, command)?;
            self.meta_changed.notify_waiters();
            return Ok(entry::encode(&reply));
        }
        let reply = self.apply_data(ctx, command)?;
        Ok(entry::encode_reply(&reply))
    }
}

fn engine(e: impl std::fmt::Display) -> ApplyError {
    ApplyError::Engine(e.to_string())
}

fn apply_meta(ctx: &mut ApplyContext<'_>, command: &[u8]) -> Result<MetaReply, ApplyError> {
    let MetaCommand::SetMap {
        expected_epoch,
        map,
    } = match entry::decode::<MetaCommand>(command) {
        Ok(c) => c,
        Err(reason) => return Ok(MetaReply::Invalid { reason }),
    };
    let current = match ctx.get(META_MAP_KEY)? {
        None => 0,
        // A stored map that no longer decodes is a corrupt engine: stop.
        Some(bytes) => ClusterMap::decode(&bytes).map_err(engine)?.epoch,
    };
    if current != expected_epoch {
        return Ok(MetaReply::Conflict { epoch: current });
    }
    let new = match ClusterMap::decode(&map) {
        Ok(new) => new,
        Err(e) => return Ok(MetaReply::Invalid { reason: e.0 }),
    };
    if new.epoch != expected_epoch + 1 {
        return Ok(MetaReply::Invalid {
            reason: format!(
                "a map replacing epoch {expected_epoch} must have epoch {}, not {}",
                expected_epoch + 1,
                new.epoch
            ),
        });
    }
    ctx.put(META_MAP_KEY, &map)?;
    Ok(MetaReply::Done)
}

/// Reads user keys of `slot` through the apply context. A failed engine
/// read is kept in `failed` so apply can stop with it.
struct CtxState<'c, 'a> {
    ctx: &'c ApplyContext<'a>,
    slot: u16,
    failed: std::cell::RefCell<Option<ApplyError>>,
}

impl ReadState for CtxState<'_, '_> {
    fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateError> {
        let engine_key = data_key(self.slot, key);
        let bytes = match self.ctx.get(&engine_key) {
            Ok(bytes) => bytes,
            Err(e) => {
                let message = e.to_string();
                *self.failed.borrow_mut() = Some(e);
                return Err(StateError::Engine(cairn_engine::Error::InvalidArgument(
                    message,
                )));
            }
        };
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        StoredValue::decode(&bytes)
            .map(Some)
            .map_err(|error| StateError::Corrupt {
                key: key.to_vec(),
                error,
            })
    }
}

impl ServerApp {
    fn apply_data(&self, ctx: &mut ApplyContext<'_>, command: &[u8]) -> Result<Frame, ApplyError> {
        let Some((first, last)) = range_slots(ctx) else {
            return Err(engine(format!(
                "group {} has a key range that is not a slot range",
                ctx.group()
            )));
        };
        let mut entry = match entry::decode::<DataEntry>(command) {
            Ok(entry) => entry,
            Err(e) => return Ok(Frame::Error(format!("ERR {e}").into_bytes())),
        };
        let stamp = *entry.now_ms_mut();
        let clock_key = clock_key(first);
        let clock = match ctx.get(&clock_key)? {
            None => 0,
            Some(bytes) => u64::from_le_bytes(
                bytes
                    .as_slice()
                    .try_into()
                    .map_err(|_| engine(format!("group {} clock is corrupt", ctx.group())))?,
            ),
        };
        let now = stamp.max(clock);
        if now > clock {
            ctx.put(&clock_key, &now.to_le_bytes())?;
            self.clocks.advance(first, now);
        }
        match entry {
            DataEntry::Flush { .. } => {
                ctx.delete_range(&slot_keys_start(first), &slot_keys_end(last))?;
                Ok(Frame::Simple(b"OK".to_vec()))
            }
            DataEntry::Exec {
                slot,
                commands,
                watches,
                transaction,
                ..
            } => {
                if !(first..=last).contains(&slot) {
                    return Ok(Frame::Error(
                        format!("ERR slot {slot} is not in group {}", ctx.group()).into_bytes(),
                    ));
                }
                if !watches_hold(ctx, slot, &watches, now)? {
                    return Ok(Frame::NullArray);
                }
                let mut replies = Vec::with_capacity(commands.len());
                for args in commands {
                    replies.push(run_one(ctx, slot, args, now)?);
                }
                if transaction {
                    Ok(Frame::Array(replies))
                } else {
                    Ok(replies.pop().unwrap_or(Frame::NullArray))
                }
            }
            DataEntry::Batch { commands, .. } => {
                let mut replies = Vec::with_capacity(commands.len());
                for (slot, args) in commands {
                    replies.push(if (first..=last).contains(&slot) {
                        run_one(ctx, slot, args, now)?
                    } else {
                        Frame::Error(
                            format!("ERR slot {slot} is not in group {}", ctx.group()).into_bytes(),
                        )
                    });
                }
                Ok(Frame::Array(replies))
            }
        }
    }
}

/// Whether every WATCHed key still has the value it had when watched.
/// Both sides are the *live* view (an expired value counts as absent, at
/// this entry's time): a replica whose compaction already dropped an
/// expired key decides exactly as one that still holds it.
fn watches_hold(
    ctx: &ApplyContext<'_>,
    slot: u16,
    watches: &[Watch],
    now: u64,
) -> Result<bool, ApplyError> {
    for watch in watches {
        if key_slot(&watch.key) != slot {
            return Ok(false);
        }
        let current = live(ctx.get(&data_key(slot, &watch.key))?, now);
        if current != live(watch.value.clone(), now) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stored bytes, or `None` when absent or expired at `now`.
pub fn live(stored: Option<Vec<u8>>, now: u64) -> Option<Vec<u8>> {
    stored.filter(|bytes| {
        StoredValue::peek_expire_at(bytes)
            .map(|at| at.is_none_or(|at| at.get() > now))
            .unwrap_or(true)
    })
}

/// Largest user key a command may write (the engine's 64 KiB key bound,
/// less the slot prefix). Checked at apply, before the engine could refuse
/// a write and stop the group.
pub const MAX_KEY_BYTES: usize = (64 << 10) - 3;

/// Largest stored value a command may write. Well under the log entry and
/// RPC bounds (64 MiB) so a value always replicates and snapshots.
pub const MAX_VALUE_BYTES: usize = 32 << 20;

/// Runs one command; its errors (syntax, wrong type) are its reply.
fn run_one(
    ctx: &mut ApplyContext<'_>,
    slot: u16,
    args: Vec<Vec<u8>>,
    now: u64,
) -> Result<Frame, ApplyError> {
    let command = match Command::parse(args) {
        Ok(c) => c.stamp(now),
        Err(e) => return Ok(Frame::Error(e.to_redis_error())),
    };
    if command.keys().iter().any(|k| key_slot(k) != slot) {
        return Ok(Frame::Error(
            b"CROSSSLOT Keys in request don't hash to the same slot".to_vec(),
        ));
    }
    let (outcome, failed) = {
        let state = CtxState {
            ctx,
            slot,
            failed: std::cell::RefCell::new(None),
        };
        let outcome = execute(&command, &state, now);
        (outcome, state.failed.into_inner())
    };
    if let Some(e) = failed {
        return Err(e);
    }
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(e) => return Ok(Frame::Error(e.to_redis_error())),
    };
    // A write the engine would refuse must be refused here, as a reply:
    // an engine error at apply would stop the group on every replica.
    for mutation in &outcome.mutations {
        if let Mutation::Put { key, value } = mutation {
            if key.len() > MAX_KEY_BYTES {
                return Ok(Frame::Error(
                    format!("ERR key longer than {MAX_KEY_BYTES} bytes").into_bytes(),
                ));
            }
            let Value::String(payload) = &value.value;
            if payload.len() > MAX_VALUE_BYTES {
                return Ok(Frame::Error(
                    format!("ERR string exceeds maximum allowed size ({MAX_VALUE_BYTES} bytes)")
                        .into_bytes(),
                ));
            }
        }
    }
    for mutation in outcome.mutations {
        match mutation {
            Mutation::Put { key, value } => ctx.put(&data_key(slot, &key), &value.encode())?,
            Mutation::Delete { key } => ctx.delete(&data_key(slot, &key))?,
        }
    }
    Ok(outcome.reply)
}
