//! Recovering a shard by reading its segments: the facts of the whole shard are
//! collected first (`facts.rs`, reading only), then recovery decides from them,
//! oldest segment first, what to refuse, skip, cut or remove (`segment.rs` for one
//! segment), so a refused shard stays as it was.

use super::facts::{collect_shard, ShardFacts};
use super::refusal::Refusal;
use super::shard::RecoveredShard;
use super::walk::{walk_segment, Source};
use crate::error::Result;
use crate::format::segment_header::segment_file_name;
use crate::index::{stage, Location, Staged};
use crate::io::owned::{open_file, How};
use crate::options::RecoveryMode;
use std::path::{Path, PathBuf};

/// What recovery keeps of one segment's walk.
pub(super) struct Opened {
    /// The highest record sequence number found in it.
    pub(super) max_seq: u64,
    /// Its newest record timestamp (0: none).
    pub(super) newest_us: u64,
}

/// A shard being recovered from its facts.
pub(super) struct Recovering<'f, 'a> {
    pub(super) facts: &'f ShardFacts<'a, Opened>,
    pub(super) files: &'a [(u64, PathBuf)],
    pub(super) mode: RecoveryMode,
    pub(super) out: RecoveredShard,
    /// Locations found by the walks, moved into the index at the end of recovery.
    pub(super) staged: Staged,
    /// The segments kept so far (indices into `facts.segments`), oldest first.
    pub(super) kept: Vec<usize>,
    /// The highest record sequence number in the segments recovered.
    pub(super) max_seq: u64,
    /// Records of format versions 1 to 3 in the segments recovered.
    pub(super) legacy_records: u64,
    /// The durable watermark of segments removed unscanned after an unfinished
    /// seal (`Recovering::drop_later`): it decides what recovery keeps, but is gone
    /// from the disk.
    pub(super) removed_synced_through: u64,
}

/// Recovers a shard by reading every record of its segment `files`, from the
/// manifest's `salt` (`None`: a manifest older than format version 4).
pub(crate) fn scan_shard(
    files: &[(u64, PathBuf)],
    shard: u32,
    mode: RecoveryMode,
    salt: Option<u32>,
) -> Result<RecoveredShard> {
    let paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    let mut staged = Staged::default();
    // Reused across the shard's segments.
    let mut buf = Vec::new();
    let facts = collect_shard(files, &paths, shard, salt, false, |_, path, place| {
        // Read-only: a segment that recovery removes after an unfinished seal is
        // read, but never opened for writing.
        let file = open_file(path, How::Read, "opening segment")?;
        let sequence = place.sequence;
        let (mut max_seq, mut newest_us) = (0, 0);
        let source = Source::File {
            file: &file,
            path,
            buf: &mut buf,
        };
        let walk = walk_segment(source, place, |at, record| {
            let location = Location {
                segment: sequence,
                offset: at as u32,
                len: record.len as u32,
            };
            stage(&mut staged, record.key, location);
            max_seq = max_seq.max(record.seq);
            newest_us = newest_us.max(record.timestamp_us);
        })?;
        Ok((walk, Opened { max_seq, newest_us }))
    })?;
    let mut shard = Recovering {
        facts: &facts,
        files,
        mode,
        out: RecoveredShard {
            next_sequence: files.last().map_or(1, |(seq, _)| seq + 1),
            ..RecoveredShard::empty()
        },
        staged,
        kept: Vec::new(),
        max_seq: 0,
        legacy_records: 0,
        removed_synced_through: 0,
    };
    // Before anything is changed: a refused shard stays as it was.
    shard.missing_segments()?;
    for i in 0..facts.segments.len() {
        shard.shortened_predecessor(i)?;
        if shard.recover_segment(i)? {
            // An unfinished seal lost bytes of this segment, and the later segments
            // are gone already (`drop_later`).
            break;
        }
    }
    shard.drop_after_unvouched_seal()?;
    let Recovering {
        mut out,
        staged,
        kept,
        max_seq,
        legacy_records,
        ..
    } = shard;
    out.synced_through = facts.synced_through(kept);
    out.index.load(staged);
    out.damaged = !out.report.skipped.is_empty() || !out.report.holes.is_empty();
    out.next_seq = max_seq.max(legacy_records) + 1;
    Ok(out)
}

impl Recovering<'_, '_> {
    /// Segments missing between two of the files that existed and were durable
    /// (`ShardFacts::gaps`): records lost in the middle of the shard. An error under
    /// `Strict`, reported in `RecoveryReport::holes` under `SkipCorrupted`. (A
    /// missing segment no marker vouches for is a power cut that lost a name:
    /// [`Recovering::drop_after_unvouched_seal`] handles it.)
    fn missing_segments(&mut self) -> Result<()> {
        let files = self.files;
        for &(missing, k) in &self.facts.gaps {
            let dir = files[k].1.parent().unwrap_or(Path::new(""));
            let path = dir.join(segment_file_name(missing));
            match self.mode {
                RecoveryMode::Strict => {
                    let refusal = Refusal::MissingSegment {
                        missing,
                        before: files[k - 1].0,
                        after: files[k].0,
                    };
                    return Err(refusal.at(&path, 0));
                }
                RecoveryMode::SkipCorrupted => self.out.report.holes.push((path, 0, 0)),
            }
        }
        Ok(())
    }

    /// Whether the sealed segment kept last, if it is the one just before segment
    /// `i` (scanned whole to its length), is shorter than the seal note at the
    /// start of segment `i` records, while a sync marker shows it durable: its last
    /// records are gone. An error under `Strict`, a hole under `SkipCorrupted`.
    /// (Without a marker, a power cut may have shortened it before its seal's
    /// fsync: [`Recovering::drop_after_unvouched_seal`] handles that.)
    fn shortened_predecessor(&mut self, i: usize) -> Result<()> {
        let Some(previous) = self.out.segments.last() else {
            return Ok(());
        };
        let next = &self.facts.segments[i];
        if previous.sequence + 1 != next.sequence() || !previous.sealed {
            return Ok(());
        }
        let (sequence, len) = (previous.sequence, previous.len);
        let Some(missing) = self.facts.shortened_before(i, sequence, len) else {
            return Ok(());
        };
        let previous_path = &self.files[i - 1].1;
        match self.mode {
            RecoveryMode::Strict => {
                let refusal = Refusal::Shortened {
                    next: next.path.clone(),
                    missing,
                };
                Err(refusal.at(previous_path, len))
            }
            RecoveryMode::SkipCorrupted => {
                let hole = (previous_path.clone(), len, missing);
                self.out.report.holes.push(hole);
                Ok(())
            }
        }
    }

    /// After a power cut, a sealed segment whose seal's fsync had not returned can
    /// have lost its last pages together with the file length that held them: it
    /// then ends cleanly at an earlier record, with no damage to see, while pages of
    /// the later segments reached the disk. So the oldest sealed segment no sync
    /// marker vouches for (see `Place::crash_possible`) and no seal note shows whole
    /// (see `rules::seal_note_shows_whole`) ends the shard, as if damage had been
    /// found at its end: the later segments are removed (`drop_segments`) and the
    /// writer goes on in it, unless they hold no record. Nothing they held was
    /// acknowledged as durable: a durable answer first writes a marker vouching for
    /// every earlier seal.
    ///
    /// A seal note first in the successor, naming this segment and the length it was
    /// sealed at, shows it whole when it has exactly that length and every byte of
    /// it is a valid record: that is what a `kill -9` leaves (the page cache
    /// survives), so a kill loses no record behind a seal whose fsync had not
    /// returned. A power cut that shortened the segment leaves it shorter than its
    /// note (or damaged, which the scan already cut). Not under
    /// `RecoveryMode::SkipCorrupted` once it skipped damage in the shard: the
    /// missing marker may be in what it skipped, and that mode keeps every valid
    /// record it can.
    fn drop_after_unvouched_seal(&mut self) -> Result<()> {
        if !self.out.report.skipped.is_empty() {
            return Ok(());
        }
        // The watermark of every segment scanned or removed, kept or not: an fsync
        // a marker reports did return.
        let synced_through = self
            .facts
            .synced_through(self.kept.iter().copied())
            .max(self.removed_synced_through);
        let Some(dropped) = self.facts.first_dropped(&self.kept, synced_through) else {
            return Ok(());
        };
        let from = dropped.from;
        // The newest segment kept, if any.
        let last_kept = from.checked_sub(1).map(|i| self.out.segments[i].sequence);
        let later: Vec<(u64, PathBuf)> = self
            .files
            .iter()
            .filter(|(s, p)| last_kept.is_none_or(|kept| *s > kept) && p.exists())
            .cloned()
            .collect();
        self.drop_segments(&later)?;
        let gone = self.out.segments.split_off(from);
        self.kept.truncate(from);
        for segment in &gone {
            self.out.report.segments -= 1;
            self.out.report.records -= segment.records;
        }
        if let Some(newest) = self.out.segments.last_mut() {
            newest.sealed = false;
        }
        let removed: Vec<u64> = gone.iter().map(|s| s.sequence).collect();
        self.out.index.remove_segments(&removed);
        self.staged.retain(|_, locs| {
            locs.retain(|l| last_kept.is_some_and(|kept| l.segment <= kept));
            !locs.is_empty()
        });
        Ok(())
    }
}
