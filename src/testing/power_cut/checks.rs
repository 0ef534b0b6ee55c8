//! The checks of what a reopen after a cut holds against what the run appended.

use super::*;

/// Checks the promise of every sync marker the calls `ops` write (after the calls
/// `before`): when it is written, every segment of its shard up to the one it
/// vouches for that still exists has its bytes and length synced since its last
/// change, and its name synced since its creation. Recovery takes a vouched segment
/// as durable and a vouched one that is missing as compacted, so a marker written
/// early turns a power cut into lost or reordered records. Checked on the log itself,
/// so it needs no cut to land in the window. The records are bound with `salt`.
pub(super) fn check_markers(before: &[Op], ops: &[Op], salt: u32, case: &str) {
    let mut files = replay(before);
    for (i, op) in ops.iter().enumerate() {
        if let Op::Write {
            file,
            offset,
            bytes,
        } = op
        {
            let mut pos = if *offset == 0 { SEGMENT_HEADER_LEN } else { 0 };
            let codec = Codec::bound(salt, file.0, file.1);
            while let Some(record) = bytes
                .get(pos..)
                .and_then(|b| codec.decode(b, offset + pos as u64).ok())
            {
                let vouched = record
                    .synced_through()
                    .map_or(0, |through| marker_synced_through(through, file.1));
                // Sequences start at 1: an empty range when it vouches for none.
                for (id, f) in files.range((file.0, 1)..(file.0, vouched + 1)) {
                    let durable = !f.exists
                        || (f.entry_synced && f.pending.is_empty() && f.lengths.is_empty());
                    assert!(
                        durable,
                        "{case}: call {} writes a marker in {file:?} vouching for segment \
                         {vouched}, but segment {id:?} is not durable yet (name synced: {}, \
                         bytes synced: {})",
                        before.len() + i,
                        f.entry_synced,
                        f.pending.is_empty() && f.lengths.is_empty()
                    );
                }
                pos += record.len;
            }
            assert_eq!(
                pos,
                bytes.len(),
                "{case}: call {} writes bytes that are not whole records",
                before.len() + i
            );
        }
        apply(&mut files, op);
    }
}

/// The indices of `appends` by key, each key's in append order.
pub(super) fn by_key(appends: &[Append]) -> BTreeMap<&[u8], Vec<usize>> {
    let mut by_key: BTreeMap<&[u8], Vec<usize>> = BTreeMap::new();
    for (i, a) in appends.iter().enumerate() {
        by_key.entry(&a.key).or_default().push(i);
    }
    by_key
}

/// For each append, whether it may be gone after a cut at `cut` because compaction
/// removed its segment: the segment's unlink is among the first `cut` calls.
pub(super) fn removable(appends: &[Append], placed: &Placement, cut: usize) -> Vec<bool> {
    appends
        .iter()
        .map(|a| {
            placed
                .segment_of
                .get(&a.value)
                .and_then(|file| placed.removed_at.get(file))
                .is_some_and(|&at| at < cut)
        })
        .collect()
}

/// Which segment each value was written to, and when each removed segment was
/// unlinked (its index in the log).
#[derive(Default)]
pub(super) struct Placement {
    pub(super) segment_of: BTreeMap<Vec<u8>, FileId>,
    pub(super) removed_at: BTreeMap<FileId, usize>,
}

/// Replays the writes of `ops` into each file's final bytes and decodes its records:
/// every value of the run is unique (it starts with the append's number).
pub(super) fn placement(ops: &[Op]) -> Placement {
    let mut bytes: BTreeMap<FileId, Vec<u8>> = BTreeMap::new();
    let mut placed = Placement::default();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Write {
                file,
                offset,
                bytes: data,
            } => {
                let b = bytes.entry(*file).or_default();
                let (from, to) = (*offset as usize, *offset as usize + data.len());
                if b.len() < to {
                    b.resize(to, 0);
                }
                b[from..to].copy_from_slice(data);
            }
            Op::Remove(file) => {
                placed.removed_at.insert(*file, i);
            }
            _ => {}
        }
    }
    for (file, b) in &bytes {
        let mut pos = SEGMENT_HEADER_LEN.min(b.len());
        let codec = Codec::bound(crate::wal::MEM_SALT, file.0, file.1);
        while let Ok(record) = codec.decode(&b[pos..], pos as u64) {
            if record.is_data() {
                placed.segment_of.insert(record.value.to_vec(), *file);
            }
            pos += record.len;
        }
    }
    placed
}

/// Checks what `wal` (reopened after a cut at `cut`) holds against `appends`, of
/// which those marked in `removable` may be gone with a segment compaction removed.
/// Per shard (and so per key) the recovered appends must be one unbroken run: before
/// it only removable appends, after it none acknowledged as durable before the cut.
pub(super) fn check(wal: &Wal, appends: &[Append], removable: &[bool], cut: usize, case: &str) {
    let mut recovered = vec![false; appends.len()];
    for (key, list) in &by_key(appends) {
        let got: Vec<Bytes> = wal.enumerate_records(key).expect("read").collect();
        let start = match got.first() {
            Some(first) => list
                .iter()
                .position(|&i| appends[i].value[..] == first[..])
                .unwrap_or_else(|| panic!("{case}: key {key:?}: a record not appended")),
            None => list.iter().take_while(|&&i| removable[i]).count(),
        };
        for &i in &list[..start] {
            assert!(
                removable[i],
                "{case}: key {key:?} lost append {i}, before a kept one and not in a removed segment"
            );
        }
        assert!(
            start + got.len() <= list.len(),
            "{case}: key {key:?}: more records than appended"
        );
        for (n, (g, &i)) in got.iter().zip(&list[start..]).enumerate() {
            assert_eq!(
                &g[..],
                &appends[i].value[..],
                "{case}: key {key:?} record {n}"
            );
            recovered[i] = true;
        }
        for &i in &list[start + got.len()..] {
            if let Some(at) = appends[i].durable_at {
                assert!(
                    at > cut,
                    "{case}: key {key:?} lost append {i}, acknowledged durable at log {at}"
                );
            }
        }
    }
    // Per shard: removable appends gone, then the kept run, then appends lost.
    let mut kept_from: Vec<Option<usize>> = vec![None; SHARDS];
    let mut lost_from: Vec<Option<usize>> = vec![None; SHARDS];
    for (i, a) in appends.iter().enumerate() {
        let shard = shard_for(&a.key, SHARDS);
        match (recovered[i], kept_from[shard], lost_from[shard]) {
            (true, _, Some(lost)) => {
                panic!("{case}: shard {shard} kept append {i} but lost append {lost} before it")
            }
            (true, None, None) => kept_from[shard] = Some(i),
            (false, Some(_), None) => lost_from[shard] = Some(i),
            (false, None, None) if !removable[i] => lost_from[shard] = Some(i),
            _ => {}
        }
    }
}

/// The recovered WAL takes a durable append on every key. A copy of its files taken
/// right after the last answer (what a `kill -9` then leaves: nothing the answer
/// needed may wait for `close`), and the WAL itself after a clean close, must both
/// reopen with every record it held, the new ones included.
pub(super) fn durable_after_recovery(wal: &Wal, dir: &Path, options: &WalOptions, case: &str) {
    let keys: Vec<Vec<u8>> = (0..5).map(|k| format!("k{k}").into_bytes()).collect();
    let mut held = BTreeMap::new();
    for key in &keys {
        wal.log_entry(key, Bytes::from_static(b"after the cut"))
            .unwrap_or_else(|e| panic!("{case}: durable append after recovery: {e}"));
        let records: Vec<Bytes> = wal.enumerate_records(key).expect("read").collect();
        held.insert(key.clone(), records);
    }
    let killed = dir.with_extension("killed");
    copy_wal(dir, &killed);
    wal.close().expect("close");
    for (what, dir) in [("after a kill", killed.as_path()), ("after close", dir)] {
        let wal = Wal::new(dir, options.clone())
            .unwrap_or_else(|e| panic!("{case}: second reopen {what} failed: {e}"));
        for (key, records) in &held {
            let again: Vec<Bytes> = wal.enumerate_records(key).expect("read").collect();
            assert_eq!(&again, records, "{case}: key {key:?}, second reopen {what}");
        }
        wal.close().expect("close");
    }
    std::fs::remove_dir_all(&killed).expect("cleanup");
}

/// Checks a WAL opened with `SkipCorrupted` after a cut at `cut`: per key, the
/// records are appends of the key in order (none invented or reordered), and every
/// append acknowledged as durable before the cut is among them, unless `removable`
/// (compacted away).
pub(super) fn check_skipping(
    wal: &Wal,
    appends: &[Append],
    removable: &[bool],
    cut: usize,
    case: &str,
) {
    for (key, list) in &by_key(appends) {
        let kept = kept_in_order(wal, key, appends, list, case);
        for &i in list
            .iter()
            .filter(|&&i| !kept.contains(&i) && !removable[i])
        {
            if let Some(at) = appends[i].durable_at.filter(|&at| at <= cut) {
                panic!("{case}: key {key:?} lost an append acknowledged durable at log {at}");
            }
        }
    }
}

/// Which of `key`'s appends (`list`, indices into `appends`) `wal` returns: each
/// record it returns must be one of them, in their order (values are unique).
pub(super) fn kept_in_order(
    wal: &Wal,
    key: &[u8],
    appends: &[Append],
    list: &[usize],
    case: &str,
) -> Vec<usize> {
    let mut rest = list.iter();
    wal.enumerate_records(key)
        .expect("read")
        .map(|got| {
            *rest
                .find(|&&i| appends[i].value[..] == got[..])
                .unwrap_or_else(|| {
                    panic!("{case}: key {key:?}: a record not appended, or out of order")
                })
        })
        .collect()
}

/// The shard of the WAL at `dir` that `path` lies in.
pub(super) fn shard_of(dir: &Path, path: &Path) -> Option<u32> {
    (0..SHARDS as u32).find(|&s| path.starts_with(dir.join(shard_dir_name(s))))
}

/// What a reopen after a cut at `cut` must hold: the run's `appends`, of which
/// those marked in `removable` may be gone with a segment compaction removed.
#[derive(Clone, Copy)]
pub(super) struct Expected<'a> {
    pub(super) appends: &'a [Append],
    pub(super) removable: &'a [bool],
    pub(super) cut: usize,
}

/// Checks a disk state that `Strict` refused for damage in `path`: the damaged
/// shard's files are left as they were (other shards may have cut their torn tails,
/// as any open does); `skipping` (`SkipCorrupted`) opens it, reports what it skipped
/// and keeps what [`check_skipping`] asks; and what it holds, plus a durable append
/// per key, survives a kill and a close.
pub(super) fn after_refusal(
    dir: &Path,
    path: &Path,
    disk: &BTreeMap<FileId, Vec<u8>>,
    skipping: &WalOptions,
    expected: &Expected<'_>,
    case: &str,
) {
    let Expected {
        appends,
        removable,
        cut,
    } = *expected;
    let damaged = |((s, _), _): &(&FileId, &Vec<u8>)| shard_of(dir, path) == Some(*s);
    let now = read_wal(dir);
    assert!(
        now.iter().filter(damaged).eq(disk.iter().filter(damaged)),
        "{case}: a refused open modified the damaged shard"
    );
    let wal = Wal::new(dir, skipping.clone())
        .unwrap_or_else(|e| panic!("{case}: skipping reopen failed: {e}"));
    assert!(!wal.recovery_report().skipped.is_empty(), "{case}");
    check_skipping(&wal, appends, removable, cut, case);
    durable_after_recovery(&wal, dir, skipping, case);
    std::fs::remove_dir_all(dir).expect("cleanup");
}

/// Whether `Strict` refused a state for damage followed by records that verify:
/// lost or torn pages before pages that reached the disk, which recovery cannot tell
/// from damage to synced records, so it refuses rather than cut them.
pub(super) fn ambiguous(reason: &str) -> bool {
    reason.contains("valid record")
}

/// Fails the test for a state `Strict` must open: prints the log up to the cut
/// (which also depends on thread timing, so a seed alone may not replay it) and the
/// files on disk.
pub(super) fn reopen_failed(
    ops: &[Op],
    disk: &BTreeMap<FileId, Vec<u8>>,
    e: &crate::WalError,
    case: &str,
) -> ! {
    for (i, op) in ops.iter().enumerate() {
        eprintln!("{i}: {}", describe(op));
    }
    for (id, bytes) in disk {
        eprintln!("on disk: {id:?} {} bytes", bytes.len());
    }
    panic!("{case}: reopen failed: {e}")
}

pub(super) fn describe(op: &Op) -> String {
    match op {
        Op::Create(f) => format!("create {f:?}"),
        Op::Write {
            file,
            offset,
            bytes,
        } => format!("write {file:?} {offset}+{}", bytes.len()),
        Op::Sync { file, all } => format!("sync {file:?} all={all}"),
        Op::Cut { file, len } => format!("cut {file:?} {len}"),
        Op::Preallocate { file, len } => format!("preallocate {file:?} {len}"),
        Op::Remove(f) => format!("remove {f:?}"),
        Op::SyncDir(s) => format!("syncdir {s}"),
        Op::Put { path, bytes } => format!("put {} {} bytes", path.display(), bytes.len()),
        Op::SyncFile(path) => format!("sync {}", path.display()),
        Op::Rename { from, to } => format!("rename {} {}", from.display(), to.display()),
        Op::RemoveFile(path) => format!("remove {}", path.display()),
        Op::MakeDir(path) => format!("mkdir {}", path.display()),
        Op::SyncRoot => "syncdir root".into(),
        Op::Lock => "lock".into(),
    }
}
