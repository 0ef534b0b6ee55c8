//! The crash test's parent (`crash-loop`): it runs cycles: spawn the child on the same directory,
//! read its stdout on a thread, sleep a random 20..=300 ms, `SIGKILL` it, wait, drain
//! whole lines; then reopen the WAL and check every record of every key. The WAL grows
//! across cycles (one generation per cycle) and starts fresh every `--fresh-every`
//! cycles. Any violation makes the command fail; the damaged WAL is kept.

use super::check::{check_cycle, Epoch, Violations};
use super::child::CrashResult;
use super::figures::{print_figures, Figures};
use super::record::{mix, Plan, XorShift};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Flags of `nano-wal crash-loop`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoopArgs {
    /// Kill/reopen/check cycles.
    #[arg(long)]
    pub(super) cycles: u64,
    /// Parent directory of the scratch WAL (default: the system temp dir). A fresh
    /// subdirectory is created in it, and removed at the end unless a check failed.
    #[arg(long)]
    pub(super) dir: Option<PathBuf>,
    /// Seed of the kill times and child seeds (default: from the clock; printed).
    #[arg(long)]
    pub(super) seed: Option<u64>,
    /// Ingest threads of each child.
    #[arg(long, default_value_t = 8)]
    pub(super) threads: usize,
    /// Start a fresh WAL every this many cycles (bounds its size).
    #[arg(long, default_value_t = 20)]
    pub(super) fresh_every: u64,
    /// Keep the scratch directory at the end.
    #[arg(long)]
    pub(super) keep: bool,
    /// Run with `WalOptions::index_checkpoint`: each check's close writes a
    /// checkpoint, the next child opens from it and is killed, and the check's reopen
    /// must scan (none may be left); after each check, a reopen from the new
    /// checkpoint must serve exactly what the scan served.
    #[arg(long)]
    pub(super) index_checkpoint: bool,
}

/// What one child run produced.
pub(super) struct ChildRun {
    pub(super) ready: bool,
    pub(super) acks: Vec<(usize, u64)>,
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
