//! Running a command: a pure function of the command, the state it reads
//! and the time it is given. No clock, no I/O; the caller applies the
//! mutations (one atomic batch) and sends the reply.

use std::collections::BTreeMap;
use std::num::NonZeroU64;

use super::error::{ExecError, STRING_MAX_BYTES, StateError};
use super::number::{format_f64, parse_f64, parse_i64};
use super::parse::{Command, ExpireCondition, Expiry, GetExTtl, SetCondition, SetTtl};
use super::value::{StoredValue, Value};
use crate::resp::Frame;

/// Read access to the current state: the value stored under a key, whether
/// or not it has expired ([`execute`] decides that, from its `now_ms`).
pub trait ReadState {
    fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StateError>;
}

/// One write to apply. All of a command's mutations form one atomic batch;
/// each key appears at most once, in key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    Put { key: Vec<u8>, value: StoredValue },
    Delete { key: Vec<u8> },
}

/// What a command did: the reply for the client and the writes to apply.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub reply: Frame,
    /// Empty for every read command (see [`Command::is_write`]).
    pub mutations: Vec<Mutation>,
}

/// Runs `cmd` against `state` at `now_ms` (Unix milliseconds).
///
/// A key whose expiry is `<= now_ms` is gone: reads do not see it, and a
/// write that meets it treats it as missing and deletes it (or overwrites
/// it), as Redis's lazy expiry does on a primary. Read commands never
/// mutate, so they can be served without the Raft log.
///
/// Deterministic: the same command, state and `now_ms` give the same
/// outcome. Under replication, give every replica the leader's `now_ms`
/// (see [`Command::stamp`]).
pub fn execute(cmd: &Command, state: &dyn ReadState, now_ms: u64) -> Result<Outcome, ExecError> {
    let mut tx = Tx {
        state,
        now_ms,
        writes: BTreeMap::new(),
    };
    let reply = run(cmd, &mut tx)?;
    Ok(tx.finish(reply))
}

/// `now_ms` as Redis's signed milliseconds (saturating: a clock past the
/// year 292 million is not a case to handle).
pub(crate) fn now_i64(now_ms: u64) -> i64 {
    i64::try_from(now_ms).unwrap_or(i64::MAX)
}

/// A command's view of the state: the stored values with its own writes on
/// top, so a multi-key command sees its earlier effects (`DEL k k` counts
/// once, `MSET k a k b` leaves `b`).
struct Tx<'a> {
    state: &'a dyn ReadState,
    now_ms: u64,
    /// Key -> new value (`None`: deleted).
    writes: BTreeMap<Vec<u8>, Option<StoredValue>>,
}

impl Tx<'_> {
    fn now(&self) -> i64 {
        now_i64(self.now_ms)
    }

    /// The live value of `key`, for a read: an expired value reads as none
    /// and is left alone.
    fn read(&self, key: &[u8]) -> Result<Option<StoredValue>, ExecError> {
        if let Some(written) = self.writes.get(key) {
            return Ok(written.clone());
        }
        let stored = self.state.get(key)?;
        Ok(stored.filter(|v| v.is_live(self.now_ms)))
    }

    /// The live value of `key`, for a write: an expired value reads as none
    /// and is deleted, unless the command overwrites it.
    fn read_for_write(&mut self, key: &[u8]) -> Result<Option<StoredValue>, ExecError> {
        if let Some(written) = self.writes.get(key) {
            return Ok(written.clone());
        }
        match self.state.get(key)? {
            Some(v) if v.is_live(self.now_ms) => Ok(Some(v)),
            Some(_) => {
                self.writes.insert(key.to_vec(), None);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Stores a string with an absolute expiry (Unix ms). An expiry at or
    /// before now deletes the key instead: the value would be gone at once.
    fn store(&mut self, key: &[u8], payload: Vec<u8>, expire_at_ms: Option<i64>) {
        let expire_at_ms = match expire_at_ms {
            None => None,
            Some(at) if at > self.now() => u64::try_from(at).ok().and_then(NonZeroU64::new),
            Some(_) => return self.delete(key),
        };
        let value = StoredValue {
            value: Value::String(payload),
            expire_at_ms,
        };
        self.writes.insert(key.to_vec(), Some(value));
    }

    fn delete(&mut self, key: &[u8]) {
        self.writes.insert(key.to_vec(), None);
    }

    fn finish(self, reply: Frame) -> Outcome {
        let mutations = self
            .writes
            .into_iter()
            .map(|(key, value)| match value {
                Some(value) => Mutation::Put { key, value },
                None => Mutation::Delete { key },
            })
            .collect();
        Outcome { reply, mutations }
    }
}

/// A string value's bytes and expiry (Unix ms). Every value is a string so
/// far; other types will answer WRONGTYPE here.
fn string(v: StoredValue) -> (Vec<u8>, Option<i64>) {
    let Value::String(bytes) = v.value;
    let expiry = v
        .expire_at_ms
        .map(|at| i64::try_from(at.get()).unwrap_or(i64::MAX));
    (bytes, expiry)
}

fn bulk_or_null(v: Option<StoredValue>) -> Frame {
    v.map_or(Frame::NullBulk, |v| Frame::Bulk(string(v).0))
}

fn ok() -> Frame {
    Frame::Simple(b"OK".to_vec())
}

fn int_frame(n: usize) -> Frame {
    Frame::Integer(i64::try_from(n).unwrap_or(i64::MAX))
}

fn run(cmd: &Command, tx: &mut Tx<'_>) -> Result<Frame, ExecError> {
    match cmd {
        Command::Get { key } => Ok(bulk_or_null(tx.read(key)?)),
        Command::Set {
            key,
            value,
            condition,
            ttl,
            get,
        } => set(tx, key, value, *condition, *ttl, *get),
        Command::SetNx { key, value } => {
            let set = tx.read_for_write(key)?.is_none();
            if set {
                tx.store(key, value.clone(), None);
            }
            Ok(Frame::Integer(i64::from(set)))
        }
        Command::SetEx {
            key,
            seconds,
            value,
        } => {
            let at = absolute(Expiry::Ex(*seconds), tx.now(), "setex")?;
            tx.store(key, value.clone(), Some(at));
            Ok(ok())
        }
        Command::PSetEx { key, ms, value } => {
            let at = absolute(Expiry::Px(*ms), tx.now(), "psetex")?;
            tx.store(key, value.clone(), Some(at));
            Ok(ok())
        }
        Command::GetSet { key, value } => {
            let old = tx.read_for_write(key)?;
            tx.store(key, value.clone(), None);
            Ok(bulk_or_null(old))
        }
        Command::GetDel { key } => {
            let old = tx.read_for_write(key)?;
            if old.is_some() {
                tx.delete(key);
            }
            Ok(bulk_or_null(old))
        }
        Command::GetEx { key, ttl } => getex(tx, key, *ttl),
        Command::MGet { keys } => {
            let values = keys.iter().map(|k| Ok(bulk_or_null(tx.read(k)?)));
            Ok(Frame::Array(values.collect::<Result<_, ExecError>>()?))
        }
        Command::MSet { pairs } => {
            for (key, value) in pairs {
                tx.store(key, value.clone(), None);
            }
            Ok(ok())
        }
        Command::MSetNx { pairs } => msetnx(tx, pairs),
        Command::Del { keys } | Command::Unlink { keys } => {
            let mut deleted = 0;
            for key in keys {
                if tx.read_for_write(key)?.is_some() {
                    tx.delete(key);
                    deleted += 1;
                }
            }
            Ok(int_frame(deleted))
        }
        Command::Exists { keys } => {
            let mut found = 0;
            for key in keys {
                found += usize::from(tx.read(key)?.is_some());
            }
            Ok(int_frame(found))
        }
        Command::Incr { key } => incr_by(tx, key, 1),
        Command::IncrBy { key, by } => incr_by(tx, key, *by),
        Command::Decr { key } => incr_by(tx, key, -1),
        Command::DecrBy { key, by } => {
            // Parsing refused i64::MIN, so the negation fits.
            incr_by(
                tx,
                key,
                by.checked_neg().ok_or(ExecError::IncrementOverflow)?,
            )
        }
        Command::IncrByFloat { key, by } => incr_by_float(tx, key, *by),
        Command::Append { key, value } => append(tx, key, value),
        Command::StrLen { key } => {
            let len = tx.read(key)?.map_or(0, |v| string(v).0.len());
            Ok(int_frame(len))
        }
        Command::GetRange { key, start, end } => {
            let bytes = tx.read(key)?.map(|v| string(v).0).unwrap_or_default();
            Ok(Frame::Bulk(get_range(&bytes, *start, *end).to_vec()))
        }
        Command::SetRange { key, offset, value } => set_range(tx, key, *offset, value),
        Command::Expire {
            key,
            seconds,
            condition,
        } => {
            // Parsing checked that seconds * 1000 fits.
            let ms = seconds.saturating_mul(1000);
            expire(tx, key, relative(ms, tx.now(), "expire")?, *condition)
        }
        Command::PExpire { key, ms, condition } => {
            expire(tx, key, relative(*ms, tx.now(), "pexpire")?, *condition)
        }
        Command::ExpireAt {
            key,
            unix_s,
            condition,
        } => expire(tx, key, unix_s.saturating_mul(1000), *condition),
        Command::PExpireAt {
            key,
            unix_ms,
            condition,
        } => expire(tx, key, *unix_ms, *condition),
        Command::Ttl { key } => ttl(tx, key, true),
        Command::PTtl { key } => ttl(tx, key, false),
        Command::Persist { key } => {
            let Some(v) = tx.read_for_write(key)? else {
                return Ok(Frame::Integer(0));
            };
            let (bytes, expiry) = string(v);
            if expiry.is_some() {
                tx.store(key, bytes, None);
            }
            Ok(Frame::Integer(i64::from(expiry.is_some())))
        }
        Command::Type { key } => {
            let name = if tx.read(key)?.is_some() {
                "string"
            } else {
                "none"
            };
            Ok(Frame::Simple(name.as_bytes().to_vec()))
        }
        Command::Ping { message: None } => Ok(Frame::Simple(b"PONG".to_vec())),
        Command::Ping { message: Some(m) } | Command::Echo { message: m } => {
            Ok(Frame::Bulk(m.clone()))
        }
    }
}

/// `now + ms`, or Redis's "invalid expire time" if it overflows.
fn relative(ms: i64, now: i64, command: &'static str) -> Result<i64, ExecError> {
    ms.checked_add(now)
        .ok_or(ExecError::InvalidExpireTime { command })
}

/// An expiry's absolute time in Unix ms. Parsing checked it is positive and
/// that seconds fit in milliseconds; only adding now can overflow.
fn absolute(e: Expiry, now: i64, command: &'static str) -> Result<i64, ExecError> {
    match e {
        Expiry::Ex(s) => relative(s.saturating_mul(1000), now, command),
        Expiry::Px(ms) => relative(ms, now, command),
        Expiry::ExAt(s) => Ok(s.saturating_mul(1000)),
        Expiry::PxAt(ms) => Ok(ms),
    }
}

/// SET, as Redis 7's `setGenericCommand`: the expiry is checked before the
/// key is looked at; with GET the reply is the old value whether or not the
/// condition let the write happen.
fn set(
    tx: &mut Tx<'_>,
    key: &[u8],
    value: &[u8],
    condition: SetCondition,
    ttl: SetTtl,
    get: bool,
) -> Result<Frame, ExecError> {
    let new_expiry = match ttl {
        SetTtl::Expire(e) => Some(absolute(e, tx.now(), "set")?),
        SetTtl::Clear | SetTtl::Keep => None,
    };
    let old = tx.read_for_write(key)?;
    let allowed = match condition {
        SetCondition::Always => true,
        SetCondition::IfMissing => old.is_none(),
        SetCondition::IfExists => old.is_some(),
    };
    if allowed {
        let expiry = match ttl {
            SetTtl::Keep => old.clone().and_then(|v| string(v).1),
            SetTtl::Clear | SetTtl::Expire(_) => new_expiry,
        };
        tx.store(key, value.to_vec(), expiry);
    }
    Ok(match (get, allowed) {
        (true, _) => bulk_or_null(old),
        (false, true) => ok(),
        (false, false) => Frame::NullBulk,
    })
}

/// GETEX: the value, and its TTL changed as asked. An absolute time already
/// past deletes the key (the value is still returned).
fn getex(tx: &mut Tx<'_>, key: &[u8], ttl: GetExTtl) -> Result<Frame, ExecError> {
    let new_expiry = match ttl {
        GetExTtl::Expire(e) => Some(absolute(e, tx.now(), "getex")?),
        GetExTtl::Keep | GetExTtl::Persist => None,
    };
    let Some(old) = tx.read_for_write(key)? else {
        return Ok(Frame::NullBulk);
    };
    let (bytes, expiry) = string(old);
    match ttl {
        GetExTtl::Keep => {}
        GetExTtl::Persist if expiry.is_none() => {}
        GetExTtl::Persist | GetExTtl::Expire(_) => tx.store(key, bytes.clone(), new_expiry),
    }
    Ok(Frame::Bulk(bytes))
}

fn msetnx(tx: &mut Tx<'_>, pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<Frame, ExecError> {
    let mut any_exists = false;
    for (key, _) in pairs {
        any_exists |= tx.read_for_write(key)?.is_some();
    }
    if any_exists {
        return Ok(Frame::Integer(0));
    }
    for (key, value) in pairs {
        tx.store(key, value.clone(), None);
    }
    Ok(Frame::Integer(1))
}

/// INCR, INCRBY, DECR, DECRBY: the value must read as a 64-bit integer
/// (a missing key is 0); the TTL is kept.
fn incr_by(tx: &mut Tx<'_>, key: &[u8], by: i64) -> Result<Frame, ExecError> {
    let (current, expiry) = match tx.read_for_write(key)? {
        None => (0, None),
        Some(v) => {
            let (bytes, expiry) = string(v);
            (parse_i64(&bytes).ok_or(ExecError::NotAnInteger)?, expiry)
        }
    };
    let next = current
        .checked_add(by)
        .ok_or(ExecError::IncrementOverflow)?;
    tx.store(key, next.to_string().into_bytes(), expiry);
    Ok(Frame::Integer(next))
}

/// INCRBYFLOAT: the value must read as a float (a missing key is 0), the
/// result must be finite; it is stored in the form it is replied in, and
/// the TTL is kept.
fn incr_by_float(tx: &mut Tx<'_>, key: &[u8], by: f64) -> Result<Frame, ExecError> {
    let (current, expiry) = match tx.read_for_write(key)? {
        None => (0.0, None),
        Some(v) => {
            let (bytes, expiry) = string(v);
            (parse_f64(&bytes).ok_or(ExecError::NotAFloat)?, expiry)
        }
    };
    let next = current + by;
    if !next.is_finite() {
        return Err(ExecError::NanOrInfinity);
    }
    let text = format_f64(next);
    tx.store(key, text.clone(), expiry);
    Ok(Frame::Bulk(text))
}

/// Whether a string of `len` bytes is within [`STRING_MAX_BYTES`].
fn check_len(len: u64) -> Result<(), ExecError> {
    if len > STRING_MAX_BYTES {
        return Err(ExecError::StringTooLong);
    }
    Ok(())
}

fn append(tx: &mut Tx<'_>, key: &[u8], value: &[u8]) -> Result<Frame, ExecError> {
    let (mut bytes, expiry) = match tx.read_for_write(key)? {
        None => (Vec::new(), None),
        Some(v) => {
            let (bytes, expiry) = string(v);
            check_len(len_u64(bytes.len()).saturating_add(len_u64(value.len())))?;
            (bytes, expiry)
        }
    };
    bytes.extend_from_slice(value);
    let len = bytes.len();
    tx.store(key, bytes, expiry);
    Ok(int_frame(len))
}

fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// GETRANGE as Redis 7.x: negative indexes count from the end, both ends
/// are clamped into the string, and an empty range gives an empty string.
fn get_range(bytes: &[u8], start: i64, end: i64) -> &[u8] {
    let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    if (start < 0 && end < 0 && start > end) || len == 0 {
        return &[];
    }
    let from_end = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let start = from_end(start);
    let end = from_end(end).min(len - 1);
    if start > end {
        return &[];
    }
    let (Ok(start), Ok(end)) = (usize::try_from(start), usize::try_from(end)) else {
        return &[];
    };
    bytes.get(start..=end).unwrap_or(&[])
}

/// SETRANGE: overwrite from `offset`, padding with zero bytes. Writing
/// nothing changes nothing (and creates no key).
fn set_range(tx: &mut Tx<'_>, key: &[u8], offset: i64, value: &[u8]) -> Result<Frame, ExecError> {
    let old = tx.read_for_write(key)?;
    let (mut bytes, expiry) = old.map(string).unwrap_or_default();
    if value.is_empty() {
        return Ok(int_frame(bytes.len()));
    }
    let offset = u64::try_from(offset).unwrap_or(u64::MAX);
    check_len(offset.saturating_add(len_u64(value.len())))?;
    // Within 512 MiB, so these fit in usize.
    let start = usize::try_from(offset).map_err(|_| ExecError::StringTooLong)?;
    let end = start + value.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    if let Some(target) = bytes.get_mut(start..end) {
        target.copy_from_slice(value);
    }
    let len = bytes.len();
    tx.store(key, bytes, expiry);
    Ok(int_frame(len))
}

/// EXPIRE and kin, as Redis 7's `expireGenericCommand`, with `when` the
/// new absolute expiry in Unix ms. 1 if the TTL was set (or the key
/// deleted because `when` is not in the future), 0 if the key is missing
/// or the condition refused.
fn expire(tx: &mut Tx<'_>, key: &[u8], when: i64, c: ExpireCondition) -> Result<Frame, ExecError> {
    let Some(v) = tx.read_for_write(key)? else {
        return Ok(Frame::Integer(0));
    };
    let (bytes, current) = string(v);
    let refused = (c.nx && current.is_some())
        || (c.xx && current.is_none())
        || (c.gt && current.is_none_or(|cur| when <= cur))
        || (c.lt && current.is_some_and(|cur| when >= cur));
    if refused {
        return Ok(Frame::Integer(0));
    }
    tx.store(key, bytes, Some(when));
    Ok(Frame::Integer(1))
}

/// TTL (seconds, rounded to nearest as Redis does) or PTTL: -2 for a
/// missing key, -1 for one without expiry.
fn ttl(tx: &Tx<'_>, key: &[u8], seconds: bool) -> Result<Frame, ExecError> {
    let Some(v) = tx.read(key)? else {
        return Ok(Frame::Integer(-2));
    };
    let Some(at) = string(v).1 else {
        return Ok(Frame::Integer(-1));
    };
    let ms = at.saturating_sub(tx.now()).max(0);
    Ok(Frame::Integer(if seconds {
        ms.saturating_add(500) / 1000
    } else {
        ms
    }))
}
