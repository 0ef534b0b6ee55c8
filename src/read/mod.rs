//! Reading a key's records from any thread: positional reads through a block cache.

pub(crate) mod cache;
pub(crate) mod records;
