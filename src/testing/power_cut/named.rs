//! The files other than segments (the manifest, the index checkpoints and their
//! temporary files) and the directories, after a power cut: the calls of the log
//! that name them (`Op::Put`, `SyncFile`, `Rename`, `RemoveFile`, `MakeDir`,
//! `SyncRoot`, `SyncDir`) replayed into files and directory entries.
//!
//! A file's bytes are modelled as a segment's ([`FileState`]): what its last fsync
//! covered is on disk, any page written since may be lost. A directory's entries
//! (a file linked under a name, renamed, unlinked; a directory made) are on disk as
//! they were at its last fsync, each change since either made or lost, in order,
//! a rename whole or not at all (a change that finds nothing to act on is lost): a
//! rename not yet fsynced into its directory can be lost, and a file renamed before
//! its bytes were synced can be under its new name with pages lost.

use super::*;
use std::path::PathBuf;

/// An entry that is a directory, not a file.
const DIR: usize = usize::MAX;

/// A change to a directory's entries since its last fsync.
#[derive(Clone, Debug)]
enum Change {
    Link(PathBuf, usize),
    Unlink(PathBuf),
    Rename { from: PathBuf, to: PathBuf },
}

/// One directory's entries (path under the root -> file, or [`DIR`]).
#[derive(Default, Clone)]
struct Entries {
    now: BTreeMap<PathBuf, usize>,
    synced: BTreeMap<PathBuf, usize>,
    changes: Vec<Change>,
}

/// What the page cache and the disk hold of the files other than segments, and of
/// the directories the log made.
#[derive(Default, Clone)]
pub(super) struct Named {
    files: Vec<FileState>,
    /// By directory (`""`: the root).
    dirs: BTreeMap<PathBuf, Entries>,
}

/// The named files on a disk after a cut, and the directories the log made: those
/// kept, and those lost (with everything in them).
#[derive(Debug, Default)]
pub(super) struct NamedDisk {
    pub(super) files: BTreeMap<PathBuf, Vec<u8>>,
    pub(super) made_dirs: BTreeSet<PathBuf>,
    pub(super) lost_dirs: BTreeSet<PathBuf>,
}

fn parent(path: &Path) -> PathBuf {
    path.parent().map(Path::to_path_buf).unwrap_or_default()
}

impl Named {
    /// The state once `ops` took effect.
    pub(super) fn replay(ops: &[Op]) -> Named {
        let mut named = Named::default();
        for op in ops {
            named.apply(op);
        }
        named
    }

    fn change(&mut self, dir: PathBuf, change: Change) {
        let entries = self.dirs.entry(dir).or_default();
        apply_change(&mut entries.now, &change);
        entries.changes.push(change);
    }

    fn sync_dir(&mut self, dir: PathBuf) {
        let entries = self.dirs.entry(dir).or_default();
        entries.synced = entries.now.clone();
        entries.changes.clear();
    }

    fn file_at(&mut self, path: &Path) -> Option<&mut FileState> {
        let at = *self.dirs.get(&parent(path))?.now.get(path)?;
        self.files.get_mut(at)
    }

    /// `op` takes effect (segment calls but a shard directory's fsync change nothing
    /// here).
    pub(super) fn apply(&mut self, op: &Op) {
        match op {
            Op::Put { path, bytes } => {
                if let Some(f) = self.file_at(path) {
                    // Emptied, then written (`O_TRUNC`).
                    f.cut(0);
                    f.write(0, bytes);
                } else {
                    let mut f = FileState {
                        exists: true,
                        ..FileState::default()
                    };
                    f.write(0, bytes);
                    self.files.push(f);
                    let link = Change::Link(path.clone(), self.files.len() - 1);
                    self.change(parent(path), link);
                }
            }
            Op::SyncFile(path) => self.file_at(path).expect("sync of a file").sync(),
            Op::Rename { from, to } => {
                assert_eq!(parent(from), parent(to), "a rename within a directory");
                let rename = Change::Rename {
                    from: from.clone(),
                    to: to.clone(),
                };
                self.change(parent(from), rename);
            }
            Op::RemoveFile(path) => self.change(parent(path), Change::Unlink(path.clone())),
            Op::MakeDir(path) => self.change(parent(path), Change::Link(path.clone(), DIR)),
            Op::SyncRoot => self.sync_dir(PathBuf::new()),
            Op::SyncDir(shard) => self.sync_dir(crate::format::names::shard_dir(*shard)),
            _ => {}
        }
    }

    /// The files and directories as a reader sees them (what a kill leaves).
    pub(super) fn page_cache(&self) -> NamedDisk {
        let mut out = NamedDisk::default();
        for entries in self.dirs.values() {
            for (path, &at) in &entries.now {
                if at == DIR {
                    out.made_dirs.insert(path.clone());
                } else {
                    out.files
                        .insert(path.clone(), self.files[at].written.clone());
                }
            }
        }
        out
    }

    /// A disk after a power cut: each directory's entries as synced plus some of
    /// the changes since, each file's bytes as [`FileState::after_cut`] draws them.
    pub(super) fn after_cut(&self, rng: &mut Rng) -> NamedDisk {
        let mut disk = NamedDisk::default();
        let mut made = BTreeSet::new();
        let mut kept = BTreeSet::new();
        for entries in self.dirs.values() {
            let mut state = entries.synced.clone();
            for change in &entries.changes {
                if let Change::Link(path, DIR) = change {
                    made.insert(path.clone());
                }
                if rng.below(2) == 0 {
                    apply_change(&mut state, change);
                }
            }
            for (path, at) in state {
                if at == DIR {
                    kept.insert(path);
                } else {
                    disk.files
                        .insert(path, self.files[at].after_cut(rng, false).0);
                }
            }
        }
        disk.lost_dirs = made.difference(&kept).cloned().collect();
        disk.made_dirs = kept;
        // Whatever was in a lost directory is lost with it.
        let lost = |path: &PathBuf| disk.lost_dirs.iter().any(|d| path.starts_with(d));
        disk.files.retain(|path, _| !lost(path));
        disk
    }
}

/// `change` made to `entries`, if it finds what it acts on.
fn apply_change(entries: &mut BTreeMap<PathBuf, usize>, change: &Change) {
    match change {
        Change::Link(path, at) => {
            entries.insert(path.clone(), *at);
        }
        Change::Unlink(path) => {
            entries.remove(path);
        }
        Change::Rename { from, to } => {
            if let Some(at) = entries.remove(from) {
                entries.insert(to.clone(), at);
            }
        }
    }
}

/// Writes a WAL directory at `dir`: the named files of `named`, the shard
/// directories `named` made (and, if they were there `before` the log, all but
/// those it lost) and the `segments` in them.
pub(super) fn write_wal(
    dir: &Path,
    named: &NamedDisk,
    segments: &BTreeMap<FileId, Vec<u8>>,
    before: bool,
) {
    std::fs::create_dir_all(dir).expect("dir");
    let lost = |shard: u32| {
        let sdir = crate::format::names::shard_dir(shard);
        named.lost_dirs.contains(&sdir) || !(before || named.made_dirs.contains(&sdir))
    };
    for shard in (0..SHARDS as u32).filter(|&s| !lost(s)) {
        std::fs::create_dir_all(dir.join(shard_dir_name(shard))).expect("shard dir");
    }
    for (path, bytes) in &named.files {
        std::fs::write(dir.join(path), bytes).expect("file");
    }
    for ((shard, sequence), bytes) in segments.iter().filter(|((s, _), _)| !lost(*s)) {
        let path = dir
            .join(shard_dir_name(*shard))
            .join(segment_file_name(*sequence));
        std::fs::write(path, bytes).expect("segment");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &str, bytes: &[u8]) -> Op {
        Op::Put {
            path: path.into(),
            bytes: bytes.to_vec(),
        }
    }

    fn rename(from: &str, to: &str) -> Op {
        Op::Rename {
            from: from.into(),
            to: to.into(),
        }
    }

    /// Every disk the model draws for an atomic replacement cut at `cut`, over many
    /// draws.
    fn disks(ops: &[Op], cut: usize) -> BTreeSet<Option<Vec<u8>>> {
        let named = Named::replay(&ops[..cut]);
        let mut rng = Rng(7);
        (0..200)
            .map(|_| named.after_cut(&mut rng).files.remove(Path::new("M")))
            .collect()
    }

    /// The model itself: with the fsync before the rename the name holds the old
    /// bytes or the new ones whole; without it, also torn ones (here: lost).
    #[test]
    fn a_rename_is_lost_or_made_whole_and_unsynced_bytes_may_be_lost() {
        let old = b"old!".to_vec();
        let mut ops = vec![put("M", &old), Op::SyncFile("M".into()), Op::SyncRoot];
        let base = ops.len();
        ops.extend([
            put("M.tmp", b"new!"),
            Op::SyncFile("M.tmp".into()),
            rename("M.tmp", "M"),
            Op::SyncRoot,
        ]);
        let whole: BTreeSet<_> = [Some(old.clone()), Some(b"new!".to_vec())].into();
        for cut in base..ops.len() {
            let seen = disks(&ops, cut);
            let expected: BTreeSet<_> = if cut < base + 3 {
                [Some(old.clone())].into()
            } else {
                whole.clone()
            };
            assert_eq!(seen, expected, "cut after {cut}");
        }
        assert_eq!(disks(&ops, ops.len()), [Some(b"new!".to_vec())].into());
        // Without the file's fsync, the new name may hold a file whose bytes were
        // lost: what the fsync before the rename is for.
        ops.remove(base + 1);
        assert!(disks(&ops, base + 2).contains(&Some(Vec::new())));
        // A directory made but not synced is lost with the files in it.
        let ops = [Op::MakeDir("d".into()), put("d/M", b"x")];
        let named = Named::replay(&ops);
        let mut rng = Rng(1);
        let lost = (0..50)
            .map(|_| named.after_cut(&mut rng))
            .filter(|d| d.lost_dirs.contains(Path::new("d")))
            .inspect(|d| assert!(d.files.is_empty()))
            .count();
        assert!(lost > 0);
    }
}
