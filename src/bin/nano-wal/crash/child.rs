//! The crash test's child (`crash-child`, hidden): it opens the WAL in `--dir` and ingests forever
//! from `--threads` threads sharing one handle: a mix of durable (`log_entry`) and
//! non-durable (`append_entry(.., false)`) appends over `KEYS` keys shared by all
//! threads, each thread numbering its records with a strictly increasing `seq`. It
//! prints `ready {shards}` once the WAL is open, and `ack {thread} {seq}` (stdout
//! locked, written, flushed) for a durable append only after the call returned Ok.

use super::record::{encode, key_bytes, shard_of, Plan, KEYS};
use nano_wal::{Wal, WalOptions};
use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;

/// What the crash test's commands return: errors end them with a message.
pub(super) type CrashResult<T> = Result<T, Box<dyn Error + Send + Sync>>;
/// Shards of a WAL the child creates.
const SHARDS: usize = 4;

/// The options of both the child and the parent's reopen: small segments so that
/// kills land during rotations too.
pub(super) fn options(index_checkpoint: bool) -> WalOptions {
    WalOptions {
        shards: SHARDS,
        max_record_size: 64 * 1024,
        max_key_size: 64,
        max_segment_size: 256 * 1024,
        index_checkpoint,
        ..WalOptions::default()
    }
}

/// Flags of the hidden `nano-wal crash-child`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChildArgs {
    /// WAL directory (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Seed of the record contents (keys, durability, padding).
    #[arg(long)]
    seed: u64,
    /// Ingest threads sharing one handle.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Generation written into every record (the parent's cycle number).
    #[arg(long, default_value_t = 0)]
    generation: u64,
    /// Open with `WalOptions::index_checkpoint`.
    #[arg(long)]
    index_checkpoint: bool,
}

/// An ingest thread's error, which ends the child.
#[derive(Debug, thiserror::Error)]
#[error("thread {thread}: {cause}")]
struct IngestFailed {
    thread: usize,
    cause: Box<dyn Error + Send + Sync>,
}

/// `nano-wal crash-child`: ingests until killed. Returns only on an error.
pub fn run_child(args: &ChildArgs) -> CrashResult<()> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let wal = Wal::new(&args.dir, options(args.index_checkpoint))?;
    let shards = wal.shard_count();
    let plan = Plan { seed: args.seed };
    let threads = args.threads;
    // returned[shard * threads + t] = 1 + seq of t's latest returned append to shard.
    let returned: Arc<Vec<AtomicU64>> =
        Arc::new((0..shards * threads).map(|_| AtomicU64::new(0)).collect());
    let key_shard: Vec<usize> = (0..KEYS).map(|k| shard_of(&key_bytes(k), shards)).collect();
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "ready {shards}")?;
        out.flush()?;
    }
    let (errors, first_error) = mpsc::channel::<IngestFailed>();
    for thread in 0..threads {
        let wal = wal.clone();
        let returned = returned.clone();
        let key_shard = key_shard.clone();
        let errors = errors.clone();
        let generation = args.generation;
        thread::Builder::new()
            .name(format!("crash-ingest-{thread}"))
            .spawn(move || {
                let result = ingest(
                    &wal, generation, thread, threads, plan, &returned, &key_shard,
                );
                if let Err(cause) = result {
                    let _ = errors.send(IngestFailed { thread, cause });
                }
            })?;
    }
    drop(errors);
    match first_error.recv() {
        Ok(failed) => Err(failed.into()),
        Err(_) => Err("every ingest thread stopped".into()),
    }
}

fn ingest(
    wal: &Wal,
    generation: u64,
    thread: usize,
    threads: usize,
    plan: Plan,
    returned: &[AtomicU64],
    key_shard: &[usize],
) -> CrashResult<()> {
    let mut clock = vec![0u64; threads];
    for seq in 0u64.. {
        let key = plan.key(thread, seq);
        let shard = key_shard[key as usize];
        let row = &returned[shard * threads..(shard + 1) * threads];
        for (c, r) in clock.iter_mut().zip(row) {
            *c = r.load(Ordering::Acquire);
        }
        let value = encode(generation, thread, seq, plan, &clock);
        let durable = plan.durable(thread, seq);
        if durable {
            wal.log_entry(key_bytes(key), value)?;
        } else {
            wal.append_entry(key_bytes(key), value, false)?;
        }
        row[thread].store(seq + 1, Ordering::Release);
        if durable {
            let mut out = std::io::stdout().lock();
            writeln!(out, "ack {thread} {seq}")?;
            out.flush()?;
        }
    }
    Ok(())
}
