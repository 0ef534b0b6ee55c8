//! A one-shot reply slot: how a shard actor answers a caller that waits (durable
//! appends, `sync`, compaction).
//!
//! **Invariant.** Every [`Waiter`] is woken exactly once: by [`Completer::complete`]
//! or [`complete_all`], or, if the completer is dropped unanswered (the actor
//! panicked, or the request never reached it), by its `Drop` with
//! [`WalError::ShardStopped`]. A caller can therefore never hang on a request that
//! was lost.
//!
//! **Wake chaining.** After a group commit the actor answers every waiter of the
//! batch at once ([`complete_all`]), but wakes only the first. Each answered slot
//! holds up to two followers (heap order: slot `i` holds `2i+1` and `2i+2`), and
//! whoever takes a slot's answer wakes its followers: the waiter itself, or its
//! `Drop` if it was dropped before it waited, or `complete_all` if the waiter was
//! already gone. Slots are answered last to first, so a follower is always answered
//! before anyone can wake it. Waking a sleeping thread costs the waker several
//! microseconds; chained, the actor pays for one and goes back to writing and
//! syncing, and the woken callers spread the rest over the free cores in about
//! log2(n) steps.

use crate::error::{Result, WalError};
use crate::sync::{lock, wait, Arc, Condvar, Mutex};

struct State<T> {
    /// The answer, until the waiter takes it.
    answer: Option<Result<T>>,
    /// Slots whose waiters this slot's answer-taker must wake (wake chaining).
    followers: Followers<T>,
    /// The waiter is gone: whoever answers the slot wakes its followers itself.
    abandoned: bool,
    /// The waiter is asleep on `ready`. A notify costs a system call even when
    /// nobody sleeps, and a polling waiter (see [`Waiter::wait_polling`]) takes
    /// its answer without one, so answerers notify only a sleeper.
    sleeping: bool,
}

/// A slot's followers in the wake chain (fixed size: the actor allocates nothing
/// per waiter to build the chain).
type Followers<T> = [Option<Arc<Slot<T>>>; 2];

struct Slot<T> {
    state: Mutex<State<T>>,
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
        state: Mutex::new(State {
            answer: None,
            followers: [None, None],
            abandoned: false,
            sleeping: false,
        }),
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

/// Answers `slot` and hands it `followers` to wake. Returns the followers back if
/// the waiter is gone, for the caller to wake.
fn fill<T>(slot: &Slot<T>, result: Result<T>, followers: Followers<T>) -> Followers<T> {
    let mut state = lock(&slot.state);
    state.answer = Some(result);
    if state.abandoned {
        followers
    } else {
        state.followers = followers;
        [None, None]
    }
}

/// Wakes `slot`'s waiter if it sleeps; one that has not gone to sleep yet finds
/// the answer (always filled before this is called) when it looks.
///
/// The notify comes after the lock is released: a waiter woken while the waker
/// still held it would find it taken and sleep again, on the mutex. No wake-up is
/// lost: a waiter seen `sleeping` under the lock is already waiting on `ready`
/// (it waits from the same critical section that set the flag), and a notify
/// after that reaches it.
fn wake_one<T>(slot: &Slot<T>) {
    let sleeping = lock(&slot.state).sleeping;
    if sleeping {
        slot.ready.notify_one();
    }
}

fn wake<T>(slots: impl IntoIterator<Item = Option<Arc<Slot<T>>>>) {
    for slot in slots.into_iter().flatten() {
        wake_one(&slot);
    }
}

/// Answers every completer with `result`, waking their waiters by chaining (see the
/// module docs): the caller pays for one wake-up, not one per waiter.
pub(crate) fn complete_all<T: Clone>(completers: Vec<Completer<T>>, result: Result<T>) {
    let slots: Vec<Arc<Slot<T>>> = completers
        .into_iter()
        .filter_map(|mut c| c.slot.take())
        .collect();
    let mut orphans = Vec::new();
    // Last to first: a slot's followers are answered before the slot is.
    for i in (0..slots.len()).rev() {
        let followers = [slots.get(2 * i + 1).cloned(), slots.get(2 * i + 2).cloned()];
        orphans.extend(fill(&slots[i], result.clone(), followers));
    }
    if let Some(first) = slots.first() {
        wake_one(first);
    }
    wake(orphans);
}

impl<T> Completer<T> {
    /// Answers the waiter alone (no chain).
    pub(crate) fn complete(mut self, result: Result<T>) {
        self.answer(result);
    }

    fn answer(&mut self, result: Result<T>) {
        if let Some(slot) = self.slot.take() {
            // A lone slot has no followers: answer under the lock, wake after it (see
            // `wake_one`).
            let sleeping = {
                let mut state = lock(&slot.state);
                state.answer = Some(result);
                state.sleeping
            };
            if sleeping {
                slot.ready.notify_one();
            }
        }
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        let shard = self.shard;
        self.answer(Err(WalError::ShardStopped { shard }));
    }
}

impl<T> Waiter<T> {
    /// Like [`wait`](Self::wait), but first polls the slot for up to `budget`,
    /// yielding the CPU between polls, before going to sleep. A caller that expects
    /// its answer within about one fsync (a lone durable appender) saves the
    /// wake-up of a sleeping thread, which can cost a good part of a fast fsync.
    /// The budget is the caller's policy (`shard/wait.rs`). Under loom the polling
    /// is skipped: it adds no behaviour, only schedules.
    pub(crate) fn wait_polling(self, budget: std::time::Duration) -> Result<T> {
        #[cfg(not(loom))]
        if let Some(result) = crate::sync::poll_for(budget, || {
            self.slot
                .state
                .try_lock()
                .ok()
                .and_then(|mut state| state.answer.take())
        }) {
            return result;
        }
        #[cfg(loom)]
        let _ = budget;
        self.wait()
    }

    /// Blocks until the request is answered. (Dropping `self` on the way out wakes
    /// the slot's followers.)
    pub(crate) fn wait(self) -> Result<T> {
        let mut state = lock(&self.slot.state);
        loop {
            if let Some(result) = state.answer.take() {
                return result;
            }
            state.sleeping = true;
            state = wait(&self.slot.ready, state);
            state.sleeping = false;
        }
    }
}

impl<T> Drop for Waiter<T> {
    fn drop(&mut self) {
        let followers = {
            let mut state = lock(&self.slot.state);
            state.abandoned = true;
            std::mem::take(&mut state.followers)
        };
        wake(followers);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Answers `n` waiters together while some of them are dropped unwaited (before
    /// or after the answer): every waiter that waits gets the answer, so no chain
    /// is broken by a missing link. Runs on real threads; a broken chain hangs, which
    /// the receive timeout turns into a failure.
    fn chained(n: usize, dropped: impl Fn(usize) -> bool, drop_early: bool) {
        let (completers, waiters): (Vec<_>, Vec<_>) = (0..n).map(|_| completion::<u64>(0)).unzip();
        let (tx, rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        let mut expected = 0;
        for (i, waiter) in waiters.into_iter().enumerate() {
            if dropped(i) {
                if drop_early {
                    drop(waiter);
                } else {
                    threads.push(std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        drop(waiter);
                    }));
                }
                continue;
            }
            expected += 1;
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                let _ = tx.send((i, waiter.wait()));
            }));
        }
        std::thread::sleep(Duration::from_millis(5));
        complete_all(completers, Ok(7));
        for _ in 0..expected {
            let (i, got) = rx
                .recv_timeout(Duration::from_secs(10))
                .expect("a chained waiter was never woken");
            assert_eq!(got.expect("answer"), 7, "waiter {i}");
        }
        for t in threads {
            t.join().expect("thread");
        }
    }

    #[test]
    fn every_waiter_of_a_chain_is_woken() {
        chained(1, |_| false, false);
        chained(37, |_| false, false);
    }

    #[test]
    fn waiters_dropped_before_the_answer_do_not_break_the_chain() {
        // Slot 0 (the one the completer wakes) and inner links are dropped.
        chained(37, |i| i == 0 || i % 3 == 1, true);
    }

    #[test]
    fn waiters_dropped_after_the_answer_still_wake_their_followers() {
        chained(37, |i| i == 0 || i == 1 || i == 5, false);
    }

    #[test]
    fn errors_reach_every_waiter_of_the_chain() {
        let (completers, waiters): (Vec<_>, Vec<_>) = (0..5).map(|_| completion::<()>(3)).unzip();
        complete_all(completers, Err(WalError::ShardStopped { shard: 3 }));
        for w in waiters {
            assert!(matches!(w.wait(), Err(WalError::ShardStopped { shard: 3 })));
        }
    }
}
