//! The per-shard key index: key -> record locations, read by any thread, and the
//! frozen form of locations still in a loaded index checkpoint.

pub(crate) mod checkpoint_data;
pub(crate) mod frozen;
mod key_map;
mod location;
mod shard_index;

pub(crate) use frozen::Run;
pub(crate) use location::{stage, KeyHasher, Location, Staged};
pub(crate) use shard_index::{PublishedLen, SegmentEntry, ShardIndex, Snapshot};
