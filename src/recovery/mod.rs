//! Opening a shard's segments after a restart or a crash: from its index checkpoint
//! (`from_checkpoint`) or by a scan (`scan`), which walks every segment once
//! (`walk`, `stream`), collects the facts of the whole shard (`facts`), judges them
//! by the rules shared with `inspect` (`rules`), and decides (`segment`, `refusal`).
//! The report says what it changed (`report`).
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
//! included: a value can be a run of zeros): under `RecoveryMode::Strict` it is
//! `WalError::Corruption` naming file and offset, and nothing in the shard is
//! changed; under `RecoveryMode::SkipCorrupted` the damaged bytes are skipped and
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

mod facts;
mod from_checkpoint;
mod refusal;
mod report;
mod rules;
mod scan;
mod segment;
mod shard;
mod stream;
mod walk;

pub(crate) use facts::{collect_shard, ShardFacts};
pub use report::RecoveryReport;
#[cfg(test)]
pub(crate) use scan::scan_shard;
#[cfg(test)]
pub(crate) use shard::list_segments;
pub(crate) use shard::{read_shard_dir, recover_shard, RecoveredShard};
pub(crate) use walk::{
    identity_mismatch, salt_problem, walk_segment, End, HeaderFact, IdentityMismatch, Place,
    SaltProblem, SegmentWalk, Source,
};
