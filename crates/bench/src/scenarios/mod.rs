//! The scenarios, one module each, and the connection set-up they share.
//!
//! - [`fanout`]: N subscribers, M timed messages, every receipt timed.
//! - [`idle`]: server memory per held connection, step by step.
//! - [`connect`]: connection set-up rate.
//! - [`rtt`]: websocket-bench's broadcast round trip as clients grow.
//! - [`post`]: messages created per second by many writers.
//! - [`soak`]: a long run with churning clients; memory, open files, no loss.
//! - [`presence`]: joins at a set rate; presence frames against joiners, and a probe's latency.

pub mod connect;
pub mod fanout;
pub mod idle;
pub mod post;
pub mod presence;
pub mod rtt;
pub mod soak;

use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream;

use crate::cable::Ws;
use crate::report;
use crate::run::Ctx;
use crate::stats::Histogram;

/// The connections a process opened, and how setting them up went.
pub struct Joined {
    /// Open, subscribed connections with their client numbers.
    pub conns: Vec<(usize, Ws)>,
    /// Set-ups that failed or timed out.
    pub failures: u64,
    /// The first failure, to show what went wrong.
    pub first_error: Option<String>,
    /// Time from TCP connect to confirmed subscription, µs.
    pub setup_latency: Histogram,
}

/// Opens and subscribes clients `clients` (each to `identifier(i)`), this
/// process's share of the connect concurrency at a time.
pub async fn join_all(
    ctx: &Ctx,
    clients: Vec<usize>,
    identifier: impl Fn(usize) -> String,
    what: &str,
) -> Joined {
    let bar = report::bar(what, clients.len() as u64, ctx.progress);
    let timeout = ctx.connect_timeout();
    let concurrency = ctx.share.part(ctx.common.concurrency);
    let mut attempts = stream::iter(clients)
        .map(|i| {
            let id = identifier(i);
            async move {
                let started = Instant::now();
                let joined = ctx
                    .cable
                    .join(ctx.source(i), ctx.setup.cookie(i), &id, timeout)
                    .await;
                (i, joined, started.elapsed())
            }
        })
        .buffer_unordered(concurrency);
    let mut joined = Joined {
        conns: Vec::new(),
        failures: 0,
        first_error: None,
        setup_latency: Histogram::default(),
    };
    while let Some((i, result, took)) = attempts.next().await {
        bar.inc(1);
        match result {
            Ok(ws) => {
                joined.setup_latency.record(took.as_micros() as u64);
                joined.conns.push((i, ws));
            }
            Err(error) => {
                joined.failures += 1;
                joined
                    .first_error
                    .get_or_insert_with(|| format!("client {i}: {error:#}"));
            }
        }
    }
    bar.finish_and_clear();
    if let Some(error) = &joined.first_error {
        eprintln!(
            "{} of {} connections failed; first: {error}",
            joined.failures,
            joined.failures as usize + joined.conns.len()
        );
    }
    joined
}

/// Opens this process's share of clients `0..clients`, all subscribed to
/// the one room `identifier`.
pub async fn join_room(ctx: &Ctx, clients: usize, identifier: &str, what: &str) -> Joined {
    let mine = ctx.share.clients(clients).collect();
    join_all(ctx, mine, |_| identifier.to_owned(), what).await
}

/// Reads and drops everything a connection receives until `stop` changes,
/// as an idle browser tab would; returns why it ended early, if it did.
pub async fn hold(mut ws: Ws, mut stop: tokio::sync::watch::Receiver<bool>) -> Option<String> {
    use crate::protocol::ServerFrame;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        tokio::select! {
            _ = stop.changed() => return None,
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    if let ServerFrame::Disconnect { reason } = ServerFrame::parse(&text) {
                        return Some(format!("disconnected: {reason}"));
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => return Some(error.to_string()),
                None => return Some("closed".into()),
            },
        }
    }
}
