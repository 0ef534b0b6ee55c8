//! The facts of a whole shard, collected once for recovery and `inspect`: every
//! segment's walk (`walk.rs`), the segments missing between two others that a sync
//! marker shows were durable, a sealed segment shorter than its successor's seal
//! note, the seal that may be unfinished, and the durable watermark. Recovery
//! decides from them what to cut or refuse (`scan.rs`); `inspect` reports them.

use super::rules::{first_dropped, seal_note_shows_whole, shortened_by, vouched_gaps, Dropped};
use super::walk::{salt_problem, synced_through_in_files, End, HeaderFact, Place, SegmentWalk};
use crate::error::Result;
use crate::format::record::SealNote;
use std::path::PathBuf;

/// One segment of a shard, walked.
pub(crate) struct WalkedSegment<'a, T> {
    /// Where it sits in the shard (it caches what the later files' markers say).
    pub(crate) place: Place<'a>,
    pub(crate) path: &'a PathBuf,
    pub(crate) walk: SegmentWalk,
    /// What the caller kept of the walk.
    pub(crate) kept: T,
    /// The highest segment the sync markers in this file vouch for, as the shard's
    /// rules count them: the walk's, or for a header of a version this build cannot
    /// read (whose records are not walked), the file read by its header's codec.
    synced_through: u64,
}

impl<T> WalkedSegment<'_, T> {
    pub(crate) fn sequence(&self) -> u64 {
        self.place.sequence
    }

    /// The seal note this segment begins with, as the rules for holes read it: only
    /// behind a valid header that carries the manifest's salt.
    fn note_for_holes(&self) -> Option<SealNote> {
        match self.walk.header {
            HeaderFact::Valid(h) if salt_problem(&h, self.place.salt).is_none() => {
                self.walk.seal_note
            }
            _ => None,
        }
    }

    /// Whether every byte of the segment, behind a valid header, is a valid record.
    fn walked_whole(&self) -> bool {
        matches!(self.walk.header, HeaderFact::Valid(_))
            && self.walk.damage.is_empty()
            && self.walk.end == End::Reached
            && self.walk.data_len == self.walk.file_len
    }
}

/// The facts of a shard: its segments, oldest first, and what they say together.
pub(crate) struct ShardFacts<'a, T> {
    pub(crate) segments: Vec<WalkedSegment<'a, T>>,
    /// Segments missing between two others that existed and were durable
    /// ([`vouched_gaps`]): (the missing sequence, the index of the segment after the
    /// gap).
    pub(crate) gaps: Vec<(u64, usize)>,
}

/// Walks every segment file of shard `shard` (`files`, oldest first, as
/// `read_shard_dir` lists them; `paths` the same paths) with `walk_one` (given the
/// index, the path and the place of each), then finds
/// the holes between them. `salt` is the manifest's; `lenient`: see
/// [`Place::lenient`]. Reads only.
pub(crate) fn collect_shard<'a, T>(
    files: &'a [(u64, PathBuf)],
    paths: &'a [PathBuf],
    shard: u32,
    salt: Option<u32>,
    lenient: bool,
    mut walk_one: impl FnMut(usize, &'a PathBuf, &Place<'a>) -> Result<(SegmentWalk, T)>,
) -> Result<ShardFacts<'a, T>> {
    let mut segments = Vec::with_capacity(files.len());
    for (i, (sequence, path)) in files.iter().enumerate() {
        let mut place = Place::new(shard, *sequence, salt, &paths[i + 1..]);
        if lenient {
            place = place.lenient();
        }
        let (walk, kept) = walk_one(i, path, &place)?;
        let synced_through = match walk.header {
            HeaderFact::Unsupported(_) => {
                let read = synced_through_in_files(std::slice::from_ref(path), salt, shard);
                match read {
                    Err(_) if lenient => 0,
                    other => other?,
                }
            }
            _ => walk.synced_through,
        };
        segments.push(WalkedSegment {
            place,
            path,
            walk,
            kept,
            synced_through,
        });
    }
    let mut facts = ShardFacts {
        segments,
        gaps: Vec::new(),
    };
    let sequences = facts.sequences(0..facts.segments.len());
    let note = |k: usize| Ok(facts.segments[k].note_for_holes().map(|n| n.sequence));
    let gaps = vouched_gaps(&sequences, note, |k| Ok(facts.synced_through_from(k)))?;
    facts.gaps = gaps;
    Ok(facts)
}

impl<T> ShardFacts<'_, T> {
    fn sequences(&self, indices: impl IntoIterator<Item = usize>) -> Vec<u64> {
        indices
            .into_iter()
            .map(|i| self.segments[i].sequence())
            .collect()
    }

    /// The highest segment the sync markers of segments `k` on vouch for.
    pub(crate) fn synced_through_from(&self, k: usize) -> u64 {
        self.segments[k..]
            .iter()
            .map(|s| s.synced_through)
            .max()
            .unwrap_or(0)
    }

    /// The durable watermark of the segments `indices`: the highest segment their
    /// valid sync markers vouch for (0: none).
    pub(crate) fn synced_through(&self, indices: impl IntoIterator<Item = usize>) -> u64 {
        indices
            .into_iter()
            .map(|i| self.segments[i].walk.synced_through)
            .max()
            .unwrap_or(0)
    }

    /// How many bytes the sealed segment before segment `i` (the previous
    /// sequence, `len` bytes long) lacks, when segment `i`'s seal note says it was
    /// sealed longer and a sync marker from `i` on shows it was durable
    /// ([`shortened_by`]): a hole.
    pub(crate) fn shortened_before(&self, i: usize, previous: u64, len: u64) -> Option<u64> {
        let note = self.segments[i].note_for_holes();
        let synced_through = self.synced_through_from(i);
        shortened_by(note, previous, len, || Ok(synced_through)).unwrap_or(None)
    }

    /// Where a seal whose fsync may not have finished cuts the shard off
    /// ([`first_dropped`]), among the segments `kept` (indices, oldest first; the
    /// result's `from` indexes `kept`), with `synced_through` proven by the markers.
    pub(crate) fn first_dropped(&self, kept: &[usize], synced_through: u64) -> Option<Dropped> {
        let segment = |i: usize| &self.segments[kept[i]];
        let whole = |i: usize| {
            let (own, successor) = (segment(i), segment(i + 1));
            own.walked_whole()
                && seal_note_shows_whole(
                    successor.walk.seal_note.as_ref(),
                    own.sequence(),
                    own.walk.data_len,
                )
        };
        first_dropped(
            &self.sequences(kept.iter().copied()),
            synced_through,
            |i| segment(i).walk.seal_note.map(|n| n.sequence),
            |i| segment(i).walk.version(),
            whole,
            |from| (from..kept.len()).any(|i| segment(i).walk.records > 0),
        )
    }
}
