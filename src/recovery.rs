//! Opening a shard's segments after a restart or a crash.
//!
//! Each shard is recovered independently (the caller runs them in parallel). Every
//! record's checksum is verified and its location loaded into a fresh index.
//!
//! **Torn tail vs corruption.** A torn write can only be in the newest segment, or
//! in a sealed one whose seal's fsync (run in the background, `syncer.rs`) had not
//! returned: no later sync marker vouches for it. Nothing after such a seal was
//! acknowledged as durable, so recovery removes the later segments and then treats
//! it like the newest. In those segments a record that fails its checks is a torn tail if no valid record follows
//! it, or if only zero bytes lie between it and the next valid one (pages that never
//! reached the disk: what follows was never synced, since a sync persists everything
//! before it). A torn tail is truncated. Any other damage is corruption: an error
//! naming file and offset under [`RecoveryMode::Strict`], skipped and reported under
//! [`RecoveryMode::SkipCorrupted`].
//!
//! **Preallocated space.** The writer reserves zero-filled space ahead of its write
//! position in the active segment (see `storage::PREALLOCATION_CHUNK`) and cuts it
//! when the segment is sealed or the WAL closed. After a crash the newest segment may
//! therefore end in zeros: an all-zero remainder is free space, kept for the writer
//! to continue into, and neither a torn tail nor damage.

use crate::checkpoint;
use crate::error::{Result, WalError};
use crate::index::{stage, Location, ShardIndex, Staged};
use crate::options::RecoveryMode;
use crate::record::{
    decode, find_next_valid, marker_vouches, record_len, DecodeError, Decoded, SealNote,
    RECORD_HEADER_LEN,
};
use crate::segment::{
    parse_segment_file_name, Segment, SegmentHeader, FORMAT_VERSION, OLDEST_READABLE_VERSION,
    SEGMENT_HEADER_LEN,
};
use crate::storage::{observed, sync_directory, FileSegment};
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What recovery changed or skipped, for operators (see `Wal::recovery_report`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Segments opened.
    pub segments: u64,
    /// Valid records loaded.
    pub records: u64,
    /// Torn tails cut off: (file, offset of the cut, bytes removed).
    pub truncated: Vec<(PathBuf, u64, u64)>,
    /// Damaged ranges skipped under `RecoveryMode::SkipCorrupted`: (file, offset, bytes).
    pub skipped: Vec<(PathBuf, u64, u64)>,
    /// Shards whose index was loaded from the checkpoint the last clean close wrote
    /// (`WalOptions::index_checkpoint`) instead of by reading their records.
    pub checkpoints_loaded: u64,
    /// Checkpoints found and not used, with the reason; those shards were scanned.
    pub checkpoints_ignored: Vec<(PathBuf, String)>,
}

impl RecoveryReport {
    pub(crate) fn merge(&mut self, other: RecoveryReport) {
        self.segments += other.segments;
        self.records += other.records;
        self.truncated.extend(other.truncated);
        self.skipped.extend(other.skipped);
        self.checkpoints_loaded += other.checkpoints_loaded;
        self.checkpoints_ignored.extend(other.checkpoints_ignored);
    }
}

/// A recovered shard, ready for its actor.
pub(crate) struct RecoveredShard {
    pub(crate) index: ShardIndex,
    /// Locations found by the scan, moved into `index` at the end of recovery.
    staged: Staged,
    pub(crate) segments: Vec<Segment>,
    pub(crate) next_sequence: u64,
    pub(crate) report: RecoveryReport,
    /// Every segment up to this sequence is durable, as a valid sync marker in a
    /// segment that stays says (0: none). The actor takes it as vouched for on disk.
    pub(crate) synced_through: u64,
    /// The sync markers and seal notes of the segments scanned.
    meta: Meta,
    /// The header version of each segment scanned.
    versions: BTreeMap<u64, u32>,
    /// The same proof from segments removed unscanned ([`drop_segments`]): it
    /// decides what recovery keeps, but is gone from the disk.
    removed_proof: u64,
    /// Damage was skipped (`RecoveryMode::SkipCorrupted`): the shard's next close
    /// writes no index checkpoint, so that a later open still finds the damage.
    pub(crate) damaged: bool,
}

/// What the sync markers and seal notes of a shard's scanned segments say.
#[derive(Default)]
struct Meta {
    /// The highest value of the valid sync markers in each segment.
    markers: BTreeMap<u64, u64>,
    /// Each segment's seal note (only one that is its first record counts).
    notes: BTreeMap<u64, SealNote>,
}

/// Lists the segment files of a shard directory, oldest first. Anything else in the
/// directory is a foreign file, except the index checkpoint (`checkpoint.rs`).
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("listing", dir, e))?;
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("listing", dir, e))?;
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let name = entry.file_name();
        match name.to_str().and_then(parse_segment_file_name) {
            Some(seq) if is_file => found.push((seq, path)),
            None if is_file && checkpoint::is_checkpoint_name(&name) => {}
            _ => return Err(WalError::ForeignFile { path }),
        }
    }
    found.sort_unstable();
    Ok(found)
}

impl RecoveredShard {
    /// A shard with no segments yet.
    pub(crate) fn empty() -> RecoveredShard {
        RecoveredShard {
            index: ShardIndex::default(),
            staged: Staged::default(),
            segments: Vec::new(),
            next_sequence: 1,
            report: RecoveryReport::default(),
            synced_through: 0,
            meta: Meta::default(),
            versions: BTreeMap::new(),
            removed_proof: 0,
            damaged: false,
        }
    }
}

/// Recovers shard `shard` from `dir` (which exists): from its index checkpoint if
/// `use_checkpoint` and the checkpoint describes the segment files as they are, else
/// by scanning them. The caller removes the checkpoint once every shard is open.
pub(crate) fn recover_shard(
    dir: &Path,
    shard: u32,
    mode: RecoveryMode,
    use_checkpoint: bool,
) -> Result<RecoveredShard> {
    let files = list_segments(dir)?;
    let (checkpoint, mut ignored) = if use_checkpoint {
        checkpoint::read(dir, shard)?
    } else {
        (None, None)
    };
    if let Some(cp) = checkpoint {
        match from_checkpoint(cp, &files, shard)? {
            Ok(out) => return Ok(out),
            Err(reason) => ignored = Some(reason),
        }
    }
    let mut out = scan_shard(&files, shard, mode)?;
    out.report
        .checkpoints_ignored
        .extend(ignored.map(|reason| (dir.join(checkpoint::CHECKPOINT_FILE), reason)));
    Ok(out)
}

/// A shard as its checkpoint describes it, if `files` are the checkpoint's segment
/// files, unchanged since it was written (else the reason they are not).
fn from_checkpoint(
    cp: checkpoint::Checkpoint,
    files: &[(u64, PathBuf)],
    shard: u32,
) -> Result<std::result::Result<RecoveredShard, String>> {
    let mut opened = Vec::with_capacity(files.len());
    let described = checkpoint::describes(
        &cp,
        files,
        |path| {
            let io = FileSegment::open(path.to_path_buf()).ok()?;
            let stamp = checkpoint::FileStamp::of(&io.file().metadata().ok()?);
            let mut head = [0u8; SEGMENT_HEADER_LEN];
            io.file().read_exact_at(&mut head, 0).ok()?;
            opened.push(Arc::new(io));
            Some((stamp, head))
        },
        shard,
    );
    if let Err(reason) = described {
        return Ok(Err(reason));
    }
    let mut out = RecoveredShard {
        next_sequence: files.last().map_or(1, |(seq, _)| seq + 1),
        synced_through: cp.synced_through,
        ..RecoveredShard::empty()
    };
    let newest = cp.segments.len().saturating_sub(1);
    for (i, (s, io)) in cp.segments.iter().zip(opened).enumerate() {
        let io: Arc<dyn crate::storage::SegmentIo> = io;
        let len = s.stamp.len;
        out.report.segments += 1;
        out.report.records += s.records;
        let published = out.index.add_segment(s.sequence, io.clone(), len);
        out.segments.push(Segment {
            sequence: s.sequence,
            io,
            created_us: s.created_us,
            newest_us: s.newest_us,
            len,
            allocated: len,
            published,
            records: s.records,
            sealed: i != newest,
        });
    }
    out.report.checkpoints_loaded = 1;
    out.index.load_frozen(cp.keys);
    Ok(Ok(out))
}

/// Recovers a shard by reading every record of its segment `files`.
pub(crate) fn scan_shard(
    files: &[(u64, PathBuf)],
    shard: u32,
    mode: RecoveryMode,
) -> Result<RecoveredShard> {
    let mut out = RecoveredShard {
        next_sequence: files.last().map_or(1, |(seq, _)| seq + 1),
        ..RecoveredShard::empty()
    };
    let mut buf = Vec::new();
    for (i, (sequence, path)) in files.iter().enumerate() {
        let scan = Scan {
            path,
            shard,
            sequence: *sequence,
            later: &files[i + 1..],
            mode,
            later_proof: std::cell::OnceCell::new(),
        };
        let (segment, cut) = recover_segment(&scan, &mut out, &mut buf)?;
        out.segments.extend(segment);
        if cut {
            // An unfinished seal lost bytes of this segment, and the later segments
            // are gone already (`drop_segments`).
            break;
        }
    }
    drop_after_unvouched_seal(files, &mut out)?;
    out.synced_through = out
        .segments
        .iter()
        .filter_map(|s| out.meta.markers.get(&s.sequence).copied())
        .max()
        .unwrap_or(0);
    out.index.load(std::mem::take(&mut out.staged));
    out.damaged = !out.report.skipped.is_empty();
    Ok(out)
}

/// After a power cut, a sealed segment whose seal's fsync had not returned can have
/// lost its last pages together with the file length that held them: it then ends
/// cleanly at an earlier record, with no damage to see, while pages of the later
/// segments reached the disk. So the oldest sealed segment no sync marker vouches for
/// (see [`Scan::unsynced_seal_possible`]) and no seal note shows whole (see
/// [`seal_note_shows_whole`]) ends the shard, as if damage had been found at its end:
/// the later segments are removed ([`drop_segments`]) and the writer goes on in it,
/// unless they hold no record. Nothing they held was acknowledged as durable: a
/// durable answer first writes a marker vouching for every earlier seal.
///
/// A seal note first in the successor, naming this segment and the length it was
/// sealed at, shows it whole when it has exactly that length and every byte of it
/// is a valid record: that is what a `kill -9` leaves (the page cache survives), so
/// a kill loses no record behind a seal whose fsync had not returned. A power cut
/// that shortened the segment leaves it shorter than its note (or damaged, which the
/// scan already cut). Not under `RecoveryMode::SkipCorrupted` once it skipped damage
/// in the shard: the missing marker may be in what it skipped, and that mode keeps
/// every valid record it can.
fn drop_after_unvouched_seal(files: &[(u64, PathBuf)], out: &mut RecoveredShard) -> Result<()> {
    if !out.report.skipped.is_empty() {
        return Ok(());
    }
    // Proof from every segment scanned or removed, kept or not: an fsync it reports
    // did return.
    let proven = out
        .meta
        .markers
        .values()
        .copied()
        .fold(out.removed_proof, u64::max);
    let sequences: Vec<u64> = out.segments.iter().map(|s| s.sequence).collect();
    let whole = |i: usize| {
        let (own, successor) = (&out.segments[i], &out.segments[i + 1]);
        seal_note_shows_whole(
            out.meta.notes.get(&successor.sequence),
            own.sequence,
            own.len,
        )
    };
    let Some(Dropped { from, .. }) = first_dropped(
        &sequences,
        proven,
        |i| out.meta.notes.get(&sequences[i]).map(|n| n.sequence),
        |i| out.versions.get(&sequences[i]).copied(),
        whole,
        |from| out.segments[from..].iter().any(|s| s.records > 0),
    ) else {
        return Ok(());
    };
    // The newest segment kept, if any.
    let last_kept = from.checked_sub(1).map(|i| sequences[i]);
    let later: Vec<(u64, PathBuf)> = files
        .iter()
        .filter(|(s, p)| last_kept.is_none_or(|kept| *s > kept) && p.exists())
        .cloned()
        .collect();
    drop_segments(&later, out)?;
    let gone = out.segments.split_off(from);
    for segment in &gone {
        out.report.segments -= 1;
        out.report.records -= segment.records;
    }
    if let Some(newest) = out.segments.last_mut() {
        newest.sealed = false;
    }
    let removed: Vec<u64> = gone.iter().map(|s| s.sequence).collect();
    out.index.remove_segments(&removed);
    out.staged.retain(|_, locs| {
        locs.retain(|l| last_kept.is_some_and(|kept| l.segment <= kept));
        !locs.is_empty()
    });
    Ok(())
}

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
/// active), for a seal whose fsync may not have finished; `proven` is the highest
/// segment the sync markers found vouch for. The first of:
///
/// - **A missing segment**: segment `k` begins with a seal note naming a segment
///   between its predecessor on disk (if any) and itself, which is therefore missing,
///   and no marker vouches for it. A power cut lost its name while a later name
///   reached the disk (a marker for an *earlier* seal proves nothing about it: the
///   syncer runs a seal's fsync before the next segment's directory fsync). Segment
///   `k` goes, with every later one, even if none holds a record: a kept note naming
///   a segment nothing can vouch for any more would drop the shard at every later
///   open. Compaction removes segments only once a marker vouches for them
///   (`compaction.rs`), so a removed one is never taken for a lost one.
/// - **An unvouched seal**: the segment after the oldest sealed segment that no
///   marker vouches for and no seal note shows whole: above `proven`; not synced
///   before its successor existed (`version(i)`: the header version of segment `i`,
///   if readable); and not `whole(i)` (see [`seal_note_shows_whole`]; asked only of
///   segments scanned without damage). Only if a record follows (`records_from(i +
///   1)`): otherwise nothing can come after lost records, and the writer goes on in
///   the newest segment, re-syncing that seal and then vouching for it.
///
/// `note(i)` is the sequence named by the seal note segment `i` begins with, if any.
/// Shared with `inspect`, which reports what recovery will do.
pub(crate) fn first_dropped(
    sequences: &[u64],
    proven: u64,
    note: impl Fn(usize) -> Option<u64>,
    version: impl Fn(usize) -> Option<u32>,
    whole: impl Fn(usize) -> bool,
    records_from: impl Fn(usize) -> bool,
) -> Option<Dropped> {
    let missing = (0..sequences.len()).find_map(|k| {
        let named = note(k)?;
        let after = k.checked_sub(1).map_or(0, |p| sequences[p]);
        (named > after && named < sequences[k] && named > proven).then_some(Dropped {
            from: k,
            missing: Some(named),
        })
    });
    let unvouched = (0..sequences.len().saturating_sub(1))
        .find(|&i| {
            sequences[i] > proven
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

/// One segment file to recover.
struct Scan<'a> {
    path: &'a Path,
    shard: u32,
    sequence: u64,
    /// The shard's segment files after this one (none: this is the newest).
    later: &'a [(u64, PathBuf)],
    mode: RecoveryMode,
    /// [`later_proof`] of the later files once known: it reads every one of them.
    later_proof: std::cell::OnceCell<u64>,
}

impl Scan<'_> {
    /// Whether bytes missing from this segment (a torn or lost tail, lost pages)
    /// can be the work of a crash rather than corruption: always for the newest
    /// segment; for a sealed one, when its seal's fsync may not have finished. A
    /// version-2 writer syncs a sealed segment in the background and writes a sync
    /// marker once that fsync has returned, before acknowledging anything durable
    /// after it (`syncer.rs`). So a sealed segment is vouched for, and damage in it is
    /// corruption, when a valid marker in a later segment covers it, or when it and
    /// its successor were written by version 1, which synced before sealing.
    fn unsynced_seal_possible(&self, own_version: Option<u32>) -> Result<bool> {
        seal_may_be_unfinished(self.sequence, own_version, &self.later_paths(), || {
            self.later_proof()
        })
    }

    /// The highest segment the sync markers in the later files vouch for.
    fn later_proof(&self) -> Result<u64> {
        if let Some(&known) = self.later_proof.get() {
            return Ok(known);
        }
        let proof = later_proof(&self.later_paths())?;
        Ok(*self.later_proof.get_or_init(|| proof))
    }

    fn later_paths(&self) -> Vec<&Path> {
        self.later.iter().map(|(_, p)| p.as_path()).collect()
    }

    /// Removes the later segment files (an unfinished seal in this one), keeping the
    /// proof their sync markers hold for the decisions still to come.
    fn drop_later(&self, out: &mut RecoveredShard) -> Result<()> {
        out.removed_proof = out.removed_proof.max(self.later_proof()?);
        drop_segments(self.later, out)
    }

    fn newest(&self) -> bool {
        self.later.is_empty()
    }
}

/// Whether sealed segment `sequence` (header version `own_version`, `None` when its
/// header is unreadable), followed by the segment files `later`, may have been cut
/// off by a crash before its seal's fsync returned: see
/// [`Scan::unsynced_seal_possible`]. Shared with `inspect`, which classifies damage
/// by the same rule.
/// `proof` gives [`later_proof`] of `later` (read only when needed).
pub(crate) fn seal_may_be_unfinished(
    sequence: u64,
    own_version: Option<u32>,
    later: &[&Path],
    proof: impl FnOnce() -> Result<u64>,
) -> Result<bool> {
    let Some(successor) = later.first() else {
        return Ok(true);
    };
    if synced_before_successor(own_version, header_version(successor)?) {
        return Ok(false);
    }
    Ok(proof()? < sequence)
}

/// The highest segment that the valid sync markers in the files `later` vouch for
/// (0: none).
pub(crate) fn later_proof(later: &[&Path]) -> Result<u64> {
    let mut proof = 0;
    for path in later {
        let own = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_segment_file_name)
            .unwrap_or(0);
        proof = proof.max(newest_marker(&read_whole(path)?, own));
    }
    Ok(proof)
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
    let file = std::fs::File::open(path).map_err(|e| WalError::io("opening segment", path, e))?;
    let mut head = [0u8; SEGMENT_HEADER_LEN];
    match file.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(SegmentHeader::decode(&head).ok().map(|h| h.version)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(WalError::io("reading segment", path, e)),
    }
}

/// The highest segment a valid sync marker in the bytes `data` of segment `own`
/// vouches for (0: none; see [`marker_vouches`]). Markers past damage count too: a
/// marker is written only after the fsync it reports has returned, so a valid one
/// anywhere is proof.
fn newest_marker(data: &[u8], own: u64) -> u64 {
    let mut newest = 0;
    let mut pos = SEGMENT_HEADER_LEN.min(data.len());
    while pos < data.len() {
        match decode(&data[pos..]) {
            Ok(record) => {
                newest = newest.max(marker_vouches(record.synced_through.unwrap_or(0), own));
                pos += record.len;
            }
            Err(_) => match find_next_valid(data, pos + 1) {
                Some(next) => pos = next,
                None => break,
            },
        }
    }
    newest
}

/// Removes the segment files after an unfinished seal (listed as truncated), newest
/// first, each removal made durable before the next. Called before the unfinished
/// seal itself is cut or removed: a crash in between then leaves a shard that ends
/// in that segment, or a prefix of the later ones, never a cut segment followed by
/// the records that came after the lost ones.
fn drop_segments(files: &[(u64, PathBuf)], out: &mut RecoveredShard) -> Result<()> {
    let mut dropped = Vec::with_capacity(files.len());
    for (_, path) in files.iter().rev() {
        let len = std::fs::metadata(path)
            .map_err(|e| WalError::io("reading segment", path, e))?
            .len();
        observed::remove_file(path).map_err(|e| WalError::io("removing segment", path, e))?;
        if let Some(dir) = path.parent() {
            // fsync the directory after each removal: an older segment must never be
            // gone while a newer one is still there. Defence in depth for WALs with
            // seal notes (a later recovery drops such a newer one again by the
            // seal-note rule, and the power-cut model passes without this fsync:
            // docs/RELIABILITY.md). For segments of format version 3, which carry no
            // seal notes, it is the only guard.
            sync_directory(dir)?;
        }
        dropped.push((path.clone(), 0, len));
    }
    dropped.reverse();
    out.report.truncated.extend(dropped);
    Ok(())
}

/// Bytes read at a time while every record checks out.
const STREAM_CHUNK: usize = 4 * 1024 * 1024;

fn read_whole(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| WalError::io("reading segment", path, e))
}

/// Recovers one segment. Records are read through `buf` (reused across the shard's
/// segments, so a reopen does not fault in a fresh segment-sized buffer per file)
/// for as long as every record checks out, which is the whole file after a clean
/// close. From the first byte that does not start a valid record, the rest of the
/// file is read in one piece and judged (free space, torn tail or corruption).
///
/// Returns the segment (unless removed or skipped) and whether recovery cut bytes
/// from a sealed segment, so that the later ones must go.
fn recover_segment(
    scan: &Scan<'_>,
    out: &mut RecoveredShard,
    buf: &mut Vec<u8>,
) -> Result<(Option<Segment>, bool)> {
    let &Scan {
        path,
        shard,
        sequence,
        mode,
        ..
    } = scan;
    let newest = scan.newest();
    let io = Arc::new(FileSegment::open(path.to_path_buf())?);
    let file_len = io
        .file()
        .metadata()
        .map_err(|e| WalError::io("reading segment", path, e))?
        .len();
    let mut head = vec![0; SEGMENT_HEADER_LEN.min(file_len as usize)];
    io.file()
        .read_exact_at(&mut head, 0)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    let header = match SegmentHeader::decode(&head) {
        Ok(h) => h,
        Err(e) => {
            let data = read_whole(path)?;
            // A newest segment whose header is torn and that holds no valid record
            // was being created when the process died; one whose header reads as all
            // zeros lost its first page in a power cut, and any fsync of the file
            // would have persisted that page. Either way nothing in it was
            // acknowledged as durable.
            let header_lost = data.len() >= SEGMENT_HEADER_LEN
                && data[..SEGMENT_HEADER_LEN].iter().all(|&b| b == 0);
            let no_record = find_next_valid(&data, SEGMENT_HEADER_LEN.min(data.len())).is_none();
            if (header_lost || no_record) && scan.unsynced_seal_possible(None)? {
                out.report
                    .truncated
                    .push((path.to_path_buf(), 0, data.len() as u64));
                if !newest {
                    scan.drop_later(out)?;
                }
                observed::remove_file(path)
                    .map_err(|e| WalError::io("removing torn segment", path, e))?;
                if let Some(dir) = path.parent() {
                    // fsync the directory: the removal must be durable before new
                    // segments reuse the sequence range after it.
                    sync_directory(dir)?;
                }
                return Ok((None, !newest));
            }
            return match mode {
                RecoveryMode::Strict => Err(WalError::corruption(path, 0, e.reason())),
                RecoveryMode::SkipCorrupted => {
                    out.report
                        .skipped
                        .push((path.to_path_buf(), 0, data.len() as u64));
                    Ok((None, false))
                }
            };
        }
    };
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&header.version) {
        return Err(WalError::UnsupportedVersion {
            path: path.to_path_buf(),
            found: header.version,
            supported: FORMAT_VERSION,
        });
    }
    out.versions.insert(sequence, header.version);
    if header.shard != shard || header.sequence != sequence {
        return Err(WalError::ManifestMismatch {
            path: path.to_path_buf(),
            reason: format!(
                "segment header says shard {} segment {}, but the file is shard {shard} segment {sequence}",
                header.shard, header.sequence
            ),
        });
    }
    let mut segment = Segment {
        sequence,
        io: io.clone(),
        created_us: header.created_us,
        newest_us: header.created_us,
        len: file_len,
        allocated: file_len,
        // Set below, when the segment is handed to the index.
        published: Default::default(),
        records: 0,
        sealed: !newest,
    };
    let streamed = stream_records(
        io.file(),
        file_len,
        SEGMENT_HEADER_LEN as u64,
        buf,
        STREAM_CHUNK,
        |pos, record| take_record(&mut out.staged, &mut out.meta, &mut segment, pos, record),
    )
    .map_err(|e| WalError::io("reading segment", path, e))?;
    let mut cut = false;
    if streamed < file_len {
        // Only the rest of the file is judged, from the start of the page that holds
        // the first bad byte: page-aligned, so the lost-page rule sees the file's
        // own page boundaries.
        let base = streamed - streamed % PAGE as u64;
        buf.clear();
        buf.resize((file_len - base) as usize, 0);
        io.file()
            .read_exact_at(buf, base)
            .map_err(|e| WalError::io("reading segment", path, e))?;
        let rest = Rest {
            data: buf,
            base,
            from: (streamed - base) as usize,
        };
        cut = judge_rest(scan, &rest, &io, &mut segment, header.version, out)?;
    }
    out.report.segments += 1;
    out.report.records += segment.records;
    segment.published = out.index.add_segment(sequence, io, segment.len);
    Ok((Some(segment), cut))
}

/// Counts and stages one valid record at `pos`; a sync marker or a seal note is
/// only noted in `meta`.
fn take_record(
    staged: &mut Staged,
    meta: &mut Meta,
    segment: &mut Segment,
    pos: u64,
    record: &Decoded<'_>,
) {
    if let Some(synced) = record.synced_through {
        let newest = meta.markers.entry(segment.sequence).or_default();
        *newest = (*newest).max(marker_vouches(synced, segment.sequence));
        return;
    }
    if let Some(note) = record.seal_note {
        // Only where the writer puts one: first in the segment.
        if pos == SEGMENT_HEADER_LEN as u64 {
            meta.notes.insert(segment.sequence, note);
        }
        return;
    }
    stage(
        staged,
        record.key,
        Location {
            segment: segment.sequence,
            offset: pos as u32,
            len: record.len as u32,
        },
    );
    segment.records += 1;
    segment.newest_us = segment.newest_us.max(record.timestamp_us);
}

/// Reads whole records from `file` (of `len` bytes) from offset `pos` on, through
/// `buf` in reads of `chunk` bytes (more for a record larger than that), handing each
/// valid one to `each` with its offset. Returns the offset of the first byte that
/// does not start a whole valid record: `len` if every byte did.
fn stream_records(
    file: &std::fs::File,
    len: u64,
    mut pos: u64,
    buf: &mut Vec<u8>,
    chunk: usize,
    mut each: impl FnMut(u64, &Decoded<'_>),
) -> std::io::Result<u64> {
    if buf.len() < chunk {
        buf.resize(chunk, 0);
    }
    // `buf[start..filled]` holds the file's bytes from `pos` on.
    let (mut start, mut filled) = (0, 0);
    loop {
        while start < filled {
            match decode(&buf[start..filled]) {
                Ok(record) => {
                    each(pos, &record);
                    pos += record.len as u64;
                    start += record.len;
                }
                Err(DecodeError::Incomplete) => break,
                Err(_) => return Ok(pos),
            }
        }
        if pos >= len {
            return Ok(pos);
        }
        buf.copy_within(start..filled, 0);
        filled -= start;
        start = 0;
        if filled >= RECORD_HEADER_LEN {
            // A record longer than the buffer: make room for all of it, unless it
            // claims to run past the end of the file (then it is judged as damage).
            let need = record_len(&buf[..filled]);
            if need as u64 > len - pos {
                return Ok(pos);
            }
            if need > buf.len() {
                buf.resize(need, 0);
            }
        }
        let want = (buf.len() - filled).min((len - pos) as usize - filled);
        if want == 0 {
            return Ok(pos);
        }
        file.read_exact_at(&mut buf[filled..filled + want], pos + filled as u64)?;
        filled += want;
    }
}

/// The end of a segment file where streaming stopped: `data` holds the file from
/// offset `base` (page-aligned) on, and judging starts at `data[from]`.
struct Rest<'a> {
    data: &'a [u8],
    base: u64,
    from: usize,
}

/// Judges the rest of a segment, where streaming stopped: valid records (after
/// skipped damage), free space, a torn tail, or corruption. Returns whether it cut
/// a sealed segment (an unfinished seal), so that the later segments must go.
fn judge_rest(
    scan: &Scan<'_>,
    rest: &Rest<'_>,
    io: &FileSegment,
    segment: &mut Segment,
    version: u32,
    out: &mut RecoveredShard,
) -> Result<bool> {
    let &Scan { path, mode, .. } = scan;
    let newest = scan.newest();
    let &Rest { data, base, from } = rest;
    // File offset of `data[p]`.
    let at = |p: usize| base + p as u64;
    let mut pos = from;
    while pos < data.len() {
        match decode(&data[pos..]) {
            Ok(record) => {
                take_record(&mut out.staged, &mut out.meta, segment, at(pos), &record);
                pos += record.len;
            }
            Err(_) if newest && data[pos..].iter().all(|&b| b == 0) => {
                // Space the writer preallocated and had not reached: free, not damage.
                segment.len = at(pos);
                break;
            }
            Err(e) => {
                let next = find_next_valid(data, pos + 1);
                let end = next.unwrap_or(data.len());
                if lost_write(data, pos, next) && scan.unsynced_seal_possible(Some(version))? {
                    out.report.truncated.push((
                        path.to_path_buf(),
                        at(pos),
                        (data.len() - pos) as u64,
                    ));
                    if !newest {
                        scan.drop_later(out)?;
                    }
                    truncate(io.file(), path, at(pos))?;
                    segment.len = at(pos);
                    segment.allocated = at(pos);
                    // A cut sealed segment becomes the newest: the writer goes on in it.
                    segment.sealed = false;
                    return Ok(!newest);
                }
                match mode {
                    RecoveryMode::Strict => {
                        return Err(WalError::corruption(path, at(pos), e.reason()))
                    }
                    RecoveryMode::SkipCorrupted => {
                        out.report
                            .skipped
                            .push((path.to_path_buf(), at(pos), (end - pos) as u64));
                        pos = end;
                    }
                }
            }
        }
    }
    Ok(false)
}

/// The page size the rule below assumes: the smallest unit the kernel writes back.
const PAGE: usize = 4096;

/// Whether the bytes from a record that fails to decode at `data[from]` up to the
/// next valid record (`next`; `None`: none follows) are what an interrupted write
/// leaves, rather than damage to written bytes. `data[0]` must sit at a page boundary
/// of the file. Pages are written back in no guaranteed order, so after a power cut a
/// torn record can keep its first bytes with a later record on disk and a hole
/// between them; what the hole holds is a page that did not reach the disk, read as
/// it last reached it. That is:
///
/// - nothing valid follows, or every byte up to the next valid record is zero;
/// - a whole page-aligned page of zeros lies before it (a page never written back:
///   new or preallocated blocks read as zeros);
/// - `from` is inside a page and every byte from it to the page's end is zero: the
///   page's older version, from a write-back or fsync that ended at `from` (the bytes
///   of a record are copied into a page in one write, so an older version ends at a
///   record's end), with the record at `from` and after it lost and later pages on
///   disk. When fewer than 4 bytes are left in the page, they are part of the
///   record's checksum and could be zero as written, so the rule also needs the
///   record's bytes on the next pages to be as written: the checksum of its body
///   agrees with the stored checksum bytes that follow the zeros. After a power cut
///   they are: each later page of the record is either a whole page of zeros (the
///   rule above) or a version written after the record was whole (the version that
///   ended at a record's end cannot end inside this one).
///
/// In each case no fsync covered anything from `from` on, or the page would be
/// there. The price: damage that zeroes a record's bytes up to a page boundary, or a
/// whole aligned page, is taken for a torn tail (reported in
/// `RecoveryReport::truncated`) instead of `Corruption`.
pub(crate) fn lost_write(data: &[u8], from: usize, next: Option<usize>) -> bool {
    let Some(to) = next else {
        return true;
    };
    let zero = |range: std::ops::Range<usize>| data[range].iter().all(|&b| b == 0);
    let page_end = from.div_ceil(PAGE) * PAGE;
    let rest_of_page_zero = from < page_end
        && page_end <= to
        && zero(from..page_end)
        && (page_end - from >= 4 || body_as_written(data, from, page_end - from));
    if zero(from..to) || rest_of_page_zero {
        return true;
    }
    let mut page = page_end;
    while page + PAGE <= to {
        if zero(page..page + PAGE) {
            return true;
        }
        page += PAGE;
    }
    false
}

/// Whether the record at `data[from]`, whose first `zeroed` (< 4) bytes read as
/// zero, is as written apart from those bytes: its length field is possible and the
/// checksum of bytes 4.. agrees with the stored checksum bytes after the zeroed ones.
/// (The record may end past the next valid-looking record: its value can hold an
/// encoded record.)
fn body_as_written(data: &[u8], from: usize, zeroed: usize) -> bool {
    if data.len() < from.saturating_add(RECORD_HEADER_LEN) {
        return false;
    }
    let len = record_len(&data[from..]);
    let end = from.saturating_add(len);
    if len < RECORD_HEADER_LEN || end > data.len() {
        return false;
    }
    let crc = crc32c::crc32c(&data[from + 4..end]).to_le_bytes();
    crc[zeroed..] == data[from + zeroed..from + 4]
}

fn truncate(file: &std::fs::File, path: &Path, len: u64) -> Result<()> {
    observed::set_len(file, path, len)
        .map_err(|e| WalError::io("truncating torn tail of", path, e))?;
    // fsync after truncating: the cut must be durable before new records are appended
    // at this offset, or a crash could put the torn bytes back behind them.
    observed::sync_all(file, path).map_err(|e| WalError::io("syncing truncation of", path, e))?;
    Ok(())
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
        proven: u64,
        records: &[bool],
    ) -> Option<Dropped> {
        first_dropped(
            sequences,
            proven,
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
    use crate::record::encode_into;
    use std::io::Write;

    /// Records of 1 to 700 value bytes: with a 64-byte chunk, most straddle a read and
    /// many are larger than the buffer.
    fn records() -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..200usize {
            offsets.push(bytes.len() as u64);
            let value = vec![i as u8; (i * 37) % 700 + 1];
            encode_into(&mut bytes, i as u64, format!("k{i}").as_bytes(), &value);
        }
        (bytes, offsets)
    }

    /// Streams `bytes` through chunks of `chunk` bytes; returns the offsets handed
    /// out and where streaming stopped.
    fn stream(bytes: &[u8], chunk: usize) -> (Vec<u64>, u64) {
        let mut file = tempfile::tempfile().expect("temp file");
        file.write_all(bytes).expect("write");
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        let stop = stream_records(&file, bytes.len() as u64, 0, &mut buf, chunk, |pos, r| {
            assert_eq!(r.key, format!("k{}", r.timestamp_us).as_bytes());
            seen.push(pos);
        })
        .expect("stream");
        (seen, stop)
    }

    #[test]
    fn lost_write_tells_lost_pages_from_damage() {
        let mut data = vec![0xAA; 3 * PAGE];
        // Damage inside a page with non-zero bytes after it: corruption.
        assert!(!lost_write(&data, 1000, Some(2 * PAGE)));
        // Nothing valid follows: a torn tail.
        assert!(lost_write(&data, 1000, None));
        // Zeros from the record to its page's end (the page's older version).
        data[1000..PAGE].fill(0);
        assert!(lost_write(&data, 1000, Some(2 * PAGE)));
        // Not when a non-zero byte is left in that page.
        data[PAGE - 1] = 1;
        assert!(!lost_write(&data, 1000, Some(2 * PAGE)));
        // A page-aligned record: the rest of its page is the whole page, which must
        // be zero; damaged bytes there are corruption.
        assert!(!lost_write(&data, PAGE, Some(2 * PAGE + 100)));
        data[PAGE..2 * PAGE].fill(0);
        assert!(lost_write(&data, PAGE, Some(2 * PAGE + 100)));
    }

    /// A record starting 1-3 bytes before a page end has only checksum bytes there,
    /// which can be zero as written: the rest-of-page rule then also needs the rest
    /// of the record as written.
    #[test]
    fn a_few_zero_checksum_bytes_at_a_page_end_need_the_record_intact() {
        // Segment bytes with a record starting `k` bytes before a page end, whose
        // checksum's first `k` bytes are all zero as written (`zero`) or are not,
        // whose value holds an encoded record if `nested`, and a valid record after
        // it. Returns the bytes and where the first valid record after it starts.
        let segment = |k: usize, zero: bool, nested: bool| {
            let mut inner = Vec::new();
            if nested {
                encode_into(&mut inner, 4, b"inner", b"a record as a value");
            }
            let record = (0u32..)
                .map(|i| {
                    let mut value = inner.clone();
                    value.extend_from_slice(&i.to_le_bytes().repeat(40));
                    let mut buf = Vec::new();
                    encode_into(&mut buf, 5, b"key", &value);
                    buf
                })
                .find(|buf| buf[..k].iter().all(|&b| b == 0) == zero)
                .expect("some value gives such a checksum");
            let from = PAGE - k;
            let mut data = vec![0xAA; from];
            data.extend_from_slice(&record);
            encode_into(&mut data, 6, b"next", b"v");
            let to = find_next_valid(&data, from + 1).expect("a record follows");
            assert_eq!(to == from + record.len(), !nested);
            (data, to)
        };

        for k in 1..=3 {
            for nested in [false, true] {
                let from = PAGE - k;
                if k < 3 {
                    // Written with zero checksum bytes there, then a bit flipped later
                    // in the record: damage (before, the zeros alone made it a torn
                    // tail).
                    let (mut rotten, to) = segment(k, true, nested);
                    assert!(decode(&rotten[from..]).is_ok());
                    rotten[from + 30] ^= 0x10;
                    assert!(decode(&rotten[from..]).is_err());
                    assert!(!lost_write(&rotten, from, Some(to)), "k {k}, {nested}");
                }

                // The page's older version ends at `from` (its last bytes read as
                // zero), the rest of the record is as written: torn.
                let (mut lost, to) = segment(k, false, nested);
                lost[from..PAGE].fill(0);
                assert!(decode(&lost[from..]).is_err());
                assert!(lost_write(&lost, from, Some(to)), "k {k}, nested {nested}");

                // The same with a checksum byte after the zeros damaged: damage.
                let mut bad = lost.clone();
                bad[PAGE] ^= 0x01;
                assert!(!lost_write(&bad, from, Some(to)), "k {k}, nested {nested}");
            }
        }
    }

    #[test]
    fn streaming_in_small_chunks_finds_every_record() {
        let (bytes, offsets) = records();
        for chunk in [64, 1000, STREAM_CHUNK] {
            let (seen, stop) = stream(&bytes, chunk);
            assert_eq!(seen, offsets, "chunk {chunk}");
            assert_eq!(stop, bytes.len() as u64, "chunk {chunk}");
        }
    }

    #[test]
    fn streaming_stops_at_the_first_damaged_record() {
        let (mut bytes, offsets) = records();
        bytes[offsets[120] as usize + 25] ^= 0x40;
        let (seen, stop) = stream(&bytes, 64);
        assert_eq!(seen, offsets[..120]);
        assert_eq!(stop, offsets[120]);
    }

    #[test]
    fn streaming_stops_at_free_space_and_at_a_torn_record() {
        let (mut bytes, offsets) = records();
        let end = bytes.len() as u64;
        bytes.extend_from_slice(&[0; 5000]);
        let (seen, stop) = stream(&bytes, 64);
        assert_eq!((seen.len(), stop), (offsets.len(), end));

        let (bytes, offsets) = records();
        let torn = &bytes[..bytes.len() - 3];
        let (seen, stop) = stream(torn, 64);
        assert_eq!(seen, offsets[..offsets.len() - 1]);
        assert_eq!(stop, offsets[offsets.len() - 1]);
    }
}
