//! Table file framing: block handles, the block trailer, compression, the
//! properties block and the footer. Layout (do not change: on disk; every
//! byte is in `docs/format.md`, "Tables"):
//!
//! ```text
//! table   = data block* | filter block? | index block | properties block | footer
//! block   = payload | type u8 | crc32 u32 LE          (crc32fast over payload ++ type)
//!   type 0 (none): payload = block contents
//!   type 1 (lz4):  payload = uncompressed_len varint64 | lz4_flex block bytes
//! handle  = offset, size of the payload (the 5-byte trailer follows it)
//!   in the index:  offset varint64 | size varint64
//!   in the footer: offset u64 LE  | size u64 LE
//! properties contents = count varint64 | count x varint64 (TableProperties
//!   fields in declaration order; readers need >= 10, ignore extra ones)
//! footer (64 bytes) = index handle | filter handle | properties handle
//!   | format_version u32 LE (= 1) | crc32 u32 LE of footer bytes 0..52
//!   | magic u64 LE (the bytes "cairnsst")
//! ```
//!
//! A filter handle of size 0 means the table has no filter.

use crate::error::{Error, Result};
use crate::fs::RandomAccessFile;
use crate::options::Compression;
use crate::util::coding::{Decoder, put_fixed32, put_fixed64, put_varint64};
use std::path::Path;

/// Bytes after each block's payload: type u8 + crc32 u32.
pub(crate) const BLOCK_TRAILER_LEN: usize = 5;
/// Bytes in the footer at the end of every table.
pub(crate) const FOOTER_LEN: usize = 64;
/// The last 8 bytes of every table file: "cairnsst" (do not change: on disk).
pub(crate) const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"cairnsst");
/// The only format version written and read (do not change: on disk).
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Footer bytes covered by the footer checksum.
const FOOTER_CRC_COVERS: usize = 52;
/// lz4 never expands a block's bytes more than this ratio; a claimed
/// uncompressed length beyond `compressed * 255 + 64` is corruption.
const LZ4_MAX_RATIO: usize = 255;
const LZ4_MAX_RATIO_SLACK: usize = 64;

/// How a block's payload is stored (do not change: on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum BlockType {
    /// Contents stored as they are (do not change: on disk).
    None = 0,
    /// `uncompressed_len varint64 | lz4 block` (do not change: on disk).
    Lz4 = 1,
}

impl BlockType {
    fn from_u8(b: u8) -> Option<BlockType> {
        match b {
            0 => Some(BlockType::None),
            1 => Some(BlockType::Lz4),
            _ => None,
        }
    }
}

/// Where a block's payload lies in the file (the trailer follows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct BlockHandle {
    pub offset: u64,
    pub size: u64,
}

impl BlockHandle {
    pub(crate) fn encode_varint(&self, dst: &mut Vec<u8>) {
        put_varint64(dst, self.offset);
        put_varint64(dst, self.size);
    }

    /// Decodes an index value; trailing bytes are an error.
    pub(crate) fn decode_varint(src: &[u8]) -> Option<BlockHandle> {
        let mut d = Decoder::new(src);
        let h = BlockHandle {
            offset: d.varint64()?,
            size: d.varint64()?,
        };
        d.is_empty().then_some(h)
    }

    /// The end of the block including its trailer, if it fits in `limit`.
    pub(crate) fn end_within(&self, limit: u64) -> Option<u64> {
        let end = self
            .offset
            .checked_add(self.size)?
            .checked_add(BLOCK_TRAILER_LEN as u64)?;
        (end <= limit).then_some(end)
    }
}

/// Statistics of one table, kept in its properties block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TableProperties {
    pub num_entries: u64,
    /// Point tombstones among the entries.
    pub num_deletions: u64,
    pub num_data_blocks: u64,
    /// Sum of internal-key lengths.
    pub raw_key_bytes: u64,
    pub raw_value_bytes: u64,
    /// Bytes of data blocks on disk, trailers included.
    pub data_bytes: u64,
    /// Bytes of the index block on disk, trailer included.
    pub index_bytes: u64,
    /// Bytes of the filter block on disk, trailer included (0: no filter).
    pub filter_bytes: u64,
    /// Sequence-number range of the entries (0, 0 for an empty table).
    pub smallest_seq: u64,
    pub largest_seq: u64,
}

/// Fields in a properties block written by this version.
const NUM_PROPERTIES: u64 = 10;

impl TableProperties {
    fn fields(&self) -> [u64; NUM_PROPERTIES as usize] {
        [
            self.num_entries,
            self.num_deletions,
            self.num_data_blocks,
            self.raw_key_bytes,
            self.raw_value_bytes,
            self.data_bytes,
            self.index_bytes,
            self.filter_bytes,
            self.smallest_seq,
            self.largest_seq,
        ]
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 10 * NUM_PROPERTIES as usize);
        put_varint64(&mut out, NUM_PROPERTIES);
        for f in self.fields() {
            put_varint64(&mut out, f);
        }
        out
    }

    /// Decodes a properties block; `Err` says what is wrong.
    pub(crate) fn decode(src: &[u8]) -> Result<TableProperties, &'static str> {
        let mut d = Decoder::new(src);
        let count = d.varint64().ok_or("truncated property count")?;
        if count < NUM_PROPERTIES {
            return Err("too few properties");
        }
        let mut f = [0u64; NUM_PROPERTIES as usize];
        for slot in &mut f {
            *slot = d.varint64().ok_or("truncated property")?;
        }
        // Fields added by later versions: skipped, bounded by the block.
        for _ in NUM_PROPERTIES..count {
            d.varint64().ok_or("truncated property")?;
        }
        if !d.is_empty() {
            return Err("trailing bytes after properties");
        }
        let [
            num_entries,
            num_deletions,
            num_data_blocks,
            raw_key_bytes,
            raw_value_bytes,
            data_bytes,
            index_bytes,
            filter_bytes,
            smallest_seq,
            largest_seq,
        ] = f;
        Ok(TableProperties {
            num_entries,
            num_deletions,
            num_data_blocks,
            raw_key_bytes,
            raw_value_bytes,
            data_bytes,
            index_bytes,
            filter_bytes,
            smallest_seq,
            largest_seq,
        })
    }
}

/// The fixed-size record at the end of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Footer {
    pub index: BlockHandle,
    /// Size 0: the table has no filter.
    pub filter: BlockHandle,
    pub properties: BlockHandle,
}

impl Footer {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FOOTER_LEN);
        for h in [self.index, self.filter, self.properties] {
            put_fixed64(&mut out, h.offset);
            put_fixed64(&mut out, h.size);
        }
        put_fixed32(&mut out, FORMAT_VERSION);
        let crc = crc32fast::hash(&out);
        put_fixed32(&mut out, crc);
        put_fixed64(&mut out, TABLE_MAGIC);
        debug_assert_eq!(out.len(), FOOTER_LEN);
        out
    }

    /// Decodes the last `FOOTER_LEN` bytes of a table. Checks the magic
    /// first (is this a table at all?), then the checksum, then the version.
    pub(crate) fn decode(src: &[u8]) -> Result<Footer, &'static str> {
        if src.len() != FOOTER_LEN {
            return Err("footer has the wrong length");
        }
        let mut d = Decoder::new(src);
        let mut handle = || -> Option<BlockHandle> {
            Some(BlockHandle {
                offset: d.fixed64()?,
                size: d.fixed64()?,
            })
        };
        let (Some(index), Some(filter), Some(properties)) = (handle(), handle(), handle()) else {
            return Err("truncated footer");
        };
        let (Some(version), Some(crc), Some(magic)) = (d.fixed32(), d.fixed32(), d.fixed64())
        else {
            return Err("truncated footer");
        };
        if magic != TABLE_MAGIC {
            return Err("bad table magic");
        }
        if src.get(..FOOTER_CRC_COVERS).map(crc32fast::hash) != Some(crc) {
            return Err("footer checksum mismatch");
        }
        if version != FORMAT_VERSION {
            return Err("unknown table format version");
        }
        Ok(Footer {
            index,
            filter,
            properties,
        })
    }
}

/// Frames `contents` as `payload | type | crc32`, compressing with lz4 when
/// asked and when that saves at least 1/8 of the bytes (less is not worth
/// the decompression on every cache miss).
pub(crate) fn encode_block(contents: &[u8], compression: Compression) -> Vec<u8> {
    let mut out = Vec::new();
    let mut block_type = BlockType::None;
    if compression == Compression::Lz4 {
        put_varint64(&mut out, contents.len() as u64);
        let header = out.len();
        out.resize(
            header + lz4_flex::block::get_maximum_output_size(contents.len()),
            0,
        );
        let compressed = out
            .get_mut(header..)
            .and_then(|dst| lz4_flex::block::compress_into(contents, dst).ok());
        match compressed {
            Some(n) if header + n <= contents.len() - contents.len() / 8 => {
                out.truncate(header + n);
                block_type = BlockType::Lz4;
            }
            _ => out.clear(),
        }
    }
    if block_type == BlockType::None {
        out.extend_from_slice(contents);
    }
    out.push(block_type as u8);
    let crc = crc32fast::hash(&out);
    put_fixed32(&mut out, crc);
    out
}

/// Reads, verifies (checksum before anything else) and decompresses the
/// block at `handle`, which must end within `limit` (the start of the
/// footer). Errors name `path` and the block's offset.
pub(crate) fn read_block(
    file: &dyn RandomAccessFile,
    path: &Path,
    handle: BlockHandle,
    limit: u64,
) -> Result<Vec<u8>> {
    let corrupt = |reason: &str| Error::corruption(path, handle.offset, reason);
    let Some(end) = handle.end_within(limit) else {
        return Err(corrupt("block handle points past the end of the table"));
    };
    let (start, end) = (handle.offset as usize, end as usize);
    match file.as_slice() {
        Some(all) => {
            let framed = all
                .get(start..end)
                .ok_or_else(|| corrupt("block outside the file"))?;
            let (payload, block_type) = verify(framed).map_err(corrupt)?;
            match block_type {
                BlockType::None => Ok(payload.to_vec()),
                BlockType::Lz4 => decompress(payload).map_err(corrupt),
            }
        }
        None => {
            // `end <= limit <= file size`, so this allocation is bounded by
            // the file's real size, not by a claimed length.
            let mut framed = vec![0u8; end - start];
            file.read_exact_at(handle.offset, &mut framed)
                .map_err(|e| Error::io("read table block", path, e))?;
            let (payload, block_type) = verify(&framed).map_err(corrupt)?;
            match block_type {
                BlockType::None => {
                    framed.truncate(end - start - BLOCK_TRAILER_LEN);
                    Ok(framed)
                }
                BlockType::Lz4 => decompress(payload).map_err(corrupt),
            }
        }
    }
}

/// Checks the trailer of a framed block; returns the payload and its type.
fn verify(framed: &[u8]) -> Result<(&[u8], BlockType), &'static str> {
    let split = framed
        .len()
        .checked_sub(4)
        .ok_or("block shorter than its trailer")?;
    let (covered, crc) = framed.split_at(split);
    let stored =
        crate::util::coding::decode_fixed32(crc).ok_or("block shorter than its trailer")?;
    if crc32fast::hash(covered) != stored {
        return Err("block checksum mismatch");
    }
    let (&type_byte, payload) = covered
        .split_last()
        .ok_or("block shorter than its trailer")?;
    let block_type = BlockType::from_u8(type_byte).ok_or("unknown block compression type")?;
    Ok((payload, block_type))
}

/// Decompresses an lz4 payload, bounding the claimed length by lz4's
/// maximum ratio before allocating it.
pub(crate) fn decompress(payload: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut d = Decoder::new(payload);
    let claimed = d.varint64().ok_or("truncated uncompressed length")?;
    let compressed = d.remaining();
    let bound = compressed
        .len()
        .saturating_mul(LZ4_MAX_RATIO)
        .saturating_add(LZ4_MAX_RATIO_SLACK);
    let len = usize::try_from(claimed)
        .ok()
        .filter(|&l| l <= bound)
        .ok_or("uncompressed length beyond lz4's maximum ratio")?;
    let mut out = vec![0u8; len];
    match lz4_flex::block::decompress_into(compressed, &mut out) {
        Ok(n) if n == len => Ok(out),
        Ok(_) => Err("lz4 block shorter than its uncompressed length"),
        Err(_) => Err("lz4 block does not decompress"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_roundtrips_and_rejects_magic_checksum_and_version() {
        // The footer decodes to what was written; each of its checks fires.
        let f = Footer {
            index: BlockHandle { offset: 1, size: 2 },
            filter: BlockHandle { offset: 3, size: 4 },
            properties: BlockHandle { offset: 5, size: 6 },
        };
        let bytes = f.encode();
        assert_eq!(bytes.len(), FOOTER_LEN);
        assert_eq!(&bytes[56..], b"cairnsst");
        assert_eq!(Footer::decode(&bytes), Ok(f));
        let mut bad = bytes.clone();
        bad[63] ^= 1;
        assert_eq!(Footer::decode(&bad), Err("bad table magic"));
        let mut bad = bytes.clone();
        bad[0] ^= 1;
        assert_eq!(Footer::decode(&bad), Err("footer checksum mismatch"));
        let mut bad = bytes.clone();
        bad[48] = 2;
        let crc = crc32fast::hash(&bad[..52]);
        bad[52..56].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Footer::decode(&bad), Err("unknown table format version"));
        assert!(Footer::decode(&bytes[1..]).is_err());
    }

    #[test]
    fn properties_roundtrip_and_tolerate_extra_fields() {
        // Later versions may append fields; fewer than ten is corruption.
        let p = TableProperties {
            num_entries: 1,
            num_deletions: 2,
            num_data_blocks: 3,
            raw_key_bytes: 4,
            raw_value_bytes: 5,
            data_bytes: 6,
            index_bytes: 7,
            filter_bytes: 8,
            smallest_seq: 9,
            largest_seq: u64::MAX,
        };
        assert_eq!(TableProperties::decode(&p.encode()), Ok(p.clone()));
        let mut extended = p.encode();
        extended[0] = 11;
        extended.push(99);
        assert_eq!(TableProperties::decode(&extended), Ok(p.clone()));
        let mut short = p.encode();
        short[0] = 9;
        assert!(TableProperties::decode(&short).is_err());
        assert!(TableProperties::decode(&p.encode()[..5]).is_err());
    }

    #[test]
    fn lz4_kept_only_when_it_saves_an_eighth() {
        // Compressible contents are stored as lz4; random bytes stay raw.
        let compressible = vec![7u8; 4096];
        let framed = encode_block(&compressible, Compression::Lz4);
        assert_eq!(framed[framed.len() - 5], BlockType::Lz4 as u8);
        assert!(framed.len() < 4096 / 8);
        let (payload, t) = verify(&framed).unwrap();
        assert_eq!(
            (decompress(payload).unwrap(), t),
            (compressible, BlockType::Lz4)
        );
        let mut x = 1u64;
        let random: Vec<u8> = (0..4096)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 56) as u8
            })
            .collect();
        let framed = encode_block(&random, Compression::Lz4);
        assert_eq!(framed.len(), random.len() + BLOCK_TRAILER_LEN);
        assert_eq!(verify(&framed).unwrap(), (&random[..], BlockType::None));
    }

    #[test]
    fn hostile_uncompressed_len_is_rejected_before_allocation() {
        // A claimed 2^60-byte block over a few compressed bytes fails the
        // ratio bound; nothing near that size is allocated.
        let mut payload = Vec::new();
        put_varint64(&mut payload, 1 << 60);
        payload.extend_from_slice(&[0x10, b'a']);
        assert_eq!(
            decompress(&payload),
            Err("uncompressed length beyond lz4's maximum ratio")
        );
        let mut payload = Vec::new();
        put_varint64(&mut payload, 2 * 255 + 65);
        payload.extend_from_slice(&[0x10, b'a']);
        assert!(decompress(&payload).is_err());
        // Within the bound but lying about the length: an error, not a panic.
        let mut payload = Vec::new();
        put_varint64(&mut payload, 100);
        payload.extend_from_slice(&[0x10, b'a']);
        assert!(decompress(&payload).is_err());
    }
}
