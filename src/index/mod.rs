//! The per-shard key index: key -> record locations, read by any thread.

pub(crate) mod checkpoint_data;
mod shard_index;

pub(crate) use shard_index::*;
