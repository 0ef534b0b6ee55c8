//! Guarantee 4, damage anywhere, by seeded fuzzing: one WAL (2 shards, many small
//! segments) is written and closed cleanly; each case flips one bit of one of its
//! segment files (on a fresh copy) and reopens it under both recovery modes.
//!
//! What must happen depends only on where the bit landed, found by walking the
//! documented format (`tests/common`):
//! - segment header bytes 0..40 (magic, version, shard, sequence, created, salt,
//!   crc): the header checksum fails while the records after it verify. `Strict`:
//!   `Corruption { path, offset: 0 }`, nothing modified. `SkipCorrupted`: the
//!   header is skipped and reported, every record of the segment kept.
//! - a record: the CRC covers the whole record, so every flip is caught. In the last
//!   record of a shard's newest segment it is a torn tail (truncated, reported, under
//!   both modes); anywhere else `Strict` fails with `Corruption { path, offset }` at
//!   exactly that record (every record before it is intact), and `SkipCorrupted`
//!   skips exactly that record and returns every other one, and nothing else.
//!
//! Every open runs inside the test, so a panic fails it. Also: damaged, truncated and
//! inconsistent MANIFESTs and segment headers give their specific errors.

mod common;

use bytes::Bytes;
use common::{
    restore, seal_note_of, snapshot, walk_markers, walk_records, RecordPos, Rng, Snapshot,
    TestResult, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
};
use nano_wal::{RecoveryMode, Wal, WalError, WalOptions};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

const RECORDS: usize = 400;
const KEYS: [&[u8]; 6] = [b"", b"one", &[0xff, 0xfe], b"three", &[0x00, 0x80], b"five"];
const SHARDS: usize = 2;
/// A sync marker's length (format version 4): the header and one u64.
const MARKER_LEN: u64 = RECORD_HEADER_LEN as u64 + 8;
/// A seal note's length (format version 4): the header and two u64s.
const NOTE_LEN: u64 = RECORD_HEADER_LEN as u64 + 16;

fn options(mode: RecoveryMode) -> WalOptions {
    WalOptions::default()
        .with_shards(SHARDS)
        .with_max_key_size(16)
        .with_max_record_size(256)
        .with_max_segment_size(1024)
        .with_recovery_mode(mode)
}

fn key_of(i: usize) -> &'static [u8] {
    KEYS[i % KEYS.len()]
}

/// Value of record `i`; it starts with the record number, so a walked record names
/// which append it was.
fn value_of(i: usize) -> Bytes {
    Bytes::from(format!("{i:05}|{}", "x".repeat(20 + i * 13 % 50)))
}

fn index_of(r: &RecordPos) -> usize {
    std::str::from_utf8(&r.value[..5])
        .ok()
        .and_then(|s| s.parse().ok())
        .expect("a record written by this test")
}

/// The written WAL, closed, as a snapshot.
fn written_wal(root: &Path) -> AnyResult<Snapshot> {
    let dir = root.join("original");
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    for i in 0..RECORDS {
        wal.append_entry(key_of(i), value_of(i), i % 11 == 0)?;
    }
    wal.close()?;
    snapshot(&dir)
}

/// One segment file of the written WAL.
struct Seg {
    rel: PathBuf,
    len: u64,
    newest: bool,
    records: Vec<RecordPos>,
    /// Records, sync markers and the seal note, in file order: (offset, len, record
    /// index if a record).
    items: Vec<(u64, u64, Option<usize>)>,
    data: Vec<u8>,
}

fn segments(snap: &Snapshot) -> Vec<Seg> {
    let segs: Vec<&PathBuf> = snap
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.iter()
        .enumerate()
        .map(|(i, rel)| {
            let data = &snap[*rel];
            let records = walk_records(data);
            let mut items: Vec<(u64, u64, Option<usize>)> = records
                .iter()
                .map(|r| (r.offset, r.len, Some(index_of(r))))
                .chain(
                    walk_markers(data)
                        .iter()
                        .map(|m| (m.offset, MARKER_LEN, None)),
                )
                .chain(seal_note_of(data).map(|_| (SEGMENT_HEADER_LEN as u64, NOTE_LEN, None)))
                .collect();
            items.sort_unstable();
            // Records, sync markers and the seal note fill the file.
            let end = items
                .last()
                .map_or(SEGMENT_HEADER_LEN as u64, |&(offset, len, _)| offset + len);
            assert_eq!(end, data.len() as u64, "{rel:?} is exact after close");
            let newest = segs
                .get(i + 1)
                .is_none_or(|next| next.parent() != rel.parent());
            Seg {
                rel: (*rel).clone(),
                len: data.len() as u64,
                newest,
                records,
                items,
                data: data.clone(),
            }
        })
        .collect()
}

/// Every key holds exactly records `0..RECORDS` minus `missing`, plus `extra`, in order.
fn assert_contents(
    wal: &Wal,
    missing: &BTreeSet<usize>,
    extra: &[usize],
    case: &str,
) -> TestResult {
    for (k, key) in KEYS.iter().enumerate() {
        let got: Vec<Bytes> = wal.enumerate_records(key)?.collect();
        let want: Vec<Bytes> = (0..RECORDS)
            .filter(|i| !missing.contains(i))
            .chain(extra.iter().copied())
            .filter(|i| i % KEYS.len() == k)
            .map(value_of)
            .collect();
        assert!(
            got == want,
            "{case}: key {key:?}: {} records, expected {}",
            got.len(),
            want.len()
        );
    }
    let kept = (RECORDS - missing.len() + extra.len()) as u64;
    assert_eq!(wal.stats()?.records(), kept, "{case}: stats");
    Ok(())
}

/// What a case expects.
#[derive(Debug)]
enum Expect {
    /// `Strict` fails with Corruption at this offset; `SkipCorrupted` skips this range.
    Corrupt { offset: u64, len: u64 },
    /// Both modes open; the torn tail (offset, len) is truncated, and when it was the
    /// only sync marker vouching for a sealed segment, the segments after the oldest
    /// unvouched one are removed: (file, bytes left after the cut) each.
    Torn {
        offset: u64,
        len: u64,
        dropped: Vec<(PathBuf, u64)>,
    },
}

#[test]
fn seeded_bit_flips_in_segments() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let original = written_wal(tmp.path())?;
    let segs = segments(&original);
    let walked: usize = segs.iter().map(|s| s.records.len()).sum();
    assert_eq!(walked, RECORDS, "the walk finds every record");
    for shard in 0..SHARDS {
        let prefix = format!("shard-{shard:03}");
        let n = segs.iter().filter(|s| s.rel.starts_with(&prefix)).count();
        assert!(n >= 4, "{prefix} has {n} segments; the test wants several");
    }
    assert!(segs.iter().filter(|s| s.newest).all(|s| s.items.len() >= 2));
    let total_bytes: u64 = segs.iter().map(|s| s.len).sum();

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for seed in 1..=300u64 {
        let mut rng = Rng::seeded(seed);
        // Mostly a uniformly random byte of all segments; some cases aim at the
        // headers and at the newest segments' last records, which are rare otherwise.
        let (seg, at) = match seed % 10 {
            0 => {
                let s = &segs[rng.below(segs.len() as u64) as usize];
                (s, rng.below(SEGMENT_HEADER_LEN as u64))
            }
            1 => {
                let newest: Vec<&Seg> = segs.iter().filter(|s| s.newest).collect();
                let s = newest[rng.below(newest.len() as u64) as usize];
                let &(offset, len, _) = s.items.last().ok_or("empty newest segment")?;
                (s, offset + rng.below(len))
            }
            _ => {
                let mut byte = rng.below(total_bytes);
                let mut pick = &segs[0];
                for s in &segs {
                    if byte < s.len {
                        pick = s;
                        break;
                    }
                    byte -= s.len;
                }
                (pick, byte)
            }
        };
        let bit = rng.below(8) as u8;
        let (expect, missing, kind) = if at < SEGMENT_HEADER_LEN as u64 {
            // The records after a damaged header still verify: kept by
            // `SkipCorrupted`, which skips the header alone.
            (
                Expect::Corrupt {
                    offset: 0,
                    len: SEGMENT_HEADER_LEN as u64,
                },
                BTreeSet::new(),
                "segment header",
            )
        } else {
            // A record, a sync marker or a seal note (whose loss loses no record). After a clean
            // close a marker vouches for every sealed segment, so damage there is
            // corruption even at a sealed segment's end.
            let &(offset, len, index) = seg
                .items
                .iter()
                .find(|&&(offset, len, _)| offset <= at && at < offset + len)
                .ok_or("a byte outside every record")?;
            let last = seg.items.last().map(|i| i.0) == Some(offset);
            let mut lost: BTreeSet<usize> = index.into_iter().collect();
            if seg.newest && last {
                let dropped = if index.is_none() {
                    dropped_without_marker(&segs, seg, offset)
                } else {
                    Vec::new()
                };
                for (rel, _) in &dropped {
                    let gone = segs.iter().find(|s| &s.rel == rel).ok_or("dropped")?;
                    for i in gone.records.iter().map(index_of) {
                        // Only records nobody was told are durable may go this way.
                        assert!(i % 11 != 0, "seed {seed}: durable record {i} dropped");
                        lost.insert(i);
                    }
                }
                let kind = if dropped.is_empty() {
                    "last record of a newest segment"
                } else {
                    "the only sync marker vouching for a seal"
                };
                (
                    Expect::Torn {
                        offset,
                        len,
                        dropped,
                    },
                    lost,
                    kind,
                )
            } else {
                let kind = match (seg.newest, index) {
                    (_, None) if offset == SEGMENT_HEADER_LEN as u64 => "seal note",
                    (_, None) => "sync marker",
                    (true, _) => "record of a newest segment",
                    (false, _) => "record of a sealed segment",
                };
                (Expect::Corrupt { offset, len }, lost, kind)
            }
        };
        *seen.entry(kind).or_default() += 1;
        let case = format!(
            "seed {seed}: bit {bit} of byte {at} of {:?} ({kind})",
            seg.rel
        );
        let mut damaged = original.clone();
        damaged.get_mut(&seg.rel).ok_or("segment")?[at as usize] ^= 1 << bit;

        // Strict.
        let dir = tmp.path().join("strict");
        restore(&damaged, &dir)?;
        let path = dir.join(&seg.rel);
        match (Wal::new(&dir, options(RecoveryMode::Strict)), &expect) {
            (
                Err(WalError::Corruption {
                    path: p,
                    offset,
                    reason,
                }),
                Expect::Corrupt { offset: want, .. },
            ) => {
                assert_eq!(p, path, "{case}: file named");
                assert_eq!(offset, *want, "{case}: offset ({reason})");
                assert!(!reason.is_empty());
                assert!(
                    snapshot(&dir)? == damaged,
                    "{case}: a refused open modified files"
                );
            }
            (
                Ok(wal),
                Expect::Torn {
                    offset,
                    len,
                    dropped,
                },
            ) => {
                assert_eq!(
                    wal.recovery_report().truncated,
                    truncations(&dir, &path, *offset, *len, dropped),
                    "{case}"
                );
                assert!(wal.recovery_report().skipped.is_empty(), "{case}");
                assert_contents(&wal, &missing, &[], &case)?;
                wal.close()?;
            }
            (Ok(_), e) => panic!("{case}: Strict opened, expected {e:?}"),
            (Err(err), e) => panic!("{case}: Strict failed with {err:?}, expected {e:?}"),
        }

        // SkipCorrupted, on a fresh copy.
        let dir = tmp.path().join("skip");
        restore(&damaged, &dir)?;
        let path = dir.join(&seg.rel);
        let wal = match Wal::new(&dir, options(RecoveryMode::SkipCorrupted)) {
            Ok(wal) => wal,
            Err(e) => panic!("{case}: SkipCorrupted failed: {e:?}"),
        };
        let report = wal.recovery_report().clone();
        let (skipped, truncated) = match expect {
            Expect::Corrupt { offset, len } => (vec![(path.clone(), offset, len)], vec![]),
            Expect::Torn {
                offset,
                len,
                dropped,
            } => (vec![], truncations(&dir, &path, offset, len, &dropped)),
        };
        assert_eq!(report.skipped, skipped, "{case}: skipped");
        assert_eq!(report.truncated, truncated, "{case}: truncated");
        assert_eq!(report.records, (RECORDS - missing.len()) as u64, "{case}");
        assert_contents(&wal, &missing, &[], &case)?;
        if seed % 10 < 3 {
            // The salvaged WAL takes appends, which survive a reopen.
            let extra: Vec<usize> = (RECORDS..RECORDS + 8).collect();
            for &i in &extra {
                wal.append_entry(key_of(i), value_of(i), i % 2 == 0)?;
            }
            wal.close()?;
            let wal = Wal::new(&dir, options(RecoveryMode::SkipCorrupted))?;
            assert_contents(&wal, &missing, &extra, &case)?;
            wal.close()?;
        } else {
            wal.close()?;
        }
    }
    // Whether the last item of a newest segment is the only marker vouching for a
    // seal depends on when the seal syncer ran while the WAL was written: either kind
    // of that case counts.
    if let Some(n) = seen.remove("the only sync marker vouching for a seal") {
        *seen.entry("last record of a newest segment").or_default() += n;
    }
    for kind in [
        "segment header",
        "last record of a newest segment",
        "record of a newest segment",
        "record of a sealed segment",
        "sync marker",
        "seal note",
    ] {
        assert!(seen.contains_key(kind), "no case hit: {kind} ({seen:?})");
    }
    Ok(())
}

/// The segments recovery removes when the newest segment `seg` loses its last item,
/// the sync marker at `offset` (recovery cuts it there): those the rule of
/// `common::dropped_after_unvouched_seal` names, each with the bytes it holds by then.
fn dropped_without_marker(segs: &[Seg], seg: &Seg, offset: u64) -> Vec<(PathBuf, u64)> {
    let shard: Vec<(PathBuf, Vec<u8>)> = segs
        .iter()
        .filter(|s| s.rel.parent() == seg.rel.parent())
        .map(|s| {
            let bytes = if s.rel == seg.rel {
                s.data[..offset as usize].to_vec()
            } else {
                s.data.clone()
            };
            (s.rel.clone(), bytes)
        })
        .collect();
    common::dropped_after_unvouched_seal(&shard)
        .into_iter()
        .map(|rel| {
            let left = if rel == seg.rel {
                offset
            } else {
                segs.iter().find(|s| s.rel == rel).map_or(0, |s| s.len)
            };
            (rel, left)
        })
        .collect()
}

/// The report's `truncated` for a torn tail at (`offset`, `len`) of `path` and the
/// segments `dropped` after it, in the WAL at `dir`.
fn truncations(
    dir: &Path,
    path: &Path,
    offset: u64,
    len: u64,
    dropped: &[(PathBuf, u64)],
) -> Vec<(PathBuf, u64, u64)> {
    std::iter::once((path.to_path_buf(), offset, len))
        .chain(dropped.iter().map(|(rel, left)| (dir.join(rel), 0, *left)))
        .collect()
}

/// Opens the damaged `snap` in both modes; both must fail, and `check` accepts the
/// error.
fn both_modes_fail(
    root: &Path,
    name: &str,
    snap: &Snapshot,
    check: impl Fn(&Path, &WalError) -> bool,
) -> TestResult {
    for mode in [RecoveryMode::Strict, RecoveryMode::SkipCorrupted] {
        let dir = root.join(format!("{mode:?}"));
        restore(snap, &dir)?;
        match Wal::new(&dir, options(mode)) {
            Err(e) => assert!(check(&dir, &e), "{name} ({mode:?}): unexpected error {e:?}"),
            Ok(_) => panic!("{name} ({mode:?}): opened"),
        }
    }
    Ok(())
}

/// A manifest with valid checksum and the given fields: version 2 with `salt`, or
/// version 1 (24 bytes, no salt) when `salt` is `None`.
fn manifest(version: u32, shards: u32, hash: u32, salt: Option<u32>) -> Vec<u8> {
    let mut b = b"NANOWALM".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&shards.to_le_bytes());
    b.extend_from_slice(&hash.to_le_bytes());
    if let Some(salt) = salt {
        b.extend_from_slice(&salt.to_le_bytes());
    }
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn damaged_manifest_gives_specific_errors() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let original = written_wal(tmp.path())?;
    let m = PathBuf::from("MANIFEST");
    let salt = u32::from_le_bytes(original[&m][20..24].try_into()?);
    assert_eq!(
        original[&m],
        manifest(2, SHARDS as u32, 1, Some(salt)),
        "documented layout"
    );

    // Every bit of the manifest: magic damage at offset 0, anything else fails the
    // checksum (offset 24).
    for bit in 0..28 * 8 {
        let mut snap = original.clone();
        snap.get_mut(&m).ok_or("manifest")?[bit / 8] ^= 1 << (bit % 8);
        let want = if bit / 8 < 8 { 0 } else { 24 };
        both_modes_fail(tmp.path(), &format!("flip-{bit}"), &snap, |dir, e| {
            matches!(e, WalError::Corruption { path, offset, .. }
                if *path == dir.join("MANIFEST") && *offset == want)
        })?;
    }
    // Every truncation, and a longer manifest (24 bytes is a version-1 length: its
    // checksum then fails at 20).
    for len in (0..28).chain([29, 100]) {
        let mut snap = original.clone();
        snap.get_mut(&m).ok_or("manifest")?.resize(len, 0);
        both_modes_fail(tmp.path(), &format!("len-{len}"), &snap, |dir, e| {
            matches!(e, WalError::Corruption { path, offset, reason }
            if *path == dir.join("MANIFEST")
                && (if len == 24 { *offset == 20 } else {
                    *offset == 0 && reason.contains(&len.min(28).to_string())
                }))
        })?;
    }
    // Well-formed manifests that do not fit.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("version-3", manifest(3, SHARDS as u32, 1, Some(salt))),
        ("version-2-short", manifest(2, SHARDS as u32, 1, None)),
        ("shards-0", manifest(2, 0, 1, Some(salt))),
        ("shards-1001", manifest(2, 1001, 1, Some(salt))),
        ("hash-2", manifest(2, SHARDS as u32, 2, Some(salt))),
        ("fewer-shards", manifest(2, 1, 1, Some(salt))),
        ("other-salt", manifest(2, SHARDS as u32, 1, Some(salt ^ 1))),
        (
            "version-1-over-version-4",
            manifest(1, SHARDS as u32, 1, None),
        ),
    ];
    for (name, bytes) in cases {
        let mut snap = original.clone();
        snap.insert(m.clone(), bytes);
        both_modes_fail(tmp.path(), name, &snap, |dir, e| match (name, e) {
            (
                "version-3" | "version-2-short",
                WalError::UnsupportedVersion {
                    path, supported: 2, ..
                },
            ) => *path == dir.join("MANIFEST"),
            // The segments' salt is not the manifest's: they belong to another WAL.
            (
                "other-salt" | "version-1-over-version-4",
                WalError::ManifestMismatch { path, .. },
            ) => path.extension().is_some_and(|e| e == "seg"),
            ("fewer-shards", WalError::ManifestMismatch { path, .. }) => {
                *path == dir.join("shard-001")
            }
            (_, WalError::ManifestMismatch { path, .. }) => *path == dir.join("MANIFEST"),
            _ => false,
        })?;
    }
    // A missing manifest next to shard directories.
    let mut snap = original.clone();
    snap.remove(&m);
    both_modes_fail(
        tmp.path(),
        "missing",
        &snap,
        |dir, e| matches!(e, WalError::ManifestMismatch { path, .. } if *path == dir.join("MANIFEST")),
    )
}

/// A version-4 segment header with valid checksum and the given fields.
fn header(version: u32, shard: u32, sequence: u64, salt: u32) -> Vec<u8> {
    let mut b = b"NANOWALS".to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&shard.to_le_bytes());
    b.extend_from_slice(&sequence.to_le_bytes());
    b.extend_from_slice(&1_700_000_000_000_000u64.to_le_bytes());
    b.extend_from_slice(&salt.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn damaged_segment_headers_give_specific_errors() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let original = written_wal(tmp.path())?;
    let segs = segments(&original);
    let sealed = segs
        .iter()
        .find(|s| !s.newest && s.rel.starts_with("shard-001"))
        .ok_or("no sealed segment in shard 1")?;
    let seq: u64 = sealed
        .rel
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or("name")?
        .parse()?;
    let with_header = |h: Vec<u8>| -> AnyResult<Snapshot> {
        let mut snap = original.clone();
        snap.get_mut(&sealed.rel).ok_or("segment")?[..SEGMENT_HEADER_LEN].copy_from_slice(&h);
        Ok(snap)
    };
    let rel = sealed.rel.clone();
    let salt = u32::from_le_bytes(original[&PathBuf::from("MANIFEST")][20..24].try_into()?);

    // Consistent checksum, wrong contents: refused in both modes (not skippable).
    let snap = with_header(header(5, 1, seq, salt))?;
    both_modes_fail(
        tmp.path(),
        "version",
        &snap,
        |dir, e| matches!(e, WalError::UnsupportedVersion { path, found: 5, supported: 4 } if *path == dir.join(&rel)),
    )?;
    for (name, h) in [
        ("other-shard", header(4, 0, seq, salt)),
        ("other-sequence", header(4, 1, seq + 100, salt)),
        ("other-salt", header(4, 1, seq, salt.wrapping_add(1))),
    ] {
        let snap = with_header(h)?;
        both_modes_fail(
            tmp.path(),
            name,
            &snap,
            |dir, e| matches!(e, WalError::ManifestMismatch { path, .. } if *path == dir.join(&rel)),
        )?;
    }

    // The header rebuilt as written still opens (the helper matches the format).
    let created = &original[&sealed.rel][24..32];
    let mut same = header(4, 1, seq, salt);
    same[24..32].copy_from_slice(created);
    let crc = crc32c::crc32c(&same[..36]);
    same[36..40].copy_from_slice(&crc.to_le_bytes());
    let dir = tmp.path().join("same");
    restore(&with_header(same)?, &dir)?;
    Wal::new(&dir, options(RecoveryMode::Strict))?.close()?;

    // A sealed segment cut inside its header (no record left in it): corruption at
    // 0 (Strict), the whole segment skipped (SkipCorrupted).
    let lost: BTreeSet<usize> = sealed.records.iter().map(index_of).collect();
    for len in [0usize, 1, 8, 20, 35, 36, 39] {
        let mut snap = original.clone();
        snap.get_mut(&sealed.rel).ok_or("segment")?.truncate(len);
        let dir = tmp.path().join("cut-strict");
        restore(&snap, &dir)?;
        match Wal::new(&dir, options(RecoveryMode::Strict)) {
            Err(WalError::Corruption {
                path, offset: 0, ..
            }) => assert_eq!(path, dir.join(&rel)),
            Err(e) => panic!("cut at {len}: {e:?}"),
            Ok(_) => panic!("cut at {len}: Strict opened"),
        }
        let dir = tmp.path().join("cut-skip");
        restore(&snap, &dir)?;
        let wal = Wal::new(&dir, options(RecoveryMode::SkipCorrupted))?;
        assert_eq!(
            wal.recovery_report().skipped,
            vec![(dir.join(&rel), 0, len as u64)]
        );
        assert_contents(&wal, &lost, &[], &format!("cut at {len}"))?;
        wal.close()?;
    }
    Ok(())
}

/// The WAL of the hostile family: `RECORDS` records as in [`written_wal`], then
/// `PLANTED` records whose values embed encoded records: verbatim copies of records
/// already on disk (each valid at its own offset only), the same in the layout of
/// versions 1 to 3, and version-4 records bound with guessed salts, all under keys
/// nobody appends to. Returns the closed WAL and every appended (key, value) in order.
fn hostile_wal(root: &Path) -> AnyResult<(Snapshot, Appended)> {
    let dir = root.join("hostile");
    let wal = Wal::new(&dir, options(RecoveryMode::Strict))?;
    let mut appended = Vec::new();
    for i in 0..RECORDS {
        wal.append_entry(key_of(i), value_of(i), i % 11 == 0)?;
        appended.push((key_of(i).to_vec(), value_of(i)));
    }
    wal.sync()?;
    let copies: Vec<Vec<u8>> = common::all_segment_files(&dir)?
        .iter()
        .flat_map(|f| {
            let data = std::fs::read(f).unwrap_or_default();
            walk_records(&data)
                .into_iter()
                .take(3)
                .map(move |r| data[r.offset as usize..(r.offset + r.len) as usize].to_vec())
        })
        .collect();
    for i in 0..PLANTED {
        let mut value = format!("{:05}|", RECORDS + i).into_bytes();
        value.extend_from_slice(&copies[i % copies.len()]);
        value.extend_from_slice(&common::encode_record(None, 0, 1, b"planted", b"x"));
        for guess in 0..3u32 {
            let seed = common::seed_of(guess, (i % SHARDS) as u32, 1 + i as u64 % 8);
            let at = 40 + 61 * i as u64 + guess as u64;
            value.extend_from_slice(&common::encode_record(Some(seed), at, 9, b"planted", b"y"));
        }
        let key = key_of(i);
        wal.append_entry(key, Bytes::from(value.clone()), i % 3 == 0)?;
        appended.push((key.to_vec(), Bytes::from(value)));
    }
    wal.close()?;
    Ok((snapshot(&dir)?, appended))
}

const PLANTED: usize = 40;

/// Every appended (key, value), in append order.
type Appended = Vec<(Vec<u8>, Bytes)>;

/// Where each appended record lies in `snap`: (file, offset, len), by its number.
fn places(snap: &Snapshot) -> BTreeMap<usize, (PathBuf, u64, u64)> {
    let mut out = BTreeMap::new();
    for (rel, data) in snap
        .iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "seg"))
    {
        for r in walk_records(data) {
            out.insert(index_of(&r), (rel.clone(), r.offset, r.len));
        }
    }
    out
}

/// The hostile case family: values that embed encoded records, zero runs, damaged
/// headers, missing and shortened segments, bit flips, over a WAL whose every
/// record is acknowledged (closed cleanly). Every case, under both modes, either
/// opens with every record whose bytes the damage left intact and nothing else (no
/// planted record, no record out of order), or is refused with a named error that
/// changed no file.
#[test]
fn seeded_hostile_damage_never_plants_a_record_or_drops_one() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let (original, appended) = hostile_wal(tmp.path())?;
    let at = places(&original);
    assert_eq!(at.len(), appended.len(), "the walk finds every record");
    let segs: Vec<PathBuf> = original
        .keys()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .cloned()
        .collect();
    let mut outcomes: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for seed in 1..=240u64 {
        let mut rng = Rng::seeded(seed);
        let mut damaged = original.clone();
        let seg = segs[rng.below(segs.len() as u64) as usize].clone();
        let shard_segs: Vec<&PathBuf> =
            segs.iter().filter(|p| p.parent() == seg.parent()).collect();
        let len = original[&seg].len() as u64;
        let kind = match seed % 6 {
            0 => {
                // A run of zeros anywhere, whole pages included.
                let from = rng.below(len);
                let to = (from + 1 + rng.below(6000)).min(len);
                damaged.get_mut(&seg).ok_or("seg")?[from as usize..to as usize].fill(0);
                "zero run"
            }
            1 => {
                // Header bytes zeroed or replaced.
                let from = rng.below(SEGMENT_HEADER_LEN as u64) as usize;
                let to = from + 1 + rng.below((SEGMENT_HEADER_LEN - from) as u64) as usize;
                let noise = rng.bytes(to - from);
                let bytes = damaged.get_mut(&seg).ok_or("seg")?;
                if seed % 12 == 1 {
                    bytes[from..to].fill(0);
                } else {
                    bytes[from..to].copy_from_slice(&noise);
                }
                "damaged header"
            }
            2 => {
                // A segment missing between two others.
                if shard_segs.len() < 3 {
                    continue;
                }
                let k = 1 + rng.below(shard_segs.len() as u64 - 2) as usize;
                damaged.remove(shard_segs[k]);
                "missing segment"
            }
            3 => {
                // A sealed segment shortened: at a record boundary or anywhere.
                let k = rng.below(shard_segs.len() as u64 - 1) as usize;
                let victim = shard_segs[k].clone();
                let data = &original[&victim];
                let records = walk_records(data);
                let cut = if seed % 12 == 3 && !records.is_empty() {
                    records[rng.below(records.len() as u64) as usize].offset
                } else {
                    SEGMENT_HEADER_LEN as u64
                        + rng.below(data.len() as u64 - SEGMENT_HEADER_LEN as u64)
                };
                damaged
                    .get_mut(&victim)
                    .ok_or("seg")?
                    .truncate(cut as usize);
                "shortened segment"
            }
            4 => {
                // A bit flipped inside a value that embeds encoded records.
                let (file, offset, rlen) =
                    at[&(RECORDS + rng.below(PLANTED as u64) as usize)].clone();
                let byte = offset
                    + RECORD_HEADER_LEN as u64
                    + 1
                    + rng.below(rlen - RECORD_HEADER_LEN as u64 - 1);
                damaged.get_mut(&file).ok_or("seg")?[byte as usize] ^= 1 << rng.below(8);
                "flip near planted records"
            }
            _ => {
                // The newest segment cut anywhere.
                let newest = shard_segs[shard_segs.len() - 1].clone();
                let data_len = original[&newest].len() as u64;
                let cut = rng.below(data_len + 1);
                damaged
                    .get_mut(&newest)
                    .ok_or("seg")?
                    .truncate(cut as usize);
                "newest cut"
            }
        };
        // A record is intact when its file is there and its bytes are unchanged.
        let intact: BTreeSet<usize> = at
            .iter()
            .filter(|(_, (file, offset, len))| {
                let (o, l) = (*offset as usize, *len as usize);
                damaged
                    .get(file)
                    .is_some_and(|d| d.len() >= o + l && d[o..o + l] == original[file][o..o + l])
            })
            .map(|(i, _)| *i)
            .collect();
        for mode in [RecoveryMode::Strict, RecoveryMode::SkipCorrupted] {
            let case = format!("seed {seed}, {kind} in {seg:?}, {mode:?}");
            let dir = tmp.path().join(format!("case-{mode:?}"));
            restore(&damaged, &dir)?;
            match Wal::new(&dir, options(mode)) {
                Ok(wal) => {
                    *outcomes.entry((kind, "opened")).or_default() += 1;
                    let mut keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
                    keys.sort();
                    let mut want_keys: Vec<Vec<u8>> = KEYS.iter().map(|k| k.to_vec()).collect();
                    want_keys.sort();
                    assert!(
                        keys.iter().all(|k| want_keys.contains(k)),
                        "{case}: a key nobody appended to: {keys:?}"
                    );
                    for key in KEYS {
                        let got: Vec<Bytes> = wal.enumerate_records(key)?.collect();
                        let mine: Vec<(usize, &Bytes)> = appended
                            .iter()
                            .enumerate()
                            .filter(|(_, (k, _))| k == key)
                            .map(|(i, (_, v))| (i, v))
                            .collect();
                        // In order, each one appended to this key.
                        let mut rest = mine.iter();
                        let kept: Vec<usize> = got
                            .iter()
                            .map(|v| {
                                rest.find(|(_, w)| *w == v)
                                    .map(|(i, _)| *i)
                                    .unwrap_or_else(|| panic!("{case}: a record not appended to {key:?}, or out of order"))
                            })
                            .collect();
                        for (i, _) in &mine {
                            assert!(
                                kept.contains(i) || !intact.contains(i),
                                "{case}: record {i} is intact on disk but was not returned"
                            );
                        }
                    }
                    wal.close()?;
                }
                Err(e) => {
                    *outcomes.entry((kind, "refused")).or_default() += 1;
                    assert!(
                        matches!(
                            e,
                            WalError::Corruption { .. } | WalError::ManifestMismatch { .. }
                        ),
                        "{case}: refused with {e:?}"
                    );
                    if let WalError::Corruption { path, .. } = &e {
                        assert!(path.starts_with(&dir), "{case}: {e}");
                    }
                    assert!(
                        mode == RecoveryMode::Strict,
                        "{case}: SkipCorrupted refused: {e}"
                    );
                    assert!(
                        snapshot(&dir)? == damaged,
                        "{case}: a refused open changed files"
                    );
                }
            }
        }
    }
    eprintln!("hostile damage outcomes: {outcomes:?}");
    for kind in [
        "zero run",
        "damaged header",
        "missing segment",
        "shortened segment",
        "flip near planted records",
        "newest cut",
    ] {
        assert!(
            outcomes.keys().any(|(k, _)| *k == kind),
            "no case of {kind}: {outcomes:?}"
        );
    }
    Ok(())
}
