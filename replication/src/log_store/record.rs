//! Encodes and decodes the records of a Raft log segment.
//!
//! Each record is the payload of one engine record-log record (the engine
//! adds the framing: crc32 fragments in 32 KiB blocks and a durable
//! watermark). Layout, all integers little endian (see `docs/format.md`,
//! "Raft log segment"):
//!
//! ```text
//! record       = kind u8 | group u64 | body
//! ENTRIES   1  body = first_index u64 | count u32 | { len u32 | postcard(Entry) [len] } * count
//!                     (entry i has index first_index + i)
//! VOTE      2  body = vote
//! COMMITTED 3  body = opt<log_id>
//! TRUNCATE  4  body = since_index u64 | opt<log_id> last_after
//!                     (entries with index >= since_index are removed)
//! PURGE     5  body = log_id (entries with index <= log_id.index are removed)
//! REMOVE    6  body = (empty)  the group and all its state are forgotten
//! CHECKPOINT 7 group = 0; body = count u32 | { group u64 | meta } * count
//!                     (the state of every group; the first record of
//!                     every segment)
//! meta         = opt<vote> | opt<log_id> committed | opt<log_id> purged | opt<log_id> last
//! vote         = term u64 | node_id u64 | committed u8 (0 or 1)
//! log_id       = term u64 | node_id u64 | index u64
//! opt<x>       = 0 u8 | 1 u8 x
//! ```
//!
//! Decoding never panics and never trusts a count or length before checking
//! it against the bytes left.

use crate::types::{Entry, GroupId, LogId, Vote};
use openraft::CommittedLeaderId;

/// Record kinds. Do not change: on disk.
pub(crate) const KIND_ENTRIES: u8 = 1;
pub(crate) const KIND_VOTE: u8 = 2;
pub(crate) const KIND_COMMITTED: u8 = 3;
pub(crate) const KIND_TRUNCATE: u8 = 4;
pub(crate) const KIND_PURGE: u8 = 5;
pub(crate) const KIND_REMOVE_GROUP: u8 = 6;
pub(crate) const KIND_CHECKPOINT: u8 = 7;

/// `kind u8 | group u64`.
pub(crate) const RECORD_HEADER_BYTES: usize = 9;
/// `first_index u64 | count u32`.
const ENTRIES_HEADER_BYTES: usize = 12;
/// Smallest encoded checkpoint item: group and four absent options.
const CHECKPOINT_ITEM_BYTES_MIN: usize = 12;

/// What a group's state is apart from its entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GroupMeta {
    pub(crate) vote: Option<Vote>,
    pub(crate) committed: Option<LogId>,
    pub(crate) purged: Option<LogId>,
    /// The last log id: of the last entry, or `purged` when there is none.
    pub(crate) last: Option<LogId>,
}

/// One decoded record.
#[derive(Debug)]
pub(crate) enum Record {
    Entries {
        group: GroupId,
        first_index: u64,
        entries: Vec<Entry>,
        /// Encoded size of each entry.
        sizes: Vec<u32>,
    },
    Vote {
        group: GroupId,
        vote: Vote,
    },
    Committed {
        group: GroupId,
        committed: Option<LogId>,
    },
    Truncate {
        group: GroupId,
        since: u64,
        last_after: Option<LogId>,
    },
    Purge {
        group: GroupId,
        upto: LogId,
    },
    RemoveGroup {
        group: GroupId,
    },
    Checkpoint {
        groups: Vec<(GroupId, GroupMeta)>,
    },
}

fn header(kind: u8, group: GroupId, body_bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(RECORD_HEADER_BYTES + body_bytes);
    out.push(kind);
    out.extend_from_slice(&group.to_le_bytes());
    out
}

fn put_log_id(out: &mut Vec<u8>, log_id: &LogId) {
    out.extend_from_slice(&log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&log_id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&log_id.index.to_le_bytes());
}

fn put_opt_log_id(out: &mut Vec<u8>, log_id: Option<&LogId>) {
    match log_id {
        None => out.push(0),
        Some(log_id) => {
            out.push(1);
            put_log_id(out, log_id);
        }
    }
}

fn put_vote(out: &mut Vec<u8>, vote: &Vote) {
    out.extend_from_slice(&vote.leader_id.term.to_le_bytes());
    out.extend_from_slice(&vote.leader_id.node_id.to_le_bytes());
    out.push(u8::from(vote.committed));
}

/// Encodes one entry for an ENTRIES record (postcard); the caller bounds
/// its size.
pub(crate) fn encode_entry(entry: &Entry) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(entry).map_err(|e| format!("cannot encode entry {}: {e}", entry.log_id))
}

/// An ENTRIES record from entries already encoded with [`encode_entry`].
/// REQUIRES: `encoded` holds consecutive entries starting at `first_index`.
pub(crate) fn entries_record(group: GroupId, first_index: u64, encoded: &[Vec<u8>]) -> Vec<u8> {
    let body: usize = encoded.iter().map(|e| 4 + e.len()).sum::<usize>() + ENTRIES_HEADER_BYTES;
    let mut out = header(KIND_ENTRIES, group, body);
    out.extend_from_slice(&first_index.to_le_bytes());
    out.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
    for entry in encoded {
        out.extend_from_slice(&(entry.len() as u32).to_le_bytes());
        out.extend_from_slice(entry);
    }
    out
}

pub(crate) fn vote_record(group: GroupId, vote: &Vote) -> Vec<u8> {
    let mut out = header(KIND_VOTE, group, 17);
    put_vote(&mut out, vote);
    out
}

pub(crate) fn committed_record(group: GroupId, committed: Option<&LogId>) -> Vec<u8> {
    let mut out = header(KIND_COMMITTED, group, 25);
    put_opt_log_id(&mut out, committed);
    out
}

pub(crate) fn truncate_record(group: GroupId, since: u64, last_after: Option<&LogId>) -> Vec<u8> {
    let mut out = header(KIND_TRUNCATE, group, 33);
    out.extend_from_slice(&since.to_le_bytes());
    put_opt_log_id(&mut out, last_after);
    out
}

pub(crate) fn purge_record(group: GroupId, upto: &LogId) -> Vec<u8> {
    let mut out = header(KIND_PURGE, group, 24);
    put_log_id(&mut out, upto);
    out
}

pub(crate) fn remove_group_record(group: GroupId) -> Vec<u8> {
    header(KIND_REMOVE_GROUP, group, 0)
}

pub(crate) fn checkpoint_record<'a>(
    groups: impl ExactSizeIterator<Item = (GroupId, &'a GroupMeta)>,
) -> Vec<u8> {
    let count = groups.len();
    let mut out = header(KIND_CHECKPOINT, 0, 4 + count * 60);
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for (group, meta) in groups {
        out.extend_from_slice(&group.to_le_bytes());
        match &meta.vote {
            None => out.push(0),
            Some(vote) => {
                out.push(1);
                put_vote(&mut out, vote);
            }
        }
        put_opt_log_id(&mut out, meta.committed.as_ref());
        put_opt_log_id(&mut out, meta.purged.as_ref());
        put_opt_log_id(&mut out, meta.last.as_ref());
    }
    out
}

/// Reads fields off a byte slice; every read is bounds checked.
struct Decoder<'a> {
    buf: &'a [u8],
}

impl<'a> Decoder<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.buf.len() < n {
            return Err(format!(
                "{what}: needs {n} bytes, {} left in the record",
                self.buf.len()
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        let bytes = self.take(1, what)?;
        Ok(bytes.first().copied().unwrap_or_default())
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut out = [0u8; 4];
        out.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(out))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let mut out = [0u8; 8];
        out.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(out))
    }

    fn flag(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("{what}: flag byte {other} is neither 0 nor 1")),
        }
    }

    fn log_id(&mut self, what: &str) -> Result<LogId, String> {
        let term = self.u64(what)?;
        let node_id = self.u64(what)?;
        let index = self.u64(what)?;
        Ok(LogId::new(CommittedLeaderId::new(term, node_id), index))
    }

    fn opt_log_id(&mut self, what: &str) -> Result<Option<LogId>, String> {
        if self.flag(what)? {
            Ok(Some(self.log_id(what)?))
        } else {
            Ok(None)
        }
    }

    fn vote(&mut self, what: &str) -> Result<Vote, String> {
        let term = self.u64(what)?;
        let node_id = self.u64(what)?;
        Ok(if self.flag(what)? {
            Vote::new_committed(term, node_id)
        } else {
            Vote::new(term, node_id)
        })
    }

    fn finish(&self, what: &str) -> Result<(), String> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{what}: {} unexpected bytes after the record",
                self.buf.len()
            ))
        }
    }
}

/// Decodes one record. Errors say what is wrong; the caller adds the file
/// and offset.
pub(crate) fn decode(payload: &[u8]) -> Result<Record, String> {
    let mut d = Decoder { buf: payload };
    let kind = d.u8("record kind")?;
    let group = d.u64("record group")?;
    let record = match kind {
        KIND_ENTRIES => {
            let (first_index, entries, sizes) = decode_entries_body(&mut d, None)?;
            Record::Entries {
                group,
                first_index,
                entries,
                sizes,
            }
        }
        KIND_VOTE => Record::Vote {
            group,
            vote: d.vote("vote")?,
        },
        KIND_COMMITTED => Record::Committed {
            group,
            committed: d.opt_log_id("committed")?,
        },
        KIND_TRUNCATE => Record::Truncate {
            group,
            since: d.u64("truncate index")?,
            last_after: d.opt_log_id("truncate last")?,
        },
        KIND_PURGE => Record::Purge {
            group,
            upto: d.log_id("purge")?,
        },
        KIND_REMOVE_GROUP => Record::RemoveGroup { group },
        KIND_CHECKPOINT => Record::Checkpoint {
            groups: decode_checkpoint_body(&mut d)?,
        },
        other => return Err(format!("unknown record kind {other}")),
    };
    d.finish("record")?;
    Ok(record)
}

/// Decodes the entries of an ENTRIES record. With `only = Some(index)`,
/// skips every other entry without decoding it and returns just that one.
type EntriesBody = (u64, Vec<Entry>, Vec<u32>);

fn decode_entries_body(d: &mut Decoder<'_>, only: Option<u64>) -> Result<EntriesBody, String> {
    let first_index = d.u64("entries first index")?;
    let count = d.u32("entries count")? as usize;
    // Each entry takes at least its 4-byte length: bound before allocating.
    if count > d.buf.len() / 4 {
        return Err(format!(
            "entries count {count} exceeds what {} bytes can hold",
            d.buf.len()
        ));
    }
    if first_index.checked_add(count as u64).is_none() {
        return Err(format!("entries index {first_index} + {count} overflows"));
    }
    let capacity = if only.is_some() { 1 } else { count };
    let mut entries = Vec::with_capacity(capacity);
    let mut sizes = Vec::with_capacity(capacity);
    for i in 0..count as u64 {
        let len = d.u32("entry length")? as usize;
        let bytes = d.take(len, "entry")?;
        let index = first_index + i;
        if only.is_some_and(|wanted| wanted != index) {
            continue;
        }
        let entry: Entry = postcard::from_bytes(bytes)
            .map_err(|e| format!("entry {index} does not decode: {e}"))?;
        if entry.log_id.index != index {
            return Err(format!(
                "entry at position {i} has index {}, expected {index}",
                entry.log_id.index
            ));
        }
        entries.push(entry);
        sizes.push(len as u32);
    }
    Ok((first_index, entries, sizes))
}

fn decode_checkpoint_body(d: &mut Decoder<'_>) -> Result<Vec<(GroupId, GroupMeta)>, String> {
    let count = d.u32("checkpoint count")? as usize;
    if count > d.buf.len() / CHECKPOINT_ITEM_BYTES_MIN {
        return Err(format!(
            "checkpoint count {count} exceeds what {} bytes can hold",
            d.buf.len()
        ));
    }
    let mut groups = Vec::with_capacity(count);
    for _ in 0..count {
        let group = d.u64("checkpoint group")?;
        let vote = if d.flag("checkpoint vote")? {
            Some(d.vote("checkpoint vote")?)
        } else {
            None
        };
        let meta = GroupMeta {
            vote,
            committed: d.opt_log_id("checkpoint committed")?,
            purged: d.opt_log_id("checkpoint purged")?,
            last: d.opt_log_id("checkpoint last")?,
        };
        groups.push((group, meta));
    }
    Ok(groups)
}

/// Decodes the entry with index `index` from an ENTRIES record of `group`
/// read back from a sealed segment, checking the record is what the index
/// said it is.
pub(crate) fn entry_from_record(
    payload: &[u8],
    group: GroupId,
    index: u64,
) -> Result<Entry, String> {
    let mut d = Decoder { buf: payload };
    let kind = d.u8("record kind")?;
    let found = d.u64("record group")?;
    if kind != KIND_ENTRIES || found != group {
        return Err(format!(
            "expected an entries record of group {group}, found kind {kind} of group {found}"
        ));
    }
    let (_, mut entries, _) = decode_entries_body(&mut d, Some(index))?;
    d.finish("entries record")?;
    entries
        .pop()
        .ok_or_else(|| format!("entries record of group {group} does not hold index {index}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Request, RequestBatch};
    use openraft::{EntryPayload, Membership};
    use std::collections::BTreeSet;

    fn log_id(term: u64, node: u64, index: u64) -> LogId {
        LogId::new(CommittedLeaderId::new(term, node), index)
    }

    fn entries(first: u64, n: u64) -> Vec<Entry> {
        (first..first + n)
            .map(|i| Entry {
                log_id: log_id(3, 1, i),
                payload: match i % 3 {
                    0 => EntryPayload::Blank,
                    1 => EntryPayload::Normal(RequestBatch {
                        requests: vec![Request {
                            client_id: i,
                            serial: 2,
                            command: vec![i as u8; i as usize],
                        }],
                    }),
                    _ => EntryPayload::Membership(Membership::new(
                        vec![BTreeSet::from([1, 2, 3])],
                        None,
                    )),
                },
            })
            .collect()
    }

    #[test]
    fn every_kind_roundtrips() {
        // Each record kind decodes to exactly what was encoded.
        let list = entries(7, 5);
        let encoded: Vec<Vec<u8>> = list.iter().map(|e| encode_entry(e).unwrap()).collect();
        match decode(&entries_record(9, 7, &encoded)).unwrap() {
            Record::Entries {
                group,
                first_index,
                entries,
                sizes,
            } => {
                assert_eq!((group, first_index), (9, 7));
                assert_eq!(entries, list);
                let expected: Vec<u32> = encoded.iter().map(|e| e.len() as u32).collect();
                assert_eq!(sizes, expected);
            }
            other => panic!("{other:?}"),
        }
        let vote = Vote::new_committed(5, 2);
        assert!(matches!(decode(&vote_record(1, &vote)).unwrap(),
            Record::Vote { group: 1, vote: v } if v == vote));
        assert!(matches!(
            decode(&committed_record(1, None)).unwrap(),
            Record::Committed {
                group: 1,
                committed: None
            }
        ));
        let id = log_id(4, 3, 99);
        assert!(matches!(decode(&committed_record(2, Some(&id))).unwrap(),
            Record::Committed { group: 2, committed: Some(c) } if c == id));
        assert!(
            matches!(decode(&truncate_record(2, 100, Some(&id))).unwrap(),
            Record::Truncate { group: 2, since: 100, last_after: Some(c) } if c == id)
        );
        assert!(matches!(decode(&purge_record(3, &id)).unwrap(),
            Record::Purge { group: 3, upto } if upto == id));
        assert!(matches!(
            decode(&remove_group_record(4)).unwrap(),
            Record::RemoveGroup { group: 4 }
        ));
        let metas = vec![
            (1, GroupMeta::default()),
            (
                2,
                GroupMeta {
                    vote: Some(vote),
                    committed: Some(id),
                    purged: Some(log_id(1, 1, 3)),
                    last: Some(id),
                },
            ),
        ];
        match decode(&checkpoint_record(metas.iter().map(|(g, m)| (*g, m)))).unwrap() {
            Record::Checkpoint { groups } => assert_eq!(groups, metas),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn one_entry_is_picked_out_of_a_record() {
        // entry_from_record returns the wanted index and refuses other groups and indexes.
        let list = entries(10, 4);
        let encoded: Vec<Vec<u8>> = list.iter().map(|e| encode_entry(e).unwrap()).collect();
        let record = entries_record(5, 10, &encoded);
        for entry in &list {
            assert_eq!(
                &entry_from_record(&record, 5, entry.log_id.index).unwrap(),
                entry
            );
        }
        assert!(entry_from_record(&record, 6, 10).is_err());
        assert!(entry_from_record(&record, 5, 14).is_err());
        assert!(entry_from_record(&vote_record(5, &Vote::new(1, 1)), 5, 10).is_err());
    }

    #[test]
    fn unknown_kinds_counts_and_trailing_bytes_are_errors() {
        // Hostile records decode to errors: unknown kind, huge counts, short or long bodies.
        let mut bad_kind = remove_group_record(1);
        bad_kind[0] = 42;
        assert!(
            decode(&bad_kind)
                .unwrap_err()
                .contains("unknown record kind 42")
        );
        let mut huge = header(KIND_ENTRIES, 1, 12);
        huge.extend_from_slice(&0u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        let mut huge_checkpoint = header(KIND_CHECKPOINT, 0, 4);
        huge_checkpoint.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge_checkpoint).is_err());
        let mut long = vote_record(1, &Vote::new(1, 1));
        long.push(0);
        assert!(decode(&long).is_err());
        let vote = vote_record(1, &Vote::new(1, 1));
        for cut in 0..vote.len() {
            assert!(decode(&vote[..cut]).is_err());
        }
        let mut bad_flag = vote;
        *bad_flag.last_mut().unwrap() = 2;
        assert!(decode(&bad_flag).is_err());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            // Any byte string decodes to a record or an error.
            let _ = decode(&bytes);
            let _ = entry_from_record(&bytes, 1, 3);
        }
    }
}
