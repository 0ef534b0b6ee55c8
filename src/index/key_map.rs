//! A key's locations ([`Locs`]: a frozen run, then those published since) and the
//! map from keys to them ([`KeyMap`]).
//!
//! No map guard ever leaves this module: values are cloned out. Under `cfg(loom)` the
//! dashmap is replaced by an `RwLock<HashMap>` that loom can model.

use crate::index::frozen::Run;
use crate::index::{KeyHasher, Location};

/// Whether `segment` is among `removed` (sorted).
pub(super) fn is_removed(removed: &[u64], segment: u64) -> bool {
    removed.binary_search(&segment).is_ok()
}

/// A key's locations in append order: the frozen ones from a checkpoint, if any,
/// then those published since.
#[derive(Default, Clone)]
pub(super) struct Locs {
    pub(super) run: Option<Run>,
    pub(super) tail: Vec<Location>,
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

    pub(super) fn len(&self) -> usize {
        self.run.as_ref().map_or(0, |r| r.count as usize) + self.tail.len()
    }

    /// Forgets the locations in `removed` (sorted); false if none is left. `thawed`
    /// is the frozen run read out, if some of its locations go (else it stays).
    pub(super) fn remove_segments(
        &mut self,
        removed: &[u64],
        thawed: Option<Vec<Location>>,
    ) -> bool {
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
    pub(in crate::index) struct KeyMap(DashMap<Box<[u8]>, Locs, KeyHasher>);

    impl KeyMap {
        pub(in crate::index) fn push(&self, key: &[u8], loc: Location) {
            if let Some(mut locs) = self.0.get_mut(key) {
                locs.tail.push(loc);
                return;
            }
            self.0.entry(key.into()).or_default().tail.push(loc);
        }
        pub(in crate::index) fn load(&self, entries: impl IntoIterator<Item = (Box<[u8]>, Locs)>) {
            for (key, locs) in entries {
                match self.0.entry(key) {
                    dashmap::mapref::entry::Entry::Occupied(mut e) => e.get_mut().append(locs),
                    dashmap::mapref::entry::Entry::Vacant(e) => {
                        e.insert(locs);
                    }
                }
            }
        }
        pub(in crate::index) fn get(&self, key: &[u8]) -> Option<Locs> {
            self.0.get(key).map(|locs| locs.clone())
        }
        pub(in crate::index) fn for_each(&self, mut f: impl FnMut(&[u8], &Locs)) {
            for e in self.0.iter() {
                f(e.key(), e.value());
            }
        }
        pub(in crate::index) fn keys(&self) -> Vec<Vec<u8>> {
            self.0.iter().map(|e| e.key().to_vec()).collect()
        }
        pub(in crate::index) fn retain(&self, mut keep: impl FnMut(&[u8], &mut Locs) -> bool) {
            self.0.retain(|key, locs| keep(key, locs));
        }
        pub(in crate::index) fn len(&self) -> usize {
            self.0.len()
        }
        /// Keys whose locations are (partly) frozen.
        #[cfg(test)]
        pub(in crate::index) fn frozen_keys(&self) -> usize {
            self.0.iter().filter(|e| e.value().run.is_some()).count()
        }
        /// Key bytes, each key's location capacity, and the map's slots (one entry
        /// and one control byte per bucket). A loaded checkpoint's locations are in
        /// its file, not on the heap.
        pub(in crate::index) fn heap_bytes(&self) -> usize {
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

    pub(in crate::index) struct KeyMap(RwLock<HashMap<Box<[u8]>, Locs, KeyHasher>>);

    impl Default for KeyMap {
        fn default() -> Self {
            KeyMap(RwLock::new(HashMap::default()))
        }
    }

    impl KeyMap {
        pub(in crate::index) fn push(&self, key: &[u8], loc: Location) {
            write(&self.0).entry(key.into()).or_default().tail.push(loc);
        }
        pub(in crate::index) fn load(&self, entries: impl IntoIterator<Item = (Box<[u8]>, Locs)>) {
            let mut map = write(&self.0);
            for (key, locs) in entries {
                map.entry(key).or_default().append(locs);
            }
        }
        pub(in crate::index) fn get(&self, key: &[u8]) -> Option<Locs> {
            read(&self.0).get(key).cloned()
        }
        pub(in crate::index) fn for_each(&self, mut f: impl FnMut(&[u8], &Locs)) {
            for (key, locs) in read(&self.0).iter() {
                f(key, locs);
            }
        }
        pub(in crate::index) fn keys(&self) -> Vec<Vec<u8>> {
            read(&self.0).keys().map(|k| k.to_vec()).collect()
        }
        pub(in crate::index) fn retain(&self, mut keep: impl FnMut(&[u8], &mut Locs) -> bool) {
            write(&self.0).retain(|key, locs| keep(key, locs));
        }
        pub(in crate::index) fn len(&self) -> usize {
            read(&self.0).len()
        }
        pub(in crate::index) fn heap_bytes(&self) -> usize {
            read(&self.0)
                .iter()
                .map(|(k, v)| k.len() + v.heap_bytes())
                .sum()
        }
    }
}

pub(super) use map::KeyMap;
