//! `post`: many writers create messages as fast as the server takes them
//! for `--duration` seconds, each waiting for its message to be stored
//! before sending the next. Over HTTP a message is created when the POST is
//! answered 201; over the cable when the speaker receives its own broadcast.

use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
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
    if args.via == Via::Http && ctx.setup.cookies.is_empty() {
        bail!("post --via http needs Hearth and signed-in users (--app hearth)");
    }
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
    let (go_tx, go) = tokio::sync::watch::channel(false);
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
                        tasks.spawn(post_loop(
                            conn,
                            cookie,
                            path,
                            ctx.setup.run,
                            w,
                            go.clone(),
                            duration,
                        ));
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
                tasks.spawn(speak_loop(
                    ws,
                    identifier(w),
                    ctx.setup.run,
                    w,
                    go.clone(),
                    duration,
                ));
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

/// Sequence numbers are unique per run: writer `w` uses w, w + 2^32, w + 2·2^32 …
fn seq(w: usize, k: u64) -> u64 {
    (k << 32) | w as u64
}

async fn post_loop(
    mut conn: HttpConn,
    cookie: String,
    path: String,
    run: u32,
    w: usize,
    mut go: tokio::sync::watch::Receiver<bool>,
    duration: Duration,
) -> Partial {
    let mut out = Partial {
        writers: 1,
        ..Partial::default()
    };
    let _ = go.wait_for(|&g| g).await;
    let until = Instant::now() + duration;
    let mut k = 0;
    while Instant::now() < until {
        let content = Marker {
            run,
            seq: seq(w, k),
            sent_unix_nanos: unix_nanos(),
        }
        .encode();
        k += 1;
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

async fn speak_loop(
    ws: crate::cable::Ws,
    identifier: String,
    run: u32,
    w: usize,
    mut go: tokio::sync::watch::Receiver<bool>,
    duration: Duration,
) -> Partial {
    let mut out = Partial {
        writers: 1,
        ..Partial::default()
    };
    let (mut sink, mut stream) = ws.split();
    let _ = go.wait_for(|&g| g).await;
    let until = Instant::now() + duration;
    let mut k = 0;
    'writing: while Instant::now() < until {
        let mine = seq(w, k);
        k += 1;
        let started = Instant::now();
        let content = Marker {
            run,
            seq: mine,
            sent_unix_nanos: unix_nanos(),
        }
        .encode();
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
            let left = until.saturating_duration_since(Instant::now()) + Duration::from_secs(5);
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
                ServerFrame::Bench(m) if m.run == run && m.seq == mine => {
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
