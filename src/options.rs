//! [`WalOptions`]: every knob, its default and its valid range.

use crate::error::{Result, WalError};
use crate::format::record::{MARKER_LEN, SEAL_NOTE_LEN};
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use std::time::Duration;

/// Largest shard count: shard directories are named `shard-NNN`.
pub const MAX_SHARDS: usize = crate::format::names::MAX_SHARDS;

/// Largest `segments`.
pub const MAX_SEGMENTS: usize = 1_000_000;

/// Smallest `max_segment_size`: a segment header, the seal note a segment starts
/// with and one sync marker.
pub const MIN_SEGMENT_SIZE: u64 = (SEGMENT_HEADER_LEN + SEAL_NOTE_LEN + MARKER_LEN) as u64;

/// Largest `max_segment_size`: index offsets and lengths are 32-bit, so no segment
/// file may grow past `u32::MAX` bytes.
pub const MAX_SEGMENT_SIZE: u64 = u32::MAX as u64;

/// Largest `channel_capacity` (2^20 requests). A queue holds memory only for the
/// requests in it, never for its capacity.
pub const MAX_CHANNEL_CAPACITY: usize = 1 << 20;

/// Largest `max_batch` (2^20 requests).
pub const MAX_BATCH: usize = 1 << 20;

/// Largest `max_key_size`: 16 MiB.
pub const MAX_KEY_SIZE: usize = 16 * 1024 * 1024;

/// Largest `max_record_size`: 1 GiB.
pub const MAX_RECORD_SIZE: usize = 1024 * 1024 * 1024;

/// Largest `read_cache_bytes`: 1 TiB (the cache allocates only the blocks it
/// holds, so the bound is a sanity limit, not a reservation).
pub const MAX_READ_CACHE_BYTES: u64 = 1 << 40;

/// What recovery does with damaged bytes found when a WAL is opened.
///
/// A torn tail (an incomplete or checksum-failing record at the very end of the
/// newest segment, with nothing valid after it) is always truncated: that is what a
/// crash in the middle of a write leaves, and it was never acknowledged as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RecoveryMode {
    /// Damage anywhere other than the torn tail (a failing record with valid records
    /// after it, a damaged header over valid records, a hole: a durable segment
    /// missing or cut short) fails `Wal::new` with [`WalError::Corruption`] naming
    /// the file and offset. Nothing in the damaged shard is modified (other shards,
    /// recovered in parallel, may already have cut their torn tails, as any later
    /// open would).
    #[default]
    Strict,
    /// Damaged records are skipped (up to the next record whose checksum holds), a
    /// damaged header is skipped and the records after it kept (a segment in which
    /// nothing verifies is ignored), and holes are opened over; what was skipped is
    /// listed in [`Wal::recovery_report`](crate::Wal::recovery_report) (`skipped`,
    /// `holes`). Every record that verifies is kept. Use it to salvage a WAL that
    /// `Strict` refuses.
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
    /// How long records are kept before `compact` may drop them. Default 7 days;
    /// any duration up to `Duration::MAX` (anything from about 584,000 years on,
    /// `Duration::MAX` included, keeps records for ever), and at least 1 ms ×
    /// `segments`.
    ///
    /// A record whose timestamp lies ahead of the clock (a clock that stepped back,
    /// or files written on a machine whose clock was fast) counts as written when
    /// this process first saw it: it expires at most `entry_retention` after the
    /// open (or compaction) that found it in the future. See `docs/ARCHITECTURE.md`,
    /// "Rotation and retention".
    pub entry_retention: Duration,
    /// Segments per retention period: a shard's active segment is sealed once it is
    /// `entry_retention / segments` old. Default 10; 1 to [`MAX_SEGMENTS`]
    /// (1,000,000).
    ///
    /// A segment whose creation time lies ahead of the clock is due at once: the
    /// next write to it, or the next compaction if it holds records, seals it and
    /// starts a segment dated by the clock as it is now.
    pub segments: usize,
    /// Number of shards (actor threads). Default: the machine's available
    /// parallelism; 1 to 1000. Used when the WAL is created; an existing WAL keeps
    /// the count stored in its manifest (see `docs/ARCHITECTURE.md`). A WAL written by
    /// one thread that waits for each durable append is often faster with 1: its
    /// appends then always find their shard's writer awake.
    pub shards: usize,
    /// Rotation threshold in bytes. Default 64 MiB; [`MIN_SEGMENT_SIZE`] (a segment
    /// header, a seal note and a sync marker) to [`MAX_SEGMENT_SIZE`]
    /// (4 GiB − 1).
    ///
    /// A segment that already holds a record is sealed before a record (or sync
    /// marker) would take it past this size, so segments of records smaller than the
    /// threshold stay within it. A record too large for that goes into a fresh
    /// segment, alone: such a segment ends past the threshold, with that one record.
    /// A batch is split across segments record by record. Whatever this value, a
    /// segment file never grows past `u32::MAX` bytes (one maximal record, 16 MiB of
    /// key and 1 GiB of value, fits a fresh segment with room to spare).
    pub max_segment_size: u64,
    /// Requests each shard's queue holds before appenders block (backpressure).
    /// Default 4096; 1 to [`MAX_CHANNEL_CAPACITY`] (2^20). The queue allocates as
    /// it fills, not for its capacity up front.
    pub channel_capacity: usize,
    /// Most requests one shard writes in one batch (one write call, one fsync).
    /// Default 1024; 1 to [`MAX_BATCH`] (2^20).
    pub max_batch: usize,
    /// Longest key accepted, in bytes. Default 64 KiB; 1 to [`MAX_KEY_SIZE`]
    /// (16 MiB).
    pub max_key_size: usize,
    /// Largest value accepted, in bytes. Default 16 MiB; 1 to [`MAX_RECORD_SIZE`]
    /// (1 GiB).
    pub max_record_size: usize,
    /// What recovery does with damage. Default [`RecoveryMode::Strict`].
    pub recovery_mode: RecoveryMode,
    /// Bytes of 64 KiB segment blocks kept in memory for reads, split evenly across
    /// shards. Default 64 MiB; 0 to [`MAX_READ_CACHE_BYTES`] (1 TiB; the cache
    /// allocates only the blocks it holds). 0 (or less than one block per shard)
    /// turns the cache off and every record is read with its own `pread` (see
    /// `docs/ARCHITECTURE.md`).
    pub read_cache_bytes: usize,
    /// Fast reopen after a clean close. Default `false` (either value is valid). When set, `close` writes
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
            file_mode: crate::io::owned::DEFAULT_FILE_MODE,
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

    /// Checks every field against its documented range; the error names the field.
    pub fn validate(&self) -> Result<()> {
        if self.entry_retention.is_zero() {
            return Err(WalError::invalid(
                "entry_retention",
                "must be greater than zero",
            ));
        }
        within("segments", self.segments, 1, MAX_SEGMENTS, "")?;
        if self.segment_duration() < Duration::from_millis(1) {
            return Err(WalError::invalid(
                "entry_retention",
                format!(
                    "{:?} split into {} segments gives segments shorter than 1 ms",
                    self.entry_retention, self.segments
                ),
            ));
        }
        within("shards", self.shards, 1, MAX_SHARDS, "")?;
        within(
            "max_segment_size",
            self.max_segment_size,
            MIN_SEGMENT_SIZE,
            MAX_SEGMENT_SIZE,
            " (a segment header, a seal note and a sync marker, up to the 32-bit offsets of the index)",
        )?;
        within(
            "channel_capacity",
            self.channel_capacity,
            1,
            MAX_CHANNEL_CAPACITY,
            "",
        )?;
        within("max_batch", self.max_batch, 1, MAX_BATCH, "")?;
        within_named(
            "max_key_size",
            self.max_key_size,
            1,
            MAX_KEY_SIZE,
            "1..=16 MiB",
        )?;
        within_named(
            "max_record_size",
            self.max_record_size,
            1,
            MAX_RECORD_SIZE,
            "1..=1 GiB",
        )?;
        if self.file_mode & !0o666 != 0 || self.file_mode & 0o600 != 0o600 {
            return Err(WalError::invalid(
                "file_mode",
                format!(
                    "{:#o} is not a mode of 0o600..=0o666 (owner read and write, no execute bits, nothing outside 0o777)",
                    self.file_mode
                ),
            ));
        }
        within(
            "read_cache_bytes",
            self.read_cache_bytes as u64,
            0,
            MAX_READ_CACHE_BYTES,
            "",
        )?;
        Ok(())
    }
}

/// `Err` naming `option` unless `lo <= value <= hi`; the error shows the range as
/// `lo..=hi` followed by `why`.
fn within<T>(option: &'static str, value: T, lo: T, hi: T, why: &str) -> Result<()>
where
    T: PartialOrd + std::fmt::Display,
{
    let shown = format!("{lo}..={hi}{why}");
    within_named(option, value, lo, hi, shown)
}

/// Like [`within`], with the range shown as `shown`.
fn within_named<T>(
    option: &'static str,
    value: T,
    lo: T,
    hi: T,
    shown: impl std::fmt::Display,
) -> Result<()>
where
    T: PartialOrd + std::fmt::Display,
{
    if value < lo || value > hi {
        return Err(WalError::invalid(
            option,
            format!("{value} is outside {shown}"),
        ));
    }
    Ok(())
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
    fn small_rotation_thresholds_need_no_other_limit_lowered() {
        for size in [
            MIN_SEGMENT_SIZE,
            4096,
            64 * 1024,
            1024 * 1024,
            MAX_SEGMENT_SIZE,
        ] {
            let o = WalOptions::default().with_max_segment_size(size);
            assert!(o.validate().is_ok(), "{size}");
        }
        let widest = WalOptions::default()
            .with_max_key_size(MAX_KEY_SIZE)
            .with_max_record_size(MAX_RECORD_SIZE)
            .with_max_segment_size(MIN_SEGMENT_SIZE)
            .with_retention(Duration::MAX)
            .with_segments(MAX_SEGMENTS);
        assert!(widest.validate().is_ok());
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
                WalOptions::default().with_max_segment_size(MIN_SEGMENT_SIZE - 1),
                "max_segment_size",
            ),
            (
                WalOptions::default().with_segments(MAX_SEGMENTS + 1),
                "segments",
            ),
            (
                WalOptions::default().with_channel_capacity(MAX_CHANNEL_CAPACITY + 1),
                "channel_capacity",
            ),
            (
                WalOptions::default().with_max_batch(MAX_BATCH + 1),
                "max_batch",
            ),
            (
                WalOptions::default().with_max_key_size(MAX_KEY_SIZE + 1),
                "max_key_size",
            ),
            (
                WalOptions::default().with_max_record_size(MAX_RECORD_SIZE + 1),
                "max_record_size",
            ),
            (
                WalOptions::default().with_read_cache_bytes(usize::MAX),
                "read_cache_bytes",
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
