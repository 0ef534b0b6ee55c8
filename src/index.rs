//! The per-shard key index: key -> locations of its records, in append order, plus
//! the table of live segment handles that the locations point into.
//!
//! **Protocol.** Only the shard actor writes (publish after the bytes are written,
//! install after compaction); any thread reads, without a round trip through the
//! actor. A reader takes the segment table's read lock, clones the key's locations
//! and the handles of the segments they name, and releases it: compaction's install
//! step removes handles and prunes locations under the write lock, so a reader sees
//! either the whole old state or the whole new one, and holds its own handle to every
//! file it reads (an unlinked file stays readable through an open handle).
//!
//! No map guard ever leaves this module: values are cloned out. Under `cfg(loom)` the
//! dashmap is replaced by an `RwLock<HashMap>` that loom can model.

use crate::storage::SegmentIo;
use crate::sync::{read, write, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where one record lives: 16 bytes, the whole per-record cost of the index besides
/// the spare capacity of each key's `Vec`. Retention works on whole segments (their
/// newest timestamp is kept in the segment table), so no timestamp is needed here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) segment: u64,
    pub(crate) offset: u32,
    pub(crate) len: u32,
}

const _: () = assert!(std::mem::size_of::<Location>() == 16);

/// The hasher of the key maps: foldhash, seeded per process. The maps hash a key for
/// every record appended and every record recovered; std's SipHash took about a
/// fifth of a reopen's CPU (perf, 1,000,000 records of 10,000 keys). The seed is
/// random, so crafted keys cannot aim at one bucket across processes. (Routing keys
/// to shards uses the stable xxh3 of `hash.rs`, which this does not replace.)
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// Locations gathered by recovery before the index is shared: a plain map, so that
/// the scan takes no lock per record; [`ShardIndex::load`] moves it in, key by key.
pub(crate) type Staged = std::collections::HashMap<Box<[u8]>, Vec<Location>, KeyHasher>;

/// Adds a recovered record's location to `staged`.
pub(crate) fn stage(staged: &mut Staged, key: &[u8], loc: Location) {
    match staged.get_mut(key) {
        Some(locs) => locs.push(loc),
        None => {
            staged.insert(key.into(), vec![loc]);
        }
    }
}

#[cfg(not(loom))]
mod map {
    use super::{KeyHasher, Location, Staged};
    use dashmap::DashMap;

    #[derive(Default)]
    pub(super) struct KeyMap(DashMap<Box<[u8]>, Vec<Location>, KeyHasher>);

    impl KeyMap {
        pub(super) fn push(&self, key: &[u8], loc: Location) {
            if let Some(mut locs) = self.0.get_mut(key) {
                locs.push(loc);
                return;
            }
            self.0.entry(key.into()).or_default().push(loc);
        }
        pub(super) fn load(&self, staged: Staged) {
            for (key, locs) in staged {
                match self.0.entry(key) {
                    dashmap::mapref::entry::Entry::Occupied(mut e) => e.get_mut().extend(locs),
                    dashmap::mapref::entry::Entry::Vacant(e) => {
                        e.insert(locs);
                    }
                }
            }
        }
        pub(super) fn get(&self, key: &[u8]) -> Option<Vec<Location>> {
            self.0.get(key).map(|locs| locs.clone())
        }
        pub(super) fn for_each(&self, mut f: impl FnMut(&[u8], &[Location])) {
            for e in self.0.iter() {
                f(e.key(), e.value());
            }
        }
        pub(super) fn keys(&self) -> Vec<Vec<u8>> {
            self.0.iter().map(|e| e.key().to_vec()).collect()
        }
        pub(super) fn retain(&self, mut keep: impl FnMut(&mut Vec<Location>) -> bool) {
            self.0.retain(|_, locs| keep(locs));
        }
        pub(super) fn len(&self) -> usize {
            self.0.len()
        }
        /// Key bytes, each key's location capacity, and the map's slots (one entry
        /// and one control byte per bucket).
        pub(super) fn heap_bytes(&self) -> usize {
            let slot = std::mem::size_of::<(Box<[u8]>, Vec<Location>)>() + 1;
            let entries: usize = self
                .0
                .iter()
                .map(|e| e.key().len() + e.value().capacity() * std::mem::size_of::<Location>())
                .sum();
            entries + self.0.capacity() * slot
        }
    }
}

#[cfg(loom)]
mod map {
    use super::{KeyHasher, Location, Staged};
    use crate::sync::{read, write, RwLock};
    use std::collections::HashMap;

    pub(super) struct KeyMap(RwLock<HashMap<Box<[u8]>, Vec<Location>, KeyHasher>>);

    impl Default for KeyMap {
        fn default() -> Self {
            KeyMap(RwLock::new(HashMap::default()))
        }
    }

    impl KeyMap {
        pub(super) fn push(&self, key: &[u8], loc: Location) {
            write(&self.0).entry(key.into()).or_default().push(loc);
        }
        pub(super) fn load(&self, staged: Staged) {
            let mut map = write(&self.0);
            for (key, locs) in staged {
                map.entry(key).or_default().extend(locs);
            }
        }
        pub(super) fn get(&self, key: &[u8]) -> Option<Vec<Location>> {
            read(&self.0).get(key).cloned()
        }
        pub(super) fn for_each(&self, mut f: impl FnMut(&[u8], &[Location])) {
            for (key, locs) in read(&self.0).iter() {
                f(key, locs);
            }
        }
        pub(super) fn keys(&self) -> Vec<Vec<u8>> {
            read(&self.0).keys().map(|k| k.to_vec()).collect()
        }
        pub(super) fn retain(&self, mut keep: impl FnMut(&mut Vec<Location>) -> bool) {
            write(&self.0).retain(|_, locs| keep(locs));
        }
        pub(super) fn len(&self) -> usize {
            read(&self.0).len()
        }
        pub(super) fn heap_bytes(&self) -> usize {
            read(&self.0)
                .iter()
                .map(|(k, v)| k.len() + v.capacity() * std::mem::size_of::<Location>())
                .sum()
        }
    }
}

/// Bytes of a segment known to be written and final: every record location the
/// actor has published in it ends at or below this. Raised by the actor after each
/// batch (Release) and read by the block cache (Acquire). A hint for the cache only,
/// not part of a protocol, hence a plain std atomic even under loom.
pub(crate) type PublishedLen = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// A readable segment: its file and how much of it is final.
#[derive(Clone)]
pub(crate) struct SegmentEntry {
    pub(crate) io: Arc<dyn SegmentIo>,
    pub(crate) published: PublishedLen,
}

/// What a reader needs to read one key: its locations and a handle to each segment
/// they name, taken atomically with respect to compaction.
pub(crate) struct Snapshot {
    pub(crate) locations: Vec<Location>,
    pub(crate) segments: BTreeMap<u64, SegmentEntry>,
}

/// One shard's index.
#[derive(Default)]
pub(crate) struct ShardIndex {
    keys: map::KeyMap,
    segments: RwLock<BTreeMap<u64, SegmentEntry>>,
}

impl ShardIndex {
    /// Makes a segment readable. Actor only, before publishing locations in it.
    /// `len` bytes of it are final already; the returned handle raises that figure.
    pub(crate) fn add_segment(
        &self,
        sequence: u64,
        io: Arc<dyn SegmentIo>,
        len: u64,
    ) -> PublishedLen {
        let published = PublishedLen::new(std::sync::atomic::AtomicU64::new(len));
        let entry = SegmentEntry {
            io,
            published: published.clone(),
        };
        write(&self.segments).insert(sequence, entry);
        published
    }

    /// Publishes the location of a record whose bytes are written. Actor only.
    pub(crate) fn push(&self, key: &[u8], loc: Location) {
        self.keys.push(key, loc);
    }

    /// Moves recovery's staged locations in (before the index is shared). Each key's
    /// locations stay in the order they were staged.
    pub(crate) fn load(&self, staged: Staged) {
        self.keys.load(staged);
    }

    /// Compaction's install step: forgets `removed` segments and every location in
    /// them, atomically for readers. Actor only. `removed` is sorted.
    pub(crate) fn remove_segments(&self, removed: &[u64]) {
        if removed.is_empty() {
            return;
        }
        let mut table = write(&self.segments);
        for seq in removed {
            table.remove(seq);
        }
        self.keys.retain(|locs| {
            locs.retain(|l| removed.binary_search(&l.segment).is_err());
            if locs.capacity() > 2 * locs.len() + 4 {
                locs.shrink_to_fit();
            }
            !locs.is_empty()
        });
        drop(table);
    }

    /// Forgets every key and segment (the WAL closed): frees the index and closes the
    /// shard's file handles, so a closed handle that is kept around holds neither.
    /// Readers that took a snapshot before keep their own handles. Returns the
    /// sequences forgotten.
    pub(crate) fn clear(&self) -> Vec<u64> {
        let mut table = write(&self.segments);
        let sequences = table.keys().copied().collect();
        table.clear();
        self.keys.retain(|_| false);
        drop(table);
        sequences
    }

    /// The key's locations and the segments they need, or `None` for an unknown key.
    pub(crate) fn snapshot(&self, key: &[u8]) -> Option<Snapshot> {
        let table = read(&self.segments);
        let locations = self.keys.get(key)?;
        let mut segments = BTreeMap::new();
        for loc in &locations {
            if let std::collections::btree_map::Entry::Vacant(slot) = segments.entry(loc.segment) {
                if let Some(entry) = table.get(&loc.segment) {
                    slot.insert(entry.clone());
                }
            }
        }
        drop(table);
        Some(Snapshot {
            locations,
            segments,
        })
    }

    /// Every key of the shard, each once.
    pub(crate) fn keys(&self) -> Vec<Vec<u8>> {
        let _table = read(&self.segments);
        self.keys.keys()
    }

    /// Hands every key and its locations to `f` (the index checkpoint). Actor only,
    /// so nothing changes meanwhile.
    pub(crate) fn for_each_key(&self, f: impl FnMut(&[u8], &[Location])) {
        self.keys.for_each(f);
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Approximate heap bytes held by keys and location vectors.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.heap_bytes()
    }
}
