//! A batch as the actor writes it: its records encoded into the write buffer (with
//! the seal note and sync marker the active segment owes), where each record goes,
//! and the callers to answer once it is written.

use crate::error::{Result, WalError};
use crate::format::record::{encoded_len, Codec, MARKER_LEN};
use crate::format::segment_header::SEGMENT_HEADER_LEN;
use crate::index::Location;
use crate::shard::{Request, RetiredSegment};
use crate::sync::completion::Completer;
use crate::writer::actor::Actor;

/// Encoded bytes the actor buffers before writing them, even within a batch: a
/// 1,024-request batch of 4 KiB values would otherwise build a 4 MiB buffer, larger
/// than a typical L2 cache, and the kernel's copy into the page cache would then read
/// it back from memory.
const WRITE_CHUNK: usize = 128 * 1024;

/// Where a record of the current batch goes, published once the batch is written.
#[derive(Debug, Clone, Copy)]
pub(super) struct Pending {
    /// Index of its request in the batch.
    pub(super) request: usize,
    /// Index of the record within that request (0 for a lone append).
    pub(super) entry: usize,
    pub(super) location: Location,
}

/// The key of record `entry` of `request`.
pub(super) fn key_of(request: &Request, entry: usize) -> &[u8] {
    match request {
        Request::Append { key, .. } => key,
        Request::Batch { entries, .. } => &entries[entry].0,
        Request::Sync { .. } | Request::Retire { .. } => &[],
    }
}

/// A compaction install request still to answer.
pub(super) struct Install {
    pub(super) cutoff_us: u64,
    pub(super) done: Completer<Vec<RetiredSegment>>,
}

/// The callers a written batch answers.
pub(super) struct Waiters {
    /// Durable appends and syncs: every one gets the batch's result, answered
    /// together by [`complete_all`](crate::sync::completion::complete_all).
    pub(super) appends: Vec<Completer<()>>,
    /// Compaction installs, each answered after its own install step.
    pub(super) installs: Vec<Install>,
}

impl Waiters {
    /// Empties the batch into the completers of its waiting callers.
    pub(super) fn take(batch: &mut Vec<Request>) -> Waiters {
        // Grown only by what the batch holds: a non-durable batch allocates nothing here.
        let mut waiters = Waiters {
            appends: Vec::new(),
            installs: Vec::new(),
        };
        for request in batch.drain(..) {
            match request {
                Request::Append { done, .. } | Request::Batch { done, .. } => {
                    waiters.appends.extend(done)
                }
                Request::Sync { done } => waiters.appends.push(done),
                Request::Retire { cutoff_us, done } => {
                    waiters.installs.push(Install { cutoff_us, done })
                }
            }
        }
        waiters
    }

    /// How many callers wait for these answers.
    pub(super) fn len(&self) -> usize {
        self.appends.len() + self.installs.len()
    }
}

impl Actor {
    /// Buffers the seal note the active segment owes, if it holds nothing yet (the
    /// buffer is empty: the note goes first).
    pub(super) fn buffer_due_note(&mut self, now: u64) {
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
    pub(super) fn marker_fits(&self) -> bool {
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
    pub(super) fn buffer_marker(&mut self, synced: u64, now: u64) {
        let Some(active) = self.segments.last() else {
            return;
        };
        if synced > self.synced_through && active.codec != Codec::Legacy {
            let at = active.len + self.buf.len() as u64;
            active.codec.encode_marker(&mut self.buf, at, now, synced);
            self.synced_through = synced;
        }
    }

    /// Encodes the records of `batch[from..]` into the buffer; true if any of
    /// those requests needs a sync.
    pub(super) fn encode_requests(
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

    /// Encodes record `ei` of request `ri` into the buffer, rotating first if the
    /// active segment has no room for it, and notes where it goes.
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
        pending.push(Pending {
            request: ri,
            entry: ei,
            location: Location {
                segment: active.sequence,
                offset,
                len: len32,
            },
        });
        if self.buf.len() >= WRITE_CHUNK {
            self.flush_buf()?;
        }
        Ok(())
    }
}
