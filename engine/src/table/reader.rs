//! Reads a table: footer, properties, index and filter at open (held in
//! memory for the table's life), data blocks on demand through the block
//! cache. Byte layout: `builder.rs`, `format.rs`, `docs/format.md`.
//!
//! Every block read from the file is checksummed before it is decompressed
//! or parsed, every handle is bounds-checked against the file, and every
//! failure is `Error::Corruption` naming the table's path and the offset of
//! the block (plus the offset inside the decoded block in the reason).

use crate::error::{Error, Result};
use crate::fs::RandomAccessFile;
use crate::iter::{Direction, InternalIterator};
use crate::key;
use crate::table::BlockCache;
use crate::table::block::{Block, BlockError, BlockIter};
use crate::table::filter;
use crate::table::format::{BlockHandle, FOOTER_LEN, Footer, TableProperties, read_block};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open table. Immutable and `Send + Sync`: share it through `Arc`.
pub(crate) struct Table {
    file: Arc<dyn RandomAccessFile>,
    path: PathBuf,
    file_number: u64,
    cache: Arc<BlockCache>,
    /// Offset of the footer: every block must end at or before it.
    footer_offset: u64,
    index_offset: u64,
    index: Arc<Block>,
    filter: Option<Vec<u8>>,
    props: TableProperties,
}

impl Table {
    /// Reads and verifies footer, properties, index and filter (held in memory). Corruption errors name `path` and the offset.
    pub(crate) fn open(
        file: Arc<dyn RandomAccessFile>,
        path: PathBuf,
        file_number: u64,
        cache: Arc<BlockCache>,
    ) -> Result<Table> {
        let size = file.size();
        let Some(footer_offset) = size.checked_sub(FOOTER_LEN as u64) else {
            return Err(Error::corruption(
                &path,
                0,
                "file shorter than a table footer",
            ));
        };
        let footer = read_footer(file.as_ref(), &path, footer_offset)?;
        let corrupt = |offset: u64, reason: &str| Error::corruption(&path, offset, reason);

        let props_bytes = read_block(file.as_ref(), &path, footer.properties, footer_offset)?;
        let props = TableProperties::decode(&props_bytes)
            .map_err(|r| corrupt(footer.properties.offset, r))?;

        let index_bytes = read_block(file.as_ref(), &path, footer.index, footer_offset)?;
        let index = Block::with_fences(index_bytes)
            .map_err(|e| block_corruption(&path, footer.index.offset, e))?;
        let index = Arc::new(index);
        let index_error = |e| block_corruption(&path, footer.index.offset, e);
        check_index_handles(&index, footer_offset, &props).map_err(|e| match e {
            IndexProblem::Block(e) => index_error(e),
            IndexProblem::Handle(reason) => corrupt(footer.index.offset, reason),
        })?;

        let filter = if footer.filter.size == 0 {
            None
        } else {
            let f = read_block(file.as_ref(), &path, footer.filter, footer_offset)?;
            filter::validate(&f).map_err(|r| corrupt(footer.filter.offset, r))?;
            Some(f)
        };
        Ok(Table {
            file,
            path,
            file_number,
            cache,
            footer_offset,
            index_offset: footer.index.offset,
            index,
            filter,
            props,
        })
    }

    /// The first entry whose internal key >= `lookup` (a key::lookup_key) if its user key equals key::user_key(lookup); checks the bloom filter first. Returns (internal key, value).
    pub(crate) fn get(&self, lookup: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let user_key = key::user_key(lookup);
        if !self.may_contain(user_key) {
            return Ok(None);
        }
        let mut index = BlockIter::new(Arc::clone(&self.index));
        index.seek_ge(lookup);
        if let Some(e) = index.error() {
            return Err(block_corruption(&self.path, self.index_offset, e));
        }
        if !index.valid() {
            return Ok(None);
        }
        let handle = self.decode_handle(index.value())?;
        let mut data = BlockIter::new(self.read_data_block(handle, true)?);
        data.seek_ge(lookup);
        if let Some(e) = data.error() {
            return Err(block_corruption(&self.path, handle.offset, e));
        }
        if data.valid() && key::user_key(data.key()) == user_key {
            return Ok(Some((data.key().to_vec(), data.value().to_vec())));
        }
        Ok(None)
    }

    /// False only if the table certainly holds no version of `user_key`.
    pub(crate) fn may_contain(&self, user_key: &[u8]) -> bool {
        self.filter
            .as_deref()
            .is_none_or(|f| filter::may_contain(f, user_key))
    }

    /// fill_cache=false for compaction reads (don't pollute the block cache).
    pub(crate) fn iter(self: &Arc<Self>, dir: Direction, fill_cache: bool) -> TableIterator {
        TableIterator {
            index: BlockIter::new(Arc::clone(&self.index)),
            table: Arc::clone(self),
            dir,
            fill_cache,
            data: None,
            data_handle: BlockHandle::default(),
            err: None,
        }
    }

    /// Where the table's bytes lie along the key space, read off the index
    /// without touching a data block: at most `points_max` pairs, in key
    /// order, of a user key and the bytes of the data blocks since the
    /// previous pair, up to and including the block that key ends (as the
    /// index holds it, a key at or above the block's last). Consecutive
    /// blocks are grouped to stay within `points_max`, so a caller's memory
    /// does not grow with the table. Subcompactions split their work on
    /// these.
    pub(crate) fn block_ends(&self, points_max: usize) -> Vec<(Vec<u8>, u64)> {
        let blocks = usize::try_from(self.props.num_data_blocks).unwrap_or(usize::MAX);
        let per_point = blocks.div_ceil(points_max.max(1)).max(1);
        let mut ends = Vec::with_capacity(blocks.min(points_max));
        let (mut bytes, mut grouped) = (0u64, 0usize);
        let mut it = BlockIter::new(Arc::clone(&self.index));
        it.seek_to_first();
        while it.valid() {
            // `Table::open` checked every index key and handle.
            if let Some(h) = BlockHandle::decode_varint(it.value()) {
                bytes += h.size;
                grouped += 1;
            }
            let last = {
                let key = key::user_key(it.key()).to_vec();
                it.next();
                (grouped == per_point || !it.valid()).then_some(key)
            };
            if let Some(key) = last {
                ends.push((key, bytes));
                (bytes, grouped) = (0, 0);
            }
        }
        ends
    }

    pub(crate) fn properties(&self) -> &TableProperties {
        &self.props
    }

    /// Bytes held in memory for index and filter (charged to the table cache).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.index.charge()
            + self.filter.as_ref().map_or(0, Vec::capacity)
            + self.path.as_os_str().len()
            + std::mem::size_of::<Table>()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn decode_handle(&self, value: &[u8]) -> Result<BlockHandle> {
        BlockHandle::decode_varint(value)
            .filter(|h| h.end_within(self.footer_offset).is_some())
            .ok_or_else(|| {
                Error::corruption(&self.path, self.index_offset, "bad block handle in index")
            })
    }

    /// The data block at `handle`, from the cache or read (and verified)
    /// from the file; cached afterwards only when `fill_cache`.
    fn read_data_block(&self, handle: BlockHandle, fill_cache: bool) -> Result<Arc<Block>> {
        let cache_key = (self.file_number, handle.offset);
        if let Some(block) = self.cache.get(&cache_key) {
            return Ok(block);
        }
        let contents = read_block(self.file.as_ref(), &self.path, handle, self.footer_offset)?;
        // A cached block is sought many times and pays for its fences; a
        // compaction's block is read once, front to back.
        let block = if fill_cache {
            Block::with_fences(contents)
        } else {
            Block::new(contents)
        };
        let block = block.map_err(|e| block_corruption(&self.path, handle.offset, e))?;
        let block = Arc::new(block);
        if fill_cache {
            self.cache
                .insert(cache_key, Arc::clone(&block), block.charge());
        }
        Ok(block)
    }
}

fn read_footer(file: &dyn RandomAccessFile, path: &Path, footer_offset: u64) -> Result<Footer> {
    let mut buf = [0u8; FOOTER_LEN];
    let bytes: &[u8] = match file.as_slice() {
        Some(all) => all.get(footer_offset as usize..).unwrap_or(&[]),
        None => {
            file.read_exact_at(footer_offset, &mut buf)
                .map_err(|e| Error::io("read table footer", path, e))?;
            &buf
        }
    };
    Footer::decode(bytes).map_err(|r| Error::corruption(path, footer_offset, r))
}

fn block_corruption(path: &Path, block_offset: u64, e: BlockError) -> Error {
    Error::corruption(
        path,
        block_offset,
        format!("{} (at byte {} of the decoded block)", e.reason, e.offset),
    )
}

enum IndexProblem {
    Block(BlockError),
    Handle(&'static str),
}

/// Walks the index once at open: every handle decodes, lies before the
/// footer, follows the previous block, and there are as many as the
/// properties say. Later reads then never chase a wild handle.
fn check_index_handles(
    index: &Arc<Block>,
    footer_offset: u64,
    props: &TableProperties,
) -> Result<(), IndexProblem> {
    let mut it = BlockIter::new(Arc::clone(index));
    it.seek_to_first();
    let (mut count, mut prev_end) = (0u64, 0u64);
    while it.valid() {
        let h = BlockHandle::decode_varint(it.value())
            .ok_or(IndexProblem::Handle("bad block handle in index"))?;
        let end = h
            .end_within(footer_offset)
            .ok_or(IndexProblem::Handle("block handle past the footer"))?;
        if h.offset < prev_end {
            return Err(IndexProblem::Handle(
                "data blocks overlap or are out of order",
            ));
        }
        if key::parse_internal_key(it.key()).is_none() {
            return Err(IndexProblem::Handle("index key is not an internal key"));
        }
        prev_end = end;
        count += 1;
        it.next();
    }
    if let Some(e) = it.error() {
        return Err(IndexProblem::Block(e));
    }
    if count != props.num_data_blocks {
        return Err(IndexProblem::Handle(
            "index and properties disagree on data blocks",
        ));
    }
    Ok(())
}

/// A two-level iterator (index block, then data blocks) in one direction.
/// Holds its table and the current data block alive through `Arc`s, so it
/// stays valid however the cache evicts.
pub(crate) struct TableIterator {
    table: Arc<Table>,
    dir: Direction,
    fill_cache: bool,
    index: BlockIter,
    data: Option<BlockIter>,
    data_handle: BlockHandle,
    err: Option<Error>,
}

impl TableIterator {
    /// Loads the block the index points at and positions in it with `pos`;
    /// clears the data cursor when the index is exhausted.
    fn enter_block(&mut self, pos: impl FnOnce(&mut BlockIter)) {
        if !self.index.valid() {
            self.data = None;
            return;
        }
        let loaded = self
            .table
            .decode_handle(self.index.value())
            .and_then(|h| Ok((h, self.table.read_data_block(h, self.fill_cache)?)));
        match loaded {
            Ok((handle, block)) => {
                self.data_handle = handle;
                let mut data = BlockIter::new(block);
                pos(&mut data);
                self.data = Some(data);
            }
            Err(e) => {
                self.data = None;
                self.err = Some(e);
            }
        }
    }

    /// True (and the iterator stopped) once any error is met.
    fn stopped(&mut self) -> bool {
        if self.err.is_some() {
            return true;
        }
        let (path, index_offset) = (&self.table.path, self.table.index_offset);
        let e = if let Some(e) = self.index.error() {
            block_corruption(path, index_offset, e)
        } else if let Some(e) = self.data.as_ref().and_then(BlockIter::error) {
            block_corruption(path, self.data_handle.offset, e)
        } else {
            return false;
        };
        self.err = Some(e);
        self.data = None;
        true
    }

    /// Moves across data blocks until positioned at an entry, at the end, or
    /// at an error; empty blocks (never written, but possible on disk) are
    /// skipped.
    fn settle(&mut self) {
        loop {
            if self.stopped() {
                return;
            }
            match &self.data {
                None => return,
                Some(d) if d.valid() => return,
                Some(_) => {}
            }
            match self.dir {
                Direction::Forward => {
                    self.index.next();
                    self.enter_block(BlockIter::seek_to_first);
                }
                Direction::Reverse => {
                    self.index.prev();
                    self.enter_block(BlockIter::seek_to_last);
                }
            }
        }
    }
}

impl InternalIterator for TableIterator {
    fn seek_to_first(&mut self) {
        if self.err.is_some() {
            return;
        }
        match self.dir {
            Direction::Forward => {
                self.index.seek_to_first();
                self.enter_block(BlockIter::seek_to_first);
            }
            Direction::Reverse => {
                self.index.seek_to_last();
                self.enter_block(BlockIter::seek_to_last);
            }
        }
        self.settle();
    }

    fn seek(&mut self, target: &[u8]) {
        if self.err.is_some() {
            return;
        }
        // The first block whose last key >= target holds the first entry
        // >= target, and possibly the last entry <= target; if none of its
        // entries is <= target, that entry ends the previous block, which
        // `settle` steps back to. No such block: every key < target.
        self.index.seek_ge(target);
        match self.dir {
            Direction::Forward => self.enter_block(|d| d.seek_ge(target)),
            Direction::Reverse => {
                if !self.index.valid() && self.index.error().is_none() {
                    self.index.seek_to_last();
                }
                self.enter_block(|d| d.seek_le(target));
            }
        }
        self.settle();
    }

    fn next(&mut self) {
        if !self.valid() {
            return;
        }
        if let Some(d) = &mut self.data {
            match self.dir {
                Direction::Forward => d.next(),
                Direction::Reverse => d.prev(),
            }
        }
        self.settle();
    }

    fn valid(&self) -> bool {
        self.err.is_none() && self.data.as_ref().is_some_and(BlockIter::valid)
    }

    fn key(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], BlockIter::key)
    }

    fn value(&self) -> &[u8] {
        self.data.as_ref().map_or(&[], BlockIter::value)
    }

    fn status(&self) -> Result<()> {
        match &self.err {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::WritableFile;
    use crate::key::{ValueKind, lookup_key, make_internal_key};
    use crate::options::{Compression, TableOptions};
    // Through the module's re-exports: the names the engine uses.
    use crate::table::{Table, TableBuilder, TableIterator, TableProperties, TableSummary};
    use proptest::prelude::*;
    use std::cmp::Reverse;
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::Mutex;

    /// An in-memory file: written through `WritableFile`, read back with or
    /// without `as_slice` (the mmap path and the `read_exact_at` path).
    #[derive(Clone, Default)]
    struct MemFile(Arc<Mutex<Vec<u8>>>);

    impl WritableFile for MemFile {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn len(&self) -> u64 {
            self.0.lock().unwrap().len() as u64
        }
    }

    struct MemRead {
        data: Vec<u8>,
        mmap: bool,
    }

    impl RandomAccessFile for MemRead {
        fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
            let start = offset as usize;
            match self.data.get(start..start + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                None => Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
        fn as_slice(&self) -> Option<&[u8]> {
            self.mmap.then_some(&self.data[..])
        }
        fn size(&self) -> u64 {
            self.data.len() as u64
        }
    }

    type Model = BTreeMap<(Vec<u8>, Reverse<u64>), (ValueKind, Vec<u8>)>;

    fn opts(compression: Compression, block_size_bytes: usize, interval: usize) -> TableOptions {
        TableOptions {
            block_size_bytes,
            block_restart_interval: interval,
            compression,
            bloom_bits_per_key: 10,
        }
    }

    fn build(model: &Model, opts: TableOptions) -> (Vec<u8>, TableSummary) {
        let file = MemFile::default();
        let mut b = TableBuilder::new(Box::new(file.clone()), PathBuf::from("t.sst"), opts);
        for ((user, Reverse(seq)), (kind, value)) in model {
            b.add(&make_internal_key(user, *seq, *kind), value).unwrap();
        }
        let summary = b.finish().unwrap();
        let bytes = file.0.lock().unwrap().clone();
        assert_eq!(summary.file_size, bytes.len() as u64);
        (bytes, summary)
    }

    fn open(bytes: Vec<u8>, mmap: bool) -> Result<Arc<Table>> {
        let file = Arc::new(MemRead { data: bytes, mmap });
        let cache = Arc::new(BlockCache::new(1 << 20, usize::MAX));
        Table::open(file, PathBuf::from("/db/000042.sst"), 42, cache).map(Arc::new)
    }

    fn versions_model() -> Model {
        // key{i} has versions at seq 10 and 20 (20 is a tombstone for every
        // 7th key); only even keys exist.
        let mut m = Model::new();
        for i in (0..2000u32).step_by(2) {
            let user = format!("key{i:05}").into_bytes();
            m.insert(
                (user.clone(), Reverse(10)),
                (ValueKind::Value, format!("old{i}").into_bytes()),
            );
            let kind = if i % 7 == 0 {
                ValueKind::Delete
            } else {
                ValueKind::Value
            };
            m.insert(
                (user, Reverse(20)),
                (kind, format!("new{i}").repeat(3).into_bytes()),
            );
        }
        m
    }

    fn entries(model: &Model) -> Vec<(Vec<u8>, Vec<u8>)> {
        model
            .iter()
            .map(|((u, Reverse(s)), (k, v))| (make_internal_key(u, *s, *k), v.clone()))
            .collect()
    }

    fn scan(it: &mut TableIterator) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        it.seek_to_first();
        while it.valid() {
            out.push((it.key().to_vec(), it.value().to_vec()));
            it.next();
        }
        out
    }

    #[test]
    fn block_ends_cover_every_block_in_at_most_the_points_asked() {
        // Subcompactions cut on these: the bytes add up to all data blocks,
        // the keys ascend and end at or above the table's last key, and
        // however few points are asked for, no more come back.
        let m = versions_model();
        let (bytes, summary) = build(&m, opts(Compression::Lz4, 256, 4));
        let t = open(bytes, true).unwrap();
        let blocks = t.properties().num_data_blocks;
        assert!(blocks > 40, "{blocks} blocks");
        let last_user = m.keys().last().map(|(u, _)| u.clone()).unwrap();
        for points_max in [1, 2, 7, 40, 10_000] {
            let ends = t.block_ends(points_max);
            assert!(
                !ends.is_empty() && ends.len() <= points_max,
                "{points_max}: {}",
                ends.len()
            );
            assert!(ends.windows(2).all(|w| w[0].0 <= w[1].0));
            assert!(ends.last().unwrap().0 >= last_user);
            let total: u64 = ends.iter().map(|(_, b)| b).sum();
            // Data blocks are part of the file; index, filter and footer are the rest.
            assert!(total > 0 && total < summary.file_size, "{total}");
            if points_max as u64 >= blocks {
                assert_eq!(ends.len() as u64, blocks);
            }
        }
        assert_eq!(
            t.block_ends(1)[0].1,
            t.block_ends(10_000).iter().map(|(_, b)| b).sum::<u64>()
        );
    }

    #[test]
    fn table_get_finds_present_absent_and_older_versions() {
        // Point lookups at a snapshot, with lz4 and without, through both
        // read paths: newest visible version, nothing for absent keys, the
        // older version when the snapshot predates the newer one.
        let model = versions_model();
        for compression in [Compression::Lz4, Compression::None] {
            let (bytes, summary) = build(&model, opts(compression, 1024, 16));
            assert_eq!(summary.props.num_entries, 2000);
            assert_eq!(summary.props.num_deletions, 143);
            assert_eq!(
                (summary.props.smallest_seq, summary.props.largest_seq),
                (10, 20)
            );
            assert_eq!(
                summary.smallest,
                make_internal_key(b"key00000", 20, ValueKind::Delete)
            );
            assert_eq!(
                summary.largest,
                make_internal_key(b"key01998", 10, ValueKind::Value)
            );
            assert!(summary.props.num_data_blocks > 10);
            for mmap in [true, false] {
                let t = open(bytes.clone(), mmap).unwrap();
                let props: &TableProperties = t.properties();
                assert_eq!(props, &summary.props);
                assert_eq!(t.path(), Path::new("/db/000042.sst"));
                assert!(t.memory_bytes() > 0);
                let got = t.get(&lookup_key(b"key00014", 100)).unwrap().unwrap();
                assert_eq!(got.0, make_internal_key(b"key00014", 20, ValueKind::Delete));
                let got = t.get(&lookup_key(b"key00016", 19)).unwrap().unwrap();
                assert_eq!(
                    got,
                    (
                        make_internal_key(b"key00016", 10, ValueKind::Value),
                        b"old16".to_vec()
                    )
                );
                assert_eq!(t.get(&lookup_key(b"key00016", 9)).unwrap(), None);
                assert_eq!(t.get(&lookup_key(b"key00017", 100)).unwrap(), None);
                assert_eq!(t.get(&lookup_key(b"zzz", 100)).unwrap(), None);
                assert_eq!(t.get(&lookup_key(b"", 100)).unwrap(), None);
                for i in (0..2000u32).step_by(2) {
                    let user = format!("key{i:05}");
                    assert!(t.may_contain(user.as_bytes()));
                    let (k, _) = t.get(&lookup_key(user.as_bytes(), 15)).unwrap().unwrap();
                    assert_eq!(k, make_internal_key(user.as_bytes(), 10, ValueKind::Value));
                }
            }
        }
        let (lz4, _) = build(&model, opts(Compression::Lz4, 1024, 16));
        let (raw, _) = build(&model, opts(Compression::None, 1024, 16));
        assert!(lz4.len() < raw.len(), "lz4 {} raw {}", lz4.len(), raw.len());
    }

    #[test]
    fn empty_table_opens_and_is_empty() {
        // A table with no entries is valid: no blocks, nothing found.
        let (bytes, summary) = build(&Model::new(), opts(Compression::Lz4, 4096, 16));
        assert_eq!(summary.props.num_data_blocks, 0);
        let t = open(bytes, true).unwrap();
        assert_eq!(t.get(&lookup_key(b"a", 1)).unwrap(), None);
        for dir in [Direction::Forward, Direction::Reverse] {
            let mut it = t.iter(dir, true);
            assert!(scan(&mut it).is_empty());
            it.seek(&lookup_key(b"a", 1));
            assert!(!it.valid());
            assert!(it.status().is_ok());
        }
    }

    #[test]
    fn builder_rejects_unordered_and_malformed_keys() {
        // REQUIRES of `add` are checked: nothing out of order reaches disk.
        let mut b = TableBuilder::new(
            Box::new(MemFile::default()),
            PathBuf::from("t.sst"),
            opts(Compression::None, 4096, 16),
        );
        b.add(&make_internal_key(b"b", 5, ValueKind::Value), b"")
            .unwrap();
        assert!(
            b.add(&make_internal_key(b"b", 5, ValueKind::Value), b"")
                .is_err()
        );
        assert!(
            b.add(&make_internal_key(b"b", 6, ValueKind::Value), b"")
                .is_err()
        );
        assert!(
            b.add(&make_internal_key(b"a", 1, ValueKind::Value), b"")
                .is_err()
        );
        assert!(b.add(b"short", b"").is_err());
        b.add(&make_internal_key(b"b", 4, ValueKind::Value), b"")
            .unwrap();
        assert_eq!(b.num_entries(), 2);
        assert!(b.estimated_size() > 0);
    }

    #[test]
    fn fill_cache_false_leaves_the_block_cache_alone() {
        // Compaction scans must not evict the foreground's hot blocks.
        let (bytes, _) = build(&versions_model(), opts(Compression::Lz4, 1024, 16));
        let t = open(bytes, false).unwrap();
        assert_eq!(scan(&mut t.iter(Direction::Forward, false)).len(), 2000);
        assert_eq!(t.cache.len(), 0);
        assert_eq!(scan(&mut t.iter(Direction::Forward, true)).len(), 2000);
        assert_eq!(t.cache.len() as u64, t.properties().num_data_blocks);
        assert!(t.cache.total_charge() > 0);
    }

    #[test]
    fn flipped_byte_in_a_data_block_is_corruption_naming_the_table() {
        // Any single damaged byte in any data block is reported as
        // corruption with the table's path by scans and gets alike; the
        // entries seen before it are correct; nothing panics.
        let mut model = Model::new();
        for i in 0..300u32 {
            let v = format!("value-{i}-")
                .repeat(1 + i as usize % 4)
                .into_bytes();
            model.insert(
                (format!("k{i:04}").into_bytes(), Reverse(u64::from(i))),
                (ValueKind::Value, v),
            );
        }
        let want = entries(&model);
        for (compression, mmap) in [(Compression::None, true), (Compression::Lz4, false)] {
            let (bytes, summary) = build(&model, opts(compression, 512, 4));
            for pos in 0..summary.props.data_bytes as usize {
                let mut bad = bytes.clone();
                bad[pos] ^= 0x20;
                let t = open(bad, mmap).unwrap();
                for dir in [Direction::Forward, Direction::Reverse] {
                    let mut it = t.iter(dir, false);
                    let seen = scan(&mut it);
                    let err = it.status().unwrap_err();
                    assert!(err.is_corruption(), "{err}");
                    assert!(err.to_string().contains("/db/000042.sst"), "{err}");
                    let expect: Vec<_> = match dir {
                        Direction::Forward => want.iter().take(seen.len()).cloned().collect(),
                        Direction::Reverse => want.iter().rev().take(seen.len()).cloned().collect(),
                    };
                    assert_eq!(seen, expect, "wrong data before the error at {pos}");
                }
                let lookups = model.keys().map(|(u, Reverse(s))| (u, *s));
                let errors = lookups
                    .filter_map(|(u, s)| match t.get(&lookup_key(u, s)) {
                        Ok(found) => {
                            assert_eq!(
                                found.map(|f| f.0),
                                Some(make_internal_key(u, s, ValueKind::Value))
                            );
                            None
                        }
                        Err(e) => Some(e),
                    })
                    .count();
                assert!(errors > 0, "no get noticed the flip at {pos}");
            }
        }
    }

    #[test]
    fn truncated_or_damaged_metadata_fails_open_with_corruption() {
        // Every truncation fails open as corruption; so does any flipped
        // byte in the filter, index, properties or footer.
        let (bytes, summary) = build(&versions_model(), opts(Compression::Lz4, 1024, 16));
        for len in 0..bytes.len() {
            for mmap in [true, false] {
                match open(bytes[..len].to_vec(), mmap) {
                    Err(e) => assert!(e.is_corruption(), "len {len}: {e}"),
                    Ok(_) => panic!("truncated table of {len} bytes opened"),
                }
            }
        }
        for pos in summary.props.data_bytes as usize..bytes.len() {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x01;
            match open(bad, pos % 2 == 0) {
                Err(e) => {
                    assert!(e.is_corruption(), "pos {pos}: {e}");
                    assert!(e.to_string().contains("/db/000042.sst"));
                }
                Ok(_) => panic!("damaged metadata at {pos} opened"),
            }
        }
    }

    fn arb_model() -> impl Strategy<Value = Model> {
        let entry = (
            prop::collection::vec(0u8..4, 0..4),
            0u64..50,
            prop::bool::ANY,
            prop::collection::vec(any::<u8>(), 0..40),
        );
        prop::collection::vec(entry, 0..300).prop_map(|v| {
            v.into_iter()
                .map(|(u, s, del, val)| {
                    let kind = if del {
                        ValueKind::Delete
                    } else {
                        ValueKind::Value
                    };
                    ((u, Reverse(s)), (kind, val))
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn table_iteration_and_seek_match_btreemap_model(
            model in arb_model(),
            block_size in 16usize..600,
            interval in 1usize..5,
            lz4 in prop::bool::ANY,
            targets in prop::collection::vec((prop::collection::vec(0u8..4, 0..4), 0u64..55), 1..20),
        ) {
            // Full scans both ways, and seek + a few steps both ways, equal
            // the model ordered like compare_internal.
            let compression = if lz4 { Compression::Lz4 } else { Compression::None };
            let (bytes, _) = build(&model, opts(compression, block_size, interval));
            let t = open(bytes, lz4).unwrap();
            let want = entries(&model);
            let mut fwd = t.iter(Direction::Forward, true);
            let mut rev = t.iter(Direction::Reverse, true);
            prop_assert_eq!(&scan(&mut fwd), &want);
            let mut back = scan(&mut rev);
            back.reverse();
            prop_assert_eq!(&back, &want);
            for (user, seq) in targets {
                let target = lookup_key(&user, seq);
                let bound = (user.clone(), Reverse(seq));
                let ge: Vec<_> = entries(&model.range(bound.clone()..).take(3).map(|(k, v)| (k.clone(), v.clone())).collect());
                // Collecting into a Model re-sorts ascending: reverse after.
                let mut le: Vec<_> = entries(&model.range(..bound).rev().take(3).map(|(k, v)| (k.clone(), v.clone())).collect());
                le.reverse();
                for (it, expect) in [(&mut fwd, ge), (&mut rev, le)] {
                    it.seek(&target);
                    let mut got = Vec::new();
                    while it.valid() && got.len() < 3 {
                        got.push((it.key().to_vec(), it.value().to_vec()));
                        it.next();
                    }
                    prop_assert!(it.status().is_ok());
                    prop_assert_eq!(got, expect);
                }
            }
        }
    }
}
