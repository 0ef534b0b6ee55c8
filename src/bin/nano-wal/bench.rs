//! `nano-wal bench`: the main job.
//!
//! Phases, each with a progress bar on stderr:
//! 1. **ingest**: `--threads` threads share one `Wal` handle and append `--records`
//!    records in total over `--keys` keys; a `--durable` share of them durably
//!    (`log_entry`), the rest with `append_entry(.., false)`; then one `sync()`.
//! 2. **read**: the same threads read every key back with `enumerate_records` and the
//!    total is checked against what was appended.
//! 3. **reopen**: `close()`, then `Wal::new` on the same directory (recovery and index
//!    rebuild), checked against the record count.
//!
//! The table on stdout reports throughput, latency percentiles, how many records each
//! fsync covered (group commit), index memory, read rate and reopen time.

use bytes::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use nano_wal::{Wal, WalOptions};
use std::error::Error;
use std::path::PathBuf;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Flags of `nano-wal bench`; every one has a default, so no flag is needed.
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Threads sharing one handle.
    #[arg(long, default_value_t = 16)]
    threads: usize,
    /// Records appended in total (spread evenly over the threads).
    #[arg(long, default_value_t = 1_000_000)]
    records: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Share of appends that are durable, from 0.0 to 1.0.
    #[arg(long, default_value_t = 0.05)]
    durable: f64,
    /// Distinct keys (records are spread round-robin over them).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Shards (default: the library's, from available parallelism).
    #[arg(long)]
    shards: Option<usize>,
    /// Maximum segment size in bytes (default: the library's).
    #[arg(long)]
    max_segment_size: Option<u64>,
    /// Read cache in MiB (default: the library's; 0 turns it off).
    #[arg(long)]
    read_cache_mib: Option<usize>,
    /// Turn on `WalOptions::index_checkpoint`: the close writes each shard's index
    /// and the reopen loads it instead of reading every record.
    #[arg(long)]
    index_checkpoint: bool,
    /// Parent directory for the WAL (default: the system temp dir). A fresh
    /// subdirectory is created in it and removed at the end.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the WAL directory at the end (its path is printed).
    #[arg(long)]
    keep: bool,
}

impl BenchArgs {
    fn check(&self) -> BenchResult<()> {
        if self.threads == 0 {
            return Err("--threads must be at least 1".into());
        }
        if self.records == 0 {
            return Err("--records must be at least 1".into());
        }
        if self.keys == 0 {
            return Err("--keys must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.durable) {
            return Err(format!("--durable must be within 0.0..=1.0, got {}", self.durable).into());
        }
        self.options().validate()?;
        Ok(())
    }

    fn options(&self) -> WalOptions {
        let mut options = WalOptions::default();
        if let Some(shards) = self.shards {
            options.shards = shards;
        }
        if let Some(size) = self.max_segment_size {
            options.max_segment_size = size;
        }
        if let Some(mib) = self.read_cache_mib {
            options.read_cache_bytes = mib.saturating_mul(1 << 20);
        }
        options.index_checkpoint = self.index_checkpoint;
        options
    }

    /// Whether the `g`-th record (global numbering) is appended durably: spreads
    /// the durable share evenly over the sequence.
    fn is_durable(&self, g: u64) -> bool {
        (((g + 1) as f64) * self.durable).floor() > ((g as f64) * self.durable).floor()
    }

    /// Records of key `k` once every append is done.
    fn expected_for_key(&self, k: u64) -> u64 {
        self.records / self.keys + u64::from(k < self.records % self.keys)
    }
}

/// What one ingest thread measured.
#[derive(Default)]
struct IngestLog {
    /// Latency of each non-durable append, nanoseconds.
    fast: Vec<u64>,
    /// Latency of each durable append, nanoseconds.
    durable: Vec<u64>,
}

/// Runs the benchmark and prints the table.
pub fn run(args: &BenchArgs) -> BenchResult<()> {
    args.check()?;
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent)
        .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("nano-wal-bench-")
        .tempdir_in(&parent)
        .map_err(|e| format!("cannot create a directory in {}: {e}", parent.display()))?;
    let path = scratch.path().join("wal");
    let options = args.options();
    let keys: Vec<Vec<u8>> = (0..args.keys)
        .map(|k| format!("key-{k:08}").into_bytes())
        .collect();

    eprintln!(
        "nano-wal bench: {} threads, {} records of {} B over {} keys, {:.1}% durable, {} shards, in {}",
        args.threads,
        args.records,
        args.value_size,
        args.keys,
        args.durable * 100.0,
        options.shards,
        path.display()
    );

    let wal = Wal::new(&path, options)?;
    let ingest = ingest(args, &wal, &keys)?;
    let read = read_back(args, &wal, &keys)?;

    let close_started = Instant::now();
    wal.close()?;
    let close_time = close_started.elapsed();
    let reopen = reopen(args, &path, &keys)?;

    let table = Table::new(args, &ingest, &read, close_time, &reopen);
    println!("{table}");
    if args.keep {
        let kept = scratch.keep();
        eprintln!("kept {}", kept.join("wal").display());
    }
    Ok(())
}

/// Figures of the ingest phase.
struct Ingest {
    appends_done: Duration,
    final_sync: Duration,
    fast: Vec<u64>,
    durable: Vec<u64>,
    fsyncs: u64,
    batches: u64,
    disk_bytes: u64,
    segments: u64,
    index_bytes: u64,
    key_bytes: u64,
}

fn bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style = ProgressStyle::with_template(
        "{prefix:>7} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} {per_sec}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(what.to_string());
    bar
}

fn ingest(args: &BenchArgs, wal: &Wal, keys: &[Vec<u8>]) -> BenchResult<Ingest> {
    let before = wal.stats()?;
    let progress = bar(args.records, "ingest");
    let start = Barrier::new(args.threads + 1);
    let threads = args.threads as u64;
    let (logs, appends_done) = thread::scope(|s| -> BenchResult<(Vec<IngestLog>, Duration)> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (wal, progress, start) = (wal.clone(), &progress, &start);
                s.spawn(move || -> BenchResult<IngestLog> {
                    let value = Bytes::from(vec![b'a' + (t % 26) as u8; args.value_size]);
                    let mine = (args.records - t).div_ceil(threads);
                    let mut log = IngestLog {
                        fast: Vec::with_capacity(mine as usize),
                        durable: Vec::new(),
                    };
                    start.wait();
                    let mut unreported = 0;
                    for j in 0..mine {
                        let g = t + j * threads;
                        let key = &keys[(g % args.keys) as usize];
                        let durable = args.is_durable(g);
                        let began = Instant::now();
                        wal.append_entry(key, value.clone(), durable)?;
                        let took = began.elapsed().as_nanos() as u64;
                        if durable {
                            log.durable.push(took);
                        } else {
                            log.fast.push(took);
                        }
                        unreported += 1;
                        if unreported == 1024 {
                            progress.inc(unreported);
                            unreported = 0;
                        }
                    }
                    progress.inc(unreported);
                    Ok(log)
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        let mut logs = Vec::with_capacity(workers.len());
        for w in workers {
            logs.push(w.join().map_err(|_| "an ingest thread panicked")??);
        }
        Ok((logs, began.elapsed()))
    })?;
    let sync_started = Instant::now();
    wal.sync()?;
    let final_sync = sync_started.elapsed();
    progress.finish();

    let after = wal.stats()?;
    if after.records() != before.records() + args.records {
        return Err(format!(
            "stats count {} records after ingest, expected {}",
            after.records() - before.records(),
            args.records
        )
        .into());
    }
    let mut fast = Vec::with_capacity(args.records as usize);
    let mut durable = Vec::new();
    for log in logs {
        fast.extend(log.fast);
        durable.extend(log.durable);
    }
    fast.sort_unstable();
    durable.sort_unstable();
    Ok(Ingest {
        appends_done,
        final_sync,
        fast,
        durable,
        fsyncs: after.fsyncs() - before.fsyncs(),
        batches: after.batches() - before.batches(),
        disk_bytes: after.bytes(),
        segments: after.segments(),
        index_bytes: after.index_bytes(),
        key_bytes: keys.iter().map(|k| k.len() as u64).sum(),
    })
}

/// Figures of the read phase.
struct Read {
    records: u64,
    took: Duration,
}

fn read_back(args: &BenchArgs, wal: &Wal, keys: &[Vec<u8>]) -> BenchResult<Read> {
    let progress = bar(args.records, "read");
    let threads = args.threads.min(keys.len());
    let began = Instant::now();
    let counts = thread::scope(|s| -> BenchResult<Vec<u64>> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (wal, progress) = (wal.clone(), &progress);
                s.spawn(move || -> BenchResult<u64> {
                    let mut total = 0;
                    for k in (t..keys.len()).step_by(threads) {
                        let mut n = 0;
                        let mut bytes = 0;
                        for record in wal.enumerate_records(&keys[k])? {
                            n += 1;
                            bytes += record.len();
                        }
                        let want = args.expected_for_key(k as u64);
                        if n != want || bytes != want as usize * args.value_size {
                            return Err(format!(
                                "key {k}: read {n} records ({bytes} B), expected {want}"
                            )
                            .into());
                        }
                        total += n;
                        progress.inc(n);
                    }
                    Ok(total)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().map_err(|_| "a read thread panicked")?)
            .collect()
    })?;
    let took = began.elapsed();
    progress.finish();
    let records = counts.iter().sum();
    if records != args.records {
        return Err(format!("read {records} records, expected {}", args.records).into());
    }
    Ok(Read { records, took })
}

/// Figures of the reopen phase.
struct Reopen {
    took: Duration,
    segments: u64,
    /// Shards whose index came from the checkpoint, of all.
    checkpoints: (u64, usize),
}

fn reopen(args: &BenchArgs, path: &std::path::Path, keys: &[Vec<u8>]) -> BenchResult<Reopen> {
    let spinner = ProgressBar::new_spinner();
    spinner.set_message("reopening (recovery and index rebuild)");
    spinner.enable_steady_tick(Duration::from_millis(100));
    let began = Instant::now();
    let wal = Wal::new(path, args.options())?;
    let took = began.elapsed();
    spinner.finish_and_clear();
    let records = wal.stats()?.records();
    if records != args.records {
        return Err(format!("reopen found {records} records, expected {}", args.records).into());
    }
    let probe = keys.len() / 2;
    let n = wal.enumerate_records(&keys[probe])?.count() as u64;
    if n != args.expected_for_key(probe as u64) {
        return Err(format!("after reopen key {probe} has {n} records").into());
    }
    let segments = wal.recovery_report().segments;
    let checkpoints = (wal.recovery_report().checkpoints_loaded, wal.shard_count());
    wal.close()?;
    Ok(Reopen {
        took,
        segments,
        checkpoints,
    })
}

/// The result table.
struct Table {
    rows: Vec<(String, String)>,
}

fn percentile(sorted: &[u64], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(Duration::from_nanos(sorted[i]))
}

fn show_latency(sorted: &[u64]) -> String {
    match (percentile(sorted, 0.5), percentile(sorted, 0.99)) {
        (Some(p50), Some(p99)) => format!("{p50:.1?} / {p99:.1?}   ({} appends)", sorted.len()),
        _ => "n/a (none)".to_string(),
    }
}

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(1e-9)
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2} M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1} k", n / 1e3)
    } else {
        format!("{n:.1}")
    }
}

impl Table {
    fn new(args: &BenchArgs, i: &Ingest, r: &Read, close: Duration, o: &Reopen) -> Table {
        let total = i.appends_done + i.final_sync;
        let records = args.records as f64;
        let payload = records * args.value_size as f64;
        let durable = i.durable.len() as u64;
        let mut all: Vec<u64> = i.fast.iter().chain(&i.durable).copied().collect();
        all.sort_unstable();
        let mut rows = vec![
            (
                "ingest ops/s (appends + final sync)".into(),
                format!(
                    "{}   ({} records in {:.2?} + sync {:.2?})",
                    human(per_sec(records, total)),
                    args.records,
                    i.appends_done,
                    i.final_sync
                ),
            ),
            (
                "ingest MB/s (values)".into(),
                format!("{:.1}", per_sec(payload, total) / 1e6),
            ),
            ("append latency p50 / p99, all".into(), show_latency(&all)),
            (
                "append latency p50 / p99, non-durable".into(),
                show_latency(&i.fast),
            ),
            (
                "append latency p50 / p99, durable".into(),
                show_latency(&i.durable),
            ),
            ("fsyncs".into(), i.fsyncs.to_string()),
        ];
        let ratio = |n: u64| {
            if i.fsyncs == 0 {
                "n/a (no fsync)".to_string()
            } else {
                format!("{:.1}", n as f64 / i.fsyncs as f64)
            }
        };
        rows.push(("durable appends per fsync".into(), ratio(durable)));
        rows.push(("records per fsync".into(), ratio(args.records)));
        rows.push((
            "batches (records per batch)".into(),
            format!(
                "{}   ({:.1})",
                i.batches,
                records / (i.batches.max(1) as f64)
            ),
        ));
        rows.push((
            "index memory".into(),
            format!(
                "{:.1} MiB   ({:.1} B/record; {:.1} B/record + key bytes once)",
                i.index_bytes as f64 / (1 << 20) as f64,
                i.index_bytes as f64 / records,
                i.index_bytes.saturating_sub(i.key_bytes) as f64 / records
            ),
        ));
        rows.push((
            "on disk".into(),
            format!(
                "{:.1} MiB in {} segments",
                i.disk_bytes as f64 / (1 << 20) as f64,
                i.segments
            ),
        ));
        rows.push((
            "read records/s (all keys)".into(),
            format!(
                "{}   ({} records in {:.2?}, {:.1} MB/s)",
                human(per_sec(r.records as f64, r.took)),
                r.records,
                r.took,
                per_sec(r.records as f64 * args.value_size as f64, r.took) / 1e6
            ),
        ));
        rows.push(("close".into(), format!("{close:.2?}")));
        rows.push((
            "reopen (recovery + index rebuild)".into(),
            format!(
                "{:.2?}   ({} segments; {} of {} shards from the index checkpoint)",
                o.took, o.segments, o.checkpoints.0, o.checkpoints.1
            ),
        ));
        Table { rows }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = self.rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        writeln!(f, "| {:width$} | result", "metric")?;
        writeln!(f, "|-{}-|-------", "-".repeat(width))?;
        for (k, v) in &self.rows {
            writeln!(f, "| {k:width$} | {v}")?;
        }
        Ok(())
    }
}
