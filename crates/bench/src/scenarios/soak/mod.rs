//! `soak`: N subscribers held in one room for a long time while clients
//! churn (disconnect, reconnect, resubscribe, `catch_up`) and a steady stream
//! is published. The server's RSS, open files and /metrics are sampled every
//! few seconds. At the end every client must hold every message exactly
//! once, in `seq` order, and memory and open files must not have grown.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::join_all;
use crate::cable::{CableTarget, Ws};
use crate::cli::{SoakArgs, Via};
use crate::hearth;
use crate::http::{HttpConn, Request};
use crate::net::Endpoint;
use crate::procfs;
use crate::protocol::{self, Marker, ServerFrame};
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::Histogram;
use crate::workers::{self, Coord, unix_nanos};

/// How long a clean close waits for the server's answering close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long a client waits before trying a failed reconnect again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

// ---------------------------------------------------------------------------
// One client's transcript

/// What one client received, accounted as a chat client shows it.
///
/// The client keeps a position: the last `seq` it has shown, in order. A
/// frame one past the position is shown; a frame further ahead waits until
/// the ones before it arrive. After each (re)subscription the client asks
/// `catch_up` for everything after its position. Live frames arrive
/// meanwhile, so a `seq` may come twice in one subscription, once replayed
/// and once live: that second copy is *overlap*, skipped by `seq`. Any other
/// repeat is a *duplicate*.
#[derive(Debug)]
pub struct Transcript {
    position: u64,
    /// Frames received ahead of a missing `seq`, waiting for it.
    early: BTreeSet<u64>,
    sub: Subscription,
    tally: TranscriptTally,
}

/// The current subscription's catch-up.
#[derive(Debug)]
struct Subscription {
    /// The position when it began: what `catch_up` was first asked after.
    after: u64,
    /// `catch_up` asked and its final `caught_up` (`more: false`) not read yet.
    catching_up: bool,
    /// The final `caught_up`'s `last_seq`: nothing above it is replayed.
    replayed_to: u64,
    /// Copies received of `seq` `after + 1 + i`, for the `seq`s a replay may
    /// have covered (everything during the catch-up, then up to `replayed_to`).
    copies: Vec<u8>,
}

impl Subscription {
    fn settled(position: u64) -> Self {
        Self {
            after: position,
            catching_up: false,
            replayed_to: position,
            copies: Vec::new(),
        }
    }

    /// Counts one receipt of `seq`; its copies so far, if a replay may cover it.
    fn count(&mut self, seq: u64) -> Option<u8> {
        if seq <= self.after || (!self.catching_up && seq > self.replayed_to) {
            return None;
        }
        let i = (seq - self.after - 1) as usize;
        if self.copies.len() <= i {
            self.copies.resize(i + 1, 0);
        }
        self.copies[i] = self.copies[i].saturating_add(1);
        Some(self.copies[i])
    }
}

/// How one client's (or all clients') receipts went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TranscriptTally {
    /// Messages shown, each `seq` once and in order.
    pub shown: u64,
    /// Second copies of a `seq` in one subscription, replayed and live.
    pub overlap: u64,
    /// Any other repeat.
    pub duplicates: u64,
    /// Live frames that came ahead of a missing `seq` while no catch-up was
    /// pending: a gap in the live stream (filled later only by a catch-up).
    pub out_of_order: u64,
    /// `seq`s up to the last stored that never arrived.
    pub missing: u64,
    /// Clients that ended with something missing.
    pub incomplete_clients: u64,
}

impl TranscriptTally {
    /// Adds another tally.
    pub fn add(&mut self, other: &TranscriptTally) {
        self.shown += other.shown;
        self.overlap += other.overlap;
        self.duplicates += other.duplicates;
        self.out_of_order += other.out_of_order;
        self.missing += other.missing;
        self.incomplete_clients += other.incomplete_clients;
    }
}

impl Transcript {
    /// A client subscribed when the room's last `seq` was `position`.
    pub fn new(position: u64) -> Self {
        Self {
            position,
            early: BTreeSet::new(),
            sub: Subscription::settled(position),
            tally: TranscriptTally::default(),
        }
    }

    /// The last `seq` shown.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether a catch-up is under way.
    pub fn catching_up(&self) -> bool {
        self.sub.catching_up
    }

    /// A new subscription is confirmed; returns the `after` to ask `catch_up`
    /// for. Frames held early are dropped: the catch-up sends them again.
    pub fn resubscribed(&mut self) -> u64 {
        self.early.clear();
        self.sub = Subscription {
            catching_up: true,
            ..Subscription::settled(self.position)
        };
        self.position
    }

    /// A message frame of room `seq` arrived.
    pub fn receive(&mut self, seq: u64) {
        let copies = self.sub.count(seq);
        if seq <= self.position || self.early.contains(&seq) {
            match copies {
                Some(2) => self.tally.overlap += 1,
                _ => self.tally.duplicates += 1,
            }
            return;
        }
        if seq == self.position + 1 {
            self.position = seq;
            self.tally.shown += 1;
            while self.early.remove(&(self.position + 1)) {
                self.position += 1;
                self.tally.shown += 1;
            }
        } else {
            if !self.sub.catching_up {
                self.tally.out_of_order += 1;
            }
            self.early.insert(seq);
        }
    }

    /// `{"type":"caught_up","last_seq":…,"more":…}` arrived; returns the
    /// `after` to ask again with while `more`.
    pub fn caught_up(&mut self, last_seq: u64, more: bool) -> Option<u64> {
        if more {
            return Some(last_seq);
        }
        let sub = &mut self.sub;
        sub.catching_up = false;
        sub.replayed_to = last_seq.max(sub.after);
        // Two copies above what the replay covered were both live: a
        // duplicate, though it looked like overlap when it came.
        let covered = (sub.replayed_to - sub.after) as usize;
        for &copies in sub.copies.iter().skip(covered) {
            if copies >= 2 {
                self.tally.overlap -= 1;
                self.tally.duplicates += 1;
            }
        }
        sub.copies.truncate(covered);
        None
    }

    /// The tally once the room's last `seq` is `last`.
    pub fn finish(mut self, last: u64) -> TranscriptTally {
        let waiting = if last > self.position {
            self.early.range(self.position + 1..=last).count() as u64
        } else {
            0
        };
        self.tally.missing = last.saturating_sub(self.position) - waiting;
        self.tally.incomplete_clients = u64::from(self.tally.missing > 0);
        self.tally
    }
}

// ---------------------------------------------------------------------------
// Samples of the server

/// One reading of the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sample {
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
pub fn metric(text: &str, name: &str) -> Option<f64> {
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
async fn sample_server(
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
pub struct Trend {
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
pub fn trend(points: &[(f64, f64)], window: f64) -> Option<Trend> {
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

// ---------------------------------------------------------------------------
// The scenario

/// One process's share of the outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    subscribed: u64,
    connect_failures: u64,
    first_error: Option<String>,
    tally: TranscriptTally,
    /// Disconnect-and-reconnect cycles the churn asked for.
    churned: u64,
    /// Of those, with a close frame first (the others vanish: RST).
    clean_closes: u64,
    /// Reconnects that worked, and attempts that failed.
    reconnects: u64,
    reconnect_failures: u64,
    first_reconnect_error: Option<String>,
    /// Connections the server ended (`too_slow`, closes), and the first reason.
    server_drops: u64,
    first_drop_reason: Option<String>,
    /// `{"type":"error"}` answers, and the first.
    error_frames: u64,
    first_error_frame: Option<String>,
    /// `catch_up` requests sent (pages included).
    catch_up_requests: u64,
    /// TCP connect to confirmed subscription, µs, of each reconnect.
    reconnect_latency: Histogram,
    /// Confirmed subscription to the final `caught_up`, µs.
    catch_up_latency: Histogram,
    /// The room's last `seq` before the run and after publishing stopped.
    base_seq: u64,
    final_seq: u64,
    published: Option<Published>,
}

/// What the publisher did (first process only).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Published {
    /// Posts answered 201, or speak frames written.
    sent: u64,
    /// Posts answered otherwise or not at all, speaks not written, error replies.
    failed: u64,
    first_failure: Option<String>,
    /// How long each HTTP post took to be answered, µs.
    post_latency: Histogram,
}

/// Counters the client tasks of one process share.
#[derive(Default)]
struct Counters {
    churned: AtomicU64,
    clean_closes: AtomicU64,
    reconnects: AtomicU64,
    reconnect_failures: AtomicU64,
    server_drops: AtomicU64,
    error_frames: AtomicU64,
    catch_up_requests: AtomicU64,
    first: std::sync::Mutex<Firsts>,
}

#[derive(Default)]
struct Firsts {
    reconnect_error: Option<String>,
    drop_reason: Option<String>,
    error_frame: Option<String>,
    reconnect_latency: Histogram,
    catch_up_latency: Histogram,
}

/// What every client task needs to reconnect.
struct Kit {
    cable: CableTarget,
    identifier: String,
    connect_timeout: Duration,
    counters: Counters,
}

/// Runs the scenario (on the leader, or spread over workers) and reports.
pub async fn run(ctx: Ctx, args: SoakArgs) -> anyhow::Result<()> {
    let Some(pid) = ctx.common.pid else {
        bail!("soak samples the server's memory and open files: give its process id with --pid");
    };
    if args.via == Via::Http && ctx.setup.cookies.is_empty() {
        bail!("--via http posts to Hearth and needs signed-in users (--app hearth)");
    }
    // The leader samples the server while the clients (here or in workers) run.
    let (stop_sampling, sampling) = watch::channel(false);
    let sampler = match ctx.common.worker_index {
        Some(_) => None,
        None => {
            let out = match &args.samples {
                Some(path) => Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .with_context(|| format!("opening {}", path.display()))?,
                ),
                None => None,
            };
            Some(tokio::spawn(sample_server(
                pid,
                ctx.endpoint.clone(),
                Duration::from_secs_f64(args.sample_every.max(0.5)),
                out,
                sampling,
            )))
        }
    };
    let outcome = ctx.drive(|coord| work(&ctx, &args, coord)).await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let _ = stop_sampling.send(true);
    let samples = match sampler {
        Some(task) => task.await?,
        None => Vec::new(),
    };
    report_outcome(&ctx, &args, &outcome, &samples)
}

fn report_outcome(
    ctx: &Ctx,
    args: &SoakArgs,
    outcome: &workers::Outcome<Partial>,
    samples: &[Sample],
) -> anyhow::Result<()> {
    let mut total = Partial::default();
    for p in &outcome.partials {
        total.subscribed += p.subscribed;
        total.connect_failures += p.connect_failures;
        total.tally.add(&p.tally);
        total.churned += p.churned;
        total.clean_closes += p.clean_closes;
        total.reconnects += p.reconnects;
        total.reconnect_failures += p.reconnect_failures;
        total.server_drops += p.server_drops;
        total.error_frames += p.error_frames;
        total.catch_up_requests += p.catch_up_requests;
        total.reconnect_latency.merge(&p.reconnect_latency);
        total.catch_up_latency.merge(&p.catch_up_latency);
        total.first_error = total.first_error.take().or(p.first_error.clone());
        total.first_reconnect_error = total
            .first_reconnect_error
            .take()
            .or(p.first_reconnect_error.clone());
        total.first_drop_reason = total
            .first_drop_reason
            .take()
            .or(p.first_drop_reason.clone());
        total.first_error_frame = total
            .first_error_frame
            .take()
            .or(p.first_error_frame.clone());
        total.base_seq = p.base_seq;
        total.final_seq = total.final_seq.max(p.final_seq);
        if p.published.is_some() {
            total.published.clone_from(&p.published);
        }
    }
    let published = total.published.clone().unwrap_or_default();
    let stored = total.final_seq.saturating_sub(total.base_seq);
    // The steady part: from every client subscribed to publishing stopped.
    let from = outcome.at("subscribed").map_or(0, |s| s.unix_nanos);
    let to = outcome.at("published").map_or(u64::MAX, |s| s.unix_nanos);
    let steady: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.unix_nanos >= from && s.unix_nanos <= to)
        .collect();
    let points = |f: fn(&Sample) -> Option<f64>| -> Vec<(f64, f64)> {
        steady
            .iter()
            .filter_map(|s| Some(((s.unix_nanos - from) as f64 / 1e9, f(s)?)))
            .collect()
    };
    let rss = trend(&points(|s| s.rss_kib.map(|v| v as f64)), args.window);
    let fds = trend(&points(|s| s.fds.map(|v| v as f64)), args.window);
    let conns = trend(&points(|s| s.connections), args.window);
    let sqlite = trend(&points(|s| s.sqlite_kib), args.window);
    let heap = trend(&points(|s| s.heap_kib), args.window);
    // The RSS without the embedded database's caches: what the cable and
    // the app hold.
    let rss_without_sqlite = trend(
        &points(|s| Some(s.rss_kib? as f64 - s.sqlite_kib?)),
        args.window,
    );
    let drops = samples
        .iter()
        .filter_map(|s| s.queue_drops)
        .fold(0.0, f64::max);
    let (cpu, client_cpu) = match (outcome.at("subscribed"), outcome.at("published")) {
        (Some(a), Some(b)) => (
            match (a.server_cpu_s, b.server_cpu_s) {
                (Some(a), Some(b)) => b - a,
                _ => f64::NAN,
            },
            b.client_cpu_s - a.client_cpu_s,
        ),
        _ => (f64::NAN, f64::NAN),
    };
    let span_s = to.saturating_sub(from) as f64 / 1e9;

    let mut result = report::Result::new("soak")
        .with("via", format!("{:?}", args.via).to_lowercase())
        .with("clients", args.clients)
        .with("subscribed", total.subscribed)
        .with("connect_failures", total.connect_failures)
        .num("duration_s", span_s, 1)
        .with("churn_target", args.churn)
        .with("churned", total.churned)
        .num("churn_per_s", total.churned as f64 / span_s.max(1e-9), 1)
        .with("clean_closes", total.clean_closes)
        .with("reconnects", total.reconnects)
        .with("reconnect_failures", total.reconnect_failures)
        .with("server_drops", total.server_drops)
        .with("rate_target", args.rate)
        .with("messages", published.sent)
        .num(
            "messages_per_s",
            published.sent as f64 / span_s.max(1e-9),
            2,
        )
        .with("publish_failed", published.failed)
        .with("base_seq", total.base_seq)
        .with("final_seq", total.final_seq)
        .with("stored", stored)
        .with("expected", total.subscribed * stored)
        .with("shown", total.tally.shown)
        .with("missing", total.tally.missing)
        .with("duplicates", total.tally.duplicates)
        .with("overlap", total.tally.overlap)
        .with("out_of_order", total.tally.out_of_order)
        .with("incomplete_clients", total.tally.incomplete_clients)
        .with("catch_up_requests", total.catch_up_requests)
        .with("error_frames", total.error_frames);
    for (name, latency, pct) in [
        ("reconnect_p50_ms", &total.reconnect_latency, 50.0),
        ("reconnect_p99_ms", &total.reconnect_latency, 99.0),
        ("catch_up_p50_ms", &total.catch_up_latency, 50.0),
        ("catch_up_p99_ms", &total.catch_up_latency, 99.0),
        ("post_p50_ms", &published.post_latency, 50.0),
        ("post_p99_ms", &published.post_latency, 99.0),
    ] {
        result = result.num(name, ms(latency.percentile(pct)), 2);
    }
    result = result
        .with("samples", steady.len())
        .num("server_cpu_s", cpu, 1)
        .num("client_cpu_s", client_cpu, 1)
        .with("queue_drops", drops);
    for (name, t) in [
        ("rss_kib", rss),
        ("fds", fds),
        ("connections", conns),
        ("sqlite_kib", sqlite),
        ("heap_kib", heap),
        ("rss_without_sqlite_kib", rss_without_sqlite),
    ] {
        let Some(t) = t else { continue };
        result = result.with(
            name,
            serde_json::json!({
                "start": t.start, "end": t.end, "min": t.min, "median": t.median, "max": t.max,
                "first_window": (t.first_window * 10.0).round() / 10.0,
                "last_window": (t.last_window * 10.0).round() / 10.0,
                "growth_pct": (t.growth_pct * 100.0).round() / 100.0,
                "per_hour": t.per_hour.round(),
            }),
        );
    }
    for (name, value) in [
        ("first_connect_error", &total.first_error),
        ("first_reconnect_error", &total.first_reconnect_error),
        ("first_drop_reason", &total.first_drop_reason),
        ("first_error_frame", &total.first_error_frame),
        ("first_publish_failure", &published.first_failure),
    ] {
        if let Some(v) = value {
            result = result.with(name, v.clone());
        }
    }
    result.emit(&ctx.common)?;

    let mut problems: Vec<String> = [
        (total.connect_failures, "connections failed"),
        (total.tally.missing, "deliveries missing"),
        (total.tally.duplicates, "deliveries duplicated"),
        (total.tally.out_of_order, "live frames out of order"),
        (published.failed, "posts failed"),
        (
            published.sent.saturating_sub(stored),
            "acknowledged messages not stored",
        ),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    // SQLite's page caches fill as the database grows, up to their
    // configured size (RELIABILITY.md, "Soak"): that is a bounded cache, not
    // a leak, so the memory check leaves it out when the server reports it.
    let (memory, memory_what) = match rss_without_sqlite {
        Some(t) => (Some(t), "RSS without SQLite's caches"),
        None => (rss, "RSS"),
    };
    for (what, t, tolerance) in [
        (memory_what, memory, args.rss_tolerance),
        ("open files", fds, args.fd_tolerance),
    ] {
        match t {
            Some(t) if t.growth_pct > tolerance => problems.push(format!(
                "{what} grew {:.1}% (first window {:.0}, last {:.0}; tolerance {tolerance}%)",
                t.growth_pct, t.first_window, t.last_window
            )),
            Some(_) => {}
            None => problems.push(format!("no {what} samples")),
        }
    }
    if !problems.is_empty() {
        bail!("soak failed: {}", problems.join(", "));
    }
    Ok(())
}

async fn work(ctx: &Ctx, args: &SoakArgs, coord: Coord) -> anyhow::Result<Partial> {
    let identifier = ctx.identifier();
    // Client numbers after the subscribers' are the probes' and the publisher's.
    let probe_source = ctx.source(args.clients + 1 + ctx.share.index);
    let base_seq = last_seq(ctx, probe_source, &identifier, 0).await?;
    let joined = join_all(
        ctx,
        ctx.share.clients(args.clients).collect(),
        |_| identifier.clone(),
        "subscribing",
    )
    .await;
    let mut partial = Partial {
        subscribed: joined.conns.len() as u64,
        connect_failures: joined.failures,
        first_error: joined.first_error,
        base_seq,
        ..Partial::default()
    };
    let mut publishers = Vec::new();
    if ctx.share.is_first() {
        for p in 0..args.publishers.max(1) {
            publishers.push(Publisher::connect(ctx, args, &identifier, p).await?);
        }
    }
    coord.barrier("subscribed").await?;

    let kit = Arc::new(Kit {
        cable: ctx.cable.clone(),
        identifier: identifier.clone(),
        connect_timeout: ctx.connect_timeout(),
        counters: Counters::default(),
    });
    // The room's last seq once publishing stopped; clients end when they have it.
    let (last_tx, last_rx) = watch::channel(None::<u64>);
    let (give_up_tx, give_up) = watch::channel(false);
    let mut clients = JoinSet::new();
    let mut churn_signals = Vec::with_capacity(joined.conns.len());
    for (i, ws) in joined.conns {
        let signal = Arc::new(Notify::new());
        churn_signals.push(signal.clone());
        let me = Me {
            source: ctx.source(i),
            cookie: ctx.setup.cookie(i).map(str::to_owned),
        };
        clients.spawn(client(
            ws,
            me,
            Transcript::new(base_seq),
            kit.clone(),
            signal,
            last_rx.clone(),
            give_up.clone(),
        ));
    }
    let started = Instant::now();
    let deadline = started + args.duration;
    let mut publishing = JoinSet::new();
    let every = publishers.len() as u64;
    for (p, publisher) in publishers.into_iter().enumerate() {
        let schedule = Schedule {
            started,
            deadline,
            rate: args.rate,
            first: p as u64,
            every,
            run: ctx.setup.run,
        };
        publishing.spawn(publisher.publish(schedule));
    }
    let churning = tokio::spawn(churn(
        churn_signals,
        args.churn / ctx.share.of as f64,
        deadline,
    ));

    let bar = report::bar("soak (s)", args.duration.as_secs(), ctx.progress);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.set_position(started.elapsed().as_secs());
        let c = &kit.counters;
        bar.set_message(format!("{} churned", c.churned.load(Ordering::Relaxed)));
    }
    bar.finish_and_clear();
    churning.await?;
    if !publishing.is_empty() {
        let mut total = Published::default();
        while let Some(done) = publishing.join_next().await {
            let p = done?;
            total.sent += p.sent;
            total.failed += p.failed;
            total.post_latency.merge(&p.post_latency);
            total.first_failure = total.first_failure.take().or(p.first_failure);
        }
        partial.published = Some(total);
    }
    coord.barrier("published").await?;

    // Everything published is stored now; each client must reach its last seq.
    let final_seq = last_seq(ctx, probe_source, &identifier, base_seq).await?;
    partial.final_seq = final_seq;
    let _ = last_tx.send(Some(final_seq));
    let drain = Duration::from_secs_f64(args.drain);
    let draining = report::bar("catching up", clients.len() as u64, ctx.progress);
    let give_up_at = tokio::time::sleep(drain);
    tokio::pin!(give_up_at);
    let mut given_up = false;
    loop {
        tokio::select! {
            ended = clients.join_next() => match ended {
                Some(tally) => {
                    partial.tally.add(&tally?);
                    draining.inc(1);
                }
                None => break,
            },
            _ = &mut give_up_at, if !given_up => {
                eprintln!("{} clients had not caught up after {drain:?}", clients.len());
                let _ = give_up_tx.send(true);
                given_up = true;
            }
        }
    }
    draining.finish_and_clear();

    let c = &kit.counters;
    partial.churned = c.churned.load(Ordering::Relaxed);
    partial.clean_closes = c.clean_closes.load(Ordering::Relaxed);
    partial.reconnects = c.reconnects.load(Ordering::Relaxed);
    partial.reconnect_failures = c.reconnect_failures.load(Ordering::Relaxed);
    partial.server_drops = c.server_drops.load(Ordering::Relaxed);
    partial.error_frames = c.error_frames.load(Ordering::Relaxed);
    partial.catch_up_requests = c.catch_up_requests.load(Ordering::Relaxed);
    {
        let mut firsts = c.first.lock().expect("not poisoned");
        partial.first_reconnect_error = firsts.reconnect_error.take();
        partial.first_drop_reason = firsts.drop_reason.take();
        partial.first_error_frame = firsts.error_frame.take();
        partial.reconnect_latency = std::mem::take(&mut firsts.reconnect_latency);
        partial.catch_up_latency = std::mem::take(&mut firsts.catch_up_latency);
    }
    coord.barrier("received").await?;
    Ok(partial)
}

/// The room's last `seq`: subscribes one probe and pages through `catch_up`
/// from `after` (the frames themselves are skipped).
async fn last_seq(
    ctx: &Ctx,
    source: std::net::IpAddr,
    identifier: &str,
    after: u64,
) -> anyhow::Result<u64> {
    let mut ws = ctx
        .cable
        .join(
            source,
            ctx.setup.cookie(0),
            identifier,
            ctx.connect_timeout(),
        )
        .await
        .context("subscribing the probe")?;
    let mut after = after;
    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
        loop {
            ws.send(Message::text(protocol::catch_up(identifier, after)))
                .await?;
            loop {
                let Some(frame) = ws.next().await else {
                    bail!("the probe's connection closed");
                };
                let Message::Text(text) = frame? else {
                    continue;
                };
                match ServerFrame::parse(&text) {
                    ServerFrame::CaughtUp { last_seq, more } => {
                        after = last_seq;
                        if more {
                            break;
                        }
                        return Ok(last_seq);
                    }
                    ServerFrame::Error(e) => bail!("catch_up answered {e}"),
                    _ => {}
                }
            }
        }
    })
    .await
    .context("the probe's catch_up timed out")?;
    let _ = ws.close(None).await;
    outcome
}

/// Who one client is.
struct Me {
    source: std::net::IpAddr,
    cookie: Option<String>,
}

/// What a client's loop woke up for.
enum Event {
    Frame(Option<Result<Message, tokio_tungstenite::tungstenite::Error>>),
    Churn,
    Check,
    GiveUp,
}

/// One subscriber: shows what it receives; disconnects and reconnects when
/// the churn says so (or the server drops it), then catches up; ends once it
/// has shown the room's last `seq`, or when told to give up.
async fn client(
    ws: Ws,
    me: Me,
    mut transcript: Transcript,
    kit: Arc<Kit>,
    churn: Arc<Notify>,
    mut last: watch::Receiver<Option<u64>>,
    mut give_up: watch::Receiver<bool>,
) -> TranscriptTally {
    let counters = &kit.counters;
    let mut ws = Some(ws);
    let mut resubscribed_at = Instant::now();
    let mut cycles = 0u64;
    loop {
        let last_seq = *last.borrow();
        if let Some(last_seq) = last_seq
            && !transcript.catching_up()
            && transcript.position() >= last_seq
        {
            break;
        }
        let event = match ws.as_mut() {
            Some(conn) => tokio::select! {
                frame = conn.next() => Event::Frame(frame),
                _ = churn.notified(), if last_seq.is_none() => Event::Churn,
                _ = last.changed() => Event::Check,
                _ = give_up.changed() => Event::GiveUp,
            },
            None => Event::Churn,
        };
        let reason = match event {
            Event::GiveUp => break,
            Event::Check => continue,
            Event::Churn => {
                if let Some(mut conn) = ws.take() {
                    cycles += 1;
                    // Every second departure of a client is polite (a close
                    // frame); the others vanish (RST, as a killed tab).
                    if cycles.is_multiple_of(2) {
                        counters.clean_closes.fetch_add(1, Ordering::Relaxed);
                        close_politely(&mut conn).await;
                    }
                }
                None
            }
            Event::Frame(Some(Ok(Message::Text(text)))) => {
                if let Some(seq) = protocol::room_seq(&text) {
                    transcript.receive(seq);
                    continue;
                }
                match ServerFrame::parse(&text) {
                    ServerFrame::CaughtUp { last_seq, more } => {
                        match transcript.caught_up(last_seq, more) {
                            Some(after) => {
                                let conn = ws.as_mut().expect("connected");
                                counters.catch_up_requests.fetch_add(1, Ordering::Relaxed);
                                let ask = protocol::catch_up(&kit.identifier, after);
                                if let Err(e) = conn.send(Message::text(ask)).await {
                                    Some(e.to_string())
                                } else {
                                    continue;
                                }
                            }
                            None => {
                                let took = resubscribed_at.elapsed().as_micros() as u64;
                                let mut firsts = counters.first.lock().expect("not poisoned");
                                firsts.catch_up_latency.record(took);
                                continue;
                            }
                        }
                    }
                    ServerFrame::Disconnect { reason } => Some(format!("disconnected: {reason}")),
                    ServerFrame::Error(e) => {
                        counters.error_frames.fetch_add(1, Ordering::Relaxed);
                        let mut firsts = counters.first.lock().expect("not poisoned");
                        firsts.error_frame.get_or_insert(e);
                        continue;
                    }
                    _ => continue,
                }
            }
            Event::Frame(Some(Ok(Message::Close(frame)))) => Some(format!("closed: {frame:?}")),
            Event::Frame(Some(Ok(_))) => continue,
            Event::Frame(Some(Err(e))) => Some(e.to_string()),
            Event::Frame(None) => Some("closed".into()),
        };
        if let Some(reason) = reason {
            counters.server_drops.fetch_add(1, Ordering::Relaxed);
            let mut firsts = counters.first.lock().expect("not poisoned");
            firsts.drop_reason.get_or_insert(reason);
        } else {
            counters.churned.fetch_add(1, Ordering::Relaxed);
        }
        // The old connection, if any, is closed before the new one opens.
        drop(ws.take());
        // Reconnect, resubscribe and ask for what was missed, as a page does.
        loop {
            if *give_up.borrow() {
                return transcript.finish(last.borrow().unwrap_or(0));
            }
            let started = Instant::now();
            let joined = kit
                .cable
                .join(
                    me.source,
                    me.cookie.as_deref(),
                    &kit.identifier,
                    kit.connect_timeout,
                )
                .await;
            match joined {
                Ok(mut conn) => {
                    let after = transcript.resubscribed();
                    resubscribed_at = Instant::now();
                    counters.catch_up_requests.fetch_add(1, Ordering::Relaxed);
                    let ask = protocol::catch_up(&kit.identifier, after);
                    if let Err(e) = conn.send(Message::text(ask)).await {
                        counters.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                        let mut firsts = counters.first.lock().expect("not poisoned");
                        firsts
                            .reconnect_error
                            .get_or_insert(format!("asking catch_up: {e}"));
                        continue;
                    }
                    counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    let mut firsts = counters.first.lock().expect("not poisoned");
                    firsts
                        .reconnect_latency
                        .record(started.elapsed().as_micros() as u64);
                    drop(firsts);
                    ws = Some(conn);
                    break;
                }
                Err(e) => {
                    counters.reconnect_failures.fetch_add(1, Ordering::Relaxed);
                    counters
                        .first
                        .lock()
                        .expect("not poisoned")
                        .reconnect_error
                        .get_or_insert(format!("{e:#}"));
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
    }
    let last_seq = last.borrow().unwrap_or(transcript.position());
    transcript.finish(last_seq)
}

/// Sends a close frame and waits briefly for the server's.
async fn close_politely(ws: &mut Ws) {
    if ws.send(Message::Close(None)).await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// Asks clients, round robin, to disconnect and reconnect, `per_s` a second
/// until `deadline`.
async fn churn(signals: Vec<Arc<Notify>>, per_s: f64, deadline: Instant) {
    if signals.is_empty() || per_s <= 0.0 {
        tokio::time::sleep_until(deadline.into()).await;
        return;
    }
    let started = Instant::now();
    for k in 0u64.. {
        let due = started + Duration::from_secs_f64(k as f64 / per_s);
        if due >= deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        signals[(k as usize) % signals.len()].notify_one();
    }
    tokio::time::sleep_until(deadline.into()).await;
}

/// When each message of the steady stream is due, and which are one publisher's.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    started: Instant,
    deadline: Instant,
    rate: f64,
    /// This publisher sends messages `first`, `first + every`, …
    first: u64,
    every: u64,
    run: u32,
}

impl Schedule {
    /// Message `k` is due `k / rate` seconds after the start.
    fn due(&self, k: u64) -> Instant {
        self.started + Duration::from_secs_f64(k as f64 / self.rate.max(1e-3))
    }

    /// This publisher's messages due before the deadline; a publisher that
    /// fell behind stops at the deadline all the same.
    fn mine(self) -> impl Iterator<Item = u64> {
        (self.first..)
            .step_by(self.every.max(1) as usize)
            .take_while(move |&k| self.due(k) < self.deadline && Instant::now() < self.deadline)
    }
}

/// The steady stream's source.
enum Publisher {
    /// A keep-alive connection (reopened after an error), its cookie and path.
    Http {
        conn: HttpConn,
        endpoint: Endpoint,
        source: std::net::IpAddr,
        cookie: String,
        path: String,
    },
    /// A subscribed cable and its identifier.
    Speak(Ws, String),
}

impl Publisher {
    async fn connect(
        ctx: &Ctx,
        args: &SoakArgs,
        identifier: &str,
        p: usize,
    ) -> anyhow::Result<Self> {
        let source = ctx.source(args.clients + ctx.share.of + 1 + p);
        Ok(match args.via {
            Via::Http => Publisher::Http {
                conn: HttpConn::connect(&ctx.endpoint, source).await?,
                endpoint: ctx.endpoint.clone(),
                source,
                cookie: format!("hearth_session={}", ctx.setup.cookie(p).expect("signed in")),
                path: format!("/chatrooms/{}/messages", ctx.setup.room),
            },
            Via::Speak => Publisher::Speak(
                ctx.cable
                    .join(
                        source,
                        ctx.setup.cookie(p),
                        identifier,
                        ctx.connect_timeout(),
                    )
                    .await?,
                identifier.to_owned(),
            ),
        })
    }

    /// Publishes its share of the schedule.
    async fn publish(self, schedule: Schedule) -> Published {
        let mut out = Published::default();
        let content = |k: u64| {
            Marker {
                run: schedule.run,
                seq: k,
                sent_unix_nanos: unix_nanos(),
            }
            .encode()
        };
        let fail = |out: &mut Published, why: String| {
            out.failed += 1;
            out.first_failure.get_or_insert(why);
        };
        match self {
            Publisher::Http {
                mut conn,
                endpoint,
                source,
                cookie,
                path,
            } => {
                for k in schedule.mine() {
                    tokio::time::sleep_until(schedule.due(k).into()).await;
                    let sent = Instant::now();
                    match hearth::post_message(&mut conn, &cookie, &path, &content(k)).await {
                        Ok(201) => {
                            out.sent += 1;
                            out.post_latency.record(sent.elapsed().as_micros() as u64);
                        }
                        Ok(status) => fail(&mut out, format!("answered {status}")),
                        Err(e) => {
                            fail(&mut out, format!("{e:#}"));
                            if let Ok(fresh) = HttpConn::connect(&endpoint, source).await {
                                conn = fresh;
                            }
                        }
                    }
                }
            }
            Publisher::Speak(ws, identifier) => {
                let (mut sink, mut stream) = ws.split();
                // The speaker is subscribed too: read what it receives, so
                // it is never too slow, and count error answers.
                let reader = tokio::spawn(async move {
                    let mut errors = (0u64, None);
                    while let Some(Ok(frame)) = stream.next().await {
                        if let Message::Text(text) = frame
                            && let ServerFrame::Error(e) = ServerFrame::parse(&text)
                        {
                            errors.0 += 1;
                            errors.1.get_or_insert(e);
                        }
                    }
                    errors
                });
                for k in schedule.mine() {
                    tokio::time::sleep_until(schedule.due(k).into()).await;
                    let frame = protocol::speak(&identifier, &content(k));
                    match sink.send(Message::text(frame)).await {
                        Ok(()) => out.sent += 1,
                        Err(e) => fail(&mut out, e.to_string()),
                    }
                }
                // Error answers come within a moment of their speak.
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = sink.close().await;
                reader.abort();
                if let Ok((errors, first)) = reader.await {
                    out.failed += errors;
                    out.sent -= errors.min(out.sent);
                    if let Some(e) = first {
                        out.first_failure.get_or_insert(e);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_never_leaves_shows_every_message_once() {
        let mut t = Transcript::new(10);
        for seq in 11..=20 {
            t.receive(seq);
        }
        let tally = t.finish(20);
        assert_eq!(tally.shown, 10);
        assert_eq!((tally.missing, tally.duplicates, tally.overlap), (0, 0, 0));
    }

    #[test]
    fn a_catch_up_fills_the_gap_and_its_overlap_with_live_frames_is_skipped() {
        let mut t = Transcript::new(0);
        t.receive(1);
        t.receive(2);
        // Away for 3..=7; live frames 5 and 6 arrive before the replay.
        assert_eq!(t.resubscribed(), 2);
        t.receive(5);
        t.receive(6);
        assert_eq!(t.position(), 2, "5 and 6 wait for 3 and 4");
        for seq in 3..=7 {
            t.receive(seq);
        }
        assert_eq!(t.caught_up(7, false), None);
        // The live copy of 7, broadcast after the replay read it; then 8.
        t.receive(7);
        t.receive(8);
        // A third copy of 6 is one too many.
        t.receive(6);
        let tally = t.finish(8);
        assert_eq!(tally.shown, 8);
        assert_eq!(
            tally.overlap, 3,
            "5 and 6 came live then replayed, 7 the other way"
        );
        assert_eq!(tally.duplicates, 1);
        assert_eq!((tally.missing, tally.out_of_order), (0, 0));
    }

    #[test]
    fn repeats_outside_a_catch_up_are_duplicates() {
        let mut t = Transcript::new(0);
        t.receive(1);
        t.receive(1);
        t.resubscribed();
        t.receive(1); // older than the subscription: a replay never sends it
        assert_eq!(t.caught_up(1, false), None);
        t.receive(2);
        t.receive(2); // above the replay: both copies are live
        let tally = t.finish(2);
        assert_eq!((tally.duplicates, tally.overlap), (3, 0));
    }

    #[test]
    fn two_live_copies_during_a_catch_up_are_duplicates_once_its_end_is_known() {
        let mut t = Transcript::new(4);
        t.resubscribed();
        t.receive(6);
        t.receive(6);
        t.receive(5);
        assert_eq!(t.caught_up(5, false), None, "the replay only had 5");
        let tally = t.finish(6);
        assert_eq!((tally.duplicates, tally.overlap, tally.shown), (1, 0, 2));
    }

    #[test]
    fn a_paged_catch_up_asks_again_from_where_the_answer_ended() {
        let mut t = Transcript::new(0);
        assert_eq!(t.resubscribed(), 0);
        for seq in 1..=3 {
            t.receive(seq);
        }
        assert_eq!(t.caught_up(3, true), Some(3));
        assert!(t.catching_up());
        t.receive(4);
        assert_eq!(t.caught_up(4, false), None);
        assert!(!t.catching_up());
        assert_eq!(t.finish(4).shown, 4);
    }

    #[test]
    fn what_never_arrives_is_missing_and_a_live_gap_is_out_of_order() {
        let mut t = Transcript::new(0);
        t.receive(1);
        t.receive(3); // 2 skipped by the live stream
        t.receive(5);
        let tally = t.finish(6);
        assert_eq!(tally.shown, 1);
        assert_eq!(tally.out_of_order, 2);
        assert_eq!(tally.missing, 3, "2, 4 and 6 never came");
        assert_eq!(tally.incomplete_clients, 1);
    }

    #[test]
    fn publishers_share_the_stream_and_stop_at_the_deadline() {
        let started = Instant::now();
        let schedule = |first| Schedule {
            started,
            deadline: started + Duration::from_secs(60),
            rate: 0.2,
            first,
            every: 3,
            run: 1,
        };
        // 0.2 a second for 60 s: messages 0..=11, every third to each.
        assert_eq!(schedule(0).mine().collect::<Vec<_>>(), [0, 3, 6, 9]);
        assert_eq!(schedule(2).mine().collect::<Vec<_>>(), [2, 5, 8, 11]);
        assert_eq!(schedule(0).due(5), started + Duration::from_secs(25));
    }

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
