//! The comparison run: every workload on every system, results into tables.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};

use crate::systems::{Id, Spec, System};
use crate::table::{one_line, thousands, Cell, Row, Table, Unit};
use crate::workloads::{self, guard, Ingest};
use crate::Params;

pub struct Run<'a> {
    base: &'a Path,
    only: &'a [&'static str],
    params: &'a Params,
    keys: Vec<Vec<u8>>,
    pub tables: Vec<Table>,
    /// Ours after W1's data: (index bytes, records, key bytes once).
    pub memory: Option<Result<(u64, u64, u64)>>,
    /// Ours in W4: fsyncs per durable append.
    pub w4_fsyncs_per_append: Option<f64>,
}

impl<'a> Run<'a> {
    pub fn new(
        base: &'a Path,
        only: &'a [&'static str],
        params: &'a Params,
        tables: Vec<Table>,
    ) -> Self {
        Run {
            base,
            only,
            params,
            keys: workloads::make_keys(params.keys),
            tables,
            memory: None,
            w4_fsyncs_per_append: None,
        }
    }

    pub fn wants(&self, id: &str) -> bool {
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
            let figure = match cell {
                Cell::Value(v) => Some(v),
                _ => None,
            };
            t.rounds.push((spec.id, figure));
            let row = Row {
                id: spec.id,
                name: spec.name.clone(),
                cell,
                note,
            };
            // Several rounds: keep each system's best figure (lowest for times).
            let lower_is_better = t.unit == Unit::Millis;
            match t.rows.iter_mut().find(|r| r.id == spec.id) {
                None => t.rows.push(row),
                Some(old) => {
                    let better = match (&old.cell, &row.cell) {
                        (Cell::Value(a), Cell::Value(b)) => {
                            if lower_is_better {
                                b < a
                            } else {
                                b > a
                            }
                        }
                        (Cell::Value(_), _) => false,
                        _ => true,
                    };
                    if better {
                        *old = row;
                    }
                }
            }
        }
    }

    pub fn table(&self, id: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.id == id)
    }

    /// W1, then W5 on the same handle, then W6 (close and reopen) on the same data.
    /// Also records ours' index memory after W1's data. W1 runs (untimed for the
    /// report) whenever W5, W6 or MEM is asked for.
    pub fn keyed_chain(&mut self, spec: &Spec) {
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
        let dir = match tempdir(self.base) {
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
                let note = format!(
                    "{:.2} s, {checked} keys verified",
                    done.elapsed.as_secs_f64()
                );
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
                        elapsed.as_secs_f64()
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
            let reopen =
                |open| guard(|| workloads::reopen(open, dir.path(), &self.keys, w1.records));
            let (cell, note) = match reopen(spec.open) {
                Ok((elapsed, said)) => {
                    let mut note = format!(
                        "{} records; key 0's count verified",
                        thousands(w1.records as u64)
                    );
                    if let Some(said) = said {
                        let _ = write!(note, "; {said}");
                    }
                    if let Some(open) = spec.open_scanning {
                        let _ = match reopen(open) {
                            Ok((scan, said)) => write!(
                                note,
                                "; without the checkpoint, scanning every record: {:.1} ms ({})",
                                scan.as_secs_f64() * 1e3,
                                said.unwrap_or_default()
                            ),
                            Err(e) => write!(note, "; scanning reopen failed: {e:#}"),
                        };
                    }
                    (Cell::Value(elapsed.as_secs_f64() * 1e3), note)
                }
                Err(e) => (Cell::Failed(format!("{e:#}")), String::new()),
            };
            self.push("W6", spec, cell, note);
        }
    }

    fn chain_failed(&mut self, spec: &Spec, err: &str) {
        self.push("W1", spec, Cell::Failed(err.to_string()), String::new());
        let needs = format!("needs W1's data: {err}");
        for (table, support) in [("W5", spec.read), ("W6", spec.reopen)] {
            let cell = match support {
                Ok(()) => Cell::Failed(needs.clone()),
                Err(why) => Cell::NotApplicable(why.into()),
            };
            self.push(table, spec, cell, String::new());
        }
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
    pub fn ingest_cell(&mut self, table: &str, spec: &Spec, w: &Ingest) {
        if let (false, Err(why)) = (w.durable, spec.nondurable) {
            self.push(table, spec, Cell::NotApplicable(why.into()), String::new());
            return;
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
                    if table == "W4" && spec.id == Id::Ours {
                        // Over several rounds, report the worst (most fsyncs).
                        let worst = self.w4_fsyncs_per_append.map_or(per, |w: f64| w.max(per));
                        self.w4_fsyncs_per_append = Some(worst);
                    }
                    let _ = write!(note, "; {per:.3} fsyncs/append ({fsyncs} fsyncs)");
                }
                self.push(table, spec, Cell::Value(figure), note);
            }
            Err(e) => self.push(table, spec, Cell::Failed(format!("{e:#}")), String::new()),
        }
    }
}

/// One finished ingest cell.
pub struct Ingested {
    pub elapsed: Duration,
    pub fsyncs: Option<u64>,
    pub checked: usize,
}

/// Fresh directory, open, ingest (timed), verify, close.
pub fn run_ingest(base: &Path, spec: &Spec, keys: &[Vec<u8>], w: &Ingest) -> Result<Ingested> {
    let dir = tempdir(base)?;
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

/// A fresh directory under `base`, removed when dropped.
fn tempdir(base: &Path) -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("nano-wal-compare-")
        .tempdir_in(base)?)
}
