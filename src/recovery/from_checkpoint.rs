//! Recovering a shard from its index checkpoint (`format/checkpoint.rs`), written
//! by the last clean close, instead of reading its records.

use super::refusal::Mismatch;
use super::shard::RecoveredShard;
use super::walk::salt_problem_of;
use crate::error::Result;
use crate::format::checkpoint;
use crate::format::segment_header::{codec_of, SegmentHeader, SEGMENT_HEADER_LEN};
use crate::io::FileSegment;
use crate::writer::active_segment::Segment;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// Why an index checkpoint is not used (the shard is then scanned).
#[derive(Debug, thiserror::Error)]
pub(super) enum Unused {
    /// It does not describe the segment files as they are (`checkpoint::describes`).
    #[error("{0}")]
    Changed(String),
    /// A segment file it lists has no valid header.
    #[error("{} has no valid header", .0.display())]
    NoValidHeader(PathBuf),
}

/// A shard as its checkpoint describes it, if `files` are the checkpoint's segment
/// files, unchanged since it was written (else the reason they are not).
pub(super) fn from_checkpoint(
    cp: crate::index::checkpoint_data::Loaded,
    files: &[(u64, PathBuf)],
    shard: u32,
    salt: Option<u32>,
) -> Result<std::result::Result<RecoveredShard, Unused>> {
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
        return Ok(Err(Unused::Changed(reason)));
    }
    // `describes` checked every header; a version-4 one must carry this WAL's salt.
    let mut segment_codecs = Vec::with_capacity(codecs.len());
    for ((sequence, path), head) in files.iter().zip(&codecs) {
        let Some((version, own_salt)) = *head else {
            return Ok(Err(Unused::NoValidHeader(path.clone())));
        };
        if let Some(problem) = salt_problem_of(version, own_salt, salt) {
            return Err(Mismatch::Salt(problem).at(path));
        }
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
