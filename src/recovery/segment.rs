//! Recovery's decisions for one segment, from the facts of its walk (`walk.rs`):
//! refuse, skip, cut a torn tail, or remove it, and hand what stays to the index.

use super::refusal::{Mismatch, Refusal};
use super::scan::Recovering;
use super::walk::{identity_mismatch, salt_problem, End, HeaderFact};
use crate::error::{Result, WalError};
use crate::format::record::Codec;
use crate::format::segment_header::{FORMAT_VERSION, SEGMENT_HEADER_LEN};
use crate::io::{observed, sync_directory, FileSegment};
use crate::options::RecoveryMode;
use crate::writer::active_segment::Segment;
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl Recovering<'_, '_> {
    /// Recovers segment `i` of the shard from its walk. Returns whether recovery cut
    /// bytes from a sealed segment (an unfinished seal), so that the later ones are
    /// gone.
    ///
    /// A record that fails its checks is a torn tail only when no valid record
    /// follows it in the file and the segment may hold unsynced bytes (the newest,
    /// or an unfinished seal): then nothing after it can be read back. With a valid
    /// record after it, the bytes between may hold records a sync covered, so they
    /// are never cut: `Strict` refuses, `SkipCorrupted` skips to the next valid
    /// record.
    pub(super) fn recover_segment(&mut self, i: usize) -> Result<bool> {
        let facts = self.facts;
        let segment = &facts.segments[i];
        let (path, walk, place) = (segment.path, &segment.walk, &segment.place);
        let newest = place.newest();
        // Opened for the writer (which appends to the newest) and for a cut.
        let io = Arc::new(FileSegment::open(path.clone())?);
        let created_us = match walk.header {
            HeaderFact::Unsupported(header) => {
                return Err(WalError::UnsupportedVersion {
                    path: path.clone(),
                    found: header.version,
                    supported: FORMAT_VERSION,
                })
            }
            HeaderFact::Valid(header) => {
                if let Some(mismatch) = identity_mismatch(&header, place) {
                    return Err(Mismatch::Identity(mismatch).at(path));
                }
                if let Some(problem) = salt_problem(&header, place.salt) {
                    return Err(Mismatch::Salt(problem).at(path));
                }
                header.created_us
            }
            HeaderFact::Lost(_) => {
                // A crash while it was created, or a power cut that lost its first
                // page: nothing in it was acknowledged as durable.
                self.out
                    .report
                    .truncated
                    .push((path.clone(), 0, walk.file_len));
                if !newest {
                    self.drop_later(i)?;
                }
                observed::remove_file(path)
                    .map_err(|e| WalError::io("removing torn segment", path, e))?;
                if let Some(dir) = path.parent() {
                    // fsync the directory: the removal must be durable before new
                    // segments reuse the sequence range after it.
                    sync_directory(dir)?;
                }
                return Ok(!newest);
            }
            HeaderFact::Damaged { error, found } => {
                let reason = error.reason();
                match (found, self.mode) {
                    (None, RecoveryMode::Strict) => {
                        return Err(Refusal::DamagedHeader { reason }.at(path, 0))
                    }
                    (Some(found), RecoveryMode::Strict) => {
                        let refusal = Refusal::DamagedHeaderRecordsFollow {
                            reason,
                            at: found.at,
                        };
                        return Err(refusal.at(path, 0));
                    }
                    // Nothing in it verifies: ignored whole.
                    (None, RecoveryMode::SkipCorrupted) => {
                        self.out
                            .report
                            .skipped
                            .push((path.clone(), 0, walk.file_len));
                        return Ok(false);
                    }
                    // Records in it verify: the header alone is damaged, and they
                    // are kept, its creation time taken from the first.
                    (Some(found), RecoveryMode::SkipCorrupted) => {
                        let header = (path.clone(), 0, SEGMENT_HEADER_LEN as u64);
                        self.out.report.skipped.push(header);
                        found.timestamp_us
                    }
                }
            }
        };
        for damage in &walk.damage {
            match (self.mode, damage.next) {
                (RecoveryMode::Strict, Some(next)) => {
                    let refusal = Refusal::RecordFollows {
                        error: damage.error,
                        next,
                    };
                    return Err(refusal.at(path, damage.at));
                }
                (RecoveryMode::Strict, None) => {
                    let refusal = Refusal::Durable {
                        error: damage.error,
                    };
                    return Err(refusal.at(path, damage.at));
                }
                (RecoveryMode::SkipCorrupted, _) => {
                    let skipped = (path.clone(), damage.at, damage.end - damage.at);
                    self.out.report.skipped.push(skipped);
                }
            }
        }
        let mut kept = Segment {
            sequence: place.sequence,
            io: io.clone(),
            created_us,
            newest_us: created_us.max(segment.kept.newest_us),
            len: walk.file_len,
            allocated: walk.file_len,
            // Set below, when the segment is handed to the index.
            published: Default::default(),
            records: walk.records,
            sealed: !newest,
            codec: walk.codec,
        };
        let mut cut = false;
        match walk.end {
            End::Reached => {}
            End::FreeSpace { at } => kept.len = at,
            End::TornTail { at, .. } => {
                let torn = (path.clone(), at, walk.file_len - at);
                self.out.report.truncated.push(torn);
                if !newest {
                    self.drop_later(i)?;
                }
                truncate(io.file(), path, at)?;
                kept.len = at;
                kept.allocated = at;
                // A cut sealed segment becomes the newest: the writer goes on in it.
                kept.sealed = false;
                cut = !newest;
            }
        }
        match walk.codec {
            Codec::Legacy => self.legacy_records += walk.records,
            Codec::Bound { .. } => self.max_seq = self.max_seq.max(segment.kept.max_seq),
        }
        self.out.report.segments += 1;
        self.out.report.records += kept.records;
        kept.published = self
            .out
            .index
            .add_segment(kept.sequence, io, kept.len, walk.codec);
        self.out.segments.push(kept);
        self.kept.push(i);
        Ok(cut)
    }

    /// Removes the segment files after segment `i` (an unfinished seal in it),
    /// keeping the watermark their sync markers hold for the decisions still to
    /// come, and forgets their records.
    fn drop_later(&mut self, i: usize) -> Result<()> {
        let segment = &self.facts.segments[i];
        let later = segment.place.later_synced_through()?;
        self.removed_synced_through = self.removed_synced_through.max(later);
        let files = self.files;
        self.drop_segments(&files[i + 1..])?;
        let sequence = segment.sequence();
        self.staged.retain(|_, locs| {
            locs.retain(|l| l.segment <= sequence);
            !locs.is_empty()
        });
        Ok(())
    }

    /// Removes the segment files after an unfinished seal (listed as truncated),
    /// newest first, each removal made durable before the next. Called before the
    /// unfinished seal itself is cut or removed: a crash in between then leaves a
    /// shard that ends in that segment, or a prefix of the later ones, never a cut
    /// segment followed by the records that came after the lost ones.
    pub(super) fn drop_segments(&mut self, files: &[(u64, PathBuf)]) -> Result<()> {
        let mut dropped = Vec::with_capacity(files.len());
        for (_, path) in files.iter().rev() {
            let len = std::fs::symlink_metadata(path)
                .map_err(|e| WalError::io("reading segment", path, e))?
                .len();
            observed::remove_file(path).map_err(|e| WalError::io("removing segment", path, e))?;
            if let Some(dir) = path.parent() {
                // fsync the directory after each removal: an older segment must
                // never be gone while a newer one is still there. Defence in depth
                // for WALs with seal notes (a later recovery drops such a newer one
                // again by the seal-note rule, and the power-cut model passes
                // without this fsync: docs/RELIABILITY.md). For segments of format
                // version 3, which carry no seal notes, it is the only guard.
                sync_directory(dir)?;
            }
            dropped.push((path.clone(), 0, len));
        }
        dropped.reverse();
        self.out.report.truncated.extend(dropped);
        Ok(())
    }
}

fn truncate(file: &std::fs::File, path: &Path, len: u64) -> Result<()> {
    observed::set_len(file, path, len)
        .map_err(|e| WalError::io("truncating torn tail of", path, e))?;
    // fsync after truncating: the cut must be durable before new records are
    // appended at this offset, or a crash could put the torn bytes back behind them.
    observed::sync_all(file, path).map_err(|e| WalError::io("syncing truncation of", path, e))?;
    Ok(())
}
