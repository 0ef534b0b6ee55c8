//! Read-only inspection of a WAL directory: the library side of the operator tools
//! (`nano-wal inspect`, `verify` and `dump`).
//!
//! - [`layout`] reads the manifest and lists the shards and their segment files
//!   (no segment is read).
//! - [`scan`] also reads every segment and checks every checksum: per shard and per
//!   segment it counts records, distinct keys and bytes, finds the time range, and
//!   lists every [`Damage`]. It checks each shard's index checkpoint too
//!   ([`CheckpointCheck`]): whether the next open would load it, and then every
//!   key's locations, which that open reads only when the key is read.
//! - [`SegmentFile::read_records`] returns the valid records of one segment, in file
//!   order, for dumping.
//!
//! **Read-only.** Files are opened read-only, never through a symlink; nothing is ever
//! written, truncated, renamed or removed, and the directory's `LOCK` is **not**
//! taken. So the tools may run next to an open [`Wal`](crate::Wal), in this process
//! or another, but they see whatever is on disk at that moment: the writer may be in
//! the middle of a write, so the last record of a shard's newest segment may appear
//! torn, and retention may remove a segment between listing and reading it (an I/O
//! error). Close the WAL first for an exact picture. Each segment is read whole into
//! memory, one at a time per shard (about `max_segment_size` bytes each, more for a
//! segment holding one larger record).
//!
//! **Classification.** Every segment is walked by recovery's own walk
//! (`recovery::walk_segment`) and each shard's facts are collected as recovery
//! collects them (`recovery::collect_shard`), judged by the same rules; this module
//! only classifies those facts (`classify.rs`), so a report says what the next
//! [`Wal::new`](crate::Wal::new) would do:
//! - In a shard's **newest** segment, a record that fails its checks with nothing
//!   valid after it is a [`DamageKind::TornTail`]: an interrupted write that recovery
//!   truncates. A newest segment whose header is damaged and in which no record
//!   verifies (a crash while it was created) is a torn tail too: recovery removes it.
//! - In the newest segment, zero bytes from some offset to the end of the file are
//!   **free space**: the writer preallocates ahead of its write position and a clean
//!   close truncates it. They are counted in [`SegmentScan::free_len`], not as damage.
//!   In an older (sealed) segment they are [`DamageKind::Corrupt`].
//! - A failing record with a valid record after it, anywhere, is
//!   [`DamageKind::Corrupt`]: `Wal::new` fails under
//!   [`RecoveryMode::Strict`](crate::RecoveryMode::Strict) and skips it under
//!   `SkipCorrupted`. So is [`DamageKind::BadHeader`], and a [`DamageKind::Hole`]
//!   (a durable segment missing or cut short).
//!
//! The records of a segment whose header is damaged (but whose version is readable)
//! are still checked, counted and returned by [`SegmentFile::read_records`], so they
//! can be salvaged; recovery refuses such a segment (`Strict`) or keeps its records
//! (`SkipCorrupted`).

mod checkpoint_check;
mod classify;
mod layout;
mod report;
mod scan;

pub use layout::layout;
pub use report::*;
pub use scan::scan;
