//! `soak`: N subscribers held in one room for a long time while clients
//! churn (disconnect, reconnect, resubscribe, `catch_up`) and a steady stream
//! is published. The server's RSS, open files and /metrics are sampled every
//! few seconds. At the end every client must hold every message exactly
//! once, in `seq` order, and memory and open files must not have grown.
//!
//! - `transcript`: one client's account of what it was shown, twice or never.
//! - `samples`: readings of the server and their trend over the run.
//! - `client`: each subscriber's task and the churn that drives them.
//! - `publisher`: the steady stream, over HTTP or `speak`.

mod client;
mod publisher;
mod samples;
mod transcript;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use self::client::{Counters, Kit, Me, churn, client};
use self::publisher::{Published, Publisher, Schedule};
use self::samples::{Sample, sample_server, trend};
use self::transcript::{Transcript, TranscriptTally};
use super::join_room;
use crate::cli::SoakArgs;
use crate::protocol::{self, ServerFrame};
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::{Histogram, Merge, merge_fields};
use crate::workers::{self, Coord};

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

impl Merge for Partial {
    fn merge(&mut self, other: &Self) {
        // `published`: only the first process publishes.
        merge_fields!(self, other;
            subscribed, connect_failures, first_error, tally, churned, clean_closes,
            reconnects, reconnect_failures, first_reconnect_error, server_drops,
            first_drop_reason, error_frames, first_error_frame, catch_up_requests,
            reconnect_latency, catch_up_latency, published);
        self.base_seq = other.base_seq;
        self.final_seq = self.final_seq.max(other.final_seq);
    }
}

/// Runs the scenario (on the leader, or spread over workers) and reports.
pub async fn run(ctx: Ctx, args: SoakArgs) -> anyhow::Result<()> {
    let Some(pid) = ctx.common.pid else {
        bail!("soak samples the server's memory and open files: give its process id with --pid");
    };
    ctx.check_via(args.via)?;
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
    let total = outcome.total();
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
    let joined = join_room(ctx, args.clients, &identifier, "subscribing").await;
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
            total.merge(&done?);
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
                    partial.tally.merge(&tally?);
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
