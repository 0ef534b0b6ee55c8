//! nano-wal (this repository) against its peers, in one process run:
//! `cargo run --release` prints a markdown table per workload and a summary of the
//! issue's targets; `cargo run --release -- sweep` plots durable appends against
//! thread count. See README.md.

mod plot;
mod systems;
mod workloads;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Parser, Subcommand};

use systems::{Id, Spec, System};
use workloads::{guard, Ingest};

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
        }) => sweep(&base, (per_thread / scale).max(1), 400 / scale, svg),
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
            let only = selection(&cli.only)?;
            compare(&base, &params, &only)
        }
    }
}

fn selection(only: &[String]) -> Result<Vec<&'static str>> {
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
            None => bail!("unknown workload {name:?}; known: {}", WORKLOADS.join(",")),
        }
    }
    Ok(picked)
}

// ---------------------------------------------------------------------------
// Tables

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    OpsPerSec,
    MegabytesPerSec,
    RecordsPerSec,
    Millis,
}

impl Unit {
    fn header(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::MegabytesPerSec => "MB/s",
            Unit::RecordsPerSec => "records/s",
            Unit::Millis => "ms",
        }
    }

    fn format(self, v: f64) -> String {
        match self {
            Unit::OpsPerSec | Unit::RecordsPerSec => thousands(v.round() as u64),
            Unit::MegabytesPerSec => format!("{v:.1}"),
            Unit::Millis => format!("{v:.1}"),
        }
    }

    /// The ratio column: ours/it for rates, ours' time / its time for `Millis`.
    fn ratio_header(self) -> &'static str {
        match self {
            Unit::Millis => "ours' time / its time",
            _ => "ours / it",
        }
    }

    fn better(self, a: f64, b: f64) -> bool {
        if self == Unit::Millis {
            a < b
        } else {
            a > b
        }
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

enum Cell {
    Value(f64),
    NotApplicable(String),
    Failed(String),
}

struct Row {
    id: Id,
    name: String,
    cell: Cell,
    note: String,
}

struct Table {
    id: &'static str,
    title: String,
    unit: Unit,
    rows: Vec<Row>,
}

impl Table {
    fn value(&self, id: Id) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| match r.cell {
                Cell::Value(v) => Some(v),
                _ => None,
            })
    }

    /// The best peer's figure (highest rate, or lowest time), with its name.
    fn best_peer(&self) -> Option<(&str, f64)> {
        let mut best: Option<(&str, f64)> = None;
        for row in self.rows.iter().filter(|r| r.id.is_peer()) {
            if let Cell::Value(v) = row.cell {
                if best.is_none_or(|(_, b)| self.unit.better(v, b)) {
                    best = Some((&row.name, v));
                }
            }
        }
        best
    }

    fn markdown(&self) -> String {
        let mut out = format!("### {}\n\n", self.title);
        let _ = writeln!(
            out,
            "| system | {} | {} | notes |\n|---|---:|---:|---|",
            self.unit.header(),
            self.unit.ratio_header()
        );
        let ours = self.value(Id::Ours);
        for row in &self.rows {
            let (figure, ratio) = match &row.cell {
                Cell::Value(v) => (
                    self.unit.format(*v),
                    ours.map_or("—".to_string(), |o| format!("{:.2}x", o / v)),
                ),
                Cell::NotApplicable(why) => (format!("n/a: {why}"), "—".to_string()),
                Cell::Failed(err) => (format!("**error**: {}", one_line(err)), "—".to_string()),
            };
            let _ = writeln!(out, "| {} | {figure} | {ratio} | {} |", row.name, row.note);
        }
        out
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '|'], " ")
}

// ---------------------------------------------------------------------------
// The comparison run

struct Run<'a> {
    base: &'a Path,
    only: &'a [&'static str],
    params: &'a Params,
    keys: Vec<Vec<u8>>,
    tables: Vec<Table>,
    /// Ours after W1's data: (index bytes, records, key bytes once).
    memory: Option<Result<(u64, u64, u64)>>,
    /// Ours in W4: fsyncs per durable append.
    w4_fsyncs_per_append: Option<f64>,
}

impl Run<'_> {
    fn wants(&self, id: &str) -> bool {
        self.only.contains(&id)
    }

    fn push(&mut self, table: &str, spec: &Spec, cell: Cell, note: String) {
        let line = match &cell {
            Cell::Value(v) => {
                let unit = self.table(table).map_or(Unit::OpsPerSec, |t| t.unit);
                format!("{} {}", unit.format(*v), unit.header())
            }
            Cell::NotApplicable(why) => format!("n/a ({why})"),
            Cell::Failed(err) => format!("ERROR: {}", one_line(err)),
        };
        eprintln!("  {table:<6} {:<36} {line} {note}", spec.name);
        if let Some(t) = self.tables.iter_mut().find(|t| t.id == table) {
            t.rows.push(Row {
                id: spec.id,
                name: spec.name.clone(),
                cell,
                note,
            });
        }
    }

    fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    fn tempdir(&self) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new()
            .prefix("nano-wal-compare-")
            .tempdir_in(self.base)?)
    }

    /// W1, then W5 on the same handle, then W6 (close and reopen) on the same data.
    /// Also records ours' index memory after W1's data. W1 runs (untimed for the
    /// report) whenever W5, W6 or MEM is asked for.
    fn keyed_chain(&mut self, spec: &Spec) {
        let w1 = Ingest {
            threads: 1,
            records: self.params.records,
            value_size: self.params.value,
            durable: false,
        };
        if let Err(why) = spec.nondurable {
            self.push("W1", spec, Cell::NotApplicable(why.into()), String::new());
            self.push("W5", spec, Cell::NotApplicable(why.into()), String::new());
            self.push("W6", spec, Cell::NotApplicable(why.into()), String::new());
            return;
        }
        let dir = match self.tempdir() {
            Ok(dir) => dir,
            Err(e) => return self.chain_failed(spec, &format!("temp dir: {e:#}")),
        };
        let loaded = guard(|| {
            let sys = (spec.open)(dir.path())?;
            let done = workloads::ingest(sys.as_ref(), &self.keys, &w1)?;
            let checked = workloads::verify(sys.as_ref(), &self.keys, &w1)?;
            Ok((sys, done, checked))
        });
        let sys = match loaded {
            Ok((sys, done, checked)) => {
                let ops = w1.records as f64 / done.elapsed.as_secs_f64();
                let note = format!("{:.2} s, {checked} keys verified", secs(done.elapsed));
                self.push("W1", spec, Cell::Value(ops), note);
                sys
            }
            Err(e) => return self.chain_failed(spec, &format!("{e:#}")),
        };

        if spec.id == Id::Ours && self.wants("MEM") {
            self.memory = Some(guard(|| self.memory_of(sys.as_ref(), w1.records)));
        }

        if let Err(why) = spec.read {
            self.push("W5", spec, Cell::NotApplicable(why.into()), String::new());
        } else {
            let n = self.params.w5_keys;
            let read = guard(|| workloads::read_keys(sys.as_ref(), &self.keys, n, w1.records));
            let (cell, note) = match read {
                Ok((records, elapsed)) => (
                    Cell::Value(records as f64 / elapsed.as_secs_f64()),
                    format!(
                        "{records} records of {n} keys in {:.3} s, counts verified",
                        secs(elapsed)
                    ),
                ),
                Err(e) => (Cell::Failed(format!("{e:#}")), String::new()),
            };
            self.push("W5", spec, cell, note);
        }

        let closed = guard(|| sys.close());
        if let Err(why) = spec.reopen {
            self.push("W6", spec, Cell::NotApplicable(why.into()), String::new());
        } else if let Err(e) = closed {
            self.push(
                "W6",
                spec,
                Cell::Failed(format!("close after W1: {e:#}")),
                String::new(),
            );
        } else {
            let reopened = guard(|| workloads::reopen(spec, dir.path(), &self.keys, w1.records));
            let (cell, note) = match reopened {
                Ok(elapsed) => (
                    Cell::Value(elapsed.as_secs_f64() * 1e3),
                    format!(
                        "{} records; key 0's count verified",
                        thousands(w1.records as u64)
                    ),
                ),
                Err(e) => (Cell::Failed(format!("{e:#}")), String::new()),
            };
            self.push("W6", spec, cell, note);
        }
    }

    fn chain_failed(&mut self, spec: &Spec, err: &str) {
        self.push("W1", spec, Cell::Failed(err.to_string()), String::new());
        let needs = format!("needs W1's data: {err}");
        self.push("W5", spec, Cell::Failed(needs.clone()), String::new());
        self.push("W6", spec, Cell::Failed(needs), String::new());
        if spec.id == Id::Ours {
            self.memory = Some(Err(anyhow::anyhow!("W1 failed: {err}")));
        }
    }

    fn memory_of(&self, sys: &dyn System, records: usize) -> Result<(u64, u64, u64)> {
        let Some(index) = sys.index_bytes()? else {
            bail!("no index figure");
        };
        let distinct = records.min(self.keys.len());
        let key_bytes: usize = self.keys[..distinct].iter().map(Vec::len).sum();
        Ok((index, records as u64, key_bytes as u64))
    }

    /// One ingest cell: fresh directory, open, ingest, verify, close.
    fn ingest_cell(&mut self, table: &str, spec: &Spec, w: &Ingest) -> Option<Ingested> {
        if let (false, Err(why)) = (w.durable, spec.nondurable) {
            self.push(table, spec, Cell::NotApplicable(why.into()), String::new());
            return None;
        }
        let unit = self.table(table).map_or(Unit::OpsPerSec, |t| t.unit);
        match guard(|| run_ingest(self.base, spec, &self.keys, w)) {
            Ok(done) => {
                let secs_taken = done.elapsed.as_secs_f64();
                let figure = match unit {
                    Unit::MegabytesPerSec => (w.records * w.value_size) as f64 / 1e6 / secs_taken,
                    _ => w.records as f64 / secs_taken,
                };
                let mut note = format!("{:.2} s, {} keys verified", secs_taken, done.checked);
                if let (true, Some(fsyncs)) = (w.durable, done.fsyncs) {
                    let per = fsyncs as f64 / w.records as f64;
                    let _ = write!(note, "; {per:.3} fsyncs/append ({fsyncs} fsyncs)");
                }
                self.push(table, spec, Cell::Value(figure), note);
                Some(done)
            }
            Err(e) => {
                self.push(table, spec, Cell::Failed(format!("{e:#}")), String::new());
                None
            }
        }
    }
}

struct Ingested {
    elapsed: Duration,
    fsyncs: Option<u64>,
    checked: usize,
}

fn run_ingest(base: &Path, spec: &Spec, keys: &[Vec<u8>], w: &Ingest) -> Result<Ingested> {
    let dir = tempfile::Builder::new()
        .prefix("nano-wal-compare-")
        .tempdir_in(base)?;
    let sys = (spec.open)(dir.path())?;
    let done = workloads::ingest(sys.as_ref(), keys, w)?;
    let checked = workloads::verify(sys.as_ref(), keys, w)?;
    sys.close()?;
    Ok(Ingested {
        elapsed: done.elapsed,
        fsyncs: done.fsyncs,
        checked,
    })
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn compare(base: &Path, p: &Params, only: &[&'static str]) -> Result<()> {
    let specs = systems::all();
    let n = |v: usize| thousands(v as u64);
    let titles: Vec<(&str, String, Unit)> = vec![
        ("W1", format!("W1: 1 thread, {} non-durable appends ({} B values, {} keys)", n(p.records), p.value, n(p.keys)), Unit::OpsPerSec),
        ("W2", format!("W2: {} threads sharing one handle, {} non-durable appends in total ({} B values)", p.w2_threads, n(p.records), p.value), Unit::OpsPerSec),
        ("W3", format!("W3: 1 thread, {} durable appends ({} B values)", n(p.w3_appends), p.value), Unit::OpsPerSec),
        ("W4", format!("W4: {} threads x {} durable appends ({} B values)", p.w4_threads, p.w4_per_thread, p.value), Unit::OpsPerSec),
        ("W5", format!("W5: read every record of {} keys after W1's data (records/s)", n(p.w5_keys)), Unit::RecordsPerSec),
        ("W6", "W6: reopen after W1's data, index rebuilt (time of the open call)".to_string(), Unit::Millis),
        ("W1-4K", format!("W1 with 4 KiB values: 1 thread, {} non-durable appends (MB/s = 10^6 value bytes/s)", n(p.big_records)), Unit::MegabytesPerSec),
        ("W2-4K", format!("W2 with 4 KiB values: {} threads, {} non-durable appends in total (MB/s)", p.w2_threads, n(p.big_records)), Unit::MegabytesPerSec),
    ];
    let mut run = Run {
        base,
        only,
        params: p,
        keys: workloads::make_keys(p.keys),
        tables: titles
            .into_iter()
            .filter(|(id, _, _)| only.contains(id))
            .map(|(id, title, unit)| Table {
                id,
                title,
                unit,
                rows: Vec::new(),
            })
            .collect(),
        memory: None,
        w4_fsyncs_per_append: None,
    };
    eprintln!("temp dirs under {}; progress:", base.display());
    if ["W1", "W5", "W6", "MEM"].iter().any(|w| only.contains(w)) {
        for spec in &specs {
            run.keyed_chain(spec);
        }
    }
    let ingests = [
        (
            "W2",
            Ingest {
                threads: p.w2_threads,
                records: p.records,
                value_size: p.value,
                durable: false,
            },
        ),
        (
            "W3",
            Ingest {
                threads: 1,
                records: p.w3_appends,
                value_size: p.value,
                durable: true,
            },
        ),
        (
            "W4",
            Ingest {
                threads: p.w4_threads,
                records: p.w4_threads * p.w4_per_thread,
                value_size: p.value,
                durable: true,
            },
        ),
        (
            "W1-4K",
            Ingest {
                threads: 1,
                records: p.big_records,
                value_size: p.big_value,
                durable: false,
            },
        ),
        (
            "W2-4K",
            Ingest {
                threads: p.w2_threads,
                records: p.big_records,
                value_size: p.big_value,
                durable: false,
            },
        ),
    ];
    for (id, w) in &ingests {
        if !only.contains(id) {
            continue;
        }
        for spec in &specs {
            let done = run.ingest_cell(id, spec, w);
            if let (
                &"W4",
                Id::Ours,
                Some(Ingested {
                    fsyncs: Some(f), ..
                }),
            ) = (id, spec.id, &done)
            {
                run.w4_fsyncs_per_append = Some(*f as f64 / w.records as f64);
            }
        }
    }

    println!("# nano-wal comparison\n");
    println!(
        "Systems: {}. {} cores; temp dirs under `{}`. One run per cell (the machine is noisy).\n",
        specs
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        base.display()
    );
    for table in &run.tables {
        println!("{}", table.markdown());
    }
    println!("{}", summary(&run));
    Ok(())
}

// ---------------------------------------------------------------------------
// Summary of the targets

struct Target {
    name: &'static str,
    measured: String,
    pass: Option<bool>,
}

/// Ours against the best peer of `table`: `ours / best` (time ratio for `Millis`).
fn against_best_peer(
    run: &Run,
    table: &str,
    name: &'static str,
    ok: impl Fn(f64) -> bool,
) -> Option<Target> {
    let t = run.table(table)?;
    Some(match (t.value(Id::Ours), t.best_peer()) {
        (Some(ours), Some((peer, best))) => Target {
            name,
            measured: format!(
                "{:.2}x (best peer: {peer}, {} {})",
                ours / best,
                t.unit.format(best),
                t.unit.header()
            ),
            pass: Some(ok(ours / best)),
        },
        (None, _) => missing(name, "ours has no figure"),
        (_, None) => missing(name, "no peer has a figure"),
    })
}

fn against(
    run: &Run,
    table: &str,
    other: Id,
    name: &'static str,
    ok: impl Fn(f64) -> bool,
) -> Option<Target> {
    let t = run.table(table)?;
    Some(match (t.value(Id::Ours), t.value(other)) {
        (Some(ours), Some(theirs)) => Target {
            name,
            measured: format!(
                "{:.2}x ({} vs {} {})",
                ours / theirs,
                t.unit.format(ours),
                t.unit.format(theirs),
                t.unit.header()
            ),
            pass: Some(ok(ours / theirs)),
        },
        _ => missing(name, "a figure is missing"),
    })
}

fn missing(name: &'static str, why: &str) -> Target {
    Target {
        name,
        measured: why.to_string(),
        pass: None,
    }
}

fn summary(run: &Run) -> String {
    let mut targets: Vec<Target> = [
        against_best_peer(run, "W1", "W1 >= 1.5x best peer ops/s", |r| r >= 1.5),
        against_best_peer(run, "W2", "W2 >= 2x best peer ops/s", |r| r >= 2.0),
        against(run, "W3", Id::OkayWal, "W3 >= 1.0x okaywal ops/s", |r| {
            r >= 1.0
        }),
        against(
            run,
            "W4",
            Id::OkayWal,
            "W4 >= 2x okaywal ops/s and <= 1 fsync per 8 durable appends",
            |r| r >= 2.0,
        ),
        against_best_peer(run, "W5", "W5 >= 2x best peer records/s", |r| r >= 2.0),
        against_best_peer(run, "W6", "W6 time <= 0.7x best peer's", |r| r <= 0.7),
        against(run, "W1-4K", Id::File, "4 KiB W1 >= 0.9x File MB/s", |r| {
            r >= 0.9
        }),
        against(run, "W2-4K", Id::File, "4 KiB W2 >= 0.7x File MB/s", |r| {
            r >= 0.7
        }),
    ]
    .into_iter()
    .flatten()
    .collect();

    // W4 also bounds fsyncs per durable append.
    if let Some(t) = targets.iter_mut().find(|t| t.name.starts_with("W4")) {
        match run.w4_fsyncs_per_append {
            Some(per) => {
                let _ = write!(
                    t.measured,
                    "; {per:.3} fsyncs/append (1 per {:.1})",
                    1.0 / per
                );
                t.pass = t.pass.map(|p| p && per <= 1.0 / 8.0);
            }
            None => {
                t.measured.push_str("; no fsync count");
                t.pass = None;
            }
        }
    }

    if run.wants("MEM") {
        let name = "index memory <= 32 B/record + each key's bytes once";
        targets.push(match &run.memory {
            None => missing(name, "not measured"),
            Some(Ok((index, records, key_bytes))) => {
                let limit = 32 * records + key_bytes;
                Target {
                    name,
                    measured: format!(
                        "{:.1} B/record ({} B for {} records; limit {:.1} B/record)",
                        *index as f64 / *records as f64,
                        thousands(*index),
                        thousands(*records),
                        limit as f64 / *records as f64
                    ),
                    pass: Some(*index <= limit),
                }
            }
            Some(Err(e)) => missing(name, &format!("{e:#}")),
        });
    }

    let mut out = String::from("### Targets\n\n| target | measured | result |\n|---|---|---|\n");
    for t in &targets {
        let result = match t.pass {
            Some(true) => "pass",
            Some(false) => "**FAIL**",
            None => "n/a",
        };
        let _ = writeln!(out, "| {} | {} | {result} |", t.name, one_line(&t.measured));
    }
    out.push_str(
        "\nPeers: nano-wal 0.5, nano-wal 1.0 and okaywal where they run (okaywal: durable only).\n",
    );
    out
}

// ---------------------------------------------------------------------------
// Durable appends against thread count

fn sweep(base: &Path, per_thread: usize, min_total: usize, svg: &Path) -> Result<()> {
    const THREADS: [usize; 5] = [1, 2, 4, 16, 64];
    let specs: Vec<Spec> = systems::all()
        .into_iter()
        .filter(|s| matches!(s.id, Id::Ours | Id::OkayWal | Id::File))
        .collect();
    let keys = workloads::make_keys(10_000);
    // results[system][point]: ops/s, or the error.
    let mut results: Vec<Vec<Result<f64, String>>> = vec![Vec::new(); specs.len()];
    let mut fsyncs: Vec<Option<f64>> = Vec::new();
    let mut totals = Vec::new();
    eprintln!("temp dirs under {}; progress:", base.display());
    for &threads in &THREADS {
        let per = per_thread.max(min_total.div_ceil(threads));
        let w = Ingest {
            threads,
            records: threads * per,
            value_size: 100,
            durable: true,
        };
        totals.push((threads, per));
        for (i, spec) in specs.iter().enumerate() {
            let done = guard(|| run_ingest(base, spec, &keys, &w)).map_err(|e| format!("{e:#}"));
            let ops = done
                .as_ref()
                .map(|d| w.records as f64 / d.elapsed.as_secs_f64());
            let shown = match &ops {
                Ok(v) => format!("{} ops/s", thousands(v.round() as u64)),
                Err(e) => format!("ERROR: {}", one_line(e)),
            };
            eprintln!(
                "  {threads:>2} threads x {per:<4} {:<36} {shown}",
                spec.name
            );
            if spec.id == Id::Ours {
                fsyncs.push(
                    done.as_ref()
                        .ok()
                        .and_then(|d| d.fsyncs)
                        .map(|f| f as f64 / w.records as f64),
                );
            }
            results[i].push(ops.map_err(Clone::clone));
        }
    }

    println!("### Durable appends against thread count (100 B values, fresh dir per point)\n");
    let mut header = String::from("| threads | appends |");
    let mut rule = String::from("|---:|---:|");
    for spec in &specs {
        let _ = write!(header, " {} ops/s |", spec.name);
        rule.push_str("---:|");
    }
    header.push_str(" ours / okaywal | ours fsyncs/append |");
    rule.push_str("---:|---:|");
    println!("{header}\n{rule}");
    let col = |id: Id| specs.iter().position(|s| s.id == id);
    for (point, (threads, per)) in totals.iter().enumerate() {
        let mut line = format!("| {threads} | {threads} x {per} |");
        for series in &results {
            match &series[point] {
                Ok(v) => {
                    let _ = write!(line, " {} |", thousands(v.round() as u64));
                }
                Err(e) => {
                    let _ = write!(line, " **error**: {} |", one_line(e));
                }
            }
        }
        let value = |id: Id| col(id).and_then(|c| results[c][point].as_ref().ok().copied());
        match (value(Id::Ours), value(Id::OkayWal)) {
            (Some(o), Some(k)) => {
                let _ = write!(line, " {:.2}x |", o / k);
            }
            _ => line.push_str(" — |"),
        }
        match fsyncs.get(point).copied().flatten() {
            Some(f) => {
                let _ = write!(line, " {f:.3} |");
            }
            None => line.push_str(" — |"),
        }
        println!("{line}");
    }

    let series: Vec<plot::Series> = specs
        .iter()
        .zip(&results)
        .map(|(spec, points)| plot::Series {
            name: spec.name.clone(),
            points: THREADS
                .iter()
                .zip(points)
                .filter_map(|(&t, r)| r.as_ref().ok().map(|&v| (t as f64, v)))
                .collect(),
        })
        .collect();
    let svg_text = plot::line_plot(
        "Durable appends (100 B values) against thread count",
        "threads",
        "durable appends/s (log scale)",
        &series,
    );
    std::fs::write(svg, svg_text)?;
    println!("\nPlot: {}", svg.display());
    Ok(())
}
