//! The file boundary: the [`Storage`] and [`SegmentIo`] traits, the real-file
//! implementation, and the checked opens every file goes through.

mod file;
pub(crate) mod owned;
mod storage;

pub(crate) use file::{observed, shard_dir_name, sync_directory, FileSegment, FsStorage};
pub(crate) use storage::{SegmentIo, Storage};
