//! The concurrency shim: every lock, atomic, `Arc`, condvar and thread used by the
//! hand-off protocols is reached through this module.
//!
//! Under `cfg(loom)` it re-exports loom's model-checked types so the protocols
//! (append acknowledgement, group commit, poisoning, close, compaction install) can be
//! explored exhaustively; otherwise it re-exports `std`. The pattern is
//! crossbeam-utils' `primitive` module. The channel and the key map have their own
//! loom stand-ins in `sync/channel.rs` and `index/key_map.rs`, because loom cannot
//! see inside crossbeam-channel or dashmap.
//!
//! Lock poisoning is deliberately ignored ([`lock`], [`read`], [`write`]): every
//! critical section here leaves its state consistent before any call that could
//! panic, and a panicking shard actor is reported through its own poison flag.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
#[cfg(loom)]
pub(crate) use loom::thread::{Builder as ThreadBuilder, JoinHandle};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
#[cfg(not(loom))]
pub(crate) use std::thread::{Builder as ThreadBuilder, JoinHandle};

use std::sync::PoisonError;

/// Locks `m`, ignoring poisoning (see the module docs).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Takes a shared lock on `l`, ignoring poisoning.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// Takes an exclusive lock on `l`, ignoring poisoning.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

/// Waits on `cv`, ignoring poisoning.
pub(crate) fn wait<'a, T>(cv: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// Like [`wait`], returning after at most `timeout` too. Under loom it is [`wait`]:
/// the models check who waits for whom, not how long (a timeout would only add
/// spurious wake-ups, which every caller already handles).
#[cfg(not(loom))]
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(guard, timeout) {
        Ok((guard, _)) => guard,
        Err(poisoned) => poisoned.into_inner().0,
    }
}

#[cfg(loom)]
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    guard: MutexGuard<'a, T>,
    _timeout: std::time::Duration,
) -> MutexGuard<'a, T> {
    wait(cv, guard)
}

/// Polls `ready` for up to `budget`, yielding the CPU between polls; `None` if it
/// gave nothing in time. The callers then block the ordinary way: polling only
/// spares a wake-up when the answer comes soon (see `Waiter::wait_polling`,
/// `Receiver::recv_polling`). The mechanism only: how long to poll is the callers'
/// policy, in `shard/wait.rs`. Not used under loom, where it would add schedules and
/// no behaviour.
#[cfg(not(loom))]
pub(crate) fn poll_for<T>(
    budget: std::time::Duration,
    mut ready: impl FnMut() -> Option<T>,
) -> Option<T> {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = ready() {
            return Some(value);
        }
        if started.elapsed() >= budget {
            return None;
        }
        std::thread::yield_now();
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
#[cfg(not(loom))]
pub(crate) fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The model clock: loom models must be deterministic, so under `cfg(loom)` time is
/// whatever the model set with `model::set_clock` (a plain std atomic, which loom does
/// not treat as a scheduling point).
#[cfg(loom)]
pub(crate) static MODEL_CLOCK_US: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(1_000_000);

/// Microseconds since the Unix epoch, as set by the model.
#[cfg(loom)]
pub(crate) fn now_us() -> u64 {
    MODEL_CLOCK_US.load(std::sync::atomic::Ordering::SeqCst)
}
