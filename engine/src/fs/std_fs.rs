//! The real file system: `std::fs`, with tables read through pread or mmap.

use super::{DirLock, FileSystem, RandomAccessFile, WritableFile};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// How table files are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadMode {
    /// `pread(2)` into a buffer per block read.
    Pread,
    /// The whole file mapped with `mmap(2)`; blocks are decoded in place.
    /// The default: see docs/engine.md ("Reading tables") for the measurement.
    #[default]
    Mmap,
}

/// `std::fs` behind the [`FileSystem`] trait.
#[derive(Debug, Clone, Copy, Default)]
pub struct StdFs {
    read_mode: ReadMode,
}

impl StdFs {
    pub fn new(read_mode: ReadMode) -> Self {
        StdFs { read_mode }
    }
}

/// Appends go through a user-space buffer; `sync` flushes it and calls
/// `fdatasync`. The buffer keeps small WAL records from costing one
/// `write(2)` each.
///
/// Space reserved by `preallocate` (the WAL's, the Raft log's) is written
/// through a mapped window instead: an append there is a copy into the
/// page cache, with no system call, and as durable as a `write(2)` (it
/// survives a crash of the process; `sync`'s `fdatasync` writes mapped
/// pages too). A write per WAL record had been 58% of a put. Appends past
/// the reservation are written at their offset.
struct StdWritable {
    out: BufWriter<File>,
    len: u64,
    /// The file's size when `preallocate` made it larger than `len`.
    reserved: u64,
    /// True once `preallocate` reserved space on a file system with
    /// `fallocate`: appends below `reserved` then go through `window`.
    mapped: bool,
    window: Option<Window>,
}

/// `WINDOW_BYTES` of the reservation mapped for writing, from `start`.
/// Bounded, so the mapped pages counted in the resident set stay small
/// however large the reservation; moving on costs an `fallocate`, an
/// `munmap` and an `mmap` per window (about one per 8000 WAL records of
/// 130 bytes). The reservation itself is a hole (`set_len`); each window
/// gets real blocks (`fallocate`) before it is mapped, because a mapped
/// write into a hole that finds the disk full is a SIGBUS, where the
/// `fallocate` is an error. So the disk holds at most one window more
/// than was written.
struct Window {
    start: u64,
    map: memmap2::MmapMut,
}

const WINDOW_BYTES: u64 = 1 << 20;

impl StdWritable {
    /// Copies the head of `data` into the window holding `len`, mapping it
    /// first if needed; returns how many bytes it took.
    fn append_mapped(&mut self, data: &[u8]) -> io::Result<usize> {
        let start = self.len - self.len % WINDOW_BYTES;
        let stale = self.window.as_ref().is_none_or(|w| w.start != start);
        if stale {
            self.window = None;
            let len = (self.reserved - start).min(WINDOW_BYTES);
            let file = self.out.get_ref();
            allocate(file, start, len)?;
            let map = map_window(file, start, len)?;
            self.window = Some(Window { start, map });
        }
        let Some(w) = self.window.as_mut() else {
            return Ok(0);
        };
        let at = (self.len - start) as usize;
        let Some(room) = w.map.get_mut(at..) else {
            return Ok(0);
        };
        let n = room.len().min(data.len());
        if let (Some(to), Some(from)) = (room.get_mut(..n), data.get(..n)) {
            to.copy_from_slice(from);
        }
        self.len += n as u64;
        Ok(n)
    }
}

impl WritableFile for StdWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        if !self.mapped {
            self.out.write_all(data)?;
            self.len += data.len() as u64;
            return Ok(());
        }
        let mut rest = data;
        while !rest.is_empty() && self.len < self.reserved {
            let n = self.append_mapped(rest)?;
            if n == 0 {
                break;
            }
            rest = rest.get(n..).unwrap_or_default();
        }
        if !rest.is_empty() {
            // The file's cursor did not follow the mapped appends.
            self.out.get_ref().write_all_at(rest, self.len)?;
            self.len += rest.len() as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    fn preallocate(&mut self, bytes: u64) -> io::Result<()> {
        if bytes <= self.len.max(self.reserved) {
            return Ok(());
        }
        // Everything so far lands before the mapped appends begin.
        self.out.flush()?;
        let file = self.out.get_ref();
        // The cursor stays where it is: appends go on at `len`.
        file.set_len(bytes)?;
        self.reserved = bytes;
        // Mapped appends need `fallocate` (`Window`); without it (or with
        // the disk already full) appends stay buffered writes, which
        // report a full disk themselves.
        let start = self.len - self.len % WINDOW_BYTES;
        self.mapped = self.mapped || allocate(file, start, 1).is_ok();
        Ok(())
    }

    fn trim(&mut self) -> io::Result<()> {
        // Unmapped before the file shrinks under the window.
        self.window = None;
        if self.reserved > self.len {
            self.out.flush()?;
            self.out.get_ref().set_len(self.len)?;
        }
        self.reserved = 0;
        if self.mapped {
            // Buffered appends from here on go where the mapped ones ended.
            self.out.seek(io::SeekFrom::Start(self.len))?;
            self.mapped = false;
        }
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

struct PreadFile {
    file: File,
    size: u64,
}

impl RandomAccessFile for PreadFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    fn as_slice(&self) -> Option<&[u8]> {
        None
    }

    fn size(&self) -> u64 {
        self.size
    }
}

struct MmapFile {
    map: memmap2::Mmap,
}

impl RandomAccessFile for MmapFile {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| past_end())?;
        let end = start.checked_add(buf.len()).ok_or_else(past_end)?;
        let src = self.map.get(start..end).ok_or_else(past_end)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn as_slice(&self) -> Option<&[u8]> {
        Some(&self.map)
    }

    fn size(&self) -> u64 {
        self.map.len() as u64
    }
}

fn past_end() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file")
}

/// The first of the two audited `unsafe`s in the engine.
///
/// SAFETY: `Mmap::map` is unsafe because another process or thread could
/// truncate or modify the file while mapped, which would turn reads into
/// SIGBUS or data races. The engine only maps table files, which are
/// written completely and synced before they are opened for reading and are
/// never modified or truncated afterwards (they are only deleted, which keeps
/// the mapping valid on POSIX). The directory lock keeps other Cairn
/// processes out.
#[allow(unsafe_code)]
fn map_file(file: &File) -> io::Result<memmap2::Mmap> {
    unsafe { memmap2::Mmap::map(file) }
}

/// Gives `[start, start + len)` of `file` real blocks, inside its size.
fn allocate(file: &File, start: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::KEEP_SIZE, start, len)
        .map_err(io::Error::from)
}

/// The second: a window of a file being appended to, mapped for writing.
///
/// SAFETY: the range lies inside space `fallocate` gave real blocks, so a
/// write into it never needs the file system to find a block (which on a
/// full disk would be a SIGBUS). Only this writer touches the range while
/// it is mapped: the WAL and Raft log files are written by their one
/// writer (the directory lock keeps other processes out), readers of the
/// file read below `len`, which the writer has finished with, and `trim`
/// drops the window before it shrinks the file.
#[allow(unsafe_code)]
fn map_window(file: &File, start: u64, len: u64) -> io::Result<memmap2::MmapMut> {
    let len = usize::try_from(len).map_err(io::Error::other)?;
    unsafe {
        memmap2::MmapOptions::new()
            .offset(start)
            .len(len)
            .map_mut(file)
    }
}

struct StdLock {
    _file: File,
}

impl DirLock for StdLock {}

impl FileSystem for StdFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // Readable too: a shared writable map needs it (`map_window`).
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdWritable {
            out: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
            reserved: 0,
            mapped: false,
            window: None,
        }))
    }

    fn open_random(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let file = File::open(path)?;
        let size = file.metadata()?.len();
        match self.read_mode {
            ReadMode::Pread => Ok(Arc::new(PreadFile { file, size })),
            // A zero-length map is an error on Linux; such a file is not a
            // valid table anyway, and pread reports that cleanly.
            ReadMode::Mmap if size == 0 => Ok(Arc::new(PreadFile { file, size })),
            ReadMode::Mmap => Ok(Arc::new(MmapFile {
                map: map_file(&file)?,
            })),
        }
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        Ok(names)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "lock held by another process",
            )),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on any error")]

    use super::*;

    /// Chunks of awkward sizes, some straddling a window's end.
    fn chunks(total: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let (mut n, mut size) = (0usize, 1usize);
        while n < total {
            let len = size.min(total - n);
            out.push((0..len).map(|i| ((n + i) % 251) as u8).collect());
            n += len;
            size = (size * 7 + 13) % 300_000 + 1;
        }
        out
    }

    #[test]
    fn appends_through_mapped_windows_and_past_the_reservation_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let fs = StdFs::default();
        let mut f = fs.create(&path).unwrap();
        f.append(b"before the reservation").unwrap();
        let reserved = 2 * WINDOW_BYTES + 12_345;
        f.preallocate(reserved).unwrap();
        let mut want = b"before the reservation".to_vec();
        // Through three windows and on past the reserved space.
        for c in chunks(reserved as usize + 400_000 - want.len()) {
            f.append(&c).unwrap();
            want.extend_from_slice(&c);
        }
        f.flush().unwrap();
        assert_eq!(f.len(), want.len() as u64);
        // Another reader sees every byte before any sync or trim.
        assert_eq!(std::fs::read(&path).unwrap(), want);
        f.sync().unwrap();
        f.trim().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn a_short_log_reads_as_its_bytes_then_zeros_until_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let mut f = StdFs::default().create(&path).unwrap();
        f.preallocate(WINDOW_BYTES + 1).unwrap();
        f.append(b"record").unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, WINDOW_BYTES + 1);
        assert_eq!(bytes.get(..6), Some(&b"record"[..]));
        assert!(bytes.get(6..).unwrap().iter().all(|b| *b == 0));
        f.sync().unwrap();
        f.trim().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"record");
        // Appends after a trim are written as before.
        f.append(b" and more").unwrap();
        f.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"record and more");
    }
}
