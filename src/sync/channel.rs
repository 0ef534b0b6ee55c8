//! The bounded request channel between handles and a shard actor.
//!
//! Normally crossbeam's unbounded channel with a count of its messages that makes
//! senders wait at the capacity (crossbeam's bounded channel would allocate every
//! slot up front, whatever the capacity); under `cfg(loom)` a small
//! `Mutex` + two `Condvar`s queue with the same interface, because loom cannot model
//! crossbeam's internals (a blocking crossbeam `recv` inside a loom model hangs it).
//!
//! Contract shared by both: FIFO; `send` blocks while the queue is full
//! (backpressure) and fails only once the receiver is gone; `recv` blocks until a
//! message arrives and returns `None` once the queue is empty *and* the (single)
//! sender has been dropped, which is how a shard learns that the WAL is closing.

#[cfg(not(loom))]
mod imp {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, PoisonError};

    /// The capacity bound. crossbeam's bounded channel allocates every slot when it
    /// is made (a capacity of 2^40 aborts the process, `usize::MAX` panics), so the
    /// queue itself is crossbeam's unbounded (list) channel, which allocates as it
    /// fills, and this counts what is in it. A sender takes a slot before it sends
    /// (one compare-and-swap while there is room); the receiver gives one back per
    /// message taken. Senders that find it full wait on `room`.
    struct Gate {
        capacity: usize,
        /// Messages sent and not yet received, plus sends that took a slot and have
        /// not sent yet: never above `capacity`.
        taken: AtomicUsize,
        receiver_gone: AtomicBool,
        lock: Mutex<()>,
        room: Condvar,
    }

    impl Gate {
        /// Takes a slot if one is free.
        fn try_take(&self) -> bool {
            let mut taken = self.taken.load(Ordering::Relaxed);
            while taken < self.capacity {
                match self.taken.compare_exchange_weak(
                    taken,
                    taken + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return true,
                    Err(now) => taken = now,
                }
            }
            false
        }

        /// Takes a slot, waiting while the queue is full; false once the receiver
        /// is gone.
        fn take(&self) -> bool {
            if self.receiver_gone.load(Ordering::Acquire) {
                return false;
            }
            if self.try_take() {
                return true;
            }
            let mut guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            loop {
                if self.receiver_gone.load(Ordering::Acquire) {
                    return false;
                }
                if self.try_take() {
                    return true;
                }
                // A slot given back after this check is announced under the lock,
                // so the wait cannot miss it.
                guard = self
                    .room
                    .wait(guard)
                    .unwrap_or_else(PoisonError::into_inner);
            }
        }

        /// Gives a slot back; wakes the waiting senders if the queue was full.
        fn give_back(&self) {
            if self.taken.fetch_sub(1, Ordering::Release) == self.capacity {
                self.wake_all();
            }
        }

        fn wake_all(&self) {
            let _guard = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.room.notify_all();
        }
    }

    pub(crate) struct Sender<T> {
        tx: crossbeam_channel::Sender<T>,
        gate: Arc<Gate>,
    }
    pub(crate) struct Receiver<T> {
        rx: crossbeam_channel::Receiver<T>,
        gate: Arc<Gate>,
    }

    /// A queue of at most `capacity` messages (at least 1), allocating only for the
    /// messages it holds.
    pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let gate = Arc::new(Gate {
            capacity: capacity.max(1),
            taken: AtomicUsize::new(0),
            receiver_gone: AtomicBool::new(false),
            lock: Mutex::new(()),
            room: Condvar::new(),
        });
        (
            Sender {
                tx,
                gate: gate.clone(),
            },
            Receiver { rx, gate },
        )
    }

    impl<T> Sender<T> {
        /// Sends `msg`, blocking while the queue is full; gives it back if the
        /// receiver is gone.
        pub(crate) fn send(&self, msg: T) -> Result<(), T> {
            if !self.gate.take() {
                return Err(msg);
            }
            self.tx.send(msg).map_err(|e| {
                self.gate.give_back();
                e.into_inner()
            })
        }
        pub(crate) fn len(&self) -> usize {
            self.tx.len()
        }
    }

    impl<T> Receiver<T> {
        /// Hands a received message on, giving its slot back.
        fn took(&self, msg: Option<T>) -> Option<T> {
            if msg.is_some() {
                self.gate.give_back();
            }
            msg
        }
        pub(crate) fn recv(&self) -> Option<T> {
            self.took(self.rx.recv().ok())
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
            if let Some(msg) = crate::sync::poll_for(budget, || self.rx.try_recv().ok()) {
                return self.took(Some(msg));
            }
            match self.rx.recv_timeout(idle_after) {
                Ok(msg) => self.took(Some(msg)),
                Err(crossbeam_channel::RecvTimeoutError::Disconnected) => None,
                Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                    on_idle();
                    self.recv()
                }
            }
        }
        pub(crate) fn try_recv(&self) -> Option<T> {
            self.took(self.rx.try_recv().ok())
        }
    }

    impl<T> Drop for Receiver<T> {
        /// Releases the senders waiting for room: their sends fail, as they would
        /// on a crossbeam channel whose receiver is gone.
        fn drop(&mut self) {
            self.gate.receiver_gone.store(true, Ordering::Release);
            self.gate.wake_all();
        }
    }

    #[cfg(test)]
    mod tests {
        use super::bounded;

        #[test]
        fn a_huge_capacity_allocates_nothing_up_front() {
            let (tx, rx) = bounded::<u64>(usize::MAX);
            for i in 0..100 {
                tx.send(i).unwrap();
            }
            assert_eq!(tx.len(), 100);
            assert_eq!(
                (0..100).map(|_| rx.recv()).collect::<Vec<_>>(),
                (0..100).map(Some).collect::<Vec<_>>()
            );
        }

        #[test]
        fn a_full_queue_blocks_its_sender_until_a_message_is_taken() {
            let (tx, rx) = bounded::<u32>(2);
            tx.send(1).unwrap();
            tx.send(2).unwrap();
            let sent = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    tx.send(3).unwrap();
                    sent.store(true, std::sync::atomic::Ordering::SeqCst);
                });
                std::thread::sleep(std::time::Duration::from_millis(50));
                assert!(
                    !sent.load(std::sync::atomic::Ordering::SeqCst),
                    "sent past the capacity"
                );
                assert_eq!(rx.recv(), Some(1));
            });
            assert!(sent.load(std::sync::atomic::Ordering::SeqCst));
            assert_eq!(tx.len(), 2);
        }

        #[test]
        fn a_blocked_sender_gets_its_message_back_when_the_receiver_goes() {
            let (tx, rx) = bounded::<u32>(1);
            tx.send(1).unwrap();
            std::thread::scope(|s| {
                let blocked = s.spawn(|| tx.send(2));
                std::thread::sleep(std::time::Duration::from_millis(20));
                drop(rx);
                assert_eq!(blocked.join().unwrap(), Err(2));
            });
            assert_eq!(tx.send(3), Err(3));
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
