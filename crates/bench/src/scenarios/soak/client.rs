//! The subscribers: each client's task (show, leave, reconnect, catch up),
//! what the tasks share, and the churn that tells them when to leave.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, watch};
use tokio_tungstenite::tungstenite::Message;

use super::transcript::{Transcript, TranscriptTally};
use crate::cable::{CableTarget, Ws};
use crate::protocol::{self, ServerFrame};
use crate::stats::Histogram;

/// How long a clean close waits for the server's answering close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// How long a client waits before trying a failed reconnect again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Counters the client tasks of one process share.
#[derive(Default)]
pub(super) struct Counters {
    pub churned: AtomicU64,
    pub clean_closes: AtomicU64,
    pub reconnects: AtomicU64,
    pub reconnect_failures: AtomicU64,
    pub server_drops: AtomicU64,
    pub error_frames: AtomicU64,
    pub catch_up_requests: AtomicU64,
    pub first: std::sync::Mutex<Firsts>,
}

/// The first failure of each kind and the latencies, behind one lock.
#[derive(Default)]
pub(super) struct Firsts {
    pub reconnect_error: Option<String>,
    pub drop_reason: Option<String>,
    pub error_frame: Option<String>,
    pub reconnect_latency: Histogram,
    pub catch_up_latency: Histogram,
}

/// What every client task needs to reconnect.
pub(super) struct Kit {
    pub cable: CableTarget,
    pub identifier: String,
    pub connect_timeout: Duration,
    pub counters: Counters,
}

/// Who one client is.
pub(super) struct Me {
    pub source: std::net::IpAddr,
    pub cookie: Option<String>,
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
pub(super) async fn client(
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
pub(super) async fn churn(signals: Vec<Arc<Notify>>, per_s: f64, deadline: Instant) {
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
