//! [`WalOptions`]: every knob, its default and its valid range.

use crate::error::{Result, WalError};
use crate::record::{RECORD_HEADER_LEN, SEAL_NOTE_LEN};
use crate::segment::SEGMENT_HEADER_LEN;
use std::time::Duration;

/// Largest shard count: shard directories are named `shard-NNN`.
pub const MAX_SHARDS: usize = 1000;

/// What recovery does with damaged bytes found when a WAL is opened.
///
/// A torn tail (an incomplete or checksum-failing record at the very end of the
/// newest segment, with nothing valid after it) is always truncated: that is what a
/// crash in the middle of a write leaves, and it was never acknowledged as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Damage anywhere other than the torn tail fails `Wal::new` with
    /// [`WalError::Corruption`] naming the file and offset. Nothing in the damaged
    /// shard is modified (other shards, recovered in parallel, may already have cut
    /// their torn tails, as any later open would).
    #[default]
    Strict,
    /// Damaged records are skipped (up to the next record whose checksum holds), and
    /// segments whose header is damaged are ignored; what was skipped is listed in
    /// [`Wal::recovery_report`](crate::Wal::recovery_report). Use it to salvage a
    /// WAL that `Strict` refuses.
    SkipCorrupted,
}

/// Options for [`Wal::new`](crate::Wal::new).
///
/// All fields are public, so struct-update syntax works:
///
/// ```
/// use nano_wal::WalOptions;
/// use std::time::Duration;
///
/// let options = WalOptions {
///     entry_retention: Duration::from_secs(60 * 60 * 24),
///     segments: 24,
///     ..WalOptions::default()
/// };
/// assert!(options.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalOptions {
    /// How long records are kept before `compact` may drop them.
    /// Default 7 days; must be at least 1 ms × `segments`.
    pub entry_retention: Duration,
    /// Segments per retention period: a shard's active segment is sealed once it is
    /// `entry_retention / segments` old. Default 10; at least 1.
    pub segments: usize,
    /// Number of shards (actor threads). Default: the machine's available
    /// parallelism; 1 to 1000. Used when the WAL is created; an existing WAL keeps
    /// the count stored in its manifest (see `docs/ARCHITECTURE.md`). A WAL written by
    /// one thread that waits for each durable append is often faster with 1: its
    /// appends then always find their shard's writer awake (`docs/PERFORMANCE-LOG.md`, W3).
    pub shards: usize,
    /// A segment is sealed before it would grow past this many bytes.
    /// Default 64 MiB; at most 4 GiB − 1, and at least one maximal record plus headers.
    pub max_segment_size: u64,
    /// Requests each shard's queue holds before appenders block (backpressure).
    /// Default 4096; at least 1.
    pub channel_capacity: usize,
    /// Most requests one shard writes in one batch (one write call, one fsync).
    /// Default 1024; at least 1.
    pub max_batch: usize,
    /// Longest key accepted, in bytes. Default 64 KiB; 1 to 16 MiB.
    pub max_key_size: usize,
    /// Largest value accepted, in bytes. Default 16 MiB; 1 to 1 GiB.
    pub max_record_size: usize,
    /// What recovery does with damage. Default [`RecoveryMode::Strict`].
    pub recovery_mode: RecoveryMode,
    /// Bytes of 64 KiB segment blocks kept in memory for reads, split evenly across
    /// shards. Default 64 MiB; 0 (or less than one block per shard) turns the cache
    /// off and every record is read with its own `pread` (see `docs/ARCHITECTURE.md`).
    pub read_cache_bytes: usize,
    /// Fast reopen after a clean close. Default `false`. When set, `close` writes
    /// each shard's index to `shard-NNN/INDEX`, and the next open with it set loads
    /// that file instead of reading every record, for each shard whose segment files
    /// are exactly as the close left them (same names, lengths, inodes, mtimes and
    /// ctimes, and headers). The cost: damage that appears in those files while the
    /// WAL is closed is reported by the read that reaches it (every read checks its
    /// records' checksums), not by the open, and `RecoveryMode::SkipCorrupted` does
    /// not see it. An open that succeeds removes the file, so after a crash every
    /// shard is scanned as usual. See `docs/FORMAT.md`, "Index checkpoint".
    pub index_checkpoint: bool,
    /// Permission bits of the files the WAL creates (segments, `MANIFEST`, `LOCK`,
    /// index checkpoints). Default `0o600`: a log holds its users' data, so only the
    /// owner may read it. Directories the WAL creates (the WAL directory, if it does
    /// not exist, and `shard-NNN/`) get the same bits plus search (x) wherever read
    /// (r) is set: `0o700` by default, `0o750` for `0o640`. Valid: bits within
    /// `0o666`, owner read and write included (`0o600` to `0o666`); no execute bits.
    /// The process's umask still applies on top (a umask of `0o027` turns `0o666`
    /// into `0o640`). Existing files and directories keep their modes.
    pub file_mode: u32,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            entry_retention: Duration::from_secs(7 * 24 * 60 * 60),
            segments: 10,
            shards: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(4)
                .min(MAX_SHARDS),
            max_segment_size: 64 * 1024 * 1024,
            channel_capacity: 4096,
            max_batch: 1024,
            max_key_size: 64 * 1024,
            max_record_size: 16 * 1024 * 1024,
            recovery_mode: RecoveryMode::Strict,
            read_cache_bytes: 64 * 1024 * 1024,
            index_checkpoint: false,
            file_mode: crate::owned::DEFAULT_FILE_MODE,
        }
    }
}

impl WalOptions {
    /// Sets `entry_retention`.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.entry_retention = retention;
        self
    }
    /// Sets `segments`.
    pub fn with_segments(mut self, segments: usize) -> Self {
        self.segments = segments;
        self
    }
    /// Sets `shards`.
    pub fn with_shards(mut self, shards: usize) -> Self {
        self.shards = shards;
        self
    }
    /// Sets `max_segment_size`.
    pub fn with_max_segment_size(mut self, bytes: u64) -> Self {
        self.max_segment_size = bytes;
        self
    }
    /// Sets `channel_capacity`.
    pub fn with_channel_capacity(mut self, capacity: usize) -> Self {
        self.channel_capacity = capacity;
        self
    }
    /// Sets `read_cache_bytes`.
    pub fn with_read_cache_bytes(mut self, bytes: usize) -> Self {
        self.read_cache_bytes = bytes;
        self
    }

    /// Sets `max_batch`.
    pub fn with_max_batch(mut self, requests: usize) -> Self {
        self.max_batch = requests;
        self
    }
    /// Sets `max_key_size`.
    pub fn with_max_key_size(mut self, bytes: usize) -> Self {
        self.max_key_size = bytes;
        self
    }
    /// Sets `max_record_size`.
    pub fn with_max_record_size(mut self, bytes: usize) -> Self {
        self.max_record_size = bytes;
        self
    }
    /// Sets `index_checkpoint`.
    pub fn with_index_checkpoint(mut self, on: bool) -> Self {
        self.index_checkpoint = on;
        self
    }

    /// Sets `file_mode`.
    pub fn with_file_mode(mut self, mode: u32) -> Self {
        self.file_mode = mode;
        self
    }

    /// Sets `recovery_mode`.
    pub fn with_recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.recovery_mode = mode;
        self
    }

    /// Age at which a shard's active segment is sealed: `entry_retention / segments`.
    pub fn segment_duration(&self) -> Duration {
        let segments = u32::try_from(self.segments).unwrap_or(u32::MAX).max(1);
        self.entry_retention / segments
    }

    /// Checks every field against its documented range.
    pub fn validate(&self) -> Result<()> {
        if self.entry_retention.is_zero() {
            return Err(WalError::invalid(
                "entry_retention",
                "must be greater than zero",
            ));
        }
        if self.segments == 0 {
            return Err(WalError::invalid("segments", "must be at least 1"));
        }
        if self.segment_duration() < Duration::from_millis(1) {
            return Err(WalError::invalid(
                "entry_retention",
                format!(
                    "{:?} split into {} segments gives segments shorter than 1 ms",
                    self.entry_retention, self.segments
                ),
            ));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(WalError::invalid(
                "shards",
                format!("{} is outside 1..={MAX_SHARDS}", self.shards),
            ));
        }
        if self.channel_capacity == 0 {
            return Err(WalError::invalid("channel_capacity", "must be at least 1"));
        }
        if self.max_batch == 0 {
            return Err(WalError::invalid("max_batch", "must be at least 1"));
        }
        if self.max_key_size == 0 || self.max_key_size > 16 * 1024 * 1024 {
            return Err(WalError::invalid(
                "max_key_size",
                format!("{} is outside 1..=16 MiB", self.max_key_size),
            ));
        }
        if self.max_record_size == 0 || self.max_record_size > 1024 * 1024 * 1024 {
            return Err(WalError::invalid(
                "max_record_size",
                format!("{} is outside 1..=1 GiB", self.max_record_size),
            ));
        }
        if self.file_mode & !0o666 != 0 || self.file_mode & 0o600 != 0o600 {
            return Err(WalError::invalid(
                "file_mode",
                format!(
                    "{:#o} is not a mode of 0o600..=0o666 (owner read and write, no execute bits, nothing outside 0o777)",
                    self.file_mode
                ),
            ));
        }
        // A fresh segment holds its header, a seal note, then the record.
        let smallest_segment = (SEGMENT_HEADER_LEN + SEAL_NOTE_LEN + RECORD_HEADER_LEN) as u64
            + self.max_key_size as u64
            + self.max_record_size as u64;
        if self.max_segment_size < smallest_segment || self.max_segment_size > u64::from(u32::MAX) {
            return Err(WalError::invalid(
                "max_segment_size",
                format!(
                    "{} is outside {smallest_segment}..={} (one record of max_key_size + max_record_size must fit after the segment header and a seal note)",
                    self.max_segment_size,
                    u32::MAX
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let o = WalOptions::default();
        assert!(o.validate().is_ok());
        assert_eq!(o.entry_retention, Duration::from_secs(604_800));
        assert_eq!(o.segments, 10);
        assert!(o.shards >= 1);
        assert_eq!(o.file_mode, 0o600);
        for mode in [0o600, 0o640, 0o660, 0o644, 0o666] {
            assert!(
                o.clone().with_file_mode(mode).validate().is_ok(),
                "{mode:o}"
            );
        }
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(WalOptions, &str)> = vec![
            (
                WalOptions::default().with_retention(Duration::ZERO),
                "entry_retention",
            ),
            (WalOptions::default().with_segments(0), "segments"),
            (
                WalOptions::default()
                    .with_retention(Duration::from_micros(10))
                    .with_segments(100),
                "entry_retention",
            ),
            (WalOptions::default().with_shards(0), "shards"),
            (WalOptions::default().with_shards(MAX_SHARDS + 1), "shards"),
            (
                WalOptions::default().with_channel_capacity(0),
                "channel_capacity",
            ),
            (WalOptions::default().with_max_batch(0), "max_batch"),
            (WalOptions::default().with_max_key_size(0), "max_key_size"),
            (
                WalOptions::default().with_max_record_size(0),
                "max_record_size",
            ),
            (
                WalOptions::default().with_max_segment_size(1024),
                "max_segment_size",
            ),
            (
                WalOptions::default().with_max_segment_size(u64::from(u32::MAX) + 1),
                "max_segment_size",
            ),
            (WalOptions::default().with_file_mode(0o400), "file_mode"),
            (WalOptions::default().with_file_mode(0o200), "file_mode"),
            (WalOptions::default().with_file_mode(0o700), "file_mode"),
            (WalOptions::default().with_file_mode(0o4600), "file_mode"),
            (WalOptions::default().with_file_mode(0o1000), "file_mode"),
        ];
        for (options, field) in cases {
            match options.validate() {
                Err(WalError::InvalidOptions { option, .. }) => assert_eq!(option, field),
                other => panic!("{field}: expected InvalidOptions, got {other:?}"),
            }
        }
    }
}
