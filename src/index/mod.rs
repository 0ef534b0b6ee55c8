//! The per-shard key index: key -> record locations, read by any thread.

mod shard_index;

pub(crate) use shard_index::*;
