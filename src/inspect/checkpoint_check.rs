//! The check of a shard's index checkpoint against what the scan of its segments
//! saw ([`CheckpointCheck`]): the scan notes each segment's stamp, header and
//! records ([`Seen`]), and [`check_checkpoint`] compares the checkpoint with them.

use super::layout::ErrorReason;
use super::report::{CheckpointCheck, Damage, DamageKind, SegmentScan};
use crate::error::WalError;
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use crate::index::Location;
use std::path::{Path, PathBuf};

/// What the scan of one segment saw, for the check of the index checkpoint.
pub(super) struct Seen {
    /// The file's stamp, the same before and after it was read (`None` if it was
    /// not: a writer changed it meanwhile).
    pub(super) stamp: Option<crate::format::checkpoint::FileStamp>,
    /// Its header's bytes.
    pub(super) head: Option<[u8; SEGMENT_HEADER_LEN]>,
    /// Its valid records, in file order.
    pub(super) records: Vec<SeenRecord>,
}

/// One valid record of a segment: where it is and the 64-bit XXH3 of its key.
/// 16 bytes, kept for every record of the shard while its checkpoint is checked.
pub(super) struct SeenRecord {
    pub(super) offset: u32,
    pub(super) len: u32,
    pub(super) key: u64,
}

/// Why an index checkpoint the next open would load is damaged
/// ([`DamageKind::BadCheckpoint`]); each says the repair too.
#[derive(Debug, thiserror::Error)]
enum Problem<'a> {
    #[error("{0}; an open with index_checkpoint set fails the same way{REMOVE_INDEX}")]
    Unreadable(ErrorReason<'a>),
    #[error("key {key}'s {count} locations do not fit in memory{REMOVE_INDEX}")]
    TooManyLocations { key: String, count: u32 },
    #[error(
        "the locations of key {key} fail their checks: {reason}; reads of that key would \
         fail{REMOVE_INDEX}"
    )]
    BadLocations { key: String, reason: String },
    #[error(
        "key {key} has a location at offset {} of segment {} ({} bytes) where the \
         segment holds no record of that key and length: its reads would fail or miss \
         records{REMOVE_INDEX}",
        at.offset,
        at.segment,
        at.len
    )]
    WrongLocation { key: String, at: Location },
    #[error(
        "segment {sequence} ends in {bytes} bytes after its last record, which a close \
         cuts off: an open loading the checkpoint would write new records after them, \
         where a later open that scans takes them for damage{REMOVE_INDEX}"
    )]
    BytesAfterLastRecord { sequence: u64, bytes: u64 },
    #[error(
        "it holds {listed} locations in segment {sequence}, which holds {records} valid \
         records: reads would not return what a scan finds{REMOVE_INDEX}"
    )]
    LocationCount {
        listed: u64,
        sequence: u64,
        records: u64,
    },
    #[error(
        "it counts {counted} records in segment {sequence}, which holds {records}: the \
         open would report wrong record counts{REMOVE_INDEX}"
    )]
    RecordCount {
        counted: u64,
        sequence: u64,
        records: u64,
    },
    #[error(
        "it gives segment {sequence}'s newest record time as {given} us, the segment's is \
         {newest} us: retention would drop the segment at another time{REMOVE_INDEX}"
    )]
    NewestTime {
        sequence: u64,
        given: u64,
        newest: u64,
    },
    #[error(
        "it says sync markers vouch for the segments through {given}, the segments' \
         markers vouch through {synced_through}{REMOVE_INDEX}"
    )]
    SyncedThrough { given: u64, synced_through: u64 },
}

/// The repair, said with every [`DamageKind::BadCheckpoint`].
const REMOVE_INDEX: &str = " (removing the file loses nothing: the open then scans)";

/// Why the next open would ignore an index checkpoint, as the scan finds it.
#[derive(Debug, thiserror::Error)]
#[error("{} changed while it was scanned", .0.display())]
struct ChangedWhileScanned<'a>(&'a Path);

/// Checks shard directory `dir`'s index checkpoint as the next open would use it
/// (`recovery::recover_shard`), and more: that open checks a key's locations only
/// when the key is read, so here every key's are checked against the records the
/// scan found (`seen`, one per segment), as are the checkpoint's other figures.
/// Segments with damage of their own are left out of the comparison: their damage
/// is reported with them. Damage of the checkpoint goes to `damage`.
pub(super) fn check_checkpoint(
    dir: &Path,
    shard: u32,
    segments: &[SegmentScan],
    seen: &[Seen],
    damage: &mut Vec<Damage>,
) -> CheckpointCheck {
    let path = dir.join(crate::format::checkpoint::CHECKPOINT_FILE);
    let bad = |offset: u64, len: u64, problem: Problem<'_>| Damage {
        path: path.clone(),
        offset,
        len,
        kind: DamageKind::BadCheckpoint,
        reason: problem.to_string(),
    };
    let cp = match crate::index::checkpoint_data::read_in(dir, shard) {
        Ok((Some(cp), _)) => cp,
        Ok((None, None)) => return CheckpointCheck::Absent,
        Ok((None, Some(reason))) => return CheckpointCheck::Ignored { reason },
        // Replaced by something else since the listing: reported as foreign next time.
        Err(WalError::ForeignFile { .. }) => return CheckpointCheck::Absent,
        Err(e) => {
            damage.push(bad(0, 0, Problem::Unreadable(ErrorReason(&e))));
            return CheckpointCheck::Damaged;
        }
    };
    if let Some(changed) = segments.iter().zip(seen).find(|(_, s)| s.stamp.is_none()) {
        return CheckpointCheck::Ignored {
            reason: ChangedWhileScanned(&changed.0.file.path).to_string(),
        };
    }
    let files: Vec<(u64, PathBuf)> = segments
        .iter()
        .map(|s| (s.file.sequence, s.file.path.clone()))
        .collect();
    // What the scan saw, not a new look: the checkpoint must describe the bytes
    // the scan checked.
    let by_path: std::collections::HashMap<&Path, &Seen> = segments
        .iter()
        .map(|s| s.file.path.as_path())
        .zip(seen)
        .collect();
    let stamp_of = |file: &Path| {
        let seen = by_path.get(file)?;
        Some((seen.stamp?, seen.head?))
    };
    if let Err(reason) = crate::format::checkpoint::describes(&cp, &files, stamp_of, shard) {
        return CheckpointCheck::Ignored { reason };
    }
    let damaged_before = damage.len();
    // `describes` matched the segments one to one, in order.
    let compared: Vec<bool> = segments.iter().map(|s| s.damage.is_empty()).collect();
    let mut per_segment = vec![0u64; cp.segments.len()];
    let mut locations = Vec::new();
    let mut total = 0u64;
    // Whether every key's locations could be read (else the counts cannot add up).
    let mut all_read = true;
    for (key, run) in &cp.keys {
        let run_len = crate::index::Run::byte_len(run.groups, run.count);
        let name = || String::from_utf8_lossy(key).escape_debug().to_string();
        locations.clear();
        if locations.try_reserve(run.count as usize).is_err() {
            let problem = Problem::TooManyLocations {
                key: name(),
                count: run.count,
            };
            damage.push(bad(run.at, run_len, problem));
            all_read = false;
            continue;
        }
        if let Err(reason) = run.decode_into(&mut locations) {
            let problem = Problem::BadLocations {
                key: name(),
                reason: reason.to_string(),
            };
            damage.push(bad(run.at, run_len, problem));
            all_read = false;
            continue;
        }
        total += locations.len() as u64;
        let hash = xxhash_rust::xxh3::xxh3_64(key);
        let mut wrong = None;
        for loc in &locations {
            // `decode_into` checked that every location names a listed segment.
            let Ok(i) = cp
                .segments
                .binary_search_by_key(&loc.segment, |s| s.sequence)
            else {
                continue;
            };
            if !compared[i] {
                continue;
            }
            per_segment[i] += 1;
            let records = &seen[i].records;
            let found = records
                .binary_search_by_key(&loc.offset, |r| r.offset)
                .ok()
                .map(|k| &records[k]);
            let right = found.is_some_and(|r| r.len == loc.len && r.key == hash);
            if !right && wrong.is_none() {
                wrong = Some(*loc);
            }
        }
        if let Some(loc) = wrong {
            let problem = Problem::WrongLocation {
                key: name(),
                at: loc,
            };
            damage.push(bad(run.at, run_len, problem));
        }
    }
    let mut compared_all = true;
    for (((scanned, summary), &listed), &compare) in segments
        .iter()
        .zip(&cp.segments)
        .zip(&per_segment)
        .zip(&compared)
    {
        if !compare {
            compared_all = false;
            continue;
        }
        let sequence = scanned.file.sequence;
        // A close cuts the newest segment after its last record before it writes
        // the checkpoint (older ones end there already), and the open loading the
        // checkpoint writes at the end of the file.
        if scanned.data_len != scanned.file_len {
            let problem = Problem::BytesAfterLastRecord {
                sequence,
                bytes: scanned.file_len.saturating_sub(scanned.data_len),
            };
            damage.push(bad(0, 0, problem));
        }
        if all_read && listed != scanned.records {
            let problem = Problem::LocationCount {
                listed,
                sequence,
                records: scanned.records,
            };
            damage.push(bad(0, 0, problem));
        }
        if summary.records != scanned.records {
            let problem = Problem::RecordCount {
                counted: summary.records,
                sequence,
                records: scanned.records,
            };
            damage.push(bad(0, 0, problem));
        }
        // A scan takes the segment's creation time when it holds no newer record.
        let created = scanned.header.map_or(0, |h| h.created_us);
        let newest = scanned.newest_us.map_or(created, |n| n.max(created));
        if summary.newest_us != newest {
            let problem = Problem::NewestTime {
                sequence,
                given: summary.newest_us,
                newest,
            };
            damage.push(bad(0, 0, problem));
        }
    }
    let synced_through = segments
        .iter()
        .map(|s| s.vouches_through)
        .max()
        .unwrap_or(0);
    if compared_all && cp.synced_through != synced_through {
        let problem = Problem::SyncedThrough {
            given: cp.synced_through,
            synced_through,
        };
        damage.push(bad(0, 0, problem));
    }
    if damage.len() > damaged_before {
        return CheckpointCheck::Damaged;
    }
    CheckpointCheck::Usable {
        keys: cp.keys.len() as u64,
        locations: total,
    }
}

#[cfg(test)]
#[path = "checkpoint_check_tests.rs"]
mod tests;
