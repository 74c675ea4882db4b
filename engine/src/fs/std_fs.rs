//! The real file system: `std::fs`, with tables read through pread or mmap.

use super::{DirLock, FileSystem, RandomAccessFile, WritableFile};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
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
struct StdWritable {
    out: BufWriter<File>,
    len: u64,
    /// The file's size when `preallocate` made it larger than `len`.
    reserved: u64,
}

impl WritableFile for StdWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.len += data.len() as u64;
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
        if bytes > self.len.max(self.reserved) {
            // The cursor stays where it is: appends go on at `len`.
            self.out.get_ref().set_len(bytes)?;
            self.reserved = bytes;
        }
        Ok(())
    }

    fn trim(&mut self) -> io::Result<()> {
        if self.reserved > self.len {
            self.out.flush()?;
            self.out.get_ref().set_len(self.len)?;
        }
        self.reserved = 0;
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

/// The one audited `unsafe` in the engine.
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

struct StdLock {
    _file: File,
}

impl DirLock for StdLock {}

impl FileSystem for StdFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdWritable {
            out: BufWriter::with_capacity(64 * 1024, file),
            len: 0,
            reserved: 0,
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
