//! Markdown tables: one row per system, a figure, ours' ratio to it, notes.

use std::fmt::Write as _;

use crate::systems::Id;

#[derive(Clone, Copy, PartialEq)]
pub enum Unit {
    OpsPerSec,
    MegabytesPerSec,
    RecordsPerSec,
    Millis,
}

impl Unit {
    pub fn header(self) -> &'static str {
        match self {
            Unit::OpsPerSec => "ops/s",
            Unit::MegabytesPerSec => "MB/s",
            Unit::RecordsPerSec => "records/s",
            Unit::Millis => "ms",
        }
    }

    pub fn format(self, v: f64) -> String {
        match self {
            Unit::OpsPerSec | Unit::RecordsPerSec => thousands(v.round() as u64),
            Unit::MegabytesPerSec => format!("{v:.1}"),
            Unit::Millis => format!("{v:.1}"),
        }
    }

    /// The ratio column: ours/it for rates, ours' time / its time for `Millis`.
    pub fn ratio_header(self) -> &'static str {
        match self {
            Unit::Millis => "ours' time / its time",
            _ => "ours / it",
        }
    }

    pub fn better(self, a: f64, b: f64) -> bool {
        if self == Unit::Millis {
            a < b
        } else {
            a > b
        }
    }
}

pub fn thousands(n: u64) -> String {
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

pub enum Cell {
    Value(f64),
    NotApplicable(String),
    Failed(String),
}

pub struct Row {
    pub id: Id,
    pub name: String,
    pub cell: Cell,
    pub note: String,
}

pub struct Table {
    pub id: &'static str,
    pub title: String,
    pub unit: Unit,
    pub rows: Vec<Row>,
}

impl Table {
    pub fn new(id: &'static str, unit: Unit, title: String) -> Self {
        Table {
            id,
            title,
            unit,
            rows: Vec::new(),
        }
    }

    pub fn value(&self, id: Id) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.id == id)
            .and_then(|r| match r.cell {
                Cell::Value(v) => Some(v),
                _ => None,
            })
    }

    /// The best peer's figure (highest rate, or lowest time), with its name.
    pub fn best_peer(&self) -> Option<(&str, f64)> {
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

    pub fn markdown(&self) -> String {
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

pub fn one_line(s: &str) -> String {
    s.replace(['\n', '|'], " ")
}
