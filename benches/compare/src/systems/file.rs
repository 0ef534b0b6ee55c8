//! The baseline: one plain `std::fs::File` behind a `Mutex`, records framed as
//! `[key len: u16 LE][value len: u32 LE][key][value]`. Non-durable appends go
//! through a 64 KiB `BufWriter`; a durable append writes (flushing the buffer) and
//! calls `sync_data`, all under the lock. No index: reading a key scans the file
//! (used only to verify; W5/W6 are n/a for the baseline).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use anyhow::{anyhow, Result};
use bytes::Bytes;

use super::{Id, Spec, System};

const NO_INDEX: &str = "baseline, not required";

pub fn spec() -> Spec {
    Spec {
        id: Id::File,
        name: "File (BufWriter / write+sync_data)".to_string(),
        nondurable: Ok(()),
        read: Err(NO_INDEX),
        reopen: Err(NO_INDEX),
        open,
        open_scanning: None,
    }
}

fn open(dir: &Path) -> Result<Box<dyn System>> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("baseline.log");
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    Ok(Box::new(FileLog {
        path,
        out: Mutex::new(BufWriter::with_capacity(64 * 1024, file)),
    }))
}

struct FileLog {
    path: PathBuf,
    out: Mutex<BufWriter<File>>,
}

impl FileLog {
    fn out(&self) -> Result<MutexGuard<'_, BufWriter<File>>> {
        self.out
            .lock()
            .map_err(|_| anyhow!("mutex poisoned by an earlier panic"))
    }
}

impl System for FileLog {
    fn append(&self, key: &[u8], value: &Bytes, durable: bool) -> Result<()> {
        let mut out = self.out()?;
        out.write_all(&(key.len() as u16).to_le_bytes())?;
        out.write_all(&(value.len() as u32).to_le_bytes())?;
        out.write_all(key)?;
        out.write_all(value)?;
        if durable {
            out.flush()?;
            out.get_ref().sync_data()?;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(self.out()?.flush()?)
    }

    fn read(&self, key: &[u8]) -> Result<(usize, usize)> {
        Ok(self.read_many(&[key])?[0])
    }

    /// One scan of the whole file, counting the records of every asked key.
    fn read_many(&self, keys: &[&[u8]]) -> Result<Vec<(usize, usize)>> {
        self.flush()?;
        let mut found: HashMap<&[u8], (usize, usize)> = keys.iter().map(|k| (*k, (0, 0))).collect();
        let mut input = BufReader::with_capacity(1 << 20, File::open(&self.path)?);
        let mut header = [0u8; 6];
        let mut key = Vec::new();
        let mut value = Vec::new();
        loop {
            match input.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e.into()),
            }
            key.resize(u16::from_le_bytes([header[0], header[1]]) as usize, 0);
            value.resize(
                u32::from_le_bytes([header[2], header[3], header[4], header[5]]) as usize,
                0,
            );
            input.read_exact(&mut key)?;
            input.read_exact(&mut value)?;
            if let Some((records, bytes)) = found.get_mut(key.as_slice()) {
                *records += 1;
                *bytes += value.len();
            }
        }
        Ok(keys.iter().map(|k| found[k]).collect())
    }

    fn close(self: Box<Self>) -> Result<()> {
        let mut out = self.out()?;
        out.flush()?;
        Ok(out.get_ref().sync_data()?)
    }
}
