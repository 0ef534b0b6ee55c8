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

use crate::io::SegmentIo;
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

/// The index checkpoint an open loaded, kept open: its key directory was read at
/// open, and each key's locations are read from it when the key is read (so a
/// reopen reads bytes in proportion to the keys, not to the records). The file is
/// unlinked once the open succeeds; this handle keeps it readable.
pub(crate) struct Frozen {
    pub(crate) file: Arc<dyn crate::io::ReadIo>,
    pub(crate) path: std::path::PathBuf,
    /// Segment sequence of each slot.
    pub(crate) sequences: Box<[u64]>,
    /// Length of each slot's segment when the checkpoint was written.
    pub(crate) lens: Box<[u64]>,
}

/// Bytes of one frozen location (offset, length) and of a group's head (segment
/// slot, location count).
pub(crate) const FROZEN_LOCATION_LEN: usize = crate::format::checkpoint::LOCATION_LEN;
pub(crate) const FROZEN_GROUP_LEN: usize = crate::format::checkpoint::GROUP_LEN;

/// One key's frozen locations: `groups` groups (segment slot u32, location count
/// u32, then offset u32 and length u32 per location) at byte `at` of the
/// checkpoint, `count` locations in all, their bytes covered by `crc` (CRC32C).
#[derive(Clone)]
pub(crate) struct Run {
    pub(crate) frozen: Arc<Frozen>,
    pub(crate) at: u64,
    pub(crate) groups: u32,
    pub(crate) count: u32,
    pub(crate) crc: u32,
}

impl Run {
    /// Bytes the run takes in the checkpoint.
    pub(crate) fn byte_len(groups: u32, count: u32) -> u64 {
        crate::format::checkpoint::run_len(groups, count)
    }

    /// The error for a run that failed its checks: the checkpoint and the offset of
    /// the run in it.
    pub(crate) fn error(&self, reason: String) -> crate::error::WalError {
        crate::error::WalError::corruption(
            self.frozen.path.clone(),
            self.at,
            format!("index checkpoint loaded at open: {reason}"),
        )
    }

    /// Reads the run and appends its locations to `out`, checking its checksum and
    /// what a scan would guarantee: every slot exists, groups in increasing slot
    /// order, offsets increasing within a group, every record inside its segment.
    pub(crate) fn decode_into(&self, out: &mut Vec<Location>) -> Result<(), String> {
        let len = Run::byte_len(self.groups, self.count) as usize;
        let mut bytes = Vec::new();
        bytes
            .try_reserve_exact(len)
            .map_err(|_| format!("a key's {len} bytes of locations do not fit in memory"))?;
        bytes.resize(len, 0);
        self.frozen
            .file
            .read_at(&mut bytes, self.at)
            .map_err(|e| format!("reading a key's locations: {e}"))?;
        if crc32c::crc32c(&bytes) != self.crc {
            return Err("a key's locations fail their checksum".into());
        }
        let u32_at = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let start = out.len();
        let mut at = 0;
        let mut prev_slot = None;
        for _ in 0..self.groups {
            if at + FROZEN_GROUP_LEN > bytes.len() {
                return Err("a key's groups overrun its locations".into());
            }
            let slot = u32_at(at) as usize;
            let n = u32_at(at + 4) as usize;
            at += FROZEN_GROUP_LEN;
            let (Some(&segment), Some(&seg_len)) =
                (self.frozen.sequences.get(slot), self.frozen.lens.get(slot))
            else {
                return Err(format!(
                    "a location names segment slot {slot} of {}",
                    self.frozen.sequences.len()
                ));
            };
            if n == 0 || prev_slot.is_some_and(|p| p >= slot) {
                return Err("a key's locations are not in append order".into());
            }
            prev_slot = Some(slot);
            let end = n
                .checked_mul(FROZEN_LOCATION_LEN)
                .and_then(|b| b.checked_add(at))
                .filter(|&e| e <= bytes.len())
                .ok_or("a key's groups overrun its locations")?;
            let mut prev = 0;
            for b in bytes[at..end].chunks_exact(FROZEN_LOCATION_LEN) {
                let offset = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
                if (offset as usize) < crate::format::segment_header::SEGMENT_HEADER_LEN
                    || u64::from(offset) + u64::from(len) > seg_len
                {
                    return Err(format!(
                        "a location ({offset}, {len}) lies outside segment {segment}"
                    ));
                }
                if offset <= prev {
                    return Err("a key's locations are not in append order".into());
                }
                prev = offset;
                out.push(Location {
                    segment,
                    offset,
                    len,
                });
            }
            at = end;
        }
        if at != bytes.len() || out.len() - start != self.count as usize {
            return Err("a key's groups do not hold its locations".into());
        }
        Ok(())
    }
}

/// Whether `segment` is among `removed` (sorted).
fn is_removed(removed: &[u64], segment: u64) -> bool {
    removed.binary_search(&segment).is_ok()
}

/// A key's locations in append order: the frozen ones from a checkpoint, if any,
/// then those published since.
#[derive(Default, Clone)]
pub(crate) struct Locs {
    run: Option<Run>,
    tail: Vec<Location>,
}

impl Locs {
    /// Appends `later`'s locations (recovery loading into a key already present).
    /// Only a fresh index is loaded, so `later` carries no run unless `self` is
    /// empty: a run always comes first.
    fn append(&mut self, mut later: Locs) {
        if self.run.is_none() && self.tail.is_empty() {
            *self = later;
        } else {
            debug_assert!(later.run.is_none(), "a frozen run loaded after locations");
            self.tail.append(&mut later.tail);
        }
    }

    fn len(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.count as usize) + self.tail.len()
    }

    /// Forgets the locations in `removed` (sorted); false if none is left. `thawed`
    /// is the frozen run read out, if some of its locations go (else it stays).
    fn remove_segments(&mut self, removed: &[u64], thawed: Option<Vec<Location>>) -> bool {
        let gone = |l: &Location| is_removed(removed, l.segment);
        if let Some(mut frozen) = thawed {
            frozen.retain(|l| !gone(l));
            frozen.append(&mut self.tail);
            self.tail = frozen;
            self.run = None;
        }
        let before = self.tail.len();
        self.tail.retain(|l| !gone(l));
        if self.tail.len() < before && self.tail.capacity() > 2 * self.tail.len() + 4 {
            self.tail.shrink_to_fit();
        }
        self.len() > 0
    }

    /// Heap bytes of its own.
    fn heap_bytes(&self) -> usize {
        self.tail.capacity() * std::mem::size_of::<Location>()
    }
}

#[cfg(not(loom))]
mod map {
    use super::{KeyHasher, Location, Locs};
    use dashmap::DashMap;

    #[derive(Default)]
    pub(super) struct KeyMap(DashMap<Box<[u8]>, Locs, KeyHasher>);

    impl KeyMap {
        pub(super) fn push(&self, key: &[u8], loc: Location) {
            if let Some(mut locs) = self.0.get_mut(key) {
                locs.tail.push(loc);
                return;
            }
            self.0.entry(key.into()).or_default().tail.push(loc);
        }
        pub(super) fn load(&self, entries: impl IntoIterator<Item = (Box<[u8]>, Locs)>) {
            for (key, locs) in entries {
                match self.0.entry(key) {
                    dashmap::mapref::entry::Entry::Occupied(mut e) => e.get_mut().append(locs),
                    dashmap::mapref::entry::Entry::Vacant(e) => {
                        e.insert(locs);
                    }
                }
            }
        }
        pub(super) fn get(&self, key: &[u8]) -> Option<Locs> {
            self.0.get(key).map(|locs| locs.clone())
        }
        pub(super) fn for_each(&self, mut f: impl FnMut(&[u8], &Locs)) {
            for e in self.0.iter() {
                f(e.key(), e.value());
            }
        }
        pub(super) fn keys(&self) -> Vec<Vec<u8>> {
            self.0.iter().map(|e| e.key().to_vec()).collect()
        }
        pub(super) fn retain(&self, mut keep: impl FnMut(&[u8], &mut Locs) -> bool) {
            self.0.retain(|key, locs| keep(key, locs));
        }
        pub(super) fn len(&self) -> usize {
            self.0.len()
        }
        /// Keys whose locations are (partly) frozen.
        #[cfg(test)]
        pub(super) fn frozen_keys(&self) -> usize {
            self.0.iter().filter(|e| e.value().run.is_some()).count()
        }
        /// Key bytes, each key's location capacity, and the map's slots (one entry
        /// and one control byte per bucket). A loaded checkpoint's locations are in
        /// its file, not on the heap.
        pub(super) fn heap_bytes(&self) -> usize {
            let slot = std::mem::size_of::<(Box<[u8]>, Locs)>() + 1;
            let entries: usize = self
                .0
                .iter()
                .map(|e| e.key().len() + e.value().heap_bytes())
                .sum();
            entries + self.0.capacity() * slot
        }
    }
}

#[cfg(loom)]
mod map {
    use super::{KeyHasher, Location, Locs};
    use crate::sync::{read, write, RwLock};
    use std::collections::HashMap;

    pub(super) struct KeyMap(RwLock<HashMap<Box<[u8]>, Locs, KeyHasher>>);

    impl Default for KeyMap {
        fn default() -> Self {
            KeyMap(RwLock::new(HashMap::default()))
        }
    }

    impl KeyMap {
        pub(super) fn push(&self, key: &[u8], loc: Location) {
            write(&self.0).entry(key.into()).or_default().tail.push(loc);
        }
        pub(super) fn load(&self, entries: impl IntoIterator<Item = (Box<[u8]>, Locs)>) {
            let mut map = write(&self.0);
            for (key, locs) in entries {
                map.entry(key).or_default().append(locs);
            }
        }
        pub(super) fn get(&self, key: &[u8]) -> Option<Locs> {
            read(&self.0).get(key).cloned()
        }
        pub(super) fn for_each(&self, mut f: impl FnMut(&[u8], &Locs)) {
            for (key, locs) in read(&self.0).iter() {
                f(key, locs);
            }
        }
        pub(super) fn keys(&self) -> Vec<Vec<u8>> {
            read(&self.0).keys().map(|k| k.to_vec()).collect()
        }
        pub(super) fn retain(&self, mut keep: impl FnMut(&[u8], &mut Locs) -> bool) {
            write(&self.0).retain(|key, locs| keep(key, locs));
        }
        pub(super) fn len(&self) -> usize {
            read(&self.0).len()
        }
        pub(super) fn heap_bytes(&self) -> usize {
            read(&self.0)
                .iter()
                .map(|(k, v)| k.len() + v.heap_bytes())
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
    /// How its records are checked when read.
    pub(crate) codec: crate::format::record::Codec,
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
        codec: crate::format::record::Codec,
    ) -> PublishedLen {
        let published = PublishedLen::new(std::sync::atomic::AtomicU64::new(len));
        let entry = SegmentEntry {
            io,
            published: published.clone(),
            codec,
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
        let entries = staged
            .into_iter()
            .map(|(key, tail)| (key, Locs { run: None, tail }));
        self.keys.load(entries);
    }

    /// Takes each key's frozen locations from a checkpoint (before the index is
    /// shared; the keys are new to it).
    pub(crate) fn load_frozen(&self, keys: Vec<(Box<[u8]>, Run)>) {
        let entries = keys.into_iter().map(|(key, run)| {
            let locs = Locs {
                run: Some(run),
                tail: Vec::new(),
            };
            (key, locs)
        });
        self.keys.load(entries);
    }

    /// Compaction's install step: forgets `removed` segments and every location in
    /// them, atomically for readers. Actor only. `removed` is sorted.
    pub(crate) fn remove_segments(&self, removed: &[u64]) {
        if removed.is_empty() {
            return;
        }
        // Frozen runs that lose locations are read out first, without the lock (file
        // reads; only this thread changes keys). A run that cannot be read stays
        // frozen, and the reads of its key report why.
        let mut thawed = std::collections::HashMap::new();
        self.keys.for_each(|key, locs| {
            let touched =
                |run: &&Run| (run.frozen.sequences.iter()).any(|&s| is_removed(removed, s));
            if let Some(run) = locs.run.as_ref().filter(touched) {
                let mut frozen = Vec::with_capacity(run.count as usize);
                if run.decode_into(&mut frozen).is_ok()
                    && frozen.iter().any(|l| is_removed(removed, l.segment))
                {
                    thawed.insert(Box::<[u8]>::from(key), frozen);
                }
            }
        });
        let mut table = write(&self.segments);
        for seq in removed {
            table.remove(seq);
        }
        self.keys
            .retain(|key, locs| locs.remove_segments(removed, thawed.remove(key)));
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
        self.keys.retain(|_, _| false);
        drop(table);
        sequences
    }

    /// The key's locations and the segments they need, or `None` for an unknown key.
    ///
    /// Taken under the segment table's read lock, so atomically with respect to
    /// compaction: the key's entry and the handles of the segments it may name. A
    /// run of locations still in a loaded checkpoint is read and checked after the
    /// lock is released (its bytes never change): with the handles of every segment
    /// the checkpoint lists that is still live, and its locations in segments no
    /// longer live dropped, since only compaction takes a segment out of the table.
    /// A run that fails its checks is an error naming the checkpoint.
    pub(crate) fn snapshot(&self, key: &[u8]) -> crate::error::Result<Option<Snapshot>> {
        let table = read(&self.segments);
        let Some(locs) = self.keys.get(key) else {
            return Ok(None);
        };
        let mut segments = BTreeMap::new();
        let named = locs.tail.iter().map(|l| l.segment);
        let frozen = locs
            .run
            .iter()
            .flat_map(|r| r.frozen.sequences.iter().copied());
        for sequence in named.chain(frozen) {
            if let std::collections::btree_map::Entry::Vacant(slot) = segments.entry(sequence) {
                if let Some(entry) = table.get(&sequence) {
                    slot.insert(entry.clone());
                }
            }
        }
        drop(table);
        let mut locations = Vec::with_capacity(locs.len());
        if let Some(run) = &locs.run {
            run.decode_into(&mut locations)
                .map_err(|reason| run.error(reason))?;
            locations.retain(|l| segments.contains_key(&l.segment));
        }
        locations.extend_from_slice(&locs.tail);
        Ok(Some(Snapshot {
            locations,
            segments,
        }))
    }

    /// Every key of the shard, each once.
    pub(crate) fn keys(&self) -> Vec<Vec<u8>> {
        let _table = read(&self.segments);
        self.keys.keys()
    }

    /// Hands every key and its locations to `f` (the index checkpoint). Actor only,
    /// so nothing changes meanwhile. Fails on the first frozen run that cannot be
    /// read, naming the checkpoint it is in.
    pub(crate) fn for_each_key(
        &self,
        mut f: impl FnMut(&[u8], &[Location]),
    ) -> crate::error::Result<()> {
        let mut failed = None;
        let mut buf = Vec::new();
        self.keys.for_each(|key, locs| {
            if failed.is_some() {
                return;
            }
            buf.clear();
            if let Some(run) = &locs.run {
                if let Err(reason) = run.decode_into(&mut buf) {
                    failed = Some(run.error(reason));
                    return;
                }
            }
            buf.extend_from_slice(&locs.tail);
            f(key, &buf);
        });
        failed.map_or(Ok(()), Err)
    }

    pub(crate) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Approximate heap bytes held by keys and location vectors.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.keys.heap_bytes()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn loc(segment: u64, offset: u32, len: u32) -> Location {
        Location {
            segment,
            offset,
            len,
        }
    }

    /// Key "a": segment 3 at 40, segment 5 at 40 and 100; key "b": segment 3 at 90.
    fn frozen_index() -> ShardIndex {
        // Groups: (slot, count, then offset and length of each location).
        let words: [u32; 14] = [0, 1, 40, 50, 1, 2, 40, 60, 100, 20, 0, 1, 90, 10];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        let file = crate::testing::mem_storage::MemStorage::reader(&bytes);
        let frozen = Arc::new(Frozen {
            file,
            path: "INDEX".into(),
            sequences: vec![3, 5].into_boxed_slice(),
            lens: vec![1000, 1000].into_boxed_slice(),
        });
        let run = |at: u64, groups, count| Run {
            frozen: frozen.clone(),
            at,
            groups,
            count,
            crc: crc32c::crc32c(&bytes[at as usize..(at + Run::byte_len(groups, count)) as usize]),
        };
        let index = ShardIndex::default();
        // Live segments 3, 5 and 7 (their bytes do not matter here).
        let storage = crate::testing::mem_storage::MemStorage::default();
        for sequence in [3, 5, 7] {
            let io = crate::io::Storage::create_segment(&storage, 0, sequence, b"header")
                .expect("created");
            index.add_segment(sequence, io, 1000, crate::format::record::Codec::Legacy);
        }
        index.load_frozen(vec![
            (b"a"[..].into(), run(0, 2, 3)),
            (b"b"[..].into(), run(40, 1, 1)),
        ]);
        index
    }

    fn locations(index: &ShardIndex, key: &[u8]) -> Option<Vec<Location>> {
        index.snapshot(key).expect("readable").map(|s| s.locations)
    }

    /// Frozen locations read back in order, before those published after them, and
    /// stay frozen (no `Location` of their own) until a removal reaches them.
    #[test]
    fn frozen_locations_read_in_order_and_thaw_only_when_a_removal_reaches_them() {
        let index = frozen_index();
        index.push(b"a", loc(7, 40, 10));
        let a = vec![
            loc(3, 40, 50),
            loc(5, 40, 60),
            loc(5, 100, 20),
            loc(7, 40, 10),
        ];
        assert_eq!(locations(&index, b"a"), Some(a.clone()));
        assert_eq!(locations(&index, b"b"), Some(vec![loc(3, 90, 10)]));
        assert_eq!(index.keys.frozen_keys(), 2);
        let before = index.heap_bytes();
        index.remove_segments(&[4, 6]);
        assert_eq!(locations(&index, b"a"), Some(a.clone()));
        assert_eq!(index.keys.frozen_keys(), 2, "nothing thawed");
        assert_eq!(index.heap_bytes(), before);
        index.remove_segments(&[3]);
        assert_eq!(locations(&index, b"a"), Some(a[1..].to_vec()));
        assert_eq!(locations(&index, b"b"), None);
        assert_eq!(index.keys(), vec![b"a".to_vec()]);
        assert_eq!(index.keys.frozen_keys(), 0, "\"a\" thawed, \"b\" gone");
        index.push(b"a", loc(7, 60, 5));
        assert_eq!(locations(&index, b"a").map(|l| l.len()), Some(4));
    }
}
