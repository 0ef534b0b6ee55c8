//! What recovery changed or skipped, for operators.

use std::path::PathBuf;

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
