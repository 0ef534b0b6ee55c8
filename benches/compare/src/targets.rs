//! The summary of the targets, computed from the tables of the same run.

use std::fmt::Write as _;

use crate::run::Run;
use crate::systems::Id;
use crate::table::{one_line, thousands};

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
        (Some(ours), Some(theirs)) => {
            let mut measured = format!(
                "{:.2}x ({} vs {} {})",
                ours / theirs,
                t.unit.format(ours),
                t.unit.format(theirs),
                t.unit.header()
            );
            let ratios = t.paired_ratios(other);
            if ratios.len() > 1 {
                let _ = write!(
                    measured,
                    "; round by round: median {:.2}x ({:.2}-{:.2}x, {} rounds)",
                    median(&ratios),
                    ratios[0],
                    ratios[ratios.len() - 1],
                    ratios.len()
                );
            }
            Target {
                name,
                measured,
                pass: Some(ok(ours / theirs)),
            }
        }
        _ => missing(name, "a figure is missing"),
    })
}

/// The median of sorted, non-empty `v`.
fn median(v: &[f64]) -> f64 {
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn missing(name: &'static str, why: &str) -> Target {
    Target {
        name,
        measured: why.to_string(),
        pass: None,
    }
}

pub fn summary(run: &Run) -> String {
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

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_lengths() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), 3.0);
    }
}
