//! `presence`: N subscribers join one room with `"presence":true` at a set
//! rate, each counting the presence frames (and bytes) it receives, while a
//! probe subscribed to another room, without presence, speaks timed
//! messages and times their return. Reports the frames all joiners got
//! against the N(N+1)/2 that one frame per join to everyone present would
//! have sent, the probe's latency during the joins, and the server's CPU time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::cable::{CableTarget, Ws};
use crate::cli::{App, PresenceArgs};
use crate::protocol::{self, Marker, ServerFrame};
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::{Histogram, Merge, earliest, merge_fields};
use crate::workers::{Coord, unix_nanos};

/// How long the probe waits, once told to stop, for its last messages.
const PROBE_DRAIN: Duration = Duration::from_secs(2);

/// One process's share of the outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    /// Joiners whose subscription was confirmed.
    subscribed: u64,
    connect_failures: u64,
    first_error: Option<String>,
    /// Time from TCP connect to confirmed subscription, µs.
    setup: Histogram,
    /// Presence frames received, and their JSON bytes (without the
    /// WebSocket header), over all joiners.
    frames: u64,
    bytes: u64,
    /// The most presence frames one joiner received.
    max_frames: u64,
    /// Joiners whose last presence frame counted every joining user.
    converged: u64,
    /// Milliseconds the joiners were subscribed, added up.
    present_ms: u64,
    /// Joiners the server dropped, and the first reason.
    dropped: u64,
    drop_reason: Option<String>,
    /// Unix nanoseconds of the first join started and the last confirmed.
    first_join: u64,
    last_join: u64,
    /// The probe's account (first process only).
    probe: Option<Probe>,
}

impl Merge for Partial {
    fn merge(&mut self, other: &Self) {
        merge_fields!(self, other;
            subscribed, connect_failures, first_error, setup, frames, bytes, converged,
            present_ms, dropped, drop_reason, probe);
        self.max_frames = self.max_frames.max(other.max_frames);
        earliest(&mut self.first_join, other.first_join);
        self.last_join = self.last_join.max(other.last_join);
    }
}

/// What the probe sent and got back.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Probe {
    sent: u64,
    received: u64,
    /// `{"type":"error"}` answers to its speaks.
    errors: u64,
    /// Send to receipt, µs.
    latency: Histogram,
    /// Why the probe's connection ended early, if it did.
    dropped: Option<String>,
}

/// Presence frames received against what uncoalesced presence would send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coalescing {
    /// Subscribers that joined, each a user of its own.
    pub joiners: u64,
    /// Presence frames they received, all together.
    pub frames: u64,
}

impl Coalescing {
    /// Frames if every join sent one frame to everyone present, the joiner
    /// included: 1 + 2 + … + N = N(N+1)/2, quadratic in N.
    pub fn uncoalesced(&self) -> u64 {
        self.joiners * (self.joiners + 1) / 2
    }

    /// Frames received per joiner.
    pub fn per_joiner(&self) -> f64 {
        ratio(self.frames, self.joiners)
    }

    /// The part of the uncoalesced frames that was sent.
    pub fn share(&self) -> f64 {
        ratio(self.frames, self.uncoalesced())
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Runs the scenario (on the leader, or spread over workers) and reports.
pub async fn run(ctx: Ctx, args: PresenceArgs) -> anyhow::Result<()> {
    if ctx.common.app != App::Hearth {
        bail!("presence is Hearth's: run it with --app hearth");
    }
    if !args.join_rate.is_finite() || args.join_rate <= 0.0 {
        bail!("--join-rate must be positive");
    }
    // Presence counts users: joiners sharing one count once.
    let users = ctx.setup.cookies.len().min(args.joiners) as u64;
    if users < args.joiners as u64 {
        eprintln!(
            "note: {} joiners share {users} users; presence changes only at each user's first join",
            args.joiners
        );
    }
    let outcome = ctx.drive(|coord| work(&ctx, &args, users, coord)).await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let total = outcome.total();
    let probe = total.probe.clone().unwrap_or_default();
    let (start, end) = (outcome.at("start"), outcome.at("joined"));
    let delta = |f: fn(&crate::workers::Sample) -> Option<f64>| match (
        start.and_then(f),
        end.and_then(f),
    ) {
        (Some(a), Some(b)) => b - a,
        _ => f64::NAN,
    };
    let phase_s = match (start, end) {
        (Some(a), Some(b)) => (b.unix_nanos - a.unix_nanos) as f64 / 1e9,
        _ => f64::NAN,
    };
    let join_s = total.last_join.saturating_sub(total.first_join) as f64 / 1e9;
    let coalescing = Coalescing {
        joiners: total.subscribed,
        frames: total.frames,
    };
    let p = &probe.latency;
    let mut result = report::Result::new("presence")
        .with("joiners", args.joiners)
        .with("subscribed", total.subscribed)
        .with("connect_failures", total.connect_failures)
        .with("users", users)
        .with("presence", !args.without_presence)
        .with("asked", args.ask)
        .num("join_rate_target", args.join_rate, 1)
        .num("join_rate", total.subscribed as f64 / join_s.max(1e-9), 0)
        .num("join_s", join_s, 3)
        .num("phase_s", phase_s, 3)
        .with("presence_frames", total.frames)
        .with("presence_bytes", total.bytes)
        .num("frames_per_joiner", coalescing.per_joiner(), 2)
        .num("bytes_per_frame", ratio(total.bytes, total.frames), 0)
        .with("max_frames_one_joiner", total.max_frames)
        .num(
            "frames_per_joiner_s",
            ratio(total.frames * 1000, total.present_ms),
            3,
        )
        .with("uncoalesced_frames", coalescing.uncoalesced())
        .num("share_of_uncoalesced", coalescing.share(), 6)
        .with("converged", total.converged)
        .with("dropped_connections", total.dropped)
        .num("setup_p50_ms", ms(total.setup.percentile(50.0)), 3)
        .num("setup_p99_ms", ms(total.setup.percentile(99.0)), 3)
        .with("probe_sent", probe.sent)
        .with("probe_received", probe.received)
        .with("probe_errors", probe.errors)
        .num("probe_p50_ms", ms(p.percentile(50.0)), 3)
        .num("probe_p99_ms", ms(p.percentile(99.0)), 3)
        .num("probe_max_ms", ms(p.max()), 3)
        .num("server_cpu_s", delta(|s| s.server_cpu_s), 2)
        .num("client_cpu_s", delta(|s| Some(s.client_cpu_s)), 2);
    result = result
        .with_some("server_rss_kib", end.and_then(|s| s.server_rss_kib))
        .with_some("first_connect_error", total.first_error.clone())
        .with_some("first_drop_reason", total.drop_reason.clone())
        .with_some("probe_dropped", probe.dropped.clone());
    result.emit(&ctx.common)?;

    if args.expect_complete {
        let problems = [
            (
                args.joiners as u64 - total.subscribed.min(args.joiners as u64),
                "joiners not subscribed",
            ),
            (
                total.subscribed - total.converged.min(total.subscribed),
                "joiners whose last frame did not count everyone",
            ),
            (total.dropped, "joiners dropped"),
            (
                probe.sent - probe.received.min(probe.sent),
                "probe messages lost",
            ),
            (probe.errors, "probe messages refused"),
            (u64::from(probe.sent == 0), "probe sent nothing"),
        ];
        let found: Vec<String> = problems
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, what)| format!("{n} {what}"))
            .collect();
        if !found.is_empty() {
            bail!("incomplete presence run: {}", found.join(", "));
        }
    }
    Ok(())
}

/// What one joiner needs, shared by all of this process's joiners.
struct Joining {
    cable: CableTarget,
    identifier: String,
    timeout: Duration,
    ask: bool,
    /// Joins finished, confirmed or failed: the phase waits for all.
    settled: AtomicU64,
}

/// What one joiner saw.
#[derive(Default)]
struct Joiner {
    started: u64,
    confirmed: u64,
    setup_us: u64,
    error: Option<String>,
    frames: u64,
    bytes: u64,
    last_count: Option<u64>,
    present: Duration,
    dropped: Option<String>,
}

async fn work(ctx: &Ctx, args: &PresenceArgs, users: u64, coord: Coord) -> anyhow::Result<Partial> {
    let (stop_tx, stop) = watch::channel(false);
    // The probe connects before the phase, so its set-up is not measured.
    let mut probe = None;
    if ctx.share.is_first() {
        let room = args
            .probe_room
            .clone()
            .or_else(|| ctx.setup.own_rooms.first().cloned())
            .expect("a probe room is created when none is given");
        let identifier = protocol::identifier_with(&room, false, ctx.common.format.as_deref());
        let ws = ctx
            .cable
            .join(
                ctx.source(args.joiners),
                ctx.setup.cookie(0),
                &identifier,
                ctx.connect_timeout(),
            )
            .await?;
        probe = Some((ws, identifier));
    }
    let joining = Arc::new(Joining {
        cable: ctx.cable.clone(),
        // With presence whether or not `--presence` was given: it is what
        // is measured, unless this is the control run.
        identifier: protocol::identifier_with(
            &ctx.setup.room,
            !args.without_presence,
            ctx.common.format.as_deref(),
        ),
        timeout: ctx.connect_timeout(),
        ask: args.ask,
        settled: AtomicU64::new(0),
    });
    coord.barrier("start").await?;

    let start = Instant::now();
    let probing = probe.map(|(ws, identifier)| {
        tokio::spawn(speak_and_time(
            ws,
            identifier,
            ctx.setup.run,
            args.probe_rate,
            stop.clone(),
        ))
    });
    let deadline = start + Duration::from_secs_f64(args.timeout);
    let mine: Vec<usize> = ctx.share.clients(args.joiners).collect();
    let bar = report::bar("joining", mine.len() as u64, ctx.progress);
    let mut joiners = JoinSet::new();
    for &i in &mine {
        let due = start + Duration::from_secs_f64(i as f64 / args.join_rate);
        if due > deadline {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        bar.set_position(joining.settled.load(Ordering::Relaxed));
        let cookie = ctx.setup.cookie(i).map(str::to_owned);
        joiners.spawn(join_and_count(
            joining.clone(),
            ctx.source(i),
            cookie,
            stop.clone(),
        ));
    }
    // Wait for the last joins to be confirmed (or to fail: each is bounded
    // by the connect timeout), then for the frames they set off.
    let spawned = joiners.len() as u64;
    while joining.settled.load(Ordering::Relaxed) < spawned {
        bar.set_position(joining.settled.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bar.finish_and_clear();
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    coord.barrier("joined").await?;
    let _ = stop_tx.send(true);

    let mut partial = Partial::default();
    while let Some(done) = joiners.join_next().await {
        let Ok(joiner) = done else { continue };
        add_joiner(&mut partial, joiner, users);
    }
    if let Some(task) = probing {
        partial.probe = Some(task.await?);
    }
    Ok(partial)
}

/// Adds one joiner's account to this process's share.
fn add_joiner(partial: &mut Partial, joiner: Joiner, everyone: u64) {
    earliest(&mut partial.first_join, joiner.started);
    if let Some(error) = joiner.error {
        partial.connect_failures += 1;
        partial.first_error.get_or_insert(error);
        return;
    }
    partial.subscribed += 1;
    partial.last_join = partial.last_join.max(joiner.confirmed);
    partial.setup.record(joiner.setup_us);
    partial.frames += joiner.frames;
    partial.bytes += joiner.bytes;
    partial.max_frames = partial.max_frames.max(joiner.frames);
    partial.present_ms += joiner.present.as_millis() as u64;
    if joiner.last_count == Some(everyone) {
        partial.converged += 1;
    }
    if let Some(reason) = joiner.dropped {
        partial.dropped += 1;
        partial.drop_reason.get_or_insert(reason);
    }
}

/// One joiner: subscribes (asking for the frame if `ask`), then counts the
/// presence frames it receives until `stop`.
async fn join_and_count(
    joining: Arc<Joining>,
    source: std::net::IpAddr,
    cookie: Option<String>,
    mut stop: watch::Receiver<bool>,
) -> Joiner {
    let mut joiner = Joiner {
        started: unix_nanos(),
        ..Joiner::default()
    };
    let began = Instant::now();
    let joined = joining
        .cable
        .join(
            source,
            cookie.as_deref(),
            &joining.identifier,
            joining.timeout,
        )
        .await;
    joining.settled.fetch_add(1, Ordering::Relaxed);
    let mut ws: Ws = match joined {
        Ok(ws) => ws,
        Err(error) => {
            joiner.error = Some(format!("{error:#}"));
            return joiner;
        }
    };
    joiner.confirmed = unix_nanos();
    joiner.setup_us = began.elapsed().as_micros() as u64;
    let subscribed = Instant::now();
    if joining.ask
        && let Err(error) = ws
            .send(Message::text(protocol::ask_presence(&joining.identifier)))
            .await
    {
        joiner.dropped = Some(error.to_string());
        return joiner;
    }
    loop {
        let frame = tokio::select! {
            _ = stop.changed() => break,
            frame = ws.next() => frame,
        };
        match frame {
            Some(Ok(Message::Text(text))) => {
                if let Some(count) = protocol::presence_count(&text) {
                    joiner.frames += 1;
                    joiner.bytes += text.len() as u64;
                    joiner.last_count = Some(count);
                } else if let ServerFrame::Disconnect { reason } = ServerFrame::parse(&text) {
                    joiner.dropped = Some(format!("disconnected: {reason}"));
                    break;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(error)) => {
                joiner.dropped = Some(error.to_string());
                break;
            }
            None => {
                joiner.dropped = Some("closed".into());
                break;
            }
        }
    }
    joiner.present = subscribed.elapsed();
    joiner
}

/// The probe: speaks a timed message every 1/`rate` s in its own room and
/// times each from its send to its receipt, until `stop`; then waits up to
/// [`PROBE_DRAIN`] for the ones still on their way.
async fn speak_and_time(
    mut ws: Ws,
    identifier: String,
    run: u32,
    rate: f64,
    mut stop: watch::Receiver<bool>,
) -> Probe {
    let mut probe = Probe::default();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining: Option<Instant> = None;
    let mut seq = 0u64;
    loop {
        if let Some(since) = draining
            && (probe.received >= probe.sent || since.elapsed() > PROBE_DRAIN)
        {
            break;
        }
        tokio::select! {
            _ = stop.changed(), if draining.is_none() => draining = Some(Instant::now()),
            _ = tick.tick(), if draining.is_none() => {
                let marker = Marker { run, seq, sent_unix_nanos: unix_nanos() };
                seq += 1;
                if let Err(error) = ws.send(Message::text(protocol::speak(&identifier, &marker.encode()))).await {
                    probe.dropped = Some(error.to_string());
                    break;
                }
                probe.sent += 1;
            }
            _ = tokio::time::sleep(Duration::from_millis(100)), if draining.is_some() => {}
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => match ServerFrame::parse(&text) {
                    ServerFrame::Bench(marker) if marker.run == run => {
                        let took = unix_nanos().saturating_sub(marker.sent_unix_nanos);
                        probe.latency.record(took / 1000);
                        probe.received += 1;
                    }
                    ServerFrame::Error(_) => probe.errors += 1,
                    ServerFrame::Disconnect { reason } => {
                        probe.dropped = Some(format!("disconnected: {reason}"));
                        break;
                    }
                    _ => {}
                },
                Some(Ok(_)) => {}
                Some(Err(error)) => {
                    probe.dropped = Some(error.to_string());
                    break;
                }
                None => {
                    probe.dropped = Some("closed".into());
                    break;
                }
            },
        }
    }
    probe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncoalesced_presence_is_one_frame_per_join_to_everyone_present() {
        let two = Coalescing {
            joiners: 2,
            frames: 3,
        };
        // The first joiner hears of itself, the second of itself and both.
        assert_eq!(two.uncoalesced(), 3);
        assert_eq!(two.share(), 1.0);
        let many = Coalescing {
            joiners: 10_000,
            frames: 55_000,
        };
        assert_eq!(many.uncoalesced(), 50_005_000);
        assert_eq!(many.per_joiner(), 5.5);
        assert!(many.share() < 0.0011);
        let none = Coalescing {
            joiners: 0,
            frames: 0,
        };
        assert_eq!((none.per_joiner(), none.share()), (0.0, 0.0));
    }

    #[test]
    fn a_joiner_counts_as_converged_only_if_its_last_frame_counted_everyone() {
        let mut partial = Partial::default();
        let heard = |last: u64, frames: u64| Joiner {
            started: 10,
            confirmed: 20,
            frames,
            bytes: frames * 100,
            last_count: Some(last),
            present: Duration::from_secs(2),
            ..Joiner::default()
        };
        add_joiner(&mut partial, heard(3, 2), 3);
        add_joiner(&mut partial, heard(2, 1), 3);
        add_joiner(
            &mut partial,
            Joiner {
                started: 5,
                error: Some("refused".into()),
                ..Joiner::default()
            },
            3,
        );
        assert_eq!(
            (
                partial.subscribed,
                partial.connect_failures,
                partial.converged
            ),
            (2, 1, 1)
        );
        assert_eq!(
            (partial.frames, partial.bytes, partial.max_frames),
            (3, 300, 2)
        );
        assert_eq!(
            (partial.first_join, partial.last_join, partial.present_ms),
            (5, 20, 4000)
        );
    }
}
