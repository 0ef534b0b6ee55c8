//! `nano-wal crash-child` and `nano-wal crash-loop`: the kill -9 crash test.
//!
//! **The child** (`crash-child`, hidden) opens the WAL in `--dir` and ingests forever
//! from `--threads` threads sharing one handle: a mix of durable (`log_entry`) and
//! non-durable (`append_entry(.., false)`) appends over [`KEYS`] keys shared by all
//! threads, each thread numbering its records with a strictly increasing `seq`. It
//! prints `ready {shards}` once the WAL is open, and `ack {thread} {seq}` (stdout
//! locked, written, flushed) for a durable append only after the call returned Ok.
//!
//! **The parent** (`crash-loop`) runs cycles: spawn the child on the same directory,
//! read its stdout on a thread, sleep a random 20..=300 ms, `SIGKILL` it, wait, drain
//! whole lines; then reopen the WAL and check every record of every key. The WAL grows
//! across cycles (one generation per cycle) and starts fresh every `--fresh-every`
//! cycles. Any violation makes the command fail; the damaged WAL is kept.
//!
//! **Records are self-describing.** Everything but the `clock` is a deterministic
//! function of (child seed, thread, seq), so the checker recomputes the key, the
//! durability, the padding length and the padding bytes:
//!
//! ```text
//! {generation}|{thread}|{seq}|{durable 0/1}|{clock c0,c1,..}|{padding length}|{padding}
//! ```
//!
//! `clock[t]` is, for the record's shard, 1 + the seq of thread `t`'s latest append
//! to that shard that had *returned* before this append was submitted (0: none). The
//! padding is an xorshift stream seeded by a hash of the header, so a changed byte
//! anywhere is detected.
//!
//! **Checks after each reopen.** The open succeeds; every record parses, belongs to a
//! known generation, has the key, durability, length and padding its header implies
//! (no foreign bytes); no (generation, thread, seq) appears twice; per key, the
//! generations never decrease and each thread's seqs strictly increase (append
//! order); per (generation, thread, shard) the seqs form a prefix of what that thread
//! wrote to that shard (shard = `xxh3_64(key) % shards`, the routing documented in
//! docs/FORMAT.md); a present record implies every record its clock names (the
//! cross-thread part of "per shard, a prefix"); every acknowledged durable record of
//! the cycle is present (else it counts as lost); and every earlier generation still
//! has exactly the records the previous check found.

use bytes::Bytes;
use nano_wal::{Wal, WalOptions};
use std::collections::{HashMap, HashSet};
use std::error::Error;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

type CrashResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// Keys shared by every thread of the child.
pub const KEYS: u64 = 32;
/// Shards of a WAL the child creates.
const SHARDS: usize = 4;
/// Violations printed in full (all are counted).
const PRINTED_VIOLATIONS: usize = 40;

/// The options of both the child and the parent's reopen: small segments so that
/// kills land during rotations too.
fn options(index_checkpoint: bool) -> WalOptions {
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

/// Flags of `nano-wal crash-loop`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoopArgs {
    /// Kill/reopen/check cycles.
    #[arg(long)]
    cycles: u64,
    /// Parent directory of the scratch WAL (default: the system temp dir). A fresh
    /// subdirectory is created in it, and removed at the end unless a check failed.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Seed of the kill times and child seeds (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    /// Ingest threads of each child.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Start a fresh WAL every this many cycles (bounds its size).
    #[arg(long, default_value_t = 20)]
    fresh_every: u64,
    /// Keep the scratch directory at the end.
    #[arg(long)]
    keep: bool,
    /// Run with `WalOptions::index_checkpoint`: each check's close writes a
    /// checkpoint, the next child opens from it and is killed, and the check's reopen
    /// must scan (none may be left); after each check, a reopen from the new
    /// checkpoint must serve exactly what the scan served.
    #[arg(long)]
    index_checkpoint: bool,
}

// ---------------------------------------------------------------------------------
// Deterministic record contents.

/// splitmix64's finalizer: a well-mixed 64-bit hash of `x`.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A tiny xorshift64* generator.
pub struct XorShift(u64);

impl XorShift {
    /// A generator whose stream depends on every bit of `seed`.
    pub fn new(seed: u64) -> XorShift {
        XorShift(mix(seed) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// FNV-1a of `bytes`: seeds the padding from the header.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

/// The key bytes of key number `index`.
fn key_bytes(index: u64) -> Vec<u8> {
    format!("crash-key-{index:02}").into_bytes()
}

/// The key number of key bytes, if they are one of ours.
fn key_index(key: &[u8]) -> Option<u64> {
    let digits = std::str::from_utf8(key.strip_prefix(b"crash-key-")?).ok()?;
    let index: u64 = digits.parse().ok()?;
    (index < KEYS && key_bytes(index) == key).then_some(index)
}

/// The documented routing (docs/FORMAT.md): `xxh3_64(key, seed 0) % shards`.
fn shard_of(key: &[u8], shards: usize) -> usize {
    (xxhash_rust::xxh3::xxh3_64(key) % shards as u64) as usize
}

/// What a child with a given seed writes as record `seq` of thread `thread`, apart
/// from the clock.
#[derive(Clone, Copy)]
struct Plan {
    seed: u64,
}

impl Plan {
    fn draw(self, thread: usize, seq: u64, salt: u64) -> u64 {
        mix(self.seed ^ mix((thread as u64) << 48 ^ seq ^ mix(salt)))
    }

    fn key(self, thread: usize, seq: u64) -> u64 {
        self.draw(thread, seq, 1) % KEYS
    }

    /// Thread `t` appends durably one record in `2 + t % 8` on average.
    fn durable(self, thread: usize, seq: u64) -> bool {
        self.draw(thread, seq, 2)
            .is_multiple_of(2 + thread as u64 % 8)
    }

    /// Mostly 0..=120 bytes; one record in 32 is 2000..=9000 bytes (crosses pages).
    fn padding_len(self, thread: usize, seq: u64) -> usize {
        let r = self.draw(thread, seq, 3);
        (if r.is_multiple_of(32) {
            2000 + (r >> 8) % 7001
        } else {
            (r >> 8) % 121
        }) as usize
    }
}

fn padding(header: &[u8], len: usize) -> impl Iterator<Item = u8> {
    let mut rng = XorShift::new(fnv1a(header));
    (0..len).map(move |_| (rng.next_u64() >> 56) as u8)
}

fn encode(generation: u64, thread: usize, seq: u64, plan: Plan, clock: &[u64]) -> Bytes {
    let clock: Vec<String> = clock.iter().map(u64::to_string).collect();
    let pad = plan.padding_len(thread, seq);
    let durable = u8::from(plan.durable(thread, seq));
    let mut value = format!(
        "{generation}|{thread}|{seq}|{durable}|{}|{pad}|",
        clock.join(",")
    )
    .into_bytes();
    let header_len = value.len();
    value.extend(padding(&value[..header_len], pad));
    Bytes::from(value)
}

/// A parsed record value.
struct Parsed {
    generation: u64,
    thread: usize,
    seq: u64,
    durable: bool,
    clock: Vec<u64>,
}

/// Parses and verifies a value against `plan` (looked up by its generation) and the
/// key it was read under. `Err` describes the foreign bytes.
fn parse(
    value: &[u8],
    key: u64,
    threads: usize,
    plans: &HashMap<u64, Plan>,
) -> Result<Parsed, String> {
    let mut bars = value.iter().enumerate().filter(|(_, &b)| b == b'|');
    let header_end = bars.nth(5).ok_or("fewer than 6 header fields")?.0 + 1;
    let header = std::str::from_utf8(&value[..header_end]).map_err(|_| "header is not UTF-8")?;
    let fields: Vec<&str> = header[..header_end - 1].split('|').collect();
    let num = |i: usize| -> Result<u64, String> {
        fields[i]
            .parse()
            .map_err(|_| format!("field {i} {:?} is not a number", fields[i]))
    };
    let generation = num(0)?;
    let thread = num(1)? as usize;
    let seq = num(2)?;
    let durable = match fields[3] {
        "0" => false,
        "1" => true,
        other => return Err(format!("durable flag {other:?}")),
    };
    let clock = fields[4]
        .split(',')
        .map(|c| c.parse::<u64>().map_err(|_| format!("clock entry {c:?}")))
        .collect::<Result<Vec<u64>, String>>()?;
    let pad = num(5)? as usize;
    let plan = plans
        .get(&generation)
        .ok_or_else(|| format!("generation {generation} was never written"))?;
    if thread >= threads || clock.len() != threads {
        return Err(format!(
            "thread {thread} / clock of {} entries",
            clock.len()
        ));
    }
    if plan.key(thread, seq) != key {
        return Err(format!(
            "record {generation}/{thread}/{seq} under the wrong key"
        ));
    }
    if plan.durable(thread, seq) != durable || plan.padding_len(thread, seq) != pad {
        return Err(format!(
            "record {generation}/{thread}/{seq}: durability or length differs"
        ));
    }
    let body = &value[header_end..];
    if body.len() != pad || !body.iter().copied().eq(padding(&value[..header_end], pad)) {
        return Err(format!(
            "record {generation}/{thread}/{seq}: padding differs"
        ));
    }
    Ok(Parsed {
        generation,
        thread,
        seq,
        durable,
        clock,
    })
}

// ---------------------------------------------------------------------------------
// The child.

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
    let (errors, first_error) = mpsc::channel::<String>();
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
                if let Err(e) = result {
                    let _ = errors.send(format!("thread {thread}: {e}"));
                }
            })?;
    }
    drop(errors);
    match first_error.recv() {
        Ok(e) => Err(e.into()),
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

// ---------------------------------------------------------------------------------
// The parent.

/// Running totals printed at the end.
#[derive(Default, Debug)]
struct Figures {
    cycles: u64,
    acked_checked: u64,
    lost: u64,
    durable_found: u64,
    non_durable_found: u64,
    records_verified: u64,
    truncations: u64,
    truncated_bytes: u64,
    /// Segment files that held bytes and that a recovery removed whole (an unfinished
    /// seal's later segments; since seal notes, a kill should leave none).
    segments_removed: u64,
    killed_before_ready: u64,
    fresh_starts: u64,
    largest_wal_records: u64,
    violations: u64,
    /// Reopens from a checkpoint compared with the scan before them.
    checkpoint_reopens: u64,
}

/// State of the current WAL (since the last fresh start).
#[derive(Default)]
struct Epoch {
    plans: HashMap<u64, Plan>,
    /// Records per generation found by the previous check.
    counts: HashMap<u64, u64>,
}

struct Violations {
    cycle: u64,
    messages: u64,
    in_cycle: u64,
}

impl Violations {
    fn report(&mut self, message: impl std::fmt::Display) {
        self.messages += 1;
        self.in_cycle += 1;
        if self.messages <= PRINTED_VIOLATIONS as u64 {
            eprintln!("VIOLATION (cycle {}): {message}", self.cycle);
        }
    }
}

/// What one child run produced.
struct ChildRun {
    ready: bool,
    acks: Vec<(usize, u64)>,
}

/// `nano-wal crash-loop`: the cycles, then the figures. Fails on any violation.
pub fn run_loop(args: &LoopArgs) -> CrashResult<()> {
    if args.cycles == 0 || args.threads == 0 || args.fresh_every == 0 {
        return Err("--cycles, --threads and --fresh-every must be at least 1".into());
    }
    let seed = args.seed.unwrap_or_else(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        mix(now.as_nanos() as u64 ^ u64::from(std::process::id()))
    });
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scratch = tempfile::Builder::new()
        .prefix("nano-wal-crash-")
        .tempdir_in(&parent)
        .map_err(|e| format!("creating a scratch directory in {}: {e}", parent.display()))?;
    let wal_dir = scratch.path().join("wal");
    let exe = std::env::current_exe()?;
    println!(
        "crash-loop: {} cycles, {} threads, seed {seed}, fresh WAL every {} cycles{}, in {}",
        args.cycles,
        args.threads,
        args.fresh_every,
        if args.index_checkpoint {
            ", index checkpoints"
        } else {
            ""
        },
        scratch.path().display()
    );

    let started = Instant::now();
    let mut rng = XorShift::new(seed);
    let mut figures = Figures::default();
    let mut epoch = Epoch::default();
    let mut violations = Violations {
        cycle: 0,
        messages: 0,
        in_cycle: 0,
    };
    let mut kept_failures = Vec::new();
    for cycle in 0..args.cycles {
        violations.cycle = cycle;
        violations.in_cycle = 0;
        if cycle.is_multiple_of(args.fresh_every) || !wal_dir.exists() {
            if wal_dir.exists() {
                std::fs::remove_dir_all(&wal_dir)?;
            }
            epoch = Epoch::default();
            figures.fresh_starts += 1;
        }
        let plan = Plan {
            seed: rng.next_u64(),
        };
        let kill_after = Duration::from_millis(rng.range(20, 300));
        epoch.plans.insert(cycle, plan);

        let run = run_child_once(
            &exe,
            &wal_dir,
            cycle,
            plan,
            args,
            kill_after,
            &mut violations,
        )?;
        if !run.ready {
            figures.killed_before_ready += 1;
        }
        check_cycle(
            &wal_dir,
            cycle,
            &run,
            args,
            &mut epoch,
            &mut figures,
            &mut violations,
        )?;
        figures.cycles += 1;
        if violations.in_cycle > 0 {
            // Keep the evidence and go on with a fresh WAL.
            let kept = scratch.path().join(format!("failed-cycle-{cycle}"));
            if wal_dir.exists() {
                std::fs::rename(&wal_dir, &kept)?;
                eprintln!("cycle {cycle}: WAL kept in {}", kept.display());
                kept_failures.push(kept);
            }
        }
        if (cycle + 1).is_multiple_of(50) {
            eprintln!(
                "crash-loop: {} cycles, {} acknowledged checked, {} lost, {} violations, {:.1?}",
                cycle + 1,
                figures.acked_checked,
                figures.lost,
                violations.messages,
                started.elapsed()
            );
        }
    }
    figures.violations = violations.messages;
    let wall = started.elapsed();
    print_figures(&figures, wall);

    if figures.violations > 0 || args.keep {
        let kept = scratch.keep();
        println!("scratch directory kept: {}", kept.display());
    }
    if figures.violations > 0 {
        return Err(format!(
            "{} violations ({} acknowledged records lost) in {} cycles; seed {seed}",
            figures.violations, figures.lost, figures.cycles
        )
        .into());
    }
    Ok(())
}

fn print_figures(f: &Figures, wall: Duration) {
    let rows: Vec<(&str, String)> = vec![
        ("cycles", f.cycles.to_string()),
        (
            "acknowledged durable records checked",
            f.acked_checked.to_string(),
        ),
        ("records lost", f.lost.to_string()),
        (
            "durable records found (this cycle's)",
            f.durable_found.to_string(),
        ),
        (
            "non-durable records found (this cycle's)",
            f.non_durable_found.to_string(),
        ),
        (
            "records verified (all reopens)",
            f.records_verified.to_string(),
        ),
        (
            "recoveries with truncation",
            format!("{}   ({} bytes cut)", f.truncations, f.truncated_bytes),
        ),
        (
            "segment files removed whole (not empty)",
            f.segments_removed.to_string(),
        ),
        (
            "kills before the WAL was open",
            f.killed_before_ready.to_string(),
        ),
        ("fresh WALs", f.fresh_starts.to_string()),
        (
            "checkpoint reopens matching the scan",
            f.checkpoint_reopens.to_string(),
        ),
        (
            "largest WAL checked (records)",
            f.largest_wal_records.to_string(),
        ),
        ("violations", f.violations.to_string()),
        (
            "wall time",
            format!(
                "{:.1?}   ({:.0?} per cycle)",
                wall,
                wall / f.cycles.max(1) as u32
            ),
        ),
    ];
    println!("| {:<41}| result", "metric");
    println!("|{:-<42}|-------", "");
    for (name, value) in rows {
        println!("| {name:<41}| {value}");
    }
}

/// Spawns the child, kills it after `kill_after`, and collects its whole output lines.
fn run_child_once(
    exe: &Path,
    wal_dir: &Path,
    generation: u64,
    plan: Plan,
    args: &LoopArgs,
    kill_after: Duration,
    violations: &mut Violations,
) -> CrashResult<ChildRun> {
    let threads = args.threads;
    let mut child: Child = Command::new(exe)
        .arg("crash-child")
        .args(args.index_checkpoint.then_some("--index-checkpoint"))
        .arg("--dir")
        .arg(wal_dir)
        .arg("--seed")
        .arg(plan.seed.to_string())
        .arg("--threads")
        .arg(threads.to_string())
        .arg("--generation")
        .arg(generation.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", exe.display()))?;
    let stdout = child.stdout.take().ok_or("child stdout missing")?;
    let mut stderr = child.stderr.take().ok_or("child stderr missing")?;
    // Read both pipes continuously so the child never blocks on a full pipe.
    let out_reader = thread::spawn(move || -> std::io::Result<Vec<Vec<u8>>> {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 || line.last() != Some(&b'\n') {
                return Ok(lines); // EOF; a partial last line does not count
            }
            line.pop();
            lines.push(line);
        }
    });
    let err_reader = thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stderr.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });

    thread::sleep(kill_after);
    let early = child.try_wait()?;
    if early.is_none() {
        child.kill()?; // SIGKILL
    }
    let status = child.wait()?;
    let lines = out_reader
        .join()
        .map_err(|_| "stdout reader panicked")?
        .map_err(|e| format!("reading the child's stdout: {e}"))?;
    let stderr_text = err_reader.join().map_err(|_| "stderr reader panicked")?;
    if early.is_some() || status.signal() != Some(libc::SIGKILL) {
        violations.report(format!(
            "the child was not killed by SIGKILL but ended with {status}: {}",
            stderr_text.trim()
        ));
    }

    let mut run = ChildRun {
        ready: false,
        acks: Vec::new(),
    };
    for line in lines {
        let text = String::from_utf8_lossy(&line);
        let words: Vec<&str> = text.split(' ').collect();
        match words.as_slice() {
            ["ready", _] => run.ready = true,
            ["ack", t, s] => match (t.parse::<usize>(), s.parse::<u64>()) {
                (Ok(t), Ok(s)) if t < threads => run.acks.push((t, s)),
                _ => violations.report(format!("bad ack line from the child: {text:?}")),
            },
            _ => violations.report(format!("unexpected line from the child: {text:?}")),
        }
    }
    Ok(run)
}

/// Location of a found record.
struct Found {
    shard: usize,
    durable: bool,
    clock: Vec<u64>,
}

/// Reopens the WAL and checks it against everything written so far (see the module
/// documentation). Violations are reported; `Err` is only for the checker's own I/O.
fn check_cycle(
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
