//! Recomputes the checksums of a mutated file, so a fuzzer's mutations
//! reach the decoders behind them (a random flip almost never passes a
//! crc32). Best effort: whatever cannot be located (a length that runs off
//! the file, a handle outside it) is left as it is.

use crate::log::{BLOCK_BYTES, HEADER_BYTES, fragment_crc};
use crate::table::block::{Block, BlockIter};
use crate::table::format::{BlockHandle, FOOTER_LEN, decompress};
use crate::util::coding::decode_fixed64;
use std::sync::Arc;

/// Rewrites the crc32 of every fragment of a record log (WAL, manifest)
/// whose header and payload lie inside the file and its block.
pub fn fix_record_log_checksums(data: &mut [u8]) {
    let mut pos = 0;
    while pos + HEADER_BYTES <= data.len() {
        let block_end = (pos / BLOCK_BYTES + 1) * BLOCK_BYTES;
        if block_end - pos < HEADER_BYTES {
            pos = block_end;
            continue;
        }
        let length = data
            .get(pos + 4..pos + 6)
            .map_or(0, |l| usize::from(u16::from_le_bytes([l[0], l[1]])));
        let end = pos + HEADER_BYTES + length;
        if end > block_end || end > data.len() {
            pos = block_end;
            continue;
        }
        let kind = data.get(pos + 6).copied().unwrap_or(0);
        let crc = fragment_crc(kind, &[data.get(pos + HEADER_BYTES..end).unwrap_or(&[])]);
        if let Some(slot) = data.get_mut(pos..pos + 4) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
        pos = end;
    }
}

/// Rewrites the footer checksum, then the trailer checksum of the
/// properties, filter and index blocks and of every data block the index
/// names.
pub fn fix_table_checksums(data: &mut [u8]) {
    let Some(footer_offset) = data.len().checked_sub(FOOTER_LEN) else {
        return;
    };
    let limit = footer_offset as u64;
    if let Some(footer) = data.get_mut(footer_offset..) {
        let crc = crc32fast::hash(footer.get(..52).unwrap_or(&[]));
        if let Some(slot) = footer.get_mut(52..56) {
            slot.copy_from_slice(&crc.to_le_bytes());
        }
    }
    let handle = |i: usize| -> BlockHandle {
        let at = footer_offset + 16 * i;
        BlockHandle {
            offset: data.get(at..).and_then(decode_fixed64).unwrap_or(0),
            size: data.get(at + 8..).and_then(decode_fixed64).unwrap_or(0),
        }
    };
    let (index, filter, properties) = (handle(0), handle(1), handle(2));
    for h in [index, filter, properties] {
        fix_block(data, h, limit);
    }
    let Some(contents) = block_contents(data, index, limit) else {
        return;
    };
    let Ok(block) = Block::new(contents) else {
        return;
    };
    let mut it = BlockIter::new(Arc::new(block));
    it.seek_to_first();
    let mut handles = Vec::new();
    while it.valid() && handles.len() < 4096 {
        if let Some(h) = BlockHandle::decode_varint(it.value()) {
            handles.push(h);
        }
        it.next();
    }
    for h in handles {
        fix_block(data, h, limit);
    }
}

fn fix_block(data: &mut [u8], h: BlockHandle, limit: u64) {
    let Some(end) = h.end_within(limit) else {
        return;
    };
    let (start, crc_at) = (h.offset as usize, end as usize - 4);
    let crc = crc32fast::hash(data.get(start..crc_at).unwrap_or(&[]));
    if let Some(slot) = data.get_mut(crc_at..crc_at + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// The decoded contents of the block at `h`, checksum not checked.
fn block_contents(data: &[u8], h: BlockHandle, limit: u64) -> Option<Vec<u8>> {
    let end = h.end_within(limit)? as usize;
    let payload = data.get(h.offset as usize..end - 5)?;
    match data.get(end - 5)? {
        0 => Some(payload.to_vec()),
        1 => decompress(payload).ok(),
        _ => None,
    }
}
