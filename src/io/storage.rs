//! The I/O boundary: the shard logic talks to segment files only through the
//! [`Storage`] and [`SegmentIo`] traits, so the concurrency protocols can run against
//! an in-memory store (loom models, fault injection) and real files alike.

use crate::error::Result;
use crate::index::ShardIndex;
use crate::writer::active_segment::Segment;
use std::io;
use std::path::Path;
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
