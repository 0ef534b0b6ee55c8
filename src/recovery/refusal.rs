//! Why recovery refuses a shard, typed: each becomes the reason of a
//! [`WalError::Corruption`] or [`WalError::ManifestMismatch`], word for word as
//! before.

use super::walk::{IdentityMismatch, SaltProblem};
use crate::error::WalError;
use crate::format::record::DecodeError;
use std::path::{Path, PathBuf};

/// Why recovery under `RecoveryMode::Strict` refuses a segment (or one missing).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error(
        "segment {missing} is missing between segments {before} and {after}, and a sync marker shows it was durable"
    )]
    MissingSegment {
        missing: u64,
        before: u64,
        after: u64,
    },
    #[error(
        "the segment ends here, but the seal note in {} says it was sealed {missing} bytes longer, and a sync marker shows it was durable",
        next.display()
    )]
    Shortened { next: PathBuf, missing: u64 },
    #[error("{reason}")]
    DamagedHeader { reason: &'static str },
    #[error("{reason}, and valid records follow at offset {at}")]
    DamagedHeaderRecordsFollow { reason: &'static str, at: u64 },
    #[error("{}, and a valid record follows at offset {next}", error.reason())]
    RecordFollows { error: DecodeError, next: u64 },
    #[error("{} in a segment a sync marker shows durable", error.reason())]
    Durable { error: DecodeError },
}

impl Refusal {
    /// The error refusing the file at `path` with this reason, at `offset`.
    pub(crate) fn at(self, path: &Path, offset: u64) -> WalError {
        WalError::corruption(path, offset, self.to_string())
    }
}

/// Why a segment's header says it belongs elsewhere.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Mismatch {
    #[error("segment {0}")]
    Identity(IdentityMismatch),
    #[error("{0}")]
    Salt(SaltProblem),
}

impl Mismatch {
    /// The error refusing the file at `path` for this mismatch.
    pub(crate) fn at(self, path: &Path) -> WalError {
        WalError::ManifestMismatch {
            path: path.to_path_buf(),
            reason: self.to_string(),
        }
    }
}
