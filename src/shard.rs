//! A shard as the rest of the crate sees it: the state shared between its actor and
//! every handle ([`ShardShared`]), and the handle side of its queue ([`ShardHandle`]).
//!
//! **Submission gate.** A request is sent while holding the read side of
//! `ShardHandle::sender`; `close` takes the write side and drops the sender. So every
//! send either happens before the sender is dropped (and the actor, which drains the
//! queue until it is empty *and* disconnected, processes it) or observes `None` and
//! returns [`WalError::Closed`]. No request is accepted and then lost.
//!
//! **Read barrier (visibility).** Non-durable appends are pipelined: they return once
//! queued. `submitted` counts requests before they are sent; the actor counts the
//! requests it has finished in `applied`. A reader snapshots `submitted` and waits for
//! `applied` to reach it. Any append that returned before the snapshot was sent
//! before it, and every request ahead of it in the FIFO queue was counted before its
//! own send, so it is among the first `submitted` requests: once `applied` reaches the
//! snapshot, its index entry is published. A poisoned or stopped shard ends the wait
//! with an error, never with a silent miss.

use crate::cache::BlockCache;
use crate::channel::Sender;
use crate::completion::{Completer, Waiter};
use crate::error::{Result, WalError};
use crate::index::ShardIndex;
use crate::sync::{
    lock, read, wait, write, AtomicBool, AtomicU64, Condvar, JoinHandle, Mutex, Ordering, RwLock,
};
use bytes::Bytes;

/// What a handle asks of a shard actor.
pub(crate) enum Request {
    /// One record. `done` is `None` for a pipelined (non-durable) append.
    Append {
        key: Vec<u8>,
        value: Bytes,
        durable: bool,
        done: Option<Completer<()>>,
    },
    /// Several records of this shard, written together.
    Batch {
        entries: Vec<(Vec<u8>, Bytes)>,
        durable: bool,
        done: Option<Completer<()>>,
    },
    /// Make everything queued before this durable.
    Sync { done: Completer<()> },
    /// Compaction's install step: seal what is due and forget sealed segments whose
    /// newest record is older than `cutoff_us`.
    Retire {
        cutoff_us: u64,
        done: Completer<Vec<RetiredSegment>>,
    },
}

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
    pub(crate) records: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) segments: AtomicU64,
    pub(crate) batches: AtomicU64,
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
    pub(crate) id: usize,
    pub(crate) index: ShardIndex,
    /// Blocks of this shard's segments, for reads (`cache.rs`).
    pub(crate) cache: BlockCache,
    pub(crate) counters: Counters,
    submitted: AtomicU64,
    applied_hint: AtomicU64,
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

/// Up to this many concurrent durable waiters per shard poll before sleeping; more
/// would take the CPU from the actor they are waiting for.
const POLLING_WAITERS: usize = 2;
/// The least a polling durable waiter polls, and all it polls before the shard's
/// first `fdatasync` is timed: a bit more than one `fdatasync` on a fast disk
/// (50-100 us here on a good day).
pub(crate) const POLL_BUDGET_MIN: std::time::Duration = std::time::Duration::from_micros(250);
/// The most a polling durable waiter polls. When twice the shard's average
/// `fdatasync` is longer, it sleeps at once: a wake-up (tens of microseconds) no
/// longer matters against the wait, and the CPU is better left idle.
const POLL_BUDGET_MAX: std::time::Duration = std::time::Duration::from_millis(2);

/// How long a polling durable waiter polls, given the shard's average `fdatasync`
/// (`sync_us`, 0 if none yet): about two of them, so that the answer to a lone
/// caller usually finds it still polling (on a VM whose `fdatasync` took 150-350 us,
/// the fixed 0.25 ms poll before this made a lone caller sleep, and pay a wake-up,
/// on most appends; see docs/PERFORMANCE-LOG.md, W3).
fn budget_for(sync_us: u64) -> std::time::Duration {
    let expected = std::time::Duration::from_micros(sync_us.saturating_mul(2));
    if expected > POLL_BUDGET_MAX {
        std::time::Duration::ZERO
    } else {
        expected.max(POLL_BUDGET_MIN)
    }
}

/// The moving average after one more `fdatasync` of `sample_us`: each new one
/// weighs 1/8, so a disk that slows down moves the average within a few batches
/// while one slow call moves it little.
fn next_sync_average(average_us: u64, sample_us: u64) -> u64 {
    if average_us == 0 {
        sample_us.max(1)
    } else {
        (average_us - average_us / 8)
            .saturating_add(sample_us / 8)
            .max(1)
    }
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

    /// How long a polling durable waiter of this shard polls now.
    pub(crate) fn poll_budget(&self) -> std::time::Duration {
        budget_for(self.sync_us.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Waits for the answer to a durable request of this shard, polling before it
    /// sleeps, which spares it a wake-up. A lone waiter polls for about two of the
    /// shard's recent `fdatasync`s ([`poll_budget`](Self::poll_budget)); the next of
    /// [`POLLING_WAITERS`] for [`POLL_BUDGET_MIN`] only, since a long poll by every
    /// waiter of a group takes the CPU that the others need to join it; when many
    /// wait, group commit covers them anyway and they sleep at once.
    pub(crate) fn wait_durable<T>(&self, waiter: Waiter<T>) -> Result<T> {
        use std::sync::atomic::Ordering::Relaxed;
        let others = self.durable_waiters.fetch_add(1, Relaxed);
        let result = if others == 0 {
            waiter.wait_polling(self.poll_budget())
        } else if others < POLLING_WAITERS {
            waiter.wait_polling(POLL_BUDGET_MIN)
        } else {
            waiter.wait()
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

/// The handle side of a shard: its queue's sender, behind the close gate, and the
/// actor's thread.
pub(crate) struct ShardHandle {
    pub(crate) shared: crate::sync::Arc<ShardShared>,
    sender: RwLock<Option<Sender<Request>>>,
    thread: Mutex<Option<JoinHandle<Result<()>>>>,
}

impl ShardHandle {
    pub(crate) fn new(
        shared: crate::sync::Arc<ShardShared>,
        sender: Sender<Request>,
        thread: JoinHandle<Result<()>>,
    ) -> ShardHandle {
        ShardHandle {
            shared,
            sender: RwLock::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
        }
    }

    /// Queues `request`, blocking while the queue is full.
    pub(crate) fn submit(&self, request: Request) -> Result<()> {
        let gate = read(&self.sender);
        let Some(tx) = gate.as_ref() else {
            return Err(WalError::Closed);
        };
        self.shared.check_poison()?;
        self.shared.submitted.fetch_add(1, Ordering::SeqCst);
        if tx.send(request).is_err() {
            // The actor is gone; the dropped request has answered its waiter.
            drop(gate);
            self.shared.check_poison()?;
            return Err(WalError::ShardStopped {
                shard: self.shared.id,
            });
        }
        Ok(())
    }

    /// Requests waiting in the queue.
    pub(crate) fn queue_depth(&self) -> usize {
        read(&self.sender).as_ref().map_or(0, |tx| tx.len())
    }

    /// Closes the gate: drops the sender so the actor drains its queue and exits.
    pub(crate) fn disconnect(&self) {
        let tx = write(&self.sender).take();
        drop(tx);
    }

    /// Waits for the actor to exit and returns its final result (the last sync).
    pub(crate) fn join(&self) -> Result<()> {
        let Some(thread) = lock(&self.thread).take() else {
            return Ok(());
        };
        match thread.join() {
            Ok(result) => result,
            Err(_) => Err(WalError::ShardStopped {
                shard: self.shared.id,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_waiter_polls_about_two_fsyncs_within_its_bounds() {
        assert_eq!(budget_for(0), POLL_BUDGET_MIN, "no fsync timed yet");
        assert_eq!(
            budget_for(40),
            POLL_BUDGET_MIN,
            "a fast disk keeps the floor"
        );
        assert_eq!(budget_for(300), Duration::from_micros(600));
        assert_eq!(
            budget_for(1_000),
            POLL_BUDGET_MAX,
            "the ceiling itself polls"
        );
        assert_eq!(
            budget_for(1_001),
            Duration::ZERO,
            "beyond it, sleep at once"
        );
        assert_eq!(budget_for(u64::MAX), Duration::ZERO);
    }

    #[test]
    fn the_sync_average_starts_at_the_first_sample_and_moves_by_an_eighth() {
        assert_eq!(next_sync_average(0, 200), 200);
        assert_eq!(next_sync_average(0, 0), 1, "0 stays 'not timed yet'");
        assert_eq!(next_sync_average(200, 1_000), 300, "200 - 25 + 125");
        assert_eq!(next_sync_average(200, 0), 175);
        let settled = (0..100).fold(50, |average, _| next_sync_average(average, 400));
        assert!((390..=400).contains(&settled), "settled at {settled}");
        assert_eq!(next_sync_average(u64::MAX, u64::MAX), u64::MAX);
    }
}
