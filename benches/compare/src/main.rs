//! nano-wal (this repository) against its peers, in one process run:
//! `cargo run --release` prints a markdown table per workload and a summary of the
//! issue's targets; `cargo run --release -- sweep` plots durable appends against
//! thread count. See README.md.

mod plot;
mod run;
mod sweep;
mod systems;
mod table;
mod targets;
mod workloads;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};

use run::Run;
use table::{thousands, Table, Unit};
use workloads::Ingest;

const DEFAULT_SVG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/durable_threads.svg");

/// Every workload id `--only` accepts, in the order the tables are printed.
const WORKLOADS: [&str; 9] = ["W1", "W2", "W3", "W4", "W5", "W6", "W1-4K", "W2-4K", "MEM"];

#[derive(Parser)]
#[command(
    about = "Compare nano-wal (this repository) with nano-wal 0.5, nano-wal 1.0, okaywal and a plain File"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Short smoke run: 10x fewer records in every workload.
    #[arg(long, global = true)]
    quick: bool,
    /// Run only these workloads, comma-separated: W1,W2,W3,W4,W5,W6,W1-4K,W2-4K,MEM
    /// (MEM = ours' index memory after W1's data).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Records of the 100-byte W1/W2 ingests.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    /// Records of the 4 KiB W1/W2 ingests.
    #[arg(long, default_value_t = 100_000)]
    big_records: usize,
    /// Where the per-run temporary directories go [default: the system temp dir].
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Rounds: every workload runs this many times on every system, systems taking
    /// turns within a round, and each cell keeps its best figure. The first writer
    /// of fresh memory pays for it on this VM (about 2x on 4 KiB ingests), so a
    /// single round favours whoever runs later.
    #[arg(long, global = true, default_value_t = 3)]
    rounds: usize,
}

#[derive(Subcommand)]
enum Command {
    /// Durable appends with 1, 2, 4, 16 and 64 threads for ours, okaywal and File:
    /// prints a table and writes an SVG line plot.
    Sweep {
        /// Where to write the plot.
        #[arg(long, default_value = DEFAULT_SVG)]
        svg: PathBuf,
        /// Durable appends per thread (raised so that every point has at least 400).
        #[arg(long, default_value_t = 50)]
        per_thread: usize,
    },
}

/// Sizes of one run.
struct Params {
    keys: usize,
    records: usize,
    big_records: usize,
    value: usize,
    big_value: usize,
    w2_threads: usize,
    w3_appends: usize,
    w4_threads: usize,
    w4_per_thread: usize,
    w5_keys: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let base = cli.dir.clone().unwrap_or_else(std::env::temp_dir);
    let scale = if cli.quick { 10 } else { 1 };
    match cli.command {
        Some(Command::Sweep {
            ref svg,
            per_thread,
        }) => sweep::sweep(
            &base,
            (per_thread / scale).max(1),
            400 / scale,
            cli.rounds,
            svg,
        ),
        None => {
            let params = Params {
                keys: 10_000,
                records: cli.records / scale,
                big_records: cli.big_records / scale,
                value: 100,
                big_value: 4096,
                w2_threads: 16,
                w3_appends: 2_000 / scale,
                w4_threads: 64,
                w4_per_thread: 50 / scale,
                w5_keys: 1_000,
            };
            let only = selection(&cli.only).unwrap_or_else(|e| {
                Cli::command()
                    .error(clap::error::ErrorKind::InvalidValue, e)
                    .exit()
            });
            compare(&base, &params, &only, cli.rounds)
        }
    }
}

fn selection(only: &[String]) -> Result<Vec<&'static str>, String> {
    if only.is_empty() {
        return Ok(WORKLOADS.to_vec());
    }
    let mut picked = Vec::new();
    for name in only {
        match WORKLOADS
            .iter()
            .find(|w| w.eq_ignore_ascii_case(name.trim()))
        {
            Some(w) => picked.push(*w),
            None => {
                let known = WORKLOADS.join(",");
                return Err(format!("--only: unknown workload {name:?}; known: {known}"));
            }
        }
    }
    Ok(picked)
}

fn compare(base: &Path, p: &Params, only: &[&'static str], rounds: usize) -> Result<()> {
    let specs = systems::all();
    let n = |v: usize| thousands(v as u64);
    let (records, big, w2) = (n(p.records), n(p.big_records), p.w2_threads);
    let (w3, w4, w4_each, w5) = (n(p.w3_appends), p.w4_threads, p.w4_per_thread, n(p.w5_keys));
    let tables = [
        (
            "W1",
            Unit::OpsPerSec,
            format!("W1: 1 thread, {records} non-durable appends"),
        ),
        (
            "W2",
            Unit::OpsPerSec,
            format!("W2: {w2} threads sharing one handle, {records} non-durable appends in total"),
        ),
        (
            "W3",
            Unit::OpsPerSec,
            format!("W3: 1 thread, {w3} durable appends"),
        ),
        (
            "W4",
            Unit::OpsPerSec,
            format!("W4: {w4} threads x {w4_each} durable appends"),
        ),
        (
            "W5",
            Unit::RecordsPerSec,
            format!("W5: read every record of {w5} keys after W1's data"),
        ),
        (
            "W6",
            Unit::Millis,
            "W6: reopen after W1's data (the open call, index rebuilt)".into(),
        ),
        (
            "W1-4K",
            Unit::MegabytesPerSec,
            format!("W1 with 4 KiB values: 1 thread, {big} non-durable appends"),
        ),
        (
            "W2-4K",
            Unit::MegabytesPerSec,
            format!("W2 with 4 KiB values: {w2} threads, {big} non-durable appends in total"),
        ),
    ];
    let tables = tables
        .into_iter()
        .filter(|(id, _, _)| only.contains(id))
        .map(|(id, unit, title)| Table::new(id, unit, title))
        .collect();
    let mut run = Run::new(base, only, p, tables);

    eprintln!("temp dirs under {}; progress:", base.display());
    let rounds = rounds.max(1);
    if ["W1", "W5", "W6", "MEM"].iter().any(|w| only.contains(w)) {
        for round in 0..rounds {
            for spec in rotated(&specs, round) {
                run.keyed_chain(spec);
            }
        }
    }
    let ingest = |threads, records, value_size, durable| Ingest {
        threads,
        records,
        value_size,
        durable,
    };
    let ingests = [
        ("W2", ingest(w2, p.records, p.value, false)),
        ("W3", ingest(1, p.w3_appends, p.value, true)),
        (
            "W4",
            ingest(p.w4_threads, p.w4_threads * p.w4_per_thread, p.value, true),
        ),
        ("W1-4K", ingest(1, p.big_records, p.big_value, false)),
        ("W2-4K", ingest(w2, p.big_records, p.big_value, false)),
    ];
    for (id, w) in ingests.iter().filter(|(id, _)| only.contains(id)) {
        for round in 0..rounds {
            for spec in rotated(&specs, round) {
                run.ingest_cell(id, spec, w);
            }
        }
    }

    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    println!("# nano-wal comparison\n");
    println!(
        "Systems: {}. {} cores; temp dirs under `{}`; {} B values, {} keys unless said; \
         MB = 10^6 value bytes. Best of {rounds} rounds per cell (the machine is noisy).\n",
        names.join(", "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        base.display(),
        p.value,
        n(p.keys),
    );
    for table in &run.tables {
        println!("{}", table.markdown());
    }
    println!("{}", targets::summary(&run));
    Ok(())
}

/// The systems in turn order for `round`: each round starts one system later, so no
/// system always runs first (on fresh memory) or right after a given other one.
fn rotated<T>(items: &[T], round: usize) -> impl Iterator<Item = &T> {
    let k = round % items.len().max(1);
    items[k..].iter().chain(&items[..k])
}
