//! Samples of the server: its RSS, open files, CPU time and /metrics every
//! few seconds, and the trend of a reading over the run.

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::http::{HttpConn, Request};
use crate::net::Endpoint;
use crate::procfs;
use crate::workers::unix_nanos;

/// One reading of the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Sample {
    /// Always `soak-sample`, so the line can be told from results.
    pub bench: String,
    /// When, Unix nanoseconds.
    pub unix_nanos: u64,
    /// Seconds since the first sample.
    pub t_s: f64,
    /// VmRSS, KiB.
    pub rss_kib: Option<u64>,
    /// Entries of /proc/<pid>/fd.
    pub fds: Option<u64>,
    /// CPU seconds so far.
    pub cpu_s: Option<f64>,
    /// `hearth_connections` from /metrics.
    pub connections: Option<f64>,
    /// `hearth_subscriptions` from /metrics.
    pub subscriptions: Option<f64>,
    /// `hearth_queue_drops_total` from /metrics.
    pub queue_drops: Option<f64>,
    /// `hearth_messages_stored_total` from /metrics.
    pub stored: Option<f64>,
    /// `hearth_sqlite_memory_bytes` from /metrics, KiB: the embedded
    /// database's share of the RSS.
    #[serde(default)]
    pub sqlite_kib: Option<f64>,
    /// `hearth_heap_bytes` from /metrics, KiB: what the Rust code holds,
    /// without what the allocator keeps for reuse.
    #[serde(default)]
    pub heap_kib: Option<f64>,
}

/// The value of metric `name` in Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, value) = l.split_once(char::is_whitespace)?;
        (n == name).then(|| value.trim().parse().ok())?
    })
}

async fn fetch_metrics(endpoint: &Endpoint) -> anyhow::Result<String> {
    let mut conn = HttpConn::connect(endpoint, endpoint.addr.ip()).await?;
    let response = conn
        .send(&Request {
            method: "GET",
            path: "/metrics",
            headers: &[],
            form: None,
        })
        .await?;
    if response.status != 200 {
        bail!("/metrics answered {}", response.status);
    }
    Ok(String::from_utf8_lossy(&response.body).into_owned())
}

/// Samples the server every `every` until `stop`; writes each sample to
/// `out` as a JSON line as it is taken.
pub(super) async fn sample_server(
    pid: u32,
    endpoint: Endpoint,
    every: Duration,
    out: Option<std::fs::File>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Sample> {
    let mut out = out;
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut warned = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let metrics = tokio::time::timeout(every, fetch_metrics(&endpoint)).await;
        let text = match metrics {
            Ok(Ok(text)) => text,
            other => {
                if !warned {
                    eprintln!("reading /metrics failed: {other:?}");
                    warned = true;
                }
                String::new()
            }
        };
        let now = unix_nanos();
        let first = samples.first().map_or(now, |s: &Sample| s.unix_nanos);
        let sample = Sample {
            bench: "soak-sample".into(),
            unix_nanos: now,
            t_s: (now - first) as f64 / 1e9,
            rss_kib: procfs::rss_kib(pid),
            fds: procfs::open_fds(pid),
            cpu_s: procfs::cpu_seconds(pid),
            connections: metric(&text, "hearth_connections"),
            subscriptions: metric(&text, "hearth_subscriptions"),
            queue_drops: metric(&text, "hearth_queue_drops_total"),
            stored: metric(&text, "hearth_messages_stored_total"),
            sqlite_kib: metric(&text, "hearth_sqlite_memory_bytes").map(|b| b / 1024.0),
            heap_kib: metric(&text, "hearth_heap_bytes").map(|b| b / 1024.0),
        };
        if let Some(file) = &mut out {
            let line = serde_json::to_string(&sample).expect("a sample serialises");
            if let Err(error) = writeln!(file, "{line}") {
                eprintln!("writing a sample: {error}");
                out = None;
            }
        }
        if sample.rss_kib.is_none() {
            eprintln!("the server (pid {pid}) is gone");
            samples.push(sample);
            break;
        }
        samples.push(sample);
    }
    samples
}

/// Figures of one reading over the steady part of the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Trend {
    /// The first and the last reading.
    pub start: f64,
    pub end: f64,
    pub min: f64,
    pub median: f64,
    pub max: f64,
    /// Means of the readings in the first and the last window.
    pub first_window: f64,
    pub last_window: f64,
    /// From the first window's mean to the last's, percent.
    pub growth_pct: f64,
    /// Least-squares slope, per hour.
    pub per_hour: f64,
}

/// The trend of `(seconds, value)` points, comparing the first and the last
/// `window` seconds (at most a third of the span each); `None` without points.
pub(super) fn trend(points: &[(f64, f64)], window: f64) -> Option<Trend> {
    let (&(t0, start), &(t1, end)) = (points.first()?, points.last()?);
    let window = window.min((t1 - t0) / 3.0);
    let mean = |inside: &dyn Fn(f64) -> bool| {
        let values: Vec<f64> = points
            .iter()
            .filter(|(t, _)| inside(*t))
            .map(|p| p.1)
            .collect();
        values.iter().sum::<f64>() / values.len().max(1) as f64
    };
    let first_window = mean(&|t| t <= t0 + window);
    let last_window = mean(&|t| t >= t1 - window);
    let mut sorted: Vec<f64> = points.iter().map(|p| p.1).collect();
    sorted.sort_by(f64::total_cmp);
    let n = points.len() as f64;
    let (mt, mv) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let (cov, var) = points.iter().fold((0.0, 0.0), |(c, v), &(t, x)| {
        (c + (t - mt) * (x - mv), v + (t - mt) * (t - mt))
    });
    Some(Trend {
        start,
        end,
        min: sorted[0],
        median: sorted[sorted.len() / 2],
        max: sorted[sorted.len() - 1],
        first_window,
        last_window,
        growth_pct: if first_window > 0.0 {
            100.0 * (last_window - first_window) / first_window
        } else {
            0.0
        },
        per_hour: if var > 0.0 { cov / var * 3600.0 } else { 0.0 },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_from_prometheus_text() {
        let text = "# HELP hearth_connections Open.\n# TYPE hearth_connections gauge\nhearth_connections 5003\nhearth_connections_total 9\nhearth_queue_drops_total 0\n";
        assert_eq!(metric(text, "hearth_connections"), Some(5003.0));
        assert_eq!(metric(text, "hearth_queue_drops_total"), Some(0.0));
        assert_eq!(metric(text, "hearth_missing"), None);
    }

    #[test]
    fn a_trend_compares_the_first_and_last_windows() {
        // Flat at 100 for 10 minutes, then 110 for the last 5.
        let mut points: Vec<(f64, f64)> = (0..60).map(|i| (i as f64 * 10.0, 100.0)).collect();
        points.extend((60..90).map(|i| (i as f64 * 10.0, 110.0)));
        let t = trend(&points, 300.0).unwrap();
        assert_eq!((t.start, t.end, t.min, t.max), (100.0, 110.0, 100.0, 110.0));
        assert_eq!(t.median, 100.0);
        assert_eq!(t.first_window, 100.0);
        assert_eq!(t.last_window, 110.0);
        assert!((t.growth_pct - 10.0).abs() < 1e-9);
        assert!(t.per_hour > 0.0);
        // A short run compares thirds.
        let short = [(0.0, 1.0), (10.0, 1.0), (20.0, 1.0), (30.0, 4.0)];
        let t = trend(&short, 300.0).unwrap();
        assert_eq!((t.first_window, t.last_window), (1.0, 2.5));
        assert!(trend(&[], 300.0).is_none());
    }
}
