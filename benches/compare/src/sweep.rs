//! Durable appends against thread count, for ours, okaywal and the File baseline.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::plot;
use crate::run::run_ingest;
use crate::systems::{self, Id, Spec};
use crate::table::{one_line, thousands};
use crate::workloads::{self, guard, Ingest};

/// One system's result at one thread count: ops/s (or the error), fsyncs per append.
type Point = (Result<f64, String>, Option<f64>);

pub fn sweep(
    base: &Path,
    per_thread: usize,
    min_total: usize,
    rounds: usize,
    svg: &Path,
) -> Result<()> {
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
        // Best of `rounds` per system, each round starting with the next system.
        let mut best: Vec<Option<Point>> = vec![None; specs.len()];
        for round in 0..rounds.max(1) {
            for k in 0..specs.len() {
                let i = (k + round) % specs.len();
                let spec = &specs[i];
                let done =
                    guard(|| run_ingest(base, spec, &keys, &w)).map_err(|e| format!("{e:#}"));
                let ops = done
                    .as_ref()
                    .map(|d| w.records as f64 / d.elapsed.as_secs_f64())
                    .map_err(Clone::clone);
                let shown = match &ops {
                    Ok(v) => format!("{} ops/s", thousands(v.round() as u64)),
                    Err(e) => format!("ERROR: {}", one_line(e)),
                };
                eprintln!(
                    "  {threads:>2} threads x {per:<4} {:<36} {shown}",
                    spec.name
                );
                let per_append = done
                    .as_ref()
                    .ok()
                    .and_then(|d| d.fsyncs)
                    .map(|f| f as f64 / w.records as f64);
                let better = match (&best[i], &ops) {
                    (None, _) => true,
                    (Some((Ok(old), _)), Ok(new)) => new > old,
                    (Some((Err(_), _)), _) => true,
                    (Some((Ok(_), _)), Err(_)) => false,
                };
                if better {
                    best[i] = Some((ops, per_append));
                }
            }
        }
        for (i, spec) in specs.iter().enumerate() {
            let (ops, per_append) = best[i]
                .take()
                .unwrap_or_else(|| (Err("not run".to_string()), None));
            if spec.id == Id::Ours {
                fsyncs.push(per_append);
            }
            results[i].push(ops);
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
