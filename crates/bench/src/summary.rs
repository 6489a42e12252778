//! `summary`: the side-by-side table of a `bench/run.sh` results file, with
//! the ratios of the server under test to the others and its targets.

use serde_json::Value;

use crate::cli::SummaryArgs;
use Better::{Higher, Lower};

/// The servers compared, in column order.
const PEERS: &[&str] = &["reference", "rails", "baseline"];

/// Which way is better.
#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
}

impl Better {
    /// Whether `value` is as good as `goal` or better.
    fn meets(self, value: f64, goal: f64) -> bool {
        match self {
            Higher => value >= goal,
            Lower => value <= goal,
        }
    }
}

/// What a target compares with.
#[derive(Clone, Copy)]
enum Target {
    /// At most (lower) or at least (higher) this absolute value.
    Absolute(f64),
    /// This many times the peer's value (≥ for higher, ≤ for lower).
    Times(&'static str, f64),
}

/// One row: which results it reads.
struct Row {
    title: &'static str,
    bench: &'static str,
    case: &'static str,
    /// For stepped results (idle), the client count of the step.
    clients: Option<u64>,
    field: &'static str,
    better: Better,
    targets: &'static [Target],
}

impl Row {
    /// A row of `field` in the results of `bench` and `case`.
    const fn new(
        title: &'static str,
        bench: &'static str,
        case: &'static str,
        field: &'static str,
        better: Better,
    ) -> Self {
        Self {
            title,
            bench,
            case,
            clients: None,
            field,
            better,
            targets: &[],
        }
    }

    /// Reads only the step with this many clients.
    const fn at(self, clients: u64) -> Self {
        Self {
            clients: Some(clients),
            ..self
        }
    }

    /// The targets the subject is held to.
    const fn goals(self, targets: &'static [Target]) -> Self {
        Self { targets, ..self }
    }
}

/// Fan-out's targets: near the reference, far ahead of Rails.
const FANOUT_GOALS: &[Target] = &[
    Target::Times("reference", 0.8),
    Target::Times("rails", 100.0),
];

#[rustfmt::skip] // a table: one row a line
const ROWS: &[Row] = &[
    Row::new("idle KiB RSS / connection, 1k", "idle", "idle", "kib_per_conn", Lower).at(1000),
    Row::new("idle KiB RSS / connection, 5k", "idle", "idle", "kib_per_conn", Lower).at(5000),
    Row::new("idle KiB RSS / connection, 10k", "idle", "idle", "kib_per_conn", Lower).at(10000),
    Row::new("idle KiB RSS / connection, 19k", "idle", "idle", "kib_per_conn", Lower).at(19000).goals(&[Target::Absolute(8.0)]),
    Row::new("idle slope KiB / connection, 10k→19k", "idle", "idle", "slope_kib_per_conn", Lower).at(19000),
    Row::new("fan-out deliveries/s, 1k subscribers", "fanout", "fanout-1k", "deliveries_per_s", Higher).goals(FANOUT_GOALS),
    Row::new("fan-out deliveries/s, 10k subscribers", "fanout", "fanout-10k", "deliveries_per_s", Higher).goals(FANOUT_GOALS),
    Row::new("server CPU µs per delivery, 1k subscribers", "fanout", "fanout-1k", "server_us_per_delivery", Lower),
    Row::new("server CPU µs per delivery, 10k subscribers", "fanout", "fanout-10k", "server_us_per_delivery", Lower),
    Row::new("client CPU µs per delivery, 10k subscribers", "fanout", "fanout-10k", "client_us_per_delivery", Lower),
    Row::new("p99 ms, 1k subscribers, 100 msg/s spoken", "fanout", "latency-1k", "p99_ms", Lower).goals(&[Target::Times("reference", 2.0)]),
    Row::new("HTTP post → all p99 ms, 1k subscribers", "fanout", "http-1k", "p99_ms", Lower).goals(&[Target::Absolute(10.0)]),
    Row::new("connects/s at 500 in flight (welcome + confirm)", "connect", "connect", "connects_per_s", Higher).goals(&[Target::Absolute(20_000.0)]),
    Row::new("connects/s at 100 in flight", "connect", "connect-100", "connects_per_s", Higher),
    Row::new("messages/s, 100 concurrent speakers", "post", "speak-100", "messages_per_s", Higher).goals(&[Target::Absolute(20_000.0)]),
    Row::new("messages/s, 100 HTTP writers", "post", "post-100", "messages_per_s", Higher),
    Row::new("websocket-bench RTT p95 ms, 5k clients", "rtt", "rtt", "p95_ms", Lower).at(5000),
];

/// Prints the table as Markdown.
pub fn print(args: &SummaryArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)?;
    let results: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    print!("{}", table(&results, &args.subject));
    Ok(())
}

fn find(results: &[Value], row: &Row, label: &str) -> Option<f64> {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    results
        .iter()
        .rev()
        .filter(|r| s(r, "bench").as_deref() == Some(row.bench))
        .filter(|r| s(r, "case").as_deref() == Some(row.case))
        .filter(|r| s(r, "label").as_deref() == Some(label))
        .filter(|r| {
            row.clients.is_none() || r.get("clients").and_then(Value::as_u64) == row.clients
        })
        .find_map(|r| r.get(row.field).and_then(Value::as_f64))
}

fn show(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.2}"),
    }
}

fn table(results: &[Value], subject: &str) -> String {
    let mut out = format!(
        "| measure | {subject} | {} | {subject}/reference | {subject}/rails | target | met |\n",
        PEERS.join(" | ")
    );
    out.push_str(&"|---".repeat(PEERS.len() + 6));
    out.push_str("|\n");
    for row in ROWS {
        let mine = find(results, row, subject);
        let peers: Vec<Option<f64>> = PEERS.iter().map(|p| find(results, row, p)).collect();
        let ratio = |peer: &str| -> Option<f64> {
            let (mine, other) = (mine?, find(results, row, peer)?);
            (other != 0.0).then(|| mine / other)
        };
        let ratio_text = |peer| match ratio(peer) {
            Some(r) if r >= 10.0 => format!("{r:.0}×"),
            Some(r) => format!("{r:.2}×"),
            None => "–".into(),
        };
        let mut goals = Vec::new();
        let mut met = Vec::new();
        let sign = match row.better {
            Higher => "≥",
            Lower => "≤",
        };
        for target in row.targets {
            let (goal, ok) = match *target {
                Target::Absolute(v) => (
                    format!("{sign} {}", show(Some(v))),
                    mine.map(|m| row.better.meets(m, v)),
                ),
                Target::Times(peer, k) => (
                    format!("{sign} {k}× {peer}"),
                    ratio(peer).map(|r| row.better.meets(r, k)),
                ),
            };
            goals.push(goal);
            met.push(match ok {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "?",
            });
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            row.title,
            show(mine),
            peers
                .iter()
                .map(|&p| show(p))
                .collect::<Vec<_>>()
                .join(" | "),
            ratio_text("reference"),
            ratio_text("rails"),
            goals.join(", "),
            met.join(", "),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_and_targets_come_from_matching_results() {
        let lines = [
            r#"{"bench":"fanout","label":"hearth","case":"fanout-1k","deliveries_per_s":900000}"#,
            r#"{"bench":"fanout","label":"reference","case":"fanout-1k","deliveries_per_s":1000000}"#,
            r#"{"bench":"fanout","label":"rails","case":"fanout-1k","deliveries_per_s":20000}"#,
            r#"{"bench":"idle","label":"hearth","case":"idle","clients":19000,"kib_per_conn":9.5}"#,
        ];
        let results: Vec<Value> = lines
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let t = table(&results, "hearth");
        let fanout = t.lines().find(|l| l.contains("1k subscribers |")).unwrap();
        assert!(fanout.contains("| 0.90× | 45× |"), "{fanout}");
        assert!(fanout.contains("| yes, **no** |"), "{fanout}");
        let idle = t.lines().find(|l| l.contains("connection, 19k")).unwrap();
        assert!(
            idle.contains("| 9.50 |") && idle.contains("**no**"),
            "{idle}"
        );
    }
}
