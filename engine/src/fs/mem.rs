//! `MemFs`: an in-memory [`FileSystem`] that simulates power loss and
//! injects I/O faults, so crash recovery and error handling are ordinary
//! unit tests (LevelDB's fault-injection env, redb's injected storage).
//!
//! Model (what crash tests may rely on):
//! - A file is an inode: `data` (everything appended) and `synced_len`; the
//!   durable content is `data[..synced_len]`. `WritableFile::sync` sets
//!   `synced_len` to the current length. `create` makes a new inode, so
//!   re-creating a name leaves the old inode behind the durable name until
//!   `sync_dir`.
//! - The namespace has a *current* view (what `list`, `read_all`, ... see)
//!   and a *durable* view. `create`, `rename` and `remove` change the current
//!   view; `sync_dir(dir)` copies the current entries of `dir` into the
//!   durable view. Directories are durable as soon as they are created.
//! - [`MemFs::crash`] replaces the current view with the durable one and cuts
//!   every surviving inode back to its synced content plus, depending on the
//!   [`CrashMode`], part of its unsynced tail. Every handle opened before the
//!   crash is dead afterwards (a generation counter), and every lock is
//!   released.
//! - [`MemFs::inject_fault`] fails chosen operations; [`MemFs::set_space_limit`]
//!   makes appends fail with `StorageFull`.

use super::{DirLock, FileSystem, RandomAccessFile, WritableFile};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// What a simulated power loss leaves of the data appended since the last
/// `sync` of each surviving file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CrashMode {
    /// Nothing: every file is cut to its synced content (LevelDB's model).
    DropUnsynced,
    /// A prefix of the unsynced tail, of a length chosen by the seed: a disk
    /// that writes in order but stops anywhere.
    KeepRandomPrefix,
    /// A disk that reorders unsynced page writes. The unsynced tail is split
    /// at multiples of `page_bytes` (file offsets, like a real page cache;
    /// the synced prefix is never touched). The file keeps a random number of
    /// those pages (its length grew in metadata that reached the disk), and
    /// each kept page is independently intact, zeroed, or garbage.
    TornPages { page_bytes: usize },
}

/// A kind of operation that [`MemFs::inject_fault`] can fail and
/// [`MemFs::op_count`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FaultOp {
    /// `FileSystem::create`.
    Create,
    /// `WritableFile::append`.
    Append,
    /// `WritableFile::sync`.
    Sync,
    /// `FileSystem::rename` (matches on either path).
    Rename,
    /// `FileSystem::remove`.
    Remove,
    /// `FileSystem::sync_dir` (matches on the directory).
    SyncDir,
    /// `FileSystem::read_all` and `RandomAccessFile::read_exact_at`.
    /// `RandomAccessFile::as_slice` cannot fail, so it is not counted.
    Read,
    /// `FileSystem::open_random`.
    OpenRandom,
}

/// An in-memory file system with simulated crashes and injected faults.
///
/// Cloning is cheap and every clone sees the same files: hand one clone to
/// the engine and keep one in the test to crash it.
///
/// All state sits behind one `std::sync::Mutex` rather than an async or
/// reader-writer lock: nothing awaits while holding it, every critical
/// section is a map lookup or a memcpy, and one lock makes each operation
/// atomic with respect to `crash`, which is exactly what a crash test needs.
/// Each inode has its own mutex only so handles can share it through an
/// `Arc`; it is always taken after the state lock, never alone, so it is
/// never contended and cannot deadlock.
#[derive(Clone, Default)]
pub struct MemFs {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

type InodeRef = Arc<Mutex<Inode>>;

#[derive(Default)]
struct Inode {
    data: Vec<u8>,
    /// `data[..synced_len]` is durable. REQUIRES: `synced_len <= data.len()`.
    synced_len: usize,
}

#[derive(Default)]
struct State {
    current: BTreeMap<PathBuf, InodeRef>,
    durable: BTreeMap<PathBuf, InodeRef>,
    dirs: BTreeSet<PathBuf>,
    /// Bumped by every crash; handles from an older generation are dead.
    generation: u64,
    /// Held locks: path -> token of the `MemLock` holding it.
    locks: HashMap<PathBuf, u64>,
    next_lock_token: u64,
    faults: Vec<Fault>,
    op_counts: HashMap<FaultOp, u64>,
    space_limit_bytes: Option<u64>,
}

struct Fault {
    op: FaultOp,
    path_contains: Option<String>,
    skip: u64,
    times: u64,
}

fn lock_inode(inode: &InodeRef) -> MutexGuard<'_, Inode> {
    // A panic while holding the lock cannot leave an inode half-updated in a
    // way that matters to a test (each update is one Vec operation), so a
    // poisoned lock is recovered rather than propagated.
    inode.lock().unwrap_or_else(|e| e.into_inner())
}

fn crashed() -> io::Error {
    io::Error::other("crashed: handle opened before a simulated crash")
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("no such file: {}", path.display()),
    )
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Counts an attempted operation and fails it if an armed fault says so.
    /// Every armed fault that matches observes the operation, so each fault's
    /// `skip` counts the same stream of operations whatever else is armed.
    fn check(&mut self, op: FaultOp, paths: &[&Path]) -> io::Result<()> {
        *self.op_counts.entry(op).or_insert(0) += 1;
        let mut fired = false;
        for fault in self.faults.iter_mut().filter(|f| f.op == op) {
            if !fault.matches(paths) {
                continue;
            }
            if fault.skip > 0 {
                fault.skip -= 1;
            } else if fault.times > 0 {
                if fault.times != u64::MAX {
                    fault.times -= 1;
                }
                fired = true;
            }
        }
        self.faults.retain(|f| f.skip > 0 || f.times > 0);
        if fired {
            let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            return Err(io::Error::other(format!(
                "injected fault: {op:?} on {}",
                shown.join(" -> ")
            )));
        }
        Ok(())
    }

    fn file(&self, path: &Path) -> io::Result<&InodeRef> {
        self.current.get(path).ok_or_else(|| not_found(path))
    }

    fn require_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !self.dirs.contains(dir) => {
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("no such directory: {}", dir.display()),
                ))
            }
            _ => Ok(()),
        }
    }

    fn require_dir(&self, dir: &Path) -> io::Result<()> {
        if self.dirs.contains(dir) {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no such directory: {}", dir.display()),
            ))
        }
    }

    fn add_dirs(&mut self, dir: &Path) {
        for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
            self.dirs.insert(ancestor.to_path_buf());
        }
    }

    /// Bytes of every file in the current namespace.
    fn total_bytes(&self) -> u64 {
        self.current
            .values()
            .map(|inode| lock_inode(inode).data.len() as u64)
            .sum()
    }
}

impl Fault {
    fn matches(&self, paths: &[&Path]) -> bool {
        match &self.path_contains {
            None => true,
            Some(needle) => paths
                .iter()
                .any(|p| p.to_string_lossy().contains(needle.as_str())),
        }
    }
}

fn in_dir(path: &Path, dir: &Path) -> bool {
    path.parent() == Some(dir)
}

impl MemFs {
    pub fn new() -> Self {
        Self::default()
    }

    /// Simulates power loss: the namespace becomes the durable view, each
    /// surviving file keeps its synced content plus what `mode` leaves of its
    /// unsynced tail (the choice is a pure function of `seed` and the file's
    /// path), every handle opened before is dead and every lock is released.
    /// Armed faults, op counts and the space limit are left as they are.
    pub fn crash(&self, mode: CrashMode, seed: u64) {
        let mut state = self.shared.state();
        state.generation += 1;
        state.locks.clear();
        state.current = state.durable.clone();
        // A file renamed across directories may have two durable names for
        // one inode; cut it once.
        let mut seen: HashSet<*const Mutex<Inode>> = HashSet::new();
        for (path, inode) in &state.durable {
            if seen.insert(Arc::as_ptr(inode)) {
                let mut rng = SplitMix64::new(seed ^ fnv1a(path.as_os_str().as_encoded_bytes()));
                crash_inode(&mut lock_inode(inode), mode, &mut rng);
            }
        }
    }

    /// Arms a fault: among operations of kind `op` on a path containing
    /// `path_contains` (any path if `None`), the first `skip` succeed and
    /// the next `times` fail (`u64::MAX`: all of them) with an
    /// `io::ErrorKind::Other` error naming the fault. A failed operation
    /// changes nothing. Several faults may be armed at once.
    pub fn inject_fault(&self, op: FaultOp, path_contains: Option<&str>, skip: u64, times: u64) {
        self.shared.state().faults.push(Fault {
            op,
            path_contains: path_contains.map(str::to_string),
            skip,
            times,
        });
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.state().faults.clear();
    }

    /// With `Some(limit)`, an append that would take the bytes of all files
    /// (in the current namespace) past `limit` fails with
    /// `io::ErrorKind::StorageFull` and writes nothing.
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.shared.state().space_limit_bytes = bytes;
    }

    /// The current content of `path`, if it exists.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let state = self.shared.state();
        state
            .current
            .get(path)
            .map(|inode| lock_inode(inode).data.clone())
    }

    /// Replaces the content of `path` with `bytes`, synced and under a durable
    /// name, creating the file and its parent directories if needed. A test
    /// fixture, not an operation: it is not counted and cannot fail.
    pub fn write_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let mut state = self.shared.state();
        if let Some(dir) = path.parent() {
            state.add_dirs(dir);
        }
        let inode = state.current.entry(path.to_path_buf()).or_default().clone();
        {
            let mut inode = lock_inode(&inode);
            inode.synced_len = bytes.len();
            inode.data = bytes;
        }
        state.durable.insert(path.to_path_buf(), inode);
    }

    /// XORs the byte at `offset` of `path` with `xor`, in the current and the
    /// synced content alike. False if there is no such file or byte.
    pub fn corrupt_byte(&self, path: &Path, offset: u64, xor: u8) -> bool {
        let state = self.shared.state();
        let Some(inode) = state.current.get(path) else {
            return false;
        };
        let mut inode = lock_inode(inode);
        let byte = usize::try_from(offset)
            .ok()
            .and_then(|i| inode.data.get_mut(i));
        match byte {
            Some(byte) => {
                *byte ^= xor;
                true
            }
            None => false,
        }
    }

    /// Cuts `path` to `len` bytes, in the current and the synced content
    /// alike. False if there is no such file or it is shorter than `len`.
    pub fn truncate(&self, path: &Path, len: u64) -> bool {
        let state = self.shared.state();
        let Some(inode) = state.current.get(path) else {
            return false;
        };
        let mut inode = lock_inode(inode);
        match usize::try_from(len) {
            Ok(len) if len <= inode.data.len() => {
                inode.data.truncate(len);
                inode.synced_len = inode.synced_len.min(len);
                true
            }
            _ => false,
        }
    }

    /// Bytes of every file in the current namespace.
    pub fn total_bytes(&self) -> u64 {
        self.shared.state().total_bytes()
    }

    /// How many operations of kind `op` were attempted (failed ones included,
    /// operations through handles dead since a crash excluded). Crash tests
    /// run a workload once, read a count, then replay it crashing or failing
    /// at each point.
    pub fn op_count(&self, op: FaultOp) -> u64 {
        self.shared.state().op_counts.get(&op).copied().unwrap_or(0)
    }
}

impl fmt::Debug for MemFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state();
        f.debug_struct("MemFs")
            .field("files", &state.current.len())
            .field("durable_names", &state.durable.len())
            .field("dirs", &state.dirs.len())
            .field("total_bytes", &state.total_bytes())
            .field("generation", &state.generation)
            .field("armed_faults", &state.faults.len())
            .field("space_limit_bytes", &state.space_limit_bytes)
            .finish()
    }
}

/// Applies a crash to one inode; afterwards all that is left is durable.
fn crash_inode(inode: &mut Inode, mode: CrashMode, rng: &mut SplitMix64) {
    let synced_len = inode.synced_len.min(inode.data.len());
    let tail_len = inode.data.len() - synced_len;
    let keep_len = match mode {
        CrashMode::DropUnsynced => synced_len,
        CrashMode::KeepRandomPrefix => synced_len + rng.below(tail_len + 1),
        CrashMode::TornPages { page_bytes } => {
            tear_pages(inode, synced_len, page_bytes.max(1), rng)
        }
    };
    inode.data.truncate(keep_len);
    inode.synced_len = inode.data.len();
}

/// Tears the unsynced tail of `inode` into pages and returns the length the
/// file keeps. Page boundaries are multiples of `page_bytes` in the file, so
/// the first unsynced page may be short; bytes below `synced_len` are never
/// changed.
fn tear_pages(
    inode: &mut Inode,
    synced_len: usize,
    page_bytes: usize,
    rng: &mut SplitMix64,
) -> usize {
    let mut pages = Vec::new();
    let mut start = synced_len;
    while start < inode.data.len() {
        let end = ((start / page_bytes + 1) * page_bytes).min(inode.data.len());
        pages.push(start..end);
        start = end;
    }
    let kept_pages = rng.below(pages.len() + 1);
    for page in pages.iter().take(kept_pages) {
        let Some(bytes) = inode.data.get_mut(page.clone()) else {
            continue;
        };
        match rng.below(3) {
            0 => {}
            1 => bytes.fill(0),
            _ => bytes
                .iter_mut()
                .for_each(|b| *b = rng.next_u64().to_le_bytes()[0]),
        }
    }
    kept_pages
        .checked_sub(1)
        .and_then(|last| pages.get(last))
        .map_or(synced_len, |page| page.end)
}

/// splitmix64 (Steele, Lea, Flood 2014): tiny, fast, and good enough to pick
/// crash outcomes; deterministic per seed so a failing seed replays.
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0). The modulo bias is irrelevant
    /// for choosing crash outcomes.
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        (self.next_u64() % n as u64) as usize
    }
}

/// FNV-1a, to give each file its own crash outcome for one seed.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

struct MemWritable {
    shared: Arc<Shared>,
    inode: InodeRef,
    path: PathBuf,
    generation: u64,
    len: u64,
}

impl MemWritable {
    fn live_state(&self) -> io::Result<MutexGuard<'_, State>> {
        let state = self.shared.state();
        if state.generation != self.generation {
            return Err(crashed());
        }
        Ok(state)
    }
}

impl WritableFile for MemWritable {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut state = self.live_state()?;
        state.check(FaultOp::Append, &[&self.path])?;
        if let Some(limit) = state.space_limit_bytes
            && state.total_bytes().saturating_add(data.len() as u64) > limit
        {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "space limit of {limit} bytes reached appending to {}",
                    self.path.display()
                ),
            ));
        }
        lock_inode(&self.inode).data.extend_from_slice(data);
        drop(state);
        self.len += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.live_state()?;
        state.check(FaultOp::Sync, &[&self.path])?;
        let mut inode = lock_inode(&self.inode);
        inode.synced_len = inode.data.len();
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// A snapshot of a file taken at `open_random`: tables are immutable, so a
/// copy is what an mmap of a finished table would show.
struct MemRandom {
    shared: Arc<Shared>,
    path: PathBuf,
    generation: u64,
    data: Vec<u8>,
}

impl MemRandom {
    fn is_live(&self) -> bool {
        self.shared.state().generation == self.generation
    }
}

impl RandomAccessFile for MemRandom {
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        {
            let mut state = self.shared.state();
            if state.generation != self.generation {
                return Err(crashed());
            }
            state.check(FaultOp::Read, &[&self.path])?;
        }
        let past_end = || io::Error::new(io::ErrorKind::UnexpectedEof, "read past end of file");
        let start = usize::try_from(offset).map_err(|_| past_end())?;
        let end = start.checked_add(buf.len()).ok_or_else(past_end)?;
        let src = self.data.get(start..end).ok_or_else(past_end)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    /// The whole snapshot; `None` once a crash has killed this handle.
    fn as_slice(&self) -> Option<&[u8]> {
        self.is_live().then_some(self.data.as_slice())
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

struct MemLock {
    shared: Arc<Shared>,
    path: PathBuf,
    /// Unique per lock taken, so dropping a lock that a crash already
    /// released cannot release a newer holder's lock.
    token: u64,
}

impl DirLock for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        if state.locks.get(&self.path) == Some(&self.token) {
            state.locks.remove(&self.path);
        }
    }
}

impl FileSystem for MemFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut state = self.shared.state();
        state.check(FaultOp::Create, &[path])?;
        state.require_parent(path)?;
        let inode = InodeRef::default();
        state.current.insert(path.to_path_buf(), inode.clone());
        Ok(Box::new(MemWritable {
            shared: self.shared.clone(),
            inode,
            path: path.to_path_buf(),
            generation: state.generation,
            len: 0,
        }))
    }

    fn open_random(&self, path: &Path) -> io::Result<Arc<dyn RandomAccessFile>> {
        let mut state = self.shared.state();
        state.check(FaultOp::OpenRandom, &[path])?;
        let data = lock_inode(state.file(path)?).data.clone();
        Ok(Arc::new(MemRandom {
            shared: self.shared.clone(),
            path: path.to_path_buf(),
            generation: state.generation,
            data,
        }))
    }

    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut state = self.shared.state();
        state.check(FaultOp::Read, &[path])?;
        Ok(lock_inode(state.file(path)?).data.clone())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = self.shared.state();
        state.check(FaultOp::Rename, &[from, to])?;
        state.require_parent(to)?;
        let inode = state.current.remove(from).ok_or_else(|| not_found(from))?;
        state.current.insert(to.to_path_buf(), inode);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut state = self.shared.state();
        state.check(FaultOp::Remove, &[path])?;
        match state.current.remove(path) {
            Some(_) => Ok(()),
            None => Err(not_found(path)),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = self.shared.state();
        state.require_dir(dir)?;
        Ok(state
            .current
            .keys()
            .filter(|path| in_dir(path, dir))
            .filter_map(|path| path.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.shared.state().add_dirs(dir);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut state = self.shared.state();
        state.check(FaultOp::SyncDir, &[dir])?;
        state.require_dir(dir)?;
        state.durable.retain(|path, _| !in_dir(path, dir));
        let entries: Vec<(PathBuf, InodeRef)> = state
            .current
            .iter()
            .filter(|(path, _)| in_dir(path, dir))
            .map(|(path, inode)| (path.clone(), inode.clone()))
            .collect();
        state.durable.extend(entries);
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        let state = self.shared.state();
        state.current.contains_key(path) || state.dirs.contains(path)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let state = self.shared.state();
        Ok(lock_inode(state.file(path)?).data.len() as u64)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut state = self.shared.state();
        if state.locks.contains_key(path) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("lock {} already held", path.display()),
            ));
        }
        state.require_parent(path)?;
        state.current.entry(path.to_path_buf()).or_default();
        state.next_lock_token += 1;
        let token = state.next_lock_token;
        state.locks.insert(path.to_path_buf(), token);
        Ok(Box::new(MemLock {
            shared: self.shared.clone(),
            path: path.to_path_buf(),
            token,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A file system with directory `db` (durable) and no files.
    fn fs_with_db() -> MemFs {
        let fs = MemFs::new();
        fs.create_dir_all(&p("db")).unwrap();
        fs
    }

    /// `db/name` created, dir-synced, holding `synced` (synced) then
    /// `unsynced` (appended, not synced); the handle is returned still open.
    fn file_with_tail(
        fs: &MemFs,
        name: &str,
        synced: &[u8],
        unsynced: &[u8],
    ) -> Box<dyn WritableFile> {
        let mut f = fs.create(&p("db").join(name)).unwrap();
        fs.sync_dir(&p("db")).unwrap();
        f.append(synced).unwrap();
        f.sync().unwrap();
        f.append(unsynced).unwrap();
        f
    }

    fn assert_other(err: io::Error, needle: &str) {
        assert_eq!(err.kind(), io::ErrorKind::Other, "{err}");
        assert!(err.to_string().contains(needle), "{err}");
    }

    #[test]
    fn memfs_is_clone_send_sync_default_debug() {
        // Pins the auto traits crash tests and threads rely on.
        fn check<T: Clone + Send + Sync + Default + fmt::Debug + 'static>() {}
        check::<MemFs>();
        let fs = fs_with_db();
        assert!(format!("{fs:?}").contains("MemFs"));
    }

    #[test]
    fn unsynced_data_is_lost_at_crash() {
        // Pins DropUnsynced: only bytes covered by a successful sync survive.
        let fs = fs_with_db();
        let _f = file_with_tail(&fs, "wal", b"synced", b" lost");
        assert_eq!(fs.file_bytes(&p("db/wal")).unwrap(), b"synced lost");
        fs.crash(CrashMode::DropUnsynced, 0);
        assert_eq!(fs.read_all(&p("db/wal")).unwrap(), b"synced");
    }

    #[test]
    fn synced_data_survives_crash_in_every_mode() {
        // Pins that a synced file under a synced name is never changed by a crash.
        for mode in [
            CrashMode::DropUnsynced,
            CrashMode::KeepRandomPrefix,
            CrashMode::TornPages { page_bytes: 4 },
        ] {
            let fs = fs_with_db();
            let mut f = fs.create(&p("db/t")).unwrap();
            f.append(b"all of it").unwrap();
            f.sync().unwrap();
            fs.sync_dir(&p("db")).unwrap();
            fs.crash(mode, 7);
            assert_eq!(fs.read_all(&p("db/t")).unwrap(), b"all of it", "{mode:?}");
        }
    }

    #[test]
    fn created_file_vanishes_at_crash_when_dir_not_synced() {
        // Pins that a name is durable only after sync_dir, even if its data was synced.
        let fs = fs_with_db();
        let mut f = fs.create(&p("db/new")).unwrap();
        f.append(b"data").unwrap();
        f.sync().unwrap();
        assert_eq!(fs.list(&p("db")).unwrap(), vec!["new".to_string()]);
        fs.crash(CrashMode::DropUnsynced, 0);
        assert!(!fs.exists(&p("db/new")));
        assert!(fs.list(&p("db")).unwrap().is_empty());
        assert_eq!(
            fs.read_all(&p("db/new")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn removal_is_undone_at_crash_without_sync_dir() {
        // Pins that remove, like create, only changes the current view until sync_dir.
        let fs = fs_with_db();
        fs.write_file_bytes(&p("db/old"), b"keep".to_vec());
        fs.remove(&p("db/old")).unwrap();
        assert!(!fs.exists(&p("db/old")));
        fs.crash(CrashMode::DropUnsynced, 0);
        assert_eq!(fs.read_all(&p("db/old")).unwrap(), b"keep");
        fs.remove(&p("db/old")).unwrap();
        fs.sync_dir(&p("db")).unwrap();
        fs.crash(CrashMode::DropUnsynced, 0);
        assert!(!fs.exists(&p("db/old")));
    }

    #[test]
    fn rename_is_not_durable_until_sync_dir() {
        // Pins that a rename without sync_dir is undone by a crash: the old names come back.
        let fs = fs_with_db();
        fs.write_file_bytes(&p("db/CURRENT"), b"MANIFEST-1".to_vec());
        fs.write_file_bytes(&p("db/tmp"), b"MANIFEST-2".to_vec());
        fs.rename(&p("db/tmp"), &p("db/CURRENT")).unwrap();
        assert_eq!(fs.read_all(&p("db/CURRENT")).unwrap(), b"MANIFEST-2");
        assert!(!fs.exists(&p("db/tmp")));
        fs.crash(CrashMode::DropUnsynced, 0);
        assert_eq!(fs.read_all(&p("db/CURRENT")).unwrap(), b"MANIFEST-1");
        assert_eq!(fs.read_all(&p("db/tmp")).unwrap(), b"MANIFEST-2");
    }

    #[test]
    fn rename_is_atomic_and_durable_after_sync_dir() {
        // Pins the write-temp, sync, rename, sync_dir protocol: after it, the new content only.
        let fs = fs_with_db();
        fs.write_file_bytes(&p("db/CURRENT"), b"MANIFEST-1".to_vec());
        let mut tmp = fs.create(&p("db/CURRENT.tmp")).unwrap();
        tmp.append(b"MANIFEST-2").unwrap();
        tmp.sync().unwrap();
        fs.rename(&p("db/CURRENT.tmp"), &p("db/CURRENT")).unwrap();
        fs.sync_dir(&p("db")).unwrap();
        fs.crash(CrashMode::TornPages { page_bytes: 1 }, 3);
        assert_eq!(fs.read_all(&p("db/CURRENT")).unwrap(), b"MANIFEST-2");
        assert_eq!(fs.list(&p("db")).unwrap(), vec!["CURRENT".to_string()]);
    }

    #[test]
    fn keep_random_prefix_keeps_a_prefix_deterministic_per_seed() {
        // Pins that KeepRandomPrefix leaves synced + a prefix of the tail, the same for the same seed.
        let tail: Vec<u8> = (0..=255).collect();
        let outcome = |seed| {
            let fs = fs_with_db();
            let _f = file_with_tail(&fs, "wal", b"head", &tail);
            fs.crash(CrashMode::KeepRandomPrefix, seed);
            fs.read_all(&p("db/wal")).unwrap()
        };
        let mut lengths = BTreeSet::new();
        for seed in 0..32 {
            let bytes = outcome(seed);
            assert_eq!(bytes, outcome(seed), "seed {seed} not deterministic");
            let (head, kept) = bytes.split_at(4);
            assert_eq!(head, b"head");
            assert_eq!(kept, &tail[..kept.len()], "seed {seed} kept a non-prefix");
            lengths.insert(bytes.len());
        }
        assert!(lengths.len() > 8, "seeds barely vary the cut: {lengths:?}");
    }

    #[test]
    fn torn_pages_keep_synced_prefix_intact() {
        // Pins that TornPages never touches synced bytes and cuts only at page boundaries.
        let synced = vec![0xAB; 10];
        let tail = vec![0xCD; 30];
        let mut saw_damage = false;
        for seed in 0..64 {
            let fs = fs_with_db();
            let _f = file_with_tail(&fs, "wal", &synced, &tail);
            fs.crash(CrashMode::TornPages { page_bytes: 8 }, seed);
            let bytes = fs.read_all(&p("db/wal")).unwrap();
            assert_eq!(&bytes[..10], &synced[..], "seed {seed}");
            // Boundaries at file offsets 16, 24, 32, 40 (the end).
            assert!(
                [10, 16, 24, 32, 40].contains(&bytes.len()),
                "seed {seed}: len {}",
                bytes.len()
            );
            saw_damage |= bytes[10..].iter().any(|&b| b != 0xCD);
            // After the crash everything left is durable.
            fs.crash(CrashMode::DropUnsynced, 0);
            assert_eq!(fs.read_all(&p("db/wal")).unwrap(), bytes);
        }
        assert!(saw_damage, "no seed zeroed or garbled a page");
    }

    #[test]
    fn handles_opened_before_crash_are_dead() {
        // Pins the generation counter: old writers and readers fail and change nothing.
        let fs = fs_with_db();
        let mut w = file_with_tail(&fs, "wal", b"synced", b"");
        fs.write_file_bytes(&p("db/table"), b"table".to_vec());
        let r = fs.open_random(&p("db/table")).unwrap();
        assert_eq!(r.as_slice(), Some(&b"table"[..]));
        fs.crash(CrashMode::DropUnsynced, 0);

        assert_other(w.append(b"late").unwrap_err(), "crashed");
        assert_other(w.sync().unwrap_err(), "crashed");
        assert_eq!(fs.read_all(&p("db/wal")).unwrap(), b"synced");
        let mut buf = [0; 2];
        assert_other(r.read_exact_at(0, &mut buf).unwrap_err(), "crashed");
        assert_eq!(r.as_slice(), None);

        let r = fs.open_random(&p("db/table")).unwrap();
        r.read_exact_at(1, &mut buf).unwrap();
        assert_eq!(&buf, b"ab");
    }

    #[test]
    fn injected_fault_fires_after_skip_for_times_on_matching_paths_only() {
        // Pins inject_fault: skip matching ops, fail `times`, then succeed; other paths untouched.
        let fs = fs_with_db();
        let mut wal = fs.create(&p("db/000001.log")).unwrap();
        let mut sst = fs.create(&p("db/000002.sst")).unwrap();
        fs.inject_fault(FaultOp::Append, Some(".log"), 2, 2);
        let results: Vec<bool> = (0..6u8)
            .map(|i| {
                sst.append(&[i]).unwrap();
                wal.append(&[i]).is_ok()
            })
            .collect();
        assert_eq!(results, [true, true, false, false, true, true]);
        // A failed append appends nothing.
        assert_eq!(fs.file_bytes(&p("db/000001.log")).unwrap(), [0, 1, 4, 5]);
        assert_eq!(
            fs.file_bytes(&p("db/000002.sst")).unwrap(),
            [0, 1, 2, 3, 4, 5]
        );
        assert_eq!(wal.len(), 4);
        assert_eq!(fs.op_count(FaultOp::Append), 12);

        fs.inject_fault(FaultOp::Rename, None, 0, u64::MAX);
        fs.inject_fault(FaultOp::Read, Some("sst"), 0, 1);
        for _ in 0..3 {
            assert_other(
                fs.rename(&p("db/000002.sst"), &p("db/x")).unwrap_err(),
                "injected fault: Rename",
            );
        }
        assert_other(
            fs.read_all(&p("db/000002.sst")).unwrap_err(),
            "injected fault: Read",
        );
        assert!(fs.read_all(&p("db/000002.sst")).is_ok());
        assert!(fs.exists(&p("db/000002.sst")));
        fs.clear_faults();
        fs.rename(&p("db/000002.sst"), &p("db/x")).unwrap();
        assert_eq!(fs.op_count(FaultOp::Rename), 4);
    }

    #[test]
    fn failed_sync_makes_nothing_durable() {
        // Pins that an injected sync failure leaves the durable content where it was.
        let fs = fs_with_db();
        let mut f = file_with_tail(&fs, "wal", b"a", b"b");
        fs.inject_fault(FaultOp::Sync, Some("wal"), 0, 1);
        assert_other(f.sync().unwrap_err(), "injected fault: Sync");
        fs.crash(CrashMode::DropUnsynced, 0);
        assert_eq!(fs.read_all(&p("db/wal")).unwrap(), b"a");
    }

    #[test]
    fn failed_sync_dir_makes_no_name_durable() {
        // Pins that an injected sync_dir failure leaves the durable namespace unchanged.
        let fs = fs_with_db();
        let _f = fs.create(&p("db/new")).unwrap();
        fs.inject_fault(FaultOp::SyncDir, Some("db"), 0, 1);
        assert_other(
            fs.sync_dir(&p("db")).unwrap_err(),
            "injected fault: SyncDir",
        );
        fs.crash(CrashMode::DropUnsynced, 0);
        assert!(!fs.exists(&p("db/new")));
    }

    #[test]
    fn full_disk_fails_append_with_storage_full() {
        // Pins set_space_limit: an append past the limit fails whole and writes nothing.
        let fs = fs_with_db();
        fs.write_file_bytes(&p("db/a"), vec![0; 6]);
        fs.set_space_limit(Some(10));
        let mut f = fs.create(&p("db/b")).unwrap();
        f.append(&[1; 4]).unwrap();
        let err = f.append(&[2]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.file_bytes(&p("db/b")).unwrap(), [1; 4]);
        assert_eq!(fs.total_bytes(), 10);
        fs.remove(&p("db/a")).unwrap();
        f.append(&[2]).unwrap();
        fs.set_space_limit(None);
        f.append(&[3; 100]).unwrap();
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        // Pins lock: a second holder gets WouldBlock until the first DirLock drops.
        let fs = fs_with_db();
        let held = fs.lock(&p("db/LOCK")).unwrap();
        assert!(fs.exists(&p("db/LOCK")));
        let Err(err) = fs.lock(&p("db/LOCK")) else {
            panic!("second lock succeeded")
        };
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        drop(held);
        let _again = fs.lock(&p("db/LOCK")).unwrap();
    }

    #[test]
    fn lock_is_released_by_crash_and_stale_drop_keeps_new_holder() {
        // Pins that a crash frees locks, and dropping the dead lock does not free its successor.
        let fs = fs_with_db();
        fs.sync_dir(&p("db")).unwrap();
        let stale = fs.lock(&p("db/LOCK")).unwrap();
        fs.crash(CrashMode::DropUnsynced, 0);
        let fresh = fs.lock(&p("db/LOCK")).unwrap();
        drop(stale);
        assert_eq!(
            fs.lock(&p("db/LOCK")).err().map(|e| e.kind()),
            Some(io::ErrorKind::WouldBlock)
        );
        drop(fresh);
        fs.lock(&p("db/LOCK")).unwrap();
    }

    #[test]
    fn create_truncates_and_open_random_snapshots() {
        // Pins create's truncation, open_random's snapshot and its bounds checks.
        let fs = fs_with_db();
        fs.write_file_bytes(&p("db/f"), b"old content".to_vec());
        let mut f = fs.create(&p("db/f")).unwrap();
        assert_eq!(fs.file_size(&p("db/f")).unwrap(), 0);
        f.append(b"0123").unwrap();
        let r = fs.open_random(&p("db/f")).unwrap();
        f.append(b"4567").unwrap();
        assert_eq!(r.size(), 4);
        assert_eq!(r.as_slice(), Some(&b"0123"[..]));
        let mut buf = [0; 2];
        r.read_exact_at(2, &mut buf).unwrap();
        assert_eq!(&buf, b"23");
        assert_eq!(
            r.read_exact_at(3, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(
            r.read_exact_at(u64::MAX, &mut buf).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(fs.read_all(&p("db/f")).unwrap(), b"01234567");
        assert_eq!(
            fs.open_random(&p("db/none")).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
    }

    #[test]
    fn namespace_errors_are_not_found() {
        // Pins NotFound for missing files and directories, and list returning direct children only.
        let fs = fs_with_db();
        assert_eq!(
            fs.list(&p("nope")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.create(&p("nope/f")).err().map(|e| e.kind()),
            Some(io::ErrorKind::NotFound)
        );
        assert_eq!(
            fs.remove(&p("db/f")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.rename(&p("db/f"), &p("db/g")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert_eq!(
            fs.file_size(&p("db/f")).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        fs.create_dir_all(&p("db/sub")).unwrap();
        fs.write_file_bytes(&p("db/sub/x"), vec![1]);
        fs.write_file_bytes(&p("db/y"), vec![2]);
        assert_eq!(fs.list(&p("db")).unwrap(), vec!["y".to_string()]);
        assert_eq!(fs.list(&p("db/sub")).unwrap(), vec!["x".to_string()]);
    }

    #[test]
    fn corrupt_byte_and_truncate_change_durable_content() {
        // Pins the corruption helpers: their damage survives a crash.
        let fs = fs_with_db();
        fs.write_file_bytes(&p("db/t"), vec![0, 0, 0, 0]);
        assert!(fs.corrupt_byte(&p("db/t"), 1, 0xFF));
        assert!(!fs.corrupt_byte(&p("db/t"), 4, 0xFF));
        assert!(fs.truncate(&p("db/t"), 3));
        assert!(!fs.truncate(&p("db/t"), 4));
        assert!(!fs.truncate(&p("db/missing"), 0));
        fs.crash(CrashMode::DropUnsynced, 0);
        assert_eq!(fs.read_all(&p("db/t")).unwrap(), [0, 0xFF, 0]);
    }
}
