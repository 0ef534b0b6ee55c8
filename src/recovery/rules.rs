//! The rules that judge a shard's segments after a restart: what is a torn tail,
//! free space, damage or a hole, and what the sync markers and seal notes prove.
//! `Wal::new` and the operator tools (`inspect`) both judge by these functions,
//! through the one walk over a segment (`walk.rs`) and the one collection of a
//! shard's facts (`facts.rs`), so they never disagree on what a file holds.

use crate::error::{Result, WalError};
use crate::format::record::{Codec, SealNote};
use crate::format::segment_header::{SegmentHeader, SEGMENT_HEADER_LEN};
use crate::io::owned::{open_file, How};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Whether `note`, the seal note first in a sealed segment's successor (if it has
/// one), shows that segment (`sequence`, scanned whole to `len` bytes: every byte a
/// valid record) as the writer sealed it. Shared with `inspect`.
pub(crate) fn seal_note_shows_whole(note: Option<&SealNote>, sequence: u64, len: u64) -> bool {
    note.is_some_and(|n| n.sequence == sequence && n.len == len)
}

/// Where recovery cuts a shard off for a seal whose fsync may not have finished
/// (see [`first_dropped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dropped {
    /// Index of the first segment dropped; every later one goes too.
    pub(crate) from: usize,
    /// The segment that the seal note of segment `from` names and that is missing,
    /// when that is the reason.
    pub(crate) missing: Option<u64>,
}

/// Where recovery drops a shard's segments (`sequences`, oldest first, the last one
/// active), for a seal whose fsync may not have finished; `synced_through` is the
/// highest segment the sync markers found vouch for. The first of:
///
/// - **A missing segment**: segment `k` begins with a seal note naming a segment
///   between its predecessor on disk (if any) and itself, which is therefore missing,
///   and no marker vouches for it (one a marker vouches for is a hole:
///   [`vouched_gaps`]). A power cut lost its name while a later name
///   reached the disk (a marker for an *earlier* seal proves nothing about it: the
///   syncer runs a seal's fsync before the next segment's directory fsync). Segment
///   `k` goes, with every later one, even if none holds a record: a kept note naming
///   a segment nothing can vouch for any more would drop the shard at every later
///   open. Compaction removes segments only once a marker vouches for them
///   (`compaction.rs`), so a removed one is never taken for a lost one.
/// - **An unvouched seal**: the segment after the oldest sealed segment that no
///   marker vouches for and no seal note shows whole: above `synced_through`; not
///   synced before its successor existed (`version(i)`: the header version of
///   segment `i`, if readable); and not `whole(i)` (see [`seal_note_shows_whole`];
///   asked only of segments scanned without damage). Only if a record follows
///   (`records_from(i + 1)`): otherwise nothing can come after lost records, and the
///   writer goes on in the newest segment, re-syncing that seal and then vouching
///   for it.
///
/// `note(i)` is the sequence named by the seal note segment `i` begins with, if any.
/// Shared with `inspect`, which reports what recovery will do.
pub(crate) fn first_dropped(
    sequences: &[u64],
    synced_through: u64,
    note: impl Fn(usize) -> Option<u64>,
    version: impl Fn(usize) -> Option<u32>,
    whole: impl Fn(usize) -> bool,
    records_from: impl Fn(usize) -> bool,
) -> Option<Dropped> {
    let missing = (0..sequences.len()).find_map(|k| {
        let after = k.checked_sub(1).map_or(0, |p| sequences[p]);
        let named = note(k)?;
        (named > after && named < sequences[k] && named > synced_through).then_some(Dropped {
            from: k,
            missing: Some(named),
        })
    });
    let unvouched = (0..sequences.len().saturating_sub(1))
        .find(|&i| {
            sequences[i] > synced_through
                && !synced_before_successor(version(i), version(i + 1))
                && !whole(i)
        })
        .map(|i| Dropped {
            from: i + 1,
            missing: None,
        })
        .filter(|u| records_from(u.from));
    match (missing, unvouched) {
        (Some(m), Some(u)) if u.from <= m.from => Some(u),
        (Some(m), _) => Some(m),
        (None, u) => u,
    }
}

/// Whether sealed segment `sequence` (header version `own_version`, `None` when its
/// header is unreadable), followed by the segment files `later`, may have been cut
/// off by a crash before its seal's fsync returned: see
/// [`Place::crash_possible`](super::walk::Place::crash_possible).
/// `later_synced_through` gives the highest segment the sync markers in `later`
/// vouch for (read only when needed).
pub(crate) fn seal_may_be_unfinished(
    sequence: u64,
    own_version: Option<u32>,
    later: &[PathBuf],
    later_synced_through: impl FnOnce() -> Result<u64>,
) -> Result<bool> {
    let Some(successor) = later.first() else {
        return Ok(true);
    };
    if synced_before_successor(own_version, header_version(successor)?) {
        return Ok(false);
    }
    Ok(later_synced_through()? < sequence)
}

/// Whether a sealed segment of header version `own` was synced before its
/// successor (of version `successor`) existed: a version-1 writer synced each
/// segment before starting the next, so a version-1 successor proves it (`None`: a
/// header that cannot be read).
fn synced_before_successor(own: Option<u32>, successor: Option<u32>) -> bool {
    own.is_none_or(|v| v < 2) && successor == Some(1)
}

/// The format version in the header of `path`, if the header is valid.
fn header_version(path: &Path) -> Result<Option<u32>> {
    let file = open_file(path, How::Read, "opening segment")?;
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(SegmentHeader::decode(&head).ok().map(|h| h.version)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(WalError::io("reading segment", path, e)),
    }
}

/// How a segment reads from a record that fails its checks: the one rule recovery
/// applies and `inspect` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judgment {
    /// Zero bytes to the end of the newest segment: preallocated space the writer had
    /// not reached. Kept for the writer to continue into.
    FreeSpace,
    /// No valid record follows, and the segment may hold bytes no fsync covered (the
    /// newest, or a sealed one whose seal's fsync may not have finished): an
    /// interrupted write. Cut here.
    TornTail,
    /// Anything else: damage, with the index of the next valid record, if any. Never
    /// cut: a sync may have covered the records up to and after it.
    Damage { next: Option<usize> },
}

/// Judges `data` (a segment's bytes from file offset `base` on) from index `pos`,
/// where a record fails its checks. `crash_possible` says whether the segment may
/// hold unsynced bytes (asked only when needed: it may read later segments).
pub(crate) fn judge(
    codec: Codec,
    data: &[u8],
    base: u64,
    pos: usize,
    newest: bool,
    crash_possible: impl FnOnce() -> Result<bool>,
) -> Result<Judgment> {
    if newest && data[pos..].iter().all(|&b| b == 0) {
        return Ok(Judgment::FreeSpace);
    }
    let next = codec.find_next_valid(data, base, pos + 1);
    if next.is_none() && crash_possible()? {
        return Ok(Judgment::TornTail);
    }
    Ok(Judgment::Damage { next })
}

/// How a segment whose header fails its checks reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderJudgment {
    /// No record in it verifies and it may hold unsynced bytes: the process died
    /// while creating it, or a power cut lost its first page. Removed.
    Lost,
    /// Damage; `found` is the codec under which a record verifies and that record's
    /// offset, if one does (then the records are kept under `SkipCorrupted`).
    Damaged { found: Option<(Codec, usize)> },
}

/// Judges segment `sequence` of shard `shard`, whose bytes are `data` and whose
/// header fails its checks. Records of either layout are looked for (a WAL upgraded
/// to version 4 still holds older segments), version 4 first, whose records cannot
/// be found inside a value.
pub(crate) fn judge_header(
    data: &[u8],
    salt: Option<u32>,
    shard: u32,
    sequence: u64,
    crash_possible: impl FnOnce() -> Result<bool>,
) -> Result<HeaderJudgment> {
    let from = SEGMENT_HEADER_LEN.min(data.len());
    let codecs = [
        salt.map(|s| Codec::bound(s, shard, sequence)),
        Some(Codec::Legacy),
    ];
    let found = codecs
        .into_iter()
        .flatten()
        .find_map(|codec| codec.find_next_valid(data, 0, from).map(|at| (codec, at)));
    if found.is_none() && crash_possible()? {
        return Ok(HeaderJudgment::Lost);
    }
    Ok(HeaderJudgment::Damaged { found })
}

/// The segments missing between two of `sequences` (a shard's, oldest first) that
/// existed and were durable, each with the index of the segment after its gap: the
/// seal note that segment begins with (`note(k)`) names a segment in the gap (the
/// writer sealed it before starting this one), and a sync marker in it or a later
/// segment (`synced_through_from(k)`: the highest segment they vouch for) vouches
/// for it.
/// Compaction removes only the oldest segments, so that segment held records in
/// the middle of the shard: a hole. (A gap whose successor's note names the segment
/// before the gap is recovery's own: it removed a torn newest segment, and the writer
/// went on after it.)
pub(crate) fn vouched_gaps(
    sequences: &[u64],
    note: impl Fn(usize) -> Result<Option<u64>>,
    mut synced_through_from: impl FnMut(usize) -> Result<u64>,
) -> Result<Vec<(u64, usize)>> {
    let mut out = Vec::new();
    for k in 1..sequences.len() {
        let (before, after) = (sequences[k - 1], sequences[k]);
        if after == before + 1 {
            continue;
        }
        let Some(named) = note(k)? else { continue };
        if named > before && named < after && named <= synced_through_from(k)? {
            out.push((named, k));
        }
    }
    Ok(out)
}

/// How many bytes sealed segment `sequence`, `len` bytes long, lacks when `note`
/// (the seal note its successor begins with) says it was sealed longer and a sync
/// marker (`synced_through`: the highest segment the markers from the successor on
/// vouch for) shows it was durable: a hole. (Without a marker, a power cut may have cut it
/// short before its seal's fsync returned: [`first_dropped`] handles that.)
pub(crate) fn shortened_by(
    note: Option<SealNote>,
    sequence: u64,
    len: u64,
    synced_through: impl FnOnce() -> Result<u64>,
) -> Result<Option<u64>> {
    match note {
        Some(n) if n.sequence == sequence && n.len > len && synced_through()? >= sequence => {
            Ok(Some(n.len - len))
        }
        _ => Ok(None),
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// `first_dropped` over segments `sequences` whose seal notes name `notes` (by
    /// index), none synced before its successor, none shown whole, and records in
    /// segment `i` when `records[i]`.
    fn dropped(
        sequences: &[u64],
        notes: &[Option<u64>],
        synced_through: u64,
        records: &[bool],
    ) -> Option<Dropped> {
        first_dropped(
            sequences,
            synced_through,
            |i| notes[i],
            |_| Some(3),
            |_| false,
            |from| records[from..].iter().any(|&r| r),
        )
    }

    #[test]
    fn a_segment_whose_note_names_a_missing_unvouched_segment_is_dropped() {
        let missing = |from, named| {
            Some(Dropped {
                from,
                missing: Some(named),
            })
        };
        // The oldest segment names a lost one: dropped even without a record (a kept
        // note naming a segment nothing can vouch for would drop the shard later).
        assert_eq!(dropped(&[2], &[Some(1)], 0, &[false]), missing(0, 1));
        // Vouched for: compaction removed it.
        assert_eq!(dropped(&[2], &[Some(1)], 1, &[true]), None);
        // In the middle, after a segment a marker vouches for (so the unvouched-seal
        // rule says nothing): segment 3 names the lost 2.
        assert_eq!(
            dropped(&[1, 3], &[None, Some(2)], 1, &[true, true]),
            missing(1, 2)
        );
        // Naming its predecessor on disk is the unvouched-seal rule's business.
        assert_eq!(dropped(&[1, 2], &[None, Some(1)], 1, &[true, true]), None);
        assert_eq!(
            dropped(&[1, 2], &[None, Some(1)], 0, &[true, true]),
            Some(Dropped {
                from: 1,
                missing: None
            })
        );
        // An unvouched seal with no record after it keeps everything, but a lost
        // segment named later still drops from there.
        assert_eq!(dropped(&[1, 2], &[None, Some(1)], 0, &[true, false]), None);
        assert_eq!(
            dropped(
                &[1, 2, 4],
                &[None, Some(1), Some(3)],
                0,
                &[true, false, false]
            ),
            missing(2, 3)
        );
        // The earlier of the two rules wins.
        assert_eq!(
            dropped(
                &[1, 2, 4],
                &[None, Some(1), Some(3)],
                0,
                &[true, true, true]
            ),
            Some(Dropped {
                from: 1,
                missing: None
            })
        );
    }
}
