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

/// One shard's cache.
pub(crate) struct BlockCache {
    capacity: usize,
    blocks: Mutex<Blocks>,
}

impl BlockCache {
    /// A cache holding up to `capacity` bytes (0: off).
    pub(crate) fn new(capacity: usize) -> BlockCache {
        BlockCache {
            capacity,
            blocks: Mutex::new(Blocks::default()),
        }
    }

    /// Whether reads should go through the cache at all.
    pub(crate) fn enabled(&self) -> bool {
        self.capacity >= BLOCK as usize
    }

    /// Block `block` of segment `segment`, if cached with every byte below `end`
    /// known to be final.
    pub(crate) fn get(&self, segment: u64, block: u64, end: u64) -> Option<Bytes> {
        let blocks = lock(&self.blocks);
        let b = blocks.map.get(&(segment, block))?;
        (end <= b.valid_end).then(|| b.bytes.clone())
    }

    /// Caches a block read from disk whose bytes below `valid_end` are final.
    pub(crate) fn put(&self, segment: u64, block: u64, bytes: Bytes, valid_end: u64) {
        let mut blocks = lock(&self.blocks);
        let len = bytes.len();
        let new = Block { bytes, valid_end };
        match blocks.map.insert((segment, block), new) {
            Some(old) => {
                blocks.bytes = blocks.bytes - old.bytes.len() + len;
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
            }
        }
    }

    /// Drops every block of the `removed` segments (compaction).
    pub(crate) fn forget_segments(&self, removed: &[u64]) {
        if !self.enabled() || removed.is_empty() {
            return;
        }
        let mut blocks = lock(&self.blocks);
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

    /// Bytes held.
    pub(crate) fn len_bytes(&self) -> usize {
        lock(&self.blocks).bytes
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
    }

    #[test]
    fn capacity_below_one_block_is_off() {
        assert!(!BlockCache::new(0).enabled());
        assert!(!BlockCache::new(BLOCK as usize - 1).enabled());
        assert!(BlockCache::new(BLOCK as usize).enabled());
    }
}
