//! `VersionEdit`: one change to the set of live files, as recorded in the
//! manifest. The manifest is a record log (`log`) of encoded edits; replaying
//! them in order rebuilds the current version.
//!
//! Layout of one edit (do not change: on disk), a sequence of tagged fields:
//!
//! ```text
//! field = tag varint32 | body
//!  1 log_number        varint64            WALs below this number are obsolete
//!  2 next_file_number  varint64
//!  3 last_sequence     varint64
//!  4 deleted_file      level varint32 | file number varint64
//!  5 new_file          level varint32 | number varint64 | size varint64
//!                      | smallest ikey (varint len + bytes) | largest ikey (same)
//!                      | smallest_seq varint64 | largest_seq varint64
//!                      | num_entries varint64 | num_deletions varint64
//!                      | range_del_seq varint64
//!  6 range_tombstone   seq varint64 | start (varint len + bytes) | end (same)
//!  7 drop_tombstone    seq varint64
//!  8 compact_pointer   level varint32 | ikey (varint len + bytes)
//! ```
//!
//! An unknown tag, a level beyond the engine's maximum or a truncated field
//! is corruption: the manifest is never half-understood.

use crate::range_del::RangeTombstone;
use crate::table::TableSummary;
use crate::util::coding::{Decoder, put_length_prefixed, put_varint32, put_varint64};

/// The most levels any database can have (bounds decoding).
pub(crate) const MAX_LEVELS: usize = 16;

mod tag {
    // Do not change: on disk.
    pub const LOG_NUMBER: u32 = 1;
    pub const NEXT_FILE_NUMBER: u32 = 2;
    pub const LAST_SEQUENCE: u32 = 3;
    pub const DELETED_FILE: u32 = 4;
    pub const NEW_FILE: u32 = 5;
    pub const RANGE_TOMBSTONE: u32 = 6;
    pub const DROP_TOMBSTONE: u32 = 7;
    pub const COMPACT_POINTER: u32 = 8;
}

/// A table as the manifest records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewFile {
    pub level: usize,
    pub number: u64,
    pub size: u64,
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub smallest_seq: u64,
    pub largest_seq: u64,
    pub num_entries: u64,
    pub num_deletions: u64,
    /// Every range tombstone with a sequence number up to this one has
    /// been applied to the table's entries (0: none known to be).
    pub range_del_seq: u64,
}

impl NewFile {
    /// The manifest's record of table `number`, just written, at `level`.
    pub(crate) fn from_summary(level: usize, number: u64, s: TableSummary) -> NewFile {
        NewFile {
            level,
            number,
            size: s.file_size,
            smallest: s.smallest,
            largest: s.largest,
            smallest_seq: s.props.smallest_seq,
            largest_seq: s.props.largest_seq,
            num_entries: s.props.num_entries,
            num_deletions: s.props.num_deletions,
            range_del_seq: 0,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct VersionEdit {
    pub log_number: Option<u64>,
    pub next_file_number: Option<u64>,
    pub last_sequence: Option<u64>,
    pub deleted_files: Vec<(usize, u64)>,
    pub new_files: Vec<NewFile>,
    pub range_tombstones: Vec<RangeTombstone>,
    pub dropped_tombstones: Vec<u64>,
    pub compact_pointers: Vec<(usize, Vec<u8>)>,
}

impl VersionEdit {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let field = |t: u32, out: &mut Vec<u8>| put_varint32(out, t);
        if let Some(v) = self.log_number {
            field(tag::LOG_NUMBER, &mut out);
            put_varint64(&mut out, v);
        }
        if let Some(v) = self.next_file_number {
            field(tag::NEXT_FILE_NUMBER, &mut out);
            put_varint64(&mut out, v);
        }
        if let Some(v) = self.last_sequence {
            field(tag::LAST_SEQUENCE, &mut out);
            put_varint64(&mut out, v);
        }
        for (level, number) in &self.deleted_files {
            field(tag::DELETED_FILE, &mut out);
            put_varint32(&mut out, *level as u32);
            put_varint64(&mut out, *number);
        }
        for f in &self.new_files {
            field(tag::NEW_FILE, &mut out);
            put_varint32(&mut out, f.level as u32);
            put_varint64(&mut out, f.number);
            put_varint64(&mut out, f.size);
            put_length_prefixed(&mut out, &f.smallest);
            put_length_prefixed(&mut out, &f.largest);
            put_varint64(&mut out, f.smallest_seq);
            put_varint64(&mut out, f.largest_seq);
            put_varint64(&mut out, f.num_entries);
            put_varint64(&mut out, f.num_deletions);
            put_varint64(&mut out, f.range_del_seq);
        }
        for t in &self.range_tombstones {
            field(tag::RANGE_TOMBSTONE, &mut out);
            put_varint64(&mut out, t.seq);
            put_length_prefixed(&mut out, &t.start);
            put_length_prefixed(&mut out, &t.end);
        }
        for seq in &self.dropped_tombstones {
            field(tag::DROP_TOMBSTONE, &mut out);
            put_varint64(&mut out, *seq);
        }
        for (level, key) in &self.compact_pointers {
            field(tag::COMPACT_POINTER, &mut out);
            put_varint32(&mut out, *level as u32);
            put_length_prefixed(&mut out, key);
        }
        out
    }

    /// Decodes an edit; the error says which field was bad.
    pub(crate) fn decode(src: &[u8]) -> Result<VersionEdit, String> {
        let mut d = Decoder::new(src);
        let mut e = VersionEdit::default();
        while !d.is_empty() {
            let at = d.position();
            let t = d
                .varint32()
                .ok_or_else(|| format!("bad tag at byte {at}"))?;
            let bad = || format!("truncated field with tag {t} at byte {at}");
            match t {
                tag::LOG_NUMBER => e.log_number = Some(d.varint64().ok_or_else(bad)?),
                tag::NEXT_FILE_NUMBER => e.next_file_number = Some(d.varint64().ok_or_else(bad)?),
                tag::LAST_SEQUENCE => e.last_sequence = Some(d.varint64().ok_or_else(bad)?),
                tag::DELETED_FILE => {
                    let level = decode_level(&mut d).ok_or_else(bad)?;
                    e.deleted_files.push((level, d.varint64().ok_or_else(bad)?));
                }
                tag::NEW_FILE => e.new_files.push(decode_new_file(&mut d).ok_or_else(bad)?),
                tag::RANGE_TOMBSTONE => {
                    let seq = d.varint64().ok_or_else(bad)?;
                    let start = d.length_prefixed().ok_or_else(bad)?.to_vec();
                    let end = d.length_prefixed().ok_or_else(bad)?.to_vec();
                    e.range_tombstones.push(RangeTombstone { start, end, seq });
                }
                tag::DROP_TOMBSTONE => e.dropped_tombstones.push(d.varint64().ok_or_else(bad)?),
                tag::COMPACT_POINTER => {
                    let level = decode_level(&mut d).ok_or_else(bad)?;
                    e.compact_pointers
                        .push((level, d.length_prefixed().ok_or_else(bad)?.to_vec()));
                }
                other => return Err(format!("unknown tag {other} at byte {at}")),
            }
        }
        Ok(e)
    }
}

fn decode_level(d: &mut Decoder<'_>) -> Option<usize> {
    let level = d.varint32()? as usize;
    (level < MAX_LEVELS).then_some(level)
}

fn decode_new_file(d: &mut Decoder<'_>) -> Option<NewFile> {
    Some(NewFile {
        level: decode_level(d)?,
        number: d.varint64()?,
        size: d.varint64()?,
        smallest: d.length_prefixed()?.to_vec(),
        largest: d.length_prefixed()?.to_vec(),
        smallest_seq: d.varint64()?,
        largest_seq: d.varint64()?,
        num_entries: d.varint64()?,
        num_deletions: d.varint64()?,
        range_del_seq: d.varint64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> VersionEdit {
        VersionEdit {
            log_number: Some(7),
            next_file_number: Some(12),
            last_sequence: Some(99),
            deleted_files: vec![(1, 3)],
            new_files: vec![NewFile {
                level: 2,
                number: 11,
                size: 4096,
                smallest: b"a\0\0\0\0\0\0\0\0".to_vec(),
                largest: b"z\0\0\0\0\0\0\0\0".to_vec(),
                smallest_seq: 1,
                largest_seq: 98,
                num_entries: 10,
                num_deletions: 2,
                range_del_seq: 40,
            }],
            range_tombstones: vec![RangeTombstone {
                start: b"b".to_vec(),
                end: b"c".to_vec(),
                seq: 50,
            }],
            dropped_tombstones: vec![40],
            compact_pointers: vec![(1, b"m".to_vec())],
        }
    }

    #[test]
    fn edit_roundtrips_every_field() {
        // Every field survives encode/decode unchanged.
        let e = sample();
        assert_eq!(VersionEdit::decode(&e.encode()), Ok(e));
    }

    #[test]
    fn truncated_or_unknown_edits_are_rejected() {
        // Any prefix cut inside a field, or an unknown tag, is an error.
        let bytes = sample().encode();
        let mut field_ends = 0;
        for cut in 0..bytes.len() {
            if VersionEdit::decode(&bytes[..cut]).is_ok() {
                field_ends += 1;
            }
        }
        assert!(field_ends < 12, "too many prefixes decoded: {field_ends}");
        assert!(VersionEdit::decode(&[99, 1]).is_err());
        assert!(
            VersionEdit::decode(&[4, 40, 1]).is_err(),
            "level 40 accepted"
        );
    }
}
