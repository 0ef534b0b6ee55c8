//! The I/O boundary: the shard logic talks to segment files only through the
//! [`Storage`] and [`SegmentIo`] traits, so the concurrency protocols can run against
//! an in-memory store (loom models, fault injection) and real files alike.

use crate::error::{Result, WalError};
use crate::index::ShardIndex;
use crate::segment::{segment_file_name, Segment};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// One segment file, shared by its shard actor (the only writer) and readers.
pub(crate) trait SegmentIo: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Fills `buf` from `offset`; fails if the bytes are not there.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Reads from `offset` into `buf` until it is full or the file ends; returns how
    /// many bytes were read.
    fn read_up_to(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// `fdatasync`: makes every byte written so far durable.
    fn sync_data(&self) -> io::Result<()>;
    /// Reserves disk blocks so the file is at least `len` bytes long (zeros past the
    /// data). Writes into reserved blocks change no metadata, so the `fdatasync` that
    /// follows them does not have to commit the file's size or block map.
    fn preallocate(&self, len: u64) -> io::Result<()>;
    /// Cuts the file to `len` bytes (not durable until [`sync_all`](Self::sync_all)).
    fn cut_to(&self, len: u64) -> io::Result<()>;
    /// `fsync`: makes every byte written so far and the file's length durable.
    fn sync_all(&self) -> io::Result<()>;
    /// Where the segment lives (for error messages).
    fn path(&self) -> &Path;
}

/// Creates and removes segment files of every shard.
pub(crate) trait Storage: Send + Sync {
    /// Creates segment `sequence` of `shard` and writes `header` into it. The name is
    /// not durable until [`sync_dir`](Self::sync_dir) (the actor leaves that to the
    /// seal syncer, which runs it before anything in the segment is acknowledged).
    fn create_segment(
        &self,
        shard: u32,
        sequence: u64,
        header: &[u8],
    ) -> Result<Arc<dyn SegmentIo>>;
    /// Unlinks segment `sequence` of `shard`. Open handles stay readable.
    fn remove_segment(&self, shard: u32, sequence: u64) -> Result<()>;
    /// Makes creations and removals in `shard`'s directory durable.
    fn sync_dir(&self, shard: u32) -> Result<()>;
    /// Bytes the writer should reserve ahead of its write position (see
    /// [`SegmentIo::preallocate`]); 0 turns preallocation off.
    fn preallocation_chunk(&self) -> u64;
    /// Whether the seal syncer runs its jobs on the actor instead of its own thread
    /// (the loom models of the other protocols; see `syncer.rs`).
    fn seal_syncs_inline(&self) -> bool {
        false
    }
    /// Writes `shard`'s index checkpoint (`checkpoint.rs`) for its cleanly closed
    /// `segments`, whose sync markers vouch for segments up to `synced_through`.
    fn write_checkpoint(
        &self,
        shard: u32,
        synced_through: u64,
        next_seq: u64,
        segments: &[Segment],
        index: &ShardIndex,
    ) -> Result<()>;
}

/// How far ahead of the write position segment files are preallocated.
pub(crate) const PREALLOCATION_CHUNK: u64 = 4 * 1024 * 1024;

/// Name of shard `shard`'s directory.
pub(crate) fn shard_dir_name(shard: u32) -> String {
    format!("shard-{shard:03}")
}

/// `fsync` of a directory, so entries created or removed in it survive power loss.
pub(crate) fn sync_directory(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(|e| WalError::io("opening directory", dir, e))?;
    d.sync_all()
        .map_err(|e| WalError::io("syncing directory", dir, e))?;
    observed::dir_synced(dir);
    Ok(())
}

/// What recovery does to the segment files of a WAL on disk, as the storage calls of
/// the in-memory store's log (`Op`), for the power-cut model (`power_cut.rs`): it
/// follows a reopen with a run over memory and cuts the power anywhere after, so it
/// needs recovery's own cuts, fsyncs and removals in order, as they were made.
/// Recovery cuts, fsyncs and removes segment files through this module's functions,
/// and fsyncs directories through [`sync_directory`]; each of them both makes the
/// call and logs it, so the log cannot keep a call that the code no longer makes.
/// Logged only in the crate's unit tests, and only for a WAL directory a test
/// watches (tests run in parallel); elsewhere the functions just make the call.
pub(crate) mod observed {
    use std::path::Path;

    #[cfg(all(test, not(loom)))]
    mod watch {
        use super::super::{Op, OpLog};
        use crate::segment::parse_segment_file_name;
        use std::path::{Path, PathBuf};
        use std::sync::Mutex;

        static WATCHED: Mutex<Vec<(PathBuf, OpLog)>> = Mutex::new(Vec::new());

        /// Logs recovery's calls on the WAL at `root` into `log` until [`unwatch`].
        pub(crate) fn watch(root: &Path, log: OpLog) {
            WATCHED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((root.to_path_buf(), log));
        }

        pub(crate) fn unwatch(root: &Path) {
            WATCHED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(r, _)| r != root);
        }

        /// The shard of the shard directory `dir`, and the log of its watched WAL.
        fn shard_of(dir: &Path) -> Option<(u32, OpLog)> {
            let shard = dir
                .file_name()?
                .to_str()?
                .strip_prefix("shard-")?
                .parse()
                .ok()?;
            let root = dir.parent()?;
            let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
            let (_, log) = watched.iter().find(|(r, _)| r == root)?;
            Some((shard, log.clone()))
        }

        pub(crate) fn segment(path: &Path, op: impl FnOnce((u32, u64)) -> Op) {
            let Some((shard, log)) = path.parent().and_then(shard_of) else {
                return;
            };
            let name = path.file_name().and_then(|n| n.to_str());
            if let Some(sequence) = name.and_then(parse_segment_file_name) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(op((shard, sequence)));
            }
        }

        pub(crate) fn dir_synced(dir: &Path) {
            if let Some((shard, log)) = shard_of(dir) {
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Op::SyncDir(shard));
            }
        }
    }
    #[cfg(all(test, not(loom)))]
    pub(crate) use watch::{unwatch, watch};

    /// Cuts segment file `path` (open as `file`) to `len` bytes, and logs it. The
    /// call and its entry in the log are one function, so that taking out a call of
    /// recovery takes its entry out too and the model sees the difference.
    pub(crate) fn set_len(file: &std::fs::File, path: &Path, len: u64) -> std::io::Result<()> {
        file.set_len(len)?;
        #[cfg(all(test, not(loom)))]
        watch::segment(path, |id| super::Op::Cut { file: id, len });
        #[cfg(not(all(test, not(loom))))]
        let _ = path;
        Ok(())
    }

    /// `fsync`s segment file `path` (open as `file`: data and length), and logs it.
    pub(crate) fn sync_all(file: &std::fs::File, path: &Path) -> std::io::Result<()> {
        file.sync_all()?;
        #[cfg(all(test, not(loom)))]
        watch::segment(path, |id| super::Op::Sync {
            file: id,
            all: true,
        });
        #[cfg(not(all(test, not(loom))))]
        let _ = path;
        Ok(())
    }

    /// Removes segment file `path`, and logs it.
    pub(crate) fn remove_file(path: &Path) -> std::io::Result<()> {
        std::fs::remove_file(path)?;
        #[cfg(all(test, not(loom)))]
        watch::segment(path, super::Op::Remove);
        Ok(())
    }

    /// Directory `dir` was fsynced (called by [`sync_directory`](super::sync_directory)
    /// only, right after its fsync).
    pub(super) fn dir_synced(dir: &Path) {
        #[cfg(all(test, not(loom)))]
        watch::dir_synced(dir);
        #[cfg(not(all(test, not(loom))))]
        let _ = dir;
    }
}

/// A segment backed by a file.
pub(crate) struct FileSegment {
    file: File,
    path: PathBuf,
}

impl FileSegment {
    /// Opens an existing segment for reading and appending (recovery). A symlink,
    /// FIFO or other special file under its name is [`WalError::ForeignFile`]: it is
    /// neither followed nor waited on (`owned.rs`).
    pub(crate) fn open(path: PathBuf) -> Result<FileSegment> {
        let file = crate::owned::open_file(&path, crate::owned::How::ReadWrite, "opening segment")?;
        Ok(FileSegment { file, path })
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }
}

impl SegmentIo for FileSegment {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.file.write_all_at(buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }
    fn read_up_to(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }
    fn preallocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
        // posix_fallocate returns the error number instead of setting errno.
        // SAFETY: the descriptor is owned by `self.file` and open for the whole call;
        // the call takes no pointers.
        match unsafe { libc::posix_fallocate(self.file.as_raw_fd(), 0, len) } {
            0 => Ok(()),
            code => Err(io::Error::from_raw_os_error(code)),
        }
    }
    fn cut_to(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }
    fn sync_all(&self) -> io::Result<()> {
        self.file.sync_all()
    }
    fn path(&self) -> &Path {
        &self.path
    }
}

/// Segments as files under `root/shard-NNN/`, created with permission bits
/// `file_mode` (`WalOptions::file_mode`).
pub(crate) struct FsStorage {
    root: PathBuf,
    file_mode: u32,
}

impl FsStorage {
    pub(crate) fn new(root: PathBuf, file_mode: u32) -> FsStorage {
        FsStorage { root, file_mode }
    }

    pub(crate) fn shard_dir(&self, shard: u32) -> PathBuf {
        self.root.join(shard_dir_name(shard))
    }

    fn segment_path(&self, shard: u32, sequence: u64) -> PathBuf {
        self.shard_dir(shard).join(segment_file_name(sequence))
    }
}

impl Storage for FsStorage {
    fn create_segment(
        &self,
        shard: u32,
        sequence: u64,
        header: &[u8],
    ) -> Result<Arc<dyn SegmentIo>> {
        let path = self.segment_path(shard, sequence);
        let file = crate::owned::open_file(
            &path,
            crate::owned::How::CreateNew(self.file_mode),
            "creating segment",
        )?;
        file.write_all_at(header, 0)
            .map_err(|e| WalError::io("writing segment header", &path, e))?;
        Ok(Arc::new(FileSegment { file, path }))
    }

    fn remove_segment(&self, shard: u32, sequence: u64) -> Result<()> {
        let path = self.segment_path(shard, sequence);
        std::fs::remove_file(&path).map_err(|e| WalError::io("removing segment", &path, e))
    }

    fn sync_dir(&self, shard: u32) -> Result<()> {
        sync_directory(&self.shard_dir(shard))
    }

    fn preallocation_chunk(&self) -> u64 {
        PREALLOCATION_CHUNK
    }

    fn write_checkpoint(
        &self,
        shard: u32,
        synced_through: u64,
        next_seq: u64,
        segments: &[Segment],
        index: &ShardIndex,
    ) -> Result<()> {
        let dir = self.shard_dir(shard);
        crate::checkpoint::write(
            &dir,
            shard,
            synced_through,
            next_seq,
            segments,
            index,
            self.file_mode,
        )
    }
}

#[cfg(any(test, loom))]
pub(crate) use mem::MemStorage;
#[cfg(all(test, not(loom)))]
pub(crate) use mem::{FileId, Op, OpLog};

#[cfg(any(test, loom))]
mod mem {
    //! An in-memory store that tells written bytes from synced bytes and can be told
    //! to fail, for the loom models and fault-injection tests.
    use super::*;
    use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
    use std::collections::BTreeMap;

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
        SyncDir(u32),
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
        data: Mutex<(Vec<u8>, usize)>,
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
            record(&self.log, || Op::Preallocate { file: self.id, len });
            Ok(())
        }
        fn cut_to(&self, len: u64) -> io::Result<()> {
            let mut g = lock(&self.data);
            g.0.truncate(len as usize);
            g.1 = g.1.min(len as usize);
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

    /// The name error messages give segment `sequence` of `shard` in memory.
    fn mem_path(shard: u32, sequence: u64) -> PathBuf {
        PathBuf::from(format!(
            "mem/{}/{}",
            shard_dir_name(shard),
            segment_file_name(sequence)
        ))
    }

    /// Every segment of every shard, in memory.
    #[derive(Default)]
    pub(crate) struct MemStorage {
        pub(crate) faults: std::sync::Arc<Faults>,
        segments: Mutex<BTreeMap<(u32, u64), std::sync::Arc<MemSegment>>>,
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
        /// Takes over segment `sequence` of `shard` with `bytes`, a file recovery
        /// left on disk, recording nothing: the caller's log already holds how the
        /// file got there, and what of it is durable (the store counts it all as
        /// synced, which only `MemSegment::synced` reports). For the power-cut
        /// model's second run.
        #[cfg(all(test, not(loom)))]
        pub(crate) fn adopt(
            &self,
            shard: u32,
            sequence: u64,
            bytes: Vec<u8>,
        ) -> Arc<dyn SegmentIo> {
            let len = bytes.len();
            let seg = std::sync::Arc::new(MemSegment {
                data: Mutex::new((bytes, len)),
                faults: self.faults.clone(),
                path: mem_path(shard, sequence),
                id: (shard, sequence),
                log: self.log.clone(),
            });
            lock(&self.segments).insert((shard, sequence), seg.clone());
            seg
        }
        /// Segment `sequence` of `shard`, if it exists.
        pub(crate) fn segment(
            &self,
            shard: u32,
            sequence: u64,
        ) -> Option<std::sync::Arc<MemSegment>> {
            lock(&self.segments).get(&(shard, sequence)).cloned()
        }
        /// Number of live segments.
        pub(crate) fn segment_count(&self) -> usize {
            lock(&self.segments).len()
        }
    }

    impl Storage for MemStorage {
        fn create_segment(
            &self,
            shard: u32,
            sequence: u64,
            header: &[u8],
        ) -> Result<Arc<dyn SegmentIo>> {
            let path = mem_path(shard, sequence);
            let seg = std::sync::Arc::new(MemSegment {
                data: Mutex::new((Vec::new(), 0)),
                faults: self.faults.clone(),
                path: path.clone(),
                id: (shard, sequence),
                log: self.log.clone(),
            });
            let mut segments = lock(&self.segments);
            record(&self.log, || Op::Create((shard, sequence)));
            seg.write_at(header, 0)
                .map_err(|e| WalError::io("writing segment header", &path, e))?;
            segments.insert((shard, sequence), seg.clone());
            Ok(seg)
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
        /// The models reopen from the bytes of their segments, never from a
        /// checkpoint (its tests run on files: `tests/index_checkpoint.rs`), so it is
        /// refused rather than pretended: a model that asks for one is wrong.
        fn write_checkpoint(
            &self,
            shard: u32,
            _synced_through: u64,
            _next_seq: u64,
            _segments: &[Segment],
            _index: &ShardIndex,
        ) -> Result<()> {
            Err(WalError::io(
                "writing index checkpoint",
                PathBuf::from(format!("mem/{}", shard_dir_name(shard))),
                io::Error::new(
                    io::ErrorKind::Unsupported,
                    "in-memory storage has no checkpoint",
                ),
            ))
        }
    }
}
