//! Reading a key's records from a snapshot: positional reads, coalesced per segment,
//! through the shard's block cache.
//!
//! Locations of one key are in append order, hence in (segment, offset) order. Runs of
//! locations in the same segment that lie close together are fetched with one
//! `pread` and sliced. A run inside one 64 KiB block goes through the block cache
//! (`cache.rs`): other keys written in the same bursts then find their records there.
//! Every record's checksum and key are verified before its value is returned, so
//! damage that appears after open is reported, never returned as data.

use crate::cache::{BlockCache, BLOCK};
use crate::error::{Result, WalError};
use crate::index::{Location, SegmentEntry, Snapshot};
use crate::record::decode;
use crate::storage::SegmentIo;
use bytes::Bytes;
use std::sync::Arc;

/// Largest gap between two records that is still read through rather than skipped.
const MAX_GAP: u64 = 16 * 1024;
/// Largest single read.
const MAX_RUN: u64 = 4 * 1024 * 1024;

/// Reads every record of `key` named in `snapshot`, in order.
pub(crate) fn read_records(
    key: &[u8],
    snapshot: &Snapshot,
    cache: &BlockCache,
) -> Result<Vec<Bytes>> {
    let cached = cache.enabled();
    let locs = &snapshot.locations;
    let mut out = Vec::with_capacity(locs.len());
    let mut i = 0;
    while i < locs.len() {
        let first = locs[i];
        let start = u64::from(first.offset);
        let mut end = start + u64::from(first.len);
        let block_end = (start / BLOCK + 1) * BLOCK;
        let in_block = cached && end <= block_end;
        let mut j = i + 1;
        while j < locs.len() {
            let l = locs[j];
            let l_end = u64::from(l.offset) + u64::from(l.len);
            if l.segment != first.segment
                || u64::from(l.offset) < end
                || u64::from(l.offset) - end > MAX_GAP
                || l_end - start > MAX_RUN
                || (in_block && l_end > block_end)
            {
                break;
            }
            end = l_end;
            j += 1;
        }
        let entry = segment_entry(snapshot, first.segment, start)?;
        if in_block {
            read_block_run(key, entry, cache, &locs[i..j], end, &mut out)?;
        } else {
            read_run(key, &entry.io, &locs[i..j], start, end, &mut out)?;
        }
        i = j;
    }
    Ok(out)
}

fn segment_entry(snapshot: &Snapshot, sequence: u64, offset: u64) -> Result<&SegmentEntry> {
    snapshot.segments.get(&sequence).ok_or_else(|| {
        WalError::corruption(
            format!("segment {sequence}"),
            offset,
            "the index names a segment that is not open",
        )
    })
}

/// Checks the record at `at` in `buf` against its location and key; returns the
/// range of its value in `buf`.
fn checked_value(
    key: &[u8],
    io: &Arc<dyn SegmentIo>,
    loc: &Location,
    buf: &[u8],
    at: usize,
) -> Result<std::ops::Range<usize>> {
    let bytes = buf.get(at..at + loc.len as usize).ok_or_else(|| {
        WalError::corruption(
            io.path(),
            u64::from(loc.offset),
            "the segment file ends before the record",
        )
    })?;
    let record = decode(bytes)
        .map_err(|e| WalError::corruption(io.path(), u64::from(loc.offset), e.reason()))?;
    if record.synced_through.is_some() || record.key != key || record.len != loc.len as usize {
        return Err(WalError::corruption(
            io.path(),
            u64::from(loc.offset),
            "record does not match its index entry",
        ));
    }
    Ok(at + record.len - record.value.len()..at + record.len)
}

/// A run inside one block: served from the cache, or the whole block is read once.
fn read_block_run(
    key: &[u8],
    entry: &SegmentEntry,
    cache: &BlockCache,
    run: &[Location],
    end: u64,
    out: &mut Vec<Bytes>,
) -> Result<()> {
    let io = &entry.io;
    let segment = run[0].segment;
    let block = u64::from(run[0].offset) / BLOCK;
    let block_start = block * BLOCK;
    let bytes = match cache.get(segment, block, end) {
        Some(bytes) => bytes,
        None if !cache.should_fill() => {
            // Recent reads have no locality the cache can hold: read just this run.
            let start = u64::from(run[0].offset);
            return read_run(key, io, run, start, end, out);
        }
        None => {
            // Loaded before the read: every byte below it is written by then, so the
            // block read next holds it. (Loaded after, it could name bytes written
            // after the read, and the cache would serve stale zeros.)
            let published = entry.published.load(std::sync::atomic::Ordering::Acquire);
            let mut buf = vec![0u8; BLOCK as usize];
            let n = io
                .read_up_to(&mut buf, block_start)
                .map_err(|e| WalError::io("reading", io.path(), e))?;
            buf.truncate(n);
            let bytes = Bytes::from(buf);
            // Final: this run's bytes (published before the snapshot was taken), and
            // everything the actor had published before the read.
            cache.put(segment, block, bytes.clone(), end.max(published));
            bytes
        }
    };
    for loc in run {
        let at = (u64::from(loc.offset) - block_start) as usize;
        let value = checked_value(key, io, loc, &bytes, at)?;
        // Copied out: a caller keeping one record must not pin a 64 KiB block.
        out.push(Bytes::copy_from_slice(&bytes[value]));
    }
    Ok(())
}

fn read_run(
    key: &[u8],
    io: &Arc<dyn SegmentIo>,
    run: &[Location],
    start: u64,
    end: u64,
    out: &mut Vec<Bytes>,
) -> Result<()> {
    let mut buf = vec![0u8; (end - start) as usize];
    io.read_at(&mut buf, start)
        .map_err(|e| WalError::io("reading", io.path(), e))?;
    let buf = Bytes::from(buf);
    for loc in run {
        let at = (u64::from(loc.offset) - start) as usize;
        let value = checked_value(key, io, loc, &buf, at)?;
        out.push(buf.slice(value));
    }
    Ok(())
}
