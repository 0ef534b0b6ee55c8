//! Turning the facts of recovery's own walk (`recovery::walk_segment`) and of its
//! collection of a shard (`recovery::collect_shard`) into the damage a report lists:
//! each fact's [`DamageKind`], its range, and why, in words that say what the next
//! `Wal::new` would do.

use super::report::{Damage, DamageKind, SegmentScan};
use crate::format::record::DecodeError;
use crate::format::segment_header::{
    segment_file_name, HeaderError, FORMAT_VERSION, OLDEST_READABLE_VERSION, SEGMENT_HEADER_LEN,
};
use crate::recovery::{
    identity_mismatch, salt_problem, End, HeaderFact, IdentityMismatch, Place, SaltProblem,
    SegmentWalk, ShardFacts,
};
use std::path::{Path, PathBuf};

/// What recovery does with a sealed segment whose seal's fsync may not have
/// finished, said after the damage found in it.
const UNFINISHED_SEAL: &str = "in a sealed segment no sync marker vouches for: its seal's \
     fsync may not have finished; recovery truncates the file here and removes the later \
     segments of the shard";

/// What the next open recovers, said with each damage.
const REFUSES_OR_REPORTS_HOLE: &str =
    "recovery refuses the WAL (Strict) or opens it and reports the hole (SkipCorrupted)";

/// Why a range of a segment is damage, and what recovery does with it.
#[derive(Debug, thiserror::Error)]
enum Reason {
    #[error(
        "{}, in {}, and no record in it verifies: it never fully reached the disk; \
         recovery removes the file",
        error.reason(),
        if *newest {
            "the newest segment"
        } else {
            "a sealed segment no sync marker vouches for (its seal's fsync may not have \
             finished; recovery also removes the later segments)"
        }
    )]
    LostHeader { error: HeaderError, newest: bool },
    #[error(
        "{}; {}",
        error.reason(),
        if *records_follow {
            "valid records follow: recovery refuses the WAL (Strict) or keeps them \
             (SkipCorrupted)"
        } else {
            "recovery refuses the WAL (Strict) or ignores this segment (SkipCorrupted)"
        }
    )]
    BadHeader {
        error: HeaderError,
        records_follow: bool,
    },
    #[error(
        "segment format version {version}; this build reads versions \
         {OLDEST_READABLE_VERSION} to {FORMAT_VERSION} (records not checked)"
    )]
    Unsupported { version: u32 },
    #[error("{0}")]
    Identity(IdentityMismatch),
    #[error(
        "the header's salt is not the manifest's: the segment belongs to another WAL; \
         Wal::new refuses it"
    )]
    ForeignSalt,
    #[error("zero bytes from here to the end {UNFINISHED_SEAL}")]
    ZerosUnfinishedSeal,
    #[error(
        "{}; nothing valid follows in the newest segment: an interrupted write, recovery \
         truncates the file here",
        .0.reason()
    )]
    TornNewest(DecodeError),
    #[error("{}; nothing valid follows {UNFINISHED_SEAL}", .0.reason())]
    TornUnfinishedSeal(DecodeError),
    #[error(
        "{}; a valid record follows at offset {next}, so this is not a torn tail: recovery \
         refuses the WAL (Strict) or skips these bytes (SkipCorrupted)",
        error.reason()
    )]
    RecordFollows { error: DecodeError, next: u64 },
    #[error("{} in a sealed segment a sync marker shows durable", .0.reason())]
    Durable(DecodeError),
    #[error(
        "this segment's seal note names segment {0}, which is missing and which no sync \
         marker vouches for: a power cut may have lost it while this one survived; \
         recovery removes this segment and the later ones"
    )]
    NamesLostSegment(u64),
    #[error(
        "no sync marker vouches for this sealed segment, no seal note shows it whole, and \
         records follow in later segments: a power cut may have cut it short here without \
         a trace; recovery removes the later segments of the shard"
    )]
    UnvouchedSeal,
    #[error(
        "segment {missing} is missing between segments {before} and {after}, and a sync \
         marker shows it was durable; {REFUSES_OR_REPORTS_HOLE}"
    )]
    MissingSegment {
        missing: u64,
        before: u64,
        after: u64,
    },
    #[error(
        "the segment ends here, but the seal note of the next segment says it was sealed \
         {0} bytes longer, and a sync marker shows it was durable; {REFUSES_OR_REPORTS_HOLE}"
    )]
    Shortened(u64),
}

fn damage(path: &Path, offset: u64, len: u64, kind: DamageKind, reason: Reason) -> Damage {
    Damage {
        path: path.to_path_buf(),
        offset,
        len,
        kind,
        reason: reason.to_string(),
    }
}

/// The damage of one segment at `path` (`place` in its shard), in file order, and
/// its free space at the end, from its `walk`.
pub(super) fn segment_damage(
    path: &Path,
    place: &Place<'_>,
    walk: &SegmentWalk,
) -> (Vec<Damage>, u64) {
    let mut out = Vec::new();
    let len = walk.file_len;
    match walk.header {
        HeaderFact::Lost(error) => {
            let reason = Reason::LostHeader {
                error,
                newest: place.newest(),
            };
            out.push(damage(path, 0, len, DamageKind::TornTail, reason));
        }
        HeaderFact::Damaged { error, found } => {
            let reason = Reason::BadHeader {
                error,
                records_follow: found.is_some(),
            };
            let header = len.min(SEGMENT_HEADER_LEN as u64);
            out.push(damage(path, 0, header, DamageKind::BadHeader, reason));
        }
        HeaderFact::Unsupported(header) => {
            let reason = Reason::Unsupported {
                version: header.version,
            };
            out.push(damage(path, 8, 4, DamageKind::UnsupportedVersion, reason));
        }
        HeaderFact::Valid(header) => {
            if let Some(mismatch) = identity_mismatch(&header, place) {
                let reason = Reason::Identity(mismatch);
                out.push(damage(path, 12, 12, DamageKind::Mismatch, reason));
            }
            let salt = salt_problem(&header, place.salt);
            if matches!(salt, Some(SaltProblem::Foreign { .. })) {
                out.push(damage(
                    path,
                    32,
                    4,
                    DamageKind::Mismatch,
                    Reason::ForeignSalt,
                ));
            }
        }
    }
    for d in &walk.damage {
        let reason = match d.next {
            Some(next) => Reason::RecordFollows {
                error: d.error,
                next,
            },
            None => Reason::Durable(d.error),
        };
        out.push(damage(
            path,
            d.at,
            d.end - d.at,
            DamageKind::Corrupt,
            reason,
        ));
    }
    let free_len = match walk.end {
        End::Reached => 0,
        End::FreeSpace { at } => len - at,
        End::TornTail {
            at, nonzero_end, ..
        } if nonzero_end == at => {
            let reason = Reason::ZerosUnfinishedSeal;
            out.push(damage(path, at, len - at, DamageKind::TornTail, reason));
            0
        }
        End::TornTail {
            at,
            nonzero_end,
            error,
        } => {
            let reason = if place.newest() {
                Reason::TornNewest(error)
            } else {
                Reason::TornUnfinishedSeal(error)
            };
            let torn = nonzero_end - at;
            out.push(damage(path, at, torn, DamageKind::TornTail, reason));
            len - nonzero_end
        }
    };
    (out, free_len)
}

/// Recovery's rule for holes (`ShardFacts::gaps`, `ShardFacts::shortened_before`):
/// a segment missing between two others, or a sealed segment shorter than its
/// successor's seal note says, that a sync marker shows was durable. Reported as
/// [`DamageKind::Hole`]: in the shard's damage for a missing segment, in the
/// segment's for a shortened one.
pub(super) fn mark_holes(
    facts: &ShardFacts<'_, ()>,
    segments: &mut [SegmentScan],
    dir: &Path,
    shard_damage: &mut Vec<Damage>,
) {
    let sequence = |k: usize| segments[k].file.sequence;
    for &(missing, k) in &facts.gaps {
        let reason = Reason::MissingSegment {
            missing,
            before: sequence(k - 1),
            after: sequence(k),
        };
        let path: PathBuf = dir.join(segment_file_name(missing));
        shard_damage.push(damage(&path, 0, 0, DamageKind::Hole, reason));
    }
    for i in 1..segments.len() {
        let (own, next) = (&segments[i - 1], &segments[i]);
        if own.file.sequence + 1 != next.file.sequence || !own.damage.is_empty() {
            continue;
        }
        let Some(missing) = facts.shortened_before(i, own.file.sequence, own.data_len) else {
            continue;
        };
        let own = &mut segments[i - 1];
        let hole = damage(
            &own.file.path,
            own.data_len,
            missing,
            DamageKind::Hole,
            Reason::Shortened(missing),
        );
        own.damage.push(hole);
    }
}

/// Recovery's rule for a sealed segment no sync marker vouches for and no seal note
/// shows whole, with records in later segments (`ShardFacts::first_dropped`): a
/// power cut may have cut it short without a trace, so recovery removes the later
/// segments. Reported at the segment's end as a torn tail, unless the shard holds
/// corruption (then `Strict` refuses to open anyway). The same for a missing segment
/// that a segment's seal note names and no marker vouches for: reported at the start
/// of the segment with the note, which recovery removes with the later ones.
pub(super) fn mark_unvouched_seal(facts: &ShardFacts<'_, ()>, segments: &mut [SegmentScan]) {
    let corrupt = segments
        .iter()
        .flat_map(|s| &s.damage)
        .any(|d| !d.kind.is_torn_tail());
    if corrupt {
        return;
    }
    let all: Vec<usize> = (0..segments.len()).collect();
    let synced_through = facts.synced_through(all.iter().copied());
    let Some(dropped) = facts.first_dropped(&all, synced_through) else {
        return;
    };
    let from = dropped.from;
    if let Some(named) = dropped.missing {
        let first = &mut segments[from];
        let reason = Reason::NamesLostSegment(named);
        let lost = damage(&first.file.path, 0, 0, DamageKind::TornTail, reason);
        first.damage.push(lost);
        return;
    }
    let seal = &mut segments[from - 1];
    // Damage found in it already says the later segments go (an unfinished seal).
    if !seal.damage.is_empty() {
        return;
    }
    let reason = Reason::UnvouchedSeal;
    let unvouched = damage(
        &seal.file.path,
        seal.data_len,
        0,
        DamageKind::TornTail,
        reason,
    );
    seal.damage.push(unvouched);
}
