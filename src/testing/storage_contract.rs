//! The calls of the `Storage` trait behave alike over files (`FsStorage`) and over
//! memory (`MemStorage`): every test here runs against both, so that what the
//! memory store lets the power-cut model and the other tests see is what a disk
//! does.

use crate::format::names::{checkpoint_paths, segment_path, shard_dir, LOCK_FILE};
use crate::io::{DirSync, FsStorage, Kind, Storage, WriteSteps};
use crate::testing::mem_storage::MemStorage;
use crate::WalError;
use std::path::Path;

const STEPS: WriteSteps = WriteSteps {
    create: "creating",
    write: "writing",
    sync: "syncing",
    rename: "renaming",
};

/// Runs `check` against a store over a fresh temporary directory and one in memory.
fn both(check: impl Fn(&dyn Storage)) {
    let dir = tempfile::tempdir().expect("temp dir");
    check(&FsStorage::new(dir.path().join("wal"), 0o600));
    check(&MemStorage::default());
}

#[test]
fn files_written_atomically_read_back_whole_and_replace_the_old_one() {
    both(|s| {
        s.ensure_root().unwrap();
        s.create_dir(&shard_dir(0)).unwrap();
        let (path, tmp) = checkpoint_paths(0);
        assert_eq!(s.read_file(&path, 100, "reading").unwrap(), None);
        assert!(s.open_read(&path, "reading").unwrap().is_none());
        s.write_file_atomically(&path, &tmp, &[b"old"], DirSync::After, STEPS)
            .unwrap();
        let old = s.open_read(&path, "reading").unwrap().expect("written");
        s.write_file_atomically(&path, &tmp, &[b"new ", b"bytes"], DirSync::Skip, STEPS)
            .unwrap();
        assert_eq!(
            s.read_file(&path, 100, "reading").unwrap().as_deref(),
            Some(&b"new bytes"[..])
        );
        assert_eq!(
            s.read_file(&path, 3, "reading").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        // A handle opened before the replacement keeps reading the old file.
        let mut buf = [0u8; 3];
        old.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"old");
        assert_eq!(old.len().unwrap(), 3);
        assert!(old.read_at(&mut buf, 1).is_err(), "read past the end");
        assert!(s.full_path(&path).ends_with("shard-000/INDEX"));
        let names: Vec<_> = s.list_dir(&shard_dir(0)).unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        assert_eq!(
            (names[0].name.to_str(), names[0].kind),
            (Some("INDEX"), Kind::File)
        );
        s.remove_file(&path, "removing").unwrap();
        s.remove_file(&path, "removing").unwrap();
        assert_eq!(s.read_file(&path, 100, "reading").unwrap(), None);
    });
}

#[test]
fn directories_list_sorted_with_their_segments_and_files() {
    both(|s| {
        s.ensure_root().unwrap();
        for shard in [1, 0] {
            s.create_dir(&shard_dir(shard)).unwrap();
        }
        assert!(s.create_dir(&shard_dir(0)).is_err(), "created twice");
        s.sync_root().unwrap();
        let seg = s.create_segment(0, 2, b"head").unwrap();
        s.create_segment(0, 1, b"head").unwrap();
        s.sync_dir(0).unwrap();
        let lock = s.lock(Path::new(LOCK_FILE)).unwrap();
        let listed = |dir: &Path| -> Vec<(String, Kind)> {
            let entries = s.list_dir(dir).unwrap();
            entries
                .into_iter()
                .map(|e| (e.name.to_string_lossy().into_owned(), e.kind))
                .collect()
        };
        assert_eq!(
            listed(Path::new("")),
            [
                ("LOCK".to_string(), Kind::File),
                ("shard-000".to_string(), Kind::Dir),
                ("shard-001".to_string(), Kind::Dir)
            ]
        );
        let segments = listed(&shard_dir(0));
        assert_eq!(segments.len(), 2);
        assert!(segments[0].0 < segments[1].0);
        // A segment opened again is the same file; its stamp moves with each change.
        let before = s.stamp(&segment_path(0, 2)).unwrap();
        let again = s.open_segment(0, 2).unwrap();
        again.write_at(b"more", 4).unwrap();
        let mut buf = [0u8; 8];
        seg.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"headmore");
        assert_eq!(seg.len().unwrap(), 8);
        let after = s.stamp(&segment_path(0, 2)).unwrap();
        assert_eq!(after.len, 8);
        assert_ne!(before, after);
        let read = s
            .open_read(&segment_path(0, 2), "reading")
            .unwrap()
            .unwrap();
        assert_eq!(read.len().unwrap(), 8);
        assert!(matches!(
            s.open_segment(0, 9),
            Err(WalError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound
        ));
        s.remove_segment(0, 1).unwrap();
        assert_eq!(listed(&shard_dir(0)).len(), 1);
        s.remove_dir_all(&shard_dir(1)).unwrap();
        s.remove_dir_all(&shard_dir(1)).unwrap();
        assert!(!s.remove_root().unwrap(), "not empty");
        drop(lock);
    });
}

#[test]
fn a_lock_is_held_until_its_guard_is_dropped() {
    both(|s| {
        s.ensure_root().unwrap();
        let path = Path::new(LOCK_FILE);
        assert!(!s.is_locked(path));
        let held = s.lock(path).unwrap();
        assert!(matches!(s.lock(path), Err(WalError::Locked { .. })));
        // Another descriptor of the same process is refused too (flock).
        assert!(s.is_locked(path));
        drop(held);
        assert!(!s.is_locked(path));
        drop(s.lock(path).unwrap());
    });
}
