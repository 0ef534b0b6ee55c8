//! Writes a shard's index checkpoint at a clean close: summarises its segments
//! (their stamps from the storage) and its index for the encoder
//! (`format/checkpoint.rs`), and asks the storage to write the bytes atomically.

use super::active_segment::Segment;
use crate::error::Result;
use crate::format::checkpoint::{Encoder, SegmentSummary};
use crate::format::names::{checkpoint_paths, segment_path};
use crate::index::ShardIndex;
use crate::io::{DirSync, Storage, WriteSteps};

/// What the steps of a checkpoint's write are called in its errors.
const STEPS: WriteSteps = WriteSteps {
    create: "writing index checkpoint",
    write: "writing index checkpoint",
    sync: "syncing index checkpoint",
    rename: "renaming index checkpoint",
};

/// Writes shard `shard`'s checkpoint: its `segments` (which the caller has closed
/// cleanly, so nothing in them changes any more), whose sync markers vouch for
/// segments up to `synced_through`, and every location of `index`.
pub(crate) fn write(
    storage: &dyn Storage,
    shard: u32,
    synced_through: u64,
    next_seq: u64,
    segments: &[Segment],
    index: &ShardIndex,
) -> Result<()> {
    let mut summaries = Vec::with_capacity(segments.len());
    for s in segments {
        summaries.push(SegmentSummary {
            sequence: s.sequence,
            created_us: s.created_us,
            newest_us: s.newest_us,
            records: s.records,
            stamp: storage.stamp(&segment_path(shard, s.sequence))?,
        });
    }
    let mut encoder = Encoder::new(&summaries);
    index.for_each_key(|key, locations| {
        encoder.key(key, locations.iter().map(|l| (l.segment, l.offset, l.len)));
    })?;
    let (front, locations) = encoder.finish(shard, synced_through, next_seq);
    let (path, tmp) = checkpoint_paths(shard);
    // The temporary file is fsynced before the rename: an open checks a key's
    // locations only when the key is read, so the name must never point at a file
    // a power cut left torn. No fsync of the directory after it: a power cut that
    // loses the rename loses the checkpoint, and the next open scans.
    storage.write_file_atomically(&path, &tmp, &[&front, &locations], DirSync::Skip, STEPS)
}
