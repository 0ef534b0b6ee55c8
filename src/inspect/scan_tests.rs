//! Tests of `scan.rs`: what a scan reports, and that it says what recovery does.

use super::*;
use crate::format::manifest::{MANIFEST_FILE, MANIFEST_TMP_FILE};
use crate::format::record::Codec;
use crate::format::segment_header::{SegmentHeader, FORMAT_VERSION};
use crate::inspect::report::DamageKind;
use crate::io::shard_dir_name;

pub(in crate::inspect) type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

/// The salt of the WALs these tests write.
const SALT: u32 = 0x7E57_5A17;

fn header(shard: u32, sequence: u64) -> Vec<u8> {
    SegmentHeader {
        version: FORMAT_VERSION,
        shard,
        sequence,
        created_us: 1_000,
        salt: SALT,
    }
    .encode()
    .to_vec()
}

/// The codec of the segment whose header (possibly damaged since) starts `buf`.
fn codec_of_buf(buf: &[u8]) -> Codec {
    let u32_at = |at: usize| u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&buf[16..24]);
    crate::format::segment_header::codec_of(u32_at(8), SALT, u32_at(12), u64::from_le_bytes(seq))
}

fn record(buf: &mut Vec<u8>, ts: u64, key: &[u8], value: &[u8]) -> usize {
    let at = buf.len();
    codec_of_buf(buf).encode_into(buf, at as u64, ts, ts, key, value);
    at
}

/// Every file of the first `shards` shard directories of the WAL at `p`, with
/// its bytes, sorted by path.
pub(in crate::inspect) fn shard_files(
    p: &Path,
    shards: u32,
) -> std::io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for shard in 0..shards {
        for e in std::fs::read_dir(p.join(shard_dir_name(shard)))? {
            let e = e?.path();
            out.push((e.clone(), std::fs::read(&e)?));
        }
    }
    out.sort();
    Ok(out)
}

/// A WAL directory with one shard whose segments hold `segments`' bytes.
fn wal_with(segments: &[Vec<u8>]) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let storage = crate::io::FsStorage::new(dir.path().to_path_buf(), 0o600);
    let m = crate::format::manifest::Manifest {
        shards: 1,
        salt: Some(SALT),
    };
    crate::open::write_manifest(&storage, &m).map_err(std::io::Error::other)?;
    let sdir = dir.path().join(shard_dir_name(0));
    std::fs::create_dir(&sdir)?;
    for (i, bytes) in segments.iter().enumerate() {
        let name = crate::format::segment_header::segment_file_name(i as u64 + 1);
        std::fs::write(sdir.join(name), bytes)?;
    }
    Ok(dir)
}

fn two_records(sequence: u64) -> (Vec<u8>, usize) {
    let mut seg = header(0, sequence);
    record(&mut seg, 10, b"a", b"one");
    let second = record(&mut seg, 20, b"b", b"two");
    (seg, second)
}

/// Scans a one-shard WAL whose segments hold `segments`' bytes: the scan, and its
/// damage as [`only_damage`] lists it.
fn scanned(
    segments: &[Vec<u8>],
) -> std::result::Result<(WalScan, Ranges), Box<dyn std::error::Error>> {
    let dir = wal_with(segments)?;
    let scan = scan(dir.path())?;
    let damage = only_damage(&scan);
    Ok((scan, damage))
}

/// Asserts that a one-shard WAL whose segments hold `segments`' bytes scans with
/// `damage` and `records` valid records.
fn assert_scans_as(segments: &[Vec<u8>], damage: &[Range], records: u64) -> TestResult {
    let (scan, found) = scanned(segments)?;
    assert_eq!(found, damage);
    assert_eq!(scan.records(), records);
    Ok(())
}

/// A damaged range: (kind, offset, length).
type Range = (DamageKind, u64, u64);
type Ranges = Vec<Range>;

fn only_damage(scan: &WalScan) -> Ranges {
    scan.all_damage()
        .map(|d| (d.kind, d.offset, d.len))
        .collect()
}

/// A one-shard WAL of segment 1 (`first`), then segment 2 holding a sync marker
/// claiming `claim` and a record.
fn then_a_marker_claiming(first: &[u8], claim: u64) -> std::io::Result<tempfile::TempDir> {
    let mut second = vouching(header(0, 2), claim);
    record(&mut second, 30, b"c", b"three");
    wal_with(&[first.to_vec(), second])
}

/// Recovers shard 0 of the WAL at `dir` under `RecoveryMode::Strict`.
fn recover_strict(dir: &tempfile::TempDir) -> Result<crate::recovery::RecoveredShard> {
    crate::recovery::recover_shard(
        &dir.path().join(shard_dir_name(0)),
        0,
        crate::options::RecoveryMode::Strict,
        false,
        Some(SALT),
    )
}

/// A writer marks only seals of older segments, so a valid marker claiming its
/// own segment or a later one (crafted bytes) vouches for nothing: damage at the
/// end of the sealed segment before it is then an unfinished seal's torn tail,
/// as without the marker, where a true marker makes it corruption. (Before, any
/// value vouched, and the writer, handed it, would stop marking seals.)
#[test]
fn a_marker_claiming_its_own_or_a_later_segment_vouches_for_nothing() -> TestResult {
    let (mut first, last) = two_records(1);
    first[last + 21] ^= 0x08;
    for (claim, vouched) in [(1, true), (2, false), (99, false)] {
        let dir = then_a_marker_claiming(&first, claim)?;
        let shard = scan(dir.path())?.shards.remove(0);
        assert_eq!(
            shard.segments[1].vouches_through,
            if vouched { 1 } else { 0 }
        );
        let kind = shard.segments[0].damage[0].kind;
        let expected = if vouched {
            DamageKind::Corrupt
        } else {
            DamageKind::TornTail
        };
        assert_eq!(kind, expected, "claim {claim}");
        match recover_strict(&dir) {
            Ok(r) => {
                assert!(!vouched, "claim {claim}: a vouched seal's damage recovered");
                assert_eq!((r.synced_through, r.report.records), (0, 1));
            }
            Err(e) => {
                assert!(vouched, "claim {claim}: {e}");
                assert!(matches!(e, WalError::Corruption { .. }), "{e}");
            }
        }
    }
    Ok(())
}

/// The same cap where recovery collects the markers of the segments it keeps: a
/// clean sealed segment followed by one whose only marker claims its own number
/// is an unvouched seal with records after it, so the later segment goes and the
/// writer is handed no claim; a true marker keeps both.
#[test]
fn a_kept_segment_s_impossible_marker_vouches_for_nothing() -> TestResult {
    let (first, _) = two_records(1);
    for (claim, vouched) in [(1, true), (2, false)] {
        let r = recover_strict(&then_a_marker_claiming(&first, claim)?)?;
        let (synced, records, kept) = if vouched { (1, 3, 2) } else { (0, 2, 1) };
        assert_eq!(
            (r.synced_through, r.report.records, r.segments.len()),
            (synced, records, kept),
            "claim {claim}"
        );
    }
    Ok(())
}

#[test]
fn clean_wal_counts_and_records_in_order() -> TestResult {
    let mut first = header(0, 1);
    record(&mut first, 5, b"k", b"v1");
    record(&mut first, 7, b"", b"");
    let mut second = vouching(header(0, 2), 1);
    record(&mut second, 9, b"k", b"v2");
    record(&mut second, 8, &[0xff, 0], b"x");
    let dir = wal_with(&[first.clone(), second.clone()])?;
    let scan = scan(dir.path())?;
    assert!(scan.is_clean(), "{:?}", only_damage(&scan));
    assert!(scan.manifest_ok);
    assert_eq!(scan.shard_count, 1);
    assert_eq!(
        (scan.segments(), scan.records(), scan.keys()),
        (2, 4, 3),
        "segments, records, keys"
    );
    assert_eq!((scan.oldest_us(), scan.newest_us()), (Some(5), Some(9)));
    let seg = &scan.shards[0].segments[0];
    assert_eq!((seg.records, seg.keys), (2, 2));
    assert_eq!(
        (seg.file_len, seg.data_len),
        (first.len() as u64, first.len() as u64)
    );
    assert!(!seg.file.newest && scan.shards[0].segments[1].file.newest);
    let records = seg.file.read_records()?;
    let got: Vec<_> = records.iter().map(|r| (r.offset, r.key, r.value)).collect();
    assert_eq!(
        got,
        vec![
            (40, &b"k"[..], &b"v1"[..]),
            (
                40 + crate::format::record::encoded_len(1, 2) as u64,
                &b""[..],
                &b""[..]
            )
        ]
    );
    assert_eq!(scan.shards[0].segments[1].vouches_through, 1);
    Ok(())
}

#[test]
fn an_unvouched_seal_followed_by_records_is_reported_as_recovery_drops_them() -> TestResult {
    let (first, _) = two_records(1);
    let (second, _) = two_records(2);
    let dir = wal_with(&[first.clone(), second])?;
    assert_eq!(
        only_damage(&scan(dir.path())?),
        vec![(DamageKind::TornTail, first.len() as u64, 0)]
    );
    // The engine agrees: the later segment goes, the first one stays whole.
    let wal = crate::Wal::new(dir.path(), crate::WalOptions::default().with_shards(1))?;
    let report = wal.recovery_report();
    assert_eq!(report.truncated.len(), 1, "{report:?}");
    assert_eq!(report.truncated[0].1, 0, "{report:?}");
    assert_eq!(wal.enumerate_records(b"a")?.count(), 1);
    assert_eq!(wal.enumerate_records(b"b")?.count(), 1);
    wal.close()?;
    // With no record after it, nothing is reported.
    let dir = wal_with(&[first, header(0, 2)])?;
    assert!(scan(dir.path())?.is_clean());
    Ok(())
}

#[test]
fn preallocated_zeros_at_the_end_of_the_newest_segment_are_free_space() -> TestResult {
    let (mut seg, _) = two_records(1);
    let data_len = seg.len() as u64;
    seg.extend(std::iter::repeat_n(0u8, 4096));
    let dir = wal_with(&[seg])?;
    let scan = scan(dir.path())?;
    assert!(scan.is_clean(), "{:?}", only_damage(&scan));
    let s = &scan.shards[0].segments[0];
    assert_eq!((s.records, s.data_len, s.free_len), (2, data_len, 4096));
    Ok(())
}

#[test]
fn zeros_at_the_end_of_a_sealed_segment_are_corruption_once_vouched_for() -> TestResult {
    let (mut sealed, _) = two_records(1);
    let at = sealed.len() as u64;
    sealed.extend([0u8; 100]);
    let (newest, _) = two_records(2);
    let dir = wal_with(&[sealed.clone(), vouching(newest.clone(), 1)])?;
    assert_eq!(
        only_damage(&scan(dir.path())?),
        vec![(DamageKind::Corrupt, at, 100)]
    );
    // Without the marker the seal's fsync may not have finished.
    let dir = wal_with(&[sealed, newest])?;
    assert_eq!(
        only_damage(&scan(dir.path())?),
        vec![(DamageKind::TornTail, at, 100)]
    );
    Ok(())
}

/// `segment` with a sync marker for segments up to `synced` appended.
fn vouching(mut segment: Vec<u8>, synced: u64) -> Vec<u8> {
    let at = segment.len() as u64;
    codec_of_buf(&segment).encode_marker(&mut segment, at, 50, synced);
    segment
}

#[test]
fn torn_tail_of_newest_then_zeros() -> TestResult {
    let (mut seg, second) = two_records(1);
    seg.truncate(seg.len() - 2);
    let torn_len = (seg.len() - second) as u64;
    seg.extend([0u8; 64]);
    let (scan, damage) = scanned(&[seg])?;
    assert_eq!(
        damage,
        vec![(DamageKind::TornTail, second as u64, torn_len)]
    );
    let s = &scan.shards[0].segments[0];
    assert_eq!((s.records, s.data_len, s.free_len), (1, second as u64, 64));
    Ok(())
}

#[test]
fn torn_tail_of_a_vouched_sealed_segment_is_corruption() -> TestResult {
    let (mut sealed, second) = two_records(1);
    sealed.truncate(sealed.len() - 1);
    let len = (sealed.len() - second) as u64;
    let dir = wal_with(&[sealed.clone(), vouching(two_records(2).0, 1)])?;
    assert_eq!(
        only_damage(&scan(dir.path())?),
        vec![(DamageKind::Corrupt, second as u64, len)]
    );
    let dir = wal_with(&[sealed, two_records(2).0])?;
    assert_eq!(
        only_damage(&scan(dir.path())?),
        vec![(DamageKind::TornTail, second as u64, len)]
    );
    Ok(())
}

#[test]
fn damage_in_the_middle_of_the_newest_segment_is_corruption() -> TestResult {
    let (mut seg, second) = two_records(1);
    let third = record(&mut seg, 30, b"c", b"three");
    seg[second + 22] ^= 0x01;
    let dir = wal_with(&[seg])?;
    let scan = scan(dir.path())?;
    assert_eq!(
        only_damage(&scan),
        vec![(DamageKind::Corrupt, second as u64, (third - second) as u64)]
    );
    let records = scan.shards[0].segments[0].file.read_records()?;
    let keys: Vec<_> = records.iter().map(|r| r.key).collect();
    assert_eq!(keys, vec![&b"a"[..], &b"c"[..]]);
    Ok(())
}

#[test]
fn header_damage_by_position() -> TestResult {
    // Sealed segment: bad header, records still checked and counted.
    let (mut sealed, _) = two_records(1);
    sealed[20] ^= 0x40;
    // Newest segment with a bad header and no record: a torn creation.
    let mut newest = header(0, 2);
    newest[3] = b'X';
    use DamageKind::{BadHeader, TornTail};
    assert_scans_as(
        &[sealed, newest],
        &[(BadHeader, 0, 40), (TornTail, 0, 40)],
        2,
    )
}

#[test]
fn header_version_and_identity() -> TestResult {
    let mut future = SegmentHeader {
        version: FORMAT_VERSION + 1,
        shard: 0,
        sequence: 1,
        created_us: 0,
        salt: SALT,
    }
    .encode()
    .to_vec();
    record(&mut future, 1, b"k", b"v");
    let mut wrong = header(0, 7);
    // Bound to the file it is in (segment 2), as a writer would have.
    let at = wrong.len() as u64;
    Codec::bound(SALT, 0, 2).encode_into(&mut wrong, at, 1, 1, b"k", b"v");
    use DamageKind::{Mismatch, UnsupportedVersion};
    assert_scans_as(
        &[future, wrong],
        &[(UnsupportedVersion, 8, 4), (Mismatch, 12, 12)],
        1,
    )
}

#[test]
fn foreign_entries_and_bad_manifest_are_reported_not_fatal() -> TestResult {
    let dir = wal_with(&[two_records(1).0])?;
    std::fs::write(dir.path().join("notes.txt"), b"hi")?;
    std::fs::write(dir.path().join(shard_dir_name(0)).join("x.tmp"), b"")?;
    let scan1 = scan(dir.path())?;
    let kinds: Vec<_> = scan1.all_damage().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        vec![DamageKind::ForeignFile, DamageKind::ForeignFile]
    );
    assert_eq!(scan1.records(), 2);

    let manifest = dir.path().join(MANIFEST_FILE);
    let mut m = std::fs::read(&manifest)?;
    m[13] ^= 1;
    std::fs::write(&manifest, &m)?;
    let scan2 = scan(dir.path())?;
    assert!(!scan2.manifest_ok);
    assert_eq!(scan2.shard_count, 1);
    assert_eq!(scan2.damage[0].kind, DamageKind::ForeignFile);
    assert_eq!(scan2.damage[1].kind, DamageKind::BadManifest);
    assert_eq!(scan2.records(), 2);
    Ok(())
}

#[test]
fn not_a_wal_is_an_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    assert!(matches!(
        scan(dir.path()),
        Err(WalError::ManifestMismatch { .. })
    ));
    let file = dir.path().join("f");
    std::fs::write(&file, b"")?;
    assert!(matches!(scan(&file), Err(WalError::NotADirectory { .. })));
    assert!(matches!(
        scan(&dir.path().join("missing")),
        Err(WalError::Io { .. })
    ));
    Ok(())
}

#[test]
fn a_real_wal_scans_clean_and_is_not_modified() -> TestResult {
    use bytes::Bytes;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("wal");
    let options = crate::WalOptions::default()
        .with_shards(2)
        .with_max_key_size(64)
        .with_max_record_size(256)
        .with_max_segment_size(1024);
    let wal = crate::Wal::new(&path, options)?;
    for i in 0..200u32 {
        let key = format!("key-{}", i % 7);
        wal.append_entry(key.as_bytes(), Bytes::from(vec![b'x'; 40]), false)?;
    }
    wal.close()?;
    let before = crate::format::segment_header::segment_file_name(1);
    let files = shard_files(&path, 2)?;
    let scan = scan(&path)?;
    assert!(scan.is_clean(), "{:?}", only_damage(&scan));
    assert_eq!(scan.records(), 200);
    assert_eq!(scan.keys(), 7);
    assert!(scan.segments() > 2, "rotation expected");
    assert!(scan.shards[0].segments[0].file.path.ends_with(before));
    let layout = layout(&path)?;
    for key in 0..7 {
        let key = format!("key-{key}");
        let shard = layout.shard_for_key(key.as_bytes()).ok_or("routing")? as usize;
        let found: usize = layout.shards[shard]
            .segments
            .iter()
            .map(|s| {
                s.read_records()
                    .map(|r| r.iter().filter(|r| r.key == key.as_bytes()).count())
            })
            .sum::<Result<usize>>()?;
        assert!(found >= 28, "{key}: {found}");
    }
    assert_eq!(shard_files(&path, 2)?, files);
    assert!(!path.join(MANIFEST_TMP_FILE).exists());
    Ok(())
}
