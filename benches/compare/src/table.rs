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
    /// Each system's best figure over the rounds.
    pub rows: Vec<Row>,
    /// Every figure in the order measured, `None` for a round that had none.
    pub rounds: Vec<(Id, Option<f64>)>,
}

impl Table {
    pub fn new(id: &'static str, unit: Unit, title: String) -> Self {
        Table {
            id,
            title,
            unit,
            rows: Vec::new(),
            rounds: Vec::new(),
        }
    }

    /// `id`'s figure in each round, in order.
    pub fn per_round(&self, id: Id) -> Vec<Option<f64>> {
        self.rounds
            .iter()
            .filter(|(i, _)| *i == id)
            .map(|(_, v)| *v)
            .collect()
    }

    /// `ours / other` within each round in which both have a figure (the systems
    /// take turns, so the two ran minutes apart at most), sorted.
    pub fn paired_ratios(&self, other: Id) -> Vec<f64> {
        let theirs = self.per_round(other);
        let mut ratios: Vec<f64> = self
            .per_round(Id::Ours)
            .into_iter()
            .zip(theirs)
            .filter_map(|pair| match pair {
                (Some(a), Some(b)) if b > 0.0 => Some(a / b),
                _ => None,
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        ratios
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_pair_rounds_in_order_and_skip_rounds_without_both_figures() {
        let mut t = Table::new("W3", Unit::OpsPerSec, String::new());
        t.rounds = vec![
            (Id::Ours, Some(100.0)),
            (Id::OkayWal, Some(50.0)),
            (Id::OkayWal, Some(200.0)),
            (Id::Ours, None),
            (Id::Ours, Some(90.0)),
            (Id::File, Some(1.0)),
            (Id::OkayWal, Some(100.0)),
        ];
        assert_eq!(t.per_round(Id::Ours), vec![Some(100.0), None, Some(90.0)]);
        assert_eq!(t.paired_ratios(Id::OkayWal), vec![0.9, 2.0]);
    }
}
