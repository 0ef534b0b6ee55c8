//! Retention: dropping whole sealed segments whose newest record is older than
//! `entry_retention`.
//!
//! **Protocol.** Shards are handled in parallel on rayon. For each shard the caller's
//! rayon task sends a `Retire` request; the shard actor performs the short install
//! step in order with its other work (seal the active segment if it is due, drop the
//! expired segments from the segment table and every index location in them, under
//! the index's write lock so readers see the old or the new state whole) and answers
//! with what it retired. The rayon task then does the slow part off the actor: a
//! durable `sync` of the shard (so a sync marker vouches for every retired segment),
//! then the unlinks, oldest first, each followed by an fsync of the directory.
//! `Wal::compact` runs one compaction at a time. Readers that took a snapshot before
//! the install still hold open handles, so their reads succeed. Other shards keep
//! ingesting throughout; this shard keeps queueing requests behind the install step.

use crate::error::Result;
use crate::io::Storage;
use crate::shard::{Request, ShardHandle};
use crate::sync::completion::completion;
use crate::sync::now_us;

/// What one `compact()` removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Segment files removed.
    pub segments_removed: u64,
    /// Bytes those files held.
    pub bytes_removed: u64,
    /// Records those files held.
    pub records_removed: u64,
}

impl CompactionReport {
    fn merge(mut self, other: CompactionReport) -> CompactionReport {
        self.segments_removed += other.segments_removed;
        self.bytes_removed += other.bytes_removed;
        self.records_removed += other.records_removed;
        self
    }
}

/// Compacts one shard: install step on the actor, unlinks here.
fn compact_shard(
    shard: &ShardHandle,
    storage: &dyn Storage,
    cutoff_us: u64,
) -> Result<CompactionReport> {
    let (done, waiter) = completion(shard.shared.id);
    shard.submit(Request::Retire { cutoff_us, done })?;
    let retired = waiter.wait()?;
    let id = shard.shared.id as u32;
    if !retired.is_empty() {
        // A durable barrier on the shard before any unlink: it leaves a sync marker
        // vouching for every retired segment in a segment that stays. Recovery takes
        // a segment whose seal note names a missing segment no marker vouches for as
        // a power cut that lost that segment's creation, and drops the shard from
        // there; with the marker it knows compaction removed it.
        let (done, synced) = completion(shard.shared.id);
        shard.submit(Request::Sync { done })?;
        synced.wait()?;
    }
    let mut report = CompactionReport::default();
    // Oldest first (the actor retires the oldest segments, in order).
    for r in &retired {
        storage.remove_segment(id, r.sequence)?;
        // fsync the shard directory after each unlink: the unlinks must be durable
        // before compaction reports them, and in order, so that a power cut in
        // between leaves the newer expired segments, never an older one without
        // them (which would bring back old records with a hole after them in their
        // keys' histories).
        storage.sync_dir(id)?;
        report.segments_removed += 1;
        report.bytes_removed += r.bytes;
        report.records_removed += r.records;
    }
    Ok(report)
}

/// Compacts every shard, in parallel, dropping records older than `retention`.
pub(crate) fn compact(
    shards: &[ShardHandle],
    storage: &dyn Storage,
    retention: std::time::Duration,
) -> Result<CompactionReport> {
    let retention_us = u64::try_from(retention.as_micros()).unwrap_or(u64::MAX);
    let cutoff_us = now_us().saturating_sub(retention_us);
    #[cfg(not(loom))]
    let reports: Vec<Result<CompactionReport>> = {
        use rayon::prelude::*;
        shards
            .par_iter()
            .map(|s| compact_shard(s, storage, cutoff_us))
            .collect()
    };
    #[cfg(loom)]
    let reports: Vec<Result<CompactionReport>> = shards
        .iter()
        .map(|s| compact_shard(s, storage, cutoff_us))
        .collect();
    reports
        .into_iter()
        .try_fold(CompactionReport::default(), |acc, r| Ok(acc.merge(r?)))
}
