//! A shard as the rest of the crate sees it: the handle side of its queue, the state
//! its actor shares with every handle, and how a durable waiter waits.

mod handle;
mod shared;
mod wait;

pub(crate) use handle::{Request, ShardHandle};
pub(crate) use shared::{Counters, RetiredSegment, ShardShared};
#[cfg(test)]
pub(crate) use wait::POLL_BUDGET_MIN;
