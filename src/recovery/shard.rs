//! A recovered shard, and how recovery starts: the shard directory's listing, then
//! its index checkpoint (`from_checkpoint.rs`) or a scan of its segments
//! (`scan.rs`).

use super::from_checkpoint::from_checkpoint;
use super::report::RecoveryReport;
use super::scan::scan_shard;
use crate::error::{Result, WalError};
use crate::format::checkpoint;
use crate::format::segment_header::parse_segment_file_name;
use crate::index::ShardIndex;
use crate::options::RecoveryMode;
use crate::writer::active_segment::Segment;
use std::path::{Path, PathBuf};

/// A recovered shard, ready for its actor.
pub(crate) struct RecoveredShard {
    pub(crate) index: ShardIndex,
    pub(crate) segments: Vec<Segment>,
    pub(crate) next_sequence: u64,
    pub(crate) report: RecoveryReport,
    /// Every segment up to this sequence is durable, as a valid sync marker in a
    /// segment that stays says (0: none). The actor takes it as vouched for on disk.
    pub(crate) synced_through: u64,
    /// Damage was skipped or a hole opened over (`RecoveryMode::SkipCorrupted`): the
    /// shard's next close writes no index checkpoint, so that a later open still
    /// finds the damage.
    pub(crate) damaged: bool,
    /// The sequence number the shard's next record gets: one past the highest found
    /// (and past the count of records of format versions 1 to 3, which carry none).
    pub(crate) next_seq: u64,
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
            segments: Vec::new(),
            next_sequence: 1,
            report: RecoveryReport::default(),
            synced_through: 0,
            damaged: false,
            next_seq: 1,
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
            Err(reason) => ignored = Some(reason.to_string()),
        }
    }
    let mut out = scan_shard(&files, shard, mode, salt)?;
    out.report
        .checkpoints_ignored
        .extend(ignored.map(|reason| (dir.join(checkpoint::CHECKPOINT_FILE), reason)));
    Ok(out)
}
