//! The index checkpoint as the index holds it: read through the storage, its front
//! decoded (`format/checkpoint.rs`), and the file kept open so that each key's
//! locations are read when the key is ([`Run`]).

use super::frozen::{Frozen, Run};
use crate::error::{Result, WalError};
use crate::format::checkpoint::{self, Checkpoint, CRC_LEN, HEADER_LEN};
use crate::io::Storage;
use std::path::Path;
use std::sync::Arc;

/// A checkpoint an open loaded: each key with its frozen locations.
pub(crate) type Loaded = Checkpoint<Run>;

/// Reads shard `shard`'s checkpoint at `path`, if there is one: its front only
/// (header, segments, key directory), checked; the file stays open for the keys'
/// locations. `None` if there is none, or if it failed a check (then the reason is
/// in the second element). Anything but a regular file under its name is
/// [`WalError::ForeignFile`]; it is opened without following a symlink or waiting
/// on a FIFO.
pub(crate) fn read(
    storage: &dyn Storage,
    path: &Path,
    shard: u32,
) -> Result<(Option<Loaded>, Option<String>)> {
    const OP: &str = "reading index checkpoint";
    let Some(file) = storage.open_read(path, OP)? else {
        return Ok((None, None));
    };
    let path = file.path().to_path_buf();
    let read_err = |e| WalError::io(OP, &path, e);
    let file_len = file.len().map_err(read_err)?;
    if let Some(reason) = checkpoint::too_short(file_len) {
        return Ok((None, Some(reason)));
    }
    // As root no file refuses a read: the tests make this one fail for the paths
    // they arm the hook for.
    #[cfg(test)]
    if crate::testing::hooks::FAILING_CHECKPOINT_READS.armed(&path) {
        return Err(read_err(std::io::Error::other("injected read error")));
    }
    let mut header = [0u8; HEADER_LEN];
    file.read_at(&mut header, 0).map_err(read_err)?;
    let front_len = match checkpoint::front_len(&header, file_len) {
        Ok(n) => n,
        Err(reason) => return Ok((None, Some(reason))),
    };
    // The length of a sparse file is no bound on memory: allocate without aborting.
    let mut front = Vec::new();
    if front.try_reserve_exact(front_len + CRC_LEN).is_err() {
        return Ok((
            None,
            Some(format!(
                "its front of {front_len} bytes does not fit in memory"
            )),
        ));
    }
    front.resize(front_len + CRC_LEN, 0);
    file.read_at(&mut front, 0).map_err(read_err)?;
    let decoded = match checkpoint::decode(&front, file_len, shard) {
        Ok(decoded) => decoded,
        Err(reason) => return Ok((None, Some(reason))),
    };
    let frozen = Arc::new(Frozen {
        file,
        path,
        sequences: decoded.segments.iter().map(|s| s.sequence).collect(),
        lens: decoded.segments.iter().map(|s| s.stamp.len).collect(),
    });
    let loaded = decoded.map_keys(|e| Run {
        frozen: frozen.clone(),
        at: e.at,
        groups: e.groups,
        count: e.count,
        crc: e.crc,
    });
    Ok((Some(loaded), None))
}

/// [`read`] of the checkpoint in shard directory `dir`, for recovery and inspect,
/// which still name their files by path.
pub(crate) fn read_in(dir: &Path, shard: u32) -> Result<(Option<Loaded>, Option<String>)> {
    let storage = crate::io::FsStorage::new(dir.to_path_buf(), crate::io::owned::DEFAULT_FILE_MODE);
    read(
        &storage,
        Path::new(crate::format::names::CHECKPOINT_FILE),
        shard,
    )
}
