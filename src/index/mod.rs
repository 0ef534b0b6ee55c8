//! The per-shard key index: key -> record locations, read by any thread, and the
//! frozen form of locations still in a loaded index checkpoint.

mod frozen;
mod key_map;
mod location;
mod shard_index;

#[cfg(test)]
pub(crate) use frozen::FROZEN_GROUP_LEN;
pub(crate) use frozen::{Frozen, Run, FROZEN_LOCATION_LEN};
pub(crate) use location::{stage, KeyHasher, Location, Staged};
pub(crate) use shard_index::{PublishedLen, SegmentEntry, ShardIndex, Snapshot};
