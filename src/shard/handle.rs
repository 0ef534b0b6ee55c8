//! The handle side of a shard's queue ([`ShardHandle`]) and the requests it sends
//! ([`Request`]).
//!
//! **Submission gate.** A request is sent while holding the read side of
//! `ShardHandle::sender`; `close` takes the write side and drops the sender. So every
//! send either happens before the sender is dropped (and the actor, which drains the
//! queue until it is empty *and* disconnected, processes it) or observes `None` and
//! returns [`WalError::Closed`]. No request is accepted and then lost.

use super::shared::{RetiredSegment, ShardShared};
use crate::error::{Result, WalError};
use crate::sync::channel::Sender;
use crate::sync::completion::Completer;
use crate::sync::{lock, read, write, JoinHandle, Mutex, Ordering, RwLock};
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
