//! The shard actor: the one thread that writes a shard's segment files.
//!
//! **Loop (group commit).** Block for one request, drain what else is queued (up to
//! `max_batch`), encode every record of the batch into one buffer, write it with one
//! call, and issue one `fdatasync` if any request in the batch asked for durability
//! (first taking in, and writing, what was queued meanwhile). Only then publish the
//! index entries, advance the read barrier and answer the waiters, waking them by
//! chaining (`completion::complete_all`). One fsync thus covers every durable waiter
//! of the batch.
//!
//! **Poisoning.** A failed write or sync poisons the shard: every request of that
//! batch gets the error, and so does every later request (it is answered without
//! being written). An fsync is never retried: after a failure the kernel may have
//! dropped the dirty pages, so a later "successful" fsync would prove nothing.
//!
//! **Sealing.** A full (or old) segment is cut to its data, sealed and handed to the
//! shard's seal syncer (`syncer.rs`), which fsyncs it off this thread. Before any
//! durable answer the actor waits for every pending seal and writes a sync marker
//! vouching for them (`settle_seals`); see the syncer's rules.
//!
//! **Exit.** When the queue is empty and its sender is gone (close), the actor syncs
//! what is unsynced and returns. A drop guard marks the shard stopped, and poisoned if
//! the actor panicked, so no reader or waiter hangs on a dead actor.

use crate::error::{Result, WalError};
use crate::format::record::{encoded_len, Codec, SealNote, MARKER_LEN};
use crate::format::segment_header::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN};
use crate::index::Location;
use crate::io::Storage;
use crate::options::MAX_SEGMENT_SIZE;
use crate::shard::{Counters, Request, RetiredSegment, ShardShared};
use crate::sync::channel::Receiver;
use crate::sync::completion::{complete_all, Completer};
use crate::sync::{now_us, Arc};
use crate::writer::active_segment::Segment;
use crate::writer::syncer::SealSyncer;

/// How long an idle actor polls its queue (yielding between polls) before sleeping,
/// after a batch that answered two or more waiting callers (durable appends, `sync`):
/// such callers send their next requests as soon as they have their answers, and are
/// then served without the wake-up of a sleeping actor; a woken batch of many callers
/// takes a while to come back, so the budget covers a few fsyncs. Measured with
/// `nano-wal bench --threads 64 --records 3200 --durable 1`, 12 interleaved runs
/// each, median: 125 k/s polling 50 us, 138 k/s polling 250 us. At most this much
/// CPU per idle spell.
const IDLE_POLL_AFTER_ANSWERS: std::time::Duration = std::time::Duration::from_micros(250);

/// The same after a batch that answered nobody (non-durable appends): the callers
/// did not wait, so an empty queue means they are slower than the actor, and a long
/// poll would only take CPU from them (4 KiB ingest, 3 interleaved comparison runs:
/// about 5-10% lower with 250 us than with 50 us). Also after a batch that answered
/// one caller: a lone caller that comes back to this shard does so within a few
/// microseconds, and one whose next key is another shard's comes back only after that
/// shard's fsync, which a long poll here would slow by taking a vCPU (500 durable
/// appends of one thread over two shards: 12% less time on average;
/// docs/PERFORMANCE-LOG.md, W3).
const IDLE_POLL: std::time::Duration = std::time::Duration::from_micros(50);

/// How long the actor polls its queue after a batch that answered `answered`
/// waiting callers.
fn idle_poll_after(answered: usize) -> std::time::Duration {
    if answered >= 2 {
        IDLE_POLL_AFTER_ANSWERS
    } else {
        IDLE_POLL
    }
}

/// After this long without a request the actor lets its seal syncer run the jobs it
/// defers (`syncer.rs`): the ingest has stopped, so they compete with nothing, and a
/// durable call or `sync` after a burst of non-durable appends finds the burst's
/// seals synced instead of waiting for up to four of them per shard. Long against
/// the gaps between a caller's appends (microseconds), short against
/// [`syncer::DEFER_LIMIT`](crate::writer::syncer::DEFER_LIMIT).
pub(crate) const IDLE_SYNC_AFTER: std::time::Duration = std::time::Duration::from_millis(10);

/// Encoded bytes the actor buffers before writing them, even within a batch: a
/// 1,024-request batch of 4 KiB values would otherwise build a 4 MiB buffer, larger
/// than this machine's L2 cache, and the kernel's copy into the page cache then reads
/// it back from memory. Measured with the comparison's 4 KiB W1/W2 (seal syncs off,
/// 3 interleaved runs): 0.45-1.36x / 0.57-1.20x the `File` baseline without,
/// 1.13-1.41x / 1.12-1.59x with.
const WRITE_CHUNK: usize = 128 * 1024;

/// Static configuration of an actor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ActorConfig {
    pub(crate) segment_duration_us: u64,
    pub(crate) max_segment_size: u64,
    pub(crate) max_batch: usize,
    /// Write the index checkpoint on a clean close (`WalOptions::index_checkpoint`,
    /// unless recovery skipped damage in this shard).
    pub(crate) checkpoint: bool,
    /// The WAL's salt (from its manifest): new segments bind their records with it.
    pub(crate) salt: u32,
}

/// A shard's writer.
pub(crate) struct Actor {
    shared: Arc<ShardShared>,
    storage: std::sync::Arc<dyn Storage>,
    rx: Receiver<Request>,
    config: ActorConfig,
    /// Live segments, oldest first. Only the last one may be unsealed (active).
    segments: Vec<Segment>,
    next_sequence: u64,
    /// The sequence number the next record of this shard gets.
    next_seq: u64,
    /// Bytes written to the active segment since its last sync.
    dirty: bool,
    buf: Vec<u8>,
    /// Fsyncs sealed segments off this thread.
    syncer: SealSyncer,
    /// The newest sync marker written (or found by recovery) vouches for every
    /// segment up to this sequence.
    marked_through: u64,
    /// The seal note the active segment must start with and does not hold yet (set
    /// when a segment is sealed, written first into the next one; see `record.rs`).
    note_due: Option<SealNote>,
    /// Segments whose newest record was found later than the clock (at open, or by
    /// a compaction after the clock stepped back), by sequence: when this actor
    /// first saw each, or the time of the newest record it wrote there since.
    /// Retention takes that for the segment's newest record (see
    /// [`newest_seen`](Self::newest_seen)). Usually empty.
    ahead: std::collections::BTreeMap<u64, u64>,
}

/// Where a record of the current batch goes: request, entry within it, location.
type Pending = (usize, usize, Location);

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
            marked_through: synced_through,
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

    fn shard(&self) -> u32 {
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
    /// still be lost (review; `power_cut::check_markers` catches it).
    fn resync_recovered(&mut self) {
        let unsynced: Vec<_> = self
            .segments
            .iter()
            .filter(|s| s.sealed && s.sequence > self.marked_through)
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
        match result {
            Ok(pending) => {
                for &(ri, ei, loc) in &pending {
                    self.shared.index.push(key_of(&batch[ri], ei), loc);
                }
                if let Some(active) = self.segments.last() {
                    // After the pushes: everything below `len` is written and final.
                    active
                        .published
                        .store(active.len, std::sync::atomic::Ordering::Release);
                }
                Counters::add(&self.shared.counters.records, pending.len() as u64);
                self.shared.advance(n);
                let (waiting, installs) = split_waiters(batch);
                let answered = waiting.len() + installs.len();
                complete_all(waiting, Ok(()));
                for (cutoff_us, done) in installs {
                    let result = self.retire(cutoff_us);
                    if let Err(e) = &result {
                        self.shared.poison(e.clone());
                    }
                    done.complete(result);
                }
                answered
            }
            Err(e) => {
                if !matches!(e, WalError::Poisoned { .. }) {
                    self.shared.poison(e.clone());
                }
                self.shared.advance(n);
                let (waiting, installs) = split_waiters(batch);
                let answered = waiting.len() + installs.len();
                complete_all(waiting, Err(e.clone()));
                for (_, done) in installs {
                    done.complete(Err(e.clone()));
                }
                answered
            }
        }
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

    /// Waits for every pending seal and writes (not syncs) a sync marker vouching for
    /// them: the caller's fsync of the active segment then makes the marker durable
    /// with the records it acknowledges. So a durable answer always leaves a marker
    /// for every sealed segment before it; without one, recovery would take bit rot
    /// near the end of such a segment for an unfinished seal and drop every later
    /// segment, acknowledged records included.
    fn settle_seals(&mut self, now: u64) -> Result<()> {
        let mut synced = self.syncer.wait_all()?;
        if synced > self.marked_through && !self.marker_fits() {
            // No room for the marker (or no open segment): seal the full segment, start
            // the next, and once the seal's fsync (and the new name's) are done, vouch
            // there for everything synced, the full segment included.
            self.rotate(now)?;
            synced = self.syncer.wait_all()?;
        }
        self.buffer_marker(synced, now);
        self.flush_buf()
    }

    /// Buffers the seal note the active segment owes, if it holds nothing yet (the
    /// buffer is empty: the note goes first).
    fn buffer_due_note(&mut self, now: u64) {
        let Some(note) = self.note_due else {
            return;
        };
        let Some(active) = self.segments.last() else {
            return;
        };
        let empty = !active.sealed && active.len == SEGMENT_HEADER_LEN as u64;
        if empty && self.buf.is_empty() && active.codec != Codec::Legacy {
            active
                .codec
                .encode_seal_note(&mut self.buf, active.len, now, note);
            self.note_due = None;
        }
    }

    /// Whether a sync marker still fits in the active segment after the buffer (never
    /// in a segment of an older format version: the writer only appends to its own).
    fn marker_fits(&self) -> bool {
        let buffered = self.buf.len() as u64;
        match self.segments.last() {
            Some(s) if !s.sealed && s.codec != Codec::Legacy => {
                s.len + buffered + MARKER_LEN as u64 <= self.config.max_segment_size
            }
            _ => false,
        }
    }

    /// Buffers a sync marker for segments up to `synced`, unless one was written
    /// already. Time never rotates a segment for a marker, nor does a batch: without
    /// room the marker waits for the next segment's first batch, or for a durable
    /// answer ([`settle_seals`](Self::settle_seals)), which makes room.
    fn buffer_marker(&mut self, synced: u64, now: u64) {
        let Some(active) = self.segments.last() else {
            return;
        };
        if synced > self.marked_through && active.codec != Codec::Legacy {
            let at = active.len + self.buf.len() as u64;
            active.codec.encode_marker(&mut self.buf, at, now, synced);
            self.marked_through = synced;
        }
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

    /// Encodes the records of `batch[from..]` into the buffer; true if any of
    /// those requests needs a sync.
    fn encode_requests(
        &mut self,
        batch: &[Request],
        from: usize,
        now: u64,
        pending: &mut Vec<Pending>,
    ) -> Result<bool> {
        let mut need_sync = false;
        for (ri, request) in batch.iter().enumerate().skip(from) {
            match request {
                Request::Append {
                    key,
                    value,
                    durable,
                    ..
                } => {
                    self.encode(ri, 0, key, value, now, pending)?;
                    need_sync |= durable;
                }
                Request::Batch {
                    entries, durable, ..
                } => {
                    for (ei, (key, value)) in entries.iter().enumerate() {
                        self.encode(ri, ei, key, value, now, pending)?;
                    }
                    need_sync |= durable;
                }
                Request::Sync { .. } => need_sync = true,
                Request::Retire { .. } => {}
            }
        }
        Ok(need_sync)
    }

    fn encode(
        &mut self,
        ri: usize,
        ei: usize,
        key: &[u8],
        value: &[u8],
        now: u64,
        pending: &mut Vec<Pending>,
    ) -> Result<()> {
        let len = encoded_len(key.len(), value.len());
        self.ensure_room(len as u64, now)?;
        let Some(active) = self.segments.last_mut() else {
            return Err(WalError::ShardStopped {
                shard: self.shared.id,
            });
        };
        let at = active.len + self.buf.len() as u64;
        let (Ok(offset), Ok(len32)) = (u32::try_from(at), u32::try_from(len)) else {
            // Unreachable with validated options (see `ensure_room`); refused rather
            // than written where the index could not find it.
            return Err(WalError::invalid(
                "max_segment_size",
                format!("a {len}-byte record at offset {at} would end past u32::MAX"),
            ));
        };
        active
            .codec
            .encode_into(&mut self.buf, at, self.next_seq, now, key, value);
        self.next_seq += 1;
        active.records += 1;
        active.newest_us = active.newest_us.max(now);
        if let Some(seen) = self.ahead.get_mut(&active.sequence) {
            *seen = (*seen).max(now);
        }
        pending.push((
            ri,
            ei,
            Location {
                segment: active.sequence,
                offset,
                len: len32,
            },
        ));
        if self.buf.len() >= WRITE_CHUNK {
            self.flush_buf()?;
        }
        Ok(())
    }

    /// Makes sure the active segment can take a record of `len` bytes, rotating by
    /// size or age (and creating the first segment lazily).
    ///
    /// The size rule (`WalOptions::max_segment_size` is a threshold): a segment that
    /// holds a record is sealed before a record would take it past the threshold; one
    /// that holds none (a fresh segment: its header, its seal note, perhaps a sync
    /// marker) takes the record whatever its size, so a record larger than the
    /// threshold gets a segment of its own. Whatever the threshold, a segment never
    /// grows past [`MAX_SEGMENT_SIZE`]: the 32-bit offsets of the index could not
    /// name what lay beyond. A fresh segment always has room for one maximal
    /// record (validation bounds keys and values), so rotating makes room.
    fn ensure_room(&mut self, len: u64, now: u64) -> Result<()> {
        let buffered = self.buf.len() as u64;
        let rotate = match self.segments.last() {
            // A recovered active segment of an older format version is sealed before
            // the first record: the writer appends only in its own format.
            Some(s) if !s.sealed && s.codec != Codec::Legacy => {
                let end = s.len.saturating_add(buffered).saturating_add(len);
                (s.records > 0 && end > self.config.max_segment_size.min(MAX_SEGMENT_SIZE))
                    || self.due_by_age(s, now)
            }
            _ => true,
        };
        if rotate {
            self.rotate(now)?;
        }
        Ok(())
    }

    /// Writes out the buffer, seals the active segment (if any) and starts the next.
    fn rotate(&mut self, now: u64) -> Result<()> {
        self.flush_buf()?;
        self.seal_active()?;
        self.create_segment(now)
    }

    fn create_segment(&mut self, now: u64) -> Result<()> {
        debug_assert!(
            self.buf.is_empty(),
            "a rotation writes the buffer out first"
        );
        let sequence = self.next_sequence;
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            shard: self.shard(),
            sequence,
            created_us: now,
            salt: self.config.salt,
        };
        let io = self
            .storage
            .create_segment(self.shard(), sequence, &header.encode())?;
        self.next_sequence += 1;
        let published = self.shared.index.add_segment(
            sequence,
            io.clone(),
            SEGMENT_HEADER_LEN as u64,
            header.codec(),
        );
        self.segments.push(Segment {
            sequence,
            io,
            created_us: now,
            newest_us: now,
            len: SEGMENT_HEADER_LEN as u64,
            allocated: SEGMENT_HEADER_LEN as u64,
            published,
            records: 0,
            sealed: false,
            codec: header.codec(),
        });
        // The header is not yet synced: the next sync of this segment covers it. Its
        // name is made durable by the syncer, which every durable answer waits for.
        self.dirty = true;
        self.syncer.submit_dir()?;
        Counters::add(&self.shared.counters.segments, 1);
        Counters::add(&self.shared.counters.bytes, SEGMENT_HEADER_LEN as u64);
        // The note for the segment sealed last (even one retention has dropped since:
        // its file may outlive a crash), first in the segment and written with the
        // batch that follows, so the segment holds records only after it.
        self.buffer_due_note(now);
        Ok(())
    }

    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.storage.preallocation_chunk();
        let max = self.config.max_segment_size;
        let Some(active) = self.segments.last_mut() else {
            return Err(WalError::ShardStopped {
                shard: self.shared.id,
            });
        };
        let end = active.len + self.buf.len() as u64;
        if chunk > 0 && end > active.allocated {
            // Reserve the next chunk (never past the rotation threshold, nor past
            // the data once a record larger than the threshold took the segment
            // beyond it) so that the fdatasyncs of the coming batches only flush data
            // blocks.
            let target = (end + chunk).min(max).max(end);
            active
                .io
                .preallocate(target)
                .map_err(|e| WalError::io("preallocating", active.io.path(), e))?;
            active.allocated = target;
        }
        active
            .io
            .write_at(&self.buf, active.len)
            .map_err(|e| WalError::io("writing", active.io.path(), e))?;
        active.len += self.buf.len() as u64;
        Counters::add(&self.shared.counters.bytes, self.buf.len() as u64);
        self.buf.clear();
        self.dirty = true;
        Ok(())
    }

    fn sync_active(&mut self) -> Result<()> {
        let Some(active) = self.segments.last() else {
            return Ok(());
        };
        // fdatasync: the durability promise of this batch (group commit); one call
        // covers every record written to this segment so far.
        let started = std::time::Instant::now();
        active
            .io
            .sync_data()
            .map_err(|e| WalError::io("syncing", active.io.path(), e))?;
        self.shared.record_sync(started.elapsed());
        Counters::add(&self.shared.counters.fsyncs, 1);
        self.dirty = false;
        Ok(())
    }

    /// Seals the active segment (if any): cut to its data, closed to appends, and
    /// handed to the syncer, which fsyncs it off this thread.
    fn seal_active(&mut self) -> Result<()> {
        match self.segments.last() {
            Some(s) if !s.sealed => {}
            _ => return Ok(()),
        }
        // Cut here, not by the syncer: after a process crash (page cache intact) every
        // sealed segment then ends exactly at its last record.
        self.release_preallocation()?;
        let Some(s) = self.segments.last_mut() else {
            return Ok(());
        };
        s.sealed = true;
        s.published
            .store(s.len, std::sync::atomic::Ordering::Release);
        let (sequence, io) = (s.sequence, s.io.clone());
        self.note_due = Some(SealNote {
            sequence,
            len: s.len,
        });
        // The syncer owns this segment's durability now; the next sync is the next
        // segment's.
        self.dirty = false;
        self.syncer.submit(sequence, io)
    }

    /// Cuts the active segment's preallocated zeros, so that a sealed or cleanly
    /// closed segment ends exactly at its last record. Returns whether it cut (the
    /// new length is durable only after the file's next `sync_all`).
    fn release_preallocation(&mut self) -> Result<bool> {
        let Some(active) = self.segments.last_mut() else {
            return Ok(false);
        };
        if active.allocated <= active.len {
            return Ok(false);
        }
        active
            .io
            .cut_to(active.len)
            .map_err(|e| WalError::io("truncating preallocated tail of", active.io.path(), e))?;
        active.allocated = active.len;
        Ok(true)
    }

    /// Whether segment `s` is old enough to be sealed: `segment_duration` after its
    /// creation, or at once if it was created later than `now` (a clock that stepped
    /// back, or files from a machine with a fast clock): its age cannot be known,
    /// and waiting for the clock to catch up could take years. The segment that
    /// replaces it is dated by the clock as it is, so each step back costs at most
    /// one rotation.
    fn due_by_age(&self, s: &Segment, now: u64) -> bool {
        s.created_us > now || now - s.created_us >= self.config.segment_duration_us
    }

    /// Notes every segment whose newest record is later than `now`, as first seen
    /// now (see `ahead`).
    fn note_ahead(&mut self, now: u64) {
        for s in &self.segments {
            if s.newest_us > now {
                self.ahead.entry(s.sequence).or_insert(now);
            }
        }
    }

    /// The time retention takes for segment `s`'s newest record: its timestamp, or
    /// if that lay ahead of the clock, when this actor first saw it so (or wrote
    /// its newest record since). A record from the future thus expires at most
    /// `entry_retention` after it was first seen, not years later.
    fn newest_seen(&self, s: &Segment) -> u64 {
        self.ahead
            .get(&s.sequence)
            .map_or(s.newest_us, |&seen| seen.min(s.newest_us))
    }

    /// Compaction's install step (see `compaction.rs`).
    fn retire(&mut self, cutoff_us: u64) -> Result<Vec<RetiredSegment>> {
        let now = now_us();
        self.note_ahead(now);
        let seal = self.segments.last().is_some_and(|active| {
            // Not one without records (sync markers and notes at most): retiring it
            // would only make the next durable call start another, and every later
            // compaction of an idle shard retire that one in turn.
            !active.sealed
                && active.records > 0
                && (self.due_by_age(active, now) || self.newest_seen(active) < cutoff_us)
        });
        if seal {
            self.seal_active()?;
        }
        let expired = expired_prefix(
            self.segments
                .iter()
                .map(|s| (s.sealed, self.newest_seen(s))),
            cutoff_us,
        );
        let retired: Vec<RetiredSegment> = self
            .segments
            .drain(..expired)
            .map(|s| RetiredSegment {
                sequence: s.sequence,
                bytes: s.len,
                records: s.records,
            })
            .collect();
        let sequences: Vec<u64> = retired.iter().map(|r| r.sequence).collect();
        if let Some(&newest_retired) = sequences.last() {
            // The retired are the oldest (a prefix, in order).
            self.ahead = match newest_retired.checked_add(1) {
                Some(first_kept) => self.ahead.split_off(&first_kept),
                None => Default::default(),
            };
        }
        self.shared.index.remove_segments(&sequences);
        self.shared.cache.forget_segments(&sequences);
        let c = &self.shared.counters;
        for r in &retired {
            Counters::sub(&c.records, r.records);
            Counters::sub(&c.bytes, r.bytes);
            Counters::sub(&c.segments, 1);
        }
        Ok(retired)
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
                self.marked_through,
                self.next_seq,
                &self.segments,
                &self.shared.index,
            )?;
        }
        Ok(())
    }

    /// Waits for pending seals, vouches for them, cuts the active segment's
    /// preallocated tail and fsyncs it.
    fn close_segments(&mut self) -> Result<()> {
        self.buf.clear();
        self.settle_seals(now_us())?;
        let cut = self.release_preallocation()?;
        let Some(active) = self.segments.last().filter(|s| !s.sealed) else {
            return Ok(());
        };
        if self.dirty || cut {
            // fsync (data and length): close promises that every acknowledged record
            // is durable, and a cleanly closed segment ends exactly at its last record.
            active
                .io
                .sync_all()
                .map_err(|e| WalError::io("syncing", active.io.path(), e))?;
            Counters::add(&self.shared.counters.fsyncs, 1);
            self.dirty = false;
        }
        Ok(())
    }
}

fn key_of(request: &Request, entry: usize) -> &[u8] {
    match request {
        Request::Append { key, .. } => key,
        Request::Batch { entries, .. } => &entries[entry].0,
        Request::Sync { .. } | Request::Retire { .. } => &[],
    }
}

/// A compaction install request still to answer: its cutoff and completer.
type Install = (u64, Completer<Vec<RetiredSegment>>);

/// Empties the batch into the completers of its appends and syncs (every one gets
/// the batch's result, answered together by [`complete_all`]) and its compaction
/// installs.
fn split_waiters(batch: &mut Vec<Request>) -> (Vec<Completer<()>>, Vec<Install>) {
    // Grown only by what the batch holds: a non-durable batch allocates nothing here.
    let mut waiting = Vec::new();
    let mut installs = Vec::new();
    for request in batch.drain(..) {
        match request {
            Request::Append { done, .. } | Request::Batch { done, .. } => waiting.extend(done),
            Request::Sync { done } => waiting.push(done),
            Request::Retire { cutoff_us, done } => installs.push((cutoff_us, done)),
        }
    }
    (waiting, installs)
}

/// How many segments, from the oldest, retention retires: the longest run of sealed
/// segments (given as `(sealed, newest record's time)`, oldest first) whose newest
/// record is older than `cutoff_us`. Only a prefix: a segment kept before a retired
/// one would leave a hole in its keys' histories, and a wall clock that stepped back
/// can make a later segment look older than an earlier one.
fn expired_prefix(segments: impl IntoIterator<Item = (bool, u64)>, cutoff_us: u64) -> usize {
    segments
        .into_iter()
        .take_while(|&(sealed, newest_us)| sealed && newest_us < cutoff_us)
        .count()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::{expired_prefix, idle_poll_after, IDLE_POLL, IDLE_POLL_AFTER_ANSWERS};

    #[test]
    fn an_actor_polls_long_only_after_answering_several_callers() {
        assert_eq!(idle_poll_after(0), IDLE_POLL);
        assert_eq!(idle_poll_after(1), IDLE_POLL, "a lone caller");
        assert_eq!(idle_poll_after(2), IDLE_POLL_AFTER_ANSWERS);
        assert_eq!(idle_poll_after(64), IDLE_POLL_AFTER_ANSWERS);
        assert!(IDLE_POLL < IDLE_POLL_AFTER_ANSWERS);
    }

    #[test]
    fn retention_retires_only_the_oldest_expired_segments() {
        let cutoff = 100;
        assert_eq!(expired_prefix([], cutoff), 0);
        assert_eq!(
            expired_prefix([(true, 10), (true, 50), (false, 60)], cutoff),
            2
        );
        // The active (unsealed) segment is never retired, however old.
        assert_eq!(expired_prefix([(true, 10), (false, 20)], cutoff), 1);
        // A newer segment in between stops the run: the older-looking one after it
        // (a clock that stepped back) stays with it.
        assert_eq!(
            expired_prefix([(true, 10), (true, 150), (true, 90)], cutoff),
            1
        );
        assert_eq!(expired_prefix([(true, 150), (true, 10)], cutoff), 0);
        // Newest record exactly at the cutoff is kept.
        assert_eq!(expired_prefix([(true, 100)], cutoff), 0);
    }
}
