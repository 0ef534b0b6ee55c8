//! A shard's segments as its writer keeps them ([`Segment`]), and how the actor
//! creates, rotates, preallocates, syncs and seals the active one.

use crate::error::{Result, WalError};
use crate::format::record::{Codec, SealNote};
use crate::format::segment_header::{SegmentHeader, FORMAT_VERSION, SEGMENT_HEADER_LEN};
use crate::io::SegmentIo;
use crate::options::MAX_SEGMENT_SIZE;
use crate::shard::Counters;
use crate::sync::now_us;
use crate::writer::actor::Actor;
use std::sync::Arc;

/// What a shard knows about one of its segments.
#[derive(Clone)]
pub(crate) struct Segment {
    pub(crate) sequence: u64,
    pub(crate) io: Arc<dyn SegmentIo>,
    pub(crate) created_us: u64,
    /// Newest record timestamp (the creation time while empty).
    pub(crate) newest_us: u64,
    /// Bytes written, header included; the next record goes here.
    pub(crate) len: u64,
    /// Length of the file: `len` plus preallocated zeros (only in the active segment).
    pub(crate) allocated: u64,
    /// `len` as far as readers may rely on it (see `index::PublishedLen`).
    pub(crate) published: crate::index::PublishedLen,
    pub(crate) records: u64,
    /// Fsynced and closed to appends.
    pub(crate) sealed: bool,
    /// How its records are encoded; the writer appends only to [`Codec::Bound`]
    /// segments.
    pub(crate) codec: Codec,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("sequence", &self.sequence)
            .field("path", &self.io.path())
            .field("len", &self.len)
            .field("records", &self.records)
            .field("sealed", &self.sealed)
            .finish()
    }
}

impl Actor {
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
    pub(super) fn ensure_room(&mut self, len: u64, now: u64) -> Result<()> {
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

    /// Whether segment `s` is old enough to be sealed: `segment_duration` after its
    /// creation, or at once if it was created later than `now` (a clock that stepped
    /// back, or files from a machine with a fast clock): its age cannot be known,
    /// and waiting for the clock to catch up could take years. The segment that
    /// replaces it is dated by the clock as it is, so each step back costs at most
    /// one rotation.
    pub(super) fn due_by_age(&self, s: &Segment, now: u64) -> bool {
        s.created_us > now || now - s.created_us >= self.config.segment_duration_us
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

    pub(super) fn flush_buf(&mut self) -> Result<()> {
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

    pub(super) fn sync_active(&mut self) -> Result<()> {
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

    /// Waits for every pending seal and writes (not syncs) a sync marker vouching for
    /// them: the caller's fsync of the active segment then makes the marker durable
    /// with the records it acknowledges. So a durable answer always leaves a marker
    /// for every sealed segment before it; without one, recovery would take bit rot
    /// near the end of such a segment for an unfinished seal and drop every later
    /// segment, acknowledged records included.
    pub(super) fn settle_seals(&mut self, now: u64) -> Result<()> {
        let mut synced = self.syncer.wait_all()?;
        if synced > self.synced_through && !self.marker_fits() {
            // No room for the marker (or no open segment): seal the full segment, start
            // the next, and once the seal's fsync (and the new name's) are done, vouch
            // there for everything synced, the full segment included.
            self.rotate(now)?;
            synced = self.syncer.wait_all()?;
        }
        self.buffer_marker(synced, now);
        self.flush_buf()
    }

    /// Seals the active segment (if any): cut to its data, closed to appends, and
    /// handed to the syncer, which fsyncs it off this thread.
    pub(super) fn seal_active(&mut self) -> Result<()> {
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

    /// Waits for pending seals, vouches for them, cuts the active segment's
    /// preallocated tail and fsyncs it.
    pub(super) fn close_segments(&mut self) -> Result<()> {
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
