//! A one-shot reply slot: how a shard actor answers a caller that waits (durable
//! appends, `sync`, compaction).
//!
//! **Invariant.** Every [`Waiter`] is woken exactly once: by [`Completer::complete`],
//! or, if the completer is dropped unanswered (the actor panicked, or the request
//! never reached it), by its `Drop` with [`WalError::ShardStopped`]. A caller can
//! therefore never hang on a request that was lost.

use crate::error::{Result, WalError};
use crate::sync::{lock, wait, Arc, Condvar, Mutex};

struct Slot<T> {
    value: Mutex<Option<Result<T>>>,
    ready: Condvar,
}

/// The actor's end.
pub(crate) struct Completer<T> {
    slot: Option<Arc<Slot<T>>>,
    shard: usize,
}

/// The caller's end.
pub(crate) struct Waiter<T> {
    slot: Arc<Slot<T>>,
}

/// A connected completer/waiter pair for a request to `shard`.
pub(crate) fn completion<T>(shard: usize) -> (Completer<T>, Waiter<T>) {
    let slot = Arc::new(Slot {
        value: Mutex::new(None),
        ready: Condvar::new(),
    });
    (
        Completer {
            slot: Some(slot.clone()),
            shard,
        },
        Waiter { slot },
    )
}

fn fill<T>(slot: &Slot<T>, result: Result<T>) {
    *lock(&slot.value) = Some(result);
    slot.ready.notify_one();
}

impl<T> Completer<T> {
    /// Answers the waiter.
    pub(crate) fn complete(mut self, result: Result<T>) {
        if let Some(slot) = self.slot.take() {
            fill(&slot, result);
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            fill(&slot, Err(WalError::ShardStopped { shard: self.shard }));
        }
    }
}

impl<T> Waiter<T> {
    /// Like [`wait`](Self::wait), but first polls the slot for up to `budget`,
    /// yielding the CPU between polls, before going to sleep. A caller that expects
    /// its answer within about one fsync (a lone durable appender) saves the
    /// wake-up of a sleeping thread, which costs as much as a quarter of the fsync
    /// on the machines we measured. Under loom the polling is skipped: it adds no
    /// behaviour, only schedules.
    pub(crate) fn wait_polling(self, budget: std::time::Duration) -> Result<T> {
        #[cfg(not(loom))]
        if let Some(result) = crate::sync::poll_for(budget, || {
            self.slot
                .value
                .try_lock()
                .ok()
                .and_then(|mut value| value.take())
        }) {
            return result;
        }
        #[cfg(loom)]
        let _ = budget;
        self.wait()
    }

    /// Blocks until the request is answered.
    pub(crate) fn wait(self) -> Result<T> {
        let mut value = lock(&self.slot.value);
        loop {
            if let Some(result) = value.take() {
                return result;
            }
            value = wait(&self.slot.ready, value);
        }
    }
}
