//! Snapshot files: a group's key range at one applied log id, streamed to
//! and from disk so a snapshot of any size costs bounded memory.
//!
//! Layout (every integer little endian; do not change: on disk and on the
//! wire, since followers receive these bytes verbatim):
//!
//! ```text
//! file    = header block* trailer
//! header  = magic "CAIRNSN1" (8) | meta_len u32 | meta | crc32(meta) u32
//!           meta = postcard(SnapshotMeta), meta_len <= 1 MiB
//! block   = len u32 (1..=BLOCK_BYTES_MAX) | crc32(payload) u32 | payload
//!           payload = (key_len u32 | key | value_len u32 | value)+
//! trailer = 0u32 | pairs u64 | crc32(pairs as 8 bytes) u32
//! ```
//!
//! A block is cut once it passes `BLOCK_BYTES_TARGET`; one pair larger than
//! that gets a block of its own, so `BLOCK_BYTES_MAX` follows from the
//! engine's key and value limits. The reader checks every length against
//! its bound before allocating, every crc, and that the pair count in the
//! trailer matches, so a truncated or altered snapshot is refused before
//! anything of it is installed.

use crate::types::{NodeId, NodeInfo};
use openraft::SnapshotMeta;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"CAIRNSN1";
const META_BYTES_MAX: usize = 1 << 20;
/// Blocks are cut after this many payload bytes.
pub(crate) const BLOCK_BYTES_TARGET: usize = 1 << 20;
/// Largest block a reader accepts: one engine key (64 KiB) and value
/// (512 MiB) with their length prefixes, plus a target's worth before them.
const BLOCK_BYTES_MAX: usize = BLOCK_BYTES_TARGET + (64 << 10) + (512 << 20) + 8;

pub(crate) type Meta = SnapshotMeta<NodeId, NodeInfo>;
/// The key/value pairs of one block.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn corrupt(path: &Path, reason: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("snapshot {}: {}", path.display(), reason.into()),
    )
}

/// Writes a snapshot file. `finish` fsyncs it; a writer dropped before
/// `finish` leaves a partial file that readers refuse (no trailer).
pub(crate) struct SnapshotWriter {
    path: PathBuf,
    out: BufWriter<File>,
    block: Vec<u8>,
    pairs: u64,
    bytes: u64,
}

impl SnapshotWriter {
    pub(crate) fn create(path: &Path, meta: &Meta) -> io::Result<SnapshotWriter> {
        let file = File::create(path)?;
        let mut out = BufWriter::with_capacity(256 << 10, file);
        let meta_bytes = postcard::to_allocvec(meta)
            .map_err(|e| io::Error::other(format!("encode snapshot meta: {e}")))?;
        out.write_all(MAGIC)?;
        out.write_all(&len_u32(meta_bytes.len())?.to_le_bytes())?;
        out.write_all(&meta_bytes)?;
        out.write_all(&crc32fast::hash(&meta_bytes).to_le_bytes())?;
        Ok(SnapshotWriter {
            path: path.to_path_buf(),
            out,
            block: Vec::with_capacity(BLOCK_BYTES_TARGET + 1024),
            pairs: 0,
            bytes: 0,
        })
    }

    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.block
            .extend_from_slice(&len_u32(key.len())?.to_le_bytes());
        self.block.extend_from_slice(key);
        self.block
            .extend_from_slice(&len_u32(value.len())?.to_le_bytes());
        self.block.extend_from_slice(value);
        self.pairs += 1;
        if self.block.len() >= BLOCK_BYTES_TARGET {
            self.write_block()?;
        }
        Ok(())
    }

    fn write_block(&mut self) -> io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        self.out
            .write_all(&len_u32(self.block.len())?.to_le_bytes())?;
        self.out
            .write_all(&crc32fast::hash(&self.block).to_le_bytes())?;
        self.out.write_all(&self.block)?;
        self.bytes += self.block.len() as u64;
        self.block.clear();
        Ok(())
    }

    /// Writes the last block and the trailer and fsyncs. Returns (pairs,
    /// payload bytes).
    pub(crate) fn finish(mut self) -> io::Result<(u64, u64)> {
        self.write_block()?;
        let pairs = self.pairs.to_le_bytes();
        self.out.write_all(&0u32.to_le_bytes())?;
        self.out.write_all(&pairs)?;
        self.out.write_all(&crc32fast::hash(&pairs).to_le_bytes())?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io::Error::other(format!("{}: {e}", self.path.display())))?;
        file.sync_all()?;
        Ok((self.pairs, self.bytes))
    }
}

fn len_u32(len: usize) -> io::Result<u32> {
    u32::try_from(len).map_err(|_| io::Error::other(format!("length {len} exceeds u32")))
}

/// Reads a snapshot file block by block.
pub(crate) struct SnapshotReader {
    path: PathBuf,
    input: BufReader<File>,
    meta: Meta,
    pairs: u64,
    done: bool,
}

impl SnapshotReader {
    pub(crate) fn open(path: &Path) -> io::Result<SnapshotReader> {
        Self::from_file(path, File::open(path)?)
    }

    /// Reads from `file`'s current position (REQUIRES: at the start).
    pub(crate) fn from_file(path: &Path, file: File) -> io::Result<SnapshotReader> {
        let mut input = BufReader::with_capacity(256 << 10, file);
        let mut magic = [0u8; 8];
        read_exact(&mut input, &mut magic, path, "header")?;
        if &magic != MAGIC {
            return Err(corrupt(path, "bad magic (not a Cairn snapshot)"));
        }
        let meta_len = read_u32(&mut input, path, "meta length")? as usize;
        if meta_len > META_BYTES_MAX {
            return Err(corrupt(
                path,
                format!("meta length {meta_len} > {META_BYTES_MAX}"),
            ));
        }
        let mut meta_bytes = vec![0u8; meta_len];
        read_exact(&mut input, &mut meta_bytes, path, "meta")?;
        let crc = read_u32(&mut input, path, "meta crc")?;
        if crc != crc32fast::hash(&meta_bytes) {
            return Err(corrupt(path, "meta checksum mismatch"));
        }
        let meta: Meta = postcard::from_bytes(&meta_bytes)
            .map_err(|e| corrupt(path, format!("meta does not decode: {e}")))?;
        Ok(SnapshotReader {
            path: path.to_path_buf(),
            input,
            meta,
            pairs: 0,
            done: false,
        })
    }

    pub(crate) fn meta(&self) -> &Meta {
        &self.meta
    }

    /// The next block's pairs, or `None` after a verified trailer.
    pub(crate) fn next_block(&mut self) -> io::Result<Option<Pairs>> {
        if self.done {
            return Ok(None);
        }
        let len = read_u32(&mut self.input, &self.path, "block length")? as usize;
        if len == 0 {
            self.read_trailer()?;
            self.done = true;
            return Ok(None);
        }
        if len > BLOCK_BYTES_MAX {
            return Err(corrupt(
                &self.path,
                format!("block length {len} > {BLOCK_BYTES_MAX}"),
            ));
        }
        let crc = read_u32(&mut self.input, &self.path, "block crc")?;
        let mut block = vec![0u8; len];
        read_exact(&mut self.input, &mut block, &self.path, "block")?;
        if crc != crc32fast::hash(&block) {
            return Err(corrupt(&self.path, "block checksum mismatch"));
        }
        let pairs = decode_pairs(&block).ok_or_else(|| corrupt(&self.path, "malformed block"))?;
        self.pairs += pairs.len() as u64;
        Ok(Some(pairs))
    }

    fn read_trailer(&mut self) -> io::Result<()> {
        let mut pairs = [0u8; 8];
        read_exact(&mut self.input, &mut pairs, &self.path, "trailer")?;
        let crc = read_u32(&mut self.input, &self.path, "trailer crc")?;
        if crc != crc32fast::hash(&pairs) {
            return Err(corrupt(&self.path, "trailer checksum mismatch"));
        }
        let expected = u64::from_le_bytes(pairs);
        if expected != self.pairs {
            return Err(corrupt(
                &self.path,
                format!("trailer says {expected} pairs, blocks held {}", self.pairs),
            ));
        }
        let mut extra = [0u8; 1];
        if self.input.read(&mut extra)? != 0 {
            return Err(corrupt(&self.path, "bytes after the trailer"));
        }
        Ok(())
    }

    /// Reads every block to the trailer, checking everything; the pair count.
    pub(crate) fn verify_all(&mut self) -> io::Result<u64> {
        while self.next_block()?.is_some() {}
        Ok(self.pairs)
    }
}

fn decode_pairs(mut block: &[u8]) -> Option<Pairs> {
    let mut pairs = Vec::new();
    while !block.is_empty() {
        let (key, rest) = take_prefixed(block)?;
        let (value, rest) = take_prefixed(rest)?;
        pairs.push((key.to_vec(), value.to_vec()));
        block = rest;
    }
    Some(pairs)
}

fn take_prefixed(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let len_bytes: [u8; 4] = input.get(..4)?.try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    let body = input.get(4..4usize.checked_add(len)?)?;
    Some((body, input.get(4 + len..)?))
}

fn read_exact(input: &mut impl Read, buf: &mut [u8], path: &Path, what: &str) -> io::Result<()> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            corrupt(path, format!("truncated in the {what}"))
        } else {
            e
        }
    })
}

fn read_u32(input: &mut impl Read, path: &Path, what: &str) -> io::Result<u32> {
    let mut bytes = [0u8; 4];
    read_exact(input, &mut bytes, path, what)?;
    Ok(u32::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};
    use std::collections::BTreeSet;

    fn meta() -> Meta {
        let membership = Membership::new(vec![BTreeSet::from([1, 2, 3])], None);
        Meta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::new(
                Some(LogId::new(CommittedLeaderId::new(1, 1), 1)),
                membership,
            ),
            snapshot_id: "3-42-x".into(),
        }
    }

    fn write(path: &Path, pairs: usize, value_bytes: usize) -> (u64, u64) {
        let mut writer = SnapshotWriter::create(path, &meta()).unwrap();
        for i in 0..pairs {
            writer
                .add(format!("key{i:06}").as_bytes(), &vec![b'v'; value_bytes])
                .unwrap();
        }
        writer.finish().unwrap()
    }

    #[test]
    fn snapshot_round_trips_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let (pairs, _) = write(&path, 3000, 1000);
        let mut reader = SnapshotReader::open(&path).unwrap();
        assert_eq!(reader.meta(), &meta());
        let mut seen = 0;
        let mut blocks = 0;
        while let Some(block) = reader.next_block().unwrap() {
            for (key, value) in block {
                assert_eq!(key, format!("key{seen:06}").into_bytes());
                assert_eq!(value.len(), 1000);
                seen += 1;
            }
            blocks += 1;
        }
        assert_eq!(seen as u64, pairs);
        assert!(blocks >= 3, "3 MB of pairs should span several blocks");
    }

    #[test]
    fn every_flipped_byte_or_truncation_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, 20, 10);
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad");
        for i in 0..good.len() {
            let mut bytes = good.clone();
            bytes[i] ^= 0x40;
            std::fs::write(&bad, &bytes).unwrap();
            let result = SnapshotReader::open(&bad).and_then(|mut r| r.verify_all());
            assert!(result.is_err(), "flip at {i} was accepted");
        }
        for cut in 0..good.len() {
            std::fs::write(&bad, &good[..cut]).unwrap();
            let result = SnapshotReader::open(&bad).and_then(|mut r| r.verify_all());
            assert!(result.is_err(), "cut at {cut} was accepted");
        }
    }

    #[test]
    fn hostile_lengths_are_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = SnapshotReader::open(&path).err().unwrap();
        assert!(err.to_string().contains("meta length"), "{err}");

        write(&path, 1, 1);
        let good = std::fs::read(&path).unwrap();
        let meta_len = u32::from_le_bytes(good[8..12].try_into().unwrap()) as usize;
        let block_at = 12 + meta_len + 4;
        let mut bytes = good.clone();
        bytes[block_at..block_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = SnapshotReader::open(&path)
            .and_then(|mut r| r.verify_all())
            .err()
            .unwrap();
        assert!(err.to_string().contains("block length"), "{err}");
    }
}
