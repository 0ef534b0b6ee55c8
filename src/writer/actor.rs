//! The shard actor: the one thread that writes a shard's segment files.
//!
//! **Loop (group commit).** Block for one request, drain what else is queued (up to
//! `max_batch`), encode every record of the batch into one buffer (`batch.rs`), write
//! it with one call, and issue one `fdatasync` if any request in the batch asked for
//! durability (first taking in, and writing, what was queued meanwhile). Only then
//! publish the index entries, advance the read barrier and answer the waiters, waking
//! them by chaining (`completion::complete_all`). One fsync thus covers every durable
//! waiter of the batch.
//!
//! **Poisoning.** A failed write or sync poisons the shard: every request of that
//! batch gets the error, and so does every later request (it is answered without
//! being written). An fsync is never retried: after a failure the kernel may have
//! dropped the dirty pages, so a later "successful" fsync would prove nothing.
//!
//! **Sealing.** A full (or old) segment is cut to its data, sealed and handed to the
//! shard's seal syncer (`syncer.rs`), which fsyncs it off this thread. Before any
//! durable answer the actor waits for every pending seal and writes a sync marker
//! vouching for them (`settle_seals`); see the syncer's rules. Creating, rotating,
//! preallocating and sealing segments is in `active_segment.rs`, compaction's install
//! step in `retire.rs`.
//!
//! **Exit.** When the queue is empty and its sender is gone (close), the actor syncs
//! what is unsynced and returns. A drop guard marks the shard stopped, and poisoned if
//! the actor panicked, so no reader or waiter hangs on a dead actor.

use crate::error::{Result, WalError};
use crate::format::record::{Codec, SealNote};
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use crate::io::Storage;
use crate::shard::wait::{idle_poll_after, IDLE_POLL, IDLE_SYNC_AFTER};
use crate::shard::{Counters, Request, ShardShared};
use crate::sync::channel::Receiver;
use crate::sync::completion::complete_all;
use crate::sync::{now_us, Arc};
use crate::writer::active_segment::Segment;
use crate::writer::batch::{key_of, Pending, Waiters};
use crate::writer::syncer::SealSyncer;

/// Static configuration of an actor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActorConfig {
    /// Age at which the active segment is sealed (`WalOptions::segment_duration`).
    pub(crate) segment_duration_us: u64,
    /// Rotation threshold in bytes (`WalOptions::max_segment_size`).
    pub(crate) max_segment_size: u64,
    /// Most requests in one batch (`WalOptions::max_batch`).
    pub(crate) max_batch: usize,
    /// Write the index checkpoint on a clean close (`WalOptions::index_checkpoint`,
    /// unless recovery skipped damage in this shard).
    pub(crate) checkpoint: bool,
    /// The WAL's salt (from its manifest): new segments bind their records with it.
    pub(crate) salt: u32,
}

/// A shard's writer. Its methods are spread over the files of `writer/` by concern;
/// the fields are theirs to share.
pub(crate) struct Actor {
    pub(super) shared: Arc<ShardShared>,
    pub(super) storage: std::sync::Arc<dyn Storage>,
    pub(super) rx: Receiver<Request>,
    pub(super) config: ActorConfig,
    /// Live segments, oldest first. Only the last one may be unsealed (active).
    pub(super) segments: Vec<Segment>,
    pub(super) next_sequence: u64,
    /// The sequence number the next record of this shard gets.
    pub(super) next_seq: u64,
    /// Bytes written to the active segment since its last sync.
    pub(super) dirty: bool,
    pub(super) buf: Vec<u8>,
    /// Fsyncs sealed segments off this thread.
    pub(super) syncer: SealSyncer,
    /// The durable watermark on disk: the newest sync marker written (or found by
    /// recovery) says every segment up to this sequence is synced.
    pub(super) synced_through: u64,
    /// The seal note the active segment must start with and does not hold yet (set
    /// when a segment is sealed, written first into the next one; see `record.rs`).
    pub(super) note_due: Option<SealNote>,
    /// Segments whose newest record was found later than the clock (at open, or by
    /// a compaction after the clock stepped back), by sequence: when this actor
    /// first saw each, or the time of the newest record it wrote there since.
    /// Retention takes that for the segment's newest record (see
    /// [`newest_seen`](Self::newest_seen)). Usually empty.
    pub(super) ahead: std::collections::BTreeMap<u64, u64>,
}

struct ExitGuard<'a>(&'a ShardShared);

impl Drop for ExitGuard<'_> {
    fn drop(&mut self) {
        self.0.mark_stopped(std::thread::panicking());
    }
}

/// Where a shard's writer takes up its work: what recovery found.
pub(crate) struct Resume {
    /// Live segments, oldest first; the last one, if unsealed, is written on.
    pub(crate) segments: Vec<Segment>,
    /// The sequence number of the next segment file.
    pub(crate) next_sequence: u64,
    /// The sequence number of the next record.
    pub(crate) next_seq: u64,
    /// Segments up to this one are vouched for by a sync marker on disk.
    pub(crate) synced_through: u64,
}

impl Actor {
    pub(crate) fn new(
        shared: Arc<ShardShared>,
        storage: std::sync::Arc<dyn Storage>,
        rx: Receiver<Request>,
        config: ActorConfig,
        resume: Resume,
    ) -> Actor {
        let Resume {
            segments,
            next_sequence,
            next_seq,
            synced_through,
        } = resume;
        // A recovered active segment may hold bytes a killed process wrote but never
        // synced (still in the page cache, readable now): the first sync or seal of
        // this process must cover them.
        let dirty = segments.last().is_some_and(|s| !s.sealed);
        // A recovered newest segment that holds nothing yet after a sealed one (the
        // killed writer created it but wrote nothing, or recovery cut a torn note
        // off) still owes the note for it, before any record.
        let note_due = match segments.as_slice() {
            [.., sealed, newest]
                if sealed.sealed
                    && !newest.sealed
                    && newest.len == SEGMENT_HEADER_LEN as u64
                    && newest.codec != Codec::Legacy =>
            {
                Some(SealNote {
                    sequence: sealed.sequence,
                    len: sealed.len,
                })
            }
            _ => None,
        };
        let mut actor = Actor {
            note_due,
            ahead: Default::default(),
            syncer: SealSyncer::new(shared.clone(), storage.clone(), synced_through),
            synced_through,
            shared,
            storage,
            rx,
            config,
            segments,
            next_sequence,
            next_seq,
            dirty,
            buf: Vec::new(),
        };
        actor.note_ahead(now_us());
        actor
    }

    /// The thread body. Returns the result of the final sync.
    pub(crate) fn run(mut self) -> Result<()> {
        let shared = self.shared.clone();
        let _guard = ExitGuard(&shared);
        self.resync_recovered();
        let mut batch = Vec::new();
        let mut poll = IDLE_POLL;
        loop {
            let mut idle = false;
            let syncer = &self.syncer;
            let next = self.rx.recv_polling(poll, IDLE_SYNC_AFTER, || {
                syncer.set_idle(true);
                idle = true;
            });
            if idle {
                syncer.set_idle(false);
            }
            let Some(first) = next else { break };
            batch.push(first);
            self.drain_into(&mut batch);
            poll = idle_poll_after(self.process(&mut batch));
        }
        self.finish()
    }

    pub(super) fn shard(&self) -> u32 {
        self.shared.id as u32
    }

    /// Recovered sealed segments that no sync marker vouches for may hold bytes a
    /// killed process wrote and never synced: they go to the syncer before anything
    /// else, after an fsync of the shard directory, so the first durable answer waits
    /// for them like for any pending seal.
    ///
    /// The directory first, as for a segment the writer creates: the syncer runs its
    /// jobs in order, and once a seal's job is done a marker may vouch for the
    /// segment, which recovery then takes as durable, or as compacted if its name is
    /// gone. Queued after the seals, a seal that ran before it (the syncer runs the
    /// oldest job once too many wait, once it has waited `DEFER_LIMIT`, or once the
    /// shard is idle) was vouched for while the killed process's creation of it could
    /// still be lost (`power_cut::check_markers` checks this order).
    fn resync_recovered(&mut self) {
        let unsynced: Vec<_> = self
            .segments
            .iter()
            .filter(|s| s.sealed && s.sequence > self.synced_through)
            .map(|s| (s.sequence, s.io.clone()))
            .collect();
        let mut result = Ok(());
        if !self.segments.is_empty() {
            // The killed process's syncer may not have synced the directory since the
            // last creation (it runs after the creating batch): redo it.
            result = self.syncer.submit_dir();
        }
        if result.is_ok() {
            result = unsynced
                .into_iter()
                .try_for_each(|(sequence, io)| self.syncer.submit(sequence, io));
        }
        if let Err(e) = result {
            self.shared.poison(e);
        }
    }

    /// Writes and answers one batch; returns how many waiting callers it answered.
    fn process(&mut self, batch: &mut Vec<Request>) -> usize {
        Counters::add(&self.shared.counters.batches, 1);
        let result = self
            .shared
            .check_poison()
            .and_then(|()| self.write_batch(batch));
        // Counted after the write: the batch grows while it waits for its sync.
        let n = batch.len() as u64;
        match &result {
            Ok(pending) => {
                for p in pending {
                    let key = key_of(&batch[p.request], p.entry);
                    self.shared.index.push(key, p.location);
                }
                if let Some(active) = self.segments.last() {
                    // After the pushes: everything below `len` is written and final.
                    active
                        .published
                        .store(active.len, std::sync::atomic::Ordering::Release);
                }
                Counters::add(&self.shared.counters.records, pending.len() as u64);
            }
            Err(e) if !matches!(e, WalError::Poisoned { .. }) => self.shared.poison(e.clone()),
            Err(_) => {}
        }
        self.shared.advance(n);
        let waiters = Waiters::take(batch);
        let answered = waiters.len();
        match result {
            Ok(_) => {
                complete_all(waiters.appends, Ok(()));
                for install in waiters.installs {
                    let result = self.retire(install.cutoff_us);
                    if let Err(e) = &result {
                        self.shared.poison(e.clone());
                    }
                    install.done.complete(result);
                }
            }
            Err(e) => {
                complete_all(waiters.appends, Err(e.clone()));
                for install in waiters.installs {
                    install.done.complete(Err(e.clone()));
                }
            }
        }
        answered
    }

    /// Encodes and writes the whole batch; syncs once if any request needs it.
    /// Before that sync, whatever was queued meanwhile joins the batch (written
    /// too, covered by the same sync): the callers woken by the previous batch are
    /// sending their next requests right now, and each one taken here is one
    /// fsync fewer.
    fn write_batch(&mut self, batch: &mut Vec<Request>) -> Result<Vec<Pending>> {
        let now = now_us();
        let mut pending = Vec::with_capacity(batch.len());
        self.buf.clear();
        self.buffer_due_note(now);
        // Vouch for seals that finished since the last batch (cheap: 36 bytes).
        let synced = self.syncer.synced_through()?;
        if self.marker_fits() {
            self.buffer_marker(synced, now);
        }
        let need_sync = self.encode_requests(batch, 0, now, &mut pending)?;
        self.flush_buf()?;
        if need_sync {
            loop {
                let before = batch.len();
                self.drain_into(batch);
                if batch.len() == before {
                    break;
                }
                self.encode_requests(batch, before, now, &mut pending)?;
                self.flush_buf()?;
            }
            self.settle_seals(now)?;
            if self.dirty {
                self.sync_active()?;
            }
        }
        Ok(pending)
    }

    /// Moves queued requests into `batch` until it holds `max_batch` or the queue
    /// is empty.
    fn drain_into(&self, batch: &mut Vec<Request>) {
        while batch.len() < self.config.max_batch {
            match self.rx.try_recv() {
                Some(r) => batch.push(r),
                None => break,
            }
        }
    }

    /// After the queue closed: make everything written durable.
    fn finish(&mut self) -> Result<()> {
        self.shared.check_poison()?;
        let result = self.close_segments();
        if let Err(e) = &result {
            self.shared.poison(e.clone());
            return result;
        }
        if self.config.checkpoint {
            // Only after a close that succeeded: the checkpoint describes the files
            // as they now stay. A failure costs the next open its shortcut, nothing
            // else, but is still reported.
            super::checkpoint_io::write(
                &*self.storage,
                self.shard(),
                self.synced_through,
                self.next_seq,
                &self.segments,
                &self.shared.index,
            )?;
        }
        Ok(())
    }
}
