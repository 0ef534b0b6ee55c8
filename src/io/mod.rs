//! The file boundary: the [`Storage`], [`SegmentIo`] and [`ReadIo`] traits, the
//! real-file implementation, and the checked opens every file goes through.

mod file;
pub(crate) mod owned;
mod storage;

pub(crate) use file::{observed, sync_directory, FileSegment, FsStorage};
pub(crate) use storage::{DirLock, DirSync, Entry, Kind, ReadIo, SegmentIo, Storage, WriteSteps};
// The name moved to `format/names.rs`; recovery, inspect and the syncer still name it here.
pub(crate) use crate::format::names::shard_dir_name;
