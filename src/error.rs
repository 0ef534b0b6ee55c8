//! The one error type of the crate.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in a [`Wal`](crate::Wal).
///
/// Variants are structured: paths, offsets and limits are fields, so callers can
/// match on them. The enum is `Clone` (I/O causes are shared behind an `Arc`) because
/// one failure of a shard is reported to every waiter of the batch it hit.
#[non_exhaustive]
#[derive(Debug, Clone, thiserror::Error)]
pub enum WalError {
    /// An operating-system I/O call failed.
    #[error("I/O error while {op} {path}: {source}")]
    Io {
        /// What the WAL was doing ("writing", "syncing", "opening", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },

    /// Stored bytes failed a check (checksum, magic, length) somewhere other than
    /// the torn tail of the newest segment.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset of the damaged record or header within the file.
        offset: u64,
        /// What check failed.
        reason: String,
    },

    /// A [`WalOptions`](crate::WalOptions) field is out of its valid range.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOptions {
        /// The field name.
        option: &'static str,
        /// Why the value was refused.
        reason: String,
    },

    /// A key longer than `WalOptions::max_key_size`.
    #[error("key of {len} bytes exceeds the limit of {max} bytes")]
    KeyTooLong {
        /// Length of the refused key.
        len: usize,
        /// The configured limit.
        max: usize,
    },

    /// A value larger than `WalOptions::max_record_size`.
    #[error("record of {len} bytes exceeds the limit of {max} bytes")]
    RecordTooLarge {
        /// Length of the refused value.
        len: usize,
        /// The configured limit.
        max: usize,
    },

    /// Another open `Wal` (in this process or another) holds the directory's lock.
    #[error("{path} is locked: the WAL directory is already open elsewhere")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },

    /// The WAL path exists and is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },

    /// A file or directory the WAL did not create sits inside its directory, or one
    /// of the WAL's own names (`LOCK`, `MANIFEST`, a shard directory, a segment, an
    /// index checkpoint) is a symlink, FIFO, socket or device instead of a regular
    /// file or directory.
    #[error("foreign file in the WAL directory: {path}")]
    ForeignFile {
        /// The unexpected entry.
        path: PathBuf,
    },

    /// The manifest, or a segment header, disagrees with the directory or itself.
    #[error("manifest mismatch at {path}: {reason}")]
    ManifestMismatch {
        /// The manifest or segment file.
        path: PathBuf,
        /// What did not match.
        reason: String,
    },

    /// A file was written by a format version this build cannot read.
    #[error("{path} has format version {found}; this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this build writes and reads.
        supported: u32,
    },

    /// An earlier write or fsync on this shard failed. The shard refuses all further
    /// work, because after a failed fsync the kernel may have dropped dirty pages and
    /// nothing written since the last good sync can be trusted to be on disk.
    #[error("shard {shard} is poisoned by an earlier failure: {cause}")]
    Poisoned {
        /// The shard.
        shard: usize,
        /// The failure that poisoned it.
        cause: Arc<WalError>,
    },

    /// The shard's actor thread stopped (it panicked) before answering.
    #[error("shard {shard} stopped unexpectedly")]
    ShardStopped {
        /// The shard.
        shard: usize,
    },

    /// The WAL was closed (by `close`, `shutdown` or dropping the last handle).
    #[error("the WAL is closed")]
    Closed,
}

/// The crate's result type.
pub type Result<T, E = WalError> = std::result::Result<T, E>;

impl WalError {
    /// Wraps an I/O error with what was being done and where.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        WalError::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        WalError::Corruption {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> Self {
        WalError::InvalidOptions {
            option,
            reason: reason.into(),
        }
    }
}
