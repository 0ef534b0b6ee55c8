//! What a disk can hold after a power cut once the calls of a log took effect, and
//! the real WAL directories written from it.

use super::*;

pub(super) const PAGE: usize = 4096;

pub(super) const SECTOR: usize = 512;

/// What the page cache and the disk hold of one file.
#[derive(Default, Clone)]
pub(super) struct FileState {
    /// Every byte written (what a reader of the running process sees).
    pub(super) written: Vec<u8>,
    /// What the last successful sync made durable.
    pub(super) synced: Vec<u8>,
    /// Pages written since that sync.
    pub(super) dirty: BTreeSet<usize>,
    /// The writes since that sync, in order: a page that reached the disk holds the
    /// bytes of some prefix of them (write-back can take it at any moment).
    pub(super) pending: Vec<(usize, Vec<u8>)>,
    /// The file's lengths since that sync: any of them, or the synced one, can be
    /// the length on disk.
    pub(super) lengths: Vec<usize>,
    /// Directory entry: exists now, and whether that is durable (the shard
    /// directory was synced since the file's creation or removal).
    pub(super) exists: bool,
    pub(super) entry_synced: bool,
}

impl FileState {
    /// `bytes` written at `offset`.
    pub(super) fn write(&mut self, offset: u64, bytes: &[u8]) {
        let (from, to) = (offset as usize, offset as usize + bytes.len());
        if self.written.len() < to {
            self.written.resize(to, 0);
        }
        self.written[from..to].copy_from_slice(bytes);
        self.dirty.extend(from / PAGE..to.div_ceil(PAGE));
        self.pending.push((from, bytes.to_vec()));
        self.lengths.push(self.written.len());
    }

    /// `fdatasync` or `fsync`: every byte written so far, and the length, durable.
    pub(super) fn sync(&mut self) {
        self.synced = self.written.clone();
        self.dirty.clear();
        self.pending.clear();
        self.lengths.clear();
    }

    /// Cut to `len` bytes.
    pub(super) fn cut(&mut self, len: u64) {
        self.written.truncate(len as usize);
        self.lengths.push(self.written.len());
    }

    /// The file's bytes on disk after a power cut: each page written since the
    /// sync lost (as synced), as last written, or as it was after some earlier
    /// write since the sync; with `tears`, a third of those pages split at a random
    /// sector ([`disk_after_cut`]). Also whether a page is torn: within the file's
    /// length, equal to none of its versions.
    pub(super) fn after_cut(&self, rng: &mut Rng, tears: bool) -> (Vec<u8>, bool) {
        let f = self;
        let mut bytes = f.synced.clone();
        let longest = f.lengths.iter().copied().fold(bytes.len(), usize::max);
        bytes.resize(longest, 0);
        // (A version is how many of the writes since the sync it holds.)
        let version = |rng: &mut Rng| match rng.below(4) {
            0 | 1 => 0,
            2 => f.pending.len(),
            _ => 1 + rng.below(f.pending.len() as u32) as usize,
        };
        let mut split_pages = Vec::new();
        for &page in &f.dirty {
            let first = version(rng);
            let split_page = tears && rng.below(3) == 0;
            let split = if split_page {
                1 + rng.below(7) as usize
            } else {
                8
            };
            let second = if split_page { version(rng) } else { first };
            let at = |sector: usize| (page * PAGE + sector * SECTOR).min(longest);
            for (sectors, applied) in [(0..split, first), (split..8, second)] {
                let (from, to) = (at(sectors.start), at(sectors.end));
                for (offset, data) in &f.pending[..applied] {
                    let (lo, hi) = (from.max(*offset), to.min(offset + data.len()));
                    if lo < hi {
                        bytes[lo..hi].copy_from_slice(&data[lo - offset..hi - offset]);
                    }
                }
            }
            if first != second {
                split_pages.push(page);
            }
        }
        // The length: the synced one or any the file had since (a longer file reads
        // zeros where its pages did not reach the disk).
        let pick = rng.below(f.lengths.len() as u32 + 1) as usize;
        bytes.resize(f.lengths.get(pick).copied().unwrap_or(f.synced.len()), 0);
        let torn = split_pages
            .iter()
            .any(|&page| !some_version(f, &bytes, page));
        (bytes, torn)
    }
}

/// A disk after a power cut once `ops` took effect: see the module docs. With
/// `tears`, a third of the pages written since the sync are split at a random
/// 512-byte sector: the sectors before it hold one of the versions above, the rest
/// another (drawn the same way, so often the same one). Returns the surviving files
/// and their bytes, and the shards with a torn page: one that, within the file's
/// length, equals none of its versions.
pub(super) fn disk_after_cut(
    ops: &[Op],
    rng: &mut Rng,
    tears: bool,
) -> (BTreeMap<FileId, Vec<u8>>, BTreeSet<u32>) {
    let files = replay(ops);
    let mut disk = BTreeMap::new();
    let mut torn = BTreeSet::new();
    for (id, f) in files {
        let exists = if f.entry_synced {
            f.exists
        } else {
            rng.below(2) == 0
        };
        if !exists {
            continue;
        }
        let (bytes, split) = f.after_cut(rng, tears);
        if split {
            torn.insert(id.0);
        }
        disk.insert(id, bytes);
    }
    (disk, torn)
}

/// What the page cache and the disk hold of each file once `ops` took effect.
pub(super) fn replay(ops: &[Op]) -> BTreeMap<FileId, FileState> {
    let mut files: BTreeMap<FileId, FileState> = BTreeMap::new();
    for op in ops {
        apply(&mut files, op);
    }
    files
}

/// `op` takes effect on `files`.
pub(super) fn apply(files: &mut BTreeMap<FileId, FileState>, op: &Op) {
    match op {
        Op::Create(id) => {
            // A new file: names are never reused (a reopen goes on past the
            // newest file it found, removed or not).
            files.insert(
                *id,
                FileState {
                    exists: true,
                    ..FileState::default()
                },
            );
        }
        Op::Write {
            file,
            offset,
            bytes,
        } => files
            .get_mut(file)
            .expect("write to a created file")
            .write(*offset, bytes),
        Op::Sync { file, .. } => files.get_mut(file).expect("sync of a created file").sync(),
        Op::Cut { file, len } => files
            .get_mut(file)
            .expect("cut of a created file")
            .cut(*len),
        Op::Preallocate { file, len } => {
            let f = files
                .get_mut(file)
                .expect("preallocation of a created file");
            if f.written.len() < *len as usize {
                f.written.resize(*len as usize, 0);
            }
            f.lengths.push(f.written.len());
        }
        Op::Remove(id) => {
            let f = files.get_mut(id).expect("removal of a created file");
            f.exists = false;
            f.entry_synced = false;
        }
        Op::SyncDir(shard) => {
            for (_, f) in files.iter_mut().filter(|((s, _), _)| s == shard) {
                f.entry_synced = true;
            }
        }
        // Files other than segments: see `named.rs`.
        Op::Put { .. }
        | Op::SyncFile(_)
        | Op::Rename { .. }
        | Op::RemoveFile(_)
        | Op::MakeDir(_)
        | Op::SyncRoot
        | Op::Lock => {}
    }
}

/// Whether page `page` of `bytes` (a file's bytes on disk), within their length, is
/// one of the page's versions: as synced plus some prefix of the writes since.
pub(super) fn some_version(f: &FileState, bytes: &[u8], page: usize) -> bool {
    let (from, to) = (page * PAGE, ((page + 1) * PAGE).min(bytes.len()));
    if from >= to {
        return true;
    }
    let mut version: Vec<u8> = (from..to)
        .map(|i| f.synced.get(i).copied().unwrap_or(0))
        .collect();
    for applied in 0..=f.pending.len() {
        if version == bytes[from..to] {
            return true;
        }
        if let Some((offset, data)) = f.pending.get(applied) {
            let (lo, hi) = (from.max(*offset), to.min(offset + data.len()));
            if lo < hi {
                version[lo - from..hi - from].copy_from_slice(&data[lo - offset..hi - offset]);
            }
        }
    }
    false
}

/// Writes `disk` as the segments of a WAL directory whose manifest is `manifest`.
pub(super) fn write_dir(dir: &Path, manifest: &Path, disk: &BTreeMap<FileId, Vec<u8>>) {
    std::fs::create_dir_all(dir).expect("dir");
    std::fs::copy(manifest, dir.join("MANIFEST")).expect("manifest");
    for shard in 0..SHARDS as u32 {
        std::fs::create_dir_all(dir.join(shard_dir_name(shard))).expect("shard dir");
    }
    for ((shard, sequence), bytes) in disk {
        let path = dir
            .join(shard_dir_name(*shard))
            .join(segment_file_name(*sequence));
        std::fs::write(path, bytes).expect("segment");
    }
}

/// A disk after a power cut once `ops` took effect ([`disk_after_cut`]), written as
/// the WAL at `dir`.
pub(super) fn cut_into(
    dir: &Path,
    manifest: &Path,
    ops: &[Op],
    rng: &mut Rng,
    tears: bool,
) -> (BTreeMap<FileId, Vec<u8>>, BTreeSet<u32>) {
    let (disk, torn) = disk_after_cut(ops, rng, tears);
    write_dir(dir, manifest, &disk);
    (disk, torn)
}

/// The segment files of the WAL at `dir`, as [`write_dir`] takes them (its
/// checkpoints left out).
pub(super) fn read_wal(dir: &Path) -> BTreeMap<FileId, Vec<u8>> {
    let mut files = BTreeMap::new();
    for shard in 0..SHARDS as u32 {
        let shard_dir = dir.join(shard_dir_name(shard));
        for entry in std::fs::read_dir(&shard_dir).expect("list shard") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("name");
            if crate::format::names::is_checkpoint_name(name.as_ref()) {
                continue;
            }
            let sequence = crate::format::names::parse_segment_file_name(name).expect("a segment");
            files.insert((shard, sequence), std::fs::read(&path).expect("read"));
        }
    }
    files
}

/// Copies the manifest and the segment files of the WAL at `from` to `to` (not its
/// lock file: the copy is not held by anyone).
pub(super) fn copy_wal(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    std::fs::copy(from.join("MANIFEST"), to.join("MANIFEST")).expect("manifest");
    for entry in std::fs::read_dir(from).expect("list") {
        let path = entry.expect("entry").path();
        if !path.is_dir() {
            continue;
        }
        let shard = to.join(path.file_name().expect("name"));
        std::fs::create_dir_all(&shard).expect("shard dir");
        for segment in std::fs::read_dir(&path).expect("list shard") {
            let segment = segment.expect("entry").path();
            std::fs::copy(&segment, shard.join(segment.file_name().expect("name")))
                .expect("segment");
        }
    }
}

/// The files of the page cache once `ops` took effect: what a reader sees.
pub(super) fn page_cache(ops: &[Op]) -> BTreeMap<FileId, Vec<u8>> {
    replay(ops)
        .into_iter()
        .filter(|(_, f)| f.exists)
        .map(|(id, f)| (id, f.written))
        .collect()
}

/// Calls that leave `disk` on disk as it is (the start of a log after a power cut).
pub(super) fn durable_ops(disk: &BTreeMap<FileId, Vec<u8>>) -> Vec<Op> {
    let mut ops = Vec::new();
    for (&file, bytes) in disk {
        ops.push(Op::Create(file));
        ops.push(Op::Write {
            file,
            offset: 0,
            bytes: bytes.clone(),
        });
        ops.push(Op::Sync { file, all: true });
    }
    ops.extend((0..SHARDS as u32).map(Op::SyncDir));
    ops
}
