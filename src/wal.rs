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
mod tests {
    use super::*;
    use crate::testing::mem_storage::MemStorage;
    use std::sync::atomic::Ordering as StdOrdering;
    use std::time::Duration;

    fn mem_wal(shards: usize) -> (Wal, std::sync::Arc<MemStorage>) {
        mem_wal_with(WalOptions::default().with_shards(shards))
    }

    fn mem_wal_with(options: WalOptions) -> (Wal, std::sync::Arc<MemStorage>) {
        let storage = std::sync::Arc::new(MemStorage::default());
        let wal = Wal::with_mem_storage(options, storage.clone()).unwrap();
        (wal, storage)
    }

    #[test]
    fn a_lone_durable_caller_polls_for_as_long_as_the_disk_syncs() {
        let (wal, storage) = mem_wal(1);
        let shard = &wal.inner.shards[0].shared;
        assert_eq!(
            shard.poll_budget(),
            crate::shard::wait::POLL_BUDGET_MIN,
            "nothing timed yet"
        );
        // A 0.3 ms fdatasync (at least: a sleep never ends early): polling 0.25 ms
        // would end just before most answers.
        storage
            .faults
            .data_sync_delay_us
            .store(300, StdOrdering::SeqCst);
        for i in 0..20 {
            wal.log_entry(b"k", Bytes::from(format!("{i}"))).unwrap();
        }
        let budget = shard.poll_budget();
        assert!(
            budget >= Duration::from_micros(600),
            "polls {budget:?} for a 0.3 ms fdatasync"
        );
        // A 5 ms fdatasync: a wake-up no longer matters, so nobody polls.
        storage
            .faults
            .data_sync_delay_us
            .store(5_000, StdOrdering::SeqCst);
        for i in 0..20 {
            wal.log_entry(b"k", Bytes::from(format!("slow {i}")))
                .unwrap();
        }
        assert_eq!(shard.poll_budget(), Duration::ZERO);
        assert_eq!(wal.enumerate_records(b"k").unwrap().count(), 40);
    }

    #[test]
    fn failed_fsync_poisons_the_shard_and_is_never_retried() {
        let (wal, storage) = mem_wal(1);
        wal.log_entry(b"k", Bytes::from_static(b"before")).unwrap();
        let syncs_before = storage.faults.syncs.load(StdOrdering::SeqCst);
        storage.faults.fail_syncs.store(true, StdOrdering::SeqCst);
        let err = wal
            .log_entry(b"k", Bytes::from_static(b"lost"))
            .unwrap_err();
        assert!(matches!(err, WalError::Io { op: "syncing", .. }), "{err:?}");
        // The disk "recovers"; the shard must not pretend the failed sync happened.
        storage.faults.fail_syncs.store(false, StdOrdering::SeqCst);
        for result in [
            wal.append_entry(b"k", Bytes::from_static(b"x"), false),
            wal.log_entry(b"k", Bytes::from_static(b"x")),
            wal.sync(),
            wal.enumerate_records(b"k").map(|_| ()),
        ] {
            assert!(
                matches!(result, Err(WalError::Poisoned { shard: 0, .. })),
                "{result:?}"
            );
        }
        assert!(wal.close().is_err(), "close must report the poisoned shard");
        assert_eq!(storage.faults.syncs.load(StdOrdering::SeqCst), syncs_before);
    }

    #[test]
    fn a_failed_seal_fsync_poisons_the_shard_and_nothing_after_it_is_durable() {
        // Room for one 100-byte record per segment: every append seals the previous.
        let (wal, storage) = mem_wal_with(
            WalOptions::default()
                .with_shards(1)
                .with_max_record_size(100)
                .with_max_key_size(8)
                .with_max_segment_size(
                    (crate::format::segment_header::SEGMENT_HEADER_LEN
                        + crate::format::record::SEAL_NOTE_LEN
                        + crate::format::record::encoded_len(8, 100)) as u64,
                ),
        );
        let value = Bytes::from(vec![7u8; 100]);
        wal.append_entry(b"k", value.clone(), false).unwrap();
        storage.faults.fail_syncs.store(true, StdOrdering::SeqCst);
        // Seals segment 1; its fsync fails on the syncer thread.
        wal.append_entry(b"k", value.clone(), false).unwrap();
        // A durable answer waits for that seal and must get its error, even though the
        // disk "recovers" before the request is served.
        let err = loop {
            match wal.append_entry(b"k", value.clone(), false) {
                Ok(()) => std::thread::yield_now(),
                Err(e) => break e,
            }
        };
        storage.faults.fail_syncs.store(false, StdOrdering::SeqCst);
        assert!(
            matches!(
                &err,
                WalError::Io {
                    op: "syncing sealed segment",
                    ..
                }
            ) || matches!(&err, WalError::Poisoned { shard: 0, .. }),
            "{err:?}"
        );
        for result in [wal.log_entry(b"k", value.clone()), wal.sync()] {
            assert!(
                matches!(result, Err(WalError::Poisoned { shard: 0, .. })),
                "{result:?}"
            );
        }
        assert!(wal.close().is_err(), "close must report the poisoned shard");
        assert!(storage.segment(0, 1).unwrap().synced().is_empty());
    }

    #[test]
    fn a_durable_answer_comes_after_every_seal_before_it_is_synced() {
        let (wal, storage) = mem_wal_with(
            WalOptions::default()
                .with_shards(1)
                .with_max_record_size(1000)
                .with_max_key_size(8)
                .with_max_segment_size(4096),
        );
        // Before the first seal: every seal's fsync takes 2 ms.
        storage
            .faults
            .seal_sync_delay_us
            .store(2_000, StdOrdering::SeqCst);
        for round in 0..20 {
            for _ in 0..30 {
                wal.append_entry(b"k", Bytes::from(vec![round as u8; 900]), false)
                    .unwrap();
            }
            wal.log_entry(b"k", Bytes::from_static(b"durable")).unwrap();
            let newest = wal.stats().unwrap().shards[0].segments;
            for sequence in 1..newest {
                let seg = storage.segment(0, sequence).unwrap();
                assert_eq!(
                    seg.synced().len(),
                    seg.data_len(),
                    "round {round}: segment {sequence} of {newest} not synced at a durable answer"
                );
            }
        }
        wal.close().unwrap();
    }

    #[test]
    fn failed_write_fails_every_waiter_of_the_batch() {
        let (wal, storage) = mem_wal(1);
        storage.faults.fail_writes.store(true, StdOrdering::SeqCst);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let wal = wal.clone();
                    s.spawn(move || wal.log_entry(format!("k{i}"), Bytes::from_static(b"v")))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.iter().all(|r| r.is_err()), "{results:?}");
        assert_eq!(storage.faults.syncs.load(StdOrdering::SeqCst), 0);
    }

    #[test]
    fn durable_appends_share_fsyncs() {
        let (wal, storage) = mem_wal(1);
        std::thread::scope(|s| {
            for t in 0..16 {
                let wal = wal.clone();
                s.spawn(move || {
                    for i in 0..50 {
                        wal.log_entry(format!("t{t}"), Bytes::from(format!("{i}")))
                            .unwrap();
                    }
                });
            }
        });
        let syncs = storage.faults.syncs.load(StdOrdering::SeqCst);
        assert!(
            syncs < 800,
            "800 durable appends took {syncs} fsyncs: no group commit"
        );
        for t in 0..16 {
            let got: Vec<Bytes> = wal.enumerate_records(format!("t{t}")).unwrap().collect();
            let want: Vec<Bytes> = (0..50).map(|i| Bytes::from(format!("{i}"))).collect();
            assert_eq!(got, want);
        }
        let seg = storage.segment(0, 1).expect("segment 1 exists");
        assert!(
            seg.synced().len() > 800 * 20,
            "acknowledged records were not synced"
        );
        assert_eq!(storage.segment_count(), 1);
    }

    #[test]
    #[cfg(not(loom))]
    fn compaction_unlinks_oldest_first_with_a_directory_fsync_after_each() {
        use crate::testing::mem_storage::{Op, OpLog};
        let log = OpLog::default();
        let storage = std::sync::Arc::new(MemStorage::recording(log.clone(), 0));
        let wal = Wal::with_mem_storage(expiring_small_segments(2), storage).unwrap();
        // Three 1,000-byte values fill a 4 KiB segment: about six seals per shard.
        for i in 0..40 {
            wal.append_entry(format!("k{}", i % 4), Bytes::from(vec![b'v'; 1000]), false)
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        let before = log.lock().unwrap().len();
        let report = wal.compact().unwrap();
        assert!(report.segments_removed >= 8, "{report:?}");
        let ops: Vec<Op> = log.lock().unwrap()[before..].to_vec();
        let mut removals = 0;
        for shard in 0..2u32 {
            // This shard's removals and directory fsyncs, in order.
            let steps: Vec<&Op> = ops
                .iter()
                .filter(|op| match op {
                    Op::Remove((s, _)) => *s == shard,
                    Op::SyncDir(s) => *s == shard,
                    _ => false,
                })
                .collect();
            let mut last_removed = 0;
            for pair in steps.windows(2) {
                if let Op::Remove((_, sequence)) = pair[0] {
                    assert!(*sequence > last_removed, "shard {shard}: out of order");
                    last_removed = *sequence;
                    removals += 1;
                    assert!(
                        matches!(pair[1], Op::SyncDir(s) if *s == shard),
                        "shard {shard}: segment {sequence} unlinked without a directory fsync before the next step"
                    );
                }
            }
            assert!(
                matches!(steps.last(), Some(Op::SyncDir(_))),
                "shard {shard}: compaction ended without a directory fsync"
            );
        }
        assert_eq!(removals, report.segments_removed);
        wal.close().unwrap();
    }

    /// `shards` shards of 4 KiB segments (three 1,000-byte values each) whose records
    /// expire after 2 ms, segments rotating every 1 ms.
    #[cfg(not(loom))]
    fn expiring_small_segments(shards: usize) -> WalOptions {
        WalOptions::default()
            .with_shards(shards)
            .with_retention(std::time::Duration::from_millis(2))
            .with_segments(2)
            .with_max_key_size(8)
            .with_max_record_size(1000)
            .with_max_segment_size(4096)
    }

    /// A one-shard WAL over a memory store that logs its calls and takes 20 ms per
    /// segment removal, holding three sealed segments that expire 2 ms after their
    /// last record, and what lists the segments removed so far (from the log).
    #[cfg(not(loom))]
    fn slow_unlinks() -> (Wal, impl Fn() -> Vec<u64>) {
        use crate::testing::mem_storage::{Op, OpLog};
        let log = OpLog::default();
        let storage = std::sync::Arc::new(MemStorage::recording(log.clone(), 0));
        storage
            .faults
            .remove_delay_us
            .store(20_000, StdOrdering::SeqCst);
        let wal = Wal::with_mem_storage(expiring_small_segments(1), storage).unwrap();
        for _ in 0..10 {
            wal.append_entry("k", Bytes::from(vec![b'v'; 1000]), false)
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
        let removed = {
            let log = log.clone();
            move || {
                log.lock()
                    .unwrap()
                    .iter()
                    .filter_map(|op| match op {
                        Op::Remove((_, sequence)) => Some(*sequence),
                        _ => None,
                    })
                    .collect::<Vec<u64>>()
            }
        };
        (wal, removed)
    }

    /// Waits until `removed()` lists a removal: a compaction is then unlinking.
    #[cfg(not(loom))]
    fn until_unlinking(removed: &impl Fn() -> Vec<u64>) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while removed().is_empty() {
            assert!(std::time::Instant::now() < deadline, "no compaction began");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    #[cfg(not(loom))]
    fn close_waits_for_a_running_compactions_unlinks() {
        let (wal, removed) = slow_unlinks();
        let compacting = {
            let wal = wal.clone();
            std::thread::spawn(move || wal.compact())
        };
        until_unlinking(&removed);
        wal.close().unwrap();
        let at_close = removed().len();
        let report = compacting.join().unwrap().unwrap();
        assert!(report.segments_removed >= 3, "{report:?}");
        assert_eq!(
            at_close as u64, report.segments_removed,
            "close returned while the compaction still unlinked"
        );
    }

    #[test]
    #[cfg(not(loom))]
    fn concurrent_compactions_unlink_oldest_first() {
        let (wal, removed) = slow_unlinks();
        let first = {
            let wal = wal.clone();
            std::thread::spawn(move || wal.compact())
        };
        until_unlinking(&removed);
        // Newer segments expire while the first compaction still unlinks; a second
        // compaction retires them.
        for _ in 0..7 {
            wal.append_entry("k", Bytes::from(vec![b'w'; 1000]), false)
                .unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = wal.compact().unwrap();
        let first = first.join().unwrap().unwrap();
        assert!(first.segments_removed >= 3 && second.segments_removed >= 2);
        let order = removed();
        assert!(
            order.windows(2).all(|w| w[0] < w[1]),
            "segments unlinked out of order: {order:?}"
        );
        wal.close().unwrap();
    }
}
