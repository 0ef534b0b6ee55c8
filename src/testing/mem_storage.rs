//! An in-memory store that tells written bytes from synced bytes and can be told
//! to fail, for the loom models, fault-injection tests and the power-cut model: its
//! segments, and every other file and directory of a WAL (manifest, lock,
//! checkpoint, shard directories) by path, each call that takes effect logged.
use crate::error::{Result, WalError};
use crate::format::names::{
    parse_segment_file_name, parse_shard_dir_name, segment_path, shard_dir_name,
};
use crate::format::stamp::FileStamp;
use crate::io::{DirLock, DirSync, Entry, Kind, ReadIo, SegmentIo, Storage, WriteSteps};
use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A segment of the in-memory store: (shard, sequence).
pub(crate) type FileId = (u32, u64);

/// One storage call that took effect, for the power-cut tests to replay: they
/// rebuild what a disk could hold after a power cut at any point of the log.
/// (The loom models record no log.)
#[derive(Clone, Debug)]
#[cfg_attr(loom, allow(dead_code))]
pub(crate) enum Op {
    Create(FileId),
    Write {
        file: FileId,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// `fdatasync` (`all`: `fsync`).
    Sync {
        file: FileId,
        all: bool,
    },
    Cut {
        file: FileId,
        len: u64,
    },
    /// The file grown to `len` bytes of zeros (blocks reserved, length changed).
    Preallocate {
        file: FileId,
        len: u64,
    },
    Remove(FileId),
    /// fsync of a shard directory: makes the creations, renames and removals in it
    /// durable.
    SyncDir(u32),
    /// A file other than a segment (a path under the root) created or emptied, and
    /// `bytes` written into it: an atomic write's temporary file.
    Put {
        path: PathBuf,
        bytes: Vec<u8>,
    },
    /// fsync of the file `path`.
    SyncFile(PathBuf),
    /// `from` renamed over `to` (which may not exist).
    Rename {
        from: PathBuf,
        to: PathBuf,
    },
    /// The file `path` removed.
    RemoveFile(PathBuf),
    /// Directory `path` created.
    MakeDir(PathBuf),
    /// fsync of the root directory.
    SyncRoot,
    /// The lock taken (its file created if missing: it holds no bytes).
    Lock,
}

/// The calls of a store, in the order they took effect: each is pushed while the
/// lock that orders it against the other calls on its file is held. A plain std
/// mutex: only tests that run no loom model record a log.
pub(crate) type OpLog = std::sync::Arc<std::sync::Mutex<Vec<Op>>>;

fn record(log: &Option<OpLog>, op: impl FnOnce() -> Op) {
    if let Some(log) = log {
        log.lock().unwrap_or_else(|e| e.into_inner()).push(op());
    }
}

#[derive(Default)]
pub(crate) struct Faults {
    pub(crate) fail_writes: AtomicBool,
    pub(crate) fail_syncs: AtomicBool,
    pub(crate) syncs: AtomicU64,
    /// Microseconds every `sync_all` (the seal syncer's call) sleeps first: a slow
    /// disk, so that a test can catch an answer that did not wait for it.
    pub(crate) seal_sync_delay_us: AtomicU64,
    /// Microseconds every `sync_data` (the actor's group commit) sleeps first: a
    /// slow disk, for the tests of the durable waiters' polling.
    pub(crate) data_sync_delay_us: AtomicU64,
    /// Microseconds every segment removal sleeps first: a slow unlink, so that a
    /// test can run something while a compaction is still unlinking.
    pub(crate) remove_delay_us: AtomicU64,
}

pub(crate) struct MemSegment {
    /// Bytes written, how many of them are synced, and how many changes were made
    /// (its stamp's times).
    data: Mutex<(Vec<u8>, usize)>,
    changes: AtomicU64,
    inode: u64,
    faults: std::sync::Arc<Faults>,
    path: PathBuf,
    id: FileId,
    log: Option<OpLog>,
}

impl MemSegment {
    /// Bytes made durable by a successful sync.
    pub(crate) fn synced(&self) -> Vec<u8> {
        let g = lock(&self.data);
        g.0[..g.1].to_vec()
    }
    /// Bytes written.
    pub(crate) fn data_len(&self) -> usize {
        lock(&self.data).0.len()
    }
}

impl SegmentIo for MemSegment {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected write failure"));
        }
        let mut g = lock(&self.data);
        let end = offset as usize + buf.len();
        if g.0.len() < end {
            g.0.resize(end, 0);
        }
        g.0[offset as usize..end].copy_from_slice(buf);
        self.changes.fetch_add(1, Ordering::SeqCst);
        record(&self.log, || Op::Write {
            file: self.id,
            offset,
            bytes: buf.to_vec(),
        });
        Ok(())
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let g = lock(&self.data);
        let end = offset as usize + buf.len();
        if end > g.0.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past written bytes",
            ));
        }
        buf.copy_from_slice(&g.0[offset as usize..end]);
        Ok(())
    }
    fn read_up_to(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let g = lock(&self.data);
        let from = (offset as usize).min(g.0.len());
        let n = buf.len().min(g.0.len() - from);
        buf[..n].copy_from_slice(&g.0[from..from + n]);
        Ok(n)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.data).0.len() as u64)
    }
    fn sync_data(&self) -> io::Result<()> {
        let delay = self.faults.data_sync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        self.sync(false)
    }
    // Zeros, like the blocks a file system reserves. Called only by a writer
    // over a store made with a preallocation chunk (`MemStorage::recording`).
    fn preallocate(&self, len: u64) -> io::Result<()> {
        let mut g = lock(&self.data);
        if g.0.len() < len as usize {
            g.0.resize(len as usize, 0);
        }
        self.changes.fetch_add(1, Ordering::SeqCst);
        record(&self.log, || Op::Preallocate { file: self.id, len });
        Ok(())
    }
    fn cut_to(&self, len: u64) -> io::Result<()> {
        let mut g = lock(&self.data);
        g.0.truncate(len as usize);
        g.1 = g.1.min(len as usize);
        self.changes.fetch_add(1, Ordering::SeqCst);
        record(&self.log, || Op::Cut { file: self.id, len });
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        let delay = self.faults.seal_sync_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        self.sync(true)
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

impl MemSegment {
    fn sync(&self, all: bool) -> io::Result<()> {
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected fsync failure"));
        }
        let mut g = lock(&self.data);
        g.1 = g.0.len();
        self.faults.syncs.fetch_add(1, Ordering::SeqCst);
        record(&self.log, || Op::Sync { file: self.id, all });
        Ok(())
    }
}

/// The name error messages give `path` in memory.
fn mem_path(path: &Path) -> PathBuf {
    Path::new("mem").join(path)
}

/// A file other than a segment: its bytes (replaced whole by an atomic write, so
/// an open handle keeps the bytes it opened) and its stamp. (What of it is durable
/// is for the power-cut model to work out from the log.)
#[derive(Clone)]
struct NamedFile {
    bytes: Arc<Vec<u8>>,
    inode: u64,
    changes: i64,
}

/// The files and directories besides segments.
#[derive(Default)]
struct Named {
    files: BTreeMap<PathBuf, NamedFile>,
    /// Directories created (the root always exists).
    dirs: BTreeSet<PathBuf>,
}

/// A named file open for reading.
struct MemReader {
    bytes: Arc<Vec<u8>>,
    path: PathBuf,
}

impl ReadIo for MemReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        match from
            .checked_add(buf.len())
            .and_then(|end| self.bytes.get(from..end))
        {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past the end",
            )),
        }
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.bytes.len() as u64)
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// The in-memory lock, released when dropped.
struct MemLock(Arc<std::sync::atomic::AtomicBool>);

impl Drop for MemLock {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Every segment of every shard, and the WAL's other files, in memory.
#[derive(Default)]
pub(crate) struct MemStorage {
    pub(crate) faults: std::sync::Arc<Faults>,
    segments: Mutex<BTreeMap<(u32, u64), std::sync::Arc<MemSegment>>>,
    /// A plain std mutex: the models never reach these files (no loom model opens a
    /// directory or writes a checkpoint).
    named: std::sync::Mutex<Named>,
    locked: Arc<std::sync::atomic::AtomicBool>,
    /// Inode numbers given out.
    inodes: AtomicU64,
    log: Option<OpLog>,
    preallocation_chunk: u64,
    /// Under loom, run the seal syncer on its own thread (`model::mem_wal_with_syncer_thread`).
    syncer_thread: bool,
}

impl MemStorage {
    /// A store that records every call that takes effect in `log`, whose writer
    /// preallocates `preallocation_chunk` bytes ahead (0: never).
    #[cfg_attr(loom, allow(dead_code))]
    pub(crate) fn recording(log: OpLog, preallocation_chunk: u64) -> MemStorage {
        MemStorage {
            log: Some(log),
            preallocation_chunk,
            ..MemStorage::default()
        }
    }
    /// A store whose WALs run the seal syncer on its own thread under loom.
    #[cfg(loom)]
    pub(crate) fn with_syncer_thread() -> MemStorage {
        MemStorage {
            syncer_thread: true,
            ..MemStorage::default()
        }
    }
    fn new_segment(&self, shard: u32, sequence: u64, bytes: Vec<u8>) -> Arc<MemSegment> {
        let len = bytes.len();
        Arc::new(MemSegment {
            data: Mutex::new((bytes, len)),
            changes: AtomicU64::new(0),
            inode: self.inodes.fetch_add(1, Ordering::SeqCst) + 1,
            faults: self.faults.clone(),
            path: mem_path(&segment_path(shard, sequence)),
            id: (shard, sequence),
            log: self.log.clone(),
        })
    }
    /// Takes over segment `sequence` of `shard` with `bytes`, a file recovery
    /// left on disk, recording nothing: the caller's log already holds how the
    /// file got there, and what of it is durable (the store counts it all as
    /// synced, which only `MemSegment::synced` reports). For the power-cut
    /// model's second run.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn adopt(&self, shard: u32, sequence: u64, bytes: Vec<u8>) -> Arc<dyn SegmentIo> {
        let seg = self.new_segment(shard, sequence, bytes);
        lock(&self.segments).insert((shard, sequence), seg.clone());
        seg
    }
    /// Takes over the file `path` (not a segment) with `bytes`, recording nothing,
    /// as [`adopt`](Self::adopt) does for a segment.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn adopt_file(&self, path: &Path, bytes: Vec<u8>) {
        let file = NamedFile {
            bytes: Arc::new(bytes),
            inode: self.inodes.fetch_add(1, Ordering::SeqCst) + 1,
            changes: 0,
        };
        self.named().files.insert(path.to_path_buf(), file);
    }
    /// Segment `sequence` of `shard`, if it exists.
    pub(crate) fn segment(&self, shard: u32, sequence: u64) -> Option<std::sync::Arc<MemSegment>> {
        lock(&self.segments).get(&(shard, sequence)).cloned()
    }
    /// Number of live segments.
    pub(crate) fn segment_count(&self) -> usize {
        lock(&self.segments).len()
    }
    /// A file of `bytes` open for reading, as no store holds it.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn reader(bytes: &[u8]) -> Arc<dyn ReadIo> {
        Arc::new(MemReader {
            bytes: Arc::new(bytes.to_vec()),
            path: mem_path(Path::new("INDEX")),
        })
    }
    fn named(&self) -> std::sync::MutexGuard<'_, Named> {
        self.named.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The segment `path` names, if it names one.
    fn segment_at(path: &Path) -> Option<(u32, u64)> {
        let shard = parse_shard_dir_name(path.parent()?.to_str()?)?;
        let sequence = parse_segment_file_name(path.file_name()?.to_str()?)?;
        Some((shard, sequence))
    }
    fn not_found(path: &Path, op: &'static str) -> WalError {
        WalError::io(op, mem_path(path), io::Error::from(io::ErrorKind::NotFound))
    }
    /// Logs the fsync of directory `dir`.
    fn sync_directory(&self, dir: &Path) {
        match dir.to_str().and_then(parse_shard_dir_name) {
            Some(shard) => record(&self.log, || Op::SyncDir(shard)),
            None => record(&self.log, || Op::SyncRoot),
        }
    }
}

impl Storage for MemStorage {
    fn create_segment(
        &self,
        shard: u32,
        sequence: u64,
        header: &[u8],
    ) -> Result<Arc<dyn SegmentIo>> {
        let seg = self.new_segment(shard, sequence, Vec::new());
        let mut segments = lock(&self.segments);
        record(&self.log, || Op::Create((shard, sequence)));
        seg.write_at(header, 0)
            .map_err(|e| WalError::io("writing segment header", &seg.path, e))?;
        segments.insert((shard, sequence), seg.clone());
        Ok(seg)
    }
    fn open_segment(&self, shard: u32, sequence: u64) -> Result<Arc<dyn SegmentIo>> {
        match self.segment(shard, sequence) {
            Some(seg) => Ok(seg),
            None => Err(Self::not_found(
                &segment_path(shard, sequence),
                "opening segment",
            )),
        }
    }
    fn remove_segment(&self, shard: u32, sequence: u64) -> Result<()> {
        let delay = self.faults.remove_delay_us.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(std::time::Duration::from_micros(delay));
        }
        let mut segments = lock(&self.segments);
        segments.remove(&(shard, sequence));
        record(&self.log, || Op::Remove((shard, sequence)));
        Ok(())
    }
    fn sync_dir(&self, shard: u32) -> Result<()> {
        let _segments = lock(&self.segments);
        record(&self.log, || Op::SyncDir(shard));
        Ok(())
    }
    fn preallocation_chunk(&self) -> u64 {
        self.preallocation_chunk
    }
    fn seal_syncs_inline(&self) -> bool {
        cfg!(loom) && !self.syncer_thread
    }

    fn ensure_root(&self) -> Result<()> {
        Ok(())
    }
    fn list_dir(&self, dir: &Path) -> Result<Vec<Entry>> {
        let named = self.named();
        let mut names: BTreeMap<std::ffi::OsString, Kind> = BTreeMap::new();
        for d in named.dirs.iter().filter(|d| d.parent() == Some(dir)) {
            names.extend(d.file_name().map(|n| (n.to_owned(), Kind::Dir)));
        }
        for f in named.files.keys().filter(|f| f.parent() == Some(dir)) {
            names.extend(f.file_name().map(|n| (n.to_owned(), Kind::File)));
        }
        for &(shard, sequence) in lock(&self.segments).keys() {
            let path = segment_path(shard, sequence);
            if path.parent() == Some(dir) {
                names.extend(path.file_name().map(|n| (n.to_owned(), Kind::File)));
            }
            // A shard directory holding a segment exists, made or adopted.
            if dir.as_os_str().is_empty() {
                names.insert(shard_dir_name(shard).into(), Kind::Dir);
            }
        }
        Ok(names
            .into_iter()
            .map(|(name, kind)| Entry { name, kind })
            .collect())
    }
    fn create_dir(&self, dir: &Path) -> Result<()> {
        let mut named = self.named();
        let holds_segments = dir
            .to_str()
            .and_then(parse_shard_dir_name)
            .is_some_and(|shard| lock(&self.segments).keys().any(|&(s, _)| s == shard));
        if holds_segments || !named.dirs.insert(dir.to_path_buf()) {
            return Err(WalError::io(
                "creating directory",
                mem_path(dir),
                io::Error::from(io::ErrorKind::AlreadyExists),
            ));
        }
        record(&self.log, || Op::MakeDir(dir.to_path_buf()));
        Ok(())
    }
    fn sync_root(&self) -> Result<()> {
        let _named = self.named();
        record(&self.log, || Op::SyncRoot);
        Ok(())
    }
    fn read_file(&self, path: &Path, limit: u64, _op: &'static str) -> Result<Option<Vec<u8>>> {
        let named = self.named();
        Ok(named.files.get(path).map(|f| {
            let n = f
                .bytes
                .len()
                .min(usize::try_from(limit).unwrap_or(usize::MAX));
            f.bytes[..n].to_vec()
        }))
    }
    fn open_read(&self, path: &Path, _op: &'static str) -> Result<Option<Arc<dyn ReadIo>>> {
        // A segment's bytes as they are now (what a reader opened now sees first).
        if let Some(seg) = Self::segment_at(path).and_then(|(s, n)| self.segment(s, n)) {
            let bytes = Arc::new(lock(&seg.data).0.clone());
            let path = seg.path.clone();
            return Ok(Some(Arc::new(MemReader { bytes, path })));
        }
        let named = self.named();
        Ok(named.files.get(path).map(|f| {
            Arc::new(MemReader {
                bytes: f.bytes.clone(),
                path: mem_path(path),
            }) as Arc<dyn ReadIo>
        }))
    }
    fn stamp(&self, path: &Path) -> Result<FileStamp> {
        if let Some(seg) = Self::segment_at(path).and_then(|(s, n)| self.segment(s, n)) {
            let changes = seg.changes.load(Ordering::SeqCst) as i64;
            let len = lock(&seg.data).0.len() as u64;
            return Ok(FileStamp {
                len,
                inode: seg.inode,
                mtime: (changes, 0),
                ctime: (changes, 0),
            });
        }
        match self.named().files.get(path) {
            Some(f) => Ok(FileStamp {
                len: f.bytes.len() as u64,
                inode: f.inode,
                mtime: (f.changes, 0),
                ctime: (f.changes, 0),
            }),
            None => Err(Self::not_found(path, "inspecting")),
        }
    }
    fn write_file_atomically(
        &self,
        path: &Path,
        tmp: &Path,
        parts: &[&[u8]],
        dir_sync: DirSync,
        steps: WriteSteps,
    ) -> Result<()> {
        if self.faults.fail_writes.load(Ordering::SeqCst) {
            let e = io::Error::other("injected write failure");
            return Err(WalError::io(steps.write, mem_path(tmp), e));
        }
        let mut named = self.named();
        let file = NamedFile {
            bytes: Arc::new(parts.concat()),
            inode: self.inodes.fetch_add(1, Ordering::SeqCst) + 1,
            changes: 1,
        };
        let bytes = file.bytes.to_vec();
        named.files.insert(tmp.to_path_buf(), file);
        record(&self.log, || Op::Put {
            path: tmp.to_path_buf(),
            bytes,
        });
        if self.faults.fail_syncs.load(Ordering::SeqCst) {
            let e = io::Error::other("injected fsync failure");
            return Err(WalError::io(steps.sync, mem_path(tmp), e));
        }
        record(&self.log, || Op::SyncFile(tmp.to_path_buf()));
        if let Some(f) = named.files.remove(tmp) {
            named.files.insert(path.to_path_buf(), f);
        }
        record(&self.log, || Op::Rename {
            from: tmp.to_path_buf(),
            to: path.to_path_buf(),
        });
        if dir_sync == DirSync::After {
            self.sync_directory(path.parent().unwrap_or(Path::new("")));
        }
        Ok(())
    }
    fn remove_file(&self, path: &Path, op: &'static str) -> Result<()> {
        if let Some((shard, sequence)) = Self::segment_at(path) {
            if self.segment(shard, sequence).is_some() {
                return self.remove_segment(shard, sequence);
            }
        }
        let mut named = self.named();
        if named.files.remove(path).is_some() {
            record(&self.log, || Op::RemoveFile(path.to_path_buf()));
        }
        let _ = op;
        Ok(())
    }
    fn remove_dir_all(&self, dir: &Path) -> Result<()> {
        let mut named = self.named();
        named.files.retain(|f, _| !f.starts_with(dir));
        named.dirs.retain(|d| !d.starts_with(dir));
        if let Some(shard) = dir.to_str().and_then(parse_shard_dir_name) {
            lock(&self.segments).retain(|(s, _), _| *s != shard);
        }
        Ok(())
    }
    fn remove_root(&self) -> Result<bool> {
        let named = self.named();
        Ok(named.files.is_empty() && named.dirs.is_empty() && self.segment_count() == 0)
    }
    fn lock(&self, path: &Path) -> Result<DirLock> {
        use std::sync::atomic::Ordering as Std;
        if self.locked.swap(true, Std::SeqCst) {
            return Err(WalError::Locked {
                path: mem_path(path),
            });
        }
        let mut named = self.named();
        if !named.files.contains_key(path) {
            let file = NamedFile {
                bytes: Arc::new(Vec::new()),
                inode: self.inodes.fetch_add(1, Ordering::SeqCst) + 1,
                changes: 0,
            };
            named.files.insert(path.to_path_buf(), file);
        }
        record(&self.log, || Op::Lock);
        Ok(DirLock::new(MemLock(self.locked.clone())))
    }
    fn is_locked(&self, _path: &Path) -> bool {
        self.locked.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn full_path(&self, path: &Path) -> PathBuf {
        mem_path(path)
    }
}
