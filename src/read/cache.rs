//! A shard's block cache for reads: 64 KiB blocks of segment files, so that reading
//! keys whose records were appended close together (a replay, keys written in the
//! same bursts) costs one `pread` per block instead of one per record.
//!
//! **Why a cached block is never stale.** Records are only appended, and the actor
//! publishes a record's location only after the write that holds it returned, after
//! every earlier write to the segment. So when a reader holds a published location in
//! a segment, every byte of that segment before the record's end is written and final
//! (bytes are never rewritten: compaction removes whole segments, whose sequence
//! numbers are never reused). A block is cached together with `valid_end`, the end of
//! the furthest record the reader that fetched it knew to be published; only bytes
//! below `valid_end` are ever served from it. A record beyond it is read again, and
//! the fresh block replaces the old one.
//!
//! Values are copied out of a block, so a caller holding a record never pins 64 KiB.
//! A capacity of 0 turns the cache off (the loom models do, so they see no extra
//! lock).

use crate::error::Result;
use crate::sync::{lock, Mutex};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};

/// Bytes per cached block.
pub(crate) const BLOCK: u64 = 64 * 1024;

/// A block and the end of the bytes in it known to be final.
struct Block {
    bytes: Bytes,
    valid_end: u64,
}

#[derive(Default)]
struct Blocks {
    map: HashMap<(u64, u64), Block>,
    /// Insertion order for eviction; each key at most once.
    fifo: VecDeque<(u64, u64)>,
    bytes: usize,
}

/// Locks a shard's cache is split over, so that many readers of one shard rarely
/// wait for each other.
const PARTS: usize = 16;

/// One shard's cache: `PARTS` independent parts, a block's part chosen by its number.
pub(crate) struct BlockCache {
    /// Capacity of each part.
    capacity: usize,
    parts: Vec<Mutex<Blocks>>,
    /// Recent lookups that hit / missed (halved now and then): when most miss, the
    /// reads have no locality the cache can hold (scans bigger than it), and a miss
    /// reads just its record instead of a whole block. Statistics: relaxed std atomics.
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
    /// Set at the first eviction, or the first time a cached block is read again
    /// because the bytes a reader needs were not final in it (a reader following the
    /// tail). Until then the cache has room for every block it reads, and every miss
    /// fills: an empty cache has no hits to judge locality by (every lookup misses,
    /// whatever the reads look like), and filling it is the only way to find out.
    /// What that can waste is bounded: at most one cache's worth of block reads, once.
    warmed_up: std::sync::atomic::AtomicBool,
    /// Segments below this were removed by compaction (which removes the oldest):
    /// a reader that still held one in its snapshot must not cache its blocks again.
    /// Were a live segment ever below it, its blocks would merely not be cached.
    removed_below: std::sync::atomic::AtomicU64,
}

/// Lookups after which the hit/miss counts are halved (so they follow the workload).
const WINDOW: u64 = 4096;
/// While too many lookups miss, one miss in this many still fills its block, so that
/// the cache notices when locality comes back.
const PROBE: u64 = 16;
/// A miss that fills reads a whole block, many times the cost of a direct read of one
/// record, and a hit costs less than a direct read: filling pays only while at least
/// this many lookups hit per miss (about 97%).
const HITS_PER_MISS: u64 = 32;

impl BlockCache {
    /// A cache holding up to `capacity` bytes (0: off).
    pub(crate) fn new(capacity: usize) -> BlockCache {
        let parts = if capacity >= PARTS * BLOCK as usize {
            PARTS
        } else {
            1
        };
        BlockCache {
            capacity: capacity / parts,
            parts: (0..parts).map(|_| Mutex::new(Blocks::default())).collect(),
            hits: Default::default(),
            misses: Default::default(),
            warmed_up: Default::default(),
            removed_below: Default::default(),
        }
    }

    /// Whether reads should go through the cache at all.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity >= BLOCK as usize
    }

    fn part(&self, segment: u64, block: u64) -> &Mutex<Blocks> {
        let i = (segment.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ block) as usize % self.parts.len();
        &self.parts[i]
    }

    /// Block `block` of segment `segment` with every byte below `end` final, read
    /// through the cache: a cached copy, or else the block `read` returns (with the
    /// end of its bytes known to be final), which is kept. `None` when the block is
    /// not cached and recent lookups mostly missed ([`should_fill`](Self::should_fill)):
    /// the caller then reads just the bytes it needs.
    pub(crate) fn get_or_fill(
        &self,
        segment: u64,
        block: u64,
        end: u64,
        read: impl FnOnce() -> Result<(Bytes, u64)>,
    ) -> Result<Option<Bytes>> {
        if let Some(bytes) = self.get(segment, block, end) {
            return Ok(Some(bytes));
        }
        if !self.should_fill() {
            return Ok(None);
        }
        let (bytes, valid_end) = read()?;
        self.put(segment, block, bytes.clone(), valid_end);
        Ok(Some(bytes))
    }

    /// Block `block` of segment `segment`, if cached with every byte below `end`
    /// known to be final.
    pub(crate) fn get(&self, segment: u64, block: u64, end: u64) -> Option<Bytes> {
        use std::sync::atomic::Ordering::Relaxed;
        let found = {
            let blocks = lock(self.part(segment, block));
            blocks
                .map
                .get(&(segment, block))
                .filter(|b| end <= b.valid_end)
                .map(|b| b.bytes.clone())
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Relaxed);
        if self.hits.load(Relaxed) + self.misses.load(Relaxed) > WINDOW {
            self.hits.store(self.hits.load(Relaxed) / 2, Relaxed);
            self.misses.store(self.misses.load(Relaxed) / 2, Relaxed);
        }
        found
    }

    /// After a miss: whether to read and keep the whole block (the cache has never
    /// been full, recent lookups nearly all hit, or this is a probe) rather than read
    /// just the records asked for.
    fn should_fill(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if !self.warmed_up.load(Relaxed) {
            return true;
        }
        let (hits, misses) = (self.hits.load(Relaxed), self.misses.load(Relaxed));
        hits >= misses.saturating_sub(1) * HITS_PER_MISS || misses % PROBE == 0
    }

    /// Caches a block read from disk whose bytes below `valid_end` are final.
    fn put(&self, segment: u64, block: u64, bytes: Bytes, valid_end: u64) {
        if segment
            < self
                .removed_below
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let mut blocks = lock(self.part(segment, block));
        let len = bytes.len();
        let new = Block { bytes, valid_end };
        match blocks.map.insert((segment, block), new) {
            Some(old) => {
                blocks.bytes = blocks.bytes - old.bytes.len() + len;
                self.warmed_up
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            None => {
                blocks.fifo.push_back((segment, block));
                blocks.bytes += len;
            }
        }
        while blocks.bytes > self.capacity {
            let Some(oldest) = blocks.fifo.pop_front() else {
                break;
            };
            if let Some(gone) = blocks.map.remove(&oldest) {
                blocks.bytes -= gone.bytes.len();
                self.warmed_up
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Drops every block of the `removed` segments (compaction).
    pub(crate) fn forget_segments(&self, removed: &[u64]) {
        if !self.enabled() || removed.is_empty() {
            return;
        }
        if let Some(&newest) = removed.last() {
            self.removed_below
                .fetch_max(newest + 1, std::sync::atomic::Ordering::Relaxed);
        }
        for part in &self.parts {
            let mut blocks = lock(part);
            let Blocks { map, fifo, bytes } = &mut *blocks;
            fifo.retain(|(segment, block)| {
                if removed.binary_search(segment).is_err() {
                    return true;
                }
                if let Some(gone) = map.remove(&(*segment, *block)) {
                    *bytes -= gone.bytes.len();
                }
                false
            });
        }
    }

    /// Bytes held.
    pub(crate) fn len_bytes(&self) -> usize {
        self.parts.iter().map(|p| lock(p).bytes).sum()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn block(fill: u8) -> Bytes {
        Bytes::from(vec![fill; BLOCK as usize])
    }

    #[test]
    fn serves_only_bytes_known_to_be_final() {
        let cache = BlockCache::new(4 * BLOCK as usize);
        cache.put(1, 0, block(1), 100);
        assert!(cache.get(1, 0, 100).is_some());
        assert!(cache.get(1, 0, 101).is_none(), "beyond valid_end");
        assert!(cache.get(1, 1, 10).is_none(), "another block");
        assert!(cache.get(2, 0, 10).is_none(), "another segment");
        cache.put(1, 0, block(2), 500);
        assert_eq!(cache.get(1, 0, 400).map(|b| b[0]), Some(2), "refreshed");
        assert_eq!(cache.len_bytes(), BLOCK as usize);
    }

    #[test]
    fn evicts_oldest_first_within_capacity() {
        let cache = BlockCache::new(2 * BLOCK as usize);
        for b in 0..3 {
            cache.put(7, b, block(b as u8), BLOCK);
        }
        assert!(cache.get(7, 0, 1).is_none(), "oldest evicted");
        assert!(cache.get(7, 1, 1).is_some());
        assert!(cache.get(7, 2, 1).is_some());
        assert_eq!(cache.len_bytes(), 2 * BLOCK as usize);
    }

    #[test]
    fn forgets_removed_segments() {
        let cache = BlockCache::new(8 * BLOCK as usize);
        cache.put(1, 0, block(1), 10);
        cache.put(2, 0, block(2), 10);
        cache.put(3, 5, block(3), 10);
        cache.forget_segments(&[1, 3]);
        assert!(cache.get(1, 0, 1).is_none());
        assert!(cache.get(3, 5, 1).is_none());
        assert!(cache.get(2, 0, 1).is_some());
        assert_eq!(cache.len_bytes(), BLOCK as usize);
        // A reader that still held segment 1 does not bring its block back.
        cache.put(1, 0, block(1), 10);
        assert!(cache.get(1, 0, 1).is_none());
        assert_eq!(cache.len_bytes(), BLOCK as usize);
    }

    #[test]
    fn a_cache_fills_every_miss_until_it_evicts_or_refreshes_a_block() {
        let cache = BlockCache::new(4 * BLOCK as usize);
        for b in 0..64 {
            assert!(cache.get(1, b, 1).is_none());
            assert!(cache.should_fill(), "miss {b} of a cache with room");
        }
        for b in 0..4 {
            cache.put(1, b, block(1), BLOCK);
            assert!(cache.should_fill(), "still room after {} blocks", b + 1);
        }
        cache.put(1, 4, block(1), BLOCK);
        assert!(cache.get(2, 0, 1).is_none());
        assert!(
            !cache.should_fill(),
            "after the first eviction, 65 misses and no hit stop the fills"
        );

        // A refreshed block (a reader following the tail) ends the warm-up too.
        let cache = BlockCache::new(4 * BLOCK as usize);
        for _ in 0..65 {
            assert!(cache.get(1, 0, 10).is_none());
        }
        cache.put(1, 0, block(1), 5);
        assert!(cache.should_fill(), "room, nothing refreshed yet");
        cache.put(1, 0, block(1), 10);
        assert!(!cache.should_fill(), "a refresh: the hit/miss rule decides");
    }

    #[test]
    fn mostly_missing_lookups_stop_filling_but_still_probe() {
        let cache = BlockCache::new(4 * BLOCK as usize);
        for b in 0..5 {
            cache.put(9, b, block(9), BLOCK);
        }
        for b in 0..64 {
            assert!(cache.get(1, b, 1).is_none());
        }
        let fills = (0..PROBE * 4).filter(|_| {
            let fill = cache.should_fill();
            cache.get(2, 0, 1);
            fill
        });
        let fills = fills.count() as u64;
        assert!(
            (1..=5).contains(&fills),
            "{fills} fills while everything missed"
        );
        cache.put(3, 0, block(3), BLOCK);
        for _ in 0..200 {
            assert!(cache.get(3, 0, 1).is_some());
        }
        assert!(cache.should_fill(), "hits again: fills again");
    }

    #[test]
    fn capacity_below_one_block_is_off() {
        assert!(!BlockCache::new(0).enabled());
        assert!(!BlockCache::new(BLOCK as usize - 1).enabled());
        assert!(BlockCache::new(BLOCK as usize).enabled());
    }
}
