//! Power cuts at every point of a run, against the real recovery.
//!
//! `kill -9` keeps the page cache, so the crash loop never sees what a power cut
//! leaves: written pages that never reached the disk, lost out of order, and file
//! creations or removals whose directory was not synced yet. Here a WAL runs over the
//! in-memory store, which records every call that takes effect (`storage::Op`). For a
//! cut after any prefix of that log, [`disk_after_cut`] builds a state a disk could
//! hold: every byte a successful `fdatasync`/`fsync` covered; each 4 KiB page written
//! since either lost, or as it was after the last or some earlier write since (write-
//! back takes pages at any moment, in any order); as the length, the synced one or any
//! the file had since; a file created or removed since its directory's last fsync
//! either way. That state is written to a real directory and opened with [`Wal::new`]
//! in `RecoveryMode::Strict`, which must succeed and return, per key, a prefix of the
//! key's appends that holds every append acknowledged as durable before the cut, per
//! shard a prefix of the shard's appends (guarantees 3 and 4); and what it recovered,
//! plus a durable append per key, must come back unchanged from a clean close and a
//! second open. Odd seeds make seals slow and durable appends rare, so segments
//! rotate while earlier seals are pending. A second test also tears pages at a
//! 512-byte sector, where `Strict` may instead refuse a state as corruption (see
//! that test). A third test runs `compact` now and then with a retention of 2 ms, so
//! cuts also fall among its unlinks: there every append in a segment whose unlink
//! came before the cut may be gone, but only as the oldest of its shard's appends (per
//! shard, what is recovered is one unbroken run of the shard's appends). A fourth
//! chains two runs: the first ends in a kill (page cache kept) or a power cut, the
//! real recovery reopens what that leaves, a second run writes on over the memory
//! store, and power cuts fall in it, where the first run's unsynced pages can still
//! be lost; the second run's durable answers must have covered the records the
//! reopen found. Recovery's own cuts, fsyncs and removals enter the log as it makes
//! them (`storage::observed`, whose functions make each call and log it, so the log
//! cannot keep a call the code no longer makes), and must explain every change it
//! made to the files; power cuts also fall before and after each of them.
//! Every log is also checked call by call ([`check_markers`]): a sync marker may
//! only vouch for segments whose bytes and names are synced. Two more tests
//! (`lifecycle.rs`) run the open and the closes over the memory store too, so cuts
//! also fall during the manifest's write and upgrade and the index checkpoints'
//! writes and removal (`named.rs` models those files and the directories): the
//! reopen must find the old file or the new one whole under each name.

mod cases;
mod chained;
mod checks;
mod disk;
mod lifecycle;
mod named;
mod run;

use checks::*;
use disk::*;
use run::*;

use crate::format::names::{segment_file_name, shard_dir_name};
use crate::format::record::{marker_synced_through, Codec};
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use crate::hash::shard_for;
use crate::testing::mem_storage::{FileId, MemStorage, Op, OpLog};
use crate::{RecoveryMode, Wal, WalOptions};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
