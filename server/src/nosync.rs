//! `fsync = "never"`: a file system that flushes instead of syncing.
//!
//! Wraps the real one for the Raft log store only; the engine keeps its own
//! fsyncs (the state machine writes without its WAL and relies on flushes).
//! A write is then acknowledged once a majority holds it in the page cache:
//! it survives process crashes, not power loss on a majority.

use std::io;
use std::path::Path;
use std::sync::Arc;

use cairn_engine::{DirLock, FileSystem, RandomAccessFile, WritableFile};

pub struct NoSyncFs(pub Arc<dyn FileSystem>);

struct NoSyncFile(Box<dyn WritableFile>);

impl WritableFile for NoSyncFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.append(data)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.flush()
    }

    fn len(&self) -> u64 {
        self.0.len()
    }
}

impl FileSystem for NoSyncFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        Ok(Box::new(NoSyncFile(self.0.create(path)?)))
    }

    fn open_random(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        self.0.open_random(path)
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.0.read_all(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.remove(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.create_dir_all(dir)
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.0.exists(path)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        self.0.file_size(path)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        self.0.lock(path)
    }
}
