//! Appends logical records to a record log.
//!
//! Byte layout written here (see `docs/format.md`, "Record log"):
//!
//! ```text
//! file      = block*                       (the last block may be short)
//! block     = fragment* zero-padding       (32768 bytes; padding < 7 bytes)
//! fragment  = crc32 u32 LE | length u16 LE | type u8 | payload[length]
//!             crc32 = crc32fast over type byte ++ payload
//!             type  = FULL 1 | FIRST 2 | MIDDLE 3 | LAST 4
//! record    = durable_watermark u64 LE | caller payload
//!             split as FULL, or FIRST MIDDLE* LAST; never across a block
//! ```
//!
//! `durable_watermark` is the file length at the writer's last successful
//! `sync` before the record was written. A record with an empty caller
//! payload is a marker (written by [`LogWriter::seal`]).
//!
//! I/O errors are sticky: after a failed append or sync the writer refuses
//! all further work (a failed fsync is never retried; the engine poisons).

use super::{BLOCK_BYTES, FragmentType, HEADER_BYTES, fragment_crc};
use crate::fs::WritableFile;
use std::io;

/// Zeros for block trailers (at most `HEADER_BYTES - 1` are ever written).
const ZEROS: [u8; HEADER_BYTES] = [0; HEADER_BYTES];

pub struct LogWriter {
    file: Box<dyn WritableFile>,
    /// Bytes written so far; also the offset of the next byte.
    len_bytes: u64,
    /// Offset inside the current block of the next byte.
    block_offset: usize,
    /// `len_bytes` at the last successful sync: every earlier byte is durable.
    synced_bytes: u64,
    /// One fragment is assembled here so it costs one `append`; never more
    /// than a block.
    fragment: Vec<u8>,
    /// Set by the first failed append or sync; every later call fails.
    failed: Option<String>,
}

impl LogWriter {
    /// Starts a log in `file`. REQUIRES: `file` is new and empty. (A
    /// non-empty file is continued at its block position with a watermark of
    /// 0, which is safe, but no caller should rely on it.)
    pub fn new(file: Box<dyn WritableFile>) -> Self {
        let len_bytes = file.len();
        let block_offset = usize::try_from(len_bytes % BLOCK_BYTES as u64).unwrap_or(0);
        LogWriter {
            file,
            len_bytes,
            block_offset,
            synced_bytes: 0,
            fragment: Vec::with_capacity(BLOCK_BYTES),
            failed: None,
        }
    }

    /// Appends one logical record (REQUIRES: `!payload.is_empty()`; an empty
    /// payload is refused with `InvalidInput` because replay would take it
    /// for a marker and drop it). Not durable until [`LogWriter::sync`].
    pub fn add_record(&mut self, payload: &[u8]) -> io::Result<()> {
        if payload.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "log records must not be empty (empty records are seal markers)",
            ));
        }
        self.check_healthy()?;
        let result = self.emit_record(payload);
        self.note(result)
    }

    /// Hands buffered records to the OS (no fsync): a process crash no
    /// longer loses them; a machine crash still may.
    pub fn flush(&mut self) -> io::Result<()> {
        self.check_healthy()?;
        let result = self.file.flush();
        self.note(result)
    }

    /// fsyncs; records written afterwards carry the new watermark.
    pub fn sync(&mut self) -> io::Result<()> {
        self.check_healthy()?;
        let result = self.file.sync();
        self.note(result)?;
        self.synced_bytes = self.len_bytes;
        Ok(())
    }

    /// Syncs, appends a marker record (empty payload) carrying the watermark,
    /// and syncs again: afterwards recovery treats every byte before the
    /// marker as synced, so damage there is corruption, not a torn tail.
    /// Then cuts off any space [`LogWriter::preallocate`] reserved (a crash
    /// before that leaves zeros after the marker, which replay takes for
    /// unwritten space). Used when a WAL is retired and at clean close.
    pub fn seal(&mut self) -> io::Result<()> {
        self.sync()?;
        let result = self.emit_record(&[]);
        self.note(result)?;
        self.sync()?;
        let result = self.file.trim();
        self.note(result)
    }

    /// Reserves the file up to `bytes` ahead of the records (see
    /// [`crate::fs::WritableFile::preallocate`]) and syncs the new size, so
    /// later syncs inside it have only data to write. Replay reads the
    /// zeros after the last record as unwritten space.
    pub fn preallocate(&mut self, bytes: u64) -> io::Result<()> {
        self.check_healthy()?;
        let result = self.file.preallocate(bytes);
        self.note(result)?;
        self.sync()
    }

    /// Bytes written so far (synced or not).
    pub fn len(&self) -> u64 {
        self.len_bytes
    }

    /// The offset at which the next record's first fragment header will
    /// start: `len()`, or the next block if fewer than a header's bytes are
    /// left in this one (they become zero padding). Logs that index their
    /// records (the Raft log store) remember this and read the record back
    /// with [`super::read_record_at`].
    pub fn next_record_offset(&self) -> u64 {
        let left = BLOCK_BYTES - self.block_offset;
        if left < HEADER_BYTES {
            self.len_bytes + left as u64
        } else {
            self.len_bytes
        }
    }

    /// True when nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    fn check_healthy(&self) -> io::Result<()> {
        match &self.failed {
            None => Ok(()),
            Some(cause) => Err(io::Error::other(format!(
                "log writer refuses work after an earlier I/O error: {cause}"
            ))),
        }
    }

    /// Makes an I/O error sticky.
    fn note<T>(&mut self, result: io::Result<T>) -> io::Result<T> {
        if let Err(err) = &result {
            self.failed.get_or_insert_with(|| err.to_string());
        }
        result
    }

    /// Writes `watermark | payload` as FULL or FIRST MIDDLE* LAST.
    fn emit_record(&mut self, payload: &[u8]) -> io::Result<()> {
        let watermark = self.synced_bytes.to_le_bytes();
        let mut head: &[u8] = &watermark;
        let mut tail = payload;
        let mut first = true;
        loop {
            self.pad_block_if_full()?;
            let avail = BLOCK_BYTES - self.block_offset - HEADER_BYTES;
            let take_head = avail.min(head.len());
            let take_tail = (avail - take_head).min(tail.len());
            let (head_now, head_rest) = head.split_at(take_head);
            let (tail_now, tail_rest) = tail.split_at(take_tail);
            head = head_rest;
            tail = tail_rest;
            let last = head.is_empty() && tail.is_empty();
            let kind = match (first, last) {
                (true, true) => FragmentType::Full,
                (true, false) => FragmentType::First,
                (false, false) => FragmentType::Middle,
                (false, true) => FragmentType::Last,
            };
            self.emit_fragment(kind, head_now, tail_now)?;
            first = false;
            if last {
                return Ok(());
            }
        }
    }

    /// A block with fewer than `HEADER_BYTES` left gets zero padding; the
    /// next fragment starts the next block.
    fn pad_block_if_full(&mut self) -> io::Result<()> {
        let left = BLOCK_BYTES - self.block_offset;
        if left >= HEADER_BYTES {
            return Ok(());
        }
        let (zeros, _) = ZEROS.split_at(left);
        if !zeros.is_empty() {
            self.file.append(zeros)?;
            self.len_bytes += zeros.len() as u64;
        }
        self.block_offset = 0;
        Ok(())
    }

    fn emit_fragment(&mut self, kind: FragmentType, head: &[u8], tail: &[u8]) -> io::Result<()> {
        let payload_bytes = head.len() + tail.len();
        // Checked right before writing (a writer bug must not reach the disk
        // as a fragment that crosses a block); an error, not a panic.
        if self.block_offset + HEADER_BYTES + payload_bytes > BLOCK_BYTES {
            return Err(io::Error::other(
                "log fragment would cross a block boundary (writer bug)",
            ));
        }
        let length = u16::try_from(payload_bytes)
            .map_err(|_| io::Error::other("log fragment longer than a block (writer bug)"))?;
        let crc = fragment_crc(kind as u8, &[head, tail]);
        self.fragment.clear();
        self.fragment.extend_from_slice(&crc.to_le_bytes());
        self.fragment.extend_from_slice(&length.to_le_bytes());
        self.fragment.push(kind as u8);
        self.fragment.extend_from_slice(head);
        self.fragment.extend_from_slice(tail);
        self.file.append(&self.fragment)?;
        self.len_bytes += self.fragment.len() as u64;
        self.block_offset += self.fragment.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::tests::VecFile;

    #[test]
    fn small_record_is_one_full_fragment_with_watermark() {
        // Pins the exact bytes of a FULL fragment: crc, length, type, watermark, payload.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        writer.add_record(b"abc").unwrap();
        let data = state.lock().unwrap().data.clone();
        assert_eq!(data.len(), HEADER_BYTES + 8 + 3);
        assert_eq!(writer.len(), data.len() as u64);
        let body = [0u8, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', b'c'];
        let crc = crc32fast::hash(&[[1u8].as_slice(), body.as_slice()].concat());
        assert_eq!(&data[0..4], &crc.to_le_bytes());
        assert_eq!(&data[4..6], &11u16.to_le_bytes());
        assert_eq!(data[6], 1);
        assert_eq!(&data[7..], &body);
    }

    #[test]
    fn watermark_is_the_length_at_the_last_sync() {
        // Records carry the synced length at write time, not the current length.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        writer.add_record(b"one").unwrap();
        writer.sync().unwrap();
        let synced = writer.len();
        writer.add_record(b"two").unwrap();
        writer.add_record(b"three").unwrap();
        let data = state.lock().unwrap().data.clone();
        let second = synced as usize;
        assert_eq!(&data[second + 7..second + 15], &synced.to_le_bytes());
        let third = second + 7 + 8 + 3;
        assert_eq!(&data[third + 7..third + 15], &synced.to_le_bytes());
    }

    #[test]
    fn fragments_never_cross_a_block_and_trailers_are_zero() {
        // Pins block alignment: a record that leaves < 7 bytes gets zero padding.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        // Leaves exactly 3 bytes in the first block.
        writer
            .add_record(&vec![7u8; BLOCK_BYTES - HEADER_BYTES - 8 - 3])
            .unwrap();
        assert_eq!(writer.len() as usize, BLOCK_BYTES - 3);
        writer.add_record(b"x").unwrap();
        let data = state.lock().unwrap().data.clone();
        assert_eq!(&data[BLOCK_BYTES - 3..BLOCK_BYTES], &[0, 0, 0]);
        assert_eq!(data[BLOCK_BYTES + 6], FragmentType::Full as u8);
    }

    #[test]
    fn exactly_a_header_left_gives_an_empty_first_fragment() {
        // Pins LevelDB's edge: 7 bytes left in a block hold a FIRST with no payload.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        writer
            .add_record(&vec![7u8; BLOCK_BYTES - 2 * HEADER_BYTES - 8])
            .unwrap();
        writer.add_record(b"next").unwrap();
        let data = state.lock().unwrap().data.clone();
        let at = BLOCK_BYTES - HEADER_BYTES;
        assert_eq!(&data[at + 4..at + 6], &0u16.to_le_bytes());
        assert_eq!(data[at + 6], FragmentType::First as u8);
        assert_eq!(data[BLOCK_BYTES + 6], FragmentType::Last as u8);
    }

    #[test]
    fn next_record_offset_skips_a_block_trailer() {
        // The predicted offset is where the next record's header really lands.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        assert_eq!(writer.next_record_offset(), 0);
        writer
            .add_record(&vec![7u8; BLOCK_BYTES - HEADER_BYTES - 8 - 3])
            .unwrap();
        assert_eq!(writer.len() as usize, BLOCK_BYTES - 3);
        assert_eq!(writer.next_record_offset() as usize, BLOCK_BYTES);
        writer.add_record(b"x").unwrap();
        assert_eq!(
            state.lock().unwrap().data[BLOCK_BYTES + 6],
            FragmentType::Full as u8
        );
        let at = writer.len();
        assert_eq!(writer.next_record_offset(), at);
    }

    #[test]
    fn empty_record_is_refused() {
        // An empty payload would read back as a seal marker, so the writer rejects it.
        let (file, _state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        let err = writer.add_record(b"").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        writer.add_record(b"still usable").unwrap();
    }

    #[test]
    fn failed_sync_is_sticky() {
        // After a failed fsync the writer never retries and refuses all work.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        writer.add_record(b"a").unwrap();
        state.lock().unwrap().fail_syncs = true;
        assert!(writer.sync().is_err());
        state.lock().unwrap().fail_syncs = false;
        assert!(writer.sync().is_err());
        assert!(writer.add_record(b"b").is_err());
        assert!(writer.seal().is_err());
    }

    #[test]
    fn seal_syncs_before_and_after_the_marker() {
        // seal leaves the marker durable and carrying the length synced before it.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        writer.add_record(b"a").unwrap();
        let before = writer.len();
        writer.seal().unwrap();
        let state = state.lock().unwrap();
        assert_eq!(state.synced_bytes, state.data.len());
        let at = before as usize;
        assert_eq!(&state.data[at + 4..at + 6], &8u16.to_le_bytes());
        assert_eq!(&state.data[at + 7..at + 15], &before.to_le_bytes());
    }
}
