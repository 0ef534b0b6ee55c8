//! An in-memory store that tells written bytes from synced bytes and can be told
//! to fail, for the loom models and fault-injection tests.
use crate::error::{Result, WalError};
use crate::format::segment_header::segment_file_name;
use crate::index::ShardIndex;
use crate::io::{shard_dir_name, SegmentIo, Storage};
use crate::sync::{lock, AtomicBool, AtomicU64, Mutex, Ordering};
use crate::writer::active_segment::Segment;
use std::collections::BTreeMap;
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
    pub(crate) fn adopt(&self, shard: u32, sequence: u64, bytes: Vec<u8>) -> Arc<dyn SegmentIo> {
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
    pub(crate) fn segment(&self, shard: u32, sequence: u64) -> Option<std::sync::Arc<MemSegment>> {
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
