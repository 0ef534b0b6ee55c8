//! Scanning a WAL directory: every segment of every shard walked by recovery's own
//! walk (`recovery::walk_segment`), the shard's facts collected as recovery
//! collects them (`recovery::collect_shard`), then classified (`classify.rs`) and
//! the index checkpoint checked (`checkpoint_check.rs`).

use super::checkpoint_check::{check_checkpoint, Seen, SeenRecord};
use super::classify::{mark_holes, mark_unvouched_seal, segment_damage};
use super::layout::layout;
use super::report::{
    CheckpointCheck, SegmentFile, SegmentHeaderInfo, SegmentRecords, SegmentScan, ShardLayout,
    ShardScan, WalScan,
};
use crate::error::{Result, WalError};
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use crate::recovery::{collect_shard, walk_segment, HeaderFact, Place, SegmentWalk, Source};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Reads every segment of every shard of the WAL at `dir` and checks every record.
///
/// Read-only, and the lock is not taken: see the module documentation. Fails as
/// [`layout`] does, or on an I/O error reading a segment; damage is reported in the
/// result, not as an error.
pub fn scan(dir: &Path) -> Result<WalScan> {
    let layout = layout(dir)?;
    let shards: Vec<Result<ShardScan>> = {
        use rayon::prelude::*;
        layout.shards.into_par_iter().map(scan_shard).collect()
    };
    Ok(WalScan {
        dir: layout.dir,
        shard_count: layout.shard_count,
        manifest_ok: layout.manifest_ok,
        shards: shards.into_iter().collect::<Result<_>>()?,
        damage: layout.damage,
    })
}

fn scan_shard(shard: ShardLayout) -> Result<ShardScan> {
    let index = shard.dir.join(crate::format::checkpoint::CHECKPOINT_FILE);
    // Only a regular file is a checkpoint (the listing reports anything else under
    // that name as foreign, and the open refuses it).
    let has_checkpoint =
        shard.exists && std::fs::symlink_metadata(&index).is_ok_and(|m| m.is_file());
    let mut keys = HashSet::new();
    let mut seen = Vec::new();
    let mut segments = Vec::with_capacity(shard.segments.len());
    let files: Vec<(u64, PathBuf)> = shard
        .segments
        .iter()
        .map(|s| (s.sequence, s.path.clone()))
        .collect();
    let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    let salt = shard.segments.first().and_then(|s| s.salt);
    let facts = collect_shard(&files, &paths, shard.shard, salt, true, |i, _, place| {
        let file = &shard.segments[i];
        let seen = has_checkpoint.then_some(&mut seen);
        let (walk, scanned) = file.walk_into(place, &mut keys, seen)?;
        segments.push(scanned);
        Ok((walk, ()))
    })?;
    let mut damage = shard.damage;
    mark_holes(&facts, &mut segments, &shard.dir, &mut damage);
    mark_unvouched_seal(&facts, &mut segments);
    let checkpoint = if has_checkpoint {
        check_checkpoint(&shard.dir, shard.shard, &segments, &seen, &mut damage)
    } else {
        CheckpointCheck::Absent
    };
    Ok(ShardScan {
        shard: shard.shard,
        dir: shard.dir,
        exists: shard.exists,
        segments,
        keys: keys.len() as u64,
        checkpoint,
        damage,
    })
}

impl SegmentFile {
    /// Reads the segment and checks every record.
    pub fn scan(&self) -> Result<SegmentScan> {
        let place = self.place();
        Ok(self.walk_into(&place, &mut HashSet::new(), None)?.1)
    }

    /// Reads the segment and returns its valid records (and its damage).
    pub fn read_records(&self) -> Result<SegmentRecords> {
        let data = read_file(&self.path)?;
        let mut offsets = Vec::new();
        let place = self.place();
        let walk = walk_segment(Source::Bytes(&data), &place, |at, _| {
            offsets.push(at as usize);
        })?;
        let (damage, _) = segment_damage(&self.path, &place, &walk);
        Ok(SegmentRecords {
            file: self.clone(),
            codec: walk.codec,
            data,
            offsets,
            damage,
        })
    }

    /// Where this segment sits in its shard, as recovery judges it; a later file
    /// that cannot be read counts as "no crash" (see `Place::lenient`).
    fn place(&self) -> Place<'_> {
        let later = &self.shard_files[self.position + 1..];
        Place::new(self.shard, self.sequence, self.salt, later).lenient()
    }

    /// Walks the segment (at `place`) and checks every record, also adding the
    /// hashes of its keys to `shard_keys`. `seen`: where to note the file's stamp,
    /// header and records, for the check of the shard's index checkpoint.
    fn walk_into(
        &self,
        place: &Place<'_>,
        shard_keys: &mut HashSet<u128>,
        seen: Option<&mut Vec<Seen>>,
    ) -> Result<(SegmentWalk, SegmentScan)> {
        let (data, stamp) = read_file_stamped(&self.path)?;
        let mut records = Vec::new();
        let collect = seen.is_some();
        let mut keys = HashSet::new();
        let mut tally = Tally::default();
        let walk = walk_segment(Source::Bytes(&data), place, |at, record| {
            // A record past 4 GiB is in no segment the writer made
            // (`max_segment_size` fits in 32 bits), so no location names it.
            if let (true, Ok(offset), Ok(len)) =
                (collect, u32::try_from(at), u32::try_from(record.len))
            {
                records.push(SeenRecord {
                    offset,
                    len,
                    key: xxhash_rust::xxh3::xxh3_64(record.key),
                });
            }
            tally.add(record);
            keys.insert(xxhash_rust::xxh3::xxh3_128(record.key));
        })?;
        let (damage, free_len) = segment_damage(&self.path, place, &walk);
        let header = match walk.header {
            HeaderFact::Valid(h) | HeaderFact::Unsupported(h) => Some(SegmentHeaderInfo {
                version: h.version,
                shard: h.shard,
                sequence: h.sequence,
                created_us: h.created_us,
            }),
            HeaderFact::Lost(_) | HeaderFact::Damaged { .. } => None,
        };
        let scanned = SegmentScan {
            file: self.clone(),
            header,
            file_len: data.len() as u64,
            data_len: walk.data_len,
            free_len,
            records: walk.records,
            markers: walk.markers,
            vouches_through: walk.synced_through,
            seal_note: walk.seal_note.map(|n| (n.sequence, n.len)),
            keys: keys.len() as u64,
            record_bytes: tally.record_bytes,
            key_bytes: tally.key_bytes,
            value_bytes: tally.value_bytes,
            oldest_us: tally.oldest_us,
            newest_us: tally.newest_us,
            damage,
        };
        shard_keys.extend(keys);
        if let Some(seen) = seen {
            records.shrink_to_fit();
            seen.push(Seen {
                stamp,
                head: data
                    .get(..SEGMENT_HEADER_LEN)
                    .and_then(|h| h.try_into().ok()),
                records,
            });
        }
        Ok((walk, scanned))
    }
}

/// The sums over a segment's valid records.
#[derive(Default)]
struct Tally {
    record_bytes: u64,
    key_bytes: u64,
    value_bytes: u64,
    oldest_us: Option<u64>,
    newest_us: Option<u64>,
}

impl Tally {
    fn add(&mut self, record: &crate::format::record::Decoded<'_>) {
        self.record_bytes += record.len as u64;
        self.key_bytes += record.key.len() as u64;
        self.value_bytes += record.value.len() as u64;
        let ts = record.timestamp_us;
        self.oldest_us = Some(self.oldest_us.map_or(ts, |o| o.min(ts)));
        self.newest_us = Some(self.newest_us.map_or(ts, |n| n.max(ts)));
    }
}

/// Reads a whole segment file, read-only, with its stamp if the file was the same
/// before and after the read.
fn read_file_stamped(
    path: &Path,
) -> Result<(Vec<u8>, Option<crate::format::checkpoint::FileStamp>)> {
    let file = crate::io::owned::open_file(path, crate::io::owned::How::Read, "opening segment")?;
    let stamp = || {
        file.metadata()
            .ok()
            .map(|m| crate::format::checkpoint::FileStamp::of(&m))
    };
    let before = stamp();
    let mut data = Vec::new();
    (&file)
        .read_to_end(&mut data)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    #[cfg(test)]
    if CHANGED_WHILE_READ.armed(path) {
        // A writer appends while the file is being read.
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(&[0xAB; 16]))
            .map_err(|e| WalError::io("changing segment (test)", path, e))?;
    }
    let after = stamp();
    Ok((data, before.filter(|b| Some(*b) == after)))
}

/// Test hook: segments at its paths get 16 bytes appended between the two stamps of
/// [`read_file_stamped`], as by a writer at work during the scan.
#[cfg(test)]
pub(super) static CHANGED_WHILE_READ: crate::testing::hooks::PathHook =
    crate::testing::hooks::PathHook::new();

/// Reads a whole file, read-only.
fn read_file(path: &Path) -> Result<Vec<u8>> {
    let mut file =
        crate::io::owned::open_file(path, crate::io::owned::How::Read, "opening segment")?;
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    Ok(data)
}

#[cfg(test)]
#[path = "scan_tests.rs"]
pub(super) mod tests;
