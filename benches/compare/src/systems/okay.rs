//! crates.io okaywal: a durable-only WAL (every `commit` fsyncs, group-committed
//! across threads). One entry per record: `begin_entry`, a key chunk and a value
//! chunk, `commit`. okaywal has no keys, so the adapter keeps the key -> value-chunk
//! position index a user must keep; reads go through `read_at`, checking each
//! chunk's CRC. The log manager does nothing at checkpoint (okaywal checkpoints
//! after 768 KiB by default; positions in a checkpointed file can no longer be read,
//! which the durable workloads here stay below).

use std::io::{self, Read};
use std::path::Path;

use anyhow::{bail, ensure, Result};
use bytes::Bytes;
use okaywal::{Entry, EntryId, LogManager, LogPosition, SegmentReader, WriteAheadLog};

use super::{Id, KeyIndex, Spec, System};

pub const VERSION: &str = "0.3.1";

const DURABLE_ONLY: &str = "okaywal is durable-only (every commit fsyncs)";

pub fn spec() -> Spec {
    Spec {
        id: Id::OkayWal,
        name: format!("okaywal {VERSION}"),
        nondurable: Err(DURABLE_ONLY),
        read: Err(DURABLE_ONLY),
        reopen: Err(DURABLE_ONLY),
        open,
        open_scanning: None,
    }
}

fn open(dir: &Path) -> Result<Box<dyn System>> {
    Ok(Box::new(OkayWal {
        log: WriteAheadLog::recover(dir, NoCheckpoint)?,
        index: KeyIndex::new(),
    }))
}

/// Recovers every entry and discards checkpointed ones: the harness has no storage
/// layer behind the log.
#[derive(Debug)]
struct NoCheckpoint;

impl LogManager for NoCheckpoint {
    fn recover(&mut self, _entry: &mut Entry<'_>) -> io::Result<()> {
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last_checkpointed_id: EntryId,
        _checkpointed_entries: &mut SegmentReader,
        _wal: &WriteAheadLog,
    ) -> io::Result<()> {
        Ok(())
    }
}

struct OkayWal {
    log: WriteAheadLog,
    index: KeyIndex<LogPosition>,
}

impl System for OkayWal {
    fn append(&self, key: &[u8], value: &Bytes, durable: bool) -> Result<()> {
        if !durable {
            bail!(DURABLE_ONLY);
        }
        let mut entry = self.log.begin_entry()?;
        entry.write_chunk(key)?;
        let value_chunk = entry.write_chunk(value)?;
        entry.commit()?;
        self.index.push(key, value_chunk.position);
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<(usize, usize)> {
        let positions = self.index.get(key);
        let mut bytes = 0;
        let mut buffer = Vec::new();
        for position in &positions {
            let mut chunk = self.log.read_at(*position)?;
            buffer.clear();
            chunk.read_to_end(&mut buffer)?;
            ensure!(chunk.crc_is_valid()?, "okaywal chunk CRC mismatch");
            bytes += buffer.len();
        }
        Ok((positions.len(), bytes))
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.log.shutdown()?)
    }
}
