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
//! The per-key locations live in `key_map.rs`, their frozen form in `frozen.rs`.

use crate::index::frozen::Run;
use crate::index::key_map::{is_removed, KeyMap, Locs};
use crate::index::{Location, Staged};
use crate::io::SegmentIo;
use crate::sync::{read, write, RwLock};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    keys: KeyMap,
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
    use crate::index::frozen::Frozen;

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
