//! A shard as the rest of the crate sees it: the handle side of its queue, the state
//! its actor shares with every handle, and every waiting policy of the crate.

mod handle;
mod shared;
pub(crate) mod wait;

pub(crate) use handle::{Request, ShardHandle};
pub(crate) use shared::{Counters, RetiredSegment, ShardShared};
