//! The runs of the model: a workload over the memory store, recording its calls.

use super::*;

/// Shards of the WAL under test.
pub(super) const SHARDS: usize = 2;

/// splitmix64, seeded: a seed fixes the workload and the choices made at each cut.
/// The log itself also depends on thread timing (when the seal syncer runs), so a
/// failed reopen prints the log up to its cut rather than relying on the seed alone.
pub(super) struct Rng(pub(super) u64);

impl Rng {
    /// A number in `0..n`.
    pub(super) fn below(&mut self, n: u32) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % u64::from(n)) as u32
    }
}

/// One append of the run: its key, its value, and the length of the storage log
/// once it was acknowledged as durable (by its own call or a later `sync`).
pub(super) struct Append {
    pub(super) key: Vec<u8>,
    pub(super) value: Vec<u8>,
    pub(super) durable_at: Option<usize>,
    /// Appended with `durable` set (not made durable by a later `sync`).
    pub(super) durable: bool,
}

pub(super) fn log_len(log: &OpLog) -> usize {
    log.lock().unwrap_or_else(|e| e.into_inner()).len()
}

/// A run of `appends` single-thread appends over 5 keys (values of 10-900 bytes, a
/// third durable, or one in 25 with 0.5 ms seal fsyncs on odd seeds, now and then a
/// `sync`) on a 2-shard WAL with 6 KiB segments, ended by `close`. Returns the log and
/// the appends.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(
    seed: u64,
    rng: &mut Rng,
    options: &WalOptions,
    appends: usize,
    quiet: usize,
    preallocation: u64,
    compaction: bool,
) -> (Vec<Op>, Vec<Append>) {
    let log = OpLog::default();
    let storage = recording_store(seed, &log, preallocation);
    let wal = Wal::with_mem_storage(options.clone(), storage).expect("open over memory");
    let (done, _) = workload(&wal, &log, 0, seed, rng, appends, quiet, "", compaction);
    wal.close().expect("close");
    let ops = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    (ops, done)
}

/// A store that records into `log`. Slow seals (the seal syncer's fsync) on odd
/// seeds, so that segments rotate while earlier seals are pending and markers land
/// late.
pub(super) fn recording_store(
    seed: u64,
    log: &OpLog,
    preallocation: u64,
) -> std::sync::Arc<MemStorage> {
    let storage = std::sync::Arc::new(MemStorage::recording(log.clone(), preallocation));
    storage.faults.seal_sync_delay_us.store(
        if seed % 2 == 1 { 500 } else { 0 },
        std::sync::atomic::Ordering::SeqCst,
    );
    storage
}

/// The appends of [`run`] on `wal`, whose store records into `log`; `base` is the
/// length of the log before it (acknowledgements are positions in the whole log),
/// the first `quiet` appends are non-durable with no `sync` among them (seals then
/// pile up on the syncer), and every value starts with `tag` and the append's number.
/// Returns the appends and when each `sync` was acknowledged.
#[allow(clippy::too_many_arguments)]
pub(super) fn workload(
    wal: &Wal,
    log: &OpLog,
    base: usize,
    seed: u64,
    rng: &mut Rng,
    appends: usize,
    quiet: usize,
    tag: &str,
    compaction: bool,
) -> (Vec<Append>, Vec<usize>) {
    let mut done: Vec<Append> = Vec::new();
    let mut syncs = Vec::new();
    for i in 0..appends {
        let key = format!("k{}", rng.below(5)).into_bytes();
        let len = 10 + rng.below(890) as usize;
        let mut value = format!("{tag}{i}:").into_bytes();
        value.resize(len, b'a' + (i % 26) as u8);
        let durable = rng.below(if seed % 2 == 1 { 25 } else { 3 }) == 0 && i >= quiet;
        wal.append_entry(&key, Bytes::from(value.clone()), durable)
            .expect("append");
        let acked = base + log_len(log);
        done.push(Append {
            key,
            value,
            durable_at: durable.then_some(acked),
            durable,
        });
        if compaction && rng.below(40) == 0 {
            // Past the retention (2 ms): every sealed segment written so far expires,
            // and the active one is sealed and dropped with them once it is due.
            std::thread::sleep(std::time::Duration::from_millis(3));
            wal.compact().expect("compact");
        }
        if i < quiet {
            // A steady trickle, not a burst: the syncer runs the oldest seals while
            // the writer goes on, as under a real ingest.
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if rng.below(25) == 0 && i >= quiet {
            wal.sync().expect("sync");
            let acked = base + log_len(log);
            for a in done.iter_mut().filter(|a| a.durable_at.is_none()) {
                a.durable_at = Some(acked);
            }
            syncs.push(acked);
        }
    }
    (done, syncs)
}

/// The cut points right after a segment's creation while an earlier creation in the
/// same shard directory is not synced yet: a cut there can keep the later segment
/// and lose the earlier one, which random cut points rarely hit.
pub(super) fn second_unsynced_creations(ops: &[Op]) -> Vec<usize> {
    let mut unsynced: BTreeMap<u32, usize> = BTreeMap::new();
    let mut points = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            Op::Create((shard, _)) => {
                let earlier = unsynced.entry(*shard).or_default();
                if *earlier > 0 {
                    points.push(i + 1);
                }
                *earlier += 1;
            }
            Op::SyncDir(shard) => {
                unsynced.remove(shard);
            }
            _ => {}
        }
    }
    points
}

/// Where to cut the power in `ops` after its first `from` calls: `cuts` random
/// points, every point right after a second unsynced creation, and the end.
pub(super) fn cut_points(ops: &[Op], from: usize, cuts: usize, rng: &mut Rng) -> Vec<usize> {
    let mut points: Vec<usize> = (0..cuts)
        .map(|_| from + rng.below((ops.len() - from) as u32 + 1) as usize)
        .collect();
    points.extend(
        second_unsynced_creations(ops)
            .into_iter()
            .filter(|&p| p > from),
    );
    points.push(ops.len());
    points
}

/// The options of every model run: 2 shards, 6 KiB segments.
pub(super) fn model_options() -> WalOptions {
    WalOptions::default()
        .with_shards(SHARDS)
        .with_max_key_size(16)
        .with_max_record_size(1024)
        .with_max_segment_size(6 * 1024)
}

/// A manifest for `options`, from a WAL created and closed under `base`.
pub(super) fn template_manifest(base: &Path, options: &WalOptions) -> std::path::PathBuf {
    let template = base.join("template");
    std::fs::create_dir_all(&template).expect("template dir");
    // The salt the in-memory runs bind their records with.
    let manifest = crate::format::manifest::Manifest {
        shards: options.shards as u32,
        salt: Some(crate::wal::MEM_SALT),
    };
    let storage = crate::io::FsStorage::new(template.clone(), 0o600);
    crate::open::write_manifest(&storage, &manifest).expect("template manifest");
    template.join("MANIFEST")
}

/// Hands the segments of `shards` (recovered from files) over to the memory store:
/// each segment's handle becomes `io_of(shard, sequence)`, for readers too (the
/// index's handle replaced, and with it the final length the actor raises).
pub(super) fn hand_over(
    shards: &mut [crate::recovery::RecoveredShard],
    io_of: impl Fn(u32, u64) -> std::sync::Arc<dyn crate::io::SegmentIo>,
) {
    for (shard, recovered) in shards.iter_mut().enumerate() {
        for segment in &mut recovered.segments {
            segment.io = io_of(shard as u32, segment.sequence);
            let published = segment.published.load(std::sync::atomic::Ordering::Acquire);
            segment.published = recovered.index.add_segment(
                segment.sequence,
                segment.io.clone(),
                published,
                segment.codec,
            );
        }
    }
}
