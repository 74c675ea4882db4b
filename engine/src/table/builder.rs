//! Writes a table. File layout (do not change: on disk; every byte is in
//! `docs/format.md`, "Tables"; framing in `format.rs`):
//!
//! ```text
//! data block 0 | ... | data block n-1 | filter block? | index block
//!   | properties block | footer (64 bytes)
//! ```
//!
//! Data blocks hold the entries in `compare_internal` order, cut when a
//! block reaches `block_size_bytes`. The index block (restart interval 1)
//! maps each data block's last internal key to `offset varint64 | size
//! varint64` of that block. The filter is one bloom filter over the table's
//! user keys. Data and index blocks are lz4-compressed when the options say
//! so and it pays; filter and properties blocks are stored raw.
//!
//! An I/O error is sticky: every later call returns it, and the half-written
//! file must be deleted by the caller (it has no footer, so it never opens).

use crate::error::{Error, Result};
use crate::fs::WritableFile;
use crate::key::{ValueKind, compare_internal, parse_internal_key};
use crate::options::{Compression, TableOptions};
use crate::table::block_builder::BlockBuilder;
use crate::table::filter::FilterBuilder;
use crate::table::format::{BLOCK_TRAILER_LEN, BlockHandle, Footer, TableProperties, encode_block};
use std::cmp::Ordering;
use std::path::PathBuf;

/// Largest key or value the builder accepts: keeps every block far below the
/// u32 offsets of the block format (the engine's own limits are lower).
pub(crate) const MAX_ENTRY_PART_BYTES: usize = 1 << 30;
/// Largest data-block target honoured, for the same reason.
const MAX_BLOCK_TARGET_BYTES: usize = 1 << 30;

/// What a finished table holds, for the version edit that adds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TableSummary {
    pub file_size: u64,
    /// The first and last internal keys (empty for an empty table).
    pub smallest: Vec<u8>,
    pub largest: Vec<u8>,
    pub props: TableProperties,
}

pub(crate) struct TableBuilder {
    file: Box<dyn WritableFile>,
    path: PathBuf,
    opts: TableOptions,
    block_size_bytes: usize,
    data_block: BlockBuilder,
    index_block: BlockBuilder,
    filter: Option<FilterBuilder>,
    /// Bytes written to the file so far.
    offset: u64,
    smallest: Vec<u8>,
    last_key: Vec<u8>,
    props: TableProperties,
    failed: Option<Error>,
}

impl TableBuilder {
    pub(crate) fn new(file: Box<dyn WritableFile>, path: PathBuf, opts: TableOptions) -> Self {
        let offset = file.len();
        debug_assert_eq!(offset, 0, "a table starts at the start of its file");
        TableBuilder {
            file,
            path,
            opts,
            block_size_bytes: opts.block_size_bytes.clamp(1, MAX_BLOCK_TARGET_BYTES),
            data_block: BlockBuilder::new(opts.block_restart_interval),
            index_block: BlockBuilder::new(1),
            filter: (opts.bloom_bits_per_key > 0)
                .then(|| FilterBuilder::new(opts.bloom_bits_per_key)),
            offset,
            smallest: Vec::new(),
            last_key: Vec::new(),
            props: TableProperties::default(),
            failed: None,
        }
    }

    /// Appends an entry.
    /// REQUIRES: ikey is a valid internal key, strictly greater (compare_internal) than the previous one.
    /// Violations return `InvalidArgument` (and write nothing) rather than a
    /// table that would read back out of order.
    pub(crate) fn add(&mut self, ikey: &[u8], value: &[u8]) -> Result<()> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let Some(parsed) = parse_internal_key(ikey) else {
            return Err(Error::InvalidArgument(
                "table builder: not an internal key".into(),
            ));
        };
        if self.props.num_entries > 0 && compare_internal(ikey, &self.last_key) != Ordering::Greater
        {
            return Err(Error::InvalidArgument(
                "table builder: keys not strictly increasing".into(),
            ));
        }
        if ikey.len() > MAX_ENTRY_PART_BYTES || value.len() > MAX_ENTRY_PART_BYTES {
            return Err(Error::InvalidArgument(
                "table builder: key or value over 1 GiB".into(),
            ));
        }
        if let Some(f) = &mut self.filter {
            f.add_key(parsed.user_key);
        }
        let p = &mut self.props;
        if p.num_entries == 0 {
            self.smallest = ikey.to_vec();
            p.smallest_seq = parsed.seq;
        }
        p.num_entries += 1;
        p.num_deletions += u64::from(parsed.kind == ValueKind::Delete);
        p.raw_key_bytes += ikey.len() as u64;
        p.raw_value_bytes += value.len() as u64;
        p.smallest_seq = p.smallest_seq.min(parsed.seq);
        p.largest_seq = p.largest_seq.max(parsed.seq);
        self.last_key.clear();
        self.last_key.extend_from_slice(ikey);
        self.data_block.add(ikey, value);
        if self.data_block.size_estimate() >= self.block_size_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// Bytes the file would have if finished now, not counting filter,
    /// index and properties (what compaction compares with its target).
    pub(crate) fn estimated_size(&self) -> u64 {
        self.offset + self.data_block.size_estimate() as u64
    }

    pub(crate) fn num_entries(&self) -> u64 {
        self.props.num_entries
    }

    /// Writes the last data block, filter, index, properties and footer, then syncs the file.
    pub(crate) fn finish(mut self) -> Result<TableSummary> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.flush_data_block()?;
        let filter = match self.filter.take() {
            Some(f) => {
                let h = self.write_block(&f.finish(), Compression::None)?;
                self.props.filter_bytes = h.size + BLOCK_TRAILER_LEN as u64;
                h
            }
            None => BlockHandle::default(),
        };
        let index_contents = self.index_block.finish();
        let index = self.write_block(&index_contents, self.opts.compression)?;
        self.props.index_bytes = index.size + BLOCK_TRAILER_LEN as u64;
        let properties = self.write_block(&self.props.encode(), Compression::None)?;
        let footer = Footer {
            index,
            filter,
            properties,
        };
        self.append(&footer.encode())?;
        self.file
            .sync()
            .map_err(|e| Error::io("fsync table", &self.path, e))?;
        debug_assert_eq!(self.file.len(), self.offset);
        Ok(TableSummary {
            file_size: self.offset,
            smallest: self.smallest,
            largest: self.last_key,
            props: self.props,
        })
    }

    fn flush_data_block(&mut self) -> Result<()> {
        if self.data_block.is_empty() {
            return Ok(());
        }
        debug_assert_eq!(self.data_block.last_key(), &self.last_key[..]);
        let contents = self.data_block.finish();
        let handle = self.write_block(&contents, self.opts.compression)?;
        let mut encoded = Vec::with_capacity(20);
        handle.encode_varint(&mut encoded);
        self.index_block.add(&self.last_key, &encoded);
        self.props.num_data_blocks += 1;
        self.props.data_bytes += handle.size + BLOCK_TRAILER_LEN as u64;
        Ok(())
    }

    fn write_block(&mut self, contents: &[u8], compression: Compression) -> Result<BlockHandle> {
        let framed = encode_block(contents, compression);
        let handle = BlockHandle {
            offset: self.offset,
            size: (framed.len() - BLOCK_TRAILER_LEN) as u64,
        };
        self.append(&framed)?;
        Ok(handle)
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if let Err(e) = self.file.append(bytes) {
            let e = Error::io("append table", &self.path, e);
            self.failed = Some(e.clone());
            return Err(e);
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }
}
