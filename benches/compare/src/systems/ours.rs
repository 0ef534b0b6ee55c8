//! This repository's nano-wal, by path: `Wal::new(dir, options)` with the default
//! options plus `index_checkpoint`.

use anyhow::Result;
use bytes::Bytes;
use ours::{Wal, WalOptions};

use super::{Id, Spec, System};

/// The main crate's manifest, read at build time for the version it declares.
const MANIFEST: &str = include_str!("../../../../Cargo.toml");

/// The `version = "..."` of the main crate's `[package]` table.
pub fn version() -> &'static str {
    MANIFEST
        .lines()
        .find_map(|l| l.trim().strip_prefix("version = \""))
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("?")
}

pub fn spec() -> Spec {
    Spec {
        id: Id::Ours,
        name: format!("nano-wal {} (ours)", version()),
        nondurable: Ok(()),
        read: Ok(()),
        reopen: Ok(()),
        // Close writes the index checkpoint and W6's open loads it; the defaults
        // otherwise (`WalOptions::index_checkpoint` is off by default).
        open: |dir| {
            let options = WalOptions::default().with_index_checkpoint(true);
            Ok(Box::new(Ours(Wal::new(dir, options)?)))
        },
        open_scanning: Some(|dir| Ok(Box::new(Ours(Wal::new(dir, WalOptions::default())?)))),
    }
}

struct Ours(Wal);

impl System for Ours {
    fn append(&self, key: &[u8], value: &Bytes, durable: bool) -> Result<()> {
        Ok(self.0.append_entry(key, value.clone(), durable)?)
    }

    /// `stats()` waits for every shard's read barrier: every acknowledged append is
    /// written to its segment file when it returns.
    fn flush(&self) -> Result<()> {
        self.0.stats()?;
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<(usize, usize)> {
        let mut records = 0;
        let mut bytes = 0;
        for record in self.0.enumerate_records(key)? {
            records += 1;
            bytes += record.len();
        }
        Ok((records, bytes))
    }

    fn fsyncs(&self) -> Result<Option<u64>> {
        Ok(Some(self.0.stats()?.fsyncs()))
    }

    fn open_note(&self) -> Option<String> {
        let loaded = self.0.recovery_report().checkpoints_loaded;
        Some(format!(
            "{loaded} of {} shards from their index checkpoint",
            self.0.shard_count()
        ))
    }

    fn index_bytes(&self) -> Result<Option<u64>> {
        Ok(Some(self.0.stats()?.index_bytes()))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.0.close()?)
    }
}
