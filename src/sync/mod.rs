//! The concurrency shim (std or loom) and the hand-off primitives built on it.

pub(crate) mod channel;
pub(crate) mod completion;
mod shim;

pub(crate) use shim::*;
