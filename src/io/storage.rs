//! The I/O boundary: every file a WAL touches is reached through the [`Storage`],
//! [`SegmentIo`] and [`ReadIo`] traits, so the open, the writer, recovery and the
//! checkpoint run against an in-memory store (loom models, fault injection, the
//! power-cut model) and real files alike. The traits move bytes and names; what the
//! bytes mean (`format/`) and which names a WAL owns (`format/names.rs`) is the
//! callers' business. Paths are relative to the storage's root, the WAL directory.

use crate::error::Result;
use crate::format::stamp::FileStamp;
use std::ffi::OsString;
use std::io;
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
    /// The file's length.
    #[allow(dead_code)] // Until recovery reads through the storage.
    fn len(&self) -> io::Result<u64>;
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

/// A file open for reading only (the index checkpoint, whose keys' locations are
/// read when the key is; it stays readable once its name is removed).
pub(crate) trait ReadIo: Send + Sync {
    /// Fills `buf` from `offset`; fails if the bytes are not there.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// The file's length.
    fn len(&self) -> io::Result<u64>;
    /// Where the file lives (for error messages).
    fn path(&self) -> &Path;
}

/// What a directory entry is, as the directory lists it: a symlink is `Other`, not
/// what it points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    /// A symlink, FIFO, socket or device.
    Other,
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) name: OsString,
    pub(crate) kind: Kind,
}

/// Whether [`Storage::write_file_atomically`] fsyncs the directory after its rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirSync {
    /// The rename must be durable before the call returns.
    After,
    /// Losing the rename to a power cut is harmless (the caller says why).
    Skip,
}

/// What the steps of an atomic write are called in its errors.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WriteSteps {
    pub(crate) create: &'static str,
    pub(crate) write: &'static str,
    pub(crate) sync: &'static str,
    pub(crate) rename: &'static str,
}

/// A directory's lock, held until this is dropped.
pub(crate) struct DirLock {
    _held: Box<dyn std::any::Any + Send + Sync>,
}

impl DirLock {
    /// A lock that `held` keeps until it is dropped (its `Drop` unlocks).
    pub(crate) fn new(held: impl std::any::Any + Send + Sync) -> DirLock {
        DirLock {
            _held: Box::new(held),
        }
    }
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirLock")
    }
}

/// The files of one WAL directory (the root): its segments by shard and sequence,
/// and every other name by its path under the root.
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
    /// Opens existing segment `sequence` of `shard` for reading and writing
    /// (recovery). Anything but a regular file under its name is
    /// [`WalError::ForeignFile`](crate::WalError::ForeignFile).
    #[allow(dead_code)] // Until recovery reads through the storage.
    fn open_segment(&self, shard: u32, sequence: u64) -> Result<Arc<dyn SegmentIo>>;
    /// Unlinks segment `sequence` of `shard`. Open handles stay readable.
    fn remove_segment(&self, shard: u32, sequence: u64) -> Result<()>;
    /// Makes creations, renames and removals in `shard`'s directory durable.
    fn sync_dir(&self, shard: u32) -> Result<()>;
    /// Bytes the writer should reserve ahead of its write position (see
    /// [`SegmentIo::preallocate`]); 0 turns preallocation off.
    fn preallocation_chunk(&self) -> u64;
    /// Whether the seal syncer runs its jobs on the actor instead of its own thread
    /// (the loom models of the other protocols; see `syncer.rs`).
    fn seal_syncs_inline(&self) -> bool {
        false
    }

    /// Creates the root (and its parents) if it is missing; fails with
    /// [`WalError::NotADirectory`](crate::WalError::NotADirectory) if something else
    /// is there.
    fn ensure_root(&self) -> Result<()>;
    /// The entries of directory `dir` (`""`: the root), sorted by name.
    fn list_dir(&self, dir: &Path) -> Result<Vec<Entry>>;
    /// Creates directory `dir` (not durable until its parent is synced).
    fn create_dir(&self, dir: &Path) -> Result<()>;
    /// Makes creations, renames and removals in the root directory durable.
    fn sync_root(&self) -> Result<()>;
    /// The bytes of the regular file `path`, at most `limit` of them; `None` if
    /// nothing is there. Anything but a regular file is
    /// [`WalError::ForeignFile`](crate::WalError::ForeignFile).
    fn read_file(&self, path: &Path, limit: u64, op: &'static str) -> Result<Option<Vec<u8>>>;
    /// Opens the regular file `path` for reading; `None` if nothing is there.
    fn open_read(&self, path: &Path, op: &'static str) -> Result<Option<Arc<dyn ReadIo>>>;
    /// How the file under `path` looks, the name itself (not a symlink's target).
    fn stamp(&self, path: &Path) -> Result<FileStamp>;
    /// Replaces `path` with a file of the bytes `parts`: written to `tmp`, fsynced,
    /// renamed over `path`, and with [`DirSync::After`] the directory fsynced, so that
    /// a power cut leaves the old file or the new one whole, never a torn one.
    fn write_file_atomically(
        &self,
        path: &Path,
        tmp: &Path,
        parts: &[&[u8]],
        dir_sync: DirSync,
        steps: WriteSteps,
    ) -> Result<()>;
    /// Removes the file `path`; nothing there is not an error. Not durable until its
    /// directory is synced.
    fn remove_file(&self, path: &Path, op: &'static str) -> Result<()>;
    /// Removes directory `dir` and everything in it; nothing there is not an error.
    fn remove_dir_all(&self, dir: &Path) -> Result<()>;
    /// Removes the root if it is empty; returns whether it did.
    fn remove_root(&self) -> Result<bool>;
    /// Takes the lock on file `path` (created if missing), without waiting:
    /// [`WalError::Locked`](crate::WalError::Locked) if someone else holds it.
    fn lock(&self, path: &Path) -> Result<DirLock>;
    /// Whether someone holds the lock on `path` (which is not created).
    fn is_locked(&self, path: &Path) -> bool;
    /// Where `path` is, for error messages.
    fn full_path(&self, path: &Path) -> PathBuf;
}

/// How far ahead of the write position segment files are preallocated.
pub(crate) const PREALLOCATION_CHUNK: u64 = 4 * 1024 * 1024;
