//! Reads one logical record at a known offset, without replaying the file.
//!
//! Used by logs that keep an index of where each record starts (the Raft
//! log store): the caller remembers the offset [`super::replay`] or the
//! writer reported, and reads the record back later through a
//! [`RandomAccessFile`]. Layout as in `super::writer`:
//!
//! ```text
//! fragment  = crc32 u32 LE | length u16 LE | type u8 | payload[length]
//! record    = durable_watermark u64 LE | caller payload
//!             FULL, or FIRST MIDDLE* LAST; a block trailer (< 7 bytes of
//!             zeros) is skipped between fragments
//! ```
//!
//! Every fragment is checked (bounds against its block and the file, the
//! checksum, the type sequence) before its bytes are used, and the record's
//! total length is bounded by the caller's `max_bytes` before anything more
//! is read, so a damaged length never drives an allocation.

use super::{BLOCK_BYTES, FragmentType, HEADER_BYTES, WATERMARK_BYTES, fragment_crc};
use crate::error::{Error, Result};
use crate::fs::RandomAccessFile;
use std::path::Path;

const BLOCK: u64 = BLOCK_BYTES as u64;
const HEADER: u64 = HEADER_BYTES as u64;

/// Reads the logical record whose first fragment header starts at `offset`
/// of `file` and returns its payload (watermark stripped; empty for a seal
/// marker). `path` only names the file in errors.
///
/// Errors: `Error::Io` if a read fails; `Error::Corruption` (naming `path`
/// and `offset`) if a fragment fails a check, the fragments do not form one
/// record, the record runs past the end of the file, or its payload is
/// longer than `max_bytes`.
pub fn read_record_at(
    file: &dyn RandomAccessFile,
    path: &Path,
    offset: u64,
    max_bytes: usize,
) -> Result<Vec<u8>> {
    let size = file.size();
    let limit = max_bytes.saturating_add(WATERMARK_BYTES);
    let bad = |reason: String| Error::corruption(path, offset, reason);
    if offset >= size {
        return Err(bad(format!(
            "record offset past the end of the file ({size} bytes)"
        )));
    }
    let mut record: Vec<u8> = Vec::new();
    let mut pos = offset;
    let mut first = true;
    loop {
        let block_end = (pos / BLOCK + 1) * BLOCK;
        if block_end - pos < HEADER {
            if first {
                return Err(bad("record offset lies in a block trailer".to_owned()));
            }
            pos = block_end;
            continue;
        }
        if pos.saturating_add(HEADER) > size {
            return Err(bad(format!("record cut by end of file at {pos}")));
        }
        let mut header = [0u8; HEADER_BYTES];
        file.read_exact_at(pos, &mut header)
            .map_err(|e| Error::io("read", path, e))?;
        let [c0, c1, c2, c3, l0, l1, type_byte] = header;
        let crc = u32::from_le_bytes([c0, c1, c2, c3]);
        let length = usize::from(u16::from_le_bytes([l0, l1]));
        let end = pos + HEADER + length as u64;
        if end > block_end {
            return Err(bad(format!(
                "fragment at {pos} of length {length} crosses the block boundary"
            )));
        }
        if end > size {
            return Err(bad(format!(
                "fragment at {pos} of length {length} runs past end of file"
            )));
        }
        let start = record.len();
        if start + length > limit {
            return Err(bad(format!(
                "record longer than the {max_bytes} bytes allowed"
            )));
        }
        record.resize(start + length, 0);
        let piece = record.get_mut(start..).unwrap_or_default();
        file.read_exact_at(pos + HEADER, piece)
            .map_err(|e| Error::io("read", path, e))?;
        if fragment_crc(type_byte, &[piece]) != crc {
            return Err(bad(format!("fragment checksum mismatch at {pos}")));
        }
        let done = match (first, FragmentType::from_u8(type_byte)) {
            (true, Some(FragmentType::Full)) | (false, Some(FragmentType::Last)) => true,
            (true, Some(FragmentType::First)) | (false, Some(FragmentType::Middle)) => false,
            (_, kind) => {
                return Err(bad(format!(
                    "unexpected fragment type {type_byte} ({kind:?}) at {pos}"
                )));
            }
        };
        if done {
            break;
        }
        first = false;
        pos = end;
    }
    let Some((watermark, _)) = record.split_first_chunk::<WATERMARK_BYTES>() else {
        return Err(bad(format!(
            "record of {} bytes is shorter than its watermark",
            record.len()
        )));
    };
    let watermark = u64::from_le_bytes(*watermark);
    if watermark > offset {
        return Err(bad(format!(
            "record watermark {watermark} lies beyond the record"
        )));
    }
    record.drain(..WATERMARK_BYTES);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogWriter;
    use crate::log::tests::VecFile;
    use std::io;

    /// A `RandomAccessFile` over bytes in memory.
    struct Bytes(Vec<u8>);

    impl RandomAccessFile for Bytes {
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let start = offset as usize;
            let src = self
                .0
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past end"))?;
            buf.copy_from_slice(src);
            Ok(())
        }

        fn as_slice(&self) -> Option<&[u8]> {
            Some(&self.0)
        }

        fn size(&self) -> u64 {
            self.0.len() as u64
        }
    }

    /// Writes `sizes` records and returns the file and (offset, payload) of each.
    fn build(sizes: &[usize]) -> (Bytes, Vec<(u64, Vec<u8>)>) {
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        let mut records = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let payload: Vec<u8> = (0..size).map(|j| (i * 7 + j) as u8).collect();
            let len = writer.len();
            let left = BLOCK - len % BLOCK;
            let start = if left < HEADER { len + left } else { len };
            writer.add_record(&payload).unwrap();
            if i % 2 == 0 {
                writer.sync().unwrap();
            }
            records.push((start, payload));
        }
        let data = state.lock().unwrap().data.clone();
        (Bytes(data), records)
    }

    fn path() -> &'static Path {
        Path::new("00000000000000000001.rlog")
    }

    #[test]
    fn reads_back_every_record_at_its_offset() {
        // Small, block-spanning and multi-block records come back byte for byte.
        let sizes = [3, BLOCK_BYTES - 30, 100 * 1024, 1, BLOCK_BYTES * 2 + 5, 9];
        let (file, records) = build(&sizes);
        for (offset, payload) in &records {
            let got = read_record_at(&file, path(), *offset, 1 << 20).unwrap();
            assert_eq!(&got, payload, "record at {offset}");
        }
    }

    #[test]
    fn seal_marker_reads_as_empty_payload() {
        // A seal marker is a valid record with no payload.
        let (file, state) = VecFile::create();
        let mut writer = LogWriter::new(file);
        writer.add_record(b"x").unwrap();
        let at = writer.len();
        writer.seal().unwrap();
        let data = Bytes(state.lock().unwrap().data.clone());
        assert_eq!(read_record_at(&data, path(), at, 10).unwrap(), b"");
    }

    #[test]
    fn record_longer_than_the_bound_is_refused_before_reading_it() {
        // max_bytes bounds the payload; a larger record is corruption, not an allocation.
        let (file, records) = build(&[100 * 1024]);
        let err = read_record_at(&file, path(), records[0].0, 1000).unwrap_err();
        assert!(err.is_corruption(), "{err}");
        assert!(read_record_at(&file, path(), records[0].0, 100 * 1024).is_ok());
    }

    #[test]
    fn flipped_byte_and_wrong_offsets_are_corruption_naming_the_file() {
        // Damage anywhere in the record, or an offset that is not a record start, is an error.
        let (file, records) = build(&[10, 50 * 1024, 10]);
        let big = records[1].0 as usize;
        for at in [big, big + 5, big + 6, big + 20, big + BLOCK_BYTES] {
            let mut data = file.0.clone();
            data[at] ^= 0x41;
            let err = read_record_at(&Bytes(data), path(), big as u64, 1 << 20).unwrap_err();
            match err {
                Error::Corruption {
                    path: p, offset, ..
                } => {
                    assert_eq!(p, path());
                    assert_eq!(offset, big as u64);
                }
                other => panic!("expected corruption, got {other}"),
            }
        }
        for offset in [1, records[1].0 + 7, BLOCK - 3, file.size(), u64::MAX - 3] {
            assert!(read_record_at(&file, path(), offset, 1 << 20).is_err());
        }
        let cut = Bytes(file.0[..big + 100].to_vec());
        assert!(
            read_record_at(&cut, path(), big as u64, 1 << 20)
                .unwrap_err()
                .is_corruption()
        );
    }

    #[test]
    fn garbage_never_panics() {
        // Arbitrary bytes at arbitrary offsets give an error or a record, never a panic.
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (seed >> 40) as usize % 3000;
            let data: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            let offset = (seed >> 20) % (len as u64 + 10);
            let _ = read_record_at(&Bytes(data), path(), offset, 1 << 16);
        }
    }
}
