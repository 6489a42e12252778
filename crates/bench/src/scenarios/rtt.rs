//! `rtt`: the "broadcast" method of AnyCable's websocket-bench, so figures
//! compare with published ones. Clients are added `--step-size` at a time;
//! at each step `--sample-size` broadcasts are sent by random clients,
//! `--concurrent` at a time, and each is timed at its sender from sending
//! to receiving the broadcast back (websocket-bench times the
//! `broadcastResult` reply instead, which a chat room has no equivalent of).
//! Prints min, median, p95 and max RTT per step, like websocket-bench.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use super::join_all;
use crate::cable::Ws;
use crate::cli::RttArgs;
use crate::protocol::{self, Marker, ServerFrame};
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::Histogram;
use crate::workers::unix_nanos;

/// Runs the steps, one result per step.
pub async fn run(ctx: Ctx, args: RttArgs) -> anyhow::Result<()> {
    if ctx.common.workers > 1 {
        bail!("rtt runs in one process; it holds up to {} clients", 19_000);
    }
    let identifier = ctx.identifier();
    let (rtt_tx, mut rtts) = mpsc::unbounded_channel::<u64>();
    let received = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop) = watch::channel(false);
    let mut senders: Vec<mpsc::Sender<u64>> = Vec::new();
    let mut expected = 0u64;
    let mut seq = 0u64;
    let mut random = Random(u64::from(ctx.setup.run) | 1);
    let mut failures = 0;
    let timeout = Duration::from_secs_f64(args.timeout);

    for step in 1..=args.steps {
        let from = senders.len() + failures as usize;
        let clients: Vec<usize> = (from..from + args.step_size).collect();
        let joined = join_all(
            &ctx,
            clients,
            |_| identifier.clone(),
            &format!("step {step}"),
        )
        .await;
        failures += joined.failures;
        for (_, ws) in joined.conns {
            // Each client's command queue holds at most a few sends.
            let (tx, rx) = mpsc::channel(4);
            senders.push(tx);
            tokio::spawn(client(
                ws,
                identifier.clone(),
                ctx.setup.run,
                rx,
                rtt_tx.clone(),
                received.clone(),
                stop.clone(),
            ));
        }
        if senders.is_empty() {
            bail!("no client could connect");
        }

        let mut h = Histogram::default();
        let (mut in_flight, mut dropped) = (0usize, 0usize);
        while (h.count() as usize) + dropped < args.sample_size {
            while in_flight < args.concurrent
                && (h.count() as usize) + dropped + in_flight < args.sample_size
            {
                let who = (random.next() % senders.len() as u64) as usize;
                if senders[who].send(seq).await.is_err() {
                    dropped += 1;
                    continue;
                }
                seq += 1;
                in_flight += 1;
                expected += senders.len() as u64;
            }
            match tokio::time::timeout(timeout, rtts.recv()).await {
                Ok(Some(micros)) => {
                    h.record(micros);
                    in_flight -= 1;
                }
                _ => {
                    dropped += in_flight;
                    in_flight = 0;
                }
            }
        }
        report::Result::new("rtt")
            .with("clients", senders.len())
            .with("step", step)
            .with("connect_failures", failures)
            .with("samples", h.count())
            .with("dropped", dropped)
            .num("min_ms", ms(h.min()), 3)
            .num("median_ms", ms(h.percentile(50.0)), 3)
            .num("p95_ms", ms(h.percentile(95.0)), 3)
            .num("p99_ms", ms(h.percentile(99.0)), 3)
            .num("max_ms", ms(h.max()), 3)
            .emit(&ctx.common)?;
    }
    // Broadcasts may still be on their way to other clients; wait a little.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = received.load(Ordering::Relaxed);
    if got != expected {
        eprintln!("broadcasts received: expected {expected}, got {got}");
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// One client: sends the broadcasts it is told to, times its own coming
/// back, counts every one it receives.
async fn client(
    ws: Ws,
    identifier: String,
    run: u32,
    mut commands: mpsc::Receiver<u64>,
    rtts: mpsc::UnboundedSender<u64>,
    received: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut sink, mut stream) = ws.split();
    let mut pending = HashSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            Some(seq) = commands.recv() => {
                let content = Marker { run, seq, sent_unix_nanos: unix_nanos() }.encode();
                if sink.send(Message::text(protocol::speak(&identifier, &content))).await.is_err() {
                    return;
                }
                pending.insert(seq);
            }
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let ServerFrame::Bench(m) = ServerFrame::parse(&text)
                        && m.run == run {
                            received.fetch_add(1, Ordering::Relaxed);
                            if pending.remove(&m.seq) {
                                let _ = rtts.send(unix_nanos().saturating_sub(m.sent_unix_nanos) / 1000);
                            }
                        }
                }
                Some(Ok(_)) => {}
                _ => return,
            },
        }
    }
}

/// xorshift64: picks senders; no need for more.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}
