//! A shard's writer: the actor's batch loop, the batch it encodes, the segments it
//! appends to, retention's install step, and the syncer that makes sealed segments
//! durable off the actor's path.

pub(crate) mod active_segment;
pub(crate) mod actor;
mod batch;
pub(crate) mod checkpoint_io;
mod retire;
pub(crate) mod syncer;
