//! The crash test's checks after each reopen: the open succeeds; every record parses, belongs to a
//! known generation, has the key, durability, length and padding its header implies
//! (no foreign bytes); no (generation, thread, seq) appears twice; per key, the
//! generations never decrease and each thread's seqs strictly increase (append
//! order); per (generation, thread, shard) the seqs form a prefix of what that thread
//! wrote to that shard (shard = `xxh3_64(key) % shards`, the routing documented in
//! docs/FORMAT.md); a present record implies every record its clock names (the
//! cross-thread part of "per shard, a prefix"); every acknowledged durable record of
//! the cycle is present (else it counts as lost); and every earlier generation still
//! has exactly the records the previous check found.

use super::child::{options, CrashResult};
use super::figures::Figures;
use super::parent::{ChildRun, LoopArgs};
use super::record::{key_bytes, key_index, parse, shard_of, Plan, KEYS};
use bytes::Bytes;
use nano_wal::Wal;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// Violations printed in full (all are counted).
const PRINTED_VIOLATIONS: usize = 40;

/// State of the current WAL (since the last fresh start).
#[derive(Default)]
pub(super) struct Epoch {
    pub(super) plans: HashMap<u64, Plan>,
    /// Records per generation found by the previous check.
    pub(super) counts: HashMap<u64, u64>,
}

/// The violations found, counted, the first ones printed.
pub(super) struct Violations {
    pub(super) cycle: u64,
    pub(super) messages: u64,
    pub(super) in_cycle: u64,
}

impl Violations {
    pub(super) fn report(&mut self, message: impl std::fmt::Display) {
        self.messages += 1;
        self.in_cycle += 1;
        if self.messages <= PRINTED_VIOLATIONS as u64 {
            eprintln!("VIOLATION (cycle {}): {message}", self.cycle);
        }
    }
}

/// Location of a found record.
struct Found {
    shard: usize,
    durable: bool,
    clock: Vec<u64>,
}

/// Reopens the WAL and checks it against everything written so far (see the module
/// documentation). Violations are reported; `Err` is only for the checker's own I/O.
pub(super) fn check_cycle(
    wal_dir: &Path,
    generation: u64,
    run: &ChildRun,
    args: &LoopArgs,
    epoch: &mut Epoch,
    figures: &mut Figures,
    v: &mut Violations,
) -> CrashResult<()> {
    let threads = args.threads;
    figures.acked_checked += run.acks.len() as u64;
    let wal = match Wal::new(wal_dir, options(args.index_checkpoint)) {
        Ok(wal) => wal,
        Err(e) => {
            v.report(format!("reopen failed: {e}"));
            figures.lost += run.acks.len() as u64;
            return Ok(());
        }
    };
    let report = wal.recovery_report().clone();
    if run.ready && report.checkpoints_loaded > 0 {
        // The child's open removed every checkpoint before it printed `ready`.
        v.report(format!(
            "the reopen after a kill loaded {} checkpoints: {:?}",
            report.checkpoints_loaded, report.checkpoints_ignored
        ));
    }
    if !report.truncated.is_empty() {
        figures.truncations += 1;
        figures.truncated_bytes += report.truncated.iter().map(|t| t.2).sum::<u64>();
        figures.segments_removed += report
            .truncated
            .iter()
            .filter(|&&(_, offset, len)| offset == 0 && len > 0)
            .count() as u64;
    }
    if !report.skipped.is_empty() {
        v.report(format!(
            "recovery skipped damage in strict mode: {:?}",
            report.skipped
        ));
    }
    let shards = wal.shard_count();

    // Read and verify every record of every key.
    let mut found: HashMap<(u64, usize, u64), Found> = HashMap::new();
    let mut per_generation: HashMap<u64, u64> = HashMap::new();
    let keys: Vec<Vec<u8>> = wal.enumerate_keys()?.collect();
    // What the scan served, for the reopen from a checkpoint to match.
    let mut served: Vec<(Vec<u8>, Vec<Bytes>)> = Vec::new();
    for key in keys {
        let values: Vec<Bytes> = wal.enumerate_records(&key)?.collect();
        if args.index_checkpoint {
            served.push((key.clone(), values.clone()));
        }
        let Some(index) = key_index(&key) else {
            v.report(format!("foreign key {:?}", String::from_utf8_lossy(&key)));
            continue;
        };
        let shard = shard_of(&key, shards);
        let mut last_generation = 0;
        let mut last_seq: HashMap<(u64, usize), u64> = HashMap::new();
        for value in values {
            figures.records_verified += 1;
            let rec = match parse(&value, index, threads, &epoch.plans) {
                Ok(rec) => rec,
                Err(e) => {
                    v.report(format!(
                        "key {index}: foreign bytes ({e}): {:?}",
                        String::from_utf8_lossy(&value[..value.len().min(80)])
                    ));
                    continue;
                }
            };
            let id = (rec.generation, rec.thread, rec.seq);
            if rec.generation < last_generation {
                v.report(format!(
                    "key {index}: generation {} after {last_generation}",
                    rec.generation
                ));
            }
            last_generation = last_generation.max(rec.generation);
            if let Some(prev) = last_seq.insert((rec.generation, rec.thread), rec.seq) {
                if prev >= rec.seq {
                    v.report(format!(
                        "key {index}: record {id:?} after seq {prev} (order)"
                    ));
                }
            }
            *per_generation.entry(rec.generation).or_default() += 1;
            let entry = Found {
                shard,
                durable: rec.durable,
                clock: rec.clock,
            };
            if found.insert(id, entry).is_some() {
                v.report(format!("record {id:?} present twice"));
            }
        }
    }
    figures.largest_wal_records = figures.largest_wal_records.max(found.len() as u64);

    // Per (generation, thread, shard): a prefix of what the thread wrote there.
    let mut max_seq: HashMap<(u64, usize, usize), u64> = HashMap::new();
    for (&(g, t, s), f) in &found {
        let m = max_seq.entry((g, t, f.shard)).or_insert(s);
        *m = (*m).max(s);
    }
    let key_shard: Vec<usize> = (0..KEYS).map(|k| shard_of(&key_bytes(k), shards)).collect();
    let mut gaps = 0u64;
    for (&(g, t, shard), &max) in &max_seq {
        let plan = epoch.plans[&g]; // parse() accepted only known generations
        for s in 0..max {
            if key_shard[plan.key(t, s) as usize] == shard && !found.contains_key(&(g, t, s)) {
                gaps += 1;
                if gaps <= 5 {
                    v.report(format!(
                        "gap: record ({g}, {t}, {s}) missing on shard {shard}, but seq {max} present"
                    ));
                } else {
                    v.messages += 1;
                    v.in_cycle += 1;
                }
            }
        }
    }

    // Across threads: a present record implies what had returned before it was sent.
    for (&(g, t, s), f) in &found {
        let plan = epoch.plans[&g];
        for (other, &n) in f.clock.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let needed = (g, other, n - 1);
            if key_shard[plan.key(other, n - 1) as usize] != f.shard {
                v.report(format!(
                    "record ({g}, {t}, {s}): clock names {needed:?} of another shard"
                ));
            } else if !found.contains_key(&needed) {
                v.report(format!(
                    "record ({g}, {t}, {s}) on shard {} present but {needed:?}, returned before it was sent, is missing",
                    f.shard
                ));
            }
        }
    }

    // Every acknowledged durable record of this cycle, exactly once.
    let plan = epoch.plans[&generation];
    let mut acked = HashSet::new();
    for &(t, s) in &run.acks {
        if !acked.insert((t, s)) {
            v.report(format!("ack ({t}, {s}) printed twice"));
        }
        if !plan.durable(t, s) {
            v.report(format!("ack for non-durable record ({t}, {s})"));
        }
        if !found.contains_key(&(generation, t, s)) {
            figures.lost += 1;
            v.report(format!(
                "LOST acknowledged durable record ({generation}, {t}, {s})"
            ));
        }
    }
    for (&(g, _, _), f) in &found {
        if g == generation {
            if f.durable {
                figures.durable_found += 1;
            } else {
                figures.non_durable_found += 1;
            }
        }
    }

    // Earlier generations: exactly what the previous check found.
    for (&g, &before) in &epoch.counts {
        let now = per_generation.get(&g).copied().unwrap_or(0);
        if now != before {
            v.report(format!(
                "generation {g}: {before} records at the previous check, {now} now"
            ));
        }
    }
    epoch.counts.insert(
        generation,
        per_generation.get(&generation).copied().unwrap_or(0),
    );

    if let Err(e) = wal.close() {
        v.report(format!("close after the check failed: {e}"));
    } else if args.index_checkpoint {
        compare_checkpoint_reopen(wal_dir, &served, figures, v);
    }
    Ok(())
}

/// Reopens the WAL the check just closed, from the checkpoints that close wrote,
/// and compares every key's records with what the scan before `served`.
fn compare_checkpoint_reopen(
    wal_dir: &Path,
    served: &[(Vec<u8>, Vec<Bytes>)],
    figures: &mut Figures,
    v: &mut Violations,
) {
    let wal = match Wal::new(wal_dir, options(true)) {
        Ok(wal) => wal,
        Err(e) => return v.report(format!("reopen from the checkpoints failed: {e}")),
    };
    let loaded = wal.recovery_report().checkpoints_loaded;
    if loaded != wal.shard_count() as u64 {
        v.report(format!(
            "the reopen after a clean close loaded {loaded} of {} checkpoints: {:?}",
            wal.shard_count(),
            wal.recovery_report().checkpoints_ignored
        ));
    }
    let mut keys: Vec<Vec<u8>> = match wal.enumerate_keys() {
        Ok(keys) => keys.collect(),
        Err(e) => return v.report(format!("keys after the checkpointed reopen: {e}")),
    };
    keys.sort();
    let mut scanned: Vec<&Vec<u8>> = served.iter().map(|(k, _)| k).collect();
    scanned.sort();
    if keys.iter().ne(scanned.iter().copied()) {
        v.report(format!(
            "the checkpointed reopen has {} keys, the scan had {}",
            keys.len(),
            scanned.len()
        ));
    }
    for (key, values) in served {
        match wal
            .enumerate_records(key)
            .map(|got| got.collect::<Vec<_>>())
        {
            Ok(got) if got == *values => {}
            Ok(_) => v.report(format!(
                "key {:?}: the checkpointed reopen serves other records than the scan",
                String::from_utf8_lossy(key)
            )),
            Err(e) => v.report(format!(
                "key {:?} after the checkpointed reopen: {e}",
                String::from_utf8_lossy(key)
            )),
        }
    }
    figures.checkpoint_reopens += 1;
    if let Err(e) = wal.close() {
        v.report(format!("close after the checkpointed reopen failed: {e}"));
    }
}
