//! Output: progress bars on long phases, a table for people, and one JSON
//! line per result for scripts (printed, and appended to `--json`).

use std::io::Write;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::cli::Common;

/// A bar for `len` steps of `what` (hidden when stderr is not a terminal).
pub fn bar(what: &str, len: u64, shown: bool) -> ProgressBar {
    if !shown {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// A spinner with a message, ticking by itself.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// One result: an ordered list of named values.
pub struct Result {
    bench: &'static str,
    fields: Vec<(&'static str, Value)>,
}

impl Result {
    /// A result of scenario `bench`.
    pub fn new(bench: &'static str) -> Self {
        Self {
            bench,
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    pub fn with(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// Adds a field if there is a value, e.g. the first error a run met.
    pub fn with_some(self, name: &'static str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(value) => self.with(name, value),
            None => self,
        }
    }

    /// Adds a number rounded to `digits` decimals.
    pub fn num(self, name: &'static str, value: f64, digits: i32) -> Self {
        let scale = 10f64.powi(digits);
        let rounded = (value * scale).round() / scale;
        self.with(name, rounded)
    }

    /// Prints the table and the JSON line; appends the line to `--json`.
    pub fn emit(self, common: &Common) -> anyhow::Result<()> {
        // Written by hand so the fields keep their order.
        let head = [
            ("bench", Value::from(self.bench)),
            ("label", Value::from(common.label.as_str())),
            ("case", Value::from(common.case.as_str())),
        ];
        let fields: Vec<String> = head
            .iter()
            .chain(self.fields.iter())
            .map(|(name, value)| format!("{}:{value}", Value::from(*name)))
            .collect();
        let line = format!("{{{}}}", fields.join(","));

        let width = self.fields.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        let mut out = std::io::stdout().lock();
        writeln!(out, "\n{} · {} {}", self.bench, common.label, common.case)?;
        for (name, value) in &self.fields {
            let shown = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            writeln!(out, "  {name:<width$}  {shown}")?;
        }
        writeln!(out, "{line}")?;
        if let Some(path) = &common.json {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(file, "{line}")?;
        }
        Ok(())
    }
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(micros: u64) -> f64 {
    micros as f64 / 1000.0
}
