//! Replays a record log read whole into memory.
//!
//! Decoding is two layers. [`read_fragment`] checks one fragment (bounds,
//! block boundary, checksum, type) and never trusts a length it has not
//! bounded. [`RecordReader`] strings fragments into logical records, and on
//! any damage reports where the broken record began and resynchronises: at
//! the next block boundary after a bad fragment (its length cannot be
//! trusted), or at the fragment that broke the FIRST/MIDDLE/LAST sequence
//! (that fragment itself is intact). Continuation fragments found after a
//! resync belong to the lost record and are skipped silently.
//!
//! [`replay`] applies the torn-tail rule: damage starting at offset B is a
//! torn tail unless a later valid record carries a watermark > B, which
//! proves B had been synced. The proof scan runs only on the damage path and
//! only once (point in time stops at the first damage), so replay stays
//! about one pass over the file.

use super::{BLOCK_BYTES, FragmentType, HEADER_BYTES, WATERMARK_BYTES, fragment_crc};
use crate::error::{Error, Result};
use crate::options::WalRecovery;
use std::path::Path;

/// What replay found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Logical records passed to the callback (seal markers not counted).
    pub records: u64,
    /// Offset just past the last good record (markers included). Trailing
    /// zero block padding after it is not damage and not counted here.
    pub valid_bytes: u64,
    /// Some((offset, bytes)) when a torn tail was cut: from the start of the
    /// first damaged record to the end of the file.
    pub torn_tail: Option<(u64, u64)>,
    /// Salvage mode only: (offset, bytes, reason) of each skipped region. A
    /// damaged region with no valid record after it is the torn tail instead.
    pub skipped: Vec<(u64, u64, String)>,
    /// True when the last good record is a seal marker and nothing but zero
    /// padding follows it: the writer sealed the file and wrote no more.
    pub ends_with_seal: bool,
}

/// Replays every logical record of `data` (a whole file read into memory) in
/// order, calling `f(offset_of_record, payload)`; the offset is that of the
/// record's first fragment header. Errors returned by `f` abort the replay
/// and are returned as is.
///
/// `PointInTime`: the first damage is either cut as a torn tail (the report
/// says where) or, if a later valid record proves it was synced, an
/// `Error::Corruption` naming `path` and the offset of the damaged record.
/// `Salvage`: damaged regions are skipped and reported; every valid record
/// after them is replayed.
pub fn replay(
    data: &[u8],
    path: &Path,
    mode: WalRecovery,
    mut f: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<ReplayReport> {
    let mut reader = RecordReader::new(data);
    let mut report = ReplayReport::default();
    // Salvage: the damaged region not yet closed by a good record.
    let mut open_damage: Option<(u64, String)> = None;
    while let Some(item) = reader.next_item() {
        match item {
            Item::Record(record) => {
                if let Some((start, reason)) = open_damage.take() {
                    report
                        .skipped
                        .push((start, record.offset.saturating_sub(start), reason));
                }
                if !record.payload.is_empty() {
                    f(record.offset, record.payload)?;
                    report.records += 1;
                }
                report.ends_with_seal = record.payload.is_empty();
                report.valid_bytes = record.end;
            }
            Item::Damaged {
                offset,
                reason,
                resume,
            } => match mode {
                WalRecovery::PointInTime => {
                    if later_record_proves_synced(data, offset, resume) {
                        let reason =
                            format!("{reason}; a later record shows these bytes were synced");
                        return Err(Error::corruption(path, offset, reason));
                    }
                    if !unwritten(data, offset) {
                        report.torn_tail =
                            Some((offset, (data.len() as u64).saturating_sub(offset)));
                        report.ends_with_seal = false;
                    }
                    return Ok(report);
                }
                WalRecovery::Salvage => {
                    open_damage.get_or_insert((offset, reason));
                }
            },
        }
    }
    if let Some((start, _)) = open_damage
        && !unwritten(data, start)
    {
        report.torn_tail = Some((start, (data.len() as u64).saturating_sub(start)));
        report.ends_with_seal = false;
    }
    Ok(report)
}

/// True when nothing but zeros lies from `offset` to the end: space the
/// writer reserved ahead (or the file system extended) and never wrote.
/// Not damage, so not reported as a torn tail; a record's own bytes are
/// never all zero (its header has a type byte of 1 to 4).
fn unwritten(data: &[u8], offset: u64) -> bool {
    let from = usize::try_from(offset).unwrap_or(usize::MAX);
    data.get(from..)
        .is_some_and(|tail| tail.iter().all(|&b| b == 0))
}

/// One decoded logical record.
struct Record<'s> {
    /// Offset of the record's first fragment header.
    offset: u64,
    /// Offset just past its last fragment.
    end: u64,
    /// The caller's bytes (watermark stripped); empty for a marker.
    payload: &'s [u8],
}

enum Item<'s> {
    Record(Record<'s>),
    /// The record starting at `offset` cannot be read; the reader has
    /// already resynchronised past it. The search for a record proving the
    /// damage synced starts at `resume` (the bad fragment itself when its
    /// bytes could not be parsed: records after it in its block count).
    Damaged {
        offset: u64,
        reason: String,
        resume: usize,
    },
}

/// Result of decoding the bytes at one position.
enum Fragment<'a> {
    /// A checksummed fragment; the next one starts at `next`.
    Good {
        offset: usize,
        kind: FragmentType,
        payload: &'a [u8],
        next: usize,
    },
    /// Zero padding at a block's end; the next fragment starts at `next`.
    Padding { next: usize },
    /// Nothing can be trusted from `offset` to the end of its block.
    Bad { offset: usize, reason: String },
    /// No more bytes.
    Eof,
}

fn block_end(pos: usize) -> usize {
    (pos / BLOCK_BYTES + 1) * BLOCK_BYTES
}

/// Decodes the fragment (or block trailer) at `pos`. Every length is checked
/// against the block and the file before it is used.
fn read_fragment(data: &[u8], pos: usize) -> Fragment<'_> {
    if pos >= data.len() {
        return Fragment::Eof;
    }
    let block_end = block_end(pos);
    let bad = |reason: String| Fragment::Bad {
        offset: pos,
        reason,
    };
    if block_end - pos < HEADER_BYTES {
        let trailer = data.get(pos..block_end.min(data.len())).unwrap_or(&[]);
        if trailer.iter().any(|&b| b != 0) {
            return bad("non-zero bytes in block trailer".to_owned());
        }
        return Fragment::Padding { next: block_end };
    }
    let Some(header) = data.get(pos..pos + HEADER_BYTES) else {
        return bad(format!(
            "fragment header cut by end of file ({} bytes)",
            data.len() - pos
        ));
    };
    let (crc, length, type_byte) = match header {
        &[c0, c1, c2, c3, l0, l1, t] => (
            u32::from_le_bytes([c0, c1, c2, c3]),
            u16::from_le_bytes([l0, l1]),
            t,
        ),
        _ => return bad("fragment header cut by end of file".to_owned()),
    };
    let start = pos + HEADER_BYTES;
    let end = start + usize::from(length);
    if end > block_end {
        return bad(format!(
            "fragment length {length} crosses the block boundary"
        ));
    }
    let Some(payload) = data.get(start..end) else {
        return bad(format!("fragment length {length} runs past end of file"));
    };
    if fragment_crc(type_byte, &[payload]) != crc {
        return bad("fragment checksum mismatch".to_owned());
    }
    let Some(kind) = FragmentType::from_u8(type_byte) else {
        return bad(format!("unknown fragment type {type_byte}"));
    };
    Fragment::Good {
        offset: pos,
        kind,
        payload,
        next: end,
    }
}

/// Strings fragments into logical records, reporting and skipping damage.
struct RecordReader<'a> {
    data: &'a [u8],
    /// Where the next fragment starts.
    pos: usize,
    /// Offset of the record whose FIRST fragment was read and whose LAST was
    /// not yet.
    open: Option<usize>,
    /// The open record's bytes so far. It only ever holds payload bytes
    /// copied out of `data`, so it is bounded by the file size.
    assembled: Vec<u8>,
    /// After a resync: MIDDLE and LAST fragments belong to the lost record
    /// and are skipped until a FULL or FIRST starts a new one.
    resyncing: bool,
}

impl<'a> RecordReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        RecordReader {
            data,
            pos: 0,
            open: None,
            assembled: Vec::new(),
            resyncing: false,
        }
    }

    /// The next record or damage report; `None` at the end of the file.
    fn next_item(&mut self) -> Option<Item<'_>> {
        loop {
            match read_fragment(self.data, self.pos) {
                Fragment::Eof => {
                    let start = self.open.take()?;
                    let reason = "record cut by end of file".to_owned();
                    return Some(damaged(start, reason, self.pos));
                }
                Fragment::Padding { next } => self.pos = next,
                Fragment::Bad { offset, reason } => {
                    let start = self.open.take().unwrap_or(offset);
                    self.pos = block_end(offset);
                    self.resyncing = true;
                    return Some(damaged(start, reason, offset));
                }
                Fragment::Good {
                    offset,
                    kind,
                    payload,
                    next,
                } => match (kind, self.open) {
                    (FragmentType::Full, None) => {
                        self.pos = next;
                        self.resyncing = false;
                        return Some(decode_record(offset, next, payload));
                    }
                    (FragmentType::First, None) => {
                        self.pos = next;
                        self.resyncing = false;
                        self.open = Some(offset);
                        self.assembled.clear();
                        self.assembled.extend_from_slice(payload);
                    }
                    (FragmentType::Middle, Some(_)) => {
                        self.pos = next;
                        self.assembled.extend_from_slice(payload);
                    }
                    (FragmentType::Last, Some(start)) => {
                        self.pos = next;
                        self.open = None;
                        self.assembled.extend_from_slice(payload);
                        return Some(decode_record(start, next, &self.assembled));
                    }
                    (FragmentType::Full | FragmentType::First, Some(start)) => {
                        // Intact fragment, broken sequence: the open record is
                        // lost; re-read this fragment as a new record start.
                        self.pos = offset;
                        self.open = None;
                        let reason =
                            format!("record not finished before a new one starts at {offset}");
                        return Some(damaged(start, reason, offset));
                    }
                    (FragmentType::Middle | FragmentType::Last, None) => {
                        self.pos = next;
                        if !self.resyncing {
                            self.resyncing = true;
                            let reason = format!("{kind:?} fragment without a FIRST");
                            return Some(damaged(offset, reason, next));
                        }
                    }
                },
            }
        }
    }
}

/// True if some record start at or after `from` passes its checksum and
/// carries a watermark > `damage`: the writer had synced past `damage`, so
/// the damaged bytes were acknowledged data.
///
/// Intact fragments are stepped over by their length. Where bytes do not
/// parse, every later offset in that block is tried as a record start, so a
/// proving record that shares a block with the damage is not missed (a WAL
/// of small records fits hundreds in a block). The per-offset test reads 7
/// header bytes and the watermark and computes a checksum only for a FULL
/// or FIRST header whose watermark lies in (damage, offset]: garbage and
/// zeros almost never get that far, so a damaged block costs about 32 Ki
/// cheap probes. Runs once per replay, on the damage path only.
fn later_record_proves_synced(data: &[u8], damage: u64, from: usize) -> bool {
    let mut pos = from;
    loop {
        match read_fragment(data, pos) {
            Fragment::Eof => return false,
            Fragment::Padding { next } => pos = next,
            Fragment::Good {
                offset,
                kind,
                payload,
                next,
            } => {
                let starts_record = matches!(kind, FragmentType::Full | FragmentType::First);
                if starts_record && watermark_proves(payload, damage, offset) {
                    return true;
                }
                pos = next;
            }
            Fragment::Bad { offset, .. } => {
                let end = block_end(offset).min(data.len());
                if (offset + 1..end).any(|probe| record_start_proves(data, damage, probe)) {
                    return true;
                }
                pos = block_end(offset);
            }
        }
    }
}

/// True if `payload` opens with a watermark in `(damage, offset]` (a valid
/// writer never records a watermark past the record itself).
fn watermark_proves(payload: &[u8], damage: u64, offset: usize) -> bool {
    payload
        .first_chunk::<WATERMARK_BYTES>()
        .map(|bytes| u64::from_le_bytes(*bytes))
        .is_some_and(|watermark| watermark > damage && watermark <= offset as u64)
}

/// Whether a FULL or FIRST fragment that proves `damage` synced starts at
/// `pos`; cheap checks first, the checksum last.
fn record_start_proves(data: &[u8], damage: u64, pos: usize) -> bool {
    let Some(&[c0, c1, c2, c3, l0, l1, type_byte]) = data.get(pos..pos + HEADER_BYTES) else {
        return false;
    };
    if type_byte != FragmentType::Full as u8 && type_byte != FragmentType::First as u8 {
        return false;
    }
    let start = pos + HEADER_BYTES;
    let end = start + usize::from(u16::from_le_bytes([l0, l1]));
    if end > block_end(pos) {
        return false;
    }
    let Some(payload) = data.get(start..end) else {
        return false;
    };
    watermark_proves(payload, damage, pos)
        && fragment_crc(type_byte, &[payload]) == u32::from_le_bytes([c0, c1, c2, c3])
}

fn damaged(offset: usize, reason: String, resume: usize) -> Item<'static> {
    Item::Damaged {
        offset: offset as u64,
        reason,
        resume,
    }
}

/// Splits a reassembled record into watermark and payload, checking both.
fn decode_record(offset: usize, end: usize, bytes: &[u8]) -> Item<'_> {
    let Some((watermark, payload)) = bytes.split_first_chunk::<WATERMARK_BYTES>() else {
        let reason = format!(
            "record of {} bytes is shorter than its watermark",
            bytes.len()
        );
        return damaged(offset, reason, end);
    };
    let watermark = u64::from_le_bytes(*watermark);
    let offset = offset as u64;
    // The writer only ever records a length it had already written.
    if watermark > offset {
        let reason = format!("record watermark {watermark} lies beyond the record");
        return damaged(offset as usize, reason, end);
    }
    Item::Record(Record {
        offset,
        end: end as u64,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogWriter;
    use crate::log::tests::{VecFile, VecFileState};
    use proptest::prelude::*;
    use std::sync::{Arc, Mutex};

    /// A log under construction, remembering where each record starts.
    struct Log {
        writer: LogWriter,
        state: Arc<Mutex<VecFileState>>,
        starts: Vec<u64>,
    }

    impl Log {
        fn new() -> Self {
            let (file, state) = VecFile::create();
            Log {
                writer: LogWriter::new(file),
                state,
                starts: Vec::new(),
            }
        }

        /// Appends a record; returns the offset of its first fragment header.
        fn add(&mut self, payload: &[u8]) -> u64 {
            let len = self.writer.len();
            let left = BLOCK_BYTES as u64 - len % BLOCK_BYTES as u64;
            let start = if left < HEADER_BYTES as u64 {
                len + left
            } else {
                len
            };
            self.writer.add_record(payload).unwrap();
            self.starts.push(start);
            start
        }

        fn data(&self) -> Vec<u8> {
            self.state.lock().unwrap().data.clone()
        }
    }

    type Replayed = Vec<(u64, Vec<u8>)>;

    fn run(data: &[u8], mode: WalRecovery) -> Result<(Replayed, ReplayReport)> {
        let mut seen = Vec::new();
        let report = replay(data, Path::new("000007.log"), mode, |offset, payload| {
            seen.push((offset, payload.to_vec()));
            Ok(())
        })?;
        assert_eq!(report.records, seen.len() as u64);
        Ok((seen, report))
    }

    fn corruption_offset(result: Result<(Replayed, ReplayReport)>) -> u64 {
        match result {
            Err(Error::Corruption { offset, path, .. }) => {
                assert_eq!(path, Path::new("000007.log"));
                offset
            }
            Err(other) => panic!("expected corruption, got {other}"),
            Ok((seen, report)) => panic!(
                "expected corruption, got {} records, {report:?}",
                seen.len()
            ),
        }
    }

    /// Deterministic, non-repeating bytes so a misplaced fragment shows.
    fn payload(seed: u8, len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    /// One hand-made fragment with a correct checksum.
    fn fragment(type_byte: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = fragment_crc(type_byte, &[payload]).to_le_bytes().to_vec();
        out.extend_from_slice(&(payload.len() as u16).to_le_bytes());
        out.push(type_byte);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn roundtrip_small_spanning_and_multi_block_records() {
        // Every record comes back byte for byte, in order, at the offset it was written.
        let sizes = [
            1,
            100,
            BLOCK_BYTES - 20,
            100 * 1024 + 3,
            3 * BLOCK_BYTES,
            7,
            BLOCK_BYTES - 15 - 8,
            1,
        ];
        let mut log = Log::new();
        let mut expected = Vec::new();
        for (i, size) in sizes.into_iter().enumerate() {
            let bytes = payload(i as u8, size);
            expected.push((log.add(&bytes), bytes));
            if i == 3 {
                log.writer.sync().unwrap();
            }
        }
        let data = log.data();
        let (seen, report) = run(&data, WalRecovery::PointInTime).unwrap();
        assert_eq!(seen, expected);
        assert_eq!(report.valid_bytes, data.len() as u64);
        assert_eq!(report.torn_tail, None);
        assert!(report.skipped.is_empty());
    }

    #[test]
    fn empty_file_replays_nothing() {
        // A new, empty log is valid and has no torn tail.
        let (seen, report) = run(&[], WalRecovery::PointInTime).unwrap();
        assert!(seen.is_empty());
        assert_eq!(report, ReplayReport::default());
    }

    #[test]
    fn cut_anywhere_in_last_record_is_a_torn_tail() {
        // A crash mid-append loses only the last record, at every possible cut.
        let mut log = Log::new();
        log.add(b"first");
        log.add(&payload(1, BLOCK_BYTES - 1000));
        log.writer.sync().unwrap();
        let start = log.add(&payload(2, 3000)); // FIRST in block 0, LAST in block 1
        let data = log.data();
        let end = data.len() as u64;
        for cut in start + 1..end {
            let prefix = &data[..cut as usize];
            for mode in [WalRecovery::PointInTime, WalRecovery::Salvage] {
                let (seen, report) = run(prefix, mode).unwrap();
                assert_eq!(seen.len(), 2, "cut at {cut}");
                assert_eq!(
                    report.valid_bytes,
                    log.starts[1] + (BLOCK_BYTES - 1000 + 8 + 7) as u64
                );
                assert_eq!(report.torn_tail, Some((start, cut - start)), "cut at {cut}");
                assert!(report.skipped.is_empty());
            }
        }
        let (seen, report) = run(&data[..start as usize], WalRecovery::PointInTime).unwrap();
        assert_eq!((seen.len(), report.torn_tail), (2, None));
    }

    #[test]
    fn flipped_byte_before_a_synced_record_is_corruption() {
        // Damage to a record that a later record's watermark proves synced fails replay.
        let mut log = Log::new();
        log.add(b"one");
        let damaged = log.add(b"two");
        log.writer.sync().unwrap();
        log.add(b"three");
        let mut data = log.data();
        data[damaged as usize + HEADER_BYTES + 9] ^= 0x40;
        assert_eq!(
            corruption_offset(run(&data, WalRecovery::PointInTime)),
            damaged
        );
    }

    #[test]
    fn flipped_byte_without_later_proof_is_a_torn_tail() {
        // The same damage when no later record proves a sync past it is cut as a torn tail.
        let mut log = Log::new();
        log.add(b"one");
        log.writer.sync().unwrap();
        let damaged = log.add(b"two");
        log.add(b"three");
        let mut data = log.data();
        data[damaged as usize + HEADER_BYTES + 9] ^= 0x40;
        let (seen, report) = run(&data, WalRecovery::PointInTime).unwrap();
        assert_eq!(seen, vec![(0, b"one".to_vec())]);
        assert_eq!(report.valid_bytes, damaged);
        assert_eq!(
            report.torn_tail,
            Some((damaged, data.len() as u64 - damaged))
        );
    }

    #[test]
    fn watermark_equal_to_the_damage_offset_is_no_proof() {
        // A watermark proves only bytes before it: synced up to B says nothing about B.
        let mut log = Log::new();
        log.add(b"one");
        log.writer.sync().unwrap();
        let damaged = log.add(b"two");
        log.add(b"three"); // watermark == damaged
        let mut data = log.data();
        data[damaged as usize] ^= 1;
        let (_, report) = run(&data, WalRecovery::PointInTime).unwrap();
        assert_eq!(report.torn_tail.map(|(at, _)| at), Some(damaged));
    }

    #[test]
    fn damage_inside_a_spanning_record_names_the_record_start() {
        // Corruption in a MIDDLE fragment is reported at the record's first fragment.
        let mut log = Log::new();
        log.add(b"one");
        let big = log.add(&payload(3, 100 * 1024));
        log.writer.sync().unwrap();
        log.add(b"proof");
        let mut data = log.data();
        data[2 * BLOCK_BYTES + 100] ^= 0xff;
        assert_eq!(corruption_offset(run(&data, WalRecovery::PointInTime)), big);
    }

    #[test]
    fn seal_makes_damage_before_the_marker_corruption() {
        // After seal, damage anywhere before the marker is corruption; the marker is not replayed.
        let mut log = Log::new();
        log.add(b"one");
        let damaged = log.add(b"two");
        let data = log.data();
        let mut torn = data.clone();
        torn[damaged as usize + HEADER_BYTES] ^= 1;
        let (_, report) = run(&torn, WalRecovery::PointInTime).unwrap();
        assert_eq!(report.torn_tail.map(|(at, _)| at), Some(damaged));

        log.writer.seal().unwrap();
        let sealed = log.data();
        let (seen, report) = run(&sealed, WalRecovery::PointInTime).unwrap();
        assert_eq!(seen.len(), 2);
        assert_eq!(report.valid_bytes, sealed.len() as u64);
        let mut damaged_sealed = sealed.clone();
        damaged_sealed[damaged as usize + HEADER_BYTES] ^= 1;
        assert_eq!(
            corruption_offset(run(&damaged_sealed, WalRecovery::PointInTime)),
            damaged
        );
    }

    #[test]
    fn report_says_whether_the_file_ends_with_a_seal() {
        // ends_with_seal is true only when the last good record is a marker with nothing after it.
        let mut log = Log::new();
        log.add(b"one");
        assert!(
            !run(&log.data(), WalRecovery::PointInTime)
                .unwrap()
                .1
                .ends_with_seal
        );
        log.writer.seal().unwrap();
        let sealed = log.data();
        assert!(
            run(&sealed, WalRecovery::PointInTime)
                .unwrap()
                .1
                .ends_with_seal
        );
        let mut torn = sealed.clone();
        torn.extend_from_slice(&[1, 2, 3]);
        let (_, report) = run(&torn, WalRecovery::PointInTime).unwrap();
        assert!(!report.ends_with_seal);
        assert!(report.torn_tail.is_some());
        log.add(b"after");
        assert!(
            !run(&log.data(), WalRecovery::PointInTime)
                .unwrap()
                .1
                .ends_with_seal
        );
        assert!(!run(&[], WalRecovery::PointInTime).unwrap().1.ends_with_seal);
    }

    #[test]
    fn salvage_skips_damage_and_keeps_later_records() {
        // Salvage drops the damaged record, resyncs at the next block and keeps the rest.
        let mut log = Log::new();
        log.add(b"one");
        let big = log.add(&payload(4, 40 * 1024));
        let three = log.add(b"three");
        log.writer.sync().unwrap();
        log.add(b"four");
        let mut data = log.data();
        data[big as usize + 500] ^= 0x10;
        assert_eq!(corruption_offset(run(&data, WalRecovery::PointInTime)), big);
        let (seen, report) = run(&data, WalRecovery::Salvage).unwrap();
        let payloads: Vec<&[u8]> = seen.iter().map(|(_, p)| p.as_slice()).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"three", b"four"]);
        assert_eq!(report.skipped.len(), 1);
        assert_eq!(
            (report.skipped[0].0, report.skipped[0].1),
            (big, three - big)
        );
        assert_eq!(report.torn_tail, None);
        assert_eq!(report.valid_bytes, data.len() as u64);
    }

    #[test]
    fn salvage_reports_a_damaged_end_as_torn_tail() {
        // In salvage mode damage with nothing readable after it is the torn tail, not a skip.
        let mut log = Log::new();
        log.add(b"one");
        let two = log.add(b"two");
        let mut data = log.data();
        data[two as usize + 3] ^= 1;
        let (seen, report) = run(&data, WalRecovery::Salvage).unwrap();
        assert_eq!(seen.len(), 1);
        assert!(report.skipped.is_empty());
        assert_eq!(report.torn_tail, Some((two, data.len() as u64 - two)));
    }

    #[test]
    fn zero_filled_tail_is_unwritten_space_not_a_torn_tail() {
        // Preallocated or zero-filled space after the last record ends the
        // log, even after a sync, in either mode; it is not damage.
        let mut log = Log::new();
        log.add(b"one");
        log.add(&payload(5, 50 * 1024));
        log.writer.sync().unwrap();
        let mut data = log.data();
        let valid = data.len() as u64;
        data.resize(data.len() + 70 * 1024, 0);
        for mode in [WalRecovery::PointInTime, WalRecovery::Salvage] {
            let (seen, report) = run(&data, mode).unwrap();
            assert_eq!(seen.len(), 2);
            assert_eq!(report.valid_bytes, valid);
            assert_eq!(report.torn_tail, None);
            assert!(report.skipped.is_empty());
        }
        // A sealed log keeps its seal through the zeros.
        let mut sealed = Log::new();
        sealed.add(b"one");
        sealed.writer.seal().unwrap();
        let mut data = sealed.data();
        data.resize(data.len() + 40 * 1024, 0);
        assert!(
            run(&data, WalRecovery::PointInTime)
                .unwrap()
                .1
                .ends_with_seal
        );
    }

    #[test]
    fn a_torn_record_inside_preallocated_space_is_a_torn_tail() {
        // Part of a record written into reserved space, zeros after it: the
        // partial record is damage, cut and reported.
        let mut log = Log::new();
        log.add(b"one");
        let two = log.add(&payload(7, 3000));
        let mut data = log.data();
        data.truncate(two as usize + 1000);
        data.resize(data.len() + 64 * 1024, 0);
        let (seen, report) = run(&data, WalRecovery::PointInTime).unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(report.torn_tail, Some((two, data.len() as u64 - two)));
    }

    #[test]
    fn zeroed_synced_record_is_corruption() {
        // A zero-filled hole in synced data, with a later proving record, is corruption.
        let mut log = Log::new();
        log.add(b"one");
        let hole = log.add(b"two");
        let three = log.add(b"three");
        log.writer.sync().unwrap();
        log.add(b"four");
        let mut data = log.data();
        data[hole as usize..three as usize].fill(0);
        assert_eq!(
            corruption_offset(run(&data, WalRecovery::PointInTime)),
            hole
        );
    }

    #[test]
    fn trailing_block_padding_is_not_damage() {
        // A file that ends inside a block's zero trailer has no torn tail.
        let mut log = Log::new();
        log.add(&payload(6, BLOCK_BYTES - HEADER_BYTES - 8 - 4));
        let data = log.data();
        assert_eq!(data.len(), BLOCK_BYTES - 4);
        let mut padded = data.clone();
        padded.extend_from_slice(&[0, 0]);
        let (seen, report) = run(&padded, WalRecovery::PointInTime).unwrap();
        assert_eq!((seen.len(), report.torn_tail), (1, None));
        assert_eq!(report.valid_bytes, data.len() as u64);
        padded[BLOCK_BYTES - 3] = 9;
        let (_, report) = run(&padded, WalRecovery::PointInTime).unwrap();
        assert_eq!(report.torn_tail.map(|(at, _)| at), Some(data.len() as u64));
    }

    #[test]
    fn broken_fragment_sequences_are_damage() {
        // MIDDLE without FIRST, FIRST inside an open record and unknown types are damage, not panics.
        let watermark_zero = [0u8; 8];
        let record = |tail: &[u8]| [&watermark_zero[..], tail].concat();
        let cases: Vec<(Vec<u8>, u64)> = vec![
            (fragment(3, &record(b"orphan")), 0),
            (
                [
                    fragment(2, &record(b"a")),
                    fragment(2, &record(b"b")),
                    fragment(4, b"c"),
                ]
                .concat(),
                0,
            ),
            (
                [fragment(1, &record(b"ok")), fragment(9, &record(b"x"))].concat(),
                17,
            ),
            (fragment(1, b"short"), 0),
            (
                fragment(1, &[&u64::MAX.to_le_bytes()[..], b"x"].concat()),
                0,
            ),
        ];
        for (data, at) in cases {
            for mode in [WalRecovery::PointInTime, WalRecovery::Salvage] {
                let (_, report) = run(&data, mode).unwrap();
                let first_damage = report
                    .torn_tail
                    .or(report.skipped.first().map(|s| (s.0, s.1)));
                assert_eq!(first_damage.map(|(o, _)| o), Some(at), "{data:?}");
            }
        }
    }

    #[test]
    fn first_inside_open_record_resyncs_at_the_new_record() {
        // Salvage keeps the intact record that interrupted an unfinished one.
        let watermark_zero = [0u8; 8];
        let data = [
            fragment(2, &[&watermark_zero[..], b"lost"].concat()),
            fragment(1, &[&watermark_zero[..], b"kept"].concat()),
        ]
        .concat();
        let (seen, report) = run(&data, WalRecovery::Salvage).unwrap();
        assert_eq!(seen, vec![(19, b"kept".to_vec())]);
        assert_eq!((report.skipped[0].0, report.skipped[0].1), (0, 19));
    }

    #[test]
    fn callback_error_aborts_replay() {
        // An error from the caller's apply function is returned unchanged.
        let mut log = Log::new();
        log.add(b"one");
        log.add(b"two");
        let data = log.data();
        let mut calls = 0;
        let result = replay(&data, Path::new("x"), WalRecovery::PointInTime, |_, _| {
            calls += 1;
            Err(Error::InvalidArgument("stop".into()))
        });
        assert!(matches!(result, Err(Error::InvalidArgument(msg)) if msg == "stop"));
        assert_eq!(calls, 1);
    }

    /// Builds a log from record sizes, syncing after the records marked;
    /// returns the bytes and (offset, end, payload) of each record.
    fn build(records: &[(usize, bool)]) -> (Vec<u8>, Replayed, Vec<u64>) {
        let mut log = Log::new();
        let mut written = Vec::new();
        let mut ends = Vec::new();
        for (i, &(size, sync)) in records.iter().enumerate() {
            let bytes = payload(i as u8, size);
            written.push((log.add(&bytes), bytes));
            ends.push(log.writer.len());
            if sync {
                log.writer.sync().unwrap();
            }
        }
        (log.data(), written, ends)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..70_000)) {
            // Arbitrary bytes replay to a report or a corruption error, never a panic.
            for mode in [WalRecovery::PointInTime, WalRecovery::Salvage] {
                let _ = run(&data, mode);
            }
        }

        #[test]
        fn damaged_logs_never_panic_and_point_in_time_keeps_a_prefix(
            records in proptest::collection::vec((1usize..40_000, any::<bool>()), 1..8),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..4),
            cut in any::<prop::sample::Index>(),
        ) {
            // Flips and a truncation anywhere: point in time replays a prefix of what was written.
            let (mut data, written, _) = build(&records);
            for (at, mask) in flips {
                let i = at.index(data.len());
                data[i] ^= mask;
            }
            data.truncate(cut.index(data.len() + 1));
            if let Ok((seen, _)) = run(&data, WalRecovery::PointInTime) {
                prop_assert_eq!(&seen[..], &written[..seen.len()]);
            }
            let (salvaged, _) = run(&data, WalRecovery::Salvage).unwrap();
            for record in &salvaged {
                prop_assert!(written.contains(record));
            }
        }

        #[test]
        fn truncation_alone_is_never_an_error(
            records in proptest::collection::vec((1usize..40_000, any::<bool>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            // A crash that only loses a suffix recovers exactly the records wholly before the cut.
            let (data, written, ends) = build(&records);
            let cut = cut.index(data.len() + 1);
            let (seen, report) = run(&data[..cut], WalRecovery::PointInTime).unwrap();
            let whole = ends.iter().filter(|&&end| end <= cut as u64).count();
            prop_assert_eq!(&seen[..], &written[..whole]);
            prop_assert_eq!(report.valid_bytes, if whole == 0 { 0 } else { ends[whole - 1] });
            if let Some((at, bytes)) = report.torn_tail {
                prop_assert_eq!(at, written[whole].0);
                prop_assert_eq!(at + bytes, cut as u64);
            } else {
                prop_assert!(data[report.valid_bytes as usize..cut].iter().all(|&b| b == 0));
            }
        }
    }
}
