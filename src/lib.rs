//! # nano-wal
//!
//! An embedded, append-only, key-indexed write-ahead log for many threads.
//!
//! One [`Wal`] handle is `Clone + Send + Sync`; share it across threads with no outer
//! lock. Keys are routed by a stable hash to shards, each owned by one writer thread
//! that batches appends into one write and durable appends into one `fdatasync`
//! (group commit). Records are read back by key, in append order, from any thread.
//!
//! ```
//! use bytes::Bytes;
//! use nano_wal::{Wal, WalOptions};
//!
//! # fn main() -> Result<(), nano_wal::WalError> {
//! let dir = tempfile::tempdir().unwrap();
//! let wal = Wal::new(dir.path().join("wal"), WalOptions::default().with_shards(2))?;
//! wal.append_entry(b"user:1", Bytes::from("created"), false)?; // visible, not yet durable
//! wal.log_entry(b"user:1", Bytes::from("renamed"))?;           // durable when it returns
//! let records: Vec<Bytes> = wal.enumerate_records(b"user:1")?.collect();
//! assert_eq!(records, vec![Bytes::from("created"), Bytes::from("renamed")]);
//! let keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
//! assert_eq!(keys, vec![b"user:1".to_vec()]);
//! wal.close()?; // keeps the files; `shutdown()` would delete them
//! # Ok(())
//! # }
//! ```
//!
//! # Guarantees
//!
//! 1. **Visibility**: once an append returns Ok, every later `enumerate_records` of
//!    its key, from any thread, returns it.
//! 2. **Per-key order**: a key's records come back in the order their appends returned.
//! 3. **Durability**: once `log_entry`, a durable append or batch, or `sync` returns
//!    Ok, the records survive a process kill and a power loss.
//! 4. **Crash recovery**: reopening yields, per shard, a prefix of what was written,
//!    including every durable-acknowledged record; a torn tail is truncated, other
//!    damage is reported with file and offset.
//! 5. **Exclusion**: a second open of the same directory fails with
//!    [`WalError::Locked`].
//! 6. **Bad input**: over-long keys or records and invalid options are refused with a
//!    specific error; nothing is written and the WAL keeps working.
//!
//! # Layout
//!
//! The folders follow the data path (see `docs/ARCHITECTURE.md`):
//! - `wal` (router and API) -> `shard` (queue gate, read barrier, waiting) ->
//!   `writer` (the actor's batching, group commit, rotation, sealing, retirement) ->
//!   `format` (the bytes) and `io` (the file boundary).
//! - `index` (key -> locations, read by any thread), `read` (positional reads, cache).
//! - `open` (directory, lock, manifest), `recovery` (the walker and its rules),
//!   `compaction` (retention, rayon), `inspect` (public: the operator tools' scan).
//! - `sync`: the std/loom shim, the channel and completions.
//! - `options`, `error`, `stats`, `hash`: configuration, errors, figures, routing.
//! - `testing`: in-memory storage, fault hooks, power-cut and loom models, fuzzing;
//!   compiled only for tests, loom or the `fuzzing` feature.
#![deny(missing_docs)]
// Input or I/O can reach any path of the library, so it never unwraps; tests may
// (Cargo's `[lints]` table cannot tell the library from its tests: `Cargo.toml`).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(unreachable_pub, missing_debug_implementations)]

mod compaction;
mod error;
mod format;
mod hash;
mod index;
pub mod inspect;
mod io;
mod open;
mod options;
mod read;
mod recovery;
mod shard;
mod stats;
mod sync;
#[cfg(any(test, loom, feature = "fuzzing"))]
mod testing;
mod wal;
mod writer;

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use testing::fuzzing;
#[cfg(loom)]
#[doc(hidden)]
pub use testing::model;

pub use compaction::CompactionReport;
pub use error::{Result, WalError};
pub use options::{
    RecoveryMode, WalOptions, MAX_BATCH, MAX_CHANNEL_CAPACITY, MAX_KEY_SIZE, MAX_READ_CACHE_BYTES,
    MAX_RECORD_SIZE, MAX_SEGMENTS, MAX_SEGMENT_SIZE, MAX_SHARDS, MIN_SEGMENT_SIZE,
};
pub use recovery::RecoveryReport;
pub use stats::{ShardStats, WalStats};
pub use wal::{Keys, Records, Wal};
