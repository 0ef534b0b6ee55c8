//! crates.io nano-wal 0.5: one segment file per key, `&mut self` API, so shared as
//! the README advises, behind a mutex (the harness shares the `System` by reference
//! across scoped threads, which is what `Arc<Mutex<Wal>>` provides).
//! Durable appends are `append_entry(.., durable = true)`: `sync_data` per append.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use nano_wal_05::{Wal, WalOptions};

use super::{Id, Spec, System};

pub const VERSION: &str = "0.5.0";

pub fn spec() -> Spec {
    Spec {
        id: Id::Nano05,
        name: format!("nano-wal {VERSION}"),
        nondurable: Ok(()),
        read: Ok(()),
        reopen: Ok(()),
        open,
        open_scanning: None,
    }
}

fn open(dir: &Path) -> Result<Box<dyn System>> {
    let dir = dir.to_str().context("nano-wal 0.5 needs a UTF-8 path")?;
    Ok(Box::new(Nano05(Mutex::new(Wal::new(
        dir,
        WalOptions::default(),
    )?))))
}

struct Nano05(Mutex<Wal>);

impl Nano05 {
    fn wal(&self) -> Result<MutexGuard<'_, Wal>> {
        self.0
            .lock()
            .map_err(|_| anyhow!("mutex poisoned by an earlier panic"))
    }
}

/// nano-wal 0.5 keys must be `Display`; the harness's keys are ASCII.
fn key_str(key: &[u8]) -> Result<&str> {
    std::str::from_utf8(key).context("nano-wal 0.5 keys must be UTF-8")
}

impl System for Nano05 {
    fn append(&self, key: &[u8], value: &Bytes, durable: bool) -> Result<()> {
        let key = key_str(key)?;
        self.wal()?
            .append_entry(key, None, value.clone(), durable)?;
        Ok(())
    }

    fn read(&self, key: &[u8]) -> Result<(usize, usize)> {
        let key = key_str(key)?;
        let mut records = 0;
        let mut bytes = 0;
        for record in self.wal()?.enumerate_records(key)? {
            records += 1;
            bytes += record.len();
        }
        Ok((records, bytes))
    }

    fn close(self: Box<Self>) -> Result<()> {
        // 0.5's `shutdown` deletes every file; dropping closes them and keeps the data.
        let wal = self.0.into_inner().map_err(|_| anyhow!("mutex poisoned"))?;
        drop(wal);
        Ok(())
    }
}
