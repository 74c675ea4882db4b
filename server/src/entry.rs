//! What the server puts in the Raft log, and what comes back.
//!
//! A data group's entry is a [`DataEntry`]: the client's commands as sent
//! (arguments, not yet stamped) with the leader's clock, so every replica
//! parses, stamps and executes them identically (see `app`). A MULTI/EXEC
//! block, with its WATCHed values, is one entry: atomic by construction.
//! The meta group's entries are [`MetaCommand`]s on the cluster map. All
//! are postcard; a reply is a [`Frame`] in postcard too (RESP would blur
//! RESP2's null bulk and null array).

use serde::{Deserialize, Serialize};

use crate::resp::Frame;

/// A client request's arguments, name first.
pub type Args = Vec<Vec<u8>>;

/// A WATCHed key and the stored bytes it had when watched (`None`: absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watch {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// One entry of a data group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DataEntry {
    /// Commands whose keys all hash to `slot`, run in order at the leader's
    /// `now_ms` (raised to the group clock). With `transaction`, the reply
    /// is an array of each command's reply (EXEC), or a null array if a
    /// watched value changed; otherwise there is one command and its reply.
    Exec {
        now_ms: u64,
        slot: u16,
        commands: Vec<Args>,
        watches: Vec<Watch>,
        transaction: bool,
    },
    /// Deletes every key of the group (FLUSHDB / FLUSHALL).
    Flush { now_ms: u64 },
    /// A connection's pipelined writes to one group, each `(slot, args)`
    /// with its keys in `slot`, run in order at the leader's `now_ms`. The
    /// reply is an array of each command's reply. Unlike a transaction, a
    /// command that fails does not stop the others; all share the entry's
    /// fate (committed together, deduplicated together).
    Batch {
        now_ms: u64,
        commands: Vec<(u16, Args)>,
    },
}

impl DataEntry {
    /// The leader's clock the entry carries.
    pub fn now_ms_mut(&mut self) -> &mut u64 {
        match self {
            DataEntry::Exec { now_ms, .. }
            | DataEntry::Flush { now_ms }
            | DataEntry::Batch { now_ms, .. } => now_ms,
        }
    }
}

/// One entry of the meta group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Replaces the cluster map (JSON) if the current one has epoch
    /// `expected_epoch`; the new one must have `expected_epoch + 1`.
    SetMap { expected_epoch: u64, map: Vec<u8> },
}

/// The meta group's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaReply {
    Done,
    /// The map has moved on: it now has this epoch.
    Conflict {
        epoch: u64,
    },
    /// The proposed map was refused.
    Invalid {
        reason: String,
    },
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("malformed entry: {e}"))
}

/// A reply frame as stored and sent between nodes.
pub fn encode_reply(frame: &Frame) -> Vec<u8> {
    encode(frame)
}

pub fn decode_reply(bytes: &[u8]) -> Frame {
    decode(bytes).unwrap_or_else(|e| Frame::Error(format!("ERR {e}").into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_replies_round_trip() {
        let entry = DataEntry::Exec {
            now_ms: 7,
            slot: 12182,
            commands: vec![vec![b"SET".to_vec(), b"foo".to_vec(), b"1".to_vec()]],
            watches: vec![Watch {
                key: b"foo".to_vec(),
                value: None,
            }],
            transaction: true,
        };
        assert_eq!(decode::<DataEntry>(&encode(&entry)).unwrap(), entry);
        let batch = DataEntry::Batch {
            now_ms: 9,
            commands: vec![(3, vec![b"INCR".to_vec(), b"a".to_vec()])],
        };
        assert_eq!(decode::<DataEntry>(&encode(&batch)).unwrap(), batch);
        for frame in [
            Frame::NullArray,
            Frame::NullBulk,
            Frame::Array(vec![Frame::Integer(1), Frame::Bulk(b"x".to_vec())]),
        ] {
            assert_eq!(decode_reply(&encode_reply(&frame)), frame);
        }
        assert!(matches!(decode_reply(b"\xff\xff"), Frame::Error(_)));
        assert!(decode::<DataEntry>(b"").is_err());
    }
}
