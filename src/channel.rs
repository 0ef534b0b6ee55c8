//! The bounded request channel between handles and a shard actor.
//!
//! Normally a thin wrapper over `crossbeam_channel::bounded`; under `cfg(loom)` a small
//! `Mutex` + two `Condvar`s queue with the same interface, because loom cannot model
//! crossbeam's internals (a blocking crossbeam `recv` inside a loom model hangs it).
//!
//! Contract shared by both: FIFO; `send` blocks while the queue is full
//! (backpressure) and fails only once the receiver is gone; `recv` blocks until a
//! message arrives and returns `None` once the queue is empty *and* the (single)
//! sender has been dropped, which is how a shard learns that the WAL is closing.

#[cfg(not(loom))]
mod imp {
    pub(crate) struct Sender<T>(crossbeam_channel::Sender<T>);
    pub(crate) struct Receiver<T>(crossbeam_channel::Receiver<T>);

    pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        (Sender(tx), Receiver(rx))
    }

    impl<T> Sender<T> {
        /// Sends `msg`, blocking while the queue is full; gives it back if the
        /// receiver is gone.
        pub(crate) fn send(&self, msg: T) -> Result<(), T> {
            self.0.send(msg).map_err(|e| e.into_inner())
        }
        pub(crate) fn len(&self) -> usize {
            self.0.len()
        }
    }

    impl<T> Receiver<T> {
        pub(crate) fn recv(&self) -> Option<T> {
            self.0.recv().ok()
        }
        /// Like `recv`, but polls for up to `budget` (yielding between polls) before
        /// blocking: a request that arrives soon is taken without a wake-up. If
        /// nothing arrives within `idle_after` of blocking, calls `on_idle` once and
        /// goes on waiting. Once disconnected it returns `None` at once (after at
        /// most one budget of polling, paid once at close).
        pub(crate) fn recv_polling(
            &self,
            budget: std::time::Duration,
            idle_after: std::time::Duration,
            on_idle: impl FnOnce(),
        ) -> Option<T> {
            if let Some(msg) = crate::sync::poll_for(budget, || self.0.try_recv().ok()) {
                return Some(msg);
            }
            match self.0.recv_timeout(idle_after) {
                Ok(msg) => Some(msg),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    on_idle();
                    self.recv()
                }
            }
        }
        pub(crate) fn try_recv(&self) -> Option<T> {
            self.0.try_recv().ok()
        }
    }
}

#[cfg(loom)]
mod imp {
    use crate::sync::{lock, wait, Arc, Condvar, Mutex};
    use std::collections::VecDeque;

    struct State<T> {
        queue: VecDeque<T>,
        sender_alive: bool,
        receiver_alive: bool,
    }

    struct Shared<T> {
        state: Mutex<State<T>>,
        not_empty: Condvar,
        not_full: Condvar,
        capacity: usize,
    }

    pub(crate) struct Sender<T>(Arc<Shared<T>>);
    pub(crate) struct Receiver<T>(Arc<Shared<T>>);

    pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                sender_alive: true,
                receiver_alive: true,
            }),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity: capacity.max(1),
        });
        (Sender(shared.clone()), Receiver(shared))
    }

    impl<T> Sender<T> {
        pub(crate) fn send(&self, msg: T) -> Result<(), T> {
            let mut st = lock(&self.0.state);
            loop {
                if !st.receiver_alive {
                    return Err(msg);
                }
                if st.queue.len() < self.0.capacity {
                    st.queue.push_back(msg);
                    self.0.not_empty.notify_one();
                    return Ok(());
                }
                st = wait(&self.0.not_full, st);
            }
        }
        pub(crate) fn len(&self) -> usize {
            lock(&self.0.state).queue.len()
        }
    }

    impl<T> Drop for Sender<T> {
        fn drop(&mut self) {
            lock(&self.0.state).sender_alive = false;
            self.0.not_empty.notify_all();
        }
    }

    impl<T> Receiver<T> {
        pub(crate) fn recv(&self) -> Option<T> {
            let mut st = lock(&self.0.state);
            loop {
                if let Some(msg) = st.queue.pop_front() {
                    self.0.not_full.notify_one();
                    return Some(msg);
                }
                if !st.sender_alive {
                    return None;
                }
                st = wait(&self.0.not_empty, st);
            }
        }
        /// Polling adds schedules, not behaviour, and time does not pass in the
        /// models: under loom the receiver is idle whenever it finds the queue
        /// empty, and then blocks in `recv`.
        pub(crate) fn recv_polling(
            &self,
            _budget: std::time::Duration,
            _idle_after: std::time::Duration,
            on_idle: impl FnOnce(),
        ) -> Option<T> {
            let empty = lock(&self.0.state).queue.is_empty();
            if empty {
                on_idle();
            }
            self.recv()
        }
        pub(crate) fn try_recv(&self) -> Option<T> {
            let msg = lock(&self.0.state).queue.pop_front();
            if msg.is_some() {
                self.0.not_full.notify_one();
            }
            msg
        }
    }

    impl<T> Drop for Receiver<T> {
        fn drop(&mut self) {
            let mut st = lock(&self.0.state);
            st.receiver_alive = false;
            // Messages still queued are dropped here, which answers their waiters.
            let leftover: Vec<T> = st.queue.drain(..).collect();
            drop(st);
            drop(leftover);
            self.0.not_full.notify_all();
        }
    }
}

pub(crate) use imp::{bounded, Receiver, Sender};
