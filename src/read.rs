//! Reading a key's records from a snapshot: positional reads, coalesced per segment.
//!
//! Locations of one key are in append order, hence in (segment, offset) order. Runs of
//! locations in the same segment that lie close together are fetched with one
//! `pread` and sliced; every record's checksum and key are verified before its value
//! is returned, so damage that appears after open is reported, never returned as data.

use crate::error::{Result, WalError};
use crate::index::{Location, Snapshot};
use crate::record::decode;
use bytes::Bytes;

/// Largest gap between two records that is still read through rather than skipped.
const MAX_GAP: u64 = 16 * 1024;
/// Largest single read.
const MAX_RUN: u64 = 4 * 1024 * 1024;

/// Reads every record of `key` named in `snapshot`, in order.
pub(crate) fn read_records(key: &[u8], snapshot: &Snapshot) -> Result<Vec<Bytes>> {
    let locs = &snapshot.locations;
    let mut out = Vec::with_capacity(locs.len());
    let mut i = 0;
    while i < locs.len() {
        let first = locs[i];
        let start = u64::from(first.offset);
        let mut end = start + u64::from(first.len);
        let mut j = i + 1;
        while j < locs.len() {
            let l = locs[j];
            let l_end = u64::from(l.offset) + u64::from(l.len);
            if l.segment != first.segment
                || u64::from(l.offset) < end
                || u64::from(l.offset) - end > MAX_GAP
                || l_end - start > MAX_RUN
            {
                break;
            }
            end = l_end;
            j += 1;
        }
        read_run(key, snapshot, &locs[i..j], start, end, &mut out)?;
        i = j;
    }
    Ok(out)
}

fn read_run(
    key: &[u8],
    snapshot: &Snapshot,
    run: &[Location],
    start: u64,
    end: u64,
    out: &mut Vec<Bytes>,
) -> Result<()> {
    let sequence = run[0].segment;
    let Some(io) = snapshot.segments.get(&sequence) else {
        return Err(WalError::corruption(
            format!("segment {sequence}"),
            start,
            "the index names a segment that is not open",
        ));
    };
    let mut buf = vec![0u8; (end - start) as usize];
    io.read_at(&mut buf, start)
        .map_err(|e| WalError::io("reading", io.path(), e))?;
    let buf = Bytes::from(buf);
    for loc in run {
        let at = (u64::from(loc.offset) - start) as usize;
        let bytes = &buf[at..at + loc.len as usize];
        let record = decode(bytes)
            .map_err(|e| WalError::corruption(io.path(), u64::from(loc.offset), e.reason()))?;
        if record.key != key || record.len != loc.len as usize {
            return Err(WalError::corruption(
                io.path(),
                u64::from(loc.offset),
                "record does not match its index entry",
            ));
        }
        let value_start = at + record.len - record.value.len();
        out.push(buf.slice(value_start..at + record.len));
    }
    Ok(())
}
