//! `fanout`: N subscribers join one room; publishers send M messages at a
//! set rate, each carrying its send time and number; every receipt is timed
//! and accounted (lost, duplicated). Reports deliveries per second and the
//! latency distribution.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::join_room;
use crate::cable::Ws;
use crate::cli::{FanoutArgs, Via};
use crate::hearth;
use crate::http::HttpConn;
use crate::protocol::{self, Marker, ServerFrame};
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::{Histogram, Merge, Receipts, Tally, earliest, merge_fields};
use crate::workers::{self, Coord, unix_nanos};

/// Latencies a reader keeps before adding them to the shared histogram.
const LOCAL_BATCH: usize = 256;

/// One process's share of the outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    subscribed: u64,
    connect_failures: u64,
    first_error: Option<String>,
    tally: Tally,
    latency: Histogram,
    /// Unix nanoseconds of the first and last fresh receipt.
    first_receipt: u64,
    last_receipt: u64,
    /// Subscribers the server dropped during the run, and the first reason.
    dropped: u64,
    drop_reason: Option<String>,
    published: Option<Published>,
}

impl Merge for Partial {
    fn merge(&mut self, other: &Self) {
        // `published`: only the first process publishes.
        merge_fields!(self, other;
            subscribed, connect_failures, first_error, tally, latency, dropped, drop_reason,
            published);
        earliest(&mut self.first_receipt, other.first_receipt);
        self.last_receipt = self.last_receipt.max(other.last_receipt);
    }
}

/// What the publishers did (first process only).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Published {
    /// Messages sent (speak frames written, or posts answered 201).
    sent: u64,
    /// Posts not answered 201, or speak frames that could not be written.
    failed: u64,
    /// `{"type":"error"}` answers to speaks.
    error_replies: u64,
    /// Unix nanoseconds of the first and last send.
    first_send: u64,
    last_send: u64,
    /// How long each HTTP post took to be answered, µs.
    post_latency: Histogram,
}

/// Everything the readers add to, shared by this process's reader tasks.
#[derive(Default)]
struct Shared {
    latency: Mutex<Histogram>,
    tally: Mutex<Tally>,
    fresh: AtomicU64,
    first_receipt: AtomicU64,
    last_receipt: AtomicU64,
    dropped: AtomicU64,
    drop_reason: std::sync::Mutex<Option<String>>,
}

/// Runs the scenario (on the leader, or spread over workers) and reports.
pub async fn run(ctx: Ctx, args: FanoutArgs) -> anyhow::Result<()> {
    ctx.check_via(args.via)?;
    let outcome = ctx.drive(|coord| work(&ctx, &args, coord)).await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let total = outcome.total();
    let published = total.published.clone().unwrap_or_default();
    // A speak the server refused (an error reply) was never meant to arrive.
    let sent = published.sent.saturating_sub(published.error_replies);
    let expected = total.tally.subscribers * sent;
    let lost = total.tally.lost(sent);
    let span_s = if total.last_receipt > published.first_send {
        (total.last_receipt - published.first_send) as f64 / 1e9
    } else {
        0.0
    };
    let publish_s = (published.last_send.saturating_sub(published.first_send)) as f64 / 1e9;
    let (start, end) = (outcome.at("subscribed"), outcome.at("received"));
    let cpu = |f: fn(&workers::Sample) -> Option<f64>| match (start.and_then(f), end.and_then(f)) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let server_cpu = cpu(|s| s.server_cpu_s);
    let client_cpu = cpu(|s| Some(s.client_cpu_s));
    let per_s = |n: f64| if span_s > 0.0 { n / span_s } else { 0.0 };
    let delivered = total.tally.unique.max(1) as f64;
    let per_delivery = |cpu_s: f64| cpu_s * 1e6 / delivered;
    // One client thread busy the whole time means the tool, not the server,
    // set the pace: say so next to the figure.
    let client_threads = (ctx.common.threads * ctx.common.workers.max(1)) as f64;
    if span_s > 0.5 && client_cpu / span_s > 0.9 * client_threads {
        eprintln!(
            "note: the load generator was busy {:.0}% of the run: this rate is its limit, not the server's",
            100.0 * client_cpu / span_s / client_threads
        );
    }

    let h = &total.latency;
    let mut result = report::Result::new("fanout")
        .with("via", format!("{:?}", args.via).to_lowercase())
        .with("clients", args.clients)
        .with("subscribed", total.subscribed)
        .with("connect_failures", total.connect_failures)
        .with("messages", published.sent)
        .with("rate_target", args.rate)
        .with("pad", args.pad)
        .num("publish_s", publish_s, 3)
        .with("publish_failed", published.failed)
        .with("error_replies", published.error_replies)
        .with("expected", expected)
        .with("delivered", total.tally.unique)
        .with("lost", lost)
        .with("duplicated", total.tally.duplicates)
        .with("stray", total.tally.stray)
        .with("dropped_connections", total.dropped)
        .num("span_s", span_s, 3)
        .num("deliveries_per_s", per_s(total.tally.unique as f64), 0)
        .num("p50_ms", ms(h.percentile(50.0)), 3)
        .num("p95_ms", ms(h.percentile(95.0)), 3)
        .num("p99_ms", ms(h.percentile(99.0)), 3)
        .num("max_ms", ms(h.max()), 3)
        .num("mean_ms", h.mean() / 1000.0, 3)
        .num("server_cpu_s", server_cpu, 2)
        .num("client_cpu_s", client_cpu, 2)
        // CPU per delivery holds still on a shared machine, where rates do not.
        .num("server_us_per_delivery", per_delivery(server_cpu), 3)
        .num("client_us_per_delivery", per_delivery(client_cpu), 3);
    if args.via == Via::Http {
        let p = &published.post_latency;
        result = result.num("post_p50_ms", ms(p.percentile(50.0)), 3).num(
            "post_p99_ms",
            ms(p.percentile(99.0)),
            3,
        );
    }
    result = result
        .with_some("server_rss_kib", end.and_then(|s| s.server_rss_kib))
        .with_some("first_connect_error", total.first_error.clone())
        .with_some("first_drop_reason", total.drop_reason.clone());
    result.emit(&ctx.common)?;

    if args.expect_complete {
        let problems = [
            (total.connect_failures, "connections failed"),
            (lost, "deliveries lost"),
            (total.tally.duplicates, "deliveries duplicated"),
            (total.dropped, "subscribers dropped"),
            (
                args.messages - published.sent.min(args.messages),
                "messages not published",
            ),
            (published.error_replies, "messages refused by the server"),
        ];
        let found: Vec<String> = problems
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !found.is_empty() {
            bail!("incomplete fan-out: {}", found.join(", "));
        }
    }
    Ok(())
}

async fn work(ctx: &Ctx, args: &FanoutArgs, coord: Coord) -> anyhow::Result<Partial> {
    let identifier = ctx.identifier();
    let joined = join_room(ctx, args.clients, &identifier, "subscribing").await;
    let mut publishers = Publishers::None;
    // Held, never read, until the run ends.
    let mut stalled = Vec::with_capacity(args.stalled);
    if ctx.share.is_first() {
        publishers = Publishers::connect(ctx, args, &identifier).await?;
        for s in 0..args.stalled {
            let i = args.clients + args.publishers.max(1) + s;
            let cookie = ctx.setup.cookie(s);
            stalled.push(
                ctx.cable
                    .join(ctx.source(i), cookie, &identifier, ctx.connect_timeout())
                    .await?,
            );
        }
    }
    coord.barrier("subscribed").await?;

    let released = Instant::now();
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop) = watch::channel(false);
    let mut readers = JoinSet::new();
    let subscribed = joined.conns.len() as u64;
    for (_, ws) in joined.conns {
        readers.spawn(read_bench(
            ws,
            ctx.setup.run,
            args.messages,
            shared.clone(),
            stop.clone(),
        ));
    }
    let publishing = publishers.start(ctx, args, &identifier, stop.clone());

    // Watchdog: stop when every reader is done, when receipts stall for
    // `--drain` seconds after the publishing window, or at `--timeout`.
    let window = if args.rate > 0.0 {
        Duration::from_secs_f64(args.messages as f64 / args.rate)
    } else {
        Duration::ZERO
    };
    let drain = Duration::from_secs_f64(args.drain);
    let timeout = Duration::from_secs_f64(args.timeout);
    let expected = subscribed * args.messages;
    let bar = report::bar("receipts", expected, ctx.progress);
    let (mut seen, mut last_progress) = (0, Instant::now());
    while !readers.is_empty() {
        tokio::select! {
            _ = readers.join_next() => continue,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
        let now_seen = shared.fresh.load(Ordering::Relaxed);
        bar.set_position(now_seen);
        if now_seen != seen {
            (seen, last_progress) = (now_seen, Instant::now());
        }
        let quiet_since = last_progress.max(released + window);
        if quiet_since.elapsed() > drain || released.elapsed() > timeout {
            break;
        }
    }
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    while readers.join_next().await.is_some() {}
    drop(stalled);
    let published = match publishing {
        Some(task) => Some(task.await?),
        None => None,
    };
    coord.barrier("received").await?;

    let latency = shared.latency.lock().await.clone();
    let tally = *shared.tally.lock().await;
    let drop_reason = shared.drop_reason.lock().expect("not poisoned").clone();
    Ok(Partial {
        subscribed,
        connect_failures: joined.failures,
        first_error: joined.first_error,
        tally,
        latency,
        first_receipt: shared.first_receipt.load(Ordering::Relaxed),
        last_receipt: shared.last_receipt.load(Ordering::Relaxed),
        dropped: shared.dropped.load(Ordering::Relaxed),
        drop_reason,
        published,
    })
}

/// One subscriber: times and accounts every bench message of run `run`.
async fn read_bench(
    mut ws: Ws,
    run: u32,
    expected: u64,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let mut receipts = Receipts::new(expected);
    let mut batch: Vec<u64> = Vec::with_capacity(LOCAL_BATCH);
    let (mut first, mut last) = (0u64, 0u64);
    let mut dropped: Option<String> = None;
    while !receipts.complete() {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => frame,
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            Some(Err(error)) => {
                dropped = Some(error.to_string());
                break;
            }
            None => {
                dropped = Some("closed".into());
                break;
            }
        };
        match ServerFrame::parse(&text) {
            ServerFrame::Bench(marker) if marker.run == run => {
                let now = unix_nanos();
                if receipts.record(marker.seq) == crate::stats::Receipt::Fresh {
                    shared.fresh.fetch_add(1, Ordering::Relaxed);
                    if first == 0 {
                        first = now;
                    }
                    last = now;
                }
                batch.push(now.saturating_sub(marker.sent_unix_nanos) / 1000);
                if batch.len() == LOCAL_BATCH {
                    flush(&shared, &mut batch).await;
                }
            }
            ServerFrame::Disconnect { reason } => {
                dropped = Some(format!("disconnected: {reason}"));
                break;
            }
            _ => {}
        }
    }
    flush(&shared, &mut batch).await;
    shared.tally.lock().await.merge(&receipts.tally());
    if first > 0 {
        shared.first_receipt.fetch_min_nonzero(first);
        shared.last_receipt.fetch_max(last, Ordering::Relaxed);
    }
    if let Some(reason) = dropped {
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        shared
            .drop_reason
            .lock()
            .expect("not poisoned")
            .get_or_insert(reason);
    }
}

async fn flush(shared: &Shared, batch: &mut Vec<u64>) {
    if batch.is_empty() {
        return;
    }
    let mut h = shared.latency.lock().await;
    for &v in batch.iter() {
        h.record(v);
    }
    batch.clear();
}

trait FetchMinNonzero {
    fn fetch_min_nonzero(&self, value: u64);
}

impl FetchMinNonzero for AtomicU64 {
    /// Keeps the smallest non-zero value (zero means "none yet").
    fn fetch_min_nonzero(&self, value: u64) {
        let _ = self.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |current| {
            (current == 0 || value < current).then_some(value)
        });
    }
}

/// The publishing connections.
enum Publishers {
    None,
    Speak(Vec<Ws>),
    Http(Vec<HttpConn>),
}

impl Publishers {
    async fn connect(ctx: &Ctx, args: &FanoutArgs, identifier: &str) -> anyhow::Result<Self> {
        let count = args.publishers.max(1);
        // Publishers use client numbers after the subscribers', for their sources.
        let base = args.clients;
        Ok(match args.via {
            Via::Speak => {
                let mut conns = Vec::with_capacity(count);
                for p in 0..count {
                    let i = base + p;
                    conns.push(
                        ctx.cable
                            .join(
                                ctx.source(i),
                                ctx.setup.cookie(p),
                                identifier,
                                ctx.connect_timeout(),
                            )
                            .await?,
                    );
                }
                Publishers::Speak(conns)
            }
            Via::Http => {
                let endpoint = match &args.publish_server {
                    Some(url) => crate::net::Endpoint::parse(url)?,
                    None => ctx.endpoint.clone(),
                };
                let mut conns = Vec::with_capacity(count);
                for p in 0..count {
                    conns.push(HttpConn::connect(&endpoint, ctx.source(base + p)).await?);
                }
                Publishers::Http(conns)
            }
        })
    }

    /// Starts publishing; the task ends when every message is sent.
    fn start(
        self,
        ctx: &Ctx,
        args: &FanoutArgs,
        identifier: &str,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<Published>> {
        let count = match &self {
            Publishers::None => return None,
            Publishers::Speak(c) => c.len(),
            Publishers::Http(c) => c.len(),
        };
        let schedule = Schedule {
            start: Instant::now(),
            rate: args.rate,
            messages: args.messages,
            publishers: count as u64,
            run: ctx.setup.run,
            pad: args.pad,
        };
        let identifier = identifier.to_owned();
        let room_path = format!("/chatrooms/{}/messages", ctx.setup.room);
        let cookies = ctx.setup.cookies.clone();
        Some(tokio::spawn(async move {
            let mut tasks = JoinSet::new();
            match self {
                Publishers::None => {}
                Publishers::Speak(conns) => {
                    for (p, ws) in conns.into_iter().enumerate() {
                        let id = identifier.clone();
                        tasks.spawn(speak_all(ws, id, schedule, p as u64, stop.clone()));
                    }
                }
                Publishers::Http(conns) => {
                    for (p, conn) in conns.into_iter().enumerate() {
                        let cookie = format!("hearth_session={}", cookies[p % cookies.len()]);
                        tasks.spawn(post_all(
                            conn,
                            cookie,
                            room_path.clone(),
                            schedule,
                            p as u64,
                        ));
                    }
                }
            }
            let mut total = Published::default();
            while let Some(done) = tasks.join_next().await {
                let Ok(p) = done else { continue };
                merge_fields!(total, p; sent, failed, error_replies, post_latency);
                earliest(&mut total.first_send, p.first_send);
                total.last_send = total.last_send.max(p.last_send);
            }
            total
        }))
    }
}

/// When message `seq` is due: `seq / rate` seconds after the start.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    rate: f64,
    messages: u64,
    publishers: u64,
    run: u32,
    pad: usize,
}

impl Schedule {
    /// The messages publisher `p` sends: every `publishers`-th.
    fn mine(&self, p: u64) -> impl Iterator<Item = u64> + use<> {
        (p..self.messages).step_by(self.publishers as usize)
    }

    async fn wait_for(&self, seq: u64) {
        if self.rate > 0.0 {
            let due = self.start + Duration::from_secs_f64(seq as f64 / self.rate);
            tokio::time::sleep_until(due.into()).await;
        }
    }

    fn content(&self, seq: u64) -> (String, u64) {
        let now = unix_nanos();
        let marker = Marker {
            run: self.run,
            seq,
            sent_unix_nanos: now,
        };
        let mut content = marker.encode();
        if self.pad > 0 {
            content.push(':');
            content.extend(std::iter::repeat_n('x', self.pad));
        }
        (content, now)
    }
}

async fn speak_all(
    ws: Ws,
    identifier: String,
    schedule: Schedule,
    p: u64,
    mut stop: watch::Receiver<bool>,
) -> Published {
    let (mut sink, mut stream) = ws.split();
    // The publisher is subscribed too: drain what it receives, counting
    // error answers to its speaks, until the run stops.
    let drainer = tokio::spawn(async move {
        let mut errors = 0u64;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                frame = stream.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        if let ServerFrame::Error(kind) = ServerFrame::parse(&text) {
                            if errors == 0 {
                                eprintln!("publisher {p}: the server answered a speak with {kind}");
                            }
                            errors += 1;
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                },
            }
        }
        errors
    });
    let mut out = Published::default();
    for seq in schedule.mine(p) {
        schedule.wait_for(seq).await;
        let (content, now) = schedule.content(seq);
        let frame = protocol::speak(&identifier, &content);
        if sink.send(Message::text(frame)).await.is_err() {
            out.failed += 1;
            continue;
        }
        out.sent += 1;
        if out.first_send == 0 {
            out.first_send = now;
        }
        out.last_send = now;
    }
    out.error_replies = drainer.await.unwrap_or(0);
    out
}

async fn post_all(
    mut conn: HttpConn,
    cookie_header: String,
    path: String,
    schedule: Schedule,
    p: u64,
) -> Published {
    let mut out = Published::default();
    for seq in schedule.mine(p) {
        schedule.wait_for(seq).await;
        let (content, now) = schedule.content(seq);
        let started = Instant::now();
        match hearth::post_message(&mut conn, &cookie_header, &path, &content).await {
            Ok(201) => {
                out.post_latency
                    .record(started.elapsed().as_micros() as u64);
                out.sent += 1;
                if out.first_send == 0 {
                    out.first_send = now;
                }
                out.last_send = now;
            }
            Ok(status) => {
                if out.failed == 0 {
                    eprintln!("publisher {p}: POST {path} answered {status}");
                }
                out.failed += 1;
            }
            Err(error) => {
                eprintln!("publisher {p}: POST {path} failed: {error:#}");
                out.failed += 1;
                break;
            }
        }
    }
    out
}
