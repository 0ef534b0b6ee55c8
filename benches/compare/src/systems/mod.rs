//! The systems under comparison, each behind the same small [`System`] trait.
//!
//! Keys are bytes (the harness uses ASCII keys such as `key-00042`); values are
//! [`Bytes`]. A system that lacks a capability says so in its [`Spec`] and the
//! harness prints `n/a` with that reason instead of calling it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::Path;
use std::sync::Mutex;

use anyhow::Result;
use bytes::Bytes;

pub mod file;
pub mod nano05;
pub mod nano10;
pub mod okay;
pub mod ours;

/// One open WAL (or baseline file), shared by reference with every appending thread.
pub trait System: Send + Sync {
    /// Appends one record; with `durable`, returns only once it is on disk.
    fn append(&self, key: &[u8], value: &Bytes, durable: bool) -> Result<()>;

    /// Hands every record appended so far to the OS (no fsync). Part of the timed
    /// region of a non-durable ingest, so that no system is timed with records still
    /// sitting in a user-space queue or buffer.
    fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// Reads every record of `key`: (records, value bytes).
    fn read(&self, key: &[u8]) -> Result<(usize, usize)>;

    /// [`read`](Self::read) for many keys; a system may do it in one pass.
    fn read_many(&self, keys: &[&[u8]]) -> Result<Vec<(usize, usize)>> {
        keys.iter().map(|k| self.read(k)).collect()
    }

    /// `fdatasync` calls so far, if the system counts them.
    fn fsyncs(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// What the last open did, if the system reports it (ours: how many shards
    /// loaded their index checkpoint).
    fn open_note(&self) -> Option<String> {
        None
    }

    /// Heap bytes of the key index, if the system reports it.
    fn index_bytes(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Closes the system, reporting any error; files stay.
    fn close(self: Box<Self>) -> Result<()>;
}

/// Whether a system can do something: `Err(reason)` is printed as `n/a: reason`.
pub type Support = std::result::Result<(), &'static str>;

/// A system's name, capabilities and constructor.
pub struct Spec {
    pub id: Id,
    /// Printed name, with the exact version.
    pub name: String,
    /// Non-durable appends (W1, W2).
    pub nondurable: Support,
    /// Reading all records of a key (W5).
    pub read: Support,
    /// Reopening a directory and reading by key again (W6).
    pub reopen: Support,
    /// Opens (creates or reopens) the system in `dir`.
    pub open: Open,
    /// For ours: an open that scans every record even after a clean close, timed
    /// for W6's notes beside `open`'s (which loads the index checkpoint).
    pub open_scanning: Option<Open>,
}

pub type Open = fn(&Path) -> Result<Box<dyn System>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Id {
    Ours,
    Nano05,
    Nano10,
    OkayWal,
    File,
}

impl Id {
    /// A peer, as the targets define it (not ours, not the File baseline).
    pub fn is_peer(self) -> bool {
        matches!(self, Id::Nano05 | Id::Nano10 | Id::OkayWal)
    }
}

/// Every system, ours first.
pub fn all() -> Vec<Spec> {
    vec![
        ours::spec(),
        nano05::spec(),
        nano10::spec(),
        okay::spec(),
        file::spec(),
    ]
}

/// A caller-side key index for peers without keys (nano-wal 1.0, okaywal): key ->
/// locations of its records, in 64 independently locked stripes so that the index
/// itself is not the contended lock.
pub struct KeyIndex<T> {
    stripes: Vec<Mutex<HashMap<Vec<u8>, Vec<T>>>>,
}

impl<T: Clone> KeyIndex<T> {
    pub fn new() -> Self {
        KeyIndex {
            stripes: (0..64).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn stripe(&self, key: &[u8]) -> &Mutex<HashMap<Vec<u8>, Vec<T>>> {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        &self.stripes[h.finish() as usize % self.stripes.len()]
    }

    pub fn push(&self, key: &[u8], location: T) {
        let mut map = self.stripe(key).lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(key) {
            Some(locations) => locations.push(location),
            None => {
                map.insert(key.to_vec(), vec![location]);
            }
        }
    }

    pub fn get(&self, key: &[u8]) -> Vec<T> {
        let map = self.stripe(key).lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).cloned().unwrap_or_default()
    }
}
