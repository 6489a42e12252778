//! `post`: many writers create messages as fast as the server takes them
//! for `--duration` seconds, each waiting for its message to be stored
//! before sending the next. Over HTTP a message is created when the POST is
//! answered 201; over the cable when the speaker receives its own broadcast.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use super::join_all;
use crate::cli::{PostArgs, Rooms, Via};
use crate::hearth;
use crate::http::HttpConn;
use crate::protocol::{self, Marker, ServerFrame};
use crate::report::{self, ms};
use crate::run::Ctx;
use crate::stats::{Histogram, Merge, merge_fields};
use crate::workers::{Coord, unix_nanos};

/// One process's (or one writer's) share of the outcome.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    writers: u64,
    connect_failures: u64,
    created: u64,
    errors: u64,
    first_error: Option<String>,
    latency: Histogram,
}

impl Merge for Partial {
    fn merge(&mut self, other: &Self) {
        merge_fields!(self, other; writers, connect_failures, created, errors, first_error, latency);
    }
}

/// Runs the scenario and reports.
pub async fn run(ctx: Ctx, args: PostArgs) -> anyhow::Result<()> {
    ctx.check_via(args.via)?;
    let outcome = ctx.drive(|coord| work(&ctx, &args, coord)).await?;
    let Some(outcome) = outcome else {
        return Ok(());
    };
    let total = outcome.total();
    let (Some(start), Some(end)) = (outcome.at("start"), outcome.at("end")) else {
        bail!("missing samples");
    };
    let seconds = (end.unix_nanos - start.unix_nanos) as f64 / 1e9;
    let h = &total.latency;
    let mut result = report::Result::new("post")
        .with("via", format!("{:?}", args.via).to_lowercase())
        .with("rooms", format!("{:?}", args.rooms).to_lowercase())
        .with("writers", total.writers)
        .with("connect_failures", total.connect_failures)
        .num("seconds", seconds, 3)
        .with("created", total.created)
        .with("errors", total.errors)
        .num(
            "messages_per_s",
            total.created as f64 / seconds.max(1e-9),
            0,
        )
        .num("p50_ms", ms(h.percentile(50.0)), 3)
        .num("p99_ms", ms(h.percentile(99.0)), 3)
        .num("max_ms", ms(h.max()), 3)
        .num("client_cpu_s", end.client_cpu_s - start.client_cpu_s, 2);
    if let (Some(a), Some(b)) = (start.server_cpu_s, end.server_cpu_s) {
        result = result.num("server_cpu_s", b - a, 2);
    }
    if let Some(e) = &total.first_error {
        result = result.with("first_error", e.clone());
    }
    result.emit(&ctx.common)
}

/// The room writer `w` posts to.
fn room_of(ctx: &Ctx, rooms: Rooms, w: usize) -> &str {
    match rooms {
        Rooms::Own => &ctx.setup.own_rooms[w],
        Rooms::Shared => &ctx.setup.room,
    }
}

async fn work(ctx: &Ctx, args: &PostArgs, coord: Coord) -> anyhow::Result<Partial> {
    let duration = Duration::from_secs_f64(args.duration);
    let mine: Vec<usize> = ctx.share.clients(args.writers).collect();
    let mut tasks = JoinSet::new();
    let mut partial = Partial::default();
    let (go_tx, go) = watch::channel(false);
    match args.via {
        Via::Http => {
            for &w in &mine {
                match HttpConn::connect(&ctx.endpoint, ctx.source(w)).await {
                    Ok(conn) => {
                        let cookie = format!(
                            "hearth_session={}",
                            ctx.setup.cookie(w).expect("checked: signed in")
                        );
                        let path = format!("/chatrooms/{}/messages", room_of(ctx, args.rooms, w));
                        let writer = Writer::new(ctx, w, &go, duration);
                        tasks.spawn(post_loop(conn, cookie, path, writer));
                    }
                    Err(error) => {
                        partial.connect_failures += 1;
                        partial.first_error.get_or_insert(format!("{error:#}"));
                    }
                }
            }
        }
        Via::Speak => {
            let identifier = |w: usize| protocol::identifier(room_of(ctx, args.rooms, w));
            let joined = join_all(ctx, mine, identifier, "speakers").await;
            partial.connect_failures += joined.failures;
            partial.first_error = joined.first_error;
            for (w, ws) in joined.conns {
                let writer = Writer::new(ctx, w, &go, duration);
                tasks.spawn(speak_loop(ws, identifier(w), writer));
            }
        }
    }
    coord.barrier("start").await?;
    let _ = go_tx.send(true);
    let bar = report::spinner("writing");
    if !ctx.progress {
        bar.finish_and_clear();
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(writer) = done {
            partial.merge(&writer);
        }
    }
    bar.finish_and_clear();
    coord.barrier("end").await?;
    Ok(partial)
}

/// One writer before the start: whose messages it writes, the signal it
/// waits for and how long it writes once it has it.
struct Writer {
    run: u32,
    w: usize,
    go: watch::Receiver<bool>,
    duration: Duration,
}

/// A writer under way: its messages until its time is up.
struct Writing {
    run: u32,
    w: usize,
    /// Messages written so far.
    k: u64,
    until: Instant,
}

impl Writer {
    fn new(ctx: &Ctx, w: usize, go: &watch::Receiver<bool>, duration: Duration) -> Self {
        Self {
            run: ctx.setup.run,
            w,
            go: go.clone(),
            duration,
        }
    }

    /// Waits for the go; the writing lasts `duration` from then.
    async fn start(mut self) -> Writing {
        let _ = self.go.wait_for(|&g| g).await;
        Writing {
            run: self.run,
            w: self.w,
            k: 0,
            until: Instant::now() + self.duration,
        }
    }
}

impl Writing {
    /// The next message's `seq` and content (a bench marker stamped now), or
    /// `None` once time is up. Sequence numbers are unique per run: writer
    /// `w` uses w, w + 2^32, w + 2·2^32 …
    fn next_message(&mut self) -> Option<(u64, String)> {
        if Instant::now() >= self.until {
            return None;
        }
        let seq = (self.k << 32) | self.w as u64;
        self.k += 1;
        let marker = Marker {
            run: self.run,
            seq,
            sent_unix_nanos: unix_nanos(),
        };
        Some((seq, marker.encode()))
    }
}

impl Partial {
    /// One writer's share, before it writes.
    fn writer() -> Self {
        Self {
            writers: 1,
            ..Self::default()
        }
    }
}

async fn post_loop(mut conn: HttpConn, cookie: String, path: String, writer: Writer) -> Partial {
    let mut out = Partial::writer();
    let mut writing = writer.start().await;
    while let Some((_, content)) = writing.next_message() {
        let started = Instant::now();
        match hearth::post_message(&mut conn, &cookie, &path, &content).await {
            Ok(201) => {
                out.latency.record(started.elapsed().as_micros() as u64);
                out.created += 1;
            }
            Ok(status) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert(format!("POST {path} answered {status}"));
            }
            Err(error) => {
                out.errors += 1;
                out.first_error
                    .get_or_insert(format!("POST {path}: {error:#}"));
                break;
            }
        }
    }
    out
}

async fn speak_loop(ws: crate::cable::Ws, identifier: String, writer: Writer) -> Partial {
    let mut out = Partial::writer();
    let (mut sink, mut stream) = ws.split();
    let mut writing = writer.start().await;
    'writing: while let Some((mine, content)) = writing.next_message() {
        let started = Instant::now();
        if sink
            .send(Message::text(protocol::speak(&identifier, &content)))
            .await
            .is_err()
        {
            out.errors += 1;
            break;
        }
        // Wait for our own message (others' in a shared room pass by).
        loop {
            let left =
                writing.until.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
            let frame = match tokio::time::timeout(left, stream.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => ServerFrame::parse(&text),
                Ok(Some(Ok(_))) => continue,
                Ok(_) => {
                    out.errors += 1;
                    out.first_error.get_or_insert("connection closed".into());
                    break 'writing;
                }
                Err(_) => {
                    out.errors += 1;
                    out.first_error.get_or_insert("no answer to a speak".into());
                    break 'writing;
                }
            };
            match frame {
                ServerFrame::Bench(m) if m.run == writing.run && m.seq == mine => {
                    out.latency.record(started.elapsed().as_micros() as u64);
                    out.created += 1;
                    break;
                }
                ServerFrame::Error(kind) => {
                    out.errors += 1;
                    out.first_error
                        .get_or_insert(format!("speak answered {kind}"));
                    break;
                }
                ServerFrame::Disconnect { reason } => {
                    out.errors += 1;
                    out.first_error
                        .get_or_insert(format!("disconnected: {reason}"));
                    break 'writing;
                }
                _ => {}
            }
        }
    }
    out
}
