//! Reading a key's records from a snapshot: positional reads, coalesced per segment,
//! through the shard's block cache.
//!
//! Locations of one key are in append order, hence in (segment, offset) order. Runs of
//! locations in the same segment that lie close together are fetched with one
//! `pread` and sliced. A run inside one 64 KiB block goes through the block cache
//! (`cache.rs`): other keys written in the same bursts then find their records there.
//! Every record's checksum and key are verified before its value is returned, so
//! damage that appears after open is reported, never returned as data.

use crate::error::{Result, WalError};
use crate::index::{Location, SegmentEntry, Snapshot};
use crate::io::SegmentIo;
use crate::read::cache::{BlockCache, BLOCK};
use bytes::Bytes;
use std::sync::Arc;

/// Largest gap between two records that is still read through rather than skipped.
const MAX_GAP: u64 = 16 * 1024;
/// Largest single read.
const MAX_RUN: u64 = 4 * 1024 * 1024;

/// Runs whose bytes are fetched before any of them is decoded (see [`read_records`]).
const WINDOW: usize = 32;

/// The bytes of one run of locations, fetched and not yet decoded.
struct Fetched<'a> {
    io: &'a Arc<dyn SegmentIo>,
    codec: crate::format::record::Codec,
    run: &'a [Location],
    /// Holds every record of the run; `base` is the file offset of its first byte.
    buf: Bytes,
    base: u64,
    /// `buf` is a cached block: values are copied out, so that a caller keeping one
    /// record does not pin 64 KiB. Otherwise they are slices of `buf`.
    copy: bool,
}

/// Reads every record of `key` named in `snapshot`, in order.
///
/// Works through the runs a window at a time: first every run's bytes are fetched
/// (cache lookups and reads) and their records' cache lines prefetched, then the
/// records are checked and copied out. The records of one key usually lie in
/// different blocks, and checking each one straight after its lookup waited for its
/// bytes to come from memory one record at a time.
pub(crate) fn read_records(
    key: &[u8],
    snapshot: &Snapshot,
    cache: &BlockCache,
) -> Result<Vec<Bytes>> {
    let locs = &snapshot.locations;
    let mut out = Vec::with_capacity(locs.len());
    let mut window = Vec::with_capacity(WINDOW.min(locs.len()));
    let mut i = 0;
    while i < locs.len() {
        // A failed fetch is reported after the records before it are checked, so the
        // error is always the first one in append order.
        let mut failed = None;
        while i < locs.len() && window.len() < WINDOW {
            let fetched = match fetch_run(snapshot, cache, &locs[i..]) {
                Ok(fetched) => fetched,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            i += fetched.run.len();
            for loc in fetched.run {
                let at = (u64::from(loc.offset) - fetched.base) as usize;
                if let Some(record) = fetched.buf.get(at..at + loc.len as usize) {
                    prefetch(record);
                }
            }
            window.push(fetched);
        }
        for fetched in window.drain(..) {
            for loc in fetched.run {
                let at = (u64::from(loc.offset) - fetched.base) as usize;
                let value = checked_value(key, fetched.io, fetched.codec, loc, &fetched.buf, at)?;
                out.push(if fetched.copy {
                    Bytes::copy_from_slice(&fetched.buf[value])
                } else {
                    fetched.buf.slice(value)
                });
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(out)
}

/// Fetches the longest run at the start of `locs`: locations in the same segment
/// that lie close together, read with one `pread` and sliced; a run inside one
/// 64 KiB block goes through the block cache.
fn fetch_run<'a>(
    snapshot: &'a Snapshot,
    cache: &BlockCache,
    locs: &'a [Location],
) -> Result<Fetched<'a>> {
    let first = locs[0];
    let start = u64::from(first.offset);
    let mut end = start + u64::from(first.len);
    let block_end = (start / BLOCK + 1) * BLOCK;
    let in_block = cache.enabled() && end <= block_end;
    let mut j = 1;
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
    let run = &locs[..j];
    let io = &entry.io;
    let codec = entry.codec;
    if in_block {
        let block = start / BLOCK;
        // `None`: recent reads have no locality the cache can hold; read just this run.
        let cached =
            cache.get_or_fill(first.segment, block, end, || read_block(entry, block, end))?;
        if let Some(buf) = cached {
            return Ok(Fetched {
                io,
                codec,
                run,
                buf,
                base: block * BLOCK,
                copy: true,
            });
        }
    }
    let mut buf = vec![0u8; (end - start) as usize];
    io.read_at(&mut buf, start)
        .map_err(|e| WalError::io("reading", io.path(), e))?;
    Ok(Fetched {
        io,
        codec,
        run,
        buf: Bytes::from(buf),
        base: start,
        copy: false,
    })
}

/// Reads block `block` of `entry` whole, for the cache; `end` is the end of the run
/// the reader asked for (published before its snapshot was taken). Returns the block
/// and the end of its bytes known to be final.
fn read_block(entry: &SegmentEntry, block: u64, end: u64) -> Result<(Bytes, u64)> {
    let io = &entry.io;
    // Loaded before the read: every byte below it is written by then, so the block
    // read next holds it. (Loaded after, it could name bytes written after the read,
    // and the cache would serve stale zeros.)
    let published = entry.published.load(std::sync::atomic::Ordering::Acquire);
    let mut buf = vec![0u8; BLOCK as usize];
    let n = io
        .read_up_to(&mut buf, block * BLOCK)
        .map_err(|e| WalError::io("reading", io.path(), e))?;
    buf.truncate(n);
    // Final: the run's bytes, and everything the actor had published before the read.
    Ok((Bytes::from(buf), end.max(published)))
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

/// Asks the CPU to bring the first cache lines of `record` in (a hint: it reads
/// nothing and cannot fault).
#[inline]
fn prefetch(record: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for line in record.chunks(64).take(4) {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: SSE is part of every x86_64 target; a prefetch is a hint that
        // reads nothing architecturally and never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = record;
}

/// Checks the record at `at` in `buf` against its location and key; returns the
/// range of its value in `buf`.
fn checked_value(
    key: &[u8],
    io: &Arc<dyn SegmentIo>,
    codec: crate::format::record::Codec,
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
    let record = codec
        .decode(bytes, u64::from(loc.offset))
        .map_err(|e| WalError::corruption(io.path(), u64::from(loc.offset), e.reason()))?;
    if !record.is_data() || record.key != key || record.len != loc.len as usize {
        return Err(WalError::corruption(
            io.path(),
            u64::from(loc.offset),
            "record does not match its index entry",
        ));
    }
    Ok(at + record.len - record.value.len()..at + record.len)
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::format::record::{encoded_len, Codec};
    use crate::io::Storage;
    use crate::testing::mem_storage::MemStorage;

    const CODEC: Codec = Codec::Bound { seed: 0x00C0_FFEE };

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    /// Segment 1 of an in-memory shard holding `records` (key, value) from offset 0,
    /// and the location of each.
    fn segment(records: &[(&[u8], Vec<u8>)]) -> Result<(Arc<dyn SegmentIo>, Vec<Location>)> {
        let storage = MemStorage::default();
        let io = storage.create_segment(0, 1, &[])?;
        let (mut buf, mut locs) = (Vec::new(), Vec::new());
        for (key, value) in records {
            let len = encoded_len(key.len(), value.len());
            locs.push(Location {
                segment: 1,
                offset: buf.len() as u32,
                len: len as u32,
            });
            let at = buf.len() as u64;
            CODEC.encode_into(&mut buf, at, 1, 7, key, value);
        }
        io.write_at(&buf, 0)
            .map_err(|e| WalError::io("writing", io.path(), e))?;
        Ok((io, locs))
    }

    fn snapshot(io: Arc<dyn SegmentIo>, locations: Vec<Location>, len: u64) -> Snapshot {
        let entry = SegmentEntry {
            io,
            published: Arc::new(std::sync::atomic::AtomicU64::new(len)),
            codec: CODEC,
        };
        Snapshot {
            locations,
            segments: [(1, entry)].into_iter().collect(),
        }
    }

    /// More runs than one window, of every shape: several records in one run,
    /// runs of one block split by a gap, records that cross a block boundary (read
    /// directly). Every value comes back once, in order: cold, and over passes
    /// that fill the cache until it serves them; values served from cached blocks
    /// are copies, never slices that would pin a 64 KiB block.
    #[test]
    fn reads_windows_of_every_run_shape_in_order_cold_and_cached() -> TestResult {
        let values: Vec<Vec<u8>> = (0..5 * WINDOW as u32)
            .map(|i| i.to_le_bytes().repeat(1 + i as usize % 7))
            .collect();
        let fillers: Vec<Vec<u8>> = (0..values.len())
            .map(|i| vec![0xEE; MAX_GAP as usize + 1 + i * 997 % 9000])
            .collect();
        let mut records: Vec<(&[u8], Vec<u8>)> = Vec::new();
        let mut pos = 0;
        for (i, v) in values.iter().enumerate() {
            if i % 50 == 49 {
                // Ends 10 bytes before the next block: the record after it crosses.
                let boundary = (pos / BLOCK as usize + 2) * BLOCK as usize;
                let filler = vec![0xDD; boundary - 10 - pos - encoded_len(5, 0)];
                pos += encoded_len(5, filler.len());
                records.push((b"other", filler));
            }
            records.push((b"k", v.clone()));
            pos += encoded_len(1, v.len());
            if i % 3 == 2 {
                // Past MAX_GAP: the next record starts a new run.
                pos += encoded_len(5, fillers[i].len());
                records.push((b"other", fillers[i].clone()));
            }
        }
        let (io, locs) = segment(&records)?;
        let end = locs.last().map_or(0, |l| u64::from(l.offset + l.len));
        let mine: Vec<Location> = locs
            .iter()
            .zip(&records)
            .filter(|(_, (key, _))| *key == b"k")
            .map(|(loc, _)| *loc)
            .collect();
        let crosses =
            |l: &Location| u64::from(l.offset) / BLOCK != (u64::from(l.offset + l.len) - 1) / BLOCK;
        assert!(
            mine.iter().any(crosses),
            "the test needs a record across a block boundary"
        );
        let blocks = end / BLOCK + 1;
        let snap = snapshot(io, mine, end);
        let want: Vec<&[u8]> = values.iter().map(|v| &v[..]).collect();
        // Off, and large enough for every block.
        for cache_bytes in [0, 2 * blocks as usize * BLOCK as usize] {
            let cache = BlockCache::new(cache_bytes);
            for pass in 0..40 {
                let got = read_records(b"k", &snap, &cache)?;
                let got_slices: Vec<&[u8]> = got.iter().map(|b| &b[..]).collect();
                assert_eq!(got_slices, want, "cache {cache_bytes} B, pass {pass}");
                for block in (0..blocks).filter_map(|b| cache.get(1, b, 0)) {
                    let held = block.as_ptr_range();
                    assert!(
                        got.iter().all(|v| !held.contains(&v.as_ptr())),
                        "a value points into a cached block"
                    );
                }
            }
            if cache_bytes > 0 {
                for l in snap.locations.iter().filter(|l| !crosses(l)) {
                    let block = u64::from(l.offset) / BLOCK;
                    assert!(
                        cache.get(1, block, 0).is_some(),
                        "after 40 passes block {block} is cached"
                    );
                }
            }
        }
        Ok(())
    }

    /// A record that fails its check is reported even when a run after it in the
    /// same window cannot be fetched: the first problem in append order wins.
    #[test]
    fn the_first_damaged_record_is_reported_before_a_later_fetch_error() -> TestResult {
        let (io, mut locs) = segment(&[(b"k", vec![1; 50]), (b"k", vec![2; 50])])?;
        // Flip a value byte of the first record.
        let mut byte = [0u8; 1];
        let at = u64::from(locs[0].offset + locs[0].len) - 1;
        io.read_at(&mut byte, at)?;
        io.write_at(&[byte[0] ^ 0x40], at)?;
        // The second record is said to live in a segment the snapshot does not hold.
        locs[1].segment = 9;
        let snap = snapshot(io, locs, 1 << 20);
        match read_records(b"k", &snap, &BlockCache::new(0)) {
            Err(WalError::Corruption { offset, reason, .. }) => {
                assert_eq!(offset, 0, "{reason}");
                assert!(!reason.contains("not open"), "{reason}");
            }
            other => panic!("expected the first record's corruption, got {other:?}"),
        }
        Ok(())
    }
}
