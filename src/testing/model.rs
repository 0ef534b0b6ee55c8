//! Hooks for the loom models in `tests/loom_*.rs`; compiled only under `cfg(loom)`.
//!
//! The models drive the real [`Wal`] (router, gate, actor, group commit, index,
//! compaction install) over in-memory segments that tell written bytes from synced
//! bytes and can be told to fail. Nothing here is part of the public API.

use crate::format::record::Codec;
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use crate::testing::mem_storage::MemStorage;
use crate::{Result, Wal, WalOptions};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Control over the memory store behind a model WAL.
pub struct MemHandle(Arc<MemStorage>);

/// A WAL over memory, with its control handle.
pub fn mem_wal(options: WalOptions) -> Result<(Wal, MemHandle)> {
    let storage = Arc::new(MemStorage::default());
    let wal = Wal::with_mem_storage(options, storage.clone())?;
    Ok((wal, MemHandle(storage)))
}

/// Options of the models: one shard, whose queue and batches hold `queue` requests
/// (small, so that loom explores the full-queue and batch-boundary schedules).
pub fn small_options(queue: usize) -> WalOptions {
    WalOptions::default()
        .with_shards(1)
        .with_channel_capacity(queue)
        .with_max_batch(queue)
}

/// Like [`mem_wal`], but the seal syncer runs on its own thread, as outside the
/// models (in [`mem_wal`]'s WALs it runs inline on the actor, which keeps the models
/// of the other protocols small).
pub fn mem_wal_with_syncer_thread(options: WalOptions) -> Result<(Wal, MemHandle)> {
    let storage = Arc::new(MemStorage::with_syncer_thread());
    let wal = Wal::with_mem_storage(options, storage.clone())?;
    Ok((wal, MemHandle(storage)))
}

/// Sets the model clock (microseconds since the epoch) read by the actor and compaction.
pub fn set_clock(us: u64) {
    crate::sync::MODEL_CLOCK_US.store(us, Ordering::SeqCst);
}

impl MemHandle {
    /// Whether every byte written to segment `sequence` of `shard` is synced (false if
    /// it does not exist).
    pub fn fully_synced(&self, shard: u32, sequence: u64) -> bool {
        self.0
            .segment(shard, sequence)
            .is_some_and(|s| s.synced().len() == s.data_len())
    }

    /// Makes every later write fail (or succeed again).
    pub fn fail_writes(&self, on: bool) {
        self.0.faults.fail_writes.store(on, Ordering::SeqCst);
    }

    /// Makes every later fsync fail (or succeed again).
    pub fn fail_syncs(&self, on: bool) {
        self.0.faults.fail_syncs.store(on, Ordering::SeqCst);
    }

    /// Successful fsyncs so far.
    pub fn syncs(&self) -> u64 {
        self.0.faults.syncs.load(Ordering::SeqCst)
    }

    /// Live segments (all shards).
    pub fn segment_count(&self) -> usize {
        self.0.segment_count()
    }

    /// Values of `key` in the *synced* bytes of shard `shard`'s segments `1..=max_sequence`,
    /// in order: what would survive a power loss now.
    pub fn synced_values(&self, shard: u32, key: &[u8], max_sequence: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for sequence in 1..=max_sequence {
            let Some(segment) = self.0.segment(shard, sequence) else {
                continue;
            };
            let bytes = segment.synced();
            let mut pos = SEGMENT_HEADER_LEN.min(bytes.len());
            let codec = Codec::bound(crate::wal::MEM_SALT, shard, sequence);
            while let Ok(record) = codec.decode(&bytes[pos..], pos as u64) {
                if record.is_data() && record.key == key {
                    out.push(record.value.to_vec());
                }
                pos += record.len;
            }
        }
        out
    }
}
