//! The state shared between a shard's actor and every handle ([`ShardShared`]).
//!
//! **Read barrier (visibility).** Non-durable appends are pipelined: they return once
//! queued. `submitted` counts requests before they are sent; the actor counts the
//! requests it has finished in `applied`. A reader snapshots `submitted` and waits for
//! `applied` to reach it. Any append that returned before the snapshot was sent
//! before it, and every request ahead of it in the FIFO queue was counted before its
//! own send, so it is among the first `submitted` requests: once `applied` reaches the
//! snapshot, its index entry is published. A poisoned or stopped shard ends the wait
//! with an error, never with a silent miss.

use super::wait::{durable_poll, next_sync_average};
use crate::error::{Result, WalError};
use crate::index::ShardIndex;
use crate::read::cache::BlockCache;
use crate::sync::completion::Waiter;
use crate::sync::{lock, wait, AtomicBool, AtomicU64, Condvar, Mutex, Ordering};

/// A segment dropped from a shard's index by compaction; its file is still to unlink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetiredSegment {
    pub(crate) sequence: u64,
    pub(crate) bytes: u64,
    pub(crate) records: u64,
}

/// Counters the actor keeps and `stats()` reads (relaxed: they are statistics).
#[derive(Default)]
pub(crate) struct Counters {
    /// Records in live segments.
    pub(crate) records: AtomicU64,
    /// Bytes of live segment files, headers included.
    pub(crate) bytes: AtomicU64,
    /// Live segment files.
    pub(crate) segments: AtomicU64,
    /// Batches processed since open.
    pub(crate) batches: AtomicU64,
    /// Segment `fdatasync`s and `fsync`s since open (seals included, directory
    /// fsyncs not).
    pub(crate) fsyncs: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

struct Progress {
    applied: u64,
    poison: Option<WalError>,
    stopped: bool,
    /// Threads asleep on `changed` (in [`ShardShared::barrier`]). The actor
    /// notifies only when there is one: a notify costs a system call even when
    /// nobody waits, and `advance` runs once per batch on the actor's path.
    sleepers: usize,
}

impl Progress {
    /// Wakes the sleepers on `changed`, if any (call with the lock held).
    fn notify(&self, changed: &Condvar) {
        if self.sleepers > 0 {
            changed.notify_all();
        }
    }
}

/// State shared by a shard's actor and all handles.
pub(crate) struct ShardShared {
    /// The shard's number, 0-based.
    pub(crate) id: usize,
    /// Key -> record locations, published by the actor, read by any thread.
    pub(crate) index: ShardIndex,
    /// Blocks of this shard's segments, for reads (`cache.rs`).
    pub(crate) cache: BlockCache,
    pub(crate) counters: Counters,
    /// Requests counted before they are sent (the read barrier's target).
    pub(super) submitted: AtomicU64,
    /// `Progress::applied`, readable without the lock (the barrier's fast path).
    applied_hint: AtomicU64,
    /// Whether `Progress::poison` is set, readable without the lock.
    poisoned: AtomicBool,
    progress: Mutex<Progress>,
    changed: Condvar,
    /// Callers waiting for a durable answer right now: a hint for
    /// [`wait_durable`](Self::wait_durable), not part of any protocol (a plain std
    /// atomic even under loom).
    durable_waiters: std::sync::atomic::AtomicUsize,
    /// The actor's group-commit `fdatasync`, in microseconds, as a moving average
    /// (see [`record_sync`](Self::record_sync)); 0 before the first. A hint for
    /// [`wait_durable`](Self::wait_durable)'s polling, like `durable_waiters`.
    sync_us: std::sync::atomic::AtomicU64,
}

impl ShardShared {
    pub(crate) fn new(id: usize, index: ShardIndex, cache_bytes: usize) -> ShardShared {
        ShardShared {
            id,
            index,
            cache: BlockCache::new(cache_bytes),
            counters: Counters::default(),
            submitted: AtomicU64::new(0),
            applied_hint: AtomicU64::new(0),
            poisoned: AtomicBool::new(false),
            progress: Mutex::new(Progress {
                applied: 0,
                poison: None,
                stopped: false,
                sleepers: 0,
            }),
            changed: Condvar::new(),
            durable_waiters: std::sync::atomic::AtomicUsize::new(0),
            sync_us: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn poison_error(&self, progress: &Progress) -> Option<WalError> {
        progress.poison.as_ref().map(|cause| WalError::Poisoned {
            shard: self.id,
            cause: std::sync::Arc::new(cause.clone()),
        })
    }

    /// `Err(Poisoned)` once a write or sync of this shard has failed.
    pub(crate) fn check_poison(&self) -> Result<()> {
        if !self.poisoned.load(Ordering::Acquire) {
            return Ok(());
        }
        match self.poison_error(&lock(&self.progress)) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Records the first failure; every later call on the shard reports it.
    pub(crate) fn poison(&self, cause: WalError) {
        let mut p = lock(&self.progress);
        if p.poison.is_none() {
            p.poison = Some(cause);
        }
        self.poisoned.store(true, Ordering::Release);
        p.notify(&self.changed);
    }

    /// The actor finished `n` more requests (their index entries are published).
    pub(crate) fn advance(&self, n: u64) {
        let mut p = lock(&self.progress);
        p.applied += n;
        self.applied_hint.store(p.applied, Ordering::Release);
        p.notify(&self.changed);
    }

    /// The actor has exited; `panicked` poisons the shard.
    pub(crate) fn mark_stopped(&self, panicked: bool) {
        let mut p = lock(&self.progress);
        p.stopped = true;
        if panicked && p.poison.is_none() {
            p.poison = Some(WalError::ShardStopped { shard: self.id });
            self.poisoned.store(true, Ordering::Release);
        }
        p.notify(&self.changed);
    }

    /// Notes how long one of the actor's group-commit `fdatasync`s took (the actor
    /// alone calls this).
    pub(crate) fn record_sync(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let average = next_sync_average(self.sync_us.load(Relaxed), sample);
        self.sync_us.store(average, Relaxed);
    }

    /// How long a lone polling durable waiter of this shard polls now.
    #[cfg(test)]
    pub(crate) fn poll_budget(&self) -> std::time::Duration {
        super::wait::budget_for(self.sync_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Waits for the answer to a durable request of this shard, polling before it
    /// sleeps, which spares it a wake-up (how long: [`durable_poll`]).
    pub(crate) fn wait_durable<T>(&self, waiter: Waiter<T>) -> Result<T> {
        use std::sync::atomic::Ordering::Relaxed;
        let others = self.durable_waiters.fetch_add(1, Relaxed);
        let result = match durable_poll(others, self.sync_us.load(Relaxed)) {
            Some(budget) => waiter.wait_polling(budget),
            None => waiter.wait(),
        };
        self.durable_waiters.fetch_sub(1, Relaxed);
        result
    }

    /// Waits until every request sent before this call is applied (see module docs).
    pub(crate) fn barrier(&self) -> Result<()> {
        let target = self.submitted.load(Ordering::SeqCst);
        if self.applied_hint.load(Ordering::Acquire) >= target
            && !self.poisoned.load(Ordering::Acquire)
        {
            return Ok(());
        }
        let mut p = lock(&self.progress);
        loop {
            if let Some(e) = self.poison_error(&p) {
                return Err(e);
            }
            if p.applied >= target {
                return Ok(());
            }
            if p.stopped {
                return Err(WalError::ShardStopped { shard: self.id });
            }
            p.sleepers += 1;
            p = wait(&self.changed, p);
            p.sleepers -= 1;
        }
    }
}
