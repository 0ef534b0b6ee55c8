//! crates.io nano-wal 1.0: one stream per `Wal`, no keys. The key goes into each
//! record's header, and the adapter keeps the key -> `EntryRef` index a 1.0 user
//! must keep (maintained inside `append`, so its cost is timed). Reads by key use
//! 1.0's coalesced `read_batch`. 1.0 cannot list or scan records, so a reopened WAL
//! cannot rebuild that index: W6 is n/a.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{ensure, Result};
use bytes::Bytes;
use nano_wal_10::{read_batch, EntryRef, ReadDescriptor, Segment, Wal, WalOptions};

use super::{Id, KeyIndex, Spec, System};

pub const VERSION: &str = "1.0.0";

pub fn spec() -> Spec {
    Spec {
        id: Id::Nano10,
        name: format!("nano-wal {VERSION}"),
        nondurable: Ok(()),
        read: Ok(()),
        reopen: Err("1.0 has no keys and no record scan; the caller's index is lost on reopen"),
        open,
        open_scanning: None,
    }
}

fn open(dir: &Path) -> Result<Box<dyn System>> {
    let options = WalOptions {
        retention: Duration::from_secs(7 * 24 * 3600),
        segment_duration: Duration::from_secs(7 * 24 * 3600 / 10),
    };
    let wal = Wal::new(dir, "bench", options)?;
    // One ingestion time for the whole run: every record lands in one segment, so
    // no rotation happens mid-run and the segment's read fd serves every read.
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let segment = wal.ensure_segment(now_ms)?;
    Ok(Box::new(Nano10 {
        wal,
        now_ms,
        segment,
        index: KeyIndex::new(),
    }))
}

struct Nano10 {
    wal: Wal,
    now_ms: i64,
    segment: Arc<Segment>,
    index: KeyIndex<EntryRef>,
}

impl System for Nano10 {
    fn append(&self, key: &[u8], value: &Bytes, durable: bool) -> Result<()> {
        let entry = self.wal.append(Some(key), value, self.now_ms, durable)?;
        self.index.push(key, entry);
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<(usize, usize)> {
        let descriptors: Vec<ReadDescriptor> = self
            .index
            .get(key)
            .into_iter()
            .map(|e| ReadDescriptor {
                read_fd: self.segment.read_fd().clone(),
                file_offset: e.file_offset,
                byte_size: e.byte_size,
            })
            .collect();
        let mut bytes = 0;
        let records = read_batch(&descriptors)?;
        for record in &records {
            ensure!(
                record.header.as_deref() == Some(key),
                "record header is not its key"
            );
            bytes += record.content.len();
        }
        Ok((records.len(), bytes))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.wal.shutdown()?)
    }
}
