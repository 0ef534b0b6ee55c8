//! Opening a shard's segments after a restart or a crash: the scan (`shard`), the
//! rules it judges by (`rules`, shared with `inspect`), and the report (`report`).

mod report;
mod rules;
mod shard;

pub use report::RecoveryReport;
pub(crate) use rules::*;
#[cfg(test)]
pub(crate) use shard::{list_segments, scan_shard};
pub(crate) use shard::{read_shard_dir, recover_shard, RecoveredShard};
