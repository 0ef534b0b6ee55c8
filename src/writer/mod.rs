//! A shard's writer: the actor's batch loop, the segments it appends to, and the
//! syncer that makes sealed segments durable off the actor's path.

pub(crate) mod active_segment;
pub(crate) mod actor;
pub(crate) mod checkpoint_io;
pub(crate) mod syncer;
