//! The one walk over a segment's bytes, shared by recovery and `inspect`.
//!
//! [`walk_segment`] reads a segment's header, then its records, resynchronising over
//! damage with [`Codec::find_next_valid`], and judges what it meets by the rules of
//! `rules.rs` ([`judge_header`], [`judge`]). It changes nothing on disk: it returns
//! the facts ([`SegmentWalk`]: the header, sync markers, the seal note, every damaged
//! range, where a torn tail or free space starts) and hands each data record to the
//! caller. Recovery then decides what to cut or refuse (`segment.rs`), and `inspect`
//! reports the same facts, so the two never disagree on what a file holds.

use super::rules::{judge, judge_header, seal_may_be_unfinished, HeaderJudgment, Judgment};
use super::stream::{stream_records, STREAM_CHUNK};
use crate::error::{Result, WalError};
use crate::format::record::{marker_synced_through, Codec, DecodeError, Decoded, SealNote};
use crate::format::segment_header::{
    codec_of, parse_segment_file_name, HeaderError, SegmentHeader, FORMAT_VERSION,
    OLDEST_READABLE_VERSION, SEGMENT_HEADER_LEN,
};
use crate::io::owned::{open_file, How};
use std::cell::OnceCell;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Where a segment sits in its shard: what judging its damage needs.
pub(crate) struct Place<'a> {
    pub(crate) shard: u32,
    pub(crate) sequence: u64,
    /// The manifest's salt (`None`: older than format version 4).
    pub(crate) salt: Option<u32>,
    /// The shard's segment files after this one (none: this is the newest).
    later: &'a [PathBuf],
    /// A later file that cannot be read counts as "no crash" instead of an error
    /// (the read-only tools, which report rather than fail).
    lenient: bool,
    /// [`synced_through_in_files`] of `later`, once known: it reads every one of them.
    later_synced_through: OnceCell<u64>,
}

impl<'a> Place<'a> {
    pub(crate) fn new(shard: u32, sequence: u64, salt: Option<u32>, later: &'a [PathBuf]) -> Self {
        Place {
            shard,
            sequence,
            salt,
            later,
            lenient: false,
            later_synced_through: OnceCell::new(),
        }
    }

    /// This place, with unreadable later files taken as "no crash" (see `lenient`).
    pub(crate) fn lenient(self) -> Self {
        Place {
            lenient: true,
            ..self
        }
    }

    pub(crate) fn newest(&self) -> bool {
        self.later.is_empty()
    }

    /// The highest segment the sync markers in the later files vouch for.
    pub(crate) fn later_synced_through(&self) -> Result<u64> {
        if let Some(&known) = self.later_synced_through.get() {
            return Ok(known);
        }
        let found = synced_through_in_files(self.later, self.salt, self.shard)?;
        Ok(*self.later_synced_through.get_or_init(|| found))
    }

    /// Whether bytes missing from this segment (a torn or lost tail, lost pages)
    /// can be the work of a crash rather than corruption: always for the newest
    /// segment; for a sealed one (header version `own_version`), when its seal's
    /// fsync may not have finished ([`seal_may_be_unfinished`]). A version-2 writer
    /// syncs a sealed segment in the background and writes a sync marker once that
    /// fsync has returned, before acknowledging anything durable after it
    /// (`syncer.rs`). So a sealed segment is vouched for, and damage in it is
    /// corruption, when a valid marker in a later segment covers it, or when it and
    /// its successor were written by version 1, which synced before sealing.
    pub(crate) fn crash_possible(&self, own_version: Option<u32>) -> Result<bool> {
        let answer = seal_may_be_unfinished(self.sequence, own_version, self.later, || {
            self.later_synced_through()
        });
        match answer {
            Err(_) if self.lenient => Ok(false),
            other => other,
        }
    }
}

/// The bytes of one segment, as the walk gets them.
pub(crate) enum Source<'a> {
    /// The whole file, read already.
    Bytes(&'a [u8]),
    /// The open file at `path`, read through `buf` in large pieces for as long as
    /// every record checks out (the whole file after a clean close); from the first
    /// byte that does not start a valid record, the rest is read in one piece.
    File {
        file: &'a std::fs::File,
        path: &'a Path,
        buf: &'a mut Vec<u8>,
    },
}

/// What a segment's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderFact {
    /// It passes its checks and its version is one this build reads (its shard,
    /// sequence and salt are the caller's to check: [`identity_mismatch`],
    /// [`salt_problem`]).
    Valid(SegmentHeader),
    /// It passes its checks, but this build cannot read its version: no record is
    /// walked.
    Unsupported(SegmentHeader),
    /// It fails its checks, no record in the file verifies, and the segment may hold
    /// unsynced bytes ([`HeaderJudgment::Lost`]): no record is walked.
    Lost(HeaderError),
    /// It fails its checks otherwise; `found` is the first record that verifies, if
    /// one does ([`HeaderJudgment::Damaged`]).
    Damaged {
        error: HeaderError,
        found: Option<Found>,
    },
}

/// The first valid record of a segment whose header is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Found {
    /// The codec under which it verifies (the records are walked by it).
    pub(crate) codec: Codec,
    pub(crate) at: u64,
    pub(crate) timestamp_us: u64,
}

/// A damaged range: from a record that fails its checks to the next valid record
/// (`next`), or to the end of the file when none follows and the segment holds no
/// unsynced bytes ([`Judgment::Damage`]). Never a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DamageFact {
    pub(crate) at: u64,
    pub(crate) end: u64,
    pub(crate) next: Option<u64>,
    pub(crate) error: DecodeError,
}

/// How the walk of a segment's records ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// At the end of the file (or of the header, when no record is walked).
    Reached,
    /// Zero bytes from `at` to the end of the newest segment ([`Judgment::FreeSpace`]).
    FreeSpace { at: u64 },
    /// A torn tail from `at` ([`Judgment::TornTail`]): the record there fails with
    /// `error`, and the bytes from `nonzero_end` to the end of the file are zeros.
    TornTail {
        at: u64,
        nonzero_end: u64,
        error: DecodeError,
    },
}

/// What walking one segment found, besides the data records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentWalk {
    pub(crate) header: HeaderFact,
    /// How its records were read.
    pub(crate) codec: Codec,
    /// The file's length.
    pub(crate) file_len: u64,
    /// End of the last valid record (the header length when there is none; 0 when
    /// no record was walked).
    pub(crate) data_len: u64,
    /// Valid data records (handed to the caller).
    pub(crate) records: u64,
    /// Valid sync markers.
    pub(crate) markers: u64,
    /// The highest segment those markers vouch for ([`marker_synced_through`]; 0:
    /// none).
    pub(crate) synced_through: u64,
    /// The seal note first in the segment (only one there counts: where the writer
    /// puts it).
    pub(crate) seal_note: Option<SealNote>,
    /// Damaged ranges, in file order.
    pub(crate) damage: Vec<DamageFact>,
    pub(crate) end: End,
}

impl SegmentWalk {
    fn new(header: HeaderFact, codec: Codec, file_len: u64) -> SegmentWalk {
        SegmentWalk {
            header,
            codec,
            file_len,
            data_len: 0,
            records: 0,
            markers: 0,
            synced_through: 0,
            seal_note: None,
            damage: Vec::new(),
            end: End::Reached,
        }
    }

    /// The header's version, when it passed its checks.
    pub(crate) fn version(&self) -> Option<u32> {
        match self.header {
            HeaderFact::Valid(h) | HeaderFact::Unsupported(h) => Some(h.version),
            _ => None,
        }
    }

    /// Notes one valid record at `at` (a sync marker or the seal note), or hands a
    /// data record to `on_record`.
    fn take(
        &mut self,
        sequence: u64,
        at: u64,
        record: &Decoded<'_>,
        on_record: &mut impl FnMut(u64, &Decoded<'_>),
    ) {
        if let Some(value) = record.synced_through() {
            self.markers += 1;
            self.synced_through = self
                .synced_through
                .max(marker_synced_through(value, sequence));
        } else if let Some(note) = record.seal_note() {
            if at == SEGMENT_HEADER_LEN as u64 {
                self.seal_note = Some(note);
            }
        } else {
            self.records += 1;
            on_record(at, record);
        }
        self.data_len = at + record.len as u64;
    }

    /// Walks `data` (the segment's bytes from file offset `base` on) record by
    /// record, judging each one that fails its checks ([`judge`]); `crash_possible`
    /// is asked at most once.
    fn walk_rest(
        &mut self,
        data: &[u8],
        base: u64,
        judging: &mut Judging<'_, '_>,
        on_record: &mut impl FnMut(u64, &Decoded<'_>),
    ) -> Result<()> {
        let codec = self.codec;
        let at = |p: usize| base + p as u64;
        let mut pos = 0;
        while pos < data.len() {
            let error = match codec.decode(&data[pos..], at(pos)) {
                Ok(record) => {
                    self.take(judging.sequence(), at(pos), &record, on_record);
                    pos += record.len;
                    continue;
                }
                Err(e) => e,
            };
            match judge(codec, data, base, pos, judging.newest(), || judging.ask())? {
                Judgment::FreeSpace => {
                    self.end = End::FreeSpace { at: at(pos) };
                    return Ok(());
                }
                Judgment::TornTail => {
                    let nonzero_end = data[pos..]
                        .iter()
                        .rposition(|&b| b != 0)
                        .map_or(pos, |i| pos + i + 1);
                    self.end = End::TornTail {
                        at: at(pos),
                        nonzero_end: at(nonzero_end),
                        error,
                    };
                    return Ok(());
                }
                Judgment::Damage { next } => {
                    let end = next.unwrap_or(data.len());
                    self.damage.push(DamageFact {
                        at: at(pos),
                        end: at(end),
                        next: next.map(at),
                        error,
                    });
                    pos = end;
                }
            }
        }
        Ok(())
    }
}

/// Whether the segment may hold unsynced bytes, asked at most once per walk: the
/// answer may read every later segment.
enum Judging<'p, 'a> {
    /// Recovery's and `inspect`'s question, for the segment at `place` (header
    /// version `version`).
    Place {
        place: &'p Place<'a>,
        version: Option<u32>,
        answer: Option<bool>,
    },
    /// Reading sync markers only: nothing is judged a torn tail or free space, so
    /// every valid record after damage is found.
    Never { sequence: u64 },
}

impl Judging<'_, '_> {
    fn sequence(&self) -> u64 {
        match self {
            Judging::Place { place, .. } => place.sequence,
            Judging::Never { sequence } => *sequence,
        }
    }

    fn newest(&self) -> bool {
        matches!(self, Judging::Place { place, .. } if place.newest())
    }

    fn ask(&mut self) -> Result<bool> {
        match self {
            Judging::Place {
                place,
                version,
                answer,
            } => match answer {
                Some(known) => Ok(*known),
                None => Ok(*answer.insert(place.crash_possible(*version)?)),
            },
            Judging::Never { .. } => Ok(false),
        }
    }
}

/// Walks one segment (at `place`, its bytes from `source`): its header, then every
/// record, resynchronising over damage. Each valid data record is handed to
/// `on_record` with its file offset; sync markers and the seal note are noted in the
/// result. Reads only.
pub(crate) fn walk_segment(
    source: Source<'_>,
    place: &Place<'_>,
    mut on_record: impl FnMut(u64, &Decoded<'_>),
) -> Result<SegmentWalk> {
    let (file, path, buf) = match source {
        Source::Bytes(data) => return walk_bytes(data, place, &mut on_record),
        Source::File { file, path, buf } => (file, path, buf),
    };
    let reading = |e| WalError::io("reading segment", path, e);
    let file_len = file.metadata().map_err(reading)?.len();
    let mut head = vec![0; SEGMENT_HEADER_LEN.min(file_len as usize)];
    file.read_exact_at(&mut head, 0).map_err(reading)?;
    let Ok(header) = SegmentHeader::decode(&head) else {
        buf.clear();
        buf.resize(file_len as usize, 0);
        file.read_exact_at(buf, 0).map_err(reading)?;
        return walk_bytes(buf, place, &mut on_record);
    };
    let mut walk = start_valid(header, place, file_len);
    if matches!(walk.header, HeaderFact::Unsupported(_)) {
        return Ok(walk);
    }
    let sequence = place.sequence;
    let streamed = stream_records(
        file,
        file_len,
        SEGMENT_HEADER_LEN as u64,
        buf,
        STREAM_CHUNK,
        walk.codec,
        |at, record| walk.take(sequence, at, record, &mut on_record),
    )
    .map_err(reading)?;
    if streamed < file_len {
        buf.clear();
        buf.resize((file_len - streamed) as usize, 0);
        file.read_exact_at(buf, streamed).map_err(reading)?;
        let mut judging = judging(place, walk.version());
        walk.walk_rest(buf, streamed, &mut judging, &mut on_record)?;
    }
    Ok(walk)
}

fn judging<'p, 'a>(place: &'p Place<'a>, version: Option<u32>) -> Judging<'p, 'a> {
    Judging::Place {
        place,
        version,
        answer: None,
    }
}

/// The walk of a segment whose header passed its checks, before its records.
fn start_valid(header: SegmentHeader, place: &Place<'_>, file_len: u64) -> SegmentWalk {
    let codec = codec_of(header.version, header.salt, place.shard, place.sequence);
    if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&header.version) {
        return SegmentWalk::new(HeaderFact::Unsupported(header), codec, file_len);
    }
    let mut walk = SegmentWalk::new(HeaderFact::Valid(header), codec, file_len);
    walk.data_len = SEGMENT_HEADER_LEN as u64;
    walk
}

/// [`walk_segment`] of a segment whose bytes are all in `data`.
fn walk_bytes(
    data: &[u8],
    place: &Place<'_>,
    on_record: &mut impl FnMut(u64, &Decoded<'_>),
) -> Result<SegmentWalk> {
    let file_len = data.len() as u64;
    let mut walk = match SegmentHeader::decode(data) {
        Ok(header) => start_valid(header, place, file_len),
        Err(error) => {
            let (shard, sequence) = (place.shard, place.sequence);
            let judged = judge_header(data, place.salt, shard, sequence, || {
                place.crash_possible(None)
            })?;
            let HeaderJudgment::Damaged { found } = judged else {
                let codec = file_codec(data, place.salt, shard, sequence);
                return Ok(SegmentWalk::new(HeaderFact::Lost(error), codec, file_len));
            };
            let found = found.map(|(codec, at)| Found {
                codec,
                at: at as u64,
                timestamp_us: codec
                    .decode(&data[at..], at as u64)
                    .map_or(0, |r| r.timestamp_us),
            });
            let codec = found.map_or(file_codec(data, place.salt, shard, sequence), |f| f.codec);
            let mut walk = SegmentWalk::new(HeaderFact::Damaged { error, found }, codec, file_len);
            if data.len() <= SEGMENT_HEADER_LEN {
                return Ok(walk);
            }
            walk.data_len = SEGMENT_HEADER_LEN as u64;
            walk
        }
    };
    if matches!(walk.header, HeaderFact::Unsupported(_)) {
        return Ok(walk);
    }
    let rest = &data[SEGMENT_HEADER_LEN.min(data.len())..];
    let mut judging = judging(place, walk.version());
    walk.walk_rest(rest, SEGMENT_HEADER_LEN as u64, &mut judging, on_record)?;
    Ok(walk)
}

/// A valid header that names another shard or sequence than its file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "header says shard {} segment {}, but the file is shard {shard} segment {sequence}",
    header.shard,
    header.sequence
)]
pub(crate) struct IdentityMismatch {
    pub(crate) header: SegmentHeader,
    pub(crate) shard: u32,
    pub(crate) sequence: u64,
}

/// Whether a valid `header` names another shard or sequence than the file's (at
/// `place`).
pub(crate) fn identity_mismatch(
    header: &SegmentHeader,
    place: &Place<'_>,
) -> Option<IdentityMismatch> {
    (header.shard != place.shard || header.sequence != place.sequence).then_some(IdentityMismatch {
        header: *header,
        shard: place.shard,
        sequence: place.sequence,
    })
}

/// What is wrong with the salt of a valid header of format version 4 or later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SaltProblem {
    /// It is not the manifest's: the segment belongs to another WAL.
    #[error(
        "the segment header's salt {own:#010x} is not the manifest's {manifest:#010x}: the segment belongs to another WAL"
    )]
    Foreign { own: u32, manifest: u32 },
    /// The manifest predates format version 4 and has no salt.
    #[error("a segment of format version 4 in a WAL whose manifest predates it")]
    ManifestPredates,
}

/// A version-4 segment header must carry the manifest's `salt`: one that does not
/// belongs to another WAL (and one older than version 4 needs none).
pub(crate) fn salt_problem(header: &SegmentHeader, salt: Option<u32>) -> Option<SaltProblem> {
    salt_problem_of(header.version, header.salt, salt)
}

/// [`salt_problem`] of a header of format `version` carrying salt `own`.
pub(crate) fn salt_problem_of(version: u32, own: u32, salt: Option<u32>) -> Option<SaltProblem> {
    use crate::format::segment_header::BOUND_VERSION;
    match salt {
        _ if version < BOUND_VERSION => None,
        Some(manifest) if manifest == own => None,
        Some(manifest) => Some(SaltProblem::Foreign { own, manifest }),
        None => Some(SaltProblem::ManifestPredates),
    }
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

/// The highest segment that the valid sync markers in the files `later` of shard
/// `shard` vouch for (0: none); `salt` is the manifest's. Markers past damage count
/// too: a marker is written only after the fsync it reports has returned, so a valid
/// one anywhere is proof. Each file is read by [`file_codec`], whatever its header
/// says otherwise.
pub(crate) fn synced_through_in_files(
    later: &[PathBuf],
    salt: Option<u32>,
    shard: u32,
) -> Result<u64> {
    let mut synced_through = 0;
    for path in later {
        let own = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(parse_segment_file_name)
            .unwrap_or(0);
        let data = read_whole(path)?;
        let codec = file_codec(&data, salt, shard, own);
        let mut walk = SegmentWalk::new(HeaderFact::Lost(HeaderError::Short), codec, 0);
        let rest = &data[SEGMENT_HEADER_LEN.min(data.len())..];
        let mut never = Judging::Never { sequence: own };
        walk.walk_rest(rest, SEGMENT_HEADER_LEN as u64, &mut never, &mut |_, _| {})?;
        synced_through = synced_through.max(walk.synced_through);
    }
    Ok(synced_through)
}

/// The whole file at `path`, read-only.
pub(crate) fn read_whole(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let mut data = Vec::new();
    open_file(path, How::Read, "opening segment")?
        .read_to_end(&mut data)
        .map_err(|e| WalError::io("reading segment", path, e))?;
    Ok(data)
}

#[cfg(all(test, not(loom)))]
#[path = "walk_tests.rs"]
mod tests;
