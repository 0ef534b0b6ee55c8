//! Opening a shard's segments after a restart or a crash.
//!
//! Each shard is recovered independently (the caller runs them in parallel). Every
//! record's checksum is verified and its location loaded into a fresh index.
//!
//! **Torn tail vs damage.** A torn write can only be in the newest segment, or in a
//! sealed one whose seal's fsync (run in the background, `syncer.rs`) had not
//! returned: no later sync marker vouches for it. Nothing after such a seal was
//! acknowledged as durable, so recovery removes the later segments and then treats
//! it like the newest. In those segments a record that fails its checks is a torn
//! tail only if **no valid record follows it** in the file: then nothing after it
//! can be read back, and the tail is truncated. A failing record followed by valid
//! ones is never taken for a torn tail, whatever the bytes between look like (zeros
//! included: a value can be a run of zeros): under [`RecoveryMode::Strict`] it is
//! [`WalError::Corruption`] naming file and offset, and nothing in the shard is
//! changed; under [`RecoveryMode::SkipCorrupted`] the damaged bytes are skipped and
//! every record that verifies is kept. Records of format version 4 are bound to
//! their place (`record.rs`), so the search for a following record never stops
//! inside a value.
//!
//! **Holes.** A segment missing between two others that a sync marker shows was
//! durable, or a sealed segment that a marker vouches for and that is shorter than
//! the length its successor's seal note records, is a hole: refused under `Strict`
//! before anything is changed, reported in [`RecoveryReport::holes`] under
//! `SkipCorrupted`. (Compaction removes only the oldest segments, and only once a
//! marker vouches for them.)
//!
//! **Preallocated space.** The writer reserves zero-filled space ahead of its write
//! position in the active segment (see `storage::PREALLOCATION_CHUNK`) and cuts it
//! when the segment is sealed or the WAL closed. After a crash the newest segment may
//! therefore end in zeros: an all-zero remainder is free space, kept for the writer
//! to continue into, and neither a torn tail nor damage.

use super::report::RecoveryReport;
use super::rules::{
    first_dropped, judge, judge_header, later_proof, read_whole, seal_may_be_unfinished,
    seal_note_shows_whole, shortened_by, vouched_gaps, Dropped, HeaderJudgment, Judgment,
};
use crate::error::{Result, WalError};
use crate::format::checkpoint;
use crate::format::record::{marker_vouches, record_len, Codec, DecodeError, Decoded, SealNote};
use crate::format::segment_header::{
    codec_of, parse_segment_file_name, segment_file_name, SegmentHeader, BOUND_VERSION,
    FORMAT_VERSION, OLDEST_READABLE_VERSION, SEGMENT_HEADER_LEN,
};
use crate::index::{stage, Location, ShardIndex, Staged};
use crate::io::owned::{open_file, How};
use crate::io::{observed, sync_directory, FileSegment};
use crate::options::RecoveryMode;
use crate::writer::active_segment::Segment;
use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// Damage was skipped or a hole opened over (`RecoveryMode::SkipCorrupted`): the
    /// shard's next close writes no index checkpoint, so that a later open still
    /// finds the damage.
    pub(crate) damaged: bool,
    /// The sequence number the shard's next record gets: one past the highest found
    /// (and past the count of records of format versions 1 to 3, which carry none).
    pub(crate) next_seq: u64,
    /// The highest record sequence number the scan found.
    max_seq: u64,
    /// Records of format versions 1 to 3 the scan found.
    legacy_records: u64,
}

/// What the sync markers and seal notes of a shard's scanned segments say.
#[derive(Default)]
struct Meta {
    /// The highest value of the valid sync markers in each segment.
    markers: BTreeMap<u64, u64>,
    /// Each segment's seal note (only one that is its first record counts).
    notes: BTreeMap<u64, SealNote>,
}

/// A shard directory's segment files (sequence, path), oldest first, and its
/// foreign entries.
pub(crate) type ShardDir = (Vec<(u64, PathBuf)>, Vec<PathBuf>);

/// Reads a shard directory: its segment files, oldest first, and every other entry
/// but the index checkpoint (`checkpoint.rs`), which are foreign, by path.
pub(crate) fn read_shard_dir(dir: &Path) -> Result<ShardDir> {
    let entries = std::fs::read_dir(dir).map_err(|e| WalError::io("listing", dir, e))?;
    let (mut found, mut foreign) = (Vec::new(), Vec::new());
    for entry in entries {
        let entry = entry.map_err(|e| WalError::io("listing", dir, e))?;
        let path = entry.path();
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let name = entry.file_name();
        match name.to_str().and_then(parse_segment_file_name) {
            Some(seq) if is_file => found.push((seq, path)),
            None if is_file && checkpoint::is_checkpoint_name(&name) => {}
            _ => foreign.push(path),
        }
    }
    found.sort_unstable();
    foreign.sort();
    Ok((found, foreign))
}

/// Lists the segment files of a shard directory, oldest first; a foreign entry (see
/// [`read_shard_dir`]) is [`WalError::ForeignFile`].
pub(crate) fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let (found, foreign) = read_shard_dir(dir)?;
    match foreign.into_iter().next() {
        Some(path) => Err(WalError::ForeignFile { path }),
        None => Ok(found),
    }
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
            next_seq: 1,
            max_seq: 0,
            legacy_records: 0,
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
    salt: Option<u32>,
) -> Result<RecoveredShard> {
    let files = list_segments(dir)?;
    let (checkpoint, mut ignored) = if use_checkpoint {
        crate::index::checkpoint_data::read_in(dir, shard)?
    } else {
        (None, None)
    };
    if let Some(cp) = checkpoint {
        match from_checkpoint(cp, &files, shard, salt)? {
            Ok(out) => return Ok(out),
            Err(reason) => ignored = Some(reason),
        }
    }
    let mut out = scan_shard(&files, shard, mode, salt)?;
    out.report
        .checkpoints_ignored
        .extend(ignored.map(|reason| (dir.join(checkpoint::CHECKPOINT_FILE), reason)));
    Ok(out)
}

/// A shard as its checkpoint describes it, if `files` are the checkpoint's segment
/// files, unchanged since it was written (else the reason they are not).
fn from_checkpoint(
    cp: crate::index::checkpoint_data::Loaded,
    files: &[(u64, PathBuf)],
    shard: u32,
    salt: Option<u32>,
) -> Result<std::result::Result<RecoveredShard, String>> {
    let mut opened = Vec::with_capacity(files.len());
    let mut codecs = Vec::with_capacity(files.len());
    let described = checkpoint::describes(
        &cp,
        files,
        |path| {
            let io = FileSegment::open(path.to_path_buf()).ok()?;
            let stamp = checkpoint::FileStamp::of(&io.file().metadata().ok()?);
            let mut head = [0u8; SEGMENT_HEADER_LEN];
            io.file().read_exact_at(&mut head, 0).ok()?;
            codecs.push(
                SegmentHeader::decode(&head)
                    .ok()
                    .map(|h| (h.version, h.salt)),
            );
            opened.push(Arc::new(io));
            Some((stamp, head))
        },
        shard,
    );
    if let Err(reason) = described {
        return Ok(Err(reason));
    }
    // `describes` checked every header; a version-4 one must carry this WAL's salt.
    let mut segment_codecs = Vec::with_capacity(codecs.len());
    for ((sequence, path), head) in files.iter().zip(&codecs) {
        let Some((version, own_salt)) = *head else {
            return Ok(Err(format!("{} has no valid header", path.display())));
        };
        check_salt(path, version, own_salt, salt)?;
        segment_codecs.push(codec_of(version, own_salt, shard, *sequence));
    }
    let mut out = RecoveredShard {
        next_sequence: files.last().map_or(1, |(seq, _)| seq + 1),
        synced_through: cp.synced_through,
        next_seq: cp.next_seq.max(1),
        ..RecoveredShard::empty()
    };
    let newest = cp.segments.len().saturating_sub(1);
    for (i, ((s, io), codec)) in cp
        .segments
        .iter()
        .zip(opened)
        .zip(segment_codecs)
        .enumerate()
    {
        let io: Arc<dyn crate::io::SegmentIo> = io;
        let len = s.stamp.len;
        out.report.segments += 1;
        out.report.records += s.records;
        let published = out.index.add_segment(s.sequence, io.clone(), len, codec);
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
            codec,
        });
    }
    out.report.checkpoints_loaded = 1;
    out.index.load_frozen(cp.keys);
    Ok(Ok(out))
}

/// Recovers a shard by reading every record of its segment `files`, from the
/// manifest's `salt` (`None`: a manifest older than format version 4).
pub(crate) fn scan_shard(
    files: &[(u64, PathBuf)],
    shard: u32,
    mode: RecoveryMode,
    salt: Option<u32>,
) -> Result<RecoveredShard> {
    let mut out = RecoveredShard {
        next_sequence: files.last().map_or(1, |(seq, _)| seq + 1),
        ..RecoveredShard::empty()
    };
    // Before anything is changed: a refused shard stays as it was.
    missing_segments(files, shard, mode, salt, &mut out)?;
    let mut buf = Vec::new();
    for (i, (sequence, path)) in files.iter().enumerate() {
        let scan = Scan {
            path,
            shard,
            sequence: *sequence,
            later: &files[i + 1..],
            mode,
            salt,
            later_proof: std::cell::OnceCell::new(),
        };
        if let Some(previous) = out.segments.last() {
            if previous.sequence + 1 == *sequence && previous.sealed {
                shortened_predecessor(&scan, previous, &files[i - 1].1, &mut out.report)?;
            }
        }
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
    out.damaged = !out.report.skipped.is_empty() || !out.report.holes.is_empty();
    out.next_seq = out.max_seq.max(out.legacy_records) + 1;
    Ok(out)
}

/// Segments missing between two of `files` that existed and were durable
/// ([`vouched_gaps`]): records lost in the middle of the shard. An error under
/// `Strict`, reported in [`RecoveryReport::holes`] under `SkipCorrupted`. (A missing
/// segment no marker vouches for is a power cut that lost a name: [`first_dropped`]
/// handles it after the scan.)
fn missing_segments(
    files: &[(u64, PathBuf)],
    shard: u32,
    mode: RecoveryMode,
    salt: Option<u32>,
    out: &mut RecoveredShard,
) -> Result<()> {
    let sequences: Vec<u64> = files.iter().map(|(s, _)| *s).collect();
    let note = |k: usize| {
        let (sequence, path) = &files[k];
        Ok(first_seal_note(path, salt, shard, *sequence)?.map(|n| n.sequence))
    };
    let gaps = vouched_gaps(&sequences, note, |k| {
        let later: Vec<&Path> = files[k..].iter().map(|(_, p)| p.as_path()).collect();
        later_proof(&later, salt, shard)
    })?;
    for (missing, k) in gaps {
        let dir = files[k].1.parent().unwrap_or(Path::new(""));
        let path = dir.join(segment_file_name(missing));
        match mode {
            RecoveryMode::Strict => {
                return Err(WalError::corruption(
                    path,
                    0,
                    format!(
                        "segment {missing} is missing between segments {} and {}, and a sync marker shows it was durable",
                        files[k - 1].0,
                        files[k].0
                    ),
                ))
            }
            RecoveryMode::SkipCorrupted => out.report.holes.push((path, 0, 0)),
        }
    }
    Ok(())
}

/// Whether sealed segment `previous` (at `previous_path`, scanned whole to its
/// length) is shorter than the seal note at the start of `scan`'s segment records,
/// while a sync marker shows it durable: its last records are gone. An error under
/// `Strict`, a hole in `report` under `SkipCorrupted`. (Without a marker, a power cut
/// may have shortened it before its seal's fsync: [`first_dropped`] handles that.)
fn shortened_predecessor(
    scan: &Scan<'_>,
    previous: &Segment,
    previous_path: &Path,
    report: &mut RecoveryReport,
) -> Result<()> {
    let note = first_seal_note(scan.path, scan.salt, scan.shard, scan.sequence)?;
    let proof = || {
        let mut from_here = vec![scan.path];
        from_here.extend(scan.later.iter().map(|(_, p)| p.as_path()));
        later_proof(&from_here, scan.salt, scan.shard)
    };
    let Some(missing) = shortened_by(note, previous.sequence, previous.len, proof)? else {
        return Ok(());
    };
    match scan.mode {
        RecoveryMode::Strict => Err(WalError::corruption(
            previous_path,
            previous.len,
            format!(
                "the segment ends here, but the seal note in {} says it was sealed {missing} bytes longer, and a sync marker shows it was durable",
                scan.path.display(),
            ),
        )),
        RecoveryMode::SkipCorrupted => {
            report
                .holes
                .push((previous_path.to_path_buf(), previous.len, missing));
            Ok(())
        }
    }
}

/// The seal note segment `path` begins with, if its header and note are valid.
fn first_seal_note(
    path: &Path,
    salt: Option<u32>,
    shard: u32,
    sequence: u64,
) -> Result<Option<SealNote>> {
    let file = open_file(path, How::Read, "opening segment")?;
    let mut head = vec![0u8; SEGMENT_HEADER_LEN + crate::format::record::SEAL_NOTE_LEN];
    let n = read_up_to(&file, &mut head).map_err(|e| WalError::io("reading segment", path, e))?;
    head.truncate(n);
    let Ok(header) = SegmentHeader::decode(&head) else {
        return Ok(None);
    };
    if header.version >= BOUND_VERSION && Some(header.salt) != salt {
        return Ok(None);
    }
    let codec = codec_of(header.version, header.salt, shard, sequence);
    Ok(head
        .get(SEGMENT_HEADER_LEN..)
        .and_then(|b| codec.decode(b, SEGMENT_HEADER_LEN as u64).ok())
        .and_then(|r| r.seal_note()))
}

/// Reads from the start of `file` into `buf` until it is full or the file ends.
fn read_up_to(file: &std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A version-4 segment header must carry the manifest's salt: one that does not
/// belongs to another WAL (and one older than version 4 needs none).
fn check_salt(path: &Path, version: u32, own: u32, manifest: Option<u32>) -> Result<()> {
    if version < BOUND_VERSION || manifest == Some(own) {
        return Ok(());
    }
    Err(WalError::ManifestMismatch {
        path: path.to_path_buf(),
        reason: match manifest {
            Some(salt) => format!(
                "the segment header's salt {own:#010x} is not the manifest's {salt:#010x}: the segment belongs to another WAL"
            ),
            None => "a segment of format version 4 in a WAL whose manifest predates it".into(),
        },
    })
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

/// One segment file to recover.
struct Scan<'a> {
    path: &'a Path,
    shard: u32,
    sequence: u64,
    /// The shard's segment files after this one (none: this is the newest).
    later: &'a [(u64, PathBuf)],
    mode: RecoveryMode,
    /// The manifest's salt (`None`: older than format version 4).
    salt: Option<u32>,
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
        let proof = later_proof(&self.later_paths(), self.salt, self.shard)?;
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

/// Removes the segment files after an unfinished seal (listed as truncated), newest
/// first, each removal made durable before the next. Called before the unfinished
/// seal itself is cut or removed: a crash in between then leaves a shard that ends
/// in that segment, or a prefix of the later ones, never a cut segment followed by
/// the records that came after the lost ones.
fn drop_segments(files: &[(u64, PathBuf)], out: &mut RecoveredShard) -> Result<()> {
    let mut dropped = Vec::with_capacity(files.len());
    for (_, path) in files.iter().rev() {
        let len = std::fs::symlink_metadata(path)
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

/// Recovers one segment. Records are read through `buf` (reused across the shard's
/// segments, so a reopen does not fault in a fresh segment-sized buffer per file)
/// for as long as every record checks out, which is the whole file after a clean
/// close. From the first byte that does not start a valid record, the rest of the
/// file is read in one piece and judged (free space, torn tail or damage).
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
    let (codec, created_us, version) = match SegmentHeader::decode(&head) {
        Ok(header) => {
            if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&header.version) {
                return Err(WalError::UnsupportedVersion {
                    path: path.to_path_buf(),
                    found: header.version,
                    supported: FORMAT_VERSION,
                });
            }
            if header.shard != shard || header.sequence != sequence {
                return Err(WalError::ManifestMismatch {
                    path: path.to_path_buf(),
                    reason: format!(
                        "segment header says shard {} segment {}, but the file is shard {shard} segment {sequence}",
                        header.shard, header.sequence
                    ),
                });
            }
            check_salt(path, header.version, header.salt, scan.salt)?;
            out.versions.insert(sequence, header.version);
            (header.codec(), header.created_us, Some(header.version))
        }
        Err(e) => match damaged_header(scan, out, e.reason())? {
            HeaderVerdict::Removed => return Ok((None, !newest)),
            HeaderVerdict::Skipped => return Ok((None, false)),
            HeaderVerdict::Salvaged { codec, created_us } => (codec, created_us, None),
        },
    };
    let mut segment = Segment {
        sequence,
        io: io.clone(),
        created_us,
        newest_us: created_us,
        len: file_len,
        allocated: file_len,
        // Set below, when the segment is handed to the index.
        published: Default::default(),
        records: 0,
        sealed: !newest,
        codec,
    };
    let streamed = stream_records(
        io.file(),
        file_len,
        SEGMENT_HEADER_LEN as u64,
        buf,
        STREAM_CHUNK,
        codec,
        |pos, record| take_record(out, &mut segment, pos, record),
    )
    .map_err(|e| WalError::io("reading segment", path, e))?;
    let mut cut = false;
    if streamed < file_len {
        buf.clear();
        buf.resize((file_len - streamed) as usize, 0);
        io.file()
            .read_exact_at(buf, streamed)
            .map_err(|e| WalError::io("reading segment", path, e))?;
        let rest = Rest {
            data: buf,
            base: streamed,
        };
        cut = judge_rest(scan, &rest, &io, &mut segment, version, out)?;
    }
    out.report.segments += 1;
    out.report.records += segment.records;
    segment.published = out.index.add_segment(sequence, io, segment.len, codec);
    Ok((Some(segment), cut))
}

/// What recovery does with a segment whose header is damaged.
enum HeaderVerdict {
    /// Removed: a crash while it was created (nothing in it verifies).
    Removed,
    /// Ignored whole under `SkipCorrupted` (nothing in it verifies).
    Skipped,
    /// Records in it verify: kept under `SkipCorrupted`, read with `codec`, its
    /// creation time taken from its first record.
    Salvaged { codec: Codec, created_us: u64 },
}

/// Judges segment `scan.path`, whose header fails with `reason`. If no record in it
/// verifies and its seal may be unfinished, the process died while creating it (a
/// torn header), or a power cut lost its first page: nothing in it was acknowledged
/// as durable, and it is removed. If records verify, the header alone is damaged:
/// `Strict` refuses (a removal would lose them), `SkipCorrupted` keeps them.
fn damaged_header(
    scan: &Scan<'_>,
    out: &mut RecoveredShard,
    reason: &str,
) -> Result<HeaderVerdict> {
    let &Scan {
        path,
        shard,
        sequence,
        mode,
        ..
    } = scan;
    let data = read_whole(path)?;
    let judged = judge_header(&data, scan.salt, shard, sequence, || {
        scan.unsynced_seal_possible(None)
    })?;
    match (judged, mode) {
        (HeaderJudgment::Lost, _) => {
            out.report
                .truncated
                .push((path.to_path_buf(), 0, data.len() as u64));
            if !scan.newest() {
                scan.drop_later(out)?;
            }
            observed::remove_file(path)
                .map_err(|e| WalError::io("removing torn segment", path, e))?;
            if let Some(dir) = path.parent() {
                // fsync the directory: the removal must be durable before new
                // segments reuse the sequence range after it.
                sync_directory(dir)?;
            }
            Ok(HeaderVerdict::Removed)
        }
        (HeaderJudgment::Damaged { found: None }, RecoveryMode::Strict) => {
            Err(WalError::corruption(path, 0, reason))
        }
        (
            HeaderJudgment::Damaged {
                found: Some((_, at)),
            },
            RecoveryMode::Strict,
        ) => Err(WalError::corruption(
            path,
            0,
            format!("{reason}, and valid records follow at offset {at}"),
        )),
        (HeaderJudgment::Damaged { found: None }, RecoveryMode::SkipCorrupted) => {
            out.report
                .skipped
                .push((path.to_path_buf(), 0, data.len() as u64));
            Ok(HeaderVerdict::Skipped)
        }
        (
            HeaderJudgment::Damaged {
                found: Some((codec, at)),
            },
            RecoveryMode::SkipCorrupted,
        ) => {
            out.report
                .skipped
                .push((path.to_path_buf(), 0, SEGMENT_HEADER_LEN as u64));
            let created_us = codec
                .decode(&data[at..], at as u64)
                .map_or(0, |r| r.timestamp_us);
            Ok(HeaderVerdict::Salvaged { codec, created_us })
        }
    }
}

/// Counts and stages one valid record at `pos`; a sync marker or a seal note is
/// only noted in `out.meta`.
fn take_record(out: &mut RecoveredShard, segment: &mut Segment, pos: u64, record: &Decoded<'_>) {
    if let Some(synced) = record.synced_through() {
        let newest = out.meta.markers.entry(segment.sequence).or_default();
        *newest = (*newest).max(marker_vouches(synced, segment.sequence));
        return;
    }
    if let Some(note) = record.seal_note() {
        // Only where the writer puts one: first in the segment.
        if pos == SEGMENT_HEADER_LEN as u64 {
            out.meta.notes.insert(segment.sequence, note);
        }
        return;
    }
    stage(
        &mut out.staged,
        record.key,
        Location {
            segment: segment.sequence,
            offset: pos as u32,
            len: record.len as u32,
        },
    );
    match segment.codec {
        Codec::Legacy => out.legacy_records += 1,
        Codec::Bound { .. } => out.max_seq = out.max_seq.max(record.seq),
    }
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
    codec: Codec,
    mut each: impl FnMut(u64, &Decoded<'_>),
) -> std::io::Result<u64> {
    if buf.len() < chunk {
        buf.resize(chunk, 0);
    }
    // `buf[start..filled]` holds the file's bytes from `pos` on.
    let (mut start, mut filled) = (0, 0);
    loop {
        while start < filled {
            match codec.decode(&buf[start..filled], pos) {
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
        if filled >= codec.header_len() {
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
/// offset `base` on, and judging starts at `data[0]`.
struct Rest<'a> {
    data: &'a [u8],
    base: u64,
}

/// Judges the rest of a segment, where streaming stopped: valid records (after
/// skipped damage), free space, a torn tail, or damage. Returns whether it cut a
/// sealed segment (an unfinished seal), so that the later segments must go.
///
/// A record that fails its checks is a torn tail only when no valid record follows
/// it in the file and the segment may hold unsynced bytes (the newest, or an
/// unfinished seal): then nothing after it can be read back. With a valid record
/// after it, the bytes between may hold records a sync covered, so they are never
/// cut: `Strict` refuses, `SkipCorrupted` skips to the next valid record.
fn judge_rest(
    scan: &Scan<'_>,
    rest: &Rest<'_>,
    io: &FileSegment,
    segment: &mut Segment,
    version: Option<u32>,
    out: &mut RecoveredShard,
) -> Result<bool> {
    let &Scan { path, mode, .. } = scan;
    let newest = scan.newest();
    let &Rest { data, base } = rest;
    let codec = segment.codec;
    // File offset of `data[p]`.
    let at = |p: usize| base + p as u64;
    let mut pos = 0;
    while pos < data.len() {
        match codec.decode(&data[pos..], at(pos)) {
            Ok(record) => {
                take_record(out, segment, at(pos), &record);
                pos += record.len;
            }
            Err(e) => {
                let judged = judge(codec, data, base, pos, newest, || {
                    scan.unsynced_seal_possible(version)
                })?;
                let next = match judged {
                    Judgment::FreeSpace => {
                        segment.len = at(pos);
                        break;
                    }
                    Judgment::Damage { next } => next,
                    Judgment::TornTail => {
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
                        // A cut sealed segment becomes the newest: the writer goes on
                        // in it.
                        segment.sealed = false;
                        return Ok(!newest);
                    }
                };
                match (mode, next) {
                    (RecoveryMode::Strict, Some(next)) => {
                        return Err(WalError::corruption(
                            path,
                            at(pos),
                            format!(
                                "{}, and a valid record follows at offset {}",
                                e.reason(),
                                at(next)
                            ),
                        ))
                    }
                    (RecoveryMode::Strict, None) => {
                        return Err(WalError::corruption(
                            path,
                            at(pos),
                            format!("{} in a segment a sync marker shows durable", e.reason()),
                        ))
                    }
                    (RecoveryMode::SkipCorrupted, _) => {
                        let end = next.unwrap_or(data.len());
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

    use std::io::Write;

    const CODEC: Codec = Codec::Bound { seed: 0xABCD_0123 };

    /// Records of 1 to 700 value bytes: with a 64-byte chunk, most straddle a read and
    /// many are larger than the buffer.
    fn records() -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut offsets = Vec::new();
        for i in 0..200usize {
            offsets.push(bytes.len() as u64);
            let value = vec![i as u8; (i * 37) % 700 + 1];
            let at = bytes.len() as u64;
            CODEC.encode_into(
                &mut bytes,
                at,
                i as u64 + 1,
                i as u64,
                format!("k{i}").as_bytes(),
                &value,
            );
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
        let stop = stream_records(
            &file,
            bytes.len() as u64,
            0,
            &mut buf,
            chunk,
            CODEC,
            |pos, r| {
                assert_eq!(r.key, format!("k{}", r.timestamp_us).as_bytes());
                assert_eq!(r.seq, r.timestamp_us + 1);
                seen.push(pos);
            },
        )
        .expect("stream");
        (seen, stop)
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
        bytes[offsets[120] as usize + 33] ^= 0x40;
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
