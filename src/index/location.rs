//! Where a record lives ([`Location`]), and the plain map recovery gathers them in
//! before the index is shared ([`Staged`]).

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
/// every record appended and every record recovered, so they use a fast hasher
/// rather than std's SipHash, which would be a large part of a reopen's work. The
/// seed is random, so crafted keys cannot aim at one bucket across processes. (Routing keys
/// to shards uses the stable xxh3 of `hash.rs`, which this does not replace.)
pub(crate) type KeyHasher = foldhash::fast::RandomState;

/// Locations gathered by recovery before the index is shared: a plain map, so that
/// the scan takes no lock per record; [`ShardIndex::load`](crate::index::ShardIndex::load) moves it in, key by key.
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
