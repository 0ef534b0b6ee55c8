//! [`Wal`]: the router and the public API.
//!
//! A `Wal` is a cheap clone of an `Arc` to the shared state. Each call hashes the key
//! (see `hash.rs`) and talks to that shard only: appends go through the shard's
//! bounded queue, reads go straight to its index and files.

use crate::compaction::{self, CompactionReport};
use crate::error::{Result, WalError};
use crate::hash::shard_for;
use crate::io::{FsStorage, Storage};
use crate::open::DirLock;
use crate::options::WalOptions;
use crate::read::records::read_records;
use crate::recovery::{RecoveredShard, RecoveryReport};
use crate::shard::{Counters, Request, ShardHandle, ShardShared};
use crate::stats::{ShardStats, WalStats};
use crate::sync::channel::bounded;
use crate::sync::completion::completion;
use crate::sync::{lock, Arc, AtomicBool, Mutex, Ordering, ThreadBuilder};
use crate::writer::actor::{Actor, ActorConfig, Resume};
use bytes::Bytes;
use std::path::{Path, PathBuf};

/// An open write-ahead log. Clone it freely: every clone is the same WAL.
///
/// See the crate documentation for an example and the guarantees.
#[derive(Clone)]
pub struct Wal {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    options: WalOptions,
    storage: std::sync::Arc<dyn Storage>,
    shards: Vec<ShardHandle>,
    closed: AtomicBool,
    /// `Some` once closed: the result every later `close` returns.
    close_result: Mutex<Option<Result<()>>>,
    lock: Mutex<Option<DirLock>>,
    recovery: RecoveryReport,
    /// Held by a running `compact`: two at once could unlink a newer retired segment
    /// while an older one is still there, against the oldest-first order. Close takes
    /// it too before unlocking the directory.
    compacting: Mutex<()>,
}

/// Records of one key, in append order (see [`Wal::enumerate_records`]).
pub type Records = std::vec::IntoIter<Bytes>;
/// Keys of the WAL (see [`Wal::enumerate_keys`]).
pub type Keys<K> = std::vec::IntoIter<K>;

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Wal>();
    assert_send_sync::<WalError>();
    assert_send_sync::<WalOptions>();
};

impl Wal {
    /// Opens the WAL in directory `path`, creating it if needed, and recovers it:
    /// every segment's checksums are verified (all shards in parallel), a torn tail is
    /// truncated, and damage elsewhere is reported as [`WalError::Corruption`] (see
    /// [`RecoveryMode`](crate::RecoveryMode)).
    ///
    /// Fails with [`WalError::Locked`] if the directory is open elsewhere, with
    /// [`WalError::InvalidOptions`] for bad options, and with
    /// [`WalError::ForeignFile`] if the directory holds files that are not a WAL's
    /// (a symlink, FIFO, socket or device under one of the WAL's own names counts:
    /// none is ever followed or opened), and with [`WalError::ManifestMismatch`] if
    /// the shard directories do not match the manifest's shard count. An existing WAL
    /// keeps the shard count in its manifest; `options.shards` is used only when the
    /// WAL is created. What it creates is private (`WalOptions::file_mode`).
    pub fn new(path: impl AsRef<Path>, options: WalOptions) -> Result<Wal> {
        options.validate()?;
        let path = path.as_ref().to_path_buf();
        let opened = crate::open::open_dir(&path, &options)?;
        let storage: std::sync::Arc<dyn Storage> =
            std::sync::Arc::new(FsStorage::new(path.clone(), options.file_mode));
        Wal::start(
            path,
            options,
            storage,
            opened.shards,
            Some(opened.lock),
            opened.report,
            opened.salt,
        )
    }

    /// Starts one actor per recovered shard.
    pub(crate) fn start(
        path: PathBuf,
        options: WalOptions,
        storage: std::sync::Arc<dyn Storage>,
        recovered: Vec<RecoveredShard>,
        lock_file: Option<DirLock>,
        recovery: RecoveryReport,
        salt: u32,
    ) -> Result<Wal> {
        let config = ActorConfig {
            segment_duration_us: u64::try_from(options.segment_duration().as_micros())
                .unwrap_or(u64::MAX),
            max_segment_size: options.max_segment_size,
            max_batch: options.max_batch,
            checkpoint: options.index_checkpoint,
            salt,
        };
        let mut shards = Vec::with_capacity(recovered.len());
        let shard_count = recovered.len();
        for (id, r) in recovered.into_iter().enumerate() {
            // The loom models read without the cache: it adds no protocol, only a lock.
            let cache_bytes = if cfg!(loom) {
                0
            } else {
                options.read_cache_bytes / shard_count.max(1)
            };
            let shared = Arc::new(ShardShared::new(id, r.index, cache_bytes));
            let c = &shared.counters;
            Counters::add(&c.segments, r.segments.len() as u64);
            Counters::add(&c.records, r.segments.iter().map(|s| s.records).sum());
            Counters::add(&c.bytes, r.segments.iter().map(|s| s.len).sum());
            let (tx, rx) = bounded(options.channel_capacity);
            let actor = Actor::new(
                shared.clone(),
                storage.clone(),
                rx,
                ActorConfig {
                    checkpoint: config.checkpoint && !r.damaged,
                    ..config
                },
                Resume {
                    segments: r.segments,
                    next_sequence: r.next_sequence,
                    next_seq: r.next_seq,
                    synced_through: r.synced_through,
                },
            );
            let spawned = ThreadBuilder::new()
                .name(format!("nano-wal-shard-{id}"))
                .spawn(move || actor.run());
            let thread = match spawned {
                Ok(t) => t,
                Err(e) => {
                    // Stop the shards already started before reporting.
                    for s in &shards {
                        ShardHandle::disconnect(s);
                    }
                    for s in &shards {
                        let _ = ShardHandle::join(s);
                    }
                    return Err(WalError::io("spawning shard thread for", &path, e));
                }
            };
            shards.push(ShardHandle::new(shared, tx, thread));
        }
        Ok(Wal {
            inner: Arc::new(Inner {
                path,
                options,
                storage,
                shards,
                closed: AtomicBool::new(false),
                close_result: Mutex::new(None),
                lock: Mutex::new(lock_file),
                compacting: Mutex::new(()),
                recovery,
            }),
        })
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(WalError::Closed);
        }
        Ok(())
    }

    fn shard(&self, key: &[u8]) -> &ShardHandle {
        &self.inner.shards[shard_for(key, self.inner.shards.len())]
    }

    fn check_record(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let o = &self.inner.options;
        if key.len() > o.max_key_size {
            return Err(WalError::KeyTooLong {
                len: key.len(),
                max: o.max_key_size,
            });
        }
        if value.len() > o.max_record_size {
            return Err(WalError::RecordTooLarge {
                len: value.len(),
                max: o.max_record_size,
            });
        }
        Ok(())
    }

    /// Appends `content` under `key`.
    ///
    /// With `durable = false` the call returns once the record is queued (it is
    /// pipelined: many appends share one write), yet the record is already visible:
    /// every later [`enumerate_records`](Self::enumerate_records) returns it. It
    /// becomes durable with the next durable append or [`sync`](Self::sync) on its
    /// shard, or at close. With `durable = true` the call returns after the record is
    /// on disk (`fdatasync`, shared with every other durable append of the batch).
    ///
    /// Keys are any bytes, including empty and non-UTF-8. Fails with
    /// [`WalError::KeyTooLong`] or [`WalError::RecordTooLarge`] (nothing written),
    /// [`WalError::Closed`], or the I/O error that poisoned the shard.
    pub fn append_entry<K: AsRef<[u8]>>(
        &self,
        key: K,
        content: Bytes,
        durable: bool,
    ) -> Result<()> {
        self.check_open()?;
        let key = key.as_ref();
        self.check_record(key, &content)?;
        let shard = self.shard(key);
        let key = key.to_vec();
        if !durable {
            return shard.submit(Request::Append {
                key,
                value: content,
                durable,
                done: None,
            });
        }
        let (done, waiter) = completion(shard.shared.id);
        shard.submit(Request::Append {
            key,
            value: content,
            durable,
            done: Some(done),
        })?;
        shard.shared.wait_durable(waiter)
    }

    /// Appends `content` under `key` durably: `append_entry(key, content, true)`.
    pub fn log_entry<K: AsRef<[u8]>>(&self, key: K, content: Bytes) -> Result<()> {
        self.append_entry(key, content, true)
    }

    /// Appends many records in one call: each shard receives its share as one request
    /// and writes it with one write call. Every record is checked first; if any is
    /// refused, nothing is written. With `durable`, returns once all are on disk.
    /// Records of one key keep their order. The batch is not atomic across a crash:
    /// recovery may keep a prefix of a shard's share.
    pub fn append_batch<I, K>(&self, entries: I, durable: bool) -> Result<()>
    where
        I: IntoIterator<Item = (K, Bytes)>,
        K: AsRef<[u8]>,
    {
        self.check_open()?;
        let n = self.inner.shards.len();
        let mut per_shard: Vec<Vec<(Vec<u8>, Bytes)>> = (0..n).map(|_| Vec::new()).collect();
        for (key, value) in entries {
            let key = key.as_ref();
            self.check_record(key, &value)?;
            per_shard[shard_for(key, n)].push((key.to_vec(), value));
        }
        let mut waiters = Vec::new();
        let mut first_err = None;
        for (id, entries) in per_shard.into_iter().enumerate() {
            if entries.is_empty() {
                continue;
            }
            let (done, waiter) = if durable {
                let (d, w) = completion(id);
                (Some(d), Some(w))
            } else {
                (None, None)
            };
            match self.inner.shards[id].submit(Request::Batch {
                entries,
                durable,
                done,
            }) {
                Ok(()) => waiters.extend(waiter.map(|w| (id, w))),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        for (id, w) in waiters {
            if let Err(e) = self.inner.shards[id].shared.wait_durable(w) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Every record of `key`, in the order the appends returned. Reads do not go
    /// through the shard's writer; they wait only for appends already queued on the
    /// key's shard to be written. An unknown key yields nothing.
    pub fn enumerate_records<K: AsRef<[u8]>>(&self, key: K) -> Result<Records> {
        self.check_open()?;
        let key = key.as_ref();
        let shard = self.shard(key);
        shard.shared.barrier()?;
        match shard.shared.index.snapshot(key)? {
            Some(snapshot) => Ok(read_records(key, &snapshot, &shard.shared.cache)?.into_iter()),
            None => {
                // A close racing this call empties the index after marking the WAL
                // closed: an empty answer is only true if the WAL is still open.
                self.check_open()?;
                Ok(Vec::new().into_iter())
            }
        }
    }

    /// Every live key, each once, as any `K: From<Vec<u8>>` (for example `Vec<u8>`).
    /// Order is unspecified.
    pub fn enumerate_keys<K: From<Vec<u8>>>(&self) -> Result<Keys<K>> {
        self.check_open()?;
        let mut keys = Vec::new();
        for shard in &self.inner.shards {
            shard.shared.barrier()?;
            keys.extend(shard.shared.index.keys().into_iter().map(K::from));
        }
        // As in `enumerate_records`: a racing close may have emptied some shards.
        self.check_open()?;
        Ok(keys.into_iter())
    }

    /// Makes every record appended before this call durable (one `fdatasync` per
    /// shard that has unsynced data; shards are synced concurrently).
    pub fn sync(&self) -> Result<()> {
        self.check_open()?;
        let mut waiters = Vec::with_capacity(self.inner.shards.len());
        for shard in &self.inner.shards {
            let (done, waiter) = completion(shard.shared.id);
            shard.submit(Request::Sync { done })?;
            waiters.push(waiter);
        }
        let mut first_err = None;
        for w in waiters {
            if let Err(e) = w.wait() {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Drops every sealed segment whose newest record is older than
    /// `entry_retention`, in parallel across shards, while appends continue. A shard's
    /// active segment is sealed first if it is due. Returns what was removed.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.check_open()?;
        let _one_at_a_time = lock(&self.inner.compacting);
        compaction::compact(
            &self.inner.shards,
            self.inner.storage.as_ref(),
            self.inner.options.entry_retention,
        )
    }

    /// Per-shard figures: records, keys, bytes, segments, queue depth, batches,
    /// fsyncs, index memory.
    ///
    /// Like a read, the figures include every append acknowledged before the call
    /// (each shard's read barrier is waited for); `queue_depth` is sampled first, so
    /// it shows the backlog the call found. A poisoned shard still reports its figures.
    pub fn stats(&self) -> Result<WalStats> {
        self.check_open()?;
        let shards = self
            .inner
            .shards
            .iter()
            .map(|s| {
                let queue_depth = s.queue_depth() as u64;
                // Figures, not data: a poisoned or stopped shard reports what it has.
                let _ = s.shared.barrier();
                let c = &s.shared.counters;
                ShardStats {
                    shard: s.shared.id,
                    records: Counters::get(&c.records),
                    keys: s.shared.index.key_count() as u64,
                    bytes: Counters::get(&c.bytes),
                    segments: Counters::get(&c.segments),
                    queue_depth,
                    batches: Counters::get(&c.batches),
                    fsyncs: Counters::get(&c.fsyncs),
                    index_bytes: s.shared.index.heap_bytes() as u64,
                    read_cache_bytes: s.shared.cache.len_bytes() as u64,
                }
            })
            .collect();
        Ok(WalStats { shards })
    }

    /// What recovery found when this WAL was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// The WAL's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Number of shards (from the manifest for an existing WAL).
    pub fn shard_count(&self) -> usize {
        self.inner.shards.len()
    }

    /// Closes the WAL without deleting anything: stops accepting calls, writes what is
    /// queued, fsyncs every shard, joins the actor threads and releases the directory
    /// lock. Afterwards every call on every clone returns [`WalError::Closed`], except
    /// `close` itself, which is idempotent and returns the first close's result.
    /// Dropping the last handle does the same, but cannot report errors.
    ///
    /// Once `close` returns `Ok`, every record appended before it survives a crash or
    /// power cut, like a durable append. One caveat: the sync marker close writes last
    /// is what vouches for its final seals, so damage to that marker on disk makes
    /// recovery treat those seals as unfinished and drop the records after them
    /// (docs/FORMAT.md, "Sealed segment, unfinished seal without damage").
    pub fn close(&self) -> Result<()> {
        self.inner.close(false)
    }

    /// **Closes the WAL and deletes its files.** This is the original nano-wal
    /// meaning of "shutdown": every segment, the manifest and the lock file are
    /// removed, then the directory if nothing else is in it. The data is gone. Use
    /// [`close`](Self::close) to stop without deleting. Returns
    /// [`WalError::Closed`] (and deletes nothing) if the WAL was already closed.
    pub fn shutdown(&self) -> Result<()> {
        self.inner.close(true)
    }
}

impl Inner {
    fn close(&self, remove_files: bool) -> Result<()> {
        let mut result = lock(&self.close_result);
        if let Some(previous) = result.as_ref() {
            return if remove_files {
                Err(WalError::Closed)
            } else {
                previous.clone()
            };
        }
        self.closed.store(true, Ordering::Release);
        for s in &self.shards {
            s.disconnect();
        }
        let mut outcome = Ok(());
        for s in &self.shards {
            if let Err(e) = s.join() {
                if outcome.is_ok() {
                    outcome = Err(e);
                }
            }
        }
        for s in &self.shards {
            // The actors are gone and every call now fails with `Closed`: release the
            // index and the segment files' handles (for `shutdown`, the deleted files'
            // space) now rather than when the last clone of the handle is dropped.
            let forgotten = s.shared.index.clear();
            s.shared.cache.forget_segments(&forgotten);
        }
        // A compaction still unlinking its files (its actor work is done) finishes
        // before the directory is unlocked; none starts now (`closed` is set).
        drop(lock(&self.compacting));
        let lock_file = lock(&self.lock).take();
        if remove_files && lock_file.is_some() {
            // The data is being deleted, so a failed final sync no longer matters;
            // a failed deletion does.
            outcome = crate::open::remove_dir_files(&self.path, self.shards.len());
        }
        // Unlocks the directory (see `DirLock`).
        drop(lock_file);
        *result = Some(outcome.clone());
        outcome
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.close(false);
    }
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("path", &self.inner.path)
            .field("shards", &self.inner.shards.len())
            .field("closed", &self.inner.closed.load(Ordering::Relaxed))
            .finish()
    }
}

#[cfg(any(test, loom))]
impl Wal {
    /// A WAL over in-memory segments (loom models and fault-injection tests).
    pub(crate) fn with_mem_storage(
        options: WalOptions,
        storage: std::sync::Arc<crate::testing::mem_storage::MemStorage>,
    ) -> Result<Wal> {
        options.validate()?;
        let recovered = (0..options.shards)
            .map(|_| RecoveredShard::empty())
            .collect();
        Wal::start(
            PathBuf::from("mem"),
            options,
            storage,
            recovered,
            None,
            RecoveryReport::default(),
            MEM_SALT,
        )
    }
}

/// The salt of WALs over in-memory segments.
#[cfg(any(test, loom))]
pub(crate) const MEM_SALT: u32 = 0x5A17_5A17;

#[cfg(test)]
#[path = "wal_tests.rs"]
mod tests;
