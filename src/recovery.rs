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

use crate::checkpoint;
use crate::error::{Result, WalError};
use crate::index::{stage, Location, ShardIndex, Staged};
use crate::options::RecoveryMode;
use crate::owned::{open_file, How};
use crate::record::{marker_vouches, record_len, Codec, DecodeError, Decoded, SealNote};
use crate::segment::{
    codec_of, parse_segment_file_name, segment_file_name, Segment, SegmentHeader, BOUND_VERSION,
    FORMAT_VERSION, OLDEST_READABLE_VERSION, SEGMENT_HEADER_LEN,
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
    /// Holes opened over under `RecoveryMode::SkipCorrupted` (under `Strict` a hole is
    /// an error): (file, offset, bytes missing). A segment missing between two others
    /// is its would-be file with offset 0 and bytes 0 (its length is unknown); a
    /// sealed segment shorter than its successor's seal note records is that file,
    /// its length, and the bytes it lacks.
    pub holes: Vec<(PathBuf, u64, u64)>,
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
        self.holes.extend(other.holes);
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
        checkpoint::read(dir, shard)?
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
    cp: checkpoint::Checkpoint,
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
        let io: Arc<dyn crate::storage::SegmentIo> = io;
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
    let mut head = vec![0u8; SEGMENT_HEADER_LEN + crate::record::SEAL_NOTE_LEN];
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
///   and no marker vouches for it (one a marker vouches for is a hole:
///   [`vouched_gaps`]). A power cut lost its name while a later name
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
        let after = k.checked_sub(1).map_or(0, |p| sequences[p]);
        let named = note(k)?;
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

/// The highest segment that the valid sync markers in the files `later` of shard
/// `shard` vouch for (0: none); `salt` is the manifest's.
pub(crate) fn later_proof(later: &[&Path], salt: Option<u32>, shard: u32) -> Result<u64> {
    let mut proof = 0;
    for path in later {
        let own = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_segment_file_name)
            .unwrap_or(0);
        let data = read_whole(path)?;
        let codec = file_codec(&data, salt, shard, own);
        proof = proof.max(newest_marker(&data, own, codec));
    }
    Ok(proof)
}

/// How the records of segment `sequence` of shard `shard`, whose bytes are `data`,
/// are read: by its header, or, if the header is damaged, as version 4 when the
/// manifest has a salt (the only format a writer of such a WAL appends in) and as
/// an older version otherwise.
pub(crate) fn file_codec(data: &[u8], salt: Option<u32>, shard: u32, sequence: u64) -> Codec {
    match SegmentHeader::decode(data) {
        Ok(h) => codec_of(h.version, h.salt, shard, sequence),
        Err(_) => salt.map_or(Codec::Legacy, |s| Codec::bound(s, shard, sequence)),
    }
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

/// The highest segment a valid sync marker in the bytes `data` of segment `own`
/// vouches for (0: none; see [`marker_vouches`]). Markers past damage count too: a
/// marker is written only after the fsync it reports has returned, so a valid one
/// anywhere is proof.
fn newest_marker(data: &[u8], own: u64, codec: Codec) -> u64 {
    let mut newest = 0;
    let mut pos = SEGMENT_HEADER_LEN.min(data.len());
    while pos < data.len() {
        match codec.decode(&data[pos..], pos as u64) {
            Ok(record) => {
                newest = newest.max(marker_vouches(record.synced_through().unwrap_or(0), own));
                pos += record.len;
            }
            Err(_) => match codec.find_next_valid(data, 0, pos + 1) {
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

fn read_whole(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    open_file(path, How::Read, "opening segment")?
        .read_to_end(&mut data)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    Ok(data)
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
/// segment (`proof_from(k)`: the highest segment they vouch for) vouches for it.
/// Compaction removes only the oldest segments, so that segment held records in
/// the middle of the shard: a hole. (A gap whose successor's note names the segment
/// before the gap is recovery's own: it removed a torn newest segment, and the writer
/// went on after it.)
pub(crate) fn vouched_gaps(
    sequences: &[u64],
    note: impl Fn(usize) -> Result<Option<u64>>,
    mut proof_from: impl FnMut(usize) -> Result<u64>,
) -> Result<Vec<(u64, usize)>> {
    let mut out = Vec::new();
    for k in 1..sequences.len() {
        let (before, after) = (sequences[k - 1], sequences[k]);
        if after == before + 1 {
            continue;
        }
        let Some(named) = note(k)? else { continue };
        if named > before && named < after && named <= proof_from(k)? {
            out.push((named, k));
        }
    }
    Ok(out)
}

/// How many bytes sealed segment `sequence`, `len` bytes long, lacks when `note`
/// (the seal note its successor begins with) says it was sealed longer and a sync
/// marker (`proof`: the highest segment the markers from the successor on vouch
/// for) shows it was durable: a hole. (Without a marker, a power cut may have cut it
/// short before its seal's fsync returned: [`first_dropped`] handles that.)
pub(crate) fn shortened_by(
    note: Option<SealNote>,
    sequence: u64,
    len: u64,
    proof: impl FnOnce() -> Result<u64>,
) -> Result<Option<u64>> {
    match note {
        Some(n) if n.sequence == sequence && n.len > len && proof()? >= sequence => {
            Ok(Some(n.len - len))
        }
        _ => Ok(None),
    }
}

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
